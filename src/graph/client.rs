//! The live Graph client (graph.md).
//!
//! One attempt per call, like the Connector client: retries are scheduled by the durable job queue from
//! [`GraphError::is_retryable`] and [`GraphError::retry_after`], so they survive restarts.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use moka::sync::Cache;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::GraphApi;
use super::error::GraphError;
use super::types::{
    CreatedEvent, CreatedMessage, Event, GetScheduleRequest, MailboxSettings, Message,
    ScheduleInformation, User, ValueList,
};
use crate::botframework::retry::parse_retry_after;
use crate::botframework::token::{TokenError, TokenProvider};
use crate::clock::{Clock, Millis, millis};

/// Outlook's limit on concurrent requests per app and mailbox (graph.md §5); a fifth is answered 429
/// `ApplicationThrottled` "MailboxConcurrency", so fieldbot queues it locally instead.
pub const OUTLOOK_MAX_CONCURRENCY: usize = 4;

/// What JavaScript's `encodeURIComponent` leaves alone. `@` becomes `%40` and `#` (B2B `#EXT#` UPNs)
/// `%23`; Graph decodes both.
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

const USER_SELECT: &str = "id,displayName,mail,userPrincipalName";
/// The documented cap of `checkMemberGroups`.
const MAX_GROUP_IDS: usize = 20;
/// getSchedule for 20 people over weeks, with schedule items, runs to a few hundred KB; the cap keeps a
/// misbehaving proxy from filling memory.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// How much of an unexpected body is kept in an error (for logs and the dead-letter view).
const MAX_RAW_CHARS: usize = 2048;
const MAX_MESSAGE_CHARS: usize = 512;
/// Mailboxes idle this long lose their limiter; a request in flight keeps its permit's semaphore alive.
const LIMITER_IDLE: Duration = Duration::from_secs(15 * 60);
const LIMITER_CAPACITY: u64 = 10_000;
/// The longest a `Retry-After` may pause a mailbox here (the queue's default `jobs.max_retry_after_secs`), so
/// a hostile or buggy value cannot silence a mailbox for days. Pause entries live this long, so none outlives
/// its pause.
const MAX_PAUSE: Duration = Duration::from_secs(3600);

/// The named extended property a job's mail or draft carries its idempotency key in. The GUID is
/// fieldbot's own property set; it must never change, or mail sent before could not be found.
pub(super) const KEY_PROPERTY: &str =
    "String {6f0c9a52-3b1e-4d57-9a8e-2c41f7d05b93} Name FieldbotIdempotencyKey";

const CLIENT_REQUEST_ID: &str = "client-request-id";
const REQUEST_ID: &str = "request-id";
const METRIC_REQUESTS: &str = "fieldbot_graph_requests_total";
const METRIC_DURATION: &str = "fieldbot_graph_request_duration_seconds";

/// Which call this is, for metrics, logs and the concurrency rule.
#[derive(Debug, Clone, Copy)]
pub(super) struct Op {
    pub(super) name: &'static str,
    pub(super) method: &'static Method,
    /// Low-cardinality path for logs; the real path carries addresses.
    pub(super) template: &'static str,
    /// Served by Exchange Online, hence under the per-mailbox concurrency limit. Directory calls are not.
    pub(super) outlook: bool,
}

const GET_USER: Op = Op {
    name: "get_user",
    method: &Method::GET,
    template: "/users/{id}",
    outlook: false,
};
const GET_SCHEDULE: Op = Op {
    name: "get_schedule",
    method: &Method::POST,
    template: "/users/{id}/calendar/getSchedule",
    outlook: true,
};
const CREATE_DRAFT: Op = Op {
    name: "create_draft",
    method: &Method::POST,
    template: "/users/{id}/messages",
    outlook: true,
};
const SEND_MAIL: Op = Op {
    name: "send_mail",
    method: &Method::POST,
    template: "/users/{id}/sendMail",
    outlook: true,
};
const FIND_MESSAGE: Op = Op {
    name: "find_message",
    method: &Method::GET,
    template: "/users/{id}/messages?$filter={key}",
    outlook: true,
};
const CREATE_EVENT: Op = Op {
    name: "create_event",
    method: &Method::POST,
    template: "/users/{id}/events",
    outlook: true,
};
const UPDATE_EVENT: Op = Op {
    name: "update_event",
    method: &Method::PATCH,
    template: "/users/{id}/events/{eventId}",
    outlook: true,
};
const GET_MAILBOX_SETTINGS: Op = Op {
    name: "get_mailbox_settings",
    method: &Method::GET,
    template: "/users/{id}/mailboxSettings",
    outlook: true,
};
const CHECK_MEMBER_GROUPS: Op = Op {
    name: "check_member_groups",
    method: &Method::POST,
    template: "/users/{id}/checkMemberGroups",
    outlook: false,
};

/// A request ready to send: the live client sends it, the dry run records it, so both agree by
/// construction.
#[derive(Debug, Clone)]
pub(super) struct Prepared {
    pub(super) op: Op,
    /// Path and query below the base URL, ids already encoded.
    pub(super) path: String,
    pub(super) body: Option<Value>,
    /// The user or mailbox the call is about, trimmed and lowercased: the concurrency key.
    pub(super) mailbox: String,
    /// The call's idempotency key, when a job makes it (see [`crate::idempotency`]).
    pub(super) key: Option<String>,
}

impl Prepared {
    fn new(op: Op, path: String, body: Option<Value>, mailbox: String) -> Self {
        Self {
            op,
            path,
            body,
            mailbox,
            key: crate::idempotency::next_call_key(op.name),
        }
    }

    /// A mail or draft carries its key as an extended property, where [`Prepared::find_message`] finds it
    /// (graph.md §3.2): neither has an idempotency key on Graph's side, so a send that may have happened is
    /// looked up instead of repeated.
    fn tagged(message: &Message, key: Option<&str>) -> Result<Value, GraphError> {
        let mut body = to_json(message)?;
        if let (Some(key), Some(fields)) = (key, body.as_object_mut()) {
            fields.insert(
                "singleValueExtendedProperties".to_owned(),
                json!([{ "id": KEY_PROPERTY, "value": key }]),
            );
        }
        Ok(body)
    }

    /// `GET /users/{mailbox}/messages` filtered on the key property: the mail or draft a job's call with
    /// `key` made, in any folder (Drafts, Sent Items).
    pub(super) fn find_message(mailbox: &str, key: &str) -> Result<Self, GraphError> {
        let (segment, mailbox) = user_segment(mailbox)?;
        let filter = format!(
            "singleValueExtendedProperties/Any(ep: ep/id eq '{KEY_PROPERTY}' and ep/value eq '{}')",
            key.replace('\'', "''")
        );
        Ok(Self::new(
            FIND_MESSAGE,
            format!(
                "/users/{segment}/messages?$filter={}&$select=id,webLink,isDraft&$top=1",
                utf8_percent_encode(&filter, ID_COMPONENT)
            ),
            None,
            mailbox,
        ))
    }

    pub(super) fn get_user(id_or_upn: &str) -> Result<Self, GraphError> {
        let (segment, mailbox) = user_segment(id_or_upn)?;
        Ok(Self::new(
            GET_USER,
            format!("/users/{segment}?$select={USER_SELECT}"),
            None,
            mailbox,
        ))
    }

    pub(super) fn get_schedule(
        mailbox: &str,
        req: &GetScheduleRequest,
    ) -> Result<Self, GraphError> {
        let (segment, mailbox) = user_segment(mailbox)?;
        Ok(Self::new(
            GET_SCHEDULE,
            format!("/users/{segment}/calendar/getSchedule"),
            Some(to_json(req)?),
            mailbox,
        ))
    }

    pub(super) fn create_draft(mailbox: &str, message: &Message) -> Result<Self, GraphError> {
        let (segment, mailbox) = user_segment(mailbox)?;
        let mut call = Self::new(
            CREATE_DRAFT,
            format!("/users/{segment}/messages"),
            None,
            mailbox,
        );
        call.body = Some(Self::tagged(message, call.key.as_deref())?);
        Ok(call)
    }

    pub(super) fn send_mail(sender: &str, message: &Message) -> Result<Self, GraphError> {
        let (segment, mailbox) = user_segment(sender)?;
        let mut call = Self::new(
            SEND_MAIL,
            format!("/users/{segment}/sendMail"),
            None,
            mailbox,
        );
        call.body = Some(json!({
            "message": Self::tagged(message, call.key.as_deref())?,
            "saveToSentItems": true
        }));
        Ok(call)
    }

    pub(super) fn create_event(organizer: &str, event: &Event) -> Result<Self, GraphError> {
        let (segment, mailbox) = user_segment(organizer)?;
        Ok(Self::new(
            CREATE_EVENT,
            format!("/users/{segment}/events"),
            Some(to_json(event)?),
            mailbox,
        ))
    }

    pub(super) fn update_event(
        organizer: &str,
        event_id: &str,
        patch: &Value,
    ) -> Result<Self, GraphError> {
        let (segment, mailbox) = user_segment(organizer)?;
        if !patch.is_object() {
            return Err(GraphError::InvalidRequest(
                "an event patch must be a JSON object".to_owned(),
            ));
        }
        Ok(Self::new(
            UPDATE_EVENT,
            format!("/users/{segment}/events/{}", item_segment(event_id)?),
            Some(patch.clone()),
            mailbox,
        ))
    }

