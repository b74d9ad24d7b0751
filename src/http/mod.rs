//! The HTTP transport: the Bot Framework webhook and the operator endpoints. Each file owns its routes;
//! `router()` only merges them.

mod api;
mod dashboard;
pub mod dashboard_page;
mod error;
mod health;
mod messages;
mod metrics;
pub mod signin;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use tokio::sync::Notify;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use error::ApiError;

use crate::botframework::auth::JwtValidator;
use crate::clock::Clock;
use crate::config::Settings;
use crate::store::Store;

/// Shared by every handler; cheap to clone: axum clones the state for every request (each extractor and
/// middleware), so it is one `Arc` rather than a dozen (`Clone` and drop of the fields were 2% of the
/// webhook's CPU under load).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct Shared {
    pub settings: Arc<Settings>,
    pub templates: Arc<crate::templates::Templates>,
    pub leads: crate::leads::LeadDirectory,
    /// Entra ID sign-in for operator pages; None in local mode or when not configured.
    pub signin: Option<signin::SignIn>,
    pub dashboard: Arc<dashboard_page::DashboardPage>,
    pub store: Arc<dyn Store>,
    /// None in local mode.
    pub auth: Option<JwtValidator>,
    pub clock: Clock,
    pub jobs_notify: Arc<Notify>,
    /// Claims a turn's replies in its own commit when the worker has a free slot (see `store::BirthClaim`).
    pub born_claims: crate::jobs::BornClaims,
    pub allowed_tenants: Arc<Vec<String>>,
    pub allowed_service_hosts: Arc<Vec<String>>,
    /// One lock per conversation so its activities are processed one after another, in arrival order.
    pub conversation_locks: moka::sync::Cache<String, Arc<tokio::sync::Mutex<()>>>,
}

impl Shared {
    pub fn conversation_lock(&self, conversation_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.conversation_locks
            .get_with(conversation_id.to_string(), || {
                Arc::new(tokio::sync::Mutex::new(()))
            })
    }
}

pub fn new_conversation_locks() -> moka::sync::Cache<String, Arc<tokio::sync::Mutex<()>>> {
    moka::sync::Cache::builder()
        .max_capacity(100_000)
        .time_to_idle(Duration::from_secs(600))
        .build()
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(messages::router(&state.settings))
        .merge(api::router())
        .merge(dashboard::router())
        .merge(health::router())
        .merge(metrics::router())
        .fallback(|| async { ApiError::NotFound })
        .layer(middleware::from_fn(record_request))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let route = req
                    .extensions()
                    .get::<MatchedPath>()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_default();
                tracing::info_span!("http", method = %req.method(), route, status = tracing::field::Empty)
            }),
        )
        .layer(CatchPanicLayer::custom(|_| ApiError::Internal.into_response_plain()))
        .with_state(state)
}

/// Request metrics by matched route (low cardinality) and status.
async fn record_request(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    ::metrics::counter!("fieldbot_http_requests_total", "route" => route.clone(), "status" => status)
        .increment(1);
    ::metrics::histogram!("fieldbot_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
