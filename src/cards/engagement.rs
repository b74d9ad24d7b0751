//! The engagement cards: the welcome posted by `engagement start`, and the `engagement` summary.
//!
//! Also home to the small pieces the other engagement cards share (display caps, people, inline
//! commands), so that every card shows a customer or a person the same way.

use serde_json::{Value, json};

use super::prep::VERB_PREP_SHOW;
use super::roster::VERB_TEAM_SHOW;
use super::{
    CARD_BUDGET_BYTES, adaptive_card, execute_action, fact_set, heading, plain, section,
    subheading, subtle, truncate,
};
use crate::domain::engagement::{Motion, Person, RosterMember, missing_mandatory};
use crate::domain::roles::Role;

/// Free text from chat or the directory is cut to these on cards, so the worst case (every
/// character escaped, then JSON-escaped) still fits the card budget.
pub(super) const MAX_CUSTOMER_CHARS: usize = 120;
pub(super) const MAX_NAME_CHARS: usize = 64;
pub(super) const MAX_ADDRESS_CHARS: usize = 96;
const MAX_TENANT_CHARS: usize = 100;
const MAX_PHASE_CHARS: usize = 40;
const MAX_OPEN_ITEMS: usize = 12;
const MAX_OPEN_ITEM_CHARS: usize = 200;
const MAX_ROSTER_FACTS: usize = 24;

/// What the engagement cards show; the caller gathers it from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngagementView {
    pub id: i64,
    pub customer: String,
    pub motion: Motion,
    pub tpid: Option<u64>,
    pub tenant: Option<String>,
    pub fm: Person,
    pub active: bool,
    pub roster: Vec<RosterMember>,
    pub prep_done: usize,
    pub prep_total: usize,
    pub open_items: Vec<String>,
    /// e.g. "Initiate".
    pub phase: String,
}

/// Posted on `engagement start`: what was bound to the channel, and the playbook's next steps in
/// order, each with the command that does it.
pub fn welcome_engagement_card(view: &EngagementView) -> Value {
    let tpid = tpid_text(view.tpid);
    let tenant = tenant_text(view.tenant.as_deref());
    let fm = person_name(&view.fm);
    let body = vec![
        heading(&format!(
            "Engagement started: {} ({})",
            customer_text(&view.customer),
            view.motion.label()
        )),
        fact_set([
            ("TPID", tpid.as_str()),
            ("Tenant", tenant.as_str()),
            ("FastTrack Manager", fm.as_str()),
        ]),
        subheading("Next steps"),
        runs(&[
            Run::Text("1. Build the roster: "),
            Run::Code("team add ATS @name"),
            Run::Text(", "),
            Run::Code("team add TAM email"),
            Run::Text(
                ". ATS and TAM are mandatory; add the AE, CSM, ADE, TSP, SSP and an aligned FTA the same way.",
            ),
        ]),
        runs(&[
            Run::Text("2. "),
            Run::Code("prep"),
            Run::Text(": the checklist before the account team call."),
        ]),
        runs(&[
            Run::Text("3. "),
            Run::Code("invite"),
            Run::Text(
                ": finds a time when the key players are free, drafts the intro email and proposes the internal invite with the standard agenda.",
            ),
        ]),
        runs(&[
            Run::Text("4. After the account team sync, "),
            Run::Code("sync notes"),
            Run::Text(": summary, open items and next steps, and the follow-up email."),
        ]),
        runs(&[
            Run::Text("5. "),
            Run::Code("sync schedule weekly tue 10:00"),
            Run::Text(": the recurring Field team sync, or "),
            Run::Code("sync join <meeting link>"),
            Run::Text(" when the Field already runs one."),
        ]),
        subtle("In this channel, mention me first: @fieldbot prep."),
    ];
    adaptive_card(body, engagement_actions(view.id))
}

