//! Throttling benchmark (issue 8, item 4): 300 Graph `sendMail` jobs for one mailbox against a fake Graph that
//! enforces Exchange's 30 messages per minute per sender with 429 + `Retry-After`. Target: everything
//! delivered in at most 1.2x the minimum time the limit allows, nothing dead-lettered, nothing sent twice.
//!
//! Self-contained: one fake on loopback serves everything fieldbot calls in production mode (OpenID metadata,
//! JWKS, the token endpoint for both the Connector and Graph, the Bot Connector, and Graph), fieldbot runs as
//! a child process with a fresh SQLite database, and the mails are caused through the product: FTA requests
//! filed through the webhook in several channels, each mailed to its requestor from
//! `fasttrack.mail_sender`. `scripts/throttle` builds and runs this.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

const APP_ID: &str = "0f6c2f39-6a0e-4a55-9d7e-4c1b6f3e2a10";
const TENANT_ID: &str = "8d3e1c2a-0000-4000-8000-00000000aaaa";
const ISSUER: &str = "https://api.botframework.com";
const FAKE_TOKEN: &str = "throttle-bench-token";
const SENDER: &str = "fieldbot-notify@contoso.com";
const REQUESTOR_OID: &str = "5f0c6c0e-1d2b-4c55-9a35-0d5a1b2c3d4e";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const TARGET_RATIO: f64 = 1.2;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "throttle",
    about = "sendMail jobs for one mailbox against a fake Graph that rate-limits the sender",
    args_override_self = true
)]
struct Args {
    /// The fieldbot release binary.
    #[arg(long)]
    fieldbot_bin: PathBuf,
    /// fieldbot's working directory (must contain config/).
    #[arg(long, default_value = ".")]
    fieldbot_dir: PathBuf,
    /// What the fieldbot binary was built from, for the report.
    #[arg(long, default_value = "unknown")]
    fieldbot_commit: String,
    /// Directory with key1.pem and key1.jwk.json (the repository's test keys).
    #[arg(long, default_value = "tests/fixtures/keys")]
    keys_dir: PathBuf,
    /// Where fieldbot's SQLite database and log go.
    #[arg(long)]
    store_dir: PathBuf,
    /// How many mails (FTA requests, one requestor email each).
    #[arg(long, default_value_t = 300)]
    mails: usize,
    /// Spread the requests over this many Teams channels (one engagement each); one channel's jobs run in
    /// order, so more channels means concurrent sends racing for the same mailbox.
    #[arg(long, default_value_t = 10)]
    channels: usize,
    /// The fake's sending limit: this many messages per sender in any window.
    #[arg(long, default_value_t = 30)]
    limit: usize,
    /// The window, in seconds (sliding: no `window_secs` span ever holds more than `limit` accepted mails).
    #[arg(long, default_value_t = 60)]
    window_secs: u64,
    /// Give up waiting for delivery after this long.
    #[arg(long, default_value_t = 1800)]
    timeout_secs: u64,
    /// Extra environment for fieldbot, KEY=VALUE (repeatable), e.g. FIELDBOT__TELEMETRY__FILTER=info.
    #[arg(long = "fieldbot-env", value_parser = parse_env)]
    fieldbot_env: Vec<(String, String)>,
    /// The Markdown report.
    #[arg(long, default_value = "bench/results/throttle-latest.md")]
    out: PathBuf,
    /// fieldbot's pid is appended here, so the calling script can clean up after a crash.
    #[arg(long)]
    pid_file: Option<PathBuf>,
}

