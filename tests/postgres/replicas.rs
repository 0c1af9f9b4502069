//! Three replicas on one database, under load, while things go wrong: crashes, the integrator's
//! death, a kill switch, raced approvals, a replica cut from the database, a database outage,
//! usage counts that cannot be read.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::Row;
use tokio::sync::RwLock;

use crate::postgres_or_skip;
use crate::replica::{Client, Proxy, Replica, Tokens, register};

/// An answered decision: its id, outcome, ledger index, and the replica that answered.
#[derive(Debug, Clone)]
struct Answer {
    id: String,
    allow: bool,
    index: u64,
    at: Instant,
}

/// The fleet: replicas, their database (each through a proxy), tokens.
struct Fleet {
    db: crate::db::TestDb,
    _root: tempfile::TempDir,
    keys: std::path::PathBuf,
    replicas: Vec<Replica>,
    proxies: Vec<Proxy>,
    tokens: Tokens,
    client: Client,
    admin: String,
}

impl Fleet {
    async fn start(db: crate::db::TestDb, n: usize) -> Self {
        let root = tempfile::tempdir().unwrap();
        let keys = root.path().join("keys");
        let mut replicas = Vec::new();
        let mut proxies = Vec::new();
        for i in 0..n {
            let proxy = Proxy::to(&db.url).await;
            let url = proxy.url(&db.url);
            replicas.push(Replica::start(&format!("r{i}"), root.path(), &keys, &url).await);
            proxies.push(proxy);
        }
        let tokens = Tokens::new(&keys);
        let admin = tokens.mint("ops", None, &["admin", "operator", "auditor"]);
        Self {
            db,
            _root: root,
            keys,
            replicas,
            proxies,
            tokens,
            client: Client::new(),
            admin,
        }
    }

    /// A fleet of `n` with agent `bot` declaring `crm.note`: the fleet, its addresses, bot's token.
    async fn with_bot(db: crate::db::TestDb, n: usize) -> (Self, Vec<String>, String) {
        let fleet = Self::start(db, n).await;
        let bases = fleet.bases();
        register(&fleet.client, &bases[0], &fleet.admin, "bot", &["crm.note"]).await;
        let token = fleet.tokens.mint("bot", None, &[]);
        (fleet, bases, token)
    }

    /// Registers `refund-bot` declaring `payments.refund`, a high-risk tool (the default pack
    /// asks for an approval), through `base`; its token, acting for alice.
    async fn refund_bot(&self, base: &str) -> String {
        register(
            &self.client,
            base,
            &self.admin,
            "refund-bot",
            &["payments.refund"],
        )
        .await;
        let (status, body) = self
            .client
            .put(
                &format!("{base}/v1/tools/payments.refund"),
                &self.admin,
                json!({"description": "Refund", "risk": "high", "category": "payments"}),
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        self.tokens.mint("refund-bot", Some("alice"), &[])
    }

    /// Stops every replica (each signs its last checkpoint) and verifies the ledger.
    async fn finish(mut self) {
        self.stop().await;
        self.verify();
    }

    fn bases(&self) -> Vec<String> {
        self.replicas.iter().map(|r| r.base.clone()).collect()
    }

    async fn stop(&mut self) {
        for r in &mut self.replicas {
            r.stop().await;
        }
    }

    /// `reins ledger verify` against the database.
    fn verify(&self) {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_reins"))
            .arg("ledger")
            .arg("verify")
            .arg("--database-url")
            .arg(&self.db.url)
            .arg("--keys-dir")
            .arg(&self.keys)
            .arg("--data-dir")
            .arg(self._root.path().join("r0"))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "ledger verify failed:\n{text}");
    }
}

