//! The signed append-only ledger: every decision and every administrative change, provable.
//!
//! Entries ([`entry`]) are appended by one sequencer thread, the database's only writer, which
//! batches whatever is queued into a single transaction (group commit): the entry rows, the tree
//! nodes they complete ([`merkle`]) and the state they record (a decision row, a registry record)
//! are committed together. A second thread flushes the commits to disk (one fsync for all that are
//! waiting) while the sequencer already commits the next batch; callers get their leaf index, and
//! the tree head moves, only after that flush. A task signs a C2SP checkpoint ([`note`]) at most
//! `checkpoint_interval` after new entries and has the sequencer store it; the sequencer signs a
//! last one when it stops. Since all of them follow one in-memory frontier that only grows, two
//! signed checkpoints are always consistent.
//! [`verify`] re-derives everything from the stored bytes.

pub mod health;
pub mod verify;

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

#[cfg(test)]
mod tests {
    use super::TilePath;

    #[test]
    fn tile_paths_follow_c2sp() {
        assert_eq!(
            TilePath::parse("0/000"),
            Some(TilePath::Hashes {
                level: 0,
                index: 0,
                width: 256
            })
        );
        assert_eq!(
            TilePath::parse("1/x001/x234/067.p/8"),
            Some(TilePath::Hashes {
                level: 1,
                index: 1_234_067,
                width: 8
            })
        );
        assert_eq!(
            TilePath::parse("entries/x001/002"),
            Some(TilePath::Entries {
                index: 1002,
                width: 256
            })
        );
        for bad in [
            "0/1",
            "0/0001",
            "0/001.p/256",
            "0/001.p/0",
            "0/001.p/08",
            "01/000",
            "x/000",
            "0/001/002",
            "entries/x1/002",
        ] {
            assert_eq!(TilePath::parse(bad), None, "{bad}");
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InclusionProof {
    pub index: u64,
    pub tree_size: u64,
    pub leaf_hash: String,
    pub hashes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    pub hashes: Vec<String>,
}

/// An entry as served: its index, leaf hash, the exact hashed bytes and their JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServedEntry {
    pub index: u64,
    pub leaf_hash: String,
    /// The exact bytes the leaf hash covers, standard base64.
    pub entry_bytes: String,
    #[schema(value_type = Object)]
    pub entry: serde_json::Value,
}

/// Where a job's outcome goes: its entries' positions, or why they were not recorded.
type Reply = oneshot::Sender<Result<Vec<LedgerRef>, LedgerError>>;

struct Job {
    appends: Vec<Append>,
    reply: Reply,
}

enum Message {
    Append(Job),
    /// A signed checkpoint to store; answered once it is durable.
    Checkpoint(CheckpointRow, oneshot::Sender<Result<(), LedgerError>>),
    /// Try a write, to learn whether the disk takes them again ([`probe_while_degraded`]).
    Probe,
    Shutdown,
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

    fn check_size(&self, size: u64) -> Result<(), LedgerError> {
        let current = self.head().size;
        if size > current {
            return Err(LedgerError::OutOfRange(format!(
                "tree size {size} is larger than the ledger ({current} entries)"
            )));
        }
        Ok(())
    }

    /// The hash of each range, from one read of all the nodes they need.
    async fn range_hashes(&self, ranges: &[(u64, u64)]) -> Result<Vec<String>, LedgerError> {
        let per_range: Vec<Vec<merkle::NodeId>> = ranges
            .iter()
            .map(|(lo, hi)| range_nodes(*lo, *hi))
            .collect();
        let all: Vec<merkle::NodeId> = per_range.iter().flatten().copied().collect();
        let mut hashes = self.store.nodes(&all).await?.into_iter();
        per_range
            .iter()
            .map(|ids| {
                let range: Vec<Hash> = hashes.by_ref().take(ids.len()).collect();
                fold(&range)
                    .map(|h| B64.encode(h))
                    .ok_or_else(|| LedgerError::Damaged("an empty proof range".into()))
            })
            .collect()
    }

    pub async fn inclusion_proof(
        &self,
        index: u64,
        tree_size: u64,
    ) -> Result<InclusionProof, LedgerError> {
        self.check_size(tree_size)?;
        let ranges = inclusion_ranges(index, tree_size)?;
        let leaf = self
            .store
            .nodes(&[merkle::NodeId { level: 0, index }])
            .await?;
        Ok(InclusionProof {
            index,
            tree_size,
            leaf_hash: B64.encode(leaf[0]),
            hashes: self.range_hashes(&ranges).await?,
        })
    }

    pub async fn consistency_proof(
        &self,
        from: u64,
        to: u64,
    ) -> Result<ConsistencyProof, LedgerError> {
        self.check_size(to)?;
        let ranges = consistency_ranges(from, to)?;
        Ok(ConsistencyProof {
            from,
            to,
            hashes: self.range_hashes(&ranges).await?,
        })
    }

    /// Entries `[start, end)`, at most `limit` of them.
    pub async fn entries(&self, start: u64, end: u64) -> Result<Vec<ServedEntry>, LedgerError> {
        let end = end.min(self.head().size);
        let rows = self.store.entries(start, end).await?;
        rows.into_iter()
            .map(|row| {
                let entry = serde_json::from_slice(&row.entry)
                    .map_err(|e| LedgerError::Damaged(format!("entry {}: {e}", row.idx)))?;
                Ok(ServedEntry {
                    index: row.idx as u64,
                    leaf_hash: B64.encode(leaf_hash(&row.entry)),
                    entry_bytes: B64.encode(&row.entry),
                    entry,
                })
            })
            .collect()
    }
}

/// Builds many proofs against one tree size straight from a store (no running ledger needed),
/// remembering every range hash it computes: proofs for neighbouring entries share most of theirs,
/// so an audit pack of N contiguous entries reads about 2N nodes, not N log N.
pub struct ProofBuilder {
    store: Store,
    size: u64,
    cache: std::collections::HashMap<(u64, u64), Hash>,
}

/// Node ids per query: one bound value each, well under SQLite's 32,766.
const NODES_PER_QUERY: usize = 8_000;

impl ProofBuilder {
    pub fn new(store: Store, size: u64) -> Self {
        Self {
            store,
            size,
            cache: Default::default(),
        }
    }

    /// Inclusion proofs for `indices` (RFC 9162 order), against the builder's tree size.
    pub async fn inclusion(&mut self, indices: &[u64]) -> Result<Vec<Vec<Hash>>, LedgerError> {
        let ranges = indices
            .iter()
            .map(|&i| inclusion_ranges(i, self.size))
            .collect::<Result<Vec<_>, _>>()?;
        self.fill(ranges.iter().flatten()).await?;
        Ok(ranges.iter().map(|r| self.hashes(r)).collect())
    }

    /// The consistency proof from `from` to the builder's tree size.
    pub async fn consistency(&mut self, from: u64) -> Result<Vec<Hash>, LedgerError> {
        let ranges = consistency_ranges(from, self.size)?;
        self.fill(ranges.iter()).await?;
        Ok(self.hashes(&ranges))
    }

    fn hashes(&self, ranges: &[(u64, u64)]) -> Vec<Hash> {
        ranges
            .iter()
            .filter_map(|r| self.cache.get(r).copied())
            .collect()
    }

    async fn fill(&mut self, ranges: impl Iterator<Item = &(u64, u64)>) -> Result<(), LedgerError> {
        let mut missing: Vec<(u64, u64)> = ranges
            .filter(|r| !self.cache.contains_key(r))
            .copied()
            .collect();
        missing.sort_unstable();
        missing.dedup();
        let mut batch: Vec<((u64, u64), usize)> = Vec::new();
        let mut ids = Vec::new();
        for range in missing {
            let nodes = range_nodes(range.0, range.1);
            if ids.len() + nodes.len() > NODES_PER_QUERY && !ids.is_empty() {
                self.fetch(&mut batch, &mut ids).await?;
            }
            batch.push((range, nodes.len()));
            ids.extend(nodes);
        }
        self.fetch(&mut batch, &mut ids).await
    }

    async fn fetch(
        &mut self,
        batch: &mut Vec<((u64, u64), usize)>,
        ids: &mut Vec<merkle::NodeId>,
    ) -> Result<(), LedgerError> {
        let mut hashes = self.store.nodes(ids).await?.into_iter();
        for (range, n) in batch.drain(..) {
            let part: Vec<Hash> = hashes.by_ref().take(n).collect();
            let hash =
                fold(&part).ok_or_else(|| LedgerError::Damaged("an empty proof range".into()))?;
            self.cache.insert(range, hash);
        }
        ids.clear();
        Ok(())
    }
}

/// C2SP tlog-tiles: tiles are 2^8 hashes wide.
pub const TILE_WIDTH: u64 = 256;

impl Ledger {
    /// The hash tile at tile level `level`, index `index`, with its first `width` hashes: the stored
    /// subtrees of height `8 * level`. None if the tree does not have them yet.
    pub async fn tile(
        &self,
        level: u8,
        index: u64,
        width: u64,
    ) -> Result<Option<Vec<u8>>, LedgerError> {
        let height = u32::from(level) * 8;
        if height >= 64 {
            return Ok(None);
        }
        let available = self.head().size >> height;
        let (lo, hi) = (
            index.saturating_mul(TILE_WIDTH),
            index.saturating_mul(TILE_WIDTH).saturating_add(width),
        );
        if hi > available {
            return Ok(None);
        }
        let nodes = self.store.nodes_at_level(height as u8, lo, hi).await?;
        if nodes.len() as u64 != width {
            return Err(LedgerError::Damaged(format!(
                "tile {level}/{index} is missing stored hashes"
            )));
        }
        Ok(Some(nodes.into_iter().flat_map(|(_, h)| h).collect()))
    }

    /// The entry bundle `index` with its first `width` entries, each prefixed by its length as a
    /// big-endian u16. None if the ledger does not have them yet.
    pub async fn entry_bundle(
        &self,
        index: u64,
        width: u64,
    ) -> Result<Option<Vec<u8>>, LedgerError> {
        let (lo, hi) = (
            index.saturating_mul(TILE_WIDTH),
            index.saturating_mul(TILE_WIDTH).saturating_add(width),
        );
        if hi > self.head().size {
            return Ok(None);
        }
        let mut bundle = Vec::new();
        for row in self.store.entries(lo, hi).await? {
            let len = u16::try_from(row.entry.len()).map_err(|_| {
                LedgerError::Damaged(format!("entry {} is too long for a bundle", row.idx))
            })?;
            bundle.extend_from_slice(&len.to_be_bytes());
            bundle.extend_from_slice(&row.entry);
        }
        Ok(Some(bundle))
    }
}

/// A parsed C2SP tlog-tiles path below `tile/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TilePath {
    Hashes { level: u8, index: u64, width: u64 },
    Entries { index: u64, width: u64 },
}

impl TilePath {
    /// Parses `<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]`, N in 3-digit groups (`x001/x234/067`).
    pub fn parse(path: &str) -> Option<Self> {
        let (kind, rest) = path.split_once('/')?;
        let (body, width) = match rest.split_once(".p/") {
            Some((body, w)) => (
                body,
                w.parse::<u64>()
                    .ok()
                    .filter(|w| (1..TILE_WIDTH).contains(w))
                    .filter(|_| !w.starts_with('0'))?,
            ),
            None => (rest, TILE_WIDTH),
        };
        let groups: Vec<&str> = body.split('/').collect();
        let mut index: u64 = 0;
        for (i, group) in groups.iter().enumerate() {
            let digits = if i + 1 < groups.len() {
                group.strip_prefix('x')?
            } else {
                group
            };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            index = index.checked_mul(1000)?.checked_add(digits.parse().ok()?)?;
        }
        match kind {
            "entries" => Some(Self::Entries { index, width }),
            level => {
                let level: u8 = level.parse().ok().filter(|l: &u8| *l < 8)?;
                (level.to_string() == kind).then_some(Self::Hashes {
                    level,
                    index,
                    width,
                })
            }
        }
    }
}

/// Commits the sequencer may have made that are not yet durable. Two lets commit N+1 run while
/// commit N is being flushed, and no more: waiting for the flush is also what lets the next
/// batch grow (each commit rewrites whole pages, so many small ones cost more than a few large).
const UNSYNCED_COMMITS: usize = 2;

fn stopped() -> LedgerError {
    LedgerError::Unavailable("the ledger writer has stopped".into())
}

/// Who waits on a commit, and what they get once it is durable.
enum Waiter {
    Append(Reply, Vec<LedgerRef>),
    Checkpoint(oneshot::Sender<Result<(), LedgerError>>),
}

impl Waiter {
    fn answer(self, result: &Result<(), String>) {
        let failed = |e: &String| LedgerError::Unavailable(e.clone());
        match self {
            Waiter::Append(reply, refs) => {
                let _ = reply.send(result.as_ref().map(|()| refs).map_err(failed));
            }
            Waiter::Checkpoint(reply) => {
                let _ = reply.send(result.clone().map_err(|e| failed(&e)));
            }
        }
    }
}

/// A commit made by the sequencer, waiting for [`sync_commits`] to make it durable.
struct Committed {
    head: TreeHead,
    waiters: Vec<Waiter>,
}

/// What the other tasks tell the sequencer.
struct Flags {
    /// Whether to refuse appends (a flush failed for good), and where commit failures go.
    health: Arc<health::Health>,
    /// The WAL reached its limit: restart it after the next commit.
    wal_full: Arc<AtomicBool>,
}

/// The sequencer: one thread, the database's only writer, so indices are assigned in commit
/// order. Each loop commits every message queued at that moment (up to `max_batch` entries) in
/// one transaction, and hands the commit to [`sync_commits`] on a second thread.
///
/// Threads, not tasks: a commit is blocking work from start to end, and on a thread of its own
/// the connection, the batch and the flush need no hand-off through the async runtime (each of
/// which, under load, waits for a core).
struct Sequencer {
    writer: store::Writer,
    frontier: Frontier,
    jobs: mpsc::Receiver<Message>,
    /// Commits to [`sync_commits`], on its thread.
    synced: std::sync::mpsc::Sender<Committed>,
    syncer: std::thread::JoinHandle<()>,
    /// Flush slots (see [`UNSYNCED_COMMITS`]): taken per commit, given back by the syncer once the
    /// commit is durable, or here when a commit fails.
    slots: std::sync::mpsc::Receiver<()>,
    slot_back: std::sync::mpsc::SyncSender<()>,
    flags: Flags,
    max_batch: usize,
    signer: Arc<NoteSigner>,
    /// The largest tree a stored checkpoint covers.
    last_signed: Option<u64>,
}

/// One loop's messages.
#[derive(Default)]
struct Batch {
    jobs: Vec<Job>,
    checkpoints: Vec<(CheckpointRow, oneshot::Sender<Result<(), LedgerError>>)>,
    entries: usize,
    probe: bool,
}

impl Batch {
    /// Adds a message; false if it was the one that says to stop.
    fn add(&mut self, message: Message) -> bool {
        match message {
            Message::Append(job) => {
                self.entries += job.appends.len();
                self.jobs.push(job);
            }
            Message::Checkpoint(row, reply) => self.checkpoints.push((row, reply)),
            Message::Probe => self.probe = true,
            Message::Shutdown => return false,
        }
        true
    }

