//! `--json` always yields one JSON object on stdout, failures included: a CI
//! step that parses stdout gets a document whatever happened, with the same
//! exit status as without `--json`. The command line is read once: the prefixes
//! argparse accepts (`--js`, `--re=`, `--auth=`) are what clap parses and what the
//! failure object reports.

use std::net::{Ipv4Addr, TcpListener};

use crate::support::run::{Run, run, s};
use serde_json::Value;

/// The one JSON object stdout holds.
fn object(r: &Run) -> Value {
    let v: Value = serde_json::from_str(r.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {}", r.context()));
    assert!(v.is_object(), "{}", r.context());
    v
}

/// A port nothing listens on (the listener is closed at once).
fn closed_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn an_unreachable_registry_is_a_failed_object_with_what_was_asked() {
    let port = closed_port();
    let repo = format!("127.0.0.1:{port}/fcos");
    let r = run(&[
        s("push"),
        s("--repo"),
        repo.clone(),
        s("--tag"),
        s("stable"),
        s("--image"),
        s("oci:/nonexistent"),
        s("--tls-verify=false"),
        s("--retry-times"),
        s("0"),
        s("--json"),
    ]);
    assert_eq!(r.code, 1, "{}", r.context());
    let v = object(&r);
    assert_eq!(v["outcome"], "failed");
    assert_eq!(v["ok"], false);
    assert_eq!(v["command"], "push");
    assert_eq!(v["repo"], repo.as_str());
    assert_eq!(v["tags"], serde_json::json!(["stable"]));
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{port}")),
        "{v}"
    );
    assert!(
        r.stderr.contains("pushgate: error:"),
        "still said on stderr"
    );
}

#[test]
fn a_bad_flag_value_is_a_failed_object_and_a_usage_error() {
    let r = run(&[
        s("push"),
        s("--repo=r.io/x"),
        s("--tag=t"),
        s("--image=oci:x"),
        s("--jobs"),
        s("0"),
        s("--json"),
    ]);
    assert_eq!(r.code, 2, "{}", r.context());
    let v = object(&r);
    assert_eq!(v["outcome"], "failed");
    assert_eq!(v["usage_error"], true);
    assert!(v["error"].as_str().unwrap().contains("--jobs"), "{v}");
}

#[test]
fn release_and_policy_commands_fail_as_objects_too() {
    let r = run(&[
        s("release"),
        s("--config"),
        s("/nonexistent/release.toml"),
        s("--json"),
    ]);
    assert_eq!(r.code, 1, "{}", r.context());
    let v = object(&r);
    assert_eq!(v["command"], "release");
    assert!(v["error"].as_str().unwrap().contains("release.toml"), "{v}");

    let r = run(&[
        s("policy"),
        s("inspect"),
        s("/nonexistent/module.wasm"),
        s("--json"),
    ]);
    assert_eq!(r.code, 1, "{}", r.context());
    let v = object(&r);
    assert_eq!(v["command"], "policy inspect");
    assert!(v["error"].as_str().unwrap().contains("module.wasm"), "{v}");
}

#[test]
fn help_is_not_turned_into_an_object() {
    let r = run(&[s("push"), s("--help"), s("--json")]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("Usage"), "{}", r.context());
}

/// The failure object of a push to an unreachable registry, asked with `words`
/// (the repository, tag and JSON flags spelt as the caller likes).
fn unreachable_push(words: &[String]) -> (Run, Value) {
    let mut args = vec![s("push")];
    args.extend(words.iter().cloned());
    args.extend([
        s("--image"),
        s("oci:/nonexistent"),
        s("--tls-verify=false"),
        s("--retry-times"),
        s("0"),
    ]);
    let r = run(&args);
    assert_eq!(r.code, 1, "{}", r.context());
    let v = object(&r);
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["usage_error"], false, "{v}");
    (r, v)
}

#[test]
fn every_prefix_that_works_for_a_flag_works_for_the_failure_object() {
    let port = closed_port();
    let repo = format!("127.0.0.1:{port}/fcos");
    // --js is argparse's prefix of --json; --re= of --repo=; --ta of --tag.
    let spellings = [
        vec![s("--repo"), repo.clone(), s("--tag=stable"), s("--js")],
        vec![format!("--re={repo}"), s("--ta"), s("stable"), s("--json")],
        vec![format!("--re={repo}"), s("--ta=stable"), s("--js")],
    ];
    for words in &spellings {
        let (r, v) = unreachable_push(words);
        assert_eq!(v["command"], "push", "{words:?}: {v}");
        assert_eq!(v["repo"], repo.as_str(), "{words:?}: {v}");
        assert_eq!(v["tags"], serde_json::json!(["stable"]), "{words:?}: {v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains(&format!("127.0.0.1:{port}")),
            "{words:?}: {v}"
        );
        assert!(r.stderr.contains("pushgate: error:"), "{}", r.context());
    }
    // --auth= (argparse's prefix of --authfile=) is read as --authfile: a file
    // that does not exist is what fails, said in the object.
    let (_, v) = unreachable_push(&[
        format!("--re={repo}"),
        s("--ta=stable"),
        s("--auth=/nonexistent/auth.json"),
        s("--js"),
    ]);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/auth.json"),
        "{v}"
    );
    // the alias reports its canonical command
    let r = run(&[
        s("push-container-manifest"),
        format!("--re={repo}"),
        s("--ta=stable"),
        s("--image=oci:/nonexistent"),
        s("--tls=false"),
        s("--retry-t=0"),
        s("--js"),
    ]);
    assert_eq!(r.code, 1, "{}", r.context());
    assert_eq!(object(&r)["command"], "push", "{}", r.context());
}

