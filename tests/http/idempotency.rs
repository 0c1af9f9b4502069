//! `Idempotency-Key`: a retried decision is answered from the record, never recorded twice.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{TestServer, eventually, test_config};

async fn fleet(s: &TestServer) {
    s.tool("search.web", "low").await;
    s.agent("bot", "limited", &["search.web"]).await;
    s.agent("other-bot", "limited", &["search.web"]).await;
}

fn ask(query: &str) -> Value {
    json!({"action": "invoke", "resource": {"type": "Tool", "id": "search.web"},
           "context": {"args": {"query": query, "limit": null, "score": 0.5}}})
}

/// POSTs with an `Idempotency-Key`: status, `Idempotent-Replayed`, body (JSON or text).
async fn post_keyed(
    s: &TestServer,
    path: &str,
    token: &str,
    key: &str,
    body: &Value,
) -> (u16, bool, Value) {
    let response = s
        .client
        .post(s.url(path))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, replayed, body)
}

#[tokio::test]
async fn a_retry_gets_the_recorded_decision_and_a_changed_request_a_conflict() {
    let mut s = TestServer::start().await;
    fleet(&s).await;
    let bot = s.token("bot", &[]);
    let size = s.ledger_size();
    let (status, replayed, first) =
        post_keyed(&s, "/v1/decisions", &bot, "k-1", &ask("rust")).await;
    assert_eq!((status, replayed), (200, false), "{first}");
    let (status, replayed, again) =
        post_keyed(&s, "/v1/decisions", &bot, "k-1", &ask("rust")).await;
    assert_eq!((status, replayed), (200, true), "{again}");
    assert_eq!(again, first, "the very answer, ledger index included");
    assert_eq!(s.ledger_size(), size + 1, "recorded once");

    // The same key with another request: a conflict, nothing recorded.
    let (status, _, conflict) = post_keyed(&s, "/v1/decisions", &bot, "k-1", &ask("go")).await;
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(conflict["error"]["code"], "idempotency_conflict");
    assert_eq!(s.ledger_size(), size + 1);

    // Keys belong to the agent that sent them.
    let other = s.token("other-bot", &[]);
    let (status, replayed, theirs) =
        post_keyed(&s, "/v1/decisions", &other, "k-1", &ask("go")).await;
    assert_eq!((status, replayed), (200, false), "{theirs}");
    assert_ne!(theirs["decision_id"], first["decision_id"]);

    // The key is kept with the decision: a retry after a restart still finds it.
    s.restart().await;
    let bot = s.token("bot", &[]);
    let (status, replayed, after) =
        post_keyed(&s, "/v1/decisions", &bot, "k-1", &ask("rust")).await;
    assert_eq!((status, replayed), (200, true), "{after}");
    assert_eq!(after["decision_id"], first["decision_id"]);
    assert_eq!(after["ledger"], first["ledger"]);

    // A malformed key is refused before anything is decided.
    let size = s.ledger_size();
    let (status, _, bad) = post_keyed(&s, "/v1/decisions", &bot, "has space", &ask("x")).await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["error"]["code"], "invalid_idempotency_key");
    assert_eq!(s.ledger_size(), size);
}

#[tokio::test]
async fn concurrent_retries_are_recorded_once() {
    let s = TestServer::start().await;
    fleet(&s).await;
    let bot = s.token("bot", &[]);
    let size = s.ledger_size();
    let body = ask("rust");
    let answers = futures::future::join_all(
        (0..8).map(|_| post_keyed(&s, "/v1/decisions", &bot, "burst", &body)),
    )
    .await;
    let ids: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|(status, _, d)| {
            assert_eq!(*status, 200, "{d}");
            d["decision_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    assert_eq!(
        answers.iter().filter(|(_, replayed, _)| !replayed).count(),
        1
    );
    assert_eq!(s.ledger_size(), size + 1);
}

#[tokio::test]
async fn a_key_lasts_for_the_window() {
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(data.path(), None);
    config.idempotency_window = Duration::from_millis(300);
    let s = TestServer::with_config(data, config).await;
    fleet(&s).await;
    let bot = s.token("bot", &[]);
    let (_, _, first) = post_keyed(&s, "/v1/decisions", &bot, "short", &ask("rust")).await;
    eventually("the key's window passing", async || {
        let (_, replayed, d) = post_keyed(&s, "/v1/decisions", &bot, "short", &ask("rust")).await;
        !replayed && d["decision_id"] != first["decision_id"]
    })
    .await;
}

#[tokio::test]
async fn authzen_evaluations_take_the_key_too() {
    let s = TestServer::start().await;
    fleet(&s).await;
    let pep = s.token("gateway", &["pep"]);
    let ask = |query: &str| {
        json!({"subject": {"type": "Agent", "id": "bot"}, "action": {"name": "invoke"},
               "resource": {"type": "Tool", "id": "search.web"},
               "context": {"args": {"query": query, "n": 1.5}}})
    };
    let size = s.ledger_size();
    let (status, replayed, first) =
        post_keyed(&s, "/access/v1/evaluation", &pep, "az-1", &ask("rust")).await;
    assert_eq!(
        (status, replayed, &first["decision"]),
        (200, false, &json!(true)),
        "{first}"
    );
    let (status, replayed, again) =
        post_keyed(&s, "/access/v1/evaluation", &pep, "az-1", &ask("rust")).await;
    assert_eq!((status, replayed), (200, true), "{again}");
    assert_eq!(
        again["context"]["decision_id"],
        first["context"]["decision_id"]
    );
    assert_eq!(s.ledger_size(), size + 1);
    let (status, _, conflict) =
        post_keyed(&s, "/access/v1/evaluation", &pep, "az-1", &ask("go")).await;
    assert_eq!(status, 409);
    assert!(
        conflict.as_str().unwrap().contains("az-1"),
        "plain text: {conflict}"
    );
    let (status, _, bad) =
        post_keyed(&s, "/access/v1/evaluation", &pep, "two words", &ask("rust")).await;
    assert_eq!(status, 400);
    assert!(
        bad.as_str().unwrap().contains("Idempotency-Key"),
        "plain text: {bad}"
    );
    assert_eq!(s.ledger_size(), size + 1, "nothing refused was recorded");
}
