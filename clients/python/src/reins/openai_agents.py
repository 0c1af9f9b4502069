"""OpenAI Agents SDK: a tool input guardrail that asks Reins before each function tool runs.

    from reins.openai_agents import reins_guardrail, governed

    @function_tool(tool_input_guardrails=[reins_guardrail()])
    def refund(order_id: str, amount: int) -> str: ...

    agent = Agent(name="refunds", tools=governed([refund, lookup]))   # or add it to every tool

An allow lets the tool run. A deny rejects the call with content naming Reins's reasons: the model
reads it as the tool's output, and the tool does not run. A call Reins holds for a human
(`approval_required`) is rejected the same way, with the approval's id and URL in the message and
in the guardrail's `output_info`, so the run can tell the user and ask again once it is granted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from agents import (
    FunctionTool,
    ToolGuardrailFunctionOutput,
    ToolInputGuardrail,
    ToolInputGuardrailData,
    tool_input_guardrail,
)

from ._client import AsyncReins


def reins_guardrail(
    client: AsyncReins | None = None, *, tools: dict[str, str] | None = None
) -> ToolInputGuardrail[Any]:
    """The guardrail; `tools` maps a tool's name to its Reins id when they differ."""
    names = tools or {}

    @tool_input_guardrail(name="reins")
    async def reins(data: ToolInputGuardrailData) -> ToolGuardrailFunctionOutput:
        context = data.context
        try:
            args = json.loads(context.tool_arguments or "{}")
        except ValueError:
            args = {"raw": context.tool_arguments}
        decision = await (client or AsyncReins()).decide(
            names.get(context.tool_name, context.tool_name), args
        )
        if decision.allowed:
            return ToolGuardrailFunctionOutput.allow(output_info=decision.decision_id)
        info: dict[str, Any] = {"decision_id": decision.decision_id, "reasons": decision.describe()}
        message = f"Reins denied this call: {decision.describe()}"
        if decision.approval_required and decision.access_request:
            info["approval_id"] = decision.access_request.approval_id
            info["endpoint"] = decision.access_request.endpoint
            message = (
                "Reins holds this call for a human's approval "
                f"(approval {decision.access_request.approval_id}); "
                "ask again once it is granted."
            )
        return ToolGuardrailFunctionOutput.reject_content(message=message, output_info=info)

    guard: ToolInputGuardrail[Any] = reins
    return guard


def governed(
    tools: Sequence[Any], client: AsyncReins | None = None, *, names: dict[str, str] | None = None
) -> list[Any]:
    """The same tools, each function tool with the Reins guardrail first among its input
    guardrails (other tools are returned as they are)."""
    guard = reins_guardrail(client, tools=names)
    out = []
    for t in tools:
        if isinstance(t, FunctionTool):
            t.tool_input_guardrails = [guard, *(t.tool_input_guardrails or [])]
        out.append(t)
    return out
