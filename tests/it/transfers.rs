//! The executor on the days release jobs meet: a registry that caps request
//! bodies (413, as nginx's `client_max_body_size` does), a 429 whose
//! `Retry-After` must slow every request to that host, and a big layer through
//! a link that fails one request in five. Against the real registry, behind
//! the fault proxy of tests/support; what landed is checked with skopeo.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::proxy::{Action, Faults, Proxy, Rule};
use crate::support::run::{Run, digest_at};
use crate::support::{Registry, Request, pushgate};
use pushgate::digest::Digest;
use pushgate::registry::{self, Observer, Repository};
use pushgate_sample::{SampleBuild, write_build};

const BUILD: &str = "41.20261206.1.0";

/// A build of `arches` whose images have `layers` layers of `size` bytes each
/// (incompressible: the layer blobs are a little bigger).
fn build(wd: &Path, arches: &[&str], layers: usize, size: u64) {
    write_build(wd, &SampleBuild::ostree(BUILD, arches, layers, size)).expect("write sample build");
}

fn push(repo: &str, wd: &Path, extra: &[&str]) -> Command {
    let mut cmd = pushgate();
    cmd.args(["push", "--repo", repo, "--tag", "stable"])
        .args(["--artifact", "ostree", "--metajsonname", "base-oscontainer"])
        .args(["--tls-verify=false", "--json", "--retry-delay", "20ms"])
        .arg("--workdir")
        .arg(wd)
        .args(extra);
    cmd
}

/// The request bodies the proxy refused as too large.
fn refused_413(proxy: &Proxy) -> usize {
    proxy
        .log()
        .iter()
        .filter(|e| matches!(e.fault, Some(Action::Status { code: 413, .. })))
        .count()
}

#[test]
fn a_registry_that_caps_bodies_gets_halved_chunks_without_a_flag() {
    let registry = Registry::start();
    // 300 KiB layers against a 128 KiB cap: the whole PUT is refused, then
    // chunks of half that, and half again, until they fit.
    let proxy = Proxy::start(registry.addr(), Faults::none().max_body(128 * 1024));
    let wd = tempfile::tempdir().unwrap();
    build(wd.path(), &["x86_64", "aarch64"], 2, 300 * 1024);
    let run = Run::of(&mut push(&proxy.repo("fcos"), wd.path(), &["--jobs", "1"]));
    assert_eq!(run.outcome(), "pushed", "{}", run.context());
    assert!(refused_413(&proxy) >= 1, "the cap was met");
    // Halving is remembered for the run: once chunks fit, no more refusals
    // than the halvings it took (300K -> 150K -> 75K: two refusals).
    assert!(refused_413(&proxy) <= 3, "{:?}", proxy.log());
    assert!(
        run.stderr.contains("HTTP 413") && run.stderr.contains("chunks of"),
        "the halving is said: {}",
        run.stderr
    );
    let list = run.ok()["manifest_list_digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        digest_at(&format!("{}:stable", registry.repo("fcos"))),
        list
    );
    let again = Run::of(&mut push(&proxy.repo("fcos"), wd.path(), &[]));
    assert_eq!(again.outcome(), "up-to-date", "{}", again.context());
}

#[test]
fn chunk_size_set_up_front_meets_no_413() {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.addr(), Faults::none().max_body(128 * 1024));
    let wd = tempfile::tempdir().unwrap();
    build(wd.path(), &["x86_64"], 2, 300 * 1024);
    let run = Run::of(&mut push(
        &proxy.repo("fcos"),
        wd.path(),
        &["--chunk-size", "100k"],
    ));
    assert_eq!(run.outcome(), "pushed", "{}", run.context());
    assert_eq!(refused_413(&proxy), 0, "{:?}", proxy.log());
    let patches = proxy.log().iter().filter(|e| e.method == "PATCH").count();
    assert!(patches >= 6, "the layers went up in chunks: {patches}");
}

#[test]
fn a_413_at_the_smallest_chunk_fails_naming_the_registry_and_the_size() {
    let registry = Registry::start();
    // A cap below the smallest chunk pushgate sends (64 KiB).
    let proxy = Proxy::start(registry.addr(), Faults::none().max_body(16 * 1024));
    let wd = tempfile::tempdir().unwrap();
    build(wd.path(), &["x86_64"], 1, 200 * 1024);
    let run = Run::of(&mut push(&proxy.repo("fcos"), wd.path(), &[]));
    assert_eq!(run.code, 1, "{}", run.context());
    let error = run.json["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains(proxy.addr())
            && error.contains("HTTP 413")
            && error.contains("bytes were refused")
            && error.contains("client_max_body_size"),
        "{error}"
    );
    assert!(
        registry
            .writes()
            .iter()
            .all(|w| !w.path.contains("/manifests/")),
        "no manifest was put after the failed blob"
    );
}

