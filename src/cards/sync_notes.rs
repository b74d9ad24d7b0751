//! `sync notes`: the form the FM fills in after the account team sync, what it submits, and the
//! record shown afterwards. Wording from the Account team sync section of the Initiate phase page.

use serde_json::{Map, Value, json};

use super::engagement::{Run, attention, bullet, customer_text, fit_to_budget, one_line, runs};
use super::{
    adaptive_card, execute_action, fact_set, heading, plain, subheading, subtle, text, truncate,
};

/// Verb of the form's Submit; data `{"engagementId": i64}` plus the inputs below.
pub const VERB_SYNC_NOTES_SUBMIT: &str = "sync.notes.submit";

/// The form's input ids, which [`parse_sync_notes`] reads back.
pub const INPUT_SUMMARY: &str = "summary";
pub const INPUT_OPEN_ITEMS: &str = "openItems";
pub const INPUT_NEXT_STEPS: &str = "nextSteps";
pub const INPUT_INTRO_EMAIL: &str = "introEmailRequested";
pub const INPUT_TEAMS_CHANNEL: &str = "teamsChannelJoined";
pub const INPUT_RHYTHM: &str = "rhythm";

/// Character caps, enforced by the form (`maxLength`) and again on submit.
pub const MAX_SUMMARY_CHARS: usize = 4000;
pub const MAX_LIST_CHARS: usize = 2000;
pub const MAX_RHYTHM_CHARS: usize = 200;

const ASK_INTRO_EMAIL: &str = "Ask: Email intro to the customer";
const ASK_TEAMS_CHANNEL: &str =
    "Ask [Optional]: Join dedicated Teams Channel/Teams group to discuss support activity";
const ASK_RHYTHM: &str = "Schedule/ask for Invite Internal syncing rhythm with Field Team";

const MAX_ERROR_CHARS: usize = 300;
const MAX_BY_CHARS: usize = 64;
const MAX_SHOWN_LINES: usize = 25;
const MAX_LINE_CHARS: usize = 300;

/// What the FM wrote; `open_items` and `next_steps` hold one item per line.
#[derive(Default, Clone, Debug, PartialEq)]
pub struct SyncNotesForm {
    pub summary: String,
    pub open_items: String,
    pub next_steps: String,
    pub intro_email_requested: bool,
    pub teams_channel_joined: bool,
    pub rhythm: String,
}

impl SyncNotesForm {
    /// The open items, one per entry.
    pub fn open_item_lines(&self) -> Vec<&str> {
        non_empty_lines(&self.open_items)
    }

    pub fn next_step_lines(&self) -> Vec<&str> {
        non_empty_lines(&self.next_steps)
    }
}

/// The form; after a rejected submit, `prefill` is what was typed and `error` says what to fix.
pub fn sync_notes_form_card(
    engagement_id: i64,
    customer: &str,
    prefill: &SyncNotesForm,
    error: Option<&str>,
) -> Value {
    let mut body = vec![
        heading("Account team sync notes"),
        subtle(&format!(
            "{}: what you agreed with the account team.",
            customer_text(customer)
        )),
    ];
    if let Some(error) = error.map(str::trim).filter(|e| !e.is_empty()) {
        body.push(attention(&format!(
            "⚠ {}",
            plain(&truncate(error, MAX_ERROR_CHARS))
        )));
    }
    // Values are not markdown, so what was typed goes back as typed, only cleaned and capped.
    body.extend([
        text_input(
            INPUT_SUMMARY,
            "Summary",
            "What was discussed and agreed",
            &prefill.summary,
            MAX_SUMMARY_CHARS,
            true,
        ),
        text_input(
            INPUT_OPEN_ITEMS,
            "Open items (one per line)",
            "e.g. Confirm licenses",
            &prefill.open_items,
            MAX_LIST_CHARS,
            false,
        ),
        text_input(
            INPUT_NEXT_STEPS,
            "Next steps (one per line)",
            "e.g. ATS shares the org chart by Friday",
            &prefill.next_steps,
            MAX_LIST_CHARS,
            false,
        ),
        subheading("Asks"),
        toggle(
            INPUT_INTRO_EMAIL,
            ASK_INTRO_EMAIL,
            prefill.intro_email_requested,
        ),
        toggle(
            INPUT_TEAMS_CHANNEL,
            ASK_TEAMS_CHANNEL,
            prefill.teams_channel_joined,
        ),
        json!({
            "type": "Input.Text",
            "id": INPUT_RHYTHM,
            "label": ASK_RHYTHM,
            "placeholder": "e.g. weekly, Tuesday 10:00; or the Field sync we join",
            "maxLength": MAX_RHYTHM_CHARS,
            "value": clean(&prefill.rhythm, MAX_RHYTHM_CHARS),
        }),
        subtle(
            "Submit drafts the follow-up email to the account team (summary, open items, next steps) in your mailbox and records the notes for FTOP.",
        ),
    ]);
    let mut submit = execute_action(
        "Submit",
        VERB_SYNC_NOTES_SUBMIT,
        json!({ "engagementId": engagement_id }),
    );
    if let Some(map) = submit.as_object_mut() {
        map.insert("style".into(), "positive".into());
    }
    adaptive_card(body, vec![submit])
}

