//! The Field roles and business units, worded exactly as in `seeds/field-roles.md`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A role on the account team, plus FastTrack's own architect.
///
/// Serialises as the uppercase abbreviation (`"ATS"`), the form people type and the roster stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Role {
    Ats,
    Tam,
    Ae,
    Csm,
    Ade,
    Tsp,
    Ssp,
    Fta,
}

impl Role {
    /// The seven Field roles, in the order of the seed's table.
    pub const FIELD: [Role; 7] = [
        Role::Ats,
        Role::Tam,
        Role::Ae,
        Role::Csm,
        Role::Ade,
        Role::Tsp,
        Role::Ssp,
    ];

    /// Every role a roster can hold: the Field roles and the FastTrack Architect.
    pub const ALL: [Role; 8] = [
        Role::Ats,
        Role::Tam,
        Role::Ae,
        Role::Csm,
        Role::Ade,
        Role::Tsp,
        Role::Ssp,
        Role::Fta,
    ];

    /// Case-insensitive abbreviation (`tam`, `TAM`, ` Tam `).
    pub fn parse(s: &str) -> Option<Role> {
        let s = s.trim();
        Role::ALL
            .into_iter()
            .find(|role| role.abbr().eq_ignore_ascii_case(s))
    }

    pub fn abbr(self) -> &'static str {
        match self {
            Role::Ats => "ATS",
            Role::Tam => "TAM",
            Role::Ae => "AE",
            Role::Csm => "CSM",
            Role::Ade => "ADE",
            Role::Tsp => "TSP",
            Role::Ssp => "SSP",
            Role::Fta => "FTA",
        }
    }

    /// The full name; for Field roles the seed's wording, for FTA FastTrack's own.
    pub fn title(self) -> &'static str {
        match definition(self) {
            Some(def) => def.title,
            None => FTA_TITLE,
        }
    }

    /// Whether the role belongs to the Account Team Unit. FTA is not a Field role, so no.
    pub fn is_atu(self) -> bool {
        definition(self).is_some_and(|def| def.atu)
    }

    pub fn is_field(self) -> bool {
        self != Role::Fta
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.abbr())
    }
}

pub const FTA_TITLE: &str = "FastTrack Architect";

/// The seed's "Field 101" paragraph, shown above the roles.
pub const FIELD_INTRO: &str = "FastTrack refers to \"The Field\" as other Microsoft Customer facing roles who sell or support our customers. Sometimes you'll hear the Field referred to as the Account Team Unit (ATU).";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Organization {
    Sales,
    Services,
}

impl Organization {
    pub fn name(self) -> &'static str {
        match self {
            Organization::Sales => "Sales",
            Organization::Services => "Services",
        }
    }

    pub fn business_unit(self) -> &'static BusinessUnit {
        match self {
            Organization::Sales => &SALES,
            Organization::Services => &SERVICES,
        }
    }
}

impl fmt::Display for Organization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One row of the seed's "Definitions" table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleDefinition {
    pub role: Role,
    pub title: &'static str,
    pub organization: Organization,
    pub atu: bool,
    pub objectives: &'static str,
    /// The FY20 remark after the line break in the seed's cell, if any.
    pub note: Option<&'static str>,
}

static FIELD_ROLES: [RoleDefinition; 7] = [
    RoleDefinition {
        role: Role::Ats,
        title: "Account Technology Strategist",
        organization: Organization::Sales,
        atu: true,
        objectives: "Individuals responsible for providing pre-sale technology support by designing technical programs that guide customers in realizing annuity value by establishing both deployment and future product plans.",
        note: Some(
            "In FY20, this roles goals align the most with FastTrack, targeting Win10, OPP.",
        ),
    },
    RoleDefinition {
        role: Role::Tam,
        title: "Technical Account Manager",
        organization: Organization::Services,
        atu: false,
        objectives: "Individuals whose duties center on managing support issues for an assigned group of customers by acting as a technical resource and coordinating with other Microsoft groups and resources to assist the customer in their use of Microsoft solutions. This also includes proactive offerings.",
        // Not italic in the seed, but the same kind of time-bound FY20 remark as the others.
        note: Some(
            "Tams are paid on Azure Consumptions, O365 OPP and Teams consumption, and Premier Core Bill (add-ons to Premiere contract) for FY20.",
        ),
    },
    RoleDefinition {
        role: Role::Ae,
        title: "Account Executive",
        organization: Organization::Sales,
        atu: true,
        objectives: "Executive-level employees of an organization who are responsible for sales accounts, owning the overall relationship between the customer and Microsoft. They often work closely with the ATS.",
        note: None,
    },
    RoleDefinition {
        role: Role::Csm,
        title: "Customer Success Manager",
        organization: Organization::Sales,
        atu: true,
        objectives: "Position in sales responsible for driving customer adoption of particular products.",
        note: Some("In FY 20, This role is mainly focused on Teams."),
    },
    RoleDefinition {
        role: Role::Ade,
        title: "Account Delivery Executive",
        organization: Organization::Services,
        atu: false,
        objectives: "Individuals in Services who are responsible for oversight and governance of delivery of services, collaborating with AEs to formulate strategic business development opportunities for a customer, and help drive transformational solutions including cloud adoption.",
        note: None,
    },
    RoleDefinition {
        role: Role::Tsp,
        title: "Technical Specialists, formally known as Technical Sales Professionals",
        organization: Organization::Sales,
        atu: false,
        objectives: "Individuals who work with partners, customers and other sales professionals to discuss strategic opportunities, determine what steps are necessary to win a sale and use technical expertise to develop technical relationships with customers.",
        note: None,
    },
    RoleDefinition {
        role: Role::Ssp,
        title: "Specialists, formally known as Solutions Sales Professionals",
        organization: Organization::Sales,
        atu: true,
        objectives: "Individuals who drive sales opportunities in designated business areas.",
        note: None,
    },
];

