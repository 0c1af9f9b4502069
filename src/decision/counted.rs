//! Decisions that count: the call's usage read under its lease, shown to Cedar, and counted when
//! allowed, all before the decision is recorded ([`crate::usage`]); `@retry`'s `retry_after`.
use super::*;

impl Pipeline {
    /// Evaluates in `target` with the usage counts of its call, and counts it if allowed: what a
    /// decision to be recorded asks. The counted call is in the evaluation's `charge`, to give
    /// back if it is not recorded ([`Pipeline::give_back`]).
    pub async fn evaluate_counted(
        &self,
        target: &Target,
        caller: &Caller,
        request: &DecisionRequest,
    ) -> Result<Evaluation, RequestError> {
        if !matches!(target, Target::Default) {
            // Folder stores keep no usage.
            return self.evaluate_seen(target, caller, request, None);
        }
        let tool_id = (request.resource.kind == "Tool")
            .then(|| request.resource.id.parse::<ToolId>().ok())
            .flatten();
        let tool = tool_id
            .as_ref()
            .and_then(|id| self.registry.snapshot().tool(id).cloned());
        let subject = self.tripwires.as_ref().map(|_| crate::tripwires::Subject {
            agent: caller.agent.clone(),
            tool: tool_id,
            tool_risk: tool.as_ref().map(|t| t.tool.record.risk),
        });
        let Some(usage) = &self.usage else {
            let mut evaluation = self.evaluate_seen(target, caller, request, None)?;
            evaluation.subject = subject;
            return Ok(evaluation);
        };
        let call = self.usage_call(caller, request, tool.as_deref())?;
        let lease = match usage.begin(&call).await {
            Ok(lease) => lease,
            Err(error) => return self.usage_failed(caller, request, error),
        };
        let mut evaluation = self.evaluate_seen(target, caller, request, Some(lease.seen()))?;
        let allowed = evaluation.decision.decision == Outcome::Allow;
        match lease.finish(call, allowed).await {
            Ok((seen, charge)) => {
                evaluation.usage = Some(crate::usage::Recorded {
                    seen,
                    counted: charge.as_ref().map(|c| crate::usage::Counted {
                        args_digest: c.call.digest.clone(),
                        spend: c.call.spend.clone(),
                    }),
                });
                evaluation.charge = charge;
                evaluation.subject = subject;
                Ok(evaluation)
            }
            Err(error) => self.usage_failed(caller, request, error),
        }
    }

    /// Fail closed: counts that cannot be read or written are a deny.
    fn usage_failed(
        &self,
        caller: &Caller,
        request: &DecisionRequest,
        error: crate::usage::UsageError,
    ) -> Result<Evaluation, RequestError> {
        tracing::error!(%error, "usage counts unavailable; denying");
        let mut evaluation = self.evaluate_seen(&Target::Default, caller, request, None)?;
        evaluation.decision = denial(
            &self.policies.load(),
            ReasonCode::LedgerUnavailable,
            format!("the usage counts could not be read or written: {error}"),
        );
        evaluation.approval_requested = None;
        evaluation.approval_used = None;
        evaluation.shadow = None;
        Ok(evaluation)
    }

    /// The call a default-store request counts as; `tool`, its registered tool if any.
    fn usage_call(
        &self,
        caller: &Caller,
        request: &DecisionRequest,
        tool: Option<&crate::registry::ToolEntry>,
    ) -> Result<crate::usage::Call, RequestError> {
        let metered = tool.and_then(|t| t.tool.record.metered.as_ref());
        let args = request.context.as_ref().and_then(|c| c.get("args"));
        crate::usage::Call::new(
            caller.agent.as_str(),
            crate::usage::tool_key(&request.resource.kind, &request.resource.id),
            caller.on_behalf_of.as_ref().map(UserId::as_str),
            request.session_id.as_deref(),
            args,
            metered,
        )
        .map_err(|e| {
            RequestError::new(
                format!("context.{}", e.pointer.trim_matches('/').replace('/', ".")),
                e.message,
            )
        })
    }
}

/// Fills in `retry_after` on the reasons of policies annotated `@retry("agent.calls_1m")`: when
/// that counter's oldest counted call leaves its window.
pub(super) fn retry_after(decision: &mut Decision, seen: &crate::usage::Seen) {
    if decision.decision != Outcome::Deny {
        return;
    }
    for reason in &mut decision.reasons {
        if let Some(counter) = reason
            .annotations
            .as_ref()
            .and_then(|a| a.get(RETRY_ANNOTATION))
        {
            reason.retry_after = seen.retry_after(counter);
        }
    }
}
