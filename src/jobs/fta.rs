//! The FTA request's effects, one outside call per job: the status card as a new thread in the engagement's
//! channel, its update in place after every change, the emails (requestor, leads) and the leads' notice.

use serde_json::Value;

use super::effect::{Effect, EffectContext, EffectOutcome, SendActivity, card_activity};
use crate::cards::{self, FtaAuditLine, FtaRequestView, FtaViewer};
use crate::domain::engagement::Person;
use crate::domain::fta::{FtaRequestDetails, FtaStatus};
use crate::graph::{GraphError, ItemBody, Message, Recipient};
use crate::store::{CardRef, Change, FtaRequestRecord, NewJob};
use crate::templates::{FactLine, FtaEmailContext, HistoryLine};

/// What the FTA effects need from configuration.
#[derive(Debug, Clone, Default)]
pub struct FtaSettings {
    /// Configured leads (object ids / UPNs), as Connector member ids for their Teams ids.
    pub leads: Vec<String>,
    pub leads_channel: String,
    pub mail_sender: String,
    /// Nudge the leads about an unassigned request after this many business days (0: never).
    pub reminder_business_days: u32,
}

/// `from` plus `days` business days (Monday to Friday, counted in UTC).
pub fn add_business_days(from: i64, days: u32) -> i64 {
    const DAY: i64 = 86_400_000;
    let mut at = from;
    let mut left = days;
    while left > 0 {
        at += DAY;
        let weekday = jiff::Timestamp::from_millisecond(at)
            .map(|t| t.to_zoned_datetime(jiff::tz::TimeZone::UTC).weekday())
            .unwrap_or(jiff::civil::Weekday::Monday);
        if !matches!(
            weekday,
            jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
        ) {
            left -= 1;
        }
    }
    at
}

pub fn card_key(id: i64) -> String {
    format!("fta:{id}")
}

/// Who gets an email.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    Requestor,
    Leads,
}

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

async fn load(ctx: &EffectContext, id: i64) -> Result<Option<FtaRequestRecord>, EffectOutcome> {
    ctx.store.fta_request(id).await.map_err(|e| failed(e, true))
}

fn follow_up(ctx: &EffectContext, effect: &Effect, key: String) -> NewJob {
    super::job(effect, key, ctx.clock.now(), ctx.max_attempts)
}

/// A request was filed: fan out to the thread, the requestor's email and the leads.
pub async fn filed(ctx: &EffectContext, key: &str, request_key: &str) -> EffectOutcome {
    let request = match ctx.store.fta_request_by_key(request_key).await {
        Ok(Some(r)) => r,
        Ok(None) => return nothing(),
        Err(e) => return failed(e, true),
    };
    let id = request.id;
    let conversation_id = request.conversation_id.clone();
    let effects = [
        (
            Effect::PostFtaThread {
                id,
                conversation_id: conversation_id.clone(),
            },
            "thread",
        ),
        (
            Effect::EmailFta {
                id,
                audience: Audience::Requestor,
                version: request.version,
                conversation_id: conversation_id.clone(),
            },
            "mail",
        ),
        (
            Effect::NotifyLeads {
                id,
                conversation_id: conversation_id.clone(),
            },
            "leads",
        ),
    ];
    let mut jobs: Vec<NewJob> = effects
        .iter()
        .map(|(e, label)| follow_up(ctx, e, format!("{key}:{label}")))
        .collect();
    jobs.extend(reminder_job(ctx, &request, 1, request.created_at));
    EffectOutcome::Done {
        result: Some(serde_json::json!({ "requestId": id })),
        changes: Vec::new(),
        jobs,
    }
}

/// The `n`th nudge about an unassigned request, due N business days after `since`. Keyed by request and
/// `n`, so each nudge happens once even with several replicas.
fn reminder_job(
    ctx: &EffectContext,
    request: &FtaRequestRecord,
    n: u32,
    since: i64,
) -> Option<NewJob> {
    let days = ctx.fta.reminder_business_days;
    if days == 0 {
        return None;
    }
    let effect = Effect::FtaReminder {
        id: request.id,
        n,
        conversation_id: request.conversation_id.clone(),
    };
    let mut job = follow_up(ctx, &effect, format!("fta:{}:reminder:{n}", request.id));
    job.run_at = add_business_days(since, days);
    Some(job)
}

