//! The ledger when replicas share it on PostgreSQL: sequence durably on every replica, integrate
//! on one at a time.
//!
//! - The **batcher** (one task per replica) takes what is queued and sequences it in one
//!   transaction ([`store::shared::sequence`]): the answer waits for that commit, so an answered
//!   decision is durably sequenced, at an index no other replica can hold. Decisions evaluated
//!   under an older control version than the database's come back [`LedgerError::Stale`] (the
//!   pipeline evaluates them again); other appends are retried here. Past the integration backlog
//!   limit, decisions are refused ([`LedgerError::Backlog`]).
//! - The **integrator** (one replica at a time: the holder of a session advisory lock, which only
//!   keeps one warm frontier, never safety) adds sequenced entries to the Merkle tree
//!   ([`store::shared::integrate`]) and signs a checkpoint of what it just committed, stored only
//!   if larger than every stored one.
//! - The **follower** (every replica) reads the counters every poll and on each control
//!   notification: the tree head it serves proofs against, the control version (a heartbeat for
//!   the decision path), and the fork guard: a database whose latest checkpoint is smaller than
//!   one this replica has already served lost rows (a restore or failover), and appends stop until
//!   a restart.

use super::*;
use crate::store::shared::{self as sql, Integrated, SeqState, Sequenced};

/// The advisory lock key of the integrator ("reins" in ASCII).
const INTEGRATOR_LOCK: i64 = 0x0072_6569_6e73;

/// Most entries one integration pass adds.
const INTEGRATE_MAX: u64 = 16_384;

/// How long an integrator sleeps between passes: the shortest while entries keep coming, up to
/// the longest when a pass finds nothing (an idle integrator costs a few queries a second, not
/// hundreds). A waiting candidate retries every `CANDIDATE_RETRY`.
const INTEGRATOR_BUSY: Duration = Duration::from_millis(5);
const INTEGRATOR_IDLE: Duration = Duration::from_millis(50);
const CANDIDATE_RETRY: Duration = Duration::from_millis(500);

/// What the replica last read of the shared counters, and when.
pub struct Follow {
    /// The control version and when it was read (the decision path's heartbeat).
    pub control: watch::Sender<ControlSeen>,
    /// The counter as this replica last saw it: entries `[0, next)` are committed and readable.
    pub next: std::sync::atomic::AtomicU64,
    /// Entries sequenced but not integrated, at the last read.
    backlog: std::sync::atomic::AtomicU64,
    /// The largest checkpoint this replica served or signed.
    pub served: std::sync::atomic::AtomicU64,
    /// The control version whose state this replica has loaded (set by whoever reloads it).
    pub applied: watch::Sender<u64>,
    /// Older than this, the last read of the control version makes the replica refuse appends.
    pub max_staleness: Duration,
    /// Sequencing transactions committed by this replica, and the entries they held (the mean
    /// batch size is logged when the replica stops).
    transactions: std::sync::atomic::AtomicU64,
    sequenced_here: std::sync::atomic::AtomicU64,
    /// The integrated tree this replica serves from: moved by the follower's reads, by this
    /// replica's integrator, and by reads a request beyond it makes ([`Ledger::refresh_head`]).
    pub head: watch::Sender<TreeHead>,
}

impl Follow {
    /// Moves the head forward (never back) to `new`.
    pub fn advance(&self, new: TreeHead) {
        self.head.send_if_modified(|h| {
            let newer = new.size > h.size;
            if newer {
                *h = new;
            }
            newer
        });
    }
}

impl Follow {
    /// Why appends are refused for want of a recent read of the control state, if they are.
    pub fn staleness(&self) -> Option<String> {
        let age = self.control.borrow().at.elapsed();
        (age > self.max_staleness).then(|| {
            format!(
                "this replica last read the shared control state {} ms ago (limit {} ms)",
                age.as_millis(),
                self.max_staleness.as_millis()
            )
        })
    }
}

/// The control version as a replica last read it.
#[derive(Debug, Clone, Copy)]
pub struct ControlSeen {
    pub version: u64,
    pub at: std::time::Instant,
}

