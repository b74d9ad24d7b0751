//! The recurring internal Field team sync: one Graph event series in the FM's calendar (created, or patched
//! when the rhythm changes), attendees that follow the roster, and the open follow-up items posted in the
//! channel before each sync — each a durable job, once per occurrence across replicas.

use serde_json::{Value, json};

use super::effect::{Effect, EffectContext, EffectOutcome, ReplyTarget, send_job, text_activity};
use crate::cards;
use crate::domain::engagement::{RosterMember, is_required_attendee};
use crate::domain::recurrence::SyncRhythm;
use crate::graph::{Attendee, DateTimeTimeZone, Event, ItemBody};
use crate::store::{Change, Engagement, NewJob, SyncSeries};
use crate::templates::SyncContext;

const REMINDER_BEFORE_MS: i64 = 3_600_000;

fn nothing() -> EffectOutcome {
    EffectOutcome::Done {
        result: None,
        changes: Vec::new(),
        jobs: Vec::new(),
    }
}

fn failed(error: impl Into<super::EffectError>, idempotent: bool) -> EffectOutcome {
    EffectOutcome::Failed {
        error: error.into(),
        idempotent,
        conversation_id: None,
    }
}

/// What a scheduled series stores.
pub fn rhythm_of(series: &SyncSeries) -> Option<SyncRhythm> {
    serde_json::from_value(series.data.get("rhythm")?.clone()).ok()
}

fn rhythm_version(series: &SyncSeries) -> i64 {
    series
        .data
        .get("rhythm_version")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

async fn load(
    ctx: &EffectContext,
    engagement_id: i64,
) -> Result<Option<(Engagement, SyncSeries)>, EffectOutcome> {
    let engagement = ctx
        .store
        .engagement(engagement_id)
        .await
        .map_err(|e| failed(e, true))?;
    let series = ctx
        .store
        .sync_series(engagement_id)
        .await
        .map_err(|e| failed(e, true))?;
    Ok(engagement
        .filter(|e| e.active)
        .zip(series.filter(|s| s.kind == "scheduled")))
}

fn attendees(roster: &[RosterMember]) -> Vec<Attendee> {
    roster
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
        .collect()
}

fn channel(engagement: &Engagement) -> ReplyTarget {
    ReplyTarget {
        service_url: engagement.service_url.clone(),
        conversation_id: engagement.conversation_id.clone(),
        reply_to_id: None,
    }
}

/// Creates the series (or patches it when the rhythm changed), then plans the first reminder.
pub async fn schedule(
    ctx: &EffectContext,
    key: &str,
    engagement_id: i64,
    version: i64,
) -> EffectOutcome {
    let (engagement, series) = match load(ctx, engagement_id).await {
        Ok(Some(found)) => found,
        Ok(None) => return nothing(),
        Err(f) => return f,
    };
    if rhythm_version(&series) != version {
        return nothing();
    }
    let (Some(rhythm), Some(mailbox)) = (
        rhythm_of(&series),
        super::invite::fm_mailbox(&engagement.fm),
    ) else {
        return nothing();
    };
    let context = SyncContext {
        customer: engagement.customer.clone(),
        fm_name: engagement.fm.name.clone(),
        rhythm: rhythm.describe(),
        asks: ctx.templates.followup_asks().to_vec(),
    };
    let rendered = match ctx.templates.sync_invite(&context) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "the sync template failed");
            return nothing();
        }
    };
    let ((start, zone), (end, _)) = rhythm.first_event_times();
    let event = Event {
        subject: rendered.subject,
        body: ItemBody::html(rendered.html),
        start: DateTimeTimeZone::new(start, zone.clone()),
        end: DateTimeTimeZone::new(end, zone),
        attendees: attendees(&engagement.roster),
        is_online_meeting: true,
        online_meeting_provider: Some(crate::graph::TEAMS_FOR_BUSINESS.to_string()),
        transaction_id: Some(format!("fieldbot-sync-{engagement_id}-{version}")),
        recurrence: Some(rhythm.patterned_recurrence()),
        allow_new_time_proposals: Some(true),
    };
    let existing = series
        .data
        .get("event_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let event_id = match existing {
        // A new rhythm for an existing series: the same meeting, new times and pattern.
        Some(id) => {
            let patch = json!({
                "subject": event.subject, "body": event.body, "start": event.start, "end": event.end,
                "recurrence": event.recurrence, "attendees": event.attendees,
            });
            match ctx.graph.update_event(&mailbox, &id, &patch).await {
                Ok(()) => id,
                Err(e) => return failed(e, true),
            }
        }
        None => match ctx.graph.create_event(&mailbox, &event).await {
            Ok(created) => created.id,
            // Idempotent through the transactionId: a retry returns the same series.
            Err(e) => return failed(e, true),
        },
    };
    let mut data = series.data.clone();
    if let Some(map) = data.as_object_mut() {
        map.insert("event_id".into(), json!(event_id));
    }
    let mut jobs = vec![send_job(
        ctx,
        key,
        &channel(&engagement),
        text_activity(&format!(
            "Field team sync scheduled for **{}**: {}. The roster is invited; attendees follow `team add` and `team remove`.",
            cards::plain(&engagement.customer),
            rhythm.describe()
        )),
        None,
    )];
    let now = jiff::Timestamp::from_millisecond(ctx.clock.now())
        .unwrap_or_else(|_| jiff::Timestamp::now());
    jobs.extend(reminder_job(ctx, engagement_id, version, &rhythm, now));
    EffectOutcome::Done {
        result: Some(json!({ "eventId": event_id })),
        changes: vec![Change::SetSyncSeries {
            engagement_id,
            kind: series.kind.clone(),
            data,
            by: series.updated_by.clone(),
        }],
        jobs,
    }
}

