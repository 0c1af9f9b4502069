"""Reins for Python: ask Reins before every tool call, and fail closed.

    from reins import guard

    @guard("payments.refund")
    def refund(order_id: str, amount: int) -> str: ...

`Reins` and `AsyncReins` are the clients (token from `REINS_TOKEN`, server from `REINS_URL`);
`guard` wraps a function; adapters for agent frameworks are in `reins.langchain`,
`reins.pydantic_ai`, `reins.openai_agents` and `reins.claude_agent_sdk`.
"""

from ._client import AsyncReins, Reins, decision_body
from ._errors import ApprovalRequired, Denied, ReinsError
from ._guard import guard
from ._models import (
    AccessRequest,
    Approval,
    ApprovalStatus,
    Decision,
    DecisionRequest,
    LedgerRef,
    Outcome,
    Reason,
    ReasonCode,
)

__all__ = [
    "AccessRequest",
    "Approval",
    "ApprovalRequired",
    "ApprovalStatus",
    "AsyncReins",
    "Decision",
    "DecisionRequest",
    "Denied",
    "LedgerRef",
    "Outcome",
    "Reason",
    "ReasonCode",
    "Reins",
    "ReinsError",
    "decision_body",
    "guard",
]