/// Decision load: `workers` tasks, each sending decisions for `tool` round-robin over the
/// replicas' current addresses until `stop`; every answer with a ledger index is kept.
fn load(
    client: Client,
    bases: Arc<RwLock<Vec<String>>>,
    token: String,
    tool: &'static str,
    workers: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Answer>> {
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        for w in 0..workers {
            let (client, bases, token, stop) =
                (client.clone(), bases.clone(), token.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut answers = Vec::new();
                let mut i = w;
                while !stop.load(Ordering::SeqCst) {
                    let base = {
                        let bases = bases.read().await;
                        bases[i % bases.len()].clone()
                    };
                    i += 1;
                    if let Some((200, body)) = client.decide(&base, &token, tool).await
                        && let Some(index) = body["ledger"]["index"].as_u64()
                    {
                        answers.push(Answer {
                            id: body["decision_id"].as_str().unwrap_or_default().to_owned(),
                            allow: body["decision"] == "allow",
                            index,
                            at: Instant::now(),
                        });
                    }
                }
                answers
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap_or_default());
        }
        all
    })
}

/// The ledger's density and every answer's presence, read from the database itself.
async fn assert_dense_and_complete(fleet: &Fleet, answers: &[Answer]) {
    let mut conn = fleet.db.connect().await;
    let row = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM ledger_entries), (SELECT COALESCE(MAX(idx), -1) FROM ledger_entries),
                (SELECT next FROM ledger_seq), (SELECT size FROM ledger_tree)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let (count, max, next, tree): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(count, max + 1, "entry count = max index + 1");
    assert_eq!(count, next, "entry count = the counter");
    assert_eq!(
        tree, next,
        "every sequenced entry is integrated once the replicas stopped"
    );
    let stored: HashMap<String, (i64, String)> = sqlx::query_as::<_, (String, i64, String)>(
        "SELECT id, ledger_index, decision FROM decisions",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .into_iter()
    .map(|(id, index, decision)| (id, (index, decision)))
    .collect();
    for answer in answers {
        let (index, decision) = stored
            .get(&answer.id)
            .unwrap_or_else(|| panic!("answered decision {} is not in the ledger", answer.id));
        assert_eq!(*index as u64, answer.index, "{}", answer.id);
        assert_eq!(decision == "allow", answer.allow, "{}", answer.id);
    }
}

