//! What an attacker, a misbehaving client or a second process tried, each reproduced: Reins stays
//! up, answers, and recovers without a restart.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli::{free_port, reins, run, text};
use crate::harness::{TestServer, codes, repo, test_config};

fn deep_policies() -> Vec<(&'static str, String)> {
    let when = |e: String| format!("permit(principal, action, resource) when {{ {e} }};\n");
    let mut ifs = "true".to_owned();
    for _ in 0..10_000 {
        ifs = format!("if context has a then {ifs} else false");
    }
    vec![
        (
            "parens.cedar",
            when(format!("{}true{}", "(".repeat(145), ")".repeat(145))),
        ),
        (
            "record.cedar",
            when(format!(
                "context == {}1{}",
                "{a:".repeat(1000),
                "}".repeat(1000)
            )),
        ),
        (
            "set.cedar",
            when(format!(
                "context has s && context.s == {}1{}",
                "[".repeat(1000),
                "]".repeat(1000)
            )),
        ),
        ("ifs.cedar", when(ifs)),
        (
            "sum.cedar",
            when(format!("{} == 2", vec!["1"; 100_000].join(" + "))),
        ),
    ]
}

/// Each upload that used to overflow the stack and abort the process is a 422 naming the file
/// and line, and the server keeps answering.
#[tokio::test]
async fn deep_policies_are_refused_and_the_server_lives() {
    let s = TestServer::start().await;
    s.tool("search.web", "low").await;
    s.agent("bot", "limited", &["search.web"]).await;
    let admin = s.token("pat", &["policy_admin"]);
    for (name, text) in deep_policies() {
        let (status, body) = s
            .post(
                "/v1/policies",
                &admin,
                json!({"files": {name: text, "ok.cedar": "permit(principal, action, resource);"}}),
            )
            .await;
        assert_eq!(status, 422, "{name}: {body}");
        let d = &body["error"]["details"]["diagnostics"][0];
        assert_eq!(d["file"], name, "{body}");
        assert_eq!(d["line"], 1, "{body}");
        assert!(
            d["message"].as_str().unwrap().contains("nested deeper"),
            "{body}"
        );
        let (status, d) = s
            .invoke(&s.token("bot", &[]), "search.web", json!({}))
            .await;
        assert_eq!((status, &d["decision"]), (200, &json!("allow")), "{d}");
    }
}

/// The same texts in a policy folder: `reins policy check` refuses them with a located
/// diagnostic instead of accepting (or crashing on) them, and `reins serve` does not start.
#[test]
fn deep_policies_in_a_folder_are_refused_by_check_and_serve() {
    for (name, policy) in deep_policies() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name), &policy).unwrap();
        let policies = dir.path().to_str().unwrap();
        let schema = repo().join("schemas/reins.cedarschema");
        let out = run(&mut reins(&[
            "policy",
            "check",
            "--policy-dir",
            policies,
            "--schema-file",
            schema.to_str().unwrap(),
        ]));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("{name}:1:")) && stderr.contains("nested deeper"),
            "{name}: {stderr}"
        );
        let data = tempfile::tempdir().unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        let out = run(&mut reins(&[
            "serve",
            "--data-dir",
            data.path().to_str().unwrap(),
            "--policy-dir",
            policies,
            "--listen",
            &listen,
        ]));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains("nested deeper"), "{name}: {stderr}");
    }
}

/// Sends the start of a request head and nothing more.
async fn partial_header(addr: &str) -> Option<tokio::net::TcpStream> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\n")
        .await
        .ok()?;
    Some(stream)
}

/// Whether the server closed `stream` (it reads EOF or a reset, perhaps after an answer).
async fn closed_by_server(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match tokio::time::timeout(deadline - Instant::now(), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
    false
}

/// A connection that never finishes its request head is closed after the header read timeout,
/// and connections over the cap are answered 503 at once instead of waiting.
#[tokio::test]
async fn partial_headers_time_out_and_excess_connections_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(data.path(), None);
    config.http.header_read_timeout = Duration::from_millis(800);
    config.http.max_connections = 8;
    let s = TestServer::with_config(data, config).await;
    s.tool("search.web", "low").await;
    s.agent("bot", "limited", &["search.web"]).await;
    let addr = s.base.trim_start_matches("http://").to_owned();

    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(partial_header(&addr).await.expect("connects"));
    }
    // The ninth is told to come back, and closed, at once.
    let mut ninth = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(2), ninth.read_to_string(&mut answer))
        .await
        .expect("answered at once")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");

    // Each held connection is closed once its head is overdue.
    for stream in &mut held {
        assert!(closed_by_server(stream, Duration::from_secs(5)).await);
    }
    // Their slots are free again.
    let (status, d) = s
        .invoke(&s.token("bot", &[]), "search.web", json!({}))
        .await;
    assert_eq!((status, &d["decision"]), (200, &json!("allow")), "{d}");
}

