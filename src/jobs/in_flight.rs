//! What a worker taking over a job after a crash needs to know: whether the attempt that died had already
//! started a call that must not be repeated (a Connector POST, a Graph draft or mail). Right before such a
//! call the attempt notes it on the job (`last_error`, one write per attempt, naming the call); an attempt
//! that ends normally overwrites the note with its outcome. A job claimed again with the note of the
//! attempt before still in place was cut off mid-call: the call may have happened.
//!
//! A reply claimed in passing (in its turn's commit, or by the completion before it) can carry the note
//! from its claim instead ([`claim_note`]), which saves the reply a write and a wait. That is safe only where
//! the next attempt can read the wire log the note names, so that a reply cut off before its POST left (say,
//! while fetching a token) is seen never to have been sent and is sent again rather than held: with SQLite,
//! whose one process is followed by the next on the same machine. And it holds only while the claim's lease
//! is young: an attempt that reaches its call late in its lease (stalled) writes the note again as usual,
//! and that write fails, so nothing is sent, if another worker has taken the job meanwhile
//! ([`Noted::trusted_until`]).
//!
//! What happens next depends on the call. A mail or a draft carries its key where Graph can find it, so the
//! job is looked up again later ([`TO_CHECK`]) and sent only if it is not there. A Connector message cannot
//! be looked up, so that job is held as unconfirmed for an operator, never sent twice. An attempt that died
//! before any such call (say, fetching a token) is simply run again.

use std::sync::Arc;

use super::wire::WireFile;
use crate::clock::{Clock, Millis};
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

/// The op a claim's note names: the kind of job claimed in passing (a Connector message, never looked up).
const CLAIMED_OP: &str = "connector_send";

/// The note a claim in passing writes on a reply's first attempt, which marks its call in `wire`.
pub fn claim_note(wire: &WireFile) -> String {
    note(1, CLAIMED_OP, false, Some(wire.name()))
}

/// An attempt whose claim wrote its note ([`claim_note`]).
#[derive(Clone)]
pub struct Noted {
    pub clock: Clock,
    /// Until when the attempt may make its call on the claim's note alone: half its lease. A worker
    /// reclaims a job only after its lease ends, so until then the job is still this attempt's.
    pub trusted_until: Millis,
}

impl Noted {
    /// For `job`, claimed with `wire`'s note and a lease of `lease_ms`; `None` when the job does not carry
    /// that note (then the attempt notes its call as usual).
    pub fn for_claimed(job: &Job, wire: &WireFile, lease_ms: Millis, clock: Clock) -> Option<Self> {
        (job.attempts == 1 && job.last_error.as_deref() == Some(claim_note(wire).as_str())).then(
            || Self {
                clock,
                trusted_until: job.run_at - lease_ms / 2,
            },
        )
    }
}

