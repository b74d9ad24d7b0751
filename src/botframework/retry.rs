//! Backoff math for the durable job queue (botframework.md §6).
//!
//! Pure on purpose: the queue stores the attempt count and computes the next `run_at` from it, so retries
//! survive restarts. backon's jitter was not used: it adds up to one extra delay on top (`[d, 2d)`), which
//! overshoots `max_delay`, while equal jitter here stays within `[d/2, d]`.

use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay after the first failed attempt (before jitter).
    pub base: Duration,
    /// Cap on the computed delay (jitter never exceeds it).
    pub max_delay: Duration,
    /// Total attempts, including the first one.
    pub max_attempts: u32,
    /// Cap on a server's `Retry-After`, so a hostile or buggy value cannot park a job for days.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// Roughly the Azure SDK's default curve (1 s … 64 s) stretched for a durable queue: 2 s, 4 s, … capped at
    /// 5 min, eight attempts in all (about 12 min of waiting before giving up).
    fn default() -> Self {
        Self {
            base: Duration::from_secs(2),
            max_delay: Duration::from_secs(5 * 60),
            max_attempts: 8,
            max_retry_after: Duration::from_secs(15 * 60),
        }
    }
}

impl RetryPolicy {
    /// Delay before attempt `attempt + 1`, after `attempt` failed attempts (`attempt` >= 1; 0 is read as 1).
    ///
    /// Exponential `base * 2^(attempt-1)` capped at `max_delay`, with equal jitter (uniform in `[d/2, d]`) so
    /// that jobs failing together spread out yet never retry almost immediately. A server-provided
    /// `retry_after` wins, clamped to `max_retry_after`.
    pub fn next_delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        self.next_delay_with(attempt, retry_after, &mut fastrand::Rng::new())
    }

    /// [`next_delay`](Self::next_delay) with a caller-supplied RNG, for deterministic tests.
    pub fn next_delay_with(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        rng: &mut fastrand::Rng,
    ) -> Duration {
        if let Some(server) = retry_after {
            return server.min(self.max_retry_after);
        }
        let ceiling = self.capped_exponential(attempt);
        let floor = ceiling / 2;
        let spread = ceiling.saturating_sub(floor).as_nanos();
        let spread = u64::try_from(spread).unwrap_or(u64::MAX);
        floor.saturating_add(Duration::from_nanos(rng.u64(0..=spread)))
    }

    /// `base * 2^(attempt-1)`, capped at `max_delay`, without jitter.
    fn capped_exponential(&self, attempt: u32) -> Duration {
        let exponent = attempt.max(1) - 1;
        let delay = 2u32
            .checked_pow(exponent)
            .and_then(|factor| self.base.checked_mul(factor))
            .unwrap_or(self.max_delay);
        delay.min(self.max_delay)
    }

    /// Whether no attempt is left after `attempts` attempts have been made.
    pub fn exhausted(&self, attempts: u32) -> bool {
        attempts >= self.max_attempts
    }
}

/// Parses a `Retry-After` value: delta-seconds (`"7"`, leniently also `"1.5"`) or an HTTP-date, relative to
/// `now`. A date in the past means "now" (zero). Unparseable values yield `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly long digit strings overflow u64; the policy clamps anyway, so saturate.
        return Some(
            value
                .parse::<u64>()
                .map(Duration::from_secs)
                .unwrap_or(Duration::MAX),
        );
    }
    if value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return value
            .parse::<f64>()
            .ok()
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok());
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_attempts: 5,
            max_retry_after: Duration::from_secs(300),
        }
    }

    #[test]
    fn delay_table_within_equal_jitter_bounds() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // (attempt, lower, upper) for base 1 s, cap 60 s.
        let table = [
            (0, ms(500), s(1)),
            (1, ms(500), s(1)),
            (2, s(1), s(2)),
            (3, s(2), s(4)),
            (4, s(4), s(8)),
            (6, s(16), s(32)),
            (7, s(30), s(60)), // 64 s capped to 60 s
            (10, s(30), s(60)),
            (40, s(30), s(60)), // 2^39 overflows u32: still the cap
            (u32::MAX, s(30), s(60)),
        ];
        let p = policy();
        for (attempt, lower, upper) in table {
            for _ in 0..200 {
                let d = p.next_delay(attempt, None);
                assert!(
                    d >= lower && d <= upper,
                    "attempt {attempt}: {d:?} not in [{lower:?}, {upper:?}]"
                );
            }
        }
    }

    #[test]
    fn jitter_reaches_both_ends_and_varies() {
        let p = policy();
        let mut rng = fastrand::Rng::with_seed(7);
        let samples: Vec<Duration> = (0..500)
            .map(|_| p.next_delay_with(3, None, &mut rng))
            .collect();
        let min = samples.iter().min().unwrap();
        let max = samples.iter().max().unwrap();
        assert!(*min < Duration::from_millis(2200), "{min:?}");
        assert!(*max > Duration::from_millis(3800), "{max:?}");
        // Seeded RNG makes it reproducible.
        let mut a = fastrand::Rng::with_seed(42);
        let mut b = fastrand::Rng::with_seed(42);
        assert_eq!(
            p.next_delay_with(5, None, &mut a),
            p.next_delay_with(5, None, &mut b)
        );
    }

    #[test]
    fn cap_respected_even_with_huge_base() {
        let p = RetryPolicy {
            base: Duration::MAX,
            ..policy()
        };
        for attempt in [1, 2, 30] {
            assert!(p.next_delay(attempt, None) <= p.max_delay);
        }
    }

    #[test]
    fn retry_after_wins_and_is_clamped() {
        let p = policy();
        let s = Duration::from_secs;
        let table = [
            (1, Some(s(7)), s(7)),
            (9, Some(s(7)), s(7)), // shorter than the computed delay: still wins
            (1, Some(s(299)), s(299)),
            (1, Some(s(3600)), s(300)),
            (1, Some(Duration::MAX), s(300)),
            (3, Some(Duration::ZERO), Duration::ZERO),
        ];
        for (attempt, retry_after, expected) in table {
            assert_eq!(
                p.next_delay(attempt, retry_after),
                expected,
                "{attempt} {retry_after:?}"
            );
        }
    }

    #[test]
    fn exhausted_after_max_attempts() {
        let p = policy();
        let table = [(0, false), (1, false), (4, false), (5, true), (6, true)];
        for (attempts, expected) in table {
            assert_eq!(p.exhausted(attempts), expected, "{attempts}");
        }
        assert!(
            RetryPolicy {
                max_attempts: 0,
                ..p
            }
            .exhausted(0)
        );
    }

    #[test]
    fn parse_retry_after_table() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let s = Duration::from_secs;
        let table: [(&str, Option<Duration>); 12] = [
            ("7", Some(s(7))),
            (" 120 ", Some(s(120))),
            ("0", Some(Duration::ZERO)),
            ("1.5", Some(Duration::from_millis(1500))),
            ("99999999999999999999999", Some(Duration::MAX)),
            ("Sun, 06 Nov 1994 08:50:07 GMT", Some(s(30))), // IMF-fixdate
            ("Sunday, 06-Nov-94 08:49:47 GMT", Some(s(10))), // RFC 850
            ("Sun Nov  6 08:49:57 1994", Some(s(20))),      // asctime
            ("Sun, 06 Nov 1994 08:00:00 GMT", Some(Duration::ZERO)), // in the past
            ("", None),
            ("-5", None),
            ("soon", None),
        ];
        for (value, expected) in table {
            assert_eq!(parse_retry_after(value, now), expected, "{value:?}");
        }
    }
}
