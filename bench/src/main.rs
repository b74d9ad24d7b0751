//! Load benchmark of fieldbot (production mode: JWT validation, SQLite store, durable queue) against a
//! Bot Framework SDK v4 Node bot, on one machine, with fake Microsoft endpoints in this process.
//! `scripts/bench` builds everything and runs this; see bench/README.md.

mod fakes;
mod load;
mod procstat;
mod report;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::header::HeaderValue;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::load::{ActivityTemplate, LoadSpec};
use crate::procstat::SelfCpu;
use crate::report::{Scenario, StepReport};

const APP_ID: &str = "0f6c2f39-6a0e-4a55-9d7e-4c1b6f3e2a10";
const TENANT_ID: &str = "8d3e1c2a-0000-4000-8000-00000000aaaa";
const TOKEN_POOL: usize = 64;
const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Parser, Debug, Clone)]
#[command(
    name = "fieldbot-bench",
    about = "fieldbot vs a Bot Framework SDK v4 Node bot, same machine, fake Connector",
    // scripts/bench passes its defaults first; options given after its `--` override them.
    args_override_self = true
)]
pub struct Args {
    /// The fieldbot release binary.
    #[arg(long)]
    fieldbot_bin: PathBuf,
    /// What the fieldbot binary was built from, for the report (scripts/bench passes it at build time);
    /// default: the repository's HEAD now.
    #[arg(long)]
    fieldbot_commit: Option<String>,
    /// fieldbot's working directory (must contain config/).
    #[arg(long, default_value = ".")]
    fieldbot_dir: PathBuf,
    /// Directory with key1.pem and key1.jwk.json (the repository's test keys).
    #[arg(long, default_value = "tests/fixtures/keys")]
    keys_dir: PathBuf,
    /// Where each fieldbot run gets a fresh SQLite database.
    #[arg(long)]
    store_dir: PathBuf,
    /// Also run fieldbot with its database here (a tmpfs such as /dev/shm), to show the cost of fsync.
    #[arg(long)]
    tmpfs_store_dir: Option<PathBuf>,
    /// Extra environment for every fieldbot run, KEY=VALUE (repeatable), e.g. FIELDBOT__JOBS__CONCURRENCY=64.
    #[arg(long = "fieldbot-env", value_parser = parse_env)]
    fieldbot_env: Vec<(String, String)>,
    /// Folder holding bot.js and its node_modules; without it the Node bot is not run.
    #[arg(long)]
    node_dir: Option<PathBuf>,
    #[arg(long, default_value = "node")]
    node_bin: String,
    /// Concurrent connections per step.
    #[arg(long, value_delimiter = ',', default_value = "16,64,256")]
    connections: Vec<usize>,
    #[arg(long, default_value_t = 2.0)]
    warmup_secs: f64,
    #[arg(long, default_value_t = 10.0)]
    duration_secs: f64,
    /// How long to wait after the load for the fake Connector to receive every reply.
    #[arg(long, default_value_t = 600.0)]
    reply_wait_secs: f64,
    /// Spread the activities over this many Teams channels; 0: one channel per connection.
    #[arg(long, default_value_t = 0)]
    channels: usize,
    /// Per-request timeout of the load generator.
    #[arg(long, default_value_t = 30.0)]
    request_timeout_secs: f64,
    /// Skip the slow-connector scenario.
    #[arg(long)]
    no_slow: bool,
    #[arg(long, default_value_t = 3000)]
    slow_delay_ms: u64,
    #[arg(long, default_value_t = 64)]
    slow_connections: usize,
    #[arg(long, default_value_t = 10.0)]
    slow_duration_secs: f64,
    #[arg(long, default_value_t = 60.0)]
    slow_reply_wait_secs: f64,
    /// The paced slow-Connector step: this many activities per second in all (0: skip the step), spread over
    /// `--paced-channels` conversations, as Teams traffic comes from many conversations at a few messages
    /// each; fieldbot runs it with `jobs.concurrency` = `--paced-concurrency`, since replies in flight are
    /// rate × Connector latency.
    #[arg(long, default_value_t = 100.0)]
    paced_rate: f64,
    #[arg(long, default_value_t = 1000)]
    paced_channels: usize,
    #[arg(long, default_value_t = 512)]
    paced_concurrency: usize,
    #[arg(long, default_value_t = 10.0)]
    paced_duration_secs: f64,
    /// Where latest.json and latest.md are written.
    #[arg(long, default_value = "bench/results")]
    out_dir: PathBuf,
    /// Each started bot's pid is appended here, so the calling script can clean up after a crash.
    #[arg(long)]
    pid_file: Option<PathBuf>,
}

