//! Throttling (issue 8, item 4), scaled down: the FTA request emails of 40 requests, filed through the webhook
//! in 8 channels, all leave from one sender mailbox through a fake Graph that accepts 2 `sendMail` per
//! 10-second sliding window per sender and answers 429 + `Retry-After` beyond that. Every mail arrives once,
//! none is dead-lettered. No timing assertion: the full-size timed run is `scripts/throttle`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fieldbot::clock::{Clock, Millis};
use fieldbot::store::JobStatus;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::helpers::*;

const SENDER: &str = "fieldbot@contoso.com";
const DANA: &str = "5f0c6c0e-1d2b-4c55-9a35-0d5a1b2c3d4e";
const CHANNELS: usize = 8;
const PER_CHANNEL: usize = 5;
const LIMIT: usize = 2;
const WINDOW: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Sent {
    /// When each accepted mail was accepted (app clock), and its subject.
    accepted: Vec<(Millis, String)>,
    throttled: usize,
}

/// Exchange's per-sender message rate, in miniature: at most `LIMIT` accepted in any `WINDOW` (app clock, so
/// the test moves time instead of sleeping); beyond that 429 with `Retry-After` = whole seconds until the
/// oldest accepted mail leaves the window.
struct SendLimit {
    clock: Clock,
    sent: Arc<Mutex<Sent>>,
}

impl Respond for SendLimit {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let now = self.clock.now();
        let window = i64::try_from(WINDOW.as_millis()).unwrap();
        let mut sent = self.sent.lock().unwrap();
        let in_window: Vec<Millis> = sent
            .accepted
            .iter()
            .map(|(at, _)| *at)
            .filter(|at| *at > now - window)
            .collect();
        if in_window.len() >= LIMIT {
            let oldest = in_window.iter().min().copied().unwrap();
            let wait_secs = (oldest + window - now + 999) / 1000;
            sent.throttled += 1;
            return ResponseTemplate::new(429)
                .insert_header("Retry-After", wait_secs.max(1).to_string())
                .set_body_json(json!({ "error": {
                    "code": "ErrorExceededMessageLimit",
                    "message": "Message rate limit exceeded for this sender."
                }}));
        }
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let subject = body["message"]["subject"].as_str().unwrap().to_owned();
        sent.accepted.push((now, subject));
        ResponseTemplate::new(202)
    }
}

/// `text` as Dana's message in another channel of the test team.
fn in_channel(app: &TestApp, channel: &str, text: &str) -> Value {
    let mut activity = app.message(text);
    activity["conversation"]["id"] = json!(format!("{channel};messageid=1732270530123"));
    activity["channelData"]["teamsChannelId"] = json!(channel);
    activity["channelData"]["channel"]["id"] = json!(channel);
    activity
}

#[tokio::test]
async fn mails_from_one_throttled_mailbox_all_arrive_once_and_none_is_dead_lettered() {
    let app = spawn_with(Options {
        tweak: Some(Box::new(|s| {
            s.fasttrack.mail_sender = SENDER.into();
            s.fasttrack.fta_reminder_business_days = 0;
        })),
        ..Options::default()
    })
    .await;
    let sent = Arc::new(Mutex::new(Sent::default()));
    Mock::given(method("POST"))
        .and(path(format!(
            "/graph/users/{}/sendMail",
            SENDER.replace('@', "%40")
        )))
        .respond_with(SendLimit {
            clock: app.clock.clone(),
            sent: Arc::clone(&sent),
        })
        .mount(&app.identity)
        .await;
    // The requestor's address, and the thread each request's status card starts.
    Mock::given(method("GET"))
        .and(path(format!("/graph/users/{DANA}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({ "id": DANA, "displayName": "Dana Lee", "mail": "dana@contoso.com" }),
        ))
        .mount(&app.identity)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/conversations"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({ "id": "19:t@thread.tacv2;messageid=9", "activityId": "9" })),
        )
        .mount(&app.connector)
        .await;

    let channels: Vec<String> = (0..CHANNELS)
        .map(|i| format!("19:throttle{i}@thread.tacv2"))
        .collect();
    for (i, channel) in channels.iter().enumerate() {
        let start = format!(
            "engagement start \"Customer {i}\" motion:rfa tpid:{}",
            1000 + i
        );
        let response = app.post_activity(&in_channel(&app, channel, &start)).await;
        assert_eq!(response.status(), 200);
    }
    app.run_pending_jobs().await;
    for _ in 0..PER_CHANNEL {
        for channel in &channels {
            let request = in_channel(
                &app,
                channel,
                "fta request tpid:12345 tenant:contoso.onmicrosoft.com partner:none users:900 type:non-ecif \
                 stage:70 event:\"Committed to Office 365\" segment:enterprise entitlements:o365",
            );
            assert_eq!(app.post_activity(&request).await.status(), 200);
        }
    }

    let expected = CHANNELS * PER_CHANNEL;
    for _ in 0..10 * expected {
        app.run_pending_jobs().await;
        let open: i64 = app
            .store
            .job_counts()
            .await
            .unwrap()
            .into_iter()
            .filter(|(status, _)| matches!(status, JobStatus::Pending | JobStatus::Running))
            .map(|(_, n)| n)
            .sum();
        if open == 0 {
            break;
        }
        app.clock.advance(WINDOW);
    }

    let requests = app.store.fta_requests(&Default::default()).await.unwrap();
    assert_eq!(requests.len(), expected, "every request was filed");
    let sent = std::mem::take(&mut *sent.lock().unwrap());
    assert!(
        sent.throttled > 0,
        "the fake never throttled, so this test proved nothing"
    );
    for request in &requests {
        let marker = format!("FTA request #{} ", request.id);
        let copies = sent
            .accepted
            .iter()
            .filter(|(_, subject)| subject.starts_with(&marker))
            .count();
        assert_eq!(
            copies, 1,
            "mail for request {} arrived {copies} times",
            request.id
        );
    }
    assert_eq!(sent.accepted.len(), expected, "no other mail was sent");
    for status in [JobStatus::Dead, JobStatus::Unconfirmed] {
        let jobs = app.store.jobs_with_status(status, 100).await.unwrap();
        assert!(
            jobs.is_empty(),
            "{} {} job(s), e.g. {:?}",
            jobs.len(),
            status.as_str(),
            jobs.first().map(|j| (&j.kind, &j.last_error))
        );
    }
}