pub(super) struct SharedTasks {
    pub(super) follow: Arc<Follow>,
    pub(super) tasks: Vec<JoinHandle<()>>,
}

pub(super) struct Settings {
    pub(super) max_batch: usize,
    pub(super) backlog_limit: u64,
    pub(super) poll: Duration,
    pub(super) max_staleness: Duration,
    pub(super) checkpoint_interval: Duration,
}

/// Starts the batcher, the integrator candidate and the follower.
#[allow(clippy::too_many_arguments)]
pub(super) async fn start(
    store: &Store,
    pool: sqlx::PgPool,
    jobs: mpsc::Receiver<Message>,
    head: watch::Sender<TreeHead>,
    health: Arc<health::Health>,
    signer: Arc<NoteSigner>,
    settings: Settings,
    signed_at: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
) -> Result<SharedTasks, LedgerError> {
    let state = sql::state(&pool).await?;
    let latest = store.latest_checkpoint().await?;
    // Replicas must sign with one key: a replica with a key of its own would sign checkpoints no
    // verifier of the others' accepts.
    if let Some(c) = &latest
        && signer.verifier().verify(&c.note).is_err()
    {
        return Err(LedgerError::Key {
            path: signer.verifier_key(),
            message: "this is not the key that signed the database's checkpoints; start every \
                      replica with the same --keys-dir (or ledger.signing_key_file)"
                .into(),
        });
    }
    let served = latest.map_or(0, |c| c.tree_size as u64);
    let follow = Arc::new(Follow {
        control: watch::channel(ControlSeen {
            version: state.control_version,
            at: std::time::Instant::now(),
        })
        .0,
        next: state.next.into(),
        backlog: (state.next - state.tree_size).into(),
        served: served.into(),
        // The state the services load after this is at least this new.
        applied: watch::channel(state.control_version).0,
        max_staleness: settings.max_staleness,
        transactions: 0.into(),
        sequenced_here: 0.into(),
        head,
    });
    follow.head.send_replace(TreeHead {
        size: state.tree_size,
        root: state.root,
    });
    let (stop_tx, stop) = watch::channel(false);
    let batcher = tokio::spawn(batcher(
        pool.clone(),
        jobs,
        health.clone(),
        follow.clone(),
        settings.max_batch,
        settings.backlog_limit,
        stop_tx,
    ));
    let integrator = tokio::spawn(integrator(
        store.clone(),
        pool.clone(),
        signer,
        settings.checkpoint_interval,
        follow.clone(),
        signed_at,
        stop.clone(),
    ));
    let follower = tokio::spawn(follower(
        store.clone(),
        pool,
        health,
        follow.clone(),
        settings.poll,
        stop,
    ));
    Ok(SharedTasks {
        follow,
        tasks: vec![batcher, integrator, follower],
    })
}

