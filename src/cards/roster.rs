//! The `team` card: the engagement's roster of Field people, by role in playbook order, with who the
//! intro invite needs.

use serde_json::{Value, json};

use super::engagement::{
    Run, attention_runs, customer_text, fit_to_budget, in_playbook_order, person_name,
    plain_address, role_list, runs, shrink_person,
};
use super::prep::VERB_PREP_SHOW;
use super::{adaptive_card, execute_action, fact_set, heading, subtle, text};
use crate::domain::engagement::{
    MANDATORY_ROLES, OPTIONAL_ROLES, RosterMember, is_required_attendee, missing_mandatory,
};
use crate::domain::roles::Role;

/// Verb of the buttons that show the roster card; data `{"engagementId": i64}`.
pub const VERB_TEAM_SHOW: &str = "team.show";

/// People shown per role; a role with more is an input mistake the FM should see, not a list to
/// scroll.
const MAX_PER_ROLE: usize = 4;

pub fn roster_card(engagement_id: i64, customer: &str, roster: &[RosterMember]) -> Value {
    fit_to_budget(|divisor| {
        let shrunk: Vec<RosterMember> = roster
            .iter()
            .map(|m| RosterMember {
                role: m.role,
                person: shrink_person(&m.person, divisor),
            })
            .collect();
        build(engagement_id, customer, &shrunk)
    })
}

fn build(engagement_id: i64, customer: &str, roster: &[RosterMember]) -> Value {
    let mut body = vec![
        heading(&format!("Account team: {}", customer_text(customer))),
        subtle(&format!(
            "For the intro invite: mandatory {}; optional {}; the FTA is required once aligned.",
            role_list(&MANDATORY_ROLES),
            role_list(&OPTIONAL_ROLES),
        )),
    ];
    // The gap goes first: it is what blocks `invite`. All clear is said last, quietly.
    let missing = missing_mandatory(roster);
    if !missing.is_empty() {
        body.push(missing_line(&missing));
    }
    if roster.is_empty() {
        body.extend(empty_state());
    } else {
        body.extend(role_rows(roster));
        body.extend(not_on_roster(roster));
    }
    if missing.is_empty() {
        body.push(runs(&[
            Run::Text("✓ ATS and TAM are on the roster: ready for "),
            Run::Code("invite"),
            Run::Text("."),
        ]));
    }
    let actions = vec![execute_action(
        "Prep checklist",
        VERB_PREP_SHOW,
        json!({ "engagementId": engagement_id }),
    )];
    adaptive_card(body, actions)
}

/// Mandatory, optional or required-if-aligned, as the intro invite treats the role.
fn invite_label(role: Role) -> &'static str {
    if MANDATORY_ROLES.contains(&role) {
        "Mandatory"
    } else if is_required_attendee(role) {
        "Required if aligned"
    } else if OPTIONAL_ROLES.contains(&role) {
        "Optional"
    } else {
        "Not invited"
    }
}

fn empty_state() -> Vec<Value> {
    vec![
        text(
            "Nobody is on the roster yet. Add people by role, with an @mention or an email address:",
        ),
        runs(&[Run::Code("team add ATS @name")]),
        runs(&[Run::Code("team add TAM dana@contoso.com")]),
        fact_set(Role::ALL.map(|role| (role.abbr(), invite_label(role)))),
    ]
}

/// One row per role someone holds, plus the mandatory roles nobody holds, so the gap shows where
/// it belongs.
fn role_rows(roster: &[RosterMember]) -> Vec<Value> {
    let members = in_playbook_order(roster);
    Role::ALL
        .into_iter()
        .filter_map(|role| {
            let holders: Vec<&RosterMember> =
                members.iter().copied().filter(|m| m.role == role).collect();
            if holders.is_empty() && !MANDATORY_ROLES.contains(&role) {
                return None;
            }
            Some(role_row(role, &holders))
        })
        .collect()
}

