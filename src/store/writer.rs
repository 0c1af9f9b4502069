//! The ledger's one writing connection to SQLite, driven from the ledger's own thread.
//!
//! Every write to the database goes through here once the store is open: ledger commits (entries,
//! their tree nodes and the state they record) and signed checkpoints. This connection is
//! synchronous (rusqlite, not sqlx) because it lives on a thread of its own that does nothing
//! else: sqlx would run it on a worker thread anyway, and every statement would be a round trip
//! between threads, which under load cost more than the statements themselves. Here a commit is a
//! handful of cached prepared statements and one transaction, with no hand-off at all.
//!
//! The connection commits with `synchronous = NORMAL`: a commit is in the WAL but not yet on
//! disk. [`Wal::sync`] makes it durable, and it may run on another thread while this connection
//! commits the next batch; whoever commits must not act on a commit before that.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};

use super::{
    AppendRow, CONTEST_STEP, CONTEST_UPSERT, CheckpointRow, INCIDENT_STEP, INCIDENT_UPSERT,
    RegistryTable, SideEffect, StoreError, WalState,
};

/// The writer's page cache: 16 MiB holds the pages commits touch (the right edges of the tables
/// and indexes, the per-agent index leaves), so they are not read back from the file. Larger
/// costs more than it saves: SQLite scans the cache's hash table at the end of transactions.
const CACHE_KIB: i64 = 16 * 1024;

/// The write-ahead log file of a database, whose fsync makes the writer's commits durable.
///
/// The descriptor is opened once, with the writer, and kept: a flush must never fail for want of
/// a descriptor when clients hold all the others. A kept descriptor alone would flush a WAL that
/// was removed or replaced (SQLite's commits then go to a file no restart reads) and report
/// success, so every flush first compares the path's device and inode with the descriptor's; a
/// `stat` takes no descriptor.
#[derive(Debug, Clone)]
pub struct Wal {
    path: PathBuf,
    file: std::sync::Arc<std::fs::File>,
    identity: (u64, u64),
}

/// Why a flush failed, and so whether a later one can be trusted.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    /// The WAL at the path is not the one being written: removed or replaced. Commits go to a
    /// file a restart will not read; only a restart (re-reading what is on disk) clears it.
    #[error("the write-ahead log {path} was removed or replaced; restart Reins")]
    Replaced { path: String },
    /// The fsync itself failed. The kernel may have dropped the pages it could not write, and a
    /// later fsync can succeed without them (what PostgreSQL learnt as "fsyncgate"), so no later
    /// flush proves these commits durable: only a restart clears it.
    #[error("cannot flush the write-ahead log {path} to disk: {source}; restart Reins")]
    Fsync {
        path: String,
        source: std::io::Error,
    },
    /// The check before the fsync failed; nothing was written or lost, a later flush can succeed.
    #[error("cannot check the write-ahead log {path}: {source}")]
    Check {
        path: String,
        source: std::io::Error,
    },
}

impl FlushError {
    /// Whether a later successful flush covers the commits this one did not.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Check { .. })
    }
}

