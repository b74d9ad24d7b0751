//! Request FastTrack Architect: the request form, the status card that every transition updates in
//! place, the notice to the FTA leads and the `fta list` card. Wording from the Request FastTrack
//! Architect playbook page.
//!
//! The status card follows the Universal Actions approval pattern: one base card for everybody
//! (posted, then PUT on every change), and a card-level `refresh` naming the leads and the
//! requestor, whose refresh invoke returns their own view with the buttons they may press.
//!
//! Everything here works on plain view structs of strings; mapping the domain onto them is the
//! caller's business, so these builders only decide what a card shows.

use serde_json::{Map, Value, json};

use super::engagement::{MAX_CUSTOMER_CHARS, MAX_NAME_CHARS, attention, fit_to_budget, one_line};
use super::{adaptive_card, execute_action, fact_set, heading, subheading, subtle, text};

/// Form submit: the inputs below plus data `{"engagementId"}`.
pub const VERB_FTA_SUBMIT: &str = "fta.submit";
/// Answered with the clicking user's view of the status card; sent by the card's refresh, its
/// Refresh button and the leads' Open request. Data `{"requestId"}`, plus `"version"` from the
/// status card.
pub const VERB_FTA_VIEW: &str = "fta.view";
/// Lead; input [`INPUT_FTA`]. Data `{"requestId", "version"}` like every status-card action.
pub const VERB_FTA_ASSIGN: &str = "fta.assign";
/// Lead; input [`INPUT_REASON`] (required).
pub const VERB_FTA_DECLINE: &str = "fta.decline";
/// Lead; input [`INPUT_ASK`] (required).
pub const VERB_FTA_INFO: &str = "fta.info";
/// Requestor.
pub const VERB_FTA_WITHDRAW: &str = "fta.withdraw";
/// Requestor answering an info request; input [`INPUT_ANSWER`].
pub const VERB_FTA_PROVIDE_INFO: &str = "fta.provide_info";
/// Teams runs a card's refresh automatically for at most this many `userIds`.
pub const REFRESH_USER_LIMIT: usize = 60;

pub const INPUT_TPID: &str = "tpid";
pub const INPUT_TENANT: &str = "tenant";
pub const INPUT_PARTNER: &str = "partner";
pub const INPUT_USERS: &str = "users";
pub const INPUT_TYPE: &str = "type";
pub const INPUT_STAGE: &str = "stage";
pub const INPUT_EVENT: &str = "event";
pub const INPUT_SEGMENT: &str = "segment";
pub const INPUT_ENTITLEMENTS: &str = "entitlements";
pub const INPUT_NOTES: &str = "notes";
pub const INPUT_FTA: &str = "fta";
pub const INPUT_REASON: &str = "reason";
pub const INPUT_ASK: &str = "ask";
pub const INPUT_ANSWER: &str = "answer";

/// (value, title) of the request types, titles as the playbook words them.
pub const FTA_REQUEST_TYPES: [(&str, &str); 3] = [
    ("ecif", "SOW Review or ECIF Related Request"),
    ("non-ecif", "Non-ECIF Related Request"),
    ("migration", "Migration Exception Request"),
];
pub const FTA_SEGMENTS: [(&str, &str); 2] = [
    ("enterprise", "Enterprise"),
    ("smc-c", "Small Medium Corporate (SMC-C)"),
];
pub const FTA_ENTITLEMENTS: [(&str, &str); 3] = [
    ("m365", "Microsoft 365"),
    ("o365", "Office 365"),
    ("ems", "Enterprise Mobility + Security (EMS)"),
];

/// Input caps (`maxLength`); the prefill is cut to them too, so a rejected submit cannot grow
/// the form past the card budget.
pub const MAX_TPID_CHARS: usize = 20;
pub const MAX_TENANT_CHARS: usize = 256;
pub const MAX_PARTNER_CHARS: usize = 120;
pub const MAX_USERS_CHARS: usize = 20;
pub const MAX_EVENT_CHARS: usize = 1000;
pub const MAX_NOTES_CHARS: usize = 2000;
pub const MAX_FTA_CHARS: usize = 256;
pub const MAX_REASON_CHARS: usize = 1000;
pub const MAX_ASK_CHARS: usize = 1000;
pub const MAX_ANSWER_CHARS: usize = 2000;

const MAX_ERROR_CHARS: usize = 300;
const MAX_ERRORS_SHOWN: usize = 10;
const MAX_LABEL_CHARS: usize = 40;
const MAX_AT_CHARS: usize = 40;
const MAX_FACT_TITLE_CHARS: usize = 40;
const MAX_FACT_CHARS: usize = 500;
const MAX_KEY_FACT_CHARS: usize = 150;
const MAX_FACTS: usize = 16;
const MAX_OUTCOME_CHARS: usize = 1000;
const MAX_HISTORY_SHOWN: usize = 5;
const MAX_HISTORY_CHARS: usize = 300;
const MAX_LIST_ROWS: usize = 20;
/// Teams user ids (MRIs) are under 100 characters; anything far longer is not one, and 60 of
/// them must still leave room for the card.
const MAX_USER_ID_CHARS: usize = 128;

/// The facts the leads' notice repeats: what decides whether an FTA is aligned.
const KEY_FACTS: [&str; 6] = [
    "Request type",
    "Total users",
    "Sales stage",
    "Compelling event",
    "Segment",
    "Entitlements",
];

/// The form's inputs in form order, with the name the error summary uses.
const FORM_FIELDS: [(&str, &str); 10] = [
    (INPUT_TPID, "TPID"),
    (INPUT_TENANT, "Tenant"),
    (INPUT_PARTNER, "Partner"),
    (INPUT_USERS, "Total users"),
    (INPUT_TYPE, "Request type"),
    (INPUT_STAGE, "Sales stage"),
    (INPUT_EVENT, "Compelling event"),
    (INPUT_SEGMENT, "Customer segment"),
    (INPUT_ENTITLEMENTS, "Entitlements"),
    (INPUT_NOTES, "Additional instructions"),
];

/// What the form holds: as typed, or as the choice values the form sends.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FtaFormValues {
    pub tpid: String,
    pub tenant: String,
    pub partner: String,
    pub users: String,
    /// "ecif", "non-ecif", "migration" or "".
    pub request_type: String,
    pub stage: String,
    pub event: String,
    /// "enterprise", "smc-c" or "".
    pub segment: String,
    /// Comma-separated values, e.g. "m365,ems".
    pub entitlements: String,
    pub notes: String,
}

/// One line of the audit history.
#[derive(Debug, Clone, PartialEq)]
pub struct FtaAuditLine {
    /// Already formatted for the reader.
    pub at: String,
    pub who: String,
    /// e.g. "submitted", "assigned Ada Fta", "declined: <reason>".
    pub action: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FtaRequestView {
    pub id: i64,
    /// Sent back with every action, so a stale click can be told apart from a fresh one.
    pub version: i64,
    pub engagement_id: i64,
    pub customer: String,
    /// submitted | in_review | assigned | declined | withdrawn | info_requested.
    pub status: String,
    /// Shown on the badge; blank means the usual label for `status`.
    pub status_label: String,
    pub requestor: String,
    /// Already formatted; the list card shows it as the request's age, so "3 days ago" works too.
    pub submitted_at: String,
    /// (title, value) in display order: TPID, Tenant, Partner, Total users, Request type, Sales
    /// stage, Compelling event, Segment, Entitlements, Instructions.
    pub facts: Vec<(String, String)>,
    pub assigned_fta: Option<String>,
    pub decline_reason: Option<String>,
    pub info_ask: Option<String>,
    /// Oldest first.
    pub history: Vec<FtaAuditLine>,
}

/// Whose view of the status card to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FtaViewer {
    /// The base card in the channel: no buttons but Refresh.
    Everyone,
    Lead,
    Requestor,
    LeadAndRequestor,
}

impl FtaViewer {
    fn is_lead(self) -> bool {
        matches!(self, Self::Lead | Self::LeadAndRequestor)
    }

    fn is_requestor(self) -> bool {
        matches!(self, Self::Requestor | Self::LeadAndRequestor)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Submitted,
    InReview,
    InfoRequested,
    Assigned,
    Declined,
    Withdrawn,
    /// Shown, but as closed: buttons for a state the server does not know would only fail.
    Unknown,
}

impl Status {
    fn parse(status: &str) -> Self {
        match status.trim().to_ascii_lowercase().as_str() {
            "submitted" => Self::Submitted,
            "in_review" => Self::InReview,
            "info_requested" => Self::InfoRequested,
            "assigned" => Self::Assigned,
            "declined" => Self::Declined,
            "withdrawn" => Self::Withdrawn,
            _ => Self::Unknown,
        }
    }

    fn is_open(self) -> bool {
        matches!(self, Self::Submitted | Self::InReview | Self::InfoRequested)
    }

    /// The leads act only while the request is with them; info_requested waits on the requestor.
    fn awaits_lead(self) -> bool {
        matches!(self, Self::Submitted | Self::InReview)
    }

