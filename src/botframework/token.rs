//! Outbound OAuth2 client-credentials tokens for the Bot Connector (botframework.md §4).
//!
//! oauth2's own `reqwest` feature pins reqwest 0.12, so the crate is used with default features off and a
//! small adapter ([`send_token_request`]) maps its `http` 1 request onto our reqwest 0.13 client.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, HttpRequest, HttpResponse,
    RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};

/// BotBuilder treats a token as expired 5 minutes early; doing the same keeps a token that is about to
/// expire from being attached to a request that then sits in a retry queue.
const DEFAULT_EARLY_REFRESH: Duration = Duration::from_secs(5 * 60);
/// Floor for the cache lifetime, so a short-lived token cannot turn every Connector call into a token call.
const DEFAULT_MIN_TTL: Duration = Duration::from_secs(30);
/// Entra always sends `expires_in`; if a token server does not, do not trust the token for long.
const FALLBACK_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// The integrator's client may have no overall timeout; a hung token endpoint must not hang every send.
const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

type OauthClient =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// Transport failure or an unusable answer from the token endpoint. Never includes the secret or a token.
    #[error("token request failed: {0}")]
    Request(String),
    /// The token endpoint answered with an error; `error` is the OAuth error code (e.g. `invalid_client`),
    /// or `http_<status>` when the body carried none.
    #[error("token request rejected with HTTP {status}: {error}")]
    Rejected { status: u16, error: String },
    #[error("token provider misconfigured: {0}")]
    Config(String),
}

impl TokenError {
    /// Whether asking again later may succeed: transport failures, throttling and server errors may pass,
    /// a rejected credential or a bad configuration will not.
    pub fn is_transient(&self) -> bool {
        match self {
            TokenError::Request(_) => true,
            TokenError::Rejected { status, .. } => *status == 429 || *status >= 500,
            TokenError::Config(_) => false,
        }
    }
}

#[derive(Clone)]
struct CachedToken {
    token: SecretString,
    ttl: Duration,
}

struct TokenTtl;

impl Expiry<(), CachedToken> for TokenTtl {
    fn expire_after_create(
        &self,
        _key: &(),
        value: &CachedToken,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

struct Inner {
    http: reqwest::Client,
    // A bad token URL is reported on first use, because `new` is infallible by contract.
    oauth: Result<OauthClient, String>,
    scope: String,
    early_refresh: Duration,
    min_ttl: Duration,
    // One entry under the unit key: a provider serves exactly one (client, scope) pair.
    cache: Cache<(), CachedToken>,
}

/// Gets and caches an OAuth2 client-credentials token; concurrent callers share one token request.
#[derive(Clone)]
pub struct TokenProvider {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenProvider")
            .field("scope", &self.inner.scope)
            .finish_non_exhaustive()
    }
}

impl TokenProvider {
    /// `http` should be built with `redirect(Policy::none())`, so a redirecting token endpoint cannot forward
    /// the form body (which carries the secret) elsewhere.
    pub fn new(
        http: reqwest::Client,
        token_url: String,
        client_id: String,
        client_secret: SecretString,
        scope: String,
    ) -> Self {
        let oauth = build_oauth_client(&token_url, client_id, &client_secret);
        if let Err(reason) = &oauth {
            tracing::error!(%reason, "bot token provider is misconfigured");
        }
        let cache = Cache::builder()
            .max_capacity(1)
            .expire_after(TokenTtl)
            .build();
        Self {
            inner: Arc::new(Inner {
                http,
                oauth,
                scope,
                early_refresh: DEFAULT_EARLY_REFRESH,
                min_ttl: DEFAULT_MIN_TTL,
                cache,
            }),
        }
    }

    /// Overrides how early a token is refreshed and the floor of its cache lifetime (defaults: 5 min, 30 s).
    /// Tests use it to see a refresh within seconds.
    pub fn with_refresh_margins(self, early_refresh: Duration, min_ttl: Duration) -> Self {
        let inner = &self.inner;
        Self {
            inner: Arc::new(Inner {
                http: inner.http.clone(),
                oauth: inner.oauth.clone(),
                scope: inner.scope.clone(),
                early_refresh,
                min_ttl,
                cache: Cache::builder()
                    .max_capacity(1)
                    .expire_after(TokenTtl)
                    .build(),
            }),
        }
    }

