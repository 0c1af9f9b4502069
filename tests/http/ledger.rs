//! The ledger through the HTTP API and `reins ledger verify`: every answer recorded and provable,
//! every tampering detected.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reins::tlog::merkle::leaf_hash;
use serde_json::{Value, json};

use crate::cli::{free_port, reins, run, text};
use crate::harness::{TestServer, codes, copy_dir, eventually, test_config};

fn hash(b64: &str) -> tlog_tiles::Hash {
    tlog_tiles::Hash(B64.decode(b64).unwrap().try_into().unwrap())
}

/// The `hashes` of a served proof, as tlog_tiles hashes.
fn proof_hashes(proof: &Value) -> Vec<tlog_tiles::Hash> {
    proof["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| hash(h.as_str().unwrap()))
        .collect()
}

async fn fleet(s: &TestServer) {
    s.tool("search.web", "low").await;
    s.tool("payments.refund", "high").await;
    s.agent("bot", "limited", &["search.web", "payments.refund"])
        .await;
}

/// Checks a served checkpoint with `signed_note` under the served key; returns it.
async fn verified_checkpoint(s: &TestServer, note: &str) -> tlog_tiles::Checkpoint {
    let auditor = s.token("auditor-1", &["auditor"]);
    let (_, vkey) = s.get_text("/v1/ledger/key", &auditor).await;
    let verifier = signed_note::StandardVerifier::new(vkey.trim()).unwrap();
    let parsed = signed_note::Note::from_bytes(note.as_bytes()).unwrap();
    parsed
        .verify(&signed_note::VerifierList::new(vec![Box::new(verifier)]))
        .expect("checkpoint signature verifies");
    tlog_tiles::Checkpoint::from_bytes(parsed.text()).unwrap()
}

#[tokio::test]
async fn every_answer_is_recorded_and_provable_by_independent_code() {
    let s = TestServer::start().await;
    fleet(&s).await;
    let bot = s.token("bot", &[]);
    let auditor = s.token("auditor-1", &["auditor"]);

    let first_note = s.checkpoint_covering(s.ledger_size()).await;
    let first = verified_checkpoint(&s, &first_note).await;

    let mut answers = Vec::new();
    for amount in [10, 200000, 30] {
        let (_, d) = s
            .invoke(&bot, "payments.refund", json!({"amount": amount}))
            .await;
        answers.push(d);
    }
    // Text JSON escapes and text it does not: the bytes stored are the bytes hashed.
    let memo = "naïve \"quoted\" back\\slash \u{1} tab\t 🦀 \u{2028} \u{7f}";
    let (_, d) = s.invoke(&bot, "search.web", json!({"q": memo})).await;
    answers.push(d);
    let (_, batch) = s.post("/v1/decisions/batch", &bot, json!({"requests": [{"action": "invoke", "resource": {"type": "Tool", "id": "search.web"}}, {"action": "invoke", "resource": {"type": "Tool", "id": "nope"}}]})).await;
    answers.extend(batch["decisions"].as_array().unwrap().iter().cloned());

    let note = s.checkpoint_covering(s.ledger_size()).await;
    let checkpoint = verified_checkpoint(&s, &note).await;
    for d in &answers {
        let index = d["ledger"]["index"]
            .as_u64()
            .expect("answer carries its ledger index");
        let (status, entry) = s
            .get(&format!("/v1/ledger/entries/{index}"), &auditor)
            .await;
        assert_eq!(status, 200, "{entry}");
        let bytes = B64.decode(entry["entry_bytes"].as_str().unwrap()).unwrap();
        assert_eq!(
            B64.encode(leaf_hash(&bytes)),
            d["ledger"]["leaf_hash"].as_str().unwrap(),
            "the answer's leaf hash is the entry's"
        );
        let recorded: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(recorded["type"], "decision");
        assert_eq!(recorded["decision_id"], d["decision_id"]);
        assert_eq!(recorded["decision"], d["decision"]);
        assert_eq!(recorded["reasons"], d["reasons"]);
        assert_eq!(recorded["policy_digest"], d["policy_digest"]);
        assert_eq!(recorded["agent_id"], "bot");

        let (status, proof) = s
            .get(
                &format!(
                    "/v1/ledger/proof/inclusion?index={index}&tree_size={}",
                    checkpoint.size()
                ),
                &auditor,
            )
            .await;
        assert_eq!(status, 200, "{proof}");
        let hashes = proof_hashes(&proof);
        tlog_tiles::check_record(
            &hashes,
            checkpoint.size(),
            *checkpoint.hash(),
            index,
            hash(d["ledger"]["leaf_hash"].as_str().unwrap()),
        )
        .expect("tlog_tiles accepts the served inclusion proof");
    }
    // The stored decision names its ledger entry too.
    let (_, record) = s
        .get(
            &format!(
                "/v1/decisions/{}",
                answers[0]["decision_id"].as_str().unwrap()
            ),
            &auditor,
        )
        .await;
    assert_eq!(record["ledger"], answers[0]["ledger"]);

    let (status, proof) = s
        .get(
            &format!(
                "/v1/ledger/proof/consistency?from={}&to={}",
                first.size(),
                checkpoint.size()
            ),
            &auditor,
        )
        .await;
    assert_eq!(status, 200, "{proof}");
    let hashes = proof_hashes(&proof);
    tlog_tiles::check_tree(
        &hashes,
        checkpoint.size(),
        *checkpoint.hash(),
        first.size(),
        *first.hash(),
    )
    .expect("tlog_tiles accepts the consistency proof");

    // Bad queries are 400s; proofs past the tree are refused; readers need a role.
    let size = s.ledger_size();
    assert_eq!(
        s.get(
            &format!("/v1/ledger/proof/inclusion?index=0&tree_size={}", size + 5),
            &auditor
        )
        .await
        .0,
        400
    );
    assert_eq!(
        s.get("/v1/ledger/proof/consistency?from=5&to=2", &auditor)
            .await
            .0,
        400
    );
    assert_eq!(
        s.get("/v1/ledger/entries?start=0&end=5000", &auditor)
            .await
            .0,
        400
    );
    assert_eq!(s.get("/v1/ledger/entries?start=x", &auditor).await.0, 400);
    assert_eq!(
        s.get(&format!("/v1/ledger/entries/{}", size + 10), &auditor)
            .await
            .0,
        404
    );
    assert_eq!(s.get("/v1/ledger/checkpoint", &bot).await.0, 403);
}

#[tokio::test]
async fn registry_changes_and_policy_loads_are_entries_with_their_actor() {
    let s = TestServer::start().await;
    fleet(&s).await;
    s.agent("bot", "high", &["search.web"]).await;
    let (_, page) = s
        .get(
            "/v1/ledger/entries?start=0&end=100",
            &s.token("auditor-1", &["auditor"]),
        )
        .await;
    let entries: Vec<&Value> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["entry"])
        .collect();
    let types: Vec<&str> = entries
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "policy_version_created",
            "policy_tested",
            "policy_activated",
            "policy_loaded",
            "policy_loaded",
            "self_check",
            "tool_registered",
            "tool_registered",
            "agent_registered",
            "agent_changed"
        ]
    );
    // The policy folder became the first version, tested and active, before it was loaded.
    assert_eq!(entries[0]["actor"], "startup");
    assert_eq!(entries[1]["passed"], true, "{}", entries[1]);
    assert!(entries[1]["checks"].as_u64().unwrap() > 1);
    assert_eq!(entries[2]["version"], entries[0]["version"]);
    assert_eq!(
        entries[3]["policy_digest"].as_str().unwrap().len(),
        "sha256:".len() + 64
    );
    assert_eq!(entries[3]["policy_digest"], entries[0]["policy_digest"]);
    // Then the control plane's own policy.
    assert_eq!(entries[4]["store"], "control");
    assert_eq!(entries[9]["actor"], "ops-admin");
    assert_eq!(entries[9]["version"], 2);
    assert_eq!(entries[9]["record"]["risk_tier"], "high");
    // The start-up self-check probes the live pipeline and records that it failed closed.
    assert_eq!(entries[5]["passed"], true, "{}", entries[5]);
    assert_eq!(entries[5]["probes"][0]["got"], "deny/unknown_agent");
}

