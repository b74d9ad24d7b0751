//! The soak driver: starts fieldbot (production mode, signed tokens from the fake JWKS) as one or more
//! replicas, sends a mix of commands through `POST /api/messages` while the fakes misbehave, SIGKILLs a
//! replica at random moments and restarts it, waits for the queue to drain, then counts every effect at
//! the fakes by idempotency key against the effects each accepted command must have.
//!
//! Shared by `bench/src/bin/soak` (the long soak, `scripts/soak`) and `tests/api/soak.rs` (the short soak
//! in the test suite), so it uses only tokio, serde_json, jsonwebtoken and std.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::fakes::{Fakes, FaultCounts, Faults, Heard, ISSUER, Rng, read_message};

pub const APP_ID: &str = "0f6c2f39-6a0e-4a55-9d7e-4c1b6f3e2a10";
pub const BOT_ID: &str = "28:0f6c2f39-6a0e-4a55-9d7e-4c1b6f3e2a10";
pub const TENANT_ID: &str = "8d3e1c2a-0000-4000-8000-00000000aaaa";
const DANA: &str = "5f0c6c0e-1d2b-4c55-9a35-0d5a1b2c3d4e";
const LEADS: [&str; 2] = [
    "11111111-aaaa-4000-8000-000000000001",
    "11111111-aaaa-4000-8000-000000000002",
];
const TEAM: &str = "19:soakteam@thread.tacv2";
const FTA_LINE: &str = "fta request tpid:12345 tenant:contoso.onmicrosoft.com partner:none users:5000 \
     type:ecif stage:60 event:\"Signed an EA with Office 365 E5\" segment:enterprise entitlements:o365,ems";
