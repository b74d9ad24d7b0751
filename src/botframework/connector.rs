//! Bot Connector REST client (botframework.md §5).
//!
//! One attempt per call, returning an error that says whether repeating it is safe: retries are scheduled by
//! the durable job queue with [`crate::botframework::retry`], so they survive restarts.

use std::time::{Duration, Instant, SystemTime};

use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::botframework::retry::parse_retry_after;
use crate::botframework::token::{TokenError, TokenProvider};

/// What JavaScript's `encodeURIComponent` leaves alone; the SDKs build Connector paths with it.
const ID_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Connector answers are a few KB; the cap keeps a misbehaving host from filling memory.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How much of an unexpected body is kept in an error (for logs and the dead-letter view).
const MAX_RAW_CHARS: usize = 2048;
const MAX_MESSAGE_CHARS: usize = 512;

const CORRELATION_HEADER: &str = "x-correlating-operationid";
const METRIC_REQUESTS: &str = "fieldbot_connector_requests_total";
const METRIC_DURATION: &str = "fieldbot_connector_request_duration_seconds";

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
pub struct ResourceResponse {
    #[serde(default)]
    pub id: String,
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConversationResourceResponse {
    pub id: String,
    #[serde(default)]
    pub activity_id: Option<String>,
    #[serde(default)]
    pub service_url: Option<String>,
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(rename_all = "camelCase", from = "RawTeamsChannelAccount")]
pub struct TeamsChannelAccount {
    pub id: String,
    pub name: Option<String>,
    /// Read from `aadObjectId`, or from `objectId` as the member APIs name it.
    pub aad_object_id: Option<String>,
    pub email: Option<String>,
    pub user_principal_name: Option<String>,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub tenant_id: Option<String>,
    pub user_role: Option<String>,
}

/// Both names can appear in one answer; a serde `alias` would reject that as a duplicate field.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTeamsChannelAccount {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    aad_object_id: Option<String>,
    #[serde(default)]
    object_id: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    user_principal_name: Option<String>,
    #[serde(default)]
    given_name: Option<String>,
    #[serde(default)]
    surname: Option<String>,
    #[serde(default)]
    tenant_id: Option<String>,
    #[serde(default)]
    user_role: Option<String>,
}

