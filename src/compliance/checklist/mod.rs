//! The EU AI Act checklist: the catalogue in `compliance/eu-ai-act.toml`, evaluated per agent.
//!
//! Each item first gets its scope ([`scope`]): whether it binds this agent's registrant (tier,
//! role, Annex, deployer kind) and from when (Art 113). Then a rule checks what Reins holds (the
//! ledger, the registry, the policies, the configuration), or the item needs an attestation: a
//! `compliance_officer`'s statement, recorded as a ledger entry and valid for
//! `compliance.attestation_validity`. Statuses claim no more than the evidence shows: `satisfied`
//! only where Reins's records prove the obligation itself (for the agent's tool calls), and
//! `supporting_evidence` where they support but cannot prove it. An attestation stands beside the
//! evidence; it never turns contrary evidence into a pass.

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
use crate::registry::AgentEntry;
use crate::registry::ai_act::Day;
use crate::store::SideEffect;
use crate::tlog::merkle::{leaf_hash, verify_inclusion};
use crate::tlog::note::Checkpoint;

mod incidents;
mod rules;
pub mod scope;

use incidents::*;
use rules::*;

const CATALOGUE: &str = include_str!("../../../compliance/eu-ai-act.toml");
const TEMPLATE: &str = include_str!("../../../compliance/checklist.md.j2");

/// Art 19(1) and 26(6): "at least six months", which can be 184 days (1 Jul to 1 Jan).
pub const MIN_RETENTION_DAYS: u32 = 184;

/// The catalogue of obligations.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    pub version: String,
    /// The text the quotations are from.
    pub source: String,
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
    /// A further condition on the agent's `ai_act` record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
    /// A date (`YYYY-MM-DD`), or `high_risk`: the Annex's date for the high-risk rules.
    #[schema(value_type = String)]
    pub applies_from: AppliesFrom,
    pub title: String,
    /// The Act's own words the item rests on.
    pub quote: String,
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

impl ItemRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::Deployer => "deployer",
            Self::Both => "both",
        }
    }
}

/// When an item applies ([`scope`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde_with::SerializeDisplay, serde_with::DeserializeFromStr,
)]
pub enum AppliesFrom {
    Date(crate::registry::ai_act::Day),
    /// 2 Dec 2027 for Annex III systems, 2 Aug 2028 for Annex I ones.
    HighRisk,
}

impl std::fmt::Display for AppliesFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppliesFrom::Date(day) => day.fmt(f),
            AppliesFrom::HighRisk => f.write_str("high_risk"),
        }
    }
}

impl std::str::FromStr for AppliesFrom {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "high_risk" => Ok(AppliesFrom::HighRisk),
            day => day.parse().map(AppliesFrom::Date),
        }
    }
}

/// A condition on the agent's `ai_act` record (see the catalogue's header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    AnnexIii,
    #[serde(rename = "annex_iii_except_point_2")]
    AnnexIiiExceptPoint2,
    Fria,
    PublicBodyAnnexIii,
    ClaimedNotHighRisk,
    GpaiModel,
}

impl Condition {
    /// "to ...": whom the condition admits, for a reader.
    pub fn describe(self) -> &'static str {
        match self {
            Self::AnnexIii => "to Annex III systems",
            Self::AnnexIiiExceptPoint2 => "to Annex III systems other than point 2",
            Self::Fria => {
                "to public bodies and private entities providing public services using Annex III \
                 systems (not point 2), and to deployers of Annex III points 5(b) and (c)"
            }
            Self::PublicBodyAnnexIii => {
                "to public-authority deployers of Annex III systems other than point 2"
            }
            Self::ClaimedNotHighRisk => {
                "to Annex III systems registered below the high tier (Art 6(3))"
            }
            Self::GpaiModel => "where the registrant supplies the general-purpose AI model",
        }
    }
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
    OversightStatistics,
    PurposeHistory,
    SuspensionRecords,
    CorrectiveAction,
    IncidentReporting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ChecklistStatus)]
