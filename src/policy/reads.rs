//! Which parts of `context.usage` and `context.session` a pack's policies read, found once when
//! the pack is built, so a decision shows Cedar only those.
//!
//! Why: Cedar takes a context as restricted expressions and evaluates each into a value, record
//! by record; the usage records were the largest part of the guardrails' cost per decision (about
//! 18,000 instructions of 46,000 with the default pack's rate limit, under callgrind). A policy
//! cannot tell a part it never reads from one that is absent, so leaving those out changes no
//! answer.
//!
//! The analysis is conservative. It walks each policy's JSON form (Cedar's EST) for attribute
//! chains rooted at `context`: `context.usage.agent.calls_1m` reads that leaf,
//! `context.usage.agent == {..}` the whole `agent` record, `context.usage has spend` only
//! whether `spend` is there. Any other use of `context` itself (compared, passed whole) or a
//! policy whose JSON form cannot be made reads everything. Only the keys Reins fills in are
//! pruned; the caller's context is always shown whole.
use std::collections::BTreeMap;

use serde_json::Value;

/// What is read below one attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reads {
    /// The whole value.
    All,
    /// These attributes (with what is read below each); an empty map reads only whether the
    /// value is present.
    Some(BTreeMap<String, Reads>),
}

impl Default for Reads {
    /// Nothing read.
    fn default() -> Self {
        Reads::Some(BTreeMap::new())
    }
}

impl Reads {
    /// What is read below attribute `name`, or None when it is never read (not even tested with
    /// `has`).
    pub fn of(&self, name: &str) -> Option<&Reads> {
        match self {
            Reads::All => Some(&Reads::All),
            Reads::Some(attrs) => attrs.get(name),
        }
    }

    /// Whether `name` is read or tested.
    pub fn wants(&self, name: &str) -> bool {
        self.of(name).is_some()
    }

    /// What the policies read of the context, from their JSON forms (`Policy::to_json`); `None`
    /// for a policy that has none reads everything.
    pub fn of_policies(policies: impl IntoIterator<Item = Option<Value>>) -> Self {
        let mut reads = Reads::default();
        for policy in policies {
            match policy {
                Some(json) => walk(&json, &mut reads),
                None => reads = Reads::All,
            }
        }
        reads
    }

    /// What either reads (a shadow pack sees the context built for the active one).
    pub fn union(&self, other: &Reads) -> Reads {
        match (self, other) {
            (Reads::All, _) | (_, Reads::All) => Reads::All,
            (Reads::Some(a), Reads::Some(b)) => {
                let mut merged = a.clone();
                for (name, below) in b {
                    let joined = match merged.get(name) {
                        Some(mine) => mine.union(below),
                        None => below.clone(),
                    };
                    merged.insert(name.clone(), joined);
                }
                Reads::Some(merged)
            }
        }
    }

    /// Records a read of `path` below this node: of its whole value, or (`presence`) of whether
    /// its last attribute is there.
    fn add(&mut self, path: &[String], presence: bool) {
        let Some((first, rest)) = path.split_first() else {
            if !presence {
                *self = Reads::All;
            }
            return;
        };
        match self {
            Reads::All => {}
            Reads::Some(attrs) => attrs.entry(first.clone()).or_default().add(rest, presence),
        }
    }
}

/// The attribute chain `e` is, when it is `context` followed by attribute accesses.
fn context_path(e: &Value) -> Option<Vec<String>> {
    let object = e.as_object()?;
    if object.len() != 1 {
        return None;
    }
    if object.get("Var").and_then(Value::as_str) == Some("context") {
        return Some(Vec::new());
    }
    let access = object.get(".")?;
    let mut path = context_path(access.get("left")?)?;
    path.push(access.get("attr")?.as_str()?.to_owned());
    Some(path)
}

/// The attributes a `has` tests: one (`e has a`), or a chain (`e has a.b`, which tests each in
/// turn).
fn has_attrs(attr: &Value) -> Option<Vec<String>> {
    match attr {
        Value::String(one) => Some(vec![one.clone()]),
        Value::Array(chain) => chain
            .iter()
            .map(|a| a.as_str().map(str::to_owned))
            .collect(),
        _ => None,
    }
}

