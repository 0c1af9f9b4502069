//! `reins policy test` on our own pack's tests and on the Cedar team's conformance suites.

use std::path::{Path, PathBuf};

use crate::cli::{reins, run, text};
use crate::harness::{copy_dir, repo};

/// The Cedar suites, vendored with their licences (tests/conformance/README.md). Missing data is
/// a failure, not a skip: a test that cannot run must not pass.
fn conformance() -> PathBuf {
    let dir = repo().join("tests/conformance");
    for suite in ["cedar", "cedar-corpus"] {
        assert!(
            dir.join(suite).join("LICENSE").is_file(),
            "{} is missing: the Cedar conformance data must be vendored there",
            dir.join(suite).display()
        );
    }
    dir
}

fn policy_test(paths: &[&Path]) -> (bool, String) {
    let mut args = vec!["policy".to_string(), "test".to_string()];
    args.extend(paths.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&mut reins(&args));
    (out.status.success(), text(&out.stdout) + &text(&out.stderr))
}

#[test]
fn the_default_pack_passes_its_own_tests() {
    let (ok, out) = policy_test(&[&repo().join("policies/tests")]);
    assert!(ok, "{out}");
    assert!(out.contains("1 passed, 0 failed"), "{out}");
}

#[test]
fn cedars_own_integration_tests_and_corpus_pass() {
    let dir = conformance();
    let (ok, out) = policy_test(&[&dir.join("cedar"), &dir.join("cedar-corpus")]);
    assert!(ok, "{out}");
    assert!(out.contains("324 passed, 0 failed"), "{out}");
}

/// A change to a test file's JSON.
type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;

/// Edits one test file's JSON in a copy of a suite.
fn alter(file: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut test: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    edit(&mut test);
    std::fs::write(file, serde_json::to_string_pretty(&test).unwrap()).unwrap();
}

#[test]
fn an_altered_expectation_fails_and_is_named() {
    let dir = conformance();
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&dir.join("cedar"), copy.path());
    let cases: [(&str, &str, Edit); 4] = [
        (
            "tests/example_use_cases/1a.json",
            "decision",
            Box::new(|t| t["requests"][0]["decision"] = "deny".into()),
        ),
        (
            "tests/example_use_cases/2b.json",
            "reason",
            Box::new(|t| t["requests"][0]["reason"] = serde_json::json!(["policy9"])),
        ),
        (
            "tests/ip/1.json",
            "errors",
            Box::new(|t| t["requests"][0]["errors"] = serde_json::json!(["policy0"])),
        ),
        (
            "tests/decimal/1.json",
            "shouldValidate",
            Box::new(|t| t["shouldValidate"] = false.into()),
        ),
    ];
    for (file, what, edit) in cases {
        let suite = tempfile::tempdir().unwrap();
        copy_dir(copy.path(), suite.path());
        alter(&suite.path().join(file), edit);
        let (ok, out) = policy_test(&[suite.path()]);
        assert!(!ok, "altering {what} in {file} must fail: {out}");
        assert!(
            out.contains(&format!("FAIL {}", suite.path().join(file).display())),
            "{out}"
        );
        assert!(out.contains(&format!(": {what}: expected")), "{out}");
        assert!(out.contains("23 passed, 1 failed"), "{out}");
    }
    let (ok, out) = policy_test(&[Path::new("/nonexistent/suite")]);
    assert!(!ok && out.contains("no such file"), "{out}");
}