    pub(super) fn get_mailbox_settings(user: &str) -> Result<Self, GraphError> {
        let (segment, mailbox) = user_segment(user)?;
        Ok(Self::new(
            GET_MAILBOX_SETTINGS,
            format!("/users/{segment}/mailboxSettings"),
            None,
            mailbox,
        ))
    }

    pub(super) fn check_member_groups(
        user: &str,
        group_ids: &[String],
    ) -> Result<Self, GraphError> {
        let (segment, mailbox) = user_segment(user)?;
        if group_ids.len() > MAX_GROUP_IDS {
            return Err(GraphError::InvalidRequest(format!(
                "checkMemberGroups takes at most {MAX_GROUP_IDS} group ids, got {}",
                group_ids.len()
            )));
        }
        Ok(Self::new(
            CHECK_MEMBER_GROUPS,
            format!("/users/{segment}/checkMemberGroups"),
            Some(json!({ "groupIds": group_ids })),
            mailbox,
        ))
    }
}

/// The `{id | userPrincipalName}` path segment, and the limiter key.
fn user_segment(id: &str) -> Result<(String, String), GraphError> {
    let id = id.trim();
    if id.is_empty() || id == "." || id == ".." {
        return Err(GraphError::InvalidRequest(format!(
            "not a user id or UPN: {id:?}"
        )));
    }
    let segment = if id.starts_with('$') {
        // A leading `$` reads as an OData system segment (`$count`, …); the key form keeps it a UPN
        // (graph.md §4). Quotes inside an OData string literal are doubled.
        format!(
            "('{}')",
            utf8_percent_encode(&id.replace('\'', "''"), ID_COMPONENT)
        )
    } else {
        utf8_percent_encode(id, ID_COMPONENT).to_string()
    };
    Ok((segment, id.to_lowercase()))
}

fn item_segment(id: &str) -> Result<String, GraphError> {
    if id.is_empty() || id == "." || id == ".." {
        return Err(GraphError::InvalidRequest(format!(
            "not an item id: {id:?}"
        )));
    }
    Ok(utf8_percent_encode(id, ID_COMPONENT).to_string())
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, GraphError> {
    serde_json::to_value(value)
        .map_err(|e| GraphError::InvalidRequest(format!("cannot encode request body: {e}")))
}

/// `base_url` without surrounding whitespace and trailing slashes, so paths can be appended.
pub(super) fn trim_base_url(base_url: &str) -> String {
    base_url.trim().trim_end_matches('/').to_owned()
}

/// Calls Graph with an app-only token. Cheap to clone; clones share the token cache and the mailbox
/// limiters.
#[derive(Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    base_url: String,
    token: TokenProvider,
    timeout: Duration,
    mailbox_concurrency: usize,
    limiters: Cache<String, Arc<Semaphore>>,
    /// Mailbox -> until when Outlook asked us to leave it alone (429/503 with `Retry-After`), on `clock`.
    paused: Cache<String, Millis>,
    clock: Clock,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .field("mailbox_concurrency", &self.mailbox_concurrency)
            .finish_non_exhaustive()
    }
}

impl GraphClient {
    /// `base_url` is e.g. `https://graph.microsoft.com/v1.0`; `token` must be a provider for the scope
    /// `https://graph.microsoft.com/.default`. `timeout` bounds each request, body included, but not the
    /// wait for a mailbox slot. `http` should not follow redirects (the bearer would go along).
    pub fn new(
        http: reqwest::Client,
        base_url: String,
        token: TokenProvider,
        timeout: Duration,
    ) -> Self {
        Self {
            http,
            base_url: trim_base_url(&base_url),
            token,
            timeout,
            mailbox_concurrency: OUTLOOK_MAX_CONCURRENCY,
            limiters: Cache::builder()
                .max_capacity(LIMITER_CAPACITY)
                .time_to_idle(LIMITER_IDLE)
                .build(),
            paused: Cache::builder()
                .max_capacity(LIMITER_CAPACITY)
                .time_to_live(MAX_PAUSE)
                .build(),
            clock: Clock::system(),
        }
    }

    /// The clock mailbox pauses are kept on: the application's, so a test that moves time moves them too.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Overrides the per-mailbox concurrency (default [`OUTLOOK_MAX_CONCURRENCY`]; at least 1).
    pub fn with_mailbox_concurrency(mut self, limit: usize) -> Self {
        self.mailbox_concurrency = limit.max(1);
        self.limiters.invalidate_all();
        self
    }

    async fn mailbox_permit(&self, mailbox: &str) -> Result<OwnedSemaphorePermit, GraphError> {
        let limit = self.mailbox_concurrency;
        let semaphore = self
            .limiters
            .get_with(mailbox.to_owned(), || Arc::new(Semaphore::new(limit)));
        semaphore
            .acquire_owned()
            .await
            .map_err(|_| GraphError::NotSent("mailbox limiter closed".to_owned()))
    }

    /// How much longer `mailbox` is paused, if it is.
    fn paused_for(&self, mailbox: &str) -> Option<Duration> {
        let left = self.paused.get(mailbox)? - self.clock.now();
        (left > 0).then(|| Duration::from_millis(u64::try_from(left).unwrap_or(0)))
    }

    /// Pauses `mailbox` for `retry_after` (capped at [`MAX_PAUSE`]); a longer pause already in place stays.
    fn pause(&self, mailbox: &str, retry_after: Duration) {
        let until = self
            .clock
            .now()
            .saturating_add(millis(retry_after.min(MAX_PAUSE)));
        self.paused
            .entry(mailbox.to_owned())
            .and_upsert_with(|current| current.map_or(until, |c| (*c.value()).max(until)));
    }

    /// When an earlier attempt of the job may have made `call` (a mail or a draft), the message it made, if
    /// Graph has it. `None` also when no check is needed; when the lookup finds nothing, the call is known
    /// not to have been made and the scope stops checking.
    async fn made_before(
        &self,
        mailbox: &str,
        call: &Prepared,
    ) -> Result<Option<CreatedMessage>, GraphError> {
        let Some(key) = call
            .key
            .as_deref()
            .filter(|_| crate::idempotency::checking())
        else {
            return Ok(None);
        };
        let lookup = Prepared::find_message(mailbox, key)?;
        let found: ValueList<CreatedMessage> =
            match self.execute(&lookup).await.and_then(|b| decode(&b)) {
                Ok(found) => found,
                // Busy or unanswered: look again later. Refused (a permission the mailbox lacks, say): the
                // call cannot be checked, so the job is held.
                Err(e) if e.is_retryable(true) => return Err(e),
                Err(e) => return Err(GraphError::Unchecked(e.to_string())),
            };
        match found.value.into_iter().next() {
            Some(made) => {
                tracing::info!(
                    op = call.op.name,
                    key,
                    "an earlier attempt's call was found; not made again"
                );
                Ok(Some(made))
            }
            None => {
                crate::idempotency::checked_not_made();
                Ok(None)
            }
        }
    }

