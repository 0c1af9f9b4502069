//! The MCP server the agent talks to: the upstream servers' tools, prompts and resources under the
//! gateway's names, with every `tools/call` decided by Reins ([`super::gate`]) before it is
//! forwarded, the other methods forwarded or refused as the configuration says, and everything
//! else refused. One [`Gateway`] serves one client connection: the stdio client, or one Streamable
//! HTTP session (whose token and session id come with each HTTP request).

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CompleteRequestParams, CompleteResult, CustomRequest,
    CustomResult, GetPromptRequestParams, GetPromptResponse, Implementation, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::json;
use tracing::Instrument;

use super::config::GatewayConfig;
use super::gate::{Ask, DENIED, Gate};
use super::upstream::Upstreams;
use crate::client::TraceContext;

/// What every connection shares: the configuration, the way to Reins, the upstream sessions.
pub struct Shared {
    pub config: GatewayConfig,
    pub gate: Gate,
    pub upstreams: Arc<Upstreams>,
}

/// How the connection's agent is known.
#[derive(Clone)]
enum Agent {
    /// One agent for the process's life: its token, and one MCP session id made at start.
    Stdio { token: String, session: String },
    /// Each HTTP request carries the agent's bearer token (checked before it reached here) and,
    /// once a session is open, its `Mcp-Session-Id`.
    Http,
}

#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
    agent: Agent,
}

/// The agent behind one request.
struct Asker {
    token: String,
    session: Option<String>,
    trace: TraceContext,
}

impl Gateway {
    pub fn stdio(shared: Arc<Shared>, token: String) -> Self {
        Self {
            shared,
            agent: Agent::Stdio {
                token,
                session: format!("mcp-{}", uuid::Uuid::new_v4()),
            },
        }
    }

    pub fn http(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            agent: Agent::Http,
        }
    }

    fn asker(
        &self,
        context: &RequestContext<RoleServer>,
        meta: Option<&rmcp::model::RequestMetaObject>,
    ) -> Result<Asker, ErrorData> {
        let parts = context.extensions.get::<axum::http::request::Parts>();
        let header = |name: &str| {
            parts
                .and_then(|p| p.headers.get(name))
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        // `_meta` first (SEP-414), then the HTTP request's headers.
        let metas = [meta, Some(&context.meta)];
        let from_meta = |get: fn(&rmcp::model::MetaObject) -> Option<&str>| {
            metas
                .iter()
                .flatten()
                .find_map(|m| get(m))
                .map(str::to_owned)
        };
        let trace = TraceContext {
            traceparent: from_meta(|m| m.get_traceparent()).or_else(|| header("traceparent")),
            tracestate: from_meta(|m| m.get_tracestate()).or_else(|| header("tracestate")),
        };
        match &self.agent {
            Agent::Stdio { token, session } => Ok(Asker {
                token: token.clone(),
                session: Some(session.clone()),
                trace,
            }),
            Agent::Http => {
                let token = header("authorization")
                    .and_then(|v| super::bearer(&v).map(str::to_owned))
                    .ok_or_else(|| {
                        ErrorData::new(DENIED, "no bearer token on the request", None)
                    })?;
                Ok(Asker {
                    token,
                    session: header("mcp-session-id"),
                    trace,
                })
            }
        }
    }

    /// The refusal of a method the gateway does not pass.
    fn refuse(&self, method: &str) -> ErrorData {
        ErrorData::new(
            DENIED,
            format!(
                "the Reins gateway does not pass `{method}` (see `methods` in its configuration)"
            ),
            Some(json!({ "method": method })),
        )
    }

    fn check_forwarded(&self, method: &str) -> Result<(), ErrorData> {
        if self.shared.config.forwards(method) {
            Ok(())
        } else {
            Err(self.refuse(method))
        }
    }

    /// The tools the agent may call at all, asking Reins's AuthZEN resource search (which
    /// records nothing) with the agent's id and no arguments.
    async fn visible(
        &self,
        context: &RequestContext<RoleServer>,
        tools: Vec<rmcp::model::Tool>,
    ) -> Result<Vec<rmcp::model::Tool>, ErrorData> {
        let asker = self.asker(context, None)?;
        let allowed = self.shared.gate.searchable_tools(&asker.token).await?;
        Ok(tools
            .into_iter()
            .filter(|t| allowed.contains(t.name.as_ref()))
            .collect())
    }
}

