//! Who is an FTA alignment or regional lead: configured by Entra object id or UPN (`fasttrack.leads`), or
//! by membership of an Entra group (`fasttrack.lead_groups`, checked through Graph). Every lead action is
//! checked here on the server, whatever a card showed; answers are cached for a few minutes so a burst of
//! clicks costs one Graph lookup.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::engagement::Person;
use crate::graph::{GraphApi, GraphError};

#[derive(Clone)]
pub struct LeadDirectory {
    ids: Arc<Vec<String>>,
    upns: Arc<Vec<String>>,
    groups: Arc<Vec<String>>,
    graph: Arc<dyn GraphApi>,
    cache: moka::future::Cache<String, bool>,
}

impl LeadDirectory {
    pub fn new(leads: &[String], groups: &[String], graph: Arc<dyn GraphApi>) -> Self {
        let (upns, ids): (Vec<String>, Vec<String>) = leads
            .iter()
            .map(|l| l.trim().to_lowercase())
            .filter(|l| !l.is_empty())
            .partition(|l| l.contains('@'));
        LeadDirectory {
            ids: Arc::new(ids),
            upns: Arc::new(upns),
            groups: Arc::new(groups.iter().map(|g| g.trim().to_string()).collect()),
            graph,
            cache: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(300))
                .build(),
        }
    }

    /// The configured leads as Connector member ids (object ids or UPNs both work there), for resolving
    /// their Teams ids.
    pub fn configured(&self) -> Vec<String> {
        self.ids.iter().chain(self.upns.iter()).cloned().collect()
    }

    pub async fn is_lead(&self, person: &Person) -> Result<bool, GraphError> {
        let known: Vec<String> = [&person.aad_object_id, &person.upn, &person.email]
            .into_iter()
            .flatten()
            .map(|s| s.to_lowercase())
            .collect();
        if known
            .iter()
            .any(|k| self.ids.contains(k) || self.upns.contains(k))
        {
            return Ok(true);
        }
        let Some(oid) = person.aad_object_id.clone() else {
            return Ok(false);
        };
        if self.upns.is_empty() && self.groups.is_empty() {
            return Ok(false);
        }
        if let Some(cached) = self.cache.get(&oid).await {
            return Ok(cached);
        }
        let mut lead = false;
        if !self.upns.is_empty() {
            let user = self.graph.get_user(&oid).await?;
            lead = [user.user_principal_name, user.mail]
                .into_iter()
                .flatten()
                .any(|u| self.upns.contains(&u.to_lowercase()));
        }
        if !lead && !self.groups.is_empty() {
            lead = !self
                .graph
                .check_member_groups(&oid, &self.groups)
                .await?
                .is_empty();
        }
        self.cache.insert(oid, lead).await;
        Ok(lead)
    }
}
