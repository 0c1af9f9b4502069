//! AuthZEN search: the subjects, resources or actions for which a decision is true, paged. Each
//! search is one Cedar evaluation per candidate and records nothing; it is synchronous and long
//! for a large store, so callers run it off the async workers.

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

pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 1000;

fn page_of(results: Vec<Value>, page: Option<PageRequest>) -> Result<SearchResponse, Invalid> {
    let page = page.unwrap_or_default();
    let limit = page.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Invalid(format!(
            "page.limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let start = match page.token.as_deref() {
        None | Some("") => 0,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|s| *s <= results.len())
            .ok_or_else(|| Invalid(format!("page.token `{t}` is not one this server issued")))?,
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
fn candidates(pipeline: &Pipeline, store: &Option<Arc<PolicyStore>>, kind: &str) -> Vec<String> {
    let mut ids: Vec<String> = match store {
        None => match kind {
            "Agent" => pipeline
                .registry()
                .agents()
                .into_iter()
                .map(|a| a.id.to_string())
                .collect(),
            "Tool" => pipeline
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
fn allowed(pipeline: &Pipeline, scope: &Scope, request: EvaluationRequest) -> bool {
    prepare(scope, request)
        .and_then(|(caller, target, request)| pipeline.evaluate_in(&target, &caller, &request))
        .is_ok_and(|e| e.decision.decision == Outcome::Allow)
}

fn required_id(entity: &SearchEntity, field: &str) -> Result<Entity, Invalid> {
    Ok(Entity {
        kind: entity.kind.clone(),
        id: entity
            .id
            .clone()
            .ok_or_else(|| Invalid(format!("missing field `{field}.id`")))?,
        properties: entity.properties.clone(),
    })
}

fn required_action(action: &Option<Action>) -> Result<Action, Invalid> {
    action
        .clone()
        .ok_or_else(|| Invalid("missing field `action`".into()))
}

/// Which side of a search is being searched for.
#[derive(Clone, Copy)]
pub enum Searched {
    Subject,
    Resource,
}

/// The entities of the searched type, in the store, for which the decision is true.
pub fn search_entities(
    pipeline: &Pipeline,
    scope: &Scope,
    request: SearchRequest,
    searched: Searched,
) -> Result<SearchResponse, Invalid> {
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
    let results = candidates(pipeline, &scope.store, kind)
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
                pipeline,
                scope,
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

/// The actions of the store's schema the subject may perform on the resource.
pub fn search_actions(
    pipeline: &Pipeline,
    scope: &Scope,
    request: SearchRequest,
) -> Result<SearchResponse, Invalid> {
    let subject = required_id(&request.subject, "subject")?;
    let resource = required_id(&request.resource, "resource")?;
    let schema_actions: Vec<String> = match &scope.store {
        None => pipeline.policies().action_names(),
        Some(s) => s.pack.load().action_names(),
    };
    let results = schema_actions
        .into_iter()
        .filter(|name| {
            allowed(
                pipeline,
                scope,
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
