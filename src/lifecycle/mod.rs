//! Policy versions: every policy set a store had or was offered, immutable once written, with one
//! active per store. Uploads are validated against the store's schema (422 with located
//! diagnostics); an activation first runs the store's policy tests against the version and is
//! refused if any fails; every step (created, tested, activated, retired) is a ledger entry.
//! Rolling back is activating an earlier version.
//!
//! [`replay`] runs a version against recorded decisions; `--watch` turns folder edits into
//! versions ([`watch`]). This module sits above the pipeline it swaps packs into, and
//! [`crate::policy`] (packs, their limits, tests and stores) below it.
//!
//! This module owns the rules of the lifecycle; it reads and writes through [`Store`] and
//! [`Ledger`] and swaps the active pack into the [`Pipeline`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub mod replay;
mod watch;

pub use watch::{Watched, spawn_watcher};

use serde::Serialize;
use utoipa::ToSchema;

use crate::decision::Pipeline;
use crate::events::{Entry, Event, PolicyTestEvent, PolicyVersionEvent};
use crate::ids::{DEFAULT_STORE, StoreName, VersionId};
use crate::ledger::{Append, LedgerError, Sink};
use crate::policy::testing::{collect, run_file_with};
use crate::policy::{Diagnostic, PolicyError, PolicyPack};
use crate::store::{PolicyVersionRow, SideEffect, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("the policies do not validate against the store's schema")]
    Diagnostics(Vec<Diagnostic>),
    #[error("no policy version `{0}`")]
    NotFound(String),
    #[error("no policy store `{0}`")]
    NoStore(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the version's policy tests failed ({} failures); it was not activated", .0.len())]
    TestsFailed(Vec<String>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("stored version is unreadable: {0}")]
    Corrupt(String),
}

fn invalid(field: &str, message: impl Into<String>) -> VersionError {
    VersionError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Where a version is in its life. Only a draft can be shadowed; the active one cannot be
/// retired; a retired one cannot come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = PolicyVersionState)]
pub enum VersionState {
    Draft,
    Shadow,
    Active,
    Retired,
}

impl VersionState {
    /// As stored in `policy_versions.state`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Shadow => "shadow",
            Self::Active => "active",
            Self::Retired => "retired",
        }
    }

    fn parse(s: &str) -> Result<Self, VersionError> {
        [Self::Draft, Self::Shadow, Self::Active, Self::Retired]
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| VersionError::Corrupt(format!("unknown version state `{s}`")))
    }
}

impl std::fmt::Display for VersionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A version as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PolicyVersion {
    pub version: VersionId,
    pub store: String,
    /// SHA-256 of the policy texts: what every decision names.
    pub digest: String,
    /// SHA-256 of the schema the version was validated against.
    pub schema_digest: String,
    pub author: String,
    pub created_at: crate::timestamp::Timestamp,
    pub state: VersionState,
    pub files: Vec<String>,
}

/// A version with its texts.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PolicyVersionDetail {
    #[serde(flatten)]
    pub version: PolicyVersion,
    pub sources: BTreeMap<String, String>,
}

/// How a shadow version compares with the active one on live traffic.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ShadowReport {
    pub version: VersionId,
    pub since: crate::timestamp::Timestamp,
    /// Live requests Cedar decided that the shadow version was evaluated on.
    pub evaluated: u64,
    pub disagreements: u64,
    pub allow_to_deny: u64,
    pub deny_to_allow: u64,
    pub examples: Vec<crate::policy::shadow::ShadowDisagreement>,
}

/// What an activation did.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Activation {
    #[serde(flatten)]
    pub version: PolicyVersion,
    /// The version it replaced.
    pub previous: Option<VersionId>,
    /// Policy test files run and checks made before activating.
    pub test_files: usize,
    pub test_checks: usize,
}

/// A run of a store's policy tests against a version.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TestRun {
    pub version: VersionId,
    /// Test files run and checks made.
    pub files: usize,
    pub checks: usize,
    /// One line per failed check; empty when the version passed.
    pub failures: Vec<String>,
}

/// Most files in one version.
const MAX_FILES: usize = 200;

