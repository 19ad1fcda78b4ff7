//! The kubevirt policy: stricter than the host on its own.
//!
//! - Every arch named in `required-arches` must have an artifact in the build;
//!   a missing one fails the container (the host alone would publish the
//!   arches it has).
//! - A tag that already points to a different list is never moved, unless
//!   the run has `--force`.
//! - Otherwise the host's verdict stands.

wit_bindgen::generate!({
    path: "../../wit",
    world: "policy-module",
    // Lets the tests compare decisions.
    additional_derives: [PartialEq],
});

use exports::pushgate::policy::policy::Guest;
use pushgate::policy::host::{Level, log};
use pushgate::policy::types::{Decision, Facts, PolicyMetadata, Verdict};
use serde_json::Value;

const NAME: &str = "kubevirt";

const SETTINGS_HELP: &str = "\
A JSON object with one key:
  \"required-arches\": a non-empty list of cosa basearches (x86_64, aarch64,
      ppc64le, s390x, riscv64) that every build must carry. A build without an
      artifact for one of them fails the container.
Unknown keys are rejected.";

const SAMPLE_SETTINGS: &str = r#"{"required-arches": ["x86_64"]}"#;

struct KubevirtPolicy;

impl Guest for KubevirtPolicy {
    fn metadata() -> PolicyMetadata {
        PolicyMetadata {
            name: NAME.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Fails a container whose build lacks a required arch, and never \
                          moves an existing tag to a different list unless --force."
                .to_string(),
            settings_help: SETTINGS_HELP.to_string(),
            sample_settings: SAMPLE_SETTINGS.to_string(),
        }
    }

    fn validate_settings(settings: String) -> Result<(), String> {
        Settings::parse(&settings).map(drop)
    }

    fn decide(facts: Facts) -> Decision {
        let decision = decide(&facts);
        let line = match &decision {
            Decision::Skip(reason) => format!("{}: skip: {reason}", facts.container),
            Decision::Push(reason) => format!("{}: push: {reason}", facts.container),
            Decision::Fail(reason) => format!("{}: fail: {reason}", facts.container),
        };
        log(Level::Info, &line);
        decision
    }
}

export!(KubevirtPolicy);

/// The parsed settings document.
#[derive(Debug, PartialEq)]
pub struct Settings {
    pub required_arches: Vec<String>,
}

impl Settings {
    pub fn parse(text: &str) -> Result<Settings, String> {
        let value: Value = serde_json::from_str(text)
            .map_err(|err| format!("settings are not valid JSON: {err}"))?;
        let Value::Object(object) = value else {
            return Err("settings must be a JSON object".to_string());
        };
        if let Some(key) = object.keys().find(|key| *key != "required-arches") {
            return Err(format!(
                "unknown setting {key:?}: kubevirt accepts only \"required-arches\""
            ));
        }
        let Some(list) = object.get("required-arches") else {
            return Err(
                "\"required-arches\" is required: the arches every build must carry, \
                        e.g. [\"x86_64\", \"aarch64\"]"
                    .to_string(),
            );
        };
        let Value::Array(items) = list else {
            return Err("\"required-arches\" must be a list of arch names".to_string());
        };
        if items.is_empty() {
            return Err("\"required-arches\" must name at least one arch".to_string());
        }
        let mut required_arches = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            match item {
                Value::String(arch) if !arch.is_empty() => required_arches.push(arch.clone()),
                _ => {
                    return Err(format!(
                        "\"required-arches\"[{index}] must be a non-empty string, not {item}"
                    ));
                }
            }
        }
        Ok(Settings { required_arches })
    }
}

/// The decision for one container.
pub fn decide(facts: &Facts) -> Decision {
    let settings = match Settings::parse(&facts.settings) {
        Ok(settings) => settings,
        Err(err) => return Decision::Fail(format!("{NAME}: invalid settings: {err}")),
    };

    let missing: Vec<String> = settings
        .required_arches
        .iter()
        .filter(|arch| !facts.present_arches.contains(arch))
        .map(|arch| {
            format!(
                "{NAME}: required arch {arch} has no artifact in {}",
                source(facts)
            )
        })
        .collect();
    if !missing.is_empty() {
        return Decision::Fail(missing.join("; "));
    }

    // Tags that exist and point to a list other than the one this run makes.
    let moved: Vec<(&str, &str)> = facts
        .tags
        .iter()
        .filter(|tag| !tag.is_desired)
        .filter_map(|tag| Some((tag.name.as_str(), tag.current.as_deref()?)))
        .collect();
    if !moved.is_empty() && !facts.force {
        let reasons: Vec<String> = moved
            .iter()
            .map(|(tag, digest)| {
                format!(
                    "{NAME}: tag {tag} already points to {digest}, a different list; \
                     kubevirt moves tags only with --force"
                )
            })
            .collect();
        return Decision::Fail(reasons.join("; "));
    }

    match follow_host(facts) {
        Decision::Push(reason) if !moved.is_empty() => {
            let tags: Vec<String> = moved
                .iter()
                .map(|(tag, digest)| format!("{tag} from {digest}"))
                .collect();
            Decision::Push(format!(
                "{reason} (--force: moving tag {})",
                tags.join(", ")
            ))
        }
        decision => decision,
    }
}

