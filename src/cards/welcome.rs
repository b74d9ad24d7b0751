//! The card posted when fieldbot is installed in a team.

use serde_json::{Value, json};

use super::{adaptive_card, execute_action, fact_set, heading, plain, subheading, text, truncate};
use crate::commands::{COMMANDS, RolesQuery, VERB_HELP_SHOW, VERB_ROLES_SHOW};

/// Team names are free text chosen by whoever created the team.
const MAX_TEAM_NAME_CHARS: usize = 80;
/// Next steps beyond `help`; the card is a greeting, not the manual.
const MAX_EXAMPLES: usize = 3;

pub fn welcome_card(team_name: Option<&str>) -> Value {
    let greeting = match team_name.map(str::trim).filter(|name| !name.is_empty()) {
        Some(name) => format!(
            "Thanks for adding me to **{}**.",
            plain(&truncate(name, MAX_TEAM_NAME_CHARS))
        ),
        None => "Thanks for adding me.".to_owned(),
    };

    let body = vec![
        heading("Hi, I'm fieldbot"),
        text(&greeting),
        text(
            "I help FastTrack Managers work with the Field, the Microsoft account team of the customer, right here in the account-team channel:",
        ),
        text(concat!(
            "- draft the intro email and the internal invite with the standard agenda, after checking that the key players are free\n",
            "- schedule the recurring Field team sync\n",
            "- run the Request FastTrack Architect (FTA) workflow: the form, the key-input rules, a status card and the leads' approvals\n",
            "- show the Field roles and who does what",
        )),
        subheading("Next steps"),
        next_steps(),
    ];

    let actions = vec![
        execute_action("Show commands", VERB_HELP_SHOW, json!({})),
        execute_action(
            "Field roles",
            VERB_ROLES_SHOW,
            json!({ "query": RolesQuery::All.as_action_value() }),
        ),
    ];
    adaptive_card(body, actions)
}

/// `@fieldbot help` first, then examples from the command table, so new commands show up here
/// without touching this card.
fn next_steps() -> Value {
    let steps: Vec<(String, &str)> =
        std::iter::once(("@fieldbot help".to_owned(), "See all commands"))
            .chain(
                COMMANDS
                    .iter()
                    .filter(|spec| spec.name != "help")
                    .take(MAX_EXAMPLES)
                    .map(|spec| (format!("@fieldbot {}", spec.example), spec.summary)),
            )
            .collect();
    fact_set(steps.iter().map(|(title, value)| (title.as_str(), *value)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use crate::cards::test_support::{assert_card_ok, execute_actions, texts};

    #[test]
    fn welcome_card_is_valid_with_and_without_team_name() {
        for name in [
            None,
            Some(""),
            Some("Contoso account team"),
            Some(&*"x".repeat(5000)),
        ] {
            assert_card_ok(&welcome_card(name));
        }
    }

    #[test]
    fn welcome_card_has_next_steps_and_show_commands() {
        let card = welcome_card(Some("Contoso account team"));
        let texts = texts(&card);
        assert!(texts.iter().any(|t| t == "@fieldbot help"));
        assert!(texts.iter().any(|t| t == "@fieldbot roles TAM"));
        assert!(texts.iter().any(|t| t.contains("**Contoso account team**")));
        let show = execute_actions(&card)
            .into_iter()
            .find(|a| a["title"] == "Show commands")
            .unwrap();
        assert_eq!(show["verb"], VERB_HELP_SHOW);
    }

    #[test]
    fn team_name_cannot_inject_links() {
        let card = welcome_card(Some(
            "Evil [click](https://evil.example) ![i](https://evil.example/i.png)",
        ));
        let json = card.to_string();
        assert!(!json.contains("]("), "{json}");
        assert!(!json.contains("https://evil"), "{json}");
    }
}