    /// One attempt; returns the body of a 2xx answer, or the classified failure.
    #[tracing::instrument(
        name = "graph_call",
        skip_all,
        fields(op = call.op.name, mailbox = %call.mailbox, status, request_id, client_request_id)
    )]
    async fn execute(&self, call: &Prepared) -> Result<Vec<u8>, GraphError> {
        let op = call.op;
        let span = tracing::Span::current();
        // Queueing for a slot happens before the token and the timeout: neither should age while waiting.
        let _permit = if op.outlook {
            Some(self.mailbox_permit(&call.mailbox).await?)
        } else {
            None
        };
        // The per-mailbox throttle gate. Outlook's limits are per app and mailbox (graph.md §5), and every
        // request made while throttled counts against them, so while a mailbox is paused its calls never
        // reach Graph: they fail at once as throttled, carrying the time left. Failing fast rather than
        // waiting here is deliberate: the job queue already reschedules a throttled job at its Retry-After
        // without spending an attempt, whereas waiting would hold one of the worker's few slots (other
        // mailboxes and conversations queue behind it) and the job's lease; a pause longer than the lease
        // would let another worker take the job over and send the mail twice. Checked after the permit, so
        // calls that queued for a slot while another got the 429 see the pause too.
        if op.outlook
            && let Some(left) = self.paused_for(&call.mailbox)
        {
            record(op, "paused", None);
            tracing::debug!(
                method = %op.method, path = op.template,
                retry_after_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
                "mailbox paused by Graph throttling; call not sent"
            );
            return Err(GraphError::Throttled {
                retry_after: Some(left),
            });
        }

        let token = match self.token.token().await {
            Ok(token) => token,
            Err(e) => {
                record(op, "token_error", None);
                tracing::warn!(method = %op.method, path = op.template, error = %e, "no Graph token; call skipped");
                return Err(GraphError::Token(e));
            }
        };
        let mut bearer = HeaderValue::try_from(format!("Bearer {}", token.expose_secret()))
            .map_err(|_| {
                GraphError::Token(TokenError::Request(
                    "token contains characters not allowed in a header".to_owned(),
                ))
            })?;
        // Keeps the value out of reqwest/hyper debug output.
        bearer.set_sensitive(true);
        // Our own id, so a call can be found in Microsoft's logs even when no answer came back.
        let client_request_id = uuid::Uuid::new_v4().to_string();
        span.record("client_request_id", client_request_id.as_str());

        let mut request = self
            .http
            .request(op.method.clone(), format!("{}{}", self.base_url, call.path))
            .timeout(self.timeout)
            .header(AUTHORIZATION, bearer)
            .header(ACCEPT, "application/json")
            .header(CLIENT_REQUEST_ID, client_request_id.as_str());
        if let Some(key) = &call.key {
            request = request.header(crate::idempotency::HEADER, key);
        }
        // Creating a draft or sending mail has no server-side idempotency key: a repeat would duplicate it.
        let unrepeatable = matches!(op.name, "create_draft" | "send_mail");
        if unrepeatable && let Err(e) = crate::idempotency::before_unrepeatable_send(op.name).await
        {
            record(op, "not_sent", None);
            return Err(GraphError::NotSent(e));
        }
        // After the note above: the body of an unrepeatable call carries the mark the note set up.
        let mut released = None;
        if let Some(body) = &call.body {
            request = if unrepeatable {
                let bytes = serde_json::to_vec(body)
                    .map_err(|e| GraphError::InvalidRequest(e.to_string()))?;
                let (body, was_released) = crate::idempotency::unrepeatable_body(bytes);
                released = Some(was_released);
                request
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(body)
            } else {
                request.json(body)
            };
        }

        let started = Instant::now();
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                let err = match classify_send_error(&e) {
                    // Its body never went to the connection, or the connection broke while it was being
                    // written: Graph did not get the whole request.
                    GraphError::Unconfirmed(why)
                        if released.as_ref().is_some_and(|r| r.never_arrived(&e)) =>
                    {
                        GraphError::NotSent(why)
                    }
                    err => err,
                };
                let outcome = match &err {
                    GraphError::NotSent(_) => "not_sent",
                    GraphError::InvalidRequest(_) => "invalid_request",
                    _ if e.is_timeout() => "timeout",
                    _ => "unconfirmed",
                };
                record(op, outcome, Some(started.elapsed()));
                tracing::warn!(method = %op.method, path = op.template, outcome, error = %err, "Graph call failed");
                return Err(err);
            }
        };

        let status = response.status();
        if let Some(released) = &released {
            released.answered(status);
        }
        span.record("status", status.as_u16());
        let headers = response.headers().clone();
        let header_request_id = headers
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(id) = &header_request_id {
            span.record("request_id", id.as_str());
        }
        let body = match read_body(response).await {
            Ok(body) => body,
            // A cut-off error body still leaves the status to classify by.
            Err(_) if !status.is_success() => Vec::new(),
            Err(e) => {
                // Graph answered 2xx, so the operation happened, but its result (the new id) is lost.
                record(op, "body_error", Some(started.elapsed()));
                let err = GraphError::Unconfirmed(format!(
                    "reading response body after HTTP {}: {}",
                    status.as_u16(),
                    describe(&e)
                ));
                tracing::warn!(method = %op.method, path = op.template, error = %err, "Graph call failed");
                return Err(err);
            }
        };
        let elapsed = started.elapsed();
        record(op, &status.as_u16().to_string(), Some(elapsed));

        if status.is_success() {
            tracing::debug!(
                method = %op.method,
                path = op.template,
                elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                "Graph call succeeded"
            );
            return Ok(body);
        }

        let err = classify_status(status, &headers, header_request_id, &body);
        if let Some(id) = err.request_id() {
            span.record("request_id", id);
        }
        if status == StatusCode::UNAUTHORIZED {
            // The cached token may have been revoked or rotated early; the next attempt fetches a new one.
            self.token.invalidate().await;
        }
        // Outlook said "not before T" for this mailbox: hold every call for it until then. A 429 without
        // Retry-After gives no T; the queue's own backoff covers that case.
        if op.outlook
            && matches!(status.as_u16(), 429 | 503)
            && let Some(retry_after) = err.retry_after()
        {
            self.pause(&call.mailbox, retry_after);
        }
        match &err {
            GraphError::Throttled { .. } | GraphError::Transient { .. } => tracing::info!(
                method = %op.method, path = op.template,
                retry_after_s = err.retry_after().map(|d| d.as_secs()), "Graph asked to retry later"
            ),
            _ => {
                tracing::warn!(method = %op.method, path = op.template, error = %err, "Graph call rejected")
            }
        }
        Err(err)
    }
}

#[async_trait::async_trait]
impl GraphApi for GraphClient {
    async fn get_user(&self, id_or_upn: &str) -> Result<User, GraphError> {
        let call = Prepared::get_user(id_or_upn)?;
        decode(&self.execute(&call).await?)
    }

    async fn get_schedule(
        &self,
        mailbox: &str,
        req: &GetScheduleRequest,
    ) -> Result<Vec<ScheduleInformation>, GraphError> {
        let call = Prepared::get_schedule(mailbox, req)?;
        let list: ValueList<ScheduleInformation> = decode(&self.execute(&call).await?)?;
        Ok(list.value)
    }

    async fn create_draft(
        &self,
        mailbox: &str,
        message: &Message,
    ) -> Result<CreatedMessage, GraphError> {
        let call = Prepared::create_draft(mailbox, message)?;
        if let Some(made) = self.made_before(mailbox, &call).await? {
            return Ok(made);
        }
        decode(&self.execute(&call).await?)
    }

    async fn send_mail(&self, sender: &str, message: &Message) -> Result<(), GraphError> {
        let call = Prepared::send_mail(sender, message)?;
        if self.made_before(sender, &call).await?.is_some() {
            return Ok(());
        }
        // 202 with no body: accepted for delivery, nothing to decode.
        self.execute(&call).await.map(drop)
    }

    async fn create_event(
        &self,
        organizer: &str,
        event: &Event,
    ) -> Result<CreatedEvent, GraphError> {
        let call = Prepared::create_event(organizer, event)?;
        if event.transaction_id.is_none() {
            tracing::warn!(
                op = call.op.name,
                "event created without transactionId; a retry could create a duplicate"
            );
        }
        let created: CreatedEvent = decode(&self.execute(&call).await?)?;
        if event.is_online_meeting && created.join_url().is_none() {
            // Graph answers 201 with provider "unknown" when the organizer cannot host Teams meetings
            // (graph.md §3.3). The event exists and invitations went out, so this is the caller's call.
            tracing::warn!(
                op = call.op.name,
                provider = created.online_meeting_provider.as_deref().unwrap_or(""),
                "online meeting requested but Graph returned no joinUrl"
            );
        }
        Ok(created)
    }

    async fn update_event(
        &self,
        organizer: &str,
        event_id: &str,
        patch: &Value,
    ) -> Result<(), GraphError> {
        let call = Prepared::update_event(organizer, event_id, patch)?;
        self.execute(&call).await.map(drop)
    }

    async fn get_mailbox_settings(&self, user: &str) -> Result<MailboxSettings, GraphError> {
        let call = Prepared::get_mailbox_settings(user)?;
        decode(&self.execute(&call).await?)
    }

    async fn check_member_groups(
        &self,
        user: &str,
        group_ids: &[String],
    ) -> Result<Vec<String>, GraphError> {
        let call = Prepared::check_member_groups(user, group_ids)?;
        if group_ids.is_empty() {
            return Ok(Vec::new());
        }
        let list: ValueList<String> = decode(&self.execute(&call).await?)?;
        Ok(list.value)
    }
}

fn record(op: Op, status: &str, elapsed: Option<Duration>) {
    metrics::counter!(METRIC_REQUESTS, "op" => op.name, "status" => status.to_owned()).increment(1);
    if let Some(elapsed) = elapsed {
        metrics::histogram!(METRIC_DURATION, "op" => op.name).record(elapsed.as_secs_f64());
    }
}

fn classify_send_error(e: &reqwest::Error) -> GraphError {
    if e.is_builder() {
        // The body is a `Value` and the headers are pre-validated, so only the URL (base_url) is left.
        GraphError::InvalidRequest(describe(e))
    } else if e.is_connect() {
        // Connect, DNS and TLS failures all happen before the request is written.
        GraphError::NotSent(describe(e))
    } else {
        // Timeouts, resets and protocol errors after the connection was up: the request may have gone out.
        GraphError::Unconfirmed(describe(e))
    }
}

/// The error and its causes, without the URL (it carries the mailbox; the op is logged instead).
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

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, GraphError> {
    // An empty 2xx body decodes as `{}` so lenient types still come back (with empty ids).
    let json: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(json).map_err(|_| GraphError::Decode {
        raw: truncate(&String::from_utf8_lossy(body), MAX_RAW_CHARS),
    })
}

fn classify_status(
    status: StatusCode,
    headers: &HeaderMap,
    header_request_id: Option<String>,
    body: &[u8],
) -> GraphError {
    let status = status.as_u16();
    let retry_after = || {
        headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()))
    };
    if status == 429 {
        return GraphError::Throttled {
            retry_after: retry_after(),
        };
    }
    // 408: the server gave up waiting for our request, so nothing was processed. 509: bandwidth limit
    // (graph.md §5). 501/505 will not change with time.
    if status == 408
        || status == 509
        || ((500..=599).contains(&status) && !matches!(status, 501 | 505))
    {
        return GraphError::Transient {
            status,
            retry_after: retry_after(),
        };
    }
    let details = ErrorDetails::parse(body);
    let request_id = header_request_id.or(details.request_id);
    match status {
        401 => GraphError::Unauthorized { code: details.code },
        403 => GraphError::Forbidden {
            code: details.code,
            message: details.message,
            request_id,
        },
        404 => GraphError::NotFound {
            code: details.code,
            message: details.message,
            request_id,
        },
        _ => GraphError::Permanent {
            status,
            code: details.code,
            message: details.message,
            request_id,
        },
    }
}

#[derive(Debug, Default, PartialEq)]
struct ErrorDetails {
    code: String,
    message: String,
    request_id: Option<String>,
}