fn text_input(
    id: &str,
    label: &str,
    placeholder: &str,
    value: &str,
    max_chars: usize,
    required: bool,
) -> Value {
    let mut input = json!({
        "type": "Input.Text",
        "id": id,
        "label": label,
        "placeholder": placeholder,
        "isMultiline": true,
        "maxLength": max_chars,
        "value": clean(value, max_chars),
    });
    if required && let Some(map) = input.as_object_mut() {
        map.insert("isRequired".into(), true.into());
        map.insert(
            "errorMessage".into(),
            "Write a short summary of the sync.".into(),
        );
    }
    input
}

fn toggle(id: &str, title: &str, on: bool) -> Value {
    json!({
        "type": "Input.Toggle",
        "id": id,
        "title": title,
        "value": if on { "true" } else { "false" },
        "valueOn": "true",
        "valueOff": "false",
        "wrap": true,
    })
}

/// Reads a submitted form strictly: the data of the submit (inputs merged with the button's data).
///
/// The error is a sentence for the FM; show it with [`sync_notes_form_card`] and
/// [`sync_notes_prefill`] so nothing typed is lost.
pub fn parse_sync_notes(data: &Value) -> Result<SyncNotesForm, String> {
    let inputs = data
        .as_object()
        .ok_or_else(|| "The form arrived empty. Fill it in and submit it again.".to_owned())?;
    let summary = text_field(inputs, INPUT_SUMMARY, "The summary", MAX_SUMMARY_CHARS)?;
    if summary.is_empty() {
        return Err("Write a short summary of the sync.".to_owned());
    }
    Ok(SyncNotesForm {
        summary,
        open_items: list_field(inputs, INPUT_OPEN_ITEMS, "The open items")?,
        next_steps: list_field(inputs, INPUT_NEXT_STEPS, "The next steps")?,
        intro_email_requested: toggle_field(inputs, INPUT_INTRO_EMAIL, "The intro email ask")?,
        teams_channel_joined: toggle_field(inputs, INPUT_TEAMS_CHANNEL, "The Teams channel ask")?,
        rhythm: text_field(inputs, INPUT_RHYTHM, "The syncing rhythm", MAX_RHYTHM_CHARS)?,
    })
}

/// Reads what it can of a submitted form, never failing: the prefill for showing the form again
/// after [`parse_sync_notes`] refused it.
pub fn sync_notes_prefill(data: &Value) -> SyncNotesForm {
    let empty = Map::new();
    let inputs = data.as_object().unwrap_or(&empty);
    let text = |id: &str, max: usize| {
        raw_text(inputs, id)
            .ok()
            .flatten()
            .map(|s| clean(&s, max))
            .unwrap_or_default()
    };
    SyncNotesForm {
        summary: text(INPUT_SUMMARY, MAX_SUMMARY_CHARS),
        open_items: text(INPUT_OPEN_ITEMS, MAX_LIST_CHARS),
        next_steps: text(INPUT_NEXT_STEPS, MAX_LIST_CHARS),
        intro_email_requested: toggle_field(inputs, INPUT_INTRO_EMAIL, "").unwrap_or(false),
        teams_channel_joined: toggle_field(inputs, INPUT_TEAMS_CHANNEL, "").unwrap_or(false),
        rhythm: text(INPUT_RHYTHM, MAX_RHYTHM_CHARS),
    }
}

/// Inputs come back as strings; a number or boolean is taken as its text, a structure is refused.
fn raw_text(inputs: &Map<String, Value>, id: &str) -> Result<Option<String>, ()> {
    match inputs.get(id) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(Value::Array(_) | Value::Object(_)) => Err(()),
    }
}

