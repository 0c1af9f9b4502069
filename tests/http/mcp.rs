//! `reins mcp` between a real MCP client (rmcp) and a real MCP server (`reins-demo-mcp-server`,
//! which logs every tool call it receives), in front of a real Reins: over stdio and over
//! Streamable HTTP, with stdio and HTTP (SSE and JSON) upstreams, natively and through AuthZEN.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, ClientRequest, CustomRequest,
    ElicitationCapability, Implementation, MetaObject, ReadResourceRequestParams,
    UrlElicitationCapability,
};
use rmcp::service::{RunningService, ServiceError};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ErrorData, RoleClient, ServiceExt};
use serde_json::{Value, json};

use crate::cli::free_port;
use crate::harness::TestServer;

/// The test MCP server: the crate's `reins-demo-mcp-server` binary, which `cargo test` builds.
fn upstream_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_reins-demo-mcp-server"))
}

async fn fleet(s: &TestServer) {
    s.tool("files.echo", "low").await;
    s.tool("files.pay", "high").await;
    s.tool("files.delete", "low").await;
    s.tool("crm.echo", "low").await;
    s.tool("crm.delete", "low").await;
    // Not declared: `files.delete`, `crm.delete` (no permit matches).
    s.agent(
        "mcp-agent",
        "limited",
        &["files.echo", "files.pay", "crm.echo"],
    )
    .await;
}

