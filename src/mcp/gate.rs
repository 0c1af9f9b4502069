//! The gateway's enforcement point: one `tools/call` in, a Reins decision out, as what the MCP
//! client is answered. Allowed is the only way to the upstream server; every other outcome is a
//! JSON-RPC error sent in-band, with the codes the AuthZEN MCP binding (COAZ) names:
//! `-32001` denied, `-32602` the call cannot be mapped to a request, `-32603` no answer from Reins
//! (fail closed), and `-32042` (MCP URL elicitation) for an approval a person gives at a URL.
//!
//! An approval is never itself a permit (the AuthZEN access-request profile): after a grant the
//! call is decided again with the `approval_id`, and that fresh, recorded decision is what counts.

use std::time::{Duration, Instant};

use rmcp::ErrorData;
use rmcp::model::{ErrorCode, JsonObject};
use serde_json::{Map, Value, json};

use super::config::Mode;
use crate::approvals::Status;
use crate::client::{CallOptions, Client, ClientError, TraceContext, Whoami, describe};
use crate::ids::ApprovalId;
use crate::model::{AccessRequest, Decision, DecisionRequest, Outcome, Reason, ResourceRef};

/// The binding's code for a denied call.
pub const DENIED: ErrorCode = ErrorCode(-32001);
/// MCP's `URLElicitationRequiredError`.
pub const URL_ELICITATION_REQUIRED: ErrorCode = ErrorCode(-32042);

/// How often a held call asks whether its approval was decided.
const APPROVAL_POLL: Duration = Duration::from_millis(250);

/// Who asks, and for what.
pub struct Ask<'a> {
    /// The agent's token.
    pub token: &'a str,
    pub session: Option<&'a str>,
    pub trace: &'a TraceContext,
    /// The gateway's tool id, `<server>.<tool>`.
    pub tool: &'a str,
    pub server: &'a str,
    pub args: Option<&'a JsonObject>,
    /// The client declared `elicitation.url`.
    pub elicitation_url: bool,
}

/// An allowed call: what the span and the logs name.
#[derive(Debug, Clone)]
pub struct Allowed {
    pub decision_id: String,
    pub ledger_index: Option<u64>,
}

/// A decision as either API answers it, in one shape.
struct Answer {
    allowed: bool,
    decision_id: String,
    reasons: Vec<Reason>,
    ledger: Value,
    access_request: Option<AccessRequest>,
}

impl Answer {
    fn native(decision: Decision) -> Self {
        Self {
            allowed: decision.decision == Outcome::Allow,
            decision_id: decision.decision_id.to_string(),
            reasons: decision.reasons,
            ledger: decision.ledger.map_or(Value::Null, |l| json!(l)),
            access_request: decision.access_request,
        }
    }

