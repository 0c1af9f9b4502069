//! The kill switch: the operator's stop button (EU AI Act Art 14(4)(e)).
//!
//! A switch has a scope (any combination of agent, tool and action; empty means everything). The
//! engaged switches live in an atomically swapped list that [`crate::decision::Pipeline`] checks
//! before anything else, so no policy can override them. Engaging commits the switch and its
//! ledger entry in one transaction and swaps the list before the call returns: the first decision
//! that starts after that is denied. State survives restarts; every engage and release (drills
//! included) is a ledger entry with its actor and reason.

use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::approvals::Approvals;
use crate::events::{Entry, Event, KillSwitchEvent};
use crate::ids::SwitchId;
use crate::ids::{AgentId, ToolId};
use crate::ledger::{LedgerError, Sink};
use crate::store::{KillSwitchRow, SideEffect, Store, StoreError};
use crate::timestamp::Timestamp;

/// What a switch stops. Every field given must match; an empty scope stops everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub agent: Option<AgentId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub tool: Option<ToolId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

impl Scope {
    /// Whether a request by `agent` for `action` on `tool` (if the resource is a tool) is in scope.
    /// What the scope stops, in words: "agent a, tool t", or "everything (global)".
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            self.agent.as_ref().map(|a| format!("agent {a}")),
            self.tool.as_ref().map(|t| format!("tool {t}")),
            self.action.as_ref().map(|a| format!("action {a}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if parts.is_empty() {
            "everything (global)".into()
        } else {
            parts.join(", ")
        }
    }

    pub fn covers(&self, agent: &AgentId, tool: Option<&ToolId>, action: &str) -> bool {
        self.agent.as_ref().is_none_or(|a| a == agent)
            && self.tool.as_ref().is_none_or(|t| Some(t) == tool)
            && self.action.as_deref().is_none_or(|a| a == action)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EngageRequest {
    #[serde(default)]
    pub scope: Scope,
    pub reason: String,
    /// A drill stops traffic like a real engagement; it is recorded as a drill.
    #[serde(default)]
    pub drill: bool,
    /// Engage even though the scope names an agent, tool or action Reins does not know (one
    /// about to be registered). Without it such a scope is refused: a typo would otherwise stop
    /// nothing while the real agent keeps running.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    pub reason: String,
}

/// Whether a switch still stops what it covers. A released switch stays released: engaging
/// again is a new switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = KillSwitchState)]
pub enum SwitchState {
    Engaged,
    Released,
}

/// A switch, engaged or released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Switch {
    pub id: SwitchId,
    /// `released` once `released_at` is set.
    pub state: SwitchState,
    pub scope: Scope,
    pub reason: String,
    pub drill: bool,
    pub engaged_by: String,
    pub engaged_at: Timestamp,
    pub released_by: Option<String>,
    pub released_at: Option<Timestamp>,
    pub release_reason: Option<String>,
}

impl Switch {
    pub fn is_engaged(&self) -> bool {
        self.state == SwitchState::Engaged
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KillSwitchError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("no kill switch `{0}`")]
    NotFound(SwitchId),
    #[error("kill switch `{0}` was already released")]
    AlreadyReleased(SwitchId),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct KillSwitches {
    ledger: Arc<dyn Sink>,
    approvals: Arc<Approvals>,
    store: Store,
    engaged: ArcSwap<Vec<Arc<Switch>>>,
    writes: tokio::sync::Mutex<()>,
}

impl KillSwitches {
    /// Loads the engaged switches.
    pub async fn load(
        store: Store,
        ledger: Arc<dyn Sink>,
        approvals: Arc<Approvals>,
    ) -> Result<Self, StoreError> {
        let engaged = engaged_in(&store).await?;
        if !engaged.is_empty() {
            tracing::warn!(count = engaged.len(), "kill switches engaged");
        }
        Ok(Self {
            ledger,
            approvals,
            store,
            engaged: ArcSwap::from_pointee(engaged),
            writes: Default::default(),
        })
    }

