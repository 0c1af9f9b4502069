//! The `reins` command: `serve`, `token mint`, `policy check`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Overrides};
use crate::identity::{DevIssuer, MintRequest};
use crate::ids::{AgentId, UserId};
use crate::policy::PolicyPack;

mod evidence;
mod remote;

#[derive(Debug, Parser)]
#[command(
    name = "reins",
    version,
    about = "Policy-as-code governance for AI agents"
)]
pub struct Cli {
    /// Configuration file (default: ./reins.toml when present).
    #[arg(long, global = true, env = "REINS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log lines as text or as JSON objects (with the request id and trace id).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t,
        env = "REINS_LOG_FORMAT"
    )]
    pub log_format: crate::telemetry::LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the decision service.
    Serve(ServeArgs),
    /// Tokens from the local dev issuer.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print a one-time, short-lived sign-in link to the console for a person (the dev issuer
    /// signs it, as it signs `token mint`'s tokens).
    ConsoleLink(ConsoleLinkArgs),
    /// Policy packs.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The signed ledger.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// The kill switch of a running server (role operator).
    Kill(remote::KillArgs),
    /// Approvals waiting on a running server: list, show, grant, deny (role approver).
    Approvals(remote::ApprovalsArgs),
    /// The agents a running server has registered (role admin or auditor).
    Agents(remote::AgentsArgs),
    /// Audit packs: export from the local data dir, verify offline.
    #[command(subcommand)]
    AuditPack(AuditPackCommand),
    /// Serious incidents (AI Act Art 73), read from the local data dir.
    #[command(subcommand)]
    Incident(IncidentCommand),
    /// Command hooks for coding agents (Claude Code, Codex): Reins decides each tool call.
    #[command(subcommand)]
    Hook(HookCommand),
    /// An MCP gateway: fronts the MCP servers named in `--config FILE` (TOML) and forwards a
    /// tool call only when Reins allows it. Serves stdio (token in REINS_TOKEN), or Streamable
    /// HTTP at `/mcp` with `--listen ADDR`.
    Mcp(crate::mcp::McpArgs),
}

#[derive(Debug, Subcommand)]
pub enum HookCommand {
    /// Read a PreToolUse event on stdin, ask Reins, answer allow, deny or ask on stdout. Any
    /// failure to get an answer is a deny.
    PreToolUse(crate::hook::HookArgs),
}

