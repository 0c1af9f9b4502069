//! The EU AI Act checklist: the catalogue in `compliance/eu-ai-act.toml`, evaluated per agent.
//!
//! Each item is either checked by a rule against the ledger, the registry, the policies and the
//! configuration, or needs an attestation: a `compliance_officer`'s statement, recorded as a
//! ledger entry. Every status comes with the evidence it rests on (ledger indices, the
//! checkpoint, configuration values), so an auditor can check the claim rather than trust it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::{ComplianceError, Sources, invalid, kill_switch_uses, parse_time, sha256};
use crate::decision::{probe_tool, record_of};
use crate::events::{AttestationEvent, Entry, Event};
use crate::ids::AgentId;
use crate::ledger::{Ledger, LedgerRef, ProofBuilder};
use crate::model::{Decision, Outcome, ReasonCode};
use crate::registry::{AgentEntry, ToolRisk};
use crate::store::SideEffect;
use crate::tlog::merkle::{leaf_hash, verify_inclusion};
use crate::tlog::note::Checkpoint;

const CATALOGUE: &str = include_str!("../../compliance/eu-ai-act.toml");
const TEMPLATE: &str = include_str!("../../compliance/checklist.md.j2");

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
    pub attestation_id: String,
    pub agent_id: String,
    pub item: String,
    pub statement: String,
    pub document_sha256: Option<String>,
    pub actor: String,
    pub recorded_at: String,
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
    pub evaluated_at: String,
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
    let now = OffsetDateTime::now_utc();

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
        evaluated_at: super::rfc3339(now),
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
    now: OffsetDateTime,
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

const ALL_TIME: (&str, &str) = ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z");

/// Art 12: every decision recorded, and the record verifiable.
async fn decision_logging(sources: &Sources, agent: &AgentId) -> Result<Finding, ComplianceError> {
    use Status::*;
    let counts = sources
        .store
        .decision_counts(agent, ALL_TIME.0, ALL_TIME.1)
        .await?;
    let total = counts.allow + counts.deny;
    if total == 0 {
        return Ok(Finding::new(
            EvidenceMissing,
            "no decision about this agent is recorded yet",
            Vec::new(),
        ));
    }
    if counts.unrecorded > 0 {
        return Ok(Finding::new(
            EvidenceMissing,
            format!(
                "{} of {total} decisions have no ledger entry",
                counts.unrecorded
            ),
            Vec::new(),
        ));
    }
    let mut evidence = vec![Evidence::text(format!(
        "{total} decisions, each with a ledger entry (indices {} to {})",
        counts.first_index.unwrap_or_default(),
        counts.last_index.unwrap_or_default()
    ))];
    let Some(row) = sources.store.latest_checkpoint().await? else {
        return Ok(Finding::new(
            EvidenceMissing,
            "no signed checkpoint yet",
            evidence,
        ));
    };
    let verified = sources
        .signer
        .verifier()
        .verify(&row.note)
        .map_err(|e| e.to_string())
        .and_then(|text| Checkpoint::parse(text).map_err(|e| e.to_string()));
    let checkpoint = match verified {
        Ok(c) => c,
        Err(e) => {
            return Ok(Finding::new(
                EvidenceMissing,
                format!("the latest checkpoint does not verify: {e}"),
                evidence,
            ));
        }
    };
    if super::stored_root(&sources.store, checkpoint.size).await? != checkpoint.root {
        return Ok(Finding::new(
            EvidenceMissing,
            format!(
                "the stored tree of size {} does not match its signed checkpoint",
                checkpoint.size
            ),
            evidence,
        ));
    }
    evidence.push(Evidence {
        checkpoint: Some(row.note.clone()),
        ..Evidence::text(format!(
            "signed checkpoint of size {} verifies with the ledger key and matches the stored tree",
            checkpoint.size
        ))
    });
    let newest = sources
        .store
        .decision_indices(agent, 0, checkpoint.size)
        .await?
        .last()
        .copied();
    if let Some(index) = newest {
        let bytes = sources
            .store
            .entries(index, index + 1)
            .await?
            .into_iter()
            .next()
            .map(|r| r.entry)
            .ok_or_else(|| ComplianceError::Damaged(format!("entry {index} is missing")))?;
        let proof = ProofBuilder::new(sources.store.clone(), checkpoint.size)
            .inclusion(&[index])
            .await?
            .remove(0);
        if verify_inclusion(
            &leaf_hash(&bytes),
            index,
            checkpoint.size,
            &proof,
            &checkpoint.root,
        )
        .is_err()
        {
            return Ok(Finding::new(
                EvidenceMissing,
                format!("the inclusion proof of decision entry {index} does not verify"),
                evidence,
            ));
        }
        evidence.push(Evidence::at(
            "the newest checkpointed decision's entry hashes to a leaf whose inclusion proof verifies",
            index,
        ));
    }
    Ok(Finding::new(
        Satisfied,
        "every decision is in the ledger and the ledger verifies",
        evidence,
    ))
}

