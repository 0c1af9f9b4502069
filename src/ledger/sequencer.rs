//! The write path: the sequencer thread (the database's only writer, one transaction per batch),
//! the syncer thread (one fsync for every waiting commit), the WAL checkpointer, the checkpoint
//! signer and the probe that runs while the last commit failed.

use super::*;

/// Where a job's outcome goes: its entries' positions, or why they were not recorded.
pub(super) type Reply = oneshot::Sender<Result<Vec<LedgerRef>, LedgerError>>;

pub(super) struct Job {
    pub(super) appends: Vec<Append>,
    pub(super) reply: Reply,
    /// The control version the job's decisions were evaluated under (shared ledger only).
    pub(super) evaluated_under: Option<u64>,
}

pub(super) enum Message {
    Append(Job),
    /// A signed checkpoint to store; answered once it is durable.
    Checkpoint(CheckpointRow, oneshot::Sender<Result<(), LedgerError>>),
    /// Try a write, to learn whether the disk takes them again ([`probe_while_degraded`]).
    Probe,
    Shutdown,
}

/// Commits the sequencer may have made that are not yet durable. Two lets commit N+1 run while
/// commit N is being flushed, and no more: waiting for the flush is also what lets the next
/// batch grow (each commit rewrites whole pages, so many small ones cost more than a few large).
pub(super) const UNSYNCED_COMMITS: usize = 2;

pub(super) fn stopped() -> LedgerError {
    LedgerError::Unavailable("the ledger writer has stopped".into())
}

/// Who waits on a commit, and what they get once it is durable.
pub(super) enum Waiter {
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
pub(super) struct Committed {
    pub(super) head: TreeHead,
    pub(super) waiters: Vec<Waiter>,
}

/// What the other tasks tell the sequencer.
pub(super) struct Flags {
    /// Whether to refuse appends (a flush failed for good), and where commit failures go.
    pub(super) health: Arc<health::Health>,
    /// The WAL reached its limit: restart it after the next commit.
    pub(super) wal_full: Arc<AtomicBool>,
    /// Where the commits and WAL restarts are timed.
    pub(super) activity: Arc<activity::Activity>,
}

/// The sequencer: one thread, the database's only writer, so indices are assigned in commit
/// order. Each loop commits every message queued at that moment (up to `max_batch` entries) in
/// one transaction, and hands the commit to [`sync_commits`] on a second thread.
///
/// Threads, not tasks: a commit is blocking work from start to end, and on a thread of its own
/// the connection, the batch and the flush need no hand-off through the async runtime (each of
/// which, under load, waits for a core).
pub(super) struct Sequencer {
    pub(super) writer: store::Writer,
    pub(super) frontier: Frontier,
    pub(super) jobs: mpsc::Receiver<Message>,
    /// Commits to [`sync_commits`], on its thread.
    pub(super) synced: std::sync::mpsc::Sender<Committed>,
    pub(super) syncer: std::thread::JoinHandle<()>,
    /// Flush slots (see [`UNSYNCED_COMMITS`]): taken per commit, given back by the syncer once the
    /// commit is durable, or here when a commit fails.
    pub(super) slots: std::sync::mpsc::Receiver<()>,
    pub(super) slot_back: std::sync::mpsc::SyncSender<()>,
    pub(super) flags: Flags,
    pub(super) max_batch: usize,
    pub(super) signer: Arc<NoteSigner>,
    /// The largest tree a stored checkpoint covers.
    pub(super) last_signed: Option<u64>,
}

/// One loop's messages.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) jobs: Vec<Job>,
    pub(super) checkpoints: Vec<(CheckpointRow, oneshot::Sender<Result<(), LedgerError>>)>,
    pub(super) entries: usize,
    pub(super) probe: bool,
}

impl Batch {
    /// Adds a message; false if it was the one that says to stop.
    pub(super) fn add(&mut self, message: Message) -> bool {
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

    pub(super) fn refuse(self, why: &str) {
        for job in self.jobs {
            let _ = job.reply.send(Err(LedgerError::Unavailable(why.into())));
        }
        for (_, reply) in self.checkpoints {
            let _ = reply.send(Err(LedgerError::Unavailable(why.into())));
        }
    }
}

impl Sequencer {
    pub(super) fn run(mut self) {
        let mut stopping = false;
        while !stopping {
            let mut batch = Batch::default();
            let Some(message) = self.jobs.blocking_recv() else {
                break;
            };
            if !batch.add(message) {
                break;
            }
            if let Some(why) = self.flags.health.broken() {
                batch.refuse(why);
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
                        let activity = &self.flags.activity;
                        let writer = &mut self.writer;
                        match activity.time(&activity.wal_restart, || writer.restart_wal()) {
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
        let activity = &self.flags.activity;
        let writer = &mut self.writer;
        let committed = activity.time(&activity.commit, || {
            if probe && rows.is_empty() && checkpoint_rows.is_empty() {
                writer.probe()
            } else {
                writer.commit(&rows, &checkpoint_rows)
            }
        });
        activity
            .last_batch
            .store(rows.len() as u64, Ordering::Relaxed);
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
pub(super) fn sign_final_checkpoint(
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
pub(super) fn sync_commits(
    wal: store::Wal,
    commits: std::sync::mpsc::Receiver<Committed>,
    slots: std::sync::mpsc::SyncSender<()>,
    head: watch::Sender<TreeHead>,
    health: Arc<health::Health>,
    activity: Arc<activity::Activity>,
) {
    while let Ok(first) = commits.recv() {
        let waiting: Vec<Committed> = std::iter::once(first).chain(commits.try_iter()).collect();
        let result = match health.broken() {
            Some(why) => Err(why.to_owned()),
            None => match activity.time(&activity.sync, || wal.sync()) {
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
pub(super) const PROBE_EVERY: Duration = Duration::from_secs(1);

/// While the last commit or flush failed, asks the sequencer for a probe write every
/// [`PROBE_EVERY`]: a server that `/readyz` takes out of a load balancer gets no decisions to try
/// with, and must still learn when the disk takes writes again. Ends with the sequencer.
pub(super) async fn probe_while_degraded(jobs: mpsc::Sender<Message>, health: Arc<health::Health>) {
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
pub(super) const WAL_CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// New WAL frames a checkpoint pass may find and still be the last before the sequencer's, and
/// at most how many passes that takes (see [`checkpoint_wal`]).
pub(super) const WAL_TAIL_FRAMES: u64 = 256;
pub(super) const WAL_CATCH_UP_PASSES: usize = 4;

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
pub(super) async fn checkpoint_wal(
    store: Store,
    mut head: watch::Receiver<TreeHead>,
    limit_frames: u64,
    wal_full: Arc<AtomicBool>,
    activity: Arc<activity::Activity>,
) {
    let copy = || async {
        let start = activity.start(&activity.wal_copy);
        let copied = store.checkpoint_wal().await;
        activity.finish(&activity.wal_copy, start);
        copied
    };
    while head.changed().await.is_ok() {
        tokio::time::sleep(WAL_CHECKPOINT_EVERY).await;
        head.borrow_and_update();
        match copy().await {
            Ok(wal) if wal.frames >= limit_frames => {
                let mut copied = wal.frames;
                for _ in 0..WAL_CATCH_UP_PASSES {
                    match copy().await {
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
pub(super) async fn sign_checkpoints(
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
pub(super) fn checkpoint_row(
    signer: &NoteSigner,
    head: TreeHead,
) -> Result<CheckpointRow, LedgerError> {
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
        created_at: crate::timestamp::Timestamp::now(),
    })
}
