//! One typed configuration: defaults, then `reins.toml` (optional), then `REINS_*` environment
//! variables, then command-line flags. Validated once at start; every error names the key.
//!
//! Nested keys use `__` in the environment: `REINS_IDENTITY__DEV_ISSUER=false`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub mod guards;
mod people;
pub use people::*;

/// The config file read when `--config` is not given and the file exists.
pub const DEFAULT_CONFIG_FILE: &str = "reins.toml";

/// Environment variables with the `REINS_` prefix that are not configuration keys: they are read
/// by the CLI itself (and `REINS_BENCH_*` by the benchmarks, `REINS_TEST_*` by the tests). Anything else with the prefix must be
/// a key, so that a typo fails loudly.
const NON_CONFIG_ENV: &[&str] = &["config", "token", "url", "log", "log_format"];

fn is_config_env(key: &str) -> bool {
    !NON_CONFIG_ENV.contains(&key) && !key.starts_with("bench_") && !key.starts_with("test_")
}

/// Longest stated `intent` of a decision request, in bytes, unless configured.
pub const DEFAULT_MAX_INTENT_BYTES: usize = 2048;

/// How long an `Idempotency-Key` answers the decision recorded with it, unless configured.
pub const DEFAULT_IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Where the SQLite database and generated keys live.
    pub data_dir: PathBuf,
    /// The folder holding the ledger signing key and the dev issuer key (`--keys-dir`,
    /// `REINS_KEYS_DIR`). Default: `<data_dir>/keys`. Replicas share one (mounted read-only).
    pub keys_dir: Option<PathBuf>,
    pub database: DatabaseConfig,
    /// Folder of `*.cedar` files: the active policy pack.
    pub policy_dir: PathBuf,
    /// The Cedar schema the policies and requests are checked against.
    pub schema_file: PathBuf,
    /// Watch the policy folders (the pack and each store's) and turn every edit into a new version
    /// through the same gate as an upload (validate, test, activate). `--watch`.
    pub watch: bool,
    /// How often watched folders are checked for edits.
    #[serde(with = "humantime_serde")]
    pub watch_interval: Duration,
    /// The control plane's own policy set (schema.cedarschema + *.cedar). Default:
    /// `<policy_dir>/control`, or the built-in set when that folder does not exist.
    pub control_dir: Option<PathBuf>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// A request still running after this long is answered 503.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Most requests in one `POST /v1/decisions/batch`.
    pub batch_max: usize,
    /// How long an `Idempotency-Key` answers the decision recorded with it.
    #[serde(with = "humantime_serde")]
    pub idempotency_window: Duration,
    /// An allowed decision with no outcome reported this long after it was made is listed by
    /// `GET /v1/decisions?outcome=missing`.
    #[serde(with = "humantime_serde")]
    pub outcome_grace: Duration,
    /// Longest `intent` (and `trace.user_request`) of a decision request, in bytes.
    pub max_intent_bytes: usize,
    pub identity: IdentityConfig,
    pub ledger: LedgerConfig,
    pub approvals: ApprovalsConfig,
    pub compliance: ComplianceConfig,
    pub console: ConsoleConfig,
    pub authzen: AuthzenConfig,
    pub http: HttpConfig,
    /// Folder-backed policy stores by name, served under `/stores/{name}/` (`--store NAME=DIR`).
    pub stores: std::collections::BTreeMap<String, PathBuf>,
    /// Circuit breakers that engage a kill switch by themselves (`[[tripwires]]`).
    pub tripwires: Vec<guards::TripwireConfig>,
    /// Where to send approvals, kill switches, tripwire hits and activations (`[[webhooks]]`).
    pub webhooks: Vec<guards::HookConfig>,
    /// Usage counting for guardrail policies (`[usage]`).
    pub usage: guards::UsageConfig,
    /// The clock usage windows are read at: the system's, or in tests one they move forward.
    #[serde(skip)]
    pub clock: crate::usage::Clock,
}

