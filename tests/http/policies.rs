//! Policy versions: validated uploads, activation gated by the pack's own policy tests, rollback,
//! retirement, restarts, and every step in the ledger.

use serde_json::{Value, json};

use crate::harness::{TestServer, codes, eventually, policy_ids, repo, test_config};

fn pack_files(extra: &[(&str, &str)], without: &[&str]) -> Value {
    let mut files = serde_json::Map::new();
    for entry in std::fs::read_dir(repo().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.ends_with(".cedar") && !without.contains(&name.as_str()) {
            files.insert(name, json!(std::fs::read_to_string(&path).unwrap()));
        }
    }
    for (name, text) in extra {
        files.insert(name.to_string(), json!(text));
    }
    Value::Object(files)
}

const NO_WEATHER: &str =
    "@id(\"no-weather\")\nforbid (principal, action, resource == Tool::\"weather.get\");\n";

/// Uploads the default pack plus the `no-weather` forbid as a draft.
async fn upload_no_weather(s: &TestServer) -> (u16, Value) {
    s.post(
        "/v1/policies",
        &admin(s),
        json!({"files": pack_files(&[("no_weather.cedar", NO_WEATHER)], &[])}),
    )
    .await
}

fn admin(s: &TestServer) -> String {
    s.token("pat", &["policy_admin"])
}

async fn fleet(s: &TestServer) {
    s.tool("weather.get", "low").await;
    s.agent("bot", "limited", &["weather.get"]).await;
}

async fn weather(s: &TestServer) -> Value {
    s.invoke(&s.token("bot", &[]), "weather.get", json!({}))
        .await
        .1
}

async fn ledger_types(s: &TestServer) -> Vec<Value> {
    let (_, page) = s
        .get("/v1/ledger/entries?start=0&end=1000", &s.admin())
        .await;
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entry"].clone())
        .collect()
}

