//! The wire types of decisions: what an agent asks ([`DecisionRequest`]), what it is answered
//! ([`Decision`], [`Reason`], [`Outcome`]) and a stored decision ([`DecisionRecord`]). Plain data,
//! shared by the pipeline, approvals, the ledger's events, the API and the compliance documents,
//! so none of them needs the pipeline to name a decision.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::ids::{ApprovalId, DecisionId};
use crate::ledger::LedgerRef;

/// What an agent asks: may I do `action` on `resource`?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// A Cedar action id from the schema, e.g. `invoke`.
    pub action: String,
    pub resource: ResourceRef,
    /// Cedar context. For `invoke`, the tool's arguments go in `args`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub context: Option<Map<String, Value>>,
    /// The agent's session, passed to Cedar as `context.session_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// A granted approval for exactly this request (from an earlier `approval_required` answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<ApprovalId>,
    /// The agent's stated reason for this action (at most `max_intent_bytes`, default 2 KiB).
    /// Recorded in the decision's ledger entry; policies see `context.intent_present`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    /// Where this action sits in the agent's work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<DecisionTrace>,
    /// The allowed decision this action undoes (a refund that reverses a charge, a restore that
    /// reverses a delete). It must be an allowed decision of the same agent, or of an agent that
    /// declares the caller among its `operators`; the link is recorded in this decision's entry,
    /// and the other decision lists this one in `compensated_by`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub compensates: Option<DecisionId>,
}

/// Where an action sits in the agent's work: its trace, the decision it follows from, the user
/// request it serves. Recorded with the decision.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionTrace {
    /// The agent's own trace id (any string up to 128 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The decision this action follows from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub parent_decision_id: Option<crate::ids::DecisionId>,
    /// The user's request this action serves (at most `max_intent_bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_request: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceRef {
    /// A Cedar entity type from the schema, e.g. `Tool`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    /// Attributes of a resource Reins does not register itself. Not allowed for `Tool`, whose
    /// attributes come from the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Allow,
    Deny,
}

impl Outcome {
    /// The wire name: `allow` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// Why the answer is what it is, machine-readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// A policy determined the decision; see `policy_id`.
    Policy,
    /// An engaged kill switch covers the request; see `killswitch_id`. Checked before Cedar.
    KillSwitch,
    /// Only approval policies denied it: a human can approve it; see `access_request`.
    ApprovalRequired,
    /// The request's `approval_id` cannot be used: unknown, not granted, expired, bound to another
    /// request, or used already.
    ApprovalInvalid,
    /// No permit policy matched (Cedar's default deny).
    NoMatchingPermit,
    /// A policy could not be evaluated on this request; Reins denies.
    PolicyError,
    UnknownAgent,
    AgentSuspended,
    UnknownTool,
    /// The active policy pack holds no policies.
    NoPolicy,
    /// The decision could not be recorded in the ledger.
    LedgerUnavailable,
    /// Replicas on PostgreSQL: more entries wait to be integrated into the ledger's tree than
    /// `database.backlog_limit`; decisions are denied until integration catches up.
    LedgerBacklog,
    /// A policy annotated `@reason("rate_limited")` denied it: too many calls in a window
    /// (`context.usage`); see `retry_after`.
    RateLimited,
    /// A policy annotated `@reason("budget_exceeded")` denied it: the spend over a window would
    /// pass a cap (`context.usage.spend`).
    BudgetExceeded,
    /// A policy annotated `@reason("loop_detected")` denied it: the same call again and again in
    /// one session (`context.session`).
    LoopDetected,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Reason {
    pub code: ReasonCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub killswitch_id: Option<crate::ids::SwitchId>,
    /// Seconds until the window the denying policy names (`@retry`) would count one call less.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl ReasonCode {
    /// Every code, in the order of the documentation (a form's choices).
    pub const ALL: [ReasonCode; 15] = [
        Self::Policy,
        Self::KillSwitch,
        Self::ApprovalRequired,
        Self::ApprovalInvalid,
        Self::NoMatchingPermit,
        Self::PolicyError,
        Self::UnknownAgent,
        Self::AgentSuspended,
        Self::UnknownTool,
        Self::NoPolicy,
        Self::LedgerUnavailable,
        Self::LedgerBacklog,
        Self::RateLimited,
        Self::BudgetExceeded,
        Self::LoopDetected,
    ];

    /// The codes a policy may give its denies with `@reason`.
    pub const FROM_POLICY: [ReasonCode; 3] =
        [Self::RateLimited, Self::BudgetExceeded, Self::LoopDetected];

    /// The wire name, for metrics and spans.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Policy => "policy",
            Self::KillSwitch => "kill_switch",
            Self::ApprovalRequired => "approval_required",
            Self::ApprovalInvalid => "approval_invalid",
            Self::NoMatchingPermit => "no_matching_permit",
            Self::PolicyError => "policy_error",
            Self::UnknownAgent => "unknown_agent",
            Self::AgentSuspended => "agent_suspended",
            Self::UnknownTool => "unknown_tool",
            Self::NoPolicy => "no_policy",
            Self::LedgerUnavailable => "ledger_unavailable",
            Self::LedgerBacklog => "ledger_backlog",
            Self::RateLimited => "rate_limited",
            Self::BudgetExceeded => "budget_exceeded",
            Self::LoopDetected => "loop_detected",
        }
    }
}

impl Reason {
    pub fn code(code: ReasonCode, message: impl Into<String>) -> Self {
        Self {
            code,
            policy_id: None,
            annotations: None,
            message: Some(message.into()),
            killswitch_id: None,
            retry_after: None,
        }
    }
}

/// A policy that failed to evaluate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EvaluationError {
    pub policy_id: String,
    pub message: String,
}

/// The answer to one decision request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Decision {
    #[schema(value_type = String, format = Uuid)]
    pub decision_id: DecisionId,
    pub decision: Outcome,
    pub reasons: Vec<Reason>,
    pub errors: Vec<EvaluationError>,
    /// SHA-256 of the policy pack that decided; null when none was evaluated.
    pub policy_digest: Option<String>,
    /// RFC 3339, UTC.
    pub evaluated_at: crate::timestamp::Timestamp,
    /// Where the decision is recorded in the ledger. Present on every answer that was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<LedgerRef>,
    /// With `approval_required`: this evaluation, as the AuthZEN access-request profile names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_id: Option<String>,
    /// With `approval_required`: where the approval waits and until when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_request: Option<AccessRequest>,
    /// The policy store that decided; absent for the default (agent-governance) store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// The W3C trace the request belonged to (its `traceparent`, or the server's own trace when
    /// tracing is exported): links this decision to the agent's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AccessRequest {
    pub approval_id: ApprovalId,
    /// Poll it here (`GET`); re-submit the same request with `approval_id` once granted.
    pub endpoint: String,
    pub expires_at: crate::timestamp::Timestamp,
}

/// A stored decision with who asked and exactly what: the basis of "explain this decision".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DecisionRecord {
    #[serde(flatten)]
    pub decision: Decision,
    pub agent_id: String,
    pub on_behalf_of: Option<String>,
    pub request: DecisionRequest,
    /// Allowed decisions that undo this one (their requests named it in `compensates`). Filled
    /// in when one decision is read, not in lists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub compensated_by: Vec<DecisionId>,
    /// The usage counts the decision saw (`context.usage`, `context.session`) and, when it was
    /// allowed, what it counted: as recorded in its ledger entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub usage: Option<crate::usage::Recorded>,
}
