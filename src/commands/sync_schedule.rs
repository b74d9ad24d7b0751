//! `sync schedule …`, `sync join <meeting link>` and bare `sync`: parsing only.
//!
//! The command parser routes here for every `sync` except `sync notes`, which `sync.rs` owns; should
//! `notes` arrive anyway, [`SyncParseError::NotMine`] hands it back. Values stay raw strings:
//! [`crate::domain::recurrence::rhythm`] validates them, because "until is in the past" needs the
//! clock and the engagement's default zone, which a parser has no business knowing.

use super::{CommandSpec, Token, echo};
use crate::domain::recurrence::{MAX_DURATION_MINUTES, MIN_DURATION_MINUTES, RhythmError};

pub const NAME: &str = "sync";
const SCHEDULE: &str = "sync schedule";
const JOIN: &str = "sync join";

pub const USAGE_SCHEDULE: &str = "sync schedule <weekly|biweekly|monthly> <mon..fri> <HH:MM> [tz:<IANA>] [duration:<min>] [until:<YYYY-MM-DD>]";
pub const USAGE_JOIN: &str = "sync join <meeting link>";

pub const SPEC_SHOW: CommandSpec = CommandSpec {
    name: NAME,
    usage: "sync",
    summary: "Shows the rhythm of the internal Field team sync, or the existing sync this team joined",
    example: "sync",
};

pub const SPEC_SCHEDULE: CommandSpec = CommandSpec {
    name: SCHEDULE,
    usage: USAGE_SCHEDULE,
    summary: "Creates the recurring internal Field team sync for the roster, weekly, every 2 weeks or monthly",
    example: "sync schedule biweekly tue 15:00 tz:Europe/Berlin duration:30 until:2027-06-30",
};

