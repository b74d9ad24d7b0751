//! Meeting-slot scoring over Graph `getSchedule` availability views.
//!
//! `findMeetingTimes` has no application permission, so fieldbot asks `getSchedule` for each attendee's
//! `availabilityView` (one digit per interval from the window start) and picks the slots itself. Working
//! hours and business days are the FM's, in the FM's IANA zone; everything else is absolute time, so DST
//! changes inside the window only move where the local working day falls.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// Graph refuses windows of 62 days or more (`ErrorTimeIntervalTooBig`); nothing beyond can have data.
const MAX_WINDOW_DAYS: i64 = 61;

/// At most this many suggestions share a day while equally good slots exist on other days.
const MAX_PER_DAY_WHILE_SPREADING: usize = 2;

/// One attendee's `availabilityView` from `getSchedule`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttendeeAvailability {
    pub address: String,
    pub required: bool,
    /// May be shorter than the window, or empty when Graph could not resolve the schedule: a missing digit
    /// is unknown, which counts as not free.
    pub view: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SlotSearch {
    /// The start of the `getSchedule` window; digit `i` of every view covers
    /// `[window_start + i * interval, window_start + (i + 1) * interval)`.
    pub window_start: Timestamp,
    /// `availabilityViewInterval`, e.g. 30.
    pub interval_minutes: u32,
    /// Meeting length; availability is checked over whole intervals, so 45 minutes at a 30-minute
    /// interval needs two free intervals.
    pub duration_minutes: u32,
    /// The FM's zone: working hours and business days are local to it.
    pub time_zone: TimeZone,
    pub work_start: Time,
    pub work_end: Time,
    /// Search the next N business days (Mon–Fri) from `window_start`'s local date, that date excluded
    /// when the window starts at or after `work_end`.
    pub business_days: u32,
    /// No slot starts earlier (e.g. now + 1 hour).
    pub not_before: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub start: Timestamp,
    pub end: Timestamp,
    pub optional_free: usize,
    pub optional_total: usize,
    /// Required attendees who are tentative for part of the slot (they are never busy).
    pub tentative_required: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presence {
    Free,
    Tentative,
    Unavailable,
}

/// How an attendee looks over `len` digits from `from`. Working elsewhere (`4`) is free: the person is
/// working and the meeting is online (Graph's own free/busy page folds it into free too).
fn presence(view: &str, from: usize, len: usize) -> Presence {
    let bytes = view.as_bytes();
    let mut tentative = false;
    for i in from..from.saturating_add(len) {
        match bytes.get(i) {
            Some(b'0' | b'4') => {}
            Some(b'1') => tentative = true,
            _ => return Presence::Unavailable,
        }
    }
    if tentative {
        Presence::Tentative
    } else {
        Presence::Free
    }
}

fn is_business_day(date: Date) -> bool {
    !matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday)
}

/// The first `count` business dates from `first`, inclusive, and none past `last`.
fn business_dates(first: Date, last: Date, count: u32) -> Vec<Date> {
    let mut dates = Vec::new();
    let mut date = first;
    while dates.len() < count as usize && date <= last {
        if is_business_day(date) {
            dates.push(date);
        }
        match date.tomorrow() {
            Ok(next) => date = next,
            Err(_) => break,
        }
    }
    dates
}

fn minutes(m: u32) -> SignedDuration {
    SignedDuration::from_mins(i64::from(m))
}

fn window_limit(start: Timestamp) -> Timestamp {
    start
        .checked_add(SignedDuration::from_hours(MAX_WINDOW_DAYS * 24))
        .unwrap_or(Timestamp::MAX)
}

/// The best `n` slots for `attendees`.
///
/// A slot starts on an interval boundary of the window, at or after `not_before`, on one of the business
/// days searched, and lies inside working hours on its local date (ending exactly at `work_end` is fine).
/// Every required attendee must be free or tentative for all of it; a missing digit is not free. Slots
/// rank by fewest tentative required attendees, then most optional attendees free, then earliest start;
/// there is one candidate per start time (the meeting length is fixed).
///
/// Spreading: within each group of equally good slots (same tentative and optional counts), days that
/// already hold two suggestions are passed over while the group has slots on other days; only then are
/// the passed-over slots used. A worse slot never displaces a better one to spread the days. The result
/// is in rank order. Zero interval or duration gives no slots.
pub fn best_slots(search: &SlotSearch, attendees: &[AttendeeAvailability], n: usize) -> Vec<Slot> {
    if n == 0 || search.interval_minutes == 0 || search.duration_minutes == 0 {
        return Vec::new();
    }
    let candidates = candidates(search, attendees);
    select_spread(candidates, n, &search.time_zone)
}

