//! The operator JSON API: engagements and their records (the sync notes to copy into FTOP, also as CSV),
//! and the Graph calls recorded in dry-run mode. Local mode serves it to loopback callers only; production
//! requires an Entra ID sign-in, which is not built yet, so production refuses every caller.

use std::net::SocketAddr;

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::commands::engagement_json;
use crate::store::SyncNotesRecord;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/engagements", get(list_engagements))
        .route("/api/engagements/{id}", get(get_engagement))
        .route("/api/outbox", get(outbox))
}

/// A malformed query string is the caller's mistake: the API's JSON 400, like every other one.
fn bad_query(rejection: QueryRejection) -> ApiError {
    ApiError::BadRequest(rejection.body_text())
}

/// Who may read operator data: loopback in local mode, a signed-in user of the bot's tenant in production.
fn authorize(state: &AppState, peer: SocketAddr, headers: &HeaderMap) -> Result<(), ApiError> {
    super::dashboard::caller(state, peer, headers).map(|_| ())
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
}

async fn list_engagements(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, peer, &headers)?;
    let Query(q) = q.map_err(bad_query)?;
    let active = match q.status.as_deref() {
        None | Some("all") => None,
        Some("active") => Some(true),
        Some("closed") => Some(false),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "status must be active, closed or all, not {other:?}"
            )));
        }
    };
    let engagements = state
        .store
        .engagements(active)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(json!({
        "engagements": engagements.iter().map(engagement_json).collect::<Vec<_>>()
    })))
}

#[derive(Deserialize)]
struct FormatQuery {
    format: Option<String>,
}

async fn get_engagement(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<FormatQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, peer, &headers)?;
    let Query(q) = q.map_err(bad_query)?;
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::BadRequest("the engagement id is a number".into()))?;
    let unavailable = |e: crate::store::StoreError| ApiError::Unavailable(e.to_string());
    let engagement = state
        .store
        .engagement(id)
        .await
        .map_err(unavailable)?
        .ok_or(ApiError::NotFound)?;
    let notes = state.store.sync_notes(id).await.map_err(unavailable)?;
    match q.format.as_deref() {
        None | Some("json") => {
            let mut body = engagement_json(&engagement);
            if let Some(map) = body.as_object_mut() {
                map.insert(
                    "sync_notes".into(),
                    json!(notes.iter().map(note_json).collect::<Vec<_>>()),
                );
            }
            Ok(Json(body).into_response())
        }
        Some("csv") => Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"engagement-{id}-notes.csv\""),
                ),
            ],
            notes_csv(&engagement.customer, &notes),
        )
            .into_response()),
        Some(other) => Err(ApiError::BadRequest(format!(
            "format must be json or csv, not {other:?}"
        ))),
    }
}

fn note_json(n: &SyncNotesRecord) -> Value {
    json!({ "id": n.id, "by": n.by, "at": n.at, "notes": n.notes })
}

/// One row per recorded sync, ready to paste into FTOP.
fn notes_csv(customer: &str, notes: &[SyncNotesRecord]) -> String {
    let mut out = String::from(
        "customer,recorded_at,recorded_by,summary,open_items,next_steps,intro_email_requested,teams_channel_joined,rhythm\r\n",
    );
    for n in notes {
        let field = |k: &str| n.notes.get(k).cloned().unwrap_or(Value::Null);
        let text = |v: Value| match v {
            Value::String(s) => s,
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("; "),
            Value::Bool(b) => if b { "yes" } else { "no" }.to_string(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        let at = jiff::Timestamp::from_millisecond(n.at)
            .map(|t| t.to_string())
            .unwrap_or_default();
        let row = [
            customer.to_string(),
            at,
            n.by.clone(),
            text(field("summary")),
            text(field("open_items")),
            text(field("next_steps")),
            text(field("intro_email_requested")),
            text(field("teams_channel_joined")),
            text(field("rhythm")),
        ];
        out.push_str(
            &row.iter()
                .map(|c| csv_cell(c))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push_str("\r\n");
    }
    out
}

/// RFC 4180 quoting, and a leading `'` for cells a spreadsheet would treat as a formula.
fn csv_cell(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

#[derive(Deserialize)]
struct OutboxQuery {
    limit: Option<u32>,
}

async fn outbox(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    q: Result<Query<OutboxQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, peer, &headers)?;
    let Query(q) = q.map_err(bad_query)?;
    let calls = state
        .store
        .graph_outbox(q.limit.unwrap_or(100).min(1000))
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(json!({
        "calls": calls.iter().map(|c| json!({
            "id": c.id, "method": c.method, "path": c.path, "body": c.body, "recorded_at": c.recorded_at,
        })).collect::<Vec<_>>()
    })))
}

#[cfg(test)]
mod tests {
    use super::csv_cell;

    #[test]
    fn csv_cells_are_quoted_and_formula_safe() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(csv_cell("\t=1+1"), "'\t=1+1");
        assert_eq!(csv_cell("\r=1+1"), "\"'\r=1+1\"");
    }
}
