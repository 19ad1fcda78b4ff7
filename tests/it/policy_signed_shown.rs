//! Where a signed policy's signers are named, against a real `docker-registry`
//! ([`super::policy_signed`]'s setup): a push that required the signature names
//! the key in its report (JSON and text), its decision log line and its signed
//! decision attestation, and not when none was required; `policy inspect` of
//! the artifact names the trusted key that signed it and why another
//! signature does not count, from the registry and then offline from the cache,
//! and without a trusted key only counts them.

use std::fs;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use crate::policy_signed::{Env, blob, sig_tag};
use crate::support::policy_module;
use crate::support::run::path_str;
use crate::support::skopeo_inspect_raw;

/// The decision log's lines.
fn log_lines(path: &std::path::Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The predicate of the decision attestation `digest` in `repo`, read from
/// the registry (its one layer is the DSSE envelope; the statement is its
/// payload).
fn predicate(repo: &str, digest: &str) -> Value {
    let manifest = skopeo_inspect_raw(&format!("{repo}@{digest}"), None).unwrap();
    let manifest: Value = serde_json::from_slice(&manifest).unwrap();
    let envelope = blob(repo, manifest["layers"][0]["digest"].as_str().unwrap());
    let envelope: Value = serde_json::from_slice(&envelope).unwrap();
    let statement = BASE64
        .decode(envelope["payload"].as_str().unwrap())
        .unwrap();
    let statement: Value = serde_json::from_slice(&statement).unwrap();
    statement["predicate"].clone()
}

#[test]
fn a_required_signature_names_its_key_in_the_report_the_log_and_the_attestation() {
    let env = Env::new();
    let pinned = env.publish(&env.oci("policies/signed:1.0"), Some(&env.build))["pinned"]
        .as_str()
        .unwrap()
        .to_string();
    let trust = env.trust_build();
    let log = env.base.dir.path().join("decisions.jsonl");
    let (key, passphrase) = (
        path_str(&env.build.key),
        path_str(&env.build.passphrase_file),
    );
    let log_arg = path_str(&log);
    let args = [
        "--policy",
        pinned.as_str(),
        "--require-signed-policies",
        "--trust-key",
        trust.as_str(),
        "--decision-log",
        log_arg.as_str(),
        "--sign-by-sigstore-private-key",
        key.as_str(),
        "--sign-passphrase-file",
        passphrase.as_str(),
    ];
    let repo = env.repo("named");
    let run = env.push_os(&repo, "named", &args, "consumer");
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.outcome(), "pushed", "{run:?}");
    assert_eq!(run.json["policy"]["reference"], pinned.as_str(), "{run:?}");
    assert_eq!(run.json["policy"]["signed_by"], json!(["build"]), "{run:?}");

    let line = log_lines(&log).pop().unwrap();
    assert_eq!(line["container"], "named", "{line}");
    assert_eq!(line["policy"]["signed_by"], json!(["build"]), "{line}");

    let attestation = run.json["attestation"].as_str().unwrap();
    assert_eq!(line["attestation"], attestation, "{line}");
    let p = predicate(&repo, attestation);
    assert_eq!(p["policy"]["signed_by"], json!(["build"]), "{p}");
    assert!(
        p["policy"]["reference"]
            .as_str()
            .unwrap()
            .ends_with(pinned.rsplit('@').next().unwrap()),
        "{p}"
    );

    // the text report's policy line, on the run that finds it up to date
    let mut text = vec![
        "push",
        "--repo",
        repo.as_str(),
        "--tag",
        "stable",
        "--artifact",
        "ostree",
        "--metajsonname",
        "named",
        "--plain-http",
    ];
    text.extend(args);
    let run = env.run(&text, "consumer");
    assert_eq!(run.code, 0, "{run:?}");
    let policy_line = run
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("policy:"))
        .unwrap_or_else(|| panic!("no policy line: {run:?}"));
    assert!(policy_line.ends_with("; signed by build"), "{policy_line}");

    // not required (the key trusted all the same): no signer named, anywhere
    let free = env.push_os(
        &repo,
        "named",
        &[
            "--policy",
            pinned.as_str(),
            "--trust-key",
            trust.as_str(),
            "--decision-log",
            log_arg.as_str(),
            "--dry-run",
        ],
        "consumer",
    );
    assert_eq!(free.code, 0, "{free:?}");
    assert!(free.json["policy"].is_object(), "{free:?}");
    assert!(free.json["policy"].get("signed_by").is_none(), "{free:?}");
    let line = log_lines(&log).pop().unwrap();
    assert_eq!(line["dry_run"], true, "{line}");
    assert!(line["policy"].get("signed_by").is_none(), "{line}");
}

