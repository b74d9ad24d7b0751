//! Applying `fta …` commands and FTA card buttons: file a request (key inputs enforced, quoting the rule),
//! list and show requests, and move a request through its states. Every action is checked on the server:
//! lead actions need a lead (config or Entra group), Withdraw and Provide info need the requestor; a
//! repeated or stale action changes nothing and says who did what, and when.

use serde_json::Value;

use super::apply::{Ctx, Outcome};
use super::fta::{FtaCommand, Who};
use super::{CommandError, Reply};
use crate::cards::{self, FtaViewer};
use crate::domain::engagement::Person;
use crate::domain::fta::{
    self, FtaAction, FtaRequestInput, FtaStatus, MAX_REASON_CHARS, TransitionError,
};
use crate::domain::roles::Role;
use crate::jobs::fta::{Audience, view};
use crate::jobs::{self, Effect, MemberTarget, ReplyTarget};
use crate::store::{Change, Engagement, FtaAuditRecord, FtaFilter, FtaRequestRecord};

pub async fn apply(ctx: &Ctx<'_>, command: FtaCommand) -> Result<Outcome, CommandError> {
    match command {
        FtaCommand::Form { engagement } => Ok(match engagement_for(ctx, engagement).await? {
            Ok(e) => reply_card(cards::fta_form_card(
                e.id,
                &e.customer,
                &cards::FtaFormValues::default(),
                &[],
            )),
            Err(refusal) => refusal,
        }),
        FtaCommand::Inline { input, engagement } => {
            Ok(match engagement_for(ctx, engagement).await? {
                Ok(e) => submit(ctx, &e, input, false),
                Err(refusal) => refusal,
            })
        }
        FtaCommand::Mine => Ok(match engagement_for(ctx, None).await? {
            Ok(e) => {
                let rows = ctx
                    .store
                    .fta_requests(&FtaFilter {
                        engagement_id: Some(e.id),
                        open_only: false,
                    })
                    .await?;
                let views: Vec<_> = rows.iter().map(view).collect();
                reply_card(cards::fta_list_card(
                    &format!("FTA requests for {}", e.customer),
                    &views,
                ))
            }
            Err(refusal) => refusal,
        }),
        FtaCommand::List { all } => {
            let rows = ctx
                .store
                .fta_requests(&FtaFilter {
                    engagement_id: None,
                    open_only: !all,
                })
                .await?;
            let views: Vec<_> = rows.iter().map(view).collect();
            let title = if all {
                "All FTA requests"
            } else {
                "Open FTA requests"
            };
            Ok(reply_card(cards::fta_list_card(title, &views)))
        }
        FtaCommand::Status { id } => show(ctx, id).await,
        FtaCommand::Assign { id, fta } => {
            let person = match &fta {
                Who::Email(email) => Person {
                    name: email.clone(),
                    email: Some(email.clone()),
                    ..Person::default()
                },
                Who::Mention(m) => Person {
                    name: m.name.clone(),
                    teams_id: Some(m.id.clone()),
                    ..Person::default()
                },
            };
            act(ctx, id, FtaAction::Assign { fta: person }, Some(fta)).await
        }
        FtaCommand::Decline { id, reason } => {
            act(ctx, id, FtaAction::Decline { reason }, None).await
        }
        FtaCommand::Info { id, ask } => act(ctx, id, FtaAction::RequestInfo { ask }, None).await,
        FtaCommand::Withdraw { id } => act(ctx, id, FtaAction::Withdraw, None).await,
    }
}