fn parse_env(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected KEY=VALUE, got {raw:?}"))
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("throttle: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async move {
        tokio::select! {
            result = run(args) => result,
            // Dropping `run` drops fieldbot's Child handle, which kills it (kill_on_drop).
            _ = terminated() => bail!("interrupted"),
        }
    });
    match outcome {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("throttle: a target was missed (see above)");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("throttle: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

// ---- the fake Microsoft endpoints ----

#[derive(Default)]
struct Mail {
    /// Per sender (the `/users/{id}` segment): when its accepted mails in the current window were accepted.
    windows: HashMap<String, VecDeque<Instant>>,
    /// Subject -> how many times a mail with it was accepted.
    subjects: HashMap<String, u32>,
    accepted: u64,
    throttled: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

struct Fake {
    jwks: Bytes,
    metadata: Bytes,
    limit: usize,
    window: Duration,
    mail: Mutex<Mail>,
    threads: AtomicU64,
    unexpected: AtomicU64,
}

/// A poisoned lock only means another handler panicked mid-update of a counter; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn respond(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn bytes_response(body: &Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.clone()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

impl Fake {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let authorized = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == format!("Bearer {FAKE_TOKEN}"));
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        match (&method, path.as_str()) {
            (&Method::GET, "/openid") => bytes_response(&self.metadata),
            (&Method::GET, "/keys") => bytes_response(&self.jwks),
            (&Method::POST, p) if p.ends_with("/token") => respond(
                StatusCode::OK,
                json!({ "token_type": "Bearer", "expires_in": 3600, "ext_expires_in": 3600,
                        "access_token": FAKE_TOKEN }),
            ),
            _ if !authorized => respond(StatusCode::UNAUTHORIZED, json!({})),
            // The FTA request's status card starts a new thread.
            (&Method::POST, "/v3/conversations") => {
                let n = self.threads.fetch_add(1, Ordering::Relaxed) + 1;
                respond(
                    StatusCode::CREATED,
                    json!({ "id": format!("19:thread@thread.tacv2;messageid={n}"), "activityId": n.to_string() }),
                )
            }
            (&Method::POST | &Method::PUT, p) if p.starts_with("/v3/conversations/") => {
                respond(StatusCode::OK, json!({ "id": "1" }))
            }
            (&Method::POST, p) if p.starts_with("/graph/users/") && p.ends_with("/sendMail") => {
                let sender = p
                    .trim_start_matches("/graph/users/")
                    .trim_end_matches("/sendMail")
                    .to_lowercase();
                self.send_mail(&sender, &body)
            }
            // The requestor's address (Teams gives fieldbot an object id only).
            (&Method::GET, p) if p.starts_with("/graph/users/") => respond(
                StatusCode::OK,
                json!({ "id": REQUESTOR_OID, "displayName": "Dana Lee",
                        "mail": "dana@contoso.com", "userPrincipalName": "dana@contoso.com" }),
            ),
            _ => {
                self.unexpected.fetch_add(1, Ordering::Relaxed);
                eprintln!("fake: unexpected {method} {path}");
                respond(StatusCode::NOT_FOUND, json!({}))
            }
        }
    }

    /// Exchange's sending limit: at most `limit` messages per sender in any `window` (sliding); beyond it
    /// 429 with `Retry-After` = whole seconds until the oldest accepted mail leaves the window.
    fn send_mail(&self, sender: &str, body: &Bytes) -> Response<Full<Bytes>> {
        let now = Instant::now();
        let mut mail = lock(&self.mail);
        let window = mail.windows.entry(sender.to_owned()).or_default();
        while window
            .front()
            .is_some_and(|at| now.duration_since(*at) >= self.window)
        {
            window.pop_front();
        }
        if window.len() >= self.limit {
            let wait = window
                .front()
                .map(|oldest| self.window.saturating_sub(now.duration_since(*oldest)))
                .unwrap_or(self.window);
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            mail.throttled += 1;
            let mut response = respond(
                StatusCode::TOO_MANY_REQUESTS,
                json!({ "error": { "code": "ApplicationThrottled",
                                   "message": "Message rate limit exceeded for this sender." } }),
            );
            response.headers_mut().insert(
                RETRY_AFTER,
                HeaderValue::from_str(&secs.max(1).to_string())
                    .unwrap_or(HeaderValue::from_static("1")),
            );
            return response;
        }
        window.push_back(now);
        let subject = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["message"]["subject"].as_str().map(str::to_owned))
            .unwrap_or_default();
        *mail.subjects.entry(subject).or_insert(0) += 1;
        mail.accepted += 1;
        mail.first.get_or_insert(now);
        mail.last = Some(now);
        respond(StatusCode::ACCEPTED, json!({}))
    }
}

