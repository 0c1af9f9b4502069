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

pub mod activity;
pub mod health;
mod read;
mod sequencer;
mod shared;
mod sink;
pub mod verify;

pub use read::{ConsistencyProof, InclusionProof, ProofBuilder, ServedEntry, TILE_WIDTH, TilePath};
use sequencer::*;
pub use shared::ControlSeen;
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

use crate::config::{DatabaseConfig, LedgerConfig};
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
    /// On a shared ledger: the decisions were evaluated under an older control version than the
    /// database's (this one); evaluate them again once the replica has caught up.
    #[error("the control state changed (now version {0}) while the decision was evaluated")]
    Stale(u64),
    /// On a shared ledger: this many entries wait for integration, more than the limit.
    #[error("the ledger's integration backlog ({0} entries) is over its limit")]
    Backlog(u64),
    /// On a shared ledger: an approval the append changes was changed first by another decision
    /// or replica.
    #[error("{0}")]
    Conflict(String),
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
    /// The larger of two heads of one tree.
    fn max_by_size(self, other: Self) -> Self {
        if other.size > self.size { other } else { self }
    }

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
    /// Whether the entry changes what later decisions see (see `events::is_control_kind`).
    pub control: bool,
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
    /// On a shared ledger: what this replica last read of the shared counters.
    follow: Option<Arc<shared::Follow>>,
    /// On a single server: what the write path is doing ([`activity`]), for `api::slow`'s log
    /// of slow answers.
    activity: Option<Arc<activity::Activity>>,
}

impl Ledger {
    /// Loads (or generates, mode 0600) the signing key and starts the writers: on SQLite the
    /// sequencer and the checkpoint signer ([`Ledger::open_local`]), on PostgreSQL the batcher,
    /// integrator and follower of a shared ledger (`shared`).
    pub async fn open(
        store: Store,
        config: &LedgerConfig,
        database: &DatabaseConfig,
        keys_dir: &Path,
    ) -> Result<Self, LedgerError> {
        let signer = Arc::new(Self::load_signer(config, keys_dir)?);
        let Some(pool) = store.postgres().cloned() else {
            return Self::open_local(store, config, signer).await;
        };
        let (head_tx, head) = watch::channel(TreeHead {
            size: 0,
            root: merkle::empty_root(),
        });
        let (jobs, rx) = mpsc::channel(4096);
        let health = Arc::new(health::Health::default());
        let signed_at = Arc::new(std::sync::Mutex::new(None));
        let started = shared::start(
            &store,
            pool,
            rx,
            head_tx,
            health.clone(),
            signer.clone(),
            shared::Settings {
                max_batch: config.max_batch,
                backlog_limit: database.backlog_limit,
                poll: database.control_poll,
                max_staleness: database.control_max_staleness,
                checkpoint_interval: config.checkpoint_interval,
            },
            signed_at.clone(),
        )
        .await?;
        let mut tasks = started.tasks;
        tasks.push(tokio::spawn(probe_while_degraded(
            jobs.clone(),
            health.clone(),
        )));
        tracing::info!(entries = head.borrow().size, vkey = %signer.verifier_key(), "shared ledger opened");
        Ok(Self {
            store,
            jobs,
            head,
            signer,
            mask: config.mask.clone(),
            sequencer: Mutex::new(None),
            tasks: Mutex::new(tasks),
            health,
            signed_at,
            follow: Some(started.follow),
            activity: None,
        })
    }

    fn load_signer(config: &LedgerConfig, keys_dir: &Path) -> Result<NoteSigner, LedgerError> {
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
        Ok(NoteSigner::new(&config.origin, key)?)
    }