pub struct Versions {
    store: Store,
    ledger: Arc<dyn Sink>,
    /// Where each store's policy tests are (`<policy_dir>/tests`, `<store dir>/tests`).
    tests: BTreeMap<String, PathBuf>,
    writes: tokio::sync::Mutex<()>,
}

fn store_key(store: Option<&StoreName>) -> String {
    store.map_or_else(|| DEFAULT_STORE.to_owned(), |s| s.to_string())
}

fn selector(name: &str) -> Option<StoreName> {
    name.parse::<StoreName>().ok().filter(|n| !n.is_default())
}

/// A stored version's id.
fn id_of(row: &PolicyVersionRow) -> Result<VersionId, VersionError> {
    row.id
        .parse()
        .map_err(|e| VersionError::Corrupt(format!("version `{}`: {e}", row.id)))
}

fn state_of(row: &PolicyVersionRow) -> Result<VersionState, VersionError> {
    VersionState::parse(&row.state)
}

fn view(row: &PolicyVersionRow) -> Result<PolicyVersion, VersionError> {
    let files: Vec<(String, String)> =
        serde_json::from_str(&row.files).map_err(|e| VersionError::Corrupt(e.to_string()))?;
    Ok(PolicyVersion {
        version: id_of(row)?,
        store: row.store.clone(),
        digest: row.digest.clone(),
        schema_digest: row.schema_digest.clone(),
        author: row.author.clone(),
        created_at: row.created_at,
        state: state_of(row)?,
        files: files.into_iter().map(|(n, _)| n).collect(),
    })
}

fn sources(row: &PolicyVersionRow) -> Result<Vec<(String, String)>, VersionError> {
    serde_json::from_str(&row.files).map_err(|e| VersionError::Corrupt(e.to_string()))
}

fn schema_digest(pack: &PolicyPack) -> String {
    crate::compliance::sha256_text(pack.schema_text())
}

impl Versions {
    pub fn new(store: Store, ledger: Arc<dyn Sink>, tests: BTreeMap<String, PathBuf>) -> Self {
        Self {
            store,
            ledger,
            tests,
            writes: Default::default(),
        }
    }

    /// At start: the folder's pack becomes a new active version if its digest is new; otherwise
    /// the store's active version (which an API activation may have changed) is the one loaded.
    /// Returns the pack to serve instead of the folder's, if any.
    pub async fn adopt(
        &self,
        store: Option<&StoreName>,
        folder: &PolicyPack,
    ) -> Result<Option<PolicyPack>, VersionError> {
        let key = store_key(store);
        let known = self
            .store
            .policy_version_by_digest(&key, folder.digest().as_str())
            .await?;
        let active = self.store.active_policy_version(&key).await?;
        match (known, active) {
            (None, active) => {
                // A new folder passes the same gate as an upload: its tests must pass.
                let row = self.row(&key, folder, "startup", VersionState::Draft);
                let (files, checks, failures) = self.run_tests(&key, folder)?;
                let tested = self.tested(&row, "startup", files, checks, &failures)?;
                if !failures.is_empty() {
                    self.ledger
                        .append(vec![self.created(&row, folder)?, tested])
                        .await?;
                    return Err(VersionError::TestsFailed(failures));
                }
                let previous = active.map(|a| a.id);
                self.ledger
                    .append(vec![
                        self.created(&row, folder)?,
                        tested,
                        self.activated(&row, "startup", previous)?,
                    ])
                    .await?;
                Ok(None)
            }
            (Some(_), Some(active)) if active.digest != folder.digest().as_str() => {
                let pack =
                    PolicyPack::from_sources("schema", folder.schema_text(), sources(&active)?)
                        .map_err(policy_error)?;
                tracing::info!(store = %key, version = %active.id, digest = %active.digest, "serving the active policy version, not the folder's (activated through the API)");
                Ok(Some(pack))
            }
            (Some(known), None) => {
                let (files, checks, failures) = self.run_tests(&key, folder)?;
                let tested = self.tested(&known, "startup", files, checks, &failures)?;
                if !failures.is_empty() {
                    self.ledger.append(vec![tested]).await?;
                    return Err(VersionError::TestsFailed(failures));
                }
                self.ledger
                    .append(vec![tested, self.activated(&known, "startup", None)?])
                    .await?;
                Ok(None)
            }
            (Some(_), Some(_)) => Ok(None),
        }
    }

