//! The rhythm of the recurring internal Field team sync: validation of `sync schedule` values,
//! next-occurrence computation and the Graph `patternedRecurrence` it becomes.
//!
//! Everything is civil time in the rhythm's IANA zone, turned into an instant only at the end, so a
//! 15:00 sync stays at 15:00 local across DST changes and its UTC instant moves instead. A local time
//! that a DST change skips resolves forward and a repeated one to its first occurrence (jiff's
//! "compatible" disambiguation, the same rule as RFC 5545 and Temporal).
//!
//! Decisions:
//! * `until` is inclusive: a sync on the `until` date still takes place. Graph's `endDate` is
//!   inclusive too, so the date is passed through as is.
//! * Monthly means "the same weekday each month" ([`WeekIndex`]): the ordinal of the first sync in
//!   its month, where only a fifth occurrence (the 29th to 31st) becomes `last`. A first sync that is
//!   both the fourth and the last of its month stays `fourth`, because every month has a fourth
//!   weekday, whereas `last` would drift to the fifth week in longer months.

use std::fmt;

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde_json::{Value, json};

pub const DEFAULT_DURATION_MINUTES: u32 = 30;
pub const MIN_DURATION_MINUTES: u32 = 15;
pub const MAX_DURATION_MINUTES: u32 = 240;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cadence {
    Weekly,
    Biweekly,
    Monthly,
}

impl Cadence {
    /// Case-insensitive `weekly` / `biweekly` / `monthly`.
    pub fn parse(s: &str) -> Option<Cadence> {
        match s.trim().to_ascii_lowercase().as_str() {
            "weekly" => Some(Cadence::Weekly),
            "biweekly" => Some(Cadence::Biweekly),
            "monthly" => Some(Cadence::Monthly),
            _ => None,
        }
    }

    /// What the user types, and what is stored.
    pub fn label(self) -> &'static str {
        match self {
            Cadence::Weekly => "weekly",
            Cadence::Biweekly => "biweekly",
            Cadence::Monthly => "monthly",
        }
    }
}

impl fmt::Display for Cadence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Which weekday of the month a monthly sync takes; Graph's `weekIndex`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeekIndex {
    First,
    Second,
    Third,
    Fourth,
    Last,
}

impl WeekIndex {
    /// The index of the `date`'s weekday within its month. See the module docs for why only a
    /// fifth occurrence is `Last`.
    pub fn of(date: Date) -> WeekIndex {
        match (date.day() - 1) / 7 {
            0 => WeekIndex::First,
            1 => WeekIndex::Second,
            2 => WeekIndex::Third,
            3 => WeekIndex::Fourth,
            _ => WeekIndex::Last,
        }
    }

    /// Graph's `weekIndex` value, which is also the English word.
    pub fn label(self) -> &'static str {
        match self {
            WeekIndex::First => "first",
            WeekIndex::Second => "second",
            WeekIndex::Third => "third",
            WeekIndex::Fourth => "fourth",
            WeekIndex::Last => "last",
        }
    }

    /// The `nth` argument of [`Date::nth_weekday_of_month`]; every month has each of these.
    fn nth(self) -> i8 {
        match self {
            WeekIndex::First => 1,
            WeekIndex::Second => 2,
            WeekIndex::Third => 3,
            WeekIndex::Fourth => 4,
            WeekIndex::Last => -1,
        }
    }
}

/// A validated sync rhythm, as stored. Build it with [`rhythm`]: the fields are public for the store,
/// and the methods stay total (never panic) even on a hand-built value, but only [`rhythm`] checks
/// the rules (Monday to Friday, 15 to 240 minutes, a known zone, `until` not before the first sync).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyncRhythm {
    pub cadence: Cadence,
    /// Monday to Friday; stored as Graph's lowercase day name (`"tuesday"`).
    #[serde(with = "weekday_name")]
    pub weekday: Weekday,
    pub time: Time,
    /// IANA name, e.g. `Europe/Berlin`.
    pub time_zone: String,
    pub duration_minutes: u32,
    /// The first sync. A biweekly series keeps its two-week phase from here, and a monthly one takes
    /// its [`WeekIndex`] from it.
    pub starts_on: Date,
    /// The last day a sync may take place on (inclusive).
    pub until: Option<Date>,
}

impl SyncRhythm {
    /// The first sync date on or after `from_date` (a civil date in the rhythm's zone); `None` when
    /// that would be after `until`.
    pub fn first_on_or_after(&self, from_date: Date) -> Option<Date> {
        let first = self.first_date()?;
        let from = from_date.max(first);
        let date = match self.cadence {
            Cadence::Weekly => advance_to(from, self.weekday)?,
            Cadence::Biweekly => {
                let date = advance_to(from, self.weekday)?;
                let weeks = first.duration_until(date).as_secs() / (7 * 24 * 60 * 60);
                if weeks.rem_euclid(2) == 0 {
                    date
                } else {
                    date.checked_add(7.days()).ok()?
                }
            }
            Cadence::Monthly => {
                let index = WeekIndex::of(first);
                let this_month = nth_of_month(from.first_of_month(), self.weekday, index)?;
                if this_month >= from {
                    this_month
                } else {
                    let next_month = from.first_of_month().checked_add(1.month()).ok()?;
                    nth_of_month(next_month, self.weekday, index)?
                }
            }
        };
        match self.until {
            Some(until) if date > until => None,
            _ => Some(date),
        }
    }

