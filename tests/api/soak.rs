//! The short soak: the real `fieldbot` binary (production mode, SQLite) against fakes that inject 503s,
//! 429 storms, 3-second stalls, dropped connections and refusal windows, 100 commands (help, roles, FTA
//! requests with lead approvals) re-delivered like Teams does, and one SIGKILL + restart mid-run. Every
//! effect is counted at the fakes by `x-fieldbot-idempotency-key`: nothing may happen twice, and every
//! effect of an accepted command must have happened once, or be held as an `unconfirmed` job because the
//! SIGKILL cut its unrepeatable call off mid-flight (see the assertion below). The fakes and the driver are the long soak's (`scripts/soak`), included
//! from bench/ so both check the same thing.

#[allow(dead_code)]
#[path = "../../bench/src/bin/soak/driver.rs"]
mod driver;
#[allow(dead_code)]
#[path = "../../bench/src/bin/soak/fakes.rs"]
mod fakes;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_soak_is_exactly_once_under_faults_and_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let setup = driver::Setup {
        fieldbot_bin: env!("CARGO_BIN_EXE_fieldbot").into(),
        fieldbot_dir: env!("CARGO_MANIFEST_DIR").into(),
        store_url: format!("sqlite://{}", dir.path().join("soak.db").display()),
        key_pem: include_bytes!("../fixtures/keys/key1.pem").to_vec(),
        jwk: serde_json::from_str(include_str!("../fixtures/keys/key1.jwk.json")).unwrap(),
        log_dir: dir.path().join("logs"),
        // Shorter timeouts and lease than production, so a job held by the killed process comes back
        // sooner; still longer than a 3-second stall.
        env: vec![
            ("FIELDBOT__BOT__CONNECTOR_TIMEOUT_MS".into(), "5000".into()),
            ("FIELDBOT__JOBS__LEASE_SECS".into(), "7".into()),
        ],
    };
    let plan = driver::Plan {
        commands: 100,
        channels: 10,
        concurrency: 8,
        kills: 1,
        replicas: 1,
        faults: fakes::Faults {
            // Shorter quiet spells than the long soak, so a short run sees storms and refusals; fewer
            // stalls, so that the run stays short.
            storm_every: Duration::from_secs(4),
            refuse_every: Duration::from_secs(5),
            stall: 0.015,
            ..fakes::Faults::standard()
        },
        seed: 8,
        drain_timeout: Duration::from_secs(40),
    };
    let store_url = setup.store_url.clone();
    let channels = plan.channels;
    let report = driver::run(setup, plan).await.unwrap();
    println!("{}", report.table());
    let logs = std::fs::read_to_string(dir.path().join("logs/fieldbot-0.log")).unwrap_or_default();
    let tail: Vec<&str> = logs.lines().rev().take(40).collect();
    let explain = || {
        format!(
            "{}\n{}\nfieldbot log (last lines, newest first):\n{}",
            report.table(),
            report.details(),
            tail.join("\n")
        )
    };
    // A Connector POST has no server-side idempotency key, so a SIGKILL that lands between noting such a call
    // and its outcome being recorded leaves the job held as `unconfirmed` (visible to operators, never sent
    // twice) even when the call had not reached the fake. Such an effect is held, not silently lost: every
    // missing effect must belong to a held job, and nothing may happen twice.
    let store = fieldbot::store::connect(&store_url, 1).await.unwrap();
    let held_jobs = store
        .jobs_with_status(fieldbot::store::JobStatus::Unconfirmed, 100_000)
        .await
        .unwrap();
    // A mail whose answer was lost (or whose attempt the kill cut off) is looked up by its key, which the
    // fake Graph answers: it is found or sent, never held.
    let held_mail: Vec<&str> = held_jobs
        .iter()
        .filter(|job| job.kind == "fta_email")
        .map(|job| job.idempotency_key.as_str())
        .collect();
    assert!(
        held_mail.is_empty(),
        "mail held: {held_mail:?}\n{}",
        explain()
    );
    let held: std::collections::HashSet<String> = held_jobs
        .into_iter()
        .map(|job| job.idempotency_key)
        .collect();
    let silently_lost: Vec<&String> = report
        .lost
        .iter()
        .filter(|key| !held.contains(key.split('#').next().unwrap_or_default()))
        .collect();
    assert!(
        silently_lost.is_empty(),
        "lost without a trace: {silently_lost:?}\n{}",
        explain()
    );
    assert!(report.duplicated.is_empty(), "{}", explain());
    assert!(
        report.unexpected.is_empty() && report.unkeyed.is_empty(),
        "{}",
        explain()
    );
    assert!(report.drained, "{}", explain());
    assert_eq!(report.accepted, report.commands, "{}", explain());
    assert_eq!(report.approvals_missing, 0, "{}", explain());
    // Held effects come only from the kill: a job is held when the kill fell between its note and its
    // recorded outcome, and one conversation's jobs run one at a time, so at most one per conversation (the
    // command channels and the FTA leads' channel). How many of them were mid-call depends on the moment.
    assert!(report.lost.len() <= channels + 1, "{}", explain());
    let f = &report.faults;
    assert!(
        f.error_503 > 0 && f.drops > 0 && f.stalls > 0,
        "faults were injected: {f:?}"
    );
    assert_eq!(report.kills, 1);
}
