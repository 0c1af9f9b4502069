//! Approvals over HTTP: approvers list, grant and deny; the requesting agent polls its own.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery, path_id};
use crate::app::{AppState, ApprovalView};
use crate::approvals::{Approval, Status, Verdict};
use crate::identity::{Caller, roles};
use crate::ids::ApprovalId;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get))
        .routes(routes!(grant))
        .routes(routes!(deny))
}

const READERS: &[&str] = &[roles::APPROVER, roles::ADMIN, roles::AUDITOR];

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// `pending`, `granted`, `denied`, `expired`, `cancelled` or `used`.
    status: Option<Status>,
    /// At most this many, newest first (default 100, max 1000).
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
struct ApprovalList {
    approvals: Vec<ApprovalView>,
}

/// Approvals, newest first (role `approver`, `admin` or `auditor`).
#[utoipa::path(get, path = "/v1/approvals", tag = "approvals", params(ListQuery), security(("bearer" = [])),
    responses((status = 200, body = ApprovalList), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ApprovalList>, ApiError> {
    caller.require_any_role(READERS)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(
            ApiError::bad_request("invalid_query", "limit must be between 1 and 1000")
                .with_field("limit"),
        );
    }
    Ok(Json(ApprovalList {
        approvals: state.approval_views(q.status, limit).await?,
    }))
}

/// One approval: the requesting agent polls it here; approvers, admins and auditors read any.
#[utoipa::path(get, path = "/v1/approvals/{id}", tag = "approvals", params(("id" = uuid::Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = ApprovalView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ApprovalView>, ApiError> {
    let id: ApprovalId = path_id(&id)?;
    let approval = state
        .approvals
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no approval `{id}`")))?;
    if approval.agent_id != caller.agent.as_str() {
        caller.require_any_role(READERS)?;
    }
    Ok(Json(state.approval_view(approval).await?))
}

async fn decide(
    state: &AppState,
    caller: &Caller,
    id: &str,
    grant: bool,
    verdict: Verdict,
) -> Result<Approval, ApiError> {
    state.authorize(
        caller,
        crate::policy::control::ControlAction::ApprovalDecide,
    )?;
    let id: ApprovalId = path_id(id)?;
    Ok(state.decide_approval(caller, &id, grant, verdict).await?)
}

/// Grant a pending approval (role `approver`; never the requesting agent, nor by default its owner).
#[utoipa::path(post, path = "/v1/approvals/{id}/grant", tag = "approvals", params(("id" = uuid::Uuid, Path)), request_body = Verdict,
    security(("bearer" = [])),
    responses((status = 200, body = Approval), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn grant(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(verdict): ApiJson<Verdict>,
) -> Result<Json<Approval>, ApiError> {
    Ok(Json(decide(&state, &caller, &id, true, verdict).await?))
}

/// Deny a pending approval (role `approver`).
#[utoipa::path(post, path = "/v1/approvals/{id}/deny", tag = "approvals", params(("id" = uuid::Uuid, Path)), request_body = Verdict,
    security(("bearer" = [])),
    responses((status = 200, body = Approval), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn deny(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(verdict): ApiJson<Verdict>,
) -> Result<Json<Approval>, ApiError> {
    Ok(Json(decide(&state, &caller, &id, false, verdict).await?))
}