fn text_field(
    inputs: &Map<String, Value>,
    id: &str,
    what: &str,
    max_chars: usize,
) -> Result<String, String> {
    let raw = raw_text(inputs, id)
        .map_err(|()| format!("{what} must be text."))?
        .unwrap_or_default();
    let cleaned = clean(&raw, usize::MAX);
    let chars = cleaned.chars().count();
    if chars > max_chars {
        return Err(format!(
            "{what} is too long: {chars} characters, at most {max_chars}."
        ));
    }
    Ok(cleaned)
}

/// One item per line, blank lines and typed bullets dropped (the email and the card add their own).
fn list_field(inputs: &Map<String, Value>, id: &str, what: &str) -> Result<String, String> {
    let text = text_field(inputs, id, what, MAX_LIST_CHARS)?;
    Ok(non_empty_lines(&text)
        .into_iter()
        .map(strip_bullet)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Toggles send `"true"`/`"false"`; an absent toggle is off.
fn toggle_field(inputs: &Map<String, Value>, id: &str, what: &str) -> Result<bool, String> {
    match inputs.get(id) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" | "" => Ok(false),
            _ => Err(format!("{what} must be on or off.")),
        },
        Some(_) => Err(format!("{what} must be on or off.")),
    }
}

/// Unix line ends, no control characters, no trailing spaces, cut to `max_chars`.
fn clean(text: &str, max_chars: usize) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let kept: String = text
        .chars()
        .map(|c| if c == '\t' { ' ' } else { c })
        .filter(|c| *c == '\n' || !c.is_control())
        .collect();
    let trimmed = kept
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n");
    let trimmed = trimmed.trim();
    match trimmed.char_indices().nth(max_chars) {
        None => trimmed.to_owned(),
        Some((cut, _)) => trimmed.get(..cut).unwrap_or_default().trim_end().to_owned(),
    }
}

fn non_empty_lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect()
}

fn strip_bullet(line: &str) -> &str {
    ["- ", "* ", "• "]
        .iter()
        .find_map(|bullet| line.strip_prefix(bullet))
        .unwrap_or(line)
        .trim()
}

/// The notes as recorded, shown in place of the form after a successful submit.
pub fn sync_notes_recorded_card(
    _engagement_id: i64,
    customer: &str,
    notes: &SyncNotesForm,
    by: &str,
) -> Value {
    // Whatever gets cut here is still whole in the email and the record.
    fit_to_budget(|divisor| {
        recorded(
            customer,
            notes,
            by,
            MAX_SUMMARY_CHARS / divisor,
            MAX_LINE_CHARS / divisor,
        )
    })
}

fn recorded(
    customer: &str,
    notes: &SyncNotesForm,
    by: &str,
    summary_chars: usize,
    line_chars: usize,
) -> Value {
    let by = match by.trim() {
        "" => None,
        name => Some(plain(&truncate(name, MAX_BY_CHARS))),
    };
    let summary: Vec<String> = non_empty_lines(&truncate(notes.summary.trim(), summary_chars))
        .into_iter()
        .map(plain)
        .collect();
    let mut body = vec![heading(&format!(
        "Account team sync notes: {}",
        customer_text(customer)
    ))];
    if let Some(by) = &by {
        body.push(subtle(&format!("Recorded by {by}")));
    }
    body.push(subheading("Summary"));
    // One block with paragraph breaks: a block per line could run to hundreds of elements.
    body.push(text(&summary.join("\n\n")));
    body.push(subheading("Open items"));
    body.extend(lines(&notes.open_item_lines(), line_chars, "None."));
    body.push(subheading("Next steps"));
    body.extend(lines(
        &notes.next_step_lines(),
        line_chars,
        "None recorded.",
    ));
    body.push(subheading("Asks"));
    let rhythm = notes.rhythm.trim();
    let rhythm_text = if rhythm.is_empty() {
        "Not agreed yet".to_owned()
    } else {
        one_line(rhythm, MAX_RHYTHM_CHARS)
    };
    body.push(fact_set([
        (
            "Email intro to the customer",
            yes_no(notes.intro_email_requested),
        ),
        (
            "Join dedicated Teams Channel/Teams group",
            yes_no(notes.teams_channel_joined),
        ),
        ("Internal syncing rhythm", rhythm_text.as_str()),
    ]));
    if rhythm.is_empty() {
        body.push(runs(&[
            Run::Text("Set up the Field team sync with "),
            Run::Code("sync schedule weekly tue 10:00"),
            Run::Text(", or "),
            Run::Code("sync join <meeting link>"),
            Run::Text(" to join one that already runs."),
        ]));
    }
    let mailbox = match &by {
        Some(by) => format!("{by}'s mailbox"),
        None => "the FastTrack Manager's mailbox".to_owned(),
    };
    body.push(json!({
        "type": "TextBlock",
        "text": format!("✉ Follow-up email drafted in {mailbox}: review it and send it from Outlook."),
        "wrap": true,
        "weight": "Bolder",
        "spacing": "Medium",
    }));
    body.push(subtle("Summary and next steps are recorded for FTOP."));
    adaptive_card(body, Vec::new())
}

