//! `fieldbot local-connector`: a stand-in for the Bot Connector on loopback, so a developer can talk to a
//! local-mode fieldbot with curl and see its replies (printed here) without any Microsoft service.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::any;
use serde_json::{Value, json};

/// Serves until the process is stopped; prints each call and the activity it carries (cards as readable
/// text, or as raw JSON with `raw_json`).
pub async fn run(bind: SocketAddr, raw_json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        bind.ip().is_loopback(),
        "the local connector only listens on loopback"
    );
    let state = Arc::new(Shared {
        counter: AtomicU64::new(1),
        raw_json,
    });
    let app = Router::new()
        .route("/v3/{*rest}", any(receive))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(bind).await?;
    println!(
        "local connector on http://{bind}/ — use it as the activity's serviceUrl; replies appear here"
    );
    axum::serve(listener, app).await?;
    Ok(())
}

struct Shared {
    counter: AtomicU64,
    raw_json: bool,
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    method: Method,
    Path(rest): Path<String>,
    body: String,
) -> impl IntoResponse {
    let id = shared.counter.fetch_add(1, Ordering::Relaxed);
    println!("\n── {method} /v3/{rest}");
    match serde_json::from_str::<Value>(&body) {
        Ok(activity) if shared.raw_json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&activity).unwrap_or_default()
            )
        }
        Ok(activity) => println!("{}", summarize(&activity)),
        Err(_) if body.is_empty() => {}
        Err(_) => println!("{body}"),
    }
    if method == Method::GET {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(
                json!({ "error": { "code": "NotFound", "message": "the local connector keeps no members" } }),
            ),
        );
    }
    (
        StatusCode::OK,
        axum::Json(json!({ "id": id.to_string(), "activityId": id.to_string() })),
    )
}

/// Text as is; a card as the text a person would read on it, its buttons in brackets.
fn summarize(activity: &Value) -> String {
    let activity = activity.get("activity").unwrap_or(activity);
    let mut out = Vec::new();
    if let Some(text) = activity.get("text").and_then(Value::as_str) {
        out.push(text.to_string());
    }
    for attachment in activity
        .get("attachments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let card = attachment.get("content").unwrap_or(attachment);
        render(card, &mut out);
    }
    out.join("\n")
}

fn render(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::Array(items) => items.iter().for_each(|i| render(i, out)),
        Value::Object(o) => {
            let kind = o.get("type").and_then(Value::as_str).unwrap_or_default();
            match kind {
                "TextBlock" => out.push(str_of(node, "text")),
                "RichTextBlock" => out.push(
                    o.get("inlines")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(|i| {
                            i.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| str_of(i, "text"))
                        })
                        .collect::<String>(),
                ),
                "FactSet" => {
                    for fact in o
                        .get("facts")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        out.push(format!(
                            "  {}: {}",
                            str_of(fact, "title"),
                            str_of(fact, "value")
                        ));
                    }
                }
                k if k.starts_with("Action.") => out.push(format!("[{}]", str_of(node, "title"))),
                k if k.starts_with("Input.") => out.push(format!("<{}>", str_of(node, "label"))),
                _ => {}
            }
            for key in ["body", "items", "columns", "actions", "card"] {
                if let Some(child) = o.get(key) {
                    render(child, out);
                }
            }
        }
        _ => {}
    }
}

fn str_of(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}
