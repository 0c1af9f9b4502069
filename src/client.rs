//! An HTTP client of a Reins server, for the enforcement points that run beside an agent instead
//! of inside the server: the hook command and the MCP gateway. It speaks the public API only
//! (decisions, AuthZEN evaluation, approvals, `whoami`) and turns every failure into a
//! [`ClientError`]; what a failure means (always a deny) is the caller's to say.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::approvals::Approval;
use crate::decision::IdempotencyKey;
use crate::ids::ApprovalId;
use crate::model::{Decision, DecisionRequest, Reason};

/// Why no answer came back.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("Reins at {base} did not answer: {source}")]
    Unreachable {
        base: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Reins refused the request ({status}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("Reins answered {status} unreadably: {source}")]
    Unreadable {
        status: u16,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot build an HTTP client: {0}")]
    Setup(#[source] reqwest::Error),
}

impl ClientError {
    /// A bad or expired token (401): the caller's fault, not Reins's.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, ClientError::Refused { status: 401, .. })
    }
}

/// Who a token is, as the server's verifier sees it (`GET /v1/whoami`).
#[derive(Debug, Clone, Deserialize)]
pub struct Whoami {
    pub agent: String,
    #[serde(default)]
    pub on_behalf_of: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// W3C trace context to pass on (`traceparent`, and `tracestate` when there is one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceContext {
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

/// What goes with one call besides its body.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallOptions<'a> {
    pub idempotency_key: Option<&'a IdempotencyKey>,
    pub trace: Option<&'a TraceContext>,
}

/// A Reins server at `base`, every call bounded by the client's timeout.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str, timeout: Duration) -> Result<Self, ClientError> {
        crate::crypto::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(ClientError::Setup)?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// The server's base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `POST /v1/decisions`: a recorded decision for the token's agent.
    pub async fn decide(
        &self,
        token: &str,
        request: &DecisionRequest,
        options: CallOptions<'_>,
    ) -> Result<Decision, ClientError> {
        let call = self.http.post(self.url("/v1/decisions")).json(request);
        self.send(with_options(call, options).bearer_auth(token))
            .await
    }

    /// `POST /access/v1/evaluation`: an AuthZEN evaluation, answered as the spec has it
    /// (`decision` and the `context` Reins adds).
    pub async fn evaluate(
        &self,
        token: &str,
        request: &Value,
        options: CallOptions<'_>,
    ) -> Result<Value, ClientError> {
        let call = self
            .http
            .post(self.url("/access/v1/evaluation"))
            .json(request);
        self.send(with_options(call, options).bearer_auth(token))
            .await
    }

    /// `POST /access/v1/search/resource`, every page: the ids of the resources of `kind` the
    /// subject may take `action` on (Reins evaluates without recording). Needs a `pep` token.
    pub async fn search_resources(
        &self,
        pep_token: Option<&str>,
        subject: &Value,
        action: &str,
        kind: &str,
    ) -> Result<Vec<String>, ClientError> {
        let mut ids = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = serde_json::json!({
                "subject": subject,
                "action": {"name": action},
                "resource": {"type": kind},
                "page": {"token": page_token, "limit": 1000},
            });
            let mut call = self
                .http
                .post(self.url("/access/v1/search/resource"))
                .json(&request);
            if let Some(token) = pep_token {
                call = call.bearer_auth(token);
            }
            let page: Value = self.send(call).await?;
            ids.extend(
                page["results"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r["id"].as_str().map(str::to_owned)),
            );
            match page["page"]["next_token"].as_str() {
                Some(next) if !next.is_empty() => page_token = next.to_owned(),
                _ => return Ok(ids),
            }
        }
    }

    /// `GET /v1/approvals/{id}`: an approval the token's agent asked for.
    pub async fn approval(&self, token: &str, id: &ApprovalId) -> Result<Approval, ClientError> {
        let call = self.http.get(self.url(&format!("/v1/approvals/{id}")));
        self.send(call.bearer_auth(token)).await
    }

    /// `POST /v1/decisions/{id}/outcome`: what came of an allowed call.
    pub async fn report_outcome(
        &self,
        token: &str,
        decision_id: &str,
        report: &Value,
    ) -> Result<Value, ClientError> {
        let call = self
            .http
            .post(self.url(&format!("/v1/decisions/{decision_id}/outcome")))
            .json(report);
        self.send(call.bearer_auth(token)).await
    }

    /// `GET /v1/whoami`: the token checked by the server's verifier.
    pub async fn whoami(&self, token: &str) -> Result<Whoami, ClientError> {
        let call = self.http.get(self.url("/v1/whoami"));
        self.send(call.bearer_auth(token)).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        call: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let response = call
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                base: self.base.clone(),
                source,
            })?;
        let status = response.status().as_u16();
        if !response.status().is_success() {
            // Reins's errors are `{"error": {"code", "message"}}`; AuthZEN's 400s are plain text.
            let text = response.text().await.unwrap_or_default();
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let field = |name: &str| body["error"][name].as_str().map(str::to_owned);
            return Err(ClientError::Refused {
                status,
                code: field("code").unwrap_or_default(),
                message: field("message").unwrap_or(text),
            });
        }
        response
            .json()
            .await
            .map_err(|source| ClientError::Unreadable { status, source })
    }
}

fn with_options(
    mut call: reqwest::RequestBuilder,
    options: CallOptions<'_>,
) -> reqwest::RequestBuilder {
    if let Some(key) = options.idempotency_key {
        call = call.header("Idempotency-Key", key.as_str());
    }
    if let Some(trace) = options.trace {
        if let Some(parent) = &trace.traceparent {
            call = call.header("traceparent", parent);
        }
        if let Some(state) = &trace.tracestate {
            call = call.header("tracestate", state);
        }
    }
    call
}

/// The reasons of an answer as one line for a person: `policy \`declared-tools\`; kill_switch:
/// ...`.
pub fn describe(reasons: &[Reason]) -> String {
    let text: Vec<String> = reasons
        .iter()
        .map(|reason| {
            let code = reason.code.as_str();
            match (&reason.policy_id, &reason.message) {
                (Some(policy), _) => format!("{code} `{policy}`"),
                (None, Some(message)) => format!("{code}: {message}"),
                (None, None) => code.to_owned(),
            }
        })
        .collect();
    text.join("; ")
}
