//! `reins mcp`'s configuration file: where Reins is, the MCP servers behind the gateway, and what
//! the gateway does with each method. Read once at start; every mistake is an error naming the
//! key, before any server is started.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// Default deadline for one answer from Reins: past it the call is refused (`-32603`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// The methods forwarded without a decision unless the file says otherwise. `initialize`, `ping`
/// and notifications are the gateway's own and always answered; `tools/call` is always decided.
pub const FORWARDED_BY_DEFAULT: &[&str] = &[
    "tools/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "prompts/list",
    "prompts/get",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The Reins server [default: `REINS_URL`, else http://127.0.0.1:8080].
    #[serde(default)]
    pub reins_url: Option<String>,
    /// How long to wait for Reins on one call.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Hold a call that needs an approval this long, polling it; on a grant, ask again with the
    /// approval and forward only if that fresh decision allows.
    #[serde(default, with = "humantime_serde")]
    pub wait_for_approval: Option<Duration>,
    /// Where a person approves: `{id}` is replaced by the approval id [default: the approval's
    /// API endpoint on `reins_url`].
    #[serde(default)]
    pub approval_url: Option<String>,
    /// `native` asks `POST /v1/decisions` with the agent's token; `authzen` asks
    /// `/access/v1/evaluation` as a PEP with the binding's mapping.
    #[serde(default)]
    pub mode: Mode,
    /// A token with role `pep` (or `REINS_PEP_TOKEN`): needed by `mode = "authzen"` and
    /// `filter_tools`.
    #[serde(default)]
    pub pep_token: Option<String>,
    /// Show in `tools/list` only the tools the agent may call at all (advisory: the arguments
    /// are not known at list time, and a tool that needs an approval is hidden).
    #[serde(default)]
    pub filter_tools: bool,
    /// Per method: `forward` (without a decision) or `deny`.
    #[serde(default)]
    pub methods: BTreeMap<String, MethodRule>,
    pub servers: Vec<ServerConfig>,
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Native,
    Authzen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MethodRule {
    Forward,
    Deny,
}

/// One MCP server behind the gateway: a stdio child or a Streamable HTTP endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Tool ids are `<name>.<tool>`.
    pub name: String,
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub url: Option<String>,
}

/// Where a server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream<'a> {
    Child {
        command: &'a str,
        args: &'a [String],
        env: &'a BTreeMap<String, String>,
    },
    Http {
        url: &'a str,
    },
}

impl ServerConfig {
    /// Where the server is, or what is wrong with its entry.
    pub fn upstream(&self) -> Result<Upstream<'_>, String> {
        let name = &self.name;
        match (&self.command, &self.url) {
            (Some(_), Some(_)) => Err(format!(
                "server `{name}`: give `command` or `url`, not both"
            )),
            (None, None) => Err(format!("server `{name}`: give `command` (stdio) or `url`")),
            (Some(command), None) => Ok(Upstream::Child {
                command,
                args: &self.args,
                env: &self.env,
            }),
            (None, Some(_)) if !self.args.is_empty() || !self.env.is_empty() => Err(format!(
                "server `{name}`: `args` and `env` are for a `command`"
            )),
            (None, Some(url)) => Ok(Upstream::Http { url }),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl GatewayConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let config: Self = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: shown.clone(),
            source,
        })?;
        config.check().map_err(|message| ConfigError::Invalid {
            path: shown,
            message,
        })?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if self.servers.is_empty() {
            return Err("no [[servers]]: the gateway needs at least one MCP server".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for server in &self.servers {
            let name = &server.name;
            let valid = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid {
                return Err(format!(
                    "server name `{name}`: use letters, digits, `-` and `_` (tool ids are \
                     `<name>.<tool>`)"
                ));
            }
            if !names.insert(name) {
                return Err(format!("server name `{name}` is used twice"));
            }
            server.upstream()?;
        }
        for (method, rule) in &self.methods {
            if method == "tools/call" {
                return Err("methods: `tools/call` is always decided by Reins".into());
            }
            if *rule == MethodRule::Forward && !FORWARDED_BY_DEFAULT.contains(&method.as_str()) {
                return Err(format!(
                    "methods: the gateway cannot forward `{method}` (it forwards {})",
                    FORWARDED_BY_DEFAULT.join(", ")
                ));
            }
        }
        if self.timeout.is_zero() {
            return Err("timeout: must be more than 0".into());
        }
        Ok(())
    }

    /// Whether `method` goes to the servers without a decision.
    pub fn forwards(&self, method: &str) -> bool {
        match self.methods.get(method) {
            Some(rule) => *rule == MethodRule::Forward,
            None => FORWARDED_BY_DEFAULT.contains(&method),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<GatewayConfig, String> {
        let config: GatewayConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.check().map(|()| config)
    }

    #[test]
    fn the_issue_example_parses_and_mistakes_are_named() {
        let config = parse(
            r#"
            reins_url = "http://127.0.0.1:8080"
            [[servers]]
            name = "files"
            command = "python3"
            args = ["server.py"]
            [[servers]]
            name = "crm"
            url = "http://127.0.0.1:9000/mcp"
            "#,
        )
        .unwrap();
        assert_eq!(config.timeout, DEFAULT_TIMEOUT);
        assert_eq!(
            config.servers[1].upstream(),
            Ok(Upstream::Http {
                url: "http://127.0.0.1:9000/mcp"
            })
        );
        assert!(config.forwards("tools/list") && !config.forwards("completion/complete"));

        let two = "[[servers]]\nname = \"a\"\ncommand = \"x\"\nurl = \"http://h\"";
        assert!(parse(two).unwrap_err().contains("not both"));
        let dotted = "[[servers]]\nname = \"a.b\"\ncommand = \"x\"";
        assert!(parse(dotted).unwrap_err().contains("`a.b`"));
        let call = "methods = { \"tools/call\" = \"forward\" }\n[[servers]]\nname = \"a\"\ncommand = \"x\"";
        assert!(parse(call).unwrap_err().contains("always decided"));
        let odd = "methods = { \"completion/complete\" = \"forward\" }\n[[servers]]\nname = \"a\"\ncommand = \"x\"";
        assert!(parse(odd).unwrap_err().contains("cannot forward"));
        let deny =
            "methods = { \"prompts/get\" = \"deny\" }\n[[servers]]\nname = \"a\"\ncommand = \"x\"";
        assert!(!parse(deny).unwrap().forwards("prompts/get"));
        assert!(parse("[[servers]]\nname = \"a\"\ncomand = \"x\"").is_err());
    }
}
