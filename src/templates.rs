//! The intro email, the invite body, the follow-up email and the standard agenda, as editable files.
//!
//! Templates live in `config/templates` and the agenda in `config/agenda.toml`, so operators change the
//! wording without a rebuild; copies are embedded for runs without a `config/` directory. Everything is
//! loaded and test-rendered once at start, so a broken template stops the start naming its file and line
//! instead of failing the first real email.
//!
//! HTML templates are auto-escaped whatever their file name (minijinja would otherwise pick escaping by
//! suffix), and undefined variables are errors. Subjects (`<body>.subject.txt`) are plain text: a separate
//! environment renders them unescaped, and the result is folded onto one line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use serde::{Deserialize, Serialize};

use crate::domain::engagement::{Motion, RosterMember, is_required_attendee};
use crate::domain::roles::Role;

const INTRO_EMAIL: &str = "intro_email.html";
const INVITE_BODY: &str = "invite_body.html";
const FOLLOWUP_EMAIL: &str = "followup_email.html";
const FTA_EMAIL: &str = "fta_email.html";
const SYNC_BODY: &str = "sync_body.html";
const SUBJECT_SUFFIX: &str = ".subject.txt";

/// The bodies that must exist; each also needs its `<body>.subject.txt`.
const REQUIRED_BODIES: [&str; 5] = [
    INTRO_EMAIL,
    INVITE_BODY,
    FOLLOWUP_EMAIL,
    FTA_EMAIL,
    SYNC_BODY,
];

/// Outlook and Graph cap subjects at 255 characters.
const MAX_SUBJECT_CHARS: usize = 255;

/// The shipped copies, for runs without `config/templates` (e.g. `cargo run` from elsewhere).
const EMBEDDED_TEMPLATES: [(&str, &str); 12] = [
    (
        "_agenda.html",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/templates/_agenda.html"
        )),
    ),
    (
        "_purpose.html",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/templates/_purpose.html"
        )),
    ),
    (
        "intro_email.html",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/templates/intro_email.html"
        )),
    ),
    (
        "intro_email.subject.txt",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/templates/intro_email.subject.txt"
        )),
    ),
    (
        "invite_body.html",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/templates/invite_body.html"
        )),
    ),
    (
        "invite_body.subject.txt",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/templates/invite_body.subject.txt"
        )),
    ),
    (
        "followup_email.html",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/templates/followup_email.html"
        )),
    ),
    (
        "followup_email.subject.txt",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/templates/followup_email.subject.txt"
        )),
    ),
    (
        "fta_email.html",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/templates/fta_email.html"
        )),
    ),
    (
        "fta_email.subject.txt",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/templates/fta_email.subject.txt"
        )),
    ),
    (
        "sync_body.html",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/templates/sync_body.html"
        )),
    ),
    (
        "sync_body.subject.txt",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/templates/sync_body.subject.txt"
        )),
    ),
];

const EMBEDDED_AGENDA: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/config/agenda.toml"));

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("template {name} is missing from {dir}")]
    Missing { name: String, dir: String },
    #[error("{file}:{line}: template syntax error: {message}")]
    Syntax {
        file: String,
        line: usize,
        message: String,
    },
    /// A failed render: an undefined variable, a missing include, a bad filter argument.
    #[error("{template}:{line}: cannot render: {message}")]
    Render {
        template: String,
        line: usize,
        message: String,
    },
    #[error("{path}: invalid agenda: {message}")]
    Agenda { path: String, message: String },
}

impl TemplateError {
    fn render(template: &str, err: &minijinja::Error) -> TemplateError {
        TemplateError::Render {
            // The error names the innermost template (an include) when it has one.
            template: err.name().unwrap_or(template).to_owned(),
            line: err.line().unwrap_or(0),
            message: detail(err),
        }
    }
}

fn detail(err: &minijinja::Error) -> String {
    match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    }
}

