//! The Request FastTrack Architect workflow: the request's fields, the key-input rules checked at
//! submit, and the life of a request from submitted to assigned, declined or withdrawn. Wording from the
//! Request FastTrack Architect playbook page.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use super::engagement::Person;

/// The sales stage below which the playbook says not to request an FTA ("at least 40% in sales stage").
pub const MIN_SALES_STAGE: u8 = 40;
/// Key input: the compelling event, quoted to the requestor when it is missing.
pub const RULE_COMPELLING_EVENT: &str =
    "There must be a compelling event where the customer made a commitment to Office 365 or EMS.";
/// Key input: who FTAs are for, quoted when the segment or the entitlements do not qualify.
pub const RULE_SEGMENT_ENTITLEMENTS: &str = "FastTrack Architects are available for Enterprise and SMC-C customers who own Microsoft 365, Office 365 or EMS entitlements.";
pub const MAX_PARTNER_CHARS: usize = 200;
pub const MAX_EVENT_CHARS: usize = 2000;
pub const MAX_NOTES_CHARS: usize = 2000;
/// Also the cap for a decline reason, an information request and its answer, which end up on the same
/// card and in the same email as the request.
pub const MAX_REASON_CHARS: usize = 2000;

/// The three kinds of request the FTA Request site offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FtaRequestType {
    #[serde(rename = "ecif")]
    SowReviewOrEcif,
    #[serde(rename = "non-ecif")]
    NonEcif,
    #[serde(rename = "migration")]
    MigrationException,
}

impl FtaRequestType {
    pub const ALL: [FtaRequestType; 3] = [
        FtaRequestType::SowReviewOrEcif,
        FtaRequestType::NonEcif,
        FtaRequestType::MigrationException,
    ];

    /// The short word (`ecif`, `non-ecif`, `migration`) or the seed's full label, in any case.
    pub fn parse(s: &str) -> Option<FtaRequestType> {
        let s = normalise(s);
        FtaRequestType::ALL.into_iter().find(|t| {
            s == t.as_str()
                || s == t.label().to_ascii_lowercase()
                || t.aliases().contains(&s.as_str())
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FtaRequestType::SowReviewOrEcif => "ecif",
            FtaRequestType::NonEcif => "non-ecif",
            FtaRequestType::MigrationException => "migration",
        }
    }

    /// The seed's wording.
    pub fn label(self) -> &'static str {
        match self {
            FtaRequestType::SowReviewOrEcif => "SOW Review or ECIF Related Request",
            FtaRequestType::NonEcif => "Non-ECIF Related Request",
            FtaRequestType::MigrationException => "Migration Exception Request",
        }
    }

    /// What people type when they forget the exact word.
    fn aliases(self) -> &'static [&'static str] {
        match self {
            FtaRequestType::SowReviewOrEcif => &["sow", "sow review", "sow-review"],
            FtaRequestType::NonEcif => &["nonecif", "non_ecif", "non ecif"],
            FtaRequestType::MigrationException => &["migration exception", "migration-exception"],
        }
    }
}

/// The customer segments FTAs are available for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Segment {
    #[serde(rename = "enterprise")]
    Enterprise,
    #[serde(rename = "smc-c")]
    SmcC,
}

impl Segment {
    pub const ALL: [Segment; 2] = [Segment::Enterprise, Segment::SmcC];

    pub fn parse(s: &str) -> Option<Segment> {
        match normalise(s).as_str() {
            "enterprise" => Some(Segment::Enterprise),
            "smc-c"
            | "smcc"
            | "smc_c"
            | "smc c"
            | "small medium corporate customers"
            | "small medium corporate customers (smc-c)"
            | "small medium corporate (smc-c)" => Some(Segment::SmcC),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Segment::Enterprise => "enterprise",
            Segment::SmcC => "smc-c",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Segment::Enterprise => "Enterprise",
            Segment::SmcC => "SMC-C",
        }
    }
}

/// The entitlements that make a customer eligible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Entitlement {
    #[serde(rename = "m365")]
    M365,
    #[serde(rename = "o365")]
    O365,
    #[serde(rename = "ems")]
    Ems,
}

impl Entitlement {
    pub const ALL: [Entitlement; 3] = [Entitlement::M365, Entitlement::O365, Entitlement::Ems];

    pub fn parse(s: &str) -> Option<Entitlement> {
        match normalise(s).as_str() {
            "m365" | "microsoft 365" | "microsoft365" => Some(Entitlement::M365),
            "o365" | "office 365" | "office365" => Some(Entitlement::O365),
            "ems" | "enterprise mobility + security" | "enterprise mobility and security" => {
                Some(Entitlement::Ems)
            }
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Entitlement::M365 => "m365",
            Entitlement::O365 => "o365",
            Entitlement::Ems => "ems",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Entitlement::M365 => "Microsoft 365",
            Entitlement::O365 => "Office 365",
            Entitlement::Ems => "EMS",
        }
    }
}

/// Where a request is in its life. Stored and serialised as the snake_case word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FtaStatus {
    Submitted,
    InReview,
    Assigned,
    Declined,
    Withdrawn,
    InfoRequested,
}

impl FtaStatus {
    pub const ALL: [FtaStatus; 6] = [
        FtaStatus::Submitted,
        FtaStatus::InReview,
        FtaStatus::Assigned,
        FtaStatus::Declined,
        FtaStatus::Withdrawn,
        FtaStatus::InfoRequested,
    ];

    /// The stored word, or the label (`In review`, `in-review`), in any case.
    pub fn parse(s: &str) -> Option<FtaStatus> {
        let s = normalise(s).replace([' ', '-'], "_");
        FtaStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FtaStatus::Submitted => "submitted",
            FtaStatus::InReview => "in_review",
            FtaStatus::Assigned => "assigned",
            FtaStatus::Declined => "declined",
            FtaStatus::Withdrawn => "withdrawn",
            FtaStatus::InfoRequested => "info_requested",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            FtaStatus::Submitted => "Submitted",
            FtaStatus::InReview => "In review",
            FtaStatus::Assigned => "Assigned",
            FtaStatus::Declined => "Declined",
            FtaStatus::Withdrawn => "Withdrawn",
            FtaStatus::InfoRequested => "Info requested",
        }
    }

    /// Still waiting for someone to act: a lead, or the requestor when information was asked for.
    pub fn is_open(self) -> bool {
        !matches!(
            self,
            FtaStatus::Assigned | FtaStatus::Declined | FtaStatus::Withdrawn
        )
    }

    /// For sentences: "the request is already in review".
    fn in_words(self) -> &'static str {
        match self {
            FtaStatus::Submitted => "submitted",
            FtaStatus::InReview => "in review",
            FtaStatus::Assigned => "assigned",
            FtaStatus::Declined => "declined",
            FtaStatus::Withdrawn => "withdrawn",
            FtaStatus::InfoRequested => "waiting for information from the requestor",
        }
    }
}

