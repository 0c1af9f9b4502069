"""The wire types of Reins's decision API, as pydantic models.

They mirror the server's OpenAPI document (`GET /openapi.json`); `tests/test_models.py` compares
every field and enum value with it, so the two cannot drift apart unnoticed. Unknown fields from a
newer server are kept (`extra="allow"`), never an error.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Outcome(str, Enum):
    ALLOW = "allow"
    DENY = "deny"


class ReasonCode(str, Enum):
    """Why an answer is what it is (`Reason.code`)."""

    POLICY = "policy"
    KILL_SWITCH = "kill_switch"
    APPROVAL_REQUIRED = "approval_required"
    APPROVAL_INVALID = "approval_invalid"
    NO_MATCHING_PERMIT = "no_matching_permit"
    POLICY_ERROR = "policy_error"
    UNKNOWN_AGENT = "unknown_agent"
    AGENT_SUSPENDED = "agent_suspended"
    UNKNOWN_TOOL = "unknown_tool"
    NO_POLICY = "no_policy"
    LEDGER_UNAVAILABLE = "ledger_unavailable"
    LEDGER_BACKLOG = "ledger_backlog"
    #: A policy's `@reason`: too many calls in a window; see `Reason.retry_after`.
    RATE_LIMITED = "rate_limited"
    #: A policy's `@reason`: the spend over a window would pass a cap.
    BUDGET_EXCEEDED = "budget_exceeded"
    #: A policy's `@reason`: the same call again and again in one session.
    LOOP_DETECTED = "loop_detected"
    #: Not from the server: the client could not get an answer in time (always a deny).
    UNREACHABLE = "unreachable"


class ApprovalStatus(str, Enum):
    PENDING = "pending"
    GRANTED = "granted"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    USED = "used"


class Reason(_Wire):
    code: ReasonCode | str
    policy_id: str | None = None
    annotations: dict[str, str] | None = None
    message: str | None = None
    killswitch_id: str | None = None
    #: Seconds until the window the denying policy names would count one call less.
    retry_after: int | None = None


class LedgerRef(_Wire):
    """Where the decision is recorded in the ledger."""

    index: int
    leaf_hash: str


class AccessRequest(_Wire):
    """With `approval_required`: the approval waiting for a human, and until when."""

    approval_id: str
    endpoint: str
    expires_at: str


class ResourceRef(_Wire):
    type: str
    id: str
    attributes: dict[str, Any] | None = None


class DecisionTrace(_Wire):
    trace_id: str | None = None
    parent_decision_id: str | None = None
    user_request: str | None = None


class DecisionRequest(_Wire):
    action: str
    resource: ResourceRef
    context: dict[str, Any] | None = None
    session_id: str | None = None
    approval_id: str | None = None
    intent: str | None = None
    trace: DecisionTrace | None = None
    compensates: str | None = None


class EvaluationError(_Wire):
    policy_id: str
    message: str


class Decision(_Wire):
    """Reins's answer to one request."""

    decision_id: str
    decision: Outcome
    reasons: list[Reason]
    errors: list[EvaluationError] = Field(default_factory=list)
    evaluated_at: str
    policy_digest: str | None = None
    ledger: LedgerRef | None = None
    access_request: AccessRequest | None = None
    trace_id: str | None = None
    evaluation_id: str | None = None
    #: The policy store that decided (absent for the default store).
    store: str | None = None

    @property
    def allowed(self) -> bool:
        return self.decision == Outcome.ALLOW

    @property
    def approval_required(self) -> bool:
        return any(r.code == ReasonCode.APPROVAL_REQUIRED for r in self.reasons)

    def describe(self) -> str:
        """The reasons in one line a person (or a model) can read."""
        parts = []
        for r in self.reasons:
            code = r.code.value if isinstance(r.code, ReasonCode) else r.code
            text = code
            if r.policy_id:
                text += f" ({r.policy_id})"
            if r.message:
                text += f": {r.message}"
            parts.append(text)
        return "; ".join(parts) or self.decision.value


class Approval(_Wire):
    """An approval and the request it is bound to."""

    id: str
    status: ApprovalStatus | str
    agent_id: str
    action: str
    expires_at: str
    resource: dict[str, Any] | None = None
    comment: str | None = None
    decided_by: str | None = None
    decided_at: str | None = None
