//! The Cedar schema and the active policy pack: load, validate, digest, evaluate.
//!
//! A pack is a folder of `*.cedar` files checked in strict mode against one schema. Policy ids come
//! from an `@id("...")` annotation, or `<file stem>.<n>` when absent, so that the ids in decision
//! reasons are stable across edits elsewhere in the pack. Every problem is reported as
//! `file:line:column: message`. The pack's digest (SHA-256 over file names and texts) names the
//! exact policy version behind every decision.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub mod control;
pub mod json;
pub mod limits;
pub mod reads;
pub mod shadow;
pub mod store;
pub mod testing;

use cedar_policy::{
    Authorizer, Entities, EntityTypeName, EntityUid, PolicyId, PolicySet, Request, Response,
    Schema, ValidationMode, Validator,
};
use sha2::{Digest, Sha256};

/// One problem in a policy or schema file, located.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid policy pack:\n{}", render(.0))]
    Invalid(Vec<Diagnostic>),
}

fn render(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| format!("  {d}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `sha256:<hex>` of a pack's policy texts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct PolicyDigest(String);

impl PolicyDigest {
    /// The digest of `(file name, text)` pairs in load order; what an audit pack verifier recomputes.
    pub fn of_files(files: &[(String, String)]) -> Self {
        let mut hasher = Sha256::new();
        // Length-prefixed so that moving text between files changes the digest.
        for (name, text) in files {
            hasher.update((name.len() as u64).to_be_bytes());
            hasher.update(name.as_bytes());
            hasher.update((text.len() as u64).to_be_bytes());
            hasher.update(text.as_bytes());
        }
        Self(format!("sha256:{}", hex::encode(hasher.finalize())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PolicyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated schema and policy set, ready to evaluate.
pub struct PolicyPack {
    schema: Schema,
    policies: PolicySet,
    digest: PolicyDigest,
    /// `(file name, text)` as loaded: kept so that the ledger's digest can always be shown as text.
    sources: Vec<(String, String)>,
    schema_text: String,
    authorizer: Authorizer,
    /// What the policies read of `context.usage` and `context.session` ([`reads`]).
    reads: reads::Reads,
}

impl PolicyPack {
    /// Loads `schema_file` and every `*.cedar` file directly in `policy_dir` (sorted by name).
    pub fn load(policy_dir: &Path, schema_file: &Path) -> Result<Self, PolicyError> {
        let schema_text = read(schema_file)?;
        let files = read_pack_files(policy_dir)?;
        Self::from_sources(&schema_file.display().to_string(), &schema_text, files).map_err(|e| {
            match e {
                PolicyError::Invalid(diagnostics) => PolicyError::Invalid(
                    diagnostics
                        .into_iter()
                        .map(|d| match d.file.ends_with(".cedar") {
                            true => Diagnostic {
                                file: policy_dir.join(&d.file).display().to_string(),
                                ..d
                            },
                            false => d,
                        })
                        .collect(),
                ),
                other => other,
            }
        })
    }

    /// Builds a pack from texts: `files` are `(file name, policy text)`. Each text must pass
    /// [`limits::check_nesting`]; parsing and validation run on [`limits::on_parser_stack`].
    pub fn from_sources(
        schema_name: &str,
        schema_text: &str,
        files: Vec<(String, String)>,
    ) -> Result<Self, PolicyError> {
        limits::check_nesting(schema_name, schema_text)
            .map_err(|d| PolicyError::Invalid(vec![d]))?;
        let too_deep: Vec<Diagnostic> = files
            .iter()
            .filter_map(|(name, text)| limits::check_nesting(name, text).err())
            .collect();
        if !too_deep.is_empty() {
            return Err(PolicyError::Invalid(too_deep));
        }
        limits::on_parser_stack(|| Self::build(schema_name, schema_text, files)).map_err(
            |source| PolicyError::Io {
                path: schema_name.into(),
                source,
            },
        )?
    }

    fn build(
        schema_name: &str,
        schema_text: &str,
        files: Vec<(String, String)>,
    ) -> Result<Self, PolicyError> {
        let (schema, warnings) = Schema::from_cedarschema_str(schema_text)
            .map_err(|e| PolicyError::Invalid(diagnostics_of(&e, schema_name, schema_text)))?;
        for warning in warnings {
            tracing::warn!(file = schema_name, "{warning}");
        }

        let (policies, origin, mut problems) = parse_files(&files);
        if problems.is_empty() {
            let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
            for error in result.validation_errors() {
                let (name, text) = origin
                    .get(error.policy_id())
                    .and_then(|i| files.get(*i))
                    .map_or(("(pack)", ""), |(n, t)| (n.as_str(), t.as_str()));
                problems.extend(diagnostics_of(error, name, text));
            }
            for warning in result.validation_warnings() {
                tracing::warn!("policy {}: {warning}", warning.policy_id());
            }
            problems.extend(annotation_problems(&policies, &origin, &files));
        }
        if !problems.is_empty() {
            return Err(PolicyError::Invalid(problems));
        }
        let digest = PolicyDigest::of_files(&files);
        let reads = reads::Reads::of_policies(
            policies
                .policies()
                .map(|p| p.to_json().ok())
                .chain(policies.templates().map(|t| t.to_json().ok())),
        );
        Ok(Self {
            reads,
            schema,
            policies,
            digest,
            sources: files,
            schema_text: schema_text.to_owned(),
            authorizer: Authorizer::new(),
        })
    }

    pub fn digest(&self) -> &PolicyDigest {
        &self.digest
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    pub fn files(&self) -> Vec<String> {
        self.sources.iter().map(|(name, _)| name.clone()).collect()
    }

    /// `(file name, text)` of every policy file, in load order.
    pub fn sources(&self) -> &[(String, String)] {
        &self.sources
    }

    pub fn schema_text(&self) -> &str {
        &self.schema_text
    }

    /// What the policies read of the context Reins fills in (`usage`, `session`).
    pub fn reads(&self) -> &reads::Reads {
        &self.reads
    }

    pub fn policy_count(&self) -> usize {
        self.policies.policies().count()
    }

    /// Annotations of a policy, for decision reasons.
    pub fn annotations(&self, id: &PolicyId) -> impl Iterator<Item = (&str, &str)> {
        self.policies
            .policy(id)
            .into_iter()
            .flat_map(|p| p.annotations())
    }

    /// Cedar's answer for one request.
    pub fn is_authorized(&self, request: &Request, entities: &Entities) -> Response {
        self.authorizer
            .is_authorized(request, &self.policies, entities)
    }

    /// The policy set itself, for callers that evaluate outside Reins' pipeline (benchmarks).
    pub fn policy_set(&self) -> &PolicySet {
        &self.policies
    }

    /// The schema's action ids, sorted.
    pub fn action_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .schema
            .actions()
            .map(|a| a.id().unescaped().to_owned())
            .collect();
        names.sort();
        names
    }

    /// The principal types `action` applies to.
    pub fn principal_types(&self, action: &EntityUid) -> Vec<String> {
        self.schema
            .principals_for_action(action)
            .into_iter()
            .flatten()
            .map(|t| t.to_string())
            .collect()
    }

    /// Checks that `action` exists and may be requested by `principal_type` on `resource_type`.
    pub fn check_request_types(
        &self,
        principal_type: &EntityTypeName,
        action: &EntityUid,
        resource_type: &EntityTypeName,
    ) -> Result<(), RequestTypeError> {
        let actions = || {
            self.schema
                .actions()
                .map(|a| a.id().unescaped().to_owned())
                .collect::<Vec<_>>()
        };
        let Some(mut principals) = self.schema.principals_for_action(action) else {
            return Err(RequestTypeError::UnknownAction {
                action: action.id().unescaped().into(),
                known: actions(),
            });
        };
        if !principals.any(|p| p == principal_type) {
            return Err(RequestTypeError::NotForPrincipal {
                action: action.id().unescaped().into(),
                principal: principal_type.to_string(),
            });
        }
        if !self.schema.entity_types().any(|t| t == resource_type) {
            return Err(RequestTypeError::UnknownResourceType(
                resource_type.to_string(),
            ));
        }
        let mut applies = self
            .schema
            .resources_for_action(action)
            .into_iter()
            .flatten();
        if !applies.any(|t| t == resource_type) {
            // Only the error path allocates: this check runs on every decision.
            let applies = self
                .schema
                .resources_for_action(action)
                .into_iter()
                .flatten()
                .map(|t| t.to_string())
                .collect();
            return Err(RequestTypeError::NotForResource {
                action: action.id().unescaped().into(),
                resource: resource_type.to_string(),
                applies,
            });
        }
        Ok(())
    }
}

/// The policies of every `*.cedar` file directly in `dir`, with Reins' ids (`@id`, else
/// `<file stem>.<n>`), unvalidated: for tests that name a pack folder.
pub fn policy_set_from_dir(dir: &Path) -> Result<PolicySet, PolicyError> {
    let (policies, _, problems) = parse_files(&read_pack_files(dir)?);
    if problems.is_empty() {
        Ok(policies)
    } else {
        Err(PolicyError::Invalid(problems))
    }
}

/// `(file name, text)` of every `*.cedar` file directly in `dir`, sorted by name.
pub fn read_pack_files(dir: &Path) -> Result<Vec<(String, String)>, PolicyError> {
    let io = |source| PolicyError::Io {
        path: dir.into(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "cedar") {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            files.push((name, read(&path)?));
        }
    }
    files.sort();
    Ok(files)
}

/// Parses every file with Reins' ids into one set; returns which file each policy came from
/// (index into `files`) and every problem found.
/// One policy of a recorded pack, as an explanation quotes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct DescribedPolicy {
    /// `permit` or `forbid`.
    pub effect: &'static str,
    /// The policy's `@description`, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The file it is in.
    pub file: String,
    /// The policy's Cedar text.
    pub text: String,
}

/// The policies of a pack's texts by id (the ids decisions record), without validating them:
/// they were validated when the pack was loaded. Texts that no longer parse give no entries.
pub fn describe(files: &[(String, String)]) -> BTreeMap<String, DescribedPolicy> {
    let too_deep = files
        .iter()
        .any(|(name, text)| limits::check_nesting(name, text).is_err());
    if too_deep {
        return BTreeMap::new();
    }
    let parsed = limits::on_parser_stack(|| parse_files(files));
    let Ok((policies, origin, _)) = parsed else {
        return BTreeMap::new();
    };
    policies
        .policies()
        .map(|p| {
            let described = DescribedPolicy {
                effect: match p.effect() {
                    cedar_policy::Effect::Permit => "permit",
                    cedar_policy::Effect::Forbid => "forbid",
                },
                description: p.annotation("description").map(str::to_owned),
                file: origin
                    .get(p.id())
                    .and_then(|i| files.get(*i))
                    .map(|(name, _)| name.clone())
                    .unwrap_or_default(),
                text: p.to_string(),
            };
            (p.id().to_string(), described)
        })
        .collect()
}

/// `@reason` must name a code a policy may give, and `@retry` a windowed usage counter: a typo
/// would otherwise turn a rate limit's deny into a plain `policy` one, or drop its `retry_after`.
fn annotation_problems(
    policies: &PolicySet,
    origin: &HashMap<PolicyId, usize>,
    files: &[(String, String)],
) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    for policy in policies.policies() {
        let file = origin
            .get(policy.id())
            .and_then(|i| files.get(*i))
            .map_or("(pack)", |(n, _)| n.as_str());
        let problem = |message: String| Diagnostic {
            file: file.to_owned(),
            line: 1,
            column: 1,
            message: format!("policy {}: {message}", policy.id()),
        };
        if let Some(reason) = policy.annotation("reason")
            && !crate::model::ReasonCode::FROM_POLICY
                .iter()
                .any(|c| c.as_str() == reason)
        {
            let allowed: Vec<&str> = crate::model::ReasonCode::FROM_POLICY
                .iter()
                .map(|c| c.as_str())
                .collect();
            problems.push(problem(format!(
                "@reason(\"{reason}\") is not one of {allowed:?}"
            )));
        }
        if let Some(counter) = policy.annotation("retry")
            && !crate::usage::Seen::counters().any(|c| c == counter)
        {
            problems.push(problem(format!(
                "@retry(\"{counter}\") names no windowed usage counter (e.g. `agent.calls_1m`, `spend.user.after_24h`)"
            )));
        }
    }
    problems
}

fn parse_files(
    files: &[(String, String)],
) -> (PolicySet, HashMap<PolicyId, usize>, Vec<Diagnostic>) {
    let mut problems = Vec::new();
    let mut policies = PolicySet::new();
    let mut origin = HashMap::new();
    for (index, (name, text)) in files.iter().enumerate() {
        match parse_file(name, text) {
            Ok(parsed) => {
                for policy in parsed {
                    let id = policy.id().clone();
                    match policies.add(policy) {
                        Ok(()) => {
                            origin.insert(id, index);
                        }
                        Err(e) => problems.push(Diagnostic {
                            file: name.clone(),
                            line: 1,
                            column: 1,
                            message: e.to_string(),
                        }),
                    }
                }
            }
            Err(mut diagnostics) => problems.append(&mut diagnostics),
        }
    }
    (policies, origin, problems)
}

/// A request that the schema cannot make sense of.
#[derive(Debug, thiserror::Error)]
pub enum RequestTypeError {
    #[error("unknown action `{action}`; the schema defines {known:?}")]
    UnknownAction { action: String, known: Vec<String> },
    #[error("action `{action}` cannot be requested by a {principal}")]
    NotForPrincipal { action: String, principal: String },
    #[error("unknown resource type `{0}`")]
    UnknownResourceType(String),
    #[error(
        "action `{action}` does not apply to resource type `{resource}`; it applies to {applies:?}"
    )]
    NotForResource {
        action: String,
        resource: String,
        applies: Vec<String>,
    },
}

fn read(path: &Path) -> Result<String, PolicyError> {
    std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
        path: path.into(),
        source,
    })
}