/// A button on an FTA card.
pub async fn apply_card(ctx: &Ctx<'_>, verb: &str, data: &Value) -> Result<Outcome, CommandError> {
    if verb == cards::VERB_FTA_SUBMIT {
        let engagement_id = id_field(data, "engagementId");
        return Ok(match engagement_for(ctx, engagement_id).await? {
            Ok(e) => {
                // The form's inputs arrive merged into the action data, named like the request's fields.
                let input: FtaRequestInput =
                    serde_json::from_value(data.clone()).unwrap_or_default();
                submit(ctx, &e, input, true)
            }
            Err(refusal) => refusal,
        });
    }
    let Some(id) = id_field(data, "requestId") else {
        return Ok(text(
            "That button is from a card I can no longer read; use `fta status <id>`.",
        ));
    };
    let input = |name: &str| -> String {
        data.get(name)
            .and_then(Value::as_str)
            .map(|s| s.trim().chars().take(MAX_REASON_CHARS).collect())
            .unwrap_or_default()
    };
    match verb {
        cards::VERB_FTA_VIEW => show(ctx, id).await,
        cards::VERB_FTA_ASSIGN => {
            let email = input(cards::INPUT_FTA).to_lowercase();
            if !email.contains('@') || email.contains(char::is_whitespace) {
                return Ok(text(
                    "Write the FastTrack Architect's email address (name@domain) to assign them.",
                ));
            }
            let person = Person {
                name: email.clone(),
                email: Some(email.clone()),
                ..Person::default()
            };
            act(
                ctx,
                id,
                FtaAction::Assign { fta: person },
                Some(Who::Email(email)),
            )
            .await
        }
        cards::VERB_FTA_DECLINE => {
            act(
                ctx,
                id,
                FtaAction::Decline {
                    reason: input(cards::INPUT_REASON),
                },
                None,
            )
            .await
        }
        cards::VERB_FTA_INFO => {
            act(
                ctx,
                id,
                FtaAction::RequestInfo {
                    ask: input(cards::INPUT_ASK),
                },
                None,
            )
            .await
        }
        cards::VERB_FTA_WITHDRAW => act(ctx, id, FtaAction::Withdraw, None).await,
        cards::VERB_FTA_PROVIDE_INFO => {
            act(
                ctx,
                id,
                FtaAction::ProvideInfo {
                    answer: input(cards::INPUT_ANSWER),
                },
                None,
            )
            .await
        }
        _ => Ok(text("That button is not one I know.")),
    }
}

fn id_field(data: &Value, name: &str) -> Option<i64> {
    match data.get(name)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().trim_start_matches('#').parse().ok(),
        _ => None,
    }
    .filter(|id| *id > 0)
}

fn text(t: impl Into<String>) -> Outcome {
    Outcome {
        reply: Some(Reply::Text(t.into())),
        ..Outcome::default()
    }
}

fn reply_card(card: Value) -> Outcome {
    Outcome {
        reply: Some(Reply::Card(card)),
        ..Outcome::default()
    }
}

/// The engagement a request is for: the one named (from personal chat), or this channel's.
async fn engagement_for(
    ctx: &Ctx<'_>,
    named: Option<i64>,
) -> Result<Result<Engagement, Outcome>, CommandError> {
    let engagement = match named {
        Some(id) => ctx.store.engagement(id).await?,
        None => ctx.store.active_engagement(&ctx.conversation_id).await?,
    };
    Ok(match engagement {
        Some(e) if e.active => Ok(e),
        Some(e) => Err(text(format!(
            "The engagement for **{}** is closed.",
            cards::plain(&e.customer)
        ))),
        None if named.is_some() => Err(text("I can't find that engagement.")),
        None => Err(text(
            "There is no active engagement here. In the account team's channel, start one with \
             `engagement start \"Customer\" motion:rfa`; in a personal chat, name it with `engagement:<id>`.",
        )),
    })
}

