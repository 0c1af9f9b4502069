//! Evaluation without recording: the request's checks against the schema (422), the kill switch,
//! the fail-closed denies, the approval check, Cedar, and Cedar's answer mapped to reasons, in the
//! default store and in folder stores.
use super::*;
use crate::timestamp::Timestamp;

impl Pipeline {
    /// Evaluates in `target` without recording and without usage counts (policies that read
    /// `context.usage` see none): what a search asks.
    pub fn evaluate_in(
        &self,
        target: &Target,
        caller: &Caller,
        request: &DecisionRequest,
    ) -> Result<Evaluation, RequestError> {
        self.evaluate_seen(target, caller, request, None)
    }

    pub(super) fn evaluate_seen(
        &self,
        target: &Target,
        caller: &Caller,
        request: &DecisionRequest,
        seen: Option<&crate::usage::Seen>,
    ) -> Result<Evaluation, RequestError> {
        // Read before anything the evaluation reads: the state it then sees is at least this
        // version, so a ledger that refuses older versions never records a decision that missed
        // a control change.
        let control_version = self.ledger.control_version();
        self.check_intent(request)?;
        let mut evaluation = match target {
            Target::Default => self.evaluate_with(caller, request, seen),
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
        }?;
        evaluation.control_version = control_version;
        Ok(evaluation)
    }

    /// The stated intent and trace are bounded: they are recorded in the ledger with the decision.
    fn check_intent(&self, request: &DecisionRequest) -> Result<(), RequestError> {
        let max = self.max_intent_bytes;
        let too_long = |field: &str, text: &str| {
            (text.len() > max).then(|| {
                RequestError::new(field, format!("at most {max} bytes (got {})", text.len()))
            })
        };
        if let Some(e) = request
            .intent
            .as_deref()
            .and_then(|t| too_long("intent", t))
        {
            return Err(e);
        }
        if let Some(trace) = &request.trace {
            if let Some(e) = trace
                .user_request
                .as_deref()
                .and_then(|t| too_long("trace.user_request", t))
            {
                return Err(e);
            }
            if trace.trace_id.as_ref().is_some_and(|t| t.len() > 128) {
                return Err(RequestError::new(
                    "trace.trace_id",
                    "at most 128 characters",
                ));
            }
        }
        Ok(())
    }

    /// A decision in a folder-backed store: the same checks as the default store's, with the
    /// principal and resource taken from the request and the store's fixed entities.
    pub(super) fn evaluate_store(
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
        let context = self.context(caller, request, None, None)?;
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
            control_version: None,
            shadow: None,
            usage: None,
            charge: None,
            subject: None,
        };
        if let Some(switch) = self
            .killswitches
            .matching(&caller.agent, None, &request.action)
        {
            let mut evaluation = deny(ReasonCode::KillSwitch, switch.reason.clone());
            evaluation.decision.reasons[0].killswitch_id = Some(switch.id);
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
        let shadow = store.shadow.load_full().map(|shadow| {
            Box::new(ShadowSeen {
                answer: evaluate_shadow(&shadow, &cedar_request, &entities),
                shadow,
                active: decision.clone(),
                agent: caller.agent.to_string(),
                request: request.clone(),
                store: Some(store.name.to_string()),
            })
        });
        decision.store = Some(store.name.to_string());
        Ok(Evaluation {
            decision,
            agent_version: None,
            approval_requested: None,
            approval_used: None,
            risk_tier: None,
            started,
            control_version: None,
            shadow,
            usage: None,
            charge: None,
            subject: None,
        })
    }

