"""OpenAI Agents SDK: function calls scripted with the SDK's own `ScriptedModel` go through Reins
in the runner's real tool-execution path; a denied tool never runs; a held call is the SDK's own
interruption, resumed once the approval is granted in Reins."""

from __future__ import annotations

from typing import Any

from agents import Agent, Runner, function_tool, set_tracing_disabled
from agents.testing import ScriptedModel, assistant_message, function_call

from reins import AsyncReins
from reins.openai_agents import governed, reins_approval

from .conftest import Server

# No trace export: these tests make no network calls.
set_tracing_disabled(True)

RAN: list[str] = []


@function_tool(name_override="crm.note")
def crm_note(text: str) -> str:
    """Add a note."""
    RAN.append(f"note:{text}")
    return "noted"


@function_tool(name_override="shell.exec")
def shell_exec(command: str) -> str:
    """Run a command."""
    RAN.append(f"shell:{command}")
    return "ran"


@function_tool(name_override="payments.refund")
def refund(order: str, amount: int) -> str:
    """Refund an order."""
    RAN.append(f"refund:{amount}")
    return "refunded"


def outputs(result: Any) -> list[str]:
    return [
        str(i.output) for i in result.new_items if getattr(i, "type", "") == "tool_call_output_item"
    ]


async def test_allowed_runs_denied_is_rejected_with_the_reasons(server: Server) -> None:
    RAN.clear()
    model = ScriptedModel(
        [
            [function_call("crm.note", {"text": "hi"}, call_id="c1")],
            [function_call("shell.exec", {"command": "rm"}, call_id="c2")],
            [assistant_message("done")],
        ]
    )
    agent = Agent(
        name="t",
        model=model,
        tools=governed([crm_note, shell_exec], AsyncReins(server.url, server.tokens["agent"])),
    )
    result = await Runner.run(agent, "go")
    said = outputs(result)
    assert said[0] == "noted"
    assert "unknown_tool" in said[1]
    assert RAN == ["note:hi"]


def refund_agent(server: Server, *, order: str, amount: int, call_id: str) -> Agent[Any]:
    """An agent whose model asks for one refund, which Reins holds for a human."""
    model = ScriptedModel(
        [
            [function_call("payments.refund", {"order": order, "amount": amount}, call_id=call_id)],
            [assistant_message("done")],
        ]
    )
    client = AsyncReins(server.url, server.tokens["agent"])
    return Agent(name="t", model=model, tools=governed([refund], client))


async def test_a_held_call_interrupts_the_run_until_granted(server: Server) -> None:
    RAN.clear()
    agent = refund_agent(server, order="o-3", amount=12, call_id="c9")
    first = await Runner.run(agent, "refund")
    (item,) = first.interruptions
    approval_id = reins_approval(item)
    assert approval_id and RAN == []
    granted = server.post(
        f"/v1/approvals/{approval_id}/grant", server.tokens["approver"], {"comment": "ok"}
    )
    assert granted.status_code == 200, granted.text
    state = first.to_state()
    state.approve(item)
    resumed = await Runner.run(agent, state)
    assert outputs(resumed)[-1] == "refunded"
    assert RAN == ["refund:12"]


async def test_approving_in_the_sdk_alone_does_not_run_the_call(server: Server) -> None:
    RAN.clear()
    agent = refund_agent(server, order="o-4", amount=13, call_id="c10")
    first = await Runner.run(agent, "refund")
    (item,) = first.interruptions
    state = first.to_state()
    state.approve(item)  # nobody granted it in Reins
    resumed = await Runner.run(agent, state)
    assert "approval_invalid" in outputs(resumed)[-1]
    assert RAN == []
