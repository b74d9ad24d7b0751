//! The Microsoft endpoints the bots call, faked on loopback: the Bot Connector (where replies go) and the
//! identity services fieldbot needs in production mode (OpenID metadata, JWKS, client-credentials token).
//!
//! They run on their own single-threaded runtime in a thread named `fakes`, so their CPU can be reported
//! apart from the load generator's.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub const ISSUER: &str = "https://api.botframework.com";
pub const CONNECTOR_TOKEN: &str = "bench-connector-token";

/// What the fake Connector saw since the last [`ConnectorState::reset`].
#[derive(Default)]
pub struct ConnectorState {
    delay_ms: AtomicU64,
    replies: AtomicU64,
    with_token: AtomicU64,
    /// Reply-to activity sequence number -> how many replies named it; finds lost and doubled replies.
    seen: Mutex<HashMap<u64, u32>>,
    /// Replies whose path named no bench activity (e.g. sendToConversation); should stay 0.
    unmatched: AtomicU64,
    last_reply: Mutex<Option<Instant>>,
}

pub struct ReplyTally {
    pub replies: u64,
    pub with_token: u64,
    pub unmatched: u64,
    pub seen: HashMap<u64, u32>,
    pub last_reply: Option<Instant>,
}

impl ConnectorState {
    pub fn reset(&self, delay: Duration) {
        self.delay_ms.store(
            u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
        self.replies.store(0, Ordering::SeqCst);
        self.with_token.store(0, Ordering::SeqCst);
        self.unmatched.store(0, Ordering::SeqCst);
        lock(&self.seen).clear();
        *lock(&self.last_reply) = None;
    }

    /// How many distinct bench activities have been answered; cheap enough to poll.
    pub fn distinct_replied(&self) -> usize {
        lock(&self.seen).len()
    }

    pub fn tally(&self) -> ReplyTally {
        ReplyTally {
            replies: self.replies.load(Ordering::SeqCst),
            with_token: self.with_token.load(Ordering::SeqCst),
            unmatched: self.unmatched.load(Ordering::SeqCst),
            seen: lock(&self.seen).clone(),
            last_reply: *lock(&self.last_reply),
        }
    }
}

/// A poisoned lock only means another handler panicked mid-update of a counter; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub struct IdentityState {
    jwks: Bytes,
    metadata: Bytes,
    pub token_requests: AtomicU64,
}

pub struct Fakes {
    pub connector_addr: SocketAddr,
    pub identity_addr: SocketAddr,
    pub connector: Arc<ConnectorState>,
    pub identity: Arc<IdentityState>,
}

impl Fakes {
    /// The `serviceUrl` both bots reply to.
    pub fn service_url(&self) -> String {
        format!("http://{}/", self.connector_addr)
    }

    pub fn openid_metadata_url(&self) -> String {
        format!("http://{}/openid", self.identity_addr)
    }

    pub fn token_url_template(&self) -> String {
        format!("http://{}/{{tenant_id}}/token", self.identity_addr)
    }
}

