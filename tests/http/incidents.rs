//! Serious incidents (Art 73) over HTTP and the CLI: deadlines per severity, each step a ledger
//! entry, overdue ones listed, reports whose cited entries verify against a signed checkpoint,
//! and a kill switch that opens one when configured.

use base64::Engine;
use ct_merkle::{InclusionProof, RootHash};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::cli::{reins, run, text};
use crate::harness::{TestServer, test_config};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn ago(days: u64) -> String {
    let t = std::time::SystemTime::now() - std::time::Duration::from_secs(days * 86_400);
    humantime::format_rfc3339_millis(t).to_string()
}

fn days_between(from: &Value, to: &Value) -> f64 {
    let parse = |v: &Value| humantime::parse_rfc3339(v.as_str().unwrap()).unwrap();
    parse(to).duration_since(parse(from)).unwrap().as_secs_f64() / 86_400.0
}

async fn server() -> TestServer {
    let s = TestServer::start().await;
    s.tool("payments.refund", "high").await;
    s.agent("bot", "high", &["payments.refund"]).await;
    s
}

#[tokio::test]
async fn each_severity_gets_its_article_73_deadline_and_updates_move_it() {
    let s = server().await;
    let officer = s.token("olga", &["compliance_officer"]);
    for (severity, widespread, days, paragraph) in [
        ("death", false, 10.0, "73(4)"),
        ("serious_harm", false, 15.0, "73(2)"),
        ("critical_infrastructure", false, 2.0, "73(3)"),
        ("fundamental_rights", false, 15.0, "73(2)"),
        ("property_or_environment", false, 15.0, "73(2)"),
        ("fundamental_rights", true, 2.0, "73(3)"),
    ] {
        let (status, i) = s
            .post(
                "/v1/incidents",
                &officer,
                json!({"severity": severity, "widespread": widespread, "summary": "what happened",
                         "agents": ["bot"], "aware_at": ago(1)}),
            )
            .await;
        assert_eq!(status, 201, "{severity}: {i}");
        assert_eq!(
            days_between(&i["aware_at"], &i["deadline"]),
            days,
            "{severity}: {i}"
        );
        assert_eq!(i["deadline_rule"]["paragraph"], paragraph, "{i}");
        assert_eq!(
            (&i["status"], &i["overdue"]),
            (&json!("open"), &json!(false)),
            "{i}"
        );
    }

    // A serious harm turns out to be a death: the deadline shortens to 10 days from awareness.
    let (_, i) = s
        .post(
            "/v1/incidents",
            &officer,
            json!({"severity": "serious_harm", "summary": "injury", "agents": ["bot"],
                     "aware_at": ago(12)}),
        )
        .await;
    let id = i["id"].as_str().unwrap();
    assert_eq!(i["overdue"], false, "{i}");
    let (status, updated) = s
        .post(
            &format!("/v1/incidents/{id}/updates"),
            &officer,
            json!({"severity": "death", "note": "the patient died"}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        days_between(&updated["aware_at"], &updated["deadline"]),
        10.0
    );
    assert_eq!(
        updated["overdue"], true,
        "12 days since awareness: {updated}"
    );
    let (_, overdue) = s.get("/v1/incidents?overdue=true", &officer).await;
    let ids: Vec<&str> = overdue
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id], "{overdue}");
}

#[tokio::test]
async fn bad_incident_requests_change_nothing_and_roles_are_the_control_policys() {
    let s = server().await;
    let officer = s.token("olga", &["compliance_officer"]);
    let good =
        json!({"severity": "serious_harm", "summary": "s", "agents": ["bot"], "aware_at": ago(0)});
    for roles in [&[][..], &["auditor"], &["reviewer"], &["admin"]] {
        let (status, _) = s
            .post("/v1/incidents", &s.token("x", roles), good.clone())
            .await;
        assert_eq!(status, 403, "{roles:?}");
    }
    let mut cases = vec![];
    let mut bad = good.clone();
    bad["agents"] = json!(["nobody"]);
    cases.push((bad, 422, "agents[0]"));
    let mut bad = good.clone();
    bad["decisions"] = json!(["0193a000-0000-7000-8000-000000000000"]);
    cases.push((bad, 422, "decisions[0]"));
    let mut bad = good.clone();
    bad["aware_at"] = json!("2999-01-01T00:00:00Z");
    cases.push((bad, 422, "aware_at"));
    let mut bad = good.clone();
    bad["summary"] = json!("");
    cases.push((bad, 422, "summary"));
    let mut bad = good.clone();
    bad["severity"] = json!("mild");
    cases.push((bad, 400, "severity"));
    for (body, status, field) in cases {
        let (got, answer) = s.post("/v1/incidents", &officer, body).await;
        assert_eq!(got, status, "{answer}");
        assert!(
            answer["error"]["field"]
                .as_str()
                .unwrap_or_default()
                .starts_with(field),
            "{answer}"
        );
    }
    let (_, all) = s.get("/v1/incidents", &s.token("a", &["auditor"])).await;
    assert_eq!(all, json!([]), "nothing was opened");
}

