//! The ledger's read API (role `auditor` or `admin`): checkpoint, verifier key, entries, proofs.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiQuery, path_id};
use crate::app::AppState;
use crate::identity::{Caller, roles};
use crate::ledger::{ConsistencyProof, InclusionProof, ServedEntry, TilePath};

/// Most entries one `GET /v1/ledger/entries` returns.
const MAX_PAGE: u64 = 1000;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(checkpoint))
        .routes(routes!(key))
        .routes(routes!(entries))
        .routes(routes!(entry))
        .routes(routes!(inclusion))
        .routes(routes!(consistency))
        .routes(routes!(tiles_checkpoint))
        // A tile path spans several segments, which needs axum's wildcard; its OpenAPI entry is
        // added in `ApiDoc` under the documented form `/ledger/tile/{path}`.
        .route("/ledger/tile/{*path}", axum::routing::get(tile))
}

fn auditor(caller: &Caller) -> Result<(), ApiError> {
    Ok(caller.require_any_role(&[roles::AUDITOR, roles::ADMIN])?)
}

fn text(body: String) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body)
}

/// The latest signed checkpoint (C2SP tlog-checkpoint in a signed note).
#[utoipa::path(get, path = "/v1/ledger/checkpoint", tag = "ledger", security(("bearer" = [])),
    responses((status = 200, content_type = "text/plain", body = String), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn checkpoint(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    auditor(&caller)?;
    let note = state
        .ledger
        .checkpoint()
        .await?
        .ok_or_else(|| ApiError::not_found("no checkpoint has been signed yet"))?;
    Ok(text(note))
}

/// The verifier key (C2SP vkey) that checks the checkpoints.
#[utoipa::path(get, path = "/v1/ledger/key", tag = "ledger", security(("bearer" = [])),
    responses((status = 200, content_type = "text/plain", body = String), (status = 403, body = ErrorBody)))]
async fn key(State(state): State<AppState>, caller: Caller) -> Result<impl IntoResponse, ApiError> {
    auditor(&caller)?;
    Ok(text(format!("{}\n", state.ledger.verifier_key())))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct Range {
    /// First index (inclusive).
    start: u64,
    /// Last index (exclusive); at most 1000 after `start`.
    end: u64,
}

#[derive(Serialize, ToSchema)]
struct EntryPage {
    entries: Vec<ServedEntry>,
}

/// Entries `[start, end)` with their exact hashed bytes.
#[utoipa::path(get, path = "/v1/ledger/entries", tag = "ledger", params(Range), security(("bearer" = [])),
    responses((status = 200, body = EntryPage), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn entries(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(range): ApiQuery<Range>,
) -> Result<Json<EntryPage>, ApiError> {
    auditor(&caller)?;
    if range.end < range.start || range.end - range.start > MAX_PAGE {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("end must be between start and start + {MAX_PAGE}"),
        )
        .with_field("end"));
    }
    let size = state.ledger.head().size;
    if range.start > size {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("start is past the end of the ledger ({size} entries)"),
        )
        .with_field("start"));
    }
    Ok(Json(EntryPage {
        entries: state.ledger.entries(range.start, range.end).await?,
    }))
}

/// One entry.
#[utoipa::path(get, path = "/v1/ledger/entries/{index}", tag = "ledger", params(("index" = u64, Path)), security(("bearer" = [])),
    responses((status = 200, body = ServedEntry), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn entry(
    State(state): State<AppState>,
    caller: Caller,
    Path(index): Path<String>,
) -> Result<Json<ServedEntry>, ApiError> {
    auditor(&caller)?;
    let index: u64 = path_id(&index)?;
    let mut found = state.ledger.entries(index, index.saturating_add(1)).await?;
    found
        .pop()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no entry {index}")))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct InclusionQuery {
    index: u64,
    tree_size: u64,
}

/// Inclusion proof of entry `index` in the tree of `tree_size` entries (RFC 9162 2.1.3).
#[utoipa::path(get, path = "/v1/ledger/proof/inclusion", tag = "ledger", params(InclusionQuery), security(("bearer" = [])),
    responses((status = 200, body = InclusionProof), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn inclusion(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<InclusionQuery>,
) -> Result<Json<InclusionProof>, ApiError> {
    auditor(&caller)?;
    Ok(Json(
        state.ledger.inclusion_proof(q.index, q.tree_size).await?,
    ))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ConsistencyQuery {
    from: u64,
    to: u64,
}

/// Consistency proof between tree sizes `from` and `to` (RFC 9162 2.1.4).
#[utoipa::path(get, path = "/v1/ledger/proof/consistency", tag = "ledger", params(ConsistencyQuery), security(("bearer" = [])),
    responses((status = 200, body = ConsistencyProof), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn consistency(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ConsistencyQuery>,
) -> Result<Json<ConsistencyProof>, ApiError> {
    auditor(&caller)?;
    Ok(Json(state.ledger.consistency_proof(q.from, q.to).await?))
}

/// The latest checkpoint, at the C2SP tlog-tiles location.
#[utoipa::path(get, path = "/ledger/checkpoint", tag = "ledger", security(("bearer" = [])),
    responses((status = 200, content_type = "text/plain", body = String), (status = 403, body = ErrorBody)))]
async fn tiles_checkpoint(
    state: State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    checkpoint(state, caller).await
}

/// C2SP tlog-tiles: hash tiles `<L>/<N>[.p/<W>]` and entry bundles `entries/<N>[.p/<W>]`.
#[utoipa::path(get, path = "/ledger/tile/{path}", tag = "ledger", params(("path" = String, Path, description = "e.g. 0/x001/234 or entries/000.p/12")),
    security(("bearer" = [])),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn tile(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    auditor(&caller)?;
    let parsed = TilePath::parse(&path).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_tile_path",
            format!("`{path}` is not a tlog-tiles path"),
        )
    })?;
    let body = match parsed {
        TilePath::Hashes {
            level,
            index,
            width,
        } => state.ledger.tile(level, index, width).await?,
        TilePath::Entries { index, width } => state.ledger.entry_bundle(index, width).await?,
    };
    let body =
        body.ok_or_else(|| ApiError::not_found(format!("tile {path} is beyond the tree")))?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body))
}
