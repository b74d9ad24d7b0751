//! The intro invite as a chain of jobs, each with one outside effect: find the slots (getSchedule), draft
//! the intro email in the FM's mailbox, post the preview card; and, after Send invite, create the event
//! (with a `transactionId`, so a retry never makes a second meeting) and update the card for everyone.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::effect::{
    Effect, EffectContext, EffectOutcome, ReplyTarget, UpdateActivity, card_activity, send_job,
    text_activity,
};
use crate::cards::{self, InviteState, InviteView, SlotChoice};
use crate::domain::engagement::{Person, RosterMember, is_required_attendee};
use crate::domain::slots::{self, AttendeeAvailability, SlotSearch};
use crate::graph::{
    Attendee, DateTimeTimeZone, Event, GetScheduleRequest, ItemBody, Message, Recipient,
};
use crate::store::{Change, Engagement, InviteRecord, NewJob};
use crate::templates::IntroContext;

const INTERVAL_MINUTES: u32 = 30;
const SLOTS_OFFERED: usize = 3;

/// Where scheduling happens when the FM's mailbox does not say.
#[derive(Debug, Clone)]
pub struct SchedulingSettings {
    pub time_zone: String,
    pub work_start: jiff::civil::Time,
    pub work_end: jiff::civil::Time,
}

/// What an invite remembers between its steps (stored as JSON with the invite).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InviteData {
    pub within_days: u32,
    pub duration_minutes: u32,
    pub requested_by: String,
    pub reply: Option<ReplyTarget>,
    #[serde(default)]
    pub time_zone: String,
    #[serde(default)]
    pub slots: Vec<ProposedSlot>,
    #[serde(default)]
    pub draft_id: Option<String>,
    #[serde(default)]
    pub draft_link: Option<String>,
    #[serde(default)]
    pub chosen: Option<usize>,
    #[serde(default)]
    pub decided_by: Option<String>,
    #[serde(default)]
    pub event_id: Option<String>,
    #[serde(default)]
    pub event_link: Option<String>,
    #[serde(default)]
    pub join_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposedSlot {
    pub start: Timestamp,
    pub end: Timestamp,
    pub label: String,
    pub note: Option<String>,
}

