//! `reins hook pre-tool-use`: Reins as a coding agent's command hook. Reads the agent's hook event
//! on stdin, asks Reins for a decision on the tool call, and answers in the agent's hook format.
//!
//! The hook is an enforcement point, so it fails closed: Reins unreachable, a timeout, an error
//! answer, an event it cannot read, even a panic, all end in a deny. That matters because a
//! hook's failure is not a block by default: Claude Code treats any exit status but 0 (with a
//! deny) or 2 as "go ahead". So every path here ends in a JSON deny on stdout with status 0, or,
//! when even that cannot be written, a reason on stderr with status 2.
//!
//! Formats: `claude` (Claude Code's `PreToolUse`: `hookSpecificOutput.permissionDecision` of
//! `allow`, `deny` or `ask`) and `codex` (Codex's experimental hooks take the same event and
//! output but no `ask`, so an approval is a deny naming where to approve).

use std::io::{Read, Write};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::client::{CallOptions, Client, describe};
use crate::decision::IdempotencyKey;
use crate::model::{Decision, DecisionRequest, Outcome, ResourceRef};

/// Largest hook event read from stdin: a tool call's arguments, with room to spare.
const MAX_EVENT_BYTES: u64 = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Claude,
    Codex,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnApproval {
    /// Let the agent's own permission prompt decide (Claude Code `ask`), naming the Reins approval.
    Ask,
    /// Deny, naming the approval to grant before retrying.
    Deny,
}

#[derive(Debug, clap::Args)]
pub struct HookArgs {
    /// The Reins server.
    #[arg(long, env = "REINS_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The agent's bearer token.
    #[arg(long, env = "REINS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The agent's hook format.
    #[arg(long, value_enum, default_value = "claude")]
    pub format: Format,
    /// Give up on Reins after this long, and deny.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Prefix for tool ids: the Reins tool asked about is `<prefix><tool_name>`.
    #[arg(long, default_value = "")]
    pub tool_prefix: String,
    /// What an `approval_required` answer becomes (`codex` has no ask: always deny).
    #[arg(long, value_enum, default_value = "ask")]
    pub on_approval: OnApproval,
}

/// The fields of a `PreToolUse` event Reins uses; the rest is ignored.
#[derive(Debug, Deserialize)]
struct Event {
    #[serde(default)]
    session_id: Option<String>,
    tool_name: String,
    #[serde(default)]
    tool_input: Value,
    #[serde(default)]
    tool_use_id: Option<String>,
}

/// What the hook answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow(String),
    Deny(String),
    Ask(String),
}

/// Runs the hook: stdin to stdout, and the process's exit status.
pub async fn run(args: HookArgs) -> std::process::ExitCode {
    let mut input = Vec::new();
    let read = std::io::stdin()
        .take(MAX_EVENT_BYTES)
        .read_to_end(&mut input);
    let verdict = match read {
        Ok(_) => {
            // A panic in the decision is a deny too, not the runtime's exit status 101.
            let format = args.format;
            match tokio::spawn(async move { decide(&args, &input).await }).await {
                Ok(v) => v,
                Err(e) => Verdict::Deny(format!("Reins hook failed: {e}")),
            }
            .for_format(format)
        }
        Err(e) => Verdict::Deny(format!("Reins hook could not read the event: {e}")),
    };
    answer(&verdict)
}

impl Verdict {
    fn for_format(self, format: Format) -> Self {
        match (format, self) {
            (Format::Codex, Verdict::Ask(reason)) => Verdict::Deny(reason),
            (_, v) => v,
        }
    }
}

/// Writes the verdict in the hook format; status 2 with the reason on stderr if stdout fails.
fn answer(verdict: &Verdict) -> std::process::ExitCode {
    let (decision, reason) = match verdict {
        Verdict::Allow(r) => ("allow", r),
        Verdict::Deny(r) => ("deny", r),
        Verdict::Ask(r) => ("ask", r),
    };
    let output = json!({
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": decision,
            "permissionDecisionReason": reason,
        }
    });
    let mut stdout = std::io::stdout().lock();
    let written = writeln!(stdout, "{output}").and_then(|()| stdout.flush());
    match written {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => {
            eprintln!("{reason}");
            std::process::ExitCode::from(2)
        }
    }
}

