//! Human approval of high-impact actions (EU AI Act Art 14(4)(d)).
//!
//! A `forbid` policy annotated `@approval("<group>")` whose condition excludes requests carrying
//! `context.approval` marks what needs a human. When every policy that denied a request is such a
//! policy, [`crate::decision::Pipeline`] answers deny with `approval_required` and records a
//! pending [`Approval`] bound to the exact request: agent, the user it acts for (`on_behalf_of`,
//! or none), action, resource and the SHA-256 of its canonical context. An approver (never the
//! requesting agent, never the user the request is made for, and by default not the agent's owner)
//! grants or denies it. The agent re-submits the same request with `approval_id`; Reins checks
//! binding, status, expiry and single use, then lets Cedar decide with the approval in context.
//!
//! Every request, grant, denial, expiry, cancellation and use is a ledger entry committed with
//! the state change. Open approvals are also kept in memory so the decision path never reads the
//! database; claiming one for use is atomic, so an approval is used at most once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::events::{ApprovalEvent, Entry, Event};
use crate::identity::Caller;
use crate::ids::ApprovalId;
use crate::ids::{AgentId, ToolId};
use crate::ledger::{Append, LedgerError, Sink};
use crate::model::DecisionRequest;
use crate::store::{ApprovalRow, SideEffect, Store, StoreError};
use crate::timestamp::Timestamp;

/// The policy annotation that marks an approval policy; its value names the approver group.
pub const ANNOTATION: &str = "approval";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ApprovalStatus)]
pub enum Status {
    Pending,
    Granted,
    Denied,
    Expired,
    Cancelled,
    Used,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Granted => "granted",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
            Self::Used => "used",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Granted,
            Self::Denied,
            Self::Expired,
            Self::Cancelled,
            Self::Used,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BoundResource {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

/// An approval and the exact request it is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Approval {
    pub id: ApprovalId,
    pub status: Status,
    pub agent_id: String,
    /// The user the agent asked for (the token's delegation), if any: part of the binding.
    #[serde(default)]
    pub on_behalf_of: Option<String>,
    pub action: String,
    pub resource: BoundResource,
    /// `sha256:<hex>` of the request's context in RFC 8785 form.
    pub context_digest: String,
    /// Who should approve: the `@approval` annotation's value.
    pub approver_group: String,
    pub policy_ids: Vec<String>,
    /// The decision that asked for it.
    pub evaluation_id: String,
    pub requested_at: Timestamp,
    pub expires_at: Timestamp,
    pub decided_by: Option<String>,
    pub decided_at: Option<Timestamp>,
    pub comment: Option<String>,
    pub used_at: Option<Timestamp>,
    pub used_decision_id: Option<String>,
}

/// Why an `approval_id` on a decision request cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    /// Only open approvals are kept in memory, so "unknown" and "closed" look alike here.
    #[error(
        "approval `{0}` is not open: it does not exist, or was already used, denied, expired or cancelled"
    )]
    Unknown(ApprovalId),
    #[error("approval `{0}` is {1}, not granted")]
    NotGranted(ApprovalId, &'static str),
    #[error("approval `{0}` has expired")]
    Expired(ApprovalId),
    #[error(
        "approval `{0}` was granted for a different request (agent, action, resource or context)"
    )]
    OtherRequest(ApprovalId),
    #[error(
        "approval `{id}` was granted for a request on behalf of {granted}, not {asked}",
        granted = user_or_none(.granted), asked = user_or_none(.asked)
    )]
    OtherUser {
        id: ApprovalId,
        granted: Option<String>,
        asked: Option<String>,
    },
    #[error("approval `{0}` has already been used")]
    AlreadyUsed(ApprovalId),
}

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("no approval `{0}`")]
    NotFound(ApprovalId),
    #[error("approval `{id}` is {status}; only a pending approval can be decided")]
    NotPending {
        id: ApprovalId,
        status: &'static str,
    },
    #[error("{0}")]
    NotAllowed(String),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The body of a grant or deny.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    #[serde(default)]
    pub comment: Option<String>,
}

