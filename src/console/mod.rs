//! The console: server-rendered pages at `/console` for the people who run a fleet (compliance
//! officers, approvers, operators, policy admins).
//!
//! Pages are minijinja templates compiled into the binary (auto-escaped HTML), with one
//! stylesheet and two scripts, also compiled in: a vendored htmx (the approval queue refreshes in
//! place) and `verify.js` (proofs checked in the browser). Nothing is fetched from anywhere else,
//! and every response carries a Content-Security-Policy that says so. A person's session is a signed cookie ([`session`]);
//! sign-in and sign-out are ledger entries. Anything a person does here goes through the same
//! domain calls as the API, decided by the control policy under the person's own name.
//!
//! Sign-in is with a dev link ([`sign_in`]) or an OpenID Connect provider ([`oidc`]); pages are
//! the fleet ([`fleet`]), an agent and the ledger ([`records`]), decisions ([`decisions`]),
//! approvals and the kill switch ([`actions`]) and policies ([`policies`]).

pub mod session;

mod actions;
mod decisions;
mod fleet;
mod oidc;
mod policies;
mod records;
mod sign_in;

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Serialize;

use crate::app::AppState;
use session::{COOKIE, Session, SessionError, SessionKeys};

/// Scripts and styles only from here (no inline code, no eval), requests only to here, no frames;
/// forms post only here.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const STYLESHEET: &str = include_str!("assets/console.css");
const HTMX: &str = include_str!("assets/htmx-2.0.11.min.js");
const VERIFY_JS: &str = include_str!("assets/verify.js");

/// What the console's handlers share.
#[derive(Clone)]
pub struct Console {
    app: AppState,
    keys: Arc<SessionKeys>,
    /// One sign-in link is checked and recorded at a time in this process; across replicas the
    /// database takes a link once.
    sign_ins: Arc<tokio::sync::Mutex<()>>,
    /// The OpenID Connect provider, when one is configured.
    oidc: Option<Arc<oidc::Oidc>>,
    /// The fleet's checklist summaries, recent ones kept.
    checklists: Arc<fleet::Checklists>,
}

/// The signed-in person of a request, put there by [`require_session`].
#[derive(Debug, Clone)]
pub struct Person {
    pub session: Session,
    /// The CSRF token every form of this session carries.
    pub csrf: String,
}

impl Person {
    /// Whether the person holds one of `roles`: which pages they see. What they may do is the
    /// control policy's to say.
    pub fn has_any(&self, roles: &[&str]) -> bool {
        self.session
            .roles
            .iter()
            .any(|r| roles.contains(&r.as_str()))
    }
}

/// The console's routes, to be nested under `/console` (paths here are relative to it).
pub fn routes(app: AppState) -> Result<Router, String> {
    let keys = SessionKeys::new(app.ledger.signer().derive_secret("console session"))?;
    let oidc = match app.config.console.oidc.clone() {
        Some(config) => Some(Arc::new(oidc::Oidc::new(
            config,
            app.ledger.signer().derive_secret("console oidc"),
        )?)),
        None => None,
    };
    let console = Console {
        app,
        keys: Arc::new(keys),
        sign_ins: Default::default(),
        oidc,
        checklists: Default::default(),
    };
    templates()?;
    let signed_in = Router::new()
        .route("/", get(fleet_page))
        .route("/sign-out", post(sign_in::sign_out))
        .route("/approvals", get(actions::approvals_page))
        .route("/approvals/queue", get(actions::approvals_queue))
        .route("/approvals/{id}", post(actions::decide_approval))
        .route(
            "/killswitch",
            get(actions::killswitch_page).post(actions::engage),
        )
        .route("/killswitch/{id}/release", post(actions::release))
        .route("/decisions", get(decisions::list))
        .route("/decisions/{id}", get(decisions::one))
        .route("/agents/{id}", get(records::agent_page))
        .route("/agents/{id}/attestations", post(records::attest))
        .route("/agents/{id}/audit-pack", get(records::audit_pack))
        .route("/policies", get(policies::list))
        .route("/policies/diff", get(policies::compare))
        .route("/policies/{version}", get(policies::version))
        .route("/policies/{version}/{action}", post(policies::act))
        .route("/ledger", get(records::ledger_page))
        .route("/ledger/entry", get(records::entry_lookup))
        .route("/ledger/consistency", get(records::consistency))
        .route("/ledger/entries/{index}", get(records::entry_page))
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            require_session,
        ));
    Ok(Router::new()
        .route("/sign-in", get(sign_in::sign_in_page))
        .route("/sign-in/link", get(sign_in::sign_in_with_link))
        .route("/oidc/start", get(oidc::start))
        .route("/oidc/callback", get(oidc::callback))
        .route("/assets/console.css", get(stylesheet))
        .route("/assets/htmx-2.0.11.min.js", get(htmx))
        .route("/assets/verify.js", get(verify_js))
        .merge(signed_in)
        .fallback(|| async { page_error(StatusCode::NOT_FOUND, "There is no such page.") })
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(console))
}