/// The hook the worker runs the effect with: notes the attempt before its first unrepeatable call, naming
/// the call, whether the attempt was `checking`, and the `wire` log file the attempt marks its calls in.
/// An attempt `noted` by its claim writes nothing while its lease is young.
pub fn hook(
    store: Arc<dyn Store>,
    job_id: i64,
    worker: String,
    attempt: u32,
    checking: bool,
    wire: Option<Arc<WireFile>>,
    noted: Option<Noted>,
) -> SendHook {
    Arc::new(move |op| {
        let store = store.clone();
        let worker = worker.clone();
        let wire = wire.clone();
        let noted = noted.clone();
        Box::pin(async move {
            let mark = move |file: Arc<WireFile>| {
                let mark: WireMark = Arc::new(move |event| match event {
                    WireEvent::Leaving => file.mark(job_id, attempt),
                    WireEvent::Refused => file.mark_refused(job_id, attempt),
                });
                mark
            };
            if let (Some(noted), Some(file)) = (&noted, &wire)
                && noted.clock.now() < noted.trusted_until
            {
                return Ok(Some(mark(file.clone())));
            }
            // Written only while the lease is still this worker's (over the claim's note, if any).
            let text = note(attempt, op, checking, wire.as_deref().map(WireFile::name));
            match store.note_job_sending(job_id, &worker, &text).await {
                Ok(true) => Ok(wire.map(mark)),
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

    /// A reply claimed with its note calls on that note while its lease is young, writing nothing; later in
    /// its lease it writes the note again, which fails, so nothing is sent, once another worker took the job.
    #[tokio::test]
    async fn a_claims_note_stands_only_while_the_lease_is_young() {
        use crate::store::NewJob;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("q.db").display());
        let store = crate::store::connect(&url, 2).await.unwrap();
        let log = super::super::wire::WireLog::open(&dir.path().join("wire")).unwrap();
        let file = log.file().unwrap();
        let clock = Clock::system();
        let lease: Millis = 60_000;
        let claim = |worker: &'static str, store: Arc<dyn Store>, clock: Clock| async move {
            let now = clock.now();
            store
                .claim_jobs(worker, now, now + lease, 1)
                .await
                .unwrap()
                .pop()
        };
        let new = NewJob {
            kind: "connector_send".into(),
            payload: "{}".into(),
            idempotency_key: "r1".into(),
            ordering_key: None,
            run_at: clock.now(),
            max_attempts: 3,
            part: None,
        };
        store.enqueue_jobs(vec![new], clock.now()).await.unwrap();
        let claimed = claim("w1", store.clone(), clock.clone()).await.unwrap();
        assert!(
            Noted::for_claimed(&claimed, &file, lease, clock.clone()).is_none(),
            "a job its claim did not note is noted by its attempt"
        );
        let claim_note = claim_note(&file);
        assert!(
            store
                .note_job_sending(claimed.id, "w1", &claim_note)
                .await
                .unwrap()
        );
        let job = store.job_by_key("r1").await.unwrap().unwrap();
        let noted = Noted::for_claimed(&job, &file, lease, clock.clone()).unwrap();
        let send = |noted: Noted| {
            let hook = hook(
                store.clone(),
                job.id,
                "w1".into(),
                1,
                false,
                Some(file.clone()),
                Some(noted),
            );
            hook("reply_to_activity")
        };

        assert!(
            send(noted.clone()).await.unwrap().is_some(),
            "marked in the wire log"
        );
        let after = store.job_by_key("r1").await.unwrap().unwrap();
        assert_eq!(
            after.last_error.as_deref(),
            Some(claim_note.as_str()),
            "nothing written"
        );

        // Half the lease gone: the attempt writes its note, as every unnoted attempt does.
        clock.advance(std::time::Duration::from_secs(31));
        assert!(send(noted.clone()).await.is_ok());
        let after = store.job_by_key("r1").await.unwrap().unwrap();
        assert_eq!(
            after.last_error,
            Some(note(1, "reply_to_activity", false, Some(file.name())))
        );

        // The lease ran out and another worker took the job: the stalled attempt sends nothing.
        clock.advance(std::time::Duration::from_secs(30));
        assert!(claim("w2", store.clone(), clock.clone()).await.is_some());
        let refused = send(noted).await;
        assert!(refused.is_err(), "{:?}", refused.map(|m| m.is_some()));
    }

    /// A reply its claim noted, found still running by the next attempt, was cut off: the next attempt reads
    /// the wire log the claim named, and never looks the call up.
    #[test]
    fn a_claims_note_is_read_back_as_a_cut_off_connector_call() {
        let dir = tempfile::tempdir().unwrap();
        let log = super::super::wire::WireLog::open(dir.path()).unwrap();
        let file = log.file().unwrap();
        let noted = job(2, Some(claim_note(&file)));
        assert_eq!(
            cut_off_mid_call(&noted),
            Some(CutOff {
                op: CLAIMED_OP,
                attempt: 1,
                after_lookup: false,
                wire: Some(file.name()),
            })
        );
        assert!(!crate::graph::can_look_up(CLAIMED_OP));
        assert_eq!(cut_off_mid_call(&job(1, Some(claim_note(&file)))), None);
    }

    #[test]
    fn only_a_marked_job_is_checked() {
        assert!(to_check(&job(2, Some(format!("{TO_CHECK}timed out")))));
        assert!(!to_check(&job(2, Some("timed out".to_owned()))));
        assert!(!to_check(&job(2, None)));
    }
}
