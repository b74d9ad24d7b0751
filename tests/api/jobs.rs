//! The durable effect queue through the real app: throttling, transient and permanent Connector failures,
//! and crash safety across a restart.

use std::time::Duration;

use fieldbot::store::JobStatus;
use serde_json::json;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

const REPLY: &str = r"^/v3/conversations/.+/activities/.+$";

#[tokio::test]
async fn throttled_replies_wait_for_retry_after_then_go_out() {
    let app = spawn_app().await;
    Mock::given(method("POST"))
        .and(path_regex(REPLY))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "7"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.connector)
        .await;
    app.post_activity(&app.message("help")).await;
    let before = app.clock.now();
    app.run_pending_jobs().await;
    assert_eq!(app.connector_requests().await.len(), 1);
    let pending = app
        .store
        .jobs_with_status(JobStatus::Pending, 10)
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    let wait = pending[0].run_at - before;
    assert!(
        (7000..9000).contains(&wait),
        "Retry-After honoured, waited {wait} ms"
    );

    // Not before its time…
    app.clock.advance(Duration::from_secs(5));
    assert_eq!(app.run_pending_jobs().await, 0);
    // …and then exactly once more.
    app.clock.advance(Duration::from_secs(3));
    assert_eq!(app.run_pending_jobs().await, 1);
    assert_eq!(app.connector_requests().await.len(), 2);
    assert_eq!(
        app.store
            .jobs_with_status(JobStatus::Done, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Each attempt of a reply marks itself in the process's wire log (beside the SQLite database) as its
/// request leaves, and a refusal as soon as it is read, so that after a crash a reply that never left, or
/// was refused, can be told from one that may have been posted.
#[tokio::test]
async fn every_attempt_of_a_reply_is_in_the_wire_log() {
    let app = spawn_app().await;
    Mock::given(method("POST"))
        .and(path_regex(REPLY))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.connector)
        .await;
    app.post_activity(&app.message("help")).await;
    app.run_pending_jobs().await;
    app.clock.advance(Duration::from_secs(60));
    app.run_pending_jobs().await;
    let done = app
        .store
        .jobs_with_status(JobStatus::Done, 10)
        .await
        .unwrap();
    assert_eq!((done.len(), done[0].attempts), (1, 2));
    let dir = app
        .settings
        .wire_log_dir()
        .expect("a wire log beside SQLite");
    let mut lines = Vec::new();
    for file in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
        lines.extend(text.lines().map(str::to_owned));
    }
    let id = done[0].id;
    assert_eq!(
        lines,
        [
            format!("{id} 1"),
            format!("{id} 1 refused"),
            format!("{id} 2")
        ],
        "the 503 is recorded as soon as it is read: a crash before the retry is written sends it again"
    );
}

/// With SQLite, a reply claimed in its turn's commit carries its attempt's note from that claim: the
/// attempt posts without writing a note of its own, and marks its call in the wire log the claim named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_claimed_in_its_turns_commit_is_noted_by_the_claim() {
    let app = spawn_with(Options {
        run_worker: true,
        ..Options::default()
    })
    .await;
    assert_eq!(app.post_activity(&app.message("help")).await.status(), 200);
    let done = jobs_done(&app, 1).await;
    assert_eq!(app.connector_requests().await.len(), 1);
    let (id, attempts, note) = (done[0].id, done[0].attempts, done[0].last_error.clone());
    assert_eq!(attempts, 1);
    let dir = app
        .settings
        .wire_log_dir()
        .expect("a wire log beside SQLite");
    let mut files = std::fs::read_dir(&dir).unwrap();
    let file = files.next().unwrap().unwrap();
    let name = file.file_name().into_string().unwrap();
    assert_eq!(
        note,
        Some(format!(
            "in flight: attempt 1 sent connector_send, a call that must not be repeated; wire log {name}"
        )),
        "the claim's note, not one written before the POST"
    );
    assert_eq!(
        std::fs::read_to_string(file.path()).unwrap(),
        format!("{id} 1\n")
    );
}

/// The replies queued behind a running one in its conversation are taken over by its completion, and that
/// claim notes them too: none writes a note of its own before its POST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_taken_over_in_passing_are_noted_by_the_take_over() {
    let app = worker_running_with_replies_taking(300).await;
    for _ in 0..3 {
        assert_eq!(app.post_activity(&app.message("help")).await.status(), 200);
    }
    let done = jobs_done(&app, 3).await;
    assert_eq!(app.connector_requests().await.len(), 3);
    for job in done {
        assert_eq!(job.attempts, 1);
        let note = job.last_error.unwrap_or_default();
        assert!(
            note.starts_with("in flight: attempt 1 sent connector_send, a call that must not be repeated; wire log "),
            "job {}: {note}",
            job.id
        );
    }
}

