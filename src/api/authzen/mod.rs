//! The OpenID AuthZEN Authorization API 1.0 over HTTP: evaluation, evaluations, search (handlers
//! over [`crate::authzen`]) and discovery.
//!
//! The caller is a policy enforcement point (role `pep`, or nobody with `--pep-auth none`); the
//! subject comes from the body. Per the spec, errors are plain-text bodies and unknown fields are
//! ignored.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::StoreSel;
use super::error::ApiError;
use super::extract::{ApiJson, IDEMPOTENT_REPLAYED, IdempotencyKeyHeader};
use crate::app::AppState;
use crate::authzen::{
    self, EvaluationRequest, EvaluationResponse, EvaluationsAnswer, EvaluationsRequest, Scope,
};
use crate::config::PepAuth;
use crate::identity::{Caller, roles};

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

/// Where and for whom requests are evaluated: the store the path names, and the PEP.
fn scope_of(state: &AppState, store: &StoreSel, pep: Pep) -> Result<Scope, ApiError> {
    Ok(Scope {
        store: target_of(state, store)?,
        pep: pep.0,
    })
}

/// The folder store the path prefix names, if any.
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

/// Access evaluation: may the subject perform the action on the resource? With an
/// `Idempotency-Key`, a repeat of the same request for the same subject is answered with the
/// recorded decision (header `Idempotent-Replayed: true`); the key with another request is a 409.
#[utoipa::path(post, path = "/access/v1/evaluation", tag = "authzen", request_body = EvaluationRequest,
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters; a retry with the same key gets the recorded answer")),
    responses((status = 200, body = EvaluationResponse), (status = 400, description = "malformed request (plain text)"),
        (status = 401, description = "missing or bad PEP token"), (status = 403, description = "not a PEP"),
        (status = 409, description = "the Idempotency-Key was used for another request (plain text)")))]
async fn evaluation(
    State(state): State<AppState>,
    store: StoreSel,
    pep: Pep,
    key: Result<IdempotencyKeyHeader, ApiError>,
    AzJson(request): AzJson<EvaluationRequest>,
) -> Result<Response, AuthzenError> {
    let scope = scope_of(&state, &store, pep)?;
    let Some(key) = key?.0 else {
        return Ok(Json(authzen::evaluate(&state.pipeline, &scope, request).await).into_response());
    };
    let answered = authzen::evaluate_keyed(&state.pipeline, &scope, request, key)
        .await
        .map_err(ApiError::from)?;
    Ok(if answered.replayed {
        ([(IDEMPOTENT_REPLAYED, "true")], Json(answered.response)).into_response()
    } else {
        Json(answered.response).into_response()
    })
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
) -> Result<Json<EvaluationsAnswer>, AuthzenError> {
    let scope = scope_of(&state, &store, pep)?;
    let answer = authzen::evaluate_many(&state.pipeline, &scope, request, state.config.batch_max)
        .await
        .map_err(ApiError::from)?;
    Ok(Json(answer))
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