/// What every candidate start is checked against.
struct Scan<'a> {
    search: &'a SlotSearch,
    attendees: &'a [AttendeeAvailability],
    /// The business dates searched, ascending.
    dates: Vec<Date>,
    /// View digits a slot covers: the duration rounded up to whole intervals.
    digits: usize,
    duration: SignedDuration,
    optional_total: usize,
}

fn candidates(search: &SlotSearch, attendees: &[AttendeeAvailability]) -> Vec<Slot> {
    let tz = &search.time_zone;
    let interval = minutes(search.interval_minutes);
    let limit = window_limit(search.window_start);

    let start_local = tz.to_datetime(search.window_start);
    let mut first = start_local.date();
    if start_local.time() >= search.work_end {
        match first.tomorrow() {
            Ok(next) => first = next,
            Err(_) => return Vec::new(),
        }
    }
    let dates = business_dates(first, tz.to_datetime(limit).date(), search.business_days);
    let Some(&last_date) = dates.last() else {
        return Vec::new();
    };
    let scan = Scan {
        search,
        attendees,
        dates,
        digits: search.duration_minutes.div_ceil(search.interval_minutes) as usize,
        duration: minutes(search.duration_minutes),
        optional_total: attendees.iter().filter(|a| !a.required).count(),
    };

    let mut out = Vec::new();
    let mut index: usize = 0;
    let mut start = search.window_start;
    while start < limit {
        let local = tz.to_datetime(start);
        if local.date() > last_date {
            break;
        }
        out.extend(scan.slot_at(index, start, local));
        index = index.saturating_add(1);
        start = match start.checked_add(interval) {
            Ok(next) => next,
            Err(_) => break,
        };
    }
    out
}

impl Scan<'_> {
    /// The slot starting at view digit `index` (`start`, `local` in the FM's zone), if it qualifies.
    fn slot_at(&self, index: usize, start: Timestamp, local: DateTime) -> Option<Slot> {
        let search = self.search;
        if start < search.not_before
            || self.dates.binary_search(&local.date()).is_err()
            || local.time() < search.work_start
        {
            return None;
        }
        let end = start.checked_add(self.duration).ok()?;
        let end_local = search.time_zone.to_datetime(end);
        if end_local.date() != local.date() || end_local.time() > search.work_end {
            return None;
        }
        let mut tentative_required = 0;
        let mut optional_free = 0;
        for attendee in self.attendees {
            match (
                attendee.required,
                presence(&attendee.view, index, self.digits),
            ) {
                (true, Presence::Unavailable) => return None,
                (true, Presence::Tentative) => tentative_required += 1,
                (false, Presence::Free) => optional_free += 1,
                _ => {}
            }
        }
        Some(Slot {
            start,
            end,
            optional_free,
            optional_total: self.optional_total,
            tentative_required,
        })
    }
}

fn rank(slot: &Slot) -> (usize, Reverse<usize>, Timestamp) {
    (
        slot.tentative_required,
        Reverse(slot.optional_free),
        slot.start,
    )
}

