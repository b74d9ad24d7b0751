//! `POST /api/messages`: the Bot Framework webhook. Authenticate, parse, refuse what may not be processed,
//! de-duplicate, then commit the turn's changes and effects in one transaction and answer at once; the
//! effects leave through the job queue.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;

use super::{ApiError, AppState};
use crate::botframework::activity::Activity;
use crate::botframework::auth::{self, AuthError};
use crate::config::Settings;
use crate::store::{Change, Commit, InboundKey, StoreError};
use crate::turn::{self, TurnContext};

pub fn router(settings: &Settings) -> axum::Router<AppState> {
    Router::new()
        .route("/api/messages", post(receive))
        .layer(DefaultBodyLimit::max(settings.server.max_body_bytes))
}

#[tracing::instrument(
    name = "activity",
    skip_all,
    fields(activity.id, activity.type, conversation.id, tenant.id)
)]
async fn receive(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // The token is checked before the body is even parsed: an anonymous caller learns nothing.
    let token = match &state.auth {
        Some(validator) => Some(
            validator
                .verify_bearer(authorization)
                .await
                .map_err(refuse)?,
        ),
        None => {
            if !peer.ip().is_loopback() {
                return Err(ApiError::Unauthorized(
                    "local mode accepts loopback requests only",
                ));
            }
            None
        }
    };
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    })?;
    let activity: Activity = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not a valid activity: {e}")))?;
    if activity.kind.is_empty() {
        return Err(ApiError::BadRequest("the activity has no type".into()));
    }
    let span = tracing::Span::current();
    span.record("activity.type", activity.kind.as_str());
    if let Some(id) = &activity.id {
        span.record("activity.id", id.as_str());
    }
    if let Some(id) = activity.conversation_id() {
        span.record("conversation.id", id);
    }
    if let Some(id) = activity.tenant_id() {
        span.record("tenant.id", id);
    }

    let service_url = activity
        .service_url
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::BadRequest("the activity has no serviceUrl".into()))?;
    let channel_id = activity.channel_id.as_deref().unwrap_or_default();
    if let Some(token) = &token {
        token
            .check_activity(service_url, channel_id)
            .map_err(refuse)?;
    }
    auth::check_tenant(&state.allowed_tenants, activity.tenant_id()).map_err(refuse)?;
    if !service_url_allowed(service_url, &state.allowed_service_hosts) {
        // A forged serviceUrl must never make the bot call an arbitrary host with its token.
        return Err(ApiError::Forbidden("serviceUrl host not allowed"));
    }

    let ctx = TurnContext {
        store: state.store.as_ref(),
        templates: state.templates.as_ref(),
        leads: &state.leads,
        default_tz: &state.settings.fasttrack.time_zone,
        now: state.clock.now(),
        max_attempts: state.settings.jobs.max_attempts,
    };
    // A re-delivery is recognised by the commit itself (the de-duplication row is its first write), so the
    // common case costs no extra read; a duplicate's re-decided outcome is discarded there.
    let key = inbound_key(&activity);
    let lock = state.conversation_lock(activity.base_conversation_id().unwrap_or_default());
    let _in_order = lock.lock().await;
    // A conditional update that lost a race (two leads clicking at once) is decided again against the
    // winner's state, so the loser hears what happened instead of getting an error.
    let mut attempts = 0;
    let (invoke_response, turn, reservation, queued_by_changes, jobs) = loop {
        attempts += 1;
        let outcome = turn::handle(&activity, &ctx).await.map_err(|e| match e {
            turn::TurnError::Store(e) => unavailable(e),
        })?;
        if outcome.ignored && outcome.invoke_response.is_none() {
            tracing::debug!("activity ignored");
            return Ok(StatusCode::OK.into_response());
        }
        let response_text = outcome.invoke_response.as_ref().map(Value::to_string);
        let (claim, reservation) = state.born_claims.reserve(&outcome.jobs).unzip();
        // Changes beyond touching the conversation may queue jobs of their own, for the worker to claim.
        let queued_by_changes = outcome
            .changes
            .iter()
            .any(|c| !matches!(c, Change::TouchConversation(_)));
        let (changes, jobs) = (outcome.changes.len(), outcome.jobs.len());
        match state
            .store
            .commit_turn(
                key.as_ref(),
                ctx.now,
                outcome.changes,
                outcome.jobs,
                response_text,
                claim,
            )
            .await
        {
            Ok(commit) => {
                tracing::info!(
                    changes,
                    jobs,
                    invoke = outcome.invoke_response.is_some(),
                    "activity processed"
                );
                break (
                    outcome.invoke_response,
                    commit,
                    reservation,
                    queued_by_changes,
                    jobs,
                );
            }
            Err(StoreError::Conflict(reason)) if attempts < 3 => {
                tracing::info!(reason, "state changed while deciding; deciding again");
            }
            Err(e) => return Err(unavailable(e)),
        }
    };
    // The worker claims what this commit did not: jobs not born claimed, and anything the changes queue.
    let queued = jobs > turn.claimed.len() || queued_by_changes;
    match turn.commit {
        Commit::Duplicate { response } => Ok(duplicate(response)),
        Commit::Applied => {
            metrics::counter!("fieldbot_activities_total", "type" => activity.kind.clone())
                .increment(1);
            if let Some(reservation) = reservation {
                reservation.start(turn.claimed);
            }
            if queued {
                state.jobs_notify.notify_one();
            }
            Ok(match invoke_response {
                Some(body) => (StatusCode::OK, Json(body)).into_response(),
                None => StatusCode::OK.into_response(),
            })
        }
    }
}

