//! `GET /dashboard` (server-rendered HTML) and `GET /api/fta-requests` (the same as JSON): every FTA
//! request with status, age, requestor, customer, assigned FTA and its audit history, filterable by status
//! and age. Production needs an Entra ID sign-in; local mode serves loopback callers only.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, OriginalUri, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::dashboard_page::{
    DashboardEvent, DashboardFilter, DashboardRow, STATUSES, age_label, status_label,
};
use super::{ApiError, AppState};
use crate::jobs::fta::{format_time, request_json};
use crate::store::{FtaFilter, FtaRequestRecord};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(dashboard))
        .route("/api/fta-requests", get(api))
        .route("/auth/start", get(start))
        .route("/auth/callback", get(callback))
        .route("/auth/signout", get(signout))
}

/// Who is asking: `Ok(Some(name))` signed in, `Ok(None)` a local-mode loopback caller.
pub(super) fn caller(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<Option<String>, ApiError> {
    if state.settings.is_local() {
        return if peer.ip().is_loopback() {
            Ok(None)
        } else {
            Err(ApiError::Forbidden(
                "local mode serves operator pages on loopback only",
            ))
        };
    }
    match state.signin.as_ref().and_then(|s| s.user(headers)) {
        Some(user) => Ok(Some(user.name)),
        None => Err(ApiError::Unauthorized("operator sign-in required")),
    }
}

/// Every request with its age in hours, newest first.
async fn all_requests(state: &AppState) -> Result<Vec<(FtaRequestRecord, i64)>, ApiError> {
    let now = state.clock.now();
    let all = state
        .store
        .fta_requests(&FtaFilter::default())
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(all
        .into_iter()
        .map(|r| {
            let age_hours = (now - r.created_at).max(0) / 3_600_000;
            (r, age_hours)
        })
        .collect())
}

fn filter_from(
    q: Result<Query<DashboardFilter>, QueryRejection>,
) -> Result<DashboardFilter, ApiError> {
    let Query(filter) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    match filter.status.as_deref() {
        None | Some("open") | Some("all") => Ok(filter),
        Some(s) if STATUSES.contains(&s) => Ok(filter),
        Some(other) => Err(ApiError::BadRequest(format!(
            "status must be open, all or one of {}, not {other:?}",
            STATUSES.join(", ")
        ))),
    }
}

async fn dashboard(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    q: Result<Query<DashboardFilter>, QueryRejection>,
) -> Result<Response, ApiError> {
    let who = match caller(&state, peer, &headers) {
        Ok(who) => who,
        // A browser without a session goes to sign in, and comes back here.
        Err(ApiError::Unauthorized(_)) if state.signin.is_some() => {
            let back = uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/dashboard");
            return Ok(state
                .signin
                .as_ref()
                .map(|s| s.start(back))
                .unwrap_or_default());
        }
        Err(e) => return Err(e),
    };
    let filter = filter_from(q)?;
    let all = all_requests(&state).await?;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for (r, _) in &all {
        *counts.entry(r.status.clone()).or_default() += 1;
    }
    let found: Vec<&(FtaRequestRecord, i64)> = all
        .iter()
        .filter(|(r, age)| filter.matches(&r.status, *age))
        .collect();
    let counts: Vec<(String, usize)> = STATUSES
        .iter()
        .map(|s| (s.to_string(), counts.get(*s).copied().unwrap_or(0)))
        .collect();
    let rows: Vec<DashboardRow> = found
        .iter()
        .map(|(r, age)| DashboardRow {
            id: r.id,
            customer: r.customer.clone(),
            status: r.status.clone(),
            status_label: status_label(&r.status),
            requestor: r.requestor.name.clone(),
            assigned_fta: r.assigned_fta.as_ref().map(|p| p.name.clone()),
            age: age_label(*age),
            age_hours: *age,
            submitted_at: format_time(r.created_at),
            request_type: r
                .details
                .get("request_type")
                .and_then(|t| t.as_str())
                .and_then(crate::domain::fta::FtaRequestType::parse)
                .map(|t| t.label().to_string())
                .unwrap_or_default(),
            history: r
                .history
                .iter()
                .map(|h| DashboardEvent {
                    at: format_time(h.at),
                    who: h.who.clone(),
                    action: match &h.detail {
                        Some(d) if !d.is_empty() => format!("{}: {d}", h.action.replace('_', " ")),
                        _ => h.action.replace('_', " "),
                    },
                })
                .collect(),
        })
        .collect();
    let html = state
        .dashboard
        .render(&rows, &filter, who.as_deref(), &counts)
        .map_err(|e| {
            tracing::error!(error = %e, "rendering the dashboard failed");
            ApiError::Internal
        })?;
    let mut response = (StatusCode::OK, html).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    Ok(response)
}

async fn api(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    q: Result<Query<DashboardFilter>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller(&state, peer, &headers)?;
    let filter = filter_from(q)?;
    let now = state.clock.now();
    let found: Vec<serde_json::Value> = all_requests(&state)
        .await?
        .iter()
        .filter(|(r, age)| filter.matches(&r.status, *age))
        .map(|(r, _)| request_json(r, now))
        .collect();
    Ok(Json(
        json!({ "status": filter.effective_status(), "fta_requests": found }),
    ))
}

async fn start(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let signin = state.signin.as_ref().ok_or(ApiError::NotFound)?;
    Ok(signin.start(q.get("return_to").map_or("/dashboard", String::as_str)))
}

async fn callback(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let signin = state.signin.as_ref().ok_or(ApiError::NotFound)?;
    Ok(signin.callback(&q, &headers).await)
}

async fn signout(State(state): State<AppState>) -> Result<Response, ApiError> {
    let signin = state.signin.as_ref().ok_or(ApiError::NotFound)?;
    Ok(signin.sign_out())
}
