//! Adaptive Card builders: pure functions returning `serde_json::Value`.
//!
//! Teams renders cards up to schema 1.5, and Universal Actions need `Action.Execute` with a verb;
//! [`execute_action`] is the only place that builds one. Text that did not come from this crate
//! goes through [`plain`] before it lands in a `TextBlock`, so it cannot become a link or an image.

mod engagement;
mod fta;
mod help;
mod invite;
mod prep;
mod roles;
mod roster;
mod sync_notes;
mod welcome;

pub use engagement::{EngagementView, engagement_summary_card, welcome_engagement_card};
pub use fta::{
    FTA_ENTITLEMENTS, FTA_REQUEST_TYPES, FTA_SEGMENTS, FtaAuditLine, FtaFormValues, FtaRequestView,
    FtaViewer, INPUT_ANSWER, INPUT_ASK, INPUT_FTA, INPUT_REASON, REFRESH_USER_LIMIT,
    VERB_FTA_ASSIGN, VERB_FTA_DECLINE, VERB_FTA_INFO, VERB_FTA_PROVIDE_INFO, VERB_FTA_SUBMIT,
    VERB_FTA_VIEW, VERB_FTA_WITHDRAW, fta_form_card, fta_form_values, fta_lead_notice_card,
    fta_list_card, fta_status_card,
};
pub use invite::{
    InviteState, InviteView, LOOK_FURTHER_DAYS, SlotChoice, VERB_INVITE_CANCEL, VERB_INVITE_OTHER,
    VERB_INVITE_SEND, invite_preview_card,
};
pub use prep::{TickInfo, VERB_PREP_SHOW, VERB_PREP_TOGGLE, prep_card};
pub use roster::{VERB_TEAM_SHOW, roster_card};
pub use sync_notes::{
    SyncNotesForm, VERB_SYNC_NOTES_SUBMIT, parse_sync_notes, sync_notes_form_card,
    sync_notes_prefill, sync_notes_recorded_card,
};

use serde_json::{Map, Value, json};

pub use help::help_card;
pub use roles::roles_card;
pub use welcome::welcome_card;

pub const CARD_VERSION: &str = "1.5";
pub const CARD_SCHEMA: &str = "http://adaptivecards.io/schemas/adaptive-card.json";
/// The Bot Connector rejects larger activities; cards stay below this with room for the envelope.
pub const CARD_BUDGET_BYTES: usize = 28 * 1024;

/// A top-level card. An empty `actions` list is left out rather than sent as `[]`.
pub fn adaptive_card(body: Vec<Value>, actions: Vec<Value>) -> Value {
    let mut card = Map::new();
    card.insert("type".into(), "AdaptiveCard".into());
    card.insert("$schema".into(), CARD_SCHEMA.into());
    card.insert("version".into(), CARD_VERSION.into());
    card.insert("body".into(), Value::Array(body));
    if !actions.is_empty() {
        card.insert("actions".into(), Value::Array(actions));
    }
    Value::Object(card)
}

/// A Universal Action button.
///
/// `verb` is what routes the click: Teams silently drops an `Action.Execute` without one. Clients
/// without Universal Actions get the `Action.Submit` fallback, whose data carries the verb next to
/// `data`'s fields so both paths reach the same `parse_action`. `data` should be an object; `null`
/// means none, and any other value is kept under `"value"`.
pub fn execute_action(title: &str, verb: &str, data: Value) -> Value {
    debug_assert!(!verb.trim().is_empty(), "Action.Execute needs a verb");
    let data = match data {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        other => Map::from_iter([("value".to_owned(), other)]),
    };
    let mut submit_data = data.clone();
    submit_data.insert("verb".into(), verb.into());
    json!({
        "type": "Action.Execute",
        "title": title,
        "verb": verb,
        "data": data,
        "fallback": {
            "type": "Action.Submit",
            "title": title,
            "data": submit_data,
        },
    })
}

