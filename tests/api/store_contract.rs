//! One story through the `Store` trait, run against SQLite and PostgreSQL on every test run (a fresh
//! database each). The PostgreSQL half fails, never skips, when the server is unreachable.

use std::sync::Arc;

use fieldbot::domain::engagement::{Motion, Person, PrepItem, RosterMember};
use fieldbot::domain::roles::Role;
use fieldbot::store::{
    BirthClaim, CardRef, ChainNext, Change, Commit, ConversationRef, Engagement, FtaAuditRecord,
    FtaFilter, FtaRequestRecord, InboundKey, InviteRecord, JobStatus, NewJob, PayloadPart, Store,
    StoreError, connect, part_marker,
};
use serde_json::json;

use crate::helpers::{Backend, TestDb};

async fn store(backend: Backend) -> (Arc<dyn Store>, TestDb) {
    let db = TestDb::new(backend).await;
    (
        connect(&db.url, 4)
            .await
            .expect("store connects and migrates"),
        db,
    )
}

/// The same story as two tests, one on a fresh store of each backend (`s` the store, `db` its database,
/// kept until the story ends).
macro_rules! both_backends {
    (#[$attr:meta] $sqlite:ident, $postgres:ident, |$s:ident, $db:ident| $story:expr) => {
        #[$attr]
        async fn $sqlite() {
            let ($s, $db) = store(Backend::Sqlite).await;
            $story;
            drop($db);
        }

        #[$attr]
        async fn $postgres() {
            let ($s, $db) = store(Backend::Postgres).await;
            $story;
            drop($db);
        }
    };
}

fn job(key: &str, ordering: Option<&str>, run_at: i64) -> NewJob {
    NewJob {
        kind: "test".into(),
        payload: json!({ "key": key }).to_string(),
        idempotency_key: key.into(),
        ordering_key: ordering.map(str::to_string),
        run_at,
        max_attempts: 3,
        part: None,
    }
}

fn reference(id: &str) -> ConversationRef {
    ConversationRef {
        conversation_id: id.into(),
        service_url: "https://smba.trafficmanager.net/emea/".into(),
        tenant_id: Some("t1".into()),
        team_id: Some("team".into()),
        ..ConversationRef::default()
    }
}

async fn activity_story(s: &dyn Store) {
    let key = InboundKey {
        channel_id: "msteams".into(),
        conversation_id: "c1".into(),
        activity_id: "a1".into(),
    };
    assert_eq!(s.activity_seen(&key).await.unwrap(), None);
    let commit = s
        .commit_activity(
            Some(&key),
            1000,
            vec![Change::TouchConversation(reference("c1"))],
            vec![job("j1", Some("c1"), 1000)],
            Some("{\"ok\":1}".into()),
        )
        .await
        .unwrap();
    assert_eq!(commit, Commit::Applied);
    assert_eq!(
        s.activity_seen(&key).await.unwrap(),
        Some(Some("{\"ok\":1}".into()))
    );
    // A re-delivery applies nothing, returns the first response, and enqueues no second job.
    let again = s
        .commit_activity(
            Some(&key),
            2000,
            vec![Change::MarkConversationDead {
                conversation_id: "c1".into(),
                reason: "x".into(),
            }],
            vec![job("j1-dup", None, 2000)],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        again,
        Commit::Duplicate {
            response: Some("{\"ok\":1}".into())
        }
    );
    assert!(s.conversation("c1").await.unwrap().unwrap().live);
    assert!(s.job_by_key("j1-dup").await.unwrap().is_none());
    assert!(s.job_by_key("j1").await.unwrap().is_some());

    // Installing welcomes only when the reference was not live; uninstall then reinstall welcomes again.
    let install = |n: &str| Change::InstallConversation {
        reference: reference("c2"),
        welcome: vec![job(n, None, 1000)],
    };
    s.commit_activity(None, 1000, vec![install("w1")], vec![], None)
        .await
        .unwrap();
    s.commit_activity(None, 1001, vec![install("w2")], vec![], None)
        .await
        .unwrap();
    assert!(s.job_by_key("w1").await.unwrap().is_some());
    assert!(
        s.job_by_key("w2").await.unwrap().is_none(),
        "already live: no second welcome"
    );
    s.mark_conversation_dead("c2", "BotNotInConversationRoster", 1100)
        .await
        .unwrap();
    let dead = s.conversation("c2").await.unwrap().unwrap();
    assert!(!dead.live);
    assert_eq!(
        dead.dead_reason.as_deref(),
        Some("BotNotInConversationRoster")
    );
    s.commit_activity(None, 1200, vec![install("w3")], vec![], None)
        .await
        .unwrap();
    assert!(s.conversation("c2").await.unwrap().unwrap().live);
    assert!(s.job_by_key("w3").await.unwrap().is_some());

    // Touch keeps the reference current without losing what it knew.
    let mut moved = reference("c2");
    moved.service_url = "https://smba.trafficmanager.net/amer/".into();
    moved.team_id = None;
    s.commit_activity(
        None,
        1300,
        vec![Change::TouchConversation(moved)],
        vec![],
        None,
    )
    .await
    .unwrap();
    let c2 = s.conversation("c2").await.unwrap().unwrap();
    assert_eq!(
        c2.reference.service_url,
        "https://smba.trafficmanager.net/amer/"
    );
    assert_eq!(c2.reference.team_id.as_deref(), Some("team"));

    assert!(s.prune_inbound(1500).await.unwrap() >= 1);
    assert_eq!(s.activity_seen(&key).await.unwrap(), None);
}

