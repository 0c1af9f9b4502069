//! What the domain needs of a ledger: to append entries durably, and to know which context keys
//! it records only as commitments. Domain modules hold a `dyn Sink`, so they can be built and
//! tested on [`MemorySink`] without the sequencer, the syncer or a signing key.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Append, Ledger, LedgerError, LedgerRef};
use crate::tlog::merkle::leaf_hash;

pub type AppendFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<LedgerRef>, LedgerError>> + Send + 'a>>;

pub trait Sink: Send + Sync {
    /// Appends entries atomically, in order, with the state they record; resolves once they are
    /// durable, with where each landed.
    fn append(&self, appends: Vec<Append>) -> AppendFuture<'_>;

    /// [`Sink::append`] for decisions evaluated under a control version (see
    /// [`Ledger::append_evaluated`]); sinks without shared control state ignore it.
    fn append_evaluated(&self, appends: Vec<Append>, _control: Option<u64>) -> AppendFuture<'_> {
        self.append(appends)
    }

    /// The control version whose state this process has loaded: None when there is no shared
    /// control state (a single server holds all of it).
    fn control_version(&self) -> Option<u64> {
        None
    }

    /// Resolves once this process has loaded the control state of `version` (or after a second:
    /// the append that follows then finds out).
    fn wait_control(&self, _version: u64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::ready(()))
    }

    /// Context keys recorded only as salted commitments.
    fn mask(&self) -> &[String];
}

impl Sink for Ledger {
    fn append(&self, appends: Vec<Append>) -> AppendFuture<'_> {
        Box::pin(Ledger::append(self, appends))
    }

    fn append_evaluated(&self, appends: Vec<Append>, control: Option<u64>) -> AppendFuture<'_> {
        Box::pin(Ledger::append_evaluated(self, appends, control))
    }

    fn control_version(&self) -> Option<u64> {
        Ledger::applied_version(self)
    }

    fn wait_control(&self, version: u64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(Ledger::wait_applied(self, version))
    }

    fn mask(&self) -> &[String] {
        Ledger::mask(self)
    }
}

/// Entries kept in memory, in order, with their indices from zero. Nothing is durable and the
/// state an entry records is not written anywhere: for tests of the domain, never for serving.
#[derive(Default)]
pub struct MemorySink {
    entries: Mutex<Vec<(&'static str, Vec<u8>)>>,
    mask: Vec<String>,
    failing: AtomicBool,
}

impl MemorySink {
    pub fn new(mask: Vec<String>) -> Self {
        Self {
            mask,
            ..Self::default()
        }
    }

    /// Every entry appended so far: its kind and bytes.
    pub fn entries(&self) -> Vec<(&'static str, Vec<u8>)> {
        self.entries.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// From now on, refuse (true) or take (false) appends, as a ledger whose disk failed would.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

impl Sink for MemorySink {
    fn append(&self, appends: Vec<Append>) -> AppendFuture<'_> {
        let result = if self.failing.load(Ordering::SeqCst) {
            Err(LedgerError::Unavailable(
                "the memory sink is set to fail".into(),
            ))
        } else {
            match self.entries.lock() {
                Ok(mut entries) => Ok(appends
                    .into_iter()
                    .map(|a| {
                        let reference = LedgerRef::new(entries.len() as u64, &leaf_hash(&a.bytes));
                        entries.push((a.kind, a.bytes));
                        reference
                    })
                    .collect()),
                Err(_) => Err(LedgerError::Unavailable("memory sink poisoned".into())),
            }
        };
        Box::pin(std::future::ready(result))
    }

    fn mask(&self) -> &[String] {
        &self.mask
    }
}