fn submit(ctx: &Ctx<'_>, e: &Engagement, input: FtaRequestInput, from_card: bool) -> Outcome {
    let details = match fta::validate(&input) {
        Ok(details) => details,
        Err(violations) if from_card => {
            let errors: Vec<(String, String)> = violations
                .iter()
                .map(|v| (v.field.input_id().to_string(), v.message.clone()))
                .collect();
            let values = cards::fta_form_values(&serde_json::to_value(&input).unwrap_or_default());
            // Only the person who submitted sees the refusal; the form keeps what they typed.
            return reply_card(cards::fta_form_card(e.id, &e.customer, &values, &errors));
        }
        Err(violations) => {
            let lines: Vec<String> = violations
                .iter()
                .map(|v| format!("- {}: {}", v.field.label(), v.message))
                .collect();
            return text(format!(
                "I can't file this request yet:\n\n{}\n\nFix these and send it again, or use `fta request` for the form.",
                lines.join("\n")
            ));
        }
    };
    let request = FtaRequestRecord {
        id: 0,
        request_key: ctx.activity_key.clone(),
        engagement_id: e.id,
        conversation_id: e.conversation_id.clone(),
        service_url: e.service_url.clone(),
        customer: e.customer.clone(),
        requestor: ctx.actor.clone(),
        details: serde_json::to_value(&details).unwrap_or(Value::Null),
        status: FtaStatus::Submitted.as_str().to_string(),
        version: 1,
        assigned_fta: None,
        decline_reason: None,
        info_ask: None,
        created_at: ctx.now,
        updated_at: ctx.now,
        history: Vec::new(),
    };
    let filed = Effect::FtaFiled {
        request_key: ctx.activity_key.clone(),
        conversation_id: e.conversation_id.clone(),
    };
    let done = format!(
        "FTA request for **{}** filed by {}. The status card follows in a new thread in the account team \
         channel; the leads are told and you get an email.",
        cards::plain(&e.customer),
        cards::plain(&ctx.actor.name)
    );
    Outcome {
        reply: (!from_card).then(|| Reply::Text(done.clone())),
        // The form becomes a short confirmation, for everyone who saw it.
        updated_card: from_card.then(|| {
            cards::adaptive_card(
                vec![cards::heading("FTA request filed"), cards::text(&done)],
                vec![],
            )
        }),
        changes: vec![Change::CreateFtaRequest {
            request: Box::new(request),
            audit: FtaAuditRecord {
                at: ctx.now,
                who: ctx.actor.name.clone(),
                who_id: ctx.actor.aad_object_id.clone(),
                action: "submit".into(),
                from_status: None,
                to_status: FtaStatus::Submitted.as_str().into(),
                detail: None,
            },
        }],
        jobs: vec![jobs::job(
            &filed,
            format!("{}:fta", ctx.activity_key),
            ctx.now,
            ctx.max_attempts,
        )],
    }
}

fn is_requestor(ctx: &Ctx<'_>, request: &FtaRequestRecord) -> bool {
    let same = |a: &Option<String>, b: &Option<String>| match (a, b) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        _ => false,
    };
    same(&ctx.actor.aad_object_id, &request.requestor.aad_object_id)
        || same(&ctx.actor.teams_id, &request.requestor.teams_id)
}

async fn is_lead(ctx: &Ctx<'_>) -> bool {
    match ctx.leads.is_lead(&ctx.actor).await {
        Ok(lead) => lead,
        Err(e) => {
            // Unknown means no: a lead action is refused rather than allowed on a failed lookup.
            tracing::warn!(error = %e, "checking the lead role failed");
            false
        }
    }
}

async fn viewer(ctx: &Ctx<'_>, request: &FtaRequestRecord) -> FtaViewer {
    match (is_lead(ctx).await, is_requestor(ctx, request)) {
        (true, true) => FtaViewer::LeadAndRequestor,
        (true, false) => FtaViewer::Lead,
        (false, true) => FtaViewer::Requestor,
        (false, false) => FtaViewer::Everyone,
    }
}

