//! `spawn_app`: the real application on port 0, its store fresh per test (a SQLite file or a PostgreSQL
//! database), and every Microsoft endpoint replaced by a wiremock server: OpenID metadata + JWKS + token
//! endpoint ("identity") and the Bot Connector. Tokens are signed with the test keys the fake JWKS publishes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use fieldbot::app::Application;
use fieldbot::clock::Clock;
use fieldbot::config::Settings;
use fieldbot::jobs::Worker;
use fieldbot::store::Store;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

pub const APP_ID: &str = "11111111-2222-3333-4444-555555555555";
pub const BOT_ID: &str = "28:11111111-2222-3333-4444-555555555555";
pub const TENANT: &str = "8d3e1c2a-0000-4000-8000-00000000aaaa";
pub const ISSUER: &str = "https://api.botframework.com";
pub const CONNECTOR_TOKEN: &str = "test-connector-token";
pub const CHANNEL: &str = "19:c0ffee11aa@thread.tacv2";
pub const TEAM: &str = "19:beef22bb@thread.tacv2";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Production,
    Local,
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub identity: MockServer,
    pub connector: MockServer,
    pub worker: Worker,
    pub store: Arc<dyn Store>,
    pub clock: Clock,
    pub settings: Settings,
    pub db: TestDb,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Where this test's data lives; kept alive (and reusable for a restart) for the test's duration.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A handle on a database another `TestDb` owns (a second replica).
    pub fn shared(url: &str) -> TestDb {
        TestDb {
            url: url.to_string(),
            _dir: None,
        }
    }

    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let file: PathBuf = dir.path().join("fieldbot.db");
                TestDb {
                    url: format!("sqlite://{}", file.display()),
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => TestDb {
                url: fresh_postgres_database().await,
                _dir: None,
            },
        }
    }
}

/// A new, empty database on the server named by FIELDBOT_TEST_DATABASE_URL (scripts/test sets it). Fails —
/// never skips — when the server cannot be reached.
pub async fn fresh_postgres_database() -> String {
    use sqlx::Connection;
    let admin = std::env::var("FIELDBOT_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://fieldbot:fieldbot@127.0.0.1:5432/postgres".into());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL tests need a server (run scripts/test, which starts one): {e}")
        });
    let name = format!("fieldbot_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let mut url = url::Url::parse(&admin).expect("admin url");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// A last change to the settings before the application is built.
pub type SettingsTweak = Box<dyn FnOnce(&mut Settings)>;

pub struct Options {
    pub backend: Backend,
    pub mode: Mode,
    pub run_worker: bool,
    pub db: Option<TestDb>,
    pub identity: Option<MockServer>,
    pub connector: Option<MockServer>,
    pub tweak: Option<SettingsTweak>,
    /// Share one clock between applications (replicas), so a test can expire leases.
    pub clock: Option<Clock>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backend: Backend::Sqlite,
            mode: Mode::Production,
            run_worker: false,
            db: None,
            identity: None,
            connector: None,
            tweak: None,
            clock: None,
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_with(Options::default()).await
}

pub async fn spawn_with(options: Options) -> TestApp {
    init_test_logging();
    let identity = match options.identity {
        Some(s) => s,
        None => {
            let s = MockServer::start().await;
            mount_identity(&s, &jwks(&[TestKey::K1, TestKey::NotTeams])).await;
            s
        }
    };
    let connector = match options.connector {
        Some(s) => s,
        None => {
            let s = MockServer::start().await;
            mount_connector_ok(&s).await;
            s
        }
    };
    let db = match options.db {
        Some(db) => db,
        None => TestDb::new(options.backend).await,
    };
    let mut settings = Settings::load_from(None, std::path::Path::new("config"), Vec::new())
        .expect("default settings");
    settings.server.bind = "127.0.0.1:0".into();
    settings.store.url = db.url.clone();
    settings.store.max_connections = 4;
    settings.bot.openid_metadata_url = format!("{}/openid", identity.uri());
    settings.bot.token_url = format!("{}/{{tenant_id}}/token", identity.uri());
    settings.bot.allowed_service_hosts = vec!["127.0.0.1".into()];
    settings.bot.connector_timeout_ms = 2000;
    settings.graph.base_url = format!("{}/graph", identity.uri());
    settings.graph.token_url = format!("{}/{{tenant_id}}/token", identity.uri());
    settings.jobs.run_worker = options.run_worker;
    settings.jobs.backoff_base_ms = 100;
    settings.jobs.poll_interval_ms = 50;
    settings.jobs.max_attempts = 5;
    if options.mode == Mode::Production {
        settings.bot.app_id = APP_ID.into();
        settings.bot.app_password = secrecy::SecretString::from("test-app-password".to_string());
        settings.bot.tenant_id = TENANT.into();
    }
    if let Some(tweak) = options.tweak {
        tweak(&mut settings);
    }
    let clock = options.clock.unwrap_or_default();
    let app = Application::build_with_clock(settings.clone(), clock.clone())
        .await
        .expect("application builds");
    let addr = app.local_addr();
    let worker = app.worker();
    let store = app.store();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        http: reqwest::Client::new(),
        identity,
        connector,
        worker,
        store,
        clock,
        settings,
        db,
        shutdown: Some(tx),
        server: Some(server),
    }
}