fn select_spread(mut candidates: Vec<Slot>, n: usize, tz: &TimeZone) -> Vec<Slot> {
    candidates.sort_by_key(rank);
    let mut picked: Vec<Slot> = Vec::new();
    let mut per_day: BTreeMap<Date, usize> = BTreeMap::new();
    let mut overlapping: Vec<Slot> = Vec::new();
    let mut rest = candidates.as_slice();
    while let Some(first) = rest.first()
        && picked.len() < n
    {
        let tier = (first.tentative_required, first.optional_free);
        let len = rest
            .iter()
            .take_while(|s| (s.tentative_required, s.optional_free) == tier)
            .count();
        let (group, tail) = rest.split_at(len);
        rest = tail;
        let mut passed_over = Vec::new();
        for slot in group {
            if picked.len() >= n {
                break;
            }
            // Overlapping choices (09:00 and 09:30) are one choice to a person: offer them last.
            if picked.iter().any(|p| overlaps(p, slot)) {
                overlapping.push(slot.clone());
                continue;
            }
            let day = tz.to_datetime(slot.start).date();
            let count = per_day.entry(day).or_insert(0);
            if *count < MAX_PER_DAY_WHILE_SPREADING {
                *count += 1;
                picked.push(slot.clone());
            } else {
                passed_over.push(slot);
            }
        }
        for slot in passed_over {
            if picked.len() >= n {
                break;
            }
            if picked.iter().any(|p| overlaps(p, slot)) {
                overlapping.push(slot.clone());
                continue;
            }
            *per_day
                .entry(tz.to_datetime(slot.start).date())
                .or_insert(0) += 1;
            picked.push(slot.clone());
        }
        // Still short: this tier's overlapping slots come before any worse slot.
        for slot in overlapping.drain(..) {
            if picked.len() >= n {
                break;
            }
            picked.push(slot);
        }
    }
    picked.sort_by_key(rank);
    picked
}

fn overlaps(a: &Slot, b: &Slot) -> bool {
    a.start < b.end && b.start < a.end
}

/// The `getSchedule` window for a search from `now`: it starts at the next interval boundary counted from
/// local midnight (so 30- and 60-minute boundaries fall on the local hour even in Asia/Kolkata) and ends at
/// local midnight after the last business day the search could use. When today is a business day one
/// extra business day is covered, because the search skips today once working hours are over. The window
/// is capped below Graph's 62-day limit; `business_days` 0 counts as 1 and `interval_minutes` 0 as 1.
pub fn schedule_window(
    now: Timestamp,
    tz: &TimeZone,
    business_days: u32,
    interval_minutes: u32,
) -> (Timestamp, Timestamp) {
    let interval_secs = i64::from(interval_minutes.max(1)) * 60;
    let local = tz.to_datetime(now);
    let since_midnight = local.time().duration_since(Time::midnight());
    let secs = since_midnight.as_secs();
    let ceil_secs = if since_midnight.subsec_nanos() > 0 {
        secs + 1
    } else {
        secs
    };
    let aligned_secs = (ceil_secs + interval_secs - 1) / interval_secs * interval_secs;
    let start = now
        .checked_add(SignedDuration::from_secs(aligned_secs) - since_midnight)
        .unwrap_or(now);

    let limit = window_limit(start);
    let today = tz.to_datetime(start).date();
    let wanted = business_days
        .max(1)
        .saturating_add(u32::from(is_business_day(today)));
    let dates = business_dates(today, tz.to_datetime(limit).date(), wanted);
    let end = dates
        .last()
        .and_then(|last| last.tomorrow().ok())
        .and_then(|day_after| {
            tz.to_timestamp(day_after.to_datetime(Time::midnight()))
                .ok()
        })
        .unwrap_or(limit)
        .min(limit)
        .max(start);
    (start, end)
}