async fn job_story(s: &dyn Store) {
    assert_eq!(
        s.enqueue_jobs(
            vec![
                job("a", Some("conv"), 100),
                job("b", Some("conv"), 100),
                job("c", None, 100),
                job("later", None, 1_000_000)
            ],
            100
        )
        .await
        .unwrap(),
        4
    );
    assert_eq!(
        s.enqueue_jobs(vec![job("a", None, 100)], 100)
            .await
            .unwrap(),
        0,
        "duplicate key ignored"
    );
    assert_eq!(s.next_job_due().await.unwrap(), Some(100));

    // "b" waits behind "a" (same ordering key); "later" is not due.
    let claimed = s.claim_jobs("w1", 200, 60_200, 10).await.unwrap();
    let keys: Vec<_> = claimed.iter().map(|j| j.idempotency_key.as_str()).collect();
    assert_eq!(keys, vec!["a", "c"]);
    assert!(
        claimed
            .iter()
            .all(|j| j.attempts == 1 && j.status == JobStatus::Running)
    );
    assert!(
        s.claim_jobs("w2", 200, 60_200, 10)
            .await
            .unwrap()
            .is_empty(),
        "leased jobs are not claimed twice"
    );

    let a = &claimed[0];
    let c = &claimed[1];
    assert!(
        !s.complete_job(a.id, "w2", None, vec![], vec![], 300)
            .await
            .unwrap(),
        "only the lease holder finishes a job"
    );
    assert!(
        s.complete_job(
            a.id,
            "w1",
            Some(json!({"activityId": "x"})),
            vec![],
            vec![],
            300
        )
        .await
        .unwrap()
    );
    let done = s.job_by_key("a").await.unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Done);
    assert_eq!(done.result, Some(json!({"activityId": "x"})));

    // Now "b" may go. "c" is retried later.
    assert!(s.retry_job(c.id, "w1", 5_000, "503", 300).await.unwrap());
    let claimed = s.claim_jobs("w1", 400, 60_400, 10).await.unwrap();
    assert_eq!(
        claimed
            .iter()
            .map(|j| j.idempotency_key.as_str())
            .collect::<Vec<_>>(),
        vec!["b"]
    );
    let b = claimed[0].clone();

    // A worker that dies loses its lease: another takes the job over once the lease expires.
    let early = s.claim_jobs("w2", 60_000, 120_000, 10).await.unwrap();
    assert_eq!(
        early
            .iter()
            .map(|j| j.idempotency_key.as_str())
            .collect::<Vec<_>>(),
        vec!["c"]
    );
    let taken = s.claim_jobs("w2", 60_401, 120_401, 10).await.unwrap();
    assert!(
        taken
            .iter()
            .any(|j| j.idempotency_key == "b" && j.attempts == 2)
    );
    assert!(
        !s.complete_job(b.id, "w1", None, vec![], vec![], 60_500)
            .await
            .unwrap(),
        "the old holder lost the lease"
    );

    // Dead letters and operator requeue.
    let again = s.job_by_key("c").await.unwrap().unwrap();
    assert_eq!(again.last_error.as_deref(), Some("503"));
    let holder = again.locked_by.clone().unwrap();
    assert!(
        s.fail_job(again.id, &holder, JobStatus::Dead, "gave up", 70_000)
            .await
            .unwrap()
    );
    assert_eq!(
        s.jobs_with_status(JobStatus::Dead, 10).await.unwrap().len(),
        1
    );
    assert!(s.requeue_job(again.id, 80_000).await.unwrap());
    let requeued = s.job_by_key("c").await.unwrap().unwrap();
    assert_eq!(
        (requeued.status, requeued.attempts),
        (JobStatus::Pending, 0)
    );

    // An operator closes a held call that happened; a job not held is refused.
    let held = s.job_by_key("c").await.unwrap().unwrap();
    assert!(
        !s.close_job(held.id, 85_000, "closed: seen").await.unwrap(),
        "a pending job is not closed"
    );
    let now = 90_000;
    let claimed = s.claim_jobs("w3", now, now + 60_000, 10).await.unwrap();
    assert!(claimed.iter().any(|j| j.id == held.id));
    assert!(
        s.fail_job(held.id, "w3", JobStatus::Unconfirmed, "no answer", now)
            .await
            .unwrap()
    );
    assert!(s.close_job(held.id, now + 1, "closed: seen").await.unwrap());
    let closed = s.job_by_key("c").await.unwrap().unwrap();
    assert_eq!(
        (
            closed.status,
            closed.last_error.as_deref(),
            closed.locked_by
        ),
        (JobStatus::Done, Some("closed: seen"), None)
    );
    assert!(!s.close_job(held.id, now + 2, "again").await.unwrap());
    assert!(
        s.jobs_with_status(JobStatus::Unconfirmed, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let counts = s.job_counts().await.unwrap();
    assert!(counts.contains(&(JobStatus::Done, 2)), "{counts:?}");
    // The queue is every count but the finished history's.
    let mut queue = s.queue_counts().await.unwrap();
    let mut expected: Vec<_> = counts
        .into_iter()
        .filter(|(status, n)| *status != JobStatus::Done && *n > 0)
        .collect();
    queue.retain(|(_, n)| *n > 0);
    queue.sort_by_key(|(status, _)| status.as_str());
    expected.sort_by_key(|(status, _)| status.as_str());
    assert!(!expected.is_empty());
    assert_eq!(queue, expected);
}

fn engagement(id: i64, conversation: &str) -> Engagement {
    Engagement {
        id,
        conversation_id: conversation.into(),
        service_url: "https://smba.trafficmanager.net/emea/".into(),
        customer: "Contoso Ltd".into(),
        motion: Motion::Rfa,
        tpid: Some(12345),
        tenant: Some("contoso.onmicrosoft.com".into()),
        fm: Person {
            name: "Frida FM".into(),
            aad_object_id: Some("fm-oid".into()),
            ..Person::default()
        },
        active: true,
        created_at: 0,
        closed_at: None,
        closed_by: None,
        roster: vec![],
        prep: vec![],
    }
}

fn person(name: &str, email: &str) -> Person {
    Person {
        name: name.into(),
        email: Some(email.into()),
        ..Person::default()
    }
}

async fn engagement_story(s: &dyn Store) {
    let change =
        |c: Change| async move { s.commit_activity(None, 5000, vec![c], vec![], None).await };
    change(Change::StartEngagement(engagement(7, "19:chan")))
        .await
        .unwrap();
    // One active engagement per channel, enforced by the store itself.
    let second = change(Change::StartEngagement(engagement(8, "19:chan"))).await;
    assert!(matches!(second, Err(StoreError::Conflict(_))), "{second:?}");
    let e = s.active_engagement("19:chan").await.unwrap().unwrap();
    assert_eq!(
        (e.id, e.customer.as_str(), e.motion, e.tpid),
        (7, "Contoso Ltd", Motion::Rfa, Some(12345))
    );
    assert_eq!(e.fm.name, "Frida FM");

    let add = |role, p: Person| Change::AddRosterMember {
        engagement_id: 7,
        member: RosterMember { role, person: p },
        by: "Frida".into(),
    };
    change(add(Role::Ats, person("Ada", "ada@contoso.com")))
        .await
        .unwrap();
    change(add(Role::Tam, person("Tom", "tom@contoso.com")))
        .await
        .unwrap();
    change(add(Role::Tam, person("Tom Renamed", "TOM@contoso.com")))
        .await
        .unwrap();
    change(add(Role::Csm, person("Cy", "cy@contoso.com")))
        .await
        .unwrap();
    let e = s.engagement(7).await.unwrap().unwrap();
    assert_eq!(
        e.roster.len(),
        3,
        "the same person in the same role is one entry: {:?}",
        e.roster
    );
    assert!(
        e.roster
            .iter()
            .any(|m| m.role == Role::Tam && m.person.name == "Tom Renamed")
    );
    change(Change::RemoveRosterMember {
        engagement_id: 7,
        role: Role::Csm,
        person_key: None,
    })
    .await
    .unwrap();
    assert_eq!(s.engagement(7).await.unwrap().unwrap().roster.len(), 2);

    change(Change::SetPrepTick {
        engagement_id: 7,
        item: PrepItem::CompanyBackground,
        done: true,
        by: "Frida".into(),
    })
    .await
    .unwrap();
    let e = s.engagement(7).await.unwrap().unwrap();
    assert_eq!(e.prep.len(), 1);
    assert!(e.prep[0].done && e.prep[0].by == "Frida");

    change(Change::SaveCard(CardRef {
        key: "prep:7".into(),
        conversation_id: "19:chan".into(),
        activity_id: "m1".into(),
        service_url: "https://x/".into(),
    }))
    .await
    .unwrap();
    assert_eq!(s.card("prep:7").await.unwrap().unwrap().activity_id, "m1");

    // Invites use optimistic concurrency: a stale version changes nothing.
    let invite = InviteRecord {
        id: 99,
        engagement_id: 7,
        state: "proposed".into(),
        data: json!({"slots": []}),
        version: 1,
    };
    change(Change::SaveInvite {
        invite: invite.clone(),
        expected_version: None,
    })
    .await
    .unwrap();
    let sent = InviteRecord {
        state: "sent".into(),
        ..invite.clone()
    };
    change(Change::SaveInvite {
        invite: sent.clone(),
        expected_version: Some(1),
    })
    .await
    .unwrap();
    let stale = change(Change::SaveInvite {
        invite: sent,
        expected_version: Some(1),
    })
    .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))));
    let stored = s.invite(99).await.unwrap().unwrap();
    assert_eq!((stored.state.as_str(), stored.version), ("sent", 2));

    change(Change::RecordSyncNotes {
        engagement_id: 7,
        notes: json!({"summary": "good call"}),
        by: "Frida".into(),
    })
    .await
    .unwrap();
    assert_eq!(
        s.sync_notes(7).await.unwrap()[0].notes["summary"],
        "good call"
    );

    s.record_graph_call(
        "POST",
        "/users/x/messages",
        Some(&json!({"subject": "hi"})),
        1,
    )
    .await
    .unwrap();
    assert_eq!(
        s.graph_outbox(10).await.unwrap()[0].path,
        "/users/x/messages"
    );

    change(Change::CloseEngagement {
        id: 7,
        by: "Frida".into(),
    })
    .await
    .unwrap();
    assert!(s.active_engagement("19:chan").await.unwrap().is_none());
    let closed = s.engagement(7).await.unwrap().unwrap();
    assert!(!closed.active && closed.closed_by.as_deref() == Some("Frida"));
    // A new engagement may start once the old one is closed.
    change(Change::StartEngagement(engagement(8, "19:chan")))
        .await
        .unwrap();
    assert_eq!(s.engagements(None).await.unwrap().len(), 2);
    assert_eq!(s.engagements(Some(true)).await.unwrap().len(), 1);
}