fn templates() -> Result<&'static minijinja::Environment<'static>, String> {
    static ENV: OnceLock<Result<minijinja::Environment<'static>, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = minijinja::Environment::new();
        // Ids are UUIDv7s: ones made within a minute share their leading (time) digits, so a
        // short form is the trailing, random ones.
        env.add_filter("short_id", |id: String| {
            id.get(id.len().saturating_sub(8)..)
                .unwrap_or(&id)
                .to_owned()
        });
        for (name, text) in [
            ("layout.html", include_str!("templates/layout.html")),
            ("fleet.html", include_str!("templates/fleet.html")),
            ("sign_in.html", include_str!("templates/sign_in.html")),
            ("signed_in.html", include_str!("templates/signed_in.html")),
            ("message.html", include_str!("templates/message.html")),
            ("approvals.html", include_str!("templates/approvals.html")),
            (
                "approvals_queue.html",
                include_str!("templates/approvals_queue.html"),
            ),
            ("killswitch.html", include_str!("templates/killswitch.html")),
            ("decisions.html", include_str!("templates/decisions.html")),
            ("decision.html", include_str!("templates/decision.html")),
            ("proof.html", include_str!("templates/proof.html")),
            ("entry.html", include_str!("templates/entry.html")),
            ("ledger.html", include_str!("templates/ledger.html")),
            ("policies.html", include_str!("templates/policies.html")),
            ("policy.html", include_str!("templates/policy.html")),
            (
                "policy_diff.html",
                include_str!("templates/policy_diff.html"),
            ),
            ("agent.html", include_str!("templates/agent.html")),
        ] {
            env.add_template(name, text)
                .map_err(|e| format!("console template {name}: {e}"))?;
        }
        Ok(env)
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Renders a page; a template that fails to render is a 500 page naming it (logged), never a
/// panic.
fn render(status: StatusCode, name: &str, context: minijinja::Value) -> Response {
    let rendered = templates().and_then(|env| {
        env.get_template(name)
            .and_then(|t| t.render(context))
            .map_err(|e| format!("{name}: {e}"))
    });
    match rendered {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, "console page could not be rendered");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the console could not render this page",
            )
                .into_response()
        }
    }
}

fn serialized(value: &impl Serialize) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(value))
}

/// The page for a read that failed (logged with `what`).
fn unavailable(what: &str, error: impl std::fmt::Display) -> Response {
    tracing::error!(%error, "console: {what}");
    page_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Reins cannot read its database just now; try again.",
    )
}

/// The page for a form that is not from the person's session.
fn forged_form() -> Response {
    page_error(
        StatusCode::FORBIDDEN,
        "This form is not from your session (its CSRF token is missing or wrong).",
    )
}

fn page_error(status: StatusCode, message: &str) -> Response {
    render(
        status,
        "message.html",
        minijinja::context! { title => status.canonical_reason().unwrap_or("Error"), message },
    )
}

async fn security_headers(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    // How long the page took here, for a browser's developer tools and for measuring pages.
    if let Ok(timing) = HeaderValue::from_str(&format!(
        "app;dur={:.1}",
        started.elapsed().as_secs_f64() * 1000.0
    )) {
        headers.insert("server-timing", timing);
    }
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // A sign-in link's token must not leave in a Referer header.
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn htmx() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        HTMX,
    )
}

async fn verify_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        VERIFY_JS,
    )
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLESHEET,
    )
}