/// Art 13(3)(d),(f): the record says what the agent is for and how humans oversee it.
fn instructions(entry: &AgentEntry) -> Finding {
    let r = &entry.agent.record;
    let mut missing = Vec::new();
    if r.intended_purpose
        .as_deref()
        .is_none_or(|s| s.trim().is_empty())
    {
        missing.push("intended_purpose");
    }
    if r.documentation.human_oversight.is_empty() {
        missing.push("documentation.human_oversight");
    }
    let evidence = vec![Evidence::text(format!(
        "agent record version {} (registry, ledgered with every change)",
        entry.agent.meta.version
    ))];
    if missing.is_empty() {
        Finding::new(
            Status::Satisfied,
            "intended purpose and oversight measures are documented; the model card shows them",
            evidence,
        )
    } else {
        Finding::new(
            Status::EvidenceMissing,
            format!("the agent record lacks {}", missing.join(" and ")),
            evidence,
        )
    }
}

/// Art 14(4)(d): no high- or critical-risk declared tool is usable without a human.
fn approval_gates(sources: &Sources, entry: &AgentEntry) -> Finding {
    let agent = &entry.agent.id;
    let mut evidence = Vec::new();
    let mut open = Vec::new();
    for tool_id in &entry.agent.record.tools {
        let Some(tool) = sources.snapshot.tool(tool_id) else {
            continue;
        };
        if !matches!(tool.tool.record.risk, ToolRisk::High | ToolRisk::Critical) {
            continue;
        }
        let verdict = probe_tool(
            &sources.pack,
            &sources.snapshot,
            &sources.types,
            agent,
            tool_id,
        );
        match verdict.as_ref().map(gate_of) {
            Some(Gate::Approval(ids)) => evidence.push(Evidence::text(format!(
                "`{tool_id}` ({}) needs an approval: {}",
                tool.tool.record.risk.as_str(),
                ids.join(", ")
            ))),
            Some(Gate::Forbidden(why)) => evidence.push(Evidence::text(format!(
                "`{tool_id}` ({}) is denied outright without approval: {why}",
                tool.tool.record.risk.as_str()
            ))),
            Some(Gate::Open) | None => open.push(tool_id.to_string()),
        }
    }
    if !open.is_empty() {
        return Finding::new(
            Status::EvidenceMissing,
            format!(
                "the active policies allow {} without any human approval",
                open.join(", ")
            ),
            evidence,
        );
    }
    if evidence.is_empty() {
        evidence.push(Evidence::text(
            "the agent declares no high- or critical-risk tool",
        ));
    }
    Finding::new(
        Status::Satisfied,
        format!(
            "checked against policy pack {}: no high- or critical-risk tool runs without a human",
            sources.pack.digest()
        ),
        evidence,
    )
}

enum Gate {
    Open,
    Approval(Vec<String>),
    Forbidden(String),
}

fn gate_of(decision: &Decision) -> Gate {
    if decision.decision == Outcome::Allow {
        return Gate::Open;
    }
    let ids = || {
        decision
            .reasons
            .iter()
            .filter_map(|r| r.policy_id.clone())
            .collect::<Vec<_>>()
    };
    if decision
        .reasons
        .iter()
        .any(|r| r.code == ReasonCode::ApprovalRequired)
    {
        return Gate::Approval(ids());
    }
    let ids = ids();
    Gate::Forbidden(if ids.is_empty() {
        "no permit matches".into()
    } else {
        format!("forbidden by {}", ids.join(", "))
    })
}

