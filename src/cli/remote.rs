//! Commands for the people who run a fleet, against a running server over its API: the kill
//! switch (operators), approvals (approvers) and the registry's agents (admins, auditors). Each
//! prints the server's JSON answer and exits non-zero with its error message on a refusal.

use std::io::IsTerminal;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::write_stdout;
use crate::ids::{AgentId, ToolId};

/// Where the server is and whose token to use.
#[derive(Debug, Args)]
pub struct Server {
    /// The server.
    #[arg(
        long,
        env = "REINS_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// Bearer token with the role the command needs.
    #[arg(long, env = "REINS_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    #[command(flatten)]
    pub server: Server,
    #[command(subcommand)]
    pub command: KillCommand,
}

#[derive(Debug, Subcommand)]
pub enum KillCommand {
    /// Stop every decision in the scope (no scope flags: stop everything, after confirmation).
    Engage {
        #[arg(long)]
        agent: Option<AgentId>,
        #[arg(long)]
        tool: Option<ToolId>,
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        reason: String,
        /// Record it as a drill (it stops traffic all the same).
        #[arg(long)]
        drill: bool,
        /// Engage for an agent, tool or action the server does not know (yet).
        #[arg(long)]
        force: bool,
        /// Confirm a global engagement without being asked (needed when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
    },
    /// Release an engaged switch, by its id or an unambiguous prefix of it.
    Release {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Engaged switches, and the released ones.
    Status,
}

#[derive(Debug, Args)]
pub struct ApprovalsArgs {
    #[command(flatten)]
    pub server: Server,
    #[command(subcommand)]
    pub command: ApprovalsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Approvals, newest first (default: the pending ones).
    List {
        /// `pending`, `granted`, `denied`, `expired`, `used`, `cancelled`.
        #[arg(long, default_value = "pending")]
        status: String,
    },
    /// One approval: who asks, for whom, which tool, the request it is bound to.
    Show { id: String },
    /// Grant an approval.
    Grant {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Deny an approval.
    Deny {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct AgentsArgs {
    #[command(flatten)]
    pub server: Server,
    #[command(subcommand)]
    pub command: AgentsCommand,
}

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// Every registered agent.
    List,
    /// One agent's record.
    Show { id: AgentId },
}

/// An authenticated client of one server.
struct Remote {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Remote {
    fn new(server: Server, role: &str) -> anyhow::Result<Self> {
        crate::crypto::install_crypto_provider();
        let token = server.token.ok_or_else(|| {
            anyhow::anyhow!("set REINS_TOKEN (or --token) to a token with role {role}")
        })?;
        Ok(Self {
            base: server.url.trim_end_matches('/').to_owned(),
            token,
            client: reqwest::Client::new(),
        })
    }

    /// Sends a request; the answer's JSON, or the server's error message.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.base))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            anyhow::bail!(
                "{status}: {}",
                body["error"]["message"]
                    .as_str()
                    .unwrap_or("request failed")
            );
        }
        Ok(body)
    }
}

fn print(value: &Value) -> anyhow::Result<()> {
    write_stdout(&(serde_json::to_string_pretty(value)? + "\n"))
}

pub async fn kill(args: KillArgs) -> anyhow::Result<()> {
    let remote = Remote::new(args.server, "operator")?;
    match args.command {
        KillCommand::Engage {
            agent,
            tool,
            action,
            reason,
            drill,
            force,
            yes,
        } => {
            if agent.is_none() && tool.is_none() && action.is_none() && !yes {
                confirm_global()?;
            }
            let body = json!({
                "scope": {"agent": agent, "tool": tool, "action": action},
                "reason": reason, "drill": drill, "force": force,
            });
            print(
                &remote
                    .call(reqwest::Method::POST, "/v1/killswitch", Some(body))
                    .await?,
            )
        }
        KillCommand::Release { id, reason } => {
            let id = resolve_switch(&remote, &id).await?;
            let answer = remote
                .call(
                    reqwest::Method::DELETE,
                    &format!("/v1/killswitch/{id}"),
                    Some(json!({ "reason": reason })),
                )
                .await?;
            print(&answer)
        }
        KillCommand::Status => {
            let list = remote
                .call(reqwest::Method::GET, "/v1/killswitch", None)
                .await?;
            // The API's history holds every switch; the engaged ones are listed once, above.
            let released: Vec<&Value> = list["history"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| s["state"] != "engaged")
                .collect();
            print(&json!({ "engaged": list["engaged"], "released": released }))
        }
    }
}

/// A global switch stops every agent: asked for by typing, or `--yes` where nobody can type.
fn confirm_global() -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        anyhow::bail!(
            "no --agent, --tool or --action: this engages a GLOBAL kill switch that stops every \
             agent; add --yes to confirm"
        );
    }
    eprint!(
        "This engages a GLOBAL kill switch: every decision for every agent is denied until it \
         is released.\nType `global` to confirm: "
    );
    let mut answer = String::new();
    stdin.read_line(&mut answer)?;
    if answer.trim() != "global" {
        anyhow::bail!("not confirmed; nothing was engaged");
    }
    Ok(())
}

/// The engaged switch whose id is `prefix` or starts with it; refused when none or several do.
async fn resolve_switch(remote: &Remote, prefix: &str) -> anyhow::Result<String> {
    if prefix.parse::<crate::ids::SwitchId>().is_ok() {
        return Ok(prefix.to_owned());
    }
    if prefix.len() < 4 {
        anyhow::bail!("`{prefix}`: give at least 4 characters of the switch's id");
    }
    let list = remote
        .call(reqwest::Method::GET, "/v1/killswitch", None)
        .await?;
    let matching: Vec<&str> = list["engaged"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["id"].as_str())
        .filter(|id| id.starts_with(prefix))
        .collect();
    match matching.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => anyhow::bail!("no engaged kill switch's id starts with `{prefix}`"),
        many => anyhow::bail!(
            "`{prefix}` is ambiguous: engaged switches {}",
            many.join(", ")
        ),
    }
}

pub async fn approvals(args: ApprovalsArgs) -> anyhow::Result<()> {
    let remote = Remote::new(args.server, "approver")?;
    let answer = match args.command {
        ApprovalsCommand::List { status } => {
            remote
                .call(
                    reqwest::Method::GET,
                    &format!("/v1/approvals?status={status}"),
                    None,
                )
                .await?
        }
        ApprovalsCommand::Show { id } => {
            remote
                .call(reqwest::Method::GET, &format!("/v1/approvals/{id}"), None)
                .await?
        }
        ApprovalsCommand::Grant { id, comment } => {
            remote
                .call(
                    reqwest::Method::POST,
                    &format!("/v1/approvals/{id}/grant"),
                    Some(json!({ "comment": comment })),
                )
                .await?
        }
        ApprovalsCommand::Deny { id, comment } => {
            remote
                .call(
                    reqwest::Method::POST,
                    &format!("/v1/approvals/{id}/deny"),
                    Some(json!({ "comment": comment })),
                )
                .await?
        }
    };
    print(&answer)
}

pub async fn agents(args: AgentsArgs) -> anyhow::Result<()> {
    let remote = Remote::new(args.server, "admin or auditor")?;
    let path = match &args.command {
        AgentsCommand::List => "/v1/agents".to_owned(),
        AgentsCommand::Show { id } => format!("/v1/agents/{id}"),
    };
    print(&remote.call(reqwest::Method::GET, &path, None).await?)
}