impl InviteData {
    pub fn from_record(record: &InviteRecord) -> InviteData {
        serde_json::from_value(record.data.clone()).unwrap_or_default()
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The mailbox fieldbot drafts in and organizes from: the FM's UPN or email, else their Entra object id
/// (Graph accepts either in `/users/{id}`).
pub fn fm_mailbox(fm: &Person) -> Option<String> {
    fm.upn
        .clone()
        .or_else(|| fm.email.clone())
        .or_else(|| fm.aad_object_id.clone())
}

fn card_key(invite_id: i64) -> String {
    format!("invite:{invite_id}")
}

fn failed_graph(e: crate::graph::GraphError, idempotent: bool) -> EffectOutcome {
    EffectOutcome::Failed {
        error: e.into(),
        idempotent,
        conversation_id: None,
    }
}

fn failed_store(e: crate::store::StoreError) -> EffectOutcome {
    EffectOutcome::Failed {
        error: e.into(),
        idempotent: true,
        conversation_id: None,
    }
}

/// Loads the engagement and invite a step works on; `None` when either is gone (nothing left to do).
async fn load(
    ctx: &EffectContext,
    engagement_id: i64,
    invite_id: i64,
) -> Result<Option<(Engagement, InviteRecord)>, EffectOutcome> {
    let engagement = ctx
        .store
        .engagement(engagement_id)
        .await
        .map_err(failed_store)?;
    let invite = ctx.store.invite(invite_id).await.map_err(failed_store)?;
    Ok(engagement.zip(invite))
}

/// The engagement and invite a step works on, if the invite is in the state the step expects; otherwise
/// the step has nothing to do (it ran already, or the invite moved on).
async fn load_in(
    ctx: &EffectContext,
    engagement_id: i64,
    invite_id: i64,
    state: &str,
) -> Result<(Engagement, InviteRecord), EffectOutcome> {
    match load(ctx, engagement_id, invite_id).await? {
        Some((engagement, invite)) if invite.state == state => Ok((engagement, invite)),
        _ => Err(nothing()),
    }
}

fn nothing() -> EffectOutcome {
    EffectOutcome::Done {
        result: None,
        changes: Vec::new(),
        jobs: Vec::new(),
    }
}

/// Step 1: the attendees' availability, scored into the best slots.
pub async fn propose(
    ctx: &EffectContext,
    key: &str,
    engagement_id: i64,
    invite_id: i64,
) -> EffectOutcome {
    let (engagement, invite) = match load_in(ctx, engagement_id, invite_id, "planning").await {
        Ok(found) => found,
        Err(done) => return done,
    };
    let mut data = InviteData::from_record(&invite);
    let reply = data.reply.clone();
    let tell = |text: String| match &reply {
        Some(to) => vec![send_job(ctx, key, to, text_activity(&text), None)],
        None => Vec::new(),
    };
    let Some(mailbox) = fm_mailbox(&engagement.fm) else {
        return EffectOutcome::Done {
            result: None,
            changes: Vec::new(),
            jobs: tell(
                "I don't know the FastTrack Manager's mailbox, so I can't check calendars.".into(),
            ),
        };
    };
    let (time_zone, tz) = match ctx.graph.get_mailbox_settings(&mailbox).await {
        Ok(settings) => settings
            .time_zone
            .and_then(|name| jiff::tz::TimeZone::get(&name).ok().map(|tz| (name, tz)))
            .unwrap_or_else(|| default_zone(ctx)),
        Err(
            e @ (crate::graph::GraphError::Forbidden { .. }
            | crate::graph::GraphError::NotFound { .. }),
        ) => {
            return EffectOutcome::Done {
                result: None,
                changes: Vec::new(),
                jobs: tell(e.user_message(&mailbox)),
            };
        }
        Err(e) => return failed_graph(e, true),
    };
    let attendees: Vec<&RosterMember> = engagement
        .roster
        .iter()
        .filter(|m| m.person.address().is_some())
        .collect();
    let now = Timestamp::from_millisecond(ctx.clock.now()).unwrap_or_else(|_| Timestamp::now());
    let (start, end) = slots::schedule_window(now, &tz, data.within_days, INTERVAL_MINUTES);
    let request = GetScheduleRequest {
        schedules: attendees
            .iter()
            .filter_map(|m| m.person.address().map(str::to_string))
            .collect(),
        start_time: DateTimeTimeZone::utc(graph_time(start)),
        end_time: DateTimeTimeZone::utc(graph_time(end)),
        availability_view_interval: INTERVAL_MINUTES,
    };
    let schedules = match ctx.graph.get_schedule(&mailbox, &request).await {
        Ok(s) => s,
        Err(
            e @ (crate::graph::GraphError::Forbidden { .. }
            | crate::graph::GraphError::NotFound { .. }),
        ) => {
            return EffectOutcome::Done {
                result: None,
                changes: Vec::new(),
                jobs: tell(e.user_message(&mailbox)),
            };
        }
        Err(e) => return failed_graph(e, true),
    };
    let availability: Vec<AttendeeAvailability> = attendees
        .iter()
        .map(|m| {
            let address = m.person.address().unwrap_or_default().to_string();
            let view = schedules
                .iter()
                .find(|s| s.schedule_id.eq_ignore_ascii_case(&address))
                .map(|s| s.availability_view.clone())
                .unwrap_or_default();
            AttendeeAvailability {
                address,
                required: is_required_attendee(m.role),
                view,
            }
        })
        .collect();
    let search = SlotSearch {
        window_start: start,
        interval_minutes: INTERVAL_MINUTES,
        duration_minutes: data.duration_minutes,
        time_zone: tz.clone(),
        work_start: ctx.scheduling.work_start,
        work_end: ctx.scheduling.work_end,
        business_days: data.within_days,
        not_before: now + jiff::SignedDuration::from_hours(1),
    };
    let found = slots::best_slots(&search, &availability, SLOTS_OFFERED);
    data.time_zone = time_zone;
    data.slots = found
        .iter()
        .map(|slot| ProposedSlot {
            start: slot.start,
            end: slot.end,
            label: slots::describe(slot, &tz),
            note: (slot.optional_total > 0).then(|| {
                format!(
                    "{} of {} optional free",
                    slot.optional_free, slot.optional_total
                )
            }),
        })
        .collect();
    let mut record = InviteRecord {
        data: data.to_value(),
        ..invite.clone()
    };
    if data.slots.is_empty() {
        record.state = "no_slots".into();
        let card = invite_card(&engagement, &record, ctx);
        return EffectOutcome::Done {
            result: None,
            jobs: post_or_update(ctx, key, &record, card, reply.as_ref()).await,
            changes: vec![Change::SaveInvite {
                invite: record,
                expected_version: Some(invite.version),
            }],
        };
    }
    record.state = "drafting".into();
    let next = Effect::DraftIntroEmail {
        engagement_id,
        invite_id,
        conversation_id: engagement.conversation_id.clone(),
    };
    EffectOutcome::Done {
        result: None,
        changes: vec![Change::SaveInvite {
            invite: record,
            expected_version: Some(invite.version),
        }],
        jobs: vec![super::job(
            &next,
            format!("{key}:draft"),
            ctx.clock.now(),
            ctx.max_attempts,
        )],
    }
}

fn default_zone(ctx: &EffectContext) -> (String, jiff::tz::TimeZone) {
    let name = ctx.scheduling.time_zone.clone();
    let tz = jiff::tz::TimeZone::get(&name).unwrap_or(jiff::tz::TimeZone::UTC);
    (name, tz)
}

/// Graph's `dateTime` form for a UTC instant: `2026-11-24T09:00:00`.
fn graph_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S").to_string()
}

/// Step 2: the intro email as a draft in the FM's mailbox (the FM reviews and sends it from Outlook), then
/// the preview card.
pub async fn draft(
    ctx: &EffectContext,
    key: &str,
    engagement_id: i64,
    invite_id: i64,
) -> EffectOutcome {
    let (engagement, invite) = match load_in(ctx, engagement_id, invite_id, "drafting").await {
        Ok(found) => found,
        Err(done) => return done,
    };
    let mut data = InviteData::from_record(&invite);
    let reply = data.reply.clone();
    let mut record = invite.clone();
    if data.draft_id.is_none() {
        let Some(mailbox) = fm_mailbox(&engagement.fm) else {
            return nothing();
        };
        let intro = IntroContext::from_roster(
            &engagement.customer,
            engagement.motion,
            &engagement.fm.name,
            &engagement.roster,
            None,
        );
        let email = match ctx.templates.intro_email(&intro) {
            Ok(email) => email,
            Err(e) => {
                tracing::error!(error = %e, "the intro email template failed");
                return nothing();
            }
        };
        let message = to_roster(&engagement, email);
        match ctx.graph.create_draft(&mailbox, &message).await {
            Ok(created) => {
                data.draft_id = Some(created.id);
                data.draft_link = created.web_link;
            }
            Err(
                e @ (crate::graph::GraphError::Forbidden { .. }
                | crate::graph::GraphError::NotFound { .. }),
            ) => {
                // The preview still goes out; the card says why there is no draft.
                tracing::warn!(error = %e, "the intro email draft could not be created");
            }
            // A draft that may exist is not created again blindly: POST is not idempotent.
            Err(e) => return failed_graph(e, false),
        }
    }
    record.state = "proposed".into();
    record.data = data.to_value();
    let card = invite_card(&engagement, &record, ctx);
    EffectOutcome::Done {
        result: None,
        jobs: post_or_update(ctx, key, &record, card, reply.as_ref()).await,
        changes: vec![Change::SaveInvite {
            invite: record,
            expected_version: Some(invite.version),
        }],
    }
}

/// Step 3 (after Send invite): the event in the FM's calendar, which makes Graph send the invitations.
pub async fn create_event(
    ctx: &EffectContext,
    key: &str,
    engagement_id: i64,
    invite_id: i64,
) -> EffectOutcome {
    let (engagement, invite) = match load_in(ctx, engagement_id, invite_id, "sending").await {
        Ok(found) => found,
        Err(done) => return done,
    };
    let mut data = InviteData::from_record(&invite);
    let Some(slot) = data.chosen.and_then(|i| data.slots.get(i)).cloned() else {
        return nothing();
    };
    let Some(mailbox) = fm_mailbox(&engagement.fm) else {
        return nothing();
    };
    let intro = IntroContext::from_roster(
        &engagement.customer,
        engagement.motion,
        &engagement.fm.name,
        &engagement.roster,
        Some(slot.label.clone()),
    );
    let (subject, body) = match (
        ctx.templates.invite_subject(&intro),
        ctx.templates.invite_body(&intro),
    ) {
        (Ok(s), Ok(b)) => (s, b),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "the invite template failed");
            return nothing();
        }
    };
    let event = Event {
        subject,
        body: ItemBody::html(body),
        start: DateTimeTimeZone::utc(graph_time(slot.start)),
        end: DateTimeTimeZone::utc(graph_time(slot.end)),
        attendees: engagement
            .roster
            .iter()
            .filter_map(|m| {
                let address = m.person.address()?;
                let name = Some(m.person.name.clone());
                Some(if is_required_attendee(m.role) {
                    Attendee::required(address, name)
                } else {
                    Attendee::optional(address, name)
                })
            })
            .collect(),
        is_online_meeting: true,
        online_meeting_provider: Some(crate::graph::TEAMS_FOR_BUSINESS.to_string()),
        transaction_id: Some(format!("fieldbot-invite-{invite_id}")),
        recurrence: None,
        allow_new_time_proposals: Some(true),
    };
    // Idempotent thanks to the transactionId: a retry returns the first event.
    let created = match ctx.graph.create_event(&mailbox, &event).await {
        Ok(created) => created,
        Err(
            e @ (crate::graph::GraphError::Forbidden { .. }
            | crate::graph::GraphError::NotFound { .. }),
        ) => {
            let jobs = data
                .reply
                .as_ref()
                .map(|to| send_job(ctx, key, to, text_activity(&e.user_message(&mailbox)), None))
                .into_iter()
                .collect();
            let mut record = invite.clone();
            record.state = "proposed".into();
            return EffectOutcome::Done {
                result: None,
                changes: vec![Change::SaveInvite {
                    invite: record,
                    expected_version: Some(invite.version),
                }],
                jobs,
            };
        }
        Err(e) => return failed_graph(e, true),
    };
    data.join_url = created.join_url().map(str::to_string);
    data.event_id = Some(created.id.clone());
    data.event_link = created.web_link.clone();
    let mut record = invite.clone();
    record.state = "sent".into();
    record.data = data.to_value();
    let card = invite_card(&engagement, &record, ctx);
    let mut jobs = post_or_update(ctx, key, &record, card, data.reply.as_ref()).await;
    // The day before the meeting, the FM gets the prep checklist (a durable, scheduled job).
    if let Some(run_at) = prep_reminder_at(slot.start.as_millisecond(), ctx.clock.now()) {
        let reminder = Effect::PrepReminder {
            engagement_id,
            invite_id,
        };
        let mut job = super::job(
            &reminder,
            format!("invite:{invite_id}:prep-reminder"),
            ctx.clock.now(),
            ctx.max_attempts,
        );
        job.run_at = run_at;
        jobs.push(job);
    }
    EffectOutcome::Done {
        result: Some(serde_json::json!({ "eventId": created.id })),
        jobs,
        changes: vec![Change::SaveInvite {
            invite: record,
            expected_version: Some(invite.version),
        }],
    }
}