fn identity_of(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

impl Wal {
    /// Opens the WAL of `database`, which must exist (the writer's connection creates it).
    pub fn open(database: &Path) -> Result<Self, StoreError> {
        let mut path = database.as_os_str().to_owned();
        path.push("-wal");
        let path = PathBuf::from(path);
        let sync_error = |e: std::io::Error| StoreError::Sync {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let file = std::fs::File::open(&path).map_err(sync_error)?;
        let identity = identity_of(&file.metadata().map_err(sync_error)?);
        Ok(Self {
            path,
            file: std::sync::Arc::new(file),
            identity,
        })
    }

    /// Makes every commit finished before this call durable. Blocks on the disk; commits made
    /// while it runs may or may not be covered.
    pub fn sync(&self) -> Result<(), FlushError> {
        let path = || self.path.display().to_string();
        match std::fs::metadata(&self.path) {
            Ok(meta) if identity_of(&meta) == self.identity => {}
            Ok(_) => return Err(FlushError::Replaced { path: path() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(FlushError::Replaced { path: path() });
            }
            Err(source) => {
                return Err(FlushError::Check {
                    path: path(),
                    source,
                });
            }
        }
        self.file.sync_data().map_err(|source| FlushError::Fsync {
            path: path(),
            source,
        })
    }
}

/// The database's only writer (see the module docs).
pub struct Writer {
    conn: Connection,
    wal: Wal,
}

impl Writer {
    /// Writes the probe row: a transaction that needs the disk to take a write, for the ledger to
    /// learn that writes work again after a commit failed with no decision waiting to try.
    pub fn probe(&mut self) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO ledger_probe (id, at) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET at = excluded.at",
            params![crate::timestamp::Timestamp::now()],
        )?;
        Ok(())
    }

    /// Opens the writing connection to an existing, migrated database.
    ///
    /// It does not checkpoint the WAL itself (`wal_autocheckpoint = 0`): a checkpoint copies and
    /// fsyncs megabytes, and inside a commit it would stall every decision waiting on that commit.
    /// The store's readers run it instead ([`super::Store::checkpoint_wal`]), and
    /// [`Writer::restart_wal`] finishes it when the WAL grows too long.
    pub fn open(database: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            database,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;
             PRAGMA temp_store = MEMORY; PRAGMA cache_size = -{CACHE_KIB}; PRAGMA wal_autocheckpoint = 0;"
        ))?;
        // Statements are cached per text; these are all there are, and the rare ones are cheap to
        // keep too.
        conn.set_prepared_statement_cache_capacity(32);
        // A read makes sure the WAL file exists before its descriptor is opened.
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
        let wal = Wal::open(database)?;
        Ok(Self { conn, wal })
    }

    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// Writes sequenced entries, their nodes and side effects, and checkpoints, in one
    /// transaction: all of it is in the WAL when this returns, or none of it (durable after
    /// [`Wal::sync`]).
    pub fn commit(
        &mut self,
        rows: &[AppendRow],
        checkpoints: &[CheckpointRow],
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut entry = tx.prepare_cached(
                "INSERT INTO ledger_entries (idx, kind, entry) VALUES (?1, ?2, ?3)",
            )?;
            let mut node = tx.prepare_cached(
                "INSERT INTO ledger_nodes (pos, level, idx, hash) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for row in rows {
                entry.execute(params![row.index as i64, row.kind, row.entry])?;
                for (id, hash) in &row.nodes {
                    node.execute(params![
                        id.position() as i64,
                        id.level,
                        id.index as i64,
                        &hash[..]
                    ])?;
                }
                write_side_effect(&tx, row)?;
            }
            let mut checkpoint = tx.prepare_cached(
                "INSERT INTO ledger_checkpoints (tree_size, root_hash, note, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tree_size) DO NOTHING",
            )?;
            for c in checkpoints {
                checkpoint.execute(params![c.tree_size, c.root_hash, c.note, c.created_at])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Copies the WAL into the database between two commits (`PRAGMA wal_checkpoint(PASSIVE)`
    /// from the writer): nothing can be appended meanwhile, so it copies the last frames too, and
    /// the next commit starts the WAL over from its beginning. A checkpoint from a reader never
    /// catches up with a writer that keeps committing; this does.
    pub fn restart_wal(&mut self) -> Result<WalState, StoreError> {
        let (_busy, frames, copied): (i64, i64, i64) =
            self.conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
        Ok(WalState {
            frames: frames.max(0) as u64,
            copied: copied.max(0) as u64,
        })
    }
}

/// A contest or incident step that did not land: another wrote a step first (checked before, so
/// this is a fault).
fn moved_on(what: &str, id: &str, version: i64, changed: usize) -> Result<(), StoreError> {
    if changed == 1 {
        return Ok(());
    }
    Err(StoreError::Corrupt(format!(
        "{what} {id} moved on before step {version} was written"
    )))
}

/// The state an entry records, written with it. Decisions are the common case and use cached
/// statements; the rest are administrative and rare.
// About 160 lines, kept as one: one arm per kind of state a ledger entry records, each a single
// statement on a cached prepared statement, so every table a commit can write is in one place.
fn write_side_effect(tx: &rusqlite::Transaction<'_>, row: &AppendRow) -> Result<(), StoreError> {
    match &row.side {
        SideEffect::None => {}
        SideEffect::Decision { row: d, salts } => {
            tx.prepare_cached(
                "INSERT INTO decisions (id, agent_id, on_behalf_of, action, resource_type, resource_id, decision,
                                        policy_digest, evaluated_at, extra, ledger_index, leaf_hash,
                                        idempotency_key, request_digest)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?
            .execute(params![
                d.id,
                d.agent_id,
                d.on_behalf_of,
                d.action,
                d.resource_type,
                d.resource_id,
                d.decision,
                d.policy_digest,
                d.evaluated_at,
                d.extra,
                row.index as i64,
                row.nodes.first().map(|(_, h)| &h[..]),
                d.idempotency_key,
                d.request_digest,
            ])?;
            if !salts.is_empty() {
                let mut salt = tx.prepare_cached(
                    "INSERT INTO ledger_salts (decision_id, pointer, salt) VALUES (?1, ?2, ?3)",
                )?;
                for (pointer, value) in salts {
                    salt.execute(params![d.id, pointer, value])?;
                }
            }
            if let Some(undone) = &d.compensates {
                tx.prepare_cached(
                    "INSERT INTO decision_compensations (decision_id, compensates) VALUES (?1, ?2)",
                )?
                .execute(params![d.id, undone])?;
            }
        }
        SideEffect::Registry { table, row: r } => {
            let sql = match table {
                RegistryTable::Agents => {
                    "INSERT INTO agents (id, version, record, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (id) DO UPDATE SET version = excluded.version, record = excluded.record, updated_at = excluded.updated_at"
                }
                RegistryTable::Tools => {
                    "INSERT INTO tools (id, version, record, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (id) DO UPDATE SET version = excluded.version, record = excluded.record, updated_at = excluded.updated_at"
                }
            };
            tx.execute(
                sql,
                params![r.id, r.version, r.record, r.created_at, r.updated_at],
            )?;
        }
        SideEffect::Approval(a) => {
            tx.execute(
                "INSERT INTO approvals (id, status, agent_id, action, resource_type, resource_id, context_digest, approver_group,
                                        policy_ids, evaluation_id, requested_at, expires_at, decided_by, decided_at, comment,
                                        used_at, used_decision_id, on_behalf_of)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status, decided_by = excluded.decided_by,
                     decided_at = excluded.decided_at, comment = excluded.comment, used_at = excluded.used_at,
                     used_decision_id = excluded.used_decision_id",
                params![
                    a.id,
                    a.status,
                    a.agent_id,
                    a.action,
                    a.resource_type,
                    a.resource_id,
                    a.context_digest,
                    a.approver_group,
                    a.policy_ids,
                    a.evaluation_id,
                    a.requested_at,
                    a.expires_at,
                    a.decided_by,
                    a.decided_at,
                    a.comment,
                    a.used_at,
                    a.used_decision_id,
                    a.on_behalf_of,
                ],
            )?;
        }
        SideEffect::PolicyText(p) => {
            tx.execute(
                "INSERT INTO policy_texts (digest, files, schema_text, first_seen) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (digest) DO NOTHING",
                params![p.digest, p.files, p.schema_text, p.first_seen],
            )?;
        }
        SideEffect::PolicyVersion {
            row: v,
            schema_text,
        } => {
            tx.execute(
                "INSERT INTO policy_versions (id, store, digest, schema_digest, files, author, created_at, state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    v.id,
                    v.store,
                    v.digest,
                    v.schema_digest,
                    v.files,
                    v.author,
                    v.created_at,
                    v.state
                ],
            )?;
            tx.execute(
                "INSERT INTO policy_texts (digest, files, schema_text, first_seen) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (digest) DO NOTHING",
                params![v.digest, v.files, schema_text, v.created_at],
            )?;
        }
        SideEffect::PolicyActivation { store, version } => {
            tx.execute(
                "UPDATE policy_versions SET state = 'draft' WHERE store = ?1 AND state = 'active'",
                [store],
            )?;
            tx.execute(
                "UPDATE policy_versions SET state = 'active' WHERE id = ?1",
                [version],
            )?;
        }
        SideEffect::PolicyShadow { store, version } => {
            tx.execute(
                "UPDATE policy_versions SET state = 'draft' WHERE store = ?1 AND state = 'shadow'",
                [store],
            )?;
            tx.execute(
                "UPDATE policy_versions SET state = 'shadow' WHERE id = ?1",
                [version],
            )?;
        }
        SideEffect::PolicyRetirement { version } => {
            tx.execute(
                "UPDATE policy_versions SET state = 'retired' WHERE id = ?1",
                [version],
            )?;
        }
        // A step is written only over the step before it (`version - 1`); the first inserts.
        SideEffect::Contest(c) => {
            let changed = tx
                .prepare_cached(&format!(
                    "{CONTEST_UPSERT} ON CONFLICT (id) DO UPDATE SET {CONTEST_STEP}"
                ))?
                .execute(params![
                    c.id,
                    c.decision_id,
                    c.version,
                    c.status,
                    c.statement,
                    c.raised_by,
                    c.contested_by,
                    c.contested_at,
                    c.comment,
                    c.resolved_by,
                    c.resolved_at
                ])?;
            moved_on("contest", &c.id, c.version, changed)?;
        }
        SideEffect::Incident(i) => {
            let changed = tx
                .prepare_cached(&format!(
                    "{INCIDENT_UPSERT} ON CONFLICT (id) DO UPDATE SET {INCIDENT_STEP}"
                ))?
                .execute(params![
                    i.id,
                    i.version,
                    i.severity,
                    i.widespread,
                    i.summary,
                    i.aware_at,
                    i.deadline,
                    i.status,
                    i.agents,
                    i.decisions,
                    i.killswitches,
                    i.opened_by,
                    i.opened_at,
                    i.reported_at,
                    i.authority,
                    i.reference,
                    i.closed_at
                ])?;
            moved_on("incident", &i.id, i.version, changed)?;
        }
        SideEffect::ConsoleLink { link, used_at } => {
            tx.execute(
                "INSERT INTO console_links (link, used_at) VALUES (?1, ?2)",
                params![link, used_at],
            )?;
        }
        SideEffect::ConsoleSignOut { session, at } => {
            tx.execute(
                "INSERT INTO console_sign_outs (session, at) VALUES (?1, ?2) ON CONFLICT (session) DO NOTHING",
                params![session, at],
            )?;
        }
        SideEffect::Outcome(o) => {
            tx.execute(
                "INSERT INTO decision_outcomes (decision_id, agent_id, status, summary, result_sha256, completed_at,
                                                reported_by, recorded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    o.decision_id,
                    o.agent_id,
                    o.status,
                    o.summary,
                    o.result_sha256,
                    o.completed_at,
                    o.reported_by,
                    o.recorded_at
                ],
            )?;
        }
        SideEffect::KillSwitch(k) => {
            tx.execute(
                "INSERT INTO killswitches (id, scope_agent, scope_tool, scope_action, reason, drill, engaged_by, engaged_at,
                                           released_by, released_at, release_reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (id) DO UPDATE SET released_by = excluded.released_by, released_at = excluded.released_at,
                                                release_reason = excluded.release_reason",
                params![
                    k.id,
                    k.scope_agent,
                    k.scope_tool,
                    k.scope_action,
                    k.reason,
                    k.drill,
                    k.engaged_by,
                    k.engaged_at,
                    k.released_by,
                    k.released_at,
                    k.release_reason,
                ],
            )?;
        }
    }
    Ok(())
}
