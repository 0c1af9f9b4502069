//! Ledger entries: what is recorded, and its canonical bytes.
//!
//! An entry is a JSON object serialised with RFC 8785 (JSON Canonicalization Scheme): keys sorted,
//! no insignificant white space, numbers in their shortest form. The bytes are what the leaf hash
//! covers and what the read API returns, so anyone can recompute the leaf from them. Every field
//! is inside the hashed bytes; nothing about an entry lives only outside it.
//!
//! The `type` field says which event it records. Fields are only ever added, never renamed.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::model::{EvaluationError, Outcome, Reason};
use crate::timestamp::{Timestamp, TimestampError};

/// Entries larger than this cannot be served as C2SP tile entry bundles (16-bit length prefix).
pub const MAX_ENTRY_BYTES: usize = 65_535;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// RFC 3339, UTC: as written when the entry was made (`Timestamp`'s form since it exists).
    pub time: String,
    #[serde(flatten)]
    pub event: Event,
}

impl Entry {
    pub fn new(time: Timestamp, event: Event) -> Self {
        Self {
            time: time.to_string(),
            event,
        }
    }

    /// `time`, parsed. Entries keep the text they were written with (older ones may lack the
    /// milliseconds), so that their bytes never change.
    pub fn timestamp(&self) -> Result<Timestamp, TimestampError> {
        Timestamp::parse(&self.time)
    }
}

// Decisions are most entries, and each is built once and serialized at once: boxing the large
// variant would add an allocation per decision to save stack space nobody keeps.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Decision(DecisionEvent),
    AgentRegistered(AgentEvent),
    AgentChanged(AgentEvent),
    ToolRegistered(ToolEvent),
    ToolChanged(ToolEvent),
    PolicyLoaded(PolicyEvent),
    KillswitchEngaged(KillSwitchEvent),
    KillswitchReleased(KillSwitchEvent),
    ApprovalRequested(ApprovalEvent),
    ApprovalGranted(ApprovalEvent),
    ApprovalDenied(ApprovalEvent),
    ApprovalExpired(ApprovalEvent),
    ApprovalCancelled(ApprovalEvent),
    ApprovalUsed(ApprovalEvent),
    AttestationRecorded(AttestationEvent),
    SelfCheck(SelfCheckEvent),
    PolicyVersionCreated(PolicyVersionEvent),
    PolicyTested(PolicyTestEvent),
    PolicyActivated(PolicyVersionEvent),
    PolicyRetired(PolicyVersionEvent),
    PolicyShadowed(PolicyVersionEvent),
    AuditPackExported(AuditExportEvent),
    DecisionOutcome(OutcomeEvent),
    DecisionContested(ContestEvent),
    ContestResolved(ContestEvent),
    IncidentOpened(IncidentEvent),
    IncidentUpdated(IncidentEvent),
    IncidentReported(IncidentEvent),
    IncidentClosed(IncidentEvent),
    ConsoleSignedIn(ConsoleEvent),
    ConsoleSignedOut(ConsoleEvent),
    TripwireWouldTrip(TripwireEvent),
}

/// A tripwire in dry run that reached its count: what it would have switched off, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TripwireEvent {
    pub tripwire: String,
    /// As a kill switch's scope is recorded (`killswitch::Scope`).
    pub scope: Value,
    pub reason: String,
}

/// A person's console session begun (with a one-time sign-in link or through the OpenID Connect
/// provider) or ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsoleEvent {
    pub person: String,
    pub roles: Vec<String>,
    /// The session's id (its cookie carries it, signed).
    pub session: String,
    /// How the person signed in: `dev_link` (`reins console-link`) or `oidc` (the console's
    /// OpenID Connect provider).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The sign-in link's id, used once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// An objection to a decision, or its resolution: the contest as it stands after the step, and
/// who took the step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContestEvent {
    pub contest_id: String,
    pub decision_id: String,
    /// The agent the contested decision was made for.
    pub agent_id: String,
    pub actor: String,
    /// `open`, `upheld` or `overturned`.
    pub status: String,
    pub statement: String,
    /// Whose objection it is (e.g. the affected person), when not the actor's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raised_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A serious incident (AI Act Art 3(49), 73) as it stands after one step of its timeline, and
/// who took the step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentEvent {
    pub incident_id: String,
    pub actor: String,
    pub severity: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub widespread: bool,
    pub summary: String,
    pub aware_at: String,
    /// The reporting deadline (Art 73(2)-(4)) computed from `aware_at` and the severity.
    pub deadline: String,
    /// `open`, `reported` or `closed`.
    pub status: String,
    pub agents: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub killswitches: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// What this step adds, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What came of an allowed action, reported by the agent that asked (or an enforcement point
