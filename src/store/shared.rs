//! The writes of a ledger that replicas share on PostgreSQL: sequencing and integration.
//!
//! Sequencing ([`sequence`]) is one transaction per batch. It writes the batch's rare side effects
//! (registry, kill switches, approvals, policy versions) and its salts first, then one statement
//! that advances the counter row `ledger_seq` and inserts the entries and decision rows at the
//! indices it returned. The counter row is the last lock the transaction takes and it is held
//! until commit, so batches commit in counter order and the committed indices are exactly
//! `[0, next)`. The same statement refuses a batch of decisions evaluated under an older control
//! version than the row's (a kill switch, a registry change... sequenced since): the caller
//! evaluates again.
//!
//! Integration ([`integrate`]) adds the sequenced entries' leaf hashes to the Merkle tree under a
//! row lock on `ledger_tree`, and only from the size it read there: an integrator that lost its
//! turn (a zombie whose late commit arrives after another took over) fails that check and writes
//! nothing. Nodes are the same rows as on SQLite, so proofs and tiles are read the same way.

use sqlx::{PgPool, Postgres, Transaction};

use super::{
    AppendRow, ApprovalRow, CONTEST_STEP, CONTEST_UPSERT, CheckpointRow, INCIDENT_STEP,
    INCIDENT_UPSERT, RegistryTable, SideEffect, StoreError, sql_int,
};
use crate::tlog::merkle::{Frontier, Hash, NodeId};

/// The channel replicas listen on for control changes; the payload is the new control version.
pub const CONTROL_CHANNEL: &str = "reins_control";

/// What became of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sequenced {
    /// Committed at `[first, first + n)`; `control_version` is the row's after the batch.
    At { first: u64, control_version: u64 },
    /// The batch was evaluated under an older control version than `current`; nothing written.
    Stale { current: u64 },
    /// Append number `append` could not change its approval (used, decided or expired by another
    /// decision or replica first); nothing written.
    Conflict { append: usize },
}

/// The shared counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqState {
    /// Indices given out: committed entries are exactly `[0, next)`.
    pub next: u64,
    pub control_version: u64,
    /// Entries integrated into the tree, and its root.
    pub tree_size: u64,
    pub root: Hash,
}

