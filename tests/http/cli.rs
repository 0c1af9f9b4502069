//! The `reins` binary as a user runs it.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::repo;

pub fn reins(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reins"));
    command.args(args).current_dir(repo()).stdin(Stdio::null());
    for (key, _) in std::env::vars() {
        if key.starts_with("REINS_") {
            command.env_remove(key);
        }
    }
    command
}

pub fn run(command: &mut Command) -> Output {
    command.output().expect("reins runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mint(data: &str, args: &[&str]) -> String {
    let mut all = vec!["token", "mint", "--data-dir", data];
    all.extend_from_slice(args);
    let out = run(&mut reins(&all));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "{token}");
    token
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Serving {
    child: Child,
    base: String,
}

impl Serving {
    async fn start(data: &str) -> Self {
        Self::start_with(data, &[], None).await
    }

    /// With more environment, and its output (logs) in the file `log`.
    async fn start_with(data: &str, env: &[(&str, &str)], log: Option<&std::path::Path>) -> Self {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut command = reins(&["serve", "--data-dir", data, "--listen", &listen]);
        command.envs(env.iter().copied());
        match log {
            Some(path) => {
                let file = std::fs::File::create(path).unwrap();
                command.stdout(file.try_clone().unwrap()).stderr(file)
            }
            None => command.stdout(Stdio::null()).stderr(Stdio::null()),
        };
        let child = command.spawn().unwrap();
        let base = format!("http://{listen}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = reqwest::get(format!("{base}/readyz")).await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "reins serve did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, base }
    }

    /// SIGTERM, as an init system stops it; waits for a clean exit.
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "clean shutdown: {exit:?}");
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[tokio::test]
async fn quickstart_mint_serve_decide_restart() {
    reins::crypto::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();

    let admin = mint(data, &["--agent", "ops", "--roles", "admin,auditor"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("data/keys/dev-issuer.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let agent = mint(
        data,
        &[
            "--agent",
            "refund-bot",
            "--on-behalf-of",
            "alice",
            "--ttl",
            "10m",
        ],
    );

    let server = Serving::start(data).await;
    let put = reqwest::Method::PUT;
    assert_eq!(
        server
            .call(
                put.clone(),
                "/v1/tools/payments.refund",
                &admin,
                Some(json!({"description": "Refund", "risk": "medium", "category": "payments"}))
            )
            .await
            .0,
        201
    );
    let (status, body) = server
        .call(put, "/v1/agents/refund-bot", &admin, Some(json!({"name": "Refund bot", "owner": "payments", "risk_tier": "limited", "tools": ["payments.refund"]})))
        .await;
    assert_eq!(status, 201, "{body}");
    let ask = |amount: i64| json!({"action": "invoke", "resource": {"type": "Tool", "id": "payments.refund"}, "context": {"args": {"amount": amount}}});
    let (_, allow) = server
        .call(
            reqwest::Method::POST,
            "/v1/decisions",
            &agent,
            Some(ask(5000)),
        )
        .await;
    assert_eq!(allow["decision"], "allow", "{allow}");
    let (_, deny) = server
        .call(
            reqwest::Method::POST,
            "/v1/decisions",
            &agent,
            Some(ask(500000)),
        )
        .await;
    assert_eq!(deny["decision"], "deny", "{deny}");
    server.stop();

    let server = Serving::start(data).await;
    let id = allow["decision_id"].as_str().unwrap();
    let (status, record) = server
        .call(
            reqwest::Method::GET,
            &format!("/v1/decisions/{id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["decision"], "allow");
    assert_eq!(record["on_behalf_of"], "alice");
    assert_eq!(record["request"], ask(5000));
    server.stop();
}

#[tokio::test]
async fn an_invalid_pack_stops_the_start_with_located_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    let pack = dir.path().join("pack");
    std::fs::create_dir(&pack).unwrap();
    std::fs::write(
        pack.join("good.cedar"),
        "permit (principal, action, resource);\n",
    )
    .unwrap();
    std::fs::write(
        pack.join("bad.cedar"),
        "// a comment\npermit (principal, action, resource)\nwhen { principal.nope == 1 };\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let out = run(&mut reins(&[
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--policy-dir",
        pack.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]));
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("bad.cedar:3:"), "{stderr}");
    assert!(stderr.contains("nope"), "{stderr}");

    let out = run(&mut reins(&[
        "policy",
        "check",
        "--policy-dir",
        pack.to_str().unwrap(),
    ]));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("bad.cedar:3:"));
    let out = run(&mut reins(&["policy", "check"]));
    assert!(
        out.status.success(),
        "the default pack is valid: {}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("sha256:"));
}

#[tokio::test]
async fn configuration_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = run(reins(&["serve", "--data-dir", data]).env("REINS_BATCH_MAX", "lots"));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).to_lowercase().contains("batch_max"),
        "{}",
        text(&out.stderr)
    );

    let out = run(reins(&["serve", "--data-dir", data]).env("REINS_LISTN", "127.0.0.1:1"));
    assert!(text(&out.stderr).contains("listn"), "{}", text(&out.stderr));

    let config = dir.path().join("reins.toml");
    std::fs::write(&config, "[identity]\nleeway = \"forever\"\n").unwrap();
    let out = run(&mut reins(&[
        "--config",
        config.to_str().unwrap(),
        "serve",
        "--data-dir",
        data,
    ]));
    assert!(
        text(&out.stderr).contains("leeway"),
        "{}",
        text(&out.stderr)
    );

    let out = run(&mut reins(&[
        "--config",
        "/nonexistent/reins.toml",
        "serve",
    ]));
    assert!(
        text(&out.stderr).contains("does not exist"),
        "{}",
        text(&out.stderr)
    );

    let out = run(
        reins(&["token", "mint", "--agent", "x", "--data-dir", data])
            .env("REINS_IDENTITY__DEV_ISSUER", "false"),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("dev issuer is turned off"),
        "{}",
        text(&out.stderr)
    );

    let out = run(&mut reins(&[
        "token",
        "mint",
        "--agent",
        "not valid",
        "--data-dir",
        data,
    ]));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--agent"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_store_flags_stop_the_start_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let cases = [
        ("Todo=examples/authzen-todo", "stores.Todo"),
        ("default=examples/authzen-todo", "stores.default"),
        ("todo", "NAME=DIR"),
        ("todo=/nonexistent/store", "/nonexistent/store"),
        // A folder that is not a store: the default pack has no schema.cedarschema in it.
        ("todo=policies", "schema.cedarschema"),
    ];
    for (flag, named) in cases {
        let out = run(&mut reins(&[
            "serve",
            "--data-dir",
            data,
            "--listen",
            "127.0.0.1:0",
            "--store",
            flag,
        ]));
        assert!(!out.status.success(), "{flag}");
        assert!(
            text(&out.stderr).contains(named),
            "{flag}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn a_new_policy_folder_whose_tests_fail_stops_the_start() {
    let policies = tempfile::tempdir().unwrap();
    crate::harness::copy_dir(&repo().join("policies"), policies.path());
    std::fs::remove_file(policies.path().join("declared_tools.cedar")).unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = run(&mut reins(&[
        "serve",
        "--data-dir",
        data.path().to_str().unwrap(),
        "--policy-dir",
        policies.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("policy tests failed") && err.contains("default_pack.json"),
        "{err}"
    );
}

/// `http.slow_answer`: an answer that took that long is logged with its request and what the
/// ledger's write path did meanwhile. At 0 every answer is slow, and a decision's answer waited
/// for its entry's commit and fsync.
#[tokio::test]
async fn a_slow_answer_is_logged_with_what_the_ledger_did_meanwhile() {
    reins::crypto::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let log = dir.path().join("serve.log");
    mint(data, &["--agent", "ops", "--roles", "admin"]);
    let agent = mint(data, &["--agent", "unregistered-bot"]);
    let server = Serving::start_with(
        data,
        &[
            ("REINS_HTTP__SLOW_ANSWER", "0ms"),
            ("REINS_LOG_FORMAT", "json"),
        ],
        Some(&log),
    )
    .await;
    let (status, decision) = server
        .call(
            reqwest::Method::POST,
            "/v1/decisions",
            &agent,
            Some(json!({"action": "invoke", "resource": {"type": "Tool", "id": "crm.note"}})),
        )
        .await;
    assert_eq!(status, 200, "{decision}");
    assert!(decision["ledger"]["index"].is_u64(), "recorded: {decision}");
    server.stop();

    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let slow = lines
        .iter()
        .find(|l| l["fields"]["message"] == "slow answer" && l["span"]["uri"] == "/v1/decisions")
        .unwrap_or_else(|| panic!("no slow answer line for the decision in {lines:#?}"));
    let fields = &slow["fields"];
    assert_eq!(fields["status"], 200, "{slow}");
    assert!(
        fields["took_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{slow}"
    );
    let steps = fields["ledger_steps"].as_str().unwrap_or_default();
    assert!(
        steps.contains("commit ") && steps.contains("sync "),
        "the decision's commit and fsync ran while it waited: {slow}"
    );
    assert!(
        fields["ledger_longest"]
            .as_str()
            .is_some_and(|s| s.ends_with("ms")),
        "{slow}"
    );
    assert_eq!(slow["level"], "WARN", "{slow}");
}
