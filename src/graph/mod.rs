//! Microsoft Graph, app-only (graph.md): users, free/busy, mail drafts and sends, calendar events with Teams
//! meetings, mailbox settings and group membership.
//!
//! [`GraphApi`] is what the rest of fieldbot depends on. [`GraphClient`] calls Graph, one attempt per call,
//! with errors that tell the durable job queue whether to retry; [`DryRunGraph`] records the calls it would
//! make and answers with placeholders, for demos and for tenants that have not granted consent yet.

pub mod client;
pub mod dry_run;
pub mod error;
pub mod types;

pub use client::{GraphClient, OUTLOOK_MAX_CONCURRENCY};
pub use dry_run::{DryRunGraph, GraphRecorder, MemoryRecorder, RecordedCall};
pub use error::GraphError;
pub use types::{
    Attendee, AttendeeType, BodyType, CreatedEvent, CreatedMessage, DateTimeTimeZone, EmailAddress,
    Event, FreeBusyError, GetScheduleRequest, ItemBody, MailboxSettings, Message,
    OnlineMeetingInfo, Recipient, ScheduleInformation, TEAMS_FOR_BUSINESS, TimeZoneBase, User,
    WorkingHours,
};

/// Whether an unrepeatable call named `op` (by [`crate::idempotency::before_unrepeatable_send`]) can be
/// looked up afterwards: a mail or a draft carries its key where [`GraphApi::create_draft`] and
/// [`GraphApi::send_mail`] look for it when an earlier attempt may have made it.
pub fn can_look_up(op: &str) -> bool {
    matches!(op, "create_draft" | "send_mail")
}

/// The Graph calls fieldbot makes. Mailbox arguments take an object id or a UPN / SMTP address.
///
/// Every method makes at most one request. Which failures are worth retrying is for the caller to decide
/// with [`GraphError::is_retryable`]: `get_*`, `update_event` and `create_event` with a `transaction_id`
/// are idempotent; `create_draft` and `send_mail` are not.
#[async_trait::async_trait]
pub trait GraphApi: Send + Sync + 'static {
    /// `GET /users/{id}?$select=id,displayName,mail,userPrincipalName`.
    async fn get_user(&self, id_or_upn: &str) -> Result<User, GraphError>;

    /// `POST /users/{mailbox}/calendar/getSchedule`, run as `mailbox`. A schedule Graph could not resolve
    /// comes back with its `error` set, not as an `Err`.
    async fn get_schedule(
        &self,
        mailbox: &str,
        req: &GetScheduleRequest,
    ) -> Result<Vec<ScheduleInformation>, GraphError>;

    /// `POST /users/{mailbox}/messages`: saves a draft in the mailbox's Drafts folder. When an earlier
    /// attempt of the job may have saved it ([`crate::idempotency::checking`]), the draft is looked up by
    /// its key first and returned if found.
    async fn create_draft(
        &self,
        mailbox: &str,
        message: &Message,
    ) -> Result<CreatedMessage, GraphError>;

    /// `POST /users/{sender}/sendMail` with `saveToSentItems: true`. Success (202) means accepted, not
    /// delivered: bad recipients come back later as NDRs in the sender's inbox. Looked up first like
    /// [`GraphApi::create_draft`].
    async fn send_mail(&self, sender: &str, message: &Message) -> Result<(), GraphError>;

    /// `POST /users/{organizer}/events`. Invitations go out at once. With `is_online_meeting` set, check
    /// [`CreatedEvent::join_url`]: Graph answers 201 without a meeting when the organizer cannot host one.
    async fn create_event(
        &self,
        organizer: &str,
        event: &Event,
    ) -> Result<CreatedEvent, GraphError>;

    /// `PATCH /users/{organizer}/events/{id}` with a partial event (a JSON object).
    async fn update_event(
        &self,
        organizer: &str,
        event_id: &str,
        patch: &serde_json::Value,
    ) -> Result<(), GraphError>;

    /// `GET /users/{user}/mailboxSettings`: time zone and working hours.
    async fn get_mailbox_settings(&self, user: &str) -> Result<MailboxSettings, GraphError>;

    /// `POST /users/{user}/checkMemberGroups`: which of `group_ids` (at most 20) the user belongs to,
    /// transitively. An empty list answers empty without a request.
    async fn check_member_groups(
        &self,
        user: &str,
        group_ids: &[String],
    ) -> Result<Vec<String>, GraphError>;
}

/// Inputs and a fake Graph shared by the client and dry-run tests.
#[cfg(test)]
pub(crate) mod testkit {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use secrecy::SecretString;
    use serde_json::json;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

    use super::*;
    use crate::botframework::token::TokenProvider;

    pub(crate) const TOKEN_PATH: &str = "/tenant-1/oauth2/v2.0/token";
    pub(crate) const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
    pub(crate) const FM: &str = "dana@contoso.com";
    pub(crate) const FM_ENC: &str = "dana%40contoso.com";

    pub(crate) fn http() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// Hands out `tok-1`, `tok-2`, … so a test can see when a new token was fetched.
    pub(crate) struct TokenSequence(pub(crate) AtomicUsize);

    impl Respond for TokenSequence {
        fn respond(&self, _: &Request) -> ResponseTemplate {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            ResponseTemplate::new(200).set_body_json(json!({
                "token_type": "Bearer", "expires_in": 3600, "access_token": format!("tok-{n}")
            }))
        }
    }

    pub(crate) async fn mount_token(server: &MockServer) {
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .respond_with(TokenSequence(AtomicUsize::new(0)))
            .mount(server)
            .await;
    }

