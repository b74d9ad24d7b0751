//! Wiring: build every part from `Settings`, bind the listener (so the port is known before serving, which
//! tests rely on), then serve HTTP and run the job worker until the shutdown future resolves.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;

use crate::botframework::auth::JwtValidator;
use crate::botframework::connector::ConnectorClient;
use crate::botframework::retry::RetryPolicy;
use crate::botframework::token::TokenProvider;
use crate::clock::Clock;
use crate::config::{GraphMode, Settings};
use crate::graph::{DryRunGraph, GraphApi, GraphClient, GraphRecorder, RecordedCall};
use crate::http::{self, AppState};
use crate::jobs::{EffectContext, SchedulingSettings, Worker, WorkerSettings};
use crate::store::{self, Store};
use crate::templates::Templates;

pub const BOT_FRAMEWORK_SCOPE: &str = "https://api.botframework.com/.default";
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

/// Dry-run Graph calls land in the store's outbox, where `fieldbot outbox` and the API show them.
struct StoreRecorder {
    store: Arc<dyn Store>,
    clock: Clock,
}

#[async_trait::async_trait]
impl GraphRecorder for StoreRecorder {
    async fn record(&self, call: RecordedCall) {
        if let Err(e) = self
            .store
            .record_graph_call(
                &call.method,
                &call.path,
                call.body.as_ref(),
                self.clock.now(),
            )
            .await
        {
            tracing::error!(error = %e, "recording a dry-run Graph call failed");
        }
    }
}

/// How many tokio worker threads the process runs with `settings` on a machine with `cores`: with SQLite,
/// one fewer than the cores (at least one), since the store's writer (which also syncs the log) is a busy
/// thread of its own beside the runtime (README, Performance, step 17); with PostgreSQL, one per core.
pub fn worker_threads(settings: &Settings, cores: usize) -> usize {
    if settings.store.url.starts_with("sqlite:") {
        cores.saturating_sub(1).max(1)
    } else {
        cores.max(1)
    }
}