#[test]
fn policy_inspect_names_the_signer_and_why_another_signature_does_not_count() {
    let mut env = Env::new();
    let reference = env.oci("policies/two:1.0");
    // the same module signed by the trusted key, then by another: two
    // signatures at its .sig tag
    let published = env.publish(&reference, Some(&env.build));
    let again = env.publish(&reference, Some(&env.other));
    assert_eq!(again["signature"]["added"], true, "{again}");
    let digest = published["digest"].as_str().unwrap().to_string();
    let pinned = published["pinned"].as_str().unwrap().to_string();
    let trust = env.trust_build();
    fn inspect_with(env: &Env, pinned: &str, extra: &[&str]) -> crate::support::run::Run {
        let mut args = vec!["policy", "inspect", pinned, "--plain-http"];
        args.extend(extra);
        env.run(&args, "inspector")
    }
    let not_build = "made by none of the trusted keys (build)";

    // from the registry (nothing cached yet), as JSON
    let run = inspect_with(&env, &pinned, &["--json", "--trust-key", &trust]);
    assert_eq!(run.code, 0, "{run:?}");
    let sigs = &run.json["artifact"]["signatures"];
    assert_eq!(run.json["artifact"]["from_cache"], false, "{run:?}");
    assert_eq!(sigs["read_from"], "registry", "{run:?}");
    assert_eq!(sigs["tag"], sig_tag(&digest), "{run:?}");
    assert_eq!(sigs["present"], true, "{run:?}");
    assert_eq!(sigs["count"], 2, "{run:?}");
    assert_eq!(sigs["signed_by"], json!(["build"]), "{run:?}");
    let not_counted = sigs["not_counted"].as_array().unwrap();
    assert_eq!(not_counted.len(), 1, "{run:?}");
    assert!(
        not_counted[0].as_str().unwrap().contains(not_build),
        "{run:?}"
    );

    // offline: the module and its signatures are served from the cache
    env.base.stop_policy_registry();
    let offline = ["--retry-times", "0"];
    let mut args = vec!["--json", "--trust-key", &trust];
    args.extend(offline);
    let run = inspect_with(&env, &pinned, &args);
    assert_eq!(run.code, 0, "{run:?}");
    let cached = &run.json["artifact"]["signatures"];
    assert_eq!(run.json["artifact"]["from_cache"], true, "{run:?}");
    assert_eq!(cached["read_from"], "cache", "{run:?}");
    assert_eq!(cached["signed_by"], json!(["build"]), "{run:?}");
    assert_eq!(cached["not_counted"], sigs["not_counted"], "{run:?}");

    // as text
    let mut args = vec!["--trust-key", trust.as_str()];
    args.extend(offline);
    let run = inspect_with(&env, &pinned, &args);
    assert_eq!(run.code, 0, "{run:?}");
    let out = &run.stdout;
    assert!(
        out.contains(&format!(
            "signatures: 2 at {} (read from the cache)\n",
            sig_tag(&digest)
        )),
        "{out}"
    );
    assert!(out.contains("  signed by:   build\n"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("  not counted: signature ") && l.ends_with(not_build)),
        "{out}"
    );

    // without a trusted key: counted, none verified
    let run = inspect_with(&env, &pinned, &offline);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("signatures: 2 at "), "{run:?}");
    assert!(
        run.stdout.contains("verified:    none (give --trust-key"),
        "{run:?}"
    );
    assert!(!run.stdout.contains("signed by"), "{run:?}");
    let mut args = vec!["--json"];
    args.extend(offline);
    let run = inspect_with(&env, &pinned, &args);
    assert_eq!(run.code, 0, "{run:?}");
    let sigs = &run.json["artifact"]["signatures"];
    assert_eq!(sigs["count"], 2, "{run:?}");
    assert_eq!(sigs["signed_by"], Value::Null, "{run:?}");
    assert_eq!(sigs["not_counted"], json!([]), "{run:?}");

    // a module file carries no signature to check: a usage error
    let file = path_str(&policy_module("default"));
    let run = env.run(
        &["policy", "inspect", &file, "--trust-key", &trust],
        "inspector",
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--trust-key"), "{run:?}");
}
