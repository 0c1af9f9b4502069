//! Tripwires: circuit breakers that engage a kill switch by themselves. A rule counts recorded
//! denies (all of them, or those with some reason codes, or those of tools at some risks) per
//! agent or per tool over a window; when the count reaches the rule's, the agent (or tool) is
//! switched off through the kill switch's own engage, with the rule as the reason and
//! `tripwire:<name>` as who engaged it: a ledger entry like any engage, shown by `reins kill
//! status`, released only by a person. A rule in `dry_run` records `tripwire_would_trip` instead.
//!
//! Counting is in this process, off the decision path: [`Tripwires::observe`] is a few map
//! operations after a decision is recorded, and a trip is engaged by a background task. On
//! replicas each counts the denies it answered, so across N replicas up to N x (count - 1)
//! denies can be answered before one trips (stated in docs/guardrails.md).
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

pub use crate::config::guards::{TripScope, TripwireConfig};
use crate::ids::{AgentId, ToolId};
use crate::killswitch::Scope;
use crate::model::{Decision, Outcome, ReasonCode};
use crate::registry::ToolRisk;
use crate::usage::Clock;

/// One rule, checked: its codes and risks read.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub count: u32,
    pub within: Duration,
    pub reasons: Vec<ReasonCode>,
    pub tool_risk: Vec<ToolRisk>,
    pub scope: TripScope,
    pub dry_run: bool,
}

impl Rule {
    /// The rule a `[[tripwires]]` entry configures; an unknown reason code or risk is an error
    /// naming it.
    pub fn from_config(config: &TripwireConfig) -> Result<Self, String> {
        if let Some(problem) = config.problem() {
            return Err(problem);
        }
        let named = |what: &str, name: &str| {
            format!("tripwire `{}`: `{name}` is not a {what}", config.name)
        };
        let reasons = config
            .reasons
            .iter()
            .map(|r| {
                ReasonCode::ALL
                    .into_iter()
                    .find(|c| c.as_str() == r)
                    .ok_or_else(|| named("reason code", r))
            })
            .collect::<Result<_, _>>()?;
        let tool_risk = config
            .tool_risk
            .iter()
            .map(|r| {
                serde_json::from_value(serde_json::Value::String(r.clone()))
                    .map_err(|_| named("tool risk", r))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            name: config.name.clone(),
            count: config.count,
            within: config.within,
            reasons,
            tool_risk,
            scope: config.scope,
            dry_run: config.dry_run,
        })
    }

    fn counts(&self, decision: &Decision, risk: Option<ToolRisk>) -> bool {
        let codes = || decision.reasons.iter().map(|r| r.code);
        decision.decision == Outcome::Deny
            && !codes().any(|c| c == ReasonCode::KillSwitch)
            && (self.reasons.is_empty() || codes().any(|c| self.reasons.contains(&c)))
            && (self.tool_risk.is_empty() || risk.is_some_and(|r| self.tool_risk.contains(&r)))
    }
}

/// What a recorded decision was about, for the rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    pub agent: AgentId,
    pub tool: Option<ToolId>,
    pub tool_risk: Option<ToolRisk>,
}

/// A rule that reached its count, for the background task to act on.
#[derive(Debug, Clone, PartialEq)]
pub struct Trip {
    pub rule: String,
    pub scope: Scope,
    pub reason: String,
    pub dry_run: bool,
}

pub struct Tripwires {
    rules: Vec<Rule>,
    clock: Clock,
    /// Deny times (ms) per (rule, agent or tool).
    windows: Mutex<HashMap<(usize, String), VecDeque<i64>>>,
    trips: tokio::sync::mpsc::UnboundedSender<Trip>,
}

impl Tripwires {
    /// The rules and the receiver their trips arrive on.
    pub fn new(
        rules: Vec<Rule>,
        clock: Clock,
    ) -> (Self, tokio::sync::mpsc::UnboundedReceiver<Trip>) {
        let (trips, receiver) = tokio::sync::mpsc::unbounded_channel();
        let tripwires = Self {
            rules,
            clock,
            windows: Mutex::default(),
            trips,
        };
        (tripwires, receiver)
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Counts a recorded decision against every rule; a rule that reaches its count sends a
    /// [`Trip`] and starts counting afresh.
    pub fn observe(&self, decision: &Decision, subject: &Subject) {
        if decision.decision != Outcome::Deny || self.rules.is_empty() {
            return;
        }
        let now = self.clock.now_ms();
        let Ok(mut windows) = self.windows.lock() else {
            return;
        };
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.counts(decision, subject.tool_risk) {
                continue;
            }
            let (key, scope) = match (rule.scope, &subject.tool) {
                (TripScope::Agent, _) => (
                    subject.agent.to_string(),
                    Scope {
                        agent: Some(subject.agent.clone()),
                        ..Scope::default()
                    },
                ),
                (TripScope::Tool, Some(tool)) => (
                    tool.to_string(),
                    Scope {
                        tool: Some(tool.clone()),
                        ..Scope::default()
                    },
                ),
                (TripScope::Tool, None) => continue,
            };
            let window = windows.entry((i, key)).or_default();
            let since = now - i64::try_from(rule.within.as_millis()).unwrap_or(i64::MAX);
            while window.front().is_some_and(|t| *t <= since) {
                window.pop_front();
            }
            window.push_back(now);
            if window.len() >= rule.count as usize {
                window.clear();
                let _ = self.trips.send(Trip {
                    rule: rule.name.clone(),
                    reason: format!(
                        "tripwire `{}`: {} denies within {}",
                        rule.name,
                        rule.count,
                        humantime::format_duration(rule.within)
                    ),
                    scope,
                    dry_run: rule.dry_run,
                });
            }
        }
        // Idle keys are forgotten once their window is empty.
        if windows.len() > 10_000 {
            windows.retain(|_, w| w.back().is_some_and(|t| now - t < 24 * 3600 * 1000));
        }
    }
}

