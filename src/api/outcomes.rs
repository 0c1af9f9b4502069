//! Outcomes over HTTP: the agent (or an enforcement point for it) reports what came of an allowed
//! action; auditors read it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, path_id};
use crate::app::AppState;
use crate::identity::{Caller, roles};
use crate::ids::DecisionId;
use crate::outcomes::{OutcomeReport, RecordedOutcome};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(report, get))
}

/// Report what came of an allowed action: by the agent that asked, or a caller with role `pep`
/// acting for it. One per decision (a second is 409); a denied decision has none (422).
#[utoipa::path(post, path = "/v1/decisions/{id}/outcome", tag = "decisions",
    params(("id" = String, Path, description = "decision id")), request_body = OutcomeReport,
    security(("bearer" = [])),
    responses((status = 201, body = RecordedOutcome), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn report(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<OutcomeReport>,
) -> Result<(StatusCode, Json<RecordedOutcome>), ApiError> {
    let id: DecisionId = path_id(&id)?;
    let recorded = state.outcomes.report(&caller, &id, body).await?;
    Ok((StatusCode::CREATED, Json(recorded)))
}

/// The outcome reported for a decision (role `admin` or `auditor`).
#[utoipa::path(get, path = "/v1/decisions/{id}/outcome", tag = "decisions",
    params(("id" = String, Path, description = "decision id")), security(("bearer" = [])),
    responses((status = 200, body = RecordedOutcome), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RecordedOutcome>, ApiError> {
    caller.require_any_role(&[roles::ADMIN, roles::AUDITOR])?;
    let id: DecisionId = path_id(&id)?;
    state
        .outcomes
        .get(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("decision {id} has no outcome")))
}
