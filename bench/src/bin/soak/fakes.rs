//! Fault-injecting fakes of the Microsoft endpoints fieldbot calls: the Bot Connector, Microsoft Graph and
//! the identity endpoints (OpenID metadata, JWKS, client-credentials token). Plain HTTP/1.1 on raw TCP,
//! one request per connection (`Connection: close`), so a fault can be anything a network can do:
//!
//! - 503 for a share of requests (nothing applied);
//! - 429 storms: windows in which every request gets 429 with `Retry-After` (nothing applied);
//! - 3-second stalls, after which the request is applied and answered normally;
//! - dropped connections: the request is read and *applied*, then the connection is closed without an
//!   answer (the response is lost: the ambiguous case);
//! - refusal windows: the port refuses connections (nothing sent, nothing applied).
//!
//! Every mutating request (anything but GET) that is applied is counted by its
//! `x-fieldbot-idempotency-key`; the check at the end compares those counts with the expected effects.
//!
//! This file is shared by `bench/src/bin/soak` and the short soak in fieldbot's test suite
//! (`tests/api/soak.rs` includes it with `#[path]`), so it uses only tokio, serde_json and std.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use percent_encoding::percent_decode_str;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const ISSUER: &str = "https://api.botframework.com";
pub const ACCESS_TOKEN: &str = "soak-access-token";
pub const KEY_HEADER: &str = "x-fieldbot-idempotency-key";
const MAX_HEAD: usize = 64 * 1024;

/// How hard the fakes misbehave. `Faults::none()` for a calibration run.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    /// Share of requests answered 503 (outside storms).
    pub error_503: f64,
    /// Share of requests stalled for `stall` before being applied and answered.
    pub stall: f64,
    pub stall_for: Duration,
    /// Share of requests applied and then dropped without an answer.
    pub drop: f64,
    /// A 429 storm starts about this often (on one fake at a time) and lasts `storm_for`.
    pub storm_every: Duration,
    pub storm_for: Duration,
    /// A refusal window starts about this often (on one fake at a time) and lasts `refuse_for`.
    pub refuse_every: Duration,
    pub refuse_for: Duration,
}

impl Faults {
    pub fn none() -> Self {
        Faults {
            error_503: 0.0,
            stall: 0.0,
            stall_for: Duration::ZERO,
            drop: 0.0,
            storm_every: Duration::ZERO,
            storm_for: Duration::ZERO,
            refuse_every: Duration::ZERO,
            refuse_for: Duration::ZERO,
        }
    }

    /// The issue's mix: 20% 503s, 429 storms with Retry-After, 3-second stalls, dropped connections,
    /// refusal windows.
    pub fn standard() -> Self {
        Faults {
            error_503: 0.20,
            stall: 0.03,
            stall_for: Duration::from_secs(3),
            drop: 0.04,
            storm_every: Duration::from_secs(9),
            storm_for: Duration::from_millis(1500),
            refuse_every: Duration::from_secs(11),
            refuse_for: Duration::from_millis(800),
        }
    }

    fn active(&self) -> bool {
        self.error_503 > 0.0 || self.stall > 0.0 || self.drop > 0.0
    }
}

/// Counts of injected faults, per kind.
#[derive(Debug, Default, Clone)]
pub struct FaultCounts {
    pub error_503: u64,
    pub throttled_429: u64,
    pub storms: u64,
    pub stalls: u64,
    pub drops: u64,
    pub refusal_windows: u64,
    /// Searches of the mailbox by a mail's key (fieldbot checking a send it was unsure of), and how many
    /// found the mail.
    pub mail_searches: u64,
    pub mail_found: u64,
}

/// A request the fake read whole, and what it did with it.
#[derive(Debug, Clone, Copy)]
pub struct Heard {
    pub at: Instant,
    pub fate: &'static str,
}

impl Heard {
    /// It was answered without being applied (503, or 429 in a storm).
    pub fn refused(&self) -> bool {
        matches!(self.fate, "503" | "429")
    }
}

/// One applied mutating request.
#[derive(Debug, Clone)]
pub struct Applied {
    pub method: String,
    pub path: String,
    pub count: u32,
}

