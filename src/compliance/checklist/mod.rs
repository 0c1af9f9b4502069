//! The EU AI Act checklist: the catalogue in `compliance/eu-ai-act.toml`, evaluated per agent.
//!
//! Each item is either checked by a rule against the ledger, the registry, the policies and the
//! configuration, or needs an attestation: a `compliance_officer`'s statement, recorded as a
//! ledger entry. Every status comes with the evidence it rests on (ledger indices, the
//! checkpoint, configuration values), so an auditor can check the claim rather than trust it.

use std::collections::BTreeMap;

use crate::ids::AttestationId;
use crate::timestamp::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ComplianceError, Sources, invalid, kill_switch_uses, sha256};
use crate::decision::{probe_tool, record_of};
use crate::events::{AttestationEvent, Entry, Event};
use crate::ids::AgentId;
use crate::ledger::{Ledger, LedgerRef, ProofBuilder};
use crate::model::{Decision, Outcome, ReasonCode};
use crate::registry::{AgentEntry, ToolRisk};
use crate::store::SideEffect;
use crate::tlog::merkle::{leaf_hash, verify_inclusion};
use crate::tlog::note::Checkpoint;

mod rules;

use rules::*;

const CATALOGUE: &str = include_str!("../../../compliance/eu-ai-act.toml");
const TEMPLATE: &str = include_str!("../../../compliance/checklist.md.j2");

/// Art 19(1) and 26(6): "at least six months", read as 183 days.
pub const MIN_RETENTION_DAYS: u32 = 183;

/// The catalogue of obligations.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    pub version: String,
    #[serde(rename = "item")]
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Item {
    pub id: String,
    pub article: String,
    pub paragraph: String,
    pub role: ItemRole,
    pub tiers: Vec<crate::registry::RiskTier>,
    pub title: String,
    pub satisfied_by: String,
    /// The catalogue's `evidence` key; answered as `rule`, beside the item's evidence list (the
    /// two used to share one name in a checklist's JSON).
    #[serde(rename(serialize = "rule", deserialize = "evidence"))]
    #[schema(rename = "rule")]
    pub evidence: Rule,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemRole {
    Provider,
    Deployer,
    Both,
}

/// How an item is satisfied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Attestation,
    DecisionLogging,
    Instructions,
    ApprovalGates,
    KillSwitchDrill,
    FailClosed,
    LogRetention,
    DecisionExplanation,
    PolicyTests,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ChecklistStatus)]
pub enum Status {
    Satisfied,
    EvidenceMissing,
    EvidenceStale,
    AttestationRequired,
    Attested,
    NotApplicable,
}

/// One thing a status rests on.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Evidence {
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger_index: Option<u64>,
    /// A configuration key and its value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// A signed checkpoint note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

impl Evidence {
    fn text(description: impl Into<String>) -> Self {
        Self {
            description: description.into(),
            ledger_index: None,
            config: None,
            checkpoint: None,
        }
    }

    fn at(description: impl Into<String>, index: u64) -> Self {
        Self {
            ledger_index: Some(index),
            ..Self::text(description)
        }
    }
}

/// An attestation as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Attestation {
    pub attestation_id: AttestationId,
    pub agent_id: String,
    pub item: String,
    pub statement: String,
    pub document_sha256: Option<String>,
    pub actor: String,
    pub recorded_at: crate::timestamp::Timestamp,
    pub ledger_index: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ItemResult {
    #[serde(flatten)]
    pub item: Item,
    pub status: Status,
    /// Why the status is what it is, in one sentence.
    pub detail: String,
    pub evidence: Vec<Evidence>,
    pub attestations: Vec<Attestation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Checklist {
    pub agent_id: String,
    pub agent_name: String,
    pub risk_tier: String,
    /// Null when the registry does not say; then both roles' items are listed.
    pub ai_act_role: Option<String>,
    pub catalogue_version: String,
    pub evaluated_at: crate::timestamp::Timestamp,
    pub policy_digest: String,
    pub ledger_size: u64,
    pub summary: BTreeMap<String, usize>,
    pub items: Vec<ItemResult>,
}

impl Catalogue {
    /// The catalogue compiled into this build.
    pub fn builtin() -> Result<Self, ComplianceError> {
        let catalogue: Self = toml::from_str(CATALOGUE).map_err(|e| ComplianceError::Render {
            what: "the checklist catalogue",
            message: e.to_string(),
        })?;
        Ok(catalogue)
    }

    pub fn item(&self, id: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.id == id)
    }
}

