//! Verification of the JWT the Bot Framework Connector sends with every inbound activity.
//!
//! Keys come from the OpenID metadata document and its `jwks_uri`. The key set is cached: refreshed after 24 h,
//! refetched on an unknown `kid` at most once per [`REFETCH_FLOOR`], and kept when a refresh fails, so a key
//! service outage does not turn into a bot outage.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// The Bot Framework asks for a refresh at least daily because keys can be added at any time.
const KEY_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// Unknown `kid`s are attacker-controllable, so they must not be able to drive fetches faster than this.
const REFETCH_FLOOR: Duration = Duration::from_secs(5 * 60);
/// The Bot Framework spec and SDKs allow five minutes of clock skew.
const LEEWAY_SECS: u64 = 300;
/// Bounds how long requests waiting on a refetch can be held up by a hanging key endpoint.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Caps attacker-supplied text (kid, alg) that ends up in errors and therefore in logs.
const MAX_ECHO_CHARS: usize = 64;
const VERIFIED_TTL: Duration = Duration::from_secs(10 * 60);
const VERIFIED_CAPACITY: u64 = 4096;
const FETCHES_METRIC: &str = "fieldbot_jwks_fetches_total";

/// Verifies Bot Framework bearer tokens. Cheap to clone; all clones share one key cache.
#[derive(Clone)]
pub struct JwtValidator {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    app_id: String,
    metadata_url: String,
    /// A single entry; moka gives us single-flight loading so a cold start under load fetches once.
    keys: moka::future::Cache<(), Arc<KeySet>>,
    /// Serialises refreshes so that concurrent misses share one fetch and the floor is respected.
    refresh: Mutex<RefreshState>,
    /// Tokens already verified, with their `exp`. The Connector reuses one token for many activities, and
    /// an RSA signature check is the largest CPU cost of an activity; the entry lives at most
    /// [`VERIFIED_TTL`], which also bounds how long a token signed by a since-withdrawn key is accepted.
    verified: moka::sync::Cache<String, (VerifiedToken, u64)>,
}

#[derive(Default)]
struct RefreshState {
    /// When the last refresh after the cold-start load was attempted, successful or not.
    last_attempt: Option<Instant>,
}

struct KeySet {
    issuer: String,
    keys: HashMap<String, Arc<SigningKey>>,
    fetched_at: Instant,
}

struct SigningKey {
    key: DecodingKey,
    endorsements: Vec<String>,
}

/// What a verified token tells the caller; the activity-level checks still have to run.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// The lowercase `serviceurl` claim.
    pub service_url: Option<String>,
    /// Channel ids the signing key is endorsed for.
    pub endorsements: Vec<String>,
    /// The `tid` claim, if the token carries one.
    pub tenant_id: Option<String>,
    pub kid: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no Authorization header")]
    MissingToken,
    #[error("Authorization header is not a Bearer token")]
    NotBearer,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("unsupported token algorithm `{0}`")]
    UnsupportedAlgorithm(String),
    #[error("token header has no kid")]
    MissingKid,
    #[error("no signing key with kid `{0}`")]
    UnknownKey(String),
    #[error("token rejected: {0}")]
    InvalidToken(String),
    #[error("token has no serviceurl claim")]
    ServiceUrlMissing,
    #[error("serviceurl claim does not match the activity's serviceUrl")]
    ServiceUrlMismatch,
    #[error("signing key is not endorsed for the activity's channel")]
    EndorsementMissing,
    #[error("tenant is not allowed")]
    TenantNotAllowed,
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
}

impl AuthError {
    /// HTTP status to answer with. The body should stay empty: details only help an attacker.
    pub fn status(&self) -> u16 {
        match self {
            Self::EndorsementMissing | Self::TenantNotAllowed => 403,
            Self::KeysUnavailable(_) => 503,
            _ => 401,
        }
    }

    /// Stable, low-cardinality label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::NotBearer => "not_bearer",
            Self::Malformed(_) => "malformed_token",
            Self::UnsupportedAlgorithm(_) => "unsupported_alg",
            Self::MissingKid => "missing_kid",
            Self::UnknownKey(_) => "unknown_key",
            Self::InvalidToken(kind) => match kind.as_str() {
                "InvalidSignature" => "bad_signature",
                "ExpiredSignature" => "expired",
                "ImmatureSignature" => "not_yet_valid",
                "InvalidIssuer" => "bad_issuer",
                "InvalidAudience" => "bad_audience",
                k if k.starts_with("MissingRequiredClaim") => "missing_claim",
                _ => "invalid_token",
            },
            Self::ServiceUrlMissing => "serviceurl_missing",
            Self::ServiceUrlMismatch => "serviceurl_mismatch",
            Self::EndorsementMissing => "endorsement_missing",
            Self::TenantNotAllowed => "tenant_not_allowed",
            Self::KeysUnavailable(_) => "keys_unavailable",
        }
    }
}

impl fmt::Debug for JwtValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtValidator")
            .field("app_id", &self.inner.app_id)
            .field("openid_metadata_url", &self.inner.metadata_url)
            .finish_non_exhaustive()
    }
}

