//! A decision explained, and objections to it over HTTP (AI Act Art 86): the explanation for
//! whoever answers the affected person, contests recorded and resolved by reviewers. Who may do
//! each is the control policy's call (`decision.explain`, `decision.contest`, `contest.resolve`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::compliance::{markdown, wants};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, path_id};
use crate::app::AppState;
use crate::compliance::explanation::{self, Explanation};
use crate::contests::{Contest, ContestRequest, ResolutionRequest};
use crate::identity::Caller;
use crate::ids::{ContestId, DecisionId};
use crate::policy::control::ControlAction;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(explain))
        .routes(routes!(contest, list))
        .routes(routes!(resolve))
}

/// Why a decision was made, in plain language: JSON, or Markdown with `Accept: text/markdown`.
/// Quotes the deciding policies from the pack that decided, and proves the decision's ledger
/// entry against the latest signed checkpoint.
#[utoipa::path(get, path = "/v1/decisions/{id}/explanation", tag = "decisions",
    params(("id" = String, Path, description = "decision id")), security(("bearer" = [])),
    responses((status = 200, body = Explanation), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn explain(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.authorize(&caller, ControlAction::DecisionExplain)?;
    let id: DecisionId = path_id(&id)?;
    let explained = explanation::explain(
        &state.compliance_sources(),
        &state.outcomes,
        &state.contests,
        &id,
    )
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no decision {id}")))?;
    if wants(&headers, "text/markdown") {
        return Ok(markdown(explanation::markdown(&explained)?));
    }
    Ok(Json(explained).into_response())
}

/// Record an objection to a decision (role `reviewer` by default).
#[utoipa::path(post, path = "/v1/decisions/{id}/contest", tag = "decisions",
    params(("id" = String, Path, description = "decision id")), request_body = ContestRequest,
    security(("bearer" = [])),
    responses((status = 201, body = Contest), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
async fn contest(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ContestRequest>,
) -> Result<(StatusCode, Json<Contest>), ApiError> {
    state.authorize(&caller, ControlAction::DecisionContest)?;
    let id: DecisionId = path_id(&id)?;
    let recorded = state.contests.contest(&caller, &id, body).await?;
    Ok((StatusCode::CREATED, Json(recorded)))
}

/// A decision's contests, oldest first (whoever may read its explanation).
#[utoipa::path(get, path = "/v1/decisions/{id}/contest", tag = "decisions",
    params(("id" = String, Path, description = "decision id")), security(("bearer" = [])),
    responses((status = 200, body = Vec<Contest>), (status = 403, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<Contest>>, ApiError> {
    state.authorize(&caller, ControlAction::DecisionExplain)?;
    let id: DecisionId = path_id(&id)?;
    Ok(Json(state.contests.of_decision(&id).await?))
}

/// Record how a contest was resolved: `upheld` or `overturned`, with a comment. Once.
#[utoipa::path(post, path = "/v1/contests/{id}/resolution", tag = "decisions",
    params(("id" = String, Path, description = "contest id")), request_body = ResolutionRequest,
    security(("bearer" = [])),
    responses((status = 200, body = Contest), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn resolve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ResolutionRequest>,
) -> Result<Json<Contest>, ApiError> {
    state.authorize(&caller, ControlAction::ContestResolve)?;
    let id: ContestId = path_id(&id)?;
    Ok(Json(state.contests.resolve(&caller, &id, body).await?))
}
