//! An engagement: one customer, one motion, bound to one account-team channel, with its roster of Field
//! people and the FM's prep checklist. Wording from the Initiate phase playbook page.

use serde::{Deserialize, Serialize};

use super::roles::Role;

/// The FastTrack motion the engagement runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Motion {
    Rfa,
    Health,
}

impl Motion {
    pub fn parse(s: &str) -> Option<Motion> {
        match s.trim().to_ascii_lowercase().as_str() {
            "rfa" => Some(Motion::Rfa),
            "health" => Some(Motion::Health),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Motion::Rfa => "rfa",
            Motion::Health => "health",
        }
    }

    /// As people write it on cards and in emails.
    pub fn label(self) -> &'static str {
        match self {
            Motion::Rfa => "RFA",
            Motion::Health => "Health",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngagementStatus {
    Active,
    Closed,
}

/// Someone fieldbot knows by as many identifiers as it could resolve.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Person {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upn: Option<String>,
    /// Entra object id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aad_object_id: Option<String>,
    /// The Teams user id (`29:…`) when known: needed to @mention or to show user-specific card views.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teams_id: Option<String>,
}

impl Person {
    /// The address mail and invites go to: the email, else the UPN.
    pub fn address(&self) -> Option<&str> {
        self.email.as_deref().or(self.upn.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterMember {
    pub role: Role,
    pub person: Person,
}

/// The two roles without which `invite` refuses to propose times (MANDATORY: ATS, TAM).
pub const MANDATORY_ROLES: [Role; 2] = [Role::Ats, Role::Tam];
/// Invited as optional attendees (OPTIONAL: AE, CSM, TSP, SSP, ADE).
pub const OPTIONAL_ROLES: [Role; 5] = [Role::Ae, Role::Csm, Role::Tsp, Role::Ssp, Role::Ade];

/// Mandatory roles nobody on the roster holds, in playbook order.
pub fn missing_mandatory(roster: &[RosterMember]) -> Vec<Role> {
    MANDATORY_ROLES
        .into_iter()
        .filter(|role| !roster.iter().any(|m| m.role == *role))
        .collect()
}

/// Whether this roster member is a required attendee of the intro meeting: ATS and TAM, and the FTA when
/// one is aligned.
pub fn is_required_attendee(role: Role) -> bool {
    MANDATORY_ROLES.contains(&role) || role == Role::Fta
}

/// One line of the prep checklist before the account team call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrepItem {
    ReviewRequestDetails,
    UsageReports,
    FtaAligned,
    CompanyBackground,
}

impl PrepItem {
    /// The checklist for a motion, in playbook order.
    pub fn for_motion(motion: Motion) -> Vec<PrepItem> {
        let first = match motion {
            Motion::Rfa => PrepItem::ReviewRequestDetails,
            Motion::Health => PrepItem::UsageReports,
        };
        vec![first, PrepItem::FtaAligned, PrepItem::CompanyBackground]
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PrepItem::ReviewRequestDetails => "review_request_details",
            PrepItem::UsageReports => "usage_reports",
            PrepItem::FtaAligned => "fta_aligned",
            PrepItem::CompanyBackground => "company_background",
        }
    }

    pub fn parse(s: &str) -> Option<PrepItem> {
        [
            PrepItem::ReviewRequestDetails,
            PrepItem::UsageReports,
            PrepItem::FtaAligned,
            PrepItem::CompanyBackground,
        ]
        .into_iter()
        .find(|i| i.as_str() == s)
    }

    /// The playbook's words.
    pub fn text(self) -> &'static str {
        match self {
            PrepItem::ReviewRequestDetails => {
                "For RFA, review details around the request for support."
            }
            PrepItem::UsageReports => {
                "For Health, look at the usage reports to determine what areas are red and need work."
            }
            PrepItem::FtaAligned => {
                "Determine if there is a FastTrack Architect aligned and partner with them on all syncs \
                 (determine who is leading what)."
            }
            PrepItem::CompanyBackground => "Get basic background about the company.",
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    fn member(role: Role) -> RosterMember {
        RosterMember {
            role,
            person: Person {
                name: role.abbr().into(),
                ..Person::default()
            },
        }
    }

    #[test]
    fn mandatory_roles_are_ats_and_tam() {
        assert_eq!(missing_mandatory(&[]), vec![Role::Ats, Role::Tam]);
        assert_eq!(missing_mandatory(&[member(Role::Tam)]), vec![Role::Ats]);
        assert!(missing_mandatory(&[member(Role::Tam), member(Role::Ats)]).is_empty());
        assert!(is_required_attendee(Role::Fta));
        assert!(!is_required_attendee(Role::Ae));
    }

    #[test]
    fn prep_follows_the_motion() {
        assert_eq!(
            PrepItem::for_motion(Motion::Rfa).first(),
            Some(&PrepItem::ReviewRequestDetails)
        );
        assert_eq!(
            PrepItem::for_motion(Motion::Health).first(),
            Some(&PrepItem::UsageReports)
        );
        for item in PrepItem::for_motion(Motion::Health) {
            assert_eq!(PrepItem::parse(item.as_str()), Some(item));
        }
        assert_eq!(Motion::parse("RFA"), Some(Motion::Rfa));
        assert_eq!(Motion::parse("x"), None);
    }
}