/// Acts on trips until the [`Tripwires`] are dropped: engages the switch (or, in dry run, records
/// `tripwire_would_trip`). A failure is logged; the rule counts afresh and trips again if the
/// denies go on.
pub fn spawn(
    mut trips: tokio::sync::mpsc::UnboundedReceiver<Trip>,
    killswitches: std::sync::Arc<crate::killswitch::KillSwitches>,
    ledger: std::sync::Arc<crate::ledger::Ledger>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(trip) = trips.recv().await {
            let now = crate::timestamp::Timestamp::now();
            if trip.dry_run {
                let entry = crate::events::Entry {
                    time: now.to_string(),
                    event: crate::events::Event::TripwireWouldTrip(crate::events::TripwireEvent {
                        tripwire: trip.rule.clone(),
                        scope: serde_json::to_value(&trip.scope).unwrap_or_default(),
                        reason: trip.reason,
                    }),
                };
                let recorded = match entry.append(crate::store::SideEffect::None) {
                    Ok(append) => ledger
                        .append(vec![append])
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match recorded {
                    Ok(()) => tracing::warn!(
                        tripwire = trip.rule,
                        "tripwire would have tripped (dry run)"
                    ),
                    Err(error) => {
                        tracing::error!(tripwire = trip.rule, %error, "a dry-run trip could not be recorded")
                    }
                }
                continue;
            }
            let request = crate::killswitch::EngageRequest {
                scope: trip.scope,
                reason: trip.reason,
                drill: false,
                force: true,
            };
            match killswitches
                .engage(&format!("tripwire:{}", trip.rule), request, now)
                .await
            {
                Ok(switch) => {
                    tracing::warn!(tripwire = trip.rule, switch = %switch.id, "tripwire engaged a kill switch")
                }
                Err(error) => {
                    tracing::error!(tripwire = trip.rule, %error, "a tripwire could not engage its kill switch")
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Reason;

    fn deny(code: ReasonCode) -> Decision {
        Decision {
            decision_id: crate::ids::DecisionId::new(),
            decision: Outcome::Deny,
            reasons: vec![Reason::code(code, "x")],
            errors: Vec::new(),
            policy_digest: None,
            evaluated_at: crate::timestamp::Timestamp::now(),
            ledger: None,
            evaluation_id: None,
            access_request: None,
            store: None,
            trace_id: None,
        }
    }

    fn rule(count: u32, reasons: Vec<ReasonCode>, scope: TripScope) -> Rule {
        Rule {
            name: "r".into(),
            count,
            within: Duration::from_secs(60),
            reasons,
            tool_risk: Vec::new(),
            scope,
            dry_run: false,
        }
    }

    #[test]
    fn a_rule_trips_at_its_count_within_its_window_and_then_counts_afresh() {
        let clock = Clock::manual();
        let (t, mut trips) = Tripwires::new(
            vec![rule(3, vec![ReasonCode::LoopDetected], TripScope::Agent)],
            clock.clone(),
        );
        let subject = Subject {
            agent: "bot".parse().unwrap(),
            tool: Some("crm.note".parse().unwrap()),
            tool_risk: Some(ToolRisk::Low),
        };
        t.observe(&deny(ReasonCode::LoopDetected), &subject);
        t.observe(&deny(ReasonCode::RateLimited), &subject);
        t.observe(&deny(ReasonCode::LoopDetected), &subject);
        clock.advance(Duration::from_secs(61));
        // The first has left the window.
        t.observe(&deny(ReasonCode::LoopDetected), &subject);
        assert!(trips.try_recv().is_err());
        t.observe(&deny(ReasonCode::LoopDetected), &subject);
        t.observe(&deny(ReasonCode::LoopDetected), &subject);
        let trip = trips.try_recv().unwrap();
        assert_eq!(trip.scope.agent.unwrap().as_str(), "bot");
        assert!(
            trip.reason.contains("3 denies within 1m"),
            "{}",
            trip.reason
        );
        t.observe(&deny(ReasonCode::LoopDetected), &subject);
        assert!(trips.try_recv().is_err(), "counting starts afresh");
        // Kill-switch denies never count.
        let (t, mut trips) = Tripwires::new(vec![rule(1, vec![], TripScope::Tool)], clock);
        t.observe(&deny(ReasonCode::KillSwitch), &subject);
        assert!(trips.try_recv().is_err());
        t.observe(&deny(ReasonCode::Policy), &subject);
        assert_eq!(
            trips.try_recv().unwrap().scope.tool.unwrap().as_str(),
            "crm.note"
        );
    }
}
