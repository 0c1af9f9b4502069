"""`@guard("payments.refund")`: a function that runs only when Reins allows the call.

The call's arguments, bound to the function's parameter names, are the request's `args`. A deny
raises `Denied`; `approval_required` raises `ApprovalRequired`, or with `on_approval="wait"`
polls the approval until a human decides (or it expires), then asks again with the approval and
runs the function only on that allow.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, cast

from pydantic_core import to_jsonable_python

from ._client import AsyncReins, Reins
from ._errors import ApprovalRequired, Denied
from ._models import ApprovalStatus, Decision

F = TypeVar("F", bound=Callable[..., Any])
OnApproval = Literal["raise", "wait"]

_default_sync: Reins | None = None
_default_async: AsyncReins | None = None


def _sync_client() -> Reins:
    global _default_sync
    if _default_sync is None:
        _default_sync = Reins()
    return _default_sync


def _async_client() -> AsyncReins:
    global _default_async
    if _default_async is None:
        _default_async = AsyncReins()
    return _default_async


def call_args(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """The call's arguments by parameter name, as JSON values (anything else as its text)."""
    bound = inspect.signature(fn).bind_partial(*args, **kwargs)
    bound.apply_defaults()
    named: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        if name in ("self", "cls"):
            continue
        named[name] = to_jsonable_python(value, fallback=str)
    return named


def _failure(e: BaseException) -> str:
    return f"raised {type(e).__name__}: {e}"[:2048]


def raise_unless_allowed(decision: Decision, base_url: str) -> None:
    """Raises the exception a denied or held call gets."""
    if decision.allowed:
        return
    if decision.approval_required and decision.access_request:
        raise ApprovalRequired(decision, base_url + decision.access_request.endpoint)
    raise Denied(decision)


def guard(
    tool: str,
    *,
    client: Reins | AsyncReins | None = None,
    action: str = "invoke",
    on_approval: OnApproval = "raise",
    session_id: str | None = None,
    report_outcome: bool = True,
) -> Callable[[F], F]:
    """Decorates a function or coroutine function so that each call asks Reins first. With
    `report_outcome` (the default), what came of an allowed call is reported to Reins as its
    decision's outcome: `succeeded` when the function returns, `failed` (naming the exception)
    when it raises; a report that cannot be made is logged and changes nothing for the caller."""

    def wrap(fn: F) -> F:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                reins = client if isinstance(client, AsyncReins) else _async_client()
                named = call_args(fn, args, kwargs)
                decision = await reins.decide(tool, named, action=action, session_id=session_id)
                if decision.approval_required and on_approval == "wait" and decision.access_request:
                    approval_id = decision.access_request.approval_id
                    approval = await reins.wait_for_approval(approval_id)
                    if approval.status == ApprovalStatus.GRANTED:
                        decision = await reins.decide(
                            tool,
                            named,
                            action=action,
                            session_id=session_id,
                            approval_id=approval_id,
                        )
                raise_unless_allowed(decision, reins._config.base_url)
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as e:
                    if report_outcome:
                        await reins.outcome(decision.decision_id, "failed", summary=_failure(e))
                    raise
                if report_outcome:
                    await reins.outcome(decision.decision_id, "succeeded")
                return result

            return cast(F, run_async)

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            reins = client if isinstance(client, Reins) else _sync_client()
            named = call_args(fn, args, kwargs)
            decision = reins.decide(tool, named, action=action, session_id=session_id)
            if decision.approval_required and on_approval == "wait" and decision.access_request:
                approval_id = decision.access_request.approval_id
                approval = reins.wait_for_approval(approval_id)
                if approval.status == ApprovalStatus.GRANTED:
                    decision = reins.decide(
                        tool,
                        named,
                        action=action,
                        session_id=session_id,
                        approval_id=approval_id,
                    )
            raise_unless_allowed(decision, reins._config.base_url)
            try:
                result = fn(*args, **kwargs)
            except BaseException as e:
                if report_outcome:
                    reins.outcome(decision.decision_id, "failed", summary=_failure(e))
                raise
            if report_outcome:
                reins.outcome(decision.decision_id, "succeeded")
            return result

        return cast(F, run)

    return wrap
