//! The last resort of issue 27: a run that panics (a bug) is still recorded as
//! every other end is: `pushgate: error:` on stderr, the JSON failure object
//! on stdout with `--json`, an `error` line in the decision log with
//! `--decision-log`, and a non-zero exit (101, Rust's status for a panic).
//!
//! No input is known to make pushgate panic any more (the token lifetime of
//! u64::MAX that once did is tested in hostile_registry.rs), so the panic is
//! made on purpose: `PUSHGATE_DEBUG_PANIC`, honoured by debug builds only (the
//! binary under test is one), panics on a runtime worker as a bug deep in a
//! run would.

use std::path::Path;

use crate::support;
use crate::support::run::Run;
use serde_json::Value;

/// The decision log's lines.
fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Asserts what every panicked run leaves: exit 101, the message on stderr
/// and, as the JSON object of `command`, on stdout.
fn panicked(run: &Run, command: &str) {
    assert_eq!(run.code, 101, "{}", run.context());
    assert!(
        run.stderr
            .contains("pushgate: error: pushgate panicked at src/bin/pushgate/panic.rs"),
        "{}",
        run.context()
    );
    let v: Value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {}", run.context()));
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["outcome"], "failed", "{v}");
    assert_eq!(v["command"], command, "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains("PUSHGATE_DEBUG_PANIC: on purpose") && error.contains("a bug in pushgate"),
        "{v}"
    );
}

#[test]
fn a_push_that_panics_still_writes_its_json_object_and_its_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let run = Run::of(
        support::pushgate()
            .env("PUSHGATE_DEBUG_PANIC", "on purpose")
            .args(["push", "--repo", "127.0.0.1:9/fcos", "--tag", "stable"])
            .args(["--tag", "next", "--image", "oci:/nonexistent", "--dry-run"])
            .args(["--json", "--decision-log"])
            .arg(&log),
    );
    panicked(&run, "push");
    assert_eq!(run.json["repo"], "127.0.0.1:9/fcos");
    let lines = log_lines(&log);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["outcome"], "error", "{line}");
    assert_eq!(line["container"], "127.0.0.1:9/fcos", "{line}");
    assert_eq!(line["repo"], "127.0.0.1:9/fcos", "{line}");
    assert_eq!(
        line["tags"],
        serde_json::json!(["stable", "next"]),
        "{line}"
    );
    assert_eq!(line["dry_run"], true, "{line}");
    assert_eq!(line["policy"], "host", "{line}");
    assert!(
        line["error"]
            .as_str()
            .is_some_and(|e| e.contains("PUSHGATE_DEBUG_PANIC: on purpose")),
        "{line}"
    );
}

#[test]
fn a_push_that_panics_without_json_or_a_log_still_says_so_and_fails() {
    let run = Run::of(
        support::pushgate()
            .env("PUSHGATE_DEBUG_PANIC", "on purpose")
            .args(["push", "--repo", "127.0.0.1:9/fcos", "--tag", "stable"])
            .args(["--image", "oci:/nonexistent"]),
    );
    assert_eq!(run.code, 101, "{}", run.context());
    assert!(run.stdout.is_empty(), "{}", run.context());
    assert!(
        run.stderr.contains("pushgate: error: pushgate panicked"),
        "{}",
        run.context()
    );
}

#[test]
fn a_release_that_panics_logs_one_line_for_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("release.toml");
    std::fs::write(
        &config,
        "workdir = \".\"\n[[container]]\nname = \"oscontainer\"\nartifact = \"ostree\"\n\
         key = \"base-oscontainer\"\nrepo = \"127.0.0.1:9/fcos\"\ntags = [\"stable\"]\n",
    )
    .unwrap();
    let log = dir.path().join("decisions.jsonl");
    let run = Run::of(
        support::pushgate()
            .env("PUSHGATE_DEBUG_PANIC", "on purpose")
            .arg("release")
            .arg("--config")
            .arg(&config)
            .args(["--json", "--decision-log"])
            .arg(&log),
    );
    panicked(&run, "release");
    let lines = log_lines(&log);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["outcome"], "error", "{:?}", lines[0]);
    assert_eq!(lines[0]["container"], "release", "{:?}", lines[0]);
    assert_eq!(
        lines[0]["repo"],
        config.display().to_string(),
        "{:?}",
        lines[0]
    );
}
