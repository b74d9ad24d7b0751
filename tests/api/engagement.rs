//! `engagement` and `team` through the webhook, with the Connector member lookup and Graph user lookup
//! answered by the fakes.

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

const START: &str =
    "engagement start \"Contoso Ltd\" motion:rfa tpid:12345 tenant:contoso.onmicrosoft.com";

async fn started() -> TestApp {
    let app = spawn_app().await;
    let replies = app.say(START).await;
    assert_eq!(replies.len(), 1);
    let text = text_of(&replies[0]);
    assert!(text.contains("Contoso Ltd"), "{text}");
    app
}

async fn mount_user(app: &TestApp, email: &str, name: &str) {
    Mock::given(method("GET"))
        .and(path(format!("/graph/users/{}", email.replace('@', "%40"))))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": format!("oid-{name}"), "displayName": name, "mail": email, "userPrincipalName": email,
        })))
        .mount(&app.identity)
        .await;
}

#[tokio::test]
async fn an_engagement_starts_once_per_channel_and_closes() {
    let app = started().await;
    let again = text_of(&app.say(START).await[0]);
    assert!(
        again.contains("already has an active engagement"),
        "{again}"
    );
    assert!(again.contains("Contoso Ltd"), "{again}");

    let summary = text_of(&app.say("engagement").await[0]);
    assert!(
        summary.contains("Contoso Ltd") && summary.contains("12345"),
        "{summary}"
    );
    assert!(
        summary.contains("ATS"),
        "flags the missing mandatory roles: {summary}"
    );

    let closed = text_of(&app.say("engagement close").await[0]);
    assert!(closed.contains("Closed"), "{closed}");
    let none = text_of(&app.say("engagement").await[0]);
    assert!(none.contains("no active engagement"), "{none}");
    // A new one may start after the close.
    let restarted = text_of(&app.say(START).await[0]);
    assert!(
        !restarted.contains("already has an active engagement"),
        "{restarted}"
    );
}

#[tokio::test]
async fn team_add_by_email_resolves_through_graph() {
    let app = started().await;
    mount_user(&app, "tom@contoso.com", "Tom Tam").await;
    let replies = app.say("team add TAM Tom@Contoso.com").await;
    assert_eq!(replies.len(), 1);
    let roster = text_of(&replies[0]);
    assert!(roster.contains("Tom Tam"), "{roster}");
    let graph = app.graph_requests().await;
    assert_eq!(graph.len(), 1);
    assert_eq!(graph[0].url.path(), "/graph/users/tom%40contoso.com");
    assert_eq!(
        graph[0]
            .headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap(),
        format!("Bearer {CONNECTOR_TOKEN}")
    );
    let e = app.store.active_engagement(CHANNEL).await.unwrap().unwrap();
    assert_eq!(e.roster.len(), 1);
    assert_eq!(
        e.roster[0].person.aad_object_id.as_deref(),
        Some("oid-Tom Tam")
    );

    // `team` shows the roster and still flags the missing ATS.
    let shown = text_of(&app.say("team").await[0]);
    assert!(
        shown.contains("Tom Tam") && shown.contains("ATS"),
        "{shown}"
    );

    let removed = text_of(&app.say("team remove TAM tom@contoso.com").await[0]);
    assert!(!removed.contains("Tom Tam"), "{removed}");
    assert!(
        app.store
            .active_engagement(CHANNEL)
            .await
            .unwrap()
            .unwrap()
            .roster
            .is_empty()
    );
}

#[tokio::test]
async fn team_add_by_mention_resolves_through_the_connector() {
    let app = started().await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/v3/conversations/{}/members/29%3Aada",
            CHANNEL.replace(':', "%3A").replace('@', "%40")
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "29:ada", "name": "Ada Ats", "aadObjectId": "oid-ada", "email": "ada@contoso.com",
            "userPrincipalName": "ada@contoso.com",
        })))
        .mount(&app.connector)
        .await;
    let mut message = app.message("team add ATS <at>Ada Ats</at>");
    message["entities"].as_array_mut().unwrap().push(json!({
        "type": "mention", "text": "<at>Ada Ats</at>", "mentioned": { "id": "29:ada", "name": "Ada Ats" }
    }));
    assert_eq!(app.post_activity(&message).await.status(), 200);
    app.run_pending_jobs().await;
    let e = app.store.active_engagement(CHANNEL).await.unwrap().unwrap();
    assert_eq!(e.roster.len(), 1);
    let ada = &e.roster[0].person;
    assert_eq!(
        (
            ada.email.as_deref(),
            ada.aad_object_id.as_deref(),
            ada.teams_id.as_deref()
        ),
        (Some("ada@contoso.com"), Some("oid-ada"), Some("29:ada"))
    );
}

#[tokio::test]
async fn team_errors_are_specific() {
    let app = spawn_app().await;
    let outside = text_of(&app.say("team add TAM tom@contoso.com").await[0]);
    assert!(outside.contains("no active engagement"), "{outside}");

    let app = started().await;
    let unknown_role = text_of(&app.say("team add XYZ tom@contoso.com").await[0]);
    assert!(
        unknown_role.contains("XYZ") && unknown_role.contains("Usage"),
        "{unknown_role}"
    );
    let bad_email = text_of(&app.say("team add TAM tom-at-contoso").await[0]);
    assert!(bad_email.contains("email"), "{bad_email}");

    // Graph says the person does not exist: a plain sentence, nothing added.
    Mock::given(method("GET"))
        .and(path("/graph/users/ghost%40contoso.com"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "error": { "code": "Request_ResourceNotFound", "message": "Resource 'ghost@contoso.com' does not exist." }
        })))
        .mount(&app.identity)
        .await;
    let ghost = text_of(&app.say("team add TAM ghost@contoso.com").await[0]);
    assert!(ghost.contains("ghost@contoso.com"), "{ghost}");
    assert!(
        app.store
            .active_engagement(CHANNEL)
            .await
            .unwrap()
            .unwrap()
            .roster
            .is_empty()
    );

    let nobody = text_of(&app.say("team remove AE").await[0]);
    assert!(nobody.contains("Nobody holds AE"), "{nobody}");
}
