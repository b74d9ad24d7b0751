//! A [`GraphApi`] that calls nothing: it records each request the live client would send and answers with
//! placeholders, so fieldbot can be demonstrated, or run before an admin grants consent, without
//! touching anyone's mailbox or calendar.

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

use super::GraphApi;
use super::client::{Prepared, trim_base_url};
use super::error::GraphError;
use super::types::{
    CreatedEvent, CreatedMessage, Event, GetScheduleRequest, MailboxSettings, Message,
    OnlineMeetingInfo, ScheduleInformation, TEAMS_FOR_BUSINESS, TimeZoneBase, User, WorkingHours,
};

/// Where a dry run's would-be calls go (a log table, a test's memory, …).
#[async_trait::async_trait]
pub trait GraphRecorder: Send + Sync + 'static {
    async fn record(&self, call: RecordedCall);
}

/// One request the live client would have sent.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RecordedCall {
    /// `GET`, `POST`, `PATCH`.
    pub method: String,
    /// URL path and query as sent, including the base URL's path (`/v1.0/users/dana%40contoso.com/messages`).
    pub path: String,
    /// The JSON body; it holds message content, so treat it like mail rather than a log line.
    pub body: Option<Value>,
}

/// Keeps recorded calls in memory.
#[derive(Debug, Default)]
pub struct MemoryRecorder {
    calls: Mutex<Vec<RecordedCall>>,
}

impl MemoryRecorder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The calls so far, oldest first.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait::async_trait]
impl GraphRecorder for MemoryRecorder {
    async fn record(&self, call: RecordedCall) {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(call);
    }
}

pub struct DryRunGraph {
    base_url: String,
    recorder: Arc<dyn GraphRecorder>,
}

impl std::fmt::Debug for DryRunGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DryRunGraph")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

const DRAFT_LINK: &str = "https://outlook.office.com/mail/drafts (dry-run)";
const EVENT_LINK: &str = "https://outlook.office.com/calendar/view/week (dry-run)";
const JOIN_LINK: &str = "https://teams.microsoft.com/l/meetup-join/dry-run";
/// Ten weeks of 5-minute slots: beyond Graph's 62-day window, so a valid request is never cut short,
/// while a nonsense one cannot build a huge string.
const MAX_SLOTS: i64 = 10 * 7 * 24 * 12;

impl DryRunGraph {
    /// `base_url` as given to the live client, so recorded paths match what it would send.
    pub fn new(base_url: String, recorder: Arc<dyn GraphRecorder>) -> Self {
        Self {
            base_url: trim_base_url(&base_url),
            recorder,
        }
    }

    async fn record(&self, call: Prepared) {
        let path = self.full_path(&call.path);
        tracing::info!(op = call.op.name, method = %call.op.method, %path, "dry run: Graph call recorded, not sent");
        self.recorder
            .record(RecordedCall {
                method: call.op.method.to_string(),
                path,
                body: call.body,
            })
            .await;
    }

    /// The lookup the live client makes before a mail or draft an earlier attempt may have made. A dry run
    /// never made one, so it is not found.
    async fn look_up(&self, mailbox: &str, call: &Prepared) -> Result<(), GraphError> {
        if let Some(key) = call
            .key
            .as_deref()
            .filter(|_| crate::idempotency::checking())
        {
            self.record(Prepared::find_message(mailbox, key)?).await;
            crate::idempotency::checked_not_made();
        }
        Ok(())
    }

    /// The path and query reqwest would put on the wire: the same URL parsing the live client goes
    /// through.
    fn full_path(&self, relative: &str) -> String {
        match url::Url::parse(&format!("{}{relative}", self.base_url)) {
            Ok(url) => match url.query() {
                Some(query) => format!("{}?{query}", url.path()),
                None => url.path().to_owned(),
            },
            Err(_) => relative.to_owned(),
        }
    }
}

#[async_trait::async_trait]
impl GraphApi for DryRunGraph {
    async fn get_user(&self, id_or_upn: &str) -> Result<User, GraphError> {
        self.record(Prepared::get_user(id_or_upn)?).await;
        Ok(placeholder_user(id_or_upn))
    }

    async fn get_schedule(
        &self,
        mailbox: &str,
        req: &GetScheduleRequest,
    ) -> Result<Vec<ScheduleInformation>, GraphError> {
        self.record(Prepared::get_schedule(mailbox, req)?).await;
        let free = "0".repeat(slot_count(req));
        Ok(req
            .schedules
            .iter()
            .map(|schedule| ScheduleInformation {
                schedule_id: schedule.clone(),
                availability_view: free.clone(),
                working_hours: Some(office_hours()),
                error: None,
            })
            .collect())
    }

