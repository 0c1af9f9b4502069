"""Pydantic AI: `ReinsToolset`, a `WrapperToolset` that asks Reins before each tool call.

    agent = Agent(model, toolsets=[ReinsToolset(my_toolset)],
                  output_type=[str, DeferredToolRequests])

An allow runs the tool. A deny is the tool's return, a text naming Reins's reasons, so the model
can read why; the tool does not run. An approval raises Pydantic AI's own `ApprovalRequired`
(deferred tools): the run ends with `DeferredToolRequests` whose metadata holds the Reins
approval's id and URL. Once a human granted it in Reins, resume the run with
`DeferredToolResults(approvals={call_id: True})`; the call is asked again with that approval and
runs only if Reins allows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic_ai import RunContext
from pydantic_ai.exceptions import ApprovalRequired
from pydantic_ai.toolsets import ToolsetTool, WrapperToolset

from ._client import AsyncReins


@dataclass
class ReinsToolset(WrapperToolset[Any]):
    """Wraps a toolset (see the module docs). `tools` maps a tool's name here to its Reins id
    when they differ (Pydantic AI names cannot hold dots)."""

    client: AsyncReins | None = None
    tools: dict[str, str] = field(default_factory=dict)
    #: The Reins approval each held call waits for, by tool call id.
    _held: dict[str, str] = field(default_factory=dict, repr=False)

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[Any], tool: ToolsetTool[Any]
    ) -> Any:
        reins = self.client or AsyncReins()
        reins_id = self.tools.get(name, name)
        call_id = ctx.tool_call_id or ""
        approval_id = self._held.pop(call_id, None) if ctx.tool_call_approved else None
        decision = await reins.decide(reins_id, tool_args, approval_id=approval_id)
        if decision.allowed:
            return await super().call_tool(name, tool_args, ctx, tool)
        if decision.approval_required and decision.access_request and not approval_id:
            self._held[call_id] = decision.access_request.approval_id
            raise ApprovalRequired(
                metadata={
                    "reins_approval_id": decision.access_request.approval_id,
                    "endpoint": decision.access_request.endpoint,
                    "expires_at": decision.access_request.expires_at,
                }
            )
        return f"Reins denied this call: {decision.describe()}"