    /// Returns a cached token, or fetches one; callers that arrive during a fetch wait for it.
    pub async fn token(&self) -> Result<SecretString, TokenError> {
        let inner = Arc::clone(&self.inner);
        self.inner
            .cache
            .try_get_with((), async move { fetch_token(&inner).await })
            .await
            .map(|cached| cached.token)
            .map_err(|shared| (*shared).clone())
    }

    /// Drops the cached token, e.g. after the Connector answered 401, so the next call fetches a new one.
    pub async fn invalidate(&self) {
        self.inner.cache.invalidate(&()).await;
    }
}

fn build_oauth_client(
    token_url: &str,
    client_id: String,
    client_secret: &SecretString,
) -> Result<OauthClient, String> {
    let url =
        TokenUrl::new(token_url.to_owned()).map_err(|e| format!("token_url is not a URL: {e}"))?;
    let parsed = url.url();
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    };
    // The secret travels in the form body, so plain HTTP is only acceptable to a local fake.
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        other => return Err(format!("token_url must be https (got scheme {other:?})")),
    }
    Ok(BasicClient::new(ClientId::new(client_id))
        .set_client_secret(ClientSecret::new(client_secret.expose_secret().to_owned()))
        // Entra accepts both; the body form is what botframework.md §4 documents.
        .set_auth_type(AuthType::RequestBody)
        .set_token_uri(url))
}

#[tracing::instrument(name = "bot_token_fetch", skip_all, fields(status))]
async fn fetch_token(inner: &Inner) -> Result<CachedToken, TokenError> {
    let oauth = inner
        .oauth
        .as_ref()
        .map_err(|e| TokenError::Config(e.clone()))?;
    // oauth2 does not surface the HTTP status of an error response; the adapter records it here.
    let status = Arc::new(AtomicU16::new(0));
    // The closure hands owned handles to each request future: a future borrowing from the closure makes
    // rustc unable to prove `token()` is `Send` (higher-ranked lifetimes), which breaks `tokio::spawn`.
    let client =
        |request: HttpRequest| send_token_request(inner.http.clone(), request, Arc::clone(&status));
    let result = oauth
        .exchange_client_credentials()
        .add_scope(Scope::new(inner.scope.clone()))
        .request_async(&client)
        .await;
    let status = status.load(Ordering::Relaxed);
    tracing::Span::current().record("status", status);
    match result {
        Ok(response) => {
            let lifetime = response.expires_in().unwrap_or(FALLBACK_LIFETIME);
            let ttl = cache_ttl(lifetime, inner.early_refresh, inner.min_ttl);
            tracing::debug!(
                lifetime_s = lifetime.as_secs(),
                ttl_s = ttl.as_secs(),
                "bot token acquired"
            );
            Ok(CachedToken {
                token: SecretString::from(response.access_token().secret().as_str()),
                ttl,
            })
        }
        Err(RequestTokenError::ServerResponse(err)) => {
            // Entra's description (AADSTS code, trace id) is what an operator needs; it carries no secret.
            tracing::warn!(
                status,
                error = %err.error(),
                description = err.error_description().map(String::as_str).unwrap_or(""),
                "token endpoint rejected the client-credentials request"
            );
            Err(TokenError::Rejected {
                status,
                // `Display` renders the wire value: `invalid_client`, or an extension code as sent.
                error: err.error().to_string(),
            })
        }
        Err(RequestTokenError::Request(AdapterError(msg))) => {
            tracing::warn!(error = %msg, "token request failed");
            Err(TokenError::Request(msg))
        }
        // Parse errors keep the body, which on success holds the token: report only where parsing failed.
        Err(RequestTokenError::Parse(err, _body)) => {
            let detail = format!("malformed token response (at `{}`)", err.path());
            tracing::warn!(status, error = %detail, "token request failed");
            Err(rejected_or_request(status, detail))
        }
        Err(RequestTokenError::Other(msg)) => {
            tracing::warn!(status, error = %msg, "token request failed");
            Err(rejected_or_request(status, msg))
        }
    }
}

fn rejected_or_request(status: u16, detail: String) -> TokenError {
    if status == 200 || status == 0 {
        TokenError::Request(detail)
    } else {
        TokenError::Rejected {
            status,
            error: format!("http_{status}"),
        }
    }
}

