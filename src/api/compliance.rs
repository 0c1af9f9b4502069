//! Compliance documents over HTTP: model cards, checklists, attestations and audit packs.
//!
//! Reading needs role `auditor`, `compliance_officer` or `admin`; attesting needs
//! `compliance_officer`. Each handler parses, checks the role and calls [`crate::compliance`].

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery, path_id};
use crate::app::AppState;
use crate::compliance::Period;
use crate::compliance::card::{self, ModelCard};
use crate::compliance::checklist::{self, Attestation, AttestationRequest, Checklist};
use crate::identity::{Caller, roles};
use crate::ids::AgentId;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(model_card))
        .routes(routes!(get_checklist))
        .routes(routes!(attest, list_attestations))
        .routes(routes!(audit_pack))
}

const READERS: &[&str] = &[roles::AUDITOR, roles::COMPLIANCE_OFFICER, roles::ADMIN];

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct PeriodQuery {
    /// RFC 3339; default: `to` minus `compliance.card_period` (30 days).
    from: Option<String>,
    /// RFC 3339; default: now.
    to: Option<String>,
}

pub(super) fn wants(headers: &HeaderMap, media: &str) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(media))
}

pub(super) fn markdown(text: String) -> Response {
    (
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
        text,
    )
        .into_response()
}

/// The agent's model card: Markdown with YAML front matter, or JSON with `Accept: application/json`.
#[utoipa::path(get, path = "/v1/agents/{id}/model-card", tag = "compliance", params(("id" = String, Path), PeriodQuery), security(("bearer" = [])),
    responses((status = 200, body = ModelCard, content_type = "text/markdown"), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn model_card(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PeriodQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require_any_role(READERS)?;
    let agent: AgentId = path_id(&id)?;
    let period = Period::parse(
        q.from.as_deref(),
        q.to.as_deref(),
        state.config.compliance.card_period,
    )?;
    let card = card::model_card(&state.compliance_sources(), &agent, &period).await?;
    if wants(&headers, "application/json") {
        return Ok(Json(card).into_response());
    }
    Ok(markdown(card::to_markdown(&card)?))
}

/// The EU AI Act checklist for the agent, evaluated now: JSON, or Markdown with
/// `Accept: text/markdown`.
#[utoipa::path(get, path = "/v1/agents/{id}/checklist", tag = "compliance", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Checklist), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_checklist(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require_any_role(READERS)?;
    let agent: AgentId = path_id(&id)?;
    let list = checklist::checklist(&state.compliance_sources(), &agent).await?;
    if wants(&headers, "text/markdown") {
        return Ok(markdown(checklist::to_markdown(&list)?));
    }
    Ok(Json(list).into_response())
}

/// Attest that a checklist item is met for the agent (role `compliance_officer`). Recorded in the
/// ledger; the checklist shows it at once.
#[utoipa::path(post, path = "/v1/agents/{id}/attestations", tag = "compliance", params(("id" = String, Path)), request_body = AttestationRequest, security(("bearer" = [])),
    responses((status = 201, body = Attestation), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn attest(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<AttestationRequest>,
) -> Result<(StatusCode, Json<Attestation>), ApiError> {
    state.authorize(
        &caller,
        crate::policy::control::ControlAction::AttestationRecord,
    )?;
    let agent: AgentId = path_id(&id)?;
    let (attestation, _) = checklist::attest(
        &state.ledger,
        &state.compliance_sources(),
        caller.agent.as_str(),
        &agent,
        request,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(attestation)))
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct AttestationList {
    attestations: Vec<Attestation>,
}

/// The agent's attestations, oldest first.
#[utoipa::path(get, path = "/v1/agents/{id}/attestations", tag = "compliance", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = AttestationList), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_attestations(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<AttestationList>, ApiError> {
    caller.require_any_role(READERS)?;
    let agent: AgentId = path_id(&id)?;
    let sources = state.compliance_sources();
    sources.agent(&agent)?;
    Ok(Json(AttestationList {
        attestations: checklist::attestations(&sources, &agent, crate::timestamp::Timestamp::now())
            .await?,
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct PackQuery {
    /// Only the entries concerning this agent, with its model card and checklist.
    agent: Option<String>,
    /// RFC 3339; default: the start of the ledger.
    from: Option<String>,
    /// RFC 3339; default: now.
    to: Option<String>,
}

/// An audit pack (zip) of the ledger over a period, verifiable offline with
/// `reins audit-pack verify`.
#[utoipa::path(get, path = "/v1/audit-pack", tag = "compliance", params(PackQuery), security(("bearer" = [])),
    responses((status = 200, content_type = "application/zip", body = Vec<u8>), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn audit_pack(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PackQuery>,
) -> Result<Response, ApiError> {
    state.authorize(&caller, crate::policy::control::ControlAction::AuditExport)?;
    let agent = match &q.agent {
        Some(a) => Some(a.parse::<AgentId>().map_err(|e| {
            ApiError::bad_request("invalid_query", format!("agent `{a}`: {e}")).with_field("agent")
        })?),
        None => None,
    };
    let zip = state
        .audit_pack(&caller, agent, q.from.as_deref(), q.to.as_deref())
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"reins-audit-pack.zip\"",
            ),
        ],
        zip,
    )
        .into_response())
}