async fn start_fake(jwk: Value, limit: usize, window: Duration) -> Result<(SocketAddr, Arc<Fake>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut jwk = jwk;
    jwk["kid"] = json!("k1");
    jwk["use"] = json!("sig");
    jwk["alg"] = json!("RS256");
    jwk["endorsements"] = json!(["msteams"]);
    let fake = Arc::new(Fake {
        jwks: Bytes::from(json!({ "keys": [jwk] }).to_string()),
        metadata: Bytes::from(
            json!({ "issuer": ISSUER, "jwks_uri": format!("http://{addr}/keys"),
                    "id_token_signing_alg_values_supported": ["RS256"] })
            .to_string(),
        ),
        limit,
        window,
        mail: Mutex::new(Mail::default()),
        threads: AtomicU64::new(0),
        unexpected: AtomicU64::new(0),
    });
    let serving = Arc::clone(&fake);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let fake = Arc::clone(&serving);
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let fake = Arc::clone(&fake);
                    async move { Ok::<_, Infallible>(fake.handle(req).await) }
                });
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((addr, fake))
}

// ---- talking to fieldbot ----

async fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    auth: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Bytes)> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, addr.to_string());
    if let Some(token) = auth {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let payload = match body {
        Some(v) => {
            request = request.header(CONTENT_TYPE, "application/json");
            Bytes::from(v.to_string())
        }
        None => Bytes::new(),
    };
    let response = sender
        .send_request(request.body(Full::new(payload))?)
        .await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}

fn message(service_url: &str, channel: &str, seq: usize, text: &str) -> Value {
    json!({
        "type": "message",
        "id": format!("throttle-{seq}"),
        "timestamp": "2026-11-23T10:15:30.123Z",
        "serviceUrl": service_url,
        "channelId": "msteams",
        "from": { "id": "29:dana", "name": "Dana Lee", "aadObjectId": REQUESTOR_OID },
        "conversation": { "isGroup": true, "conversationType": "channel", "tenantId": TENANT_ID,
                          "id": format!("{channel};messageid={seq}") },
        "recipient": { "id": format!("28:{APP_ID}"), "name": "fieldbot" },
        "textFormat": "plain",
        "text": format!("<at>fieldbot</at> {text}"),
        "entities": [
            { "type": "mention", "text": "<at>fieldbot</at>",
              "mentioned": { "id": format!("28:{APP_ID}"), "name": "fieldbot" } }
        ],
        "channelData": {
            "teamsChannelId": channel, "teamsTeamId": "19:team@thread.tacv2",
            "channel": { "id": channel }, "team": { "id": "19:team@thread.tacv2" },
            "tenant": { "id": TENANT_ID }
        },
        "locale": "en-US"
    })
}

fn sign_token(pem: &[u8], service_url: &str) -> Result<String> {
    let key = EncodingKey::from_rsa_pem(pem).context("key1.pem is not an RSA private key")?;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = json!({
        "iss": ISSUER, "aud": APP_ID, "serviceurl": service_url, "tid": TENANT_ID,
        "nbf": now - 10, "exp": now + 4 * 3600,
    });
    Ok(jsonwebtoken::encode(&header, &claims, &key)?)
}

/// The sum of the samples of `name` whose labels include every pair in `labels`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            (series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())
            .flatten()
        })
        .sum()
}

