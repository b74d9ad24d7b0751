//! The Graph resources fieldbot reads and writes, with only the fields it uses (graph.md §2–§3).
//!
//! Names are Graph's camelCase. Decoding is lenient: missing fields and `null` take their default, and
//! unknown fields are ignored, because Graph adds properties and nulls freely. Encoding omits unset
//! optional fields, so request bodies carry only what fieldbot means to set.

use serde::{Deserialize, Deserializer, Serialize};

/// `null` decodes as the default; `#[serde(default)]` alone only covers a missing field.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// The value of `onlineMeetingProvider` that asks for a Teams meeting.
pub const TEAMS_FOR_BUSINESS: &str = "teamsForBusiness";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct User {
    #[serde(deserialize_with = "nullable")]
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `null` for users without a mailbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_principal_name: Option<String>,
}

/// A wall-clock time without offset plus the zone it is in (`"2026-11-24T09:00:00"`, `"UTC"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DateTimeTimeZone {
    #[serde(deserialize_with = "nullable")]
    pub date_time: String,
    #[serde(deserialize_with = "nullable")]
    pub time_zone: String,
}

impl DateTimeTimeZone {
    pub fn new(date_time: impl Into<String>, time_zone: impl Into<String>) -> Self {
        Self {
            date_time: date_time.into(),
            time_zone: time_zone.into(),
        }
    }

    /// UTC is the one zone every mailbox supports (graph.md §3.1).
    pub fn utc(date_time: impl Into<String>) -> Self {
        Self::new(date_time, "UTC")
    }
}