/// Digest of a request's context, the part of the binding that carries the arguments.
pub fn context_digest(request: &DecisionRequest) -> String {
    let context = Value::Object(request.context.clone().unwrap_or_default());
    let canonical = crate::tlog::canonical::to_vec(&context).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(canonical)))
}

fn user_or_none(user: &Option<String>) -> String {
    match user {
        Some(u) => format!("`{u}`"),
        None => "no user".into(),
    }
}

pub struct Approvals {
    ledger: Arc<dyn Sink>,
    store: Store,
    ttl: Duration,
    owner_may_approve: bool,
    /// Pending and granted approvals.
    open: Mutex<HashMap<ApprovalId, Approval>>,
    /// Approvals being used by a decision not yet committed.
    claimed: Mutex<HashSet<ApprovalId>>,
    writes: tokio::sync::Mutex<()>,
}

impl Approvals {
    pub async fn load(
        store: Store,
        ledger: Arc<dyn Sink>,
        ttl: Duration,
        owner_may_approve: bool,
    ) -> Result<Self, StoreError> {
        let open = open_in(&store).await?;
        Ok(Self {
            ledger,
            store,
            ttl,
            owner_may_approve,
            open: Mutex::new(open),
            claimed: Mutex::new(HashSet::new()),
            writes: Default::default(),
        })
    }

