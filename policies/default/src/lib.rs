//! The default pushgate policy: do what the host would do on its own.
//!
//! This is the smallest complete example of the contract in `wit/policy.wit`;
//! start here when writing a policy of your own.
//!
//! A policy is a WebAssembly component. pushgate (the host) gathers every fact
//! about one container (tags, arches, digests, its own verdict), calls
//! `decide`, and acts on the answer:
//!
//! - `skip(reason)`: leave the registry and meta.json untouched;
//! - `push(reason)`: carry out the host's plan;
//! - `fail(reason)`: refuse the container; the run fails.
//!
//! The module does no I/O: no files, no network, no environment, no clock.
//! Whatever it decides, the host keeps its own invariants (it never records a
//! digest the registry does not hold, for instance).
//!
//! Build: `cargo build --release --target wasm32-wasip2 --manifest-path policies/Cargo.toml`.

// Rust bindings for the contract. `world: "policy-module"` names the world in
// `wit/policy.wit`: it imports `host` (a log function) and exports `policy`.
// The path is relative to this crate's Cargo.toml.
wit_bindgen::generate!({
    path: "../../wit",
    world: "policy-module",
});

// The exported interface is a trait to implement; the records and variants it
// uses are defined in the contract's `types` interface.
use exports::pushgate::policy::policy::Guest;
use pushgate::policy::types::{Decision, Facts, PolicyMetadata, Verdict};

/// The component. It has no state: the host may create it once and call it
/// for many containers, or create it afresh for each; answers are the same.
struct DefaultPolicy;

impl Guest for DefaultPolicy {
    /// What the module says about itself (`pushgate policy check` prints it).
    fn metadata() -> PolicyMetadata {
        PolicyMetadata {
            name: "default".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Follows the host's verdict: skip when registry and meta.json are \
                          up to date, push otherwise."
                .to_string(),
            settings_help: "No settings: the settings document must be `{}`.".to_string(),
            sample_settings: "{}".to_string(),
        }
    }

    /// Called with each container's settings before any decision; an error
    /// fails the container with that message.
    fn validate_settings(settings: String) -> Result<(), String> {
        check_settings(&settings)
    }

    /// Called once per container.
    fn decide(facts: Facts) -> Decision {
        decide(&facts)
    }
}

// Exports `DefaultPolicy` as the component's implementation of `policy`.
export!(DefaultPolicy);

// The rules live in plain functions over plain data, so that
// `cargo test --manifest-path policies/Cargo.toml` runs them natively.

/// The default policy accepts an empty JSON object and nothing else.
pub fn check_settings(settings: &str) -> Result<(), String> {
    let value: serde_json::Value = serde_json::from_str(settings)
        .map_err(|err| format!("settings are not valid JSON: {err}"))?;
    let Some(object) = value.as_object() else {
        return Err("settings must be a JSON object".to_string());
    };
    match object.keys().next() {
        None => Ok(()),
        Some(key) => Err(format!(
            "unknown setting {key:?}: the default policy takes no settings"
        )),
    }
}

/// The decision for one container.
pub fn decide(facts: &Facts) -> Decision {
    // The settings arrive with the facts too. The host has validated them
    // already, but a policy must not trust that: bad settings fail.
    if let Err(err) = check_settings(&facts.settings) {
        return Decision::Fail(format!("invalid settings: {err}"));
    }
    follow_host(facts)
}

/// The host's verdict as a decision, with the host's reason.
pub fn follow_host(facts: &Facts) -> Decision {
    match facts.verdict {
        Verdict::UpToDate => Decision::Skip(facts.verdict_reason.clone()),
        Verdict::RecordOnly | Verdict::Push => Decision::Push(facts.verdict_reason.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(verdict: Verdict, settings: &str) -> Facts {
        Facts {
            container: "os".into(),
            repo: "quay.io/example/os".into(),
            tags: vec![],
            build_id: Some("42.20240101.0".into()),
            key: Some("base-oscontainer".into()),
            requested_arches: vec!["x86_64".into()],
            present_arches: vec!["x86_64".into()],
            arches: vec![],
            desired_list_digest: Some("sha256:aa".into()),
            verdict,
            verdict_reason: "host says so".into(),
            force: false,
            dry_run: false,
            settings: settings.into(),
            trusted_keys: vec![],
        }
    }

    #[test]
    fn follows_the_host_verdict() {
        assert!(matches!(
            decide(&facts(Verdict::UpToDate, "{}")),
            Decision::Skip(r) if r == "host says so"
        ));
        assert!(matches!(
            decide(&facts(Verdict::RecordOnly, "{}")),
            Decision::Push(r) if r == "host says so"
        ));
        assert!(matches!(
            decide(&facts(Verdict::Push, " { } ")),
            Decision::Push(_)
        ));
    }

    #[test]
    fn settings_must_be_an_empty_object() {
        assert_eq!(check_settings("{}"), Ok(()));
        let err = check_settings(r#"{"required-arches": []}"#).unwrap_err();
        assert!(err.contains("\"required-arches\""), "{err}");
        assert!(check_settings("[]").is_err());
        assert!(check_settings("").is_err());
        assert!(check_settings("null").is_err());
    }

    #[test]
    fn bad_settings_in_facts_fail() {
        assert!(matches!(
            decide(&facts(Verdict::UpToDate, r#"{"x": 1}"#)),
            Decision::Fail(r) if r.contains("\"x\"")
        ));
    }

    #[test]
    fn sample_settings_are_valid() {
        let meta = DefaultPolicy::metadata();
        assert_eq!(meta.name, "default");
        assert_eq!(check_settings(&meta.sample_settings), Ok(()));
    }
}