fn audit(who: &str, action: &str, from: Option<&str>, to: &str) -> FtaAuditRecord {
    FtaAuditRecord {
        at: 1,
        who: who.into(),
        who_id: None,
        action: action.into(),
        from_status: from.map(str::to_string),
        to_status: to.into(),
        detail: None,
    }
}

async fn fta_story(s: &dyn Store) {
    let change =
        |c: Change| async move { s.commit_activity(None, 6000, vec![c], vec![], None).await };
    change(Change::StartEngagement(engagement(7, "19:chan")))
        .await
        .unwrap();
    let request = FtaRequestRecord {
        id: 0,
        request_key: "msteams/19:chan/a1".into(),
        engagement_id: 7,
        conversation_id: "19:chan".into(),
        service_url: "https://smba.trafficmanager.net/emea/".into(),
        customer: "Contoso Ltd".into(),
        requestor: person("Dana", "dana@contoso.com"),
        details: json!({"tpid": 1}),
        status: "submitted".into(),
        version: 1,
        assigned_fta: None,
        decline_reason: None,
        info_ask: None,
        created_at: 0,
        updated_at: 0,
        history: vec![],
    };
    let create = || Change::CreateFtaRequest {
        request: Box::new(request.clone()),
        audit: audit("Dana", "submit", None, "submitted"),
    };
    change(create()).await.unwrap();
    change(create()).await.unwrap();
    let stored = s
        .fta_request_by_key("msteams/19:chan/a1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        s.fta_requests(&FtaFilter::default()).await.unwrap().len(),
        1,
        "one request per submit key"
    );
    assert_eq!(
        (stored.status.as_str(), stored.version, stored.history.len()),
        ("submitted", 1, 1)
    );
    assert_eq!(stored.requestor.name, "Dana");

    // Two leads act on version 1: exactly one wins.
    let assign = |who: &str| Change::TransitionFtaRequest {
        id: stored.id,
        expected_version: 1,
        status: "assigned".into(),
        assigned_fta: Some(person("Ada Fta", "ada@ms.com")),
        decline_reason: None,
        info_ask: None,
        audit: audit(who, "assign", Some("submitted"), "assigned"),
    };
    let (a, b) = tokio::join!(change(assign("Lead One")), change(assign("Lead Two")));
    assert!(a.is_ok() != b.is_ok(), "exactly one wins: {a:?} {b:?}");
    let loser = if a.is_ok() { b } else { a };
    assert!(matches!(loser, Err(StoreError::Conflict(_))));
    let assigned = s.fta_request(stored.id).await.unwrap().unwrap();
    assert_eq!(
        (assigned.status.as_str(), assigned.version),
        ("assigned", 2)
    );
    assert_eq!(assigned.assigned_fta.unwrap().name, "Ada Fta");
    assert_eq!(
        assigned.history.len(),
        2,
        "one audit row per transition, none for the loser"
    );
    assert_eq!(assigned.history[1].action, "assign");

    assert!(
        s.fta_requests(&FtaFilter {
            engagement_id: Some(7),
            open_only: true
        })
        .await
        .unwrap()
        .is_empty()
    );
    assert_eq!(
        s.fta_requests(&FtaFilter {
            engagement_id: Some(7),
            open_only: false
        })
        .await
        .unwrap()
        .len(),
        1
    );
    assert!(
        s.fta_requests(&FtaFilter {
            engagement_id: Some(8),
            open_only: false
        })
        .await
        .unwrap()
        .is_empty()
    );
}

