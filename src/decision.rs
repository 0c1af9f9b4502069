//! The decision pipeline: verified caller + request -> registry -> Cedar -> durable record -> answer.
//!
//! [`Pipeline::evaluate`] is pure (no I/O): it checks the request against the schema, applies the
//! fail-closed rules and runs Cedar. [`Pipeline::decide`] adds the durable write; nothing is
//! answered until its record is committed, and if it cannot be, the answer is a deny.
//!
//! Fail closed, in order: an unknown agent, a suspended agent, an unknown tool, an empty policy
//! pack, a Cedar evaluation error in any policy, a storage failure: each is a deny whose reason
//! code says which. Cedar ignores a policy that errors; Reins does not, because an erroring
//! `forbid` would otherwise let a request through.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use cedar_policy::{
    Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    Request, RestrictedExpression,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::Instrument;

use crate::approvals::{self, Approval, Approvals};
use crate::events::{
    DecisionEvent, Entry, EntryError, Event, Probe, ResourceEvent, SelfCheckEvent,
};
use crate::identity::Caller;
use crate::ids::StoreName;
use crate::ids::{AgentId, DecisionId, ToolId, UserId};
use crate::killswitch::KillSwitches;
use crate::ledger::{Append, Ledger, LedgerRef};
use crate::model::{
    AccessRequest, Decision, DecisionRecord, DecisionRequest, EvaluationError, Outcome, Reason,
    ReasonCode, ResourceRef,
};
use crate::policy::PolicyPack;
use crate::policy::shadow::Shadow;
use crate::policy::store::PolicyStore;
use crate::registry::{AgentEntry, AgentStatus, EntityTypes, Registry, RiskTier, Snapshot};
use crate::store::{self, DecisionRow, SideEffect, Store, StoreError};

/// Context keys Reins fills in itself; a caller may not set them.
const RESERVED_CONTEXT: &[&str] = &["user", "session_id", "approval"];

/// A decision before it is recorded, with what the record needs besides the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub decision: Decision,
    /// Registry version of the agent the decision saw.
    pub agent_version: Option<i64>,
    /// A pending approval this decision asks for, to record with it.
    pub approval_requested: Option<Approval>,
    /// The granted approval this decision uses, to mark used with it.
    pub approval_used: Option<Approval>,
    /// The agent's EU AI Act tier, when the registry knows it (for metrics and spans).
    pub risk_tier: Option<RiskTier>,
    /// When evaluation began: the decision's latency runs from here to the durable answer.
    pub started: Instant,
}

/// A request the schema cannot make sense of (HTTP 422). Nothing is stored for it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RequestError {
    pub field: String,
    pub message: String,
}

impl RequestError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error inside element `index` of a batch.
    fn in_batch(self, index: usize) -> Self {
        Self {
            field: format!("requests[{index}].{}", self.field),
            message: self.message,
        }
    }
}

/// Where a decision is made: the default (agent-governance) store, whose principal is the calling
/// agent and whose entities come from the registry, or a folder-backed store, whose principal is
/// whatever entity the request names.
#[derive(Clone)]
pub enum Target {
    Default,
    Store {
        store: Arc<PolicyStore>,
        /// The principal's Cedar entity type (AuthZEN `subject.type`).
        subject_type: String,
        /// Attributes of a principal the store's entities do not hold.
        subject_properties: Option<Map<String, Value>>,
    },
}

impl Target {
    fn store_name(&self) -> Option<String> {
        match self {
            Target::Default => None,
            Target::Store { store, .. } => Some(store.name.to_string()),
        }
    }
}

/// The resource of a default-store request: a registered tool, or an entity built from the
/// request's attributes.
enum ResourceEntity<'a> {
    Registered(&'a Arc<crate::registry::ToolEntry>),
    Built(Box<Entity>),
}

/// A request evaluated but not yet recorded.
pub struct Evaluated {
    pub caller: Caller,
    pub target: Target,
    pub request: DecisionRequest,
    pub evaluation: Evaluation,
}

/// Evaluates and records decisions.
pub struct Pipeline {
    registry: Arc<Registry>,
    killswitches: Arc<KillSwitches>,
    approvals: Arc<Approvals>,
    policies: ArcSwap<PolicyPack>,
    ledger: Arc<Ledger>,
    store: Store,
    action_type: EntityTypeName,
    batch_max: usize,
    stores: BTreeMap<StoreName, Arc<PolicyStore>>,
    /// The default store's shadow version, if any.
    shadow: arc_swap::ArcSwapOption<Shadow>,
}

impl Pipeline {
    pub fn new(
        registry: Arc<Registry>,
        killswitches: Arc<KillSwitches>,
        approvals: Arc<Approvals>,
        policies: PolicyPack,
        ledger: Arc<Ledger>,
        store: Store,
        batch_max: usize,
    ) -> Result<Self, RequestError> {
        let action_type = EntityTypeName::from_str("Action")
            .map_err(|e| RequestError::new("action", e.to_string()))?;
        Ok(Self {
            registry,
            killswitches,
            approvals,
            policies: ArcSwap::from_pointee(policies),
            ledger,
            store,
            action_type,
            batch_max,
            stores: BTreeMap::new(),
            shadow: Default::default(),
        })
    }

    /// Starts (Some) or stops (None) shadowing a version in `store`.
    pub fn set_shadow(&self, store: Option<&StoreName>, shadow: Option<Arc<Shadow>>) {
        match store {
            None => self.shadow.store(shadow),
            Some(name) => {
                if let Some(s) = self.stores.get(name) {
                    s.shadow.store(shadow);
                }
            }
        }
    }

    /// The shadow version of `store`, if any.
    pub fn shadow_of(&self, store: Option<&StoreName>) -> Option<Arc<Shadow>> {
        match store {
            None => self.shadow.load_full(),
            Some(name) => self.stores.get(name).and_then(|s| s.shadow.load_full()),
        }
    }

    /// Adds folder-backed stores (before serving).
    pub fn with_stores(mut self, stores: Vec<PolicyStore>) -> Self {
        for store in stores {
            self.stores.insert(store.name.clone(), Arc::new(store));
        }
        self
    }

    /// The active pack of a store (`None`: the default store).
    pub fn pack_of(&self, store: Option<&StoreName>) -> Option<Arc<PolicyPack>> {
        match store {
            None => Some(self.policies.load_full()),
            Some(name) => self.stores.get(name).map(|s| s.pack.load_full()),
        }
    }

    /// Makes `pack` the one that decides in `store` from the next request on.
    pub fn set_pack(&self, store: Option<&StoreName>, pack: PolicyPack) {
        match store {
            None => self.policies.store(Arc::new(pack)),
            Some(name) => {
                if let Some(s) = self.stores.get(name) {
                    s.pack.store(Arc::new(pack));
                }
            }
        }
    }

    /// A folder-backed store by name.
    pub fn store(&self, name: &StoreName) -> Option<&Arc<PolicyStore>> {
        self.stores.get(name)
    }

    pub fn stores(&self) -> impl Iterator<Item = &Arc<PolicyStore>> {
        self.stores.values()
    }