pub const SPEC_JOIN: CommandSpec = CommandSpec {
    name: JOIN,
    usage: USAGE_JOIN,
    summary: "Records that the team joins a Field sync that already exists instead of scheduling one",
    example: "sync join https://teams.microsoft.com/l/meetup-join/…",
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncCommand {
    /// Bare `sync`.
    Show,
    /// The values as typed, for [`crate::domain::recurrence::rhythm`].
    Schedule {
        cadence: String,
        weekday: String,
        time: String,
        tz: Option<String>,
        duration: Option<String>,
        until: Option<String>,
    },
    /// An https Teams meeting link, as typed.
    Join { link: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncParseError {
    /// `sync notes …`: the notes parser's, not ours.
    #[error("`sync notes` is parsed by the notes parser")]
    NotMine,
    #[error("unknown `sync` subcommand `{given}`")]
    UnknownSubcommand { given: String },
    #[error("`sync schedule` needs {what}")]
    MissingArgument { what: &'static str },
    #[error("unexpected argument `{arg}` for `{command}`")]
    UnexpectedArgument { command: &'static str, arg: String },
    #[error("unknown option `{key}:` for `sync schedule`")]
    UnknownOption { key: String },
    #[error("option `{key}:` given twice")]
    DuplicateOption { key: String },
    #[error("`sync join` needs the meeting link")]
    MissingLink,
    #[error("`{given}` is not a meeting link")]
    NotALink { given: String },
    #[error("`{given}` is not an https link")]
    NotHttps { given: String },
    #[error("`{host}` is not a Teams host")]
    NotTeams { host: String },
    #[error("`{given}` is a Teams link but not to a meeting")]
    NotAMeeting { given: String },
}

impl SyncParseError {
    /// What the user reads: one specific sentence, then the usage line.
    pub fn user_message(&self) -> String {
        let schedule = format!("Usage: `{USAGE_SCHEDULE}`");
        let join = format!("Usage: `{USAGE_JOIN}`");
        match self {
            SyncParseError::NotMine => format!(
                "`sync notes` opens the notes form.\n\nUsage: `sync notes` · `sync` · `{USAGE_SCHEDULE}` · `{USAGE_JOIN}`"
            ),
            SyncParseError::UnknownSubcommand { given } => format!(
                "`sync` has no subcommand {}.\n\nUsage: `sync` · `sync notes` · `{USAGE_SCHEDULE}` · `{USAGE_JOIN}`",
                echo(given)
            ),
            SyncParseError::MissingArgument { what } => {
                format!("`sync schedule` needs {what}.\n\n{schedule}")
            }
            SyncParseError::UnexpectedArgument { command, arg } => {
                let usage = if *command == JOIN { join } else { schedule };
                format!(
                    "I didn't expect {} after `{command}`.\n\n{usage}",
                    echo(arg)
                )
            }
            SyncParseError::UnknownOption { key } => format!(
                "`sync schedule` has no option {}: its options are tz:, duration: and until:.\n\n{schedule}",
                echo(&format!("{key}:"))
            ),
            SyncParseError::DuplicateOption { key } => format!(
                "The option {} is given twice; keep one.\n\n{schedule}",
                echo(&format!("{key}:"))
            ),
            SyncParseError::MissingLink => format!(
                "`sync join` needs the join link of the existing Field sync, from its invite or from Teams.\n\n{join}"
            ),
            SyncParseError::NotALink { given } => format!(
                "{} is not a meeting link: paste the whole join link of the Teams meeting.\n\n{join}",
                echo(given)
            ),
            SyncParseError::NotHttps { given } => format!(
                "{} is not an https link: Teams meeting links start with https.\n\n{join}",
                echo(given)
            ),
            SyncParseError::NotTeams { host } => format!(
                "Only Teams meeting links can be joined, and {} is not Teams.\n\n{join}",
                echo(host)
            ),
            SyncParseError::NotAMeeting { given } => format!(
                "{} does not lead to a meeting: paste the meeting's own join link.\n\n{join}",
                echo(given)
            ),
        }
    }
}

/// The reply to a rhythm [`crate::domain::recurrence::rhythm`] refused: one sentence, the usage
/// line. The error's own `Display` is for logs; here user text is echoed safely.
pub fn rhythm_error_message(err: &RhythmError) -> String {
    let sentence = match err {
        RhythmError::UnknownCadence(given) => format!(
            "{} is not a rhythm: use weekly, biweekly or monthly",
            echo(given)
        ),
        RhythmError::NotAWeekday(given) => format!(
            "{} is not a weekday: syncs run Monday to Friday (mon, tue, wed, thu or fri)",
            echo(given)
        ),
        RhythmError::BadTime(given) => format!(
            "{} is not a time: use 24-hour HH:MM, such as 15:00",
            echo(given)
        ),
        RhythmError::UnknownTimeZone(given) => format!(
            "{} is not a time zone I know: use an IANA name such as Europe/Berlin or America/New_York",
            echo(given)
        ),
        RhythmError::BadDuration(given) => format!(
            "{} is not a sync length: use whole minutes from {MIN_DURATION_MINUTES} to {MAX_DURATION_MINUTES}, such as 30",
            echo(given)
        ),
        RhythmError::BadDate(given) => format!(
            "{} is not a date: use YYYY-MM-DD, such as 2027-06-30",
            echo(given)
        ),
        // These dates were parsed and printed by the domain, so they carry no user text.
        RhythmError::UntilInPast { until, today } => {
            format!("until:{until} is in the past (today is {today})")
        }
        RhythmError::UntilBeforeFirst { until, first } => {
            format!("until:{until} is before the first sync on {first}, so there would be none")
        }
    };
    format!("{sentence}.\n\nUsage: `{USAGE_SCHEDULE}`")
}

/// `args` are the tokens after `sync`.
pub fn parse(args: &[Token]) -> Result<SyncCommand, SyncParseError> {
    let Some((first, rest)) = args.split_first() else {
        return Ok(SyncCommand::Show);
    };
    let Token::Word(sub) = first else {
        return Err(SyncParseError::UnknownSubcommand {
            given: first.to_string(),
        });
    };
    match sub.to_ascii_lowercase().as_str() {
        "schedule" => parse_schedule(rest),
        "join" => parse_join(rest),
        "notes" => Err(SyncParseError::NotMine),
        _ => Err(SyncParseError::UnknownSubcommand { given: sub.clone() }),
    }
}

/// Positional words and options may come in any order; options are told apart by the lexer.
fn parse_schedule(args: &[Token]) -> Result<SyncCommand, SyncParseError> {
    let mut words = Vec::new();
    let (mut tz, mut duration, mut until) = (None, None, None);
    for arg in args {
        match arg {
            Token::Word(word) => words.push(word.clone()),
            Token::Opt { key, value } => {
                let slot = match key.as_str() {
                    "tz" => &mut tz,
                    "duration" => &mut duration,
                    "until" => &mut until,
                    _ => return Err(SyncParseError::UnknownOption { key: key.clone() }),
                };
                if slot.is_some() {
                    return Err(SyncParseError::DuplicateOption { key: key.clone() });
                }
                *slot = Some(value.clone());
            }
            other => {
                return Err(SyncParseError::UnexpectedArgument {
                    command: SCHEDULE,
                    arg: other.to_string(),
                });
            }
        }
    }
    let mut words = words.into_iter();
    let mut next = |what| words.next().ok_or(SyncParseError::MissingArgument { what });
    let cadence = next("the rhythm: weekly, biweekly or monthly")?;
    let weekday = next("the weekday: mon, tue, wed, thu or fri")?;
    let time = next("the time, such as 15:00")?;
    if let Some(extra) = words.next() {
        return Err(SyncParseError::UnexpectedArgument {
            command: SCHEDULE,
            arg: extra,
        });
    }
    Ok(SyncCommand::Schedule {
        cadence,
        weekday,
        time,
        tz,
        duration,
        until,
    })
}

fn parse_join(args: &[Token]) -> Result<SyncCommand, SyncParseError> {
    match args {
        [] => Err(SyncParseError::MissingLink),
        [link] => teams_meeting_link(link).map(|link| SyncCommand::Join { link }),
        [_, extra, ..] => Err(SyncParseError::UnexpectedArgument {
            command: JOIN,
            arg: extra.to_string(),
        }),
    }
}

/// The link as typed, once it is an https URL on a Teams host with a path. A mistyped or foreign
/// link would be posted back to the whole account team as "the" sync, so anything else is refused.
fn teams_meeting_link(token: &Token) -> Result<String, SyncParseError> {
    let text = match token {
        Token::Word(text) | Token::Quoted(text) => text.trim().to_owned(),
        // The lexer keeps `https://…` a word, but should an option-looking split ever reach us,
        // the link is still the same text.
        Token::Opt { key, value } => format!("{key}:{value}"),
        Token::Mention(_) => {
            return Err(SyncParseError::NotALink {
                given: token.to_string(),
            });
        }
    };
    // Markdown and mail clients wrap bare links in angle brackets.
    let text = text
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(&text)
        .to_owned();
    let not_a_link = || SyncParseError::NotALink {
        given: text.clone(),
    };
    let url = url::Url::parse(&text).map_err(|_| not_a_link())?;
    match url.scheme() {
        "https" => {}
        "http" => return Err(SyncParseError::NotHttps { given: text }),
        _ => return Err(not_a_link()),
    }
    let host = match url.host() {
        Some(url::Host::Domain(host)) => host,
        _ => {
            return Err(SyncParseError::NotTeams {
                host: url.host_str().unwrap_or_default().to_owned(),
            });
        }
    };
    if !is_teams_host(host) {
        return Err(SyncParseError::NotTeams {
            host: host.to_owned(),
        });
    }
    // Teams join links never carry credentials or a port; either one means the link was altered.
    if !url.username().is_empty() || url.password().is_some() || url.port().is_some() {
        return Err(not_a_link());
    }
    if url.path().trim_matches('/').is_empty() {
        return Err(SyncParseError::NotAMeeting { given: text });
    }
    Ok(text)
}

fn is_teams_host(host: &str) -> bool {
    host == "teams.microsoft.com"
        || host.ends_with(".teams.microsoft.com")
        || host == "teams.live.com"
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use crate::commands::{Mention, tokenize};

    const MEETUP: &str = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_N2E3YzQ5%40thread.v2/0?context=%7b%22Tid%22%3a%2272f988bf%22%2c%22Oid%22%3a%22d1c3%22%7d";

    /// Tokenizes `sync …` as the command parser does and hands over what follows `sync`.
    fn parse_text(text: &str) -> Result<SyncCommand, SyncParseError> {
        let dana = Mention {
            id: "29:dana".to_owned(),
            name: "Dana Lee".to_owned(),
            text: "<at>Dana Lee</at>".to_owned(),
        };
        let tokens = tokenize(text, &[dana]).unwrap();
        assert!(
            matches!(&tokens[0], Token::Word(w) if w.eq_ignore_ascii_case("sync")),
            "{text}"
        );
        parse(&tokens[1..])
    }

    fn schedule(
        cadence: &str,
        weekday: &str,
        time: &str,
        tz: Option<&str>,
        duration: Option<&str>,
        until: Option<&str>,
    ) -> SyncCommand {
        SyncCommand::Schedule {
            cadence: cadence.to_owned(),
            weekday: weekday.to_owned(),
            time: time.to_owned(),
            tz: tz.map(str::to_owned),
            duration: duration.map(str::to_owned),
            until: until.map(str::to_owned),
        }
    }

    fn join(link: &str) -> SyncCommand {
        SyncCommand::Join {
            link: link.to_owned(),
        }
    }

    #[test]
    fn parse_table() {
        let meetup = format!("sync join {MEETUP}");
        let quoted = format!("sync join \"{MEETUP}\"");
        let bracketed = format!("sync join <{MEETUP}>");
        let cases: Vec<(&str, SyncCommand)> = vec![
            ("sync", SyncCommand::Show),
            (
                "sync schedule biweekly tue 15:00 tz:Europe/Berlin duration:30 until:2027-06-30",
                schedule(
                    "biweekly",
                    "tue",
                    "15:00",
                    Some("Europe/Berlin"),
                    Some("30"),
                    Some("2027-06-30"),
                ),
            ),
            (
                "sync schedule weekly mon 9:30",
                schedule("weekly", "mon", "9:30", None, None, None),
            ),
            (
                "SYNC Schedule Monthly TUE 09:30 TZ:America/New_York",
                schedule(
                    "Monthly",
                    "TUE",
                    "09:30",
                    Some("America/New_York"),
                    None,
                    None,
                ),
            ),
            (
                "sync schedule until:2027-06-30 weekly duration:45 fri tz:\"Europe/Berlin\" 16:00",
                schedule(
                    "weekly",
                    "fri",
                    "16:00",
                    Some("Europe/Berlin"),
                    Some("45"),
                    Some("2027-06-30"),
                ),
            ),
            // Values are checked by `rhythm`, not here.
            (
                "sync schedule daily sat 25:00 tz:Mars/Olympus",
                schedule("daily", "sat", "25:00", Some("Mars/Olympus"), None, None),
            ),
            (meetup.as_str(), join(MEETUP)),
            (quoted.as_str(), join(MEETUP)),
            (bracketed.as_str(), join(MEETUP)),
            (
                "sync JOIN https://teams.microsoft.com/meet/2345678901?p=AbCdEf",
                join("https://teams.microsoft.com/meet/2345678901?p=AbCdEf"),
            ),
            (
                "sync join https://gov.teams.microsoft.com/l/meetup-join/x",
                join("https://gov.teams.microsoft.com/l/meetup-join/x"),
            ),
            (
                "sync join https://TEAMS.LIVE.COM/meet/9876",
                join("https://TEAMS.LIVE.COM/meet/9876"),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_text(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn the_lexer_keeps_a_teams_link_one_word() {
        let tokens = tokenize(&format!("sync join {MEETUP}"), &[]).unwrap();
        assert_eq!(tokens.last(), Some(&Token::Word(MEETUP.to_owned())));
    }

    #[test]
    fn a_link_split_as_an_option_is_put_back_together() {
        let tokens = [
            Token::Word("join".to_owned()),
            Token::Opt {
                key: "https".to_owned(),
                value: "//teams.microsoft.com/l/meetup-join/x".to_owned(),
            },
        ];
        assert_eq!(
            parse(&tokens),
            Ok(join("https://teams.microsoft.com/l/meetup-join/x"))
        );
    }

    #[test]
    fn parse_errors() {
        let e = |s: &str| s.to_owned();
        let cases: Vec<(&str, SyncParseError)> = vec![
            ("sync notes", SyncParseError::NotMine),
            ("sync Notes extra", SyncParseError::NotMine),
            (
                "sync foo",
                SyncParseError::UnknownSubcommand { given: e("foo") },
            ),
            (
                "sync tz:UTC",
                SyncParseError::UnknownSubcommand { given: e("tz:UTC") },
            ),
            (
                "sync \"schedule\"",
                SyncParseError::UnknownSubcommand {
                    given: e("\"schedule\""),
                },
            ),
            (
                "sync schedule",
                SyncParseError::MissingArgument {
                    what: "the rhythm: weekly, biweekly or monthly",
                },
            ),
            (
                "sync schedule weekly",
                SyncParseError::MissingArgument {
                    what: "the weekday: mon, tue, wed, thu or fri",
                },
            ),
            (
                "sync schedule weekly tue tz:UTC",
                SyncParseError::MissingArgument {
                    what: "the time, such as 15:00",
                },
            ),
            (
                "sync schedule weekly tue 15:00 Europe/Berlin",
                SyncParseError::UnexpectedArgument {
                    command: "sync schedule",
                    arg: e("Europe/Berlin"),
                },
            ),
            (
                "sync schedule weekly tue 15:00 \"Team sync\"",
                SyncParseError::UnexpectedArgument {
                    command: "sync schedule",
                    arg: e("\"Team sync\""),
                },
            ),
            (
                "sync schedule weekly tue 15:00 <at>Dana Lee</at>",
                SyncParseError::UnexpectedArgument {
                    command: "sync schedule",
                    arg: e("@Dana Lee"),
                },
            ),
            (
                "sync schedule weekly tue 15:00 room:5",
                SyncParseError::UnknownOption { key: e("room") },
            ),
            (
                "sync schedule weekly tue 15:00 tz:UTC TZ:Europe/Berlin",
                SyncParseError::DuplicateOption { key: e("tz") },
            ),
            ("sync join", SyncParseError::MissingLink),
            (
                "sync join https://teams.microsoft.com/l/x https://teams.microsoft.com/l/y",
                SyncParseError::UnexpectedArgument {
                    command: "sync join",
                    arg: e("https://teams.microsoft.com/l/y"),
                },
            ),
            (
                "sync join https://zoom.us/j/123",
                SyncParseError::NotTeams { host: e("zoom.us") },
            ),
            (
                "sync join https://teams.microsoft.com.evil.example/l/x",
                SyncParseError::NotTeams {
                    host: e("teams.microsoft.com.evil.example"),
                },
            ),
            (
                "sync join https://teams.microsoft.com@evil.example/l/x",
                SyncParseError::NotTeams {
                    host: e("evil.example"),
                },
            ),
            (
                "sync join https://evilteams.microsoft.com/l/x",
                SyncParseError::NotTeams {
                    host: e("evilteams.microsoft.com"),
                },
            ),
            (
                "sync join https://microsoft.com/l/x",
                SyncParseError::NotTeams {
                    host: e("microsoft.com"),
                },
            ),
            (
                "sync join https://52.112.0.1/l/x",
                SyncParseError::NotTeams {
                    host: e("52.112.0.1"),
                },
            ),
            (
                "sync join http://teams.microsoft.com/l/x",
                SyncParseError::NotHttps {
                    given: e("http://teams.microsoft.com/l/x"),
                },
            ),
            (
                "sync join teams.microsoft.com/l/x",
                SyncParseError::NotALink {
                    given: e("teams.microsoft.com/l/x"),
                },
            ),
            (
                "sync join ftp://teams.microsoft.com/l/x",
                SyncParseError::NotALink {
                    given: e("ftp://teams.microsoft.com/l/x"),
                },
            ),
            (
                "sync join https://user@teams.microsoft.com/l/x",
                SyncParseError::NotALink {
                    given: e("https://user@teams.microsoft.com/l/x"),
                },
            ),
            (
                "sync join https://teams.microsoft.com:8443/l/x",
                SyncParseError::NotALink {
                    given: e("https://teams.microsoft.com:8443/l/x"),
                },
            ),
            (
                "sync join <at>Dana Lee</at>",
                SyncParseError::NotALink {
                    given: e("@Dana Lee"),
                },
            ),
            (
                "sync join https://teams.microsoft.com/",
                SyncParseError::NotAMeeting {
                    given: e("https://teams.microsoft.com/"),
                },
            ),
            (
                "sync join https://teams.microsoft.com",
                SyncParseError::NotAMeeting {
                    given: e("https://teams.microsoft.com"),
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_text(text), Err(expected), "{text}");
        }
    }

    #[test]
    fn every_error_ends_with_the_right_usage() {
        let schedule_usage = format!("\n\nUsage: `{USAGE_SCHEDULE}`");
        let join_usage = format!("\n\nUsage: `{USAGE_JOIN}`");
        let cases: Vec<(&str, &str)> = vec![
            ("sync schedule", &schedule_usage),
            ("sync schedule weekly tue 15:00 extra", &schedule_usage),
            ("sync schedule weekly tue 15:00 room:5", &schedule_usage),
            (
                "sync schedule weekly tue 15:00 tz:UTC tz:UTC",
                &schedule_usage,
            ),
            ("sync join", &join_usage),
            ("sync join a b", &join_usage),
            ("sync join https://zoom.us/j/1", &join_usage),
            ("sync join http://teams.microsoft.com/l/x", &join_usage),
            ("sync join nonsense", &join_usage),
            ("sync join https://teams.microsoft.com/", &join_usage),
        ];
        for (text, usage) in cases {
            let message = parse_text(text).unwrap_err().user_message();
            assert!(message.ends_with(usage), "{text}: {message}");
            assert_eq!(message.matches("\n\n").count(), 1, "{text}: {message}");
        }
        for text in ["sync foo", "sync notes"] {
            let message = parse_text(text).unwrap_err().user_message();
            assert!(message.contains(USAGE_SCHEDULE), "{text}: {message}");
            assert!(message.contains(USAGE_JOIN), "{text}: {message}");
        }
    }

    #[test]
    fn user_messages_read_well() {
        let cases = [
            (
                "sync join https://zoom.us/j/1",
                "Only Teams meeting links can be joined, and `zoom.us` is not Teams.",
            ),
            (
                "sync schedule weekly tue 15:00 room:5",
                "`sync schedule` has no option `room:`: its options are tz:, duration: and until:.",
            ),
            (
                "sync schedule weekly",
                "`sync schedule` needs the weekday: mon, tue, wed, thu or fri.",
            ),
            ("sync foo", "`sync` has no subcommand `foo`."),
        ];
        for (text, first_line) in cases {
            let message = parse_text(text).unwrap_err().user_message();
            assert_eq!(message.split("\n\n").next(), Some(first_line), "{text}");
        }
    }

    #[test]
    fn a_refused_link_is_not_echoed_clickable() {
        let message = parse_text("sync join http://evil.example/teams")
            .unwrap_err()
            .user_message();
        assert!(!message.contains("http://evil"), "{message}");
    }

    #[test]
    fn rhythm_error_messages() {
        let e = |s: &str| s.to_owned();
        let cases = [
            (
                RhythmError::BadTime(e("25:00")),
                "`25:00` is not a time: use 24-hour HH:MM, such as 15:00.",
            ),
            (
                RhythmError::NotAWeekday(e("sat")),
                "`sat` is not a weekday: syncs run Monday to Friday (mon, tue, wed, thu or fri).",
            ),
            (
                RhythmError::UnknownCadence(e("daily")),
                "`daily` is not a rhythm: use weekly, biweekly or monthly.",
            ),
            (
                RhythmError::UnknownTimeZone(e("Mars/Olympus")),
                "`Mars/Olympus` is not a time zone I know: use an IANA name such as Europe/Berlin or America/New_York.",
            ),
            (
                RhythmError::BadDuration(e("5")),
                "`5` is not a sync length: use whole minutes from 15 to 240, such as 30.",
            ),
            (
                RhythmError::BadDate(e("2027-02-30")),
                "`2027-02-30` is not a date: use YYYY-MM-DD, such as 2027-06-30.",
            ),
            (
                RhythmError::UntilInPast {
                    until: e("2026-12-31"),
                    today: e("2027-01-04"),
                },
                "until:2026-12-31 is in the past (today is 2027-01-04).",
            ),
            (
                RhythmError::UntilBeforeFirst {
                    until: e("2027-01-04"),
                    first: e("2027-01-05"),
                },
                "until:2027-01-04 is before the first sync on 2027-01-05, so there would be none.",
            ),
        ];
        for (err, sentence) in cases {
            assert_eq!(
                rhythm_error_message(&err),
                format!("{sentence}\n\nUsage: `{USAGE_SCHEDULE}`")
            );
        }
    }

    #[test]
    fn specs_fit_the_manifest() {
        for spec in [SPEC_SHOW, SPEC_SCHEDULE, SPEC_JOIN] {
            assert!(spec.summary.chars().count() <= 128, "{}", spec.name);
            assert!(spec.usage.starts_with(spec.name), "{}", spec.name);
            assert!(spec.example.starts_with(spec.name), "{}", spec.name);
        }
    }
}
