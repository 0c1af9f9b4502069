"""OpenAI Agents SDK: function calls made by a scripted `Model` go through the Reins guardrail in
the runner's real tool-execution path; a denied tool never runs."""

from __future__ import annotations

import json
from typing import Any

from agents import Agent, ModelResponse, Runner, Usage, function_tool, set_tracing_disabled
from agents.models.interface import Model
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

from reins import AsyncReins
from reins.openai_agents import governed

from .conftest import Server

# No trace export: these tests make no network calls.
set_tracing_disabled(True)

RAN: list[str] = []


class Scripted(Model):
    """Calls each tool in turn, then answers with the tool outputs it was given."""

    def __init__(self, *calls: tuple[str, dict[str, Any]]) -> None:
        self.calls = list(calls)
        self.turn = 0

    async def get_response(
        self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any
    ) -> ModelResponse:
        if self.turn < len(self.calls):
            name, arguments = self.calls[self.turn]
            item: Any = ResponseFunctionToolCall(
                type="function_call",
                name=name,
                arguments=json.dumps(arguments),
                call_id=f"call-{self.turn}",
                id=f"fc-{self.turn}",
            )
        else:
            outputs = [
                i.get("output")
                for i in input
                if isinstance(i, dict) and i.get("type") == "function_call_output"
            ]
            item = ResponseOutputMessage(
                id="m",
                type="message",
                role="assistant",
                status="completed",
                content=[
                    ResponseOutputText(
                        type="output_text", text=" | ".join(map(str, outputs)), annotations=[]
                    )
                ],
            )
        self.turn += 1
        return ModelResponse(output=[item], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


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


async def test_allowed_runs_denied_and_held_are_rejected_with_reasons(server: Server) -> None:
    RAN.clear()
    client = AsyncReins(server.url, server.tokens["agent"])
    agent = Agent(
        name="test",
        model=Scripted(
            ("crm.note", {"text": "hi"}),
            ("shell.exec", {"command": "rm"}),
            ("payments.refund", {"order": "o", "amount": 5}),
        ),
        tools=governed([crm_note, shell_exec, refund], client),
    )
    result = await Runner.run(agent, "go")
    output = str(result.final_output)
    assert "noted" in output
    assert "unknown_tool" in output
    assert "holds this call for a human's approval" in output
    assert RAN == ["note:hi"]
