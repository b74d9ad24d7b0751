//! Logs during a full production-mode flow: structured (JSON, with the activity and conversation ids) and
//! free of every token, password and client secret involved.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::json;
use tracing_subscriber::layer::SubscriberExt;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn logs_are_structured_and_hold_no_secret() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("trace"))
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_writer(captured.clone()),
        );
    // This test's runtime is single-threaded, so the app's tasks log through this thread's subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);
    // Other tests run beside this one without a subscriber; a callsite first reached there may have its
    // interest cached as "never", so it is recomputed now that this thread has one.
    tracing::callsite::rebuild_interest_cache();

    let app = spawn_app().await;
    Mock::given(method("GET"))
        .and(path("/graph/users/tom%40contoso.com"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({ "id": "oid-tom", "displayName": "Tom", "mail": "tom@contoso.com" }),
        ))
        .mount(&app.identity)
        .await;
    let token = app.token();
    for text in [
        "help",
        "roles TAM",
        "engagement start \"Contoso\" motion:rfa",
        "team add TAM tom@contoso.com",
        "nonsense",
    ] {
        app.say(text).await;
    }
    // A refused request logs its reason, not the token.
    app.post_with_token(&app.message("help"), Some("forged.token.value"))
        .await;
    drop(_guard);

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.lines().count() > 20, "the flow logged: {logs}");
    for secret in [
        CONNECTOR_TOKEN,
        "test-app-password",
        token.as_str(),
        "forged.token.value",
        "client_secret",
    ] {
        assert!(
            !logs.contains(secret),
            "a secret leaked into the logs: {secret}"
        );
    }
    // Structured: every line is JSON, and the activity span carries the ids.
    for line in logs.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    assert!(
        logs.contains("\"activity.id\""),
        "activity ids are logged: {}",
        logs.lines()
            .filter(|l| l.contains("activity"))
            .take(3)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        logs.contains(&format!(
            "\"conversation.id\":\"{CHANNEL};messageid=1732270530123\""
        )),
        "conversation ids are logged"
    );
    assert!(
        logs.contains("request refused"),
        "refusals are logged with a reason"
    );
}