/// The `engagement` card: where the engagement stands, at a glance.
pub fn engagement_summary_card(view: &EngagementView) -> Value {
    let status = if view.active { "Active" } else { "Closed" };
    let phase = plain(&truncate(view.phase.trim(), MAX_PHASE_CHARS));
    let prep = prep_progress(view.prep_done, view.prep_total);
    let tpid = tpid_text(view.tpid);
    let tenant = tenant_text(view.tenant.as_deref());
    let fm = person_name(&view.fm);
    let mut facts = vec![("Status", status)];
    if !phase.is_empty() {
        facts.push(("Phase", phase.as_str()));
    }
    facts.extend([
        ("Prep", prep.as_str()),
        ("TPID", tpid.as_str()),
        ("Tenant", tenant.as_str()),
        ("FastTrack Manager", fm.as_str()),
    ]);

    let mut body = vec![
        heading(&format!(
            "{} ({})",
            customer_text(&view.customer),
            view.motion.label()
        )),
        fact_set(facts),
    ];
    // A closed engagement has nothing left to fix, so the warning would only be noise.
    let missing = missing_mandatory(&view.roster);
    if view.active && !missing.is_empty() {
        body.push(missing_warning(&missing));
    }
    body.push(section(roster_items(&view.roster)));
    body.push(section(open_items(&view.open_items)));
    if !view.active {
        body.push(runs(&[
            Run::Text("This engagement is closed. Start the next one with "),
            Run::Code("engagement start \"<Customer>\" motion:rfa"),
            Run::Text("."),
        ]));
    }
    let actions = if view.active {
        engagement_actions(view.id)
    } else {
        Vec::new()
    };
    adaptive_card(body, actions)
}

fn engagement_actions(engagement_id: i64) -> Vec<Value> {
    let data = json!({ "engagementId": engagement_id });
    vec![
        execute_action("Show roster", VERB_TEAM_SHOW, data.clone()),
        execute_action("Prep checklist", VERB_PREP_SHOW, data),
    ]
}

/// "⚠ Mandatory ATS is missing", with the command that fixes it.
fn missing_warning(missing: &[Role]) -> Value {
    let verb = if missing.len() == 1 { "is" } else { "are" };
    let lead = format!("⚠ Mandatory {} {verb} missing: ", role_list(missing));
    let first = missing.first().map_or(Role::Ats, |role| *role);
    let fix = format!("team add {} @name", first.abbr());
    attention_runs(&[Run::Text(&lead), Run::Code(&fix)])
}

fn roster_items(roster: &[RosterMember]) -> Vec<Value> {
    let mut items = vec![subheading("Roster")];
    if roster.is_empty() {
        items.push(subtle("Nobody on the roster yet."));
        return items;
    }
    let members = in_playbook_order(roster);
    let lines: Vec<(&str, String)> = members
        .iter()
        .take(MAX_ROSTER_FACTS)
        .map(|m| (m.role.abbr(), person_name(&m.person)))
        .collect();
    items.push(fact_set(
        lines.iter().map(|(role, name)| (*role, name.as_str())),
    ));
    if members.len() > MAX_ROSTER_FACTS {
        items.push(subtle(&format!(
            "and {} more: see the roster card.",
            members.len() - MAX_ROSTER_FACTS
        )));
    }
    items
}

fn open_items(open: &[String]) -> Vec<Value> {
    let open: Vec<&str> = open
        .iter()
        .map(|item| item.trim())
        .filter(|item| !item.is_empty())
        .collect();
    let mut items = vec![subheading("Open items")];
    if open.is_empty() {
        items.push(subtle("No open items."));
        return items;
    }
    items.extend(
        open.iter()
            .take(MAX_OPEN_ITEMS)
            .map(|item| bullet(&one_line(item, MAX_OPEN_ITEM_CHARS))),
    );
    if open.len() > MAX_OPEN_ITEMS {
        items.push(subtle(&format!(
            "and {} more.",
            open.len() - MAX_OPEN_ITEMS
        )));
    }
    items
}

fn prep_progress(done: usize, total: usize) -> String {
    if total == 0 {
        "No checklist yet".to_owned()
    } else {
        format!("{} of {total} done", done.min(total))
    }
}

