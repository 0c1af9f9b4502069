//! The guardrails' configuration: usage counting (`[usage]`), tripwires (`[[tripwires]]`) and
//! webhooks (`[[webhooks]]`), as read from the file; [`crate::tripwires`] and
//! [`crate::webhooks`] act on them. Reason codes and tool risks are names here, checked against
//! the model when the server starts.
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One tripwire rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TripwireConfig {
    pub name: String,
    /// Denies that trip it.
    pub count: u32,
    /// Over how long (at most 24h).
    #[serde(with = "humantime_serde")]
    pub within: Duration,
    /// Only denies with one of these reason codes count (default: any deny but `kill_switch`,
    /// which a trip itself causes).
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Only denies of tools at one of these risks count (default: any resource).
    #[serde(default)]
    pub tool_risk: Vec<String>,
    /// What is counted and switched off: the agent (default) or the tool.
    #[serde(default)]
    pub scope: TripScope,
    /// Record `tripwire_would_trip` instead of engaging a switch.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TripScope {
    #[default]
    Agent,
    Tool,
}

impl TripwireConfig {
    /// Why the rule cannot be used, if it cannot (codes and risks are checked at start).
    pub fn problem(&self) -> Option<String> {
        if self.name.trim().is_empty() || self.name.len() > 64 {
            return Some("a tripwire needs a name of 1 to 64 characters".into());
        }
        if self.count == 0 {
            return Some(format!(
                "tripwire `{}`: count must be at least 1",
                self.name
            ));
        }
        if self.within.is_zero() || self.within > Duration::from_secs(24 * 3600) {
            return Some(format!(
                "tripwire `{}`: within must be more than 0 and at most 24h",
                self.name
            ));
        }
        if self.reasons.iter().any(|r| r == "kill_switch") {
            return Some(format!(
                "tripwire `{}`: kill_switch denies cannot count (a trip causes them)",
                self.name
            ));
        }
        None
    }
}

/// The events a hook may ask for.
pub const WEBHOOK_EVENTS: [&str; 6] = [
    "approval_requested",
    "approval_decided",
    "killswitch_engaged",
    "killswitch_released",
    "tripwire_would_trip",
    "policy_activated",
];

/// One hook, as configured (`[[webhooks]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    pub name: String,
    pub url: String,
    /// Which of [`EVENTS`] to send.
    pub events: Vec<String>,
    /// A file holding the signing secret: `whsec_<base64>` (Standard Webhooks) or raw text.
    pub secret_file: PathBuf,
    /// Wait before the first retry; doubled for each next one.
    #[serde(default = "first_backoff", with = "humantime_serde")]
    pub backoff: Duration,
}

fn first_backoff() -> Duration {
    Duration::from_secs(1)
}

impl HookConfig {
    /// Why the hook cannot be used, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if self.name.trim().is_empty() || self.name.len() > 64 || self.name.contains(['/', '\\']) {
            return Some("a webhook needs a name of 1 to 64 characters, without slashes".into());
        }
        match url::Url::parse(&self.url) {
            Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {}
            _ => return Some(format!("webhook `{}`: url must be http(s)", self.name)),
        }
        if self.events.is_empty() {
            return Some(format!(
                "webhook `{}`: events must name at least one",
                self.name
            ));
        }
        self.events
            .iter()
            .find(|e| !WEBHOOK_EVENTS.contains(&e.as_str()))
            .map(|e| {
                format!(
                    "webhook `{}`: `{e}` is not one of {WEBHOOK_EVENTS:?}",
                    self.name
                )
            })
    }

    /// The ledger entry kinds this hook asked for (`approval_decided` is a grant or a denial).
    pub fn kinds(&self) -> Vec<&str> {
        self.events
            .iter()
            .flat_map(|e| match e.as_str() {
                "approval_decided" => vec!["approval_granted", "approval_denied"],
                other => vec![other],
            })
            .collect()
    }
}

/// Usage counting (`[usage]`): what `context.usage` and `context.session` are read from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsageConfig {
    /// Count calls and spend for guardrail policies. Off, no decision reads or writes counts
    /// (on PostgreSQL that is one transaction less per decision), `context.usage` and
    /// `context.session` are absent, and policies that test `context has usage` never apply:
    /// for deployments that keep no guardrails. Counting resumes from zero when turned back on.
    pub enabled: bool,
}

impl Default for UsageConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}
