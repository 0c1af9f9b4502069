//! The AuthZEN Authorization API: the OpenID interop suites against `examples/authzen-todo`, batch
//! semantics, search paging, discovery, request ids, PEP authentication and the 400 cases.

use serde_json::{Value, json};

use crate::harness::{TestServer, repo, test_config};

const RICK: &str = "CiRmZDA2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs";
const MORTY: &str = "CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs";
const BETH: &str = "CiRmZDM2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs";

async fn todo_server() -> TestServer {
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(data.path(), None);
    config
        .stores
        .insert("todo".into(), repo().join("examples/authzen-todo"));
    TestServer::with_config(data, config).await
}

fn pep(s: &TestServer) -> String {
    s.token("gateway-1", &["pep"])
}

fn suite(name: &str) -> Value {
    // A copy of ../shared/conformance/authzen (MIT, see its LICENSE), so the suites always run.
    let path = repo().join("tests/conformance/authzen").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn the_authzen_todo_and_gateway_interop_suites_pass() {
    let s = todo_server().await;
    let token = pep(&s);
    let mut checked = 0;
    for file in ["todo-decisions.json", "gateway-decisions.json"] {
        let cases = suite(file);
        for case in cases["evaluation"].as_array().unwrap() {
            let (status, answer) = s
                .post(
                    "/stores/todo/access/v1/evaluation",
                    &token,
                    case["request"].clone(),
                )
                .await;
            assert_eq!(status, 200, "{file}: {case} -> {answer}");
            assert_eq!(
                answer["decision"].as_bool().unwrap_or(false),
                case["expected"].as_bool().unwrap(),
                "{file}: {} -> {answer}",
                case["request"]
            );
            checked += 1;
        }
        for case in cases["evaluations"].as_array().into_iter().flatten() {
            let (status, answer) = s
                .post(
                    "/stores/todo/access/v1/evaluations",
                    &token,
                    case["request"].clone(),
                )
                .await;
            assert_eq!(status, 200, "{answer}");
            // The upstream harness compares batch answers by exact equality.
            assert_eq!(
                answer["evaluations"], case["expected"],
                "{file}: {}",
                case["request"]
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 40 + 3 + 25);
}

#[tokio::test]
async fn interop_decisions_are_recorded_in_the_ledger_with_their_store() {
    let s = todo_server().await;
    let size = s.ledger_size();
    let (_, answer) = s
        .post(
            "/stores/todo/access/v1/evaluation",
            &pep(&s),
            json!({"subject": {"type": "user", "id": MORTY}, "action": {"name": "can_update_todo"},
                   "resource": {"type": "todo", "id": "t1", "properties": {"ownerID": "morty@the-citadel.com"}}}),
        )
        .await;
    assert_eq!(answer["decision"], true, "{answer}");
    assert_eq!(answer["context"]["ledger_index"], size, "{answer}");
    assert_eq!(
        answer["context"]["reasons"][0]["policy_id"],
        "todo-editor-owns"
    );
    let (_, entry) = s
        .get(&format!("/v1/ledger/entries/{size}"), &s.admin())
        .await;
    let entry = &entry["entry"];
    assert_eq!(
        (
            entry["store"].as_str(),
            entry["subject_type"].as_str(),
            entry["agent_id"].as_str()
        ),
        (Some("todo"), Some("user"), Some(MORTY)),
        "{entry}"
    );
    assert_eq!(
        entry["resource"]["attributes"]["ownerID"],
        "morty@the-citadel.com"
    );
    let id = answer["context"]["decision_id"].as_str().unwrap();
    let (_, stored) = s.get(&format!("/v1/decisions/{id}"), &s.admin()).await;
    assert_eq!(stored["store"], "todo", "{stored}");
    // The store's pack was recorded at start, so the decision's digest leads to an entry.
    let (_, page) = s.get("/v1/ledger/entries?start=0&end=10", &s.admin()).await;
    assert!(
        page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["entry"]["store"] == "todo"
                && e["entry"]["type"] == "policy_loaded"
                && e["entry"]["policy_digest"] == stored["policy_digest"]),
        "{page}"
    );
}

#[tokio::test]
async fn the_default_store_speaks_authzen_through_the_same_pipeline() {
    let s = TestServer::start().await;
    s.tool("search.web", "low").await;
    s.tool("payments.refund", "high").await;
    s.agent("bot", "limited", &["search.web", "payments.refund"])
        .await;
    let ask = |tool: &str| {
        json!({"subject": {"type": "Agent", "id": "bot"}, "action": {"name": "invoke"},
               "resource": {"type": "Tool", "id": tool}, "context": {"args": {}}})
    };
    let (_, allowed) = s
        .post("/access/v1/evaluation", &pep(&s), ask("search.web"))
        .await;
    assert_eq!(allowed["decision"], true, "{allowed}");
    assert!(allowed["context"]["ledger_index"].is_u64());

    // Approval profile: a deny that a human may lift says how to ask.
    let (_, approval) = s
        .post("/access/v1/evaluation", &pep(&s), ask("payments.refund"))
        .await;
    assert_eq!(approval["decision"], false);
    assert_eq!(
        approval["context"]["reason"], "approval_required",
        "{approval}"
    );
    assert!(
        approval["context"]["access_request"]["endpoint"]
            .as_str()
            .unwrap()
            .starts_with("/v1/approvals/")
    );

    // The kill switch wins here too.
    let (status, _) = s
        .post(
            "/v1/killswitch",
            &s.token("oncall", &["operator"]),
            json!({"scope": {"agent": "bot"}, "reason": "stop"}),
        )
        .await;
    assert_eq!(status, 201);
    let (_, stopped) = s
        .post("/access/v1/evaluation", &pep(&s), ask("search.web"))
        .await;
    assert_eq!(stopped["decision"], false);
    assert_eq!(
        stopped["context"]["reasons"][0]["code"], "kill_switch",
        "{stopped}"
    );

    // A subject the default store cannot evaluate is a false decision with the reason, not an error.
    let (status, other) = s
        .post("/access/v1/evaluation", &pep(&s), json!({"subject": {"type": "user", "id": "x"}, "action": {"name": "invoke"}, "resource": {"type": "Tool", "id": "search.web"}}))
        .await;
    assert_eq!((status, other["decision"].as_bool()), (200, Some(false)));
    assert_eq!(
        other["context"]["error"]["field"], "subject.type",
        "{other}"
    );
}

async fn batch(s: &TestServer, body: Value) -> Value {
    let (status, answer) = s
        .post("/stores/todo/access/v1/evaluations", &pep(s), body)
        .await;
    assert_eq!(status, 200, "{answer}");
    answer
}

fn decisions(answer: &Value) -> Vec<bool> {
    answer["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["decision"].as_bool().unwrap())
        .collect()
}

#[tokio::test]
async fn evaluations_take_defaults_replace_per_item_and_honour_the_three_semantics() {
    let s = todo_server().await;
    let owned_by = |owner: &str| json!({"type": "todo", "id": format!("t-{owner}"), "properties": {"ownerID": owner}});
    // Morty (editor): may update his own todo, not Rick's.
    let items = json!([
        {"resource": owned_by("morty@the-citadel.com")},
        {"resource": owned_by("rick@the-citadel.com")},
        {"resource": owned_by("morty@the-citadel.com")},
        // Replaces the subject as a whole: Rick is an evil genius.
        {"subject": {"type": "user", "id": RICK}, "resource": owned_by("beth@the-smiths.com")},
        // Replaces the action: reading is open to everyone.
        {"action": {"name": "can_read_todos"}, "resource": owned_by("x@y.z")}
    ]);
    let request = |semantic: Option<&str>| {
        let mut body = json!({"subject": {"type": "user", "id": MORTY}, "action": {"name": "can_update_todo"}, "evaluations": items});
        if let Some(semantic) = semantic {
            body["options"] = json!({"evaluations_semantic": semantic});
        }
        body
    };
    let size = s.ledger_size();
    assert_eq!(
        decisions(&batch(&s, request(None)).await),
        [true, false, true, true, true]
    );
    assert_eq!(s.ledger_size(), size + 5, "every evaluation is recorded");
    assert_eq!(
        decisions(&batch(&s, request(Some("execute_all"))).await),
        [true, false, true, true, true]
    );
    assert_eq!(
        decisions(&batch(&s, request(Some("deny_on_first_deny"))).await),
        [true, false]
    );
    assert_eq!(
        decisions(&batch(&s, request(Some("permit_on_first_permit"))).await),
        [true]
    );

    // No items: the request is a single evaluation, answered in that shape.
    let single = batch(&s, json!({"subject": {"type": "user", "id": BETH}, "action": {"name": "can_read_todos"}, "resource": {"type": "todo", "id": "t"}})).await;
    assert_eq!(single["decision"], true, "{single}");
    assert!(single.get("evaluations").is_none());

    // An item that cannot be evaluated is false with the reason; the others still count.
    let mixed = batch(&s, json!({"action": {"name": "can_read_todos"}, "resource": {"type": "todo", "id": "t"},
        "evaluations": [{"subject": {"type": "user", "id": BETH}}, {}, {"subject": {"type": "user", "id": BETH}, "action": {"name": "can_fly"}}]})).await;
    assert_eq!(decisions(&mixed), [true, false, false], "{mixed}");
    assert_eq!(
        mixed["evaluations"][1]["context"]["error"]["field"],
        "subject"
    );
    assert_eq!(
        mixed["evaluations"][2]["context"]["error"]["field"],
        "action"
    );
    // Unknown semantic: a 400.
    let (status, _) = s
        .post(
            "/stores/todo/access/v1/evaluations",
            &pep(&s),
            json!({"evaluations": [], "options": {"evaluations_semantic": "first_whatever"}}),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn search_pages_through_subjects_resources_and_actions() {
    let s = todo_server().await;
    let token = pep(&s);
    let body = |page: Value| {
        json!({"subject": {"type": "user"}, "action": {"name": "can_create_todo"},
                                    "resource": {"type": "todo", "id": "t"}, "page": page})
    };
    let (status, first) = s
        .post(
            "/stores/todo/access/v1/search/subject",
            &token,
            body(json!({"limit": 2})),
        )
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        first["page"]["total"], 3,
        "admin and the two editors: {first}"
    );
    assert_eq!(first["page"]["count"], 2);
    let token2 = first["page"]["next_token"].as_str().unwrap().to_owned();
    assert!(!token2.is_empty());
    let (_, second) = s
        .post(
            "/stores/todo/access/v1/search/subject",
            &token,
            body(json!({"limit": 2, "token": token2})),
        )
        .await;
    assert_eq!(second["page"]["count"], 1);
    assert_eq!(second["page"]["next_token"], "");
    let mut ids: Vec<Value> = first["results"].as_array().unwrap().clone();
    ids.extend(second["results"].as_array().unwrap().clone());
    assert!(ids.contains(&json!({"type": "user", "id": RICK})));
    assert!(ids.contains(&json!({"type": "user", "id": MORTY})));
    assert!(!ids.contains(&json!({"type": "user", "id": BETH})));

    let (_, actions) = s
        .post("/stores/todo/access/v1/search/action", &token, json!({"subject": {"type": "user", "id": BETH}, "resource": {"type": "todo", "id": "t"}}))
        .await;
    assert_eq!(
        actions["results"],
        json!([{"name": "can_read_todos"}]),
        "{actions}"
    );

    let (_, routes) = s
        .post("/stores/todo/access/v1/search/resource", &token, json!({"subject": {"type": "identity", "id": BETH}, "action": {"name": "GET"}, "resource": {"type": "route"}}))
        .await;
    assert_eq!(
        routes["results"],
        json!([{"type": "route", "id": "/todos"}, {"type": "route", "id": "/users/{userId}"}]),
        "{routes}"
    );

    let (_, unknown) = s
        .post("/stores/todo/access/v1/search/subject", &token, json!({"subject": {"type": "robot"}, "action": {"name": "can_read_todos"}, "resource": {"type": "todo", "id": "t"}}))
        .await;
    assert_eq!(unknown["results"], json!([]));
    let (status, _) = s
        .post(
            "/stores/todo/access/v1/search/subject",
            &token,
            body(json!({"token": "99"})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = s
        .post(
            "/stores/todo/access/v1/search/subject",
            &token,
            body(json!({"limit": 0})),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn discovery_names_the_endpoints_of_each_store() {
    let s = todo_server().await;
    let (status, config) = s
        .send(
            reqwest::Method::GET,
            "/.well-known/authzen-configuration",
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(config["policy_decision_point"], s.base);
    assert_eq!(
        config["access_evaluation_endpoint"],
        format!("{}/access/v1/evaluation", s.base)
    );
    let (_, scoped) = s
        .send(
            reqwest::Method::GET,
            "/stores/todo/.well-known/authzen-configuration",
            None,
            None,
        )
        .await;
    assert_eq!(
        scoped["policy_decision_point"],
        format!("{}/stores/todo", s.base)
    );
    assert_eq!(
        scoped["search_action_endpoint"],
        format!("{}/stores/todo/access/v1/search/action", s.base)
    );
    let (status, _) = s
        .send(
            reqwest::Method::GET,
            "/stores/nope/.well-known/authzen-configuration",
            None,
            None,
        )
        .await;
    assert_eq!(status, 404);
    // Only decision endpoints exist per store.
    let (status, _) = s.get("/stores/todo/v1/agents", &s.admin()).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn errors_are_plain_text_with_the_spec_status_codes_and_request_ids_are_echoed() {
    let s = todo_server().await;
    let url = s.url("/stores/todo/access/v1/evaluation");
    let good = json!({"subject": {"type": "user", "id": BETH}, "action": {"name": "can_read_todos"}, "resource": {"type": "todo", "id": "t"}, "unknown_field": 1});
    let response = s
        .client
        .post(&url)
        .bearer_auth(pep(&s))
        .header("x-request-id", "req-42")
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "unknown fields are ignored");
    assert_eq!(response.headers()["x-request-id"], "req-42");

    let cases: Vec<(Option<String>, &str, String, u16)> = vec![
        (Some(pep(&s)), "application/json", "{not json".into(), 400),
        (Some(pep(&s)), "text/plain", good.to_string(), 400),
        (Some(pep(&s)), "application/json", json!({"action": {"name": "can_read_todos"}, "resource": {"type": "todo", "id": "t"}}).to_string(), 400),
        (Some(pep(&s)), "application/json", json!({"subject": {"type": "user", "id": 7}, "action": {"name": "a"}, "resource": {"type": "todo", "id": "t"}}).to_string(), 400),
        (None, "application/json", good.to_string(), 401),
        (Some(s.token("bot", &["auditor"])), "application/json", good.to_string(), 403),
    ];
    for (token, content_type, body, expected) in cases {
        let mut request = s
            .client
            .post(&url)
            .header("content-type", content_type)
            .body(body.clone());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), expected, "{body}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        assert!(!response.text().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn pep_authentication_can_be_turned_off_for_local_testing() {
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(data.path(), None);
    config
        .stores
        .insert("todo".into(), repo().join("examples/authzen-todo"));
    config.authzen.pep_auth = reins::config::PepAuth::None;
    let s = TestServer::with_config(data, config).await;
    let (status, answer) = s
        .send(reqwest::Method::POST, "/stores/todo/access/v1/evaluation", None,
              Some(&json!({"subject": {"type": "user", "id": RICK}, "action": {"name": "can_delete_todo"}, "resource": {"type": "todo", "id": "t"}})))
        .await;
    assert_eq!(
        (status, answer["decision"].as_bool()),
        (200, Some(true)),
        "{answer}"
    );
}

#[tokio::test]
async fn native_decisions_work_under_a_store_prefix() {
    let s = todo_server().await;
    let (status, d) = s
        .post("/stores/todo/v1/decisions", &s.token(MORTY, &[]),
              json!({"action": "can_delete_todo", "resource": {"type": "todo", "id": "t", "attributes": {"ownerID": "morty@the-citadel.com"}}}))
        .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(
        (d["decision"].as_str(), d["store"].as_str()),
        (Some("allow"), Some("todo")),
        "{d}"
    );
    let (_, batch) = s
        .post("/stores/todo/v1/decisions/batch", &s.token(BETH, &[]),
              json!({"requests": [{"action": "can_read_todos", "resource": {"type": "todo", "id": "t"}},
                                  {"action": "can_create_todo", "resource": {"type": "todo", "id": "t"}}]}))
        .await;
    let outcomes: Vec<&str> = batch["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["decision"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["allow", "deny"], "{batch}");
    // One batch path: the same over-limit batch is the same 422 in every store (it was a 400
    // under a store prefix), naming the field.
    let request = json!({"action": "can_read_todos", "resource": {"type": "todo", "id": "t"}});
    let over = json!({"requests": vec![request; 101]});
    for path in ["/stores/todo/v1/decisions/batch", "/v1/decisions/batch"] {
        let (status, body) = s.post(path, &s.token(BETH, &[]), over.clone()).await;
        assert_eq!(status, 422, "{path}: {body}");
        assert_eq!(body["error"]["field"], "requests", "{path}: {body}");
    }
    // The default store under its own name is the same as no prefix.
    let (status, _) = s
        .post(
            "/stores/default/v1/decisions",
            &s.token("nobody", &[]),
            json!({"action": "invoke", "resource": {"type": "Tool", "id": "x"}}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = s
        .post(
            "/stores/nope/v1/decisions",
            &s.token("nobody", &[]),
            json!({"action": "invoke", "resource": {"type": "Tool", "id": "x"}}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
}
