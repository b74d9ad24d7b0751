//! `fieldbot doctor` against fakes: what it finds wrong, in plain words.

use base64::Engine;
use fieldbot::doctor::{self, Status};
use serde_json::json;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

fn fake_graph_token(roles: &[&str]) -> String {
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    format!(
        "{}.{}.sig",
        b64(json!({"alg": "RS256"})),
        b64(json!({ "roles": roles }))
    )
}

#[tokio::test]
async fn doctor_names_missing_graph_permissions() {
    let app = spawn_app().await;
    // The Graph token carries only some of the application permissions fieldbot needs.
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/token")))
        .and(body_string_contains("graph.microsoft.com"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer", "expires_in": 3600,
            "access_token": fake_graph_token(&["Calendars.ReadWrite", "Mail.Send"]),
        })))
        .with_priority(1)
        .mount(&app.identity)
        .await;
    let checks = doctor::run(&app.settings).await;
    let find = |name: &str| {
        checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no {name} check: {checks:?}"))
    };
    assert_eq!(find("store").status, Status::Ok, "{:?}", find("store"));
    assert_eq!(find("bot signing keys").status, Status::Ok);
    assert_eq!(find("bot credentials").status, Status::Ok);
    let graph = find("graph permissions");
    assert_eq!(graph.status, Status::Fail);
    assert!(
        graph.detail.contains("Mail.ReadWrite") && graph.detail.contains("User.Read.All"),
        "{}",
        graph.detail
    );
    assert!(
        !graph.detail.contains("Mail.Send ("),
        "granted ones are not listed as missing: {}",
        graph.detail
    );
    assert!(
        checks
            .iter()
            .any(|c| c.name == "leads" && c.status == Status::Warn)
    );
}

#[tokio::test]
async fn doctor_explains_a_rejected_secret() {
    let app = spawn_app().await;
    app.identity.reset().await;
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/token")))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": "invalid_client",
            "error_description": "AADSTS7000222: The provided client secret keys for app are expired.",
        })))
        .mount(&app.identity)
        .await;
    let checks = doctor::run(&app.settings).await;
    let creds = checks.iter().find(|c| c.name == "bot credentials").unwrap();
    assert_eq!(creds.status, Status::Fail);
    assert!(
        creds.detail.contains("secret expired") || creds.detail.contains("bot.app_password"),
        "{}",
        creds.detail
    );
    let keys = checks
        .iter()
        .find(|c| c.name == "bot signing keys")
        .unwrap();
    assert_eq!(
        keys.status,
        Status::Fail,
        "the metadata is gone too: {}",
        keys.detail
    );
}

#[tokio::test]
async fn doctor_reports_an_unmigrated_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings =
        fieldbot::config::Settings::load_from(None, std::path::Path::new("config"), Vec::new())
            .unwrap();
    settings.store.url = format!("sqlite://{}", dir.path().join("missing.db").display());
    let checks = doctor::run(&settings).await;
    let store = checks.iter().find(|c| c.name == "store").unwrap();
    assert_eq!(store.status, Status::Fail, "{}", store.detail);
    fieldbot::store::connect(&settings.store.url, 1)
        .await
        .unwrap();
    let checks = doctor::run(&settings).await;
    assert_eq!(
        checks.iter().find(|c| c.name == "store").unwrap().status,
        Status::Ok
    );
    assert!(
        checks.iter().all(|c| c.status != Status::Fail),
        "{checks:?}"
    );
}

#[tokio::test]
async fn doctor_says_where_the_wire_log_is_and_when_there_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings =
        fieldbot::config::Settings::load_from(None, std::path::Path::new("config"), Vec::new())
            .unwrap();
    settings.store.url = format!("sqlite://{}", dir.path().join("f.db").display());
    let wire =
        |checks: Vec<doctor::Check>| checks.into_iter().find(|c| c.name == "wire log").unwrap();
    let found = wire(doctor::run(&settings).await);
    assert_eq!(found.status, Status::Ok, "{}", found.detail);
    assert!(found.detail.contains("f.db.wire"), "{}", found.detail);

    // A folder that cannot be made (its parent is a file): a warning, not a failure.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    settings.jobs.wire_log_dir = Some(file.join("wire").display().to_string());
    assert_eq!(wire(doctor::run(&settings).await).status, Status::Warn);

    settings.jobs.wire_log_dir = Some(String::new());
    let off = wire(doctor::run(&settings).await);
    assert_eq!(off.status, Status::Warn);
    assert!(
        off.detail.contains("held for an operator"),
        "{}",
        off.detail
    );
}

/// `TOKIO_WORKER_THREADS` is read before the runtime starts: a value tokio could not use is refused in a
/// sentence with exit code 2, not a panic; a good one runs the command.
#[test]
fn a_worker_thread_count_that_is_not_a_number_is_refused_plainly() {
    let run = |threads: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_fieldbot"))
            .arg("print-config")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("TOKIO_WORKER_THREADS", threads)
            .output()
            .unwrap()
    };
    for bad in ["two", "0", "-1"] {
        let out = run(bad);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(
            stderr.contains("TOKIO_WORKER_THREADS must be a whole number above 0"),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let good = run("1");
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(String::from_utf8_lossy(&good.stdout).contains("[store]"));
}
