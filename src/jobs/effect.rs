//! What a job does. Effects are data (serialised into the job row), so a job enqueued by one version of the
//! binary runs after a restart or on another replica. An effect may finish with state changes and follow-up
//! jobs; the worker commits them with the job's completion, so a multi-step workflow is exactly-once per
//! step.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::botframework::activity::OutboundActivity;
use crate::botframework::connector::{ConnectorClient, ConnectorError};
use crate::cards;
use crate::clock::Clock;
use crate::domain::engagement::{Person, RosterMember};
use crate::domain::roles::Role;
use crate::graph::{GraphApi, GraphError};
use crate::store::{Change, NewJob, Store, StoreError, person_key};

/// Everything an effect may use.
#[derive(Clone)]
pub struct EffectContext {
    pub connector: ConnectorClient,
    pub graph: Arc<dyn GraphApi>,
    pub store: Arc<dyn Store>,
    pub clock: Clock,
    pub max_attempts: u32,
    pub templates: Arc<crate::templates::Templates>,
    pub scheduling: super::invite::SchedulingSettings,
    pub fta: super::fta::FtaSettings,
}

/// Where a reply goes: a conversation (thread), and the message it answers when there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyTarget {
    pub service_url: String,
    pub conversation_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to_id: Option<String>,
}

/// [`Effect::ConnectorSend`]. `A` is how the activity is held: as its JSON text normally, borrowed raw from
/// the payload while [`Effect::from_payload`] reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendActivity<A = OutboundActivity> {
    pub service_url: String,
    pub conversation_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to_id: Option<String>,
    pub activity: A,
    /// When set, the sent message's id is remembered under this key so the card can be updated later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_key: Option<String>,
}

/// [`Effect::ConnectorUpdate`]; `A` as for [`SendActivity`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateActivity<A = OutboundActivity> {
    pub service_url: String,
    pub conversation_id: String,
    pub activity_id: String,
    pub activity: A,
}

/// Who `team add` names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum MemberTarget {
    Mention { teams_id: String, name: String },
    Email { address: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Effect {
    /// POST an activity into a conversation (a new message, or a reply when `reply_to_id` is set).
    ConnectorSend(SendActivity),
    /// PUT: replace a message the bot sent earlier (card update in place).
    ConnectorUpdate(UpdateActivity),
    /// Resolve a person (Connector member lookup for a mention, Graph for an email) and add them to the
    /// roster, then answer with the roster card.
    ResolveRosterMember {
        engagement_id: i64,
        role: Role,
        target: MemberTarget,
        requested_by: String,
        service_url: String,
        conversation_id: String,
        reply: ReplyTarget,
    },
    /// Intro invite step 1: availability and slots.
    ProposeInvite {
        engagement_id: i64,
        invite_id: i64,
        conversation_id: String,
    },
    /// Intro invite step 2: the intro email draft and the preview card.
    DraftIntroEmail {
        engagement_id: i64,
        invite_id: i64,
        conversation_id: String,
    },
    /// Intro invite step 3, after Send invite: the calendar event.
    CreateInviteEvent {
        engagement_id: i64,
        invite_id: i64,
        conversation_id: String,
    },
    /// The follow-up email after the account team sync, drafted in the FM's mailbox.
    DraftFollowup {
        engagement_id: i64,
        notes: Value,
        conversation_id: String,
    },
    /// An FTA request was filed (found by its submit key): fan out its thread, emails and notices.
    FtaFiled {
        request_key: String,
        conversation_id: String,
    },
    PostFtaThread {
        id: i64,
        conversation_id: String,
    },
    UpdateFtaCard {
        id: i64,
        conversation_id: String,
    },
    EmailFta {
        id: i64,
        audience: super::fta::Audience,
        /// The state the email tells about (one email per transition).
        version: i64,
        conversation_id: String,
    },
    NotifyLeads {
        id: i64,
        conversation_id: String,
    },
    /// Create (or re-pattern) the Field team sync series for rhythm `version`.
    ScheduleSync {
        engagement_id: i64,
        version: i64,
    },
    /// Before a sync: the open follow-up items; plans the next one.
    SyncReminder {
        engagement_id: i64,
        version: i64,
        occurrence: i64,
    },
    /// The series' attendees follow the roster.
    UpdateSyncAttendees {
        engagement_id: i64,
    },
    /// The day before the intro meeting: the prep checklist in the engagement's channel.
    PrepReminder {
        engagement_id: i64,
        invite_id: i64,
    },
    /// The `n`th nudge to the leads about a request still unassigned.
    FtaReminder {
        id: i64,
        n: u32,
        conversation_id: String,
    },
}

/// An effect's failure, whichever API it came from.
#[derive(Debug, thiserror::Error)]
pub enum EffectError {
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EffectError {
    pub fn is_retryable(&self, idempotent: bool) -> bool {
        match self {
            EffectError::Connector(e) => e.is_retryable(idempotent),
            EffectError::Graph(e) => e.is_retryable(idempotent),
            EffectError::Store(_) => true,
        }
    }

    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            EffectError::Connector(e) => e.retry_after(),
            EffectError::Graph(e) => e.retry_after(),
            EffectError::Store(_) => None,
        }
    }

    /// The API said "too many requests" (429).
    pub fn is_throttled(&self) -> bool {
        matches!(
            self,
            EffectError::Connector(ConnectorError::Throttled { .. })
                | EffectError::Graph(GraphError::Throttled { .. })
        )
    }

    /// Which API failed, for metrics.
    pub fn api(&self) -> &'static str {
        match self {
            EffectError::Connector(_) => "connector",
            EffectError::Graph(_) => "graph",
            EffectError::Store(_) => "store",
        }
    }

    /// A non-idempotent call that may have happened.
    pub fn is_unconfirmed(&self) -> bool {
        matches!(
            self,
            EffectError::Connector(ConnectorError::Unconfirmed(_))
                | EffectError::Graph(GraphError::Unconfirmed(_) | GraphError::Unchecked(_))
        )
    }
}

