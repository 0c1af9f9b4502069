//! The console's pages where people act: the approval queue (grant or deny, with a comment) and
//! the kill switch (engage by picking registered ids, release). Each action is the same domain
//! call the API makes, authorized by the control policy for the person as the caller and recorded
//! in the ledger under their name; the page then redirects to itself with what happened
//! (post/redirect/get).

use std::collections::BTreeSet;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use super::{
    Console, Person, blank_is_none, csrf_ok, forged_form, page_error, render, serialized,
    unavailable,
};
use crate::identity::Caller;
use crate::policy::control::ControlAction;

/// The person as a caller of the domain: their name, their roles, no delegation.
pub(super) fn caller_of(person: &Person) -> Option<Caller> {
    Some(Caller {
        agent: person.session.person.parse().ok()?,
        on_behalf_of: None,
        roles: person
            .session
            .roles
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>(),
        issuer: "console".into(),
    })
}

/// What every form that acts goes through, in order: the session's CSRF token, the person as a
/// caller, the control policy's permission for `action` (a refusal goes back to `page` saying
/// why). The caller, or the answer to give instead (boxed: a response is large).
pub(super) fn acting(
    console: &Console,
    person: &Person,
    body: &[u8],
    action: ControlAction,
    page: &str,
) -> Result<Caller, Box<Response>> {
    if !csrf_ok(console, person, body) {
        return Err(Box::new(forged_form()));
    }
    let caller = caller_of(person).ok_or_else(|| Box::new(no_caller()))?;
    console
        .app
        .authorize(&caller, action)
        .map_err(|denied| Box::new(back(page, "error", &denied.to_string())))?;
    Ok(caller)
}

pub(super) fn no_caller() -> Response {
    page_error(
        StatusCode::FORBIDDEN,
        "Your name is not one Reins can act under.",
    )
}

/// A form's fields, from the raw urlencoded body (the CSRF token among them).
pub(super) fn fields(body: &[u8]) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

#[derive(Deserialize, Default)]
pub(super) struct Notice {
    #[serde(default)]
    pub(super) done: Option<String>,
    #[serde(default)]
    pub(super) error: Option<String>,
}

fn notice_of(q: &Notice) -> (Option<&str>, Option<&str>) {
    (q.done.as_deref(), q.error.as_deref())
}

/// Back to `page` saying what happened (`done`) or what was refused (`error`).
pub(super) fn back(page: &str, key: &str, message: &str) -> Response {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair(key, message)
        .finish();
    Redirect::to(&format!("{page}?{query}")).into_response()
}

const APPROVAL_READERS: &[&str] = &["approver", "admin", "auditor"];

/// One pending approval as the queue shows it.
#[derive(Serialize)]
struct QueueItem {
    id: String,
    agent: String,
    on_behalf_of: Option<String>,
    tool: String,
    tool_description: Option<String>,
    tool_risk: Option<String>,
    arguments: String,
    intent: Option<String>,
    /// Each policy that asks for the approval, with what it says.
    policies: Vec<(String, Option<String>)>,
    requested_at: String,
    expires_at: String,
}

async fn queue(console: &Console) -> Result<Vec<QueueItem>, String> {
    let views = console
        .app
        .approval_views(Some(crate::approvals::Status::Pending), 200)
        .await
        .map_err(|e| e.to_string())?;
    let pack = console.app.pipeline.policies();
    Ok(views
        .into_iter()
        .map(|view| {
            let a = view.approval;
            let policies = a
                .policy_ids
                .iter()
                .map(|id| {
                    let description = pack
                        .annotations(&cedar_policy::PolicyId::new(id))
                        .find(|(k, _)| *k == "description")
                        .map(|(_, v)| v.to_owned());
                    (id.clone(), description)
                })
                .collect();
            let request = view.request;
            QueueItem {
                id: a.id.to_string(),
                agent: a.agent_id,
                on_behalf_of: a.on_behalf_of,
                tool: a.resource.id,
                tool_description: request.as_ref().and_then(|r| r.tool_description.clone()),
                tool_risk: request.as_ref().and_then(|r| r.tool_risk.clone()),
                arguments: request
                    .as_ref()
                    .and_then(|r| serde_json::to_string_pretty(&r.arguments).ok())
                    .unwrap_or_else(|| "(the request could not be read)".into()),
                intent: request.and_then(|r| r.intent),
                policies,
                requested_at: a.requested_at.to_string(),
                expires_at: a.expires_at.to_string(),
            }
        })
        .collect())
}

