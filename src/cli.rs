//! The `reins` command: `serve`, `token mint`, `policy check`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Overrides};
use crate::identity::{DevIssuer, MintRequest};
use crate::ids::{AgentId, UserId};
use crate::policy::PolicyPack;

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
    /// Policy packs.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub local: LocalArgs,
}

/// Flags of every subcommand that reads local state.
#[derive(Debug, Args, Clone, Default)]
pub struct LocalArgs {
    /// Data folder: database and keys [default: ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
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

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Parse and validate the policy pack against the schema; print each problem as file:line:col.
    Check(LocalArgs),
}

impl LocalArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            data_dir: self.data_dir.clone(),
            policy_dir: self.policy_dir.clone(),
            schema_file: self.schema_file.clone(),
            ..Overrides::default()
        }
    }
}

/// Runs a parsed command line. Errors are for the user to read.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config_file = cli.config.as_deref();
    match cli.command {
        Command::Serve(args) => {
            let overrides = Overrides {
                listen: args.listen,
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
    Ok(())
}
