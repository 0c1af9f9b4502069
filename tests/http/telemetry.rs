//! OpenTelemetry export from the real binary to an in-test OTLP/HTTP receiver: spans with their
//! parent links and attributes, metric points, no secrets, and a dead collector that changes nothing.

use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{Value, json};

use crate::cli::{free_port, reins, run, text};

type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An OTLP/HTTP receiver keeping every request body by path.
async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let store = received.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: Bytes| {
        let store = store.clone();
        async move {
            store
                .lock()
                .unwrap()
                .push((uri.path().to_owned(), body.to_vec()));
            axum::http::StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), received)
}

struct Server {
    child: Child,
    base: String,
    data: tempfile::TempDir,
    log: std::path::PathBuf,
}

impl Server {
    async fn start(endpoint: &str) -> Self {
        Self::start_with(endpoint, "http/protobuf").await
    }

    async fn start_with(endpoint: &str, protocol: &str) -> Self {
        reins::crypto::install_crypto_provider();
        let data = tempfile::tempdir().unwrap();
        let log = data.path().join("stderr.log");
        let listen = format!("127.0.0.1:{}", free_port());
        let child = reins(&[
            "serve",
            "--data-dir",
            data.path().to_str().unwrap(),
            "--listen",
            &listen,
        ])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        .env("OTEL_SERVICE_NAME", "reins-under-test")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "300")
        .env("OTEL_EXPORTER_OTLP_TIMEOUT", "1000")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
        let base = format!("http://{listen}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !reqwest::get(format!("{base}/readyz"))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(
                Instant::now() < deadline,
                "reins serve did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            child,
            base,
            data,
            log,
        }
    }

    fn token(&self, agent: &str, roles: &str) -> String {
        let mut args = vec![
            "token",
            "mint",
            "--data-dir",
            self.data.path().to_str().unwrap(),
            "--agent",
            agent,
        ];
        if !roles.is_empty() {
            args.extend(["--roles", roles]);
        }
        let out = run(&mut reins(&args));
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_owned()
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Value,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    async fn fleet(&self) -> String {
        let admin = self.token("ops", "admin");
        let (s, _) = self
            .call(
                reqwest::Method::PUT,
                "/v1/tools/search.web",
                &admin,
                json!({"description": "search", "risk": "low", "category": "web"}),
                &[],
            )
            .await;
        assert_eq!(s, 201);
        let (s, _) = self.call(reqwest::Method::PUT, "/v1/agents/bot", &admin, json!({"name": "Bot", "owner": "team", "risk_tier": "limited", "tools": ["search.web"]}), &[]).await;
        assert_eq!(s, 201);
        admin
    }

    /// SIGTERM: the server stops and flushes what is buffered.
    fn stop(mut self) -> String {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        assert!(self.child.wait().unwrap().success());
        std::fs::read_to_string(&self.log).unwrap()
    }
}

fn spans(received: &Received) -> Vec<Span> {
    received
        .lock()
        .unwrap()
        .iter()
        .filter(|(path, _)| path == "/v1/traces")
        .flat_map(|(_, body)| {
            ExportTraceServiceRequest::decode(body.as_slice())
                .unwrap()
                .resource_spans
        })
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect()
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            Any::StringValue(s) => Some(s.clone()),
            Any::IntValue(i) => Some(i.to_string()),
            Any::BoolValue(b) => Some(b.to_string()),
            other => Some(format!("{other:?}")),
        }
    })
}

fn metric_names(received: &Received) -> Vec<String> {
    received
        .lock()
        .unwrap()
        .iter()
        .filter(|(path, _)| path == "/v1/metrics")
        .flat_map(|(_, body)| {
            ExportMetricsServiceRequest::decode(body.as_slice())
                .unwrap()
                .resource_metrics
        })
        .flat_map(|r| r.scope_metrics)
        .flat_map(|s| s.metrics)
        .map(|m| m.name)
        .collect()
}