#[derive(Debug, Subcommand)]
pub enum AuditPackCommand {
    /// Write a zip of the ledger over a period with proofs, policies, model card and checklist,
    /// read from the data dir (the server may keep running).
    Export(ExportArgs),
    /// Check a pack offline: signatures, file digests, every entry's inclusion, consistency and
    /// policy digests. Exits non-zero naming each file that fails.
    Verify {
        pack: PathBuf,
        /// Verifier key (C2SP vkey) to trust; default: the pack's own `verifier.key`.
        #[arg(long)]
        key: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum IncidentCommand {
    /// An incident's report: its deadline and whether it was met, and its timeline from the
    /// ledger with every cited entry's inclusion proof (the server may keep running).
    Report(IncidentReportArgs),
}

#[derive(Debug, Args)]
pub struct IncidentReportArgs {
    /// The incident's id.
    pub id: crate::ids::IncidentId,
    #[arg(long, value_enum, default_value = "markdown")]
    pub format: ReportFormat,
    /// Write the report here instead of to stdout.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub local: LocalArgs,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ReportFormat {
    Markdown,
    Json,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Only the entries concerning this agent, with its model card and checklist.
    #[arg(long)]
    pub agent: Option<AgentId>,
    /// Start of the period (RFC 3339) [default: the first entry].
    #[arg(long)]
    pub from: Option<String>,
    /// End of the period, exclusive (RFC 3339) [default: now].
    #[arg(long)]
    pub to: Option<String>,
    /// The zip to write.
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    #[command(flatten)]
    pub local: LocalArgs,
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Recompute every leaf and the tree, check every checkpoint's signature and their consistency;
    /// exit non-zero at the first problem, naming the first bad entry index.
    Verify(VerifyArgs),
    /// Print the ledger's verifier key (C2SP vkey), read from the keys dir: what `audit-pack
    /// verify --key` and outside auditors trust.
    Key {
        #[command(flatten)]
        local: LocalArgs,
        /// Write it here instead of to stdout.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Verifier key (C2SP vkey) to trust. Default: derived from the ledger key in the data dir
    /// (offline) or fetched from the server (with --url; trust on first use).
    #[arg(long)]
    pub key: Option<String>,
    /// A checkpoint note saved earlier: also detect a truncated or rewritten tail.
    #[arg(long)]
    pub trusted_checkpoint: Option<PathBuf>,
    /// Verify a running server through its read API instead of the local database.
    #[arg(long)]
    pub url: Option<String>,
    /// Bearer token (role auditor or admin) for --url.
    #[arg(long, env = "REINS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub local: LocalArgs,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PepAuthArg {
    Token,
    None,
}

fn parse_store(text: &str) -> Result<(String, PathBuf), String> {
    let (name, dir) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not NAME=DIR"))?;
    if dir.is_empty() {
        return Err(format!("`{text}` names no folder"));
    }
    Ok((name.to_owned(), PathBuf::from(dir)))
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Serve a policy store from a folder (schema.cedarschema, *.cedar, entities.json) under
    /// `/stores/NAME/`. Repeatable.
    #[arg(long = "store", value_name = "NAME=DIR", value_parser = parse_store)]
    pub stores: Vec<(String, PathBuf)>,
    /// Turn edits of the policy folders into new versions, through the same gate as an upload.
    #[arg(long)]
    pub watch: bool,
    /// How AuthZEN callers authenticate: `token` (role `pep`) or `none` (local testing only).
    #[arg(long, value_enum)]
    pub pep_auth: Option<PepAuthArg>,
    #[command(flatten)]
    pub local: LocalArgs,
}

/// Flags of every subcommand that reads local state.
#[derive(Debug, Args, Clone, Default)]
pub struct LocalArgs {
    /// Data folder: database and keys [default: ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Folder of the ledger signing key and the dev issuer key [default: <data-dir>/keys];
    /// replicas share one.
    #[arg(long)]
    pub keys_dir: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://USER@HOST/DATABASE` [default: <data-dir>/reins.db].
    #[arg(long)]
    pub database_url: Option<String>,
    /// Policy folder [default: ./policies].
    #[arg(long)]
    pub policy_dir: Option<PathBuf>,
    /// Cedar schema [default: ./schemas/reins.cedarschema].
    #[arg(long)]
    pub schema_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Sign a token with the local dev issuer key (created if missing).
    Mint(MintArgs),
}

#[derive(Debug, Args)]
pub struct MintArgs {
    /// The agent (token `sub`, or `act.sub` with --on-behalf-of). For admin tokens, the admin's id.
    #[arg(long, visible_alias = "subject")]
    pub agent: AgentId,
    /// Make a delegation token: the user the agent acts for (RFC 8693 `act`).
    #[arg(long)]
    pub on_behalf_of: Option<UserId>,
    /// Roles, comma-separated (e.g. admin,auditor).
    #[arg(long, value_delimiter = ',')]
    pub roles: Vec<String>,
    /// Lifetime, e.g. 15m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    #[command(flatten)]
    pub local: LocalArgs,
}

#[derive(Debug, Args)]
pub struct ConsoleLinkArgs {
    /// The person (their id, in the grammar of agent ids: letters, digits, `. - _ : @`).
    #[arg(long)]
    pub user: AgentId,
    /// Their roles, comma-separated (e.g. auditor,approver).
    #[arg(long, value_delimiter = ',')]
    pub roles: Vec<String>,
    /// The server's address as the person's browser reaches it [default: http://<listen>].
    #[arg(long)]
    pub base_url: Option<String>,
    /// How long the link may wait to be used (at most 15m).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    #[command(flatten)]
    pub local: LocalArgs,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Parse and validate the policy pack against the schema; print each problem as file:line:col.
    Check(LocalArgs),
    /// What if: replay the decisions recorded in the data dir against a policy version (or a
    /// folder of policies) and report the answers that would change. Reads the data dir only.
    Replay {
        /// A version id (`GET /v1/policies`).
        #[arg(required_unless_present = "policies", conflicts_with = "policies")]
        version: Option<String>,
        /// A folder of `*.cedar` files instead of a stored version.
        #[arg(long)]
        policies: Option<PathBuf>,
        /// Start of the period (RFC 3339) [default: the first decision].
        #[arg(long)]
        from: Option<String>,
        /// End of the period, exclusive (RFC 3339) [default: now].
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        local: LocalArgs,
    },
    /// Run policy test files (Cedar integration-test format); exit non-zero on any mismatch.
    Test {
        /// Test files, or folders to search for them.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print every file, not only failing ones.
        #[arg(long, short)]
        verbose: bool,
    },
}

impl LocalArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            data_dir: self.data_dir.clone(),
            keys_dir: self.keys_dir.clone(),
            database: self
                .database_url
                .clone()
                .map(|url| crate::config::DatabaseOverrides { url }),
            policy_dir: self.policy_dir.clone(),
            schema_file: self.schema_file.clone(),
            ..Overrides::default()
        }
    }
}