#[tokio::test]
async fn an_incident_report_cites_its_timeline_and_every_cited_entry_verifies() {
    let mut s = server().await;
    let operator = s.token("oscar", &["operator"]);
    let (_, d) = s
        .invoke(
            &s.token("bot", &[]),
            "payments.refund",
            json!({"amount": 5}),
        )
        .await;
    let (_, switch) = s
        .post(
            "/v1/killswitch",
            &operator,
            json!({"scope": {"agent": "bot"}, "reason": "refunds to strangers"}),
        )
        .await;
    let (status, i) = s
        .post("/v1/incidents", &operator,
              json!({"severity": "property_or_environment", "summary": "refunds paid to the wrong accounts",
                     "agents": ["bot"], "decisions": [d["decision_id"]], "killswitches": [switch["id"]],
                     "aware_at": ago(1)}))
        .await;
    assert_eq!(status, 201, "{i}");
    let id = i["id"].as_str().unwrap().to_owned();
    let (status, reported) = s
        .post(
            &format!("/v1/incidents/{id}/report"),
            &operator,
            json!({"authority": "BNetzA", "reference": "MSA-2026-0042"}),
        )
        .await;
    assert_eq!(status, 200, "{reported}");
    assert_eq!(
        (&reported["status"], &reported["overdue"]),
        (&json!("reported"), &json!(false))
    );
    let (status, again) = s
        .post(
            &format!("/v1/incidents/{id}/report"),
            &operator,
            json!({"authority": "BNetzA", "reference": "again"}),
        )
        .await;
    assert_eq!(status, 409, "{again}");
    let (status, closed) = s
        .post(
            &format!("/v1/incidents/{id}/close"),
            &operator,
            json!({"note": "refunds recovered"}),
        )
        .await;
    assert_eq!(
        (status, &closed["status"]),
        (200, &json!("closed")),
        "{closed}"
    );
    let (status, _) = s
        .post(
            &format!("/v1/incidents/{id}/updates"),
            &operator,
            json!({"note": "late"}),
        )
        .await;
    assert_eq!(status, 409, "a closed incident takes no more steps");
    s.checkpoint_covering(closed["ledger"]["index"].as_u64().unwrap() + 1)
        .await;

    // The report from the data dir, as an officer exports it.
    s.stop_and_verify_ledger().await;
    let data = s.data.path().to_str().unwrap().to_owned();
    let mut json_cmd = reins(&[
        "incident",
        "report",
        &id,
        "--format",
        "json",
        "--data-dir",
        &data,
    ]);
    let out = run(s.on_database(&mut json_cmd));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["deadline_status"], "reported_on_time", "{report}");
    let kinds: Vec<&str> = report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "decision",
            "killswitch_engaged",
            "incident_opened",
            "incident_reported",
            "incident_closed"
        ],
        "{report}"
    );
    // Every cited entry verifies against the checkpoint, checked here with another RFC 6962
    // implementation (ct-merkle).
    let proofs = &report["proofs"];
    let checkpoint = proofs["checkpoint"].as_str().unwrap();
    let body: Vec<&str> = checkpoint.lines().collect();
    let size: u64 = body[1].parse().unwrap();
    let root: [u8; 32] = B64.decode(body[2]).unwrap().try_into().unwrap();
    let root = RootHash::<Sha256>::new(root.into(), size);
    let cited = proofs["entries"].as_array().unwrap();
    assert_eq!(cited.len(), kinds.len(), "{proofs}");
    for entry in cited {
        let bytes = B64.decode(entry["entry_bytes"].as_str().unwrap()).unwrap();
        let digests: Vec<[u8; 32]> = entry["inclusion_proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| B64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
            .collect();
        let digests: Vec<_> = digests.into_iter().map(Into::into).collect();
        root.verify_inclusion(
            &bytes,
            entry["index"].as_u64().unwrap(),
            &InclusionProof::<Sha256>::from_digests(digests.iter()),
        )
        .unwrap_or_else(|e| panic!("entry {}: {e:?}", entry["index"]));
    }
    let mut md_cmd = reins(&["incident", "report", &id, "--data-dir", &data]);
    let out = run(s.on_database(&mut md_cmd));
    let markdown = text(&out.stdout);
    assert!(markdown.contains("reported on time"), "{markdown}");
    assert!(markdown.contains("Art 73(2)"), "{markdown}");
    assert!(markdown.contains("MSA-2026-0042"), "{markdown}");
    assert!(markdown.contains("every proof verifies"), "{markdown}");
    let mut missing = reins(&[
        "incident",
        "report",
        "0193a000-0000-7000-8000-000000000000",
        "--data-dir",
        &data,
    ]);
    let out = run(s.on_database(&mut missing));
    assert!(
        !out.status.success() && text(&out.stderr).contains("no incident"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn a_kill_switch_opens_an_incident_when_configured() {
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(data.path(), None);
    config.compliance.incident_on_killswitch = Some("serious_harm".into());
    let s = TestServer::with_config(data, config).await;
    s.tool("t", "low").await;
    s.agent("bot", "high", &["t"]).await;
    let operator = s.token("oscar", &["operator"]);
    let (_, drill) = s
        .post(
            "/v1/killswitch",
            &operator,
            json!({"scope": {"agent": "bot"}, "reason": "drill", "drill": true}),
        )
        .await;
    assert_eq!(drill["drill"], true, "{drill}");
    let (_, switch) = s
        .post(
            "/v1/killswitch",
            &operator,
            json!({"scope": {"agent": "bot"}, "reason": "leaking data"}),
        )
        .await;
    let (_, incidents) = s.get("/v1/incidents", &operator).await;
    let incidents = incidents.as_array().unwrap();
    assert_eq!(incidents.len(), 1, "a drill opens none: {incidents:?}");
    let i = &incidents[0];
    assert_eq!(i["severity"], "serious_harm");
    assert_eq!(i["killswitches"], json!([switch["id"]]));
    assert_eq!(i["agents"], json!(["bot"]));
    assert_eq!(i["aware_at"], switch["engaged_at"], "{i}");
    assert!(
        i["summary"].as_str().unwrap().contains("leaking data"),
        "{i}"
    );
}

fn checklist_item<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("no item {id}"))
}

/// Art 73 applies now; Art 20 and 26(5) from the high-risk date, so their status today is their
/// readiness.
fn statuses(list: &Value) -> (String, String, String) {
    let text = |v: &Value| v.as_str().unwrap().to_owned();
    (
        text(&checklist_item(list, "art73-serious-incidents")["status"]),
        text(&checklist_item(list, "art20-corrective-action")["readiness"]),
        text(&checklist_item(list, "art26-5-monitor-suspend")["readiness"]),
    )
}

#[tokio::test]
async fn checklist_items_follow_incidents_as_they_are_reported_or_overdue() {
    let s = TestServer::start().await;
    s.tool("payments.refund", "high").await;
    s.agent_with(
        "bot",
        json!({"name": "Refund bot", "owner": "payments", "risk_tier": "high",
               "tools": ["payments.refund"],
               "ai_act": {"role": "provider_and_deployer", "annex": "annex_iii:5(b)",
                          "deployer_kind": "private"}}),
    )
    .await;
    let auditor = s.token("audrey", &["auditor"]);
    let officer = s.token("olga", &["compliance_officer"]);
    let operator = s.token("oscar", &["operator"]);
    let list = || async { s.get("/v1/agents/bot/checklist", &auditor).await.1 };

    // Nothing recorded: the procedure needs a statement.
    let (art73, art20, art26) = statuses(&list().await);
    assert_eq!(art73, "attestation_required");
    assert_eq!(art20, "attestation_required");
    assert_eq!(art26, "attestation_required");

    // An incident 20 days old, unreported: overdue, named.
    let (_, late) = s
        .post(
            "/v1/incidents",
            &officer,
            json!({"severity": "serious_harm", "summary": "wrong refunds", "agents": ["bot"],
                     "aware_at": ago(20)}),
        )
        .await;
    let late_id = late["id"].as_str().unwrap();
    let list_now = list().await;
    let (art73, art20, art26) = statuses(&list_now);
    assert_eq!(
        (art73.as_str(), art20.as_str(), art26.as_str()),
        ("evidence_missing", "evidence_missing", "evidence_missing")
    );
    let detail = checklist_item(&list_now, "art73-serious-incidents")["detail"]
        .as_str()
        .unwrap();
    assert!(detail.contains(late_id), "{detail}");

    // Reported late, it stays missing: the deadline was not met.
    s.post(
        &format!("/v1/incidents/{late_id}/report"),
        &officer,
        json!({"authority": "MSA", "reference": "R-1"}),
    )
    .await;
    assert_eq!(statuses(&list().await).0, "evidence_missing");

    // On a fresh agent: an incident met by a suspension and reported in time satisfies all three.
    s.agent_with(
        "bot2",
        json!({"name": "Refund bot 2", "owner": "payments", "risk_tier": "high",
               "tools": ["payments.refund"],
               "ai_act": {"role": "provider_and_deployer", "annex": "annex_iii:5(b)",
                          "deployer_kind": "private"}}),
    )
    .await;
    let list2 = || async { s.get("/v1/agents/bot2/checklist", &auditor).await.1 };
    let (_, open) = s
        .post(
            "/v1/incidents",
            &officer,
            json!({"severity": "fundamental_rights", "summary": "biased refusals",
                     "agents": ["bot2"], "aware_at": ago(1)}),
        )
        .await;
    let open_id = open["id"].as_str().unwrap();
    let (art73, art20, _) = statuses(&list2().await);
    assert_eq!(art73, "supporting_evidence", "open, not yet due");
    assert_eq!(art20, "attestation_required", "no suspension linked yet");
    let (_, switch) = s
        .post(
            "/v1/killswitch",
            &operator,
            json!({"scope": {"agent": "bot2"}, "reason": "bias"}),
        )
        .await;
    s.post(
        &format!("/v1/incidents/{open_id}/updates"),
        &officer,
        json!({"killswitches": [switch["id"]]}),
    )
    .await;
    s.post(
        &format!("/v1/incidents/{open_id}/report"),
        &officer,
        json!({"authority": "MSA", "reference": "R-2"}),
    )
    .await;
    let after = list2().await;
    assert_eq!(
        statuses(&after),
        ("satisfied".into(), "satisfied".into(), "satisfied".into()),
        "{after}"
    );
    let evidence = &checklist_item(&after, "art73-serious-incidents")["evidence"][0];
    assert!(
        evidence["ledger_index"].is_u64(),
        "cites the report's entry: {evidence}"
    );
}

#[tokio::test]
async fn the_model_card_counts_outcomes_per_tool_and_the_checklist_their_share() {
    let s = TestServer::start().await;
    s.tool("crm.note", "medium").await;
    s.tool("crm.unnote", "medium").await;
    s.agent_with(
        "bot",
        json!({"name": "Notes", "owner": "crm", "risk_tier": "high",
               "tools": ["crm.note", "crm.unnote"],
               "ai_act": {"role": "provider", "annex": "annex_iii:5(b)"}}),
    )
    .await;
    let bot = s.token("bot", &[]);
    let mut ids = vec![];
    for _ in 0..4 {
        let (_, d) = s.invoke(&bot, "crm.note", json!({})).await;
        ids.push(d["decision_id"].as_str().unwrap().to_owned());
    }
    for (id, status) in ids.iter().zip(["succeeded", "succeeded", "failed"]) {
        let (code, body) = s
            .post(
                &format!("/v1/decisions/{id}/outcome"),
                &bot,
                json!({"status": status}),
            )
            .await;
        assert_eq!(code, 201, "{body}");
    }
    let (_, undo) = s
        .post(
            "/v1/decisions",
            &bot,
            json!({"action": "invoke", "resource": {"type": "Tool", "id": "crm.unnote"},
                     "context": {"args": {}}, "compensates": ids[0]}),
        )
        .await;
    assert_eq!(undo["decision"], "allow", "{undo}");

    let auditor = s.token("audrey", &["auditor"]);
    let card: Value = reqwest::Client::new()
        .get(s.url("/v1/agents/bot/model-card"))
        .bearer_auth(&auditor)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let outcomes = card["figures"]["outcomes"].as_array().unwrap();
    let note = outcomes.iter().find(|t| t["tool"] == "crm.note").unwrap();
    assert_eq!(
        [
            &note["allowed"],
            &note["succeeded"],
            &note["failed"],
            &note["not_reported"],
            &note["compensated"]
        ],
        [&json!(4), &json!(2), &json!(1), &json!(1), &json!(1)],
        "{note}"
    );
    let (_, markdown) = s.get_text("/v1/agents/bot/model-card", &auditor).await;
    assert!(
        markdown.contains("| `crm.note` | 4 | 2 | 1 | 0 | 0 | 1 | 1 |"),
        "{markdown}"
    );

    let (_, list) = s.get("/v1/agents/bot/checklist", &auditor).await;
    let art12 = checklist_item(&list, "art12-logging");
    let shares: Vec<&str> = art12["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["description"].as_str())
        .filter(|d| d.contains("outcome reported"))
        .collect();
    assert_eq!(
        shares,
        [
            "3 of 5 allowed actions (60.0%) have an outcome reported by the agent or its enforcement point"
        ],
        "{art12}"
    );
}
