//! The explanation of one decision (AI Act Art 86: "clear and meaningful explanations of the role
//! of the AI system in the decision-making procedure"): what was asked, by which agent and for
//! whom, what was answered and which policies decided it, in their own words, what came of it,
//! who objected, and how to check the record (the entry and its inclusion proof).
//!
//! Everything comes from the decision's ledger entry and what links to it; the policies are quoted
//! from the pack whose digest the decision recorded, not from the pack in force now.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::proof::{Proofs, prove};
use super::{ComplianceError, Sources};
use crate::contests::{Contest, Contests};
use crate::decision::record_of;
use crate::ids::DecisionId;
use crate::model::{Outcome, ReasonCode};
use crate::outcomes::{Outcomes, RecordedOutcome};
use crate::policy::DescribedPolicy;

const TEMPLATE: &str = include_str!("../../compliance/explanation.md.j2");

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Explanation {
    pub decision_id: String,
    #[schema(value_type = String)]
    pub decided_at: crate::timestamp::Timestamp,
    /// `allow` or `deny`.
    pub decision: Outcome,
    /// The answer in a sentence.
    pub summary: String,
    pub agent: ExplainedAgent,
    /// The person the agent acted for, when it acted for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    pub action: String,
    pub resource: ExplainedResource,
    /// The arguments as recorded (masked values are shown as their commitments).
    #[schema(value_type = Object)]
    pub arguments: Value,
    /// The agent's stated reason, as recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compensates: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub compensated_by: Vec<String>,
    /// Why: one line per reason, with the deciding policy quoted where a policy decided.
    pub reasons: Vec<ExplainedReason>,
    /// The digest of the policy pack that decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<RecordedOutcome>,
    pub contests: Vec<Contest>,
    pub verification: Verification,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExplainedAgent {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk_tier: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExplainedResource {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    /// The tool's registered description, when it is a registered tool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExplainedReason {
    pub code: ReasonCode,
    /// What the reason means, in words.
    pub meaning: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<String>,
    /// The deciding policy as the recorded pack holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<DescribedPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// How to check the record.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Verification {
    /// The decision's ledger entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger_index: Option<u64>,
    pub proofs: Proofs,
    /// What to do with them, in words.
    pub how: String,
}

/// What `code` means, for a reader who has not read the API reference.
fn meaning(code: ReasonCode) -> &'static str {
    match code {
        ReasonCode::Policy => "A policy decided this.",
        ReasonCode::KillSwitch => {
            "An operator's kill switch covered this request, so it was refused before any policy was consulted."
        }
        ReasonCode::ApprovalRequired => {
            "The policies require a person's approval for this action; it was held until someone approves it."
        }
        ReasonCode::ApprovalInvalid => {
            "The approval presented could not be used (unknown, not granted, expired, used already, or for another request)."
        }
        ReasonCode::NoMatchingPermit => {
            "No policy permits this action, and what is not permitted is refused."
        }
        ReasonCode::PolicyError => {
            "A policy could not be evaluated on this request; Reins refuses rather than guess."
        }
        ReasonCode::UnknownAgent => "The agent is not registered, so it may do nothing.",
        ReasonCode::AgentSuspended => "The agent is suspended, so it may do nothing.",
        ReasonCode::UnknownTool => "The tool is not registered, so no agent may use it.",
        ReasonCode::NoPolicy => "No policies were loaded, and without policies Reins refuses.",
        ReasonCode::LedgerUnavailable => {
            "The decision could not be recorded, and Reins refuses what it cannot record."
        }
        ReasonCode::LedgerBacklog => {
            "The ledger was too far behind to record the decision in time, so Reins refused."
        }
        ReasonCode::RateLimited => {
            "A policy limits how many calls may be made in a period, and this call was over the limit."
        }
        ReasonCode::BudgetExceeded => {
            "A policy caps how much may be spent in a period, and this call would have gone over the cap."
        }
        ReasonCode::LoopDetected => {
            "A policy stops an agent that repeats the same call within one session, and this call was one repeat too many."
        }
    }
}

/// The explanation of decision `id`; `None` when there is no such decision.
pub async fn explain(
    sources: &Sources,
    outcomes: &Outcomes,
    contests: &Contests,
    id: &DecisionId,
) -> Result<Option<Explanation>, ComplianceError> {
    let Some(row) = sources.store.decision(id).await? else {
        return Ok(None);
    };
    let record = record_of(&row)?;
    let compensated_by = sources.store.compensations_of(id).await?;
    let described = match &record.decision.policy_digest {
        Some(digest) => match sources.store.policy_text(digest).await? {
            Some(texts) => {
                let files: Vec<(String, String)> = serde_json::from_str(&texts.files)
                    .map_err(|e| ComplianceError::Damaged(format!("policy texts {digest}: {e}")))?;
                crate::policy::describe(&files)
            }
            None => Default::default(),
        },
        None => Default::default(),
    };
    let reasons: Vec<ExplainedReason> = record
        .decision
        .reasons
        .iter()
        .map(|r| {
            let policy = r.policy_id.as_ref().and_then(|p| {
                described.get(p).cloned().or_else(|| {
                    // The texts are not stored (a pack from before they were): the recorded
                    // annotations still carry the description.
                    let description = r.annotations.as_ref()?.get("description")?.clone();
                    Some(DescribedPolicy {
                        effect: "",
                        description: Some(description),
                        file: String::new(),
                        text: String::new(),
                    })
                })
            });
            ExplainedReason {
                code: r.code,
                meaning: meaning(r.code).into(),
                policy_id: r.policy_id.clone(),
                policy,
                message: r.message.clone(),
            }
        })
        .collect();
    let agent = sources
        .snapshot
        .agent(
            &record
                .agent_id
                .parse()
                .map_err(|e| ComplianceError::Damaged(format!("decision {id}: agent id: {e}")))?,
        )
        .map(|a| &a.agent.record);
    let resource = &record.request.resource;
    let description = (resource.kind == "Tool")
        .then(|| resource.id.parse().ok())
        .flatten()
        .and_then(|tool| sources.snapshot.tool(&tool))
        .map(|t| t.tool.record.description.clone());
    let arguments = record
        .request
        .context
        .as_ref()
        .and_then(|c| c.get("args"))
        .cloned()
        .unwrap_or(Value::Object(Default::default()));
    let summary = summary_of(&record, &reasons);
    let ledger_index = record.decision.ledger.as_ref().map(|l| l.index);
    let proofs = prove(sources, ledger_index.as_slice()).await?;
    let outcome = outcomes
        .get(id)
        .await
        .map_err(|e| ComplianceError::Damaged(e.to_string()))?;
    let contests = contests
        .of_decision(id)
        .await
        .map_err(|e| ComplianceError::Damaged(e.to_string()))?;
    Ok(Some(Explanation {
        decision_id: id.to_string(),
        decided_at: record.decision.evaluated_at,
        decision: record.decision.decision,
        summary,
        agent: ExplainedAgent {
            id: record.agent_id.clone(),
            name: agent.map(|a| a.name.clone()),
            owner: agent.map(|a| a.owner.clone()),
            risk_tier: agent.map(|a| a.risk_tier.as_str().to_owned()),
        },
        on_behalf_of: record.on_behalf_of.clone(),
        action: record.request.action.clone(),
        resource: ExplainedResource {
            kind: resource.kind.clone(),
            id: resource.id.clone(),
            description,
        },
        arguments,
        intent: record.request.intent.clone(),
        compensates: record.request.compensates.map(|c| c.to_string()),
        compensated_by,
        reasons,
        policy_digest: record.decision.policy_digest.clone(),
        outcome,
        contests,
        verification: Verification {
            ledger_index,
            how: "The entry's bytes hash (RFC 6962: SHA-256 of 0x00 then the bytes) to its leaf \
                  hash; the inclusion proof leads from that leaf to the root of the signed \
                  checkpoint, whose signature verifies with the ledger's key. `reins ledger \
                  verify` checks the whole ledger; an audit pack carries the same proofs for \
                  offline checking."
                .into(),
            proofs,
        },
    }))
}

fn summary_of(record: &crate::model::DecisionRecord, reasons: &[ExplainedReason]) -> String {
    let who = match &record.on_behalf_of {
        Some(user) => format!("Agent {}, acting for {user},", record.agent_id),
        None => format!("Agent {}", record.agent_id),
    };
    let what = format!(
        "{} {} ({})",
        record.request.action, record.request.resource.id, record.request.resource.kind
    );
    let answer = match record.decision.decision {
        Outcome::Allow => "was allowed",
        Outcome::Deny
            if reasons
                .iter()
                .any(|r| r.code == ReasonCode::ApprovalRequired) =>
        {
            "was held for a person's approval"
        }
        Outcome::Deny => "was refused",
    };
    format!(
        "{who} asked to {what}; it {answer} on {}.",
        record.decision.evaluated_at
    )
}

/// The explanation as Markdown.
pub fn markdown(explanation: &Explanation) -> Result<String, ComplianceError> {
    super::card::render("explanation", TEMPLATE, explanation)
}