#[tokio::test]
async fn masked_context_values_never_reach_the_ledger_but_can_be_proven() {
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(data.path(), None);
    config.ledger.mask = vec!["/args/customer/email".into()];
    let s = TestServer::with_config(data, config).await;
    fleet(&s).await;
    let (_, d) = s
        .invoke(
            &s.token("bot", &[]),
            "search.web",
            json!({"customer": {"email": "jane@example.com", "tier": "gold"}}),
        )
        .await;
    assert_eq!(d["decision"], "allow", "{d}");

    let auditor = s.token("auditor-1", &["auditor"]);
    let index = d["ledger"]["index"].as_u64().unwrap();
    let (_, entry) = s
        .get(&format!("/v1/ledger/entries/{index}"), &auditor)
        .await;
    let bytes =
        String::from_utf8(B64.decode(entry["entry_bytes"].as_str().unwrap()).unwrap()).unwrap();
    assert!(!bytes.contains("jane@example.com"), "{bytes}");
    assert!(bytes.contains("gold"));
    let (_, record) = s
        .get(
            &format!("/v1/decisions/{}", d["decision_id"].as_str().unwrap()),
            &auditor,
        )
        .await;
    assert!(
        !record.to_string().contains("jane@example.com"),
        "the stored request is masked too: {record}"
    );

    let store = &s.server.as_ref().unwrap().state.store;
    let salt = store
        .salt(
            &d["decision_id"].as_str().unwrap().parse().unwrap(),
            "/args/customer/email",
        )
        .await
        .unwrap()
        .unwrap();
    let commitment = reins::events::commitment(&salt, &json!("jane@example.com")).unwrap();
    assert_eq!(
        entry["entry"]["context"]["args"]["customer"]["email"],
        commitment
    );
    assert_ne!(
        reins::events::commitment(&salt, &json!("john@example.com")).unwrap(),
        commitment
    );
}