    async fn create_draft(
        &self,
        mailbox: &str,
        message: &Message,
    ) -> Result<CreatedMessage, GraphError> {
        let call = Prepared::create_draft(mailbox, message)?;
        self.look_up(mailbox, &call).await?;
        self.record(call).await;
        Ok(CreatedMessage {
            id: dry_run_id(),
            web_link: Some(DRAFT_LINK.to_owned()),
        })
    }

    async fn send_mail(&self, sender: &str, message: &Message) -> Result<(), GraphError> {
        let call = Prepared::send_mail(sender, message)?;
        self.look_up(sender, &call).await?;
        self.record(call).await;
        Ok(())
    }

    async fn create_event(
        &self,
        organizer: &str,
        event: &Event,
    ) -> Result<CreatedEvent, GraphError> {
        self.record(Prepared::create_event(organizer, event)?).await;
        let id = dry_run_id();
        let (online_meeting, online_meeting_provider) = if event.is_online_meeting {
            (
                Some(OnlineMeetingInfo {
                    join_url: Some(format!("{JOIN_LINK}/{id}")),
                }),
                Some(
                    event
                        .online_meeting_provider
                        .clone()
                        .unwrap_or_else(|| TEAMS_FOR_BUSINESS.to_owned()),
                ),
            )
        } else {
            (None, None)
        };
        Ok(CreatedEvent {
            id,
            web_link: Some(EVENT_LINK.to_owned()),
            online_meeting,
            online_meeting_provider,
        })
    }

    async fn update_event(
        &self,
        organizer: &str,
        event_id: &str,
        patch: &Value,
    ) -> Result<(), GraphError> {
        self.record(Prepared::update_event(organizer, event_id, patch)?)
            .await;
        Ok(())
    }

    async fn get_mailbox_settings(&self, user: &str) -> Result<MailboxSettings, GraphError> {
        self.record(Prepared::get_mailbox_settings(user)?).await;
        Ok(MailboxSettings {
            time_zone: Some("UTC".to_owned()),
            working_hours: Some(office_hours()),
        })
    }

    async fn check_member_groups(
        &self,
        user: &str,
        group_ids: &[String],
    ) -> Result<Vec<String>, GraphError> {
        let call = Prepared::check_member_groups(user, group_ids)?;
        // Same short cut as the live client: an empty list is never sent.
        if !group_ids.is_empty() {
            self.record(call).await;
        }
        Ok(Vec::new())
    }
}

fn dry_run_id() -> String {
    format!("dry-run-{}", uuid::Uuid::new_v4())
}

fn placeholder_user(input: &str) -> User {
    let input = input.trim();
    match input.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
        {
            User {
                id: input.to_owned(),
                display_name: Some(local.to_owned()),
                mail: Some(input.to_owned()),
                user_principal_name: Some(input.to_owned()),
            }
        }
        _ => User {
            id: input.to_owned(),
            display_name: Some(input.to_owned()),
            mail: None,
            user_principal_name: None,
        },
    }
}

/// UTC 08:00–17:00, Monday to Friday.
fn office_hours() -> WorkingHours {
    WorkingHours {
        days_of_week: ["monday", "tuesday", "wednesday", "thursday", "friday"]
            .into_iter()
            .map(str::to_owned)
            .collect(),
        start_time: "08:00:00.0000000".to_owned(),
        end_time: "17:00:00.0000000".to_owned(),
        time_zone: Some(TimeZoneBase {
            name: "UTC".to_owned(),
        }),
    }
}