    pub(crate) fn token_provider(server: &MockServer) -> TokenProvider {
        TokenProvider::new(
            http(),
            format!("{}{TOKEN_PATH}", server.uri()),
            "app-id".to_owned(),
            SecretString::from("secret"),
            GRAPH_SCOPE.to_owned(),
        )
    }

    /// The Graph requests a server received, without the token requests.
    pub(crate) async fn graph_requests(server: &MockServer) -> Vec<Request> {
        server
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.url.path() != TOKEN_PATH)
            .collect()
    }

    pub(crate) fn path_and_query(req: &Request) -> String {
        match req.url.query() {
            Some(q) => format!("{}?{q}", req.url.path()),
            None => req.url.path().to_owned(),
        }
    }

    pub(crate) fn message() -> Message {
        Message {
            subject: "Intro: Contoso – FastTrack onboarding".to_owned(),
            body: ItemBody::html("<p>Hi all,</p><p>Introducing …</p>"),
            to_recipients: vec![Recipient::new(
                "customer.lead@contoso.example",
                Some("Customer Lead".to_owned()),
            )],
            cc_recipients: vec![Recipient::new("ats@fabrikam.example", None)],
        }
    }

    pub(crate) fn event() -> Event {
        Event {
            subject: "Contoso – account team internal sync".to_owned(),
            body: ItemBody::html("<p>Agenda</p><ol><li>Engagement overview</li></ol>"),
            start: DateTimeTimeZone::utc("2026-12-01T16:00:00"),
            end: DateTimeTimeZone::utc("2026-12-01T16:45:00"),
            attendees: vec![
                Attendee::required("ats@fabrikam.example", Some("ATS".to_owned())),
                Attendee::optional("csm@fabrikam.example", None),
            ],
            is_online_meeting: true,
            online_meeting_provider: Some(TEAMS_FOR_BUSINESS.to_owned()),
            transaction_id: Some("fieldbot:eng-4711:initiate-sync:v1".to_owned()),
            recurrence: Some(json!({
                "pattern": { "type": "weekly", "interval": 2, "daysOfWeek": ["tuesday"], "firstDayOfWeek": "monday" },
                "range": { "type": "numbered", "startDate": "2026-12-01", "numberOfOccurrences": 6 }
            })),
            allow_new_time_proposals: Some(true),
        }
    }

    pub(crate) fn schedule_request() -> GetScheduleRequest {
        GetScheduleRequest {
            schedules: vec![
                "ats@fabrikam.example".to_owned(),
                "tam@fabrikam.example".to_owned(),
            ],
            start_time: DateTimeTimeZone::utc("2026-12-01T08:00:00"),
            end_time: DateTimeTimeZone::utc("2026-12-01T10:00:00"),
            availability_view_interval: 30,
        }
    }

    pub(crate) fn group_ids() -> Vec<String> {
        vec![
            "fee2c45b-915a-4a64-b130-f4eb9e75525e".to_owned(),
            "4fe90ae7-065a-478b-9400-e0a0e1cbd540".to_owned(),
        ]
    }

    /// Answers every Graph path the way Graph would on success, with documentation-shaped bodies.
    pub(crate) struct FakeGraph;

    impl Respond for FakeGraph {
        fn respond(&self, req: &Request) -> ResponseTemplate {
            let p = req.url.path();
            let m = req.method.as_str();
            if p.ends_with("/calendar/getSchedule") {
                ResponseTemplate::new(200).set_body_json(json!({ "value": [
                    { "scheduleId": "ats@fabrikam.example", "availabilityView": "0220" },
                    { "scheduleId": "tam@fabrikam.example", "availabilityView": "0000" }
                ]}))
            } else if p.ends_with("/sendMail") {
                ResponseTemplate::new(202)
            } else if p.ends_with("/messages") {
                ResponseTemplate::new(201).set_body_json(json!({
                    "id": "AAMkAD-msg", "isDraft": true,
                    "webLink": "https://outlook.office365.com/owa/?ItemID=AAMkAD-msg&exvsurl=1&viewmodel=ReadMessageItem"
                }))
            } else if p.ends_with("/events") {
                ResponseTemplate::new(201).set_body_json(json!({
                    "id": "AAMkAD-evt", "webLink": "https://outlook.office365.com/owa/?itemid=AAMkAD-evt",
                    "isOnlineMeeting": true, "onlineMeetingProvider": "teamsForBusiness",
                    "onlineMeeting": { "joinUrl": "https://teams.microsoft.com/l/meetup-join/19%3ameeting_x" }
                }))
            } else if m == "PATCH" {
                ResponseTemplate::new(200).set_body_json(json!({ "id": "AAMkAD-evt" }))
            } else if p.ends_with("/mailboxSettings") {
                ResponseTemplate::new(200).set_body_json(json!({
                    "timeZone": "W. Europe Standard Time",
                    "workingHours": { "daysOfWeek": ["monday"], "startTime": "09:00:00.0000000",
                        "endTime": "17:00:00.0000000", "timeZone": { "name": "W. Europe Standard Time" } }
                }))
            } else if p.ends_with("/checkMemberGroups") {
                ResponseTemplate::new(200)
                    .set_body_json(json!({ "value": ["fee2c45b-915a-4a64-b130-f4eb9e75525e"] }))
            } else {
                ResponseTemplate::new(200).set_body_json(json!({
                    "id": "87d349ed-44d7-43e1-9a83-5f2406dee5bd", "displayName": "Dana",
                    "mail": FM, "userPrincipalName": FM
                }))
            }
        }
    }
}
