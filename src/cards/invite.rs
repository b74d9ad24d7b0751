//! The `invite` preview card: pick a time for the internal invite, check who is invited and the
//! agenda, then send it. The same card, updated in place, records the outcome.

use serde_json::{Map, Value, json};

use super::engagement::{
    MAX_CUSTOMER_CHARS, attention, customer_text, fit_to_budget, one_line, person_line, role_list,
    shrink_person,
};
use super::{
    adaptive_card, execute_action, fact_set, heading, plain, subheading, subtle, text, truncate,
};
use crate::domain::engagement::{MANDATORY_ROLES, Person};
use crate::domain::roles::Role;

/// Data `{"engagementId", "inviteId"}`; the chosen slot arrives as the input `slot`.
pub const VERB_INVITE_SEND: &str = "invite.send";
/// Data `{"engagementId", "inviteId"}`, and `"within": days` when asking to look further ahead.
pub const VERB_INVITE_OTHER: &str = "invite.other_times";
/// Data `{"engagementId", "inviteId"}`.
pub const VERB_INVITE_CANCEL: &str = "invite.cancel";
/// The id of the slot choice set, the input `invite.send` reads.
pub const SLOT_INPUT_ID: &str = "slot";
/// How many more business days "Look 10 more days" asks for.
pub const LOOK_FURTHER_DAYS: u32 = 10;

const MAX_SLOTS: usize = 12;
const MAX_SLOT_LABEL_CHARS: usize = 80;
const MAX_PEOPLE: usize = 20;
const MAX_AGENDA_ITEMS: usize = 30;
const MAX_AGENDA_CHARS: usize = 300;
const MAX_BY_CHARS: usize = 64;
const MAX_TZ_CHARS: usize = 64;
const AGENDA_ID: &str = "agenda";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteView {
    pub engagement_id: i64,
    pub invite_id: i64,
    pub customer: String,
    pub duration_minutes: u32,
    pub slots: Vec<SlotChoice>,
    pub required: Vec<(Role, Person)>,
    pub optional: Vec<(Role, Person)>,
    /// (letter, text), from the editable agenda template.
    pub agenda: Vec<(String, String)>,
    /// The intro email draft in the FM's mailbox.
    pub draft_link: Option<String>,
    pub state: InviteState,
    /// IANA name the slot labels are written in.
    pub time_zone: String,
}

/// A proposed time, labelled by fieldbot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotChoice {
    /// e.g. "0"; what comes back in the `slot` input.
    pub id: String,
    /// e.g. "Tue 24 Nov, 10:00–11:00".
    pub label: String,
    /// e.g. "2 of 3 optional free".
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InviteState {
    Proposed,
    Sent {
        slot_label: String,
        event_link: Option<String>,
        join_url: Option<String>,
        by: String,
    },
    Cancelled {
        by: String,
    },
    NoSlots {
        within_days: u32,
    },
}

pub fn invite_preview_card(view: &InviteView) -> Value {
    fit_to_budget(|divisor| {
        if divisor == 1 {
            build(view)
        } else {
            build(&shrink(view, divisor))
        }
    })
}

/// `view` with its free text cut to 1/`divisor` of the usual caps, for [`fit_to_budget`].
fn shrink(view: &InviteView, divisor: usize) -> InviteView {
    let cut = |text: &str, max: usize| truncate(text, max / divisor);
    let people = |list: &[(Role, Person)]| -> Vec<(Role, Person)> {
        list.iter()
            .map(|(role, person)| (*role, shrink_person(person, divisor)))
            .collect()
    };
    InviteView {
        customer: cut(&view.customer, MAX_CUSTOMER_CHARS),
        required: people(&view.required),
        optional: people(&view.optional),
        agenda: view
            .agenda
            .iter()
            .map(|(letter, item)| (letter.clone(), cut(item, MAX_AGENDA_CHARS)))
            .collect(),
        slots: view
            .slots
            .iter()
            .map(|slot| SlotChoice {
                label: cut(&slot.label, MAX_SLOT_LABEL_CHARS),
                note: slot.note.as_deref().map(|n| cut(n, MAX_SLOT_LABEL_CHARS)),
                ..slot.clone()
            })
            .collect(),
        time_zone: cut(&view.time_zone, MAX_TZ_CHARS),
        ..view.clone()
    }
}