#[tokio::test]
async fn a_clean_shutdown_signs_a_checkpoint_covering_everything() {
    let mut s = TestServer::start().await;
    fleet(&s).await;
    s.invoke(&s.token("bot", &[]), "search.web", json!({}))
        .await;
    let size = s.ledger_size();
    let state = s.server.as_ref().unwrap().state.clone();
    s.server.take().unwrap().stop().await;
    drop(state);
    s.restart().await;
    let note = s.get_text("/v1/ledger/checkpoint", &s.admin()).await.1;
    // The restart itself appends a policy_loaded entry; the checkpoint signed at stop covers `size`.
    let store = &s.server.as_ref().unwrap().state.store;
    let sizes: Vec<i64> = store
        .checkpoints()
        .await
        .unwrap()
        .iter()
        .map(|c| c.tree_size)
        .collect();
    assert!(sizes.contains(&(size as i64)), "{sizes:?}");
    assert!(note.starts_with("reins.local/ledger\n"), "{note}");
}

/// A stopped server's data dir with a ledger of ~20 entries and a trusted checkpoint of all of it.
async fn recorded_ledger() -> (tempfile::TempDir, String, u64) {
    let mut s = TestServer::start().await;
    fleet(&s).await;
    let bot = s.token("bot", &[]);
    for amount in 0..15 {
        s.invoke(&bot, "payments.refund", json!({"amount": amount * 1000}))
            .await;
    }
    let size = s.ledger_size();
    let trusted = s.checkpoint_covering(size).await;
    s.server.take().unwrap().stop().await;
    (
        std::mem::replace(&mut s.data, tempfile::tempdir().unwrap()),
        trusted,
        size,
    )
}