/// The calls the upstream logged.
fn calls(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn stdio_server(name: &str, log: &Path) -> String {
    format!(
        "[[servers]]\nname = \"{name}\"\ncommand = {:?}\nenv = {{ MCP_UPSTREAM_CALLS = {:?} }}\n",
        upstream_bin().display().to_string(),
        log.display().to_string()
    )
}

fn gateway_command(config: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_reins"));
    command.args(["mcp", "--config"]).arg(config);
    for (key, _) in std::env::vars() {
        if key.starts_with("REINS_") {
            command.env_remove(key);
        }
    }
    command.kill_on_drop(true);
    command
}

/// An rmcp client on `reins mcp --config FILE` over stdio.
async fn stdio_client(config: &Path, token: &str) -> RunningService<RoleClient, ClientConfig> {
    let mut command = gateway_command(config);
    command.env("REINS_TOKEN", token);
    client_info(false)
        .serve(TokioChildProcess::new(command).unwrap())
        .await
        .expect("MCP session with the gateway")
}

fn client_info(elicitation_url: bool) -> ClientConfig {
    let mut capabilities = ClientCapabilities::default();
    if elicitation_url {
        capabilities.elicitation =
            Some(ElicitationCapability::new().with_url(UrlElicitationCapability::new()));
    }
    ClientConfig::new(capabilities, Implementation::new("reins-test-agent", "1"))
}

async fn call(
    client: &rmcp::Peer<RoleClient>,
    tool: &str,
    args: Value,
) -> Result<String, ErrorData> {
    call_with(client, tool, args, None).await
}

async fn call_with(
    client: &rmcp::Peer<RoleClient>,
    tool: &str,
    args: Value,
    traceparent: Option<&str>,
) -> Result<String, ErrorData> {
    let mut params = CallToolRequestParams::new(tool.to_owned());
    params.arguments = args.as_object().cloned();
    if let Some(parent) = traceparent {
        let mut meta = MetaObject::new();
        meta.set_traceparent(parent);
        params.meta = Some(meta.into());
    }
    match client.call_tool(params).await {
        Ok(result) => Ok(serde_json::to_value(&result.content).unwrap()[0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()),
        Err(ServiceError::McpError(e)) => Err(e),
        Err(other) => panic!("transport failure calling {tool}: {other}"),
    }
}

fn data(error: &ErrorData) -> Value {
    error.data.clone().unwrap_or(Value::Null)
}

async fn decision(s: &TestServer, id: &str) -> Value {
    let (status, body) = s
        .get(
            &format!("/v1/decisions/{id}"),
            &s.token("auditor-1", &["auditor"]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The id of the one pending approval, once there is one.
async fn pending_approval(s: &TestServer, approver: &str) -> String {
    let mut pending = String::new();
    crate::harness::eventually("an approval is pending", async || {
        let (_, list) = s.get("/v1/approvals?status=pending", approver).await;
        pending = list["approvals"][0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        !pending.is_empty()
    })
    .await;
    pending
}

async fn grant(s: &TestServer, id: &str) {
    let (status, body) = s
        .post(
            &format!("/v1/approvals/{id}/grant"),
            &s.token("alice", &["approver"]),
            json!({"comment": "ok"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn over_stdio_only_allowed_calls_reach_the_server() {
    let mut s = TestServer::start().await;
    fleet(&s).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.jsonl");
    let config = write_config(
        dir.path(),
        &format!(
            "reins_url = {:?}\n{}",
            s.url(""),
            stdio_server("files", &log)
        ),
    );
    let client = stdio_client(&config, &s.token("mcp-agent", &[])).await;

    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(names, ["files.delete", "files.echo", "files.pay"]);

    // Allowed: reaches the server, its result comes back, the decision is recorded with the
    // gateway's MCP session and the agent's trace.
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let echoed = call_with(
        &client,
        "files.echo",
        json!({"text": "hi", "note": null}),
        Some(parent),
    )
    .await
    .unwrap();
    assert_eq!(echoed, "hi");
    assert_eq!(calls(&log).len(), 1);
    assert_eq!(
        calls(&log)[0]["args"]["traceparent"],
        parent,
        "the trace goes on upstream: {:?}",
        calls(&log)
    );
    let (_, list) = s
        .get("/v1/decisions?limit=1", &s.token("auditor-1", &["auditor"]))
        .await;
    let recorded = &list["decisions"][0];
    assert_eq!(recorded["decision"], "allow", "{recorded}");
    assert_eq!(
        recorded["request"]["resource"]["id"], "files.echo",
        "{recorded}"
    );
    let session = recorded["request"]["session_id"]
        .as_str()
        .unwrap_or_default();
    assert!(session.starts_with("mcp-"), "{recorded}");
    assert_eq!(recorded["request"]["context"]["mcp"]["server"], "files");
    assert_eq!(recorded["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    // The gateway reports what came of the call as the decision's outcome (in the background).
    let outcome_path = format!(
        "/v1/decisions/{}/outcome",
        recorded["decision_id"].as_str().unwrap()
    );
    let mut outcome = Value::Null;
    for _ in 0..100 {
        let (status, body) = s.get(&outcome_path, &s.admin()).await;
        if status == 200 {
            outcome = body;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(outcome["status"], "succeeded", "{outcome}");
    assert_eq!(outcome["reported_by"], "mcp-agent", "{outcome}");
    assert_eq!(
        outcome["result_sha256"].as_str().map(str::len),
        Some(64),
        "{outcome}"
    );

    // Denied: -32001 with the reasons, the decision and its ledger entry; never forwarded.
    let denied = call(&client, "files.delete", json!({"path": "/etc"}))
        .await
        .unwrap_err();
    assert_eq!(denied.code.0, -32001, "{denied:?}");
    assert!(
        denied.message.contains("files.delete"),
        "{}",
        denied.message
    );
    let d = data(&denied);
    assert_eq!(d["reasons"][0]["code"], "no_matching_permit", "{d}");
    assert!(d["ledger"]["index"].is_u64(), "{d}");
    let recorded = decision(&s, d["decision_id"].as_str().unwrap()).await;
    assert_eq!(recorded["decision"], "deny");
    assert_eq!(recorded["request"]["session_id"], session);
    assert_eq!(calls(&log).len(), 1);

    // An unknown tool is a mapping error, and so is a call Reins refuses as malformed.
    let unknown = call(&client, "nowhere.echo", json!({})).await.unwrap_err();
    assert_eq!(unknown.code.0, -32602, "{unknown:?}");
    let malformed = call(&client, "files.no such tool!", json!({}))
        .await
        .unwrap_err();
    assert_eq!(malformed.code.0, -32602, "{malformed:?}");
    assert!(
        malformed.message.contains("Reins cannot map"),
        "{malformed:?}"
    );
    assert_eq!(calls(&log).len(), 1);

    // A high-risk call needs an approval: not forwarded, the approval named; the same call again
    // while it is pending names the same approval; once granted, the call goes through once.
    let args = json!({"amount": 5050, "currency": "EUR"});
    let first = call(&client, "files.pay", args.clone()).await.unwrap_err();
    assert_eq!(first.code.0, -32001, "{first:?}");
    let approval = data(&first)["access_request"]["approval_id"]
        .as_str()
        .expect("the approval")
        .to_owned();
    assert!(first.message.contains(&approval), "{}", first.message);
    let again = call(&client, "files.pay", args.clone()).await.unwrap_err();
    assert_eq!(
        data(&again)["access_request"]["approval_id"],
        approval.as_str()
    );
    assert_eq!(calls(&log).len(), 1);
    grant(&s, &approval).await;
    let paid = call(&client, "files.pay", args.clone()).await.unwrap();
    assert_eq!(paid, "paid 5050 EUR");
    assert_eq!(calls(&log).len(), 2);
    let used = call(&client, "files.pay", args.clone()).await.unwrap_err();
    assert_ne!(
        data(&used)["access_request"]["approval_id"],
        approval.as_str()
    );
    assert_eq!(calls(&log).len(), 2);

    // Resources are forwarded without a decision.
    let read = client
        .read_resource(ReadResourceRequestParams::new("memo://readme"))
        .await
        .unwrap();
    assert!(
        serde_json::to_string(&read)
            .unwrap()
            .contains("hello from upstream")
    );

    // A kill switch engaged mid-session denies the very next call.
    let (status, switch) = s
        .post(
            "/v1/killswitch",
            &s.token("oncall", &["operator"]),
            json!({"scope": {"agent": "mcp-agent"}, "reason": "incident"}),
        )
        .await;
    assert_eq!(status, 201, "{switch}");
    let killed = call(&client, "files.echo", json!({"text": "x"}))
        .await
        .unwrap_err();
    assert_eq!(
        data(&killed)["reasons"][0]["code"],
        "kill_switch",
        "{killed:?}"
    );
    assert_eq!(calls(&log).len(), 2);

    // Reins gone: -32603, fail closed, the server untouched.
    if let Some(server) = s.server.take() {
        server.stop().await;
    }
    let down = call(&client, "files.echo", json!({"text": "x"}))
        .await
        .unwrap_err();
    assert_eq!(down.code.0, -32603, "{down:?}");
    assert_eq!(calls(&log).len(), 2);
    let _ = client.cancel().await;
    s.restart().await;
}

/// Starts `reins-demo-mcp-server --http` and returns its `/mcp` URL.
async fn http_upstream(log: &Path, json_responses: bool) -> (tokio::process::Child, String) {
    let mut command = tokio::process::Command::new(upstream_bin());
    command.args(["--http", "127.0.0.1:0"]);
    if json_responses {
        command.arg("--json");
    }
    command
        .env("MCP_UPSTREAM_CALLS", log)
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let addr = lines
        .next_line()
        .await
        .unwrap()
        .expect("the upstream's address");
    (child, format!("http://{addr}/mcp"))
}

async fn http_client(
    url: &str,
    token: Option<&str>,
    elicitation_url: bool,
) -> Result<RunningService<RoleClient, ClientConfig>, String> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
    if let Some(token) = token {
        config = config.auth_header(token.to_owned());
    }
    let transport = StreamableHttpClientTransport::from_config(config);
    client_info(elicitation_url)
        .serve(transport)
        .await
        .map_err(|e| e.to_string())
}

/// Starts `reins mcp --listen` and waits until it answers.
async fn http_gateway(config: &Path) -> (tokio::process::Child, String) {
    let port = free_port();
    let mut command = gateway_command(config);
    command.args(["--listen", &format!("127.0.0.1:{port}")]);
    let child = command.spawn().unwrap();
    let url = format!("http://127.0.0.1:{port}/mcp");
    crate::harness::eventually("the gateway listens", async || {
        reqwest::Client::new().get(&url).send().await.is_ok()
    })
    .await;
    (child, url)
}

#[tokio::test(flavor = "multi_thread")]
async fn over_streamable_http_each_client_brings_its_token() {
    let s = TestServer::start().await;
    fleet(&s).await;
    let dir = tempfile::tempdir().unwrap();
    let files_log = dir.path().join("files.jsonl");
    let crm_log = dir.path().join("crm.jsonl");
    let (_crm, crm_url) = http_upstream(&crm_log, true).await;
    let config = write_config(
        dir.path(),
        &format!(
            "reins_url = {:?}\nmethods = {{ \"resources/read\" = \"deny\" }}\n{}\
             [[servers]]\nname = \"crm\"\nurl = {crm_url:?}\n",
            s.url(""),
            stdio_server("files", &files_log)
        ),
    );
    let (_gateway, url) = http_gateway(&config).await;

    // No token, or one Reins does not accept: no session at all.
    assert!(http_client(&url, None, false).await.is_err());
    assert!(http_client(&url, Some("not-a-token"), false).await.is_err());

    let token = s.token("mcp-agent", &[]);
    // An oversized message is refused before anything reads it, and the gateway goes on.
    let huge = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(vec![b' '; 5 << 20])
        .send()
        .await;
    // The 413 may come while the body is still being written, and then the write fails.
    match huge {
        Ok(answer) => assert_eq!(answer.status(), 413),
        Err(e) => assert!(e.is_request(), "{e}"),
    }
    let client = http_client(&url, Some(&token), false).await.unwrap();
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "crm.echo"), "{tools:?}");

    let echoed = call(&client, "crm.echo", json!({"text": "over http"}))
        .await
        .unwrap();
    assert_eq!(echoed, "over http");
    assert_eq!(calls(&crm_log).len(), 1);
    let denied = call(&client, "crm.delete", json!({"path": "x"}))
        .await
        .unwrap_err();
    assert_eq!(denied.code.0, -32001, "{denied:?}");
    assert_eq!(calls(&crm_log).len(), 1);
    let recorded = decision(&s, data(&denied)["decision_id"].as_str().unwrap()).await;
    assert!(
        recorded["request"]["session_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "the MCP session id is the decision's session: {recorded}"
    );

    // A method the configuration denies, and one the gateway does not know: refused, -32001.
    let read = client
        .read_resource(ReadResourceRequestParams::new("memo://readme"))
        .await;
    let Err(ServiceError::McpError(refused)) = read else {
        panic!("resources/read was configured to be denied: {read:?}")
    };
    assert_eq!(refused.code.0, -32001, "{refused:?}");
    let unknown = client
        .send_request(ClientRequest::CustomRequest(CustomRequest::new(
            "vendor/exfiltrate",
            Some(json!({"all": true})),
        )))
        .await;
    let Err(ServiceError::McpError(refused)) = unknown else {
        panic!("an unknown method was not refused: {unknown:?}")
    };
    assert_eq!(refused.code.0, -32001, "{refused:?}");
    assert!(
        refused.message.contains("vendor/exfiltrate"),
        "{}",
        refused.message
    );

    // A client that declared URL elicitation gets -32042 naming the approval and its URL.
    let eliciting = http_client(&url, Some(&token), true).await.unwrap();
    let approval = call(
        &eliciting,
        "files.pay",
        json!({"amount": 10, "currency": "EUR"}),
    )
    .await
    .unwrap_err();
    assert_eq!(approval.code.0, -32042, "{approval:?}");
    let d = data(&approval);
    let id = d["access_request"]["approval_id"].as_str().unwrap();
    assert_eq!(d["elicitations"][0]["elicitationId"], id);
    assert_eq!(d["elicitations"][0]["mode"], "url");
    assert!(
        d["elicitations"][0]["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v1/approvals/{id}"))
    );
    assert!(calls(&files_log).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn through_authzen_with_the_bindings_mapping_and_filtered_tools() {
    let s = TestServer::start().await;
    fleet(&s).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.jsonl");
    // This time `files` is a Streamable HTTP server answering with SSE.
    let (_files, files_url) = http_upstream(&log, false).await;
    let config = write_config(
        dir.path(),
        &format!(
            "reins_url = {:?}\nmode = \"authzen\"\nfilter_tools = true\npep_token = {:?}\n\
             wait_for_approval = \"20s\"\n[[servers]]\nname = \"files\"\nurl = {files_url:?}\n",
            s.url(""),
            s.token("mcp-gateway", &["pep"]),
        ),
    );
    let client = stdio_client(&config, &s.token("mcp-agent", &[])).await;

    // Advisory filtering: only what the agent may call with no arguments and no approval.
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, ["files.echo"], "{names:?}");

    let echoed = call(
        &client,
        "files.echo",
        json!({"text": "via authzen", "x": 1.25}),
    )
    .await
    .unwrap();
    assert_eq!(echoed, "via authzen");
    let denied = call(&client, "files.delete", json!({"path": "/"}))
        .await
        .unwrap_err();
    assert_eq!(denied.code.0, -32001, "{denied:?}");
    let recorded = decision(&s, data(&denied)["decision_id"].as_str().unwrap()).await;
    assert_eq!(recorded["agent_id"], "mcp-agent");
    assert_eq!(recorded["request"]["action"], "invoke");
    assert!(
        recorded["request"]["session_id"]
            .as_str()
            .unwrap()
            .starts_with("mcp-")
    );

    // wait_for_approval: the gateway holds the call until an approver grants it, then asks again.
    let held = tokio::spawn({
        let client = client.clone();
        async move {
            call(
                &client,
                "files.pay",
                json!({"amount": 7, "currency": "EUR"}),
            )
            .await
        }
    });
    let approver = s.token("alice", &["approver"]);
    let pending = pending_approval(&s, &approver).await;
    assert!(calls(&log).iter().all(|c| c["tool"] != "pay"));
    grant(&s, &pending).await;
    assert_eq!(held.await.unwrap().unwrap(), "paid 7 EUR");
    assert_eq!(calls(&log).len(), 2);

    // A held call its client cancels is never forwarded, even once its approval is granted.
    let gave_up = tokio::time::timeout(
        std::time::Duration::from_millis(700),
        call(
            &client,
            "files.pay",
            json!({"amount": 8, "currency": "EUR"}),
        ),
    )
    .await;
    assert!(gave_up.is_err(), "the call was held: {gave_up:?}");
    let pending = pending_approval(&s, &approver).await;
    grant(&s, &pending).await;
    tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
    assert_eq!(calls(&log).len(), 2, "{:?}", calls(&log));
}

#[test]
fn the_gateway_refuses_to_start_on_a_bad_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], token: Option<&str>| {
        let mut command = crate::cli::reins(args);
        if let Some(token) = token {
            command.env("REINS_TOKEN", token);
        }
        let out = crate::cli::run(&mut command);
        assert!(!out.status.success());
        crate::cli::text(&out.stderr)
    };
    assert!(run(&["mcp"], None).contains("--config"));
    let both = write_config(
        dir.path(),
        "[[servers]]\nname = \"a\"\ncommand = \"x\"\nurl = \"http://h/mcp\"\n",
    );
    let stderr = run(&["mcp", "--config", both.to_str().unwrap()], Some("t"));
    assert!(
        stderr.contains("server `a`") && stderr.contains("not both"),
        "{stderr}"
    );
    let fine = write_config(
        dir.path(),
        &format!(
            "[[servers]]\nname = \"a\"\ncommand = {:?}\n",
            upstream_bin().display().to_string()
        ),
    );
    let stderr = run(&["mcp", "--config", fine.to_str().unwrap()], None);
    assert!(stderr.contains("REINS_TOKEN"), "{stderr}");
    let missing = write_config(
        dir.path(),
        "[[servers]]\nname = \"a\"\ncommand = \"/nonexistent/mcp-server\"\n",
    );
    let stderr = run(&["mcp", "--config", missing.to_str().unwrap()], Some("t"));
    assert!(stderr.contains("MCP server `a`"), "{stderr}");
}

/// A stdio gateway whose `REINS_TOKEN` Reins does not accept refuses every call (`-32001`, the
/// reason named), and forwards none.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_reins_refuses_denies_every_call() {
    let s = TestServer::start().await;
    fleet(&s).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.jsonl");
    let config = write_config(
        dir.path(),
        &format!(
            "reins_url = {:?}\n{}",
            s.url(""),
            stdio_server("files", &log)
        ),
    );
    let client = stdio_client(&config, "not-a-token").await;
    let refused = call(&client, "files.echo", json!({"text": "hi"}))
        .await
        .unwrap_err();
    assert_eq!(refused.code.0, -32001, "{refused:?}");
    assert!(refused.message.contains("credentials"), "{refused:?}");
    assert!(calls(&log).is_empty());
    let _ = client.cancel().await;
}
