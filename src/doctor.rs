//! `fieldbot doctor`: checks a configuration against reality and says what is wrong in plain words: the
//! store reachable and migrated, the Bot Framework signing keys reachable, the bot's credentials accepted,
//! and the Graph application permissions the features need actually granted.

use std::time::Duration;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::botframework::token::{TokenError, TokenProvider};
use crate::config::{GraphMode, Settings};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
}

impl Check {
    fn new(name: &'static str, status: Status, detail: impl Into<String>) -> Self {
        Check {
            name,
            status,
            detail: detail.into(),
        }
    }

    pub fn line(&self) -> String {
        let mark = match self.status {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        format!("[{mark}] {}: {}", self.name, self.detail)
    }
}

/// The Graph application permissions fieldbot's features use, with the reason for each.
pub const GRAPH_PERMISSIONS: &[(&str, &str)] = &[
    (
        "Calendars.ReadWrite",
        "free/busy (getSchedule) and the intro invite and sync events",
    ),
    (
        "Mail.ReadWrite",
        "the intro and follow-up email drafts in the FM's mailbox, and finding a mail or draft whose answer was lost",
    ),
    ("Mail.Send", "the FTA request notifications"),
    ("User.Read.All", "resolving people added by email"),
    ("MailboxSettings.Read", "the FM's time zone"),
];

const GROUP_PERMISSION: (&str, &str) = (
    "GroupMember.Read.All",
    "lead groups (fasttrack.lead_groups)",
);

pub async fn run(settings: &Settings) -> Vec<Check> {
    let mut checks = Vec::new();
    checks.push(Check::new(
        "configuration",
        Status::Ok,
        if settings.is_local() {
            format!(
                "local mode on {} (no credentials: loopback only, Graph {:?})",
                settings.server.bind,
                settings.graph_mode()
            )
        } else {
            format!(
                "production mode on {}, bot {}, tenant {}",
                settings.server.bind, settings.bot.app_id, settings.bot.tenant_id
            )
        },
    ));
    checks.push(store_check(settings).await);
    checks.push(wire_log_check(settings));
    checks.push(
        match crate::templates::Templates::load_or_embedded(
            std::path::Path::new("config/templates"),
            std::path::Path::new("config/agenda.toml"),
        ) {
            Ok(_) => Check::new(
                "templates",
                Status::Ok,
                "email, invite and agenda templates load",
            ),
            Err(e) => Check::new("templates", Status::Fail, e.to_string()),
        },
    );
    if settings.fasttrack.leads.is_empty() && settings.fasttrack.lead_groups.is_empty() {
        checks.push(Check::new(
            "leads",
            Status::Warn,
            "no FTA leads configured (fasttrack.leads or fasttrack.lead_groups): nobody can assign an FTA",
        ));
    }
    if settings.is_local() {
        return checks;
    }
    let http = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            checks.push(Check::new("http", Status::Fail, e.to_string()));
            return checks;
        }
    };
    checks.push(metadata_check(&http, &settings.bot.openid_metadata_url).await);
    let secret = || SecretString::from(settings.bot.app_password.expose_secret().to_string());
    let bot = TokenProvider::new(
        http.clone(),
        settings.bot_token_url(),
        settings.bot.app_id.clone(),
        secret(),
        crate::app::BOT_FRAMEWORK_SCOPE.to_string(),
    );
    checks.push(match bot.token().await {
        Ok(_) => Check::new(
            "bot credentials",
            Status::Ok,
            "the Bot Connector token was issued",
        ),
        Err(e) => Check::new("bot credentials", Status::Fail, token_problem(&e)),
    });
    if settings.graph_mode() == GraphMode::DryRun {
        checks.push(Check::new(
            "graph",
            Status::Warn,
            "graph.mode is dry-run: nothing is sent to Microsoft Graph",
        ));
        return checks;
    }
    let graph = TokenProvider::new(
        http,
        settings.graph_token_url(),
        settings.bot.app_id.clone(),
        secret(),
        crate::app::GRAPH_SCOPE.to_string(),
    );
    checks.push(match graph.token().await {
        Ok(token) => permissions_check(
            token.expose_secret(),
            !settings.fasttrack.lead_groups.is_empty(),
        ),
        Err(e) => Check::new("graph permissions", Status::Fail, token_problem(&e)),
    });
    if settings.signin_settings().is_none() {
        checks.push(Check::new(
            "sign-in",
            Status::Warn,
            "signin.public_base_url / signin.session_key are not set: the dashboard and API answer 401",
        ));
    }
    checks
}

