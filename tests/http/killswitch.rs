//! The kill switch: engaged, the very next decision in scope is denied, whatever the policies say.

use serde_json::{Value, json};

use crate::cli::{reins, run, text};
use crate::harness::{TestServer, codes};

async fn fleet(s: &TestServer) {
    s.tool("search.web", "low").await;
    s.tool("crm.update", "medium").await;
    s.agent("bot", "limited", &["search.web", "crm.update"])
        .await;
    s.agent("other", "limited", &["search.web", "crm.update"])
        .await;
}

fn operator(s: &TestServer) -> String {
    s.token("oncall", &["operator"])
}

async fn engage(s: &TestServer, scope: Value) -> Value {
    let (status, switch) = s
        .post(
            "/v1/killswitch",
            &operator(s),
            json!({"scope": scope, "reason": "incident 42"}),
        )
        .await;
    assert_eq!(status, 201, "{switch}");
    switch
}

async fn release(s: &TestServer, id: &str) {
    let (status, body) = s
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/killswitch/{id}"),
            Some(&operator(s)),
            Some(&json!({"reason": "resolved"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// The outcome for (agent, tool) pairs; "kill" when denied by a switch.
async fn outcomes(s: &TestServer) -> Vec<String> {
    let mut out = Vec::new();
    for (agent, tool) in [
        ("bot", "search.web"),
        ("bot", "crm.update"),
        ("other", "search.web"),
        ("other", "crm.update"),
    ] {
        let (_, d) = s.invoke(&s.token(agent, &[]), tool, json!({})).await;
        out.push(if codes(&d) == ["kill_switch"] {
            "kill".into()
        } else {
            d["decision"].as_str().unwrap().to_owned()
        });
    }
    out
}

#[tokio::test]
async fn each_scope_stops_exactly_what_it_covers_and_release_restores() {
    let s = TestServer::start().await;
    fleet(&s).await;
    assert_eq!(outcomes(&s).await, ["allow", "allow", "allow", "allow"]);
    let cases = [
        (json!({}), ["kill", "kill", "kill", "kill"]),
        (json!({"agent": "bot"}), ["kill", "kill", "allow", "allow"]),
        (
            json!({"tool": "crm.update"}),
            ["allow", "kill", "allow", "kill"],
        ),
        (
            json!({"action": "invoke"}),
            ["kill", "kill", "kill", "kill"],
        ),
        (
            json!({"agent": "other", "tool": "search.web"}),
            ["allow", "allow", "kill", "allow"],
        ),
    ];
    for (scope, expected) in cases {
        let switch = engage(&s, scope.clone()).await;
        // The very next decision: no wait, no polling.
        let (_, d) = s
            .invoke(
                &s.token(
                    if scope["agent"] == "other" {
                        "other"
                    } else {
                        "bot"
                    },
                    &[],
                ),
                if scope["tool"].is_string() {
                    scope["tool"].as_str().unwrap()
                } else {
                    "search.web"
                },
                json!({}),
            )
            .await;
        assert_eq!(d["decision"], "deny", "{scope}: {d}");
        assert_eq!(d["reasons"][0]["killswitch_id"], switch["id"], "{d}");
        assert_eq!(d["reasons"][0]["message"], "incident 42");
        assert!(
            d["ledger"]["index"].is_u64(),
            "a kill-switch deny is recorded too: {d}"
        );
        assert_eq!(outcomes(&s).await, expected, "{scope}");
        release(&s, switch["id"].as_str().unwrap()).await;
        assert_eq!(
            outcomes(&s).await,
            ["allow", "allow", "allow", "allow"],
            "after releasing {scope}"
        );
    }
}

#[tokio::test]
async fn no_policy_gets_past_it_and_it_survives_a_restart() {
    let pack = tempfile::tempdir().unwrap();
    std::fs::write(
        pack.path().join("open.cedar"),
        "@id(\"everything\") permit (principal, action, resource);",
    )
    .unwrap();
    let mut s = TestServer::with_policies(Some(pack.path())).await;
    fleet(&s).await;
    assert_eq!(
        s.invoke(&s.token("bot", &[]), "search.web", json!({}))
            .await
            .1["decision"],
        "allow"
    );
    let switch = engage(&s, json!({"agent": "bot"})).await;
    s.restart().await;
    let (_, d) = s
        .invoke(&s.token("bot", &[]), "search.web", json!({}))
        .await;
    assert_eq!(codes(&d), ["kill_switch"], "{d}");
    let (_, list) = s
        .get("/v1/killswitch", &s.token("auditor-1", &["auditor"]))
        .await;
    assert_eq!(list["engaged"][0]["id"], switch["id"]);
    assert_eq!(list["engaged"][0]["engaged_by"], "oncall");
    release(&s, switch["id"].as_str().unwrap()).await;
    s.restart().await;
    assert_eq!(
        s.invoke(&s.token("bot", &[]), "search.web", json!({}))
            .await
            .1["decision"],
        "allow"
    );
    let (_, list) = s.get("/v1/killswitch", &operator(&s)).await;
    assert_eq!(list["engaged"], json!([]));
    assert_eq!(list["history"][0]["released_by"], "oncall");
    assert_eq!(list["history"][0]["release_reason"], "resolved");
}

#[tokio::test]
async fn engage_release_and_drills_are_ledger_entries_and_the_ledger_verifies() {
    let mut s = TestServer::start().await;
    fleet(&s).await;
    let (status, drill) = s
        .post(
            "/v1/killswitch",
            &operator(&s),
            json!({"scope": {"tool": "crm.update"}, "reason": "quarterly drill", "drill": true}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(drill["drill"], true);
    assert_eq!(
        codes(
            &s.invoke(&s.token("bot", &[]), "crm.update", json!({}))
                .await
                .1
        ),
        ["kill_switch"],
        "a drill really stops"
    );
    release(&s, drill["id"].as_str().unwrap()).await;

    let (_, page) = s
        .get("/v1/ledger/entries?start=0&end=100", &s.admin())
        .await;
    let events: Vec<&Value> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["type"].as_str().unwrap().starts_with("killswitch"))
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["type"], "killswitch_engaged");
    assert_eq!(
        (
            events[0]["actor"].as_str(),
            events[0]["reason"].as_str(),
            events[0]["drill"].as_bool()
        ),
        (Some("oncall"), Some("quarterly drill"), Some(true))
    );
    assert_eq!(events[0]["scope"], json!({"tool": "crm.update"}));
    assert_eq!(events[1]["type"], "killswitch_released");
    assert_eq!(events[1]["reason"], "resolved");

    s.stop_and_verify_ledger().await;
    s.restart().await;
}

#[tokio::test]
async fn only_operators_engage_and_bad_requests_change_nothing() {
    let s = TestServer::start().await;
    fleet(&s).await;
    for token in [
        s.admin(),
        s.token("bot", &[]),
        s.token("auditor-1", &["auditor"]),
    ] {
        let (status, _) = s
            .post("/v1/killswitch", &token, json!({"reason": "x"}))
            .await;
        assert_eq!(status, 403);
    }
    let op = operator(&s);
    let (status, e) = s
        .post("/v1/killswitch", &op, json!({"scope": {}, "reason": " "}))
        .await;
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (422, Some("reason")),
        "{e}"
    );
    let (status, e) = s
        .post(
            "/v1/killswitch",
            &op,
            json!({"scope": {"agnt": "bot"}, "reason": "x"}),
        )
        .await;
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (400, Some("scope.agnt")),
        "{e}"
    );
    let (status, e) = s
        .post(
            "/v1/killswitch",
            &op,
            json!({"scope": {"agent": "bad id!"}, "reason": "x"}),
        )
        .await;
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (400, Some("scope.agent")),
        "{e}"
    );
    let (_, list) = s.get("/v1/killswitch", &op).await;
    assert_eq!(list["history"], json!([]), "nothing was engaged");

    let switch = engage(&s, json!({})).await;
    let id = switch["id"].as_str().unwrap();
    assert_eq!(switch["state"], "engaged", "{switch}");
    let del = |id: String, token: String| {
        let s = &s;
        async move {
            s.send(
                reqwest::Method::DELETE,
                &format!("/v1/killswitch/{id}"),
                Some(&token),
                Some(&json!({"reason": "done"})),
            )
            .await
            .0
        }
    };
    assert_eq!(del(id.into(), s.admin()).await, 403);
    assert_eq!(del("no-such-switch".into(), op.clone()).await, 400);
    assert_eq!(
        del("0192e4a0-0000-7000-8000-000000000000".into(), op.clone()).await,
        404
    );
    assert_eq!(del(id.into(), op.clone()).await, 200);
    let (_, list) = s.get("/v1/killswitch", &op).await;
    assert_eq!(list["history"][0]["state"], "released", "{list}");
    assert_eq!(del(id.into(), op.clone()).await, 409);
}

// Multi-threaded: the CLI child is awaited synchronously while this process serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_engages_lists_and_releases() {
    let s = TestServer::start().await;
    fleet(&s).await;
    let op = operator(&s);
    let kill = |args: &[&str]| {
        run(reins(&[&["kill", "--url", &s.base][..], args].concat()).env("REINS_TOKEN", &op))
    };
    let out = kill(&["engage", "--agent", "bot", "--reason", "runaway loop"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let switch: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(
        codes(
            &s.invoke(&s.token("bot", &[]), "search.web", json!({}))
                .await
                .1
        ),
        ["kill_switch"]
    );
    let out = kill(&["status"]);
    let status: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(status["engaged"][0]["id"], switch["id"]);
    let out = kill(&[
        "release",
        switch["id"].as_str().unwrap(),
        "--reason",
        "fixed",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        s.invoke(&s.token("bot", &[]), "search.web", json!({}))
            .await
            .1["decision"],
        "allow"
    );
    let out = kill(&[
        "release",
        switch["id"].as_str().unwrap(),
        "--reason",
        "again",
    ]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("409"), "{}", text(&out.stderr));
    let out = run(&mut reins(&["kill", "--url", &s.base, "status"]));
    assert!(!out.status.success() && text(&out.stderr).contains("REINS_TOKEN"));
}

/// A typo in a scope stops nothing while the real agent runs on: refused unless forced.
#[tokio::test]
async fn a_scope_naming_an_unknown_id_is_refused_unless_forced() {
    let s = TestServer::start().await;
    fleet(&s).await;
    let op = operator(&s);
    for (scope, field) in [
        (json!({"agent": "b0t"}), "scope.agent"),
        (json!({"tool": "search.wbe"}), "scope.tool"),
        (json!({"agent": "bot", "action": "invok"}), "scope.action"),
    ] {
        let (status, body) = s
            .post(
                "/v1/killswitch",
                &op,
                json!({"scope": scope, "reason": "typo"}),
            )
            .await;
        assert_eq!(
            (status, &body["error"]["field"]),
            (422, &json!(field)),
            "{body}"
        );
        assert!(body.to_string().contains("force"), "{body}");
    }
    let (_, list) = s.get("/v1/killswitch", &op).await;
    assert_eq!(list["history"], json!([]), "nothing was engaged");
    let (status, body) = s
        .post(
            "/v1/killswitch",
            &op,
            json!({"scope": {"agent": "next-bot"}, "reason": "before it is registered", "force": true}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

// Multi-threaded: the CLI child is awaited synchronously while this process serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_confirms_global_engagements_releases_by_prefix_and_lists_once() {
    let s = TestServer::start().await;
    fleet(&s).await;
    let op = operator(&s);
    let kill = |args: &[&str]| {
        run(reins(&[&["kill", "--url", &s.base][..], args].concat())
            .env("REINS_TOKEN", &op)
            .stdin(std::process::Stdio::null()))
    };
    // Global without --yes and without a terminal to ask on: refused, nothing engaged.
    let out = kill(&["engage", "--reason", "everything"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--yes"), "{}", text(&out.stderr));
    let out = kill(&["engage", "--agent", "b0t", "--reason", "typo"]);
    assert!(!out.status.success() && text(&out.stderr).contains("not registered"));
    let out = kill(&["engage", "--yes", "--reason", "everything"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let global: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    let out = kill(&["engage", "--agent", "bot", "--reason", "loop"]);
    let bot: Value = serde_json::from_str(&text(&out.stdout)).unwrap();

    // Released by a prefix, once it is unambiguous.
    let id = bot["id"].as_str().unwrap();
    let out = kill(&["release", &id[..3], "--reason", "fixed"]);
    assert!(
        text(&out.stderr).contains("at least 4"),
        "{}",
        text(&out.stderr)
    );
    let common = id
        .chars()
        .zip(global["id"].as_str().unwrap().chars())
        .take_while(|(a, b)| a == b)
        .count();
    if common >= 4 {
        let out = kill(&["release", &id[..common], "--reason", "fixed"]);
        assert!(
            text(&out.stderr).contains("ambiguous"),
            "{}",
            text(&out.stderr)
        );
    }
    let out = kill(&["release", &id[..common + 1], "--reason", "fixed"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let released: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(released["id"], bot["id"]);

    let out = kill(&["status"]);
    let status: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    let ids = |key: &str| -> Vec<Value> {
        status[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].clone())
            .collect()
    };
    assert_eq!(ids("engaged"), [global["id"].clone()], "{status}");
    assert_eq!(ids("released"), [bot["id"].clone()], "{status}");

    // A reader that goes away early is no crash.
    let mut child = reins(&["kill", "--url", &s.base, "status"])
        .env("REINS_TOKEN", &op)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{}",
        text(&out.stderr)
    );
}
