//! Compliance officers' documents: model cards, the EU AI Act checklist, attestations and audit
//! packs, all built from what the ledger recorded.

use std::io::{Read, Write};
use std::path::Path;

use serde_json::{Value, json};

use crate::cli::{reins, run, text};
use crate::harness::{TestServer, codes};

const REFUND_BOT: &str = "refund-bot";

async fn fleet(s: &TestServer) {
    s.tool("search.web", "low").await;
    s.tool("payments.refund", "high").await;
    s.tool("db.drop", "critical").await;
    s.agent_with(
        REFUND_BOT,
        json!({
            "name": "Refund bot", "owner": "payments-team", "risk_tier": "high",
            "provider": "Acme AI", "model": "acme-7b", "model_version": "2026-10",
            "intended_purpose": "Refund card payments under 1,000 EUR after a complaint",
            "tools": ["search.web", "payments.refund", "db.drop"],
            "documentation": {
                "base_model": "acme-7b-base",
                "out_of_scope_uses": ["credit decisions"],
                "evaluation_results": [{"name": "refund-eval-v3", "metric": "accuracy", "value": 0.93, "date": "2026-10-01"}],
                "ai_act_role": "provider_and_deployer"
            },
            "ai_act": {"annex": "annex_iii:5(b)", "deployer_kind": "private"}
        }),
    )
    .await;
}

fn officer(s: &TestServer) -> String {
    s.token("cora", &["compliance_officer"])
}

fn auditor(s: &TestServer) -> String {
    s.token("audrey", &["auditor"])
}

async fn checklist(s: &TestServer) -> Value {
    let (status, list) = s
        .get(&format!("/v1/agents/{REFUND_BOT}/checklist"), &auditor(s))
        .await;
    assert_eq!(status, 200, "{list}");
    list
}

fn status_of(list: &Value, item: &str) -> String {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == item)
        .unwrap_or_else(|| panic!("no item {item} in {list}"))["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn item<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .unwrap()
}

