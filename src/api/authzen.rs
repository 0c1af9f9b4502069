//! The OpenID AuthZEN Authorization API 1.0: evaluation, evaluations (batch with the three
//! `evaluations_semantic` values), subject/resource/action search and discovery.
//!
//! The caller is a policy enforcement point (role `pep`, or nobody with `--pep-auth none`); the
//! subject comes from the body. In the default store the subject is an `Agent` and the request
//! runs through exactly the native pipeline (kill switch, registry, Cedar, ledger); in a folder
//! store AuthZEN `type`s are Cedar entity types. Per the spec, errors are plain-text bodies, a
//! request Reins cannot evaluate is `decision: false` with `context.error`, and unknown fields are
//! ignored. Searches evaluate without recording: they answer no agent's action.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::StoreSel;
use super::error::ApiError;
use super::extract::ApiJson;
use crate::app::AppState;
use crate::config::PepAuth;
use crate::decision::{Evaluated, RequestError, Target};
use crate::identity::{Caller, roles};
use crate::ids::AgentId;
use crate::model::{Decision, DecisionRequest, Outcome, ReasonCode, ResourceRef};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(evaluation))
        .routes(routes!(evaluations))
        .routes(routes!(search_subject))
        .routes(routes!(search_resource))
        .routes(routes!(search_action))
        .routes(routes!(configuration))
}

/// An AuthZEN error: the status and a plain-text message.
pub struct AuthzenError(ApiError);

impl From<ApiError> for AuthzenError {
    fn from(e: ApiError) -> Self {
        // The spec answers a wrong content type with 400, not 415.
        if e.status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            return Self(ApiError {
                status: StatusCode::BAD_REQUEST,
                ..e
            });
        }
        Self(e)
    }
}

