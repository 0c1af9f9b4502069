//! The console: server-rendered pages at `/console` for the people who run a fleet (compliance
//! officers, approvers, operators), signed in with a one-time link (`reins console-link`).
//!
//! Pages are minijinja templates compiled into the binary (auto-escaped HTML), with one
//! stylesheet and no script: nothing is fetched from anywhere else, and every response carries a
//! Content-Security-Policy that says so. A person's session is a signed cookie ([`session`]);
//! sign-in and sign-out are ledger entries. Anything a person does here goes through the same
//! domain calls as the API, decided by the control policy under the person's own name.
//!
//! What exists: sign-in with a dev link, the session, sign-out; the fleet, an agent, decisions,
//! approvals, the kill switch and the ledger. The policies page and OpenID Connect sign-in are not
//! built yet; nothing links to them.

pub mod session;

mod actions;
mod decisions;
mod fleet;
mod records;

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::events::{ConsoleEvent, Entry, Event};
use crate::ledger::LedgerError;
use crate::store::SideEffect;
use crate::timestamp::Timestamp;
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
    let console = Console {
        app,
        keys: Arc::new(keys),
        sign_ins: Default::default(),
    };
    templates()?;
    let signed_in = Router::new()
        .route("/", get(fleet_page))
        .route("/sign-out", post(sign_out))
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
        .route("/ledger", get(records::ledger_page))
        .route("/ledger/entry", get(records::entry_lookup))
        .route("/ledger/entries/{index}", get(records::entry_page))
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            require_session,
        ));
    Ok(Router::new()
        .route("/sign-in", get(sign_in_page))
        .route("/sign-in/link", get(sign_in_with_link))
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
        for (name, text) in [
            ("layout.html", include_str!("templates/layout.html")),
            ("fleet.html", include_str!("templates/fleet.html")),
            ("sign_in.html", include_str!("templates/sign_in.html")),
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
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
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

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// `Set-Cookie` for `value` (empty: remove it). HttpOnly, SameSite=Strict, path `/console`;
/// Secure when configured or when a proxy says the request came over TLS.
fn set_cookie(console: &Console, headers: &HeaderMap, value: &str) -> HeaderValue {
    let secure = console.app.config.console.secure_cookie
        || headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
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
    let opened = cookie_value(request.headers())
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

#[derive(Deserialize)]
struct SignInQuery {
    #[serde(default)]
    expired: Option<u8>,
    #[serde(default)]
    signed_out: Option<u8>,
}

async fn sign_in_page(State(console): State<Console>, Query(q): Query<SignInQuery>) -> Response {
    let notice = if q.signed_out.is_some() {
        "You are signed out."
    } else if q.expired.is_some() {
        "Your session ended; sign in again."
    } else {
        ""
    };
    render(
        StatusCode::OK,
        "sign_in.html",
        minijinja::context! {
            notice,
            dev_issuer => console.app.config.identity.dev_issuer,
        },
    )
}

#[derive(Deserialize)]
struct LinkQuery {
    token: String,
}

/// A one-time sign-in link: verified, recorded in the ledger (which takes it once), then a
/// session.
async fn sign_in_with_link(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(q): Query<LinkQuery>,
) -> Response {
    let link = match console.app.verifier.verify_console_link(&q.token) {
        Ok(link) => link,
        Err(error) => {
            return page_error(
                StatusCode::UNAUTHORIZED,
                &format!("This sign-in link is not valid: {error}."),
            );
        }
    };
    let used = || {
        page_error(
            StatusCode::UNAUTHORIZED,
            "This sign-in link was used already: ask for a new one.",
        )
    };
    let _serialised = console.sign_ins.lock().await;
    match console.app.store.console_link_used(&link.jti).await {
        Ok(false) => {}
        Ok(true) => return used(),
        Err(error) => return unavailable("used links", error),
    }
    let now = now_secs();
    let session = Session {
        id: session::new_id(),
        person: link.person.agent.to_string(),
        roles: link.person.roles.iter().cloned().collect(),
        started: now,
        seen: now,
    };
    let at = Timestamp::now();
    let entry = Entry {
        time: at.to_string(),
        event: Event::ConsoleSignedIn(ConsoleEvent {
            person: session.person.clone(),
            roles: session.roles.clone(),
            session: session.id.clone(),
            method: Some("dev_link".into()),
            link: Some(link.jti.clone()),
        }),
    };
    let recorded = match entry.append(SideEffect::ConsoleLink {
        link: link.jti,
        used_at: at,
    }) {
        Ok(append) => console.app.ledger.append(vec![append]).await,
        Err(error) => {
            tracing::error!(%error, "console: sign-in entry");
            return page_error(StatusCode::BAD_REQUEST, "This sign-in link is not valid.");
        }
    };
    match recorded {
        Ok(_) => {}
        Err(LedgerError::Conflict(_)) => return used(),
        Err(error) => {
            tracing::error!(%error, "console: sign-in not recorded");
            return page_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "The sign-in could not be recorded in the ledger; nothing was signed in.",
            );
        }
    }
    let mut response = Redirect::to("/console").into_response();
    let cookie = set_cookie(&console, &headers, &console.keys.seal(&session));
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

/// Whether a posted form (`application/x-www-form-urlencoded`, read from the raw body so that a
/// post of anything else is the same refusal) carries this session's CSRF token.
fn csrf_ok(console: &Console, person: &Person, body: &[u8]) -> bool {
    url::form_urlencoded::parse(body)
        .find(|(name, _)| name == "csrf")
        .is_some_and(|(_, token)| console.keys.csrf_matches(&person.session.id, &token))
}

async fn sign_out(
    State(console): State<Console>,
    axum::Extension(person): axum::Extension<Person>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !csrf_ok(&console, &person, &body) {
        return forged_form();
    }
    let at = Timestamp::now();
    let entry = Entry {
        time: at.to_string(),
        event: Event::ConsoleSignedOut(ConsoleEvent {
            person: person.session.person.clone(),
            roles: person.session.roles.clone(),
            session: person.session.id.clone(),
            method: None,
            link: None,
        }),
    };
    let recorded = match entry.append(SideEffect::ConsoleSignOut {
        session: person.session.id.clone(),
        at,
    }) {
        Ok(append) => console
            .app
            .ledger
            .append(vec![append])
            .await
            .map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    };
    if let Err(error) = recorded {
        tracing::error!(%error, "console: sign-out not recorded");
        return page_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "The sign-out could not be recorded; your session is still open. Try again.",
        );
    }
    let mut response = Redirect::to("/console/sign-in?signed_out=1").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&console, &headers, ""));
    response
}

/// The roles that may read the fleet: everyone the console is for.
const READERS: &[&str] = &[
    crate::identity::roles::ADMIN,
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
    match fleet::fleet(&console.app).await {
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
