//! Entra ID sign-in for the dashboard and the operator API: OpenID Connect authorization code flow with PKCE,
//! built from oauth2 (the code exchange) and jsonwebtoken (the id_token and our own session cookie).
//!
//! openidconnect would pin reqwest 0.12 through oauth2's `reqwest` feature, and we only need one provider
//! with a fixed issuer, so the id_token checks are spelled out here instead: RS256 from the tenant JWKS, iss,
//! aud, exp/nbf, nonce and tid.
//!
//! State lives in two cookies, both HS256 JWTs under `session_key` with distinct audiences so one cannot be
//! replayed as the other: a 10-minute flow cookie (state, PKCE verifier, nonce, return path) and the session.
//! Browsers get a short HTML page on failure; the reason goes to the log, never a code, token or cookie.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, ExtraTokenFields, HttpRequest, HttpResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RequestTokenError, Scope, StandardRevocableToken, StandardTokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

pub const SESSION_COOKIE: &str = "__Host-fieldbot_session";
const FLOW_COOKIE: &str = "__Host-fieldbot_signin";
/// Long enough to type a password and approve MFA, short enough that a stolen flow cookie is soon useless.
const FLOW_LIFETIME_SECS: u64 = 10 * 60;
const FLOW_AUDIENCE: &str = "fieldbot/signin-flow";
const SESSION_AUDIENCE: &str = "fieldbot/session";
/// HS256 is only as strong as its key; a short key is a misconfiguration, not a weaker mode.
const MIN_SESSION_KEY_BYTES: usize = 32;
/// Microsoft's libraries allow five minutes of clock skew on id_tokens.
const ID_TOKEN_LEEWAY_SECS: u64 = 300;
/// Keeps the flow cookie well under browser limits; longer return paths fall back to `/`.
const MAX_RETURN_PATH: usize = 1024;
const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const JWKS_TIMEOUT: Duration = Duration::from_secs(10);
/// Entra rotates signing keys with notice; a daily refresh picks up new ones before they are used.
const JWKS_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// `kid` is attacker-controlled, so an unknown one may trigger a refetch at most this often.
const JWKS_REFETCH_FLOOR: Duration = Duration::from_secs(5 * 60);
/// Caps attacker-supplied text (the IdP's `error` parameter) on its way into the log.
const MAX_ECHO_CHARS: usize = 64;

#[derive(Debug, Clone)]
pub struct SignInSettings {
    pub client_id: String,
    pub client_secret: SecretString,
    pub tenant_id: String,
    /// `https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize`
    pub authorize_url: String,
    /// `https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`
    pub token_url: String,
    /// `https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys`
    pub jwks_url: String,
    /// `https://login.microsoftonline.com/{tenant}/v2.0`
    pub issuer: String,
    /// `<public base>/auth/callback`, registered as a Web redirect URI on the app registration.
    pub redirect_url: String,
    /// Signs the flow and session cookies; at least 32 bytes.
    pub session_key: SecretString,
    pub session_hours: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedInUser {
    pub name: String,
    /// `upn`, or `preferred_username` when the tenant does not emit `upn` (the v2.0 default). For display and
    /// matching against configured UPNs only; `oid` is the stable identity.
    pub upn: Option<String>,
    pub oid: String,
    pub tid: String,
}

/// Entra ID sign-in. Cheap to clone.
#[derive(Clone)]
pub struct SignIn {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    settings: SignInSettings,
    // Misconfiguration is reported when a browser arrives, because `new` is infallible by contract; the
    // reason was logged at construction.
    oauth: Result<OidcClient, String>,
    session_keys: Option<(EncodingKey, DecodingKey)>,
    keys: TenantKeys,
}

impl std::fmt::Debug for SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.inner.settings;
        f.debug_struct("SignIn")
            .field("client_id", &s.client_id)
            .field("tenant_id", &s.tenant_id)
            .field("redirect_url", &s.redirect_url)
            .finish_non_exhaustive()
    }
}

/// The id_token is the one extra field the token response carries for OpenID Connect.
#[derive(Clone, Serialize, Deserialize)]
struct IdTokenFields {
    id_token: Option<String>,
}

impl std::fmt::Debug for IdTokenFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdTokenFields { .. }")
    }
}

impl ExtraTokenFields for IdTokenFields {}

type OidcTokenResponse = StandardTokenResponse<IdTokenFields, BasicTokenType>;
type OidcClient = oauth2::Client<
    BasicErrorResponse,
    OidcTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

#[derive(Serialize, Deserialize)]
struct FlowClaims {
    aud: String,
    exp: u64,
    state: String,
    verifier: String,
    nonce: String,
    return_to: String,
}

#[derive(Serialize, Deserialize)]
struct SessionClaims {
    aud: String,
    iat: u64,
    exp: u64,
    name: String,
    upn: Option<String>,
    oid: String,
    tid: String,
}

#[derive(Deserialize)]
struct IdClaims {
    iss: String,
    tid: Option<String>,
    oid: Option<String>,
    nonce: Option<String>,
    name: Option<String>,
    upn: Option<String>,
    preferred_username: Option<String>,
}

/// Why a callback was refused: the status the browser sees and a stable label for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refusal {
    status: StatusCode,
    reason: &'static str,
}

impl Refusal {
    const fn new(status: StatusCode, reason: &'static str) -> Self {
        Self { status, reason }
    }
    const fn bad_request(reason: &'static str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason)
    }
    const fn unauthorized(reason: &'static str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, reason)
    }
}

impl SignIn {
    /// `http` should be built with `redirect(Policy::none())`: the token request carries the client secret.
    pub fn new(http: reqwest::Client, settings: SignInSettings) -> Self {
        let oauth = build_oauth_client(&settings);
        if let Err(reason) = &oauth {
            tracing::error!(%reason, "dashboard sign-in is misconfigured");
        }
        let key = settings.session_key.expose_secret().as_bytes();
        let session_keys = if key.len() >= MIN_SESSION_KEY_BYTES {
            Some((EncodingKey::from_secret(key), DecodingKey::from_secret(key)))
        } else {
            tracing::error!(
                min_bytes = MIN_SESSION_KEY_BYTES,
                "dashboard session key is too short; sign-in is disabled"
            );
            None
        };
        let keys = TenantKeys::new(http.clone(), settings.jwks_url.clone());
        Self {
            inner: Arc::new(Inner {
                http,
                settings,
                oauth,
                session_keys,
                keys,
            }),
        }
    }

    /// Starts a sign-in: a 302 to Entra with PKCE (S256), state and nonce, remembered in a signed flow cookie.
    /// `return_to` is where the callback lands afterwards; anything but a local path becomes `/`.
    pub fn start(&self, return_to: &str) -> Response {
        match self.try_start(return_to) {
            Ok(response) => response,
            Err(refusal) => refuse(refusal),
        }
    }

