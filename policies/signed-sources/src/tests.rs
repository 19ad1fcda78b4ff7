//! The rules, natively: settings, configuration checks, and each way a source
//! passes or falls short.

use super::*;
use pushgate::policy::types::{AttestationFact, SourceFact, TagFact};

const SLSA: &str = "https://slsa.dev/provenance/v1";

fn registry(arch: &str, signatures: Option<SignatureFacts>) -> ArchFact {
    ArchFact {
        arch: arch.into(),
        has_key: false,
        recorded_digest: None,
        desired_digest: Some(format!("sha256:{arch}")),
        registry_digest: None,
        source: SourceFact {
            origin: Origin::Registry(format!("registry.example/staging/os@sha256:{arch}")),
            digest: Some(format!("sha256:{arch}")),
            signatures,
        },
    }
}

fn local(arch: &str, path: &str) -> ArchFact {
    ArchFact {
        source: SourceFact {
            origin: Origin::Local(path.into()),
            digest: None,
            signatures: None,
        },
        ..registry(arch, None)
    }
}

fn signed(valid: &[&str], invalid: &[&str]) -> Option<SignatureFacts> {
    Some(SignatureFacts {
        valid_keys: valid.iter().map(|k| k.to_string()).collect(),
        invalid: invalid.iter().map(|k| k.to_string()).collect(),
        attestations: vec![],
    })
}

fn facts(settings: &str, arches: Vec<ArchFact>) -> Facts {
    Facts {
        container: "os".into(),
        repo: "quay.io/example/os".into(),
        tags: vec![TagFact {
            name: "stable".into(),
            current: None,
            is_desired: false,
            signatures: None,
        }],
        build_id: None,
        key: None,
        requested_arches: vec![],
        present_arches: arches.iter().map(|a| a.arch.clone()).collect(),
        arches,
        desired_list_digest: Some("sha256:list".into()),
        verdict: Verdict::Push,
        verdict_reason: "stable is missing".into(),
        force: false,
        dry_run: false,
        settings: settings.into(),
        trusted_keys: vec!["build".into(), "release".into()],
    }
}

fn fail_reason(decision: Decision) -> String {
    match decision {
        Decision::Fail(reason) => reason,
        other => panic!("expected a fail, got {other:?}"),
    }
}

const BUILD: &str = r#"{"keys": ["build"]}"#;

#[test]
fn settings_defaults_and_values() {
    assert_eq!(
        Settings::parse(BUILD),
        Ok(Settings {
            keys: vec!["build".into()],
            require: Require::AnyOf,
            arches: None,
            archive_sources: ArchiveSources::Fail,
            attestations: vec![],
        })
    );
    let full = Settings::parse(
        r#"{"keys": ["build", "release"], "require": "all-of", "arches": ["x86_64"],
            "archive-sources": "allow", "attestations": ["https://slsa.dev/provenance/v1"]}"#,
    )
    .unwrap();
    assert_eq!(full.require, Require::AllOf);
    assert_eq!(full.arches, Some(vec!["x86_64".to_string()]));
    assert_eq!(full.archive_sources, ArchiveSources::Allow);
    assert_eq!(full.attestations, vec![SLSA.to_string()]);
    assert!(full.covers("x86_64"));
    assert!(!full.covers("aarch64"));
    assert!(Settings::parse(BUILD).unwrap().covers("s390x"));
    assert!(Settings::parse(SAMPLE_SETTINGS).is_ok());
}

