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
    // The entry writes the counts as [1m, 1h, 24h]: half the bytes on every decision.
    let index = denied["ledger"]["index"].as_u64().unwrap();
    let (_, entry) = s
        .get(&format!("/v1/ledger/entries/{index}"), &auditor)
        .await;
    assert_eq!(
        entry["entry"]["usage"]["agent"],
        json!([10, 10, 10]),
        "{entry}"
    );

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
    // A meter that points nowhere is refused, naming the field.
    let (status, body) = s
        .put(
            "/v1/tools/pay.bad",
            &s.admin(),
            json!({"description": "x", "risk": "low", "category": "payments",
                   "metered": {"amount": "amount", "minor_units": 2}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("metered"), "{body}");
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
async fn with_counting_off_policies_see_no_usage_and_nothing_is_counted() {
    let (mut s, _clock, _pack) = server(&[("ten.cedar", TEN_A_MINUTE)]).await;
    s.config.usage.enabled = false;
    s.restart().await;
    s.tool("search.web", "low").await;
    s.agent("bot", "limited", &["search.web"]).await;
    let bot = s.token("bot", &[]);
    let auditor = s.token("aud", &["auditor"]);
    for i in 0..12 {
        let d = decide(&s, &bot, call("search.web", json!({"q": i}), Some("s-1"))).await;
        assert_eq!(
            d["decision"], "allow",
            "call {i}: a limit that reads no usage never applies: {d}"
        );
        let id = d["decision_id"].as_str().unwrap();
        let (_, record) = s.get(&format!("/v1/decisions/{id}"), &auditor).await;
        assert!(record.get("usage").is_none(), "{record}");
    }
    // Turned on, counting starts from zero: the calls made while it was off were never counted.
    s.config.usage.enabled = true;
    s.restart().await;
    for i in 0..10 {
        let d = decide(&s, &bot, call("search.web", json!({"q": i}), None)).await;
        assert_eq!(d["decision"], "allow", "call {i}: {d}");
    }
    let d = decide(&s, &bot, call("search.web", json!({}), None)).await;
    assert_eq!(codes(&d), ["rate_limited"], "{d}");
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
    // The third loop trips it (engaged off the decision path, at once): the agent's calls, of
    // any tool, meet the switch.
    crate::harness::eventually("the tripwire's switch", async || {
        let d = decide(&s, &bot, call("search.web", json!({}), Some("s-2"))).await;
        codes(&d) == ["kill_switch"]
    })
    .await;
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
    // (That kill-switch denies never feed a tripwire is tripwires::tests': a rule counting any
    // deny would trip on them; this one counts only loop_detected.)
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

#[tokio::test]
async fn tripwire_and_webhook_settings_that_cannot_work_are_refused_at_start() {
    let secret = tempfile::NamedTempFile::new().unwrap();
    let hook = |extra: &str| {
        format!(
            "[[webhooks]]\nname = \"ops\"\nsecret_file = \"{}\"\n{extra}\n",
            secret.path().display()
        )
    };
    for (text, expected) in [
        ("[[tripwires]]\nname = \"x\"\ncount = 0\nwithin = \"1m\"\n".to_owned(), "count must be at least 1"),
        ("[[tripwires]]\nname = \"x\"\ncount = 1\nwithin = \"2days\"\n".to_owned(), "at most 24h"),
        ("[[tripwires]]\nname = \"x\"\ncount = 1\nwithin = \"1m\"\nreasons = [\"kill_switch\"]\n".to_owned(), "kill_switch"),
        ("[[tripwires]]\nname = \"x\"\ncount = 1\nwithin = \"1m\"\n[[tripwires]]\nname = \"x\"\ncount = 2\nwithin = \"1m\"\n".to_owned(), "names two"),
        (hook("url = \"ftp://x\"\nevents = [\"policy_activated\"]"), "url must be http(s)"),
        (hook("url = \"http://x\"\nevents = [\"decision\"]"), "`decision` is not one of"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reins.toml");
        std::fs::write(&path, &text).unwrap();
        let error = reins::config::Config::load(Some(&path), &Default::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{text}: {error}");
    }
    // Codes and risks are checked against the model when the server starts.
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(data.path(), None);
    config.tripwires = vec![
        serde_json::from_value(json!({
            "name": "x", "count": 1, "within": "1m", "reasons": ["too_many"]
        }))
        .unwrap(),
    ];
    let error = reins::server::start(config)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("`too_many` is not a reason code"), "{error}");
}

/// What a local webhook receiver got: each request's headers and body. It answers 500 to the
/// first request (the sender must retry) and 200 after.
#[derive(Clone, Default)]
struct Received(std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, String)>>>);

async fn receiver() -> (String, Received) {
    let received = Received::default();
    let kept = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: String| async move {
                let mut all = kept.0.lock().unwrap();
                all.push((headers, body));
                if all.len() == 1 {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::OK
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), received)
}

#[tokio::test]
async fn a_tripwire_trip_reaches_a_webhook_signed_retried_and_visible() {
    let (url, received) = receiver().await;
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(data.path(), None);
    config.tripwires = vec![
        serde_json::from_value(json!({
            "name": "looping", "count": 1, "within": "1h", "reasons": ["loop_detected"],
        }))
        .unwrap(),
    ];
    config.webhooks = vec![
        serde_json::from_value(json!({
            "name": "ops", "url": url, "events": ["killswitch_engaged"],
            "secret_file": secret.path(), "backoff": "50ms",
        }))
        .unwrap(),
    ];
    let s = TestServer::with_config(data, config).await;
    s.tool("crm.note", "medium").await;
    s.agent("bot", "limited", &["crm.note"]).await;
    let bot = s.token("bot", &[]);
    for _ in 0..5 {
        decide(
            &s,
            &bot,
            call("crm.note", json!({"text": "again"}), Some("s-1")),
        )
        .await;
    }
    for _ in 0..200 {
        if received.0.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, deliveries) = s
        .get("/v1/webhooks/deliveries", &s.token("op", &["operator"]))
        .await;
    let (_, switches) = s.get("/v1/killswitch", &s.token("op", &["operator"])).await;
    assert!(
        received.0.lock().unwrap().len() >= 2,
        "the webhook, retried once, did not arrive: {deliveries} (switches: {switches}, ledger size {})",
        s.ledger_size()
    );
    let (headers, body) = received.0.lock().unwrap()[1].clone();
    let header = |name: &str| headers[name].to_str().unwrap().to_owned();
    // The receiver's check, as docs/guardrails.md shows it.
    let key = reins::webhooks::signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    let timestamp: i64 = header("webhook-timestamp").parse().unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let check = |body: &str, signature: &str| {
        reins::webhooks::verify(
            &key,
            &header("webhook-id"),
            timestamp,
            signature,
            body.as_bytes(),
            now,
            300,
        )
    };
    assert!(check(&body, &header("webhook-signature")), "{body}");
    // A tampered body or signature is refused.
    assert!(!check(
        &body.replace("bot", "bob"),
        &header("webhook-signature")
    ));
    assert!(!check(
        &body,
        &header("webhook-signature").replace("v1,", "v1,A")
    ));
    // Both attempts carried the same id: a receiver can drop a repeat.
    assert_eq!(
        received.0.lock().unwrap()[0].0["webhook-id"],
        header("webhook-id")
    );
    let message: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(message["type"], "killswitch_engaged");
    assert_eq!(message["data"]["entry"]["scope"], json!({"agent": "bot"}));
    let text = message["text"].as_str().unwrap();
    assert!(
        text.contains("agent bot") && text.contains("tripwire:looping"),
        "{text}"
    );
    // The delivery's state is visible.
    let (status, deliveries) = s
        .get("/v1/webhooks/deliveries", &s.token("op", &["operator"]))
        .await;
    assert_eq!(status, 200, "{deliveries}");
    let hook = &deliveries["webhooks"][0];
    assert_eq!(hook["name"], "ops");
    assert_eq!(hook["deliveries"][0]["state"], "delivered", "{deliveries}");
    assert_eq!(hook["deliveries"][0]["attempts"], 2, "{deliveries}");
    assert_eq!(hook["deliveries"][0]["last_status"], 200);
    let (status, _) = s.get("/v1/webhooks/deliveries", &s.token("bot", &[])).await;
    assert_eq!(status, 403);
}