    /// Evaluates in `target` without recording.
    pub fn evaluate_in(
        &self,
        target: &Target,
        caller: &Caller,
        request: &DecisionRequest,
    ) -> Result<Evaluation, RequestError> {
        match target {
            Target::Default => self.evaluate(caller, request),
            Target::Store {
                store,
                subject_type,
                subject_properties,
            } => self.evaluate_store(
                store,
                subject_type,
                subject_properties.as_ref(),
                caller,
                request,
            ),
        }
    }

    /// Evaluates and records one request in `target`.
    pub async fn decide_in(
        &self,
        target: Target,
        caller: &Caller,
        request: DecisionRequest,
    ) -> Result<Decision, RequestError> {
        let span = decision_span(caller, &request, &target);
        async {
            let evaluation = self.evaluate_in(&target, caller, &request)?;
            let mut recorded = self
                .record_evaluated(vec![Evaluated {
                    caller: caller.clone(),
                    target,
                    request,
                    evaluation,
                }])
                .await;
            recorded.remove(0)
        }
        .instrument(span)
        .await
    }

    /// Records evaluated requests together (one ledger append); an item that cannot be encoded is
    /// an error of its own and the others are still recorded.
    pub async fn record_evaluated(
        &self,
        items: Vec<Evaluated>,
    ) -> Vec<Result<Decision, RequestError>> {
        let mut results: Vec<Option<Result<Decision, RequestError>>> = Vec::new();
        let mut prepared = Vec::new();
        let mut slots = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let evaluation = self.claim(item.evaluation);
            match self.prepare(&item.caller, &item.request, &evaluation, &item.target) {
                Ok(appends) => {
                    prepared.push((appends, evaluation));
                    slots.push(i);
                    results.push(None);
                }
                Err(e) => {
                    if let Some(a) = &evaluation.approval_used {
                        self.approvals.unclaim(&a.id);
                    }
                    results.push(Some(Err(e)));
                }
            }
        }
        if !prepared.is_empty() {
            for (slot, decision) in slots.into_iter().zip(self.record(prepared).await) {
                results[slot] = Some(Ok(decision));
            }
        }
        results.into_iter().flatten().collect()
    }

    /// A decision in a folder-backed store: the same checks as the default store's, with the
    /// principal and resource taken from the request and the store's fixed entities.
    fn evaluate_store(
        &self,
        store: &PolicyStore,
        subject_type: &str,
        subject_properties: Option<&Map<String, Value>>,
        caller: &Caller,
        request: &DecisionRequest,
    ) -> Result<Evaluation, RequestError> {
        let started = Instant::now();
        let pack = &*store.pack.load();
        let type_of = |field: &str, name: &str| {
            EntityTypeName::from_str(name).map_err(|_| {
                RequestError::new(field, format!("`{name}` is not a Cedar entity type name"))
            })
        };
        let principal_type = type_of("subject.type", subject_type)?;
        let resource_type = type_of("resource.type", &request.resource.kind)?;
        let action = EntityUid::from_type_name_and_id(
            self.action_type.clone(),
            EntityId::new(&request.action),
        );
        pack.check_request_types(&principal_type, &action, &resource_type)
            .map_err(|e| {
                let field = match e {
                    crate::policy::RequestTypeError::UnknownAction { .. } => "action",
                    crate::policy::RequestTypeError::NotForPrincipal { .. } => "subject.type",
                    _ => "resource.type",
                };
                RequestError::new(field, e.to_string())
            })?;
        if request.resource.id.is_empty() {
            return Err(RequestError::new("resource.id", "must not be empty"));
        }
        let context = self.context(caller, request, None)?;
        let deny = |code: ReasonCode, message: String| Evaluation {
            decision: Decision {
                store: Some(store.name.to_string()),
                ..denial(pack, code, message)
            },
            agent_version: None,
            approval_requested: None,
            approval_used: None,
            risk_tier: None,
            started,
        };
        if let Some(switch) = self
            .killswitches
            .matching(&caller.agent, None, &request.action)
        {
            let mut evaluation = deny(ReasonCode::KillSwitch, switch.reason.clone());
            evaluation.decision.reasons[0].killswitch_id = Some(switch.id.clone());
            return Ok(evaluation);
        }
        if pack.policy_count() == 0 {
            return Ok(deny(
                ReasonCode::NoPolicy,
                format!("store `{}` has no policies", store.name),
            ));
        }
        if request.approval_id.is_some() {
            return Err(RequestError::new(
                "approval_id",
                "approvals exist only in the default store",
            ));
        }
        let principal = EntityUid::from_type_name_and_id(
            principal_type.clone(),
            EntityId::new(caller.agent.as_str()),
        );
        let resource = EntityUid::from_type_name_and_id(
            resource_type.clone(),
            EntityId::new(&request.resource.id),
        );
        // The store's entities, plus what the request says about entities the store does not hold
        // (a resource's properties replace the stored ones: the PEP knows the live object).
        let mut extra = Vec::new();
        if let Some(attributes) = &request.resource.attributes {
            extra.push(self.request_entity(
                pack,
                &resource_type,
                &request.resource.id,
                attributes,
                "resource.properties",
            )?);
        }
        if let Some(properties) = subject_properties
            && store.entities.get(&principal).is_none()
        {
            extra.push(self.request_entity(
                pack,
                &principal_type,
                caller.agent.as_str(),
                properties,
                "subject.properties",
            )?);
        }
        let entities = if extra.is_empty() {
            store.entities.clone()
        } else {
            let replaced: Vec<EntityUid> = extra.iter().map(|e| e.uid()).collect();
            Entities::from_entities(
                store
                    .entities
                    .iter()
                    .filter(|e| !replaced.contains(&e.uid()))
                    .cloned()
                    .chain(extra),
                None,
            )
            .map_err(|e| RequestError::new("resource.properties", e.to_string()))?
        };
        let cedar_request = Request::new(principal, action, resource, context, None)
            .map_err(|e| RequestError::new("action", e.to_string()))?;
        let response = tracing::debug_span!("cedar", policies = pack.policy_count())
            .in_scope(|| pack.is_authorized(&cedar_request, &entities));
        let mut decision = decision_of(pack, &response);
        if let Some(shadow) = store.shadow.load().as_ref() {
            let answer = evaluate_shadow(shadow, &cedar_request, &entities);
            shadow.observe(
                answer,
                &decision,
                caller.agent.as_str(),
                request,
                Some(store.name.as_str()),
            );
        }
        decision.store = Some(store.name.to_string());
        Ok(Evaluation {
            decision,
            agent_version: None,
            approval_requested: None,
            approval_used: None,
            risk_tier: None,
            started,
        })
    }

    /// An entity built from a request's properties, checked against the schema.
    fn request_entity(
        &self,
        pack: &PolicyPack,
        ty: &EntityTypeName,
        id: &str,
        attributes: &Map<String, Value>,
        field: &str,
    ) -> Result<Entity, RequestError> {
        let json = serde_json::json!({
            "uid": { "type": ty.to_string(), "id": id },
            "attrs": attributes,
            "parents": [],
        });
        Entity::from_json_value(json, Some(pack.schema()))
            .map_err(|e| RequestError::new(field, e.to_string()))
    }

    pub fn policies(&self) -> Arc<PolicyPack> {
        self.policies.load_full()
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Evaluates, records durably in the ledger, answers.
    pub async fn decide(
        &self,
        caller: &Caller,
        request: DecisionRequest,
    ) -> Result<Decision, RequestError> {
        let span = decision_span(caller, &request, &Target::Default);
        let decision = async {
            let evaluation = self.evaluate(caller, &request)?;
            let evaluation = self.claim(evaluation);
            let appends = self.prepare(caller, &request, &evaluation, &Target::Default)?;
            Ok(self.record(vec![(appends, evaluation)]).await.remove(0))
        }
        .instrument(span)
        .await?;
        Ok(decision)
    }

    /// Span attributes and metrics of an answered decision.
    fn observe(
        &self,
        span: &tracing::Span,
        tier: Option<RiskTier>,
        decision: &Decision,
        started: Instant,
    ) {
        let tier = tier.map(RiskTier::as_str);
        let outcome = match decision.decision {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
        };
        let reason = decision.reasons.first().map_or("none", |r| r.code.as_str());
        if !span.is_disabled() {
            let codes: Vec<&str> = decision.reasons.iter().map(|r| r.code.as_str()).collect();
            let policies: Vec<&str> = decision
                .reasons
                .iter()
                .filter_map(|r| r.policy_id.as_deref())
                .collect();
            span.record("reins.decision", outcome);
            span.record("reins.reasons", codes.join(",").as_str());
            span.record("reins.policy_ids", policies.join(",").as_str());
            span.record(
                "reins.decision_id",
                decision.decision_id.to_string().as_str(),
            );
            if let Some(tier) = tier {
                span.record("reins.risk_tier", tier);
            }
            if let Some(ledger) = &decision.ledger {
                span.record("reins.ledger.index", ledger.index);
            }
        }
        let metrics = crate::telemetry::metrics();
        let attributes =
            crate::telemetry::decision_attributes(outcome, reason, tier, decision.store.as_deref());
        metrics.decisions.add(1, &attributes);
        metrics
            .decision_duration
            .record(started.elapsed().as_secs_f64(), &attributes[2..]);
    }

    /// Evaluates every request first (any invalid one fails the whole batch, recording nothing),
    /// then records all of them atomically.
    pub async fn decide_batch(
        &self,
        caller: &Caller,
        requests: Vec<DecisionRequest>,
    ) -> Result<Vec<Decision>, RequestError> {
        if requests.is_empty() {
            return Err(RequestError::new(
                "requests",
                "must hold at least one request",
            ));
        }
        if requests.len() > self.batch_max {
            return Err(RequestError::new(
                "requests",
                format!(
                    "at most {} requests per batch (got {})",
                    self.batch_max,
                    requests.len()
                ),
            ));
        }
        let mut evaluations = Vec::with_capacity(requests.len());
        for (i, request) in requests.iter().enumerate() {
            evaluations.push(self.evaluate(caller, request).map_err(|e| e.in_batch(i))?);
        }
        let mut prepared = Vec::with_capacity(requests.len());
        for (i, (request, evaluation)) in requests.iter().zip(evaluations).enumerate() {
            let evaluation = self.claim(evaluation);
            match self.prepare(caller, request, &evaluation, &Target::Default) {
                Ok(appends) => prepared.push((appends, evaluation)),
                Err(e) => {
                    for (_, claimed) in prepared.iter().chain([(Vec::new(), evaluation)].iter()) {
                        if let Some(a) = &claimed.approval_used {
                            self.approvals.unclaim(&a.id);
                        }
                    }
                    return Err(e.in_batch(i));
                }
            }
        }
        let decisions = self
            .record(prepared)
            .instrument(tracing::debug_span!(
                "decision.batch",
                size = requests.len()
            ))
            .await;
        Ok(decisions)
    }

    /// Claims the approval an evaluation uses; if another decision holds or used it, the
    /// evaluation becomes a deny. Also stamps the request's trace id, as every path to the ledger
    /// passes here.
    fn claim(&self, mut evaluation: Evaluation) -> Evaluation {
        evaluation.decision.trace_id = crate::telemetry::current_trace_id();
        match &evaluation.approval_used {
            Some(a) if !self.approvals.claim(&a.id) => Evaluation {
                decision: Decision {
                    decision: Outcome::Deny,
                    reasons: vec![Reason::code(
                        ReasonCode::ApprovalInvalid,
                        approvals::Unusable::AlreadyUsed(a.id.clone()).to_string(),
                    )],
                    ..evaluation.decision
                },
                approval_used: None,
                ..evaluation
            },
            _ => evaluation,
        }
    }

    /// The ledger entries for an evaluated request: the decision (with its decision row, context
    /// values masked), then the approval it asks for or uses.
    fn prepare(
        &self,
        caller: &Caller,
        request: &DecisionRequest,
        evaluation: &Evaluation,
        target: &Target,
    ) -> Result<Vec<Append>, RequestError> {
        let mut context = Value::Object(request.context.clone().unwrap_or_default());
        let salts = crate::events::mask(&mut context, self.ledger.mask())
            .map_err(|e| RequestError::new("context", e.to_string()))?;
        // The row holds no context: the request as recorded (masked) is the entry's.
        let row = row_of(caller, request, &evaluation.decision)
            .map_err(|e| RequestError::new("request", e.to_string()))?;
        let d = &evaluation.decision;
        let entry = Entry {
            time: d.evaluated_at.clone(),
            event: Event::Decision(DecisionEvent {
                decision_id: d.decision_id.to_string(),
                agent_id: caller.agent.to_string(),
                agent_version: evaluation.agent_version,
                on_behalf_of: caller.on_behalf_of.as_ref().map(UserId::to_string),
                action: request.action.clone(),
                resource: ResourceEvent {
                    kind: request.resource.kind.clone(),
                    id: request.resource.id.clone(),
                    attributes: request.resource.attributes.clone(),
                },
                context,
                session_id: request.session_id.clone(),
                approval_id: request.approval_id.clone(),
                decision: d.decision,
                reasons: d.reasons.clone(),
                errors: d.errors.clone(),
                policy_digest: d.policy_digest.clone(),
                store: target.store_name(),
                subject_type: match target {
                    Target::Default => None,
                    Target::Store { subject_type, .. } => Some(subject_type.clone()),
                },
            }),
        };
        let too_large = |e: EntryError| match e {
            EntryError::TooLarge(_) => RequestError::new("context", e.to_string()),
            EntryError::Encode(_) => RequestError::new("request", e.to_string()),
        };
        let mut appends = vec![
            entry
                .append(SideEffect::Decision { row, salts })
                .map_err(too_large)?,
        ];
        let approval_error =
            |e: approvals::ApprovalError| RequestError::new("approval_id", e.to_string());
        if let Some(approval) = &evaluation.approval_requested {
            appends.push(self.approvals.requested(approval).map_err(approval_error)?);
        }
        if let Some(approval) = &evaluation.approval_used {
            appends.push(
                self.approvals
                    .used(approval, &d.decision_id.to_string(), &d.evaluated_at)
                    .map_err(approval_error)?
                    .1,
            );
        }
        Ok(appends)
    }

    /// Appends the decisions to the ledger in one job; if that fails, every one of them becomes a
    /// deny and the approvals they claimed are given back.
    async fn record(&self, prepared: Vec<(Vec<Append>, Evaluation)>) -> Vec<Decision> {
        let mut appends = Vec::new();
        let mut firsts = Vec::with_capacity(prepared.len());
        let mut evaluations = Vec::with_capacity(prepared.len());
        for (batch, evaluation) in prepared {
            firsts.push(appends.len());
            appends.extend(batch);
            evaluations.push(evaluation);
        }
        let span = tracing::debug_span!("ledger.append", entries = appends.len());
        let observed: Vec<(Option<RiskTier>, Instant)> = evaluations
            .iter()
            .map(|e| (e.risk_tier, e.started))
            .collect();
        let decisions: Vec<Decision> = match self.ledger.append(appends).instrument(span).await {
            Ok(refs) => {
                let requested = evaluations
                    .iter()
                    .filter_map(|e| e.approval_requested.clone())
                    .collect();
                let used = evaluations
                    .iter()
                    .filter_map(|e| e.approval_used.as_ref().map(|a| a.id.clone()))
                    .collect();
                self.approvals.recorded(requested, used);
                evaluations
                    .into_iter()
                    .zip(firsts)
                    .map(|(e, first)| Decision {
                        ledger: refs.get(first).cloned(),
                        ..e.decision
                    })
                    .collect()
            }
            Err(error) => {
                tracing::error!(%error, "decision could not be recorded; denying");
                evaluations
                    .into_iter()
                    .map(|e| {
                        if let Some(a) = &e.approval_used {
                            self.approvals.unclaim(&a.id);
                        }
                        Decision {
                            decision: Outcome::Deny,
                            reasons: vec![Reason::code(
                                ReasonCode::LedgerUnavailable,
                                "the decision could not be recorded in the ledger",
                            )],
                            evaluation_id: None,
                            access_request: None,
                            ..e.decision
                        }
                    })
                    .collect()
            }
        };
        // A lone decision's span is the current one (decide, decide_in); a batch has none per
        // decision.
        let span = match decisions.len() {
            1 => tracing::Span::current(),
            _ => tracing::Span::none(),
        };
        for (decision, (tier, started)) in decisions.iter().zip(observed) {
            self.observe(&span, tier, decision, started);
        }
        decisions
    }

    /// The decision for one request, without storing it.
    pub fn evaluate(
        &self,
        caller: &Caller,
        request: &DecisionRequest,
    ) -> Result<Evaluation, RequestError> {
        let started = Instant::now();
        let pack = self.policies.load();
        let registry = self.registry.snapshot();
        let types = self.registry.types();

        let action = EntityUid::from_type_name_and_id(
            self.action_type.clone(),
            EntityId::new(&request.action),
        );
        let resource_type = types.named(&request.resource.kind).ok_or_else(|| {
            RequestError::new(
                "resource.type",
                format!(
                    "`{}` is not a Cedar entity type name",
                    request.resource.kind
                ),
            )
        })?;
        pack.check_request_types(&types.agent, &action, &resource_type)
            .map_err(|e| {
                let field = match e {
                    crate::policy::RequestTypeError::UnknownAction { .. }
                    | crate::policy::RequestTypeError::NotForPrincipal { .. } => "action",
                    _ => "resource.type",
                };
                RequestError::new(field, e.to_string())
            })?;
        if request.resource.id.is_empty() {
            return Err(RequestError::new("resource.id", "must not be empty"));
        }
        let is_tool = resource_type == types.tool;
        if is_tool && request.resource.attributes.is_some() {
            return Err(RequestError::new(
                "resource.attributes",
                "a Tool's attributes come from the registry and cannot be sent",
            ));
        }
        let tool_id = if is_tool {
            Some(
                request
                    .resource
                    .id
                    .parse::<ToolId>()
                    .map_err(|e| RequestError::new("resource.id", e.to_string()))?,
            )
        } else {
            None
        };
        let mut context = self.context(caller, request, None)?;

        let deny =
            |code: ReasonCode, message: String, agent: Option<&Arc<AgentEntry>>| Evaluation {
                decision: denial(&pack, code, message),
                agent_version: agent.map(|a| a.agent.meta.version),
                approval_requested: None,
                approval_used: None,
                risk_tier: agent.map(|a| a.agent.record.risk_tier),
                started,
            };

        // The kill switch comes first: nothing, not even the registry's view, can get past it.
        let switch = tracing::debug_span!("killswitch").in_scope(|| {
            self.killswitches
                .matching(&caller.agent, tool_id.as_ref(), &request.action)
        });
        if let Some(switch) = switch {
            let mut evaluation = deny(
                ReasonCode::KillSwitch,
                switch.reason.clone(),
                registry.agent(&caller.agent),
            );
            evaluation.decision.reasons[0].killswitch_id = Some(switch.id.clone());
            return Ok(evaluation);
        }
        let registry_span = tracing::debug_span!("registry").entered();
        let agent = registry.agent(&caller.agent);
        drop(registry_span);
        let Some(agent) = agent else {
            return Ok(deny(
                ReasonCode::UnknownAgent,
                format!("agent `{}` is not registered", caller.agent),
                None,
            ));
        };
        let known = Some(agent);
        if agent.agent.record.status == AgentStatus::Suspended {
            return Ok(deny(
                ReasonCode::AgentSuspended,
                format!("agent `{}` is suspended", caller.agent),
                known,
            ));
        }
        // A registered tool's entity comes from the registry; any other resource is built from
        // the request's attributes.
        let resource_entity = match &tool_id {
            Some(id) => match registry.tool(id) {
                Some(tool) => ResourceEntity::Registered(tool),
                None => {
                    return Ok(deny(
                        ReasonCode::UnknownTool,
                        format!("tool `{id}` is not registered"),
                        known,
                    ));
                }
            },
            None => ResourceEntity::Built(Box::new(self.resource_entity(
                &pack,
                request,
                &resource_type,
            )?)),
        };
        if pack.policy_count() == 0 {
            return Ok(deny(
                ReasonCode::NoPolicy,
                "the active policy pack has no policies".into(),
                known,
            ));
        }

        // A presented approval must be granted, unexpired, unused and bound to this very request;
        // then Cedar sees it in `context.approval` and stays the one that decides.
        let now = store::now();
        let approval_used = match &request.approval_id {
            None => None,
            Some(id) => match self.approvals.check(id, caller, request, &now) {
                Ok(approval) => {
                    context = self.context(caller, request, Some(&approval))?;
                    Some(approval)
                }
                Err(problem) => {
                    return Ok(deny(
                        ReasonCode::ApprovalInvalid,
                        problem.to_string(),
                        known,
                    ));
                }
            },
        };

        let entities = match (resource_entity, &caller.on_behalf_of) {
            // The common case: prebuilt, reused until the agent or the tool changes.
            (ResourceEntity::Registered(tool), None) => self
                .registry
                .tool_entities(agent, tool)
                .map_err(resource_error)?,
            (resource, user) => {
                let resource = match resource {
                    ResourceEntity::Registered(tool) => tool.entity.clone(),
                    ResourceEntity::Built(entity) => *entity,
                };
                let mut entities = vec![agent.entity.clone(), resource];
                if let Some(user) = user {
                    entities.push(Entity::with_uid(types.uid(&types.user, user.as_str())));
                }
                Arc::new(Entities::from_entities(entities, None).map_err(resource_error)?)
            }
        };
        let principal = types.uid(&types.agent, caller.agent.as_str());
        let resource =
            EntityUid::from_type_name_and_id(resource_type, EntityId::new(&request.resource.id));
        let cedar_request = Request::new(principal, action, resource, context, None)
            .map_err(|e| RequestError::new("action", e.to_string()))?;

        let response = tracing::debug_span!("cedar", policies = pack.policy_count())
            .in_scope(|| pack.is_authorized(&cedar_request, &entities));
        let mut decision = decision_of(&pack, &response);
        if let Some(shadow) = self.shadow.load().as_ref() {
            let answer = evaluate_shadow(shadow, &cedar_request, &entities);
            shadow.observe(answer, &decision, caller.agent.as_str(), request, None);
        }
        let approval_requested = match (&approval_used, approval_group(&decision)) {
            (None, Some(group)) => {
                let policy_ids = decision
                    .reasons
                    .iter()
                    .filter_map(|r| r.policy_id.clone())
                    .collect();
                let approval = self.approvals.new_pending(
                    caller,
                    request,
                    group,
                    policy_ids,
                    &decision.decision_id.to_string(),
                    &now,
                );
                for reason in &mut decision.reasons {
                    reason.code = ReasonCode::ApprovalRequired;
                }
                decision.evaluation_id = Some(decision.decision_id.to_string());
                decision.access_request = Some(AccessRequest {
                    approval_id: approval.id.clone(),
                    endpoint: format!("/v1/approvals/{}", approval.id),
                    expires_at: approval.expires_at.clone(),
                });
                Some(approval)
            }
            _ => None,
        };
        Ok(Evaluation {
            decision,
            agent_version: Some(agent.agent.meta.version),
            approval_requested,
            approval_used,
            risk_tier: Some(agent.agent.record.risk_tier),
            started,
        })
    }

    /// The Cedar context: the caller's, plus what Reins knows (delegating user, session).
    fn context(
        &self,
        caller: &Caller,
        request: &DecisionRequest,
        approval: Option<&Approval>,
    ) -> Result<Context, RequestError> {
        let types = self.registry.types();
        cedar_context(
            caller
                .on_behalf_of
                .as_ref()
                .map(|user| types.uid(&types.user, user.as_str())),
            request,
            approval.map(|a| (a.id.as_str(), a.decided_by.as_deref().unwrap_or_default())),
        )
    }
}