fn build(view: &InviteView) -> Value {
    let customer = customer_text(&view.customer);
    match &view.state {
        InviteState::Proposed => proposed(view, &customer),
        InviteState::Sent {
            slot_label,
            event_link,
            join_url,
            by,
        } => sent(view, &customer, slot_label, event_link, join_url, by),
        InviteState::Cancelled { by } => cancelled(view, &customer, by),
        InviteState::NoSlots { within_days } => no_slots(view, &customer, *within_days),
    }
}

fn proposed(view: &InviteView, customer: &str) -> Value {
    let mut body = vec![
        heading(&format!("Internal invite: {customer}")),
        subtle(&meeting_line(view)),
    ];
    let slots: Vec<&SlotChoice> = view.slots.iter().take(MAX_SLOTS).collect();
    if let Some(first) = slots.first() {
        body.push(json!({
            "type": "Input.ChoiceSet",
            "id": SLOT_INPUT_ID,
            "label": "When (the required attendees are free at each)",
            "style": "expanded",
            "isRequired": true,
            "errorMessage": "Pick a time.",
            "value": first.id,
            "choices": slots.iter().map(|slot| choice(slot)).collect::<Vec<_>>(),
        }));
    } else {
        body.push(text("No times to choose from: look for other times."));
    }
    body.extend(attendees(view));
    body.extend(agenda(&view.agenda));
    body.extend(draft(view.draft_link.as_deref()));

    let ids = ids(view);
    let mut actions = Vec::new();
    if !slots.is_empty() {
        actions.push(with_style(
            execute_action("Send invite", VERB_INVITE_SEND, ids.clone()),
            "positive",
        ));
    }
    actions.push(without_inputs(execute_action(
        "Other times",
        VERB_INVITE_OTHER,
        ids.clone(),
    )));
    actions.push(without_inputs(execute_action(
        "Cancel",
        VERB_INVITE_CANCEL,
        ids,
    )));
    adaptive_card(body, actions)
}

fn sent(
    view: &InviteView,
    customer: &str,
    slot_label: &str,
    event_link: &Option<String>,
    join_url: &Option<String>,
    by: &str,
) -> Value {
    let mut body = vec![
        heading(&format!("Internal invite sent: {customer}")),
        json!({
            "type": "TextBlock",
            "text": format!(
                "✓ Invite sent by {} for {}",
                who(by),
                plain(&truncate(slot_label.trim(), MAX_SLOT_LABEL_CHARS)),
            ),
            "wrap": true,
            "color": "Good",
            "weight": "Bolder",
        }),
        subtle(&meeting_line(view)),
    ];
    let links: Vec<Value> = [
        ("Open the event", event_link.as_deref()),
        ("Join the Teams meeting", join_url.as_deref()),
    ]
    .into_iter()
    .filter_map(|(title, url)| open_url(title, url?))
    .collect();
    if !links.is_empty() {
        body.push(json!({ "type": "ActionSet", "actions": links }));
    }
    body.extend(attendees(view));
    body.extend(agenda(&view.agenda));
    adaptive_card(body, Vec::new())
}

fn cancelled(view: &InviteView, customer: &str, by: &str) -> Value {
    let mut body = vec![
        heading(&format!("Internal invite cancelled: {customer}")),
        text(&format!("Cancelled by {}. No invite was sent.", who(by))),
    ];
    if view.draft_link.is_some() {
        body.push(subtle(
            "The intro email draft stays in the FastTrack Manager's Drafts folder; delete it if it is not needed.",
        ));
    }
    adaptive_card(body, Vec::new())
}

