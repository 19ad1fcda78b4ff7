//! The command line's shape: each subcommand takes only the flags it uses, a
//! malformed value is a usage error (exit 2) in every subcommand, and `--help`
//! groups push's thirty-odd flags under headings, every flag kept.

use std::collections::BTreeMap;

use crate::support::run::{Run, run, s};

fn words(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| s(a)).collect()
}

/// `pushgate ARGS --help`, which must succeed.
fn help(args: &[&str]) -> String {
    let mut all = words(args);
    all.push(s("--help"));
    let r = run(&all);
    assert_eq!(r.code, 0, "{}", r.context());
    r.stdout
}

/// The long flags of a `--help` text, by the heading they are listed under.
fn by_heading(help: &str) -> BTreeMap<String, Vec<String>> {
    let flag = regex::Regex::new(r"^\s+(?:-\w, )?(--[a-z0-9-]+)").unwrap();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut heading = String::new();
    for line in help.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            heading = line.trim_end_matches(':').to_string();
        } else if let Some(c) = flag.captures(line) {
            out.entry(heading.clone())
                .or_default()
                .push(c[1].to_string());
        }
    }
    out
}

fn usage_error(r: &Run, needle: &str) {
    assert_eq!(r.code, 2, "{}", r.context());
    assert!(r.stderr.contains(needle), "{needle} in {}", r.context());
}

#[test]
fn push_help_groups_every_flag_under_a_heading() {
    let groups = by_heading(&help(&["push"]));
    let want: [(&str, &[&str]); 7] = [
        (
            "What to push",
            &[
                "--repo",
                "--tag",
                "--image",
                "--artifact",
                "--metajsonname",
                "--build",
                "--arch",
                "--workdir",
                "--v2s2",
                "--force",
                "--dry-run",
            ],
        ),
        (
            "Registry and credentials",
            &["--authfile", "--tls-verify", "--cert-dir", "--plain-http"],
        ),
        (
            "Retries and transfers",
            &[
                "--retry-times",
                "--retry-delay",
                "--stall-timeout",
                "--debug",
                "--jobs",
                "--chunk-size",
            ],
        ),
        (
            "Policy",
            &[
                "--policy",
                "--policy-settings",
                "--policy-fuel",
                "--policy-memory-mib",
                "--policy-timeout-ms",
                "--decision-log",
                "--decision-log-facts",
                "--require-signed-policies",
            ],
        ),
        (
            "Signing",
            &[
                "--sign-by-sigstore-private-key",
                "--sign-passphrase-file",
                "--trust-key",
            ],
        ),
        ("Output", &["--json", "--quiet", "--write-digest-to-file"]),
        ("Options", &["--help"]),
    ];
    for (heading, flags) in want {
        let mut got = groups.get(heading).cloned().unwrap_or_default();
        got.sort();
        let mut flags = flags.to_vec();
        flags.sort();
        assert_eq!(got, flags, "under {heading:?}: {groups:#?}");
    }
    assert_eq!(groups.len(), want.len(), "no other heading: {groups:#?}");
    // in this order
    let text = help(&["push"]);
    let at = |h: &str| {
        text.find(&format!("\n{h}:\n"))
            .unwrap_or_else(|| panic!("{h}"))
    };
    let order: Vec<usize> = want.iter().take(5).map(|(h, _)| at(h)).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");

    // release shares the groups, with its own first
    let groups = by_heading(&help(&["release"]));
    assert_eq!(
        groups["What to release"],
        ["--config", "--build", "--force", "--dry-run"]
    );
    assert!(groups["Policy"].contains(&s("--require-pinned-policies")));
    assert!(groups["Policy"].contains(&s("--require-signed-policies")));
    assert_eq!(groups["Output"], ["--json", "--quiet"]);
}

#[test]
fn the_cosa_alias_has_the_same_flags() {
    assert_eq!(
        by_heading(&help(&["push-container-manifest"])),
        by_heading(&help(&["push"]))
    );
}

#[test]
fn policy_facts_refuses_what_only_a_push_does() {
    let base = [
        "policy",
        "facts",
        "--repo=r.io/x",
        "--tag=t",
        "--image=oci:x",
    ];
    for extra in [
        &["--write-digest-to-file", "d"][..],
        &["--json"],
        &["--decision-log", "l.jsonl"],
    ] {
        let mut args = words(&base);
        args.extend(words(extra));
        usage_error(&run(&args), extra[0]);
    }
    // --force and --dry-run say which push is observed (the facts' `force`
    // and `dry-run`): kept, and said so.
    let groups = by_heading(&help(&["policy", "facts"]));
    assert!(
        groups["What to push"].contains(&s("--force")),
        "{groups:#?}"
    );
    let text = help(&["policy", "facts"]);
    assert!(text.contains("the facts say `force`"), "{text}");
    // --from-log stands alone
    let r = run(&words(&["policy", "facts", "--from-log", "l", "--force"]));
    usage_error(&r, "--force");
}

#[test]
fn policy_commands_take_no_transfer_or_push_flags() {
    let cases: [&[&str]; 4] = [
        &["policy", "inspect", "m.wasm", "--jobs", "2"],
        &["policy", "pull", "oci://r.io/p:1", "--force"],
        &["policy", "test", "m.wasm", "c.json", "--dry-run"],
        &["policy", "new", "x", "--json"],
    ];
    for args in cases {
        let flag = args.iter().rev().find(|a| a.starts_with("--")).unwrap();
        usage_error(&run(&words(args)), flag);
    }
}

#[test]
fn a_malformed_value_is_a_usage_error_in_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let cases: [(&[&str], &str); 7] = [
        (&["policy", "new", "My.Rules", "--dir", &d], "My.Rules"),
        (&["policy", "new", "1st", "--dir", &d], "1st"),
        (&["policy", "pull", "r.io/p:1"], "r.io/p:1"),
        (&["policy", "push", "m.wasm", "oci://"], "oci://"),
        (&["policy", "inspect", "oci://x@sha256:nothex"], "nothex"),
        (
            &[
                "policy",
                "facts",
                "--repo=r.io/x",
                "--tag=.t",
                "--image=oci:x",
            ],
            ".t",
        ),
        (&["release", "--config=c.toml", "--jobs=0"], "--jobs"),
    ];
    for (args, needle) in cases {
        usage_error(&run(&words(args)), needle);
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "policy new created nothing"
    );
    // With --json, the object says so.
    let r = run(&words(&["policy", "pull", "r.io/p:1", "--json"]));
    assert_eq!(r.code, 2, "{}", r.context());
    assert_eq!(r.json["usage_error"], true, "{}", r.context());
    assert_eq!(r.json["command"], "policy pull", "{}", r.context());
}