pub enum Status {
    /// Reins's records prove the obligation itself (for the agent's tool calls).
    Satisfied,
    /// Reins's records support the obligation but cannot prove it.
    SupportingEvidence,
    /// A valid attestation stands, beside any supporting evidence.
    Attested,
    AttestationRequired,
    /// The evidence contradicts the obligation.
    EvidenceMissing,
    /// The evidence or the attestation is older than its window.
    EvidenceStale,
    /// The agent record lacks what says whether or when the item applies.
    ScopingNeeded,
    NotApplicable,
    NotYetApplicable,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Satisfied => "satisfied",
            Self::SupportingEvidence => "supporting_evidence",
            Self::Attested => "attested",
            Self::AttestationRequired => "attestation_required",
            Self::EvidenceMissing => "evidence_missing",
            Self::EvidenceStale => "evidence_stale",
            Self::ScopingNeeded => "scoping_needed",
            Self::NotApplicable => "not_applicable",
            Self::NotYetApplicable => "not_yet_applicable",
        }
    }
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
    /// `recorded_at` plus `compliance.attestation_validity`.
    pub valid_until: crate::timestamp::Timestamp,
    /// Past `valid_until` when the checklist was evaluated.
    pub stale: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ItemResult {
    #[serde(flatten)]
    pub item: Item,
    pub status: Status,
    /// Why the status is what it is, in one sentence.
    pub detail: String,
    /// The date the item applies (or applied) from for this agent; absent when it does not
    /// apply or the record does not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applicable_from: Option<String>,
    /// For an item not yet applicable or not scoped: the status its evidence has today.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Status>,
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
    /// The text the catalogue quotes.
    pub catalogue_source: String,
    pub evaluated_at: crate::timestamp::Timestamp,
    pub policy_digest: String,
    pub ledger_size: u64,
    pub summary: BTreeMap<String, usize>,
    pub items: Vec<ItemResult>,
}