fn no_slots(view: &InviteView, customer: &str, within_days: u32) -> Value {
    let mut required: Vec<Role> = view.required.iter().map(|(role, _)| *role).collect();
    required.sort();
    required.dedup();
    if required.is_empty() {
        required = MANDATORY_ROLES.to_vec();
    }
    let mut body = vec![
        heading(&format!("Internal invite: {customer}")),
        attention(&format!(
            "No time in the next {within_days} business days when {} are all free.",
            role_list(&required)
        )),
        subtle(&meeting_line(view)),
    ];
    body.extend(attendees(view));
    let mut further = ids(view);
    if let Some(map) = further.as_object_mut() {
        map.insert(
            "within".into(),
            within_days.saturating_add(LOOK_FURTHER_DAYS).into(),
        );
    }
    let actions = vec![
        without_inputs(execute_action(
            &format!("Look {LOOK_FURTHER_DAYS} more days"),
            VERB_INVITE_OTHER,
            further,
        )),
        without_inputs(execute_action("Cancel", VERB_INVITE_CANCEL, ids(view))),
    ];
    adaptive_card(body, actions)
}

fn ids(view: &InviteView) -> Value {
    json!({ "engagementId": view.engagement_id, "inviteId": view.invite_id })
}

/// "60-minute Teams meeting · times in Europe/Berlin".
fn meeting_line(view: &InviteView) -> String {
    let tz = view.time_zone.trim();
    let mut line = format!("{}-minute Teams meeting", view.duration_minutes);
    if !tz.is_empty() {
        line.push_str(&format!(
            " · times in {}",
            plain(&truncate(tz, MAX_TZ_CHARS))
        ));
    }
    line
}

/// Choice titles are not markdown, so the label goes as written; it is fieldbot's own text, only
/// bounded here.
fn choice(slot: &SlotChoice) -> Value {
    let label = truncate(slot.label.trim(), MAX_SLOT_LABEL_CHARS);
    let title = match slot
        .note
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        Some(note) => format!("{label} · {}", truncate(note, MAX_SLOT_LABEL_CHARS)),
        None => label,
    };
    json!({ "title": title, "value": slot.id })
}

fn attendees(view: &InviteView) -> Vec<Value> {
    let mut out = vec![subheading("Required")];
    out.push(people(
        &view.required,
        "Nobody: add the ATS and TAM to the roster.",
    ));
    out.push(subheading("Optional"));
    out.push(people(&view.optional, "Nobody on the roster."));
    out
}

fn people(list: &[(Role, Person)], empty: &str) -> Value {
    if list.is_empty() {
        return subtle(empty);
    }
    let lines: Vec<(&str, String)> = list
        .iter()
        .take(MAX_PEOPLE)
        .map(|(role, person)| (role.abbr(), person_line(person)))
        .collect();
    let mut facts: Vec<(&str, &str)> = lines.iter().map(|(r, p)| (*r, p.as_str())).collect();
    let more = list.len().saturating_sub(MAX_PEOPLE);
    let more_line = format!("and {more} more");
    if more > 0 {
        facts.push(("…", more_line.as_str()));
    }
    fact_set(facts)
}