/// `fta status <id>` and the card's refresh: the request as this person may act on it. A lead's first look
/// moves a submitted request to in review.
async fn show(ctx: &Ctx<'_>, id: i64) -> Result<Outcome, CommandError> {
    let Some(request) = ctx.store.fta_request(id).await? else {
        return Ok(text(format!("There is no FTA request #{id}.")));
    };
    let viewer = viewer(ctx, &request).await;
    let lead = matches!(viewer, FtaViewer::Lead | FtaViewer::LeadAndRequestor);
    if lead && request.status == FtaStatus::Submitted.as_str() {
        let mut outcome = transition(
            ctx,
            &request,
            FtaAction::StartReview,
            FtaStatus::InReview,
            None,
        );
        let mut shown = request.clone();
        shown.status = FtaStatus::InReview.as_str().into();
        shown.version += 1;
        outcome.reply = Some(Reply::Card(cards::fta_status_card(
            &view(&shown),
            viewer,
            &[],
        )));
        return Ok(outcome);
    }
    Ok(reply_card(cards::fta_status_card(
        &view(&request),
        viewer,
        &[],
    )))
}

/// Checks who may act, runs the state machine, and commits the transition with its audit row, the card
/// update for everyone and the requestor's email.
async fn act(
    ctx: &Ctx<'_>,
    id: i64,
    action: FtaAction,
    fta_person: Option<Who>,
) -> Result<Outcome, CommandError> {
    let Some(request) = ctx.store.fta_request(id).await? else {
        return Ok(text(format!("There is no FTA request #{id}.")));
    };
    if action.is_lead_action() {
        if !is_lead(ctx).await {
            return Ok(text(format!(
                "Only the FTA alignment or regional leads can {} a request; nothing changed.",
                verb_phrase(&action)
            )));
        }
    } else if !is_requestor(ctx, &request) {
        return Ok(text(format!(
            "Only {} (who filed request #{id}) can {} it; nothing changed.",
            cards::plain(&request.requestor.name),
            verb_phrase(&action)
        )));
    }
    let from = FtaStatus::parse(&request.status).unwrap_or(FtaStatus::Submitted);
    let to = match fta::transition(from, &action) {
        Ok(to) => to,
        Err(e @ (TransitionError::NoChange { .. } | TransitionError::NotAllowed { .. })) => {
            let last = request
                .history
                .last()
                .map(|h| {
                    format!(
                        " Last change: {} by {} on {}.",
                        h.action.replace('_', " "),
                        cards::plain(&h.who),
                        jobs::fta::format_time(h.at)
                    )
                })
                .unwrap_or_default();
            return Ok(text(format!("{e}{last}")));
        }
        Err(e) => return Ok(text(e.to_string())),
    };
    let mut outcome = transition(ctx, &request, action.clone(), to, fta_person);
    outcome
        .changes
        .extend(adopt_status_card(ctx, &request).await?);
    let mut shown = request.clone();
    shown.status = to.as_str().into();
    shown.version += 1;
    if let FtaAction::Assign { fta } = &action {
        shown.assigned_fta = Some(fta.clone());
    }
    let viewer = viewer(ctx, &shown).await;
    outcome.reply = Some(Reply::Card(cards::fta_status_card(
        &view(&shown),
        viewer,
        &[],
    )));
    Ok(outcome)
}

/// When the post of the status card has not told fieldbot the card's id (it ended unconfirmed: sent, but
/// the answer was lost; or it is still "running" under a replica that died mid-call, and will be found cut
/// off and held), the card is in the channel yet fieldbot does not know it, and every later update of it
/// would be skipped. A click on that card names it: the root of a thread in the engagement's channel
/// (`;messageid=` equal to the clicked message). Remembering it there lets the updates reach it, and a
/// requeued post skip. A click proves the card exists, so the post's state does not matter.
async fn adopt_status_card(
    ctx: &Ctx<'_>,
    request: &FtaRequestRecord,
) -> Result<Option<Change>, CommandError> {
    let Some(clicked) = ctx.clicked.as_deref() else {
        return Ok(None);
    };
    let thread = ctx.reply.conversation_id.as_str();
    let root = thread.split_once(";messageid=").map(|(_, root)| root);
    if root != Some(clicked) || ctx.conversation_id != request.conversation_id {
        return Ok(None);
    }
    if ctx
        .store
        .card(&jobs::fta::card_key(request.id))
        .await?
        .is_some()
    {
        return Ok(None);
    }
    let post = ctx
        .store
        .job_by_key(&format!("{}:fta:thread", request.request_key))
        .await?;
    if post.is_none() {
        return Ok(None);
    }
    tracing::info!(
        request.id = request.id,
        "adopting the status card whose post was unconfirmed"
    );
    Ok(Some(Change::SaveCard(crate::store::CardRef {
        key: jobs::fta::card_key(request.id),
        conversation_id: thread.to_string(),
        activity_id: clicked.to_string(),
        service_url: ctx.service_url.clone(),
    })))
}

