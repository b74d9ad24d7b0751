//! Chat commands: parsing text and card actions into a [`Command`], and answering it.
//!
//! Parsing is kept apart from answering. [`COMMANDS`] is the single command table: the help card,
//! the usage lines in error messages and the Teams manifest are generated from it, so a command
//! cannot be documented in one place and missing in another.

mod apply;
mod engagement;
pub mod fta;
mod fta_apply;
mod help;
mod invite;
mod lexer;
mod prep;
mod roles;
mod sync;
mod sync_schedule;
mod team;

use serde_json::Value;

use crate::cards;
use crate::domain::roles::Role;

pub use apply::{CommandError, Ctx, Outcome, apply, engagement_json, view};
pub use lexer::{Mention, Token, strip_bot_mentions, tokenize};

use crate::domain::engagement::Motion;

/// Verb of the card buttons that show the help card.
pub const VERB_HELP_SHOW: &str = "help.show";
/// Verb of the card buttons that show the roles card; data `{"query": "all" | "atu" | "<ABBR>"}`.
pub const VERB_ROLES_SHOW: &str = "roles.show";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Roles(RolesQuery),
    EngagementStart {
        customer: String,
        motion: Motion,
        tpid: Option<u64>,
        tenant: Option<String>,
    },
    EngagementShow,
    EngagementClose,
    TeamShow,
    TeamAdd {
        role: Role,
        who: Who,
    },
    TeamRemove {
        role: Role,
        who: Option<Who>,
    },
    PrepShow,
    /// A click on the prep card: the item and the state it should have now.
    PrepToggle {
        engagement_id: i64,
        item: crate::domain::engagement::PrepItem,
        done: bool,
    },
    Invite {
        within: u32,
        duration: u32,
    },
    InviteSend {
        engagement_id: i64,
        invite_id: i64,
        /// Index of the chosen slot on the card.
        slot: Option<usize>,
    },
    InviteOtherTimes {
        engagement_id: i64,
        invite_id: i64,
        within: Option<u32>,
    },
    InviteCancel {
        engagement_id: i64,
        invite_id: i64,
    },
    SyncNotes,
    /// The submitted notes form (its inputs, still unparsed).
    SyncNotesSubmit {
        engagement_id: i64,
        data: Value,
    },
    /// `sync`, `sync schedule …`, `sync join <link>`.
    Sync(sync_schedule::SyncCommand),
    /// `fta …` typed in chat.
    Fta(fta::FtaCommand),
    /// A button on an FTA card: the verb and its data (inputs merged in).
    FtaCard {
        verb: String,
        data: Value,
    },
}

/// Someone named in a command: an @mention or an email address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    Mention(Mention),
    Email(String),
}