/// How long to keep a token: refresh `early` before expiry, but at least `min_ttl`, and never past the
/// lifetime the server granted.
fn cache_ttl(lifetime: Duration, early: Duration, min_ttl: Duration) -> Duration {
    lifetime.saturating_sub(early).max(min_ttl).min(lifetime)
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct AdapterError(String);

/// The oauth2 → reqwest 0.13 adapter.
async fn send_token_request(
    http: reqwest::Client,
    request: HttpRequest,
    status_out: Arc<AtomicU16>,
) -> Result<HttpResponse, AdapterError> {
    let mut request = reqwest::Request::try_from(request)
        .map_err(|e| AdapterError(format!("cannot build token request: {}", error_chain(&e))))?;
    *request.timeout_mut() = Some(TOKEN_REQUEST_TIMEOUT);
    let response = http
        .execute(request)
        .await
        .map_err(|e| AdapterError(error_chain(&e)))?;
    status_out.store(response.status().as_u16(), Ordering::Relaxed);
    let mut builder = http::Response::builder()
        .status(response.status())
        .version(response.version());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| AdapterError(format!("reading token response: {}", error_chain(&e))))?;
    builder
        .body(body.to_vec())
        .map_err(|e| AdapterError(format!("rebuilding token response: {e}")))
}