/// Runs a parsed command line. Errors are for the user to read.
pub async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let config_file = cli.config.as_deref();
    match cli.command {
        // A hook answers on stdout whatever happens, and its exit status is the agent's contract.
        Command::Hook(HookCommand::PreToolUse(args)) => return Ok(crate::hook::run(args).await),
        Command::Mcp(args) => crate::mcp::run(cli.config, args).await?,
        Command::Serve(args) => {
            let overrides = Overrides {
                listen: args.listen,
                stores: args.stores.into_iter().collect(),
                watch: args.watch.then_some(true),
                authzen: args.pep_auth.map(|p| crate::config::AuthzenOverrides {
                    pep_auth: match p {
                        PepAuthArg::Token => crate::config::PepAuth::Token,
                        PepAuthArg::None => crate::config::PepAuth::None,
                    },
                }),
                ..args.local.overrides()
            };
            let config = Config::load(config_file, &overrides)?;
            crate::server::run(config).await?;
        }
        Command::Token(TokenCommand::Mint(args)) => {
            let config = Config::load(config_file, &args.local.overrides())?;
            if !config.identity.dev_issuer {
                return Err(crate::identity::IdentitySetupError::DevIssuerOff.into());
            }
            let (dev, generated) = DevIssuer::load_or_generate(&config.keys_dir())?;
            if generated {
                eprintln!(
                    "generated dev issuer key in {}",
                    config.keys_dir().display()
                );
            }
            let token = dev.mint(&MintRequest {
                agent: &args.agent,
                on_behalf_of: args.on_behalf_of.as_ref(),
                roles: &args.roles,
                ttl: args.ttl,
                audience: &config.identity.audience,
                roles_claim: &config.identity.roles_claim,
            })?;
            println!("{token}");
        }
        Command::ConsoleLink(args) => {
            let config = Config::load(config_file, &args.local.overrides())?;
            if !config.identity.dev_issuer {
                return Err(crate::identity::IdentitySetupError::DevIssuerOff.into());
            }
            if args.ttl > Duration::from_secs(15 * 60) || args.ttl.is_zero() {
                anyhow::bail!("--ttl: a sign-in link lives at most 15m");
            }
            let (dev, _) = DevIssuer::load_or_generate(&config.keys_dir())?;
            let token = dev.mint(&MintRequest {
                agent: &args.user,
                on_behalf_of: None,
                roles: &args.roles,
                ttl: args.ttl,
                audience: &crate::identity::console_audience(&config.identity.audience),
                roles_claim: &config.identity.roles_claim,
            })?;
            let base = args
                .base_url
                .unwrap_or_else(|| format!("http://{}", config.listen));
            write_stdout(&format!(
                "{}/console/sign-in/link?token={token}\n",
                base.trim_end_matches('/')
            ))?;
        }
        Command::Kill(args) => remote::kill(args).await?,
        Command::Approvals(args) => remote::approvals(args).await?,
        Command::Agents(args) => remote::agents(args).await?,
        Command::Ledger(LedgerCommand::Key { local, output }) => {
            let config = Config::load(config_file, &local.overrides())?;
            let key = ledger_signer(&config)?.verifier_key() + "\n";
            match output {
                Some(path) => std::fs::write(&path, key)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
                None => write_stdout(&key)?,
            }
        }
        Command::AuditPack(AuditPackCommand::Export(args)) => {
            let config = Config::load(config_file, &args.local.overrides())?;
            evidence::export_pack(&config, args).await?;
        }
        Command::AuditPack(AuditPackCommand::Verify { pack, key }) => {
            evidence::verify_pack(&pack, key)?
        }
        Command::Incident(IncidentCommand::Report(args)) => {
            let config = Config::load(config_file, &args.local.overrides())?;
            evidence::incident_report(&config, args).await?;
        }
        Command::Ledger(LedgerCommand::Verify(args)) => {
            let config = Config::load(config_file, &args.local.overrides())?;
            verify_ledger(&config, args).await?;
        }
        Command::Policy(PolicyCommand::Test { paths, verbose }) => policy_test(&paths, verbose)?,
        Command::Policy(PolicyCommand::Replay {
            version,
            policies,
            from,
            to,
            local,
        }) => {
            let config = Config::load(config_file, &local.overrides())?;
            policy_replay(&config, version, policies, from, to).await?;
        }
        Command::Policy(PolicyCommand::Check(local)) => {
            let config = Config::load(config_file, &local.overrides())?;
            let pack = PolicyPack::load(&config.policy_dir, &config.schema_file)?;
            println!(
                "ok: {} policies in {} files, {}",
                pack.policy_count(),
                pack.files().len(),
                pack.digest()
            );
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

async fn verify_ledger(config: &Config, args: VerifyArgs) -> anyhow::Result<()> {
    use crate::ledger::verify::{verify_remote, verify_store};
    use crate::tlog::note::NoteVerifier;

    let trusted = args
        .trusted_checkpoint
        .as_ref()
        .map(|p| std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display())))
        .transpose()?;
    let result = match &args.url {
        Some(url) => {
            let token = args.token.as_deref().ok_or_else(|| {
                anyhow::anyhow!("--url needs --token or REINS_TOKEN (role auditor)")
            })?;
            let vkey = match &args.key {
                Some(k) => k.clone(),
                None => {
                    crate::crypto::install_crypto_provider();
                    let vkey = reqwest::Client::new()
                        .get(format!("{}/v1/ledger/key", url.trim_end_matches('/')))
                        .bearer_auth(token)
                        .send()
                        .await?
                        .error_for_status()?
                        .text()
                        .await?;
                    eprintln!(
                        "warning: trusting the key the server sent ({}); pass --key to pin it",
                        vkey.trim()
                    );
                    vkey
                }
            };
            verify_remote(
                url,
                token,
                &NoteVerifier::from_vkey(&vkey)?,
                trusted.as_deref(),
            )
            .await
        }
        None => {
            let verifier = match &args.key {
                Some(k) => NoteVerifier::from_vkey(k)?,
                None => ledger_signer(config)?.verifier(),
            };
            let store = crate::store::Store::open_read_only(&config.database_url()).await?;
            let mut versions = crate::events::ControlVersions::default();
            let mut check = |_: u64, kind: &str, bytes: &[u8]| versions.check(kind, bytes);
            verify_store(&store, &verifier, trusted.as_deref(), Some(&mut check)).await
        }
    };
    match result {
        Ok(report) => {
            use base64::Engine;
            println!(
                "ok: {} entries, {} checkpoints, root {}",
                report.entries,
                report.checkpoints,
                base64::engine::general_purpose::STANDARD.encode(report.root)
            );
            if report.pending > 0 {
                println!(
                    "and {} entries sequenced after that tree, not yet integrated (their bytes \
                     match their leaf hashes)",
                    report.pending
                );
            }
            Ok(())
        }
        Err(e) => {
            let index = e
                .first_bad_index()
                .map(|i| format!(" (first bad index: {i})"))
                .unwrap_or_default();
            Err(anyhow::anyhow!("ledger verification FAILED: {e}{index}"))
        }
    }
}

