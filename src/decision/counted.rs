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
        let Some(call) = self.usage_call(target, caller, request)? else {
            return self.evaluate_seen(target, caller, request, None);
        };
        let subject = self.tripwires.as_ref().map(|_| {
            let tool = (request.resource.kind == "Tool")
                .then(|| request.resource.id.parse::<ToolId>().ok())
                .flatten();
            let tool_risk = tool.as_ref().and_then(|id| {
                self.registry
                    .snapshot()
                    .tool(id)
                    .map(|t| t.tool.record.risk)
            });
            crate::tripwires::Subject {
                agent: caller.agent.clone(),
                tool,
                tool_risk,
            }
        });
        let lease = match self.usage.begin(&call).await {
            Ok(lease) => lease,
            Err(error) => return self.usage_failed(caller, request, error),
        };
        let mut evaluation = self.evaluate_seen(target, caller, request, Some(lease.seen()))?;
        let seen = lease.seen().clone();
        let allowed = evaluation.decision.decision == Outcome::Allow;
        match lease.finish(&call, allowed).await {
            Ok(charge) => {
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

    /// The call a default-store request counts as (None elsewhere: folder stores keep no usage).
    fn usage_call(
        &self,
        target: &Target,
        caller: &Caller,
        request: &DecisionRequest,
    ) -> Result<Option<crate::usage::Call>, RequestError> {
        if !matches!(target, Target::Default) {
            return Ok(None);
        }
        let tool = if request.resource.kind == "Tool" {
            request.resource.id.clone()
        } else {
            format!("{}::{}", request.resource.kind, request.resource.id)
        };
        let metered = match request.resource.kind.as_str() {
            "Tool" => request
                .resource
                .id
                .parse::<ToolId>()
                .ok()
                .and_then(|id| self.registry.snapshot().tool(&id).cloned())
                .and_then(|t| t.tool.record.metered.clone()),
            _ => None,
        };
        let args = request.context.as_ref().and_then(|c| c.get("args"));
        crate::usage::Call::new(
            caller.agent.as_str(),
            tool,
            caller.on_behalf_of.as_ref().map(UserId::as_str),
            request.session_id.as_deref(),
            args,
            metered.as_ref(),
        )
        .map(Some)
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