impl JwtValidator {
    pub fn new(http: reqwest::Client, app_id: String, openid_metadata_url: String) -> Self {
        Self {
            inner: Arc::new(Inner {
                http,
                app_id,
                metadata_url: openid_metadata_url,
                keys: moka::future::Cache::builder()
                    .name("botframework_jwks")
                    .max_capacity(1)
                    .build(),
                refresh: Mutex::new(RefreshState::default()),
                verified: moka::sync::Cache::builder()
                    .name("botframework_verified_tokens")
                    .max_capacity(VERIFIED_CAPACITY)
                    .time_to_live(VERIFIED_TTL)
                    .build(),
            }),
        }
    }

    pub async fn verify_bearer(
        &self,
        authorization: Option<&str>,
    ) -> Result<VerifiedToken, AuthError> {
        let token = bearer_token(authorization)?;
        if let Some((verified, exp)) = self.inner.verified.get(token) {
            // Still unexpired, and its key still published: a withdrawn key ends its tokens at once.
            let key_current = match self.inner.keys.get(&()).await {
                Some(set) => set.keys.contains_key(&verified.kid),
                None => false,
            };
            if key_current && unix_now() <= exp.saturating_add(LEEWAY_SECS) {
                return Ok(verified);
            }
            self.inner.verified.invalidate(token);
        }
        // Check the header ourselves before touching keys: `alg: none` cannot even be represented by
        // jsonwebtoken's `Algorithm`, and rejecting early keeps junk tokens from causing key fetches.
        let header = parse_header(token)?;
        if header.alg != "RS256" {
            return Err(AuthError::UnsupportedAlgorithm(echo(&header.alg)));
        }
        let kid = header
            .kid
            .filter(|kid| !kid.is_empty())
            .ok_or(AuthError::MissingKid)?;
        // An empty app id would make an empty `aud` acceptable; fail closed on that misconfiguration.
        if self.inner.app_id.trim().is_empty() {
            return Err(AuthError::InvalidToken("InvalidAudience".to_owned()));
        }
        let (set, key) = self.inner.key_for(&kid).await?;

        let mut validation = Validation::new(Algorithm::RS256);
        // jsonwebtoken defaults to 60 s leeway, no nbf check, and only checks iss/aud when present.
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud"]);
        validation.set_issuer(&[set.issuer.as_str()]);
        validation.set_audience(&[self.inner.app_id.as_str()]);

        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
            .map_err(|e| AuthError::InvalidToken(kind_text(e.kind())))?;
        let verified = VerifiedToken {
            service_url: data.claims.serviceurl,
            endorsements: key.endorsements.clone(),
            tenant_id: data.claims.tid,
            kid,
        };
        if let Some(exp) = data.claims.exp {
            self.inner
                .verified
                .insert(token.to_owned(), (verified.clone(), exp));
        }
        Ok(verified)
    }
}

impl VerifiedToken {
    pub fn check_activity(&self, service_url: &str, channel_id: &str) -> Result<(), AuthError> {
        let claimed = self
            .service_url
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or(AuthError::ServiceUrlMissing)?;
        // Teams SDKs normalise one trailing slash and compare case-insensitively; an exact compare would
        // reject legitimate traffic whenever the two sides format the URL differently.
        if !trim_one_slash(claimed).eq_ignore_ascii_case(trim_one_slash(service_url)) {
            return Err(AuthError::ServiceUrlMismatch);
        }
        if !self.endorsements.iter().any(|e| e == channel_id) {
            return Err(AuthError::EndorsementMissing);
        }
        Ok(())
    }
}

pub fn check_tenant(allowed: &[String], tenant: Option<&str>) -> Result<(), AuthError> {
    if allowed.is_empty() {
        return Ok(());
    }
    match tenant.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) if allowed.iter().any(|a| a.trim().eq_ignore_ascii_case(t)) => Ok(()),
        _ => Err(AuthError::TenantNotAllowed),
    }
}

impl Inner {
    async fn key_for(&self, kid: &str) -> Result<(Arc<KeySet>, Arc<SigningKey>), AuthError> {
        let mut set = self
            .keys
            .try_get_with((), async { self.fetch_key_set().await.map(Arc::new) })
            .await
            .map_err(|e| AuthError::KeysUnavailable(e.to_string()))?;

        if set.fetched_at.elapsed() >= KEY_MAX_AGE {
            set = self.refresh_stale(set).await;
        }
        if let Some(key) = set.keys.get(kid).cloned() {
            return Ok((set, key));
        }
        let set = self.refresh_for_kid(set, kid).await;
        match set.keys.get(kid).cloned() {
            Some(key) => Ok((set, key)),
            None => Err(AuthError::UnknownKey(echo(kid))),
        }
    }

    async fn refresh_stale(&self, seen: Arc<KeySet>) -> Arc<KeySet> {
        // Stale keys are still good keys: if someone else is already refreshing, don't queue behind a
        // possibly slow fetch.
        let Ok(mut state) = self.refresh.try_lock() else {
            return seen;
        };
        let current = self.keys.get(&()).await.unwrap_or(seen);
        if current.fetched_at.elapsed() < KEY_MAX_AGE {
            return current;
        }
        self.refresh_locked(&mut state, current).await
    }

