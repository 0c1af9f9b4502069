//! Durable state in SQL through sqlx: the registry tables and the decisions.
//!
//! SQLite is the embedded default (WAL, `synchronous = FULL`, so a committed decision survives a
//! crash or power loss). The SQL is kept portable for the PostgreSQL backend. This module knows rows,
//! not rules: validation lives in [`crate::registry`] and [`crate::decision`].

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, SqlitePool};

use crate::ids::{AgentId, DecisionId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
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

/// A decision as stored.
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
    pub request: String,
    pub response: String,
}

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if missing) the SQLite database at `path` and runs the migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
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

    /// Inserts or replaces a registry record, bumping its version. Returns the stored row.
    pub async fn upsert_registry(
        &self,
        table: RegistryTable,
        id: &str,
        record: &str,
        now: &str,
    ) -> Result<RegistryRow, StoreError> {
        let sql = match table {
            RegistryTable::Agents => {
                "INSERT INTO agents (id, version, record, created_at, updated_at) VALUES ($1, 1, $2, $3, $3)
                 ON CONFLICT (id) DO UPDATE SET version = agents.version + 1, record = excluded.record, updated_at = excluded.updated_at
                 RETURNING id, version, record, created_at, updated_at"
            }
            RegistryTable::Tools => {
                "INSERT INTO tools (id, version, record, created_at, updated_at) VALUES ($1, 1, $2, $3, $3)
                 ON CONFLICT (id) DO UPDATE SET version = tools.version + 1, record = excluded.record, updated_at = excluded.updated_at
                 RETURNING id, version, record, created_at, updated_at"
            }
        };
        Ok(sqlx::query_as(sql)
            .bind(id)
            .bind(record)
            .bind(now)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Stores decisions in one transaction: all or none are durable when this returns.
    pub async fn insert_decisions(&self, rows: &[DecisionRow]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for row in rows {
            sqlx::query(
                "INSERT INTO decisions (id, agent_id, on_behalf_of, action, resource_type, resource_id, decision,
                                        policy_digest, evaluated_at, request, response)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&row.id)
            .bind(&row.agent_id)
            .bind(&row.on_behalf_of)
            .bind(&row.action)
            .bind(&row.resource_type)
            .bind(&row.resource_id)
            .bind(&row.decision)
            .bind(&row.policy_digest)
            .bind(&row.evaluated_at)
            .bind(&row.request)
            .bind(&row.response)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn decision(&self, id: &DecisionId) -> Result<Option<DecisionRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, agent_id, on_behalf_of, action, resource_type, resource_id, decision, policy_digest,
                    evaluated_at, request, response
             FROM decisions WHERE id = $1",
        )
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
        Ok(sqlx::query_as(
            "SELECT id, agent_id, on_behalf_of, action, resource_type, resource_id, decision, policy_digest,
                    evaluated_at, request, response
             FROM decisions
             WHERE ($1 IS NULL OR agent_id = $1) AND ($2 IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3",
        )
        .bind(agent.map(AgentId::as_str))
        .bind(before.map(DecisionId::to_string))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }
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
