//! `reins mcp`: an MCP gateway in the path of an agent's tool calls. It fronts the MCP servers a
//! configuration file names ([`config`], [`upstream`]), serves the agent over stdio or Streamable
//! HTTP ([`gateway`]), and lets a `tools/call` through only when Reins allows it ([`gate`]). It is
//! a client of a Reins server like any other enforcement point: it holds no keys, no policies and
//! no ledger, so the agent cannot reach its tools without a recorded decision.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};

pub mod config;
pub mod gate;
pub mod gateway;
pub mod upstream;

use config::{GatewayConfig, Mode};
use gate::Gate;
use gateway::{Gateway, Shared};

#[derive(Debug, clap::Args)]
pub struct McpArgs {
    /// Serve Streamable HTTP at `http://ADDR/mcp` (each client with its own bearer token)
    /// instead of stdio (one agent, `REINS_TOKEN`).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Host names (or `host:port`) clients may use to reach `--listen`, besides loopback ones.
    #[arg(long = "allowed-host")]
    pub allowed_hosts: Vec<String>,
}

/// The `Authorization: Bearer` token of a header value.
pub(crate) fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

/// Largest JSON-RPC message taken from an HTTP client: a tool call's arguments, with room.
const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// Where the agent is served.
enum Serve {
    Stdio { token: String },
    Http(SocketAddr),
}

/// Runs the gateway until the stdio client goes away or the process is stopped.
pub async fn run(file: Option<PathBuf>, args: McpArgs) -> anyhow::Result<()> {
    let file = file.context("reins mcp needs --config FILE (the gateway's TOML file)")?;
    let config = GatewayConfig::load(&file)?;
    let reins_url = config
        .reins_url
        .clone()
        .or_else(|| std::env::var("REINS_URL").ok())
        .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let pep_token = config
        .pep_token
        .clone()
        .or_else(|| std::env::var("REINS_PEP_TOKEN").ok());
    if (config.mode == Mode::Authzen || config.filter_tools) && pep_token.is_none() {
        tracing::warn!(
            "mode = \"authzen\" and filter_tools ask Reins as a PEP: without pep_token or \
             REINS_PEP_TOKEN they work only against a server run with --pep-auth none"
        );
    }
    let client = crate::client::Client::new(&reins_url, config.timeout)?;
    let gate = Gate::new(
        client,
        config.mode,
        pep_token,
        config.wait_for_approval,
        config.approval_url.clone(),
    );
    // Checked before any server is started: a stdio gateway without a token could only refuse.
    let serve = match args.listen {
        Some(addr) => Serve::Http(addr),
        None => Serve::Stdio {
            token: std::env::var("REINS_TOKEN")
                .ok()
                .filter(|t| !t.trim().is_empty())
                .context("reins mcp on stdio needs the agent's token in REINS_TOKEN")?,
        },
    };
    let upstreams = upstream::connect(&config.servers).await?;
    let shared = Arc::new(Shared {
        config,
        gate,
        upstreams,
    });
    match serve {
        Serve::Http(addr) => serve_http(shared, addr, args.allowed_hosts).await?,
        Serve::Stdio { token } => {
            let service = Gateway::stdio(shared, token)
                .serve(rmcp::transport::stdio())
                .await
                .context("MCP session on stdio")?;
            service.waiting().await.context("MCP session on stdio")?;
        }
    }
    Ok(())
}

async fn serve_http(
    shared: Arc<Shared>,
    addr: SocketAddr,
    allowed_hosts: Vec<String>,
) -> anyhow::Result<()> {
    let mut config = StreamableHttpServerConfig::default();
    config.allowed_hosts.extend(allowed_hosts);
    // Sessions for clients on protocol versions that have them: their id goes to Reins as the
    // decision's session.
    config.legacy_session_mode = true;
    let for_sessions = shared.clone();
    let service = StreamableHttpService::new(
        move || Ok(Gateway::http(for_sessions.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = axum::Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(shared, authenticate))
        // Outermost: a client's message is bounded before anything reads it.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_MESSAGE_BYTES,
        ));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, "MCP gateway listening at /mcp");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Every HTTP request's bearer token is checked by Reins's verifier before the MCP layer sees
/// it. Bad tokens are the one case answered with a 401 (and `WWW-Authenticate`); denials of
/// calls are JSON-RPC errors in a 200, which MCP clients read instead of dropping the session.
async fn authenticate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .map(str::to_owned);
    let challenge = |message: String| {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"reins\"")],
            message,
        )
            .into_response()
    };
    let Some(token) = token else {
        return challenge("a bearer token (the agent's Reins token) is required".into());
    };
    match shared.gate.whoami(&token).await {
        Ok(_) => next.run(request).await,
        Err(e) if e.is_unauthorized() => challenge(e.to_string()),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            format!("cannot check the token: {e}"),
        )
            .into_response(),
    }
}
