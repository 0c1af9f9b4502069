//! Whether the ledger takes appends, and why not: what `/readyz` reports and the sequencer
//! consults.
//!
//! Two kinds of failure, because they differ in what a later success proves:
//! - a commit that failed (disk full, read-only file system, an I/O error on write) rolled back:
//!   nothing of it is stored, and the next commit that is flushed shows the disk works again.
//!   The ledger keeps trying (each decision is a try, and a probe runs while none come) and is
//!   healthy again after the first success, without a restart;
//! - a flush that failed in a way no later flush repairs ([`FlushError::is_transient`] false: the
//!   WAL was replaced, or the fsync itself failed) leaves commits whose durability nothing can
//!   prove any more, so the ledger refuses appends until a restart re-reads what is on disk.
//!
//! Each change of state is logged once, not once per refused decision.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::store::FlushError;

#[derive(Default)]
pub struct Health {
    /// Set once, never cleared: see the module docs.
    permanent: OnceLock<String>,
    /// Whether `transient` holds a failure: read on every batch and flush without the lock.
    degraded: AtomicBool,
    /// The last commit or flush failed; cleared by the next flushed commit.
    transient: Mutex<Option<String>>,
}

impl Health {
    /// Why the ledger does not take appends now, if it does not.
    pub fn failure(&self) -> Option<String> {
        if let Some(why) = self.permanent.get() {
            return Some(why.clone());
        }
        self.transient.lock().ok().and_then(|t| t.clone())
    }

    /// Whether appends are refused until a restart, and why.
    pub fn broken(&self) -> Option<&str> {
        self.permanent.get().map(String::as_str)
    }

    /// Whether appends are refused until a restart.
    pub fn is_broken(&self) -> bool {
        self.permanent.get().is_some()
    }

    /// Whether the last commit or flush failed (and nothing succeeded since).
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Acquire)
    }

    pub fn commit_failed(&self, why: &str) {
        self.set_transient(format!("the last ledger commit failed: {why}"));
    }

    /// A flush failed: transient ones are retried by the next commit, others break the ledger.
    pub fn flush_failed(&self, error: &FlushError) {
        if error.is_transient() {
            self.set_transient(format!("the last ledger flush failed: {error}"));
        } else {
            self.break_permanently(error.to_string());
        }
    }

    pub fn break_permanently(&self, why: String) {
        if self.permanent.set(why.clone()).is_ok() {
            tracing::error!(reason = %why, "the ledger refuses appends until Reins is restarted");
        }
    }

    /// A commit was flushed: the disk takes writes again.
    pub fn flushed(&self) {
        if !self.degraded.load(Ordering::Acquire) {
            return;
        }
        if let Ok(mut t) = self.transient.lock()
            && let Some(was) = t.take()
        {
            self.degraded.store(false, Ordering::Release);
            tracing::warn!(was = %was, "the ledger takes appends again");
        }
    }

    fn set_transient(&self, why: String) {
        if let Ok(mut t) = self.transient.lock() {
            if t.is_none() {
                tracing::error!(reason = %why, "the ledger cannot record entries; denying until a commit succeeds");
            }
            *t = Some(why);
            self.degraded.store(true, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io() -> std::io::Error {
        std::io::Error::other("injected")
    }

    #[test]
    fn a_failed_commit_is_cleared_by_the_next_flush() {
        let health = Health::default();
        assert_eq!(health.failure(), None);
        health.commit_failed("database or disk is full");
        assert!(health.is_degraded() && !health.is_broken());
        assert!(health.failure().unwrap().contains("disk is full"));
        health.flushed();
        assert_eq!(health.failure(), None);
        assert!(!health.is_degraded());
    }

    #[test]
    fn only_a_failure_before_the_fsync_is_retried() {
        let health = Health::default();
        health.flush_failed(&FlushError::Check {
            path: "wal".into(),
            source: io(),
        });
        assert!(health.is_degraded() && !health.is_broken());
        health.flushed();
        assert_eq!(health.failure(), None);

        health.flush_failed(&FlushError::Fsync {
            path: "wal".into(),
            source: io(),
        });
        assert!(health.is_broken());
        health.flushed();
        let why = health.failure().unwrap();
        assert!(why.contains("restart Reins"), "{why}");
        // The first permanent reason stays; later ones do not replace it.
        health.flush_failed(&FlushError::Replaced { path: "wal".into() });
        assert_eq!(health.failure().unwrap(), why);
    }
}
