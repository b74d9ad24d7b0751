//! `invite [within:<days>] [duration:<min>]` and the preview card's buttons.

use serde_json::Value;

use super::{Command, CommandSpec, ParseError, Token, prep::engagement_id};
use crate::cards::{VERB_INVITE_CANCEL, VERB_INVITE_OTHER, VERB_INVITE_SEND};

pub(super) const NAME: &str = "invite";

pub(super) const SPEC: CommandSpec = CommandSpec {
    name: NAME,
    usage: "invite [within:<days>] [duration:<min>]",
    summary: "Finds times when ATS and TAM are free, drafts the intro email and proposes the invite with the standard agenda",
    example: "invite within:10 duration:60",
};

pub const DEFAULT_WITHIN_DAYS: u32 = 10;
pub const DEFAULT_DURATION_MINUTES: u32 = 60;
const MAX_WITHIN_DAYS: u32 = 40;

pub(super) fn parse(args: &[Token]) -> Result<Command, ParseError> {
    let mut within = DEFAULT_WITHIN_DAYS;
    let mut duration = DEFAULT_DURATION_MINUTES;
    for arg in args {
        match arg {
            Token::Opt { key, value } if key == "within" => {
                within = match value.parse::<u32>() {
                    Ok(n) if (1..=MAX_WITHIN_DAYS).contains(&n) => n,
                    _ => {
                        return Err(ParseError::InvalidValue {
                            command: NAME,
                            what: "number of business days",
                            given: value.clone(),
                            expected: "a whole number from 1 to 40",
                        });
                    }
                }
            }
            Token::Opt { key, value } if key == "duration" => {
                duration = match value.trim_end_matches("min").parse::<u32>() {
                    Ok(n) if (15..=240).contains(&n) => n,
                    _ => {
                        return Err(ParseError::InvalidValue {
                            command: NAME,
                            what: "duration",
                            given: value.clone(),
                            expected: "minutes from 15 to 240, such as 60",
                        });
                    }
                }
            }
            Token::Opt { key, .. } => {
                return Err(ParseError::UnknownOption {
                    command: NAME,
                    key: key.clone(),
                });
            }
            other => {
                return Err(ParseError::UnexpectedArgument {
                    command: NAME,
                    arg: other.to_string(),
                });
            }
        }
    }
    Ok(Command::Invite { within, duration })
}

/// The preview card's buttons: data `{engagementId, inviteId}`, plus the chosen `slot` input on Send and
/// an optional `within` on Other times.
pub(super) fn parse_action(verb: &str, data: &Value) -> Result<Command, ParseError> {
    let bad = |detail: &str| ParseError::BadActionData {
        verb: verb.to_owned(),
        detail: detail.to_owned(),
    };
    let engagement_id = engagement_id(data).ok_or_else(|| bad("engagementId"))?;
    let invite_id = match data.get("inviteId") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| bad("inviteId"))?;
    match verb {
        VERB_INVITE_SEND => Ok(Command::InviteSend {
            engagement_id,
            invite_id,
            slot: data.get("slot").and_then(|v| match v {
                Value::String(s) => s.parse().ok(),
                Value::Number(n) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
                _ => None,
            }),
        }),
        VERB_INVITE_OTHER => Ok(Command::InviteOtherTimes {
            engagement_id,
            invite_id,
            within: data
                .get("within")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .map(|n| n.clamp(1, MAX_WITHIN_DAYS)),
        }),
        VERB_INVITE_CANCEL => Ok(Command::InviteCancel {
            engagement_id,
            invite_id,
        }),
        _ => Err(ParseError::UnknownVerb {
            verb: verb.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use serde_json::json;

    use super::super::parse as parse_text;
    use super::*;

    #[test]
    fn invite_table() {
        assert_eq!(
            parse_text("invite", &[]),
            Ok(Command::Invite {
                within: 10,
                duration: 60
            })
        );
        assert_eq!(
            parse_text("INVITE within:5 duration:30", &[]),
            Ok(Command::Invite {
                within: 5,
                duration: 30
            })
        );
        for text in [
            "invite within:0",
            "invite within:x",
            "invite duration:5",
            "invite colour:red",
            "invite now",
        ] {
            let err = parse_text(text, &[]).unwrap_err();
            assert!(
                err.user_message().contains("Usage:"),
                "{text}: {}",
                err.user_message()
            );
        }
        assert_eq!(
            parse_action(
                VERB_INVITE_SEND,
                &json!({"engagementId": 1, "inviteId": "2", "slot": "1"})
            ),
            Ok(Command::InviteSend {
                engagement_id: 1,
                invite_id: 2,
                slot: Some(1)
            })
        );
        assert!(parse_action(VERB_INVITE_SEND, &json!({"engagementId": 1})).is_err());
    }
}