/// When the FM gets the prep checklist for a meeting starting at `start`: a day before it, or at once when
/// it was booked less than a day ahead; never for a meeting already under way.
fn prep_reminder_at(
    start: crate::clock::Millis,
    now: crate::clock::Millis,
) -> Option<crate::clock::Millis> {
    (start > now).then_some((start - 86_400_000).max(now))
}

/// The day before the intro meeting: the prep checklist, in the engagement's channel, for the FM.
pub async fn prep_reminder(
    ctx: &EffectContext,
    key: &str,
    engagement_id: i64,
    invite_id: i64,
) -> EffectOutcome {
    let (engagement, invite) = match load(ctx, engagement_id, invite_id).await {
        Ok(Some(found)) => found,
        Ok(None) => return nothing(),
        Err(failed) => return failed,
    };
    if !engagement.active || invite.state != "sent" {
        return nothing();
    }
    let items: Vec<(crate::domain::engagement::PrepItem, Option<cards::TickInfo>)> =
        crate::domain::engagement::PrepItem::for_motion(engagement.motion)
            .into_iter()
            .map(|item| {
                let tick = engagement
                    .prep
                    .iter()
                    .find(|t| t.item == item && t.done)
                    .map(|t| cards::TickInfo {
                        by: t.by.clone(),
                        at: super::fta::format_time(t.at),
                    });
                (item, tick)
            })
            .collect();
    let to = ReplyTarget {
        service_url: engagement.service_url.clone(),
        conversation_id: engagement.conversation_id.clone(),
        reply_to_id: None,
    };
    let heads_up = text_activity(&format!(
        "{}: the intro meeting with the account team for **{}** is tomorrow. Here is the prep checklist.",
        cards::plain(&engagement.fm.name),
        cards::plain(&engagement.customer)
    ));
    let card = cards::prep_card(
        engagement.id,
        &engagement.customer,
        engagement.motion,
        &items,
    );
    EffectOutcome::Done {
        result: None,
        changes: Vec::new(),
        jobs: vec![
            send_job(ctx, &format!("{key}:text"), &to, heads_up, None),
            send_job(ctx, key, &to, card_activity(card), None),
        ],
    }
}

