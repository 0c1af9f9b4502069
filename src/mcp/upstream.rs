//! The MCP servers behind the gateway: one rmcp client session per server, opened when the
//! gateway starts and shared by every agent the gateway serves. Names are the gateway's: a tool
//! `read` of server `files` is `files.read` to the agent, and so is a prompt; resources keep their
//! URIs and are read from the server that listed them.

use std::collections::HashMap;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, ClientRequest,
    GetPromptRequestParams, GetPromptResponse, Prompt, ReadResourceRequestParams,
    ReadResourceResponse, RequestMetaObject, Resource, ResourceTemplate, ServerResult, Tool,
};
use rmcp::service::{PeerRequestOptions, RunningService, ServiceError};
use rmcp::transport::{ConfigureCommandExt, StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ErrorData, RoleClient, ServiceExt};
use tokio::sync::RwLock;

use super::config::{ServerConfig, Upstream};

/// Why a server could not be reached at start.
#[derive(Debug, thiserror::Error)]
#[error("MCP server `{server}`: {message}")]
pub struct UpstreamError {
    pub server: String,
    pub message: String,
}

struct Server {
    name: String,
    client: RunningService<RoleClient, ()>,
}

/// The servers, by name, and which server listed each resource URI last.
pub struct Upstreams {
    servers: Vec<Server>,
    resource_owner: RwLock<HashMap<String, usize>>,
}

/// Opens a session with every server, in order; the first that fails stops the start.
pub async fn connect(configs: &[ServerConfig]) -> Result<Arc<Upstreams>, UpstreamError> {
    let mut servers = Vec::with_capacity(configs.len());
    for config in configs {
        let failed = |message: String| UpstreamError {
            server: config.name.clone(),
            message,
        };
        let client = match config.upstream().map_err(failed)? {
            Upstream::Child { command, args, env } => {
                let child = tokio::process::Command::new(command).configure(|c| {
                    c.args(args).envs(env);
                });
                let transport = TokioChildProcess::new(child)
                    .map_err(|e| failed(format!("cannot start `{command}`: {e}")))?;
                ().serve(transport).await
            }
            Upstream::Http { url } => {
                ().serve(StreamableHttpClientTransport::from_uri(url.to_owned()))
                    .await
            }
        }
        .map_err(|e| failed(format!("no MCP session: {e}")))?;
        servers.push(Server {
            name: config.name.clone(),
            client,
        });
    }
    Ok(Arc::new(Upstreams {
        servers,
        resource_owner: RwLock::new(HashMap::new()),
    }))
}

/// A service error as the agent sees it: the server's own JSON-RPC error as it was, anything
/// else (a closed session, a transport failure) an internal error naming the server.
fn forwarded(server: &str, error: ServiceError) -> ErrorData {
    match error {
        ServiceError::McpError(e) => e,
        other => ErrorData::internal_error(format!("MCP server `{server}`: {other}"), None),
    }
}

/// `<server>.<name>` split into the server's name and the server's own name for the tool.
pub struct Routed<'a> {
    pub server: &'a str,
    pub name: &'a str,
}

