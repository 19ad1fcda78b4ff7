//! A registry's bad days, through a fault-injecting proxy of ours in front of the
//! real docker-registry: 503 and 429 with Retry-After, connections reset before
//! or after the registry did the write, answers cut off, chunked uploads cut
//! halfway, a seeded mix of all of it, and concurrent pushes of one build.
//! Every push must finish in one run with the exact result (checked with
//! skopeo against the registry directly), and never make a fault worse: no
//! completed blob uploaded twice, no write repeated without a check.

use std::path::Path;
use std::process::Command;

use crate::support::proxy::{Action, Faults, Proxy, Rule};
use crate::support::run::{Run, digest_at, list_digests, raw_json};
use crate::support::{Registry, Request, pushgate};
use pushgate_sample::{SampleBuild, write_build};
use serde_json::Value;

const BUILD: &str = "41.20261127.1.0";
const ARCHES4: [&str; 4] = ["x86_64", "aarch64", "ppc64le", "s390x"];

fn build(wd: &Path, arches: &[&str], layers: usize, layer_size: u64) {
    let b = SampleBuild::ostree(BUILD, arches, layers, layer_size);
    write_build(wd, &b).expect("write sample build");
}

/// `pushgate push` of the build in `wd` to `repo` (the proxy's address), with
/// quick retries so that a test of many faults stays short.
fn push(repo: &str, wd: &Path, extra: &[&str]) -> Command {
    let mut cmd = pushgate();
    cmd.args([
        "push",
        "--repo",
        repo,
        "--tag",
        "stable",
        "--tag",
        BUILD,
        "--artifact",
        "ostree",
        "--metajsonname",
        "base-oscontainer",
        "--tls-verify=false",
        "--json",
        "--retry-delay",
        "20ms",
        "--retry-times",
        "8",
    ])
    .arg("--workdir")
    .arg(wd)
    .args(extra);
    cmd
}

