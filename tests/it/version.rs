//! `pushgate --version` names the version, the git commit, the policy contract and
//! the wasmtime version, each checked against its source.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::pushgate;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `git rev-parse --short HEAD` in the checkout, or "unknown" as build.rs says.
fn commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root())
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// wasmtime's version in Cargo.lock.
fn wasmtime_version() -> String {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).unwrap();
    let lock: toml::Value = toml::from_str(&lock).unwrap();
    let versions: Vec<&str> = lock["package"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"].as_str() == Some("wasmtime"))
        .map(|p| p["version"].as_str().unwrap())
        .collect();
    assert_eq!(
        versions.len(),
        1,
        "one wasmtime in Cargo.lock: {versions:?}"
    );
    versions[0].to_string()
}

#[test]
fn version_names_the_version_commit_contract_and_wasmtime() {
    let out = pushgate()
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        format!("pushgate {}", env!("CARGO_PKG_VERSION")),
        format!("(commit {})", commit()),
        format!(
            "policy contracts: {}",
            pushgate::policy::CONTRACTS.join(", ")
        ),
        format!("wasmtime: {}", wasmtime_version()),
    ] {
        assert!(text.contains(&needle), "{needle:?} in {text:?}");
    }

    // -V, the short form: version and commit on one line
    let out = pushgate().arg("-V").stdin(Stdio::null()).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.trim(),
        format!(
            "pushgate {} (commit {})",
            env!("CARGO_PKG_VERSION"),
            commit()
        )
    );
}
