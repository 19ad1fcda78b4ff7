//! How the containers of a release share uploads: each uploads `--jobs` blobs at
//! once, as it would pushed alone (so a release where each connection is the
//! limit goes about as fast as its largest container), and `--total-jobs` bounds
//! them all. A blob's PUT is held at the fault proxy in front of a real registry,
//! and the proxy's record (requests in arrival order) shows what went on meanwhile.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::proxy::{Faults, Proxy, ProxyEvent, Trip};
use crate::support::run::{Run, path_str};
use crate::support::{Registry, pushgate};
use pushgate_sample::{SampleBuild, write_build};

const BUILD: &str = "41.20261206.2.0";

/// A workdir with the OS container and the extensions container of one build
/// (x86_64), and a release config pushing them to `fcos` and `fcos-extensions`
/// through `proxy`.
fn product(proxy: &Proxy) -> tempfile::TempDir {
    product_with(proxy, "")
}

/// [`product`], with `top` (TOML) at the top of the config.
fn product_with(proxy: &Proxy, top: &str) -> tempfile::TempDir {
    let wd = tempfile::tempdir().unwrap();
    write_build(wd.path(), &SampleBuild::product(BUILD, &["x86_64"])).expect("write sample build");
    let config = format!(
        r#"workdir = "."
build = "latest"
{top}

[[container]]
name = "oscontainer"
artifact = "ostree"
key = "base-oscontainer"
repo = "{os}"
tags = ["stable"]

[[container]]
name = "extensions"
artifact = "extensions-container"
key = "extensions-container"
repo = "{ext}"
tags = ["stable"]
"#,
        os = proxy.repo("fcos"),
        ext = proxy.repo("fcos-extensions"),
    );
    std::fs::write(wd.path().join("release.toml"), config).unwrap();
    wd
}

fn release(wd: &Path, extra: &[&str]) -> Command {
    let mut cmd = pushgate();
    cmd.arg("release")
        .arg("--config")
        .arg(path_str(&wd.join("release.toml")))
        .args(["--tls-verify=false", "--json", "--retry-delay", "20ms"])
        .args(extra)
        .current_dir(wd);
    cmd
}

fn is_blob_put(e: &ProxyEvent) -> bool {
    e.method == "PUT" && e.path().contains("/blobs/uploads/")
}

/// The digest a blob PUT closes its upload with (`?digest=...`).
fn blob_of(target: &str) -> &str {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let digest = query.split('&').find_map(|kv| kv.strip_prefix("digest="));
    digest.expect("a blob PUT names its digest")
}

/// The repository a request's path names (`/v2/REPO/...`).
fn repo_of(path: &str) -> &str {
    let path = path.strip_prefix("/v2/").unwrap_or_default();
    ["/blobs/", "/manifests/"]
        .iter()
        .find_map(|sep| path.split_once(sep).map(|(repo, _)| repo))
        .unwrap_or_default()
}

#[test]
fn each_container_of_a_release_uploads_at_its_own_jobs() {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.addr(), Faults::none());
    let wd = product(&proxy);
    // The run's first blob PUT is held until the proxy goes; with `--jobs 1`
    // its container can upload nothing more meanwhile, the other container
    // everything it has, and tag it.
    let held = proxy.trip_on(1, "PUT", "/blobs/uploads/", Trip::BeforeForward);
    std::thread::scope(|scope| {
        let mut cmd = release(wd.path(), &["--jobs", "1"]);
        let running = scope.spawn(move || Run::of(&mut cmd));
        let held = held
            .recv_timeout(Duration::from_secs(120))
            .expect("a blob PUT came");
        let (seq, mine) = (held.seq, repo_of(held.path()).to_string());
        let other = if mine == "fcos" {
            "fcos-extensions"
        } else {
            "fcos"
        };
        let tagged = format!("/v2/{other}/manifests/stable");
        let deadline = Instant::now() + Duration::from_secs(120);
        while !registry
            .writes()
            .iter()
            .any(|r| r.path == tagged && r.status / 100 == 2)
        {
            assert!(
                Instant::now() < deadline,
                "{other} was not tagged while {mine}'s blob was held: {:?}",
                proxy.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // What went on while the blob was held: the other container's blobs,
        // and none of this one's.
        let after: Vec<ProxyEvent> = proxy.log().into_iter().filter(|e| e.seq > seq).collect();
        assert!(
            after
                .iter()
                .any(|e| is_blob_put(e) && repo_of(e.path()) == other),
            "{other} uploaded no blob meanwhile: {after:?}"
        );
        assert!(
            !after
                .iter()
                .any(|e| is_blob_put(e) && repo_of(e.path()) == mine),
            "{mine} uploaded more than --jobs at once: {after:?}"
        );
        // The held container cannot finish now (its registry is gone); the
        // other landed.
        drop(proxy);
        let run = running.join().unwrap();
        let name = |repo: &str| {
            if repo == "fcos" {
                "oscontainer"
            } else {
                "extensions"
            }
        };
        assert_eq!(
            run.release_result(name(other))["outcome"],
            "pushed",
            "{run:?}"
        );
        assert_eq!(run.code, 1, "{run:?}");
    });
}

#[test]
fn total_jobs_bounds_the_uploads_of_every_container_together() {
    assert_one_upload_at_a_time("", &["--total-jobs", "1"]);
}

#[test]
fn the_configs_total_jobs_bounds_them_and_the_flag_wins_over_it() {
    assert_one_upload_at_a_time("total-jobs = 1", &[]);
    assert_one_upload_at_a_time("total-jobs = 64", &["--total-jobs", "1"]);
}

#[test]
fn a_total_jobs_of_zero_is_refused_naming_the_config() {
    let proxy = Proxy::start("127.0.0.1:9", Faults::none());
    let wd = product_with(&proxy, "total-jobs = 0");
    let run = Run::of(&mut release(wd.path(), &[]));
    assert_eq!(run.code, 1, "{run:?}");
    let err = run.json["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("release.toml") && err.contains("total-jobs = 0"),
        "{run:?}"
    );
}

/// A release of the product with `top` in its config and `flags`, whose first
/// blob PUT is held until the client gives up on it (the stall timeout) and
/// sends it again: with one upload in all, nothing else goes up meanwhile,
/// though each container may upload 4 at once.
fn assert_one_upload_at_a_time(top: &str, flags: &[&str]) {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.addr(), Faults::none());
    let wd = product_with(&proxy, top);
    let held = proxy.trip_on(1, "PUT", "/blobs/uploads/", Trip::BeforeForward);
    let mut args = vec!["--jobs", "4", "--stall-timeout", "1s"];
    args.extend_from_slice(flags);
    let run = Run::of(&mut release(wd.path(), &args));
    assert_eq!(run.code, 0, "{run:?}");
    let held = held.try_recv().expect("a blob PUT was held");
    let (seq, log) = (held.seq, proxy.log());
    let next = log
        .iter()
        .find(|e| e.seq > seq && is_blob_put(e))
        .expect("blob PUTs after the held one");
    assert_eq!(
        (repo_of(next.path()), blob_of(&next.target)),
        (repo_of(held.path()), blob_of(&held.target)),
        "the next blob PUT was not the held blob's again: {log:?}"
    );
    // Both containers had blobs left to upload when the first was held.
    for repo in ["fcos", "fcos-extensions"] {
        assert!(
            log.iter()
                .any(|e| e.seq > seq && is_blob_put(e) && repo_of(e.path()) == repo),
            "{repo}: {log:?}"
        );
    }
}
