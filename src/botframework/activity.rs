//! The inbound activity, parsed leniently: Teams adds fields over time, so everything we do not need is
//! optional and unknown members are ignored. What the bot relies on is checked in `http::messages`.

use std::sync::{Arc, OnceLock};

use sha2::Digest;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::commands::Mention;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub service_url: Option<String>,
    #[serde(default)]
    pub channel_id: Option<String>,
    #[serde(default)]
    pub from: Option<ChannelAccount>,
    #[serde(default)]
    pub recipient: Option<ChannelAccount>,
    #[serde(default)]
    pub conversation: Option<ConversationAccount>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub entities: Option<Vec<Value>>,
    #[serde(default)]
    pub channel_data: Option<Value>,
    #[serde(default)]
    pub value: Option<Value>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub reply_to_id: Option<String>,
    #[serde(default)]
    pub members_added: Option<Vec<ChannelAccount>>,
    #[serde(default)]
    pub members_removed: Option<Vec<ChannelAccount>>,
    #[serde(default)]
    pub locale: Option<String>,
}

/// An activity the bot sends, kept as the JSON text that goes on the wire. It is serialised once when the
/// turn builds it; the job row stores that text verbatim and the worker posts it without building it as a
/// tree again (for a card of several kilobytes, that tree work was most of a reply's CPU).
#[derive(Clone)]
pub struct OutboundActivity(Arc<Stored>);

struct Stored {
    raw: Box<RawValue>,
    /// The text and its SHA-256 (hex) as stored apart from the jobs that send it: computed once per
    /// activity, and an answer cached per process is one activity however often it is sent.
    shared: OnceLock<(Arc<str>, Arc<str>)>,
}

impl OutboundActivity {
    pub fn from_raw(raw: Box<RawValue>) -> Self {
        Self(Arc::new(Stored {
            raw,
            shared: OnceLock::new(),
        }))
    }

    pub fn as_json(&self) -> &str {
        self.0.raw.get()
    }

    /// `(digest, text)`: the activity's JSON text with its SHA-256 in hex, the key under which the store
    /// keeps one copy of it for every job that sends it.
    pub fn shared(&self) -> (Arc<str>, Arc<str>) {
        self.0
            .shared
            .get_or_init(|| {
                let text = self.as_json();
                let digest = format!("{:x}", sha2::Sha256::digest(text.as_bytes()));
                (Arc::from(digest), Arc::from(text))
            })
            .clone()
    }

    /// The activity as a JSON tree, for code that inspects it (tests, the card checks).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.as_json()).unwrap_or(Value::Null)
    }
}

impl From<&Value> for OutboundActivity {
    fn from(value: &Value) -> Self {
        // Serialising a `Value` cannot fail (its keys are strings); `null` keeps the conversion total.
        Self::from_raw(
            serde_json::value::to_raw_value(value).unwrap_or_else(|_| RawValue::NULL.to_owned()),
        )
    }
}

impl From<Value> for OutboundActivity {
    fn from(value: Value) -> Self {
        Self::from(&value)
    }
}

impl std::fmt::Debug for OutboundActivity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_json())
    }
}

impl PartialEq for OutboundActivity {
    fn eq(&self, other: &Self) -> bool {
        self.as_json() == other.as_json()
    }
}

impl Serialize for OutboundActivity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.raw.serialize(serializer)
    }
}

