//! Allow and deny from identity, risk tier and context; delegation; batches; durability.

use serde_json::json;

use crate::harness::{TestServer, codes, pack_with, policy_ids};

/// A fleet: tools of every risk and agents of several tiers.
async fn fleet(s: &TestServer) {
    s.tool("search.web", "low").await;
    s.tool("crm.update", "medium").await;
    s.tool("payments.refund", "high").await;
    s.tool("db.drop", "critical").await;
    s.agent(
        "support-bot",
        "limited",
        &["search.web", "crm.update", "payments.refund", "db.drop"],
    )
    .await;
    s.agent(
        "credit-bot",
        "high",
        &["search.web", "db.drop", "payments.refund"],
    )
    .await;
    s.agent(
        "faq-bot",
        "minimal",
        &["search.web", "crm.update", "payments.refund"],
    )
    .await;
}

#[tokio::test]
async fn the_token_identity_decides_which_declared_tools_are_allowed() {
    let s = TestServer::start().await;
    fleet(&s).await;
    let support = s.token("support-bot", &[]);
    let faq = s.token("faq-bot", &[]);

    let (status, d) = s.invoke(&support, "crm.update", json!({})).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["decision"], "allow", "{d}");
    assert_eq!(policy_ids(&d), ["declared-tools"]);
    assert!(d["policy_digest"].as_str().unwrap().starts_with("sha256:"));
    assert!(d["decision_id"].as_str().is_some() && d["evaluated_at"].as_str().is_some());

    // The same request from an agent that did not declare the tool: default deny.
    s.agent("narrow-bot", "limited", &["search.web"]).await;
    let (_, d) = s
        .invoke(&s.token("narrow-bot", &[]), "crm.update", json!({}))
        .await;
    assert_eq!(d["decision"], "deny", "{d}");
    assert_eq!(codes(&d), ["no_matching_permit"]);

    // A different agent's token gets that agent's answer, not the first one's.
    let (_, d) = s.invoke(&faq, "crm.update", json!({})).await;
    assert_eq!(d["decision"], "allow", "{d}");
}

#[tokio::test]
async fn risk_tier_limits_what_a_declared_tool_may_do() {
    let s = TestServer::start().await;
    fleet(&s).await;

    // High tier: everything declared except critical tools (high-risk ones wait for a human).
    let credit = s.token("credit-bot", &[]);
    let (_, d) = s.invoke(&credit, "search.web", json!({})).await;
    assert_eq!(d["decision"], "allow", "{d}");
    let (_, d) = s.invoke(&credit, "payments.refund", json!({})).await;
    assert_eq!(codes(&d), ["approval_required"], "{d}");
    let (_, d) = s
        .post(
            "/v1/decisions",
            &credit,
            json!({"action": "invoke", "resource": {"type": "Tool", "id": "db.drop"},
                   "intent": "clean up"}),
        )
        .await;
    assert_eq!(d["decision"], "deny", "{d}");
    assert_eq!(policy_ids(&d), ["tier-high-no-critical"]);

    // Minimal tier: low and medium only, even when declared.
    let faq = s.token("faq-bot", &[]);
    let (_, d) = s.invoke(&faq, "search.web", json!({})).await;
    assert_eq!(d["decision"], "allow", "{d}");
    let (_, d) = s.invoke(&faq, "payments.refund", json!({})).await;
    assert_eq!(d["decision"], "deny", "{d}");
    // A tier limit is not something a human can approve past: a plain deny naming both policies.
    let mut ids = policy_ids(&d);
    ids.sort();
    assert_eq!(
        ids,
        ["approval-high-risk-tools", "tier-minimal-low-medium-only"]
    );
    assert_eq!(codes(&d), ["policy", "policy"]);
    assert!(d["access_request"].is_null());

    // Limited tier: the declaration alone decides, critical included, once the agent states
    // why (policies/intent.cedar); without an intent a critical tool is denied.
    let drop_with_intent = json!({"action": "invoke", "resource": {"type": "Tool", "id": "db.drop"},
                                  "intent": "the ticket asks to drop the staging table"});
    let bot = s.token("support-bot", &[]);
    let (_, d) = s
        .post("/v1/decisions", &bot, drop_with_intent.clone())
        .await;
    assert_eq!(d["decision"], "allow", "{d}");
    let (_, d) = s.invoke(&bot, "db.drop", json!({})).await;
    assert_eq!(policy_ids(&d), ["intent-for-critical-tools"], "{d}");

    // Changing the tier in the registry changes the next decision.
    s.agent("support-bot", "high", &["db.drop"]).await;
    let (_, d) = s
        .post("/v1/decisions", &bot, drop_with_intent.clone())
        .await;
    assert_eq!(policy_ids(&d), ["tier-high-no-critical"], "{d}");

    // So does changing the tool: Reins keeps the entities of an agent-tool pair built, and a
    // change to either record must reach the next decision for that very pair.
    s.tool("db.drop", "low").await;
    let (_, d) = s.invoke(&bot, "db.drop", json!({})).await;
    assert_eq!(d["decision"], "allow", "{d}");
    s.tool("db.drop", "critical").await;
    let (_, d) = s.post("/v1/decisions", &bot, drop_with_intent).await;
    assert_eq!(policy_ids(&d), ["tier-high-no-critical"], "{d}");
}