fn lines(items: &[&str], line_chars: usize, empty: &str) -> Vec<Value> {
    if items.is_empty() {
        return vec![subtle(empty)];
    }
    let mut out: Vec<Value> = items
        .iter()
        .take(MAX_SHOWN_LINES)
        .map(|item| bullet(&one_line(item, line_chars)))
        .collect();
    if items.len() > MAX_SHOWN_LINES {
        out.push(subtle(&format!(
            "and {} more in the email.",
            items.len() - MAX_SHOWN_LINES
        )));
    }
    out
}

fn yes_no(on: bool) -> &'static str {
    if on { "Yes" } else { "No" }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use crate::cards::engagement::hostile::{
        CUSTOMER, NAME, assert_json_clean, assert_no_injection,
    };
    use crate::cards::test_support::{assert_card_ok, execute_actions, texts};

    fn notes() -> SyncNotesForm {
        SyncNotesForm {
            summary:
                "Validated intent for Exchange and Teams.\nSharePoint blocked by a 3rd-party DMS."
                    .into(),
            open_items: "Confirm licenses\nMigration source environment?".into(),
            next_steps: "ATS shares the org chart\nFM sends the intro email".into(),
            intro_email_requested: true,
            teams_channel_joined: false,
            rhythm: "Weekly, Tuesday 10:00".into(),
        }
    }

    fn hostile() -> SyncNotesForm {
        SyncNotesForm {
            summary: format!("{NAME}\n<script>alert(1)</script>"),
            open_items: format!("{NAME}\n- [y](https://evil)"),
            next_steps: "1. [z](https://evil)".into(),
            intro_email_requested: false,
            teams_channel_joined: true,
            rhythm: "[r](https://evil)".into(),
        }
    }

    fn inputs(card: &Value) -> Vec<&Value> {
        card["body"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"].as_str().unwrap().starts_with("Input."))
            .collect()
    }

    /// What Teams would send back for this form: every input's value, as strings, plus the data.
    fn submitted(card: &Value) -> Value {
        let mut data = execute_actions(card)[0]["data"]
            .as_object()
            .unwrap()
            .clone();
        for input in inputs(card) {
            data.insert(
                input["id"].as_str().unwrap().into(),
                input["value"].as_str().unwrap().into(),
            );
        }
        Value::Object(data)
    }

    #[test]
    fn every_card_is_valid_realistic_hostile_and_huge() {
        let huge = SyncNotesForm {
            summary: "\\".repeat(MAX_SUMMARY_CHARS),
            open_items: "\\\n".repeat(MAX_LIST_CHARS / 2),
            next_steps: "\\".repeat(MAX_LIST_CHARS),
            intro_email_requested: true,
            teams_channel_joined: true,
            rhythm: "\\".repeat(MAX_RHYTHM_CHARS),
        };
        let beyond_caps = SyncNotesForm {
            summary: "\"\u{1}".repeat(50_000),
            open_items: "\"".repeat(50_000),
            next_steps: "\"".repeat(50_000),
            rhythm: "\"".repeat(50_000),
            ..SyncNotesForm::default()
        };
        for form in [
            notes(),
            hostile(),
            huge,
            beyond_caps,
            SyncNotesForm::default(),
        ] {
            for customer in ["Contoso Ltd", CUSTOMER] {
                for error in [None, Some("Write a short summary of the sync."), Some(NAME)] {
                    let card = sync_notes_form_card(5, customer, &form, error);
                    assert_card_ok(&card);
                    assert_no_injection(&card, &[]);
                }
                for by in ["Dana", NAME, ""] {
                    let card = sync_notes_recorded_card(5, customer, &form, by);
                    assert_card_ok(&card);
                    assert_json_clean(&card, &[]);
                }
            }
        }
    }

    #[test]
    fn form_has_the_playbook_asks_and_submit() {
        let card = sync_notes_form_card(5, "Contoso Ltd", &SyncNotesForm::default(), None);
        let ids: Vec<&str> = inputs(&card)
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            [
                INPUT_SUMMARY,
                INPUT_OPEN_ITEMS,
                INPUT_NEXT_STEPS,
                INPUT_INTRO_EMAIL,
                INPUT_TEAMS_CHANNEL,
                INPUT_RHYTHM
            ]
        );
        let summary = inputs(&card)[0];
        assert_eq!(summary["isRequired"], true);
        assert_eq!(summary["isMultiline"], true);
        assert_eq!(summary["maxLength"], 4000);
        let texts = texts(&card);
        for ask in [ASK_INTRO_EMAIL, ASK_TEAMS_CHANNEL, ASK_RHYTHM] {
            assert!(
                texts.iter().any(|t| t == ask) || card.to_string().contains(ask),
                "{ask}"
            );
        }
        let actions = execute_actions(&card);
        assert_eq!(actions.len(), 1);
        assert_eq!(actions[0]["verb"], VERB_SYNC_NOTES_SUBMIT);
        assert_eq!(actions[0]["data"], json!({"engagementId": 5}));
        assert!(!texts.iter().any(|t| t.starts_with('⚠')));
    }

    #[test]
    fn error_shows_above_the_inputs_and_keeps_what_was_typed() {
        let card = sync_notes_form_card(5, "Contoso Ltd", &notes(), Some("Summary is too long."));
        let body = card["body"].as_array().unwrap();
        let error = body.iter().position(|e| e["color"] == "Attention").unwrap();
        let first_input = body.iter().position(|e| e["type"] == "Input.Text").unwrap();
        assert!(error < first_input);
        assert_eq!(body[error]["text"], "⚠ Summary is too long.");
        assert_eq!(inputs(&card)[0]["value"], notes().summary);
        assert_eq!(inputs(&card)[3]["value"], "true");
        assert_eq!(inputs(&card)[4]["value"], "false");
    }

    #[test]
    fn form_round_trips_through_parse() {
        for form in [notes(), hostile()] {
            let card = sync_notes_form_card(5, "Contoso", &form, None);
            let parsed = parse_sync_notes(&submitted(&card)).unwrap();
            assert_eq!(parsed.summary, form.summary);
            assert_eq!(parsed.intro_email_requested, form.intro_email_requested);
            assert_eq!(parsed.teams_channel_joined, form.teams_channel_joined);
            assert_eq!(parsed.rhythm, form.rhythm);
        }
        assert_eq!(
            parse_sync_notes(&submitted(&sync_notes_form_card(5, "C", &notes(), None))),
            Ok(notes())
        );
    }

    #[test]
    fn parse_requires_a_summary() {
        for data in [
            json!({}),
            json!({"summary": ""}),
            json!({"summary": "  \r\n\t "}),
            json!({"summary": null}),
        ] {
            assert_eq!(
                parse_sync_notes(&data),
                Err("Write a short summary of the sync.".to_owned()),
                "{data}"
            );
        }
        assert!(parse_sync_notes(&json!("summary")).is_err());
        assert!(parse_sync_notes(&Value::Null).is_err());
    }

    #[test]
    fn parse_reads_toggles_and_odd_values() {
        let form = parse_sync_notes(&json!({
            "engagementId": 5,
            "verb": VERB_SYNC_NOTES_SUBMIT,
            "summary": "ok",
            "introEmailRequested": "TRUE",
            "teamsChannelJoined": true,
            "rhythm": 42,
        }))
        .unwrap();
        assert!(form.intro_email_requested && form.teams_channel_joined);
        assert_eq!(form.rhythm, "42");
        assert_eq!(form.open_items, "");

        let off = parse_sync_notes(&json!({
            "summary": "ok", "introEmailRequested": "false", "teamsChannelJoined": ""
        }))
        .unwrap();
        assert!(!off.intro_email_requested && !off.teams_channel_joined);

        for (data, needle) in [
            (
                json!({"summary": "ok", "introEmailRequested": "yes"}),
                "intro email ask",
            ),
            (
                json!({"summary": "ok", "teamsChannelJoined": 1}),
                "Teams channel ask",
            ),
            (json!({"summary": ["a"]}), "summary must be text"),
            (
                json!({"summary": "ok", "nextSteps": {"a": 1}}),
                "next steps must be text",
            ),
        ] {
            let err = parse_sync_notes(&data).unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn parse_caps_every_field() {
        let at_cap = "x".repeat(MAX_SUMMARY_CHARS);
        assert!(parse_sync_notes(&json!({ "summary": at_cap })).is_ok());
        let cases = [
            ("summary", MAX_SUMMARY_CHARS),
            ("openItems", MAX_LIST_CHARS),
            ("nextSteps", MAX_LIST_CHARS),
            ("rhythm", MAX_RHYTHM_CHARS),
        ];
        for (id, cap) in cases {
            let mut data = json!({ "summary": "ok" });
            data[id] = "é".repeat(cap + 1).into();
            let err = parse_sync_notes(&data).unwrap_err();
            assert!(
                err.contains("too long") && err.contains(&cap.to_string()),
                "{err}"
            );
        }
    }

    #[test]
    fn parse_cleans_lines_and_control_characters() {
        let form = parse_sync_notes(&json!({
            "summary": "  line one\r\nline\u{0}two\t \r\n",
            "openItems": "- Confirm licenses\r\n\r\n  * Migration source? \n•  Partner\n",
            "nextSteps": "\n\n",
        }))
        .unwrap();
        assert_eq!(form.summary, "line one\nlinetwo");
        assert_eq!(
            form.open_items,
            "Confirm licenses\nMigration source?\nPartner"
        );
        assert_eq!(form.open_item_lines().len(), 3);
        assert_eq!(form.next_steps, "");
    }

    #[test]
    fn prefill_keeps_what_it_can_of_a_rejected_submit() {
        let data = json!({
            "summary": "x".repeat(MAX_SUMMARY_CHARS + 10),
            "openItems": ["odd"],
            "introEmailRequested": "true",
            "teamsChannelJoined": "maybe",
            "rhythm": "weekly",
        });
        assert!(parse_sync_notes(&data).is_err());
        let prefill = sync_notes_prefill(&data);
        assert_eq!(prefill.summary.chars().count(), MAX_SUMMARY_CHARS);
        assert_eq!(prefill.open_items, "");
        assert!(prefill.intro_email_requested);
        assert!(!prefill.teams_channel_joined);
        assert_eq!(prefill.rhythm, "weekly");
        assert_eq!(sync_notes_prefill(&Value::Null), SyncNotesForm::default());
    }

    #[test]
    fn recorded_card_shows_the_notes_without_buttons() {
        let card = sync_notes_recorded_card(5, "Contoso Ltd", &notes(), "Dana");
        assert!(execute_actions(&card).is_empty());
        assert!(card.get("actions").is_none());
        let shown = texts(&card);
        for needle in [
            "Account team sync notes: Contoso Ltd",
            "Recorded by Dana",
            "Validated intent for Exchange and Teams.\n\nSharePoint blocked by a 3rd-party DMS.",
            "• Confirm licenses",
            "• Migration source environment?",
            "• ATS shares the org chart",
            "Weekly, Tuesday 10:00",
            "✉ Follow-up email drafted in Dana's mailbox: review it and send it from Outlook.",
        ] {
            assert!(shown.iter().any(|t| t == needle), "{needle} in {shown:?}");
        }
        assert!(!shown.iter().any(|t| t == "sync schedule weekly tue 10:00"));

        let no_rhythm = SyncNotesForm {
            rhythm: String::new(),
            ..notes()
        };
        let texts = texts(&sync_notes_recorded_card(5, "Contoso", &no_rhythm, ""));
        assert!(texts.contains(&"Not agreed yet".to_owned()));
        assert!(texts.contains(&"sync schedule weekly tue 10:00".to_owned()));
        assert!(
            texts
                .iter()
                .any(|t| t.contains("the FastTrack Manager's mailbox"))
        );
    }

    #[test]
    fn pathological_notes_are_shown_shorter_to_fit() {
        let form = SyncNotesForm {
            summary: "\\".repeat(MAX_SUMMARY_CHARS),
            open_items: format!("{}\n", "\\".repeat(MAX_LINE_CHARS)).repeat(6),
            next_steps: format!("{}\n", "\\".repeat(MAX_LINE_CHARS)).repeat(6),
            ..notes()
        };
        let card = sync_notes_recorded_card(5, "Contoso", &form, "Dana");
        assert_card_ok(&card);
        let realistic = sync_notes_recorded_card(5, "Contoso", &notes(), "Dana");
        assert!(texts(&realistic).contains(&"• Confirm licenses".to_owned()));
    }
}
