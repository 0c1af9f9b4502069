//! Replicas as an operator runs them: `reins serve` processes on one PostgreSQL database with one
//! keys folder, each reached through a TCP proxy the test can cut (a network partition between
//! that replica and the database, or a database outage when every proxy is cut).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reins::identity::{DevIssuer, MintRequest};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A TCP proxy to the database; `cut` closes every connection through it and refuses new ones
/// until `restore`.
pub struct Proxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn to(database_url: &str) -> Self {
        let url = url::Url::parse(database_url).unwrap();
        let upstream = format!(
            "{}:{}",
            url.host_str().unwrap_or("127.0.0.1"),
            url.port().unwrap_or(5432)
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Default::default();
        let accept = tokio::spawn({
            let (cut, connections) = (cut.clone(), connections.clone());
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        continue;
                    }
                    let upstream = upstream.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(&upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    connections.lock().await.push(task);
                }
            }
        });
        Self {
            port,
            cut,
            connections,
            accept,
        }
    }

    /// The database URL through this proxy.
    pub fn url(&self, database_url: &str) -> String {
        let mut url = url::Url::parse(database_url).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(self.port)).unwrap();
        url.to_string()
    }

    pub async fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for task in self.connections.lock().await.drain(..) {
            task.abort();
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// One `reins serve` process.
pub struct Replica {
    pub name: String,
    pub base: String,
    pub data: PathBuf,
    database_url: String,
    keys: PathBuf,
    child: Option<Child>,
    /// Its log lines so far.
    pub log: Arc<std::sync::Mutex<Vec<String>>>,
    /// Extra environment (configuration) for its process.
    env: Vec<(String, String)>,
}

impl Replica {
    /// Starts a replica on `database_url` with the shared `keys` folder and its own data dir
    /// under `root`, and waits until it listens.
    pub async fn start(name: &str, root: &Path, keys: &Path, database_url: &str) -> Self {
        Self::start_with(name, root, keys, database_url, &[]).await
    }

    /// [`Replica::start`] with configuration from the environment (`REINS_...`).
    pub async fn start_with(
        name: &str,
        root: &Path,
        keys: &Path,
        database_url: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let mut replica = Self {
            name: name.to_owned(),
            base: String::new(),
            data: root.join(name),
            database_url: database_url.to_owned(),
            keys: keys.to_owned(),
            child: None,
            log: Default::default(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        replica.spawn().await;
        replica
    }

    async fn spawn(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_reins"));
        command
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--keys-dir")
            .arg(&self.keys)
            .arg("--database-url")
            .arg(&self.database_url)
            .arg("--policy-dir")
            .arg(repo().join("policies"))
            .arg("--schema-file")
            .arg(repo().join("schemas/reins.cedarschema"))
            .env("REINS_LEDGER__CHECKPOINT_INTERVAL", "100ms")
            .env("REINS_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("reins serve starts");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            let (tx, log) = (tx.clone(), self.log.clone());
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Ok(mut log) = log.lock() {
                        log.push(line.clone());
                    }
                    let _ = tx.send(line);
                }
            });
        }
        let addr = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = rx.recv().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["fields"]["message"] == "listening"
                {
                    return v["fields"]["addr"].as_str().map(str::to_owned);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            panic!(
                "replica {} did not start:\n{}",
                self.name,
                self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
            )
        });
        self.base = format!("http://{addr}");
        self.child = Some(child);
    }

    /// `kill -9`: no shutdown, no final checkpoint.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts it again on its data dir after a kill or stop.
    pub async fn restart(&mut self) {
        self.spawn().await;
    }

    /// SIGTERM, and waits for it to finish its queue and final checkpoint.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status();
            }
            let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
        }
    }

    /// Whether its log holds a line whose message contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.log
            .lock()
            .map(|l| l.iter().any(|line| line.contains(text)))
            .unwrap_or(false)
    }
}

/// Tokens from the dev issuer key in the shared keys folder.
pub struct Tokens {
    issuer: DevIssuer,
}

impl Tokens {
    pub fn new(keys: &Path) -> Self {
        Self {
            issuer: DevIssuer::load(keys).unwrap().expect("dev key exists"),
        }
    }

    pub fn mint(&self, agent: &str, on_behalf_of: Option<&str>, roles: &[&str]) -> String {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        let user = on_behalf_of.map(|u| u.parse().unwrap());
        self.issuer
            .mint(&MintRequest {
                agent: &agent.parse().unwrap(),
                on_behalf_of: user.as_ref(),
                roles: &roles,
                ttl: Duration::from_secs(3600),
                audience: "reins",
                roles_claim: "roles",
            })
            .unwrap()
    }
}

/// A JSON client with short timeouts: a replica that is gone must not hold a test up.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
}

impl Client {
    pub fn new() -> Self {
        reins::crypto::install_crypto_provider();
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    /// Sends JSON; the status and body, or None when the replica did not answer.
    pub async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        token: &str,
        body: Option<Value>,
    ) -> Option<(u16, Value)> {
        let mut request = self.http.request(method, url).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.ok()?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        Some((status, body))
    }

    pub async fn post(&self, url: &str, token: &str, body: Value) -> Option<(u16, Value)> {
        self.send(reqwest::Method::POST, url, token, Some(body))
            .await
    }

    pub async fn put(&self, url: &str, token: &str, body: Value) -> Option<(u16, Value)> {
        self.send(reqwest::Method::PUT, url, token, Some(body))
            .await
    }

    pub async fn get(&self, url: &str, token: &str) -> Option<(u16, Value)> {
        self.send(reqwest::Method::GET, url, token, None).await
    }

    /// A text answer (a checkpoint), if 200.
    pub async fn text(&self, url: &str, token: &str) -> Option<String> {
        let response = self.http.get(url).bearer_auth(token).send().await.ok()?;
        if response.status() != 200 {
            return None;
        }
        response.text().await.ok()
    }

    /// A decision for `tool` by the token's agent.
    pub async fn decide(&self, base: &str, token: &str, tool: &str) -> Option<(u16, Value)> {
        self.post(
            &format!("{base}/v1/decisions"),
            token,
            json!({"action": "invoke", "resource": {"type": "Tool", "id": tool}}),
        )
        .await
    }
}

/// Registers `tool` (medium risk) and `agent` (limited tier) declaring it, through `base`.
pub async fn register(client: &Client, base: &str, admin: &str, agent: &str, tools: &[&str]) {
    for tool in tools {
        let (status, body) = client
            .put(
                &format!("{base}/v1/tools/{tool}"),
                admin,
                json!({"description": "test tool", "risk": "medium", "category": "test"}),
            )
            .await
            .unwrap();
        assert!(status == 200 || status == 201, "{status} {body}");
    }
    let (status, body) = client
        .put(
            &format!("{base}/v1/agents/{agent}"),
            admin,
            json!({"name": agent, "owner": "team", "risk_tier": "limited", "tools": tools}),
        )
        .await
        .unwrap();
    assert!(status == 200 || status == 201, "{status} {body}");
}
