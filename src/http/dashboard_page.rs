//! The operator dashboard as server-rendered HTML: readable without JavaScript, so it works under a CSP that
//! allows no scripts at all. Pure rendering; the handler gathers the rows and owns authorization.
//!
//! The template lives in `config/dashboard.html`, outside `config/templates/`, because `crate::templates`
//! renders every file in that directory with email sample contexts at start.

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use serde::{Deserialize, Serialize};

const TEMPLATE_NAME: &str = "dashboard.html";
const TEMPLATE_SOURCE: &str = include_str!("../../config/dashboard.html");

/// The FTA request states in workflow order (SPEC §3); the filter select and the chips follow it.
pub const STATUSES: &[&str] = &[
    "submitted",
    "in_review",
    "info_requested",
    "assigned",
    "declined",
    "withdrawn",
];

/// The states in which a request still waits on someone: what "open" means in the filter.
pub const OPEN_STATUSES: &[&str] = &["submitted", "in_review", "info_requested"];

#[derive(Debug, Clone, Serialize)]
pub struct DashboardRow {
    pub id: i64,
    pub customer: String,
    /// snake_case state, e.g. `in_review`; selects the badge colour.
    pub status: String,
    pub status_label: String,
    pub requestor: String,
    pub assigned_fta: Option<String>,
    /// Short age for display, see [`age_label`].
    pub age: String,
    pub age_hours: i64,
    pub submitted_at: String,
    pub request_type: String,
    pub history: Vec<DashboardEvent>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DashboardEvent {
    pub at: String,
    pub who: String,
    pub action: String,
}

/// The dashboard's query string (`?status=open&min_age_days=2`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DashboardFilter {
    /// One state, `open` or `all`; absent means `open`, the lead's daily view.
    #[serde(default, deserialize_with = "blank_as_none")]
    pub status: Option<String>,
    // The form submits an empty box as `min_age_days=`, which must mean "no bound", not a 400.
    #[serde(default, deserialize_with = "blank_as_none_number")]
    pub min_age_days: Option<u32>,
    #[serde(default, deserialize_with = "blank_as_none_number")]
    pub max_age_days: Option<u32>,
}

fn blank_as_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw = Option::<String>::deserialize(d)?;
    Ok(raw.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()))
}

fn blank_as_none_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    match blank_as_none(d)? {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom("age must be a whole number of days")),
    }
}

impl DashboardFilter {
    /// The status filter as applied: absent or blank means `open`.
    pub fn effective_status(&self) -> &str {
        match self.status.as_deref().map(str::trim) {
            None | Some("") => "open",
            Some(s) => s,
        }
    }

    /// Whether a request in `status`, `age_hours` old, passes the filter. Ages compare in whole days
    /// (a request 47 h old is 1 day old), matching the "3 d" the table shows.
    pub fn matches(&self, status: &str, age_hours: i64) -> bool {
        let status_ok = match self.effective_status() {
            "all" => true,
            "open" => OPEN_STATUSES.contains(&status),
            wanted => wanted == status,
        };
        let days = age_hours.max(0) / 24;
        status_ok
            && self.min_age_days.is_none_or(|min| days >= i64::from(min))
            && self.max_age_days.is_none_or(|max| days <= i64::from(max))
    }

    /// `?status=…` plus the current age range, for links that switch status without losing the range.
    pub fn query_for_status(&self, status: &str) -> String {
        let mut query = url::form_urlencoded::Serializer::for_suffix(String::from("?"), 1);
        query.append_pair("status", status);
        if let Some(min) = self.min_age_days {
            query.append_pair("min_age_days", &min.to_string());
        }
        if let Some(max) = self.max_age_days {
            query.append_pair("max_age_days", &max.to_string());
        }
        query.finish()
    }
}

/// "Info requested" for `info_requested`; unknown states get their words back rather than an error, so a
/// new state added to the store still renders.
pub fn status_label(status: &str) -> String {
    match status {
        "submitted" => "Submitted".to_owned(),
        "in_review" => "In review".to_owned(),
        "info_requested" => "Info requested".to_owned(),
        "assigned" => "Assigned".to_owned(),
        "declined" => "Declined".to_owned(),
        "withdrawn" => "Withdrawn".to_owned(),
        other => {
            let words = other.replace('_', " ");
            let mut chars = words.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => String::new(),
            }
        }
    }
}

/// "45 min", "5 h", "3 d": hours under two days would read as "1 d" and hide a request that is nearly stale.
pub fn age_label(age_hours: i64) -> String {
    match age_hours {
        h if h < 1 => "<1 h".to_owned(),
        h if h < 48 => format!("{h} h"),
        h => format!("{} d", h / 24),
    }
}