    fn row(
        &self,
        store: &str,
        pack: &PolicyPack,
        author: &str,
        state: VersionState,
    ) -> PolicyVersionRow {
        PolicyVersionRow {
            id: VersionId::new().to_string(),
            store: store.to_owned(),
            digest: pack.digest().to_string(),
            schema_digest: schema_digest(pack),
            files: serde_json::to_string(pack.sources()).unwrap_or_else(|_| "[]".into()),
            author: author.to_owned(),
            created_at: crate::timestamp::Timestamp::now(),
            state: state.as_str().to_owned(),
        }
    }

    fn entry(event: Event, side: SideEffect) -> Result<Append, VersionError> {
        let entry = Entry {
            time: crate::timestamp::Timestamp::now().to_string(),
            event,
        };
        entry
            .append(side)
            .map_err(|e| invalid("files", e.to_string()))
    }

    fn created(&self, row: &PolicyVersionRow, pack: &PolicyPack) -> Result<Append, VersionError> {
        Self::entry(
            Event::PolicyVersionCreated(PolicyVersionEvent {
                version: row.id.clone(),
                store: row.store.clone(),
                policy_digest: row.digest.clone(),
                actor: row.author.clone(),
                previous: None,
            }),
            SideEffect::PolicyVersion {
                row: row.clone(),
                schema_text: pack.schema_text().to_owned(),
            },
        )
    }

    fn activated(
        &self,
        row: &PolicyVersionRow,
        actor: &str,
        previous: Option<String>,
    ) -> Result<Append, VersionError> {
        Self::entry(
            Event::PolicyActivated(PolicyVersionEvent {
                version: row.id.clone(),
                store: row.store.clone(),
                policy_digest: row.digest.clone(),
                actor: actor.to_owned(),
                previous,
            }),
            SideEffect::PolicyActivation {
                store: row.store.clone(),
                version: row.id.clone(),
            },
        )
    }

    /// Validates and stores a draft. The same text uploaded again answers the existing version
    /// (`false`).
    pub async fn upload(
        &self,
        pipeline: &Pipeline,
        store: &str,
        files: BTreeMap<String, String>,
        author: &str,
    ) -> Result<(PolicyVersion, bool), VersionError> {
        let selected = selector(store);
        if store != DEFAULT_STORE && selected.is_none() {
            return Err(VersionError::NoStore(store.to_owned()));
        }
        let current = pipeline
            .pack_of(selected.as_ref())
            .ok_or_else(|| VersionError::NoStore(store.to_owned()))?;
        if files.is_empty() {
            return Err(invalid("files", "must hold at least one `.cedar` file"));
        }
        if files.len() > MAX_FILES {
            return Err(invalid("files", format!("at most {MAX_FILES} files")));
        }
        for name in files.keys() {
            let plain = !name.contains(['/', '\\']) && !name.starts_with('.');
            if !plain || !name.ends_with(".cedar") || name.len() > 128 {
                return Err(invalid(
                    &format!("files.{name}"),
                    "a file name is a plain `<name>.cedar` (no folders)",
                ));
            }
        }
        let pack =
            PolicyPack::from_sources("schema", current.schema_text(), files.into_iter().collect())
                .map_err(policy_error)?;
        let key = store_key(selected.as_ref());
        let _serialised = self.writes.lock().await;
        if let Some(existing) = self
            .store
            .policy_version_by_digest(&key, pack.digest().as_str())
            .await?
        {
            return Ok((view(&existing)?, false));
        }
        let row = self.row(&key, &pack, author, VersionState::Draft);
        self.ledger.append(vec![self.created(&row, &pack)?]).await?;
        Ok((view(&row)?, true))
    }

    async fn version_row(&self, id: &VersionId) -> Result<PolicyVersionRow, VersionError> {
        self.store
            .policy_version(&id.to_string())
            .await?
            .ok_or_else(|| VersionError::NotFound(id.to_string()))
    }