/// A request still waiting for an FTA: the leads are nudged with its age, and the next nudge is planned.
pub async fn remind(ctx: &EffectContext, id: i64, n: u32) -> EffectOutcome {
    let request = match load(ctx, id).await {
        Ok(Some(r)) => r,
        Ok(None) => return nothing(),
        Err(f) => return f,
    };
    let waiting = matches!(request.status.as_str(), "submitted" | "in_review");
    if !waiting {
        return nothing();
    }
    let nudge = Effect::EmailFta {
        id,
        audience: Audience::Leads,
        // Versions above any real one mark a reminder, so its email is keyed apart from the transitions'.
        version: -i64::from(n),
        conversation_id: request.conversation_id.clone(),
    };
    let mut jobs = vec![follow_up(
        ctx,
        &nudge,
        format!("fta:{id}:reminder:{n}:mail"),
    )];
    jobs.extend(reminder_job(ctx, &request, n + 1, ctx.clock.now()));
    EffectOutcome::Done {
        result: Some(serde_json::json!({ "reminder": n })),
        changes: Vec::new(),
        jobs,
    }
}

/// The Teams ids that get the user-specific view automatically: the configured leads found in the team,
/// and the requestor.
async fn refresh_user_ids(ctx: &EffectContext, request: &FtaRequestRecord) -> Vec<String> {
    let mut ids: Vec<String> = request.requestor.teams_id.iter().cloned().collect();
    for lead in &ctx.fta.leads {
        match ctx
            .connector
            .get_member(&request.service_url, &request.conversation_id, lead)
            .await
        {
            Ok(member) if !member.id.is_empty() => ids.push(member.id),
            Ok(_) => {}
            // A lead outside this team still acts through Refresh, the leads channel or `fta assign`.
            Err(e) => tracing::debug!(error = %e, "a lead is not a member of this team"),
        }
    }
    ids.sort();
    ids.dedup();
    ids
}

/// Posts the status card as a new thread in the engagement's channel (once).
pub async fn post_thread(ctx: &EffectContext, id: i64) -> EffectOutcome {
    let request = match load(ctx, id).await {
        Ok(Some(r)) => r,
        Ok(None) => return nothing(),
        Err(f) => return f,
    };
    if let Ok(Some(_)) = ctx.store.card(&card_key(id)).await {
        return nothing();
    }
    let tenant = match ctx.store.conversation(&request.conversation_id).await {
        Ok(c) => c.and_then(|c| c.reference.tenant_id).unwrap_or_default(),
        Err(e) => return failed(e, true),
    };
    let user_ids = refresh_user_ids(ctx, &request).await;
    let card = cards::fta_status_card(&view(&request), FtaViewer::Everyone, &user_ids);
    match ctx
        .connector
        .create_channel_thread(
            &request.service_url,
            &request.conversation_id,
            &tenant,
            &card_activity(card),
        )
        .await
    {
        Ok(created) => {
            let activity_id = created
                .activity_id
                .clone()
                .or_else(|| created.id.split(";messageid=").nth(1).map(str::to_string))
                .unwrap_or_default();
            EffectOutcome::Done {
                result: Some(serde_json::json!({ "thread": created.id })),
                changes: vec![Change::SaveCard(CardRef {
                    key: card_key(id),
                    conversation_id: created.id,
                    activity_id,
                    service_url: created
                        .service_url
                        .unwrap_or_else(|| request.service_url.clone()),
                })],
                jobs: Vec::new(),
            }
        }
        // Creating a thread is a POST: a maybe-sent one is recorded, not repeated.
        Err(e) => EffectOutcome::Failed {
            error: e.into(),
            idempotent: false,
            conversation_id: Some(request.conversation_id.clone()),
        },
    }
}

/// Replaces the status card in place, for everyone, with the request's current state.
pub async fn update_card(ctx: &EffectContext, id: i64) -> EffectOutcome {
    let request = match load(ctx, id).await {
        Ok(Some(r)) => r,
        Ok(None) => return nothing(),
        Err(f) => return f,
    };
    let posted = match ctx.store.card(&card_key(id)).await {
        Ok(Some(card)) => card,
        // Not posted (yet): the thread job posts the current state when it runs.
        Ok(None) => return nothing(),
        Err(e) => return failed(e, true),
    };
    let user_ids = refresh_user_ids(ctx, &request).await;
    let card = cards::fta_status_card(&view(&request), FtaViewer::Everyone, &user_ids);
    match ctx
        .connector
        .update_activity(
            &posted.service_url,
            &posted.conversation_id,
            &posted.activity_id,
            &card_activity(card),
        )
        .await
    {
        Ok(_) => nothing(),
        Err(e) => EffectOutcome::Failed {
            error: e.into(),
            idempotent: true,
            conversation_id: Some(posted.conversation_id),
        },
    }
}

