//! Prometheus text. Queue depth is read from the store at scrape time so it is right on every replica. Done
//! jobs are not counted there: that would walk the whole history on every scrape
//! (`fieldbot_jobs_completed_total` counts completions instead).

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::AppState;
use crate::store::JobStatus;

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(render))
}

async fn render(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.queue_counts().await {
        Ok(counts) => {
            for status in JobStatus::ALL.into_iter().filter(|s| *s != JobStatus::Done) {
                let n = counts
                    .iter()
                    .find(|(s, _)| *s == status)
                    .map(|(_, n)| *n)
                    .unwrap_or(0);
                ::metrics::gauge!("fieldbot_jobs", "status" => status.as_str()).set(n as f64);
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading queue depth failed"),
    }
    let body = crate::telemetry::metrics_handle()
        .map(|h| h.render())
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}