fn parse_env(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected KEY=VALUE, got {raw:?}"))
}

#[derive(Debug, Clone)]
pub enum Kind {
    Fieldbot { store_root: PathBuf },
    Node { dir: PathBuf },
}

#[derive(Debug, Clone)]
pub struct Target {
    pub label: String,
    pub kind: Kind,
}

impl Target {
    pub fn is_node(&self) -> bool {
        matches!(self.kind, Kind::Node { .. })
    }
}

struct Ctx {
    args: Args,
    fakes: fakes::Fakes,
    tokens: Arc<Vec<HeaderValue>>,
    activity: Arc<ActivityTemplate>,
    /// The paced step's activities, spread over `--paced-channels` conversations.
    paced_activity: Arc<ActivityTemplate>,
    seq: Arc<AtomicU64>,
    runs: AtomicU64,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // The generator gets a thread of its own (named, so its CPU can be told apart from the fakes').
    let worker =
        std::thread::Builder::new()
            .name("load-gen".into())
            .spawn(move || -> Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    tokio::select! {
                        result = run(args) => result,
                        // Dropping `run` drops the bots' Child handles, which kill them (kill_on_drop).
                        _ = terminated() => bail!("interrupted"),
                    }
                })
            });
    let outcome = match worker {
        Ok(handle) => handle
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the benchmark thread panicked"))),
        Err(e) => Err(e.into()),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fieldbot-bench: {e:#}");
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

async fn run(args: Args) -> Result<()> {
    let keys = &args.keys_dir;
    let pem = std::fs::read(keys.join("key1.pem"))
        .with_context(|| format!("reading {}", keys.join("key1.pem").display()))?;
    let jwk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(keys.join("key1.jwk.json"))?)?;
    let fakes = fakes::start(jwk)?;
    let tokens = Arc::new(sign_tokens(&pem, &fakes.service_url())?);
    let run_tag = format!(
        "bench{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let activity = Arc::new(ActivityTemplate {
        service_url: fakes.service_url(),
        tenant_id: TENANT_ID.to_owned(),
        bot_id: format!("28:{APP_ID}"),
        run_tag: run_tag.clone(),
        channels: args.channels,
    });
    let paced_activity = Arc::new(ActivityTemplate {
        service_url: fakes.service_url(),
        tenant_id: TENANT_ID.to_owned(),
        bot_id: format!("28:{APP_ID}"),
        run_tag,
        channels: args.paced_channels.max(1),
    });
    std::fs::create_dir_all(&args.store_dir)?;
    let ctx = Ctx {
        args: args.clone(),
        fakes,
        tokens,
        activity,
        paced_activity,
        seq: Arc::new(AtomicU64::new(1)),
        runs: AtomicU64::new(0),
    };

    let mut targets = vec![Target {
        label: "fieldbot".into(),
        kind: Kind::Fieldbot {
            store_root: args.store_dir.clone(),
        },
    }];
    if let Some(dir) = &args.tmpfs_store_dir {
        std::fs::create_dir_all(dir)?;
        targets.push(Target {
            label: "fieldbot (SQLite on tmpfs)".into(),
            kind: Kind::Fieldbot {
                store_root: dir.clone(),
            },
        });
    }
    if let Some(dir) = &args.node_dir {
        targets.push(Target {
            label: "node".into(),
            kind: Kind::Node { dir: dir.clone() },
        });
    }

    let mut steps: Vec<StepReport> = Vec::new();
    for &connections in &args.connections {
        for target in &targets {
            eprintln!("-- {} at {connections} connections", target.label);
            let step = run_step(&ctx, target, Scenario::Fast, connections).await?;
            eprintln!("   {}", step.one_line());
            steps.push(step);
        }
    }
    if !args.no_slow {
        // The slow Connector matters for fieldbot's promise (acks do not wait on it); the Node bot shows the
        // contrast, since its SDK answers the webhook only after the reply was posted.
        for target in targets
            .iter()
            .filter(|t| t.label == "fieldbot" || t.is_node())
        {
            eprintln!(
                "-- {} at {} connections, Connector answering after {} ms",
                target.label, args.slow_connections, args.slow_delay_ms
            );
            let step =
                run_step(&ctx, target, Scenario::SlowConnector, args.slow_connections).await?;
            eprintln!("   {}", step.one_line());
            steps.push(step);
        }
        if args.paced_rate > 0.0 {
            for target in targets
                .iter()
                .filter(|t| t.label == "fieldbot" || t.is_node())
            {
                eprintln!(
                    "-- {} at {}/s over {} conversations, Connector answering after {} ms",
                    target.label, args.paced_rate, args.paced_channels, args.slow_delay_ms
                );
                let step =
                    run_step(&ctx, target, Scenario::SlowPaced, args.slow_connections).await?;
                eprintln!("   {}", step.one_line());
                steps.push(step);
            }
        }
    }

    let document = report::Document::new(&args, &targets, steps);
    let text = document.text_tables();
    println!("{text}");
    std::fs::create_dir_all(&args.out_dir)?;
    std::fs::write(
        args.out_dir.join("latest.json"),
        serde_json::to_string_pretty(&document)? + "\n",
    )?;
    std::fs::write(args.out_dir.join("latest.md"), document.markdown())?;
    eprintln!(
        "wrote {} and {}",
        args.out_dir.join("latest.json").display(),
        args.out_dir.join("latest.md").display()
    );
    Ok(())
}

