//! The console's pages for policy admins (and, to read, admins and auditors): a store's policy
//! versions, a diff between two, and one version with its texts, where it can be tested, shadowed,
//! replayed over a period and activated (an earlier version: rolled back to).
//!
//! Every action goes through [`acting`] and the same `lifecycle::Versions` calls as the API, so
//! the control policy decides it and the ledger records it under the person's name.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::actions::{Notice, acting, back};
use super::{Console, Person, day_start, page_error, render, serialized, unavailable};
use crate::compliance::Period;
use crate::ids::{DEFAULT_STORE, VersionId};
use crate::lifecycle::{PolicyVersion, VersionError, VersionState};
use crate::policy::control::ControlAction;

const READERS: &[&str] = &["policy_admin", "admin", "auditor"];

fn not_for_you() -> Response {
    page_error(
        StatusCode::FORBIDDEN,
        "Policy pages are for policy admins, admins and auditors.",
    )
}

fn version_error(error: VersionError) -> Response {
    match error {
        VersionError::NotFound(_) => page_error(StatusCode::NOT_FOUND, "There is no such version."),
        VersionError::Store(e) => unavailable("policy versions", e),
        other => unavailable("policy versions", other),
    }
}

#[derive(Deserialize, Default)]
pub(super) struct ListQuery {
    #[serde(default)]
    store: Option<String>,
}

/// The stores a person can pick between: the default one and those configured.
fn store_names(console: &Console) -> Vec<String> {
    std::iter::once(DEFAULT_STORE.to_owned())
        .chain(console.app.config.stores.keys().cloned())
        .collect()
}

/// `/console/policies`: a store's versions, newest first, and a form to compare two.
pub(super) async fn list(
    State(console): State<Console>,
    axum::Extension(person): axum::Extension<Person>,
    Query(q): Query<ListQuery>,
) -> Response {
    if !person.has_any(READERS) {
        return not_for_you();
    }
    let stores = store_names(&console);
    let store = q.store.unwrap_or_else(|| DEFAULT_STORE.to_owned());
    if !stores.contains(&store) {
        return page_error(StatusCode::NOT_FOUND, "There is no such policy store.");
    }
    let mut versions = match console.app.versions.list(&store).await {
        Ok(v) => v,
        Err(e) => return version_error(e),
    };
    versions.reverse();
    let active = versions
        .iter()
        .find(|v| v.state == VersionState::Active)
        .map(|v| v.version.to_string());
    render(
        StatusCode::OK,
        "policies.html",
        minijinja::context! {
            person => serialized(&person.session), csrf => &person.csrf,
            stores, store, active, versions => serialized(&versions),
        },
    )
}

#[derive(Deserialize)]
pub(super) struct DiffQuery {
    from: String,
    to: String,
}

/// One changed file: its name and its lines, each marked ` `, `-` or `+`.
#[derive(Serialize)]
struct FileDiff {
    name: String,
    lines: Vec<(char, String)>,
}

/// The line diff of two versions' texts, file by file (files only in one: all added or removed).
fn diff(from: &BTreeMap<String, String>, to: &BTreeMap<String, String>) -> Vec<FileDiff> {
    let names: std::collections::BTreeSet<&String> = from.keys().chain(to.keys()).collect();
    names
        .into_iter()
        .filter_map(|name| {
            let (old, new) = (
                from.get(name).map_or("", String::as_str),
                to.get(name).map_or("", String::as_str),
            );
            if old == new {
                return None;
            }
            let text = similar::TextDiff::from_lines(old, new);
            let lines = text
                .iter_all_changes()
                .map(|change| {
                    let mark = match change.tag() {
                        similar::ChangeTag::Equal => ' ',
                        similar::ChangeTag::Delete => '-',
                        similar::ChangeTag::Insert => '+',
                    };
                    (mark, change.value().trim_end_matches('\n').to_owned())
                })
                .collect();
            Some(FileDiff {
                name: name.clone(),
                lines,
            })
        })
        .collect()
}

