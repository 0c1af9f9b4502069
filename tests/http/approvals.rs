//! Human approval, end to end over HTTP, and every way an approval must not work.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{TestServer, codes, eventually, test_config};

async fn fleet(s: &TestServer) {
    s.tool("payments.refund", "high").await;
    s.tool("payments.payout", "high").await;
    s.agent_with("refund-bot", json!({"name": "Refund bot", "owner": "team-lead", "risk_tier": "limited", "tools": ["payments.refund", "payments.payout"]})).await;
}

fn refund(amount: i64) -> Value {
    json!({"action": "invoke", "resource": {"type": "Tool", "id": "payments.refund"}, "context": {"args": {"amount": amount, "currency": "EUR"}}})
}

fn with_approval(mut request: Value, id: &str) -> Value {
    request["approval_id"] = json!(id);
    request
}

/// Asks, gets `approval_required`, returns the approval id.
async fn ask(s: &TestServer, agent: &str, request: Value) -> String {
    let (status, d) = s.post("/v1/decisions", &s.token(agent, &[]), request).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["decision"], "deny", "{d}");
    assert_eq!(codes(&d), ["approval_required"], "{d}");
    assert_eq!(d["evaluation_id"], d["decision_id"]);
    d["access_request"]["approval_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn grant(s: &TestServer, id: &str) -> (u16, Value) {
    s.post(
        &format!("/v1/approvals/{id}/grant"),
        &s.token("alice", &["approver"]),
        json!({"comment": "refund is justified"}),
    )
    .await
}

#[tokio::test]
async fn the_full_approval_flow() {
    let s = TestServer::start().await;
    fleet(&s).await;
    let bot = s.token("refund-bot", &[]);
    let (_, d) = s.post("/v1/decisions", &bot, refund(5000)).await;
    assert_eq!(codes(&d), ["approval_required"], "{d}");
    assert_eq!(d["reasons"][0]["policy_id"], "approval-high-risk-tools");
    let access = &d["access_request"];
    let id = access["approval_id"].as_str().unwrap();
    assert_eq!(access["endpoint"], format!("/v1/approvals/{id}"));
    assert!(access["expires_at"].as_str().unwrap() > d["evaluated_at"].as_str().unwrap());
    // The stored decision is the answer, field for field, with the access request.
    let (_, stored) = s
        .get(
            &format!("/v1/decisions/{}", d["decision_id"].as_str().unwrap()),
            &s.admin(),
        )
        .await;
    for (key, value) in d.as_object().unwrap() {
        assert_eq!(&stored[key], value, "{key}: {stored}");
    }

    // The agent polls its own approval; it is pending, bound to the request.
    let (status, approval) = s.get(&format!("/v1/approvals/{id}"), &bot).await;
    assert_eq!(status, 200, "{approval}");
    assert_eq!(
        (
            approval["status"].as_str(),
            approval["approver_group"].as_str()
        ),
        (Some("pending"), Some("tool-owner"))
    );
    assert_eq!(
        approval["resource"],
        json!({"type": "Tool", "id": "payments.refund"})
    );

    // Re-submitting before the grant does not work.
    let (_, early) = s
        .post("/v1/decisions", &bot, with_approval(refund(5000), id))
        .await;
    assert_eq!(codes(&early), ["approval_invalid"], "{early}");

    // An approver sees it pending and grants it.
    let approver = s.token("alice", &["approver"]);
    let (_, pending) = s.get("/v1/approvals?status=pending", &approver).await;
    assert_eq!(pending["approvals"][0]["id"], id);
    // The list carries what each approval would let the agent do, as the single read does.
    assert_eq!(
        pending["approvals"][0]["request"]["arguments"],
        json!({"amount": 5000, "currency": "EUR"}),
        "{pending}"
    );
    let (status, granted) = grant(&s, id).await;
    assert_eq!(status, 200, "{granted}");
    assert_eq!(
        (granted["status"].as_str(), granted["decided_by"].as_str()),
        (Some("granted"), Some("alice"))
    );
    assert_eq!(
        s.get(&format!("/v1/approvals/{id}"), &bot).await.1["status"],
        "granted"
    );

    // The same request with the approval: Cedar permits it.
    let (_, allowed) = s
        .post("/v1/decisions", &bot, with_approval(refund(5000), id))
        .await;
    assert_eq!(allowed["decision"], "allow", "{allowed}");
    assert_eq!(allowed["reasons"][0]["policy_id"], "declared-tools");
    let (_, used) = s.get(&format!("/v1/approvals/{id}"), &bot).await;
    assert_eq!(used["status"], "used");
    assert_eq!(used["used_decision_id"], allowed["decision_id"]);

    // Over the amount cap another forbid denies too: no human can approve past it.
    let (_, big) = s.post("/v1/decisions", &bot, refund(500000)).await;
    assert_eq!(codes(&big), ["policy", "policy"], "{big}");
    assert!(big["access_request"].is_null());
}

