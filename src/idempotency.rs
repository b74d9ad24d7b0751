//! The idempotency key of the job being performed, carried on every outbound call it makes as the header
//! `x-fieldbot-idempotency-key`. Neither the Connector nor Graph deduplicate by it; it is there so a fake
//! (the soak test) or an operator reading proxy logs can count each effect and see a repeat.
//!
//! The worker runs each effect inside [`scope`] with the job's key. A job that makes several calls gives
//! each its own stable key, `<job key>#<op>` for the first call of an operation and `<job key>#<op>.<n>`
//! for the `n`th, so a retry of the same job sends the same keys (counted per operation, so a cached
//! lookup that is skipped on a retry does not shift the keys of the calls after it).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The header every outbound call made by a job carries.
pub const HEADER: &str = "x-fieldbot-idempotency-key";

/// Runs (once per job attempt) right before the first call that must not be repeated: a POST without an
/// idempotency key on the server's side, named by its operation. The worker uses it to note on the job that
/// the call may happen. It may return a [`WireMark`] for the request bodies of the calls that follow.
pub type SendHook = std::sync::Arc<
    dyn Fn(&'static str) -> Pin<Box<dyn Future<Output = Result<Option<WireMark>, String>> + Send>>
        + Send
        + Sync,
>;

/// Records, where a crash cannot erase it, what became of an attempt's unrepeatable requests (see
/// [`crate::jobs::wire`]).
pub type WireMark = Arc<dyn Fn(WireEvent) -> std::io::Result<()> + Send + Sync>;

/// What a [`WireMark`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireEvent {
    /// The attempt's first unrepeatable request (or its first since a refusal) is being handed to the
    /// socket. Run right before its body is released.
    Leaving,
    /// That request was not done: the server answered it without doing it (a non-2xx status), or it never
    /// reached the server whole. As far as the wire goes, the attempt is back to having sent nothing; the
    /// next unrepeatable request marks itself again.
    Refused,
}

struct CallKeys {
    base: String,
    counts: Mutex<HashMap<&'static str, u32>>,
    on_send: Option<SendHook>,
    noted: Arc<AtomicBool>,
    checking: Arc<AtomicBool>,
    wire: Mutex<Option<WireMark>>,
    wire_marked: Arc<AtomicBool>,
}

tokio::task_local! {
    static CURRENT: CallKeys;
}

/// Runs `f` as the work of the job keyed `key`: the calls it makes get keys derived from `key`.
pub async fn scope<F: Future>(key: &str, f: F) -> F::Output {
    scope_with_hook(key, None, f).await
}

/// [`scope`], with a hook run before the first unrepeatable call (see [`before_unrepeatable_send`]).
pub async fn scope_with_hook<F: Future>(key: &str, on_send: Option<SendHook>, f: F) -> F::Output {
    scope_checking(key, on_send, false, f).await.0
}

/// How an attempt's unrepeatable calls went, as [`scope_checking`] saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sends {
    /// The attempt checked for an earlier attempt's call and ended before any lookup settled it: the next
    /// attempt must check too.
    pub unsure: bool,
    /// The attempt started an unrepeatable call.
    pub started: bool,
}

/// [`scope_with_hook`] for an attempt after one that may have made an unrepeatable call (`checking`): it
/// was cut off mid-call, or the call got no answer. Each such call is then looked up first where the API
/// allows it, and made only once it is known not to have happened (see [`checking`]).
pub async fn scope_checking<F: Future>(
    key: &str,
    on_send: Option<SendHook>,
    checking: bool,
    f: F,
) -> (F::Output, Sends) {
    let unsure = Arc::new(AtomicBool::new(checking));
    let started = Arc::new(AtomicBool::new(false));
    let keys = CallKeys {
        base: key.to_owned(),
        counts: Mutex::new(HashMap::new()),
        on_send,
        noted: Arc::clone(&started),
        checking: Arc::clone(&unsure),
        wire: Mutex::new(None),
        wire_marked: Arc::new(AtomicBool::new(false)),
    };
    let output = CURRENT.scope(keys, f).await;
    let sends = Sends {
        unsure: unsure.load(Ordering::SeqCst),
        started: started.load(Ordering::SeqCst),
    };
    (output, sends)
}