#[derive(Default)]
struct Books {
    /// Idempotency key -> what was applied under it, and how often.
    applied: BTreeMap<String, Applied>,
    /// Mutating requests that carried no key (should stay empty).
    unkeyed: Vec<String>,
    /// The FTA request id on each status card posted as a new thread, by the post's key.
    thread_request: HashMap<String, (i64, String)>,
    /// The keys the mails and drafts carry in their extended property, as Graph files them.
    filed: HashSet<String>,
    /// Idempotency key -> every request the fake read under it, in order, and what it did with each.
    heard: HashMap<String, Vec<Heard>>,
    faults: FaultCounts,
}

struct Shared {
    faults: Faults,
    books: Mutex<Books>,
    next_id: AtomicU64,
    rng: Mutex<Rng>,
    jwks: Value,
    stop: AtomicBool,
}

/// A poisoned lock only means a handler panicked mid-update; the counts are still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Connector,
    Graph,
    Identity,
}

/// One fake's switches, flipped by the storm and refusal schedules.
struct Port {
    role: Role,
    addr: SocketAddr,
    storm: AtomicBool,
    refusing: AtomicBool,
}

/// The three fakes. Dropping it does not stop them; call [`Fakes::stop`].
#[derive(Clone)]
pub struct Fakes {
    shared: Arc<Shared>,
    ports: Arc<Vec<Arc<Port>>>,
}

/// Small xorshift generator: deterministic per seed, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

impl Fakes {
    /// Binds the three fakes on loopback and starts serving (and the fault schedules) on this runtime.
    pub async fn start(faults: Faults, jwk: Value, seed: u64) -> std::io::Result<Fakes> {
        let mut jwk = jwk;
        if let Some(o) = jwk.as_object_mut() {
            o.insert("kid".into(), json!("k1"));
            o.insert("use".into(), json!("sig"));
            o.insert("alg".into(), json!("RS256"));
            o.insert("endorsements".into(), json!(["msteams"]));
        }
        let shared = Arc::new(Shared {
            faults,
            books: Mutex::new(Books::default()),
            next_id: AtomicU64::new(1_732_270_600_000),
            rng: Mutex::new(Rng::new(seed)),
            jwks: json!({ "keys": [jwk] }),
            stop: AtomicBool::new(false),
        });
        let mut ports = Vec::new();
        for role in [Role::Connector, Role::Graph, Role::Identity] {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let port = Arc::new(Port {
                role,
                addr: listener.local_addr()?,
                storm: AtomicBool::new(false),
                refusing: AtomicBool::new(false),
            });
            tokio::spawn(serve(listener, Arc::clone(&port), Arc::clone(&shared)));
            ports.push(port);
        }
        let fakes = Fakes {
            shared,
            ports: Arc::new(ports),
        };
        if faults.active() {
            tokio::spawn(schedule(fakes.clone(), true));
            tokio::spawn(schedule(fakes.clone(), false));
        }
        Ok(fakes)
    }

    fn addr(&self, role: Role) -> String {
        self.ports
            .iter()
            .find(|p| p.role == role)
            .map(|p| p.addr.to_string())
            .unwrap_or_default()
    }

    /// The `serviceUrl` of every activity (the fake Connector).
    pub fn service_url(&self) -> String {
        format!("http://{}/", self.addr(Role::Connector))
    }
    pub fn graph_base_url(&self) -> String {
        format!("http://{}/v1.0", self.addr(Role::Graph))
    }
    pub fn openid_metadata_url(&self) -> String {
        format!("http://{}/openid", self.addr(Role::Identity))
    }
    pub fn token_url(&self) -> String {
        format!("http://{}/{{tenant_id}}/token", self.addr(Role::Identity))
    }

    /// Stops injecting faults (storms and refusals end; later requests are answered normally).
    pub fn calm(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for p in self.ports.iter() {
            p.storm.store(false, Ordering::SeqCst);
            p.refusing.store(false, Ordering::SeqCst);
        }
    }

