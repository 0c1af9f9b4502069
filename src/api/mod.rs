//! The HTTP surface: axum routes, thin handlers over [`crate::decision`] and [`crate::registry`],
//! and the OpenAPI document generated from the same handler declarations (so it cannot drift).
//!
//! Handlers parse and authorise, call one plain function, and serialise; they hold no logic a test
//! could not reach by calling that function directly.

mod approvals;
mod authzen;
mod compliance;
mod contests;
pub mod error;
pub mod extract;
mod incidents;
mod killswitch;
mod ledger;
mod openapi;
mod outcomes;
mod policies;
mod slow;
mod webhooks;

use axum::Json;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::HeaderName;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::decision::{Keyed, RequestError, Target};
use crate::identity::{Caller, roles};
use crate::ids::{AgentId, DecisionId, ToolId};
use crate::model::{Decision, DecisionRecord, DecisionRequest};
use crate::registry::{Agent, AgentRecord, Tool, ToolRecord};

use error::{ApiError, ErrorBody};
use extract::{ApiJson, ApiQuery, IDEMPOTENT_REPLAYED, IdempotencyKeyHeader, path_id};

#[derive(OpenApi)]
#[openapi(
    info(title = "Reins", description = "Policy-as-code governance for AI agents: ask before you act."),
    modifiers(&BearerAuth),
    paths(ledger::tile),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The policy store a request addresses: `/stores/{store}/...`, or none for the default store.
#[derive(Debug, Clone, Default)]
pub struct StoreSel(pub Option<crate::ids::StoreName>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for StoreSel {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<StoreSel>()
            .cloned()
            .unwrap_or_default())
    }
}

/// Endpoints that exist per store; everything else is served once, without a prefix.
const STORE_SCOPED: &[&str] = &[
    "/v1/decisions",
    "/access/v1/",
    "/.well-known/authzen-configuration",
];

/// Turns `/stores/{store}/rest` into `/rest` with the store as a request extension, before routing,
/// so one set of handlers serves every store. An unknown prefix or a path that is not per store
/// becomes a path no route matches (404).
fn select_store(mut request: axum::extract::Request) -> axum::extract::Request {
    let path = request.uri().path();
    let Some(rest) = path.strip_prefix("/stores/") else {
        return request;
    };
    let (name, rest) = rest.split_once('/').map_or((rest, ""), |(n, r)| (n, r));
    let rest = format!("/{rest}");
    let scoped = STORE_SCOPED.iter().any(|p| rest.starts_with(p));
    let name = name.parse::<crate::ids::StoreName>().ok();
    let new_path = match (&name, scoped) {
        (Some(_), true) => rest,
        _ => "/stores/-/not-served".to_owned(),
    };
    let path_and_query = match request.uri().query() {
        Some(q) => format!("{new_path}?{q}"),
        None => new_path,
    };
    let mut parts = request.uri().clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    if let Ok(uri) = axum::http::Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    let selected = name.filter(|n| !n.is_default());
    request.extensions_mut().insert(StoreSel(selected));
    request
}

/// The whole application: routes, limits, timeout, tracing, and `/openapi.json`.
pub fn router(state: AppState) -> axum::Router {
    let inner = routes(state);
    axum::Router::new().fallback_service(
        ServiceBuilder::new()
            .map_request(select_store)
            .service(inner),
    )
}