impl IntoResponse for AuthzenError {
    fn into_response(self) -> Response {
        let mut response = (
            self.0.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.0.message,
        )
            .into_response();
        if self.0.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// A JSON body whose rejections are AuthZEN errors (plain text, 400 for a wrong content type).
pub struct AzJson<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for AzJson<T> {
    type Rejection = AuthzenError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, AuthzenError> {
        let ApiJson(value) = ApiJson::<T>::from_request(req, state).await?;
        Ok(Self(value))
    }
}

/// The authenticated policy enforcement point (None when PEP authentication is off).
#[derive(Clone)]
pub struct Pep(Option<Caller>);

impl FromRequestParts<AppState> for Pep {
    type Rejection = AuthzenError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AuthzenError> {
        if state.config.authzen.pep_auth == PepAuth::None {
            return Ok(Self(None));
        }
        let caller = Caller::from_request_parts(parts, state).await?;
        caller
            .require_any_role(&[roles::PEP])
            .map_err(ApiError::from)?;
        Ok(Self(Some(caller)))
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct Entity {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub properties: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct Action {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub properties: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct EvaluationRequest {
    pub subject: Entity,
    pub action: Action,
    pub resource: Entity,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub context: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EvaluationResponse {
    pub decision: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub context: Option<Value>,
}

/// One item of a batch: each field given replaces the request's default as a whole.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct EvaluationItem {
    #[serde(default)]
    pub subject: Option<Entity>,
    #[serde(default)]
    pub action: Option<Action>,
    #[serde(default)]
    pub resource: Option<Entity>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub context: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Semantic {
    #[default]
    ExecuteAll,
    DenyOnFirstDeny,
    PermitOnFirstPermit,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct EvaluationsOptions {
    #[serde(default)]
    pub evaluations_semantic: Semantic,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct EvaluationsRequest {
    #[serde(flatten)]
    pub defaults: EvaluationItem,
    #[serde(default)]
    pub evaluations: Option<Vec<EvaluationItem>>,
    #[serde(default)]
    pub options: Option<EvaluationsOptions>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EvaluationsResponse {
    pub evaluations: Vec<EvaluationResponse>,
}

/// What `/access/v1/evaluations` answers: the list, or one evaluation when the request carries no
/// `evaluations` (AuthZEN 1.0 treats such a request as a single evaluation). For the document.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum EvaluationsAnswer {
    Many(EvaluationsResponse),
    One(EvaluationResponse),
}

/// Where a request is evaluated, from the path prefix.
fn target_of(
    state: &AppState,
    store: &StoreSel,
) -> Result<Option<std::sync::Arc<crate::policy::store::PolicyStore>>, ApiError> {
    match &store.0 {
        None => Ok(None),
        Some(name) => state
            .pipeline
            .store(name)
            .cloned()
            .map(Some)
            .ok_or_else(|| ApiError::not_found(format!("no policy store `{name}`"))),
    }
}

/// Maps an AuthZEN request onto the pipeline's terms.
fn prepare(
    store: &Option<std::sync::Arc<crate::policy::store::PolicyStore>>,
    pep: &Pep,
    request: EvaluationRequest,
) -> Result<(Caller, Target, DecisionRequest), RequestError> {
    let bad = |field: &str, message: String| RequestError {
        field: field.into(),
        message,
    };
    let agent: AgentId = request
        .subject
        .id
        .parse()
        .map_err(|e| bad("subject.id", format!("{e}")))?;
    let target = match store {
        None => {
            if request.subject.kind != "Agent" {
                return Err(bad(
                    "subject.type",
                    format!(
                        "the default store's subjects are `Agent`s (got `{}`)",
                        request.subject.kind
                    ),
                ));
            }
            Target::Default
        }
        Some(store) => Target::Store {
            store: store.clone(),
            subject_type: request.subject.kind.clone(),
            subject_properties: request.subject.properties.clone(),
        },
    };
    let caller = Caller {
        agent,
        on_behalf_of: None,
        roles: Default::default(),
        issuer: pep.0.as_ref().map_or_else(
            || "authzen".to_owned(),
            |p| format!("authzen pep {}", p.agent),
        ),
    };
    let approval_id = request
        .context
        .as_ref()
        .and_then(|c| c.get("approval_id"))
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let mut context = request.context.unwrap_or_default();
    context.remove("approval_id");
    let decision_request = DecisionRequest {
        action: request.action.name,
        resource: ResourceRef {
            kind: request.resource.kind,
            id: request.resource.id,
            attributes: request.resource.properties,
        },
        context: Some(context),
        session_id: None,
        approval_id,
    };
    Ok((caller, target, decision_request))
}

/// The AuthZEN answer for a recorded decision: the decision, and in `context` its id, reasons,
/// ledger index and (access-request profile) the approval to ask for. Batch items (`full` false)
/// carry a context only when there is an approval to ask for: PEPs and the interop harness compare
/// batch answers as `[{"decision": b}, ...]`.
fn answer(decision: &Decision, full: bool) -> EvaluationResponse {
    let approval = decision
        .reasons
        .iter()
        .any(|r| r.code == ReasonCode::ApprovalRequired);
    if !full && !approval {
        return EvaluationResponse {
            decision: decision.decision == Outcome::Allow,
            context: None,
        };
    }
    let mut context = json!({
        "decision_id": decision.decision_id.to_string(),
        "reasons": decision.reasons,
    });
    if let Some(ledger) = &decision.ledger {
        context["ledger_index"] = json!(ledger.index);
    }
    if approval {
        context["reason"] = json!("approval_required");
        context["evaluation_id"] = json!(decision.evaluation_id);
        context["access_request"] = json!(decision.access_request);
    }
    EvaluationResponse {
        decision: decision.decision == Outcome::Allow,
        context: Some(context),
    }
}

fn refused(error: &RequestError) -> EvaluationResponse {
    EvaluationResponse {
        decision: false,
        context: Some(json!({ "error": { "field": error.field, "message": error.message } })),
    }
}

/// Access evaluation: may the subject perform the action on the resource?
#[utoipa::path(post, path = "/access/v1/evaluation", tag = "authzen", request_body = EvaluationRequest,
    security(("bearer" = [])),
    responses((status = 200, body = EvaluationResponse), (status = 400, description = "malformed request (plain text)"),
        (status = 401, description = "missing or bad PEP token"), (status = 403, description = "not a PEP")))]
async fn evaluation(
    State(state): State<AppState>,
    store: StoreSel,
    pep: Pep,
    AzJson(request): AzJson<EvaluationRequest>,
) -> Result<Json<EvaluationResponse>, AuthzenError> {
    let store = target_of(&state, &store)?;
    Ok(Json(evaluate_one(&state, &store, &pep, request).await))
}

async fn evaluate_one(
    state: &AppState,
    store: &Option<std::sync::Arc<crate::policy::store::PolicyStore>>,
    pep: &Pep,
    request: EvaluationRequest,
) -> EvaluationResponse {
    let result = match prepare(store, pep, request) {
        Ok((caller, target, request)) => state.pipeline.decide_in(target, &caller, request).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(decision) => answer(&decision, true),
        Err(e) => refused(&e),
    }
}

/// Access evaluations: many evaluations in one call, in request order.
#[utoipa::path(post, path = "/access/v1/evaluations", tag = "authzen", request_body = EvaluationsRequest,
    security(("bearer" = [])),
    responses((status = 200, body = EvaluationsAnswer), (status = 400, description = "malformed request (plain text)"),
        (status = 401, description = "missing or bad PEP token"), (status = 403, description = "not a PEP")))]
async fn evaluations(
    State(state): State<AppState>,
    store: StoreSel,
    pep: Pep,
    AzJson(request): AzJson<EvaluationsRequest>,
) -> Result<Response, AuthzenError> {
    let store = target_of(&state, &store)?;
    let defaults = request.defaults;
    let items = match request.evaluations {
        Some(items) if !items.is_empty() => items,
        // No items: the request is a single evaluation.
        _ => {
            let single = complete(&defaults, EvaluationItem::default()).map_err(|missing| {
                ApiError::bad_request("invalid_request", format!("missing field `{missing}`"))
            })?;
            return Ok(Json(evaluate_one(&state, &store, &pep, single).await).into_response());
        }
    };
    if items.len() > state.config.batch_max {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!(
                "at most {} evaluations per request (got {})",
                state.config.batch_max,
                items.len()
            ),
        )
        .into());
    }
    let semantic = request.options.unwrap_or_default().evaluations_semantic;

    // Evaluate in order, stopping where the semantic says; then record all of them at once.
    let mut slots: Vec<Result<usize, RequestError>> = Vec::new();
    let mut evaluated = Vec::new();
    for item in items {
        let prepared = complete(&defaults, item)
            .map_err(|missing| RequestError {
                field: missing.into(),
                message: "missing in the item and in the request's defaults".into(),
            })
            .and_then(|r| prepare(&store, &pep, r));
        let outcome = match prepared {
            Ok((caller, target, request)) => {
                match state.pipeline.evaluate_in(&target, &caller, &request) {
                    Ok(evaluation) => {
                        let allow = evaluation.decision.decision == Outcome::Allow;
                        evaluated.push(Evaluated {
                            caller,
                            target,
                            request,
                            evaluation,
                        });
                        slots.push(Ok(evaluated.len() - 1));
                        Some(allow)
                    }
                    Err(e) => {
                        slots.push(Err(e));
                        Some(false)
                    }
                }
            }
            Err(e) => {
                slots.push(Err(e));
                Some(false)
            }
        };
        match (semantic, outcome) {
            (Semantic::DenyOnFirstDeny, Some(false))
            | (Semantic::PermitOnFirstPermit, Some(true)) => break,
            _ => {}
        }
    }
    let mut recorded = state.pipeline.record_evaluated(evaluated).await.into_iter();
    let mut results: Vec<Option<Result<Decision, RequestError>>> = Vec::new();
    for slot in &slots {
        results.push(match slot {
            Ok(_) => recorded.next(),
            Err(e) => Some(Err(e.clone())),
        });
    }
    let evaluations = results
        .into_iter()
        .map(|r| match r {
            Some(Ok(decision)) => answer(&decision, false),
            Some(Err(e)) => refused(&e),
            None => refused(&RequestError {
                field: String::new(),
                message: "not recorded".into(),
            }),
        })
        .collect();
    Ok(Json(EvaluationsResponse { evaluations }).into_response())
}

/// Fills an item's missing parts from the defaults; the name of a part missing in both.
fn complete(
    defaults: &EvaluationItem,
    item: EvaluationItem,
) -> Result<EvaluationRequest, &'static str> {
    Ok(EvaluationRequest {
        subject: item
            .subject
            .or_else(|| defaults.subject.clone())
            .ok_or("subject")?,
        action: item
            .action
            .or_else(|| defaults.action.clone())
            .ok_or("action")?,
        resource: item
            .resource
            .or_else(|| defaults.resource.clone())
            .ok_or("resource")?,
        context: item.context.or_else(|| defaults.context.clone()),
    })
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct PageRequest {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page {
    /// Empty when this is the last page.
    pub next_token: String,
    pub count: usize,
    pub total: usize,
}

/// A search: the entity with only a `type` is the one searched for.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct SearchRequest {
    pub subject: SearchEntity,
    #[serde(default)]
    pub action: Option<Action>,
    pub resource: SearchEntity,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub context: Option<Map<String, Value>>,
    #[serde(default)]
    pub page: Option<PageRequest>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct SearchEntity {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub properties: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchResponse {
    #[schema(value_type = Vec<Object>)]
    pub results: Vec<Value>,
    pub page: Page,
}

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 1000;

fn page_of(results: Vec<Value>, page: Option<PageRequest>) -> Result<SearchResponse, ApiError> {
    let page = page.unwrap_or_default();
    let limit = page.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("page.limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let start = match page.token.as_deref() {
        None | Some("") => 0,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|s| *s <= results.len())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_request",
                    format!("page.token `{t}` is not one this server issued"),
                )
            })?,
    };
    let total = results.len();
    let end = (start + limit).min(total);
    let slice: Vec<Value> = results[start..end].to_vec();
    Ok(SearchResponse {
        page: Page {
            next_token: if end < total {
                end.to_string()
            } else {
                String::new()
            },
            count: slice.len(),
            total,
        },
        results: slice,
    })
}

/// The ids of every entity of `kind` Reins knows in the store, sorted.
fn candidates(
    state: &AppState,
    store: &Option<std::sync::Arc<crate::policy::store::PolicyStore>>,
    kind: &str,
) -> Vec<String> {
    let mut ids: Vec<String> = match store {
        None => match kind {
            "Agent" => state
                .pipeline
                .registry()
                .agents()
                .into_iter()
                .map(|a| a.id.to_string())
                .collect(),
            "Tool" => state
                .pipeline
                .registry()
                .tools()
                .into_iter()
                .map(|t| t.id.to_string())
                .collect(),
            _ => Vec::new(),
        },
        Some(store) => store
            .entities
            .iter()
            .filter(|e| e.uid().type_name().to_string() == kind)
            .map(|e| e.uid().id().unescaped().to_owned())
            .collect(),
    };
    ids.sort();
    ids.dedup();
    ids
}

/// Whether `request` would be allowed, without recording it.
fn allowed(
    state: &AppState,
    store: &Option<std::sync::Arc<crate::policy::store::PolicyStore>>,
    pep: &Pep,
    request: EvaluationRequest,
) -> bool {
    prepare(store, pep, request)
        .and_then(|(caller, target, request)| {
            state.pipeline.evaluate_in(&target, &caller, &request)
        })
        .is_ok_and(|e| e.decision.decision == Outcome::Allow)
}

fn required_id(entity: &SearchEntity, field: &str) -> Result<Entity, ApiError> {
    Ok(Entity {
        kind: entity.kind.clone(),
        id: entity.id.clone().ok_or_else(|| {
            ApiError::bad_request("invalid_request", format!("missing field `{field}.id`"))
        })?,
        properties: entity.properties.clone(),
    })
}

fn required_action(action: &Option<Action>) -> Result<Action, ApiError> {
    action
        .clone()
        .ok_or_else(|| ApiError::bad_request("invalid_request", "missing field `action`"))
}

/// Which side of a search is being searched for.
#[derive(Clone, Copy)]
enum Searched {
    Subject,
    Resource,
}

/// The entities of the searched type, in the store, for which the decision is true.
fn search_entities(
    state: &AppState,
    store: &Option<std::sync::Arc<crate::policy::store::PolicyStore>>,
    pep: &Pep,
    request: SearchRequest,
    searched: Searched,
) -> Result<SearchResponse, ApiError> {
    let action = required_action(&request.action)?;
    let (kind, fixed) = match searched {
        Searched::Subject => (
            &request.subject.kind,
            required_id(&request.resource, "resource")?,
        ),
        Searched::Resource => (
            &request.resource.kind,
            required_id(&request.subject, "subject")?,
        ),
    };
    let results = candidates(state, store, kind)
        .into_iter()
        .filter(|id| {
            let found = Entity {
                kind: kind.clone(),
                id: id.clone(),
                properties: None,
            };
            let (subject, resource) = match searched {
                Searched::Subject => (found, fixed.clone()),
                Searched::Resource => (fixed.clone(), found),
            };
            allowed(
                state,
                store,
                pep,
                EvaluationRequest {
                    subject,
                    action: action.clone(),
                    resource,
                    context: request.context.clone(),
                },
            )
        })
        .map(|id| json!({"type": kind, "id": id}))
        .collect();
    page_of(results, request.page.clone())
}

/// Subject search: the subjects of `subject.type` that may perform the action on the resource.
#[utoipa::path(post, path = "/access/v1/search/subject", tag = "authzen", request_body = SearchRequest,
    security(("bearer" = [])), responses((status = 200, body = SearchResponse), (status = 400, description = "malformed request")))]
