//! The console's pages for compliance officers and auditors: an agent (its model card's figures,
//! the EU AI Act checklist with evidence linked to the ledger entries it cites, an attestation
//! form, recent decisions, an audit pack for a period) and the ledger (its size, latest
//! checkpoint, key, and one entry with its inclusion proof verified in the browser).

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::actions::{Notice, acting, back, caller_of, fields, no_caller};
use super::{
    Console, Person, blank_is_none, day_start, page_error, render, serialized, unavailable,
};
use crate::compliance::{Period, card, checklist};
use crate::ids::AgentId;
use crate::policy::control::ControlAction;

const AGENT_READERS: &[&str] = &["admin", "auditor", "compliance_officer"];
const LEDGER_READERS: &[&str] = &["admin", "auditor", "compliance_officer", "reviewer"];

pub(super) async fn agent_page(
    State(console): State<Console>,
    axum::Extension(person): axum::Extension<Person>,
    Path(id): Path<String>,
    Query(q): Query<Notice>,
) -> Response {
    if !person.has_any(AGENT_READERS) {
        return page_error(
            StatusCode::FORBIDDEN,
            "Agent pages are for admins, auditors and compliance officers.",
        );
    }
    let Ok(agent) = id.parse::<AgentId>() else {
        return page_error(StatusCode::NOT_FOUND, "There is no such agent.");
    };
    let sources = console.app.compliance_sources();
    if sources.agent(&agent).is_err() {
        return page_error(StatusCode::NOT_FOUND, "There is no such agent.");
    }
    let period = match Period::parse(None, None, sources.config.card_period) {
        Ok(p) => p,
        Err(e) => return unavailable("card period", e),
    };
    let model_card = match card::model_card(&sources, &agent, &period).await {
        Ok(c) => c,
        Err(e) => return unavailable("model card", e),
    };
    let list = match checklist::checklist(&sources, &agent).await {
        Ok(l) => l,
        Err(e) => return unavailable("checklist", e),
    };
    let recent: Vec<(String, String, String, String)> =
        match console.app.store.decisions(Some(&agent), None, 20).await {
            Ok(rows) => rows
                .into_iter()
                .map(|r| (r.id, r.evaluated_at.to_string(), r.resource_id, r.decision))
                .collect(),
            Err(e) => return unavailable("decisions", e),
        };
    let officer = person
        .session
        .roles
        .iter()
        .any(|r| r == crate::identity::roles::COMPLIANCE_OFFICER);
    render(
        StatusCode::OK,
        "agent.html",
        minijinja::context! {
            person => serialized(&person.session), csrf => &person.csrf,
            card => serialized(&model_card), checklist => serialized(&list),
            recent, officer, done => q.done, error => q.error,
        },
    )
}

pub(super) async fn attest(
    State(console): State<Console>,
    axum::Extension(person): axum::Extension<Person>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let page = format!("/console/agents/{id}");
    let caller = match acting(
        &console,
        &person,
        &body,
        ControlAction::AttestationRecord,
        &page,
    ) {
        Ok(caller) => caller,
        Err(refused) => return *refused,
    };
    let Ok(agent) = id.parse::<AgentId>() else {
        return page_error(StatusCode::NOT_FOUND, "There is no such agent.");
    };
    let form = fields(&body);
    let request = checklist::AttestationRequest {
        item: form.get("item").cloned().unwrap_or_default(),
        statement: form.get("statement").cloned().unwrap_or_default(),
        document_sha256: blank_is_none(form.get("document_sha256").cloned()),
    };
    match checklist::attest(
        &console.app.ledger,
        &console.app.compliance_sources(),
        caller.agent.as_str(),
        &agent,
        request,
    )
    .await
    {
        Ok((a, _)) => back(
            &page,
            "done",
            &format!(
                "Attested {} (ledger index {}), valid until {}",
                a.item, a.ledger_index, a.valid_until
            ),
        ),
        Err(e) => back(&page, "error", &e.to_string()),
    }
}