/// Where the state lives: the embedded SQLite file (one server), or a PostgreSQL database shared
/// by any number of replicas.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://...` (`--database-url`, `REINS_DATABASE_URL`). Default: the
    /// SQLite file `<data_dir>/reins.db`.
    pub url: Option<String>,
    /// Most connections one replica opens to PostgreSQL.
    pub max_connections: u32,
    /// Entries sequenced but not yet in the Merkle tree at which a replica on PostgreSQL denies
    /// decisions (`ledger_backlog`) instead of queueing without end.
    pub backlog_limit: u64,
    /// How often a replica on PostgreSQL reads the shared control version (kill switches,
    /// registry, approvals, policies), besides the notifications it listens for.
    #[serde(with = "humantime_serde")]
    pub control_poll: Duration,
    /// A replica whose last successful read of the control version is older than this denies
    /// every decision and fails `/readyz`: it may have missed a kill switch.
    #[serde(with = "humantime_serde")]
    pub control_max_staleness: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 16,
            backlog_limit: 100_000,
            control_poll: Duration::from_millis(250),
            control_max_staleness: Duration::from_secs(1),
        }
    }
}

/// The database a configuration names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DatabaseUrl {
    /// The URL without its password, for logs.
    pub fn redacted(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("sqlite://{}", path.display()),
            Self::Postgres(url) => match url::Url::parse(url) {
                Ok(mut u) if u.password().is_some() => {
                    let _ = u.set_password(Some("***"));
                    u.to_string()
                }
                _ => url.clone(),
            },
        }
    }
}

