//! One turn: what an inbound activity changes and which effects it causes. The result is applied atomically
//! by the store (with the activity's de-duplication row) and the effects leave through the job queue, so the
//! webhook only computes and commits.

use serde_json::{Value, json};

use std::sync::LazyLock;

use crate::botframework::activity::{Activity, OutboundActivity};
use crate::cards;
use crate::clock::Millis;
use crate::commands::{self, Command, CommandError, Ctx, ParseError, Reply, RolesQuery};
use crate::domain::engagement::Person;
use crate::jobs::{self, Effect, ReplyTarget, SendActivity, UpdateActivity, card_activity};
use crate::store::{Change, ConversationRef, NewJob, Store, StoreError};

pub const ADAPTIVE_CARD: &str = "application/vnd.microsoft.card.adaptive";

pub struct TurnContext<'a> {
    pub store: &'a dyn Store,
    pub templates: &'a crate::templates::Templates,
    pub leads: &'a crate::leads::LeadDirectory,
    pub default_tz: &'a str,
    pub now: Millis,
    pub max_attempts: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<CommandError> for TurnError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Store(e) => TurnError::Store(e),
        }
    }
}

#[derive(Debug, Default)]
pub struct TurnOutcome {
    pub changes: Vec<Change>,
    pub jobs: Vec<NewJob>,
    /// The synchronous answer to an `invoke` (the HTTP response body).
    pub invoke_response: Option<Value>,
    /// Nothing to record: the activity type is not one fieldbot acts on.
    pub ignored: bool,
}

pub async fn handle(activity: &Activity, ctx: &TurnContext<'_>) -> Result<TurnOutcome, TurnError> {
    Ok(match activity.kind.as_str() {
        "message" => on_message(activity, ctx).await?,
        "invoke" => on_invoke(activity, ctx).await?,
        "installationUpdate" => on_installation_update(activity, ctx),
        "conversationUpdate" => on_conversation_update(activity, ctx),
        _ => TurnOutcome {
            ignored: true,
            ..TurnOutcome::default()
        },
    })
}

async fn on_message(activity: &Activity, ctx: &TurnContext<'_>) -> Result<TurnOutcome, TurnError> {
    let mut out = TurnOutcome::default();
    out.changes.extend(touch(activity));
    let text = activity.text.as_deref().unwrap_or_default();
    let submitted = activity.value.as_ref().filter(|v| v.is_object());
    let parsed = match submitted {
        // An Action.Submit (the fallback of every Action.Execute) arrives as a message without text.
        Some(value) if text.trim().is_empty() => {
            let verb = value
                .get("verb")
                .and_then(Value::as_str)
                .unwrap_or_default();
            commands::parse_action(verb, value)
        }
        _ => {
            let mentions = activity.mentions();
            let cleaned = commands::strip_bot_mentions(
                text,
                &mentions,
                activity.bot_id().unwrap_or_default(),
            );
            commands::parse(&cleaned, &mentions)
        }
    };
    let reply = match parsed {
        Ok(command) if command.is_stateful() => {
            let outcome = commands::apply(&command_ctx(activity, ctx), command).await?;
            out.changes.extend(outcome.changes);
            out.jobs.extend(outcome.jobs);
            if let Some(card) = outcome.updated_card {
                out.jobs.extend(update_clicked_card(activity, ctx, card));
            }
            outcome.reply
        }
        Ok(command) => {
            out.jobs
                .extend(reply_job(activity, ctx, "reply", stateless_reply(&command)));
            None
        }
        Err(e) => Some(Reply::Text(e.user_message())),
    };
    if let Some(reply) = reply {
        out.jobs
            .extend(reply_job(activity, ctx, "reply", reply_activity(reply)));
    }
    Ok(out)
}

/// What a stateful command needs to know about the activity.
fn command_ctx<'a>(activity: &Activity, ctx: &TurnContext<'a>) -> Ctx<'a> {
    let from = activity.from.clone().unwrap_or_default();
    let service_url = activity.service_url.clone().unwrap_or_default();
    Ctx {
        store: ctx.store,
        now: ctx.now,
        actor: Person {
            name: from.name.clone().unwrap_or_else(|| "someone".into()),
            aad_object_id: from.aad_object_id.clone(),
            teams_id: Some(from.id.clone()).filter(|id| !id.is_empty()),
            ..Person::default()
        },
        conversation_id: activity
            .base_conversation_id()
            .unwrap_or_default()
            .to_string(),
        conversation_type: activity
            .conversation
            .as_ref()
            .and_then(|c| c.conversation_type.clone()),
        reply: ReplyTarget {
            service_url: service_url.clone(),
            conversation_id: activity.conversation_id().unwrap_or_default().to_string(),
            reply_to_id: activity.id.clone(),
        },
        service_url,
        activity_key: activity_key(activity),
        clicked: activity.reply_to_id.clone(),
        max_attempts: ctx.max_attempts,
        templates: ctx.templates,
        leads: ctx.leads,
        default_tz: ctx.default_tz,
    }
}

