//! `reins hook pre-tool-use` against a real server, fed canned Claude Code `PreToolUse` events:
//! allow, deny, approval, Reins down, and events it cannot read. Every failure is a deny with exit
//! status 0 (Claude Code lets a call through on any other status but 2).

use std::io::Write;
use std::process::Stdio;

use serde_json::{Value, json};

use crate::cli::{free_port, reins, text};
use crate::harness::TestServer;

fn event(tool: &str, input: Value, tool_use_id: &str) -> Value {
    json!({
        "session_id": "claude-session-1",
        "transcript_path": "/tmp/t.jsonl",
        "cwd": "/work",
        "permission_mode": "default",
        "hook_event_name": "PreToolUse",
        "tool_name": tool,
        "tool_input": input,
        "tool_use_id": tool_use_id,
    })
}

/// Runs the hook with `stdin`; its exit status and the decision it printed.
fn hook(url: &str, token: Option<&str>, extra: &[&str], stdin: &[u8]) -> (i32, Value, String) {
    let mut args = vec!["hook", "pre-tool-use", "--timeout", "2s"];
    args.extend_from_slice(extra);
    let mut command = reins(&args);
    command
        .env("REINS_URL", url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(token) = token {
        command.env("REINS_TOKEN", token);
    }
    let mut child = command.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = text(&out.stdout);
    let answer: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), answer, text(&out.stderr))
}

fn decision(answer: &Value) -> (&str, &str) {
    let output = &answer["hookSpecificOutput"];
    assert_eq!(output["hookEventName"], "PreToolUse", "{answer}");
    (
        output["permissionDecision"].as_str().unwrap_or_default(),
        output["permissionDecisionReason"]
            .as_str()
            .unwrap_or_default(),
    )
}

async fn fleet(s: &TestServer) {
    s.tool("Read", "low").await;
    s.tool("Bash", "high").await;
    s.tool("WebFetch", "low").await;
    s.agent("claude-code", "limited", &["Read", "Bash"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hook_answers_allow_deny_and_ask_in_claude_codes_format() {
    let s = TestServer::start().await;
    fleet(&s).await;
    let token = s.token("claude-code", &[]);
    let url = s.url("");
    let size = s.ledger_size();

    let read = event(
        "Read",
        json!({"file_path": "/work/README.md", "limit": null}),
        "toolu_01",
    );
    let (status, answer, stderr) = hook(&url, Some(&token), &[], read.to_string().as_bytes());
    assert_eq!(status, 0, "{stderr}");
    let (verdict, reason) = decision(&answer);
    assert_eq!(verdict, "allow", "{answer}");
    assert!(reason.contains("declared-tools"), "{reason}");
    // Recorded with the agent's session; the same tool call asked again is recorded once.
    let (_, entry) = s
        .get(&format!("/v1/ledger/entries/{size}"), &s.admin())
        .await;
    assert_eq!(entry["entry"]["session_id"], "claude-session-1", "{entry}");
    assert_eq!(entry["entry"]["resource"]["id"], "Read");
    let (status, again, _) = hook(&url, Some(&token), &[], read.to_string().as_bytes());
    assert_eq!((status, decision(&again).0), (0, "allow"));
    assert_eq!(s.ledger_size(), size + 1);

    // Not declared: a deny with the reason.
    let fetch = event(
        "WebFetch",
        json!({"url": "https://example.com"}),
        "toolu_02",
    );
    let (status, answer, _) = hook(&url, Some(&token), &[], fetch.to_string().as_bytes());
    let (verdict, reason) = decision(&answer);
    assert_eq!((status, verdict), (0, "deny"), "{answer}");
    assert!(reason.contains("no_matching_permit"), "{reason}");

    // A high-risk tool needs a human: ask, naming the approval and where to grant it.
    let bash = event("Bash", json!({"command": "rm -rf build"}), "toolu_03");
    let (status, answer, _) = hook(&url, Some(&token), &[], bash.to_string().as_bytes());
    let (verdict, reason) = decision(&answer);
    assert_eq!((status, verdict), (0, "ask"), "{answer}");
    assert!(reason.contains(&format!("{url}/v1/approvals/")), "{reason}");
    // Strictly, or for Codex (no ask): a deny that says the same.
    let bash = event("Bash", json!({"command": "rm -rf build"}), "toolu_04");
    for extra in [&["--on-approval", "deny"][..], &["--format", "codex"][..]] {
        let (status, answer, _) = hook(&url, Some(&token), extra, bash.to_string().as_bytes());
        let (verdict, reason) = decision(&answer);
        assert_eq!((status, verdict), (0, "deny"), "{extra:?}: {answer}");
        assert!(reason.contains("/v1/approvals/"), "{reason}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_failure_to_get_an_answer_is_a_deny() {
    let s = TestServer::start().await;
    fleet(&s).await;
    let token = s.token("claude-code", &[]);
    let read = event("Read", json!({"file_path": "/etc/hosts"}), "toolu_09");
    let down = format!("http://127.0.0.1:{}", free_port());
    let cases: Vec<(&str, String, Option<String>, Vec<u8>)> = vec![
        (
            "Reins down",
            down,
            Some(token.clone()),
            read.to_string().into_bytes(),
        ),
        ("no token", s.url(""), None, read.to_string().into_bytes()),
        (
            "a bad token",
            s.url(""),
            Some("not-a-token".into()),
            read.to_string().into_bytes(),
        ),
        (
            "not JSON",
            s.url(""),
            Some(token.clone()),
            b"{\"tool_name\": ".to_vec(),
        ),
        ("no tool", s.url(""), Some(token.clone()), b"{}".to_vec()),
        (
            "a tool id Reins refuses",
            s.url(""),
            Some(token.clone()),
            event("mcp server/tool", json!({}), "toolu_10")
                .to_string()
                .into_bytes(),
        ),
    ];
    for (what, url, token, stdin) in cases {
        let (status, answer, stderr) = hook(&url, token.as_deref(), &[], &stdin);
        assert_eq!(status, 0, "{what}: {stderr}");
        assert_eq!(decision(&answer).0, "deny", "{what}: {answer}");
    }
}