/// "Tue 24 Nov, 10:00–11:00 (Europe/Berlin)" in `tz`, for cards and emails. A slot crossing midnight
/// repeats the date on its end.
pub fn describe(slot: &Slot, tz: &TimeZone) -> String {
    let start = tz.to_datetime(slot.start);
    let end = tz.to_datetime(slot.end);
    let end_text = if end.date() == start.date() {
        end.strftime("%H:%M").to_string()
    } else {
        end.strftime("%a %-d %b, %H:%M").to_string()
    };
    let zone = match tz.iana_name() {
        Some(name) => name.to_owned(),
        None => format!("UTC{}", tz.to_offset(slot.start)),
    };
    format!(
        "{}–{} ({})",
        start.strftime("%a %-d %b, %H:%M"),
        end_text,
        zone
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use jiff::civil::time;

    fn tz(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    fn local(tz: &TimeZone, dt: &str) -> Timestamp {
        tz.to_timestamp(dt.parse::<DateTime>().unwrap()).unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// A search from local midnight of `day`, 30-minute interval, 60-minute meetings, 09:00–17:00.
    fn search(zone: &str, day: &str, business_days: u32) -> SlotSearch {
        let tz = tz(zone);
        let start = local(&tz, &format!("{day}T00:00"));
        SlotSearch {
            window_start: start,
            interval_minutes: 30,
            duration_minutes: 60,
            time_zone: tz,
            work_start: time(9, 0, 0, 0),
            work_end: time(17, 0, 0, 0),
            business_days,
            not_before: start,
        }
    }

    /// A view over `days` days from the window start: `'0'` except where a local-time mark applies
    /// (later marks win).
    fn view(s: &SlotSearch, days: i64, marks: &[(&str, &str, char)]) -> String {
        let n = days * 24 * 60 / i64::from(s.interval_minutes);
        (0..n)
            .map(|i| {
                let at =
                    s.window_start + SignedDuration::from_mins(i * i64::from(s.interval_minutes));
                let at = s.time_zone.to_datetime(at);
                marks
                    .iter()
                    .rev()
                    .find(|(a, b, _)| {
                        at >= a.parse::<DateTime>().unwrap() && at < b.parse::<DateTime>().unwrap()
                    })
                    .map_or('0', |m| m.2)
            })
            .collect()
    }

    fn person(address: &str, required: bool, view: String) -> AttendeeAvailability {
        AttendeeAvailability {
            address: address.into(),
            required,
            view,
        }
    }

    fn starts(slots: &[Slot], tz: &TimeZone) -> Vec<String> {
        slots
            .iter()
            .map(|s| tz.to_datetime(s.start).strftime("%a %H:%M").to_string())
            .collect()
    }

    #[test]
    fn free_calendars_give_earliest_slots_spread_over_days() {
        // Mon 2027-03-22, Europe/Berlin (CET, +01:00).
        let s = search("Europe/Berlin", "2027-03-22", 3);
        let people = [
            person("ats@x", true, view(&s, 7, &[])),
            person("tam@x", true, view(&s, 7, &[])),
        ];
        let slots = best_slots(&s, &people, 3);
        assert_eq!(
            starts(&slots, &s.time_zone),
            // Distinct times first: 09:30 overlaps 09:00, so 10:00 is offered instead.
            ["Mon 09:00", "Mon 10:00", "Tue 09:00"]
        );
        assert_eq!(slots[0].start, ts("2027-03-22T08:00:00Z"));
        assert_eq!(slots[0].end, ts("2027-03-22T09:00:00Z"));
        assert_eq!(slots[0].tentative_required, 0);
        assert_eq!((slots[0].optional_free, slots[0].optional_total), (0, 0));
    }

    #[test]
    fn table_of_zones_maps_local_nine_to_utc() {
        // (zone, Monday, expected UTC start of the first slot)
        let table = [
            ("Europe/Berlin", "2027-03-22", "2027-03-22T08:00:00Z"),
            ("America/New_York", "2027-03-22", "2027-03-22T13:00:00Z"),
            ("Asia/Kolkata", "2027-03-22", "2027-03-22T03:30:00Z"),
            ("Europe/Berlin", "2026-11-23", "2026-11-23T08:00:00Z"),
            ("America/New_York", "2026-11-23", "2026-11-23T14:00:00Z"),
        ];
        for (zone, day, first) in table {
            let s = search(zone, day, 1);
            let people = [person("ats@x", true, view(&s, 2, &[]))];
            let slots = best_slots(&s, &people, 100);
            assert_eq!(
                slots.first().map(|s| s.start),
                Some(ts(first)),
                "{zone} {day}"
            );
            // 09:00 to 16:00 at 30-minute steps, all on Monday: spreading has no other day to use.
            assert_eq!(slots.len(), 15, "{zone} {day}");
            let last = slots.last().unwrap();
            assert_eq!(
                s.time_zone.to_datetime(last.end).time(),
                time(17, 0, 0, 0),
                "{zone}"
            );
        }
    }

    #[test]
    fn kolkata_half_hour_offset_with_utc_aligned_hourly_window() {
        // A window aligned to the UTC hour puts hourly boundaries on :30 in India (+05:30).
        let tz = tz("Asia/Kolkata");
        let mut s = search("Asia/Kolkata", "2027-03-22", 1);
        s.window_start = ts("2027-03-21T18:00:00Z"); // 23:30 IST on Sunday
        s.not_before = s.window_start;
        s.interval_minutes = 60;
        let people = [person("ats@x", true, "0".repeat(48))];
        let slots = best_slots(&s, &people, 100);
        assert_eq!(
            starts(&slots, &tz).first().map(String::as_str),
            Some("Mon 09:30")
        );
        assert_eq!(
            starts(&slots, &tz).last().map(String::as_str),
            Some("Mon 15:30")
        );
        assert_eq!(slots.len(), 7);
    }

    #[test]
    fn dst_change_inside_the_window() {
        // Europe: clocks go forward on Sunday 2027-03-28. US: on Sunday 2027-03-14.
        let table = [
            (
                "Europe/Berlin",
                "2027-03-26",
                "2027-03-26T08:00:00Z",
                "2027-03-29T07:00:00Z",
            ),
            (
                "America/New_York",
                "2027-03-12",
                "2027-03-12T14:00:00Z",
                "2027-03-15T13:00:00Z",
            ),
        ];
        for (zone, friday, fri_utc, mon_utc) in table {
            let s = search(zone, friday, 2);
            let people = [person("ats@x", true, view(&s, 5, &[]))];
            let slots = best_slots(&s, &people, 100);
            assert_eq!(slots[0].start, ts(fri_utc), "{zone}");
            let monday: Vec<&Slot> = slots
                .iter()
                .filter(|sl| s.time_zone.to_datetime(sl.start).weekday() == Weekday::Monday)
                .collect();
            assert_eq!(monday[0].start, ts(mon_utc), "{zone}");
            assert_eq!(monday.len(), 15, "{zone}");
            // Monday's local boundaries survived the offset change.
            assert!(
                monday
                    .iter()
                    .all(|sl| s.time_zone.to_datetime(sl.start).minute() % 30 == 0)
            );
        }
    }

    #[test]
    fn working_hours_boundaries() {
        let s = search("Europe/Berlin", "2027-03-22", 1);
        // Only 16:00–17:30 is free: 16:00–17:00 ends exactly at work_end, 16:30–17:30 crosses it.
        let late = person(
            "ats@x",
            true,
            view(
                &s,
                1,
                &[
                    ("2027-03-22T00:00", "2027-03-23T00:00", '2'),
                    ("2027-03-22T16:00", "2027-03-22T17:30", '0'),
                ],
            ),
        );
        let slots = best_slots(&s, &[late], 10);
        assert_eq!(starts(&slots, &s.time_zone), ["Mon 16:00"]);
        // Only 08:00–09:30 is free: 08:30–09:30 starts before work_start.
        let early = person(
            "ats@x",
            true,
            view(
                &s,
                1,
                &[
                    ("2027-03-22T00:00", "2027-03-23T00:00", '2'),
                    ("2027-03-22T08:00", "2027-03-22T09:30", '0'),
                ],
            ),
        );
        assert!(best_slots(&s, &[early], 10).is_empty());
    }

    #[test]
    fn partial_overlap_excludes_the_slot() {
        let s = search("Europe/Berlin", "2027-03-22", 1);
        let busy = [("2027-03-22T10:00", "2027-03-22T10:30", '2')];
        let people = [
            person("ats@x", true, view(&s, 1, &busy)),
            person("tam@x", true, view(&s, 1, &[])),
        ];
        let got = starts(&best_slots(&s, &people, 100), &s.time_zone);
        assert!(got.contains(&"Mon 09:00".to_owned()));
        assert!(!got.contains(&"Mon 09:30".to_owned()));
        assert!(!got.contains(&"Mon 10:00".to_owned()));
        assert!(got.contains(&"Mon 10:30".to_owned()));
        // Out of office ('3') blocks in the same way; working elsewhere ('4') does not.
        for (digit, blocked) in [('3', true), ('4', false)] {
            let people = [person(
                "ats@x",
                true,
                view(&s, 1, &[("2027-03-22T09:00", "2027-03-22T09:30", digit)]),
            )];
            let got = starts(&best_slots(&s, &people, 100), &s.time_zone);
            assert_eq!(!got.contains(&"Mon 09:00".to_owned()), blocked, "{digit}");
        }
    }

    #[test]
    fn duration_rounds_up_to_whole_intervals() {
        let mut s = search("Europe/Berlin", "2027-03-22", 1);
        s.duration_minutes = 45;
        let busy = [("2027-03-22T10:00", "2027-03-22T10:30", '2')];
        let people = [person("ats@x", true, view(&s, 1, &busy))];
        let slots = best_slots(&s, &people, 100);
        let got = starts(&slots, &s.time_zone);
        assert!(got.contains(&"Mon 09:00".to_owned()));
        // 09:30–10:15 touches the busy 10:00 interval.
        assert!(!got.contains(&"Mon 09:30".to_owned()));
        assert_eq!(slots[0].end, ts("2027-03-22T08:45:00Z"));
        // 16:00–16:45 fits, 16:30–17:15 does not.
        assert_eq!(got.last().map(String::as_str), Some("Mon 16:00"));
    }

    #[test]
    fn weekends_are_skipped_and_today_after_hours_is_skipped() {
        // Friday 2027-03-26 plus one business day: Monday.
        let s = search("Europe/Berlin", "2027-03-26", 2);
        let people = [person("ats@x", true, view(&s, 5, &[]))];
        let slots = best_slots(&s, &people, 100);
        let days: std::collections::BTreeSet<Date> = slots
            .iter()
            .map(|sl| s.time_zone.to_datetime(sl.start).date())
            .collect();
        assert_eq!(
            days.into_iter().map(Date::weekday).collect::<Vec<_>>(),
            [Weekday::Friday, Weekday::Monday]
        );

        // Starting Monday 18:00, two business days are Tuesday and Wednesday.
        let mut s = search("Europe/Berlin", "2027-03-22", 2);
        s.window_start = local(&s.time_zone, "2027-03-22T18:00");
        s.not_before = s.window_start;
        let people = [person("ats@x", true, "0".repeat(48 * 4))];
        let slots = best_slots(&s, &people, 100);
        let days: std::collections::BTreeSet<Date> = slots
            .iter()
            .map(|sl| s.time_zone.to_datetime(sl.start).date())
            .collect();
        assert_eq!(
            days.into_iter().map(Date::weekday).collect::<Vec<_>>(),
            [Weekday::Tuesday, Weekday::Wednesday]
        );
    }

    #[test]
    fn tentative_required_ranks_lower() {
        let s = search("Europe/Berlin", "2027-03-22", 1);
        let tentative = [("2027-03-22T09:00", "2027-03-22T10:00", '1')];
        let people = [
            person("ats@x", true, view(&s, 1, &tentative)),
            person("tam@x", true, view(&s, 1, &[])),
        ];
        let slots = best_slots(&s, &people, 100);
        assert_eq!(starts(&slots[..1], &s.time_zone), ["Mon 10:00"]);
        assert_eq!(slots[0].tentative_required, 0);
        let tail: Vec<&Slot> = slots.iter().filter(|s| s.tentative_required > 0).collect();
        assert_eq!(tail.len(), 2); // 09:00 and 09:30
        assert_eq!(slots[slots.len() - 2].start, ts("2027-03-22T08:00:00Z"));
        assert_eq!(slots[slots.len() - 1].tentative_required, 1);
    }

    #[test]
    fn ties_break_on_optional_attendees_then_time() {
        let s = search("Europe/Berlin", "2027-03-22", 1);
        let all_day = ("2027-03-22T00:00", "2027-03-23T00:00", '2');
        let people = [
            person("ats@x", true, view(&s, 1, &[])),
            person(
                "ae@x",
                false,
                view(
                    &s,
                    1,
                    &[all_day, ("2027-03-22T14:00", "2027-03-22T16:00", '0')],
                ),
            ),
            person(
                "csm@x",
                false,
                view(
                    &s,
                    1,
                    &[all_day, ("2027-03-22T15:00", "2027-03-22T16:00", '0')],
                ),
            ),
            // Tentative counts as not free for an optional attendee.
            person(
                "tsp@x",
                false,
                view(&s, 1, &[("2027-03-22T14:00", "2027-03-22T14:30", '1')]),
            ),
        ];
        let slots = best_slots(&s, &people, 4);
        assert_eq!(
            starts(&slots, &s.time_zone),
            ["Mon 15:00", "Mon 14:30", "Mon 09:00", "Mon 10:00"]
        );
        let counts: Vec<(usize, usize)> = slots
            .iter()
            .map(|s| (s.optional_free, s.optional_total))
            .collect();
        assert_eq!(counts, [(3, 3), (2, 3), (1, 3), (1, 3)]);
    }

    #[test]
    fn nothing_free_gives_nothing() {
        let s = search("Europe/Berlin", "2027-03-22", 5);
        let people = [
            person("ats@x", true, view(&s, 7, &[])),
            person("tam@x", true, "2".repeat(48 * 7)),
        ];
        assert!(best_slots(&s, &people, 5).is_empty());
        assert!(best_slots(&s, &[person("ats@x", true, view(&s, 7, &[]))], 0).is_empty());
        let mut zero = s.clone();
        zero.interval_minutes = 0;
        assert!(best_slots(&zero, &[person("ats@x", true, view(&s, 7, &[]))], 5).is_empty());
        let mut zero = s.clone();
        zero.duration_minutes = 0;
        assert!(best_slots(&zero, &[person("ats@x", true, view(&s, 7, &[]))], 5).is_empty());
    }

    #[test]
    fn short_and_empty_views() {
        let s = search("Europe/Berlin", "2027-03-22", 3);
        // Monday only (48 digits): later days are unknown, so not free for a required attendee.
        let short = person("ats@x", true, "0".repeat(48));
        let slots = best_slots(&s, std::slice::from_ref(&short), 100);
        assert!(!slots.is_empty());
        assert!(
            slots
                .iter()
                .all(|sl| s.time_zone.to_datetime(sl.start).weekday() == Weekday::Monday)
        );
        // The view ends mid-slot: 16:00–17:00 needs digits 32 and 33.
        let cut = person("ats@x", true, "0".repeat(33));
        let got = starts(&best_slots(&s, &[cut], 100), &s.time_zone);
        assert_eq!(got.last().map(String::as_str), Some("Mon 15:30"));
        // Empty (Graph could not resolve the schedule): no slot.
        assert!(
            best_slots(
                &s,
                &[short.clone(), person("tam@x", true, String::new())],
                5
            )
            .is_empty()
        );
        // An optional attendee with an empty view is just not free.
        let slots = best_slots(&s, &[short, person("ae@x", false, String::new())], 1);
        assert_eq!((slots[0].optional_free, slots[0].optional_total), (0, 1));
        // Nobody required and nothing known: every working slot is equally (un)attractive.
        assert_eq!(best_slots(&s, &[], 1).len(), 1);
    }

    #[test]
    fn not_before_is_respected() {
        let mut s = search("Europe/Berlin", "2027-03-22", 1);
        s.not_before = local(&s.time_zone, "2027-03-22T10:10");
        let people = [person("ats@x", true, view(&s, 1, &[]))];
        let slots = best_slots(&s, &people, 1);
        assert_eq!(starts(&slots, &s.time_zone), ["Mon 10:30"]);
    }

    #[test]
    fn spreading_does_not_demote_better_slots() {
        let s = search("Europe/Berlin", "2027-03-22", 3);
        let people = [
            person("ats@x", true, view(&s, 7, &[])),
            // The optional AE is free only Monday morning: those slots are strictly better.
            person(
                "ae@x",
                false,
                view(
                    &s,
                    7,
                    &[
                        ("2027-03-22T00:00", "2027-03-29T00:00", '2'),
                        ("2027-03-22T09:00", "2027-03-22T12:00", '0'),
                    ],
                ),
            ),
        ];
        let slots = best_slots(&s, &people, 4);
        assert_eq!(
            starts(&slots, &s.time_zone),
            // Only Monday has the best tier: distinct times first, then an overlapping one of that tier
            // rather than a worse slot on another day.
            ["Mon 09:00", "Mon 09:30", "Mon 10:00", "Mon 11:00"]
        );
        // Equally good slots are spread: two a day.
        let people = [person("ats@x", true, view(&s, 7, &[]))];
        let slots = best_slots(&s, &people, 5);
        assert_eq!(
            starts(&slots, &s.time_zone),
            [
                "Mon 09:00",
                "Mon 10:00",
                "Tue 09:00",
                "Tue 10:00",
                "Wed 09:00"
            ]
        );
        // More than the days can hold two by two: the passed-over slots fill up, in rank order.
        let slots = best_slots(&s, &people, 7);
        assert_eq!(
            starts(&slots, &s.time_zone),
            [
                "Mon 09:00",
                "Mon 10:00",
                "Mon 11:00",
                "Tue 09:00",
                "Tue 10:00",
                "Wed 09:00",
                "Wed 10:00"
            ]
        );
    }

    #[test]
    fn schedule_window_aligns_locally_and_covers_the_days() {
        let berlin = tz("Europe/Berlin");
        // Monday 2026-11-23 10:07 Berlin: next boundary 10:30, five business days plus today's spare.
        let (start, end) = schedule_window(local(&berlin, "2026-11-23T10:07:12"), &berlin, 5, 30);
        assert_eq!(start, local(&berlin, "2026-11-23T10:30"));
        assert_eq!(end, local(&berlin, "2026-12-01T00:00"));
        // On a boundary already: unchanged.
        let (start, _) = schedule_window(local(&berlin, "2026-11-23T10:30"), &berlin, 5, 30);
        assert_eq!(start, local(&berlin, "2026-11-23T10:30"));
        // Saturday: no spare needed, Mon..Fri.
        let (start, end) = schedule_window(local(&berlin, "2026-11-28T23:50"), &berlin, 5, 30);
        assert_eq!(start, local(&berlin, "2026-11-29T00:00"));
        assert_eq!(end, local(&berlin, "2026-12-05T00:00"));
        // Kolkata, hourly: the boundary is the local hour, not the UTC one.
        let kolkata = tz("Asia/Kolkata");
        let (start, _) = schedule_window(ts("2027-03-22T03:10:00Z"), &kolkata, 3, 60);
        assert_eq!(start, ts("2027-03-22T03:30:00Z")); // 09:00 IST
        // Under Graph's 62-day limit however many days are asked for.
        let (start, end) = schedule_window(ts("2027-03-22T03:10:00Z"), &kolkata, 500, 30);
        assert!(start.duration_until(end) < SignedDuration::from_hours(62 * 24));
        assert!(end > start);
    }

    #[test]
    fn window_and_search_agree_across_dst() {
        // Friday before the US change, New York. 16:10: the window starts 16:30 and Friday is the one
        // business day. 16:40: it starts 17:00, Friday is over, and Monday (after the change) is searched.
        let ny = tz("America/New_York");
        let table = [
            ("2027-03-12T16:10", "2027-03-12T21:30:00Z", 1),
            ("2027-03-12T16:40", "2027-03-15T13:00:00Z", 16),
        ];
        for (now, first, count) in table {
            let now = local(&ny, now);
            let (start, end) = schedule_window(now, &ny, 1, 30);
            // Friday and the spare Monday, whatever the hour.
            assert_eq!(end, local(&ny, "2027-03-16T00:00"));
            let n = start.duration_until(end).as_mins() / 30;
            let s = SlotSearch {
                window_start: start,
                interval_minutes: 30,
                duration_minutes: 30,
                time_zone: ny.clone(),
                work_start: time(9, 0, 0, 0),
                work_end: time(17, 0, 0, 0),
                business_days: 1,
                not_before: now,
            };
            let slots = best_slots(&s, &[person("ats@x", true, "0".repeat(n as usize))], 100);
            assert_eq!(slots.first().map(|s| s.start), Some(ts(first)));
            assert_eq!(slots.len(), count);
        }
    }

    #[test]
    fn describe_formats_in_the_zone() {
        let slot = Slot {
            start: ts("2026-11-24T09:00:00Z"),
            end: ts("2026-11-24T10:00:00Z"),
            optional_free: 0,
            optional_total: 0,
            tentative_required: 0,
        };
        assert_eq!(
            describe(&slot, &tz("Europe/Berlin")),
            "Tue 24 Nov, 10:00–11:00 (Europe/Berlin)"
        );
        assert_eq!(
            describe(&slot, &tz("Asia/Kolkata")),
            "Tue 24 Nov, 14:30–15:30 (Asia/Kolkata)"
        );
        assert_eq!(
            describe(&slot, &tz("America/New_York")),
            "Tue 24 Nov, 04:00–05:00 (America/New_York)"
        );
        let fixed = TimeZone::fixed(jiff::tz::offset(-3));
        assert_eq!(describe(&slot, &fixed), "Tue 24 Nov, 06:00–07:00 (UTC-03)");
        let late = Slot {
            start: ts("2026-11-24T22:30:00Z"),
            end: ts("2026-11-24T23:30:00Z"),
            ..slot
        };
        assert_eq!(
            describe(&late, &tz("Europe/Berlin")),
            "Tue 24 Nov, 23:30–Wed 25 Nov, 00:30 (Europe/Berlin)"
        );
    }
}