/// `reins serve` under an open-file limit of 256, with 300 connections that send half a request
/// head: the ledger keeps its descriptors (decisions on an open connection are allowed during the
/// attack), and once the attackers are gone every new connection is served again, with no
/// restart. Before, the WAL flush failed with EMFILE and the ledger refused every append until a
/// restart.
#[tokio::test]
async fn the_ledger_survives_a_descriptor_exhaustion_attack() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap().to_owned();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new("sh")
        .args(["-c", "ulimit -n 256 && exec \"$@\"", "sh"])
        .arg(env!("CARGO_BIN_EXE_reins"))
        .args(["serve", "--data-dir", &dir, "--listen", &listen])
        .env("REINS_HTTP__HEADER_READ_TIMEOUT", "2s")
        .current_dir(repo())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://{listen}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            Instant::now() < deadline,
            "reins serve did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mint = |args: &[&str]| {
        let mut all = vec!["token", "mint", "--data-dir", &dir];
        all.extend_from_slice(args);
        text(&run(&mut reins(&all)).stdout).trim().to_owned()
    };
    let admin = mint(&["--agent", "ops", "--roles", "admin"]);
    let bot = mint(&["--agent", "bot"]);
    let put = |path: &str, body: Value| {
        client
            .put(format!("{base}{path}"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
    };
    put(
        "/v1/tools/search.web",
        json!({"description": "search", "risk": "low", "category": "web"}),
    )
    .await
    .unwrap();
    put(
        "/v1/agents/bot",
        json!({"name": "bot", "owner": "team", "risk_tier": "limited", "tools": ["search.web"]}),
    )
    .await
    .unwrap();
    let decide = |client: &reqwest::Client| {
        client
            .post(format!("{base}/v1/decisions"))
            .bearer_auth(&bot)
            .json(&json!({"action": "invoke", "resource": {"type": "Tool", "id": "search.web"}}))
            .send()
    };
    // One keep-alive connection, open before the attack.
    let kept = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let d: Value = decide(&kept).await.unwrap().json().await.unwrap();
    assert_eq!(d["decision"], "allow", "{d}");

    let mut attackers = Vec::new();
    for _ in 0..300 {
        if let Some(stream) = partial_header(&listen).await {
            attackers.push(stream);
        }
    }
    for _ in 0..5 {
        let d: Value = decide(&kept).await.unwrap().json().await.unwrap();
        assert_eq!(d["decision"], "allow", "during the attack: {d}");
    }
    drop(attackers);
    // After the attack (and the held heads' timeout), fresh connections are served and the
    // ledger takes appends: no latch.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fresh = reqwest::Client::new();
        if let Ok(response) = decide(&fresh).await
            && response.status() == 200
        {
            let d: Value = response.json().await.unwrap();
            assert_eq!(d["decision"], "allow", "after the attack: {d}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not served again after the attack"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let log = text(&out.stderr);
    assert!(!log.contains("Too many open files"), "{log}");
}

/// A second server on a data dir in use refuses to start, names the holder's pid and writes
/// nothing; the first is unharmed. A start on a port already taken writes nothing either.
#[tokio::test]
async fn a_second_server_on_the_same_data_dir_is_refused() {
    let s = TestServer::start().await;
    s.tool("search.web", "low").await;
    s.agent("bot", "limited", &["search.web"]).await;
    let size = s.ledger_size();
    let data = s.data.path().to_str().unwrap().to_owned();

    let listen = format!("127.0.0.1:{}", free_port());
    let out = run(&mut reins(&[
        "serve",
        "--data-dir",
        &data,
        "--listen",
        &listen,
    ]));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is in use by another reins process")
            && stderr.contains(&format!("(pid {})", std::process::id())),
        "{stderr}"
    );
    let (status, d) = s
        .invoke(&s.token("bot", &[]), "search.web", json!({}))
        .await;
    assert_eq!((status, &d["decision"]), (200, &json!("allow")), "{d}");
    assert_eq!(s.ledger_size(), size + 1);
    let (status, ready) = s.send(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 200, "{ready}");

    // A start on the first server's port, with a data dir of its own, fails before writing.
    let fresh = tempfile::tempdir().unwrap();
    let taken = s.base.trim_start_matches("http://").to_owned();
    let out = run(&mut reins(&[
        "serve",
        "--data-dir",
        fresh.path().to_str().unwrap(),
        "--listen",
        &taken,
    ]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        !fresh.path().join("reins.db").exists(),
        "a start that cannot listen created a database"
    );
}

/// Mounts a small tmpfs for the data dir. Root and mount(2) are what this workplace and CI have;
/// without them this test fails, it does not pass silently.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "this test needs to mount a tmpfs (root): mount exited {status}"
        );
        Self(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

/// Fills the file system holding `dir` with `filler`, up to ENOSPC.
fn fill(filler: &std::path::Path) {
    let mut f = std::fs::File::create(filler).unwrap();
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
}

/// On a full disk every decision is denied `ledger_unavailable` and `/readyz` says so (it used to
/// answer 200 throughout); once space is free again the ledger takes appends and `/readyz` is 200,
/// with no restart, and no entry was answered allow without being stored.
#[tokio::test]
async fn a_full_disk_fails_readiness_and_recovers_without_a_restart() {
    crate::sqlite_only!();
    let disk = Tmpfs::mount("24m");
    let data = tempfile::TempDir::new_in(disk.0.path()).unwrap();
    let config = test_config(data.path(), None);
    let s = TestServer::with_config(data, config).await;
    s.tool("search.web", "low").await;
    s.agent("bot", "limited", &["search.web"]).await;
    let bot = s.token("bot", &[]);
    let filler = disk.0.path().join("filler");
    fill(&filler);

    let mut allowed = Vec::new();
    let mut denied = 0;
    for _ in 0..3000 {
        let (status, d) = s
            .invoke(&bot, "search.web", json!({"pad": "x".repeat(2000)}))
            .await;
        assert_eq!(status, 200, "{d}");
        if d["decision"] == "allow" {
            allowed.push(d["ledger"]["index"].as_u64().unwrap());
        } else {
            assert_eq!(codes(&d), ["ledger_unavailable"], "{d}");
            denied += 1;
            if denied == 3 {
                break;
            }
        }
    }
    assert_eq!(denied, 3, "the disk never filled");
    let (status, ready) = s.send(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 503, "{ready}");
    assert!(
        ready["ledger"]
            .as_str()
            .unwrap()
            .contains("the last ledger commit failed"),
        "{ready}"
    );

    std::fs::remove_file(&filler).unwrap();
    // The probe finds out within a second or two, with no decision asked.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, ready) = s.send(reqwest::Method::GET, "/readyz", None, None).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still not ready: {ready}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, d) = s.invoke(&bot, "search.web", json!({})).await;
    assert_eq!((status, &d["decision"]), (200, &json!("allow")), "{d}");
    // Every allow the agent was given is in the ledger.
    for index in allowed {
        let (status, entry) = s
            .get(&format!("/v1/ledger/entries/{index}"), &s.admin())
            .await;
        assert_eq!(status, 200, "{entry}");
        assert_eq!(entry["entry"]["event"], "decision", "{entry}");
    }
}

/// Ids that are relative paths, or need escaping in a URL, are refused wherever an id is taken.
#[tokio::test]
async fn ids_follow_one_grammar() {
    let s = TestServer::start().await;
    let tool = json!({"description": "x", "risk": "low", "category": "x"});
    for bad in ["..", "%2e%2e", "..%2Fx", ".hidden", "a..b", "a+b"] {
        let (status, body) = s
            .put(&format!("/v1/tools/{bad}"), &s.admin(), tool.clone())
            .await;
        assert!(
            status == 400 || status == 404,
            "PUT /v1/tools/{bad}: {status} {body}"
        );
    }
    let (status, body) = s.put("/v1/tools/a.b-c_d:e@f", &s.admin(), tool).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = s.get("/v1/tools", &s.admin()).await;
    assert_eq!(status, 200);
    assert!(!body.to_string().contains(".."), "{body}");
}

/// Records stored when the grammar allowed `/`: start-up sets them aside (and logs them) instead
/// of refusing to start or serving an id that cannot be addressed.
#[tokio::test]
async fn legacy_ids_are_reported_at_start_and_not_served() {
    crate::sqlite_only!();
    let mut s = TestServer::start().await;
    s.tool("search.web", "low").await;
    s.agent("bot", "limited", &["search.web"]).await;
    if let Some(server) = s.server.take() {
        server.stop().await;
    }
    let db = rusqlite::Connection::open(s.data.path().join("reins.db")).unwrap();
    db.execute(
        "INSERT INTO agents (id, version, record, created_at, updated_at)
         SELECT 'team/bot', version, record, created_at, updated_at FROM agents WHERE id = 'bot'",
        [],
    )
    .unwrap();
    drop(db);
    s.restart().await;
    let (status, body) = s.get("/v1/agents", &s.admin()).await;
    assert_eq!(status, 200, "{body}");
    let text = body.to_string();
    assert!(text.contains("\"bot\""), "{body}");
    assert!(!text.contains("team/bot"), "{body}");
}

/// An HTTP/2 connection that goes quiet is closed after `http.idle_timeout` (hyper's header read
/// timeout only covers HTTP/1), and its slot is given back.
#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(data.path(), None);
    config.http.idle_timeout = Duration::from_millis(500);
    let s = TestServer::with_config(data, config).await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut h2 = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // The client preface and an empty SETTINGS frame: a valid, then silent, HTTP/2 client.
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    h2.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let started = Instant::now();
    assert!(
        closed_by_server(&mut h2, Duration::from_secs(5)).await,
        "an idle HTTP/2 connection stayed open"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "closed before it was idle"
    );
}