/// Updates the invite's card where it already is, or posts it.
async fn post_or_update(
    ctx: &EffectContext,
    key: &str,
    invite: &InviteRecord,
    card: Value,
    reply: Option<&ReplyTarget>,
) -> Vec<NewJob> {
    if let Ok(Some(posted)) = ctx.store.card(&card_key(invite.id)).await {
        let effect = Effect::ConnectorUpdate(UpdateActivity {
            service_url: posted.service_url,
            conversation_id: posted.conversation_id,
            activity_id: posted.activity_id,
            activity: card_activity(card),
        });
        return vec![super::job(
            &effect,
            format!("{key}:card"),
            ctx.clock.now(),
            ctx.max_attempts,
        )];
    }
    reply
        .map(|to| send_job(ctx, key, to, card_activity(card), Some(card_key(invite.id))))
        .into_iter()
        .collect()
}

/// The preview card for an invite in its current state.
pub fn invite_card(engagement: &Engagement, invite: &InviteRecord, ctx: &EffectContext) -> Value {
    invite_card_with(engagement, invite, &agenda(ctx))
}

fn agenda(ctx: &EffectContext) -> Vec<(String, String)> {
    ctx.templates
        .agenda()
        .iter()
        .map(|item| (item.letter.clone(), item.text.clone()))
        .collect()
}