    /// How many distinct keys have been applied so far.
    pub fn applied_count(&self) -> usize {
        lock(&self.shared.books).applied.len()
    }
    pub fn applied(&self) -> BTreeMap<String, Applied> {
        lock(&self.shared.books).applied.clone()
    }
    pub fn unkeyed(&self) -> Vec<String> {
        lock(&self.shared.books).unkeyed.clone()
    }
    pub fn faults(&self) -> FaultCounts {
        lock(&self.shared.books).faults.clone()
    }
    /// Every request the fake read whole under `key`, oldest first.
    pub fn heard(&self, key: &str) -> Vec<Heard> {
        lock(&self.shared.books)
            .heard
            .get(key)
            .cloned()
            .unwrap_or_default()
    }
    /// The FTA request id on the status card posted under `key`, once the post was applied.
    /// With the activity id of the card (the thread's root message).
    pub fn thread_request(&self, key: &str) -> Option<(i64, String)> {
        lock(&self.shared.books).thread_request.get(key).cloned()
    }
}

/// Storms (or refusal windows) on one fake at a time, at jittered intervals.
async fn schedule(fakes: Fakes, storms: bool) {
    let f = fakes.shared.faults;
    let (every, length) = if storms {
        (f.storm_every, f.storm_for)
    } else {
        (f.refuse_every, f.refuse_for)
    };
    if every.is_zero() || length.is_zero() {
        return;
    }
    loop {
        let (wait, which) = {
            let mut rng = lock(&fakes.shared.rng);
            let jitter = rng.unit() + 0.5;
            (every.mul_f64(jitter), rng.below(fakes.ports.len() as u64))
        };
        tokio::time::sleep(wait).await;
        if fakes.shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Some(port) = fakes.ports.get(which as usize) else {
            continue;
        };
        {
            let mut books = lock(&fakes.shared.books);
            if storms {
                books.faults.storms += 1;
            } else {
                books.faults.refusal_windows += 1;
            }
        }
        let flag = if storms { &port.storm } else { &port.refusing };
        flag.store(true, Ordering::SeqCst);
        tokio::time::sleep(length).await;
        flag.store(false, Ordering::SeqCst);
    }
}