    pub async fn list(&self, store: &str) -> Result<Vec<PolicyVersion>, VersionError> {
        self.store
            .policy_versions(store)
            .await?
            .iter()
            .map(view)
            .collect()
    }

    pub async fn get(&self, id: &VersionId) -> Result<PolicyVersionDetail, VersionError> {
        let row = self.version_row(id).await?;
        Ok(PolicyVersionDetail {
            version: view(&row)?,
            sources: sources(&row)?.into_iter().collect(),
        })
    }

    /// Runs the store's policy tests against the version, records the run, and if it passed
    /// makes the version active, all from the next decision on.
    pub async fn activate(
        &self,
        pipeline: &Pipeline,
        id: &VersionId,
        actor: &str,
    ) -> Result<Activation, VersionError> {
        let _serialised = self.writes.lock().await;
        let row = self.version_row(id).await?;
        if state_of(&row)? == VersionState::Retired {
            return Err(VersionError::Conflict(format!(
                "version `{id}` is retired and cannot be activated"
            )));
        }
        let selected = selector(&row.store);
        let pack = self.pack_of_row(pipeline, &row)?;

        let (test_files, test_checks, failures) = self.run_tests(&row.store, &pack)?;
        let tested = self.tested(&row, actor, test_files, test_checks, &failures)?;
        if !failures.is_empty() {
            self.ledger.append(vec![tested]).await?;
            return Err(VersionError::TestsFailed(failures));
        }
        let previous = self
            .store
            .active_policy_version(&row.store)
            .await?
            .map(|a| a.id)
            .filter(|p| *p != row.id)
            .map(|p| {
                p.parse::<VersionId>()
                    .map_err(|e| VersionError::Corrupt(format!("version `{p}`: {e}")))
            })
            .transpose()?;
        self.ledger
            .append(vec![
                tested,
                self.activated(&row, actor, previous.map(|p| p.to_string()))?,
            ])
            .await?;
        pipeline.set_pack(selected.as_ref(), pack);
        end_shadow(pipeline, &row);
        let mut version = view(&row)?;
        version.state = VersionState::Active;
        Ok(Activation {
            version,
            previous,
            test_files,
            test_checks,
        })
    }

    /// Runs the store's policy tests against the version and records the run, without
    /// activating it: what an activation would check first.
    pub async fn test(
        &self,
        pipeline: &Pipeline,
        id: &VersionId,
        actor: &str,
    ) -> Result<TestRun, VersionError> {
        let row = self.version_row(id).await?;
        let pack = self.pack_of_row(pipeline, &row)?;
        let (files, checks, failures) = self.run_tests(&row.store, &pack)?;
        self.ledger
            .append(vec![self.tested(&row, actor, files, checks, &failures)?])
            .await?;
        Ok(TestRun {
            version: *id,
            files,
            checks,
            failures,
        })
    }

    fn tested(
        &self,
        row: &PolicyVersionRow,
        actor: &str,
        files: usize,
        checks: usize,
        failures: &[String],
    ) -> Result<Append, VersionError> {
        Self::entry(
            Event::PolicyTested(PolicyTestEvent {
                version: row.id.clone(),
                store: row.store.clone(),
                policy_digest: row.digest.clone(),
                actor: actor.to_owned(),
                passed: failures.is_empty(),
                files,
                checks,
                failures: failures.iter().take(20).cloned().collect(),
            }),
            SideEffect::None,
        )
    }

    /// The store's policy tests against `pack`: (files, checks, failures).
    fn run_tests(
        &self,
        store: &str,
        pack: &PolicyPack,
    ) -> Result<(usize, usize, Vec<String>), VersionError> {
        let Some(dir) = self.tests.get(store).filter(|d| d.is_dir()) else {
            return Ok((0, 0, Vec::new()));
        };
        let files =
            collect(std::slice::from_ref(dir)).map_err(|e| invalid("tests", e.to_string()))?;
        let (mut checks, mut failures) = (0, Vec::new());
        for file in &files {
            let name = file.strip_prefix(dir).unwrap_or(file).display().to_string();
            match run_file_with(file, Some((pack.policy_set(), pack.schema()))) {
                Ok(report) => {
                    checks += report.checks;
                    failures.extend(report.mismatches.into_iter().map(|m| {
                        format!(
                            "{name}: {}: {}: expected {}, got {}",
                            m.test, m.what, m.expected, m.got
                        )
                    }));
                }
                Err(e) => failures.push(format!("{name}: {e}")),
            }
        }
        Ok((files.len(), checks, failures))
    }

