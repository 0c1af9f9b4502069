"""LangChain v1: tool calls made by a fake chat model go through `ReinsMiddleware` in the
agent's real tool-execution path; a denied tool's body never runs."""

from __future__ import annotations

from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from reins import AsyncReins, Reins
from reins.langchain import ReinsMiddleware

from .conftest import Server


class ToolCallingFake(GenericFakeChatModel):
    """The fake chat model, taking tools as the agent binds them (it answers from its script)."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> ToolCallingFake:
        return self


def script(*calls: tuple[str, dict[str, Any]]) -> ToolCallingFake:
    turns = [
        AIMessage(content="", tool_calls=[{"name": n, "args": a, "id": f"call-{i}"}])
        for i, (n, a) in enumerate(calls)
    ]
    return ToolCallingFake(messages=iter([*turns, AIMessage(content="done")]))


RAN: list[str] = []


@tool("crm.note")
def crm_note(text: str) -> str:
    """Add a note."""
    RAN.append(f"note:{text}")
    return "noted"


@tool("shell.exec")
def shell_exec(command: str) -> str:
    """Run a command."""
    RAN.append(f"shell:{command}")
    return "ran"


@tool("payments.refund")
def refund(order: str, amount: int) -> str:
    """Refund an order."""
    RAN.append(f"refund:{amount}")
    return "refunded"


def tool_messages(result: dict[str, Any]) -> list[ToolMessage]:
    return [m for m in result["messages"] if isinstance(m, ToolMessage)]


def test_allowed_runs_denied_answers_with_the_reasons(server: Server) -> None:
    RAN.clear()
    agent = create_agent(
        script(("crm.note", {"text": "hi"}), ("shell.exec", {"command": "rm -rf /"})),
        [crm_note, shell_exec],
        middleware=[ReinsMiddleware(Reins(server.url, server.tokens["agent"]), on_approval="deny")],
    )
    result = agent.invoke({"messages": [{"role": "user", "content": "go"}]})
    answers = tool_messages(result)
    assert answers[0].content == "noted"
    assert answers[1].status == "error" and "unknown_tool" in str(answers[1].content)
    assert RAN == ["note:hi"]


def test_an_approval_interrupts_and_resumes_with_the_granted_id(server: Server) -> None:
    RAN.clear()
    agent = create_agent(
        script(("payments.refund", {"order": "o-9", "amount": 30})),
        [refund],
        middleware=[ReinsMiddleware(Reins(server.url, server.tokens["agent"]))],
        checkpointer=InMemorySaver(),
    )
    config: Any = {"configurable": {"thread_id": "t-1"}}
    first = agent.invoke({"messages": [{"role": "user", "content": "refund"}]}, config)
    (pending,) = first["__interrupt__"]
    approval_id = pending.value["approval_id"]
    assert RAN == []
    granted = server.post(
        f"/v1/approvals/{approval_id}/grant", server.tokens["approver"], {"comment": "ok"}
    )
    assert granted.status_code == 200, granted.text
    result = agent.invoke(Command(resume=approval_id), config)
    assert tool_messages(result)[-1].content == "refunded"
    assert RAN == ["refund:30"]


async def test_async_agents_are_checked_too(server: Server) -> None:
    RAN.clear()
    agent = create_agent(
        script(("shell.exec", {"command": "ls"})),
        [shell_exec],
        middleware=[
            ReinsMiddleware(
                async_client=AsyncReins(server.url, server.tokens["agent"]), on_approval="deny"
            )
        ],
    )
    result = await agent.ainvoke({"messages": [{"role": "user", "content": "go"}]})
    assert tool_messages(result)[0].status == "error"
    assert RAN == []
