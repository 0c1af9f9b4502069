//! Durable state in SQL: the registry tables, the decisions, the ledger's rows.
//!
//! SQLite is the embedded default, in WAL mode. Reads go through sqlx's pool ([`Store`]); every
//! write goes through the one [`Writer`], a synchronous connection that the ledger drives from its
//! own thread. The writer commits with `synchronous = NORMAL`, and the ledger makes each commit
//! durable with [`Wal::sync`] (an fsync of the WAL file) before anyone is told about it, so a
//! decision that was answered survives a crash or power loss; doing that fsync outside the writer
//! lets the next commit proceed while the disk flushes. Queries are kept portable for the planned
//! PostgreSQL backend. This module knows rows, not rules: validation lives in [`crate::registry`]
//! and [`crate::decision`].

mod lock;
mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, SqlitePool};

use crate::ids::{AgentId, DecisionId};
use crate::tlog::merkle::{Hash, NodeId};

pub use lock::{DataDirLock, LockError};
pub use writer::{FlushError, Wal, Writer};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// From the writing connection ([`Writer`]).
    #[error("database: {0}")]
    Write(#[from] rusqlite::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("the database was opened read-only: it has no writer")]
    ReadOnly,
    #[error("cannot flush the write-ahead log {path} to disk: {message}")]
    Sync { path: String, message: String },
}

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
    pub created_at: String,
    pub updated_at: String,
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
    pub evaluated_at: String,
    pub ledger_index: Option<i64>,
    pub leaf_hash: Option<Vec<u8>>,
    /// JSON of the answer's fields that are not in the ledger entry, when it has any.
    pub extra: Option<String>,
    /// The request and answer as JSON, only on rows written before the ledger held them.
    pub request: Option<String>,
    pub response: Option<String>,
    /// The ledger entry's bytes (reads only; never written through this row).
    pub entry: Option<Vec<u8>>,
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
    pub created_at: String,
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
    pub engaged_at: String,
    pub released_by: Option<String>,
    pub released_at: Option<String>,
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
    pub requested_at: String,
    pub expires_at: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub comment: Option<String>,
    pub used_at: Option<String>,
    pub used_decision_id: Option<String>,
}

/// A decision row with its ledger entry, which holds the request and the answer.
const DECISION_SELECT: &str = "SELECT d.id, d.agent_id, d.on_behalf_of, d.action, d.resource_type, d.resource_id,
    d.decision, d.policy_digest, d.evaluated_at, d.ledger_index, d.leaf_hash, d.extra, d.request, d.response, e.entry
    FROM decisions d LEFT JOIN ledger_entries e ON e.idx = d.ledger_index";

const APPROVAL_COLUMNS: &str = "id, status, agent_id, on_behalf_of, action, resource_type, resource_id, context_digest, approver_group, policy_ids,
    evaluation_id, requested_at, expires_at, decided_by, decided_at, comment, used_at, used_decision_id";

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
    pub created_at: String,
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

#[derive(Clone)]
pub struct Store {
    /// Reads, from several connections. Writes go through the one [`Writer`].
    pool: SqlitePool,
    /// The database file (None when read-only: there is no writer).
    path: Option<PathBuf>,
}

