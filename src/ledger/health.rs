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

use std::sync::{Mutex, OnceLock};

use crate::store::FlushError;

#[derive(Default)]
pub struct Health {
    /// Set once, never cleared: see the module docs.
    permanent: OnceLock<String>,
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

    /// Whether appends are refused until a restart.
    pub fn is_broken(&self) -> bool {
        self.permanent.get().is_some()
    }

    /// Whether the last commit or flush failed (and nothing succeeded since).
    pub fn is_degraded(&self) -> bool {
        self.transient.lock().map(|t| t.is_some()).unwrap_or(true)
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
        if let Ok(mut t) = self.transient.lock()
            && let Some(was) = t.take()
        {
            tracing::warn!(was = %was, "the ledger takes appends again");
        }
    }

    fn set_transient(&self, why: String) {
        if let Ok(mut t) = self.transient.lock() {
            if t.is_none() {
                tracing::error!(reason = %why, "the ledger cannot record entries; denying until a commit succeeds");
            }
            *t = Some(why);
        }
    }
}
