//! Policy versions over HTTP: upload a draft, list and read versions, activate (gated by the
//! store's policy tests) and retire. Writes need role `policy_admin`; reading also `admin` and
//! `auditor`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery, path_id};
use crate::app::AppState;
use crate::identity::{Caller, roles};
use crate::ids::{DEFAULT_STORE, VersionId};
use crate::lifecycle::{Activation, PolicyVersion, PolicyVersionDetail, VersionState};
use crate::policy::control::ControlAction;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upload, list))
        .routes(routes!(get))
        .routes(routes!(activate))
        .routes(routes!(test))
        .routes(routes!(retire))
        .routes(routes!(replay))
        .routes(routes!(shadow, shadow_report))
}

/// Evaluate a draft beside the active version on live traffic, without affecting answers.
#[utoipa::path(post, path = "/v1/policies/{version}/shadow", tag = "policies", params(("version" = uuid::Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = PolicyVersion), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn shadow(
    State(state): State<AppState>,
    caller: Caller,
    Path(version): Path<String>,
) -> Result<Json<PolicyVersion>, ApiError> {
    state.authorize(&caller, ControlAction::PolicyShadow)?;
    let version: VersionId = path_id(&version)?;
    Ok(Json(
        state
            .versions
            .shadow(&state.pipeline, &version, caller.agent.as_str())
            .await?,
    ))
}

/// How the shadow version compares with the active one: requests evaluated, disagreements (allow
/// to deny, deny to allow) and examples.
#[utoipa::path(get, path = "/v1/policies/{version}/shadow", tag = "policies", params(("version" = uuid::Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = crate::lifecycle::ShadowReport), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn shadow_report(
    State(state): State<AppState>,
    caller: Caller,
    Path(version): Path<String>,
) -> Result<Json<crate::lifecycle::ShadowReport>, ApiError> {
    caller.require_any_role(READERS)?;
    let version: VersionId = path_id(&version)?;
    let store = state.versions.store_of(&version).await?;
    Ok(Json(state.versions.shadow_report(
        &state.pipeline,
        &store,
        &version,
    )?))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    /// RFC 3339; default: the start of the ledger.
    #[serde(default)]
    from: Option<String>,
    /// RFC 3339; default: now.
    #[serde(default)]
    to: Option<String>,
}

/// What if: evaluate a version against the decisions recorded over a period, with the requests as
/// stored and the agents and tools as they were, and report the answers that would change.
#[utoipa::path(post, path = "/v1/policies/{version}/replay", tag = "policies", params(("version" = uuid::Uuid, Path)),
    request_body = ReplayRequest, security(("bearer" = [])),
    responses((status = 200, body = crate::lifecycle::replay::ReplayReport), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    Path(version): Path<String>,
    ApiJson(request): ApiJson<ReplayRequest>,
) -> Result<Json<crate::lifecycle::replay::ReplayReport>, ApiError> {
    caller.require_any_role(READERS)?;
    let version: VersionId = path_id(&version)?;
    let whole = crate::compliance::pack::whole_history();
    let period = crate::compliance::Period::parse(
        request.from.as_deref().or(Some(&whole.from.to_string())),
        request.to.as_deref(),
        std::time::Duration::ZERO,
    )?;
    Ok(Json(
        state
            .versions
            .replay(&state.pipeline, &version, &period)
            .await?,
    ))
}

const READERS: &[&str] = &[roles::POLICY_ADMIN, roles::ADMIN, roles::AUDITOR];

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UploadRequest {
    /// The policy store (default: `default`, the agent-governance store).
    #[serde(default)]
    store: Option<String>,
    /// `{"name.cedar": "policy text", ...}`.
    files: BTreeMap<String, String>,
}

#[derive(Serialize, ToSchema)]
struct Uploaded {
    version: VersionId,
    digest: String,
    state: VersionState,
}

