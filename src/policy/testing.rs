//! The policy test runner: files in the format of Cedar's own integration tests.
//!
//! A test file names a policy set, entities and a schema (paths relative to the suite's root),
//! says whether the policies should validate, and lists requests with the expected decision, the
//! set of policy ids that determined it (`reason`) and the set that failed to evaluate (`errors`).
//! This runs them with plain Cedar semantics, as Cedar's harness does: policy ids are Cedar's
//! (`policy0`, `policy1`, ... in file order), not Reins' `@id`s, and an erroring policy is
//! reported rather than turned into a deny. `reins policy test` is the command; users run their own
//! policy tests with it too.
//!
//! One extension: `policies` may name a folder, which is loaded as a Reins policy pack (every
//! `*.cedar` file in it, ids from `@id`), so a pack's tests can name its policies by those ids.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request, Schema, ValidationMode,
    Validator,
};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TestFile {
    policies: String,
    entities: String,
    schema: String,
    should_validate: bool,
    #[serde(default)]
    policy_format: Option<String>,
    #[serde(default)]
    schema_format: Option<String>,
    requests: Vec<TestRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TestRequest {
    #[serde(default)]
    description: String,
    principal: Value,
    action: Value,
    resource: Value,
    #[serde(default)]
    context: Value,
    #[serde(default)]
    validate_request: Option<bool>,
    decision: String,
    #[serde(default)]
    reason: Vec<String>,
    #[serde(default)]
    errors: Vec<String>,
}

/// A test file that could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
}

/// One expectation that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub test: String,
    pub what: String,
    pub expected: String,
    pub got: String,
}