    async fn refresh_for_kid(&self, seen: Arc<KeySet>, kid: &str) -> Arc<KeySet> {
        // Waiting here (rather than try_lock) lets a burst of tokens signed with a new key share the one
        // fetch that brings the key in.
        let mut state = self.refresh.lock().await;
        let current = self.keys.get(&()).await.unwrap_or(seen);
        if current.keys.contains_key(kid) {
            return current;
        }
        self.refresh_locked(&mut state, current).await
    }

    async fn refresh_locked(&self, state: &mut RefreshState, current: Arc<KeySet>) -> Arc<KeySet> {
        let now = Instant::now();
        if state
            .last_attempt
            .is_some_and(|t| now.duration_since(t) < REFETCH_FLOOR)
        {
            return current;
        }
        state.last_attempt = Some(now);
        match self.fetch_key_set().await {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                self.keys.insert((), Arc::clone(&fresh)).await;
                fresh
            }
            Err(e) => {
                tracing::warn!(error = %e, "Bot Framework key refresh failed; keeping the cached keys");
                current
            }
        }
    }

    async fn fetch_key_set(&self) -> Result<KeySet, FetchError> {
        let result = self.fetch_key_set_uncounted().await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!(FETCHES_METRIC, "result" => outcome).increment(1);
        result
    }

    async fn fetch_key_set_uncounted(&self) -> Result<KeySet, FetchError> {
        let metadata: OpenIdMetadata = self.get_json(&self.metadata_url, "OpenID metadata").await?;
        if metadata.issuer.is_empty() {
            return Err(FetchError("OpenID metadata has an empty issuer".to_owned()));
        }
        let jwks: RawJwks = self.get_json(&metadata.jwks_uri, "JWKS").await?;

        let total = jwks.keys.len();
        let keys: HashMap<String, Arc<SigningKey>> = jwks
            .keys
            .into_iter()
            .filter_map(parse_key)
            .map(|(kid, key)| (kid, Arc::new(key)))
            .collect();
        if keys.is_empty() {
            return Err(FetchError("JWKS contains no usable RSA keys".to_owned()));
        }
        if keys.len() < total {
            tracing::warn!(
                skipped = total - keys.len(),
                "ignored unusable or duplicate JWKS entries"
            );
        }
        Ok(KeySet {
            issuer: metadata.issuer,
            keys,
            fetched_at: Instant::now(),
        })
    }

    async fn get_json<T: DeserializeOwned>(&self, url: &str, what: &str) -> Result<T, FetchError> {
        self.http
            .get(url)
            .timeout(HTTP_TIMEOUT)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| FetchError(format!("fetching {what}: {e}")))?
            .json::<T>()
            .await
            .map_err(|e| FetchError(format!("parsing {what}: {e}")))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct FetchError(String);

#[derive(Deserialize)]
struct OpenIdMetadata {
    issuer: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct RawJwks {
    /// Kept as raw values so one odd entry cannot make the whole set fail to parse.
    keys: Vec<serde_json::Value>,
}

/// Our own JWK shape because jsonwebtoken's `Jwk` drops the Bot Framework `endorsements` member.
#[derive(Deserialize)]
struct RawJwk {
    kid: String,
    kty: String,
    #[serde(rename = "use")]
    key_use: Option<String>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
    #[serde(default)]
    endorsements: Vec<String>,
}

fn parse_key(value: serde_json::Value) -> Option<(String, SigningKey)> {
    let raw: RawJwk = serde_json::from_value(value).ok()?;
    let usable = raw.kty == "RSA"
        && raw.key_use.as_deref().is_none_or(|u| u == "sig")
        && raw.alg.as_deref().is_none_or(|a| a == "RS256")
        && !raw.kid.is_empty();
    if !usable {
        return None;
    }
    let key = DecodingKey::from_rsa_components(raw.n.as_deref()?, raw.e.as_deref()?).ok()?;
    Some((
        raw.kid,
        SigningKey {
            key,
            endorsements: raw.endorsements,
        },
    ))
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    serviceurl: Option<String>,
    tid: Option<String>,
    /// Required and checked by the validation; read here only to bound the verified-token cache.
    exp: Option<u64>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The parsing an unauthenticated caller controls — the Authorization header, the JWT header and the
/// claims segment — without keys or network, so `fuzz/` can drive it. Returns the header's `alg`.
#[doc(hidden)]
pub fn parse_untrusted(authorization: Option<&str>) -> Result<String, AuthError> {
    let token = bearer_token(authorization)?;
    let header = parse_header(token)?;
    if let Some(claims) = token.split('.').nth(1) {
        let bytes = URL_SAFE_NO_PAD
            .decode(claims)
            .map_err(|_| AuthError::Malformed("claims are not base64url".to_owned()))?;
        let _: Claims = serde_json::from_slice(&bytes)
            .map_err(|_| AuthError::Malformed("claims are not a JSON object".to_owned()))?;
    }
    Ok(header.alg)
}

fn bearer_token(authorization: Option<&str>) -> Result<&str, AuthError> {
    let value = authorization.map(str::trim).unwrap_or_default();
    if value.is_empty() {
        return Err(AuthError::MissingToken);
    }
    let Some((scheme, rest)) = value.split_once(' ') else {
        return Err(if value.eq_ignore_ascii_case("bearer") {
            AuthError::Malformed("empty bearer token".to_owned())
        } else {
            AuthError::NotBearer
        });
    };
    // RFC 7235: the auth scheme is case-insensitive.
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::NotBearer);
    }
    let token = rest.trim();
    if token.is_empty() {
        return Err(AuthError::Malformed("empty bearer token".to_owned()));
    }
    Ok(token)
}

