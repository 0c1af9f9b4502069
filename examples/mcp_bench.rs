//! Driver of `scripts/bench-mcp.sh`: the MCP gateway's added latency per `tools/call`, against
//! calling the same MCP server directly, in one run. Opens three paths and alternates one call on
//! each, so that noise on this shared machine falls on all three alike:
//!
//! - direct: an rmcp client on `reins-demo-mcp-server` over stdio;
//! - gateway: an rmcp client on `reins mcp --config FILE` over stdio, the same server behind it;
//! - decision: `POST /v1/decisions` for the same call (what the gateway asks Reins).
//!
//! Prints p50, p99, p99.9 and max per path in milliseconds.
//!
//!   mcp_bench --reins BIN --upstream BIN --config FILE --url URL --token TOKEN [--calls N]

use std::time::{Duration, Instant};

use anyhow::Context as _;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::TokioChildProcess;
use serde_json::json;

fn arg(args: &[String], name: &str) -> anyhow::Result<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .with_context(|| format!("{name} is required"))
}

fn quantiles(name: &str, samples: &mut [Duration]) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1e3
    };
    println!(
        "{name:<34} {:>6} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
        samples.len(),
        at(0.5),
        at(0.99),
        at(0.999),
        at(1.0)
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    reins::crypto::install_crypto_provider();
    let args: Vec<String> = std::env::args().collect();
    let calls: usize = arg(&args, "--calls").map_or(Ok(5000), |n| n.parse())?;
    let token = arg(&args, "--token")?;
    let url = arg(&args, "--url")?;

    let direct = ()
        .serve(TokioChildProcess::new(tokio::process::Command::new(arg(
            &args,
            "--upstream",
        )?))?)
        .await?;
    let mut gateway_command = tokio::process::Command::new(arg(&args, "--reins")?);
    gateway_command
        .args(["mcp", "--config", &arg(&args, "--config")?])
        .env("REINS_TOKEN", &token);
    let gateway = ().serve(TokioChildProcess::new(gateway_command)?).await?;
    let http = reqwest::Client::new();
    let decision = json!({"action": "invoke", "resource": {"type": "Tool", "id": "files.echo"},
        "context": {"args": {"text": "bench"}, "mcp": {"server": "files", "method": "tools/call"}}});

    let params = |name: &str| {
        let mut p = CallToolRequestParams::new(name.to_owned());
        p.arguments = json!({"text": "bench"}).as_object().cloned();
        p
    };
    let (mut d, mut g, mut r) = (Vec::new(), Vec::new(), Vec::new());
    // Warm-up: connections, caches, the first page of each server's code.
    for round in 0..calls + 200 {
        let t = Instant::now();
        direct.call_tool(params("echo")).await?;
        let direct_took = t.elapsed();
        let t = Instant::now();
        gateway
            .call_tool(params("files.echo"))
            .await
            .context("the gateway refused the call: is the agent allowed files.echo?")?;
        let gateway_took = t.elapsed();
        let t = Instant::now();
        let answer: serde_json::Value = http
            .post(format!("{url}/v1/decisions"))
            .bearer_auth(&token)
            .json(&decision)
            .send()
            .await?
            .json()
            .await?;
        let decision_took = t.elapsed();
        anyhow::ensure!(answer["decision"] == "allow", "decision: {answer}");
        if round >= 200 {
            d.push(direct_took);
            g.push(gateway_took);
            r.push(decision_took);
        }
    }
    println!(
        "{:<34} {:>6} {:>8} {:>8} {:>8} {:>8}",
        "path (ms)", "calls", "p50", "p99", "p99.9", "max"
    );
    quantiles("MCP server directly (stdio)", &mut d);
    quantiles("through reins mcp (stdio)", &mut g);
    quantiles("POST /v1/decisions alone", &mut r);
    let p = |s: &[Duration], q: f64| s[((s.len() as f64 * q) as usize).min(s.len() - 1)];
    println!(
        "added by the gateway: p50 {:.3} ms, p99 {:.3} ms",
        (p(&g, 0.5).as_secs_f64() - p(&d, 0.5).as_secs_f64()) * 1e3,
        (p(&g, 0.99).as_secs_f64() - p(&d, 0.99).as_secs_f64()) * 1e3,
    );
    let _ = direct.cancel().await;
    let _ = gateway.cancel().await;
    Ok(())
}
