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
    let base = args.url.trim_end_matches('/');
    let tool = format!("{}{}", args.tool_prefix, event.tool_name);
    let mut request = json!({
        "action": "invoke",
        "resource": {"type": "Tool", "id": tool},
        "context": {"args": event.tool_input},
    });
    if let Some(session) = &event.session_id {
        request["session_id"] = json!(session);
    }
    let client = match reqwest::Client::builder().timeout(args.timeout).build() {
        Ok(c) => c,
        Err(e) => return Verdict::Deny(format!("Reins hook: {e}")),
    };
    let mut call = client
        .post(format!("{base}/v1/decisions"))
        .bearer_auth(token)
        .json(&request);
    // The tool call's own id: if the hook runs twice for one call, Reins records it once.
    if let Some(id) = event
        .tool_use_id
        .as_deref()
        .filter(|id| id.parse::<crate::decision::IdempotencyKey>().is_ok())
    {
        call = call.header("Idempotency-Key", id);
    }
    let response = match call.send().await {
        Ok(r) => r,
        Err(e) => return Verdict::Deny(format!("Reins at {base} did not answer: {e}")),
    };
    let status = response.status();
    let body: Value = match response.json().await {
        Ok(b) => b,
        Err(e) => return Verdict::Deny(format!("Reins answered {status} unreadably: {e}")),
    };
    if !status.is_success() {
        let message = body["error"]["message"].as_str().unwrap_or("no message");
        return Verdict::Deny(format!("Reins refused the request ({status}): {message}"));
    }
    verdict_of(&body, base, &tool, args.on_approval)
}

/// A decision answer as a verdict.
fn verdict_of(decision: &Value, base: &str, tool: &str, on_approval: OnApproval) -> Verdict {
    let id = decision["decision_id"].as_str().unwrap_or("?");
    let reasons: Vec<String> = decision["reasons"]
        .as_array()
        .map(|rs| rs.iter().map(reason_text).collect())
        .unwrap_or_default();
    let reasons = reasons.join("; ");
    if decision["decision"] == "allow" {
        return Verdict::Allow(format!("Reins allowed `{tool}`: {reasons} (decision {id})"));
    }
    if let Some(endpoint) = decision["access_request"]["endpoint"].as_str() {
        let text = format!(
            "Reins requires a human approval for `{tool}`: {reasons}. Approval {} is pending at \
             {base}{endpoint}; once granted, retry (decision {id})",
            decision["access_request"]["approval_id"]
                .as_str()
                .unwrap_or("?"),
        );
        return match on_approval {
            OnApproval::Ask => Verdict::Ask(text),
            OnApproval::Deny => Verdict::Deny(text),
        };
    }
    Verdict::Deny(format!("Reins denied `{tool}`: {reasons} (decision {id})"))
}

fn reason_text(reason: &Value) -> String {
    let code = reason["code"].as_str().unwrap_or("unknown");
    match (reason["policy_id"].as_str(), reason["message"].as_str()) {
        (Some(policy), _) => format!("{code} `{policy}`"),
        (None, Some(message)) => format!("{code}: {message}"),
        (None, None) => code.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_name_the_reasons_and_the_approval() {
        let allow = json!({"decision_id": "d1", "decision": "allow",
            "reasons": [{"code": "policy", "policy_id": "declared-tools"}]});
        assert_eq!(
            verdict_of(&allow, "http://r", "Bash", OnApproval::Ask),
            Verdict::Allow("Reins allowed `Bash`: policy `declared-tools` (decision d1)".into())
        );
        let approval = json!({"decision_id": "d2", "decision": "deny",
            "reasons": [{"code": "approval_required", "policy_id": "approval-high-risk-tools"}],
            "access_request": {"approval_id": "a1", "endpoint": "/v1/approvals/a1"}});
        let Verdict::Ask(text) = verdict_of(&approval, "http://r", "Bash", OnApproval::Ask) else {
            panic!()
        };
        assert!(text.contains("http://r/v1/approvals/a1"), "{text}");
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
