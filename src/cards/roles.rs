//! The `roles` card: the Field roles from field-roles.md.

use serde_json::{Value, json};

use super::{adaptive_card, execute_action, fact_set, heading, section, subheading, subtle, text};
use crate::commands::{RolesQuery, VERB_ROLES_SHOW};
use crate::domain::roles::{
    self, FIELD_INTRO, FTA_TITLE, Role, RoleDefinition, atu_roles, business_units, field_roles,
};

pub fn roles_card(query: &RolesQuery) -> Value {
    let body = match *query {
        RolesQuery::All => all_body(),
        RolesQuery::Atu => atu_body(),
        RolesQuery::One(role) => one_body(role),
    };
    adaptive_card(body, switch_actions(*query))
}

fn all_body() -> Vec<Value> {
    let mut body = vec![heading("Field roles"), text(FIELD_INTRO)];
    body.extend(field_roles().iter().map(role_section));
    body.push(subheading("Business units"));
    body.push(fact_set(
        business_units()
            .iter()
            .map(|unit| (unit.name, unit.description)),
    ));
    body
}

fn atu_body() -> Vec<Value> {
    let abbrs: Vec<&str> = atu_roles().map(|def| def.role.abbr()).collect();
    let mut body = vec![
        heading("ATU roles"),
        text(&format!(
            "The Field roles in the Account Team Unit (ATU): {}.",
            abbrs.join(", ")
        )),
    ];
    body.extend(atu_roles().map(role_section));
    body
}

fn one_body(role: Role) -> Vec<Value> {
    let title = format!("{} ({})", role.title(), role.abbr());
    match roles::definition(role) {
        Some(def) => {
            let unit = def.organization.business_unit();
            let mut body = vec![heading(&title), facts(def), text(def.objectives)];
            body.extend(def.note.map(subtle));
            body.push(subheading(unit.name));
            body.push(subtle(unit.description));
            body
        }
        // Not reachable from `roles FTA` (the parser refuses it), but a card built for it must
        // still say something true.
        None => vec![
            heading(&title),
            text(&format!(
                "The {FTA_TITLE} is FastTrack's own role, not a Field role. The Field roles are {}.",
                Role::FIELD.map(Role::abbr).join(", ")
            )),
        ],
    }
}

fn role_section(def: &RoleDefinition) -> Value {
    let mut items = vec![
        subheading(&format!("{} ({})", def.title, def.role.abbr())),
        facts(def),
        text(def.objectives),
    ];
    items.extend(def.note.map(subtle));
    section(items)
}

fn facts(def: &RoleDefinition) -> Value {
    fact_set([
        ("Organization", def.organization.name()),
        ("ATU", if def.atu { "Yes" } else { "No" }),
    ])
}

/// Buttons to the other views; the current one is left out.
fn switch_actions(current: RolesQuery) -> Vec<Value> {
    [
        (RolesQuery::All, "All roles"),
        (RolesQuery::Atu, "ATU only"),
    ]
    .into_iter()
    .filter(|&(query, _)| query != current)
    .map(|(query, title)| {
        execute_action(
            title,
            VERB_ROLES_SHOW,
            json!({ "query": query.as_action_value() }),
        )
    })
    .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use crate::cards::test_support::{assert_card_ok, execute_actions, texts};
    use crate::commands::{Command, parse_action};

    fn all_views() -> Vec<RolesQuery> {
        let mut views = vec![RolesQuery::All, RolesQuery::Atu];
        views.extend(Role::ALL.map(RolesQuery::One));
        views
    }

    #[test]
    fn every_view_is_a_valid_card() {
        for query in all_views() {
            let card = roles_card(&query);
            assert_card_ok(&card);
        }
    }

    #[test]
    fn all_view_shows_every_role_and_both_business_units() {
        let texts = texts(&roles_card(&RolesQuery::All));
        for def in field_roles() {
            let title = format!("{} ({})", def.title, def.role.abbr());
            assert!(texts.contains(&title), "missing {title}");
            assert!(texts.iter().any(|t| t == def.objectives));
            if let Some(note) = def.note {
                assert!(texts.iter().any(|t| t == note));
            }
        }
        for unit in business_units() {
            assert!(texts.iter().any(|t| t == unit.name));
            assert!(texts.iter().any(|t| t == unit.description));
        }
        assert!(texts.iter().any(|t| t == "Services"));
        assert!(texts.iter().any(|t| t == "Yes") && texts.iter().any(|t| t == "No"));
    }

    #[test]
    fn atu_view_shows_only_atu_roles() {
        let texts = texts(&roles_card(&RolesQuery::Atu));
        for def in field_roles() {
            let title = format!("{} ({})", def.title, def.role.abbr());
            assert_eq!(texts.contains(&title), def.atu, "{title}");
        }
        assert!(texts.iter().all(|t| t != "No"));
    }

    #[test]
    fn one_view_shows_the_role_and_its_business_unit() {
        let texts = texts(&roles_card(&RolesQuery::One(Role::Tam)));
        assert!(texts.contains(&"Technical Account Manager (TAM)".to_owned()));
        assert!(texts.contains(&"Services".to_owned()));
        assert!(texts.contains(&"No".to_owned()));
        let fta = texts_of(RolesQuery::One(Role::Fta));
        assert!(fta.iter().any(|t| t.contains("not a Field role")));
    }

    fn texts_of(query: RolesQuery) -> Vec<String> {
        texts(&roles_card(&query))
    }

    #[test]
    fn buttons_switch_to_the_other_views_and_round_trip() {
        for query in all_views() {
            let card = roles_card(&query);
            let actions = execute_actions(&card);
            assert!(!actions.is_empty(), "{query:?}");
            for action in actions {
                let verb = action["verb"].as_str().unwrap();
                let Command::Roles(target) = parse_action(verb, &action["data"]).unwrap() else {
                    panic!("{action}");
                };
                assert_ne!(target, query);
                // The Action.Submit fallback reaches the same command.
                let fallback = &action["fallback"]["data"];
                assert_eq!(
                    parse_action(fallback["verb"].as_str().unwrap(), fallback).unwrap(),
                    Command::Roles(target)
                );
            }
        }
    }
}
