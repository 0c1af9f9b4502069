//! Recording: a decision's ledger entry (masked context) and row, committed together, and a stored
//! decision rebuilt from its row and entry.
use super::*;

/// What became of a batch of decisions sent to the ledger.
pub(super) enum Recorded {
    /// Answered (allowed, denied, or denied because they could not be recorded).
    Done(Vec<Decision>),
    /// A shared ledger refused them as evaluated under an older control version than this one:
    /// wait for the replica to load it, then evaluate again.
    Stale(u64),
}

/// How many times a decision is evaluated again when the control state moved under it, before it
/// is denied as unrecorded.
pub(super) const STALE_RETRIES: usize = 3;

impl Pipeline {
    /// The ledger entries for an evaluated request: the decision (with its decision row, context
    /// values masked), then the approval it asks for or uses.
    pub(super) fn prepare(
        &self,
        caller: &Caller,
        request: &DecisionRequest,
        evaluation: &Evaluation,
        target: &Target,
        idempotency: Option<&Idempotency>,
    ) -> Result<Vec<Append>, RequestError> {
        let mut context = Value::Object(request.context.clone().unwrap_or_default());
        let mut salts = crate::events::mask(&mut context, self.ledger.mask())
            .map_err(|e| RequestError::new("context", e.to_string()))?;
        let (intent, trace) = self.recorded_intent(request, &mut salts)?;
        // The row holds no context: the request as recorded (masked) is the entry's.
        let row = row_of(caller, request, &evaluation.decision, idempotency)
            .map_err(|e| RequestError::new("request", e.to_string()))?;
        let d = &evaluation.decision;
        let entry = Entry {
            time: d.evaluated_at.to_string(),
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
                approval_id: request.approval_id.map(|id| id.to_string()),
                decision: d.decision,
                reasons: d.reasons.clone(),
                errors: d.errors.clone(),
                policy_digest: d.policy_digest.clone(),
                store: target.store_name(),
                subject_type: match target {
                    Target::Default => None,
                    Target::Store { subject_type, .. } => Some(subject_type.clone()),
                },
                intent,
                trace,
                compensates: request.compensates.map(|id| id.to_string()),
                control_version: evaluation.control_version,
                usage: evaluation.usage.clone(),
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
                    .used(approval, &d.decision_id.to_string(), d.evaluated_at)
                    .map_err(approval_error)?
                    .1,
            );
        }
        Ok(appends)
    }

    /// The request's intent and trace as its entry records them: with `ledger.mask_intent`, the
    /// intent and the user's request are salted commitments (their salts kept as `#intent` and
    /// `#trace/user_request`, apart from the context's pointers).
    fn recorded_intent(
        &self,
        request: &DecisionRequest,
        salts: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<(Option<Value>, Option<Value>), RequestError> {
        let intent = request.intent.clone().map(Value::String);
        let trace = request
            .trace
            .as_ref()
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| RequestError::new("trace", e.to_string()))?;
        if !self.mask_intent {
            return Ok((intent, trace));
        }
        let mut texts = serde_json::json!({ "intent": intent, "trace": trace });
        let pointers: Vec<String> = ["/intent", "/trace/user_request"]
            .into_iter()
            .filter(|p| texts.pointer(p).is_some_and(Value::is_string))
            .map(str::to_owned)
            .collect();
        for (pointer, salt) in crate::events::mask(&mut texts, &pointers)
            .map_err(|e| RequestError::new("intent", e.to_string()))?
        {
            salts.push((format!("#{}", pointer.trim_start_matches('/')), salt));
        }
        let intent = texts.get("intent").filter(|v| !v.is_null()).cloned();
        let trace = texts.get("trace").filter(|v| !v.is_null()).cloned();
        Ok((intent, trace))
    }

    /// Appends the decisions to the ledger in one job; if that fails, every one of them becomes a
    /// deny and the approvals they claimed are given back. Unless `last_try`, decisions a shared
    /// ledger refuses as evaluated under an outdated control version come back
    /// [`Recorded::Stale`] (claims given back) for the caller to evaluate again.
    pub(super) async fn record(
        &self,
        prepared: Vec<(Vec<Append>, Evaluation)>,
        last_try: bool,
    ) -> Recorded {
        let mut appends = Vec::new();
        let mut firsts = Vec::with_capacity(prepared.len());
        let mut evaluations = Vec::with_capacity(prepared.len());
        for (batch, evaluation) in prepared {
            firsts.push(appends.len());
            appends.extend(batch);
            evaluations.push(evaluation);
        }
        // The oldest version any of them saw: the ledger takes the batch only if that is current.
        let control = evaluations.iter().filter_map(|e| e.control_version).min();
        let span = tracing::debug_span!("ledger.append", entries = appends.len());
        let observed: Vec<(Option<RiskTier>, Instant)> = evaluations
            .iter()
            .map(|e| (e.risk_tier, e.started))
            .collect();
        let appended = self
            .ledger
            .append_evaluated(appends, control)
            .instrument(span)
            .await;
        let decisions: Vec<Decision> = match appended {
            Ok(refs) => {
                // Recorded: the shadow version's answers count now, once each.
                for shadow in evaluations.iter().filter_map(|e| e.shadow.clone()) {
                    shadow.count();
                }
                let requested = evaluations
                    .iter()
                    .filter_map(|e| e.approval_requested.clone())
                    .collect();
                let used = evaluations
                    .iter()
                    .filter_map(|e| e.approval_used.as_ref().map(|a| a.id))
                    .collect();
                self.approvals.recorded(requested, used);
                if let Some(tripwires) = &self.tripwires {
                    for e in &evaluations {
                        if let Some(subject) = &e.subject {
                            tripwires.observe(&e.decision, subject);
                        }
                    }
                }
                evaluations
                    .into_iter()
                    .zip(firsts)
                    .map(|(e, first)| Decision {
                        ledger: refs.get(first).cloned(),
                        ..e.decision
                    })
                    .collect()
            }
            Err(LedgerError::Stale(version)) if !last_try => {
                for e in &evaluations {
                    self.give_back(e).await;
                }
                return Recorded::Stale(version);
            }
            Err(error) => {
                for e in &evaluations {
                    self.give_back(e).await;
                }
                let reason = match &error {
                    LedgerError::Backlog(_) => {
                        tracing::warn!(%error, "decision refused: the ledger's backlog is over its limit");
                        Reason::code(ReasonCode::LedgerBacklog, error.to_string())
                    }
                    LedgerError::Conflict(why) => {
                        Reason::code(ReasonCode::ApprovalInvalid, why.clone())
                    }
                    _ => {
                        tracing::error!(%error, "decision could not be recorded; denying");
                        Reason::code(
                            ReasonCode::LedgerUnavailable,
                            "the decision could not be recorded in the ledger",
                        )
                    }
                };
                evaluations
                    .into_iter()
                    .map(|e| Decision {
                        decision: Outcome::Deny,
                        reasons: vec![reason.clone()],
                        evaluation_id: None,
                        access_request: None,
                        ..e.decision
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
        Recorded::Done(decisions)
    }

    /// What an evaluation took that it will not record: the approval it claimed, the usage it
    /// counted.
    pub(super) async fn give_back(&self, evaluation: &Evaluation) {
        if let Some(a) = &evaluation.approval_used {
            self.approvals.unclaim(&a.id);
        }
        if let (Some(charge), Some(usage)) = (&evaluation.charge, &self.usage) {
            usage.refund(charge).await;
        }
    }

    /// Counts again, in this process's windows, the calls the ledger's last day recorded as
    /// counted: a restart does not reset a limit. (Replicas keep their counts in PostgreSQL.)
    pub async fn restore_usage(&self) -> Result<u64, StoreError> {
        let Some(usage) = &self.usage else {
            return Ok(0);
        };
        let day = std::time::Duration::from_millis(crate::usage::DAY_MS as u64);
        let from =
            crate::timestamp::Timestamp::now().minus(day + std::time::Duration::from_secs(60));
        let mut after = None;
        let mut restored = 0;
        loop {
            let rows = self.store.allowed_since(from, after, 10_000).await?;
            let Some(last) = rows.last() else {
                return Ok(restored);
            };
            after = last.ledger_index.map(|i| i as u64);
            for row in &rows {
                let Some(entry) = row.entry.as_deref() else {
                    continue;
                };
                let Ok(entry) = serde_json::from_slice::<Entry>(entry) else {
                    continue;
                };
                let at = entry
                    .timestamp()
                    .map(|t| t.datetime().unix_timestamp_nanos() / 1_000_000);
                let (Event::Decision(event), Ok(at)) = (entry.event, at) else {
                    continue;
                };
                let Some(counted) = event.usage.and_then(|u| u.counted) else {
                    continue;
                };
                let call = crate::usage::Call {
                    tool: crate::usage::tool_key(&event.resource.kind, &event.resource.id),
                    agent: event.agent_id,
                    user: event.on_behalf_of,
                    session: event.session_id,
                    digest: counted.args_digest,
                    spend: counted.spend,
                };
                usage.restore(&call, at as i64).await;
                restored += 1;
            }
        }
    }

    /// A stored decision with its request, and the allowed decisions that undo it.
    pub async fn get(&self, id: &DecisionId) -> Result<Option<DecisionRecord>, StoreError> {
        let Some(row) = self.store.decision(id).await? else {
            return Ok(None);
        };
        let mut record = record_of(&row)?;
        record.compensated_by = self
            .store
            .compensations_of(id)
            .await?
            .iter()
            .map(|id| {
                id.parse()
                    .map_err(|e| StoreError::Corrupt(format!("compensation {id}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(record))
    }

    /// Checks a request's `compensates`: the decision it undoes exists, was allowed, and was made
    /// for the caller or for an agent that declares the caller among its `operators`. A read of
    /// the store, so only requests that name one wait for it.
    pub(super) async fn check_compensates(
        &self,
        caller: &Caller,
        request: &DecisionRequest,
    ) -> Result<(), RequestError> {
        let Some(undone) = request.compensates else {
            return Ok(());
        };
        let refuse = |message: String| Err(RequestError::new("compensates", message));
        let row = match self.store.decision(&undone).await {
            Ok(Some(row)) => row,
            Ok(None) => return refuse(format!("no decision {undone}")),
            Err(e) => return refuse(format!("decision {undone} could not be read: {e}")),
        };
        if row.decision != "allow" {
            return refuse(format!(
                "decision {undone} was a deny: only an allowed action can be undone"
            ));
        }
        if row.agent_id == caller.agent.as_str() {
            return Ok(());
        }
        let snapshot = self.registry.snapshot();
        let declared = row.agent_id.parse::<AgentId>().ok().is_some_and(|id| {
            snapshot
                .agent(&id)
                .is_some_and(|a| a.agent.record.operators.contains(&caller.agent))
        });
        if declared {
            return Ok(());
        }
        refuse(format!(
            "decision {undone} was made for agent `{}`, which does not declare `{}` among its operators",
            row.agent_id, caller.agent
        ))
    }

    /// Allowed decisions made more than `grace` ago with no outcome reported, newest first.
    pub async fn without_outcome(
        &self,
        agent: Option<&AgentId>,
        grace: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<DecisionRecord>, StoreError> {
        let before = crate::timestamp::Timestamp::now().minus(grace);
        self.store
            .decisions_without_outcome(agent, before, limit)
            .await?
            .iter()
            .map(record_of)
            .collect()
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

pub(super) fn row_of(
    caller: &Caller,
    request: &DecisionRequest,
    decision: &Decision,
    idempotency: Option<&Idempotency>,
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
        decision: decision.decision.as_str().into(),
        policy_digest: decision.policy_digest.clone(),
        evaluated_at: decision.evaluated_at,
        ledger_index: None,
        leaf_hash: None,
        extra,
        request: None,
        response: None,
        entry: None,
        idempotency_key: idempotency.map(|i| i.key.as_str().to_owned()),
        request_digest: idempotency.map(|i| i.request_digest.clone()),
        compensates: request.compensates.map(|id| id.to_string()),
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
/// A recorded text as shown: itself, or its commitment when it was masked.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => format!("masked {}", other["masked"].as_str().unwrap_or("")),
    }
}

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
            compensated_by: Vec::new(),
            usage: None,
        });
    }
    let bytes = row
        .entry
        .as_deref()
        .ok_or_else(|| corrupt(&"its ledger entry is missing"))?;
    let entry: Entry = serde_json::from_slice(bytes).map_err(|e| corrupt(&e))?;
    let evaluated_at = entry.timestamp().map_err(|e| corrupt(&e))?;
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
        evaluated_at,
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
            // Requests were once recorded with whatever `approval_id` was sent; one that is not
            // an approval id could not have named an approval, and the entry keeps the text.
            approval_id: event.approval_id.and_then(|id| id.parse().ok()),
            intent: event.intent.as_ref().map(shown),
            trace: event
                .trace
                .map(|mut t| {
                    if let Some(masked) = t.get_mut("user_request").filter(|v| !v.is_string()) {
                        *masked = Value::String(shown(masked));
                    }
                    serde_json::from_value(t).map_err(|e| corrupt(&e))
                })
                .transpose()?,
            compensates: event
                .compensates
                .map(|id| id.parse().map_err(|e| corrupt(&e)))
                .transpose()?,
        },
        agent_id: row.agent_id.clone(),
        on_behalf_of: row.on_behalf_of.clone(),
        compensated_by: Vec::new(),
        usage: event.usage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
            evaluated_at: "2026-11-21T00:00:00Z".parse().unwrap(),
            ledger_index: None,
            leaf_hash: None,
            extra: None,
            request: None,
            response: None,
            entry: None,
            idempotency_key: None,
            request_digest: None,
            compensates: None,
        }
    }

    /// Rows from before decision rows stopped copying request and answer are read from their
    /// copies; a row with neither copies nor an entry is reported, not guessed at.
    #[test]
    fn old_rows_are_read_from_their_copies_and_rows_without_a_source_are_corrupt() {
        let mut row = stored_row();
        let answer = denial_answer(&row.id);
        let asked = super::super::cedar::tests::request(json!({"args": {"q": "x"}}));
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
            evaluated_at: "2026-11-21T00:00:00Z".parse().unwrap(),
            ledger: None,
            evaluation_id: None,
            access_request: None,
            store: None,
            trace_id: Some("abc".into()),
        }
    }
}
