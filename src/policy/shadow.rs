//! Shadow mode: a policy version evaluated beside the active one on live traffic, without
//! affecting answers, counting where the two disagree.

use serde::Serialize;
use utoipa::ToSchema;

use super::PolicyPack;
use crate::model::{Decision, DecisionRequest, Outcome};

/// A policy version evaluated beside the active one on live traffic, without affecting answers:
/// it counts where the two disagree.
pub struct Shadow {
    pub version: crate::ids::VersionId,
    pub pack: PolicyPack,
    pub since: crate::timestamp::Timestamp,
    pub evaluated: std::sync::atomic::AtomicU64,
    pub allow_to_deny: std::sync::atomic::AtomicU64,
    pub deny_to_allow: std::sync::atomic::AtomicU64,
    /// The first disagreements (at most 20).
    pub examples: std::sync::Mutex<Vec<ShadowDisagreement>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ShadowDisagreement {
    pub decision_id: String,
    pub agent_id: String,
    pub action: String,
    pub resource: String,
    /// The active version's answer (what was answered).
    pub active: Outcome,
    /// The shadow version's.
    pub shadow: Outcome,
    pub shadow_policy_ids: Vec<String>,
}

impl Shadow {
    pub fn new(version: crate::ids::VersionId, pack: PolicyPack) -> Self {
        Self {
            version,
            pack,
            since: crate::timestamp::Timestamp::now(),
            evaluated: Default::default(),
            allow_to_deny: Default::default(),
            deny_to_allow: Default::default(),
            examples: Default::default(),
        }
    }

    /// Counts one live request the shadow pack answered `shadow` where the active one answered
    /// `active`, keeping the first disagreements as examples.
    pub fn observe(
        &self,
        shadow: Decision,
        active: &Decision,
        agent: &str,
        asked: &DecisionRequest,
        store: Option<&str>,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        self.evaluated.fetch_add(1, Relaxed);
        if shadow.decision == active.decision {
            return;
        }
        match shadow.decision {
            Outcome::Deny => self.allow_to_deny.fetch_add(1, Relaxed),
            Outcome::Allow => self.deny_to_allow.fetch_add(1, Relaxed),
        };
        crate::telemetry::metrics().shadow_disagreements.add(
            1,
            &[
                opentelemetry::KeyValue::new(
                    "store",
                    store.unwrap_or(crate::ids::DEFAULT_STORE).to_owned(),
                ),
                opentelemetry::KeyValue::new("version", self.version.to_string()),
            ],
        );
        if let Ok(mut examples) = self.examples.lock()
            && examples.len() < 20
        {
            examples.push(ShadowDisagreement {
                decision_id: active.decision_id.to_string(),
                agent_id: agent.to_owned(),
                action: asked.action.clone(),
                resource: format!("{}::\"{}\"", asked.resource.kind, asked.resource.id),
                active: active.decision,
                shadow: shadow.decision,
                shadow_policy_ids: shadow
                    .reasons
                    .into_iter()
                    .filter_map(|r| r.policy_id)
                    .collect(),
            });
        }
    }
}
