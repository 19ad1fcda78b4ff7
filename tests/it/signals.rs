//! SIGTERM and SIGINT, as CI systems cancel jobs: pushgate stops starting
//! requests, exits 143 (130), leaves no temp file or lock behind and no partial
//! meta.json, and the next run converges without waiting for a lock.
//!
//! The push goes through a latency-adding proxy so that it is still running
//! when the signal comes; the signal is sent once the proxy has seen the point
//! of the push the test aims at (polled, never slept for).

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::proxy::{Faults, Proxy};
use crate::support::run::Run;
use crate::support::{Registry, pushgate};
use pushgate_sample::{SampleBuild, write_build};

const BUILD: &str = "41.20261127.1.0";
const ARCHES: [&str; 2] = ["x86_64", "aarch64"];

fn push(repo: &str, wd: &Path) -> Command {
    let mut cmd = pushgate();
    cmd.args(["push", "--repo", repo, "--tag", "stable", "--tag", BUILD])
        .args(["--artifact", "ostree", "--metajsonname", "base-oscontainer"])
        .args(["--tls-verify=false", "--json", "--jobs", "1"])
        .arg("--workdir")
        .arg(wd);
    cmd
}

/// Waits until `proxy` has seen `n` requests matching `method` and `path`.
fn wait_for(proxy: &Proxy, child: &mut Child, method: &str, path: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = proxy
            .log()
            .iter()
            .filter(|e| e.method == method && e.path().contains(path))
            .count();
        if seen >= n {
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "pushgate ended before the point was reached"
        );
        assert!(Instant::now() < deadline, "the point was never reached");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name}");
}

/// The child's exit, within a bound.
fn exit_of(mut child: Child) -> (Option<i32>, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            // the run was asked --json: its failure object is one as documented
            let failure: serde_json::Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {out:?}"));
            assert_eq!(failure["ok"], false, "{failure}");
            crate::support::run::assert_schema(&failure, &format!("{out:?}"));
            return (
                status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        assert!(Instant::now() < deadline, "pushgate did not stop");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// No lock, no temp file in any arch directory.
fn assert_clean(wd: &Path) {
    for arch in ARCHES {
        let dir = wd.join(format!("builds/{BUILD}/{arch}"));
        for e in fs::read_dir(&dir).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !name.ends_with(".tmp") && !name.contains(".lock"),
                "{arch}: left behind {name}"
            );
        }
        let meta = fs::read(dir.join("meta.json")).unwrap();
        serde_json::from_slice::<serde_json::Value>(&meta).expect("meta.json whole");
    }
}

fn interrupt_at(sig: &str, method: &str, path: &str, n: usize, status: i32) {
    let registry = Registry::start();
    let proxy = Proxy::start(
        registry.addr(),
        Faults::none().latency(Duration::from_millis(40)),
    );
    let wd = tempfile::tempdir().unwrap();
    let mut build = SampleBuild::small(BUILD, &ARCHES);
    build.layers = 4;
    write_build(wd.path(), &build).unwrap();
    let mut child = push(&proxy.repo("fcos"), wd.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&proxy, &mut child, method, path, n);
    signal(&child, sig);
    let (code, stderr) = exit_of(child);
    assert_eq!(code, Some(status), "{stderr}");
    assert!(
        stderr.contains(&format!("interrupted by SIG{sig}")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_clean(wd.path());

    // The next run, straight to the registry, converges; the one after is a no-op.
    let rerun = Run::of(&mut push(&registry.repo("fcos"), wd.path()));
    assert!(
        matches!(rerun.outcome(), "pushed" | "recorded"),
        "{}",
        rerun.context()
    );
    let again = Run::of(&mut push(&registry.repo("fcos"), wd.path()));
    assert_eq!(again.ok()["outcome"], "up-to-date");
}

#[test]
fn sigterm_during_blob_uploads_stops_cleanly_and_the_rerun_converges() {
    interrupt_at("TERM", "PUT", "/blobs/uploads/", 2, 143);
}

#[test]
fn sigterm_during_manifest_puts_stops_cleanly_and_the_rerun_converges() {
    interrupt_at("TERM", "PUT", "/manifests/sha256:", 1, 143);
}

#[test]
fn sigint_while_observing_exits_130() {
    interrupt_at("INT", "HEAD", "/blobs/", 1, 130);
}