/// Collects the client's lines, and says when the first retry was announced.
#[derive(Default)]
struct Lines {
    lines: Mutex<Vec<(Instant, String)>>,
    first_retry: tokio::sync::Notify,
}

impl Observer for Lines {
    fn line(&self, line: &str) {
        self.lines
            .lock()
            .unwrap()
            .push((Instant::now(), line.to_string()));
        if line.contains("; retry ") {
            self.first_retry.notify_one();
        }
    }
}

#[test]
fn a_429_with_retry_after_holds_back_the_next_request_to_that_host() {
    let registry = Registry::start();
    let proxy = Proxy::start(
        registry.addr(),
        Faults::none().rule(Rule::nth(
            1,
            "HEAD",
            "/blobs/",
            Action::status_retry_after(429, 2),
        )),
    );
    let lines = Arc::new(Lines::default());
    let opts = registry::Options {
        plain_http: true,
        observer: lines.clone(),
        ..registry::Options::default()
    };
    let repo: registry::RepoName = proxy.repo("fcos").parse().unwrap();
    let repo = Repository::new(&repo, &opts).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (first, second) = rt.block_on(async {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        // The first HEAD meets the 429; once its retry is announced, a second,
        // unrelated HEAD starts: it must wait out the same Retry-After.
        let first = async {
            let started = Instant::now();
            assert!(!repo.has_blob(&a).await.unwrap());
            started.elapsed()
        };
        let second = async {
            lines.first_retry.notified().await;
            let started = Instant::now();
            assert!(!repo.has_blob(&b).await.unwrap());
            started.elapsed()
        };
        tokio::join!(first, second)
    });
    assert!(first >= Duration::from_millis(1900), "{first:?}");
    // Started a little after the 429 was answered: most of its 2 s remain.
    assert!(
        second >= Duration::from_millis(1500),
        "the other request waited for the host too: {second:?}"
    );
    let heads = proxy.log().iter().filter(|e| e.method == "HEAD").count();
    assert_eq!(heads, 3, "one 429, its retry, the other request");
}

#[test]
fn a_lost_answer_is_looked_for_once_not_written_again() {
    let registry = Registry::start();
    let proxy = Proxy::start(
        registry.addr(),
        Faults::none().rule(Rule::nth(
            1,
            "PUT",
            "/manifests/",
            Action::ResetAfterUpstream,
        )),
    );
    let opts = registry::Options {
        plain_http: true,
        ..registry::Options::default()
    };
    let repo: registry::RepoName = proxy.repo("fcos").parse().unwrap();
    let repo = Repository::new(&repo, &opts).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // An empty index needs no blob: its PUT is the only write.
    let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    rt.block_on(repo.put_manifest("stable", "application/vnd.oci.image.index.v1+json", index))
        .unwrap();
    let log = proxy.log();
    let puts = log.iter().filter(|e| e.method == "PUT").count();
    let heads = log.iter().filter(|e| e.method == "HEAD").count();
    assert_eq!((puts, heads), (1, 1), "{log:?}");
    assert_eq!(
        digest_at(&format!("{}:stable", registry.repo("fcos"))),
        Digest::of(index).to_string()
    );
}

/// The size of the big layer (MiB), its chunks (MiB), the fault rate and the
/// seeds: small enough for CI by default; scripts/soak.sh runs the issue's
/// 1 GiB through 10 seeds with the same test.
fn big_layer_settings() -> (u64, u64, f64, Vec<u64>) {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or(default.to_string());
    let mib: u64 = var("PUSHGATE_BIG_LAYER_MIB", "256").parse().unwrap();
    let chunk: u64 = var("PUSHGATE_BIG_LAYER_CHUNK_MIB", "16").parse().unwrap();
    let rate: f64 = var("PUSHGATE_BIG_LAYER_FAULTS", "0.2").parse().unwrap();
    let seeds = var("PUSHGATE_BIG_LAYER_SEEDS", "1,2")
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    (mib, chunk, rate, seeds)
}

