//! Property tests (proptest) over everything that parses outside input: decision bodies through
//! the extractor and the pipeline's checks, policy uploads, bearer tokens, the ledger's tile
//! paths and proof queries, and the canonical JSON encoder against `serde_jcs`.
//!
//! Each runs a bounded number of cases: `PROPTEST_CASES` (default 128 here; CI sets it). A case
//! that fails is shrunk and its seed written to `tests/http/proptest-regressions/fuzz.txt`, kept
//! in the repository, and every later run replays those seeds first: a crash found once stays a
//! regression test.

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use serde_json::{Value, json};

use crate::harness::TestServer;

const REGRESSIONS: &str = "tests/http/proptest-regressions/fuzz.txt";

fn runner() -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(128);
    TestRunner::new(Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        ..Config::default()
    })
}

/// A server with an agent and two tools, on a runtime the synchronous runner can block on.
fn server() -> (tokio::runtime::Runtime, TestServer) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = rt.block_on(async {
        let s = TestServer::start().await;
        s.tool("search.web", "low").await;
        s.tool("payments.refund", "high").await;
        s.agent("bot", "limited", &["search.web", "payments.refund"])
            .await;
        s
    });
    (rt, s)
}

/// Strings that reach the corners: empty, escapes, controls, astral and private-use characters.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z._:@-]{0,12}",
        any::<String>(),
        prop::sample::select(vec![
            "".to_owned(),
            "..".to_owned(),
            "__entity".to_owned(),
            "__extn".to_owned(),
            "\u{0}".to_owned(),
            "\u{2028}".to_owned(),
            "\u{10FFFF}".to_owned(),
            "payments.refund".to_owned(),
            "Tool".to_owned(),
            "invoke".to_owned(),
        ]),
    ]
}

/// Any JSON an LLM or an attacker may send.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinities", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Decision requests: mostly well-formed in shape, with anything inside.
fn decision_body() -> impl Strategy<Value = Value> {
    let resource = prop_oneof![
        (text(), text()).prop_map(|(t, id)| json!({"type": t, "id": id})),
        Just(json!({"type": "Tool", "id": "search.web"})),
        Just(json!({"type": "Tool", "id": "payments.refund"})),
        json_value(),
    ];
    let action = prop_oneof![Just(json!("invoke")), json_value()];
    let request = (
        action,
        resource,
        prop::option::of(json_value()),
        prop::option::of(json_value()),
        prop::option::of(json_value()),
    )
        .prop_map(|(action, resource, context, session, approval)| {
            let mut body = json!({"action": action, "resource": resource});
            if let Some(c) = context {
                body["context"] = c;
            }
            if let Some(s) = session {
                body["session_id"] = s;
            }
            if let Some(a) = approval {
                body["approval_id"] = a;
            }
            body
        });
    prop_oneof![4 => request, 1 => json_value()]
}

fn is_error_shape(body: &Value) -> bool {
    body["error"]["code"].is_string() && body["error"]["message"].is_string()
}

/// No decision body gets a server error; a refused one has the error shape and records nothing.
#[test]
fn decision_bodies_are_answered_or_refused_never_a_server_error() {
    let (rt, s) = server();
    let bot = s.token("bot", &[]);
    runner()
        .run(&decision_body(), |body| {
            let before = s.ledger_size();
            let (status, answer) = rt.block_on(s.post("/v1/decisions", &bot, body.clone()));
            prop_assert!(
                matches!(status, 200 | 400 | 413 | 422),
                "{status} {answer} for {body}"
            );
            if status == 200 {
                prop_assert!(
                    answer["decision"] == "allow" || answer["decision"] == "deny",
                    "{answer}"
                );
            } else {
                prop_assert!(is_error_shape(&answer), "{answer}");
                prop_assert_eq!(s.ledger_size(), before, "a refused request was recorded");
            }
            Ok(())
        })
        .unwrap();
    rt.block_on(async { drop(s) });
}