fn tpid_text(tpid: Option<u64>) -> String {
    tpid.map_or_else(|| "Not set".to_owned(), |n| n.to_string())
}

fn tenant_text(tenant: Option<&str>) -> String {
    match tenant.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => plain(&truncate(t, MAX_TENANT_CHARS)),
        None => "Not set".to_owned(),
    }
}

// ---- shared by the engagement cards ----

/// The customer's name, safe for markdown and bounded.
pub(super) fn customer_text(customer: &str) -> String {
    match customer.trim() {
        "" => "the customer".to_owned(),
        name => plain(&truncate(name, MAX_CUSTOMER_CHARS)),
    }
}

/// A person as people know them: the display name, else the address.
pub(super) fn person_name(person: &Person) -> String {
    let name = person.name.trim();
    let shown = if name.is_empty() {
        person.address().map(str::trim).unwrap_or_default()
    } else {
        name
    };
    if shown.is_empty() {
        "(no name)".to_owned()
    } else {
        plain(&truncate(shown, MAX_NAME_CHARS))
    }
}

/// The address mail goes to, when it adds something to the name.
pub(super) fn plain_address(person: &Person) -> Option<String> {
    let address = person.address().map(str::trim).unwrap_or_default();
    if address.is_empty() || address == person.name.trim() {
        return None;
    }
    Some(plain(&truncate(address, MAX_ADDRESS_CHARS)))
}

/// The name and, when it adds something, the address: "Dana Smith · dana@contoso.com".
pub(super) fn person_line(person: &Person) -> String {
    let name = person_name(person);
    match plain_address(person) {
        Some(address) if !person.name.trim().is_empty() => format!("{name} · {address}"),
        _ => name,
    }
}

/// "ATS", "ATS and TAM", "ATS, TAM and FTA".
pub(super) fn role_list(roles: &[Role]) -> String {
    let abbrs: Vec<&str> = roles.iter().map(|role| role.abbr()).collect();
    match abbrs.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// The roster sorted by role in playbook order (ATS, TAM, AE, CSM, ADE, TSP, SSP, FTA), keeping
/// the order people were added within a role.
pub(super) fn in_playbook_order(roster: &[RosterMember]) -> Vec<&RosterMember> {
    let mut members: Vec<&RosterMember> = roster.iter().collect();
    members.sort_by_key(|m| m.role);
    members
}

/// A user-supplied line as one bounded, escaped line: newlines would break a bullet apart.
pub(super) fn one_line(text: &str, max_chars: usize) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    plain(&truncate(&joined, max_chars))
}

/// A bullet as its own TextBlock, so an item starting with "1." or "-" cannot restart a list.
pub(super) fn bullet(escaped: &str) -> Value {
    json!({ "type": "TextBlock", "text": format!("• {escaped}"), "wrap": true, "spacing": "Small" })
}

/// Builds a card with its free text cut to 1/`divisor` of the usual caps, trying 1, 2, 4, … until
/// it fits [`CARD_BUDGET_BYTES`]. Realistic text fits at once; text made of characters that
/// escaping multiplies is shown shorter rather than breaking the send.
pub(super) fn fit_to_budget(build: impl Fn(usize) -> Value) -> Value {
    let mut card = build(1);
    for divisor in [2, 4, 8, 16] {
        if serde_json::to_vec(&card).map_or(0, |json| json.len()) < CARD_BUDGET_BYTES {
            break;
        }
        card = build(divisor);
    }
    card
}

/// `person` with name and addresses cut to 1/`divisor` of the usual caps, for [`fit_to_budget`].
pub(super) fn shrink_person(person: &Person, divisor: usize) -> Person {
    let cut = |text: &str, max: usize| truncate(text, max / divisor.max(1));
    Person {
        name: cut(&person.name, MAX_NAME_CHARS),
        email: person.email.as_deref().map(|e| cut(e, MAX_ADDRESS_CHARS)),
        upn: person.upn.as_deref().map(|u| cut(u, MAX_ADDRESS_CHARS)),
        ..person.clone()
    }
}