/// Upload a draft policy version. It is validated against the store's schema: a policy that does
/// not parse or validate is a 422 whose `details.diagnostics` locate each problem. The same text
/// uploaded again answers the existing version (200).
#[utoipa::path(post, path = "/v1/policies", tag = "policies", request_body = UploadRequest, security(("bearer" = [])),
    responses((status = 201, body = Uploaded), (status = 200, body = Uploaded), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<UploadRequest>,
) -> Result<(StatusCode, Json<Uploaded>), ApiError> {
    state.authorize(&caller, ControlAction::PolicyUpload)?;
    let store = request.store.as_deref().unwrap_or(DEFAULT_STORE);
    let (version, created) = state
        .versions
        .upload(&state.pipeline, store, request.files, caller.agent.as_str())
        .await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(Uploaded {
            version: version.version,
            digest: version.digest,
            state: version.state,
        }),
    ))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// The policy store (default: `default`).
    store: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct VersionList {
    versions: Vec<PolicyVersion>,
}

/// A store's policy versions with their state, oldest first.
#[utoipa::path(get, path = "/v1/policies", tag = "policies", params(ListQuery), security(("bearer" = [])),
    responses((status = 200, body = VersionList), (status = 403, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<VersionList>, ApiError> {
    caller.require_any_role(READERS)?;
    let store = q.store.as_deref().unwrap_or(DEFAULT_STORE);
    Ok(Json(VersionList {
        versions: state.versions.list(store).await?,
    }))
}

/// One version with its policy texts.
#[utoipa::path(get, path = "/v1/policies/{version}", tag = "policies", params(("version" = uuid::Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = PolicyVersionDetail), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(version): Path<String>,
) -> Result<Json<PolicyVersionDetail>, ApiError> {
    caller.require_any_role(READERS)?;
    let version: VersionId = path_id(&version)?;
    Ok(Json(state.versions.get(&version).await?))
}

/// Make a version the one that decides in its store, from the next decision on. The store's policy
/// tests run against it first; any failure refuses the activation (409, `details.failures`). The
/// test run and the activation are ledger entries. Re-activating an earlier version is a rollback.
#[utoipa::path(post, path = "/v1/policies/{version}/activate", tag = "policies", params(("version" = uuid::Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Activation), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn activate(
    State(state): State<AppState>,
    caller: Caller,
    Path(version): Path<String>,
) -> Result<Json<Activation>, ApiError> {
    state.authorize(&caller, ControlAction::PolicyActivate)?;
    let version: VersionId = path_id(&version)?;
    Ok(Json(
        state
            .versions
            .activate(&state.pipeline, &version, caller.agent.as_str())
            .await?,
    ))
}

/// Run the store's policy tests against a version without activating it (what an activation
/// checks first). The run is a ledger entry; failures are in the answer, not an error.
#[utoipa::path(post, path = "/v1/policies/{version}/test", tag = "policies", params(("version" = uuid::Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = crate::lifecycle::TestRun), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path(version): Path<String>,
) -> Result<Json<crate::lifecycle::TestRun>, ApiError> {
    // Running the tests is an activation's first step, recorded as one.
    state.authorize(&caller, ControlAction::PolicyActivate)?;
    let version: VersionId = path_id(&version)?;
    Ok(Json(
        state
            .versions
            .test(&state.pipeline, &version, caller.agent.as_str())
            .await?,
    ))
}

/// Withdraw a version for good (not the active one).
#[utoipa::path(post, path = "/v1/policies/{version}/retire", tag = "policies", params(("version" = uuid::Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = PolicyVersion), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn retire(
    State(state): State<AppState>,
    caller: Caller,
    Path(version): Path<String>,
) -> Result<Json<PolicyVersion>, ApiError> {
    state.authorize(&caller, ControlAction::PolicyRetire)?;
    let version: VersionId = path_id(&version)?;
    Ok(Json(
        state
            .versions
            .retire(&state.pipeline, &version, caller.agent.as_str())
            .await?,
    ))
}
