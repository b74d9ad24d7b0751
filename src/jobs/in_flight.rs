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

use crate::idempotency::SendHook;
use crate::store::{Job, Store};

const NOTE_TAIL: &str = ", a call that must not be repeated";

/// The start of `last_error` on a job whose next attempt must first look up whether an unrepeatable call
/// of an earlier attempt happened (see [`crate::idempotency::scope_checking`]).
pub const TO_CHECK: &str = "to be looked up before sending again: ";

fn note(attempt: u32, op: &str) -> String {
    format!("in flight: attempt {attempt} sent {op}{NOTE_TAIL}")
}

/// The hook the worker runs the effect with: notes the attempt before its first unrepeatable call.
pub fn hook(store: Arc<dyn Store>, job_id: i64, worker: String, attempt: u32) -> SendHook {
    Arc::new(move |op| {
        let store = store.clone();
        let worker = worker.clone();
        Box::pin(async move {
            match store
                .note_job_sending(job_id, &worker, &note(attempt, op))
                .await
            {
                Ok(true) => Ok(()),
                Ok(false) => Err("the job's lease was lost before sending".to_owned()),
                Err(e) => Err(format!("noting the job before sending failed: {e}")),
            }
        })
    })
}

/// What a note written before the notes named their call says instead of the call's name.
const UNNAMED: &str = "a call";

/// The call the attempt before this one was cut off in, if it died after starting one. A note written by
/// an earlier version names no call (`UNNAMED`): it cannot be looked up, so such a job is held.
pub fn cut_off_mid_call(job: &Job) -> Option<&str> {
    let before = job.attempts.checked_sub(1).filter(|n| *n > 0)?;
    let sent = job
        .last_error
        .as_deref()?
        .strip_prefix(&format!("in flight: attempt {before} sent "))?;
    sent.strip_suffix(NOTE_TAIL)
        .or_else(|| (sent == "a call that must not be repeated").then_some(UNNAMED))
}

/// Whether this attempt must look its unrepeatable calls up before making them.
pub fn to_check(job: &Job) -> bool {
    job.last_error
        .as_deref()
        .is_some_and(|e| e.starts_with(TO_CHECK))
}

#[cfg(test)]
mod tests {
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
        assert_eq!(
            cut_off_mid_call(&job(3, Some(note(2, "send_mail")))),
            Some("send_mail")
        );
        assert_eq!(cut_off_mid_call(&job(2, Some(note(2, "send_mail")))), None);
        assert_eq!(cut_off_mid_call(&job(1, Some(note(0, "send_mail")))), None);
        assert_eq!(cut_off_mid_call(&job(3, Some("HTTP 503".to_owned()))), None);
        assert_eq!(cut_off_mid_call(&job(3, None)), None);
    }

    /// A job cut off before an upgrade carries the old note, which names no call: still cut off (held,
    /// never sent again), and not taken for a call that can be looked up.
    #[test]
    fn a_note_from_before_the_calls_were_named_still_counts() {
        let old = "in flight: attempt 2 sent a call that must not be repeated".to_owned();
        let cut_off = job(3, Some(old));
        assert_eq!(cut_off_mid_call(&cut_off), Some(UNNAMED));
        assert!(!crate::graph::can_look_up(UNNAMED));
    }

    #[test]
    fn only_a_marked_job_is_checked() {
        assert!(to_check(&job(2, Some(format!("{TO_CHECK}timed out")))));
        assert!(!to_check(&job(2, Some("timed out".to_owned()))));
        assert!(!to_check(&job(2, None)));
    }
}