pub fn invite_card_with(
    engagement: &Engagement,
    invite: &InviteRecord,
    agenda: &[(String, String)],
) -> Value {
    let data = InviteData::from_record(invite);
    let state = match invite.state.as_str() {
        "no_slots" => InviteState::NoSlots {
            within_days: data.within_days,
        },
        "cancelled" => InviteState::Cancelled {
            by: data.decided_by.clone().unwrap_or_default(),
        },
        "sent" => InviteState::Sent {
            slot_label: data
                .chosen
                .and_then(|i| data.slots.get(i))
                .map(|s| s.label.clone())
                .unwrap_or_default(),
            event_link: data.event_link.clone(),
            join_url: data.join_url.clone(),
            by: data.decided_by.clone().unwrap_or_default(),
        },
        _ => InviteState::Proposed,
    };
    let (required, optional): (Vec<&RosterMember>, Vec<&RosterMember>) = engagement
        .roster
        .iter()
        .partition(|m| is_required_attendee(m.role));
    let pairs = |members: Vec<&RosterMember>| {
        members
            .into_iter()
            .map(|m| (m.role, m.person.clone()))
            .collect::<Vec<_>>()
    };
    cards::invite_preview_card(&InviteView {
        engagement_id: engagement.id,
        invite_id: invite.id,
        customer: engagement.customer.clone(),
        duration_minutes: data.duration_minutes,
        slots: data
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| SlotChoice {
                id: i.to_string(),
                label: s.label.clone(),
                note: s.note.clone(),
            })
            .collect(),
        required: pairs(required),
        optional: pairs(optional),
        agenda: agenda.to_vec(),
        draft_link: data.draft_link.clone(),
        state,
        time_zone: data.time_zone.clone(),
    })
}