/// Runs `reins ledger verify` on a copy of `data` after `tamper` ran SQL on it.
async fn verify_after(data: &Path, tamper: &[&str], trusted: Option<&str>) -> (bool, String) {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(data, copy.path());
    let db = copy.path().join("reins.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    for sql in tamper {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
    let trusted_file = copy.path().join("trusted.checkpoint");
    let mut args = vec![
        "ledger",
        "verify",
        "--data-dir",
        copy.path().to_str().unwrap(),
    ];
    if let Some(note) = trusted {
        std::fs::write(&trusted_file, note).unwrap();
        args.extend(["--trusted-checkpoint", trusted_file.to_str().unwrap()]);
    }
    let out = run(&mut reins(&args));
    (out.status.success(), text(&out.stdout) + &text(&out.stderr))
}

#[tokio::test]
async fn ledger_verify_detects_every_kind_of_tampering() {
    crate::sqlite_only!();
    let (data, trusted, size) = recorded_ledger().await;
    let data = data.path();

    let (ok, out) = verify_after(data, &[], Some(&trusted)).await;
    assert!(ok, "an untouched ledger verifies: {out}");
    assert!(out.contains(&format!("ok: {size} entries")), "{out}");

    // One byte of one entry: `"time":"2` becomes `"time":"3`.
    let (ok, out) = verify_after(data, &["UPDATE ledger_entries SET entry = CAST(replace(CAST(entry AS TEXT), '\"time\":\"2', '\"time\":\"3') AS BLOB) WHERE idx = 7"], None).await;
    assert!(
        !ok && out.contains("first bad index: 7"),
        "changed byte: {out}"
    );

    let (ok, out) = verify_after(data, &["DELETE FROM ledger_entries WHERE idx = 9"], None).await;
    assert!(
        !ok && out.contains("first bad index: 9") && out.contains("missing"),
        "deleted entry: {out}"
    );

    let (ok, out) = verify_after(
        data,
        &[
            "UPDATE ledger_entries SET idx = -1 WHERE idx = 4",
            "UPDATE ledger_entries SET idx = 4 WHERE idx = 11",
            "UPDATE ledger_entries SET idx = 11 WHERE idx = -1",
        ],
        None,
    )
    .await;
    assert!(
        !ok && out.contains("first bad index: 4"),
        "swapped entries: {out}"
    );

    // Truncating the tail, with the nodes and checkpoints that would betray it: only a checkpoint
    // saved earlier catches it.
    let cut = size - 3;
    let truncate = [
        format!("DELETE FROM ledger_entries WHERE idx >= {cut}"),
        format!("DELETE FROM ledger_nodes WHERE ((idx + 1) << level) > {cut}"),
        format!("DELETE FROM ledger_checkpoints WHERE tree_size > {cut}"),
        format!("DELETE FROM decisions WHERE ledger_index >= {cut}"),
    ];
    let truncate: Vec<&str> = truncate.iter().map(String::as_str).collect();
    let (ok, out) = verify_after(data, &truncate, None).await;
    assert!(
        ok,
        "without a trusted checkpoint a clean truncation is invisible: {out}"
    );
    let (ok, out) = verify_after(data, &truncate, Some(&trusted)).await;
    assert!(
        !ok && out.contains("truncated") && out.contains(&format!("first bad index: {cut}")),
        "truncated tail: {out}"
    );

    // A checkpoint whose signature is replaced by another key's.
    let other = reins::tlog::note::NoteSigner::new(
        "reins.local/ledger",
        ed25519_dalek::SigningKey::from_bytes(&[3; 32]),
    )
    .unwrap();
    let body = trusted.split("\n\n").next().unwrap().to_owned() + "\n";
    let forged = other.sign(&body).unwrap();
    let sql = format!(
        "UPDATE ledger_checkpoints SET note = '{}' WHERE tree_size = {size}",
        forged.replace('\'', "''")
    );
    let (ok, out) = verify_after(data, &[&sql], None).await;
    assert!(
        !ok && out.contains(&format!("checkpoint of size {size}")) && out.contains("signature"),
        "replaced signature: {out}"
    );

    // A stored tree node changed (what proofs are served from).
    let (ok, out) = verify_after(
        data,
        &["UPDATE ledger_nodes SET hash = zeroblob(32) WHERE level = 2 AND idx = 1"],
        None,
    )
    .await;
    assert!(
        !ok && out.contains("first bad index: 4"),
        "changed node: {out}"
    );
}

#[tokio::test]
async fn a_server_refuses_to_start_on_a_ledger_that_does_not_match_its_checkpoint() {
    crate::sqlite_only!();
    // Start-up reads only the O(log n) subtrees on the tree's right edge (a full re-derivation is
    // `reins ledger verify`); damage the largest of them.
    let (data, _, _) = recorded_ledger().await;
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        data.path().join("reins.db").display()
    ))
    .await
    .unwrap();
    sqlx::query("UPDATE ledger_nodes SET hash = zeroblob(32) WHERE level = (SELECT MAX(level) FROM ledger_nodes) AND idx = 0").execute(&pool).await.unwrap();
    pool.close().await;
    let config = test_config(data.path(), None);
    let err = reins::server::start(config)
        .await
        .err()
        .expect("refuses to start");
    assert!(err.to_string().contains("does not match"), "{err}");
}