/// How many `availabilityView` digits Graph would return: one per started interval. Zero when the window
/// cannot be read.
fn slot_count(req: &GetScheduleRequest) -> usize {
    let interval = i64::from(req.availability_view_interval);
    let (Some(start), Some(end)) = (
        minutes_since_epoch(&req.start_time.date_time),
        minutes_since_epoch(&req.end_time.date_time),
    ) else {
        return 0;
    };
    if interval <= 0 || end <= start {
        return 0;
    }
    let slots = (end - start + interval - 1) / interval;
    usize::try_from(slots.min(MAX_SLOTS)).unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM[:SS[.fraction]]` (no offset, as Graph's `dateTime`) as minutes since 1970-01-01.
/// Seconds are dropped: Graph's intervals are whole minutes.
fn minutes_since_epoch(date_time: &str) -> Option<i64> {
    let (date, time) = date_time.trim().split_once('T')?;
    let mut date = date.splitn(3, '-');
    let year: i64 = date.next()?.parse().ok()?;
    let month: i64 = date.next()?.parse().ok()?;
    let day: i64 = date.next()?.parse().ok()?;
    let mut time = time.splitn(3, ':');
    let hour: i64 = time.next()?.parse().ok()?;
    let minute: i64 = time.next()?.parse().ok()?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(0..=23).contains(&hour)
        || !(0..=59).contains(&minute)
    {
        return None;
    }
    Some((days_from_civil(year, month, day) * 24 + hour) * 60 + minute)
}

/// Days since 1970-01-01 in the proleptic Gregorian calendar (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use std::time::Duration;

    use serde_json::json;
    use wiremock::matchers::any;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::graph::GraphClient;
    use crate::graph::testkit::{self, FM, FM_ENC, FakeGraph};
    use crate::graph::types::DateTimeTimeZone;

    /// Makes every call once, with the same inputs, through `api`.
    async fn exercise(api: &dyn GraphApi) {
        api.get_user(FM).await.unwrap();
        api.get_schedule(FM, &testkit::schedule_request())
            .await
            .unwrap();
        api.create_draft(FM, &testkit::message()).await.unwrap();
        api.send_mail("$svc@contoso.com", &testkit::message())
            .await
            .unwrap();
        api.create_event(FM, &testkit::event()).await.unwrap();
        api.update_event(FM, "AAMk+/=", &json!({ "subject": "Moved" }))
            .await
            .unwrap();
        api.get_mailbox_settings("Lee@Contoso.com").await.unwrap();
        api.check_member_groups(FM, &testkit::group_ids())
            .await
            .unwrap();
        api.check_member_groups(FM, &[]).await.unwrap();
    }

    #[tokio::test]
    async fn records_exactly_what_the_live_client_sends() {
        let server = MockServer::start().await;
        testkit::mount_token(&server).await;
        Mock::given(any())
            .respond_with(FakeGraph)
            .mount(&server)
            .await;
        let base = format!("{}/v1.0/", server.uri());

        let live = GraphClient::new(
            testkit::http(),
            base.clone(),
            testkit::token_provider(&server),
            Duration::from_secs(5),
        );
        exercise(&live).await;
        let sent: Vec<RecordedCall> = testkit::graph_requests(&server)
            .await
            .iter()
            .map(|r| RecordedCall {
                method: r.method.to_string(),
                path: testkit::path_and_query(r),
                body: (!r.body.is_empty()).then(|| r.body_json().unwrap()),
            })
            .collect();

        let recorder = Arc::new(MemoryRecorder::new());
        let dry = DryRunGraph::new(base, Arc::clone(&recorder) as Arc<dyn GraphRecorder>);
        exercise(&dry).await;
        let recorded = recorder.calls();

        assert_eq!(recorded.len(), 8);
        assert_eq!(recorded, sent);
        assert_eq!(
            recorded[0].path,
            format!("/v1.0/users/{FM_ENC}?$select=id,displayName,mail,userPrincipalName")
        );
        assert_eq!(
            recorded[3].path,
            "/v1.0/users/('%24svc%40contoso.com')/sendMail"
        );
        assert_eq!(
            recorded[5].path,
            format!("/v1.0/users/{FM_ENC}/events/AAMk%2B%2F%3D")
        );
        assert_eq!(recorded[5].method, "PATCH");
    }

    #[tokio::test]
    async fn makes_no_network_call() {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(500))
            .expect(0)
            .mount(&server)
            .await;
        let recorder = Arc::new(MemoryRecorder::new());
        let dry = DryRunGraph::new(format!("{}/v1.0", server.uri()), recorder.clone());
        exercise(&dry).await;
        assert_eq!(recorder.calls().len(), 8);
        assert!(server.received_requests().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn placeholders() {
        let recorder = Arc::new(MemoryRecorder::new());
        let dry = DryRunGraph::new(
            "https://graph.microsoft.com/v1.0".to_owned(),
            recorder.clone(),
        );

        let user = dry.get_user(FM).await.unwrap();
        assert_eq!(user.mail.as_deref(), Some(FM));
        assert_eq!(user.display_name.as_deref(), Some("dana"));
        assert_eq!(user.user_principal_name.as_deref(), Some(FM));
        let user = dry
            .get_user("87d349ed-44d7-43e1-9a83-5f2406dee5bd")
            .await
            .unwrap();
        assert_eq!(user.id, "87d349ed-44d7-43e1-9a83-5f2406dee5bd");
        assert_eq!(user.mail, None);

        let schedules = dry
            .get_schedule(FM, &testkit::schedule_request())
            .await
            .unwrap();
        assert_eq!(schedules.len(), 2);
        assert_eq!(schedules[1].schedule_id, "tam@fabrikam.example");
        assert!(schedules.iter().all(|s| s.availability_view == "0000"));

        let draft = dry.create_draft(FM, &testkit::message()).await.unwrap();
        assert!(draft.id.starts_with("dry-run-"), "{}", draft.id);
        assert_eq!(draft.web_link.as_deref(), Some(DRAFT_LINK));

        let event = dry.create_event(FM, &testkit::event()).await.unwrap();
        assert!(event.id.starts_with("dry-run-"));
        assert!(event.web_link.is_some());
        assert!(event.join_url().unwrap().starts_with(JOIN_LINK));
        assert_eq!(
            event.online_meeting_provider.as_deref(),
            Some(TEAMS_FOR_BUSINESS)
        );
        let offline = Event {
            is_online_meeting: false,
            online_meeting_provider: None,
            ..testkit::event()
        };
        assert_eq!(
            dry.create_event(FM, &offline).await.unwrap().join_url(),
            None
        );

        let settings = dry.get_mailbox_settings(FM).await.unwrap();
        assert_eq!(settings.time_zone.as_deref(), Some("UTC"));
        let wh = settings.working_hours.unwrap();
        assert_eq!(wh.days_of_week.len(), 5);
        assert_eq!(
            (wh.start_time.as_str(), wh.end_time.as_str()),
            ("08:00:00.0000000", "17:00:00.0000000")
        );

        assert!(
            dry.check_member_groups(FM, &testkit::group_ids())
                .await
                .unwrap()
                .is_empty()
        );
        dry.send_mail(FM, &testkit::message()).await.unwrap();
        dry.update_event(FM, "e1", &json!({})).await.unwrap();
    }

    #[tokio::test]
    async fn invalid_input_is_refused_like_the_live_client_and_not_recorded() {
        let recorder = Arc::new(MemoryRecorder::new());
        let dry = DryRunGraph::new(
            "https://graph.microsoft.com/v1.0".to_owned(),
            recorder.clone(),
        );
        assert!(matches!(
            dry.get_user("").await,
            Err(GraphError::InvalidRequest(_))
        ));
        assert!(matches!(
            dry.update_event(FM, "e1", &json!("x")).await,
            Err(GraphError::InvalidRequest(_))
        ));
        assert!(recorder.calls().is_empty());
    }

    #[test]
    fn slot_count_table() {
        let req = |start: &str, end: &str, interval: u32| GetScheduleRequest {
            schedules: vec![],
            start_time: DateTimeTimeZone::utc(start),
            end_time: DateTimeTimeZone::utc(end),
            availability_view_interval: interval,
        };
        let table = [
            (req("2026-12-01T08:00:00", "2026-12-01T10:00:00", 30), 4),
            (req("2026-12-01T08:00:00", "2026-12-01T10:10:00", 30), 5),
            (
                req(
                    "2026-12-01T08:00:00.0000000",
                    "2026-12-05T18:00:00.0000000",
                    30,
                ),
                4 * 48 + 20,
            ),
            (req("2026-02-28T23:00", "2026-03-01T01:00", 60), 2),
            (req("2028-02-28T23:00", "2028-03-01T01:00", 60), 26),
            (req("2026-12-31T23:30:00", "2027-01-01T00:30:00", 15), 4),
            (req("2026-12-01T10:00:00", "2026-12-01T08:00:00", 30), 0),
            (req("2026-12-01T08:00:00", "2026-12-01T10:00:00", 0), 0),
            (req("soon", "2026-12-01T10:00:00", 30), 0),
            (req("2026-13-01T08:00:00", "2026-12-01T10:00:00", 30), 0),
            (req("1900-01-01T00:00:00", "2999-01-01T00:00:00", 5), 20_160),
        ];
        for (r, expected) in table {
            assert_eq!(
                slot_count(&r),
                expected,
                "{} .. {} / {}",
                r.start_time.date_time,
                r.end_time.date_time,
                r.availability_view_interval
            );
        }
    }

    #[test]
    fn days_from_civil_matches_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2026, 11, 24), 20_781);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }
}
