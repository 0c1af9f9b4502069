//! Art 86 over HTTP: a decision's explanation names every deciding policy with its description
//! and proves the decision's entry; objections are recorded and resolved by reviewers only.

use serde_json::json;

use crate::harness::TestServer;

async fn server() -> TestServer {
    let s = TestServer::start().await;
    s.tool("payments.refund", "high").await;
    s.tool("db.drop", "critical").await;
    s.agent("bot", "high", &["payments.refund", "db.drop"])
        .await;
    s
}

#[tokio::test]
async fn an_explanation_names_every_deciding_policy_with_its_words_and_proves_the_record() {
    let s = server().await;
    let bot = s.mint("bot", Some("customer-7"), &[]);
    // A high-tier agent's critical tool without intent: three forbids decide it.
    let (_, d) = s
        .post(
            "/v1/decisions",
            &bot,
            json!({"action": "invoke", "resource": {"type": "Tool", "id": "db.drop"},
                   "context": {"args": {"table": "orders"}}}),
        )
        .await;
    assert_eq!(d["decision"], "deny", "{d}");
    let id = d["decision_id"].as_str().unwrap();
    s.checkpoint_covering(d["ledger"]["index"].as_u64().unwrap() + 1)
        .await;

    let path = format!("/v1/decisions/{id}/explanation");
    let (status, body) = s.get(&path, &s.token("bot", &[])).await;
    assert_eq!(status, 403, "an agent reads no explanations: {body}");
    let reviewer = s.token("rita", &["reviewer"]);
    let (status, e) = s.get(&path, &reviewer).await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["on_behalf_of"], "customer-7", "{e}");
    assert_eq!(e["arguments"]["table"], "orders", "{e}");
    let deciding: Vec<&str> = d["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["policy_id"].as_str())
        .collect();
    assert!(deciding.len() >= 2, "{d}");
    // The entry does not carry the descriptions: the explanation quotes the recorded pack.
    for reason in d["reasons"].as_array().unwrap() {
        assert!(
            reason["annotations"].get("description").is_none(),
            "{reason}"
        );
    }
    for policy in &deciding {
        let reason = e["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["policy_id"] == *policy)
            .unwrap_or_else(|| panic!("{policy} is not explained: {e}"));
        assert_eq!(reason["policy"]["effect"], "forbid", "{reason}");
        assert!(
            reason["policy"]["description"]
                .as_str()
                .is_some_and(|t| t.len() > 10),
            "{reason}"
        );
        assert!(
            reason["policy"]["text"].as_str().unwrap().contains(policy),
            "{reason}"
        );
    }
    let proof = &e["verification"]["proofs"];
    assert_eq!(proof["entries"][0]["index"], d["ledger"]["index"], "{e}");
    assert_eq!(proof["entries"][0]["verified"], true, "{e}");
    assert!(
        proof["checkpoint"].as_str().unwrap().contains('\u{2014}'),
        "{e}"
    );

    // The Markdown says the same to a person.
    let response = reqwest::Client::new()
        .get(s.url(&path))
        .bearer_auth(&reviewer)
        .header("accept", "text/markdown")
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    assert!(text.contains("# Why this decision was made"), "{text}");
    assert!(text.contains("was refused"), "{text}");
    assert!(text.contains("customer-7"), "{text}");
    for policy in &deciding {
        assert!(text.contains(&format!("`{policy}`")), "{policy}: {text}");
    }
    assert!(
        text.contains("verifies against the signed checkpoint"),
        "{text}"
    );

    let (status, _) = s
        .get(
            "/v1/decisions/0193a000-0000-7000-8000-000000000000/explanation",
            &reviewer,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_contest_is_recorded_and_resolved_once_by_reviewers_only() {
    let s = server().await;
    let (_, d) = s
        .invoke(
            &s.token("bot", &[]),
            "payments.refund",
            json!({"amount": 500}),
        )
        .await;
    let id = d["decision_id"].as_str().unwrap();
    let path = format!("/v1/decisions/{id}/contest");
    let objection = json!({"statement": "My refund was held for no reason.",
                           "raised_by": "customer-7"});

    for roles in [&[][..], &["auditor"], &["approver"], &["admin"]] {
        let (status, body) = s
            .post(&path, &s.token("someone", roles), objection.clone())
            .await;
        assert_eq!(status, 403, "{roles:?}: {body}");
    }
    let rita = s.token("rita", &["reviewer"]);
    let (status, body) = s.post(&path, &rita, json!({"statement": "  "})).await;
    assert_eq!(
        (status, &body["error"]["field"]),
        (422, &json!("statement")),
        "{body}"
    );
    let (status, contest) = s.post(&path, &rita, objection).await;
    assert_eq!(status, 201, "{contest}");
    assert_eq!(contest["status"], "open");
    assert_eq!(contest["contested_by"], "rita");
    let index = contest["ledger"]["index"].as_u64().unwrap();
    let (_, entry) = s
        .get(&format!("/v1/ledger/entries/{index}"), &s.admin())
        .await;
    assert_eq!(entry["entry"]["type"], "decision_contested", "{entry}");
    assert_eq!(entry["entry"]["agent_id"], "bot", "{entry}");

    let resolve = format!(
        "/v1/contests/{}/resolution",
        contest["id"].as_str().unwrap()
    );
    let verdict = json!({"resolution": "overturned", "comment": "The amount was under the limit."});
    let (status, _) = s
        .post(&resolve, &s.token("ops", &["operator"]), verdict.clone())
        .await;
    assert_eq!(status, 403);
    let (status, body) = s
        .post(
            &resolve,
            &rita,
            json!({"resolution": "maybe", "comment": "x"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let victor = s.token("victor", &["reviewer"]);
    let (status, resolved) = s.post(&resolve, &victor, verdict.clone()).await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(
        (&resolved["status"], &resolved["resolved_by"]),
        (&json!("overturned"), &json!("victor")),
        "{resolved}"
    );
    let (status, body) = s.post(&resolve, &rita, verdict).await;
    assert_eq!(status, 409, "resolved once: {body}");

    let (_, listed) = s.get(&path, &rita).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let (_, e) = s
        .get(&format!("/v1/decisions/{id}/explanation"), &rita)
        .await;
    assert_eq!(e["contests"][0]["status"], "overturned", "{e}");
    let (status, _) = s
        .post(
            "/v1/decisions/0193a000-0000-7000-8000-000000000000/contest",
            &rita,
            json!({"statement": "x"}),
        )
        .await;
    assert_eq!(status, 404);
}