/// Connection limits of the HTTP listener: what keeps clients that connect and say little (or
/// nothing) from holding the descriptors and memory that decisions need.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// A connection must send a whole request head (request line and headers) within this long
    /// after it opens, or after the previous answer on a kept-alive HTTP/1 connection; otherwise
    /// it is closed. So this also bounds how long an idle HTTP/1 connection is kept.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A connection on which nothing was read or written for this long, with no request being
    /// answered, is dropped (an idle HTTP/2 connection, or a client that stopped reading its answer).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Most connections open at once. One more is answered `503` with `Connection: close` at once
    /// instead of being accepted and starved. Lowered at start to leave
    /// [`crate::server::RESERVED_FDS`] descriptors free under the process's open-file limit.
    pub max_connections: usize,
    /// An answer that takes this long or longer is logged (`slow answer`) with what the ledger's
    /// write path did meanwhile. `scripts/bench.sh`'s soak mode sets 20ms.
    #[serde(with = "humantime_serde")]
    pub slow_answer: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            slow_answer: Duration::from_millis(100),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthzenConfig {
    /// How policy enforcement points authenticate to the AuthZEN endpoints: `token` (a bearer
    /// token with role `pep`) or `none` (local testing only).
    pub pep_auth: PepAuth,
    /// The base URL discovery advertises; default: `http://` + the request's Host header.
    pub public_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PepAuth {
    #[default]
    Token,
    None,
}

impl Default for AuthzenConfig {
    fn default() -> Self {
        Self {
            pep_auth: PepAuth::Token,
            public_url: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComplianceConfig {
    /// How long decision logs are kept, in days, as the operator commits to (EU AI Act Art 19(1)
    /// and 26(6) ask for at least six months, which can be 184 days). Unset: indefinitely. Reins itself never deletes ledger
    /// entries; this is the declared period the checklist checks.
    pub log_retention_days: Option<u32>,
    /// A kill-switch engagement or drill for an agent older than this is stale evidence for
    /// Art 14(4)(e).
    #[serde(with = "humantime_serde")]
    pub drill_window: Duration,
    /// Period a model card reports on when the request names none.
    #[serde(with = "humantime_serde")]
    pub card_period: Duration,
    /// How long an attestation counts; after that the checklist reports it stale.
    #[serde(with = "humantime_serde")]
    pub attestation_validity: Duration,
    /// A severity (`death`, `serious_harm`, `critical_infrastructure`, `fundamental_rights`,
    /// `property_or_environment`): every kill switch engaged (not a drill) opens an incident of it,
    /// linked to the switch and its agent, aware from the engagement. Unset: none is opened.
    pub incident_on_killswitch: Option<String>,
}

/// The severities `compliance.incident_on_killswitch` takes: `incidents::Severity`'s names (its
/// tests check the two agree; this layer cannot name the type).
pub const INCIDENT_SEVERITIES: [&str; 5] = [
    "death",
    "serious_harm",
    "critical_infrastructure",
    "fundamental_rights",
    "property_or_environment",
];

impl Default for ComplianceConfig {
    fn default() -> Self {
        Self {
            log_retention_days: None,
            drill_window: Duration::from_secs(90 * 86_400),
            card_period: Duration::from_secs(30 * 86_400),
            attestation_validity: Duration::from_secs(365 * 86_400),
            incident_on_killswitch: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalsConfig {
    /// How long an approval request stays open (and a grant usable).
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Whether the agent's owner may approve its requests (segregation of duties says no).
    pub owner_may_approve: bool,
    /// How often expiries are recorded.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(15 * 60),
            owner_may_approve: false,
            sweep_interval: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// The log's name: first line of every checkpoint and the signing key's name. Make it unique,
    /// e.g. `reins.example.com/ledger`.
    pub origin: String,
    /// Ed25519 private key (PKCS#8 PEM). Default: generated in `<data_dir>/keys/ledger.pem`.
    pub signing_key_file: Option<PathBuf>,
    /// A checkpoint is signed at most this long after new entries.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// JSON pointers into a decision's context whose values the ledger stores only as salted
    /// SHA-256 commitments, e.g. `/args/customer/email`.
    pub mask: Vec<String>,
    /// Record a decision's `intent` and `trace.user_request` only as salted commitments, as
    /// `mask` does for context values.
    pub mask_intent: bool,
    /// Most entries committed in one transaction.
    pub max_batch: usize,
    /// Size, in MiB, at which the SQLite write-ahead log is restarted from its beginning under
    /// load (it cannot restart while commits keep arriving otherwise, and would grow without end).
    pub wal_limit_mib: u64,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            origin: "reins.local/ledger".into(),
            signing_key_file: None,
            checkpoint_interval: Duration::from_secs(1),
            mask: Vec::new(),
            mask_intent: false,
            max_batch: 1024,
            wal_limit_mib: 64,
        }
    }
}

/// Checks each item of a `[[key]]` list: its own problem, or a name an earlier item has.
fn named_list<T>(
    key: &str,
    items: &[T],
    check: impl Fn(&T) -> (&String, Option<String>),
) -> Result<(), ConfigError> {
    for (i, item) in items.iter().enumerate() {
        let (name, problem) = check(item);
        let (key, message) = match problem {
            Some(problem) => (format!("{key}[{i}]"), problem),
            None if items[..i].iter().any(|other| check(other).0 == name) => (
                format!("{key}[{i}].name"),
                format!("`{name}` names two {key}"),
            ),
            None => continue,
        };
        return Err(ConfigError::Invalid { key, message });
    }
    Ok(())
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            keys_dir: None,
            database: DatabaseConfig::default(),
            policy_dir: PathBuf::from("policies"),
            schema_file: PathBuf::from("schemas/reins.cedarschema"),
            control_dir: None,
            watch: false,
            watch_interval: Duration::from_secs(1),
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            batch_max: 100,
            idempotency_window: DEFAULT_IDEMPOTENCY_WINDOW,
            outcome_grace: Duration::from_secs(300),
            max_intent_bytes: DEFAULT_MAX_INTENT_BYTES,
            identity: IdentityConfig::default(),
            ledger: LedgerConfig::default(),
            approvals: ApprovalsConfig::default(),
            compliance: ComplianceConfig::default(),
            console: ConsoleConfig::default(),
            authzen: AuthzenConfig::default(),
            http: HttpConfig::default(),
            stores: Default::default(),
            tripwires: Vec::new(),
            webhooks: Vec::new(),
            usage: Default::default(),
            clock: Default::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(Box<figment::Error>),
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: String, message: String },
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
}

/// Values given on the command line; they win over file and environment.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseOverrides>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub stores: std::collections::BTreeMap<String, PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authzen: Option<AuthzenOverrides>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct DatabaseOverrides {
    pub url: String,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct AuthzenOverrides {
    pub pep_auth: PepAuth,
}

impl Config {
    /// Loads the layered configuration. `file` is `--config`; without it `reins.toml` is read if
    /// present.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) if !path.exists() => return Err(ConfigError::MissingFile(path.into())),
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE))
            }
            None => {}
        }
        // `REINS_DATABASE_URL` is the name every tool expects; the nested form works as well.
        let env = Env::prefixed("REINS_")
            .filter(|k| is_config_env(&k.as_str().to_ascii_lowercase()))
            .map(|k| {
                if k.as_str().eq_ignore_ascii_case("database_url") {
                    "database__url".into()
                } else {
                    k.into()
                }
            })
            .split("__");
        let config: Config = figment
            .merge(env)
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| ConfigError::Load(Box::new(e)))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        };
        parse_database_url(self.database.url.as_deref())
            .map_err(|message| invalid("database.url", &message))?;
        named_list("webhooks", &self.webhooks, |h| (&h.name, h.problem()))?;
        named_list("tripwires", &self.tripwires, |r| (&r.name, r.problem()))?;
        if self.database.max_connections < 2 {
            return Err(invalid("database.max_connections", "must be at least 2"));
        }
        if self.database.backlog_limit == 0 {
            return Err(invalid("database.backlog_limit", "must be at least 1"));
        }
        if self.database.control_poll.is_zero()
            || self.database.control_poll >= self.database.control_max_staleness
        {
            return Err(invalid(
                "database.control_poll",
                "must be greater than zero and shorter than database.control_max_staleness",
            ));
        }
        if let Some(severity) = &self.compliance.incident_on_killswitch
            && !INCIDENT_SEVERITIES.contains(&severity.as_str())
        {
            return Err(invalid(
                "compliance.incident_on_killswitch",
                &format!(
                    "`{severity}` is not a severity; one of {}",
                    INCIDENT_SEVERITIES.join(", ")
                ),
            ));
        }
        if let Some(oidc) = &self.console.oidc {
            for (key, value) in [
                ("console.oidc.issuer", &oidc.issuer),
                ("console.oidc.redirect_url", &oidc.redirect_url),
            ] {
                match url::Url::parse(value) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") => {}
                    _ => return Err(invalid(key, "must be an http(s) URL")),
                }
            }
            if !oidc.redirect_url.ends_with("/console/oidc/callback") {
                return Err(invalid(
                    "console.oidc.redirect_url",
                    "must be this server's /console/oidc/callback",
                ));
            }
            if oidc.client_id.is_empty() {
                return Err(invalid("console.oidc.client_id", "must not be empty"));
            }
        }
        if self.max_body_bytes < 1024 {
            return Err(invalid("max_body_bytes", "must be at least 1024"));
        }
        if self.idempotency_window.is_zero() {
            return Err(invalid("idempotency_window", "must be greater than zero"));
        }
        if self.batch_max == 0 {
            return Err(invalid("batch_max", "must be at least 1"));
        }
        if self.request_timeout.is_zero() {
            return Err(invalid("request_timeout", "must be greater than zero"));
        }
        if self.http.header_read_timeout < Duration::from_millis(100) {
            return Err(invalid(
                "http.header_read_timeout",
                "must be at least 100ms",
            ));
        }
        if self.http.idle_timeout < Duration::from_millis(100) {
            return Err(invalid("http.idle_timeout", "must be at least 100ms"));
        }
        if self.http.max_connections == 0 {
            return Err(invalid("http.max_connections", "must be at least 1"));
        }
        if self.identity.audience.is_empty() {
            return Err(invalid("identity.audience", "must not be empty"));
        }
        let origin = &self.ledger.origin;
        if origin.is_empty() || origin.chars().any(|c| c.is_whitespace() || c == '+') {
            return Err(invalid(
                "ledger.origin",
                "must be non-empty, without spaces or `+` (it names the signing key)",
            ));
        }
        if self.ledger.checkpoint_interval < Duration::from_millis(10) {
            return Err(invalid(
                "ledger.checkpoint_interval",
                "must be at least 10ms",
            ));
        }
        if self.approvals.ttl < Duration::from_secs(1) {
            return Err(invalid("approvals.ttl", "must be at least 1s"));
        }
        if self.approvals.sweep_interval < Duration::from_millis(10) {
            return Err(invalid("approvals.sweep_interval", "must be at least 10ms"));
        }
        for name in self.stores.keys() {
            if let Err(e) = name.parse::<crate::ids::StoreName>() {
                return Err(invalid(&format!("stores.{name}"), &e.to_string()));
            }
            if name == crate::ids::DEFAULT_STORE {
                return Err(invalid(
                    "stores.default",
                    "`default` is the agent-governance store (policy_dir); choose another name",
                ));
            }
        }
        if self.watch_interval < Duration::from_millis(50) {
            return Err(invalid("watch_interval", "must be at least 50ms"));
        }
        if self.compliance.drill_window.is_zero() {
            return Err(invalid(
                "compliance.drill_window",
                "must be greater than zero",
            ));
        }
        if self.compliance.attestation_validity.is_zero() {
            return Err(invalid(
                "compliance.attestation_validity",
                "must be greater than zero",
            ));
        }
        if self.compliance.card_period.is_zero() {
            return Err(invalid(
                "compliance.card_period",
                "must be greater than zero",
            ));
        }
        if self.ledger.max_batch == 0 {
            return Err(invalid("ledger.max_batch", "must be at least 1"));
        }
        if self.ledger.wal_limit_mib == 0 {
            return Err(invalid("ledger.wal_limit_mib", "must be at least 1"));
        }
        for (i, pointer) in self.ledger.mask.iter().enumerate() {
            if !pointer.starts_with('/') {
                return Err(ConfigError::Invalid {
                    key: format!("ledger.mask[{i}]"),
                    message: format!(
                        "`{pointer}` is not a JSON pointer (RFC 6901); it must start with `/`"
                    ),
                });
            }
        }
        for (i, issuer) in self.identity.issuers.iter().enumerate() {
            issuer
                .validate()
                .map_err(|(field, message)| ConfigError::Invalid {
                    key: format!("identity.issuers[{i}].{field}"),
                    message,
                })?;
        }
        Ok(())
    }

    /// The SQLite file of the data dir (the default database).
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("reins.db")
    }

    /// The database this configuration names (validated by [`Config::load`]).
    pub fn database_url(&self) -> DatabaseUrl {
        match parse_database_url(self.database.url.as_deref()) {
            Ok(Some(url)) => url,
            _ => DatabaseUrl::Sqlite(self.database_path()),
        }
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.keys_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keys"))
    }
}