    /// Reads the engaged switches again: another replica engaged or released one.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let _serialised = self.writes.lock().await;
        self.engaged.store(Arc::new(engaged_in(&self.store).await?));
        Ok(())
    }

    /// The first engaged switch covering the request, if any. Lock-free: read on every decision.
    pub fn matching(
        &self,
        agent: &AgentId,
        tool: Option<&ToolId>,
        action: &str,
    ) -> Option<Arc<Switch>> {
        self.engaged
            .load()
            .iter()
            .find(|s| s.scope.covers(agent, tool, action))
            .cloned()
    }

    /// Engaged switches now.
    pub fn engaged(&self) -> Vec<Arc<Switch>> {
        self.engaged.load().to_vec()
    }

    pub async fn engage(
        &self,
        actor: &str,
        request: EngageRequest,
        now: Timestamp,
    ) -> Result<Switch, KillSwitchError> {
        if request.reason.trim().is_empty() {
            return Err(KillSwitchError::Invalid {
                field: "reason",
                message: "must say why".into(),
            });
        }
        if request
            .scope
            .action
            .as_deref()
            .is_some_and(|a| a.trim().is_empty())
        {
            return Err(KillSwitchError::Invalid {
                field: "scope.action",
                message: "must not be empty".into(),
            });
        }
        let switch = Switch {
            id: SwitchId::new(),
            state: SwitchState::Engaged,
            scope: request.scope,
            reason: request.reason,
            drill: request.drill,
            engaged_by: actor.to_owned(),
            engaged_at: now.to_owned(),
            released_by: None,
            released_at: None,
            release_reason: None,
        };
        let _serialised = self.writes.lock().await;
        self.commit(
            &switch,
            Event::KillswitchEngaged(event_of(&switch, actor, &switch.reason)),
        )
        .await?;
        let mut next = self.engaged.load().to_vec();
        next.push(Arc::new(switch.clone()));
        self.engaged.store(Arc::new(next));
        tracing::warn!(id = %switch.id, actor, drill = switch.drill, "kill switch engaged");
        // Approvals in scope die with the engagement: releasing the switch must not revive them.
        match self
            .approvals
            .cancel_in_scope(
                |agent, tool, action| switch.scope.covers(agent, tool, action),
                now,
            )
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::warn!(cancelled = n, "approvals cancelled by the kill switch"),
            Err(error) => {
                tracing::error!(%error, "could not cancel approvals in the kill switch's scope")
            }
        }
        Ok(switch)
    }

    pub async fn release(
        &self,
        actor: &str,
        id: &SwitchId,
        request: ReleaseRequest,
        now: Timestamp,
    ) -> Result<Switch, KillSwitchError> {
        if request.reason.trim().is_empty() {
            return Err(KillSwitchError::Invalid {
                field: "reason",
                message: "must say why".into(),
            });
        }
        let _serialised = self.writes.lock().await;
        let current = self
            .store
            .killswitch(&id.to_string())
            .await?
            .map(switch_of)
            .transpose()?
            .ok_or(KillSwitchError::NotFound(*id))?;
        if !current.is_engaged() {
            return Err(KillSwitchError::AlreadyReleased(*id));
        }
        let released = Switch {
            state: SwitchState::Released,
            released_by: Some(actor.to_owned()),
            released_at: Some(now.to_owned()),
            release_reason: Some(request.reason.clone()),
            ..current
        };
        self.commit(
            &released,
            Event::KillswitchReleased(event_of(&released, actor, &request.reason)),
        )
        .await?;
        let next: Vec<Arc<Switch>> = self
            .engaged
            .load()
            .iter()
            .filter(|s| s.id != *id)
            .cloned()
            .collect();
        self.engaged.store(Arc::new(next));
        tracing::warn!(%id, actor, "kill switch released");
        Ok(released)
    }