#[tokio::test]
async fn an_approval_cannot_be_reused_or_moved_to_another_request() {
    let s = TestServer::start().await;
    fleet(&s).await;
    let bot = s.token("refund-bot", &[]);
    let id = ask(&s, "refund-bot", refund(5000)).await;
    grant(&s, &id).await;

    for (request, what) in [
        (refund(9000), "a different amount"),
        (
            json!({"action": "invoke", "resource": {"type": "Tool", "id": "payments.payout"}, "context": {"args": {"amount": 5000, "currency": "EUR"}}}),
            "a different tool",
        ),
    ] {
        let (_, d) = s
            .post("/v1/decisions", &bot, with_approval(request, &id))
            .await;
        assert_eq!(codes(&d), ["approval_invalid"], "{what}: {d}");
        assert!(
            d["reasons"][0]["message"]
                .as_str()
                .unwrap()
                .contains("different request"),
            "{d}"
        );
    }
    // Another agent cannot use it either.
    s.agent_with(
        "copycat",
        json!({"name": "c", "owner": "x", "risk_tier": "limited", "tools": ["payments.refund"]}),
    )
    .await;
    let (_, d) = s
        .post(
            "/v1/decisions",
            &s.token("copycat", &[]),
            with_approval(refund(5000), &id),
        )
        .await;
    assert_eq!(codes(&d), ["approval_invalid"], "{d}");

    // Used once, then never again; concurrent uses get exactly one allow.
    let attempts: Vec<_> = (0..6)
        .map(|_| s.post("/v1/decisions", &bot, with_approval(refund(5000), &id)))
        .collect();
    let results = futures::future::join_all(attempts).await;
    let allows = results
        .iter()
        .filter(|(_, d)| d["decision"] == "allow")
        .count();
    assert_eq!(allows, 1, "{results:?}");
    let (_, again) = s
        .post("/v1/decisions", &bot, with_approval(refund(5000), &id))
        .await;
    assert_eq!(codes(&again), ["approval_invalid"]);
    assert!(
        again["reasons"][0]["message"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{again}"
    );

    // An approval id that names no approval is a deny; one that is not an approval id at all
    // is a malformed request.
    let (_, d) = s
        .post(
            "/v1/decisions",
            &bot,
            with_approval(refund(5000), "0192e4a0-0000-7000-8000-000000000000"),
        )
        .await;
    assert_eq!(codes(&d), ["approval_invalid"]);
    let (status, d) = s
        .post(
            "/v1/decisions",
            &bot,
            with_approval(refund(5000), "no-such-approval"),
        )
        .await;
    assert_eq!(status, 400, "{d}");
    assert_eq!(d["error"]["field"], "approval_id", "{d}");
    // Reins sets context.approval itself; a caller cannot.
    let mut forged = refund(5000);
    forged["context"]["approval"] = json!({"id": id, "approver": "alice"});
    assert_eq!(s.post("/v1/decisions", &bot, forged).await.0, 422);
}

#[tokio::test]
async fn who_may_approve() {
    let s = TestServer::start().await;
    fleet(&s).await;
    let id = ask(&s, "refund-bot", refund(5000)).await;
    let try_grant = |token: String| {
        let s = &s;
        let id = id.clone();
        async move {
            s.post(&format!("/v1/approvals/{id}/grant"), &token, json!({}))
                .await
        }
    };
    // Without the role; the requesting agent even with the role; the agent's owner by default.
    assert_eq!(try_grant(s.token("alice", &[])).await.0, 403);
    let (status, e) = try_grant(s.token("refund-bot", &["approver"])).await;
    assert_eq!(status, 403, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("requesting agent")
    );
    let (status, e) = try_grant(s.token("team-lead", &["approver"])).await;
    assert_eq!(status, 403, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("owner"));
    // Others cannot read an agent's approval without a role; the list needs one.
    assert_eq!(
        s.get(&format!("/v1/approvals/{id}"), &s.token("someone", &[]))
            .await
            .0,
        403
    );
    assert_eq!(
        s.get("/v1/approvals", &s.token("refund-bot", &[])).await.0,
        403
    );
    assert_eq!(
        s.get(
            "/v1/approvals?status=maybe",
            &s.token("alice", &["approver"])
        )
        .await
        .0,
        400
    );

    // A denial is final.
    let (status, denied) = s
        .post(
            &format!("/v1/approvals/{id}/deny"),
            &s.token("alice", &["approver"]),
            json!({"comment": "no"}),
        )
        .await;
    assert_eq!((status, denied["status"].as_str()), (200, Some("denied")));
    assert_eq!(grant(&s, &id).await.0, 409);
    let (_, d) = s
        .post(
            "/v1/decisions",
            &s.token("refund-bot", &[]),
            with_approval(refund(5000), &id),
        )
        .await;
    assert_eq!(codes(&d), ["approval_invalid"]);
    assert_eq!(
        grant(&s, "0192e4a0-0000-7000-8000-000000000000").await.0,
        404
    );
    assert_eq!(grant(&s, "nope").await.0, 400);
}

#[tokio::test]
async fn an_expired_approval_cannot_be_used_and_its_expiry_is_recorded() {
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(data.path(), None);
    config.approvals.ttl = Duration::from_secs(1);
    config.approvals.sweep_interval = Duration::from_millis(50);
    let s = TestServer::with_config(data, config).await;
    fleet(&s).await;
    let id = ask(&s, "refund-bot", refund(5000)).await;
    assert_eq!(grant(&s, &id).await.0, 200);
    let status = async |id: &str| {
        let (_, approval) = s.get(&format!("/v1/approvals/{id}"), &s.admin()).await;
        approval["status"].as_str().unwrap_or_default().to_owned()
    };
    eventually("the granted approval expiring", async || {
        status(&id).await == "expired"
    })
    .await;
    let (_, d) = s
        .post(
            "/v1/decisions",
            &s.token("refund-bot", &[]),
            with_approval(refund(5000), &id),
        )
        .await;
    assert_eq!(codes(&d), ["approval_invalid"], "{d}");
    let (_, approval) = s.get(&format!("/v1/approvals/{id}"), &s.admin()).await;
    assert_eq!(approval["status"], "expired", "{approval}");
    // A pending one that nobody decided expires too, and cannot be granted late.
    let late = ask(&s, "refund-bot", refund(6000)).await;
    eventually("the pending approval expiring", async || {
        status(&late).await == "expired"
    })
    .await;
    assert_eq!(grant(&s, &late).await.0, 409);
}

#[tokio::test]
async fn the_kill_switch_cancels_approvals_and_every_step_is_in_the_verified_ledger() {
    let mut s = TestServer::start().await;
    fleet(&s).await;
    let bot = s.token("refund-bot", &[]);
    let id = ask(&s, "refund-bot", refund(5000)).await;
    grant(&s, &id).await;
    let operator = s.token("oncall", &["operator"]);
    let (_, switch) = s
        .post(
            "/v1/killswitch",
            &operator,
            json!({"scope": {"agent": "refund-bot"}, "reason": "suspicious refunds"}),
        )
        .await;
    let (_, d) = s
        .post("/v1/decisions", &bot, with_approval(refund(5000), &id))
        .await;
    assert_eq!(codes(&d), ["kill_switch"], "{d}");
    s.send(
        reqwest::Method::DELETE,
        &format!("/v1/killswitch/{}", switch["id"].as_str().unwrap()),
        Some(&operator),
        Some(&json!({"reason": "checked"})),
    )
    .await;
    let (_, d) = s
        .post("/v1/decisions", &bot, with_approval(refund(5000), &id))
        .await;
    assert_eq!(
        codes(&d),
        ["approval_invalid"],
        "released, the approval stays cancelled: {d}"
    );
    assert_eq!(
        s.get(&format!("/v1/approvals/{id}"), &bot).await.1["status"],
        "cancelled"
    );

    // A used one and a denied one, for the record.
    let used = ask(&s, "refund-bot", refund(100)).await;
    grant(&s, &used).await;
    assert_eq!(
        s.post("/v1/decisions", &bot, with_approval(refund(100), &used))
            .await
            .1["decision"],
        "allow"
    );
    let denied = ask(&s, "refund-bot", refund(200)).await;
    s.post(
        &format!("/v1/approvals/{denied}/deny"),
        &s.token("alice", &["approver"]),
        json!({}),
    )
    .await;

    let (_, page) = s
        .get("/v1/ledger/entries?start=0&end=200", &s.admin())
        .await;
    let kinds: Vec<String> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entry"]["type"].as_str().unwrap().to_owned())
        .filter(|t| t.starts_with("approval"))
        .collect();
    for kind in [
        "approval_requested",
        "approval_granted",
        "approval_cancelled",
        "approval_used",
        "approval_denied",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} missing from {kinds:?}"
        );
    }
    let granted = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["entry"]["type"] == "approval_granted")
        .unwrap();
    assert_eq!(granted["entry"]["actor"], "alice");
    assert_eq!(granted["entry"]["comment"], "refund is justified");

    s.stop_and_verify_ledger().await;
    // Approvals survive a restart.
    s.restart().await;
    assert_eq!(
        s.get(&format!("/v1/approvals/{used}"), &s.admin()).await.1["status"],
        "used"
    );
}