    /// An entity built from a request's properties, checked against the schema.
    pub(super) fn request_entity(
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

    /// The decision for one request in the default store, without storing it or usage counts.
    pub fn evaluate(
        &self,
        caller: &Caller,
        request: &DecisionRequest,
    ) -> Result<Evaluation, RequestError> {
        self.evaluate_with(caller, request, None)
    }

    /// [`Pipeline::evaluate`] with the usage counts `seen`.
    fn evaluate_with(
        &self,
        caller: &Caller,
        request: &DecisionRequest,
        seen: Option<&crate::usage::Seen>,
    ) -> Result<Evaluation, RequestError> {
        let started = Instant::now();
        let pack = self.policies.load();
        let registry = self.registry.snapshot();
        let types = self.registry.types();

        let (action, resource_type, tool_id) = self.check_request(&pack, request)?;
        // Loaded once: the shadow pack is asked the same Cedar request, so the context shows
        // what either pack reads.
        let shadow = self.shadow.load_full();
        let reads = match &shadow {
            None => std::borrow::Cow::Borrowed(pack.reads()),
            Some(shadow) => std::borrow::Cow::Owned(pack.reads().union(shadow.pack.reads())),
        };
        let seen = seen.map(|seen| (seen, &*reads));
        let mut context = self.context(caller, request, None, seen)?;

        let deny =
            |code: ReasonCode, message: String, agent: Option<&Arc<AgentEntry>>| Evaluation {
                decision: denial(&pack, code, message),
                agent_version: agent.map(|a| a.agent.meta.version),
                approval_requested: None,
                approval_used: None,
                risk_tier: agent.map(|a| a.agent.record.risk_tier),
                started,
                control_version: None,
                shadow: None,
                usage: None,
                charge: None,
                subject: None,
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
            evaluation.decision.reasons[0].killswitch_id = Some(switch.id);
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
        let now = Timestamp::now();
        let approval_used = match &request.approval_id {
            None => None,
            Some(id) => match self.approvals.check(id, caller, request, now) {
                Ok(approval) => {
                    context = self.context(caller, request, Some(&approval), seen)?;
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
        if let Some((seen, _)) = seen {
            retry_after(&mut decision, seen);
        }
        let shadow = shadow.map(|shadow| {
            Box::new(ShadowSeen {
                answer: evaluate_shadow(&shadow, &cedar_request, &entities),
                shadow,
                active: decision.clone(),
                agent: caller.agent.to_string(),
                request: request.clone(),
                store: None,
            })
        });
        let approval_requested = match approval_used {
            None => self.ask_for_approval(caller, request, &mut decision, now),
            Some(_) => None,
        };
        Ok(Evaluation {
            decision,
            agent_version: Some(agent.agent.meta.version),
            approval_requested,
            approval_used,
            risk_tier: Some(agent.agent.record.risk_tier),
            started,
            control_version: None,
            shadow,
            usage: None,
            charge: None,
            subject: None,
        })
    }

    /// The request's shape against the schema (422 naming the field): the action, the
    /// resource's type and, for a tool, its id.
    fn check_request(
        &self,
        pack: &PolicyPack,
        request: &DecisionRequest,
    ) -> Result<(EntityUid, EntityTypeName, Option<ToolId>), RequestError> {
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
        Ok((action, resource_type, tool_id))
    }

    /// When only approval policies denied the request, turns the deny into `approval_required`
    /// and returns the pending approval to record with it.
    fn ask_for_approval(
        &self,
        caller: &Caller,
        request: &DecisionRequest,
        decision: &mut Decision,
        now: Timestamp,
    ) -> Option<Approval> {
        let group = approval_group(decision)?;
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
            now,
        );
        for reason in &mut decision.reasons {
            reason.code = ReasonCode::ApprovalRequired;
        }
        decision.evaluation_id = Some(decision.decision_id.to_string());
        decision.access_request = Some(AccessRequest {
            approval_id: approval.id,
            endpoint: format!("/v1/approvals/{}", approval.id),
            expires_at: approval.expires_at,
        });
        Some(approval)
    }

    /// The Cedar context: the caller's, plus what Reins knows (delegating user, session, usage).
    pub(super) fn context(
        &self,
        caller: &Caller,
        request: &DecisionRequest,
        approval: Option<&Approval>,
        usage: Option<(&crate::usage::Seen, &crate::policy::reads::Reads)>,
    ) -> Result<Context, RequestError> {
        let types = self.registry.types();
        cedar_context(
            caller
                .on_behalf_of
                .as_ref()
                .map(|user| types.uid(&types.user, user.as_str())),
            request,
            approval.map(|a| (a.id, a.decided_by.as_deref().unwrap_or_default())),
            usage,
        )
    }

    /// A resource entity built from the request's attributes, checked against the schema.
    pub(super) fn resource_entity(
        &self,
        pack: &PolicyPack,
        request: &DecisionRequest,
        ty: &EntityTypeName,
    ) -> Result<Entity, RequestError> {
        self.request_entity(
            pack,
            ty,
            &request.resource.id,
            request.resource.attributes.as_ref().unwrap_or(&Map::new()),
            "resource.attributes",
        )
    }
}

/// The resource of a default-store request: a registered tool, or an entity built from the
/// request's attributes.
enum ResourceEntity<'a> {
    Registered(&'a Arc<crate::registry::ToolEntry>),
    Built(Box<Entity>),
}

/// A deny for a fail-closed reason, before or instead of Cedar.
pub(super) fn denial(pack: &PolicyPack, code: ReasonCode, message: String) -> Decision {
    new_decision(
        pack,
        Outcome::Deny,
        vec![Reason::code(code, message)],
        Vec::new(),
    )
}

/// A fresh decision by `pack`, not yet recorded.
fn new_decision(
    pack: &PolicyPack,
    decision: Outcome,
    reasons: Vec<Reason>,
    errors: Vec<EvaluationError>,
) -> Decision {
    Decision {
        decision_id: DecisionId::new(),
        decision,
        reasons,
        errors,
        policy_digest: Some(pack.digest().to_string()),
        evaluated_at: Timestamp::now(),
        ledger: None,
        evaluation_id: None,
        access_request: None,
        store: None,
        trace_id: None,
    }
}

/// The shadow pack's answer to the same Cedar request.
pub(super) fn evaluate_shadow(shadow: &Shadow, request: &Request, entities: &Entities) -> Decision {
    tracing::debug_span!("cedar.shadow")
        .in_scope(|| decision_of(&shadow.pack, &shadow.pack.is_authorized(request, entities)))
}

pub(super) fn decision_of(pack: &PolicyPack, response: &cedar_policy::Response) -> Decision {
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
                    // A description documents the policy: explanations quote it from the pack
                    // recorded by digest, so each decision's entry does not carry it again.
                    .filter(|(k, _)| *k != "description")
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            ),
            message: None,
            killswitch_id: None,
            retry_after: None,
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
    } else if outcome == Outcome::Deny {
        for reason in &mut reasons {
            if let Some(code) = reason.annotations.as_ref().and_then(policy_reason) {
                reason.code = code;
            }
        }
    }
    new_decision(pack, outcome, reasons, errors)
}

/// The code a denying policy gives with `@reason("rate_limited")`; packs with any other value
/// are refused when loaded ([`crate::policy`]).
fn policy_reason(annotations: &BTreeMap<String, String>) -> Option<ReasonCode> {
    let named = annotations.get(REASON_ANNOTATION)?;
    ReasonCode::FROM_POLICY
        .into_iter()
        .find(|c| c.as_str() == named)
}

/// The annotation naming a deny's reason code, and the one naming the usage counter whose window
/// says when to retry.
pub const REASON_ANNOTATION: &str = "reason";
pub const RETRY_ANNOTATION: &str = "retry";

/// When every policy that denied is an `@approval` policy (and none failed), the approver group
/// to ask. Anything else is a plain deny: no human can approve past another forbid.
pub(super) fn approval_group(decision: &Decision) -> Option<String> {
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
