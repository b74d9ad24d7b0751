//! The operator JSON API (`/api/engagements`, `/api/outbox`): served to loopback callers in local mode,
//! refused in production; and dry-run Graph in local mode, whose would-be calls the outbox lists.

use fieldbot::store::Change;
use serde_json::{Value, json};

use crate::helpers::*;

const START_CONTOSO: &str =
    "engagement start \"Contoso Ltd\" motion:rfa tpid:12345 tenant:contoso.onmicrosoft.com";
const START_FABRIKAM: &str = "engagement start \"Fabrikam\" motion:health tpid:777";
const OTHER_CHANNEL: &str = "19:0ther33cc@thread.tacv2";

const CSV_HEADER: &str = "customer,recorded_at,recorded_by,summary,open_items,next_steps,\
                          intro_email_requested,teams_channel_joined,rhythm";

async fn local_app(backend: Backend) -> TestApp {
    spawn_with(Options {
        backend,
        mode: Mode::Local,
        ..Options::default()
    })
    .await
}

/// Sends a command as Dana in `channel` without a token (local mode), drains the queue and returns what
/// the bot posted since.
async fn say_in(app: &TestApp, channel: &str, text: &str) -> Vec<Value> {
    let before = app.connector_requests().await.len();
    let mut activity = app.message(text);
    activity["conversation"]["id"] = json!(format!("{channel};messageid=1732270530123"));
    activity["channelData"]["teamsChannelId"] = json!(channel);
    activity["channelData"]["channel"]["id"] = json!(channel);
    let response = app.post_with_token(&activity, None).await;
    assert_eq!(response.status(), 200, "{text}");
    app.run_pending_jobs().await;
    app.connector_requests()
        .await
        .into_iter()
        .skip(before)
        .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
        .collect()
}

/// The single reply's text.
async fn reply_in(app: &TestApp, channel: &str, text: &str) -> String {
    let replies = say_in(app, channel, text).await;
    assert_eq!(replies.len(), 1, "{text}: {replies:?}");
    text_of(&replies[0])
}

async fn get(app: &TestApp, p: &str) -> reqwest::Response {
    app.http.get(app.url(p)).send().await.expect("request sent")
}

/// A 200 JSON answer.
async fn get_json(app: &TestApp, p: &str) -> Value {
    let response = get(app, p).await;
    assert_eq!(response.status(), 200, "{p}");
    assert!(
        content_type(&response).starts_with("application/json"),
        "{p}: {}",
        content_type(&response)
    );
    response.json().await.unwrap()
}

/// An error answer: the status and the JSON `error` object.
async fn get_error(app: &TestApp, p: &str, status: u16) -> Value {
    let response = get(app, p).await;
    assert_eq!(response.status(), status, "{p}");
    assert!(
        content_type(&response).starts_with("application/json"),
        "{p}: {}",
        content_type(&response)
    );
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["code"].is_string(), "{p}: {body}");
    body["error"].clone()
}

fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