    fn label(self) -> &'static str {
        match self {
            Self::Submitted => "Submitted",
            Self::InReview => "In review",
            Self::InfoRequested => "Info requested",
            Self::Assigned => "FTA assigned",
            Self::Declined => "Declined",
            Self::Withdrawn => "Withdrawn",
            Self::Unknown => "Unknown",
        }
    }

    fn container_style(self) -> &'static str {
        match self {
            Self::Submitted | Self::InReview => "accent",
            Self::InfoRequested => "warning",
            Self::Assigned => "good",
            Self::Declined => "attention",
            Self::Withdrawn | Self::Unknown => "emphasis",
        }
    }

    fn text_color(self) -> &'static str {
        match self {
            Self::Submitted | Self::InReview => "Accent",
            Self::InfoRequested => "Warning",
            Self::Assigned => "Good",
            Self::Declined => "Attention",
            Self::Withdrawn | Self::Unknown => "Default",
        }
    }
}

// ---- the request form ----

/// The request form. `errors` are (input id, message) pairs: each message shows under its field
/// and the top says how many fields to fix; an id that names no input shows at the top. The
/// inputs keep `values`, so nothing typed is lost after a rejected submit.
pub fn fta_form_card(
    engagement_id: i64,
    customer: &str,
    values: &FtaFormValues,
    errors: &[(String, String)],
) -> Value {
    fit_to_budget(|divisor| form(engagement_id, customer, values, errors, divisor))
}

fn form(
    engagement_id: i64,
    customer: &str,
    values: &FtaFormValues,
    errors: &[(String, String)],
    divisor: usize,
) -> Value {
    let cap = |max: usize| (max / divisor).max(1);
    let errors = FormErrors::new(errors, cap(MAX_ERROR_CHARS));
    let mut body = vec![
        heading("Request a FastTrack Architect"),
        subtle(&format!(
            "For {}. The FTA helps position the FastTrack benefit, identifies out of FastTrack Center scope items and reviews ECIF and migration exception requests.",
            customer_name(customer, cap(MAX_CUSTOMER_CHARS))
        )),
    ];
    body.extend(errors.summary());

    body.extend(
        errors.field(
            TextInput::new(INPUT_TPID, "Top Parent ID (TPID)", MAX_TPID_CHARS)
                .placeholder("e.g. 1234567")
                .required("Enter the TPID, a whole number.")
                .build(&values.tpid, divisor),
        ),
    );
    body.extend(
        errors.field(
            TextInput::new(INPUT_TENANT, "Tenant", MAX_TENANT_CHARS)
                .placeholder("contoso.onmicrosoft.com or the tenant ID")
                .required("Enter the tenant domain or ID.")
                .build(&values.tenant, divisor),
        ),
    );
    body.extend(
        errors.field(
            TextInput::new(INPUT_PARTNER, "Partner", MAX_PARTNER_CHARS)
                .placeholder("The partner's name, or none")
                .required("Name the partner, or write none.")
                .build(&values.partner, divisor),
        ),
    );
    body.extend(
        errors.field(
            TextInput::new(INPUT_USERS, "Total users", MAX_USERS_CHARS)
                .placeholder("e.g. 5000")
                .required("Enter the total number of users.")
                .build(&values.users, divisor),
        ),
    );
    body.extend(errors.field(choice_set(
        INPUT_TYPE,
        "Request type",
        &FTA_REQUEST_TYPES,
        &values.request_type,
        "Choose the request type.",
    )));
    body.push(subheading("Key inputs"));
    body.push(subtle(
        "The customer is at least 40% through the sales stage and has a compelling event: a commitment to Office 365 or EMS.",
    ));
    body.extend(errors.field(stage_input(&values.stage)));
    body.extend(
        errors.field(
            TextInput::new(
                INPUT_EVENT,
                "Compelling event: the customer's commitment to Office 365 or EMS",
                MAX_EVENT_CHARS,
            )
            .placeholder("e.g. Signed an E5 agreement to retire on-premises Exchange by June")
            .multiline()
            .required("Describe the compelling event.")
            .build(&values.event, divisor),
        ),
    );
    body.extend(errors.field(choice_set(
        INPUT_SEGMENT,
        "Customer segment",
        &FTA_SEGMENTS,
        &values.segment,
        "Choose Enterprise or SMC-C.",
    )));
    body.extend(errors.field(entitlements_input(&values.entitlements)));
    body.extend(
        errors.field(
            TextInput::new(
                INPUT_NOTES,
                "Additional instructions for the FTA (optional)",
                MAX_NOTES_CHARS,
            )
            .placeholder("Anything the architect should know before the first call")
            .multiline()
            .build(&values.notes, divisor),
        ),
    );
    body.push(subtle(
        "Submit emails you a confirmation, posts the request's status card in the engagement channel and tells the FTA leads.",
    ));
    let submit = with_style(
        execute_action(
            "Submit request",
            VERB_FTA_SUBMIT,
            json!({ "engagementId": engagement_id }),
        ),
        "positive",
    );
    adaptive_card(body, vec![submit])
}

/// The server's verdict on a submit, sorted into field errors and the rest.
struct FormErrors {
    /// (input id, name for the summary, its messages joined), in form order.
    fields: Vec<(&'static str, &'static str, String)>,
    general: Vec<String>,
}

impl FormErrors {
    fn new(errors: &[(String, String)], max_chars: usize) -> Self {
        let mut fields = Vec::new();
        for (id, name) in FORM_FIELDS {
            let messages: Vec<String> = errors
                .iter()
                .filter(|(field, _)| field.trim() == id)
                .map(|(_, message)| one_line(message, max_chars))
                .filter(|message| !message.is_empty())
                .take(MAX_ERRORS_SHOWN)
                .collect();
            if !messages.is_empty() {
                fields.push((id, name, messages.join(" ")));
            }
        }
        let general = errors
            .iter()
            .filter(|(field, _)| !FORM_FIELDS.iter().any(|(id, _)| field.trim() == *id))
            .map(|(_, message)| one_line(message, max_chars))
            .filter(|message| !message.is_empty())
            .take(MAX_ERRORS_SHOWN)
            .collect();
        Self { fields, general }
    }

    /// "⚠ Fix 2 fields: TPID and Sales stage", then whatever belongs to no field.
    fn summary(&self) -> Vec<Value> {
        let mut out = Vec::new();
        if !self.fields.is_empty() {
            let names: Vec<&str> = self.fields.iter().map(|(_, name, _)| *name).collect();
            let count = match names.len() {
                1 => "1 field".to_owned(),
                n => format!("{n} fields"),
            };
            out.push(attention(&format!("⚠ Fix {count}: {}", and_list(&names))));
        }
        out.extend(
            self.general
                .iter()
                .map(|message| attention(&format!("⚠ {message}"))),
        );
        out
    }

    /// The input, and right under it what the server said about it.
    fn field(&self, input: Value) -> Vec<Value> {
        let message = self
            .fields
            .iter()
            .find(|(id, _, _)| input.get("id").and_then(Value::as_str) == Some(*id))
            .map(|(_, _, message)| message);
        let mut out = vec![input];
        if let Some(message) = message {
            out.push(json!({
                "type": "TextBlock",
                "text": format!("⚠ {message}"),
                "wrap": true,
                "color": "Attention",
                "size": "Small",
                "spacing": "Small",
            }));
        }
        out
    }
}

/// "a", "a and b", "a, b and c".
fn and_list(items: &[&str]) -> String {
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

struct TextInput<'a> {
    id: &'a str,
    label: &'a str,
    max_chars: usize,
    placeholder: Option<&'a str>,
    multiline: bool,
    required: Option<&'a str>,
    style: Option<&'a str>,
}

impl<'a> TextInput<'a> {
    fn new(id: &'a str, label: &'a str, max_chars: usize) -> Self {
        Self {
            id,
            label,
            max_chars,
            placeholder: None,
            multiline: false,
            required: None,
            style: None,
        }
    }

    fn placeholder(self, placeholder: &'a str) -> Self {
        Self {
            placeholder: Some(placeholder),
            ..self
        }
    }

    fn multiline(self) -> Self {
        Self {
            multiline: true,
            ..self
        }
    }

    /// Client-side check first; the server checks again and says why in its own words.
    fn required(self, error_message: &'a str) -> Self {
        Self {
            required: Some(error_message),
            ..self
        }
    }

    fn email(self) -> Self {
        Self {
            style: Some("email"),
            ..self
        }
    }

    /// `value` goes in as typed (input values are not markdown), only cleaned and cut to the cap,
    /// and to 1/`divisor` of it when [`fit_to_budget`] asks.
    fn build(self, value: &str, divisor: usize) -> Value {
        let mut input = Map::new();
        input.insert("type".into(), "Input.Text".into());
        input.insert("id".into(), self.id.into());
        input.insert("label".into(), self.label.into());
        input.insert("maxLength".into(), self.max_chars.into());
        if let Some(placeholder) = self.placeholder {
            input.insert("placeholder".into(), placeholder.into());
        }
        if self.multiline {
            input.insert("isMultiline".into(), true.into());
        }
        if let Some(style) = self.style {
            input.insert("style".into(), style.into());
        }
        if let Some(error_message) = self.required {
            input.insert("isRequired".into(), true.into());
            input.insert("errorMessage".into(), error_message.into());
        }
        let value = input_value(value, (self.max_chars / divisor).max(1), self.multiline);
        if !value.is_empty() {
            input.insert("value".into(), value.into());
        }
        Value::Object(input)
    }
}