#[tokio::test]
async fn a_503_is_retried_with_backoff_and_then_succeeds() {
    let app = spawn_app().await;
    Mock::given(method("POST"))
        .and(path_regex(REPLY))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&app.connector)
        .await;
    app.post_activity(&app.message("roles")).await;
    for _ in 0..3 {
        app.run_pending_jobs().await;
        app.clock.advance(Duration::from_secs(60));
    }
    assert_eq!(app.connector_requests().await.len(), 3);
    let done = app
        .store
        .jobs_with_status(JobStatus::Done, 10)
        .await
        .unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].attempts, 3);
}

#[tokio::test]
async fn a_permanent_400_is_dead_lettered_without_a_retry_storm() {
    let app = spawn_app().await;
    Mock::given(method("POST"))
        .and(path_regex(REPLY))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({ "error": { "code": "BadArgument", "message": "bad" } })),
        )
        .with_priority(1)
        .mount(&app.connector)
        .await;
    app.post_activity(&app.message("help")).await;
    for _ in 0..5 {
        app.run_pending_jobs().await;
        app.clock.advance(Duration::from_secs(600));
    }
    assert_eq!(
        app.connector_requests().await.len(),
        1,
        "a permanent failure is not retried"
    );
    let dead = app
        .store
        .jobs_with_status(JobStatus::Dead, 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("BadArgument")
    );
    // The conversation is still fine: a bad request is not a dead reference.
    assert!(app.store.conversation(CHANNEL).await.unwrap().unwrap().live);
}

#[tokio::test]
async fn retries_stop_after_max_attempts() {
    let app = spawn_app().await;
    Mock::given(method("POST"))
        .and(path_regex(REPLY))
        .respond_with(ResponseTemplate::new(502))
        .with_priority(1)
        .mount(&app.connector)
        .await;
    app.post_activity(&app.message("help")).await;
    for _ in 0..10 {
        app.run_pending_jobs().await;
        app.clock.advance(Duration::from_secs(600));
    }
    assert_eq!(
        app.connector_requests().await.len(),
        app.settings.jobs.max_attempts as usize
    );
    assert_eq!(
        app.store
            .jobs_with_status(JobStatus::Dead, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// The Connector takes a reply but answers after the client's timeout (the first `times` replies, or all).
async fn reply_answers_too_late(app: &TestApp, times: Option<u64>) {
    let mock = Mock::given(method("POST"))
        .and(path_regex(REPLY))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_secs(5))
                .set_body_json(json!({"id": "x"})),
        );
    let mock = match times {
        Some(n) => mock.up_to_n_times(n),
        None => mock,
    };
    mock.with_priority(1).mount(&app.connector).await;
}

#[tokio::test]
async fn a_post_that_timed_out_is_not_resent_blindly() {
    let app = spawn_app().await;
    reply_answers_too_late(&app, None).await;
    app.post_activity(&app.message("help")).await;
    app.run_pending_jobs().await;
    app.clock.advance(Duration::from_secs(600));
    app.run_pending_jobs().await;
    assert_eq!(app.connector_requests().await.len(), 1);
    let unconfirmed = app
        .store
        .jobs_with_status(JobStatus::Unconfirmed, 10)
        .await
        .unwrap();
    assert_eq!(unconfirmed.len(), 1, "recorded for reconciliation");
}

/// A `help` whose reply the Connector answered too late (the first `late` times, or always): held.
async fn a_held_reply(late: Option<u64>) -> (TestApp, Vec<fieldbot::store::Job>) {
    let app = spawn_app().await;
    reply_answers_too_late(&app, late).await;
    app.post_activity(&app.message("help")).await;
    app.run_pending_jobs().await;
    let held = app
        .store
        .jobs_with_status(JobStatus::Unconfirmed, 10)
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    (app, held)
}

/// Runs the `fieldbot` command line on the app's database, as an operator would.
fn fieldbot_cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_fieldbot"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("FIELDBOT__STORE__URL", &app.db.url)
        .output()
        .unwrap()
}