/// `sqlite://PATH` (also `sqlite:PATH`) or `postgres://`/`postgresql://`; None when not set.
fn parse_database_url(url: Option<&str>) -> Result<Option<DatabaseUrl>, String> {
    let Some(url) = url else { return Ok(None) };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return url::Url::parse(url)
            .map(|_| Some(DatabaseUrl::Postgres(url.to_owned())))
            .map_err(|e| format!("not a valid PostgreSQL URL: {e}"));
    }
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let path = path.split('?').next().unwrap_or_default();
        if path.is_empty() {
            return Err("a sqlite URL needs a file path: sqlite://PATH".into());
        }
        return Ok(Some(DatabaseUrl::Sqlite(PathBuf::from(path))));
    }
    Err(format!(
        "`{url}` is neither sqlite://PATH nor postgres://USER@HOST/DATABASE"
    ))
}

#[cfg(test)]
// figment's Jail dictates the closures' error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn defaults_are_the_documented_ones() {
        Jail::expect_with(|_| {
            let c = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
            assert_eq!(c.data_dir, PathBuf::from("data"));
            assert_eq!(c.max_body_bytes, 1024 * 1024);
            assert_eq!(c.batch_max, 100);
            assert_eq!(c.ledger.wal_limit_mib, 64);
            Ok(())
        });
    }

    #[test]
    fn file_then_env_then_flags() {
        Jail::expect_with(|jail| {
            jail.create_file("reins.toml", "listen = \"127.0.0.1:9000\"\nbatch_max = 7\n")?;
            jail.set_env("REINS_BATCH_MAX", "9");
            jail.set_env("REINS_IDENTITY__DEV_ISSUER", "false");
            jail.set_env("REINS_TOKEN", "not a config key");
            jail.set_env("REINS_BENCH_ENTRIES", "10");
            let c = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(c.listen.port(), 9000);
            assert_eq!(c.batch_max, 9);
            assert!(!c.identity.dev_issuer);
            let flags = Overrides {
                listen: Some("127.0.0.1:9100".parse().unwrap()),
                ..Default::default()
            };
            let c = Config::load(None, &flags).map_err(|e| e.to_string())?;
            assert_eq!(c.listen.port(), 9100);
            Ok(())
        });
    }

    #[test]
    fn database_url_and_keys_dir_from_env_and_flags() {
        Jail::expect_with(|jail| {
            let c = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(
                c.database_url(),
                DatabaseUrl::Sqlite(PathBuf::from("data/reins.db"))
            );
            assert_eq!(c.keys_dir(), PathBuf::from("data/keys"));
            jail.set_env("REINS_DATABASE_URL", "postgres://reins:secret@db/reins");
            jail.set_env("REINS_KEYS_DIR", "/etc/reins/keys");
            let c = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
            let url = c.database_url();
            assert_eq!(
                url,
                DatabaseUrl::Postgres("postgres://reins:secret@db/reins".into())
            );
            assert!(!url.redacted().contains("secret"), "{}", url.redacted());
            assert_eq!(c.keys_dir(), PathBuf::from("/etc/reins/keys"));
            let flags = Overrides {
                database: Some(DatabaseOverrides {
                    url: "sqlite:///var/lib/reins/r.db".into(),
                }),
                ..Default::default()
            };
            let c = Config::load(None, &flags).map_err(|e| e.to_string())?;
            assert_eq!(
                c.database_url(),
                DatabaseUrl::Sqlite(PathBuf::from("/var/lib/reins/r.db"))
            );
            jail.set_env("REINS_DATABASE_URL", "mysql://db/reins");
            let err = Config::load(None, &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("database.url"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_key() {
        Jail::expect_with(|jail| {
            jail.create_file("reins.toml", "listen = \"not an address\"\n")?;
            let err = Config::load(None, &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("listen"), "{err}");

            jail.create_file("reins.toml", "lisen = \"127.0.0.1:1\"\n")?;
            let err = Config::load(None, &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("lisen"), "{err}");

            jail.create_file("reins.toml", "batch_max = 0\n")?;
            let err = Config::load(None, &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("batch_max"), "{err}");

            jail.create_file("reins.toml", "[ledger]\nwal_limit_mib = 0\n")?;
            let err = Config::load(None, &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("ledger.wal_limit_mib"), "{err}");

            jail.create_file(
                "reins.toml",
                "[[identity.issuers]]\nissuer = \"https://idp\"\naudiences = [\"reins\"]\nalgorithms = [\"HS256\"]\njwks_url = \"https://idp/jwks\"\n",
            )?;
            let err = Config::load(None, &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("identity.issuers[0].algorithms"), "{err}");
            Ok(())
        });
    }
}