/// A piece of a line: prose, or a command shown in monospace as typed.
pub(super) enum Run<'a> {
    Text(&'a str),
    Code(&'a str),
}

/// A line mixing prose and commands. TextRuns are not markdown, so `<ROLE>` and `@name` show as
/// typed; only fixed strings go in here.
pub(super) fn runs(parts: &[Run<'_>]) -> Value {
    rich(parts, None)
}

/// Like [`runs`], in the attention colour: something blocks the next step.
pub(super) fn attention_runs(parts: &[Run<'_>]) -> Value {
    rich(parts, Some("Attention"))
}

fn rich(parts: &[Run<'_>], color: Option<&str>) -> Value {
    let inlines: Vec<Value> = parts
        .iter()
        .map(|part| {
            let mut run = match part {
                Run::Text(text) => json!({ "type": "TextRun", "text": text }),
                Run::Code(code) => {
                    json!({ "type": "TextRun", "text": code, "fontType": "Monospace" })
                }
            };
            if let (Some(color), Some(map)) = (color, run.as_object_mut()) {
                map.insert("color".into(), color.into());
                map.insert("weight".into(), "Bolder".into());
            }
            run
        })
        .collect();
    json!({ "type": "RichTextBlock", "inlines": inlines })
}

/// A line in the attention colour; `escaped` must already have gone through [`plain`].
pub(super) fn attention(escaped: &str) -> Value {
    json!({
        "type": "TextBlock",
        "text": escaped,
        "wrap": true,
        "color": "Attention",
        "weight": "Bolder",
    })
}

#[cfg(test)]
pub(super) mod hostile {
    //! Checks that user text on a card stays text.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use serde_json::Value;

    pub(crate) const CUSTOMER: &str = "Contoso <script>alert(1)</script> [x](https://evil)";
    pub(crate) const NAME: &str =
        "Mallory [click](https://evil.example/a) ![i](https://evil/i.png) **b**";

    /// No markdown link can form in any rendered text, no bare `https://evil` autolinks, no raw
    /// `<script>`, and every `Action.OpenUrl` points at one of `trusted`.
    pub(crate) fn assert_no_injection(card: &Value, trusted: &[&str]) {
        let mut rendered = Vec::new();
        markdown_texts(card, &mut rendered);
        for text in &rendered {
            assert!(!text.contains("]("), "link syntax in {text:?}");
            assert!(!text.contains("https://evil"), "bare URL in {text:?}");
            assert!(!text.contains(" <script>"), "raw HTML in {text:?}");
        }
        for url in open_urls(card) {
            assert!(trusted.contains(&url), "untrusted Action.OpenUrl {url}");
        }
    }

    /// Like [`assert_no_injection`], over the whole JSON: for cards without inputs, where no
    /// string is exempt.
    pub(crate) fn assert_json_clean(card: &Value, trusted: &[&str]) {
        assert_no_injection(card, trusted);
        let json = card.to_string();
        assert!(!json.contains("]("), "{json}");
        assert!(!json.contains("https://evil"), "{json}");
    }

    pub(crate) fn open_urls(value: &Value) -> Vec<&str> {
        let mut out = Vec::new();
        walk_urls(value, &mut out);
        out
    }

    fn walk_urls<'v>(value: &'v Value, out: &mut Vec<&'v str>) {
        match value {
            Value::Object(map) => {
                if map.get("type").and_then(Value::as_str) == Some("Action.OpenUrl") {
                    out.push(map["url"].as_str().unwrap());
                }
                map.values().for_each(|v| walk_urls(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk_urls(v, out)),
            _ => {}
        }
    }

    /// The strings Teams renders as markdown: TextBlock text and FactSet titles and values.
    fn markdown_texts(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if map.get("type").and_then(Value::as_str) == Some("TextBlock") {
                    out.push(map["text"].as_str().unwrap().to_owned());
                }
                if map.get("type").and_then(Value::as_str) == Some("FactSet") {
                    for fact in map["facts"].as_array().unwrap() {
                        out.push(fact["title"].as_str().unwrap().to_owned());
                        out.push(fact["value"].as_str().unwrap().to_owned());
                    }
                }
                map.values().for_each(|v| markdown_texts(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| markdown_texts(v, out)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::hostile::{CUSTOMER, NAME, assert_json_clean};
    use super::*;
    use crate::cards::test_support::{assert_card_ok, execute_actions, texts};

    fn person(name: &str, email: &str) -> Person {
        Person {
            name: name.into(),
            email: Some(email.into()),
            ..Person::default()
        }
    }

    fn member(role: Role, name: &str) -> RosterMember {
        RosterMember {
            role,
            person: person(name, &format!("{}@contoso.com", name.to_lowercase())),
        }
    }

    fn view() -> EngagementView {
        EngagementView {
            id: 42,
            customer: "Contoso Ltd".into(),
            motion: Motion::Rfa,
            tpid: Some(123_456),
            tenant: Some("contoso.onmicrosoft.com".into()),
            fm: person("Dana Fm", "dana@microsoft.com"),
            active: true,
            roster: vec![
                member(Role::Tam, "Lee"),
                member(Role::Ae, "Kim"),
                member(Role::Ats, "Ari"),
            ],
            prep_done: 2,
            prep_total: 3,
            open_items: vec![
                "Confirm licenses".into(),
                "Find the migration source".into(),
            ],
            phase: "Initiate".into(),
        }
    }

    fn hostile_view() -> EngagementView {
        EngagementView {
            customer: CUSTOMER.into(),
            tenant: Some("[t](https://evil)".into()),
            fm: person(NAME, "evil@x](https://evil)"),
            roster: vec![RosterMember {
                role: Role::Csm,
                person: person(NAME, "a@b"),
            }],
            open_items: vec![NAME.into(), "line\n- [y](https://evil)".into()],
            phase: "[p](https://evil)".into(),
            ..view()
        }
    }

    fn all_cards(view: &EngagementView) -> Vec<Value> {
        let closed = EngagementView {
            active: false,
            ..view.clone()
        };
        vec![
            welcome_engagement_card(view),
            engagement_summary_card(view),
            engagement_summary_card(&closed),
        ]
    }

    #[test]
    fn every_card_is_valid_realistic_hostile_and_huge() {
        let huge = EngagementView {
            customer: "\\".repeat(5000),
            tenant: Some("\\".repeat(5000)),
            fm: person(&"\\".repeat(5000), &"\\".repeat(5000)),
            roster: Role::ALL
                .iter()
                .cycle()
                .take(200)
                .map(|role| RosterMember {
                    role: *role,
                    person: person(&"\\".repeat(500), &"\\".repeat(500)),
                })
                .collect(),
            open_items: vec!["\\".repeat(2000); 100],
            phase: "\\".repeat(500),
            ..view()
        };
        let empty = EngagementView {
            customer: "  ".into(),
            tpid: None,
            tenant: None,
            fm: Person::default(),
            roster: vec![],
            prep_done: 0,
            prep_total: 0,
            open_items: vec![],
            phase: String::new(),
            ..view()
        };
        for v in [view(), hostile_view(), huge, empty] {
            for card in all_cards(&v) {
                assert_card_ok(&card);
            }
        }
    }

    #[test]
    fn hostile_text_cannot_inject_links() {
        for card in all_cards(&hostile_view()) {
            assert_json_clean(&card, &[]);
            let texts = texts(&card);
            assert!(
                texts
                    .iter()
                    .any(|t| t.contains("Contoso \u{2039}script\u{203a}")),
                "{texts:?}"
            );
        }
    }

    #[test]
    fn welcome_card_has_the_next_steps_in_playbook_order() {
        let card = welcome_engagement_card(&view());
        let texts = texts(&card);
        assert!(texts.contains(&"Engagement started: Contoso Ltd (RFA)".to_owned()));
        for fact in ["123456", "contoso.onmicrosoft.com", "Dana Fm"] {
            assert!(texts.iter().any(|t| t == fact), "{fact}");
        }
        let order = [
            "team add ATS @name",
            "team add TAM email",
            "prep",
            "invite",
            "sync notes",
            "sync schedule weekly tue 10:00",
        ];
        let positions: Vec<usize> = order
            .iter()
            .map(|cmd| texts.iter().position(|t| t == cmd).expect(cmd))
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
        let verbs: Vec<&Value> = execute_actions(&card);
        assert_eq!(verbs.len(), 2);
        assert_eq!(verbs[0]["title"], "Show roster");
        assert_eq!(verbs[0]["verb"], VERB_TEAM_SHOW);
        assert_eq!(verbs[1]["title"], "Prep checklist");
        assert_eq!(verbs[1]["verb"], VERB_PREP_SHOW);
        for action in verbs {
            assert_eq!(action["data"]["engagementId"], 42);
            assert_eq!(action["fallback"]["data"]["engagementId"], 42);
        }
    }

    #[test]
    fn summary_shows_roster_prep_phase_and_open_items() {
        let card = engagement_summary_card(&view());
        let texts = texts(&card);
        for needle in [
            "Contoso Ltd (RFA)",
            "Active",
            "Initiate",
            "2 of 3 done",
            "• Confirm licenses",
            "• Find the migration source",
        ] {
            assert!(texts.iter().any(|t| t == needle), "{needle} in {texts:?}");
        }
        // Roster in playbook order whatever the insertion order.
        let facts = &card["body"][2]["items"][1]["facts"];
        let roles: Vec<&str> = facts
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["title"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["ATS", "TAM", "AE"]);
        assert!(!texts.iter().any(|t| t.contains("missing")));
        assert_eq!(execute_actions(&card).len(), 2);
    }

    #[test]
    fn summary_warns_about_missing_mandatory_roles() {
        let only_ae = EngagementView {
            roster: vec![member(Role::Ae, "Kim")],
            ..view()
        };
        let shown = texts(&engagement_summary_card(&only_ae));
        assert!(shown.contains(&"⚠ Mandatory ATS and TAM are missing: ".to_owned()));
        let no_tam = EngagementView {
            roster: vec![member(Role::Ats, "Ari")],
            ..view()
        };
        let shown = texts(&engagement_summary_card(&no_tam));
        assert!(shown.contains(&"⚠ Mandatory TAM is missing: ".to_owned()));
        assert!(shown.contains(&"team add TAM @name".to_owned()));
    }

    #[test]
    fn closed_engagement_says_closed_and_offers_no_buttons() {
        let closed = EngagementView {
            active: false,
            roster: vec![],
            ..view()
        };
        let card = engagement_summary_card(&closed);
        let texts = texts(&card);
        assert!(texts.contains(&"Closed".to_owned()));
        assert!(!texts.iter().any(|t| t.contains("missing")));
        assert!(card.get("actions").is_none());
        assert!(execute_actions(&card).is_empty());
    }

    #[test]
    fn long_lists_are_cut_with_a_count() {
        let many = EngagementView {
            open_items: (0..30).map(|i| format!("item {i}")).collect(),
            ..view()
        };
        let texts = texts(&engagement_summary_card(&many));
        assert!(texts.contains(&"and 18 more.".to_owned()));
    }

    #[test]
    fn role_list_reads_naturally() {
        assert_eq!(role_list(&[]), "");
        assert_eq!(role_list(&[Role::Ats]), "ATS");
        assert_eq!(role_list(&[Role::Ats, Role::Tam]), "ATS and TAM");
        assert_eq!(
            role_list(&[Role::Ats, Role::Tam, Role::Fta]),
            "ATS, TAM and FTA"
        );
    }

    #[test]
    fn people_show_name_then_address() {
        assert_eq!(person_name(&Person::default()), "(no name)");
        let only_mail = Person {
            email: Some("kim@contoso.com".into()),
            ..Person::default()
        };
        assert_eq!(person_name(&only_mail), "kim@contoso.com");
        assert_eq!(person_line(&only_mail), "kim@contoso.com");
        assert_eq!(
            person_line(&person("Kim", "kim@contoso.com")),
            "Kim · kim@contoso.com"
        );
    }
}
