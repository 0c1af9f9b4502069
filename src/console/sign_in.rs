//! Signing in and out: the sign-in page, the dev issuer's one-time links, and the one way a
//! session begins ([`start_session`]) whichever way the person proved who they are (a link, or
//! the OpenID Connect provider in [`super::oidc`]).
//!
//! A session begins with a ledger entry (`console_signed_in`, naming the method and the link or
//! sign-in it used up) whose side effect records that link as used, so the database takes each
//! once across replicas. Every sign-in makes a new session id: a cookie the browser had before is
//! replaced, never adopted (no session fixation).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::{self, Session};
use super::{Console, Person, csrf_ok, forged_form, page_error, render, set_cookie, unavailable};
use crate::events::{ConsoleEvent, Entry, Event};
use crate::ledger::LedgerError;
use crate::store::SideEffect;
use crate::timestamp::Timestamp;

#[derive(Deserialize)]
pub(super) struct SignInQuery {
    #[serde(default)]
    expired: Option<u8>,
    #[serde(default)]
    signed_out: Option<u8>,
}

pub(super) async fn sign_in_page(
    State(console): State<Console>,
    Query(q): Query<SignInQuery>,
) -> Response {
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
            provider => console.oidc.as_ref().map(|o| o.name().to_owned()),
        },
    )
}

/// Someone whose identity is proven, about to get a session.
pub(super) struct Opened {
    pub person: String,
    pub roles: Vec<String>,
    /// `dev_link` or `oidc`, as the ledger records it.
    pub method: &'static str,
    /// The link or sign-in this used up; the database takes it once.
    pub link: String,
}

/// Where a new session goes first.
pub(super) enum Landing {
    /// A redirect to the fleet: the request came from the person's own navigation.
    Redirect,
    /// A page that moves on to the fleet by itself: the request ends a cross-site navigation,
    /// after which a redirect would not carry the new SameSite=Strict cookie.
    Page,
}

/// Records the sign-in in the ledger (refused if its link was used already), then sets a new
/// session's cookie.
pub(super) async fn start_session(
    console: &Console,
    headers: &HeaderMap,
    opened: Opened,
    landing: Landing,
) -> Response {
    let used = || {
        page_error(
            StatusCode::UNAUTHORIZED,
            "This sign-in was used already: start a new one.",
        )
    };
    // One sign-in is checked and recorded at a time in this process; across replicas the
    // database's unique link refuses the second.
    let _serialised = console.sign_ins.lock().await;
    match console.app.store.console_link_used(&opened.link).await {
        Ok(false) => {}
        Ok(true) => return used(),
        Err(error) => return unavailable("used links", error),
    }
    let now = super::now_secs();
    let session = Session {
        id: session::new_id(),
        person: opened.person,
        roles: opened.roles,
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
            method: Some(opened.method.into()),
            link: Some(opened.link.clone()),
        }),
    };
    let recorded = match entry.append(SideEffect::ConsoleLink {
        link: opened.link,
        used_at: at,
    }) {
        Ok(append) => console.app.ledger.append(vec![append]).await,
        Err(error) => {
            tracing::error!(%error, "console: sign-in entry");
            return page_error(StatusCode::BAD_REQUEST, "This sign-in is not valid.");
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
    let mut response = match landing {
        Landing::Redirect => Redirect::to("/console").into_response(),
        Landing::Page => render(
            StatusCode::OK,
            "signed_in.html",
            minijinja::context! { who => &session.person },
        ),
    };
    let cookie = set_cookie(console, headers, &console.keys.seal(&session));
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

#[derive(Deserialize)]
pub(super) struct LinkQuery {
    token: String,
}

/// A one-time sign-in link made by `reins console-link`.
pub(super) async fn sign_in_with_link(
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
    start_session(
        &console,
        &headers,
        Opened {
            person: link.person.agent.to_string(),
            roles: link.person.roles.iter().cloned().collect(),
            method: "dev_link",
            link: link.jti,
        },
        Landing::Redirect,
    )
    .await
}

pub(super) async fn sign_out(
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