/// A pool signed up front so the generator never spends CPU on RSA during the run.
fn sign_tokens(pem: &[u8], service_url: &str) -> Result<Vec<HeaderValue>> {
    let key = EncodingKey::from_rsa_pem(pem).context("key1.pem is not an RSA private key")?;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    (0..TOKEN_POOL)
        .map(|i| {
            let claims = json!({
                "iss": fakes::ISSUER, "aud": APP_ID, "serviceurl": service_url, "tid": TENANT_ID,
                "nbf": now - 10, "exp": now + 3600, "jti": format!("bench-{i}"),
            });
            let token = jsonwebtoken::encode(&header, &claims, &key)?;
            Ok(HeaderValue::from_str(&format!("Bearer {token}"))?)
        })
        .collect()
}

struct Bot {
    child: Child,
    pid: u32,
    addr: SocketAddr,
    log: PathBuf,
    store: Option<PathBuf>,
}

fn free_port() -> Result<u16> {
    // The port is released before the bot binds it; on an otherwise idle loopback nobody takes it meanwhile.
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn start_bot(ctx: &Ctx, target: &Target, scenario: Scenario) -> Result<Bot> {
    let run = ctx.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let log = ctx.args.store_dir.join(format!("bot-{run}.log"));
    let log_file = std::fs::File::create(&log)?;
    let (mut command, store) = match &target.kind {
        Kind::Fieldbot { store_root } => {
            let store = store_root.join(format!("fieldbot-{run}"));
            std::fs::create_dir_all(&store)?;
            let mut command = Command::new(&ctx.args.fieldbot_bin);
            command.arg("serve").current_dir(&ctx.args.fieldbot_dir);
            for (key, _) in std::env::vars() {
                if key.starts_with("FIELDBOT") || key == "RUST_LOG" {
                    command.env_remove(key);
                }
            }
            let fakes = &ctx.fakes;
            command
                .env("FIELDBOT__BOT__APP_ID", APP_ID)
                .env("FIELDBOT__BOT__APP_PASSWORD", "bench-app-password")
                .env("FIELDBOT__BOT__TENANT_ID", TENANT_ID)
                .env(
                    "FIELDBOT__BOT__OPENID_METADATA_URL",
                    fakes.openid_metadata_url(),
                )
                .env("FIELDBOT__BOT__TOKEN_URL", fakes.token_url_template())
                .env("FIELDBOT__BOT__ALLOWED_SERVICE_HOSTS", "127.0.0.1")
                .env(
                    "FIELDBOT__STORE__URL",
                    format!("sqlite://{}", store.join("bench.db").display()),
                )
                .env("FIELDBOT__SERVER__BIND", addr.to_string())
                .env("FIELDBOT__GRAPH__MODE", "dry-run")
                .env("FIELDBOT__TELEMETRY__FILTER", "warn");
            if scenario == Scenario::SlowPaced {
                command.env(
                    "FIELDBOT__JOBS__CONCURRENCY",
                    ctx.args.paced_concurrency.to_string(),
                );
            }
            for (key, value) in &ctx.args.fieldbot_env {
                command.env(key, value);
            }
            (command, Some(store))
        }
        Kind::Node { dir } => {
            let mut command = Command::new(&ctx.args.node_bin);
            command
                .arg("bot.js")
                .current_dir(dir)
                .env("PORT", port.to_string())
                .env("NODE_ENV", "production");
            (command, None)
        }
    };
    command
        .stdin(std::process::Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .kill_on_drop(true);
    let child = command
        .spawn()
        .with_context(|| format!("starting {}", target.label))?;
    let pid = child.id().context("the bot exited at once")?;
    if let Some(pid_file) = &ctx.args.pid_file {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(pid_file)?;
        writeln!(f, "{pid}")?;
    }
    let mut bot = Bot {
        child,
        pid,
        addr,
        log,
        store,
    };
    let probe_path = if target.is_node() { "/" } else { "/readyz" };
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = bot.child.try_wait()? {
            bail!(
                "{} exited with {status} before it was ready:\n{}",
                target.label,
                log_tail(&bot.log)
            );
        }
        match probe(addr, probe_path).await {
            // The Node bot has no GET route: any HTTP answer means express is listening.
            Some(status) if target.is_node() || status == 200 => return Ok(bot),
            _ => {}
        }
        if Instant::now() > deadline {
            bail!(
                "{} not ready after {READY_TIMEOUT:?}:\n{}",
                target.label,
                log_tail(&bot.log)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

async fn probe(addr: SocketAddr, path: &str) -> Option<u16> {
    let attempt = async {
        let stream = TcpStream::connect(addr).await.ok()?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = Request::get(path)
            .header(hyper::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .ok()?;
        let response = sender.send_request(request).await.ok()?;
        let status = response.status().as_u16();
        let _ = response.into_body().collect().await;
        Some(status)
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
}

async fn stop_bot(mut bot: Bot) {
    let _ = bot.child.kill().await;
    if let Some(store) = bot.store.take() {
        let _ = std::fs::remove_dir_all(store);
    }
}

#[derive(Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    pub bot_cpu: f64,
    pub own: SelfCpu,
}

fn sample(pid: u32) -> Sample {
    Sample {
        at: Instant::now(),
        bot_cpu: procstat::process_cpu(pid).unwrap_or(f64::NAN),
        own: SelfCpu::sample(),
    }
}

async fn run_step(
    ctx: &Ctx,
    target: &Target,
    scenario: Scenario,
    connections: usize,
) -> Result<StepReport> {
    let args = &ctx.args;
    let (delay, duration, reply_wait) = match scenario {
        Scenario::Fast => (Duration::ZERO, args.duration_secs, args.reply_wait_secs),
        Scenario::SlowConnector => (
            Duration::from_millis(args.slow_delay_ms),
            args.slow_duration_secs,
            args.slow_reply_wait_secs,
        ),
        Scenario::SlowPaced => (
            Duration::from_millis(args.slow_delay_ms),
            args.paced_duration_secs,
            args.slow_reply_wait_secs,
        ),
    };
    let (activity, pace) = match scenario {
        Scenario::SlowPaced => (
            Arc::clone(&ctx.paced_activity),
            Some(Duration::from_secs_f64(
                connections as f64 / args.paced_rate.max(0.001),
            )),
        ),
        _ => (Arc::clone(&ctx.activity), None),
    };
    ctx.fakes.connector.reset(delay);
    let tokens_before = ctx
        .fakes
        .identity
        .token_requests
        .load(std::sync::atomic::Ordering::SeqCst);
    let mut bot = start_bot(ctx, target, scenario).await?;
    let spec = Arc::new(LoadSpec {
        addr: bot.addr,
        connections,
        warmup: Duration::from_secs_f64(args.warmup_secs),
        duration: Duration::from_secs_f64(duration),
        request_timeout: Duration::from_secs_f64(args.request_timeout_secs),
        tokens: (!target.is_node()).then(|| Arc::clone(&ctx.tokens)),
        activity,
        pace,
        seq: Arc::clone(&ctx.seq),
    });
    let pid = bot.pid;
    let start = sample(pid);
    let warm_end = start.at + spec.warmup;
    let end = warm_end + spec.duration;
    let sampler = async move {
        tokio::time::sleep_until(warm_end.into()).await;
        let a = sample(pid);
        tokio::time::sleep_until(end.into()).await;
        (a, sample(pid))
    };
    let (load, (window_start, window_end)) =
        tokio::join!(load::run(Arc::clone(&spec), start.at), sampler);

    // Every acknowledged activity owes a reply; wait for the Connector to have them all (bounded).
    let expected: HashSet<u64> = load.acked.iter().copied().collect();
    let deadline = Instant::now() + Duration::from_secs_f64(reply_wait);
    let mut bot_died = None;
    loop {
        if ctx.fakes.connector.distinct_replied() >= expected.len() {
            let tally = ctx.fakes.connector.tally();
            if expected.iter().all(|id| tally.seen.contains_key(id)) {
                break;
            }
        }
        if let Ok(Some(status)) = bot.child.try_wait() {
            bot_died = Some(format!("{status}"));
            break;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = sample(pid);
    let peak_rss = procstat::peak_rss_mib(pid).unwrap_or(f64::NAN);
    let log = bot.log.clone();
    stop_bot(bot).await;
    if let Some(status) = bot_died {
        bail!(
            "{} died during the run ({status}):\n{}",
            target.label,
            log_tail(&log)
        );
    }
    let tally = ctx.fakes.connector.tally();
    let token_requests = ctx
        .fakes
        .identity
        .token_requests
        .load(std::sync::atomic::Ordering::SeqCst)
        - tokens_before;
    Ok(report::StepReport::build(report::StepInput {
        target,
        scenario,
        connections,
        load: &load,
        expected: &expected,
        tally: &tally,
        start,
        window_start,
        window_end,
        drained,
        peak_rss_mib: peak_rss,
        token_requests,
        connector_delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
    }))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Args;

    #[test]
    fn later_options_override_the_scripts_defaults_and_env_accumulates() {
        let args = Args::try_parse_from([
            "fieldbot-bench",
            "--fieldbot-bin",
            "fb",
            "--store-dir",
            "s",
            "--out-dir",
            "a",
            "--fieldbot-env",
            "A=1",
            "--fieldbot-env",
            "B=2",
            "--out-dir",
            "b",
            "--connections",
            "64",
        ])
        .map_err(|e| e.to_string());
        let Ok(args) = args else {
            panic!("{args:?}");
        };
        assert_eq!(args.out_dir, std::path::PathBuf::from("b"));
        assert_eq!(args.connections, vec![64]);
        assert_eq!(
            args.fieldbot_env,
            vec![("A".into(), "1".into()), ("B".into(), "2".into())]
        );
    }
}