    /// What `id` would have answered to the decisions recorded over `period` (default store).
    pub async fn replay(
        &self,
        pipeline: &Pipeline,
        id: &VersionId,
        period: &crate::compliance::Period,
    ) -> Result<replay::ReplayReport, VersionError> {
        let row = self.version_row(id).await?;
        if row.store != DEFAULT_STORE {
            return Err(invalid(
                "version",
                "replay covers the default store, whose decisions carry their registry state",
            ));
        }
        let pack = self.pack_of_row(pipeline, &row)?;
        replay::replay(&self.store, &pack, period)
            .await
            .map_err(|e| match e {
                replay::ReplayError::Store(e) => VersionError::Store(e),
                replay::ReplayError::Corrupt(m) => VersionError::Corrupt(m),
            })
    }

    /// Evaluates `id` beside its store's active version on live traffic, without affecting
    /// answers (one shadow per store; a previous one stops).
    pub async fn shadow(
        &self,
        pipeline: &Pipeline,
        id: &VersionId,
        actor: &str,
    ) -> Result<PolicyVersion, VersionError> {
        let _serialised = self.writes.lock().await;
        let row = self.version_row(id).await?;
        let state = state_of(&row)?;
        if !matches!(state, VersionState::Draft | VersionState::Shadow) {
            return Err(VersionError::Conflict(format!(
                "version `{id}` is {state}: only a draft can be shadowed"
            )));
        }
        let selected = selector(&row.store);
        let pack = self.pack_of_row(pipeline, &row)?;
        self.ledger
            .append(vec![Self::entry(
                Event::PolicyShadowed(PolicyVersionEvent {
                    version: row.id.clone(),
                    store: row.store.clone(),
                    policy_digest: row.digest.clone(),
                    actor: actor.to_owned(),
                    previous: None,
                }),
                SideEffect::PolicyShadow {
                    store: row.store.clone(),
                    version: row.id.clone(),
                },
            )?])
            .await?;
        pipeline.set_shadow(
            selected.as_ref(),
            Some(Arc::new(crate::policy::shadow::Shadow::new(*id, pack))),
        );
        let mut version = view(&row)?;
        version.state = VersionState::Shadow;
        Ok(version)
    }

    /// How the shadow version has compared with the active one since it started (or since the
    /// server started: counts are kept in memory).
    pub fn shadow_report(
        &self,
        pipeline: &Pipeline,
        store: &str,
        id: &VersionId,
    ) -> Result<ShadowReport, VersionError> {
        use std::sync::atomic::Ordering::Relaxed;
        let shadow = pipeline
            .shadow_of(selector(store).as_ref())
            .filter(|s| s.version == *id)
            .ok_or_else(|| {
                VersionError::Conflict(format!("version `{id}` is not being shadowed"))
            })?;
        let allow_to_deny = shadow.allow_to_deny.load(Relaxed);
        let deny_to_allow = shadow.deny_to_allow.load(Relaxed);
        Ok(ShadowReport {
            version: *id,
            since: shadow.since,
            evaluated: shadow.evaluated.load(Relaxed),
            disagreements: allow_to_deny + deny_to_allow,
            allow_to_deny,
            deny_to_allow,
            examples: shadow
                .examples
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default(),
        })
    }

    /// The store a version belongs to.
    pub async fn store_of(&self, id: &VersionId) -> Result<String, VersionError> {
        Ok(self.version_row(id).await?.store)
    }