    /// Reads the open approvals again: another replica requested, decided or used some.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let _serialised = self.writes.lock().await;
        self.refresh_open().await
    }

    /// Replaces the open approvals with the database's; the caller holds `writes`.
    async fn refresh_open(&self) -> Result<(), StoreError> {
        let open = open_in(&self.store).await?;
        if let Ok(mut current) = self.open.lock() {
            *current = open;
        }
        Ok(())
    }

    /// Approvals waiting for a human now.
    pub fn pending_count(&self) -> usize {
        self.open
            .lock()
            .map(|open| {
                open.values()
                    .filter(|a| a.status == Status::Pending)
                    .count()
            })
            .unwrap_or(0)
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new pending approval for `request`, not yet recorded.
    pub fn new_pending(
        &self,
        caller: &Caller,
        request: &DecisionRequest,
        group: String,
        policy_ids: Vec<String>,
        evaluation_id: &str,
        now: Timestamp,
    ) -> Approval {
        let expires = now.plus(self.ttl);
        Approval {
            id: ApprovalId::new(),
            status: Status::Pending,
            agent_id: caller.agent.to_string(),
            on_behalf_of: caller.on_behalf_of.as_ref().map(ToString::to_string),
            action: request.action.clone(),
            resource: BoundResource {
                kind: request.resource.kind.clone(),
                id: request.resource.id.clone(),
            },
            context_digest: context_digest(request),
            approver_group: group,
            policy_ids,
            evaluation_id: evaluation_id.to_owned(),
            requested_at: now,
            expires_at: expires,
            decided_by: None,
            decided_at: None,
            comment: None,
            used_at: None,
            used_decision_id: None,
        }
    }

    /// Checks, without changing anything, that approval `id` may be used for this request now.
    pub fn check(
        &self,
        id: &ApprovalId,
        caller: &Caller,
        request: &DecisionRequest,
        now: Timestamp,
    ) -> Result<Approval, Unusable> {
        let open = self.open.lock().map_err(|_| Unusable::Unknown(*id))?;
        let Some(approval) = open.get(id) else {
            return Err(Unusable::Unknown(*id));
        };
        if approval.status != Status::Granted {
            return Err(Unusable::NotGranted(*id, approval.status.as_str()));
        }
        if now >= approval.expires_at {
            return Err(Unusable::Expired(*id));
        }
        let bound = approval.agent_id == caller.agent.as_str()
            && approval.action == request.action
            && approval.resource.kind == request.resource.kind
            && approval.resource.id == request.resource.id
            && approval.context_digest == context_digest(request);
        if !bound {
            return Err(Unusable::OtherRequest(*id));
        }
        let asked = caller.on_behalf_of.as_ref().map(ToString::to_string);
        if approval.on_behalf_of != asked {
            return Err(Unusable::OtherUser {
                id: *id,
                granted: approval.on_behalf_of.clone(),
                asked,
            });
        }
        Ok(approval.clone())
    }

    /// Reserves an approval for one decision; false if another decision holds or used it.
    pub fn claim(&self, id: &ApprovalId) -> bool {
        let open = self
            .open
            .lock()
            .map(|o| o.contains_key(id))
            .unwrap_or(false);
        open && self
            .claimed
            .lock()
            .map(|mut c| c.insert(*id))
            .unwrap_or(false)
    }

    /// Gives a claim back (the decision was not recorded).
    pub fn unclaim(&self, id: &ApprovalId) {
        if let Ok(mut c) = self.claimed.lock() {
            c.remove(id);
        }
    }

    /// The ledger append that records `approval` as requested.
    pub fn requested(&self, approval: &Approval) -> Result<Append, ApprovalError> {
        self.append(approval, Event::ApprovalRequested(event_of(approval, None)))
    }

    /// The ledger append that records `approval` as used by `decision_id`.
    pub fn used(
        &self,
        approval: &Approval,
        decision_id: &str,
        now: Timestamp,
    ) -> Result<(Approval, Append), ApprovalError> {
        let used = Approval {
            status: Status::Used,
            used_at: Some(now),
            used_decision_id: Some(decision_id.to_owned()),
            ..approval.clone()
        };
        let append = self.append(&used, Event::ApprovalUsed(event_of(&used, None)))?;
        Ok((used, append))
    }

    /// After a decision was recorded: remember new pending approvals, retire used ones.
    pub fn recorded(&self, requested: Vec<Approval>, used: Vec<ApprovalId>) {
        if let Ok(mut open) = self.open.lock() {
            for approval in requested {
                open.insert(approval.id, approval);
            }
            for id in &used {
                open.remove(id);
            }
        }
        for id in &used {
            self.unclaim(id);
        }
    }

    fn append(&self, approval: &Approval, event: Event) -> Result<Append, ApprovalError> {
        let time = approval
            .used_at
            .or(approval.decided_at)
            .unwrap_or(approval.requested_at);
        Entry::new(time, event)
            .append(SideEffect::Approval(row_of(approval)))
            .map_err(|e| ApprovalError::Invalid {
                field: "comment",
                message: e.to_string(),
            })
    }

    /// Grants or denies a pending approval. `owner` is the requesting agent's owner.
    pub async fn decide(
        &self,
        approver: &Caller,
        id: &ApprovalId,
        grant: bool,
        verdict: Verdict,
        owner: Option<&str>,
        now: Timestamp,
    ) -> Result<Approval, ApprovalError> {
        let _serialised = self.writes.lock().await;
        let current = self.open_approval(id).await?;
        if current.status != Status::Pending {
            return Err(ApprovalError::NotPending {
                id: *id,
                status: current.status.as_str(),
            });
        }
        if now >= current.expires_at {
            return Err(ApprovalError::NotPending {
                id: *id,
                status: "expired",
            });
        }
        if approver.agent.as_str() == current.agent_id {
            return Err(ApprovalError::NotAllowed(
                "the requesting agent cannot approve its own request".into(),
            ));
        }
        if current.on_behalf_of.as_deref() == Some(approver.agent.as_str()) {
            return Err(ApprovalError::NotAllowed(format!(
                "`{}` cannot approve a request made on their own behalf",
                approver.agent
            )));
        }
        if !self.owner_may_approve && owner == Some(approver.agent.as_str()) {
            return Err(ApprovalError::NotAllowed("the agent's owner cannot approve its requests (approvals.owner_may_approve = false)".into()));
        }
        let decided = Approval {
            status: if grant {
                Status::Granted
            } else {
                Status::Denied
            },
            decided_by: Some(approver.agent.to_string()),
            decided_at: Some(now),
            comment: verdict.comment,
            ..current
        };
        let event = if grant {
            Event::ApprovalGranted(event_of(&decided, Some(approver)))
        } else {
            Event::ApprovalDenied(event_of(&decided, Some(approver)))
        };
        self.ledger
            .append(vec![self.append(&decided, event)?])
            .await?;
        if let Ok(mut open) = self.open.lock() {
            if grant {
                open.insert(decided.id, decided.clone());
            } else {
                open.remove(&decided.id);
            }
        }
        Ok(decided)
    }

    async fn open_approval(&self, id: &ApprovalId) -> Result<Approval, ApprovalError> {
        if let Some(a) = self.open.lock().ok().and_then(|o| o.get(id).cloned()) {
            return Ok(a);
        }
        match self.store.approval(&id.to_string()).await? {
            Some(row) => Ok(approval_of(row)?),
            None => Err(ApprovalError::NotFound(*id)),
        }
    }

    pub async fn get(&self, id: &ApprovalId) -> Result<Option<Approval>, StoreError> {
        self.store
            .approval(&id.to_string())
            .await?
            .map(approval_of)
            .transpose()
    }

    pub async fn list(
        &self,
        status: Option<Status>,
        limit: u32,
    ) -> Result<Vec<Approval>, StoreError> {
        self.store
            .approvals(status.map(Status::as_str), limit)
            .await?
            .into_iter()
            .map(approval_of)
            .collect()
    }

    /// Closes open approvals matching `pick` with `status`, one ledger entry each.
    async fn close_where(
        &self,
        status: Status,
        now: Timestamp,
        pick: impl Fn(&Approval) -> bool,
    ) -> Result<usize, ApprovalError> {
        let _serialised = self.writes.lock().await;
        // Replicas: approvals requested or decided elsewhere since the last control change are
        // in the database, not yet here; close what the database holds.
        if self.ledger.control_version().is_some() {
            self.refresh_open().await?;
        }
        let closing: Vec<Approval> = self
            .open
            .lock()
            .map(|o| o.values().filter(|a| pick(a)).cloned().collect())
            .unwrap_or_default();
        let claimed = self.claimed.lock().map(|c| c.clone()).unwrap_or_default();
        let mut appends = Vec::new();
        let mut closed = Vec::new();
        for approval in closing.into_iter().filter(|a| !claimed.contains(&a.id)) {
            let done = Approval {
                status,
                decided_at: Some(now),
                ..approval
            };
            let event = match status {
                Status::Expired => Event::ApprovalExpired(event_of(&done, None)),
                _ => Event::ApprovalCancelled(event_of(&done, None)),
            };
            appends.push(self.append(&done, event)?);
            closed.push(done.id);
        }
        if appends.is_empty() {
            return Ok(0);
        }
        self.ledger.append(appends).await?;
        if let Ok(mut open) = self.open.lock() {
            for id in &closed {
                open.remove(id);
            }
        }
        Ok(closed.len())
    }

    /// Records the expiry of every open approval past its `expires_at`.
    pub async fn expire_due(&self, now: Timestamp) -> Result<usize, ApprovalError> {
        self.close_where(Status::Expired, now, |a| a.expires_at <= now)
            .await
    }

    /// Cancels the open approvals whose request `covers` (agent, tool if the resource is one,
    /// action): how a kill switch takes the approvals in its scope with it.
    pub async fn cancel_in_scope(
        &self,
        covers: impl Fn(&AgentId, Option<&ToolId>, &str) -> bool,
        now: Timestamp,
    ) -> Result<usize, ApprovalError> {
        self.close_where(Status::Cancelled, now, |a| {
            let agent = a.agent_id.parse().ok();
            let tool = (a.resource.kind == "Tool")
                .then(|| a.resource.id.parse().ok())
                .flatten();
            agent.is_some_and(|agent| covers(&agent, tool.as_ref(), &a.action))
        })
        .await
    }

    /// Runs [`Approvals::expire_due`] every `interval` until the process ends.
    pub fn spawn_sweeper(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let approvals = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                if let Err(error) = approvals.expire_due(Timestamp::now()).await {
                    tracing::warn!(%error, "could not record approval expiries");
                }
            }
        })
    }
}

