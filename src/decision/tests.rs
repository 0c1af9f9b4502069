//! The pipeline on a memory sink: every reason code a decision can carry, reached through
//! `Pipeline::decide` with the default pack, a registry and kill switches as the server builds
//! them, and no sequencer, syncer or signing key.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::ledger::MemorySink;
use crate::timestamp::Timestamp;

struct Fixture {
    pipeline: Pipeline,
    sink: Arc<MemorySink>,
    killswitches: Arc<KillSwitches>,
    _dir: tempfile::TempDir,
}

const SCHEMA: &str = "schemas/reins.cedarschema";

fn default_pack() -> PolicyPack {
    PolicyPack::load(Path::new("policies"), Path::new(SCHEMA)).unwrap()
}

fn pack_of(policies: &[&str]) -> PolicyPack {
    let schema = std::fs::read_to_string(SCHEMA).unwrap();
    let files = policies
        .iter()
        .enumerate()
        .map(|(i, text)| (format!("p{i}.cedar"), (*text).to_owned()))
        .collect();
    PolicyPack::from_sources("schema", &schema, files).unwrap()
}

/// A pipeline with tools `crm.read` (low), `payments.refund` (high) and `db.drop` (critical),
/// and agents `bot` (limited tier, declares read and refund), `hr-bot` (high tier, declares all
/// three) and `sleeper` (suspended).
async fn fixture(pack: PolicyPack) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("reins.db"))
        .await
        .unwrap();
    let sink = Arc::new(MemorySink::new(vec![]));
    let ledger: Arc<dyn Sink> = sink.clone();
    let registry = Arc::new(Registry::load(&store, ledger.clone()).await.unwrap());
    let approvals = Arc::new(
        Approvals::load(
            store.clone(),
            ledger.clone(),
            Duration::from_secs(3600),
            false,
        )
        .await
        .unwrap(),
    );
    let killswitches = Arc::new(
        KillSwitches::load(store.clone(), ledger.clone(), approvals.clone())
            .await
            .unwrap(),
    );
    let now = Timestamp::now();
    for (id, risk) in [
        ("crm.read", "low"),
        ("payments.refund", "high"),
        ("db.drop", "critical"),
    ] {
        let record =
            serde_json::from_value(json!({"description": id, "risk": risk, "category": "c"}))
                .unwrap();
        registry
            .put_tool("admin", id.parse().unwrap(), record, now)
            .await
            .unwrap();
    }
    for (id, tier, tools, status) in [
        (
            "bot",
            "limited",
            vec!["crm.read", "payments.refund"],
            "active",
        ),
        (
            "hr-bot",
            "high",
            vec!["crm.read", "payments.refund", "db.drop"],
            "active",
        ),
        ("sleeper", "limited", vec!["crm.read"], "suspended"),
    ] {
        let record = serde_json::from_value(json!({
            "name": id, "owner": "team", "risk_tier": tier, "tools": tools, "status": status,
        }))
        .unwrap();
        registry
            .put_agent("admin", id.parse().unwrap(), record, now)
            .await
            .unwrap();
    }
    let pipeline = Pipeline::new(
        registry,
        killswitches.clone(),
        approvals,
        pack,
        ledger,
        store,
        100,
    )
    .unwrap();
    Fixture {
        pipeline,
        sink,
        killswitches,
        _dir: dir,
    }
}

fn caller(agent: &str) -> Caller {
    Caller {
        agent: agent.parse().unwrap(),
        on_behalf_of: None,
        roles: Default::default(),
        issuer: "test".into(),
    }
}

fn invoke(tool: &str, args: Value) -> DecisionRequest {
    serde_json::from_value(json!({
        "action": "invoke",
        "resource": {"type": "Tool", "id": tool},
        "context": {"args": args},
    }))
    .unwrap()
}

impl Fixture {
    async fn decide(&self, agent: &str, request: DecisionRequest) -> Decision {
        self.pipeline.decide(&caller(agent), request).await.unwrap()
    }
}

fn code(d: &Decision) -> ReasonCode {
    d.reasons[0].code
}

#[tokio::test]
async fn a_declared_tool_is_allowed_by_the_policy_that_permits_it() {
    let f = fixture(default_pack()).await;
    let before = f.sink.entries().len();
    let d = f.decide("bot", invoke("crm.read", json!({}))).await;
    assert_eq!(d.decision, Outcome::Allow);
    assert_eq!(code(&d), ReasonCode::Policy);
    assert_eq!(d.reasons[0].policy_id.as_deref(), Some("declared-tools"));
    // The answer names where it was recorded, and it was.
    let entries = f.sink.entries();
    assert_eq!(entries.len(), before + 1);
    assert_eq!(entries[before].0, "decision");
    assert_eq!(d.ledger.as_ref().map(|l| l.index), Some(before as u64));
}

#[tokio::test]
async fn a_forbid_names_its_policy() {
    let f = fixture(default_pack()).await;
    let d = f
        .decide("bot", invoke("crm.read", json!({"amount": 100001})))
        .await;
    assert_eq!((d.decision, code(&d)), (Outcome::Deny, ReasonCode::Policy));
    assert_eq!(d.reasons[0].policy_id.as_deref(), Some("amount-cap"));
    let mut request = invoke("db.drop", json!({}));
    request.intent = Some("drop the table".into());
    let d = f.decide("hr-bot", request).await;
    assert_eq!(
        d.reasons[0].policy_id.as_deref(),
        Some("tier-high-no-critical")
    );
}