/// `/console/policies/diff?from=&to=`: what changed from one version to another.
pub(super) async fn compare(
    State(console): State<Console>,
    axum::Extension(person): axum::Extension<Person>,
    Query(q): Query<DiffQuery>,
) -> Response {
    if !person.has_any(READERS) {
        return not_for_you();
    }
    let (Ok(from), Ok(to)) = (q.from.parse::<VersionId>(), q.to.parse::<VersionId>()) else {
        return page_error(
            StatusCode::BAD_REQUEST,
            "Pick two versions to compare (from and to).",
        );
    };
    let (old, new) = match (
        console.app.versions.get(&from).await,
        console.app.versions.get(&to).await,
    ) {
        (Ok(old), Ok(new)) => (old, new),
        (Err(e), _) | (_, Err(e)) => return version_error(e),
    };
    let files = diff(&old.sources, &new.sources);
    render(
        StatusCode::OK,
        "policy_diff.html",
        minijinja::context! {
            person => serialized(&person.session), csrf => &person.csrf,
            from => serialized(&old.version), to => serialized(&new.version),
            files => serialized(&files),
        },
    )
}

#[derive(Deserialize, Default)]
pub(super) struct VersionQuery {
    #[serde(flatten)]
    notice: Notice,
    /// A replay over this period (dates or RFC 3339) was asked for.
    #[serde(default)]
    replay_from: Option<String>,
    #[serde(default)]
    replay_to: Option<String>,
}