    /// The start of the first sync strictly after `after`; `None` once the series is past `until`
    /// (or the zone is unknown, which [`rhythm`] rules out).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let tz = TimeZone::get(&self.time_zone).ok()?;
        // A skipped local time late in the evening can resolve past midnight, so yesterday's sync
        // may still lie ahead of `after`.
        let from = tz.to_datetime(after).date().yesterday().ok()?;
        let mut date = self.first_on_or_after(from)?;
        // Syncs are at least a week apart, so the second candidate is always after `after`; the
        // bound just keeps the loop visibly finite.
        for _ in 0..4 {
            let start = tz.to_timestamp(date.to_datetime(self.time)).ok()?;
            if start > after {
                return Some(start);
            }
            date = self.first_on_or_after(date.tomorrow().ok()?)?;
        }
        None
    }

    /// The monthly index (`None` for weekly and biweekly).
    pub fn week_index(&self) -> Option<WeekIndex> {
        match self.cadence {
            Cadence::Monthly => self.first_date().map(WeekIndex::of),
            Cadence::Weekly | Cadence::Biweekly => None,
        }
    }

    /// Graph's `patternedRecurrence` for the series master. Only the fields each pattern type needs
    /// are sent, because Graph rejects unsupported values even in fields it ignores.
    pub fn patterned_recurrence(&self) -> Value {
        let day = weekday_name::graph(self.weekday);
        let pattern = match self.cadence {
            Cadence::Weekly | Cadence::Biweekly => json!({
                "type": "weekly",
                "interval": if self.cadence == Cadence::Biweekly { 2 } else { 1 },
                "daysOfWeek": [day],
                // Graph counts the interval in weeks that begin on this day; Monday keeps a
                // Monday-to-Friday series in one week whatever the mailbox's locale.
                "firstDayOfWeek": "monday",
            }),
            Cadence::Monthly => json!({
                "type": "relativeMonthly",
                "interval": 1,
                "daysOfWeek": [day],
                "index": WeekIndex::of(self.start_date()).label(),
            }),
        };
        // Graph requires `startDate` to be the date of the master's `start`, see `first_event_times`.
        let start = self.start_date().to_string();
        let range = match self.until {
            Some(until) => json!({
                "type": "endDate",
                "startDate": start,
                "endDate": until.to_string(),
                "recurrenceTimeZone": self.time_zone,
            }),
            None => json!({
                "type": "noEnd",
                "startDate": start,
                "recurrenceTimeZone": self.time_zone,
            }),
        };
        json!({ "pattern": pattern, "range": range })
    }

    /// The series master's `start` and `end` as Graph `dateTimeTimeZone` pairs (`dateTime`,
    /// `timeZone`). Both are civil times in the rhythm's zone: Graph takes the series' local time
    /// and length from them, so the end is the start plus the duration on the wall clock.
    pub fn first_event_times(&self) -> ((String, String), (String, String)) {
        let start = self.start_date().to_datetime(self.time);
        let end = start
            .checked_add(i64::from(self.duration_minutes).minutes())
            .unwrap_or(start);
        (
            (graph_datetime(start), self.time_zone.clone()),
            (graph_datetime(end), self.time_zone.clone()),
        )
    }

    /// One line for people: "Every 2 weeks on Tuesday at 15:00 (Europe/Berlin), 30 min, until 30 Jun 2027".
    pub fn describe(&self) -> String {
        let day = weekday_name::english(self.weekday);
        let when = match (self.cadence, self.week_index()) {
            (Cadence::Weekly, _) => format!("Every week on {day}"),
            (Cadence::Biweekly, _) => format!("Every 2 weeks on {day}"),
            (Cadence::Monthly, Some(index)) => {
                format!("Every month on the {} {day}", index.label())
            }
            (Cadence::Monthly, None) => format!("Every month on a {day}"),
        };
        let mut text = format!(
            "{when} at {} ({}), {} min",
            self.time.strftime("%H:%M"),
            self.time_zone,
            self.duration_minutes
        );
        if let Some(until) = self.until {
            text.push_str(&format!(", until {}", human_date(until)));
        }
        text
    }

    /// The first sync: `starts_on`, moved onto the weekday should a hand-built value disagree.
    fn first_date(&self) -> Option<Date> {
        advance_to(self.starts_on, self.weekday)
    }

    /// [`Self::first_date`] for the Graph payloads, which have no way to say "nothing".
    fn start_date(&self) -> Date {
        self.first_date().unwrap_or(self.starts_on)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RhythmError {
    #[error("`{0}` is not a cadence: use weekly, biweekly or monthly")]
    UnknownCadence(String),
    #[error("`{0}` is not a weekday: syncs run Monday to Friday (mon, tue, wed, thu or fri)")]
    NotAWeekday(String),
    #[error("`{0}` is not a time: use 24-hour HH:MM, such as 15:00")]
    BadTime(String),
    #[error("`{0}` is not a known IANA time zone, such as Europe/Berlin or America/New_York")]
    UnknownTimeZone(String),
    #[error(
        "`{0}` is not a sync length: use whole minutes from {MIN_DURATION_MINUTES} to {MAX_DURATION_MINUTES}, such as 30"
    )]
    BadDuration(String),
    #[error("`{0}` is not a date: use YYYY-MM-DD, such as 2027-06-30")]
    BadDate(String),
    #[error("until:{until} is in the past (today is {today})")]
    UntilInPast { until: String, today: String },
    /// `until` is today or later, but the first sync falls after it, so the series would be empty.
    #[error("until:{until} is before the first sync on {first}")]
    UntilBeforeFirst { until: String, first: String },
}