fn verb_phrase(action: &FtaAction) -> &'static str {
    match action {
        FtaAction::StartReview => "review",
        FtaAction::Assign { .. } => "assign an FTA to",
        FtaAction::Decline { .. } => "decline",
        FtaAction::RequestInfo { .. } => "ask for more information on",
        FtaAction::Withdraw => "withdraw",
        FtaAction::ProvideInfo { .. } => "answer an information request on",
    }
}

/// The changes and jobs of one transition.
fn transition(
    ctx: &Ctx<'_>,
    request: &FtaRequestRecord,
    action: FtaAction,
    to: FtaStatus,
    fta_person: Option<Who>,
) -> Outcome {
    let (assigned, reason, ask, detail) = match &action {
        FtaAction::Assign { fta } => (Some(fta.clone()), None, None, Some(fta.name.clone())),
        FtaAction::Decline { reason } => (None, Some(reason.clone()), None, Some(reason.clone())),
        FtaAction::RequestInfo { ask } => (None, None, Some(ask.clone()), Some(ask.clone())),
        FtaAction::ProvideInfo { answer } => (None, None, None, Some(answer.clone())),
        FtaAction::StartReview | FtaAction::Withdraw => (None, None, None, None),
    };
    let conversation_id = request.conversation_id.clone();
    let key = format!("fta:{}:v{}", request.id, request.version + 1);
    let mut jobs = vec![
        jobs::job(
            &Effect::UpdateFtaCard {
                id: request.id,
                conversation_id: conversation_id.clone(),
            },
            format!("{key}:card"),
            ctx.now,
            ctx.max_attempts,
        ),
        jobs::job(
            &Effect::EmailFta {
                id: request.id,
                audience: Audience::Requestor,
                version: request.version + 1,
                conversation_id: conversation_id.clone(),
            },
            format!("{key}:mail"),
            ctx.now,
            ctx.max_attempts,
        ),
    ];
    // An assigned FTA joins the engagement's roster (resolved like `team add FTA …`).
    if let Some(who) = fta_person.filter(|_| to == FtaStatus::Assigned) {
        let target = match who {
            Who::Email(address) => MemberTarget::Email { address },
            Who::Mention(m) => MemberTarget::Mention {
                teams_id: m.id,
                name: m.name,
            },
        };
        jobs.push(jobs::job(
            &Effect::ResolveRosterMember {
                engagement_id: request.engagement_id,
                role: Role::Fta,
                target,
                requested_by: ctx.actor.name.clone(),
                service_url: request.service_url.clone(),
                conversation_id: conversation_id.clone(),
                reply: ReplyTarget {
                    service_url: request.service_url.clone(),
                    conversation_id: conversation_id.clone(),
                    reply_to_id: None,
                },
            },
            format!("{key}:roster"),
            ctx.now,
            ctx.max_attempts,
        ));
    }
    Outcome {
        changes: vec![Change::TransitionFtaRequest {
            id: request.id,
            expected_version: request.version,
            status: to.as_str().into(),
            assigned_fta: assigned,
            decline_reason: reason,
            info_ask: ask,
            audit: FtaAuditRecord {
                at: ctx.now,
                who: ctx.actor.name.clone(),
                who_id: ctx.actor.aad_object_id.clone(),
                action: fta::action_name(&action).into(),
                from_status: Some(request.status.clone()),
                to_status: to.as_str().into(),
                detail,
            },
        }],
        jobs,
        ..Outcome::default()
    }
}
