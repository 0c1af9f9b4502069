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

mod search;

use search::*;

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
    let approval_id = match request.context.as_ref().and_then(|c| c.get("approval_id")) {
        None => None,
        Some(v) => Some(v.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
            bad(
                "context.approval_id",
                "must be an approval id (a UUID)".into(),
            )
        })?),
    };
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
