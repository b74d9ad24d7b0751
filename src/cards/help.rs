//! The `help` card, generated from the command table.

use serde_json::{Value, json};

use super::{adaptive_card, execute_action, heading, section, subtle, text};
use crate::commands::{CommandSpec, RolesQuery, VERB_ROLES_SHOW};

pub fn help_card(commands: &[CommandSpec]) -> Value {
    let mut body = vec![
        heading("fieldbot commands"),
        text(
            "In a channel, mention me first: **@fieldbot help**. In a personal chat, just type the command. Commands are not case-sensitive.",
        ),
    ];
    body.extend(commands.iter().map(command_section));
    body.push(subtle(
        "Options are written key:value, or key:\"several words\" when the value has spaces.",
    ));

    let actions = vec![
        execute_action(
            "Field roles",
            VERB_ROLES_SHOW,
            json!({ "query": RolesQuery::All.as_action_value() }),
        ),
        execute_action(
            "ATU roles",
            VERB_ROLES_SHOW,
            json!({ "query": RolesQuery::Atu.as_action_value() }),
        ),
    ];
    adaptive_card(body, actions)
}

/// Usage in monospace, what it does, and an example. TextRuns are not markdown, so `<ABBR>` and
/// brackets in usage lines show as typed.
fn command_section(spec: &CommandSpec) -> Value {
    section(vec![
        json!({
            "type": "RichTextBlock",
            "inlines": [
                { "type": "TextRun", "text": spec.usage, "fontType": "Monospace", "weight": "Bolder" },
            ],
        }),
        text(spec.summary),
        json!({
            "type": "RichTextBlock",
            "spacing": "Small",
            "inlines": [
                { "type": "TextRun", "text": "Example: ", "isSubtle": true },
                { "type": "TextRun", "text": spec.example, "fontType": "Monospace" },
            ],
        }),
    ])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use crate::cards::test_support::{assert_card_ok, execute_actions, texts};
    use crate::commands::COMMANDS;

    #[test]
    fn help_card_is_valid_and_lists_every_command() {
        let card = help_card(COMMANDS);
        assert_card_ok(&card);
        let texts = texts(&card);
        for spec in COMMANDS {
            for needle in [spec.usage, spec.summary, spec.example] {
                assert!(
                    texts.iter().any(|t| t == needle),
                    "help card lacks {needle:?} of {}",
                    spec.name
                );
            }
        }
    }

    #[test]
    fn help_card_offers_the_roles_views() {
        let card = help_card(COMMANDS);
        let verbs: Vec<&str> = execute_actions(&card)
            .iter()
            .map(|a| a["verb"].as_str().unwrap())
            .collect();
        assert_eq!(verbs, [VERB_ROLES_SHOW, VERB_ROLES_SHOW]);
    }

    #[test]
    fn help_card_stays_within_budget_for_a_long_table() {
        let many: Vec<CommandSpec> = COMMANDS.iter().cycle().take(40).copied().collect();
        assert_card_ok(&help_card(&many));
    }
}