impl ServerHandler for Gateway {
    fn get_info(&self) -> ServerConfig {
        let upstreams = &self.shared.upstreams;
        let mut capabilities = ServerCapabilities::builder().enable_tools().build();
        if upstreams.any_offers(|c| c.prompts.is_some()) {
            capabilities.prompts = Some(Default::default());
        }
        if upstreams.any_offers(|c| c.resources.is_some()) {
            capabilities.resources = Some(Default::default());
        }
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new(
                "reins-mcp-gateway",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Every tool call is decided by Reins before it reaches its server; a denied call \
                 is error -32001 with the reasons.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.check_forwarded("tools/list")?;
        let mut tools = self.shared.upstreams.tools().await?;
        if self.shared.config.filter_tools {
            tools = self.visible(&context, tools).await?;
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let asker = self.asker(&context, request.meta.as_ref())?;
        let tool = request.name.to_string();
        let routed = self.shared.upstreams.route(&tool).ok_or_else(|| {
            ErrorData::invalid_params(
                format!("no tool `{tool}`: the gateway's tools are named `<server>.<tool>`"),
                None,
            )
        })?;
        let elicitation_url = context
            .client_capabilities()
            .and_then(|c| c.elicitation)
            .is_some_and(|e| e.url.is_some());
        let span = tracing::info_span!("mcp.tools_call", tool = %tool,
            mcp.session = asker.session.as_deref().unwrap_or(""),
            decision_id = tracing::field::Empty, ledger_index = tracing::field::Empty);
        let ask = Ask {
            token: &asker.token,
            session: asker.session.as_deref(),
            trace: &asker.trace,
            tool: &tool,
            server: routed.server,
            args: request.arguments.as_ref(),
            elicitation_url,
        };
        // A call held for an approval stops waiting when the client cancels it; it is never
        // forwarded then.
        let allowed = tokio::select! {
            decided = self.shared.gate.decide(&ask).instrument(span.clone()) => decided,
            () = context.ct.cancelled() => Err(ErrorData::new(
                DENIED,
                "the client cancelled the call before it was decided",
                None,
            )),
        };
        let allowed = match allowed {
            Ok(a) => a,
            Err(e) => {
                span.in_scope(|| tracing::info!(code = e.code.0, "tools/call refused"));
                return Err(e);
            }
        };
        span.record("decision_id", allowed.decision_id.as_str());
        if let Some(index) = allowed.ledger_index {
            span.record("ledger_index", index);
        }
        // The trace goes on to the server in `_meta`, as SEP-414 has it; the rest of the
        // agent's `_meta` (its progress token, its lifecycle fields) belongs to its own session.
        let mut meta = rmcp::model::RequestMetaObject::default();
        if let Some(parent) = &asker.trace.traceparent {
            meta.set_traceparent(parent.clone());
        }
        if let Some(state) = &asker.trace.tracestate {
            meta.set_tracestate(state.clone());
        }
        let (server, name) = (routed.server.to_owned(), routed.name.to_owned());
        let result = self
            .shared
            .upstreams
            .call_tool(&server, request, &name, meta)
            .instrument(span)
            .await;
        self.shared
            .gate
            .report_outcome(&asker.token, &allowed.decision_id, &result);
        result
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        self.check_forwarded("prompts/list")?;
        Ok(ListPromptsResult::with_all_items(
            self.shared.upstreams.prompts().await?,
        ))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        self.check_forwarded("prompts/get")?;
        self.shared.upstreams.get_prompt(request).await
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        self.check_forwarded("resources/list")?;
        Ok(ListResourcesResult::with_all_items(
            self.shared.upstreams.resources().await?,
        ))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        self.check_forwarded("resources/templates/list")?;
        Ok(ListResourceTemplatesResult::with_all_items(
            self.shared.upstreams.resource_templates().await?,
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.check_forwarded("resources/read")?;
        self.shared.upstreams.read_resource(request).await
    }

    async fn complete(
        &self,
        _request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        Err(self.refuse("completion/complete"))
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        Err(self.refuse(&request.method))
    }
}