impl Store {
    /// Opens (creating if missing) the SQLite database at `path` and runs the migrations. Writes
    /// then go through [`Store::writer`].
    ///
    /// The readers commit with `synchronous = FULL`, so the migrations are durable when this
    /// returns, and their checkpoints ([`Store::checkpoint_wal`]) fsync the WAL before copying it
    /// and the database after.
    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            .pragma("temp_store", "memory");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        // The WAL file may be new: make its directory entry durable before anything is written.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            sync_file(dir)?;
        }
        Ok(Self {
            pool,
            path: Some(path.to_owned()),
        })
    }

    /// Opens the database's writing connection, for the ledger's thread: there must be only one
    /// (SQLite has a single writer; a second would wait on the first's lock at every commit).
    pub fn writer(&self) -> Result<Writer, StoreError> {
        match &self.path {
            Some(path) => Writer::open(path),
            None => Err(StoreError::ReadOnly),
        }
    }

    /// Copies committed WAL frames into the database file without blocking the writer
    /// (`PRAGMA wal_checkpoint(PASSIVE)`), and says how long the WAL is.
    pub async fn checkpoint_wal(&self) -> Result<WalState, StoreError> {
        // fetch_all, not fetch_one: a statement left before its end keeps a read transaction
        // open, and SQLite cannot start the WAL over while any connection reads from it.
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_all(&self.pool)
            .await?;
        let (_busy, frames, copied) = rows.first().copied().unwrap_or((0, 0, 0));
        Ok(WalState {
            frames: frames.max(0) as u64,
            copied: copied.max(0) as u64,
        })
    }

    /// Opens an existing database without writing to it (no migrations): for verification.
    pub async fn open_sqlite_read_only(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            return Err(StoreError::Corrupt(format!(
                "{} does not exist",
                path.display()
            )));
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await?;
        Ok(Self { pool, path: None })
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn registry_rows(
        &self,
        table: RegistryTable,
    ) -> Result<Vec<RegistryRow>, StoreError> {
        let sql = match table {
            RegistryTable::Agents => {
                "SELECT id, version, record, created_at, updated_at FROM agents ORDER BY id"
            }
            RegistryTable::Tools => {
                "SELECT id, version, record, created_at, updated_at FROM tools ORDER BY id"
            }
        };
        Ok(sqlx::query_as(sql).fetch_all(&self.pool).await?)
    }

    pub async fn approval(&self, id: &str) -> Result<Option<ApprovalRow>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = $1"
        ));
        Ok(sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Approvals, newest first, optionally with one status.
    pub async fn approvals(
        &self,
        status: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ApprovalRow>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE ($1 IS NULL OR status = $1) ORDER BY id DESC LIMIT $2"
        ));
        Ok(sqlx::query_as(sql)
            .bind(status)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?)
    }

    /// Every kill switch, oldest first.
    pub async fn killswitches(&self) -> Result<Vec<KillSwitchRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, scope_agent, scope_tool, scope_action, reason, drill, engaged_by, engaged_at, released_by, released_at, release_reason
             FROM killswitches ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn killswitch(&self, id: &str) -> Result<Option<KillSwitchRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, scope_agent, scope_tool, scope_action, reason, drill, engaged_by, engaged_at, released_by, released_at, release_reason
             FROM killswitches WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Number of entries in the ledger.
    pub async fn ledger_size(&self) -> Result<u64, StoreError> {
        let (size,): (i64,) =
            sqlx::query_as("SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_entries")
                .fetch_one(&self.pool)
                .await?;
        Ok(size as u64)
    }

    /// Stored node hashes, in the order asked, read in one query. A missing node is an error: the
    /// tree is damaged.
    pub async fn nodes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "SELECT pos, hash FROM ledger_nodes WHERE pos IN (",
        );
        let mut list = query.separated(", ");
        for id in ids {
            list.push_bind(sql_int(id.position()));
        }
        query.push(")");
        let rows: Vec<(i64, Vec<u8>)> = query.build_query_as().fetch_all(&self.pool).await?;
        let found: std::collections::HashMap<i64, Vec<u8>> = rows.into_iter().collect();
        ids.iter()
            .map(|id| {
                found
                    .get(&sql_int(id.position()))
                    .and_then(|h| Hash::try_from(h.as_slice()).ok())
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "ledger node level {} index {} is missing or malformed",
                            id.level, id.index
                        ))
                    })
            })
            .collect()
    }

    /// Stored nodes of one level with indices in `[lo, hi)`, in order.
    pub async fn nodes_at_level(
        &self,
        level: u8,
        lo: u64,
        hi: u64,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        if lo >= hi {
            return Ok(Vec::new());
        }
        // Within a level, positions grow with the index: scan the positions from the first node
        // to the last and keep that level's.
        let first = NodeId { level, index: lo }.position();
        let last = NodeId {
            level,
            index: hi - 1,
        }
        .position();
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT idx, hash FROM ledger_nodes WHERE pos >= $1 AND pos <= $2 AND level = $3 ORDER BY pos",
        )
        .bind(sql_int(first))
        .bind(sql_int(last))
        .bind(i64::from(level))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(i, h)| (i as u64, h)).collect())
    }

    /// Entries with indices in `[start, end)`, in order.
    pub async fn entries(&self, start: u64, end: u64) -> Result<Vec<EntryRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT idx, kind, entry FROM ledger_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
        )
        .bind(sql_int(start))
        .bind(sql_int(end))
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn latest_checkpoint(&self) -> Result<Option<CheckpointRow>, StoreError> {
        Ok(sqlx::query_as("SELECT tree_size, root_hash, note, created_at FROM ledger_checkpoints ORDER BY tree_size DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The first checkpoint signed for a tree larger than `size`.
    pub async fn first_checkpoint_above(
        &self,
        size: u64,
    ) -> Result<Option<CheckpointRow>, StoreError> {
        Ok(sqlx::query_as("SELECT tree_size, root_hash, note, created_at FROM ledger_checkpoints WHERE tree_size > $1 ORDER BY tree_size LIMIT 1")
            .bind(sql_int(size))
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Every checkpoint, smallest tree first.
    pub async fn checkpoints(&self) -> Result<Vec<CheckpointRow>, StoreError> {
        Ok(sqlx::query_as("SELECT tree_size, root_hash, note, created_at FROM ledger_checkpoints ORDER BY tree_size").fetch_all(&self.pool).await?)
    }

    /// The salt that masked `pointer` in a decision's context.
    pub async fn salt(
        &self,
        decision: &DecisionId,
        pointer: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let row: Option<(Vec<u8>,)> =
            sqlx::query_as("SELECT salt FROM ledger_salts WHERE decision_id = $1 AND pointer = $2")
                .bind(decision.to_string())
                .bind(pointer)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(s,)| s))
    }

    pub async fn decision(&self, id: &DecisionId) -> Result<Option<DecisionRow>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{DECISION_SELECT} WHERE d.id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Newest first; `before` pages backwards from a decision id.
    pub async fn decisions(
        &self,
        agent: Option<&AgentId>,
        before: Option<&DecisionId>,
        limit: u32,
    ) -> Result<Vec<DecisionRow>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{DECISION_SELECT} WHERE ($1 IS NULL OR d.agent_id = $1) AND ($2 IS NULL OR d.id < $2)
             ORDER BY d.id DESC LIMIT $3"
        )))
        .bind(agent.map(AgentId::as_str))
        .bind(before.map(DecisionId::to_string))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Ledger entries of the given kinds, in index order, through the kind index. That index
    /// leaves out decisions (they are most entries, and read through `decisions`), so asking for
    /// the `decision` kind here finds nothing.
    pub async fn entries_of_kinds(&self, kinds: &[&str]) -> Result<Vec<EntryRow>, StoreError> {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "SELECT idx, kind, entry FROM ledger_entries WHERE kind <> 'decision' AND kind IN (",
        );
        let mut list = q.separated(", ");
        for kind in kinds {
            list.push_bind(*kind);
        }
        q.push(") ORDER BY idx");
        Ok(q.build_query_as().fetch_all(&self.pool).await?)
    }

    /// How many decisions `agent` got in `[from, to)` (RFC 3339; compared as times, since stored
    /// times drop trailing fractional zeros and so do not sort as strings).
    pub async fn decision_counts(
        &self,
        agent: &AgentId,
        from: &str,
        to: &str,
    ) -> Result<DecisionCounts, StoreError> {
        let row: (i64, i64, i64, Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT COALESCE(SUM(decision = 'allow'), 0), COALESCE(SUM(decision = 'deny'), 0),
                    COALESCE(SUM(ledger_index IS NULL), 0), MIN(ledger_index), MAX(ledger_index)
             FROM decisions WHERE agent_id = $1
               AND julianday(evaluated_at) >= julianday($2) AND julianday(evaluated_at) < julianday($3)",
        )
        .bind(agent.as_str())
        .bind(from)
        .bind(to)
        .fetch_one(&self.pool)
        .await?;
        Ok(DecisionCounts {
            allow: row.0 as u64,
            deny: row.1 as u64,
            unrecorded: row.2 as u64,
            first_index: row.3.map(|i| i as u64),
            last_index: row.4.map(|i| i as u64),
        })
    }

    /// Every decision made in `[from, to)` (RFC 3339), in ledger order.
    pub async fn decisions_in(&self, from: &str, to: &str) -> Result<Vec<DecisionRow>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{DECISION_SELECT}
             WHERE julianday(d.evaluated_at) >= julianday($1) AND julianday(d.evaluated_at) < julianday($2)
             ORDER BY d.ledger_index"
        )))
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Indices of the decision entries in `[start, end)` concerning `agent`.
    pub async fn decision_indices(
        &self,
        agent: &AgentId,
        start: u64,
        end: u64,
    ) -> Result<Vec<u64>, StoreError> {
        let rows: Vec<(i64,)> = sqlx::query_as(
            "SELECT ledger_index FROM decisions
             WHERE agent_id = $1 AND ledger_index >= $2 AND ledger_index < $3 ORDER BY ledger_index",
        )
        .bind(agent.as_str())
        .bind(sql_int(start))
        .bind(sql_int(end))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(i,)| i as u64).collect())
    }

    /// Rows in the ledger table: equal to the tree size unless something was deleted.
    pub async fn entry_count(&self) -> Result<u64, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM ledger_entries")
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    /// Every approval of `agent`, oldest first.
    pub async fn approvals_of(&self, agent: &AgentId) -> Result<Vec<ApprovalRow>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE agent_id = $1 ORDER BY requested_at, id"
        ));
        Ok(sqlx::query_as(sql)
            .bind(agent.as_str())
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn policy_version(&self, id: &str) -> Result<Option<PolicyVersionRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, store, digest, schema_digest, files, author, created_at, state FROM policy_versions WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn policy_version_by_digest(
        &self,
        store: &str,
        digest: &str,
    ) -> Result<Option<PolicyVersionRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, store, digest, schema_digest, files, author, created_at, state FROM policy_versions
             WHERE store = $1 AND digest = $2",
        )
        .bind(store)
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// A store's versions, oldest first.
    pub async fn policy_versions(&self, store: &str) -> Result<Vec<PolicyVersionRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, store, digest, schema_digest, files, author, created_at, state FROM policy_versions
             WHERE store = $1 ORDER BY id",
        )
        .bind(store)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn shadow_policy_version(
        &self,
        store: &str,
    ) -> Result<Option<PolicyVersionRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, store, digest, schema_digest, files, author, created_at, state FROM policy_versions
             WHERE store = $1 AND state = 'shadow'",
        )
        .bind(store)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn active_policy_version(
        &self,
        store: &str,
    ) -> Result<Option<PolicyVersionRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, store, digest, schema_digest, files, author, created_at, state FROM policy_versions
             WHERE store = $1 AND state = 'active'",
        )
        .bind(store)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn policy_text(&self, digest: &str) -> Result<Option<PolicyTextRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT digest, files, schema_text, first_seen FROM policy_texts WHERE digest = $1",
        )
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?)
    }
}

