//! AuthZEN search over HTTP: [`crate::authzen::search`] run on the blocking pool.

use super::*;
use crate::authzen::search::{
    SearchRequest, SearchResponse, Searched, search_actions, search_entities,
};

/// A subject or resource search, on the blocking pool.
async fn search_side(
    state: AppState,
    store: StoreSel,
    pep: Pep,
    request: SearchRequest,
    searched: Searched,
) -> Result<Json<SearchResponse>, AuthzenError> {
    let scope = scope_of(&state, &store, pep)?;
    let answer = off_the_workers(move || {
        search_entities(&state.pipeline, &scope, request, searched).map_err(ApiError::from)
    })
    .await?;
    Ok(Json(answer))
}

/// Subject search: the subjects of `subject.type` that may perform the action on the resource.
#[utoipa::path(post, path = "/access/v1/search/subject", tag = "authzen", request_body = SearchRequest,
    security(("bearer" = [])), responses((status = 200, body = SearchResponse), (status = 400, description = "malformed request")))]
pub(super) async fn search_subject(
    State(state): State<AppState>,
    store: StoreSel,
    pep: Pep,
    AzJson(request): AzJson<SearchRequest>,
) -> Result<Json<SearchResponse>, AuthzenError> {
    search_side(state, store, pep, request, Searched::Subject).await
}

/// Resource search: the resources of `resource.type` the subject may perform the action on.
#[utoipa::path(post, path = "/access/v1/search/resource", tag = "authzen", request_body = SearchRequest,
    security(("bearer" = [])), responses((status = 200, body = SearchResponse), (status = 400, description = "malformed request")))]
pub(super) async fn search_resource(
    State(state): State<AppState>,
    store: StoreSel,
    pep: Pep,
    AzJson(request): AzJson<SearchRequest>,
) -> Result<Json<SearchResponse>, AuthzenError> {
    search_side(state, store, pep, request, Searched::Resource).await
}

/// Action search: the actions the subject may perform on the resource.
#[utoipa::path(post, path = "/access/v1/search/action", tag = "authzen", request_body = SearchRequest,
    security(("bearer" = [])), responses((status = 200, body = SearchResponse), (status = 400, description = "malformed request")))]
pub(super) async fn search_action(
    State(state): State<AppState>,
    store: StoreSel,
    pep: Pep,
    AzJson(request): AzJson<SearchRequest>,
) -> Result<Json<SearchResponse>, AuthzenError> {
    let scope = scope_of(&state, &store, pep)?;
    let answer = off_the_workers(move || {
        search_actions(&state.pipeline, &scope, request).map_err(ApiError::from)
    })
    .await?;
    Ok(Json(answer))
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