    fn try_start(&self, return_to: &str) -> Result<Response, Refusal> {
        let (oauth, (encoding, _)) = self.configured()?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        // CsrfToken::new_random draws 16 bytes from a CSPRNG; the nonce needs the same unpredictability.
        let nonce = CsrfToken::new_random();
        let (url, state) = oauth
            .authorize_url(CsrfToken::new_random)
            .add_scope(Scope::new("openid".to_owned()))
            .add_scope(Scope::new("profile".to_owned()))
            .add_scope(Scope::new("email".to_owned()))
            .set_pkce_challenge(challenge)
            .add_extra_param("nonce", nonce.secret())
            .url();
        let flow = FlowClaims {
            aud: FLOW_AUDIENCE.to_owned(),
            exp: now().saturating_add(FLOW_LIFETIME_SECS),
            state: state.secret().clone(),
            verifier: verifier.secret().clone(),
            nonce: nonce.secret().clone(),
            return_to: safe_return_path(return_to).to_owned(),
        };
        let value = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &flow, encoding)
            .map_err(|_| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "flow_cookie_encode"))?;
        redirect(
            url.as_str(),
            &[set_cookie(FLOW_COOKIE, &value, FLOW_LIFETIME_SECS)],
        )
    }

    /// Completes a sign-in (`GET /auth/callback?code&state`): checks state, redeems the code with the PKCE
    /// verifier, validates the id_token, sets the session cookie and redirects to the remembered local path.
    pub async fn callback(&self, query: &HashMap<String, String>, headers: &HeaderMap) -> Response {
        match self.try_callback(query, headers).await {
            Ok(response) => response,
            Err(refusal) => {
                let mut response = refuse(refusal);
                // A failed flow cannot be resumed; leaving its cookie would only replay the failure.
                if let Ok(clear) = HeaderValue::from_str(&clear_cookie(FLOW_COOKIE)) {
                    response.headers_mut().append(SET_COOKIE, clear);
                }
                response
            }
        }
    }

    async fn try_callback(
        &self,
        query: &HashMap<String, String>,
        headers: &HeaderMap,
    ) -> Result<Response, Refusal> {
        let (oauth, (encoding, decoding)) = self.configured()?;
        if let Some(error) = query.get("error") {
            // The user cancelled, or Entra refused (consent, conditional access); the code is the useful part.
            tracing::warn!(error = %echo(error), "identity provider returned an error to the sign-in callback");
            return Err(Refusal::unauthorized("idp_error"));
        }
        let flow: FlowClaims = cookie_values(headers, FLOW_COOKIE)
            .find_map(|value| verify_hs256(value, decoding, FLOW_AUDIENCE))
            .ok_or(Refusal::bad_request("flow_cookie_missing_or_invalid"))?;
        let state = query
            .get("state")
            .ok_or(Refusal::bad_request("state_missing"))?;
        if !constant_time_eq(state, &flow.state) {
            return Err(Refusal::bad_request("state_mismatch"));
        }
        let code = query
            .get("code")
            .filter(|c| !c.is_empty())
            .ok_or(Refusal::bad_request("code_missing"))?;

        let id_token = self
            .redeem(oauth, code, PkceCodeVerifier::new(flow.verifier))
            .await?;
        let user = self.validate_id_token(&id_token, &flow.nonce).await?;

        let issued = now();
        let lifetime = self
            .inner
            .settings
            .session_hours
            .max(1)
            .saturating_mul(3600);
        let session = SessionClaims {
            aud: SESSION_AUDIENCE.to_owned(),
            iat: issued,
            exp: issued.saturating_add(lifetime),
            name: user.name.clone(),
            upn: user.upn.clone(),
            oid: user.oid.clone(),
            tid: user.tid.clone(),
        };
        let value = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &session, encoding)
            .map_err(|_| {
                Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "session_cookie_encode")
            })?;
        tracing::info!(oid = %user.oid, "dashboard sign-in");
        redirect(
            safe_return_path(&flow.return_to),
            &[
                set_cookie(SESSION_COOKIE, &value, lifetime),
                clear_cookie(FLOW_COOKIE),
            ],
        )
    }

    /// Redeems the authorization code; returns the raw id_token.
    async fn redeem(
        &self,
        oauth: &OidcClient,
        code: &str,
        verifier: PkceCodeVerifier,
    ) -> Result<String, Refusal> {
        let http = self.inner.http.clone();
        // Owned handles per request future: a future borrowing from the closure makes the handler future
        // impossible to prove `Send` (see botframework::token).
        let client = move |request: HttpRequest| send_token_request(http.clone(), request);
        let result = oauth
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(verifier)
            .request_async(&client)
            .await;
        let response = match result {
            Ok(response) => response,
            Err(RequestTokenError::ServerResponse(err)) => {
                // invalid_grant here usually means a reused or expired code (back button, slow MFA).
                tracing::warn!(
                    error = %err.error(),
                    description = err.error_description().map(String::as_str).unwrap_or(""),
                    "token endpoint rejected the authorization code"
                );
                return Err(Refusal::unauthorized("code_rejected"));
            }
            Err(RequestTokenError::Request(AdapterError(msg))) => {
                tracing::warn!(error = %msg, "sign-in token request failed");
                return Err(Refusal::new(
                    StatusCode::BAD_GATEWAY,
                    "token_request_failed",
                ));
            }
            // The body of an unparseable success may hold tokens: report only where parsing failed.
            Err(RequestTokenError::Parse(err, _body)) => {
                tracing::warn!(at = %err.path(), "malformed sign-in token response");
                return Err(Refusal::new(
                    StatusCode::BAD_GATEWAY,
                    "token_response_malformed",
                ));
            }
            Err(RequestTokenError::Other(msg)) => {
                tracing::warn!(error = %msg, "sign-in token request failed");
                return Err(Refusal::new(
                    StatusCode::BAD_GATEWAY,
                    "token_request_failed",
                ));
            }
        };
        response
            .extra_fields()
            .id_token
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or(Refusal::unauthorized("id_token_missing"))
    }

    async fn validate_id_token(&self, token: &str, nonce: &str) -> Result<SignedInUser, Refusal> {
        let settings = &self.inner.settings;
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| Refusal::unauthorized("malformed"))?;
        if header.alg != Algorithm::RS256 {
            return Err(Refusal::unauthorized("unsupported_alg"));
        }
        let kid = header
            .kid
            .filter(|k| !k.is_empty())
            .ok_or(Refusal::unauthorized("missing_kid"))?;
        let key = self.inner.keys.key_for(&kid).await?;

        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = ID_TOKEN_LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_audience(&[settings.client_id.as_str()]);
        // The issuer is compared below, after the tenant, so a user from another tenant (whose token names
        // that tenant in `iss` too) gets the 403 that says so rather than a generic 401.
        let claims = jsonwebtoken::decode::<IdClaims>(token, &key, &validation)
            .map_err(|e| Refusal::unauthorized(id_token_reason(e.kind())))?
            .claims;

        let tid = claims.tid.unwrap_or_default();
        if tid.is_empty() || !tid.trim().eq_ignore_ascii_case(settings.tenant_id.trim()) {
            tracing::warn!(tid = %echo(&tid), "sign-in from a tenant that is not ours");
            return Err(Refusal::new(StatusCode::FORBIDDEN, "tenant_not_allowed"));
        }
        if claims.iss != settings.issuer {
            return Err(Refusal::unauthorized("bad_issuer"));
        }
        if !claims
            .nonce
            .as_deref()
            .is_some_and(|n| constant_time_eq(n, nonce))
        {
            return Err(Refusal::unauthorized("nonce_mismatch"));
        }
        let oid = claims
            .oid
            .filter(|o| !o.is_empty())
            .ok_or(Refusal::unauthorized("oid_missing"))?;
        let upn = claims
            .upn
            .or(claims.preferred_username)
            .filter(|u| !u.is_empty());
        let name = claims
            .name
            .filter(|n| !n.trim().is_empty())
            .or_else(|| upn.clone())
            .unwrap_or_else(|| oid.clone());
        Ok(SignedInUser {
            name,
            upn,
            oid,
            tid,
        })
    }

    /// The signed-in user from the session cookie, if it is genuine, unexpired and from our tenant.
    pub fn user(&self, headers: &HeaderMap) -> Option<SignedInUser> {
        let (_, decoding) = self.inner.session_keys.as_ref()?;
        let claims: SessionClaims = cookie_values(headers, SESSION_COOKIE)
            .find_map(|value| verify_hs256(value, decoding, SESSION_AUDIENCE))?;
        // A session from before a tenant change must not outlive it.
        if !claims
            .tid
            .eq_ignore_ascii_case(self.inner.settings.tenant_id.trim())
        {
            return None;
        }
        Some(SignedInUser {
            name: claims.name,
            upn: claims.upn,
            oid: claims.oid,
            tid: claims.tid,
        })
    }

    /// Clears the session cookie and sends the browser to `/`. The session JWT itself stays valid until it
    /// expires; there is no server-side session store to revoke it from.
    pub fn sign_out(&self) -> Response {
        redirect("/", &[clear_cookie(SESSION_COOKIE)])
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    }

    fn configured(&self) -> Result<(&OidcClient, &(EncodingKey, DecodingKey)), Refusal> {
        let misconfigured = Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "misconfigured");
        let oauth = self.inner.oauth.as_ref().map_err(|_| misconfigured)?;
        let keys = self.inner.session_keys.as_ref().ok_or(misconfigured)?;
        Ok((oauth, keys))
    }
}

