//! Settings: embedded `config/default.toml` < `config/<FIELDBOT_ENV>.toml` < `FIELDBOT__SECTION__KEY` env vars.
//!
//! Every section denies unknown fields so a misspelt key fails at start with its name instead of being
//! silently ignored. `validate()` enforces the local-mode rules of SPEC §5.

use std::net::SocketAddr;
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

/// The embedded defaults; `print-config` and the README refer to this file.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Microsoft's Bot Connector hosts: the only `serviceUrl` hosts a production bot calls unless configured.
pub const MICROSOFT_SERVICE_HOSTS: &[&str] = &[
    "smba.trafficmanager.net",
    "*.botframework.com",
    "smba.infra.gcc.teams.microsoft.com",
    "smba.infra.gov.teams.microsoft.us",
    "smba.infra.dod.teams.microsoft.us",
];
const LOOPBACK_SERVICE_HOSTS: &[&str] = &["localhost", "127.0.0.1", "::1", "[::1]"];

/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: &[&str] = &[
    "bot.allowed_tenants",
    "bot.allowed_service_hosts",
    "fasttrack.leads",
    "fasttrack.lead_groups",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub bot: BotSettings,
    pub graph: GraphSettings,
    pub store: StoreSettings,
    pub jobs: JobSettings,
    pub fasttrack: FastTrackSettings,
    pub signin: SignInConfig,
    pub telemetry: TelemetrySettings,
}

/// Entra ID sign-in for the dashboard and JSON API in production (OIDC authorization code with PKCE),
/// using the bot's own app registration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SignInConfig {
    /// Where people reach fieldbot, e.g. https://fieldbot.contoso.com; the redirect URI is this plus
    /// /auth/callback. Empty: no sign-in, so production serves the dashboard and API to nobody.
    pub public_base_url: String,
    /// Signs the session cookies; at least 32 bytes, the same on every replica.
    #[serde(serialize_with = "redact")]
    pub session_key: SecretString,
    pub session_hours: u64,
    /// The Entra ID authority.
    pub authority: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub bind: String,
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BotSettings {
    pub app_id: String,
    #[serde(serialize_with = "redact")]
    pub app_password: SecretString,
    pub tenant_id: String,
    pub openid_metadata_url: String,
    pub allowed_tenants: Vec<String>,
    pub allowed_service_hosts: Vec<String>,
    pub token_url: String,
    pub connector_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GraphMode {
    Live,
    DryRun,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GraphSettings {
    pub base_url: String,
    pub token_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<GraphMode>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    #[serde(serialize_with = "redact_url")]
    pub url: String,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    pub run_worker: bool,
    pub concurrency: usize,
    pub lease_secs: u64,
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_secs: u64,
    pub max_retry_after_secs: u64,
    /// How long after it was queued a job's throttled retries (429 with `Retry-After`) are free; after
    /// that they count as attempts, so an API that never stops throttling dead-letters the job.
    pub max_throttled_secs: u64,
    /// How long after a mail or draft may have been made (its attempt was cut off or got no answer) the job
    /// looks it up in the mailbox before making it again.
    pub check_after_secs: u64,
    /// Folder of the wire logs (see [`crate::jobs::wire`]). Unset: beside a SQLite database, none with
    /// PostgreSQL; empty: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire_log_dir: Option<String>,
    pub poll_interval_ms: u64,
    pub dedup_retention_hours: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FastTrackSettings {
    pub leads: Vec<String>,
    /// Entra group object ids whose members are leads too (checked through Graph).
    pub lead_groups: Vec<String>,
    /// A channel (conversation id) where leads are told about new requests; empty = email the leads.
    pub leads_channel: String,
    /// The mailbox notification emails are sent from; empty = the engagement FM's mailbox.
    pub mail_sender: String,
    /// An FTA request still unassigned after this many business days nudges the leads, and again every
    /// this many days; 0 turns the nudge off.
    pub fta_reminder_business_days: u32,
    /// IANA zone for proposed meeting times when the FM's mailbox does not say one.
    pub time_zone: String,
    /// Working hours (HH:MM, in that zone) inside which meetings are proposed.
    pub work_start: String,
    pub work_end: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    pub filter: String,
    pub format: LogFormat,
    /// OTLP/HTTP traces endpoint (e.g. http://otel-collector:4318/v1/traces); empty = no export.
    #[serde(default)]
    pub otlp_endpoint: String,
}

fn redact<S: Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    if secret.expose_secret().is_empty() {
        s.serialize_str("")
    } else {
        s.serialize_str("[redacted]")
    }
}

fn redact_url<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url_password(url))
}