/// acting for it): at most one per decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeEvent {
    pub decision_id: String,
    pub agent_id: String,
    /// `succeeded`, `failed`, `partial` or `not_executed`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// SHA-256 of the action's result, hex, when the reporter gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// Who reported it: the agent, or the enforcement point acting for it.
    pub reported_by: String,
}

/// An audit pack handed out over HTTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditExportEvent {
    pub actor: String,
    pub agent_id: Option<String>,
    pub from: String,
    pub to: String,
    /// Ledger indices `[start, end)` and the checkpoint size the pack proves against.
    pub start: u64,
    pub end: u64,
    pub tree_size: u64,
    pub entries: u64,
}

/// A policy version created, activated or retired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyVersionEvent {
    pub version: String,
    pub store: String,
    pub policy_digest: String,
    pub actor: String,
    /// On activation: the version it replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
}

/// The policy tests run before an activation (EU AI Act Art 9: tested before release).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyTestEvent {
    pub version: String,
    pub store: String,
    pub policy_digest: String,
    pub actor: String,
    pub passed: bool,
    pub files: usize,
    pub checks: usize,
    /// The first failures (at most 20), as `file: test: what: expected ..., got ...`.
    pub failures: Vec<String>,
}

/// A compliance officer's statement that a checklist item is met, for one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttestationEvent {
    pub attestation_id: String,
    pub agent_id: String,
    /// The checklist item's id in the catalogue.
    pub item: String,
    pub statement: String,
    /// `sha256:<hex>` of a supporting document kept elsewhere.
    pub document_sha256: Option<String>,
    pub actor: String,
}

