//! Console sessions: a signed cookie (HMAC-SHA256 under a key derived from the ledger's signing
//! key, so every replica sharing the keys dir accepts it) that names the session, the person, their
//! roles, when the session began and when it was last used. Refreshed on every page, it expires
//! after `console.idle_timeout` without use and `console.absolute_timeout` after sign-in; a session
//! signed out is refused from then on (the sign-out is a ledger entry and a row every replica
//! reads). The CSRF token of every form is derived from the session id with the same key.
//!
//! Hand-rolled over `hmac` rather than a cookie-session crate: the payload is four fields, the
//! key must be derived from the keys dir replicas share, and the sign-out check is Reins's own.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
pub const COOKIE: &str = "reins_console";
const VERSION: &str = "v1";

/// A signed-in person's session, as its cookie carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Random, 128 bits, base64url.
    pub id: String,
    pub person: String,
    pub roles: Vec<String>,
    /// Unix seconds.
    pub started: u64,
    /// Unix seconds of the last use.
    pub seen: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("no session")]
    Missing,
    #[error("the session cookie is not one this server signed")]
    Forged,
    #[error("the session was idle too long")]
    Idle,
    #[error("the session is older than its absolute limit")]
    Expired,
}

/// Seals and opens session cookies, and derives CSRF tokens.
pub struct SessionKeys {
    /// Keyed once; cloned per use.
    keyed: Hmac<Sha256>,
}

impl SessionKeys {
    pub fn new(key: [u8; 32]) -> Result<Self, String> {
        let keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).map_err(|e| e.to_string())?;
        Ok(Self { keyed })
    }

    /// The MAC over `parts`, each followed by a NUL so that no two sequences of parts collide.
    fn mac_of(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        for part in parts {
            mac.update(part);
            mac.update(&[0]);
        }
        mac
    }

    fn mac(&self, parts: &[&[u8]]) -> Vec<u8> {
        self.mac_of(parts).finalize().into_bytes().to_vec()
    }

    /// The cookie value of `session`.
    pub fn seal(&self, session: &Session) -> String {
        let payload = B64.encode(serde_json::to_vec(session).unwrap_or_default());
        let tag = B64.encode(self.mac(&[VERSION.as_bytes(), payload.as_bytes()]));
        format!("{VERSION}.{payload}.{tag}")
    }

    /// The session a cookie value carries, if this server signed it and it is neither idle nor
    /// past its absolute limit at `now`.
    pub fn open(
        &self,
        value: &str,
        now: u64,
        idle: std::time::Duration,
        absolute: std::time::Duration,
    ) -> Result<Session, SessionError> {
        let mut parts = value.split('.');
        let (Some(VERSION), Some(payload), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SessionError::Forged);
        };
        let tag = B64.decode(tag).map_err(|_| SessionError::Forged)?;
        self.mac_of(&[VERSION.as_bytes(), payload.as_bytes()])
            .verify_slice(&tag)
            .map_err(|_| SessionError::Forged)?;
        let session: Session = B64
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(SessionError::Forged)?;
        if now >= session.started.saturating_add(absolute.as_secs()) {
            return Err(SessionError::Expired);
        }
        if now >= session.seen.saturating_add(idle.as_secs()) {
            return Err(SessionError::Idle);
        }
        Ok(session)
    }

    /// The CSRF token of the forms of session `id`.
    pub fn csrf(&self, id: &str) -> String {
        B64.encode(self.mac(&[b"csrf", id.as_bytes()]))
    }

    /// Whether `token` is the CSRF token of session `id` (in constant time).
    pub fn csrf_matches(&self, id: &str, token: &str) -> bool {
        let Ok(tag) = B64.decode(token) else {
            return false;
        };
        self.mac_of(&[b"csrf", id.as_bytes()])
            .verify_slice(&tag)
            .is_ok()
    }
}

/// A new session id: 128 random bits.
pub fn new_id() -> String {
    B64.encode(uuid::Uuid::new_v4().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn session() -> Session {
        Session {
            id: "session-1".into(),
            person: "cora".into(),
            roles: vec!["auditor".into()],
            started: 1_000,
            seen: 1_000,
        }
    }

    #[test]
    fn a_sealed_session_opens_until_idle_or_expired_and_not_once_altered() {
        let keys = SessionKeys::new([7; 32]).unwrap();
        let (idle, absolute) = (Duration::from_secs(60), Duration::from_secs(600));
        let sealed = keys.seal(&session());
        assert_eq!(keys.open(&sealed, 1_030, idle, absolute), Ok(session()));
        assert_eq!(
            keys.open(&sealed, 1_060, idle, absolute),
            Err(SessionError::Idle)
        );
        let mut late = session();
        late.seen = 1_590;
        let late = keys.seal(&late);
        assert_eq!(
            keys.open(&late, 1_600, idle, absolute),
            Err(SessionError::Expired)
        );

        // More roles under the old signature: refused.
        let mut tampered = session();
        tampered.roles.push("admin".into());
        let tag = sealed.rsplit_once('.').unwrap().1;
        let forged = format!(
            "v1.{}.{tag}",
            B64.encode(serde_json::to_vec(&tampered).unwrap())
        );
        assert_eq!(
            keys.open(&forged, 1_030, idle, absolute),
            Err(SessionError::Forged)
        );
        let other = SessionKeys::new([8; 32]).unwrap();
        assert_eq!(
            other.open(&sealed, 1_030, idle, absolute),
            Err(SessionError::Forged)
        );
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let keys = SessionKeys::new([7; 32]).unwrap();
        let token = keys.csrf("a");
        assert!(keys.csrf_matches("a", &token));
        assert!(!keys.csrf_matches("b", &token));
        assert!(!keys.csrf_matches("a", "not-base64!"));
    }
}