/// `postgres://user:secret@host/db` -> `postgres://user:[redacted]@host/db`; used for logs and print-config.
pub fn redact_url_password(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("[redacted]"));
            url.to_string()
        }
        _ => raw.to_string(),
    }
}

impl Settings {
    /// Loads the layered configuration from the process environment and `./config`.
    pub fn load() -> Result<Settings, ConfigError> {
        let env_name = std::env::var("FIELDBOT_ENV").ok();
        Self::load_from(
            env_name.as_deref(),
            Path::new("config"),
            std::env::vars().collect(),
        )
    }

    /// The same layering with every input explicit, so tests need not touch the process environment.
    pub fn load_from(
        env_name: Option<&str>,
        config_dir: &Path,
        env: Vec<(String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(name) = env_name.filter(|n| !n.trim().is_empty()) {
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(ConfigError::Invalid(format!(
                    "FIELDBOT_ENV={name:?} is not a plain name"
                )));
            }
            let path = config_dir.join(format!("{name}.toml"));
            if !path.exists() {
                return Err(ConfigError::Invalid(format!(
                    "FIELDBOT_ENV={name} but {} does not exist",
                    path.display()
                )));
            }
            builder = builder.add_source(config::File::from(path));
        }
        let vars: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("FIELDBOT__"))
            .collect();
        let mut environment = config::Environment::with_prefix("FIELDBOT")
            .prefix_separator("__")
            .separator("__")
            .list_separator(",")
            .try_parsing(true)
            .source(Some(vars));
        for key in LIST_KEYS {
            environment = environment.with_list_parse_key(key);
        }
        let settings: Settings = builder.add_source(environment).build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Local mode: no bot credentials. The service then accepts unauthenticated requests from loopback only.
    pub fn is_local(&self) -> bool {
        self.bot.app_id.trim().is_empty()
    }