/// The Cedar context of a request: the caller's, plus what Reins knows (delegating user, session,
/// a granted approval as `(id, approver)`).
///
/// Built as Cedar expressions straight from the parsed JSON: going through Cedar's JSON parser
/// instead re-reads every value through serde's untagged-enum probing (entity and extension
/// escapes) and cost more than evaluating the policies. Values that need that parser (`__entity`
/// or `__extn` escapes, and anything Cedar refuses, such as floats and nulls) still take it, so
/// both paths accept and reject exactly the same contexts.
fn cedar_context(
    user: Option<EntityUid>,
    request: &DecisionRequest,
    approval: Option<(&str, &str)>,
) -> Result<Context, RequestError> {
    let given = request.context.as_ref();
    if let Some(key) = RESERVED_CONTEXT
        .iter()
        .find(|k| given.is_some_and(|c| c.contains_key(**k)))
    {
        return Err(RequestError::new(
            format!("context.{key}"),
            "is set by Reins and cannot be sent",
        ));
    }
    let mut pairs: Vec<(String, RestrictedExpression)> = Vec::with_capacity(4);
    if let Some(given) = given {
        for (key, value) in given {
            match restricted(value) {
                Some(expression) => pairs.push((key.clone(), expression)),
                None => return cedar_context_from_json(user, request, approval),
            }
        }
    }
    if !given.is_some_and(|c| c.contains_key("args")) {
        pairs.push((
            "args".into(),
            RestrictedExpression::new_record([]).map_err(context_error)?,
        ));
    }
    if let Some(user) = user {
        pairs.push(("user".into(), RestrictedExpression::new_entity_uid(user)));
    }
    if let Some(session) = &request.session_id {
        pairs.push((
            "session_id".into(),
            RestrictedExpression::new_string(session.clone()),
        ));
    }
    if let Some((id, approver)) = approval {
        let record = RestrictedExpression::new_record([
            (
                "id".to_owned(),
                RestrictedExpression::new_string(id.to_owned()),
            ),
            (
                "approver".to_owned(),
                RestrictedExpression::new_string(approver.to_owned()),
            ),
        ])
        .map_err(context_error)?;
        pairs.push(("approval".into(), record));
    }
    Context::from_pairs(pairs).map_err(context_error)
}