fn walk(e: &Value, reads: &mut Reads) {
    if let Some(path) = context_path(e) {
        reads.add(&path, false);
        return;
    }
    match e {
        Value::Object(object) => {
            if let Some(has) = object.get("has")
                && object.len() == 1
                && let (Some(mut path), Some(attrs)) = (
                    has.get("left").and_then(context_path),
                    has.get("attr").and_then(has_attrs),
                )
            {
                path.extend(attrs);
                reads.add(&path, true);
                return;
            }
            for value in object.values() {
                walk(value, reads);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| walk(item, reads)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn reads(texts: &[&str]) -> Reads {
        let jsons: Vec<Value> = texts
            .iter()
            .map(|t| {
                cedar_policy::Policy::from_str(t)
                    .unwrap()
                    .to_json()
                    .unwrap()
            })
            .collect();
        Reads::of_policies(jsons.into_iter().map(Some))
    }

    fn leaf(path: &[&str]) -> Reads {
        let mut r = Reads::default();
        r.add(
            &path.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            false,
        );
        r
    }

    #[test]
    fn a_chain_reads_its_leaf_and_has_reads_presence() {
        let r = reads(&[
            r#"forbid (principal, action, resource) when { context has usage && context.usage.agent.calls_1m >= 600 };"#,
        ]);
        let usage = r.of("usage").unwrap();
        assert_eq!(usage.of("agent").unwrap(), &leaf(&["calls_1m"]));
        assert!(!usage.wants("agent_tool") && !usage.wants("user"));
        assert!(!r.wants("session"));
        // `has` on a chain (`has usage.spend.user`) tests each step's presence only.
        let r = reads(&[
            r#"forbid (principal, action, resource) when { context has usage.spend.user };"#,
        ]);
        let spend = r.of("usage").and_then(|u| u.of("spend")).unwrap();
        assert_eq!(spend.of("user"), Some(&Reads::default()));
    }

    #[test]
    fn a_value_used_whole_is_read_whole() {
        let r = reads(&[
            r#"forbid (principal, action, resource) when { context.usage.agent == {"calls_1m": 1, "calls_1h": 1, "calls_24h": 1} };"#,
        ]);
        assert_eq!(r.of("usage").and_then(|u| u.of("agent")), Some(&Reads::All));
        assert!(!r.of("usage").unwrap().wants("agent_tool"));
        for whole in [
            r#"permit (principal, action, resource) when { context == {} };"#,
            r#"permit (principal, action, resource) when { context.usage == context.usage };"#,
        ] {
            let r = reads(&[whole]);
            assert!(
                r == Reads::All || r.of("usage") == Some(&Reads::All),
                "{whole}: {r:?}"
            );
        }
        assert_eq!(
            reads(&[r#"permit (principal, action, resource) when { context == {} };"#]),
            Reads::All
        );
        // A policy without a JSON form reads everything.
        assert_eq!(Reads::of_policies([None]), Reads::All);
    }

    #[test]
    fn policies_and_shadows_add_up() {
        let a = reads(&[
            r#"forbid (principal, action, resource) when { context.session.steps >= 200 };"#,
        ]);
        let b = reads(&[
            r#"forbid (principal, action, resource) when { context.session.identical_calls >= 4 };"#,
        ]);
        let both = a.union(&b);
        let session = both.of("session").unwrap();
        assert!(session.wants("steps") && session.wants("identical_calls"));
        assert!(!session.wants("tool_calls"));
        assert_eq!(a.union(&Reads::All), Reads::All);
    }

    /// The default pack reads one leaf per guardrail, and nothing else of `usage` or `session`.
    #[test]
    fn the_default_pack_reads_its_guardrails_leaves() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let pack = crate::policy::PolicyPack::load(
            &root.join("policies"),
            &root.join("schemas/reins.cedarschema"),
        )
        .unwrap();
        let usage = pack.reads().of("usage").unwrap();
        assert_eq!(usage.of("agent"), Some(&leaf(&["calls_1m"])));
        assert!(!usage.wants("agent_tool") && !usage.wants("user"));
        let spend = usage.of("spend").unwrap();
        assert_eq!(spend.of("user"), Some(&leaf(&["after_24h"])));
        assert_eq!(spend.of("agent"), Some(&leaf(&["after_24h"])));
        let session = pack.reads().of("session").unwrap();
        assert!(session.wants("steps") && session.wants("identical_calls"));
        assert!(!session.wants("tool_calls"));
    }
}
