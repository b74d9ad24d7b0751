//! The life of a Request FastTrack Architect request through `/api/messages`, against the Connector and
//! Graph fakes: the form and its rules, the status thread updated in place, lead-only actions, stale and
//! concurrent clicks, withdraw, the emails (once each) and the FTA joining the roster.

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::helpers::*;

const DANA: &str = "5f0c6c0e-1d2b-4c55-9a35-0d5a1b2c3d4e";
const LEAD1: &str = "11111111-aaaa-4000-8000-000000000001";
const LEAD2: &str = "11111111-aaaa-4000-8000-000000000002";
const SENDER: &str = "fieldbot@contoso.com";
const THREAD: &str = "19:c0ffee11aa@thread.tacv2;messageid=555";

fn encoded(id: &str) -> String {
    id.replace(':', "%3A")
        .replace('@', "%40")
        .replace(';', "%3B")
        .replace('=', "%3D")
}

async fn fta_app() -> TestApp {
    let app = spawn_with(Options {
        tweak: Some(Box::new(|s| {
            s.fasttrack.leads = vec![LEAD1.into(), LEAD2.into()];
            s.fasttrack.mail_sender = SENDER.into();
        })),
        ..Options::default()
    })
    .await;
    // The thread the status card starts, and the leads as team members.
    Mock::given(method("POST"))
        .and(path("/v3/conversations"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({ "id": THREAD, "activityId": "555" })),
        )
        .mount(&app.connector)
        .await;
    for (oid, mri) in [(LEAD1, "29:lead1"), (LEAD2, "29:lead2")] {
        Mock::given(method("GET"))
            .and(path(format!(
                "/v3/conversations/{}/members/{oid}",
                encoded(CHANNEL)
            )))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({ "id": mri, "name": "Lead", "aadObjectId": oid })),
            )
            .mount(&app.connector)
            .await;
    }
    for (id, mail, name) in [
        (DANA, "dana@contoso.com", "Dana Lee"),
        (LEAD1, "lead1@contoso.com", "Lead One"),
        (LEAD2, "lead2@contoso.com", "Lead Two"),
        ("ada@contoso.com", "ada@contoso.com", "Ada Fta"),
    ] {
        Mock::given(method("GET"))
            .and(path(format!("/graph/users/{}", id.replace('@', "%40"))))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": format!("oid-{name}"), "displayName": name, "mail": mail, "userPrincipalName": mail })))
            .mount(&app.identity)
            .await;
    }
    Mock::given(method("POST"))
        .and(path(format!(
            "/graph/users/{}/sendMail",
            SENDER.replace('@', "%40")
        )))
        .respond_with(ResponseTemplate::new(202))
        .mount(&app.identity)
        .await;
    app.say("engagement start \"Contoso Ltd\" motion:rfa tpid:12345")
        .await;
    app
}

fn form() -> Value {
    json!({
        "tpid": "12345", "tenant": "contoso.onmicrosoft.com", "partner": "none", "users": "5000",
        "type": "ecif", "stage": "60", "event": "Signed an EA with Office 365 E5 in October",
        "segment": "enterprise", "entitlements": "o365,ems", "notes": "Focus on Exchange",
    })
}

/// A click by someone: Dana by default, or a lead.
fn click(app: &TestApp, who: Option<(&str, &str, &str)>, verb: &str, data: Value) -> Value {
    let mut a = app.card_action(verb, data);
    if let Some((oid, mri, name)) = who {
        a["from"] = json!({ "id": mri, "name": name, "aadObjectId": oid });
    }
    a
}

fn lead1() -> Option<(&'static str, &'static str, &'static str)> {
    Some((LEAD1, "29:lead1", "Lead One"))
}

fn lead2() -> Option<(&'static str, &'static str, &'static str)> {
    Some((LEAD2, "29:lead2", "Lead Two"))
}