/// Art 14(4)(e): the stop button was used or drilled recently.
async fn kill_switch_drill(
    sources: &Sources,
    agent: &AgentId,
    now: OffsetDateTime,
) -> Result<Finding, ComplianceError> {
    let window = sources.config.drill_window;
    let config = Some(format!(
        "compliance.drill_window = {}",
        humantime::format_duration(window)
    ));
    let Some(latest) = kill_switch_uses(sources, agent).await?.pop() else {
        return Ok(Finding::new(
            Status::EvidenceMissing,
            "no kill switch covering this agent was ever engaged or drilled",
            vec![Evidence {
                config,
                ..Evidence::text("drill window")
            }],
        ));
    };
    let when = parse_time("engaged_at", &latest.engaged_at)?;
    let age = now - when;
    let evidence = vec![
        Evidence::at(
            format!(
                "{} `{}`{} at {}: {}",
                if latest.drill { "drill" } else { "engagement" },
                latest.switch_id,
                if latest.global { " (global)" } else { "" },
                latest.engaged_at,
                latest.reason
            ),
            latest.ledger_index,
        ),
        Evidence {
            config,
            ..Evidence::text("drill window")
        },
    ];
    if age > window {
        Ok(Finding::new(
            Status::EvidenceStale,
            format!(
                "the last engagement or drill is {} days old, older than the window",
                age.whole_days()
            ),
            evidence,
        ))
    } else {
        Ok(Finding::new(
            Status::Satisfied,
            "a kill switch covering the agent was engaged or drilled within the window",
            evidence,
        ))
    }
}

/// Art 15: the start-up fail-closed self-check passed against the pack now active.
async fn fail_closed(sources: &Sources) -> Result<Finding, ComplianceError> {
    let latest = sources.entries_of(&["self_check"]).await?.pop();
    let Some((
        index,
        Entry {
            event: Event::SelfCheck(check),
            time,
        },
    )) = latest
    else {
        return Ok(Finding::new(
            Status::EvidenceMissing,
            "no fail-closed self-check is recorded",
            Vec::new(),
        ));
    };
    let failed: Vec<&str> = check
        .probes
        .iter()
        .filter(|p| !p.passed)
        .map(|p| p.name.as_str())
        .collect();
    let evidence = vec![Evidence::at(
        format!(
            "self-check at {time}: {} probes ({}), policy pack {}",
            check.probes.len(),
            check
                .probes
                .iter()
                .map(|p| format!("{} -> {}", p.name, p.got))
                .collect::<Vec<_>>()
                .join("; "),
            check.policy_digest
        ),
        index,
    )];
    if !check.passed {
        return Ok(Finding::new(
            Status::EvidenceMissing,
            format!("the latest self-check failed: {}", failed.join(", ")),
            evidence,
        ));
    }
    if check.policy_digest != sources.pack.digest().as_str() {
        return Ok(Finding::new(
            Status::EvidenceStale,
            "the latest self-check ran against another policy pack",
            evidence,
        ));
    }
    Ok(Finding::new(
        Status::Satisfied,
        "the fail-closed self-check passed against the active policy pack",
        evidence,
    ))
}

/// Art 19(1), 26(6): logs kept at least six months, and none missing.
async fn log_retention(sources: &Sources) -> Result<Finding, ComplianceError> {
    let days = sources.config.log_retention_days;
    let config = Some(format!(
        "compliance.log_retention_days = {}",
        days.map_or("unset (indefinite)".into(), |d| d.to_string())
    ));
    let stored = sources.store.entry_count().await?;
    let mut evidence = vec![
        Evidence {
            config,
            ..Evidence::text("declared retention")
        },
        Evidence::text(format!(
            "{stored} entries stored for a tree of {} (Reins deletes none)",
            sources.ledger_size
        )),
    ];
    if let Some(first) = sources.store.entries(0, 1).await?.into_iter().next() {
        let (_, entry) = super::decode(first)?;
        evidence.push(Evidence::at(
            format!("the first entry, of {}, is still stored", entry.time),
            0,
        ));
    }
    if days.is_some_and(|d| d < MIN_RETENTION_DAYS) {
        return Ok(Finding::new(
            Status::EvidenceMissing,
            format!("retention is configured below {MIN_RETENTION_DAYS} days"),
            evidence,
        ));
    }
    if stored < sources.ledger_size {
        return Ok(Finding::new(
            Status::EvidenceMissing,
            format!(
                "{} ledger entries are missing",
                sources.ledger_size - stored
            ),
            evidence,
        ));
    }
    Ok(Finding::new(
        Status::Satisfied,
        "retention of at least six months is configured and every entry is kept",
        evidence,
    ))
}

