//! The crate's modules form a DAG: no `crate::` path in one top-level module's code (outside its
//! tests) may lead back to it through others. ARCHITECTURE.md lists the layers; this test keeps
//! them honest, and prints the cycle it finds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module of every file under `src/`, and the top-level modules its code names.
fn edges() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut edges: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let top = rel
                .split('/')
                .next()
                .unwrap()
                .trim_end_matches(".rs")
                .to_owned();
            if top == "lib" || top == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // Unit tests may reach anywhere; so may comments.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for line in code.lines() {
                let line = line.trim_start();
                if line.starts_with("//") {
                    continue;
                }
                for (at, _) in line.match_indices("crate::") {
                    let rest = &line[at + "crate::".len()..];
                    let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                        group
                            .split(['}', ','])
                            .map(|s| s.trim().split("::").next().unwrap_or(""))
                            .collect()
                    } else {
                        vec![
                            rest.split(|c: char| !c.is_alphanumeric() && c != '_')
                                .next()
                                .unwrap_or(""),
                        ]
                    };
                    for name in names {
                        if !name.is_empty() && name != top {
                            edges
                                .entry(top.clone())
                                .or_default()
                                .entry(name.to_owned())
                                .or_default()
                                .insert(rel.clone());
                        }
                    }
                }
            }
        }
    }
    edges
}

/// A path from `from` back to `from`, if there is one.
fn cycle_through(
    from: &str,
    edges: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
) -> Option<Vec<String>> {
    let mut stack = vec![(from.to_owned(), vec![from.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for next in edges.get(&at).map(|m| m.keys()).into_iter().flatten() {
            if next == from {
                let mut cycle = path.clone();
                cycle.push(next.clone());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn top_level_modules_form_a_dag() {
    let edges = edges();
    assert!(
        edges.contains_key("decision"),
        "found no modules: {edges:?}"
    );
    let mut cycles = Vec::new();
    for module in edges.keys() {
        if let Some(cycle) = cycle_through(module, &edges) {
            let steps: Vec<String> = cycle
                .windows(2)
                .map(|w| format!("{} -> {} (in {:?})", w[0], w[1], edges[&w[0]][&w[1]]))
                .collect();
            cycles.push(format!(
                "{}:\n    {}",
                cycle.join(" -> "),
                steps.join("\n    ")
            ));
        }
    }
    assert!(
        cycles.is_empty(),
        "import cycles:\n  {}",
        cycles.join("\n  ")
    );
}
