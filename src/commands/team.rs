//! `team`, `team add <ROLE> <@mention|email>`, `team remove <ROLE> [<@mention|email>]`.

use super::{Command, CommandSpec, ParseError, Token, Who};
use crate::domain::roles::Role;

pub(super) const NAME: &str = "team";
const ADD: &str = "team add";
const REMOVE: &str = "team remove";
const ROLES: &str = "one of ATS TAM AE CSM ADE TSP SSP FTA";

pub(super) const SPEC: CommandSpec = CommandSpec {
    name: NAME,
    usage: "team",
    summary: "Shows the engagement's roster and flags a missing mandatory ATS or TAM",
    example: "team",
};

pub(super) const SPEC_ADD: CommandSpec = CommandSpec {
    name: ADD,
    usage: "team add <ROLE> <@mention|email>",
    summary: "Adds a person to the roster in a role (ATS TAM AE CSM ADE TSP SSP FTA)",
    example: "team add TAM dana@contoso.com",
};

pub(super) const SPEC_REMOVE: CommandSpec = CommandSpec {
    name: REMOVE,
    usage: "team remove <ROLE> [<@mention|email>]",
    summary: "Removes a person (or everyone) from a role on the roster",
    example: "team remove AE",
};

pub(super) fn parse(args: &[Token]) -> Result<Command, ParseError> {
    match args {
        [] => Ok(Command::TeamShow),
        [Token::Word(w), rest @ ..] if w.eq_ignore_ascii_case("add") => {
            let (role, who) = role_and_who(ADD, rest)?;
            let who = who.ok_or(ParseError::MissingArgument {
                command: ADD,
                what: "who to add: an @mention or an email address",
            })?;
            Ok(Command::TeamAdd { role, who })
        }
        [Token::Word(w), rest @ ..] if w.eq_ignore_ascii_case("remove") => {
            let (role, who) = role_and_who(REMOVE, rest)?;
            Ok(Command::TeamRemove { role, who })
        }
        [other, ..] => Err(ParseError::UnexpectedArgument {
            command: NAME,
            arg: other.to_string(),
        }),
    }
}

fn role_and_who(command: &'static str, args: &[Token]) -> Result<(Role, Option<Who>), ParseError> {
    let (role, rest) = match args {
        [] => {
            return Err(ParseError::MissingArgument {
                command,
                what: "a role: ATS TAM AE CSM ADE TSP SSP or FTA",
            });
        }
        [Token::Word(r), rest @ ..] => (
            Role::parse(r).ok_or_else(|| ParseError::InvalidValue {
                command,
                what: "role",
                given: r.clone(),
                expected: ROLES,
            })?,
            rest,
        ),
        [other, ..] => {
            return Err(ParseError::InvalidValue {
                command,
                what: "role",
                given: other.to_string(),
                expected: ROLES,
            });
        }
    };
    let who = match rest {
        [] => None,
        [Token::Mention(m)] => Some(Who::Mention(m.clone())),
        [Token::Word(w) | Token::Quoted(w)] => Some(Who::Email(parse_email(command, w)?)),
        [_, extra, ..] | [extra @ Token::Opt { .. }] => {
            return Err(ParseError::UnexpectedArgument {
                command,
                arg: extra.to_string(),
            });
        }
    };
    Ok((role, who))
}

/// A plausible email address: one `@`, a local part, and a domain with a dot. Graph decides whether the
/// person exists.
pub(super) fn parse_email(command: &'static str, value: &str) -> Result<String, ParseError> {
    let v = value.trim().trim_start_matches("mailto:");
    let bad = || ParseError::InvalidValue {
        command,
        what: "email address",
        given: value.to_owned(),
        expected: "write it as name@domain, or @mention the person",
    };
    let (local, domain) = v.split_once('@').ok_or_else(bad)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._%+-'".contains(c));
    if !local_ok || !super::engagement::is_domain(&domain.to_ascii_lowercase()) {
        return Err(bad());
    }
    Ok(v.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::super::{Mention, parse as parse_text};
    use super::*;

    #[test]
    fn team_table() {
        assert_eq!(parse_text("team", &[]), Ok(Command::TeamShow));
        assert_eq!(
            parse_text("team add TAM Dana@Contoso.com", &[]),
            Ok(Command::TeamAdd {
                role: Role::Tam,
                who: Who::Email("dana@contoso.com".into())
            })
        );
        let dana = Mention {
            id: "29:dana".into(),
            name: "Dana Lee".into(),
            text: "<at>Dana Lee</at>".into(),
        };
        assert_eq!(
            parse_text(
                "team add ats <at>Dana Lee</at>",
                std::slice::from_ref(&dana)
            ),
            Ok(Command::TeamAdd {
                role: Role::Ats,
                who: Who::Mention(dana.clone())
            })
        );
        assert_eq!(
            parse_text("team remove AE", &[]),
            Ok(Command::TeamRemove {
                role: Role::Ae,
                who: None
            })
        );
        for (text, what) in [
            ("team add", "no role"),
            ("team add XYZ a@b.com", "unknown role"),
            ("team add TAM", "nobody"),
            ("team add TAM not-an-email", "bad email"),
            ("team add TAM a@b", "no dot"),
            ("team add TAM a@b.com c@d.com", "two people"),
            ("team kick TAM", "unknown subcommand"),
        ] {
            let err = parse_text(text, &[]).expect_err(what);
            assert!(
                err.user_message().contains("Usage:"),
                "{what}: {}",
                err.user_message()
            );
        }
        let err = parse_text("team add XYZ a@b.com", &[]).unwrap_err();
        assert!(err.user_message().contains("ATS TAM AE"));
    }
}
