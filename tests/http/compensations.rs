//! Rollbacks: a decision request may name the allowed decision it undoes (`compensates`); Reins
//! checks the link before anything is recorded and shows it from both sides. A tool registered as
//! irreversible is held for a person's approval by the default pack.

use serde_json::{Value, json};

use crate::harness::{TestServer, codes, policy_ids};

fn undo(tool: &str, compensates: &str) -> Value {
    json!({"action": "invoke", "resource": {"type": "Tool", "id": tool},
           "context": {"args": {}}, "compensates": compensates})
}

async fn server() -> TestServer {
    let s = TestServer::start().await;
    s.tool("crm.note", "medium").await;
    s.tool("crm.unnote", "medium").await;
    s.agent("bot", "limited", &["crm.note", "crm.unnote"]).await;
    s.agent_with(
        "notes-bot",
        json!({"name": "notes", "owner": "team-a", "risk_tier": "limited",
               "tools": ["crm.note"], "operators": ["fixer"]}),
    )
    .await;
    s.agent("fixer", "limited", &["crm.unnote"]).await;
    s.agent("stranger", "limited", &["crm.unnote"]).await;
    s
}

#[tokio::test]
async fn a_compensation_is_linked_both_ways() {
    let s = server().await;
    let bot = s.token("bot", &[]);
    let (_, done) = s.invoke(&bot, "crm.note", json!({})).await;
    assert_eq!(done["decision"], "allow", "{done}");
    let done_id = done["decision_id"].as_str().unwrap();

    let (status, undone) = s
        .post("/v1/decisions", &bot, undo("crm.unnote", done_id))
        .await;
    assert_eq!(
        (status, &undone["decision"]),
        (200, &json!("allow")),
        "{undone}"
    );
    let undo_id = undone["decision_id"].as_str().unwrap();

    // The compensating decision's ledger entry names the one it undoes ...
    let index = undone["ledger"]["index"].as_u64().unwrap();
    let (_, entry) = s
        .get(&format!("/v1/ledger/entries/{index}"), &s.admin())
        .await;
    assert_eq!(entry["entry"]["compensates"], done_id, "{entry}");
    let (_, record) = s.get(&format!("/v1/decisions/{undo_id}"), &s.admin()).await;
    assert_eq!(record["request"]["compensates"], done_id, "{record}");
    // ... and the undone decision lists it.
    let (_, record) = s.get(&format!("/v1/decisions/{done_id}"), &s.admin()).await;
    assert_eq!(record["compensated_by"], json!([undo_id]), "{record}");
}

#[tokio::test]
async fn a_declared_operator_may_undo_another_agents_action_and_nobody_else() {
    let s = server().await;
    let (_, done) = s
        .invoke(&s.token("notes-bot", &[]), "crm.note", json!({}))
        .await;
    let done_id = done["decision_id"].as_str().unwrap();
    let before = s.stored_decisions().await;

    // An agent the original agent does not name is refused before anything is recorded.
    let (status, body) = s
        .post(
            "/v1/decisions",
            &s.token("stranger", &[]),
            undo("crm.unnote", done_id),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "compensates", "{body}");
    assert!(body.to_string().contains("operators"), "{body}");
    assert_eq!(s.stored_decisions().await, before);

    let (status, body) = s
        .post(
            "/v1/decisions",
            &s.token("fixer", &[]),
            undo("crm.unnote", done_id),
        )
        .await;
    assert_eq!(
        (status, &body["decision"]),
        (200, &json!("allow")),
        "{body}"
    );
    let (_, record) = s.get(&format!("/v1/decisions/{done_id}"), &s.admin()).await;
    assert_eq!(
        record["compensated_by"],
        json!([body["decision_id"]]),
        "{record}"
    );
}

#[tokio::test]
async fn only_an_existing_allowed_decision_can_be_compensated() {
    let s = server().await;
    let bot = s.token("bot", &[]);
    let (_, denied) = s.invoke(&bot, "db.nothing", json!({})).await;
    assert_eq!(denied["decision"], "deny", "{denied}");
    let before = s.stored_decisions().await;
    for (target, expect) in [
        (
            denied["decision_id"].as_str().unwrap().to_owned(),
            "was a deny",
        ),
        (
            "0193a000-0000-7000-8000-000000000000".to_owned(),
            "no decision",
        ),
    ] {
        let (status, body) = s
            .post("/v1/decisions", &bot, undo("crm.unnote", &target))
            .await;
        assert_eq!(status, 422, "{body}");
        assert!(body.to_string().contains(expect), "{expect}: {body}");
    }
    let (status, body) = s
        .post("/v1/decisions", &bot, undo("crm.unnote", "not-a-uuid"))
        .await;
    assert_eq!(
        (status, &body["error"]["field"]),
        (400, &json!("compensates")),
        "{body}"
    );
    assert_eq!(s.stored_decisions().await, before);
}

#[tokio::test]
async fn a_denied_compensation_is_not_listed_as_undoing_anything() {
    let s = server().await;
    let bot = s.token("bot", &[]);
    let (_, done) = s.invoke(&bot, "crm.note", json!({})).await;
    let done_id = done["decision_id"].as_str().unwrap();
    // `crm.note` names itself undoing itself: allowed only for declared tools, and bot declared
    // it; a tool it did not declare is denied, and that deny undoes nothing.
    s.tool("crm.purge", "low").await;
    let (_, refused) = s
        .post("/v1/decisions", &bot, undo("crm.purge", done_id))
        .await;
    assert_eq!(refused["decision"], "deny", "{refused}");
    let (_, record) = s.get(&format!("/v1/decisions/{done_id}"), &s.admin()).await;
    assert!(record.get("compensated_by").is_none(), "{record}");
}

#[tokio::test]
async fn an_irreversible_tool_waits_for_a_person() {
    let s = server().await;
    let (status, body) = s
        .put(
            "/v1/tools/mail.send",
            &s.admin(),
            json!({"description": "Send an email", "risk": "low", "category": "mail",
                   "reversible": false}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["reversible"], false, "{body}");
    s.agent("mailer", "limited", &["mail.send", "crm.note"])
        .await;
    let mailer = s.token("mailer", &[]);
    let (_, d) = s.invoke(&mailer, "mail.send", json!({})).await;
    assert_eq!(codes(&d), ["approval_required"], "{d}");
    assert_eq!(policy_ids(&d), ["approval-irreversible-tools"], "{d}");
    // A reversible tool of the same risk is not held.
    let (_, d) = s.invoke(&mailer, "crm.note", json!({})).await;
    assert_eq!(d["decision"], "allow", "{d}");
    // A tool registered without the field is reversible, and its record does not show it.
    let (_, tool) = s.get("/v1/tools/crm.note", &s.admin()).await;
    assert!(tool.get("reversible").is_none(), "{tool}");
}