    /// An AuthZEN answer; `Err` is the evaluation's `context.error` (a request Reins cannot map).
    fn authzen(response: Value) -> Result<Self, ErrorData> {
        let context = &response["context"];
        if let Some(error) = context.get("error") {
            return Err(ErrorData::invalid_params(
                format!(
                    "Reins cannot evaluate the call: {}",
                    error["message"].as_str().unwrap_or("no message")
                ),
                Some(error.clone()),
            ));
        }
        fn parse<T: serde::de::DeserializeOwned>(context: &Value, field: &str) -> Option<T> {
            serde_json::from_value(context[field].clone()).ok()
        }
        Ok(Self {
            allowed: response["decision"] == true,
            decision_id: context["decision_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            reasons: parse(context, "reasons").unwrap_or_default(),
            ledger: context
                .get("ledger_index")
                .map_or(Value::Null, |i| json!({ "index": i })),
            access_request: parse(context, "access_request"),
        })
    }

    /// An approval still waiting, as the answer to a call that asked for it before.
    fn pending(approval: &crate::approvals::Approval) -> Self {
        Self {
            allowed: false,
            decision_id: approval.evaluation_id.clone(),
            reasons: vec![Reason::code(
                crate::model::ReasonCode::ApprovalRequired,
                format!("approval {} is still pending", approval.id),
            )],
            ledger: Value::Null,
            access_request: None,
        }
    }

    fn verdict(self, tool: &str) -> Result<Allowed, ErrorData> {
        if self.allowed {
            Ok(self.allowed())
        } else {
            Err(self.denied(tool))
        }
    }

    fn allowed(&self) -> Allowed {
        Allowed {
            decision_id: self.decision_id.clone(),
            ledger_index: self.ledger["index"].as_u64(),
        }
    }

    fn data(&self) -> Map<String, Value> {
        let mut data = Map::new();
        data.insert("reasons".into(), json!(self.reasons));
        data.insert("decision_id".into(), json!(self.decision_id));
        data.insert("ledger".into(), self.ledger.clone());
        data
    }

    fn denied(&self, tool: &str) -> ErrorData {
        ErrorData::new(
            DENIED,
            format!("Reins denied `{tool}`: {}", describe(&self.reasons)),
            Some(Value::Object(self.data())),
        )
    }
}

/// The gateway's way to Reins.
pub struct Gate {
    pub reins: Client,
    pub mode: Mode,
    /// A `pep` token, for AuthZEN mode.
    pub pep_token: Option<String>,
    pub wait_for_approval: Option<Duration>,
    /// With `{id}`; `None`: the approval's API endpoint on Reins.
    pub approval_url: Option<String>,
    whoami: quick_cache::sync::Cache<String, (Whoami, Instant)>,
    /// The approval each call that needed one opened, as Reins answered it, by [`call_key`].
    opened: quick_cache::sync::Cache<String, AccessRequest>,
}

/// One call, as the approval Reins opened for it is bound: the agent (by its token), the tool and
/// the arguments (serde_json's maps are sorted, so equal arguments print equally).
fn call_key(ask: &Ask<'_>) -> String {
    let args = ask
        .args
        .map(|a| Value::Object(a.clone()))
        .unwrap_or_default();
    format!(
        "{}\n{}\n{}\n{args}",
        ask.token,
        ask.session.unwrap_or(""),
        ask.tool
    )
}

/// The outcome report of a forwarded call's result.
fn outcome_of(result: Result<&rmcp::model::CallToolResult, &ErrorData>) -> Value {
    use sha2::Digest;
    match result {
        Ok(answer) => {
            let bytes = serde_json::to_vec(answer).unwrap_or_default();
            let hash = hex::encode(sha2::Sha256::digest(&bytes));
            let failed = answer.is_error == Some(true);
            json!({
                "status": if failed { "failed" } else { "succeeded" },
                "summary": if failed { "the MCP server answered the call with an error result" }
                           else { "the MCP server answered the call" },
                "result_sha256": hash,
            })
        }
        Err(error) => {
            let mut summary = format!(
                "the MCP server answered JSON-RPC error {}: {}",
                error.code.0, error.message
            );
            summary.truncate(crate::outcomes::MAX_SUMMARY_BYTES);
            json!({"status": "failed", "summary": summary})
        }
    }
}

/// How long a token checked with `whoami` is taken as good without asking again.
const WHOAMI_TTL: Duration = Duration::from_secs(30);

impl Gate {
    pub fn new(
        reins: Client,
        mode: Mode,
        pep_token: Option<String>,
        wait_for_approval: Option<Duration>,
        approval_url: Option<String>,
    ) -> Self {
        Self {
            reins,
            mode,
            pep_token,
            wait_for_approval,
            approval_url,
            whoami: quick_cache::sync::Cache::new(1024),
            opened: quick_cache::sync::Cache::new(10_000),
        }
    }

    /// Reports what came of a forwarded call as its decision's outcome, in the background (the
    /// agent's answer does not wait for it; a failure is logged): `succeeded`, or `failed` when
    /// the server answered an error, with the SHA-256 of the result it answered. A call the
    /// server has not finished (it asks the client for input, or made it a task) has no outcome
    /// yet, and none is reported.
    pub fn report_outcome(
        &self,
        token: &str,
        decision_id: &str,
        result: &Result<rmcp::model::CallToolResponse, ErrorData>,
    ) {
        let report = match result {
            Ok(rmcp::model::CallToolResponse::Complete(answer)) => outcome_of(Ok(answer)),
            Err(error) => outcome_of(Err(error)),
            Ok(_) => return,
        };
        if decision_id.is_empty() {
            return;
        }
        let (reins, decision_id) = (self.reins.clone(), decision_id.to_owned());
        let token = self.pep_token.clone().unwrap_or_else(|| token.to_owned());
        tokio::spawn(async move {
            if let Err(error) = reins.report_outcome(&token, &decision_id, &report).await {
                tracing::warn!(%error, decision_id, "cannot report the call's outcome to Reins");
            }
        });
    }

