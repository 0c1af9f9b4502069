//! Stateful guardrails written as policy: a rate limit, a spend cap across agents, a loop breaker,
//! each answered with its reason code, and replay with the counts the decisions saw. Windows pass
//! on a manual clock, never a sleep.
use std::time::Duration;

use reins::usage::Clock;
use serde_json::{Value, json};

use crate::harness::{TestServer, codes, pack_with, test_config};

const TEN_A_MINUTE: &str = r#"
@id("ten-a-minute")
@reason("rate_limited")
@retry("agent.calls_1m")
forbid (principal is Agent, action == Action::"invoke", resource is Tool)
when { context has usage && context.usage.agent.calls_1m >= 10 };
"#;

/// A server on `extra` policies besides the default pack, on a clock the test moves.
async fn server(extra: &[(&str, &str)]) -> (TestServer, Clock, tempfile::TempDir) {
    let pack = pack_with(extra);
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(data.path(), Some(pack.path()));
    let clock = Clock::manual();
    config.clock = clock.clone();
    (TestServer::with_config(data, config).await, clock, pack)
}

async fn decide(s: &TestServer, token: &str, body: Value) -> Value {
    let (status, decision) = s.post("/v1/decisions", token, body).await;
    assert_eq!(status, 200, "{decision}");
    decision
}

fn call(tool: &str, args: Value, session: Option<&str>) -> Value {
    let mut body = json!({"action": "invoke", "resource": {"type": "Tool", "id": tool}, "context": {"args": args}});
    if let Some(s) = session {
        body["session_id"] = json!(s);
    }
    body
}

#[tokio::test]
async fn the_eleventh_call_in_a_minute_is_rate_limited_until_the_window_passes() {
    let (s, clock, _pack) = server(&[("ten.cedar", TEN_A_MINUTE)]).await;
    s.tool("search.web", "low").await;
    s.agent("bot", "limited", &["search.web"]).await;
    s.agent("other", "limited", &["search.web"]).await;
    let bot = s.token("bot", &[]);
    for i in 0..10 {
        let d = decide(&s, &bot, call("search.web", json!({"q": i}), None)).await;
        assert_eq!(d["decision"], "allow", "call {i}: {d}");
        clock.advance(Duration::from_secs(1));
    }
    let denied = decide(&s, &bot, call("search.web", json!({"q": 10}), None)).await;
    assert_eq!(codes(&denied), ["rate_limited"], "{denied}");
    // The first call was 10 s ago; it leaves the minute (counted by the second) in 51 s.
    assert_eq!(denied["reasons"][0]["retry_after"], 51, "{denied}");
    // A denied call spent nothing, and another agent has its own count.
    let other = decide(
        &s,
        &s.token("other", &[]),
        call("search.web", json!({}), None),
    )
    .await;
    assert_eq!(other["decision"], "allow");
    // What the deny saw is in its record (and its ledger entry).
    let auditor = s.token("aud", &["auditor"]);
    let id = denied["decision_id"].as_str().unwrap();
    let (_, record) = s.get(&format!("/v1/decisions/{id}"), &auditor).await;
    assert_eq!(record["usage"]["agent"]["calls_1m"], 10, "{record}");
    assert!(record["usage"].get("counted").is_none(), "{record}");

    clock.advance(Duration::from_secs(50));
    let still = decide(&s, &bot, call("search.web", json!({}), None)).await;
    assert_eq!(codes(&still), ["rate_limited"], "one second early: {still}");
    assert_eq!(still["reasons"][0]["retry_after"], 1);
    clock.advance(Duration::from_secs(1));
    let again = decide(&s, &bot, call("search.web", json!({}), None)).await;
    assert_eq!(again["decision"], "allow", "{again}");
    // The hour still counts all eleven allowed calls.
    let (_, record) = s
        .get(
            &format!("/v1/decisions/{}", again["decision_id"].as_str().unwrap()),
            &auditor,
        )
        .await;
    assert_eq!(record["usage"]["agent"]["calls_1h"], 10, "{record}");
    assert_eq!(record["usage"]["agent"]["calls_1m"], 9, "{record}");
}