#[test]
fn a_usage_error_reads_the_expanded_argv_too() {
    // clap refuses --jobs 0; the object still has what was asked, through prefixes.
    let r = run(&[
        s("push"),
        s("--re=r.io/x"),
        s("--ta"),
        s("t1"),
        s("--tag=t2"),
        s("--ima=oci:x"),
        s("--jo"),
        s("0"),
        s("--js"),
    ]);
    assert_eq!(r.code, 2, "{}", r.context());
    let v = object(&r);
    assert_eq!(v["usage_error"], true, "{v}");
    assert_eq!(v["command"], "push", "{v}");
    assert_eq!(v["repo"], "r.io/x", "{v}");
    assert_eq!(v["tags"], serde_json::json!(["t1", "t2"]), "{v}");
    assert!(v["error"].as_str().unwrap().contains("--jobs"), "{v}");

    // An ambiguous prefix elsewhere on the line does not hide --js.
    let r = run(&[
        s("push"),
        s("--re=r.io/x"),
        s("--ta=t"),
        s("--a"),
        s("x"),
        s("--js"),
    ]);
    assert_eq!(r.code, 2, "{}", r.context());
    let v = object(&r);
    assert_eq!(v["usage_error"], true, "{v}");
    assert!(v["error"].as_str().unwrap().contains("ambiguous"), "{v}");

    // Nothing after `--` is a flag: no object.
    let r = run(&[s("push"), s("--re=r.io/x"), s("--"), s("--json")]);
    assert_eq!(r.code, 2, "{}", r.context());
    assert!(r.stdout.is_empty(), "{}", r.context());
}

#[test]
fn a_malformed_flag_value_is_a_usage_error_in_the_object() {
    let base = [s("push"), s("--image=oci:x"), s("--json")];
    let cases: [(&[&str], &str); 5] = [
        (&["--repo", "UPPER/Case", "--tag=t"], "UPPER/Case"),
        (&["--repo=r.io/x:tag", "--tag=t"], "r.io/x:tag"),
        (&["--repo=r.io/x", "--tag=-bad"], "-bad"),
        (&["--repo=r.io/x", "--tag", "bad tag"], "bad tag"),
        (&["--re=r.io/x", "--ta=t", "--policy=oci://"], "oci://"),
    ];
    for (words, needle) in cases {
        let mut args = base.to_vec();
        args.extend(words.iter().map(|w| s(w)));
        let r = run(&args);
        assert_eq!(r.code, 2, "{words:?}: {}", r.context());
        let v = object(&r);
        assert_eq!(v["usage_error"], true, "{words:?}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains(needle),
            "{words:?}: {v}"
        );
        assert!(r.stderr.contains(needle), "{}", r.context());
    }
    // --arch is checked as a cosa basearch, the known ones named.
    let r = run(&[
        s("push"),
        s("--repo=r.io/x"),
        s("--tag=t"),
        s("--artifact=ostree"),
        s("--metajsonname=k"),
        s("--arch=sparc"),
        s("--json"),
    ]);
    assert_eq!(r.code, 2, "{}", r.context());
    let v = object(&r);
    assert_eq!(v["usage_error"], true, "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(error.contains("sparc") && error.contains("x86_64"), "{v}");
    // Without --json: the same status, nothing on stdout.
    let r = run(&[
        s("push"),
        s("--repo=r.io/x"),
        s("--tag=-bad"),
        s("--image=oci:x"),
    ]);
    assert_eq!(r.code, 2, "{}", r.context());
    assert!(r.stdout.is_empty(), "{}", r.context());
}

#[test]
fn a_problem_with_the_data_stays_a_failure_not_a_usage_error() {
    let wd = tempfile::tempdir().unwrap();
    let r = run(&[
        s("push"),
        s("--repo=127.0.0.1:1/x"),
        s("--tag=t"),
        s("--artifact=ostree"),
        s("--metajsonname=k"),
        s("--build=nope"),
        format!("--workdir={}", wd.path().display()),
        s("--json"),
    ]);
    assert_eq!(r.code, 1, "{}", r.context());
    assert_eq!(object(&r)["usage_error"], false, "{}", r.context());
}