/// The fail-closed probes run at every start, against the live pipeline (EU AI Act Art 15).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelfCheckEvent {
    pub policy_digest: String,
    pub passed: bool,
    pub probes: Vec<Probe>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub name: String,
    pub expected: String,
    pub got: String,
    pub passed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalEvent {
    pub approval_id: String,
    pub status: String,
    pub agent_id: String,
    /// The user the request was made for. Absent, not null, when there was none, so entries
    /// written before the field existed keep their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    pub action: String,
    pub resource: Value,
    pub context_digest: String,
    pub approver_group: String,
    pub evaluation_id: String,
    pub expires_at: String,
    /// Who granted or denied it.
    pub actor: Option<String>,
    pub comment: Option<String>,
    pub used_decision_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KillSwitchEvent {
    pub switch_id: String,
    pub actor: String,
    pub reason: String,
    pub drill: bool,
    /// `{agent?, tool?, action?}`; empty is global.
    pub scope: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionEvent {
    pub decision_id: String,
    pub agent_id: String,
    /// The registry version of the agent the decision saw; absent for an unknown agent.
    pub agent_version: Option<i64>,
    pub on_behalf_of: Option<String>,
    pub action: String,
    pub resource: ResourceEvent,
    /// The request's context, with masked values replaced by commitments.
    pub context: Value,
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    pub decision: Outcome,
    pub reasons: Vec<Reason>,
    pub errors: Vec<EvaluationError>,
    pub policy_digest: Option<String>,
    /// The policy store that decided; absent for the default store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// The principal's entity type in that store (the default store's is always `Agent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_type: Option<String>,
    /// The agent's stated reason for the action (a string, or its commitment when masked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<Value>,
    /// The request's `trace` (its `user_request` a commitment when masked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<Value>,
    /// The decision this action undoes (the request's `compensates`, checked before recording).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensates: Option<String>,
    /// On a ledger replicas share: the control version the decision was evaluated under, which
    /// equals the number of control-changing entries before it ([`is_control_kind`]); `reins
    /// ledger verify` checks that. Absent on a single server's ledger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_version: Option<u64>,
    /// The usage counts the decision saw and, when allowed, what it counted (`crate::usage`):
    /// replay evaluates with these, and a restart rebuilds its windows from them. Written in
    /// the entry's compact form ([`crate::usage::entry`]).
    #[serde(
        default,
        with = "crate::usage::entry",
        skip_serializing_if = "Option::is_none"
    )]
    pub usage: Option<crate::usage::Recorded>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<serde_json::Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentEvent {
    pub actor: String,
    pub agent_id: String,
    pub version: i64,
    /// The record as registered (`registry::AgentRecord`), as a JSON document: the bytes this
    /// entry covers must not change when the domain type does.
    pub record: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolEvent {
    pub actor: String,
    pub tool_id: String,
    pub version: i64,
    /// The record as registered (`registry::ToolRecord`), as a JSON document.
    pub record: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyEvent {
    pub policy_digest: String,
    pub files: Vec<String>,
    pub policies: usize,
    /// The policy store; absent for the default store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("cannot encode the entry: {0}")]
    Encode(String),
    #[error("the entry is {0} bytes once encoded; at most {MAX_ENTRY_BYTES} can be recorded")]
    TooLarge(usize),
}

impl EntryError {
    pub fn from_json(e: serde_json::Error) -> Self {
        Self::Encode(e.to_string())
    }
}

impl Event {
    /// The `type` value, also stored as a column for filtering.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Decision(_) => "decision",
            Event::AgentRegistered(_) => "agent_registered",
            Event::AgentChanged(_) => "agent_changed",
            Event::ToolRegistered(_) => "tool_registered",
            Event::ToolChanged(_) => "tool_changed",
            Event::PolicyLoaded(_) => "policy_loaded",
            Event::KillswitchEngaged(_) => "killswitch_engaged",
            Event::KillswitchReleased(_) => "killswitch_released",
            Event::ApprovalRequested(_) => "approval_requested",
            Event::ApprovalGranted(_) => "approval_granted",
            Event::ApprovalDenied(_) => "approval_denied",
            Event::ApprovalExpired(_) => "approval_expired",
            Event::ApprovalCancelled(_) => "approval_cancelled",
            Event::ApprovalUsed(_) => "approval_used",
            Event::AttestationRecorded(_) => "attestation_recorded",
            Event::SelfCheck(_) => "self_check",
            Event::PolicyVersionCreated(_) => "policy_version_created",
            Event::PolicyTested(_) => "policy_tested",
            Event::PolicyActivated(_) => "policy_activated",
            Event::PolicyRetired(_) => "policy_retired",
            Event::PolicyShadowed(_) => "policy_shadowed",
            Event::AuditPackExported(_) => "audit_pack_exported",
            Event::DecisionOutcome(_) => "decision_outcome",
            Event::DecisionContested(_) => "decision_contested",
            Event::ContestResolved(_) => "contest_resolved",
            Event::IncidentOpened(_) => "incident_opened",
            Event::IncidentUpdated(_) => "incident_updated",
            Event::IncidentReported(_) => "incident_reported",
            Event::IncidentClosed(_) => "incident_closed",
            Event::ConsoleSignedIn(_) => "console_signed_in",
            Event::ConsoleSignedOut(_) => "console_signed_out",
            Event::TripwireWouldTrip(_) => "tripwire_would_trip",
        }
    }

    /// Whether this entry changes what later decisions see: the registry, a kill switch, an
    /// approval decided, expired or cancelled, the active or shadow policy version. On a shared
    /// ledger each such entry advances the control version by one, and a decision is sequenced
    /// only under the version it was evaluated with (`DecisionEvent::control_version`).
    pub fn changes_control(&self) -> bool {
        is_control_kind(self.kind())
    }
}

/// Checks, in index order, that every decision on a shared ledger was sequenced under the
/// control state it was evaluated with: its recorded `control_version` must equal the number of
/// control-changing entries before it. A decision that missed a kill switch engaged before it (or
/// claims one not yet engaged) fails. Decisions without a version (a single server's) pass.
#[derive(Debug, Default)]
pub struct ControlVersions {
    seen: u64,
}

impl ControlVersions {
    pub fn check(&mut self, kind: &str, bytes: &[u8]) -> Result<(), String> {
        if is_control_kind(kind) {
            self.seen += 1;
            return Ok(());
        }
        if kind != "decision" {
            return Ok(());
        }
        #[derive(Deserialize)]
        struct Versioned {
            control_version: Option<u64>,
        }
        let entry: Versioned = serde_json::from_slice(bytes)
            .map_err(|e| format!("a decision entry that does not parse: {e}"))?;
        match entry.control_version {
            Some(v) if v != self.seen => Err(format!(
                "a decision evaluated under control version {v} was sequenced after {} control changes: it did not see the state it was recorded under",
                self.seen
            )),
            _ => Ok(()),
        }
    }
}

/// [`Event::changes_control`] by the entry's kind, as stored beside it.
pub fn is_control_kind(kind: &str) -> bool {
    matches!(
        kind,
        "agent_registered"
            | "agent_changed"
            | "tool_registered"
            | "tool_changed"
            | "killswitch_engaged"
            | "killswitch_released"
            | "approval_granted"
            | "approval_denied"
            | "approval_expired"
            | "approval_cancelled"
            | "policy_activated"
            | "policy_retired"
            | "policy_shadowed"
    )
}

impl Entry {
    /// This entry as a ledger append, committed with `side`.
    pub fn append(
        &self,
        side: crate::store::SideEffect,
    ) -> Result<crate::ledger::Append, EntryError> {
        Ok(crate::ledger::Append {
            kind: self.event.kind(),
            bytes: self.to_bytes()?,
            side,
            control: self.event.changes_control(),
        })
    }

    /// The canonical bytes (RFC 8785) that the leaf hash covers.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EntryError> {
        let bytes =
            crate::tlog::canonical::to_vec(self).map_err(|e| EntryError::Encode(e.to_string()))?;
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(EntryError::TooLarge(bytes.len()));
        }
        Ok(bytes)
    }
}