impl fmt::Display for FtaStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the form or the inline command gave, as typed (strings; `None` = not given).
///
/// The serde names are the ids of the form card's inputs, so a submitted form deserialises straight into
/// it; other keys in the card data (`verb`, ids) are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FtaRequestInput {
    #[serde(deserialize_with = "lenient_text")]
    pub tpid: Option<String>,
    #[serde(deserialize_with = "lenient_text")]
    pub tenant: Option<String>,
    #[serde(deserialize_with = "lenient_text")]
    pub partner: Option<String>,
    #[serde(deserialize_with = "lenient_text")]
    pub users: Option<String>,
    #[serde(rename = "type", deserialize_with = "lenient_text")]
    pub request_type: Option<String>,
    #[serde(deserialize_with = "lenient_text")]
    pub stage: Option<String>,
    #[serde(deserialize_with = "lenient_text")]
    pub event: Option<String>,
    #[serde(deserialize_with = "lenient_text")]
    pub segment: Option<String>,
    /// Comma-separated, as a multi-select choice set submits it.
    #[serde(deserialize_with = "lenient_text")]
    pub entitlements: Option<String>,
    #[serde(deserialize_with = "lenient_text")]
    pub notes: Option<String>,
}

impl FtaRequestInput {
    pub fn get(&self, field: Field) -> Option<&str> {
        self.slot(field).as_deref()
    }

    pub fn set(&mut self, field: Field, value: Option<String>) {
        *self.slot_mut(field) = value;
    }

    fn slot(&self, field: Field) -> &Option<String> {
        match field {
            Field::Tpid => &self.tpid,
            Field::Tenant => &self.tenant,
            Field::Partner => &self.partner,
            Field::Users => &self.users,
            Field::RequestType => &self.request_type,
            Field::Stage => &self.stage,
            Field::Event => &self.event,
            Field::Segment => &self.segment,
            Field::Entitlements => &self.entitlements,
            Field::Notes => &self.notes,
        }
    }

    fn slot_mut(&mut self, field: Field) -> &mut Option<String> {
        match field {
            Field::Tpid => &mut self.tpid,
            Field::Tenant => &mut self.tenant,
            Field::Partner => &mut self.partner,
            Field::Users => &mut self.users,
            Field::RequestType => &mut self.request_type,
            Field::Stage => &mut self.stage,
            Field::Event => &mut self.event,
            Field::Segment => &mut self.segment,
            Field::Entitlements => &mut self.entitlements,
            Field::Notes => &mut self.notes,
        }
    }
}

/// Refills the form from a filed request, e.g. when the requestor answers a request for information.
impl From<&FtaRequestDetails> for FtaRequestInput {
    fn from(d: &FtaRequestDetails) -> FtaRequestInput {
        FtaRequestInput {
            tpid: Some(d.tpid.to_string()),
            tenant: Some(d.tenant.clone()),
            partner: Some(d.partner.clone()),
            users: Some(d.total_users.to_string()),
            request_type: Some(d.request_type.as_str().to_owned()),
            stage: Some(d.sales_stage.to_string()),
            event: Some(d.compelling_event.clone()),
            segment: Some(d.segment.as_str().to_owned()),
            entitlements: Some(
                d.entitlements
                    .iter()
                    .map(|e| e.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            notes: d.notes.clone(),
        }
    }
}

/// Card inputs arrive as strings, but a client may send a number for a number input; either is text to
/// validate, and `null` is "not given".
fn lenient_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Unsigned(u64),
        Signed(i64),
        Float(f64),
        Flag(bool),
    }
    Ok(Option::<Raw>::deserialize(d)?.map(|raw| match raw {
        Raw::Text(s) => s,
        Raw::Unsigned(n) => n.to_string(),
        Raw::Signed(n) => n.to_string(),
        Raw::Float(n) => n.to_string(),
        Raw::Flag(b) => b.to_string(),
    }))
}

/// A request that passed every rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FtaRequestDetails {
    pub tpid: u64,
    /// Lowercase domain or GUID.
    pub tenant: String,
    /// Free text; "none" when there is no partner.
    pub partner: String,
    pub total_users: u64,
    pub request_type: FtaRequestType,
    /// Percent, 40–100.
    pub sales_stage: u8,
    pub compelling_event: String,
    pub segment: Segment,
    /// At least one, without duplicates, in the order of [`Entitlement::ALL`].
    pub entitlements: Vec<Entitlement>,
    /// Additional instructions for the FTA.
    pub notes: Option<String>,
}

/// One field of the request form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Field {
    #[serde(rename = "tpid")]
    Tpid,
    #[serde(rename = "tenant")]
    Tenant,
    #[serde(rename = "partner")]
    Partner,
    #[serde(rename = "users")]
    Users,
    #[serde(rename = "type")]
    RequestType,
    #[serde(rename = "stage")]
    Stage,
    #[serde(rename = "event")]
    Event,
    #[serde(rename = "segment")]
    Segment,
    #[serde(rename = "entitlements")]
    Entitlements,
    #[serde(rename = "notes")]
    Notes,
}

impl Field {
    /// In the order of the form.
    pub const ALL: [Field; 10] = [
        Field::Tpid,
        Field::Tenant,
        Field::Partner,
        Field::Users,
        Field::RequestType,
        Field::Stage,
        Field::Event,
        Field::Segment,
        Field::Entitlements,
        Field::Notes,
    ];

