//! The webhook's edges: sizes, malformed bodies, unknown activity types, re-deliveries and the operator
//! endpoints. Nothing a client sends yields a 500.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use fieldbot::app::Application;
use fieldbot::config::Settings;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::helpers::*;

#[tokio::test]
async fn oversized_bodies_get_413_and_malformed_json_400() {
    let app = spawn_app().await;
    let mut big = app.message("help");
    big["text"] = json!("x".repeat(300 * 1024));
    let response = app.post_activity(&big).await;
    assert_eq!(response.status(), 413);

    for body in ["{not json", "[]", "42", "{\"type\": 5}", ""] {
        let response = app
            .http
            .post(app.url("/api/messages"))
            .bearer_auth(app.token())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "body {body:?}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "bad_request", "body {body:?}");
        assert!(error["error"]["message"].as_str().unwrap().len() > 5);
    }

    let mut no_service_url = app.message("help");
    no_service_url.as_object_mut().unwrap().remove("serviceUrl");
    assert_eq!(app.post_activity(&no_service_url).await.status(), 400);
    assert_eq!(app.run_pending_jobs().await, 0);
}

#[tokio::test]
async fn unknown_activity_types_are_acknowledged_and_ignored() {
    let app = spawn_app().await;
    for kind in ["typing", "messageReaction", "somethingNew", "event"] {
        let mut a = app.message("help");
        a["type"] = json!(kind);
        assert_eq!(app.post_activity(&a).await.status(), 200, "{kind}");
    }
    let mut other_invoke = app.message("");
    other_invoke["type"] = json!("invoke");
    other_invoke["name"] = json!("task/fetch");
    assert_eq!(app.post_activity(&other_invoke).await.status(), 200);
    assert_eq!(app.run_pending_jobs().await, 0);
    assert!(app.connector_requests().await.is_empty());
}

#[tokio::test]
async fn a_redelivered_activity_gets_exactly_one_reply() {
    let app = spawn_app().await;
    let activity = app.message("roles TAM");
    for _ in 0..3 {
        assert_eq!(app.post_activity(&activity).await.status(), 200);
    }
    app.run_pending_jobs().await;
    assert_eq!(app.connector_requests().await.len(), 1);
}

#[tokio::test]
async fn a_redelivered_invoke_gets_the_same_answer_without_reprocessing() {
    let app = spawn_app().await;
    let click = app.card_action("roles.show", json!({ "query": "atu" }));
    let first: Value = app.post_activity(&click).await.json().await.unwrap();
    let second: Value = app.post_activity(&click).await.json().await.unwrap();
    assert_eq!(first["statusCode"], 200);
    assert_eq!(first, second);
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = spawn_app().await;
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r: Value = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "ready");
    app.post_activity(&app.message("help")).await;
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("fieldbot_jobs{status=\"pending\"}"), "{text}");
    assert!(!text.contains("fieldbot_jobs{status=\"done\"}"), "{text}");
    assert!(text.contains("fieldbot_http_requests_total"), "{text}");
    let r = app.http.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn local_mode_refuses_requests_from_other_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings =
        Settings::load_from(None, std::path::Path::new("config"), Vec::new()).unwrap();
    settings.server.bind = "127.0.0.1:0".into();
    settings.store.url = format!("sqlite://{}", dir.path().join("x.db").display());
    let app = Application::build(settings).await.unwrap();
    let router = app.router();
    let body = json!({
        "type": "message", "id": "1", "serviceUrl": "http://127.0.0.1:9/", "channelId": "msteams",
        "conversation": { "id": "a:1" }, "text": "help"
    });
    let request = |peer: [u8; 4]| {
        router
            .clone()
            .layer(MockConnectInfo(SocketAddr::from((peer, 5555))))
            .oneshot(
                axum::http::Request::post("/api/messages")
                    .header("content-type", "application/json")
                    .body(Body::from(body.to_string()))
                    .unwrap(),
            )
    };
    assert_eq!(request([10, 0, 0, 7]).await.unwrap().status(), 401);
    assert_eq!(request([127, 0, 0, 1]).await.unwrap().status(), 200);
}

#[test]
fn local_mode_refuses_to_start_on_a_public_address() {
    let err = Settings::load_from(
        None,
        std::path::Path::new("config"),
        vec![("FIELDBOT__SERVER__BIND".into(), "0.0.0.0:3978".into())],
    )
    .unwrap_err();
    assert!(err.to_string().contains("without bot credentials"));
}
