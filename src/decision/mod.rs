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
use crate::ledger::{Append, LedgerError, LedgerRef, Sink};
use crate::model::{
    AccessRequest, Decision, DecisionRecord, DecisionRequest, EvaluationError, Outcome, Reason,
    ReasonCode, ResourceRef,
};
use crate::policy::PolicyPack;
use crate::policy::shadow::Shadow;
use crate::policy::store::PolicyStore;
use crate::registry::{AgentEntry, AgentStatus, EntityTypes, Registry, RiskTier, Snapshot};
use crate::store::{DecisionRow, SideEffect, Store, StoreError};

mod cedar;
mod counted;
mod evaluate;
mod idempotency;
mod probe;
mod record;
#[cfg(test)]
mod tests;

use cedar::*;
use counted::*;
use evaluate::*;
pub use idempotency::{BadIdempotencyKey, Idempotency, IdempotencyError, IdempotencyKey, Keyed};
pub use probe::{probe_tool, replay_decision};
pub use record::record_of;
use record::{Recorded, STALE_RETRIES};

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
    /// On replicas sharing a ledger: the control version read before evaluating (the state seen
    /// is at least that new). Recorded in the entry; the ledger refuses it once outdated.
    pub control_version: Option<u64>,
    /// The shadow version's answer, counted once the decision is recorded (an evaluation the
    /// ledger refuses as outdated is evaluated again, and must not count twice).
    pub shadow: Option<Box<ShadowSeen>>,
    /// The usage counts the decision saw and what it counted, for its entry.
    pub usage: Option<crate::usage::Recorded>,
    /// What it counted, to refund if it is not recorded.
    pub charge: Option<crate::usage::Charge>,
    /// Who and what it was about, for the tripwires (default store only).
    pub subject: Option<crate::tripwires::Subject>,
}

/// What a shadow version answered to one evaluated request.
#[derive(Clone)]
pub struct ShadowSeen {
    shadow: Arc<Shadow>,
    answer: Decision,
    active: Decision,
    agent: String,
    request: DecisionRequest,
    store: Option<String>,
}

impl std::fmt::Debug for ShadowSeen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShadowSeen")
            .field("version", &self.shadow.version)
            .field("answer", &self.answer.decision)
            .finish()
    }
}

impl PartialEq for ShadowSeen {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shadow, &other.shadow)
            && self.answer == other.answer
            && self.active == other.active
            && self.agent == other.agent
            && self.request == other.request
            && self.store == other.store
    }
}