fn build_oauth_client(settings: &SignInSettings) -> Result<OidcClient, String> {
    let auth_url = AuthUrl::new(settings.authorize_url.clone())
        .map_err(|e| format!("authorize_url is not a URL: {e}"))?;
    require_https_or_loopback("authorize_url", auth_url.url())?;
    let token_url = TokenUrl::new(settings.token_url.clone())
        .map_err(|e| format!("token_url is not a URL: {e}"))?;
    require_https_or_loopback("token_url", token_url.url())?;
    let jwks_url =
        url::Url::parse(&settings.jwks_url).map_err(|e| format!("jwks_url is not a URL: {e}"))?;
    require_https_or_loopback("jwks_url", &jwks_url)?;
    let redirect_url = RedirectUrl::new(settings.redirect_url.clone())
        .map_err(|e| format!("redirect_url is not a URL: {e}"))?;
    require_https_or_loopback("redirect_url", redirect_url.url())?;
    for (name, value) in [
        ("client_id", &settings.client_id),
        ("tenant_id", &settings.tenant_id),
        ("issuer", &settings.issuer),
    ] {
        if value.trim().is_empty() {
            return Err(format!("{name} is empty"));
        }
    }
    Ok(
        oauth2::Client::new(ClientId::new(settings.client_id.clone()))
            .set_client_secret(ClientSecret::new(
                settings.client_secret.expose_secret().to_owned(),
            ))
            // Entra accepts both; the body form matches the bot's own token requests.
            .set_auth_type(AuthType::RequestBody)
            .set_auth_uri(auth_url)
            .set_token_uri(token_url)
            .set_redirect_uri(redirect_url),
    )
}

/// Secrets, codes and keys travel over these URLs, so plain HTTP is only acceptable to a local fake.
fn require_https_or_loopback(name: &str, url: &url::Url) -> Result<(), String> {
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        other => Err(format!("{name} must be https (got scheme {other:?})")),
    }
}

fn id_token_reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidSignature => "bad_signature",
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::ImmatureSignature => "not_yet_valid",
        ErrorKind::InvalidAudience => "bad_audience",
        ErrorKind::InvalidAlgorithm => "unsupported_alg",
        ErrorKind::MissingRequiredClaim(_) => "missing_claim",
        _ => "invalid_id_token",
    }
}

/// Our own HS256 cookies: signature, audience and expiry, no leeway (we wrote `exp` with our own clock).
fn verify_hs256<T: serde::de::DeserializeOwned>(
    value: &str,
    key: &DecodingKey,
    audience: &str,
) -> Option<T> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.validate_exp = true;
    validation.set_required_spec_claims(&["exp", "aud"]);
    validation.set_audience(&[audience]);
    jsonwebtoken::decode::<T>(value, key, &validation)
        .ok()
        .map(|data| data.claims)
}

/// Every value of cookie `name` across all Cookie headers; a browser may send a stale duplicate first.
fn cookie_values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(move |pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"'))
        })
}

/// `__Host-` cookies must be Secure with Path=/ and no Domain, which also keeps a sibling subdomain from
/// planting one. Browsers treat http://localhost as secure, so local development works too.
fn set_cookie(name: &str, value: &str, max_age_secs: u64) -> String {
    format!("{name}={value}; Max-Age={max_age_secs}; Path=/; HttpOnly; Secure; SameSite=Lax")
}

fn clear_cookie(name: &str) -> String {
    set_cookie(name, "", 0)
}

/// Only a path on this site: `//host` and `/\host` are protocol-relative to browsers, and anything with a
/// scheme, space or control character is not a plain local path. Sign-in's own routes would loop.
fn safe_return_path(candidate: &str) -> &str {
    let local = candidate.starts_with('/')
        && !candidate.starts_with("//")
        && !candidate.contains('\\')
        && !candidate.starts_with("/auth/")
        && candidate.len() <= MAX_RETURN_PATH
        && candidate.bytes().all(|b| b.is_ascii_graphic());
    if local { candidate } else { "/" }
}