#[test]
fn a_big_layer_lands_in_one_run_through_a_link_that_fails_often() {
    let (mib, chunk, rate, seeds) = big_layer_settings();
    let wd = tempfile::tempdir().unwrap();
    build(wd.path(), &["x86_64"], 1, mib << 20);
    for seed in seeds {
        let registry = Registry::start();
        let proxy = Proxy::start(
            registry.addr(),
            Faults::none().random(
                seed,
                rate,
                vec![
                    Action::status(503),
                    Action::status_retry_after(429, 0),
                    Action::ResetBeforeForward,
                    Action::ResetAfterUpstream,
                    Action::CutAnswer { bytes: 40 },
                ],
            ),
        );
        let run = Run::of(&mut push(
            &proxy.repo("fcos"),
            wd.path(),
            &["--chunk-size", &format!("{chunk}M"), "--retry-times", "5"],
        ));
        assert_eq!(run.code, 0, "seed {seed}: {}", run.context());
        let faults = proxy.log().iter().filter(|e| e.fault.is_some()).count();
        assert!(faults > 0, "seed {seed}: no fault was injected");
        let list = run.ok()["manifest_list_digest"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            digest_at(&format!("{}:stable", registry.repo("fcos"))),
            list,
            "seed {seed}"
        );
        // Put meta.json back for the next seed.
        let meta = wd.path().join(format!("builds/{BUILD}/x86_64/meta.json"));
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
        m.as_object_mut().unwrap().remove("base-oscontainer");
        std::fs::write(&meta, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    }
}

/// The blob uploads of `reqs` (the POSTs opening sessions, the PUTs closing them).
fn blob_uploads<'a>(reqs: &'a [Request], method: &'a str) -> impl Iterator<Item = usize> + 'a {
    reqs.iter()
        .enumerate()
        .filter(move |(_, r)| r.method == method && r.path.contains("/blobs/uploads/"))
        .map(|(i, _)| i)
}

#[test]
fn the_next_upload_session_is_opened_while_a_blob_is_sent_and_costs_no_request() {
    let registry = Registry::start();
    let wd = tempfile::tempdir().unwrap();
    build(wd.path(), &["x86_64"], 4, 64 * 1024);
    // The first blob's PUT is held on its way: with one job, the next blob's
    // session is opened meanwhile, not a round trip after it.
    let proxy = Proxy::start(
        registry.addr(),
        Faults::none().rule(Rule::nth(
            1,
            "PUT",
            "/blobs/uploads/",
            Action::Delay(Duration::from_secs(2)),
        )),
    );
    let run = Run::of(&mut push(&proxy.repo("fcos"), wd.path(), &["--jobs", "1"]));
    let blobs = run.ok()["uploaded_blobs"].as_u64().unwrap() as usize;
    let reqs = registry.requests();
    let posts: Vec<usize> = blob_uploads(&reqs, "POST").collect();
    let puts: Vec<usize> = blob_uploads(&reqs, "PUT").collect();
    assert_eq!((posts.len(), puts.len()), (blobs, blobs), "{reqs:?}");
    assert!(
        posts.iter().filter(|&&p| p < puts[0]).count() >= 2,
        "the second session was opened before the first blob landed: {reqs:?}"
    );
    // Per blob one HEAD (is it there?), one POST, one PUT; per manifest one
    // HEAD and one PUT; the tag: one GET, one PUT.
    let writes = reqs.iter().filter(|r| r.is_write()).count();
    let reads = reqs.len() - writes;
    assert_eq!(writes, 2 * blobs + 2 + 1, "{reqs:?}");
    assert_eq!(reads, blobs + 2 + 1, "{reqs:?}");
}

#[test]
fn an_upload_session_lost_before_its_turn_is_opened_again() {
    let registry = Registry::start();
    let wd = tempfile::tempdir().unwrap();
    build(wd.path(), &["x86_64"], 2, 64 * 1024);
    // The registry has forgotten the first session opened ahead (expired,
    // purged): its PUT is answered 404.
    let proxy = Proxy::start(
        registry.addr(),
        Faults::none().rule(Rule::nth(1, "PUT", "/blobs/uploads/", Action::status(404))),
    );
    let run = Run::of(&mut push(&proxy.repo("fcos"), wd.path(), &[]));
    let blobs = run.ok()["uploaded_blobs"].as_u64().unwrap() as usize;
    let reqs = registry.requests();
    assert_eq!(blob_uploads(&reqs, "POST").count(), blobs + 1, "{reqs:?}");
    assert_eq!(
        digest_at(&format!("{}:stable", registry.repo("fcos"))),
        run.ok()["manifest_list_digest"].as_str().unwrap()
    );
}