/// The ledger's signer from the data dir's key file (never generated here).
pub(super) fn ledger_signer(config: &Config) -> anyhow::Result<crate::tlog::note::NoteSigner> {
    let path = config
        .ledger
        .signing_key_file
        .clone()
        .unwrap_or_else(|| config.keys_dir().join(crate::ledger::LEDGER_KEY_FILE));
    let (key, _) = crate::crypto::ed25519_key_file(&path, false)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(crate::tlog::note::NoteSigner::new(
        &config.ledger.origin,
        key,
    )?)
}
/// Writes to stdout; a reader that went away (`| head`) ends the output quietly.
pub(crate) fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
async fn policy_replay(
    config: &Config,
    version: Option<String>,
    policies: Option<PathBuf>,
    from: Option<String>,
    to: Option<String>,
) -> anyhow::Result<()> {
    let store = crate::store::Store::open_read_only(&config.database_url()).await?;
    let pack = match (version, policies) {
        (_, Some(dir)) => PolicyPack::load(&dir, &config.schema_file)?,
        (Some(id), None) => {
            let row = store.policy_version(&id).await?.ok_or_else(|| {
                anyhow::anyhow!(
                    "no policy version `{id}` in {}",
                    config.database_url().redacted()
                )
            })?;
            let files: Vec<(String, String)> = serde_json::from_str(&row.files)?;
            let schema = match store.policy_text(&row.digest).await? {
                Some(t) if !t.schema_text.is_empty() => t.schema_text,
                _ => std::fs::read_to_string(&config.schema_file)?,
            };
            PolicyPack::from_sources("schema", &schema, files)?
        }
        (None, None) => anyhow::bail!("name a version or --policies DIR"),
    };
    let whole = crate::compliance::pack::whole_history();
    let period = crate::compliance::Period::parse(
        from.as_deref().or(Some(&whole.from.to_string())),
        to.as_deref(),
        Duration::ZERO,
    )?;
    let report = crate::lifecycle::replay::replay(&store, &pack, &period).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
fn policy_test(paths: &[PathBuf], verbose: bool) -> anyhow::Result<()> {
    use crate::policy::testing::{collect, run_file};
    let files = collect(paths)?;
    if files.is_empty() {
        anyhow::bail!("no policy test files found in {paths:?}");
    }
    let (mut passed, mut failed, mut checks) = (0usize, 0usize, 0usize);
    for file in &files {
        match run_file(file) {
            Ok(report) if report.mismatches.is_empty() => {
                passed += 1;
                checks += report.checks;
                if verbose {
                    println!("ok   {} ({} checks)", file.display(), report.checks);
                }
            }
            Ok(report) => {
                failed += 1;
                checks += report.checks;
                println!("FAIL {}", file.display());
                for m in report.mismatches {
                    println!(
                        "     {}: {}: expected {}, got {}",
                        m.test, m.what, m.expected, m.got
                    );
                }
            }
            Err(e) => {
                failed += 1;
                println!("FAIL {e}");
            }
        }
    }
    println!(
        "policy tests: {passed} passed, {failed} failed ({checks} checks in {} files)",
        files.len()
    );
    if failed > 0 {
        anyhow::bail!("{failed} policy test file(s) failed");
    }
    Ok(())
}