impl Command {
    /// Whether answering needs the store (and so the apply step) rather than being a pure answer.
    pub fn is_stateful(&self) -> bool {
        !matches!(self, Command::Help | Command::Roles(_))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RolesQuery {
    All,
    Atu,
    One(Role),
}

impl RolesQuery {
    /// The `query` value card buttons carry for this view.
    pub fn as_action_value(self) -> &'static str {
        match self {
            RolesQuery::All => "all",
            RolesQuery::Atu => "atu",
            RolesQuery::One(role) => role.abbr(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unknown command `{name}`")]
    UnknownCommand {
        name: String,
        suggestion: Option<&'static str>,
    },
    #[error("unknown role `{given}`")]
    UnknownRole { given: String },
    #[error("unexpected argument `{arg}` for `{command}`")]
    UnexpectedArgument { command: &'static str, arg: String },
    #[error("unterminated quote")]
    UnterminatedQuote,
    #[error("option `{key}:` has no value")]
    EmptyOptionValue { key: String },
    #[error("unknown card action verb `{verb}`")]
    UnknownVerb { verb: String },
    #[error("bad data for card action `{verb}`: {detail}")]
    BadActionData { verb: String, detail: String },
    #[error("`{command}` needs {what}")]
    MissingArgument {
        command: &'static str,
        what: &'static str,
    },
    #[error("invalid {what} `{given}` for `{command}`")]
    InvalidValue {
        command: &'static str,
        what: &'static str,
        given: String,
        expected: &'static str,
    },
    #[error("unknown option `{key}:` for `{command}`")]
    UnknownOption { command: &'static str, key: String },
    #[error(transparent)]
    Fta(#[from] fta::FtaParseError),
    #[error(transparent)]
    Sync(#[from] sync_schedule::SyncParseError),
}

impl ParseError {
    /// What the user reads: one specific sentence, then the usage line (or a pointer to `help`).
    pub fn user_message(&self) -> String {
        match self {
            ParseError::UnknownCommand {
                name,
                suggestion: Some(suggestion),
            } => format!(
                "I don't know the command {}. Did you mean `{suggestion}`?\n\n{}",
                echo(name),
                usage_or_help(suggestion)
            ),
            ParseError::UnknownCommand {
                name,
                suggestion: None,
            } => format!("I don't know the command {}.\n\n{HELP_HINT}", echo(name)),
            ParseError::UnknownRole { given } if Role::parse(given) == Some(Role::Fta) => format!(
                "FTA (FastTrack Architect) is FastTrack's own role, not a Field role. Field roles are {}, or `atu` for the ATU roles.\n\n{}",
                field_abbrs(),
                usage_or_help(roles::NAME)
            ),
            ParseError::UnknownRole { given } => format!(
                "{} is not a Field role. Use one of {}, or `atu` for the ATU roles.\n\n{}",
                echo(given),
                field_abbrs(),
                usage_or_help(roles::NAME)
            ),
            ParseError::UnexpectedArgument { command, arg } => format!(
                "I didn't expect {} after `{command}`.\n\n{}",
                echo(arg),
                usage_or_help(command)
            ),
            ParseError::UnterminatedQuote => format!(
                "A quoted value is missing its closing quote (\"): write \"several words\".\n\n{HELP_HINT}"
            ),
            ParseError::EmptyOptionValue { key } => {
                let key = echo_raw(key);
                format!(
                    "The option `{key}:` has no value. Write `{key}:value`, or `{key}:\"several words\"` for text with spaces.\n\n{HELP_HINT}"
                )
            }
            ParseError::UnknownVerb { .. } => {
                format!("That button is from a card I can no longer handle.\n\n{HELP_HINT}")
            }
            ParseError::BadActionData { .. } => format!(
                "That button sent something I can't read; the card may be out of date.\n\n{HELP_HINT}"
            ),
            ParseError::MissingArgument { command, what } => {
                format!("`{command}` needs {what}.\n\n{}", usage_or_help(command))
            }
            ParseError::InvalidValue {
                command,
                what,
                given,
                expected,
            } => format!(
                "{} is not a valid {what}: {expected}.\n\n{}",
                echo(given),
                usage_or_help(command)
            ),
            ParseError::Fta(e) => e.user_message(),
            ParseError::Sync(e) => e.user_message(),
            ParseError::UnknownOption { command, key } => format!(
                "`{command}` has no option `{}:`.\n\n{}",
                echo_raw(key),
                usage_or_help(command)
            ),
        }
    }
}

const HELP_HINT: &str = "Type `help` for the commands.";

/// User text echoed in a message: short, on one line, as a code span, and with markdown neutralised
/// in case the message ends up in a card, where code spans are not rendered.
fn echo(s: &str) -> String {
    format!("`{}`", echo_raw(s))
}

fn echo_raw(s: &str) -> String {
    const MAX_CHARS: usize = 40;
    let mut short: String = s
        .chars()
        .map(|c| match c {
            '`' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .take(MAX_CHARS)
        .collect();
    if s.chars().count() > MAX_CHARS {
        short.push('…');
    }
    cards::plain(&short)
}

fn field_abbrs() -> String {
    Role::FIELD.map(Role::abbr).join(", ")
}

fn usage_or_help(command: &str) -> String {
    match COMMANDS
        .iter()
        .find(|spec| spec.name == command || spec.usage.starts_with(&format!("{command} ")))
    {
        Some(spec) => format!("Usage: `{}`", spec.usage),
        None => HELP_HINT.to_owned(),
    }
}

/// One row of the command table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    /// What the user types first, lowercase.
    pub name: &'static str,
    pub usage: &'static str,
    /// One line; also the Teams manifest description, so at most 128 characters.
    pub summary: &'static str,
    pub example: &'static str,
}

/// Every chat command, in the order the help card shows them.
pub static COMMANDS: &[CommandSpec] = &[
    // Most used first: the Teams manifest lists the first twelve (its limit).
    help::SPEC,
    roles::SPEC,
    engagement::SPEC,
    engagement::SPEC_SHOW,
    team::SPEC,
    team::SPEC_ADD,
    prep::SPEC,
    invite::SPEC,
    sync::SPEC_NOTES,
    sync_schedule::SPEC_SCHEDULE,
    fta_spec(0),
    fta_spec(1),
    team::SPEC_REMOVE,
    sync_schedule::SPEC_JOIN,
    sync_schedule::SPEC_SHOW,
    fta_spec(2),
    fta_spec(3),
    fta_spec(4),
    fta_spec(5),
    fta_spec(6),
];

/// The `fta` rows of the command table come from the FTA parser's own usage list.
#[allow(clippy::indexing_slicing)] // evaluated at compile time: an index out of range fails the build
const fn fta_spec(row: usize) -> CommandSpec {
    let (name, usage, summary, example) = fta::USAGES[row];
    CommandSpec {
        name,
        usage,
        summary,
        example,
    }
}

/// Parses text that [`strip_bot_mentions`] has already cleaned. Empty text means `help`.
pub fn parse(text: &str, mentions: &[Mention]) -> Result<Command, ParseError> {
    let tokens = tokenize(text, mentions)?;
    let Some((first, args)) = tokens.split_first() else {
        return Ok(Command::Help);
    };
    let Token::Word(name) = first else {
        return Err(ParseError::UnknownCommand {
            name: first.to_string(),
            suggestion: None,
        });
    };
    let lower = name.to_lowercase();
    match lower.as_str() {
        help::NAME => help::parse(args),
        roles::NAME => roles::parse(args),
        engagement::NAME => engagement::parse(args),
        team::NAME => team::parse(args),
        prep::NAME => prep::parse(args),
        invite::NAME => invite::parse(args),
        // `sync notes` is the notes form; every other `sync …` is about the sync rhythm.
        sync::NAME if matches!(args.first(), Some(Token::Word(w)) if w.eq_ignore_ascii_case("notes")) => {
            sync::parse(args)
        }
        sync::NAME => sync_schedule::parse(args)
            .map(Command::Sync)
            .map_err(ParseError::from),
        fta::NAME => fta::parse(args).map(Command::Fta).map_err(ParseError::from),
        _ => Err(ParseError::UnknownCommand {
            suggestion: suggest(&lower),
            name: name.clone(),
        }),
    }
}

/// Parses a Universal Action (`Action.Execute`) or its `Action.Submit` fallback.
pub fn parse_action(verb: &str, data: &Value) -> Result<Command, ParseError> {
    match verb {
        VERB_HELP_SHOW => Ok(Command::Help),
        VERB_ROLES_SHOW => roles::parse_action(data),
        cards::VERB_TEAM_SHOW => Ok(Command::TeamShow),
        cards::VERB_PREP_SHOW => Ok(Command::PrepShow),
        cards::VERB_PREP_TOGGLE => prep::parse_toggle(data),
        cards::VERB_INVITE_SEND | cards::VERB_INVITE_OTHER | cards::VERB_INVITE_CANCEL => {
            invite::parse_action(verb, data)
        }
        cards::VERB_SYNC_NOTES_SUBMIT => sync::parse_submit(data),
        cards::VERB_FTA_SUBMIT
        | cards::VERB_FTA_VIEW
        | cards::VERB_FTA_ASSIGN
        | cards::VERB_FTA_DECLINE
        | cards::VERB_FTA_INFO
        | cards::VERB_FTA_WITHDRAW
        | cards::VERB_FTA_PROVIDE_INFO => Ok(Command::FtaCard {
            verb: verb.to_owned(),
            data: data.clone(),
        }),
        _ => Err(ParseError::UnknownVerb {
            verb: verb.to_owned(),
        }),
    }
}

/// What the bot answers to a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Card(Value),
    Text(String),
}

impl Reply {
    pub fn error(err: &ParseError) -> Reply {
        Reply::Text(err.user_message())
    }
}

/// Answers a stateless command; stateful ones go through [`apply`].
pub fn execute(cmd: &Command) -> Reply {
    match cmd {
        Command::Help => help::execute(),
        Command::Roles(query) => roles::execute(*query),
        _ => Reply::Text(HELP_HINT.to_owned()),
    }
}

/// The closest command name, for typos such as `hlep` or `role`.
fn suggest(name: &str) -> Option<&'static str> {
    const MAX_DISTANCE: usize = 2;
    COMMANDS
        .iter()
        .map(|spec| (edit_distance(name, spec.name), spec.name))
        .filter(|&(distance, _)| distance <= MAX_DISTANCE)
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, name)| name)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev
                .get(j)
                .map_or(usize::MAX, |d| d + usize::from(ca != *cb));
            let delete = prev.get(j + 1).map_or(usize::MAX, |d| d + 1);
            let insert = cur.last().map_or(usize::MAX, |d| d + 1);
            cur.push(substitute.min(delete).min(insert));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use serde_json::json;

    use super::*;

    fn unknown(name: &str, suggestion: Option<&'static str>) -> ParseError {
        ParseError::UnknownCommand {
            name: name.to_owned(),
            suggestion,
        }
    }

    #[test]
    fn parse_table() {
        let cases: Vec<(&str, Result<Command, ParseError>)> = vec![
            ("", Ok(Command::Help)),
            ("   ", Ok(Command::Help)),
            ("help", Ok(Command::Help)),
            ("HELP", Ok(Command::Help)),
            ("help roles", Ok(Command::Help)),
            (
                "help me",
                Err(ParseError::UnexpectedArgument {
                    command: "help",
                    arg: "me".to_owned(),
                }),
            ),
            ("roles", Ok(Command::Roles(RolesQuery::All))),
            ("roles all", Ok(Command::Roles(RolesQuery::All))),
            ("roles TAM", Ok(Command::Roles(RolesQuery::One(Role::Tam)))),
            ("Roles tam", Ok(Command::Roles(RolesQuery::One(Role::Tam)))),
            (
                "roles \"ssp\"",
                Ok(Command::Roles(RolesQuery::One(Role::Ssp))),
            ),
            ("roles atu", Ok(Command::Roles(RolesQuery::Atu))),
            ("ROLES ATU", Ok(Command::Roles(RolesQuery::Atu))),
            (
                "roles tam extra",
                Err(ParseError::UnexpectedArgument {
                    command: "roles",
                    arg: "extra".to_owned(),
                }),
            ),
            (
                "roles xyz",
                Err(ParseError::UnknownRole {
                    given: "xyz".to_owned(),
                }),
            ),
            (
                "roles FTA",
                Err(ParseError::UnknownRole {
                    given: "FTA".to_owned(),
                }),
            ),
            (
                "roles tpid:1",
                Err(ParseError::UnexpectedArgument {
                    command: "roles",
                    arg: "tpid:1".to_owned(),
                }),
            ),
            ("hlep", Err(unknown("hlep", Some("help")))),
            ("role", Err(unknown("role", Some("roles")))),
            ("Rolse TAM", Err(unknown("Rolse", Some("roles")))),
            ("dance", Err(unknown("dance", None))),
            ("\"help\"", Err(unknown("\"help\"", None))),
            ("roles \"tam", Err(ParseError::UnterminatedQuote)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text, &[]), expected, "{text:?}");
        }
    }

    #[test]
    fn parse_action_table() {
        let cases: Vec<(&str, Value, Result<Command, ParseError>)> = vec![
            (VERB_HELP_SHOW, json!({}), Ok(Command::Help)),
            (VERB_HELP_SHOW, Value::Null, Ok(Command::Help)),
            (
                VERB_ROLES_SHOW,
                json!({"query": "all"}),
                Ok(Command::Roles(RolesQuery::All)),
            ),
            (
                VERB_ROLES_SHOW,
                json!({"query": "atu"}),
                Ok(Command::Roles(RolesQuery::Atu)),
            ),
            (
                VERB_ROLES_SHOW,
                json!({"query": "CSM"}),
                Ok(Command::Roles(RolesQuery::One(Role::Csm))),
            ),
            (
                // The Action.Submit fallback carries the verb inside the data.
                VERB_ROLES_SHOW,
                json!({"verb": "roles.show", "query": "ade"}),
                Ok(Command::Roles(RolesQuery::One(Role::Ade))),
            ),
            (
                VERB_ROLES_SHOW,
                json!({}),
                Ok(Command::Roles(RolesQuery::All)),
            ),
            (
                VERB_ROLES_SHOW,
                json!({"query": "nope"}),
                Err(ParseError::UnknownRole {
                    given: "nope".to_owned(),
                }),
            ),
            (
                VERB_ROLES_SHOW,
                json!({"query": 7}),
                Err(ParseError::BadActionData {
                    verb: VERB_ROLES_SHOW.to_owned(),
                    detail: "`query` must be a string".to_owned(),
                }),
            ),
            (
                VERB_ROLES_SHOW,
                json!("atu"),
                Err(ParseError::BadActionData {
                    verb: VERB_ROLES_SHOW.to_owned(),
                    detail: "data must be an object".to_owned(),
                }),
            ),
            (
                "fta.approve",
                json!({}),
                Err(ParseError::UnknownVerb {
                    verb: "fta.approve".to_owned(),
                }),
            ),
        ];
        for (verb, data, expected) in cases {
            assert_eq!(parse_action(verb, &data), expected, "{verb} {data}");
        }
    }

    #[test]
    fn user_messages_are_specific_and_carry_the_usage() {
        let usage = "Usage: `roles [<ABBR>|atu]`";
        let cases: Vec<(ParseError, Vec<&str>)> = vec![
            (
                unknown("hlep", Some("help")),
                vec!["`hlep`", "Did you mean `help`?", "Usage: `help`"],
            ),
            (
                unknown("dance", None),
                vec!["`dance`", "Type `help` for the commands."],
            ),
            (
                ParseError::UnknownRole {
                    given: "xyz".to_owned(),
                },
                vec![
                    "`xyz` is not a Field role",
                    "ATS, TAM, AE, CSM, ADE, TSP, SSP",
                    "`atu`",
                    usage,
                ],
            ),
            (
                ParseError::UnknownRole {
                    given: "fta".to_owned(),
                },
                vec![
                    "FastTrack's own role, not a Field role",
                    "ATS, TAM, AE, CSM, ADE, TSP, SSP",
                    usage,
                ],
            ),
            (
                ParseError::UnexpectedArgument {
                    command: "roles",
                    arg: "extra".to_owned(),
                },
                vec!["`extra`", "`roles`", usage],
            ),
            (ParseError::UnterminatedQuote, vec!["closing quote"]),
            (
                ParseError::EmptyOptionValue {
                    key: "tpid".to_owned(),
                },
                vec!["`tpid:`", "`tpid:value`"],
            ),
            (
                ParseError::UnknownVerb {
                    verb: "x.y".to_owned(),
                },
                vec!["Type `help`"],
            ),
            (
                ParseError::BadActionData {
                    verb: "roles.show".to_owned(),
                    detail: "internal detail".to_owned(),
                },
                vec!["out of date"],
            ),
        ];
        for (err, needles) in cases {
            let msg = err.user_message();
            for needle in needles {
                assert!(msg.contains(needle), "{err:?}: {msg:?} lacks {needle:?}");
            }
            assert!(!msg.contains("internal detail"), "{msg}");
            assert!(!msg.contains("{ "), "looks like a debug dump: {msg}");
        }
    }

    #[test]
    fn user_messages_neutralise_echoed_input() {
        let err = unknown("[x](https://evil.example)", None);
        let msg = err.user_message();
        assert!(!msg.contains("[x](https"), "{msg}");
        let long = unknown(&"a".repeat(500), None).user_message();
        assert!(long.len() < 200, "{long}");
        let ticks = unknown("`x`", None).user_message();
        assert!(!ticks.contains("``"), "{ticks}");
    }

    #[test]
    fn command_table_is_consistent() {
        let names: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
        assert_eq!(&names[..2], ["help", "roles"]);
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "names are unique");
        for spec in COMMANDS {
            assert_eq!(spec.name, spec.name.to_lowercase());
            assert!(spec.usage.starts_with(spec.name), "{spec:?}");
            assert!(spec.summary.len() <= 128, "{spec:?}");
            assert!(
                parse(spec.example, &[]).is_ok(),
                "example must parse: {spec:?}"
            );
        }
        let roles = COMMANDS.iter().find(|c| c.name == "roles").unwrap();
        assert_eq!(roles.usage, "roles [<ABBR>|atu]");
        assert_eq!(roles.example, "roles TAM");
    }

    #[test]
    fn execute_answers_with_cards() {
        for cmd in [
            Command::Help,
            Command::Roles(RolesQuery::All),
            Command::Roles(RolesQuery::Atu),
            Command::Roles(RolesQuery::One(Role::Tam)),
        ] {
            match execute(&cmd) {
                Reply::Card(card) => assert_eq!(card["type"], "AdaptiveCard", "{cmd:?}"),
                Reply::Text(text) => panic!("{cmd:?} answered text {text}"),
            }
        }
    }

    #[test]
    fn edit_distance_examples() {
        assert_eq!(edit_distance("hlep", "help"), 2);
        assert_eq!(edit_distance("role", "roles"), 1);
        assert_eq!(edit_distance("", "help"), 4);
        assert_eq!(edit_distance("roles", "roles"), 0);
    }
}
