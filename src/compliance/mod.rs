//! Evidence for compliance officers: model cards, the EU AI Act checklist, attestations and
//! audit packs, generated from the registry, the policies and the ledger.
//!
//! Everything here reads; the only write is an attestation, which is a ledger entry like any other
//! admin change. Documents are built from [`Sources`], a read-only view that the server builds
//! from its live state and the CLI from a data dir, so an export needs no running server. A
//! field nobody filled in is reported as missing, never invented.

pub mod card;
pub mod checklist;
pub mod explanation;
pub mod incident;
pub mod pack;
pub mod proof;

use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;

use crate::config::ComplianceConfig;
use crate::events::{Entry, Event, KillSwitchEvent};
use crate::ids::AgentId;
use crate::ledger::LedgerError;
use crate::policy::PolicyPack;
use crate::registry::{AgentEntry, EntityTypes, Snapshot};
use crate::store::{EntryRow, Store, StoreError};
use crate::timestamp::Timestamp;
use crate::tlog::merkle;
use crate::tlog::note::NoteSigner;

#[derive(Debug, thiserror::Error)]
pub enum ComplianceError {
    #[error("agent `{0}` is not registered")]
    UnknownAgent(AgentId),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("the ledger is damaged: {0}")]
    Damaged(String),
    #[error("cannot render {what}: {message}")]
    Render { what: &'static str, message: String },
    #[error("cannot write the audit pack: {0}")]
    Write(String),
}

