//! `prep` through the webhook: the checklist card for the engagement's motion, ticked from the card (the
//! Universal Action and its Action.Submit fallback), the clicker answered at once and the card replaced
//! in place for everyone through the Connector.

use fieldbot::domain::engagement::PrepItem;
use serde_json::{Value, json};

use crate::helpers::*;

const START_RFA: &str =
    "engagement start \"Contoso Ltd\" motion:rfa tpid:12345 tenant:contoso.onmicrosoft.com";
const START_HEALTH: &str = "engagement start \"Fabrikam\" motion:health tpid:777";
const OTHER_CHANNEL: &str = "19:0ther33cc@thread.tacv2";
/// What `card_action` puts in `replyToId`: the message holding the clicked card.
const CARD_MESSAGE_ID: &str = "1732270599000";

const RFA_TEXT: &str = "review details around the request for support";
const HEALTH_TEXT: &str = "look at the usage reports";
const FTA_TEXT: &str = "FastTrack Architect aligned";
const BACKGROUND_TEXT: &str = "background about the company";

async fn started(start: &str) -> TestApp {
    started_on(Backend::Sqlite, start).await
}

async fn started_on(backend: Backend, start: &str) -> TestApp {
    let app = spawn_with(Options {
        backend,
        ..Options::default()
    })
    .await;
    let replies = app.say(start).await;
    assert_eq!(replies.len(), 1);
    assert!(
        !text_of(&replies[0]).contains("already has"),
        "{}",
        replies[0]
    );
    app
}

/// `prep`, and the one card posted in answer.
async fn prep_card(app: &TestApp) -> Value {
    let replies = app.say("prep").await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    let cards = cards_in(&replies[0]);
    assert_eq!(cards.len(), 1, "{}", replies[0]);
    assert_valid_card(&cards[0]);
    cards[0].clone()
}