    /// The token checked by Reins's verifier, remembered for a short while so that a session's
    /// requests do not each cost a round trip.
    pub async fn whoami(&self, token: &str) -> Result<Whoami, ClientError> {
        if let Some((who, at)) = self.whoami.get(token)
            && at.elapsed() < WHOAMI_TTL
        {
            return Ok(who);
        }
        let who = self.reins.whoami(token).await?;
        self.whoami
            .insert(token.to_owned(), (who.clone(), Instant::now()));
        Ok(who)
    }

    /// The tool ids the token's agent may call with no arguments, for `filter_tools`.
    pub async fn searchable_tools(
        &self,
        token: &str,
    ) -> Result<std::collections::HashSet<String>, ErrorData> {
        let who = self.whoami(token).await.map_err(refused)?;
        let subject = json!({"type": "Agent", "id": who.agent});
        let ids = self
            .reins
            .search_resources(self.pep_token.as_deref(), &subject, "invoke", "Tool")
            .await
            .map_err(refused)?;
        Ok(ids.into_iter().collect())
    }

    /// Decides a call: `Ok` only when the answer that counts is an allow.
    ///
    /// An MCP client cannot name an approval when it retries a call, so the gateway remembers the
    /// approval each call opened: the same call again (same agent token, tool and arguments) while
    /// it is pending is answered with it again, and once it is granted the call is decided afresh
    /// with its `approval_id`.
    pub async fn decide(&self, ask: &Ask<'_>) -> Result<Allowed, ErrorData> {
        let key = call_key(ask);
        if let Some(access) = self.opened.get(&key) {
            let approval = self
                .reins
                .approval(ask.token, &access.approval_id)
                .await
                .map_err(unreachable)?;
            match approval.status {
                Status::Pending => {
                    let answer = Answer::pending(&approval);
                    return Err(self.approval_required(ask, &answer, &access));
                }
                Status::Granted => {
                    self.opened.remove(&key);
                    return self
                        .ask(ask, Some(&access.approval_id))
                        .await?
                        .verdict(ask.tool);
                }
                // Decided against, expired or used: this call starts over.
                _ => {
                    self.opened.remove(&key);
                }
            }
        }
        let answer = self.ask(ask, None).await?;
        if answer.allowed {
            return Ok(answer.allowed());
        }
        let Some(access) = &answer.access_request else {
            return Err(answer.denied(ask.tool));
        };
        if let Some(wait) = self.wait_for_approval {
            match self
                .await_approval(ask.token, &access.approval_id, wait)
                .await?
            {
                Some(Status::Granted) => {
                    return self
                        .ask(ask, Some(&access.approval_id))
                        .await?
                        .verdict(ask.tool);
                }
                Some(status) => {
                    let mut error = answer.denied(ask.tool);
                    error.message = format!(
                        "{}; approval {} is {}",
                        error.message,
                        access.approval_id,
                        status.as_str()
                    )
                    .into();
                    return Err(error);
                }
                // Still pending after the wait: answered as without one.
                None => {}
            }
        }
        self.opened.insert(key, access.clone());
        Err(self.approval_required(ask, &answer, access))
    }

    fn approval_url(&self, access: &AccessRequest) -> String {
        match &self.approval_url {
            Some(template) => template.replace("{id}", &access.approval_id.to_string()),
            None => format!("{}{}", self.reins.base(), access.endpoint),
        }
    }