#[tokio::test]
async fn the_amount_cap_reads_the_tool_arguments() {
    let s = TestServer::start().await;
    fleet(&s).await;
    let support = s.token("support-bot", &[]);
    let (_, d) = s
        .invoke(&support, "crm.update", json!({"amount": 100000}))
        .await;
    assert_eq!(d["decision"], "allow", "{d}");
    let (_, d) = s
        .invoke(
            &support,
            "crm.update",
            json!({"amount": 100001, "currency": "EUR"}),
        )
        .await;
    assert_eq!(d["decision"], "deny", "{d}");
    assert_eq!(policy_ids(&d), ["amount-cap"]);
    let annotations = &d["reasons"][0]["annotations"];
    assert_eq!(annotations["id"], "amount-cap", "{d}");
}

#[tokio::test]
async fn delegation_puts_the_agent_in_principal_and_the_user_in_context() {
    let pack = pack_with(&[(
        "on_behalf.cedar",
        "// Only alice may have agents act for her on the CRM.\n@id(\"alice-delegates-crm\")\nforbid (principal is Agent, action == Action::\"invoke\", resource == Tool::\"crm.update\")\nunless { context has user && context.user == User::\"alice\" };\n",
    )]);
    let s = TestServer::with_policies(Some(pack.path())).await;
    fleet(&s).await;

    let for_alice = s.mint("support-bot", Some("alice"), &[]);
    let for_bob = s.mint("support-bot", Some("bob"), &[]);
    let (_, d) = s.invoke(&for_alice, "crm.update", json!({})).await;
    assert_eq!(d["decision"], "allow", "{d}");
    assert_eq!(policy_ids(&d), ["declared-tools"]);
    let (_, d) = s.invoke(&for_bob, "crm.update", json!({})).await;
    assert_eq!(d["decision"], "deny", "{d}");
    assert_eq!(policy_ids(&d), ["alice-delegates-crm"]);

    // The stored record names both parties.
    let id = d["decision_id"].as_str().unwrap();
    let (_, record) = s.get(&format!("/v1/decisions/{id}"), &s.admin()).await;
    assert_eq!(record["agent_id"], "support-bot", "{record}");
    assert_eq!(record["on_behalf_of"], "bob", "{record}");

    // A caller cannot claim a user through the context.
    let (status, e) = s
        .post("/v1/decisions", &s.token("support-bot", &[]), json!({"action": "invoke", "resource": {"type": "Tool", "id": "crm.update"}, "context": {"user": {"__entity": {"type": "User", "id": "alice"}}}}))
        .await;
    assert_eq!(status, 422, "{e}");
    assert_eq!(e["error"]["field"], "context.user");
}

#[tokio::test]
async fn a_decision_survives_a_restart_with_its_full_request() {
    let mut s = TestServer::start().await;
    fleet(&s).await;
    let request = json!({"action": "invoke", "resource": {"type": "Tool", "id": "crm.update"}, "context": {"args": {"amount": 4200, "currency": "EUR"}}, "session_id": "s-1"});
    let (_, d) = s
        .post(
            "/v1/decisions",
            &s.token("support-bot", &[]),
            request.clone(),
        )
        .await;
    let id = d["decision_id"].as_str().unwrap().to_owned();

    s.restart().await;

    let (status, record) = s
        .get(
            &format!("/v1/decisions/{id}"),
            &s.token("auditor-1", &["auditor"]),
        )
        .await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["request"], request);
    // The answer, field for field (the ledger reference included).
    for (key, value) in d.as_object().unwrap() {
        assert_eq!(&record[key], value, "{key}: {record}");
    }
    // The registry came back too: the same agent is still allowed.
    let (_, again) = s
        .invoke(&s.token("support-bot", &[]), "crm.update", json!({}))
        .await;
    assert_eq!(again["decision"], "allow", "{again}");
}

