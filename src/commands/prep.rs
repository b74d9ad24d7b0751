//! `prep`: the prep checklist before the account team call, ticked from the card.

use serde_json::Value;

use super::{Command, CommandSpec, ParseError, Token};
use crate::cards::VERB_PREP_TOGGLE;
use crate::domain::engagement::PrepItem;

pub(super) const NAME: &str = "prep";

pub(super) const SPEC: CommandSpec = CommandSpec {
    name: NAME,
    usage: "prep",
    summary: "The prep checklist for the engagement's motion; tick items from the card",
    example: "prep",
};

pub(super) fn parse(args: &[Token]) -> Result<Command, ParseError> {
    match args {
        [] => Ok(Command::PrepShow),
        [arg, ..] => Err(ParseError::UnexpectedArgument {
            command: NAME,
            arg: arg.to_string(),
        }),
    }
}

/// Data `{"engagementId": n, "item": "<item>", "done": true|false}`.
pub(super) fn parse_toggle(data: &Value) -> Result<Command, ParseError> {
    let bad = |detail: &str| ParseError::BadActionData {
        verb: VERB_PREP_TOGGLE.to_owned(),
        detail: detail.to_owned(),
    };
    let engagement_id = engagement_id(data).ok_or_else(|| bad("engagementId"))?;
    let item = data
        .get("item")
        .and_then(Value::as_str)
        .and_then(PrepItem::parse)
        .ok_or_else(|| bad("item"))?;
    let done = match data.get("done") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s == "true" => true,
        Some(Value::String(s)) if s == "false" => false,
        _ => return Err(bad("done")),
    };
    Ok(Command::PrepToggle {
        engagement_id,
        item,
        done,
    })
}

/// Card data carries ids as numbers; an Action.Submit fallback may turn them into strings.
pub(super) fn engagement_id(data: &Value) -> Option<i64> {
    match data.get("engagementId")? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}