/// Through a tree: this path also serves payloads read inside a tagged enum, where serde buffers the input
/// and a raw value cannot be borrowed. The worker's hot path reads the raw text instead
/// (`Effect::from_payload`).
impl<'de> Deserialize<'de> for OutboundActivity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self::from(Value::deserialize(deserializer)?))
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChannelAccount {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub aad_object_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConversationAccount {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub conversation_type: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub is_group: Option<bool>,
    #[serde(default)]
    pub name: Option<String>,
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = value;
    for key in path {
        cur = cur.get(key)?;
    }
    cur.as_str().filter(|s| !s.is_empty())
}

impl Activity {
    pub fn conversation_id(&self) -> Option<&str> {
        self.conversation
            .as_ref()
            .map(|c| c.id.as_str())
            .filter(|s| !s.is_empty())
    }

    /// A channel thread id is `<channel>;messageid=<root>`; the conversation reference is the channel itself.
    pub fn base_conversation_id(&self) -> Option<&str> {
        self.conversation_id()
            .map(|id| id.split(";messageid=").next().unwrap_or(id))
    }

    pub fn tenant_id(&self) -> Option<&str> {
        self.channel_data
            .as_ref()
            .and_then(|cd| str_at(cd, &["tenant", "id"]))
            .or_else(|| {
                self.conversation
                    .as_ref()
                    .and_then(|c| c.tenant_id.as_deref())
                    .filter(|s| !s.is_empty())
            })
    }

    pub fn team_id(&self) -> Option<&str> {
        self.channel_data
            .as_ref()
            .and_then(|cd| str_at(cd, &["team", "id"]).or_else(|| str_at(cd, &["teamsTeamId"])))
    }

    pub fn team_name(&self) -> Option<&str> {
        self.channel_data
            .as_ref()
            .and_then(|cd| str_at(cd, &["team", "name"]))
    }

    pub fn channel_data_channel_id(&self) -> Option<&str> {
        self.channel_data.as_ref().and_then(|cd| {
            str_at(cd, &["channel", "id"]).or_else(|| str_at(cd, &["teamsChannelId"]))
        })
    }

    /// The channel the installing user picked, where the welcome card belongs.
    pub fn selected_channel_id(&self) -> Option<&str> {
        self.channel_data
            .as_ref()
            .and_then(|cd| str_at(cd, &["settings", "selectedChannel", "id"]))
    }

    pub fn event_type(&self) -> Option<&str> {
        self.channel_data
            .as_ref()
            .and_then(|cd| str_at(cd, &["eventType"]))
    }

    pub fn bot_id(&self) -> Option<&str> {
        self.recipient
            .as_ref()
            .map(|r| r.id.as_str())
            .filter(|s| !s.is_empty())
    }

    /// The `mention` entities, in order. Malformed entities are skipped rather than failing the activity.
    pub fn mentions(&self) -> Vec<Mention> {
        self.entities
            .iter()
            .flatten()
            .filter(|e| e.get("type").and_then(Value::as_str) == Some("mention"))
            .filter_map(|e| {
                let mentioned = e.get("mentioned")?;
                Some(Mention {
                    id: mentioned.get("id")?.as_str()?.to_string(),
                    name: mentioned
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    text: e.get("text")?.as_str()?.to_string(),
                })
            })
            .collect()
    }

    /// Whether the bot itself is among `accounts` (membersAdded / membersRemoved).
    pub fn includes_bot(&self, accounts: &Option<Vec<ChannelAccount>>) -> bool {
        match (self.bot_id(), accounts) {
            (Some(bot), Some(list)) => list.iter().any(|a| a.id == bot),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_teams_channel_shape() {
        let a: Activity = serde_json::from_value(json!({
            "type": "message", "id": "1", "serviceUrl": "https://smba.trafficmanager.net/emea/",
            "channelId": "msteams",
            "conversation": {"id": "19:c@thread.tacv2;messageid=42", "conversationType": "channel"},
            "recipient": {"id": "28:bot", "name": "fieldbot"},
            "entities": [{"type": "mention", "text": "<at>fieldbot</at>", "mentioned": {"id": "28:bot", "name": "fieldbot"}},
                         {"type": "clientInfo", "locale": "en-US"}, 17],
            "channelData": {"tenant": {"id": "t1"}, "team": {"id": "19:team", "name": "Contoso"},
                            "channel": {"id": "19:c@thread.tacv2"}},
            "somethingNew": {"x": 1}
        }))
        .unwrap();
        assert_eq!(a.base_conversation_id(), Some("19:c@thread.tacv2"));
        assert_eq!(a.tenant_id(), Some("t1"));
        assert_eq!(a.team_id(), Some("19:team"));
        assert_eq!(a.team_name(), Some("Contoso"));
        assert_eq!(a.mentions().len(), 1);
    }
}