/// The outcome of a rule before attestations are considered.
struct Finding {
    status: Status,
    detail: String,
    evidence: Vec<Evidence>,
}

impl Finding {
    fn new(status: Status, detail: impl Into<String>, evidence: Vec<Evidence>) -> Self {
        Self {
            status,
            detail: detail.into(),
            evidence,
        }
    }
}

/// Evaluates the catalogue for `agent` now.
pub async fn checklist(sources: &Sources, agent: &AgentId) -> Result<Checklist, ComplianceError> {
    let catalogue = Catalogue::builtin()?;
    let entry = sources.agent(agent)?;
    let record = &entry.agent.record;
    let role = record.documentation.ai_act_role;
    let attestations = attestations(sources, agent).await?;
    let now = Timestamp::now();

    let mut items = Vec::with_capacity(catalogue.items.len());
    for item in catalogue.items {
        let applies = item.tiers.contains(&record.risk_tier)
            && match (item.role, role) {
                (ItemRole::Both, _) | (_, None) => true,
                (ItemRole::Provider, Some(r)) => r.is_provider(),
                (ItemRole::Deployer, Some(r)) => r.is_deployer(),
            };
        let attested: Vec<Attestation> = attestations
            .iter()
            .filter(|a| a.item == item.id)
            .cloned()
            .collect();
        let finding = if !applies {
            Finding::new(
                Status::NotApplicable,
                format!(
                    "applies to {} tiers and the {:?} role; the agent is {} ({})",
                    item.tiers
                        .iter()
                        .map(|t| t.as_str())
                        .collect::<Vec<_>>()
                        .join("/"),
                    item.role,
                    record.risk_tier.as_str(),
                    role.map_or("role not stated", |r| r.as_str())
                ),
                Vec::new(),
            )
        } else {
            match item.evidence {
                Rule::Attestation if attested.is_empty() => Finding::new(
                    Status::AttestationRequired,
                    "needs a statement by a compliance officer",
                    Vec::new(),
                ),
                Rule::Attestation => Finding::new(
                    Status::Attested,
                    "attested by a compliance officer",
                    Vec::new(),
                ),
                rule => {
                    let mut finding = evaluate(sources, entry, rule, now).await?;
                    if finding.status != Status::Satisfied && !attested.is_empty() {
                        finding.detail = format!(
                            "attested by a compliance officer; automatic evidence: {}",
                            finding.detail
                        );
                        finding.status = Status::Attested;
                    }
                    finding
                }
            }
        };
        items.push(ItemResult {
            item,
            status: finding.status,
            detail: finding.detail,
            evidence: finding.evidence,
            attestations: attested,
        });
    }
    let mut summary = BTreeMap::new();
    for item in &items {
        let key = serde_json::to_value(item.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        *summary.entry(key).or_insert(0) += 1;
    }
    Ok(Checklist {
        agent_id: agent.to_string(),
        agent_name: record.name.clone(),
        risk_tier: record.risk_tier.as_str().to_owned(),
        ai_act_role: role.map(|r| r.as_str().to_owned()),
        catalogue_version: catalogue.version,
        evaluated_at: now,
        policy_digest: sources.pack.digest().to_string(),
        ledger_size: sources.ledger_size,
        summary,
        items,
    })
}

async fn evaluate(
    sources: &Sources,
    entry: &AgentEntry,
    rule: Rule,
    now: Timestamp,
) -> Result<Finding, ComplianceError> {
    let agent = &entry.agent.id;
    match rule {
        Rule::Attestation => Ok(Finding::new(Status::AttestationRequired, "", Vec::new())),
        Rule::DecisionLogging => decision_logging(sources, agent).await,
        Rule::Instructions => Ok(instructions(entry)),
        Rule::ApprovalGates => Ok(approval_gates(sources, entry)),
        Rule::KillSwitchDrill => kill_switch_drill(sources, agent, now).await,
        Rule::FailClosed => fail_closed(sources).await,
        Rule::LogRetention => log_retention(sources).await,
        Rule::DecisionExplanation => decision_explanation(sources, agent).await,
        Rule::PolicyTests => policy_tests(sources).await,
    }
}

/// Every attestation recorded for `agent`, oldest first.
pub async fn attestations(
    sources: &Sources,
    agent: &AgentId,
) -> Result<Vec<Attestation>, ComplianceError> {
    let mut found = Vec::new();
    for (index, entry) in sources.entries_of(&["attestation_recorded"]).await? {
        let damaged = |e: String| ComplianceError::Damaged(format!("entry {index}: {e}"));
        let recorded_at = entry.timestamp().map_err(|e| damaged(e.to_string()))?;
        let Event::AttestationRecorded(a) = entry.event else {
            continue;
        };
        if a.agent_id != agent.as_str() {
            continue;
        }
        found.push(Attestation {
            attestation_id: a
                .attestation_id
                .parse()
                .map_err(|e| damaged(format!("{e}")))?,
            agent_id: a.agent_id,
            item: a.item,
            statement: a.statement,
            document_sha256: a.document_sha256,
            actor: a.actor,
            recorded_at,
            ledger_index: index,
        });
    }
    Ok(found)
}

/// `POST /v1/agents/{id}/attestations`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttestationRequest {
    /// A catalogue item id, e.g. `art10-data-governance`.
    pub item: String,
    pub statement: String,
    /// SHA-256 of a supporting document, as 64 hex digits (optionally prefixed `sha256:`).
    #[serde(default)]
    pub document_sha256: Option<String>,
}