/// Raw bytes as a decision body: never a server error.
#[test]
fn decision_bytes_are_refused_never_a_server_error() {
    let (rt, s) = server();
    let bot = s.token("bot", &[]);
    let client = reqwest::Client::new();
    runner()
        .run(&prop::collection::vec(any::<u8>(), 0..512), |bytes| {
            let status = rt.block_on(async {
                client
                    .post(s.url("/v1/decisions"))
                    .bearer_auth(&bot)
                    .header("content-type", "application/json")
                    .body(bytes.clone())
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            });
            prop_assert!(status < 500, "{status} for {bytes:?}");
            Ok(())
        })
        .unwrap();
    rt.block_on(async { drop(s) });
}

/// Cedar-looking text: keywords, operators and brackets in any order and depth.
fn policy_text() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "permit",
        "forbid",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        "principal",
        "action",
        "resource",
        "context",
        "when",
        "unless",
        "if",
        "then",
        "else",
        "&&",
        "||",
        "==",
        "!=",
        "<",
        "+",
        "-",
        "!",
        ".",
        ",",
        ";",
        ":",
        "\"x\"",
        "1",
        "true",
        "has",
        "in",
        "like",
        "is",
        "Agent",
        "::",
        "@id(\"p\")",
        "decimal(\"1.5\")",
        " ",
        "\n",
        "//",
    ]);
    prop_oneof![
        prop::collection::vec(token, 0..200).prop_map(|t| t.concat()),
        (
            1usize..400,
            prop::sample::select(vec!["(", "[", "{a:", "!", "-"])
        )
            .prop_map(|(n, open)| format!(
                "permit(principal, action, resource) when {{ {}true }};",
                open.repeat(n)
            )),
        any::<String>(),
    ]
}

/// Policy uploads with any file name and any text: a version, a 4xx naming the problem, never
/// a server error, and the server keeps deciding.
#[test]
fn policy_uploads_never_get_a_server_error() {
    let (rt, s) = server();
    let admin = s.token("pat", &["policy_admin"]);
    let bot = s.token("bot", &[]);
    let name = prop_oneof![Just("p.cedar".to_owned()), text(), "[a-z./]{1,12}\\.cedar"];
    runner()
        .run(&(name, policy_text()), |(name, policy)| {
            let mut files = serde_json::Map::new();
            files.insert(name.clone(), json!(policy));
            let (status, answer) =
                rt.block_on(s.post("/v1/policies", &admin, json!({"files": files})));
            prop_assert!(
                matches!(status, 200 | 201 | 400 | 409 | 413 | 422),
                "{status} {answer} for {name:?}: {policy:?}"
            );
            if status >= 400 {
                prop_assert!(is_error_shape(&answer), "{answer}");
            }
            let (status, d) = rt.block_on(s.invoke(&bot, "search.web", json!({})));
            prop_assert_eq!(status, 200, "{}", d);
            Ok(())
        })
        .unwrap();
    rt.block_on(async { drop(s) });
}