    /// The form input's id, which is also the inline command's option key.
    pub fn input_id(self) -> &'static str {
        match self {
            Field::Tpid => "tpid",
            Field::Tenant => "tenant",
            Field::Partner => "partner",
            Field::Users => "users",
            Field::RequestType => "type",
            Field::Stage => "stage",
            Field::Event => "event",
            Field::Segment => "segment",
            Field::Entitlements => "entitlements",
            Field::Notes => "notes",
        }
    }

    /// The form's label, in the seed's words where it has them.
    pub fn label(self) -> &'static str {
        match self {
            Field::Tpid => "Top Parent Identification (TPID)",
            Field::Tenant => "Tenant",
            Field::Partner => "Partner",
            Field::Users => "Total Users",
            Field::RequestType => "Request type",
            Field::Stage => "Sales stage (%)",
            Field::Event => "Compelling event",
            Field::Segment => "Customer segment",
            Field::Entitlements => "Entitlements",
            Field::Notes => "Additional instructions for the FTA",
        }
    }

    /// Every field but the additional instructions must be given.
    pub fn is_required(self) -> bool {
        self != Field::Notes
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleViolation {
    pub field: Field,
    pub message: String,
}

impl RuleViolation {
    fn new(field: Field, message: impl Into<String>) -> RuleViolation {
        RuleViolation {
            field,
            message: message.into(),
        }
    }
}

impl fmt::Display for RuleViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The sales-stage rule, quoting what the request says.
pub fn sales_stage_rule(given: u8) -> String {
    format!(
        "The customer must be at least {MIN_SALES_STAGE}% in the sales stage; this request says {given}%."
    )
}

/// Checks every field and returns all violations at once, so the requestor fixes them in one go.
///
/// Messages never echo what was typed (only numbers the rules compare), so they are safe to show in a
/// card or an email as they are.
pub fn validate(input: &FtaRequestInput) -> Result<FtaRequestDetails, Vec<RuleViolation>> {
    let mut violations = Vec::new();
    let v = &mut violations;
    let tpid = keep(v, tpid(input.tpid.as_deref()));
    let tenant = keep(v, tenant(input.tenant.as_deref()));
    let partner = keep(v, partner(input.partner.as_deref()));
    let total_users = keep(v, total_users(input.users.as_deref()));
    let request_type = keep(v, request_type(input.request_type.as_deref()));
    let sales_stage = keep(v, sales_stage(input.stage.as_deref()));
    let compelling_event = keep(v, compelling_event(input.event.as_deref()));
    let segment = keep(v, segment(input.segment.as_deref()));
    let entitlements = keep(v, entitlements(input.entitlements.as_deref()));
    let notes = keep(v, notes(input.notes.as_deref()));

    match (
        tpid,
        tenant,
        partner,
        total_users,
        request_type,
        sales_stage,
        compelling_event,
        segment,
        entitlements,
        notes,
    ) {
        (
            Some(tpid),
            Some(tenant),
            Some(partner),
            Some(total_users),
            Some(request_type),
            Some(sales_stage),
            Some(compelling_event),
            Some(segment),
            Some(entitlements),
            Some(notes),
        ) => Ok(FtaRequestDetails {
            tpid,
            tenant,
            partner,
            total_users,
            request_type,
            sales_stage,
            compelling_event,
            segment,
            entitlements,
            notes,
        }),
        _ => Err(violations),
    }
}

fn keep<T>(violations: &mut Vec<RuleViolation>, result: Result<T, RuleViolation>) -> Option<T> {
    result.map_err(|v| violations.push(v)).ok()
}

/// A blank input is the same as no input: card forms submit empty strings.
fn given(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

fn tpid(value: Option<&str>) -> Result<u64, RuleViolation> {
    let bad = || {
        RuleViolation::new(
            Field::Tpid,
            "The TPID (Top Parent Identification) must be a positive whole number, such as 12345.",
        )
    };
    let v = given(value).ok_or_else(bad)?;
    match v.parse::<u64>() {
        Ok(n) if n > 0 && v.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(bad()),
    }
}

fn tenant(value: Option<&str>) -> Result<String, RuleViolation> {
    let bad = || {
        RuleViolation::new(
            Field::Tenant,
            "The tenant must be a domain such as contoso.onmicrosoft.com, or a tenant GUID.",
        )
    };
    let v = given(value).ok_or_else(bad)?.to_ascii_lowercase();
    // Entra shows tenant ids with braces in some places; the GUID inside is what counts.
    let unbraced = v
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(&v);
    if is_guid(unbraced) {
        Ok(unbraced.to_owned())
    } else if is_domain(&v) {
        Ok(v)
    } else {
        Err(bad())
    }
}

fn partner(value: Option<&str>) -> Result<String, RuleViolation> {
    let v = given(value.map(one_line).as_deref())
        .map(str::to_owned)
        .ok_or_else(|| {
            RuleViolation::new(
                Field::Partner,
                "Name the partner, or write \"none\" when there is no partner.",
            )
        })?;
    capped(Field::Partner, "The partner", v, MAX_PARTNER_CHARS)
}

fn total_users(value: Option<&str>) -> Result<u64, RuleViolation> {
    let bad = || {
        RuleViolation::new(
            Field::Users,
            "Total users must be a positive whole number, such as 5000.",
        )
    };
    let v = given(value).ok_or_else(bad)?;
    let digits = ungroup_thousands(v).ok_or_else(bad)?;
    match digits.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(bad()),
    }
}

/// `5000` or `5,000`; the groups must be of three so that `1,5` is not read as fifteen.
fn ungroup_thousands(v: &str) -> Option<String> {
    let mut groups = v.split(',');
    let first = groups.next()?;
    let rest: Vec<&str> = groups.collect();
    let digits = |g: &str| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit());
    let grouped_ok = rest.is_empty() || (first.len() <= 3 && rest.iter().all(|g| g.len() == 3));
    (digits(first) && rest.iter().all(|g| digits(g)) && grouped_ok).then(|| v.replace(',', ""))
}

fn request_type(value: Option<&str>) -> Result<FtaRequestType, RuleViolation> {
    given(value).and_then(FtaRequestType::parse).ok_or_else(|| {
        RuleViolation::new(
            Field::RequestType,
            "Choose the request type: SOW Review or ECIF Related Request, Non-ECIF Related Request, or Migration Exception Request.",
        )
    })
}