/// Checkpoints fetched during the run are all stored ones, and each is consistent with the
/// final tree (`reins ledger verify` checks every stored checkpoint against the tree).
async fn assert_checkpoints_stored(fleet: &Fleet, fetched: &[String]) {
    let mut conn = fleet.db.connect().await;
    let stored: Vec<String> = sqlx::query_scalar("SELECT note FROM ledger_checkpoints")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    for note in fetched {
        assert!(
            stored.contains(note),
            "a served checkpoint is not stored:\n{note}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn density_survives_replicas_killed_with_sigkill() {
    let db = postgres_or_skip!();
    let (mut fleet, bases, token) = Fleet::with_bot(db, 3).await;
    let shared = Arc::new(RwLock::new(bases.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let running = load(
        fleet.client.clone(),
        shared.clone(),
        token,
        "crm.note",
        12,
        stop.clone(),
    );
    let mut fetched = Vec::new();
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let victim = (round * 2 + 1) % 3;
        fleet.replicas[victim].kill9().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        for base in shared.read().await.iter() {
            if let Some(note) = fleet
                .client
                .text(&format!("{base}/v1/ledger/checkpoint"), &fleet.admin)
                .await
            {
                fetched.push(note);
            }
        }
        fleet.replicas[victim].restart().await;
        shared.write().await[victim] = fleet.replicas[victim].base.clone();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let answers = running.await.unwrap();
    assert!(
        answers.len() > 100,
        "the load made only {} decisions",
        answers.len()
    );
    fleet.stop().await;
    assert_dense_and_complete(&fleet, &answers).await;
    assert_checkpoints_stored(&fleet, &fetched).await;
    fleet.verify();
    eprintln!(
        "density: {} answered decisions over 3 replicas, 3 of them killed with SIGKILL",
        answers.len()
    );
}

/// Which replica holds the integrator's lock: the one that logged taking it last.
fn integrator(fleet: &Fleet) -> Option<usize> {
    fleet
        .replicas
        .iter()
        .position(|r| r.logged("this replica integrates the shared ledger"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_replica_takes_over_integration_when_the_integrator_dies() {
    let db = postgres_or_skip!();
    let (mut fleet, bases, token) = Fleet::with_bot(db, 3).await;
    let victim = integrator(&fleet).expect("one replica integrates");
    let survivors: Vec<String> = bases
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, b)| b.clone())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let running = load(
        fleet.client.clone(),
        Arc::new(RwLock::new(survivors.clone())),
        token,
        "crm.note",
        8,
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed_at = Instant::now();
    fleet.replicas[victim].kill9().await;
    // Another replica integrates within a few seconds: the tree reaches the counter.
    let mut conn = fleet.db.connect().await;
    let mut caught_up = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (next, size): (i64, i64) =
            sqlx::query_as("SELECT s.next, t.size FROM ledger_seq s, ledger_tree t")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        if size > 0
            && next - size < 500
            && fleet
                .replicas
                .iter()
                .enumerate()
                .any(|(i, r)| i != victim && r.logged("this replica integrates the shared ledger"))
        {
            caught_up = Some(killed_at.elapsed());
            break;
        }
    }
    let took = caught_up.expect("no replica took over integration within 10 s");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let mut answers = running.await.unwrap();
    answers.sort_by_key(|a| a.at);
    // Decisions never stopped: no gap of a second between answers on the survivors.
    let gap = answers
        .windows(2)
        .map(|w| w[1].at - w[0].at)
        .max()
        .unwrap_or_default();
    assert!(
        gap < Duration::from_secs(1),
        "decisions stopped for {gap:?}"
    );
    fleet.stop().await;
    assert_dense_and_complete(&fleet, &answers).await;
    fleet.verify();
    eprintln!(
        "integrator failover: taken over {took:?} after the kill; longest gap between answers {gap:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_allow_is_sequenced_after_a_kill_switch_on_any_replica() {
    let db = postgres_or_skip!();
    let (fleet, bases, token) = Fleet::with_bot(db, 3).await;
    let mut propagation = Vec::new();
    let mut conn = fleet.db.connect().await;
    for round in 0..10 {
        let stop = Arc::new(AtomicBool::new(false));
        let running = load(
            fleet.client.clone(),
            Arc::new(RwLock::new(bases[1..].to_vec())),
            token.clone(),
            "crm.note",
            6,
            stop.clone(),
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (status, switch) = fleet
            .client
            .post(
                &format!("{}/v1/killswitch", bases[0]),
                &fleet.admin,
                json!({"scope": {"agent": "bot"}, "reason": format!("round {round}")}),
            )
            .await
            .unwrap();
        assert_eq!(status, 201, "{switch}");
        let engaged = Instant::now();
        // Time until each other replica denies.
        let mut slowest = Duration::ZERO;
        for base in &bases[1..] {
            loop {
                let (_, d) = fleet.client.decide(base, &token, "crm.note").await.unwrap();
                if d["reasons"][0]["code"] == "kill_switch" {
                    break;
                }
                assert!(
                    engaged.elapsed() < Duration::from_secs(2),
                    "{base} still allows: {d}"
                );
            }
            slowest = slowest.max(engaged.elapsed());
        }
        propagation.push(slowest);
        stop.store(true, Ordering::SeqCst);
        running.await.unwrap();
        let engage_index: i64 = sqlx::query_scalar(
            "SELECT MAX(idx) FROM ledger_entries WHERE kind = 'killswitch_engaged'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        let late: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM decisions WHERE agent_id = 'bot' AND decision = 'allow' AND ledger_index > $1",
        )
        .bind(engage_index)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(
            late, 0,
            "round {round}: allows sequenced after the engage at {engage_index}"
        );
        let id = switch["id"].as_str().unwrap();
        let (status, body) = fleet
            .client
            .send(
                reqwest::Method::DELETE,
                &format!("{}/v1/killswitch/{id}", bases[0]),
                &fleet.admin,
                Some(json!({"reason": "next round"})),
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
    }
    propagation.sort();
    let p50 = propagation[propagation.len() / 2];
    let max = propagation[propagation.len() - 1];
    eprintln!(
        "kill switch propagation (engage answered on A -> both other replicas deny), 10 rounds: \
         p50 {p50:?}, max {max:?}"
    );
    fleet.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approval_raced_across_replicas_allows_exactly_once() {
    let db = postgres_or_skip!();
    let fleet = Fleet::start(db, 3).await;
    let bases = fleet.bases();
    let client = &fleet.client;
    let agent = fleet.refund_bot(&bases[0]).await;
    let approver = fleet.tokens.mint("bob", None, &["approver"]);
    let refund = json!({"action": "invoke", "resource": {"type": "Tool", "id": "payments.refund"},
                        "context": {"args": {"amount": 50, "currency": "EUR"}}});
    let (_, asked) = client
        .post(
            &format!("{}/v1/decisions", bases[1]),
            &agent,
            refund.clone(),
        )
        .await
        .unwrap();
    let id = asked["access_request"]["approval_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{asked}"))
        .to_owned();
    let (status, body) = client
        .post(
            &format!("{}/v1/approvals/{id}/grant", bases[2]),
            &approver,
            json!({"comment": "ok"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let mut with = refund.clone();
    with["approval_id"] = json!(id);
    let mut tries = Vec::new();
    for i in 0..30 {
        let (client, base, agent, with) = (
            client.clone(),
            bases[i % 3].clone(),
            agent.clone(),
            with.clone(),
        );
        tries.push(tokio::spawn(async move {
            client
                .post(&format!("{base}/v1/decisions"), &agent, with)
                .await
        }));
    }
    let mut allows = 0;
    for t in tries {
        let (status, body) = t.await.unwrap().unwrap();
        assert_eq!(status, 200, "{body}");
        if body["decision"] == "allow" {
            allows += 1;
        } else {
            assert_eq!(body["reasons"][0]["code"], "approval_invalid", "{body}");
        }
    }
    assert_eq!(allows, 1, "one approval, one allow");
    fleet.finish().await;
}

/// Readiness and a decision through one replica.
async fn readiness(client: &Client, base: &str, token: &str) -> (u16, bool) {
    let ready = client
        .get(&format!("{base}/readyz"), token)
        .await
        .map_or(0, |(s, _)| s);
    let allowed = client
        .decide(base, token, "crm.note")
        .await
        .is_some_and(|(_, d)| d["decision"] == "allow");
    (ready, allowed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_cut_from_the_database_fails_closed_and_recovers() {
    let db = postgres_or_skip!();
    let (fleet, bases, token) = Fleet::with_bot(db, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        readiness(&fleet.client, &bases[1], &token).await,
        (200, true)
    );
    fleet.proxies[1].cut().await;
    let cut = Instant::now();
    let mut failed_closed = None;
    while cut.elapsed() < Duration::from_secs(5) {
        let (ready, allowed) = readiness(&fleet.client, &bases[1], &token).await;
        if ready == 503 && !allowed {
            failed_closed = Some(cut.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = failed_closed.expect("the cut replica did not fail closed within 5 s");
    assert!(
        took < Duration::from_millis(1_500),
        "failed closed only after {took:?}"
    );
    // The other replica goes on.
    assert_eq!(
        readiness(&fleet.client, &bases[0], &token).await,
        (200, true)
    );
    fleet.proxies[1].restore();
    let restored = Instant::now();
    loop {
        if readiness(&fleet.client, &bases[1], &token).await == (200, true) {
            break;
        }
        assert!(
            restored.elapsed() < Duration::from_secs(15),
            "no recovery without a restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "cut from the database: denied and unready after {took:?}; recovered {:?} after the link came back",
        restored.elapsed()
    );
    fleet.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_fails_every_replica_closed_and_loses_no_answer() {
    let db = postgres_or_skip!();
    let (mut fleet, bases, token) = Fleet::with_bot(db, 3).await;
    let stop = Arc::new(AtomicBool::new(false));
    let running = load(
        fleet.client.clone(),
        Arc::new(RwLock::new(bases.clone())),
        token.clone(),
        "crm.note",
        9,
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    for p in &fleet.proxies {
        p.cut().await;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for base in &bases {
        let (ready, allowed) = readiness(&fleet.client, base, &token).await;
        assert_eq!((ready, allowed), (503, false), "{base} during the outage");
    }
    for p in &fleet.proxies {
        p.restore();
    }
    let restored = Instant::now();
    for base in &bases {
        while readiness(&fleet.client, base, &token).await != (200, true) {
            assert!(
                restored.elapsed() < Duration::from_secs(20),
                "{base} did not recover"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    stop.store(true, Ordering::SeqCst);
    let answers = running.await.unwrap();
    fleet.stop().await;
    assert_dense_and_complete(&fleet, &answers).await;
    fleet.verify();
    eprintln!(
        "database outage: {} answers, none lost; all replicas ready {:?} after the database came back",
        answers.len(),
        restored.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_whose_listener_died_catches_up_by_polling() {
    let db = postgres_or_skip!();
    let (fleet, bases, token) = Fleet::with_bot(db, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Every LISTEN connection dies (the replicas reconnect them later): only the poll is left.
    let mut conn = fleet.db.connect().await;
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(!killed.is_empty(), "no listening connection was found");
    let (status, body) = fleet
        .client
        .post(
            &format!("{}/v1/killswitch", bases[0]),
            &fleet.admin,
            json!({"scope": {"agent": "bot"}, "reason": "listener test"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let engaged = Instant::now();
    loop {
        let (_, d) = fleet
            .client
            .decide(&bases[1], &token, "crm.note")
            .await
            .unwrap();
        if d["reasons"][0]["code"] == "kill_switch" {
            break;
        }
        assert_eq!(d["decision"], "deny", "an allow after the engage: {d}");
        assert!(engaged.elapsed() < Duration::from_secs(2), "{d}");
    }
    eprintln!(
        "listener killed: the other replica denied {:?} after the engage answer",
        engaged.elapsed()
    );
    fleet.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_a_key_of_its_own_refuses_to_start() {
    let db = postgres_or_skip!();
    let fleet = Fleet::start(db, 1).await;
    let bases = fleet.bases();
    register(&fleet.client, &bases[0], &fleet.admin, "bot", &["crm.note"]).await;
    // The first replica has signed a checkpoint by now (every 100 ms after new entries).
    let mut conn = fleet.db.connect().await;
    for _ in 0..50 {
        let signed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger_checkpoints")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if signed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let other = tempfile::tempdir().unwrap();
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_reins"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                &fleet.db.url,
            ])
            .arg("--data-dir")
            .arg(other.path().join("data"))
            .arg("--policy-dir")
            .arg(crate::replica::repo().join("policies"))
            .arg("--schema-file")
            .arg(crate::replica::repo().join("schemas/reins.cedarschema"))
            .output(),
    )
    .await
    .expect("the replica with the wrong key stops at once")
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("same --keys-dir"), "{stderr}");
    fleet.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_are_denied_past_the_integration_backlog_until_it_drains() {
    let db = postgres_or_skip!();
    // The test holds the integrator's advisory lock, so no replica integrates (safety does not
    // depend on that lock; only who integrates does).
    let mut holder = db.connect().await;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(0x0072_6569_6e73_i64)
        .execute(&mut holder)
        .await
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let keys = root.path().join("keys");
    let mut replica = Replica::start_with(
        "r0",
        root.path(),
        &keys,
        &db.url,
        &[("REINS_DATABASE__BACKLOG_LIMIT", "30")],
    )
    .await;
    let tokens = Tokens::new(&keys);
    let admin = tokens.mint("ops", None, &["admin"]);
    let client = Client::new();
    register(&client, &replica.base, &admin, "bot", &["crm.note"]).await;
    let token = tokens.mint("bot", None, &[]);
    let mut codes = Vec::new();
    for _ in 0..60 {
        let (_, d) = client
            .decide(&replica.base, &token, "crm.note")
            .await
            .unwrap();
        codes.push(d["reasons"][0]["code"].as_str().unwrap_or("-").to_owned());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let backlogged = codes.iter().filter(|c| *c == "ledger_backlog").count();
    assert!(
        backlogged > 0,
        "no decision was refused for the backlog: {codes:?}"
    );
    assert_eq!(
        codes.last().map(String::as_str),
        Some("ledger_backlog"),
        "{codes:?}"
    );
    // Integration resumes: the backlog drains and decisions are allowed again.
    sqlx::query("SELECT pg_advisory_unlock_all()")
        .execute(&mut holder)
        .await
        .unwrap();
    let released = Instant::now();
    loop {
        let (_, d) = client
            .decide(&replica.base, &token, "crm.note")
            .await
            .unwrap();
        if d["decision"] == "allow" {
            break;
        }
        assert!(
            released.elapsed() < Duration::from_secs(5),
            "still refused: {d}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_tables_refuse_changes_and_a_database_that_lost_rows_halts_appends() {
    let db = postgres_or_skip!();
    let mut fleet = Fleet::start(db, 1).await;
    let base = fleet.bases()[0].clone();
    register(&fleet.client, &base, &fleet.admin, "bot", &["crm.note"]).await;
    let token = fleet.tokens.mint("bot", None, &[]);
    for _ in 0..5 {
        fleet
            .client
            .decide(&base, &token, "crm.note")
            .await
            .unwrap();
    }
    let mut conn = fleet.db.connect().await;
    for statement in [
        "UPDATE ledger_entries SET kind = 'x' WHERE idx = 0",
        "DELETE FROM ledger_entries WHERE idx = 0",
        "DELETE FROM ledger_nodes",
        "TRUNCATE ledger_checkpoints",
    ] {
        let refused = sqlx::query(statement).execute(&mut conn).await.unwrap_err();
        assert!(
            refused.to_string().contains("append-only"),
            "{statement}: {refused}"
        );
    }
    // The replica serves a checkpoint; then the database "loses" it, as a restore from an older
    // backup would (the triggers are disabled to play the restore).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let note = fleet
        .client
        .text(&format!("{base}/v1/ledger/checkpoint"), &fleet.admin)
        .await
        .unwrap();
    let served: i64 = note.lines().nth(1).unwrap().parse().unwrap();
    sqlx::query("ALTER TABLE ledger_checkpoints DISABLE TRIGGER USER")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("DELETE FROM ledger_checkpoints WHERE tree_size >= $1")
        .bind(served)
        .execute(&mut conn)
        .await
        .unwrap();
    let lost = Instant::now();
    loop {
        let (ready, body) = fleet
            .client
            .get(&format!("{base}/readyz"), &fleet.admin)
            .await
            .unwrap();
        if ready == 503 {
            assert!(
                body["ledger"].as_str().unwrap_or("").contains("lost rows"),
                "{body}"
            );
            break;
        }
        assert!(
            lost.elapsed() < Duration::from_secs(3),
            "the fork went unnoticed: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, d) = fleet
        .client
        .decide(&base, &token, "crm.note")
        .await
        .unwrap();
    assert_eq!(
        (d["decision"].as_str(), d["reasons"][0]["code"].as_str()),
        (Some("deny"), Some("ledger_unavailable")),
        "{d}"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_version_activated_on_one_replica_decides_on_the_others() {
    let db = postgres_or_skip!();
    let fleet = Fleet::start(db, 2).await;
    let bases = fleet.bases();
    register(
        &fleet.client,
        &bases[0],
        &fleet.admin,
        "bot",
        &["crm.note", "lab.probe"],
    )
    .await;
    let token = fleet.tokens.mint("bot", None, &[]);
    let (_, d) = fleet
        .client
        .decide(&bases[1], &token, "lab.probe")
        .await
        .unwrap();
    assert_eq!(d["decision"], "allow", "{d}");
    // The default pack plus one forbid.
    let mut files = serde_json::Map::new();
    for entry in std::fs::read_dir(crate::replica::repo().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "cedar") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            files.insert(name, json!(std::fs::read_to_string(&path).unwrap()));
        }
    }
    files.insert(
        "zz_no_probe.cedar".into(),
        json!(
            "@id(\"no-lab-probe\")\nforbid (principal, action, resource == Tool::\"lab.probe\");\n"
        ),
    );
    let policy_admin = fleet.tokens.mint("pa", None, &["policy_admin", "admin"]);
    let (status, version) = fleet
        .client
        .post(
            &format!("{}/v1/policies", bases[0]),
            &policy_admin,
            json!({"files": files}),
        )
        .await
        .unwrap();
    assert!(status == 201 || status == 200, "{status} {version}");
    let id = version["version"]
        .as_str()
        .unwrap_or_else(|| panic!("{version}"));
    let (status, body) = fleet
        .client
        .post(
            &format!("{}/v1/policies/{id}/activate", bases[0]),
            &policy_admin,
            json!({}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let (_, d) = fleet
        .client
        .decide(&bases[1], &token, "lab.probe")
        .await
        .unwrap();
    assert_eq!(
        d["decision"], "deny",
        "the other replica still decides with the old version: {d}"
    );
    assert_eq!(d["reasons"][0]["policy_id"], "no-lab-probe", "{d}");
    assert_eq!(d["policy_digest"], version["digest"], "{d}");
    fleet.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_switch_cancels_approvals_opened_on_other_replicas() {
    let db = postgres_or_skip!();
    let fleet = Fleet::start(db, 2).await;
    let bases = fleet.bases();
    let client = &fleet.client;
    let agent = fleet.refund_bot(&bases[0]).await;
    // Opened on replica 1: replica 0 has not heard of it (a request changes no control state).
    let (_, asked) = client
        .post(
            &format!("{}/v1/decisions", bases[1]),
            &agent,
            json!({"action": "invoke", "resource": {"type": "Tool", "id": "payments.refund"},
                   "context": {"args": {"amount": 9}}}),
        )
        .await
        .unwrap();
    let id = asked["access_request"]["approval_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{asked}"))
        .to_owned();
    let (status, body) = client
        .post(
            &format!("{}/v1/killswitch", bases[0]),
            &fleet.admin,
            json!({"scope": {"agent": "refund-bot"}, "reason": "stop"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let (status, approval) = client
        .get(&format!("{}/v1/approvals/{id}", bases[0]), &fleet.admin)
        .await
        .unwrap();
    assert_eq!(status, 200, "{approval}");
    assert_eq!(approval["status"], "cancelled", "{approval}");
    fleet.finish().await;
}

/// A contest resolved and an incident reported at once through three replicas: the database
/// takes one step of each, the others are 409s, and the ledger holds exactly one entry for each.
#[tokio::test]
async fn contest_and_incident_steps_raced_across_replicas_land_once() {
    let db = postgres_or_skip!();
    let (fleet, bases, bot) = Fleet::with_bot(db, 3).await;
    let client = &fleet.client;
    let (_, d) = client.decide(&bases[0], &bot, "crm.note").await.unwrap();
    let id = d["decision_id"].as_str().unwrap().to_owned();
    let reviewer = fleet.tokens.mint("rita", None, &["reviewer"]);
    let (status, contest) = client
        .post(
            &format!("{}/v1/decisions/{id}/contest", bases[1]),
            &reviewer,
            json!({"statement": "not mine"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{contest}");
    let officer = fleet.tokens.mint("olga", None, &["compliance_officer"]);
    let (status, incident) = client
        .post(
            &format!("{}/v1/incidents", bases[2]),
            &officer,
            json!({"severity": "serious_harm", "summary": "s", "agents": ["bot"],
                   "aware_at": "2026-11-01T00:00:00Z"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{incident}");
    let steps = [
        (
            format!(
                "/v1/contests/{}/resolution",
                contest["id"].as_str().unwrap()
            ),
            reviewer.clone(),
            json!({"resolution": "upheld", "comment": "c"}),
        ),
        (
            format!("/v1/incidents/{}/report", incident["id"].as_str().unwrap()),
            officer.clone(),
            json!({"authority": "MSA", "reference": "R"}),
        ),
    ];
    for (path, token, body) in steps {
        let mut tries = Vec::new();
        for i in 0..9 {
            let (client, url, token, body) = (
                client.clone(),
                format!("{}{path}", bases[i % 3]),
                token.clone(),
                body.clone(),
            );
            tries.push(tokio::spawn(async move {
                client.post(&url, &token, body).await
            }));
        }
        let mut statuses = Vec::new();
        for t in tries {
            statuses.push(t.await.unwrap().unwrap().0);
        }
        statuses.sort();
        assert_eq!(
            statuses,
            [200, 409, 409, 409, 409, 409, 409, 409, 409],
            "{path}"
        );
    }
    let (_, entries) = client
        .get(
            &format!("{}/v1/ledger/entries?start=0&end=1000", bases[0]),
            &fleet.admin,
        )
        .await
        .unwrap();
    let kinds: Vec<&str> = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["entry"]["type"].as_str())
        .collect();
    for kind in ["contest_resolved", "incident_reported"] {
        assert_eq!(
            kinds.iter().filter(|k| **k == kind).count(),
            1,
            "{kind}: {kinds:?}"
        );
    }
    fleet.finish().await;
}

/// The default pack's rate limit (600 allowed calls a minute per agent), with load through three
/// replicas at once: exactly 600 are allowed, the rest `rate_limited`, because a decision holds its
/// usage keys' rows from reading the counts to counting itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rate_limit_holds_exactly_across_three_replicas() {
    let db = postgres_or_skip!();
    let (fleet, bases, token) = Fleet::with_bot(db, 3).await;
    let started = Instant::now();
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..24 {
        let (client, bases, token, sent) = (
            fleet.client.clone(),
            bases.clone(),
            token.clone(),
            sent.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut seen: HashMap<String, usize> = HashMap::new();
            loop {
                let n = sent.fetch_add(1, Ordering::SeqCst);
                if n >= 800 {
                    return seen;
                }
                let base = &bases[(n + t) % bases.len()];
                let (status, d) = client.decide(base, &token, "crm.note").await.unwrap();
                assert_eq!(status, 200, "{d}");
                let code = match d["decision"].as_str() {
                    Some("allow") => "allow".to_owned(),
                    _ => d["reasons"][0]["code"].as_str().unwrap_or("?").to_owned(),
                };
                *seen.entry(code).or_default() += 1;
            }
        }));
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for task in tasks {
        for (code, n) in task.await.unwrap() {
            *seen.entry(code).or_default() += n;
        }
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(55),
        "the load took {took:?}: past the minute, earlier calls leave the window and the count \
         is no longer the one this test checks"
    );
    assert_eq!(seen.get("allow"), Some(&600), "{seen:?}");
    assert_eq!(seen.get("rate_limited"), Some(&200), "{seen:?}");
    let mut conn = fleet.db.connect().await;
    let allowed: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM decisions WHERE agent_id = 'bot' AND decision = 'allow'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(allowed, 600);
    eprintln!("800 decisions of one agent through 3 replicas in {took:?}: {seen:?}");
    fleet.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_that_cannot_be_read_deny_and_the_deny_is_recorded() {
    let db = postgres_or_skip!();
    let (fleet, bases, token) = Fleet::with_bot(db, 1).await;
    let decide = || async {
        fleet
            .client
            .decide(&bases[0], &token, "crm.note")
            .await
            .unwrap()
    };
    let (status, d) = decide().await;
    assert_eq!(
        (status, d["decision"].as_str()),
        (200, Some("allow")),
        "{d}"
    );
    // The counts' table goes away while the ledger still works: usage alone fails.
    let mut conn = fleet.db.connect().await;
    sqlx::query("ALTER TABLE usage_buckets RENAME TO usage_buckets_away")
        .execute(&mut conn)
        .await
        .unwrap();
    let (status, d) = decide().await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["decision"], "deny", "fail closed: {d}");
    assert_eq!(d["reasons"][0]["code"], "ledger_unavailable", "{d}");
    assert!(
        d["reasons"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("usage counts")),
        "{d}"
    );
    let denied: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM decisions WHERE agent_id = 'bot' AND decision = 'deny'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(denied, 1, "the deny is in the ledger like any other");
    sqlx::query("ALTER TABLE usage_buckets_away RENAME TO usage_buckets")
        .execute(&mut conn)
        .await
        .unwrap();
    let (status, d) = decide().await;
    assert_eq!(
        (status, d["decision"].as_str()),
        (200, Some("allow")),
        "recovers: {d}"
    );
    fleet.finish().await;
}