    pub fn bind_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.bind.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "server.bind {:?} is not an address such as 127.0.0.1:3978",
                self.server.bind
            ))
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bind = self.bind_addr()?;
        if self.is_local() {
            if !bind.ip().is_loopback() {
                return Err(ConfigError::Invalid(format!(
                    "refusing to listen on {bind} without bot credentials: local mode accepts unauthenticated \
                     requests and is loopback-only; set bot.app_id, bot.app_password and bot.tenant_id, or bind 127.0.0.1"
                )));
            }
        } else {
            let mut missing = Vec::new();
            if self.bot.app_password.expose_secret().is_empty() {
                missing.push("bot.app_password");
            }
            if self.bot.tenant_id.trim().is_empty() {
                missing.push("bot.tenant_id");
            }
            if !missing.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "bot.app_id is set (production mode) but {} is empty",
                    missing.join(" and ")
                )));
            }
        }
        if self.is_local() && self.graph.mode == Some(GraphMode::Live) {
            return Err(ConfigError::Invalid(
                "graph.mode = \"live\" needs the bot's credentials (bot.app_id, bot.app_password, bot.tenant_id)"
                    .into(),
            ));
        }
        let scheme = self.store.url.split("://").next().unwrap_or_default();
        if !matches!(scheme, "sqlite" | "postgres" | "postgresql") {
            return Err(ConfigError::Invalid(format!(
                "store.url must start with sqlite:// or postgres://, got {:?}",
                redact_url_password(&self.store.url)
            )));
        }
        for (key, value) in [
            ("bot.openid_metadata_url", &self.bot.openid_metadata_url),
            ("graph.base_url", &self.graph.base_url),
        ] {
            check_http_url(key, value)?;
        }
        check_http_url("bot.token_url", &self.bot_token_url())?;
        check_http_url("graph.token_url", &self.graph_token_url())?;
        for host in &self.bot.allowed_service_hosts {
            if host.trim().is_empty() || host.contains('/') || host.contains("://") {
                return Err(ConfigError::Invalid(format!(
                    "bot.allowed_service_hosts entry {host:?} must be a host name such as smba.trafficmanager.net or *.example.com"
                )));
            }
        }
        if self.jobs.concurrency == 0 || self.jobs.max_attempts == 0 || self.jobs.lease_secs == 0 {
            return Err(ConfigError::Invalid(
                "jobs.concurrency, jobs.max_attempts and jobs.lease_secs must be at least 1".into(),
            ));
        }
        if jiff::tz::TimeZone::get(&self.fasttrack.time_zone).is_err() {
            return Err(ConfigError::Invalid(format!(
                "fasttrack.time_zone {:?} is not an IANA time zone such as Europe/Berlin",
                self.fasttrack.time_zone
            )));
        }
        let start = self.fasttrack.work_start.parse::<jiff::civil::Time>();
        let end = self.fasttrack.work_end.parse::<jiff::civil::Time>();
        match (start, end) {
            (Ok(s), Ok(e)) if s < e => {}
            _ => {
                return Err(ConfigError::Invalid(format!(
                    "fasttrack.work_start {:?} and work_end {:?} must be HH:MM with start before end",
                    self.fasttrack.work_start, self.fasttrack.work_end
                )));
            }
        }
        if !self.signin.session_key.expose_secret().is_empty()
            && self.signin.session_key.expose_secret().len() < 32
        {
            return Err(ConfigError::Invalid(
                "signin.session_key must be at least 32 bytes".into(),
            ));
        }
        if self.server.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "server.max_body_bytes must be at least 1024".into(),
            ));
        }
        Ok(())
    }

    pub fn graph_mode(&self) -> GraphMode {
        self.graph.mode.unwrap_or(if self.is_local() {
            GraphMode::DryRun
        } else {
            GraphMode::Live
        })
    }

    /// Tenants whose activities are accepted; empty means "any" (local mode only).
    /// The folder of the wire logs (see [`JobSettings::wire_log_dir`]), if there is one.
    pub fn wire_log_dir(&self) -> Option<std::path::PathBuf> {
        match self.jobs.wire_log_dir.as_deref() {
            Some("") => None,
            Some(dir) => Some(dir.into()),
            None if self.store.url.starts_with("sqlite:") && !self.store.url.contains("memory") => {
                let options: sqlx::sqlite::SqliteConnectOptions = self.store.url.parse().ok()?;
                let db = options.get_filename();
                let name = db.file_name()?.to_str()?;
                Some(db.with_file_name(format!("{name}.wire")))
            }
            None => None,
        }
    }

    pub fn allowed_tenants(&self) -> Vec<String> {
        if !self.bot.allowed_tenants.is_empty() {
            return self.bot.allowed_tenants.clone();
        }
        if self.is_local() {
            Vec::new()
        } else {
            vec![self.bot.tenant_id.clone()]
        }
    }

    pub fn allowed_service_hosts(&self) -> Vec<String> {
        if !self.bot.allowed_service_hosts.is_empty() {
            return self.bot.allowed_service_hosts.clone();
        }
        let defaults = if self.is_local() {
            LOOPBACK_SERVICE_HOSTS
        } else {
            MICROSOFT_SERVICE_HOSTS
        };
        defaults.iter().map(|h| h.to_string()).collect()
    }

    pub fn bot_token_url(&self) -> String {
        self.bot
            .token_url
            .replace("{tenant_id}", &self.bot.tenant_id)
    }

    pub fn graph_token_url(&self) -> String {
        self.graph
            .token_url
            .replace("{tenant_id}", &self.bot.tenant_id)
    }

    /// The sign-in settings when production sign-in is configured.
    pub fn signin_settings(&self) -> Option<crate::http::signin::SignInSettings> {
        let base = self.signin.public_base_url.trim().trim_end_matches('/');
        if self.is_local() || base.is_empty() || self.signin.session_key.expose_secret().is_empty()
        {
            return None;
        }
        let authority = self.signin.authority.trim_end_matches('/');
        let tenant = &self.bot.tenant_id;
        Some(crate::http::signin::SignInSettings {
            client_id: self.bot.app_id.clone(),
            client_secret: SecretString::from(self.bot.app_password.expose_secret().to_string()),
            tenant_id: tenant.clone(),
            authorize_url: format!("{authority}/{tenant}/oauth2/v2.0/authorize"),
            token_url: format!("{authority}/{tenant}/oauth2/v2.0/token"),
            jwks_url: format!("{authority}/{tenant}/discovery/v2.0/keys"),
            issuer: format!("{authority}/{tenant}/v2.0"),
            redirect_url: format!("{base}/auth/callback"),
            session_key: SecretString::from(self.signin.session_key.expose_secret().to_string()),
            session_hours: self.signin.session_hours.max(1),
        })
    }

    /// The effective configuration as TOML with secrets redacted (`fieldbot print-config`).
    pub fn redacted_toml(&self) -> Result<String, ConfigError> {
        toml::to_string_pretty(self).map_err(|e| ConfigError::Invalid(e.to_string()))
    }
}

