//! Objections to decisions and their resolution, each step a ledger entry.
//!
//! A person with the right role (by default `reviewer`, as the control policy says) records an
//! objection to a decision, whoever raised it: the affected person, a colleague, an auditor. A
//! reviewer then records how it was resolved: `upheld` (the decision stands) or `overturned` (it
//! should not have been made), with a comment. A contest is resolved once. What a resolution
//! changes in the world (undoing the action, changing a policy) is a step of its own, recorded
//! where it happens; this module keeps the human override on the record.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::events::{ContestEvent, Entry, EntryError, Event};
use crate::identity::Caller;
use crate::ids::{ContestId, DecisionId};
use crate::ledger::{LedgerError, LedgerRef, Sink};
use crate::store::{ContestRow, SideEffect, Store, StoreError};
use crate::timestamp::Timestamp;

/// Longest `statement` or `comment` accepted, in bytes.
pub const MAX_TEXT_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContestStatus {
    Open,
    /// The decision stands.
    Upheld,
    /// The decision should not have been made.
    Overturned,
}

impl ContestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Upheld => "upheld",
            Self::Overturned => "overturned",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Open, Self::Upheld, Self::Overturned]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// An objection, as recorded by a reviewer.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContestRequest {
    /// The objection in the objector's words (at most 4 KiB).
    pub statement: String,
    /// Whose objection it is when not the recorder's own (a reference to the affected person,
    /// not their personal data).
    #[serde(default)]
    pub raised_by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    Upheld,
    Overturned,
}

/// How a contest was resolved.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolutionRequest {
    pub resolution: Resolution,
    /// Why, in words (required, at most 4 KiB).
    pub comment: String,
}

/// A contest as it stands.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Contest {
    pub id: ContestId,
    pub decision_id: String,
    pub status: ContestStatus,
    pub statement: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raised_by: Option<String>,
    pub contested_by: String,
    #[schema(value_type = String)]
    pub contested_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
    #[schema(value_type = Option<String>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Timestamp>,
    /// The ledger entry of the step just taken (in the answer to that step).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger: Option<LedgerRef>,
}

