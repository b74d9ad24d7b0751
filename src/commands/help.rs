//! `help`: the command list.

use super::{COMMANDS, Command, CommandSpec, ParseError, Reply, Token};
use crate::cards;

pub(super) const NAME: &str = "help";

pub(super) const SPEC: CommandSpec = CommandSpec {
    name: NAME,
    usage: "help",
    summary: "Lists the commands with one example each",
    example: "help",
};

/// `help <command>` is a natural thing to type; the card already covers every command, so it is
/// accepted, while anything else is reported rather than silently ignored.
pub(super) fn parse(args: &[Token]) -> Result<Command, ParseError> {
    match args {
        [] => Ok(Command::Help),
        [Token::Word(topic)]
            if COMMANDS
                .iter()
                .any(|spec| spec.name.eq_ignore_ascii_case(topic)) =>
        {
            Ok(Command::Help)
        }
        [arg, ..] => Err(ParseError::UnexpectedArgument {
            command: NAME,
            arg: arg.to_string(),
        }),
    }
}

pub(super) fn execute() -> Reply {
    Reply::Card(cards::help_card(COMMANDS))
}