fn routes(state: AppState) -> axum::Router {
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(create_decision))
        .routes(routes!(create_decision_batch))
        .routes(routes!(get_decision))
        .routes(routes!(list_decisions))
        .routes(routes!(put_agent, get_agent))
        .routes(routes!(list_agents))
        .routes(routes!(whoami))
        .routes(routes!(put_tool, get_tool))
        .routes(routes!(list_tools))
        .merge(ledger::routes())
        .merge(outcomes::routes())
        .merge(contests::routes())
        .merge(incidents::routes())
        .merge(killswitch::routes())
        .merge(approvals::routes())
        .merge(compliance::routes())
        .merge(authzen::routes())
        .merge(policies::routes())
        .merge(webhooks::routes())
        .split_for_parts();
    let router = match crate::console::routes(state.clone()) {
        Ok(console) => router.nest_service("/console", console),
        Err(error) => {
            tracing::error!(%error, "the console is not served");
            router
        }
    };
    // Built once: the document is the same for every request.
    let document = axum::body::Bytes::from(openapi::complete(&openapi).to_string());
    let timeout = state.config.request_timeout;
    let max_body = state.config.max_body_bytes;
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let document = document.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        document,
                    )
                }
            }),
        )
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method",
            )
        })
        .with_state(state.clone())
        .layer(DefaultBodyLimit::max(max_body))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(
                    move |_: tower::BoxError| async move {
                        ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "timeout",
                            format!(
                                "the request took longer than {}",
                                humantime::format_duration(timeout)
                            ),
                        )
                    },
                ))
                .timeout(timeout),
        )
        // Inside the request's span, so a slow answer's line names its method, path and id.
        .layer(axum::middleware::from_fn_with_state(
            state,
            slow::log_slow_answers,
        ))
        .layer(axum::middleware::from_fn(crate::telemetry::trace_context))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
            let id = request.headers().get(X_REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
            let span = tracing::info_span!("request", method = %request.method(), uri = %request.uri().path(), request_id = id,
                trace_id = tracing::field::Empty, otel.kind = "server");
            crate::telemetry::adopt_parent(&span, request.headers());
            span
        }))
        // Outermost: every request has an id (the caller's X-Request-ID, or a new UUID), and every
        // answer, errors included, carries it back.
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
        .layer(SetRequestIdLayer::new(X_REQUEST_ID, MakeRequestUuid))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "alive")))]
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: the database answers, a policy pack with policies is loaded, and the ledger takes
/// appends (its last commit and flush succeeded).
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, body = crate::app::Readiness), (status = 503, body = crate::app::Readiness)))]
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let body = state.readiness().await;
    let status = if body.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// Ask for a decision. The principal is the token's agent; the answer is stored before it is sent.