    /// Every switch, newest first.
    pub async fn history(&self) -> Result<Vec<Switch>, StoreError> {
        self.store
            .killswitches()
            .await?
            .into_iter()
            .rev()
            .map(switch_of)
            .collect::<Result<_, _>>()
    }

    async fn commit(&self, switch: &Switch, event: Event) -> Result<(), KillSwitchError> {
        let time = switch.released_at.unwrap_or(switch.engaged_at);
        let entry = Entry::new(time, event);
        let append = entry
            .append(SideEffect::KillSwitch(row_of(switch)))
            .map_err(|e| KillSwitchError::Invalid {
                field: "reason",
                message: e.to_string(),
            })?;
        self.ledger.append(vec![append]).await?;
        Ok(())
    }
}

fn event_of(switch: &Switch, actor: &str, reason: &str) -> KillSwitchEvent {
    KillSwitchEvent {
        switch_id: switch.id.to_string(),
        actor: actor.to_owned(),
        reason: reason.to_owned(),
        drill: switch.drill,
        scope: serde_json::to_value(&switch.scope).unwrap_or_default(),
    }
}

fn row_of(s: &Switch) -> KillSwitchRow {
    KillSwitchRow {
        id: s.id.to_string(),
        scope_agent: s.scope.agent.as_ref().map(AgentId::to_string),
        scope_tool: s.scope.tool.as_ref().map(ToolId::to_string),
        scope_action: s.scope.action.clone(),
        reason: s.reason.clone(),
        drill: s.drill,
        engaged_by: s.engaged_by.clone(),
        engaged_at: s.engaged_at,
        released_by: s.released_by.clone(),
        released_at: s.released_at,
        release_reason: s.release_reason.clone(),
    }
}

fn switch_of(r: KillSwitchRow) -> Result<Switch, StoreError> {
    Ok(Switch {
        id: r
            .id
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("kill switch `{}`: {e}", r.id)))?,
        state: match r.released_at {
            None => SwitchState::Engaged,
            Some(_) => SwitchState::Released,
        },
        // Ids were validated when the switch was engaged; one that no longer parses drops out of
        // the scope, which then covers more: the switch stops more, never less.
        scope: Scope {
            agent: r.scope_agent.and_then(|a| a.parse().ok()),
            tool: r.scope_tool.and_then(|t| t.parse().ok()),
            action: r.scope_action,
        },
        reason: r.reason,
        drill: r.drill,
        engaged_by: r.engaged_by,
        engaged_at: r.engaged_at,
        released_by: r.released_by,
        released_at: r.released_at,
        release_reason: r.release_reason,
    })
}

/// The switches engaged in the store.
async fn engaged_in(store: &Store) -> Result<Vec<Arc<Switch>>, StoreError> {
    Ok(store
        .killswitches()
        .await?
        .into_iter()
        .map(switch_of)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(Switch::is_engaged)
        .map(Arc::new)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_match_on_every_given_field() {
        let bot: AgentId = "bot".parse().unwrap();
        let other: AgentId = "other".parse().unwrap();
        let refund: ToolId = "payments.refund".parse().unwrap();
        let search: ToolId = "search.web".parse().unwrap();
        assert!(Scope::default().covers(&bot, None, "invoke"));
        let agent_tool = Scope {
            agent: Some(bot.clone()),
            tool: Some(refund.clone()),
            action: None,
        };
        assert!(agent_tool.covers(&bot, Some(&refund), "invoke"));
        assert!(!agent_tool.covers(&bot, Some(&search), "invoke"));
        assert!(!agent_tool.covers(&other, Some(&refund), "invoke"));
        assert!(!agent_tool.covers(&bot, None, "invoke"));
        let action = Scope {
            action: Some("invoke".into()),
            ..Default::default()
        };
        assert!(action.covers(&other, None, "invoke"));
        assert!(!action.covers(&other, None, "read"));
    }
}