/// How an effect ended, as the worker needs to know it.
#[derive(Debug)]
pub enum EffectOutcome {
    Done {
        result: Option<Value>,
        changes: Vec<Change>,
        jobs: Vec<NewJob>,
    },
    Failed {
        error: EffectError,
        /// Repeating the same request cannot duplicate its effect.
        idempotent: bool,
        /// The conversation this effect targets, marked dead when the Connector says the bot is gone.
        conversation_id: Option<String>,
    },
}

impl EffectOutcome {
    fn done(result: Option<Value>) -> Self {
        EffectOutcome::Done {
            result,
            changes: Vec::new(),
            jobs: Vec::new(),
        }
    }

    fn failed(error: impl Into<EffectError>, idempotent: bool, conversation: Option<&str>) -> Self {
        EffectOutcome::Failed {
            error: error.into(),
            idempotent,
            conversation_id: conversation.map(str::to_string),
        }
    }
}

impl Effect {
    /// Reads a job's payload. The message effects carry a whole activity (a card is kilobytes); it is kept
    /// as the text it was stored as and posted as it is, instead of being built as a tree (serde buffers
    /// every field of a tagged enum first) and serialised again.
    ///
    /// A message is read in one pass over the text: its kind and the fields of both message effects at once.
    /// Reading the kind first and then the effect scanned a card twice, a tenth of the worker's time under
    /// load. Any other kind, or a message that does not read this way, is read again as the tagged enum it
    /// is, which also gives the error a malformed payload deserves.
    pub fn from_payload(payload: &str) -> serde_json::Result<Effect> {
        #[derive(Deserialize)]
        struct Message<'a> {
            #[serde(borrow)]
            kind: Cow<'a, str>,
            service_url: Option<String>,
            conversation_id: Option<String>,
            reply_to_id: Option<String>,
            activity_id: Option<String>,
            activity: Option<Box<RawValue>>,
            card_key: Option<String>,
        }
        let Ok(m) = serde_json::from_str::<Message>(payload) else {
            return serde_json::from_str(payload);
        };
        match (
            m.kind.as_ref(),
            m.service_url,
            m.conversation_id,
            m.activity,
            m.activity_id,
        ) {
            ("connector_send", Some(service_url), Some(conversation_id), Some(activity), _) => {
                Ok(Effect::ConnectorSend(SendActivity {
                    service_url,
                    conversation_id,
                    reply_to_id: m.reply_to_id,
                    activity: OutboundActivity::from_raw(activity),
                    card_key: m.card_key,
                }))
            }
            (
                "connector_update",
                Some(service_url),
                Some(conversation_id),
                Some(activity),
                Some(activity_id),
            ) => Ok(Effect::ConnectorUpdate(UpdateActivity {
                service_url,
                conversation_id,
                activity_id,
                activity: OutboundActivity::from_raw(activity),
            })),
            _ => serde_json::from_str(payload),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Effect::ConnectorSend { .. } => "connector_send",
            Effect::ConnectorUpdate { .. } => "connector_update",
            Effect::ResolveRosterMember { .. } => "resolve_roster_member",
            Effect::ProposeInvite { .. } => "propose_invite",
            Effect::DraftIntroEmail { .. } => "draft_intro_email",
            Effect::CreateInviteEvent { .. } => "create_invite_event",
            Effect::DraftFollowup { .. } => "draft_followup",
            Effect::FtaFiled { .. } => "fta_filed",
            Effect::PostFtaThread { .. } => "fta_post_thread",
            Effect::UpdateFtaCard { .. } => "fta_update_card",
            Effect::EmailFta { .. } => "fta_email",
            Effect::NotifyLeads { .. } => "fta_notify_leads",
            Effect::FtaReminder { .. } => "fta_reminder",
            Effect::PrepReminder { .. } => "prep_reminder",
            Effect::ScheduleSync { .. } => "sync_schedule",
            Effect::SyncReminder { .. } => "sync_reminder",
            Effect::UpdateSyncAttendees { .. } => "sync_attendees",
        }
    }

    pub fn ordering_key(&self) -> Option<String> {
        match self {
            Effect::ConnectorSend(SendActivity {
                conversation_id, ..
            })
            | Effect::ConnectorUpdate(UpdateActivity {
                conversation_id, ..
            })
            | Effect::ResolveRosterMember {
                conversation_id, ..
            }
            | Effect::ProposeInvite {
                conversation_id, ..
            }
            | Effect::DraftIntroEmail {
                conversation_id, ..
            }
            | Effect::CreateInviteEvent {
                conversation_id, ..
            }
            | Effect::DraftFollowup {
                conversation_id, ..
            }
            | Effect::FtaFiled {
                conversation_id, ..
            }
            | Effect::PostFtaThread {
                conversation_id, ..
            }
            | Effect::UpdateFtaCard {
                conversation_id, ..
            }
            | Effect::EmailFta {
                conversation_id, ..
            }
            | Effect::NotifyLeads {
                conversation_id, ..
            } => Some(format!("conv:{}", base_conversation(conversation_id))),
            // A reminder waits for its time; it must not hold the conversation's other effects back.
            Effect::FtaReminder { .. }
            | Effect::PrepReminder { .. }
            | Effect::ScheduleSync { .. }
            | Effect::SyncReminder { .. }
            | Effect::UpdateSyncAttendees { .. } => None,
        }
    }

    /// Performs the effect once. `key` is the job's idempotency key, the base of its follow-ups' keys and of
    /// the `x-fieldbot-idempotency-key` header on every call it makes.
    pub async fn perform(&self, ctx: &EffectContext, key: &str) -> EffectOutcome {
        self.perform_noting(ctx, key, None, false).await.0
    }

    /// [`Effect::perform`], running `on_send` before the first call that must not be repeated, and looking
    /// those calls up first when `checking` (see [`crate::idempotency::scope_checking`]).
    pub async fn perform_noting(
        &self,
        ctx: &EffectContext,
        key: &str,
        on_send: Option<crate::idempotency::SendHook>,
        checking: bool,
    ) -> (EffectOutcome, crate::idempotency::Sends) {
        crate::idempotency::scope_checking(key, on_send, checking, self.perform_calls(ctx, key))
            .await
    }

    async fn perform_calls(&self, ctx: &EffectContext, key: &str) -> EffectOutcome {
        match self {
            Effect::ProposeInvite {
                engagement_id,
                invite_id,
                ..
            } => super::invite::propose(ctx, key, *engagement_id, *invite_id).await,
            Effect::DraftIntroEmail {
                engagement_id,
                invite_id,
                ..
            } => super::invite::draft(ctx, key, *engagement_id, *invite_id).await,
            Effect::CreateInviteEvent {
                engagement_id,
                invite_id,
                ..
            } => super::invite::create_event(ctx, key, *engagement_id, *invite_id).await,
            Effect::DraftFollowup {
                engagement_id,
                notes,
                ..
            } => super::invite::draft_followup(ctx, *engagement_id, notes).await,
            Effect::FtaFiled { request_key, .. } => super::fta::filed(ctx, key, request_key).await,
            Effect::PostFtaThread { id, .. } => super::fta::post_thread(ctx, *id).await,
            Effect::UpdateFtaCard { id, .. } => super::fta::update_card(ctx, *id).await,
            Effect::EmailFta {
                id,
                audience,
                version,
                ..
            } => super::fta::email(ctx, *id, *audience, *version).await,
            Effect::NotifyLeads { id, .. } => super::fta::notify_leads(ctx, key, *id).await,
            Effect::FtaReminder { id, n, .. } => super::fta::remind(ctx, *id, *n).await,
            Effect::PrepReminder {
                engagement_id,
                invite_id,
            } => super::invite::prep_reminder(ctx, key, *engagement_id, *invite_id).await,
            Effect::ScheduleSync {
                engagement_id,
                version,
            } => super::sync::schedule(ctx, key, *engagement_id, *version).await,
            Effect::SyncReminder {
                engagement_id,
                version,
                occurrence,
            } => super::sync::remind(ctx, key, *engagement_id, *version, *occurrence).await,
            Effect::UpdateSyncAttendees { engagement_id } => {
                super::sync::update_attendees(ctx, *engagement_id).await
            }
            Effect::ConnectorSend(SendActivity {
                service_url,
                conversation_id,
                reply_to_id,
                activity,
                card_key,
            }) => {
                let sent = match reply_to_id {
                    Some(reply_to) => {
                        ctx.connector
                            .reply_to_activity(service_url, conversation_id, reply_to, activity)
                            .await
                    }
                    None => {
                        ctx.connector
                            .send_to_conversation(service_url, conversation_id, activity)
                            .await
                    }
                };
                match sent {
                    Ok(r) => {
                        let changes = card_key
                            .iter()
                            .filter(|_| !r.id.is_empty())
                            .map(|k| {
                                Change::SaveCard(crate::store::CardRef {
                                    key: k.clone(),
                                    conversation_id: conversation_id.clone(),
                                    activity_id: r.id.clone(),
                                    service_url: service_url.clone(),
                                })
                            })
                            .collect();
                        EffectOutcome::Done {
                            result: Some(json!({ "activityId": r.id })),
                            changes,
                            jobs: Vec::new(),
                        }
                    }
                    Err(error) => EffectOutcome::failed(error, false, Some(conversation_id)),
                }
            }
            Effect::ConnectorUpdate(UpdateActivity {
                service_url,
                conversation_id,
                activity_id,
                activity,
            }) => match ctx
                .connector
                .update_activity(service_url, conversation_id, activity_id, activity)
                .await
            {
                Ok(r) => EffectOutcome::done(Some(json!({ "activityId": r.id }))),
                Err(error) => EffectOutcome::failed(error, true, Some(conversation_id)),
            },
            Effect::ResolveRosterMember {
                engagement_id,
                role,
                target,
                requested_by,
                service_url,
                conversation_id,
                reply,
            } => {
                let person = match target {
                    MemberTarget::Mention { teams_id, name } => {
                        match ctx
                            .connector
                            .get_member(service_url, conversation_id, teams_id)
                            .await
                        {
                            Ok(account) => Person {
                                name: account.name.clone().unwrap_or_else(|| name.clone()),
                                email: account.email.clone(),
                                upn: account.user_principal_name.clone(),
                                aad_object_id: account.aad_object_id.clone(),
                                teams_id: Some(account.id.clone()),
                            },
                            Err(
                                ConnectorError::NotInConversation { .. }
                                | ConnectorError::Permanent {
                                    status: 400 | 404, ..
                                },
                            ) => {
                                return reply_only(
                                    ctx,
                                    key,
                                    reply,
                                    format!(
                                        "I couldn't find {} in this team, so I did not add them. \
                                         Add them to the team first, or use their email address.",
                                        cards::plain(name)
                                    ),
                                );
                            }
                            Err(error) => return EffectOutcome::failed(error, true, None),
                        }
                    }
                    MemberTarget::Email { address: email } => match ctx.graph.get_user(email).await
                    {
                        Ok(user) => Person {
                            name: user.display_name.clone().unwrap_or_else(|| email.clone()),
                            email: user.mail.clone().or_else(|| Some(email.clone())),
                            upn: user.user_principal_name.clone(),
                            aad_object_id: Some(user.id.clone()).filter(|id| !id.is_empty()),
                            teams_id: None,
                        },
                        Err(
                            error @ (GraphError::NotFound { .. } | GraphError::Forbidden { .. }),
                        ) => {
                            return reply_only(ctx, key, reply, error.user_message(email));
                        }
                        Err(error) => return EffectOutcome::failed(error, true, None),
                    },
                };
                let engagement = match ctx.store.engagement(*engagement_id).await {
                    Ok(Some(e)) if e.active => e,
                    Ok(_) => {
                        return reply_only(
                            ctx,
                            key,
                            reply,
                            "That engagement was closed in the meantime; nobody was added.".into(),
                        );
                    }
                    Err(error) => return EffectOutcome::failed(error, true, None),
                };
                let member = RosterMember {
                    role: *role,
                    person,
                };
                let mut roster: Vec<RosterMember> = engagement
                    .roster
                    .into_iter()
                    .filter(|m| {
                        m.role != *role || person_key(&m.person) != person_key(&member.person)
                    })
                    .collect();
                roster.push(member.clone());
                let card = cards::roster_card(engagement.id, &engagement.customer, &roster);
                EffectOutcome::Done {
                    result: None,
                    changes: vec![Change::AddRosterMember {
                        engagement_id: *engagement_id,
                        member,
                        by: requested_by.clone(),
                    }],
                    jobs: vec![
                        send_job(ctx, key, reply, card_activity(card), None),
                        super::sync::attendees_job(
                            ctx.clock.now(),
                            ctx.max_attempts,
                            *engagement_id,
                            key,
                        ),
                    ],
                }
            }
        }
    }
}

