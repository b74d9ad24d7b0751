//! `fta request` (form or inline), `fta`, `fta list [open|all]`, `fta status <id>`, and the text forms of
//! the card buttons: `fta assign`, `fta decline`, `fta info`, `fta withdraw`.
//!
//! Parsing only: the inline request's values stay as typed in an [`FtaRequestInput`], because the form
//! card submits the same input and [`crate::domain::fta::validate`] must judge both the same way.

use super::{Mention, Token};
use crate::domain::fta::{Field, FtaRequestInput, MAX_REASON_CHARS, is_domain};

pub const NAME: &str = "fta";
const REQUEST: &str = "fta request";
const STATUS: &str = "fta status";
const ASSIGN: &str = "fta assign";
const DECLINE: &str = "fta decline";
const INFO: &str = "fta info";
const WITHDRAW: &str = "fta withdraw";

/// Command table rows: (name, usage, summary of at most 128 characters, example that parses).
pub const USAGES: &[(&str, &str, &str, &str)] = &[
    (
        REQUEST,
        "fta request [tpid:<n> tenant:<domain|GUID> partner:\"…\" users:<n> type:<ecif|non-ecif|migration> stage:<0-100> event:\"…\" segment:<enterprise|smc-c> entitlements:<m365|o365|ems>[,…] [notes:\"…\"] [engagement:<id>]]",
        "Requests a FastTrack Architect: opens the form, or files it inline (every option but notes is required)",
        "fta request tpid:12345 tenant:contoso.onmicrosoft.com partner:none users:5000 type:ecif stage:60% event:\"Signed the Office 365 E5 agreement\" segment:enterprise entitlements:m365,ems",
    ),
    (
        NAME,
        "fta [list [open|all]]",
        "Lists this engagement's FTA requests, or every open (or every) request",
        "fta list open",
    ),
    (
        STATUS,
        "fta status <id>",
        "Shows one FTA request with its history",
        "fta status 12",
    ),
    (
        ASSIGN,
        "fta assign <id> <@fta|email>",
        "Leads: assigns a FastTrack Architect to a request and adds them to the roster",
        "fta assign 12 alex@contoso.com",
    ),
    (
        DECLINE,
        "fta decline <id> reason:\"…\"",
        "Leads: declines a request, with the reason",
        "fta decline 12 reason:\"The customer is below 40% in the sales stage\"",
    ),
    (
        INFO,
        "fta info <id> ask:\"…\"",
        "Leads: sends a request back to the requestor with a question",
        "fta info 12 ask:\"Which workloads are in scope?\"",
    ),
    (
        WITHDRAW,
        "fta withdraw <id>",
        "Requestor: withdraws a request before an FTA is assigned",
        "fta withdraw 12",
    ),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FtaCommand {
    /// `fta request`, optionally `engagement:<id>`: the form card.
    Form {
        engagement: Option<i64>,
    },
    /// `fta request` with the options: every one but `notes:` (and `engagement:`) was given, unvalidated.
    /// `engagement` names the engagement to file it for when the channel is not bound to one (personal
    /// chat); `None` means this channel's.
    Inline {
        input: FtaRequestInput,
        engagement: Option<i64>,
    },
    /// `fta`: the requests of this engagement.
    Mine,
    /// `fta list` / `fta list open` (`all: false`), `fta list all`.
    List {
        all: bool,
    },
    Status {
        id: i64,
    },
    Assign {
        id: i64,
        fta: Who,
    },
    Decline {
        id: i64,
        reason: String,
    },
    Info {
        id: i64,
        ask: String,
    },
    Withdraw {
        id: i64,
    },
}

/// Someone named in a command: an @mention or an email address (lowercase).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    Mention(Mention),
    Email(String),
}

