"""OpenAI Agents SDK: Reins asks before each function tool runs, through the SDK's own hooks.

    from reins.openai_agents import governed

    agent = Agent(name="refunds", tools=governed([refund, lookup]))

`governed` gives each function tool two things:
- `needs_approval`, which asks Reins when the model calls the tool. A call Reins holds for a human
  (`approval_required`) becomes the SDK's own interruption: the run stops with
  `result.interruptions`, and `reins_approval(item)` names the Reins approval it waits for. Once a
  human granted it in Reins, approve the item in the SDK (`state.approve(item)`) and resume; the
  call is asked again with that approval, and runs only if Reins allows it.
- a tool input guardrail, which lets the call run only on Reins's allow. A deny rejects it with
  content naming Reins's reasons: the model reads them as the tool's output; the tool does not run.

Each call is one Reins decision (two when it was held: the ask and the ask with the approval).
`reins_guardrail()` alone is the guardrail without the approval flow: a held call is then
rejected, with the approval's id in the message.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from agents import (
    FunctionTool,
    RunContextWrapper,
    ToolGuardrailFunctionOutput,
    ToolInputGuardrail,
    ToolInputGuardrailData,
    tool_input_guardrail,
)

from ._client import AsyncReins
from ._models import Decision


class _Calls:
    """Per tool call: the decision `needs_approval` got. The approval a held call waits for is
    in `_HELD`, where `reins_approval` finds it; both are taken when the guardrail runs."""

    def __init__(self) -> None:
        self.decided: dict[str, Decision] = {}


def _args(arguments: str | None) -> dict[str, Any]:
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError:
        return {"raw": arguments}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def _verdict(decision: Decision) -> ToolGuardrailFunctionOutput:
    if decision.allowed:
        return ToolGuardrailFunctionOutput.allow(output_info=decision.decision_id)
    info: dict[str, Any] = {"decision_id": decision.decision_id, "reasons": decision.describe()}
    message = f"Reins denied this call: {decision.describe()}"
    if decision.approval_required and decision.access_request:
        info["approval_id"] = decision.access_request.approval_id
        info["endpoint"] = decision.access_request.endpoint
        message = (
            "Reins holds this call for a human's approval "
            f"(approval {decision.access_request.approval_id}); ask again once it is granted."
        )
    return ToolGuardrailFunctionOutput.reject_content(message=message, output_info=info)


def _guardrail(
    client: AsyncReins | None, names: dict[str, str], calls: _Calls | None
) -> ToolInputGuardrail[Any]:
    @tool_input_guardrail(name="reins")
    async def reins(data: ToolInputGuardrailData) -> ToolGuardrailFunctionOutput:
        context = data.context
        call_id = context.tool_call_id
        if calls is not None and call_id in calls.decided:
            return _verdict(calls.decided.pop(call_id))
        approval_id = _HELD.pop(call_id, None) if calls is not None else None
        decision = await (client or AsyncReins()).decide(
            names.get(context.tool_name, context.tool_name),
            _args(context.tool_arguments),
            approval_id=approval_id,
        )
        return _verdict(decision)

    guard: ToolInputGuardrail[Any] = reins
    return guard


def reins_guardrail(
    client: AsyncReins | None = None, *, tools: dict[str, str] | None = None
) -> ToolInputGuardrail[Any]:
    """The guardrail alone (see the module docs); `tools` maps a tool's name to its Reins id."""
    return _guardrail(client, tools or {}, None)


def reins_approval(item: Any) -> str | None:
    """The Reins approval an interrupted call (a `ToolApprovalItem`) waits for."""
    raw = getattr(item, "raw_item", None)
    call_id = getattr(raw, "call_id", None) or (
        raw.get("call_id") if isinstance(raw, dict) else None
    )
    return _HELD.get(str(call_id)) if call_id else None


#: Approvals waited for, by call id, for `reins_approval` (shared by every governed tool).
_HELD: dict[str, str] = {}


def governed(
    tools: Sequence[Any], client: AsyncReins | None = None, *, names: dict[str, str] | None = None
) -> list[Any]:
    """The same tools, each function tool asking Reins through `needs_approval` and the Reins
    guardrail first among its input guardrails (other tools are returned as they are)."""
    mapping = names or {}
    calls = _Calls()
    guard = _guardrail(client, mapping, calls)
    out = []
    for t in tools:
        if isinstance(t, FunctionTool):
            t.tool_input_guardrails = [guard, *(t.tool_input_guardrails or [])]
            t.needs_approval = _asker(client, mapping.get(t.name, t.name), calls)
        out.append(t)
    return out


def _asker(client: AsyncReins | None, reins_id: str, calls: _Calls) -> Any:
    """`needs_approval` for one tool: asks Reins, keeps the answer for the guardrail, and asks the
    SDK to interrupt the run when Reins holds the call for a human."""

    async def needs_approval(
        ctx: RunContextWrapper[Any], args: dict[str, Any], call_id: str
    ) -> bool:
        if call_id in _HELD:
            return True
        decision = await (client or AsyncReins()).decide(reins_id, args)
        if decision.approval_required and decision.access_request:
            _HELD[call_id] = decision.access_request.approval_id
            return True
        calls.decided[call_id] = decision
        return False

    return needs_approval
