//! The policy contract grows without breaking: a module built against 0.1.0,
//! checked in as it was built (tests/policies/contract-0.1.0), still loads,
//! passes its own cases, decides as the newest build of the same policy does,
//! and decides a real push whose facts carry 0.2.0's signature facts it does
//! not know.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::support::run::{path_str, run, run_in, s};
use crate::support::{Registry, policy_module};
use pushgate_sample::{SampleBuild, write_build};

const BUILD: &str = "41.20261127.1.0";
const NEXT_BUILD: &str = "41.20261128.1.0";
const OLD: &str = "pushgate:policy/policy@0.1.0";
const NEWEST: &str = "pushgate:policy/policy@0.2.0";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The release-tags module as built against 0.1.0.
fn frozen() -> PathBuf {
    root().join("tests/policies/contract-0.1.0/release-tags.wasm")
}

fn cases() -> PathBuf {
    root().join("policies/release-tags/cases")
}

#[test]
fn a_module_built_against_0_1_0_is_run_by_this_host_and_says_so() {
    let out = run(&[s("policy"), s("inspect"), s("--json"), path_str(&frozen())]);
    let doc = out.ok();
    assert_eq!(doc["exports"], json!([OLD]), "{}", out.context());
    assert_eq!(doc["loaded"]["ok"]["contract"], OLD);
    assert_eq!(doc["loaded"]["ok"]["name"], "release-tags");
    assert_eq!(doc["host_contracts"], json!([NEWEST, OLD]));

    let check = run(&[s("policy"), s("check"), path_str(&frozen())]);
    assert_eq!(check.code, 0, "{}", check.context());
    assert!(
        check
            .stdout
            .contains(&format!("a component implementing {OLD}"))
            && !check.stdout.contains("PROBLEM"),
        "{}",
        check.context()
    );

    let version = run(&[s("--version")]);
    assert!(
        version
            .stdout
            .contains(&format!("policy contracts: {NEWEST}, {OLD}")),
        "{}",
        version.context()
    );
}

#[test]
fn a_module_built_against_0_1_0_passes_its_cases_and_decides_as_its_newest_build() {
    let test = run(&[
        s("policy"),
        s("test"),
        path_str(&frozen()),
        path_str(&cases()),
    ]);
    assert_eq!(test.code, 0, "{}", test.context());
    assert!(
        test.stdout.contains(" passed, 0 failed"),
        "{}",
        test.context()
    );

    let newest = policy_module("release-tags");
    let diff = run(&[
        s("policy"),
        s("diff"),
        s("--json"),
        s("--fail-on-change"),
        path_str(&frozen()),
        path_str(&newest),
        path_str(&cases()),
    ]);
    let doc = diff.ok();
    assert_eq!(doc["changed"], json!([]), "{}", diff.context());
    assert!(
        doc["cases"].as_u64().unwrap_or(0) >= 10,
        "{}",
        diff.context()
    );
}

#[test]
fn a_module_built_against_0_1_0_decides_a_real_push_whose_facts_it_only_partly_knows() {
    let reg = Registry::start();
    let wd = tempfile::tempdir().unwrap();
    let arches = ["x86_64", "aarch64"];
    write_build(wd.path(), &SampleBuild::small(BUILD, &arches)).unwrap();
    write_build(wd.path(), &SampleBuild::small(NEXT_BUILD, &arches)).unwrap();
    // A trusted key makes the host gather 0.2.0's signature facts; the 0.1.0
    // module is given the facts 0.1.0 knows.
    let key = crate::sign_interop::cosign_keys();
    let settings = r#"{"immutable": ["*.*.*"], "floating": ["stable"]}"#;
    let push = |build: &str, tag: &str| {
        run_in(
            wd.path(),
            &[
                s("push"),
                s("--repo"),
                reg.repo("fcos"),
                s("--tag"),
                s("stable"),
                s("--tag"),
                s(tag),
                s("--artifact"),
                s("ostree"),
                s("--metajsonname"),
                s("base-oscontainer"),
                s("--build"),
                s(build),
                s("--workdir"),
                path_str(wd.path()),
                s("--tls-verify=false"),
                s("--policy"),
                path_str(&frozen()),
                s("--policy-settings"),
                s(settings),
                s("--trust-key"),
                format!("build={}", key.public.display()),
                s("--json"),
            ],
        )
    };
    let first = push(BUILD, BUILD);
    first.ok();
    assert_eq!(first.outcome(), "pushed", "{}", first.context());
    assert!(
        first.decided_by().starts_with("policy release-tags"),
        "{}",
        first.context()
    );

    // The next build under the first build's release tag: the module refuses
    // to move it, as release-tags does.
    let moved = push(NEXT_BUILD, BUILD);
    assert_eq!(moved.code, 1, "{}", moved.context());
    assert_eq!(moved.outcome(), "failed", "{}", moved.context());
    assert!(
        moved.reason().contains(BUILD),
        "the reason names the immutable tag: {}",
        moved.context()
    );
}