#[derive(Debug, thiserror::Error)]
pub enum ContestError {
    #[error("no decision {0}")]
    NoDecision(DecisionId),
    #[error("no contest {0}")]
    NotFound(ContestId),
    #[error("contest {id} is already resolved ({status})")]
    AlreadyResolved { id: ContestId, status: &'static str },
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

pub struct Contests {
    store: Store,
    ledger: Arc<dyn Sink>,
    /// Steps are checked and recorded one at a time in this process; across replicas the
    /// database takes a step only from the version it follows.
    writes: tokio::sync::Mutex<()>,
}

impl Contests {
    pub fn new(store: Store, ledger: Arc<dyn Sink>) -> Self {
        Self {
            store,
            ledger,
            writes: Default::default(),
        }
    }

    /// Records an objection to decision `id` by `caller` (already authorized).
    pub async fn contest(
        &self,
        caller: &Caller,
        id: &DecisionId,
        request: ContestRequest,
    ) -> Result<Contest, ContestError> {
        let statement = text("statement", request.statement)?;
        let raised_by = request
            .raised_by
            .map(|r| text("raised_by", r))
            .transpose()?;
        let _serialised = self.writes.lock().await;
        let decision = self
            .store
            .decision(id)
            .await?
            .ok_or(ContestError::NoDecision(*id))?;
        let row = ContestRow {
            id: ContestId::new().to_string(),
            decision_id: id.to_string(),
            version: 1,
            status: ContestStatus::Open.as_str().into(),
            statement,
            raised_by,
            contested_by: caller.agent.to_string(),
            contested_at: Timestamp::now(),
            comment: None,
            resolved_by: None,
            resolved_at: None,
        };
        let event = Event::DecisionContested(event_of(&row, &decision.agent_id, &row.contested_by));
        self.record(row, event, row_time).await
    }

    /// Records how contest `id` was resolved, by `caller` (already authorized). Once only.
    pub async fn resolve(
        &self,
        caller: &Caller,
        id: &ContestId,
        request: ResolutionRequest,
    ) -> Result<Contest, ContestError> {
        let comment = text("comment", request.comment)?;
        let _serialised = self.writes.lock().await;
        let current = self
            .store
            .contest(&id.to_string())
            .await?
            .ok_or(ContestError::NotFound(*id))?;
        let status = status_of(&current)?;
        if status != ContestStatus::Open {
            return Err(ContestError::AlreadyResolved {
                id: *id,
                status: status.as_str(),
            });
        }
        let agent = match current.decision_id.parse() {
            Ok(decision) => self.store.decision(&decision).await?.map(|d| d.agent_id),
            Err(_) => None,
        }
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "contest {id} names decision {}, which is not stored",
                current.decision_id
            ))
        })?;
        let row = ContestRow {
            version: current.version + 1,
            status: match request.resolution {
                Resolution::Upheld => ContestStatus::Upheld,
                Resolution::Overturned => ContestStatus::Overturned,
            }
            .as_str()
            .into(),
            comment: Some(comment),
            resolved_by: Some(caller.agent.to_string()),
            resolved_at: Some(Timestamp::now()),
            ..current
        };
        let event = Event::ContestResolved(event_of(&row, &agent, caller.agent.as_str()));
        let resolved_at = |r: &ContestRow| r.resolved_at.unwrap_or(r.contested_at);
        match self.record(row, event, resolved_at).await {
            Err(ContestError::Ledger(LedgerError::Conflict(_))) => {
                Err(ContestError::AlreadyResolved {
                    id: *id,
                    status: "by another replica",
                })
            }
            other => other,
        }
    }

    async fn record(
        &self,
        row: ContestRow,
        event: Event,
        time: fn(&ContestRow) -> Timestamp,
    ) -> Result<Contest, ContestError> {
        let entry = Entry {
            time: time(&row).to_string(),
            event,
        };
        let append = entry.append(SideEffect::Contest(row.clone()))?;
        let ledger = self
            .ledger
            .append(vec![append])
            .await
            .map_err(ContestError::Ledger)?
            .pop();
        Ok(Contest {
            ledger,
            ..contest_of(row)?
        })
    }

    /// A decision's contests, oldest first.
    pub async fn of_decision(&self, id: &DecisionId) -> Result<Vec<Contest>, ContestError> {
        self.store
            .contests_of(id)
            .await?
            .into_iter()
            .map(contest_of)
            .collect()
    }
}

fn row_time(row: &ContestRow) -> Timestamp {
    row.contested_at
}

fn event_of(row: &ContestRow, agent: &str, actor: &str) -> ContestEvent {
    ContestEvent {
        contest_id: row.id.clone(),
        decision_id: row.decision_id.clone(),
        agent_id: agent.to_owned(),
        actor: actor.to_owned(),
        status: row.status.clone(),
        statement: row.statement.clone(),
        raised_by: row.raised_by.clone(),
        comment: row.comment.clone(),
    }
}

fn text(field: &'static str, value: String) -> Result<String, ContestError> {
    let invalid = |message: &str| ContestError::Invalid {
        field,
        message: message.into(),
    };
    if value.trim().is_empty() {
        return Err(invalid("must not be empty"));
    }
    if value.len() > MAX_TEXT_BYTES {
        return Err(invalid("at most 4096 bytes"));
    }
    Ok(value)
}

fn status_of(row: &ContestRow) -> Result<ContestStatus, StoreError> {
    ContestStatus::parse(&row.status).ok_or_else(|| {
        StoreError::Corrupt(format!("contest {} has status `{}`", row.id, row.status))
    })
}

fn contest_of(row: ContestRow) -> Result<Contest, ContestError> {
    let status = status_of(&row)?;
    let id = row
        .id
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("contest id {}: {e}", row.id)))?;
    Ok(Contest {
        id,
        decision_id: row.decision_id,
        status,
        statement: row.statement,
        raised_by: row.raised_by,
        contested_by: row.contested_by,
        contested_at: row.contested_at,
        comment: row.comment,
        resolved_by: row.resolved_by,
        resolved_at: row.resolved_at,
        ledger: None,
    })
}
