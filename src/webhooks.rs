//! Webhooks: people hear of what needs them (an approval requested or decided, a kill switch
//! engaged or released, by a person or a tripwire, a tripwire's dry-run hit, a policy activated)
//! without polling.
//!
//! The ledger is the queue. Each of those events is already a ledger entry, so a worker reads the
//! ledger from each hook's cursor, sends the entries the hook asked for, in ledger order, and
//! moves the cursor on: nothing is written on the decision path, and no event is lost to a crash
//! (a restart resumes at the cursor; an entry can be sent twice, never skipped, and its
//! `webhook-id` is the same both times so a receiver can drop the repeat). On SQLite the cursor is
//! a file in the data dir, outside the ledger's single writer; on PostgreSQL a row, and only the
//! replica holding the webhooks' advisory lock sends.
//!
//! Requests are signed as Standard Webhooks are (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`), retried with
//! exponential backoff, and carry a `text` field, so a Slack incoming webhook shows them as is.
//! What became of recent sends is kept in memory for `GET /v1/webhooks/deliveries`.
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::Sha256;
use utoipa::ToSchema;

use crate::config::guards::HookConfig;
pub use crate::config::guards::WEBHOOK_EVENTS as EVENTS;
use crate::ledger::Ledger;
use crate::store::Store;

/// How many sends of each hook are kept for `GET /v1/webhooks/deliveries`.
const KEPT: usize = 100;
/// Attempts per event before it is given up (the cursor moves on, the delivery shows `failed`).
const ATTEMPTS: u32 = 8;

/// The signing key a secret file holds.
pub fn signing_key(secret: &str) -> Vec<u8> {
    let secret = secret.trim();
    match secret.strip_prefix("whsec_") {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap_or_else(|_| secret.as_bytes().to_vec()),
        None => secret.as_bytes().to_vec(),
    }
}

/// `v1,<signature>` of a message, as the `webhook-signature` header carries it.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let signature = mac.finalize().into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(signature)
    )
}

/// What a receiver checks: one of the header's signatures is this message's, and the timestamp
/// is within `tolerance` of `now` (seconds), against replays.
pub fn verify(
    key: &[u8],
    id: &str,
    timestamp: i64,
    signatures: &str,
    body: &[u8],
    now: i64,
    tolerance: i64,
) -> bool {
    let expected = sign(key, id, timestamp, body);
    (now - timestamp).abs() <= tolerance
        && signatures.split(' ').any(|s| {
            // Compared in constant time, as a MAC must be.
            s.len() == expected.len()
                && s.bytes()
                    .zip(expected.bytes())
                    .fold(0u8, |d, (a, b)| d | (a ^ b))
                    == 0
        })
}

/// The state of one event's send to one hook.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Delivery {
    /// The `webhook-id` sent (the same on every attempt, and on a resend after a restart).
    pub webhook_id: String,
    pub ledger_index: u64,
    pub event: String,
    /// `sending` (retrying), `delivered` or `failed` (given up after every attempt).
    pub state: String,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub updated_at: crate::timestamp::Timestamp,
}

/// One hook as `GET /v1/webhooks/deliveries` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HookState {
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    /// The ledger index it reads from next: every event before it was sent or given up.
    pub next_index: u64,
    /// The most recent sends, newest first (kept in memory: a restart empties it).
    pub deliveries: Vec<Delivery>,
    /// Why the worker could not read the ledger or keep the cursor, the last time it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

struct Hook {
    config: HookConfig,
    key: Vec<u8>,
    state: Mutex<(u64, VecDeque<Delivery>)>,
    problem: Mutex<Option<String>>,
}