async fn search_subject(
    State(state): State<AppState>,
    store: StoreSel,
    pep: Pep,
    AzJson(request): AzJson<SearchRequest>,
) -> Result<Json<SearchResponse>, AuthzenError> {
    let store = target_of(&state, &store)?;
    let answer =
        off_the_workers(move || search_entities(&state, &store, &pep, request, Searched::Subject))
            .await?;
    Ok(Json(answer))
}

/// Resource search: the resources of `resource.type` the subject may perform the action on.
#[utoipa::path(post, path = "/access/v1/search/resource", tag = "authzen", request_body = SearchRequest,
    security(("bearer" = [])), responses((status = 200, body = SearchResponse), (status = 400, description = "malformed request")))]
async fn search_resource(
    State(state): State<AppState>,
    store: StoreSel,
    pep: Pep,
    AzJson(request): AzJson<SearchRequest>,
) -> Result<Json<SearchResponse>, AuthzenError> {
    let store = target_of(&state, &store)?;
    let answer =
        off_the_workers(move || search_entities(&state, &store, &pep, request, Searched::Resource))
            .await?;
    Ok(Json(answer))
}

/// Action search: the actions the subject may perform on the resource.
#[utoipa::path(post, path = "/access/v1/search/action", tag = "authzen", request_body = SearchRequest,
    security(("bearer" = [])), responses((status = 200, body = SearchResponse), (status = 400, description = "malformed request")))]