/// `None` for [`Role::Fta`]: the FastTrack Architect is FastTrack's own role, not a Field role.
pub fn definition(role: Role) -> Option<&'static RoleDefinition> {
    FIELD_ROLES.iter().find(|def| def.role == role)
}

pub fn field_roles() -> &'static [RoleDefinition] {
    &FIELD_ROLES
}

/// The Field roles that belong to the Account Team Unit, in table order.
pub fn atu_roles() -> impl Iterator<Item = &'static RoleDefinition> {
    FIELD_ROLES.iter().filter(|def| def.atu)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessUnit {
    pub name: &'static str,
    pub description: &'static str,
}

const SALES: BusinessUnit = BusinessUnit {
    name: "Sales",
    description: "Responsible for developing the relationship, business, and opportunity management processes of the sales cycle.",
};

const SERVICES: BusinessUnit = BusinessUnit {
    name: "Services",
    description: "A Microsoft business unit responsible for providing consulting and enterprise support (ie- MCS (Microsoft Consulting Services) and Premier or Unified Services).",
};

static BUSINESS_UNITS: [BusinessUnit; 2] = [SALES, SERVICES];

/// The seed's "Business Units" table: what Sales and Services are.
pub fn business_units() -> &'static [BusinessUnit] {
    &BUSINESS_UNITS
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn every_field_role_matches_the_seed_table() {
        let table = [
            (
                Role::Ats,
                "Account Technology Strategist",
                Organization::Sales,
                true,
            ),
            (
                Role::Tam,
                "Technical Account Manager",
                Organization::Services,
                false,
            ),
            (Role::Ae, "Account Executive", Organization::Sales, true),
            (
                Role::Csm,
                "Customer Success Manager",
                Organization::Sales,
                true,
            ),
            (
                Role::Ade,
                "Account Delivery Executive",
                Organization::Services,
                false,
            ),
            (
                Role::Tsp,
                "Technical Specialists, formally known as Technical Sales Professionals",
                Organization::Sales,
                false,
            ),
            (
                Role::Ssp,
                "Specialists, formally known as Solutions Sales Professionals",
                Organization::Sales,
                true,
            ),
        ];
        assert_eq!(field_roles().len(), table.len());
        for ((role, title, org, atu), def) in table.into_iter().zip(field_roles()) {
            assert_eq!(def.role, role);
            assert_eq!(def.title, title, "{role}");
            assert_eq!(def.organization, org, "{role}");
            assert_eq!(def.atu, atu, "{role}");
            assert!(!def.objectives.is_empty(), "{role}");
            assert_eq!(definition(role), Some(def));
        }
    }

    #[test]
    fn field_constant_follows_the_table_order() {
        let order: Vec<Role> = field_roles().iter().map(|d| d.role).collect();
        assert_eq!(order, Role::FIELD.to_vec());
    }

    #[test]
    fn atu_roles_are_ats_ae_csm_ssp() {
        let atu: Vec<Role> = atu_roles().map(|d| d.role).collect();
        assert_eq!(atu, vec![Role::Ats, Role::Ae, Role::Csm, Role::Ssp]);
        assert!(!Role::Fta.is_atu());
    }

    #[test]
    fn fta_is_not_a_field_role() {
        assert_eq!(definition(Role::Fta), None);
        assert_eq!(Role::Fta.title(), "FastTrack Architect");
        assert!(!Role::FIELD.contains(&Role::Fta));
    }

    #[test]
    fn notes_keep_the_fy20_remarks() {
        assert_eq!(
            definition(Role::Ats).unwrap().note,
            Some("In FY20, this roles goals align the most with FastTrack, targeting Win10, OPP.")
        );
        assert_eq!(
            definition(Role::Csm).unwrap().note,
            Some("In FY 20, This role is mainly focused on Teams.")
        );
        assert!(
            definition(Role::Tam)
                .unwrap()
                .note
                .unwrap()
                .contains("FY20")
        );
        assert_eq!(definition(Role::Ae).unwrap().note, None);
    }

    #[test]
    fn parse_is_case_insensitive_and_round_trips() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.abbr()), Some(role));
            assert_eq!(Role::parse(&role.abbr().to_lowercase()), Some(role));
        }
        assert_eq!(Role::parse(" Tam "), Some(Role::Tam));
        assert_eq!(Role::parse("atu"), None);
        assert_eq!(Role::parse(""), None);
    }

    #[test]
    fn serde_uses_the_uppercase_abbreviation() {
        for role in Role::ALL {
            let json = serde_json::to_value(role).unwrap();
            assert_eq!(json, serde_json::Value::String(role.abbr().to_owned()));
            assert_eq!(serde_json::from_value::<Role>(json).unwrap(), role);
        }
    }

    #[test]
    fn business_units_are_sales_and_services() {
        let names: Vec<&str> = business_units().iter().map(|u| u.name).collect();
        assert_eq!(names, ["Sales", "Services"]);
        assert_eq!(Organization::Services.business_unit(), &business_units()[1]);
        assert!(
            business_units()[1]
                .description
                .starts_with("A Microsoft business unit")
        );
    }
}
