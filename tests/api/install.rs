//! Installation: the conversation reference is stored and one welcome card is posted; uninstalls and
//! Connector answers that say the bot is gone mark the reference dead.

use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

const GENERAL: &str = TEAM;
const SELECTED: &str = "19:selected99@thread.tacv2";

fn installation_update(app: &TestApp, action: &str) -> Value {
    json!({
        "type": "installationUpdate", "action": action, "id": format!("f:{}", uuid::Uuid::new_v4()),
        "serviceUrl": app.service_url(), "channelId": "msteams",
        "from": { "id": "29:dana", "aadObjectId": "5f0c6c0e-1d2b-4c55-9a35-0d5a1b2c3d4e" },
        "recipient": { "id": BOT_ID, "name": "fieldbot" },
        "conversation": { "isGroup": true, "conversationType": "channel", "tenantId": TENANT, "id": GENERAL },
        "channelData": {
            "settings": { "selectedChannel": { "id": SELECTED } },
            "team": { "id": TEAM, "name": "Contoso account team", "aadGroupId": "0c1d2e3f-0000-4000-8000-000000000001" },
            "tenant": { "id": TENANT }
        }
    })
}

fn bot_added(app: &TestApp) -> Value {
    json!({
        "type": "conversationUpdate", "id": format!("f:{}", uuid::Uuid::new_v4()),
        "channelId": "msteams", "serviceUrl": app.service_url(),
        "membersAdded": [ { "id": BOT_ID } ],
        "from": { "id": "29:dana" }, "recipient": { "id": BOT_ID, "name": "fieldbot" },
        "conversation": { "isGroup": true, "conversationType": "channel", "id": GENERAL, "tenantId": TENANT },
        "channelData": { "eventType": "teamMemberAdded", "team": { "id": TEAM }, "tenant": { "id": TENANT } }
    })
}

#[tokio::test]
async fn installing_stores_the_reference_and_welcomes_once() {
    let app = spawn_app().await;
    assert_eq!(
        app.post_activity(&installation_update(&app, "add"))
            .await
            .status(),
        200
    );
    assert_eq!(app.post_activity(&bot_added(&app)).await.status(), 200);
    app.run_pending_jobs().await;

    let stored = app
        .store
        .conversation(GENERAL)
        .await
        .unwrap()
        .expect("reference stored");
    assert!(stored.live);
    assert_eq!(stored.reference.service_url, app.service_url());
    assert_eq!(stored.reference.tenant_id.as_deref(), Some(TENANT));
    assert_eq!(stored.reference.team_id.as_deref(), Some(TEAM));
    assert_eq!(
        stored.reference.team_name.as_deref(),
        Some("Contoso account team")
    );
    assert!(app.store.conversation(SELECTED).await.unwrap().is_some());

    let sent = app.connector_requests().await;
    assert_eq!(sent.len(), 1, "one welcome for two install activities");
    assert_eq!(sent[0].method.as_str(), "POST");
    assert_eq!(
        sent[0].url.path(),
        "/v3/conversations/19%3Aselected99%40thread.tacv2/activities"
    );
    let body: Value = serde_json::from_slice(&sent[0].body).unwrap();
    let cards = cards_in(&body);
    assert_eq!(cards.len(), 1);
    assert_valid_card(&cards[0]);
    assert!(cards[0].to_string().contains("help"));
}

#[tokio::test]
async fn uninstalling_marks_the_reference_dead() {
    let app = spawn_app().await;
    app.post_activity(&installation_update(&app, "add")).await;
    app.post_activity(&installation_update(&app, "remove"))
        .await;
    let stored = app.store.conversation(GENERAL).await.unwrap().unwrap();
    assert!(!stored.live);
    assert_eq!(stored.dead_reason.as_deref(), Some("uninstalled"));

    // Reinstalling revives it and welcomes again.
    app.post_activity(&installation_update(&app, "add")).await;
    assert!(app.store.conversation(GENERAL).await.unwrap().unwrap().live);
    app.run_pending_jobs().await;
    assert_eq!(app.connector_requests().await.len(), 2);
}

async fn reply_fails_with(
    status: u16,
    body: Value,
) -> (TestApp, fieldbot::store::StoredConversation) {
    let app = spawn_app().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/v3/conversations/.+/activities/.+$"))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .with_priority(1)
        .mount(&app.connector)
        .await;
    app.post_activity(&app.message("help")).await;
    app.run_pending_jobs().await;
    let stored = app.store.conversation(CHANNEL).await.unwrap().unwrap();
    (app, stored)
}

#[tokio::test]
async fn bot_not_in_roster_marks_the_reference_dead_without_retrying() {
    let (app, stored) = reply_fails_with(
        403,
        json!({ "error": { "code": "BotNotInConversationRoster", "message": "The bot is not part of the conversation roster." } }),
    )
    .await;
    assert!(!stored.live);
    assert_eq!(
        stored.dead_reason.as_deref(),
        Some("BotNotInConversationRoster")
    );
    assert_eq!(app.connector_requests().await.len(), 1, "no retry");
    let dead = app
        .store
        .jobs_with_status(fieldbot::store::JobStatus::Dead, 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
}

#[tokio::test]
async fn conversation_not_found_marks_the_reference_dead() {
    let (app, stored) = reply_fails_with(
        404,
        json!({ "error": { "code": "ConversationNotFound", "message": "Conversation not found." } }),
    )
    .await;
    assert!(!stored.live);
    assert_eq!(app.connector_requests().await.len(), 1);
}