/// `/console/policies/{version}`: its texts and state, the shadow report while it is shadowed, a
/// replay when asked for, and the actions a policy admin takes on it.
pub(super) async fn version(
    State(console): State<Console>,
    axum::Extension(person): axum::Extension<Person>,
    Path(id): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Response {
    version_page(&console, &person, &id, q, None).await
}

async fn version_page(
    console: &Console,
    person: &Person,
    id: &str,
    q: VersionQuery,
    tested: Option<crate::lifecycle::TestRun>,
) -> Response {
    if !person.has_any(READERS) {
        return not_for_you();
    }
    let Ok(id) = id.parse::<VersionId>() else {
        return page_error(StatusCode::NOT_FOUND, "There is no such version.");
    };
    let detail = match console.app.versions.get(&id).await {
        Ok(d) => d,
        Err(e) => return version_error(e),
    };
    let versions = match console.app.versions.list(&detail.version.store).await {
        Ok(v) => v,
        Err(e) => return version_error(e),
    };
    let active: Option<&PolicyVersion> = versions.iter().find(|v| v.state == VersionState::Active);
    let shadow = (detail.version.state == VersionState::Shadow)
        .then(|| {
            console
                .app
                .versions
                .shadow_report(&console.app.pipeline, &detail.version.store, &id)
        })
        .and_then(Result::ok);
    let (replay, replay_error) = if q.replay_from.is_some() || q.replay_to.is_some() {
        match replay(console, &id, q.replay_from.clone(), q.replay_to.clone()).await {
            Ok(report) => (Some(report), None),
            Err(message) => (None, Some(message)),
        }
    } else {
        (None, None)
    };
    // Activating a version older than the active one puts back what was there before.
    let rollback = active.is_some_and(|a| a.created_at > detail.version.created_at);
    render(
        StatusCode::OK,
        "policy.html",
        minijinja::context! {
            person => serialized(&person.session), csrf => &person.csrf,
            version => serialized(&detail.version), sources => detail.sources,
            active => active.map(|a| a.version.to_string()),
            rollback,
            admin => person.has_any(&["policy_admin"]),
            shadow => shadow.as_ref().map(serialized),
            replay => replay.as_ref().map(serialized), replay_error,
            replay_from => q.replay_from, replay_to => q.replay_to,
            tested => tested.as_ref().map(serialized),
            done => q.notice.done, error => q.notice.error,
        },
    )
}

async fn replay(
    console: &Console,
    id: &VersionId,
    from: Option<String>,
    to: Option<String>,
) -> Result<crate::lifecycle::replay::ReplayReport, String> {
    let whole = crate::compliance::pack::whole_history();
    let from = day_start(from).unwrap_or_else(|| whole.from.to_string());
    let period = Period::parse(
        Some(&from),
        day_start(to).as_deref(),
        std::time::Duration::ZERO,
    )
    .map_err(|e| e.to_string())?;
    console
        .app
        .versions
        .replay(&console.app.pipeline, id, &period)
        .await
        .map_err(|e| e.to_string())
}

/// `POST /console/policies/{version}/{action}`: test, shadow or activate.
pub(super) async fn act(
    State(console): State<Console>,
    axum::Extension(person): axum::Extension<Person>,
    Path((id, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let page = format!("/console/policies/{id}");
    let control = match action.as_str() {
        // Running the tests is an activation's first step, and recorded as one.
        "test" | "activate" => ControlAction::PolicyActivate,
        "shadow" => ControlAction::PolicyShadow,
        _ => return page_error(StatusCode::NOT_FOUND, "There is no such page."),
    };
    let caller = match acting(&console, &person, &body, control, &page) {
        Ok(caller) => caller,
        Err(refused) => return *refused,
    };
    let Ok(version) = id.parse::<VersionId>() else {
        return page_error(StatusCode::NOT_FOUND, "There is no such version.");
    };
    let versions = &console.app.versions;
    let pipeline = &console.app.pipeline;
    let actor = caller.agent.as_str();
    match action.as_str() {
        "test" => match versions.test(pipeline, &version, actor).await {
            // The failures are a list: shown on the page itself rather than in a notice.
            Ok(run) => {
                version_page(&console, &person, &id, VersionQuery::default(), Some(run)).await
            }
            Err(e) => back(&page, "error", &e.to_string()),
        },
        "shadow" => match versions.shadow(pipeline, &version, actor).await {
            Ok(_) => back(
                &page,
                "done",
                "Shadowing: this version now runs beside the active one on live traffic, without changing any answer.",
            ),
            Err(e) => back(&page, "error", &e.to_string()),
        },
        _ => match versions.activate(pipeline, &version, actor).await {
            Ok(a) => back(
                &page,
                "done",
                &format!(
                    "Active from the next decision on ({} test files, {} checks passed){}.",
                    a.test_files,
                    a.test_checks,
                    a.previous
                        .map(|p| format!("; it replaced {p}"))
                        .unwrap_or_default()
                ),
            ),
            Err(VersionError::TestsFailed(failures)) => back(
                &page,
                "error",
                &format!(
                    "Not activated: {} policy test failures, the first: {}",
                    failures.len(),
                    failures.first().map_or("", String::as_str)
                ),
            ),
            Err(e) => back(&page, "error", &e.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_marks_changed_lines_and_skips_unchanged_files() {
        let from = BTreeMap::from([
            (
                "a.cedar".to_owned(),
                "permit(\n  principal\n);\n".to_owned(),
            ),
            ("same.cedar".to_owned(), "x\n".to_owned()),
            ("gone.cedar".to_owned(), "old\n".to_owned()),
        ]);
        let to = BTreeMap::from([
            (
                "a.cedar".to_owned(),
                "forbid(\n  principal\n);\n".to_owned(),
            ),
            ("same.cedar".to_owned(), "x\n".to_owned()),
        ]);
        let files = diff(&from, &to);
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a.cedar", "gone.cedar"]);
        assert_eq!(
            files[0].lines,
            [
                ('-', "permit(".to_owned()),
                ('+', "forbid(".to_owned()),
                (' ', "  principal".to_owned()),
                (' ', ");".to_owned()),
            ]
        );
        assert_eq!(files[1].lines, [('-', "old".to_owned())]);
    }
}