/// An approval binds the user the agent acts for: opened for alice, it is not usable for mallory
/// nor with no user; opened with no user, it is not usable on behalf of alice. The approver sees
/// the user, and that user cannot approve a request made on their own behalf.
#[tokio::test]
async fn approvals_bind_the_user_the_agent_acts_for() {
    let s = TestServer::start().await;
    s.tool("payments.refund", "high").await;
    s.agent_with("bot-lim", json!({"name": "Bot", "owner": "team-lead", "risk_tier": "limited", "tools": ["payments.refund"]})).await;
    let for_alice = s.mint("bot-lim", Some("alice"), &[]);
    let for_mallory = s.mint("bot-lim", Some("mallory"), &[]);
    let for_nobody = s.token("bot-lim", &[]);
    let decide = |token: &str, id: &str| {
        let token = token.to_owned();
        let request = with_approval(refund(100), id);
        let s = &s;
        async move { s.post("/v1/decisions", &token, request).await.1 }
    };

    let (_, d) = s.post("/v1/decisions", &for_alice, refund(100)).await;
    assert_eq!(codes(&d), ["approval_required"], "{d}");
    let alices = d["access_request"]["approval_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, approval) = s
        .get(
            &format!("/v1/approvals/{alices}"),
            &s.token("bob", &["approver"]),
        )
        .await;
    assert_eq!(status, 200, "{approval}");
    assert_eq!(approval["on_behalf_of"], "alice", "{approval}");

    // Alice cannot approve what is done in her name.
    let (status, body) = s
        .post(
            &format!("/v1/approvals/{alices}/grant"),
            &s.token("alice", &["approver"]),
            json!({}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("on their own behalf"),
        "{body}"
    );
    let (status, body) = s
        .post(
            &format!("/v1/approvals/{alices}/grant"),
            &s.token("bob", &["approver"]),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    for other in [&for_mallory, &for_nobody] {
        let d = decide(other, &alices).await;
        assert_eq!(d["decision"], "deny", "{d}");
        assert_eq!(codes(&d), ["approval_invalid"], "{d}");
        assert!(d.to_string().contains("on behalf of `alice`"), "{d}");
    }
    let d = decide(&for_alice, &alices).await;
    assert_eq!(d["decision"], "allow", "{d}");

    // Opened with no user: not usable on behalf of anyone.
    let (_, d) = s.post("/v1/decisions", &for_nobody, refund(100)).await;
    let nobodys = d["access_request"]["approval_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = s
        .post(
            &format!("/v1/approvals/{nobodys}/grant"),
            &s.token("bob", &["approver"]),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let d = decide(&for_alice, &nobodys).await;
    assert_eq!(codes(&d), ["approval_invalid"], "{d}");
    let d = decide(&for_nobody, &nobodys).await;
    assert_eq!(d["decision"], "allow", "{d}");
}

// Multi-threaded: the CLI child is awaited synchronously while this process serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_and_auditors_work_from_the_cli() {
    use crate::cli::{reins, run, text};
    let s = TestServer::start().await;
    fleet(&s).await;
    let id = ask(&s, "refund-bot", refund(5000)).await;
    let approver = s.token("alice", &["approver"]);
    let cli = |token: &str, args: &[&str]| {
        let out = run(reins(args)
            .env("REINS_URL", &s.base)
            .env("REINS_TOKEN", token));
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    let (ok, out, err) = cli(&approver, &["approvals", "list"]);
    assert!(ok, "{err}");
    assert!(out.contains(&id), "{out}");
    let (ok, out, _) = cli(&approver, &["approvals", "show", &id]);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert!(ok && shown["resource"]["id"] == "payments.refund", "{out}");
    // The approver sees what they approve: the arguments as recorded and the tool, not a digest.
    assert_eq!(shown["request"]["arguments"]["amount"], 5000, "{out}");
    assert_eq!(shown["request"]["tool_risk"], "high", "{out}");
    assert_eq!(
        shown["request"]["tool_description"], "payments.refund tool",
        "{out}"
    );
    let (ok, _, err) = cli(&s.token("bob", &[]), &["approvals", "grant", &id]);
    assert!(!ok && err.contains("403"), "{err}");
    let (ok, out, err) = cli(&approver, &["approvals", "grant", &id, "--comment", "fine"]);
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["status"],
        "granted"
    );
    let (ok, _, err) = cli(&approver, &["approvals", "deny", &id]);
    assert!(!ok && err.contains("409"), "decided once: {err}");

    let auditor = s.token("audrey", &["auditor"]);
    let (ok, out, err) = cli(&auditor, &["agents", "show", "refund-bot"]);
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["owner"],
        "team-lead"
    );
    let (ok, out, _) = cli(&auditor, &["agents", "list"]);
    assert!(ok && out.contains("refund-bot"), "{out}");
}