#[derive(Deserialize)]
pub(super) struct PackQuery {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

/// An audit pack of the agent over a period (dates or RFC 3339), as the API exports it.
pub(super) async fn audit_pack(
    State(console): State<Console>,
    axum::Extension(person): axum::Extension<Person>,
    Path(id): Path<String>,
    Query(q): Query<PackQuery>,
) -> Response {
    let page = format!("/console/agents/{id}");
    let Some(caller) = caller_of(&person) else {
        return no_caller();
    };
    if let Err(denied) = console.app.authorize(&caller, ControlAction::AuditExport) {
        return back(&page, "error", &denied.to_string());
    }
    let Ok(agent) = id.parse::<AgentId>() else {
        return page_error(StatusCode::NOT_FOUND, "There is no such agent.");
    };
    let (from, to) = (day_start(q.from), day_start(q.to));
    match console
        .app
        .audit_pack(&caller, Some(agent.clone()), from.as_deref(), to.as_deref())
        .await
    {
        Ok(zip) => (
            [
                (header::CONTENT_TYPE, "application/zip".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"reins-audit-pack-{agent}.zip\""),
                ),
            ],
            zip,
        )
            .into_response(),
        Err(e) => back(&page, "error", &e.to_string()),
    }
}

pub(super) async fn ledger_page(
    State(console): State<Console>,
    axum::Extension(person): axum::Extension<Person>,
) -> Response {
    if !person.has_any(LEDGER_READERS) {
        return page_error(
            StatusCode::FORBIDDEN,
            "The ledger page is for admins, auditors, compliance officers and reviewers.",
        );
    }
    let checkpoint = match console.app.store.latest_checkpoint().await {
        Ok(c) => c,
        Err(e) => return unavailable("checkpoint", e),
    };
    render(
        StatusCode::OK,
        "ledger.html",
        minijinja::context! {
            person => serialized(&person.session), csrf => &person.csrf,
            size => console.app.ledger.size(),
            checkpoint => checkpoint.as_ref().map(|c| c.note.clone()),
            checkpoint_size => checkpoint.as_ref().map(|c| c.tree_size),
            checkpoint_at => checkpoint.as_ref().map(|c| c.created_at.to_string()),
            key => console.app.ledger.signer().verifier_key(),
        },
    )
}

#[derive(Deserialize)]
pub(super) struct ConsistencyQuery {
    from: u64,
    to: u64,
}

/// The consistency proof between two tree sizes, for the ledger page's check in the browser.
pub(super) async fn consistency(
    State(console): State<Console>,
    axum::Extension(person): axum::Extension<Person>,
    Query(q): Query<ConsistencyQuery>,
) -> Response {
    if !person.has_any(LEDGER_READERS) {
        return StatusCode::FORBIDDEN.into_response();
    }
    match console.app.ledger.consistency_proof(q.from, q.to).await {
        Ok(proof) => axum::Json(proof).into_response(),
        Err(
            error @ (crate::ledger::LedgerError::OutOfRange(_)
            | crate::ledger::LedgerError::Proof(_)),
        ) => (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
        Err(e) => unavailable("consistency proof", e),
    }
}

pub(super) async fn entry_page(
    State(console): State<Console>,
    axum::Extension(person): axum::Extension<Person>,
    Path(index): Path<String>,
) -> Response {
    if !person.has_any(LEDGER_READERS) {
        return page_error(
            StatusCode::FORBIDDEN,
            "The ledger page is for admins, auditors, compliance officers and reviewers.",
        );
    }
    let Ok(index) = index.parse::<u64>() else {
        return page_error(StatusCode::NOT_FOUND, "There is no such entry.");
    };
    let row = match console
        .app
        .store
        .entries(index, index.saturating_add(1))
        .await
    {
        Ok(rows) => rows.into_iter().next(),
        Err(e) => return unavailable("entry", e),
    };
    let Some(row) = row else {
        return page_error(StatusCode::NOT_FOUND, "There is no such entry.");
    };
    let json = serde_json::from_slice::<serde_json::Value>(&row.entry)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(&row.entry).into_owned());
    let proofs =
        match crate::compliance::proof::prove(&console.app.compliance_sources(), &[index]).await {
            Ok(p) => p,
            Err(e) => return unavailable("proof", e),
        };
    render(
        StatusCode::OK,
        "entry.html",
        minijinja::context! {
            person => serialized(&person.session), csrf => &person.csrf,
            index, kind => row.kind, json, proofs => serialized(&proofs),
        },
    )
}

#[derive(Deserialize)]
pub(super) struct EntryQuery {
    #[serde(default)]
    index: Option<String>,
}

/// The ledger page's lookup form, to the entry's own page.
pub(super) async fn entry_lookup(Query(q): Query<EntryQuery>) -> Response {
    match q.index.as_deref().map(str::trim).map(str::parse::<u64>) {
        Some(Ok(index)) => {
            axum::response::Redirect::to(&format!("/console/ledger/entries/{index}"))
                .into_response()
        }
        _ => page_error(StatusCode::BAD_REQUEST, "Give an entry index (0 or more)."),
    }
}