/// A webhook POST that gets no answer in this time is sent again (same activity id), as Teams does.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(15);
/// A command not accepted after this long is given up (counted as not accepted).
const GIVE_UP: Duration = Duration::from_secs(180);
/// How long a lead waits for a request's status card to appear (the queue is slow under faults). A card
/// whose post a SIGKILL cut off before it reached the fake never appears (the post is held, not re-sent);
/// the run then waits this long once, at the end, and counts the approval as never sent.
const APPROVAL_WAIT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct Plan {
    /// Commands sent in all, engagement starts and lead approvals included.
    pub commands: usize,
    /// Channels the commands are spread over (one engagement each).
    pub channels: usize,
    /// Commands in flight at once.
    pub concurrency: usize,
    /// SIGKILLs (each followed by a restart of the killed replica).
    pub kills: usize,
    pub replicas: usize,
    pub faults: Faults,
    pub seed: u64,
    /// Give up waiting for the queue to drain after this long.
    pub drain_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Setup {
    pub fieldbot_bin: PathBuf,
    /// fieldbot's working directory (holds config/).
    pub fieldbot_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`, shared by every replica.
    pub store_url: String,
    /// RS256 private key (PEM) and its public JWK: the fake JWKS publishes the JWK, tokens are signed with
    /// the key.
    pub key_pem: Vec<u8>,
    pub jwk: Value,
    /// Where the replicas' logs go.
    pub log_dir: PathBuf,
    /// Extra environment for fieldbot.
    pub env: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    EngagementStart,
    Help,
    Roles,
    FtaRequest,
    FtaApproval,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::EngagementStart => "engagement start",
            Kind::Help => "help",
            Kind::Roles => "roles TAM",
            Kind::FtaRequest => "fta request",
            Kind::FtaApproval => "fta assign (lead)",
        }
    }
}

/// One command's outcome and the effect keys it must cause.
#[derive(Debug, Clone)]
pub struct Sent {
    pub kind: Kind,
    pub accepted: bool,
    pub expected: Vec<String>,
}

#[derive(Debug, Default, Clone)]
pub struct Report {
    pub commands: usize,
    pub accepted: usize,
    pub redeliveries: u64,
    pub by_kind: BTreeMap<&'static str, (usize, usize)>,
    pub expected: usize,
    pub applied: usize,
    pub lost: Vec<String>,
    /// Lost effects whose job is held as unconfirmed, with the reason recorded on it.
    pub held: Vec<(String, String)>,
    pub duplicated: Vec<(String, u32)>,
    pub unexpected: Vec<String>,
    pub unkeyed: Vec<String>,
    pub faults: FaultCounts,
    pub kills: usize,
    /// When each SIGKILL came, from the start of the run.
    pub kill_offsets: Vec<Duration>,
    pub replicas: usize,
    pub drained: bool,
    pub jobs: BTreeMap<String, u64>,
    pub wall: Duration,
    pub approvals_missing: usize,
    /// Until every command was accepted (or given up), and the drain after it.
    pub load: Duration,
    pub drain: Duration,
    /// Idempotent PUTs applied more than once (their answer was lost, so they were sent again).
    pub reapplied_puts: usize,
    /// Jobs a SIGKILL cut off after their note and before their request left, run again on the word of the
    /// dead process's wire log (counted in the replicas' logs).
    pub rerun_after_cut_off: usize,
}

impl Report {
    /// Exactly once: every accepted command's effects applied once, nothing else, the queue drained.
    pub fn ok(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.unexpected.is_empty()
            && self.unkeyed.is_empty()
            && self.drained
            && self.accepted == self.commands
            && self.approvals_missing == 0
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let row = |out: &mut String, k: &str, v: String| out.push_str(&format!("| {k} | {v} |\n"));
        out.push_str("| | |\n|---|---:|\n");
        row(&mut out, "replicas", self.replicas.to_string());
        row(&mut out, "commands sent", self.commands.to_string());
        row(
            &mut out,
            "commands accepted (200)",
            self.accepted.to_string(),
        );
        for (kind, (sent, accepted)) in &self.by_kind {
            row(
                &mut out,
                &format!("&nbsp;&nbsp;{kind}"),
                format!("{accepted}/{sent}"),
            );
        }
        row(
            &mut out,
            "FTA approvals never sent (no status card seen)",
            self.approvals_missing.to_string(),
        );
        row(
            &mut out,
            "webhook re-deliveries (same activity id)",
            self.redeliveries.to_string(),
        );
        row(&mut out, "effects expected", self.expected.to_string());
        row(
            &mut out,
            "effects applied (distinct expected keys seen)",
            self.applied.to_string(),
        );
        row(&mut out, "**lost**", self.lost.len().to_string());
        row(
            &mut out,
            "&nbsp;&nbsp;of those, held as unconfirmed for the operator",
            self.held.len().to_string(),
        );
        row(
            &mut out,
            "**duplicated**",
            self.duplicated.len().to_string(),
        );
        row(
            &mut out,
            "idempotent PUTs re-applied (same state, not duplicates)",
            self.reapplied_puts.to_string(),
        );
        row(
            &mut out,
            "unexpected keys",
            self.unexpected.len().to_string(),
        );
        row(
            &mut out,
            "mutating calls without a key",
            self.unkeyed.len().to_string(),
        );
        let f = &self.faults;
        row(&mut out, "injected: 503", f.error_503.to_string());
        row(
            &mut out,
            "injected: 429 (in storms)",
            format!("{} ({} storms)", f.throttled_429, f.storms),
        );
        row(&mut out, "injected: 3 s stalls", f.stalls.to_string());
        row(
            &mut out,
            "injected: dropped after apply",
            f.drops.to_string(),
        );
        row(
            &mut out,
            "injected: refusal windows",
            f.refusal_windows.to_string(),
        );
        row(
            &mut out,
            "mail looked up by key after an unsure send (found)",
            format!("{} ({})", f.mail_searches, f.mail_found),
        );
        row(
            &mut out,
            "cut off by a SIGKILL before the call left, run again (wire log)",
            self.rerun_after_cut_off.to_string(),
        );
        row(
            &mut out,
            "SIGKILLs (each + restart)",
            format!(
                "{} (at {})",
                self.kills,
                self.kill_offsets
                    .iter()
                    .map(|d| format!("{:.1} s", d.as_secs_f64()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        let jobs: Vec<String> = self.jobs.iter().map(|(k, v)| format!("{k} {v}")).collect();
        row(&mut out, "jobs at the end", jobs.join(", "));
        row(&mut out, "queue drained", self.drained.to_string());
        row(
            &mut out,
            "wall time (sending / draining)",
            format!(
                "{:.1} s ({:.1} s / {:.1} s)",
                self.wall.as_secs_f64(),
                self.load.as_secs_f64(),
                self.drain.as_secs_f64()
            ),
        );
        row(
            &mut out,
            "result",
            if self.ok() {
                "PASS".into()
            } else {
                "FAIL".into()
            },
        );
        out
    }

    /// The keys behind a failure, for the log.
    pub fn details(&self) -> String {
        let mut out = String::new();
        let list = |out: &mut String, name: &str, items: Vec<String>| {
            if !items.is_empty() {
                out.push_str(&format!("{name} ({}):\n", items.len()));
                for i in items.iter().take(30) {
                    out.push_str(&format!("  {i}\n"));
                }
            }
        };
        list(&mut out, "lost", self.lost.clone());
        list(
            &mut out,
            "of those, held as unconfirmed (fieldbot jobs list --status unconfirmed)",
            self.held.iter().map(|(k, r)| format!("{k}: {r}")).collect(),
        );
        list(
            &mut out,
            "duplicated",
            self.duplicated
                .iter()
                .map(|(k, n)| format!("{k} x{n}"))
                .collect(),
        );
        list(&mut out, "unexpected", self.unexpected.clone());
        list(&mut out, "unkeyed", self.unkeyed.clone());
        out
    }
}

/// One fieldbot process slot: a fixed address, restarted in place after a kill.
struct Slot {
    addr: SocketAddr,
    child: Option<Child>,
    log: PathBuf,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Cluster {
    slots: Mutex<Vec<Slot>>,
    /// When each replica process was spawned, and which slot it runs in.
    spawned: Mutex<Vec<(Instant, usize)>>,
    addrs: Vec<SocketAddr>,
    rr: AtomicUsize,
    setup: Setup,
    fakes: Fakes,
}

/// A job held as unconfirmed, as `fieldbot jobs list` shows it.
struct HeldJob {
    id: i64,
    attempts: u32,
    reason: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Cluster {
    fn command(&self, addr: SocketAddr, log: &PathBuf) -> std::io::Result<Command> {
        let mut c = self.fieldbot(addr, &["serve"]);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        c.stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        Ok(c)
    }

    /// The jobs held as unconfirmed at the end, by idempotency key (read with `fieldbot jobs list`, as an
    /// operator would).
    async fn held_jobs(&self) -> Result<BTreeMap<String, HeldJob>, String> {
        let addr = self.addrs.first().copied().ok_or("no replica")?;
        let mut list = self.fieldbot(
            addr,
            &[
                "jobs",
                "list",
                "--status",
                "unconfirmed",
                "--limit",
                "100000",
            ],
        );
        list.stdin(Stdio::null());
        let output = tokio::task::spawn_blocking(move || list.output())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("fieldbot jobs list: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "fieldbot jobs list: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let mut held = BTreeMap::new();
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            // "#<id> <kind> attempts <n> <key>", then the reason on the next line.
            let words: Vec<&str> = line
                .strip_prefix('#')
                .map(|l| l.split_whitespace().collect())
                .unwrap_or_default();
            if let [id, _, _, attempts, key, ..] = words.as_slice() {
                let reason = lines.next().unwrap_or_default().trim().to_owned();
                held.insert(
                    (*key).to_owned(),
                    HeldJob {
                        id: id.parse().unwrap_or(0),
                        attempts: attempts.parse().unwrap_or(0),
                        reason,
                    },
                );
            }
        }
        Ok(held)
    }

    fn fieldbot(&self, addr: SocketAddr, args: &[&str]) -> Command {
        let fakes = &self.fakes;
        let mut c = Command::new(&self.setup.fieldbot_bin);
        c.args(args).current_dir(&self.setup.fieldbot_dir);
        for (key, _) in std::env::vars() {
            if key.starts_with("FIELDBOT") || key == "RUST_LOG" {
                c.env_remove(key);
            }
        }
        // One folder for every replica's wire log: a replica restarted after a SIGKILL, or the other one,
        // reads the dead one's log to tell a call cut off before it left.
        let wire = self.setup.log_dir.join("wire").display().to_string();
        let env: [(&str, String); 26] = [
            ("FIELDBOT__JOBS__WIRE_LOG_DIR", wire),
            ("FIELDBOT__BOT__APP_ID", APP_ID.into()),
            ("FIELDBOT__BOT__APP_PASSWORD", "soak-app-password".into()),
            ("FIELDBOT__BOT__TENANT_ID", TENANT_ID.into()),
            (
                "FIELDBOT__BOT__OPENID_METADATA_URL",
                fakes.openid_metadata_url(),
            ),
            ("FIELDBOT__BOT__TOKEN_URL", fakes.token_url()),
            ("FIELDBOT__BOT__ALLOWED_SERVICE_HOSTS", "127.0.0.1".into()),
            ("FIELDBOT__GRAPH__MODE", "live".into()),
            ("FIELDBOT__GRAPH__BASE_URL", fakes.graph_base_url()),
            ("FIELDBOT__GRAPH__TOKEN_URL", fakes.token_url()),
            ("FIELDBOT__STORE__URL", self.setup.store_url.clone()),
            ("FIELDBOT__STORE__MAX_CONNECTIONS", "4".into()),
            ("FIELDBOT__SERVER__BIND", addr.to_string()),
            ("FIELDBOT__JOBS__LEASE_SECS", "15".into()),
            ("FIELDBOT__JOBS__MAX_ATTEMPTS", "40".into()),
            ("FIELDBOT__JOBS__BACKOFF_BASE_MS", "100".into()),
            ("FIELDBOT__JOBS__BACKOFF_MAX_SECS", "2".into()),
            ("FIELDBOT__JOBS__MAX_RETRY_AFTER_SECS", "2".into()),
            ("FIELDBOT__JOBS__POLL_INTERVAL_MS", "200".into()),
            // The fake files a mail at once; Exchange takes a moment (the default is a minute).
            ("FIELDBOT__JOBS__CHECK_AFTER_SECS", "2".into()),
            ("FIELDBOT__FASTTRACK__LEADS", LEADS.join(",")),
            (
                "FIELDBOT__FASTTRACK__MAIL_SENDER",
                "fieldbot@contoso.example".into(),
            ),
            (
                "FIELDBOT__FASTTRACK__FTA_REMINDER_BUSINESS_DAYS",
                "0".into(),
            ),
            ("FIELDBOT__TELEMETRY__FILTER", "warn".into()),
            ("FIELDBOT__TELEMETRY__FORMAT", "pretty".into()),
            ("NO_COLOR", "1".into()),
        ];
        c.envs(env);
        c.envs(self.setup.env.iter().cloned());
        c
    }

    /// Starts (or restarts) slot `i` and waits until it answers `/readyz`.
    async fn start(&self, i: usize) -> Result<(), String> {
        let (addr, log) = {
            let slots = lock(&self.slots);
            let slot = slots.get(i).ok_or("no such slot")?;
            (slot.addr, slot.log.clone())
        };
        let child = self
            .command(addr, &log)
            .and_then(|mut c| c.spawn())
            .map_err(|e| format!("starting fieldbot: {e}"))?;
        lock(&self.spawned).push((Instant::now(), i));
        if let Some(slot) = lock(&self.slots).get_mut(i) {
            slot.child = Some(child);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(slot) = lock(&self.slots).get_mut(i)
                && let Some(child) = slot.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!(
                    "fieldbot exited with {status}; see {}",
                    log.display()
                ));
            }
            if let Ok((200, _)) =
                http(addr, "GET", "/readyz", None, &[], Duration::from_secs(2)).await
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "fieldbot not ready after 60 s; see {}",
                    log.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL (no warning, no cleanup), as an OOM kill or a node loss would.
    fn kill(&self, i: usize) {
        if let Some(slot) = lock(&self.slots).get_mut(i)
            && let Some(mut child) = slot.child.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn next_addr(&self) -> SocketAddr {
        let n = self.rr.fetch_add(1, Ordering::Relaxed);
        self.addrs
            .get(n % self.addrs.len().max(1))
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One HTTP/1.1 request on a fresh connection; the status and body of the answer.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    headers: &[(&str, String)],
    timeout: Duration,
) -> std::io::Result<(u16, Vec<u8>)> {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await?;
        let body = body.unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\nconnection: close\r\n",
            body.len()
        );
        if !body.is_empty() {
            head.push_str("content-type: application/json\r\n");
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        let Some((start, _, body)) = read_message(&mut stream).await? else {
            return Err(std::io::Error::other("closed without an answer"));
        };
        let status = start
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok((status, body))
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| std::io::Error::other("timed out"))?
}

fn sign_token(pem: &[u8], service_url: &str) -> Result<String, String> {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem).map_err(|e| e.to_string())?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("k1".into());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let claims = json!({
        "iss": ISSUER, "aud": APP_ID, "serviceurl": service_url, "tid": TENANT_ID,
        "nbf": now - 10, "exp": now + 4 * 3600,
    });
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| e.to_string())
}

struct Ctx {
    cluster: Cluster,
    token: String,
    service_url: String,
    run: String,
    seq: AtomicU64,
    redeliveries: AtomicU64,
    sent: Mutex<Vec<Sent>>,
}

fn channel(n: usize) -> String {
    format!("19:soak{n}@thread.tacv2")
}

/// Each command's effects are keyed after its activity's key, which fieldbot builds as channel, activity
/// id, conversation (the two `(activity, key)` pairs below).
impl Ctx {
    fn activity(&self, n: usize, text: &str) -> (Value, String) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let channel = channel(n);
        let id = format!("{}-{seq}", self.run);
        let conversation = format!("{channel};messageid={seq}");
        let activity = json!({
            "type": "message", "id": id, "timestamp": "2026-11-23T10:15:30.123Z",
            "serviceUrl": self.service_url, "channelId": "msteams",
            "from": { "id": "29:dana", "name": "Dana Lee", "aadObjectId": DANA },
            "conversation": { "isGroup": true, "conversationType": "channel", "tenantId": TENANT_ID, "id": conversation },
            "recipient": { "id": BOT_ID, "name": "fieldbot" },
            "textFormat": "plain", "text": format!("<at>fieldbot</at> {text}"),
            "entities": [ { "type": "mention", "text": "<at>fieldbot</at>", "mentioned": { "id": BOT_ID, "name": "fieldbot" } } ],
            "channelData": { "teamsChannelId": channel, "teamsTeamId": TEAM, "channel": { "id": channel },
                             "team": { "id": TEAM }, "tenant": { "id": TENANT_ID } },
            "locale": "en-US",
        });
        (activity, format!("msteams/{id}/{conversation}"))
    }

    /// A lead's Assign click on the status card (the root of its thread).
    fn approval(
        &self,
        n: usize,
        thread_activity: &str,
        request_id: i64,
        lead: usize,
    ) -> (Value, String) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let channel = channel(n);
        let id = format!("{}-{seq}", self.run);
        let conversation = format!("{channel};messageid={thread_activity}");
        let lead = LEADS.get(lead % LEADS.len()).copied().unwrap_or_default();
        let activity = json!({
            "type": "invoke", "name": "adaptiveCard/action", "id": id, "timestamp": "2026-11-23T10:15:30.123Z",
            "serviceUrl": self.service_url, "channelId": "msteams",
            "from": { "id": format!("29:{lead}"), "name": "Lead", "aadObjectId": lead },
            "conversation": { "isGroup": true, "conversationType": "channel", "tenantId": TENANT_ID, "id": conversation },
            "recipient": { "id": BOT_ID, "name": "fieldbot" },
            "replyToId": thread_activity,
            "value": { "action": { "type": "Action.Execute", "verb": "fta.assign",
                                   "data": { "requestId": request_id, "fta": "ada@contoso.example" } },
                       "trigger": "manual" },
            "channelData": { "teamsChannelId": channel, "teamsTeamId": TEAM, "channel": { "id": channel },
                             "team": { "id": TEAM }, "tenant": { "id": TENANT_ID } },
            "locale": "en-US",
        });
        (activity, format!("msteams/{id}/{conversation}"))
    }

    /// Posts an activity until it is accepted, re-delivering the same activity id after a failure or a
    /// missing answer (as Teams does), round-robin over the replicas.
    async fn deliver(&self, activity: &Value) -> (bool, u32) {
        let body = activity.to_string().into_bytes();
        let auth = [("authorization", format!("Bearer {}", self.token))];
        let started = Instant::now();
        let mut deliveries = 0;
        let mut pause = Duration::from_millis(100);
        while started.elapsed() < GIVE_UP {
            deliveries += 1;
            let addr = self.cluster.next_addr();
            let sent = http(
                addr,
                "POST",
                "/api/messages",
                Some(&body),
                &auth,
                WEBHOOK_TIMEOUT,
            )
            .await;
            if let Ok((200, answer)) = sent {
                // An invoke's answer carries its own status.
                let inner = serde_json::from_slice::<Value>(&answer)
                    .ok()
                    .and_then(|v| v.get("statusCode").and_then(Value::as_u64));
                if inner.is_none_or(|s| s == 200) {
                    return (true, deliveries);
                }
            }
            self.redeliveries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
        (false, deliveries)
    }

    fn record(&self, kind: Kind, accepted: bool, expected: Vec<String>) {
        lock(&self.sent).push(Sent {
            kind,
            accepted,
            expected: if accepted { expected } else { Vec::new() },
        });
    }

    /// Sends one command and records the effects it must have.
    async fn command(self: &Arc<Self>, n: usize, kind: Kind) {
        let text = match kind {
            Kind::EngagementStart => "engagement start \"Contoso Ltd\" motion:rfa tpid:12345",
            Kind::Help => "help",
            Kind::Roles => "roles TAM",
            Kind::FtaRequest | Kind::FtaApproval => FTA_LINE,
        };
        let (activity, ak) = self.activity(n, text);
        let (accepted, _) = self.deliver(&activity).await;
        let mut expected = vec![format!("{ak}:reply#reply_to_activity")];
        if kind == Kind::FtaRequest {
            expected.extend([
                format!("{ak}:fta:thread#create_channel_thread"),
                format!("{ak}:fta:mail#send_mail"),
                format!("{ak}:fta:leads:mail#send_mail"),
            ]);
        }
        self.record(kind, accepted, expected);
    }

    /// Waits for the status card of the request filed by `ak` and approves it as a lead.
    async fn approve(self: &Arc<Self>, n: usize, ak: &str, lead: usize) -> bool {
        let key = format!("{ak}:fta:thread#create_channel_thread");
        let deadline = Instant::now() + APPROVAL_WAIT;
        let (request_id, thread) = loop {
            if let Some(found) = self.cluster.fakes.thread_request(&key) {
                break found;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (activity, _) = self.approval(n, &thread, request_id, lead);
        let (accepted, _) = self.deliver(&activity).await;
        let v = format!("fta:{request_id}:v2");
        self.record(
            Kind::FtaApproval,
            accepted,
            vec![
                format!("{v}:card#update_activity"),
                format!("{v}:mail#send_mail"),
                format!("{v}:roster:reply#send_to_conversation"),
            ],
        );
        true
    }
}

/// What fieldbot logs when a job cut off mid-call is run again because its call never left.
const RERUN_LOG_LINE: &str = "cut off before its call left";

/// Lines containing `needle` in every replica's log.
fn count_in_logs(dir: &std::path::Path, needle: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|text| text.lines().filter(|l| l.contains(needle)).count())
        .sum()
}

/// The whole soak: start, load, kills, drain, count.
pub async fn run(setup: Setup, plan: Plan) -> Result<Report, String> {
    let started = Instant::now();
    let fakes = Fakes::start(plan.faults, setup.jwk.clone(), plan.seed)
        .await
        .map_err(|e| format!("starting the fakes: {e}"))?;
    let service_url = fakes.service_url();
    let token = sign_token(&setup.key_pem, &service_url)?;
    std::fs::create_dir_all(&setup.log_dir).map_err(|e| e.to_string())?;
    let mut slots = Vec::new();
    for i in 0..plan.replicas.max(1) {
        let port = free_port().map_err(|e| e.to_string())?;
        slots.push(Slot {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child: None,
            log: setup.log_dir.join(format!("fieldbot-{i}.log")),
        });
    }
    let addrs = slots.iter().map(|s| s.addr).collect();
    let ctx = Arc::new(Ctx {
        cluster: Cluster {
            slots: Mutex::new(slots),
            spawned: Mutex::new(Vec::new()),
            addrs,
            rr: AtomicUsize::new(0),
            setup,
            fakes: fakes.clone(),
        },
        token,
        service_url,
        run: format!("soak{}", plan.seed),
        seq: AtomicU64::new(1),
        redeliveries: AtomicU64::new(0),
        sent: Mutex::new(Vec::new()),
    });
    // The first replica migrates the schema alone; the others start once it is ready.
    for i in 0..plan.replicas.max(1) {
        ctx.cluster.start(i).await?;
    }

    // Each channel gets its engagement first; then a shuffled mix where an FTA request brings its
    // approval along (two commands).
    let channels = plan.channels.max(1);
    let mut rng = Rng::new(plan.seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut work: Vec<(usize, Kind)> = Vec::new();
    let mut budget = plan.commands.saturating_sub(channels);
    while budget > 0 {
        let n = rng.below(channels as u64) as usize;
        let r = rng.below(100);
        let kind = if r < 30 && budget >= 2 {
            budget -= 2;
            Kind::FtaRequest
        } else if r < 65 {
            budget -= 1;
            Kind::Help
        } else {
            budget -= 1;
            Kind::Roles
        };
        work.push((n, kind));
    }
    // Kill points count effects applied at the fakes, not commands accepted: the webhook accepts commands far
    // faster than the queue performs them under faults, so counted by commands the kills came within the
    // first few seconds, before any lead had clicked. Counted by effects, kills land anywhere from the first
    // replies to the approvals' mails.
    let planned: usize = channels
        + work
            .iter()
            .map(|(_, kind)| match kind {
                // The request's reply, thread and two mails; then the approval's card, mail and roster.
                Kind::FtaRequest => 4 + 3,
                _ => 1,
            })
            .sum::<usize>();
    let kill_at: BTreeSet<usize> = (0..plan.kills)
        .map(|_| (planned / 10) + rng.below((planned * 7 / 10).max(1) as u64) as usize)
        .collect();
    let mut kill_points: Vec<usize> = kill_at.into_iter().collect();
    while kill_points.len() < plan.kills {
        kill_points.push(planned / 2 + kill_points.len());
    }

    for n in 0..channels {
        ctx.command(n, Kind::EngagementStart).await;
    }

    let queue = Arc::new(Mutex::new(work.into_iter().enumerate().collect::<Vec<_>>()));
    lock(&queue).reverse();
    let approvals_missing = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..plan.concurrency.max(1) {
        let ctx = Arc::clone(&ctx);
        let queue = Arc::clone(&queue);
        let missing = Arc::clone(&approvals_missing);
        tasks.spawn(async move {
            loop {
                let next = lock(&queue).pop();
                let Some((_, (n, kind))) = next else {
                    return;
                };
                if kind == Kind::FtaRequest {
                    let (activity, ak) = ctx.activity(n, FTA_LINE);
                    let (accepted, _) = ctx.deliver(&activity).await;
                    ctx.record(
                        Kind::FtaRequest,
                        accepted,
                        vec![
                            format!("{ak}:reply#reply_to_activity"),
                            format!("{ak}:fta:thread#create_channel_thread"),
                            format!("{ak}:fta:mail#send_mail"),
                            format!("{ak}:fta:leads:mail#send_mail"),
                        ],
                    );
                    // The approval runs beside the rest, as a lead would click later.
                    if accepted {
                        let ctx = Arc::clone(&ctx);
                        let missing = Arc::clone(&missing);
                        tokio::spawn(async move {
                            if !ctx.approve(n, &ak, w).await {
                                missing.fetch_add(1, Ordering::Relaxed);
                            }
                        });
                    }
                } else {
                    ctx.command(n, kind).await;
                }
            }
        });
    }

    // The killer: at each kill point, SIGKILL one replica (in turn), then restart it. A point the run never
    // reaches (its effects held or lost) is taken after GIVE_UP.
    let mut kills = 0;
    let mut kill_times: Vec<(Instant, usize)> = Vec::new();
    let give_up = Instant::now() + GIVE_UP;
    for (k, point) in kill_points.iter().enumerate() {
        while fakes.applied_count() < *point && Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let victim = k % plan.replicas.max(1);
        ctx.cluster.kill(victim);
        kill_times.push((Instant::now(), victim));
        kills += 1;
        let down = Duration::from_millis(300 + rng.below(700));
        tokio::time::sleep(down).await;
        ctx.cluster.start(victim).await?;
    }
    while tasks.join_next().await.is_some() {}
    // Approvals still waiting for their status card.
    let expected_commands = plan.commands;
    let deadline = Instant::now() + APPROVAL_WAIT;
    while lock(&ctx.sent).len() + approvals_missing.load(Ordering::Relaxed) < expected_commands
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let load = started.elapsed();
    let (drained, jobs) = drain(&ctx.cluster, plan.drain_timeout).await;
    let drain_time = started.elapsed().saturating_sub(load);
    fakes.calm();

    let sent = lock(&ctx.sent).clone();
    let applied = fakes.applied();
    let mut report = Report {
        commands: plan.commands,
        accepted: sent.iter().filter(|s| s.accepted).count(),
        redeliveries: ctx.redeliveries.load(Ordering::Relaxed),
        kills,
        kill_offsets: kill_times
            .iter()
            .map(|(at, _)| at.saturating_duration_since(started))
            .collect(),
        replicas: plan.replicas.max(1),
        drained,
        jobs,
        unkeyed: fakes.unkeyed(),
        faults: fakes.faults(),
        approvals_missing: approvals_missing.load(Ordering::Relaxed),
        load,
        drain: drain_time,
        rerun_after_cut_off: count_in_logs(&ctx.cluster.setup.log_dir, RERUN_LOG_LINE),
        ..Report::default()
    };
    let mut expected: BTreeSet<String> = BTreeSet::new();
    for s in &sent {
        let e = report.by_kind.entry(s.kind.label()).or_insert((0, 0));
        e.0 += 1;
        if s.accepted {
            e.1 += 1;
        }
        expected.extend(s.expected.iter().cloned());
    }
    report.expected = expected.len();
    for key in &expected {
        match applied.get(key) {
            Some(a) => {
                report.applied += 1;
                // A PUT applied again (after a lost answer) leaves the same state: idempotent, not a duplicate.
                if a.count > 1 && a.method == "PUT" {
                    report.reapplied_puts += 1;
                } else if a.count > 1 {
                    report.duplicated.push((key.clone(), a.count));
                }
            }
            None => report.lost.push(key.clone()),
        }
    }
    // A lost effect whose job is held as unconfirmed is not silent: an operator sees it and decides.
    if !report.lost.is_empty() {
        let held = ctx.cluster.held_jobs().await?;
        for key in &report.lost {
            let job = key.split('#').next().unwrap_or(key);
            if let Some(held) = held.get(job) {
                let story = CutOffStory {
                    started,
                    heard: fakes.heard(key),
                    kills: kill_times.clone(),
                    spawned: lock(&ctx.cluster.spawned).clone(),
                    wire_dir: ctx.cluster.setup.log_dir.join("wire"),
                };
                report
                    .held
                    .push((key.clone(), format!("{}{}", held.reason, story.tell(held))));
            }
        }
    }
    for (key, a) in &applied {
        if !expected.contains(key) {
            report
                .unexpected
                .push(format!("{key} ({} {} x{})", a.method, a.path, a.count));
        }
    }
    report.wall = started.elapsed();
    Ok(report)
}

/// What the run can tell about a held job whose effect never reached a fake: the fake's hearings of its
/// key, the kills, and which process marked the cut-off attempt's request as leaving in its wire log.
struct CutOffStory {
    started: Instant,
    heard: Vec<Heard>,
    /// Each SIGKILL, and the slot it hit.
    kills: Vec<(Instant, usize)>,
    spawned: Vec<(Instant, usize)>,
    wire_dir: PathBuf,
}

impl CutOffStory {
    fn at(&self, t: Instant) -> String {
        format!(
            "{:.3} s",
            t.saturating_duration_since(self.started).as_secs_f64()
        )
    }

    /// When the process that wrote `"<job> <attempt>"` in its wire log was spawned, and its slot: the
    /// latest spawn before its log file was created (a process opens its log as it starts).
    fn marked_by(&self, job: i64, attempt: u32) -> Option<(Instant, usize)> {
        let line = format!("{job} {attempt}");
        let entries = std::fs::read_dir(&self.wire_dir).ok()?;
        let created = entries.flatten().find_map(|e| {
            let text = std::fs::read_to_string(e.path()).ok()?;
            text.lines()
                .any(|l| l == line)
                .then(|| e.metadata().and_then(|m| m.created()).ok())
                .flatten()
        })?;
        let age = SystemTime::now().duration_since(created).ok()?;
        let created = Instant::now().checked_sub(age)?;
        self.spawned
            .iter()
            .filter(|(spawned, _)| *spawned <= created)
            .max_by_key(|(spawned, _)| *spawned)
            .copied()
    }

    /// The story, appended to the job's held reason.
    fn tell(&self, held: &HeldJob) -> String {
        let attempt = held.attempts.saturating_sub(1);
        let hearings: Vec<String> = self
            .heard
            .iter()
            .map(|h| format!("{} at {}", h.fate, self.at(h.at)))
            .collect();
        let kills: Vec<String> = self.kills.iter().map(|(k, _)| self.at(*k)).collect();
        let mut story = format!(
            ". The fake read this key {} time(s) ({}); SIGKILLs at {}",
            hearings.len(),
            hearings.join(", "),
            kills.join(", ")
        );
        let Some((spawned, slot)) = self.marked_by(held.id, attempt) else {
            story.push_str(&format!(
                "; no wire log has attempt {attempt}'s line (or its file's creation time is unknown)"
            ));
            return story;
        };
        let Some(kill) = self
            .kills
            .iter()
            .filter(|(k, victim)| *victim == slot && *k >= spawned)
            .map(|(k, _)| *k)
            .min()
        else {
            story.push_str(&format!(
                "; attempt {attempt} was marked as leaving by the process spawned at {}, which no SIGKILL hit",
                self.at(spawned)
            ));
            return story;
        };
        story.push_str(&format!(
            "; attempt {attempt} was marked as leaving by the process spawned at {} and SIGKILLed at {}",
            self.at(spawned),
            self.at(kill)
        ));
        story.push_str(&cut_off_verdict(&self.heard, spawned, kill));
        story
    }
}

/// What became of the request of an attempt marked as leaving by a process spawned at `spawned` and
/// SIGKILLed at `kill`, judged from the fake's hearings of its key. Only the process's own hearings count:
/// an earlier attempt's refusal says nothing about this one.
fn cut_off_verdict(heard: &[Heard], spawned: Instant, kill: Instant) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    match heard.iter().rfind(|h| h.at >= spawned) {
        None => {
            "; the fake never read a request of that process under this key: the kill came between \
                 the mark and the request reaching the fake"
                .to_owned()
        }
        Some(last) if last.refused() && last.at <= kill => format!(
            "; the fake refused that process's request {:.1} ms before the kill, which came before \
             fieldbot read the answer",
            ms(kill.duration_since(last.at))
        ),
        Some(last) if last.refused() => format!(
            "; the fake read that process's request whole and refused it {:.1} ms after the kill",
            ms(last.at.duration_since(kill))
        ),
        Some(last) => format!("; the fake's last hearing of it was \"{}\"", last.fate),
    }
}

/// Waits until no job is pending or running (read from `/metrics` of a live replica, twice in a row).
async fn drain(cluster: &Cluster, timeout: Duration) -> (bool, BTreeMap<String, u64>) {
    let deadline = Instant::now() + timeout;
    let mut quiet = 0;
    let mut last = BTreeMap::new();
    while Instant::now() < deadline {
        for addr in &cluster.addrs {
            if let Ok((200, body)) =
                http(*addr, "GET", "/metrics", None, &[], Duration::from_secs(5)).await
            {
                last = job_counts(&String::from_utf8_lossy(&body));
                break;
            }
        }
        let busy =
            last.get("pending").copied().unwrap_or(1) + last.get("running").copied().unwrap_or(0);
        if busy == 0 {
            quiet += 1;
            if quiet >= 3 {
                return (true, last);
            }
        } else {
            quiet = 0;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    (false, last)
}

fn job_counts(metrics: &str) -> BTreeMap<String, u64> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("fieldbot_jobs{status=\""))
        .filter_map(|l| {
            let (status, rest) = l.split_once('"')?;
            let n = rest.rsplit(' ').next()?.parse::<f64>().ok()?;
            Some((status.to_owned(), n as u64))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heard(at: Instant, fate: &'static str) -> Heard {
        Heard { at, fate }
    }

    #[test]
    fn a_cut_off_request_is_told_by_the_hearings_of_the_process_that_marked_it() {
        let spawned = Instant::now();
        let kill = spawned + Duration::from_secs(3);
        let before_spawn = spawned
            .checked_sub(Duration::from_secs(1))
            .unwrap_or(spawned);
        let ms = Duration::from_millis;

        // Refused, and the kill came before fieldbot read the answer.
        let told = cut_off_verdict(&[heard(kill - ms(2), "503")], spawned, kill);
        assert!(told.contains("2.0 ms before the kill"), "{told}");
        // Already in the fake's hands when fieldbot died: read and refused after the kill. (Measuring only to
        // kills after the refusal called this "before" the next kill, seconds away.)
        let told = cut_off_verdict(&[heard(kill + ms(5), "429")], spawned, kill);
        assert!(told.contains("5.0 ms after the kill"), "{told}");
        // An earlier process's refusal is not this attempt's: its request never arrived.
        let told = cut_off_verdict(&[heard(before_spawn, "503")], spawned, kill);
        assert!(
            told.contains("never read a request of that process"),
            "{told}"
        );
        let told = cut_off_verdict(
            &[
                heard(spawned + ms(10), "503"),
                heard(kill - ms(1), "applied"),
            ],
            spawned,
            kill,
        );
        assert!(told.contains("\"applied\""), "{told}");
    }
}
