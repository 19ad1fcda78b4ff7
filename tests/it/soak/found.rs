//! What the soak found, each pinned by a test that fails without its fix.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::runs::{Attempt, meta_path, push};
use super::{ARCHES, BUILD_ID, REPO};
use crate::support::Registry;
use crate::support::proxy::{Action, Faults, Proxy, Rule};
use pushgate_sample::{SampleBuild, write_build};
use tempfile::TempDir;

/// A repository client for `repo` (plain HTTP, quick retries).
fn client(repo: &str) -> pushgate::registry::Repository {
    let opts = pushgate::registry::Options {
        plain_http: true,
        retry: pushgate::registry::RetryPolicy {
            delay: Duration::from_millis(20),
            ..pushgate::registry::RetryPolicy::default()
        },
        ..pushgate::registry::Options::default()
    };
    let name: pushgate::registry::RepoName = repo.parse().expect("a repository name");
    pushgate::registry::Repository::new(&name, &opts).expect("a repository client")
}

/// The GETs of `path` the proxy saw: (registry's status, fault).
fn gets(proxy: &Proxy, path: &str) -> Vec<(Option<u16>, Option<Action>)> {
    proxy
        .log()
        .into_iter()
        .filter(|e| e.method == "GET" && e.path().ends_with(path))
        .map(|e| (e.upstream_status, e.fault))
        .collect()
}

/// Seed 52 of the first soak: the run after convergence read a tag whose answer was
/// cut in its body, and failed at once ("after 6 attempts", having made one).
#[test]
fn a_manifest_answer_cut_in_its_body_is_read_again() {
    let registry = Registry::start();
    // An index padded past any answer head, so the cut lands in its body.
    let pad = "x".repeat(4000);
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"annotations":{{"pad":"{pad}"}}}}"#
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let media_type = "application/vnd.oci.image.index.v1+json";
    rt.block_on(client(&registry.repo(REPO)).put_manifest("stable", media_type, index.as_bytes()))
        .unwrap();
    let cut = Action::CutAnswer { bytes: 2000 };
    let proxy = Proxy::start(
        registry.addr(),
        Faults::none().rule(Rule::nth(1, "GET", "/manifests/stable", cut.clone())),
    );
    let read = rt
        .block_on(client(&proxy.repo(REPO)).get_tag("stable"))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let (_, bytes) = read.expect("the tag is there");
    assert_eq!(bytes, index.as_bytes());
    assert_eq!(
        gets(&proxy, "/manifests/stable"),
        vec![(Some(200), Some(cut)), (Some(200), None)],
        "the cut answer, then the whole one"
    );
}

/// The same for a small blob read whole (an image config).
#[test]
fn a_blob_answer_cut_in_its_body_is_read_again() {
    let registry = Registry::start();
    let blob: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let digest = rt
        .block_on(client(&registry.repo(REPO)).push_blob_bytes(&blob))
        .unwrap();
    let cut = Action::CutAnswer { bytes: 3000 };
    let path = format!("/blobs/{digest}");
    let proxy = Proxy::start(
        registry.addr(),
        Faults::none().rule(Rule::nth(1, "GET", &path, cut.clone())),
    );
    let read = rt
        .block_on(client(&proxy.repo(REPO)).get_blob(&digest, 1 << 20))
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(read.as_deref(), Some(&blob[..]));
    assert_eq!(
        gets(&proxy, &path),
        vec![(Some(200), Some(cut)), (Some(200), None)],
        "the cut answer, then the whole one"
    );
}

/// Plants, beside `meta`, the claim and owner file (as src/record/lock.rs writes them)
/// of a pushgate of this kernel and PID namespace that is gone; returns them.
fn plant_a_dead_claim(meta: &Path) -> (PathBuf, PathBuf) {
    let dir = meta.parent().expect("an arch directory");
    let mut gone = Command::new("true").spawn().expect("spawn true");
    let pid = gone.id();
    gone.wait().expect("reap true");
    let boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("boot id");
    let ns = fs::read_link("/proc/self/ns/pid").expect("pid namespace");
    let ns = ns.to_string_lossy();
    let ns = ns.trim_start_matches("pid:[").trim_end_matches(']');
    let claim = dir.join(format!(".meta.json.lock|localhost|{pid}|42"));
    let owner = dir.join(format!(".meta.json.lock|localhost|{pid}|42.owner"));
    fs::write(
        &owner,
        format!(
            "boot-id={}\npid-ns={ns}\npid={pid}\nstart-time=1\n",
            boot_id.trim()
        ),
    )
    .expect("write the owner file");
    fs::write(&claim, claim.as_os_str().as_encoded_bytes()).expect("write the claim");
    (claim, owner)
}

