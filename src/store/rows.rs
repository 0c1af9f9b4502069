//! What the store reads and writes: rows, as plain data. Validation and meaning live in the
//! domain modules that own them.

use sqlx::FromRow;

use crate::timestamp::Timestamp;
use crate::tlog::merkle::{Hash, NodeId};

/// The two registry tables share one shape.
#[derive(Debug, Clone, Copy)]
pub enum RegistryTable {
    Agents,
    Tools,
}

/// A registry row: the record as JSON plus bookkeeping.
#[derive(Debug, Clone, FromRow)]
pub struct RegistryRow {
    pub id: String,
    pub version: i64,
    pub record: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A decision as stored: the columns lists and counts filter on. The request and the answer are
/// read back from the decision's ledger entry (`entry`, joined in on reads).
#[derive(Debug, Clone, FromRow)]
pub struct DecisionRow {
    pub id: String,
    pub agent_id: String,
    pub on_behalf_of: Option<String>,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub decision: String,
    pub policy_digest: Option<String>,
    pub evaluated_at: Timestamp,
    pub ledger_index: Option<i64>,
    pub leaf_hash: Option<Vec<u8>>,
    /// JSON of the answer's fields that are not in the ledger entry, when it has any.
    pub extra: Option<String>,
    /// The request and answer as JSON, only on rows written before the ledger held them.
    pub request: Option<String>,
    pub response: Option<String>,
    /// The ledger entry's bytes (reads only; never written through this row).
    pub entry: Option<Vec<u8>>,
    /// The `Idempotency-Key` it was asked with, and the SHA-256 of the request it answered.
    pub idempotency_key: Option<String>,
    pub request_digest: Option<String>,
    /// The decision this one undoes; written to `decision_compensations`, not read back here.
    #[sqlx(skip)]
    pub compensates: Option<String>,
}

/// A ledger entry as stored.
#[derive(Debug, Clone, FromRow)]
pub struct EntryRow {
    pub idx: i64,
    pub kind: String,
    pub entry: Vec<u8>,
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone, FromRow)]
pub struct CheckpointRow {
    pub tree_size: i64,
    pub root_hash: Vec<u8>,
    pub note: String,
    pub created_at: Timestamp,
}

/// A kill switch as stored.
#[derive(Debug, Clone, FromRow)]
pub struct KillSwitchRow {
    pub id: String,
    pub scope_agent: Option<String>,
    pub scope_tool: Option<String>,
    pub scope_action: Option<String>,
    pub reason: String,
    pub drill: bool,
    pub engaged_by: String,
    pub engaged_at: Timestamp,
    pub released_by: Option<String>,
    pub released_at: Option<Timestamp>,
    pub release_reason: Option<String>,
}

/// An approval as stored.
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct ApprovalRow {
    pub id: String,
    pub status: String,
    pub agent_id: String,
    pub on_behalf_of: Option<String>,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub context_digest: String,
    pub approver_group: String,
    pub policy_ids: String,
    pub evaluation_id: String,
    pub requested_at: Timestamp,
    pub expires_at: Timestamp,
    pub decided_by: Option<String>,
    pub decided_at: Option<Timestamp>,
    pub comment: Option<String>,
    pub used_at: Option<Timestamp>,
    pub used_decision_id: Option<String>,
}

/// A decision row with its ledger entry, which holds the request and the answer.
pub(super) const DECISION_SELECT: &str = "SELECT d.id, d.agent_id, d.on_behalf_of, d.action, d.resource_type, d.resource_id,
    d.decision, d.policy_digest, d.evaluated_at, d.ledger_index, d.leaf_hash, d.extra, d.request, d.response, e.entry,
    d.idempotency_key, d.request_digest
    FROM decisions d LEFT JOIN ledger_entries e ON e.idx = d.ledger_index";

pub(super) const APPROVAL_COLUMNS: &str = "id, status, agent_id, on_behalf_of, action, resource_type, resource_id, context_digest, approver_group, policy_ids,
    evaluation_id, requested_at, expires_at, decided_by, decided_at, comment, used_at, used_decision_id";

pub(super) const CONTEST_COLUMNS: &str = "id, decision_id, version, status, statement, raised_by, contested_by, contested_at, comment, resolved_by, resolved_at";

/// The first step of a contest; with `ON CONFLICT (id) DO UPDATE SET` [`CONTEST_STEP`], any
/// later one. `$n` placeholders, which SQLite reads as numbered parameters too.
pub(super) const CONTEST_UPSERT: &str = "INSERT INTO contests (id, decision_id, version, status, statement, raised_by, contested_by,
    contested_at, comment, resolved_by, resolved_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

/// A later step replaces the row only over the step before it: a step that lost a race (or a
/// first step whose id exists) changes nothing.
pub(super) const CONTEST_STEP: &str =
    "version = excluded.version, status = excluded.status, comment = excluded.comment,
    resolved_by = excluded.resolved_by, resolved_at = excluded.resolved_at
    WHERE contests.version = excluded.version - 1";

pub(super) const INCIDENT_UPSERT: &str = "INSERT INTO incidents (id, version, severity, widespread, summary, aware_at, deadline, status,
    agents, decisions, killswitches, opened_by, opened_at, reported_at, authority, reference, closed_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)";

