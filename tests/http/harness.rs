//! A Reins server on an ephemeral port with its own data dir, plus a client and token minting.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reins::config::{Config, Overrides};
use reins::identity::{DevIssuer, MintRequest};
use reins::server::{RunningServer, start};
use serde_json::{Value, json};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub struct TestServer {
    pub server: Option<RunningServer>,
    pub data: tempfile::TempDir,
    pub config: Config,
    pub client: reqwest::Client,
    pub base: String,
    /// On PostgreSQL: the test's database, dropped with the server.
    pub _database: Option<DatabaseGuard>,
}

/// Config for a fresh data dir with the default pack (or `policy_dir`).
pub fn test_config(data: &Path, policy_dir: Option<&Path>) -> Config {
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: Some(data.to_path_buf()),
        policy_dir: Some(
            policy_dir
                .map(Path::to_path_buf)
                .unwrap_or_else(|| repo().join("policies")),
        ),
        schema_file: Some(repo().join("schemas/reins.cedarschema")),
        ..Overrides::default()
    };
    let mut config = Config::load(None, &overrides).expect("test config");
    config.request_timeout = Duration::from_secs(30);
    config.ledger.checkpoint_interval = Duration::from_millis(50);
    config.database.url = postgres::database();
    config
}

/// `REINS_TEST_BACKEND=postgres` runs this suite on PostgreSQL (`REINS_TEST_DATABASE_URL`): each
/// server gets a database of its own, dropped with it. Tests of SQLite's own files say so with
/// [`sqlite_only`].
pub mod postgres {
    use sqlx::{Connection, Executor, PgConnection};

    pub fn enabled() -> bool {
        std::env::var("REINS_TEST_BACKEND").is_ok_and(|b| b == "postgres")
    }

    fn admin() -> String {
        let base = std::env::var("REINS_TEST_DATABASE_URL")
            .expect("REINS_TEST_BACKEND=postgres needs REINS_TEST_DATABASE_URL");
        let mut url = url::Url::parse(&base).expect("a URL");
        url.set_path("/postgres");
        url.to_string()
    }