/// Makes user text safe in a TextBlock without visible escapes: it can carry no link, image or autolink.
///
/// Backslash escapes are not honoured by every Teams client (they then show up as `\(`), so instead of
/// escaping every markdown character, a zero-width space breaks exactly the sequences that make links:
/// `](` and `![` (markdown links and images), `://` and `www.` (autolinked URLs), and `<` (angle-bracket
/// autolinks). Emphasis characters stay as typed; they cannot act.
pub fn plain(text: &str) -> String {
    const ZWSP: char = '\u{200b}';
    text.replace("](", &format!("]{ZWSP}("))
        .replace("![", &format!("!{ZWSP}["))
        .replace("://", &format!(":{ZWSP}//"))
        .replace("www.", &format!("www{ZWSP}."))
        .replace("WWW.", &format!("WWW{ZWSP}."))
        .replace('<', "\u{2039}")
        .replace('>', "\u{203a}")
}

/// Cuts `text` to at most `max_chars`, marking the cut, so free text cannot blow the size budget.
pub fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}…", text.get(..cut).unwrap_or_default().trim_end()),
    }
}

/// The card title; `style: heading` lets screen readers announce it as one.
pub fn heading(text: &str) -> Value {
    json!({
        "type": "TextBlock",
        "text": text,
        "style": "heading",
        "size": "Medium",
        "weight": "Bolder",
        "wrap": true,
    })
}

/// A section title inside a card.
pub fn subheading(text: &str) -> Value {
    json!({
        "type": "TextBlock",
        "text": text,
        "weight": "Bolder",
        "wrap": true,
        "spacing": "Medium",
    })
}

pub fn text(text: &str) -> Value {
    json!({ "type": "TextBlock", "text": text, "wrap": true })
}

pub fn subtle(text: &str) -> Value {
    json!({ "type": "TextBlock", "text": text, "wrap": true, "isSubtle": true, "spacing": "Small" })
}

pub fn fact_set<'a>(facts: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
    let facts: Vec<Value> = facts
        .into_iter()
        .map(|(title, value)| json!({ "title": title, "value": value }))
        .collect();
    json!({ "type": "FactSet", "facts": facts })
}

/// A group of elements set off from the previous one by a line.
pub fn section(items: Vec<Value>) -> Value {
    json!({ "type": "Container", "separator": true, "spacing": "Medium", "items": items })
}

#[cfg(test)]
pub(crate) mod test_support {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use std::sync::LazyLock;

    use serde_json::Value;

    use super::CARD_BUDGET_BYTES;