/// reqwest's own message is generic and names the URL; the useful part (refused, DNS, TLS, timeout) is in
/// the causes.
fn error_chain(err: &reqwest::Error) -> String {
    let mut out = reqwest_kind(err).to_owned();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

fn reqwest_kind(err: &reqwest::Error) -> &'static str {
    if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connect error"
    } else if err.is_body() {
        "body error"
    } else if err.is_decode() {
        "decode error"
    } else if err.is_builder() {
        "builder error"
    } else {
        "request error"
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use wiremock::matchers::{body_string_contains, header, method, path};
    use wiremock::{Mock, MockServer, Request, ResponseTemplate};

    const TOKEN_PATH: &str = "/tenant-1/oauth2/v2.0/token";
    const SCOPE: &str = "https://api.botframework.com/.default";

    fn provider(server: &MockServer) -> TokenProvider {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        TokenProvider::new(
            http,
            format!("{}{TOKEN_PATH}", server.uri()),
            "app-id-1".to_owned(),
            SecretString::from("s3cr&t=value"),
            SCOPE.to_owned(),
        )
    }

    fn token_body(token: &str, expires_in: u64) -> serde_json::Value {
        serde_json::json!({
            "token_type": "Bearer",
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "access_token": token,
        })
    }

    fn form(req: &Request) -> Vec<(String, String)> {
        url::form_urlencoded::parse(&req.body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[tokio::test]
    async fn request_shape_is_client_credentials_in_form_body() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .and(header("content-type", "application/x-www-form-urlencoded"))
            .respond_with(ResponseTemplate::new(200).set_body_json(token_body("tok-1", 3600)))
            .expect(1)
            .mount(&server)
            .await;

        let token = provider(&server).token().await.unwrap();
        assert_eq!(token.expose_secret(), "tok-1");

        let requests = server.received_requests().await.unwrap();
        let req = &requests[0];
        assert!(
            req.headers.get("authorization").is_none(),
            "RequestBody auth sends no Basic header"
        );
        let mut fields = form(req);
        fields.sort();
        assert_eq!(
            fields,
            vec![
                ("client_id".to_owned(), "app-id-1".to_owned()),
                ("client_secret".to_owned(), "s3cr&t=value".to_owned()),
                ("grant_type".to_owned(), "client_credentials".to_owned()),
                ("scope".to_owned(), SCOPE.to_owned()),
            ]
        );
    }

    #[tokio::test]
    async fn token_is_cached() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .respond_with(ResponseTemplate::new(200).set_body_json(token_body("tok-cached", 3600)))
            .expect(1)
            .mount(&server)
            .await;

        let p = provider(&server);
        assert_eq!(p.token().await.unwrap().expose_secret(), "tok-cached");
        // A clone shares the cache.
        assert_eq!(
            p.clone().token().await.unwrap().expose_secret(),
            "tok-cached"
        );
    }

    #[tokio::test]
    async fn concurrent_callers_coalesce_into_one_request() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(token_body("tok-shared", 3600))
                    .set_delay(Duration::from_millis(200)),
            )
            .expect(1)
            .mount(&server)
            .await;

        let p = provider(&server);
        let calls = (0..8).map(|_| {
            let p = p.clone();
            tokio::spawn(async move { p.token().await })
        });
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap().expose_secret(), "tok-shared");
        }
    }

    #[tokio::test]
    async fn token_is_refreshed_when_expired() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .respond_with(ResponseTemplate::new(200).set_body_json(token_body("tok-short", 2)))
            .expect(2)
            .mount(&server)
            .await;

        // expires_in 2 s, refreshed 1 s early → cached for 1 s.
        let p = provider(&server).with_refresh_margins(Duration::from_secs(1), Duration::ZERO);
        p.token().await.unwrap();
        p.token().await.unwrap();
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
        // moka keeps its own clock, so paused tokio time would not expire the entry.
        tokio::time::sleep(Duration::from_millis(1300)).await;
        p.token().await.unwrap();
    }

    #[tokio::test]
    async fn invalidate_forces_a_new_token() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .respond_with(ResponseTemplate::new(200).set_body_json(token_body("tok", 3600)))
            .expect(2)
            .mount(&server)
            .await;

        let p = provider(&server);
        p.token().await.unwrap();
        p.invalidate().await;
        p.token().await.unwrap();
    }

    #[tokio::test]
    async fn invalid_client_is_rejected_and_not_cached() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .and(body_string_contains("grant_type=client_credentials"))
            .respond_with(ResponseTemplate::new(401).set_body_json(serde_json::json!({
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided.",
                "error_codes": [7000215],
            })))
            .expect(2)
            .mount(&server)
            .await;

        let p = provider(&server);
        for _ in 0..2 {
            let err = p.token().await.unwrap_err();
            match &err {
                TokenError::Rejected { status, error } => {
                    assert_eq!(*status, 401);
                    assert_eq!(error, "invalid_client");
                }
                other => panic!("unexpected {other:?}"),
            }
            assert!(!err.is_transient());
            assert!(!err.to_string().contains("s3cr"));
        }
    }

    #[tokio::test]
    async fn html_error_page_is_rejected_with_status() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .respond_with(ResponseTemplate::new(503).set_body_raw("<html>busy</html>", "text/html"))
            .mount(&server)
            .await;

        let err = provider(&server).token().await.unwrap_err();
        assert!(
            matches!(&err, TokenError::Rejected { status: 503, error } if error == "http_503"),
            "{err:?}"
        );
        assert!(err.is_transient());
    }

    #[tokio::test]
    async fn malformed_success_body_does_not_leak_it() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                serde_json::json!({"access_token": "leaky-token", "expires_in": "x"}),
            ))
            .mount(&server)
            .await;

        let err = provider(&server).token().await.unwrap_err();
        assert!(matches!(err, TokenError::Request(_)), "{err:?}");
        assert!(!format!("{err:?}").contains("leaky-token"));
    }

    #[tokio::test]
    async fn unreachable_endpoint_is_a_transient_request_error() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let p = TokenProvider::new(
            reqwest::Client::new(),
            format!("http://127.0.0.1:{port}/t/oauth2/v2.0/token"),
            "app".to_owned(),
            SecretString::from("s3cr3t"),
            SCOPE.to_owned(),
        );
        let err = p.token().await.unwrap_err();
        assert!(matches!(&err, TokenError::Request(_)), "{err:?}");
        assert!(err.is_transient());
        assert!(!err.to_string().contains("s3cr3t"));
    }

    #[tokio::test]
    async fn bad_token_url_is_a_config_error() {
        for url in [
            "not a url",
            "http://login.example.com/t/oauth2/v2.0/token",
            "ftp://127.0.0.1/x",
        ] {
            let p = TokenProvider::new(
                reqwest::Client::new(),
                url.to_owned(),
                "app".to_owned(),
                SecretString::from("s"),
                SCOPE.to_owned(),
            );
            let err = p.token().await.unwrap_err();
            assert!(matches!(err, TokenError::Config(_)), "{url}: {err:?}");
        }
    }

    #[test]
    fn cache_ttl_table() {
        let s = Duration::from_secs;
        let cases = [
            // (lifetime, early, min_ttl, expected)
            (s(3600), s(300), s(30), s(3300)),
            (s(301), s(300), s(30), s(30)),
            (s(20), s(300), s(30), s(20)),
            (s(2), s(1), Duration::ZERO, s(1)),
            (Duration::ZERO, s(300), s(30), Duration::ZERO),
        ];
        for (lifetime, early, min_ttl, expected) in cases {
            assert_eq!(
                cache_ttl(lifetime, early, min_ttl),
                expected,
                "{lifetime:?} {early:?} {min_ttl:?}"
            );
        }
    }

    #[test]
    fn debug_redacts() {
        let p = TokenProvider::new(
            reqwest::Client::new(),
            "https://login.microsoftonline.com/t/oauth2/v2.0/token".to_owned(),
            "app".to_owned(),
            SecretString::from("hunter2"),
            SCOPE.to_owned(),
        );
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