/// Sequences and commits one batch (see the module docs). `rows[i].index` is ignored (the counter
/// gives it) and `rows[i].nodes` must be empty (integration adds them); `leaves[i]` is the leaf
/// hash of `rows[i].entry`. `evaluated_under`: the control version the batch's decisions saw, if
/// any; `control_changes`: how many of its entries change control state (the version moves by
/// that many).
pub async fn sequence(
    pool: &PgPool,
    rows: &[AppendRow],
    leaves: &[Hash],
    evaluated_under: Option<u64>,
    control_changes: u64,
) -> Result<Sequenced, StoreError> {
    let mut tx = pool.begin().await?;
    for (i, row) in rows.iter().enumerate() {
        if !write_side_effect(&mut tx, row).await? {
            tx.rollback().await?;
            return Ok(Sequenced::Conflict { append: i });
        }
    }
    let mut salt = (Vec::new(), Vec::new(), Vec::new());
    let mut d = DecisionColumns::default();
    for (offset, row) in rows.iter().enumerate() {
        if let SideEffect::Decision { row: r, salts } = &row.side {
            if let Some(undone) = &r.compensates {
                sqlx::query(
                    "INSERT INTO decision_compensations (decision_id, compensates) VALUES ($1, $2)",
                )
                .bind(&r.id)
                .bind(undone)
                .execute(&mut *tx)
                .await?;
            }
            for (pointer, value) in salts {
                salt.0.push(r.id.clone());
                salt.1.push(pointer.clone());
                salt.2.push(value.clone());
            }
            d.push(offset as i64, r, &leaves[offset]);
        }
    }
    if !salt.0.is_empty() {
        sqlx::query(
            "INSERT INTO ledger_salts (decision_id, pointer, salt)
             SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[])",
        )
        .bind(&salt.0)
        .bind(&salt.1)
        .bind(&salt.2)
        .execute(&mut *tx)
        .await?;
    }
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind).collect();
    let entries: Vec<&[u8]> = rows.iter().map(|r| r.entry.as_slice()).collect();
    let leaves: Vec<&[u8]> = leaves.iter().map(|h| &h[..]).collect();
    let counted: Option<(i64, i64)> = sqlx::query_as(
        "WITH c AS (
             UPDATE ledger_seq SET next = next + $1, control_version = control_version + $2
             WHERE id = 1 AND ($3::bigint IS NULL OR control_version = $3)
             RETURNING next - $1 AS base, control_version
         ), e AS (
             INSERT INTO ledger_entries (idx, kind, entry, leaf)
             SELECT c.base + u.ord - 1, u.kind, u.entry, u.leaf
             FROM c, unnest($4::text[], $5::bytea[], $6::bytea[]) WITH ORDINALITY AS u(kind, entry, leaf, ord)
         ), d AS (
             INSERT INTO decisions (id, agent_id, on_behalf_of, action, resource_type, resource_id, decision,
                                    policy_digest, evaluated_at, extra, ledger_index, leaf_hash,
                                    idempotency_key, request_digest)
             SELECT u.id, u.agent_id, u.on_behalf_of, u.action, u.resource_type, u.resource_id, u.decision,
                    u.policy_digest, u.evaluated_at, u.extra, c.base + u.off, u.leaf,
                    u.idempotency_key, u.request_digest
             FROM c, unnest($7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                            $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::bytea[],
                            $19::text[], $20::text[])
                  AS u(off, id, agent_id, on_behalf_of, action, resource_type, resource_id, decision,
                       policy_digest, evaluated_at, extra, leaf, idempotency_key, request_digest)
         )
         SELECT base, control_version FROM c",
    )
    .bind(rows.len() as i64)
    .bind(sql_int(control_changes))
    .bind(evaluated_under.map(sql_int))
    .bind(&kinds)
    .bind(&entries)
    .bind(&leaves)
    .bind(&d.offset)
    .bind(&d.id)
    .bind(&d.agent_id)
    .bind(&d.on_behalf_of)
    .bind(&d.action)
    .bind(&d.resource_type)
    .bind(&d.resource_id)
    .bind(&d.decision)
    .bind(&d.policy_digest)
    .bind(&d.evaluated_at)
    .bind(&d.extra)
    .bind(&d.leaf)
    .bind(&d.idempotency_key)
    .bind(&d.request_digest)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((first, control_version)) = counted else {
        tx.rollback().await?;
        let (current,): (i64,) = sqlx::query_as("SELECT control_version FROM ledger_seq")
            .fetch_one(pool)
            .await?;
        return Ok(Sequenced::Stale {
            current: current as u64,
        });
    };
    if control_changes > 0 {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CONTROL_CHANNEL)
            .bind(control_version.to_string())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(Sequenced::At {
        first: first as u64,
        control_version: control_version as u64,
    })
}

/// The decision rows of a batch, as one array per column for `unnest`.
#[derive(Default)]
struct DecisionColumns {
    offset: Vec<i64>,
    id: Vec<String>,
    agent_id: Vec<String>,
    on_behalf_of: Vec<Option<String>>,
    action: Vec<String>,
    resource_type: Vec<String>,
    resource_id: Vec<String>,
    decision: Vec<String>,
    policy_digest: Vec<Option<String>>,
    evaluated_at: Vec<String>,
    extra: Vec<Option<String>>,
    leaf: Vec<Vec<u8>>,
    idempotency_key: Vec<Option<String>>,
    request_digest: Vec<Option<String>>,
}