/// Two workers claiming at once never get the same job.
async fn concurrent_claims(s: Arc<dyn Store>) {
    let jobs: Vec<_> = (0..200).map(|i| job(&format!("p{i}"), None, 0)).collect();
    assert_eq!(s.enqueue_jobs(jobs, 0).await.unwrap(), 200);
    let mut handles = Vec::new();
    for w in 0..4 {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = s
                    .claim_jobs(&format!("w{w}"), 10, 100_000, 7)
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|j| j.id));
            }
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "a job was claimed twice");
    assert_eq!(n, 200);
}

#[tokio::test]
async fn sqlite_store_contract() {
    let (s, _db) = store(Backend::Sqlite).await;
    activity_story(s.as_ref()).await;
    assert_eq!(s.backend(), "sqlite");
    let (s, _db) = store(Backend::Sqlite).await;
    job_story(s.as_ref()).await;
    let (s, _db) = store(Backend::Sqlite).await;
    engagement_story(s.as_ref()).await;
    let (s, _db) = store(Backend::Sqlite).await;
    fta_story(s.as_ref()).await;
}

#[tokio::test]
async fn postgres_store_contract() {
    let (s, _db) = store(Backend::Postgres).await;
    activity_story(s.as_ref()).await;
    assert_eq!(s.backend(), "postgres");
    let (s, _db) = store(Backend::Postgres).await;
    job_story(s.as_ref()).await;
    let (s, _db) = store(Backend::Postgres).await;
    engagement_story(s.as_ref()).await;
    let (s, _db) = store(Backend::Postgres).await;
    fta_story(s.as_ref()).await;
}

both_backends!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    sqlite_concurrent_claims_never_overlap,
    postgres_concurrent_claims_never_overlap,
    |s, db| concurrent_claims(s).await
);

#[tokio::test]
async fn the_whole_app_runs_on_postgres() {
    let app = crate::helpers::spawn_with(crate::helpers::Options {
        backend: Backend::Postgres,
        ..Default::default()
    })
    .await;
    let activity = app.message("roles TAM");
    assert_eq!(app.post_activity(&activity).await.status(), 200);
    assert_eq!(app.post_activity(&activity).await.status(), 200);
    app.run_pending_jobs().await;
    assert_eq!(app.connector_requests().await.len(), 1);
    assert_eq!(app.store.backend(), "postgres");
}

