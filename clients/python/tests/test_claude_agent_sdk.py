"""Claude Agent SDK: the SDK's own control protocol calls the Reins hook. The agent loop itself
runs in the Claude Code CLI, which needs Anthropic's API; a scripted stand-in for the CLI on the
SDK's `Transport` sends the `hook_callback` requests the CLI sends before each tool call, and
reads the SDK's answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
from claude_agent_sdk import ClaudeAgentOptions, HookMatcher, query
from claude_agent_sdk._internal.transport import Transport

from reins import AsyncReins
from reins.claude_agent_sdk import reins_hook

from .conftest import Server


class ScriptedCli(Transport):
    """Answers `initialize`, then asks the hook about each tool call, then ends the run."""

    def __init__(self, calls: list[tuple[str, dict[str, Any]]]) -> None:
        self.calls = calls
        #: The SDK's answers by request id (it answers hook callbacks concurrently).
        self.answers: dict[str, dict[str, Any]] = {}
        self.send, self.receive = anyio.create_memory_object_stream[dict[str, Any]](100)
        self.hook_ids: list[str] = []

    async def connect(self) -> None: ...

    def is_ready(self) -> bool:
        return True

    async def end_input(self) -> None: ...

    async def close(self) -> None:
        self.send.close()

    async def write(self, data: str) -> None:
        for line in data.splitlines():
            message = json.loads(line)
            if message.get("type") == "control_request":
                request = message["request"]
                if request.get("subtype") == "initialize":
                    for matchers in (request.get("hooks") or {}).values():
                        for m in matchers:
                            self.hook_ids.extend(m["hookCallbackIds"])
                await self.send.send(
                    {
                        "type": "control_response",
                        "response": {
                            "subtype": "success",
                            "request_id": message["request_id"],
                            "response": {},
                        },
                    }
                )
            elif message.get("type") == "control_response":
                response = message["response"]
                self.answers[response["request_id"]] = response.get("response", {})
                if len(self.answers) == len(self.calls):
                    await self.finish()
            elif message.get("type") == "user":
                for i, (name, args) in enumerate(self.calls):
                    await self.send.send(
                        {
                            "type": "control_request",
                            "request_id": f"cli-{i}",
                            "request": {
                                "subtype": "hook_callback",
                                "callback_id": self.hook_ids[0],
                                "tool_use_id": f"tu-{i}",
                                "input": {
                                    "session_id": "s-1",
                                    "transcript_path": "",
                                    "cwd": "/",
                                    "hook_event_name": "PreToolUse",
                                    "tool_name": name,
                                    "tool_input": args,
                                    "tool_use_id": f"tu-{i}",
                                },
                            },
                        }
                    )

    async def finish(self) -> None:
        await self.send.send(
            {
                "type": "result",
                "subtype": "success",
                "duration_ms": 1,
                "duration_api_ms": 1,
                "is_error": False,
                "num_turns": 1,
                "session_id": "s-1",
                "result": "done",
            }
        )
        self.send.close()

    async def read_messages(self) -> AsyncIterator[dict[str, Any]]:
        async for message in self.receive:
            yield message


async def test_the_hook_allows_denies_and_asks(server: Server) -> None:
    cli = ScriptedCli(
        [
            ("crm.note", {"text": "hi"}),
            ("shell.exec", {"command": "rm -rf /"}),
            ("payments.refund", {"order": "o", "amount": 7}),
        ]
    )
    hook = reins_hook(AsyncReins(server.url, server.tokens["agent"]))
    options = ClaudeAgentOptions(hooks={"PreToolUse": [HookMatcher(hooks=[hook])]})

    async def prompt() -> AsyncIterator[dict[str, Any]]:
        yield {"type": "user", "message": {"role": "user", "content": "go"}}

    async for _ in query(prompt=prompt(), options=options, transport=cli):
        pass
    answers = [cli.answers[f"cli-{i}"]["hookSpecificOutput"] for i in range(3)]
    assert [a["permissionDecision"] for a in answers] == ["allow", "deny", "ask"], answers
    assert "unknown_tool" in answers[1]["permissionDecisionReason"]
    assert "approval" in answers[2]["permissionDecisionReason"]