/// Art 86: the agent's decisions can be explained one by one.
async fn decision_explanation(
    sources: &Sources,
    agent: &AgentId,
) -> Result<Finding, ComplianceError> {
    const SAMPLE: u32 = 20;
    let rows = sources.store.decisions(Some(agent), None, SAMPLE).await?;
    if rows.is_empty() {
        return Ok(Finding::new(
            Status::EvidenceMissing,
            "no decision about this agent is recorded yet",
            Vec::new(),
        ));
    }
    let mut evidence = Vec::new();
    for row in &rows {
        let record = record_of(row);
        let explained = record
            .is_ok_and(|r| !r.decision.reasons.is_empty() && r.decision.policy_digest.is_some())
            && row.ledger_index.is_some();
        if !explained {
            return Ok(Finding::new(
                Status::EvidenceMissing,
                format!(
                    "decision {} cannot be explained: its reasons, policy digest or ledger entry are missing",
                    row.id
                ),
                evidence,
            ));
        }
        if evidence.len() < 3 {
            evidence.push(Evidence {
                ledger_index: row.ledger_index.map(|i| i as u64),
                ..Evidence::text(format!("GET /v1/decisions/{}", row.id))
            });
        }
    }
    Ok(Finding::new(
        Status::Satisfied,
        format!(
            "the {} newest decisions are retrievable with their reasons and policy digest",
            rows.len()
        ),
        evidence,
    ))
}

/// Art 9: the active policy version passed its store's policy tests before it became active.
async fn policy_tests(sources: &Sources) -> Result<Finding, ComplianceError> {
    let digest = sources.pack.digest().to_string();
    let entries = sources
        .entries_of(&["policy_tested", "policy_activated"])
        .await?;
    // The last activation of the default store's active digest, and the test run just before it.
    // (ledger index, passed, checks) of a test run.
    type Run = (u64, bool, usize);
    let mut tested: Option<Run> = None;
    let mut found: Option<(u64, Option<Run>)> = None;
    for (index, entry) in entries {
        match entry.event {
            Event::PolicyTested(t) if t.store == crate::ids::DEFAULT_STORE => {
                tested = (t.policy_digest == digest).then_some((index, t.passed, t.checks));
            }
            Event::PolicyActivated(a)
                if a.store == crate::ids::DEFAULT_STORE && a.policy_digest == digest =>
            {
                found = Some((index, tested));
            }
            _ => {}
        }
    }
    match found {
        Some((activated, Some((run, true, checks)))) => Ok(Finding::new(
            Status::Satisfied,
            format!("the active policy version {digest} passed its policy tests before activation"),
            vec![
                Evidence::at(format!("policy tests passed ({checks} checks)"), run),
                Evidence::at("activation", activated),
            ],
        )),
        Some((activated, _)) => Ok(Finding::new(
            Status::EvidenceMissing,
            "the active policy version was activated without a passing test run",
            vec![Evidence::at("activation", activated)],
        )),
        None => Ok(Finding::new(
            Status::EvidenceMissing,
            "no activation of the active policy version is recorded",
            Vec::new(),
        )),
    }
}

/// Every attestation recorded for `agent`, oldest first.
pub async fn attestations(
    sources: &Sources,
    agent: &AgentId,
) -> Result<Vec<Attestation>, ComplianceError> {
    Ok(sources
        .entries_of(&["attestation_recorded"])
        .await?
        .into_iter()
        .filter_map(|(index, entry)| match entry.event {
            Event::AttestationRecorded(a) if a.agent_id == agent.as_str() => Some(Attestation {
                attestation_id: a.attestation_id,
                agent_id: a.agent_id,
                item: a.item,
                statement: a.statement,
                document_sha256: a.document_sha256,
                actor: a.actor,
                recorded_at: entry.time,
                ledger_index: index,
            }),
            _ => None,
        })
        .collect())
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
        attestation_id: uuid::Uuid::now_v7().to_string(),
        agent_id: agent.to_string(),
        item: request.item,
        statement: statement.to_owned(),
        document_sha256,
        actor: actor.to_owned(),
    };
    let entry = Entry {
        time: crate::store::now(),
        event: Event::AttestationRecorded(event.clone()),
    };
    let append = entry
        .append(SideEffect::None)
        .map_err(|e| invalid("statement", e.to_string()))?;
    let reference = ledger.append(vec![append]).await?.remove(0);
    Ok((
        Attestation {
            attestation_id: event.attestation_id,
            agent_id: event.agent_id,
            item: event.item,
            statement: event.statement,
            document_sha256: event.document_sha256,
            actor: event.actor,
            recorded_at: entry.time,
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
