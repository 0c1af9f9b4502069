//! The OpenID AuthZEN Authorization API 1.0 mapped onto the pipeline: evaluation, evaluations
//! (batch with the three `evaluations_semantic` values) and subject/resource/action search
//! ([`search`]). `api::authzen` serves it over HTTP.
//!
//! In the default store the subject is an `Agent` and a request runs through exactly the native
//! pipeline (kill switch, registry, Cedar, ledger); in a folder store AuthZEN `type`s are Cedar
//! entity types. A request the pipeline cannot evaluate is `decision: false` with
//! `context.error`, per the spec. Searches evaluate without recording: they answer no agent's
//! action.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use crate::decision::{
    Evaluated, IdempotencyError, IdempotencyKey, Keyed, Pipeline, RequestError, Target,
};
use crate::identity::Caller;
use crate::ids::AgentId;
use crate::model::{Decision, DecisionRequest, Outcome, ReasonCode, ResourceRef};
use crate::policy::store::PolicyStore;

pub mod search;

/// A request AuthZEN's rules refuse as a whole (HTTP 400, plain text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// Where and for whom requests are evaluated: the folder store named by the path (none: the
/// default store) and the enforcement point that asks (none when PEP authentication is off).
#[derive(Clone)]
pub struct Scope {
    pub store: Option<Arc<PolicyStore>>,
    pub pep: Option<Caller>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct Entity {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub properties: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct Action {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub properties: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct EvaluationRequest {
    pub subject: Entity,
    pub action: Action,
    pub resource: Entity,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub context: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EvaluationResponse {
    pub decision: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub context: Option<Value>,
}

/// One item of a batch: each field given replaces the request's default as a whole.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct EvaluationItem {
    #[serde(default)]
    pub subject: Option<Entity>,
    #[serde(default)]
    pub action: Option<Action>,
    #[serde(default)]
    pub resource: Option<Entity>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub context: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Semantic {
    #[default]
    ExecuteAll,
    DenyOnFirstDeny,
    PermitOnFirstPermit,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct EvaluationsOptions {
    #[serde(default)]
    pub evaluations_semantic: Semantic,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct EvaluationsRequest {
    #[serde(flatten)]
    pub defaults: EvaluationItem,
    #[serde(default)]
    pub evaluations: Option<Vec<EvaluationItem>>,
    #[serde(default)]
    pub options: Option<EvaluationsOptions>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EvaluationsResponse {
    pub evaluations: Vec<EvaluationResponse>,
}

/// What `/access/v1/evaluations` answers: the list, or one evaluation when the request carries no
/// `evaluations` (AuthZEN 1.0 treats such a request as a single evaluation).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum EvaluationsAnswer {
    Many(EvaluationsResponse),
    One(EvaluationResponse),
}

/// The action the AuthZEN MCP binding (COAZ) names a tool call with.
pub const MCP_TOOLS_CALL: &str = "tools/call";

/// Maps an AuthZEN request onto the pipeline's terms.
fn prepare(
    scope: &Scope,
    request: EvaluationRequest,
) -> Result<(Caller, Target, DecisionRequest), RequestError> {
    let bad = |field: &str, message: String| RequestError {
        field: field.into(),
        message,
    };
    let agent: AgentId = request
        .subject
        .id
        .parse()
        .map_err(|e| bad("subject.id", format!("{e}")))?;
    let target = match &scope.store {
        None => {
            if request.subject.kind != "Agent" {
                return Err(bad(
                    "subject.type",
                    format!(
                        "the default store's subjects are `Agent`s (got `{}`)",
                        request.subject.kind
                    ),
                ));
            }
            Target::Default
        }
        Some(store) => Target::Store {
            store: store.clone(),
            subject_type: request.subject.kind.clone(),
            subject_properties: request.subject.properties.clone(),
        },
    };
    let caller = Caller {
        agent,
        on_behalf_of: None,
        roles: Default::default(),
        issuer: scope.pep.as_ref().map_or_else(
            || "authzen".to_owned(),
            |p| format!("authzen pep {}", p.agent),
        ),
    };
    let approval_id = match request.context.as_ref().and_then(|c| c.get("approval_id")) {
        None => None,
        Some(v) => Some(v.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
            bad(
                "context.approval_id",
                "must be an approval id (a UUID)".into(),
            )
        })?),
    };
    let mut context = request.context.unwrap_or_default();
    context.remove("approval_id");
    let session_id = match context.remove("session_id") {
        None => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(bad("context.session_id", "must be a string".into())),
    };
    let (mut action, mut kind) = (request.action.name, request.resource.kind);
    // The AuthZEN MCP binding's default mapping names a tool call `tools/call` on a `tool`; in
    // the default store that is `invoke` on a `Tool`.
    if scope.store.is_none() && action == MCP_TOOLS_CALL && kind == "tool" {
        action = "invoke".into();
        kind = "Tool".into();
    }
    let decision_request = DecisionRequest {
        action,
        resource: ResourceRef {
            kind,
            id: request.resource.id,
            attributes: request.resource.properties,
        },
        context: Some(context),
        session_id,
        approval_id,
        intent: None,
        trace: None,
        compensates: None,
    };
    Ok((caller, target, decision_request))
}

/// The AuthZEN answer for a recorded decision: the decision, and in `context` its id, reasons,
/// ledger index and (access-request profile) the approval to ask for. Batch items (`full` false)
/// carry a context only when there is an approval to ask for: PEPs and the interop harness compare
/// batch answers as `[{"decision": b}, ...]`.
fn answer(decision: &Decision, full: bool) -> EvaluationResponse {
    let approval = decision
        .reasons
        .iter()
        .any(|r| r.code == ReasonCode::ApprovalRequired);
    if !full && !approval {
        return EvaluationResponse {
            decision: decision.decision == Outcome::Allow,
            context: None,
        };
    }
    let mut context = json!({
        "decision_id": decision.decision_id.to_string(),
        "reasons": decision.reasons,
    });
    if let Some(ledger) = &decision.ledger {
        context["ledger_index"] = json!(ledger.index);
    }
    if approval {
        context["reason"] = json!("approval_required");
        context["evaluation_id"] = json!(decision.evaluation_id);
        context["access_request"] = json!(decision.access_request);
    }
    EvaluationResponse {
        decision: decision.decision == Outcome::Allow,
        context: Some(context),
    }
}

fn refused(error: &RequestError) -> EvaluationResponse {
    EvaluationResponse {
        decision: false,
        context: Some(json!({ "error": { "field": error.field, "message": error.message } })),
    }
}

/// One evaluation, recorded: an allow or a deny with its reasons; a request the pipeline cannot
/// evaluate is `decision: false` with `context.error`, as the spec has it.
pub async fn evaluate(
    pipeline: &Pipeline,
    scope: &Scope,
    request: EvaluationRequest,
) -> EvaluationResponse {
    let decided = match prepare(scope, request) {
        Ok((caller, target, request)) => pipeline.decide_in(target, &caller, request).await,
        Err(e) => Err(e),
    };
    match decided {
        Ok(decision) => answer(&decision, true),
        Err(e) => refused(&e),
    }
}

/// An evaluation's answer, and whether it was given before for the same `Idempotency-Key`.
pub struct Answered {
    pub response: EvaluationResponse,
    pub replayed: bool,
}

/// [`evaluate`] once per `Idempotency-Key` (see [`Pipeline::decide_keyed`]): a conflict or a
/// storage failure is an error, not a decision.
pub async fn evaluate_keyed(
    pipeline: &Pipeline,
    scope: &Scope,
    request: EvaluationRequest,
    key: IdempotencyKey,
) -> Result<Answered, IdempotencyError> {
    let keyed = match prepare(scope, request) {
        Ok((caller, target, request)) => pipeline.decide_keyed(target, &caller, request, key).await,
        Err(e) => Err(IdempotencyError::Request(e)),
    };
    let (response, replayed) = match keyed {
        Ok(Keyed::Decided(d)) => (answer(&d, true), false),
        Ok(Keyed::Replayed(d)) => (answer(&d, true), true),
        Err(IdempotencyError::Request(e)) => (refused(&e), false),
        Err(e) => return Err(e),
    };
    Ok(Answered { response, replayed })
}

/// Many evaluations in one call, in request order, stopping where `options.evaluations_semantic`
/// says; every evaluation made is recorded, in one ledger append.
pub async fn evaluate_many(
    pipeline: &Pipeline,
    scope: &Scope,
    request: EvaluationsRequest,
    batch_max: usize,
) -> Result<EvaluationsAnswer, Invalid> {
    let defaults = request.defaults;
    let items = match request.evaluations {
        Some(items) if !items.is_empty() => items,
        // No items: the request is a single evaluation.
        _ => {
            let single = complete(&defaults, EvaluationItem::default())
                .map_err(|missing| Invalid(format!("missing field `{missing}`")))?;
            return Ok(EvaluationsAnswer::One(
                evaluate(pipeline, scope, single).await,
            ));
        }
    };
    if items.len() > batch_max {
        return Err(Invalid(format!(
            "at most {batch_max} evaluations per request (got {})",
            items.len()
        )));
    }
    let semantic = request.options.unwrap_or_default().evaluations_semantic;

    // Evaluate in order, stopping where the semantic says; then record all of them at once.
    let mut slots: Vec<Result<usize, RequestError>> = Vec::new();
    let mut evaluated = Vec::new();
    for item in items {
        let prepared = complete(&defaults, item)
            .map_err(|missing| RequestError {
                field: missing.into(),
                message: "missing in the item and in the request's defaults".into(),
            })
            .and_then(|r| prepare(scope, r));
        let outcome = match prepared {
            Ok((caller, target, request)) => {
                match pipeline.evaluate_counted(&target, &caller, &request).await {
                    Ok(evaluation) => {
                        let allow = evaluation.decision.decision == Outcome::Allow;
                        evaluated.push(Evaluated {
                            caller,
                            target,
                            request,
                            evaluation,
                            idempotency: None,
                        });
                        slots.push(Ok(evaluated.len() - 1));
                        Some(allow)
                    }
                    Err(e) => {
                        slots.push(Err(e));
                        Some(false)
                    }
                }
            }
            Err(e) => {
                slots.push(Err(e));
                Some(false)
            }
        };
        match (semantic, outcome) {
            (Semantic::DenyOnFirstDeny, Some(false))
            | (Semantic::PermitOnFirstPermit, Some(true)) => break,
            _ => {}
        }
    }
    let mut recorded = pipeline.record_evaluated(evaluated).await.into_iter();
    let mut results: Vec<Option<Result<Decision, RequestError>>> = Vec::new();
    for slot in &slots {
        results.push(match slot {
            Ok(_) => recorded.next(),
            Err(e) => Some(Err(e.clone())),
        });
    }
    let evaluations = results
        .into_iter()
        .map(|r| match r {
            Some(Ok(decision)) => answer(&decision, false),
            Some(Err(e)) => refused(&e),
            None => refused(&RequestError {
                field: String::new(),
                message: "not recorded".into(),
            }),
        })
        .collect();
    Ok(EvaluationsAnswer::Many(EvaluationsResponse { evaluations }))
}

/// Fills an item's missing parts from the defaults; the name of a part missing in both.
fn complete(
    defaults: &EvaluationItem,
    item: EvaluationItem,
) -> Result<EvaluationRequest, &'static str> {
    Ok(EvaluationRequest {
        subject: item
            .subject
            .or_else(|| defaults.subject.clone())
            .ok_or("subject")?,
        action: item
            .action
            .or_else(|| defaults.action.clone())
            .ok_or("action")?,
        resource: item
            .resource
            .or_else(|| defaults.resource.clone())
            .ok_or("resource")?,
        context: item.context.or_else(|| defaults.context.clone()),
    })
}