// Multi-threaded: the CLI child is awaited synchronously while this process serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_over_http_matches_offline_verify() {
    let s = TestServer::start().await;
    fleet(&s).await;
    for _ in 0..5 {
        s.invoke(&s.token("bot", &[]), "search.web", json!({}))
            .await;
    }
    let trusted = s.checkpoint_covering(s.ledger_size()).await;
    let file = s.data.path().join("trusted");
    std::fs::write(&file, &trusted).unwrap();
    let out = run(reins(&[
        "ledger",
        "verify",
        "--url",
        &s.base,
        "--trusted-checkpoint",
        file.to_str().unwrap(),
    ])
    .env("REINS_TOKEN", s.token("auditor-1", &["auditor"])));
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).starts_with("ok: "),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test]
async fn after_kill_9_under_load_every_answered_decision_is_in_the_verified_ledger() {
    reins::crypto::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let mint = |args: &[&str]| {
        let mut all = vec!["token", "mint", "--data-dir", data.as_str()];
        all.extend_from_slice(args);
        text(&run(&mut reins(&all)).stdout).trim().to_owned()
    };
    let admin = mint(&["--agent", "ops", "--roles", "admin,auditor"]);
    let bot = mint(&["--agent", "bot"]);
    let listen = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{listen}");
    let spawn = || {
        reins(&["serve", "--data-dir", &data, "--listen", &listen])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let client = reqwest::Client::new();
    let wait_ready = || async {
        for _ in 0..400 {
            if client
                .get(format!("{base}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("server not ready");
    };
    let mut child = spawn();
    wait_ready().await;
    let put = |path: &str, body: Value| {
        client
            .put(format!("{base}{path}"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
    };
    assert!(
        put(
            "/v1/tools/search.web",
            json!({"description": "d", "risk": "low", "category": "c"})
        )
        .await
        .unwrap()
        .status()
        .is_success()
    );
    assert!(
        put(
            "/v1/agents/bot",
            json!({"name": "b", "owner": "o", "risk_tier": "minimal", "tools": ["search.web"]})
        )
        .await
        .unwrap()
        .status()
        .is_success()
    );

    // Eight clients decide as fast as they can; the server is killed in the middle.
    let answered = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, u64)>::new()));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (client, base, bot, answered) =
            (client.clone(), base.clone(), bot.clone(), answered.clone());
        workers.push(tokio::spawn(async move {
            for _ in 0..10_000 {
                let Ok(response) = client
                    .post(format!("{base}/v1/decisions"))
                    .bearer_auth(&bot)
                    .json(&json!({"action": "invoke", "resource": {"type": "Tool", "id": "search.web"}}))
                    .send()
                    .await
                else {
                    return;
                };
                let Ok(d) = response.json::<Value>().await else { return };
                answered.lock().unwrap().push((d["decision_id"].as_str().unwrap().to_owned(), d["ledger"]["index"].as_u64().unwrap()));
            }
        }));
    }
    // Kill it in the middle of the load, once it is well under way.
    eventually("a hundred answers under load", async || {
        answered.lock().unwrap().len() >= 100
    })
    .await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for w in workers {
        w.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    assert!(answered.len() > 50, "load ran: {} answers", answered.len());

    let out = run(&mut reins(&["ledger", "verify", "--data-dir", &data]));
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    let mut child = spawn();
    wait_ready().await;
    for (id, index) in answered.iter().step_by((answered.len() / 40).max(1)) {
        let entry: Value = client
            .get(format!("{base}/v1/ledger/entries/{index}"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            entry["entry"]["decision_id"].as_str(),
            Some(id.as_str()),
            "answered decision {id} is at {index}"
        );
        let record = client
            .get(format!("{base}/v1/decisions/{id}"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(record.status().as_u16(), 200);
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Fetched tiles, served to `tlog_tiles`' authenticating reader.
struct FetchedTiles(std::collections::HashMap<String, Vec<u8>>);

/// C2SP path of a tlog_tiles tile (its own `path()` is the older sumdb form with the height).
fn c2sp_path(tile: &tlog_tiles::Tile) -> String {
    let sumdb = tile.path();
    let rest = sumdb.strip_prefix("tile/8/").unwrap();
    format!("tile/{rest}")
}

impl tlog_tiles::TileReader for FetchedTiles {
    fn height(&self) -> u8 {
        8
    }
    fn read_tiles(&self, tiles: &[tlog_tiles::Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        Ok(tiles
            .iter()
            .map(|t| self.0.get(&c2sp_path(t)).cloned().unwrap_or_default())
            .collect())
    }
    fn save_tiles(&self, _: &[tlog_tiles::Tile], _: &[Vec<u8>]) {}
}

#[tokio::test]
async fn tlog_tiles_authenticates_our_tiles_against_our_checkpoint() {
    let data = tempfile::tempdir().unwrap();
    let config = test_config(data.path(), None);
    let s = TestServer::with_config(data, config).await;
    fleet(&s).await;
    // Over 256 entries, so level-1 tiles and partial tiles both appear.
    let bot = s.token("bot", &[]);
    let request = json!({"action": "invoke", "resource": {"type": "Tool", "id": "search.web"}});
    for _ in 0..3 {
        s.post(
            "/v1/decisions/batch",
            &bot,
            json!({"requests": vec![request.clone(); 100]}),
        )
        .await;
    }
    let note = s.checkpoint_covering(s.ledger_size()).await;
    let checkpoint = verified_checkpoint(&s, &note).await;
    let size = checkpoint.size();
    assert!(size > 256, "{size}");
    let auditor = s.token("auditor-1", &["auditor"]);
    let (status, tiles_note) = s.get_text("/ledger/checkpoint", &auditor).await;
    assert_eq!(
        (status, tiles_note.lines().nth(1)),
        (200, Some(size.to_string().as_str()))
    );

    let mut fetched = std::collections::HashMap::new();
    for tile in tlog_tiles::Tile::new_tiles(8, 0, size) {
        let path = c2sp_path(&tile);
        let response = s
            .client
            .get(s.url(&format!("/ledger/{path}")))
            .bearer_auth(&auditor)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/octet-stream"
        );
        fetched.insert(path, response.bytes().await.unwrap().to_vec());
    }
    let tiles = FetchedTiles(fetched);
    let reader = tlog_tiles::TileHashReader::new(size, *checkpoint.hash(), &tiles);
    assert_eq!(
        tlog_tiles::tree_hash(size, &reader).expect("tiles authenticate"),
        *checkpoint.hash()
    );
    let indexes: Vec<u64> = (0..size)
        .map(|i| tlog_tiles::stored_hash_index(0, i))
        .collect();
    let leaves =
        tlog_tiles::HashReader::read_hashes(&reader, &indexes).expect("leaf tiles authenticate");

    // Entry bundles: u16 length prefixes, and every entry hashes to its authenticated leaf.
    let mut index = 0u64;
    for bundle in 0..size.div_ceil(256) {
        let width = (size - bundle * 256).min(256);
        let path = if width == 256 {
            format!("/ledger/tile/entries/{bundle:03}")
        } else {
            format!("/ledger/tile/entries/{bundle:03}.p/{width}")
        };
        let body = s
            .client
            .get(s.url(&path))
            .bearer_auth(&auditor)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let mut rest = &body[..];
        while !rest.is_empty() {
            let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
            assert_eq!(
                leaf_hash(&rest[2..2 + len]),
                leaves[index as usize].0,
                "entry {index}"
            );
            rest = &rest[2 + len..];
            index += 1;
        }
    }
    assert_eq!(index, size);

    let status = |path: &str| {
        let request = s.client.get(s.url(path)).bearer_auth(&auditor).send();
        async move { request.await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/ledger/tile/0/999").await, 404, "beyond the tree");
    assert_eq!(status("/ledger/tile/0/1").await, 400, "not a tile path");
    assert_eq!(status("/ledger/tile/0/000").await, 200);
}

/// The ledger's writer never checkpoints the WAL inside a commit (`wal_autocheckpoint = 0`, so no
/// decision waits for one); a background task copies committed frames into the database file
/// instead. Without it the file would not change until shutdown and the WAL would only grow.
#[tokio::test]
async fn committed_entries_reach_the_database_file_while_serving() {
    crate::sqlite_only!();
    let s = TestServer::start().await;
    s.tool("search.web", "low").await;
    s.agent("bot", "limited", &["search.web"]).await;
    let db = s.data.path().join("reins.db");
    let size = || std::fs::metadata(&db).unwrap().len();
    // Let the start-up entries reach the file first, so that growth below is the decisions'.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = size();
    let token = s.token("bot", &[]);
    for _ in 0..300 {
        let (status, d) = s
            .invoke(&token, "search.web", json!({"recipient": "x".repeat(300)}))
            .await;
        assert_eq!(status, 200, "{d}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while size() <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "the database file stayed at {before} bytes: the WAL is not being checkpointed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Under steady load the background checkpoints never catch up with the writer, and SQLite starts
/// the WAL over only once every frame is in the database file: without the writer finishing the
/// checkpoint past `ledger.wal_limit_mib`, the WAL grows as long as decisions keep coming. The WAL
/// header's checkpoint sequence number counts the restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_bounded_under_steady_load() {
    crate::sqlite_only!();
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(data.path(), None);
    config.ledger.wal_limit_mib = 1;
    let s = std::sync::Arc::new(TestServer::with_config(data, config).await);
    s.tool("search.web", "low").await;
    s.agent("bot", "limited", &["search.web"]).await;
    let wal = s.data.path().join("reins.db-wal");
    let restarts = || {
        let header = std::fs::read(&wal).unwrap();
        u32::from_be_bytes(header[12..16].try_into().unwrap())
    };
    let first = restarts();
    let size = s.ledger_size();
    let token = s.token("bot", &[]);
    // Eight clients sending back to back: some commit is always in progress.
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (s, token) = (s.clone(), token.clone());
            tokio::spawn(async move {
                for _ in 0..375 {
                    let (status, d) = s
                        .invoke(&token, "search.web", json!({"q": "x".repeat(4000)}))
                        .await;
                    assert_eq!(status, 200, "{d}");
                }
            })
        })
        .collect();
    let mut largest = 0;
    while clients.iter().any(|c| !c.is_finished()) {
        largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for client in clients {
        client.await.unwrap();
    }
    assert_eq!(s.ledger_size(), size + 3000);
    // 3,000 decisions of 4 KB write about 35 MiB of WAL frames; checked every 250 ms, a 1 MiB
    // limit lets the file reach what a quarter of a second of load writes, not all of it.
    assert!(
        largest < 24 << 20,
        "the WAL reached {largest} bytes with a 1 MiB limit"
    );
    assert!(restarts() >= first + 2, "the WAL was not started over");
}

/// A decision is answered only once its commit is flushed to disk. If a flush fails, the ledger
/// stops taking appends, every decision is a deny (fail closed), and readiness says why, until a
/// restart re-reads the disk.
/// Removing the WAL file while serving makes the next flush fail.
#[tokio::test]
async fn a_failed_flush_stops_decisions_and_readiness() {
    crate::sqlite_only!();
    let s = TestServer::start().await;
    s.tool("search.web", "low").await;
    s.agent("bot", "limited", &["search.web"]).await;
    let token = s.token("bot", &[]);
    let (status, d) = s.invoke(&token, "search.web", json!({})).await;
    assert_eq!(status, 200, "{d}");
    let (status, ready) = s.send(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!((status, &ready["ledger"]), (200, &json!("ok")), "{ready}");

    std::fs::remove_file(s.data.path().join("reins.db-wal")).unwrap();
    for _ in 0..3 {
        let (status, d) = s.invoke(&token, "search.web", json!({})).await;
        assert_eq!(status, 200, "{d}");
        assert_eq!(d["decision"], json!("deny"), "{d}");
        assert_eq!(codes(&d), ["ledger_unavailable"], "{d}");
        assert!(d.get("ledger").is_none_or(Value::is_null), "{d}");
    }
    let (status, ready) = s.send(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["ready"], json!(false));
    assert!(
        ready["ledger"]
            .as_str()
            .unwrap()
            .contains("removed or replaced; restart Reins"),
        "{ready}"
    );
}

/// Checkpoints are stored by the same thread that commits decisions: under steady load a signed
/// checkpoint keeps up with the entries (it is not starved by the commits, and waits on no lock).
#[tokio::test]
async fn checkpoints_keep_up_with_decisions_under_steady_load() {
    let s = std::sync::Arc::new(TestServer::start().await);
    fleet(&s).await;
    let bot = s.token("bot", &[]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (s, bot, stop) = (s.clone(), bot.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut answered = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, d) = s.invoke(&bot, "search.web", json!({})).await;
                // Past 600 calls a minute the default pack's rate limit denies: still entries.
                assert_eq!(status, 200, "{d}");
                assert!(
                    d["decision"] == "allow" || codes(&d) == ["rate_limited"],
                    "{d}"
                );
                answered += 1;
            }
            answered
        }));
    }
    // Three times over, a checkpoint appears that covers what was there while clients kept going.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let size = s.ledger_size();
        let note = s.checkpoint_covering(size).await;
        let checkpoint = verified_checkpoint(&s, &note).await;
        assert!(checkpoint.size() >= size);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut answered = 0;
    for client in clients {
        answered += client.await.unwrap();
    }
    assert!(answered > 0);
}

/// Indices at or past 2^63 used to wrap at the store (`u64 as i64`): entry 2^64-1 answered
/// entry 5's neighbour, and a range past 2^63 returned the whole ledger.
#[tokio::test]
async fn indices_past_i64_are_refused_not_wrapped() {
    let s = TestServer::start().await;
    let auditor = s.token("audrey", &["auditor"]);
    let (status, body) = s
        .get("/v1/ledger/entries/18446744073709551615", &auditor)
        .await;
    assert_eq!(status, 404, "{body}");
    let big = 1u64 << 63;
    let (status, body) = s
        .get(
            &format!("/v1/ledger/entries?start={big}&end={}", big + 10),
            &auditor,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "start", "{body}");
}

/// A data dir written by Reins before this version (release c1ff28b: before the hardening and
/// the layered crate): the new `reins ledger verify` accepts its ledger byte for byte, the new
/// server starts on it (migrations 0012 and 0013 apply), the approval granted there keeps the
/// user it was opened for, and after more decisions the ledger verifies again.
#[tokio::test]
async fn a_ledger_written_before_this_version_verifies_and_keeps_serving() {
    crate::sqlite_only!();
    let data = tempfile::tempdir().unwrap();
    let fixture = crate::harness::repo().join("tests/fixtures/ledger-c1ff28b");
    copy_dir(&fixture, data.path());
    let dir = data.path().to_str().unwrap().to_owned();
    let out = run(&mut reins(&["ledger", "verify", "--data-dir", &dir]));
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let granted = std::fs::read_to_string(data.path().join("granted-approval-id")).unwrap();
    let granted = granted.trim().to_owned();
    let config = test_config(data.path(), None);
    let mut s = TestServer::with_config(data, config).await;
    let size = s.ledger_size();
    assert!(size > 10, "the fixture's ledger is there: {size}");

    let (status, approval) = s.get(&format!("/v1/approvals/{granted}"), &s.admin()).await;
    assert_eq!(status, 200, "{approval}");
    assert_eq!(approval["status"], "granted", "{approval}");
    assert_eq!(approval["on_behalf_of"], "alice", "{approval}");
    let refund = json!({"action": "invoke", "resource": {"type": "Tool", "id": "payments.refund"},
                        "context": {"args": {"amount": 50, "currency": "EUR"}}, "approval_id": granted});
    let (_, d) = s
        .post(
            "/v1/decisions",
            &s.mint("refund-bot", Some("mallory"), &[]),
            refund.clone(),
        )
        .await;
    assert_eq!(codes(&d), ["approval_invalid"], "{d}");
    assert!(d.to_string().contains("on behalf of `alice`"), "{d}");
    let (_, d) = s
        .post(
            "/v1/decisions",
            &s.mint("refund-bot", Some("alice"), &[]),
            refund,
        )
        .await;
    assert_eq!(d["decision"], "allow", "{d}");
    s.stop_and_verify_ledger().await;
}