fn sales_stage(value: Option<&str>) -> Result<u8, RuleViolation> {
    let bad = || {
        RuleViolation::new(
            Field::Stage,
            format!(
                "Give the sales stage as a whole percentage from 0 to 100; the customer must be at least {MIN_SALES_STAGE}% in the sales stage."
            ),
        )
    };
    let v = given(value).ok_or_else(bad)?;
    let number = v.strip_suffix('%').unwrap_or(v).trim_end();
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match number.parse::<u8>() {
        Ok(n) if n > 100 => Err(bad()),
        Ok(n) if n < MIN_SALES_STAGE => Err(RuleViolation::new(Field::Stage, sales_stage_rule(n))),
        Ok(n) => Ok(n),
        Err(_) => Err(bad()),
    }
}

fn compelling_event(value: Option<&str>) -> Result<String, RuleViolation> {
    let v = given(value.map(multi_line).as_deref())
        .map(str::to_owned)
        .ok_or_else(|| RuleViolation::new(Field::Event, RULE_COMPELLING_EVENT))?;
    capped(Field::Event, "The compelling event", v, MAX_EVENT_CHARS)
}

fn segment(value: Option<&str>) -> Result<Segment, RuleViolation> {
    given(value)
        .and_then(Segment::parse)
        .ok_or_else(|| RuleViolation::new(Field::Segment, RULE_SEGMENT_ENTITLEMENTS))
}

/// A comma- or semicolon-separated list; within an item, words separated by spaces (`m365 ems`) are
/// accepted when each is an entitlement, but the labels with spaces (`Office 365`) are tried whole first.
/// One unknown item fails the whole list: the requestor should learn that it does not qualify.
fn entitlements(value: Option<&str>) -> Result<Vec<Entitlement>, RuleViolation> {
    let bad = || RuleViolation::new(Field::Entitlements, RULE_SEGMENT_ENTITLEMENTS);
    let v = given(value).ok_or_else(bad)?;
    let mut found = Vec::new();
    for item in v.split([',', ';']).map(str::trim).filter(|i| !i.is_empty()) {
        match Entitlement::parse(item) {
            Some(e) => found.push(e),
            None => {
                for word in item.split_whitespace() {
                    found.push(Entitlement::parse(word).ok_or_else(bad)?);
                }
            }
        }
    }
    let list: Vec<Entitlement> = Entitlement::ALL
        .into_iter()
        .filter(|e| found.contains(e))
        .collect();
    if list.is_empty() {
        Err(bad())
    } else {
        Ok(list)
    }
}

fn notes(value: Option<&str>) -> Result<Option<String>, RuleViolation> {
    match given(value.map(multi_line).as_deref()) {
        None => Ok(None),
        Some(v) => capped(
            Field::Notes,
            "The additional instructions",
            v.to_owned(),
            MAX_NOTES_CHARS,
        )
        .map(Some),
    }
}

fn capped(field: Field, what: &str, v: String, max: usize) -> Result<String, RuleViolation> {
    let count = v.chars().count();
    if count <= max {
        Ok(v)
    } else {
        Err(RuleViolation::new(
            field,
            format!("{what} can be at most {max} characters; this one has {count}."),
        ))
    }
}

/// Free text for one line: every whitespace or control character becomes one space.
fn one_line(s: &str) -> String {
    s.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Free text over several lines: newlines and tabs stay; other control characters go, because
/// PostgreSQL rejects NUL in text and the rest only confuse cards and mail.
fn multi_line(s: &str) -> String {
    s.replace("\r\n", "\n")
        .chars()
        .filter(|&c| c == '\n' || c == '\t' || !c.is_control())
        .collect()
}

/// Lowercase, trimmed, single-spaced: how choice words are compared.
fn normalise(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in hex.
pub fn is_guid(v: &str) -> bool {
    let groups: Vec<&str> = v.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A DNS name of at least two labels ending in an alphabetic top-level domain (ASCII; Entra domains
/// are punycode).
pub fn is_domain(v: &str) -> bool {
    let labels: Vec<&str> = v.split('.').collect();
    v.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()))
}

/// What someone does to a request. Serialised with the [`action_name`] as its `action` tag, for the
/// audit history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum FtaAction {
    StartReview,
    Assign { fta: Person },
    Decline { reason: String },
    RequestInfo { ask: String },
    Withdraw,
    ProvideInfo { answer: String },
}

impl FtaAction {
    /// Taken by an FTA alignment or regional lead; the others are the requestor's.
    pub fn is_lead_action(&self) -> bool {
        match self {
            FtaAction::StartReview
            | FtaAction::Assign { .. }
            | FtaAction::Decline { .. }
            | FtaAction::RequestInfo { .. } => true,
            FtaAction::Withdraw | FtaAction::ProvideInfo { .. } => false,
        }
    }

    /// The status this action leads to when it is allowed.
    fn outcome(&self) -> FtaStatus {
        match self {
            FtaAction::StartReview | FtaAction::ProvideInfo { .. } => FtaStatus::InReview,
            FtaAction::Assign { .. } => FtaStatus::Assigned,
            FtaAction::Decline { .. } => FtaStatus::Declined,
            FtaAction::RequestInfo { .. } => FtaStatus::InfoRequested,
            FtaAction::Withdraw => FtaStatus::Withdrawn,
        }
    }

    /// The statuses the action may start from.
    fn allowed_from(&self) -> &'static [FtaStatus] {
        use FtaStatus::{InReview, InfoRequested, Submitted};
        match self {
            FtaAction::StartReview => &[Submitted],
            // A lead may act straight from submitted, without a separate "start review" click.
            FtaAction::Assign { .. }
            | FtaAction::Decline { .. }
            | FtaAction::RequestInfo { .. } => &[Submitted, InReview],
            // Once an FTA is assigned, withdrawing would strand them; the requestor talks to the lead.
            FtaAction::Withdraw => &[Submitted, InReview, InfoRequested],
            FtaAction::ProvideInfo { .. } => &[InfoRequested],
        }
    }
}

/// For the audit rows and logs.
pub fn action_name(action: &FtaAction) -> &'static str {
    match action {
        FtaAction::StartReview => "start_review",
        FtaAction::Assign { .. } => "assign",
        FtaAction::Decline { .. } => "decline",
        FtaAction::RequestInfo { .. } => "request_info",
        FtaAction::Withdraw => "withdraw",
        FtaAction::ProvideInfo { .. } => "provide_info",
    }
}

