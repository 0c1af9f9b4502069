//! Durable state in SQL: the registry tables, the decisions, the ledger's rows.
//!
//! Two databases, one set of reads: SQLite, the embedded default of one server, or PostgreSQL,
//! shared by replicas ([`Backend`]). Reads go through sqlx's pool ([`Store`]) with query texts
//! both run. Writes differ, because what makes them safe differs: on SQLite every write goes
//! through the one [`Writer`], a synchronous connection that the ledger drives from its own
//! thread; on PostgreSQL, through [`shared`], the statements that sequence a batch against the
//! shared counter row and integrate the tree under a row lock.
//!
//! On SQLite: The writer commits with `synchronous = NORMAL`, and the ledger makes each commit
//! durable with [`Wal::sync`] (an fsync of the WAL file) before anyone is told about it, so a
//! decision that was answered survives a crash or power loss; doing that fsync outside the writer
//! lets the next commit proceed while the disk flushes. This module knows rows, not rules: validation lives in [`crate::registry`]
//! and [`crate::decision`].

mod lock;
mod reads;
mod rows;
pub mod shared;
mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::config::DatabaseUrl;

use crate::ids::{AgentId, DecisionId};
use crate::tlog::merkle::{Hash, NodeId};

pub use lock::{DataDirLock, LockError};
pub use rows::*;
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

/// Runs `$body` with `$pool` bound to the store's pool, whichever database it is: the query text
/// is the same for both, sqlx's types differ.
macro_rules! on_db {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.db {
            Db::Sqlite($pool) => $body,
            Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_db;

/// The database behind a [`Store`].
#[derive(Clone)]
enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Which database holds the state: one server's SQLite file, or PostgreSQL shared by replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    /// Reads, from several connections. On SQLite, writes go through the one [`Writer`]; on
    /// PostgreSQL, through the ledger's batcher on the same pool ([`Store::postgres`]).
    db: Db,
    /// The SQLite file (None when read-only, or on PostgreSQL: there is no [`Writer`]).
    path: Option<PathBuf>,
}

impl Store {
    /// Opens the database a configuration names, creating and migrating it.
    pub async fn open(url: &DatabaseUrl, max_connections: u32) -> Result<Self, StoreError> {
        match url {
            DatabaseUrl::Sqlite(path) => Self::open_sqlite(path).await,
            DatabaseUrl::Postgres(url) => Self::open_postgres(url, max_connections).await,
        }
    }

    /// Opens an existing database without migrating it, for reading (verification, exports).
    pub async fn open_read_only(url: &DatabaseUrl) -> Result<Self, StoreError> {
        match url {
            DatabaseUrl::Sqlite(path) => Self::open_sqlite_read_only(path).await,
            DatabaseUrl::Postgres(url) => {
                let pool = pg_options(2).connect(url).await?;
                Ok(Self {
                    db: Db::Postgres(pool),
                    path: None,
                })
            }
        }
    }

    /// Connects to PostgreSQL and runs its migrations (sqlx holds an advisory lock meanwhile, so
    /// replicas starting together migrate once).
    pub async fn open_postgres(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let pool = pg_options(max_connections).connect(url).await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            db: Db::Postgres(pool),
            path: None,
        })
    }

    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// The PostgreSQL pool, for the shared ledger's statements (None on SQLite).
    pub fn postgres(&self) -> Option<&PgPool> {
        match &self.db {
            Db::Postgres(pool) => Some(pool),
            Db::Sqlite(_) => None,
        }
    }

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
            db: Db::Sqlite(pool),
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
    /// (`PRAGMA wal_checkpoint(PASSIVE)`), and says how long the WAL is. Nothing to do on
    /// PostgreSQL.
    pub async fn checkpoint_wal(&self) -> Result<WalState, StoreError> {
        let Db::Sqlite(pool) = &self.db else {
            return Ok(WalState {
                frames: 0,
                copied: 0,
            });
        };
        // fetch_all, not fetch_one: a statement left before its end keeps a read transaction
        // open, and SQLite cannot start the WAL over while any connection reads from it.
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_all(pool)
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
        Ok(Self {
            db: Db::Sqlite(pool),
            path: None,
        })
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_db!(self, |pool| sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    pub async fn close(&self) {
        on_db!(self, |pool| pool.close().await)
    }
}

/// PostgreSQL pool options: statements wait at most 5 s for a connection, and every connection
/// commits synchronously (an answered decision is on the primary's disk).
fn pg_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
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
            include_str!("../../migrations/sqlite/0009_decisions_from_the_ledger.sql"),
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
            include_str!("../../migrations/sqlite/0008_ledger_nodes_by_position.sql"),
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

    /// Migration 0014 rewrites every stored time to `Timestamp`'s fixed width, so that text order
    /// is time order; the instants do not change and `Timestamp` reads every result.
    #[tokio::test]
    async fn migration_0014_gives_every_stored_time_one_width() {
        let pool = database_with(
            "CREATE TABLE agents (created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
             CREATE TABLE tools (created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
             CREATE TABLE decisions (evaluated_at TEXT NOT NULL);
             CREATE TABLE ledger_checkpoints (created_at TEXT NOT NULL);
             CREATE TABLE killswitches (engaged_at TEXT NOT NULL, released_at TEXT);
             CREATE TABLE approvals (requested_at TEXT NOT NULL, expires_at TEXT NOT NULL,
                                     decided_at TEXT, used_at TEXT);
             CREATE TABLE policy_versions (created_at TEXT NOT NULL);",
        )
        .await;
        let written = [
            "2026-11-21T00:00:20Z",
            "2026-11-21T00:00:20.5Z",
            "2026-11-21T00:00:20.360129587Z",
            "2026-11-21T00:00:20.36Z",
            "2026-11-21T01:00:21+01:00",
        ];
        for t in written {
            sqlx::query("INSERT INTO decisions (evaluated_at) VALUES ($1)")
                .bind(t)
                .execute(&pool)
                .await
                .unwrap();
        }
        sqlx::query("INSERT INTO killswitches VALUES ('2026-11-21T00:00:01Z', NULL)")
            .execute(&pool)
            .await
            .unwrap();
        migrate(
            &pool,
            include_str!("../../migrations/sqlite/0014_fixed_width_times.sql"),
        )
        .await;
        let stored: Vec<(String,)> =
            sqlx::query_as("SELECT evaluated_at FROM decisions ORDER BY rowid")
                .fetch_all(&pool)
                .await
                .unwrap();
        let stored: Vec<String> = stored.into_iter().map(|r| r.0).collect();
        assert_eq!(
            stored,
            [
                "2026-11-21T00:00:20.000Z",
                "2026-11-21T00:00:20.500Z",
                "2026-11-21T00:00:20.360Z",
                "2026-11-21T00:00:20.360Z",
                "2026-11-21T00:00:21.000Z",
            ]
        );
        for (before, after) in written.iter().zip(&stored) {
            let before = crate::timestamp::Timestamp::parse(before).unwrap();
            assert_eq!(before.to_string(), *after);
        }
        let switch: (String, Option<String>) =
            sqlx::query_as("SELECT engaged_at, released_at FROM killswitches")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(switch, ("2026-11-21T00:00:01.000Z".into(), None));
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
