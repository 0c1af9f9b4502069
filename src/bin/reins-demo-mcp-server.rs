//! `reins-demo-mcp-server`: a small MCP server to try the gateway with, and the one its tests
//! and benchmark put behind it: tools `echo`, `pay` and `delete`, one resource. Every tool call
//! it receives is appended, one JSON line each, to the file named by `MCP_UPSTREAM_CALLS` when
//! set, so a test can prove a denied call never arrived.
//!
//! It serves stdio; with `--http ADDR [--json]` it serves Streamable HTTP at `/mcp` (SSE
//! responses, or JSON ones with `--json`) and prints its address on stdout.

use std::io::Write;
use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    ListResourcesResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, RequestMetaObject, Resource, ResourceContents, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{
    ErrorData, RoleServer, ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router,
};
use serde_json::{Value, json};

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct Echo {
    text: String,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct Pay {
    amount: f64,
    currency: String,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct Delete {
    path: String,
}

#[derive(Clone)]
struct Upstream {
    tool_router: ToolRouter<Self>,
    calls: Option<Arc<std::path::PathBuf>>,
}

impl Upstream {
    fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
            calls: std::env::var_os("MCP_UPSTREAM_CALLS").map(|p| Arc::new(p.into())),
        }
    }

    fn record(&self, tool: &str, args: Value) {
        if let Some(path) = &self.calls {
            let line = json!({"tool": tool, "args": args});
            if let Ok(mut file) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path.as_ref())
            {
                let _ = writeln!(file, "{line}");
            }
        }
    }
}

#[tool_router]
impl Upstream {
    /// Logs the trace context the call came with too (`_meta.traceparent`, SEP-414).
    #[tool(description = "Echo the text back")]
    fn echo(&self, meta: RequestMetaObject, Parameters(Echo { text }): Parameters<Echo>) -> String {
        let traceparent = meta.get_traceparent().map(str::to_owned);
        self.record("echo", json!({ "text": text, "traceparent": traceparent }));
        text
    }

    #[tool(description = "Pay an amount")]
    fn pay(&self, Parameters(Pay { amount, currency }): Parameters<Pay>) -> String {
        self.record("pay", json!({ "amount": amount, "currency": currency }));
        format!("paid {amount} {currency}")
    }

    #[tool(description = "Delete a file")]
    fn delete(&self, Parameters(Delete { path }): Parameters<Delete>) -> String {
        self.record("delete", json!({ "path": path }));
        format!("deleted {path}")
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Upstream {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(vec![Resource::new(
            "memo://readme",
            "readme",
        )]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        if request.uri != "memo://readme" {
            return Err(ErrorData::resource_not_found(request.uri, None));
        }
        Ok(ReadResourceResult::new(vec![ResourceContents::text(
            "hello from upstream",
            request.uri,
        )])
        .into())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--http") => {
            let addr = args.get(1).map_or("127.0.0.1:0", String::as_str);
            let mut config = StreamableHttpServerConfig::default();
            config.json_response = args.iter().any(|a| a == "--json");
            let service = StreamableHttpService::new(
                || Ok(Upstream::new()),
                Arc::new(LocalSessionManager::default()),
                config,
            );
            let app = axum::Router::new().nest_service("/mcp", service);
            let listener = tokio::net::TcpListener::bind(addr).await?;
            println!("{}", listener.local_addr()?);
            std::io::stdout().flush()?;
            axum::serve(listener, app).await?;
        }
        _ => {
            let service = Upstream::new().serve(rmcp::transport::stdio()).await?;
            service.waiting().await?;
        }
    }
    Ok(())
}