/// A masked value in the ledger: `{"masked": "sha256:<hex>"}`, the SHA-256 of the salt followed by
/// the value's canonical JSON.
pub fn commitment(salt: &[u8], value: &Value) -> Result<Value, EntryError> {
    let canonical =
        crate::tlog::canonical::to_vec(value).map_err(|e| EntryError::Encode(e.to_string()))?;
    let mut h = Sha256::new();
    h.update(salt);
    h.update(&canonical);
    Ok(serde_json::json!({ "masked": format!("sha256:{}", hex::encode(h.finalize())) }))
}

/// Replaces the value at each JSON pointer in `context` with its commitment under a fresh random
/// salt. Returns the salts, by pointer, for the values that were present.
pub fn mask(
    context: &mut Value,
    pointers: &[String],
) -> Result<Vec<(String, Vec<u8>)>, EntryError> {
    let mut salts = Vec::new();
    for pointer in pointers {
        if let Some(value) = context.pointer_mut(pointer) {
            let mut salt = vec![0u8; 32];
            getrandom::fill(&mut salt)
                .map_err(|e| EntryError::Encode(format!("no randomness: {e}")))?;
            *value = commitment(&salt, value)?;
            salts.push((pointer.clone(), salt));
        }
    }
    Ok(salts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decision's control version must equal the control changes sequenced before it.
    #[test]
    fn control_versions_catch_a_decision_that_missed_a_change() {
        let decision = |v: Option<u64>| match v {
            Some(v) => format!(r#"{{"type":"decision","control_version":{v}}}"#),
            None => r#"{"type":"decision"}"#.to_owned(),
        };
        let mut check = ControlVersions::default();
        assert_eq!(
            check.check("decision", decision(Some(0)).as_bytes()),
            Ok(())
        );
        assert_eq!(check.check("policy_loaded", b"{}"), Ok(()));
        assert_eq!(
            check.check("decision", decision(Some(0)).as_bytes()),
            Ok(())
        );
        assert_eq!(check.check("killswitch_engaged", b"{}"), Ok(()));
        assert_eq!(check.check("decision", decision(None).as_bytes()), Ok(()));
        assert_eq!(
            check.check("decision", decision(Some(1)).as_bytes()),
            Ok(())
        );
        // Evaluated before the engage, sequenced after it.
        let missed = check.check("decision", decision(Some(0)).as_bytes());
        let missed = missed.unwrap_err();
        assert!(missed.contains("after 1 control changes"), "{missed}");
        // Claims a change not yet sequenced.
        assert!(
            check
                .check("decision", decision(Some(2)).as_bytes())
                .is_err()
        );
        assert!(check.check("decision", b"not json").is_err());
    }

    #[test]
    fn encoding_is_canonical() {
        let entry = Entry {
            time: "2026-01-01T00:00:00Z".into(),
            event: Event::PolicyLoaded(PolicyEvent {
                policy_digest: "sha256:ab".into(),
                files: vec!["a.cedar".into()],
                policies: 2,
                store: None,
            }),
        };
        let bytes = entry.to_bytes().unwrap();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"files":["a.cedar"],"policies":2,"policy_digest":"sha256:ab","time":"2026-01-01T00:00:00Z","type":"policy_loaded"}"#
        );
        let back: Entry = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, entry);
    }

    #[test]
    fn masking_hides_the_value_and_the_salt_proves_it() {
        let mut context =
            serde_json::json!({"args": {"customer": {"email": "a@example.com", "tier": "gold"}}});
        let salts = mask(
            &mut context,
            &["/args/customer/email".into(), "/args/absent".into()],
        )
        .unwrap();
        assert_eq!(salts.len(), 1);
        assert!(!context.to_string().contains("a@example.com"));
        assert_eq!(context["args"]["customer"]["tier"], "gold");
        let expected = commitment(&salts[0].1, &serde_json::json!("a@example.com")).unwrap();
        assert_eq!(context["args"]["customer"]["email"], expected);
    }
}