fn context_error(e: impl std::fmt::Display) -> RequestError {
    RequestError::new("context", e.to_string())
}

fn resource_error(e: impl std::fmt::Display) -> RequestError {
    RequestError::new("resource", e.to_string())
}

/// A JSON value as a Cedar expression, or None where only Cedar's JSON parser knows the answer
/// (escapes, floats, nulls, integers outside i64).
fn restricted(value: &Value) -> Option<RestrictedExpression> {
    match value {
        Value::String(s) => Some(RestrictedExpression::new_string(s.clone())),
        Value::Bool(b) => Some(RestrictedExpression::new_bool(*b)),
        Value::Number(n) => n.as_i64().map(RestrictedExpression::new_long),
        Value::Array(items) => Some(RestrictedExpression::new_set(
            items.iter().map(restricted).collect::<Option<Vec<_>>>()?,
        )),
        Value::Object(fields) => {
            if fields.keys().any(|k| k.starts_with("__")) {
                return None;
            }
            let fields = fields
                .iter()
                .map(|(k, v)| Some((k.clone(), restricted(v)?)))
                .collect::<Option<Vec<_>>>()?;
            RestrictedExpression::new_record(fields).ok()
        }
        Value::Null => None,
    }
}

/// [`cedar_context`] through Cedar's JSON parser: for contexts with escapes, and for the errors
/// Cedar reports on values it cannot take.
fn cedar_context_from_json(
    user: Option<EntityUid>,
    request: &DecisionRequest,
    approval: Option<(&str, &str)>,
) -> Result<Context, RequestError> {
    let mut context = request.context.clone().unwrap_or_default();
    context
        .entry("args")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(user) = user {
        context.insert(
            "user".into(),
            serde_json::json!({ "__entity": {
                "type": user.type_name().to_string(),
                "id": user.id().unescaped(),
            } }),
        );
    }
    if let Some(session) = &request.session_id {
        context.insert("session_id".into(), Value::String(session.clone()));
    }
    if let Some((id, approver)) = approval {
        context.insert(
            "approval".into(),
            serde_json::json!({ "id": id, "approver": approver }),
        );
    }
    Context::from_json_value(Value::Object(context), None).map_err(context_error)
}