/// With an `Idempotency-Key`, a repeat of the same request by the same agent within
/// `idempotency_window` is answered with the recorded decision (header `Idempotent-Replayed:
/// true`) instead of a second one; the key with a different request is a 409.
#[utoipa::path(post, path = "/v1/decisions", tag = "decisions", request_body = DecisionRequest,
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters; a retry with the same key gets the recorded answer")),
    responses((status = 200, body = Decision), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_decision(
    State(state): State<AppState>,
    store: StoreSel,
    caller: Caller,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    ApiJson(request): ApiJson<DecisionRequest>,
) -> Result<axum::response::Response, ApiError> {
    let target = native_target(&state, &store, &request)?;
    Ok(match (key, target) {
        (None, Target::Default) => {
            Json(state.pipeline.decide(&caller, request).await?).into_response()
        }
        (None, target) => {
            Json(state.pipeline.decide_in(target, &caller, request).await?).into_response()
        }
        (Some(key), target) => keyed(
            state
                .pipeline
                .decide_keyed(target, &caller, request, key)
                .await?,
        ),
    })
}

/// A keyed decision's answer, marked when it was given before.
fn keyed(answer: Keyed) -> axum::response::Response {
    match answer {
        Keyed::Decided(decision) => Json(decision).into_response(),
        Keyed::Replayed(decision) => {
            ([(IDEMPOTENT_REPLAYED, "true")], Json(decision)).into_response()
        }
    }
}

/// The store a native request addresses. In a folder store the token's subject is the principal,
/// of the one principal type the action applies to.
fn native_target(
    state: &AppState,
    store: &StoreSel,
    request: &DecisionRequest,
) -> Result<Target, ApiError> {
    let Some(name) = &store.0 else {
        return Ok(Target::Default);
    };
    let store = state
        .pipeline
        .store(name)
        .ok_or_else(|| ApiError::not_found(format!("no policy store `{name}`")))?;
    let action = cedar_policy::EntityUid::from_type_name_and_id(
        "Action"
            .parse()
            .map_err(|_| ApiError::not_found("no Action type"))?,
        cedar_policy::EntityId::new(&request.action),
    );
    let principals = store.pack.load().principal_types(&action);
    match principals.as_slice() {
        [one] => Ok(Target::Store {
            store: store.clone(),
            subject_type: one.clone(),
            subject_properties: None,
        }),
        [] => Err(RequestError {
            field: "action".into(),
            message: format!("store `{name}` has no action `{}`", request.action),
        }
        .into()),
        many => Err(RequestError {
            field: "action".into(),
            message: format!(
                "`{}` applies to several principal types ({}); use the AuthZEN API to name one",
                request.action,
                many.join(", ")
            ),
        }
        .into()),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    requests: Vec<DecisionRequest>,
}

#[derive(Serialize, ToSchema)]
struct BatchResponse {
    decisions: Vec<Decision>,
}

/// Several decisions for one agent, answered in order and stored together.
#[utoipa::path(post, path = "/v1/decisions/batch", tag = "decisions", request_body = BatchRequest,
    security(("bearer" = [])),
    responses((status = 200, body = BatchResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_decision_batch(
    State(state): State<AppState>,
    store: StoreSel,
    caller: Caller,
    ApiJson(batch): ApiJson<BatchRequest>,
) -> Result<Json<BatchResponse>, ApiError> {
    // Each request names its own principal type in a folder store; the batch path is one.
    let mut items = Vec::with_capacity(batch.requests.len());
    for request in batch.requests {
        items.push((native_target(&state, &store, &request)?, request));
    }
    let decisions = state.pipeline.decide_batch_in(&caller, items).await?;
    Ok(Json(BatchResponse { decisions }))
}

/// A stored decision with its full request (role `admin` or `auditor`).
#[utoipa::path(get, path = "/v1/decisions/{id}", tag = "decisions", params(("id" = String, Path, description = "decision id")),
    security(("bearer" = [])),
    responses((status = 200, body = DecisionRecord), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_decision(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DecisionRecord>, ApiError> {
    caller.require_any_role(&[roles::ADMIN, roles::AUDITOR])?;
    let id: DecisionId = path_id(&id)?;
    let record = state
        .pipeline
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no decision {id}")))?;
    Ok(Json(record))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ListDecisions {
    /// Only this agent's decisions.
    agent: Option<String>,
    /// Page backwards: decisions older than this id.
    before: Option<String>,
    /// At most this many (default 100, max 1000).
    limit: Option<u32>,
    /// `missing`: only allowed decisions with no outcome reported `outcome_grace` (config, 5
    /// minutes) after they were made, newest first: the gaps in the audit trail.
    outcome: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct DecisionPage {
    decisions: Vec<DecisionRecord>,
}

/// Stored decisions, newest first (role `admin` or `auditor`).
#[utoipa::path(get, path = "/v1/decisions", tag = "decisions", params(ListDecisions), security(("bearer" = [])),
    responses((status = 200, body = DecisionPage), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_decisions(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListDecisions>,
) -> Result<Json<DecisionPage>, ApiError> {
    caller.require_any_role(&[roles::ADMIN, roles::AUDITOR])?;
    let agent: Option<AgentId> = query
        .agent
        .as_deref()
        .map(path_id)
        .transpose()
        .map_err(|e| e.with_field("agent"))?;
    let before: Option<DecisionId> = query
        .before
        .as_deref()
        .map(path_id)
        .transpose()
        .map_err(|e| e.with_field("before"))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(
            ApiError::bad_request("invalid_query", "limit must be between 1 and 1000")
                .with_field("limit"),
        );
    }
    let decisions = match query.outcome.as_deref() {
        None => {
            state
                .pipeline
                .list(agent.as_ref(), before.as_ref(), limit)
                .await?
        }
        Some("missing") => {
            state
                .pipeline
                .without_outcome(agent.as_ref(), state.config.outcome_grace, limit)
                .await?
        }
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("outcome must be `missing` (got `{other}`)"),
            )
            .with_field("outcome"));
        }
    };
    Ok(Json(DecisionPage { decisions }))
}

fn created_or_ok<T: Serialize>(created: bool, body: T) -> impl IntoResponse {
    (
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(body),
    )
}

/// Register or replace an agent (role `admin`).
#[utoipa::path(put, path = "/v1/agents/{id}", tag = "registry", params(("id" = String, Path)), request_body = AgentRecord,
    security(("bearer" = [])),
    responses((status = 201, body = Agent), (status = 200, body = Agent), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn put_agent(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(record): ApiJson<AgentRecord>,
) -> Result<impl IntoResponse, ApiError> {
    state.authorize(
        &caller,
        crate::policy::control::ControlAction::RegistryWrite,
    )?;
    let id: AgentId = path_id(&id)?;
    let (agent, created) = state
        .pipeline
        .registry()
        .put_agent(
            caller.agent.as_str(),
            id,
            record,
            crate::timestamp::Timestamp::now(),
        )
        .await?;
    Ok(created_or_ok(created, agent))
}

/// One agent (role `admin` or `auditor`).
#[utoipa::path(get, path = "/v1/agents/{id}", tag = "registry", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Agent), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_agent(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Agent>, ApiError> {
    caller.require_any_role(&[roles::ADMIN, roles::AUDITOR])?;
    let id: AgentId = path_id(&id)?;
    let snapshot = state.pipeline.registry().snapshot();
    let entry = snapshot
        .agent(&id)
        .ok_or_else(|| ApiError::not_found(format!("no agent `{id}`")))?;
    Ok(Json(entry.agent.clone()))
}

/// A token as the server's verifier reads it.
#[derive(Serialize, ToSchema)]
struct Whoami {
    /// The principal (the delegation's actor for a delegated token).
    agent: String,
    /// The user a delegated token acts for.
    #[serde(skip_serializing_if = "Option::is_none")]
    on_behalf_of: Option<String>,
    roles: Vec<String>,
    issuer: String,
}

/// Who the bearer token is: enforcement points beside an agent (the MCP gateway) check a client's
/// token with it before serving the client. Any valid token may ask.
#[utoipa::path(get, path = "/v1/whoami", tag = "registry", security(("bearer" = [])),
    responses((status = 200, body = Whoami), (status = 401, body = ErrorBody)))]
async fn whoami(caller: Caller) -> Json<Whoami> {
    Json(Whoami {
        agent: caller.agent.to_string(),
        on_behalf_of: caller.on_behalf_of.map(|u| u.to_string()),
        roles: caller.roles.into_iter().collect(),
        issuer: caller.issuer,
    })
}

#[derive(Serialize, ToSchema)]
struct AgentList {
    agents: Vec<Agent>,
}

/// All agents, by id (role `admin` or `auditor`).
#[utoipa::path(get, path = "/v1/agents", tag = "registry", security(("bearer" = [])),
    responses((status = 200, body = AgentList), (status = 403, body = ErrorBody)))]
async fn list_agents(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<AgentList>, ApiError> {
    caller.require_any_role(&[roles::ADMIN, roles::AUDITOR])?;
    Ok(Json(AgentList {
        agents: state.pipeline.registry().agents(),
    }))
}

/// Register or replace a tool (role `admin`).
#[utoipa::path(put, path = "/v1/tools/{id}", tag = "registry", params(("id" = String, Path)), request_body = ToolRecord,
    security(("bearer" = [])),
    responses((status = 201, body = Tool), (status = 200, body = Tool), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn put_tool(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(record): ApiJson<ToolRecord>,
) -> Result<impl IntoResponse, ApiError> {
    state.authorize(
        &caller,
        crate::policy::control::ControlAction::RegistryWrite,
    )?;
    let id: ToolId = path_id(&id)?;
    let (tool, created) = state
        .pipeline
        .registry()
        .put_tool(
            caller.agent.as_str(),
            id,
            record,
            crate::timestamp::Timestamp::now(),
        )
        .await?;
    Ok(created_or_ok(created, tool))
}

/// One tool (role `admin` or `auditor`).
#[utoipa::path(get, path = "/v1/tools/{id}", tag = "registry", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Tool), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_tool(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Tool>, ApiError> {
    caller.require_any_role(&[roles::ADMIN, roles::AUDITOR])?;
    let id: ToolId = path_id(&id)?;
    let snapshot = state.pipeline.registry().snapshot();
    let entry = snapshot
        .tool(&id)
        .ok_or_else(|| ApiError::not_found(format!("no tool `{id}`")))?;
    Ok(Json(entry.tool.clone()))
}

#[derive(Serialize, ToSchema)]
struct ToolList {
    tools: Vec<Tool>,
}

/// All tools, by id (role `admin` or `auditor`).
#[utoipa::path(get, path = "/v1/tools", tag = "registry", security(("bearer" = [])),
    responses((status = 200, body = ToolList), (status = 403, body = ErrorBody)))]
async fn list_tools(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<ToolList>, ApiError> {
    caller.require_any_role(&[roles::ADMIN, roles::AUDITOR])?;
    Ok(Json(ToolList {
        tools: state.pipeline.registry().tools(),
    }))
}