fn choice_set(
    id: &str,
    label: &str,
    choices: &[(&str, &str)],
    value: &str,
    error_message: &str,
) -> Value {
    let mut input = json!({
        "type": "Input.ChoiceSet",
        "id": id,
        "label": label,
        "style": "compact",
        "placeholder": "Choose one",
        "isRequired": true,
        "errorMessage": error_message,
        "choices": choices_json(choices),
    });
    // Only a value the set offers can be preselected; anything else the server has already
    // reported next to the field.
    let value = value.trim().to_ascii_lowercase();
    if let (Some((known, _)), Some(map)) = (
        choices.iter().find(|(v, _)| *v == value),
        input.as_object_mut(),
    ) {
        map.insert("value".into(), (*known).into());
    }
    input
}

fn entitlements_input(value: &str) -> Value {
    let mut input = json!({
        "type": "Input.ChoiceSet",
        "id": INPUT_ENTITLEMENTS,
        "label": "Entitlements the customer owns",
        "style": "expanded",
        "isMultiSelect": true,
        "isRequired": true,
        "errorMessage": "Choose at least one: Microsoft 365, Office 365 or EMS.",
        "choices": choices_json(&FTA_ENTITLEMENTS),
    });
    let selected = known_entitlements(value);
    if !selected.is_empty()
        && let Some(map) = input.as_object_mut()
    {
        map.insert("value".into(), selected.join(",").into());
    }
    input
}

/// The entitlement values in `value` that the form offers, in the form's order.
fn known_entitlements(value: &str) -> Vec<&'static str> {
    let typed: Vec<String> = value
        .split(',')
        .map(|v| v.trim().to_ascii_lowercase())
        .collect();
    FTA_ENTITLEMENTS
        .iter()
        .map(|(v, _)| *v)
        .filter(|v| typed.iter().any(|t| t == v))
        .collect()
}

fn choices_json(choices: &[(&str, &str)]) -> Vec<Value> {
    choices
        .iter()
        .map(|(value, title)| json!({ "title": title, "value": value }))
        .collect()
}

fn stage_input(value: &str) -> Value {
    let mut input = json!({
        "type": "Input.Number",
        "id": INPUT_STAGE,
        "label": "Sales stage (%)",
        "placeholder": "at least 40%",
        "min": 0,
        "max": 100,
        "isRequired": true,
        "errorMessage": "Enter the sales stage, 0 to 100 (at least 40%).",
    });
    // An Input.Number can only hold a number: something else typed is dropped here and named by
    // the server's error under the field.
    if let (Some(number), Some(map)) = (stage_number(value), input.as_object_mut()) {
        map.insert("value".into(), number);
    }
    input
}

fn stage_number(value: &str) -> Option<Value> {
    let value = value.trim();
    let value = value.strip_suffix('%').unwrap_or(value).trim();
    if let Ok(whole) = value.parse::<i64>() {
        return Some(whole.into());
    }
    let number = value.parse::<f64>().ok().filter(|n| n.is_finite())?;
    serde_json::Number::from_f64(number).map(Value::Number)
}

/// Unix line ends (or none, for a one-line input), no control characters, trimmed and cut.
fn input_value(text: &str, max_chars: usize, multiline: bool) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let kept: String = text
        .chars()
        .map(|c| match c {
            '\t' => ' ',
            '\n' if !multiline => ' ',
            c => c,
        })
        .filter(|c| *c == '\n' || !c.is_control())
        .collect();
    let trimmed = kept.trim();
    match trimmed.char_indices().nth(max_chars) {
        None => trimmed.to_owned(),
        Some((cut, _)) => trimmed.get(..cut).unwrap_or_default().trim_end().to_owned(),
    }
}

/// Reads a submitted form back, never failing: the domain validates, and on refusal the values go
/// straight back into [`fta_form_card`]. Missing inputs are empty, numbers become their text, and
/// structures (which no input of the form sends) are ignored.
pub fn fta_form_values(data: &Value) -> FtaFormValues {
    let field = |id: &str| match data.get(id) {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    };
    FtaFormValues {
        tpid: field(INPUT_TPID),
        tenant: field(INPUT_TENANT),
        partner: field(INPUT_PARTNER),
        users: field(INPUT_USERS),
        request_type: field(INPUT_TYPE),
        stage: field(INPUT_STAGE),
        event: field(INPUT_EVENT),
        segment: field(INPUT_SEGMENT),
        entitlements: field(INPUT_ENTITLEMENTS),
        notes: field(INPUT_NOTES),
    }
}

// ---- the status card ----

/// The status card as `viewer` sees it.
///
/// `Everyone` is the base card, posted in the engagement channel and PUT on every change: status
/// badge, facts, outcome, recent history, and while the request is open only a Refresh button
/// (for clients that do not refresh on their own). While open it also carries `refresh` (verb
/// [`VERB_FTA_VIEW`], data `{requestId, version}`) with `userIds` = `refresh_user_ids` (the leads
/// and the requestor, blank and duplicate ids dropped); past [`REFRESH_USER_LIMIT`] ids Teams would
/// refresh nobody automatically, so `userIds` is `[]` (manual refresh) and the card says to press
/// Refresh. With no ids there is nobody to refresh for and no `refresh`. Closed requests have
/// neither refresh nor buttons.
///
/// `Lead` adds Assign FTA, Decline and Request info while submitted or in review; `Requestor`
/// adds Withdraw while open and Provide info while info is requested. Each opens a small
/// sub-card with its input and a confirm button, so the inputs only show when wanted. Every
/// button's data carries `requestId` and `version`.
pub fn fta_status_card(
    view: &FtaRequestView,
    viewer: FtaViewer,
    refresh_user_ids: &[String],
) -> Value {
    let ids = refresh_ids(refresh_user_ids);
    fit_to_budget(|divisor| status_card(view, viewer, &ids, divisor))
}