/// Tells the leads: a notice in the leads channel when one is configured, else an email.
pub async fn notify_leads(ctx: &EffectContext, key: &str, id: i64) -> EffectOutcome {
    let request = match load(ctx, id).await {
        Ok(Some(r)) => r,
        Ok(None) => return nothing(),
        Err(f) => return f,
    };
    let channel = ctx.fta.leads_channel.trim();
    if channel.is_empty() {
        let email = Effect::EmailFta {
            id,
            audience: Audience::Leads,
            version: request.version,
            conversation_id: request.conversation_id.clone(),
        };
        return EffectOutcome::Done {
            result: None,
            changes: Vec::new(),
            jobs: vec![follow_up(ctx, &email, format!("{key}:mail"))],
        };
    }
    let reference = match ctx.store.conversation(channel).await {
        Ok(Some(c)) if c.live => c.reference,
        Ok(_) => {
            tracing::warn!(
                channel,
                "fasttrack.leads_channel is not a conversation the bot is installed in"
            );
            return nothing();
        }
        Err(e) => return failed(e, true),
    };
    let notice = Effect::ConnectorSend(SendActivity {
        service_url: reference.service_url,
        conversation_id: reference.conversation_id,
        reply_to_id: None,
        activity: card_activity(cards::fta_lead_notice_card(&view(&request))),
        card_key: None,
    });
    EffectOutcome::Done {
        result: None,
        changes: Vec::new(),
        jobs: vec![follow_up(ctx, &notice, format!("{key}:notice"))],
    }
}

/// The email about the request's state at `version` (the playbook's key output for the requestor on
/// submit, and a notice on every later change).
pub async fn email(
    ctx: &EffectContext,
    id: i64,
    audience: Audience,
    version: i64,
) -> EffectOutcome {
    let request = match load(ctx, id).await {
        Ok(Some(r)) => r,
        Ok(None) => return nothing(),
        Err(f) => return f,
    };
    let engagement = match ctx.store.engagement(request.engagement_id).await {
        Ok(e) => e,
        Err(e) => return failed(e, true),
    };
    let sender = if ctx.fta.mail_sender.trim().is_empty() {
        engagement
            .as_ref()
            .and_then(|e| super::invite::fm_mailbox(&e.fm))
    } else {
        Some(ctx.fta.mail_sender.trim().to_string())
    };
    let Some(sender) = sender else {
        tracing::warn!(request.id = id, "no mailbox to send the FTA email from");
        return nothing();
    };
    let recipients = match audience {
        Audience::Requestor => match address_of(ctx, &request.requestor).await {
            Ok(a) => a.into_iter().collect::<Vec<_>>(),
            Err(e) => return failed(e, true),
        },
        Audience::Leads => {
            let mut out = Vec::new();
            for lead in &ctx.fta.leads {
                if lead.contains('@') {
                    out.push(lead.clone());
                } else {
                    match ctx.graph.get_user(lead).await {
                        Ok(u) => out.extend(u.mail.or(u.user_principal_name)),
                        Err(GraphError::NotFound { .. }) => {}
                        Err(e) => return failed(e, true),
                    }
                }
            }
            out
        }
    };
    if recipients.is_empty() {
        tracing::warn!(
            request.id = id,
            ?audience,
            "nobody to email about the FTA request"
        );
        return nothing();
    }
    let context = email_context(&request, version, audience);
    let rendered = match ctx.templates.fta_email(&context) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "the FTA email template failed");
            return nothing();
        }
    };
    let message = Message {
        subject: rendered.subject,
        body: ItemBody::html(rendered.html),
        to_recipients: recipients
            .into_iter()
            .map(|a| Recipient::new(a, None))
            .collect(),
        cc_recipients: Vec::new(),
    };
    match ctx.graph.send_mail(&sender, &message).await {
        Ok(()) => nothing(),
        // sendMail has no idempotency key: a maybe-accepted mail is recorded, not sent twice.
        Err(e) => failed(e, false),
    }
}