fn event_of(a: &Approval, actor: Option<&Caller>) -> ApprovalEvent {
    ApprovalEvent {
        approval_id: a.id.to_string(),
        status: a.status.as_str().to_owned(),
        agent_id: a.agent_id.clone(),
        on_behalf_of: a.on_behalf_of.clone(),
        action: a.action.clone(),
        resource: serde_json::json!({ "type": a.resource.kind, "id": a.resource.id }),
        context_digest: a.context_digest.clone(),
        approver_group: a.approver_group.clone(),
        evaluation_id: a.evaluation_id.clone(),
        expires_at: a.expires_at.to_string(),
        actor: actor.map(|c| c.agent.to_string()),
        comment: a.comment.clone(),
        used_decision_id: a.used_decision_id.clone(),
    }
}

fn row_of(a: &Approval) -> ApprovalRow {
    ApprovalRow {
        id: a.id.to_string(),
        status: a.status.as_str().to_owned(),
        agent_id: a.agent_id.clone(),
        on_behalf_of: a.on_behalf_of.clone(),
        action: a.action.clone(),
        resource_type: a.resource.kind.clone(),
        resource_id: a.resource.id.clone(),
        context_digest: a.context_digest.clone(),
        approver_group: a.approver_group.clone(),
        policy_ids: serde_json::to_string(&a.policy_ids).unwrap_or_else(|_| "[]".into()),
        evaluation_id: a.evaluation_id.clone(),
        requested_at: a.requested_at,
        expires_at: a.expires_at,
        decided_by: a.decided_by.clone(),
        decided_at: a.decided_at,
        comment: a.comment.clone(),
        used_at: a.used_at,
        used_decision_id: a.used_decision_id.clone(),
    }
}