impl ShadowSeen {
    fn count(self) {
        self.shadow.observe(
            self.answer,
            &self.active,
            &self.agent,
            &self.request,
            self.store.as_deref(),
        );
    }
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

/// A request evaluated but not yet recorded.
pub struct Evaluated {
    pub caller: Caller,
    pub target: Target,
    pub request: DecisionRequest,
    pub evaluation: Evaluation,
    /// The `Idempotency-Key` it was asked with, recorded in its row.
    pub idempotency: Option<Idempotency>,
}

/// What was asked, to evaluate it again.
struct Asked {
    caller: Caller,
    target: Target,
    request: DecisionRequest,
    idempotency: Option<Idempotency>,
}

/// Evaluates and records decisions.
pub struct Pipeline {
    registry: Arc<Registry>,
    killswitches: Arc<KillSwitches>,
    approvals: Arc<Approvals>,
    policies: ArcSwap<PolicyPack>,
    ledger: Arc<dyn Sink>,
    store: Store,
    action_type: EntityTypeName,
    batch_max: usize,
    stores: BTreeMap<StoreName, Arc<PolicyStore>>,
    /// The default store's shadow version, if any.
    shadow: arc_swap::ArcSwapOption<Shadow>,
    /// How long an `Idempotency-Key` answers the decision recorded with it.
    idempotency_window: std::time::Duration,
    in_flight: idempotency::InFlight,
    /// Longest `intent` (and `trace.user_request`) accepted, in bytes.
    max_intent_bytes: usize,
    /// Whether the intent and the user's request are recorded only as commitments.
    mask_intent: bool,
    /// The usage counts decisions read and add to.
    /// None: counting is off (`usage.enabled = false`).
    usage: Option<crate::usage::Usage>,
    /// Rules that count recorded denies and switch off what trips them.
    tripwires: Option<Arc<crate::tripwires::Tripwires>>,
}

impl Pipeline {
    pub fn new(
        registry: Arc<Registry>,
        killswitches: Arc<KillSwitches>,
        approvals: Arc<Approvals>,
        policies: PolicyPack,
        ledger: Arc<dyn Sink>,
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
            idempotency_window: crate::config::DEFAULT_IDEMPOTENCY_WINDOW,
            in_flight: Default::default(),
            max_intent_bytes: crate::config::DEFAULT_MAX_INTENT_BYTES,
            mask_intent: false,
            usage: Some(crate::usage::Usage::local(crate::usage::Clock::System)),
            tripwires: None,
        })
    }

    /// Where usage is counted (default: in this process, on the system clock); None turns
    /// counting off, and decisions see no `context.usage`.
    pub fn with_usage(mut self, usage: Option<crate::usage::Usage>) -> Self {
        self.usage = usage;
        self
    }

    /// Counts recorded denies against `tripwires`.
    pub fn with_tripwires(mut self, tripwires: Arc<crate::tripwires::Tripwires>) -> Self {
        self.tripwires = (!tripwires.is_empty()).then_some(tripwires);
        self
    }

    /// How long a stated intent may be, and whether it is recorded only as a commitment.
    pub fn with_intent(mut self, max_bytes: usize, masked: bool) -> Self {
        self.max_intent_bytes = max_bytes;
        self.mask_intent = masked;
        self
    }

    /// How long an `Idempotency-Key` answers the decision recorded with it.
    pub fn with_idempotency_window(mut self, window: std::time::Duration) -> Self {
        self.idempotency_window = window;
        self
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

    /// Evaluates and records one request in `target`.
    pub async fn decide_in(
        &self,
        target: Target,
        caller: &Caller,
        request: DecisionRequest,
    ) -> Result<Decision, RequestError> {
        self.decide_recorded(target, caller, request, None).await
    }

    /// [`Pipeline::decide_in`], the row keeping the `Idempotency-Key` it was asked with.
    pub(super) async fn decide_recorded(
        &self,
        target: Target,
        caller: &Caller,
        request: DecisionRequest,
        idempotency: Option<Idempotency>,
    ) -> Result<Decision, RequestError> {
        let span = decision_span(caller, &request, &target);
        async {
            self.check_compensates(caller, &request).await?;
            let evaluation = self.evaluate_counted(&target, caller, &request).await?;
            let mut recorded = self
                .record_evaluated(vec![Evaluated {
                    caller: caller.clone(),
                    target,
                    request,
                    evaluation,
                    idempotency,
                }])
                .await;
            recorded.remove(0)
        }
        .instrument(span)
        .await
    }

    /// Records evaluated requests together (one ledger append); an item that cannot be encoded is
    /// an error of its own and the others are still recorded. Items a shared ledger refuses as
    /// evaluated under an outdated control state are evaluated again (up to [`STALE_RETRIES`]).
    pub async fn record_evaluated(
        &self,
        items: Vec<Evaluated>,
    ) -> Vec<Result<Decision, RequestError>> {
        let mut results: Vec<Option<Result<Decision, RequestError>>> = Vec::new();
        results.resize_with(items.len(), || None);
        // Each item with the evaluation to record next (None once answered or refused).
        let mut pending: Vec<(Asked, Option<Evaluation>)> = items
            .into_iter()
            .map(|item| {
                let asked = Asked {
                    caller: item.caller,
                    target: item.target,
                    request: item.request,
                    idempotency: item.idempotency,
                };
                (asked, Some(item.evaluation))
            })
            .collect();
        let mut attempt = 1;
        loop {
            let mut prepared = Vec::new();
            let mut slots = Vec::new();
            for (i, (item, evaluation)) in pending.iter_mut().enumerate() {
                let Some(evaluation) = evaluation.take() else {
                    continue;
                };
                let evaluation = self.claim(evaluation);
                match self.prepare(
                    &item.caller,
                    &item.request,
                    &evaluation,
                    &item.target,
                    item.idempotency.as_ref(),
                ) {
                    Ok(appends) => {
                        prepared.push((appends, evaluation));
                        slots.push(i);
                    }
                    Err(e) => {
                        self.give_back(&evaluation).await;
                        results[i] = Some(Err(e));
                    }
                }
            }
            if prepared.is_empty() {
                break;
            }
            match self.record(prepared, attempt >= STALE_RETRIES).await {
                Recorded::Done(decisions) => {
                    for (slot, decision) in slots.into_iter().zip(decisions) {
                        results[slot] = Some(Ok(decision));
                    }
                    break;
                }
                Recorded::Stale(version) => {
                    self.ledger.wait_control(version).await;
                    for i in slots {
                        let (item, evaluation) = &mut pending[i];
                        match self
                            .evaluate_counted(&item.target, &item.caller, &item.request)
                            .await
                        {
                            Ok(e) => *evaluation = Some(e),
                            Err(e) => results[i] = Some(Err(e)),
                        }
                    }
                }
            }
            attempt += 1;
        }
        results.into_iter().flatten().collect()
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
            self.check_compensates(caller, &request).await?;
            let mut attempt = 1;
            loop {
                let evaluation = self
                    .evaluate_counted(&Target::Default, caller, &request)
                    .await?;
                let evaluation = self.claim(evaluation);
                let appends =
                    match self.prepare(caller, &request, &evaluation, &Target::Default, None) {
                        Ok(appends) => appends,
                        Err(e) => {
                            self.give_back(&evaluation).await;
                            return Err(e);
                        }
                    };
                match self
                    .record(vec![(appends, evaluation)], attempt >= STALE_RETRIES)
                    .await
                {
                    Recorded::Done(mut decisions) if !decisions.is_empty() => {
                        return Ok(decisions.remove(0));
                    }
                    Recorded::Done(_) => {
                        return Err(RequestError::new("request", "nothing was recorded"));
                    }
                    Recorded::Stale(version) => self.ledger.wait_control(version).await,
                }
                attempt += 1;
            }
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
        let outcome = decision.decision.as_str();
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

    /// Evaluates every request in the default store, then records them all in one append; see
    /// [`Pipeline::decide_batch_in`].
    pub async fn decide_batch(
        &self,
        caller: &Caller,
        requests: Vec<DecisionRequest>,
    ) -> Result<Vec<Decision>, RequestError> {
        let items = requests.into_iter().map(|r| (Target::Default, r)).collect();
        self.decide_batch_in(caller, items).await
    }

    /// Evaluates every request, each in its target, then records them all in one append and
    /// answers in order. Every request is checked before anything is recorded: one the schema
    /// cannot read (or a batch over `batch_max`) refuses the whole batch with the item's field,
    /// `requests[i]....`, in every store alike.
    pub async fn decide_batch_in(
        &self,
        caller: &Caller,
        items: Vec<(Target, DecisionRequest)>,
    ) -> Result<Vec<Decision>, RequestError> {
        if items.is_empty() {
            return Err(RequestError::new(
                "requests",
                "must hold at least one request",
            ));
        }
        if items.len() > self.batch_max {
            return Err(RequestError::new(
                "requests",
                format!(
                    "at most {} requests per batch (got {})",
                    self.batch_max,
                    items.len()
                ),
            ));
        }
        for (i, (_, request)) in items.iter().enumerate() {
            self.check_compensates(caller, request)
                .await
                .map_err(|e| e.in_batch(i))?;
        }
        let mut attempt = 1;
        loop {
            let mut evaluations: Vec<Evaluation> = Vec::with_capacity(items.len());
            for (i, (target, request)) in items.iter().enumerate() {
                match self.evaluate_counted(target, caller, request).await {
                    Ok(e) => evaluations.push(e),
                    Err(e) => {
                        for counted in &evaluations {
                            self.give_back(counted).await;
                        }
                        return Err(e.in_batch(i));
                    }
                }
            }
            let size = items.len();
            let mut prepared = Vec::with_capacity(size);
            for (i, ((target, request), evaluation)) in items.iter().zip(evaluations).enumerate() {
                let evaluation = self.claim(evaluation);
                match self.prepare(caller, request, &evaluation, target, None) {
                    Ok(appends) => prepared.push((appends, evaluation)),
                    Err(e) => {
                        for (_, claimed) in prepared.iter().chain([(Vec::new(), evaluation)].iter())
                        {
                            self.give_back(claimed).await;
                        }
                        return Err(e.in_batch(i));
                    }
                }
            }
            match self
                .record(prepared, attempt >= STALE_RETRIES)
                .instrument(tracing::debug_span!("decision.batch", size))
                .await
            {
                Recorded::Done(decisions) => return Ok(decisions),
                Recorded::Stale(version) => self.ledger.wait_control(version).await,
            }
            attempt += 1;
        }
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
                        approvals::Unusable::AlreadyUsed(a.id).to_string(),
                    )],
                    ..evaluation.decision
                },
                approval_used: None,
                ..evaluation
            },
            _ => evaluation,
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
