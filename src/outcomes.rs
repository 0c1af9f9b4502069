//! What came of allowed actions: the outcome an agent (or an enforcement point acting for it)
//! reports once the action ran, each a ledger entry linked to its decision.
//!
//! A decision records what an agent was allowed to do; its outcome records what then happened
//! (succeeded, failed, partial, not executed). One outcome per decision, only for an allow, only
//! from the agent that asked or a caller with role `pep`. Allowed decisions left without one are
//! the gaps in the audit trail (`Pipeline::without_outcome` lists them).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::events::{Entry, EntryError, Event, OutcomeEvent};
use crate::identity::{Caller, roles};
use crate::ids::DecisionId;
use crate::ledger::{LedgerError, LedgerRef, Sink};
use crate::store::{OutcomeRow, SideEffect, Store, StoreError};
use crate::timestamp::Timestamp;

/// Longest `summary` accepted, in bytes.
pub const MAX_SUMMARY_BYTES: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeStatus {
    Succeeded,
    Failed,
    Partial,
    NotExecuted,
}

impl OutcomeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Partial => "partial",
            Self::NotExecuted => "not_executed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::Succeeded,
            Self::Failed,
            Self::Partial,
            Self::NotExecuted,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// What the reporter says happened.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutcomeReport {
    pub status: OutcomeStatus,
    /// What happened, in a sentence or two (at most 2 KiB).
    #[serde(default)]
    pub summary: Option<String>,
    /// SHA-256 of the action's result, 64 hex digits.
    #[serde(default)]
    pub result_sha256: Option<String>,
    /// When the action finished (RFC 3339); default: when the report arrived.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub completed_at: Option<Timestamp>,
}

/// An outcome as recorded.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecordedOutcome {
    pub decision_id: String,
    pub agent_id: String,
    pub status: OutcomeStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_sha256: Option<String>,
    #[schema(value_type = Option<String>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Timestamp>,
    /// The agent, or the enforcement point that reported for it.
    pub reported_by: String,
    #[schema(value_type = String)]
    pub recorded_at: Timestamp,
    /// The outcome's own ledger entry (in the answer to the report).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger: Option<LedgerRef>,
}

#[derive(Debug, thiserror::Error)]
pub enum OutcomeError {
    #[error("no decision {0}")]
    NotFound(DecisionId),
    #[error("decision {0} was a deny: only an allowed action has an outcome")]
    NotAllowed(DecisionId),
    #[error(
        "decision {decision} was made for agent `{agent}`: only it, or a caller with role `pep`, reports its outcome"
    )]
    Forbidden { decision: DecisionId, agent: String },
    #[error("decision {0} already has an outcome")]
    AlreadyReported(DecisionId),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Ledger(LedgerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Entry(#[from] EntryError),
}

pub struct Outcomes {
    store: Store,
    ledger: Arc<dyn Sink>,
    /// Reports are checked and recorded one at a time in this process; across replicas the
    /// database takes only the first per decision.
    writes: tokio::sync::Mutex<()>,
}

impl Outcomes {
    pub fn new(store: Store, ledger: Arc<dyn Sink>) -> Self {
        Self {
            store,
            ledger,
            writes: Default::default(),
        }
    }

    /// Records `report` as the outcome of decision `id`, for `caller` (see the module docs).
    pub async fn report(
        &self,
        caller: &Caller,
        id: &DecisionId,
        report: OutcomeReport,
    ) -> Result<RecordedOutcome, OutcomeError> {
        check(&report)?;
        let _serialised = self.writes.lock().await;
        let decision = self
            .store
            .decision(id)
            .await?
            .ok_or(OutcomeError::NotFound(*id))?;
        if caller.agent.as_str() != decision.agent_id
            && caller.require_any_role(&[roles::PEP]).is_err()
        {
            return Err(OutcomeError::Forbidden {
                decision: *id,
                agent: decision.agent_id,
            });
        }
        if decision.decision != "allow" {
            return Err(OutcomeError::NotAllowed(*id));
        }
        if self.store.outcome(id).await?.is_some() {
            return Err(OutcomeError::AlreadyReported(*id));
        }
        let now = Timestamp::now();
        let row = OutcomeRow {
            decision_id: id.to_string(),
            agent_id: decision.agent_id.clone(),
            status: report.status.as_str().to_owned(),
            summary: report.summary.clone(),
            result_sha256: report.result_sha256.clone(),
            completed_at: report.completed_at,
            reported_by: caller.agent.to_string(),
            recorded_at: now,
        };
        let entry = Entry {
            time: now.to_string(),
            event: Event::DecisionOutcome(OutcomeEvent {
                decision_id: row.decision_id.clone(),
                agent_id: row.agent_id.clone(),
                status: row.status.clone(),
                summary: row.summary.clone(),
                result_sha256: row.result_sha256.clone(),
                completed_at: row.completed_at.map(|t| t.to_string()),
                reported_by: row.reported_by.clone(),
            }),
        };
        let append = entry.append(SideEffect::Outcome(row.clone()))?;
        let ledger = match self.ledger.append(vec![append]).await {
            Ok(mut refs) => refs.pop(),
            Err(LedgerError::Conflict(_)) => return Err(OutcomeError::AlreadyReported(*id)),
            Err(e) => return Err(OutcomeError::Ledger(e)),
        };
        Ok(RecordedOutcome {
            ledger,
            ..recorded(row)?
        })
    }

    /// The outcome reported for decision `id`, if any.
    pub async fn get(&self, id: &DecisionId) -> Result<Option<RecordedOutcome>, OutcomeError> {
        self.store.outcome(id).await?.map(recorded).transpose()
    }
}

fn check(report: &OutcomeReport) -> Result<(), OutcomeError> {
    if report
        .summary
        .as_ref()
        .is_some_and(|s| s.len() > MAX_SUMMARY_BYTES)
    {
        return Err(OutcomeError::Invalid {
            field: "summary",
            message: format!("at most {MAX_SUMMARY_BYTES} bytes"),
        });
    }
    if let Some(hash) = &report.result_sha256
        && (hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(OutcomeError::Invalid {
            field: "result_sha256",
            message: "must be 64 hex digits (a SHA-256)".into(),
        });
    }
    Ok(())
}

fn recorded(row: OutcomeRow) -> Result<RecordedOutcome, OutcomeError> {
    let status = OutcomeStatus::parse(&row.status).ok_or_else(|| {
        OutcomeError::Store(StoreError::Corrupt(format!(
            "outcome of {} has status `{}`",
            row.decision_id, row.status
        )))
    })?;
    Ok(RecordedOutcome {
        decision_id: row.decision_id,
        agent_id: row.agent_id,
        status,
        summary: row.summary,
        result_sha256: row.result_sha256,
        completed_at: row.completed_at,
        reported_by: row.reported_by,
        recorded_at: row.recorded_at,
        ledger: None,
    })
}