impl DecisionColumns {
    fn push(&mut self, offset: i64, d: &super::DecisionRow, leaf: &Hash) {
        self.offset.push(offset);
        self.id.push(d.id.clone());
        self.agent_id.push(d.agent_id.clone());
        self.on_behalf_of.push(d.on_behalf_of.clone());
        self.action.push(d.action.clone());
        self.resource_type.push(d.resource_type.clone());
        self.resource_id.push(d.resource_id.clone());
        self.decision.push(d.decision.clone());
        self.policy_digest.push(d.policy_digest.clone());
        self.evaluated_at.push(d.evaluated_at.to_string());
        self.extra.push(d.extra.clone());
        self.leaf.push(leaf.to_vec());
        self.idempotency_key.push(d.idempotency_key.clone());
        self.request_digest.push(d.request_digest.clone());
    }
}

/// Writes the state one entry records, other than a decision row (those go in the counter
/// statement). False when an approval could not make its transition: another decision or replica
/// used, decided or expired it first.
async fn write_side_effect(
    tx: &mut Transaction<'_, Postgres>,
    row: &AppendRow,
) -> Result<bool, StoreError> {
    match &row.side {
        SideEffect::None | SideEffect::Decision { .. } => {}
        SideEffect::Registry { table, row: r } => {
            let sql = match table {
                RegistryTable::Agents => {
                    "INSERT INTO agents (id, version, record, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (id) DO UPDATE SET version = excluded.version, record = excluded.record, updated_at = excluded.updated_at"
                }
                RegistryTable::Tools => {
                    "INSERT INTO tools (id, version, record, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (id) DO UPDATE SET version = excluded.version, record = excluded.record, updated_at = excluded.updated_at"
                }
            };
            sqlx::query(sql)
                .bind(&r.id)
                .bind(r.version)
                .bind(&r.record)
                .bind(r.created_at)
                .bind(r.updated_at)
                .execute(&mut **tx)
                .await?;
        }
        SideEffect::Approval(a) => return write_approval(tx, a).await,
        // Each step replaces the step before it (`version - 1`); a replica that lost the race
        // changes nothing.
        SideEffect::Contest(c) => {
            let changed = sqlx::query(sqlx::AssertSqlSafe(format!(
                "{CONTEST_UPSERT} ON CONFLICT (id) DO UPDATE SET {CONTEST_STEP}"
            )))
            .bind(&c.id)
            .bind(&c.decision_id)
            .bind(c.version)
            .bind(&c.status)
            .bind(&c.statement)
            .bind(&c.raised_by)
            .bind(&c.contested_by)
            .bind(c.contested_at)
            .bind(&c.comment)
            .bind(&c.resolved_by)
            .bind(c.resolved_at)
            .execute(&mut **tx)
            .await?;
            return Ok(changed.rows_affected() == 1);
        }
        SideEffect::Incident(i) => {
            let changed = sqlx::query(sqlx::AssertSqlSafe(format!(
                "{INCIDENT_UPSERT} ON CONFLICT (id) DO UPDATE SET {INCIDENT_STEP}"
            )))
            .bind(&i.id)
            .bind(i.version)
            .bind(&i.severity)
            .bind(i.widespread)
            .bind(&i.summary)
            .bind(i.aware_at)
            .bind(i.deadline)
            .bind(&i.status)
            .bind(&i.agents)
            .bind(&i.decisions)
            .bind(&i.killswitches)
            .bind(&i.opened_by)
            .bind(i.opened_at)
            .bind(i.reported_at)
            .bind(&i.authority)
            .bind(&i.reference)
            .bind(i.closed_at)
            .execute(&mut **tx)
            .await?;
            return Ok(changed.rows_affected() == 1);
        }
        // A link signs in once, whichever replica it reaches first.
        SideEffect::ConsoleLink { link, used_at } => {
            let inserted = sqlx::query(
                "INSERT INTO console_links (link, used_at) VALUES ($1, $2) ON CONFLICT (link) DO NOTHING",
            )
            .bind(link)
            .bind(used_at)
            .execute(&mut **tx)
            .await?;
            return Ok(inserted.rows_affected() == 1);
        }
        SideEffect::ConsoleSignOut { session, at } => {
            sqlx::query(
                "INSERT INTO console_sign_outs (session, at) VALUES ($1, $2) ON CONFLICT (session) DO NOTHING",
            )
            .bind(session)
            .bind(at)
            .execute(&mut **tx)
            .await?;
        }
        // One outcome per decision, whichever replica is told first.
        SideEffect::Outcome(o) => {
            let inserted = sqlx::query(
                "INSERT INTO decision_outcomes (decision_id, agent_id, status, summary, result_sha256,
                                                completed_at, reported_by, recorded_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (decision_id) DO NOTHING",
            )
            .bind(&o.decision_id)
            .bind(&o.agent_id)
            .bind(&o.status)
            .bind(&o.summary)
            .bind(&o.result_sha256)
            .bind(o.completed_at)
            .bind(&o.reported_by)
            .bind(o.recorded_at)
            .execute(&mut **tx)
            .await?;
            return Ok(inserted.rows_affected() == 1);
        }
        SideEffect::PolicyText(p) => {
            sqlx::query(
                "INSERT INTO policy_texts (digest, files, schema_text, first_seen) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (digest) DO NOTHING",
            )
            .bind(&p.digest)
            .bind(&p.files)
            .bind(&p.schema_text)
            .bind(&p.first_seen)
            .execute(&mut **tx)
            .await?;
        }
        SideEffect::PolicyVersion {
            row: v,
            schema_text,
        } => {
            sqlx::query(
                "INSERT INTO policy_versions (id, store, digest, schema_digest, files, author, created_at, state)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&v.id)
            .bind(&v.store)
            .bind(&v.digest)
            .bind(&v.schema_digest)
            .bind(&v.files)
            .bind(&v.author)
            .bind(v.created_at)
            .bind(&v.state)
            .execute(&mut **tx)
            .await?;
            sqlx::query(
                "INSERT INTO policy_texts (digest, files, schema_text, first_seen) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (digest) DO NOTHING",
            )
            .bind(&v.digest)
            .bind(&v.files)
            .bind(schema_text)
            .bind(v.created_at)
            .execute(&mut **tx)
            .await?;
        }
        SideEffect::PolicyActivation { store, version } => {
            set_state(tx, store, version, "active").await?;
        }
        SideEffect::PolicyShadow { store, version } => {
            set_state(tx, store, version, "shadow").await?;
        }
        SideEffect::PolicyRetirement { version } => {
            sqlx::query("UPDATE policy_versions SET state = 'retired' WHERE id = $1")
                .bind(version)
                .execute(&mut **tx)
                .await?;
        }
        SideEffect::KillSwitch(k) => {
            sqlx::query(
                "INSERT INTO killswitches (id, scope_agent, scope_tool, scope_action, reason, drill, engaged_by, engaged_at,
                                           released_by, released_at, release_reason)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT (id) DO UPDATE SET released_by = excluded.released_by, released_at = excluded.released_at,
                                                release_reason = excluded.release_reason",
            )
            .bind(&k.id)
            .bind(&k.scope_agent)
            .bind(&k.scope_tool)
            .bind(&k.scope_action)
            .bind(&k.reason)
            .bind(k.drill)
            .bind(&k.engaged_by)
            .bind(k.engaged_at)
            .bind(&k.released_by)
            .bind(k.released_at)
            .bind(&k.release_reason)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(true)
}

/// `version` becomes its store's `state` (active or shadow); the one that held it goes back to
/// draft.
async fn set_state(
    tx: &mut Transaction<'_, Postgres>,
    store: &str,
    version: &str,
    state: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE policy_versions SET state = 'draft' WHERE store = $1 AND state = $2")
        .bind(store)
        .bind(state)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE policy_versions SET state = $2 WHERE id = $1")
        .bind(version)
        .bind(state)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// An approval's new row. Each replica keeps the open approvals in memory, so the transition is
/// made only from the state the database holds: a new approval is inserted; a pending one may be
/// granted, denied, expired or cancelled; a granted one may be used (before it expires), expired
/// or cancelled. Anything else changes nothing and answers false, so an approval is used once
/// however many replicas claim it.
async fn write_approval(
    tx: &mut Transaction<'_, Postgres>,
    a: &ApprovalRow,
) -> Result<bool, StoreError> {
    let from: &[&str] = match a.status.as_str() {
        "pending" => &[],
        "used" => &["granted"],
        "granted" | "denied" => &["pending"],
        _ => &["pending", "granted"],
    };
    if from.is_empty() {
        let inserted = sqlx::query(
            "INSERT INTO approvals (id, status, agent_id, action, resource_type, resource_id, context_digest, approver_group,
                                    policy_ids, evaluation_id, requested_at, expires_at, decided_by, decided_at, comment,
                                    used_at, used_decision_id, on_behalf_of)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&a.id)
        .bind(&a.status)
        .bind(&a.agent_id)
        .bind(&a.action)
        .bind(&a.resource_type)
        .bind(&a.resource_id)
        .bind(&a.context_digest)
        .bind(&a.approver_group)
        .bind(&a.policy_ids)
        .bind(&a.evaluation_id)
        .bind(a.requested_at)
        .bind(a.expires_at)
        .bind(&a.decided_by)
        .bind(a.decided_at)
        .bind(&a.comment)
        .bind(a.used_at)
        .bind(&a.used_decision_id)
        .bind(&a.on_behalf_of)
        .execute(&mut **tx)
        .await?;
        return Ok(inserted.rows_affected() == 1);
    }
    let from: Vec<String> = from.iter().map(|s| (*s).to_owned()).collect();
    // A use must come before the expiry; the time compared is the decision's own.
    let updated = sqlx::query(
        "UPDATE approvals SET status = $2, decided_by = $3, decided_at = $4, comment = $5,
                used_at = $6, used_decision_id = $7
         WHERE id = $1 AND status = ANY($8) AND ($2 <> 'used' OR expires_at > $6)",
    )
    .bind(&a.id)
    .bind(&a.status)
    .bind(&a.decided_by)
    .bind(a.decided_at)
    .bind(&a.comment)
    .bind(a.used_at)
    .bind(&a.used_decision_id)
    .bind(&from)
    .execute(&mut **tx)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Reads the counters and the integrated tree's state.
pub async fn state(pool: &PgPool) -> Result<SeqState, StoreError> {
    let (next, control_version, tree_size, root): (i64, i64, i64, Vec<u8>) = sqlx::query_as(
        "SELECT s.next, s.control_version, t.size, t.root FROM ledger_seq s, ledger_tree t",
    )
    .fetch_one(pool)
    .await?;
    Ok(SeqState {
        next: next as u64,
        control_version: control_version as u64,
        tree_size: tree_size as u64,
        root: Hash::try_from(root.as_slice())
            .map_err(|_| StoreError::Corrupt("ledger_tree.root is not 32 bytes".into()))?,
    })
}

/// An entry sequenced but not integrated, with its stored leaf hash.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PendingRow {
    pub idx: i64,
    pub kind: String,
    pub entry: Vec<u8>,
    pub leaf: Vec<u8>,
}

/// Entries with indices in `[start, end)` (sequenced after the integrated tree), in order.
pub async fn pending(pool: &PgPool, start: u64, end: u64) -> Result<Vec<PendingRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT idx, kind, entry, leaf FROM ledger_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
    )
    .bind(sql_int(start))
    .bind(sql_int(end))
    .fetch_all(pool)
    .await?)
}