/// Plants, beside `meta`, what a pushgate SIGKILLed in its record stage leaves: cosa's
/// lock held (unexpired) by a process that is gone ([`plant_a_dead_claim`]), and a
/// temp file of a write that never got renamed. Returns the planted files.
fn plant_a_dead_writer(meta: &Path) -> Vec<PathBuf> {
    let dir = meta.parent().expect("an arch directory");
    let (claim, owner) = plant_a_dead_claim(meta);
    let lock = dir.join(".meta.json.lock");
    let temp = dir.join(".meta.json.k1ll3d.tmp");
    fs::hard_link(&claim, &lock).expect("link the lock");
    File::options()
        .write(true)
        .open(&lock)
        .and_then(|f| f.set_modified(std::time::SystemTime::now() + Duration::from_secs(60)))
        .expect("set the lock's expiry");
    fs::write(&temp, b"{\"half\": ").expect("write a temp file");
    vec![lock, claim, owner, temp]
}

/// Seed 10 of the second soak: killed between a meta.json's rename and its unlock,
/// the push left that arch's lock, and every rerun left it there, since none records
/// an arch whose meta.json has the entry; cosa, which cannot tell that the holder
/// died, would wait out the lock's lifetime.
#[test]
fn an_up_to_date_run_clears_the_lock_a_killed_run_left() {
    let wd = TempDir::new().unwrap();
    write_build(
        wd.path(),
        &SampleBuild::ostree(BUILD_ID, &ARCHES[..2], 1, 1024),
    )
    .unwrap();
    let registry = Registry::start();
    let repo = registry.repo(REPO);
    let first = Attempt::run(&mut push(&repo, wd.path()));
    assert_eq!(first.outcome(), "pushed", "{}", first.context());
    let planted: Vec<PathBuf> = ARCHES[..2]
        .iter()
        .flat_map(|a| plant_a_dead_writer(&meta_path(wd.path(), a)))
        .collect();
    let metas: Vec<Vec<u8>> = ARCHES[..2]
        .iter()
        .map(|a| fs::read(meta_path(wd.path(), a)).unwrap())
        .collect();
    let seen = registry.requests().len();
    let again = Attempt::run(&mut push(&repo, wd.path()));
    assert_eq!(again.outcome(), "up-to-date", "{}", again.context());
    let writes: Vec<_> = registry.requests()[seen..]
        .iter()
        .filter(|r| r.is_write())
        .cloned()
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    for (arch, before) in ARCHES[..2].iter().zip(&metas) {
        assert_eq!(&fs::read(meta_path(wd.path(), arch)).unwrap(), before);
    }
    let left: Vec<_> = planted.iter().filter(|p| p.exists()).collect();
    assert!(left.is_empty(), "left: {left:?}");
}

/// The same when the rerun records the other arches only.
#[test]
fn a_rerun_that_records_other_arches_clears_the_lock_a_killed_run_left() {
    let wd = TempDir::new().unwrap();
    write_build(
        wd.path(),
        &SampleBuild::ostree(BUILD_ID, &ARCHES[..2], 1, 1024),
    )
    .unwrap();
    let registry = Registry::start();
    let repo = registry.repo(REPO);
    let original = fs::read(meta_path(wd.path(), ARCHES[1])).unwrap();
    let first = Attempt::run(&mut push(&repo, wd.path()));
    assert_eq!(first.outcome(), "pushed", "{}", first.context());
    // Killed after the first arch's meta.json was replaced, before its unlock.
    fs::write(meta_path(wd.path(), ARCHES[1]), &original).unwrap();
    let planted = plant_a_dead_writer(&meta_path(wd.path(), ARCHES[0]));
    let again = Attempt::run(&mut push(&repo, wd.path()));
    assert_eq!(again.outcome(), "recorded", "{}", again.context());
    assert_eq!(again.json["recorded"], serde_json::json!([ARCHES[1]]));
    let left: Vec<_> = planted.iter().filter(|p| p.exists()).collect();
    assert!(left.is_empty(), "left: {left:?}");
}