/// Whether the unrepeatable call about to be made may already have been made by an earlier attempt. The
/// client must then look for it (Graph finds a mail by the key it carries) or refuse to make it (the
/// Connector cannot look a message up).
pub fn checking() -> bool {
    CURRENT
        .try_with(|keys| keys.checking.load(Ordering::SeqCst))
        .unwrap_or(false)
}

/// A lookup found that the call it checked had not been made. Calls are made one after another, so the
/// earlier attempt stopped at or before this one, and the calls after it need no check.
pub fn checked_not_made() {
    let _ = CURRENT.try_with(|keys| keys.checking.store(false, Ordering::SeqCst));
}

/// The clients call this right before sending a request that must not be repeated (a Connector POST,
/// Graph sendMail or a draft; `op` names it), and then build its body with [`unrepeatable_body`], which
/// carries the wire mark this sets up. An error means the request must not be sent now (nothing happened;
/// retry).
pub async fn before_unrepeatable_send(op: &'static str) -> Result<(), String> {
    let hook = CURRENT
        .try_with(|keys| {
            if keys.noted.swap(true, Ordering::SeqCst) {
                None
            } else {
                keys.on_send.clone()
            }
        })
        .ok()
        .flatten();
    let Some(hook) = hook else {
        return Ok(());
    };
    let mark = hook(op).await?;
    let _ = CURRENT.try_with(|keys| {
        if let Ok(mut wire) = keys.wire.lock() {
            *wire = mark;
        }
    });
    Ok(())
}

/// The body of a request that must not be repeated, and whether it has been released to the connection.
///
/// A request whose body was never released did not reach the server whole, so it did not happen whatever
/// error ended it; one released may have. Inside a job noted with a [`WireMark`], the first such body of
/// the attempt runs the mark right before it is released, and is not released if the mark fails.
pub fn unrepeatable_body(bytes: Vec<u8>) -> (reqwest::Body, Released) {
    let released = Released {
        released: Arc::new(AtomicBool::new(false)),
        marked_here: Arc::new(AtomicBool::new(false)),
        mark: CURRENT
            .try_with(|keys| {
                let wire = keys.wire.lock().ok()?.clone()?;
                Some((wire, keys.wire_marked.clone()))
            })
            .ok()
            .flatten(),
    };
    let body = WiredBody {
        data: Some(bytes::Bytes::from(bytes)),
        released: released.clone(),
    };
    (reqwest::Body::wrap(body), released)
}

/// Whether an [`unrepeatable_body`] went to the connection, and the wire mark it answers to.
#[derive(Clone)]
pub struct Released {
    released: Arc<AtomicBool>,
    /// This body wrote the attempt's [`WireEvent::Leaving`].
    marked_here: Arc<AtomicBool>,
    mark: Option<(WireMark, Arc<AtomicBool>)>,
}

impl std::fmt::Debug for Released {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Released")
            .field("released", &self.get())
            .finish_non_exhaustive()
    }
}

impl Released {
    pub fn get(&self) -> bool {
        self.released.load(Ordering::SeqCst)
    }

    /// Whether the request, which failed with `e`, certainly did not reach the server whole: its body
    /// never went to the connection, or the connection failed while its bytes were still being written
    /// (hyper's "error writing a body to connection": a flush that failed left bytes unsent, so the server
    /// cannot have had the whole request). Then it was not done, and the wire log says so (see
    /// [`Released::refused`]).
    pub fn never_arrived(&self, e: &reqwest::Error) -> bool {
        if !self.get() {
            return true;
        }
        if cut_off_while_written(e) {
            self.refused();
            return true;
        }
        false
    }

    /// The server answered the request with `status`. Every non-2xx answer is taken as "not done" by both
    /// clients (retried or given up, never held), so the wire log may say so before anything else can be
    /// cut off.
    pub fn answered(&self, status: reqwest::StatusCode) {
        if !status.is_success() {
            self.refused();
        }
    }

    /// The request was not done: the server answered without doing it (a non-2xx status), or it never
    /// reached the server whole. If its body is the one that marked the attempt as having sent something,
    /// the wire log says so at once: a crash before the outcome is recorded then leaves nothing unsure. (A
    /// failed write leaves the mark standing: the job is held, as without a log.)
    fn refused(&self) {
        if let Some((mark, marked)) = &self.mark
            && self.marked_here.swap(false, Ordering::SeqCst)
            && mark(WireEvent::Refused).is_ok()
        {
            marked.store(false, Ordering::SeqCst);
        }
    }
}