async fn on_invoke(activity: &Activity, ctx: &TurnContext<'_>) -> Result<TurnOutcome, TurnError> {
    let mut out = TurnOutcome::default();
    out.changes.extend(touch(activity));
    if activity.name.as_deref() != Some("adaptiveCard/action") {
        // Other invokes (task modules, message extensions) are not part of fieldbot: acknowledged, ignored.
        out.ignored = true;
        return Ok(out);
    }
    let action = activity.value.as_ref().and_then(|v| v.get("action"));
    let Some(action) = action.filter(|a| a.is_object()) else {
        out.invoke_response = Some(invoke_error(
            400,
            "BadRequest",
            "The invoke carries no action.",
        ));
        return Ok(out);
    };
    if action.get("type").and_then(Value::as_str) != Some("Action.Execute") {
        out.invoke_response = Some(invoke_error(
            400,
            "NotSupported",
            "Only Action.Execute is supported.",
        ));
        return Ok(out);
    }
    let verb = action
        .get("verb")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let data = action.get("data").cloned().unwrap_or(Value::Null);
    let reply = match commands::parse_action(verb, &data) {
        Ok(command) if command.is_stateful() => {
            let outcome = commands::apply(&command_ctx(activity, ctx), command).await?;
            out.changes.extend(outcome.changes);
            out.jobs.extend(outcome.jobs);
            match outcome.updated_card {
                // The clicking user sees the new card at once; everyone else through the PUT.
                Some(card) => {
                    out.jobs
                        .extend(update_clicked_card(activity, ctx, card.clone()));
                    Ok(Some(Reply::Card(card)))
                }
                None => Ok(outcome.reply),
            }
        }
        Ok(command) => Ok(Some(commands::execute(&command))),
        Err(e) => Err(e),
    };
    out.invoke_response = Some(match reply {
        Ok(Some(Reply::Card(card))) => {
            json!({ "statusCode": 200, "type": ADAPTIVE_CARD, "value": card })
        }
        Ok(Some(Reply::Text(text))) => json!({
            "statusCode": 200,
            "type": "application/vnd.microsoft.activity.message",
            "value": text,
        }),
        Ok(None) => json!({
            "statusCode": 200,
            "type": "application/vnd.microsoft.activity.message",
            "value": "Done.",
        }),
        Err(e) => {
            let code = match e {
                ParseError::UnknownVerb { .. } => "UnknownVerb",
                _ => "BadRequest",
            };
            invoke_error(400, code, &e.user_message())
        }
    });
    Ok(out)
}

fn invoke_error(status: u16, code: &str, message: &str) -> Value {
    json!({
        "statusCode": status,
        "type": "application/vnd.microsoft.error",
        "value": { "code": code, "message": message },
    })
}

fn on_installation_update(activity: &Activity, ctx: &TurnContext<'_>) -> TurnOutcome {
    let mut out = TurnOutcome::default();
    match activity.action.as_deref() {
        Some("add") | Some("add-upgrade") => install(activity, ctx, &mut out),
        Some("remove") | Some("remove-upgrade") => {
            if let Some(id) = activity.base_conversation_id() {
                out.changes.push(Change::MarkConversationDead {
                    conversation_id: id.to_string(),
                    reason: "uninstalled".into(),
                });
            }
        }
        _ => out.ignored = true,
    }
    out
}

fn on_conversation_update(activity: &Activity, ctx: &TurnContext<'_>) -> TurnOutcome {
    let mut out = TurnOutcome::default();
    if activity.includes_bot(&activity.members_added) {
        install(activity, ctx, &mut out);
    } else if activity.includes_bot(&activity.members_removed)
        || matches!(
            activity.event_type(),
            Some("teamDeleted") | Some("teamHardDeleted")
        )
    {
        if let Some(id) = activity.base_conversation_id() {
            out.changes.push(Change::MarkConversationDead {
                conversation_id: id.to_string(),
                reason: "bot removed".into(),
            });
        }
    } else {
        out.ignored = true;
    }
    out
}

/// The bot was added: remember how to reach this conversation and greet it once.
fn install(activity: &Activity, ctx: &TurnContext<'_>, out: &mut TurnOutcome) {
    let (Some(reference), Some(service_url)) =
        (reference(activity), activity.service_url.as_deref())
    else {
        out.ignored = true;
        return;
    };
    // In a team the welcome belongs in the channel the installing user picked.
    let target = activity
        .selected_channel_id()
        .unwrap_or(&reference.conversation_id)
        .to_string();
    if target != reference.conversation_id {
        out.changes.push(Change::TouchConversation(ConversationRef {
            conversation_id: target.clone(),
            channel_id: Some(target.clone()),
            conversation_type: Some("channel".into()),
            ..reference.clone()
        }));
    }
    let effect = Effect::ConnectorSend(SendActivity {
        service_url: service_url.to_string(),
        conversation_id: target,
        reply_to_id: None,
        activity: card_activity(cards::welcome_card(activity.team_name())),
        card_key: None,
    });
    let welcome = jobs::job(
        &effect,
        format!("{}:welcome", activity_key(activity)),
        ctx.now,
        ctx.max_attempts,
    );
    out.changes.push(Change::InstallConversation {
        reference,
        welcome: vec![welcome],
    });
}

