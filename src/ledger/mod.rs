//! The signed append-only ledger: every decision and every administrative change, provable.
//!
//! The ledger appends bytes it does not interpret ([`Append`]: a kind, the exact bytes the leaf
//! hash covers, the state committed with them; [`crate::events`] defines the bytes). One
//! sequencer thread, the database's only writer, batches whatever is queued into a single
//! transaction (group commit): the entry rows, the tree nodes they complete
//! ([`crate::tlog::merkle`]) and the state they record are committed together. A second thread
//! flushes the commits to disk (one fsync for all that are waiting) while the sequencer already
//! commits the next batch; callers get their leaf index, and the tree head moves, only after that
//! flush (`sequencer`). A task signs a C2SP checkpoint ([`crate::tlog::note`]) at most
//! `checkpoint_interval` after new entries and has the sequencer store it; the sequencer signs a
//! last one when it stops. Since all of them follow one in-memory frontier that only grows, two
//! signed checkpoints are always consistent. [`health`] says whether appends are taken;
//! `read` serves entries, proofs and tiles; [`verify`] re-derives everything from the stored
//! bytes.

pub mod health;
mod read;
mod sequencer;
mod sink;
pub mod verify;

pub use read::{ConsistencyProof, InclusionProof, ProofBuilder, ServedEntry, TILE_WIDTH, TilePath};
use sequencer::*;
pub use sink::{AppendFuture, MemorySink, Sink};

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use utoipa::ToSchema;

use crate::config::LedgerConfig;
use crate::store::{self, AppendRow, CheckpointRow, SideEffect, Store, StoreError};
use crate::tlog::merkle::{
    self, Frontier, Hash, ProofError, consistency_ranges, fold, inclusion_ranges, leaf_hash,
    range_nodes,
};
use crate::tlog::note::{Checkpoint, NoteError, NoteSigner};

/// File name of the ledger's Ed25519 signing key in the keys folder, unless configured.
pub const LEDGER_KEY_FILE: &str = "ledger.pem";

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("ledger signing key {path}: {message}")]
    Key { path: String, message: String },
    #[error(transparent)]
    Note(#[from] NoteError),
    #[error("the ledger could not record the entry: {0}")]
    Unavailable(String),
    #[error("the ledger is damaged: {0}; run `reins ledger verify`")]
    Damaged(String),
    #[error("{0}")]
    OutOfRange(String),
    #[error(transparent)]
    Proof(#[from] ProofError),
}

/// Where an entry landed: its index and leaf hash (standard base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LedgerRef {
    pub index: u64,
    pub leaf_hash: String,
}

impl LedgerRef {
    fn new(index: u64, leaf: &Hash) -> Self {
        Self {
            index,
            leaf_hash: B64.encode(leaf),
        }
    }
}

/// Size and root of the committed tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHead {
    pub size: u64,
    pub root: Hash,
}

impl TreeHead {
    fn of(frontier: &Frontier) -> Self {
        Self {
            size: frontier.size(),
            root: frontier.root(),
        }
    }
}

/// One entry to append, with what must be committed with it: its kind (for the store's index),
/// the exact bytes its leaf hash covers, and the state it records. The ledger never looks inside
/// the bytes; [`crate::events`] defines them.
pub struct Append {
    pub kind: &'static str,
    pub bytes: Vec<u8>,
    pub side: SideEffect,
}

