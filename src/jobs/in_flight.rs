//! What a worker taking over a job after a crash needs to know: whether the attempt that died had already
//! started a call that must not be repeated (a Connector POST, a Graph draft or mail). Right before such a
//! call the attempt notes it on the job (`last_error`, one write per attempt, naming the call); an attempt
//! that ends normally overwrites the note with its outcome. A job claimed again with the note of the
//! attempt before still in place was cut off mid-call: the call may have happened.
//!
//! What happens next depends on the call. A mail or a draft carries its key where Graph can find it, so the
//! job is looked up again later ([`TO_CHECK`]) and sent only if it is not there. A Connector message cannot
//! be looked up, so that job is held as unconfirmed for an operator, never sent twice. An attempt that died
//! before any such call (say, fetching a token) is simply run again.

use std::sync::Arc;

use super::wire::WireFile;
use crate::idempotency::{SendHook, WireEvent, WireMark};
use crate::store::{Job, Store};

const NOTE_TAIL: &str = ", a call that must not be repeated";
/// In a note: the attempt had looked up an earlier attempt's call first (see [`TO_CHECK`]).
const AFTER_LOOKUP: &str = "; after a lookup";
/// In a note: where the attempt marks its call as it leaves (see [`super::wire`]); always last.
const WIRE_LOG: &str = "; wire log ";

/// The start of `last_error` on a job whose next attempt must first look up whether an unrepeatable call
/// of an earlier attempt happened (see [`crate::idempotency::scope_checking`]).
pub const TO_CHECK: &str = "to be looked up before sending again: ";

fn note(attempt: u32, op: &str, checking: bool, wire: Option<&str>) -> String {
    let mut note = format!("in flight: attempt {attempt} sent {op}{NOTE_TAIL}");
    if checking {
        note.push_str(AFTER_LOOKUP);
    }
    if let Some(wire) = wire {
        note.push_str(WIRE_LOG);
        note.push_str(wire);
    }
    note
}

/// The hook the worker runs the effect with: notes the attempt before its first unrepeatable call, naming
/// the call, whether the attempt was `checking`, and the `wire` log file the attempt marks its calls in.
pub fn hook(
    store: Arc<dyn Store>,
    job_id: i64,
    worker: String,
    attempt: u32,
    checking: bool,
    wire: Option<Arc<WireFile>>,
) -> SendHook {
    Arc::new(move |op| {
        let store = store.clone();
        let worker = worker.clone();
        let wire = wire.clone();
        Box::pin(async move {
            let text = note(attempt, op, checking, wire.as_deref().map(WireFile::name));
            match store.note_job_sending(job_id, &worker, &text).await {
                Ok(true) => Ok(wire.map(|file| {
                    let mark: WireMark = Arc::new(move |event| match event {
                        WireEvent::Leaving => file.mark(job_id, attempt),
                        WireEvent::Refused => file.mark_refused(job_id, attempt),
                    });
                    mark
                })),
                Ok(false) => Err("the job's lease was lost before sending".to_owned()),
                Err(e) => Err(format!("noting the job before sending failed: {e}")),
            }
        })
    })
}

/// What a note written before the notes named their call says instead of the call's name.
const UNNAMED: &str = "a call";

/// An attempt that died after noting an unrepeatable call.
#[derive(Debug, PartialEq, Eq)]
pub struct CutOff<'a> {
    /// The call it noted.
    pub op: &'a str,
    /// The attempt.
    pub attempt: u32,
    /// It had looked up an earlier attempt's call before (that one may have happened).
    pub after_lookup: bool,
    /// The file of the wire log it marked its calls in (a name in the wire log's folder).
    pub wire: Option<&'a str>,
}

/// The call the attempt before this one was cut off in, if it died after starting one. A note written by
/// an earlier version names no call (`UNNAMED`): it cannot be looked up, so such a job is held.
pub fn cut_off_mid_call(job: &Job) -> Option<CutOff<'_>> {
    let before = job.attempts.checked_sub(1).filter(|n| *n > 0)?;
    let sent = job
        .last_error
        .as_deref()?
        .strip_prefix(&format!("in flight: attempt {before} sent "))?;
    let (op, rest) = match sent.split_once(NOTE_TAIL) {
        Some(split) => split,
        None if sent == "a call that must not be repeated" => (UNNAMED, ""),
        None => return None,
    };
    let (rest, wire) = match rest.split_once(WIRE_LOG) {
        Some((rest, wire)) => (rest, Some(wire)),
        None => (rest, None),
    };
    Some(CutOff {
        op,
        attempt: before,
        after_lookup: rest == AFTER_LOOKUP,
        wire,
    })
}

/// Whether this attempt must look its unrepeatable calls up before making them.
pub fn to_check(job: &Job) -> bool {
    job.last_error
        .as_deref()
        .is_some_and(|e| e.starts_with(TO_CHECK))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::JobStatus;

    fn job(attempts: u32, last_error: Option<String>) -> Job {
        Job {
            id: 1,
            kind: "fta_email".to_owned(),
            payload: "{}".to_owned(),
            idempotency_key: "k".to_owned(),
            ordering_key: None,
            status: JobStatus::Running,
            attempts,
            max_attempts: 8,
            run_at: 0,
            locked_by: Some("w".to_owned()),
            last_error,
            result: None,
        }
    }

    #[test]
    fn a_note_names_the_call_and_is_read_back_only_by_the_next_attempt() {
        let op = |job: &Job| cut_off_mid_call(job).map(|c| c.op.to_owned());
        assert_eq!(
            op(&job(3, Some(note(2, "send_mail", false, None)))),
            Some("send_mail".to_owned())
        );
        assert_eq!(op(&job(2, Some(note(2, "send_mail", false, None)))), None);
        assert_eq!(op(&job(1, Some(note(0, "send_mail", false, None)))), None);
        assert_eq!(cut_off_mid_call(&job(3, Some("HTTP 503".to_owned()))), None);
        assert_eq!(cut_off_mid_call(&job(3, None)), None);
    }

    /// A job cut off before an upgrade carries the old note, which names no call: still cut off (held,
    /// never sent again), and not taken for a call that can be looked up.
    #[test]
    fn a_note_from_before_the_calls_were_named_still_counts() {
        let old = "in flight: attempt 2 sent a call that must not be repeated".to_owned();
        let cut_off = job(3, Some(old));
        let cut = cut_off_mid_call(&cut_off).unwrap();
        assert_eq!((cut.op, cut.after_lookup, cut.wire), (UNNAMED, false, None));
        assert!(!crate::graph::can_look_up(UNNAMED));
    }

    #[test]
    fn a_note_says_where_its_call_was_marked_and_whether_it_followed_a_lookup() {
        let wire = "0a1b2c3d4e5f.001122334455.0.wire";
        for checking in [false, true] {
            let noted = job(3, Some(note(2, "reply_to_activity", checking, Some(wire))));
            assert_eq!(
                cut_off_mid_call(&noted),
                Some(CutOff {
                    op: "reply_to_activity",
                    attempt: 2,
                    after_lookup: checking,
                    wire: Some(wire),
                })
            );
        }
        let plain = job(3, Some(note(2, "send_mail", true, None)));
        let cut = cut_off_mid_call(&plain).unwrap();
        assert!(cut.after_lookup && cut.wire.is_none());
    }

    #[test]
    fn only_a_marked_job_is_checked() {
        assert!(to_check(&job(2, Some(format!("{TO_CHECK}timed out")))));
        assert!(!to_check(&job(2, Some("timed out".to_owned()))));
        assert!(!to_check(&job(2, None)));
    }
}