/// The verdict for one hook event; every failure is a deny saying why.
pub async fn decide(args: &HookArgs, input: &[u8]) -> Verdict {
    let event: Event = match serde_json::from_slice(input) {
        Ok(e) => e,
        Err(e) => return Verdict::Deny(format!("Reins hook could not read the event: {e}")),
    };
    let Some(token) = args.token.as_deref() else {
        return Verdict::Deny("Reins hook has no token: set REINS_TOKEN".into());
    };
    let tool = format!("{}{}", args.tool_prefix, event.tool_name);
    let mut context = serde_json::Map::new();
    context.insert("args".into(), event.tool_input);
    let request = DecisionRequest {
        action: "invoke".into(),
        resource: ResourceRef {
            kind: "Tool".into(),
            id: tool.clone(),
            attributes: None,
        },
        context: Some(context),
        session_id: event.session_id,
        approval_id: None,
        intent: None,
        trace: None,
        compensates: None,
    };
    let client = match Client::new(&args.url, args.timeout) {
        Ok(c) => c,
        Err(e) => return Verdict::Deny(format!("Reins hook: {e}")),
    };
    // The tool call's own id: if the hook runs twice for one call, Reins records it once.
    let key: Option<IdempotencyKey> = event.tool_use_id.as_deref().and_then(|id| id.parse().ok());
    let options = CallOptions {
        idempotency_key: key.as_ref(),
        trace: None,
    };
    match client.decide(token, &request, options).await {
        Ok(decision) => verdict_of(&decision, client.base(), &tool, args.on_approval),
        Err(e) => Verdict::Deny(e.to_string()),
    }
}

/// A decision answer as a verdict.
fn verdict_of(decision: &Decision, base: &str, tool: &str, on_approval: OnApproval) -> Verdict {
    let id = decision.decision_id;
    let reasons = describe(&decision.reasons);
    if decision.decision == Outcome::Allow {
        return Verdict::Allow(format!("Reins allowed `{tool}`: {reasons} (decision {id})"));
    }
    if let Some(access) = &decision.access_request {
        let text = format!(
            "Reins requires a human approval for `{tool}`: {reasons}. Approval {} is pending at \
             {base}{}; once granted, retry (decision {id})",
            access.approval_id, access.endpoint,
        );
        return match on_approval {
            OnApproval::Ask => Verdict::Ask(text),
            OnApproval::Deny => Verdict::Deny(text),
        };
    }
    Verdict::Deny(format!("Reins denied `{tool}`: {reasons} (decision {id})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(value: Value) -> Decision {
        let mut base = json!({"errors": [], "policy_digest": null,
            "evaluated_at": "2026-11-30T00:00:00.000Z"});
        if let (Some(base), Some(more)) = (base.as_object_mut(), value.as_object()) {
            base.extend(more.clone());
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn answers_name_the_reasons_and_the_approval() {
        let d1 = "00000000-0000-4000-8000-000000000001";
        let allow = decision(json!({"decision_id": d1, "decision": "allow",
            "reasons": [{"code": "policy", "policy_id": "declared-tools"}]}));
        assert_eq!(
            verdict_of(&allow, "http://r", "Bash", OnApproval::Ask),
            Verdict::Allow(format!(
                "Reins allowed `Bash`: policy `declared-tools` (decision {d1})"
            ))
        );
        let a1 = "00000000-0000-4000-8000-0000000000a1";
        let approval = decision(json!({"decision_id": d1, "decision": "deny",
            "reasons": [{"code": "approval_required", "policy_id": "approval-high-risk-tools"}],
            "access_request": {"approval_id": a1, "endpoint": format!("/v1/approvals/{a1}"),
                "expires_at": "2026-11-30T01:00:00.000Z"}}));
        let Verdict::Ask(text) = verdict_of(&approval, "http://r", "Bash", OnApproval::Ask) else {
            panic!()
        };
        assert!(
            text.contains(&format!("http://r/v1/approvals/{a1}")),
            "{text}"
        );
        assert!(matches!(
            verdict_of(&approval, "http://r", "Bash", OnApproval::Deny),
            Verdict::Deny(_)
        ));
        assert!(matches!(
            Verdict::Ask(text).for_format(Format::Codex),
            Verdict::Deny(_)
        ));
    }
}
