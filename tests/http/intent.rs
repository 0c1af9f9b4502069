//! An agent's stated intent and trace: recorded with the decision (masked when configured),
//! visible to policies as `context.intent_present`, bounded in size.

use serde_json::json;

use crate::harness::{TestServer, test_config};

async fn server(mask_intent: bool) -> TestServer {
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(data.path(), None);
    config.ledger.mask_intent = mask_intent;
    config.max_intent_bytes = 64;
    let s = TestServer::with_config(data, config).await;
    s.tool("crm.note", "medium").await;
    s.tool("db.drop", "critical").await;
    s.agent("bot", "limited", &["crm.note", "db.drop"]).await;
    s
}

fn asking(tool: &str, intent: Option<&str>) -> serde_json::Value {
    let mut body = json!({"action": "invoke", "resource": {"type": "Tool", "id": tool},
                          "trace": {"trace_id": "run-7", "user_request": "tidy up staging"}});
    if let Some(intent) = intent {
        body["intent"] = json!(intent);
    }
    body
}

#[tokio::test]
async fn the_intent_and_trace_are_recorded_and_a_policy_can_require_an_intent() {
    let s = server(false).await;
    let bot = s.token("bot", &[]);
    let (_, first) = s
        .post(
            "/v1/decisions",
            &bot,
            asking("crm.note", Some("log the call")),
        )
        .await;
    assert_eq!(first["decision"], "allow", "{first}");
    // The default pack's example: a critical tool needs a stated intent.
    let (_, d) = s.post("/v1/decisions", &bot, asking("db.drop", None)).await;
    assert_eq!(
        d["reasons"][0]["policy_id"], "intent-for-critical-tools",
        "{d}"
    );
    let mut with = asking("db.drop", Some("drop the staging table the ticket names"));
    with["trace"]["parent_decision_id"] = first["decision_id"].clone();
    let (_, d) = s.post("/v1/decisions", &bot, with).await;
    assert_eq!(d["decision"], "allow", "{d}");

    let id = d["decision_id"].as_str().unwrap();
    let (_, stored) = s.get(&format!("/v1/decisions/{id}"), &s.admin()).await;
    assert_eq!(
        stored["request"]["intent"],
        "drop the staging table the ticket names"
    );
    assert_eq!(
        stored["request"]["trace"]["parent_decision_id"],
        first["decision_id"]
    );
    assert_eq!(
        stored["request"]["trace"]["user_request"],
        "tidy up staging"
    );
    let index = d["ledger"]["index"].as_u64().unwrap();
    let (_, entry) = s
        .get(&format!("/v1/ledger/entries/{index}"), &s.admin())
        .await;
    assert_eq!(
        entry["entry"]["intent"], "drop the staging table the ticket names",
        "{entry}"
    );
    assert_eq!(entry["entry"]["trace"]["trace_id"], "run-7", "{entry}");
}

#[tokio::test]
async fn a_masked_intent_is_recorded_only_as_a_commitment() {
    let s = server(true).await;
    let bot = s.token("bot", &[]);
    let (_, d) = s
        .post(
            "/v1/decisions",
            &bot,
            asking("crm.note", Some("customer alice@example.com")),
        )
        .await;
    let index = d["ledger"]["index"].as_u64().unwrap();
    let (_, entry) = s
        .get(&format!("/v1/ledger/entries/{index}"), &s.admin())
        .await;
    let text = entry.to_string();
    assert!(
        !text.contains("alice@example.com") && !text.contains("tidy up staging"),
        "{text}"
    );
    assert!(
        entry["entry"]["intent"]["masked"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(
        entry["entry"]["trace"]["user_request"]["masked"].is_string(),
        "{entry}"
    );
    assert_eq!(
        entry["entry"]["trace"]["trace_id"], "run-7",
        "only the texts are masked"
    );
    let (_, stored) = s
        .get(
            &format!("/v1/decisions/{}", d["decision_id"].as_str().unwrap()),
            &s.admin(),
        )
        .await;
    assert!(
        stored["request"]["intent"]
            .as_str()
            .unwrap()
            .starts_with("masked sha256:")
    );
}

#[tokio::test]
async fn an_oversized_intent_or_a_forged_intent_flag_is_refused_and_recorded_nowhere() {
    let s = server(false).await;
    let bot = s.token("bot", &[]);
    let before = s.stored_decisions().await;
    let long = "x".repeat(65);
    for (body, field) in [
        (asking("crm.note", Some(&long)), "intent"),
        (
            json!({"action": "invoke", "resource": {"type": "Tool", "id": "db.drop"},
                   "context": {"intent_present": true}}),
            "context.intent_present",
        ),
        (
            json!({"action": "invoke", "resource": {"type": "Tool", "id": "crm.note"},
                   "trace": {"user_request": long}}),
            "trace.user_request",
        ),
    ] {
        let (status, answer) = s.post("/v1/decisions", &bot, body).await;
        assert_eq!(
            (status, answer["error"]["field"].as_str()),
            (422, Some(field)),
            "{answer}"
        );
    }
    let (status, answer) = s
        .post(
            "/v1/decisions",
            &bot,
            json!({"action": "invoke", "resource": {"type": "Tool", "id": "crm.note"},
                     "trace": {"bogus": 1}}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(s.stored_decisions().await, before);
}
