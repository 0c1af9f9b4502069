//! Start-up and shutdown: turns a [`Config`] into running services and an HTTP listener.
//!
//! First start creates what is missing (data dir, database, dev issuer key) and logs each thing it
//! created; an invalid policy pack or schema stops the start with located diagnostics.
//!
//! Order matters: the listener is bound first and the data dir locked second, both before anything
//! is written, so a start that cannot serve (port taken, data dir held by another `reins serve`)
//! leaves the ledger as it found it.

pub mod listen;

use crate::store::{DataDirLock, LockError};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::app::{AppState, Services};
use crate::approvals::Approvals;
use crate::config::{Config, DatabaseUrl};
use crate::decision::{Pipeline, RequestError};
use crate::events::{Entry, EntryError, Event, PolicyEvent};
use crate::identity::{DevIssuer, IdentitySetupError, Verifier};
use crate::killswitch::KillSwitches;
use crate::ledger::{Append, Ledger, LedgerError};
use crate::policy::{PolicyError, PolicyPack};
use crate::registry::{Registry, RegistryError};
use crate::store::{PolicyTextRow, SideEffect, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Identity(#[from] IdentitySetupError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Entry(#[from] EntryError),
    #[error("registry: {0}")]
    Registry(#[from] RegistryError),
    #[error("decision pipeline: {0}")]
    Pipeline(#[from] RequestError),
    #[error("policy versions: {source}{}", failures_of(source))]
    Versions {
        #[from]
        source: crate::lifecycle::VersionError,
    },
    #[error(transparent)]
    Locked(#[from] LockError),
    #[error(transparent)]
    Webhooks(#[from] crate::webhooks::WebhookError),
    #[error("tripwires: {0}")]
    Tripwire(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The failing cases, one a line, when the policy tests refused the start.
fn failures_of(e: &crate::lifecycle::VersionError) -> String {
    match e {
        crate::lifecycle::VersionError::TestsFailed(f) => format!(":\n  {}", f.join("\n  ")),
        _ => String::new(),
    }
}

/// Builds the services, creating missing local state.
pub async fn bootstrap(config: Config) -> Result<Services, StartError> {
    if !config.data_dir.exists() {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::Io {
            path: config.data_dir.clone(),
            source,
        })?;
        tracing::info!(path = %config.data_dir.display(), "created data dir");
    }
    let lock = DataDirLock::acquire(&config.data_dir)?;
    let url = config.database_url();
    let new_database = matches!(&url, DatabaseUrl::Sqlite(path) if !path.exists());
    let store = Store::open(&url, config.database.max_connections).await?;
    if new_database {
        tracing::info!(database = %url.redacted(), "created database");
    } else {
        tracing::info!(database = %url.redacted(), "opened database");
    }

    let dev = if config.identity.dev_issuer {
        let (dev, generated) = DevIssuer::load_or_generate(&config.keys_dir())?;
        if generated {
            tracing::info!(path = %config.keys_dir().join(crate::identity::DEV_KEY_FILE).display(), "generated dev issuer key (mode 0600)");
        }
        Some(dev)
    } else {
        None
    };
    let verifier = Verifier::new(&config.identity, dev.as_ref())?;

    let pack = PolicyPack::load(&config.policy_dir, &config.schema_file)?;
    if pack.policy_count() == 0 {
        tracing::warn!(dir = %config.policy_dir.display(), "policy pack is empty: every decision will be denied (no_policy)");
    }
    tracing::info!(policies = pack.policy_count(), files = pack.files().len(), digest = %pack.digest(), "policy pack loaded");

    let control_dir = config
        .control_dir
        .clone()
        .unwrap_or_else(|| config.policy_dir.join("control"));
    let control = crate::policy::control::ControlPolicy::load(&control_dir)?;
    tracing::info!(dir = %control_dir.display(), builtin = !control_dir.is_dir(), digest = %control.digest(), "control policy loaded");

    let mut stores = Vec::new();
    for (name, dir) in &config.stores {
        let name = name.parse().map_err(|e: crate::ids::BadStoreName| {
            PolicyError::Invalid(vec![crate::policy::Diagnostic {
                file: dir.display().to_string(),
                line: 1,
                column: 1,
                message: e.to_string(),
            }])
        })?;
        let store = crate::policy::store::PolicyStore::load(name, dir)?;
        tracing::info!(store = %store.name, dir = %dir.display(), policies = store.pack.load().policy_count(), digest = %store.pack.load().digest(), "policy store loaded");
        stores.push(store);
    }
    let ledger = Arc::new(
        Ledger::open(
            store.clone(),
            &config.ledger,
            &config.database,
            &config.keys_dir(),
        )
        .await?,
    );
    // Versions: a folder with a new digest becomes the active version; otherwise the store's
    // active version (an API activation or rollback survives restarts) is served.
    let mut tests = std::collections::BTreeMap::new();
    tests.insert(
        crate::ids::DEFAULT_STORE.to_owned(),
        config.policy_dir.join("tests"),
    );
    for (name, dir) in &config.stores {
        tests.insert(name.clone(), dir.join("tests"));
    }
    let versions = crate::lifecycle::Versions::new(store.clone(), ledger.clone(), tests);
    let pack = versions.adopt(None, &pack).await?.unwrap_or(pack);
    for s in &stores {
        if let Some(active) = versions.adopt(Some(&s.name), &s.pack.load()).await? {
            s.pack.store(Arc::new(active));
        }
    }
    // Every start records the pack it runs with, so each decision's digest leads to an entry.
    ledger.append(vec![policy_loaded(&pack, None)?]).await?;
    for store in &stores {
        ledger
            .append(vec![policy_loaded(
                &store.pack.load(),
                Some(store.name.to_string()),
            )?])
            .await?;
    }
    ledger
        .append(vec![policy_loaded(control.pack(), Some("control".into()))?])
        .await?;

    let registry = Arc::new(Registry::load(&store, ledger.clone()).await?);
    let approvals = Arc::new(
        Approvals::load(
            store.clone(),
            ledger.clone(),
            config.approvals.ttl,
            config.approvals.owner_may_approve,
        )
        .await?,
    );
    let sweeper = approvals.spawn_sweeper(config.approvals.sweep_interval);
    let killswitches =
        Arc::new(KillSwitches::load(store.clone(), ledger.clone(), approvals.clone()).await?);
    let pipeline = Pipeline::new(
        registry,
        killswitches.clone(),
        approvals.clone(),
        pack,
        ledger.clone(),
        store.clone(),
        config.batch_max,
    )?
    .with_stores(stores)
    .with_idempotency_window(config.idempotency_window)
    .with_intent(config.max_intent_bytes, config.ledger.mask_intent)
    .with_usage(match store.postgres() {
        _ if !config.usage.enabled => None,
        Some(pool) => Some(crate::usage::Usage::shared(
            pool.clone(),
            config.clock.clone(),
        )),
        None => Some(crate::usage::Usage::local(config.clock.clone())),
    });
    let rules = config
        .tripwires
        .iter()
        .map(crate::tripwires::Rule::from_config)
        .collect::<Result<Vec<_>, _>>()
        .map_err(StartError::Tripwire)?;
    let (tripwires, trips) = crate::tripwires::Tripwires::new(rules, config.clock.clone());
    let pipeline = pipeline.with_tripwires(Arc::new(tripwires));
    crate::tripwires::spawn(trips, killswitches.clone(), ledger.clone());
    if !config.usage.enabled {
        tracing::warn!(
            "usage counting is off (usage.enabled = false): policies that read context.usage or \
             context.session never apply"
        );
    } else if store.postgres().is_none() {
        let restored = pipeline.restore_usage().await?;
        tracing::info!(restored, "usage windows rebuilt from the ledger's last day");
    }
    record_self_check(&pipeline, &ledger).await?;
    versions.resume_shadow(&pipeline, None).await?;
    for s in pipeline
        .stores()
        .map(|s| s.name.clone())
        .collect::<Vec<_>>()
    {
        versions.resume_shadow(&pipeline, Some(&s)).await?;
    }
    let incidents = crate::incidents::Incidents::new(
        store.clone(),
        ledger.clone(),
        pipeline.registry().clone(),
    );
    let incident_counter = incidents.spawn_overdue_counter(std::time::Duration::from_secs(30));
    let gauges = crate::telemetry::register_gauges(crate::telemetry::GaugeSources {
        checkpoint_age: Box::new({
            let ledger = ledger.clone();
            move || ledger.checkpoint_age()
        }),
        engaged_switches: Box::new({
            let killswitches = killswitches.clone();
            move || killswitches.engaged().len()
        }),
        pending_approvals: Box::new({
            let approvals = approvals.clone();
            move || approvals.pending_count()
        }),
        overdue_incidents: Box::new({
            let overdue = incidents.overdue_gauge();
            move || overdue.load(std::sync::atomic::Ordering::Relaxed)
        }),
    });
    let outcomes = crate::outcomes::Outcomes::new(store.clone(), ledger.clone());
    let contests = crate::contests::Contests::new(store.clone(), ledger.clone());
    let cursors = match store.postgres() {
        Some(pool) => crate::webhooks::Cursors::Postgres(pool.clone()),
        None => crate::webhooks::Cursors::Files(config.data_dir.join("webhooks")),
    };
    let webhooks =
        crate::webhooks::Webhooks::start(&config.webhooks, cursors, ledger.clone(), store.clone())
            .await?;
    Ok(Services {
        webhooks,
        lock: std::sync::Mutex::new(Some(lock)),
        outcomes,
        contests,
        incidents,
        was_ready: std::sync::atomic::AtomicBool::new(true),
        _gauges: gauges,
        versions,
        control,
        config,
        verifier,
        pipeline,
        store,
        ledger,
        killswitches,
        approvals,
        sweeper,
        incident_counter,
    })
}

/// The entry recording a loaded pack (with its texts kept by digest), so every decision's digest
/// leads to an entry and to the policies themselves.
fn policy_loaded(pack: &PolicyPack, store: Option<String>) -> Result<Append, StartError> {
    let loaded = Entry {
        time: crate::timestamp::Timestamp::now().to_string(),
        event: Event::PolicyLoaded(PolicyEvent {
            policy_digest: pack.digest().to_string(),
            files: pack.files(),
            policies: pack.policy_count(),
            store,
        }),
    };
    let texts = PolicyTextRow {
        digest: pack.digest().to_string(),
        files: serde_json::to_string(pack.sources()).map_err(EntryError::from_json)?,
        schema_text: pack.schema_text().to_owned(),
        first_seen: loaded.time.clone(),
    };
    Ok(loaded.append(SideEffect::PolicyText(texts))?)
}

/// Probes the live pipeline with requests that must be denied or refused, and records the result
/// in the ledger: the evidence for Art 15 (fail-safe). A failing probe is logged loudly but does
/// not stop the start: the checklist shows it.
async fn record_self_check(pipeline: &Pipeline, ledger: &Ledger) -> Result<(), StartError> {
    let check = pipeline.self_check();
    if !check.passed {
        tracing::error!(?check, "fail-closed self-check failed");
    }
    let entry = Entry {
        time: crate::timestamp::Timestamp::now().to_string(),
        event: Event::SelfCheck(check),
    };
    ledger.append(vec![entry.append(SideEffect::None)?]).await?;
    Ok(())
}

/// A server running in the background; used by `reins serve` and by tests.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

/// Descriptors kept free under the process's open-file limit for what is not a client
/// connection: the database and its WAL for the writer and each reader, the listener, the log and
/// telemetry exporters. `http.max_connections` is lowered to fit.
pub const RESERVED_FDS: u64 = 128;

/// Raises the soft open-file limit to the hard one and returns how many connections fit under it
/// with [`RESERVED_FDS`] to spare.
fn connection_limit(configured: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot read the open-file limit; keeping http.max_connections");
            return configured;
        }
    };
    let fits = limit.saturating_sub(RESERVED_FDS).max(1);
    if (configured as u64) > fits {
        tracing::warn!(
            configured,
            open_file_limit = limit,
            max_connections = fits,
            "http.max_connections lowered to leave {RESERVED_FDS} descriptors for the ledger and the database"
        );
        return fits as usize;
    }
    configured
}

/// Binds the listener, bootstraps and starts serving.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    let listen = config.listen;
    // Bound before anything is written: a start on a taken port changes nothing.
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
    let state = Arc::new(bootstrap(config).await?);
    if state.config.watch {
        let mut folders = vec![(
            crate::ids::DEFAULT_STORE.to_owned(),
            state.config.policy_dir.clone(),
        )];
        folders.extend(
            state
                .config
                .stores
                .iter()
                .map(|(n, d)| (n.clone(), d.clone())),
        );
        tracing::info!(folders = folders.len(), interval = ?state.config.watch_interval, "watching the policy folders");
        crate::lifecycle::spawn_watcher(
            Arc::downgrade(&state),
            folders,
            state.config.watch_interval,
        );
    }
    if let Some(control) = state.ledger.control() {
        tokio::spawn(crate::app::follow_control(Arc::downgrade(&state), control));
    }
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: listen,
        source,
    })?;
    let app = crate::api::router(state.clone());
    let (shutdown, signal) = oneshot::channel::<()>();
    let mut limits = state.config.http.clone();
    limits.max_connections = connection_limit(limits.max_connections);
    let task = tokio::spawn(listen::serve(listener, app, limits, async {
        let _ = signal.await;
    }));
    tracing::info!(%addr, "listening");
    Ok(RunningServer {
        addr,
        state,
        shutdown,
        task,
    })
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests finish, commits the ledger's queue, signs a final
    /// checkpoint, closes the database.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "server error"),
            Err(e) => tracing::error!(error = %e, "server task failed"),
        }
        self.state.sweeper.abort();
        self.state.webhooks.stop();
        self.state.incident_counter.abort();
        self.state.ledger.shutdown().await;
        self.state.store.close().await;
        // Released here rather than when the last handle to the services drops: a connection
        // that outlived the drain may still hold one, and the data dir is closed already.
        if let Ok(mut lock) = self.state.lock.lock() {
            lock.take();
        }
    }
}

/// Runs until Ctrl-C or SIGTERM.
pub async fn run(config: Config) -> Result<(), StartError> {
    // Listening for the signals starts before the server does: a SIGTERM that arrives as soon as
    // `/readyz` answers must stop it gracefully, not kill it with the default action.
    let stop = shutdown_signal()?;
    let server = start(config).await?;
    stop.await;
    tracing::info!("shutting down");
    server.stop().await;
    Ok(())
}

/// A future that resolves on Ctrl-C or SIGTERM; the handlers are installed when this returns.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, StartError> {
    let signal_error = |source: std::io::Error| StartError::Io {
        path: PathBuf::from("signal handlers"),
        source,
    };
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(signal_error)?;
    #[cfg(unix)]
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(signal_error)?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! { _ = term.recv() => {}, _ = interrupt.recv() => {} }
        #[cfg(not(unix))]
        {
            let _ = signal_error;
            let _ = tokio::signal::ctrl_c().await;
        }
    })
}
