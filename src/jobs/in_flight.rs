//! What a worker taking over a job after a crash needs to know: whether the attempt that died had already
//! started a call that must not be repeated (a Connector POST, a Graph draft or mail). Right before such a
//! call the attempt notes it on the job (`last_error`, one write per attempt); an attempt that ends normally
//! overwrites the note with its outcome. A job claimed again with the note of the attempt before still in
//! place was cut off mid-call: it may have happened, so it is recorded as unconfirmed, not sent again. An
//! attempt that died before any such call (say, fetching a token) is simply run again.

use std::sync::Arc;

use crate::idempotency::SendHook;
use crate::store::{Job, Store};

fn note(attempt: u32) -> String {
    format!("in flight: attempt {attempt} sent a call that must not be repeated")
}

/// The hook the worker runs the effect with: notes the attempt before its first unrepeatable call.
pub fn hook(store: Arc<dyn Store>, job_id: i64, worker: String, attempt: u32) -> SendHook {
    Arc::new(move || {
        let store = store.clone();
        let worker = worker.clone();
        Box::pin(async move {
            match store
                .note_job_sending(job_id, &worker, &note(attempt))
                .await
            {
                Ok(true) => Ok(()),
                Ok(false) => Err("the job's lease was lost before sending".to_owned()),
                Err(e) => Err(format!("noting the job before sending failed: {e}")),
            }
        })
    })
}

/// Whether the attempt before this one died after starting an unrepeatable call.
pub fn cut_off_mid_call(job: &Job) -> bool {
    job.attempts > 1 && job.last_error.as_deref() == Some(note(job.attempts - 1).as_str())
}