/// Concurrent commits share group-commit batches: duplicates inside one batch are still found, and a write
/// that fails (a second active engagement in a channel) takes nothing else in its batch down with it.
async fn concurrent_commits(s: Arc<dyn Store>) {
    let mut handles = Vec::new();
    for i in 0..60 {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            // Activities a0..a29, each delivered twice; every fifth one also tries to start an engagement in
            // the same channel, which only one of them may do.
            let n = i % 30;
            let key = InboundKey {
                channel_id: "msteams".into(),
                conversation_id: "c-batch".into(),
                activity_id: format!("a{n}"),
            };
            let changes = if n % 5 == 0 {
                vec![Change::StartEngagement(engagement(1000 + i, "19:batch"))]
            } else {
                vec![Change::TouchConversation(reference("c-batch"))]
            };
            let jobs = vec![job(&format!("batch-{n}"), Some("c-batch"), 0)];
            (
                n,
                s.commit_activity(Some(&key), 10, changes, jobs, None).await,
            )
        }));
    }
    let (mut applied, mut duplicates, mut conflicts) = (Vec::new(), 0, 0);
    for h in handles {
        match h.await.unwrap() {
            (n, Ok(Commit::Applied)) => applied.push(n),
            (_, Ok(Commit::Duplicate { .. })) => duplicates += 1,
            (_, Err(StoreError::Conflict(_))) => conflicts += 1,
            (_, Err(e)) => panic!("unexpected store error: {e}"),
        }
    }
    applied.sort();
    let first_of_each = applied.clone();
    // 24 plain activities once each, exactly one engagement starter; the other starters conflict (and may
    // be retried by the webhook), their duplicates are either duplicates or conflicts.
    assert_eq!(
        applied.iter().filter(|n| *n % 5 != 0).count(),
        24,
        "{first_of_each:?}"
    );
    assert_eq!(
        applied.iter().filter(|n| *n % 5 == 0).count(),
        1,
        "{first_of_each:?}"
    );
    assert_eq!(applied.len() + duplicates + conflicts, 60);
    assert_eq!(duplicates + conflicts, 35);
    let engagements = s.engagements(Some(true)).await.unwrap();
    assert_eq!(engagements.len(), 1);
    // Exactly the applied activities' jobs exist; a conflicting activity's job went with its rollback.
    for n in 0..30 {
        let stored = s.job_by_key(&format!("batch-{n}")).await.unwrap();
        assert_eq!(stored.is_some(), applied.contains(&n), "job of a{n}");
    }
    // Nor did its de-duplication row survive: deciding it again (as the webhook does) applies it.
    for n in (0..30).filter(|n| n % 5 == 0 && !applied.contains(n)) {
        let key = InboundKey {
            channel_id: "msteams".into(),
            conversation_id: "c-batch".into(),
            activity_id: format!("a{n}"),
        };
        let again = s
            .commit_activity(
                Some(&key),
                20,
                vec![Change::TouchConversation(reference("c-batch"))],
                vec![job(&format!("batch-{n}"), Some("c-batch"), 0)],
                None,
            )
            .await
            .unwrap();
        assert_eq!(again, Commit::Applied, "a{n} decided again");
    }
}

both_backends!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    sqlite_concurrent_commits_are_isolated_in_their_batch,
    postgres_concurrent_commits_are_isolated_in_their_batch,
    |s, db| concurrent_commits(s).await
);

/// Completions and pre-send notes waiting together are merged into one statement per kind; each caller
/// still hears about its own job only, and a mark from a worker that does not hold the lease changes nothing.
async fn concurrent_marks(s: Arc<dyn Store>) {
    let jobs: Vec<NewJob> = (0..150).map(|i| job(&format!("m{i}"), None, 0)).collect();
    s.enqueue_jobs(jobs, 0).await.unwrap();
    let claimed = s.claim_jobs("w1", 10, 60_000, 200).await.unwrap();
    assert_eq!(claimed.len(), 150);
    let mut handles = Vec::new();
    for (i, claimed) in claimed.into_iter().enumerate() {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let key = claimed.idempotency_key.clone();
            let id = claimed.id;
            let answer = match i % 5 {
                // Not the lease holder.
                0 => s.complete_job(id, "w2", None, vec![], vec![], 20).await,
                1 => s.note_job_sending(id, "w2", "in flight").await,
                2 => {
                    s.note_job_sending(id, "w1", &format!("in flight {key}"))
                        .await
                }
                _ => {
                    let result = Some(json!({ "activityId": key }));
                    s.complete_job(id, "w1", result, vec![], vec![], 20).await
                }
            };
            (i, key, answer.unwrap())
        }));
    }
    for h in handles {
        let (i, key, answer) = h.await.unwrap();
        let stored = s.job_by_key(&key).await.unwrap().unwrap();
        match i % 5 {
            0 | 1 => {
                assert!(!answer, "{key}: a mark without the lease is refused");
                assert_eq!(stored.status, JobStatus::Running, "{key}");
                assert_eq!(stored.last_error, None, "{key}");
            }
            2 => {
                assert!(answer, "{key}");
                assert_eq!(stored.status, JobStatus::Running, "{key}");
                assert_eq!(
                    stored.last_error.as_deref(),
                    Some(format!("in flight {key}").as_str())
                );
            }
            _ => {
                assert!(answer, "{key}");
                assert_eq!(stored.status, JobStatus::Done, "{key}");
                assert_eq!(stored.result, Some(json!({ "activityId": key })), "{key}");
                assert_eq!(stored.locked_by, None, "{key}");
            }
        }
    }
}

both_backends!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    sqlite_concurrent_marks_each_answer_for_their_own_job,
    postgres_concurrent_marks_each_answer_for_their_own_job,
    |s, db| concurrent_marks(s).await
);

/// Runs `sql` on the store's database behind its back (as an older binary or an operator would) and returns
/// the first column of its first row as a number, if it has one.
async fn raw_sql(url: &str, sql: &'static str) -> i64 {
    use sqlx::Connection;
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        let row: Option<(i64,)> = sqlx::query_as(sql).fetch_optional(&mut conn).await.unwrap();
        row.map_or(0, |r| r.0)
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        let row: Option<(i64,)> = sqlx::query_as(sql).fetch_optional(&mut conn).await.unwrap();
        row.map_or(0, |r| r.0)
    }
}

/// A job queued by a binary from before migration 0006 has its payload in `jobs.payload`; it still runs
/// with it after the upgrade, beside new jobs whose payloads live in `job_payloads`.
async fn payloads_old_and_new(s: Arc<dyn Store>, url: &str) {
    const OLD_ROW: &str = "INSERT INTO jobs (kind, payload, idempotency_key, ordering_key, status, \
         attempts, max_attempts, run_at, created_at, updated_at) \
         VALUES ('test', '{\"key\":\"old\"}', 'old', NULL, 'pending', 0, 3, 0, 0, 0)";
    raw_sql(url, OLD_ROW).await;
    s.enqueue_jobs(vec![job("new", None, 0)], 0).await.unwrap();
    let claimed = s.claim_jobs("w1", 10, 60_000, 10).await.unwrap();
    let payloads: Vec<(String, String)> = claimed
        .iter()
        .map(|j| (j.idempotency_key.clone(), j.payload.clone()))
        .collect();
    assert_eq!(
        payloads,
        [
            ("old".to_string(), json!({ "key": "old" }).to_string()),
            ("new".to_string(), json!({ "key": "new" }).to_string()),
        ]
    );
    let new = s.job_by_key("new").await.unwrap().unwrap();
    assert_eq!(new.payload, json!({ "key": "new" }).to_string());
}