pub(crate) fn invalid(field: &str, message: impl Into<String>) -> ComplianceError {
    ComplianceError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// A read-only view of everything the documents are made from.
pub struct Sources {
    pub store: Store,
    pub snapshot: Arc<Snapshot>,
    pub types: EntityTypes,
    /// The policy pack in force now.
    pub pack: Arc<PolicyPack>,
    pub config: ComplianceConfig,
    /// The ledger's signer: checkpoints and audit-pack manifests are signed by the same key.
    pub signer: Arc<NoteSigner>,
    /// Entries the ledger holds (the tree size).
    pub ledger_size: u64,
}

impl Sources {
    pub fn agent(&self, id: &AgentId) -> Result<&Arc<AgentEntry>, ComplianceError> {
        self.snapshot
            .agent(id)
            .ok_or_else(|| ComplianceError::UnknownAgent(id.clone()))
    }

    /// Ledger entries of some rare kinds, decoded, in index order.
    pub async fn entries_of(&self, kinds: &[&str]) -> Result<Vec<(u64, Entry)>, ComplianceError> {
        self.store
            .entries_of_kinds(kinds)
            .await?
            .into_iter()
            .map(decode)
            .collect()
    }

    /// The time of entry `index`.
    async fn entry_time(&self, index: u64) -> Result<Timestamp, ComplianceError> {
        let rows = self.store.entries(index, index + 1).await?;
        let row = rows
            .into_iter()
            .next()
            .ok_or_else(|| ComplianceError::Damaged(format!("entry {index} is missing")))?;
        let (_, entry) = decode(row)?;
        parse_time("time", &entry.time)
    }

    /// The first index whose entry is at or after `t`. Entry times follow the index order up to
    /// the few milliseconds that concurrent decisions take to be sequenced, so a binary search
    /// finds the boundary to within that.
    pub async fn index_at(&self, t: Timestamp) -> Result<u64, ComplianceError> {
        let (mut lo, mut hi) = (0, self.ledger_size);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.entry_time(mid).await? < t {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }
}

/// A configured duration as a person writes it: whole days as days (humantime would print 90
/// days as "2months 29days 2h 52m 48s", its months being 30.44 days), anything else as humantime
/// does.
pub(crate) fn human_duration(d: std::time::Duration) -> String {
    const DAY: u64 = 86_400;
    let secs = d.as_secs();
    if secs >= DAY && secs.is_multiple_of(DAY) && d.subsec_nanos() == 0 {
        let days = secs / DAY;
        return format!("{days} day{}", if days == 1 { "" } else { "s" });
    }
    humantime::format_duration(d).to_string()
}

/// Waits, up to `patience`, for a stored signed checkpoint covering the first `size` entries;
/// returns the size the latest one covers (smaller when none came in time, e.g. no server runs).
pub async fn await_checkpoint(
    store: &Store,
    size: u64,
    patience: std::time::Duration,
) -> Result<u64, ComplianceError> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        let covered = store
            .latest_checkpoint()
            .await?
            .map_or(0, |c| c.tree_size.max(0) as u64);
        if covered >= size || std::time::Instant::now() >= deadline {
            return Ok(covered);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

pub(crate) fn decode(row: EntryRow) -> Result<(u64, Entry), ComplianceError> {
    let entry = serde_json::from_slice(&row.entry)
        .map_err(|e| ComplianceError::Damaged(format!("entry {}: {e}", row.idx)))?;
    Ok((row.idx as u64, entry))
}

/// A half-open time range `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: Timestamp,
    pub to: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PeriodJson {
    pub from: Timestamp,
    pub to: Timestamp,
}

impl Period {
    /// From optional RFC 3339 bounds: `to` defaults to now, `from` to `to - default_length`.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        default_length: std::time::Duration,
    ) -> Result<Self, ComplianceError> {
        let to = match to {
            Some(t) => parse_time("to", t)?,
            None => Timestamp::now(),
        };
        let from = match from {
            Some(f) => parse_time("from", f)?,
            None => to.minus(default_length),
        };
        if from >= to {
            return Err(invalid("from", "must be earlier than `to`"));
        }
        Ok(Self { from, to })
    }

    pub fn contains(&self, t: Timestamp) -> bool {
        self.from <= t && t < self.to
    }

    pub fn json(&self) -> PeriodJson {
        PeriodJson {
            from: self.from,
            to: self.to,
        }
    }
}

/// `text` as a time, or an error naming `field`.
pub fn parse_time(field: &str, text: &str) -> Result<Timestamp, ComplianceError> {
    Timestamp::parse(text).map_err(|e| invalid(field, e.to_string()))
}

/// What the ledger says an agent did over a period: the model card's quantitative section and
/// the checklist's evidence.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Figures {
    pub period: PeriodJson,
    pub decisions: u64,
    pub allowed: u64,
    pub denied: u64,
    /// Denied / decisions; null without decisions.
    pub deny_rate: Option<f64>,
    /// Ledger indices of the first and last decision in the period.
    pub first_decision_index: Option<u64>,
    pub last_decision_index: Option<u64>,
    pub approvals: ApprovalFigures,
    pub kill_switch: Vec<KillSwitchUse>,
    /// What came of the allowed actions, per tool (outcomes as reported).
    pub outcomes: Vec<ToolOutcomes>,
}

/// What came of one tool's allowed calls in the period, as their outcomes were reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct ToolOutcomes {
    pub tool: String,
    pub allowed: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub partial: u64,
    pub not_executed: u64,
    /// Allowed calls with no outcome reported.
    pub not_reported: u64,
    /// Allowed calls a later allowed decision undid (`compensates`).
    pub compensated: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ApprovalFigures {
    pub requested: u64,
    pub granted: u64,
    pub denied: u64,
    pub expired: u64,
    /// Median time from request to a human's answer (granted or denied), in seconds.
    pub median_review_seconds: Option<f64>,
}

/// An engagement of a kill switch that covered the agent (its own or a global one).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct KillSwitchUse {
    pub ledger_index: u64,
    pub switch_id: String,
    pub engaged_at: crate::timestamp::Timestamp,
    pub drill: bool,
    pub global: bool,
    pub reason: String,
}