/// Accepts connections; while the port is in a refusal window the listener is closed, so connecting
/// fails with "connection refused" (nothing reaches the fake).
///
/// Before it closes, the listener takes every connection the kernel already completed: closing it with
/// them still queued would reset them, and a client that had written its request would then see it reset
/// unread, which is not a refusal but a server dying with the request in hand (nothing can tell whether
/// such a request was applied).
async fn serve(listener: TcpListener, port: Arc<Port>, shared: Arc<Shared>) {
    let mut listener = Some(listener);
    loop {
        if port.refusing.load(Ordering::SeqCst) {
            if let Some(l) = listener.take() {
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                while let std::task::Poll::Ready(Ok((stream, _))) = l.poll_accept(&mut cx) {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(handle(stream, Arc::clone(&port), Arc::clone(&shared)));
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let Some(l) = listener.as_ref() else {
            match TcpListener::bind(port.addr).await {
                Ok(l) => listener = Some(l),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
            continue;
        };
        // Wake up now and then to notice a refusal window.
        let accepted = tokio::time::timeout(Duration::from_millis(50), l.accept()).await;
        let Ok(Ok((stream, _))) = accepted else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(handle(stream, Arc::clone(&port), Arc::clone(&shared)));
    }
}

pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one HTTP/1.1 message head and its `Content-Length` body. `None` when the peer closed first.
pub async fn read_message(
    stream: &mut TcpStream,
) -> std::io::Result<Option<(String, Vec<(String, String)>, Vec<u8>)>> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Err(std::io::Error::other("head too large"));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    };
    let head = String::from_utf8_lossy(buf.get(..head_end).unwrap_or_default()).into_owned();
    let mut lines = head.split("\r\n");
    let start = lines.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let mut body: Vec<u8> = buf.get(head_end + 4..).unwrap_or_default().to_vec();
    match length {
        Some(length) => {
            while body.len() < length {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::Error::other("body cut off"));
                }
                body.extend_from_slice(chunk.get(..n).unwrap_or_default());
            }
            body.truncate(length);
        }
        None if start.starts_with("HTTP/") => {
            // A response without a length ends at close.
            stream.read_to_end(&mut body).await?;
        }
        None => {}
    }
    Ok(Some((start, headers, body)))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn response_bytes(status: u16, extra: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        404 => "Not Found",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

enum Fate {
    Normal,
    Unavailable,
    Throttled,
    Stall,
    Drop,
}

async fn handle(mut stream: TcpStream, port: Arc<Port>, shared: Arc<Shared>) {
    let Ok(Some((start, headers, body))) = read_message(&mut stream).await else {
        return;
    };
    let mut parts = start.split(' ');
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let request = HttpRequest {
        method,
        path,
        headers,
        body,
    };
    let fate = if shared.stop.load(Ordering::SeqCst) {
        Fate::Normal
    } else if port.storm.load(Ordering::SeqCst) {
        Fate::Throttled
    } else {
        let f = shared.faults;
        let r = lock(&shared.rng).unit();
        if r < f.error_503 {
            Fate::Unavailable
        } else if r < f.error_503 + f.stall {
            Fate::Stall
        } else if r < f.error_503 + f.stall + f.drop {
            Fate::Drop
        } else {
            Fate::Normal
        }
    };
    if let Some(key) = request.header(KEY_HEADER) {
        let fate = match fate {
            Fate::Normal => "applied",
            Fate::Unavailable => "503",
            Fate::Throttled => "429",
            Fate::Stall => "stalled 3 s, then applied",
            Fate::Drop => "applied, answer dropped",
        };
        lock(&shared.books)
            .heard
            .entry(key.to_owned())
            .or_default()
            .push(Heard {
                at: Instant::now(),
                fate,
            });
    }
    let reply = match fate {
        Fate::Throttled => {
            lock(&shared.books).faults.throttled_429 += 1;
            response_bytes(
                429,
                &[("retry-after", "1".to_owned())],
                br#"{"error":{"code":"TooManyRequests","message":"slow down"}}"#,
            )
        }
        Fate::Unavailable => {
            lock(&shared.books).faults.error_503 += 1;
            response_bytes(
                503,
                &[],
                br#"{"error":{"code":"ServiceUnavailable","message":"try again"}}"#,
            )
        }
        Fate::Stall => {
            lock(&shared.books).faults.stalls += 1;
            tokio::time::sleep(shared.faults.stall_for).await;
            apply(&port, &shared, &request)
        }
        Fate::Drop => {
            let _ = apply(&port, &shared, &request);
            lock(&shared.books).faults.drops += 1;
            // Closed without a word: the effect happened, the answer is lost.
            drop(stream);
            return;
        }
        Fate::Normal => apply(&port, &shared, &request),
    };
    let _ = stream.write_all(&reply).await;
    let _ = stream.shutdown().await;
}

/// Records the request (when it changes something) and builds the answer a real service would give.
fn apply(port: &Port, shared: &Shared, req: &HttpRequest) -> Vec<u8> {
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    if req.method != "GET" && port.role != Role::Identity {
        let mut books = lock(&shared.books);
        match req.header(KEY_HEADER) {
            Some(key) => {
                let entry = books.applied.entry(key.to_owned()).or_insert(Applied {
                    method: req.method.clone(),
                    path: req.path.clone(),
                    count: 0,
                });
                entry.count += 1;
                if port.role == Role::Graph
                    && let Some(tag) = body
                        .pointer("/message/singleValueExtendedProperties/0/value")
                        .or_else(|| body.pointer("/singleValueExtendedProperties/0/value"))
                        .and_then(Value::as_str)
                {
                    books.filed.insert(tag.to_owned());
                }
                if port.role == Role::Connector
                    && req.path == "/v3/conversations"
                    && let Some(request_id) = find_request_id(&body)
                {
                    books
                        .thread_request
                        .insert(key.to_owned(), (request_id, id.to_string()));
                }
            }
            None => books.unkeyed.push(format!("{} {}", req.method, req.path)),
        }
    }
    let (status, answer) = match port.role {
        Role::Identity => identity_answer(shared, port, req),
        Role::Connector => connector_answer(req, &body, id),
        Role::Graph => graph_answer(shared, req, id),
    };
    let body = if answer.is_null() {
        Vec::new()
    } else {
        answer.to_string().into_bytes()
    };
    response_bytes(status, &[], &body)
}

fn identity_answer(shared: &Shared, port: &Port, req: &HttpRequest) -> (u16, Value) {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/openid") => (
            200,
            json!({
                "issuer": ISSUER,
                "jwks_uri": format!("http://{}/keys", port.addr),
                "id_token_signing_alg_values_supported": ["RS256"],
            }),
        ),
        ("GET", "/keys") => (200, shared.jwks.clone()),
        ("POST", p) if p.ends_with("/token") => (
            200,
            json!({ "token_type": "Bearer", "expires_in": 3600, "ext_expires_in": 3600, "access_token": ACCESS_TOKEN }),
        ),
        _ => (404, json!({})),
    }
}