#[tokio::test]
async fn an_undeclared_tool_matches_no_permit() {
    let f = fixture(default_pack()).await;
    // With a stated intent, so that the critical tool's intent rule is not what denies it.
    let mut request = invoke("db.drop", json!({}));
    request.intent = Some("drop the table".into());
    let d = f.decide("bot", request).await;
    assert_eq!(
        (d.decision, code(&d)),
        (Outcome::Deny, ReasonCode::NoMatchingPermit)
    );
}

#[tokio::test]
async fn unknown_agents_and_tools_and_suspended_agents_are_denied_before_cedar() {
    let f = fixture(default_pack()).await;
    for (agent, tool, expected) in [
        ("stranger", "crm.read", ReasonCode::UnknownAgent),
        ("bot", "crm.write", ReasonCode::UnknownTool),
        ("sleeper", "crm.read", ReasonCode::AgentSuspended),
    ] {
        let d = f.decide(agent, invoke(tool, json!({}))).await;
        assert_eq!(d.decision, Outcome::Deny);
        assert_eq!(d.reasons.len(), 1, "{d:?}");
        assert_eq!(code(&d), expected);
    }
}

#[tokio::test]
async fn a_kill_switch_denies_first_and_names_itself() {
    let f = fixture(default_pack()).await;
    let switch = f
        .killswitches
        .engage(
            "ops",
            serde_json::from_value(json!({"scope": {"agent": "bot"}, "reason": "runaway"}))
                .unwrap(),
            Timestamp::now(),
        )
        .await
        .unwrap();
    let d = f.decide("bot", invoke("crm.read", json!({}))).await;
    assert_eq!(
        (d.decision, code(&d)),
        (Outcome::Deny, ReasonCode::KillSwitch)
    );
    assert_eq!(d.reasons[0].killswitch_id, Some(switch.id));
    assert_eq!(d.reasons[0].message.as_deref(), Some("runaway"));
    // Out of scope: another agent is unaffected.
    let d = f.decide("hr-bot", invoke("crm.read", json!({}))).await;
    assert_eq!(d.decision, Outcome::Allow);
}

#[tokio::test]
async fn approvals_are_required_then_checked() {
    let f = fixture(default_pack()).await;
    let d = f
        .decide("bot", invoke("payments.refund", json!({"amount": 500})))
        .await;
    assert_eq!(
        (d.decision, code(&d)),
        (Outcome::Deny, ReasonCode::ApprovalRequired)
    );
    let access = d.access_request.expect("an approval to ask for");
    assert!(
        d.reasons[0]
            .annotations
            .as_ref()
            .is_some_and(|a| a.get("approval").map(String::as_str) == Some("tool-owner"))
    );
    // Not yet granted: the id is known but unusable.
    let mut again = invoke("payments.refund", json!({"amount": 500}));
    again.approval_id = Some(access.approval_id);
    let d = f.decide("bot", again).await;
    assert_eq!(code(&d), ReasonCode::ApprovalInvalid);
    assert!(
        d.reasons[0]
            .message
            .as_deref()
            .unwrap_or("")
            .contains("pending"),
        "{d:?}"
    );
}

#[tokio::test]
async fn a_policy_that_errors_is_a_deny_not_a_skipped_forbid() {
    // `amount-cap` compares `context.args.amount` with a number; a string there makes it error,
    // and Cedar alone would skip the forbid and let `declared-tools` allow.
    let f = fixture(default_pack()).await;
    let d = f
        .decide("bot", invoke("crm.read", json!({"amount": "a million"})))
        .await;
    assert_eq!(
        (d.decision, code(&d)),
        (Outcome::Deny, ReasonCode::PolicyError)
    );
    assert_eq!(d.errors[0].policy_id, "amount-cap");
}

#[tokio::test]
async fn an_empty_pack_denies_everything() {
    let f = fixture(pack_of(&[])).await;
    let d = f.decide("bot", invoke("crm.read", json!({}))).await;
    assert_eq!(
        (d.decision, code(&d)),
        (Outcome::Deny, ReasonCode::NoPolicy)
    );
}

#[tokio::test]
async fn an_unrecorded_decision_is_a_deny() {
    let f = fixture(default_pack()).await;
    f.sink.set_failing(true);
    let d = f.decide("bot", invoke("crm.read", json!({}))).await;
    assert_eq!(
        (d.decision, code(&d)),
        (Outcome::Deny, ReasonCode::LedgerUnavailable)
    );
    assert!(d.ledger.is_none());
    f.sink.set_failing(false);
    let d = f.decide("bot", invoke("crm.read", json!({}))).await;
    assert_eq!(d.decision, Outcome::Allow);
}

#[tokio::test]
async fn requests_the_schema_cannot_read_are_errors_and_record_nothing() {
    let f = fixture(default_pack()).await;
    let before = f.sink.entries().len();
    let mut bad_action = invoke("crm.read", json!({}));
    bad_action.action = "launch".into();
    let e = f
        .pipeline
        .decide(&caller("bot"), bad_action)
        .await
        .unwrap_err();
    assert_eq!(e.field, "action");
    let mut forged = invoke("crm.read", json!({}));
    forged
        .context
        .get_or_insert_default()
        .insert("user".into(), json!("alice"));
    let e = f.pipeline.decide(&caller("bot"), forged).await.unwrap_err();
    assert_eq!(e.field, "context.user");
    assert_eq!(f.sink.entries().len(), before);
}