pub struct Application {
    listener: tokio::net::TcpListener,
    state: AppState,
    worker: Worker,
    run_worker: bool,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Clock::system()).await
    }

    pub async fn build_with_clock(settings: Settings, clock: Clock) -> anyhow::Result<Self> {
        settings.validate()?;
        // Installed before anything records, so no early sample is lost.
        crate::telemetry::metrics_handle();
        let bind = settings.bind_addr()?;
        let store = store::connect(&settings.store.url, settings.store.max_connections)
            .await
            .with_context(|| {
                format!(
                    "cannot open the store at {}",
                    crate::config::redact_url_password(&settings.store.url)
                )
            })?;
        let http_client = outbound_http_client()?;
        let signin_http = http_client.clone();
        // Operators edit config/templates and config/agenda.toml without a rebuild; a broken template
        // fails the start, naming the file and line.
        let templates = Arc::new(
            Templates::load_or_embedded(
                std::path::Path::new("config/templates"),
                std::path::Path::new("config/agenda.toml"),
            )
            .context("cannot load the email and invite templates")?,
        );
        let (auth, token) = if settings.is_local() {
            (None, None)
        } else {
            let auth = JwtValidator::new(
                http_client.clone(),
                settings.bot.app_id.clone(),
                settings.bot.openid_metadata_url.clone(),
            );
            let token = TokenProvider::new(
                http_client.clone(),
                settings.bot_token_url(),
                settings.bot.app_id.clone(),
                secrecy::SecretString::from(settings.bot.app_password.expose_secret().to_string()),
                BOT_FRAMEWORK_SCOPE.to_string(),
            );
            (Some(auth), Some(token))
        };
        let graph: Arc<dyn GraphApi> = match settings.graph_mode() {
            GraphMode::DryRun => Arc::new(DryRunGraph::new(
                settings.graph.base_url.clone(),
                Arc::new(StoreRecorder {
                    store: store.clone(),
                    clock: clock.clone(),
                }),
            )),
            GraphMode::Live => Arc::new(
                GraphClient::new(
                    http_client.clone(),
                    settings.graph.base_url.clone(),
                    TokenProvider::new(
                        http_client.clone(),
                        settings.graph_token_url(),
                        settings.bot.app_id.clone(),
                        secrecy::SecretString::from(
                            settings.bot.app_password.expose_secret().to_string(),
                        ),
                        GRAPH_SCOPE.to_string(),
                    ),
                    Duration::from_millis(settings.bot.connector_timeout_ms),
                )
                .with_clock(clock.clone()),
            ),
        };
        let leads = crate::leads::LeadDirectory::new(
            &settings.fasttrack.leads,
            &settings.fasttrack.lead_groups,
            graph.clone(),
        );
        let connector = ConnectorClient::new(
            http_client,
            token,
            Duration::from_millis(settings.bot.connector_timeout_ms),
        );
        let jobs = &settings.jobs;
        let wire_log = settings.wire_log_dir().and_then(|dir| {
            match crate::jobs::wire::WireLog::open(&dir) {
                Ok(log) => Some(Arc::new(log)),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "no wire log: a job cut off by a crash mid-call is held, not run again");
                    None
                }
            }
        });
        let worker = Worker::new(
            EffectContext {
                connector,
                graph,
                store: store.clone(),
                clock: clock.clone(),
                max_attempts: jobs.max_attempts,
                templates: templates.clone(),
                fta: crate::jobs::fta::FtaSettings {
                    leads: settings.fasttrack.leads.clone(),
                    leads_channel: settings.fasttrack.leads_channel.clone(),
                    mail_sender: settings.fasttrack.mail_sender.clone(),
                    reminder_business_days: settings.fasttrack.fta_reminder_business_days,
                },
                scheduling: SchedulingSettings {
                    time_zone: settings.fasttrack.time_zone.clone(),
                    work_start: settings.fasttrack.work_start.parse().unwrap_or_default(),
                    work_end: settings
                        .fasttrack
                        .work_end
                        .parse()
                        .unwrap_or(jiff::civil::Time::MAX),
                },
            },
            WorkerSettings {
                concurrency: jobs.concurrency,
                lease: Duration::from_secs(jobs.lease_secs),
                policy: RetryPolicy {
                    base: Duration::from_millis(jobs.backoff_base_ms),
                    max_delay: Duration::from_secs(jobs.backoff_max_secs),
                    max_attempts: jobs.max_attempts,
                    max_retry_after: Duration::from_secs(jobs.max_retry_after_secs),
                },
                poll_interval: Duration::from_millis(jobs.poll_interval_ms.max(10)),
                dedup_retention: Duration::from_secs(jobs.dedup_retention_hours * 3600),
                max_throttled: Duration::from_secs(jobs.max_throttled_secs),
                check_after: Duration::from_secs(jobs.check_after_secs),
                // Every attempt after SQLite's one process is the next one on this machine, which reads
                // this log; PostgreSQL replicas may not share it.
                note_with_claim: store.backend() == "sqlite",
                wire_log,
            },
        );
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("cannot listen on {bind}"))?;
        let state = AppState::new(crate::http::Shared {
            templates,
            leads,
            signin: settings
                .signin_settings()
                .map(|s| crate::http::signin::SignIn::new(signin_http.clone(), s)),
            dashboard: Arc::new(
                crate::http::dashboard_page::DashboardPage::new()
                    .context("cannot load the dashboard template")?,
            ),
            allowed_tenants: Arc::new(settings.allowed_tenants()),
            allowed_service_hosts: Arc::new(settings.allowed_service_hosts()),
            settings: Arc::new(settings.clone()),
            store,
            auth,
            clock,
            jobs_notify: worker.notifier(),
            born_claims: worker.born_claims(),
            conversation_locks: http::new_conversation_locks(),
        });
        Ok(Self {
            listener,
            state,
            worker,
            run_worker: settings.jobs.run_worker,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The job worker, for draining the queue deterministically in tests.
    pub fn worker(&self) -> Worker {
        self.worker.clone()
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.state.store.clone()
    }

    pub fn router(&self) -> axum::Router {
        http::router(self.state.clone())
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish and stops the
    /// worker (a job it had claimed is retried elsewhere when its lease expires).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let worker = self
            .run_worker
            .then(|| tokio::spawn(self.worker.clone().run(stopped(stop_rx.clone()))));
        let app =
            http::router(self.state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, app)
            .with_graceful_shutdown(stopped(stop_rx))
            .await
            .context("the HTTP server failed")?;
        if let Some(worker) = worker {
            let _ = worker.await;
        }
        Ok(())
    }
}

fn outbound_http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        // A token endpoint or connector that redirects must not lead the bot's credentials elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("fieldbot/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the HTTP client")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;

    use super::*;

    fn settings(store_url: &str) -> Settings {
        let env = vec![("FIELDBOT__STORE__URL".to_owned(), store_url.to_owned())];
        Settings::load_from(None, Path::new("config"), env).unwrap()
    }

    #[test]
    fn sqlite_leaves_a_core_to_the_stores_own_threads() {
        let sqlite = settings("sqlite://data/fieldbot.db");
        assert_eq!(worker_threads(&sqlite, 2), 1);
        assert_eq!(worker_threads(&sqlite, 8), 7);
        assert_eq!(worker_threads(&sqlite, 1), 1);
        let postgres = settings("postgres://fieldbot@localhost/fieldbot");
        assert_eq!(worker_threads(&postgres, 2), 2);
    }
}