/// The host's verdict as a decision, with the host's reason.
fn follow_host(facts: &Facts) -> Decision {
    match facts.verdict {
        Verdict::UpToDate => Decision::Skip(facts.verdict_reason.clone()),
        Verdict::RecordOnly | Verdict::Push => Decision::Push(facts.verdict_reason.clone()),
    }
}

/// Where the artifacts come from, for messages.
fn source(facts: &Facts) -> String {
    match &facts.build_id {
        Some(build) => format!("build {build}"),
        None => "the source image".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushgate::policy::types::TagFact;

    const SETTINGS: &str = r#"{"required-arches": ["x86_64", "aarch64"]}"#;

    fn facts() -> Facts {
        Facts {
            container: "kubevirt".into(),
            repo: "quay.io/example/kubevirt".into(),
            tags: vec![TagFact {
                name: "stable".into(),
                current: None,
                is_desired: false,
                signatures: None,
            }],
            build_id: Some("42.20240101.0".into()),
            key: Some("kubevirt".into()),
            requested_arches: vec!["x86_64".into(), "aarch64".into()],
            present_arches: vec!["x86_64".into(), "aarch64".into(), "s390x".into()],
            arches: vec![],
            desired_list_digest: Some("sha256:new".into()),
            verdict: Verdict::Push,
            verdict_reason: "2 arches to upload".into(),
            force: false,
            dry_run: false,
            settings: SETTINGS.into(),
            trusted_keys: vec![],
        }
    }

    fn moved_tag(facts: &mut Facts) {
        facts.tags[0].current = Some("sha256:old".into());
        facts.tags[0].is_desired = false;
    }

    #[test]
    fn follows_the_host_when_all_is_well() {
        let mut f = facts();
        assert_eq!(decide(&f), Decision::Push("2 arches to upload".into()));
        f.verdict = Verdict::UpToDate;
        f.verdict_reason = "up to date".into();
        f.tags[0].current = Some("sha256:new".into());
        f.tags[0].is_desired = true;
        assert_eq!(decide(&f), Decision::Skip("up to date".into()));
        f.verdict = Verdict::RecordOnly;
        assert!(matches!(decide(&f), Decision::Push(_)));
    }

    #[test]
    fn a_missing_required_arch_fails() {
        let mut f = facts();
        f.present_arches = vec!["x86_64".into()];
        assert_eq!(
            decide(&f),
            Decision::Fail(
                "kubevirt: required arch aarch64 has no artifact in build 42.20240101.0".into()
            )
        );
        // Even when the host would skip, and even with --force.
        f.verdict = Verdict::UpToDate;
        f.force = true;
        assert!(matches!(decide(&f), Decision::Fail(_)));
    }

    #[test]
    fn every_missing_arch_is_named() {
        let mut f = facts();
        f.present_arches = vec![];
        f.build_id = None;
        let Decision::Fail(reason) = decide(&f) else {
            panic!("expected fail")
        };
        assert!(reason.contains("required arch x86_64 has no artifact in the source image"));
        assert!(reason.contains("required arch aarch64 has no artifact"));
    }

    #[test]
    fn an_existing_tag_is_not_moved_without_force() {
        let mut f = facts();
        moved_tag(&mut f);
        let Decision::Fail(reason) = decide(&f) else {
            panic!("expected fail")
        };
        assert!(reason.contains("tag stable"), "{reason}");
        assert!(reason.contains("sha256:old"), "{reason}");
    }

    #[test]
    fn force_moves_a_tag() {
        let mut f = facts();
        moved_tag(&mut f);
        f.force = true;
        assert_eq!(
            decide(&f),
            Decision::Push(
                "2 arches to upload (--force: moving tag stable from sha256:old)".into()
            )
        );
    }

    #[test]
    fn a_tag_at_the_desired_list_or_absent_is_fine() {
        let mut f = facts();
        f.tags.push(TagFact {
            name: "latest".into(),
            current: Some("sha256:new".into()),
            is_desired: true,
            signatures: None,
        });
        assert!(matches!(decide(&f), Decision::Push(_)));
    }

    #[test]
    fn settings() {
        assert_eq!(
            Settings::parse(SETTINGS),
            Ok(Settings {
                required_arches: vec!["x86_64".into(), "aarch64".into()]
            })
        );
        for (bad, needle) in [
            ("{}", "required"),
            (r#"{"required-arches": []}"#, "at least one"),
            (r#"{"required-arches": "x86_64"}"#, "list"),
            (r#"{"required-arches": ["x86_64", 3]}"#, "[1]"),
            (r#"{"required-arches": [""]}"#, "[0]"),
            (
                r#"{"required-arches": ["x86_64"], "arches": []}"#,
                "\"arches\"",
            ),
            ("[]", "object"),
            ("nope", "JSON"),
        ] {
            let err = Settings::parse(bad).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn invalid_settings_in_facts_fail() {
        let mut f = facts();
        f.settings = "{}".into();
        assert!(matches!(decide(&f), Decision::Fail(r) if r.contains("invalid settings")));
    }

    #[test]
    fn sample_settings_are_valid() {
        assert!(Settings::parse(SAMPLE_SETTINGS).is_ok());
    }
}