/// Any bearer token that is not one Reins trusts is a 401, never a server error, never access.
#[test]
fn tokens_that_do_not_verify_are_401() {
    let (rt, s) = server();
    let segment = "[A-Za-z0-9_-]{0,40}";
    let token = prop_oneof![
        (segment, segment, segment).prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
        "[ -~]{0,80}",
        // A real header and claims with the signature of another token.
        json_value().prop_map(|claims| {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            format!(
                "{}.{}.{}",
                b64.encode(br#"{"alg":"EdDSA","typ":"JWT"}"#),
                b64.encode(claims.to_string()),
                b64.encode([7u8; 64])
            )
        }),
    ];
    runner()
        .run(&token, |token| {
            let (status, answer) = rt.block_on(s.get("/v1/agents", token.trim()));
            prop_assert_eq!(status, 401, "{} for {:?}", answer, token);
            prop_assert!(is_error_shape(&answer), "{answer}");
            Ok(())
        })
        .unwrap();
    rt.block_on(async { drop(s) });
}

fn tile_path(kind: &str, index: u64, width: Option<u64>) -> String {
    let digits = format!("{index}");
    let padded = format!("{:0>width$}", digits, width = digits.len().div_ceil(3) * 3);
    let groups: Vec<&str> = padded
        .as_bytes()
        .chunks(3)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let mut path = format!("{kind}/");
    for (i, g) in groups.iter().enumerate() {
        if i + 1 < groups.len() {
            path.push('x');
        }
        path.push_str(g);
        if i + 1 < groups.len() {
            path.push('/');
        }
    }
    if let Some(w) = width {
        path.push_str(&format!(".p/{w}"));
    }
    path
}

proptest! {
    #![proptest_config(Config {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        ..Config::default()
    })]

    /// Any string: parsed or refused, never a panic.
    #[test]
    fn tile_paths_parse_or_are_refused(path in "[0-9a-z./x]{0,40}|\\PC{0,40}") {
        let _ = reins::ledger::TilePath::parse(&path);
    }

    /// Every path C2SP names parses back to the tile it names.
    #[test]
    fn tile_paths_round_trip(level in 0u8..8, index in any::<u64>(), width in prop::option::of(1u64..256)) {
        let path = tile_path(&level.to_string(), index, width);
        prop_assert_eq!(
            reins::ledger::TilePath::parse(&path),
            Some(reins::ledger::TilePath::Hashes { level, index, width: width.unwrap_or(256) }),
            "{}", path
        );
        let path = tile_path("entries", index, width);
        prop_assert_eq!(
            reins::ledger::TilePath::parse(&path),
            Some(reins::ledger::TilePath::Entries { index, width: width.unwrap_or(256) }),
            "{}", path
        );
    }

    /// The canonical encoder writes exactly the bytes `serde_jcs` writes, for any JSON.
    #[test]
    fn canonical_json_matches_serde_jcs(value in json_value()) {
        prop_assert_eq!(
            String::from_utf8(reins::tlog::canonical::to_vec(&value).unwrap()).unwrap(),
            serde_jcs::to_string(&value).unwrap()
        );
    }
}

/// The ledger's read API with any path and query: an answer or a 4xx, never a server error, and
/// never an entry other than the one asked for.
#[test]
fn ledger_paths_and_queries_never_get_a_server_error() {
    let (rt, s) = server();
    let auditor = s.token("audrey", &["auditor"]);
    let number = prop_oneof![
        (0u64..20).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        Just(u64::MAX.to_string()),
        Just((1u64 << 63).to_string()),
        "-?[0-9]{1,25}",
        "[a-z%]{0,5}",
    ];
    let request = prop_oneof![
        number
            .clone()
            .prop_map(|n| format!("/v1/ledger/entries/{n}")),
        (number.clone(), number.clone())
            .prop_map(|(a, b)| format!("/v1/ledger/entries?start={a}&end={b}")),
        (number.clone(), number.clone())
            .prop_map(|(a, b)| format!("/v1/ledger/proof/inclusion?index={a}&tree_size={b}")),
        (number.clone(), number)
            .prop_map(|(a, b)| format!("/v1/ledger/proof/consistency?from={a}&to={b}")),
        "[0-9a-z./x%]{0,40}".prop_map(|p| format!("/ledger/tile/{p}")),
    ];
    runner()
        .run(&request, |path| {
            let (status, answer) = rt.block_on(s.get(&path, &auditor));
            prop_assert!((200..500).contains(&status), "{status} {answer} for {path}");
            if status == 200
                && let Some(index) = path
                    .strip_prefix("/v1/ledger/entries/")
                    .and_then(|n| n.parse::<u64>().ok())
            {
                prop_assert_eq!(answer["index"].as_u64(), Some(index), "{}", answer);
            }
            Ok(())
        })
        .unwrap();
    rt.block_on(async { drop(s) });
}