/// `command` is the subcommand whose usage line the message ends with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FtaParseError {
    #[error("`{command}` needs {what}")]
    Missing { command: &'static str, what: String },
    #[error("invalid {what} `{given}` for `{command}`")]
    Invalid {
        command: &'static str,
        what: String,
        given: String,
        expected: String,
    },
    #[error("unknown option `{key}:` for `{command}`")]
    UnknownOption { command: &'static str, key: String },
    #[error("option `{key}:` given twice for `{command}`")]
    Repeated { command: &'static str, key: String },
    #[error("unexpected argument `{arg}` for `{command}`")]
    Unexpected { command: &'static str, arg: String },
}

impl FtaParseError {
    /// What the user reads: one specific sentence, then the usage line.
    pub fn user_message(&self) -> String {
        let (sentence, command) = match self {
            FtaParseError::Missing { command, what } => {
                (format!("`{command}` needs {what}."), command)
            }
            FtaParseError::Invalid {
                command,
                what,
                given,
                expected,
            } => (
                format!("{} is not a valid {what}: {expected}.", echo(given)),
                command,
            ),
            FtaParseError::UnknownOption { command, key } => (
                format!("`{command}` has no option `{}:`.", echo_raw(key)),
                command,
            ),
            FtaParseError::Repeated { command, key } => (
                format!(
                    "The option `{}:` is given twice; give it once.",
                    echo_raw(key)
                ),
                command,
            ),
            FtaParseError::Unexpected { command, arg } => (
                format!("I didn't expect {} after `{command}`.", echo(arg)),
                command,
            ),
        };
        format!("{sentence}\n\nUsage: `{}`", usage(command))
    }
}

fn usage(command: &str) -> &'static str {
    USAGES
        .iter()
        .find(|(name, ..)| *name == command)
        .map_or("fta", |&(_, usage, ..)| usage)
}

/// `args` are the tokens after the word `fta`.
pub fn parse(args: &[Token]) -> Result<FtaCommand, FtaParseError> {
    let Some((first, rest)) = args.split_first() else {
        return Ok(FtaCommand::Mine);
    };
    let Token::Word(sub) = first else {
        return Err(unexpected(NAME, first));
    };
    match sub.to_ascii_lowercase().as_str() {
        "request" => parse_request(rest),
        "list" => parse_list(rest),
        "status" => {
            let id = only_id(STATUS, rest)?;
            Ok(FtaCommand::Status { id })
        }
        "withdraw" => {
            let id = only_id(WITHDRAW, rest)?;
            Ok(FtaCommand::Withdraw { id })
        }
        "assign" => parse_assign(rest),
        "decline" => {
            let (id, reason) = id_and_text(DECLINE, "reason", rest)?;
            Ok(FtaCommand::Decline { id, reason })
        }
        "info" => {
            let (id, ask) = id_and_text(INFO, "ask", rest)?;
            Ok(FtaCommand::Info { id, ask })
        }
        _ => Err(unexpected(NAME, first)),
    }
}

fn parse_list(args: &[Token]) -> Result<FtaCommand, FtaParseError> {
    match args {
        [] => Ok(FtaCommand::List { all: false }),
        [Token::Word(w)] if w.eq_ignore_ascii_case("open") => Ok(FtaCommand::List { all: false }),
        [Token::Word(w)] if w.eq_ignore_ascii_case("all") => Ok(FtaCommand::List { all: true }),
        [Token::Word(_), extra, ..] => Err(unexpected(NAME, extra)),
        [other, ..] => Err(FtaParseError::Invalid {
            command: NAME,
            what: "list".into(),
            given: other.to_string(),
            expected: "use `open` or `all`".into(),
        }),
    }
}

/// The option keys of an inline request: the form's input ids, and the words of the form's labels that
/// people type instead.
fn option_field(key: &str) -> Option<Field> {
    Field::ALL
        .into_iter()
        .find(|f| f.input_id() == key)
        .or(match key {
            "total-users" | "total_users" => Some(Field::Users),
            "request-type" | "request_type" => Some(Field::RequestType),
            "sales-stage" | "sales_stage" => Some(Field::Stage),
            "compelling-event" | "compelling_event" => Some(Field::Event),
            "entitlement" => Some(Field::Entitlements),
            "note" | "instructions" => Some(Field::Notes),
            _ => None,
        })
}

const ENGAGEMENT_KEY: &str = "engagement";

fn parse_request(args: &[Token]) -> Result<FtaCommand, FtaParseError> {
    let mut input = FtaRequestInput::default();
    let mut engagement = None;
    let mut tokens = args.iter().peekable();
    while let Some(token) = tokens.next() {
        let Token::Opt { key, value } = token else {
            return Err(unexpected(REQUEST, token));
        };
        if key == ENGAGEMENT_KEY {
            if engagement.is_some() {
                return Err(repeated(REQUEST, key));
            }
            engagement = Some(parse_id(REQUEST, "engagement id", value)?);
            continue;
        }
        let field = option_field(key).ok_or_else(|| FtaParseError::UnknownOption {
            command: REQUEST,
            key: key.clone(),
        })?;
        if input.get(field).is_some() {
            return Err(repeated(REQUEST, key));
        }
        let mut value = value.clone();
        // `entitlements:m365, ems` reaches us as two tokens; a trailing comma says the list goes on.
        if field == Field::Entitlements {
            while value.ends_with(',') {
                match tokens.peek() {
                    Some(Token::Word(next)) => {
                        value.push_str(next);
                        tokens.next();
                    }
                    _ => break,
                }
            }
        }
        input.set(field, Some(value));
    }

    if input == FtaRequestInput::default() {
        return Ok(FtaCommand::Form { engagement });
    }
    let missing: Vec<String> = Field::ALL
        .into_iter()
        .filter(|f| f.is_required() && input.get(*f).is_none())
        .map(|f| format!("`{}:`", f.input_id()))
        .collect();
    if !missing.is_empty() {
        return Err(FtaParseError::Missing {
            command: REQUEST,
            what: format!(
                "every option but `notes:` when filed inline; missing {}",
                join_and(&missing)
            ),
        });
    }
    Ok(FtaCommand::Inline { input, engagement })
}

fn parse_assign(args: &[Token]) -> Result<FtaCommand, FtaParseError> {
    let (id, rest) = leading_id(ASSIGN, args)?;
    let fta = match rest {
        [] => {
            return Err(FtaParseError::Missing {
                command: ASSIGN,
                what: "the FastTrack Architect: an @mention or an email address".into(),
            });
        }
        [Token::Mention(m)] => Who::Mention(m.clone()),
        [Token::Word(w) | Token::Quoted(w)] => Who::Email(parse_email(w)?),
        // Outlook pastes addresses as `mailto:…`, which the lexer reads as an option.
        [Token::Opt { key, value }] if key == "mailto" => Who::Email(parse_email(value)?),
        [_, extra, ..] | [extra @ Token::Opt { .. }] => return Err(unexpected(ASSIGN, extra)),
    };
    Ok(FtaCommand::Assign { id, fta })
}

/// `<id> key:"text"`, the shape of `fta decline` and `fta info`.
fn id_and_text(
    command: &'static str,
    key: &'static str,
    args: &[Token],
) -> Result<(i64, String), FtaParseError> {
    let (id, rest) = leading_id(command, args)?;
    let mut text: Option<String> = None;
    for token in rest {
        match token {
            Token::Opt { key: k, value } if k == key => {
                if text.is_some() {
                    return Err(repeated(command, k));
                }
                text = Some(value.trim().to_owned());
            }
            Token::Opt { key: k, .. } => {
                return Err(FtaParseError::UnknownOption {
                    command,
                    key: k.clone(),
                });
            }
            other => return Err(unexpected(command, other)),
        }
    }
    let missing = || FtaParseError::Missing {
        command,
        what: format!("`{key}:\"…\"` (in quotes when it has spaces)"),
    };
    let text = text.filter(|t| !t.is_empty()).ok_or_else(missing)?;
    let count = text.chars().count();
    if count > MAX_REASON_CHARS {
        return Err(FtaParseError::Invalid {
            command,
            what: key.into(),
            given: text,
            expected: format!("keep it to {MAX_REASON_CHARS} characters (this one has {count})"),
        });
    }
    Ok((id, text))
}

fn only_id(command: &'static str, args: &[Token]) -> Result<i64, FtaParseError> {
    let (id, rest) = leading_id(command, args)?;
    match rest.first() {
        None => Ok(id),
        Some(extra) => Err(unexpected(command, extra)),
    }
}

fn leading_id<'a>(
    command: &'static str,
    args: &'a [Token],
) -> Result<(i64, &'a [Token]), FtaParseError> {
    match args {
        [] => Err(FtaParseError::Missing {
            command,
            what: "the request id, such as 12".into(),
        }),
        [Token::Word(w) | Token::Quoted(w), rest @ ..] => {
            Ok((parse_id(command, "request id", w)?, rest))
        }
        [other, ..] => Err(FtaParseError::Invalid {
            command,
            what: "request id".into(),
            given: other.to_string(),
            expected: "a positive whole number such as 12".into(),
        }),
    }
}

/// A positive id; cards and emails show it as `#12`, so the `#` is allowed.
fn parse_id(command: &'static str, what: &str, value: &str) -> Result<i64, FtaParseError> {
    let v = value.trim();
    let digits = v.strip_prefix('#').unwrap_or(v);
    match digits.parse::<i64>() {
        Ok(n) if n > 0 && digits.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(FtaParseError::Invalid {
            command,
            what: what.into(),
            given: value.to_owned(),
            expected: "a positive whole number such as 12".into(),
        }),
    }
}

/// A plausible email address: one `@`, a local part, and a domain with a dot. Graph decides whether the
/// person exists.
fn parse_email(value: &str) -> Result<String, FtaParseError> {
    let v = value.trim().trim_start_matches("mailto:");
    let bad = || FtaParseError::Invalid {
        command: ASSIGN,
        what: "email address".into(),
        given: value.to_owned(),
        expected: "write it as name@domain, or @mention the FastTrack Architect".into(),
    };
    let (local, domain) = v.split_once('@').ok_or_else(bad)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._%+-'".contains(c));
    if !local_ok || !is_domain(&domain.to_ascii_lowercase()) {
        return Err(bad());
    }
    Ok(v.to_ascii_lowercase())
}

fn unexpected(command: &'static str, token: &Token) -> FtaParseError {
    FtaParseError::Unexpected {
        command,
        arg: token.to_string(),
    }
}

fn repeated(command: &'static str, key: &str) -> FtaParseError {
    FtaParseError::Repeated {
        command,
        key: key.to_owned(),
    }
}

/// `a`, `a and b`, `a, b and c`.
fn join_and(items: &[String]) -> String {
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, init)) => format!("{} and {last}", init.join(", ")),
    }
}

