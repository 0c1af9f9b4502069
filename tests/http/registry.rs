//! The registry admin API: roles, validation, versions.

use serde_json::json;

use crate::harness::TestServer;

#[tokio::test]
async fn agents_and_tools_round_trip_with_versions() {
    let s = TestServer::start().await;
    let admin = s.admin();
    let (status, tool) = s
        .put(
            "/v1/tools/payments.refund",
            &admin,
            json!({"description": "Refund", "risk": "high", "category": "payments"}),
        )
        .await;
    assert_eq!(status, 201, "{tool}");
    assert_eq!(tool["version"], 1);
    let record = json!({"name": "Refund bot", "owner": "payments-team", "provider": "Acme", "model": "gpt-x", "model_version": "2026-01",
        "risk_tier": "high", "intended_purpose": "refunds under policy", "tools": ["payments.refund"], "status": "active"});
    let (status, agent) = s.put("/v1/agents/refund-bot", &admin, record.clone()).await;
    assert_eq!(status, 201, "{agent}");
    let (status, agent) = s.put("/v1/agents/refund-bot", &admin, record).await;
    assert_eq!(status, 200);
    assert_eq!(agent["version"], 2);

    let auditor = s.token("auditor-1", &["auditor"]);
    let (status, got) = s.get("/v1/agents/refund-bot", &auditor).await;
    assert_eq!(status, 200);
    assert_eq!(got, agent);
    assert_eq!(got["tools"], json!(["payments.refund"]));
    let (_, list) = s.get("/v1/agents", &auditor).await;
    assert_eq!(list["agents"].as_array().unwrap().len(), 1);
    let (_, list) = s.get("/v1/tools", &auditor).await;
    assert_eq!(list["tools"][0]["id"], "payments.refund");
    assert_eq!(
        s.get("/v1/tools/payments.refund", &auditor).await.1["risk"],
        "high"
    );
    assert_eq!(s.get("/v1/agents/nobody", &auditor).await.0, 404);
    assert_eq!(s.get("/v1/tools/nothing", &auditor).await.0, 404);
}

#[tokio::test]
async fn only_admins_write_and_only_admins_or_auditors_read() {
    let s = TestServer::start().await;
    let tool = json!({"description": "x", "risk": "low", "category": "c"});
    for roles in [&[][..], &["auditor"][..], &["agent"][..]] {
        let (status, e) = s
            .put("/v1/tools/t", &s.token("someone", roles), tool.clone())
            .await;
        assert_eq!(status, 403, "{roles:?}: {e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("registry.write")
        );
    }
    assert_eq!(s.get("/v1/tools", &s.token("someone", &[])).await.0, 403);
    assert_eq!(
        s.get("/v1/tools", &s.token("someone", &[])).await.1["error"]["code"],
        "forbidden"
    );
    assert_eq!(s.get("/v1/tools", &s.admin()).await.1["tools"], json!([]));
}

#[tokio::test]
async fn invalid_records_are_refused_and_change_nothing() {
    let s = TestServer::start().await;
    let admin = s.admin();
    s.tool("search.web", "low").await;
    let base =
        json!({"name": "bot", "owner": "team", "risk_tier": "minimal", "tools": ["search.web"]});

    let cases = [
        (
            json!({"name": "bot", "owner": "team", "risk_tier": "extreme"}),
            400,
            "risk_tier",
        ),
        (json!({"name": "bot", "risk_tier": "minimal"}), 400, "owner"),
        (
            json!({"name": "bot", "owner": "team", "risk_tier": "minimal", "risk_teir": "high"}),
            400,
            "risk_teir",
        ),
        (
            json!({"name": "", "owner": "team", "risk_tier": "minimal"}),
            422,
            "name",
        ),
        (
            json!({"name": "bot", "owner": "team", "risk_tier": "prohibited"}),
            422,
            "status",
        ),
        (
            json!({"name": "bot", "owner": "team", "risk_tier": "minimal", "tools": ["search.web", "nope"]}),
            422,
            "tools[1]",
        ),
        (
            json!({"name": "bot", "owner": "team", "risk_tier": "minimal", "tools": ["search.web", "search.web"]}),
            422,
            "tools[1]",
        ),
        (
            json!({"name": "bot", "owner": "team", "risk_tier": "minimal", "tools": ["bad id!"]}),
            400,
            "tools[0]",
        ),
    ];
    for (body, status, field) in cases {
        let (st, e) = s.put("/v1/agents/bot", &admin, body.clone()).await;
        assert_eq!(
            (st, e["error"]["field"].as_str()),
            (status, Some(field)),
            "{body} -> {e}"
        );
    }
    assert_eq!(
        s.get("/v1/agents/bot", &admin).await.0,
        404,
        "nothing was stored"
    );

    // A prohibited system may be recorded, suspended.
    let (st, e) = s
        .put(
            "/v1/agents/banned",
            &admin,
            json!({"name": "x", "owner": "t", "risk_tier": "prohibited", "status": "suspended"}),
        )
        .await;
    assert_eq!(st, 201, "{e}");

    let (st, e) = s.put("/v1/agents/bad%20id", &admin, base.clone()).await;
    assert_eq!((st, e["error"]["field"].as_str()), (400, Some("id")), "{e}");
    let (st, e) = s
        .put(
            "/v1/tools/t",
            &admin,
            json!({"description": "d", "risk": "low", "category": ""}),
        )
        .await;
    assert_eq!(
        (st, e["error"]["field"].as_str()),
        (422, Some("category")),
        "{e}"
    );
    let (st, e) = s
        .put(
            "/v1/tools/t",
            &admin,
            json!({"description": "d", "risk": "severe", "category": "c"}),
        )
        .await;
    assert_eq!(
        (st, e["error"]["field"].as_str()),
        (400, Some("risk")),
        "{e}"
    );
}