/// An operator finds a held call with `fieldbot jobs list` and, having checked it did not happen, queues it
/// again with `fieldbot jobs requeue`; the reply then goes out.
#[tokio::test]
async fn an_operator_lists_and_requeues_a_held_call_from_the_command_line() {
    let (app, held) = a_held_reply(Some(1)).await;
    let fieldbot = |args: &[&str]| fieldbot_cli(&app, args);
    let listed = fieldbot(&["jobs", "list"]);
    let out = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{listed:?}");
    assert!(out.contains(&format!("#{}", held[0].id)), "{out}");
    assert!(out.contains(&held[0].idempotency_key), "{out}");
    assert!(out.contains("no response from the connector"), "{out}");

    let id = held[0].id.to_string();
    let requeued = fieldbot(&["jobs", "requeue", &id]);
    assert!(requeued.status.success(), "{requeued:?}");
    let again = fieldbot(&["jobs", "requeue", &id]);
    assert!(!again.status.success(), "a job that is not held is refused");
    assert!(String::from_utf8_lossy(&again.stderr).contains("not dead or unconfirmed"));
    let bad = fieldbot(&["jobs", "list", "--status", "done"]);
    assert!(!bad.status.success());

    app.run_pending_jobs().await;
    let replies = app.connector_requests().await.len();
    assert_eq!(replies, 2, "the held reply went out once more");
    assert!(
        app.store
            .jobs_with_status(JobStatus::Unconfirmed, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A held call that did happen (the reply is in the conversation) is closed by the operator: it leaves the
/// list and is never sent again.
#[tokio::test]
async fn an_operator_closes_a_held_call_that_happened() {
    let (app, held) = a_held_reply(None).await;
    let fieldbot = |args: &[&str]| fieldbot_cli(&app, args);
    let id = held[0].id.to_string();
    let closed = fieldbot(&["jobs", "close", &id, "--note", "seen in the thread"]);
    assert!(closed.status.success(), "{closed:?}");
    let again = fieldbot(&["jobs", "close", &id]);
    assert!(!again.status.success(), "a job no longer held is refused");
    assert!(String::from_utf8_lossy(&again.stderr).contains("not unconfirmed"));
    let listed = fieldbot(&["jobs", "list"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("no unconfirmed jobs"),
        "{listed:?}"
    );
    let job = app
        .store
        .job_by_key(&held[0].idempotency_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.status, JobStatus::Done);
    assert_eq!(
        job.last_error.as_deref(),
        Some("closed: seen in the thread")
    );

    app.clock.advance(Duration::from_secs(600));
    app.run_pending_jobs().await;
    assert_eq!(app.connector_requests().await.len(), 1, "never sent again");
}

#[tokio::test]
async fn a_job_accepted_before_a_stop_runs_after_restart() {
    let app = spawn_app().await;
    assert_eq!(app.post_activity(&app.message("help")).await.status(), 200);
    // The process stops before its worker ran anything.
    let (db, identity, connector) = app.stop().await;
    assert!(
        connector
            .received_requests()
            .await
            .unwrap()
            .iter()
            .all(|r| !r.url.path().starts_with("/v3/"))
    );

    // A new process on the same database, with its background worker running for real.
    let app = spawn_with(Options {
        db: Some(db),
        identity: Some(identity),
        connector: Some(connector),
        run_worker: true,
        ..Options::default()
    })
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.connector_requests().await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the job never ran after restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.connector_requests().await.len(), 1);
}

/// Found by the soak: a replica SIGKILLed while its reply POST was on the wire lost the job's lease, and
/// the next claim sent the reply again (two replies in Teams). The attempt notes on the job that it is
/// about to send; a takeover that finds the note records the job as unconfirmed instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_cut_off_by_a_crash_is_not_resent_after_the_lease() {
    let app = spawn_app().await;
    Mock::given(method("POST"))
        .and(path_regex(REPLY))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_secs(30))
                .set_body_json(json!({"id": "x"})),
        )
        .with_priority(1)
        .mount(&app.connector)
        .await;
    assert_eq!(app.post_activity(&app.message("help")).await.status(), 200);
    let worker = app.worker.clone();
    let dying = tokio::spawn(async move { worker.run_due().await });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.connector_requests().await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the reply was never sent"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    dying.abort(); // the process dies with the reply on the wire

    app.clock
        .advance(Duration::from_secs(app.settings.jobs.lease_secs + 1));
    app.run_pending_jobs().await;
    assert_eq!(app.connector_requests().await.len(), 1, "not sent again");
    let unconfirmed = app
        .store
        .jobs_with_status(JobStatus::Unconfirmed, 10)
        .await
        .unwrap();
    assert_eq!(unconfirmed.len(), 1, "recorded for reconciliation");
    assert!(
        unconfirmed[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("cut off"),
        "{:?}",
        unconfirmed[0].last_error
    );
}

/// With the background worker running, one conversation's replies go out in the order of its messages, one
/// at a time and each once: the first is claimed in its turn's commit, the next ones are taken over by the
/// completion before them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversations_replies_leave_in_order_with_the_worker_running() {
    let app = worker_running_with_replies_taking(100).await;
    let mut sent = Vec::new();
    for text in ["help", "roles TAM", "help", "roles", "help", "roles CSAM"] {
        let message = app.message(text);
        sent.push(message["id"].as_str().unwrap().to_owned());
        assert_eq!(app.post_activity(&message).await.status(), 200);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.connector_requests().await.len() < sent.len() {
        assert!(std::time::Instant::now() < deadline, "replies missing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let replied_to: Vec<String> = app
        .connector_requests()
        .await
        .iter()
        .map(|r| {
            r.url
                .path()
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(replied_to, sent);
    let counts = app.store.job_counts().await.unwrap();
    assert!(
        counts.contains(&(JobStatus::Done, 6)),
        "every reply recorded as done: {counts:?}"
    );
}

/// A reply claimed in its turn's commit whose job never reaches the worker (here the reservation is
/// dropped, as when the webhook's handler is cancelled right after the commit) is not lost: once the lease
/// ends it is claimed again, and although it carries its claim's note, this process's own wire log holds no
/// line for it and none of its attempts runs it, so it is sent, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_claimed_in_its_commit_by_a_process_that_died_is_sent_after_the_lease() {
    use fieldbot::jobs::{Effect, SendActivity, text_activity};
    let app = spawn_with(Options {
        run_worker: true,
        ..Options::default()
    })
    .await;
    let now = app.clock.now();
    let effect = Effect::ConnectorSend(SendActivity {
        service_url: app.service_url(),
        conversation_id: "19:gone@thread.tacv2".into(),
        reply_to_id: None,
        activity: text_activity("sent after all"),
        card_key: None,
    });
    let job = fieldbot::jobs::job(&effect, "born-and-orphaned".into(), now, 5);
    // Worker slots exist once the background loop has started.
    let born = app.worker.born_claims();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let (claim, reservation) = loop {
        if let Some(reserved) = born.reserve(std::slice::from_ref(&job)) {
            break reserved;
        }
        assert!(std::time::Instant::now() < deadline, "no free worker slot");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let key = fieldbot::store::InboundKey {
        channel_id: "msteams".into(),
        conversation_id: "19:gone@thread.tacv2".into(),
        activity_id: "a1".into(),
    };
    let turn = app
        .store
        .commit_turn(Some(&key), now, vec![], vec![job], None, Some(claim))
        .await
        .unwrap();
    assert_eq!(turn.claimed.len(), 1);
    // The process dies here: the claimed job never reaches its worker.
    drop(reservation);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        app.connector_requests().await.is_empty(),
        "leased, not sent"
    );

    app.clock
        .advance(Duration::from_secs(app.settings.jobs.lease_secs + 1));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let job = app.store.job_by_key("born-and-orphaned").await.unwrap();
        if job.as_ref().map(|j| j.status) == Some(JobStatus::Done) {
            assert_eq!(job.map(|j| j.attempts), Some(2));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the orphaned job was not taken over: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.connector_requests().await.len(), 1, "sent once");
}

/// On stop, the reply on the wire finishes but the replies queued behind it in its conversation are not
/// taken over: they stay queued for the next start instead of stretching the shutdown by a chain's length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_worker_finishes_its_call_and_leaves_the_rest_of_the_chain_queued() {
    let app = worker_running_with_replies_taking(500).await;
    for _ in 0..4 {
        assert_eq!(app.post_activity(&app.message("help")).await.status(), 200);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.connector_requests().await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "no reply left");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let store = app.store.clone();
    let (_db, _identity, connector) = app.stop().await;
    let sent = connector
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().starts_with("/v3/"))
        .count();
    assert_eq!(sent, 1, "only the reply on the wire");
    let counts = store.job_counts().await.unwrap();
    assert!(counts.contains(&(JobStatus::Done, 1)), "{counts:?}");
    assert!(counts.contains(&(JobStatus::Pending, 3)), "{counts:?}");
}

/// The done jobs, once `n` are done (the background worker runs them); fails after 10 s.
async fn jobs_done(app: &TestApp, n: usize) -> Vec<fieldbot::store::Job> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let done = app
            .store
            .jobs_with_status(JobStatus::Done, 10)
            .await
            .unwrap();
        if done.len() >= n {
            return done;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {n} jobs done",
            done.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The app with its background worker running, against a Connector that answers every reply after `ms`.
async fn worker_running_with_replies_taking(ms: u64) -> TestApp {
    let app = spawn_with(Options {
        run_worker: true,
        ..Options::default()
    })
    .await;
    Mock::given(method("POST"))
        .and(path_regex(REPLY))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_millis(ms))
                .set_body_json(json!({"id": "reply"})),
        )
        .with_priority(1)
        .mount(&app.connector)
        .await;
    app
}