async fn store_check(settings: &Settings) -> Check {
    let redacted = crate::config::redact_url_password(&settings.store.url);
    match crate::store::schema_status(&settings.store.url).await {
        Ok((applied, known)) if applied >= known => Check::new(
            "store",
            Status::Ok,
            format!("{redacted} is reachable and migrated ({known} migrations)"),
        ),
        Ok((applied, known)) => Check::new(
            "store",
            Status::Fail,
            format!(
                "{redacted} has {applied} of {known} migrations: run `fieldbot migrate` (serve also migrates)"
            ),
        ),
        Err(e) => Check::new("store", Status::Fail, format!("{redacted}: {e}")),
    }
}

fn wire_log_check(settings: &Settings) -> Check {
    let Some(dir) = settings.wire_log_dir() else {
        return Check::new(
            "wire log",
            Status::Warn,
            "no wire log (jobs.wire_log_dir is empty, or unset with PostgreSQL): a job a crash cuts off right after noting a Connector message is held \
             for an operator even when the message never left",
        );
    };
    match crate::jobs::wire::probe(&dir) {
        Ok(()) => Check::new(
            "wire log",
            Status::Ok,
            format!(
                "{}: a job a crash cuts off before its call left is run again",
                dir.display()
            ),
        ),
        Err(e) => Check::new(
            "wire log",
            Status::Warn,
            format!(
                "{}: {e}; a job a crash cuts off mid-call will be held for an operator",
                dir.display()
            ),
        ),
    }
}

async fn metadata_check(http: &reqwest::Client, url: &str) -> Check {
    let fetch = async {
        let metadata: Value = http
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let jwks_uri = metadata
            .get("jwks_uri")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let keys: Value = http
            .get(&jwks_uri)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok::<usize, reqwest::Error>(
            keys.get("keys")
                .and_then(Value::as_array)
                .map_or(0, Vec::len),
        )
    };
    match fetch.await {
        Ok(n) if n > 0 => Check::new(
            "bot signing keys",
            Status::Ok,
            format!("{n} keys from {url}"),
        ),
        Ok(_) => Check::new(
            "bot signing keys",
            Status::Fail,
            format!("{url} lists no signing keys: inbound requests would all be refused"),
        ),
        Err(e) => Check::new(
            "bot signing keys",
            Status::Fail,
            format!("cannot read {url}: {e}: inbound requests would all be refused"),
        ),
    }
}

fn token_problem(e: &TokenError) -> String {
    match e {
        TokenError::Rejected { error, .. } if error == "invalid_client" => {
            "Entra ID refused the app id or secret (invalid_client): check bot.app_id and bot.app_password, \
             and whether the secret expired"
                .into()
        }
        TokenError::Rejected { error, status } => {
            format!("Entra ID refused the token request ({status} {error}): check bot.tenant_id and the app registration")
        }
        other => format!("the token endpoint could not be reached: {other}"),
    }
}

/// The application permissions (`roles`) in a Graph token, against what the features need.
pub fn permissions_check(access_token: &str, lead_groups: bool) -> Check {
    let roles: Vec<String> = access_token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|claims| claims.get("roles").cloned())
        .and_then(|r| serde_json::from_value(r).ok())
        .unwrap_or_default();
    let mut needed: Vec<(&str, &str)> = GRAPH_PERMISSIONS.to_vec();
    if lead_groups {
        needed.push(GROUP_PERMISSION);
    }
    let missing: Vec<String> = needed
        .iter()
        .filter(|(p, _)| !roles.iter().any(|r| r == p))
        .map(|(p, why)| format!("{p} ({why})"))
        .collect();
    if missing.is_empty() {
        Check::new(
            "graph permissions",
            Status::Ok,
            format!("granted: {}", roles.join(", ")),
        )
    } else {
        Check::new(
            "graph permissions",
            Status::Fail,
            format!(
                "missing application permissions: {}. Grant them on the app registration and give admin consent",
                missing.join("; ")
            ),
        )
    }
}