fn approval_of(r: ApprovalRow) -> Result<Approval, StoreError> {
    let status = Status::parse(&r.status)
        .ok_or_else(|| StoreError::Corrupt(format!("approval {}: status `{}`", r.id, r.status)))?;
    Ok(Approval {
        status,
        policy_ids: serde_json::from_str(&r.policy_ids).unwrap_or_default(),
        resource: BoundResource {
            kind: r.resource_type,
            id: r.resource_id,
        },
        id: r
            .id
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("approval `{}`: {e}", r.id)))?,
        agent_id: r.agent_id,
        on_behalf_of: r.on_behalf_of,
        action: r.action,
        context_digest: r.context_digest,
        approver_group: r.approver_group,
        evaluation_id: r.evaluation_id,
        requested_at: r.requested_at,
        expires_at: r.expires_at,
        decided_by: r.decided_by,
        decided_at: r.decided_at,
        comment: r.comment,
        used_at: r.used_at,
        used_decision_id: r.used_decision_id,
    })
}

/// The pending and granted approvals in the store.
async fn open_in(store: &Store) -> Result<HashMap<ApprovalId, Approval>, StoreError> {
    let mut open = HashMap::new();
    for status in [Status::Pending, Status::Granted] {
        for row in store.approvals(Some(status.as_str()), u32::MAX).await? {
            let approval = approval_of(row)?;
            open.insert(approval.id, approval);
        }
    }
    Ok(open)
}