/// The agenda folded away behind a button: it is long and the same every time, but the FM
/// should be able to check it before sending.
fn agenda(items: &[(String, String)]) -> Vec<Value> {
    if items.is_empty() {
        return vec![subtle("No agenda: the agenda template is empty.")];
    }
    let shown: Vec<(String, String)> = items
        .iter()
        .take(MAX_AGENDA_ITEMS)
        .map(|(letter, item)| {
            (
                format!("{}.", one_line(letter, 4)),
                one_line(item, MAX_AGENDA_CHARS),
            )
        })
        .collect();
    let mut hidden = vec![fact_set(
        shown.iter().map(|(l, t)| (l.as_str(), t.as_str())),
    )];
    if items.len() > MAX_AGENDA_ITEMS {
        hidden.push(subtle(&format!(
            "and {} more in the invite.",
            items.len() - MAX_AGENDA_ITEMS
        )));
    }
    vec![
        json!({
            "type": "ColumnSet",
            "spacing": "Medium",
            "columns": [
                {
                    "type": "Column",
                    "width": "stretch",
                    "verticalContentAlignment": "Center",
                    "items": [{
                        "type": "TextBlock",
                        "text": match items.len() {
                            1 => "Agenda (1 item)".to_owned(),
                            n => format!("Agenda ({n} items)"),
                        },
                        "weight": "Bolder",
                        "wrap": true,
                    }],
                },
                {
                    "type": "Column",
                    "width": "auto",
                    "items": [{
                        "type": "ActionSet",
                        "actions": [{
                            "type": "Action.ToggleVisibility",
                            "title": "Show or hide",
                            "targetElements": [AGENDA_ID],
                        }],
                    }],
                },
            ],
        }),
        json!({ "type": "Container", "id": AGENDA_ID, "isVisible": false, "items": hidden }),
    ]
}

fn draft(link: Option<&str>) -> Vec<Value> {
    match link.and_then(|url| open_url("Open the intro email draft", url)) {
        Some(action) => vec![
            text(
                "The intro email to the account team is a draft in the FastTrack Manager's mailbox: review it and send it from Outlook.",
            ),
            json!({ "type": "ActionSet", "actions": [action] }),
        ],
        None => vec![subtle(
            "The intro email to the account team will be a draft in the FastTrack Manager's mailbox.",
        )],
    }
}

fn who(by: &str) -> String {
    match by.trim() {
        "" => "someone".to_owned(),
        name => plain(&truncate(name, MAX_BY_CHARS)),
    }
}

/// A link button, for https URLs only: fieldbot produced them, but a `javascript:` or plain-http
/// link must never reach a card, whatever went wrong upstream.
fn open_url(title: &str, url: &str) -> Option<Value> {
    let url = safe_https_url(url)?;
    Some(json!({ "type": "Action.OpenUrl", "title": title, "url": url }))
}