pub(super) const INCIDENT_STEP: &str = "version = excluded.version, severity = excluded.severity,
    widespread = excluded.widespread, summary = excluded.summary, aware_at = excluded.aware_at,
    deadline = excluded.deadline, status = excluded.status, agents = excluded.agents,
    decisions = excluded.decisions, killswitches = excluded.killswitches, reported_at = excluded.reported_at,
    authority = excluded.authority, reference = excluded.reference, closed_at = excluded.closed_at
    WHERE incidents.version = excluded.version - 1";

pub(super) const INCIDENT_COLUMNS: &str = "id, version, severity, widespread, summary, aware_at, deadline, status, agents, decisions, killswitches,
    opened_by, opened_at, reported_at, authority, reference, closed_at";

/// What is written in the same transaction as a ledger entry, so that the state it records and
/// the record itself are durable together or not at all.
#[derive(Debug, Clone)]
pub enum SideEffect {
    None,
    Decision {
        row: DecisionRow,
        salts: Vec<(String, Vec<u8>)>,
    },
    Registry {
        table: RegistryTable,
        row: RegistryRow,
    },
    KillSwitch(KillSwitchRow),
    Approval(ApprovalRow),
    /// A policy pack's texts, kept once per digest.
    PolicyText(PolicyTextRow),
    /// A new policy version (its texts are kept by digest too, with the schema they validated
    /// against).
    PolicyVersion {
        row: PolicyVersionRow,
        schema_text: String,
    },
    /// `version` becomes the active one of its store; the previously active one goes back to draft.
    PolicyActivation {
        store: String,
        version: String,
    },
    /// `version` is retired.
    PolicyRetirement {
        version: String,
    },
    /// `version` becomes its store's shadow; a previous shadow goes back to draft.
    PolicyShadow {
        store: String,
        version: String,
    },
    /// The outcome of an allowed decision: one per decision.
    Outcome(OutcomeRow),
    /// A contest as it stands after this step: inserted at version 1, else replacing version - 1.
    Contest(ContestRow),
    /// An incident as it stands after this step: inserted at version 1, else replacing version - 1.
    Incident(IncidentRow),
    /// A console sign-in link used (once: a second use conflicts).
    ConsoleLink {
        link: String,
        used_at: Timestamp,
    },
    /// A console session ended: its cookie is refused from now on.
    ConsoleSignOut {
        session: String,
        at: Timestamp,
    },
}

/// An objection to a decision, as stored.
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct ContestRow {
    pub id: String,
    pub decision_id: String,
    pub version: i64,
    pub status: String,
    pub statement: String,
    pub raised_by: Option<String>,
    pub contested_by: String,
    pub contested_at: Timestamp,
    pub comment: Option<String>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<Timestamp>,
}

/// An incident, as stored. Its links are JSON arrays of ids.
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct IncidentRow {
    pub id: String,
    pub version: i64,
    pub severity: String,
    pub widespread: bool,
    pub summary: String,
    pub aware_at: Timestamp,
    pub deadline: Timestamp,
    pub status: String,
    pub agents: String,
    pub decisions: String,
    pub killswitches: String,
    pub opened_by: String,
    pub opened_at: Timestamp,
    pub reported_at: Option<Timestamp>,
    pub authority: Option<String>,
    pub reference: Option<String>,
    pub closed_at: Option<Timestamp>,
}

/// A decision's reported outcome as stored.
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct OutcomeRow {
    pub decision_id: String,
    pub agent_id: String,
    pub status: String,
    pub summary: Option<String>,
    pub result_sha256: Option<String>,
    pub completed_at: Option<Timestamp>,
    pub reported_by: String,
    pub recorded_at: Timestamp,
}

/// A policy version as stored.
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct PolicyVersionRow {
    pub id: String,
    pub store: String,
    pub digest: String,
    pub schema_digest: String,
    /// JSON array of `[file name, text]`.
    pub files: String,
    pub author: String,
    pub created_at: Timestamp,
    pub state: String,
}

/// The texts of a loaded policy pack.
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct PolicyTextRow {
    pub digest: String,
    /// JSON array of `[file name, text]`, in load order.
    pub files: String,
    pub schema_text: String,
    pub first_seen: String,
}

/// What a list of decisions is narrowed to (each `None`: any).
#[derive(Debug, Clone, Default)]
pub struct DecisionFilter {
    pub agent: Option<String>,
    pub tool: Option<String>,
    /// `allow` or `deny`.
    pub outcome: Option<String>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// Only decisions older than this one (ids sort by time): the next page.
    pub before: Option<String>,
}

/// Allowed decisions of one tool with one reported outcome status (`None`: none reported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeCount {
    pub tool: String,
    pub status: Option<String>,
    pub count: u64,
    /// How many of them an allowed compensation undid.
    pub compensated: u64,
}

/// Counts of one agent's decisions in a period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecisionCounts {
    pub allow: u64,
    pub deny: u64,
    /// Decisions stored without a ledger index (there should be none).
    pub unrecorded: u64,
    pub first_index: Option<u64>,
    pub last_index: Option<u64>,
}

/// The write-ahead log after a checkpoint: frames in it, and how many of them are now in the
/// database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalState {
    pub frames: u64,
    pub copied: u64,
}

/// SQLite's page size, which is also a WAL frame's payload.
pub const PAGE_BYTES: u64 = 4096;

/// One sequenced entry ready to commit.
#[derive(Debug, Clone)]
pub struct AppendRow {
    pub index: u64,
    pub kind: &'static str,
    pub entry: Vec<u8>,
    pub nodes: Vec<(NodeId, Hash)>,
    pub side: SideEffect,
}