    fn refuse(self, why: &str) {
        for job in self.jobs {
            let _ = job.reply.send(Err(LedgerError::Unavailable(why.into())));
        }
        for (_, reply) in self.checkpoints {
            let _ = reply.send(Err(LedgerError::Unavailable(why.into())));
        }
    }
}

impl Sequencer {
    fn run(mut self) {
        let mut stopping = false;
        while !stopping {
            let mut batch = Batch::default();
            let Some(message) = self.jobs.blocking_recv() else {
                break;
            };
            if !batch.add(message) {
                break;
            }
            if let Some(why) = self
                .flags
                .health
                .failure()
                .filter(|_| self.flags.health.is_broken())
            {
                batch.refuse(&why);
                continue;
            }
            // Wait for a flush slot before draining the queue: what arrives meanwhile joins
            // this batch. The sequencer holds a sender of slots too, so a syncer that died
            // (it should not) would not close the channel: look at it now and then.
            let slot = loop {
                match self.slots.recv_timeout(Duration::from_millis(100)) {
                    Ok(()) => break true,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                        if !self.syncer.is_finished() => {}
                    Err(_) => break false,
                }
            };
            if !slot {
                tracing::error!("the ledger's flush thread stopped; refusing appends");
                let why = "the ledger's flush thread stopped; restart Reins";
                self.flags.health.break_permanently(why.into());
                batch.refuse(why);
                break;
            }
            while batch.entries < self.max_batch {
                match self.jobs.try_recv() {
                    Ok(message) => {
                        if !batch.add(message) {
                            stopping = true;
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            match self.commit(batch) {
                Some(commit) => {
                    if self.synced.send(commit).is_err() {
                        break;
                    }
                    if self.flags.wal_full.swap(false, Ordering::AcqRel) {
                        match self.writer.restart_wal() {
                            Ok(wal) => tracing::debug!(
                                frames = wal.frames,
                                copied = wal.copied,
                                "WAL checkpointed by the writer"
                            ),
                            Err(error) => {
                                tracing::warn!(%error, "the writer could not checkpoint the WAL")
                            }
                        }
                    }
                }
                // Nothing to flush: the slot is free again.
                None => {
                    let _ = self.slot_back.send(());
                }
            }
        }
        // Let the syncer flush and answer what was committed, then sign the final tree.
        let Self {
            writer,
            frontier,
            synced,
            syncer,
            flags,
            signer,
            last_signed,
            ..
        } = self;
        drop(synced);
        let _ = syncer.join();
        if !flags.health.is_broken() {
            sign_final_checkpoint(writer, &frontier, &signer, last_signed);
        }
    }

    /// Sequences and commits one batch; the commit to flush, or None if it failed (its callers
    /// are answered here).
    fn commit(&mut self, batch: Batch) -> Option<Committed> {
        let Batch {
            mut jobs,
            checkpoints,
            entries,
            probe,
        } = batch;
        let mut next = self.frontier.clone();
        let mut rows = Vec::with_capacity(entries);
        let mut answers = Vec::with_capacity(jobs.len());
        for job in &mut jobs {
            let mut refs = Vec::with_capacity(job.appends.len());
            for append in job.appends.drain(..) {
                let leaf = leaf_hash(&append.bytes);
                let index = next.size();
                let nodes = next.append(leaf);
                refs.push(LedgerRef::new(index, &leaf));
                rows.push(AppendRow {
                    index,
                    kind: append.kind,
                    entry: append.bytes,
                    nodes,
                    side: append.side,
                });
            }
            answers.push(refs);
        }
        let (checkpoint_rows, checkpoint_replies): (Vec<_>, Vec<_>) =
            checkpoints.into_iter().unzip();
        let waiters: Vec<Waiter> = jobs
            .into_iter()
            .zip(answers)
            .map(|(job, refs)| Waiter::Append(job.reply, refs))
            .chain(checkpoint_replies.into_iter().map(Waiter::Checkpoint))
            .collect();
        let started = std::time::Instant::now();
        // A probe alone writes its row; with anything else the batch's own commit is the test.
        let committed = if probe && rows.is_empty() && checkpoint_rows.is_empty() {
            self.writer.probe()
        } else {
            self.writer.commit(&rows, &checkpoint_rows)
        };
        let metrics = crate::telemetry::metrics();
        metrics
            .ledger_append_duration
            .record(started.elapsed().as_secs_f64(), &[]);
        metrics.ledger_batch_size.record(rows.len() as u64, &[]);
        match committed {
            Ok(()) => {
                self.frontier = next;
                if let Some(largest) = checkpoint_rows.iter().map(|c| c.tree_size as u64).max() {
                    self.last_signed = self.last_signed.max(Some(largest));
                }
                Some(Committed {
                    head: TreeHead::of(&self.frontier),
                    waiters,
                })
            }
            // The transaction rolled back, so the stored tree is still `self.frontier`.
            Err(error) => {
                tracing::debug!(%error, entries = rows.len(), "ledger commit failed");
                self.flags.health.commit_failed(&error.to_string());
                let failed = Err(error.to_string());
                for waiter in waiters {
                    waiter.answer(&failed);
                }
                None
            }
        }
    }
}

/// Signs and stores a checkpoint of the tree as the sequencer leaves it, unless one is stored
/// already. Runs after the syncer has stopped, so it flushes on its own.
fn sign_final_checkpoint(
    mut writer: store::Writer,
    frontier: &Frontier,
    signer: &NoteSigner,
    last_signed: Option<u64>,
) {
    let head = TreeHead::of(frontier);
    if last_signed == Some(head.size) {
        return;
    }
    let stored = checkpoint_row(signer, head).and_then(|row| {
        writer.commit(&[], &[row])?;
        writer
            .wal()
            .sync()
            .map_err(|e| LedgerError::Unavailable(e.to_string()))?;
        Ok(())
    });
    if let Err(error) = stored {
        tracing::error!(%error, "cannot sign the final checkpoint");
    }
}

/// Makes the sequencer's commits durable, in order: one fsync of the WAL for every commit waiting
/// when it starts. Only then does the tree head move (so a checkpoint never signs an entry a crash
/// could lose) and do callers get their answers. A failed flush answers its commits' callers
/// deny; whether a later flush may vouch for them is [`health`]'s call (only a failure before the
/// fsync ran is retried; after a failed fsync the ledger refuses appends until a restart).
fn sync_commits(
    wal: store::Wal,
    commits: std::sync::mpsc::Receiver<Committed>,
    slots: std::sync::mpsc::SyncSender<()>,
    head: watch::Sender<TreeHead>,
    health: Arc<health::Health>,
) {
    while let Ok(first) = commits.recv() {
        let waiting: Vec<Committed> = std::iter::once(first).chain(commits.try_iter()).collect();
        let result = match health.failure().filter(|_| health.is_broken()) {
            Some(why) => Err(why),
            None => match wal.sync() {
                Ok(()) => {
                    health.flushed();
                    Ok(())
                }
                Err(error) => {
                    health.flush_failed(&error);
                    Err(error.to_string())
                }
            },
        };
        if let (Ok(()), Some(last)) = (&result, waiting.last()) {
            head.send_replace(last.head);
        }
        for commit in waiting {
            for waiter in commit.waiters {
                waiter.answer(&result);
            }
            let _ = slots.send(());
        }
    }
}

/// How often a degraded ledger tries a write while no decision does.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// While the last commit or flush failed, asks the sequencer for a probe write every
/// [`PROBE_EVERY`]: a server that `/readyz` takes out of a load balancer gets no decisions to try
/// with, and must still learn when the disk takes writes again. Ends with the sequencer.
async fn probe_while_degraded(jobs: mpsc::Sender<Message>, health: Arc<health::Health>) {
    let mut every = tokio::time::interval(PROBE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = jobs.closed() => return,
            _ = every.tick() => {}
        }
        if health.is_degraded() && !health.is_broken() && jobs.try_send(Message::Probe).is_err() {
            // A full queue is as good a probe; a closed one ends the loop above.
        }
    }
}

/// How often committed WAL frames are copied into the database file while entries arrive.
const WAL_CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// New WAL frames a checkpoint pass may find and still be the last before the sequencer's, and
/// at most how many passes that takes (see [`checkpoint_wal`]).
const WAL_TAIL_FRAMES: u64 = 256;
const WAL_CATCH_UP_PASSES: usize = 4;

/// Copies the WAL into the database from outside the writer (which does not checkpoint on its
/// own, see [`store::Writer::open`]): a passive checkpoint after new entries, at most every
/// [`WAL_CHECKPOINT_EVERY`]. Such a checkpoint never catches up with a writer that keeps
/// committing, and SQLite starts the WAL over only once every frame is copied, so under steady
/// load the file would grow forever: past `limit_frames` this asks the sequencer to finish the
/// job between two commits ([`store::Writer::restart_wal`]). Stops with the sequencer; closing the store
/// checkpoints the rest.
///
/// Every commit waits while the sequencer finishes the job, and what it waits for is mostly the
/// fsync of the database pages that checkpoint copies: scattered pages, each its own write on the
/// disk (6-11 ms for what 250 ms of load leaves behind, measured). So before asking, this copies
/// again until a pass leaves little behind ([`WAL_TAIL_FRAMES`]): the sequencer then copies only
/// what arrived during the last pass (about 1.3 ms in the median, measured).
async fn checkpoint_wal(
    store: Store,
    mut head: watch::Receiver<TreeHead>,
    limit_frames: u64,
    wal_full: Arc<AtomicBool>,
) {
    while head.changed().await.is_ok() {
        tokio::time::sleep(WAL_CHECKPOINT_EVERY).await;
        head.borrow_and_update();
        match store.checkpoint_wal().await {
            Ok(wal) if wal.frames >= limit_frames => {
                let mut copied = wal.frames;
                for _ in 0..WAL_CATCH_UP_PASSES {
                    match store.checkpoint_wal().await {
                        Ok(pass) if pass.frames.saturating_sub(copied) > WAL_TAIL_FRAMES => {
                            copied = pass.frames;
                        }
                        Ok(_) => break,
                        // The sequencer's own pass still runs; it just copies more.
                        Err(error) => {
                            tracing::warn!(%error, "WAL catch-up checkpoint failed");
                            break;
                        }
                    }
                }
                wal_full.store(true, Ordering::Release);
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "WAL checkpoint failed; retrying after the next commit")
            }
        }
    }
}

/// Signs a checkpoint at most `interval` after new entries and has the sequencer store it. The
/// sequencer signs the last one itself when it stops.
async fn sign_checkpoints(
    jobs: mpsc::Sender<Message>,
    signer: Arc<NoteSigner>,
    mut head: watch::Receiver<TreeHead>,
    interval: Duration,
    mut last: Option<u64>,
    signed_at: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
) {
    loop {
        let current = *head.borrow_and_update();
        if last != Some(current.size) {
            let stored = async {
                let row = checkpoint_row(&signer, current)?;
                let (reply, answer) = oneshot::channel();
                jobs.send(Message::Checkpoint(row, reply))
                    .await
                    .map_err(|_| stopped())?;
                answer.await.map_err(|_| stopped())?
            };
            match stored.await {
                Ok(()) => {
                    last = Some(current.size);
                    if let Ok(mut at) = signed_at.lock() {
                        *at = Some(std::time::Instant::now());
                    }
                }
                // Retried on the next change; entries are durable meanwhile.
                Err(error) => {
                    tracing::error!(%error, size = current.size, "cannot sign or store a checkpoint")
                }
            }
        }
        if head.changed().await.is_err() {
            return;
        }
        tokio::time::sleep(interval).await;
    }
}

/// A signed checkpoint of `head`, as stored.
fn checkpoint_row(signer: &NoteSigner, head: TreeHead) -> Result<CheckpointRow, LedgerError> {
    let text = Checkpoint {
        origin: signer.name().to_owned(),
        size: head.size,
        root: head.root,
    }
    .to_text();
    Ok(CheckpointRow {
        tree_size: head.size as i64,
        root_hash: head.root.to_vec(),
        note: signer.sign(&text)?,
        created_at: store::now(),
    })
}
