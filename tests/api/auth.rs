//! Inbound authentication through the real router: every forged token is refused before anything is stored
//! or sent, and one valid token is accepted.

use serde_json::{Value, json};

use crate::helpers::*;

async fn assert_refused(
    app: &TestApp,
    activity: &Value,
    token: Option<&str>,
    status: u16,
    case: &str,
) {
    let response = app.post_with_token(activity, token).await;
    assert_eq!(response.status().as_u16(), status, "case: {case}");
    let body: Value = response.json().await.unwrap_or(Value::Null);
    // No detail for the caller: just a code.
    assert!(
        body["error"].get("message").is_none(),
        "case {case} leaked detail: {body}"
    );
}

fn b64(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn forged_tokens_are_refused_and_a_valid_one_accepted() {
    let app = spawn_app().await;
    let activity = app.message("help");
    let now = now_secs();
    let claims = app.claims();
    let with = |patch: Value| {
        let mut c = claims.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let hs256 = {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("k1".into());
        let key =
            jsonwebtoken::EncodingKey::from_secret(include_bytes!("../fixtures/keys/key1.pub.pem"));
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": "k1"})),
        b64(&claims)
    );

    let mut other_tenant = app.message("help");
    other_tenant["channelData"]["tenant"]["id"] = json!("ffffffff-0000-4000-8000-000000000000");
    other_tenant["conversation"]["tenantId"] = json!("ffffffff-0000-4000-8000-000000000000");

    let cases: Vec<(&str, Value, Option<String>, u16)> = vec![
        ("no header", activity.clone(), None, 401),
        ("not a JWT", activity.clone(), Some("not-a-jwt".into()), 401),
        ("alg none", activity.clone(), Some(alg_none), 401),
        (
            "HS256 with the public key",
            activity.clone(),
            Some(hs256),
            401,
        ),
        (
            "wrong iss",
            activity.clone(),
            Some(sign(
                TestKey::K1,
                &with(json!({"iss": "https://evil.example"})),
            )),
            401,
        ),
        (
            "wrong aud",
            activity.clone(),
            Some(sign(TestKey::K1, &with(json!({"aud": "someone-else"})))),
            401,
        ),
        (
            "expired beyond leeway",
            activity.clone(),
            Some(sign(
                TestKey::K1,
                &with(json!({"exp": now - 400, "nbf": now - 1000})),
            )),
            401,
        ),
        (
            "nbf beyond leeway",
            activity.clone(),
            Some(sign(TestKey::K1, &with(json!({"nbf": now + 400})))),
            401,
        ),
        (
            "unknown kid",
            activity.clone(),
            Some(sign_with_kid(TestKey::K1, "k-unknown", &claims)),
            401,
        ),
        (
            "serviceurl missing",
            activity.clone(),
            Some(sign(TestKey::K1, &with(json!({"serviceurl": null})))),
            401,
        ),
        (
            "serviceurl mismatched",
            activity.clone(),
            Some(sign(
                TestKey::K1,
                &with(json!({"serviceurl": "https://smba.trafficmanager.net/emea/"})),
            )),
            401,
        ),
        (
            "key not endorsed for msteams",
            activity.clone(),
            Some(sign(TestKey::NotTeams, &claims)),
            403,
        ),
        ("tenant not allowed", other_tenant, Some(app.token()), 403),
        (
            "exp missing",
            activity.clone(),
            Some(sign(TestKey::K1, &with(json!({"exp": null})))),
            401,
        ),
    ];
    assert!(cases.len() >= 12);
    for (case, activity, token, status) in &cases {
        assert_refused(&app, activity, token.as_deref(), *status, case).await;
    }
    // The unknown kid caused exactly one refetch of the keys (first load + one refresh).
    assert_eq!(app.identity_requests("/keys").await, 2);
    app.run_pending_jobs().await;
    assert!(
        app.connector_requests().await.is_empty(),
        "a refused request caused a reply"
    );

    // Within the 300 s leeway, and with the serviceUrl differing only in case and trailing slash: accepted.
    let lenient = with(json!({
        "exp": now - 200,
        "serviceurl": app.service_url().trim_end_matches('/').to_uppercase(),
    }));
    let response = app
        .post_with_token(&activity, Some(&sign(TestKey::K1, &lenient)))
        .await;
    assert_eq!(response.status().as_u16(), 200);
    app.run_pending_jobs().await;
    assert_eq!(app.connector_requests().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_fetched_exactly_once() {
    let app = spawn_app().await;
    assert_eq!(app.post_activity(&app.message("help")).await.status(), 200);
    assert_eq!(app.identity_requests("/keys").await, 1);

    // Microsoft publishes a new key; the next token is signed with it.
    app.identity.reset().await;
    mount_identity(&app.identity, &jwks(&[TestKey::K1, TestKey::Rotated])).await;
    let token = sign(TestKey::Rotated, &app.claims());
    let mut pending = Vec::new();
    for _ in 0..5 {
        let (http, url, body, token) = (
            app.http.clone(),
            app.url("/api/messages"),
            app.message("help"),
            token.clone(),
        );
        pending.push(tokio::spawn(async move {
            http.post(url).bearer_auth(token).json(&body).send().await
        }));
    }
    for handle in pending {
        assert_eq!(handle.await.unwrap().unwrap().status(), 200);
    }
    assert_eq!(
        app.identity_requests("/keys").await,
        1,
        "exactly one JWKS fetch after the rotation"
    );
}

#[tokio::test]
async fn a_forged_service_url_is_refused_before_anything_is_stored() {
    let app = spawn_app().await;
    let mut activity = app.message("help");
    activity["serviceUrl"] = json!("https://attacker.example/");
    let mut claims = app.claims();
    claims["serviceurl"] = json!("https://attacker.example/");
    let response = app
        .post_with_token(&activity, Some(&sign(TestKey::K1, &claims)))
        .await;
    assert_eq!(response.status(), 403);
    assert!(app.store.conversation(CHANNEL).await.unwrap().is_none());
    assert_eq!(app.run_pending_jobs().await, 0);
}

#[tokio::test]
async fn local_mode_accepts_loopback_without_a_token() {
    let app = spawn_with(Options {
        mode: Mode::Local,
        ..Options::default()
    })
    .await;
    let response = app.post_with_token(&app.message("help"), None).await;
    assert_eq!(response.status(), 200);
    app.run_pending_jobs().await;
    let sent = app.connector_requests().await;
    assert_eq!(sent.len(), 1);
    // Local mode calls the local connector without credentials.
    assert!(sent[0].headers.get("authorization").is_none());
}