/// Parses one file and gives each policy its stable id.
fn parse_file(name: &str, text: &str) -> Result<Vec<cedar_policy::Policy>, Vec<Diagnostic>> {
    limits::check_nesting(name, text).map_err(|d| vec![d])?;
    let parsed = PolicySet::from_str(text).map_err(|e| diagnostics_of(&e, name, text))?;
    let mut problems = Vec::new();
    if parsed.templates().next().is_some() {
        problems.push(Diagnostic {
            file: name.into(),
            line: 1,
            column: 1,
            message: "policy templates are not supported in a policy pack".into(),
        });
    }
    // Cedar numbers a file's policies policy0, policy1, ... in source order.
    let mut policies: Vec<_> = parsed.policies().cloned().collect();
    policies.sort_by_key(|p| {
        p.id()
            .to_string()
            .trim_start_matches("policy")
            .parse::<usize>()
            .unwrap_or(usize::MAX)
    });
    let stem = name.trim_end_matches(".cedar");
    let renamed = policies
        .iter()
        .enumerate()
        .map(|(n, p)| {
            let id = p
                .annotation("id")
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{stem}.{n}"));
            p.new_id(PolicyId::new(id))
        })
        .collect();
    if problems.is_empty() {
        Ok(renamed)
    } else {
        Err(problems)
    }
}

