//! The store's queries: registry, approvals, kill switches, the ledger's entries, nodes and
//! checkpoints, decisions and policy versions, read through the pool (never the writer). Each
//! query is one text that SQLite and PostgreSQL both run ([`on_db!`] runs it on whichever pool the
//! store has), so the two backends cannot answer differently for want of a query.

use super::*;
use crate::timestamp::Timestamp;

/// Positions one query of [`Store::nodes_at_level`] lists: a full tile's 256 in one, and far below
/// SQLite's (32,766) and PostgreSQL's (65,535) limits on bound parameters.
const LISTED_POSITIONS: u64 = 512;

/// A query builder for the pool's database.
fn builder<DB: sqlx::Database>(_: &sqlx::Pool<DB>, sql: &str) -> sqlx::QueryBuilder<DB> {
    sqlx::QueryBuilder::new(sql)
}

impl Store {
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
        Ok(on_db!(self, |pool| sqlx::query_as(sql)
            .fetch_all(pool)
            .await)?)
    }

    pub async fn approval(&self, id: &str) -> Result<Option<ApprovalRow>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = $1"
        ));
        Ok(on_db!(self, |pool| sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(pool)
            .await)?)
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
        Ok(on_db!(self, |pool| sqlx::query_as(sql)
            .bind(status)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await)?)
    }

    /// Every kill switch, oldest first.
    pub async fn killswitches(&self) -> Result<Vec<KillSwitchRow>, StoreError> {
        Ok(on_db!(self, |pool| {
            sqlx::query_as(
            "SELECT id, scope_agent, scope_tool, scope_action, reason, drill, engaged_by, engaged_at, released_by, released_at, release_reason
             FROM killswitches ORDER BY id",
        )
        .fetch_all(pool).await
        })?)
    }

    pub async fn killswitch(&self, id: &str) -> Result<Option<KillSwitchRow>, StoreError> {
        Ok(on_db!(self, |pool| {
            sqlx::query_as(
            "SELECT id, scope_agent, scope_tool, scope_action, reason, drill, engaged_by, engaged_at, released_by, released_at, release_reason
             FROM killswitches WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(pool).await
        })?)
    }

    /// Number of entries in the ledger.
    pub async fn ledger_size(&self) -> Result<u64, StoreError> {
        let (size,): (i64,) = on_db!(self, |pool| sqlx::query_as(
            "SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_entries"
        )
        .fetch_one(pool)
        .await)?;
        Ok(size as u64)
    }

    /// Stored node hashes, in the order asked, read in one query. A missing node is an error: the
    /// tree is damaged.
    pub async fn nodes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(i64, Vec<u8>)> = on_db!(self, |pool| {
            let mut query = builder(pool, "SELECT pos, hash FROM ledger_nodes WHERE pos IN (");
            let mut list = query.separated(", ");
            for id in ids {
                list.push_bind(sql_int(id.position()));
            }
            query.push(")");
            query.build_query_as().fetch_all(pool).await
        })?;
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
        // Nodes of one level lie about 2^(level + 1) positions apart, the subtrees under them in
        // between. Below level 2 a scan from the first position to the last reads at most four
        // rows for each it keeps; higher up it reads every node under the ones it keeps (a tile
        // of level-16 nodes read the whole table: 147 ms at 1.6 million entries), so there the
        // positions are listed, a bounded number a query.
        if level >= 2 {
            let mut found = Vec::with_capacity((hi - lo) as usize);
            let mut start = lo;
            while start < hi {
                let end = hi.min(start.saturating_add(LISTED_POSITIONS));
                let rows: Vec<(i64, Vec<u8>)> = on_db!(self, |pool| {
                    let mut query =
                        builder(pool, "SELECT idx, hash FROM ledger_nodes WHERE pos IN (");
                    let mut list = query.separated(", ");
                    for index in start..end {
                        list.push_bind(sql_int(NodeId { level, index }.position()));
                    }
                    query.push(") ORDER BY pos");
                    // One text per count of positions: not worth a place in the statement cache.
                    query
                        .build_query_as()
                        .persistent(false)
                        .fetch_all(pool)
                        .await
                })?;
                found.extend(rows.into_iter().map(|(i, h)| (i as u64, h)));
                start = end;
            }
            return Ok(found);
        }
        let first = NodeId { level, index: lo }.position();
        let last = NodeId {
            level,
            index: hi - 1,
        }
        .position();
        let rows: Vec<(i64, Vec<u8>)> = on_db!(self, |pool| {
            sqlx::query_as(
            "SELECT idx, hash FROM ledger_nodes WHERE pos >= $1 AND pos <= $2 AND level = $3 ORDER BY pos",
        )
        .bind(sql_int(first))
        .bind(sql_int(last))
        .bind(i64::from(level))
        .fetch_all(pool).await
        })?;
        Ok(rows.into_iter().map(|(i, h)| (i as u64, h)).collect())
    }

    /// Entries with indices in `[start, end)`, in order.
    pub async fn entries(&self, start: u64, end: u64) -> Result<Vec<EntryRow>, StoreError> {
        Ok(on_db!(self, |pool| sqlx::query_as(
            "SELECT idx, kind, entry FROM ledger_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
        )
        .bind(sql_int(start))
        .bind(sql_int(end))
        .fetch_all(pool)
        .await)?)
    }

    pub async fn latest_checkpoint(&self) -> Result<Option<CheckpointRow>, StoreError> {
        Ok(on_db!(self, |pool| {
            sqlx::query_as("SELECT tree_size, root_hash, note, created_at FROM ledger_checkpoints ORDER BY tree_size DESC LIMIT 1")
            .fetch_optional(pool).await
        })?)
    }

    /// The first checkpoint signed for a tree larger than `size`.
    pub async fn first_checkpoint_above(
        &self,
        size: u64,
    ) -> Result<Option<CheckpointRow>, StoreError> {
        Ok(on_db!(self, |pool| {
            sqlx::query_as("SELECT tree_size, root_hash, note, created_at FROM ledger_checkpoints WHERE tree_size > $1 ORDER BY tree_size LIMIT 1")
            .bind(sql_int(size))
            .fetch_optional(pool).await
        })?)
    }

    /// Every checkpoint, smallest tree first.
    pub async fn checkpoints(&self) -> Result<Vec<CheckpointRow>, StoreError> {
        Ok(on_db!(self, |pool| {
            sqlx::query_as("SELECT tree_size, root_hash, note, created_at FROM ledger_checkpoints ORDER BY tree_size").fetch_all(pool).await
        })?)
    }

    /// The salt that masked `pointer` in a decision's context.
    pub async fn salt(
        &self,
        decision: &DecisionId,
        pointer: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let row: Option<(Vec<u8>,)> = on_db!(self, |pool| sqlx::query_as(
            "SELECT salt FROM ledger_salts WHERE decision_id = $1 AND pointer = $2"
        )
        .bind(decision.to_string())
        .bind(pointer)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(|(s,)| s))
    }

    pub async fn decision(&self, id: &DecisionId) -> Result<Option<DecisionRow>, StoreError> {
        Ok(on_db!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            format!("{DECISION_SELECT} WHERE d.id = $1")
        ))
        .bind(id.to_string())
        .fetch_optional(pool)
        .await)?)
    }

    /// The decisions with these ids, in one read (in no particular order; unknown ids are left
    /// out). At most 500 ids.
    pub async fn decisions_by_id(
        &self,
        ids: &[DecisionId],
    ) -> Result<Vec<DecisionRow>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders = (1..=ids.len().min(500))
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("{DECISION_SELECT} WHERE d.id IN ({placeholders})");
        Ok(on_db!(self, |pool| {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
            for id in ids.iter().take(500) {
                query = query.bind(id.to_string());
            }
            query.fetch_all(pool).await
        })?)
    }

    /// The newest decision `agent` asked for with idempotency key `key` at or after `since`.
    pub async fn decision_by_idempotency_key(
        &self,
        agent: &AgentId,
        key: &str,
        since: Timestamp,
    ) -> Result<Option<DecisionRow>, StoreError> {
        Ok(on_db!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{DECISION_SELECT} WHERE d.agent_id = $1 AND d.idempotency_key = $2 AND d.evaluated_at >= $3
             ORDER BY d.evaluated_at DESC LIMIT 1"
        )))
        .bind(agent.as_str())
        .bind(key)
        .bind(since)
        .fetch_optional(pool).await
        })?)
    }

    /// Newest first; `before` pages backwards from a decision id.
    pub async fn decisions(
        &self,
        agent: Option<&AgentId>,
        before: Option<&DecisionId>,
        limit: u32,
    ) -> Result<Vec<DecisionRow>, StoreError> {
        Ok(on_db!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            format!(
            "{DECISION_SELECT} WHERE ($1 IS NULL OR d.agent_id = $1) AND ($2 IS NULL OR d.id < $2)
             ORDER BY d.id DESC LIMIT $3"
        )
        ))
        .bind(agent.map(AgentId::as_str))
        .bind(before.map(DecisionId::to_string))
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await)?)
    }

    /// Ledger entries of the given kinds, in index order, through the kind index. That index
    /// leaves out decisions (they are most entries, and read through `decisions`), so asking for
    /// the `decision` kind here finds nothing.
    pub async fn entries_of_kinds(&self, kinds: &[&str]) -> Result<Vec<EntryRow>, StoreError> {
        self.entries_of_kinds_in(kinds, 0, u64::MAX).await
    }

    /// The entries of `kinds` (never decisions) in `[start, end)`, in index order: through the
    /// kind index, without reading the decisions between them.
    pub async fn entries_of_kinds_in(
        &self,
        kinds: &[&str],
        start: u64,
        end: u64,
    ) -> Result<Vec<EntryRow>, StoreError> {
        Ok(on_db!(self, |pool| {
            let mut q = builder(
                pool,
                "SELECT idx, kind, entry FROM ledger_entries WHERE kind <> 'decision' AND idx >= ",
            );
            q.push_bind(sql_int(start));
            q.push(" AND idx < ");
            q.push_bind(sql_int(end));
            q.push(" AND kind IN (");
            let mut list = q.separated(", ");
            for kind in kinds {
                list.push_bind(*kind);
            }
            q.push(") ORDER BY idx");
            q.build_query_as().fetch_all(pool).await
        })?)
    }

    /// How many decisions `agent` got in `[from, to)`.
    pub async fn decision_counts(
        &self,
        agent: &AgentId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<DecisionCounts, StoreError> {
        let row: (i64, i64, i64, Option<i64>, Option<i64>) = on_db!(self, |pool| sqlx::query_as(
            "SELECT CAST(COUNT(CASE WHEN decision = 'allow' THEN 1 END) AS BIGINT),
                    CAST(COUNT(CASE WHEN decision = 'deny' THEN 1 END) AS BIGINT),
                    CAST(COUNT(CASE WHEN ledger_index IS NULL THEN 1 END) AS BIGINT),
                    MIN(ledger_index), MAX(ledger_index)
             FROM decisions WHERE agent_id = $1
               AND evaluated_at >= $2 AND evaluated_at < $3",
        )
        .bind(agent.as_str())
        .bind(from)
        .bind(to)
        .fetch_one(pool)
        .await)?;
        Ok(DecisionCounts {
            allow: row.0 as u64,
            deny: row.1 as u64,
            unrecorded: row.2 as u64,
            first_index: row.3.map(|i| i as u64),
            last_index: row.4.map(|i| i as u64),
        })
    }

    /// Allowed and denied decisions in `[from, to)` per agent, in one read (agents without any
    /// are left out).
    pub async fn decision_counts_by_agent(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<std::collections::HashMap<String, (u64, u64)>, StoreError> {
        let rows: Vec<(String, i64, i64)> = on_db!(self, |pool| sqlx::query_as(
            "SELECT agent_id,
                    CAST(COUNT(CASE WHEN decision = 'allow' THEN 1 END) AS BIGINT),
                    CAST(COUNT(CASE WHEN decision = 'deny' THEN 1 END) AS BIGINT)
             FROM decisions WHERE evaluated_at >= $1 AND evaluated_at < $2
             GROUP BY agent_id",
        )
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|(agent, allow, deny)| (agent, (allow as u64, deny as u64)))
            .collect())
    }

    /// Every decision made in `[from, to)`, in ledger order.
    pub async fn decisions_in(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<DecisionRow>, StoreError> {
        Ok(on_db!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            format!(
                "{DECISION_SELECT}
             WHERE d.evaluated_at >= $1 AND d.evaluated_at < $2
             ORDER BY d.ledger_index"
            )
        ))
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await)?)
    }

    /// Up to `limit` allowed decisions made at or after `from`, past ledger index `after`, in
    /// ledger order: a page of what usage windows are rebuilt from.
    pub async fn allowed_since(
        &self,
        from: Timestamp,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<DecisionRow>, StoreError> {
        Ok(on_db!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            format!(
                "{DECISION_SELECT}
             WHERE d.evaluated_at >= $1 AND d.decision = 'allow' AND d.ledger_index > $2
             ORDER BY d.ledger_index LIMIT $3"
            )
        ))
        .bind(from)
        .bind(after.map_or(-1, sql_int))
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await)?)
    }

    /// Indices of the decision entries in `[start, end)` concerning `agent`.
    pub async fn decision_indices(
        &self,
        agent: &AgentId,
        start: u64,
        end: u64,
    ) -> Result<Vec<u64>, StoreError> {
        let rows: Vec<(i64,)> = on_db!(self, |pool| {
            sqlx::query_as(
            "SELECT ledger_index FROM decisions
             WHERE agent_id = $1 AND ledger_index >= $2 AND ledger_index < $3 ORDER BY ledger_index",
        )
        .bind(agent.as_str())
        .bind(sql_int(start))
        .bind(sql_int(end))
        .fetch_all(pool).await
        })?;
        Ok(rows.into_iter().map(|(i,)| i as u64).collect())
    }

    /// Rows in the ledger table: equal to the tree size unless something was deleted.
    pub async fn entry_count(&self) -> Result<u64, StoreError> {
        let (n,): (i64,) = on_db!(self, |pool| sqlx::query_as(
            "SELECT COUNT(*) FROM ledger_entries"
        )
        .fetch_one(pool)
        .await)?;
        Ok(n as u64)
    }

    /// Every approval of `agent`, oldest first.
    pub async fn approvals_of(&self, agent: &AgentId) -> Result<Vec<ApprovalRow>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE agent_id = $1 ORDER BY requested_at, id"
        ));
        Ok(on_db!(self, |pool| sqlx::query_as(sql)
            .bind(agent.as_str())
            .fetch_all(pool)
            .await)?)
    }

    pub async fn policy_version(&self, id: &str) -> Result<Option<PolicyVersionRow>, StoreError> {
        Ok(on_db!(self, |pool| {
            sqlx::query_as(
            "SELECT id, store, digest, schema_digest, files, author, created_at, state FROM policy_versions WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(pool).await
        })?)
    }

    pub async fn policy_version_by_digest(
        &self,
        store: &str,
        digest: &str,
    ) -> Result<Option<PolicyVersionRow>, StoreError> {
        Ok(on_db!(self, |pool| {
            sqlx::query_as(
            "SELECT id, store, digest, schema_digest, files, author, created_at, state FROM policy_versions
             WHERE store = $1 AND digest = $2",
        )
        .bind(store)
        .bind(digest)
        .fetch_optional(pool).await
        })?)
    }

    /// A store's versions, oldest first.
    pub async fn policy_versions(&self, store: &str) -> Result<Vec<PolicyVersionRow>, StoreError> {
        Ok(on_db!(self, |pool| {
            sqlx::query_as(
            "SELECT id, store, digest, schema_digest, files, author, created_at, state FROM policy_versions
             WHERE store = $1 ORDER BY id",
        )
        .bind(store)
        .fetch_all(pool).await
        })?)
    }

    pub async fn shadow_policy_version(
        &self,
        store: &str,
    ) -> Result<Option<PolicyVersionRow>, StoreError> {
        Ok(on_db!(self, |pool| {
            sqlx::query_as(
            "SELECT id, store, digest, schema_digest, files, author, created_at, state FROM policy_versions
             WHERE store = $1 AND state = 'shadow'",
        )
        .bind(store)
        .fetch_optional(pool).await
        })?)
    }

    pub async fn active_policy_version(
        &self,
        store: &str,
    ) -> Result<Option<PolicyVersionRow>, StoreError> {
        Ok(on_db!(self, |pool| {
            sqlx::query_as(
            "SELECT id, store, digest, schema_digest, files, author, created_at, state FROM policy_versions
             WHERE store = $1 AND state = 'active'",
        )
        .bind(store)
        .fetch_optional(pool).await
        })?)
    }

    pub async fn policy_text(&self, digest: &str) -> Result<Option<PolicyTextRow>, StoreError> {
        Ok(on_db!(self, |pool| sqlx::query_as(
            "SELECT digest, files, schema_text, first_seen FROM policy_texts WHERE digest = $1",
        )
        .bind(digest)
        .fetch_optional(pool)
        .await)?)
    }

    /// The outcome reported for a decision, if any.
    pub async fn outcome(&self, decision: &DecisionId) -> Result<Option<OutcomeRow>, StoreError> {
        Ok(on_db!(self, |pool| {
            sqlx::query_as(
            "SELECT decision_id, agent_id, status, summary, result_sha256, completed_at, reported_by, recorded_at
             FROM decision_outcomes WHERE decision_id = $1",
        )
        .bind(decision.to_string())
        .fetch_optional(pool)
        .await
        })?)
    }

    /// Allowed decisions evaluated before `before` with no outcome reported, newest first.
    pub async fn decisions_without_outcome(
        &self,
        agent: Option<&AgentId>,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<DecisionRow>, StoreError> {
        Ok(on_db!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            format!(
                "{DECISION_SELECT}
             WHERE d.decision = 'allow' AND d.evaluated_at < $1 AND ($2 IS NULL OR d.agent_id = $2)
               AND NOT EXISTS (SELECT 1 FROM decision_outcomes o WHERE o.decision_id = d.id)
             ORDER BY d.evaluated_at DESC LIMIT $3"
            )
        ))
        .bind(before)
        .bind(agent.map(AgentId::as_str))
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await)?)
    }

    /// The allowed decisions whose requests named `id` in `compensates`, oldest first.
    pub async fn compensations_of(&self, id: &DecisionId) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = on_db!(self, |pool| sqlx::query_as(
            "SELECT c.decision_id FROM decision_compensations c
             JOIN decisions d ON d.id = c.decision_id
             WHERE c.compensates = $1 AND d.decision = 'allow'
             ORDER BY d.evaluated_at, d.id"
        )
        .bind(id.to_string())
        .fetch_all(pool)
        .await)?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// A decision's contests, oldest first.
    pub async fn contests_of(&self, decision: &DecisionId) -> Result<Vec<ContestRow>, StoreError> {
        Ok(on_db!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            format!("SELECT {CONTEST_COLUMNS} FROM contests WHERE decision_id = $1 ORDER BY id")
        ))
        .bind(decision.to_string())
        .fetch_all(pool)
        .await)?)
    }

    pub async fn contest(&self, id: &str) -> Result<Option<ContestRow>, StoreError> {
        Ok(on_db!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            format!("SELECT {CONTEST_COLUMNS} FROM contests WHERE id = $1")
        ))
        .bind(id)
        .fetch_optional(pool)
        .await)?)
    }

    pub async fn incident(&self, id: &str) -> Result<Option<IncidentRow>, StoreError> {
        Ok(on_db!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1")
        ))
        .bind(id)
        .fetch_optional(pool)
        .await)?)
    }

    /// Every incident, newest first.
    pub async fn incidents(&self) -> Result<Vec<IncidentRow>, StoreError> {
        Ok(on_db!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            format!("SELECT {INCIDENT_COLUMNS} FROM incidents ORDER BY id DESC")
        ))
        .fetch_all(pool)
        .await)?)
    }

    /// An agent's allowed decisions in `[from, to)` per tool and reported outcome (`None`: none
    /// reported), with how many of them an allowed compensation undid.
    pub async fn outcome_counts(
        &self,
        agent: &AgentId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<OutcomeCount>, StoreError> {
        let rows: Vec<(String, Option<String>, i64, i64)> = on_db!(self, |pool| {
            sqlx::query_as(
            "SELECT d.resource_id, o.status, CAST(COUNT(*) AS BIGINT),
                    CAST(COUNT(CASE WHEN EXISTS (
                        SELECT 1 FROM decision_compensations c JOIN decisions u ON u.id = c.decision_id
                        WHERE c.compensates = d.id AND u.decision = 'allow') THEN 1 END) AS BIGINT)
             FROM decisions d LEFT JOIN decision_outcomes o ON o.decision_id = d.id
             WHERE d.agent_id = $1 AND d.decision = 'allow' AND d.evaluated_at >= $2 AND d.evaluated_at < $3
             GROUP BY d.resource_id, o.status ORDER BY d.resource_id"
        )
        .bind(agent.as_str())
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await
        })?;
        Ok(rows
            .into_iter()
            .map(|(tool, status, count, compensated)| OutcomeCount {
                tool,
                status,
                count: count as u64,
                compensated: compensated as u64,
            })
            .collect())
    }

    /// Whether a console sign-in link was used.
    pub async fn console_link_used(&self, link: &str) -> Result<bool, StoreError> {
        let row: Option<(String,)> = on_db!(self, |pool| sqlx::query_as(
            "SELECT link FROM console_links WHERE link = $1"
        )
        .bind(link)
        .fetch_optional(pool)
        .await)?;
        Ok(row.is_some())
    }

    /// Whether a console session was signed out.
    pub async fn console_signed_out(&self, session: &str) -> Result<bool, StoreError> {
        let row: Option<(String,)> = on_db!(self, |pool| sqlx::query_as(
            "SELECT session FROM console_sign_outs WHERE session = $1"
        )
        .bind(session)
        .fetch_optional(pool)
        .await)?;
        Ok(row.is_some())
    }

    /// Newest first, filtered by what decision rows hold: agent, tool (resource id), outcome
    /// (`allow`/`deny`) and a time range `[from, to)`.
    pub async fn decisions_matching(
        &self,
        filter: &DecisionFilter,
        limit: u32,
    ) -> Result<Vec<DecisionRow>, StoreError> {
        Ok(on_db!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{DECISION_SELECT} WHERE ($1 IS NULL OR d.agent_id = $1) AND ($2 IS NULL OR d.resource_id = $2)
               AND ($3 IS NULL OR d.decision = $3) AND ($4 IS NULL OR d.evaluated_at >= $4)
               AND ($5 IS NULL OR d.evaluated_at < $5) AND ($6 IS NULL OR d.id < $6)
             ORDER BY d.id DESC LIMIT $7"
        )))
        .bind(filter.agent.as_deref())
        .bind(filter.tool.as_deref())
        .bind(filter.outcome.as_deref())
        .bind(filter.from)
        .bind(filter.to)
        .bind(filter.before.as_deref())
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        })?)
    }
}