    fn approval_required(
        &self,
        ask: &Ask<'_>,
        answer: &Answer,
        access: &AccessRequest,
    ) -> ErrorData {
        let url = self.approval_url(access);
        let message = format!(
            "Reins requires a human approval for `{}`: {}. Approve at {url}, then call again",
            ask.tool,
            describe(&answer.reasons)
        );
        let mut data = answer.data();
        data.insert("access_request".into(), json!(access));
        if ask.elicitation_url {
            data.insert(
                "elicitations".into(),
                json!([{
                    "mode": "url",
                    "elicitationId": access.approval_id.to_string(),
                    "url": url,
                    "message": message,
                }]),
            );
            return ErrorData::new(URL_ELICITATION_REQUIRED, message, Some(Value::Object(data)));
        }
        ErrorData::new(DENIED, message, Some(Value::Object(data)))
    }

    /// Polls the approval until it is decided (`Some(status)`) or `wait` has passed (`None`).
    async fn await_approval(
        &self,
        token: &str,
        id: &ApprovalId,
        wait: Duration,
    ) -> Result<Option<Status>, ErrorData> {
        let until = Instant::now() + wait;
        loop {
            let approval = self.reins.approval(token, id).await.map_err(unreachable)?;
            if approval.status != Status::Pending {
                return Ok(Some(approval.status));
            }
            if Instant::now() + APPROVAL_POLL > until {
                return Ok(None);
            }
            tokio::time::sleep(APPROVAL_POLL).await;
        }
    }

    async fn ask(&self, ask: &Ask<'_>, approval: Option<&ApprovalId>) -> Result<Answer, ErrorData> {
        let args = ask.args.cloned().unwrap_or_default();
        let mcp = json!({"server": ask.server, "method": "tools/call"});
        let options = CallOptions {
            idempotency_key: None,
            trace: Some(ask.trace),
        };
        match self.mode {
            Mode::Native => {
                let mut context = Map::new();
                context.insert("args".into(), Value::Object(args));
                context.insert("mcp".into(), mcp);
                let request = DecisionRequest {
                    action: "invoke".into(),
                    resource: ResourceRef {
                        kind: "Tool".into(),
                        id: ask.tool.to_owned(),
                        attributes: None,
                    },
                    context: Some(context),
                    session_id: ask.session.map(str::to_owned),
                    approval_id: approval.copied(),
                    intent: None,
                    trace: None,
                    compensates: None,
                };
                self.reins
                    .decide(ask.token, &request, options)
                    .await
                    .map(Answer::native)
                    .map_err(refused)
            }
            Mode::Authzen => {
                let who = self.whoami(ask.token).await.map_err(refused)?;
                let mut context = json!({"args": args, "mcp": mcp});
                if let Some(session) = ask.session {
                    context["session_id"] = json!(session);
                }
                if let Some(id) = approval {
                    context["approval_id"] = json!(id);
                }
                let request = json!({
                    "subject": {"type": "Agent", "id": who.agent},
                    "action": {"name": "tools/call"},
                    "resource": {"type": "tool", "id": ask.tool},
                    "context": context,
                });
                let token = self.pep_token.as_deref().unwrap_or(ask.token);
                let response = self
                    .reins
                    .evaluate(token, &request, options)
                    .await
                    .map_err(refused)?;
                Answer::authzen(response)
            }
        }
    }
}

/// No answer from Reins: fail closed, and say so.
fn unreachable(error: ClientError) -> ErrorData {
    ErrorData::internal_error(
        format!("no decision, so the call is refused: {error}"),
        None,
    )
}

/// A Reins error as the client's error: Reins refusing the request as malformed is a mapping
/// error, a token it does not accept a deny, anything else no answer at all.
fn refused(error: ClientError) -> ErrorData {
    match &error {
        ClientError::Refused {
            status: 400 | 413 | 415 | 422,
            message,
            ..
        } => ErrorData::invalid_params(format!("Reins cannot map the call: {message}"), None),
        ClientError::Refused {
            status: 401 | 403,
            message,
            code,
        } => ErrorData::new(
            DENIED,
            format!("Reins refused the agent's credentials: {message}"),
            Some(json!({"reasons": [{"code": code, "message": message}]})),
        ),
        _ => unreachable(error),
    }
}
