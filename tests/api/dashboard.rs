//! The dashboard and `/api/fta-requests`: filters, the audit history, who may see them, and a real browser
//! (headless Chromium) finding a submitted request on the page.

use std::process::Command;

use serde_json::Value;

use crate::helpers::*;

const FORM: &str = "fta request tpid:12345 tenant:contoso.onmicrosoft.com partner:none users:900 type:non-ecif stage:70 event:\"Committed to Office 365\" segment:enterprise entitlements:o365";

/// A local-mode app (no token, loopback, dry-run Graph) with one filed request for "Contoso <b>Ltd</b>".
async fn local_with_request() -> TestApp {
    let app = spawn_with(Options {
        mode: Mode::Local,
        ..Options::default()
    })
    .await;
    for text in [
        "engagement start \"Contoso <b>Ltd</b>\" motion:health",
        FORM,
    ] {
        assert_eq!(
            app.post_with_token(&app.message(text), None).await.status(),
            200
        );
        app.run_pending_jobs().await;
    }
    app
}

#[tokio::test]
async fn the_dashboard_lists_requests_with_their_history_and_filters() {
    let app = local_with_request().await;
    let page = app.http.get(app.url("/dashboard")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("Contoso &lt;b&gt;Ltd"), "escaped customer");
    assert!(!html.contains("<b>Ltd</b>"));
    assert!(
        html.contains("Submitted") && html.contains("Dana Lee"),
        "status and requestor"
    );
    assert!(html.contains("<details"), "audit history");
    assert!(!html.contains("<script"), "readable without JavaScript");

    let assigned = app
        .http
        .get(app.url("/dashboard?status=assigned"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !assigned.contains("Contoso &lt;b&gt;"),
        "filtered out by status"
    );
    let older = app
        .http
        .get(app.url("/dashboard?status=all&min_age_days=3"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!older.contains("Contoso &lt;b&gt;"), "filtered out by age");
    let bad = app
        .http
        .get(app.url("/dashboard?status=bogus"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let api: Value = app
        .http
        .get(app.url("/api/fta-requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let requests = api["fta_requests"].as_array().unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["status"], "submitted");
    assert_eq!(requests[0]["history"][0]["action"], "submit");
    assert_eq!(requests[0]["details"]["sales_stage"], 70);
    let none: Value = app
        .http
        .get(app.url("/api/fta-requests?status=declined"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(none["fta_requests"].as_array().unwrap().is_empty());
    let bad = app
        .http
        .get(app.url("/api/fta-requests?min_age_days=soon"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(
        bad.json::<Value>().await.unwrap()["error"]["code"],
        "bad_request"
    );
}

#[tokio::test]
async fn production_requires_sign_in() {
    let app = spawn_app().await;
    for p in ["/dashboard", "/api/fta-requests"] {
        assert_eq!(
            app.http.get(app.url(p)).send().await.unwrap().status(),
            401,
            "{p}"
        );
    }

    // With sign-in configured, a browser is sent to Entra ID (authorization code with PKCE).
    let app = spawn_with(Options {
        tweak: Some(Box::new(|s| {
            s.signin.public_base_url = "https://fieldbot.contoso.example".into();
            s.signin.session_key = secrecy::SecretString::from("k".repeat(48));
            s.signin.authority = "https://login.example.test".into();
        })),
        ..Options::default()
    })
    .await;
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirect
        .get(app.url("/dashboard?status=all"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!(
            "https://login.example.test/{TENANT}/oauth2/v2.0/authorize?"
        )),
        "{location}"
    );
    assert!(
        location.contains("code_challenge_method=S256") && location.contains("code_challenge="),
        "{location}"
    );
    assert!(
        location.contains("redirect_uri=https%3A%2F%2Ffieldbot.contoso.example%2Fauth%2Fcallback"),
        "{location}"
    );
    // The JSON API answers 401 rather than redirecting, and a forged cookie changes nothing.
    let api = no_redirect
        .get(app.url("/api/fta-requests"))
        .header("cookie", "__Host-fieldbot_session=eyJhbGciOiJub25lIn0.e30.")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);
}

#[tokio::test]
async fn a_browser_finds_the_submitted_request_on_the_dashboard() {
    let app = local_with_request().await;
    let profile = tempfile::tempdir().unwrap();
    let url = app.url("/dashboard");
    let dom = tokio::task::spawn_blocking(move || {
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                &format!("--user-data-dir={}", profile.path().display()),
                "--virtual-time-budget=2000",
                "--dump-dom",
                &url,
            ])
            .output()
    })
    .await
    .unwrap()
    .expect("headless Chromium must be installed (scripts/test installs it)");
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("Contoso &lt;b&gt;Ltd&lt;/b&gt;"),
        "the request is on the page: {dom}"
    );
    assert!(dom.contains("Submitted"), "{dom}");
}
