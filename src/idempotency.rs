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
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// The header every outbound call made by a job carries.
pub const HEADER: &str = "x-fieldbot-idempotency-key";

/// Runs (once per job attempt) right before the first call that must not be repeated: a POST without an
/// idempotency key on the server's side. The worker uses it to note on the job that the call may happen.
pub type SendHook = std::sync::Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync,
>;

struct CallKeys {
    base: String,
    counts: Mutex<HashMap<&'static str, u32>>,
    on_send: Option<SendHook>,
    noted: AtomicBool,
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
    let keys = CallKeys {
        base: key.to_owned(),
        counts: Mutex::new(HashMap::new()),
        on_send,
        noted: AtomicBool::new(false),
    };
    CURRENT.scope(keys, f).await
}

/// The clients call this right before sending a request that must not be repeated (a Connector POST,
/// Graph sendMail or a draft). An error means the request must not be sent now (nothing happened; retry).
pub async fn before_unrepeatable_send() -> Result<(), String> {
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
    match hook {
        Some(hook) => hook().await,
        None => Ok(()),
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
        use std::sync::Arc;
        use std::sync::atomic::AtomicU32;
        let runs = Arc::new(AtomicU32::new(0));
        let hook: SendHook = {
            let runs = runs.clone();
            Arc::new(move || {
                let runs = runs.clone();
                Box::pin(async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
            })
        };
        assert_eq!(before_unrepeatable_send().await, Ok(()));
        scope_with_hook("k", Some(hook.clone()), async {
            assert_eq!(before_unrepeatable_send().await, Ok(()));
            assert_eq!(before_unrepeatable_send().await, Ok(()));
        })
        .await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        scope_with_hook("k", Some(hook), before_unrepeatable_send())
            .await
            .ok();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }
}