/// An email address for someone known by id only (a Teams user typing a command): Graph knows it.
async fn address_of(ctx: &EffectContext, person: &Person) -> Result<Option<String>, GraphError> {
    if let Some(a) = person.address() {
        return Ok(Some(a.to_string()));
    }
    let Some(oid) = person.aad_object_id.as_deref() else {
        return Ok(None);
    };
    match ctx.graph.get_user(oid).await {
        Ok(u) => Ok(u.mail.or(u.user_principal_name)),
        Err(GraphError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn email_context(request: &FtaRequestRecord, version: i64, audience: Audience) -> FtaEmailContext {
    let status = FtaStatus::parse(&request.status).unwrap_or(FtaStatus::Submitted);
    let age_days = (now_ms() - request.created_at).max(0) / 86_400_000;
    let headline = match (audience, status) {
        (Audience::Leads, _) if version < 0 => format!(
            "Reminder: {}'s request for a FastTrack Architect for {} is still waiting for an FTA after {age_days} days ({}).",
            request.requestor.name,
            request.customer,
            status.label()
        ),
        (Audience::Leads, _) => format!(
            "{} filed a request for a FastTrack Architect for {}. Review it on its card in the account team channel.",
            request.requestor.name, request.customer
        ),
        (_, FtaStatus::Submitted) if version <= 1 => format!(
            "Your request for a FastTrack Architect for {} is complete and has been submitted. The FTA alignment or regional leads will process it.",
            request.customer
        ),
        (_, FtaStatus::Submitted) => "Your request is back with the leads.".to_string(),
        (_, FtaStatus::InReview) => "A lead is reviewing your request.".to_string(),
        (_, FtaStatus::Assigned) => {
            "A FastTrack Architect is assigned to your request.".to_string()
        }
        (_, FtaStatus::Declined) => "Your request was declined.".to_string(),
        (_, FtaStatus::Withdrawn) => "Your request was withdrawn.".to_string(),
        (_, FtaStatus::InfoRequested) => {
            "The leads need more information before they can assign an FTA.".to_string()
        }
    };
    let v = view(request);
    FtaEmailContext {
        request_id: request.id,
        customer: request.customer.clone(),
        status_label: status.label().to_string(),
        headline,
        requestor: request.requestor.name.clone(),
        assigned_fta: request.assigned_fta.as_ref().map(|p| p.name.clone()),
        reason: request
            .decline_reason
            .clone()
            .filter(|_| status == FtaStatus::Declined),
        ask: request
            .info_ask
            .clone()
            .filter(|_| status == FtaStatus::InfoRequested),
        facts: v
            .facts
            .into_iter()
            .map(|(label, value)| FactLine { label, value })
            .collect(),
        history: v
            .history
            .into_iter()
            .map(|h| HistoryLine {
                at: h.at,
                who: h.who,
                action: h.action,
            })
            .collect(),
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// "24 Nov 10:02 UTC".
pub fn format_time(at: i64) -> String {
    jiff::Timestamp::from_millisecond(at)
        .map(|t| t.strftime("%d %b %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// What the cards, emails and dashboard show of a request.
pub fn view(request: &FtaRequestRecord) -> FtaRequestView {
    let status = FtaStatus::parse(&request.status);
    let details: Option<FtaRequestDetails> = serde_json::from_value(request.details.clone()).ok();
    let facts = details
        .map(|d| {
            let mut facts = vec![
                ("TPID".to_string(), d.tpid.to_string()),
                ("Tenant".to_string(), d.tenant),
                ("Partner".to_string(), d.partner),
                ("Total users".to_string(), d.total_users.to_string()),
                (
                    "Request type".to_string(),
                    d.request_type.label().to_string(),
                ),
                ("Sales stage".to_string(), format!("{}%", d.sales_stage)),
                ("Compelling event".to_string(), d.compelling_event),
                ("Segment".to_string(), d.segment.label().to_string()),
                (
                    "Entitlements".to_string(),
                    d.entitlements
                        .iter()
                        .map(|e| e.label())
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            ];
            if let Some(notes) = d.notes.filter(|n| !n.trim().is_empty()) {
                facts.push(("Instructions for the FTA".to_string(), notes));
            }
            facts
        })
        .unwrap_or_default();
    FtaRequestView {
        id: request.id,
        version: request.version,
        engagement_id: request.engagement_id,
        customer: request.customer.clone(),
        status: request.status.clone(),
        status_label: status.map(|s| s.label().to_string()).unwrap_or_default(),
        requestor: request.requestor.name.clone(),
        submitted_at: format_time(request.created_at),
        facts,
        assigned_fta: request.assigned_fta.as_ref().map(|p| p.name.clone()),
        decline_reason: request.decline_reason.clone(),
        info_ask: request.info_ask.clone(),
        history: request
            .history
            .iter()
            .map(|h| FtaAuditLine {
                at: format_time(h.at),
                who: h.who.clone(),
                action: match &h.detail {
                    Some(d) if !d.is_empty() => format!("{}: {d}", h.action.replace('_', " ")),
                    _ => h.action.replace('_', " "),
                },
            })
            .collect(),
    }
}

/// The JSON the API and dashboard serve for one request.
pub fn request_json(request: &FtaRequestRecord, now: i64) -> Value {
    serde_json::json!({
        "id": request.id,
        "engagement_id": request.engagement_id,
        "customer": request.customer,
        "status": request.status,
        "version": request.version,
        "requestor": request.requestor,
        "details": request.details,
        "assigned_fta": request.assigned_fta,
        "decline_reason": request.decline_reason,
        "info_ask": request.info_ask,
        "created_at": request.created_at,
        "updated_at": request.updated_at,
        "age_hours": (now - request.created_at).max(0) / 3_600_000,
        "history": request.history.iter().map(|h| serde_json::json!({
            "at": h.at, "who": h.who, "who_id": h.who_id, "action": h.action,
            "from": h.from_status, "to": h.to_status, "detail": h.detail,
        })).collect::<Vec<_>>(),
    })
}