/// Three searches, a refund that waits for a human who grants it, then a kill-switch drill.
async fn activity(s: &TestServer) {
    let bot = s.token(REFUND_BOT, &[]);
    for _ in 0..3 {
        let (_, d) = s.invoke(&bot, "search.web", json!({})).await;
        assert_eq!(d["decision"], "allow", "{d}");
    }
    let refund = json!({"action": "invoke", "resource": {"type": "Tool", "id": "payments.refund"}, "context": {"args": {"amount": 120}}});
    let (_, asked) = s.post("/v1/decisions", &bot, refund.clone()).await;
    assert_eq!(codes(&asked), ["approval_required"], "{asked}");
    let id = asked["access_request"]["approval_id"].as_str().unwrap();
    let (status, granted) = s
        .post(
            &format!("/v1/approvals/{id}/grant"),
            &s.token("alice", &["approver"]),
            json!({"comment": "customer complaint 881"}),
        )
        .await;
    assert_eq!(status, 200, "{granted}");
    let mut with = refund;
    with["approval_id"] = json!(id);
    let (_, allowed) = s.post("/v1/decisions", &bot, with).await;
    assert_eq!(allowed["decision"], "allow", "{allowed}");

    let operator = s.token("oncall", &["operator"]);
    let (status, switch) = s
        .post(
            "/v1/killswitch",
            &operator,
            json!({"scope": {"agent": REFUND_BOT}, "reason": "quarterly drill", "drill": true}),
        )
        .await;
    assert_eq!(status, 201, "{switch}");
    let (_, stopped) = s.invoke(&bot, "search.web", json!({})).await;
    assert_eq!(codes(&stopped), ["kill_switch"]);
    let (status, _) = s
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/killswitch/{}", switch["id"].as_str().unwrap()),
            Some(&operator),
            Some(&json!({"reason": "drill over"})),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn checklist_items_flip_as_evidence_and_attestations_arrive() {
    let s = TestServer::start().await;
    fleet(&s).await;

    let before = checklist(&s).await;
    assert_eq!(before["risk_tier"], "high");
    assert!(
        before["catalogue_source"]
            .as_str()
            .unwrap()
            .contains("2024/1689")
    );
    // Today (2026) the high-risk rules are not yet applicable to an Annex III system: each says
    // from when, and what its evidence shows already.
    let art12 = item(&before, "art12-logging");
    assert_eq!(art12["status"], "not_yet_applicable", "{art12}");
    assert_eq!(art12["applicable_from"], "2027-12-02");
    assert_eq!(art12["readiness"], "evidence_missing");
    assert!(
        art12["quote"]
            .as_str()
            .unwrap()
            .contains("automatic recording of events")
    );
    assert_eq!(readiness_of(&before, "art14-4-e-stop"), "evidence_missing");
    assert_eq!(
        readiness_of(&before, "art13-instructions-for-use"),
        "evidence_missing"
    );
    assert_eq!(
        readiness_of(&before, "art10-data-governance"),
        "attestation_required"
    );
    // Art 86 applies since 2 Aug 2026 to an Annex III point 5(b) deployer; no decision yet.
    assert_eq!(status_of(&before, "art86-explanation"), "evidence_missing");
    // Evidence that does not depend on traffic only supports: Reins's own self-check, its own
    // log retention, the tests of its own policies.
    assert_eq!(
        readiness_of(&before, "art15-4-fail-safe"),
        "supporting_evidence"
    );
    assert_eq!(
        readiness_of(&before, "art19-log-retention"),
        "supporting_evidence"
    );
    assert_eq!(
        readiness_of(&before, "art26-6-log-retention"),
        "supporting_evidence"
    );
    let art9 = item(&before, "art9-risk-management");
    assert_eq!(art9["readiness"], "supporting_evidence", "{art9}");
    assert!(art9["evidence"][0]["ledger_index"].is_u64());
    // Every declared tool is checked: the low-risk search runs without a human.
    let gates = item(&before, "art14-4-d-override");
    assert_eq!(gates["readiness"], "evidence_missing", "{gates}");
    assert!(
        gates["detail"]
            .as_str()
            .unwrap()
            .contains("`search.web` (low)"),
        "{gates}"
    );
    let gate_evidence = gates["evidence"].to_string();
    assert!(
        gate_evidence.contains("approval-high-risk-tools"),
        "{gate_evidence}"
    );
    assert!(
        gate_evidence.contains("tier-high-no-critical"),
        "{gate_evidence}"
    );
    // A fresh install proves nothing.
    for i in before["items"].as_array().unwrap() {
        assert_ne!(i["status"], "satisfied", "{i}");
        assert_ne!(i["readiness"], "satisfied", "{i}");
    }
    assert_eq!(
        status_of(&before, "art4-ai-literacy"),
        "attestation_required"
    );
    // Art 27 binds every deployer of an Annex III point 5(b) system, private ones too.
    assert_eq!(item(&before, "art27-fria")["applicable_from"], "2027-12-02");
    assert!(before["summary"]["not_yet_applicable"].as_u64().unwrap() > 10);

    activity(&s).await;
    s.checkpoint_covering(s.ledger_size()).await;
    let after = checklist(&s).await;
    let art12 = item(&after, "art12-logging");
    assert_eq!(art12["readiness"], "supporting_evidence", "{art12}");
    assert!(
        art12["evidence"]
            .to_string()
            .contains("\"checkpoint\":\"reins.local/ledger\\n"),
        "{art12}"
    );
    assert_eq!(
        status_of(&after, "art86-explanation"),
        "supporting_evidence"
    );
    // The drill refused a call while it was engaged: the stop is shown to work.
    let stop = item(&after, "art14-4-e-stop");
    assert_eq!(stop["readiness"], "satisfied", "{stop}");
    assert!(stop["evidence"][0]["ledger_index"].is_u64(), "{stop}");
    assert!(
        stop["evidence"][0]["description"]
            .as_str()
            .unwrap()
            .starts_with("drill")
    );
    assert!(
        stop["evidence"][1]["description"]
            .as_str()
            .unwrap()
            .starts_with("1 decision"),
        "{stop}"
    );
    assert_eq!(
        readiness_of(&after, "art14-4-b-automation-bias"),
        "supporting_evidence"
    );
    assert_eq!(
        readiness_of(&after, "art26-5-monitor-suspend"),
        "supporting_evidence"
    );

    // An attestation, recorded in the ledger, turns an attestation item into `attested`.
    let size = s.ledger_size();
    let (status, attested) = s
        .post(
            &format!("/v1/agents/{REFUND_BOT}/attestations"),
            &officer(&s),
            json!({"item": "art4-ai-literacy", "statement": "Training TR-3 given to all overseers",
                   "document_sha256": "AB".repeat(32)}),
        )
        .await;
    assert_eq!(status, 201, "{attested}");
    assert_eq!(attested["ledger_index"], size);
    assert_eq!(
        attested["document_sha256"],
        format!("sha256:{}", "ab".repeat(32))
    );
    assert_eq!(attested["actor"], "cora");
    assert_eq!(attested["stale"], false);
    let list = checklist(&s).await;
    assert_eq!(status_of(&list, "art4-ai-literacy"), "attested");
    assert_eq!(
        item(&list, "art4-ai-literacy")["attestations"][0]["statement"],
        "Training TR-3 given to all overseers"
    );

    // An attestation never outweighs contrary evidence.
    let (status, _) = s
        .post(
            &format!("/v1/agents/{REFUND_BOT}/attestations"),
            &officer(&s),
            json!({"item": "art14-4-d-override", "statement": "We have a stop button"}),
        )
        .await;
    assert_eq!(status, 201);
    let list = checklist(&s).await;
    let gates = item(&list, "art14-4-d-override");
    assert_eq!(gates["readiness"], "evidence_missing", "{gates}");
    assert!(
        gates["detail"]
            .as_str()
            .unwrap()
            .contains("does not outweigh"),
        "{gates}"
    );

    // The record fixing the missing documentation turns it into supporting evidence.
    assert_eq!(
        readiness_of(&list, "art13-instructions-for-use"),
        "evidence_missing"
    );
    let mut record = s
        .get(&format!("/v1/agents/{REFUND_BOT}"), &s.admin())
        .await
        .1;
    for key in ["id", "version", "created_at", "updated_at"] {
        record.as_object_mut().unwrap().remove(key);
    }
    record["documentation"]["human_oversight"] = json!(["refunds need a payments-team approver"]);
    s.agent_with(REFUND_BOT, record).await;
    assert_eq!(
        readiness_of(&checklist(&s).await, "art13-instructions-for-use"),
        "supporting_evidence"
    );

    // Markdown for people.
    let response = s
        .client
        .get(s.url(&format!("/v1/agents/{REFUND_BOT}/checklist")))
        .bearer_auth(auditor(&s))
        .header("accept", "text/markdown")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let md = response.text().await.unwrap();
    assert!(md.starts_with("# EU AI Act checklist: Refund bot"), "{md}");
    assert!(md.contains("| `art10-data-governance`"), "{md}");
    assert!(md.contains("Training TR-3 given to all overseers"), "{md}");
    assert!(md.contains("from 2027-12-02"), "{md}");
    assert!(
        md.contains("> \"to decide, in any particular situation"),
        "{md}"
    );

    let (_, listed) = s
        .get(
            &format!("/v1/agents/{REFUND_BOT}/attestations"),
            &auditor(&s),
        )
        .await;
    assert_eq!(listed["attestations"].as_array().unwrap().len(), 2);
}

fn readiness_of(list: &Value, id: &str) -> String {
    let i = item(list, id);
    i["readiness"]
        .as_str()
        .unwrap_or_else(|| panic!("{id} has no readiness: {i}"))
        .to_owned()
}

/// 14(4)(e) asks that the stop worked: a drill during which nothing was refused does not show it;
/// and a medium-risk tool that runs without a human fails 14(4)(d).
#[tokio::test]
async fn a_drill_must_refuse_something_and_every_tool_needs_a_human() {
    let s = TestServer::start().await;
    s.tool("crm.update", "medium").await;
    s.agent_with(
        "crm-bot",
        json!({"name": "CRM bot", "owner": "sales", "risk_tier": "high", "tools": ["crm.update"],
               "ai_act": {"role": "provider", "annex": "annex_i"}}),
    )
    .await;
    let operator = s.token("oncall", &["operator"]);
    let (status, switch) = s
        .post(
            "/v1/killswitch",
            &operator,
            json!({"scope": {"agent": "crm-bot"}, "reason": "drill", "drill": true}),
        )
        .await;
    assert_eq!(status, 201, "{switch}");
    let (status, list) = s.get("/v1/agents/crm-bot/checklist", &auditor(&s)).await;
    assert_eq!(status, 200, "{list}");
    let stop = item(&list, "art14-4-e-stop");
    assert_eq!(stop["status"], "not_yet_applicable", "{stop}");
    assert_eq!(stop["applicable_from"], "2028-08-02", "Annex I: {stop}");
    assert_eq!(stop["readiness"], "evidence_missing", "{stop}");
    let gates = item(&list, "art14-4-d-override");
    assert_eq!(gates["readiness"], "evidence_missing", "{gates}");
    assert!(
        gates["detail"]
            .as_str()
            .unwrap()
            .contains("`crm.update` (medium)"),
        "{gates}"
    );
    // A provider is not bound by the deployer's items.
    assert_eq!(status_of(&list, "art26-7-workers"), "not_applicable");

    // The next call is refused by the drill: now the stop is shown to work.
    let (_, refused) = s
        .invoke(&s.token("crm-bot", &[]), "crm.update", json!({}))
        .await;
    assert_eq!(codes(&refused), ["kill_switch"]);
    let (_, list) = s.get("/v1/agents/crm-bot/checklist", &auditor(&s)).await;
    assert_eq!(item(&list, "art14-4-e-stop")["readiness"], "satisfied");
}

/// Attestations lapse after `compliance.attestation_validity`; a changed intended purpose is
/// flagged under Art 25; items that need scoping data name the field.
#[tokio::test]
async fn stale_attestations_purpose_changes_and_missing_scoping() {
    let data = tempfile::tempdir().unwrap();
    let mut config = crate::harness::test_config(data.path(), None);
    config.compliance.attestation_validity = std::time::Duration::from_secs(1);
    let s = TestServer::with_config(data, config).await;
    s.tool("faq.answer", "low").await;
    let record = json!({"name": "FAQ bot", "owner": "support", "risk_tier": "limited",
        "intended_purpose": "Answer product questions", "tools": ["faq.answer"]});
    s.agent_with("faq-bot", record.clone()).await;
    // Scoping fields are checked like the rest of the record.
    let mut bad = record.clone();
    bad["ai_act"] = json!({"annex": "annex_iii:9"});
    let (status, body) = s.put("/v1/agents/faq-bot", &s.admin(), bad).await;
    assert!(status == 400 || status == 422, "{status} {body}");
    assert_eq!(body["error"]["field"], "ai_act.annex", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("annex_iii:9"),
        "{body}"
    );
    let mut contradictory = record.clone();
    contradictory["ai_act"] = json!({"role": "deployer"});
    contradictory["documentation"] = json!({"ai_act_role": "provider"});
    let (status, body) = s.put("/v1/agents/faq-bot", &s.admin(), contradictory).await;
    assert_eq!(status, 422, "{body}");
    let (_, list) = s.get("/v1/agents/faq-bot/checklist", &auditor(&s)).await;
    // No role stated: a deployer-only item asks for it rather than guessing.
    let art50 = item(&list, "art50-3-4-deployer-transparency");
    assert_eq!(art50["status"], "scoping_needed", "{art50}");
    assert!(
        art50["detail"].as_str().unwrap().contains("`ai_act.role`"),
        "{art50}"
    );

    let (status, _) = s
        .post(
            "/v1/agents/faq-bot/attestations",
            &officer(&s),
            json!({"item": "art4-ai-literacy", "statement": "trained"}),
        )
        .await;
    assert_eq!(status, 201);
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let (_, list) = s.get("/v1/agents/faq-bot/checklist", &auditor(&s)).await;
    let art4 = item(&list, "art4-ai-literacy");
    assert_eq!(art4["status"], "evidence_stale", "{art4}");
    assert_eq!(art4["attestations"][0]["stale"], true);

    let mut changed = record;
    changed["intended_purpose"] = json!("Decide customers' refund eligibility");
    changed["ai_act"] = json!({"role": "deployer"});
    s.agent_with("faq-bot", changed).await;
    let (_, list) = s.get("/v1/agents/faq-bot/checklist", &auditor(&s)).await;
    let art25 = item(&list, "art25-provider-by-change");
    assert_eq!(art25["readiness"], "attestation_required", "{art25}");
    assert!(
        art25["detail"]
            .as_str()
            .unwrap()
            .contains("possible provider role"),
        "{art25}"
    );
    assert!(art25["evidence"][0]["ledger_index"].is_u64(), "{art25}");
}

#[tokio::test]
async fn attestations_are_refused_without_the_role_or_with_bad_input() {
    let s = TestServer::start().await;
    fleet(&s).await;
    let path = format!("/v1/agents/{REFUND_BOT}/attestations");
    let size = s.ledger_size();
    let ok = json!({"item": "art10-data-governance", "statement": "done"});
    for token in [auditor(&s), s.admin(), s.token(REFUND_BOT, &[])] {
        let (status, body) = s.post(&path, &token, ok.clone()).await;
        assert_eq!(status, 403, "{body}");
    }
    let cases = [
        (json!({"item": "art99-nope", "statement": "x"}), 422, "item"),
        (
            json!({"item": "art10-data-governance", "statement": "  "}),
            422,
            "statement",
        ),
        (
            json!({"item": "art10-data-governance", "statement": "x", "document_sha256": "abc"}),
            422,
            "document_sha256",
        ),
        (
            json!({"item": "art10-data-governance", "statement": "x", "extra": 1}),
            400,
            "",
        ),
    ];
    for (body, expected, field) in cases {
        let (status, answer) = s.post(&path, &officer(&s), body.clone()).await;
        assert_eq!(status, expected, "{body} -> {answer}");
        if !field.is_empty() {
            assert_eq!(answer["error"]["field"], field, "{answer}");
        }
    }
    let (status, _) = s
        .post("/v1/agents/nobody/attestations", &officer(&s), ok)
        .await;
    assert_eq!(status, 404);
    assert_eq!(s.ledger_size(), size, "nothing refused was recorded");

    // Reading needs an auditor, compliance officer or admin.
    let (status, _) = s
        .get(
            &format!("/v1/agents/{REFUND_BOT}/checklist"),
            &s.token(REFUND_BOT, &[]),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = s
        .get(
            &format!("/v1/agents/{REFUND_BOT}/model-card"),
            &s.token("x", &["operator"]),
        )
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn model_card_reports_the_ledger_figures_and_shows_missing_fields() {
    let s = TestServer::start().await;
    fleet(&s).await;
    activity(&s).await;

    let (status, card) = s
        .send(
            reqwest::Method::GET,
            &format!("/v1/agents/{REFUND_BOT}/model-card"),
            Some(&auditor(&s)),
            None,
        )
        .await;
    // Markdown by default: not JSON.
    assert_eq!((status, card), (200, Value::Null));
    let response = s
        .client
        .get(s.url(&format!("/v1/agents/{REFUND_BOT}/model-card")))
        .bearer_auth(officer(&s))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let card: Value = response.json().await.unwrap();
    let f = &card["figures"];
    // 3 searches + approval_required + approved refund + kill-switch deny.
    assert_eq!(
        (
            f["decisions"].as_u64(),
            f["allowed"].as_u64(),
            f["denied"].as_u64()
        ),
        (Some(6), Some(4), Some(2)),
        "{f}"
    );
    assert!((f["deny_rate"].as_f64().unwrap() - 2.0 / 6.0).abs() < 1e-9);
    assert_eq!(
        (
            f["approvals"]["requested"].as_u64(),
            f["approvals"]["granted"].as_u64()
        ),
        (Some(1), Some(1)),
        "{f}"
    );
    assert!(f["approvals"]["median_review_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(f["kill_switch"].as_array().unwrap().len(), 1);
    assert_eq!(f["kill_switch"][0]["drill"], true);
    assert!(
        card["missing"]
            .as_array()
            .unwrap()
            .contains(&json!("documentation.contact"))
    );
    assert!(
        !card["missing"]
            .as_array()
            .unwrap()
            .contains(&json!("model"))
    );
    let governing: Vec<&str> = card["policies"]["governing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert!(
        governing.contains(&"approval-high-risk-tools"),
        "{governing:?}"
    );
    let tools = card["tools"].to_string();
    assert!(tools.contains("\"risk\":\"critical\""), "{tools}");

    let (_, md) = s
        .get_text(&format!("/v1/agents/{REFUND_BOT}/model-card"), &auditor(&s))
        .await;
    assert!(
        md.starts_with("---\nmodel_name: \"Refund bot\"\nbase_model: \"acme-7b-base\"\n"),
        "{md}"
    );
    assert!(md.contains("model-index:"), "{md}");
    assert!(md.contains("| contact | _not provided_ |"), "{md}");
    assert!(md.contains("| decisions | 6 |"), "{md}");
    assert!(md.contains("| deny rate | 33.3% |"), "{md}");
    assert!(
        md.contains(card["policies"]["digest"].as_str().unwrap()),
        "{md}"
    );
    assert!(md.contains("drill, ledger index"), "{md}");

    // A period before everything holds nothing, and a bad period is a 422 naming it.
    let empty: Value = s
        .client
        .get(s.url(&format!(
            "/v1/agents/{REFUND_BOT}/model-card?from=2020-01-01T00:00:00Z&to=2020-02-01T00:00:00Z"
        )))
        .bearer_auth(auditor(&s))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(empty["figures"]["decisions"], 0, "{empty}");
    assert_eq!(empty["figures"]["deny_rate"], Value::Null, "{empty}");
    let (status, bad) = s
        .get(
            &format!("/v1/agents/{REFUND_BOT}/model-card?from=yesterday"),
            &auditor(&s),
        )
        .await;
    assert_eq!(
        (status, bad["error"]["field"].as_str()),
        (422, Some("from")),
        "{bad}"
    );
    let (status, _) = s.get("/v1/agents/nobody/model-card", &auditor(&s)).await;
    assert_eq!(status, 404);
}

/// A change to one file's bytes.
type Edit = Box<dyn Fn(Vec<u8>) -> Vec<u8>>;

/// Rewrites one file of a zip through `change`.
fn rewrite(pack: &Path, out: &Path, name: &str, change: impl Fn(Vec<u8>) -> Vec<u8>) {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(pack).unwrap()).unwrap();
    let mut writer = zip::ZipWriter::new(std::fs::File::create(out).unwrap());
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).unwrap();
        let file_name = file.name().unwrap().into_owned();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        if file_name == name {
            bytes = change(bytes);
        }
        writer
            .start_file(file_name, zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.write_all(&bytes).unwrap();
    }
    writer.finish().unwrap();
}

fn verify(pack: &Path, key: &str) -> (bool, String) {
    let out = run(&mut reins(&[
        "audit-pack",
        "verify",
        pack.to_str().unwrap(),
        "--key",
        key,
    ]));
    (
        out.status.success(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

fn lines(bytes: Vec<u8>) -> Vec<Vec<u8>> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn join(lines: Vec<Vec<u8>>) -> Vec<u8> {
    lines
        .into_iter()
        .flat_map(|mut l| {
            l.push(b'\n');
            l
        })
        .collect()
}

#[tokio::test]
async fn audit_pack_exports_verifies_offline_and_names_what_was_tampered_with() {
    let s = TestServer::start().await;
    fleet(&s).await;
    activity(&s).await;
    s.checkpoint_covering(s.ledger_size()).await;
    let key = s
        .get_text("/v1/ledger/key", &auditor(&s))
        .await
        .1
        .trim()
        .to_owned();

    // Exported by the CLI from the data dir while the server runs.
    let dir = tempfile::tempdir().unwrap();
    let pack = dir.path().join("pack.zip");
    let data = s.data.path().to_str().unwrap();
    let out = run(s.on_database(&mut reins(&[
        "audit-pack",
        "export",
        "--data-dir",
        data,
        "--agent",
        REFUND_BOT,
        "-o",
        pack.to_str().unwrap(),
    ])));
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).starts_with("wrote "),
        "{}",
        text(&out.stdout)
    );
    let (ok, report) = verify(&pack, &key);
    assert!(ok, "{report}");
    assert!(report.contains(&format!("agent {REFUND_BOT}")), "{report}");
    // `reins ledger key` gives the same key from the keys dir, to a file the README's command
    // reads.
    let vkey = dir.path().join("ledger.vkey");
    let out = run(&mut reins(&[
        "ledger",
        "key",
        "--data-dir",
        data,
        "-o",
        vkey.to_str().unwrap(),
    ]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&vkey).unwrap().trim(), key);

    let mut archive = zip::ZipArchive::new(std::fs::File::open(&pack).unwrap()).unwrap();
    let names: Vec<String> = archive
        .file_names()
        .map(|n| n.unwrap().into_owned())
        .collect();
    for expected in [
        "manifest.json",
        "manifest.sig",
        "entries.jsonl",
        "checkpoint.txt",
        "proofs/inclusion.jsonl",
        "proofs/consistency.json",
        "checkpoints/first.txt",
        "verifier.key",
        "policies/index.json",
        "model-card.md",
        "checklist.json",
        "README.md",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    let mut entries = String::new();
    archive
        .by_name("entries.jsonl")
        .unwrap()
        .read_to_string(&mut entries)
        .unwrap();
    assert!(
        entries.contains("\"type\":\"decision\"")
            && entries.contains("\"type\":\"killswitch_engaged\"")
    );
    assert!(!entries.contains("\"agent_id\":\"someone-else\""));
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("policies/") && n.ends_with("/approvals.cedar")),
        "{names:?}"
    );

    let tampered = dir.path().join("tampered.zip");
    let flip = |mut b: Vec<u8>| {
        let at = b.len() / 2;
        b[at] ^= 1;
        b
    };
    let cases: Vec<(&str, Edit)> = vec![
        ("entries.jsonl", Box::new(flip)),
        ("checklist.json", Box::new(flip)),
        ("model-card.md", Box::new(flip)),
        ("proofs/inclusion.jsonl", Box::new(flip)),
        (
            "entries.jsonl",
            Box::new(|b| {
                let mut l = lines(b);
                l.remove(1);
                join(l)
            }),
        ),
        (
            "entries.jsonl",
            Box::new(|b| {
                let mut l = lines(b);
                l.swap(1, 2);
                join(l)
            }),
        ),
        ("manifest.json", Box::new(flip)),
    ];
    for (file, change) in cases {
        rewrite(&pack, &tampered, file, change);
        let (ok, report) = verify(&tampered, &key);
        assert!(!ok, "tampering with {file} went unnoticed: {report}");
        assert!(report.contains(&format!("FAIL {file}")), "{file}: {report}");
    }
    // Not a pack at all.
    let junk = dir.path().join("junk.zip");
    std::fs::write(&junk, b"not a zip").unwrap();
    let (ok, report) = verify(&junk, &key);
    assert!(
        !ok && report.contains("FAIL (zip): not a readable zip"),
        "{report}"
    );
    // Another key: the manifest signature is what fails.
    let other = "reins.local/ledger+00000000+AXhS7cTPv2Tgm9fDcpeS6TpFKeF3Wp2dA0Fk7ZEgnPvA";
    let (ok, report) = verify(&pack, other);
    assert!(!ok && report.contains("FAIL "), "{report}");
}

#[tokio::test]
async fn audit_pack_over_http_for_auditors() {
    let s = TestServer::start().await;
    fleet(&s).await;
    let bot = s.token(REFUND_BOT, &[]);
    for _ in 0..5 {
        s.invoke(&bot, "search.web", json!({})).await;
    }
    s.checkpoint_covering(s.ledger_size()).await;
    let response = s
        .client
        .get(s.url("/v1/audit-pack"))
        .bearer_auth(auditor(&s))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/zip");
    let bytes = response.bytes().await.unwrap();
    let verified =
        reins::compliance::pack::verify(std::io::Cursor::new(bytes.to_vec()), None).unwrap();
    // Unfiltered: every entry from the first, with no gap.
    assert_eq!(verified.start, 0);
    assert_eq!(verified.entries, verified.end);
    assert!(verified.entries >= 5 + 4, "{verified:?}");

    let (status, _) = s.get("/v1/audit-pack", &bot).await;
    assert_eq!(status, 403);
    let (status, body) = s.get("/v1/audit-pack?from=2026-13-01", &auditor(&s)).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("from")),
        "{body}"
    );
    let (status, body) = s.get("/v1/audit-pack?agent=nobody", &auditor(&s)).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = s.get("/v1/audit-pack?bogus=1", &auditor(&s)).await;
    assert_eq!(status, 400, "{body}");
}

/// The documents as a person reads them: evidence one line each with no empty references, no API
/// paths, durations in days, policies in their own words, a pack README with the times of what it
/// holds, and a pack exported right after an attestation holding the entry its checklist cites.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_read_cleanly_and_a_pack_holds_what_its_checklist_cites() {
    let s = TestServer::start().await;
    fleet(&s).await;
    activity(&s).await;
    let (status, attested) = s
        .post(
            &format!("/v1/agents/{REFUND_BOT}/attestations"),
            &officer(&s),
            json!({"item": "art4-ai-literacy", "statement": "trained on 2026-11-02"}),
        )
        .await;
    assert_eq!(status, 201, "{attested}");
    let attestation_index = attested["ledger_index"].as_u64().unwrap();

    // Exported at once, before the next checkpoint: the export waits for one.
    let dir = tempfile::tempdir().unwrap();
    let pack = dir.path().join("pack.zip");
    let data = s.data.path().to_str().unwrap();
    let out = run(s.on_database(&mut reins(&[
        "audit-pack",
        "export",
        "--data-dir",
        data,
        "--agent",
        REFUND_BOT,
        "-o",
        pack.to_str().unwrap(),
    ])));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&pack).unwrap()).unwrap();
    let mut read = |name: &str| {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut archive.by_name(name).unwrap(), &mut text).unwrap();
        text
    };
    let entries = read("entries.jsonl");
    assert!(
        entries
            .lines()
            .any(|l| l.contains(&format!("\"index\":{attestation_index},"))
                || l.contains(&format!("\"index\": {attestation_index},"))),
        "the attestation at {attestation_index} is in the pack"
    );
    let readme = read("README.md");
    assert!(!readme.contains("1970-01-01"), "{readme}");
    assert!(readme.contains("entries, recorded between 2"), "{readme}");
    let checklist = read("checklist.md");
    let card = read("model-card.md");

    for (name, text) in [("checklist", &checklist), ("card", &card)] {
        assert!(!text.contains("(ledger index )"), "{name}: {text}");
        assert!(!text.contains("GET /v1/"), "{name}: {text}");
        // humantime's "2months 29days 2h 52m 48s" for 90 days.
        assert!(
            !(0..10).any(|d| text.contains(&format!("{d}months"))),
            "{name}: {text}"
        );
        for line in text.lines().filter(|l| l.starts_with("- ")) {
            assert!(
                !line.contains(")- "),
                "{name}: two evidence lines run together: {line}"
            );
        }
    }
    assert!(
        checklist.contains("compliance.drill_window = 90 days"),
        "{checklist}"
    );
    assert!(
        card.contains("| `declared-tools` | permit | An agent may call only the tools it declared"),
        "{card}"
    );
}
