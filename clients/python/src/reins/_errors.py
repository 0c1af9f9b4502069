"""The exceptions a guarded call raises instead of running."""

from __future__ import annotations

from ._models import Decision, Reason


class ReinsError(Exception):
    """Reins could not be asked, or refused the question itself (not a deny)."""


class Denied(ReinsError):
    """Reins denied the call (or could not be reached, which is a deny too); it did not run."""

    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        super().__init__(f"denied by Reins: {decision.describe()}")

    @property
    def reasons(self) -> list[Reason]:
        return self.decision.reasons

    @property
    def decision_id(self) -> str:
        return self.decision.decision_id

    @property
    def ledger_index(self) -> int | None:
        return self.decision.ledger.index if self.decision.ledger else None


class ApprovalRequired(Denied):
    """A human must approve the call first; ask again with `approval_id` once granted."""

    def __init__(self, decision: Decision, url: str) -> None:
        super().__init__(decision)
        self.url = url

    @property
    def approval_id(self) -> str:
        return self.decision.access_request.approval_id if self.decision.access_request else ""