impl Upstreams {
    /// The server and the server's own name for a gateway name, if a server has that name.
    pub fn route<'a>(&self, gateway_name: &'a str) -> Option<Routed<'a>> {
        let (server, name) = gateway_name.split_once('.')?;
        self.index(server)?;
        Some(Routed { server, name })
    }

    fn index(&self, server: &str) -> Option<usize> {
        self.servers.iter().position(|s| s.name == server)
    }

    fn server(&self, server: &str) -> Result<&Server, ErrorData> {
        self.index(server)
            .map(|i| &self.servers[i])
            .ok_or_else(|| ErrorData::invalid_params(format!("no MCP server `{server}`"), None))
    }

    /// Every server's tools, named `<server>.<tool>`.
    pub async fn tools(&self) -> Result<Vec<Tool>, ErrorData> {
        let mut all = Vec::new();
        for server in &self.servers {
            let tools = server
                .client
                .list_all_tools()
                .await
                .map_err(|e| forwarded(&server.name, e))?;
            all.extend(tools.into_iter().map(|mut tool| {
                tool.name = format!("{}.{}", server.name, tool.name).into();
                tool
            }));
        }
        Ok(all)
    }

    /// Calls `name` on `server` (the server's own tool name), with `meta` as the request's
    /// `_meta` (rmcp writes a request's `_meta` from its options, not from its params).
    pub async fn call_tool(
        &self,
        server: &str,
        mut params: CallToolRequestParams,
        name: &str,
        meta: RequestMetaObject,
    ) -> Result<CallToolResponse, ErrorData> {
        let upstream = self.server(server)?;
        params.name = name.to_owned().into();
        params.meta = None;
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        let options = PeerRequestOptions::no_options().with_meta(meta);
        let sent = upstream
            .client
            .send_request_with_option(request, options)
            .await
            .map_err(|e| forwarded(server, e))?;
        match sent
            .await_response()
            .await
            .map_err(|e| forwarded(server, e))?
        {
            ServerResult::CallToolResult(result) => Ok(CallToolResponse::Complete(result)),
            ServerResult::InputRequiredResult(result) => {
                Ok(CallToolResponse::InputRequired(result))
            }
            ServerResult::CreateTaskResult(result) => Ok(CallToolResponse::Task(result)),
            _ => Err(ErrorData::internal_error(
                format!("MCP server `{server}` answered tools/call with another result"),
                None,
            )),
        }
    }

    pub async fn prompts(&self) -> Result<Vec<Prompt>, ErrorData> {
        let mut all = Vec::new();
        for server in &self.servers {
            if !self.offers(server, |c| c.prompts.is_some()) {
                continue;
            }
            let prompts = server
                .client
                .list_all_prompts()
                .await
                .map_err(|e| forwarded(&server.name, e))?;
            all.extend(prompts.into_iter().map(|mut prompt| {
                prompt.name = format!("{}.{}", server.name, prompt.name);
                prompt
            }));
        }
        Ok(all)
    }

    pub async fn get_prompt(
        &self,
        mut params: GetPromptRequestParams,
    ) -> Result<GetPromptResponse, ErrorData> {
        let gateway_name = params.name.clone();
        let routed = self.route(&gateway_name).ok_or_else(|| {
            ErrorData::invalid_params(format!("no prompt `{gateway_name}`"), None)
        })?;
        let server = self.server(routed.server)?;
        params.name = routed.name.to_owned();
        server
            .client
            .get_prompt_once(params)
            .await
            .map_err(|e| forwarded(&server.name, e))
    }

    pub async fn resources(&self) -> Result<Vec<Resource>, ErrorData> {
        let mut all = Vec::new();
        let mut owners = HashMap::new();
        for (i, server) in self.servers.iter().enumerate() {
            if !self.offers(server, |c| c.resources.is_some()) {
                continue;
            }
            let resources = server
                .client
                .list_all_resources()
                .await
                .map_err(|e| forwarded(&server.name, e))?;
            for resource in resources {
                owners.entry(resource.uri.clone()).or_insert(i);
                all.push(resource);
            }
        }
        *self.resource_owner.write().await = owners;
        Ok(all)
    }

    pub async fn resource_templates(&self) -> Result<Vec<ResourceTemplate>, ErrorData> {
        let mut all = Vec::new();
        for server in &self.servers {
            if !self.offers(server, |c| c.resources.is_some()) {
                continue;
            }
            all.extend(
                server
                    .client
                    .list_all_resource_templates()
                    .await
                    .map_err(|e| forwarded(&server.name, e))?,
            );
        }
        Ok(all)
    }

    /// Reads a resource from the server that listed it (listing first when none has), or from
    /// the only server offering resources.
    pub async fn read_resource(
        &self,
        params: ReadResourceRequestParams,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let mut owner = self.resource_owner.read().await.get(&params.uri).copied();
        if owner.is_none() {
            self.resources().await?;
            owner = self.resource_owner.read().await.get(&params.uri).copied();
        }
        let offering: Vec<usize> = (0..self.servers.len())
            .filter(|&i| self.offers(&self.servers[i], |c| c.resources.is_some()))
            .collect();
        let index = match (owner, offering.as_slice()) {
            (Some(i), _) => i,
            (None, [only]) => *only,
            (None, _) => {
                return Err(ErrorData::resource_not_found(
                    format!("no MCP server lists `{}`", params.uri),
                    None,
                ));
            }
        };
        let server = &self.servers[index];
        server
            .client
            .read_resource_once(params)
            .await
            .map_err(|e| forwarded(&server.name, e))
    }

    /// Whether the server declared a capability at initialization.
    fn offers(
        &self,
        server: &Server,
        has: impl Fn(&rmcp::model::ServerCapabilities) -> bool,
    ) -> bool {
        server
            .client
            .peer_info()
            .is_some_and(|info| has(&info.capabilities))
    }

    /// Whether any server offers prompts, resources.
    pub fn any_offers(&self, has: impl Fn(&rmcp::model::ServerCapabilities) -> bool) -> bool {
        self.servers.iter().any(|s| self.offers(s, &has))
    }
}