struct Fieldbot {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

async fn start_fieldbot(args: &Args, fake: SocketAddr) -> Result<Fieldbot> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    std::fs::create_dir_all(&args.store_dir)?;
    let db = args.store_dir.join("throttle.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let log = args.store_dir.join("fieldbot-throttle.log");
    let log_file = std::fs::File::create(&log)?;
    let mut command = Command::new(&args.fieldbot_bin);
    command.arg("serve").current_dir(&args.fieldbot_dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("FIELDBOT") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    command
        .env("FIELDBOT__BOT__APP_ID", APP_ID)
        .env("FIELDBOT__BOT__APP_PASSWORD", "throttle-bench-password")
        .env("FIELDBOT__BOT__TENANT_ID", TENANT_ID)
        .env(
            "FIELDBOT__BOT__OPENID_METADATA_URL",
            format!("http://{fake}/openid"),
        )
        .env(
            "FIELDBOT__BOT__TOKEN_URL",
            format!("http://{fake}/{{tenant_id}}/token"),
        )
        .env("FIELDBOT__BOT__ALLOWED_SERVICE_HOSTS", "127.0.0.1")
        .env("FIELDBOT__GRAPH__MODE", "live")
        .env("FIELDBOT__GRAPH__BASE_URL", format!("http://{fake}/graph"))
        .env(
            "FIELDBOT__GRAPH__TOKEN_URL",
            format!("http://{fake}/{{tenant_id}}/token"),
        )
        .env("FIELDBOT__FASTTRACK__MAIL_SENDER", SENDER)
        .env("FIELDBOT__FASTTRACK__FTA_REMINDER_BUSINESS_DAYS", "0")
        .env("FIELDBOT__STORE__URL", format!("sqlite://{}", db.display()))
        .env("FIELDBOT__SERVER__BIND", addr.to_string())
        .env("FIELDBOT__TELEMETRY__FILTER", "warn");
    for (key, value) in &args.fieldbot_env {
        command.env(key, value);
    }
    command
        .stdin(std::process::Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .kill_on_drop(true);
    let mut child = command.spawn().context("starting fieldbot")?;
    let pid = child.id().context("fieldbot exited at once")?;
    if let Some(pid_file) = &args.pid_file {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(pid_file)?;
        writeln!(f, "{pid}")?;
    }
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "fieldbot exited with {status} before it was ready:\n{}",
                log_tail(&log)
            );
        }
        if let Ok((200, _)) = call(addr, Method::GET, "/readyz", None, None).await {
            return Ok(Fieldbot { child, addr, log });
        }
        if Instant::now() > deadline {
            bail!(
                "fieldbot not ready after {READY_TIMEOUT:?}:\n{}",
                log_tail(&log)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines
        .get(lines.len().saturating_sub(20)..)
        .unwrap_or_default()
        .join("\n")
}

// ---- the run ----

struct Figures {
    total: Duration,
    first_to_last: Duration,
    minimum: Duration,
    ratio: f64,
    throttled: u64,
    paused_locally: f64,
    fieldbot_429s: f64,
    delivered: usize,
    duplicates: u64,
    dead: f64,
    unconfirmed: f64,
    open: f64,
    filing: Duration,
    unexpected: u64,
    timed_out: bool,
}

impl Figures {
    fn passed(&self, mails: usize) -> bool {
        !self.timed_out
            && self.ratio <= TARGET_RATIO
            && self.delivered == mails
            && self.duplicates == 0
            && self.dead == 0.0
            && self.unconfirmed == 0.0
    }
}

async fn run(args: Args) -> Result<bool> {
    if args.mails == 0 || args.limit == 0 || args.channels == 0 || args.window_secs == 0 {
        bail!("--mails, --limit, --channels and --window-secs must be at least 1");
    }
    let keys = &args.keys_dir;
    let pem = std::fs::read(keys.join("key1.pem"))
        .with_context(|| format!("reading {}", keys.join("key1.pem").display()))?;
    let jwk: Value = serde_json::from_slice(&std::fs::read(keys.join("key1.jwk.json"))?)?;
    let window = Duration::from_secs(args.window_secs);
    let (fake_addr, fake) = start_fake(jwk, args.limit, window).await?;
    let service_url = format!("http://{fake_addr}/");
    let token = sign_token(&pem, &service_url)?;
    let mut bot = start_fieldbot(&args, fake_addr).await?;
    eprintln!(
        "fieldbot on {} (log {}); fake Graph allows {} sendMail per {} s per sender",
        bot.addr,
        bot.log.display(),
        args.limit,
        args.window_secs
    );

    let channels: Vec<String> = (0..args.channels)
        .map(|i| format!("19:throttle{i}@thread.tacv2"))
        .collect();
    let mut seq = 0;
    let mut post = async |channel: &str, text: &str| -> Result<()> {
        seq += 1;
        let activity = message(&service_url, channel, seq, text);
        let (status, body) = call(
            bot.addr,
            Method::POST,
            "/api/messages",
            Some(&token),
            Some(&activity),
        )
        .await?;
        if status != 200 {
            bail!(
                "the webhook answered {status} to {text:?}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(())
    };
    for (i, channel) in channels.iter().enumerate() {
        post(
            channel,
            &format!(
                "engagement start \"Customer {i}\" motion:rfa tpid:{}",
                10_000 + i
            ),
        )
        .await?;
    }

    // The clock starts with the first request filed: fieldbot's whole path counts, not just the sending.
    let started = Instant::now();
    for i in 0..args.mails {
        let channel = channels
            .get(i % channels.len())
            .context("no channel")?
            .clone();
        post(
            &channel,
            "fta request tpid:12345 tenant:contoso.onmicrosoft.com partner:none users:900 type:non-ecif \
             stage:70 event:\"Committed to Office 365\" segment:enterprise entitlements:o365",
        )
        .await?;
    }
    let filing = started.elapsed();
    eprintln!(
        "filed {} FTA requests in {} channels in {:.1} s; waiting for the mails",
        args.mails,
        args.channels,
        filing.as_secs_f64()
    );

    let deadline = started + Duration::from_secs(args.timeout_secs);
    let mut last_report = Instant::now();
    let timed_out = loop {
        if let Some(status) = bot.child.try_wait()? {
            bail!(
                "fieldbot died during the run ({status}):\n{}",
                log_tail(&bot.log)
            );
        }
        let (delivered, throttled) = {
            let mail = lock(&fake.mail);
            (mail.subjects.len(), mail.throttled)
        };
        if delivered >= args.mails {
            // Every mail is in; wait for the queue to settle so a late duplicate would still be seen.
            let (_, text) = call(bot.addr, Method::GET, "/metrics", None, None).await?;
            let text = String::from_utf8_lossy(&text);
            let open = metric(&text, "fieldbot_jobs", &[("status", "pending")])
                + metric(&text, "fieldbot_jobs", &[("status", "running")]);
            if open == 0.0 {
                break false;
            }
        }
        if Instant::now() >= deadline {
            break true;
        }
        if last_report.elapsed() >= Duration::from_secs(30) {
            last_report = Instant::now();
            eprintln!(
                "  {:>4.0} s: {delivered}/{} delivered, {throttled} answered 429",
                started.elapsed().as_secs_f64(),
                args.mails
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, text) = call(bot.addr, Method::GET, "/metrics", None, None).await?;
    let text = String::from_utf8_lossy(&text).into_owned();
    let _ = bot.child.kill().await;

    let mail = std::mem::take(&mut *lock(&fake.mail));
    let batches = args.mails.div_ceil(args.limit);
    // Mail k (1-based) can be accepted no earlier than floor((k-1)/limit) windows after the first one, so
    // the last of N leaves (ceil(N/limit) - 1) windows after the first.
    let minimum = window * u32::try_from(batches.saturating_sub(1)).unwrap_or(u32::MAX);
    let total = mail
        .last
        .map_or(started.elapsed(), |last| last.duration_since(started));
    let figures = Figures {
        total,
        first_to_last: match (mail.first, mail.last) {
            (Some(first), Some(last)) => last.duration_since(first),
            _ => Duration::ZERO,
        },
        minimum,
        ratio: if minimum.is_zero() {
            1.0
        } else {
            total.as_secs_f64() / minimum.as_secs_f64()
        },
        throttled: mail.throttled,
        paused_locally: metric(
            &text,
            "fieldbot_graph_requests_total",
            &[("op", "send_mail"), ("status", "paused")],
        ),
        fieldbot_429s: metric(
            &text,
            "fieldbot_graph_requests_total",
            &[("op", "send_mail"), ("status", "429")],
        ),
        delivered: mail.subjects.len(),
        duplicates: mail.subjects.values().map(|n| u64::from(n - 1)).sum(),
        dead: metric(&text, "fieldbot_jobs", &[("status", "dead")]),
        unconfirmed: metric(&text, "fieldbot_jobs", &[("status", "unconfirmed")]),
        open: metric(&text, "fieldbot_jobs", &[("status", "pending")])
            + metric(&text, "fieldbot_jobs", &[("status", "running")]),
        filing,
        unexpected: fake.unexpected.load(Ordering::Relaxed),
        timed_out,
    };
    let passed = figures.passed(args.mails);
    let report = markdown(&args, &figures, mail.accepted, passed);
    println!("{report}");
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, &report)?;
    eprintln!("wrote {}", args.out.display());
    Ok(passed)
}

fn markdown(args: &Args, f: &Figures, accepted: u64, passed: bool) -> String {
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let verdict = if passed { "met" } else { "**missed**" };
    let yes_no = |ok: bool| if ok { "yes" } else { "**no**" };
    format!(
        "# Throttling benchmark (issue 8, item 4)\n\
         \n\
         `scripts/throttle` — {date}, fieldbot {commit}, {cores} cores. fieldbot in production mode (SQLite, \
         default `jobs.*` settings, Graph live against a local fake). {mails} FTA requests filed through the \
         webhook in {channels} channels, each emailed to its requestor from one mailbox \
         (`fasttrack.mail_sender`). The fake Graph accepts at most {limit} `sendMail` per sender in any \
         {window} s (sliding window) and answers `429` with `Retry-After` (whole seconds until the oldest \
         mail leaves the window) beyond that.\n\
         \n\
         | | |\n\
         |---|---:|\n\
         | total time (first request filed → last mail accepted) | {total:.1} s |\n\
         | first mail → last mail | {first_to_last:.1} s |\n\
         | minimum the limit allows ((⌈{mails}/{limit}⌉ − 1) × {window} s) | {minimum:.0} s |\n\
         | **ratio** (target ≤ {target}) | **{ratio:.3}** |\n\
         | 429s returned by the fake | {throttled} |\n\
         | sends held back by fieldbot's mailbox gate (never reached Graph) | {paused:.0} |\n\
         | mails delivered (distinct subjects) | {delivered} / {mails} |\n\
         | sendMail accepted in all | {accepted} |\n\
         | duplicates | {duplicates} |\n\
         | dead-lettered jobs | {dead:.0} |\n\
         | unconfirmed jobs | {unconfirmed:.0} |\n\
         | jobs still open at the end | {open:.0} |\n\
         | filing the {mails} requests took | {filing:.1} s |\n\
         | unexpected requests at the fake | {unexpected} |\n\
         \n\
         Target {verdict}: ratio ≤ {target}: {ratio_ok}; all delivered: {all_ok}; none twice: {dup_ok}; \
         none dead-lettered: {dead_ok}{timeout}.\n\
         \n\
         fieldbot itself counted {fb429:.0} sendMail answers of 429 \
         (`fieldbot_graph_requests_total{{op=\"send_mail\",status=\"429\"}}`).\n",
        commit = args.fieldbot_commit,
        mails = args.mails,
        channels = args.channels,
        limit = args.limit,
        window = args.window_secs,
        total = f.total.as_secs_f64(),
        first_to_last = f.first_to_last.as_secs_f64(),
        minimum = f.minimum.as_secs_f64(),
        target = TARGET_RATIO,
        ratio = f.ratio,
        throttled = f.throttled,
        paused = f.paused_locally,
        delivered = f.delivered,
        duplicates = f.duplicates,
        dead = f.dead,
        unconfirmed = f.unconfirmed,
        open = f.open,
        filing = f.filing.as_secs_f64(),
        unexpected = f.unexpected,
        ratio_ok = yes_no(f.ratio <= TARGET_RATIO),
        all_ok = yes_no(f.delivered == args.mails),
        dup_ok = yes_no(f.duplicates == 0),
        dead_ok = yes_no(f.dead == 0.0 && f.unconfirmed == 0.0),
        timeout = if f.timed_out {
            format!("; **gave up after {} s**", args.timeout_secs)
        } else {
            String::new()
        },
        fb429 = f.fieldbot_429s,
    )
}

#[cfg(test)]
mod tests {
    use super::metric;

    #[test]
    fn metric_sums_matching_series() {
        let text = "# TYPE fieldbot_jobs gauge\n\
                    fieldbot_jobs{status=\"dead\"} 2\n\
                    fieldbot_jobs{status=\"pending\"} 5\n\
                    fieldbot_graph_requests_total{op=\"send_mail\",status=\"429\"} 7\n\
                    fieldbot_graph_requests_total{op=\"get_user\",status=\"429\"} 1\n";
        assert_eq!(metric(text, "fieldbot_jobs", &[("status", "dead")]), 2.0);
        assert_eq!(
            metric(
                text,
                "fieldbot_graph_requests_total",
                &[("op", "send_mail"), ("status", "429")]
            ),
            7.0
        );
        assert_eq!(metric(text, "fieldbot_jobs", &[("status", "done")]), 0.0);
    }
}