impl Pipeline {
    /// A resource entity built from the request's attributes, checked against the schema.
    fn resource_entity(
        &self,
        pack: &PolicyPack,
        request: &DecisionRequest,
        ty: &EntityTypeName,
    ) -> Result<Entity, RequestError> {
        let json = serde_json::json!({
            "uid": { "type": ty.to_string(), "id": request.resource.id },
            "attrs": request.resource.attributes.clone().unwrap_or_default(),
            "parents": [],
        });
        Entity::from_json_value(json, Some(pack.schema()))
            .map_err(|e| RequestError::new("resource.attributes", e.to_string()))
    }

    /// A stored decision with its request.
    pub async fn get(&self, id: &DecisionId) -> Result<Option<DecisionRecord>, StoreError> {
        self.store
            .decision(id)
            .await?
            .as_ref()
            .map(record_of)
            .transpose()
    }

    /// Stored decisions, newest first.
    pub async fn list(
        &self,
        agent: Option<&AgentId>,
        before: Option<&DecisionId>,
        limit: u32,
    ) -> Result<Vec<DecisionRecord>, StoreError> {
        self.store
            .decisions(agent, before, limit)
            .await?
            .iter()
            .map(record_of)
            .collect()
    }
}

impl Pipeline {
    /// Requests that must never be allowed, run through [`Pipeline::evaluate`] (nothing recorded):
    /// an unregistered agent, an unregistered tool for a registered agent, and an action the
    /// schema does not know.
    pub fn self_check(&self) -> SelfCheckEvent {
        let nobody = format!("reins-self-check-{}", uuid::Uuid::new_v4().simple());
        let caller = |agent: AgentId| Caller {
            agent,
            on_behalf_of: None,
            roles: Default::default(),
            issuer: "reins-self-check".into(),
        };
        let request = |action: &str, tool: &str| DecisionRequest {
            action: action.into(),
            resource: ResourceRef {
                kind: "Tool".into(),
                id: tool.into(),
                attributes: None,
            },
            context: None,
            session_id: None,
            approval_id: None,
        };
        let outcome = |result: Result<Evaluation, RequestError>| match result {
            Ok(e) => format!(
                "{}/{}",
                serde_json::to_value(e.decision.decision)
                    .unwrap_or_default()
                    .as_str()
                    .unwrap_or("?"),
                e.decision
                    .reasons
                    .first()
                    .and_then(|r| serde_json::to_value(r.code).ok())
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ),
            Err(e) => format!("refused/{}", e.field),
        };
        let mut probes = Vec::new();
        let mut probe = |name: &str, expected: &str, got: String| {
            probes.push(Probe {
                name: name.into(),
                expected: expected.into(),
                passed: got == expected,
                got,
            })
        };
        if let Ok(agent) = nobody.parse::<AgentId>() {
            probe(
                "unregistered_agent",
                "deny/unknown_agent",
                outcome(self.evaluate(&caller(agent.clone()), &request("invoke", &nobody))),
            );
            probe(
                "unknown_action",
                "refused/action",
                outcome(self.evaluate(&caller(agent), &request(&nobody, &nobody))),
            );
        }
        let snapshot = self.registry.snapshot();
        let active = self
            .registry
            .agents()
            .into_iter()
            .find(|a| a.record.status == AgentStatus::Active);
        if let Some(agent) = active.filter(|a| snapshot.agent(&a.id).is_some()) {
            let expected = match self.killswitches.matching(&agent.id, None, "invoke") {
                Some(_) => "deny/kill_switch",
                None => "deny/unknown_tool",
            };
            probe(
                "unregistered_tool",
                expected,
                outcome(self.evaluate(&caller(agent.id), &request("invoke", &nobody))),
            );
        }
        SelfCheckEvent {
            policy_digest: self.policies.load().digest().to_string(),
            passed: probes.iter().all(|p| p.passed),
            probes,
        }
    }
}