impl TestApp {
    pub fn url(&self, p: &str) -> String {
        format!("http://{}{}", self.addr, p)
    }

    pub fn service_url(&self) -> String {
        format!("{}/", self.connector.uri())
    }

    /// A valid Bot Framework token for this app and the given serviceUrl.
    pub fn token(&self) -> String {
        sign(TestKey::K1, &self.claims())
    }

    pub fn claims(&self) -> Value {
        let now = now_secs();
        json!({
            "iss": ISSUER, "aud": APP_ID, "nbf": now - 10, "exp": now + 3600,
            "serviceurl": self.service_url(), "tid": TENANT,
        })
    }

    pub async fn post_activity(&self, activity: &Value) -> reqwest::Response {
        self.post_with_token(activity, Some(&self.token())).await
    }

    pub async fn post_with_token(
        &self,
        activity: &Value,
        token: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self.http.post(self.url("/api/messages")).json(activity);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request sent")
    }

    /// A channel message that @mentions the bot, as Teams sends it.
    pub fn message(&self, text: &str) -> Value {
        json!({
            "type": "message",
            "id": uuid::Uuid::new_v4().to_string(),
            "timestamp": "2026-11-23T10:15:30.123Z",
            "serviceUrl": self.service_url(),
            "channelId": "msteams",
            "from": { "id": "29:dana", "name": "Dana Lee", "aadObjectId": "5f0c6c0e-1d2b-4c55-9a35-0d5a1b2c3d4e" },
            "conversation": { "isGroup": true, "conversationType": "channel", "tenantId": TENANT,
                              "id": format!("{CHANNEL};messageid=1732270530123") },
            "recipient": { "id": BOT_ID, "name": "fieldbot" },
            "textFormat": "plain",
            "text": format!("<at>fieldbot</at> {text}"),
            "entities": [
                { "type": "mention", "text": "<at>fieldbot</at>", "mentioned": { "id": BOT_ID, "name": "fieldbot" } },
                { "type": "clientInfo", "locale": "en-US", "platform": "Web" }
            ],
            "channelData": {
                "teamsChannelId": CHANNEL, "teamsTeamId": TEAM,
                "channel": { "id": CHANNEL }, "team": { "id": TEAM }, "tenant": { "id": TENANT }
            },
            "locale": "en-US"
        })
    }

    /// An Adaptive Card Universal Action click.
    pub fn card_action(&self, verb: &str, data: Value) -> Value {
        let mut a = self.message("");
        a["type"] = json!("invoke");
        a["name"] = json!("adaptiveCard/action");
        a["text"] = Value::Null;
        a["replyToId"] = json!("1732270599000");
        a["value"] = json!({ "action": { "type": "Action.Execute", "verb": verb, "data": data }, "trigger": "manual" });
        a
    }

    pub async fn run_pending_jobs(&self) -> usize {
        self.worker.drain().await.expect("drain jobs")
    }

    /// Sends a command as Dana in the test channel, drains the queue, and returns what the bot posted in
    /// answer (every activity the Connector received since the call).
    pub async fn say(&self, text: &str) -> Vec<Value> {
        let before = self.connector_requests().await.len();
        let response = self.post_activity(&self.message(text)).await;
        assert_eq!(response.status(), 200, "{text}");
        self.run_pending_jobs().await;
        self.connector_requests()
            .await
            .into_iter()
            .skip(before)
            .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
            .collect()
    }

