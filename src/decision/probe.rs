//! Decisions nobody asked for: the fail-closed self-check at start, replaying a recorded request
//! under another pack, and probing a tool for the compliance checklist.
use super::*;

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
            intent: None,
            trace: None,
            compensates: None,
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
    usage: Option<&crate::usage::Seen>,
) -> Result<Decision, RequestError> {
    let action = EntityUid::from_type_name_and_id(
        EntityTypeName::from_str("Action")
            .map_err(|e| RequestError::new("action", e.to_string()))?,
        EntityId::new(&request.action),
    );
    let resource_type = EntityTypeName::from_str(&request.resource.kind)
        .map_err(|e| RequestError::new("resource.type", e.to_string()))?;
    let approval = request.approval_id.map(|id| (id, "replay"));
    let context = cedar_context(
        on_behalf_of.map(|user| types.uid(&types.user, user.as_str())),
        request,
        approval,
        usage.map(|seen| (seen, pack.reads())),
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

/// What the policies alone answer to `agent` invoking `tool` with `args` and no approval (no kill
/// switch, nothing recorded): how the checklist tells whether a tool is usable without a human.
/// `approval_required` reasons mark approval policies. None if either is unregistered.
pub fn probe_tool(
    pack: &PolicyPack,
    snapshot: &Snapshot,
    types: &EntityTypes,
    agent: &AgentId,
    tool: &ToolId,
    args: &serde_json::Value,
) -> Option<Decision> {
    let agent_entry = snapshot.agent(agent)?;
    let tool_entry = snapshot.tool(tool)?;
    let action = EntityUid::from_type_name_and_id(
        EntityTypeName::from_str("Action").ok()?,
        EntityId::new("invoke"),
    );
    let args = match args {
        serde_json::Value::Object(_) => crate::policy::json::to_cedar_json(args),
        _ => serde_json::json!({}),
    };
    let context = Context::from_json_value(serde_json::json!({ "args": args }), None).ok()?;
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