/// Starts both fakes on a dedicated thread and returns once they listen.
pub fn start(jwk: Value) -> Result<Fakes> {
    let (tx, rx) = std::sync::mpsc::channel::<Result<Fakes>>();
    std::thread::Builder::new()
        .name("fakes".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e.into()));
                    return;
                }
            };
            runtime.block_on(async move {
                match bind(jwk).await {
                    Ok((fakes, connector, identity)) => {
                        let _ = tx.send(Ok(fakes));
                        // The process exits when the benchmark is done; the fakes simply live until then.
                        tokio::join!(connector, identity);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        })
        .context("spawning the fakes thread")?;
    rx.recv().context("the fakes thread died")?
}

type ServeFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

async fn bind(mut jwk: Value) -> Result<(Fakes, ServeFuture, ServeFuture)> {
    let connector_listener = TcpListener::bind("127.0.0.1:0").await?;
    let identity_listener = TcpListener::bind("127.0.0.1:0").await?;
    let connector_addr = connector_listener.local_addr()?;
    let identity_addr = identity_listener.local_addr()?;

    jwk["kid"] = json!("k1");
    jwk["use"] = json!("sig");
    jwk["alg"] = json!("RS256");
    jwk["endorsements"] = json!(["msteams"]);
    let identity = Arc::new(IdentityState {
        jwks: Bytes::from(json!({ "keys": [jwk] }).to_string()),
        metadata: Bytes::from(
            json!({
                "issuer": ISSUER,
                "jwks_uri": format!("http://{identity_addr}/keys"),
                "id_token_signing_alg_values_supported": ["RS256"],
            })
            .to_string(),
        ),
        token_requests: AtomicU64::new(0),
    });
    let connector = Arc::new(ConnectorState::default());

    let c = Arc::clone(&connector);
    let connector_serve: ServeFuture = Box::pin(serve(connector_listener, move |req| {
        connector_reply(req, Arc::clone(&c))
    }));
    let i = Arc::clone(&identity);
    let identity_serve: ServeFuture = Box::pin(serve(identity_listener, move |req| {
        identity_reply(req, Arc::clone(&i))
    }));
    Ok((
        Fakes {
            connector_addr,
            identity_addr,
            connector,
            identity,
        },
        connector_serve,
        identity_serve,
    ))
}

async fn serve<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors or similar: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(req).await) }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The activity sequence number in `/v3/conversations/{id}/activities/{run}-{seq}`, if the path is a
/// Connector activity route at all (`Some(None)`: the route without a bench reply-to id).
fn activity_route(path: &str) -> Option<Option<u64>> {
    let rest = path.strip_prefix("/v3/conversations/")?;
    let (conversation, tail) = rest.split_once('/')?;
    if conversation.is_empty() {
        return None;
    }
    if tail == "activities" {
        return Some(None);
    }
    let id = tail.strip_prefix("activities/")?;
    if id.is_empty() || id.contains('/') {
        return None;
    }
    Some(id.rsplit('-').next().and_then(|s| s.parse().ok()))
}

async fn connector_reply(
    req: Request<Incoming>,
    state: Arc<ConnectorState>,
) -> Response<Full<Bytes>> {
    let route = (req.method() == Method::POST)
        .then(|| activity_route(req.uri().path()))
        .flatten();
    let has_token = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {CONNECTOR_TOKEN}"));
    // The body must be read for the connection to be reusable, and a real Connector reads it too.
    let read = req.into_body().collect().await.is_ok();
    let Some(seq) = route.filter(|_| read) else {
        return json_response(StatusCode::NOT_FOUND, Bytes::from_static(b"{}"));
    };
    let delay = state.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    // Counted once answered: a reply the bot is still waiting on has not been delivered yet.
    state.replies.fetch_add(1, Ordering::Relaxed);
    if has_token {
        state.with_token.fetch_add(1, Ordering::Relaxed);
    }
    match seq {
        Some(seq) => *lock(&state.seen).entry(seq).or_insert(0) += 1,
        None => {
            state.unmatched.fetch_add(1, Ordering::Relaxed);
        }
    }
    *lock(&state.last_reply) = Some(Instant::now());
    json_response(StatusCode::OK, Bytes::from_static(br#"{"id":"1"}"#))
}

async fn identity_reply(
    req: Request<Incoming>,
    state: Arc<IdentityState>,
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let _ = req.into_body().collect().await;
    match (method, path.as_str()) {
        (Method::GET, "/openid") => json_response(StatusCode::OK, state.metadata.clone()),
        (Method::GET, "/keys") => json_response(StatusCode::OK, state.jwks.clone()),
        (Method::POST, p) if p.ends_with("/token") => {
            state.token_requests.fetch_add(1, Ordering::Relaxed);
            let body = json!({
                "token_type": "Bearer", "expires_in": 3600, "ext_expires_in": 3600,
                "access_token": CONNECTOR_TOKEN,
            });
            json_response(StatusCode::OK, Bytes::from(body.to_string()))
        }
        _ => json_response(StatusCode::NOT_FOUND, Bytes::from_static(b"{}")),
    }
}

#[cfg(test)]
mod tests {
    use super::activity_route;

    #[test]
    fn routes() {
        assert_eq!(
            activity_route("/v3/conversations/19%3Ab%40thread/activities/r1-42"),
            Some(Some(42))
        );
        assert_eq!(activity_route("/v3/conversations/a/activities"), Some(None));
        assert_eq!(
            activity_route("/v3/conversations/a/activities/x"),
            Some(None)
        );
        assert_eq!(activity_route("/v3/conversations//activities/1"), None);
        assert_eq!(activity_route("/v3/conversations/a/members"), None);
    }
}
