//! `sync notes`: after the account team sync, the notes form; its submit records them and drafts the
//! follow-up email.

use serde_json::Value;

use super::{Command, CommandSpec, ParseError, Token, prep::engagement_id};
use crate::cards::VERB_SYNC_NOTES_SUBMIT;

pub(super) const NAME: &str = "sync";
const NOTES: &str = "sync notes";

pub(super) const SPEC_NOTES: CommandSpec = CommandSpec {
    name: NOTES,
    usage: "sync notes",
    summary: "After the account team sync: record summary, open items, next steps and asks; drafts the follow-up email",
    example: "sync notes",
};

pub(super) fn parse(args: &[Token]) -> Result<Command, ParseError> {
    match args {
        [Token::Word(w)] if w.eq_ignore_ascii_case("notes") => Ok(Command::SyncNotes),
        [] => Err(ParseError::MissingArgument {
            command: NOTES,
            what: "what to do: `sync notes`",
        }),
        [Token::Word(w), extra, ..] if w.eq_ignore_ascii_case("notes") => {
            Err(ParseError::UnexpectedArgument {
                command: NOTES,
                arg: extra.to_string(),
            })
        }
        [other, ..] => Err(ParseError::UnexpectedArgument {
            command: NOTES,
            arg: other.to_string(),
        }),
    }
}

pub(super) fn parse_submit(data: &Value) -> Result<Command, ParseError> {
    let engagement_id = engagement_id(data).ok_or_else(|| ParseError::BadActionData {
        verb: VERB_SYNC_NOTES_SUBMIT.to_owned(),
        detail: "engagementId".to_owned(),
    })?;
    Ok(Command::SyncNotesSubmit {
        engagement_id,
        data: data.clone(),
    })
}