async fn search_action(
    State(state): State<AppState>,
    store: StoreSel,
    pep: Pep,
    AzJson(request): AzJson<SearchRequest>,
) -> Result<Json<SearchResponse>, AuthzenError> {
    let store = target_of(&state, &store)?;
    let answer = off_the_workers(move || search_actions(&state, &store, &pep, request)).await?;
    Ok(Json(answer))
}

/// The actions of the store's schema the subject may perform on the resource.
fn search_actions(
    state: &AppState,
    store: &Option<std::sync::Arc<crate::policy::store::PolicyStore>>,
    pep: &Pep,
    request: SearchRequest,
) -> Result<SearchResponse, ApiError> {
    let subject = required_id(&request.subject, "subject")?;
    let resource = required_id(&request.resource, "resource")?;
    let schema_actions: Vec<String> = match &store {
        None => state.pipeline.policies().action_names(),
        Some(s) => s.pack.load().action_names(),
    };
    let results = schema_actions
        .into_iter()
        .filter(|name| {
            allowed(
                state,
                store,
                pep,
                EvaluationRequest {
                    subject: subject.clone(),
                    action: Action {
                        name: name.clone(),
                        properties: None,
                    },
                    resource: resource.clone(),
                    context: request.context.clone(),
                },
            )
        })
        .map(|name| json!({"name": name}))
        .collect();
    page_of(results, request.page)
}