    /// Requests the fake Graph received (under `/graph/`).
    pub async fn graph_requests(&self) -> Vec<Request> {
        self.identity
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path().starts_with("/graph/"))
            .collect()
    }

    /// Requests the fake Connector received on its `/v3/` API.
    pub async fn connector_requests(&self) -> Vec<Request> {
        self.connector
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path().starts_with("/v3/"))
            .collect()
    }

    pub async fn identity_requests(&self, p: &str) -> usize {
        self.identity
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path() == p)
            .count()
    }

    /// Stops the server and returns what a restart needs.
    pub async fn stop(mut self) -> (TestDb, MockServer, MockServer) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        (self.db, self.identity, self.connector)
    }
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

#[derive(Clone, Copy, Debug)]
pub enum TestKey {
    /// Endorsed for msteams.
    K1,
    /// Endorsed for another channel only.
    NotTeams,
    /// Published only after a key rotation.
    Rotated,
}

impl TestKey {
    pub fn kid(self) -> &'static str {
        match self {
            TestKey::K1 => "k1",
            TestKey::NotTeams => "k-webchat",
            TestKey::Rotated => "k-rotated",
        }
    }

    fn pem(self) -> &'static [u8] {
        match self {
            TestKey::K1 | TestKey::NotTeams => include_bytes!("../fixtures/keys/key1.pem"),
            TestKey::Rotated => include_bytes!("../fixtures/keys/key2.pem"),
        }
    }

    fn jwk(self) -> Value {
        let raw = match self {
            TestKey::K1 | TestKey::NotTeams => include_str!("../fixtures/keys/key1.jwk.json"),
            TestKey::Rotated => include_str!("../fixtures/keys/key2.jwk.json"),
        };
        let mut jwk: Value = serde_json::from_str(raw).expect("jwk fixture");
        jwk["kid"] = json!(self.kid());
        jwk["use"] = json!("sig");
        jwk["endorsements"] = match self {
            TestKey::NotTeams => json!(["webchat"]),
            _ => json!(["msteams", "emulator"]),
        };
        jwk
    }
}

pub fn sign(key: TestKey, claims: &Value) -> String {
    sign_with_kid(key, key.kid(), claims)
}

pub fn sign_with_kid(key: TestKey, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_string());
    let encoding = EncodingKey::from_rsa_pem(key.pem()).expect("test key");
    jsonwebtoken::encode(&header, claims, &encoding).expect("sign")
}

pub fn jwks(keys: &[TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

pub async fn mount_identity(server: &MockServer, keys: &Value) {
    Mock::given(method("GET"))
        .and(path("/openid"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": ISSUER,
            "jwks_uri": format!("{}/keys", server.uri()),
            "id_token_signing_alg_values_supported": ["RS256"],
        })))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/keys"))
        .respond_with(ResponseTemplate::new(200).set_body_json(keys.clone()))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/token")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer", "expires_in": 3600, "ext_expires_in": 3600,
            "access_token": CONNECTOR_TOKEN,
        })))
        .mount(server)
        .await;
}

/// The default Connector: every send, reply and update succeeds.
pub async fn mount_connector_ok(server: &MockServer) {
    Mock::given(path_regex(r"^/v3/conversations/[^/]+/activities(/[^/]+)?$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": "1732270600000" })))
        .with_priority(10)
        .mount(server)
        .await;
}

/// The Adaptive Cards inside an outbound activity.
pub fn cards_in(body: &Value) -> Vec<Value> {
    body["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["contentType"] == "application/vnd.microsoft.card.adaptive")
        .map(|a| a["content"].clone())
        .collect()
}

/// Validates a card against the official Adaptive Card 1.5 schema (without the Teams `msteams` key, which
/// the schema does not know) and checks the rules Teams adds: every Action.Execute has a verb.
pub fn assert_valid_card(card: &Value) {
    static SCHEMA: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    let validator = SCHEMA.get_or_init(|| {
        let schema: Value = serde_json::from_str(include_str!("../schemas/adaptive-card-1.5.json"))
            .expect("schema");
        jsonschema::draft6::new(&schema).expect("schema compiles")
    });
    let mut copy = card.clone();
    if let Some(o) = copy.as_object_mut() {
        o.remove("msteams");
    }
    let errors: Vec<String> = validator
        .iter_errors(&copy)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "card invalid: {errors:?}\n{card:#}");
    assert!(card.to_string().len() < 28 * 1024, "card over 28 KB");
    assert_execute_has_verbs(card);
}

