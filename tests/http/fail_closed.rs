//! Every failure on the decision path is a deny with a machine-readable reason, never an allow.

use serde_json::json;

use crate::harness::{TestServer, codes, pack_with};

#[tokio::test]
async fn unknown_agent_is_denied_and_recorded() {
    let s = TestServer::start().await;
    s.tool("search.web", "low").await;
    let (status, d) = s
        .invoke(&s.token("ghost", &[]), "search.web", json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(d["decision"], "deny");
    assert_eq!(codes(&d), ["unknown_agent"]);
    assert_eq!(s.stored_decisions().await, 1);
}

#[tokio::test]
async fn suspended_agent_is_denied_even_for_a_declared_tool() {
    let s = TestServer::start().await;
    s.tool("search.web", "low").await;
    s.agent_with("bot", json!({"name": "bot", "owner": "a", "risk_tier": "minimal", "tools": ["search.web"], "status": "suspended"})).await;
    let (_, d) = s
        .invoke(&s.token("bot", &[]), "search.web", json!({}))
        .await;
    assert_eq!(d["decision"], "deny");
    assert_eq!(codes(&d), ["agent_suspended"]);
    // Re-activating restores it.
    s.agent("bot", "minimal", &["search.web"]).await;
    let (_, d) = s
        .invoke(&s.token("bot", &[]), "search.web", json!({}))
        .await;
    assert_eq!(d["decision"], "allow", "{d}");
}

#[tokio::test]
async fn unknown_tool_is_denied() {
    let s = TestServer::start().await;
    s.agent("bot", "minimal", &[]).await;
    let (_, d) = s
        .invoke(&s.token("bot", &[]), "never.registered", json!({}))
        .await;
    assert_eq!(codes(&d), ["unknown_tool"], "{d}");
}

#[tokio::test]
async fn an_empty_policy_pack_denies_everything() {
    let empty = tempfile::tempdir().unwrap();
    let s = TestServer::with_policies(Some(empty.path())).await;
    s.tool("search.web", "low").await;
    s.agent("bot", "minimal", &["search.web"]).await;
    let (_, d) = s
        .invoke(&s.token("bot", &[]), "search.web", json!({}))
        .await;
    assert_eq!(d["decision"], "deny");
    assert_eq!(codes(&d), ["no_policy"]);
    let response = s.client.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 503);
}

#[tokio::test]
async fn a_policy_that_errors_denies_even_when_a_permit_matched() {
    // Cedar skips an erroring policy; for a forbid that would be an allow. Reins denies instead.
    let s = TestServer::start().await;
    s.tool("payments.refund", "medium").await;
    s.agent("bot", "limited", &["payments.refund"]).await;
    let (_, d) = s
        .invoke(
            &s.token("bot", &[]),
            "payments.refund",
            json!({"amount": "a million"}),
        )
        .await;
    assert_eq!(d["decision"], "deny", "{d}");
    assert_eq!(codes(&d), ["policy_error"]);
    assert_eq!(d["errors"][0]["policy_id"], "amount-cap");
}

#[tokio::test]
async fn a_storage_failure_is_a_deny_not_an_allow() {
    crate::sqlite_only!();
    let s = TestServer::start().await;
    s.tool("search.web", "low").await;
    s.agent("bot", "minimal", &["search.web"]).await;
    let token = s.token("bot", &[]);
    assert_eq!(
        s.invoke(&token, "search.web", json!({})).await.1["decision"],
        "allow"
    );

    // Break the decisions table behind the server's back.
    let db = s.config.database_path();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("DROP TABLE decisions")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let (status, d) = s.invoke(&token, "search.web", json!({})).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["decision"], "deny", "{d}");
    assert_eq!(codes(&d), ["ledger_unavailable"]);

    let (status, e) = s.post("/v1/decisions/batch", &token, json!({"requests": [{"action": "invoke", "resource": {"type": "Tool", "id": "search.web"}}]})).await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(codes(&e["decisions"][0]), ["ledger_unavailable"]);
}

#[tokio::test]
async fn the_suspended_forbid_holds_inside_cedar_too() {
    // The pipeline denies suspended agents before Cedar; the pack's own forbid must also hold, for
    // evaluations that bypass that check. Prove it with a pack whose permit matches everything.
    let pack = pack_with(&[(
        "open.cedar",
        "@id(\"open\") permit (principal, action, resource);",
    )]);
    let s = TestServer::with_policies(Some(pack.path())).await;
    s.tool("db.drop", "critical").await;
    s.agent("bot", "high", &[]).await;
    let (_, d) = s.invoke(&s.token("bot", &[]), "db.drop", json!({})).await;
    // The permit-all is overridden by the tier forbid: forbid wins in Cedar.
    assert_eq!(d["decision"], "deny", "{d}");
    let pack = std::sync::Arc::new(s.server.as_ref().unwrap().state.pipeline.policies());
    assert!(
        pack.policy_set()
            .policy(&cedar_policy::PolicyId::new("suspended-agents"))
            .is_some()
    );
}

#[tokio::test]
async fn an_admin_change_that_cannot_be_stored_changes_nothing_and_the_ledger_carries_on() {
    crate::sqlite_only!();
    let mut s = TestServer::start().await;
    s.tool("search.web", "low").await;
    s.agent("bot", "minimal", &["search.web"]).await;
    let db = s.config.database_path();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("DROP TABLE agents")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DROP TABLE killswitches")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    // The registry change fails as a whole: 503, and the server still knows the old record.
    let (status, e) = s
        .put(
            "/v1/agents/bot",
            &s.admin(),
            json!({"name": "bot", "owner": "a", "risk_tier": "high", "tools": ["search.web"]}),
        )
        .await;
    assert_eq!(status, 503, "{e}");
    let (_, agent) = s.get("/v1/agents/bot", &s.admin()).await;
    assert_eq!(
        (agent["risk_tier"].as_str(), agent["version"].as_i64()),
        (Some("minimal"), Some(1)),
        "{agent}"
    );

    // A kill switch that cannot be recorded is not engaged.
    let (status, e) = s
        .post(
            "/v1/killswitch",
            &s.token("oncall", &["operator"]),
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!(status, 503, "{e}");
    let (_, d) = s
        .invoke(&s.token("bot", &[]), "search.web", json!({}))
        .await;
    assert_eq!(
        d["decision"], "allow",
        "the sequencer carries on after a failed commit: {d}"
    );

    // Nothing of the failed transactions reached the ledger, which still verifies.
    let (_, page) = s
        .get("/v1/ledger/entries?start=0&end=100", &s.admin())
        .await;
    let types: Vec<&str> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entry"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "policy_version_created",
            "policy_tested",
            "policy_activated",
            "policy_loaded",
            "policy_loaded",
            "self_check",
            "tool_registered",
            "agent_registered",
            "decision"
        ]
    );
    s.stop_and_verify_ledger().await;
}