fn touch(activity: &Activity) -> Option<Change> {
    reference(activity).map(Change::TouchConversation)
}

fn reference(activity: &Activity) -> Option<ConversationRef> {
    let conversation_id = activity.base_conversation_id()?.to_string();
    let conversation_type = activity
        .conversation
        .as_ref()
        .and_then(|c| c.conversation_type.clone());
    let channel_id = activity
        .channel_data_channel_id()
        .map(str::to_string)
        .or_else(|| {
            (conversation_type.as_deref() == Some("channel")).then(|| conversation_id.clone())
        });
    Some(ConversationRef {
        service_url: activity.service_url.clone()?,
        tenant_id: activity.tenant_id().map(str::to_string),
        team_id: activity.team_id().map(str::to_string),
        team_name: activity.team_name().map(str::to_string),
        channel_id,
        bot_id: activity.bot_id().map(str::to_string),
        conversation_type,
        conversation_id,
    })
}

/// Unique per inbound activity, so the jobs it causes are enqueued once however often it is delivered. The
/// activity id comes before the conversation: Teams message ids are epoch milliseconds, so the keys of new
/// jobs sort after the older ones and land together at the end of the store's unique index instead of on
/// one page per conversation (see migration 0008).
fn activity_key(activity: &Activity) -> String {
    match (&activity.id, activity.conversation_id()) {
        (Some(id), Some(conv)) => format!(
            "{}/{}/{}",
            activity.channel_id.as_deref().unwrap_or_default(),
            id,
            conv
        ),
        _ => uuid::Uuid::new_v4().to_string(),
    }
}

fn reply_job(
    activity: &Activity,
    ctx: &TurnContext<'_>,
    label: &str,
    body: OutboundActivity,
) -> Option<NewJob> {
    let effect = Effect::ConnectorSend(SendActivity {
        service_url: activity.service_url.clone()?,
        conversation_id: activity.conversation_id()?.to_string(),
        reply_to_id: activity.id.clone(),
        activity: body,
        card_key: None,
    });
    Some(jobs::job(
        &effect,
        format!("{}:{label}", activity_key(activity)),
        ctx.now,
        ctx.max_attempts,
    ))
}

/// Replaces the card the user clicked (the message `replyToId` names) for everyone in the conversation.
fn update_clicked_card(activity: &Activity, ctx: &TurnContext<'_>, card: Value) -> Option<NewJob> {
    let effect = Effect::ConnectorUpdate(UpdateActivity {
        service_url: activity.service_url.clone()?,
        conversation_id: activity.conversation_id()?.to_string(),
        activity_id: activity.reply_to_id.clone()?,
        activity: card_activity(card),
    });
    Some(jobs::job(
        &effect,
        format!("{}:update", activity_key(activity)),
        ctx.now,
        ctx.max_attempts,
    ))
}

fn reply_activity(reply: Reply) -> OutboundActivity {
    match reply {
        Reply::Card(card) => card_activity(card),
        Reply::Text(text) => jobs::text_activity(&text),
    }
}

/// `help` and `roles` answer everyone alike, so each answer is built and serialised once per process: the
/// help card is kilobytes of JSON, and building it was most of a `help` turn's work.
fn stateless_reply(command: &Command) -> OutboundActivity {
    static ANSWERS: LazyLock<moka::sync::Cache<Option<RolesQuery>, OutboundActivity>> =
        LazyLock::new(|| moka::sync::Cache::new(64));
    let key = match command {
        Command::Help => None,
        Command::Roles(query) => Some(*query),
        _ => return reply_activity(commands::execute(command)),
    };
    ANSWERS.get_with(key, || reply_activity(commands::execute(command)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The activity id leads, so the keys of new activities (Teams message ids are epoch milliseconds) sort
    /// after the older ones in the store's unique indexes (migration 0008).
    #[test]
    fn an_activity_key_leads_with_the_activity_id() {
        let activity: Activity = serde_json::from_value(serde_json::json!({
            "type": "message",
            "id": "1732270530123",
            "channelId": "msteams",
            "conversation": { "id": "19:c0ffee11aa@thread.tacv2;messageid=1732270530123" },
        }))
        .unwrap();
        assert_eq!(
            activity_key(&activity),
            "msteams/1732270530123/19:c0ffee11aa@thread.tacv2;messageid=1732270530123"
        );
    }
}