#[derive(Serialize)]
struct SelectOption {
    value: String,
    label: String,
    selected: bool,
}

#[derive(Serialize)]
struct CountChip<'a> {
    status: &'a str,
    /// The chip's link: this status with the age range kept.
    href: String,
    label: String,
    count: usize,
    active: bool,
}

pub struct DashboardPage {
    env: Environment<'static>,
}

impl std::fmt::Debug for DashboardPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardPage").finish_non_exhaustive()
    }
}

impl DashboardPage {
    pub fn new() -> Result<Self, minijinja::Error> {
        let mut env = Environment::new();
        // The name already ends in .html, but escaping must not hinge on a file name someone may rename:
        // customer names and requestor text come from chat input.
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        // A misspelt field should fail the test suite, not render as an empty cell.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_syntax(
            SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()?,
        );
        env.add_template(TEMPLATE_NAME, TEMPLATE_SOURCE)?;
        Ok(Self { env })
    }

    /// `counts` lists requests per state (any order, states missing from it count as 0 unless unknown).
    pub fn render(
        &self,
        rows: &[DashboardRow],
        filter: &DashboardFilter,
        signed_in_as: Option<&str>,
        counts: &[(String, usize)],
    ) -> Result<String, minijinja::Error> {
        let current = filter.effective_status();
        let mut options: Vec<SelectOption> = [("open", "Open"), ("all", "All")]
            .into_iter()
            .map(|(value, label)| SelectOption {
                value: value.to_owned(),
                label: label.to_owned(),
                selected: value == current,
            })
            .chain(STATUSES.iter().map(|s| SelectOption {
                value: (*s).to_owned(),
                label: status_label(s),
                selected: *s == current,
            }))
            .collect();
        // A state the page does not know (hand-edited URL, newer store) stays visible as selected rather than
        // silently showing the first option while the table is filtered by something else.
        if !options.iter().any(|o| o.selected) {
            options.push(SelectOption {
                value: current.to_owned(),
                label: status_label(current),
                selected: true,
            });
        }

        let count_of = |status: &str| {
            counts
                .iter()
                .filter(|(s, _)| s == status)
                .map(|(_, n)| *n)
                .sum::<usize>()
        };
        let mut chips: Vec<CountChip<'_>> = STATUSES
            .iter()
            .map(|s| CountChip {
                status: s,
                href: filter.query_for_status(s),
                label: status_label(s),
                count: count_of(s),
                active: *s == current,
            })
            .collect();
        for (status, count) in counts {
            if !STATUSES.contains(&status.as_str()) {
                chips.push(CountChip {
                    status,
                    href: filter.query_for_status(status),
                    label: status_label(status),
                    count: *count,
                    active: status == current,
                });
            }
        }
        let total: usize = counts.iter().map(|(_, n)| n).sum();
        let open_total: usize = OPEN_STATUSES.iter().map(|s| count_of(s)).sum();

        let ctx = minijinja::context! {
            rows => Value::from(Serde(rows)),
            filter => Value::from(Serde(filter)),
            signed_in_as => signed_in_as,
            status_options => Value::from(Serde(&options)),
            counts => Value::from(Serde(&chips)),
            current_status => current,
            total => total,
            all_href => filter.query_for_status("all"),
            open_total => open_total,
            open_href => filter.query_for_status("open"),
        };
        self.env.get_template(TEMPLATE_NAME)?.render(ctx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    fn row(id: i64, customer: &str, status: &str) -> DashboardRow {
        DashboardRow {
            id,
            customer: customer.to_owned(),
            status: status.to_owned(),
            status_label: status_label(status),
            requestor: "Avery ATS".to_owned(),
            assigned_fta: None,
            age: age_label(80),
            age_hours: 80,
            submitted_at: "2026-03-02 09:15 UTC".to_owned(),
            request_type: "Non-ECIF Related Request".to_owned(),
            history: vec![
                DashboardEvent {
                    at: "2026-03-02 09:15 UTC".to_owned(),
                    who: "Avery ATS".to_owned(),
                    action: "submitted".to_owned(),
                },
                DashboardEvent {
                    at: "2026-03-03 10:00 UTC".to_owned(),
                    who: "Lee Lead".to_owned(),
                    action: "moved to in review".to_owned(),
                },
            ],
        }
    }

    fn counts() -> Vec<(String, usize)> {
        vec![
            ("submitted".to_owned(), 4),
            ("in_review".to_owned(), 2),
            ("assigned".to_owned(), 7),
        ]
    }

    fn render(rows: &[DashboardRow], filter: &DashboardFilter) -> String {
        DashboardPage::new()
            .unwrap()
            .render(rows, filter, Some("Lee Lead"), &counts())
            .unwrap()
    }

    /// Every src/href value must be local: a strict CSP would block external assets anyway, and the page
    /// should not leak the operator's visit to third parties.
    fn assert_no_external_urls(html: &str) {
        for attr in ["src=", "href=", "action="] {
            for (i, _) in html.match_indices(attr) {
                let value = html[i + attr.len()..].trim_start_matches(['"', '\'']);
                let lower = value.to_ascii_lowercase();
                assert!(
                    !lower.starts_with("http:")
                        && !lower.starts_with("https:")
                        && !lower.starts_with("//"),
                    "external URL in {attr}{}",
                    value.chars().take(60).collect::<String>()
                );
            }
        }
        assert!(!html.contains("http://") && !html.contains("https://"));
    }

    #[test]
    fn renders_rows_with_history_and_header() {
        let mut assigned = row(42, "Contoso Ltd", "assigned");
        assigned.assigned_fta = Some("Fay FTA".to_owned());
        let html = render(
            &[row(41, "Fabrikam", "in_review"), assigned],
            &DashboardFilter {
                status: Some("all".to_owned()),
                ..DashboardFilter::default()
            },
        );
        assert!(html.starts_with("<!doctype html>"));
        assert!(html.contains("fieldbot<span class=\"sep\">·</span>FTA requests"));
        assert!(html.contains("signed in as <strong>Lee Lead</strong>"));
        assert!(html.contains("href=\"/auth/signout\""));
        assert!(html.contains("<tr id=\"request-41\">"));
        assert!(html.contains("#42"));
        assert!(html.contains("Contoso Ltd"));
        assert!(html.contains("<span class=\"badge s-in_review\">In review</span>"));
        assert!(html.contains("<span class=\"badge s-assigned\">Assigned</span>"));
        assert!(html.contains("Fay FTA"));
        assert!(html.contains("3 d"));
        assert!(html.contains("Non-ECIF Related Request"));
        assert_eq!(html.matches("<details>").count(), 2);
        assert!(html.contains("<summary>2 events</summary>"));
        assert!(html.contains("Lee Lead: moved to in review"));
        assert!(html.contains("2 requests shown"));
        assert!(!html.contains("No FTA requests match"));
        // 80 h in review is stale; an assigned request of the same age is not.
        assert_eq!(html.matches("age stale").count(), 1);
        assert_no_external_urls(&html);
    }

    #[test]
    fn hostile_text_is_escaped() {
        let mut hostile = row(7, "<script>alert(1)</script>", "submitted");
        hostile.requestor = "\"><img src=x onerror=alert(2)>".to_owned();
        hostile.assigned_fta = Some("<b>fta</b>".to_owned());
        hostile.history[0].action = "<script>alert(3)</script>".to_owned();
        hostile.status = "x\" onmouseover=\"alert(4)".to_owned();
        let page = DashboardPage::new().unwrap();
        let html = page
            .render(
                &[hostile],
                &DashboardFilter {
                    status: Some("\"><script>alert(5)</script>".to_owned()),
                    ..DashboardFilter::default()
                },
                Some("<script>alert(6)</script>"),
                &counts(),
            )
            .unwrap();
        assert!(!html.to_ascii_lowercase().contains("<script"), "{html}");
        assert!(!html.contains("<img"));
        assert!(!html.contains("<b>fta</b>"));
        assert!(!html.contains("\" onmouseover"));
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
            "{html}"
        );
        assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"));
        assert_no_external_urls(&html);
    }

    #[test]
    fn empty_state() {
        let html = render(&[], &DashboardFilter::default());
        assert!(html.contains("No FTA requests match these filters."));
        assert!(html.contains("href=\"?status=all\""));
        assert!(!html.contains("<table>"));
        assert!(!html.contains("<script"));
        assert_no_external_urls(&html);
    }

    #[test]
    fn filter_values_are_reflected_in_the_form() {
        let html = render(
            &[row(1, "Northwind", "in_review")],
            &DashboardFilter {
                status: Some("in_review".to_owned()),
                min_age_days: Some(2),
                max_age_days: Some(30),
            },
        );
        assert!(html.contains("<form class=\"filters\" method=\"get\">"));
        assert!(html.contains("<option value=\"in_review\" selected>In review</option>"));
        assert!(html.contains("<option value=\"open\">Open</option>"));
        assert!(html.contains("<option value=\"all\">All</option>"));
        assert_eq!(html.matches(" selected>").count(), 1);
        assert!(html.contains("name=\"min_age_days\""));
        assert!(html.contains("value=\"2\""));
        assert!(html.contains("value=\"30\""));
        assert!(html.contains("<button type=\"submit\">Apply</button>"));

        // No status means the open view, and empty age boxes.
        let html = render(&[], &DashboardFilter::default());
        assert!(html.contains("<option value=\"open\" selected>Open</option>"));
        assert!(html.contains("<a class=\"chip active\" href=\"?status=open\">Open"));
        assert_eq!(html.matches("value=\"\">").count(), 2);
    }

    #[test]
    fn unknown_status_in_the_filter_stays_selected() {
        let html = render(
            &[],
            &DashboardFilter {
                status: Some("escalated".to_owned()),
                ..DashboardFilter::default()
            },
        );
        assert!(html.contains("<option value=\"escalated\" selected>Escalated</option>"));
        assert_eq!(html.matches(" selected>").count(), 1);
    }

    #[test]
    fn count_chips() {
        let mut counts = counts();
        counts.push(("escalated".to_owned(), 1));
        let html = DashboardPage::new()
            .unwrap()
            .render(
                &[],
                &DashboardFilter {
                    status: Some("assigned".to_owned()),
                    ..DashboardFilter::default()
                },
                None,
                &counts,
            )
            .unwrap();
        for (status, label, n) in [
            ("submitted", "Submitted", 4),
            ("in_review", "In review", 2),
            ("info_requested", "Info requested", 0),
            ("assigned", "Assigned", 7),
            ("declined", "Declined", 0),
            ("withdrawn", "Withdrawn", 0),
            ("escalated", "Escalated", 1),
        ] {
            let chip = format!(
                "href=\"?status={status}\"><span class=\"badge s-{status}\">{label}</span><b>{n}</b></a>"
            );
            assert!(html.contains(&chip), "missing {chip}");
        }
        assert!(html.contains("<a class=\"chip active\" href=\"?status=assigned\">"));
        assert!(html.contains("href=\"?status=all\">All <b>14</b></a>"));
        assert!(html.contains("<a class=\"chip\" href=\"?status=open\">Open <b>6</b></a>"));
        assert!(html.contains("local mode"));

        // Switching status keeps the age range.
        let html = DashboardPage::new()
            .unwrap()
            .render(
                &[],
                &DashboardFilter {
                    status: None,
                    min_age_days: Some(3),
                    max_age_days: None,
                },
                None,
                &counts,
            )
            .unwrap();
        assert!(html.contains("href=\"?status=declined&amp;min_age_days=3\">"));
        assert!(html.contains("href=\"?status=all&amp;min_age_days=3\">All"));
        assert!(!html.contains("/auth/signout"));
    }

    #[test]
    fn filter_parses_the_form_as_browsers_submit_it() {
        use axum::extract::Query;
        let parse = |uri: &str| {
            Query::<DashboardFilter>::try_from_uri(&uri.parse().unwrap()).map(|Query(f)| f)
        };
        let f = parse("/dashboard?status=in_review&min_age_days=&max_age_days=").unwrap();
        assert_eq!(f.status.as_deref(), Some("in_review"));
        assert_eq!((f.min_age_days, f.max_age_days), (None, None));
        let f = parse("/dashboard?status=&min_age_days=2&max_age_days=+10+").unwrap();
        assert_eq!(f.status, None);
        assert_eq!((f.min_age_days, f.max_age_days), (Some(2), Some(10)));
        let f = parse("/dashboard").unwrap();
        assert_eq!(f.effective_status(), "open");
        assert!(parse("/dashboard?min_age_days=-1").is_err());
        assert!(parse("/dashboard?max_age_days=soon").is_err());
    }

    #[test]
    fn filter_matching() {
        let open = DashboardFilter::default();
        assert!(open.matches("submitted", 1));
        assert!(open.matches("info_requested", 1));
        assert!(!open.matches("assigned", 1));
        let all = DashboardFilter {
            status: Some("all".to_owned()),
            ..DashboardFilter::default()
        };
        assert!(all.matches("withdrawn", 1));
        let aged = DashboardFilter {
            status: Some("in_review".to_owned()),
            min_age_days: Some(2),
            max_age_days: Some(3),
        };
        assert!(!aged.matches("in_review", 47));
        assert!(aged.matches("in_review", 48));
        assert!(aged.matches("in_review", 95));
        assert!(!aged.matches("in_review", 96));
        assert!(!aged.matches("submitted", 50));
    }

    #[test]
    fn labels() {
        assert_eq!(age_label(0), "<1 h");
        assert_eq!(age_label(5), "5 h");
        assert_eq!(age_label(47), "47 h");
        assert_eq!(age_label(72), "3 d");
        assert_eq!(status_label("info_requested"), "Info requested");
        assert_eq!(status_label("on_hold"), "On hold");
        assert_eq!(status_label(""), "");
    }
}