fn assert_execute_has_verbs(v: &Value) {
    match v {
        Value::Object(o) => {
            if o.get("type").and_then(Value::as_str) == Some("Action.Execute") {
                let verb = o.get("verb").and_then(Value::as_str).unwrap_or_default();
                assert!(!verb.is_empty(), "Action.Execute without verb: {v}");
            }
            o.values().for_each(assert_execute_has_verbs);
        }
        Value::Array(a) => a.iter().for_each(assert_execute_has_verbs),
        _ => {}
    }
}

/// Every card in every activity the Connector received is valid.
pub async fn assert_all_sent_cards_valid(app: &TestApp) {
    for r in app.connector_requests().await {
        if let Ok(body) = serde_json::from_slice::<Value>(&r.body) {
            let activity = body.get("activity").cloned().unwrap_or(body);
            for card in cards_in(&activity) {
                assert_valid_card(&card);
            }
        }
    }
}

fn init_test_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var("TEST_LOG").is_ok() {
            let settings = fieldbot::config::TelemetrySettings {
                filter: "debug".into(),
                format: fieldbot::config::LogFormat::Pretty,
                otlp_endpoint: String::new(),
            };
            // Kept for the whole test run.
            std::mem::forget(fieldbot::telemetry::init_tracing(
                &settings,
                std::io::stdout,
            ));
        }
    });
}

/// The text of an outbound activity: its `text`, or the text of its card.
pub fn text_of(activity: &Value) -> String {
    let mut out = activity["text"].as_str().unwrap_or_default().to_string();
    for card in cards_in(activity) {
        assert_valid_card(&card);
        out.push_str(&card.to_string());
    }
    out
}

/// Validates a request body fieldbot sent to Graph against `tests/schemas/graph-openapi-subset.json`:
/// `schema` is a component (`event`, `message`) or a POST path whose action body the subset closes
/// (`/users/{user-id}/calendar/getSchedule`). Component schemas are closed here and lose the properties
/// Graph sets itself, so a typo or a read-only field in what we send fails.
pub fn assert_graph_body(schema: &str, body: &Value) {
    static DOC: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(|| {
        serde_json::from_str(include_str!("../schemas/graph-openapi-subset.json")).expect("subset")
    });
    let mut components = doc["components"].clone();
    for component in components["schemas"]
        .as_object_mut()
        .expect("schemas")
        .values_mut()
    {
        // Left out of the subset as a navigation property; a job's mail carries its key in it.
        let tagged = component["x-omitted-navigation-properties"]
            .as_array()
            .is_some_and(|o| o.contains(&json!("singleValueExtendedProperties")));
        if let Some(props) = component
            .get_mut("properties")
            .and_then(Value::as_object_mut)
        {
            if tagged {
                props.insert(
                    "singleValueExtendedProperties".to_owned(),
                    json!({ "type": "array", "maxItems": 1, "items": {
                        "type": "object",
                        "properties": {
                            "id": { "const": "String {6f0c9a52-3b1e-4d57-9a8e-2c41f7d05b93} Name FieldbotIdempotencyKey" },
                            "value": { "type": "string", "minLength": 1 }
                        },
                        "required": ["id", "value"],
                        "additionalProperties": false
                    }}),
                );
            }
            for server_set in [
                "id",
                "changeKey",
                "createdDateTime",
                "lastModifiedDateTime",
                "webLink",
                "iCalUId",
                "onlineMeeting",
                "isDraft",
            ] {
                props.remove(server_set);
            }
            component["additionalProperties"] = json!(false);
        }
    }
    let mut root = if schema.starts_with('/') {
        doc["paths"][schema]["post"]["requestBody"]["content"]["application/json"]["schema"].clone()
    } else {
        json!({ "$ref": format!("#/components/schemas/microsoft.graph.{schema}") })
    };
    assert!(root.is_object(), "no schema {schema}");
    root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    root["components"] = components;
    let validator = jsonschema::draft202012::new(&root).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{schema} body invalid: {errors:#?}\n{body:#}"
    );
}