fn connector_answer(req: &HttpRequest, body: &Value, id: u64) -> (u16, Value) {
    let path = req.path.as_str();
    match req.method.as_str() {
        "POST" if path == "/v3/conversations" => {
            let channel = body
                .pointer("/channelData/channel/id")
                .and_then(Value::as_str)
                .unwrap_or("19:soak@thread.tacv2");
            (
                201,
                json!({ "id": format!("{channel};messageid={id}"), "activityId": id.to_string() }),
            )
        }
        "GET" if path.contains("/members/") => {
            let member = path.rsplit('/').next().unwrap_or_default();
            (
                200,
                json!({ "id": format!("29:{member}"), "name": "Lead", "aadObjectId": member }),
            )
        }
        _ => (200, json!({ "id": id.to_string() })),
    }
}

fn graph_answer(shared: &Shared, req: &HttpRequest, id: u64) -> (u16, Value) {
    let path = req.path.as_str();
    if req.method == "GET"
        && let Some((_, query)) = path.split_once("/messages?")
    {
        // The search by key: `$filter=singleValueExtendedProperties/Any(ep: … and ep/value eq '<key>')`.
        let filter = query
            .split('&')
            .find_map(|p| p.strip_prefix("$filter="))
            .map(|f| percent_decode_str(f).decode_utf8_lossy().into_owned())
            .unwrap_or_default();
        let Some(key) = filter
            .split_once("ep/value eq '")
            .and_then(|(_, rest)| rest.strip_suffix("')"))
            .map(|k| k.replace("''", "'"))
        else {
            return (
                400,
                json!({ "error": { "code": "BadRequest", "message": filter } }),
            );
        };
        let mut books = lock(&shared.books);
        books.faults.mail_searches += 1;
        let found = books.filed.contains(&key);
        if found {
            books.faults.mail_found += 1;
        }
        let value = if found {
            json!([{ "id": format!("filed-{id}"), "isDraft": false }])
        } else {
            json!([])
        };
        return (200, json!({ "value": value }));
    }
    if req.method == "GET" && path.starts_with("/v1.0/users/") {
        let who = path
            .trim_start_matches("/v1.0/users/")
            .split(['/', '?'])
            .next()
            .unwrap_or_default()
            .replace("%40", "@");
        let mail = if who.contains('@') {
            who.clone()
        } else {
            format!("{who}@contoso.example")
        };
        return (
            200,
            json!({ "id": who, "displayName": who, "mail": mail, "userPrincipalName": mail }),
        );
    }
    if path.ends_with("/sendMail") {
        return (202, Value::Null);
    }
    (201, json!({ "id": format!("graph-{id}") }))
}

/// The FTA request id on a status card (its actions' data carry `requestId`).
fn find_request_id(v: &Value) -> Option<i64> {
    match v {
        Value::Object(map) => map
            .get("requestId")
            .and_then(Value::as_i64)
            .or_else(|| map.values().find_map(find_request_id)),
        Value::Array(items) => items.iter().find_map(find_request_id),
        _ => None,
    }
}