async fn mails(app: &TestApp) -> Vec<Value> {
    app.graph_requests()
        .await
        .into_iter()
        .filter(|r| r.url.path().ends_with("/sendMail"))
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

async fn submit(app: &TestApp) -> i64 {
    let engagement = app.store.active_engagement(CHANNEL).await.unwrap().unwrap();
    let mut data = form();
    data["engagementId"] = json!(engagement.id);
    let response: Value = app
        .post_activity(&click(app, None, "fta.submit", data))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(response["statusCode"], 200, "{response}");
    app.run_pending_jobs().await;
    let requests = app.store.fta_requests(&Default::default()).await.unwrap();
    assert_eq!(requests.len(), 1);
    requests[0].id
}

#[tokio::test]
async fn the_life_of_a_request() {
    let app = fta_app().await;
    let form_card = cards_in(&app.say("fta request").await[0]).remove(0);
    assert_valid_card(&form_card);
    let engagement = app.store.active_engagement(CHANNEL).await.unwrap().unwrap();

    // A refusal quotes the rule and keeps what was typed.
    let mut low = form();
    low["stage"] = json!("30");
    low["engagementId"] = json!(engagement.id);
    let refused: Value = app
        .post_activity(&click(&app, None, "fta.submit", low))
        .await
        .json()
        .await
        .unwrap();
    let refused_text = refused["value"].to_string();
    assert!(
        refused_text.contains("at least 40% in the sales stage; this request says 30%"),
        "{refused_text}"
    );
    assert!(
        refused_text.contains("Signed an EA with Office 365 E5"),
        "the form keeps the typed values"
    );
    assert!(
        app.store
            .fta_requests(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );

    let id = submit(&app).await;
    // The status card starts a new thread in the engagement's channel, shown to leads and requestor.
    let threads: Vec<Value> = app
        .connector_requests()
        .await
        .into_iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/v3/conversations")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(threads.len(), 1);
    assert_eq!(threads[0]["channelData"]["channel"]["id"], CHANNEL);
    let status = cards_in(&threads[0]["activity"]).remove(0);
    assert_valid_card(&status);
    let user_ids: Vec<&str> = status["refresh"]["userIds"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        user_ids.contains(&"29:lead1") && user_ids.contains(&"29:dana"),
        "{user_ids:?}"
    );
    // The key output: the requestor is emailed that the request is complete; the leads are told.
    let sent = mails(&app).await;
    assert_eq!(sent.len(), 2, "{sent:#?}");
    let to = |m: &Value| {
        m["message"]["toRecipients"][0]["emailAddress"]["address"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(sent.iter().any(|m| {
        to(m) == "dana@contoso.com"
            && m["message"]["subject"]
                .as_str()
                .unwrap()
                .contains(&format!("#{id}"))
    }));
    assert!(
        sent.iter()
            .any(|m| m["message"]["toRecipients"].as_array().unwrap().len() == 2),
        "both leads"
    );
    for m in &sent {
        assert_graph_body("/users/{user-id}/sendMail", m);
    }

    // Dana is not a lead: her Assign changes nothing.
    let not_lead: Value = app
        .post_activity(&click(
            &app,
            None,
            "fta.assign",
            json!({ "requestId": id, "version": 1, "fta": "ada@contoso.com" }),
        ))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        not_lead["value"]
            .as_str()
            .unwrap()
            .contains("Only the FTA alignment or regional leads"),
        "{not_lead}"
    );

    // A lead opens the card: it moves to in review and the lead sees the lead buttons.
    let lead_view: Value = app
        .post_activity(&click(
            &app,
            lead1(),
            "fta.view",
            json!({ "requestId": id }),
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_valid_card(&lead_view["value"]);
    assert!(
        lead_view["value"].to_string().contains("fta.assign"),
        "lead buttons"
    );
    app.run_pending_jobs().await;
    assert_eq!(
        app.store.fta_request(id).await.unwrap().unwrap().status,
        "in_review"
    );

    // Declining needs a reason.
    let no_reason: Value = app
        .post_activity(&click(
            &app,
            lead1(),
            "fta.decline",
            json!({ "requestId": id, "version": 2, "reason": "  " }),
        ))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        no_reason["value"]
            .as_str()
            .unwrap()
            .contains("reason is required"),
        "{no_reason}"
    );

    // The lead assigns Ada: the card is updated in place for everyone, Dana is emailed, Ada joins the roster.
    let assigned: Value = app
        .post_activity(&click(
            &app,
            lead1(),
            "fta.assign",
            json!({ "requestId": id, "version": 2, "fta": "ada@contoso.com" }),
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(assigned["statusCode"], 200);
    app.run_pending_jobs().await;
    let request = app.store.fta_request(id).await.unwrap().unwrap();
    assert_eq!(request.status, "assigned");
    assert_eq!(
        request
            .history
            .iter()
            .map(|h| h.action.as_str())
            .collect::<Vec<_>>(),
        ["submit", "start_review", "assign"]
    );
    let puts: Vec<Value> = app
        .connector_requests()
        .await
        .into_iter()
        .filter(|r| {
            r.method.as_str() == "PUT"
                && r.url.path() == format!("/v3/conversations/{}/activities/555", encoded(THREAD))
        })
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert!(!puts.is_empty(), "the status card is updated in place");
    let last = cards_in(puts.last().unwrap()).remove(0);
    assert_valid_card(&last);
    assert!(last.to_string().contains("Assigned"), "{last}");
    assert!(
        last.get("refresh").is_none(),
        "a closed request has no lead view any more"
    );
    let roster = app
        .store
        .active_engagement(CHANNEL)
        .await
        .unwrap()
        .unwrap()
        .roster;
    assert!(
        roster
            .iter()
            .any(|m| m.role == fieldbot::domain::roles::Role::Fta
                && m.person.email.as_deref() == Some("ada@contoso.com"))
    );

    // One email per change: submitted, in review, assigned (and one to the leads).
    let requestor_mails = mails(&app)
        .await
        .iter()
        .filter(|m| to(m) == "dana@contoso.com")
        .count();
    assert_eq!(requestor_mails, 3);

    // A stale click by the other lead changes nothing and says who did what.
    let stale: Value = app
        .post_activity(&click(
            &app,
            lead2(),
            "fta.decline",
            json!({ "requestId": id, "version": 2, "reason": "No capacity" }),
        ))
        .await
        .json()
        .await
        .unwrap();
    let stale = stale["value"].as_str().unwrap();
    assert!(
        stale.contains("assigned") && stale.contains("Lead One"),
        "{stale}"
    );
    app.run_pending_jobs().await;
    assert_eq!(
        app.store.fta_request(id).await.unwrap().unwrap().version,
        request.version
    );
    assert_eq!(
        mails(&app).await.len(),
        4,
        "no email for a click that changed nothing"
    );
    assert_all_sent_cards_valid(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_leads_at_once_exactly_one_wins() {
    let app = fta_app().await;
    let id = submit(&app).await;
    let assign = click(
        &app,
        lead1(),
        "fta.assign",
        json!({ "requestId": id, "version": 1, "fta": "ada@contoso.com" }),
    );
    let decline = click(
        &app,
        lead2(),
        "fta.decline",
        json!({ "requestId": id, "version": 1, "reason": "No capacity" }),
    );
    let (a, b) = tokio::join!(app.post_activity(&assign), app.post_activity(&decline));
    assert_eq!(
        (a.status(), b.status()),
        (reqwest::StatusCode::OK, reqwest::StatusCode::OK)
    );
    let request = app.store.fta_request(id).await.unwrap().unwrap();
    assert!(
        matches!(request.status.as_str(), "assigned" | "declined"),
        "{}",
        request.status
    );
    assert_eq!(
        request.history.len(),
        2,
        "one transition won: {:?}",
        request.history
    );
}

#[tokio::test]
async fn the_requestor_withdraws_and_nobody_else_can() {
    let app = fta_app().await;
    let id = submit(&app).await;
    let by_lead: Value = app
        .post_activity(&click(
            &app,
            lead1(),
            "fta.withdraw",
            json!({ "requestId": id, "version": 1 }),
        ))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        by_lead["value"].as_str().unwrap().contains("Only Dana Lee"),
        "{by_lead}"
    );
    let withdrawn: Value = app
        .post_activity(&click(
            &app,
            None,
            "fta.withdraw",
            json!({ "requestId": id, "version": 1 }),
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(withdrawn["statusCode"], 200);
    assert_eq!(
        app.store.fta_request(id).await.unwrap().unwrap().status,
        "withdrawn"
    );
    let late: Value = app
        .post_activity(&click(
            &app,
            lead1(),
            "fta.assign",
            json!({ "requestId": id, "version": 2, "fta": "ada@contoso.com" }),
        ))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        late["value"].as_str().unwrap().contains("withdrawn"),
        "{late}"
    );
}

#[tokio::test]
async fn inline_requests_and_lead_commands_in_chat() {
    let app = fta_app().await;
    let missing = text_of(&app.say("fta request tpid:12345").await[0]);
    assert!(
        missing.contains("tenant:") && missing.contains("Usage"),
        "{missing}"
    );
    let rule = text_of(
        &app.say("fta request tpid:12345 tenant:contoso.onmicrosoft.com partner:none users:500 type:migration stage:20 event:\"Committed to EMS\" segment:enterprise entitlements:m365")
            .await[0],
    );
    assert!(rule.contains("this request says 20%"), "{rule}");
    let ok = text_of(
        &app.say("fta request tpid:12345 tenant:contoso.onmicrosoft.com partner:\"Fabrikam Partners\" users:500 type:migration stage:55 event:\"Committed to EMS\" segment:smc-c entitlements:ems")
            .await[0],
    );
    assert!(ok.contains("filed"), "{ok}");
    let id = app.store.fta_requests(&Default::default()).await.unwrap()[0].id;

    let list = text_of(&app.say("fta").await[0]);
    assert!(list.contains("Contoso Ltd"), "{list}");
    let open = text_of(&app.say("fta list open").await[0]);
    assert!(
        open.contains(&format!("#{id}")) || open.contains(&id.to_string()),
        "{open}"
    );
    let status = text_of(&app.say(&format!("fta status {id}")).await[0]);
    assert!(status.contains("Committed to EMS"), "{status}");

    // Dana is no lead: `fta decline` is refused.
    let refused = text_of(
        &app.say(&format!("fta decline {id} reason:\"not now\""))
            .await[0],
    );
    assert!(
        refused.contains("Only the FTA alignment or regional leads"),
        "{refused}"
    );
    let mut decline = app.message(&format!(
        "fta decline {id} reason:\"Out of FastTrack scope\""
    ));
    decline["from"] = json!({ "id": "29:lead1", "name": "Lead One", "aadObjectId": LEAD1 });
    app.post_activity(&decline).await;
    app.run_pending_jobs().await;
    let request = app.store.fta_request(id).await.unwrap().unwrap();
    assert_eq!(request.status, "declined");
    assert_eq!(
        request.decline_reason.as_deref(),
        Some("Out of FastTrack scope")
    );
}

#[tokio::test]
async fn group_leads_and_the_leads_channel() {
    const LEADS_CHANNEL: &str = "19:leads99@thread.tacv2";
    const GROUP: &str = "22222222-bbbb-4000-8000-000000000000";
    const GROUP_LEAD: &str = "33333333-cccc-4000-8000-000000000003";
    let app = spawn_with(Options {
        tweak: Some(Box::new(|s| {
            s.fasttrack.lead_groups = vec![GROUP.into()];
            s.fasttrack.leads_channel = LEADS_CHANNEL.into();
            s.fasttrack.mail_sender = SENDER.into();
        })),
        ..Options::default()
    })
    .await;
    Mock::given(method("POST"))
        .and(path("/v3/conversations"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({ "id": THREAD, "activityId": "555" })),
        )
        .mount(&app.connector)
        .await;
    Mock::given(method("POST"))
        .and(path(format!(
            "/graph/users/{}/sendMail",
            SENDER.replace('@', "%40")
        )))
        .respond_with(ResponseTemplate::new(202))
        .mount(&app.identity)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/graph/users/{DANA}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({ "id": DANA, "displayName": "Dana Lee", "mail": "dana@contoso.com" }),
        ))
        .mount(&app.identity)
        .await;
    // Graph says who is in the leads group.
    Mock::given(method("POST"))
        .and(path(format!("/graph/users/{GROUP_LEAD}/checkMemberGroups")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "value": [GROUP] })))
        .mount(&app.identity)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/graph/users/{DANA}/checkMemberGroups")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "value": [] })))
        .mount(&app.identity)
        .await;
    // The bot is installed in the leads' team.
    let mut install = app.message("");
    install["type"] = json!("installationUpdate");
    install["action"] = json!("add");
    install["conversation"]["id"] = json!(LEADS_CHANNEL);
    install["channelData"] =
        json!({ "team": { "id": LEADS_CHANNEL, "name": "FTA leads" }, "tenant": { "id": TENANT } });
    app.post_activity(&install).await;
    app.say("engagement start \"Contoso Ltd\" motion:rfa").await;
    let id = submit(&app).await;

    let notices: Vec<Value> = app
        .connector_requests()
        .await
        .into_iter()
        .filter(|r| {
            r.method.as_str() == "POST"
                && r.url.path()
                    == format!("/v3/conversations/{}/activities", encoded(LEADS_CHANNEL))
        })
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let notice = notices
        .iter()
        .map(text_of)
        .find(|t| t.contains("fta.view"))
        .expect("the leads channel is told");
    assert!(notice.contains("Contoso Ltd"), "{notice}");
    assert!(notice.contains(&format!("#{id}")), "{notice}");

    let by_dana: Value = app
        .post_activity(&click(
            &app,
            None,
            "fta.decline",
            json!({ "requestId": id, "version": 1, "reason": "no" }),
        ))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        by_dana["value"]
            .as_str()
            .unwrap()
            .contains("Only the FTA alignment or regional leads")
    );
    let by_group_lead: Value = app
        .post_activity(&click(
            &app,
            Some((GROUP_LEAD, "29:glead", "Gail Lead")),
            "fta.decline",
            json!({ "requestId": id, "version": 1, "reason": "Below the seat threshold" }),
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_group_lead["statusCode"], 200);
    assert_eq!(
        app.store.fta_request(id).await.unwrap().unwrap().status,
        "declined"
    );
}

#[tokio::test]
async fn an_unassigned_request_nudges_the_leads_when_due_and_again_every_n_days() {
    let app = fta_app().await;
    let id = submit(&app).await;
    let created = app.store.fta_request(id).await.unwrap().unwrap().created_at;
    let lead_mails = || async {
        mails(&app)
            .await
            .iter()
            .filter(|m| m["message"]["toRecipients"].as_array().unwrap().len() == 2)
            .map(|m| {
                m["message"]["body"]["content"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        lead_mails().await.len(),
        1,
        "the leads were told once on submit"
    );
    let due = fieldbot::jobs::fta::add_business_days(created, 2);

    // Not before its time…
    app.clock.advance(std::time::Duration::from_millis(
        (due - app.clock.now() - 60_000).max(0) as u64,
    ));
    app.run_pending_jobs().await;
    assert_eq!(lead_mails().await.len(), 1);
    // …then once…
    app.clock.advance(std::time::Duration::from_secs(120));
    app.run_pending_jobs().await;
    app.run_pending_jobs().await;
    let sent = lead_mails().await;
    assert_eq!(sent.len(), 2, "one nudge");
    assert!(sent[1].contains("still waiting for an FTA"), "{}", sent[1]);
    // …and again N business days later.
    let next = fieldbot::jobs::fta::add_business_days(app.clock.now(), 2);
    app.clock.advance(std::time::Duration::from_millis(
        (next - app.clock.now() + 60_000) as u64,
    ));
    app.run_pending_jobs().await;
    app.run_pending_jobs().await;
    assert_eq!(lead_mails().await.len(), 3, "a second nudge");

    // Once assigned, the nudges stop.
    app.post_activity(&click(
        &app,
        lead1(),
        "fta.assign",
        json!({ "requestId": id, "version": 1, "fta": "ada@contoso.com" }),
    ))
    .await;
    app.run_pending_jobs().await;
    app.clock
        .advance(std::time::Duration::from_secs(30 * 86_400));
    app.run_pending_jobs().await;
    app.run_pending_jobs().await;
    assert_eq!(lead_mails().await.len(), 3, "no nudge after assignment");
}

/// Found by the soak: when the status card's post ended unconfirmed (the thread was created, the answer
/// with its id lost), every later change skipped the card update, so the channel showed "submitted"
/// forever. A click on that card names it; the update then reaches it.
/// Lead one clicks Assign on the status card itself: the root message (555) of its thread.
async fn assign_on_the_card(app: &TestApp, id: i64) {
    let mut assign = click(
        app,
        lead1(),
        "fta.assign",
        json!({ "requestId": id, "version": 1, "fta": "ada@contoso.com" }),
    );
    assign["conversation"]["id"] = json!(THREAD);
    assign["replyToId"] = json!("555");
    let answer: Value = app.post_activity(&assign).await.json().await.unwrap();
    assert_eq!(answer["statusCode"], 200, "{answer}");
}

/// A replica that is about to die claims the due jobs (ten minutes on, when a refused call's retry is due)
/// and notes on the job of `kind` that its attempt is sending `op`, as the worker does right before the
/// call; then it dies without recording anything. Returns that job as claimed.
async fn dies_while_sending(app: &TestApp, kind: &str, op: &str) -> fieldbot::store::Job {
    dies_noting(app, kind, op, None).await
}

/// Where a replica killed mid-call got before it died, as its wire log tells (see `fieldbot::jobs::wire`).
#[derive(Clone, Copy, PartialEq)]
enum Died {
    /// Before its request left: no line in its log.
    BeforeItLeft,
    /// As its request left: the line is there.
    AsItLeft,
}

/// [`dies_while_sending`] for a replica that marked its calls in its own wire log, in the folder every
/// process of this app uses, holding the job's line or not. Returns the job as claimed.
async fn dies_with_a_wire_log(
    app: &TestApp,
    kind: &str,
    op: &str,
    died: Died,
) -> fieldbot::store::Job {
    let dir = app
        .settings
        .wire_log_dir()
        .expect("a wire log beside SQLite");
    let log = fieldbot::jobs::wire::WireLog::open(&dir).unwrap();
    let file = log.file().unwrap();
    let job = dies_noting(app, kind, op, Some(file.name())).await;
    if died == Died::AsItLeft {
        file.mark(job.id, job.attempts).unwrap();
    }
    // Dies: its log is closed, which releases the lock a living writer holds, and left behind.
    drop(file);
    drop(log);
    job
}

async fn dies_noting(
    app: &TestApp,
    kind: &str,
    op: &str,
    wire: Option<&str>,
) -> fieldbot::store::Job {
    app.clock.advance(std::time::Duration::from_secs(600));
    let now = app.clock.now();
    let claimed = app
        .store
        .claim_jobs("doomed-replica", now, now + 60_000, 10)
        .await
        .unwrap();
    let job = claimed
        .into_iter()
        .find(|j| j.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} job is due again"));
    let mut note = format!(
        "in flight: attempt {} sent {op}, a call that must not be repeated",
        job.attempts
    );
    if let Some(wire) = wire {
        note.push_str(&format!("; wire log {wire}"));
    }
    assert!(
        app.store
            .note_job_sending(job.id, "doomed-replica", &note)
            .await
            .unwrap()
    );
    job
}

/// How many times the status card (message 555) was replaced.
async fn card_updates(app: &TestApp) -> usize {
    let card_path = format!("/v3/conversations/{}/activities/555", encoded(THREAD));
    app.connector_requests()
        .await
        .into_iter()
        .filter(|r| r.method.as_str() == "PUT" && r.url.path() == card_path)
        .count()
}

#[tokio::test]
async fn a_status_card_whose_post_was_unconfirmed_is_updated_once_a_lead_clicks_it() {
    let app = fta_app().await;
    // The thread is created, but the answer comes after the client's timeout (2 s in tests).
    Mock::given(method("POST"))
        .and(path("/v3/conversations"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_delay(std::time::Duration::from_secs(4))
                .set_body_json(json!({ "id": THREAD, "activityId": "555" })),
        )
        .with_priority(1)
        .mount(&app.connector)
        .await;
    let id = submit(&app).await;
    let unconfirmed = app
        .store
        .jobs_with_status(fieldbot::store::JobStatus::Unconfirmed, 10)
        .await
        .unwrap();
    assert!(
        unconfirmed
            .iter()
            .any(|j| j.idempotency_key.ends_with(":fta:thread")),
        "{unconfirmed:?}"
    );

    // A lead clicks Assign on the card: the root message of its thread.
    assign_on_the_card(&app, id).await;
    app.run_pending_jobs().await;
    assert_eq!(card_updates(&app).await, 1, "the card shows the assignment");
}

/// Found by the soak: a replica was killed mid-post of a status card (the card reached the channel), and a
/// lead clicked it before the lease expired, while the post was still "running" under the dead replica.
/// The card has to be adopted then too: once the post is found cut off it is only held, never re-sent, and
/// without the adoption every later update of the card was skipped.
#[tokio::test]
async fn a_status_card_clicked_while_its_post_is_still_in_flight_is_updated() {
    let app = fta_app().await;
    // The first post is refused, so the request waits with its post queued for a retry.
    the_first_thread_post_is_refused(&app).await;
    let id = submit(&app).await;
    // A replica that is about to die takes the post, notes it is sending, and sends it (the card is in
    // the channel as message 555); then it is killed before recording anything.
    dies_while_sending(&app, "fta_post_thread", "create_channel_thread").await;

    // A lead clicks Assign on the card before the dead replica's lease ran out.
    assign_on_the_card(&app, id).await;

    // The lease expires; the post is found cut off (held, not re-sent) and the card update follows it.
    app.clock.advance(std::time::Duration::from_secs(120));
    app.run_pending_jobs().await;
    let posts = app
        .connector_requests()
        .await
        .into_iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/v3/conversations")
        .count();
    assert_eq!(
        posts, 1,
        "the refused post only: the cut-off one is not sent again"
    );
    assert_eq!(card_updates(&app).await, 1, "the card shows the assignment");
}

/// The Connector refuses (503) the first post of a channel thread, so the request's status-card post waits
/// for a retry.
async fn the_first_thread_post_is_refused(app: &TestApp) {
    Mock::given(method("POST"))
        .and(path("/v3/conversations"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.connector)
        .await;
}

/// How many times the channel thread (the status card) was posted.
async fn thread_posts(app: &TestApp) -> usize {
    app.connector_requests()
        .await
        .into_iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/v3/conversations")
        .count()
}

/// A replica killed after noting the status card's post but before the post left: its wire log has no line
/// for it. The job taking over posts the card (once) instead of holding it, and the lead's click updates it.
#[tokio::test]
async fn a_status_card_cut_off_before_it_left_is_posted_after_the_crash() {
    let app = fta_app().await;
    the_first_thread_post_is_refused(&app).await;
    let id = submit(&app).await;
    assert_eq!(thread_posts(&app).await, 1, "refused");
    dies_with_a_wire_log(
        &app,
        "fta_post_thread",
        "create_channel_thread",
        Died::BeforeItLeft,
    )
    .await;

    app.clock.advance(std::time::Duration::from_secs(120));
    app.run_pending_jobs().await;
    assert_eq!(thread_posts(&app).await, 2, "posted again, once");
    assert_eq!(jobs_held_or_dead(&app).await, 0);
    assign_on_the_card(&app, id).await;
    app.run_pending_jobs().await;
    assert_eq!(card_updates(&app).await, 1, "the card shows the assignment");
}

/// The same crash a moment later, as the post left (its line is in the log): the card may be in the channel,
/// so the job is held for an operator, saying why, and not posted again.
#[tokio::test]
async fn a_status_card_cut_off_as_it_left_is_held_not_posted_again() {
    let app = fta_app().await;
    the_first_thread_post_is_refused(&app).await;
    submit(&app).await;
    let post = dies_with_a_wire_log(
        &app,
        "fta_post_thread",
        "create_channel_thread",
        Died::AsItLeft,
    )
    .await;

    app.clock.advance(std::time::Duration::from_secs(120));
    app.run_pending_jobs().await;
    assert_eq!(thread_posts(&app).await, 1, "the refused post only");
    assert_job(
        &app,
        &post,
        fieldbot::store::JobStatus::Unconfirmed,
        "its request was handed to the socket",
    )
    .await;
}

/// The sender's mailbox as Graph keeps it: a sent mail is filed with the key it carries, and the search by
/// that key finds it. `first` decides how the first `sendMail` goes.
struct Mailbox {
    sent: std::sync::Mutex<Vec<String>>,
    first: std::sync::Mutex<Option<FirstMail>>,
    /// Whether fieldbot may search it (else 403, as when its permission does not cover the mailbox).
    searchable: bool,
    /// Searches answered 503 before the mailbox answers normally.
    busy_searches: std::sync::atomic::AtomicU32,
}

#[derive(Clone, Copy)]
enum FirstMail {
    /// Refused with a 503: not sent.
    Refused,
    /// Sent, but answered after the client gave up.
    AnsweredLate,
}

fn mail_key(req: &Request) -> String {
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    body["message"]["singleValueExtendedProperties"][0]["value"]
        .as_str()
        .unwrap_or_else(|| panic!("a job's mail carries its key: {body}"))
        .to_owned()
}

impl Respond for Mailbox {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if req.method.as_str() == "GET" && !self.searchable {
            return ResponseTemplate::new(403).set_body_json(
                json!({ "error": { "code": "ErrorAccessDenied", "message": "Access is denied." } }),
            );
        }
        if req.method.as_str() == "GET"
            && self
                .busy_searches
                .fetch_update(
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                    |n| n.checked_sub(1),
                )
                .is_ok()
        {
            return ResponseTemplate::new(503);
        }
        if req.method.as_str() == "GET" {
            let filter = req
                .url
                .query_pairs()
                .find(|(k, _)| k == "$filter")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            let key = filter
                .split_once("ep/value eq '")
                .and_then(|(_, rest)| rest.strip_suffix("')"))
                .unwrap_or_else(|| panic!("a search by key: {filter}"));
            let found = self.sent.lock().unwrap().iter().any(|k| k == key);
            let value = if found {
                json!([{ "id": "AAMkAD-sent", "isDraft": false }])
            } else {
                json!([])
            };
            return ResponseTemplate::new(200).set_body_json(json!({ "value": value }));
        }
        match self.first.lock().unwrap().take() {
            Some(FirstMail::Refused) => ResponseTemplate::new(503),
            Some(FirstMail::AnsweredLate) => {
                self.sent.lock().unwrap().push(mail_key(req));
                ResponseTemplate::new(202).set_delay(std::time::Duration::from_secs(4))
            }
            None => {
                self.sent.lock().unwrap().push(mail_key(req));
                ResponseTemplate::new(202)
            }
        }
    }
}

async fn mount_mailbox(app: &TestApp, first: FirstMail) -> std::sync::Arc<Mailbox> {
    mount_mailbox_searchable(app, first, true).await
}

async fn mount_mailbox_searchable(
    app: &TestApp,
    first: FirstMail,
    searchable: bool,
) -> std::sync::Arc<Mailbox> {
    let mailbox = std::sync::Arc::new(Mailbox {
        sent: Default::default(),
        first: std::sync::Mutex::new(Some(first)),
        searchable,
        busy_searches: Default::default(),
    });
    let sender = SENDER.replace('@', "%40");
    for (verb, route) in [("POST", "sendMail"), ("GET", "messages")] {
        Mock::given(method(verb))
            .and(path(format!("/graph/users/{sender}/{route}")))
            .respond_with(ArcResponder(mailbox.clone()))
            .with_priority(1)
            .mount(&app.identity)
            .await;
    }
    mailbox
}

struct ArcResponder(std::sync::Arc<Mailbox>);

impl Respond for ArcResponder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        self.0.respond(req)
    }
}

/// Every mail the sender sent, each exactly once.
fn sent_once(mailbox: &Mailbox) -> Vec<String> {
    let sent = mailbox.sent.lock().unwrap().clone();
    let mut unique = sent.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), sent.len(), "a mail was sent twice: {sent:?}");
    sent
}

/// How often fieldbot searched a mailbox by key.
async fn searches(app: &TestApp) -> usize {
    app.graph_requests()
        .await
        .into_iter()
        .filter(|r| r.method.as_str() == "GET" && r.url.path().ends_with("/messages"))
        .count()
}

/// Asserts that `job` is now in `status`, its last error saying `why`.
async fn assert_job(
    app: &TestApp,
    job: &fieldbot::store::Job,
    status: fieldbot::store::JobStatus,
    why: &str,
) {
    let now = app
        .store
        .job_by_key(&job.idempotency_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.status, status, "{now:?}");
    assert!(
        now.last_error.as_deref().unwrap_or_default().contains(why),
        "{now:?}"
    );
}

async fn jobs_held_or_dead(app: &TestApp) -> usize {
    let mut n = 0;
    for status in [
        fieldbot::store::JobStatus::Unconfirmed,
        fieldbot::store::JobStatus::Dead,
    ] {
        n += app.store.jobs_with_status(status, 100).await.unwrap().len();
    }
    n
}

/// A mail that Graph took but answered too late for the client may have been sent: it is not sent blindly
/// again, nor held for an operator. The job looks it up by its key a while later, finds it, and is done.
#[tokio::test]
async fn a_mail_answered_too_late_is_looked_up_and_not_sent_again() {
    let app = fta_app().await;
    let mailbox = mount_mailbox(&app, FirstMail::AnsweredLate).await;
    submit(&app).await;
    let first = sent_once(&mailbox);
    assert!(!first.is_empty());
    let waiting = app
        .store
        .jobs_with_status(fieldbot::store::JobStatus::Pending, 100)
        .await
        .unwrap();
    assert!(
        waiting.iter().any(|j| j
            .last_error
            .as_deref()
            .unwrap_or_default()
            .starts_with("to be looked up before sending again: ")),
        "{waiting:?}"
    );

    app.clock.advance(std::time::Duration::from_secs(
        app.settings.jobs.check_after_secs + 1,
    ));
    app.run_pending_jobs().await;
    assert_eq!(searches(&app).await, 1, "the one unsure mail was looked up");
    // The flow goes on (the leads' mail follows), and no mail went twice.
    assert!(sent_once(&mailbox).starts_with(&first));
    assert_eq!(jobs_held_or_dead(&app).await, 0);
}

/// A replica killed after noting a mail but before it left, with a wire log that shows so: the job taking
/// over sends the mail at once, without waiting to look it up.
#[tokio::test]
async fn a_mail_cut_off_before_it_left_is_sent_without_a_lookup() {
    let app = fta_app().await;
    let mailbox = mount_mailbox(&app, FirstMail::Refused).await;
    submit(&app).await;
    let mail = dies_with_a_wire_log(&app, "fta_email", "send_mail", Died::BeforeItLeft).await;

    app.clock.advance(std::time::Duration::from_secs(120));
    app.run_pending_jobs().await;
    let mine = sent_once(&mailbox)
        .iter()
        .filter(|k| k.starts_with(&format!("{}#", mail.idempotency_key)))
        .count();
    assert_eq!(mine, 1, "sent once, with no wait for a lookup");
    let searches = app
        .graph_requests()
        .await
        .into_iter()
        .filter(|r| r.method.as_str() == "GET" && r.url.path().ends_with("/messages"))
        .count();
    assert_eq!(searches, 0);
    assert_eq!(jobs_held_or_dead(&app).await, 0);
}

/// A replica killed with a mail's request on its way: the mail never reached Graph. The job taking over
/// looks the mail up once Exchange would have filed it, does not find it, and sends it, once.
#[tokio::test]
async fn a_mail_cut_off_by_a_crash_is_looked_up_and_sent_when_not_found() {
    let app = fta_app().await;
    let mailbox = mount_mailbox(&app, FirstMail::Refused).await;
    submit(&app).await;
    let before = sent_once(&mailbox);

    // A replica about to die takes the refused mail's retry, notes it is sending, and dies.
    let mail = dies_while_sending(&app, "fta_email", "send_mail").await;

    // The lease runs out: the job is not sent at once, nor held, but queued to be looked up.
    app.clock.advance(std::time::Duration::from_secs(120));
    app.run_pending_jobs().await;
    assert_eq!(sent_once(&mailbox), before);
    assert_job(
        &app,
        &mail,
        fieldbot::store::JobStatus::Pending,
        "cut off after starting send_mail",
    )
    .await;

    app.clock.advance(std::time::Duration::from_secs(
        app.settings.jobs.check_after_secs + 1,
    ));
    app.run_pending_jobs().await;
    let mine = |keys: &[String]| {
        keys.iter()
            .filter(|k| k.starts_with(&format!("{}#", mail.idempotency_key)))
            .count()
    };
    assert_eq!(mine(&before), 0);
    assert_eq!(mine(&sent_once(&mailbox)), 1, "sent once, after the lookup");
    assert_eq!(jobs_held_or_dead(&app).await, 0);
}

/// A mail that may have been sent in a mailbox fieldbot may not search: it cannot be checked, so it is held
/// for an operator (not sent again, not dead-lettered).
#[tokio::test]
async fn a_mail_that_cannot_be_looked_up_is_held_for_the_operator() {
    let app = fta_app().await;
    let mailbox = mount_mailbox_searchable(&app, FirstMail::AnsweredLate, false).await;
    submit(&app).await;
    let first = sent_once(&mailbox);
    app.clock.advance(std::time::Duration::from_secs(
        app.settings.jobs.check_after_secs + 1,
    ));
    app.run_pending_jobs().await;
    assert!(sent_once(&mailbox).starts_with(&first), "not sent again");
    let held = app
        .store
        .jobs_with_status(fieldbot::store::JobStatus::Unconfirmed, 10)
        .await
        .unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    assert!(
        held[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("could not be searched"),
        "{:?}",
        held[0].last_error
    );
    assert!(
        app.store
            .jobs_with_status(fieldbot::store::JobStatus::Dead, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A search that fails (503) leaves the job marked to be looked up, and the next search waits until
/// Exchange would have filed the mail: the mail is found then, not sent again.
#[tokio::test]
async fn a_failed_search_is_tried_again_later_and_never_sends_blindly() {
    let app = fta_app().await;
    let mailbox = mount_mailbox(&app, FirstMail::AnsweredLate).await;
    mailbox
        .busy_searches
        .store(1, std::sync::atomic::Ordering::SeqCst);
    submit(&app).await;
    let first = sent_once(&mailbox);
    let wait = std::time::Duration::from_secs(app.settings.jobs.check_after_secs + 1);
    app.clock.advance(wait);
    app.run_pending_jobs().await;
    assert_eq!(searches(&app).await, 1, "searched, and Graph was busy");
    app.clock.advance(std::time::Duration::from_secs(5));
    app.run_pending_jobs().await;
    assert_eq!(searches(&app).await, 1, "not searched again at once");
    app.clock.advance(wait);
    app.run_pending_jobs().await;
    assert_eq!(searches(&app).await, 2);
    assert!(
        sent_once(&mailbox).starts_with(&first),
        "found: not sent again"
    );
    assert_eq!(jobs_held_or_dead(&app).await, 0);
}