/// Every Action.Execute on a card, in document order.
fn execute_actions(card: &Value) -> Vec<Value> {
    fn walk(v: &Value, out: &mut Vec<Value>) {
        match v {
            Value::Object(o) => {
                if o.get("type").and_then(Value::as_str) == Some("Action.Execute") {
                    out.push(v.clone());
                }
                o.values().for_each(|c| walk(c, out));
            }
            Value::Array(a) => a.iter().for_each(|c| walk(c, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(card, &mut out);
    out
}

/// The toggle button of one item.
fn toggle_for(card: &Value, item: &str) -> Value {
    execute_actions(card)
        .into_iter()
        .find(|a| a["verb"] == "prep.toggle" && a["data"]["item"] == item)
        .unwrap_or_else(|| panic!("no toggle for {item}: {card:#}"))
}

/// The engagement id the card's buttons carry (all of them the same).
fn engagement_id_on(card: &Value) -> i64 {
    let actions = execute_actions(card);
    assert!(!actions.is_empty(), "{card:#}");
    let id = actions[0]["data"]["engagementId"].as_i64().unwrap();
    assert!(
        actions.iter().all(|a| a["data"]["engagementId"] == id),
        "{card:#}"
    );
    id
}

/// Moves an activity to another channel of the same team.
fn in_channel(mut activity: Value, channel: &str) -> Value {
    activity["conversation"]["id"] = json!(format!("{channel};messageid=1732270530999"));
    activity["channelData"]["teamsChannelId"] = json!(channel);
    activity["channelData"]["channel"]["id"] = json!(channel);
    activity
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2D", "-")
        .replace("%2E", ".")
        .replace("%5F", "_")
        .replace("%7E", "~")
}

/// Where the Connector update of the clicked card goes.
fn update_path(activity: &Value) -> String {
    format!(
        "/v3/conversations/{}/activities/{}",
        urlencode(activity["conversation"]["id"].as_str().unwrap()),
        urlencode(activity["replyToId"].as_str().unwrap())
    )
}

/// Posts a click and returns the invoke response body.
async fn click(app: &TestApp, activity: &Value) -> Value {
    let response = app.post_activity(activity).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// The card of a `{statusCode: 200, type: adaptive card}` invoke response, validated.
fn answered_card(response: &Value) -> Value {
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(
        response["type"], "application/vnd.microsoft.card.adaptive",
        "{response}"
    );
    let card = response["value"].clone();
    assert_valid_card(&card);
    card
}

/// Drains the queue and returns the Connector requests made since `before`.
async fn sent_since(app: &TestApp, before: usize) -> Vec<wiremock::Request> {
    app.run_pending_jobs().await;
    app.connector_requests()
        .await
        .into_iter()
        .skip(before)
        .collect()
}

/// The one Connector request since `before` must be the PUT of the clicked card; returns the card it put.
async fn the_card_put_in_place(app: &TestApp, before: usize, clicked: &Value) -> Value {
    let sent = sent_since(app, before).await;
    assert_eq!(
        sent.len(),
        1,
        "one update, no new message: {:?}",
        sent.iter()
            .map(|r| format!("{} {}", r.method, r.url.path()))
            .collect::<Vec<_>>()
    );
    assert_eq!(sent[0].method.as_str(), "PUT");
    assert_eq!(sent[0].url.path(), update_path(clicked));
    let body: Value = serde_json::from_slice(&sent[0].body).unwrap();
    let cards = cards_in(&body);
    assert_eq!(cards.len(), 1, "{body}");
    assert_valid_card(&cards[0]);
    cards[0].clone()
}

fn ticks(e: &fieldbot::store::Engagement) -> Vec<(PrepItem, bool, String)> {
    let mut out: Vec<_> = e
        .prep
        .iter()
        .map(|t| (t.item, t.done, t.by.clone()))
        .collect();
    out.sort_by_key(|(item, ..)| item.as_str());
    out
}

async fn stored_ticks(app: &TestApp, id: i64) -> Vec<(PrepItem, bool, String)> {
    ticks(&app.store.engagement(id).await.unwrap().unwrap())
}

#[tokio::test]
async fn prep_shows_the_checklist_of_the_motion() {
    let app = started(START_RFA).await;
    let card = prep_card(&app).await;
    let text = card.to_string();
    for expected in [
        RFA_TEXT,
        FTA_TEXT,
        BACKGROUND_TEXT,
        "Contoso Ltd",
        "RFA",
        "0 of 3 done",
    ] {
        assert!(text.contains(expected), "{expected}: {card:#}");
    }
    assert!(!text.contains(HEALTH_TEXT), "{card:#}");
    // One Done button per item, each asking to tick it, all bound to this channel's engagement.
    let active = app.store.active_engagement(CHANNEL).await.unwrap().unwrap();
    assert_eq!(engagement_id_on(&card), active.id);
    let items: Vec<Value> = execute_actions(&card)
        .iter()
        .map(|a| {
            assert_eq!(a["verb"], "prep.toggle");
            assert_eq!(a["title"], "Done");
            assert_eq!(a["data"]["done"], true);
            a["data"]["item"].clone()
        })
        .collect();
    assert_eq!(
        items,
        vec![
            json!("review_request_details"),
            json!("fta_aligned"),
            json!("company_background")
        ]
    );

    let app = started(START_HEALTH).await;
    let card = prep_card(&app).await;
    let text = card.to_string();
    for expected in [HEALTH_TEXT, FTA_TEXT, BACKGROUND_TEXT, "Fabrikam", "Health"] {
        assert!(text.contains(expected), "{expected}: {card:#}");
    }
    assert!(!text.contains(RFA_TEXT), "{card:#}");
    assert_eq!(toggle_for(&card, "usage_reports")["data"]["done"], true);
}

#[tokio::test]
async fn clicking_done_answers_the_clicker_and_updates_the_card_for_everyone() {
    click_done(Backend::Sqlite).await;
}

#[tokio::test]
async fn clicking_done_works_on_postgres() {
    click_done(Backend::Postgres).await;
}

async fn click_done(backend: Backend) {
    let app = started_on(backend, START_RFA).await;
    let card = prep_card(&app).await;
    let id = engagement_id_on(&card);
    let before = app.connector_requests().await.len();

    let activity = app.card_action(
        "prep.toggle",
        toggle_for(&card, "fta_aligned")["data"].clone(),
    );
    assert_eq!(activity["replyToId"], CARD_MESSAGE_ID);
    let answered = answered_card(&click(&app, &activity).await);
    let text = answered.to_string();
    assert!(text.contains("by Dana"), "{answered:#}");
    assert!(text.contains("1 of 3 done"), "{answered:#}");
    // The ticked item now offers Undo; the others still offer Done.
    let undo = toggle_for(&answered, "fta_aligned");
    assert_eq!(
        (undo["title"].clone(), undo["data"]["done"].clone()),
        (json!("Undo"), json!(false))
    );
    assert_eq!(
        toggle_for(&answered, "company_background")["data"]["done"],
        true
    );
    assert_eq!(engagement_id_on(&answered), id);

    // Everyone else sees the same card: it replaces the clicked message, no new message is posted.
    let put = the_card_put_in_place(&app, before, &activity).await;
    assert_eq!(put, answered);

    assert_eq!(
        stored_ticks(&app, id).await,
        vec![(PrepItem::FtaAligned, true, "Dana Lee".to_string())]
    );
    // A fresh `prep` shows the tick too.
    let again = prep_card(&app).await.to_string();
    assert!(
        again.contains("by Dana") && again.contains("1 of 3 done"),
        "{again}"
    );
}

#[tokio::test]
async fn a_repeated_click_changes_nothing_and_undo_unticks() {
    let app = started(START_RFA).await;
    let card = prep_card(&app).await;
    let id = engagement_id_on(&card);
    let data = toggle_for(&card, "company_background")["data"].clone();

    let first = answered_card(&click(&app, &app.card_action("prep.toggle", data.clone())).await);
    app.run_pending_jobs().await;
    assert_eq!(
        stored_ticks(&app, id).await,
        vec![(PrepItem::CompanyBackground, true, "Dana Lee".to_string())]
    );
    let after_first = app.store.engagement(id).await.unwrap().unwrap().prep;

    // The same click again (a second delivery of the old card's button, a new activity): still one tick,
    // still done, and the clicker still gets the card.
    let before = app.connector_requests().await.len();
    let activity = app.card_action("prep.toggle", data);
    let second = answered_card(&click(&app, &activity).await);
    // Not even the time of the tick moves.
    assert_eq!(
        app.store.engagement(id).await.unwrap().unwrap().prep,
        after_first
    );
    let text = second.to_string();
    assert!(
        text.contains("by Dana") && text.contains("1 of 3 done"),
        "{second:#}"
    );
    assert_eq!(
        toggle_for(&second, "company_background")["data"]["done"],
        false
    );
    assert_eq!(
        execute_actions(&second).len(),
        execute_actions(&first).len()
    );
    the_card_put_in_place(&app, before, &activity).await;

    // Undo: the item is open again, for the clicker and for everyone.
    let before = app.connector_requests().await.len();
    let undo = app.card_action(
        "prep.toggle",
        toggle_for(&second, "company_background")["data"].clone(),
    );
    let reopened = answered_card(&click(&app, &undo).await);
    let text = reopened.to_string();
    assert!(text.contains("0 of 3 done"), "{reopened:#}");
    assert!(!text.contains("by Dana"), "{reopened:#}");
    assert_eq!(
        toggle_for(&reopened, "company_background")["data"]["done"],
        true
    );
    assert_eq!(the_card_put_in_place(&app, before, &undo).await, reopened);
    let e = app.store.engagement(id).await.unwrap().unwrap();
    assert!(e.prep.iter().all(|t| !t.done), "{:?}", e.prep);
    let shown = prep_card(&app).await.to_string();
    assert!(shown.contains("0 of 3 done"), "{shown}");
}

/// Someone whose card was not refreshed yet clicks Done on an item Dana already ticked: the tick is
/// Dana's and stays hers ("a repeated click is harmless").
#[tokio::test]
async fn a_stale_click_keeps_the_first_tick() {
    let app = started(START_RFA).await;
    let card = prep_card(&app).await;
    let id = engagement_id_on(&card);
    let data = toggle_for(&card, "fta_aligned")["data"].clone();
    answered_card(&click(&app, &app.card_action("prep.toggle", data.clone())).await);
    let first = app.store.engagement(id).await.unwrap().unwrap().prep;

    let mut stale = app.card_action("prep.toggle", data);
    stale["from"] = json!({ "id": "29:sam", "name": "Sam Ops", "aadObjectId": "oid-sam" });
    let answered = answered_card(&click(&app, &stale).await).to_string();
    assert!(answered.contains("by Dana"), "{answered}");
    assert!(!answered.contains("by Sam"), "{answered}");
    assert_eq!(app.store.engagement(id).await.unwrap().unwrap().prep, first);
}

/// `usage_reports` is a Health item: an RFA checklist has no such line, so a click naming it (a forged or
/// out-of-date card) is refused and stores nothing.
#[tokio::test]
async fn an_item_of_another_motion_is_refused() {
    let app = started(START_RFA).await;
    let id = engagement_id_on(&prep_card(&app).await);
    let before = app.connector_requests().await.len();
    let response = click(
        &app,
        &app.card_action(
            "prep.toggle",
            json!({ "engagementId": id, "item": "usage_reports", "done": true }),
        ),
    )
    .await;
    assert_ne!(
        response["type"], "application/vnd.microsoft.card.adaptive",
        "{response}"
    );
    assert!(sent_since(&app, before).await.is_empty());
    assert!(stored_ticks(&app, id).await.is_empty());
}

#[tokio::test]
async fn clicks_on_another_channels_an_unknown_or_a_closed_checklist_are_refused() {
    let app = started(START_RFA).await;
    let here = engagement_id_on(&prep_card(&app).await);
    // A second engagement, in another channel of the team.
    assert_eq!(
        app.post_activity(&in_channel(app.message(START_HEALTH), OTHER_CHANNEL))
            .await
            .status(),
        200
    );
    app.run_pending_jobs().await;
    let there = app
        .store
        .active_engagement(OTHER_CHANNEL)
        .await
        .unwrap()
        .unwrap()
        .id;
    assert_ne!(here, there);

    let unknown = if here == 1 || there == 1 { 2 } else { 1 };
    let unknown = if unknown == here || unknown == there {
        3
    } else {
        unknown
    };
    for foreign in [there, unknown] {
        let before = app.connector_requests().await.len();
        let response = click(
            &app,
            &app.card_action(
                "prep.toggle",
                json!({ "engagementId": foreign, "item": "fta_aligned", "done": true }),
            ),
        )
        .await;
        assert_eq!(response["statusCode"], 200, "{response}");
        assert_eq!(
            response["type"], "application/vnd.microsoft.activity.message",
            "{response}"
        );
        let message = response["value"].as_str().unwrap();
        assert!(message.contains("can't find in this channel"), "{message}");
        assert!(
            sent_since(&app, before).await.is_empty(),
            "no card was updated"
        );
    }
    // The same click from the engagement's own channel is accepted (so the refusal was about the channel).
    let mut own = app.card_action(
        "prep.toggle",
        json!({ "engagementId": there, "item": "usage_reports", "done": true }),
    );
    own = in_channel(own, OTHER_CHANNEL);
    answered_card(&click(&app, &own).await);
    app.run_pending_jobs().await;
    assert!(stored_ticks(&app, here).await.is_empty());
    assert_eq!(
        stored_ticks(&app, there).await,
        vec![(PrepItem::UsageReports, true, "Dana Lee".to_string())]
    );

    // Closed: the checklist is frozen.
    let closed = text_of(&app.say("engagement close").await[0]);
    assert!(closed.contains("Closed"), "{closed}");
    let before = app.connector_requests().await.len();
    let response = click(
        &app,
        &app.card_action(
            "prep.toggle",
            json!({ "engagementId": here, "item": "fta_aligned", "done": true }),
        ),
    )
    .await;
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(
        response["type"], "application/vnd.microsoft.activity.message",
        "{response}"
    );
    let message = response["value"].as_str().unwrap();
    assert!(
        message.contains("closed") && message.contains("Contoso Ltd"),
        "{message}"
    );
    assert!(sent_since(&app, before).await.is_empty());
    assert!(stored_ticks(&app, here).await.is_empty());
}

#[tokio::test]
async fn the_submit_fallback_ticks_and_updates_the_card_without_posting() {
    let app = started(START_RFA).await;
    let card = prep_card(&app).await;
    let id = engagement_id_on(&card);
    let fallback = toggle_for(&card, "review_request_details")["fallback"].clone();
    assert_eq!(fallback["type"], "Action.Submit");
    assert_eq!(fallback["data"]["verb"], "prep.toggle");

    // What a client without Universal Actions sends: a message with no text, the button's data as value.
    let before = app.connector_requests().await.len();
    let mut submit = app.message("");
    submit["text"] = Value::Null;
    submit["replyToId"] = json!(CARD_MESSAGE_ID);
    submit["value"] = fallback["data"].clone();
    let response = app.post_activity(&submit).await;
    assert_eq!(response.status(), 200);
    let put = the_card_put_in_place(&app, before, &submit).await;
    let text = put.to_string();
    assert!(
        text.contains("by Dana") && text.contains("1 of 3 done"),
        "{put:#}"
    );
    assert_eq!(
        toggle_for(&put, "review_request_details")["data"]["done"],
        false
    );
    assert_eq!(
        stored_ticks(&app, id).await,
        vec![(PrepItem::ReviewRequestDetails, true, "Dana Lee".to_string())]
    );

    // The fallback may deliver the id and the state as strings.
    let before = app.connector_requests().await.len();
    let mut undo = app.message("");
    undo["text"] = Value::Null;
    undo["replyToId"] = json!(CARD_MESSAGE_ID);
    undo["value"] = json!({
        "verb": "prep.toggle", "engagementId": id.to_string(),
        "item": "review_request_details", "done": "false",
    });
    assert_eq!(app.post_activity(&undo).await.status(), 200);
    let put = the_card_put_in_place(&app, before, &undo).await;
    assert!(put.to_string().contains("0 of 3 done"), "{put:#}");
    let e = app.store.engagement(id).await.unwrap().unwrap();
    assert!(e.prep.iter().all(|t| !t.done), "{:?}", e.prep);
}

#[tokio::test]
async fn prep_needs_an_engagement_and_no_arguments() {
    let app = spawn_app().await;
    let replies = app.say("prep").await;
    assert_eq!(replies.len(), 1);
    let none = text_of(&replies[0]);
    assert!(none.contains("no active engagement"), "{none}");
    assert!(none.contains("engagement start"), "{none}");

    let app = started(START_RFA).await;
    let replies = app.say("prep extra").await;
    assert_eq!(replies.len(), 1);
    let usage = text_of(&replies[0]);
    assert!(usage.contains("extra"), "{usage}");
    assert!(usage.contains("Usage: `prep`"), "{usage}");
    assert!(cards_in(&replies[0]).is_empty(), "{usage}");
}
