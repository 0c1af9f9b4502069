//! Tool arguments as LLMs write them: floats, nulls, numbers past Long. They reach Cedar by one
//! mapping (`policy::json`) in decisions, AuthZEN and policy tests, and the ledger keeps the
//! request exactly as sent.

use serde_json::{Value, json};

use crate::harness::{TestServer, codes, pack_with, repo, test_config};

/// The default schema with a `decimal` argument, and a policy capping it.
async fn priced() -> TestServer {
    let schema_dir = tempfile::tempdir().unwrap();
    let schema = std::fs::read_to_string(repo().join("schemas/reins.cedarschema"))
        .unwrap()
        .replace(
            "  recipient?: String,",
            "  recipient?: String,\n  price?: decimal,",
        );
    let schema_file = schema_dir.path().join("reins.cedarschema");
    std::fs::write(&schema_file, schema).unwrap();
    let policies = pack_with(&[(
        "price_cap.cedar",
        r#"@id("price-cap")
forbid (principal is Agent, action == Action::"invoke", resource is Tool)
when { context.args has price && context.args.price.greaterThan(decimal("100.0")) };"#,
    )]);
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(data.path(), Some(policies.path()));
    config.schema_file = schema_file;
    let s = TestServer::with_config(data, config).await;
    std::mem::forget((schema_dir, policies));
    s.tool("shop.buy", "low").await;
    s.agent("bot", "limited", &["shop.buy"]).await;
    s
}

#[tokio::test]
async fn floats_and_nulls_are_decided_and_recorded_as_sent() {
    let s = priced().await;
    let bot = s.token("bot", &[]);
    let args = json!({
        "price": 99.5,
        "note": null,
        "options": {"gift": null, "weights": [null, 1.25, 3]},
        "tiny": 1e-9,
        "huge": 1e300,
        "big": 9007199254740993u64,
        "negative": -0.5,
    });
    let (status, d) = s.invoke(&bot, "shop.buy", args.clone()).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["decision"], "allow", "{d}");

    // The entry holds the arguments as the agent wrote them, nulls and floats included, in
    // RFC 8785 form: numbers as IEEE doubles, so an integer past 2^53 is recorded as the
    // double nearest to it (README says so; send such ids as strings).
    let index = d["ledger"]["index"].as_u64().unwrap();
    let (_, entry) = s
        .get(&format!("/v1/ledger/entries/{index}"), &s.admin())
        .await;
    let mut recorded = entry["entry"]["context"]["args"].clone();
    assert_eq!(recorded["big"].as_u64(), Some(9007199254740992), "{entry}");
    recorded["big"] = args["big"].clone();
    assert_eq!(recorded, args, "{entry}");
    let (_, stored) = s
        .get(
            &format!("/v1/decisions/{}", d["decision_id"].as_str().unwrap()),
            &s.admin(),
        )
        .await;
    assert_eq!(
        stored["request"]["context"]["args"]["note"],
        Value::Null,
        "{stored}"
    );
    assert_eq!(
        stored["request"]["context"]["args"]["price"],
        json!(99.5),
        "{stored}"
    );
}

#[tokio::test]
async fn policies_compare_fractional_amounts_as_decimals() {
    let s = priced().await;
    let bot = s.token("bot", &[]);
    for (price, expected) in [
        (json!(99.99), "allow"),
        (json!(100.0), "allow"),
        (json!(100.0001), "deny"),
        (json!(150.25), "deny"),
        (json!(1e3), "deny"),
        (json!(null), "allow"),
    ] {
        let (status, d) = s.invoke(&bot, "shop.buy", json!({ "price": price })).await;
        assert_eq!(status, 200, "{d}");
        assert_eq!(d["decision"], expected, "price {price}: {d}");
        if expected == "deny" {
            assert_eq!(d["reasons"][0]["policy_id"], "price-cap", "{d}");
        }
    }
    // More digits than a decimal holds: the value is text, the comparison an error, the
    // answer a deny (never a silently rounded allow).
    let (_, d) = s
        .invoke(&bot, "shop.buy", json!({"price": 100.00001}))
        .await;
    assert_eq!(codes(&d), ["policy_error"], "{d}");
}

#[tokio::test]
async fn authzen_maps_arguments_the_same_way() {
    let s = priced().await;
    let pep = s.token("gateway", &["pep"]);
    let ask = |args: Value| {
        json!({"subject": {"type": "Agent", "id": "bot"}, "action": {"name": "invoke"},
               "resource": {"type": "Tool", "id": "shop.buy"}, "context": {"args": args}})
    };
    let (status, a) = s
        .post(
            "/access/v1/evaluation",
            &pep,
            ask(json!({"price": 12.5, "note": null})),
        )
        .await;
    assert_eq!((status, &a["decision"]), (200, &json!(true)), "{a}");
    let (_, a) = s
        .post("/access/v1/evaluation", &pep, ask(json!({"price": 120.5})))
        .await;
    assert_eq!(a["decision"], false, "{a}");
    assert_eq!(a["context"]["reasons"][0]["policy_id"], "price-cap", "{a}");
}

#[tokio::test]
async fn the_default_pack_takes_llm_arguments_without_a_400() {
    let s = TestServer::start().await;
    s.tool("search.web", "low").await;
    s.agent("bot", "limited", &["search.web"]).await;
    let bot = s.token("bot", &[]);
    let (status, d) = s
        .invoke(
            &bot,
            "search.web",
            json!({"query": "rust", "limit": null, "score": 0.75}),
        )
        .await;
    assert_eq!(
        (status, d["decision"].as_str()),
        (200, Some("allow")),
        "{d}"
    );
    // The default pack's `amount` is a Long in minor units: a fractional amount cannot be
    // compared with its cap, and is refused rather than guessed at.
    let (status, d) = s.invoke(&bot, "search.web", json!({"amount": 50.5})).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(codes(&d), ["policy_error"], "{d}");
    let (_, d) = s.invoke(&bot, "search.web", json!({"amount": null})).await;
    assert_eq!(d["decision"], "allow", "a null amount is no amount: {d}");
}