    fn run(sql: String) {
        let admin = admin();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut conn = PgConnection::connect(&admin).await.unwrap();
                conn.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
            })
        })
        .join()
        .unwrap();
    }

    /// A new database's URL when the suite runs on PostgreSQL.
    pub fn database() -> Option<String> {
        if !enabled() {
            return None;
        }
        let name = format!("reins_http_{}", uuid::Uuid::new_v4().simple());
        run(format!("CREATE DATABASE {name}"));
        let mut url = url::Url::parse(&admin()).unwrap();
        url.set_path(&format!("/{name}"));
        Some(url.to_string())
    }

    pub fn drop_database(url: &str) {
        if let Some(name) = url::Url::parse(url)
            .ok()
            .map(|u| u.path().trim_start_matches('/').to_owned())
            .filter(|n| n.starts_with("reins_http_"))
        {
            run(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// Skips a test of SQLite's own files when the suite runs on PostgreSQL, saying so.
#[macro_export]
macro_rules! sqlite_only {
    () => {
        if $crate::harness::postgres::enabled() {
            eprintln!("skipped on PostgreSQL: this test is about SQLite's own files");
            return;
        }
    };
}

/// Drops a test's PostgreSQL database when the test is done with it.
pub struct DatabaseGuard(String);

impl Drop for DatabaseGuard {
    fn drop(&mut self) {
        // The server's connections close with it; FORCE ends any that linger.
        postgres::drop_database(&self.0);
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with_policies(None).await
    }

    pub async fn with_policies(policy_dir: Option<&Path>) -> Self {
        let data = tempfile::tempdir().unwrap();
        let config = test_config(data.path(), policy_dir);
        Self::with_config(data, config).await
    }

    pub async fn with_config(data: tempfile::TempDir, config: Config) -> Self {
        reins::crypto::install_crypto_provider();
        let server = start(config.clone()).await.expect("server starts");
        let base = format!("http://{}", server.addr);
        let database = config.database.url.clone().map(DatabaseGuard);
        Self {
            server: Some(server),
            data,
            config,
            client: reqwest::Client::new(),
            base,
            _database: database,
        }
    }

    /// Stops the server and starts a new one on the same data dir.
    pub async fn restart(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
        let server = start(self.config.clone()).await.expect("server restarts");
        self.base = format!("http://{}", server.addr);
        self.server = Some(server);
    }

    pub fn dev(&self) -> DevIssuer {
        DevIssuer::load(&self.config.keys_dir())
            .unwrap()
            .expect("dev key exists")
    }

    pub fn token(&self, agent: &str, roles: &[&str]) -> String {
        self.mint(agent, None, roles)
    }

    pub fn mint(&self, agent: &str, on_behalf_of: Option<&str>, roles: &[&str]) -> String {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        let user = on_behalf_of.map(|u| u.parse().unwrap());
        self.dev()
            .mint(&MintRequest {
                agent: &agent.parse().unwrap(),
                on_behalf_of: user.as_ref(),
                roles: &roles,
                ttl: Duration::from_secs(600),
                audience: &self.config.identity.audience,
                roles_claim: &self.config.identity.roles_claim,
            })
            .unwrap()
    }

    pub fn admin(&self) -> String {
        self.token("ops-admin", &["admin"])
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends JSON with a bearer token; returns status and JSON body (Null if none).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, path, Some(token), Some(&body))
            .await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(token), Some(&body))
            .await
    }

    pub async fn tool(&self, id: &str, risk: &str) {
        let (status, body) = self
            .put(
                &format!("/v1/tools/{id}"),
                &self.admin(),
                json!({"description": format!("{id} tool"), "risk": risk, "category": "test"}),
            )
            .await;
        assert!(status == 201 || status == 200, "{status} {body}");
    }

    pub async fn agent(&self, id: &str, tier: &str, tools: &[&str]) {
        self.agent_with(
            id,
            json!({"name": id, "owner": "team-a", "risk_tier": tier, "tools": tools}),
        )
        .await;
    }

    pub async fn agent_with(&self, id: &str, record: Value) {
        let (status, body) = self
            .put(&format!("/v1/agents/{id}"), &self.admin(), record)
            .await;
        assert!(status == 201 || status == 200, "{status} {body}");
    }

    /// Asks for `invoke` on `tool` as `token`.
    pub async fn invoke(&self, token: &str, tool: &str, args: Value) -> (u16, Value) {
        self.post("/v1/decisions", token, json!({"action": "invoke", "resource": {"type": "Tool", "id": tool}, "context": {"args": args}})).await
    }

    /// How many decisions are stored.
    pub async fn stored_decisions(&self) -> usize {
        let auditor = self.token("auditor-1", &["auditor"]);
        let (status, body) = self.get("/v1/decisions?limit=1000", &auditor).await;
        assert_eq!(status, 200, "{body}");
        body["decisions"].as_array().unwrap().len()
    }
}

/// The policy ids in a decision's reasons.
pub fn policy_ids(decision: &Value) -> Vec<String> {
    decision["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["policy_id"].as_str().map(str::to_owned))
        .collect()
}

/// The reason codes of a decision.
pub fn codes(decision: &Value) -> Vec<String> {
    decision["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_owned())
        .collect()
}

/// A folder holding the default pack's files plus `extra` files.
pub fn pack_with(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "cedar") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    for (name, text) in extra {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

impl TestServer {
    /// GETs a text body.
    pub async fn get_text(&self, path: &str, token: &str) -> (u16, String) {
        let response = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Waits until a signed checkpoint covers `size` entries; returns the note.
    pub async fn checkpoint_covering(&self, size: u64) -> String {
        let auditor = self.token("auditor-1", &["auditor"]);
        for _ in 0..200 {
            let (status, note) = self.get_text("/v1/ledger/checkpoint", &auditor).await;
            if status == 200
                && note.lines().nth(1).and_then(|l| l.parse::<u64>().ok()) >= Some(size)
            {
                return note;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no checkpoint covering {size} entries");
    }

    /// A `reins` command reading this server's database (on PostgreSQL, through
    /// `REINS_DATABASE_URL`; on SQLite the data dir names it).
    pub fn on_database<'a>(
        &self,
        command: &'a mut std::process::Command,
    ) -> &'a mut std::process::Command {
        if let Some(url) = &self.config.database.url {
            command.env("REINS_DATABASE_URL", url);
        }
        command
    }

    pub fn ledger_size(&self) -> u64 {
        self.server.as_ref().unwrap().state.ledger.size()
    }
}

impl TestServer {
    /// Stops the server and checks its ledger offline with `reins ledger verify`.
    pub async fn stop_and_verify_ledger(&mut self) {
        use crate::cli::{reins, run, text};
        let data = self.data.path().to_str().unwrap().to_owned();
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
        let mut args = vec!["ledger", "verify", "--data-dir", &data];
        let url = self.config.database.url.clone().unwrap_or_default();
        if !url.is_empty() {
            args.extend(["--database-url", &url]);
        }
        let out = run(&mut reins(&args));
        assert!(
            out.status.success(),
            "ledger verify: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

/// Copies a folder tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target)
        } else {
            std::fs::copy(&path, &target).map(|_| ()).unwrap()
        }
    }
}

/// Polls until `check` holds, every 50 ms for at most 10 s: for what the server does on its own
/// time (sweepers, watchers, background tasks), instead of sleeping a fixed guess.
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within 10 s");
}