fn parse_header(token: &str) -> Result<RawHeader, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed(
            "not a JWT (expected three dot-separated parts)".to_owned(),
        ));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| AuthError::Malformed("header is not base64url".to_owned()))?;
    serde_json::from_slice(&bytes).map_err(|_| {
        AuthError::Malformed("header is not a JSON object with a string alg".to_owned())
    })
}

/// A stable name per jsonwebtoken error kind; `reason()` maps these. Payload-carrying kinds are reduced to
/// their name because serde messages can quote claim values.
fn kind_text(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::InvalidSignature => "InvalidSignature".to_owned(),
        ErrorKind::ExpiredSignature => "ExpiredSignature".to_owned(),
        ErrorKind::ImmatureSignature => "ImmatureSignature".to_owned(),
        ErrorKind::InvalidIssuer => "InvalidIssuer".to_owned(),
        ErrorKind::InvalidAudience => "InvalidAudience".to_owned(),
        ErrorKind::InvalidAlgorithm => "InvalidAlgorithm".to_owned(),
        ErrorKind::InvalidToken => "InvalidToken".to_owned(),
        ErrorKind::MissingRequiredClaim(claim) => format!("MissingRequiredClaim({})", echo(claim)),
        ErrorKind::InvalidClaimFormat(claim) => format!("InvalidClaimFormat({})", echo(claim)),
        ErrorKind::InvalidRsaKey(_) => "InvalidRsaKey".to_owned(),
        ErrorKind::Base64(_) => "Base64".to_owned(),
        ErrorKind::Json(_) => "Json".to_owned(),
        ErrorKind::Utf8(_) => "Utf8".to_owned(),
        ErrorKind::Provider(_) => "Provider".to_owned(),
        other => echo(&format!("{other:?}")),
    }
}

fn echo(untrusted: &str) -> String {
    untrusted
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ECHO_CHARS)
        .collect()
}