#[tokio::test]
async fn reading_decisions_needs_admin_or_auditor() {
    let s = TestServer::start().await;
    fleet(&s).await;
    let (_, d) = s
        .invoke(&s.token("support-bot", &[]), "crm.update", json!({}))
        .await;
    let path = format!("/v1/decisions/{}", d["decision_id"].as_str().unwrap());
    let (status, e) = s.get(&path, &s.token("support-bot", &[])).await;
    assert_eq!(status, 403, "{e}");
    assert_eq!(e["error"]["code"], "forbidden");
    assert_eq!(s.get(&path, &s.admin()).await.0, 200);
    let (status, e) = s
        .get(
            "/v1/decisions/01a1fe22-7cac-75f8-aeaf-09ce183a85fb",
            &s.admin(),
        )
        .await;
    assert_eq!(status, 404, "{e}");
    let (status, e) = s.get("/v1/decisions/not-a-uuid", &s.admin()).await;
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (400, Some("id")),
        "{e}"
    );
}

#[tokio::test]
async fn a_batch_answers_in_order_and_stores_each_decision() {
    let s = TestServer::start().await;
    fleet(&s).await;
    let credit = s.token("credit-bot", &[]);
    let requests: Vec<_> = ["search.web", "db.drop", "crm.update", "payments.refund"]
        .iter()
        .map(|t| json!({"action": "invoke", "resource": {"type": "Tool", "id": t}}))
        .collect();
    let (status, body) = s
        .post(
            "/v1/decisions/batch",
            &credit,
            json!({"requests": requests}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let decisions = body["decisions"].as_array().unwrap();
    let outcomes: Vec<&str> = decisions
        .iter()
        .map(|d| d["decision"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["allow", "deny", "deny", "deny"]);
    assert_eq!(codes(&decisions[2]), ["no_matching_permit"]);
    assert_eq!(codes(&decisions[3]), ["approval_required"]);

    let admin = s.admin();
    for (decision, tool) in
        decisions
            .iter()
            .zip(["search.web", "db.drop", "crm.update", "payments.refund"])
    {
        let (status, record) = s
            .get(
                &format!(
                    "/v1/decisions/{}",
                    decision["decision_id"].as_str().unwrap()
                ),
                &admin,
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(record["request"]["resource"]["id"], tool);
        assert_eq!(record["decision"], decision["decision"]);
    }
    assert_eq!(s.stored_decisions().await, 4);
}

#[tokio::test]
async fn a_batch_is_bounded_and_fails_whole_on_one_bad_item() {
    let data = tempfile::tempdir().unwrap();
    let mut config = crate::harness::test_config(data.path(), None);
    config.batch_max = 3;
    let s = TestServer::with_config(data, config).await;
    fleet(&s).await;
    let credit = s.token("credit-bot", &[]);
    let ok = json!({"action": "invoke", "resource": {"type": "Tool", "id": "search.web"}});

    let (status, e) = s
        .post(
            "/v1/decisions/batch",
            &credit,
            json!({"requests": [ok, ok, ok, ok]}),
        )
        .await;
    assert_eq!(status, 422, "{e}");
    assert_eq!(e["error"]["field"], "requests");

    let bad = json!({"action": "fly", "resource": {"type": "Tool", "id": "search.web"}});
    let (status, e) = s
        .post(
            "/v1/decisions/batch",
            &credit,
            json!({"requests": [ok, bad]}),
        )
        .await;
    assert_eq!(status, 422, "{e}");
    assert_eq!(e["error"]["field"], "requests[1].action");

    let (status, e) = s
        .post("/v1/decisions/batch", &credit, json!({"requests": []}))
        .await;
    assert_eq!(status, 422, "{e}");
    assert_eq!(s.stored_decisions().await, 0);
}

#[tokio::test]
async fn decisions_are_listed_newest_first_and_page_backwards() {
    let s = TestServer::start().await;
    fleet(&s).await;
    let support = s.token("support-bot", &[]);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, d) = s.invoke(&support, "search.web", json!({})).await;
        ids.push(d["decision_id"].as_str().unwrap().to_owned());
    }
    s.invoke(&s.token("credit-bot", &[]), "search.web", json!({}))
        .await;
    let admin = s.admin();
    let (_, page) = s
        .get("/v1/decisions?agent=support-bot&limit=2", &admin)
        .await;
    let listed: Vec<&str> = page["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["decision_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[2].as_str(), ids[1].as_str()]);
    let (_, page) = s
        .get(
            &format!("/v1/decisions?agent=support-bot&before={}", ids[1]),
            &admin,
        )
        .await;
    assert_eq!(page["decisions"][0]["decision_id"], ids[0].as_str());
    assert_eq!(page["decisions"].as_array().unwrap().len(), 1);
    let (status, e) = s.get("/v1/decisions?limit=0", &admin).await;
    assert_eq!((status, e["error"]["field"].as_str()), (400, Some("limit")));
}
