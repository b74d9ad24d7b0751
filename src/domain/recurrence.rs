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
        // bound only guards against a hand-built rhythm looping forever.
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
        let day = graph_day(self.weekday);
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

fn graph_day(weekday: Weekday) -> &'static str {
    weekday_name::graph(weekday)
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