impl From<RawTeamsChannelAccount> for TeamsChannelAccount {
    fn from(raw: RawTeamsChannelAccount) -> Self {
        Self {
            id: raw.id,
            name: raw.name,
            aad_object_id: raw.aad_object_id.or(raw.object_id),
            email: raw.email,
            user_principal_name: raw.user_principal_name,
            given_name: raw.given_name,
            surname: raw.surname,
            tenant_id: raw.tenant_id,
            user_role: raw.user_role,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectorError {
    #[error("connector throttled the request (retry after {retry_after:?})")]
    Throttled { retry_after: Option<Duration> },
    #[error("connector answered HTTP {status} (transient; retry after {retry_after:?})")]
    Transient {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// The stored conversation reference is dead (bot removed, chat blocked or deleted, activity gone).
    #[error("bot cannot reach the conversation: HTTP {status} {code}")]
    NotInConversation { status: u16, code: String },
    #[error("connector rejected the request: HTTP {status} {code}: {message}")]
    Permanent {
        status: u16,
        code: String,
        message: String,
    },
    /// The request may have reached the Connector, but no answer came back.
    #[error("no response from the connector (request may have been applied): {0}")]
    Unconfirmed(String),
    /// Nothing reached the Connector.
    #[error("request not sent: {0}")]
    NotSent(String),
    /// A success status with a body that is not the expected JSON: the operation did happen.
    #[error("undecodable connector response: {raw}")]
    Decode { raw: String },
    #[error(transparent)]
    Token(TokenError),
    #[error("invalid serviceUrl: {0}")]
    InvalidServiceUrl(String),
    /// An empty id, or `.`/`..`, which URL parsing would resolve as a path step rather than an id.
    #[error("invalid id: {0}")]
    InvalidId(String),
}

impl ConnectorError {
    /// Whether repeating the same request is safe and useful. `idempotent` is true for PUT/DELETE/GET: an
    /// unconfirmed POST may already have posted the message, so the caller must record and reconcile instead.
    pub fn is_retryable(&self, idempotent: bool) -> bool {
        match self {
            ConnectorError::Throttled { .. }
            | ConnectorError::Transient { .. }
            | ConnectorError::NotSent(_) => true,
            ConnectorError::Unconfirmed(_) => idempotent,
            // Nothing was sent to the Connector, so only the token endpoint's health matters.
            ConnectorError::Token(e) => e.is_transient(),
            ConnectorError::NotInConversation { .. }
            | ConnectorError::Permanent { .. }
            | ConnectorError::Decode { .. }
            | ConnectorError::InvalidServiceUrl(_)
            | ConnectorError::InvalidId(_) => false,
        }
    }

    /// The server's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ConnectorError::Throttled { retry_after }
            | ConnectorError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Which call this is, for metrics, logs and the 404 rule.
#[derive(Clone, Copy)]
struct Op {
    name: &'static str,
    method: &'static Method,
    /// Low-cardinality path for logs; the real path carries ids.
    template: &'static str,
    /// Under `v3/conversations/{id}/…`: a 404 there means the stored conversation reference is dead.
    on_conversation: bool,
}

const SEND: Op = Op {
    name: "send_to_conversation",
    method: &Method::POST,
    template: "/v3/conversations/{conversationId}/activities",
    on_conversation: true,
};
const REPLY: Op = Op {
    name: "reply_to_activity",
    method: &Method::POST,
    template: "/v3/conversations/{conversationId}/activities/{activityId}",
    on_conversation: true,
};
const UPDATE: Op = Op {
    name: "update_activity",
    method: &Method::PUT,
    template: "/v3/conversations/{conversationId}/activities/{activityId}",
    on_conversation: true,
};
const DELETE: Op = Op {
    name: "delete_activity",
    method: &Method::DELETE,
    template: "/v3/conversations/{conversationId}/activities/{activityId}",
    on_conversation: true,
};
const CREATE_CHANNEL_THREAD: Op = Op {
    name: "create_channel_thread",
    method: &Method::POST,
    template: "/v3/conversations",
    on_conversation: false,
};
const CREATE_PERSONAL: Op = Op {
    name: "create_personal_conversation",
    method: &Method::POST,
    template: "/v3/conversations",
    on_conversation: false,
};
const GET_MEMBER: Op = Op {
    name: "get_member",
    method: &Method::GET,
    template: "/v3/conversations/{conversationId}/members/{memberId}",
    on_conversation: true,
};

#[derive(Clone)]
pub struct ConnectorClient {
    http: reqwest::Client,
    token: Option<TokenProvider>,
    timeout: Duration,
}

impl std::fmt::Debug for ConnectorClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorClient")
            .field("authenticated", &self.token.is_some())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ConnectorClient {
    /// `token`: `None` in local mode (no Authorization header), `Some` in production (Bearer on every call).
    /// `timeout` bounds each request, body included.
    pub fn new(http: reqwest::Client, token: Option<TokenProvider>, timeout: Duration) -> Self {
        Self {
            http,
            token,
            timeout,
        }
    }

    /// `POST v3/conversations/{id}/activities`.
    #[tracing::instrument(skip_all, fields(op = SEND.name, conversation_id = %conversation_id))]
    pub async fn send_to_conversation<A: Serialize + ?Sized>(
        &self,
        service_url: &str,
        conversation_id: &str,
        activity: &A,
    ) -> Result<ResourceResponse, ConnectorError> {
        let url = format!(
            "{}/v3/conversations/{}/activities",
            base_url(service_url)?,
            encode_id(conversation_id)?
        );
        decode(&self.call(SEND, url, Some(json_body(activity)?)).await?)
    }

    /// `POST v3/conversations/{id}/activities/{activityId}`.
    #[tracing::instrument(skip_all, fields(op = REPLY.name, conversation_id = %conversation_id, activity_id = %activity_id))]
    pub async fn reply_to_activity<A: Serialize + ?Sized>(
        &self,
        service_url: &str,
        conversation_id: &str,
        activity_id: &str,
        activity: &A,
    ) -> Result<ResourceResponse, ConnectorError> {
        let url = activity_url(service_url, conversation_id, activity_id)?;
        decode(&self.call(REPLY, url, Some(json_body(activity)?)).await?)
    }

    /// `PUT v3/conversations/{id}/activities/{activityId}`: `activity` replaces the message entirely.
    #[tracing::instrument(skip_all, fields(op = UPDATE.name, conversation_id = %conversation_id, activity_id = %activity_id))]
    pub async fn update_activity<A: Serialize + ?Sized>(
        &self,
        service_url: &str,
        conversation_id: &str,
        activity_id: &str,
        activity: &A,
    ) -> Result<ResourceResponse, ConnectorError> {
        let url = activity_url(service_url, conversation_id, activity_id)?;
        decode(&self.call(UPDATE, url, Some(json_body(activity)?)).await?)
    }

    /// `DELETE v3/conversations/{id}/activities/{activityId}`.
    #[tracing::instrument(skip_all, fields(op = DELETE.name, conversation_id = %conversation_id, activity_id = %activity_id))]
    pub async fn delete_activity(
        &self,
        service_url: &str,
        conversation_id: &str,
        activity_id: &str,
    ) -> Result<(), ConnectorError> {
        let url = activity_url(service_url, conversation_id, activity_id)?;
        self.call(DELETE, url, None).await.map(drop)
    }

    /// Starts a new thread in a channel (`POST v3/conversations`). Keep both the returned `id` (the thread,
    /// for replies) and `activity_id` (the root message, for update/delete).
    #[tracing::instrument(skip_all, fields(op = CREATE_CHANNEL_THREAD.name, channel_id = %channel_id))]
    pub async fn create_channel_thread<A: Serialize + ?Sized>(
        &self,
        service_url: &str,
        channel_id: &str,
        tenant_id: &str,
        activity: &A,
    ) -> Result<ConversationResourceResponse, ConnectorError> {
        let url = format!("{}/v3/conversations", base_url(service_url)?);
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct NewThread<'a, A: ?Sized> {
            is_group: bool,
            channel_data: Value,
            activity: &'a A,
        }
        let body = NewThread {
            is_group: true,
            channel_data: json!({ "channel": { "id": channel_id }, "tenant": { "id": tenant_id } }),
            activity,
        };
        decode(
            &self
                .call(CREATE_CHANNEL_THREAD, url, Some(json_body(&body)?))
                .await?,
        )
    }

    /// Creates (or finds) the 1:1 chat between the bot and a user; persist the returned id.
    #[tracing::instrument(skip_all, fields(op = CREATE_PERSONAL.name))]
    pub async fn create_personal_conversation(
        &self,
        service_url: &str,
        bot_id: &str,
        user_id: &str,
        tenant_id: &str,
    ) -> Result<ConversationResourceResponse, ConnectorError> {
        let url = format!("{}/v3/conversations", base_url(service_url)?);
        let body = json!({
            "isGroup": false,
            "bot": { "id": bot_id },
            "members": [ { "id": user_id } ],
            "tenantId": tenant_id,
            "channelData": { "tenant": { "id": tenant_id } },
        });
        decode(
            &self
                .call(CREATE_PERSONAL, url, Some(json_body(&body)?))
                .await?,
        )
    }

    /// `GET v3/conversations/{id}/members/{member}`; `member_id` may be a `29:` id, a UPN or an AAD object id.
    #[tracing::instrument(skip_all, fields(op = GET_MEMBER.name, conversation_id = %conversation_id))]
    pub async fn get_member(
        &self,
        service_url: &str,
        conversation_id: &str,
        member_id: &str,
    ) -> Result<TeamsChannelAccount, ConnectorError> {
        let url = format!(
            "{}/v3/conversations/{}/members/{}",
            base_url(service_url)?,
            encode_id(conversation_id)?,
            encode_id(member_id)?
        );
        decode(&self.call(GET_MEMBER, url, None).await?)
    }

    /// One attempt; returns the body of a 2xx answer, or the classified failure.
    async fn call(
        &self,
        op: Op,
        url: String,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, ConnectorError> {
        let mut request = self
            .http
            .request(op.method.clone(), url)
            .timeout(self.timeout);
        if let Some(provider) = &self.token {
            let token = match provider.token().await {
                Ok(token) => token,
                Err(e) => {
                    record(op, "token_error", None);
                    tracing::warn!(method = %op.method, path = op.template, error = %e, "no bot token; connector call skipped");
                    return Err(ConnectorError::Token(e));
                }
            };
            let mut value = HeaderValue::try_from(format!("Bearer {}", token.expose_secret()))
                .map_err(|_| {
                    ConnectorError::Token(TokenError::Request(
                        "token contains characters not allowed in a header".to_owned(),
                    ))
                })?;
            // Keeps the value out of reqwest/hyper debug output.
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        if let Some(key) = crate::idempotency::next_call_key(op.name) {
            request = request.header(crate::idempotency::HEADER, key);
        }
        // Every Connector POST creates something and has no server-side idempotency key.
        let unrepeatable = op.method == Method::POST;
        if unrepeatable {
            if crate::idempotency::checking() {
                // An earlier attempt may have posted it, and the Connector cannot look a message up (no GET
                // of an activity): hold it for an operator rather than risk posting it twice.
                record(op, "held", None);
                return Err(ConnectorError::Unconfirmed(format!(
                    "an earlier attempt may have made this {} and the Connector cannot look it up",
                    op.name
                )));
            }
            if let Err(e) = crate::idempotency::before_unrepeatable_send(op.name).await {
                record(op, "not_sent", None);
                return Err(ConnectorError::NotSent(e));
            }
        }
        // After the note above: the body of an unrepeatable call carries the mark the note set up.
        let mut released = None;
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json");
            request = if unrepeatable && !body.is_empty() {
                let (body, was_released) = crate::idempotency::unrepeatable_body(body);
                released = Some(was_released);
                request.body(body)
            } else {
                request.body(body)
            };
        }

        let started = Instant::now();
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                let err = match classify_send_error(&e) {
                    // Its body never went to the connection, or the connection broke while it was being
                    // written: the server did not get the whole request.
                    ConnectorError::Unconfirmed(why)
                        if released.as_ref().is_some_and(|r| r.never_arrived(&e)) =>
                    {
                        ConnectorError::NotSent(why)
                    }
                    err => err,
                };
                let outcome = match &err {
                    ConnectorError::NotSent(_) => "not_sent",
                    ConnectorError::InvalidServiceUrl(_) => "invalid_url",
                    _ if e.is_timeout() => "timeout",
                    _ => "unconfirmed",
                };
                record(op, outcome, Some(started.elapsed()));
                tracing::warn!(method = %op.method, path = op.template, outcome, error = %err, "connector call failed");
                return Err(err);
            }
        };

        let status = response.status();
        if let Some(released) = &released {
            released.answered(status);
        }
        let headers = response.headers().clone();
        let correlation_id = headers
            .get(CORRELATION_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = match read_body(response).await {
            Ok(body) => body,
            // A failed error body still leaves the status to classify by (403 codes aside).
            Err(_) if !status.is_success() => Vec::new(),
            Err(e) => {
                // The Connector answered 2xx, so the operation happened, but its result (the new id) is lost.
                record(op, "body_error", Some(started.elapsed()));
                let err = ConnectorError::Unconfirmed(format!(
                    "reading response body after HTTP {}: {}",
                    status.as_u16(),
                    describe(&e)
                ));
                tracing::warn!(method = %op.method, path = op.template, status = status.as_u16(), %correlation_id, error = %err, "connector call failed");
                return Err(err);
            }
        };
        let elapsed = started.elapsed();
        record(op, &status.as_u16().to_string(), Some(elapsed));

        if status.is_success() {
            tracing::debug!(
                method = %op.method,
                path = op.template,
                status = status.as_u16(),
                %correlation_id,
                elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                "connector call succeeded"
            );
            return Ok(body);
        }

        let err = classify_status(op, status, &headers, &body);
        if status == StatusCode::UNAUTHORIZED
            && let Some(provider) = &self.token
        {
            // Cheap insurance against a token the server no longer accepts; a 401 with a fresh token is
            // a registration/tenant problem and stays permanent.
            provider.invalidate().await;
        }
        match &err {
            ConnectorError::Throttled { .. } | ConnectorError::Transient { .. } => tracing::info!(
                method = %op.method, path = op.template, status = status.as_u16(), %correlation_id,
                retry_after_s = err.retry_after().map(|d| d.as_secs()), "connector asked to retry later"
            ),
            _ => tracing::warn!(
                method = %op.method, path = op.template, status = status.as_u16(), %correlation_id,
                error = %err, "connector call rejected"
            ),
        }
        Err(err)
    }
}

fn record(op: Op, status: &str, elapsed: Option<Duration>) {
    metrics::counter!(METRIC_REQUESTS, "op" => op.name, "status" => status.to_owned()).increment(1);
    if let Some(elapsed) = elapsed {
        metrics::histogram!(METRIC_DURATION, "op" => op.name).record(elapsed.as_secs_f64());
    }
}

/// `service_url` without trailing slashes, after checking it is an absolute http(s) URL that a path can be
/// appended to.
fn base_url(service_url: &str) -> Result<&str, ConnectorError> {
    let invalid = |why: &str| ConnectorError::InvalidServiceUrl(format!("{why}: {service_url:?}"));
    let parsed = url::Url::parse(service_url).map_err(|_| invalid("not an absolute URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("scheme must be http or https"));
    }
    if parsed.host().is_none() {
        return Err(invalid("no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("query or fragment not allowed"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("credentials not allowed"));
    }
    Ok(service_url.trim().trim_end_matches('/'))
}

fn encode_id(id: &str) -> Result<String, ConnectorError> {
    if id.is_empty() || id == "." || id == ".." {
        return Err(ConnectorError::InvalidId(format!("{id:?}")));
    }
    Ok(utf8_percent_encode(id, ID_COMPONENT).to_string())
}

fn activity_url(
    service_url: &str,
    conversation_id: &str,
    activity_id: &str,
) -> Result<String, ConnectorError> {
    Ok(format!(
        "{}/v3/conversations/{}/activities/{}",
        base_url(service_url)?,
        encode_id(conversation_id)?,
        encode_id(activity_id)?
    ))
}

fn classify_send_error(e: &reqwest::Error) -> ConnectorError {
    if e.is_builder() {
        // Only the URL can make the builder fail here (the JSON body is a `Value`, the header pre-validated).
        ConnectorError::InvalidServiceUrl(describe(e))
    } else if e.is_connect() {
        // Connect, DNS and TLS failures all happen before the request is written.
        ConnectorError::NotSent(describe(e))
    } else {
        // Timeouts, resets and protocol errors after the connection was up: the request may have gone out.
        ConnectorError::Unconfirmed(describe(e))
    }
}

/// The error and its causes, without the URL (it adds ids, not insight; the path template is logged).
fn describe(e: &reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connect error".to_owned()
    } else if e.is_body() || e.is_decode() {
        "body error".to_owned()
    } else if e.is_builder() {
        "invalid request".to_owned()
    } else {
        "request error".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_BODY_BYTES.saturating_sub(body.len());
        body.extend(chunk.iter().take(room));
        if body.len() >= MAX_BODY_BYTES {
            break;
        }
    }
    Ok(body)
}

/// The request body, serialised before anything is sent (an activity that is already JSON text is copied
/// as it is).
fn json_body<T: Serialize + ?Sized>(body: &T) -> Result<Vec<u8>, ConnectorError> {
    serde_json::to_vec(body).map_err(|e| {
        ConnectorError::NotSent(format!("the request body could not be serialised: {e}"))
    })
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ConnectorError> {
    // Some hosts answer 200/201 with no body; `ResourceResponse` then decodes with an empty id.
    let json: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(json).map_err(|_| ConnectorError::Decode {
        raw: truncate(&String::from_utf8_lossy(body), MAX_RAW_CHARS),
    })
}

fn classify_status(op: Op, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ConnectorError {
    let code_num = status.as_u16();
    let retry_after = || {
        headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()))
    };
    match code_num {
        429 => {
            return ConnectorError::Throttled {
                retry_after: retry_after(),
            };
        }
        // 408: the server gave up waiting for our request, so nothing was processed.
        408 | 412 | 500 | 502 | 503 | 504 => {
            return ConnectorError::Transient {
                status: code_num,
                retry_after: retry_after(),
            };
        }
        _ => {}
    }
    let (code, message) = error_details(body);
    match code_num {
        403 if matches!(
            code.as_str(),
            "BotNotInConversationRoster" | "ConversationBlockedByUser"
        ) =>
        {
            ConnectorError::NotInConversation {
                status: code_num,
                code,
            }
        }
        404 if op.on_conversation => ConnectorError::NotInConversation {
            status: code_num,
            code,
        },
        // Other server errors (e.g. from a proxy in front of the Connector) are worth another try; 501/505
        // will not change.
        500..=599 if code_num != 501 && code_num != 505 => ConnectorError::Transient {
            status: code_num,
            retry_after: retry_after(),
        },
        _ => ConnectorError::Permanent {
            status: code_num,
            code,
            message,
        },
    }
}

/// `{"error":{"code","message"}}`, tolerating the ASP.NET `{"message"}`/`{"Message"}` shape, an OAuth-style
/// `{"error":"code"}`, and non-JSON bodies (the message is then the start of the raw body).
fn error_details(body: &[u8]) -> (String, String) {
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map(|s| truncate(s, MAX_MESSAGE_CHARS))
    };
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let (code, message) = match &parsed {
        Some(Value::Object(top)) => match top.get("error") {
            Some(Value::Object(inner)) => (text(inner.get("code")), text(inner.get("message"))),
            Some(Value::String(code)) => (
                Some(truncate(code, MAX_MESSAGE_CHARS)),
                text(top.get("error_description").or_else(|| top.get("message"))),
            ),
            _ => (
                text(top.get("code")),
                text(top.get("message").or_else(|| top.get("Message"))),
            ),
        },
        _ => (None, None),
    };
    let message = message
        .unwrap_or_else(|| truncate(String::from_utf8_lossy(body).trim(), MAX_MESSAGE_CHARS));
    (code.unwrap_or_default(), message)
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", s.get(..cut).unwrap_or(s)),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use std::sync::{Arc, Mutex};

    use super::*;
    use secrecy::SecretString;
    use wiremock::matchers::{body_json, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const CONV: &str = "19:abc@thread.tacv2;messageid=123";
    const CONV_ENC: &str = "19%3Aabc%40thread.tacv2%3Bmessageid%3D123";
    const TOKEN_PATH: &str = "/tenant/oauth2/v2.0/token";

    fn client(token: Option<TokenProvider>) -> ConnectorClient {
        ConnectorClient::new(http(), token, Duration::from_secs(5))
    }

    fn http() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    fn provider(server: &MockServer) -> TokenProvider {
        TokenProvider::new(
            http(),
            format!("{}{TOKEN_PATH}", server.uri()),
            "app-id".to_owned(),
            SecretString::from("secret"),
            "https://api.botframework.com/.default".to_owned(),
        )
    }

    async fn mount_token(server: &MockServer, token: &str) {
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "token_type": "Bearer", "expires_in": 3600, "access_token": token
            })))
            .mount(server)
            .await;
    }

    fn activity() -> Value {
        json!({ "type": "message", "text": "hello" })
    }

    /// Replies `status` with `body` to any request and returns what `send_to_conversation` made of it.
    async fn send_error(status: u16, body: ResponseTemplate) -> ConnectorError {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(body)
            .mount(&server)
            .await;
        let err = client(None)
            .send_to_conversation(&server.uri(), CONV, &activity())
            .await
            .unwrap_err();
        assert_eq!(
            server.received_requests().await.unwrap().len(),
            1,
            "status {status}"
        );
        err
    }

    fn error_json(status: u16, code: &str, message: &str) -> ResponseTemplate {
        ResponseTemplate::new(status)
            .set_body_json(json!({ "error": { "code": code, "message": message } }))
    }

    #[test]
    fn ids_are_encoded_like_encode_uri_component() {
        let table = [
            (CONV, CONV_ENC),
            ("a:1Xyz-_.!~*'()", "a%3A1Xyz-_.!~*'()"),
            ("29:1abc/def?x=1#f", "29%3A1abc%2Fdef%3Fx%3D1%23f"),
            ("dana@contoso.com", "dana%40contoso.com"),
            ("sp ace+plus%", "sp%20ace%2Bplus%25"),
            ("é", "%C3%A9"),
        ];
        for (id, expected) in table {
            assert_eq!(encode_id(id).unwrap(), expected);
        }
        for bad in ["", ".", ".."] {
            assert!(
                matches!(encode_id(bad), Err(ConnectorError::InvalidId(_))),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn send_to_conversation_posts_activity() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(format!("/v3/conversations/{CONV_ENC}/activities")))
            .and(body_json(activity()))
            .and(header("content-type", "application/json"))
            .respond_with(
                ResponseTemplate::new(201).set_body_json(json!({ "id": "1732270531000" })),
            )
            .expect(1)
            .mount(&server)
            .await;

        let got = client(None)
            .send_to_conversation(&server.uri(), CONV, &activity())
            .await
            .unwrap();
        assert_eq!(
            got,
            ResourceResponse {
                id: "1732270531000".to_owned()
            }
        );
    }

    /// A job's calls carry its idempotency key (one key per call), so a fake or a proxy log can count each
    /// effect; calls outside a job carry none.
    #[tokio::test]
    async fn calls_made_by_a_job_carry_its_idempotency_key() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "id": "1" })))
            .mount(&server)
            .await;
        let c = client(None);
        crate::idempotency::scope("msteams/19:c/act-1:reply", async {
            c.send_to_conversation(&server.uri(), CONV, &activity())
                .await
                .unwrap();
            c.reply_to_activity(&server.uri(), CONV, "1", &activity())
                .await
                .unwrap();
            c.send_to_conversation(&server.uri(), CONV, &activity())
                .await
                .unwrap();
        })
        .await;
        c.send_to_conversation(&server.uri(), CONV, &activity())
            .await
            .unwrap();
        let keys: Vec<Option<String>> = server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .map(|r| {
                r.headers
                    .get(crate::idempotency::HEADER)
                    .map(|v| v.to_str().unwrap().to_owned())
            })
            .collect();
        assert_eq!(
            keys,
            [
                Some("msteams/19:c/act-1:reply#send_to_conversation".to_owned()),
                Some("msteams/19:c/act-1:reply#reply_to_activity".to_owned()),
                Some("msteams/19:c/act-1:reply#send_to_conversation.2".to_owned()),
                None,
            ]
        );
    }

    #[tokio::test]
    async fn reply_to_activity_posts_to_activity_path() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(format!(
                "/v3/conversations/{CONV_ENC}/activities/1732270530123"
            )))
            .and(body_json(activity()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": "r1" })))
            .expect(1)
            .mount(&server)
            .await;

        let got = client(None)
            .reply_to_activity(&server.uri(), CONV, "1732270530123", &activity())
            .await
            .unwrap();
        assert_eq!(got.id, "r1");
    }

    #[tokio::test]
    async fn update_activity_puts_and_tolerates_empty_body() {
        let server = MockServer::start().await;
        Mock::given(method("PUT"))
            .and(path(format!(
                "/v3/conversations/{CONV_ENC}/activities/1%3A2"
            )))
            .and(body_json(activity()))
            .respond_with(ResponseTemplate::new(200))
            .expect(1)
            .mount(&server)
            .await;

        let got = client(None)
            .update_activity(&server.uri(), CONV, "1:2", &activity())
            .await
            .unwrap();
        assert_eq!(got, ResourceResponse { id: String::new() });
    }

    #[tokio::test]
    async fn delete_activity_sends_delete_without_body() {
        let server = MockServer::start().await;
        Mock::given(method("DELETE"))
            .and(path(format!("/v3/conversations/{CONV_ENC}/activities/42")))
            .respond_with(ResponseTemplate::new(200))
            .expect(1)
            .mount(&server)
            .await;

        client(None)
            .delete_activity(&server.uri(), CONV, "42")
            .await
            .unwrap();
        let requests = server.received_requests().await.unwrap();
        assert!(requests[0].body.is_empty());
    }

    #[tokio::test]
    async fn create_channel_thread_body_and_response() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v3/conversations"))
            .and(body_json(json!({
                "isGroup": true,
                "channelData": { "channel": { "id": "19:c0ffee@thread.tacv2" }, "tenant": { "id": "tenant-1" } },
                "activity": activity(),
            })))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({
                "id": "19:c0ffee@thread.tacv2;messageid=1732271000000",
                "activityId": "1732271000000"
            })))
            .expect(1)
            .mount(&server)
            .await;

        let got = client(None)
            .create_channel_thread(
                &server.uri(),
                "19:c0ffee@thread.tacv2",
                "tenant-1",
                &activity(),
            )
            .await
            .unwrap();
        assert_eq!(
            got,
            ConversationResourceResponse {
                id: "19:c0ffee@thread.tacv2;messageid=1732271000000".to_owned(),
                activity_id: Some("1732271000000".to_owned()),
                service_url: None,
            }
        );
    }

    #[tokio::test]
    async fn create_personal_conversation_body_and_response() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v3/conversations"))
            .and(body_json(json!({
                "isGroup": false,
                "bot": { "id": "28:bot" },
                "members": [ { "id": "29:user" } ],
                "tenantId": "tenant-1",
                "channelData": { "tenant": { "id": "tenant-1" } },
            })))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({
                "id": "a:1Xyz", "serviceUrl": "https://smba.trafficmanager.net/emea/"
            })))
            .expect(1)
            .mount(&server)
            .await;

        let got = client(None)
            .create_personal_conversation(&server.uri(), "28:bot", "29:user", "tenant-1")
            .await
            .unwrap();
        assert_eq!(got.id, "a:1Xyz");
        assert_eq!(got.activity_id, None);
        assert_eq!(
            got.service_url.as_deref(),
            Some("https://smba.trafficmanager.net/emea/")
        );
    }

    #[tokio::test]
    async fn get_member_gets_and_reads_object_id() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(format!(
                "/v3/conversations/{CONV_ENC}/members/dana%40contoso.com"
            )))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": "29:1qXk", "name": "Dana Lee", "objectId": "5f0c6c0e",
                "givenName": "Dana", "surname": "Lee", "email": "dana@contoso.com",
                "userPrincipalName": "dana@contoso.com", "tenantId": "tenant-1", "userRole": "user",
                "somethingNew": 1
            })))
            .expect(1)
            .mount(&server)
            .await;

        let got = client(None)
            .get_member(&server.uri(), CONV, "dana@contoso.com")
            .await
            .unwrap();
        assert_eq!(
            got,
            TeamsChannelAccount {
                id: "29:1qXk".to_owned(),
                name: Some("Dana Lee".to_owned()),
                aad_object_id: Some("5f0c6c0e".to_owned()),
                email: Some("dana@contoso.com".to_owned()),
                user_principal_name: Some("dana@contoso.com".to_owned()),
                given_name: Some("Dana".to_owned()),
                surname: Some("Lee".to_owned()),
                tenant_id: Some("tenant-1".to_owned()),
                user_role: Some("user".to_owned()),
            }
        );
    }

    #[test]
    fn member_with_both_object_id_names_and_minimal_member() {
        let both: TeamsChannelAccount = serde_json::from_value(
            json!({ "id": "29:x", "aadObjectId": "aad", "objectId": "obj" }),
        )
        .unwrap();
        assert_eq!(both.aad_object_id.as_deref(), Some("aad"));
        let minimal: TeamsChannelAccount = serde_json::from_value(json!({ "id": "29:y" })).unwrap();
        assert_eq!(minimal.aad_object_id, None);
        assert_eq!(minimal.name, None);
        // Serializes with the canonical name.
        assert_eq!(serde_json::to_value(&both).unwrap()["aadObjectId"], "aad");
    }

    #[tokio::test]
    async fn bearer_token_sent_with_provider() {
        let server = MockServer::start().await;
        mount_token(&server, "tok-123").await;
        Mock::given(method("POST"))
            .and(path(format!("/v3/conversations/{CONV_ENC}/activities")))
            .and(header("authorization", "Bearer tok-123"))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "id": "1" })))
            .expect(2)
            .mount(&server)
            .await;

        let c = client(Some(provider(&server)));
        c.send_to_conversation(&server.uri(), CONV, &activity())
            .await
            .unwrap();
        c.send_to_conversation(&server.uri(), CONV, &activity())
            .await
            .unwrap();
        let token_calls = server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == TOKEN_PATH)
            .count();
        assert_eq!(token_calls, 1, "token is cached across calls");
    }

    #[tokio::test]
    async fn no_authorization_header_without_provider() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "id": "1" })))
            .mount(&server)
            .await;

        client(None)
            .send_to_conversation(&server.uri(), CONV, &activity())
            .await
            .unwrap();
        let requests = server.received_requests().await.unwrap();
        assert_eq!(requests.len(), 1);
        assert!(requests[0].headers.get("authorization").is_none());
    }

    #[tokio::test]
    async fn token_failure_sends_nothing_to_the_connector() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .respond_with(
                ResponseTemplate::new(400).set_body_json(json!({ "error": "invalid_client" })),
            )
            .mount(&server)
            .await;

        let err = client(Some(provider(&server)))
            .send_to_conversation(&server.uri(), CONV, &activity())
            .await
            .unwrap_err();
        assert!(
            matches!(
                &err,
                ConnectorError::Token(TokenError::Rejected { status: 400, .. })
            ),
            "{err:?}"
        );
        assert!(!err.is_retryable(true));
        let requests = server.received_requests().await.unwrap();
        assert!(requests.iter().all(|r| r.url.path() == TOKEN_PATH));
    }

    #[tokio::test]
    async fn unauthorized_is_permanent_and_drops_the_cached_token() {
        let server = MockServer::start().await;
        mount_token(&server, "tok").await;
        Mock::given(method("POST"))
            .and(path(format!("/v3/conversations/{CONV_ENC}/activities")))
            .respond_with(ResponseTemplate::new(401).set_body_json(json!({
                "message": "Authorization has been denied for this request."
            })))
            .mount(&server)
            .await;

        let c = client(Some(provider(&server)));
        for _ in 0..2 {
            let err = c
                .send_to_conversation(&server.uri(), CONV, &activity())
                .await
                .unwrap_err();
            match &err {
                ConnectorError::Permanent {
                    status, message, ..
                } => {
                    assert_eq!(*status, 401);
                    assert_eq!(message, "Authorization has been denied for this request.");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let token_calls = server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == TOKEN_PATH)
            .count();
        assert_eq!(token_calls, 2);
    }

    #[tokio::test]
    async fn throttled_with_retry_after_seconds() {
        let err = send_error(
            429,
            ResponseTemplate::new(429).insert_header("Retry-After", "7"),
        )
        .await;
        assert!(
            matches!(err, ConnectorError::Throttled { retry_after: Some(d) } if d == Duration::from_secs(7)),
            "{err:?}"
        );
        assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
        assert!(err.is_retryable(false));
    }

    #[tokio::test]
    async fn throttled_with_http_date_and_without_header() {
        let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let err = send_error(
            429,
            ResponseTemplate::new(429).insert_header("Retry-After", at.as_str()),
        )
        .await;
        let d = err.retry_after().unwrap();
        assert!(
            d > Duration::from_secs(110) && d <= Duration::from_secs(120),
            "{d:?}"
        );

        let err = send_error(429, error_json(429, "Throttled", "slow down")).await;
        assert!(
            matches!(err, ConnectorError::Throttled { retry_after: None }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn transient_statuses() {
        for status in [412, 500, 502, 503, 504, 408, 507] {
            let err = send_error(status, error_json(status, "ServiceError", "oops")).await;
            assert!(
                matches!(err, ConnectorError::Transient { status: s, retry_after: None } if s == status),
                "{status}: {err:?}"
            );
            assert!(err.is_retryable(false));
        }
        let err = send_error(
            503,
            ResponseTemplate::new(503).insert_header("Retry-After", "3"),
        )
        .await;
        assert!(
            matches!(err, ConnectorError::Transient { status: 503, retry_after: Some(d) } if d == Duration::from_secs(3)),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn forbidden_roster_codes_mean_not_in_conversation() {
        for code in ["BotNotInConversationRoster", "ConversationBlockedByUser"] {
            let err = send_error(403, error_json(403, code, "nope")).await;
            assert!(
                matches!(&err, ConnectorError::NotInConversation { status: 403, code: c } if c == code),
                "{err:?}"
            );
            assert!(!err.is_retryable(true));
        }
        let err = send_error(403, error_json(403, "BotDisabledByAdmin", "admin said no")).await;
        assert!(
            matches!(&err, ConnectorError::Permanent { status: 403, code, .. } if code == "BotDisabledByAdmin"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn not_found_on_conversation_route_means_not_in_conversation() {
        let err = send_error(404, ResponseTemplate::new(404)).await;
        assert!(
            matches!(&err, ConnectorError::NotInConversation { status: 404, code } if code.is_empty()),
            "{err:?}"
        );
        let err = send_error(404, error_json(404, "ConversationNotFound", "gone")).await;
        assert!(
            matches!(&err, ConnectorError::NotInConversation { status: 404, code } if code == "ConversationNotFound"),
            "{err:?}"
        );

        // Creating a conversation is not a stored reference: its 404 is just permanent.
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(404))
            .mount(&server)
            .await;
        let err = client(None)
            .create_personal_conversation(&server.uri(), "28:b", "29:u", "t")
            .await
            .unwrap_err();
        assert!(
            matches!(err, ConnectorError::Permanent { status: 404, .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn bad_request_is_permanent_with_code_and_message() {
        let err = send_error(400, error_json(400, "BadArgument", "Unknown activity type")).await;
        match &err {
            ConnectorError::Permanent {
                status,
                code,
                message,
            } => {
                assert_eq!(*status, 400);
                assert_eq!(code, "BadArgument");
                assert_eq!(message, "Unknown activity type");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(!err.is_retryable(true));
        assert_eq!(err.retry_after(), None);
    }

    #[tokio::test]
    async fn garbage_error_bodies_do_not_panic() {
        let html = format!("<html><body>{}</body></html>", "x".repeat(5000));
        let err = send_error(
            400,
            ResponseTemplate::new(400).set_body_raw(html.as_bytes(), "text/html"),
        )
        .await;
        match &err {
            ConnectorError::Permanent { code, message, .. } => {
                assert!(code.is_empty());
                assert!(message.starts_with("<html>"));
                assert!(message.chars().count() <= MAX_MESSAGE_CHARS + 1);
            }
            other => panic!("unexpected {other:?}"),
        }

        let err = send_error(
            400,
            ResponseTemplate::new(400).set_body_bytes(vec![0xff, 0xfe, 0x00, b'{']),
        )
        .await;
        assert!(
            matches!(err, ConnectorError::Permanent { status: 400, .. }),
            "{err:?}"
        );

        let err = send_error(
            400,
            ResponseTemplate::new(400).set_body_json(json!({ "error": 42 })),
        )
        .await;
        assert!(
            matches!(err, ConnectorError::Permanent { status: 400, .. }),
            "{err:?}"
        );

        let err = send_error(
            502,
            ResponseTemplate::new(502).set_body_raw("<html>Bad Gateway</html>", "text/html"),
        )
        .await;
        assert!(
            matches!(err, ConnectorError::Transient { status: 502, .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn undecodable_success_body_is_decode_error_and_not_retried() {
        let big = format!("<html>{}</html>", "é".repeat(10_000));
        let err = send_error(
            200,
            ResponseTemplate::new(200).set_body_raw(big.as_bytes(), "text/html"),
        )
        .await;
        match &err {
            ConnectorError::Decode { raw } => {
                assert!(raw.starts_with("<html>"));
                assert!(raw.chars().count() <= MAX_RAW_CHARS + 1);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(!err.is_retryable(true));
    }

    #[tokio::test]
    async fn slow_server_is_unconfirmed() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(201)
                    .set_body_json(json!({ "id": "late" }))
                    .set_delay(Duration::from_secs(3)),
            )
            .mount(&server)
            .await;

        let c = ConnectorClient::new(http(), None, Duration::from_millis(200));
        let err = c
            .send_to_conversation(&server.uri(), CONV, &activity())
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectorError::Unconfirmed(_)), "{err:?}");
        assert!(
            !err.is_retryable(false),
            "a POST that may have landed must not be re-sent blindly"
        );
        assert!(err.is_retryable(true));
    }

    /// After an attempt that may have posted, a POST is refused without a request (the Connector has no way
    /// to look a message up), while a PUT, which repeats safely, still goes.
    #[tokio::test]
    async fn a_post_an_earlier_attempt_may_have_made_is_held_not_sent() {
        let server = MockServer::start().await;
        Mock::given(method("PUT"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": "1" })))
            .expect(1)
            .mount(&server)
            .await;
        let c = ConnectorClient::new(http(), None, Duration::from_secs(5));
        let (results, sends) = crate::idempotency::scope_checking("k", None, true, async {
            (
                c.send_to_conversation(&server.uri(), CONV, &activity())
                    .await,
                c.update_activity(&server.uri(), CONV, "1", &activity())
                    .await,
            )
        })
        .await;
        let err = results.0.unwrap_err();
        assert!(matches!(err, ConnectorError::Unconfirmed(_)), "{err:?}");
        assert!(!err.is_retryable(false));
        results.1.unwrap();
        assert!(sends.unsure && !sends.started, "the POST was not started");
        assert_eq!(
            server.received_requests().await.unwrap().len(),
            1,
            "the PUT only"
        );
    }

    /// Runs `call` as a job's attempt whose note handed out `mark` for its wire log.
    async fn with_wire_mark<F: std::future::Future>(
        mark: crate::idempotency::WireMark,
        call: F,
    ) -> F::Output {
        let hook: crate::idempotency::SendHook = std::sync::Arc::new(move |_| {
            let mark = mark.clone();
            Box::pin(async move { Ok(Some(mark)) })
        });
        crate::idempotency::scope_with_hook("k", Some(hook), call).await
    }

    /// A job's POST whose wire mark cannot be written (a full disk) does not leave: its body is never
    /// released, and the error says it was not sent, so the job is simply retried.
    #[tokio::test]
    async fn a_post_whose_wire_mark_fails_is_not_sent() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "id": "1" })))
            .expect(0)
            .mount(&server)
            .await;
        let c = ConnectorClient::new(http(), None, Duration::from_secs(5));
        let result = with_wire_mark(
            std::sync::Arc::new(|_| Err(std::io::Error::other("disk full"))),
            c.send_to_conversation(&server.uri(), CONV, &activity()),
        )
        .await;
        let err = result.unwrap_err();
        assert!(matches!(err, ConnectorError::NotSent(_)), "{err:?}");
        assert!(err.is_retryable(false));
    }

    /// A server that accepts one connection and resets it when told to.
    fn resetting_server() -> (String, std::sync::mpsc::Sender<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (reset, now) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                listener.set_nonblocking(true).unwrap();
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                if let Ok((stream, _)) = listener.accept().await {
                    let _ = now.recv();
                    stream.set_zero_linger().unwrap();
                }
            });
        });
        (format!("http://{addr}"), reset)
    }

    /// A POST whose connection breaks while it is being written never reached the server whole: it is
    /// not sent (retried freely), and the wire log takes back the attempt's mark at once.
    #[tokio::test]
    async fn a_post_cut_off_while_it_is_written_is_not_sent() {
        let (url, reset) = resetting_server();
        let reset = std::sync::Mutex::new(reset);
        let marks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mark: crate::idempotency::WireMark = {
            let marks = marks.clone();
            std::sync::Arc::new(move |event| {
                if event == crate::idempotency::WireEvent::Leaving {
                    // The body is being handed over: the server resets the connection now, before the
                    // request is written.
                    let _ = reset.lock().unwrap().send(());
                    std::thread::sleep(Duration::from_millis(200));
                }
                marks.lock().unwrap().push(event);
                Ok(())
            })
        };
        let result = with_wire_mark(
            mark,
            client(None).send_to_conversation(&url, CONV, &activity()),
        )
        .await;
        let err = result.unwrap_err();
        assert!(matches!(err, ConnectorError::NotSent(_)), "{err:?}");
        use crate::idempotency::WireEvent::{Leaving, Refused};
        assert_eq!(*marks.lock().unwrap(), [Leaving, Refused]);
    }

    /// A server that sends `head` plus a short body, then hangs up before the promised 100 bytes.
    fn truncating_server(head: &'static str) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                let mut buf = [0u8; 8192];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(b"Content-Length: 100\r\n\r\n{\"id\"");
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn body_cut_off_after_success_is_unconfirmed() {
        let url = truncating_server("HTTP/1.1 201 Created\r\n");
        let err = client(None)
            .send_to_conversation(&url, CONV, &activity())
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectorError::Unconfirmed(_)), "{err:?}");
        assert!(!err.is_retryable(false));
    }

    #[tokio::test]
    async fn body_cut_off_after_error_status_keeps_the_status() {
        let url = truncating_server("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 2\r\n");
        let err = client(None)
            .send_to_conversation(&url, CONV, &activity())
            .await
            .unwrap_err();
        assert_eq!(err.retry_after(), Some(Duration::from_secs(2)), "{err:?}");
    }

    #[tokio::test]
    async fn connection_refused_is_not_sent() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let err = client(None)
            .send_to_conversation(&format!("http://127.0.0.1:{port}/"), CONV, &activity())
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectorError::NotSent(_)), "{err:?}");
        assert!(err.is_retryable(false));
    }

    #[tokio::test]
    async fn service_url_with_and_without_trailing_slash_and_with_prefix() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(format!("/v3/conversations/{CONV_ENC}/activities")))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "id": "1" })))
            .expect(3)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(format!(
                "/emea/v3/conversations/{CONV_ENC}/activities"
            )))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "id": "2" })))
            .expect(2)
            .mount(&server)
            .await;

        let c = client(None);
        let base = server.uri();
        for url in [base.clone(), format!("{base}/"), format!("{base}//")] {
            assert_eq!(
                c.send_to_conversation(&url, CONV, &activity())
                    .await
                    .unwrap()
                    .id,
                "1",
                "{url}"
            );
        }
        for url in [format!("{base}/emea"), format!("{base}/emea/")] {
            assert_eq!(
                c.send_to_conversation(&url, CONV, &activity())
                    .await
                    .unwrap()
                    .id,
                "2",
                "{url}"
            );
        }
    }

    #[tokio::test]
    async fn invalid_service_urls_and_ids_send_nothing() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(201))
            .expect(0)
            .mount(&server)
            .await;

        let c = client(None);
        let base = server.uri();
        for url in [
            String::new(),
            "smba.trafficmanager.net/emea/".to_owned(),
            "ftp://smba.trafficmanager.net/".to_owned(),
            "javascript:alert(1)".to_owned(),
            format!("{base}/?x=1"),
            format!("{base}/#frag"),
            base.replace("http://", "http://user:pw@"),
        ] {
            let err = c
                .send_to_conversation(&url, CONV, &activity())
                .await
                .unwrap_err();
            assert!(
                matches!(err, ConnectorError::InvalidServiceUrl(_)),
                "{url}: {err:?}"
            );
            assert!(!err.is_retryable(true));
        }
        for id in ["", ".", ".."] {
            let err = c
                .send_to_conversation(&base, id, &activity())
                .await
                .unwrap_err();
            assert!(
                matches!(err, ConnectorError::InvalidId(_)),
                "{id:?}: {err:?}"
            );
            let err = c.delete_activity(&base, CONV, id).await.unwrap_err();
            assert!(
                matches!(err, ConnectorError::InvalidId(_)),
                "{id:?}: {err:?}"
            );
        }
    }

    #[test]
    fn retryability_table() {
        let s = Duration::from_secs;
        let table: Vec<(ConnectorError, bool, bool)> = vec![
            (ConnectorError::Throttled { retry_after: None }, true, true),
            (
                ConnectorError::Transient {
                    status: 503,
                    retry_after: Some(s(1)),
                },
                true,
                true,
            ),
            (ConnectorError::NotSent("x".into()), true, true),
            (ConnectorError::Unconfirmed("x".into()), false, true),
            (
                ConnectorError::NotInConversation {
                    status: 404,
                    code: String::new(),
                },
                false,
                false,
            ),
            (
                ConnectorError::Permanent {
                    status: 400,
                    code: "BadArgument".into(),
                    message: String::new(),
                },
                false,
                false,
            ),
            (ConnectorError::Decode { raw: String::new() }, false, false),
            (
                ConnectorError::Token(TokenError::Request("down".into())),
                true,
                true,
            ),
            (
                ConnectorError::Token(TokenError::Rejected {
                    status: 503,
                    error: "http_503".into(),
                }),
                true,
                true,
            ),
            (
                ConnectorError::Token(TokenError::Rejected {
                    status: 401,
                    error: "invalid_client".into(),
                }),
                false,
                false,
            ),
            (
                ConnectorError::Token(TokenError::Config("x".into())),
                false,
                false,
            ),
            (ConnectorError::InvalidServiceUrl("x".into()), false, false),
            (ConnectorError::InvalidId("x".into()), false, false),
        ];
        for (err, post, put) in table {
            assert_eq!(err.is_retryable(false), post, "{err:?} non-idempotent");
            assert_eq!(err.is_retryable(true), put, "{err:?} idempotent");
        }
    }

    /// Records which metric keys were registered, with their labels.
    #[derive(Default)]
    struct KeyRecorder(Arc<Mutex<Vec<String>>>);

    impl KeyRecorder {
        fn push(&self, key: &metrics::Key) {
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            self.0
                .lock()
                .unwrap()
                .push(format!("{}{{{}}}", key.name(), labels.join(",")));
        }
    }

    impl metrics::Recorder for KeyRecorder {
        fn describe_counter(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn describe_gauge(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn describe_histogram(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn register_counter(
            &self,
            key: &metrics::Key,
            _: &metrics::Metadata<'_>,
        ) -> metrics::Counter {
            self.push(key);
            metrics::Counter::noop()
        }
        fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
            self.push(key);
            metrics::Gauge::noop()
        }
        fn register_histogram(
            &self,
            key: &metrics::Key,
            _: &metrics::Metadata<'_>,
        ) -> metrics::Histogram {
            self.push(key);
            metrics::Histogram::noop()
        }
    }

    // Current-thread runtime: the thread-local recorder sees every poll.
    #[tokio::test(flavor = "current_thread")]
    async fn metrics_are_recorded_per_op_and_status() {
        let server = MockServer::start().await;
        Mock::given(method("DELETE"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&server)
            .await;
        Mock::given(method("PUT"))
            .respond_with(ResponseTemplate::new(429))
            .mount(&server)
            .await;

        let recorder = KeyRecorder::default();
        let seen = Arc::clone(&recorder.0);
        {
            let _guard = metrics::set_default_local_recorder(&recorder);
            let c = client(None);
            c.delete_activity(&server.uri(), CONV, "1").await.unwrap();
            c.update_activity(&server.uri(), CONV, "1", &activity())
                .await
                .unwrap_err();
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                "fieldbot_connector_requests_total{op=delete_activity,status=200}",
                "fieldbot_connector_request_duration_seconds{op=delete_activity}",
                "fieldbot_connector_requests_total{op=update_activity,status=429}",
                "fieldbot_connector_request_duration_seconds{op=update_activity}",
            ]
        );
    }

    #[test]
    fn futures_are_send_for_spawned_jobs() {
        fn assert_send<T: Send>(_: &T) {}
        let c = client(None);
        let a = activity();
        assert_send(&c.send_to_conversation("http://x", CONV, &a));
        assert_send(&c.reply_to_activity("http://x", CONV, "1", &a));
        assert_send(&c.update_activity("http://x", CONV, "1", &a));
        assert_send(&c.delete_activity("http://x", CONV, "1"));
        assert_send(&c.create_channel_thread("http://x", "19:c", "t", &a));
        assert_send(&c.create_personal_conversation("http://x", "28:b", "29:u", "t"));
        assert_send(&c.get_member("http://x", CONV, "29:u"));
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "hé…");
        assert_eq!(truncate("héllo", 5), "héllo");
        assert_eq!(truncate("", 3), "");
    }
}