/// Finishes an effect with nothing but a message to the user.
fn reply_only(ctx: &EffectContext, key: &str, to: &ReplyTarget, text: String) -> EffectOutcome {
    EffectOutcome::Done {
        result: None,
        changes: Vec::new(),
        jobs: vec![send_job(ctx, key, to, text_activity(&text), None)],
    }
}

/// A follow-up message job, keyed after the job that causes it.
pub fn send_job(
    ctx: &EffectContext,
    key: &str,
    to: &ReplyTarget,
    activity: OutboundActivity,
    card_key: Option<String>,
) -> NewJob {
    let effect = Effect::ConnectorSend(SendActivity {
        service_url: to.service_url.clone(),
        conversation_id: to.conversation_id.clone(),
        reply_to_id: to.reply_to_id.clone(),
        activity,
        card_key,
    });
    super::job(
        &effect,
        format!("{key}:reply"),
        ctx.clock.now(),
        ctx.max_attempts,
    )
}

pub fn text_activity(text: &str) -> OutboundActivity {
    json!({ "type": "message", "textFormat": "markdown", "text": text }).into()
}

/// A card goes alone in its activity: text beside it makes Teams split the message and lose the id that
/// later updates need.
pub fn card_activity(card: Value) -> OutboundActivity {
    json!({
        "type": "message",
        "attachments": [{ "contentType": crate::turn::ADAPTIVE_CARD, "content": card }],
    })
    .into()
}

