"""Claude Agent SDK: a `PreToolUse` hook that asks Reins before every tool Claude calls.

    options = ClaudeAgentOptions(hooks={"PreToolUse": [HookMatcher(hooks=[reins_hook()])]})

An allow answers `permissionDecision: allow`; a deny answers `deny` with Reins's reasons (Claude
reads them); a call Reins holds for a human answers `ask` with the approval's id, so Claude Code
asks its user, and the call can be made again once the approval is granted in Reins. No answer
from Reins is a deny.
"""

from __future__ import annotations

from typing import Any

from claude_agent_sdk import HookContext

from ._client import AsyncReins

HookFunction = Any


def reins_hook(client: AsyncReins | None = None, *, tools: dict[str, str] | None = None) -> Any:
    """The hook callback; `tools` maps Claude's tool names (`Bash`, `mcp__crm__note`) to Reins
    ids when they differ."""
    names = tools or {}

    async def hook(
        input_data: dict[str, Any], tool_use_id: str | None, context: HookContext
    ) -> dict[str, Any]:
        if input_data.get("hook_event_name") != "PreToolUse":
            return {}
        name = str(input_data.get("tool_name", ""))
        args = input_data.get("tool_input") or {}
        decision = await (client or AsyncReins()).decide(
            names.get(name, name), args, session_id=input_data.get("session_id") or None
        )
        if decision.allowed:
            verdict, reason = "allow", f"allowed by Reins ({decision.decision_id})"
        elif decision.approval_required and decision.access_request:
            verdict = "ask"
            reason = (
                f"Reins holds this call for approval {decision.access_request.approval_id}: "
                f"{decision.describe()}"
            )
        else:
            verdict, reason = "deny", f"Reins denied this call: {decision.describe()}"
        return {
            "hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": verdict,
                "permissionDecisionReason": reason,
            }
        }

    return hook