both_backends!(
    #[tokio::test]
    sqlite_payloads_from_before_and_after_the_split_are_both_read,
    postgres_payloads_from_before_and_after_the_split_are_both_read,
    |s, db| payloads_old_and_new(s, &db.url).await
);

/// A throttled retry gives back the attempt its claim counted, while the job is young enough.
async fn throttled_retry_story(s: &dyn Store) {
    s.enqueue_jobs(vec![job("t", None, 100)], 100)
        .await
        .unwrap();
    let claimed = s.claim_jobs("w1", 200, 60_200, 10).await.unwrap();
    assert_eq!(claimed[0].attempts, 1);
    let id = claimed[0].id;
    assert!(
        !s.retry_throttled_job(id, "w2", 5_000, "429", 300, 0)
            .await
            .unwrap(),
        "only the lease holder reschedules"
    );
    assert!(
        s.retry_throttled_job(id, "w1", 5_000, "429", 300, 0)
            .await
            .unwrap()
    );
    let job = s.job_by_key("t").await.unwrap().unwrap();
    assert_eq!(
        (
            job.status,
            job.attempts,
            job.run_at,
            job.last_error.as_deref()
        ),
        (JobStatus::Pending, 0, 5_000, Some("429"))
    );
    assert!(
        s.claim_jobs("w1", 4_999, 64_999, 10)
            .await
            .unwrap()
            .is_empty(),
        "not before Retry-After"
    );

    // Queued (at 100) before the cut-off: throttled too long, so this one counts.
    let claimed = s.claim_jobs("w1", 5_000, 65_000, 10).await.unwrap();
    assert_eq!(claimed[0].attempts, 1);
    assert!(
        s.retry_throttled_job(id, "w1", 9_000, "429", 5_100, 101)
            .await
            .unwrap()
    );
    let job = s.job_by_key("t").await.unwrap().unwrap();
    assert_eq!((job.status, job.attempts), (JobStatus::Pending, 1));
}

both_backends!(
    #[tokio::test]
    sqlite_throttled_retries_give_the_attempt_back,
    postgres_throttled_retries_give_the_attempt_back,
    |s, db| throttled_retry_story(s.as_ref()).await
);

fn inbound(conversation: &str, activity: &str) -> InboundKey {
    InboundKey {
        channel_id: "msteams".into(),
        conversation_id: conversation.into(),
        activity_id: activity.into(),
    }
}

fn birth_claim(worker: &str, keys: &[&str]) -> BirthClaim {
    BirthClaim {
        worker: worker.into(),
        lease_until: 60_000,
        keys: keys.iter().map(|k| k.to_string()).collect(),
        note: None,
    }
}

/// A turn in `conversation` that queues one reply keyed `key`, which the worker "w1" may claim at birth.
async fn reply_turn(
    s: &dyn Store,
    conversation: &str,
    activity: &str,
    key: &str,
    now: i64,
) -> fieldbot::store::TurnCommit {
    s.commit_turn(
        Some(&inbound(conversation, activity)),
        now,
        vec![Change::TouchConversation(reference(conversation))],
        vec![job(key, Some(&format!("conv:{conversation}")), 1000)],
        None,
        Some(birth_claim("w1", &[key])),
    )
    .await
    .unwrap()
}

/// A reply claimed in the commit that queues it: only while it heads its conversation's chain, only for a
/// new activity, and exactly as the worker's claim would have left it.
async fn born_claims(s: Arc<dyn Store>) {
    let reply =
        |key: &str, conversation: &str| job(key, Some(&format!("conv:{conversation}")), 1000);
    let turn = s
        .commit_turn(
            Some(&inbound("c1", "a1")),
            1000,
            vec![Change::TouchConversation(reference("c1"))],
            vec![reply("r1", "c1"), job("other", None, 1000)],
            None,
            Some(birth_claim("w1", &["r1"])),
        )
        .await
        .unwrap();
    assert_eq!(turn.commit, Commit::Applied);
    let stored = s.job_by_key("r1").await.unwrap().unwrap();
    assert_eq!(
        turn.claimed,
        vec![stored.clone()],
        "what the commit returns is what it stored"
    );
    assert_eq!(stored.status, JobStatus::Running);
    assert_eq!(stored.attempts, 1);
    assert_eq!(stored.locked_by.as_deref(), Some("w1"));
    assert_eq!(
        stored.run_at, 60_000,
        "a running job is due again when its lease ends"
    );
    assert_eq!(stored.last_error, None);
    assert_eq!(stored.payload, json!({ "key": "r1" }).to_string());
    let claimed = s.claim_jobs("w2", 1000, 61_000, 10).await.unwrap();
    let keys: Vec<_> = claimed.iter().map(|j| j.idempotency_key.as_str()).collect();
    assert_eq!(
        keys,
        vec!["other"],
        "a job outside the claim's keys is queued as usual"
    );

    // The next reply of the conversation waits behind the running one.
    let second = reply_turn(&*s, "c1", "a2", "r2", 1100).await;
    assert_eq!(second.commit, Commit::Applied);
    assert!(second.claimed.is_empty());
    let r2 = s.job_by_key("r2").await.unwrap().unwrap();
    assert_eq!(r2.status, JobStatus::Pending);
    assert_eq!(r2.last_error, None);

    // A re-delivery commits nothing, so it claims nothing.
    let again = reply_turn(&*s, "c1", "a1", "r1-again", 1200).await;
    assert_eq!(again.commit, Commit::Duplicate { response: None });
    assert!(again.claimed.is_empty());

    // Turns of one conversation committed side by side (in one batch, mostly): only the oldest job of the
    // chain is claimed. Another conversation's reply beside them is claimed too.
    let mut turns = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        let conversation = if i == 7 { "c3" } else { "c2" };
        turns.push(tokio::spawn(async move {
            let key = format!("{conversation}-r{i}");
            reply_turn(&*s, conversation, &format!("b{i}"), &key, 1300).await
        }));
    }
    let mut claimed = Vec::new();
    for t in turns {
        claimed.extend(t.await.unwrap().claimed);
    }
    let (c2, c3): (Vec<_>, Vec<_>) = claimed
        .iter()
        .partition(|j| j.ordering_key.as_deref() == Some("conv:c2"));
    assert_eq!(c2.len(), 1, "one head per chain: {claimed:?}");
    assert_eq!(c3.len(), 1, "{claimed:?}");
    for i in 0..7 {
        let other = s.job_by_key(&format!("c2-r{i}")).await.unwrap().unwrap();
        assert!(
            other.id >= c2[0].id,
            "the chain's oldest job is the one claimed"
        );
    }

    // Once the running reply is done, the one behind it is claimed as usual.
    assert!(
        s.complete_job(stored.id, "w1", None, vec![], vec![], 1400)
            .await
            .unwrap()
    );
    let claimed = s.claim_jobs("w2", 1500, 61_500, 10).await.unwrap();
    assert!(
        claimed.iter().any(|j| j.idempotency_key == "r2"),
        "{claimed:?}"
    );

    // A turn with changes beyond touching its conversation commits as before and claims nothing.
    let card = CardRef {
        key: "card-c4".into(),
        conversation_id: "c4".into(),
        activity_id: "1".into(),
        service_url: "https://smba.trafficmanager.net/emea/".into(),
    };
    let other = s
        .commit_turn(
            Some(&inbound("c4", "d1")),
            1600,
            vec![
                Change::TouchConversation(reference("c4")),
                Change::SaveCard(card),
            ],
            vec![reply("r4", "c4")],
            None,
            Some(birth_claim("w1", &["r4"])),
        )
        .await
        .unwrap();
    assert_eq!(other.commit, Commit::Applied);
    assert!(other.claimed.is_empty());
    assert_eq!(
        s.job_by_key("r4").await.unwrap().unwrap().status,
        JobStatus::Pending
    );
}