/// A form field's value, trimmed; blank is none.
fn blank_is_none(value: Option<String>) -> Option<String> {
    value.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// A form's date (a date picker sends `YYYY-MM-DD`: that day's start, UTC) or RFC 3339 time;
/// blank is none.
fn day_start(value: Option<String>) -> Option<String> {
    blank_is_none(value).map(|s| {
        if s.len() == 10 {
            format!("{s}T00:00:00Z")
        } else {
            s
        }
    })
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The value of the request's cookie `name`.
fn cookie_named(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.to_owned())
}

/// Whether cookies are to be `Secure`: configured so, or a proxy says the request came over TLS.
fn is_secure(console: &Console, headers: &HeaderMap) -> bool {
    console.app.config.console.secure_cookie
        || headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// `Set-Cookie` for `value` (empty: remove it). HttpOnly, SameSite=Strict, path `/console`;
/// Secure as [`is_secure`] says.
fn set_cookie(console: &Console, headers: &HeaderMap, value: &str) -> HeaderValue {
    let secure = is_secure(console, headers);
    let max_age = if value.is_empty() {
        0
    } else {
        console.app.config.console.absolute_timeout.as_secs()
    };
    let cookie = format!(
        "{COOKIE}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Lets a request through only with a live session: signed here, neither idle nor too old, not
/// signed out. Puts the [`Person`] in the request and refreshes the cookie on the answer.
async fn require_session(
    State(console): State<Console>,
    mut request: Request,
    next: Next,
) -> Response {
    let config = &console.app.config.console;
    let now = now_secs();
    let opened = cookie_named(request.headers(), COOKIE)
        .ok_or(SessionError::Missing)
        .and_then(|value| {
            console
                .keys
                .open(&value, now, config.idle_timeout, config.absolute_timeout)
        });
    let session = match opened {
        Ok(session) => match console.app.store.console_signed_out(&session.id).await {
            Ok(false) => session,
            Ok(true) => return not_signed_in(request.method(), "signed_out"),
            Err(error) => return unavailable("sign-outs", error),
        },
        Err(SessionError::Missing) => return not_signed_in(request.method(), ""),
        Err(SessionError::Idle | SessionError::Expired) => {
            return not_signed_in(request.method(), "expired");
        }
        Err(SessionError::Forged) => return not_signed_in(request.method(), ""),
    };
    let refreshed = Session {
        seen: now,
        ..session.clone()
    };
    let headers = request.headers().clone();
    // A page's own refreshing (htmx polling the approval queue) is no sign of a person: it does
    // not keep an idle session alive.
    let in_use = !headers.contains_key("hx-request");
    request.extensions_mut().insert(Person {
        csrf: console.keys.csrf(&session.id),
        session,
    });
    let mut response = next.run(request).await;
    if in_use && !response.headers().contains_key(header::SET_COOKIE) {
        let cookie = set_cookie(&console, &headers, &console.keys.seal(&refreshed));
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// Where a request without a live session goes: a page to the sign-in page, anything else a 403.
fn not_signed_in(method: &Method, why: &str) -> Response {
    if method == Method::GET || method == Method::HEAD {
        let target = match why {
            "" => "/console/sign-in".to_owned(),
            why => format!("/console/sign-in?{why}=1"),
        };
        return Redirect::to(&target).into_response();
    }
    page_error(
        StatusCode::FORBIDDEN,
        "This needs a console session: sign in again.",
    )
}

/// Whether a posted form (`application/x-www-form-urlencoded`, read from the raw body so that a
/// post of anything else is the same refusal) carries this session's CSRF token.
fn csrf_ok(console: &Console, person: &Person, body: &[u8]) -> bool {
    url::form_urlencoded::parse(body)
        .find(|(name, _)| name == "csrf")
        .is_some_and(|(_, token)| console.keys.csrf_matches(&person.session.id, &token))
}

/// The roles that may read the fleet: everyone the console is for.
const READERS: &[&str] = &[
    crate::identity::roles::ADMIN,
    crate::identity::roles::POLICY_ADMIN,
    crate::identity::roles::AUDITOR,
    crate::identity::roles::COMPLIANCE_OFFICER,
    crate::identity::roles::OPERATOR,
    crate::identity::roles::APPROVER,
    crate::identity::roles::REVIEWER,
];

async fn fleet_page(
    State(console): State<Console>,
    axum::Extension(person): axum::Extension<Person>,
) -> Response {
    if !person.has_any(READERS) {
        return page_error(
            StatusCode::FORBIDDEN,
            "Your roles do not include one the console is for (admin, auditor, compliance_officer, operator, approver, reviewer).",
        );
    }
    match fleet::fleet(&console.app, &console.checklists).await {
        Ok(view) => render(
            StatusCode::OK,
            "fleet.html",
            minijinja::context! {
                person => serialized(&person.session),
                csrf => &person.csrf,
                fleet => serialized(&view),
            },
        ),
        Err(error) => unavailable("fleet", error),
    }
}

#[cfg(test)]
mod tests {
    /// Every template parses (a broken one would leave the console unserved, logged only).
    #[test]
    fn the_templates_compile() {
        if let Err(error) = super::templates() {
            panic!("{error}");
        }
    }
}