// Multi-threaded: the receiver must keep answering while the test waits for the server to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_exports_its_spans_under_the_callers_trace_and_its_metrics() {
    let (endpoint, received) = receiver().await;
    let server = Server::start(&endpoint).await;
    let admin = server.fleet().await;
    let agent_token = server.token("bot", "");

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace}-{parent}-01");
    let (status, decision) = server
        .call(reqwest::Method::POST, "/v1/decisions", &agent_token,
              json!({"action": "invoke", "resource": {"type": "Tool", "id": "search.web"}, "context": {"args": {"recipient": "carol-7f3a9@private.example"}}}),
              &[("traceparent", &traceparent)])
        .await;
    assert_eq!(status, 200, "{decision}");
    assert_eq!(decision["decision"], "allow");
    assert_eq!(
        decision["trace_id"], trace,
        "the answer names the caller's trace"
    );
    let id = decision["decision_id"].as_str().unwrap();
    let (_, stored) = server
        .call(
            reqwest::Method::GET,
            &format!("/v1/decisions/{id}"),
            &admin,
            Value::Null,
            &[],
        )
        .await;
    assert_eq!(
        stored["trace_id"], trace,
        "and the stored decision keeps it"
    );

    // Spans are batched; wait for the decision span to arrive.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !spans(&received)
        .iter()
        .any(|s| s.name == "decision" && hex::encode(&s.trace_id) == trace)
    {
        assert!(Instant::now() < deadline, "no decision span exported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Metrics arrive on their own schedule.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !metric_names(&received)
        .iter()
        .any(|n| n == "reins.decisions")
    {
        assert!(Instant::now() < deadline, "no metrics exported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = server.stop();

    let all = spans(&received);
    let in_trace: Vec<&Span> = all
        .iter()
        .filter(|s| hex::encode(&s.trace_id) == trace)
        .collect();
    let by_name = |name: &str| {
        *in_trace.iter().find(|s| s.name == name).unwrap_or_else(|| {
            panic!(
                "no `{name}` span in {:?}",
                in_trace.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        })
    };
    let request = by_name("request");
    assert_eq!(
        hex::encode(&request.parent_span_id),
        parent,
        "the request span is the agent span's child"
    );
    let decision_span = by_name("decision");
    assert_eq!(
        decision_span.parent_span_id, request.span_id,
        "the decision span is the request's child"
    );
    for stage in ["registry", "cedar", "ledger.append"] {
        assert_eq!(
            by_name(stage).parent_span_id,
            decision_span.span_id,
            "{stage}"
        );
    }
    assert_eq!(by_name("identity").parent_span_id, request.span_id);
    for (key, value) in [
        ("gen_ai.agent.id", "bot"),
        ("gen_ai.tool.name", "search.web"),
        ("reins.decision", "allow"),
        ("reins.policy_ids", "declared-tools"),
        ("reins.risk_tier", "limited"),
        ("reins.store", "default"),
    ] {
        assert_eq!(
            attribute(decision_span, key).as_deref(),
            Some(value),
            "{key}"
        );
    }
    assert_eq!(
        attribute(decision_span, "reins.ledger.index"),
        decision["ledger"]["index"].as_u64().map(|i| i.to_string())
    );
    assert_eq!(attribute(request, "trace_id").as_deref(), Some(trace));

    let names = metric_names(&received);
    for metric in [
        "reins.decisions",
        "reins.decision.duration",
        "reins.ledger.append.duration",
        "reins.ledger.batch.size",
        "reins.killswitch.engaged",
        "reins.approvals.pending",
        "reins.ledger.checkpoint.age",
    ] {
        assert!(
            names.iter().any(|n| n == metric),
            "{metric} missing from {names:?}"
        );
    }

    // Nothing secret or private left the process: no token, no key, no context value.
    let exported: Vec<u8> = received
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(_, b)| b.clone())
        .collect();
    let exported = String::from_utf8_lossy(&exported);
    for secret in [
        agent_token.as_str(),
        admin.as_str(),
        "carol-7f3a9@private.example",
        "PRIVATE KEY",
    ] {
        assert!(
            !exported.contains(secret),
            "exported data contains {secret}"
        );
    }
    assert!(!log.contains("export failed"), "{log}");
}

#[tokio::test]
async fn with_the_collector_unreachable_decisions_still_succeed_and_it_is_logged_once() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let server = Server::start(&dead).await;
    server.fleet().await;
    let token = server.token("bot", "");
    for _ in 0..20 {
        let (status, d) = server
            .call(
                reqwest::Method::POST,
                "/v1/decisions",
                &token,
                json!({"action": "invoke", "resource": {"type": "Tool", "id": "search.web"}}),
                &[],
            )
            .await;
        assert_eq!(
            (status, d["decision"].as_str()),
            (200, Some("allow")),
            "{d}"
        );
    }
    // Several export rounds fail meanwhile.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let log = server.stop();
    let failures = log.matches("OpenTelemetry export failed").count();
    assert!(
        (1..=2).contains(&failures),
        "one line per signal, not one per batch: {log}"
    );
}

/// An OTLP/gRPC receiver: the same bodies, re-encoded, under the HTTP paths.
async fn grpc_receiver() -> (String, Received) {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
        MetricsService, MetricsServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };

    #[derive(Clone)]
    struct Sink(Received);

    #[tonic::async_trait]
    impl TraceService for Sink {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            self.0
                .lock()
                .unwrap()
                .push(("/v1/traces".into(), request.into_inner().encode_to_vec()));
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        }
    }

    #[tonic::async_trait]
    impl MetricsService for Sink {
        async fn export(
            &self,
            request: tonic::Request<ExportMetricsServiceRequest>,
        ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
            self.0
                .lock()
                .unwrap()
                .push(("/v1/metrics".into(), request.into_inner().encode_to_vec()));
            Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
        }
    }

    let received: Received = Arc::default();
    let sink = Sink(received.clone());
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(sink.clone()))
            .add_service(MetricsServiceServer::new(sink))
            .serve(addr),
    );
    (format!("http://{addr}"), received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_over_grpc_works_too() {
    let (endpoint, received) = grpc_receiver().await;
    let server = Server::start_with(&endpoint, "grpc").await;
    server.fleet().await;
    let token = server.token("bot", "");
    let (status, _) = server
        .call(
            reqwest::Method::POST,
            "/v1/decisions",
            &token,
            json!({"action": "invoke", "resource": {"type": "Tool", "id": "search.web"}}),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(spans(&received).iter().any(|s| s.name == "decision")
        && metric_names(&received)
            .iter()
            .any(|n| n == "reins.decisions"))
    {
        assert!(Instant::now() < deadline, "nothing exported over gRPC");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = server.stop();
    assert!(!log.contains("export failed"), "{log}");
}

/// Starts `reins --log-format json serve` with `env`, waits until it is ready, stops it and
/// returns what it logged.
async fn json_log_of_a_start(env: &[(&str, &str)]) -> String {
    reins::crypto::install_crypto_provider();
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("stderr.log");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut child = reins(&[
        "--log-format",
        "json",
        "serve",
        "--data-dir",
        data.path().to_str().unwrap(),
        "--listen",
        &listen,
    ])
    .envs(env.iter().copied())
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log).unwrap())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reqwest::get(format!("http://{listen}/readyz"))
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    std::fs::read_to_string(&log).unwrap()
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let text = json_log_of_a_start(&[]).await;
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["fields"]["message"] == "listening"),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["timestamp"].is_string())
    );
}

// The log's filter is the whole subscriber's when nothing is exported: REINS_LOG still decides.
#[tokio::test]
async fn reins_log_decides_what_is_logged() {
    let quiet = json_log_of_a_start(&[("REINS_LOG", "warn")]).await;
    assert!(!quiet.contains("listening"), "{quiet}");
    let chatty = json_log_of_a_start(&[("REINS_LOG", "debug")]).await;
    assert!(chatty.contains("listening"), "{chatty}");
    assert!(chatty.contains(r#""level":"DEBUG""#), "{chatty}");
}