pub struct Ledger {
    store: Store,
    jobs: mpsc::Sender<Message>,
    head: watch::Receiver<TreeHead>,
    signer: Arc<NoteSigner>,
    mask: Vec<String>,
    /// The sequencer's thread, and the tasks that follow the tree head.
    sequencer: Mutex<Option<std::thread::JoinHandle<()>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Whether appends are taken, and why not ([`health`]).
    health: Arc<health::Health>,
    /// When this process last signed a checkpoint.
    signed_at: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

impl Ledger {
    /// Loads (or generates, mode 0600) the signing key, checks the stored tree against its last
    /// checkpoint, and starts the sequencer and the checkpoint signer.
    pub async fn open(
        store: Store,
        config: &LedgerConfig,
        keys_dir: &Path,
    ) -> Result<Self, LedgerError> {
        let key_path = config
            .signing_key_file
            .clone()
            .unwrap_or_else(|| keys_dir.join(LEDGER_KEY_FILE));
        let (key, generated) =
            crate::crypto::ed25519_key_file(&key_path, config.signing_key_file.is_none()).map_err(
                |message| LedgerError::Key {
                    path: key_path.display().to_string(),
                    message,
                },
            )?;
        if generated {
            tracing::info!(path = %key_path.display(), "generated ledger signing key (mode 0600)");
        }
        let signer = Arc::new(NoteSigner::new(&config.origin, key)?);

        let size = store.ledger_size().await?;
        let frontier = Frontier::from_nodes(size, store.nodes(&range_nodes(0, size)).await?)
            .ok_or_else(|| {
                LedgerError::Damaged("the stored tree does not match the entry count".into())
            })?;
        let last_signed = match store.latest_checkpoint().await? {
            Some(cp) => {
                let cp_size = cp.tree_size as u64;
                if cp_size > size {
                    return Err(LedgerError::Damaged(format!(
                        "the last checkpoint covers {cp_size} entries but only {size} are stored"
                    )));
                }
                let root = fold(&store.nodes(&range_nodes(0, cp_size)).await?)
                    .unwrap_or_else(merkle::empty_root);
                if root[..] != cp.root_hash[..] {
                    return Err(LedgerError::Damaged(format!(
                        "the tree of size {cp_size} does not match the checkpoint signed for it"
                    )));
                }
                Some(cp_size)
            }
            None => None,
        };
        let head = TreeHead::of(&frontier);
        let writer = store.writer()?;
        tracing::info!(entries = size, vkey = %signer.verifier_key(), "ledger opened");

        let (head_tx, head_rx) = watch::channel(head);
        let (jobs, rx) = mpsc::channel(4096);
        let health = Arc::new(health::Health::default());
        let wal_full = Arc::new(AtomicBool::new(false));
        let thread = |name: &str, run: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(run)
                .map_err(|e| LedgerError::Unavailable(format!("cannot start thread {name}: {e}")))
        };
        let (synced, commits) = std::sync::mpsc::channel();
        // Flush slots, as tokens: the sequencer takes one per commit, the syncer gives it back
        // once that commit is durable.
        let (slot_back, slots) = std::sync::mpsc::sync_channel(UNSYNCED_COMMITS);
        for _ in 0..UNSYNCED_COMMITS {
            let _ = slot_back.send(());
        }
        let syncer = {
            let (wal, health, slot_back) =
                (writer.wal().clone(), health.clone(), slot_back.clone());
            thread(
                "reins-ledger-sync",
                Box::new(move || sync_commits(wal, commits, slot_back, head_tx, health)),
            )?
        };
        let sequencer = Sequencer {
            writer,
            frontier,
            jobs: rx,
            synced,
            syncer,
            slots,
            slot_back,
            flags: Flags {
                health: health.clone(),
                wal_full: wal_full.clone(),
            },
            max_batch: config.max_batch,
            signer: signer.clone(),
            last_signed,
        };
        let sequencer = thread("reins-ledger", Box::new(move || sequencer.run()))?;
        let signed_at = Arc::new(std::sync::Mutex::new(None));
        let checkpointer = tokio::spawn(sign_checkpoints(
            jobs.clone(),
            signer.clone(),
            head_rx.clone(),
            config.checkpoint_interval,
            last_signed,
            signed_at.clone(),
        ));
        let probe = tokio::spawn(probe_while_degraded(jobs.clone(), health.clone()));
        let wal = tokio::spawn(checkpoint_wal(
            store.clone(),
            head_rx.clone(),
            config.wal_limit_mib.saturating_mul(1024 * 1024) / store::PAGE_BYTES,
            wal_full,
        ));
        Ok(Self {
            store,
            jobs,
            head: head_rx,
            signer,
            mask: config.mask.clone(),
            sequencer: Mutex::new(Some(sequencer)),
            tasks: Mutex::new(vec![checkpointer, wal, probe]),
            health,
            signed_at,
        })
    }

    /// Appends entries atomically, in order; returns once they are durable.
    pub async fn append(&self, appends: Vec<Append>) -> Result<Vec<LedgerRef>, LedgerError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Message::Append(Job { appends, reply }))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Stops taking entries, commits what is queued, signs a final checkpoint.
    pub async fn shutdown(&self) {
        let _ = self.jobs.send(Message::Shutdown).await;
        if let Some(thread) = self.sequencer.lock().await.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        for task in std::mem::take(&mut *self.tasks.lock().await) {
            let _ = task.await;
        }
    }

    /// Why the ledger does not take appends now, if it does not (see [`health`]).
    pub fn failure(&self) -> Option<String> {
        self.health.failure()
    }

    pub fn head(&self) -> TreeHead {
        *self.head.borrow()
    }

    /// JSON pointers into a decision's context whose values are stored as commitments.
    pub fn mask(&self) -> &[String] {
        &self.mask
    }

    /// Time since this process last signed a checkpoint (None before the first).
    pub fn checkpoint_age(&self) -> Option<Duration> {
        self.signed_at
            .lock()
            .ok()
            .and_then(|at| at.map(|t| t.elapsed()))
    }

    /// The ledger's signer: also signs audit-pack manifests, so one key vouches for both.
    pub fn signer(&self) -> &Arc<NoteSigner> {
        &self.signer
    }

    /// The verifier key string (C2SP vkey).
    pub fn verifier_key(&self) -> String {
        self.signer.verifier_key()
    }

    /// The latest signed checkpoint note.
    pub async fn checkpoint(&self) -> Result<Option<String>, LedgerError> {
        Ok(self.store.latest_checkpoint().await?.map(|c| c.note))
    }
}