/// Asserts the push landed exactly: both tags serve the reported list (read
/// from the registry directly, not through the proxy), and it lists the
/// reported per-arch digests.
fn assert_landed(registry: &Registry, run: &Run) {
    let report = run.ok();
    assert_eq!(run.outcome(), "pushed", "{}", run.context());
    let list = report["manifest_list_digest"].as_str().unwrap();
    let direct = registry.repo("fcos");
    for tag in ["stable", BUILD] {
        assert_eq!(digest_at(&format!("{direct}:{tag}")), list, "{tag}");
    }
    let mut want: Vec<String> = report["digests"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let mut have = list_digests(&raw_json(&format!("{direct}:stable")));
    want.sort();
    have.sort();
    assert_eq!(have, want);
}

fn meta_of(wd: &Path, arch: &str) -> Value {
    let p = wd.join(format!("builds/{BUILD}/{arch}/meta.json"));
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// Takes the push's entry out of every arch's meta.json, for the next round.
fn forget_push(wd: &Path) {
    for arch in ARCHES4 {
        let mut meta = meta_of(wd, arch);
        meta.as_object_mut().unwrap().remove("base-oscontainer");
        let p = wd.join(format!("builds/{BUILD}/{arch}/meta.json"));
        std::fs::write(p, serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
    }
}

/// The blob uploads a registry saw completed (the PUT that ends an upload).
fn completed_uploads(reqs: &[Request]) -> usize {
    reqs.iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/blobs/uploads/") && r.status == 201)
        .count()
}

#[test]
fn a_503_and_a_429_with_retry_after_are_retried_and_counted() {
    let registry = Registry::start();
    let proxy = Proxy::start(
        registry.addr(),
        Faults::none()
            .rule(Rule::nth(1, "HEAD", "/blobs/", Action::status(503)))
            .rule(Rule::nth(
                1,
                "PUT",
                "/manifests/",
                Action::status_retry_after(429, 1),
            )),
    );
    let wd = tempfile::tempdir().unwrap();
    build(wd.path(), &ARCHES4[..2], 2, 2048);
    let run = Run::of(&mut push(&proxy.repo("fcos"), wd.path(), &[]));
    assert_landed(&registry, &run);
    assert_eq!(run.json["retries"], 2, "{}", run.context());
    // one line per retry: what, why, the next wait
    let lines: Vec<&str> = run.stderr.lines().filter(|l| l.contains("retry")).collect();
    assert_eq!(lines.len(), 2, "{}", run.stderr);
    assert!(
        lines[0].contains("checking blob") && lines[0].contains("503"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("putting manifest")
            && lines[1].contains("429")
            && lines[1].contains("in 1.0s"),
        "Retry-After is honoured: {}",
        lines[1]
    );
}

#[test]
fn a_blob_put_whose_answer_was_lost_is_looked_for_not_uploaded_again() {
    let registry = Registry::start();
    let proxy = Proxy::start(
        registry.addr(),
        Faults::none().rule(Rule::nth(
            2,
            "PUT",
            "/blobs/uploads/",
            Action::ResetAfterUpstream,
        )),
    );
    let wd = tempfile::tempdir().unwrap();
    build(wd.path(), &ARCHES4[..2], 3, 4096);
    let run = Run::of(&mut push(&proxy.repo("fcos"), wd.path(), &["--jobs", "1"]));
    assert_landed(&registry, &run);
    let lost = proxy
        .log()
        .into_iter()
        .find(|e| e.fault == Some(Action::ResetAfterUpstream))
        .expect("the fault happened");
    assert_eq!(
        lost.upstream_status,
        Some(201),
        "the registry took the blob"
    );
    let reqs = registry.requests();
    let blobs = run.ok()["uploaded_blobs"].as_u64().unwrap() as usize;
    assert_eq!(
        completed_uploads(&reqs),
        blobs,
        "every blob uploaded once, the lost one not again"
    );
}

#[test]
fn a_manifest_put_whose_answer_was_lost_is_checked_not_repeated() {
    let registry = Registry::start();
    let proxy = Proxy::start(
        registry.addr(),
        Faults::none()
            .rule(Rule::nth(
                1,
                "PUT",
                "/manifests/sha256:",
                Action::ResetAfterUpstream,
            ))
            .rule(Rule::nth(
                1,
                "PUT",
                "/manifests/stable",
                Action::CutAnswer { bytes: 20 },
            )),
    );
    let wd = tempfile::tempdir().unwrap();
    build(wd.path(), &ARCHES4[..2], 1, 1024);
    let run = Run::of(&mut push(&proxy.repo("fcos"), wd.path(), &[]));
    assert_landed(&registry, &run);
    let puts: Vec<Request> = registry
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/manifests/"))
        .collect();
    // two per-arch manifests, the list, two tags: each put once
    assert_eq!(puts.len(), 5, "{puts:?}");
    assert!(run.json["retries"].as_u64().unwrap() >= 2);
}

/// PATCH, GET and POST requests on upload URLs, as the registry saw them.
fn upload_requests(reqs: &[Request], method: &str) -> Vec<Request> {
    reqs.iter()
        .filter(|r| r.method == method && r.path.contains("/blobs/uploads/"))
        .cloned()
        .collect()
}

/// Pushes one arch with one 64 KiB (incompressible) layer in chunks of 8 KiB,
/// the 3rd chunk meeting `cut`; returns the registry and the run.
fn cut_third_chunk(cut: Action) -> (Registry, Run) {
    let registry = Registry::start();
    let proxy = Proxy::start(
        registry.addr(),
        Faults::none().rule(Rule::nth(3, "PATCH", "/blobs/uploads/", cut)),
    );
    let wd = tempfile::tempdir().unwrap();
    build(wd.path(), &ARCHES4[..1], 1, 64 * 1024);
    let run = Run::of(
        push(&proxy.repo("fcos"), wd.path(), &["--jobs", "1"]).env("PUSHGATE_CHUNK_SIZE", "8192"),
    );
    (registry, run)
}

#[test]
fn a_chunked_upload_cut_halfway_resumes_where_the_registry_stands() {
    // The connection to the registry drops as the 3rd chunk goes out.
    let (registry, run) = cut_third_chunk(Action::ResetBeforeForward);
    assert_landed(&registry, &run);
    let reqs = registry.requests();
    let status = upload_requests(&reqs, "GET");
    assert_eq!(status.len(), 1, "the upload's state was asked for once");
    assert_eq!(status[0].status, 204);
    // The layer (a little over 64 KiB compressed: 9 chunks) went up chunk by
    // chunk, each once: the registry never saw the cut chunk, and the upload
    // resumed at its offset instead of starting over.
    let patches = upload_requests(&reqs, "PATCH");
    let layer_bytes: u64 = run.json["uploaded_bytes"].as_u64().unwrap();
    assert!(layer_bytes > 64 * 1024);
    assert!(
        (8..=10).contains(&patches.len()),
        "{} PATCHes: {patches:?}",
        patches.len()
    );
    assert!(patches.iter().all(|p| p.status == 202), "{patches:?}");
    assert_eq!(
        upload_requests(&reqs, "POST").len(),
        run.json["uploaded_blobs"].as_u64().unwrap() as usize,
        "no upload started over"
    );
}

#[test]
fn a_chunk_taken_but_unanswered_starts_the_upload_over_and_still_lands() {
    // distribution's upload URLs carry the offset they expect: after a chunk it
    // took but whose answer was lost, it refuses the old URL (and drops the
    // upload), so the only way on is a fresh upload, after a look for the blob.
    let (registry, run) = cut_third_chunk(Action::ResetAfterUpstream);
    assert_landed(&registry, &run);
    let reqs = registry.requests();
    assert_eq!(completed_uploads(&reqs), 2, "config and layer, once each");
    assert_eq!(
        upload_requests(&reqs, "POST").len(),
        3,
        "the layer's upload started over once"
    );
}

#[test]
fn a_seeded_mix_of_faults_still_lands_the_exact_result_in_one_run() {
    let wd = tempfile::tempdir().unwrap();
    build(wd.path(), &ARCHES4, 3, 8 * 1024);
    for seed in 1..=10 {
        let registry = Registry::start();
        let proxy = Proxy::start(
            registry.addr(),
            Faults::none().random(
                seed,
                0.1,
                vec![
                    Action::status(503),
                    Action::status_retry_after(429, 0),
                    Action::ResetBeforeForward,
                    Action::ResetAfterUpstream,
                    Action::CutAnswer { bytes: 40 },
                ],
            ),
        );
        let run =
            Run::of(push(&proxy.repo("fcos"), wd.path(), &[]).env("PUSHGATE_CHUNK_SIZE", "16384"));
        assert_eq!(run.code, 0, "seed {seed}: {}", run.context());
        assert_landed(&registry, &run);
        let faults = proxy.log().iter().filter(|e| e.fault.is_some()).count();
        assert!(faults > 0, "seed {seed}: no fault was injected");
        // Never a completed blob twice.
        let blobs = run.json["uploaded_blobs"].as_u64().unwrap() as usize;
        assert_eq!(
            completed_uploads(&registry.requests()),
            blobs,
            "seed {seed}"
        );
        // meta.json of every arch records the list; the next run is a no-op.
        let again = Run::of(&mut push(&proxy.repo("fcos"), wd.path(), &[]));
        assert!(
            matches!(again.outcome(), "up-to-date"),
            "seed {seed}: {}",
            again.context()
        );
        // Put meta.json back for the next seed.
        forget_push(wd.path());
    }
}

#[test]
fn four_concurrent_pushes_of_one_build_all_succeed() {
    let wd = tempfile::tempdir().unwrap();
    build(wd.path(), &ARCHES4, 3, 16 * 1024);
    for round in 0..10 {
        let registry = Registry::start();
        let repo = registry.repo("fcos");
        let children: Vec<_> = (0..4)
            .map(|_| {
                push(&repo, wd.path(), &[])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn pushgate")
            })
            .collect();
        let mut lists = Vec::new();
        for child in children {
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "round {round}: {stderr}");
            let report: Value = serde_json::from_slice(&out.stdout).unwrap();
            crate::support::run::assert_schema(&report, &stderr);
            lists.push(report["manifest_list_digest"].as_str().unwrap().to_string());
        }
        lists.dedup();
        assert_eq!(lists.len(), 1, "round {round}: one list for all");
        assert_eq!(digest_at(&format!("{repo}:stable")), lists[0]);
        for arch in ARCHES4 {
            assert_eq!(
                meta_of(wd.path(), arch)["base-oscontainer"]["manifest-list-digest"],
                lists[0],
                "round {round} {arch}"
            );
        }
        forget_push(wd.path());
    }
}

#[test]
fn when_the_retries_are_spent_the_error_says_what_and_nothing_later_is_written() {
    let registry = Registry::start();
    let proxy = Proxy::start(
        registry.addr(),
        Faults::none().rule(Rule::every("PUT", "/manifests/", Action::status(503))),
    );
    let wd = tempfile::tempdir().unwrap();
    build(wd.path(), &ARCHES4[..2], 1, 1024);
    let before: Vec<Vec<u8>> = ARCHES4[..2]
        .iter()
        .map(|a| std::fs::read(wd.path().join(format!("builds/{BUILD}/{a}/meta.json"))).unwrap())
        .collect();
    let run = Run::of(&mut push(
        &proxy.repo("fcos"),
        wd.path(),
        &["--retry-times", "2"],
    ));
    assert_eq!(run.code, 1, "{}", run.context());
    let err = run.stderr.lines().last().unwrap_or_default();
    assert!(
        err.contains(proxy.addr())
            && err.contains("putting manifest sha256:")
            && err.contains("HTTP 503")
            && err.contains("after 3 attempts"),
        "{err}"
    );
    // No list, no tag, no meta.json: nothing after the failed step.
    let puts: Vec<Request> = registry
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/manifests/"))
        .collect();
    assert!(puts.is_empty(), "{puts:?}");
    let after: Vec<Vec<u8>> = ARCHES4[..2]
        .iter()
        .map(|a| std::fs::read(wd.path().join(format!("builds/{BUILD}/{a}/meta.json"))).unwrap())
        .collect();
    assert_eq!(after, before);
}
