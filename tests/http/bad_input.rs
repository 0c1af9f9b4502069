//! Bad input gets a 4xx with a message naming the problem, and changes nothing.

use serde_json::{Value, json};

use crate::harness::TestServer;

async fn setup() -> (TestServer, String) {
    let s = TestServer::start().await;
    s.tool("search.web", "low").await;
    s.agent("bot", "minimal", &["search.web"]).await;
    let token = s.token("bot", &[]);
    (s, token)
}

async fn raw(
    s: &TestServer,
    token: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let mut request = s
        .client
        .post(s.url("/v1/decisions"))
        .bearer_auth(token)
        .body(body);
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn expect(status: u16, body: &Value, want_status: u16, want_code: &str, want_field: Option<&str>) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    assert_eq!(body["error"]["field"].as_str(), want_field, "{body}");
}

#[tokio::test]
async fn malformed_and_mistyped_bodies_are_400_naming_the_field() {
    let (s, token) = setup().await;
    let cases: [(&str, &str, Option<&str>); 10] = [
        // A struct read from an array of its fields: serde would, no client means it.
        (
            r#"["invoke", {"type": "Tool", "id": "search.web"}]"#,
            "invalid_json",
            None,
        ),
        ("[null]", "invalid_json", None),
        ("", "invalid_json", None),
        (r#"{"action": "#, "invalid_json", None),
        (
            r#"{"action": 7, "resource": {"type": "Tool", "id": "search.web"}}"#,
            "invalid_body",
            Some("action"),
        ),
        (r#"{"action": "invoke"}"#, "invalid_body", Some("resource")),
        (
            r#"{"action": "invoke", "resource": {"id": "search.web"}}"#,
            "invalid_body",
            Some("resource.type"),
        ),
        // A typo is not silently ignored.
        (
            r#"{"action": "invoke", "resource": {"type": "Tool", "id": "search.web"}, "contxt": {}}"#,
            "invalid_body",
            Some("contxt"),
        ),
        (
            r#"{"action": "invoke", "resource": {"type": "Tool", "id": "search.web"}, "context": []}"#,
            "invalid_body",
            Some("context"),
        ),
        (
            r#"{"action": "invoke", "resource": {"type": "Tool", "id": "search.web"}} trailing"#,
            "invalid_json",
            None,
        ),
    ];
    for (body, code, field) in cases {
        let (st, b) = raw(&s, &token, Some("application/json"), body).await;
        expect(st, &b, 400, code, field);
    }
    assert_eq!(s.stored_decisions().await, 0);
}

#[tokio::test]
async fn wrong_content_type_is_415_and_oversized_is_413() {
    let (s, token) = setup().await;
    let body = r#"{"action": "invoke", "resource": {"type": "Tool", "id": "search.web"}}"#;
    let (st, b) = raw(&s, &token, Some("text/plain"), body).await;
    expect(st, &b, 415, "unsupported_media_type", None);
    let (st, b) = raw(&s, &token, None, body).await;
    expect(st, &b, 415, "unsupported_media_type", None);
    // application/json with parameters is fine.
    let (st, b) = raw(&s, &token, Some("application/json; charset=utf-8"), body).await;
    assert_eq!(st, 200, "{b}");

    let huge = format!(
        r#"{{"action": "invoke", "resource": {{"type": "Tool", "id": "search.web"}}, "context": {{"args": {{"blob": "{}"}}}}}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let (st, b) = raw(&s, &token, Some("application/json"), huge).await;
    expect(st, &b, 413, "payload_too_large", None);
    assert_eq!(s.stored_decisions().await, 1);
}

#[tokio::test]
async fn requests_the_schema_cannot_read_are_422_naming_the_field() {
    let (s, token) = setup().await;
    let cases = [
        (
            json!({"action": "fly", "resource": {"type": "Tool", "id": "search.web"}}),
            "action",
            "unknown action",
        ),
        (
            json!({"action": "invoke", "resource": {"type": "Spaceship", "id": "x"}}),
            "resource.type",
            "unknown resource type",
        ),
        (
            json!({"action": "invoke", "resource": {"type": "Agent", "id": "x"}}),
            "resource.type",
            "does not apply",
        ),
        (
            json!({"action": "invoke", "resource": {"type": "not a type!", "id": "x"}}),
            "resource.type",
            "not a Cedar entity type",
        ),
        (
            json!({"action": "invoke", "resource": {"type": "Tool", "id": ""}}),
            "resource.id",
            "empty",
        ),
        (
            json!({"action": "invoke", "resource": {"type": "Tool", "id": "search.web", "attributes": {"risk": "low"}}}),
            "resource.attributes",
            "registry",
        ),
        (
            json!({"action": "invoke", "resource": {"type": "Tool", "id": "search.web"}, "context": {"session_id": "x"}}),
            "context.session_id",
            "set by Reins",
        ),
        (
            // Floats and nulls are taken (tests/http/llm_args.rs); a malformed escape is not.
            json!({"action": "invoke", "resource": {"type": "Tool", "id": "search.web"}, "context": {"args": {"limit": {"__extn": {"fn": "decimal", "arg": "x"}}}}}),
            "context",
            "",
        ),
    ];
    for (body, field, needle) in cases {
        let (st, b) = s.post("/v1/decisions", &token, body.clone()).await;
        expect(st, &b, 422, "invalid_request", Some(field));
        assert!(
            b["error"]["message"].as_str().unwrap().contains(needle),
            "{body} -> {b}"
        );
    }
    assert_eq!(s.stored_decisions().await, 0);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let (s, token) = setup().await;
    let (st, b) = s.get("/v1/nothing-here", &token).await;
    expect(st, &b, 404, "not_found", None);
    let (st, b) = s
        .send(reqwest::Method::DELETE, "/v1/decisions", Some(&token), None)
        .await;
    expect(st, &b, 405, "method_not_allowed", None);
}

#[tokio::test]
async fn health_readiness_and_openapi() {
    let (s, _) = setup().await;
    let health: Value = s
        .client
        .get(s.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let ready = s.client.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["database"], "ok");

    let doc: Value = s
        .client
        .get(s.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/decisions", "post"),
        ("/v1/decisions", "get"),
        ("/v1/decisions/batch", "post"),
        ("/v1/decisions/{id}", "get"),
        ("/v1/agents/{id}", "put"),
        ("/v1/agents/{id}", "get"),
        ("/v1/agents", "get"),
        ("/v1/tools/{id}", "put"),
        ("/v1/tools/{id}", "get"),
        ("/v1/tools", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from OpenAPI"
        );
    }
    let request = &doc["components"]["schemas"]["DecisionRequest"];
    let required: Vec<&str> = request["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        required.contains(&"action") && required.contains(&"resource"),
        "{request}"
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn every_answer_carries_the_request_id() {
    let (s, token) = setup().await;
    let sent = s
        .client
        .get(s.url("/healthz"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(sent.headers()["x-request-id"], "trace-me-42");
    // Generated when absent, on errors too.
    let error = s
        .client
        .post(s.url("/v1/decisions"))
        .bearer_auth(&token)
        .body("{")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(error.status().as_u16(), 400);
    let id = error.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let unauthorized = s
        .client
        .get(s.url("/v1/agents"))
        .header("x-request-id", "r-401")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            unauthorized.status().as_u16(),
            unauthorized.headers()["x-request-id"].to_str().unwrap()
        ),
        (401, "r-401")
    );
}

/// PostgreSQL's text columns refuse U+0000: a body escaping one is a 400 naming it on either
/// backend, before anything is written, and the server stays ready.
#[tokio::test]
async fn nul_characters_are_refused_before_anything_is_written() {
    use serde_json::json;
    let s = crate::harness::TestServer::start().await;
    s.tool("crm.note", "medium").await;
    s.agent("bot", "limited", &["crm.note"]).await;
    let bot = s.token("bot", &[]);
    let (_, d) = s.invoke(&bot, "crm.note", json!({})).await;
    let id = d["decision_id"].as_str().unwrap();
    let before = s.ledger_size();
    let reviewer = s.token("r", &["reviewer"]);
    let operator = s.token("o", &["operator"]);
    let pep = s.token("gw", &["pep"]);
    let outcome = format!("/v1/decisions/{id}/outcome");
    let contest = format!("/v1/decisions/{id}/contest");
    for (path, token, body) in [
        (
            "/v1/decisions",
            &bot,
            json!({"action": "invoke", "resource": {"type": "Tool", "id": "crm.note"},
                                        "context": {"args": {"text": "a\u{0}b"}}}),
        ),
        (
            "/v1/decisions",
            &bot,
            json!({"action": "invoke", "resource": {"type": "Doc", "id": "a\u{0}"}}),
        ),
        (
            outcome.as_str(),
            &bot,
            json!({"status": "succeeded", "summary": "x\u{0}y"}),
        ),
        (contest.as_str(), &reviewer, json!({"statement": "x\u{0}y"})),
        (
            "/v1/killswitch",
            &operator,
            json!({"scope": {"agent": "bot"}, "reason": "x\u{0}y"}),
        ),
        (
            "/access/v1/evaluation",
            &pep,
            json!({"subject": {"type": "Agent", "id": "bot"},
            "action": {"name": "invoke"}, "resource": {"type": "Tool", "id": "x\u{0}"}}),
        ),
    ] {
        let (status, answer) = s.post(path, token, body).await;
        assert_eq!(status, 400, "{path}: {answer}");
        // AuthZEN answers its errors in plain text.
        assert!(
            answer.is_null() || answer.to_string().contains("U+0000"),
            "{path}: {answer}"
        );
    }
    assert_eq!(s.ledger_size(), before, "nothing was recorded");
    let (status, body) = s.get("/readyz", &bot).await;
    assert_eq!(status, 200, "{body}");
}