pub(super) async fn approvals_page(
    State(console): State<Console>,
    axum::Extension(person): axum::Extension<Person>,
    Query(q): Query<Notice>,
) -> Response {
    if !person.has_any(APPROVAL_READERS) {
        return page_error(
            StatusCode::FORBIDDEN,
            "The approval queue is for approvers, admins and auditors.",
        );
    }
    let (done, error) = notice_of(&q);
    match queue(&console).await {
        Ok(items) => render(
            StatusCode::OK,
            "approvals.html",
            minijinja::context! {
                person => serialized(&person.session), csrf => &person.csrf,
                items => serialized(&items), done, error,
            },
        ),
        Err(error) => unavailable("approvals", error),
    }
}

/// The queue alone, for the page to refresh in place.
pub(super) async fn approvals_queue(
    State(console): State<Console>,
    axum::Extension(person): axum::Extension<Person>,
) -> Response {
    if !person.has_any(APPROVAL_READERS) {
        return StatusCode::FORBIDDEN.into_response();
    }
    match queue(&console).await {
        Ok(items) => render(
            StatusCode::OK,
            "approvals_queue.html",
            minijinja::context! { csrf => &person.csrf, items => serialized(&items) },
        ),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

pub(super) async fn decide_approval(
    State(console): State<Console>,
    axum::Extension(person): axum::Extension<Person>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    const PAGE: &str = "/console/approvals";
    let caller = match acting(
        &console,
        &person,
        &body,
        ControlAction::ApprovalDecide,
        PAGE,
    ) {
        Ok(caller) => caller,
        Err(refused) => return *refused,
    };
    let form = fields(&body);
    let grant = match form.get("verdict").map(String::as_str) {
        Some("grant") => true,
        Some("deny") => false,
        _ => return back(PAGE, "error", "choose grant or deny"),
    };
    let Ok(id) = id.parse() else {
        return back(PAGE, "error", "no such approval");
    };
    let comment = blank_is_none(form.get("comment").cloned());
    let verdict = crate::approvals::Verdict { comment };
    match console
        .app
        .decide_approval(&caller, &id, grant, verdict)
        .await
    {
        Ok(a) => back(
            PAGE,
            "done",
            &format!(
                "{} the approval for {} to call {}",
                if grant { "Granted" } else { "Denied" },
                a.agent_id,
                a.resource.id
            ),
        ),
        Err(e) => back(PAGE, "error", &e.to_string()),
    }
}

const SWITCH_READERS: &[&str] = &["operator", "admin", "auditor"];

#[derive(Serialize)]
struct SwitchLine {
    id: String,
    scope: String,
    reason: String,
    drill: bool,
    engaged_by: String,
    engaged_at: String,
    released: Option<String>,
}

pub(super) async fn killswitch_page(
    State(console): State<Console>,
    axum::Extension(person): axum::Extension<Person>,
    Query(q): Query<Notice>,
) -> Response {
    if !person.has_any(SWITCH_READERS) {
        return page_error(
            StatusCode::FORBIDDEN,
            "The kill switch page is for operators, admins and auditors.",
        );
    }
    let history = match console.app.killswitches.history().await {
        Ok(h) => h,
        Err(error) => return unavailable("kill switches", error),
    };
    let line = |s: &crate::killswitch::Switch| SwitchLine {
        id: s.id.to_string(),
        scope: s.scope.describe(),
        reason: s.reason.clone(),
        drill: s.drill,
        engaged_by: s.engaged_by.clone(),
        engaged_at: s.engaged_at.to_string(),
        released: s.released_at.map(|at| {
            format!(
                "{} by {}: {}",
                at,
                s.released_by.clone().unwrap_or_default(),
                s.release_reason.clone().unwrap_or_default()
            )
        }),
    };
    let engaged: Vec<SwitchLine> = history
        .iter()
        .filter(|s| s.is_engaged())
        .map(line)
        .collect();
    let released: Vec<SwitchLine> = history
        .iter()
        .filter(|s| !s.is_engaged())
        .take(20)
        .map(line)
        .collect();
    let registry = console.app.pipeline.registry();
    let agents: Vec<String> = registry.agents().iter().map(|a| a.id.to_string()).collect();
    let tools: Vec<String> = registry.tools().iter().map(|t| t.id.to_string()).collect();
    let actions = console.app.pipeline.policies().action_names();
    let (done, error) = notice_of(&q);
    render(
        StatusCode::OK,
        "killswitch.html",
        minijinja::context! {
            person => serialized(&person.session), csrf => &person.csrf,
            engaged => serialized(&engaged), released => serialized(&released),
            agents, tools, actions, done, error,
        },
    )
}

pub(super) async fn engage(
    State(console): State<Console>,
    axum::Extension(person): axum::Extension<Person>,
    body: axum::body::Bytes,
) -> Response {
    const PAGE: &str = "/console/killswitch";
    let caller = match acting(
        &console,
        &person,
        &body,
        ControlAction::KillswitchEngage,
        PAGE,
    ) {
        Ok(caller) => caller,
        Err(refused) => return *refused,
    };
    let form = fields(&body);
    let picked = |name: &str| blank_is_none(form.get(name).cloned());
    let agent = match picked("agent").map(|a| a.parse()).transpose() {
        Ok(a) => a,
        Err(_) => return back(PAGE, "error", "pick an agent from the list"),
    };
    let tool = match picked("tool").map(|t| t.parse()).transpose() {
        Ok(t) => t,
        Err(_) => return back(PAGE, "error", "pick a tool from the list"),
    };
    let action = picked("action");
    let global = agent.is_none() && tool.is_none() && action.is_none();
    if global && picked("confirm").as_deref() != Some("global") {
        return back(
            PAGE,
            "error",
            "a switch with no agent, tool or action stops everything: type `global` to confirm",
        );
    }
    let request = crate::killswitch::EngageRequest {
        scope: crate::killswitch::Scope {
            agent,
            tool,
            action,
        },
        reason: picked("reason").unwrap_or_default(),
        drill: form.contains_key("drill"),
        force: false,
    };
    match console.app.engage_killswitch(&caller, request).await {
        Ok(s) => back(
            PAGE,
            "done",
            &format!("Engaged {}: the next decision in its scope is denied", s.id),
        ),
        Err(e) => back(PAGE, "error", &e.to_string()),
    }
}

pub(super) async fn release(
    State(console): State<Console>,
    axum::Extension(person): axum::Extension<Person>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    const PAGE: &str = "/console/killswitch";
    let caller = match acting(
        &console,
        &person,
        &body,
        ControlAction::KillswitchRelease,
        PAGE,
    ) {
        Ok(caller) => caller,
        Err(refused) => return *refused,
    };
    let Ok(id) = id.parse() else {
        return back(PAGE, "error", "no such kill switch");
    };
    let reason = fields(&body).get("reason").cloned().unwrap_or_default();
    match console
        .app
        .killswitches
        .release(
            caller.agent.as_str(),
            &id,
            crate::killswitch::ReleaseRequest { reason },
            crate::timestamp::Timestamp::now(),
        )
        .await
    {
        Ok(s) => back(PAGE, "done", &format!("Released {}", s.id)),
        Err(e) => back(PAGE, "error", &e.to_string()),
    }
}
