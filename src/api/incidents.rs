//! Serious incidents over HTTP (AI Act Art 73): opened, updated, reported and closed by operators
//! and compliance officers, read by auditors too; the control policy decides (`incident.record`,
//! `incident.read`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery, path_id};
use crate::app::AppState;
use crate::identity::Caller;
use crate::ids::IncidentId;
use crate::incidents::{
    CloseIncident, Incident, IncidentStatus, OpenIncident, ReportIncident, UpdateIncident,
};
use crate::policy::control::ControlAction;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(open, list))
        .routes(routes!(get))
        .routes(routes!(update))
        .routes(routes!(report, incident_report))
        .routes(routes!(close))
}

/// The incident's report: its deadline and whether it was met, its timeline from the ledger and
/// every cited entry's inclusion proof. JSON, or Markdown with `Accept: text/markdown` (the same
/// as `reins incident report`).
#[utoipa::path(get, path = "/v1/incidents/{id}/report", tag = "incidents", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = crate::compliance::incident::IncidentReport), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn incident_report(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<axum::response::Response, ApiError> {
    use crate::compliance::incident;
    use axum::response::IntoResponse;
    state.authorize(&caller, ControlAction::IncidentRead)?;
    let id: IncidentId = path_id(&id)?;
    let report = incident::report(&state.compliance_sources(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no incident {id}")))?;
    if super::compliance::wants(&headers, "text/markdown") {
        return Ok(super::compliance::markdown(incident::markdown(&report)?));
    }
    Ok(Json(report).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Only incidents past their reporting deadline (`true`).
    #[serde(default)]
    overdue: Option<bool>,
    #[serde(default)]
    status: Option<IncidentStatus>,
}

/// Open an incident: its reporting deadline (Art 73(2)-(4)) is computed from `aware_at` and the
/// severity.
#[utoipa::path(post, path = "/v1/incidents", tag = "incidents", request_body = OpenIncident, security(("bearer" = [])),
    responses((status = 201, body = Incident), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn open(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<OpenIncident>,
) -> Result<(StatusCode, Json<Incident>), ApiError> {
    state.authorize(&caller, ControlAction::IncidentRecord)?;
    let incident = state.incidents.open(caller.agent.as_str(), body).await?;
    Ok((StatusCode::CREATED, Json(incident)))
}

/// Incidents, newest first.
#[utoipa::path(get, path = "/v1/incidents", tag = "incidents", params(ListQuery), security(("bearer" = [])),
    responses((status = 200, body = Vec<Incident>), (status = 403, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<Incident>>, ApiError> {
    state.authorize(&caller, ControlAction::IncidentRead)?;
    let incidents = state.incidents.list().await?;
    Ok(Json(
        incidents
            .into_iter()
            .filter(|i| q.overdue.is_none_or(|o| i.overdue == o))
            .filter(|i| q.status.is_none_or(|s| i.status == s))
            .collect(),
    ))
}

#[utoipa::path(get, path = "/v1/incidents/{id}", tag = "incidents", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Incident), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Incident>, ApiError> {
    state.authorize(&caller, ControlAction::IncidentRead)?;
    let id: IncidentId = path_id(&id)?;
    state
        .incidents
        .get(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no incident {id}")))
}

/// Add to an incident's timeline: links (added to those held), a corrected severity or
/// awareness time (the deadline follows), a note.
#[utoipa::path(post, path = "/v1/incidents/{id}/updates", tag = "incidents", params(("id" = String, Path)),
    request_body = UpdateIncident, security(("bearer" = [])),
    responses((status = 200, body = Incident), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateIncident>,
) -> Result<Json<Incident>, ApiError> {
    state.authorize(&caller, ControlAction::IncidentRecord)?;
    let id: IncidentId = path_id(&id)?;
    Ok(Json(state.incidents.update(&caller, &id, body).await?))
}

/// Record the report made to the market surveillance authority, with its reference.
#[utoipa::path(post, path = "/v1/incidents/{id}/report", tag = "incidents", params(("id" = String, Path)),
    request_body = ReportIncident, security(("bearer" = [])),
    responses((status = 200, body = Incident), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn report(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReportIncident>,
) -> Result<Json<Incident>, ApiError> {
    state.authorize(&caller, ControlAction::IncidentRecord)?;
    let id: IncidentId = path_id(&id)?;
    Ok(Json(state.incidents.report(&caller, &id, body).await?))
}

/// Close an incident, saying why.
#[utoipa::path(post, path = "/v1/incidents/{id}/close", tag = "incidents", params(("id" = String, Path)),
    request_body = CloseIncident, security(("bearer" = [])),
    responses((status = 200, body = Incident), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn close(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CloseIncident>,
) -> Result<Json<Incident>, ApiError> {
    state.authorize(&caller, ControlAction::IncidentRecord)?;
    let id: IncidentId = path_id(&id)?;
    Ok(Json(state.incidents.close(&caller, &id, body).await?))
}
