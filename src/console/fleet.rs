//! The fleet page's figures: every agent with its tier, status, owner, decisions and deny rate
//! over the last 24 hours, pending approvals, the kill switches stopping it and its EU AI Act
//! checklist in brief; the tools with their risk; the switches in force.

use serde::Serialize;

use crate::app::Services;
use crate::store::StoreError;
use crate::timestamp::Timestamp;

const DAY: std::time::Duration = std::time::Duration::from_secs(86_400);
/// How long an agent's checklist summary is shown before it is worked out again: a checklist
/// reads the ledger's evidence item by item, too much to redo for every agent on every view.
const CHECKLIST_FRESHNESS: std::time::Duration = std::time::Duration::from_secs(60);

type Summary = std::collections::BTreeMap<String, usize>;

/// Agents' checklist summaries, each kept for [`CHECKLIST_FRESHNESS`].
pub struct Checklists(quick_cache::sync::Cache<String, (std::time::Instant, Option<Summary>)>);

impl Default for Checklists {
    fn default() -> Self {
        Self(quick_cache::sync::Cache::new(10_000))
    }
}

impl Checklists {
    async fn summary(
        &self,
        sources: &crate::compliance::Sources,
        agent: &crate::ids::AgentId,
    ) -> Option<Summary> {
        if let Some((at, summary)) = self.0.get(agent.as_str())
            && at.elapsed() < CHECKLIST_FRESHNESS
        {
            return summary;
        }
        let summary = crate::compliance::checklist::checklist(sources, agent)
            .await
            .ok()
            .map(|c| c.summary);
        self.0.insert(
            agent.to_string(),
            (std::time::Instant::now(), summary.clone()),
        );
        summary
    }
}

#[derive(Debug, Serialize)]
pub struct Fleet {
    pub generated_at: Timestamp,
    pub agents: Vec<AgentLine>,
    pub tools: Vec<ToolLine>,
    pub switches: Vec<SwitchLine>,
    pub pending_approvals: usize,
    /// Serious incidents not yet closed, overdue ones first.
    pub incidents: Vec<IncidentLine>,
}

#[derive(Debug, Serialize)]
pub struct IncidentLine {
    pub id: String,
    pub severity: &'static str,
    pub summary: String,
    pub status: &'static str,
    pub deadline: Timestamp,
    pub overdue: bool,
    pub agents: String,
}

#[derive(Debug, Serialize)]
pub struct AgentLine {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub risk_tier: &'static str,
    pub status: &'static str,
    pub decisions_24h: u64,
    /// Percent, one decimal; none without decisions.
    pub deny_rate_24h: Option<String>,
    pub pending_approvals: usize,
    /// Switches in force that stop it (its own, a global one).
    pub stopped_by: Vec<String>,
    /// Its EU AI Act checklist's items that apply, counted by status (`3 satisfied, 1
    /// attestation required`); none when the checklist could not be made.
    pub checklist: Option<String>,
    /// Items that need a person: an attestation, missing or stale evidence, or scoping.
    pub checklist_open: usize,
}

#[derive(Debug, Serialize)]
pub struct ToolLine {
    pub id: String,
    pub description: String,
    pub risk: &'static str,
    pub category: String,
    pub reversible: bool,
}

#[derive(Debug, Serialize)]
pub struct SwitchLine {
    pub id: String,
    pub scope: String,
    pub reason: String,
    pub drill: bool,
    pub engaged_by: String,
    pub engaged_at: Timestamp,
}

/// `3 satisfied, 1 attestation required`: the statuses of the items that apply.
fn describe_checklist(summary: &std::collections::BTreeMap<String, usize>) -> String {
    let parts: Vec<String> = summary
        .iter()
        .filter(|(status, _)| !matches!(status.as_str(), "not_applicable" | "not_yet_applicable"))
        .map(|(status, n)| format!("{n} {}", status.replace('_', " ")))
        .collect();
    if parts.is_empty() {
        "no item applies yet".into()
    } else {
        parts.join(", ")
    }
}

pub async fn fleet(app: &Services, checklists: &Checklists) -> Result<Fleet, StoreError> {
    let now = Timestamp::now();
    let registry = app.pipeline.registry();
    let pending = app
        .approvals
        .list(Some(crate::approvals::Status::Pending), 1000)
        .await
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let engaged = app.killswitches.engaged();
    let sources = app.compliance_sources();
    // Every agent's counts in one read, not one per agent.
    let counts = app
        .store
        .decision_counts_by_agent(now.minus(DAY), now)
        .await?;
    let mut agents = Vec::new();
    for agent in registry.agents() {
        let (allow, deny) = counts.get(agent.id.as_str()).copied().unwrap_or((0, 0));
        let decisions = allow + deny;
        let stopped_by = engaged
            .iter()
            .filter(|s| {
                s.scope.agent.as_ref().is_none_or(|a| *a == agent.id)
                    && s.scope.tool.is_none()
                    && s.scope.action.is_none()
            })
            .map(|s| s.id.to_string())
            .collect();
        let summary = checklists.summary(&sources, &agent.id).await;
        agents.push(AgentLine {
            checklist: summary.as_ref().map(describe_checklist),
            checklist_open: summary.as_ref().map_or(0, |s| {
                [
                    "attestation_required",
                    "evidence_missing",
                    "evidence_stale",
                    "scoping_needed",
                ]
                .iter()
                .filter_map(|k| s.get(*k))
                .sum()
            }),
            id: agent.id.to_string(),
            name: agent.record.name.clone(),
            owner: agent.record.owner.clone(),
            risk_tier: agent.record.risk_tier.as_str(),
            status: agent.record.status.as_str(),
            decisions_24h: decisions,
            deny_rate_24h: (decisions > 0)
                .then(|| format!("{:.1}%", deny as f64 * 100.0 / decisions as f64)),
            pending_approvals: pending
                .iter()
                .filter(|a| a.agent_id == agent.id.as_str())
                .count(),
            stopped_by,
        });
    }
    let tools = registry
        .tools()
        .into_iter()
        .map(|t| ToolLine {
            id: t.id.to_string(),
            description: t.record.description.clone(),
            risk: t.record.risk.as_str(),
            category: t.record.category.clone(),
            reversible: t.record.reversible,
        })
        .collect();
    let switches = engaged
        .iter()
        .map(|s| SwitchLine {
            id: s.id.to_string(),
            scope: s.scope.describe(),
            reason: s.reason.clone(),
            drill: s.drill,
            engaged_by: s.engaged_by.clone(),
            engaged_at: s.engaged_at,
        })
        .collect();
    let mut incidents: Vec<IncidentLine> = crate::incidents::load_all(&app.store)
        .await
        .map_err(|e| StoreError::Corrupt(e.to_string()))?
        .into_iter()
        .filter(|i| i.status != crate::incidents::IncidentStatus::Closed)
        .map(|i| IncidentLine {
            id: i.id.to_string(),
            severity: i.severity.as_str(),
            summary: i.summary,
            status: i.status.as_str(),
            deadline: i.deadline,
            overdue: i.overdue,
            agents: i.agents.join(", "),
        })
        .collect();
    incidents.sort_by_key(|i| (!i.overdue, i.deadline));
    Ok(Fleet {
        incidents,
        generated_at: now,
        agents,
        tools,
        switches,
        pending_approvals: pending.len(),
    })
}