/// Seed 140 of the 200-run soak: killed while letting the lock go (the lock removed,
/// its claim not yet), the push left a claim and its owner file, which no run
/// removed; a kill between writing the owner file and the claim leaves an owner file
/// alone.
#[test]
fn an_up_to_date_run_clears_the_claims_killed_runs_left() {
    let wd = TempDir::new().unwrap();
    write_build(
        wd.path(),
        &SampleBuild::ostree(BUILD_ID, &ARCHES[..2], 1, 1024),
    )
    .unwrap();
    let registry = Registry::start();
    let repo = registry.repo(REPO);
    let first = Attempt::run(&mut push(&repo, wd.path()));
    assert_eq!(first.outcome(), "pushed", "{}", first.context());
    let (claim, owner) = plant_a_dead_claim(&meta_path(wd.path(), ARCHES[0]));
    let (lone_claim, lone_owner) = plant_a_dead_claim(&meta_path(wd.path(), ARCHES[1]));
    fs::remove_file(&lone_claim).unwrap();
    let again = Attempt::run(&mut push(&repo, wd.path()));
    assert_eq!(again.outcome(), "up-to-date", "{}", again.context());
    let left: Vec<_> = [claim, owner, lone_owner]
        .into_iter()
        .filter(|p| p.exists())
        .collect();
    assert!(left.is_empty(), "left: {left:?}");
}

/// How many bytes the head of the registry's answer to `PUT /v2/{REPO}/manifests/{tag}`
/// with `body` takes (status line and headers, up to the empty line), asked directly.
fn answer_head_len(registry: &Registry, tag: &str, media_type: &str, body: &[u8]) -> usize {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(registry.addr()).expect("connect");
    let head = format!(
        "PUT /v2/{REPO}/manifests/{tag} HTTP/1.1\r\nHost: {}\r\nContent-Type: {media_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        registry.addr(),
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("send the head");
    stream.write_all(body).expect("send the body");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read the answer");
    answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole answer head")
        + 4
}

/// Round 7 of the concurrent soak: a list PUT answered 400 MANIFEST_BLOB_UNKNOWN (a
/// concurrent push of the same build still committing an arch manifest: pushgate heals
/// that) had its answer cut in its body, and was taken for a refusal without a reason,
/// "a bare 400, as a TLS server gives", and the push failed. A refusal cut off is a
/// lost answer: it is asked again, and then says what it is.
#[test]
fn an_error_answer_cut_in_its_body_is_asked_again() {
    let registry = Registry::start();
    // A list naming a manifest the repository does not have: 400 MANIFEST_BLOB_UNKNOWN.
    let media_type = "application/vnd.oci.image.index.v1+json";
    let missing = format!("sha256:{}", "ab".repeat(32));
    let list = format!(
        r#"{{"schemaVersion":2,"mediaType":"{media_type}","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{missing}","size":100}}]}}"#
    );
    let head = answer_head_len(&registry, "probe", media_type, list.as_bytes());
    let cut = Action::CutAnswer { bytes: head + 10 };
    let proxy = Proxy::start(
        registry.addr(),
        Faults::none().rule(Rule::nth(1, "PUT", "/manifests/stable", cut.clone())),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(client(&proxy.repo(REPO)).put_manifest("stable", media_type, list.as_bytes()))
        .expect_err("the list names a manifest the registry lacks");
    let err = format!("{err:#}");
    assert!(
        err.contains("MANIFEST_BLOB_UNKNOWN") && !err.contains("bare 400"),
        "{err}"
    );
    let puts: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|e| e.method == "PUT")
        .map(|e| (e.upstream_status, e.fault))
        .collect();
    assert_eq!(
        puts,
        vec![(Some(400), Some(cut)), (Some(400), None)],
        "the cut refusal, then the whole one"
    );
}
