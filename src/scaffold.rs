//! `pushgate policy new NAME`: a policy crate that builds and passes its case as
//! generated, with the contract copied in so the crate stands on its own.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The contract, as this pushgate speaks it.
pub const CONTRACT_WIT: &str = include_str!("../wit/policy.wit");

/// The crate (and module file) name for a policy name: `my-rules` → `my_rules_policy`.
pub fn crate_name(name: &str) -> String {
    format!("{}_policy", name.replace('-', "_"))
}

/// Checks a policy name (what `policy new` takes): lowercase letters, digits,
/// '-' and '_', starting with a letter.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!(
            "policy name {name:?}: use lowercase letters, digits, '-' and '_', starting with a letter"
        );
    }
    Ok(())
}

/// Creates `<dir>/<name>/` and returns its path. Refuses to touch an existing directory.
pub fn create(dir: &Path, name: &str) -> Result<PathBuf> {
    check_name(name)?;
    let root = dir.join(name);
    if root.exists() {
        bail!(
            "{} already exists; pick another name or --dir",
            root.display()
        );
    }
    let files = [
        ("Cargo.toml", cargo_toml(name)),
        (".gitignore", "/target\n".to_string()),
        ("wit/policy.wit", CONTRACT_WIT.to_string()),
        ("src/lib.rs", LIB_RS.replace("{name}", name)),
        ("cases/push-follows-the-host.json", CASE.to_string()),
        (
            "README.md",
            README
                .replace("{name}", name)
                .replace("{crate}", &crate_name(name)),
        ),
    ];
    for (rel, text) in files {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("a file in the crate"))
            .with_context(|| format!("cannot create {}", path.display()))?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(root)
}

fn cargo_toml(name: &str) -> String {
    format!(
        r#"[package]
name = "{crate_name}"
version = "0.1.0"
edition = "2024"
publish = false
description = "pushgate policy {name}"

[lib]
crate-type = ["cdylib"]

[dependencies]
wit-bindgen = "0.61"
serde_json = "1"

# A crate of its own, even inside another workspace.
[workspace]

[profile.release]
opt-level = "s"
lto = true
strip = true
codegen-units = 1
"#,
        crate_name = crate_name(name)
    )
}

const LIB_RS: &str = r#"//! The {name} pushgate policy.
//!
//! pushgate gives `decide` the facts about one container (tags and where they
//! point, arches, digests, its own verdict) and acts on the answer: `skip`,
//! `push` or `fail`, each with a reason. The module can do no I/O; keep the
//! rules in plain functions so `cargo test` runs them natively.

wit_bindgen::generate!({
    path: "wit",
    world: "policy-module",
});

use exports::pushgate::policy::policy::Guest;
use pushgate::policy::host::{Level, log};
use pushgate::policy::types::{Decision, Facts, PolicyMetadata, Verdict};

struct Policy;

impl Guest for Policy {
    fn metadata() -> PolicyMetadata {
        PolicyMetadata {
            name: "{name}".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Follows the host's verdict (edit me).".to_string(),
            settings_help: "No settings: `{}`.".to_string(),
            sample_settings: "{}".to_string(),
        }
    }

    fn validate_settings(settings: String) -> Result<(), String> {
        check_settings(&settings)
    }

    fn decide(facts: Facts) -> Decision {
        let decision = decide(&facts);
        log(Level::Info, &format!("{}: {:?}", facts.container, decision));
        decision
    }
}

export!(Policy);

/// Settings are a JSON object; this policy takes none.
pub fn check_settings(settings: &str) -> Result<(), String> {
    let value: serde_json::Value =
        serde_json::from_str(settings).map_err(|e| format!("settings are not JSON: {e}"))?;
    match value.as_object() {
        Some(o) if o.is_empty() => Ok(()),
        Some(o) => Err(format!("unknown settings: {:?}", o.keys().collect::<Vec<_>>())),
        None => Err("settings must be a JSON object".to_string()),
    }
}

/// The rules. Start from the host's verdict and add yours.
pub fn decide(facts: &Facts) -> Decision {
    if let Err(e) = check_settings(&facts.settings) {
        return Decision::Fail(e);
    }
    match facts.verdict {
        Verdict::UpToDate => Decision::Skip(facts.verdict_reason.clone()),
        Verdict::RecordOnly | Verdict::Push => Decision::Push(facts.verdict_reason.clone()),
    }
}
"#;

const CASE: &str = r#"{
    "description": "a fresh push follows the host's verdict",
    "settings": {},
    "facts": {
        "container": "oscontainer",
        "repo": "quay.io/example/os",
        "tags": [
            { "name": "stable", "current": null, "is-desired": false }
        ],
        "build-id": "41.20261127.1.0",
        "key": "base-oscontainer",
        "requested-arches": ["x86_64"],
        "present-arches": ["x86_64"],
        "arches": [
            {
                "arch": "x86_64",
                "has-key": false,
                "recorded-digest": null,
                "desired-digest": "sha256:3333333333333333333333333333333333333333333333333333333333333333",
                "registry-digest": null
            }
        ],
        "desired-list-digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
        "verdict": "push",
        "verdict-reason": "stable is missing",
        "force": false,
        "dry-run": false
    },
    "expect": { "decision": "push", "reason": "stable is missing" }
}
"#;

const README: &str = r#"# {name}: a pushgate policy

    rustup target add wasm32-wasip2
    cargo build --release --target wasm32-wasip2
    pushgate policy test target/wasm32-wasip2/release/{crate}.wasm cases
    pushgate policy check target/wasm32-wasip2/release/{crate}.wasm

`wit/policy.wit` is the contract this crate was generated against; see
pushgate's POLICIES.md for the facts, the decisions and how to test.
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_crates_named_after_them() {
        assert_eq!(crate_name("my-rules"), "my_rules_policy");
        for bad in ["", "My", "1x", "a/b", "../x", "a b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        check_name("kubevirt-strict2").unwrap();
    }

    #[test]
    fn the_generated_case_is_a_valid_case() {
        crate::cases::parse_case(Path::new("case.json"), CASE).unwrap();
    }

    #[test]
    fn creates_the_crate_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let root = create(dir.path(), "mine").unwrap();
        for f in [
            "Cargo.toml",
            "src/lib.rs",
            "wit/policy.wit",
            "cases/push-follows-the-host.json",
        ] {
            assert!(root.join(f).is_file(), "{f}");
        }
        assert!(
            std::fs::read_to_string(root.join("src/lib.rs"))
                .unwrap()
                .contains("\"mine\"")
        );
        assert!(
            create(dir.path(), "mine")
                .unwrap_err()
                .to_string()
                .contains("already exists")
        );
    }
}