#[test]
fn bad_settings_say_what_is_wrong() {
    for (bad, needle) in [
        ("", "JSON"),
        ("[]", "object"),
        ("{}", "\"keys\" is required"),
        (r#"{"keys": []}"#, "\"keys\" is empty"),
        (r#"{"keys": "build"}"#, "list of strings"),
        (r#"{"keys": [""]}"#, "\"keys\"[0] is empty"),
        (r#"{"keys": [1]}"#, "\"keys\"[0] must be a string"),
        (r#"{"keys": ["a", "a"]}"#, "given twice"),
        (r#"{"keys": ["a b"]}"#, "not a key name"),
        (
            r#"{"keys": ["build"], "require": "one-of"}"#,
            "\"any-of\" or \"all-of\"",
        ),
        (
            r#"{"keys": ["build"], "require": 1}"#,
            "\"require\" must be",
        ),
        (
            r#"{"keys": ["build"], "arches": ["x86-64"]}"#,
            "not a cosa basearch",
        ),
        (
            r#"{"keys": ["build"], "arches": []}"#,
            "\"arches\" is empty",
        ),
        (
            r#"{"keys": ["build"], "archive-sources": "skip"}"#,
            "\"fail\" or \"allow\"",
        ),
        (
            r#"{"keys": ["build"], "attestations": []}"#,
            "\"attestations\" is empty",
        ),
        (
            r#"{"keys": ["build"], "key": ["x"]}"#,
            "unknown setting \"key\"",
        ),
    ] {
        let err = Settings::parse(bad).unwrap_err();
        assert!(err.contains(needle), "{bad}: {err}");
    }
}

#[test]
fn invalid_settings_in_facts_fail() {
    let f = facts(
        r#"{"keys": "build"}"#,
        vec![registry("x86_64", signed(&["build"], &[]))],
    );
    assert!(fail_reason(decide(&f)).starts_with("signed-sources: invalid settings: "));
}

#[test]
fn signed_by_a_named_key_follows_the_host() {
    let mut f = facts(BUILD, vec![registry("x86_64", signed(&["build"], &[]))]);
    assert_eq!(decide(&f), Decision::Push("stable is missing".into()));
    f.verdict = Verdict::RecordOnly;
    f.verdict_reason = "only meta.json".into();
    assert_eq!(decide(&f), Decision::Push("only meta.json".into()));
}

#[test]
fn unsigned_fails_naming_arch_image_and_keys() {
    let f = facts(BUILD, vec![registry("x86_64", signed(&[], &[]))]);
    assert_eq!(
        fail_reason(decide(&f)),
        "signed-sources: x86_64: registry.example/staging/os@sha256:x86_64: no signature at \
         all; looked for a signature by build"
    );
}

#[test]
fn a_signature_by_no_trusted_key_fails_quoting_the_host() {
    let why = "signature 0: made by none of the trusted keys (build, release)";
    let f = facts(BUILD, vec![registry("x86_64", signed(&[], &[why]))]);
    assert_eq!(
        fail_reason(decide(&f)),
        format!(
            "signed-sources: x86_64: registry.example/staging/os@sha256:x86_64: no valid \
             signature by a trusted key, 1 that do not count; looked for a signature by build \
             (not counted: \"{why}\")"
        )
    );
}

#[test]
fn a_signature_by_another_trusted_key_does_not_count() {
    let f = facts(BUILD, vec![registry("x86_64", signed(&["release"], &[]))]);
    let reason = fail_reason(decide(&f));
    assert!(
        reason.contains("signed by release only; looked for a signature by build"),
        "{reason}"
    );
}

#[test]
fn long_and_many_invalid_reasons_are_shortened() {
    let long = "x".repeat(500);
    let invalid: Vec<&str> = vec![&long, "b", "c", "d", "e"];
    let f = facts(BUILD, vec![registry("x86_64", signed(&[], &invalid))]);
    let reason = fail_reason(decide(&f));
    let quoted = format!("\"{}…\"", "x".repeat(QUOTED_CHARS - 1));
    assert!(reason.contains(&quoted), "{reason}");
    assert!(!reason.contains(&"x".repeat(QUOTED_CHARS)), "{reason}");
    assert!(reason.ends_with("\"b\", \"c\", and 2 more)"), "{reason}");
}

#[test]
fn any_of_and_all_of() {
    let two =
        |require: &str| format!(r#"{{"keys": ["build", "release"], "require": "{require}"}}"#);
    let one = vec![registry("x86_64", signed(&["release"], &[]))];
    assert!(matches!(
        decide(&facts(&two("any-of"), one.clone())),
        Decision::Push(_)
    ));
    let reason = fail_reason(decide(&facts(&two("all-of"), one)));
    assert!(
        reason.ends_with(
            "signed by release but not by build; looked for signatures by all of build, release"
        ),
        "{reason}"
    );
    let both = vec![registry("x86_64", signed(&["build", "release"], &[]))];
    assert!(matches!(
        decide(&facts(&two("all-of"), both)),
        Decision::Push(_)
    ));
}

#[test]
fn every_failing_arch_is_named_and_only_those() {
    let f = facts(
        BUILD,
        vec![
            registry("x86_64", signed(&["build"], &[])),
            registry("aarch64", signed(&[], &[])),
            registry("s390x", signed(&[], &[])),
        ],
    );
    let reason = fail_reason(decide(&f));
    let parts: Vec<&str> = reason.split("; looked for a signature by build").collect();
    assert_eq!(parts.len(), 3, "{reason}");
    assert!(
        parts[0].starts_with("signed-sources: aarch64: "),
        "{reason}"
    );
    assert!(
        parts[1].starts_with("; signed-sources: s390x: "),
        "{reason}"
    );
    assert!(!reason.contains("x86_64"), "{reason}");
}

#[test]
fn the_arches_filter_judges_only_named_arches() {
    let arches = vec![
        registry("x86_64", signed(&["build"], &[])),
        registry("aarch64", signed(&[], &[])),
    ];
    let only_x86 = r#"{"keys": ["build"], "arches": ["x86_64"]}"#;
    assert!(matches!(
        decide(&facts(only_x86, arches.clone())),
        Decision::Push(_)
    ));
    let only_arm = r#"{"keys": ["build"], "arches": ["aarch64"]}"#;
    assert!(fail_reason(decide(&facts(only_arm, arches))).contains("aarch64"));
}

#[test]
fn local_sources_fail_unless_allowed() {
    let arches = vec![local("x86_64", "builds/42/x86_64/os.ociarchive")];
    let reason = fail_reason(decide(&facts(BUILD, arches.clone())));
    assert!(
        reason.starts_with(
            "signed-sources: x86_64: local source builds/42/x86_64/os.ociarchive carries no \
             signatures"
        ),
        "{reason}"
    );
    assert!(
        reason.contains("\"archive-sources\": \"allow\""),
        "{reason}"
    );
    let allow = r#"{"keys": ["build"], "archive-sources": "allow"}"#;
    assert!(matches!(decide(&facts(allow, arches)), Decision::Push(_)));
    let unnamed = fail_reason(decide(&facts(BUILD, vec![local("x86_64", "")])));
    assert!(
        unnamed.contains("x86_64: a local source carries"),
        "{unnamed}"
    );
}

#[test]
fn a_registry_source_nobody_checked_fails() {
    let reason = fail_reason(decide(&facts(BUILD, vec![registry("x86_64", None)])));
    assert!(
        reason.contains("the host checked no signature of it"),
        "{reason}"
    );
}

#[test]
fn attestations_must_be_made_by_one_of_the_keys() {
    let settings = format!(r#"{{"keys": ["build"], "attestations": ["{SLSA}"]}}"#);
    let with = |ptype: &str, keys: &[&str]| {
        let mut s = signed(&["build"], &[]).unwrap();
        s.attestations.push(AttestationFact {
            predicate_type: ptype.into(),
            keys: keys.iter().map(|k| k.to_string()).collect(),
        });
        vec![registry("x86_64", Some(s))]
    };
    assert!(matches!(
        decide(&facts(&settings, with(SLSA, &["build"]))),
        Decision::Push(_)
    ));
    for arches in [
        with(SLSA, &["release"]),
        with("https://spdx.dev/Document", &["build"]),
        vec![registry("x86_64", signed(&["build"], &[]))],
    ] {
        let reason = fail_reason(decide(&facts(&settings, arches)));
        assert!(
            reason.ends_with(&format!(
                "no attestation of {SLSA} by build; looked for a signature by build and \
                 attestations of {SLSA} by build"
            )),
            "{reason}"
        );
    }
    let neither = vec![registry("x86_64", signed(&[], &[]))];
    let reason = fail_reason(decide(&facts(&settings, neither)));
    assert!(
        reason.contains(&format!(
            "no signature at all, and no attestation of {SLSA} by build"
        )),
        "{reason}"
    );
}

#[test]
fn no_trusted_key_fails_whatever_the_verdict() {
    let mut f = facts(BUILD, vec![registry("x86_64", signed(&["build"], &[]))]);
    f.trusted_keys.clear();
    for verdict in [Verdict::UpToDate, Verdict::Push] {
        f.verdict = verdict;
        let reason = fail_reason(decide(&f));
        assert!(reason.contains("the host trusts no key"), "{reason}");
        assert!(reason.contains("--trust-key NAME=FILE.pub"), "{reason}");
    }
}

#[test]
fn a_named_key_the_host_does_not_trust_fails() {
    let settings = r#"{"keys": ["build", "konflux"]}"#;
    let mut f = facts(settings, vec![registry("x86_64", signed(&["build"], &[]))]);
    for verdict in [Verdict::UpToDate, Verdict::Push] {
        f.verdict = verdict;
        assert_eq!(
            fail_reason(decide(&f)),
            "signed-sources: key konflux is not trusted by the host: pass --trust-key \
             konflux=FILE.pub (the host trusts build, release)"
        );
    }
}

#[test]
fn up_to_date_skips_without_judging_sources() {
    let mut f = facts(
        BUILD,
        vec![local("x86_64", "builds/42/x86_64/os.ociarchive")],
    );
    f.verdict = Verdict::UpToDate;
    f.verdict_reason = "up to date".into();
    assert_eq!(decide(&f), Decision::Skip("up to date".into()));
}

#[test]
fn force_and_dry_run_waive_nothing() {
    let mut f = facts(BUILD, vec![registry("x86_64", signed(&[], &[]))]);
    let plain = decide(&f);
    assert!(matches!(plain, Decision::Fail(_)));
    f.force = true;
    f.verdict_reason = "--force given".into();
    assert_eq!(decide(&f), plain);
    f.dry_run = true;
    assert_eq!(decide(&f), plain);
}