/// The span of one decision, with GenAI semantic-convention names where they exist. Debug level:
/// disabled at the call site unless traces are exported. Context values never go in it.
fn decision_span(caller: &Caller, request: &DecisionRequest, target: &Target) -> tracing::Span {
    let store = target.store_name();
    let tool = (request.resource.kind == "Tool").then_some(request.resource.id.as_str());
    tracing::debug_span!(
        "decision",
        otel.name = "decision",
        gen_ai.operation.name = "execute_tool",
        gen_ai.agent.id = caller.agent.as_str(),
        gen_ai.tool.name = tool,
        reins.action = request.action.as_str(),
        reins.resource.type = request.resource.kind.as_str(),
        reins.store = store.as_deref().unwrap_or(crate::ids::DEFAULT_STORE),
        reins.decision = tracing::field::Empty,
        reins.reasons = tracing::field::Empty,
        reins.policy_ids = tracing::field::Empty,
        reins.risk_tier = tracing::field::Empty,
        reins.decision_id = tracing::field::Empty,
        reins.ledger.index = tracing::field::Empty,
    )
}

/// What `pack` answers to a recorded request of the default store, with the agent and tool entities
/// as they were when it was decided (`tool` None for a non-tool resource, rebuilt from the
/// request's attributes). A request that carried an approval is evaluated with one, as it was.
pub fn replay_decision(
    pack: &PolicyPack,
    types: &EntityTypes,
    agent: &Entity,
    tool: Option<&Entity>,
    on_behalf_of: Option<&UserId>,
    request: &DecisionRequest,
) -> Result<Decision, RequestError> {
    let action = EntityUid::from_type_name_and_id(
        EntityTypeName::from_str("Action")
            .map_err(|e| RequestError::new("action", e.to_string()))?,
        EntityId::new(&request.action),
    );
    let resource_type = EntityTypeName::from_str(&request.resource.kind)
        .map_err(|e| RequestError::new("resource.type", e.to_string()))?;
    let approval = request.approval_id.as_deref().map(|id| (id, "replay"));
    let context = cedar_context(
        on_behalf_of.map(|user| types.uid(&types.user, user.as_str())),
        request,
        approval,
    )?;
    let resource_entity = match tool {
        Some(t) => t.clone(),
        None => {
            let json = serde_json::json!({
                "uid": { "type": resource_type.to_string(), "id": request.resource.id },
                "attrs": request.resource.attributes.clone().unwrap_or_default(),
                "parents": [],
            });
            Entity::from_json_value(json, Some(pack.schema()))
                .map_err(|e| RequestError::new("resource.attributes", e.to_string()))?
        }
    };
    let mut entities = vec![agent.clone(), resource_entity];
    if let Some(user) = on_behalf_of {
        entities.push(Entity::with_uid(types.uid(&types.user, user.as_str())));
    }
    let entities = Entities::from_entities(entities, None)
        .map_err(|e| RequestError::new("resource", e.to_string()))?;
    let request = Request::new(
        agent.uid(),
        action,
        EntityUid::from_type_name_and_id(resource_type, EntityId::new(&request.resource.id)),
        context,
        None,
    )
    .map_err(|e| RequestError::new("action", e.to_string()))?;
    Ok(decision_of(pack, &pack.is_authorized(&request, &entities)))
}