impl ErrorDetails {
    /// `{"error":{"code","message","innerError":{"request-id"}}}`, tolerating an OAuth-style
    /// `{"error":"code"}`, a bare `{"code","message"}`, and non-JSON bodies (the message is then the start
    /// of the raw body).
    fn parse(body: &[u8]) -> Self {
        let text = |v: Option<&Value>| {
            v.and_then(Value::as_str)
                .map(|s| truncate(s, MAX_MESSAGE_CHARS))
        };
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let (code, message, request_id) = match &parsed {
            Some(Value::Object(top)) => match top.get("error") {
                Some(Value::Object(error)) => {
                    let inner = error.get("innerError").or_else(|| error.get("innererror"));
                    (
                        text(error.get("code")),
                        text(error.get("message")),
                        text(inner.and_then(|i| i.get("request-id"))),
                    )
                }
                Some(Value::String(code)) => (
                    Some(truncate(code, MAX_MESSAGE_CHARS)),
                    text(top.get("error_description").or_else(|| top.get("message"))),
                    None,
                ),
                _ => (text(top.get("code")), text(top.get("message")), None),
            },
            _ => (None, None, None),
        };
        let message = message
            .unwrap_or_else(|| truncate(String::from_utf8_lossy(body).trim(), MAX_MESSAGE_CHARS));
        Self {
            code: code.unwrap_or_default(),
            message,
            request_id: request_id.filter(|id| !id.is_empty()),
        }
    }
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

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex, OnceLock};

    use jsonschema::Validator;
    use wiremock::matchers::{body_json, header, method, path, path_regex, query_param};
    use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

    use super::*;
    use crate::graph::testkit::{self, FM, FM_ENC, FakeGraph, graph_requests};
    use crate::graph::types::{OnlineMeetingInfo, TEAMS_FOR_BUSINESS};

    const BASE_PATH: &str = "/v1.0";

    /// A server with the token endpoint mounted, and a client whose base URL has a trailing slash.
    async fn setup() -> (MockServer, GraphClient) {
        let server = MockServer::start().await;
        testkit::mount_token(&server).await;
        let client = client_for(&server, Duration::from_secs(5));
        (server, client)
    }

    fn client_for(server: &MockServer, timeout: Duration) -> GraphClient {
        GraphClient::new(
            testkit::http(),
            format!("{}{BASE_PATH}/", server.uri()),
            testkit::token_provider(server),
            timeout,
        )
    }

    fn graph_path(rest: &str) -> String {
        format!("{BASE_PATH}{rest}")
    }

    fn assert_common_headers(req: &Request, token: &str, with_body: bool) {
        assert_eq!(
            req.headers.get("authorization").unwrap(),
            &format!("Bearer {token}")
        );
        assert!(req.headers.get(CLIENT_REQUEST_ID).is_some());
        let content_type = req
            .headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        if with_body {
            assert_eq!(content_type.as_deref(), Some("application/json"));
        } else {
            assert_eq!(content_type, None);
            assert!(req.body.is_empty());
        }
    }

    // ---- schema validation against tests/schemas/graph-openapi-subset.json ----

    /// Properties Graph sets itself: a request that carries them is wrong even though the (response-shaped)
    /// entity schemas list them (x-fieldbot-conventions).
    const SERVER_SET: &[&str] = &[
        "id",
        "changeKey",
        "createdDateTime",
        "lastModifiedDateTime",
        "webLink",
        "iCalUId",
        "bodyPreview",
        "onlineMeeting",
        "onlineMeetingUrl",
        "isOrganizer",
        "isCancelled",
        "cancelledOccurrences",
        "seriesMasterId",
        "responseStatus",
        "originalStart",
        "conversationId",
        "conversationIndex",
        "parentFolderId",
        "receivedDateTime",
        "sentDateTime",
        "hasAttachments",
    ];

    fn openapi() -> &'static Value {
        static DOC: OnceLock<Value> = OnceLock::new();
        DOC.get_or_init(|| {
            let path = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/schemas/graph-openapi-subset.json"
            );
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
        })
    }

    /// The components with every object schema closed (`additionalProperties: false`) and the server-set
    /// properties removed, so a typo or a read-only field in a request body fails validation.
    fn request_components() -> Value {
        let mut components = openapi()["components"].clone();
        for schema in components["schemas"].as_object_mut().unwrap().values_mut() {
            let omitted = schema["x-omitted-navigation-properties"].clone();
            let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
                continue;
            };
            for key in SERVER_SET {
                props.remove(*key);
            }
            // The subset leaves navigation properties out; a message may be created with its extended
            // properties inline (graph.md §3.2), which is how fieldbot tags mail with its key.
            let omitted = omitted.as_array();
            if omitted.is_some_and(|o| o.contains(&json!("singleValueExtendedProperties"))) {
                props.insert(
                    "singleValueExtendedProperties".to_owned(),
                    json!({ "type": "array", "items": {
                        "type": "object",
                        "properties": { "id": { "type": "string" }, "value": { "type": "string" } },
                        "required": ["id", "value"],
                        "additionalProperties": false
                    }}),
                );
            }
            schema["additionalProperties"] = json!(false);
        }
        components
    }

    fn compile(mut root: Value) -> Validator {
        root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        root["components"] = request_components();
        jsonschema::draft202012::new(&root).unwrap()
    }

    fn component_validator(name: &str) -> Validator {
        compile(json!({ "$ref": format!("#/components/schemas/microsoft.graph.{name}") }))
    }

    /// The inline request-body schema of a POST path (the action bodies are closed in the subset).
    fn request_body_validator(api_path: &str) -> Validator {
        let schema = openapi()["paths"][api_path]["post"]["requestBody"]["content"]
            ["application/json"]["schema"]
            .clone();
        assert!(schema.is_object(), "no request body schema for {api_path}");
        compile(schema)
    }

    fn assert_valid(validator: &Validator, instance: &Value) {
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}\n{instance:#}");
    }

    #[test]
    fn schema_validation_rejects_what_graph_would_not_take() {
        let event = component_validator("event");
        let good = serde_json::to_value(testkit::event()).unwrap();
        assert_valid(&event, &good);
        let mut bad = good.clone();
        bad["body"]["contentType"] = json!("HTML");
        assert!(!event.is_valid(&bad), "non-canonical enum");
        let mut bad = good.clone();
        bad["isOnlineMeeting"] = json!("true");
        assert!(!event.is_valid(&bad), "string boolean");
        let mut bad = good.clone();
        bad["id"] = json!("AAMk");
        assert!(!event.is_valid(&bad), "server-set property");
        let mut bad = good.clone();
        bad["attendees"][0]["emailAdress"] = json!({ "address": "x@y" });
        assert!(!event.is_valid(&bad), "typo in a nested object");
        let mut bad = good;
        bad["recurrence"]["pattern"]["daysOfWeek"] = json!(["Tuesday"]);
        assert!(!event.is_valid(&bad), "non-canonical day");

        let send = request_body_validator("/users/{user-id}/sendMail");
        let message = serde_json::to_value(testkit::message()).unwrap();
        assert_valid(
            &send,
            &json!({ "message": message, "saveToSentItems": true }),
        );
        assert!(!send.is_valid(&json!({ "Message": message })), "PascalCase");
        assert!(
            !send.is_valid(&json!({ "saveToSentItems": true })),
            "no message"
        );

        let schedule = request_body_validator("/users/{user-id}/calendar/getSchedule");
        let mut bad = serde_json::to_value(testkit::schedule_request()).unwrap();
        bad["availabilityViewInterval"] = json!("30");
        assert!(!schedule.is_valid(&bad), "string number");
    }

    // ---- each method: request shape and decoded response ----

    #[tokio::test]
    async fn get_user_request_and_response() {
        let (server, client) = setup().await;
        Mock::given(method("GET"))
            .and(path(graph_path(&format!("/users/{FM_ENC}"))))
            .and(query_param("$select", USER_SELECT))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users(id,displayName,mail,userPrincipalName)/$entity",
                "id": "87d349ed-44d7-43e1-9a83-5f2406dee5bd",
                "displayName": "Dana Smith",
                "mail": null,
                "userPrincipalName": FM
            })))
            .expect(1)
            .mount(&server)
            .await;

        let user = client.get_user(FM).await.unwrap();
        assert_eq!(
            user,
            User {
                id: "87d349ed-44d7-43e1-9a83-5f2406dee5bd".into(),
                display_name: Some("Dana Smith".into()),
                mail: None,
                user_principal_name: Some(FM.into()),
            }
        );
        let reqs = graph_requests(&server).await;
        assert_eq!(reqs.len(), 1);
        assert_common_headers(&reqs[0], "tok-1", false);
        assert_eq!(
            testkit::path_and_query(&reqs[0]),
            format!("/v1.0/users/{FM_ENC}?$select=id,displayName,mail,userPrincipalName")
        );
    }

    #[tokio::test]
    async fn get_schedule_request_and_response() {
        let (server, client) = setup().await;
        let req = testkit::schedule_request();
        Mock::given(method("POST"))
            .and(path(graph_path(&format!("/users/{FM_ENC}/calendar/getSchedule"))))
            .and(header("content-type", "application/json"))
            .and(body_json(json!({
                "schedules": ["ats@fabrikam.example", "tam@fabrikam.example"],
                "startTime": { "dateTime": "2026-12-01T08:00:00", "timeZone": "UTC" },
                "endTime": { "dateTime": "2026-12-01T10:00:00", "timeZone": "UTC" },
                "availabilityViewInterval": 30
            })))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(microsoft.graph.scheduleInformation)",
                "value": [
                    {
                        "scheduleId": "ats@fabrikam.example",
                        "availabilityView": "0220",
                        "scheduleItems": [ {
                            "isPrivate": false, "status": "busy", "subject": "Let's go for lunch",
                            "start": { "dateTime": "2026-12-01T09:00:00.0000000", "timeZone": "UTC" },
                            "end": { "dateTime": "2026-12-01T10:00:00.0000000", "timeZone": "UTC" }
                        } ],
                        "workingHours": {
                            "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
                            "startTime": "08:00:00.0000000", "endTime": "17:00:00.0000000",
                            "timeZone": { "name": "Pacific Standard Time" }
                        }
                    },
                    {
                        "scheduleId": "tam@fabrikam.example",
                        "availabilityView": "",
                        "error": { "message": "The user or group couldn't be found.", "responseCode": "ErrorMailRecipientNotFound" }
                    }
                ]
            })))
            .expect(1)
            .mount(&server)
            .await;

        let schedules = client.get_schedule(FM, &req).await.unwrap();
        assert_eq!(schedules.len(), 2);
        assert_eq!(schedules[0].schedule_id, "ats@fabrikam.example");
        assert_eq!(schedules[0].availability_view, "0220");
        let wh = schedules[0].working_hours.as_ref().unwrap();
        assert_eq!(wh.days_of_week.len(), 5);
        assert_eq!(wh.start_time, "08:00:00.0000000");
        assert_eq!(wh.time_zone.as_ref().unwrap().name, "Pacific Standard Time");
        assert!(schedules[0].error.is_none());
        assert_eq!(
            schedules[1].error.as_ref().unwrap().response_code,
            "ErrorMailRecipientNotFound"
        );

        let reqs = graph_requests(&server).await;
        assert_common_headers(&reqs[0], "tok-1", true);
        assert_valid(
            &request_body_validator("/users/{user-id}/calendar/getSchedule"),
            &reqs[0].body_json().unwrap(),
        );
    }

    #[tokio::test]
    async fn create_draft_request_and_response() {
        let (server, client) = setup().await;
        let message = testkit::message();
        Mock::given(method("POST"))
            .and(path(graph_path(&format!("/users/{FM_ENC}/messages"))))
            .and(header("content-type", "application/json"))
            .and(body_json(json!({
                "subject": "Intro: Contoso – FastTrack onboarding",
                "body": { "contentType": "html", "content": "<p>Hi all,</p><p>Introducing …</p>" },
                "toRecipients": [ { "emailAddress": { "address": "customer.lead@contoso.example", "name": "Customer Lead" } } ],
                "ccRecipients": [ { "emailAddress": { "address": "ats@fabrikam.example" } } ]
            })))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({
                "id": "AAMkAGI2THVSAAA=",
                "changeKey": "CQAAABYAAAD",
                "isDraft": true,
                "webLink": "https://outlook.office365.com/owa/?ItemID=AAMkAGI2THVSAAA%3D&exvsurl=1&viewmodel=ReadMessageItem",
                "body": { "contentType": "html", "content": "<html><head></head><body><p>Hi all,</p></body></html>" }
            })))
            .expect(1)
            .mount(&server)
            .await;

        let created = client.create_draft(FM, &message).await.unwrap();
        assert_eq!(created.id, "AAMkAGI2THVSAAA=");
        assert_eq!(
            created.web_link.as_deref(),
            Some(
                "https://outlook.office365.com/owa/?ItemID=AAMkAGI2THVSAAA%3D&exvsurl=1&viewmodel=ReadMessageItem"
            )
        );
        let reqs = graph_requests(&server).await;
        assert_common_headers(&reqs[0], "tok-1", true);
        assert_valid(
            &component_validator("message"),
            &reqs[0].body_json().unwrap(),
        );
    }

    #[tokio::test]
    async fn calls_made_by_a_job_carry_its_idempotency_key() {
        let (server, client) = setup().await;
        Mock::given(method("POST"))
            .and(path(graph_path(&format!("/users/{FM_ENC}/sendMail"))))
            .respond_with(ResponseTemplate::new(202))
            .mount(&server)
            .await;
        let message = testkit::message();
        crate::idempotency::scope("fta:1:mail", client.send_mail(FM, &message))
            .await
            .unwrap();
        client.send_mail(FM, &message).await.unwrap();
        let reqs = graph_requests(&server).await;
        let keys: Vec<Option<&str>> = reqs
            .iter()
            .map(|r| {
                r.headers
                    .get(crate::idempotency::HEADER)
                    .map(|v| v.to_str().unwrap())
            })
            .collect();
        assert_eq!(keys, [Some("fta:1:mail#send_mail"), None]);
    }

    /// The mailbox search's answer: it finds a message when `found`.
    fn search_answer(found: bool) -> ResponseTemplate {
        let value = if found {
            json!([{ "id": "AAMkAD-sent", "isDraft": false, "webLink": "https://outlook.office365.com/owa/?ItemID=AAMkAD-sent" }])
        } else {
            json!([])
        };
        ResponseTemplate::new(200).set_body_json(json!({ "value": value }))
    }

    /// Mounts the mailbox search for `key`, answered with `answer`.
    async fn mount_find(server: &MockServer, key: &str, answer: ResponseTemplate) {
        Mock::given(method("GET"))
            .and(path(graph_path(&format!("/users/{FM_ENC}/messages"))))
            .and(query_param(
                "$filter",
                format!("singleValueExtendedProperties/Any(ep: ep/id eq '{KEY_PROPERTY}' and ep/value eq '{key}')"),
            ))
            .and(query_param("$select", "id,webLink,isDraft"))
            .respond_with(answer)
            .expect(1)
            .mount(server)
            .await;
    }

    async fn mount_send_mail(server: &MockServer, times: u64) {
        Mock::given(method("POST"))
            .and(path(graph_path(&format!("/users/{FM_ENC}/sendMail"))))
            .respond_with(ResponseTemplate::new(202))
            .expect(times)
            .mount(server)
            .await;
    }

    #[tokio::test]
    async fn a_jobs_mail_carries_its_key_where_graph_can_find_it() {
        let (server, client) = setup().await;
        mount_send_mail(&server, 1).await;
        crate::idempotency::scope("fta:1:mail", client.send_mail(FM, &testkit::message()))
            .await
            .unwrap();
        let body = graph_requests(&server).await[0]
            .body_json::<Value>()
            .unwrap();
        assert_eq!(
            body["message"]["singleValueExtendedProperties"],
            json!([{ "id": KEY_PROPERTY, "value": "fta:1:mail#send_mail" }])
        );
        assert_valid(&request_body_validator("/users/{user-id}/sendMail"), &body);
    }

    /// A job's mail after an attempt that may have sent it: the mailbox is searched first, once, answering
    /// `search`, and the mail is then sent `sends` times. Returns the outcome and whether the attempt is
    /// still unsure.
    async fn send_checking(search: ResponseTemplate, sends: u64) -> (Result<(), GraphError>, bool) {
        let (server, client) = setup().await;
        mount_find(&server, "fta:1:mail#send_mail", search).await;
        mount_send_mail(&server, sends).await;
        let (sent, how) = crate::idempotency::scope_checking(
            "fta:1:mail",
            None,
            true,
            client.send_mail(FM, &testkit::message()),
        )
        .await;
        server.verify().await;
        (sent, how.unsure)
    }

    #[tokio::test]
    async fn a_mail_an_earlier_attempt_sent_is_found_and_not_sent_again() {
        let (sent, unsure) = send_checking(search_answer(true), 0).await;
        sent.unwrap();
        assert!(unsure, "the calls after it may have been made too");
    }

    #[tokio::test]
    async fn a_mail_not_found_is_sent_once_and_the_calls_after_it_are_not_checked() {
        let (sent, unsure) = send_checking(search_answer(false), 1).await;
        sent.unwrap();
        assert!(!unsure);
    }

    #[tokio::test]
    async fn a_draft_an_earlier_attempt_saved_is_returned_as_made() {
        let (server, client) = setup().await;
        mount_find(&server, "invite:7#create_draft", search_answer(true)).await;
        let (made, _) = crate::idempotency::scope_checking(
            "invite:7",
            None,
            true,
            client.create_draft(FM, &testkit::message()),
        )
        .await;
        let made = made.unwrap();
        assert_eq!(made.id, "AAMkAD-sent");
        assert!(made.web_link.unwrap().contains("AAMkAD-sent"));
        assert_eq!(
            graph_requests(&server).await.len(),
            1,
            "no draft was created"
        );
    }

    #[tokio::test]
    async fn a_failed_lookup_sends_nothing_and_stays_unsure() {
        let (sent, unsure) = send_checking(ResponseTemplate::new(503), 0).await;
        assert!(sent.unwrap_err().is_retryable(false));
        assert!(unsure);
    }

    /// A mailbox that may not be searched (403): the mail cannot be checked, so it is neither sent nor
    /// looked for again; the job is held.
    #[tokio::test]
    async fn a_refused_lookup_is_unchecked_not_retried() {
        let refused = ResponseTemplate::new(403).set_body_json(json!({
            "error": { "code": "ErrorAccessDenied", "message": "Access is denied." }
        }));
        let (sent, unsure) = send_checking(refused, 0).await;
        let err = sent.unwrap_err();
        assert!(matches!(err, GraphError::Unchecked(_)), "{err:?}");
        assert!(!err.is_retryable(false) && !err.is_retryable(true));
        assert!(unsure);
    }

    #[tokio::test]
    async fn send_mail_request_and_empty_202() {
        let (server, client) = setup().await;
        let mut message = testkit::message();
        message.cc_recipients.clear();
        Mock::given(method("POST"))
            .and(path(graph_path(&format!("/users/{FM_ENC}/sendMail"))))
            .and(header("content-type", "application/json"))
            .and(body_json(json!({
                "message": {
                    "subject": "Intro: Contoso – FastTrack onboarding",
                    "body": { "contentType": "html", "content": "<p>Hi all,</p><p>Introducing …</p>" },
                    "toRecipients": [ { "emailAddress": { "address": "customer.lead@contoso.example", "name": "Customer Lead" } } ]
                },
                "saveToSentItems": true
            })))
            .respond_with(ResponseTemplate::new(202))
            .expect(1)
            .mount(&server)
            .await;

        client.send_mail(FM, &message).await.unwrap();
        let reqs = graph_requests(&server).await;
        assert_common_headers(&reqs[0], "tok-1", true);
        assert_valid(
            &request_body_validator("/users/{user-id}/sendMail"),
            &reqs[0].body_json().unwrap(),
        );
    }

    #[tokio::test]
    async fn create_event_request_and_join_url() {
        let (server, client) = setup().await;
        let event = testkit::event();
        Mock::given(method("POST"))
            .and(path(graph_path(&format!("/users/{FM_ENC}/events"))))
            .and(header("content-type", "application/json"))
            .and(body_json(serde_json::to_value(&event).unwrap()))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({
                "id": "AAMkAGViNDU7zAAAAA7zAAAZe6CkAAA=",
                "iCalUId": "040000008200E00074C5B7101A82E008",
                "webLink": "https://outlook.office365.com/owa/?itemid=AAMkAGViNDU7zAAAAA7zAAAZe6CkAAA%3D&exvsurl=1&path=/calendar/item",
                "isOnlineMeeting": true,
                "onlineMeetingProvider": "teamsForBusiness",
                "onlineMeeting": { "joinUrl": "https://teams.microsoft.com/l/meetup-join/19%3ameeting_NzIy%40thread.v2/0", "conferenceId": "177513992", "tollNumber": "+1 425 555 0123" },
                "transactionId": "fieldbot:eng-4711:initiate-sync:v1"
            })))
            .expect(1)
            .mount(&server)
            .await;

        let created = client.create_event(FM, &event).await.unwrap();
        assert_eq!(created.id, "AAMkAGViNDU7zAAAAA7zAAAZe6CkAAA=");
        assert!(created.web_link.unwrap().contains("/calendar/item"));
        assert_eq!(
            created.online_meeting_provider.as_deref(),
            Some(TEAMS_FOR_BUSINESS)
        );
        assert_eq!(
            created
                .online_meeting
                .as_ref()
                .and_then(|m| m.join_url.as_deref()),
            Some("https://teams.microsoft.com/l/meetup-join/19%3ameeting_NzIy%40thread.v2/0")
        );

        let reqs = graph_requests(&server).await;
        assert_common_headers(&reqs[0], "tok-1", true);
        let body: Value = reqs[0].body_json().unwrap();
        assert_eq!(body["transactionId"], "fieldbot:eng-4711:initiate-sync:v1");
        assert_eq!(body["onlineMeetingProvider"], "teamsForBusiness");
        assert_valid(&component_validator("event"), &body);
    }

    #[tokio::test]
    async fn create_event_without_join_url_is_still_ok() {
        let (server, client) = setup().await;
        Mock::given(method("POST"))
            .and(path(graph_path(&format!("/users/{FM_ENC}/events"))))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({
                "id": "evt-1", "isOnlineMeeting": false, "onlineMeetingProvider": "unknown", "onlineMeeting": null
            })))
            .mount(&server)
            .await;

        let created = client.create_event(FM, &testkit::event()).await.unwrap();
        assert_eq!(created.id, "evt-1");
        assert_eq!(created.join_url(), None);
        assert_eq!(created.online_meeting_provider.as_deref(), Some("unknown"));
        assert_eq!(created.online_meeting, None::<OnlineMeetingInfo>);
    }

    #[tokio::test]
    async fn update_event_patches_the_encoded_item() {
        let (server, client) = setup().await;
        let event_id = "AAMkAGI1AAAt9AHjAAA=";
        let patch = json!({ "attendees": [ { "type": "required", "emailAddress": { "address": "tam@fabrikam.example" } } ] });
        Mock::given(method("PATCH"))
            .and(path(graph_path(&format!(
                "/users/{FM_ENC}/events/AAMkAGI1AAAt9AHjAAA%3D"
            ))))
            .and(header("content-type", "application/json"))
            .and(body_json(&patch))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": event_id })))
            .expect(1)
            .mount(&server)
            .await;

        client.update_event(FM, event_id, &patch).await.unwrap();
        assert_common_headers(&graph_requests(&server).await[0], "tok-1", true);

        let err = client
            .update_event(FM, event_id, &json!(["not", "an", "object"]))
            .await
            .unwrap_err();
        assert!(matches!(err, GraphError::InvalidRequest(_)), "{err:?}");
        let err = client.update_event(FM, "", &patch).await.unwrap_err();
        assert!(matches!(err, GraphError::InvalidRequest(_)), "{err:?}");
    }

    #[tokio::test]
    async fn get_mailbox_settings_request_and_response() {
        let (server, client) = setup().await;
        Mock::given(method("GET"))
            .and(path(graph_path(&format!("/users/{FM_ENC}/mailboxSettings"))))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('dana%40contoso.com')/mailboxSettings",
                "archiveFolder": "AQMkAGI2",
                "timeZone": "Pacific Standard Time",
                "automaticRepliesSetting": { "status": "disabled" },
                "language": { "locale": "en-US", "displayName": "English (United States)" },
                "workingHours": {
                    "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
                    "startTime": "08:00:00.0000000", "endTime": "17:00:00.0000000",
                    "timeZone": { "name": "Pacific Standard Time" }
                }
            })))
            .expect(1)
            .mount(&server)
            .await;

        let settings = client.get_mailbox_settings(FM).await.unwrap();
        assert_eq!(settings.time_zone.as_deref(), Some("Pacific Standard Time"));
        let wh = settings.working_hours.unwrap();
        assert_eq!(wh.end_time, "17:00:00.0000000");
        assert_eq!(wh.days_of_week[0], "monday");
        assert_common_headers(&graph_requests(&server).await[0], "tok-1", false);
    }

    #[tokio::test]
    async fn check_member_groups_request_and_response() {
        let (server, client) = setup().await;
        let groups = testkit::group_ids();
        Mock::given(method("POST"))
            .and(path(graph_path(&format!("/users/{FM_ENC}/checkMemberGroups"))))
            .and(header("content-type", "application/json"))
            .and(body_json(json!({ "groupIds": groups })))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(Edm.String)",
                "value": ["fee2c45b-915a-4a64-b130-f4eb9e75525e"]
            })))
            .expect(1)
            .mount(&server)
            .await;

        let member_of = client.check_member_groups(FM, &groups).await.unwrap();
        assert_eq!(member_of, vec!["fee2c45b-915a-4a64-b130-f4eb9e75525e"]);
        assert_common_headers(&graph_requests(&server).await[0], "tok-1", true);

        // No request for an empty list; too many ids are refused before sending.
        assert!(
            client
                .check_member_groups(FM, &[])
                .await
                .unwrap()
                .is_empty()
        );
        let many: Vec<String> = (0..21).map(|i| format!("g{i}")).collect();
        let err = client.check_member_groups(FM, &many).await.unwrap_err();
        assert!(matches!(err, GraphError::InvalidRequest(_)), "{err:?}");
        assert_eq!(graph_requests(&server).await.len(), 1);
    }

    #[test]
    fn user_segments_are_encoded_like_encode_uri_component() {
        let table = [
            ("dana@contoso.com", "dana%40contoso.com"),
            (
                "87d349ed-44d7-43e1-9a83-5f2406dee5bd",
                "87d349ed-44d7-43e1-9a83-5f2406dee5bd",
            ),
            (
                "ext_dana_contoso.com#EXT#@fabrikam.onmicrosoft.com",
                "ext_dana_contoso.com%23EXT%23%40fabrikam.onmicrosoft.com",
            ),
            ("o'neil@contoso.com", "o'neil%40contoso.com"),
            ("a/b?c=d&e", "a%2Fb%3Fc%3Dd%26e"),
            ("  Dana@Contoso.com ", "Dana%40Contoso.com"),
            ("$svc@contoso.com", "('%24svc%40contoso.com')"),
            ("$o'x@contoso.com", "('%24o''x%40contoso.com')"),
        ];
        for (input, expected) in table {
            let (segment, key) = user_segment(input).unwrap();
            assert_eq!(segment, expected, "{input}");
            assert_eq!(key, input.trim().to_lowercase());
        }
        for bad in ["", "  ", ".", ".."] {
            assert!(
                matches!(user_segment(bad), Err(GraphError::InvalidRequest(_))),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn invalid_ids_send_nothing() {
        let (server, client) = setup().await;
        Mock::given(wiremock::matchers::any())
            .respond_with(ResponseTemplate::new(200))
            .expect(0)
            .mount(&server)
            .await;
        for id in ["", " ", ".."] {
            let err = client.get_user(id).await.unwrap_err();
            assert!(matches!(err, GraphError::InvalidRequest(_)), "{err:?}");
            assert!(!err.is_retryable(true));
            assert!(client.send_mail(id, &testkit::message()).await.is_err());
        }
        assert!(graph_requests(&server).await.is_empty());
    }

    // ---- errors ----

    /// Answers the draft call with `template` and returns what `create_draft` made of it.
    async fn draft_error(template: ResponseTemplate) -> GraphError {
        let (server, client) = setup().await;
        Mock::given(method("POST"))
            .and(path(graph_path(&format!("/users/{FM_ENC}/messages"))))
            .respond_with(template)
            .mount(&server)
            .await;
        let err = client
            .create_draft(FM, &testkit::message())
            .await
            .unwrap_err();
        assert_eq!(graph_requests(&server).await.len(), 1, "one attempt only");
        err
    }

    fn graph_error(status: u16, code: &str, message: &str, request_id: &str) -> ResponseTemplate {
        ResponseTemplate::new(status).set_body_json(json!({ "error": {
            "code": code, "message": message,
            "innerError": { "date": "2026-11-23T09:00:00", "request-id": request_id, "client-request-id": "c-1" }
        }}))
    }

    #[tokio::test]
    async fn throttled_with_and_without_retry_after() {
        let err = draft_error(
            graph_error(
                429,
                "ApplicationThrottled",
                "Application is over its MailboxConcurrency limit.",
                "r",
            )
            .insert_header("Retry-After", "7"),
        )
        .await;
        assert!(
            matches!(err, GraphError::Throttled { retry_after: Some(d) } if d == Duration::from_secs(7)),
            "{err:?}"
        );
        assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
        assert!(err.is_retryable(false));

        let err = draft_error(ResponseTemplate::new(429)).await;
        assert!(
            matches!(err, GraphError::Throttled { retry_after: None }),
            "{err:?}"
        );
        assert!(err.is_retryable(false));
    }

    #[tokio::test]
    async fn server_errors_are_transient() {
        for status in [503, 504, 500, 502] {
            let err = draft_error(
                graph_error(status, "serviceNotAvailable", "busy", "r")
                    .insert_header("Retry-After", "3"),
            )
            .await;
            assert!(
                matches!(err, GraphError::Transient { status: s, retry_after: Some(_) } if s == status),
                "{err:?}"
            );
            assert!(err.is_retryable(false));
        }
    }

    #[tokio::test]
    async fn forbidden_by_access_policy_keeps_request_id_and_names_the_mailbox() {
        let err = draft_error(graph_error(
            403,
            "ErrorAccessDenied",
            "Access to OData is disabled: Blocked by tenant configured AppOnly AccessPolicy settings.",
            "6f0c8a1e-0000-4000-8000-000000000001",
        ))
        .await;
        match &err {
            GraphError::Forbidden {
                code,
                message,
                request_id,
            } => {
                assert_eq!(code, "ErrorAccessDenied");
                assert!(message.starts_with("Access to OData is disabled"));
                assert_eq!(
                    request_id.as_deref(),
                    Some("6f0c8a1e-0000-4000-8000-000000000001")
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(!err.is_retryable(true));
        let msg = err.user_message(FM);
        assert!(msg.contains(FM) && msg.contains("admin"), "{msg}");
    }

    #[tokio::test]
    async fn request_id_header_wins_over_body() {
        let err = draft_error(
            ResponseTemplate::new(403)
                .insert_header("request-id", "from-header")
                .set_body_json(
                    json!({ "error": { "code": "ErrorAccessDenied", "message": "no" } }),
                ),
        )
        .await;
        assert_eq!(err.request_id(), Some("from-header"));
    }

    #[tokio::test]
    async fn not_found_and_bad_request() {
        let err = draft_error(graph_error(
            404,
            "MailboxNotEnabledForRESTAPI",
            "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
            "r-404",
        ))
        .await;
        assert!(
            matches!(&err, GraphError::NotFound { code, request_id: Some(r), .. } if code == "MailboxNotEnabledForRESTAPI" && r == "r-404"),
            "{err:?}"
        );
        assert!(!err.is_retryable(true));

        let err = draft_error(graph_error(
            400,
            "ErrorInvalidRecipients",
            "At least one recipient isn't valid.",
            "r-400",
        ))
        .await;
        assert!(
            matches!(&err, GraphError::Permanent { status: 400, code, .. } if code == "ErrorInvalidRecipients"),
            "{err:?}"
        );
        assert!(!err.is_retryable(true));
    }

    #[tokio::test]
    async fn unknown_user_is_not_found() {
        let (server, client) = setup().await;
        Mock::given(method("GET"))
            .respond_with(graph_error(
                404,
                "Request_ResourceNotFound",
                "Resource 'nobody@contoso.com' does not exist or one of its queried reference-property objects are not present.",
                "r",
            ))
            .mount(&server)
            .await;
        let err = client.get_user("nobody@contoso.com").await.unwrap_err();
        assert_eq!(
            err.user_message("nobody@contoso.com"),
            "No user nobody@contoso.com in this tenant."
        );
    }

    #[tokio::test]
    async fn unauthorized_drops_the_token_and_the_next_call_gets_a_new_one() {
        let (server, client) = setup().await;
        Mock::given(method("GET"))
            .and(path(graph_path(&format!(
                "/users/{FM_ENC}/mailboxSettings"
            ))))
            .and(header("authorization", "Bearer tok-1"))
            .respond_with(graph_error(
                401,
                "InvalidAuthenticationToken",
                "Access token has expired or is not yet valid.",
                "r",
            ))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(graph_path(&format!(
                "/users/{FM_ENC}/mailboxSettings"
            ))))
            .and(header("authorization", "Bearer tok-2"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "timeZone": "UTC" })))
            .mount(&server)
            .await;

        let err = client.get_mailbox_settings(FM).await.unwrap_err();
        assert!(
            matches!(&err, GraphError::Unauthorized { code } if code == "InvalidAuthenticationToken"),
            "{err:?}"
        );
        assert!(err.is_retryable(false));
        let settings = client.get_mailbox_settings(FM).await.unwrap();
        assert_eq!(settings.time_zone.as_deref(), Some("UTC"));
        let token_calls = server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == testkit::TOKEN_PATH)
            .count();
        assert_eq!(token_calls, 2);
    }

    #[tokio::test]
    async fn garbage_bodies_do_not_panic() {
        let err =
            draft_error(ResponseTemplate::new(400).set_body_bytes(vec![0xff, 0xfe, 0x00, b'{']))
                .await;
        assert!(
            matches!(err, GraphError::Permanent { status: 400, .. }),
            "{err:?}"
        );

        let err =
            draft_error(ResponseTemplate::new(403).set_body_json(json!({ "error": 42 }))).await;
        assert!(
            matches!(&err, GraphError::Forbidden { code, .. } if code.is_empty()),
            "{err:?}"
        );

        let err = draft_error(
            ResponseTemplate::new(502).set_body_raw("<html>Bad Gateway</html>", "text/html"),
        )
        .await;
        assert!(
            matches!(err, GraphError::Transient { status: 502, .. }),
            "{err:?}"
        );

        let big = format!("<html>{}</html>", "é".repeat(10_000));
        let err =
            draft_error(ResponseTemplate::new(201).set_body_raw(big.as_bytes(), "text/html")).await;
        match &err {
            GraphError::Decode { raw } => {
                assert!(raw.starts_with("<html>"));
                assert!(raw.chars().count() <= MAX_RAW_CHARS + 1);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(!err.is_retryable(true));
    }

    #[test]
    fn error_details_shapes() {
        let table: [(&[u8], ErrorDetails); 5] = [
            (
                br#"{"error":{"code":"c","message":"m","innerError":{"request-id":"r"}}}"#,
                ErrorDetails {
                    code: "c".into(),
                    message: "m".into(),
                    request_id: Some("r".into()),
                },
            ),
            (
                br#"{"error":{"code":"c","message":"m","innererror":{"request-id":""}}}"#,
                ErrorDetails {
                    code: "c".into(),
                    message: "m".into(),
                    request_id: None,
                },
            ),
            (
                br#"{"error":"invalid_token","error_description":"expired"}"#,
                ErrorDetails {
                    code: "invalid_token".into(),
                    message: "expired".into(),
                    request_id: None,
                },
            ),
            (
                br#"{"code":"c","message":"m"}"#,
                ErrorDetails {
                    code: "c".into(),
                    message: "m".into(),
                    request_id: None,
                },
            ),
            (
                b"  upstream connect error  ",
                ErrorDetails {
                    code: String::new(),
                    message: "upstream connect error".into(),
                    request_id: None,
                },
            ),
        ];
        for (body, expected) in table {
            assert_eq!(
                ErrorDetails::parse(body),
                expected,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[tokio::test]
    async fn timeout_is_unconfirmed() {
        let server = MockServer::start().await;
        testkit::mount_token(&server).await;
        Mock::given(method("POST"))
            .and(path(graph_path(&format!("/users/{FM_ENC}/sendMail"))))
            .respond_with(ResponseTemplate::new(202).set_delay(Duration::from_secs(3)))
            .mount(&server)
            .await;

        let client = client_for(&server, Duration::from_millis(200));
        let err = client.send_mail(FM, &testkit::message()).await.unwrap_err();
        assert!(matches!(err, GraphError::Unconfirmed(_)), "{err:?}");
        assert!(
            !err.is_retryable(false),
            "a send that may have gone out must not be repeated blindly"
        );
        assert!(err.is_retryable(true));
    }

    #[tokio::test]
    async fn connection_refused_is_not_sent() {
        let server = MockServer::start().await;
        testkit::mount_token(&server).await;
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let client = GraphClient::new(
            testkit::http(),
            format!("http://127.0.0.1:{port}/v1.0"),
            testkit::token_provider(&server),
            Duration::from_secs(5),
        );
        let err = client.send_mail(FM, &testkit::message()).await.unwrap_err();
        assert!(matches!(err, GraphError::NotSent(_)), "{err:?}");
        assert!(err.is_retryable(false));
    }

    #[tokio::test]
    async fn token_failure_sends_nothing_to_graph() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(testkit::TOKEN_PATH))
            .respond_with(ResponseTemplate::new(401).set_body_json(json!({
                "error": "invalid_client", "error_description": "AADSTS7000222: The provided client secret keys are expired."
            })))
            .mount(&server)
            .await;
        let client = client_for(&server, Duration::from_secs(5));
        let err = client.get_user(FM).await.unwrap_err();
        assert!(matches!(err, GraphError::Token(_)), "{err:?}");
        assert!(!err.is_retryable(true));
        assert!(graph_requests(&server).await.is_empty());
    }

    // ---- per-mailbox concurrency ----

    /// Counts requests in flight per mailbox path. wiremock applies the delay after `respond` returns, so
    /// a request is counted out by a timer a little before its response goes out: a queued request can
    /// only arrive after a response, so it never overlaps a stale count.
    struct InFlight {
        delay: Duration,
        current: Arc<Mutex<std::collections::HashMap<String, usize>>>,
        max: Arc<Mutex<std::collections::HashMap<String, usize>>>,
        total: AtomicUsize,
    }

    impl Respond for InFlight {
        fn respond(&self, req: &Request) -> ResponseTemplate {
            // Both spellings of one address are one mailbox.
            let key = req.url.path().to_lowercase();
            {
                let mut current = self.current.lock().unwrap();
                let now = current.entry(key.clone()).or_insert(0);
                *now += 1;
                let mut max = self.max.lock().unwrap();
                let peak = max.entry(key.clone()).or_insert(0);
                *peak = (*peak).max(*now);
            }
            self.total.fetch_add(1, Ordering::SeqCst);
            let current = Arc::clone(&self.current);
            let release = self.delay.mul_f64(0.75);
            std::thread::spawn(move || {
                std::thread::sleep(release);
                *current.lock().unwrap().get_mut(&key).unwrap() -= 1;
            });
            ResponseTemplate::new(200)
                .set_body_json(json!({ "timeZone": "UTC" }))
                .set_delay(self.delay)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_four_requests_in_flight_per_mailbox() {
        let (server, client) = setup().await;
        let delay = Duration::from_millis(200);
        let max = Arc::new(Mutex::new(std::collections::HashMap::new()));
        Mock::given(method("GET"))
            .respond_with(InFlight {
                delay,
                current: Arc::new(Mutex::new(std::collections::HashMap::new())),
                max: Arc::clone(&max),
                total: AtomicUsize::new(0),
            })
            .mount(&server)
            .await;
        // Warm the token cache so every call starts at once.
        client
            .get_mailbox_settings("warm@contoso.com")
            .await
            .unwrap();

        let started = Instant::now();
        // Mixed case: the limiter key is the lowercased address.
        let busy: Vec<_> = (0..10)
            .map(|i| {
                let c = client.clone();
                let who = if i % 2 == 0 {
                    FM.to_owned()
                } else {
                    FM.to_uppercase()
                };
                tokio::spawn(async move { c.get_mailbox_settings(&who).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let other_started = Instant::now();
        client
            .get_mailbox_settings("lee@contoso.com")
            .await
            .unwrap();
        let other_elapsed = other_started.elapsed();
        for call in busy {
            call.await.unwrap().unwrap();
        }
        let busy_elapsed = started.elapsed();

        let max = max.lock().unwrap();
        let peak_fm = max[&graph_path(&format!("/users/{FM_ENC}/mailboxSettings")).to_lowercase()];
        assert_eq!(
            peak_fm, OUTLOOK_MAX_CONCURRENCY,
            "peak in flight for one mailbox"
        );
        // 10 calls, 4 at a time, 200 ms each: three waves.
        assert!(
            busy_elapsed >= Duration::from_millis(590),
            "{busy_elapsed:?}"
        );
        // The other mailbox went straight through while the first was saturated.
        assert!(
            other_elapsed < Duration::from_millis(450),
            "{other_elapsed:?}"
        );
    }

    // ---- per-mailbox throttle gate ----

    #[tokio::test]
    async fn a_throttled_mailbox_is_left_alone_until_retry_after() {
        let (server, client) = setup().await;
        let clock = Clock::system();
        let client = client.with_clock(clock.clone());
        let send_path = graph_path(&format!("/users/{FM_ENC}/sendMail"));
        Mock::given(method("POST"))
            .and(path(send_path.clone()))
            .respond_with(
                graph_error(429, "ApplicationThrottled", "slow down", "r")
                    .insert_header("Retry-After", "30"),
            )
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path_regex(r"/sendMail$"))
            .respond_with(ResponseTemplate::new(202))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(graph_path(&format!("/users/{FM_ENC}/messages"))))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "id": "m1" })))
            .mount(&server)
            .await;
        async fn sends(server: &MockServer, send_path: &str) -> usize {
            graph_requests(server)
                .await
                .iter()
                .filter(|r| r.url.path() == send_path)
                .count()
        }

        let err = client.send_mail(FM, &testkit::message()).await.unwrap_err();
        assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
        assert_eq!(sends(&server, &send_path).await, 1);

        // Paused: the next call for the mailbox (any spelling, any Outlook call) never reaches Graph, and
        // says how long is left.
        clock.advance(Duration::from_secs(10));
        let err = client
            .send_mail(&FM.to_uppercase(), &testkit::message())
            .await
            .unwrap_err();
        let left = err.retry_after().unwrap();
        assert!(matches!(err, GraphError::Throttled { .. }), "{err:?}");
        assert!(
            left <= Duration::from_secs(20) && left > Duration::from_secs(19),
            "{left:?}"
        );
        assert!(err.is_retryable(false));
        let err = client
            .create_draft(FM, &testkit::message())
            .await
            .unwrap_err();
        assert!(matches!(err, GraphError::Throttled { .. }), "{err:?}");
        assert_eq!(sends(&server, &send_path).await, 1);
        assert_eq!(graph_requests(&server).await.len(), 1);

        // Other mailboxes are not held back.
        client
            .send_mail("lee@contoso.com", &testkit::message())
            .await
            .unwrap();

        // After Retry-After the mailbox is open again.
        clock.advance(Duration::from_secs(20));
        client.send_mail(FM, &testkit::message()).await.unwrap();
        assert_eq!(sends(&server, &send_path).await, 2);
    }

    #[tokio::test]
    async fn a_429_without_retry_after_or_a_directory_throttle_pauses_nothing() {
        let (server, client) = setup().await;
        let send_path = graph_path(&format!("/users/{FM_ENC}/sendMail"));
        let user_path = graph_path(&format!("/users/{FM_ENC}"));
        Mock::given(method("POST"))
            .and(path(send_path.clone()))
            .respond_with(ResponseTemplate::new(429))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(user_path.clone()))
            .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "30"))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(send_path))
            .respond_with(ResponseTemplate::new(202))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(user_path))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": "u1" })))
            .mount(&server)
            .await;
        assert!(client.send_mail(FM, &testkit::message()).await.is_err());
        client.send_mail(FM, &testkit::message()).await.unwrap();
        // Directory calls are not Outlook's: their 429 is per app and tenant, not per mailbox.
        assert!(client.get_user(FM).await.is_err());
        client.get_user(FM).await.unwrap();
        client.send_mail(FM, &testkit::message()).await.unwrap();
        assert_eq!(graph_requests(&server).await.len(), 5);
    }

    // ---- metrics ----

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
        let (server, client) = setup().await;
        Mock::given(method("POST"))
            .respond_with(FakeGraph)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(429))
            .mount(&server)
            .await;

        let recorder = KeyRecorder::default();
        let seen = Arc::clone(&recorder.0);
        {
            let _guard = metrics::set_default_local_recorder(&recorder);
            client.send_mail(FM, &testkit::message()).await.unwrap();
            client.get_user(FM).await.unwrap_err();
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                "fieldbot_graph_requests_total{op=send_mail,status=202}",
                "fieldbot_graph_request_duration_seconds{op=send_mail}",
                "fieldbot_graph_requests_total{op=get_user,status=429}",
                "fieldbot_graph_request_duration_seconds{op=get_user}",
            ]
        );
    }

    #[test]
    fn futures_are_send_and_the_trait_is_object_safe() {
        fn assert_send<T: Send>(_: &T) {}
        let server_less = GraphClient::new(
            testkit::http(),
            "http://127.0.0.1:9/v1.0".to_owned(),
            crate::botframework::token::TokenProvider::new(
                testkit::http(),
                "http://127.0.0.1:9/t".to_owned(),
                "a".to_owned(),
                secrecy::SecretString::from("s"),
                testkit::GRAPH_SCOPE.to_owned(),
            ),
            Duration::from_secs(1),
        );
        let api: Arc<dyn GraphApi> = Arc::new(server_less);
        let m = testkit::message();
        assert_send(&api.send_mail(FM, &m));
        assert_send(&api.get_user(FM));
    }
}