/// What one integration pass did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integrated {
    /// The tree grew to this frontier (or stayed, with nothing sequenced beyond it).
    Grew(Frontier),
    /// The tree in the database is not the one `frontier` describes: another integrator moved it
    /// (or this one's frontier is stale). Nothing written; reload the frontier and retry.
    Moved { size: u64 },
}

/// Adds up to `max` sequenced entries after `frontier` to the tree, in one transaction under a
/// row lock on `ledger_tree`, and only if the stored tree is still `frontier`'s size.
pub async fn integrate(
    pool: &PgPool,
    frontier: &Frontier,
    max: u64,
) -> Result<Integrated, StoreError> {
    let mut tx = pool.begin().await?;
    let (size,): (i64,) = sqlx::query_as("SELECT size FROM ledger_tree WHERE id = 1 FOR UPDATE")
        .fetch_one(&mut *tx)
        .await?;
    if size as u64 != frontier.size() {
        tx.rollback().await?;
        return Ok(Integrated::Moved { size: size as u64 });
    }
    let leaves: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT idx, leaf FROM ledger_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
    )
    .bind(size)
    .bind(size.saturating_add(sql_int(max)))
    .fetch_all(&mut *tx)
    .await?;
    if leaves.is_empty() {
        tx.rollback().await?;
        return Ok(Integrated::Grew(frontier.clone()));
    }
    let mut next = frontier.clone();
    let mut nodes: Vec<(NodeId, Hash)> = Vec::new();
    for (idx, leaf) in &leaves {
        if *idx as u64 != next.size() {
            return Err(StoreError::Corrupt(format!(
                "ledger entry {} is missing: sequenced indices must be dense",
                next.size()
            )));
        }
        let leaf = Hash::try_from(leaf.as_slice()).map_err(|_| {
            StoreError::Corrupt(format!("ledger entry {idx}: leaf is not 32 bytes"))
        })?;
        nodes.extend(next.append(leaf));
    }
    let pos: Vec<i64> = nodes.iter().map(|(n, _)| sql_int(n.position())).collect();
    let level: Vec<i32> = nodes.iter().map(|(n, _)| i32::from(n.level)).collect();
    let idx: Vec<i64> = nodes.iter().map(|(n, _)| sql_int(n.index)).collect();
    let hash: Vec<&[u8]> = nodes.iter().map(|(_, h)| &h[..]).collect();
    sqlx::query(
        "INSERT INTO ledger_nodes (pos, level, idx, hash)
         SELECT * FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::bytea[])",
    )
    .bind(&pos)
    .bind(&level)
    .bind(&idx)
    .bind(&hash)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE ledger_tree SET size = $1, root = $2 WHERE id = 1")
        .bind(sql_int(next.size()))
        .bind(&next.root()[..])
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Integrated::Grew(next))
}

/// Stores a signed checkpoint unless one as large is stored already; true if stored.
pub async fn store_checkpoint(pool: &PgPool, c: &CheckpointRow) -> Result<bool, StoreError> {
    let stored = sqlx::query(
        "INSERT INTO ledger_checkpoints (tree_size, root_hash, note, created_at)
         SELECT $1, $2, $3, $4
         WHERE NOT EXISTS (SELECT 1 FROM ledger_checkpoints WHERE tree_size >= $1)
         ON CONFLICT (tree_size) DO NOTHING",
    )
    .bind(c.tree_size)
    .bind(&c.root_hash)
    .bind(&c.note)
    .bind(c.created_at)
    .execute(pool)
    .await?;
    Ok(stored.rows_affected() == 1)
}

/// The probe write of a degraded replica: a transaction that needs the database to take writes.
pub async fn probe(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO ledger_probe (id, at) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET at = excluded.at",
    )
    .bind(crate::timestamp::Timestamp::now())
    .execute(pool)
    .await?;
    Ok(())
}
