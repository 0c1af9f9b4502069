//! `Idempotency-Key`: a client that did not get an answer (a timeout, a dropped connection) may
//! ask again with the same key and get the decision that was recorded, not a second entry.
//!
//! The key is scoped to the asking agent and lives `idempotency_window` (default 24 hours). The
//! decision row keeps the key and the SHA-256 of the request it answered (canonical JSON of the
//! request and the store), so a retry survives a restart; the same key with another request is a
//! conflict. Requests with one key are taken one at a time, so two concurrent retries cannot both
//! be recorded. A decision that was not recorded (`ledger_unavailable`) left no row, and a retry
//! decides afresh.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::*;
use crate::timestamp::Timestamp;

/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 255;

/// A client's idempotency key: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters")]
pub struct BadIdempotencyKey;

impl FromStr for IdempotencyKey {
    type Err = BadIdempotencyKey;
    fn from_str(s: &str) -> Result<Self, BadIdempotencyKey> {
        if s.is_empty() || s.len() > MAX_KEY_LEN || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(BadIdempotencyKey);
        }
        Ok(Self(s.to_owned()))
    }
}

impl IdempotencyKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a decision row records of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: IdempotencyKey,
    pub request_digest: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    #[error("Idempotency-Key `{0}` was used for a different request within the idempotency window")]
    Conflict(String),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a keyed decision was answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Keyed {
    /// Decided and recorded now.
    Decided(Decision),
    /// Recorded earlier under the same key, for the same request: answered again.
    Replayed(Decision),
}

/// An agent's key.
type Slot = (AgentId, IdempotencyKey);

/// Keys being decided right now, each with a lock that queues its retries.
#[derive(Default)]
pub(super) struct InFlight(Mutex<HashMap<Slot, Arc<tokio::sync::Mutex<()>>>>);

impl InFlight {
    fn lock_of(&self, slot: &Slot) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(slot.clone()).or_default().clone()
    }

    /// Forgets the slot's lock when nobody else holds or waits for it.
    fn release(&self, slot: &Slot, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Two references: the map's and ours.
        if Arc::strong_count(&lock) <= 2 {
            map.remove(slot);
        }
    }
}

/// SHA-256 of what a key binds: the store and the request, canonical JSON.
fn request_digest(target: &Target, request: &DecisionRequest) -> String {
    let bound = serde_json::json!({ "store": target.store_name(), "request": request });
    let canonical = crate::tlog::canonical::to_vec(&bound).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(canonical)))
}

impl Pipeline {
    /// Decides `request` once per `key`: the first time it is evaluated and recorded with the key;
    /// a retry within the window gets the recorded decision, or a conflict if the request differs.
    pub async fn decide_keyed(
        &self,
        target: Target,
        caller: &Caller,
        request: DecisionRequest,
        key: IdempotencyKey,
    ) -> Result<Keyed, IdempotencyError> {
        let request_digest = request_digest(&target, &request);
        let slot = (caller.agent.clone(), key);
        let lock = self.in_flight.lock_of(&slot);
        let answer = async {
            let _one_at_a_time = lock.lock().await;
            let since = Timestamp::now().minus(self.idempotency_window);
            if let Some(row) = self
                .store
                .decision_by_idempotency_key(&slot.0, slot.1.as_str(), since)
                .await?
            {
                if row.request_digest.as_deref() != Some(request_digest.as_str()) {
                    return Err(IdempotencyError::Conflict(slot.1.as_str().to_owned()));
                }
                return Ok(Keyed::Replayed(record_of(&row)?.decision));
            }
            let idempotency = Idempotency {
                key: slot.1.clone(),
                request_digest,
            };
            let decision = self
                .decide_recorded(target, caller, request, Some(idempotency))
                .await?;
            Ok(Keyed::Decided(decision))
        }
        .await;
        self.in_flight.release(&slot, lock);
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii() {
        assert!("retry-2026-11-30/abc".parse::<IdempotencyKey>().is_ok());
        assert!("".parse::<IdempotencyKey>().is_err());
        assert!("has space".parse::<IdempotencyKey>().is_err());
        assert!("é".parse::<IdempotencyKey>().is_err());
        assert!(
            "x".repeat(MAX_KEY_LEN + 1)
                .parse::<IdempotencyKey>()
                .is_err()
        );
    }
}
