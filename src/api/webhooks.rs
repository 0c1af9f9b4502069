//! Webhooks over HTTP: what each configured hook sent lately, and where it reads from next.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use crate::app::AppState;
use crate::identity::{Caller, roles};
use crate::webhooks::HookState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(deliveries))
}

#[derive(Serialize, ToSchema)]
struct Deliveries {
    webhooks: Vec<HookState>,
}

/// The configured webhooks: each one's cursor in the ledger and its most recent sends (this
/// server's, newest first), with attempts, status and the last error.
#[utoipa::path(get, path = "/v1/webhooks/deliveries", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = Deliveries), (status = 403, body = ErrorBody)))]
async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Deliveries>, ApiError> {
    caller.require_any_role(&[roles::OPERATOR, roles::ADMIN, roles::AUDITOR])?;
    Ok(Json(Deliveries {
        webhooks: state.webhooks.states(),
    }))
}