/// Body of `POST /users/{id}/calendar/getSchedule`. Graph takes at most 20 schedules and a window under
/// 62 days per call (graph.md §3.7); callers chunk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GetScheduleRequest {
    #[serde(deserialize_with = "nullable")]
    pub schedules: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub start_time: DateTimeTimeZone,
    #[serde(deserialize_with = "nullable")]
    pub end_time: DateTimeTimeZone,
    /// Minutes per `availabilityView` digit, 5 to 1440.
    #[serde(deserialize_with = "nullable")]
    pub availability_view_interval: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ScheduleInformation {
    /// The SMTP address asked for.
    #[serde(deserialize_with = "nullable")]
    pub schedule_id: String,
    /// One digit per interval: 0 free, 1 tentative, 2 busy, 3 out of office, 4 working elsewhere.
    #[serde(deserialize_with = "nullable")]
    pub availability_view: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_hours: Option<WorkingHours>,
    /// Set when this one schedule could not be resolved; the call as a whole still succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<FreeBusyError>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FreeBusyError {
    #[serde(deserialize_with = "nullable")]
    pub message: String,
    #[serde(deserialize_with = "nullable")]
    pub response_code: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WorkingHours {
    /// Lowercase day names (`"monday"`).
    #[serde(deserialize_with = "nullable")]
    pub days_of_week: Vec<String>,
    /// `"08:00:00.0000000"`.
    #[serde(deserialize_with = "nullable")]
    pub start_time: String,
    #[serde(deserialize_with = "nullable")]
    pub end_time: String,
    /// May be a `customTimeZone` (bias/offsets); only its name is kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<TimeZoneBase>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TimeZoneBase {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
}

/// A mail message to draft or send.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Message {
    #[serde(deserialize_with = "nullable")]
    pub subject: String,
    #[serde(deserialize_with = "nullable")]
    pub body: ItemBody,
    #[serde(deserialize_with = "nullable")]
    pub to_recipients: Vec<Recipient>,
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub cc_recipients: Vec<Recipient>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ItemBody {
    #[serde(deserialize_with = "nullable")]
    pub content_type: BodyType,
    #[serde(deserialize_with = "nullable")]
    pub content: String,
}

impl ItemBody {
    pub fn html(content: impl Into<String>) -> Self {
        Self {
            content_type: BodyType::Html,
            content: content.into(),
        }
    }

    pub fn text(content: impl Into<String>) -> Self {
        Self {
            content_type: BodyType::Text,
            content: content.into(),
        }
    }
}

/// Encoded as the canonical lowercase value the schema requires; the docs' `"HTML"`/`"Text"` spellings
/// are accepted when decoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyType {
    #[default]
    #[serde(alias = "Text", alias = "TEXT")]
    Text,
    #[serde(alias = "Html", alias = "HTML")]
    Html,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Recipient {
    #[serde(deserialize_with = "nullable")]
    pub email_address: EmailAddress,
}

impl Recipient {
    pub fn new(address: impl Into<String>, name: Option<String>) -> Self {
        Self {
            email_address: EmailAddress {
                address: address.into(),
                name,
            },
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EmailAddress {
    #[serde(deserialize_with = "nullable")]
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A calendar event to create. Creating it sends the invitations at once (graph.md §3.4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Event {
    #[serde(deserialize_with = "nullable")]
    pub subject: String,
    #[serde(deserialize_with = "nullable")]
    pub body: ItemBody,
    #[serde(deserialize_with = "nullable")]
    pub start: DateTimeTimeZone,
    #[serde(deserialize_with = "nullable")]
    pub end: DateTimeTimeZone,
    #[serde(deserialize_with = "nullable")]
    pub attendees: Vec<Attendee>,
    #[serde(deserialize_with = "nullable")]
    pub is_online_meeting: bool,
    /// [`TEAMS_FOR_BUSINESS`] for a Teams meeting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online_meeting_provider: Option<String>,
    /// Makes a retried create return the first event instead of a second one (graph.md §3.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// A `patternedRecurrence` (`{pattern, range}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recurrence: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_new_time_proposals: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Attendee {
    #[serde(deserialize_with = "nullable")]
    pub email_address: EmailAddress,
    #[serde(rename = "type", deserialize_with = "nullable")]
    pub attendee_type: AttendeeType,
}

impl Attendee {
    pub fn required(address: impl Into<String>, name: Option<String>) -> Self {
        Self::new(address, name, AttendeeType::Required)
    }

    pub fn optional(address: impl Into<String>, name: Option<String>) -> Self {
        Self::new(address, name, AttendeeType::Optional)
    }

    fn new(address: impl Into<String>, name: Option<String>, attendee_type: AttendeeType) -> Self {
        Self {
            email_address: EmailAddress {
                address: address.into(),
                name,
            },
            attendee_type,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttendeeType {
    #[default]
    #[serde(alias = "Required")]
    Required,
    #[serde(alias = "Optional")]
    Optional,
    #[serde(alias = "Resource")]
    Resource,
}

/// The parts of a created draft fieldbot keeps: `web_link` opens it in Outlook on the web.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CreatedMessage {
    #[serde(deserialize_with = "nullable")]
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web_link: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CreatedEvent {
    #[serde(deserialize_with = "nullable")]
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web_link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online_meeting: Option<OnlineMeetingInfo>,
    /// `"unknown"` when a Teams meeting was asked for but the organizer cannot host one (graph.md §3.3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online_meeting_provider: Option<String>,
}

impl CreatedEvent {
    /// The Teams join link, if Graph created a meeting; an empty link counts as none.
    pub fn join_url(&self) -> Option<&str> {
        self.online_meeting
            .as_ref()
            .and_then(|m| m.join_url.as_deref())
            .filter(|url| !url.trim().is_empty())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OnlineMeetingInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join_url: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MailboxSettings {
    /// A Windows or IANA zone name, as the user set it in Outlook.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_hours: Option<WorkingHours>,
}

/// `{"value": [...]}`, the envelope of collection-returning actions.
#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub(crate) struct ValueList<T> {
    #[serde(default = "Vec::new", deserialize_with = "nullable")]
    pub(crate) value: Vec<T>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use serde_json::json;

    #[test]
    fn message_encodes_camel_case_and_skips_empty_cc() {
        let m = Message {
            subject: "Intro".into(),
            body: ItemBody::html("<p>Hi</p>"),
            to_recipients: vec![Recipient::new("a@contoso.example", Some("A".into()))],
            cc_recipients: vec![],
        };
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({
                "subject": "Intro",
                "body": { "contentType": "html", "content": "<p>Hi</p>" },
                "toRecipients": [ { "emailAddress": { "address": "a@contoso.example", "name": "A" } } ]
            })
        );
    }

    #[test]
    fn event_encodes_only_what_is_set() {
        let e = Event {
            subject: "Sync".into(),
            body: ItemBody::text("agenda"),
            start: DateTimeTimeZone::utc("2026-12-01T16:00:00"),
            end: DateTimeTimeZone::utc("2026-12-01T16:45:00"),
            attendees: vec![Attendee::optional("c@x.example", None)],
            ..Event::default()
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({
                "subject": "Sync",
                "body": { "contentType": "text", "content": "agenda" },
                "start": { "dateTime": "2026-12-01T16:00:00", "timeZone": "UTC" },
                "end": { "dateTime": "2026-12-01T16:45:00", "timeZone": "UTC" },
                "attendees": [ { "emailAddress": { "address": "c@x.example" }, "type": "optional" } ],
                "isOnlineMeeting": false
            })
        );
    }

    #[test]
    fn decoding_tolerates_nulls_missing_fields_and_doc_casing() {
        let u: User = serde_json::from_value(json!({
            "id": "u1", "displayName": null, "mail": null, "extra": [1, 2]
        }))
        .unwrap();
        assert_eq!(
            u,
            User {
                id: "u1".into(),
                ..User::default()
            }
        );

        let m: Message = serde_json::from_value(json!({
            "subject": null,
            "body": { "contentType": "HTML", "content": "<html>…</html>" },
            "toRecipients": null,
            "ccRecipients": [ { "emailAddress": { "address": "cc@x.example", "name": null } } ]
        }))
        .unwrap();
        assert_eq!(m.subject, "");
        assert_eq!(m.body.content_type, BodyType::Html);
        assert!(m.to_recipients.is_empty());
        assert_eq!(m.cc_recipients[0].email_address.address, "cc@x.example");

        let a: Attendee =
            serde_json::from_value(json!({ "type": "Required", "emailAddress": null })).unwrap();
        assert_eq!(a.attendee_type, AttendeeType::Required);

        let s: ScheduleInformation = serde_json::from_value(json!({
            "scheduleId": "x@y", "availabilityView": null,
            "workingHours": { "daysOfWeek": null, "startTime": "08:00:00.0000000",
                "timeZone": { "@odata.type": "#microsoft.graph.customTimeZone", "bias": -60, "name": "Customized Time Zone" } }
        }))
        .unwrap();
        let wh = s.working_hours.unwrap();
        assert_eq!(wh.time_zone.unwrap().name, "Customized Time Zone");
        assert!(wh.days_of_week.is_empty());
    }

    #[test]
    fn created_event_join_url() {
        let mut e: CreatedEvent = serde_json::from_value(json!({
            "id": "e1", "onlineMeetingProvider": "teamsForBusiness",
            "onlineMeeting": { "joinUrl": "https://teams.microsoft.com/l/meetup-join/x", "conferenceId": "1" }
        }))
        .unwrap();
        assert_eq!(
            e.join_url(),
            Some("https://teams.microsoft.com/l/meetup-join/x")
        );
        e.online_meeting = Some(OnlineMeetingInfo {
            join_url: Some(" ".into()),
        });
        assert_eq!(e.join_url(), None);
        e.online_meeting = None;
        assert_eq!(e.join_url(), None);
    }
}