/// One line of the standard agenda.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AgendaItem {
    pub letter: String,
    pub text: String,
    #[serde(default)]
    pub details: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgendaFile {
    #[serde(rename = "item")]
    items: Vec<AgendaItem>,
    #[serde(default)]
    followup: FollowupConfig,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FollowupConfig {
    #[serde(default)]
    asks: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    /// Plain text, one line.
    pub subject: String,
    pub html: String,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct IntroContext {
    pub customer: String,
    /// "RFA" or "Health".
    pub motion: String,
    pub fm_name: String,
    pub required: Vec<PersonLine>,
    pub optional: Vec<PersonLine>,
    /// A slot as `slots::describe` writes it.
    pub slot: Option<String>,
}

impl IntroContext {
    /// Splits the roster the way the playbook does: ATS and TAM (and an aligned FTA) are MANDATORY, the
    /// rest OPTIONAL, each group in playbook order.
    pub fn from_roster(
        customer: &str,
        motion: Motion,
        fm_name: &str,
        roster: &[RosterMember],
        slot: Option<String>,
    ) -> IntroContext {
        const ORDER: [Role; 8] = [
            Role::Ats,
            Role::Tam,
            Role::Fta,
            Role::Ae,
            Role::Csm,
            Role::Tsp,
            Role::Ssp,
            Role::Ade,
        ];
        let mut members: Vec<&RosterMember> = roster.iter().collect();
        members.sort_by_key(|m| ORDER.iter().position(|r| *r == m.role));
        let line = |m: &RosterMember| PersonLine {
            role: m.role.abbr().to_owned(),
            name: m.person.name.clone(),
            email: m.person.address().map(str::to_owned),
        };
        IntroContext {
            customer: customer.to_owned(),
            motion: motion.label().to_owned(),
            fm_name: fm_name.to_owned(),
            required: members
                .iter()
                .filter(|m| is_required_attendee(m.role))
                .map(|m| line(m))
                .collect(),
            optional: members
                .iter()
                .filter(|m| !is_required_attendee(m.role))
                .map(|m| line(m))
                .collect(),
            slot,
        }
    }
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct PersonLine {
    /// The role abbreviation, e.g. "ATS".
    pub role: String,
    pub name: String,
    pub email: Option<String>,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct FollowupContext {
    pub customer: String,
    pub fm_name: String,
    /// Free text; each non-empty line becomes a paragraph.
    pub summary: String,
    pub open_items: Vec<String>,
    pub next_steps: Vec<String>,
    pub asks: Vec<AskLine>,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct AskLine {
    pub text: String,
    pub done: bool,
}

/// The loaded templates and agenda. Cheap to share behind an `Arc`.
pub struct Templates {
    html: Environment<'static>,
    text: Environment<'static>,
    agenda: Vec<AgendaItem>,
    followup_asks: Vec<String>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("agenda", &self.agenda.len())
            .finish_non_exhaustive()
    }
}

impl Templates {
    /// Loads every `*.html` and `*.txt` file in `dir` (names starting with `_` are partials for
    /// `include`) and the agenda from `agenda_path`, then renders each email once with sample data.
    pub fn load(dir: &Path, agenda_path: &Path) -> Result<Templates, TemplateError> {
        let agenda_source = read(agenda_path)?;
        let entries = std::fs::read_dir(dir).map_err(|source| TemplateError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let mut files: Vec<(String, String, PathBuf)> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| TemplateError::Io {
                path: dir.display().to_string(),
                source,
            })?;
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            // Editor backups and dotfiles are not templates.
            if name.starts_with('.') || !(name.ends_with(".html") || name.ends_with(".txt")) {
                continue;
            }
            if !path.is_file() {
                continue;
            }
            let source = read(&path)?;
            files.push((name, source, path));
        }
        files.sort();
        Templates::build(
            files
                .into_iter()
                .map(|(name, source, path)| (name, source, path.display().to_string())),
            &agenda_source,
            &agenda_path.display().to_string(),
            &dir.display().to_string(),
        )
    }

    /// The same from the copies embedded in the binary.
    pub fn embedded() -> Result<Templates, TemplateError> {
        Templates::build(
            EMBEDDED_TEMPLATES.iter().map(|(name, source)| {
                (
                    (*name).to_owned(),
                    (*source).to_owned(),
                    format!("embedded config/templates/{name}"),
                )
            }),
            EMBEDDED_AGENDA,
            "embedded config/agenda.toml",
            "embedded config/templates",
        )
    }

    /// [`Templates::load`] when `dir` exists, else the embedded copies, so a binary run away from its
    /// `config/` still starts; a present but broken directory is an error, never silently replaced.
    pub fn load_or_embedded(dir: &Path, agenda_path: &Path) -> Result<Templates, TemplateError> {
        if dir.exists() {
            Templates::load(dir, agenda_path)
        } else {
            Templates::embedded()
        }
    }

    fn build(
        files: impl Iterator<Item = (String, String, String)>,
        agenda_source: &str,
        agenda_label: &str,
        dir_label: &str,
    ) -> Result<Templates, TemplateError> {
        let (agenda, followup_asks) = parse_agenda(agenda_source, agenda_label)?;
        let agenda_value = Value::from(Serde(&agenda));
        let mut html = environment(AutoEscape::Html, agenda_value.clone());
        let mut text = environment(AutoEscape::None, agenda_value);
        let mut names = BTreeSet::new();
        for (name, source, label) in files {
            let env = if name.ends_with(SUBJECT_SUFFIX) {
                &mut text
            } else {
                &mut html
            };
            env.add_template_owned(name.clone(), source)
                .map_err(|err| TemplateError::Syntax {
                    file: label,
                    line: err.line().unwrap_or(0),
                    message: detail(&err),
                })?;
            names.insert(name);
        }
        for body in REQUIRED_BODIES {
            for name in [body.to_owned(), subject_name(body)] {
                if !names.contains(&name) {
                    return Err(TemplateError::Missing {
                        name,
                        dir: dir_label.to_owned(),
                    });
                }
            }
        }
        let templates = Templates {
            html,
            text,
            agenda,
            followup_asks,
        };
        templates.check()?;
        Ok(templates)
    }

    /// Renders every template with full and with empty sample data, so both sides of each `if` meet
    /// strict undefined checking at start rather than in front of a customer.
    fn check(&self) -> Result<(), TemplateError> {
        for ctx in [IntroContext::sample(), IntroContext::sample_empty()] {
            self.intro_email(&ctx)?;
            self.invite_body(&ctx)?;
            self.invite_subject(&ctx)?;
        }
        for ctx in [FollowupContext::sample(), FollowupContext::sample_empty()] {
            self.followup_email(&ctx)?;
        }
        for ctx in [FtaEmailContext::sample(), FtaEmailContext::sample_empty()] {
            self.fta_email(&ctx)?;
        }
        for ctx in [SyncContext::sample(), SyncContext::sample_empty()] {
            self.sync_invite(&ctx)?;
        }
        Ok(())
    }

    /// The standard agenda, a–n in order.
    pub fn agenda(&self) -> &[AgendaItem] {
        &self.agenda
    }

    /// The asks for the follow-up email, from the playbook's account team sync.
    pub fn followup_asks(&self) -> &[String] {
        &self.followup_asks
    }

    pub fn intro_email(&self, ctx: &IntroContext) -> Result<RenderedEmail, TemplateError> {
        self.email(INTRO_EMAIL, Value::from(Serde(ctx)))
    }

    /// HTML body of the calendar invite: purpose and the agenda a–n.
    pub fn invite_body(&self, ctx: &IntroContext) -> Result<String, TemplateError> {
        self.render_html(INVITE_BODY, Value::from(Serde(ctx)))
    }

    /// One-line plain-text subject of the calendar invite.
    pub fn invite_subject(&self, ctx: &IntroContext) -> Result<String, TemplateError> {
        self.render_subject(INVITE_BODY, Value::from(Serde(ctx)))
    }

    pub fn followup_email(&self, ctx: &FollowupContext) -> Result<RenderedEmail, TemplateError> {
        self.email(FOLLOWUP_EMAIL, Value::from(Serde(ctx)))
    }

    /// Subject and HTML body of the recurring Field team sync.
    pub fn sync_invite(&self, ctx: &SyncContext) -> Result<RenderedEmail, TemplateError> {
        self.email(SYNC_BODY, Value::from(Serde(ctx)))
    }

    /// A notification about an FTA request: submitted (the playbook's key output) and every later change.
    pub fn fta_email(&self, ctx: &FtaEmailContext) -> Result<RenderedEmail, TemplateError> {
        self.email(FTA_EMAIL, Value::from(Serde(ctx)))
    }

    fn email(&self, body: &str, ctx: Value) -> Result<RenderedEmail, TemplateError> {
        Ok(RenderedEmail {
            subject: self.render_subject(body, ctx.clone())?,
            html: self.render_html(body, ctx)?,
        })
    }

    fn render_html(&self, name: &str, ctx: Value) -> Result<String, TemplateError> {
        self.html
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|err| TemplateError::render(name, &err))
    }

    fn render_subject(&self, body: &str, ctx: Value) -> Result<String, TemplateError> {
        let name = subject_name(body);
        let raw = self
            .text
            .get_template(&name)
            .and_then(|t| t.render(ctx))
            .map_err(|err| TemplateError::render(&name, &err))?;
        Ok(one_line(&raw))
    }
}

fn subject_name(body: &str) -> String {
    let stem = body.strip_suffix(".html").unwrap_or(body);
    format!("{stem}{SUBJECT_SUFFIX}")
}

fn environment(escape: AutoEscape, agenda: Value) -> Environment<'static> {
    let mut env = Environment::new();
    // Every template of an environment gets the same escaping: a body saved as `.txt` by mistake must
    // still escape, and a subject must never carry `&lt;` into a mail client.
    env.set_auto_escape_callback(move |_| escape.clone());
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_global("agenda", agenda);
    env
}

/// A subject is a single header line: control characters and every kind of line break (CR, LF, NEL,
/// U+2028/2029) become spaces and runs collapse, so user text cannot start a new header.
fn one_line(raw: &str) -> String {
    let folded: String = raw
        .chars()
        .map(|c| {
            if c.is_control() || c.is_whitespace() {
                ' '
            } else {
                c
            }
        })
        .collect();
    let mut out = folded.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some((cut, _)) = out.char_indices().nth(MAX_SUBJECT_CHARS) {
        out.truncate(cut);
        out.truncate(out.trim_end().len());
    }
    out
}

fn read(path: &Path) -> Result<String, TemplateError> {
    std::fs::read_to_string(path).map_err(|source| TemplateError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn parse_agenda(
    source: &str,
    label: &str,
) -> Result<(Vec<AgendaItem>, Vec<String>), TemplateError> {
    let invalid = |message: String| TemplateError::Agenda {
        path: label.to_owned(),
        message,
    };
    let file: AgendaFile = toml::from_str(source).map_err(|err| invalid(err.to_string()))?;
    if file.items.is_empty() {
        return Err(invalid("no [[item]]".to_owned()));
    }
    let mut letters = BTreeSet::new();
    for item in &file.items {
        if item.letter.trim().is_empty() || item.text.trim().is_empty() {
            return Err(invalid(format!(
                "item {:?} needs both a letter and a text",
                item.letter
            )));
        }
        if !letters.insert(item.letter.trim()) {
            return Err(invalid(format!("letter {:?} appears twice", item.letter)));
        }
    }
    Ok((file.items, file.followup.asks))
}

impl IntroContext {
    fn sample() -> IntroContext {
        let person = |role: &str, name: &str| PersonLine {
            role: role.to_owned(),
            name: name.to_owned(),
            email: Some(format!("{}@contoso.example", role.to_ascii_lowercase())),
        };
        IntroContext {
            customer: "Contoso".to_owned(),
            motion: "Health".to_owned(),
            fm_name: "Avery FM".to_owned(),
            required: vec![person("ATS", "Sam Ats"), person("TAM", "Kim Tam")],
            optional: vec![
                person("AE", "Lee Ae"),
                PersonLine {
                    email: None,
                    ..person("CSM", "Noor Csm")
                },
            ],
            slot: Some("Tue 24 Nov, 10:00–11:00 (Europe/Berlin)".to_owned()),
        }
    }

    fn sample_empty() -> IntroContext {
        IntroContext {
            customer: "Contoso".to_owned(),
            motion: "RFA".to_owned(),
            fm_name: "Avery FM".to_owned(),
            required: Vec::new(),
            optional: Vec::new(),
            slot: None,
        }
    }
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct SyncContext {
    pub customer: String,
    pub fm_name: String,
    /// "Every 2 weeks on Tuesday at 15:00 (Europe/Berlin), 30 min".
    pub rhythm: String,
    pub asks: Vec<String>,
}

impl SyncContext {
    fn sample() -> SyncContext {
        SyncContext {
            customer: "Contoso Ltd".into(),
            fm_name: "Dana".into(),
            rhythm: "Every week on Tuesday at 15:00 (Europe/Berlin), 30 min".into(),
            asks: vec!["Email intro to the customer".into()],
        }
    }

    fn sample_empty() -> SyncContext {
        SyncContext {
            customer: String::new(),
            fm_name: String::new(),
            rhythm: String::new(),
            asks: Vec::new(),
        }
    }
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct FtaEmailContext {
    pub request_id: i64,
    pub customer: String,
    pub status_label: String,
    /// One sentence: what happened.
    pub headline: String,
    pub requestor: String,
    pub assigned_fta: Option<String>,
    pub reason: Option<String>,
    pub ask: Option<String>,
    pub facts: Vec<FactLine>,
    pub history: Vec<HistoryLine>,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct FactLine {
    pub label: String,
    pub value: String,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct HistoryLine {
    pub at: String,
    pub who: String,
    pub action: String,
}

impl FtaEmailContext {
    fn sample() -> FtaEmailContext {
        FtaEmailContext {
            request_id: 42,
            customer: "Contoso Ltd".into(),
            status_label: "Assigned".into(),
            headline: "Your FTA request is assigned.".into(),
            requestor: "Dana".into(),
            assigned_fta: Some("Ada".into()),
            reason: Some("Out of scope".into()),
            ask: Some("Which workloads?".into()),
            facts: vec![FactLine {
                label: "TPID".into(),
                value: "12345".into(),
            }],
            history: vec![HistoryLine {
                at: "24 Nov 10:00 UTC".into(),
                who: "Dana".into(),
                action: "submitted".into(),
            }],
        }
    }

    fn sample_empty() -> FtaEmailContext {
        FtaEmailContext {
            request_id: 1,
            customer: String::new(),
            status_label: String::new(),
            headline: String::new(),
            requestor: String::new(),
            assigned_fta: None,
            reason: None,
            ask: None,
            facts: Vec::new(),
            history: Vec::new(),
        }
    }
}

impl FollowupContext {
    fn sample() -> FollowupContext {
        FollowupContext {
            customer: "Contoso".to_owned(),
            fm_name: "Avery FM".to_owned(),
            summary: "Intent confirmed for Exchange Online.\n\nTeams is blocked on licensing."
                .to_owned(),
            open_items: vec!["Confirm E5 licenses".to_owned()],
            next_steps: vec!["Intro email to the customer".to_owned()],
            asks: vec![
                AskLine {
                    text: "Email intro to the customer".to_owned(),
                    done: true,
                },
                AskLine {
                    text: "Schedule/ask for Invite Internal syncing rhythm with Field Team"
                        .to_owned(),
                    done: false,
                },
            ],
        }
    }

    fn sample_empty() -> FollowupContext {
        FollowupContext {
            customer: "Contoso".to_owned(),
            fm_name: "Avery FM".to_owned(),
            summary: String::new(),
            open_items: Vec::new(),
            next_steps: Vec::new(),
            asks: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use crate::domain::engagement::Person;

    fn config_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
    }

    fn from_config() -> Templates {
        let config = config_dir();
        Templates::load(&config.join("templates"), &config.join("agenda.toml")).unwrap()
    }

    /// A copy of config/ in a temporary directory, with `edit` applied to one template.
    fn edited(name: &str, source: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("templates");
        std::fs::create_dir(&dir).unwrap();
        for entry in std::fs::read_dir(config_dir().join("templates")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        std::fs::write(dir.join(name), source).unwrap();
        let agenda = tmp.path().join("agenda.toml");
        std::fs::copy(config_dir().join("agenda.toml"), &agenda).unwrap();
        (tmp, dir, agenda)
    }

    const HOSTILE: [&str; 4] = [
        "<script>alert(1)</script>",
        "\"><a href=\"javascript:alert(1)\">click</a>",
        "javascript:alert(document.cookie)",
        "Fabrikam & Sons <b>bold</b> 'quoted'",
    ];

    /// What minijinja's HTML escaper makes of `s`.
    fn escaped(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#x27;")
            .replace('/', "&#x2f;")
    }

    fn assert_inert(html: &str, hostile: &str) {
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<a "), "{html}");
        assert!(!html.contains("href=\""), "{html}");
        assert!(!html.contains("\"><a"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(html.contains(&escaped(hostile)), "{html}");
    }

    #[test]
    fn embedded_and_config_agree() {
        let embedded = Templates::embedded().unwrap();
        let loaded = from_config();
        assert_eq!(embedded.agenda(), loaded.agenda());
        assert_eq!(embedded.followup_asks(), loaded.followup_asks());
        for ctx in [IntroContext::sample(), IntroContext::sample_empty()] {
            assert_eq!(
                embedded.intro_email(&ctx).unwrap(),
                loaded.intro_email(&ctx).unwrap()
            );
            assert_eq!(
                embedded.invite_body(&ctx).unwrap(),
                loaded.invite_body(&ctx).unwrap()
            );
        }
        let ctx = FollowupContext::sample();
        assert_eq!(
            embedded.followup_email(&ctx).unwrap(),
            loaded.followup_email(&ctx).unwrap()
        );
        // Every file in config/templates is embedded, so nothing is silently dropped from the fallback.
        let mut on_disk: Vec<String> = std::fs::read_dir(config_dir().join("templates"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        on_disk.sort();
        let mut embedded_names: Vec<String> = EMBEDDED_TEMPLATES
            .iter()
            .map(|(n, _)| (*n).to_owned())
            .collect();
        embedded_names.sort();
        assert_eq!(on_disk, embedded_names);
        // load_or_embedded falls back only when the directory is absent.
        let nowhere = Path::new("/nonexistent/fieldbot/templates");
        assert!(Templates::load_or_embedded(nowhere, &config_dir().join("agenda.toml")).is_ok());
    }

    #[test]
    fn agenda_holds_the_seed_items_a_to_n() {
        let t = Templates::embedded().unwrap();
        let letters: String = t.agenda().iter().map(|i| i.letter.as_str()).collect();
        assert_eq!(letters, "abcdefghijklmn");
        let a = &t.agenda()[0];
        assert_eq!(a.text, "Intro");
        assert_eq!(
            a.details,
            ["FastTrack Process (Validate Field team understanding)"]
        );
        let c = &t.agenda()[2];
        assert_eq!(c.text, "Validate intent (either Health or RFA Workloads)");
        assert_eq!(
            c.details,
            ["Obtain reasons for why workloads are blocked/no intent"]
        );
        assert_eq!(t.agenda()[12].text, "Asks");
        assert!(
            t.agenda()[13]
                .text
                .starts_with("Determine Internal Field Team syncing rhythm")
        );
        assert_eq!(t.followup_asks().len(), 3);
        assert_eq!(t.followup_asks()[0], "Email intro to the customer");
    }

    #[test]
    fn invite_body_lists_every_agenda_item_with_its_letter() {
        let t = Templates::embedded().unwrap();
        let body = t.invite_body(&IntroContext::sample()).unwrap();
        assert!(body.contains("<ol"));
        for item in t.agenda() {
            // Text goes through the HTML escaper like any other value ("/" becomes "&#x2f;").
            let text = item.text.replace('&', "&amp;").replace('/', "&#x2f;");
            let line = format!("<strong>{}.</strong> {}", item.letter, text);
            assert!(body.contains(&line), "{line} not in {body}");
            for detail in &item.details {
                assert!(body.contains(&format!("<li>{}</li>", detail.replace('/', "&#x2f;"))));
            }
        }
        assert!(body.contains("Purpose:"));
        assert_eq!(
            t.invite_subject(&IntroContext::sample()).unwrap(),
            "Contoso: FastTrack Health account team sync"
        );
    }

    #[test]
    fn intro_email_names_mandatory_and_optional() {
        let t = Templates::embedded().unwrap();
        let email = t.intro_email(&IntroContext::sample()).unwrap();
        assert_eq!(
            email.subject,
            "FastTrack Health engagement for Contoso: account team intro"
        );
        let html = &email.html;
        let mandatory = html.find("MANDATORY:").unwrap();
        let optional = html.find("OPTIONAL:").unwrap();
        let ats = html.find("ATS: Sam Ats (ats@contoso.example)").unwrap();
        let ae = html.find("AE: Lee Ae").unwrap();
        assert!(mandatory < ats && ats < optional && optional < ae);
        assert!(html.contains("CSM: Noor Csm</li>"));
        assert!(html.contains("Purpose:"));
        assert!(html.contains("Tue 24 Nov, 10:00–11:00 (Europe&#x2f;Berlin)"));
        assert!(html.contains("<strong>n.</strong>"));
        let empty = t.intro_email(&IntroContext::sample_empty()).unwrap();
        assert!(empty.html.contains("who is the ATS and the TAM?"));
        assert!(!empty.html.contains("Proposed time"));
    }

    #[test]
    fn intro_context_from_roster_follows_the_playbook() {
        let member = |role: Role, name: &str, email: Option<&str>| RosterMember {
            role,
            person: Person {
                name: name.into(),
                email: email.map(Into::into),
                ..Person::default()
            },
        };
        let roster = [
            member(Role::Csm, "Noor", None),
            member(Role::Tam, "Kim", Some("kim@x.example")),
            member(Role::Ae, "Lee", None),
            member(Role::Fta, "Ari", None),
            member(Role::Ats, "Sam", Some("sam@x.example")),
        ];
        let ctx = IntroContext::from_roster("Contoso", Motion::Rfa, "Avery", &roster, None);
        assert_eq!(ctx.motion, "RFA");
        let roles = |lines: &[PersonLine]| lines.iter().map(|l| l.role.clone()).collect::<Vec<_>>();
        assert_eq!(roles(&ctx.required), ["ATS", "TAM", "FTA"]);
        assert_eq!(roles(&ctx.optional), ["AE", "CSM"]);
        assert_eq!(ctx.required[0].email.as_deref(), Some("sam@x.example"));
    }

    #[test]
    fn followup_email_has_summary_items_steps_and_asks() {
        let t = Templates::embedded().unwrap();
        let email = t.followup_email(&FollowupContext::sample()).unwrap();
        assert_eq!(
            email.subject,
            "Contoso: account team sync summary and next steps"
        );
        let html = &email.html;
        for needle in [
            "<p style=\"margin-top:0;\">Intent confirmed for Exchange Online.</p>",
            "<p style=\"margin-top:0;\">Teams is blocked on licensing.</p>",
            "<li>Confirm E5 licenses</li>",
            "<li>Intro email to the customer</li>",
            "<li>Email intro to the customer: done</li>",
            "<li>Schedule&#x2f;ask for Invite Internal syncing rhythm with Field Team: open</li>",
        ] {
            assert!(html.contains(needle), "{needle} not in {html}");
        }
        assert!(!html.contains("<p style=\"margin-top:0;\"></p>"));
        let empty = t.followup_email(&FollowupContext::sample_empty()).unwrap();
        assert!(empty.html.contains("None agreed yet."));
        assert!(!empty.html.contains("Asks"));
    }

    #[test]
    fn user_values_are_escaped_everywhere() {
        let t = Templates::embedded().unwrap();
        for hostile in HOSTILE {
            let mut intro = IntroContext::sample();
            intro.customer = hostile.to_owned();
            intro.fm_name = hostile.to_owned();
            intro.slot = Some(hostile.to_owned());
            intro.required[0].name = hostile.to_owned();
            intro.optional[0].email = Some(hostile.to_owned());
            let email = t.intro_email(&intro).unwrap();
            assert_inert(&email.html, hostile);
            assert_inert(&t.invite_body(&intro).unwrap(), hostile);

            let followup = FollowupContext {
                customer: hostile.to_owned(),
                summary: format!("{hostile}\n{hostile}"),
                open_items: vec![hostile.to_owned()],
                next_steps: vec![hostile.to_owned()],
                asks: vec![AskLine {
                    text: hostile.to_owned(),
                    done: false,
                }],
                ..FollowupContext::sample()
            };
            assert_inert(&t.followup_email(&followup).unwrap().html, hostile);
        }
        let mut intro = IntroContext::sample();
        intro.customer = "<script>alert(1)</script>".to_owned();
        let html = t.intro_email(&intro).unwrap().html;
        assert!(html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"));
    }

    #[test]
    fn subjects_are_plain_single_lines() {
        let t = Templates::embedded().unwrap();
        let mut intro = IntroContext::sample();
        intro.customer =
            "A & B <Ltd>\r\nBcc: victim@example.com\u{2028}X-Evil:\t1\u{85}".to_owned();
        let subject = t.intro_email(&intro).unwrap().subject;
        assert_eq!(
            subject,
            "FastTrack Health engagement for A & B <Ltd> Bcc: victim@example.com X-Evil: 1 : account team intro"
        );
        assert!(!subject.contains(['\r', '\n']));
        let mut followup = FollowupContext::sample();
        followup.customer = "x".repeat(400);
        assert_eq!(
            t.followup_email(&followup).unwrap().subject.chars().count(),
            MAX_SUBJECT_CHARS
        );
    }

    #[test]
    fn html_escaping_does_not_depend_on_the_file_name() {
        // A body-like template saved as .txt in the HTML environment still escapes.
        let (_tmp, dir, agenda) = edited("notes.txt", "{{ customer }}");
        let t = Templates::load(&dir, &agenda).unwrap();
        let out = t
            .html
            .get_template("notes.txt")
            .unwrap()
            .render(minijinja::context! { customer => "<i>x</i>" })
            .unwrap();
        assert_eq!(out, "&lt;i&gt;x&lt;&#x2f;i&gt;");
    }

    #[test]
    fn syntax_error_names_the_file_and_line() {
        let (_tmp, dir, agenda) = edited(
            "intro_email.html",
            "<p>Hi</p>\n<p>{% if customer %}unclosed</p>\n",
        );
        let err = Templates::load(&dir, &agenda).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, TemplateError::Syntax { .. }), "{msg}");
        assert!(msg.contains("intro_email.html"), "{msg}");
        assert!(msg.contains(&dir.display().to_string()), "{msg}");
    }

    #[test]
    fn undefined_variable_fails_the_load() {
        let (_tmp, dir, agenda) =
            edited("followup_email.html", "<p>Hi</p>\n<p>{{ custmer }}</p>\n");
        let err = Templates::load(&dir, &agenda).unwrap_err();
        match &err {
            TemplateError::Render { template, line, .. } => {
                assert_eq!(template, "followup_email.html");
                assert_eq!(*line, 2);
            }
            other => panic!("{other}"),
        }
        // A typo in a partial is reported against the partial.
        let (_tmp, dir, agenda) = edited("_agenda.html", "{% for i in agneda %}{% endfor %}");
        let msg = Templates::load(&dir, &agenda).unwrap_err().to_string();
        assert!(msg.contains("_agenda.html"), "{msg}");
        // In a subject too.
        let (_tmp, dir, agenda) = edited("intro_email.subject.txt", "{{ cust }}");
        let msg = Templates::load(&dir, &agenda).unwrap_err().to_string();
        assert!(msg.contains("intro_email.subject.txt"), "{msg}");
    }

    #[test]
    fn missing_files_are_named() {
        let (_tmp, dir, agenda) = edited("x.html", "");
        std::fs::remove_file(dir.join("invite_body.html")).unwrap();
        let msg = Templates::load(&dir, &agenda).unwrap_err().to_string();
        assert!(msg.contains("invite_body.html"), "{msg}");

        let (_tmp, dir, agenda) = edited("x.html", "");
        std::fs::remove_file(dir.join("followup_email.subject.txt")).unwrap();
        let msg = Templates::load(&dir, &agenda).unwrap_err().to_string();
        assert!(msg.contains("followup_email.subject.txt"), "{msg}");

        let (_tmp, dir, agenda) = edited("x.html", "");
        std::fs::remove_file(&agenda).unwrap();
        let msg = Templates::load(&dir, &agenda).unwrap_err().to_string();
        assert!(msg.contains("agenda.toml"), "{msg}");

        let missing_dir = dir.join("nope");
        let msg = Templates::load(&missing_dir, &config_dir().join("agenda.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("nope"), "{msg}");
    }

    #[test]
    fn bad_agenda_is_rejected() {
        for bad in [
            "",
            "[[item]]\nletter = \"a\"\ntext = \"\"\n",
            "[[item]]\nletter = \"a\"\ntext = \"x\"\n[[item]]\nletter = \"a\"\ntext = \"y\"\n",
            "[[item]]\nletter = \"a\"\ntext = \"x\"\ndetail = [\"typo\"]\n",
        ] {
            let err = parse_agenda(bad, "agenda.toml").unwrap_err();
            assert!(matches!(err, TemplateError::Agenda { .. }), "{bad}");
        }
    }

    #[test]
    fn templates_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Templates>();
    }
}
