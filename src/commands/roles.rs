//! `roles`: the Field roles from field-roles.md.

use serde_json::Value;

use super::{Command, CommandSpec, ParseError, Reply, RolesQuery, Token, VERB_ROLES_SHOW};
use crate::cards;
use crate::domain::roles::Role;

pub(super) const NAME: &str = "roles";

pub(super) const SPEC: CommandSpec = CommandSpec {
    name: NAME,
    usage: "roles [<ABBR>|atu]",
    summary: "The Field roles: organization, ATU yes/no and objectives; one role, or atu for the ATU roles only",
    example: "roles TAM",
};

pub(super) fn parse(args: &[Token]) -> Result<Command, ParseError> {
    match args {
        [] => Ok(Command::Roles(RolesQuery::All)),
        [Token::Word(arg) | Token::Quoted(arg)] => parse_query(arg).map(Command::Roles),
        [arg @ (Token::Opt { .. } | Token::Mention(_))] | [_, arg, ..] => {
            Err(ParseError::UnexpectedArgument {
                command: NAME,
                arg: arg.to_string(),
            })
        }
    }
}

/// Data `{"query": "all" | "atu" | "<ABBR>"}`; no query means all roles, like a bare `roles`.
pub(super) fn parse_action(data: &Value) -> Result<Command, ParseError> {
    let bad = |detail: &str| ParseError::BadActionData {
        verb: VERB_ROLES_SHOW.to_owned(),
        detail: detail.to_owned(),
    };
    let query = match data {
        Value::Null => None,
        Value::Object(map) => map.get("query").filter(|q| !q.is_null()),
        _ => return Err(bad("data must be an object")),
    };
    match query {
        None => Ok(Command::Roles(RolesQuery::All)),
        Some(Value::String(q)) => parse_query(q).map(Command::Roles),
        Some(_) => Err(bad("`query` must be a string")),
    }
}

fn parse_query(arg: &str) -> Result<RolesQuery, ParseError> {
    let arg = arg.trim();
    if arg.eq_ignore_ascii_case("all") {
        return Ok(RolesQuery::All);
    }
    if arg.eq_ignore_ascii_case("atu") {
        return Ok(RolesQuery::Atu);
    }
    match Role::parse(arg) {
        Some(role) if role.is_field() => Ok(RolesQuery::One(role)),
        // FTA parses as a role but is FastTrack's own; the error message explains that.
        _ => Err(ParseError::UnknownRole {
            given: arg.to_owned(),
        }),
    }
}

pub(super) fn execute(query: RolesQuery) -> Reply {
    Reply::Card(cards::roles_card(&query))
}