/// Runs a search on the blocking pool: it is one Cedar evaluation per candidate, thousands for a
/// large store, and on an async worker it would hold up every request queued behind it.
async fn off_the_workers<T: Send + 'static>(
    search: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(search).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "search_failed",
            format!("the search did not finish: {e}"),
        )
    })?
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Configuration {
    pub policy_decision_point: String,
    pub access_evaluation_endpoint: String,
    pub access_evaluations_endpoint: String,
    pub search_subject_endpoint: String,
    pub search_resource_endpoint: String,
    pub search_action_endpoint: String,
}

/// AuthZEN discovery: where this policy decision point's endpoints are (no authentication).
#[utoipa::path(get, path = "/.well-known/authzen-configuration", tag = "authzen",
    responses((status = 200, body = Configuration), (status = 404, description = "no such store")))]
async fn configuration(
    State(state): State<AppState>,
    store: StoreSel,
    headers: HeaderMap,
) -> Result<Json<Configuration>, AuthzenError> {
    target_of(&state, &store)?;
    let base = match &state.config.authzen.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("http://{host}")
        }
    };
    let base = match &store.0 {
        Some(name) => format!("{base}/stores/{name}"),
        None => base,
    };
    Ok(Json(Configuration {
        access_evaluation_endpoint: format!("{base}/access/v1/evaluation"),
        access_evaluations_endpoint: format!("{base}/access/v1/evaluations"),
        search_subject_endpoint: format!("{base}/access/v1/search/subject"),
        search_resource_endpoint: format!("{base}/access/v1/search/resource"),
        search_action_endpoint: format!("{base}/access/v1/search/action"),
        policy_decision_point: base,
    }))
}