/// What the policies alone answer to `agent` invoking `tool` with empty arguments and no approval
/// (no kill switch, nothing recorded): how the checklist tells whether a tool is usable without a
/// human. `approval_required` reasons mark approval policies. None if either is unregistered.
pub fn probe_tool(
    pack: &PolicyPack,
    snapshot: &Snapshot,
    types: &EntityTypes,
    agent: &AgentId,
    tool: &ToolId,
) -> Option<Decision> {
    let agent_entry = snapshot.agent(agent)?;
    let tool_entry = snapshot.tool(tool)?;
    let action = EntityUid::from_type_name_and_id(
        EntityTypeName::from_str("Action").ok()?,
        EntityId::new("invoke"),
    );
    let context = Context::from_json_value(serde_json::json!({ "args": {} }), None).ok()?;
    let request = Request::new(
        types.uid(&types.agent, agent.as_str()),
        action,
        types.uid(&types.tool, tool.as_str()),
        context,
        None,
    )
    .ok()?;
    let entities = Entities::from_entities(
        [agent_entry.entity.clone(), tool_entry.entity.clone()],
        None,
    )
    .ok()?;
    let mut decision = decision_of(pack, &pack.is_authorized(&request, &entities));
    if approval_group(&decision).is_some() {
        for reason in &mut decision.reasons {
            reason.code = ReasonCode::ApprovalRequired;
        }
    }
    Some(decision)
}

/// A deny for a fail-closed reason, before or instead of Cedar.
fn denial(pack: &PolicyPack, code: ReasonCode, message: String) -> Decision {
    Decision {
        decision_id: DecisionId::new(),
        decision: Outcome::Deny,
        reasons: vec![Reason::code(code, message)],
        errors: Vec::new(),
        policy_digest: Some(pack.digest().to_string()),
        evaluated_at: store::now(),
        ledger: None,
        evaluation_id: None,
        access_request: None,
        store: None,
        trace_id: None,
    }
}

/// The shadow pack's answer to the same Cedar request.
fn evaluate_shadow(shadow: &Shadow, request: &Request, entities: &Entities) -> Decision {
    tracing::debug_span!("cedar.shadow")
        .in_scope(|| decision_of(&shadow.pack, &shadow.pack.is_authorized(request, entities)))
}

fn decision_of(pack: &PolicyPack, response: &cedar_policy::Response) -> Decision {
    let errors: Vec<EvaluationError> = response
        .diagnostics()
        .errors()
        .map(|e| match e {
            cedar_policy::AuthorizationError::PolicyEvaluationError(e) => EvaluationError {
                policy_id: e.policy_id().to_string(),
                message: e.inner().to_string(),
            },
        })
        .collect();
    let mut reasons: Vec<Reason> = response
        .diagnostics()
        .reason()
        .map(|id| Reason {
            code: ReasonCode::Policy,
            policy_id: Some(id.to_string()),
            annotations: Some(
                pack.annotations(id)
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            ),
            message: None,
            killswitch_id: None,
        })
        .collect();
    let mut outcome = match response.decision() {
        CedarDecision::Allow => Outcome::Allow,
        CedarDecision::Deny => Outcome::Deny,
    };
    if !errors.is_empty() {
        if outcome == Outcome::Allow {
            // The permits that allowed it are not why it is denied.
            reasons.clear();
        }
        outcome = Outcome::Deny;
        let ids: Vec<&str> = errors.iter().map(|e| e.policy_id.as_str()).collect();
        reasons.push(Reason::code(
            ReasonCode::PolicyError,
            format!("policies {ids:?} could not be evaluated on this request"),
        ));
    } else if outcome == Outcome::Deny && reasons.is_empty() {
        reasons.push(Reason::code(
            ReasonCode::NoMatchingPermit,
            "no policy permits this request",
        ));
    }
    Decision {
        decision_id: DecisionId::new(),
        decision: outcome,
        reasons,
        errors,
        policy_digest: Some(pack.digest().to_string()),
        evaluated_at: store::now(),
        ledger: None,
        evaluation_id: None,
        access_request: None,
        store: None,
        trace_id: None,
    }
}

/// When every policy that denied is an `@approval` policy (and none failed), the approver group
/// to ask. Anything else is a plain deny: no human can approve past another forbid.
fn approval_group(decision: &Decision) -> Option<String> {
    if decision.decision != Outcome::Deny
        || !decision.errors.is_empty()
        || decision.reasons.is_empty()
    {
        return None;
    }
    let mut groups = Vec::new();
    for reason in &decision.reasons {
        let group = reason.annotations.as_ref()?.get(approvals::ANNOTATION)?;
        if reason.code != ReasonCode::Policy {
            return None;
        }
        if !groups.contains(group) {
            groups.push(group.clone());
        }
    }
    Some(groups.join(","))
}

fn row_of(
    caller: &Caller,
    request: &DecisionRequest,
    decision: &Decision,
) -> Result<DecisionRow, serde_json::Error> {
    let extra = AnswerExtra {
        trace_id: decision.trace_id.clone(),
        evaluation_id: decision.evaluation_id.clone(),
        access_request: decision.access_request.clone(),
    };
    let extra = if extra == AnswerExtra::default() {
        None
    } else {
        Some(serde_json::to_string(&extra)?)
    };
    Ok(DecisionRow {
        id: decision.decision_id.to_string(),
        agent_id: caller.agent.to_string(),
        on_behalf_of: caller.on_behalf_of.as_ref().map(UserId::to_string),
        action: request.action.clone(),
        resource_type: request.resource.kind.clone(),
        resource_id: request.resource.id.clone(),
        decision: match decision.decision {
            Outcome::Allow => "allow".into(),
            Outcome::Deny => "deny".into(),
        },
        policy_digest: decision.policy_digest.clone(),
        evaluated_at: decision.evaluated_at.clone(),
        ledger_index: None,
        leaf_hash: None,
        extra,
        request: None,
        response: None,
        entry: None,
    })
}

/// The fields of an answer that its ledger entry does not hold, kept beside the decision row.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct AnswerExtra {
    trace_id: Option<String>,
    evaluation_id: Option<String>,
    access_request: Option<AccessRequest>,
}