/// User text echoed in a message: short, on one line, as a code span, with markdown links and markup
/// neutralised in case the message ends up in a card, where code spans are not rendered.
fn echo(s: &str) -> String {
    format!("`{}`", echo_raw(s))
}

fn echo_raw(s: &str) -> String {
    const MAX_CHARS: usize = 40;
    const ZWSP: char = '\u{200b}';
    let mut short: String = s
        .chars()
        .map(|c| match c {
            '`' => '\'',
            '<' => '\u{2039}',
            '>' => '\u{203a}',
            c if c.is_control() => ' ',
            c => c,
        })
        .take(MAX_CHARS)
        .collect();
    if s.chars().count() > MAX_CHARS {
        short.push('…');
    }
    short
        .replace("](", &format!("]{ZWSP}("))
        .replace("![", &format!("!{ZWSP}["))
        .replace("://", &format!(":{ZWSP}//"))
        .replace("www.", &format!("www{ZWSP}."))
        .replace("WWW.", &format!("WWW{ZWSP}."))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use crate::commands::tokenize;
    use crate::domain::fta::validate;

    fn alex() -> Mention {
        Mention {
            id: "29:alex".into(),
            name: "Alex Wu".into(),
            text: "<at>Alex Wu</at>".into(),
        }
    }

    /// Tokenizes the whole text and drops the leading `fta`, as the dispatcher does.
    fn run(text: &str) -> Result<FtaCommand, FtaParseError> {
        let tokens = tokenize(text, &[alex()]).unwrap();
        let (first, args) = tokens.split_first().unwrap();
        assert!(matches!(first, Token::Word(w) if w.eq_ignore_ascii_case("fta")));
        parse(args)
    }

    const INLINE: &str = "fta request tpid:12345 tenant:contoso.onmicrosoft.com partner:\"Fabrikam Consulting\" users:5000 type:non-ecif stage:40% event:\"Committed to EMS in Q3\" segment:smc-c entitlements:o365,ems";

    fn inline_input() -> FtaRequestInput {
        FtaRequestInput {
            tpid: Some("12345".into()),
            tenant: Some("contoso.onmicrosoft.com".into()),
            partner: Some("Fabrikam Consulting".into()),
            users: Some("5000".into()),
            request_type: Some("non-ecif".into()),
            stage: Some("40%".into()),
            event: Some("Committed to EMS in Q3".into()),
            segment: Some("smc-c".into()),
            entitlements: Some("o365,ems".into()),
            notes: None,
        }
    }

    #[test]
    fn parse_ok_table() {
        let cases: Vec<(String, FtaCommand)> = vec![
            ("fta".into(), FtaCommand::Mine),
            ("FTA".into(), FtaCommand::Mine),
            ("fta list".into(), FtaCommand::List { all: false }),
            ("fta LIST open".into(), FtaCommand::List { all: false }),
            ("fta list All".into(), FtaCommand::List { all: true }),
            ("fta request".into(), FtaCommand::Form { engagement: None }),
            (
                "fta Request engagement:7".into(),
                FtaCommand::Form {
                    engagement: Some(7),
                },
            ),
            (
                INLINE.into(),
                FtaCommand::Inline {
                    input: inline_input(),
                    engagement: None,
                },
            ),
            (
                format!("{INLINE} notes:\"Needs Teams Phone\" engagement:#3"),
                FtaCommand::Inline {
                    input: FtaRequestInput {
                        notes: Some("Needs Teams Phone".into()),
                        ..inline_input()
                    },
                    engagement: Some(3),
                },
            ),
            (
                // Option order is free, keys are case-insensitive, and the form's label words work.
                "fta request ENTITLEMENTS:o365,ems Segment:smc-c event:\u{201c}Committed to EMS in Q3\u{201d} sales-stage:40% request_type:non-ecif total-users:5000 partner:\"Fabrikam Consulting\" tenant:contoso.onmicrosoft.com tpid:12345".into(),
                FtaCommand::Inline {
                    input: inline_input(),
                    engagement: None,
                },
            ),
            (
                "fta request tpid:12345 tenant:contoso.onmicrosoft.com partner:\"Fabrikam Consulting\" users:5000 type:non-ecif stage:40% event:\"Committed to EMS in Q3\" segment:smc-c entitlements:o365, ems".into(),
                FtaCommand::Inline {
                    input: FtaRequestInput {
                        entitlements: Some("o365,ems".into()),
                        ..inline_input()
                    },
                    engagement: None,
                },
            ),
            (
                // Values stay as typed: validation is the domain's job, and reports every rule at once.
                "fta request tpid:abc tenant:x partner:none users:0 type:urgent stage:30 event:soon segment:smb entitlements:azure".into(),
                FtaCommand::Inline {
                    input: FtaRequestInput {
                        tpid: Some("abc".into()),
                        tenant: Some("x".into()),
                        partner: Some("none".into()),
                        users: Some("0".into()),
                        request_type: Some("urgent".into()),
                        stage: Some("30".into()),
                        event: Some("soon".into()),
                        segment: Some("smb".into()),
                        entitlements: Some("azure".into()),
                        notes: None,
                    },
                    engagement: None,
                },
            ),
            ("fta status 12".into(), FtaCommand::Status { id: 12 }),
            ("fta STATUS #12".into(), FtaCommand::Status { id: 12 }),
            ("fta status \"7\"".into(), FtaCommand::Status { id: 7 }),
            ("fta withdraw 3".into(), FtaCommand::Withdraw { id: 3 }),
            (
                "fta assign 12 <at>Alex Wu</at>".into(),
                FtaCommand::Assign {
                    id: 12,
                    fta: Who::Mention(alex()),
                },
            ),
            (
                "fta Assign 12 Alex.Wu@Contoso.com".into(),
                FtaCommand::Assign {
                    id: 12,
                    fta: Who::Email("alex.wu@contoso.com".into()),
                },
            ),
            (
                "fta assign 12 mailto:alex@contoso.com".into(),
                FtaCommand::Assign {
                    id: 12,
                    fta: Who::Email("alex@contoso.com".into()),
                },
            ),
            (
                "fta decline 12 reason:\"Customer is below 40% in the sales stage\"".into(),
                FtaCommand::Decline {
                    id: 12,
                    reason: "Customer is below 40% in the sales stage".into(),
                },
            ),
            (
                "fta decline 12 reason:duplicate".into(),
                FtaCommand::Decline {
                    id: 12,
                    reason: "duplicate".into(),
                },
            ),
            (
                "fta decline 12 Reason:\u{201c} curly quotes \u{201d}".into(),
                FtaCommand::Decline {
                    id: 12,
                    reason: "curly quotes".into(),
                },
            ),
            (
                "fta info 4 ask:\"Which workloads are in scope?\"".into(),
                FtaCommand::Info {
                    id: 4,
                    ask: "Which workloads are in scope?".into(),
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(run(&text), Ok(expected), "{text:?}");
        }
    }

    fn missing(command: &'static str, what: &str) -> FtaParseError {
        FtaParseError::Missing {
            command,
            what: what.into(),
        }
    }

    fn invalid(command: &'static str, what: &str, given: &str) -> FtaParseError {
        FtaParseError::Invalid {
            command,
            what: what.into(),
            given: given.into(),
            expected: "a positive whole number such as 12".into(),
        }
    }

    fn unexpected_arg(command: &'static str, arg: &str) -> FtaParseError {
        FtaParseError::Unexpected {
            command,
            arg: arg.into(),
        }
    }

    #[test]
    fn parse_err_table() {
        let cases: Vec<(String, FtaParseError)> = vec![
            ("fta dance".into(), unexpected_arg(NAME, "dance")),
            (
                "fta \"request\"".into(),
                unexpected_arg(NAME, "\"request\""),
            ),
            ("fta tpid:1".into(), unexpected_arg(NAME, "tpid:1")),
            (
                "fta <at>Alex Wu</at>".into(),
                unexpected_arg(NAME, "@Alex Wu"),
            ),
            ("fta list open now".into(), unexpected_arg(NAME, "now")),
            (
                "fta list mine".into(),
                FtaParseError::Invalid {
                    command: NAME,
                    what: "list".into(),
                    given: "mine".into(),
                    expected: "use `open` or `all`".into(),
                },
            ),
            (
                "fta request tpid:1".into(),
                missing(
                    REQUEST,
                    "every option but `notes:` when filed inline; missing `tenant:`, `partner:`, `users:`, `type:`, `stage:`, `event:`, `segment:` and `entitlements:`",
                ),
            ),
            (
                "fta request notes:\"just notes\"".into(),
                missing(
                    REQUEST,
                    "every option but `notes:` when filed inline; missing `tpid:`, `tenant:`, `partner:`, `users:`, `type:`, `stage:`, `event:`, `segment:` and `entitlements:`",
                ),
            ),
            (
                format!("{INLINE} colour:blue"),
                FtaParseError::UnknownOption {
                    command: REQUEST,
                    key: "colour".into(),
                },
            ),
            (
                format!("{INLINE} tpid:999"),
                FtaParseError::Repeated {
                    command: REQUEST,
                    key: "tpid".into(),
                },
            ),
            (
                format!("{INLINE} total-users:3"),
                FtaParseError::Repeated {
                    command: REQUEST,
                    key: "total-users".into(),
                },
            ),
            (
                format!("{INLINE} engagement:1 engagement:2"),
                FtaParseError::Repeated {
                    command: REQUEST,
                    key: "engagement".into(),
                },
            ),
            (
                format!("{INLINE} engagement:zero"),
                invalid(REQUEST, "engagement id", "zero"),
            ),
            (format!("{INLINE} extra"), unexpected_arg(REQUEST, "extra")),
            (
                // Unquoted spaces: the rest of the event is a stray word.
                "fta request event:Committed to EMS".into(),
                unexpected_arg(REQUEST, "to"),
            ),
            (
                "fta request entitlements:m365, \"ems\"".into(),
                unexpected_arg(REQUEST, "\"ems\""),
            ),
            (
                "fta status".into(),
                missing(STATUS, "the request id, such as 12"),
            ),
            (
                "fta status abc".into(),
                invalid(STATUS, "request id", "abc"),
            ),
            ("fta status 0".into(), invalid(STATUS, "request id", "0")),
            ("fta status -3".into(), invalid(STATUS, "request id", "-3")),
            ("fta status +3".into(), invalid(STATUS, "request id", "+3")),
            (
                "fta status 1.5".into(),
                invalid(STATUS, "request id", "1.5"),
            ),
            (
                "fta status 99999999999999999999".into(),
                invalid(STATUS, "request id", "99999999999999999999"),
            ),
            (
                "fta status id:3".into(),
                invalid(STATUS, "request id", "id:3"),
            ),
            ("fta status 3 4".into(), unexpected_arg(STATUS, "4")),
            (
                "fta withdraw".into(),
                missing(WITHDRAW, "the request id, such as 12"),
            ),
            ("fta withdraw 3 now".into(), unexpected_arg(WITHDRAW, "now")),
            (
                "fta assign".into(),
                missing(ASSIGN, "the request id, such as 12"),
            ),
            (
                "fta assign 12".into(),
                missing(
                    ASSIGN,
                    "the FastTrack Architect: an @mention or an email address",
                ),
            ),
            (
                "fta assign <at>Alex Wu</at>".into(),
                invalid(ASSIGN, "request id", "@Alex Wu"),
            ),
            (
                "fta assign 12 alex".into(),
                FtaParseError::Invalid {
                    command: ASSIGN,
                    what: "email address".into(),
                    given: "alex".into(),
                    expected: "write it as name@domain, or @mention the FastTrack Architect".into(),
                },
            ),
            (
                "fta assign 12 <at>Alex Wu</at> bob@contoso.com".into(),
                unexpected_arg(ASSIGN, "bob@contoso.com"),
            ),
            (
                "fta assign 12 fta:alex@contoso.com".into(),
                unexpected_arg(ASSIGN, "fta:alex@contoso.com"),
            ),
            (
                "fta decline 12".into(),
                missing(DECLINE, "`reason:\"…\"` (in quotes when it has spaces)"),
            ),
            (
                "fta decline 12 reason:not eligible".into(),
                unexpected_arg(DECLINE, "eligible"),
            ),
            (
                "fta decline 12 \"not eligible\"".into(),
                unexpected_arg(DECLINE, "\"not eligible\""),
            ),
            (
                "fta decline 12 ask:\"why\"".into(),
                FtaParseError::UnknownOption {
                    command: DECLINE,
                    key: "ask".into(),
                },
            ),
            (
                "fta decline 12 reason:a reason:b".into(),
                FtaParseError::Repeated {
                    command: DECLINE,
                    key: "reason".into(),
                },
            ),
            (
                "fta decline x reason:a".into(),
                invalid(DECLINE, "request id", "x"),
            ),
            (
                "fta info 4".into(),
                missing(INFO, "`ask:\"…\"` (in quotes when it has spaces)"),
            ),
            (
                "fta info 4 reason:\"x\"".into(),
                FtaParseError::UnknownOption {
                    command: INFO,
                    key: "reason".into(),
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(run(&text), Err(expected), "{text:?}");
        }
    }

    #[test]
    fn long_reasons_are_refused() {
        let text = format!(
            "fta decline 1 reason:\"{}\"",
            "r".repeat(MAX_REASON_CHARS + 1)
        );
        let err = run(&text).unwrap_err();
        assert!(
            matches!(
                err,
                FtaParseError::Invalid {
                    command: DECLINE,
                    ..
                }
            ),
            "{err:?}"
        );
        let msg = err.user_message();
        assert!(msg.contains("2000 characters"), "{msg}");
        assert!(msg.len() < 400, "the reason is not echoed in full: {msg}");
        let ok = format!("fta decline 1 reason:\"{}\"", "r".repeat(MAX_REASON_CHARS));
        assert!(run(&ok).is_ok());
    }

    #[test]
    fn user_messages_are_specific_and_carry_the_usage() {
        let cases: Vec<(&str, Vec<&str>)> = vec![
            (
                "fta request tpid:1 users:3",
                vec![
                    "every option but `notes:`",
                    "`tenant:`, `partner:`, `type:`, `stage:`, `event:`, `segment:` and `entitlements:`",
                    "Usage: `fta request [tpid:<n>",
                ],
            ),
            (
                "fta status x",
                vec!["`x` is not a valid request id", "Usage: `fta status <id>`"],
            ),
            (
                "fta status 0",
                vec!["positive whole number", "Usage: `fta status <id>`"],
            ),
            (
                "fta assign 1 bob",
                vec![
                    "`bob` is not a valid email address",
                    "@mention",
                    "Usage: `fta assign <id> <@fta|email>`",
                ],
            ),
            (
                "fta decline 1",
                vec![
                    "`fta decline` needs `reason:\"…\"`",
                    "Usage: `fta decline <id> reason:\"…\"`",
                ],
            ),
            (
                "fta info 1",
                vec!["`ask:\"…\"`", "Usage: `fta info <id> ask:\"…\"`"],
            ),
            (
                "fta withdraw 1 2",
                vec![
                    "I didn't expect `2` after `fta withdraw`",
                    "Usage: `fta withdraw <id>`",
                ],
            ),
            (
                "fta list everything",
                vec!["use `open` or `all`", "Usage: `fta [list [open|all]]`"],
            ),
            (
                "fta dance",
                vec!["`dance`", "Usage: `fta [list [open|all]]`"],
            ),
            (
                "fta request colour:blue",
                vec![
                    "`fta request` has no option `colour:`",
                    "Usage: `fta request",
                ],
            ),
            (
                "fta request tpid:1 TPID:2",
                vec!["`tpid:` is given twice", "Usage: `fta request"],
            ),
        ];
        for (text, needles) in cases {
            let msg = run(text).unwrap_err().user_message();
            for needle in needles {
                assert!(msg.contains(needle), "{text}: {msg:?} lacks {needle:?}");
            }
            assert!(!msg.contains("{ "), "looks like a debug dump: {msg}");
        }
    }

    #[test]
    fn user_messages_neutralise_echoed_input() {
        let msg = unexpected_arg(NAME, "[x](https://evil.example)").user_message();
        assert!(!msg.contains("](http"), "{msg}");
        assert!(!msg.contains("://"), "{msg}");
        let msg = unexpected_arg(NAME, "<b>`hi`</b>").user_message();
        assert!(!msg.contains('<'), "{msg}");
        assert!(!msg.contains("``"), "{msg}");
        let long = unexpected_arg(NAME, &"a".repeat(500)).user_message();
        assert!(long.len() < 200, "{long}");
    }

    #[test]
    fn usages_are_consistent_and_examples_parse() {
        let names: Vec<&str> = USAGES.iter().map(|r| r.0).collect();
        assert_eq!(
            names,
            [
                "fta request",
                "fta",
                "fta status",
                "fta assign",
                "fta decline",
                "fta info",
                "fta withdraw"
            ]
        );
        for &(name, usage, summary, example) in USAGES {
            assert!(usage.starts_with(name), "{name}");
            assert!(summary.len() <= 128, "{name}: {} chars", summary.len());
            assert!(example.starts_with(name), "{name}");
            assert!(run(example).is_ok(), "example must parse: {example}");
        }
        // The inline example is a request the rules accept.
        match run(USAGES[0].3) {
            Ok(FtaCommand::Inline { input, .. }) => assert!(validate(&input).is_ok()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn join_and_reads_naturally() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(join_and(&s(&[])), "");
        assert_eq!(join_and(&s(&["a"])), "a");
        assert_eq!(join_and(&s(&["a", "b"])), "a and b");
        assert_eq!(join_and(&s(&["a", "b", "c"])), "a, b and c");
    }
}
