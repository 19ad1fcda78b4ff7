//! `--json` always yields one JSON object on stdout, failures included: a CI
//! step that parses stdout gets a document whatever happened, with the same
//! exit status as without `--json`.

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

#[test]
fn an_unreachable_registry_is_a_failed_object_with_what_was_asked() {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
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