const MAX_STATEMENT: usize = 8_000;

/// Validates and records an attestation; it counts once its ledger entry is durable.
pub async fn attest(
    ledger: &Ledger,
    sources: &Sources,
    actor: &str,
    agent: &AgentId,
    request: AttestationRequest,
) -> Result<(Attestation, LedgerRef), ComplianceError> {
    sources.agent(agent)?;
    let catalogue = Catalogue::builtin()?;
    if catalogue.item(&request.item).is_none() {
        return Err(invalid(
            "item",
            format!(
                "`{}` is not an item of the checklist catalogue",
                request.item
            ),
        ));
    }
    let statement = request.statement.trim();
    if statement.is_empty() {
        return Err(invalid("statement", "must not be empty"));
    }
    if statement.len() > MAX_STATEMENT {
        return Err(invalid(
            "statement",
            format!("at most {MAX_STATEMENT} bytes; link a document by its SHA-256 instead"),
        ));
    }
    let document_sha256 = match request.document_sha256 {
        None => None,
        Some(text) => {
            let hex = text.strip_prefix("sha256:").unwrap_or(&text);
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(
                    "document_sha256",
                    "must be a SHA-256 as 64 hex digits, optionally prefixed `sha256:`",
                ));
            }
            Some(format!("sha256:{}", hex.to_ascii_lowercase()))
        }
    };
    let event = AttestationEvent {
        attestation_id: AttestationId::new().to_string(),
        agent_id: agent.to_string(),
        item: request.item,
        statement: statement.to_owned(),
        document_sha256,
        actor: actor.to_owned(),
    };
    let entry = Entry {
        time: Timestamp::now().to_string(),
        event: Event::AttestationRecorded(event.clone()),
    };
    let append = entry
        .append(SideEffect::None)
        .map_err(|e| invalid("statement", e.to_string()))?;
    let reference = ledger.append(vec![append]).await?.remove(0);
    Ok((
        Attestation {
            attestation_id: event
                .attestation_id
                .parse()
                .map_err(|e| ComplianceError::Damaged(format!("attestation id: {e}")))?,
            agent_id: event.agent_id,
            item: event.item,
            statement: event.statement,
            document_sha256: event.document_sha256,
            actor: event.actor,
            recorded_at: super::parse_time("time", &entry.time)?,
            ledger_index: reference.index,
        },
        reference,
    ))
}

/// The checklist as Markdown.
pub fn to_markdown(checklist: &Checklist) -> Result<String, ComplianceError> {
    super::card::render("checklist", TEMPLATE, checklist)
}

/// SHA-256 of the catalogue text, so a pack names the exact catalogue it was checked against.
pub fn catalogue_digest() -> String {
    sha256(CATALOGUE.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_catalogue_parses_and_ids_are_unique() {
        let c = Catalogue::builtin().unwrap();
        let mut ids: Vec<&str> = c.items.iter().map(|i| i.id.as_str()).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
        for rule in [
            Rule::DecisionLogging,
            Rule::LogRetention,
            Rule::KillSwitchDrill,
            Rule::ApprovalGates,
            Rule::FailClosed,
            Rule::DecisionExplanation,
        ] {
            assert!(c.items.iter().any(|i| i.evidence == rule), "{rule:?}");
        }
    }
}