impl Catalogue {
    /// The catalogue compiled into this build.
    pub fn builtin() -> Result<Self, ComplianceError> {
        // Parsed once: every checklist (the console's fleet makes one per agent) starts here.
        static PARSED: std::sync::OnceLock<Result<Catalogue, String>> = std::sync::OnceLock::new();
        PARSED
            .get_or_init(|| toml::from_str(CATALOGUE).map_err(|e| e.to_string()))
            .clone()
            .map_err(|message| ComplianceError::Render {
                what: "the checklist catalogue",
                message,
            })
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
    let role = record.ai_act_role();
    let now = Timestamp::now();
    let attestations = attestations(sources, agent, now).await?;

    let mut items = Vec::with_capacity(catalogue.items.len());
    for item in catalogue.items {
        let attested: Vec<Attestation> = attestations
            .iter()
            .filter(|a| a.item == item.id)
            .cloned()
            .collect();
        // What keeps an applicable-looking item from applying now: (status, why).
        let (applicable_from, pending) = match scope::scope(&item, record, now.datetime().date()) {
            scope::Scope::NotApplicable(why) => {
                items.push(ItemResult {
                    item,
                    status: Status::NotApplicable,
                    detail: why,
                    applicable_from: None,
                    readiness: None,
                    evidence: Vec::new(),
                    attestations: attested,
                });
                continue;
            }
            scope::Scope::Applies { since } => (Some(since), None),
            scope::Scope::NotYet { from } => (
                Some(from),
                Some((
                    Status::NotYetApplicable,
                    format!("applies from {}", Day(from)),
                )),
            ),
            scope::Scope::Needs { field, why } => (
                None,
                Some((
                    Status::ScopingNeeded,
                    format!("set `{field}` in the agent record: this item {why}"),
                )),
            ),
        };
        let finding = finding(sources, entry, &item, &attested, now).await?;
        let (status, detail, readiness) = match pending {
            None => (finding.status, finding.detail, None),
            Some((status, why)) => (
                status,
                format!(
                    "{why}; today {}: {}",
                    finding.status.as_str(),
                    finding.detail
                ),
                Some(finding.status),
            ),
        };
        let result = ItemResult {
            item,
            status,
            detail,
            applicable_from: applicable_from.map(|d| Day(d).to_string()),
            readiness,
            evidence: finding.evidence,
            attestations: attested,
        };
        items.push(result);
    }
    let mut summary = BTreeMap::new();
    for item in &items {
        *summary.entry(item.status.as_str().to_owned()).or_insert(0) += 1;
    }
    Ok(Checklist {
        agent_id: agent.to_string(),
        agent_name: record.name.clone(),
        risk_tier: record.risk_tier.as_str().to_owned(),
        ai_act_role: role.map(|r| r.as_str().to_owned()),
        catalogue_version: catalogue.version,
        catalogue_source: catalogue.source,
        evaluated_at: now,
        policy_digest: sources.pack.digest().to_string(),
        ledger_size: sources.ledger_size,
        summary,
        items,
    })
}

/// What the evidence of one item shows, attestations beside it: a fresh attestation completes an
/// attestation item or supporting evidence, and answers a flag raised for one; it never turns
/// contrary or stale evidence into a pass.
async fn finding(
    sources: &Sources,
    entry: &AgentEntry,
    item: &Item,
    attested: &[Attestation],
    now: Timestamp,
) -> Result<Finding, ComplianceError> {
    let fresh = attested.iter().rev().find(|a| !a.stale);
    let stale = attested.iter().rev().find(|a| a.stale);
    let by = |a: &Attestation| {
        format!(
            "attested by {} at {} (ledger index {}), valid until {}",
            a.actor, a.recorded_at, a.ledger_index, a.valid_until
        )
    };
    let mut finding = match item.evidence {
        Rule::Attestation => Finding::new(
            Status::AttestationRequired,
            "needs a statement by a compliance officer",
            Vec::new(),
        ),
        rule => evaluate(sources, entry, rule, now).await?,
    };
    match (finding.status, fresh, stale) {
        (Status::AttestationRequired | Status::SupportingEvidence, Some(a), _) => {
            finding.detail = if finding.status == Status::SupportingEvidence {
                format!("{}; automatic support: {}", by(a), finding.detail)
            } else {
                by(a)
            };
            finding.status = Status::Attested;
        }
        (Status::AttestationRequired, None, Some(a)) if item.evidence == Rule::Attestation => {
            finding.status = Status::EvidenceStale;
            finding.detail = format!(
                "the attestation of {} (ledger index {}) expired at {}; attest again",
                a.recorded_at, a.ledger_index, a.valid_until
            );
        }
        (Status::EvidenceMissing | Status::EvidenceStale, Some(a), _) => {
            finding.detail = format!(
                "{}; an attestation does not outweigh it ({})",
                finding.detail,
                by(a)
            );
        }
        _ => {}
    }
    Ok(finding)
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
        Rule::ApprovalGates => approval_gates(sources, entry).await,
        Rule::KillSwitchDrill => kill_switch_drill(sources, agent, now).await,
        Rule::FailClosed => fail_closed(sources).await,
        Rule::LogRetention => log_retention(sources).await,
        Rule::DecisionExplanation => decision_explanation(sources, agent).await,
        Rule::PolicyTests => policy_tests(sources).await,
        Rule::OversightStatistics => oversight_statistics(sources, agent).await,
        Rule::PurposeHistory => purpose_history(sources, agent).await,
        Rule::SuspensionRecords => {
            let suspensions = suspension_records(sources, agent).await?;
            corrective_action(sources, agent, now, suspensions).await
        }
        Rule::CorrectiveAction => {
            let without = Finding::new(
                Status::AttestationRequired,
                "no serious incident is recorded for the agent; needs a statement of the \
                 corrective-action procedure",
                Vec::new(),
            );
            corrective_action(sources, agent, now, without).await
        }
        Rule::IncidentReporting => incident_reporting(sources, agent, now).await,
    }
}

/// Every attestation recorded for `agent`, oldest first, with its validity as of `now`.
pub async fn attestations(
    sources: &Sources,
    agent: &AgentId,
    now: Timestamp,
) -> Result<Vec<Attestation>, ComplianceError> {
    let validity = sources.config.attestation_validity;
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
            valid_until: recorded_at.plus(validity),
            stale: recorded_at.plus(validity) < now,
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
    let recorded_at = super::parse_time("time", &entry.time)?;
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
            recorded_at,
            ledger_index: reference.index,
            valid_until: recorded_at.plus(sources.config.attestation_validity),
            stale: false,
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
        assert!(c.source.contains("2024/1689"), "{}", c.source);
        for item in &c.items {
            assert!(
                item.quote.split_whitespace().count() >= 5,
                "{}: a quotation",
                item.id
            );
            assert!(
                !item.article.is_empty() && !item.title.is_empty(),
                "{}",
                item.id
            );
            assert!(!item.tiers.is_empty(), "{}: tiers", item.id);
        }
        for rule in [
            Rule::OversightStatistics,
            Rule::PurposeHistory,
            Rule::SuspensionRecords,
            Rule::CorrectiveAction,
            Rule::IncidentReporting,
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