/// fsync of a file or directory. The file is opened anew each time, so that it is always the
/// file now at `path` (SQLite may delete and recreate the WAL when the last connection closes).
fn sync_file(path: &Path) -> Result<(), StoreError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_data())
        .map_err(|e| StoreError::Sync {
            path: path.display().to_string(),
            message: e.to_string(),
        })
}

/// A ledger index, size or position as SQLite's signed integer. Stored values are all below
/// 2^63, so one at or above it is clamped to `i64::MAX`: a range bound then still means "all of
/// them" and a lookup finds nothing, where `as i64` wrapped 2^64-1 to -1 and found entry 0's
/// neighbours.
pub fn sql_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Now, as stored and answered: RFC 3339 in UTC with millisecond precision.
pub fn now() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now
        .replace_nanosecond(now.millisecond() as u32 * 1_000_000)
        .unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::SqlitePoolOptions;

    use crate::tlog::merkle::{Frontier, NodeId, leaf_hash};

    /// A one-connection in-memory database with `schema`, the tables as they were before a
    /// migration.
    async fn database_with(schema: &'static str) -> sqlx::SqlitePool {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::raw_sql(schema).execute(&pool).await.unwrap();
        pool
    }

    async fn migrate(pool: &sqlx::SqlitePool, migration: &'static str) {
        sqlx::raw_sql(migration).execute(pool).await.unwrap();
    }

    /// Migration 0009 drops the copies of request and answer that the ledger entry holds, keeping
    /// what the entry lacks; a row without a ledger entry keeps its copies.
    #[tokio::test]
    async fn migration_0009_keeps_what_the_ledger_entry_lacks() {
        let pool = database_with(
            "CREATE TABLE decisions (id TEXT PRIMARY KEY NOT NULL, agent_id TEXT NOT NULL, on_behalf_of TEXT,
                 action TEXT NOT NULL, resource_type TEXT NOT NULL, resource_id TEXT NOT NULL, decision TEXT NOT NULL,
                 policy_digest TEXT, evaluated_at TEXT NOT NULL, request TEXT NOT NULL, response TEXT NOT NULL,
                 ledger_index BIGINT, leaf_hash BLOB);
             CREATE INDEX decisions_by_agent ON decisions (agent_id, id);",
        )
        .await;
        let response = |extra: &str| {
            format!(
                r#"{{"decision_id":"x","decision":"deny","reasons":[],"errors":[],"policy_digest":null,"evaluated_at":"t"{extra}}}"#
            )
        };
        let rows = [
            (
                "a",
                Some(7),
                response(
                    r#","trace_id":"abc","evaluation_id":"e-1","access_request":{"approval_id":"p","endpoint":"/v1/approvals/p","expires_at":"u"}"#,
                ),
            ),
            ("b", Some(8), response("")),
            ("c", None, response(r#","trace_id":"old""#)),
        ];
        for (id, index, response) in &rows {
            sqlx::query(
                "INSERT INTO decisions VALUES ($1, 'bot', NULL, 'invoke', 'Tool', 't', 'deny', NULL, 't', '{}', $2, $3, x'00')",
            )
            .bind(id)
            .bind(response)
            .bind(index)
            .execute(&pool)
            .await
            .unwrap();
        }
        migrate(
            &pool,
            include_str!("../migrations/sqlite/0009_decisions_from_the_ledger.sql"),
        )
        .await;
        type Row = (String, Option<String>, Option<String>, Option<String>);
        let stored: Vec<Row> =
            sqlx::query_as("SELECT id, extra, request, response FROM decisions ORDER BY id")
                .fetch_all(&pool)
                .await
                .unwrap();
        let extra: serde_json::Value =
            serde_json::from_str(stored[0].1.as_deref().unwrap()).unwrap();
        assert_eq!(
            extra,
            serde_json::json!({"trace_id": "abc", "evaluation_id": "e-1",
                "access_request": {"approval_id": "p", "endpoint": "/v1/approvals/p", "expires_at": "u"}})
        );
        assert_eq!((&stored[0].2, &stored[0].3), (&None, &None));
        assert_eq!(stored[1], ("b".into(), None, None, None));
        assert_eq!(stored[2].1, None);
        assert_eq!(stored[2].2.as_deref(), Some("{}"));
        assert_eq!(stored[2].3.as_deref(), Some(rows[2].2.as_str()));
    }

    /// Migration 0008 computes the positions of the nodes already stored in SQL, which has no
    /// popcount: they must equal `NodeId::position`, for small trees and for far-out indices.
    #[tokio::test]
    async fn migration_0008_keys_stored_nodes_by_their_position() {
        let pool = database_with(
            "CREATE TABLE ledger_nodes (level INTEGER NOT NULL, idx BIGINT NOT NULL, hash BLOB NOT NULL,
                                        PRIMARY KEY (level, idx)) WITHOUT ROWID",
        )
        .await;
        let mut nodes = Vec::new();
        let mut frontier = Frontier::default();
        for i in 0..3000u64 {
            nodes.extend(frontier.append(leaf_hash(&i.to_be_bytes())));
        }
        for (level, index) in [(0, (1 << 40) + 12_345), (5, 987_654_321), (39, 1)] {
            nodes.push((NodeId { level, index }, [level; 32]));
        }
        for (node, hash) in &nodes {
            sqlx::query("INSERT INTO ledger_nodes (level, idx, hash) VALUES ($1, $2, $3)")
                .bind(i64::from(node.level))
                .bind(node.index as i64)
                .bind(hash.to_vec())
                .execute(&pool)
                .await
                .unwrap();
        }
        migrate(
            &pool,
            include_str!("../migrations/sqlite/0008_ledger_nodes_by_position.sql"),
        )
        .await;
        let mut expected: Vec<(i64, i64, i64, Vec<u8>)> = nodes
            .iter()
            .map(|(n, h)| {
                (
                    n.position() as i64,
                    i64::from(n.level),
                    n.index as i64,
                    h.to_vec(),
                )
            })
            .collect();
        expected.sort();
        let stored: Vec<(i64, i64, i64, Vec<u8>)> =
            sqlx::query_as("SELECT pos, level, idx, hash FROM ledger_nodes ORDER BY pos")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(stored, expected);
    }

    /// A commit is one transaction: when any row of it fails, none of it is written, and the
    /// writer goes on committing after.
    #[tokio::test]
    async fn a_failed_commit_writes_nothing_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::Store::open_sqlite(&dir.path().join("reins.db"))
            .await
            .unwrap();
        let mut writer = store.writer().unwrap();
        let mut frontier = Frontier::default();
        let mut row = |entry: &str| {
            let leaf = leaf_hash(entry.as_bytes());
            let index = frontier.size();
            super::AppendRow {
                index,
                kind: "test",
                entry: entry.as_bytes().to_vec(),
                nodes: frontier.append(leaf),
                side: super::SideEffect::None,
            }
        };
        let first = row("{\"n\":0}");
        writer.commit(&[first], &[]).unwrap();

        // The second row reuses an index: the first row of the batch must not stay behind.
        let ok = row("{\"n\":1}");
        let mut clash = ok.clone();
        clash.nodes.clear();
        assert!(writer.commit(&[ok.clone(), clash], &[]).is_err());
        assert_eq!(store.ledger_size().await.unwrap(), 1);
        assert!(store.nodes(&[NodeId { level: 0, index: 1 }]).await.is_err());

        writer.commit(std::slice::from_ref(&ok), &[]).unwrap();
        writer.wal().sync().unwrap();
        assert_eq!(store.ledger_size().await.unwrap(), 2);
        let (root, hash) = ok.nodes[1];
        assert_eq!(store.nodes(&[root]).await.unwrap(), [hash]);
    }

    /// Only one writer: a store opened read-only has none to give.
    #[tokio::test]
    async fn a_read_only_store_has_no_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reins.db");
        super::Store::open_sqlite(&path)
            .await
            .unwrap()
            .close()
            .await;
        let store = super::Store::open_sqlite_read_only(&path).await.unwrap();
        let error = store.writer().err().expect("no writer").to_string();
        assert!(error.contains("read-only"), "{error}");
    }
}
