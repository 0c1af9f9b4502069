//! One scenario through the public API, on SQLite and on PostgreSQL: the same answers, reason
//! codes and ledger indices, a ledger that verifies, and state that survives a restart.

use std::time::Duration;

use reins::config::{Config, Overrides};
use reins::server::start;
use serde_json::{Value, json};

use crate::postgres_or_skip;
use crate::replica::{Client, Tokens, repo};

fn config(data: &std::path::Path, database_url: Option<&str>) -> Config {
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: Some(data.to_path_buf()),
        policy_dir: Some(repo().join("policies")),
        schema_file: Some(repo().join("schemas/reins.cedarschema")),
        ..Overrides::default()
    };
    let mut config = Config::load(None, &overrides).expect("test config");
    config.database.url = database_url.map(str::to_owned);
    config.ledger.checkpoint_interval = Duration::from_millis(50);
    config
}

/// What the scenario saw, step by step: outcome, first reason code, ledger index.
type Transcript = Vec<String>;

fn line(step: &str, d: &Value) -> String {
    format!(
        "{step}: {} {} @{}",
        d["decision"].as_str().unwrap_or("?"),
        d["reasons"][0]["code"].as_str().unwrap_or("-"),
        d["ledger"]["index"]
    )
}

/// The scenario, on a server started from `config`; restarted once on the same database.
async fn scenario(config: Config) -> Transcript {
    reins::crypto::install_crypto_provider();
    let mut server = start(config.clone()).await.expect("server starts");
    let tokens = Tokens::new(&config.keys_dir());
    let client = Client::new();
    let admin = tokens.mint(
        "ops",
        None,
        &["admin", "operator", "auditor", "compliance_officer"],
    );
    let agent = tokens.mint("refund-bot", Some("alice"), &[]);
    let approver = tokens.mint("bob", None, &["approver"]);
    let mut base = format!("http://{}", server.addr);
    let mut out = Transcript::new();

    for (tool, risk) in [("crm.note", "medium"), ("payments.refund", "high")] {
        let (status, body) = client
            .put(
                &format!("{base}/v1/tools/{tool}"),
                &admin,
                json!({"description": tool, "risk": risk, "category": "test"}),
            )
            .await
            .unwrap();
        assert_eq!(status, 201, "{body}");
    }
    let record = json!({"name": "Refund bot", "owner": "payments", "risk_tier": "limited",
                        "tools": ["crm.note", "payments.refund"]});
    let (status, body) = client
        .put(
            &format!("{base}/v1/agents/refund-bot"),
            &admin,
            record.clone(),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");

    let (_, d) = client.decide(&base, &agent, "crm.note").await.unwrap();
    out.push(line("declared tool", &d));
    let id = d["decision_id"].as_str().unwrap().to_owned();
    let (status, stored) = client
        .get(&format!("{base}/v1/decisions/{id}"), &admin)
        .await
        .unwrap();
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["ledger"], d["ledger"], "{stored}");
    assert_eq!(stored["request"]["resource"]["id"], "crm.note", "{stored}");

    // Its outcome, once: the second report is refused (on PostgreSQL by the database itself).
    let outcome = format!("{base}/v1/decisions/{id}/outcome");
    let mut reported = Vec::new();
    for _ in 0..2 {
        let (status, body) = client
            .post(&outcome, &agent, json!({"status": "succeeded"}))
            .await
            .unwrap();
        reported.push(status);
        if status == 201 {
            out.push(format!(
                "outcome: {} @{}",
                body["status"], body["ledger"]["index"]
            ));
        }
    }
    assert_eq!(reported, [201, 409]);

    let (_, d) = client.decide(&base, &agent, "shell.exec").await.unwrap();
    out.push(line("unknown tool", &d));

    let refund = json!({"action": "invoke", "resource": {"type": "Tool", "id": "payments.refund"},
                        "context": {"args": {"amount": 50, "currency": "EUR"}}});
    let (_, d) = client
        .post(&format!("{base}/v1/decisions"), &agent, refund.clone())
        .await
        .unwrap();
    out.push(line("high risk", &d));
    let approval = d["access_request"]["approval_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = client
        .post(
            &format!("{base}/v1/approvals/{approval}/grant"),
            &approver,
            json!({"comment": "ok"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let mut with = refund.clone();
    with["approval_id"] = json!(approval);
    for step in ["approved", "approval reused"] {
        let (_, d) = client
            .post(&format!("{base}/v1/decisions"), &agent, with.clone())
            .await
            .unwrap();
        out.push(line(step, &d));
    }

    let (status, switch) = client
        .post(
            &format!("{base}/v1/killswitch"),
            &admin,
            json!({"scope": {"agent": "refund-bot"}, "reason": "drill"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{switch}");
    let (_, d) = client.decide(&base, &agent, "crm.note").await.unwrap();
    out.push(line("kill switch engaged", &d));
    let (status, body) = client
        .send(
            reqwest::Method::DELETE,
            &format!("{base}/v1/killswitch/{}", switch["id"].as_str().unwrap()),
            &admin,
            Some(json!({"reason": "over"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let (_, d) = client.decide(&base, &agent, "crm.note").await.unwrap();
    out.push(line("kill switch released", &d));

    let mut suspended = record.clone();
    suspended["status"] = json!("suspended");
    let (status, body) = client
        .put(&format!("{base}/v1/agents/refund-bot"), &admin, suspended)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let (_, d) = client.decide(&base, &agent, "crm.note").await.unwrap();
    out.push(line("suspended", &d));
    let (status, body) = client
        .put(&format!("{base}/v1/agents/refund-bot"), &admin, record)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");

    for document in ["model-card", "checklist"] {
        let (status, body) = client
            .get(&format!("{base}/v1/agents/refund-bot/{document}"), &admin)
            .await
            .unwrap();
        assert_eq!(status, 200, "{document}: {body}");
    }

    // A restart on the same database: the registry, and the ledger's tree, are where they were.
    server.stop().await;
    server = start(config.clone()).await.expect("server restarts");
    base = format!("http://{}", server.addr);
    let (_, d) = client.decide(&base, &agent, "crm.note").await.unwrap();
    out.push(line("after a restart", &d));
    let index = d["ledger"]["index"].as_u64().unwrap();

    // The entry is in a signed checkpoint soon, with an inclusion proof that checks.
    let mut size = 0;
    for _ in 0..100 {
        let note = reqwest::Client::new()
            .get(format!("{base}/v1/ledger/checkpoint"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        size = note
            .lines()
            .nth(1)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        if size > index {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(size > index, "no checkpoint covers entry {index}");
    let (status, proof) = client
        .get(
            &format!("{base}/v1/ledger/proof/inclusion?index={index}&tree_size={size}"),
            &admin,
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{proof}");
    let response = reqwest::Client::new()
        .get(format!("{base}/v1/audit-pack"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let pack = response.bytes().await.unwrap();
    let verified = reins::compliance::pack::verify(std::io::Cursor::new(pack.to_vec()), None)
        .expect("the audit pack verifies");
    assert_eq!(verified.entries, verified.end, "{verified:?}");
    server.stop().await;

    let mut verify = std::process::Command::new(env!("CARGO_BIN_EXE_reins"));
    verify
        .args(["ledger", "verify", "--data-dir"])
        .arg(&config.data_dir);
    if let Some(url) = &config.database.url {
        verify.args(["--database-url", url]);
    }
    let output = verify.output().unwrap();
    assert!(
        output.status.success(),
        "ledger verify: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgres_answer_the_same_scenario_alike() {
    let db = postgres_or_skip!();
    let sqlite_dir = tempfile::tempdir().unwrap();
    let postgres_dir = tempfile::tempdir().unwrap();
    let on_sqlite = scenario(config(sqlite_dir.path(), None)).await;
    let on_postgres = scenario(config(postgres_dir.path(), Some(&db.url))).await;
    let wanted = [
        "declared tool: allow policy @",
        "outcome: \"succeeded\" @",
        "unknown tool: deny unknown_tool @",
        "high risk: deny approval_required @",
        "approved: allow policy @",
        "approval reused: deny approval_invalid @",
        "kill switch engaged: deny kill_switch @",
        "kill switch released: allow policy @",
        "suspended: deny agent_suspended @",
        "after a restart: allow policy @",
    ];
    assert_eq!(on_sqlite.len(), wanted.len(), "{on_sqlite:#?}");
    for (want, got) in wanted.iter().zip(&on_sqlite) {
        assert!(got.starts_with(want), "{got} (wanted {want}...)");
    }
    assert_eq!(
        on_postgres, on_sqlite,
        "the two backends answered differently"
    );
}