    /// Serves what the database says is each store's active and shadow version: another replica
    /// activated, shadowed or retired one.
    pub async fn sync(&self, pipeline: &Pipeline) -> Result<(), VersionError> {
        let mut stores: Vec<Option<StoreName>> = vec![None];
        stores.extend(pipeline.stores().map(|s| Some(s.name.clone())));
        for store in stores {
            let store = store.as_ref();
            if let Some(row) = self.store.active_policy_version(&store_key(store)).await?
                && pipeline
                    .pack_of(store)
                    .is_some_and(|p| p.digest().to_string() != row.digest)
            {
                let pack = self.pack_of_row(pipeline, &row)?;
                pipeline.set_pack(store, pack);
            }
            let shadow = self.store.shadow_policy_version(&store_key(store)).await?;
            let current = pipeline.shadow_of(store).map(|s| s.version.to_string());
            if shadow.as_ref().map(|r| &r.id) != current.as_ref() {
                let shadow = match shadow {
                    Some(row) => Some(self.shadow_of_row(pipeline, &row)?),
                    None => None,
                };
                pipeline.set_shadow(store, shadow);
            }
        }
        Ok(())
    }

    /// At start: re-attach each store's shadow version (its counts start again at zero).
    pub async fn resume_shadow(
        &self,
        pipeline: &Pipeline,
        store: Option<&StoreName>,
    ) -> Result<(), VersionError> {
        if let Some(row) = self.store.shadow_policy_version(&store_key(store)).await? {
            pipeline.set_shadow(store, Some(self.shadow_of_row(pipeline, &row)?));
        }
        Ok(())
    }

    /// A stored version as a shadow of its store (its counts start at zero).
    fn shadow_of_row(
        &self,
        pipeline: &Pipeline,
        row: &PolicyVersionRow,
    ) -> Result<Arc<crate::policy::shadow::Shadow>, VersionError> {
        let pack = self.pack_of_row(pipeline, row)?;
        Ok(Arc::new(crate::policy::shadow::Shadow::new(
            id_of(row)?,
            pack,
        )))
    }

    fn pack_of_row(
        &self,
        pipeline: &Pipeline,
        row: &PolicyVersionRow,
    ) -> Result<PolicyPack, VersionError> {
        let current = pipeline
            .pack_of(selector(&row.store).as_ref())
            .ok_or_else(|| VersionError::NoStore(row.store.clone()))?;
        PolicyPack::from_sources("schema", current.schema_text(), sources(row)?)
            .map_err(policy_error)
    }

    /// Withdraws a version for good; the active one cannot be.
    pub async fn retire(
        &self,
        pipeline: &Pipeline,
        id: &VersionId,
        actor: &str,
    ) -> Result<PolicyVersion, VersionError> {
        let _serialised = self.writes.lock().await;
        let row = self.version_row(id).await?;
        let state = state_of(&row)?;
        if state == VersionState::Active {
            return Err(VersionError::Conflict(format!(
                "version `{id}` is active: activate another version first"
            )));
        }
        if state != VersionState::Retired {
            self.ledger
                .append(vec![Self::entry(
                    Event::PolicyRetired(PolicyVersionEvent {
                        version: row.id.clone(),
                        store: row.store.clone(),
                        policy_digest: row.digest.clone(),
                        actor: actor.to_owned(),
                        previous: None,
                    }),
                    SideEffect::PolicyRetirement {
                        version: row.id.clone(),
                    },
                )?])
                .await?;
        }
        end_shadow(pipeline, &row);
        let mut version = view(&row)?;
        version.state = VersionState::Retired;
        Ok(version)
    }
}

/// Stops shadowing `row` if it is its store's shadow (it became active, or was retired).
fn end_shadow(pipeline: &Pipeline, row: &PolicyVersionRow) {
    let selected = selector(&row.store);
    if pipeline
        .shadow_of(selected.as_ref())
        .is_some_and(|s| s.version.to_string() == row.id)
    {
        pipeline.set_shadow(selected.as_ref(), None);
    }
}

fn policy_error(e: PolicyError) -> VersionError {
    match e {
        PolicyError::Invalid(diagnostics) => VersionError::Diagnostics(diagnostics),
        PolicyError::Io { path, source } => {
            invalid("files", format!("{}: {source}", path.display()))
        }
    }
}
