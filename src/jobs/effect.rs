//! What a job does. Effects are data (serialised into the job row), so a job enqueued by one version of the
//! binary runs after a restart or on another replica.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::botframework::connector::{ConnectorClient, ConnectorError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Effect {
    /// POST an activity into a conversation (a new message, or a reply when `reply_to_id` is set).
    ConnectorSend {
        service_url: String,
        conversation_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to_id: Option<String>,
        activity: Value,
    },
    /// PUT: replace a message the bot sent earlier (card update in place).
    ConnectorUpdate {
        service_url: String,
        conversation_id: String,
        activity_id: String,
        activity: Value,
    },
}

/// How an effect ended, as the worker needs to know it.
#[derive(Debug)]
pub enum EffectOutcome {
    Done(Option<Value>),
    Failed {
        error: ConnectorError,
        /// Repeating the same request cannot duplicate its effect.
        idempotent: bool,
        /// The conversation this effect targets, marked dead when the Connector says the bot is gone.
        conversation_id: String,
    },
}

impl Effect {
    pub fn kind(&self) -> &'static str {
        match self {
            Effect::ConnectorSend { .. } => "connector_send",
            Effect::ConnectorUpdate { .. } => "connector_update",
        }
    }

    pub fn ordering_key(&self) -> Option<String> {
        match self {
            Effect::ConnectorSend {
                conversation_id, ..
            }
            | Effect::ConnectorUpdate {
                conversation_id, ..
            } => Some(format!("conv:{}", base_conversation(conversation_id))),
        }
    }

    pub async fn perform(&self, connector: &ConnectorClient) -> EffectOutcome {
        match self {
            Effect::ConnectorSend {
                service_url,
                conversation_id,
                reply_to_id,
                activity,
            } => {
                let sent = match reply_to_id {
                    Some(reply_to) => {
                        connector
                            .reply_to_activity(service_url, conversation_id, reply_to, activity)
                            .await
                    }
                    None => {
                        connector
                            .send_to_conversation(service_url, conversation_id, activity)
                            .await
                    }
                };
                match sent {
                    Ok(r) => EffectOutcome::Done(Some(json!({ "activityId": r.id }))),
                    Err(error) => EffectOutcome::Failed {
                        error,
                        idempotent: false,
                        conversation_id: conversation_id.clone(),
                    },
                }
            }
            Effect::ConnectorUpdate {
                service_url,
                conversation_id,
                activity_id,
                activity,
            } => match connector
                .update_activity(service_url, conversation_id, activity_id, activity)
                .await
            {
                Ok(r) => EffectOutcome::Done(Some(json!({ "activityId": r.id }))),
                Err(error) => EffectOutcome::Failed {
                    error,
                    idempotent: true,
                    conversation_id: conversation_id.clone(),
                },
            },
        }
    }
}

/// `19:x@thread.tacv2;messageid=1` and `19:x@thread.tacv2` are the same conversation reference.
pub fn base_conversation(id: &str) -> &str {
    id.split(";messageid=").next().unwrap_or(id)
}