    /// A single server's ledger on SQLite: checks the stored tree against its last checkpoint,
    /// and starts the sequencer and the checkpoint signer.
    async fn open_local(
        store: Store,
        config: &LedgerConfig,
        signer: Arc<NoteSigner>,
    ) -> Result<Self, LedgerError> {
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
        let activity = Arc::new(activity::Activity::default());
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
            let (wal, health, slot_back, activity) = (
                writer.wal().clone(),
                health.clone(),
                slot_back.clone(),
                activity.clone(),
            );
            thread(
                "reins-ledger-sync",
                Box::new(move || sync_commits(wal, commits, slot_back, head_tx, health, activity)),
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
                activity: activity.clone(),
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
            activity.clone(),
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
            follow: None,
            activity: Some(activity),
        })
    }

    /// Appends entries atomically, in order; returns once they are durable.
    pub async fn append(&self, appends: Vec<Append>) -> Result<Vec<LedgerRef>, LedgerError> {
        self.append_evaluated(appends, None).await
    }

    /// [`Ledger::append`] for decisions evaluated under `control_version` (on a shared ledger:
    /// refused with [`LedgerError::Stale`] if the control state moved on since).
    pub async fn append_evaluated(
        &self,
        appends: Vec<Append>,
        evaluated_under: Option<u64>,
    ) -> Result<Vec<LedgerRef>, LedgerError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Message::Append(Job {
                appends,
                reply,
                evaluated_under,
            }))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// On a shared ledger, the control version as this replica last read it, and when; None on
    /// a single server's ledger (its control state is all in this process).
    pub fn control(&self) -> Option<watch::Receiver<ControlSeen>> {
        self.follow.as_ref().map(|f| f.control.subscribe())
    }

    /// The tree head, read again from the database on a shared ledger (another replica may have
    /// integrated more since this one's last read); the cached head on a single server.
    pub async fn refresh_head(&self) -> Result<TreeHead, LedgerError> {
        let (Some(follow), Some(pool)) = (&self.follow, self.store.postgres()) else {
            return Ok(self.head());
        };
        let state = crate::store::shared::state(pool).await?;
        let head = TreeHead {
            size: state.tree_size,
            root: state.root,
        };
        follow.advance(head);
        Ok(self.head().max_by_size(head))
    }

    /// Entries recorded: on a single server the tree's size; on a shared ledger the entries
    /// sequenced as this replica last saw them (the tree follows within milliseconds).
    pub fn size(&self) -> u64 {
        match &self.follow {
            Some(f) => f.next.load(Ordering::Acquire),
            None => self.head().size,
        }
    }

    /// The number of entries readable now, for a request that needs `wanted`: the tree's size
    /// on a single server; on a shared ledger every sequenced (committed) entry, read again from
    /// the database when the request goes beyond what this replica last saw.
    pub(crate) async fn readable(&self, wanted: u64) -> Result<u64, LedgerError> {
        let (Some(follow), Some(pool)) = (&self.follow, self.store.postgres()) else {
            return Ok(self.head().size);
        };
        let seen = follow.next.load(Ordering::Acquire);
        if wanted <= seen {
            return Ok(seen);
        }
        let state = crate::store::shared::state(pool).await?;
        follow.next.fetch_max(state.next, Ordering::AcqRel);
        Ok(state.next)
    }

    /// On a shared ledger, the control version whose state this replica has loaded.
    pub fn applied_version(&self) -> Option<u64> {
        self.follow.as_ref().map(|f| *f.applied.borrow())
    }

    /// Records that this replica has loaded the control state of `version`.
    pub fn set_applied(&self, version: u64) {
        if let Some(f) = &self.follow {
            f.applied.send_if_modified(|v| {
                let newer = version > *v;
                if newer {
                    *v = version;
                }
                newer
            });
        }
    }

    /// Waits (at most a second) until this replica has loaded the control state of `version`.
    pub async fn wait_applied(&self, version: u64) {
        if let Some(f) = &self.follow {
            let mut applied = f.applied.subscribe();
            let _ =
                tokio::time::timeout(Duration::from_secs(1), applied.wait_for(|v| *v >= version))
                    .await;
        }
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
        self.health
            .failure()
            .or_else(|| self.follow.as_ref().and_then(|f| f.staleness()))
    }

    pub fn head(&self) -> TreeHead {
        *self.head.borrow()
    }

    /// JSON pointers into a decision's context whose values are stored as commitments.
    pub fn mask(&self) -> &[String] {
        &self.mask
    }

    /// What a single server's write path is doing (None on PostgreSQL, whose write path is the
    /// database's).
    pub fn activity(&self) -> Option<&activity::Activity> {
        self.activity.as_deref()
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

    /// The latest signed checkpoint note. On a shared ledger, the fork guard remembers its size.
    pub async fn checkpoint(&self) -> Result<Option<String>, LedgerError> {
        let latest = self.store.latest_checkpoint().await?;
        if let (Some(follow), Some(c)) = (&self.follow, &latest) {
            follow
                .served
                .fetch_max(c.tree_size as u64, Ordering::AcqRel);
        }
        Ok(latest.map(|c| c.note))
    }
}