fn safe_https_url(url: &str) -> Option<&str> {
    let url = url.trim();
    let scheme = url.get(..8)?;
    let rest = url.get(8..)?;
    if !scheme.eq_ignore_ascii_case("https://") {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let bad_char = |c: char| c.is_whitespace() || c.is_control() || "\"<>\\`{}|^".contains(c);
    // Userinfo (`https://trusted@evil`) is how a link shows one host and opens another.
    if authority.is_empty() || authority.contains('@') || url.chars().any(bad_char) {
        return None;
    }
    Some(url)
}

fn with_style(mut action: Value, style: &str) -> Value {
    if let Some(map) = action.as_object_mut() {
        map.insert("style".into(), style.into());
    }
    action
}

/// Other times and Cancel must work whatever the choice set holds, so they skip input validation;
/// the fallback submit gets the same so both paths behave alike.
fn without_inputs(mut action: Value) -> Value {
    fn set(map: &mut Map<String, Value>) {
        map.insert("associatedInputs".into(), "none".into());
    }
    if let Some(map) = action.as_object_mut() {
        set(map);
        if let Some(fallback) = map.get_mut("fallback").and_then(Value::as_object_mut) {
            set(fallback);
        }
    }
    action
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use crate::cards::engagement::hostile::{
        CUSTOMER, NAME, assert_json_clean, assert_no_injection, open_urls,
    };
    use crate::cards::test_support::{assert_card_ok, execute_actions, texts};

    const AGENDA: [(&str, &str); 14] = [
        (
            "a",
            "Intro: FastTrack Process (Validate Field team understanding)",
        ),
        (
            "b",
            "Educate on new FTC offerings, current offerings (service description), and internal motions and approaches in FastTrack if required",
        ),
        (
            "c",
            "Validate intent (either Health or RFA Workloads): obtain reasons for why workloads are blocked/no intent",
        ),
        ("d", "Environment Background"),
        ("e", "Confirm licenses"),
        ("f", "Any compete/3rd party products in play?"),
        ("g", "Migration source environment?"),
        ("h", "Partner or FastTrack Ready Partner engaged?"),
        (
            "i",
            "Additional tenants that you need to be aware of? (For Health customers)",
        ),
        (
            "j",
            "Organization org chart available for the people FastTrack will be working with? (Role and MSFT Technology owned)",
        ),
        ("k", "Any political changes at the customer"),
        ("l", "Timeline/Risks/current issues"),
        ("m", "Asks"),
        (
            "n",
            "Determine Internal Field Team syncing rhythm for active projects (Is there one already occurring in the Field that you can join? Schedule a new one.)",
        ),
    ];
    const DRAFT: &str = "https://outlook.office.com/mail/drafts/id/AAMk123";
    const EVENT: &str = "https://outlook.office.com/calendar/item/AAMk456";
    const JOIN: &str = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_x";

    fn person(name: &str) -> Person {
        Person {
            name: name.into(),
            email: Some(format!("{}@contoso.com", name.to_lowercase())),
            ..Person::default()
        }
    }

    fn view(state: InviteState) -> InviteView {
        InviteView {
            engagement_id: 42,
            invite_id: 9,
            customer: "Contoso Ltd".into(),
            duration_minutes: 60,
            slots: vec![
                SlotChoice {
                    id: "0".into(),
                    label: "Tue 24 Nov, 10:00–11:00".into(),
                    note: Some("3 of 3 optional free".into()),
                },
                SlotChoice {
                    id: "1".into(),
                    label: "Wed 25 Nov, 14:00–15:00".into(),
                    note: Some("2 of 3 optional free".into()),
                },
                SlotChoice {
                    id: "2".into(),
                    label: "Thu 26 Nov, 09:00–10:00".into(),
                    note: None,
                },
            ],
            required: vec![(Role::Ats, person("Ari")), (Role::Tam, person("Lee"))],
            optional: vec![(Role::Ae, person("Kim")), (Role::Csm, person("Cy"))],
            agenda: AGENDA
                .iter()
                .map(|(l, t)| ((*l).to_owned(), (*t).to_owned()))
                .collect(),
            draft_link: Some(DRAFT.into()),
            state,
            time_zone: "Europe/Berlin".into(),
        }
    }

    fn sent_state() -> InviteState {
        InviteState::Sent {
            slot_label: "Tue 24 Nov, 10:00–11:00".into(),
            event_link: Some(EVENT.into()),
            join_url: Some(JOIN.into()),
            by: "Dana".into(),
        }
    }

    fn all_states() -> Vec<InviteState> {
        vec![
            InviteState::Proposed,
            sent_state(),
            InviteState::Cancelled { by: "Dana".into() },
            InviteState::NoSlots { within_days: 10 },
        ]
    }

    fn hostile(state: InviteState) -> InviteView {
        let evil = |n: &str| Person {
            name: NAME.into(),
            email: Some(format!("{n}](https://evil)")),
            ..Person::default()
        };
        InviteView {
            customer: CUSTOMER.into(),
            required: vec![(Role::Ats, evil("a")), (Role::Tam, evil("b"))],
            optional: vec![(Role::Ae, evil("c"))],
            agenda: vec![("[a](https://evil)".into(), NAME.into())],
            draft_link: Some("javascript:alert(1)".into()),
            time_zone: "[tz](https://evil)".into(),
            state,
            ..view(InviteState::Proposed)
        }
    }

    fn hostile_state(state: InviteState) -> InviteState {
        match state {
            InviteState::Sent { .. } => InviteState::Sent {
                slot_label: "[s](https://evil)".into(),
                event_link: Some("http://evil.example/e".into()),
                join_url: Some("https://teams.microsoft.com@evil.example/".into()),
                by: NAME.into(),
            },
            InviteState::Cancelled { .. } => InviteState::Cancelled { by: NAME.into() },
            other => other,
        }
    }

    #[test]
    fn every_state_is_a_valid_card() {
        for state in all_states() {
            let card = invite_preview_card(&view(state.clone()));
            assert_card_ok(&card);
            assert_no_injection(&card, &[DRAFT, EVENT, JOIN]);
            let card = invite_preview_card(&hostile(hostile_state(state)));
            assert_card_ok(&card);
            assert_json_clean(&card, &[]);
            assert!(open_urls(&card).is_empty());
        }
    }

    #[test]
    fn huge_inputs_stay_within_budget() {
        let big = Person {
            name: "\\".repeat(1000),
            email: Some("\\".repeat(1000)),
            ..Person::default()
        };
        for state in all_states() {
            let v = InviteView {
                customer: "\\".repeat(10_000),
                slots: (0..100)
                    .map(|i| SlotChoice {
                        id: i.to_string(),
                        label: "\"".repeat(500),
                        note: Some("\"".repeat(500)),
                    })
                    .collect(),
                required: vec![(Role::Ats, big.clone()); 50],
                optional: vec![(Role::Csm, big.clone()); 50],
                agenda: vec![("\\".repeat(50), "\\".repeat(5000)); 100],
                time_zone: "\\".repeat(500),
                state,
                ..view(InviteState::Proposed)
            };
            assert_card_ok(&invite_preview_card(&v));
        }
    }

    #[test]
    fn proposed_has_slots_attendees_agenda_draft_and_three_buttons() {
        let card = invite_preview_card(&view(InviteState::Proposed));
        let choice_set = card["body"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "Input.ChoiceSet")
            .unwrap();
        assert_eq!(choice_set["id"], SLOT_INPUT_ID);
        assert_eq!(choice_set["style"], "expanded");
        assert_eq!(choice_set["value"], "0");
        assert_eq!(
            choice_set["choices"][1]["title"],
            "Wed 25 Nov, 14:00–15:00 · 2 of 3 optional free"
        );
        assert_eq!(choice_set["choices"][2]["title"], "Thu 26 Nov, 09:00–10:00");

        let texts = texts(&card);
        for needle in [
            "Internal invite: Contoso Ltd",
            "60-minute Teams meeting · times in Europe/Berlin",
            "Required",
            "Optional",
            "Ari · ari@contoso.com",
            "ATS",
            "TAM",
            "Kim · kim@contoso.com",
            "CSM",
        ] {
            assert!(texts.iter().any(|t| t == needle), "{needle} in {texts:?}");
        }
        assert_eq!(open_urls(&card), [DRAFT]);

        let actions = card["actions"].as_array().unwrap();
        let titles: Vec<&str> = actions
            .iter()
            .map(|a| a["title"].as_str().unwrap())
            .collect();
        assert_eq!(titles, ["Send invite", "Other times", "Cancel"]);
        let verbs: Vec<&str> = execute_actions(&card)
            .iter()
            .map(|a| a["verb"].as_str().unwrap())
            .collect();
        assert_eq!(
            verbs,
            [VERB_INVITE_SEND, VERB_INVITE_OTHER, VERB_INVITE_CANCEL]
        );
        for action in actions {
            assert_eq!(action["data"], json!({"engagementId": 42, "inviteId": 9}));
        }
        assert!(
            actions[0].get("associatedInputs").is_none(),
            "send reads the slot"
        );
        assert_eq!(actions[2]["associatedInputs"], "none");
        assert_eq!(actions[2]["fallback"]["associatedInputs"], "none");
    }

    #[test]
    fn agenda_shows_every_item_given() {
        let card = invite_preview_card(&view(InviteState::Proposed));
        let texts = texts(&card);
        assert!(texts.contains(&"Agenda (14 items)".to_owned()));
        for (letter, item) in AGENDA {
            assert!(texts.contains(&format!("{letter}.")), "{letter}");
            assert!(texts.contains(&plain(item)), "{item}");
        }
        // Folded, with a toggle that targets it.
        let json = card.to_string();
        assert!(json.contains("\"isVisible\":false"));
        assert!(json.contains("Action.ToggleVisibility"));
    }

    #[test]
    fn sent_and_cancelled_have_no_buttons() {
        let card = invite_preview_card(&view(sent_state()));
        assert!(execute_actions(&card).is_empty());
        assert!(card.get("actions").is_none());
        let texts = texts(&card);
        assert!(texts.contains(&"✓ Invite sent by Dana for Tue 24 Nov, 10:00–11:00".to_owned()));
        assert!(!texts.iter().any(|t| t == "Open the intro email draft"));
        assert_eq!(open_urls(&card), [EVENT, JOIN]);

        let card = invite_preview_card(&view(InviteState::Cancelled { by: "Dana".into() }));
        assert!(execute_actions(&card).is_empty());
        assert!(card.get("actions").is_none());
        assert!(texts_of(&card).contains(&"Cancelled by Dana. No invite was sent.".to_owned()));
        assert!(open_urls(&card).is_empty());
    }

    fn texts_of(card: &Value) -> Vec<String> {
        texts(card)
    }

    #[test]
    fn sent_links_need_https() {
        let card = invite_preview_card(&view(InviteState::Sent {
            slot_label: "Tue".into(),
            event_link: Some("http://outlook.office.com/x".into()),
            join_url: None,
            by: String::new(),
        }));
        assert!(open_urls(&card).is_empty());
        assert!(card.to_string().contains("Invite sent by someone for Tue"));
    }

    #[test]
    fn no_slots_offers_to_look_further() {
        let card = invite_preview_card(&view(InviteState::NoSlots { within_days: 10 }));
        assert!(texts(&card).contains(
            &"No time in the next 10 business days when ATS and TAM are all free.".to_owned()
        ));
        let actions = execute_actions(&card);
        assert_eq!(actions[0]["title"], "Look 10 more days");
        assert_eq!(actions[0]["verb"], VERB_INVITE_OTHER);
        assert_eq!(
            actions[0]["data"],
            json!({"engagementId": 42, "inviteId": 9, "within": 20})
        );
        assert_eq!(actions[0]["fallback"]["data"]["within"], 20);
        assert_eq!(actions[1]["verb"], VERB_INVITE_CANCEL);

        let mut with_fta = view(InviteState::NoSlots {
            within_days: u32::MAX,
        });
        with_fta.required.push((Role::Fta, person("Fay")));
        let card = invite_preview_card(&with_fta);
        assert!(
            card.to_string()
                .contains("when ATS, TAM and FTA are all free")
        );
        assert_eq!(execute_actions(&card)[0]["data"]["within"], u32::MAX);
    }

    #[test]
    fn proposed_without_slots_cannot_send() {
        let v = InviteView {
            slots: vec![],
            ..view(InviteState::Proposed)
        };
        let card = invite_preview_card(&v);
        assert_card_ok(&card);
        let verbs: Vec<&str> = execute_actions(&card)
            .iter()
            .map(|a| a["verb"].as_str().unwrap())
            .collect();
        assert_eq!(verbs, [VERB_INVITE_OTHER, VERB_INVITE_CANCEL]);
    }

    #[test]
    fn only_plain_https_urls_are_linked() {
        for good in [DRAFT, " https://x.example ", "HTTPS://x.example/a?b#c"] {
            assert!(safe_https_url(good).is_some(), "{good}");
        }
        for bad in [
            "",
            "https://",
            "http://x.example",
            "javascript:alert(1)",
            "https://trusted.example@evil.example/",
            "https://x.example/a b",
            "https://x.example/\"onclick",
            "//x.example",
            "https:/x.example",
        ] {
            assert!(safe_https_url(bad).is_none(), "{bad}");
        }
    }
}