/// `19:x@thread.tacv2;messageid=1` and `19:x@thread.tacv2` are the same conversation reference.
pub fn base_conversation(id: &str) -> &str {
    id.split(";messageid=").next().unwrap_or(id)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    /// Every effect must survive the trip through the job table; a serialisation failure would store a
    /// job that can never run.
    #[test]
    fn effects_round_trip_through_json() {
        let reply = ReplyTarget {
            service_url: "https://smba.trafficmanager.net/emea/".into(),
            conversation_id: "19:c@thread.tacv2;messageid=1".into(),
            reply_to_id: Some("1".into()),
        };
        let effects = vec![
            Effect::ConnectorSend(SendActivity {
                service_url: reply.service_url.clone(),
                conversation_id: "19:c@thread.tacv2".into(),
                reply_to_id: None,
                activity: json!({"type": "message", "text": "é \"q\""}).into(),
                card_key: Some("prep:1".into()),
            }),
            Effect::ConnectorUpdate(UpdateActivity {
                service_url: reply.service_url.clone(),
                conversation_id: "19:c@thread.tacv2".into(),
                activity_id: "2".into(),
                activity: json!({"type": "message"}).into(),
            }),
            Effect::ResolveRosterMember {
                engagement_id: 1,
                role: Role::Tam,
                target: MemberTarget::Email {
                    address: "a@b.com".into(),
                },
                requested_by: "Dana".into(),
                service_url: reply.service_url.clone(),
                conversation_id: "19:c@thread.tacv2".into(),
                reply: reply.clone(),
            },
            Effect::ResolveRosterMember {
                engagement_id: 1,
                role: Role::Ats,
                target: MemberTarget::Mention {
                    teams_id: "29:a".into(),
                    name: "Ada".into(),
                },
                requested_by: "Dana".into(),
                service_url: reply.service_url.clone(),
                conversation_id: "19:c@thread.tacv2".into(),
                reply,
            },
        ];
        for effect in effects {
            let value = serde_json::to_value(&effect).unwrap();
            assert_eq!(value["kind"], effect.kind());
            let back: Effect = serde_json::from_value(value).unwrap();
            assert_eq!(back, effect);
            // The worker's reader, which keeps a message's activity as text, reads the same effect.
            let payload = serde_json::to_string(&effect).unwrap();
            assert_eq!(Effect::from_payload(&payload).unwrap(), effect);
        }
    }

    /// The one-pass reader of messages gives way to the tagged enum's for anything it does not read, so a
    /// broken payload is still refused with the reason, and a message's fields in any order still read.
    #[test]
    fn a_message_payload_reads_in_any_field_order_and_a_broken_one_says_what_is_wrong() {
        let send = r#"{"activity":{"type":"message","text":"hi"},"conversation_id":"19:c","kind":"connector_send","service_url":"https://s/"}"#;
        match Effect::from_payload(send).unwrap() {
            Effect::ConnectorSend(s) => {
                assert_eq!(s.activity.as_json(), r#"{"type":"message","text":"hi"}"#);
                assert_eq!(
                    (s.service_url.as_str(), s.reply_to_id),
                    ("https://s/", None)
                );
            }
            other => panic!("{other:?}"),
        }
        for (payload, reason) in [
            (
                r#"{"kind":"connector_send","conversation_id":"19:c","activity":{}}"#,
                "missing field `service_url`",
            ),
            (
                r#"{"kind":"connector_update","service_url":"https://s/","conversation_id":"19:c","activity":{}}"#,
                "missing field `activity_id`",
            ),
            (
                r#"{"kind":"connector_send","service_url":7,"conversation_id":"19:c","activity":{}}"#,
                "invalid type",
            ),
            (r#"{"kind":"no_such_effect"}"#, "unknown variant"),
            (r#"{"kind":"connector_send","#, "EOF"),
        ] {
            let error = Effect::from_payload(payload).unwrap_err().to_string();
            assert!(error.contains(reason), "{payload}: {error}");
        }
    }
}