fn check_http_url(key: &str, value: &str) -> Result<(), ConfigError> {
    match url::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err(ConfigError::Invalid(format!(
            "{key} {value:?} is not an http(s) URL"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::load_from(None, Path::new("config"), env(pairs))
    }

    #[test]
    fn embedded_defaults_are_local_mode() {
        let s = load(&[]).unwrap();
        assert!(s.is_local());
        assert_eq!(s.server.bind, "127.0.0.1:3978");
        assert_eq!(s.store.url, "sqlite://data/fieldbot.db");
        assert_eq!(s.graph_mode(), GraphMode::DryRun);
        assert_eq!(s.graph.base_url, "https://graph.microsoft.com/v1.0");
        assert!(s.allowed_tenants().is_empty());
        assert!(s.allowed_service_hosts().contains(&"127.0.0.1".to_string()));
    }

    #[test]
    fn env_overrides_file_and_lists_split_on_commas() {
        let s = load(&[
            ("FIELDBOT__FASTTRACK__LEADS", "a@x.com,b@x.com"),
            ("FIELDBOT__SERVER__BIND", "127.0.0.1:4000"),
        ])
        .unwrap();
        assert_eq!(s.fasttrack.leads, vec!["a@x.com", "b@x.com"]);
        assert_eq!(s.server.bind, "127.0.0.1:4000");
    }

    #[test]
    fn a_password_with_commas_and_digits_stays_one_string() {
        let s = load(&[
            (
                "FIELDBOT__BOT__APP_ID",
                "11111111-2222-3333-4444-555555555555",
            ),
            ("FIELDBOT__BOT__APP_PASSWORD", "12,34"),
            ("FIELDBOT__BOT__TENANT_ID", "t1"),
        ])
        .unwrap();
        assert_eq!(s.bot.app_password.expose_secret(), "12,34");
        assert_eq!(s.allowed_tenants(), vec!["t1"]);
        assert_eq!(s.graph_mode(), GraphMode::Live);
        assert_eq!(
            s.bot_token_url(),
            "https://login.microsoftonline.com/t1/oauth2/v2.0/token"
        );
        assert!(
            s.allowed_service_hosts()
                .contains(&"smba.trafficmanager.net".to_string())
        );
    }

    #[test]
    fn unknown_keys_fail_with_their_name() {
        let err = load(&[("FIELDBOT__SERVER__PORTT", "1")]).unwrap_err();
        assert!(err.to_string().contains("portt"), "{err}");
        let err = load(&[("FIELDBOT__NOPE__X", "1")]).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn local_mode_refuses_a_public_bind() {
        let err = load(&[("FIELDBOT__SERVER__BIND", "0.0.0.0:3978")]).unwrap_err();
        assert!(err.to_string().contains("without bot credentials"), "{err}");
    }

    #[test]
    fn production_needs_password_and_tenant() {
        let err = load(&[("FIELDBOT__BOT__APP_ID", "abc")]).unwrap_err();
        assert!(err.to_string().contains("bot.app_password"), "{err}");
        assert!(err.to_string().contains("bot.tenant_id"), "{err}");
    }

    #[test]
    fn environment_overlay_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("staging.toml"), "[jobs]\nconcurrency = 3\n").unwrap();
        let s = Settings::load_from(Some("staging"), dir.path(), Vec::new()).unwrap();
        assert_eq!(s.jobs.concurrency, 3);
        let err = Settings::load_from(Some("missing"), dir.path(), Vec::new()).unwrap_err();
        assert!(err.to_string().contains("missing.toml"), "{err}");
    }

    #[test]
    fn print_config_redacts_secrets() {
        let s = load(&[
            ("FIELDBOT__BOT__APP_ID", "abc"),
            ("FIELDBOT__BOT__APP_PASSWORD", "hunter2"),
            ("FIELDBOT__BOT__TENANT_ID", "t1"),
            ("FIELDBOT__STORE__URL", "postgres://u:pw-secret@db/fieldbot"),
        ])
        .unwrap();
        let text = s.redacted_toml().unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("pw-secret"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
        // The redacted output must still parse as configuration with every section.
        let _: toml::Value = toml::from_str(&text).unwrap();
    }

    #[test]
    fn bad_values_are_named() {
        let err = load(&[("FIELDBOT__STORE__URL", "mysql://x")]).unwrap_err();
        assert!(err.to_string().contains("store.url"), "{err}");
        let err = load(&[("FIELDBOT__SERVER__BIND", "nonsense")]).unwrap_err();
        assert!(err.to_string().contains("server.bind"), "{err}");
        let err = load(&[("FIELDBOT__JOBS__CONCURRENCY", "lots")]).unwrap_err();
        assert!(err.to_string().contains("concurrency"), "{err}");
    }
}