/// For sentences: "you can't {phrase}".
fn action_phrase(action: &str) -> &'static str {
    match action {
        "start_review" => "start a review",
        "assign" => "assign an FTA",
        "decline" => "decline it",
        "request_info" => "ask the requestor for information",
        "withdraw" => "withdraw it",
        "provide_info" => "answer a request for information",
        _ => "do that",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The action's outcome already holds: a repeated or stale click. Nothing is stored.
    #[error("Nothing changed: the request is already {}.", .status.in_words())]
    NoChange { status: FtaStatus },
    #[error("The request is {}, so you can't {} now.", .from.in_words(), action_phrase(.action))]
    NotAllowed {
        from: FtaStatus,
        action: &'static str,
    },
    #[error("A reason is required to decline a request.")]
    ReasonRequired,
    #[error("Say what information the requestor should give.")]
    AskRequired,
    #[error("The answer to the request for information is empty.")]
    AnswerRequired,
}

/// The state machine of a request (SPEC §3):
///
/// ```text
/// start_review                  submitted                          → in_review
/// assign, decline, request_info submitted, in_review               → assigned, declined, info_requested
/// provide_info                  info_requested                     → in_review
/// withdraw                      submitted, in_review, info_requested → withdrawn
/// ```
///
/// An action whose outcome already holds is [`TransitionError::NoChange`], so repeated and stale clicks
/// are harmless; one that contradicts the current status is [`TransitionError::NotAllowed`]. The text an
/// action carries is checked only when it would change something, so a stale click reports the status
/// rather than a missing reason.
pub fn transition(from: FtaStatus, action: &FtaAction) -> Result<FtaStatus, TransitionError> {
    let to = action.outcome();
    if from == to {
        return Err(TransitionError::NoChange { status: from });
    }
    if !action.allowed_from().contains(&from) {
        return Err(TransitionError::NotAllowed {
            from,
            action: action_name(action),
        });
    }
    match action {
        FtaAction::Decline { reason } if reason.trim().is_empty() => {
            Err(TransitionError::ReasonRequired)
        }
        FtaAction::RequestInfo { ask } if ask.trim().is_empty() => {
            Err(TransitionError::AskRequired)
        }
        FtaAction::ProvideInfo { answer } if answer.trim().is_empty() => {
            Err(TransitionError::AnswerRequired)
        }
        _ => Ok(to),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    fn valid() -> FtaRequestInput {
        FtaRequestInput {
            tpid: Some("12345".into()),
            tenant: Some("contoso.onmicrosoft.com".into()),
            partner: Some("none".into()),
            users: Some("5000".into()),
            request_type: Some("ecif".into()),
            stage: Some("40".into()),
            event: Some("Signed the Office 365 E5 agreement for 2025".into()),
            segment: Some("enterprise".into()),
            entitlements: Some("o365".into()),
            notes: None,
        }
    }

    fn with(field: Field, value: Option<&str>) -> FtaRequestInput {
        let mut input = valid();
        input.set(field, value.map(str::to_owned));
        input
    }

    fn violations(input: &FtaRequestInput) -> Vec<RuleViolation> {
        validate(input).expect_err("should be refused")
    }

    #[test]
    fn valid_input_gives_details() {
        assert_eq!(
            validate(&valid()),
            Ok(FtaRequestDetails {
                tpid: 12345,
                tenant: "contoso.onmicrosoft.com".into(),
                partner: "none".into(),
                total_users: 5000,
                request_type: FtaRequestType::SowReviewOrEcif,
                sales_stage: 40,
                compelling_event: "Signed the Office 365 E5 agreement for 2025".into(),
                segment: Segment::Enterprise,
                entitlements: vec![Entitlement::O365],
                notes: None,
            })
        );
    }

    #[test]
    fn each_field_accepts() {
        // (field, typed, check on the details)
        type Check = fn(&FtaRequestDetails) -> bool;
        let cases: Vec<(Field, &str, Check)> = vec![
            (Field::Tpid, " 987 ", |d| d.tpid == 987),
            (Field::Tenant, "Contoso.OnMicrosoft.com", |d| {
                d.tenant == "contoso.onmicrosoft.com"
            }),
            (Field::Tenant, "contoso.com", |d| d.tenant == "contoso.com"),
            (Field::Tenant, "8D3E1C2A-0000-4000-8000-00000000AAAA", |d| {
                d.tenant == "8d3e1c2a-0000-4000-8000-00000000aaaa"
            }),
            (
                Field::Tenant,
                "{8d3e1c2a-0000-4000-8000-00000000aaaa}",
                |d| d.tenant == "8d3e1c2a-0000-4000-8000-00000000aaaa",
            ),
            (Field::Partner, "  Fabrikam\n Consulting\u{0}  ", |d| {
                d.partner == "Fabrikam Consulting"
            }),
            (Field::Partner, "none", |d| d.partner == "none"),
            (Field::Users, "5,000", |d| d.total_users == 5000),
            (Field::Users, "1,234,567", |d| d.total_users == 1_234_567),
            (Field::Users, "1", |d| d.total_users == 1),
            (Field::RequestType, "ECIF", |d| {
                d.request_type == FtaRequestType::SowReviewOrEcif
            }),
            (Field::RequestType, "non-ecif", |d| {
                d.request_type == FtaRequestType::NonEcif
            }),
            (Field::RequestType, "Migration", |d| {
                d.request_type == FtaRequestType::MigrationException
            }),
            (Field::RequestType, "migration exception request", |d| {
                d.request_type == FtaRequestType::MigrationException
            }),
            (
                Field::RequestType,
                "SOW Review or ECIF Related Request",
                |d| d.request_type == FtaRequestType::SowReviewOrEcif,
            ),
            (Field::Stage, "40%", |d| d.sales_stage == 40),
            (Field::Stage, " 60 % ", |d| d.sales_stage == 60),
            (Field::Stage, "100", |d| d.sales_stage == 100),
            (Field::Event, "  Committed to EMS\r\nin Q3  ", |d| {
                d.compelling_event == "Committed to EMS\nin Q3"
            }),
            (Field::Segment, "SMC-C", |d| d.segment == Segment::SmcC),
            (Field::Segment, " Enterprise ", |d| {
                d.segment == Segment::Enterprise
            }),
            (Field::Entitlements, "ems, m365", |d| {
                d.entitlements == vec![Entitlement::M365, Entitlement::Ems]
            }),
            (Field::Entitlements, "O365,o365 , ,EMS", |d| {
                d.entitlements == vec![Entitlement::O365, Entitlement::Ems]
            }),
            (Field::Entitlements, "Office 365; Microsoft 365", |d| {
                d.entitlements == vec![Entitlement::M365, Entitlement::O365]
            }),
            (Field::Entitlements, "m365 ems", |d| {
                d.entitlements == vec![Entitlement::M365, Entitlement::Ems]
            }),
            (Field::Notes, "   ", |d| d.notes.is_none()),
            (Field::Notes, " Needs Teams Phone too ", |d| {
                d.notes.as_deref() == Some("Needs Teams Phone too")
            }),
        ];
        for (field, typed, check) in cases {
            let details = validate(&with(field, Some(typed)))
                .unwrap_or_else(|v| panic!("{field:?} {typed:?}: {v:?}"));
            assert!(check(&details), "{field:?} {typed:?}: {details:?}");
        }
    }

    #[test]
    fn each_rule_refuses_with_its_message() {
        let tpid =
            "The TPID (Top Parent Identification) must be a positive whole number, such as 12345.";
        let tenant =
            "The tenant must be a domain such as contoso.onmicrosoft.com, or a tenant GUID.";
        let partner = "Name the partner, or write \"none\" when there is no partner.";
        let users = "Total users must be a positive whole number, such as 5000.";
        let kind = "Choose the request type: SOW Review or ECIF Related Request, Non-ECIF Related Request, or Migration Exception Request.";
        let long_partner = "p".repeat(201);
        let long_event = "e".repeat(2001);
        let long_notes = "n".repeat(2001);
        let stage_format = "Give the sales stage as a whole percentage from 0 to 100; the customer must be at least 40% in the sales stage.";
        let cases: Vec<(Field, Option<&str>, String)> =
            vec![
            (Field::Tpid, None, tpid.into()),
            (Field::Tpid, Some(""), tpid.into()),
            (Field::Tpid, Some("0"), tpid.into()),
            (Field::Tpid, Some("-5"), tpid.into()),
            (Field::Tpid, Some("+5"), tpid.into()),
            (Field::Tpid, Some("12a"), tpid.into()),
            (Field::Tpid, Some("99999999999999999999999"), tpid.into()),
            (Field::Tenant, None, tenant.into()),
            (Field::Tenant, Some("contoso"), tenant.into()),
            (Field::Tenant, Some("contoso.onmicrosoft.com."), tenant.into()),
            (Field::Tenant, Some("con toso.com"), tenant.into()),
            (Field::Tenant, Some("contoso.c0m"), tenant.into()),
            (Field::Tenant, Some("8d3e1c2a-0000-4000-8000-00000000aaa"), tenant.into()),
            (Field::Tenant, Some("https://contoso.com"), tenant.into()),
            (Field::Partner, None, partner.into()),
            (Field::Partner, Some(" \n "), partner.into()),
            (
                Field::Partner,
                Some(&long_partner),
                "The partner can be at most 200 characters; this one has 201.".into(),
            ),
            (Field::Users, None, users.into()),
            (Field::Users, Some("0"), users.into()),
            (Field::Users, Some("many"), users.into()),
            (Field::Users, Some("1,5"), users.into()),
            (Field::Users, Some("12.5"), users.into()),
            (Field::Users, Some("-10"), users.into()),
            (Field::RequestType, None, kind.into()),
            (Field::RequestType, Some("urgent"), kind.into()),
            (Field::Stage, None, stage_format.into()),
            (Field::Stage, Some("forty"), stage_format.into()),
            (Field::Stage, Some("101"), stage_format.into()),
            (Field::Stage, Some("300"), stage_format.into()),
            (Field::Stage, Some("-40"), stage_format.into()),
            (Field::Stage, Some("40.5"), stage_format.into()),
            (Field::Stage, Some("%"), stage_format.into()),
            (
                Field::Stage,
                Some("30%"),
                "The customer must be at least 40% in the sales stage; this request says 30%."
                    .into(),
            ),
            (
                Field::Stage,
                Some("0"),
                "The customer must be at least 40% in the sales stage; this request says 0%."
                    .into(),
            ),
            (
                Field::Stage,
                Some(" 39 "),
                "The customer must be at least 40% in the sales stage; this request says 39%."
                    .into(),
            ),
            (Field::Event, None, RULE_COMPELLING_EVENT.into()),
            (Field::Event, Some("  \t "), RULE_COMPELLING_EVENT.into()),
            (
                Field::Event,
                Some(&long_event),
                "The compelling event can be at most 2000 characters; this one has 2001.".into(),
            ),
            (Field::Segment, None, RULE_SEGMENT_ENTITLEMENTS.into()),
            (Field::Segment, Some("SMB"), RULE_SEGMENT_ENTITLEMENTS.into()),
            (Field::Segment, Some("public sector"), RULE_SEGMENT_ENTITLEMENTS.into()),
            (Field::Entitlements, None, RULE_SEGMENT_ENTITLEMENTS.into()),
            (Field::Entitlements, Some(" , ;"), RULE_SEGMENT_ENTITLEMENTS.into()),
            (Field::Entitlements, Some("azure"), RULE_SEGMENT_ENTITLEMENTS.into()),
            (
                Field::Entitlements,
                Some("m365, azure"),
                RULE_SEGMENT_ENTITLEMENTS.into(),
            ),
            (
                Field::Entitlements,
                Some("m365 dynamics"),
                RULE_SEGMENT_ENTITLEMENTS.into(),
            ),
            (
                Field::Notes,
                Some(&long_notes),
                "The additional instructions can be at most 2000 characters; this one has 2001."
                    .into(),
            ),
        ];
        for (field, typed, message) in cases {
            assert_eq!(
                violations(&with(field, typed)),
                vec![RuleViolation { field, message }],
                "{field:?} {typed:?}"
            );
        }
    }

    #[test]
    fn length_caps_count_characters_not_bytes() {
        let at_cap = "é".repeat(MAX_PARTNER_CHARS);
        assert!(validate(&with(Field::Partner, Some(&at_cap))).is_ok());
        let notes = "ü".repeat(MAX_NOTES_CHARS);
        assert!(validate(&with(Field::Notes, Some(&notes))).is_ok());
    }

    #[test]
    fn every_violation_is_reported_at_once_in_form_order() {
        let input = FtaRequestInput {
            tpid: Some("abc".into()),
            stage: Some("30%".into()),
            segment: Some("smb".into()),
            ..FtaRequestInput::default()
        };
        let found = violations(&input);
        let fields: Vec<Field> = found.iter().map(|v| v.field).collect();
        assert_eq!(
            fields,
            Field::ALL
                .into_iter()
                .filter(|f| f.is_required())
                .collect::<Vec<_>>()
        );
        assert!(found.contains(&RuleViolation {
            field: Field::Stage,
            message: sales_stage_rule(30),
        }));
        assert!(found.contains(&RuleViolation {
            field: Field::Event,
            message: RULE_COMPELLING_EVENT.into(),
        }));

        // Empty input: every required field, nothing about the optional notes.
        assert_eq!(violations(&FtaRequestInput::default()).len(), 9);
    }

    #[test]
    fn messages_never_echo_what_was_typed() {
        let hostile = "[x](https://evil.example) <b>";
        let input = FtaRequestInput {
            tpid: Some(hostile.into()),
            tenant: Some(hostile.into()),
            partner: Some(hostile.repeat(20)),
            users: Some(hostile.into()),
            request_type: Some(hostile.into()),
            stage: Some(hostile.into()),
            event: Some(hostile.repeat(200)),
            segment: Some(hostile.into()),
            entitlements: Some(hostile.into()),
            notes: Some(hostile.repeat(200)),
        };
        for v in violations(&input) {
            assert!(!v.message.contains("evil"), "{v:?}");
            assert!(!v.message.contains('<'), "{v:?}");
        }
    }

    #[test]
    fn rule_messages_quote_the_seed() {
        // The playbook's key inputs, in its own words.
        assert!(sales_stage_rule(30).contains("at least 40% in the sales stage"));
        assert!(RULE_COMPELLING_EVENT.contains("compelling event"));
        assert!(RULE_COMPELLING_EVENT.contains("commitment to Office 365 or EMS"));
        assert!(RULE_SEGMENT_ENTITLEMENTS.contains("Enterprise and SMC-C"));
        assert!(RULE_SEGMENT_ENTITLEMENTS.contains("Microsoft 365, Office 365 or EMS"));
    }

    #[test]
    fn input_deserialises_from_form_data() {
        let data = serde_json::json!({
            "verb": "fta.submit",
            "engagementId": 7,
            "tpid": 12345,
            "tenant": "contoso.onmicrosoft.com",
            "partner": "none",
            "users": "5000",
            "type": "migration",
            "stage": 55,
            "event": "Committed to EMS",
            "segment": "smc-c",
            "entitlements": "m365,ems",
            "notes": null,
        });
        let input: FtaRequestInput = serde_json::from_value(data).unwrap();
        assert_eq!(input.tpid.as_deref(), Some("12345"));
        assert_eq!(input.stage.as_deref(), Some("55"));
        assert_eq!(input.request_type.as_deref(), Some("migration"));
        assert_eq!(input.notes, None);
        let details = validate(&input).unwrap();
        assert_eq!(details.segment, Segment::SmcC);

        let empty: FtaRequestInput = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(empty, FtaRequestInput::default());

        // Serialised with the input ids, so it can refill the form.
        let back = serde_json::to_value(FtaRequestInput::from(&details)).unwrap();
        for field in Field::ALL.into_iter().filter(|f| f.is_required()) {
            assert!(back.get(field.input_id()).is_some(), "{field:?}");
        }
        let again: FtaRequestInput = serde_json::from_value(back).unwrap();
        assert_eq!(validate(&again), Ok(details));
    }

    #[test]
    fn details_serialise_with_the_short_words() {
        let details = validate(&with(Field::Entitlements, Some("ems,m365"))).unwrap();
        let json = serde_json::to_value(&details).unwrap();
        assert_eq!(json["request_type"], "ecif");
        assert_eq!(json["segment"], "enterprise");
        assert_eq!(json["entitlements"], serde_json::json!(["m365", "ems"]));
        let back: FtaRequestDetails = serde_json::from_value(json).unwrap();
        assert_eq!(back, details);
    }

    #[test]
    fn fields_match_input_ids() {
        let json = serde_json::to_value(FtaRequestInput::default()).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for field in Field::ALL {
            assert!(keys.contains(&field.input_id()), "{field:?}");
            assert_eq!(
                serde_json::to_value(field).unwrap(),
                field.input_id(),
                "{field:?}"
            );
            let mut input = FtaRequestInput::default();
            input.set(field, Some("x".into()));
            assert_eq!(input.get(field), Some("x"));
            assert!(!field.label().is_empty());
        }
        assert_eq!(keys.len(), Field::ALL.len());
    }

    #[test]
    fn words_round_trip() {
        for t in FtaRequestType::ALL {
            assert_eq!(FtaRequestType::parse(t.as_str()), Some(t));
            assert_eq!(FtaRequestType::parse(t.label()), Some(t));
            assert_eq!(FtaRequestType::parse(&t.label().to_uppercase()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        for s in Segment::ALL {
            assert_eq!(Segment::parse(s.as_str()), Some(s));
            assert_eq!(Segment::parse(s.label()), Some(s));
            assert_eq!(Segment::parse(&s.label().to_lowercase()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for e in Entitlement::ALL {
            assert_eq!(Entitlement::parse(e.as_str()), Some(e));
            assert_eq!(Entitlement::parse(e.label()), Some(e));
            assert_eq!(serde_json::to_value(e).unwrap(), e.as_str());
        }
        for st in FtaStatus::ALL {
            assert_eq!(FtaStatus::parse(st.as_str()), Some(st));
            assert_eq!(FtaStatus::parse(st.label()), Some(st));
            assert_eq!(serde_json::to_value(st).unwrap(), st.as_str());
            assert_eq!(st.to_string(), st.as_str());
        }
        assert_eq!(FtaStatus::parse("In-Review"), Some(FtaStatus::InReview));
        assert_eq!(FtaStatus::parse("open"), None);
        assert_eq!(FtaRequestType::parse("ecif-ish"), None);
        assert_eq!(Segment::parse("smb"), None);
        assert_eq!(
            Segment::parse("Small Medium Corporate (SMC-C)"),
            Some(Segment::SmcC)
        );
        assert_eq!(Entitlement::parse("azure"), None);
    }

    #[test]
    fn open_statuses() {
        let open: Vec<FtaStatus> = FtaStatus::ALL.into_iter().filter(|s| s.is_open()).collect();
        assert_eq!(
            open,
            vec![
                FtaStatus::Submitted,
                FtaStatus::InReview,
                FtaStatus::InfoRequested
            ]
        );
    }

    // ---- the state machine ----

    fn fta() -> Person {
        Person {
            name: "Alex Wu".into(),
            email: Some("alex@contoso.com".into()),
            ..Person::default()
        }
    }

    /// One of each action, with valid text.
    fn every_action() -> Vec<FtaAction> {
        vec![
            FtaAction::StartReview,
            FtaAction::Assign { fta: fta() },
            FtaAction::Decline {
                reason: "Below 40% in the sales stage".into(),
            },
            FtaAction::RequestInfo {
                ask: "Which workloads?".into(),
            },
            FtaAction::Withdraw,
            FtaAction::ProvideInfo {
                answer: "Exchange and Teams".into(),
            },
        ]
    }

    /// Fails to compile when an action is added, so the table below must grow with it.
    fn column(action: &FtaAction) -> usize {
        match action {
            FtaAction::StartReview => 0,
            FtaAction::Assign { .. } => 1,
            FtaAction::Decline { .. } => 2,
            FtaAction::RequestInfo { .. } => 3,
            FtaAction::Withdraw => 4,
            FtaAction::ProvideInfo { .. } => 5,
        }
    }

    /// Likewise for statuses.
    fn row(status: FtaStatus) -> usize {
        match status {
            FtaStatus::Submitted => 0,
            FtaStatus::InReview => 1,
            FtaStatus::Assigned => 2,
            FtaStatus::Declined => 3,
            FtaStatus::Withdrawn => 4,
            FtaStatus::InfoRequested => 5,
        }
    }

    #[derive(Debug, Clone, Copy)]
    enum Expect {
        To(FtaStatus),
        Same,
        Refused,
    }

    #[test]
    fn every_status_and_action() {
        use Expect::{Refused as X, Same as N, To};
        use FtaStatus::*;
        // Written out by hand from SPEC §3, not derived from the code.
        #[rustfmt::skip]
        let table: [(FtaStatus, [Expect; 6]); 6] = [
            //              start_review  assign        decline       request_info       withdraw       provide_info
            (Submitted,     [To(InReview), To(Assigned), To(Declined), To(InfoRequested), To(Withdrawn), X           ]),
            (InReview,      [N,            To(Assigned), To(Declined), To(InfoRequested), To(Withdrawn), N           ]),
            (Assigned,      [X,            N,            X,            X,                 X,             X           ]),
            (Declined,      [X,            X,            N,            X,                 X,             X           ]),
            (Withdrawn,     [X,            X,            X,            X,                 N,             X           ]),
            (InfoRequested, [X,            X,            X,            N,                 To(Withdrawn), To(InReview)]),
        ];
        let actions = every_action();
        let mut seen = [[false; 6]; 6];
        for (from, expectations) in table {
            for action in &actions {
                let expected = expectations[column(action)];
                seen[row(from)][column(action)] = true;
                let got = transition(from, action);
                match expected {
                    To(to) => assert_eq!(got, Ok(to), "{from:?} {action:?}"),
                    N => assert_eq!(
                        got,
                        Err(TransitionError::NoChange { status: from }),
                        "{from:?} {action:?}"
                    ),
                    X => assert_eq!(
                        got,
                        Err(TransitionError::NotAllowed {
                            from,
                            action: action_name(action)
                        }),
                        "{from:?} {action:?}"
                    ),
                }
            }
        }
        assert!(seen.iter().flatten().all(|&s| s), "every pair covered");
        assert_eq!(FtaStatus::ALL.len(), table.len());
        assert_eq!(actions.len(), 6);
    }

    #[test]
    fn text_is_required_when_the_action_would_apply() {
        for blank in ["", "   ", "\n\t"] {
            for from in [FtaStatus::Submitted, FtaStatus::InReview] {
                assert_eq!(
                    transition(
                        from,
                        &FtaAction::Decline {
                            reason: blank.into()
                        }
                    ),
                    Err(TransitionError::ReasonRequired)
                );
                assert_eq!(
                    transition(from, &FtaAction::RequestInfo { ask: blank.into() }),
                    Err(TransitionError::AskRequired)
                );
            }
            assert_eq!(
                transition(
                    FtaStatus::InfoRequested,
                    &FtaAction::ProvideInfo {
                        answer: blank.into()
                    }
                ),
                Err(TransitionError::AnswerRequired)
            );
        }
        // A stale click says what happened rather than asking for a reason.
        assert_eq!(
            transition(
                FtaStatus::Declined,
                &FtaAction::Decline { reason: "".into() }
            ),
            Err(TransitionError::NoChange {
                status: FtaStatus::Declined
            })
        );
        assert_eq!(
            transition(
                FtaStatus::Assigned,
                &FtaAction::Decline { reason: "".into() }
            ),
            Err(TransitionError::NotAllowed {
                from: FtaStatus::Assigned,
                action: "decline"
            })
        );
    }

    #[test]
    fn actions_have_names_and_owners() {
        let names: Vec<&str> = every_action().iter().map(action_name).collect();
        assert_eq!(
            names,
            [
                "start_review",
                "assign",
                "decline",
                "request_info",
                "withdraw",
                "provide_info"
            ]
        );
        for action in every_action() {
            let json = serde_json::to_value(&action).unwrap();
            assert_eq!(json["action"], action_name(&action));
            assert_eq!(serde_json::from_value::<FtaAction>(json).unwrap(), action);
            assert_ne!(action_phrase(action_name(&action)), "do that");
        }
        let lead: Vec<bool> = every_action()
            .iter()
            .map(FtaAction::is_lead_action)
            .collect();
        assert_eq!(lead, [true, true, true, true, false, false]);
    }

    #[test]
    fn errors_read_as_sentences() {
        assert_eq!(
            TransitionError::NoChange {
                status: FtaStatus::Assigned
            }
            .to_string(),
            "Nothing changed: the request is already assigned."
        );
        assert_eq!(
            TransitionError::NotAllowed {
                from: FtaStatus::Withdrawn,
                action: "assign"
            }
            .to_string(),
            "The request is withdrawn, so you can't assign an FTA now."
        );
        assert_eq!(
            TransitionError::ReasonRequired.to_string(),
            "A reason is required to decline a request."
        );
    }
}