/// The configured hooks and their worker.
pub struct Webhooks {
    hooks: Vec<Arc<Hook>>,
    worker: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Where each hook's cursor is kept.
#[derive(Clone)]
pub enum Cursors {
    /// `<dir>/<hook>.cursor` files (one server on SQLite).
    Files(PathBuf),
    /// The `webhook_cursors` table, sent from by the one replica holding the lock.
    Postgres(sqlx::PgPool),
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook `{name}`: cannot read its secret file {path}: {source}")]
    Secret {
        name: String,
        path: String,
        source: std::io::Error,
    },
    #[error("webhook cursor: {0}")]
    Cursor(String),
}

impl Cursors {
    async fn load(&self, name: &str) -> Result<Option<u64>, WebhookError> {
        match self {
            Cursors::Files(dir) => {
                match tokio::fs::read_to_string(dir.join(format!("{name}.cursor"))).await {
                    Ok(text) => text
                        .trim()
                        .parse()
                        .map(Some)
                        .map_err(|e| WebhookError::Cursor(format!("{name}: {e}"))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(WebhookError::Cursor(e.to_string())),
                }
            }
            Cursors::Postgres(pool) => sqlx::query_scalar::<_, i64>(
                "SELECT next_index FROM webhook_cursors WHERE hook = $1",
            )
            .bind(name)
            .fetch_optional(pool)
            .await
            .map(|n| n.map(|n| n as u64))
            .map_err(|e| WebhookError::Cursor(e.to_string())),
        }
    }

    async fn save(&self, name: &str, next: u64) -> Result<(), WebhookError> {
        match self {
            Cursors::Files(dir) => {
                // Written aside and renamed: a crash leaves the old cursor or the new, never half.
                let path = dir.join(format!("{name}.cursor"));
                let aside = dir.join(format!("{name}.cursor.new"));
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| WebhookError::Cursor(e.to_string()))?;
                tokio::fs::write(&aside, next.to_string())
                    .await
                    .map_err(|e| WebhookError::Cursor(e.to_string()))?;
                tokio::fs::rename(&aside, &path)
                    .await
                    .map_err(|e| WebhookError::Cursor(e.to_string()))
            }
            Cursors::Postgres(pool) => sqlx::query(
                "INSERT INTO webhook_cursors (hook, next_index) VALUES ($1, $2)
                 ON CONFLICT (hook) DO UPDATE SET next_index = greatest(webhook_cursors.next_index, excluded.next_index)",
            )
            .bind(name)
            .bind(next as i64)
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(|e| WebhookError::Cursor(e.to_string())),
        }
    }
}

impl Webhooks {
    /// Reads each hook's secret and starts the worker. A hook without a cursor starts at the
    /// ledger's end: it hears of what happens from now on, not of the past.
    pub async fn start(
        configs: &[HookConfig],
        cursors: Cursors,
        ledger: Arc<Ledger>,
        store: Store,
    ) -> Result<Self, WebhookError> {
        let mut hooks = Vec::new();
        for config in configs {
            let secret = std::fs::read_to_string(&config.secret_file).map_err(|source| {
                WebhookError::Secret {
                    name: config.name.clone(),
                    path: config.secret_file.display().to_string(),
                    source,
                }
            })?;
            let next = match cursors.load(&config.name).await? {
                Some(next) => next,
                None => {
                    let end = ledger.size();
                    cursors.save(&config.name, end).await?;
                    end
                }
            };
            hooks.push(Arc::new(Hook {
                config: config.clone(),
                key: signing_key(&secret),
                state: Mutex::new((next, VecDeque::new())),
                problem: Mutex::new(None),
            }));
        }
        let worker = (!hooks.is_empty()).then(|| {
            crate::crypto::install_crypto_provider();
            tokio::spawn(run(hooks.clone(), cursors, ledger, store))
        });
        Ok(Self {
            hooks,
            worker: Mutex::new(worker),
        })
    }

    pub fn states(&self) -> Vec<HookState> {
        self.hooks
            .iter()
            .map(|hook| {
                let (next, deliveries) = hook
                    .state
                    .lock()
                    .map(|s| (s.0, s.1.iter().rev().cloned().collect()))
                    .unwrap_or_default();
                HookState {
                    name: hook.config.name.clone(),
                    url: hook.config.url.clone(),
                    events: hook.config.events.clone(),
                    next_index: next,
                    deliveries,
                    problem: hook.problem.lock().ok().and_then(|p| p.clone()),
                }
            })
            .collect()
    }