#[tokio::test]
async fn an_upload_is_validated_and_a_draft_whose_tests_fail_cannot_be_activated() {
    let s = TestServer::start().await;
    let (_, before) = s.get("/v1/policies", &admin(&s)).await;
    assert_eq!(
        before["versions"].as_array().unwrap().len(),
        1,
        "the folder is version 1: {before}"
    );
    assert_eq!(before["versions"][0]["state"], "active");

    // Does not parse: 422 with file, line and column.
    let bad = pack_files(
        &[(
            "broken.cedar",
            "permit (principal, action, resource)\nwhen { principal.nope == };\n",
        )],
        &[],
    );
    let (status, body) = s
        .post("/v1/policies", &admin(&s), json!({"files": bad}))
        .await;
    assert_eq!(status, 422, "{body}");
    let diagnostic = &body["error"]["details"]["diagnostics"][0];
    assert_eq!(
        (diagnostic["file"].as_str(), diagnostic["line"].as_u64()),
        (Some("broken.cedar"), Some(2)),
        "{body}"
    );
    assert!(diagnostic["column"].as_u64().unwrap() > 1);
    // Parses but does not validate against the schema.
    let invalid = pack_files(
        &[(
            "typo.cedar",
            "forbid (principal is Agent, action, resource) when { principal.risk_teir == \"high\" };\n",
        )],
        &[],
    );
    let (status, body) = s
        .post("/v1/policies", &admin(&s), json!({"files": invalid}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["error"]["details"]["diagnostics"][0]["file"],
        "typo.cedar"
    );
    // Bad names, no role, unknown store.
    let (status, _) = s
        .post(
            "/v1/policies",
            &admin(&s),
            json!({"files": {"../x.cedar": "permit(principal, action, resource);"}}),
        )
        .await;
    assert_eq!(status, 422);
    let (status, _) = s
        .post(
            "/v1/policies",
            &s.admin(),
            json!({"files": pack_files(&[], &[])}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = s
        .post(
            "/v1/policies",
            &admin(&s),
            json!({"store": "nope", "files": pack_files(&[], &[])}),
        )
        .await;
    assert_eq!(status, 404);
    let (_, after) = s.get("/v1/policies", &admin(&s)).await;
    assert_eq!(after, before, "refused uploads change nothing");

    // Without the declared-tools permit the pack's tests fail: the draft is stored, not activated.
    let (status, draft) = s
        .post(
            "/v1/policies",
            &admin(&s),
            json!({"files": pack_files(&[], &["declared_tools.cedar"])}),
        )
        .await;
    assert_eq!(status, 201, "{draft}");
    assert_eq!(draft["state"], "draft");
    let id = draft["version"].as_str().unwrap();
    let (status, refused) = s
        .post(
            &format!("/v1/policies/{id}/activate"),
            &admin(&s),
            json!({}),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    let failures = refused["error"]["details"]["failures"].as_array().unwrap();
    assert!(
        failures
            .iter()
            .any(|f| f.as_str().unwrap().contains("default_pack.json")),
        "{refused}"
    );
    let entries = ledger_types(&s).await;
    let tested = entries
        .iter()
        .rfind(|e| e["type"] == "policy_tested")
        .unwrap();
    assert_eq!(
        (tested["version"].as_str(), tested["passed"].as_bool()),
        (Some(id), Some(false))
    );
    let (_, list) = s.get("/v1/policies", &admin(&s)).await;
    assert_eq!(list["versions"][0]["state"], "active");
    assert_eq!(list["versions"][1]["state"], "draft");
    // The same text again is the same version.
    let (status, again) = s
        .post(
            "/v1/policies",
            &admin(&s),
            json!({"files": pack_files(&[], &["declared_tools.cedar"])}),
        )
        .await;
    assert_eq!((status, again["version"].as_str()), (200, Some(id)));
}

#[tokio::test]
async fn activation_changes_answers_at_once_rollback_restores_them_and_both_survive_restarts() {
    let data = tempfile::tempdir().unwrap();
    let config = test_config(data.path(), None);
    let mut s = TestServer::with_config(data, config).await;
    fleet(&s).await;
    assert_eq!(weather(&s).await["decision"], "allow");
    let (_, list) = s.get("/v1/policies", &admin(&s)).await;
    let first = list["versions"][0]["version"].as_str().unwrap().to_owned();

    let (status, draft) = upload_no_weather(&s).await;
    assert_eq!(status, 201, "{draft}");
    let second = draft["version"].as_str().unwrap().to_owned();
    let (status, activated) = s
        .post(
            &format!("/v1/policies/{second}/activate"),
            &admin(&s),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{activated}");
    assert_eq!(activated["previous"], first.as_str());
    assert!(
        activated["test_checks"].as_u64().unwrap() > 1,
        "the pack's tests ran: {activated}"
    );
    let denied = weather(&s).await;
    assert_eq!(
        (denied["decision"].as_str(), policy_ids(&denied)),
        (Some("deny"), vec!["no-weather".to_owned()])
    );
    assert_eq!(denied["policy_digest"], draft["digest"]);

    // The activation survives a restart: the folder did not change, so the active version stays.
    s.restart().await;
    assert_eq!(weather(&s).await["decision"], "deny");

    // Rollback is one call.
    let (status, rolled) = s
        .post(
            &format!("/v1/policies/{first}/activate"),
            &admin(&s),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{rolled}");
    assert_eq!(rolled["previous"], second.as_str());
    assert_eq!(weather(&s).await["decision"], "allow");
    s.restart().await;
    assert_eq!(weather(&s).await["decision"], "allow");

    // Retire: not the active one; a retired one cannot come back.
    let (status, _) = s
        .post(
            &format!("/v1/policies/{first}/retire"),
            &admin(&s),
            json!({}),
        )
        .await;
    assert_eq!(status, 409);
    let (status, retired) = s
        .post(
            &format!("/v1/policies/{second}/retire"),
            &admin(&s),
            json!({}),
        )
        .await;
    assert_eq!((status, retired["state"].as_str()), (200, Some("retired")));
    let (status, _) = s
        .post(
            &format!("/v1/policies/{second}/activate"),
            &admin(&s),
            json!({}),
        )
        .await;
    assert_eq!(status, 409);
    let (_, detail) = s
        .get(
            &format!("/v1/policies/{second}"),
            &s.token("a", &["auditor"]),
        )
        .await;
    assert_eq!(detail["sources"]["no_weather.cedar"], NO_WEATHER);

    // Every step is in the ledger, which still verifies.
    let kinds: Vec<String> = ledger_types(&s)
        .await
        .iter()
        .filter(|e| {
            e["type"].as_str().unwrap().starts_with("policy_") && e["type"] != "policy_loaded"
        })
        .map(|e| {
            format!(
                "{} {}",
                e["type"].as_str().unwrap(),
                e["actor"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "policy_version_created startup",
            "policy_tested startup",
            "policy_activated startup",
            "policy_version_created pat",
            "policy_tested pat",
            "policy_activated pat",
            "policy_tested pat",
            "policy_activated pat",
            "policy_retired pat"
        ]
    );
    assert_eq!(codes(&weather(&s).await), ["policy"]);
    s.stop_and_verify_ledger().await;
}

#[tokio::test]
async fn each_store_has_its_own_versions() {
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(data.path(), None);
    config
        .stores
        .insert("todo".into(), repo().join("examples/authzen-todo"));
    let s = TestServer::with_config(data, config).await;
    let (_, todo) = s.get("/v1/policies?store=todo", &admin(&s)).await;
    assert_eq!(todo["versions"].as_array().unwrap().len(), 1);
    assert_eq!(todo["versions"][0]["store"], "todo");
    // Validated against the todo schema, not the agent one.
    let (status, body) = s
        .post("/v1/policies", &admin(&s), json!({"store": "todo", "files": {"all.cedar": "permit (principal is user, action, resource);"}}))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = s
        .post("/v1/policies", &admin(&s), json!({"store": "todo", "files": {"all.cedar": "permit (principal is Agent, action, resource);"}}))
        .await;
    assert_eq!(status, 422);
    let (status, activated) = s
        .post(
            &format!(
                "/v1/policies/{}/activate",
                body["version"].as_str().unwrap()
            ),
            &admin(&s),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{activated}");
    let (_, answer) = s
        .post("/stores/todo/access/v1/evaluation", &s.token("gw", &["pep"]),
              json!({"subject": {"type": "user", "id": "CiRmZDM2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"}, "action": {"name": "can_delete_todo"}, "resource": {"type": "todo", "id": "t"}}))
        .await;
    assert_eq!(
        answer["decision"], true,
        "the new version decides in its store: {answer}"
    );
    let (_, default) = s.get("/v1/policies", &admin(&s)).await;
    assert_eq!(
        default["versions"].as_array().unwrap().len(),
        1,
        "the default store is untouched"
    );
}

#[tokio::test]
async fn replay_reports_exactly_the_decisions_a_policy_change_would_change() {
    let s = TestServer::start().await;
    s.tool("weather.get", "low").await;
    s.tool("crm.note", "medium").await;
    s.agent("bot1", "limited", &["weather.get", "crm.note"])
        .await;
    s.agent("bot2", "limited", &["weather.get"]).await;
    let ask = |agent: &'static str, tool: &'static str| {
        let s = &s;
        async move { s.invoke(&s.token(agent, &[]), tool, json!({})).await.1 }
    };
    let mut weather_ids = Vec::new();
    for (agent, tool) in [
        ("bot1", "weather.get"),
        ("bot1", "crm.note"),
        ("bot2", "weather.get"),
        ("bot2", "crm.note"),
        ("bot1", "weather.get"),
    ] {
        let d = ask(agent, tool).await;
        if tool == "weather.get" {
            assert_eq!(d["decision"], "allow");
            weather_ids.push(d["decision_id"].as_str().unwrap().to_owned());
        }
    }
    // A kill-switch deny is not Cedar's: replay leaves it out.
    let (_, switch) = s
        .post(
            "/v1/killswitch",
            &s.token("op", &["operator"]),
            json!({"scope": {"agent": "bot1"}, "reason": "drill", "drill": true}),
        )
        .await;
    assert_eq!(codes(&ask("bot1", "crm.note").await), ["kill_switch"]);
    s.send(
        reqwest::Method::DELETE,
        &format!("/v1/killswitch/{}", switch["id"].as_str().unwrap()),
        Some(&s.token("op", &["operator"])),
        Some(&json!({"reason": "over"})),
    )
    .await;
    // After the run bot2 declares crm.note: replay must still see the registry as it was.
    s.agent("bot2", "limited", &["weather.get", "crm.note"])
        .await;

    let (_, draft) = upload_no_weather(&s).await;
    let id = draft["version"].as_str().unwrap().to_owned();
    let (status, report) = s
        .post(&format!("/v1/policies/{id}/replay"), &admin(&s), json!({}))
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["decisions"], 6, "{report}");
    assert_eq!(
        report["replayed"], 5,
        "the kill-switch deny is not replayed: {report}"
    );
    assert_eq!(
        (
            report["changed"].as_u64(),
            report["allow_to_deny"].as_u64(),
            report["deny_to_allow"].as_u64()
        ),
        (Some(3), Some(3), Some(0))
    );
    let mut changed: Vec<String> = report["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["decision_id"].as_str().unwrap().to_owned())
        .collect();
    changed.sort();
    weather_ids.sort();
    assert_eq!(changed, weather_ids, "exactly the weather decisions change");
    assert_eq!(report["examples"][0]["policy_ids"], json!(["no-weather"]));

    // The active pack replayed changes nothing: bot2's undeclared crm.note stays denied although
    // bot2 declares it now.
    let (_, list) = s.get("/v1/policies", &admin(&s)).await;
    let active = list["versions"][0]["version"].as_str().unwrap().to_owned();
    let (_, same) = s
        .post(
            &format!("/v1/policies/{active}/replay"),
            &admin(&s),
            json!({}),
        )
        .await;
    assert_eq!(same["changed"], 0, "{same}");

    // A period before the run holds nothing; a bad time is a 422 naming it.
    let (_, empty) = s
        .post(
            &format!("/v1/policies/{id}/replay"),
            &admin(&s),
            json!({"from": "2020-01-01T00:00:00Z", "to": "2020-02-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(empty["decisions"], 0);
    let (status, bad) = s
        .post(
            &format!("/v1/policies/{id}/replay"),
            &admin(&s),
            json!({"from": "soon"}),
        )
        .await;
    assert_eq!(
        (status, bad["error"]["field"].as_str()),
        (422, Some("from"))
    );

    // The CLI replays from the data dir, no server needed, with the same answer.
    let data = s.data.path().to_str().unwrap().to_owned();
    let out = crate::cli::run(s.on_database(&mut crate::cli::reins(&[
        "policy",
        "replay",
        &id,
        "--data-dir",
        &data,
    ])));
    assert!(out.status.success(), "{}", crate::cli::text(&out.stderr));
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (cli["changed"].as_u64(), cli["replayed"].as_u64()),
        (Some(3), Some(5))
    );
}

#[tokio::test]
async fn shadow_counts_disagreements_on_live_traffic_while_answers_follow_the_active_version() {
    let s = TestServer::start().await;
    s.tool("weather.get", "low").await;
    s.tool("crm.note", "medium").await;
    s.agent("bot", "limited", &["weather.get", "crm.note"])
        .await;
    let (_, draft) = upload_no_weather(&s).await;
    let id = draft["version"].as_str().unwrap().to_owned();
    let (status, _) = s
        .get(&format!("/v1/policies/{id}/shadow"), &admin(&s))
        .await;
    assert_eq!(status, 409, "not shadowed yet");
    let (status, shadowed) = s
        .post(&format!("/v1/policies/{id}/shadow"), &admin(&s), json!({}))
        .await;
    assert_eq!(
        (status, shadowed["state"].as_str()),
        (200, Some("shadow")),
        "{shadowed}"
    );

    let bot = s.token("bot", &[]);
    let mut weather = Vec::new();
    for _ in 0..3 {
        let (_, d) = s.invoke(&bot, "weather.get", json!({})).await;
        assert_eq!(d["decision"], "allow", "answers follow the active version");
        weather.push(d["decision_id"].clone());
    }
    let (_, crm) = s.invoke(&bot, "crm.note", json!({})).await;
    assert_eq!(crm["decision"], "allow");

    let (status, report) = s
        .get(
            &format!("/v1/policies/{id}/shadow"),
            &s.token("aud", &["auditor"]),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (
            report["evaluated"].as_u64(),
            report["disagreements"].as_u64(),
            report["allow_to_deny"].as_u64()
        ),
        (Some(4), Some(3), Some(3)),
        "{report}"
    );
    let examples: Vec<Value> = report["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["decision_id"].clone())
        .collect();
    assert_eq!(examples, weather);
    assert_eq!(
        report["examples"][0]["shadow_policy_ids"],
        json!(["no-weather"])
    );
    assert!(
        ledger_types(&s)
            .await
            .iter()
            .any(|e| e["type"] == "policy_shadowed" && e["version"] == id.as_str())
    );

    // Activating the shadow ends the shadowing; its answers now decide.
    let (status, _) = s
        .post(
            &format!("/v1/policies/{id}/activate"),
            &admin(&s),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .get(&format!("/v1/policies/{id}/shadow"), &admin(&s))
        .await;
    assert_eq!(status, 409);
    assert_eq!(
        s.invoke(&bot, "weather.get", json!({})).await.1["decision"],
        "deny"
    );
}

#[tokio::test]
async fn every_control_plane_action_needs_the_control_policys_permit() {
    let s = TestServer::start().await;
    fleet(&s).await;
    let nobody = s.token("mallory", &["auditor", "agent"]);
    let (_, list) = s.get("/v1/policies", &admin(&s)).await;
    let version = list["versions"][0]["version"].as_str().unwrap().to_owned();
    let size = s.ledger_size();
    let attempts: Vec<(reqwest::Method, String, Value)> = vec![
        (
            reqwest::Method::POST,
            "/v1/policies".into(),
            json!({"files": pack_files(&[], &[])}),
        ),
        (
            reqwest::Method::POST,
            format!("/v1/policies/{version}/activate"),
            json!({}),
        ),
        (
            reqwest::Method::POST,
            format!("/v1/policies/{version}/retire"),
            json!({}),
        ),
        (
            reqwest::Method::POST,
            format!("/v1/policies/{version}/shadow"),
            json!({}),
        ),
        (
            reqwest::Method::POST,
            "/v1/killswitch".into(),
            json!({"scope": {}, "reason": "x"}),
        ),
        (
            reqwest::Method::DELETE,
            "/v1/killswitch/k".into(),
            json!({"reason": "x"}),
        ),
        (
            reqwest::Method::POST,
            "/v1/approvals/a/grant".into(),
            json!({}),
        ),
        (
            reqwest::Method::POST,
            "/v1/approvals/a/deny".into(),
            json!({}),
        ),
        (
            reqwest::Method::POST,
            "/v1/agents/bot/attestations".into(),
            json!({"item": "art4-ai-literacy", "statement": "x"}),
        ),
        (
            reqwest::Method::PUT,
            "/v1/tools/t".into(),
            json!({"description": "x", "risk": "low", "category": "c"}),
        ),
    ];
    for (method, path, body) in attempts {
        let (status, answer) = s
            .send(method.clone(), &path, Some(&nobody), Some(&body))
            .await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("control policy"),
            "{answer}"
        );
    }
    // An export needs auditor, compliance officer or admin: this caller is an auditor, an agent is not.
    let (status, _) = s.get("/v1/audit-pack", &s.token("bot", &[])).await;
    assert_eq!(status, 403);
    assert_eq!(s.ledger_size(), size, "nothing refused was recorded");
}

#[tokio::test]
async fn the_control_policy_not_hard_coded_roles_decides() {
    // A deployment where operators run releases and policy admins only draft.
    let policies = tempfile::tempdir().unwrap();
    crate::harness::copy_dir(&repo().join("policies"), policies.path());
    let control = policies.path().join("control/control.cedar");
    let text = std::fs::read_to_string(&control).unwrap().replace(
        "action in [Action::\"policy.upload\", Action::\"policy.activate\", Action::\"policy.retire\", Action::\"policy.shadow\"]",
        "action in [Action::\"policy.upload\", Action::\"policy.shadow\"]",
    ) + "\n@id(\"operators-release\")\npermit (principal in Role::\"operator\", action == Action::\"policy.activate\", resource);\n";
    std::fs::write(&control, text).unwrap();
    let data = tempfile::tempdir().unwrap();
    let config = test_config(data.path(), Some(policies.path()));
    let s = TestServer::with_config(data, config).await;
    fleet(&s).await;

    let (status, draft) = upload_no_weather(&s).await;
    assert_eq!(status, 201, "{draft}");
    let id = draft["version"].as_str().unwrap();
    let (status, refused) = s
        .post(
            &format!("/v1/policies/{id}/activate"),
            &admin(&s),
            json!({}),
        )
        .await;
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("policy.activate")
    );
    let (status, activated) = s
        .post(
            &format!("/v1/policies/{id}/activate"),
            &s.token("olga", &["operator"]),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{activated}");
    let entries = ledger_types(&s).await;
    let last = entries
        .iter()
        .rfind(|e| e["type"] == "policy_activated")
        .unwrap();
    assert_eq!(last["actor"], "olga");
    // The control policy in force is recorded at start, with its digest.
    assert!(
        entries
            .iter()
            .any(|e| e["type"] == "policy_loaded" && e["store"] == "control")
    );
}

#[tokio::test]
async fn with_watch_an_edit_goes_through_the_gate_and_a_failing_edit_changes_nothing() {
    let policies = tempfile::tempdir().unwrap();
    crate::harness::copy_dir(&repo().join("policies"), policies.path());
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(data.path(), Some(policies.path()));
    config.watch = true;
    config.watch_interval = std::time::Duration::from_millis(100);
    let s = TestServer::with_config(data, config).await;
    fleet(&s).await;
    assert_eq!(weather(&s).await["decision"], "allow");
    // Let the watcher take its first look.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    // A good edit: validated, tested, active, with no restart.
    std::fs::write(policies.path().join("no_weather.cedar"), NO_WEATHER).unwrap();
    eventually("the edit becoming active", async || {
        weather(&s).await["decision"] == "deny"
    })
    .await;
    let (_, list) = s.get("/v1/policies", &admin(&s)).await;
    let versions = list["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(
        (
            versions[1]["author"].as_str(),
            versions[1]["state"].as_str()
        ),
        (Some("watch"), Some("active"))
    );

    // An edit that does not parse: refused, nothing stored, the active version stays.
    std::fs::write(
        policies.path().join("broken.cedar"),
        "permit (principal, action, resource) when {",
    )
    .unwrap();
    // A refused edit leaves nothing to poll for: give the watcher five turns to refuse it.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    std::fs::remove_file(policies.path().join("broken.cedar")).unwrap();
    // An edit whose tests fail (no declared-tools permit): tested, refused, the active version stays.
    let declared = std::fs::read_to_string(policies.path().join("declared_tools.cedar")).unwrap();
    std::fs::remove_file(policies.path().join("declared_tools.cedar")).unwrap();
    eventually("the failing test run being recorded", async || {
        ledger_types(&s)
            .await
            .iter()
            .any(|e| e["type"] == "policy_tested" && e["passed"] == false)
    })
    .await;
    assert_eq!(
        weather(&s).await["decision"],
        "deny",
        "still the last good version"
    );
    let (_, list) = s.get("/v1/policies", &admin(&s)).await;
    let states: Vec<&str> = list["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["draft", "active", "draft"], "{list}");
    std::fs::write(policies.path().join("declared_tools.cedar"), declared).unwrap();
}

#[tokio::test]
async fn an_activation_that_cannot_be_recorded_changes_nothing() {
    crate::sqlite_only!();
    let s = TestServer::start().await;
    fleet(&s).await;
    let (_, draft) = upload_no_weather(&s).await;
    let id = draft["version"].as_str().unwrap();
    // Storage refuses the state change (as a full disk would); reads still work.
    let pool =
        sqlx::SqlitePool::connect(&format!("sqlite://{}", s.config.database_path().display()))
            .await
            .unwrap();
    sqlx::query("CREATE TRIGGER refuse BEFORE UPDATE ON policy_versions BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        .execute(&pool)
        .await
        .unwrap();
    let size = s.ledger_size();
    let (status, body) = s
        .post(
            &format!("/v1/policies/{id}/activate"),
            &admin(&s),
            json!({}),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        weather(&s).await["decision"],
        "allow",
        "the active version still decides"
    );
    assert_eq!(
        s.ledger_size(),
        size + 1,
        "only the decision above was recorded: neither the test run nor the activation"
    );
    sqlx::query("DROP TRIGGER refuse")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (status, _) = s
        .post(
            &format!("/v1/policies/{id}/activate"),
            &admin(&s),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "the ledger carries on");
    assert_eq!(weather(&s).await["decision"], "deny");
}

/// Found by schemathesis: a replay whose body was `[null]` (an array, read by serde as the struct's
/// fields in order) answered 200.
#[tokio::test]
async fn a_replay_body_must_be_an_object() {
    let s = TestServer::start().await;
    let (_, versions) = s.get("/v1/policies", &admin(&s)).await;
    let version = versions["versions"][0]["version"]
        .as_str()
        .unwrap()
        .to_owned();
    for body in [json!([null]), json!(["2026-01-01T00:00:00Z"]), json!(null)] {
        let (status, answer) = s
            .post(
                &format!("/v1/policies/{version}/replay"),
                &admin(&s),
                body.clone(),
            )
            .await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_json", "{answer}");
    }
    let (status, answer) = s
        .post(
            &format!("/v1/policies/{version}/replay"),
            &admin(&s),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
}

/// A shadow version is asked the Cedar request built for the active one, so that request shows
/// what either reads: here the shadow alone reads `context.usage.agent_tool`, which the default
/// pack never reads (and so a decision under it alone is not shown).
#[tokio::test]
async fn a_shadow_sees_the_usage_it_reads_even_when_the_active_pack_does_not() {
    const TWO_PER_TOOL: &str = r#"
@id("two-per-tool")
@reason("rate_limited")
forbid (principal is Agent, action == Action::"invoke", resource is Tool)
when { context has usage && context.usage.agent_tool.calls_1m >= 2 };
"#;
    let s = TestServer::start().await;
    fleet(&s).await;
    let (status, draft) = s
        .post(
            "/v1/policies",
            &admin(&s),
            json!({"files": pack_files(&[("two_per_tool.cedar", TWO_PER_TOOL)], &[])}),
        )
        .await;
    assert_eq!(status, 201, "{draft}");
    let id = draft["version"].as_str().unwrap().to_owned();
    let (status, shadowed) = s
        .post(&format!("/v1/policies/{id}/shadow"), &admin(&s), json!({}))
        .await;
    assert_eq!(status, 200, "{shadowed}");
    for _ in 0..3 {
        assert_eq!(weather(&s).await["decision"], "allow");
    }
    let (_, report) = s
        .get(
            &format!("/v1/policies/{id}/shadow"),
            &s.token("aud", &["auditor"]),
        )
        .await;
    assert_eq!(
        (
            report["evaluated"].as_u64(),
            report["allow_to_deny"].as_u64()
        ),
        (Some(3), Some(1)),
        "the third call is the shadow's third on the tool: {report}"
    );
    assert_eq!(
        report["examples"][0]["shadow_policy_ids"],
        json!(["two-per-tool"]),
        "{report}"
    );
}