fn redirect(location: &str, cookies: &[String]) -> Result<Response, Refusal> {
    let header_error = |_| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "header_value");
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    headers.insert(
        LOCATION,
        HeaderValue::from_str(location).map_err(header_error)?,
    );
    for cookie in cookies {
        headers.append(
            SET_COOKIE,
            HeaderValue::from_str(cookie).map_err(header_error)?,
        );
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

fn refuse(refusal: Refusal) -> Response {
    let status = refusal.status;
    if status.is_server_error() {
        tracing::error!(
            status = status.as_u16(),
            reason = refusal.reason,
            "sign-in failed"
        );
    } else {
        tracing::warn!(
            status = status.as_u16(),
            reason = refusal.reason,
            "sign-in refused"
        );
    }
    error_page(status)
}

/// A fixed page per status: nothing from the request or the failure is echoed.
fn error_page(status: StatusCode) -> Response {
    let (title, message, retry) = match status {
        StatusCode::BAD_REQUEST => (
            "Sign-in expired",
            "The sign-in took too long or was started in another window. Please start again.",
            true,
        ),
        StatusCode::UNAUTHORIZED => (
            "Sign-in failed",
            "Your sign-in could not be verified. Please try again.",
            true,
        ),
        StatusCode::FORBIDDEN => (
            "Access denied",
            "Your account's organisation is not allowed to use this dashboard.",
            false,
        ),
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE => (
            "Sign-in unavailable",
            "The sign-in service could not be reached. Please try again in a few minutes.",
            true,
        ),
        _ => (
            "Sign-in unavailable",
            "Sign-in is not working right now. The operators have been told.",
            false,
        ),
    };
    let retry = if retry {
        "<p><a href=\"/auth/start\">Sign in again</a></p>"
    } else {
        ""
    };
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title}</title></head>\
         <body style=\"font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:3rem auto;max-width:34rem;padding:0 1rem\">\
         <h1 style=\"font-size:1.3rem\">{title}</h1><p>{message}</p>{retry}\
         <p style=\"color:#59636e\">HTTP {code}</p></body></html>",
        code = status.as_u16()
    );
    (
        status,
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// State and nonce are secrets compared against attacker input; don't leak a matching prefix through timing.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn echo(untrusted: &str) -> String {
    untrusted
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ECHO_CHARS)
        .collect()
}

/// The tenant's signing keys, cached like botframework::auth does for the Connector's: a day at most, an
/// unknown `kid` refetches at most once per [`JWKS_REFETCH_FLOOR`], a failed refresh keeps the old keys.
/// That module's validator is tied to Bot Framework metadata and claims, so only the approach is shared.
struct TenantKeys {
    http: reqwest::Client,
    url: String,
    cache: moka::future::Cache<(), Arc<KeySet>>,
    last_refetch: tokio::sync::Mutex<Option<Instant>>,
}

struct KeySet {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Instant,
}

#[derive(Deserialize)]
struct RawJwks {
    /// Raw values, so one odd entry cannot make the whole set unusable.
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawJwk {
    kid: String,
    kty: String,
    #[serde(rename = "use")]
    key_use: Option<String>,
    alg: Option<String>,
    n: String,
    e: String,
}

impl TenantKeys {
    fn new(http: reqwest::Client, url: String) -> Self {
        Self {
            http,
            url,
            cache: moka::future::Cache::builder()
                .name("signin_jwks")
                .max_capacity(1)
                .build(),
            last_refetch: tokio::sync::Mutex::new(None),
        }
    }

    async fn key_for(&self, kid: &str) -> Result<DecodingKey, Refusal> {
        let set = self
            .cache
            .try_get_with((), async { self.fetch().await.map(Arc::new) })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "sign-in signing keys unavailable");
                Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "keys_unavailable")
            })?;
        if set.fetched_at.elapsed() < JWKS_MAX_AGE
            && let Some(key) = set.keys.get(kid)
        {
            return Ok(key.clone());
        }
        let set = self.refetch(set).await;
        set.keys
            .get(kid)
            .cloned()
            .ok_or(Refusal::unauthorized("unknown_key"))
    }

    async fn refetch(&self, seen: Arc<KeySet>) -> Arc<KeySet> {
        let mut last = self.last_refetch.lock().await;
        // Someone else may have refreshed while we waited for the lock.
        let current = self.cache.get(&()).await.unwrap_or(seen);
        if last.is_some_and(|t| t.elapsed() < JWKS_REFETCH_FLOOR) {
            return current;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                self.cache.insert((), Arc::clone(&fresh)).await;
                fresh
            }
            Err(e) => {
                tracing::warn!(error = %e, "sign-in key refresh failed; keeping the cached keys");
                current
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let jwks: RawJwks = self
            .http
            .get(&self.url)
            .timeout(JWKS_TIMEOUT)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("fetching JWKS: {}", error_chain(&e)))?
            .json()
            .await
            .map_err(|e| format!("parsing JWKS: {}", error_chain(&e)))?;
        let keys: HashMap<String, DecodingKey> =
            jwks.keys.into_iter().filter_map(parse_key).collect();
        if keys.is_empty() {
            return Err("JWKS contains no usable RSA signing keys".to_owned());
        }
        Ok(KeySet {
            keys,
            fetched_at: Instant::now(),
        })
    }
}

