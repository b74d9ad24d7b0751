//! The command line: `serve`, `migrate`, `print-config`, `doctor`, `outbox`, `jobs`, `package`,
//! `local-connector`.
//! Everything else lives in the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fieldbot::app::Application;
use fieldbot::config::Settings;

/// The webhook and the queue allocate many short-lived JSON trees; mimalloc's per-thread free lists cut the
/// allocator's share of CPU that profiling showed with glibc malloc (see README, Performance). Built with
/// `no_thp`: where transparent huge pages are on request, its arena otherwise became resident 2 MiB at a time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "fieldbot",
    version,
    about = "Teams bot for FastTrack Managers working with the Field"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the webhook, the operator endpoints and the job worker.
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Print the effective configuration (defaults < config/$FIELDBOT_ENV.toml < FIELDBOT__* env), secrets redacted.
    PrintConfig,
    /// Check the configuration against reality (store, signing keys, credentials, Graph permissions) and
    /// say what is wrong; exits 1 when something fails.
    Doctor,
    /// List the Graph calls recorded instead of sent (graph.mode = "dry-run"), oldest first.
    Outbox {
        /// How many of the most recent calls to show.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print each call's JSON body too.
        #[arg(long)]
        bodies: bool,
    },
    /// The jobs that need an operator: dead letters and unconfirmed calls (a Connector POST that may have
    /// happened, held instead of sent twice; a mail or draft is looked up by its key instead).
    Jobs {
        #[command(subcommand)]
        action: JobsAction,
    },
    /// Build the Teams app package (manifest.json, color.png, outline.png) from manifest/ and the
    /// configuration, validated against the manifest schema v1.25 before it is written.
    Package {
        /// Where to write the zip.
        #[arg(long, default_value = "fieldbot-teams.zip")]
        out: std::path::PathBuf,
        /// The app version in the manifest (MAJOR.MINOR.PATCH); raise it for every upload of a change.
        #[arg(long, default_value = fieldbot::package::DEFAULT_VERSION)]
        version: String,
        /// The Teams app id (a GUID). Default: derived from bot.app_id, the same on every run.
        #[arg(long)]
        app_id: Option<String>,
        /// The bot's Entra app id, instead of bot.app_id (so packaging needs no bot secret).
        #[arg(long)]
        bot_app_id: Option<String>,
        /// fieldbot's public URL (for validDomains), instead of signin.public_base_url.
        #[arg(long)]
        public_base_url: Option<String>,
    },
    /// Run a stand-in Bot Connector on loopback that prints what the bot sends (for local mode).
    LocalConnector {
        #[arg(long, default_value = "127.0.0.1:3979")]
        bind: std::net::SocketAddr,
        /// Print activities as raw JSON instead of readable text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum JobsAction {
    /// List the held jobs, oldest first.
    List {
        /// `unconfirmed` or `dead`.
        #[arg(long, default_value = "unconfirmed")]
        status: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Queue a held job to run again now, with fresh attempts. For an unconfirmed call, first check that
    /// it did not happen (the message is not in the conversation, the mail is not in Sent Items).
    Requeue { id: i64 },
    /// Close an unconfirmed job without running it again, once you have checked that its call happened
    /// (the message is in the conversation). It then leaves the list.
    Close {
        id: i64,
        /// What you checked, kept on the job.
        #[arg(long, default_value = "checked by an operator: the call happened")]
        note: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match cli.command {
        Command::LocalConnector { .. } => None,
        _ => match Settings::load() {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("fieldbot: {e}");
                return ExitCode::from(2);
            }
        },
    };
    // tokio panics on a value it cannot read; say so plainly instead.
    if let Some(value) = std::env::var_os("TOKIO_WORKER_THREADS")
        && value
            .to_str()
            .and_then(|v| v.parse::<usize>().ok())
            .is_none_or(|n| n == 0)
    {
        eprintln!("fieldbot: TOKIO_WORKER_THREADS must be a whole number above 0, got {value:?}");
        return ExitCode::from(2);
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    // TOKIO_WORKER_THREADS, when set, is tokio's to read and wins.
    if let (Some(settings), None) = (&settings, std::env::var_os("TOKIO_WORKER_THREADS")) {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        runtime.worker_threads(fieldbot::app::worker_threads(settings, cores));
    }
    match runtime.build() {
        Ok(runtime) => runtime.block_on(run(cli, settings)),
        Err(e) => {
            eprintln!("fieldbot: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, settings: Option<Settings>) -> ExitCode {
    if let Command::LocalConnector { bind, json } = cli.command {
        return match fieldbot::local_connector::run(bind, json).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fieldbot: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let Some(settings) = settings else {
        return ExitCode::from(2);
    };
    let result = match cli.command {
        Command::PrintConfig => settings
            .redacted_toml()
            .map(|t| print!("{t}"))
            .map_err(Into::into),
        Command::Migrate => migrate(&settings).await,
        Command::Doctor => {
            let checks = fieldbot::doctor::run(&settings).await;
            for check in &checks {
                println!("{}", check.line());
            }
            if checks
                .iter()
                .any(|c| c.status == fieldbot::doctor::Status::Fail)
            {
                return ExitCode::FAILURE;
            }
            Ok(())
        }
        Command::Outbox { limit, bodies } => outbox(&settings, limit, bodies).await,
        Command::Jobs { action } => jobs(&settings, action).await,
        Command::Serve => serve(settings).await,
        Command::Package {
            out,
            version,
            app_id,
            bot_app_id,
            public_base_url,
        } => package(
            settings,
            fieldbot::package::PackageOptions {
                out,
                version,
                app_id,
            },
            bot_app_id,
            public_base_url,
        ),
        Command::LocalConnector { .. } => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fieldbot: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let store = fieldbot::store::connect(&settings.store.url, 1).await?;
    println!("store {} is migrated", store.backend());
    Ok(())
}

async fn outbox(settings: &Settings, limit: u32, bodies: bool) -> anyhow::Result<()> {
    let store = fieldbot::store::connect(&settings.store.url, 1).await?;
    let calls = store.graph_outbox(limit).await?;
    if calls.is_empty() {
        println!("no recorded Graph calls");
    }
    for call in calls {
        let at = jiff::Timestamp::from_millisecond(call.recorded_at)
            .map(|t| t.to_string())
            .unwrap_or_default();
        println!("#{:<6} {at}  {:<6} {}", call.id, call.method, call.path);
        if let (true, Some(body)) = (bodies, &call.body) {
            println!("{}", serde_json::to_string_pretty(body).unwrap_or_default());
        }
    }
    Ok(())
}

async fn jobs(settings: &Settings, action: JobsAction) -> anyhow::Result<()> {
    use fieldbot::store::JobStatus;
    let store = fieldbot::store::connect(&settings.store.url, 1).await?;
    match action {
        JobsAction::List { status, limit } => {
            let status = match status.as_str() {
                "unconfirmed" => JobStatus::Unconfirmed,
                "dead" => JobStatus::Dead,
                other => anyhow::bail!("--status must be unconfirmed or dead, not {other:?}"),
            };
            let held = store.jobs_with_status(status, limit).await?;
            if held.is_empty() {
                println!("no {} jobs", status.as_str());
            }
            for job in held {
                println!(
                    "#{:<8} {:<22} attempts {:<3} {}\n          {}",
                    job.id,
                    job.kind,
                    job.attempts,
                    job.idempotency_key,
                    job.last_error.unwrap_or_default()
                );
            }
        }
        JobsAction::Requeue { id } => {
            let now = fieldbot::clock::Clock::system().now();
            if !store.requeue_job(id, now).await? {
                anyhow::bail!("job {id} is not dead or unconfirmed (or does not exist)");
            }
            println!(
                "job {id} queued again; a running fieldbot picks it up within its poll interval"
            );
        }
        JobsAction::Close { id, note } => {
            let now = fieldbot::clock::Clock::system().now();
            if !store.close_job(id, now, &format!("closed: {note}")).await? {
                anyhow::bail!("job {id} is not unconfirmed (or does not exist)");
            }
            println!("job {id} closed as done; it will not be sent");
        }
    }
    Ok(())
}

fn package(
    mut settings: Settings,
    opts: fieldbot::package::PackageOptions,
    bot_app_id: Option<String>,
    public_base_url: Option<String>,
) -> anyhow::Result<()> {
    if let Some(id) = bot_app_id {
        settings.bot.app_id = id;
    }
    if let Some(url) = public_base_url {
        settings.signin.public_base_url = url;
    }
    let summary = fieldbot::package::package(&settings, &opts)?;
    println!(
        "wrote {} (Teams app id {}, {} commands): upload it in the Teams admin center or sideload it",
        summary.path.display(),
        summary.app_id,
        summary.commands
    );
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let _telemetry = fieldbot::telemetry::init_tracing(&settings.telemetry, std::io::stdout)?;
    let app = Application::build(settings.clone()).await?;
    tracing::info!(
        addr = %app.local_addr(),
        mode = if settings.is_local() { "local" } else { "production" },
        store = app.store().backend(),
        graph = ?settings.graph_mode(),
        "fieldbot is listening"
    );
    app.run_until_stopped(shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