    pub fn stop(&self) {
        if let Ok(mut worker) = self.worker.lock()
            && let Some(worker) = worker.take()
        {
            worker.abort();
        }
    }
}

/// Sends, for ever: each hook's events in ledger order.
async fn run(hooks: Vec<Arc<Hook>>, cursors: Cursors, ledger: Arc<Ledger>, store: Store) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(error) => {
            tracing::error!(%error, "webhooks cannot send: no HTTP client");
            return;
        }
    };
    // On PostgreSQL, one replica sends: the one holding this session lock.
    let mut lock: Option<sqlx::PgConnection> = None;
    loop {
        if let Cursors::Postgres(pool) = &cursors
            && lock.is_none()
        {
            lock = try_lock(pool).await;
            if lock.is_none() {
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            // Another replica may have sent meanwhile: read the cursors again.
            for hook in &hooks {
                if let Ok(Some(next)) = cursors.load(&hook.config.name).await
                    && let Ok(mut state) = hook.state.lock()
                {
                    state.0 = state.0.max(next);
                }
            }
        }
        let mut idle = true;
        for hook in &hooks {
            let stepped = step(hook, &client, &cursors, &ledger, &store).await;
            if let Ok(mut problem) = hook.problem.lock() {
                *problem = stepped.as_ref().err().cloned();
            }
            match stepped {
                Ok(sent) => idle &= !sent,
                Err(error) => {
                    tracing::warn!(hook = hook.config.name, %error, "webhooks");
                    // The database may have dropped the lock's session too: take it again.
                    lock = None;
                }
            }
        }
        if idle {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn try_lock(pool: &sqlx::PgPool) -> Option<sqlx::PgConnection> {
    // "rhook" in ASCII; the integrator's lock is "reins" (ledger::shared).
    const WEBHOOKS_LOCK: i64 = 0x72_68_6f_6f_6b;
    // The lock is the session's: a connection of its own, out of the pool, closed (releasing
    // it) with the worker.
    let mut conn = pool.acquire().await.ok()?.detach();
    let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(WEBHOOKS_LOCK)
        .fetch_one(&mut conn)
        .await
        .ok()?;
    held.then_some(conn)
}

/// Sends the entries the hook asked for from its cursor on (read through the kind index: the
/// decisions between them are not read), moving the cursor past each; whether any were due.
async fn step(
    hook: &Hook,
    client: &reqwest::Client,
    cursors: &Cursors,
    ledger: &Ledger,
    store: &Store,
) -> Result<bool, String> {
    let next = hook.state.lock().map(|s| s.0).map_err(|e| e.to_string())?;
    let end = ledger.size();
    if end <= next {
        return Ok(false);
    }
    let rows = store
        .entries_of_kinds_in(&hook.config.kinds(), next, end)
        .await
        .map_err(|e| e.to_string())?;
    let advance = |cursor: u64| {
        if let Ok(mut state) = hook.state.lock() {
            state.0 = cursor;
        }
    };
    for row in rows {
        let entry: Value = serde_json::from_slice(&row.entry).map_err(|e| e.to_string())?;
        let index = row.idx as u64;
        send(hook, client, index, &row.kind, &entry).await;
        // Saved after each send: a crash resends at most the one in flight.
        cursors
            .save(&hook.config.name, index + 1)
            .await
            .map_err(|e| e.to_string())?;
        advance(index + 1);
    }
    cursors
        .save(&hook.config.name, end)
        .await
        .map_err(|e| e.to_string())?;
    advance(end);
    Ok(true)
}

/// The message for one entry: Standard Webhooks' `type`, `timestamp` and `data`, and a `text`.
fn message(index: u64, kind: &str, entry: &Value) -> Value {
    let text = match kind {
        "approval_requested" => format!(
            "Approval needed: agent {} asks to {} {} (approval {}).",
            entry["agent_id"].as_str().unwrap_or("?"),
            entry["action"].as_str().unwrap_or("?"),
            entry["resource"]["id"].as_str().unwrap_or("?"),
            entry["approval_id"].as_str().unwrap_or("?"),
        ),
        "approval_granted" | "approval_denied" => format!(
            "Approval {} {} by {}.",
            entry["approval_id"].as_str().unwrap_or("?"),
            if kind == "approval_granted" {
                "granted"
            } else {
                "denied"
            },
            entry["actor"].as_str().unwrap_or("?"),
        ),
        "killswitch_engaged" => format!(
            "Kill switch engaged on {} by {}: {}",
            scope_text(&entry["scope"]),
            entry["actor"].as_str().unwrap_or("?"),
            entry["reason"].as_str().unwrap_or(""),
        ),
        "killswitch_released" => format!(
            "Kill switch released on {} by {}: {}",
            scope_text(&entry["scope"]),
            entry["actor"].as_str().unwrap_or("?"),
            entry["reason"].as_str().unwrap_or(""),
        ),
        "tripwire_would_trip" => format!(
            "Tripwire {} (dry run) would have switched off {}: {}",
            entry["tripwire"].as_str().unwrap_or("?"),
            scope_text(&entry["scope"]),
            entry["reason"].as_str().unwrap_or(""),
        ),
        "policy_activated" => format!(
            "Policy version {} activated by {}.",
            entry["version"].as_str().unwrap_or("?"),
            entry["actor"].as_str().unwrap_or("?"),
        ),
        other => other.to_owned(),
    };
    json!({
        "type": kind,
        "timestamp": entry["time"],
        "data": {"ledger_index": index, "entry": entry},
        "text": text,
    })
}

fn scope_text(scope: &Value) -> String {
    let parts: Vec<String> = ["agent", "tool", "action"]
        .iter()
        .filter_map(|k| scope[k].as_str().map(|v| format!("{k} {v}")))
        .collect();
    if parts.is_empty() {
        "everything".into()
    } else {
        parts.join(", ")
    }
}

/// Sends one event until it is taken or every attempt failed, recording each attempt.
async fn send(hook: &Hook, client: &reqwest::Client, index: u64, kind: &str, entry: &Value) {
    let id = format!("msg_reins_{index}");
    let body = message(index, kind, entry).to_string();
    let mut delivery = Delivery {
        webhook_id: id.clone(),
        ledger_index: index,
        event: kind.to_owned(),
        state: "sending".into(),
        attempts: 0,
        last_status: None,
        last_error: None,
        updated_at: crate::timestamp::Timestamp::now(),
    };
    let mut wait = hook.config.backoff;
    loop {
        delivery.attempts += 1;
        let timestamp = crate::timestamp::Timestamp::now()
            .datetime()
            .unix_timestamp();
        let sent = client
            .post(&hook.config.url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                sign(&hook.key, &id, timestamp, body.as_bytes()),
            )
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                delivery.state = "delivered".into();
                delivery.last_status = Some(r.status().as_u16());
                delivery.last_error = None;
            }
            Ok(r) => {
                delivery.last_status = Some(r.status().as_u16());
                delivery.last_error = Some(format!("answered {}", r.status()));
            }
            Err(e) => delivery.last_error = Some(e.to_string()),
        }
        if delivery.state != "delivered" && delivery.attempts >= ATTEMPTS {
            delivery.state = "failed".into();
            tracing::warn!(
                hook = hook.config.name,
                index,
                "webhook given up after {ATTEMPTS} attempts"
            );
        }
        delivery.updated_at = crate::timestamp::Timestamp::now();
        keep(hook, &delivery);
        if delivery.state != "sending" {
            return;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(300));
    }
}

fn keep(hook: &Hook, delivery: &Delivery) {
    if let Ok(mut state) = hook.state.lock() {
        let kept = &mut state.1;
        match kept
            .iter_mut()
            .rev()
            .find(|d| d.webhook_id == delivery.webhook_id)
        {
            Some(d) => *d = delivery.clone(),
            None => {
                kept.push_back(delivery.clone());
                if kept.len() > KEPT {
                    kept.pop_front();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification: same key, id, time and body, same
    /// signature.
    #[test]
    fn signatures_match_the_standard_webhooks_example() {
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let check = |signature: &str, body: &[u8], now: i64| {
            verify(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                signature,
                body,
                now,
                300,
            )
        };
        assert!(check(&signature, body, 1614265330));
        // Tampered body, tampered signature, or too old: refused.
        assert!(!check(&signature, b"{}", 1614265330));
        assert!(!check(&signature.replace('g', "h"), body, 1614265330));
        assert!(!check(&signature, body, 1614265330 + 301));
    }

    #[test]
    fn hooks_name_only_known_events() {
        let hook = HookConfig {
            name: "ops".into(),
            url: "https://hooks.example/x".into(),
            events: vec!["approval_decided".into()],
            secret_file: "s".into(),
            backoff: Duration::from_secs(1),
        };
        assert_eq!(hook.problem(), None);
        assert_eq!(hook.kinds(), ["approval_granted", "approval_denied"]);
        let bad = HookConfig {
            events: vec!["decision".into()],
            ..hook.clone()
        };
        assert!(bad.problem().unwrap().contains("`decision` is not one of"));
        let bad = HookConfig {
            url: "ftp://x".into(),
            ..hook
        };
        assert!(bad.problem().is_some());
    }
}