/// Turns any Cedar error into located diagnostics, using its labelled source spans.
fn diagnostics_of(error: &dyn miette::Diagnostic, file: &str, text: &str) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut push_one = |d: &dyn miette::Diagnostic| {
        let mut message = d.to_string();
        if let Some(help) = d.help() {
            message.push_str(&format!(" (help: {help})"));
        }
        let offset = d
            .labels()
            .and_then(|mut l| l.next())
            .map(|l| l.offset())
            .unwrap_or(0);
        let (line, column) = line_column(text, offset);
        out.push(Diagnostic {
            file: file.into(),
            line,
            column,
            message,
        });
    };
    match error.related() {
        Some(related) => {
            let related: Vec<_> = related.collect();
            if related.is_empty() {
                push_one(error);
            }
            for d in related {
                push_one(d);
            }
        }
        None => push_one(error),
    }
    out
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..text.floor_char_boundary(offset.min(text.len()))];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str =
        "entity User; entity Doc; action read appliesTo { principal: [User], resource: [Doc] };";

    fn pack(files: &[(&str, &str)]) -> Result<PolicyPack, PolicyError> {
        PolicyPack::from_sources(
            "s.cedarschema",
            SCHEMA,
            files
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    }

    #[test]
    fn ids_come_from_annotations_or_file_and_position() {
        let p = pack(&[("a.cedar", "@id(\"reader\") permit(principal, action, resource);\npermit(principal, action == Action::\"read\", resource);")]).unwrap();
        let ids: Vec<String> = p
            .policy_set()
            .policies()
            .map(|p| p.id().to_string())
            .collect();
        assert!(
            ids.contains(&"reader".to_string()) && ids.contains(&"a.1".to_string()),
            "{ids:?}"
        );
    }

    #[test]
    fn parse_errors_are_located() {
        let Err(PolicyError::Invalid(d)) = pack(&[
            ("ok.cedar", "permit(principal, action, resource);"),
            (
                "bad.cedar",
                "permit(principal, action, resource);\n\npermit(principal, action resource);",
            ),
        ]) else {
            panic!("expected a parse error")
        };
        assert_eq!(d[0].file, "bad.cedar");
        assert_eq!(d[0].line, 3, "{d:?}");
    }

    #[test]
    fn validation_errors_are_located() {
        let Err(PolicyError::Invalid(d)) = pack(&[(
            "v.cedar",
            "permit(principal, action, resource)\n  when { resource.owner == principal };",
        )]) else {
            panic!("expected a validation error")
        };
        assert_eq!((d[0].file.as_str(), d[0].line), ("v.cedar", 2), "{d:?}");
        assert!(d[0].column > 1, "{d:?}");
    }

    #[test]
    fn duplicate_ids_are_refused() {
        assert!(
            pack(&[
                ("a.cedar", "@id(\"x\") permit(principal, action, resource);"),
                ("b.cedar", "@id(\"x\") forbid(principal, action, resource);")
            ])
            .is_err()
        );
    }

    #[test]
    fn digest_changes_with_any_text() {
        let a = pack(&[("a.cedar", "permit(principal, action, resource);")]).unwrap();
        let b = pack(&[("a.cedar", "permit(principal, action, resource); ")]).unwrap();
        let c = pack(&[("b.cedar", "permit(principal, action, resource);")]).unwrap();
        assert_ne!(a.digest(), b.digest());
        assert_ne!(a.digest(), c.digest());
        assert!(a.digest().as_str().starts_with("sha256:"));
    }
}