fn role_row(role: Role, holders: &[&RosterMember]) -> Value {
    let mut people: Vec<Value> = Vec::new();
    for member in holders.iter().take(MAX_PER_ROLE) {
        people.push(json!({
            "type": "TextBlock", "text": person_name(&member.person), "wrap": true,
        }));
        if let Some(address) = plain_address(&member.person) {
            people.push(json!({
                "type": "TextBlock", "text": address, "wrap": true, "isSubtle": true,
                "spacing": "None", "size": "Small",
            }));
        }
    }
    if holders.len() > MAX_PER_ROLE {
        people.push(subtle(&format!(
            "and {} more",
            holders.len() - MAX_PER_ROLE
        )));
    }
    let missing = holders.is_empty();
    if missing {
        people.push(json!({
            "type": "TextBlock", "text": "Missing", "wrap": true,
            "color": "Attention", "weight": "Bolder",
        }));
    }
    json!({
        "type": "ColumnSet",
        "separator": true,
        "spacing": "Small",
        "columns": [
            {
                "type": "Column",
                "width": 3,
                "items": [
                    { "type": "TextBlock", "text": role.abbr(), "weight": "Bolder", "wrap": true },
                    {
                        "type": "TextBlock", "text": role.title(), "wrap": true, "isSubtle": true,
                        "spacing": "None", "size": "Small",
                    },
                ],
            },
            { "type": "Column", "width": 4, "items": people },
            {
                "type": "Column",
                "width": 2,
                "items": [{
                    "type": "TextBlock",
                    "text": invite_label(role),
                    "wrap": true,
                    "horizontalAlignment": "Right",
                    "size": "Small",
                    "isSubtle": !(missing && MANDATORY_ROLES.contains(&role)),
                    "color": if missing { "Attention" } else { "Default" },
                }],
            },
        ],
    })
}

