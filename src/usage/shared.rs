//! Usage counted in PostgreSQL, shared by replicas. A decision locks its keys' rows (`FOR
//! UPDATE`, in key order) for the span of read, evaluate and count, so the count is exact across
//! replicas: a limit of N allows N, whichever replicas the calls reach. The cost is one
//! transaction per decision of the default store, and decisions on the same key wait for each
//! other (not for decisions on other keys).
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{PgPool, Postgres, Transaction};

use super::window::{BUCKETS, WINDOWS};
use super::{Amount, Charge, Clock, DAY_MS, Key, Totals, UsageError};

/// Every this many counts, the oldest buckets and idle keys are deleted.
const PRUNE_EVERY: u32 = 1024;

pub(super) struct Shared {
    pool: PgPool,
    pub(super) clock: Clock,
    since_prune: AtomicU32,
}

/// A decision's locked keys, released when it is counted or not.
pub(super) struct Held {
    tx: Transaction<'static, Postgres>,
    shared: std::sync::Arc<Shared>,
}

type TotalsRow = (
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    i64,
    i64,
);

impl Shared {
    pub(super) fn new(pool: PgPool, clock: Clock) -> Self {
        Self {
            pool,
            clock,
            since_prune: AtomicU32::new(0),
        }
    }

    pub(super) async fn begin(
        self: &std::sync::Arc<Self>,
        keys: &[Key],
    ) -> Result<(Vec<Totals>, i64, Held), UsageError> {
        // Each key's text and its place in `keys` (a call's keys are distinct).
        let by_text: BTreeMap<String, usize> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.encode(), i))
            .filter(|(text, _)| !text.is_empty())
            .collect();
        let texts: Vec<String> = by_text.keys().cloned().collect();
        let mut tx = loop {
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "INSERT INTO usage_keys (key) SELECT * FROM unnest($1::text[]) ON CONFLICT DO NOTHING",
            )
            .bind(&texts)
            .execute(&mut *tx)
            .await?;
            let locked: Vec<(String,)> = sqlx::query_as(
                "SELECT key FROM usage_keys WHERE key = ANY($1) ORDER BY key FOR UPDATE",
            )
            .bind(&texts)
            .fetch_all(&mut *tx)
            .await?;
            // A prune may have deleted a key between the insert and the lock: take them again.
            if locked.len() == texts.len() {
                break tx;
            }
            tx.rollback().await?;
        };
        let now = self.clock.now_ms();
        let since = |i: usize| now - BUCKETS[i] - WINDOWS[i].1;
        let rows: Vec<TotalsRow> = sqlx::query_as(
            "SELECT key,
                 coalesce(sum(calls) FILTER (WHERE size = 1000 AND bucket > $2), 0)::bigint,
                 coalesce(sum(calls) FILTER (WHERE size = 60000 AND bucket > $3), 0)::bigint,
                 coalesce(sum(calls) FILTER (WHERE size = 60000 AND bucket > $4), 0)::bigint,
                 coalesce(sum(amount) FILTER (WHERE size = 1000 AND bucket > $2), 0)::bigint,
                 coalesce(sum(amount) FILTER (WHERE size = 60000 AND bucket > $3), 0)::bigint,
                 coalesce(sum(amount) FILTER (WHERE size = 60000 AND bucket > $4), 0)::bigint,
                 min(bucket) FILTER (WHERE size = 1000 AND bucket > $2 AND calls > 0),
                 min(bucket) FILTER (WHERE size = 60000 AND bucket > $3 AND calls > 0),
                 min(bucket) FILTER (WHERE size = 60000 AND bucket > $4 AND calls > 0),
                 coalesce(sum(calls) FILTER (WHERE size = 0), 0)::bigint,
                 coalesce(sum(amount) FILTER (WHERE size = 0), 0)::bigint
             FROM usage_buckets WHERE key = ANY($1) GROUP BY key",
        )
        .bind(&texts)
        .bind(since(0))
        .bind(since(1))
        .bind(since(2))
        .fetch_all(&mut *tx)
        .await?;
        let mut totals = vec![Totals::default(); keys.len()];
        for row in rows {
            let Some(&at) = by_text.get(&row.0) else {
                continue;
            };
            let leaves =
                |i: usize, start: Option<i64>| start.map(|s| s + BUCKETS[i] + WINDOWS[i].1);
            totals[at] = Totals {
                calls: [row.1, row.2, row.3],
                amount: [Amount(row.4), Amount(row.5), Amount(row.6)],
                leaves_at: [leaves(0, row.7), leaves(1, row.8), leaves(2, row.9)],
                total_calls: row.10,
                total_amount: Amount(row.11),
            };
        }
        Ok((
            totals,
            now,
            Held {
                tx,
                shared: self.clone(),
            },
        ))
    }

    /// Adds `calls` (1, or -1 to refund) at `charge.at_ms` to every key of the charge.
    async fn add(
        tx: &mut Transaction<'static, Postgres>,
        charge: &Charge,
        calls: i64,
    ) -> Result<(), UsageError> {
        let amount = charge.call.amount().0 * calls.signum();
        let at = charge.at_ms;
        let mut rows = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for key in charge.call.keys() {
            let sizes: &[i64] = if key.windowed() {
                &[1000, 60_000]
            } else {
                &[0]
            };
            let text = key.encode();
            for size in sizes {
                rows.0.push(text.clone());
                rows.1.push(*size);
                rows.2.push(if *size == 0 {
                    0
                } else {
                    at - at.rem_euclid(*size)
                });
                rows.3.push(calls);
                rows.4.push(key.share(Amount(amount)).0);
            }
        }
        sqlx::query(
            "INSERT INTO usage_buckets (key, size, bucket, calls, amount, last_ms)
             SELECT k, s, b, c, a, $6 FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])
                  AS u(k, s, b, c, a)
             ON CONFLICT (key, size, bucket) DO UPDATE
             SET calls = usage_buckets.calls + excluded.calls,
                 amount = usage_buckets.amount + excluded.amount,
                 last_ms = greatest(usage_buckets.last_ms, excluded.last_ms)",
        )
        .bind(&rows.0)
        .bind(&rows.1)
        .bind(&rows.2)
        .bind(&rows.3)
        .bind(&rows.4)
        .bind(at)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    pub(super) async fn refund(&self, charge: &Charge) -> Result<(), UsageError> {
        let mut tx = self.pool.begin().await?;
        Self::add(&mut tx, charge, -1).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes buckets no window counts and sessions idle for a day, then keys with no buckets
    /// that no decision holds.
    async fn prune(&self) -> Result<(), UsageError> {
        let day_ago = self.clock.now_ms() - DAY_MS - 60_000;
        sqlx::query(
            "DELETE FROM usage_buckets
             WHERE (size = 0 AND last_ms < $1) OR (size = 1000 AND bucket < $2) OR (size = 60000 AND bucket < $1)",
        )
        .bind(day_ago)
        .bind(self.clock.now_ms() - 120_000)
        .execute(&self.pool)
        .await?;
        sqlx::query(
            "DELETE FROM usage_keys WHERE key IN (
                 SELECT key FROM usage_keys k
                 WHERE NOT EXISTS (SELECT 1 FROM usage_buckets b WHERE b.key = k.key)
                 FOR UPDATE SKIP LOCKED)",
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

impl Held {
    /// Counts the charge (if any) and releases the keys.
    pub(super) async fn finish(mut self, charge: Option<&Charge>) -> Result<(), UsageError> {
        let Some(charge) = charge else {
            self.tx.rollback().await?;
            return Ok(());
        };
        Shared::add(&mut self.tx, charge, 1).await?;
        self.tx.commit().await?;
        if self.shared.since_prune.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1
        {
            let shared = self.shared.clone();
            tokio::spawn(async move {
                if let Err(error) = shared.prune().await {
                    tracing::warn!(%error, "pruning old usage counts failed");
                }
            });
        }
        Ok(())
    }
}