/// Figures for `agent` over `period`.
pub async fn figures(
    sources: &Sources,
    agent: &AgentId,
    period: &Period,
) -> Result<Figures, ComplianceError> {
    let counts = sources
        .store
        .decision_counts(agent, period.from, period.to)
        .await?;
    let decisions = counts.allow + counts.deny;

    let mut approvals = ApprovalFigures {
        requested: 0,
        granted: 0,
        denied: 0,
        expired: 0,
        median_review_seconds: None,
    };
    let mut reviews = Vec::new();
    for row in sources.store.approvals_of(agent).await? {
        let requested = row.requested_at;
        if !period.contains(requested) {
            continue;
        }
        approvals.requested += 1;
        use crate::approvals::Status;
        match Status::parse(&row.status) {
            Some(Status::Granted | Status::Used) => approvals.granted += 1,
            Some(Status::Denied) => approvals.denied += 1,
            Some(Status::Expired) => approvals.expired += 1,
            Some(Status::Pending | Status::Cancelled) => {}
            None => {
                return Err(ComplianceError::Damaged(format!(
                    "approval `{}`: status `{}`",
                    row.id, row.status
                )));
            }
        }
        if let (Some(decided), Some(_)) = (&row.decided_at, &row.decided_by) {
            reviews.push((decided.datetime() - requested.datetime()).as_seconds_f64());
        }
    }
    approvals.median_review_seconds = median(&mut reviews);

    let kill_switch = kill_switch_uses(sources, agent)
        .await?
        .into_iter()
        .filter(|u| period.contains(u.engaged_at))
        .collect();

    let mut outcomes: Vec<ToolOutcomes> = Vec::new();
    for count in sources
        .store
        .outcome_counts(agent, period.from, period.to)
        .await?
    {
        if outcomes.last().is_none_or(|t| t.tool != count.tool) {
            outcomes.push(ToolOutcomes {
                tool: count.tool.clone(),
                ..Default::default()
            });
        }
        let Some(tool) = outcomes.last_mut() else {
            continue;
        };
        tool.allowed += count.count;
        tool.compensated += count.compensated;
        let slot = match count.status.as_deref() {
            None => &mut tool.not_reported,
            Some("succeeded") => &mut tool.succeeded,
            Some("failed") => &mut tool.failed,
            Some("partial") => &mut tool.partial,
            Some("not_executed") => &mut tool.not_executed,
            Some(other) => {
                return Err(ComplianceError::Damaged(format!(
                    "an outcome of `{}` has status `{other}`",
                    count.tool
                )));
            }
        };
        *slot += count.count;
    }

    Ok(Figures {
        outcomes,
        period: period.json(),
        decisions,
        allowed: counts.allow,
        denied: counts.deny,
        deny_rate: (decisions > 0).then(|| counts.deny as f64 / decisions as f64),
        first_decision_index: counts.first_index,
        last_decision_index: counts.last_index,
        approvals,
        kill_switch,
    })
}

/// Every kill-switch engagement, from the ledger, that stopped `agent`: scoped to it, or global.
pub async fn kill_switch_uses(
    sources: &Sources,
    agent: &AgentId,
) -> Result<Vec<KillSwitchUse>, ComplianceError> {
    let mut uses = Vec::new();
    for (index, entry) in sources.entries_of(&["killswitch_engaged"]).await? {
        let engaged_at = entry
            .timestamp()
            .map_err(|e| ComplianceError::Damaged(format!("entry {index}: {e}")))?;
        let Event::KillswitchEngaged(KillSwitchEvent {
            switch_id,
            drill,
            scope,
            reason,
            ..
        }) = entry.event
        else {
            continue;
        };
        let scope = scope.as_object().cloned().unwrap_or_default();
        let global = scope.values().all(|v| v.is_null());
        let only_this_agent = scope.get("agent").and_then(|v| v.as_str()) == Some(agent.as_str())
            && scope.get("tool").is_none_or(|v| v.is_null())
            && scope.get("action").is_none_or(|v| v.is_null());
        if global || only_this_agent {
            uses.push(KillSwitchUse {
                ledger_index: index,
                switch_id,
                engaged_at,
                drill,
                global,
                reason,
            });
        }
    }
    Ok(uses)
}

pub(crate) fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// `sha256:<hex>` of a text.
pub fn sha256_text(text: &str) -> String {
    sha256(text.as_bytes())
}

/// `sha256:<hex>` of some bytes.
pub(crate) fn sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The root of the stored tree of `size` entries.
pub(crate) async fn stored_root(store: &Store, size: u64) -> Result<merkle::Hash, ComplianceError> {
    Ok(
        merkle::fold(&store.nodes(&merkle::range_nodes(0, size)).await?)
            .unwrap_or_else(merkle::empty_root),
    )
}

#[cfg(test)]
mod tests {

    #[test]
    fn whole_days_read_as_days() {
        use std::time::Duration;
        assert_eq!(
            super::human_duration(Duration::from_secs(90 * 86_400)),
            "90 days"
        );
        assert_eq!(super::human_duration(Duration::from_secs(86_400)), "1 day");
        assert_eq!(super::human_duration(Duration::from_secs(90)), "1m 30s");
    }
    use super::*;

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
