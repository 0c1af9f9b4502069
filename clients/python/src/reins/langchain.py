"""LangChain v1 / LangGraph: `ReinsMiddleware`, an `AgentMiddleware` that asks Reins before every
tool call the agent makes.

    agent = create_agent(model, tools, middleware=[ReinsMiddleware()])

An allow runs the tool. A deny becomes the tool's answer, a `ToolMessage` with status `error`
naming Reins's reasons, so the model can read why and the tool never runs. An approval
(`approval_required`) becomes a LangGraph `interrupt()` carrying the approval's id and URL; resume
the graph (`Command(resume=<approval id>)`) once a human granted it, and the call is asked again
with that approval. Without a checkpointer (no interrupts possible), `on_approval="deny"` answers
it as a deny instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from langchain.agents.middleware import AgentMiddleware, ToolCallRequest
from langchain_core.messages import ToolMessage
from langgraph.types import Command, interrupt

from ._client import AsyncReins, Reins
from ._models import Decision

Handler = Callable[[ToolCallRequest], "ToolMessage | Command[Any]"]
AsyncHandler = Callable[[ToolCallRequest], Awaitable["ToolMessage | Command[Any]"]]


def _denied(request: ToolCallRequest, decision: Decision) -> ToolMessage:
    return ToolMessage(
        content=f"Reins denied this call: {decision.describe()}",
        tool_call_id=request.tool_call["id"] or "",
        name=request.tool_call["name"],
        status="error",
    )


class ReinsMiddleware(AgentMiddleware):
    """Checks each tool call with Reins (see the module docs). The tool's name is the Reins tool
    id, optionally mapped by `tools={"lc_name": "reins.id"}`."""

    def __init__(
        self,
        client: Reins | None = None,
        async_client: AsyncReins | None = None,
        *,
        tools: dict[str, str] | None = None,
        on_approval: Literal["interrupt", "deny"] = "interrupt",
    ) -> None:
        super().__init__()
        self._client = client
        self._async_client = async_client
        self._names = tools or {}
        self._on_approval = on_approval

    def _tool(self, request: ToolCallRequest) -> tuple[str, dict[str, Any]]:
        name = request.tool_call["name"]
        return self._names.get(name, name), dict(request.tool_call.get("args") or {})

    def _approval_id(self, decision: Decision) -> str | None:
        """The approval a human granted for `decision`, via an interrupt; None to deny."""
        if self._on_approval != "interrupt" or decision.access_request is None:
            return None
        resumed = interrupt(
            {
                "reins": "approval_required",
                "approval_id": decision.access_request.approval_id,
                "endpoint": decision.access_request.endpoint,
                "expires_at": decision.access_request.expires_at,
                "reasons": decision.describe(),
            }
        )
        return str(resumed) if resumed else None

    def wrap_tool_call(
        self, request: ToolCallRequest, handler: Handler
    ) -> ToolMessage | Command[Any]:
        reins = self._client or Reins()
        tool, args = self._tool(request)
        decision = reins.decide(tool, args)
        if decision.approval_required and (approval := self._approval_id(decision)):
            decision = reins.decide(tool, args, approval_id=approval)
        if not decision.allowed:
            return _denied(request, decision)
        return handler(request)

    async def awrap_tool_call(
        self, request: ToolCallRequest, handler: AsyncHandler
    ) -> ToolMessage | Command[Any]:
        reins = self._async_client or AsyncReins()
        tool, args = self._tool(request)
        decision = await reins.decide(tool, args)
        if decision.approval_required and (approval := self._approval_id(decision)):
            decision = await reins.decide(tool, args, approval_id=approval)
        if not decision.allowed:
            return _denied(request, decision)
        return await handler(request)
