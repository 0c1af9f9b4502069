//! Replay ("what if"): a policy version evaluated against the decisions recorded over a period,
//! each with the request as stored and the agent and tool as the registry held them then (rebuilt
//! from the ledger's registry entries). Reports how many answers would change, allow to deny and
//! deny to allow, with examples.
//!
//! Only decisions Cedar made are replayed: a kill switch, an unknown or suspended agent, an unknown
//! tool or an unusable approval answered before any policy ran, and a new version cannot change
//! that. Masked context values are replayed as their commitments. Nothing is recorded.

use std::collections::HashMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::compliance::Period;
use crate::decision::{record_of, replay_decision};
use crate::events::{Entry, Event};
use crate::ids::UserId;
use crate::model::{Decision, DecisionRecord, Outcome, ReasonCode};
use crate::policy::PolicyPack;
use crate::registry::{Agent, EntityTypes, Meta, Tool, agent_entity, tool_entity};
use crate::store::{Store, StoreError};
use crate::timestamp::Timestamp;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the ledger or a stored decision is unreadable: {0}")]
    Corrupt(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ReplayReport {
    pub policy_digest: String,
    pub from: Timestamp,
    pub to: Timestamp,
    /// Decisions recorded in the period (every store).
    pub decisions: u64,
    /// Those Cedar decided in the default store, replayed against the version.
    pub replayed: u64,
    pub changed: u64,
    pub allow_to_deny: u64,
    pub deny_to_allow: u64,
    /// The first changes (at most 50), in ledger order.
    pub examples: Vec<ReplayChange>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ReplayChange {
    pub decision_id: String,
    pub ledger_index: Option<u64>,
    pub agent_id: String,
    pub action: String,
    /// `Type::"id"`.
    pub resource: String,
    pub was: String,
    pub now: String,
    /// The policies that decide under the version.
    pub policy_ids: Vec<String>,
}

const EXAMPLES: usize = 50;

/// Whether a recorded decision came from Cedar (rather than a rule that runs before it).
fn decided_by_cedar(decision: &Decision) -> bool {
    decision.store.is_none()
        && decision.reasons.first().is_some_and(|r| {
            matches!(
                r.code,
                ReasonCode::Policy
                    | ReasonCode::NoMatchingPermit
                    | ReasonCode::PolicyError
                    | ReasonCode::ApprovalRequired
                    | ReasonCode::RateLimited
                    | ReasonCode::BudgetExceeded
                    | ReasonCode::LoopDetected
            )
        })
}

pub async fn replay(
    store: &Store,
    pack: &PolicyPack,
    period: &Period,
) -> Result<ReplayReport, ReplayError> {
    let types = EntityTypes::new().map_err(|e| ReplayError::Corrupt(e.to_string()))?;
    let corrupt = |e: &dyn std::fmt::Display| ReplayError::Corrupt(e.to_string());
    let mut registry: Vec<(u64, Event)> = Vec::new();
    for row in store
        .entries_of_kinds(&[
            "agent_registered",
            "agent_changed",
            "tool_registered",
            "tool_changed",
        ])
        .await?
    {
        let entry: Entry = serde_json::from_slice(&row.entry).map_err(|e| corrupt(&e))?;
        registry.push((row.idx as u64, entry.event));
    }
    let (from, to) = (period.from, period.to);
    let rows = store.decisions_in(from, to).await?;

    let mut report = ReplayReport {
        policy_digest: pack.digest().to_string(),
        from,
        to,
        decisions: rows.len() as u64,
        replayed: 0,
        changed: 0,
        allow_to_deny: 0,
        deny_to_allow: 0,
        examples: Vec::new(),
    };
    let mut agents: HashMap<String, cedar_policy::Entity> = HashMap::new();
    let mut tools: HashMap<String, cedar_policy::Entity> = HashMap::new();
    let mut applied = 0;
    let meta = |version: i64| Meta {
        version,
        // Replay reads only the records; when they were written is not in question.
        created_at: Timestamp::UNIX_EPOCH,
        updated_at: Timestamp::UNIX_EPOCH,
    };
    for row in rows {
        let Some(index) = row.ledger_index.map(|i| i as u64) else {
            continue;
        };
        // The registry as it was just before this decision.
        while let Some((at, event)) = registry.get(applied) {
            if *at >= index {
                break;
            }
            match event {
                Event::AgentRegistered(a) | Event::AgentChanged(a) => {
                    let agent = Agent {
                        id: a.agent_id.parse().map_err(|e| corrupt(&e))?,
                        record: serde_json::from_value(a.record.clone())
                            .map_err(|e| corrupt(&e))?,
                        meta: meta(a.version),
                    };
                    let entity = agent_entity(&types, &agent).map_err(|e| corrupt(&e))?;
                    agents.insert(a.agent_id.clone(), entity);
                }
                Event::ToolRegistered(t) | Event::ToolChanged(t) => {
                    let tool = Tool {
                        id: t.tool_id.parse().map_err(|e| corrupt(&e))?,
                        record: serde_json::from_value(t.record.clone())
                            .map_err(|e| corrupt(&e))?,
                        meta: meta(t.version),
                    };
                    let entity = tool_entity(&types, &tool).map_err(|e| corrupt(&e))?;
                    tools.insert(t.tool_id.clone(), entity);
                }
                _ => {}
            }
            applied += 1;
        }
        let DecisionRecord {
            decision: recorded,
            request,
            usage,
            ..
        } = record_of(&row).map_err(|e| corrupt(&e))?;
        if !decided_by_cedar(&recorded) {
            continue;
        }
        let Some(agent) = agents.get(&row.agent_id) else {
            continue;
        };
        let tool = match request.resource.kind.as_str() {
            "Tool" => match tools.get(&request.resource.id) {
                Some(t) => Some(t),
                None => continue,
            },
            _ => None,
        };
        let user: Option<UserId> = row.on_behalf_of.as_deref().and_then(|u| u.parse().ok());
        // A request the version's schema cannot read is a deny under it, as it would be live.
        // With the usage counts the decision saw, not today's.
        let seen = usage.as_ref().map(|u| &u.seen);
        let now = replay_decision(pack, &types, agent, tool, user.as_ref(), &request, seen)
            .map(|d| (d.decision, d.reasons))
            .unwrap_or((Outcome::Deny, Vec::new()));
        report.replayed += 1;
        if now.0 == recorded.decision {
            continue;
        }
        report.changed += 1;
        match now.0 {
            Outcome::Deny => report.allow_to_deny += 1,
            Outcome::Allow => report.deny_to_allow += 1,
        }
        if report.examples.len() < EXAMPLES {
            report.examples.push(ReplayChange {
                decision_id: row.id.clone(),
                ledger_index: Some(index),
                agent_id: row.agent_id.clone(),
                action: request.action.clone(),
                resource: format!("{}::\"{}\"", request.resource.kind, request.resource.id),
                was: recorded.decision.as_str().into(),
                now: now.0.as_str().into(),
                policy_ids: now.1.into_iter().filter_map(|r| r.policy_id).collect(),
            });
        }
    }
    Ok(report)
}
