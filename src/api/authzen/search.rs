//! AuthZEN search: the subjects, resources or actions for which a decision is true, paged. Each
//! search is one Cedar evaluation per candidate, run on the blocking pool.

use super::*;

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct PageRequest {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page {
    /// Empty when this is the last page.
    pub next_token: String,
    pub count: usize,
    pub total: usize,
}

/// A search: the entity with only a `type` is the one searched for.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct SearchRequest {
    pub subject: SearchEntity,
    #[serde(default)]
    pub action: Option<Action>,
    pub resource: SearchEntity,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub context: Option<Map<String, Value>>,
    #[serde(default)]
    pub page: Option<PageRequest>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct SearchEntity {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub properties: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchResponse {
    #[schema(value_type = Vec<Object>)]
    pub results: Vec<Value>,
    pub page: Page,
}

pub(super) const DEFAULT_PAGE: usize = 50;
pub(super) const MAX_PAGE: usize = 1000;

pub(super) fn page_of(
    results: Vec<Value>,
    page: Option<PageRequest>,
) -> Result<SearchResponse, ApiError> {
    let page = page.unwrap_or_default();
    let limit = page.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("page.limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let start = match page.token.as_deref() {
        None | Some("") => 0,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|s| *s <= results.len())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_request",
                    format!("page.token `{t}` is not one this server issued"),
                )
            })?,
    };
    let total = results.len();
    let end = (start + limit).min(total);
    let slice: Vec<Value> = results[start..end].to_vec();
    Ok(SearchResponse {
        page: Page {
            next_token: if end < total {
                end.to_string()
            } else {
                String::new()
            },
            count: slice.len(),
            total,
        },
        results: slice,
    })
}

/// The ids of every entity of `kind` Reins knows in the store, sorted.
pub(super) fn candidates(
    state: &AppState,
    store: &Option<std::sync::Arc<crate::policy::store::PolicyStore>>,
    kind: &str,
) -> Vec<String> {
    let mut ids: Vec<String> = match store {
        None => match kind {
            "Agent" => state
                .pipeline
                .registry()
                .agents()
                .into_iter()
                .map(|a| a.id.to_string())
                .collect(),
            "Tool" => state
                .pipeline
                .registry()
                .tools()
                .into_iter()
                .map(|t| t.id.to_string())
                .collect(),
            _ => Vec::new(),
        },
        Some(store) => store
            .entities
            .iter()
            .filter(|e| e.uid().type_name().to_string() == kind)
            .map(|e| e.uid().id().unescaped().to_owned())
            .collect(),
    };
    ids.sort();
    ids.dedup();
    ids
}

/// Whether `request` would be allowed, without recording it.
pub(super) fn allowed(
    state: &AppState,
    store: &Option<std::sync::Arc<crate::policy::store::PolicyStore>>,
    pep: &Pep,
    request: EvaluationRequest,
) -> bool {
    prepare(store, pep, request)
        .and_then(|(caller, target, request)| {
            state.pipeline.evaluate_in(&target, &caller, &request)
        })
        .is_ok_and(|e| e.decision.decision == Outcome::Allow)
}

pub(super) fn required_id(entity: &SearchEntity, field: &str) -> Result<Entity, ApiError> {
    Ok(Entity {
        kind: entity.kind.clone(),
        id: entity.id.clone().ok_or_else(|| {
            ApiError::bad_request("invalid_request", format!("missing field `{field}.id`"))
        })?,
        properties: entity.properties.clone(),
    })
}

pub(super) fn required_action(action: &Option<Action>) -> Result<Action, ApiError> {
    action
        .clone()
        .ok_or_else(|| ApiError::bad_request("invalid_request", "missing field `action`"))
}

/// Which side of a search is being searched for.
#[derive(Clone, Copy)]
pub(super) enum Searched {
    Subject,
    Resource,
}

/// The entities of the searched type, in the store, for which the decision is true.
pub(super) fn search_entities(
    state: &AppState,
    store: &Option<std::sync::Arc<crate::policy::store::PolicyStore>>,
    pep: &Pep,
    request: SearchRequest,
    searched: Searched,
) -> Result<SearchResponse, ApiError> {
    let action = required_action(&request.action)?;
    let (kind, fixed) = match searched {
        Searched::Subject => (
            &request.subject.kind,
            required_id(&request.resource, "resource")?,
        ),
        Searched::Resource => (
            &request.resource.kind,
            required_id(&request.subject, "subject")?,
        ),
    };
    let results = candidates(state, store, kind)
        .into_iter()
        .filter(|id| {
            let found = Entity {
                kind: kind.clone(),
                id: id.clone(),
                properties: None,
            };
            let (subject, resource) = match searched {
                Searched::Subject => (found, fixed.clone()),
                Searched::Resource => (fixed.clone(), found),
            };
            allowed(
                state,
                store,
                pep,
                EvaluationRequest {
                    subject,
                    action: action.clone(),
                    resource,
                    context: request.context.clone(),
                },
            )
        })
        .map(|id| json!({"type": kind, "id": id}))
        .collect();
    page_of(results, request.page.clone())
}

/// A subject or resource search, on the blocking pool.
async fn search_side(
    state: AppState,
    store: StoreSel,
    pep: Pep,
    request: SearchRequest,
    searched: Searched,
) -> Result<Json<SearchResponse>, AuthzenError> {
    let store = target_of(&state, &store)?;
    let answer =
        off_the_workers(move || search_entities(&state, &store, &pep, request, searched)).await?;
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
    let store = target_of(&state, &store)?;
    let answer = off_the_workers(move || search_actions(&state, &store, &pep, request)).await?;
    Ok(Json(answer))
}

/// The actions of the store's schema the subject may perform on the resource.
pub(super) fn search_actions(
    state: &AppState,
    store: &Option<std::sync::Arc<crate::policy::store::PolicyStore>>,
    pep: &Pep,
    request: SearchRequest,
) -> Result<SearchResponse, ApiError> {
    let subject = required_id(&request.subject, "subject")?;
    let resource = required_id(&request.resource, "resource")?;
    let schema_actions: Vec<String> = match &store {
        None => state.pipeline.policies().action_names(),
        Some(s) => s.pack.load().action_names(),
    };
    let results = schema_actions
        .into_iter()
        .filter(|name| {
            allowed(
                state,
                store,
                pep,
                EvaluationRequest {
                    subject: subject.clone(),
                    action: Action {
                        name: name.clone(),
                        properties: None,
                    },
                    resource: resource.clone(),
                    context: request.context.clone(),
                },
            )
        })
        .map(|name| json!({"name": name}))
        .collect();
    page_of(results, request.page)
}

/// Runs a search on the blocking pool: it is one Cedar evaluation per candidate, thousands for a
/// large store, and on an async worker it would hold up every request queued behind it.
pub(super) async fn off_the_workers<T: Send + 'static>(
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