    pub(crate) static SCHEMA: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
        let schema: Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/schemas/adaptive-card-1.5.json"
        )))
        .expect("schema is JSON");
        jsonschema::draft6::new(&schema).expect("schema compiles")
    });

    /// Schema-valid, within budget, every `Action.Execute` routable: what Teams needs to show and
    /// deliver a card.
    pub(crate) fn assert_card_ok(card: &Value) {
        let errors: Vec<String> = SCHEMA
            .iter_errors(card)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "card fails the 1.5 schema:\n{}\n{card:#}",
            errors.join("\n")
        );
        assert_eq!(card["version"], "1.5");
        assert_eq!(card["$schema"], super::CARD_SCHEMA);
        let size = serde_json::to_vec(card).unwrap().len();
        assert!(size < CARD_BUDGET_BYTES, "card is {size} bytes");
        let executes = execute_actions(card);
        for action in &executes {
            let verb = action["verb"].as_str().unwrap_or_default();
            assert!(
                !verb.trim().is_empty(),
                "Action.Execute without verb: {action}"
            );
            assert_eq!(action["fallback"]["type"], "Action.Submit", "{action}");
            assert_eq!(action["fallback"]["data"]["verb"], verb, "{action}");
        }
    }

    /// Every `Action.Execute` anywhere in `value`, however deeply nested.
    pub(crate) fn execute_actions(value: &Value) -> Vec<&Value> {
        let mut found = Vec::new();
        walk(value, &mut found);
        found
    }

    fn walk<'v>(value: &'v Value, found: &mut Vec<&'v Value>) {
        match value {
            Value::Object(map) => {
                if map.get("type").and_then(Value::as_str) == Some("Action.Execute") {
                    found.push(value);
                }
                map.values().for_each(|v| walk(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }

    /// Every `text` of TextBlocks and TextRuns, to check what a card says.
    pub(crate) fn texts(value: &Value) -> Vec<String> {
        let mut out = Vec::new();
        collect_texts(value, &mut out);
        out
    }

    fn collect_texts(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("text" | "title" | "value", Value::String(s)) => out.push(s.clone()),
                        _ => collect_texts(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| collect_texts(v, out)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use serde_json::json;

    use super::test_support::{assert_card_ok, execute_actions};
    use super::*;

    #[test]
    fn plain_neutralises_links_and_images() {
        let cases = [
            ("[x](https://evil)", "[x]\u{200b}(https:\u{200b}//evil)"),
            (
                "![i](https://evil/i.png)",
                "!\u{200b}[i]\u{200b}(https:\u{200b}//evil/i.png)",
            ),
            ("<https://evil>", "\u{2039}https:\u{200b}//evil\u{203a}"),
            ("see www.evil.example", "see www\u{200b}.evil.example"),
            // What people type stays readable: no visible escapes.
            ("Contoso (EMEA) Ltd.", "Contoso (EMEA) Ltd."),
            ("R&D * team_1 #2", "R&D * team_1 #2"),
            ("a\\b", "a\\b"),
        ];
        for (input, expected) in cases {
            let out = plain(input);
            assert_eq!(out, expected, "{input}");
            assert!(!out.contains("]("), "{out}");
            assert!(!out.contains("://"), "{out}");
            assert!(!out.contains("!["), "{out}");
        }
    }

    #[test]
    fn execute_action_has_verb_and_submit_fallback() {
        let action = execute_action("ATU only", "roles.show", json!({"query": "atu"}));
        assert_eq!(
            action,
            json!({
                "type": "Action.Execute",
                "title": "ATU only",
                "verb": "roles.show",
                "data": {"query": "atu"},
                "fallback": {
                    "type": "Action.Submit",
                    "title": "ATU only",
                    "data": {"verb": "roles.show", "query": "atu"},
                },
            })
        );
        let card = adaptive_card(vec![text("x")], vec![action]);
        assert_card_ok(&card);
        assert_eq!(execute_actions(&card).len(), 1);
    }

    #[test]
    fn execute_action_data_shapes() {
        let none = execute_action("Help", "help.show", Value::Null);
        assert_eq!(none["data"], json!({}));
        assert_eq!(none["fallback"]["data"], json!({"verb": "help.show"}));
        let scalar = execute_action("X", "x.y", json!("s"));
        assert_eq!(scalar["data"], json!({"value": "s"}));
        // The verb in the fallback wins over a stray "verb" field in the data.
        let clash = execute_action("X", "x.y", json!({"verb": "other"}));
        assert_eq!(clash["fallback"]["data"]["verb"], "x.y");
    }

    #[test]
    fn walker_finds_nested_actions_without_verb() {
        let card = json!({"body": [{"type": "ActionSet", "actions": [
            {"type": "Action.Execute", "title": "bad"}
        ]}]});
        let found = execute_actions(&card);
        assert_eq!(found.len(), 1);
        assert!(found[0].get("verb").is_none());
    }

    #[test]
    fn schema_check_rejects_broken_cards() {
        let validator = &*test_support::SCHEMA;
        let good = adaptive_card(vec![text("x")], vec![]);
        assert!(validator.is_valid(&good));
        let broken = [
            json!({"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock"}]}),
            json!({"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "x", "bogus": 1}]}),
            json!({"type": "AdaptiveCard", "version": "1.5", "msteams": {"width": "Full"}, "body": []}),
            json!({"type": "AdaptiveCard", "version": "1.5", "body": [], "actions": [{"type": "Action.Execute", "verb": "x", "data": 1}]}),
        ];
        for card in broken {
            assert!(!validator.is_valid(&card), "{card}");
        }
    }

    #[test]
    fn truncate_marks_the_cut() {
        assert_eq!(truncate("Contoso", 10), "Contoso");
        assert_eq!(truncate("Contoso Ltd", 8), "Contoso…");
        assert_eq!(truncate("ääää", 2), "ää…");
    }
}