/// Builds a rhythm from the raw values of `sync schedule`. `now` decides "today" in the rhythm's zone:
/// the first sync is the next `weekday` from today on, today included while `time` is still ahead.
/// Defaults: zone `default_tz`, [`DEFAULT_DURATION_MINUTES`], no end.
#[allow(clippy::too_many_arguments)] // mirrors the command's positional values and options one to one
pub fn rhythm(
    cadence: &str,
    weekday: &str,
    time: &str,
    tz: Option<&str>,
    duration: Option<&str>,
    until: Option<&str>,
    default_tz: &str,
    now: Timestamp,
) -> Result<SyncRhythm, RhythmError> {
    let cadence =
        Cadence::parse(cadence).ok_or_else(|| RhythmError::UnknownCadence(cadence.to_owned()))?;
    let weekday = parse_weekday(weekday)?;
    let time = parse_time(time)?;
    let tz_name = tz.unwrap_or(default_tz);
    let zone = TimeZone::get(tz_name.trim())
        .map_err(|_| RhythmError::UnknownTimeZone(tz_name.to_owned()))?;
    // The database's spelling, so `europe/berlin` is stored and shown to Graph as `Europe/Berlin`.
    let time_zone = zone.iana_name().unwrap_or(tz_name.trim()).to_owned();
    let duration_minutes = duration.map_or(Ok(DEFAULT_DURATION_MINUTES), parse_duration)?;
    let until = until.map(parse_date).transpose()?;

    let today = zone.to_datetime(now).date();
    if let Some(until) = until
        && until < today
    {
        return Err(RhythmError::UntilInPast {
            until: until.to_string(),
            today: today.to_string(),
        });
    }
    let overflow = || RhythmError::BadDate(today.to_string());
    let mut starts_on = advance_to(today, weekday).ok_or_else(overflow)?;
    let today_start = zone
        .to_timestamp(starts_on.to_datetime(time))
        .map_err(|_| overflow())?;
    if starts_on == today && today_start <= now {
        starts_on = starts_on.checked_add(7.days()).map_err(|_| overflow())?;
    }
    if let Some(until) = until
        && until < starts_on
    {
        return Err(RhythmError::UntilBeforeFirst {
            until: until.to_string(),
            first: starts_on.to_string(),
        });
    }
    Ok(SyncRhythm {
        cadence,
        weekday,
        time,
        time_zone,
        duration_minutes,
        starts_on,
        until,
    })
}

/// `mon`…`fri` or the full names, any case; Saturday and Sunday are refused like any other word.
pub fn parse_weekday(s: &str) -> Result<Weekday, RhythmError> {
    match weekday_name::parse(s) {
        Some(day) if !matches!(day, Weekday::Saturday | Weekday::Sunday) => Ok(day),
        _ => Err(RhythmError::NotAWeekday(s.to_owned())),
    }
}

/// 24-hour `HH:MM` or `H:MM`; no seconds, no am/pm, no `24:00`.
pub fn parse_time(s: &str) -> Result<Time, RhythmError> {
    let bad = || RhythmError::BadTime(s.to_owned());
    let (hour, minute) = s.trim().split_once(':').ok_or_else(bad)?;
    let digits = |part: &str, lens: std::ops::RangeInclusive<usize>| {
        (lens.contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse::<i8>().ok())
            .flatten()
    };
    let hour = digits(hour, 1..=2).ok_or_else(bad)?;
    let minute = digits(minute, 2..=2).ok_or_else(bad)?;
    Time::new(hour, minute, 0, 0).map_err(|_| bad())
}

/// Whole minutes, optionally with `min` as `invite` accepts, from 15 to 240.
pub fn parse_duration(s: &str) -> Result<u32, RhythmError> {
    match s.trim().trim_end_matches("min").parse::<u32>() {
        Ok(n) if (MIN_DURATION_MINUTES..=MAX_DURATION_MINUTES).contains(&n) => Ok(n),
        _ => Err(RhythmError::BadDuration(s.to_owned())),
    }
}

/// Exactly `YYYY-MM-DD`: jiff's parser also takes other ISO 8601 forms, which a user typing a date
/// into chat did not mean.
pub fn parse_date(s: &str) -> Result<Date, RhythmError> {
    let bad = || RhythmError::BadDate(s.to_owned());
    let mut parts = s.trim().split('-');
    let mut number = |len: usize| {
        parts
            .next()
            .filter(|p| p.len() == len && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<i16>().ok())
    };
    let (Some(year), Some(month), Some(day)) = (number(4), number(2), number(2)) else {
        return Err(bad());
    };
    if parts.next().is_some() {
        return Err(bad());
    }
    let month = i8::try_from(month).map_err(|_| bad())?;
    let day = i8::try_from(day).map_err(|_| bad())?;
    Date::new(year, month, day).map_err(|_| bad())
}

/// `date` itself when it is a `weekday`, else the next one.
fn advance_to(date: Date, weekday: Weekday) -> Option<Date> {
    let days = i64::from(weekday.since(date.weekday()));
    date.checked_add(days.days()).ok()
}

fn nth_of_month(first_of_month: Date, weekday: Weekday, index: WeekIndex) -> Option<Date> {
    first_of_month
        .nth_weekday_of_month(index.nth(), weekday)
        .ok()
}

/// Graph's `dateTime`: local, no offset, whole seconds.
fn graph_datetime(dt: DateTime) -> String {
    dt.strftime("%Y-%m-%dT%H:%M:%S").to_string()
}

/// "30 Jun 2027": unambiguous for readers on either side of the Atlantic.
fn human_date(date: Date) -> String {
    date.strftime("%-d %b %Y").to_string()
}

/// jiff has no serde for `Weekday`; this stores it as Graph's day name and reads any full or short
/// English name back.
mod weekday_name {
    use jiff::civil::Weekday;
    use serde::Deserialize;

