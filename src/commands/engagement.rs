//! `engagement start "<Customer>" motion:<rfa|health> [tpid:<n>] [tenant:<domain>]`, `engagement`,
//! `engagement close`.

use super::{Command, CommandSpec, ParseError, Token};
use crate::domain::engagement::Motion;

pub(super) const NAME: &str = "engagement";
const START: &str = "engagement start";

pub(super) const SPEC: CommandSpec = CommandSpec {
    name: START,
    usage: "engagement start \"<Customer>\" motion:<rfa|health> [tpid:<n>] [tenant:<domain>]",
    summary: "Binds this channel to a new engagement and shows the next steps",
    example: "engagement start \"Contoso Ltd\" motion:rfa tpid:12345 tenant:contoso.onmicrosoft.com",
};

pub(super) const SPEC_SHOW: CommandSpec = CommandSpec {
    name: NAME,
    usage: "engagement [close]",
    summary: "Shows this channel's engagement: customer, motion, roster, phase, open items; or closes it",
    example: "engagement",
};

pub(super) fn parse(args: &[Token]) -> Result<Command, ParseError> {
    match args {
        [] => Ok(Command::EngagementShow),
        [Token::Word(w), rest @ ..] if w.eq_ignore_ascii_case("start") => parse_start(rest),
        [Token::Word(w)] if w.eq_ignore_ascii_case("close") => Ok(Command::EngagementClose),
        [Token::Word(w), extra, ..] if w.eq_ignore_ascii_case("close") => {
            Err(ParseError::UnexpectedArgument {
                command: NAME,
                arg: extra.to_string(),
            })
        }
        [other, ..] => Err(ParseError::UnexpectedArgument {
            command: NAME,
            arg: other.to_string(),
        }),
    }
}

fn parse_start(args: &[Token]) -> Result<Command, ParseError> {
    let mut customer: Option<String> = None;
    let mut motion = None;
    let mut tpid = None;
    let mut tenant = None;
    for arg in args {
        match arg {
            Token::Quoted(text) | Token::Word(text) if customer.is_none() => {
                let name = text.trim();
                if name.is_empty() {
                    return Err(ParseError::MissingArgument {
                        command: START,
                        what: "the customer's name (in quotes when it has spaces)",
                    });
                }
                customer = Some(name.chars().take(120).collect());
            }
            Token::Opt { key, value } => match key.as_str() {
                "motion" => {
                    motion = Some(
                        Motion::parse(value).ok_or_else(|| ParseError::InvalidValue {
                            command: START,
                            what: "motion",
                            given: value.clone(),
                            expected: "use `rfa` or `health`",
                        })?,
                    )
                }
                "tpid" => tpid = Some(parse_tpid(START, value)?),
                "tenant" => tenant = Some(parse_tenant(START, value)?),
                _ => {
                    return Err(ParseError::UnknownOption {
                        command: START,
                        key: key.clone(),
                    });
                }
            },
            other => {
                return Err(ParseError::UnexpectedArgument {
                    command: START,
                    arg: other.to_string(),
                });
            }
        }
    }
    let customer = customer.ok_or(ParseError::MissingArgument {
        command: START,
        what: "the customer's name (in quotes when it has spaces)",
    })?;
    let motion = motion.ok_or(ParseError::MissingArgument {
        command: START,
        what: "the motion: `motion:rfa` or `motion:health`",
    })?;
    Ok(Command::EngagementStart {
        customer,
        motion,
        tpid,
        tenant,
    })
}

/// TPID: a positive integer.
pub(super) fn parse_tpid(command: &'static str, value: &str) -> Result<u64, ParseError> {
    match value.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ParseError::InvalidValue {
            command,
            what: "TPID",
            given: value.to_owned(),
            expected: "a positive whole number such as 12345",
        }),
    }
}

/// A tenant: a domain such as contoso.onmicrosoft.com, or a tenant GUID.
pub(super) fn parse_tenant(command: &'static str, value: &str) -> Result<String, ParseError> {
    let v = value.trim().to_ascii_lowercase();
    if is_guid(&v) || is_domain(&v) {
        Ok(v)
    } else {
        Err(ParseError::InvalidValue {
            command,
            what: "tenant",
            given: value.to_owned(),
            expected: "a domain such as contoso.onmicrosoft.com, or a tenant GUID",
        })
    }
}

fn is_guid(v: &str) -> bool {
    let groups: Vec<&str> = v.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

pub(super) fn is_domain(v: &str) -> bool {
    let labels: Vec<&str> = v.split('.').collect();
    v.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_alphabetic()) && tld.len() >= 2)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::super::parse as parse_text;
    use super::*;

    #[test]
    fn start_table() {
        let ok = parse_text(
            "engagement start \"Contoso Ltd\" motion:rfa tpid:12345 tenant:Contoso.onmicrosoft.com",
            &[],
        );
        assert_eq!(
            ok,
            Ok(Command::EngagementStart {
                customer: "Contoso Ltd".into(),
                motion: Motion::Rfa,
                tpid: Some(12345),
                tenant: Some("contoso.onmicrosoft.com".into()),
            })
        );
        assert_eq!(
            parse_text("ENGAGEMENT start Fabrikam motion:HEALTH", &[]),
            Ok(Command::EngagementStart {
                customer: "Fabrikam".into(),
                motion: Motion::Health,
                tpid: None,
                tenant: None,
            })
        );
        assert!(matches!(
            parse_text(
                "engagement start X motion:health tenant:8d3e1c2a-0000-4000-8000-00000000aaaa",
                &[]
            ),
            Ok(Command::EngagementStart {
                tenant: Some(_),
                ..
            })
        ));
        for (text, what) in [
            ("engagement start motion:rfa", "missing customer"),
            ("engagement start \"Contoso\"", "missing motion"),
            ("engagement start Contoso motion:sales", "bad motion"),
            ("engagement start Contoso motion:rfa tpid:-3", "bad tpid"),
            ("engagement start Contoso motion:rfa tpid:0", "zero tpid"),
            (
                "engagement start Contoso motion:rfa tenant:not_a_domain",
                "bad tenant",
            ),
            (
                "engagement start Contoso motion:rfa colour:blue",
                "unknown option",
            ),
            ("engagement start Contoso Ltd motion:rfa", "unquoted spaces"),
            ("engagement stop", "unknown subcommand"),
            ("engagement close now", "extra"),
        ] {
            let err = parse_text(text, &[]).expect_err(what);
            let message = err.user_message();
            assert!(message.contains("Usage:"), "{what}: {message}");
        }
        assert_eq!(parse_text("engagement", &[]), Ok(Command::EngagementShow));
        assert_eq!(
            parse_text("engagement Close", &[]),
            Ok(Command::EngagementClose)
        );
    }
}
