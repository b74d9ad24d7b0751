//! Several replicas on one PostgreSQL database: every job runs exactly once, and a replica that dies
//! mid-job loses its lease to another, which finishes the job once.

use std::time::Duration;

use fieldbot::clock::Clock;
use fieldbot::domain::engagement::{Motion, Person, RosterMember};
use fieldbot::domain::roles::Role;
use fieldbot::jobs::{self, Effect};
use fieldbot::store::{Change, Engagement, JobStatus};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const FM: &str = "fm@contoso.com";

/// An engagement whose FM mailbox the follow-up drafts go to.
async fn engagement(app: &TestApp) -> i64 {
    let e = Engagement {
        id: 4242,
        conversation_id: CHANNEL.into(),
        service_url: app.service_url(),
        customer: "Contoso Ltd".into(),
        motion: Motion::Rfa,
        tpid: None,
        tenant: None,
        fm: Person {
            name: "Frida".into(),
            upn: Some(FM.into()),
            ..Person::default()
        },
        active: true,
        created_at: 0,
        closed_at: None,
        closed_by: None,
        roster: vec![],
        prep: vec![],
    };
    let member = RosterMember {
        role: Role::Tam,
        person: Person {
            name: "Tom".into(),
            email: Some("tom@contoso.com".into()),
            ..Person::default()
        },
    };
    app.store
        .commit_activity(
            None,
            0,
            vec![
                Change::StartEngagement(e),
                Change::AddRosterMember {
                    engagement_id: 4242,
                    member,
                    by: "Frida".into(),
                },
            ],
            vec![],
            None,
        )
        .await
        .unwrap();
    4242
}

fn followup_job(engagement_id: i64, n: usize, now: i64) -> fieldbot::store::NewJob {
    let effect = Effect::DraftFollowup {
        engagement_id,
        notes: json!({ "summary": format!("marker-{n}-end"), "open_items": [], "next_steps": [] }),
        // Independent conversations: ordering never holds one job back behind another.
        conversation_id: format!("{CHANNEL}-{n}"),
    };
    jobs::job(&effect, format!("replica-test-{n}"), now, 5)
}

async fn mount_drafts(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path(format!(
            "/graph/users/{}/messages",
            FM.replace('@', "%40")
        )))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({ "id": "d", "webLink": "https://outlook.office.com/d" })),
        )
        .mount(server)
        .await;
}

/// The markers of the drafts the fake Graph received.
async fn markers(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path().ends_with("/messages"))
        .filter_map(|r| {
            let body: Value = serde_json::from_slice(&r.body).ok()?;
            let html = body["body"]["content"].as_str()?.to_string();
            let start = html.find("marker-")?;
            let end = html[start..].find("-end")?;
            Some(html[start..start + end].to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_run_200_jobs_exactly_once() {
    let clock = Clock::system();
    let a = spawn_with(Options {
        backend: Backend::Postgres,
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await;
    mount_drafts(&a.identity).await;
    let engagement_id = engagement(&a).await;
    let jobs: Vec<_> = (0..200)
        .map(|n| followup_job(engagement_id, n, clock.now()))
        .collect();
    assert_eq!(a.store.enqueue_jobs(jobs, clock.now()).await.unwrap(), 200);
    // A second replica on the same database, calling the same fake Graph.
    let b = spawn_with(Options {
        backend: Backend::Postgres,
        db: Some(TestDb::shared(&a.db.url)),
        identity: Some(MockServer::start().await),
        clock: Some(clock.clone()),
        tweak: Some(Box::new({
            let graph = format!("{}/graph", a.identity.uri());
            let token = format!("{}/{{tenant_id}}/token", a.identity.uri());
            move |s| {
                s.graph.base_url = graph;
                s.graph.token_url = token;
            }
        })),
        ..Options::default()
    })
    .await;
    let (mut ran_a, mut ran_b) = (0, 0);
    while ran_a + ran_b < 200 {
        let (x, y) = tokio::join!(a.worker.drain(), b.worker.drain());
        let (x, y) = (x.unwrap(), y.unwrap());
        assert!(x + y > 0, "work left but nobody ran it");
        ran_a += x;
        ran_b += y;
    }
    assert_eq!(
        ran_a + ran_b,
        200,
        "every job ran once between the replicas ({ran_a} + {ran_b})"
    );
    assert!(
        ran_a > 0 && ran_b > 0,
        "both replicas took work ({ran_a} + {ran_b})"
    );
    let mut seen = markers(&a.identity).await;
    assert_eq!(seen.len(), 200, "Graph got each draft once");
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 200, "no draft twice");
    assert_eq!(
        a.store
            .jobs_with_status(JobStatus::Done, 500)
            .await
            .unwrap()
            .len(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_dies_mid_job_loses_it_to_the_other_after_the_lease() {
    let clock = Clock::system();
    // Replica A's token endpoint never answers in time: A claims the job and hangs inside it.
    let hanging = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(60)))
        .mount(&hanging)
        .await;
    let a = spawn_with(Options {
        backend: Backend::Postgres,
        clock: Some(clock.clone()),
        tweak: Some(Box::new({
            let token = format!("{}/{{tenant_id}}/token", hanging.uri());
            move |s| s.graph.token_url = token
        })),
        ..Options::default()
    })
    .await;
    mount_drafts(&a.identity).await;
    let engagement_id = engagement(&a).await;
    a.store
        .enqueue_jobs(
            vec![followup_job(engagement_id, 1, clock.now())],
            clock.now(),
        )
        .await
        .unwrap();

    let worker = a.worker.clone();
    let dying = tokio::spawn(async move { worker.run_due().await });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while hanging.received_requests().await.unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "replica A never started the job"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    dying.abort(); // the replica dies mid-job

    let b = spawn_with(Options {
        backend: Backend::Postgres,
        db: Some(TestDb::shared(&a.db.url)),
        identity: Some(MockServer::start().await),
        clock: Some(clock.clone()),
        tweak: Some(Box::new({
            let graph = format!("{}/graph", a.identity.uri());
            let token = format!("{}/{{tenant_id}}/token", a.identity.uri());
            move |s| {
                s.graph.base_url = graph;
                s.graph.token_url = token;
            }
        })),
        ..Options::default()
    })
    .await;
    assert_eq!(
        b.worker.drain().await.unwrap(),
        0,
        "A still holds the lease"
    );
    clock.advance(Duration::from_secs(a.settings.jobs.lease_secs + 1));
    assert_eq!(
        b.worker.drain().await.unwrap(),
        1,
        "B takes the job once the lease expired"
    );
    assert_eq!(
        markers(&a.identity).await,
        vec!["marker-1"],
        "the draft was made exactly once"
    );
    let done = a.store.jobs_with_status(JobStatus::Done, 10).await.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].attempts, 2, "the dead replica's attempt counted");
}