fn trim_one_slash(url: &str) -> &str {
    url.strip_suffix('/').unwrap_or(url)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    use std::time::{SystemTime, UNIX_EPOCH};

    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{Value, json};
    use tokio::task::JoinSet;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const APP_ID: &str = "11111111-2222-3333-4444-555555555555";
    const ISSUER: &str = "https://api.botframework.com";
    const SERVICE_URL: &str = "https://smba.trafficmanager.net/emea/";
    const TENANT: &str = "8d3e1c2a-0000-4000-8000-00000000aaaa";
    const METADATA_PATH: &str = "/v1/.well-known/openidconfiguration";
    const KEYS_PATH: &str = "/v1/.well-known/keys";

    const KEY1_PEM: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/keys/key1.pem"
    ));
    const KEY1_PUB_PEM: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/keys/key1.pub.pem"
    ));
    const KEY2_PEM: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/keys/key2.pem"
    ));
    const KEY1_JWK: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/keys/key1.jwk.json"
    ));
    const KEY2_JWK: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/keys/key2.jwk.json"
    ));

    fn jwk(fixture: &str, kid: &str, endorsements: &[&str]) -> Value {
        let mut key: Value = serde_json::from_str(fixture).unwrap();
        key["kid"] = json!(kid);
        key["use"] = json!("sig");
        key["endorsements"] = json!(endorsements);
        key
    }

    fn k1() -> Value {
        jwk(KEY1_JWK, "k1", &["msteams"])
    }

    fn k2() -> Value {
        jwk(KEY2_JWK, "k2", &["msteams"])
    }

    fn now() -> i64 {
        i64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap()
    }

    /// Each call mints distinct claims (a fresh `jti`), so a test token is verified in full unless the test
    /// reuses the very same string on purpose.
    fn claims() -> Value {
        let now = now();
        json!({
            "jti": uuid::Uuid::new_v4().to_string(),
            "iss": ISSUER,
            "aud": APP_ID,
            "exp": now + 300,
            "nbf": now - 60,
            "serviceurl": SERVICE_URL,
            "tid": TENANT,
        })
    }

    fn claims_with(field: &str, value: Value) -> Value {
        let mut c = claims();
        c[field] = value;
        c
    }

    fn claims_without(field: &str) -> Value {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(field);
        c
    }

    fn sign(pem: &[u8], kid: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        let key = EncodingKey::from_rsa_pem(pem).unwrap();
        format!(
            "Bearer {}",
            jsonwebtoken::encode(&header, claims, &key).unwrap()
        )
    }

    fn k1_token() -> String {
        sign(KEY1_PEM, "k1", &claims())
    }

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
    }

    struct Fake {
        server: MockServer,
        validator: JwtValidator,
    }

    impl Fake {
        async fn start(keys: Vec<Value>) -> Self {
            let server = MockServer::start().await;
            Mock::given(method("GET"))
                .and(path(METADATA_PATH))
                .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                    "issuer": ISSUER,
                    "jwks_uri": format!("{}{KEYS_PATH}", server.uri()),
                    "id_token_signing_alg_values_supported": ["RS256"],
                })))
                .mount(&server)
                .await;
            let fake = Self {
                validator: JwtValidator::new(
                    reqwest::Client::new(),
                    APP_ID.to_owned(),
                    format!("{}{METADATA_PATH}", server.uri()),
                ),
                server,
            };
            fake.serve_keys(keys, 10).await;
            fake
        }

        /// Later mounts need a smaller `priority` to win over earlier ones.
        async fn serve_keys(&self, keys: Vec<Value>, priority: u8) {
            Mock::given(method("GET"))
                .and(path(KEYS_PATH))
                .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "keys": keys })))
                .with_priority(priority)
                .mount(&self.server)
                .await;
        }

        async fn fail_keys(&self, priority: u8) {
            Mock::given(method("GET"))
                .and(path(KEYS_PATH))
                .respond_with(ResponseTemplate::new(500))
                .with_priority(priority)
                .mount(&self.server)
                .await;
        }

        async fn jwks_fetches(&self) -> usize {
            self.server
                .received_requests()
                .await
                .unwrap()
                .iter()
                .filter(|r| r.url.path() == KEYS_PATH)
                .count()
        }

        async fn verify(&self, authorization: &str) -> Result<VerifiedToken, AuthError> {
            self.validator.verify_bearer(Some(authorization)).await
        }

        async fn burst(
            &self,
            authorization: &str,
            n: usize,
        ) -> Vec<Result<VerifiedToken, AuthError>> {
            let mut set = JoinSet::new();
            for _ in 0..n {
                let validator = self.validator.clone();
                let authorization = authorization.to_owned();
                set.spawn(async move { validator.verify_bearer(Some(&authorization)).await });
            }
            set.join_all().await
        }
    }

    /// Moves tokio's clock without leaving it paused, so the wiremock HTTP calls that follow run normally.
    async fn advance_clock(by: Duration) {
        tokio::time::pause();
        tokio::time::advance(by).await;
        tokio::time::resume();
    }

    #[tokio::test]
    async fn valid_token_is_accepted() {
        let fake = Fake::start(vec![k1()]).await;
        let token = fake.verify(&k1_token()).await.unwrap();
        assert_eq!(token.kid, "k1");
        assert_eq!(token.service_url.as_deref(), Some(SERVICE_URL));
        assert_eq!(token.endorsements, vec!["msteams".to_owned()]);
        assert_eq!(token.tenant_id.as_deref(), Some(TENANT));
        token.check_activity(SERVICE_URL, "msteams").unwrap();
        assert_eq!(fake.jwks_fetches().await, 1);
    }

    #[tokio::test]
    async fn bearer_scheme_is_case_insensitive() {
        let fake = Fake::start(vec![k1()]).await;
        let token = k1_token().replacen("Bearer", "bearer", 1);
        fake.verify(&token).await.unwrap();
    }

    #[tokio::test]
    async fn missing_header_is_rejected() {
        let fake = Fake::start(vec![k1()]).await;
        let err = fake.validator.verify_bearer(None).await.unwrap_err();
        assert!(matches!(err, AuthError::MissingToken), "{err:?}");
        assert_eq!((err.status(), err.reason()), (401, "missing_token"));
        let err = fake.verify("   ").await.unwrap_err();
        assert!(matches!(err, AuthError::MissingToken), "{err:?}");
    }

    #[tokio::test]
    async fn non_bearer_schemes_are_rejected() {
        let fake = Fake::start(vec![k1()]).await;
        let raw = k1_token().replacen("Bearer ", "", 1);
        for header in [format!("Basic {raw}"), raw] {
            let err = fake.verify(&header).await.unwrap_err();
            assert!(matches!(err, AuthError::NotBearer), "{err:?}");
            assert_eq!((err.status(), err.reason()), (401, "not_bearer"));
        }
        assert_eq!(fake.jwks_fetches().await, 0);
    }

    #[tokio::test]
    async fn non_jwt_is_malformed_and_not_echoed() {
        let fake = Fake::start(vec![k1()]).await;
        for header in [
            "Bearer not-a-jwt",
            "Bearer",
            "Bearer a.b",
            "Bearer a.b.c.d",
            "Bearer !!!.e30.sig",
            "Bearer e30.e30.sig",
        ] {
            let err = fake.verify(header).await.unwrap_err();
            assert!(matches!(err, AuthError::Malformed(_)), "{header}: {err:?}");
            assert_eq!((err.status(), err.reason()), (401, "malformed_token"));
            assert!(!err.to_string().contains("not-a-jwt"), "{err}");
        }
        assert_eq!(fake.jwks_fetches().await, 0);
    }

    #[tokio::test]
    async fn alg_none_is_rejected() {
        let fake = Fake::start(vec![k1()]).await;
        let header = b64(&json!({"alg": "none", "typ": "JWT", "kid": "k1"}));
        let token = format!("Bearer {header}.{}.", b64(&claims()));
        let err = fake.verify(&token).await.unwrap_err();
        assert!(
            matches!(&err, AuthError::UnsupportedAlgorithm(alg) if alg == "none"),
            "{err:?}"
        );
        assert_eq!((err.status(), err.reason()), (401, "unsupported_alg"));
        assert_eq!(fake.jwks_fetches().await, 0);
    }

    #[tokio::test]
    async fn hs256_with_public_key_as_secret_is_rejected() {
        let fake = Fake::start(vec![k1()]).await;
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".to_owned());
        let forged =
            jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(KEY1_PUB_PEM))
                .unwrap();
        let err = fake.verify(&format!("Bearer {forged}")).await.unwrap_err();
        assert!(
            matches!(&err, AuthError::UnsupportedAlgorithm(alg) if alg == "HS256"),
            "{err:?}"
        );
        assert_eq!(err.status(), 401);
    }

    #[tokio::test]
    async fn missing_kid_is_rejected() {
        let fake = Fake::start(vec![k1()]).await;
        let key = EncodingKey::from_rsa_pem(KEY1_PEM).unwrap();
        let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims(), &key).unwrap();
        let err = fake.verify(&format!("Bearer {token}")).await.unwrap_err();
        assert!(matches!(err, AuthError::MissingKid), "{err:?}");
        assert_eq!((err.status(), err.reason()), (401, "missing_kid"));
    }

    #[tokio::test]
    async fn signature_from_another_key_is_rejected() {
        let fake = Fake::start(vec![k1()]).await;
        let err = fake
            .verify(&sign(KEY2_PEM, "k1", &claims()))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, AuthError::InvalidToken(k) if k == "InvalidSignature"),
            "{err:?}"
        );
        assert_eq!((err.status(), err.reason()), (401, "bad_signature"));
    }

    #[tokio::test]
    async fn wrong_issuer_is_rejected() {
        let fake = Fake::start(vec![k1()]).await;
        let claims = claims_with("iss", json!("https://sts.windows.net/evil/"));
        let err = fake
            .verify(&sign(KEY1_PEM, "k1", &claims))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, AuthError::InvalidToken(k) if k == "InvalidIssuer"),
            "{err:?}"
        );
        assert_eq!((err.status(), err.reason()), (401, "bad_issuer"));
    }

    #[tokio::test]
    async fn wrong_audience_is_rejected() {
        let fake = Fake::start(vec![k1()]).await;
        let claims = claims_with("aud", json!("someone-else"));
        let err = fake
            .verify(&sign(KEY1_PEM, "k1", &claims))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, AuthError::InvalidToken(k) if k == "InvalidAudience"),
            "{err:?}"
        );
        assert_eq!((err.status(), err.reason()), (401, "bad_audience"));
    }

    #[tokio::test]
    async fn spec_claims_are_required() {
        let fake = Fake::start(vec![k1()]).await;
        for claim in ["exp", "nbf", "iss", "aud"] {
            let token = sign(KEY1_PEM, "k1", &claims_without(claim));
            let err = fake.verify(&token).await.unwrap_err();
            let expected = format!("MissingRequiredClaim({claim})");
            assert!(
                matches!(&err, AuthError::InvalidToken(k) if *k == expected),
                "{claim}: {err:?}"
            );
            assert_eq!((err.status(), err.reason()), (401, "missing_claim"));
        }
    }

    #[tokio::test]
    async fn expiry_uses_five_minute_leeway() {
        let fake = Fake::start(vec![k1()]).await;
        let mut expired = claims_with("exp", json!(now() - 400));
        expired["nbf"] = json!(now() - 1000);
        let err = fake
            .verify(&sign(KEY1_PEM, "k1", &expired))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, AuthError::InvalidToken(k) if k == "ExpiredSignature"),
            "{err:?}"
        );
        assert_eq!((err.status(), err.reason()), (401, "expired"));

        let mut within = claims_with("exp", json!(now() - 200));
        within["nbf"] = json!(now() - 1000);
        fake.verify(&sign(KEY1_PEM, "k1", &within)).await.unwrap();
    }

    #[tokio::test]
    async fn not_before_uses_five_minute_leeway() {
        let fake = Fake::start(vec![k1()]).await;
        let mut early = claims_with("nbf", json!(now() + 400));
        early["exp"] = json!(now() + 1000);
        let err = fake
            .verify(&sign(KEY1_PEM, "k1", &early))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, AuthError::InvalidToken(k) if k == "ImmatureSignature"),
            "{err:?}"
        );
        assert_eq!((err.status(), err.reason()), (401, "not_yet_valid"));

        let mut within = claims_with("nbf", json!(now() + 200));
        within["exp"] = json!(now() + 1000);
        fake.verify(&sign(KEY1_PEM, "k1", &within)).await.unwrap();
    }

    #[tokio::test]
    async fn unknown_kid_refetches_once_then_fails() {
        let fake = Fake::start(vec![k1()]).await;
        fake.verify(&k1_token()).await.unwrap();
        let err = fake
            .verify(&sign(KEY2_PEM, "k2", &claims()))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, AuthError::UnknownKey(kid) if kid == "k2"),
            "{err:?}"
        );
        assert_eq!((err.status(), err.reason()), (401, "unknown_key"));
        assert_eq!(fake.jwks_fetches().await, 2);
    }

    #[tokio::test]
    async fn service_url_claim_must_match_activity() {
        let fake = Fake::start(vec![k1()]).await;

        let missing = fake
            .verify(&sign(KEY1_PEM, "k1", &claims_without("serviceurl")))
            .await
            .unwrap();
        let err = missing.check_activity(SERVICE_URL, "msteams").unwrap_err();
        assert!(matches!(err, AuthError::ServiceUrlMissing), "{err:?}");
        assert_eq!((err.status(), err.reason()), (401, "serviceurl_missing"));

        let token = fake.verify(&k1_token()).await.unwrap();
        let err = token
            .check_activity("https://smba.trafficmanager.net/amer/", "msteams")
            .unwrap_err();
        assert!(matches!(err, AuthError::ServiceUrlMismatch), "{err:?}");
        assert_eq!((err.status(), err.reason()), (401, "serviceurl_mismatch"));
        // Only one trailing slash is forgiven.
        let err = token
            .check_activity("https://smba.trafficmanager.net/emea//", "msteams")
            .unwrap_err();
        assert!(matches!(err, AuthError::ServiceUrlMismatch), "{err:?}");

        token
            .check_activity("HTTPS://SMBA.trafficmanager.net/EMEA", "msteams")
            .unwrap();
        let no_slash = claims_with("serviceurl", json!("https://smba.trafficmanager.net/emea"));
        fake.verify(&sign(KEY1_PEM, "k1", &no_slash))
            .await
            .unwrap()
            .check_activity(SERVICE_URL, "msteams")
            .unwrap();
    }

    #[tokio::test]
    async fn key_without_channel_endorsement_is_forbidden() {
        let fake = Fake::start(vec![k1(), jwk(KEY2_JWK, "k2", &["webchat"])]).await;
        let token = fake.verify(&sign(KEY2_PEM, "k2", &claims())).await.unwrap();
        let err = token.check_activity(SERVICE_URL, "msteams").unwrap_err();
        assert!(matches!(err, AuthError::EndorsementMissing), "{err:?}");
        assert_eq!((err.status(), err.reason()), (403, "endorsement_missing"));
        token.check_activity(SERVICE_URL, "webchat").unwrap();
    }

    #[test]
    fn tenant_allow_list() {
        check_tenant(&[], None).unwrap();
        check_tenant(&[], Some(TENANT)).unwrap();
        let allowed = vec![TENANT.to_owned(), "other-tenant".to_owned()];
        check_tenant(&allowed, Some(TENANT)).unwrap();
        check_tenant(&allowed, Some(&TENANT.to_uppercase())).unwrap();
        for tenant in [None, Some(""), Some("not-listed")] {
            let err = check_tenant(&allowed, tenant).unwrap_err();
            assert!(matches!(err, AuthError::TenantNotAllowed), "{err:?}");
            assert_eq!((err.status(), err.reason()), (403, "tenant_not_allowed"));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cold_start_burst_fetches_once() {
        let fake = Fake::start(vec![k1()]).await;
        for result in fake.burst(&k1_token(), 10).await {
            result.unwrap();
        }
        assert_eq!(fake.jwks_fetches().await, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn key_rotation_is_picked_up_with_one_fetch() {
        let fake = Fake::start(vec![k1()]).await;
        fake.verify(&k1_token()).await.unwrap();
        assert_eq!(fake.jwks_fetches().await, 1);

        fake.serve_keys(vec![k1(), k2()], 5).await;
        let k2_token = sign(KEY2_PEM, "k2", &claims());
        for result in fake.burst(&k2_token, 10).await {
            assert_eq!(result.unwrap().kid, "k2");
        }
        assert_eq!(fake.jwks_fetches().await, 2);

        fake.verify(&k2_token).await.unwrap();
        for result in fake.burst(&k2_token, 10).await {
            result.unwrap();
        }
        fake.verify(&k1_token()).await.unwrap();
        assert_eq!(fake.jwks_fetches().await, 2);
    }

    #[tokio::test]
    async fn unknown_kid_refetch_has_a_floor() {
        let fake = Fake::start(vec![k1()]).await;
        fake.verify(&k1_token()).await.unwrap();
        let err = fake
            .verify(&sign(KEY2_PEM, "kx", &claims()))
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::UnknownKey(_)), "{err:?}");
        assert_eq!(fake.jwks_fetches().await, 2);

        // k2 is published now, but within the floor we must not go and look.
        fake.serve_keys(vec![k1(), k2()], 5).await;
        advance_clock(Duration::from_secs(4 * 60)).await;
        let k2_token = sign(KEY2_PEM, "k2", &claims());
        let err = fake.verify(&k2_token).await.unwrap_err();
        assert!(
            matches!(&err, AuthError::UnknownKey(kid) if kid == "k2"),
            "{err:?}"
        );
        for result in fake.burst(&sign(KEY2_PEM, "ky", &claims()), 5).await {
            assert!(matches!(result, Err(AuthError::UnknownKey(_))));
        }
        assert_eq!(fake.jwks_fetches().await, 2);

        advance_clock(Duration::from_secs(61)).await;
        fake.verify(&k2_token).await.unwrap();
        assert_eq!(fake.jwks_fetches().await, 3);
    }

    #[tokio::test]
    async fn failed_refetch_keeps_old_keys() {
        let fake = Fake::start(vec![k1()]).await;
        fake.verify(&k1_token()).await.unwrap();
        fake.fail_keys(5).await;

        let err = fake
            .verify(&sign(KEY2_PEM, "k2", &claims()))
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::UnknownKey(_)), "{err:?}");
        assert_eq!(fake.jwks_fetches().await, 2);
        fake.verify(&k1_token()).await.unwrap();
    }

    #[tokio::test]
    async fn keys_refresh_after_a_day_and_survive_a_failed_refresh() {
        let fake = Fake::start(vec![k1()]).await;
        fake.verify(&k1_token()).await.unwrap();

        advance_clock(Duration::from_secs(23 * 60 * 60)).await;
        fake.verify(&k1_token()).await.unwrap();
        assert_eq!(fake.jwks_fetches().await, 1);

        fake.fail_keys(5).await;
        advance_clock(Duration::from_secs(60 * 60)).await;
        fake.verify(&k1_token()).await.unwrap();
        assert_eq!(fake.jwks_fetches().await, 2);
        // The failure must not turn every request into another fetch.
        fake.verify(&k1_token()).await.unwrap();
        assert_eq!(fake.jwks_fetches().await, 2);

        fake.serve_keys(vec![k2()], 4).await;
        advance_clock(REFETCH_FLOOR).await;
        fake.verify(&sign(KEY2_PEM, "k2", &claims())).await.unwrap();
        assert_eq!(fake.jwks_fetches().await, 3);
        let err = fake.verify(&k1_token()).await.unwrap_err();
        assert!(matches!(err, AuthError::UnknownKey(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_reused_token_is_verified_once_and_dropped_with_its_key() {
        let fake = Fake::start(vec![k1()]).await;
        let token = k1_token();
        fake.verify(&token).await.unwrap();
        // Served from the verified cache: even a key endpoint that now fails is not needed.
        fake.fail_keys(5).await;
        fake.verify(&token).await.unwrap();
        assert_eq!(fake.jwks_fetches().await, 1);

        // The key is withdrawn: the cached token goes with it.
        fake.serve_keys(vec![k2()], 4).await;
        advance_clock(REFETCH_FLOOR).await;
        fake.verify(&sign(KEY2_PEM, "k2", &claims())).await.unwrap();
        let err = fake.verify(&token).await.unwrap_err();
        assert!(matches!(err, AuthError::UnknownKey(_)), "{err:?}");
    }

    #[tokio::test]
    async fn unusable_keys_are_skipped() {
        let mut bad_n = k2();
        bad_n["n"] = json!("***not base64***");
        bad_n["kid"] = json!("bad-n");
        let mut no_kid = k2();
        no_kid.as_object_mut().unwrap().remove("kid");
        let mut enc_use = k2();
        enc_use["use"] = json!("enc");
        let ec = json!({"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"});
        let fake = Fake::start(vec![json!("junk"), ec, bad_n, no_kid, enc_use, k1()]).await;
        fake.verify(&k1_token()).await.unwrap();
        let err = fake
            .verify(&sign(KEY2_PEM, "k2", &claims()))
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::UnknownKey(_)), "{err:?}");
    }

    #[tokio::test]
    async fn metadata_unreachable_without_cache_is_unavailable() {
        // A port that was just free and is now closed: connection refused.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}{METADATA_PATH}", listener.local_addr().unwrap());
        drop(listener);
        let validator = JwtValidator::new(reqwest::Client::new(), APP_ID.to_owned(), url);
        let err = validator
            .verify_bearer(Some(&k1_token()))
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::KeysUnavailable(_)), "{err:?}");
        assert_eq!((err.status(), err.reason()), (503, "keys_unavailable"));
    }

    #[tokio::test]
    async fn jwks_without_usable_keys_is_unavailable() {
        let fake = Fake::start(vec![json!({"kty": "oct", "kid": "s", "k": "AA"})]).await;
        let err = fake.verify(&k1_token()).await.unwrap_err();
        assert!(matches!(err, AuthError::KeysUnavailable(_)), "{err:?}");
        assert_eq!(err.status(), 503);

        // Errors are not cached: once keys appear the next request succeeds.
        fake.serve_keys(vec![k1()], 5).await;
        fake.verify(&k1_token()).await.unwrap();
    }
}