/// Whether `e` broke the connection while the request was still being written.
fn cut_off_while_written(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if cause
            .downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.to_string() == "error writing a body to connection")
        {
            return true;
        }
        source = cause.source();
    }
    false
}

struct WiredBody {
    data: Option<bytes::Bytes>,
    released: Released,
}

impl http_body::Body for WiredBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let Some(data) = self.data.take() else {
            return std::task::Poll::Ready(None);
        };
        if let Some((mark, marked)) = &self.released.mark
            && !marked.swap(true, Ordering::SeqCst)
        {
            if let Err(e) = mark(WireEvent::Leaving) {
                marked.store(false, Ordering::SeqCst);
                return std::task::Poll::Ready(Some(Err(e)));
            }
            self.released.marked_here.store(true, Ordering::SeqCst);
        }
        self.released.released.store(true, Ordering::SeqCst);
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

/// The key for the next call of operation `op`, or `None` outside a job (webhook-time lookups, tokens).
pub fn next_call_key(op: &'static str) -> Option<String> {
    CURRENT
        .try_with(|keys| {
            let n = match keys.counts.lock() {
                Ok(mut counts) => {
                    let n = counts.entry(op).or_insert(0);
                    *n += 1;
                    *n
                }
                Err(_) => 1,
            };
            if n == 1 {
                format!("{}#{op}", keys.base)
            } else {
                format!("{}#{op}.{n}", keys.base)
            }
        })
        .ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[tokio::test]
    async fn keys_are_per_operation_and_stable_across_runs() {
        assert_eq!(next_call_key("send"), None);
        let run = || async {
            (
                next_call_key("get_member"),
                next_call_key("send"),
                next_call_key("get_member"),
            )
        };
        let first = scope("job-1", run()).await;
        let again = scope("job-1", run()).await;
        assert_eq!(first, again);
        assert_eq!(
            first,
            (
                Some("job-1#get_member".to_owned()),
                Some("job-1#send".to_owned()),
                Some("job-1#get_member.2".to_owned()),
            )
        );
        assert_eq!(next_call_key("send"), None);
    }

    #[tokio::test]
    async fn the_send_hook_runs_once_per_scope_and_not_outside() {
        use std::sync::atomic::AtomicU32;
        let runs = Arc::new(AtomicU32::new(0));
        let hook: SendHook = {
            let runs = runs.clone();
            Arc::new(move |_| {
                let runs = runs.clone();
                Box::pin(async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok(None)
                })
            })
        };
        assert_eq!(before_unrepeatable_send("send").await, Ok(()));
        scope_with_hook("k", Some(hook.clone()), async {
            assert_eq!(before_unrepeatable_send("send").await, Ok(()));
            assert_eq!(before_unrepeatable_send("send").await, Ok(()));
        })
        .await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        scope_with_hook("k", Some(hook), before_unrepeatable_send("send"))
            .await
            .ok();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_checking_scope_is_unsure_until_a_lookup_settles_it() {
        assert!(!checking(), "outside a job nothing is checked");
        let (seen, sends) = scope_checking("k", None, true, async { checking() }).await;
        assert!(seen && sends.unsure, "nothing settled it");
        assert!(!sends.started);
        let (seen, sends) = scope_checking("k", None, true, async {
            checked_not_made();
            let seen = checking();
            before_unrepeatable_send("send").await.ok();
            seen
        })
        .await;
        assert!(
            !seen && !sends.unsure,
            "a lookup found the call was not made"
        );
        assert!(sends.started, "then the call was made");
        let (seen, sends) = scope_checking("k", None, false, async { checking() }).await;
        assert!(!seen && !sends.unsure && !sends.started);
        assert!(!scope("k", async { checking() }).await);
    }

    async fn next_frame(body: &mut reqwest::Body) -> Option<Result<Vec<u8>, String>> {
        use http_body::Body as _;
        let frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await?;
        Some(
            frame
                .map(|f| f.into_data().map(|d| d.to_vec()).unwrap_or_default())
                .map_err(|e| {
                    let mut text = e.to_string();
                    let mut source = std::error::Error::source(&e);
                    while let Some(cause) = source {
                        text.push_str(": ");
                        text.push_str(&cause.to_string());
                        source = cause.source();
                    }
                    text
                }),
        )
    }

    /// A hook that notes nothing and hands out a mark appending to `marks` (failing when `fail` is set).
    fn marking_hook(marks: Arc<Mutex<Vec<&'static str>>>, fail: Arc<AtomicBool>) -> SendHook {
        Arc::new(move |op| {
            let marks = marks.clone();
            let fail = fail.clone();
            Box::pin(async move {
                let mark: WireMark = Arc::new(move |event| {
                    if fail.load(Ordering::SeqCst) {
                        return Err(std::io::Error::other("disk full"));
                    }
                    marks.lock().unwrap().push(match event {
                        WireEvent::Leaving => op,
                        WireEvent::Refused => "refused",
                    });
                    Ok(())
                });
                Ok(Some(mark))
            })
        })
    }

    #[tokio::test]
    async fn an_attempts_first_unrepeatable_body_is_marked_right_before_it_is_released() {
        let marks = Arc::new(Mutex::new(Vec::new()));
        let hook = marking_hook(marks.clone(), Arc::new(AtomicBool::new(false)));
        scope_with_hook("k", Some(hook), async {
            before_unrepeatable_send("send").await.unwrap();
            let (mut first, released) = unrepeatable_body(b"{\"a\":1}".to_vec());
            assert!(marks.lock().unwrap().is_empty() && !released.get());
            assert_eq!(
                next_frame(&mut first).await,
                Some(Ok(b"{\"a\":1}".to_vec()))
            );
            assert_eq!(*marks.lock().unwrap(), ["send"]);
            assert!(released.get());
            assert_eq!(next_frame(&mut first).await, None);
            before_unrepeatable_send("send").await.unwrap();
            let (mut second, released) = unrepeatable_body(b"{}".to_vec());
            next_frame(&mut second).await.unwrap().unwrap();
            assert!(released.get());
            assert_eq!(marks.lock().unwrap().len(), 1, "one mark per attempt");
        })
        .await;
        let (mut outside, released) = unrepeatable_body(b"{}".to_vec());
        next_frame(&mut outside).await.unwrap().unwrap();
        assert!(released.get(), "outside a job there is nothing to mark");
    }

    #[tokio::test]
    async fn a_body_whose_mark_fails_is_never_released() {
        let marks = Arc::new(Mutex::new(Vec::new()));
        let fail = Arc::new(AtomicBool::new(true));
        let hook = marking_hook(marks.clone(), fail.clone());
        scope_with_hook("k", Some(hook), async {
            before_unrepeatable_send("send").await.unwrap();
            let (mut body, released) = unrepeatable_body(b"{}".to_vec());
            let frame = next_frame(&mut body).await;
            assert!(
                matches!(&frame, Some(Err(e)) if e.contains("disk full")),
                "{frame:?}"
            );
            assert!(!released.get());
            fail.store(false, Ordering::SeqCst);
            let (mut again, released) = unrepeatable_body(b"{}".to_vec());
            next_frame(&mut again).await.unwrap().unwrap();
            assert!(released.get());
            assert_eq!(
                *marks.lock().unwrap(),
                ["send"],
                "the next body marks instead"
            );
        })
        .await;
    }

    /// A refusal clears the mark only when it answers the request that made it; the next request marks
    /// itself again.
    #[tokio::test]
    async fn a_refused_request_takes_back_its_own_mark_only() {
        let marks = Arc::new(Mutex::new(Vec::new()));
        let hook = marking_hook(marks.clone(), Arc::new(AtomicBool::new(false)));
        scope_with_hook("k", Some(hook), async {
            before_unrepeatable_send("send").await.unwrap();
            let (mut first, first_released) = unrepeatable_body(b"{}".to_vec());
            next_frame(&mut first).await.unwrap().unwrap();
            let (mut second, second_released) = unrepeatable_body(b"{}".to_vec());
            next_frame(&mut second).await.unwrap().unwrap();
            second_released.refused();
            assert_eq!(
                *marks.lock().unwrap(),
                ["send"],
                "the first request may still have left"
            );
            first_released.refused();
            first_released.refused();
            assert_eq!(*marks.lock().unwrap(), ["send", "refused"]);
            let (mut third, _) = unrepeatable_body(b"{}".to_vec());
            next_frame(&mut third).await.unwrap().unwrap();
            assert_eq!(*marks.lock().unwrap(), ["send", "refused", "send"]);
        })
        .await;
    }
}