fn inbound_key(activity: &Activity) -> Option<InboundKey> {
    Some(InboundKey {
        channel_id: activity.channel_id.clone().unwrap_or_default(),
        conversation_id: activity.conversation_id()?.to_string(),
        activity_id: activity.id.clone().filter(|id| !id.is_empty())?,
    })
}

/// A re-delivered activity is acknowledged like the first delivery and not processed again.
fn duplicate(response: Option<String>) -> Response {
    metrics::counter!("fieldbot_activities_duplicate_total").increment(1);
    tracing::info!("duplicate activity acknowledged");
    match response.and_then(|r| serde_json::from_str::<Value>(&r).ok()) {
        Some(body) => (StatusCode::OK, Json(body)).into_response(),
        None => StatusCode::OK.into_response(),
    }
}

fn refuse(e: AuthError) -> ApiError {
    metrics::counter!("fieldbot_auth_failures_total", "reason" => e.reason()).increment(1);
    match e.status() {
        403 => ApiError::Forbidden(e.reason()),
        503 => ApiError::Unavailable(e.to_string()),
        _ => ApiError::Unauthorized(e.reason()),
    }
}

fn unavailable(e: crate::store::StoreError) -> ApiError {
    ApiError::Unavailable(e.to_string())
}

/// `https` to an allowed host (exact, or `*.suffix`); plain `http` only to loopback, for local connectors.
pub fn service_url_allowed(service_url: &str, allowed: &[String]) -> bool {
    let Ok(url) = url::Url::parse(service_url) else {
        return false;
    };
    let Some(host) = url
        .host_str()
        .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
    else {
        return false;
    };
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    scheme_ok
        && allowed.iter().any(|pattern| {
            let pattern = pattern.trim().trim_matches(['[', ']']).to_ascii_lowercase();
            match pattern.strip_prefix("*.") {
                Some(suffix) => host.ends_with(&format!(".{suffix}")),
                None => host == pattern,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::service_url_allowed;

    #[test]
    fn service_hosts() {
        let allowed: Vec<String> = [
            "smba.trafficmanager.net",
            "*.botframework.com",
            "127.0.0.1",
            "::1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (url, ok) in [
            ("https://smba.trafficmanager.net/emea/", true),
            ("https://SMBA.trafficmanager.net/emea/", true),
            ("http://smba.trafficmanager.net/emea/", false),
            ("https://evil.example/", false),
            ("https://smba.trafficmanager.net.evil.example/", false),
            ("https://webchat.botframework.com/", true),
            ("https://botframework.com.evil/", false),
            ("http://127.0.0.1:9000/", true),
            ("http://[::1]:9000/", true),
            ("http://localhost:9000/", false),
            ("not a url", false),
        ] {
            assert_eq!(service_url_allowed(url, &allowed), ok, "{url}");
        }
    }
}