both_backends!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    sqlite_replies_are_claimed_in_their_turns_commit_one_per_conversation,
    postgres_replies_are_claimed_in_their_turns_commit_one_per_conversation,
    |s, db| born_claims(s).await
);

/// A claim in passing that carries the reply's note writes it on the job it claims, at birth and on take-over
/// alike, and returns the job as stored; a claim without one leaves the job's earlier text.
async fn claims_in_passing_write_their_note(s: Arc<dyn Store>) {
    let mut claim = birth_claim("w1", &["r1"]);
    claim.note = Some("in flight: attempt 1 sent connector_send (born)".into());
    let born = s
        .commit_turn(
            Some(&inbound("c1", "a1")),
            1000,
            vec![Change::TouchConversation(reference("c1"))],
            vec![job("r1", Some("conv:c1"), 1000)],
            None,
            Some(claim),
        )
        .await
        .unwrap();
    let stored = s.job_by_key("r1").await.unwrap().unwrap();
    assert_eq!(born.claimed, vec![stored.clone()]);
    assert_eq!(
        stored.last_error.as_deref(),
        Some("in flight: attempt 1 sent connector_send (born)")
    );

    reply_turn(&*s, "c1", "a2", "r2", 1100).await;
    let mut next = chain_next("conv:c1", "test");
    next.note = Some("in flight: attempt 1 sent connector_send (taken over)".into());
    let (applied, taken) = s
        .complete_and_claim_next(stored.id, "w1", None, 1200, next)
        .await
        .unwrap();
    assert!(applied);
    let taken = taken.expect("the chain's next reply is taken over");
    assert_eq!(Some(&taken), s.job_by_key("r2").await.unwrap().as_ref());
    assert_eq!(
        taken.last_error.as_deref(),
        Some("in flight: attempt 1 sent connector_send (taken over)")
    );
}

both_backends!(
    #[tokio::test]
    sqlite_claims_in_passing_write_their_note,
    postgres_claims_in_passing_write_their_note,
    |s, db| claims_in_passing_write_their_note(s).await
);

fn chain_next(chain: &str, kind: &str) -> ChainNext {
    ChainNext {
        ordering_key: chain.into(),
        kind: kind.into(),
        lease_until: 90_000,
        note: None,
    }
}