/// After the account team sync: the follow-up email (summary, open items, next steps, asks) drafted in the
/// FM's mailbox, addressed to the roster.
pub async fn draft_followup(
    ctx: &EffectContext,
    engagement_id: i64,
    notes: &Value,
) -> EffectOutcome {
    let engagement = match ctx.store.engagement(engagement_id).await {
        Ok(Some(e)) => e,
        Ok(None) => return nothing(),
        Err(e) => return failed_store(e),
    };
    let Some(mailbox) = fm_mailbox(&engagement.fm) else {
        return nothing();
    };
    let text = |k: &str| {
        notes
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let list = |k: &str| {
        notes
            .get(k)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let flag = |k: &str| notes.get(k).and_then(Value::as_bool).unwrap_or(false);
    let asks = ctx.templates.followup_asks();
    let done = [
        flag("intro_email_requested"),
        flag("teams_channel_joined"),
        !text("rhythm").is_empty(),
    ];
    let context = crate::templates::FollowupContext {
        customer: engagement.customer.clone(),
        fm_name: engagement.fm.name.clone(),
        summary: text("summary"),
        open_items: list("open_items"),
        next_steps: list("next_steps"),
        asks: asks
            .iter()
            .zip(done)
            .map(|(text, done)| crate::templates::AskLine {
                text: text.clone(),
                done,
            })
            .collect(),
    };
    let email = match ctx.templates.followup_email(&context) {
        Ok(email) => email,
        Err(e) => {
            tracing::error!(error = %e, "the follow-up email template failed");
            return nothing();
        }
    };
    let message = to_roster(&engagement, email);
    match ctx.graph.create_draft(&mailbox, &message).await {
        Ok(created) => EffectOutcome::Done {
            result: Some(serde_json::json!({ "draftId": created.id, "webLink": created.web_link })),
            changes: Vec::new(),
            jobs: Vec::new(),
        },
        Err(
            e @ (crate::graph::GraphError::Forbidden { .. }
            | crate::graph::GraphError::NotFound { .. }),
        ) => {
            tracing::warn!(error = %e, "the follow-up draft could not be created");
            nothing()
        }
        Err(e) => failed_graph(e, false),
    }
}

/// An email to everyone on the roster who has an address.
fn to_roster(engagement: &Engagement, email: crate::templates::RenderedEmail) -> Message {
    Message {
        subject: email.subject,
        body: ItemBody::html(email.html),
        to_recipients: engagement
            .roster
            .iter()
            .filter_map(|m| {
                m.person
                    .address()
                    .map(|a| Recipient::new(a, Some(m.person.name.clone())))
            })
            .collect(),
        cc_recipients: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prep_checklist_comes_a_day_ahead_or_at_once_for_a_meeting_booked_closer() {
        const DAY: i64 = 86_400_000;
        let now = 1_000 * DAY;
        assert_eq!(prep_reminder_at(now + 3 * DAY, now), Some(now + 2 * DAY));
        assert_eq!(
            prep_reminder_at(now + DAY / 2, now),
            Some(now),
            "booked for this afternoon"
        );
        assert_eq!(prep_reminder_at(now, now), None);
        assert_eq!(prep_reminder_at(now - 1, now), None);
    }
}