/// The optional roles and the FTA nobody holds, on one line rather than a row each.
fn not_on_roster(roster: &[RosterMember]) -> Option<Value> {
    let absent: Vec<Role> = Role::ALL
        .into_iter()
        .filter(|role| !MANDATORY_ROLES.contains(role))
        .filter(|role| !roster.iter().any(|m| m.role == *role))
        .collect();
    if absent.is_empty() {
        return None;
    }
    Some(subtle(&format!(
        "Not on the roster: {}.",
        absent
            .iter()
            .map(|r| r.abbr())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// "⚠ Add the mandatory ATS before invite: team add ATS @name".
fn missing_line(missing: &[Role]) -> Value {
    let lead = format!("⚠ Add the mandatory {} before ", role_list(missing));
    let commands: Vec<String> = missing
        .iter()
        .map(|role| format!("team add {} @name", role.abbr()))
        .collect();
    let mut parts = vec![Run::Text(&lead), Run::Code("invite"), Run::Text(": ")];
    for (i, command) in commands.iter().enumerate() {
        if i > 0 {
            parts.push(Run::Text(", "));
        }
        parts.push(Run::Code(command));
    }
    attention_runs(&parts)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use crate::cards::engagement::hostile::{CUSTOMER, NAME, assert_json_clean};
    use crate::cards::test_support::{assert_card_ok, execute_actions, texts};
    use crate::domain::engagement::Person;

    fn member(role: Role, name: &str) -> RosterMember {
        RosterMember {
            role,
            person: Person {
                name: name.into(),
                email: Some(format!("{}@contoso.com", name.to_lowercase())),
                ..Person::default()
            },
        }
    }

    fn full() -> Vec<RosterMember> {
        vec![
            member(Role::Fta, "Fay"),
            member(Role::Tam, "Lee"),
            member(Role::Ats, "Ari"),
            member(Role::Csm, "Cy"),
            member(Role::Ae, "Kim"),
        ]
    }

    fn is_attention(value: &Value) -> bool {
        value["inlines"]
            .as_array()
            .is_some_and(|runs| runs.iter().any(|r| r["color"] == "Attention"))
    }

    #[test]
    fn every_state_is_a_valid_card() {
        let hostile = vec![
            RosterMember {
                role: Role::Ats,
                person: Person {
                    name: NAME.into(),
                    email: Some("x](https://evil)@evil".into()),
                    ..Person::default()
                },
            },
            RosterMember {
                role: Role::Ssp,
                person: Person::default(),
            },
        ];
        let huge: Vec<RosterMember> = Role::ALL
            .iter()
            .cycle()
            .take(400)
            .map(|role| member(*role, &"\\".repeat(1000)))
            .collect();
        for roster in [
            vec![],
            full(),
            vec![member(Role::Tam, "Lee")],
            hostile,
            huge,
        ] {
            for customer in ["Contoso Ltd", CUSTOMER, ""] {
                let card = roster_card(7, customer, &roster);
                assert_card_ok(&card);
                assert_json_clean(&card, &[]);
            }
        }
    }

    #[test]
    fn full_roster_lists_roles_in_playbook_order_with_titles() {
        let card = roster_card(7, "Contoso Ltd", &full());
        let texts = texts(&card);
        let rows: Vec<&str> = card["body"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "ColumnSet")
            .map(|row| row["columns"][0]["items"][0]["text"].as_str().unwrap())
            .collect();
        assert_eq!(rows, ["ATS", "TAM", "AE", "CSM", "FTA"]);
        for needle in [
            "Account Technology Strategist",
            "Technical Account Manager",
            "FastTrack Architect",
            "ari@contoso.com",
            "Mandatory",
            "Optional",
            "Required if aligned",
            "Not on the roster: ADE, TSP, SSP.",
            "✓ ATS and TAM are on the roster: ready for ",
        ] {
            assert!(texts.iter().any(|t| t == needle), "{needle} in {texts:?}");
        }
        let actions = execute_actions(&card);
        assert_eq!(actions.len(), 1);
        assert_eq!(actions[0]["verb"], VERB_PREP_SHOW);
        assert_eq!(actions[0]["data"]["engagementId"], 7);
    }

    #[test]
    fn missing_mandatory_roles_are_flagged() {
        let card = roster_card(7, "Contoso Ltd", &[member(Role::Tam, "Lee")]);
        let texts = texts(&card);
        assert!(texts.contains(&"⚠ Add the mandatory ATS before ".to_owned()));
        assert!(texts.contains(&"team add ATS @name".to_owned()));
        assert!(texts.contains(&"Missing".to_owned()));
        let body = card["body"].as_array().unwrap();
        let attention_at = body.iter().position(is_attention).unwrap();
        let first_row_at = body.iter().position(|e| e["type"] == "ColumnSet").unwrap();
        assert!(attention_at < first_row_at, "the gap is said first");
        // The ATS row is there, empty, ahead of the TAM row.
        let first_row = body.iter().find(|e| e["type"] == "ColumnSet").unwrap();
        assert_eq!(first_row["columns"][0]["items"][0]["text"], "ATS");

        let texts = texts_of(&[member(Role::Ae, "Kim")]);
        assert!(texts.contains(&"⚠ Add the mandatory ATS and TAM before ".to_owned()));
        assert!(texts.contains(&"team add TAM @name".to_owned()));
    }

    fn texts_of(roster: &[RosterMember]) -> Vec<String> {
        texts(&roster_card(7, "Contoso Ltd", roster))
    }

    #[test]
    fn empty_roster_explains_how_to_start() {
        let card = roster_card(7, "Contoso Ltd", &[]);
        let texts = texts(&card);
        assert!(
            texts
                .iter()
                .any(|t| t.starts_with("Nobody is on the roster yet"))
        );
        assert!(texts.contains(&"team add ATS @name".to_owned()));
        assert!(texts.contains(&"⚠ Add the mandatory ATS and TAM before ".to_owned()));
        for role in Role::ALL {
            assert!(texts.contains(&role.abbr().to_owned()), "{role:?}");
        }
    }

    #[test]
    fn crowded_role_is_cut_with_a_count() {
        let roster: Vec<RosterMember> = (0..7)
            .map(|i| member(Role::Csm, &format!("C{i}")))
            .collect();
        assert!(texts_of(&roster).contains(&"and 3 more".to_owned()));
    }
}
