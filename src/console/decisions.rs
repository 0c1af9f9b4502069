//! The decisions pages: a filtered list, and one decision explained (what was asked, by whom for
//! whom, each deciding policy's text and what it says, the policy digest) with its ledger entry
//! and inclusion proof, which the page verifies in the person's own browser against the signed
//! checkpoint (`assets/verify.js`: WebCrypto SHA-256 and Ed25519).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::{Console, Person, blank_is_none, page_error, render, serialized, unavailable};
use crate::model::ReasonCode;
use crate::store::DecisionFilter;
use crate::timestamp::Timestamp;

/// Most decisions a list shows.
const LIST_LIMIT: u32 = 200;
/// Most decisions read to fill a list filtered by reason code: the code is inside each recorded
/// entry, not a column, so that filter reads pages of the others' matches until the list is full.
const SCAN_LIMIT: usize = 5_000;

const READERS: &[&str] = &["admin", "auditor", "compliance_officer", "reviewer"];

#[derive(Deserialize, Serialize, Default)]
pub(super) struct ListQuery {
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    tool: Option<String>,
    /// `allow` or `deny`.
    #[serde(default)]
    outcome: Option<String>,
    /// A reason code (`policy`, `kill_switch`, `approval_required`, ...).
    #[serde(default)]
    reason: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

#[derive(Serialize)]
struct Line {
    id: String,
    at: String,
    agent: String,
    on_behalf_of: Option<String>,
    tool: String,
    decision: &'static str,
    reasons: String,
}

pub(super) async fn list(
    State(console): State<Console>,
    axum::Extension(person): axum::Extension<Person>,
    Query(q): Query<ListQuery>,
) -> Response {
    if !person.has_any(READERS) {
        return page_error(
            StatusCode::FORBIDDEN,
            "Decisions are for admins, auditors, compliance officers and reviewers.",
        );
    }
    let time = |v: &Option<String>, field: &str| -> Result<Option<Timestamp>, String> {
        blank_is_none(v.clone())
            .map(|t| {
                t.parse()
                    .map_err(|e| format!("{field}: {e} (RFC 3339, e.g. 2026-11-30T12:00:00Z)"))
            })
            .transpose()
    };
    let filter = match (time(&q.from, "from"), time(&q.to, "to")) {
        (Ok(from), Ok(to)) => DecisionFilter {
            agent: blank_is_none(q.agent.clone()),
            tool: blank_is_none(q.tool.clone()),
            outcome: blank_is_none(q.outcome.clone()).filter(|o| o == "allow" || o == "deny"),
            from,
            to,
            before: None,
        },
        (Err(e), _) | (_, Err(e)) => {
            return page_error(StatusCode::BAD_REQUEST, &e);
        }
    };
    let reason = blank_is_none(q.reason.clone());
    let (lines, scanned) = match matching(&console, filter, reason.as_deref()).await {
        Ok(found) => found,
        Err(error) => return unavailable("decisions", error),
    };
    let registry = console.app.pipeline.registry();
    let agents: Vec<String> = registry.agents().iter().map(|a| a.id.to_string()).collect();
    let tools: Vec<String> = registry.tools().iter().map(|t| t.id.to_string()).collect();
    render(
        StatusCode::OK,
        "decisions.html",
        minijinja::context! {
            person => serialized(&person.session), csrf => &person.csrf,
            lines => serialized(&lines), query => serialized(&q), agents, tools,
            limit => LIST_LIMIT, reason, scanned,
            reasons => ReasonCode::ALL.map(ReasonCode::as_str),
        },
    )
}

/// The newest decisions that match `filter` and, when given, carry reason code `reason`: at most
/// [`LIST_LIMIT`], from at most [`SCAN_LIMIT`] read (how many were read, when that cut it short).
async fn matching(
    console: &Console,
    mut filter: DecisionFilter,
    reason: Option<&str>,
) -> Result<(Vec<Line>, Option<usize>), crate::store::StoreError> {
    let mut lines = Vec::new();
    let mut read = 0;
    loop {
        let rows = console
            .app
            .store
            .decisions_matching(&filter, LIST_LIMIT)
            .await?;
        let last_page = rows.len() < LIST_LIMIT as usize;
        read += rows.len();
        for row in &rows {
            let Ok(record) = crate::decision::record_of(row) else {
                continue;
            };
            let codes: Vec<&str> = record
                .decision
                .reasons
                .iter()
                .map(|r| r.code.as_str())
                .collect();
            if reason.is_some_and(|r| !codes.contains(&r)) {
                continue;
            }
            lines.push(Line {
                id: row.id.clone(),
                at: row.evaluated_at.to_string(),
                agent: row.agent_id.clone(),
                on_behalf_of: row.on_behalf_of.clone(),
                tool: row.resource_id.clone(),
                decision: record.decision.decision.as_str(),
                reasons: codes.join(", "),
            });
            if lines.len() == LIST_LIMIT as usize {
                return Ok((lines, None));
            }
        }
        if last_page {
            return Ok((lines, None));
        }
        if read >= SCAN_LIMIT {
            return Ok((lines, Some(read)));
        }
        filter.before = rows.last().map(|r| r.id.clone());
    }
}

pub(super) async fn one(
    State(console): State<Console>,
    axum::Extension(person): axum::Extension<Person>,
    Path(id): Path<String>,
) -> Response {
    if !person.has_any(READERS) {
        return page_error(
            StatusCode::FORBIDDEN,
            "Decisions are for admins, auditors, compliance officers and reviewers.",
        );
    }
    let Ok(id) = id.parse() else {
        return page_error(StatusCode::NOT_FOUND, "There is no such decision.");
    };
    let explained = crate::compliance::explanation::explain(
        &console.app.compliance_sources(),
        &console.app.outcomes,
        &console.app.contests,
        &id,
    )
    .await;
    match explained {
        Ok(Some(e)) => {
            let arguments = serde_json::to_string_pretty(&e.arguments).unwrap_or_default();
            render(
                StatusCode::OK,
                "decision.html",
                minijinja::context! {
                    person => serialized(&person.session), csrf => &person.csrf,
                    e => serialized(&e), arguments,
                },
            )
        }
        Ok(None) => page_error(StatusCode::NOT_FOUND, "There is no such decision."),
        Err(error) => unavailable("decision", error),
    }
}