/// A completion that takes over the next job of its chain: only the chain's oldest live job, only when it
/// is due, fresh and of the kind asked for, and only for the worker whose completion applied.
async fn chain_take_over(s: Arc<dyn Store>) {
    let mut later = job("k-later", Some("k"), 1_000_000);
    later.kind = "test".into();
    let mut other_kind = job("m2", Some("m"), 100);
    other_kind.kind = "other".into();
    s.enqueue_jobs(
        vec![
            job("k1", Some("k"), 100),
            job("k2", Some("k"), 100),
            job("k3", Some("k"), 100),
            job("m1", Some("m"), 100),
            other_kind,
            job("n1", Some("n"), 100),
            later,
        ],
        100,
    )
    .await
    .unwrap();
    let claimed = s.claim_jobs("w1", 200, 60_200, 10).await.unwrap();
    let id = |key: &str| {
        claimed
            .iter()
            .find(|j| j.idempotency_key == key)
            .unwrap()
            .id
    };
    assert_eq!(claimed.len(), 3, "one head per chain: {claimed:?}");

    // Not the lease holder: nothing applies, nothing is taken over.
    let (applied, next) = s
        .complete_and_claim_next(id("k1"), "w2", None, 300, chain_next("k", "test"))
        .await
        .unwrap();
    assert!(!applied);
    assert_eq!(next, None);
    assert_eq!(
        s.job_by_key("k2").await.unwrap().unwrap().status,
        JobStatus::Pending
    );

    let (applied, next) = s
        .complete_and_claim_next(
            id("k1"),
            "w1",
            Some(json!({ "activityId": "1" })),
            300,
            chain_next("k", "test"),
        )
        .await
        .unwrap();
    assert!(applied);
    let next = next.expect("the chain's next job is taken over");
    assert_eq!(next.idempotency_key, "k2");
    assert_eq!(Some(&next), s.job_by_key("k2").await.unwrap().as_ref());
    assert_eq!(next.status, JobStatus::Running);
    assert_eq!(next.attempts, 1);
    assert_eq!(next.locked_by.as_deref(), Some("w1"));
    assert_eq!(next.run_at, 90_000);
    assert_eq!(next.last_error, None);
    assert_eq!(next.payload, json!({ "key": "k2" }).to_string());
    let k1 = s.job_by_key("k1").await.unwrap().unwrap();
    assert_eq!(k1.status, JobStatus::Done);
    assert_eq!(k1.result, Some(json!({ "activityId": "1" })));
    assert_eq!(
        s.job_by_key("k3").await.unwrap().unwrap().status,
        JobStatus::Pending,
        "one job of a chain runs at a time"
    );
    assert!(
        s.claim_jobs("w2", 400, 60_400, 10)
            .await
            .unwrap()
            .is_empty(),
        "a job taken over is leased like a claimed one"
    );

    // The next job is of another kind: the chain is freed and its job waits for a claim.
    let (applied, next) = s
        .complete_and_claim_next(id("m1"), "w1", None, 500, chain_next("m", "test"))
        .await
        .unwrap();
    assert!(applied);
    assert_eq!(next, None);

    // A job taken over that fails is retried as the chain's head; its completion takes over the next one.
    assert!(
        s.retry_job(next_id(&s, "k2").await, "w1", 600, "503", 550)
            .await
            .unwrap()
    );
    let k2 = s.claim_jobs("w1", 600, 60_600, 10).await.unwrap();
    assert_eq!(
        k2.iter()
            .map(|j| j.idempotency_key.as_str())
            .collect::<Vec<_>>(),
        vec!["k2", "m2"]
    );
    let (applied, next) = s
        .complete_and_claim_next(k2[0].id, "w1", None, 700, chain_next("k", "test"))
        .await
        .unwrap();
    assert!(applied);
    assert_eq!(next.map(|j| j.idempotency_key), Some("k3".to_owned()));

    // The chain's last due job leaves nothing to take over; one not due yet is not taken early.
    let k3 = s.job_by_key("k3").await.unwrap().unwrap();
    let (applied, next) = s
        .complete_and_claim_next(k3.id, "w1", None, 800, chain_next("k", "test"))
        .await
        .unwrap();
    assert!(applied);
    assert_eq!(next, None);
    assert_eq!(
        s.job_by_key("k-later").await.unwrap().unwrap().status,
        JobStatus::Pending
    );
    let (applied, next) = s
        .complete_and_claim_next(id("n1"), "w1", None, 900, chain_next("n", "test"))
        .await
        .unwrap();
    assert!(applied);
    assert_eq!(next, None, "an empty chain");
}

async fn next_id(s: &Arc<dyn Store>, key: &str) -> i64 {
    s.job_by_key(key).await.unwrap().unwrap().id
}

both_backends!(
    #[tokio::test]
    sqlite_a_completion_takes_over_the_next_job_of_its_chain,
    postgres_a_completion_takes_over_the_next_job_of_its_chain,
    |s, db| chain_take_over(s).await
);

/// Jobs whose payloads share a part (a card) store it once, on both write paths (a turn's merged commit
/// and a single enqueue), and read back whole wherever a job is read: a claim, a birth claim, a take-over,
/// a lookup.
async fn shared_parts(s: Arc<dyn Store>, url: &str) {
    let card = json!({ "type": "message", "text": "card \"{}\" ".repeat(300) }).to_string();
    let part = PayloadPart {
        digest: "d1".into(),
        text: card.as_str().into(),
    };
    let with_part = |key: &str, ordering: Option<&str>| {
        let mut j = job(key, ordering, 100);
        j.payload = format!("{{\"key\":\"{key}\",\"activity\":{}}}", part_marker("d1"));
        j.part = Some(part.clone());
        j
    };
    let whole = |key: &str| format!("{{\"key\":\"{key}\",\"activity\":{card}}}");
    let turn = s
        .commit_turn(
            Some(&inbound("p", "a1")),
            100,
            vec![Change::TouchConversation(reference("p"))],
            vec![
                with_part("p1", Some("conv:p")),
                with_part("p2", Some("conv:p")),
            ],
            None,
            Some(birth_claim("w1", &["p1"])),
        )
        .await
        .unwrap();
    assert_eq!(turn.claimed.len(), 1);
    assert_eq!(turn.claimed[0].payload, whole("p1"), "a birth claim");
    s.enqueue_jobs(vec![with_part("p3", None)], 100)
        .await
        .unwrap();
    let claimed = s.claim_jobs("w1", 200, 60_200, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].payload, whole("p3"), "a claim");
    let (_, next) = s
        .complete_and_claim_next(
            turn.claimed[0].id,
            "w1",
            None,
            300,
            chain_next("conv:p", "test"),
        )
        .await
        .unwrap();
    assert_eq!(next.map(|j| j.payload), Some(whole("p2")), "a take-over");
    assert_eq!(
        s.job_by_key("p1").await.unwrap().unwrap().payload,
        whole("p1")
    );

    let parts = raw_sql(url, "SELECT COUNT(*) FROM payload_parts").await;
    assert_eq!(parts, 1, "three jobs, one stored card");
}

both_backends!(
    #[tokio::test]
    sqlite_a_card_shared_by_jobs_is_stored_once_and_read_whole,
    postgres_a_card_shared_by_jobs_is_stored_once_and_read_whole,
    |s, db| shared_parts(s, &db.url).await
);