/// The outcome of one test file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileReport {
    /// Expectations checked: the validation result and each request.
    pub checks: usize,
    pub mismatches: Vec<Mismatch>,
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> TestError {
    TestError::File {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// Finds a path named in a test file: relative to the file's folder or any folder above it.
fn resolve(test: &Path, named: &str) -> Option<PathBuf> {
    let named = Path::new(named);
    if named.is_absolute() {
        return named.exists().then(|| named.to_owned());
    }
    test.ancestors()
        .skip(1)
        .map(|dir| dir.join(named))
        .find(|p| p.exists())
}

fn read(test: &Path, named: &str) -> Result<String, TestError> {
    let path = resolve(test, named).ok_or_else(|| {
        file_error(
            test,
            format!("`{named}` not found next to the test or above it"),
        )
    })?;
    std::fs::read_to_string(&path).map_err(|e| file_error(&path, e))
}

/// Whether a JSON file is a test file (rather than entities, a schema or policies in JSON).
pub fn is_test_file(path: &Path) -> bool {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .is_some_and(|v| v.get("requests").is_some_and(Value::is_array))
}

/// Runs one test file.
pub fn run_file(path: &Path) -> Result<FileReport, TestError> {
    run_file_with(path, None)
}

/// Runs one test file against `given` policies and schema instead of the ones it names: how a
/// draft policy version is tested, against its store's schema, before it may become active.
///
/// Runs on [`super::limits::on_parser_stack`]: the test's policies, schema and entities are
/// parsed and evaluated there.
pub fn run_file_with(
    path: &Path,
    given: Option<(&PolicySet, &Schema)>,
) -> Result<FileReport, TestError> {
    super::limits::on_parser_stack(|| run_file_here(path, given))
        .map_err(|e| file_error(path, format!("cannot start the parser thread: {e}")))?
}

fn run_file_here(
    path: &Path,
    given: Option<(&PolicySet, &Schema)>,
) -> Result<FileReport, TestError> {
    let policies = given.map(|(p, _)| p);
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e))?;
    let test: TestFile = serde_json::from_str(&text)
        .map_err(|e| file_error(path, format!("not a policy test file: {e}")))?;

    let policies = match (
        policies,
        resolve(path, &test.policies).filter(|p| p.is_dir()),
    ) {
        (Some(given), _) => given.clone(),
        (None, Some(dir)) => super::policy_set_from_dir(&dir)
            .map_err(|e| file_error(path, format!("policies: {e}")))?,
        (None, None) => {
            let text = read(path, &test.policies)?;
            super::limits::check_nesting(&test.policies, &text)
                .map_err(|d| file_error(path, format!("policies: {d}")))?;
            let parsed = match test.policy_format.as_deref() {
                Some("json") => PolicySet::from_json_str(&text).map_err(|e| e.to_string()),
                _ => PolicySet::from_str(&text).map_err(|e| e.to_string()),
            };
            parsed.map_err(|e| file_error(path, format!("policies: {e}")))?
        }
    };
    let schema = match given {
        Some((_, schema)) => schema.clone(),
        None => {
            let schema_text = read(path, &test.schema)?;
            super::limits::check_nesting(&test.schema, &schema_text)
                .map_err(|d| file_error(path, format!("schema: {d}")))?;
            match test.schema_format.as_deref() {
                Some("json") => Schema::from_json_str(&schema_text)
                    .map_err(|e| file_error(path, format!("schema: {e}")))?,
                _ => {
                    Schema::from_cedarschema_str(&schema_text)
                        .map_err(|e| file_error(path, format!("schema: {e}")))?
                        .0
                }
            }
        }
    };
    let entities = Entities::from_json_str(&read(path, &test.entities)?, Some(&schema))
        .map_err(|e| file_error(path, format!("entities: {e}")))?;

    let mut report = FileReport::default();
    let validated = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
    report.checks += 1;
    if validated.validation_passed() != test.should_validate {
        let problems: Vec<String> = validated
            .validation_errors()
            .map(|e| e.to_string())
            .collect();
        report.mismatches.push(Mismatch {
            test: "(validation)".into(),
            what: "shouldValidate".into(),
            expected: test.should_validate.to_string(),
            got: if problems.is_empty() {
                "validates".into()
            } else {
                format!("does not validate: {}", problems.join("; "))
            },
        });
    }

    let authorizer = Authorizer::new();
    for (i, r) in test.requests.iter().enumerate() {
        report.checks += 1;
        let name = if r.description.is_empty() {
            format!("request {i}")
        } else {
            r.description.clone()
        };
        let mismatch = |what: &str, expected: String, got: String| Mismatch {
            test: name.clone(),
            what: what.into(),
            expected,
            got,
        };
        let outcome = evaluate(&authorizer, &policies, &entities, &schema, r);
        let response = match outcome {
            Ok(response) => response,
            Err(problem) => {
                report
                    .mismatches
                    .push(mismatch("request", "a valid request".into(), problem));
                continue;
            }
        };
        let decision = match response.decision() {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        };
        if decision != r.decision.to_ascii_lowercase() {
            report
                .mismatches
                .push(mismatch("decision", r.decision.clone(), decision.into()));
        }
        let reasons: BTreeSet<String> = response
            .diagnostics()
            .reason()
            .map(|id| id.to_string())
            .collect();
        let want: BTreeSet<String> = r.reason.iter().cloned().collect();
        if reasons != want {
            report.mismatches.push(mismatch(
                "reason",
                format!("{want:?}"),
                format!("{reasons:?}"),
            ));
        }
        let errors: BTreeSet<String> = response
            .diagnostics()
            .errors()
            .map(|e| match e {
                cedar_policy::AuthorizationError::PolicyEvaluationError(e) => {
                    e.policy_id().to_string()
                }
            })
            .collect();
        let want: BTreeSet<String> = r.errors.iter().cloned().collect();
        if errors != want {
            report.mismatches.push(mismatch(
                "errors",
                format!("{want:?}"),
                format!("{errors:?}"),
            ));
        }
    }
    Ok(report)
}

fn evaluate(
    authorizer: &Authorizer,
    policies: &PolicySet,
    entities: &Entities,
    schema: &Schema,
    r: &TestRequest,
) -> Result<cedar_policy::Response, String> {
    let uid =
        |v: &Value, what: &str| EntityUid::from_json(v.clone()).map_err(|e| format!("{what}: {e}"));
    let (principal, action, resource) = (
        uid(&r.principal, "principal")?,
        uid(&r.action, "action")?,
        uid(&r.resource, "resource")?,
    );
    // The same mapping as decisions: floats as decimals, nulls absent (`policy::json`).
    let context_json = if r.context.is_null() {
        Value::Object(Default::default())
    } else {
        super::json::to_cedar_json(&r.context)
    };
    let context = Context::from_json_value(context_json, Some((schema, &action)))
        .map_err(|e| format!("context: {e}"))?;
    let validate = r.validate_request.unwrap_or(true);
    let request = Request::new(
        principal,
        action,
        resource,
        context,
        validate.then_some(schema),
    )
    .map_err(|e| format!("request: {e}"))?;
    Ok(authorizer.is_authorized(&request, policies, entities))
}

/// Expands folders into the test files below them (sorted); files are kept as given.
pub fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>, TestError> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found).map_err(|e| file_error(path, e))?;
            found.sort();
            out.extend(found.into_iter().filter(|p| is_test_file(p)));
        } else if path.exists() {
            out.push(path.clone());
        } else {
            return Err(file_error(path, "no such file or folder"));
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}
