//! The long soak (issue 8): fieldbot in production mode against fault-injecting fakes of the Connector,
//! Graph and the identity endpoints, commands re-delivered like Teams does, replicas SIGKILLed and
//! restarted; at the end every effect is counted at the fakes by idempotency key. `scripts/soak` builds
//! and runs it; the short version runs in fieldbot's test suite (`tests/api/soak.rs`).

mod driver;
mod fakes;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Store {
    Sqlite,
    Postgres,
}

#[derive(Parser, Debug)]
#[command(
    name = "fieldbot-soak",
    about = "exactly-once soak of fieldbot under injected faults and SIGKILLs"
)]
struct Args {
    #[arg(long)]
    fieldbot_bin: PathBuf,
    /// fieldbot's working directory (holds config/).
    #[arg(long, default_value = ".")]
    fieldbot_dir: PathBuf,
    #[arg(long, value_enum, default_value = "sqlite")]
    store: Store,
    /// With `--store postgres`: the (fresh) database every replica shares.
    #[arg(long)]
    database_url: Option<String>,
    /// Replicas (default: 1 on SQLite, 2 on PostgreSQL).
    #[arg(long)]
    replicas: Option<usize>,
    #[arg(long, default_value_t = 1000)]
    commands: usize,
    #[arg(long, default_value_t = 32)]
    channels: usize,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[arg(long, default_value_t = 2)]
    kills: usize,
    /// No injected faults (a calibration run: the expected effects must match exactly).
    #[arg(long)]
    no_faults: bool,
    #[arg(long)]
    seed: Option<u64>,
    /// Directory with key1.pem and key1.jwk.json.
    #[arg(long, default_value = "tests/fixtures/keys")]
    keys_dir: PathBuf,
    /// Scratch directory: the SQLite file and the replicas' logs.
    #[arg(long)]
    work_dir: PathBuf,
    /// Markdown report to write (the table plus how it was run).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Extra environment for fieldbot, KEY=VALUE (repeatable), e.g. FIELDBOT__TELEMETRY__FILTER=info.
    #[arg(long = "env", value_parser = parse_env)]
    fieldbot_env: Vec<(String, String)>,
    /// What the fieldbot binary was built from, for the report.
    #[arg(long, default_value = "unknown")]
    fieldbot_commit: String,
}

fn parse_env(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {raw}"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = run(args) => outcome,
            _ = terminated() => Err("interrupted".to_owned()),
        }
    });
    // Dropping the runtime drops every task and with them the fieldbot processes (killed on drop).
    drop(runtime);
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::from(2)
        }
    }
}

async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

async fn run(args: Args) -> Result<bool, String> {
    let read =
        |name: &str| std::fs::read(args.keys_dir.join(name)).map_err(|e| format!("{name}: {e}"));
    let key_pem = read("key1.pem")?;
    let jwk = serde_json::from_slice(&read("key1.jwk.json")?).map_err(|e| e.to_string())?;
    let store_url = match args.store {
        Store::Sqlite => format!("sqlite://{}", args.work_dir.join("soak.db").display()),
        Store::Postgres => args
            .database_url
            .clone()
            .ok_or("--store postgres needs --database-url")?,
    };
    let replicas = args.replicas.unwrap_or(match args.store {
        Store::Sqlite => 1,
        Store::Postgres => 2,
    });
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1)
    });
    let plan = driver::Plan {
        commands: args.commands,
        channels: args.channels,
        concurrency: args.concurrency,
        kills: args.kills,
        replicas,
        faults: if args.no_faults {
            fakes::Faults::none()
        } else {
            fakes::Faults::standard()
        },
        seed,
        drain_timeout: Duration::from_secs(300),
    };
    let setup = driver::Setup {
        fieldbot_bin: args.fieldbot_bin.clone(),
        fieldbot_dir: args.fieldbot_dir.clone(),
        store_url,
        key_pem,
        jwk,
        log_dir: args.work_dir.join("logs"),
        env: args.fieldbot_env.clone(),
    };
    let store = match args.store {
        Store::Sqlite => "sqlite",
        Store::Postgres => "postgres",
    };
    eprintln!(
        "soak: {} commands, {store}, {replicas} replica(s), {} SIGKILL(s), faults {}, seed {seed}",
        plan.commands,
        plan.kills,
        if args.no_faults { "off" } else { "on" }
    );
    let report = driver::run(setup, plan.clone()).await?;
    let table = report.table();
    println!("\n## Soak: {store}, {replicas} replica(s)\n\n{table}");
    let details = report.details();
    if !details.is_empty() {
        println!("{details}");
    }
    if let Some(out) = &args.out {
        let text = format!(
            "## {store}, {replicas} replica(s)\n\nfieldbot {}, seed {seed}, {} commands over {} channels, \
             {} in flight, faults {} (20% 503, 429 storms with Retry-After: 1, 3 s stalls, dropped after \
             apply, refusal windows), {} SIGKILL(s).\n\n{table}\n{}",
            args.fieldbot_commit,
            plan.commands,
            plan.channels,
            plan.concurrency,
            if args.no_faults { "off" } else { "on" },
            plan.kills,
            if details.is_empty() {
                String::new()
            } else {
                format!("```\n{details}```\n")
            }
        );
        let mut existing = std::fs::read_to_string(out).unwrap_or_default();
        existing.push_str(&text);
        existing.push('\n');
        std::fs::write(out, existing).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    Ok(report.ok())
}