fn parse_key(value: serde_json::Value) -> Option<(String, DecodingKey)> {
    let raw: RawJwk = serde_json::from_value(value).ok()?;
    let usable = raw.kty == "RSA"
        && raw.key_use.as_deref().is_none_or(|u| u == "sig")
        && raw.alg.as_deref().is_none_or(|a| a == "RS256")
        && !raw.kid.is_empty();
    if !usable {
        return None;
    }
    let key = DecodingKey::from_rsa_components(&raw.n, &raw.e).ok()?;
    Some((raw.kid, key))
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct AdapterError(String);

/// The oauth2 → reqwest 0.13 adapter (oauth2's own `reqwest` feature pins reqwest 0.12).
async fn send_token_request(
    http: reqwest::Client,
    request: HttpRequest,
) -> Result<HttpResponse, AdapterError> {
    let mut request = reqwest::Request::try_from(request)
        .map_err(|e| AdapterError(format!("cannot build token request: {}", error_chain(&e))))?;
    *request.timeout_mut() = Some(TOKEN_REQUEST_TIMEOUT);
    let response = http
        .execute(request)
        .await
        .map_err(|e| AdapterError(error_chain(&e)))?;
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

/// reqwest's top-level message names the URL; the causes (refused, DNS, TLS, timeout) are what help.
fn error_chain(err: &reqwest::Error) -> String {
    let mut out = if err.is_timeout() {
        "timed out".to_owned()
    } else if err.is_connect() {
        "connect error".to_owned()
    } else if err.is_decode() {
        "decode error".to_owned()
    } else if let Some(status) = err.status() {
        format!("HTTP {}", status.as_u16())
    } else {
        "request error".to_owned()
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    use serde_json::{Value, json};
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, Request, ResponseTemplate};

    const CLIENT_ID: &str = "aaaaaaaa-1111-4222-8333-bbbbbbbbbbbb";
    const TENANT: &str = "8d3e1c2a-0000-4000-8000-00000000aaaa";
    const OTHER_TENANT: &str = "99999999-0000-4000-8000-00000000ffff";
    const SECRET: &str = "cl1ent-s3cret~value";
    const SESSION_KEY: &str = "0123456789abcdef0123456789abcdef-session";
    const AUTHORIZE_URL: &str = "https://login.microsoftonline.com/8d3e1c2a-0000-4000-8000-00000000aaaa/oauth2/v2.0/authorize";
    const REDIRECT_URL: &str = "https://fieldbot.example.test/auth/callback";
    const TOKEN_PATH: &str = "/tenant/oauth2/v2.0/token";
    const KEYS_PATH: &str = "/tenant/discovery/v2.0/keys";

    const KEY1_PEM: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/keys/key1.pem"
    ));
    const KEY2_PEM: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/keys/key2.pem"
    ));
    const KEY1_JWK: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/keys/key1.jwk.json"
    ));

    /// Adjusts the claims of a test id_token.
    type Edit = fn(&mut Value);

    fn issuer(tenant: &str) -> String {
        format!("https://login.microsoftonline.com/{tenant}/v2.0")
    }

    fn settings(server: &MockServer) -> SignInSettings {
        SignInSettings {
            client_id: CLIENT_ID.to_owned(),
            client_secret: SecretString::from(SECRET),
            tenant_id: TENANT.to_owned(),
            authorize_url: AUTHORIZE_URL.to_owned(),
            token_url: format!("{}{TOKEN_PATH}", server.uri()),
            jwks_url: format!("{}{KEYS_PATH}", server.uri()),
            issuer: issuer(TENANT),
            redirect_url: REDIRECT_URL.to_owned(),
            session_key: SecretString::from(SESSION_KEY),
            session_hours: 8,
        }
    }

    fn http() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    struct Fake {
        server: MockServer,
        signin: SignIn,
    }

    /// What start() left in the browser: the query it sent to Entra and the flow cookie.
    struct Started {
        params: HashMap<String, String>,
        cookie: String,
    }

    impl Started {
        fn state(&self) -> &str {
            &self.params["state"]
        }
        fn nonce(&self) -> &str {
            &self.params["nonce"]
        }
    }

    impl Fake {
        async fn start() -> Self {
            let server = MockServer::start().await;
            let mut k1: Value = serde_json::from_str(KEY1_JWK).unwrap();
            k1["kid"] = json!("k1");
            k1["use"] = json!("sig");
            Mock::given(method("GET"))
                .and(path(KEYS_PATH))
                .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "keys": [k1] })))
                .mount(&server)
                .await;
            let signin = SignIn::new(http(), settings(&server));
            Self { server, signin }
        }

        fn begin(&self, return_to: &str) -> Started {
            let response = self.signin.start(return_to);
            assert_eq!(response.status(), StatusCode::FOUND);
            let location = response.headers()[LOCATION].to_str().unwrap();
            let params = url::Url::parse(location)
                .unwrap()
                .query_pairs()
                .into_owned()
                .collect();
            let cookie = cookie_pair(&response, FLOW_COOKIE).unwrap();
            Started { params, cookie }
        }

        async fn token_endpoint_returns(&self, id_token: &str) {
            self.server.reset().await;
            let mut k1: Value = serde_json::from_str(KEY1_JWK).unwrap();
            k1["kid"] = json!("k1");
            Mock::given(method("GET"))
                .and(path(KEYS_PATH))
                .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "keys": [k1] })))
                .mount(&self.server)
                .await;
            Mock::given(method("POST"))
                .and(path(TOKEN_PATH))
                .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                    "token_type": "Bearer",
                    "expires_in": 3599,
                    "scope": "openid profile email",
                    "access_token": "access-token-not-used",
                    "id_token": id_token,
                })))
                .mount(&self.server)
                .await;
        }

        async fn finish(&self, started: &Started, state: &str) -> Response {
            let query = HashMap::from([
                ("code".to_owned(), "auth-code-1".to_owned()),
                ("state".to_owned(), state.to_owned()),
            ]);
            self.signin
                .callback(&query, &cookie_headers(&started.cookie))
                .await
        }

        /// A full sign-in whose id_token is `claims` adjusted by `edit`.
        async fn sign_in_with(
            &self,
            return_to: &str,
            pem: &[u8],
            edit: impl FnOnce(&mut Value),
        ) -> Response {
            let started = self.begin(return_to);
            let mut claims = id_claims(started.nonce());
            edit(&mut claims);
            self.token_endpoint_returns(&sign(pem, "k1", &claims)).await;
            self.finish(&started, started.state()).await
        }

        async fn token_requests(&self) -> Vec<Request> {
            self.server
                .received_requests()
                .await
                .unwrap()
                .into_iter()
                .filter(|r| r.url.path() == TOKEN_PATH)
                .collect()
        }
    }

    /// A session cookie value as `callback` would mint it, with chosen times.
    fn session_cookie_for(signin: &SignIn, user: &SignedInUser, iat: u64, exp: u64) -> String {
        let claims = SessionClaims {
            aud: SESSION_AUDIENCE.to_owned(),
            iat,
            exp,
            name: user.name.clone(),
            upn: user.upn.clone(),
            oid: user.oid.clone(),
            tid: user.tid.clone(),
        };
        let (encoding, _) = signin.inner.session_keys.as_ref().unwrap();
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, encoding).unwrap()
    }

    fn id_claims(nonce: &str) -> Value {
        let now = now();
        json!({
            "iss": issuer(TENANT),
            "aud": CLIENT_ID,
            "iat": now - 10,
            "nbf": now - 10,
            "exp": now + 3600,
            "tid": TENANT,
            "oid": "00000000-0000-0000-0000-0000000000f1",
            "sub": "pairwise-subject",
            "name": "Fiona Manager",
            "preferred_username": "fiona@contoso.example",
            "nonce": nonce,
            "ver": "2.0",
        })
    }

    fn sign(pem: &[u8], kid: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_pem(pem).unwrap()).unwrap()
    }

    /// `name=value` of the Set-Cookie for `name`, as a browser would send it back.
    fn cookie_pair(response: &Response, name: &str) -> Option<String> {
        set_cookie_line(response, name).map(|line| line.split(';').next().unwrap().to_owned())
    }

    fn set_cookie_line(response: &Response, name: &str) -> Option<String> {
        response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|v| v.starts_with(&format!("{name}=")))
    }

    fn cookie_headers(cookie: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(cookie).unwrap());
        headers
    }

    fn location(response: &Response) -> &str {
        response.headers()[LOCATION].to_str().unwrap()
    }

    async fn body_text(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn form(req: &Request) -> HashMap<String, String> {
        url::form_urlencoded::parse(&req.body)
            .into_owned()
            .collect()
    }

    #[tokio::test]
    async fn start_redirects_to_entra_with_pkce_state_and_nonce() {
        let fake = Fake::start().await;
        let response = fake.signin.start("/dashboard?status=open");
        assert_eq!(response.status(), StatusCode::FOUND);
        let loc = location(&response);
        assert!(loc.starts_with(&format!("{AUTHORIZE_URL}?")), "{loc}");

        let started = fake.begin("/dashboard");
        let p = &started.params;
        assert_eq!(p["response_type"], "code");
        assert_eq!(p["client_id"], CLIENT_ID);
        assert_eq!(p["redirect_uri"], REDIRECT_URL);
        assert_eq!(p["code_challenge_method"], "S256");
        assert_eq!(p["code_challenge"].len(), 43);
        let scopes: Vec<&str> = p["scope"].split(' ').collect();
        for scope in ["openid", "profile", "email"] {
            assert!(scopes.contains(&scope), "{scopes:?}");
        }
        assert!(started.state().len() >= 22);
        assert!(started.nonce().len() >= 22);
        assert_ne!(started.state(), started.nonce());

        let line = set_cookie_line(&response, FLOW_COOKIE).unwrap();
        for attr in [
            "Max-Age=600",
            "Path=/",
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
        ] {
            assert!(line.contains(attr), "{attr} missing");
        }
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");

        // Each start is a fresh flow.
        let again = fake.begin("/dashboard");
        assert_ne!(again.state(), started.state());
        assert_ne!(again.params["code_challenge"], p["code_challenge"]);
        assert_ne!(again.nonce(), started.nonce());
    }

    #[tokio::test]
    async fn callback_happy_path_sets_session_and_returns() {
        let fake = Fake::start().await;
        let started = fake.begin("/dashboard?status=open&min_age_days=2");
        let token = sign(KEY1_PEM, "k1", &id_claims(started.nonce()));
        fake.token_endpoint_returns(&token).await;

        let response = fake.finish(&started, started.state()).await;
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(location(&response), "/dashboard?status=open&min_age_days=2");
        let line = set_cookie_line(&response, SESSION_COOKIE).unwrap();
        for attr in [
            "Max-Age=28800",
            "Path=/",
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
        ] {
            assert!(line.contains(attr), "{attr} missing in session cookie");
        }
        let flow_cleared = set_cookie_line(&response, FLOW_COOKIE).unwrap();
        assert!(flow_cleared.starts_with(&format!("{FLOW_COOKIE}=;")));
        assert!(flow_cleared.contains("Max-Age=0"));

        // The token request: authorization_code with the PKCE verifier that matches the challenge sent.
        let requests = fake.token_requests().await;
        assert_eq!(requests.len(), 1);
        let body = form(&requests[0]);
        assert_eq!(body["grant_type"], "authorization_code");
        assert_eq!(body["code"], "auth-code-1");
        assert_eq!(body["redirect_uri"], REDIRECT_URL);
        assert_eq!(body["client_id"], CLIENT_ID);
        assert_eq!(body["client_secret"], SECRET);
        let verifier = PkceCodeVerifier::new(body["code_verifier"].clone());
        assert_eq!(
            PkceCodeChallenge::from_code_verifier_sha256(&verifier).as_str(),
            started.params["code_challenge"]
        );
        assert!(requests[0].headers.get("authorization").is_none());

        let session = cookie_pair(&response, SESSION_COOKIE).unwrap();
        // Alongside unrelated cookies, as a browser sends them.
        let headers = cookie_headers(&format!("theme=dark; {session}; other=1"));
        assert_eq!(
            fake.signin.user(&headers),
            Some(SignedInUser {
                name: "Fiona Manager".to_owned(),
                upn: Some("fiona@contoso.example".to_owned()),
                oid: "00000000-0000-0000-0000-0000000000f1".to_owned(),
                tid: TENANT.to_owned(),
            })
        );
        assert_eq!(fake.signin.user(&HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn wrong_or_missing_state_is_400_and_no_code_is_redeemed() {
        let fake = Fake::start().await;
        let started = fake.begin("/dashboard");
        let token = sign(KEY1_PEM, "k1", &id_claims(started.nonce()));
        fake.token_endpoint_returns(&token).await;

        let response = fake.finish(&started, "not-the-state").await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(set_cookie_line(&response, SESSION_COOKIE).is_none());

        // State from another browser's flow.
        let other = fake.begin("/dashboard");
        let response = fake.finish(&started, other.state()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);

        // No flow cookie at all (expired, or the callback opened in another browser).
        let query = HashMap::from([
            ("code".to_owned(), "c".to_owned()),
            ("state".to_owned(), started.state().to_owned()),
        ]);
        let response = fake.signin.callback(&query, &HeaderMap::new()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);

        // A tampered flow cookie.
        let tampered = Started {
            params: started.params.clone(),
            cookie: format!("{}x", started.cookie),
        };
        let response = fake.finish(&tampered, started.state()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);

        assert!(fake.token_requests().await.is_empty());
    }

    #[tokio::test]
    async fn other_tenant_is_forbidden() {
        let fake = Fake::start().await;
        let response = fake
            .sign_in_with("/dashboard", KEY1_PEM, |c| {
                c["tid"] = json!(OTHER_TENANT);
                c["iss"] = json!(issuer(OTHER_TENANT));
            })
            .await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(set_cookie_line(&response, SESSION_COOKIE).is_none());
        let body = body_text(response).await;
        assert!(body.contains("Access denied"));
        assert!(!body.contains(OTHER_TENANT));

        let response = fake
            .sign_in_with("/dashboard", KEY1_PEM, |c| {
                c.as_object_mut().unwrap().remove("tid");
            })
            .await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn invalid_id_tokens_are_401() {
        let fake = Fake::start().await;
        let cases: Vec<(&str, &[u8], Edit)> = vec![
            ("bad signature", KEY2_PEM, |_| {}),
            ("wrong aud", KEY1_PEM, |c| c["aud"] = json!("another-app")),
            ("wrong nonce", KEY1_PEM, |c| {
                c["nonce"] = json!("replayed-nonce")
            }),
            ("no nonce", KEY1_PEM, |c| {
                c.as_object_mut().unwrap().remove("nonce");
            }),
            ("expired", KEY1_PEM, |c| {
                c["exp"] = json!(now() - ID_TOKEN_LEEWAY_SECS - 60)
            }),
            ("not yet valid", KEY1_PEM, |c| {
                c["nbf"] = json!(now() + ID_TOKEN_LEEWAY_SECS + 60)
            }),
            ("wrong issuer", KEY1_PEM, |c| {
                c["iss"] = json!("https://sts.windows.net/evil/")
            }),
            ("no oid", KEY1_PEM, |c| {
                c.as_object_mut().unwrap().remove("oid");
            }),
        ];
        for (case, pem, edit) in cases {
            let response = fake.sign_in_with("/dashboard", pem, edit).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
            assert!(
                set_cookie_line(&response, SESSION_COOKIE).is_none(),
                "{case}"
            );
            let body = body_text(response).await;
            assert!(body.contains("Sign-in failed"), "{case}");
            for leak in ["Invalid", "nonce", "aud", "auth-code-1", "eyJ"] {
                assert!(!body.contains(leak), "{case}: body leaks {leak}");
            }
        }
    }

    /// The browser sees only the status; the log label says which check refused the token.
    #[tokio::test]
    async fn each_id_token_check_refuses_for_its_own_reason() {
        let fake = Fake::start().await;
        let nonce = "expected-nonce";
        let check = |pem: &'static [u8], kid: &'static str, edit: fn(&mut Value)| {
            let mut claims = id_claims(nonce);
            edit(&mut claims);
            let token = sign(pem, kid, &claims);
            let signin = fake.signin.clone();
            async move {
                signin
                    .validate_id_token(&token, nonce)
                    .await
                    .map_err(|r| (r.status.as_u16(), r.reason))
            }
        };
        assert!(check(KEY1_PEM, "k1", |_| {}).await.is_ok());
        type Expected = (u16, &'static str);
        let cases: [(&[u8], &str, Edit, Expected); 10] = [
            (KEY2_PEM, "k1", |_| {}, (401, "bad_signature")),
            (KEY1_PEM, "k9", |_| {}, (401, "unknown_key")),
            (
                KEY1_PEM,
                "k1",
                |c| c["aud"] = json!("x"),
                (401, "bad_audience"),
            ),
            (
                KEY1_PEM,
                "k1",
                |c| c["exp"] = json!(now() - 400),
                (401, "expired"),
            ),
            (
                KEY1_PEM,
                "k1",
                |c| c["nbf"] = json!(now() + 400),
                (401, "not_yet_valid"),
            ),
            (
                KEY1_PEM,
                "k1",
                |c| c["nonce"] = json!("other"),
                (401, "nonce_mismatch"),
            ),
            (
                KEY1_PEM,
                "k1",
                |c| c["iss"] = json!(issuer(OTHER_TENANT)),
                (401, "bad_issuer"),
            ),
            (
                KEY1_PEM,
                "k1",
                |c| c["tid"] = json!(OTHER_TENANT),
                (403, "tenant_not_allowed"),
            ),
            (
                KEY1_PEM,
                "k1",
                |c| {
                    c.as_object_mut().unwrap().remove("exp");
                },
                (401, "missing_claim"),
            ),
            (
                KEY1_PEM,
                "k1",
                |c| {
                    c.as_object_mut().unwrap().remove("oid");
                },
                (401, "oid_missing"),
            ),
        ];
        for (pem, kid, edit, expected) in cases {
            assert_eq!(check(pem, kid, edit).await.unwrap_err(), expected);
        }
        // Within the five-minute skew allowance.
        assert!(
            check(KEY1_PEM, "k1", |c| c["exp"] = json!(now() - 200))
                .await
                .is_ok()
        );
        // No name: the UPN stands in, so the header never says "signed in as" nothing.
        let user = check(KEY1_PEM, "k1", |c| {
            c.as_object_mut().unwrap().remove("name");
        })
        .await
        .unwrap();
        assert_eq!(user.name, "fiona@contoso.example");
    }

    #[tokio::test]
    async fn unknown_kid_and_alg_none_are_401() {
        let fake = Fake::start().await;
        let started = fake.begin("/dashboard");
        let claims = id_claims(started.nonce());
        fake.token_endpoint_returns(&sign(KEY1_PEM, "k-unknown", &claims))
            .await;
        let response = fake.finish(&started, started.state()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

        use base64::Engine as _;
        let b64 = |v: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
        };
        let started = fake.begin("/dashboard");
        let unsigned = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "kid": "k1"})),
            b64(&id_claims(started.nonce()))
        );
        fake.token_endpoint_returns(&unsigned).await;
        let response = fake.finish(&started, started.state()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn open_redirects_end_at_root() {
        let fake = Fake::start().await;
        for target in ["//evil.example", "https://evil.example", "/\\evil.example"] {
            let response = fake.sign_in_with(target, KEY1_PEM, |_| {}).await;
            assert_eq!(response.status(), StatusCode::FOUND, "{target}");
            assert_eq!(location(&response), "/", "{target}");
            assert!(set_cookie_line(&response, SESSION_COOKIE).is_some());
        }
    }

    #[test]
    fn return_path_table() {
        for ok in [
            "/",
            "/dashboard",
            "/dashboard?status=open&min_age_days=2#x",
            "/a%2F%2Fb",
        ] {
            assert_eq!(safe_return_path(ok), ok);
        }
        for bad in [
            "",
            "dashboard",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "/x\\y",
            "https://evil.example",
            "javascript:alert(1)",
            "/a b",
            "/a\r\nSet-Cookie: x=1",
            "/ünïcode",
            "/auth/callback?code=x",
            "/auth/start",
        ] {
            assert_eq!(safe_return_path(bad), "/", "{bad:?}");
        }
        let long = format!("/{}", "a".repeat(MAX_RETURN_PATH));
        assert_eq!(safe_return_path(&long), "/");
    }

    #[tokio::test]
    async fn tampered_or_foreign_session_cookies_are_ignored() {
        let fake = Fake::start().await;
        let user = SignedInUser {
            name: "Fiona".to_owned(),
            upn: None,
            oid: "oid-1".to_owned(),
            tid: TENANT.to_owned(),
        };
        let good = session_cookie_for(&fake.signin, &user, now(), now() + 3600);
        let as_cookie = |v: &str| cookie_headers(&format!("{SESSION_COOKIE}={v}"));
        assert_eq!(fake.signin.user(&as_cookie(&good)), Some(user.clone()));

        // Payload swapped for one naming someone else, signature kept.
        let parts: Vec<&str> = good.split('.').collect();
        let mut forged_claims: Value = {
            use base64::Engine as _;
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(parts[1])
                .unwrap();
            serde_json::from_slice(&raw).unwrap()
        };
        forged_claims["oid"] = json!("oid-admin");
        let forged_payload = {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(&forged_claims).unwrap())
        };
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(fake.signin.user(&as_cookie(&forged)), None);

        // A flipped signature character.
        let mut flipped = good.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(fake.signin.user(&as_cookie(&flipped)), None);

        // Signed with another key.
        let mut other = settings(&fake.server);
        other.session_key = SecretString::from("another-key-another-key-another-key!");
        let other = session_cookie_for(&SignIn::new(http(), other), &user, now(), now() + 3600);
        assert_eq!(fake.signin.user(&as_cookie(&other)), None);

        // A flow cookie is not a session, although the same key signed it.
        let started = fake.begin("/dashboard");
        let flow_value = started.cookie.split_once('=').unwrap().1;
        assert_eq!(fake.signin.user(&as_cookie(flow_value)), None);

        // A session from another tenant (the tenant setting changed).
        let foreign = SignedInUser {
            tid: OTHER_TENANT.to_owned(),
            ..user.clone()
        };
        let foreign = session_cookie_for(&fake.signin, &foreign, now(), now() + 3600);
        assert_eq!(fake.signin.user(&as_cookie(&foreign)), None);

        for junk in ["", "x", "a.b.c", "\"\""] {
            assert_eq!(fake.signin.user(&as_cookie(junk)), None, "{junk:?}");
        }
    }

    #[tokio::test]
    async fn expired_session_is_ignored() {
        let fake = Fake::start().await;
        let user = SignedInUser {
            name: "Fiona".to_owned(),
            upn: Some("fiona@contoso.example".to_owned()),
            oid: "oid-1".to_owned(),
            tid: TENANT.to_owned(),
        };
        let expired = session_cookie_for(&fake.signin, &user, now() - 9 * 3600, now() - 1);
        let headers = cookie_headers(&format!("{SESSION_COOKIE}={expired}"));
        assert_eq!(fake.signin.user(&headers), None);
    }

    #[tokio::test]
    async fn sign_out_clears_the_session() {
        let fake = Fake::start().await;
        let response = fake.signin.sign_out();
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(location(&response), "/");
        let line = set_cookie_line(&response, SESSION_COOKIE).unwrap();
        assert!(line.starts_with(&format!("{SESSION_COOKIE}=;")));
        assert!(line.contains("Max-Age=0") && line.contains("Path=/"));
    }

    #[tokio::test]
    async fn token_endpoint_failures() {
        let fake = Fake::start().await;
        let started = fake.begin("/dashboard");
        fake.server.reset().await;
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({
                "error": "invalid_grant",
                "error_description": "AADSTS54005: OAuth2 Authorization code was already redeemed.",
            })))
            .mount(&fake.server)
            .await;
        let response = fake.finish(&started, started.state()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body = body_text(response).await;
        assert!(!body.contains("AADSTS"));

        // A token response without an id_token (scope openid dropped somewhere) is not a sign-in.
        let started = fake.begin("/dashboard");
        fake.server.reset().await;
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "token_type": "Bearer", "expires_in": 3599, "access_token": "a",
            })))
            .mount(&fake.server)
            .await;
        let response = fake.finish(&started, started.state()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

        // Entra down.
        let started = fake.begin("/dashboard");
        fake.server.reset().await;
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .respond_with(ResponseTemplate::new(503).set_body_string("busy"))
            .mount(&fake.server)
            .await;
        let response = fake.finish(&started, started.state()).await;
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    }

    #[tokio::test]
    async fn idp_error_is_refused_without_echo() {
        let fake = Fake::start().await;
        let started = fake.begin("/dashboard");
        let query = HashMap::from([
            ("error".to_owned(), "access_denied".to_owned()),
            (
                "error_description".to_owned(),
                "<script>alert(1)</script>".to_owned(),
            ),
            ("state".to_owned(), started.state().to_owned()),
        ]);
        let response = fake
            .signin
            .callback(&query, &cookie_headers(&started.cookie))
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body = body_text(response).await;
        assert!(!body.contains("script") && !body.contains("access_denied"));
    }

    #[tokio::test]
    async fn keys_unavailable_is_503_and_recovers() {
        let fake = Fake::start().await;
        let started = fake.begin("/dashboard");
        let token = sign(KEY1_PEM, "k1", &id_claims(started.nonce()));
        fake.server.reset().await;
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "token_type": "Bearer", "expires_in": 3599, "access_token": "a", "id_token": token,
            })))
            .mount(&fake.server)
            .await;
        Mock::given(method("GET"))
            .and(path(KEYS_PATH))
            .respond_with(ResponseTemplate::new(500))
            .mount(&fake.server)
            .await;
        let response = fake.finish(&started, started.state()).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);

        // The failure is not cached.
        let response = fake.sign_in_with("/dashboard", KEY1_PEM, |_| {}).await;
        assert_eq!(response.status(), StatusCode::FOUND);
    }

    #[tokio::test]
    async fn keys_are_cached_between_sign_ins() {
        let fake = Fake::start().await;
        let first = fake.sign_in_with("/", KEY1_PEM, |_| {}).await;
        assert_eq!(first.status(), StatusCode::FOUND);
        // token_endpoint_returns resets the server's request log; the cache survives.
        let second = fake.sign_in_with("/", KEY1_PEM, |_| {}).await;
        assert_eq!(second.status(), StatusCode::FOUND);
        let key_fetches = fake
            .server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == KEYS_PATH)
            .count();
        assert_eq!(key_fetches, 0);
    }

    #[tokio::test]
    async fn misconfiguration_fails_closed() {
        let server = MockServer::start().await;
        let mut short_key = settings(&server);
        short_key.session_key = SecretString::from("short");
        let signin = SignIn::new(http(), short_key);
        assert_eq!(
            signin.start("/").status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(signin.user(&cookie_headers("a=b")), None);

        for edit in [
            |s: &mut SignInSettings| s.token_url = "http://login.example.com/t".to_owned(),
            |s: &mut SignInSettings| s.authorize_url = "not a url".to_owned(),
            |s: &mut SignInSettings| s.jwks_url = "ftp://127.0.0.1/keys".to_owned(),
            |s: &mut SignInSettings| s.client_id = String::new(),
        ] {
            let mut bad = settings(&server);
            edit(&mut bad);
            let signin = SignIn::new(http(), bad);
            assert_eq!(
                signin.start("/").status(),
                StatusCode::INTERNAL_SERVER_ERROR
            );
            let response = signin.callback(&HashMap::new(), &HeaderMap::new()).await;
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        }
    }

    #[test]
    fn debug_and_settings_do_not_print_secrets() {
        let settings = SignInSettings {
            client_id: CLIENT_ID.to_owned(),
            client_secret: SecretString::from(SECRET),
            tenant_id: TENANT.to_owned(),
            authorize_url: AUTHORIZE_URL.to_owned(),
            token_url: "https://login.microsoftonline.com/t/oauth2/v2.0/token".to_owned(),
            jwks_url: "https://login.microsoftonline.com/t/discovery/v2.0/keys".to_owned(),
            issuer: issuer(TENANT),
            redirect_url: REDIRECT_URL.to_owned(),
            session_key: SecretString::from(SESSION_KEY),
            session_hours: 8,
        };
        let printed = format!("{settings:?} {:?}", SignIn::new(http(), settings.clone()));
        assert!(!printed.contains(SECRET));
        assert!(!printed.contains(SESSION_KEY));
    }

    #[test]
    fn callback_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let signin = SignIn::new(
            http(),
            SignInSettings {
                client_id: CLIENT_ID.to_owned(),
                client_secret: SecretString::from(SECRET),
                tenant_id: TENANT.to_owned(),
                authorize_url: AUTHORIZE_URL.to_owned(),
                token_url: "https://login.example.test/token".to_owned(),
                jwks_url: "https://login.example.test/keys".to_owned(),
                issuer: issuer(TENANT),
                redirect_url: REDIRECT_URL.to_owned(),
                session_key: SecretString::from(SESSION_KEY),
                session_hours: 8,
            },
        );
        let query = HashMap::new();
        let headers = HeaderMap::new();
        assert_send(&signin.callback(&query, &headers));
    }
}
