//! Outcomes: what came of an allowed action, reported once by the agent that asked (or an
//! enforcement point for it), recorded in the ledger; allowed actions left without one are listed.

use serde_json::json;

use crate::harness::{TestServer, test_config};

async fn server() -> TestServer {
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(data.path(), None);
    config.outcome_grace = std::time::Duration::ZERO;
    let s = TestServer::with_config(data, config).await;
    s.tool("crm.note", "medium").await;
    s.agent("bot", "limited", &["crm.note"]).await;
    s.agent("other", "limited", &["crm.note"]).await;
    s
}

#[tokio::test]
async fn an_allowed_action_gets_one_outcome_from_its_agent() {
    let s = server().await;
    let bot = s.token("bot", &[]);
    let (_, d) = s.invoke(&bot, "crm.note", json!({"text": "hi"})).await;
    assert_eq!(d["decision"], "allow", "{d}");
    let id = d["decision_id"].as_str().unwrap();
    let path = format!("/v1/decisions/{id}/outcome");
    let report = json!({"status": "succeeded", "summary": "note added",
                        "result_sha256": "ab".repeat(32)});

    // Only the agent that asked (or an enforcement point) reports it.
    let (status, body) = s.post(&path, &s.token("other", &[]), report.clone()).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = s.post(&path, &bot, report.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "succeeded");
    assert_eq!(body["reported_by"], "bot");
    let index = body["ledger"]["index"]
        .as_u64()
        .expect("the outcome is a ledger entry");
    let (status, entry) = s
        .get(&format!("/v1/ledger/entries/{index}"), &s.admin())
        .await;
    assert_eq!(status, 200, "{entry}");
    assert_eq!(entry["entry"]["type"], "decision_outcome", "{entry}");
    assert_eq!(entry["entry"]["decision_id"], id, "{entry}");

    // Once only.
    let (status, body) = s.post(&path, &s.token("gw", &["pep"]), report).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = s.get(&path, &s.token("aud", &["auditor"])).await;
    assert_eq!(
        (status, body["summary"].as_str()),
        (200, Some("note added")),
        "{body}"
    );
}

#[tokio::test]
async fn a_denied_decision_has_no_outcome_and_bad_reports_change_nothing() {
    let s = server().await;
    let bot = s.token("bot", &[]);
    let (_, denied) = s.invoke(&bot, "shell.exec", json!({})).await;
    let id = denied["decision_id"].as_str().unwrap();
    let (status, body) = s
        .post(
            &format!("/v1/decisions/{id}/outcome"),
            &bot,
            json!({"status": "failed"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");

    let (_, allowed) = s.invoke(&bot, "crm.note", json!({})).await;
    let path = format!(
        "/v1/decisions/{}/outcome",
        allowed["decision_id"].as_str().unwrap()
    );
    for (body, field) in [
        (json!({"status": "exploded"}), None),
        (
            json!({"status": "failed", "result_sha256": "xyz"}),
            Some("result_sha256"),
        ),
        (
            json!({"status": "failed", "summary": "x".repeat(3000)}),
            Some("summary"),
        ),
        (json!({"status": "failed", "extra": 1}), None),
    ] {
        let (status, answer) = s.post(&path, &bot, body).await;
        assert!(status == 422 || status == 400, "{status} {answer}");
        if let Some(field) = field {
            assert_eq!(answer["error"]["field"], field, "{answer}");
        }
    }
    let (status, _) = s.get(&path, &s.admin()).await;
    assert_eq!(status, 404, "a refused report recorded nothing");
    let (status, body) = s
        .post(
            "/v1/decisions/01a22c5e-092e-73e4-b19f-4f823690744b/outcome",
            &bot,
            json!({"status": "failed"}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn allowed_actions_without_an_outcome_are_listed() {
    let s = server().await;
    let bot = s.token("bot", &[]);
    let mut allowed = Vec::new();
    for _ in 0..3 {
        let (_, d) = s.invoke(&bot, "crm.note", json!({})).await;
        allowed.push(d["decision_id"].as_str().unwrap().to_owned());
    }
    s.invoke(&bot, "shell.exec", json!({})).await;
    let (status, body) = s
        .post(
            &format!("/v1/decisions/{}/outcome", allowed[1]),
            &bot,
            json!({"status": "not_executed"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let auditor = s.token("aud", &["auditor"]);
    let (status, page) = s.get("/v1/decisions?outcome=missing", &auditor).await;
    assert_eq!(status, 200, "{page}");
    let listed: Vec<&str> = page["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["decision_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [allowed[2].as_str(), allowed[0].as_str()]);
    let (status, body) = s.get("/v1/decisions?outcome=present", &auditor).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("outcome")),
        "{body}"
    );
}