    pub(super) fn graph(weekday: Weekday) -> &'static str {
        match weekday {
            Weekday::Monday => "monday",
            Weekday::Tuesday => "tuesday",
            Weekday::Wednesday => "wednesday",
            Weekday::Thursday => "thursday",
            Weekday::Friday => "friday",
            Weekday::Saturday => "saturday",
            Weekday::Sunday => "sunday",
        }
    }

    pub(super) fn english(weekday: Weekday) -> &'static str {
        match weekday {
            Weekday::Monday => "Monday",
            Weekday::Tuesday => "Tuesday",
            Weekday::Wednesday => "Wednesday",
            Weekday::Thursday => "Thursday",
            Weekday::Friday => "Friday",
            Weekday::Saturday => "Saturday",
            Weekday::Sunday => "Sunday",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Weekday> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mon" | "monday" => Some(Weekday::Monday),
            "tue" | "tues" | "tuesday" => Some(Weekday::Tuesday),
            "wed" | "wednesday" => Some(Weekday::Wednesday),
            "thu" | "thur" | "thurs" | "thursday" => Some(Weekday::Thursday),
            "fri" | "friday" => Some(Weekday::Friday),
            "sat" | "saturday" => Some(Weekday::Saturday),
            "sun" | "sunday" => Some(Weekday::Sunday),
            _ => None,
        }
    }

    pub(super) fn serialize<S: serde::Serializer>(
        weekday: &Weekday,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(graph(*weekday))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Weekday, D::Error> {
        let name = String::deserialize(deserializer)?;
        parse(&name).ok_or_else(|| serde::de::Error::custom(format!("unknown weekday `{name}`")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use jiff::civil::{date, time};

    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn d(s: &str) -> Date {
        s.parse().unwrap()
    }

    /// A hand-built rhythm, as the store would load it.
    fn r(
        cadence: Cadence,
        weekday: Weekday,
        at: &str,
        zone: &str,
        starts_on: &str,
        until: Option<&str>,
    ) -> SyncRhythm {
        SyncRhythm {
            cadence,
            weekday,
            time: parse_time(at).unwrap(),
            time_zone: zone.to_owned(),
            duration_minutes: 30,
            starts_on: d(starts_on),
            until: until.map(d),
        }
    }

    /// Tuesdays at 15:00 in Berlin: 14:00Z in winter, 13:00Z in summer.
    fn berlin_tue(cadence: Cadence, starts_on: &str, until: Option<&str>) -> SyncRhythm {
        let zone = "Europe/Berlin";
        r(cadence, Weekday::Tuesday, "15:00", zone, starts_on, until)
    }

    /// `(case, rhythm, after, expected next start)`.
    type NextCase<'a> = (&'a str, &'a SyncRhythm, &'a str, Option<&'a str>);

    fn check_next(cases: &[NextCase<'_>]) {
        for &(name, rhythm, after, expected) in cases {
            assert_eq!(rhythm.next_after(ts(after)), expected.map(ts), "{name}");
        }
    }

    #[test]
    fn weekly_and_biweekly_next_after_across_dst() {
        use Cadence::{Biweekly, Weekly};
        let weekly = berlin_tue(Weekly, "2027-01-05", None);
        let biweekly = berlin_tue(Biweekly, "2027-01-05", None);
        let ny = r(
            Weekly,
            Weekday::Tuesday,
            "09:00",
            "America/New_York",
            "2027-03-02",
            None,
        );
        // Israel springs forward on Friday 2027-03-26 at 02:00, so 02:30 does not exist that day.
        let jerusalem = r(
            Weekly,
            Weekday::Friday,
            "2:30",
            "Asia/Jerusalem",
            "2027-03-19",
            None,
        );
        // Egypt falls back at the end of Thursday 2027-10-28, so 23:30 happens twice that night.
        let cairo = r(
            Weekly,
            Weekday::Thursday,
            "23:30",
            "Africa/Cairo",
            "2027-10-21",
            None,
        );
        #[rustfmt::skip]
        let cases: Vec<NextCase<'_>> = vec![
            ("weekly: before the first sync", &weekly, "2026-12-01T00:00:00Z", Some("2027-01-05T14:00:00Z")),
            ("weekly: a minute before", &weekly, "2027-01-05T13:59:00Z", Some("2027-01-05T14:00:00Z")),
            ("weekly: strictly after", &weekly, "2027-01-05T14:00:00Z", Some("2027-01-12T14:00:00Z")),
            ("weekly: mid-week", &weekly, "2027-01-07T09:00:00Z", Some("2027-01-12T14:00:00Z")),
            ("berlin: last Tuesday in CET", &weekly, "2027-03-22T00:00:00Z", Some("2027-03-23T14:00:00Z")),
            ("berlin: after 2027-03-28 15:00 CEST is 13:00Z", &weekly, "2027-03-23T14:00:00Z", Some("2027-03-30T13:00:00Z")),
            ("berlin: last Tuesday in CEST", &weekly, "2027-10-25T00:00:00Z", Some("2027-10-26T13:00:00Z")),
            ("berlin: after 2027-10-31 15:00 CET is 14:00Z", &weekly, "2027-10-26T13:00:00Z", Some("2027-11-02T14:00:00Z")),
            ("new york: EST", &ny, "2027-03-08T00:00:00Z", Some("2027-03-09T14:00:00Z")),
            ("new york: after 2027-03-14 09:00 EDT is 13:00Z", &ny, "2027-03-09T14:00:00Z", Some("2027-03-16T13:00:00Z")),
            ("new york: last Tuesday in EDT", &ny, "2027-11-01T00:00:00Z", Some("2027-11-02T13:00:00Z")),
            ("new york: after 2027-11-07 09:00 EST is 14:00Z", &ny, "2027-11-02T13:00:00Z", Some("2027-11-09T14:00:00Z")),
            ("gap: 02:30 IST", &jerusalem, "2027-03-18T00:00:00Z", Some("2027-03-19T00:30:00Z")),
            ("gap: the missing 02:30 resolves forward to 03:30 IDT", &jerusalem, "2027-03-19T00:30:00Z", Some("2027-03-26T00:30:00Z")),
            ("gap: 02:30 IDT the week after", &jerusalem, "2027-03-26T00:30:00Z", Some("2027-04-01T23:30:00Z")),
            ("fold: the first 23:30 (EEST)", &cairo, "2027-10-28T00:00:00Z", Some("2027-10-28T20:30:00Z")),
            ("fold: not the repeated 23:30", &cairo, "2027-10-28T20:30:00Z", Some("2027-11-04T21:30:00Z")),
            ("biweekly: the first", &biweekly, "2027-01-01T00:00:00Z", Some("2027-01-05T14:00:00Z")),
            ("biweekly: skips the off week", &biweekly, "2027-01-06T00:00:00Z", Some("2027-01-19T14:00:00Z")),
            ("biweekly: during the off week", &biweekly, "2027-01-12T20:00:00Z", Some("2027-01-19T14:00:00Z")),
            ("biweekly: after an on week", &biweekly, "2027-01-19T14:00:00Z", Some("2027-02-02T14:00:00Z")),
            ("biweekly: phase kept 21 weeks later", &biweekly, "2027-06-01T00:00:00Z", Some("2027-06-08T13:00:00Z")),
            ("biweekly: phase kept 22 weeks later", &biweekly, "2027-06-08T13:00:00Z", Some("2027-06-22T13:00:00Z")),
        ];
        check_next(&cases);
    }

    #[test]
    fn monthly_next_after() {
        use Cadence::Monthly;
        // 2027-01-12 is the second Tuesday of January.
        let second = berlin_tue(Monthly, "2027-01-12", None);
        // 2027-03-30 is the fifth Tuesday of March.
        let last = berlin_tue(Monthly, "2027-03-30", None);
        // 2027-02-23 is both the fourth and the last Tuesday of February.
        let fourth = berlin_tue(Monthly, "2027-02-23", None);
        #[rustfmt::skip]
        let cases: Vec<NextCase<'_>> = vec![
            ("second: the first", &second, "2027-01-01T00:00:00Z", Some("2027-01-12T14:00:00Z")),
            ("second: February", &second, "2027-01-12T14:00:00Z", Some("2027-02-09T14:00:00Z")),
            ("second: past this month's, so next month", &second, "2027-02-10T00:00:00Z", Some("2027-03-09T14:00:00Z")),
            ("second: after the DST change", &second, "2027-03-09T14:00:00Z", Some("2027-04-13T13:00:00Z")),
            ("last: a four-Tuesday month", &last, "2027-03-30T13:00:00Z", Some("2027-04-27T13:00:00Z")),
            ("last: a five-Tuesday month", &last, "2027-10-01T00:00:00Z", Some("2027-10-26T13:00:00Z")),
            ("last: into the next year", &last, "2027-12-29T00:00:00Z", Some("2028-01-25T14:00:00Z")),
            ("fourth stays fourth in a five-Tuesday month", &fourth, "2027-02-23T14:00:00Z", Some("2027-03-23T14:00:00Z")),
        ];
        check_next(&cases);
    }

    #[test]
    fn until_is_inclusive() {
        use Cadence::{Biweekly, Monthly, Weekly};
        let to_19 = berlin_tue(Weekly, "2027-01-05", Some("2027-01-19"));
        let to_18 = berlin_tue(Weekly, "2027-01-05", Some("2027-01-18"));
        let to_21 = berlin_tue(Weekly, "2027-01-05", Some("2027-01-21"));
        let one = berlin_tue(Weekly, "2027-01-05", Some("2027-01-05"));
        let biweekly_off = berlin_tue(Biweekly, "2027-01-05", Some("2027-01-12"));
        let monthly_before = berlin_tue(Monthly, "2027-01-12", Some("2027-02-08"));
        let monthly_on = berlin_tue(Monthly, "2027-01-12", Some("2027-02-09"));
        #[rustfmt::skip]
        let cases: Vec<NextCase<'_>> = vec![
            ("the until day itself", &to_19, "2027-01-12T14:00:00Z", Some("2027-01-19T14:00:00Z")),
            ("nothing after the until day", &to_19, "2027-01-19T14:00:00Z", None),
            ("until the day before", &to_18, "2027-01-12T14:00:00Z", None),
            ("until after the last sync", &to_21, "2027-01-19T14:00:00Z", None),
            ("a series of one", &one, "2027-01-01T00:00:00Z", Some("2027-01-05T14:00:00Z")),
            ("a series of one, done", &one, "2027-01-05T14:00:00Z", None),
            ("biweekly: until on an off week", &biweekly_off, "2027-01-05T14:00:00Z", None),
            ("monthly: until before the next one", &monthly_before, "2027-01-12T14:00:00Z", None),
            ("monthly: until on the next one", &monthly_on, "2027-01-12T14:00:00Z", Some("2027-02-09T14:00:00Z")),
        ];
        check_next(&cases);
    }

    #[test]
    fn first_on_or_after_table() {
        use Cadence::{Biweekly, Monthly, Weekly};
        #[rustfmt::skip]
        let cases: Vec<(&str, SyncRhythm, &str, Option<&str>)> = vec![
            ("before the start", berlin_tue(Weekly, "2027-01-05", None), "2026-06-01", Some("2027-01-05")),
            ("on a sync day", berlin_tue(Weekly, "2027-01-05", None), "2027-01-12", Some("2027-01-12")),
            ("the day after", berlin_tue(Weekly, "2027-01-05", None), "2027-01-13", Some("2027-01-19")),
            ("biweekly off week", berlin_tue(Biweekly, "2027-01-05", None), "2027-01-12", Some("2027-01-19")),
            ("biweekly on week", berlin_tue(Biweekly, "2027-01-05", None), "2027-01-19", Some("2027-01-19")),
            ("biweekly across the year", berlin_tue(Biweekly, "2027-12-21", None), "2027-12-22", Some("2028-01-04")),
            ("monthly later this month", berlin_tue(Monthly, "2027-01-12", None), "2027-05-01", Some("2027-05-11")),
            ("monthly next month", berlin_tue(Monthly, "2027-01-12", None), "2027-05-12", Some("2027-06-08")),
            ("past until", berlin_tue(Weekly, "2027-01-05", Some("2027-02-01")), "2027-01-27", None),
            ("a starts_on off the weekday moves to it", berlin_tue(Weekly, "2027-01-06", None), "2027-01-01", Some("2027-01-12")),
        ];
        for (name, rhythm, from, expected) in cases {
            assert_eq!(rhythm.first_on_or_after(d(from)), expected.map(d), "{name}");
        }
    }

    #[test]
    fn week_index_table() {
        let cases = [
            ("2027-03-02", WeekIndex::First),
            ("2027-03-07", WeekIndex::First),
            ("2027-03-08", WeekIndex::Second),
            ("2027-03-16", WeekIndex::Third),
            ("2027-03-22", WeekIndex::Fourth),
            ("2027-02-23", WeekIndex::Fourth),
            ("2027-03-28", WeekIndex::Fourth),
            ("2027-03-29", WeekIndex::Last),
            ("2027-03-31", WeekIndex::Last),
        ];
        for (date, expected) in cases {
            assert_eq!(WeekIndex::of(d(date)), expected, "{date}");
        }
    }

    /// Monday 2027-01-04, 09:00 in Berlin.
    fn monday_morning() -> Timestamp {
        ts("2027-01-04T08:00:00Z")
    }

    /// `rhythm`'s raw values: cadence, weekday, time, tz, duration, until.
    type Args<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
    );

    fn build(args: Args<'_>, now: Timestamp) -> Result<SyncRhythm, RhythmError> {
        let (cadence, weekday, at, tz, duration, until) = args;
        rhythm(
            cadence,
            weekday,
            at,
            tz,
            duration,
            until,
            "Europe/Berlin",
            now,
        )
    }

    #[test]
    fn rhythm_builds_with_defaults() {
        let args = ("biweekly", "tue", "15:00", None, None, None);
        assert_eq!(
            build(args, monday_morning()),
            Ok(SyncRhythm {
                cadence: Cadence::Biweekly,
                weekday: Weekday::Tuesday,
                time: time(15, 0, 0, 0),
                time_zone: "Europe/Berlin".to_owned(),
                duration_minutes: 30,
                starts_on: date(2027, 1, 5),
                until: None,
            })
        );
    }

    #[test]
    fn rhythm_table() {
        let now = monday_morning();
        let tokyo_tuesday_dawn = ts("2027-01-04T20:00:00Z");
        // (case, args, now, expected starts_on, zone, duration)
        #[rustfmt::skip]
        let cases: Vec<(&str, Args<'_>, Timestamp, &str, &str, u32)> = vec![
            ("all options", ("biweekly", "tue", "15:00", Some("Europe/Berlin"), Some("30"), Some("2027-06-30")), now, "2027-01-05", "Europe/Berlin", 30),
            ("any case", ("WEEKLY", "Tuesday", "9:05", Some("america/new_york"), Some("45min"), None), now, "2027-01-05", "America/New_York", 45),
            ("today, time still ahead", ("weekly", "mon", "10:00", None, None, None), now, "2027-01-04", "Europe/Berlin", 30),
            ("today, time just passed", ("weekly", "mon", "09:00", None, None, None), now, "2027-01-11", "Europe/Berlin", 30),
            ("today, time passed earlier", ("monthly", "monday", "08:59", None, None, None), now, "2027-01-11", "Europe/Berlin", 30),
            ("today is judged in the rhythm's zone", ("weekly", "mon", "09:00", Some("America/New_York"), None, None), now, "2027-01-04", "America/New_York", 30),
            ("already Tuesday in Tokyo, 09:00 ahead", ("weekly", "tue", "09:00", Some("Asia/Tokyo"), None, None), tokyo_tuesday_dawn, "2027-01-05", "Asia/Tokyo", 30),
            ("already Tuesday in Tokyo, 04:00 passed", ("weekly", "tue", "04:00", Some("Asia/Tokyo"), None, None), tokyo_tuesday_dawn, "2027-01-12", "Asia/Tokyo", 30),
            ("until on the first sync", ("weekly", "fri", "15:00", None, None, Some("2027-01-08")), now, "2027-01-08", "Europe/Berlin", 30),
            ("shortest", ("weekly", "fri", "15:00", None, Some("15"), None), now, "2027-01-08", "Europe/Berlin", 15),
            ("longest", ("weekly", "fri", "15:00", None, Some("240"), None), now, "2027-01-08", "Europe/Berlin", 240),
            ("midnight", ("weekly", "wed", "00:00", None, None, None), now, "2027-01-06", "Europe/Berlin", 30),
            ("last minute", ("weekly", "wed", "23:59", None, None, None), now, "2027-01-06", "Europe/Berlin", 30),
        ];
        for (name, args, now, starts_on, zone, duration) in cases {
            let got = build(args, now).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got.starts_on, d(starts_on), "{name}");
            assert_eq!(got.time_zone, zone, "{name}");
            assert_eq!(got.duration_minutes, duration, "{name}");
            assert_eq!(got.until, args.5.map(d), "{name}");
        }
    }

    #[test]
    fn rhythm_errors() {
        use RhythmError::{
            BadDate, BadDuration, BadTime, NotAWeekday, UnknownCadence, UnknownTimeZone,
        };
        let e = |s: &str| s.to_owned();
        #[rustfmt::skip]
        let cases: Vec<(Args<'_>, RhythmError)> = vec![
            (("daily", "tue", "15:00", None, None, None), UnknownCadence(e("daily"))),
            (("fortnightly", "tue", "15:00", None, None, None), UnknownCadence(e("fortnightly"))),
            (("weekly", "sat", "15:00", None, None, None), NotAWeekday(e("sat"))),
            (("weekly", "Sunday", "15:00", None, None, None), NotAWeekday(e("Sunday"))),
            (("weekly", "blursday", "15:00", None, None, None), NotAWeekday(e("blursday"))),
            (("weekly", "15:00", "tue", None, None, None), NotAWeekday(e("15:00"))),
            (("weekly", "tue", "25:00", None, None, None), BadTime(e("25:00"))),
            (("weekly", "tue", "24:00", None, None, None), BadTime(e("24:00"))),
            (("weekly", "tue", "9:7", None, None, None), BadTime(e("9:7"))),
            (("weekly", "tue", "09:60", None, None, None), BadTime(e("09:60"))),
            (("weekly", "tue", "noon", None, None, None), BadTime(e("noon"))),
            (("weekly", "tue", "15:00:00", None, None, None), BadTime(e("15:00:00"))),
            (("weekly", "tue", "3:00pm", None, None, None), BadTime(e("3:00pm"))),
            (("weekly", "tue", "+1:00", None, None, None), BadTime(e("+1:00"))),
            (("weekly", "tue", "1500", None, None, None), BadTime(e("1500"))),
            (("weekly", "tue", "15:00", Some("Mars/Olympus"), None, None), UnknownTimeZone(e("Mars/Olympus"))),
            (("weekly", "tue", "15:00", Some("+02:00"), None, None), UnknownTimeZone(e("+02:00"))),
            (("weekly", "tue", "15:00", None, Some("5"), None), BadDuration(e("5"))),
            (("weekly", "tue", "15:00", None, Some("241"), None), BadDuration(e("241"))),
            (("weekly", "tue", "15:00", None, Some("half an hour"), None), BadDuration(e("half an hour"))),
            (("weekly", "tue", "15:00", None, Some("-30"), None), BadDuration(e("-30"))),
            (("weekly", "tue", "15:00", None, None, Some("2027-02-30")), BadDate(e("2027-02-30"))),
            (("weekly", "tue", "15:00", None, None, Some("30/06/2027")), BadDate(e("30/06/2027"))),
            (("weekly", "tue", "15:00", None, None, Some("20270630")), BadDate(e("20270630"))),
            (("weekly", "tue", "15:00", None, None, Some("2027-6-30")), BadDate(e("2027-6-30"))),
            (("weekly", "tue", "15:00", None, None, Some("2027-06-30-01")), BadDate(e("2027-06-30-01"))),
            (("weekly", "tue", "15:00", None, None, Some("2027-06-30T00:00")), BadDate(e("2027-06-30T00:00"))),
            (
                ("weekly", "tue", "15:00", None, None, Some("2026-12-31")),
                RhythmError::UntilInPast { until: e("2026-12-31"), today: e("2027-01-04") },
            ),
            (
                ("weekly", "tue", "15:00", None, None, Some("2027-01-04")),
                RhythmError::UntilBeforeFirst { until: e("2027-01-04"), first: e("2027-01-05") },
            ),
            (
                ("weekly", "mon", "08:00", None, None, Some("2027-01-04")),
                RhythmError::UntilBeforeFirst { until: e("2027-01-04"), first: e("2027-01-11") },
            ),
        ];
        for (args, expected) in cases {
            assert_eq!(build(args, monday_morning()), Err(expected), "{args:?}");
        }
    }

    #[test]
    fn an_invalid_default_zone_is_reported() {
        let now = monday_morning();
        let got = rhythm(
            "weekly",
            "tue",
            "15:00",
            None,
            None,
            None,
            "Nowhere/Land",
            now,
        );
        assert_eq!(
            got,
            Err(RhythmError::UnknownTimeZone("Nowhere/Land".to_owned()))
        );
    }

    #[test]
    fn patterned_recurrence_exact_json() {
        use Cadence::{Biweekly, Monthly, Weekly};
        let friday_ny = r(
            Biweekly,
            Weekday::Friday,
            "09:30",
            "America/New_York",
            "2027-01-08",
            None,
        );
        let cases: Vec<(&str, SyncRhythm, Value)> = vec![
            (
                "weekly, no end",
                berlin_tue(Weekly, "2027-01-05", None),
                json!({
                    "pattern": { "type": "weekly", "interval": 1, "daysOfWeek": ["tuesday"], "firstDayOfWeek": "monday" },
                    "range": { "type": "noEnd", "startDate": "2027-01-05", "recurrenceTimeZone": "Europe/Berlin" }
                }),
            ),
            (
                "weekly, until",
                berlin_tue(Weekly, "2027-01-05", Some("2027-06-29")),
                json!({
                    "pattern": { "type": "weekly", "interval": 1, "daysOfWeek": ["tuesday"], "firstDayOfWeek": "monday" },
                    "range": { "type": "endDate", "startDate": "2027-01-05", "endDate": "2027-06-29", "recurrenceTimeZone": "Europe/Berlin" }
                }),
            ),
            (
                "biweekly, no end",
                friday_ny,
                json!({
                    "pattern": { "type": "weekly", "interval": 2, "daysOfWeek": ["friday"], "firstDayOfWeek": "monday" },
                    "range": { "type": "noEnd", "startDate": "2027-01-08", "recurrenceTimeZone": "America/New_York" }
                }),
            ),
            (
                "biweekly, until",
                berlin_tue(Biweekly, "2027-01-05", Some("2027-06-30")),
                json!({
                    "pattern": { "type": "weekly", "interval": 2, "daysOfWeek": ["tuesday"], "firstDayOfWeek": "monday" },
                    "range": { "type": "endDate", "startDate": "2027-01-05", "endDate": "2027-06-30", "recurrenceTimeZone": "Europe/Berlin" }
                }),
            ),
            (
                "monthly second Tuesday, no end",
                berlin_tue(Monthly, "2027-01-12", None),
                json!({
                    "pattern": { "type": "relativeMonthly", "interval": 1, "daysOfWeek": ["tuesday"], "index": "second" },
                    "range": { "type": "noEnd", "startDate": "2027-01-12", "recurrenceTimeZone": "Europe/Berlin" }
                }),
            ),
            (
                "monthly last Tuesday, until",
                berlin_tue(Monthly, "2027-03-30", Some("2027-12-31")),
                json!({
                    "pattern": { "type": "relativeMonthly", "interval": 1, "daysOfWeek": ["tuesday"], "index": "last" },
                    "range": { "type": "endDate", "startDate": "2027-03-30", "endDate": "2027-12-31", "recurrenceTimeZone": "Europe/Berlin" }
                }),
            ),
        ];
        for (name, rhythm, expected) in cases {
            let got = rhythm.patterned_recurrence();
            assert_eq!(got, expected, "{name}");
            check_schema(&got).unwrap_or_else(|errors| panic!("{name}: {errors:#?}"));
        }
    }

    #[test]
    fn the_schema_check_catches_mistakes() {
        let bad = [
            json!({ "pattern": { "type": "weekly", "interval": 1, "daysOfWeek": ["Tuesday"] } }),
            json!({ "pattern": { "type": "monthly", "interval": 1 } }),
            json!({ "pattern": { "type": "weekly", "interval": "2" } }),
            json!({ "pattern": { "type": "weekly", "dayOfWeek": ["tuesday"] } }),
            json!({ "pattern": { "type": "relativeMonthly", "index": "fifth" } }),
            json!({ "range": { "type": "endDate", "startDate": "2027-1-5" } }),
            json!({ "range": { "type": "noEnd", "startDate": "2027-01-05", "timeZone": "UTC" } }),
            json!({ "recurrence": {} }),
        ];
        for body in bad {
            assert!(check_schema(&body).is_err(), "{body}");
        }
    }

    /// Validates against `microsoft.graph.patternedRecurrence` in the Graph OpenAPI subset, with every
    /// component closed, as `tests/api/helpers.rs` does, so a misspelt property fails too.
    fn check_schema(body: &Value) -> Result<(), Vec<String>> {
        let doc: Value = serde_json::from_str(include_str!(
            "../../tests/schemas/graph-openapi-subset.json"
        ))
        .unwrap();
        let mut components = doc["components"].clone();
        for component in components["schemas"].as_object_mut().unwrap().values_mut() {
            if component.get("properties").is_some() {
                component["additionalProperties"] = json!(false);
            }
        }
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$ref": "#/components/schemas/microsoft.graph.patternedRecurrence",
            "components": components,
        });
        let validator = jsonschema::draft202012::new(&root).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    #[test]
    fn first_event_times_table() {
        use Cadence::{Monthly, Weekly};
        let mut long = berlin_tue(Weekly, "2027-01-05", None);
        long.duration_minutes = 90;
        let late = r(
            Weekly,
            Weekday::Thursday,
            "23:45",
            "Africa/Cairo",
            "2027-10-21",
            None,
        );
        let in_gap = r(
            Weekly,
            Weekday::Friday,
            "02:30",
            "Asia/Jerusalem",
            "2027-03-26",
            None,
        );
        #[rustfmt::skip]
        let cases: Vec<(&str, SyncRhythm, [&str; 3])> = vec![
            ("weekly", berlin_tue(Weekly, "2027-01-05", None), ["2027-01-05T15:00:00", "2027-01-05T15:30:00", "Europe/Berlin"]),
            ("90 minutes", long, ["2027-01-05T15:00:00", "2027-01-05T16:30:00", "Europe/Berlin"]),
            ("monthly", berlin_tue(Monthly, "2027-03-30", None), ["2027-03-30T15:00:00", "2027-03-30T15:30:00", "Europe/Berlin"]),
            ("ends after midnight", late, ["2027-10-21T23:45:00", "2027-10-22T00:15:00", "Africa/Cairo"]),
            ("a start in a DST gap keeps its wall time", in_gap, ["2027-03-26T02:30:00", "2027-03-26T03:00:00", "Asia/Jerusalem"]),
        ];
        for (name, rhythm, [start, end, zone]) in cases {
            let expected = (
                (start.to_owned(), zone.to_owned()),
                (end.to_owned(), zone.to_owned()),
            );
            assert_eq!(rhythm.first_event_times(), expected, "{name}");
            assert_eq!(
                rhythm.patterned_recurrence()["range"]["startDate"],
                json!(&start[..10]),
                "{name}: Graph needs startDate to be the date of start"
            );
        }
    }

    #[test]
    fn describe_table() {
        use Cadence::{Biweekly, Monthly, Weekly};
        let ny = r(
            Weekly,
            Weekday::Monday,
            "9:05",
            "America/New_York",
            "2027-01-04",
            None,
        );
        let cases = [
            (
                berlin_tue(Biweekly, "2027-01-05", Some("2027-06-30")),
                "Every 2 weeks on Tuesday at 15:00 (Europe/Berlin), 30 min, until 30 Jun 2027",
            ),
            (
                ny,
                "Every week on Monday at 09:05 (America/New_York), 30 min",
            ),
            (
                berlin_tue(Monthly, "2027-01-12", None),
                "Every month on the second Tuesday at 15:00 (Europe/Berlin), 30 min",
            ),
            (
                berlin_tue(Monthly, "2027-03-30", Some("2028-01-01")),
                "Every month on the last Tuesday at 15:00 (Europe/Berlin), 30 min, until 1 Jan 2028",
            ),
        ];
        for (rhythm, expected) in cases {
            assert_eq!(rhythm.describe(), expected);
        }
    }

    #[test]
    fn error_messages_name_the_rule() {
        assert_eq!(
            RhythmError::NotAWeekday("sat".to_owned()).to_string(),
            "`sat` is not a weekday: syncs run Monday to Friday (mon, tue, wed, thu or fri)"
        );
        assert_eq!(
            RhythmError::BadDuration("5".to_owned()).to_string(),
            "`5` is not a sync length: use whole minutes from 15 to 240, such as 30"
        );
    }

    #[test]
    fn stored_as_json_and_read_back() {
        let rhythm = berlin_tue(Cadence::Biweekly, "2027-01-05", Some("2027-06-30"));
        let stored = serde_json::to_value(&rhythm).unwrap();
        assert_eq!(
            stored,
            json!({
                "cadence": "biweekly",
                "weekday": "tuesday",
                "time": "15:00:00",
                "time_zone": "Europe/Berlin",
                "duration_minutes": 30,
                "starts_on": "2027-01-05",
                "until": "2027-06-30",
            })
        );
        assert_eq!(
            serde_json::from_value::<SyncRhythm>(stored.clone()).unwrap(),
            rhythm
        );
        for (field, bad) in [("cadence", "daily"), ("weekday", "someday")] {
            let mut stored = stored.clone();
            stored[field] = json!(bad);
            assert!(
                serde_json::from_value::<SyncRhythm>(stored).is_err(),
                "{field}"
            );
        }
    }

    #[test]
    fn cadence_parse_and_label_round_trip() {
        for cadence in [Cadence::Weekly, Cadence::Biweekly, Cadence::Monthly] {
            assert_eq!(Cadence::parse(cadence.label()), Some(cadence));
            assert_eq!(
                Cadence::parse(&cadence.label().to_uppercase()),
                Some(cadence)
            );
        }
        assert_eq!(Cadence::parse("daily"), None);
    }
}