/// The reminder before the next sync after `after`, keyed by its occurrence so it runs once.
fn reminder_job(
    ctx: &EffectContext,
    engagement_id: i64,
    version: i64,
    rhythm: &SyncRhythm,
    after: jiff::Timestamp,
) -> Option<NewJob> {
    // The next sync whose reminder time is still ahead.
    let mut occurrence = rhythm.next_after(after)?;
    while occurrence.as_millisecond() - REMINDER_BEFORE_MS <= after.as_millisecond() {
        occurrence = rhythm.next_after(occurrence)?;
    }
    let at = occurrence.as_millisecond();
    let effect = Effect::SyncReminder {
        engagement_id,
        version,
        occurrence: at,
    };
    let mut job = super::job(
        &effect,
        format!("sync:{engagement_id}:v{version}:{at}"),
        ctx.clock.now(),
        ctx.max_attempts,
    );
    job.run_at = at - REMINDER_BEFORE_MS;
    Some(job)
}

/// Before each sync: the open follow-up items from the last sync notes, in the channel; then the next one.
pub async fn remind(
    ctx: &EffectContext,
    key: &str,
    engagement_id: i64,
    version: i64,
    occurrence: i64,
) -> EffectOutcome {
    let (engagement, series) = match load(ctx, engagement_id).await {
        Ok(Some(found)) => found,
        Ok(None) => return nothing(),
        Err(f) => return f,
    };
    if rhythm_version(&series) != version {
        return nothing();
    }
    let Some(rhythm) = rhythm_of(&series) else {
        return nothing();
    };
    let notes = match ctx.store.sync_notes(engagement_id).await {
        Ok(n) => n,
        Err(e) => return failed(e, true),
    };
    let open: Vec<String> = notes
        .last()
        .and_then(|n| n.notes.get("open_items"))
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(|i| format!("- {}", cards::plain(i)))
                .collect()
        })
        .unwrap_or_default();
    let text = if open.is_empty() {
        format!(
            "The Field team sync for **{}** starts in an hour. No open follow-up items from the last sync notes.",
            cards::plain(&engagement.customer)
        )
    } else {
        format!(
            "The Field team sync for **{}** starts in an hour. Open follow-up items:\n\n{}",
            cards::plain(&engagement.customer),
            open.join("\n")
        )
    };
    let mut jobs = vec![send_job(
        ctx,
        key,
        &channel(&engagement),
        text_activity(&text),
        None,
    )];
    if let Ok(at) = jiff::Timestamp::from_millisecond(occurrence) {
        jobs.extend(reminder_job(ctx, engagement_id, version, &rhythm, at));
    }
    EffectOutcome::Done {
        result: None,
        changes: Vec::new(),
        jobs,
    }
}

/// The series' attendees follow the roster (after `team add`, `team remove`, an FTA assigned).
pub async fn update_attendees(ctx: &EffectContext, engagement_id: i64) -> EffectOutcome {
    let (engagement, series) = match load(ctx, engagement_id).await {
        Ok(Some(found)) => found,
        Ok(None) => return nothing(),
        Err(f) => return f,
    };
    let (Some(event_id), Some(mailbox)) = (
        series.data.get("event_id").and_then(Value::as_str),
        super::invite::fm_mailbox(&engagement.fm),
    ) else {
        return nothing();
    };
    let patch = json!({ "attendees": attendees(&engagement.roster) });
    match ctx.graph.update_event(&mailbox, event_id, &patch).await {
        Ok(()) => nothing(),
        Err(e) => failed(e, true),
    }
}

/// The job that brings the series' attendees in line with the roster, keyed after what changed it.
pub fn attendees_job(ctx_now: i64, max_attempts: u32, engagement_id: i64, key: &str) -> NewJob {
    super::job(
        &Effect::UpdateSyncAttendees { engagement_id },
        format!("{key}:sync-attendees"),
        ctx_now,
        max_attempts,
    )
}