/// A stored decision as answered and as asked, rebuilt from its ledger entry (which holds the
/// request, its context masked as recorded, and the answer) and the row's extra fields.
pub fn record_of(row: &DecisionRow) -> Result<DecisionRecord, StoreError> {
    let corrupt =
        |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("decision {}: {e}", row.id));
    let ledger = match (row.ledger_index, &row.leaf_hash) {
        (Some(index), Some(leaf)) => {
            use base64::Engine;
            Some(LedgerRef {
                index: index as u64,
                leaf_hash: base64::engine::general_purpose::STANDARD.encode(leaf),
            })
        }
        _ => None,
    };
    // Rows from before the ledger held every decision keep their own copies.
    if let (Some(request), Some(response)) = (&row.request, &row.response) {
        let decision: Decision = serde_json::from_str(response).map_err(|e| corrupt(&e))?;
        return Ok(DecisionRecord {
            decision: Decision { ledger, ..decision },
            request: serde_json::from_str(request).map_err(|e| corrupt(&e))?,
            agent_id: row.agent_id.clone(),
            on_behalf_of: row.on_behalf_of.clone(),
        });
    }
    let bytes = row
        .entry
        .as_deref()
        .ok_or_else(|| corrupt(&"its ledger entry is missing"))?;
    let entry: Entry = serde_json::from_slice(bytes).map_err(|e| corrupt(&e))?;
    let Event::Decision(event) = entry.event else {
        return Err(corrupt(&"its ledger entry records something else"));
    };
    let extra: AnswerExtra = match &row.extra {
        Some(json) => serde_json::from_str(json).map_err(|e| corrupt(&e))?,
        None => AnswerExtra::default(),
    };
    let decision = Decision {
        decision_id: row.id.parse().map_err(|e| corrupt(&e))?,
        decision: event.decision,
        reasons: event.reasons,
        errors: event.errors,
        policy_digest: event.policy_digest,
        evaluated_at: entry.time,
        ledger,
        evaluation_id: extra.evaluation_id,
        access_request: extra.access_request,
        store: event.store,
        trace_id: extra.trace_id,
    };
    // The entry holds `{}` for a request sent without a context; both mean the same to Cedar.
    let context = match event.context {
        Value::Object(map) if !map.is_empty() => Some(map),
        _ => None,
    };
    Ok(DecisionRecord {
        decision,
        request: DecisionRequest {
            action: event.action,
            resource: ResourceRef {
                kind: event.resource.kind,
                id: event.resource.id,
                attributes: event.resource.attributes,
            },
            context,
            session_id: event.session_id,
            approval_id: event.approval_id,
        },
        agent_id: row.agent_id.clone(),
        on_behalf_of: row.on_behalf_of.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(context: Value) -> DecisionRequest {
        DecisionRequest {
            action: "invoke".into(),
            resource: ResourceRef {
                kind: "Tool".into(),
                id: "search.web".into(),
                attributes: None,
            },
            context: context.as_object().cloned(),
            session_id: Some("s-1".into()),
            approval_id: None,
        }
    }

    fn user() -> Option<EntityUid> {
        Some(EntityUid::from_type_name_and_id(
            EntityTypeName::from_str("User").unwrap(),
            EntityId::new("alice"),
        ))
    }

    /// The direct build must give the very context Cedar's JSON parser gives.
    #[test]
    fn contexts_built_directly_equal_those_parsed_from_json() {
        let contexts = [
            json!({}),
            json!({"args": {}}),
            json!({"args": {"amount": 1200, "currency": "EUR", "neg": -7, "max": i64::MAX}}),
            json!({"args": {"flags": ["a", "b", "a"], "nested": {"deep": {"ok": true}}}, "extra": false}),
            json!({"args": {"list": [[1, 2], [], [{"k": "v"}]]}, "n": 0}),
        ];
        for context in contexts {
            let request = request(context.clone());
            for approval in [None, Some(("ap-1", "carol"))] {
                let direct = cedar_context(user(), &request, approval).unwrap();
                let parsed = cedar_context_from_json(user(), &request, approval).unwrap();
                assert_eq!(direct, parsed, "{context}");
            }
        }
    }

    /// Escapes and values Cedar refuses take Cedar's parser: same answers, same errors.
    #[test]
    fn escapes_and_refused_values_go_through_cedars_parser() {
        let escaped = request(json!({"args": {
            "owner": {"__entity": {"type": "User", "id": "bob"}},
            "limit": {"__extn": {"fn": "decimal", "arg": "1.50"}},
        }}));
        assert_eq!(
            cedar_context(None, &escaped, None).unwrap(),
            cedar_context_from_json(None, &escaped, None).unwrap()
        );
        for refused in [
            json!({"args": {"amount": 1.5}}),
            json!({"args": {"amount": null}}),
            json!({"args": {"big": u64::MAX}}),
            json!({"args": {"bad": {"__extn": {"fn": "decimal", "arg": "x"}}}}),
        ] {
            let request = request(refused.clone());
            let direct = cedar_context(None, &request, None).unwrap_err();
            let parsed = cedar_context_from_json(None, &request, None).unwrap_err();
            assert_eq!(direct, parsed, "{refused}");
            assert_eq!(direct.field, "context");
        }
        for reserved in ["user", "session_id", "approval"] {
            let request = request(json!({ reserved: "x" }));
            assert_eq!(
                cedar_context(None, &request, None).unwrap_err().field,
                format!("context.{reserved}")
            );
        }
    }

    fn stored_row() -> DecisionRow {
        DecisionRow {
            id: DecisionId::new().to_string(),
            agent_id: "bot".into(),
            on_behalf_of: None,
            action: "invoke".into(),
            resource_type: "Tool".into(),
            resource_id: "search.web".into(),
            decision: "deny".into(),
            policy_digest: None,
            evaluated_at: "2026-11-21T00:00:00Z".into(),
            ledger_index: None,
            leaf_hash: None,
            extra: None,
            request: None,
            response: None,
            entry: None,
        }
    }

    /// Rows from before decision rows stopped copying request and answer are read from their
    /// copies; a row with neither copies nor an entry is reported, not guessed at.
    #[test]
    fn old_rows_are_read_from_their_copies_and_rows_without_a_source_are_corrupt() {
        let mut row = stored_row();
        let answer = denial_answer(&row.id);
        let asked = request(json!({"args": {"q": "x"}}));
        row.request = Some(serde_json::to_string(&asked).unwrap());
        row.response = Some(serde_json::to_string(&answer).unwrap());
        let record = record_of(&row).unwrap();
        assert_eq!(record.decision, answer);
        assert_eq!(record.request, asked);

        let error = record_of(&stored_row()).unwrap_err().to_string();
        assert!(error.contains("ledger entry is missing"), "{error}");
        let mut row = stored_row();
        row.entry = Some(br#"{"type":"self_check"}"#.to_vec());
        assert!(record_of(&row).is_err());
    }

    fn denial_answer(id: &str) -> Decision {
        Decision {
            decision_id: id.parse().unwrap(),
            decision: Outcome::Deny,
            reasons: vec![Reason::code(ReasonCode::UnknownTool, "no such tool")],
            errors: Vec::new(),
            policy_digest: None,
            evaluated_at: "2026-11-21T00:00:00Z".into(),
            ledger: None,
            evaluation_id: None,
            access_request: None,
            store: None,
            trace_id: Some("abc".into()),
        }
    }
}
