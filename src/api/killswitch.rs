//! The kill switch over HTTP: engage and release (role `operator`), list (also `admin`, `auditor`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, path_id};
use crate::app::AppState;
use crate::identity::{Caller, roles};
use crate::killswitch::{EngageRequest, ReleaseRequest, Switch};
use crate::policy::control::ControlAction;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(engage, list))
        .routes(routes!(release))
}

/// Engage a kill switch. The first decision that starts after this returns is denied.
#[utoipa::path(post, path = "/v1/killswitch", tag = "killswitch", request_body = EngageRequest, security(("bearer" = [])),
    responses((status = 201, body = Switch), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn engage(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<EngageRequest>,
) -> Result<(StatusCode, Json<Switch>), ApiError> {
    state.authorize(&caller, ControlAction::KillswitchEngage)?;
    let switch = state.engage_killswitch(&caller, request).await?;
    Ok((StatusCode::CREATED, Json(switch)))
}

/// Release an engaged kill switch, saying why.
#[utoipa::path(delete, path = "/v1/killswitch/{id}", tag = "killswitch", params(("id" = uuid::Uuid, Path)), request_body = ReleaseRequest,
    security(("bearer" = [])),
    responses((status = 200, body = Switch), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn release(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<ReleaseRequest>,
) -> Result<Json<Switch>, ApiError> {
    state.authorize(&caller, ControlAction::KillswitchRelease)?;
    Ok(Json(
        state
            .killswitches
            .release(
                caller.agent.as_str(),
                &path_id(&id)?,
                request,
                crate::timestamp::Timestamp::now(),
            )
            .await?,
    ))
}

#[derive(Serialize, ToSchema)]
struct SwitchList {
    /// Engaged now.
    engaged: Vec<Switch>,
    /// Every switch ever engaged, newest first, with who, when and why.
    history: Vec<Switch>,
}

/// Engaged and past kill switches.
#[utoipa::path(get, path = "/v1/killswitch", tag = "killswitch", security(("bearer" = [])),
    responses((status = 200, body = SwitchList), (status = 403, body = ErrorBody)))]
async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<SwitchList>, ApiError> {
    caller.require_any_role(&[roles::OPERATOR, roles::ADMIN, roles::AUDITOR])?;
    let history = state.killswitches.history().await?;
    let engaged = history.iter().filter(|s| s.is_engaged()).cloned().collect();
    Ok(Json(SwitchList { engaged, history }))
}