#[tokio::test]
async fn a_daily_spend_cap_holds_across_two_agents_acting_for_one_user() {
    let (s, clock, _pack) = server(&[]).await;
    let (status, body) = s
        .put(
            "/v1/tools/pay.out",
            &s.admin(),
            json!({"description": "pays out", "risk": "medium", "category": "payments",
                   "metered": {"amount": "/amount", "currency": "/currency", "minor_units": 2}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    s.agent("bot-a", "limited", &["pay.out"]).await;
    s.agent("bot-b", "limited", &["pay.out"]).await;
    let a = s.mint("bot-a", Some("alice"), &[]);
    let b = s.mint("bot-b", Some("alice"), &[]);
    let pay = |cents: i64, currency: &str| {
        call(
            "pay.out",
            json!({"amount": cents, "currency": currency}),
            None,
        )
    };
    // 1,000.00 + 999.99 = 1,999.99: under the cap of 2,000.00.
    assert_eq!(
        decide(&s, &a, pay(100_000, "EUR")).await["decision"],
        "allow"
    );
    assert_eq!(
        decide(&s, &b, pay(99_999, "EUR")).await["decision"],
        "allow"
    );
    // Two more cents would take alice's day to 2,000.01, whichever agent asks.
    let over = decide(&s, &b, pay(2, "EUR")).await;
    assert_eq!(codes(&over), ["budget_exceeded"], "{over}");
    assert!(over["reasons"][0]["retry_after"].as_u64().unwrap() > 23 * 3600);
    let (_, record) = s
        .get(
            &format!("/v1/decisions/{}", over["decision_id"].as_str().unwrap()),
            &s.token("aud", &["auditor"]),
        )
        .await;
    assert_eq!(
        record["usage"]["spend"]["user"]["spent_24h"], "1999.99",
        "{record}"
    );
    assert_eq!(record["usage"]["spend"]["user"]["after_24h"], "2000.01");
    assert_eq!(record["usage"]["spend"]["amount"], "0.02");
    // One cent fits; other currencies and other users have their own sums.
    assert_eq!(decide(&s, &a, pay(1, "EUR")).await["decision"], "allow");
    assert_eq!(
        decide(&s, &a, pay(100_000, "USD")).await["decision"],
        "allow"
    );
    let bob = s.mint("bot-a", Some("bob"), &[]);
    assert_eq!(
        decide(&s, &bob, pay(100_000, "EUR")).await["decision"],
        "allow"
    );
    // An amount the meter cannot read is refused, naming the argument, and counts nothing.
    let (status, body) = s
        .post(
            "/v1/decisions",
            &a,
            call(
                "pay.out",
                json!({"amount": "lots", "currency": "EUR"}),
                None,
            ),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("context.args.amount"), "{body}");
    // A day later the first payment has left the window.
    clock.advance(Duration::from_secs(24 * 3600 + 60));
    assert_eq!(
        decide(&s, &b, pay(100_000, "EUR")).await["decision"],
        "allow"
    );
}

#[tokio::test]
async fn the_loop_breaker_stops_a_repeated_call_in_one_session_only() {
    let (s, _clock, _pack) = server(&[]).await;
    s.tool("crm.note", "medium").await;
    s.agent("bot", "limited", &["crm.note"]).await;
    let bot = s.token("bot", &[]);
    for i in 0..4 {
        // Key order differs; the canonical arguments are the same.
        let args = if i % 2 == 0 {
            json!({"customer": "c-1", "text": "hello"})
        } else {
            json!({"text": "hello", "customer": "c-1"})
        };
        let d = decide(&s, &bot, call("crm.note", args, Some("s-1"))).await;
        assert_eq!(d["decision"], "allow", "call {i}: {d}");
    }
    let fifth = decide(
        &s,
        &bot,
        call(
            "crm.note",
            json!({"customer": "c-1", "text": "hello"}),
            Some("s-1"),
        ),
    )
    .await;
    assert_eq!(codes(&fifth), ["loop_detected"], "{fifth}");
    // Different arguments in the same session, or the same call in another session, pass.
    let varied = decide(
        &s,
        &bot,
        call(
            "crm.note",
            json!({"customer": "c-2", "text": "hello"}),
            Some("s-1"),
        ),
    )
    .await;
    assert_eq!(varied["decision"], "allow", "{varied}");
    let fresh = decide(
        &s,
        &bot,
        call(
            "crm.note",
            json!({"customer": "c-1", "text": "hello"}),
            Some("s-2"),
        ),
    )
    .await;
    assert_eq!(fresh["decision"], "allow", "{fresh}");
    // Without a session there is no session count.
    for _ in 0..6 {
        let d = decide(
            &s,
            &bot,
            call(
                "crm.note",
                json!({"customer": "c-1", "text": "hello"}),
                None,
            ),
        )
        .await;
        assert_eq!(d["decision"], "allow", "{d}");
    }
}

#[tokio::test]
async fn replay_sees_the_counts_each_decision_saw() {
    let (s, clock, _pack) = server(&[("ten.cedar", TEN_A_MINUTE)]).await;
    s.tool("search.web", "low").await;
    s.agent("bot", "limited", &["search.web"]).await;
    let bot = s.token("bot", &[]);
    let mut denied = 0;
    for i in 0..14 {
        let d = decide(&s, &bot, call("search.web", json!({"q": i}), None)).await;
        denied += usize::from(d["decision"] == "deny");
    }
    assert_eq!(denied, 4);
    // Later, today's counts are different (the minute has passed): replay must not use them.
    clock.advance(Duration::from_secs(120));
    let admin = s.token("pat", &["policy_admin"]);
    let (_, list) = s.get("/v1/policies", &admin).await;
    let active = list["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["state"] == "active")
        .unwrap_or_else(|| panic!("an active version: {list}"))["version"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, report) = s
        .post(&format!("/v1/policies/{active}/replay"), &admin, json!({}))
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["replayed"], 14, "{report}");
    assert_eq!(report["changed"], 0, "{report}");
}

#[tokio::test]
async fn usage_windows_survive_a_restart() {
    crate::sqlite_only!();
    let (mut s, _clock, _pack) = server(&[("ten.cedar", TEN_A_MINUTE)]).await;
    s.tool("search.web", "low").await;
    s.agent("bot", "limited", &["search.web"]).await;
    for i in 0..10 {
        let d = decide(
            &s,
            &s.token("bot", &[]),
            call("search.web", json!({"q": i}), None),
        )
        .await;
        assert_eq!(d["decision"], "allow");
    }
    // The rebuilt windows read the entries' own times, on the system clock.
    s.config.clock = Clock::System;
    s.restart().await;
    let d = decide(
        &s,
        &s.token("bot", &[]),
        call("search.web", json!({}), None),
    )
    .await;
    assert_eq!(
        codes(&d),
        ["rate_limited"],
        "a restart does not reset a limit: {d}"
    );
}

#[tokio::test]
async fn packs_naming_an_unknown_reason_or_counter_are_refused() {
    let s = TestServer::start().await;
    let admin = s.token("pat", &["policy_admin"]);
    for (text, expected) in [
        (
            "@id(\"x\")\n@reason(\"too_many\")\nforbid (principal, action, resource);\n",
            "too_many\\\") is not one of",
        ),
        (
            "@id(\"x\")\n@retry(\"agent.calls_2m\")\nforbid (principal, action, resource);\n",
            "agent.calls_2m\\\") names no windowed",
        ),
    ] {
        let mut files = serde_json::Map::new();
        files.insert("bad.cedar".into(), json!(text));
        let (status, body) = s
            .post("/v1/policies", &admin, json!({"files": files}))
            .await;
        assert_eq!(status, 422, "{body}");
        assert!(body.to_string().contains(expected), "{body}");
    }
}

/// A server whose config has `rules` as `[[tripwires]]`.
async fn with_tripwires(rules: Value) -> TestServer {
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(data.path(), None);
    config.tripwires = serde_json::from_value(rules).unwrap();
    TestServer::with_config(data, config).await
}

async fn switches(s: &TestServer) -> Value {
    let (status, list) = s.get("/v1/killswitch", &s.token("op", &["operator"])).await;
    assert_eq!(status, 200, "{list}");
    list
}

#[tokio::test]
async fn a_tripwire_switches_off_an_agent_stuck_in_a_loop_until_a_person_releases_it() {
    let s = with_tripwires(json!([{
        "name": "looping", "count": 3, "within": "1h", "reasons": ["loop_detected"],
    }]))
    .await;
    s.tool("crm.note", "medium").await;
    s.tool("search.web", "low").await;
    s.agent("bot", "limited", &["crm.note", "search.web"]).await;
    let bot = s.token("bot", &[]);
    let same = || call("crm.note", json!({"text": "again"}), Some("s-1"));
    for _ in 0..4 {
        assert_eq!(decide(&s, &bot, same()).await["decision"], "allow");
    }
    for i in 0..3 {
        let d = decide(&s, &bot, same()).await;
        assert_eq!(codes(&d), ["loop_detected"], "loop {i}: {d}");
    }
    // The third loop trips it: the agent's next call, of any tool, meets the switch.
    crate::harness::eventually("the tripwire's switch", async || {
        switches(&s).await["engaged"].as_array().unwrap().len() == 1
    })
    .await;
    let d = decide(&s, &bot, call("search.web", json!({}), Some("s-2"))).await;
    assert_eq!(codes(&d), ["kill_switch"], "{d}");
    let list = switches(&s).await;
    let switch = &list["engaged"][0];
    assert_eq!(switch["engaged_by"], "tripwire:looping", "{switch}");
    assert_eq!(switch["scope"], json!({"agent": "bot"}));
    assert!(
        switch["reason"]
            .as_str()
            .unwrap()
            .contains("3 denies within 1h"),
        "{switch}"
    );
    // The kill-switch denies do not feed the tripwire: still one switch.
    decide(&s, &bot, same()).await;
    assert_eq!(switches(&s).await["history"].as_array().unwrap().len(), 1);
    // A person releases it.
    let id = switch["id"].as_str().unwrap();
    let (status, body) = s
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/killswitch/{id}"),
            Some(&s.token("op", &["operator"])),
            Some(&json!({"reason": "loop fixed"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let d = decide(&s, &bot, call("search.web", json!({}), Some("s-3"))).await;
    assert_eq!(d["decision"], "allow", "{d}");
}

#[tokio::test]
async fn a_dry_run_tripwire_records_that_it_would_have_tripped_and_stops_nothing() {
    let s = with_tripwires(json!([{
        "name": "deny-storm", "count": 2, "within": "5m", "dry_run": true,
    }]))
    .await;
    s.tool("search.web", "low").await;
    s.tool("db.drop", "critical").await;
    s.agent("bot", "limited", &["search.web"]).await;
    let bot = s.token("bot", &[]);
    for _ in 0..2 {
        // Undeclared: denied by the pack.
        assert_eq!(
            decide(&s, &bot, call("db.drop", json!({}), None)).await["decision"],
            "deny"
        );
    }
    crate::harness::eventually("the dry-run entry", async || {
        let (_, page) = s
            .get("/v1/ledger/entries?start=0&end=100", &s.admin())
            .await;
        page["entries"].as_array().unwrap().iter().any(|e| {
            e["entry"]["type"] == "tripwire_would_trip"
                && e["entry"]["tripwire"] == "deny-storm"
                && e["entry"]["scope"] == json!({"agent": "bot"})
        })
    })
    .await;
    assert!(switches(&s).await["engaged"].as_array().unwrap().is_empty());
    assert_eq!(
        decide(&s, &bot, call("search.web", json!({}), None)).await["decision"],
        "allow"
    );
}

#[test]
fn tripwire_rules_that_cannot_work_are_refused_at_start() {
    for (rules, key) in [
        (
            json!([{"name": "x", "count": 0, "within": "1m"}]),
            "count must be at least 1",
        ),
        (
            json!([{"name": "x", "count": 1, "within": "2d"}]),
            "at most 24h",
        ),
        (
            json!([{"name": "x", "count": 1, "within": "1m", "reasons": ["kill_switch"]}]),
            "kill_switch",
        ),
        (
            json!([{"name": "x", "count": 1, "within": "1m"}, {"name": "x", "count": 2, "within": "1m"}]),
            "names two",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reins.toml");
        let rules: Vec<reins::tripwires::Rule> = serde_json::from_value(rules).unwrap();
        let mut text = String::new();
        for r in &rules {
            text.push_str(&format!(
                "[[tripwires]]\nname = \"{}\"\ncount = {}\nwithin = \"{}\"\nreasons = {:?}\n",
                r.name,
                r.count,
                humantime::format_duration(r.within),
                r.reasons.iter().map(|c| c.as_str()).collect::<Vec<_>>()
            ));
        }
        std::fs::write(&path, text).unwrap();
        let error = reins::config::Config::load(Some(&path), &Default::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains(key), "{error}");
    }
}