fn customers(list: &Value) -> Vec<String> {
    let mut out: Vec<String> = list["engagements"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .map(|e| e["customer"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

async fn engagement_id(app: &TestApp, channel: &str) -> i64 {
    app.store
        .active_engagement(channel)
        .await
        .unwrap()
        .unwrap()
        .id
}

/// An id no engagement of this app has.
fn unused_id(taken: &[i64]) -> i64 {
    (1..).find(|id| !taken.contains(id)).unwrap()
}

#[tokio::test]
async fn engagements_are_listed_and_filtered_by_status() {
    listed_and_filtered(Backend::Sqlite).await;
}

#[tokio::test]
async fn engagements_are_listed_and_filtered_on_postgres() {
    listed_and_filtered(Backend::Postgres).await;
}

async fn listed_and_filtered(backend: Backend) {
    let app = local_app(backend).await;
    assert!(
        reply_in(&app, CHANNEL, START_CONTOSO)
            .await
            .contains("Contoso Ltd")
    );
    assert!(
        reply_in(&app, OTHER_CHANNEL, START_FABRIKAM)
            .await
            .contains("Fabrikam")
    );
    assert!(
        reply_in(&app, OTHER_CHANNEL, "engagement close")
            .await
            .contains("Closed")
    );

    let all = get_json(&app, "/api/engagements").await;
    assert_eq!(customers(&all), vec!["Contoso Ltd", "Fabrikam"]);
    // Newest first.
    assert_eq!(all["engagements"][0]["customer"], "Fabrikam");
    assert_eq!(
        customers(&get_json(&app, "/api/engagements?status=all").await),
        vec!["Contoso Ltd", "Fabrikam"]
    );

    let active = get_json(&app, "/api/engagements?status=active").await;
    assert_eq!(customers(&active), vec!["Contoso Ltd"]);
    let contoso = &active["engagements"][0];
    assert_eq!(contoso["status"], "active");
    assert_eq!(contoso["id"], engagement_id(&app, CHANNEL).await);
    assert!(contoso["closed_at"].is_null(), "{contoso}");

    let closed = get_json(&app, "/api/engagements?status=closed").await;
    assert_eq!(customers(&closed), vec!["Fabrikam"]);
    let fabrikam = &closed["engagements"][0];
    assert_eq!(fabrikam["status"], "closed");
    assert_eq!(fabrikam["motion"], "health");
    assert!(fabrikam["closed_at"].is_i64(), "{fabrikam}");

    let error = get_error(&app, "/api/engagements?status=bogus", 400).await;
    assert_eq!(error["code"], "bad_request");
    assert!(
        error["message"].as_str().unwrap().contains("bogus"),
        "{error}"
    );
}

#[tokio::test]
async fn one_engagement_is_served_with_its_roster() {
    let app = local_app(Backend::Sqlite).await;
    reply_in(&app, CHANNEL, START_CONTOSO).await;
    reply_in(&app, CHANNEL, "team add TAM tom@contoso.com").await;
    let id = engagement_id(&app, CHANNEL).await;

    let e = get_json(&app, &format!("/api/engagements/{id}")).await;
    assert_eq!(e["id"], id);
    assert_eq!(e["customer"], "Contoso Ltd");
    assert_eq!(e["motion"], "rfa");
    assert_eq!(e["tpid"], 12345);
    assert_eq!(e["tenant"], "contoso.onmicrosoft.com");
    assert_eq!(e["status"], "active");
    assert_eq!(e["fm"]["name"], "Dana Lee");
    let roster = e["roster"].as_array().unwrap_or_else(|| panic!("{e}"));
    assert_eq!(roster.len(), 1, "{e}");
    assert_eq!(roster[0]["role"], "TAM");
    assert_eq!(roster[0]["person"]["email"], "tom@contoso.com");
    assert_eq!(e["sync_notes"], json!([]));

    let error = get_error(&app, &format!("/api/engagements/{}", unused_id(&[id])), 404).await;
    assert_eq!(error["code"], "not_found");
    let error = get_error(&app, "/api/engagements/abc", 400).await;
    assert_eq!(error["code"], "bad_request");
    let error = get_error(&app, &format!("/api/engagements/{id}?format=xml"), 400).await;
    assert_eq!(error["code"], "bad_request");
}

#[tokio::test]
async fn sync_notes_export_as_formula_safe_csv() {
    formula_safe_csv(Backend::Sqlite).await;
}

#[tokio::test]
async fn sync_notes_export_as_csv_on_postgres() {
    formula_safe_csv(Backend::Postgres).await;
}

async fn formula_safe_csv(backend: Backend) {
    let app = local_app(backend).await;
    reply_in(&app, CHANNEL, START_CONTOSO).await;
    let id = engagement_id(&app, CHANNEL).await;
    let summary = "=HYPERLINK(\"https://evil.example\"), said \"hi\"";
    let now = app.clock.now();
    app.store
        .commit_activity(
            None,
            now,
            vec![Change::RecordSyncNotes {
                engagement_id: id,
                notes: json!({
                    "summary": summary,
                    "open_items": ["licenses", "migration source"],
                    "next_steps": ["send the intro email"],
                    "intro_email_requested": true,
                    "teams_channel_joined": false,
                    "rhythm": "weekly",
                }),
                by: "Dana Lee".into(),
            }],
            vec![],
            None,
        )
        .await
        .unwrap();

    let response = get(&app, &format!("/api/engagements/{id}?format=csv")).await;
    assert_eq!(response.status(), 200);
    assert!(
        content_type(&response).starts_with("text/csv"),
        "{}",
        content_type(&response)
    );
    let disposition = response
        .headers()
        .get("content-disposition")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    let body = response.text().await.unwrap();
    let rows: Vec<&str> = body.split("\r\n").collect();
    assert_eq!(
        rows.len(),
        3,
        "header, one note, final line break: {body:?}"
    );
    assert_eq!(rows[0], CSV_HEADER);
    let recorded_at = jiff::Timestamp::from_millisecond(now).unwrap().to_string();
    assert_eq!(
        rows[1],
        format!(
            "Contoso Ltd,{recorded_at},Dana Lee,\
             \"'=HYPERLINK(\"\"https://evil.example\"\"), said \"\"hi\"\"\",\
             licenses; migration source,send the intro email,yes,no,weekly"
        )
    );
    assert_eq!(rows[2], "");

    // The JSON record carries the same notes.
    let e = get_json(&app, &format!("/api/engagements/{id}")).await;
    let notes = e["sync_notes"].as_array().unwrap_or_else(|| panic!("{e}"));
    assert_eq!(notes.len(), 1, "{e}");
    assert_eq!(notes[0]["by"], "Dana Lee");
    assert_eq!(notes[0]["notes"]["summary"], summary);
}

#[tokio::test]
async fn the_outbox_limit_is_honoured() {
    let app = local_app(Backend::Sqlite).await;
    reply_in(&app, CHANNEL, START_CONTOSO).await;
    reply_in(&app, CHANNEL, "team add TAM tom@contoso.com").await;
    reply_in(&app, CHANNEL, "team add AE ann@contoso.com").await;
    let calls = |v: Value| {
        v["calls"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|c| c["path"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let all = calls(get_json(&app, "/api/outbox").await);
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(
        all[0].contains("tom%40contoso.com") && all[1].contains("ann%40contoso.com"),
        "oldest first: {all:?}"
    );
    // `limit` keeps the most recent calls.
    let last = calls(get_json(&app, "/api/outbox?limit=1").await);
    assert_eq!(last, vec![all[1].clone()]);
    assert!(calls(get_json(&app, "/api/outbox?limit=0").await).is_empty());
}

/// Every other malformed query gets the API's JSON error; `limit` should too.
#[tokio::test]
async fn a_malformed_outbox_limit_gets_the_json_error() {
    let app = local_app(Backend::Sqlite).await;
    let error = get_error(&app, "/api/outbox?limit=abc", 400).await;
    assert_eq!(error["code"], "bad_request");
}

#[tokio::test]
async fn production_refuses_the_operator_api() {
    let app = spawn_app().await;
    let replies = app.say(START_CONTOSO).await;
    assert_eq!(replies.len(), 1);
    let id = engagement_id(&app, CHANNEL).await;
    for p in [
        "/api/engagements".to_string(),
        "/api/engagements?status=active".to_string(),
        format!("/api/engagements/{id}"),
        format!("/api/engagements/{id}?format=csv"),
        "/api/outbox".to_string(),
    ] {
        let error = get_error(&app, &p, 401).await;
        assert_eq!(error["code"], "unauthorized", "{p}");
        // A Bot Framework token is no operator sign-in.
        let response = app
            .http
            .get(app.url(&p))
            .bearer_auth(app.token())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{p}");
        let body = response.text().await.unwrap();
        assert!(!body.contains("Contoso"), "{p}: {body}");
    }
}

#[tokio::test]
async fn dry_run_graph_records_the_call_instead_of_sending_it() {
    dry_run_outbox(Backend::Sqlite).await;
}

#[tokio::test]
async fn dry_run_graph_records_the_call_on_postgres() {
    dry_run_outbox(Backend::Postgres).await;
}

async fn dry_run_outbox(backend: Backend) {
    let app = local_app(backend).await;
    reply_in(&app, CHANNEL, START_CONTOSO).await;
    assert_eq!(
        get_json(&app, "/api/outbox").await["calls"],
        json!([]),
        "nothing recorded yet"
    );

    let roster = reply_in(&app, CHANNEL, "team add TAM tom@contoso.com").await;
    assert!(roster.contains("tom"), "{roster}");
    // Nothing reached Graph (nor a token endpoint): the call was only recorded.
    assert!(app.graph_requests().await.is_empty());
    assert_eq!(app.identity_requests(&format!("/{TENANT}/token")).await, 0);

    let e = app.store.active_engagement(CHANNEL).await.unwrap().unwrap();
    assert_eq!(e.roster.len(), 1);
    assert_eq!(e.roster[0].role.abbr(), "TAM");
    assert_eq!(e.roster[0].person.email.as_deref(), Some("tom@contoso.com"));

    let outbox = get_json(&app, "/api/outbox").await;
    let calls = outbox["calls"]
        .as_array()
        .unwrap_or_else(|| panic!("{outbox}"));
    assert_eq!(calls.len(), 1, "{outbox}");
    assert_eq!(calls[0]["method"], "GET");
    let recorded = calls[0]["path"].as_str().unwrap();
    assert!(recorded.contains("/users/tom%40contoso.com"), "{recorded}");
    assert!(calls[0]["body"].is_null(), "{outbox}");
    assert!(calls[0]["recorded_at"].is_i64(), "{outbox}");
}
