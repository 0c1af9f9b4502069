"""Pydantic AI: calls scripted by a `FunctionModel` go through `ReinsToolset` in the agent's real
tool-execution path; a denied tool never runs; an approval defers the call until granted."""

from __future__ import annotations

from typing import Any

from pydantic_ai import Agent, DeferredToolRequests, DeferredToolResults
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.toolsets import FunctionToolset

from reins import AsyncReins
from reins.pydantic_ai import ReinsToolset

from .conftest import Server

RAN: list[str] = []
tools: FunctionToolset[Any] = FunctionToolset()


@tools.tool_plain
def crm_note(text: str) -> str:
    """Add a note."""
    RAN.append(f"note:{text}")
    return "noted"


@tools.tool_plain
def shell_exec(command: str) -> str:
    """Run a command."""
    RAN.append(f"shell:{command}")
    return "ran"


@tools.tool_plain
def payments_refund(order: str, amount: int) -> str:
    """Refund an order."""
    RAN.append(f"refund:{amount}")
    return "refunded"


NAMES = {"crm_note": "crm.note", "shell_exec": "shell.exec", "payments_refund": "payments.refund"}


def scripted(*calls: tuple[str, dict[str, Any]]) -> FunctionModel:
    """Calls each tool in turn, then answers with what the tools returned."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        turn = sum(isinstance(m, ModelResponse) for m in messages)
        if turn < len(calls):
            name, args = calls[turn]
            return ModelResponse(parts=[ToolCallPart(name, args, tool_call_id=f"c{turn}")])
        returns = [
            p.content
            for m in messages
            for p in getattr(m, "parts", [])
            if getattr(p, "part_kind", "") == "tool-return"
        ]
        return ModelResponse(parts=[TextPart(" | ".join(str(r) for r in returns))])

    return FunctionModel(respond)


def agent(server: Server, model: FunctionModel) -> Agent[None, str | DeferredToolRequests]:
    toolset = ReinsToolset(
        tools, client=AsyncReins(server.url, server.tokens["agent"]), tools=NAMES
    )
    return Agent(model, toolsets=[toolset], output_type=[str, DeferredToolRequests])


async def test_allowed_runs_denied_returns_the_reasons(server: Server) -> None:
    RAN.clear()
    result = await agent(
        server, scripted(("crm_note", {"text": "hi"}), ("shell_exec", {"command": "rm"}))
    ).run("go")
    assert isinstance(result.output, str)
    assert "noted" in result.output and "unknown_tool" in result.output
    assert RAN == ["note:hi"]


async def test_an_approval_defers_the_call_until_granted(server: Server) -> None:
    RAN.clear()
    a = agent(server, scripted(("payments_refund", {"order": "o-5", "amount": 20})))
    first = await a.run("refund")
    assert isinstance(first.output, DeferredToolRequests)
    (call,) = first.output.approvals
    approval_id = first.output.metadata[call.tool_call_id]["reins_approval_id"]
    assert RAN == []
    granted = server.post(
        f"/v1/approvals/{approval_id}/grant", server.tokens["approver"], {"comment": "ok"}
    )
    assert granted.status_code == 200, granted.text
    resumed = await a.run(
        message_history=first.all_messages(),
        deferred_tool_results=DeferredToolResults(approvals={call.tool_call_id: True}),
    )
    assert resumed.output == "refunded"
    assert RAN == ["refund:20"]