/// The ids Teams can use, each once, in the order given.
fn refresh_ids(ids: &[String]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for id in ids.iter().map(|id| id.trim()) {
        let usable = !id.is_empty()
            && id.chars().count() <= MAX_USER_ID_CHARS
            && !id.chars().any(|c| c.is_control() || c.is_whitespace());
        if usable && !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

fn status_card(view: &FtaRequestView, viewer: FtaViewer, ids: &[&str], divisor: usize) -> Value {
    let cap = |max: usize| (max / divisor).max(1);
    let status = Status::parse(&view.status);
    let mut body = vec![
        heading(&format!(
            "FastTrack Architect request #{}: {}",
            view.id,
            customer_name(&view.customer, cap(MAX_CUSTOMER_CHARS))
        )),
        badge_row(status, &view.status_label, &requested_line(view, cap)),
    ];
    body.extend(outcome(view, status, cap(MAX_OUTCOME_CHARS)));
    body.push(facts(&view.facts, cap(MAX_FACT_CHARS)));
    body.extend(history(&view.history, cap));

    let manual_refresh = ids.len() > REFRESH_USER_LIMIT;
    let mut actions = Vec::new();
    if status.is_open() {
        let ids_data = request_data(view);
        if viewer.is_lead() && status.awaits_lead() {
            actions.extend(lead_actions(&ids_data));
        }
        if viewer.is_requestor() {
            actions.push(withdraw_action(&ids_data));
            if status == Status::InfoRequested {
                actions.push(provide_info_action(
                    view.info_ask.as_deref(),
                    &ids_data,
                    cap(MAX_OUTCOME_CHARS),
                ));
            }
        }
        if viewer == FtaViewer::Everyone && manual_refresh {
            body.push(subtle(
                "FTA leads and the requestor: press Refresh to see the actions you can take.",
            ));
        }
        actions.push(without_inputs(execute_action(
            "Refresh",
            VERB_FTA_VIEW,
            ids_data,
        )));
    }
    let mut card = adaptive_card(body, actions);
    if status.is_open()
        && !ids.is_empty()
        && let Some(map) = card.as_object_mut()
    {
        let user_ids: Vec<&str> = if manual_refresh {
            Vec::new()
        } else {
            ids.to_vec()
        };
        map.insert(
            "refresh".into(),
            json!({
                "action": execute_action("Refresh", VERB_FTA_VIEW, request_data(view)),
                "userIds": user_ids,
            }),
        );
    }
    card
}

fn request_data(view: &FtaRequestView) -> Value {
    json!({ "requestId": view.id, "version": view.version })
}

/// The coloured status badge, with who asked and when beside it.
fn badge_row(status: Status, label: &str, requested: &str) -> Value {
    json!({
        "type": "ColumnSet",
        "spacing": "Small",
        "columns": [
            {
                "type": "Column",
                "width": "auto",
                "style": status.container_style(),
                "verticalContentAlignment": "Center",
                "items": [{
                    "type": "TextBlock",
                    "text": status_label(status, label),
                    "weight": "Bolder",
                    "size": "Small",
                    "wrap": true,
                }],
            },
            {
                "type": "Column",
                "width": "stretch",
                "verticalContentAlignment": "Center",
                "items": [{
                    "type": "TextBlock",
                    "text": requested,
                    "wrap": true,
                    "isSubtle": true,
                }],
            },
        ],
    })
}

fn status_label(status: Status, label: &str) -> String {
    match label.trim() {
        "" => status.label().to_owned(),
        label => one_line(label, MAX_LABEL_CHARS),
    }
}

/// "Requested by Dana · 3 Mar 2025 14:00".
fn requested_line(view: &FtaRequestView, cap: impl Fn(usize) -> usize) -> String {
    let who = person(&view.requestor, cap(MAX_NAME_CHARS));
    match view.submitted_at.trim() {
        "" => format!("Requested by {who}"),
        at => format!("Requested by {who} · {}", one_line(at, cap(MAX_AT_CHARS))),
    }
}

/// What the request came to, or what it waits for.
fn outcome(view: &FtaRequestView, status: Status, max_chars: usize) -> Vec<Value> {
    let given = |text: Option<&str>| {
        text.map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| one_line(t, max_chars))
    };
    match status {
        Status::Assigned => vec![colored(
            &match given(view.assigned_fta.as_deref()) {
                Some(fta) => format!("✓ FastTrack Architect: {fta}"),
                None => "✓ FastTrack Architect assigned".to_owned(),
            },
            "Good",
        )],
        Status::Declined => vec![colored(
            &match given(view.decline_reason.as_deref()) {
                Some(reason) => format!("Declined: {reason}"),
                None => "Declined".to_owned(),
            },
            "Attention",
        )],
        Status::InfoRequested => vec![
            colored(
                &match given(view.info_ask.as_deref()) {
                    Some(ask) => format!("Information requested: {ask}"),
                    None => "Information requested".to_owned(),
                },
                "Warning",
            ),
            subtle(
                "The requestor answers with Provide info; the request then goes back to the FTA leads.",
            ),
        ],
        Status::Withdrawn => vec![subtle("Withdrawn by the requestor.")],
        Status::Submitted | Status::InReview => vec![subtle("Waiting for an FTA lead.")],
        Status::Unknown => Vec::new(),
    }
}

fn colored(escaped: &str, color: &str) -> Value {
    json!({
        "type": "TextBlock",
        "text": escaped,
        "wrap": true,
        "weight": "Bolder",
        "color": color,
    })
}

fn facts(facts: &[(String, String)], max_chars: usize) -> Value {
    let lines: Vec<(String, String)> = facts
        .iter()
        .take(MAX_FACTS)
        .map(|(title, value)| {
            (
                one_line(title, MAX_FACT_TITLE_CHARS),
                fact_value(value, max_chars),
            )
        })
        .collect();
    let mut shown: Vec<(&str, &str)> = lines
        .iter()
        .map(|(t, v)| (t.as_str(), v.as_str()))
        .collect();
    let more = format!("and {} more", facts.len().saturating_sub(MAX_FACTS));
    if facts.len() > MAX_FACTS {
        shown.push(("…", more.as_str()));
    }
    fact_set(shown)
}

fn fact_value(value: &str, max_chars: usize) -> String {
    match one_line(value, max_chars) {
        empty if empty.is_empty() => "—".to_owned(),
        value => value,
    }
}

/// The last few transitions, oldest first, quiet: the badge already says where things stand.
fn history(lines: &[FtaAuditLine], cap: impl Fn(usize) -> usize) -> Vec<Value> {
    if lines.is_empty() {
        return Vec::new();
    }
    let mut out = vec![subheading("History")];
    let earlier = lines.len().saturating_sub(MAX_HISTORY_SHOWN);
    if earlier > 0 {
        out.push(subtle(&match earlier {
            1 => "1 earlier change".to_owned(),
            n => format!("{n} earlier changes"),
        }));
    }
    out.extend(lines.iter().skip(earlier).map(|line| {
        let who = person(&line.who, cap(MAX_NAME_CHARS));
        let action = one_line(&line.action, cap(MAX_HISTORY_CHARS));
        subtle(&match line.at.trim() {
            "" => format!("{who} {action}"),
            at => format!("{} · {who} {action}", one_line(at, cap(MAX_AT_CHARS))),
        })
    }));
    out
}

fn lead_actions(data: &Value) -> Vec<Value> {
    vec![
        show_card(
            "Assign FTA",
            vec![
                TextInput::new(
                    INPUT_FTA,
                    "FastTrack Architect (email or UPN)",
                    MAX_FTA_CHARS,
                )
                .placeholder("architect@contoso.com")
                .email()
                .required("Enter the architect's email address or UPN.")
                .build("", 1),
                subtle("The architect joins the engagement roster and the requestor is emailed."),
            ],
            with_style(
                execute_action("Assign", VERB_FTA_ASSIGN, data.clone()),
                "positive",
            ),
        ),
        show_card(
            "Decline",
            vec![
                TextInput::new(INPUT_REASON, "Reason (required)", MAX_REASON_CHARS)
                    .placeholder("e.g. The customer is below 40% of the sales stage")
                    .multiline()
                    .required("Say why the request is declined.")
                    .build("", 1),
                subtle("The requestor is emailed the reason."),
            ],
            with_style(
                execute_action("Decline request", VERB_FTA_DECLINE, data.clone()),
                "destructive",
            ),
        ),
        show_card(
            "Request info",
            vec![
                TextInput::new(INPUT_ASK, "What should the requestor add?", MAX_ASK_CHARS)
                    .placeholder("e.g. The compelling event's date")
                    .multiline()
                    .required("Say what information you need.")
                    .build("", 1),
            ],
            execute_action("Send to requestor", VERB_FTA_INFO, data.clone()),
        ),
    ]
}

/// Behind a sub-card: there is no confirm dialog in Teams, and a withdrawal cannot be undone.
fn withdraw_action(data: &Value) -> Value {
    show_card(
        "Withdraw",
        vec![text(
            "Withdraw this request? The FTA leads see it as withdrawn; a new request can be submitted later.",
        )],
        without_inputs(with_style(
            execute_action("Withdraw request", VERB_FTA_WITHDRAW, data.clone()),
            "destructive",
        )),
    )
}

fn provide_info_action(ask: Option<&str>, data: &Value, max_chars: usize) -> Value {
    let mut body = Vec::new();
    if let Some(ask) = ask.map(str::trim).filter(|a| !a.is_empty()) {
        body.push(text(&format!(
            "The FTA lead asked: {}",
            one_line(ask, max_chars)
        )));
    }
    body.push(
        TextInput::new(INPUT_ANSWER, "Your answer", MAX_ANSWER_CHARS)
            .multiline()
            .required("Write your answer.")
            .build("", 1),
    );
    show_card(
        "Provide info",
        body,
        with_style(
            execute_action("Send answer", VERB_FTA_PROVIDE_INFO, data.clone()),
            "positive",
        ),
    )
}

/// A button that unfolds `body` with its confirm button. The inner card needs no `version` or
/// `$schema`; its inputs are the only ones the confirm collects, as the status card has none.
fn show_card(title: &str, body: Vec<Value>, confirm: Value) -> Value {
    json!({
        "type": "Action.ShowCard",
        "title": title,
        "card": { "type": "AdaptiveCard", "body": body, "actions": [confirm] },
    })
}

fn with_style(mut action: Value, style: &str) -> Value {
    if let Some(map) = action.as_object_mut() {
        map.insert("style".into(), style.into());
    }
    action
}

/// Withdraw and Refresh must go through whatever state the inputs are in; the fallback submit
/// gets the same so both paths behave alike.
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

// ---- the leads' notice and the list ----

/// Posted to the leads channel: "New FTA request #42 for Contoso from Dana", the facts that decide
/// it, and Open request (which returns the lead's view of the status card).
pub fn fta_lead_notice_card(view: &FtaRequestView) -> Value {
    fit_to_budget(|divisor| lead_notice(view, divisor))
}

fn lead_notice(view: &FtaRequestView, divisor: usize) -> Value {
    let cap = |max: usize| (max / divisor).max(1);
    let customer = customer_name(&view.customer, cap(MAX_CUSTOMER_CHARS));
    let title = match view.requestor.trim() {
        "" => format!("New FTA request #{} for {customer}", view.id),
        _ => format!(
            "New FTA request #{} for {customer} from {}",
            view.id,
            person(&view.requestor, cap(MAX_NAME_CHARS))
        ),
    };
    let mut body = vec![heading(&title)];
    if !view.submitted_at.trim().is_empty() {
        body.push(subtle(&one_line(&view.submitted_at, cap(MAX_AT_CHARS))));
    }
    let key: Vec<(String, String)> = key_facts(&view.facts)
        .into_iter()
        .map(|(title, value)| {
            (
                one_line(title, MAX_FACT_TITLE_CHARS),
                fact_value(value, cap(MAX_KEY_FACT_CHARS)),
            )
        })
        .collect();
    if !key.is_empty() {
        body.push(fact_set(key.iter().map(|(t, v)| (t.as_str(), v.as_str()))));
    }
    let open = with_style(
        execute_action(
            "Open request",
            VERB_FTA_VIEW,
            json!({ "requestId": view.id }),
        ),
        "positive",
    );
    adaptive_card(body, vec![without_inputs(open)])
}

/// The facts named in [`KEY_FACTS`], or the first few when the titles are worded differently.
fn key_facts(facts: &[(String, String)]) -> Vec<(&str, &str)> {
    let named: Vec<(&str, &str)> = facts
        .iter()
        .filter(|(title, _)| {
            KEY_FACTS
                .iter()
                .any(|key| title.trim().eq_ignore_ascii_case(key))
        })
        .map(|(t, v)| (t.as_str(), v.as_str()))
        .collect();
    if !named.is_empty() {
        return named;
    }
    facts
        .iter()
        .take(KEY_FACTS.len())
        .map(|(t, v)| (t.as_str(), v.as_str()))
        .collect()
}

/// `fta` / `fta list`: a row per request (number, customer, status, age, FTA), the first
/// [`MAX_LIST_ROWS`] of `rows` in the order given, then how many more.
pub fn fta_list_card(title: &str, rows: &[FtaRequestView]) -> Value {
    fit_to_budget(|divisor| list(title, rows, divisor))
}

fn list(title: &str, rows: &[FtaRequestView], divisor: usize) -> Value {
    let cap = |max: usize| (max / divisor).max(1);
    let title = match title.trim() {
        "" => "FTA requests".to_owned(),
        t => one_line(t, cap(MAX_CUSTOMER_CHARS)),
    };
    let mut body = vec![heading(&title)];
    if rows.is_empty() {
        body.push(subtle("No FTA requests."));
    }
    body.extend(
        rows.iter()
            .take(MAX_LIST_ROWS)
            .map(|row| list_row(row, cap)),
    );
    if rows.len() > MAX_LIST_ROWS {
        body.push(subtle(&format!("+{} more", rows.len() - MAX_LIST_ROWS)));
    }
    adaptive_card(body, Vec::new())
}

fn list_row(row: &FtaRequestView, cap: impl Fn(usize) -> usize) -> Value {
    let status = Status::parse(&row.status);
    let mut details = Vec::new();
    if !row.submitted_at.trim().is_empty() {
        details.push(format!(
            "Submitted {}",
            one_line(&row.submitted_at, cap(MAX_AT_CHARS))
        ));
    }
    if !row.requestor.trim().is_empty() {
        details.push(format!(
            "by {}",
            person(&row.requestor, cap(MAX_NAME_CHARS))
        ));
    }
    if let Some(fta) = row.assigned_fta.as_deref().filter(|f| !f.trim().is_empty()) {
        details.push(format!("FTA: {}", one_line(fta, cap(MAX_NAME_CHARS))));
    }
    let mut left = vec![json!({
        "type": "TextBlock",
        "text": format!("#{} · {}", row.id, customer_name(&row.customer, cap(MAX_CUSTOMER_CHARS))),
        "weight": "Bolder",
        "wrap": true,
    })];
    if !details.is_empty() {
        left.push(subtle(&details.join(" · ")));
    }
    json!({
        "type": "ColumnSet",
        "separator": true,
        "spacing": "Small",
        "columns": [
            { "type": "Column", "width": "stretch", "items": left },
            {
                "type": "Column",
                "width": "auto",
                "verticalContentAlignment": "Center",
                "items": [{
                    "type": "TextBlock",
                    "text": status_label(status, &row.status_label),
                    "color": status.text_color(),
                    "weight": "Bolder",
                    "wrap": true,
                }],
            },
        ],
    })
}

// ---- shared text ----

fn customer_name(customer: &str, max_chars: usize) -> String {
    match customer.trim() {
        "" => "the customer".to_owned(),
        name => one_line(name, max_chars),
    }
}

fn person(name: &str, max_chars: usize) -> String {
    match name.trim() {
        "" => "someone".to_owned(),
        name => one_line(name, max_chars),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use crate::cards::engagement::hostile::{
        CUSTOMER, NAME, assert_json_clean, assert_no_injection,
    };
    use crate::cards::test_support::{assert_card_ok, execute_actions, texts};

    const STATUSES: [&str; 7] = [
        "submitted",
        "in_review",
        "info_requested",
        "assigned",
        "declined",
        "withdrawn",
        "archived",
    ];
    const OPEN: [&str; 3] = ["submitted", "in_review", "info_requested"];
    const VIEWERS: [FtaViewer; 4] = [
        FtaViewer::Everyone,
        FtaViewer::Lead,
        FtaViewer::Requestor,
        FtaViewer::LeadAndRequestor,
    ];
    const EVIL: &str = "[x](https://evil) <script>alert(1)</script>";

    fn ids(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("29:1AbCdEfGhIjKlMnOpQrStUvWxYz-user{i:03}"))
            .collect()
    }

    fn fact(title: &str, value: &str) -> (String, String) {
        (title.to_owned(), value.to_owned())
    }

    fn audit(at: &str, who: &str, action: &str) -> FtaAuditLine {
        FtaAuditLine {
            at: at.into(),
            who: who.into(),
            action: action.into(),
        }
    }

    fn view(status: &str) -> FtaRequestView {
        FtaRequestView {
            id: 42,
            version: 7,
            engagement_id: 5,
            customer: "Contoso Ltd".into(),
            status: status.into(),
            status_label: String::new(),
            requestor: "Dana Smith".into(),
            submitted_at: "3 Mar 2025 14:00".into(),
            facts: vec![
                fact("TPID", "1234567"),
                fact("Tenant", "contoso.onmicrosoft.com"),
                fact("Partner", "Fabrikam Consulting"),
                fact("Total users", "5000"),
                fact("Request type", "SOW Review or ECIF Related Request"),
                fact("Sales stage", "60%"),
                fact(
                    "Compelling event",
                    "Signed E5 to retire on-premises Exchange by June",
                ),
                fact("Segment", "Enterprise"),
                fact("Entitlements", "Microsoft 365, EMS"),
                fact("Instructions", ""),
            ],
            assigned_fta: (status == "assigned").then(|| "Ada Fta".to_owned()),
            decline_reason: (status == "declined").then(|| "Below 40% of the sales stage".into()),
            info_ask: (status == "info_requested")
                .then(|| "When does the E5 agreement start?".into()),
            history: vec![audit("3 Mar 14:00", "Dana Smith", "submitted")],
        }
    }

    fn hostile(status: &str) -> FtaRequestView {
        FtaRequestView {
            customer: CUSTOMER.into(),
            status_label: EVIL.into(),
            requestor: NAME.into(),
            submitted_at: EVIL.into(),
            facts: vec![
                fact(EVIL, EVIL),
                fact("Partner", NAME),
                fact("Compelling event", &format!("{EVIL}\n- [y](https://evil)")),
            ],
            assigned_fta: Some(NAME.into()),
            decline_reason: Some(EVIL.into()),
            info_ask: Some(EVIL.into()),
            history: vec![audit(EVIL, NAME, EVIL); 8],
            ..view(status)
        }
    }

    /// Characters that JSON escaping doubles, or that take four bytes, at sizes far past the caps.
    fn huge(status: &str) -> FtaRequestView {
        let big = |c: &str| c.repeat(20_000);
        FtaRequestView {
            customer: big("\\"),
            status_label: big("\""),
            requestor: big("\\"),
            submitted_at: big("\""),
            facts: vec![(big("\\"), big("\"")); 40],
            assigned_fta: Some(big("\\")),
            decline_reason: Some(big("😀")),
            info_ask: Some(big("\\")),
            history: vec![audit(&big("\\"), &big("\""), &big("\\")); 100],
            ..view(status)
        }
    }

    fn verbs(card: &Value) -> Vec<String> {
        execute_actions(card)
            .iter()
            .map(|a| a["verb"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The verbs a viewer can press, leaving out the refresh action.
    fn button_verbs(card: &Value) -> Vec<String> {
        card.get("actions").map(verbs).unwrap_or_default()
    }

    fn show_card_titled<'c>(card: &'c Value, title: &str) -> &'c Value {
        card["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["type"] == "Action.ShowCard" && a["title"] == title)
            .unwrap_or_else(|| panic!("no {title} in {card:#}"))
    }

    #[test]
    fn every_status_card_is_valid_for_every_viewer_realistic_hostile_and_huge() {
        for status in STATUSES {
            for viewer in VIEWERS {
                for n in [0, 2, 60, 61, 500] {
                    let ids = ids(n);
                    assert_card_ok(&fta_status_card(&view(status), viewer, &ids));
                    let card = fta_status_card(&hostile(status), viewer, &ids);
                    assert_card_ok(&card);
                    assert_json_clean(&card, &[]);
                    assert_card_ok(&fta_status_card(&huge(status), viewer, &ids));
                }
            }
        }
    }

    #[test]
    fn hostile_text_stays_text() {
        let card = fta_status_card(&hostile("declined"), FtaViewer::Everyone, &[]);
        let shown = texts(&card);
        assert!(
            shown
                .iter()
                .any(|t| t.contains("Contoso \u{2039}script\u{203a}alert(1)"))
        );
        assert!(
            shown
                .iter()
                .any(|t| t.starts_with("Declined: [x]\u{200b}(https:\u{200b}//evil)"))
        );
        let card = fta_status_card(&hostile("info_requested"), FtaViewer::Requestor, &ids(1));
        assert_json_clean(&card, &[]);
        assert_no_injection(&fta_lead_notice_card(&hostile("submitted")), &[]);
        assert_json_clean(&fta_lead_notice_card(&hostile("submitted")), &[]);
        assert_json_clean(&fta_list_card(EVIL, &[hostile("assigned")]), &[]);
    }

    #[test]
    fn open_requests_refresh_for_the_named_users() {
        for status in OPEN {
            for viewer in VIEWERS {
                let card = fta_status_card(&view(status), viewer, &ids(3));
                let refresh = &card["refresh"];
                assert_eq!(refresh["userIds"], json!(ids(3)), "{status} {viewer:?}");
                assert_eq!(refresh["action"]["type"], "Action.Execute");
                assert_eq!(refresh["action"]["verb"], VERB_FTA_VIEW);
                assert_eq!(
                    refresh["action"]["data"],
                    json!({"requestId": 42, "version": 7})
                );
                assert!(button_verbs(&card).contains(&VERB_FTA_VIEW.to_owned()));

                let sixty = fta_status_card(&view(status), viewer, &ids(60));
                assert_eq!(sixty["refresh"]["userIds"].as_array().unwrap().len(), 60);
            }
        }
    }

    #[test]
    fn past_sixty_users_refresh_is_manual_with_a_button() {
        for status in OPEN {
            for n in [61, 500] {
                let card = fta_status_card(&view(status), FtaViewer::Everyone, &ids(n));
                assert_eq!(card["refresh"]["userIds"], json!([]), "{status}");
                assert_eq!(card["refresh"]["action"]["verb"], VERB_FTA_VIEW);
                let refresh_button = card["actions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|a| a["title"] == "Refresh")
                    .unwrap();
                assert_eq!(refresh_button["verb"], VERB_FTA_VIEW);
                assert_eq!(refresh_button["associatedInputs"], "none");
                assert!(
                    texts(&card)
                        .iter()
                        .any(|t| t.contains("press Refresh to see the actions"))
                );
            }
            let card = fta_status_card(&view(status), FtaViewer::Everyone, &ids(60));
            assert!(!texts(&card).iter().any(|t| t.contains("press Refresh")));
        }
    }

    #[test]
    fn refresh_ids_are_deduplicated_and_cleaned() {
        let mut given = ids(60);
        given.extend(ids(60));
        given.extend([
            "  ".to_owned(),
            String::new(),
            "29:a b".into(),
            "x".repeat(500),
        ]);
        given.push(" 29:1AbCdEfGhIjKlMnOpQrStUvWxYz-user000 ".into());
        let card = fta_status_card(&view("submitted"), FtaViewer::Everyone, &given);
        assert_eq!(card["refresh"]["userIds"], json!(ids(60)));
    }

    #[test]
    fn no_user_ids_means_no_refresh_but_the_button_stays() {
        let card = fta_status_card(&view("submitted"), FtaViewer::Everyone, &[]);
        assert!(card.get("refresh").is_none());
        assert_eq!(button_verbs(&card), [VERB_FTA_VIEW]);
    }

    #[test]
    fn closed_requests_have_no_refresh_and_no_buttons() {
        for status in ["assigned", "declined", "withdrawn", "archived"] {
            for viewer in VIEWERS {
                for n in [0, 3, 61] {
                    let card = fta_status_card(&view(status), viewer, &ids(n));
                    assert!(card.get("refresh").is_none(), "{status} {viewer:?}");
                    assert!(card.get("actions").is_none(), "{status} {viewer:?}");
                    assert!(execute_actions(&card).is_empty());
                }
            }
        }
    }

    #[test]
    fn everyone_sees_only_refresh() {
        for status in OPEN {
            let card = fta_status_card(&view(status), FtaViewer::Everyone, &ids(3));
            assert_eq!(button_verbs(&card), [VERB_FTA_VIEW], "{status}");
            assert_eq!(card["actions"].as_array().unwrap().len(), 1);
        }
    }

    #[test]
    fn lead_buttons_only_for_leads_while_with_the_leads() {
        let lead_verbs = [VERB_FTA_ASSIGN, VERB_FTA_DECLINE, VERB_FTA_INFO];
        for status in STATUSES {
            for viewer in VIEWERS {
                let card = fta_status_card(&view(status), viewer, &ids(3));
                let verbs = button_verbs(&card);
                let expected = matches!(viewer, FtaViewer::Lead | FtaViewer::LeadAndRequestor)
                    && matches!(status, "submitted" | "in_review");
                for verb in lead_verbs {
                    assert_eq!(
                        verbs.contains(&verb.to_owned()),
                        expected,
                        "{verb} for {viewer:?} on {status}"
                    );
                }
            }
        }
        let card = fta_status_card(&view("in_review"), FtaViewer::Lead, &ids(3));
        let titles: Vec<&str> = card["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["title"].as_str().unwrap())
            .collect();
        assert_eq!(titles, ["Assign FTA", "Decline", "Request info", "Refresh"]);
    }

    #[test]
    fn withdraw_only_for_the_requestor_and_never_after_assignment() {
        for status in STATUSES {
            for viewer in VIEWERS {
                let card = fta_status_card(&view(status), viewer, &ids(3));
                let expected = matches!(viewer, FtaViewer::Requestor | FtaViewer::LeadAndRequestor)
                    && OPEN.contains(&status);
                assert_eq!(
                    button_verbs(&card).contains(&VERB_FTA_WITHDRAW.to_owned()),
                    expected,
                    "{viewer:?} on {status}"
                );
            }
        }
        let card = fta_status_card(&view("submitted"), FtaViewer::Requestor, &ids(3));
        let withdraw = show_card_titled(&card, "Withdraw");
        let confirm = &withdraw["card"]["actions"][0];
        assert_eq!(confirm["verb"], VERB_FTA_WITHDRAW);
        assert_eq!(confirm["style"], "destructive");
        assert_eq!(confirm["associatedInputs"], "none");
    }

    #[test]
    fn provide_info_only_for_the_requestor_when_asked() {
        for status in STATUSES {
            for viewer in VIEWERS {
                let card = fta_status_card(&view(status), viewer, &ids(3));
                let expected = matches!(viewer, FtaViewer::Requestor | FtaViewer::LeadAndRequestor)
                    && status == "info_requested";
                assert_eq!(
                    button_verbs(&card).contains(&VERB_FTA_PROVIDE_INFO.to_owned()),
                    expected,
                    "{viewer:?} on {status}"
                );
            }
        }
        let card = fta_status_card(
            &view("info_requested"),
            FtaViewer::LeadAndRequestor,
            &ids(3),
        );
        let titles: Vec<&str> = card["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["title"].as_str().unwrap())
            .collect();
        assert_eq!(titles, ["Withdraw", "Provide info", "Refresh"]);
        let inner = &show_card_titled(&card, "Provide info")["card"];
        assert_eq!(
            inner["body"][0]["text"],
            "The FTA lead asked: When does the E5 agreement start?"
        );
        assert_eq!(inner["body"][1]["id"], INPUT_ANSWER);
        assert_eq!(inner["body"][1]["isRequired"], true);
        assert_eq!(inner["actions"][0]["verb"], VERB_FTA_PROVIDE_INFO);
    }

    #[test]
    fn every_execute_carries_request_id_and_version() {
        for status in STATUSES {
            for viewer in VIEWERS {
                for n in [0, 3, 61] {
                    let card = fta_status_card(&view(status), viewer, &ids(n));
                    for action in execute_actions(&card) {
                        for data in [&action["data"], &action["fallback"]["data"]] {
                            assert_eq!(data["requestId"], 42, "{action}");
                            assert_eq!(data["version"], 7, "{action}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn lead_show_cards_hold_one_required_input_and_a_confirm() {
        let card = fta_status_card(&view("submitted"), FtaViewer::Lead, &ids(3));
        for (title, input_id, verb) in [
            ("Assign FTA", INPUT_FTA, VERB_FTA_ASSIGN),
            ("Decline", INPUT_REASON, VERB_FTA_DECLINE),
            ("Request info", INPUT_ASK, VERB_FTA_INFO),
        ] {
            let inner = &show_card_titled(&card, title)["card"];
            assert_eq!(inner["type"], "AdaptiveCard");
            assert!(inner.get("version").is_none());
            assert!(inner.get("$schema").is_none());
            let input = &inner["body"][0];
            assert_eq!(input["type"], "Input.Text");
            assert_eq!(input["id"], input_id);
            assert_eq!(input["isRequired"], true);
            assert!(input.get("value").is_none());
            let confirm = &inner["actions"][0];
            assert_eq!(confirm["type"], "Action.Execute");
            assert_eq!(confirm["verb"], verb);
            assert_eq!(confirm["fallback"]["data"]["verb"], verb);
            assert_eq!(confirm["data"], json!({"requestId": 42, "version": 7}));
        }
        let assign = &show_card_titled(&card, "Assign FTA")["card"]["body"][0];
        assert_eq!(assign["placeholder"], "architect@contoso.com");
        assert_eq!(assign["style"], "email");
        let decline = &show_card_titled(&card, "Decline")["card"]["body"][0];
        assert_eq!(decline["label"], "Reason (required)");
    }

    #[test]
    fn status_card_shows_badge_facts_outcome_and_history() {
        let badge = |card: &Value| card["body"][1]["columns"][0].clone();
        for (status, style, label) in [
            ("submitted", "accent", "Submitted"),
            ("in_review", "accent", "In review"),
            ("info_requested", "warning", "Info requested"),
            ("assigned", "good", "FTA assigned"),
            ("declined", "attention", "Declined"),
            ("withdrawn", "emphasis", "Withdrawn"),
            ("archived", "emphasis", "Unknown"),
        ] {
            let card = fta_status_card(&view(status), FtaViewer::Everyone, &[]);
            assert_eq!(badge(&card)["style"], style, "{status}");
            assert_eq!(badge(&card)["items"][0]["text"], label, "{status}");
        }
        let labelled = FtaRequestView {
            status_label: "Awaiting FTA lead".into(),
            ..view("submitted")
        };
        let card = fta_status_card(&labelled, FtaViewer::Everyone, &[]);
        assert_eq!(badge(&card)["items"][0]["text"], "Awaiting FTA lead");

        let shown = texts(&fta_status_card(
            &view("assigned"),
            FtaViewer::Everyone,
            &[],
        ));
        for needle in [
            "FastTrack Architect request #42: Contoso Ltd",
            "Requested by Dana Smith · 3 Mar 2025 14:00",
            "✓ FastTrack Architect: Ada Fta",
            "TPID",
            "1234567",
            "SOW Review or ECIF Related Request",
            "—",
            "History",
            "3 Mar 14:00 · Dana Smith submitted",
        ] {
            assert!(shown.iter().any(|t| t == needle), "{needle} in {shown:?}");
        }
        let shown = texts(&fta_status_card(
            &view("declined"),
            FtaViewer::Everyone,
            &[],
        ));
        assert!(shown.contains(&"Declined: Below 40% of the sales stage".to_owned()));
        let shown = texts(&fta_status_card(
            &view("info_requested"),
            FtaViewer::Everyone,
            &[],
        ));
        assert!(
            shown.contains(&"Information requested: When does the E5 agreement start?".to_owned())
        );
    }

    #[test]
    fn history_shows_the_last_few() {
        let v = FtaRequestView {
            history: (0..8)
                .map(|i| audit(&format!("day {i}"), "Lee", &format!("step {i}")))
                .collect(),
            ..view("in_review")
        };
        let shown = texts(&fta_status_card(&v, FtaViewer::Everyone, &[]));
        assert!(shown.contains(&"3 earlier changes".to_owned()));
        assert!(!shown.iter().any(|t| t.contains("step 2")));
        let first = shown
            .iter()
            .position(|t| t == "day 3 · Lee step 3")
            .unwrap();
        let last = shown
            .iter()
            .position(|t| t == "day 7 · Lee step 7")
            .unwrap();
        assert!(first < last);
        let none = FtaRequestView {
            history: vec![],
            ..view("in_review")
        };
        assert!(
            !texts(&fta_status_card(&none, FtaViewer::Everyone, &[]))
                .contains(&"History".to_owned())
        );
    }

    // ---- form ----

    fn values() -> FtaFormValues {
        FtaFormValues {
            tpid: "1234567".into(),
            tenant: "contoso.onmicrosoft.com".into(),
            partner: "none".into(),
            users: "5000".into(),
            request_type: "non-ecif".into(),
            stage: "60".into(),
            event: "Signed E5 to retire on-premises Exchange by June.\nBoard approved.".into(),
            segment: "smc-c".into(),
            entitlements: "m365,ems".into(),
            notes: "Customer prefers mornings.".into(),
        }
    }

    fn form_inputs(card: &Value) -> Vec<&Value> {
        card["body"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"].as_str().unwrap().starts_with("Input."))
            .collect()
    }

    /// What Teams sends for the form: each input's value as a string, merged with the data.
    fn submitted(card: &Value) -> Value {
        let mut data = execute_actions(card)[0]["data"]
            .as_object()
            .unwrap()
            .clone();
        for input in form_inputs(card) {
            let value = match &input["value"] {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Null => String::new(),
                other => panic!("{other}"),
            };
            data.insert(input["id"].as_str().unwrap().into(), value.into());
        }
        Value::Object(data)
    }

    #[test]
    fn form_has_the_inputs_with_exact_ids() {
        let card = fta_form_card(5, "Contoso Ltd", &FtaFormValues::default(), &[]);
        assert_card_ok(&card);
        let inputs = form_inputs(&card);
        let ids: Vec<&str> = inputs.iter().map(|i| i["id"].as_str().unwrap()).collect();
        assert_eq!(
            ids,
            [
                "tpid",
                "tenant",
                "partner",
                "users",
                "type",
                "stage",
                "event",
                "segment",
                "entitlements",
                "notes"
            ]
        );
        let by_id = |id: &str| *inputs.iter().find(|i| i["id"] == id).unwrap();
        let kind = |id: &str| by_id(id)["type"].as_str().unwrap().to_owned();
        for id in ["tpid", "tenant", "partner", "users", "event", "notes"] {
            assert_eq!(kind(id), "Input.Text", "{id}");
        }
        assert_eq!(kind("stage"), "Input.Number");
        let stage = by_id("stage");
        assert_eq!(
            (stage["min"].clone(), stage["max"].clone()),
            (json!(0), json!(100))
        );
        assert_eq!(stage["label"], "Sales stage (%)");
        assert_eq!(stage["placeholder"], "at least 40%");

        let request_type = by_id("type");
        assert_eq!(request_type["type"], "Input.ChoiceSet");
        assert_eq!(request_type["style"], "compact");
        let titles: Vec<&str> = request_type["choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["title"].as_str().unwrap())
            .collect();
        assert_eq!(
            titles,
            [
                "SOW Review or ECIF Related Request",
                "Non-ECIF Related Request",
                "Migration Exception Request"
            ]
        );
        assert_eq!(by_id("segment")["style"], "compact");
        let values: Vec<&str> = by_id("segment")["choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["value"].as_str().unwrap())
            .collect();
        assert_eq!(values, ["enterprise", "smc-c"]);
        let entitlements = by_id("entitlements");
        assert_eq!(entitlements["isMultiSelect"], true);
        let values: Vec<&str> = entitlements["choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["value"].as_str().unwrap())
            .collect();
        assert_eq!(values, ["m365", "o365", "ems"]);

        assert_eq!(
            by_id("event")["label"],
            "Compelling event: the customer's commitment to Office 365 or EMS"
        );
        assert_eq!(by_id("event")["isMultiline"], true);
        assert_eq!(
            by_id("notes")["label"],
            "Additional instructions for the FTA (optional)"
        );
        assert_eq!(by_id("notes")["isMultiline"], true);
        assert!(by_id("notes").get("isRequired").is_none());
        for id in [
            "tpid",
            "tenant",
            "partner",
            "users",
            "type",
            "stage",
            "event",
            "segment",
            "entitlements",
        ] {
            assert_eq!(by_id(id)["isRequired"], true, "{id}");
        }

        let actions = execute_actions(&card);
        assert_eq!(actions.len(), 1);
        assert_eq!(actions[0]["verb"], VERB_FTA_SUBMIT);
        assert_eq!(actions[0]["data"], json!({"engagementId": 5}));
        assert!(!texts(&card).iter().any(|t| t.starts_with('⚠')));
    }

    #[test]
    fn errors_show_at_their_fields_and_the_form_keeps_what_was_typed() {
        let errors = vec![
            (
                "stage".to_owned(),
                "Sales stage must be at least 40%.".to_owned(),
            ),
            (
                "tpid".to_owned(),
                "TPID must be a positive whole number.".to_owned(),
            ),
            ("".to_owned(), "This engagement is closed.".to_owned()),
        ];
        let typed = FtaFormValues {
            tpid: "12ab".into(),
            stage: "30".into(),
            ..values()
        };
        let card = fta_form_card(5, "Contoso Ltd", &typed, &errors);
        assert_card_ok(&card);
        let body = card["body"].as_array().unwrap();
        let position = |text: &str| body.iter().position(|e| e["text"] == text).unwrap();
        let input = |id: &str| body.iter().position(|e| e["id"] == id).unwrap();
        let summary = position("⚠ Fix 2 fields: TPID and Sales stage");
        let general = position("⚠ This engagement is closed.");
        assert!(summary < input("tpid") && general < input("tpid"));
        assert_eq!(
            position("⚠ TPID must be a positive whole number."),
            input("tpid") + 1
        );
        assert_eq!(
            position("⚠ Sales stage must be at least 40%."),
            input("stage") + 1
        );
        assert_eq!(body[input("stage") + 1]["color"], "Attention");

        assert_eq!(body[input("tpid")]["value"], "12ab");
        assert_eq!(body[input("stage")]["value"], 30);
        assert_eq!(body[input("type")]["value"], "non-ecif");
        assert_eq!(body[input("segment")]["value"], "smc-c");
        assert_eq!(body[input("entitlements")]["value"], "m365,ems");
        assert_eq!(body[input("event")]["value"], typed.event);

        let one = fta_form_card(5, "C", &typed, &errors[..1]);
        assert!(texts(&one).contains(&"⚠ Fix 1 field: Sales stage".to_owned()));
        let twice = vec![
            ("tpid".to_owned(), "Too long.".to_owned()),
            ("tpid".to_owned(), "Not a number.".to_owned()),
        ];
        let shown = texts(&fta_form_card(5, "C", &typed, &twice));
        assert!(shown.contains(&"⚠ Fix 1 field: TPID".to_owned()));
        assert!(shown.contains(&"⚠ Too long. Not a number.".to_owned()));
    }

    #[test]
    fn prefill_keeps_only_what_the_inputs_can_hold() {
        let odd = FtaFormValues {
            request_type: " ECIF ".into(),
            segment: "smb".into(),
            entitlements: "EMS, bogus , m365,ems".into(),
            stage: "45 %".into(),
            tpid: format!("  {}\u{0}  ", "9".repeat(100)),
            partner: "line\r\nbreak".into(),
            ..FtaFormValues::default()
        };
        let card = fta_form_card(5, "C", &odd, &[]);
        let inputs = form_inputs(&card);
        let by_id = |id: &str| *inputs.iter().find(|i| i["id"] == id).unwrap();
        assert_eq!(by_id("type")["value"], "ecif");
        assert!(by_id("segment").get("value").is_none());
        assert_eq!(by_id("entitlements")["value"], "m365,ems");
        assert_eq!(by_id("stage")["value"], 45);
        assert_eq!(by_id("tpid")["value"], "9".repeat(MAX_TPID_CHARS));
        assert_eq!(by_id("partner")["value"], "line break");
        for stage in ["abc", "", "NaN", "inf"] {
            let card = fta_form_card(
                5,
                "C",
                &FtaFormValues {
                    stage: stage.into(),
                    ..values()
                },
                &[],
            );
            assert_card_ok(&card);
            assert!(form_inputs(&card)[5].get("value").is_none(), "{stage}");
        }
        let card = fta_form_card(
            5,
            "C",
            &FtaFormValues {
                stage: "62.5".into(),
                ..values()
            },
            &[],
        );
        assert_eq!(form_inputs(&card)[5]["value"], 62.5);
        assert!(
            form_inputs(&fta_form_card(5, "C", &FtaFormValues::default(), &[]))
                .iter()
                .all(|i| i.get("value").is_none())
        );
    }

    #[test]
    fn form_round_trips_through_values() {
        let card = fta_form_card(5, "Contoso", &values(), &[]);
        let data = submitted(&card);
        assert_eq!(
            data["verb"],
            Value::Null,
            "the Execute path carries no verb in data"
        );
        assert_eq!(fta_form_values(&data), values());
        // The Action.Submit fallback: data plus the verb, same values.
        let mut fallback = data.as_object().unwrap().clone();
        fallback.insert("verb".into(), VERB_FTA_SUBMIT.into());
        assert_eq!(fta_form_values(&Value::Object(fallback)), values());
        let card = fta_form_card(5, "Contoso", &FtaFormValues::default(), &[]);
        assert_eq!(fta_form_values(&submitted(&card)), FtaFormValues::default());
    }

    #[test]
    fn form_values_are_read_leniently() {
        let read = fta_form_values(&json!({
            "tpid": 1234567,
            "tenant": "  contoso.onmicrosoft.com ",
            "partner": null,
            "users": ["5000"],
            "type": {"value": "ecif"},
            "stage": 60.5,
            "event": true,
            "entitlements": "m365,ems",
            "engagementId": 5,
        }));
        assert_eq!(
            read,
            FtaFormValues {
                tpid: "1234567".into(),
                tenant: "contoso.onmicrosoft.com".into(),
                stage: "60.5".into(),
                event: "true".into(),
                entitlements: "m365,ems".into(),
                ..FtaFormValues::default()
            }
        );
        assert_eq!(fta_form_values(&Value::Null), FtaFormValues::default());
        assert_eq!(fta_form_values(&json!("tpid")), FtaFormValues::default());
        assert_eq!(fta_form_values(&json!([1, 2])), FtaFormValues::default());
    }

    #[test]
    fn form_is_valid_realistic_hostile_and_huge() {
        let evil = FtaFormValues {
            tpid: EVIL.into(),
            tenant: EVIL.into(),
            partner: NAME.into(),
            users: EVIL.into(),
            request_type: EVIL.into(),
            stage: EVIL.into(),
            event: format!("{EVIL}\n{NAME}"),
            segment: EVIL.into(),
            entitlements: EVIL.into(),
            notes: EVIL.into(),
        };
        let big = |c: &str| c.repeat(50_000);
        let huge = FtaFormValues {
            tpid: big("\""),
            tenant: big("\\"),
            partner: big("😀"),
            users: big("\""),
            request_type: big("\""),
            stage: big("9"),
            event: big("\"\n"),
            segment: big("\\"),
            entitlements: big("m365,"),
            notes: big("\\"),
        };
        let hostile_errors: Vec<(String, String)> = FORM_FIELDS
            .iter()
            .map(|(id, _)| ((*id).to_owned(), EVIL.to_owned()))
            .chain([(EVIL.to_owned(), NAME.to_owned())])
            .collect();
        let huge_errors: Vec<(String, String)> = FORM_FIELDS
            .iter()
            .map(|(id, _)| ((*id).to_owned(), big("\\")))
            .chain((0..50).map(|_| (String::new(), big("\""))))
            .collect();
        for form in [values(), evil, huge, FtaFormValues::default()] {
            for customer in ["Contoso Ltd", CUSTOMER, &big("\\")] {
                for errors in [&[][..], &hostile_errors, &huge_errors] {
                    let card = fta_form_card(5, customer, &form, errors);
                    assert_card_ok(&card);
                    assert_no_injection(&card, &[]);
                }
            }
        }
    }

    // ---- notice and list ----

    #[test]
    fn lead_notice_names_the_request_and_opens_it() {
        let card = fta_lead_notice_card(&view("submitted"));
        assert_card_ok(&card);
        let shown = texts(&card);
        assert_eq!(
            card["body"][0]["text"],
            "New FTA request #42 for Contoso Ltd from Dana Smith"
        );
        for needle in [
            "Request type",
            "Total users",
            "5000",
            "Sales stage",
            "60%",
            "Compelling event",
            "Segment",
            "Entitlements",
        ] {
            assert!(shown.iter().any(|t| t == needle), "{needle} in {shown:?}");
        }
        assert!(!shown.iter().any(|t| t == "Tenant"));
        let actions = execute_actions(&card);
        assert_eq!(actions.len(), 1);
        assert_eq!(actions[0]["title"], "Open request");
        assert_eq!(actions[0]["verb"], VERB_FTA_VIEW);
        assert_eq!(actions[0]["data"], json!({"requestId": 42}));

        let anonymous = FtaRequestView {
            requestor: " ".into(),
            facts: vec![fact("Anzahl Benutzer", "5000")],
            ..view("submitted")
        };
        let card = fta_lead_notice_card(&anonymous);
        assert_eq!(
            card["body"][0]["text"],
            "New FTA request #42 for Contoso Ltd"
        );
        assert!(texts(&card).contains(&"Anzahl Benutzer".to_owned()));
        for v in [hostile("submitted"), huge("submitted")] {
            assert_card_ok(&fta_lead_notice_card(&v));
        }
    }

    #[test]
    fn list_shows_twenty_rows_then_a_count() {
        let rows: Vec<FtaRequestView> = (1..=25)
            .map(|i| FtaRequestView {
                id: i,
                ..view(STATUSES[i as usize % STATUSES.len()])
            })
            .collect();
        let card = fta_list_card("Open FTA requests", &rows);
        assert_card_ok(&card);
        assert!(execute_actions(&card).is_empty());
        let body = card["body"].as_array().unwrap();
        assert_eq!(body.iter().filter(|e| e["type"] == "ColumnSet").count(), 20);
        let shown = texts(&card);
        assert_eq!(shown[0], "Open FTA requests");
        assert!(shown.contains(&"+5 more".to_owned()));
        assert!(shown.contains(&"#1 · Contoso Ltd".to_owned()));
        assert!(!shown.contains(&"#21 · Contoso Ltd".to_owned()));
        assert!(
            shown.contains(&"Submitted 3 Mar 2025 14:00 · by Dana Smith · FTA: Ada Fta".to_owned())
        );
        assert!(shown.contains(&"Submitted 3 Mar 2025 14:00 · by Dana Smith".to_owned()));
        assert!(shown.contains(&"FTA assigned".to_owned()));

        let exactly = fta_list_card("x", &rows[..20]);
        assert!(!texts(&exactly).iter().any(|t| t.ends_with("more")));
        let empty = fta_list_card("  ", &[]);
        assert_card_ok(&empty);
        assert_eq!(texts(&empty), ["FTA requests", "No FTA requests."]);
        let big: Vec<FtaRequestView> = (0..100).map(|_| huge("assigned")).collect();
        assert_card_ok(&fta_list_card(&"\\".repeat(10_000), &big));
        let evil: Vec<FtaRequestView> = STATUSES.iter().map(|s| hostile(s)).collect();
        assert_card_ok(&fta_list_card(EVIL, &evil));
    }
}