/// Sequences queued appends until told to stop; then tells the other tasks.
#[allow(clippy::too_many_arguments)]
async fn batcher(
    pool: sqlx::PgPool,
    mut jobs: mpsc::Receiver<Message>,
    health: Arc<health::Health>,
    follow: Arc<Follow>,
    max_batch: usize,
    backlog_limit: u64,
    stop: watch::Sender<bool>,
) {
    let mut stopping = false;
    while !stopping {
        let Some(first) = jobs.recv().await else {
            break;
        };
        let mut batch = Batch::default();
        if !batch.add(first) {
            break;
        }
        while batch.entries < max_batch {
            match jobs.try_recv() {
                Ok(message) => {
                    if !batch.add(message) {
                        stopping = true;
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        if batch.probe && batch.jobs.is_empty() {
            match sql::probe(&pool).await {
                Ok(()) => health.flushed(),
                Err(error) => health.commit_failed(&error.to_string()),
            }
            continue;
        }
        if let Some(why) = health.broken() {
            batch.refuse(why);
            continue;
        }
        // The follower may just be late (a busy machine): one read here refreshes the heartbeat,
        // and a replica that cannot make it takes nothing.
        if let Some(why) = follow.staleness() {
            match sql::state(&pool).await {
                Ok(state) => follow.control.send_modify(|seen| {
                    seen.version = seen.version.max(state.control_version);
                    seen.at = std::time::Instant::now();
                }),
                Err(error) => {
                    batch.refuse(&format!("{why}; reading it again failed: {error}"));
                    continue;
                }
            }
        }
        let backlog = follow.backlog.load(Ordering::Acquire);
        let (mut control, mut rest): (Vec<Job>, Vec<Job>) = batch
            .jobs
            .into_iter()
            .partition(|j| j.appends.iter().any(|a| a.control));
        if backlog > backlog_limit {
            for job in rest.drain(..).filter(|j| j.evaluated_under.is_some()) {
                let _ = job.reply.send(Err(LedgerError::Backlog(backlog)));
            }
        }
        // A control change goes alone: the decisions of a batch must all see the same version.
        for job in control.drain(..) {
            commit_jobs(&pool, &health, &follow, vec![job]).await;
        }
        if !rest.is_empty() {
            commit_jobs(&pool, &health, &follow, rest).await;
        }
    }
    let (transactions, entries) = (
        follow.transactions.load(Ordering::Relaxed),
        follow.sequenced_here.load(Ordering::Relaxed),
    );
    tracing::info!(
        transactions,
        entries,
        mean_batch = entries as f64 / transactions.max(1) as f64,
        "the shared ledger's batcher stopped"
    );
    let _ = stop.send(true);
}

/// Sequences `jobs` in one transaction, answering each. Decisions evaluated under an older
/// version than the newest among them are answered stale at once; on a refusal by the database,
/// the decisions are answered stale and the other appends tried again; an approval another
/// replica changed first fails its own job only.
async fn commit_jobs(
    pool: &sqlx::PgPool,
    health: &health::Health,
    follow: &Follow,
    mut jobs: Vec<Job>,
) {
    let newest = jobs.iter().filter_map(|j| j.evaluated_under).max();
    if let Some(newest) = newest {
        let (fresh, stale): (Vec<Job>, Vec<Job>) = jobs
            .into_iter()
            .partition(|j| j.evaluated_under.is_none_or(|v| v == newest));
        for job in stale {
            let _ = job.reply.send(Err(LedgerError::Stale(newest)));
        }
        jobs = fresh;
    }
    // Bounded: each pass answers at least one job or ends.
    for _ in 0..8 {
        if jobs.is_empty() {
            return;
        }
        let evaluated_under = jobs.iter().find_map(|j| j.evaluated_under);
        let mut rows = Vec::new();
        let mut leaves = Vec::new();
        let mut owner = Vec::new();
        let mut control_changes = 0u64;
        for (j, job) in jobs.iter().enumerate() {
            for append in &job.appends {
                leaves.push(leaf_hash(&append.bytes));
                control_changes += u64::from(append.control);
                owner.push(j);
                rows.push(AppendRow {
                    index: 0,
                    kind: append.kind,
                    entry: append.bytes.clone(),
                    nodes: Vec::new(),
                    side: append.side.clone(),
                });
            }
        }
        let started = std::time::Instant::now();
        let result = sql::sequence(pool, &rows, &leaves, evaluated_under, control_changes).await;
        let metrics = crate::telemetry::metrics();
        metrics
            .ledger_append_duration
            .record(started.elapsed().as_secs_f64(), &[]);
        metrics.ledger_batch_size.record(rows.len() as u64, &[]);
        match result {
            Ok(Sequenced::At {
                first,
                control_version,
            }) => {
                health.flushed();
                if control_changes > 0 {
                    follow.control.send_modify(|seen| {
                        seen.version = seen.version.max(control_version);
                    });
                }
                let mut index = first;
                let mut leaves = leaves.into_iter();
                for job in jobs {
                    let refs = job
                        .appends
                        .iter()
                        .map(|_| {
                            let leaf = leaves.next().unwrap_or_default();
                            let r = LedgerRef::new(index, &leaf);
                            index += 1;
                            r
                        })
                        .collect();
                    let _ = job.reply.send(Ok(refs));
                }
                follow
                    .backlog
                    .fetch_add(rows.len() as u64, Ordering::AcqRel);
                follow
                    .next
                    .fetch_max(first + rows.len() as u64, Ordering::AcqRel);
                follow.transactions.fetch_add(1, Ordering::Relaxed);
                follow
                    .sequenced_here
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
                return;
            }
            Ok(Sequenced::Stale { current }) => {
                health.flushed();
                let (evaluated, others): (Vec<Job>, Vec<Job>) =
                    jobs.into_iter().partition(|j| j.evaluated_under.is_some());
                for job in evaluated {
                    let _ = job.reply.send(Err(LedgerError::Stale(current)));
                }
                jobs = others;
            }
            Ok(Sequenced::Conflict { append }) => {
                let j = owner.get(append).copied().unwrap_or(0);
                let job = jobs.remove(j);
                let _ = job.reply.send(Err(LedgerError::Conflict(
                    "an approval it changes was used, decided or expired by another decision first"
                        .into(),
                )));
            }
            Err(error) => {
                tracing::debug!(%error, entries = rows.len(), "ledger sequencing failed");
                health.commit_failed(&error.to_string());
                for job in jobs {
                    let _ = job
                        .reply
                        .send(Err(LedgerError::Unavailable(error.to_string())));
                }
                return;
            }
        }
    }
    for job in jobs {
        let _ = job.reply.send(Err(LedgerError::Unavailable(
            "the shared ledger kept refusing the batch".into(),
        )));
    }
}

/// Integrates while this replica holds the integrator's advisory lock; otherwise waits for it.
async fn integrator(
    store: Store,
    pool: sqlx::PgPool,
    signer: Arc<NoteSigner>,
    interval: Duration,
    follow: Arc<Follow>,
    signed_at: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        // The lock is the session's: a connection of its own, kept while integrating and closed
        // (releasing it) when this replica stops or the connection fails.
        let mut conn = match pool.acquire().await {
            Ok(conn) => conn.detach(),
            Err(_) => {
                tokio::time::sleep(CANDIDATE_RETRY).await;
                continue;
            }
        };
        let locked: Result<(bool,), _> = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
            .bind(INTEGRATOR_LOCK)
            .fetch_one(&mut conn)
            .await;
        if !matches!(locked, Ok((true,))) {
            drop(conn);
            tokio::time::sleep(CANDIDATE_RETRY).await;
            continue;
        }
        tracing::info!("this replica integrates the shared ledger");
        let ended = integrate_while_locked(
            &store, &pool, &mut conn, &signer, interval, &follow, &signed_at, &stop,
        )
        .await;
        if let Err(error) = ended {
            tracing::warn!(%error, "the integrator stopped; another replica may take over");
            tokio::time::sleep(CANDIDATE_RETRY).await;
        }
        let _ = sqlx::Connection::close(conn).await;
    }
}

/// The integrator's loop: integrate what is sequenced, sign a checkpoint at most every
/// `interval` (and a last one when stopping), check now and then that the lock's connection lives.
#[allow(clippy::too_many_arguments)]
async fn integrate_while_locked(
    store: &Store,
    pool: &sqlx::PgPool,
    conn: &mut sqlx::PgConnection,
    signer: &NoteSigner,
    interval: Duration,
    follow: &Follow,
    signed_at: &std::sync::Mutex<Option<std::time::Instant>>,
    stop: &watch::Receiver<bool>,
) -> Result<(), LedgerError> {
    let mut frontier = load_frontier(store, pool).await?;
    let mut last_signed = store.latest_checkpoint().await?.map(|c| c.tree_size as u64);
    let mut last_sign_at = std::time::Instant::now() - interval;
    let mut last_ping = std::time::Instant::now();
    let mut pause = INTEGRATOR_BUSY;
    loop {
        let stopping = *stop.borrow();
        match sql::integrate(pool, &frontier, INTEGRATE_MAX).await? {
            Integrated::Grew(next) => {
                // Nothing new: wait longer next time (doubling up to the idle pause).
                pause = if next.size() == frontier.size() {
                    (pause * 2).min(INTEGRATOR_IDLE)
                } else {
                    INTEGRATOR_BUSY
                };
                frontier = next;
                follow.advance(TreeHead::of(&frontier));
            }
            Integrated::Moved { size } => {
                tracing::warn!(
                    size,
                    "the shared tree moved under this integrator; reloading it"
                );
                frontier = load_frontier(store, pool).await?;
                continue;
            }
        }
        let size = frontier.size();
        if last_signed != Some(size) && (stopping || last_sign_at.elapsed() >= interval) {
            let head = TreeHead::of(&frontier);
            let row = checkpoint_row(signer, head)?;
            if let Some(pool) = store.postgres() {
                sql::store_checkpoint(pool, &row).await?;
            }
            last_signed = Some(size);
            last_sign_at = std::time::Instant::now();
            follow.served.fetch_max(size, Ordering::AcqRel);
            if let Ok(mut at) = signed_at.lock() {
                *at = Some(last_sign_at);
            }
        }
        if stopping {
            return Ok(());
        }
        if last_ping.elapsed() > Duration::from_secs(1) {
            sqlx::query("SELECT 1")
                .execute(&mut *conn)
                .await
                .map_err(StoreError::from)?;
            last_ping = std::time::Instant::now();
        }
        tokio::time::sleep(pause).await;
    }
}

/// The stored tree's frontier, checked against the stored tree state.
async fn load_frontier(store: &Store, pool: &sqlx::PgPool) -> Result<Frontier, LedgerError> {
    let state = sql::state(pool).await?;
    let nodes = store.nodes(&range_nodes(0, state.tree_size)).await?;
    let frontier = Frontier::from_nodes(state.tree_size, nodes)
        .filter(|f| f.root() == state.root)
        .ok_or_else(|| {
            LedgerError::Damaged("the stored tree does not match ledger_tree's root".into())
        })?;
    Ok(frontier)
}

/// Reads the counters every `poll` and whenever a control change is notified; see the module
/// docs.
async fn follower(
    store: Store,
    pool: sqlx::PgPool,
    health: Arc<health::Health>,
    follow: Arc<Follow>,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut listener: Option<sqlx::postgres::PgListener> = None;
    let mut every = tokio::time::interval(poll);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if listener.is_none() {
            listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
                Ok(mut l) => match l.listen(sql::CONTROL_CHANNEL).await {
                    Ok(()) => Some(l),
                    Err(_) => None,
                },
                Err(_) => None,
            };
        }
        let notified = async {
            match listener.as_mut() {
                Some(l) => l.try_recv().await.map(|_| ()),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.changed() => return,
            _ = every.tick() => {}
            received = notified => {
                // A lost connection: listen again on the next turn; the poll covers the gap.
                if received.is_err() {
                    listener = None;
                }
            }
        }
        // Loaded before the database is read: a checkpoint served meanwhile was stored before it
        // was served, so only a database that lost rows can show less than this.
        let served = follow.served.load(Ordering::Acquire);
        match read(&store, &pool).await {
            Ok((state, latest)) => {
                follow.control.send_modify(|seen| {
                    seen.version = seen.version.max(state.control_version);
                    seen.at = std::time::Instant::now();
                });
                follow
                    .backlog
                    .store(state.next - state.tree_size, Ordering::Release);
                follow.next.fetch_max(state.next, Ordering::AcqRel);
                if latest < served {
                    health.break_permanently(format!(
                        "the database's latest checkpoint covers {latest} entries but this replica \
                         already served one of {served}: it lost rows (a restore or a failover?)"
                    ));
                }
                follow.advance(TreeHead {
                    size: state.tree_size,
                    root: state.root,
                });
            }
            Err(error) => tracing::debug!(%error, "cannot read the shared ledger's state"),
        }
    }
}

/// The counters and the largest stored checkpoint's size.
async fn read(store: &Store, pool: &sqlx::PgPool) -> Result<(SeqState, u64), StoreError> {
    let state = sql::state(pool).await?;
    let latest = store
        .latest_checkpoint()
        .await?
        .map_or(0, |c| c.tree_size as u64);
    Ok((state, latest))
}
