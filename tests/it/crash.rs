//! Crash safety: `pushgate push` is SIGKILLed at several points, then a rerun converges.
//!
//! The requirement (issue 2, "Crash-safe"): SIGKILL at any instant, then a re-run,
//! converges to the correct final state; meta.json is never torn or half-written; blobs
//! that reached the registry before the kill are not sent again.
//!
//! There are no test hooks in the product and no sleeps as synchronisation. A run is
//! started with `--jobs 1` (writes are sequential, so "after the k-th write" is well
//! defined), the registry's access log (or, for meta.json, the build directory) is polled
//! in a bounded loop, and the process is SIGKILLed as soon as the condition of the point
//! holds. A kill may land a little later than intended: each scenario records what had
//! landed when it died and asserts what holds whatever the instant:
//!
//! * right after the kill: every meta.json parses, every key but KEY is as before, and KEY
//!   is either absent or the complete, correct entry (and then every tag already serves
//!   the list: tags before meta.json); a tag that exists serves the complete list; the
//!   only new files beside meta.json are cosa's lock, lock claims and meta.json temp files;
//! * a rerun (no kill) exits 0, both tags serve the list a clean push of the same build
//!   serves, every arch's manifest is there, every meta.json holds the correct entry once;
//! * over the killed run and the rerun, every blob, manifest and tag was PUT successfully
//!   exactly once: nothing that reached the registry before the kill is sent again;
//! * a third run is up-to-date: zero registry writes, meta.json byte-identical.
//!
//! The access log is read directly here (the harness's [`Registry::requests`] drops the
//! query string, and a blob upload's digest is only in the query of its PUT); before a
//! snapshot that must be complete, `requests()` is called first for its sentinel.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{Registry, pushgate, sha256_digest, skopeo_digest, skopeo_inspect_raw};
use pushgate_sample::{SampleBuild, SampleContainer, write_build};
use serde_json::{Value, json};
use tempfile::TempDir;

const REPO_NAME: &str = "fcos";
const TAGS: [&str; 2] = ["stable", "41"];
const ARTIFACT: &str = "ostree";
const KEY: &str = "base-oscontainer";
const BUILD_ID: &str = "41.20261127.1.0";
/// Marks the harness's own requests (probes, sentinels) in the access log.
const HARNESS_MARK: &str = "pushgate-harness";
/// Upper bound on one pushgate run (a rerun may wait for a stale meta.json lock).
const RUN_TIMEOUT: Duration = Duration::from_secs(90);
/// Pause between two polls of a kill condition (the condition is what synchronises).
const POLL_INTERVAL: Duration = Duration::from_micros(300);
/// How often a meta.json scenario is retried when the run finished before the kill.
const META_ATTEMPTS: usize = 25;
/// The signal `Child::kill` sends on Unix.
const SIGKILL: i32 = 9;

// ---------------------------------------------------------------------------------
// Fixture: a build, and what a clean push of it publishes
// ---------------------------------------------------------------------------------

/// A generated cosa workdir (the template every scenario copies) and the state a clean
/// push of it to a fresh registry ends in.
struct Fixture {
    template: TempDir,
    arches: Vec<String>,
    /// The list bytes a clean push makes both tags serve, and their digest.
    list_bytes: Vec<u8>,
    list_digest: String,
    /// arch → that arch's manifest digest.
    arch_digests: BTreeMap<String, String>,
    /// Every blob digest a clean push uploads.
    blobs: BTreeSet<String>,
    /// arch → the meta.json bytes before any push.
    original_meta: BTreeMap<String, Vec<u8>>,
}

impl Fixture {
    fn new(arches: &[&str], layers: usize, layer_size: u64) -> Fixture {
        let template = tempfile::Builder::new()
            .prefix("pushgate-crash-build-")
            .tempdir()
            .expect("create template workdir");
        let build = SampleBuild {
            build_id: BUILD_ID.to_string(),
            arches: arches.iter().map(|a| a.to_string()).collect(),
            containers: vec![SampleContainer {
                artifact: ARTIFACT.to_string(),
                arches: None,
                layers: None,
            }],
            layers,
            layer_size,
            seed: 7,
        };
        write_build(template.path(), &build).expect("write sample build");
        let arches: Vec<String> = build.arches.clone();
        let original_meta = arches
            .iter()
            .map(|a| {
                let bytes = fs::read(meta_path(template.path(), a)).expect("read meta.json");
                (a.clone(), bytes)
            })
            .collect();

        // The control: a clean push of a copy to a fresh registry.
        let control = Registry::start();
        let wd = TempDir::new().expect("control workdir");
        copy_workdir(template.path(), wd.path());
        let report = run_to_end(&control, wd.path());
        assert_eq!(report["outcome"], "pushed", "control push: {report}");
        let list_digest = report["manifest_list_digest"]
            .as_str()
            .expect("control report: manifest_list_digest")
            .to_string();
        let list_bytes = skopeo_inspect_raw(&tag_ref(&control, TAGS[0]), None)
            .expect("control: skopeo inspect the list");
        assert_eq!(
            sha256_digest(&list_bytes),
            list_digest,
            "control: the tag serves the list the report names"
        );
        assert_eq!(
            skopeo_inspect_raw(&tag_ref(&control, TAGS[1]), None).expect("control: 2nd tag"),
            list_bytes,
            "control: both tags serve the same list"
        );
        let digests = report["digests"].as_object().expect("control: digests");
        let arch_digests: BTreeMap<String, String> = arches
            .iter()
            .map(|a| {
                let d = digests[a.as_str()].as_str().expect("control: arch digest");
                (a.clone(), d.to_string())
            })
            .collect();
        let listed: Vec<String> = serde_json::from_slice::<Value>(&list_bytes)
            .expect("control: the list is JSON")["manifests"]
            .as_array()
            .expect("control: the list has manifests")
            .iter()
            .map(|m| m["digest"].as_str().unwrap_or_default().to_string())
            .collect();
        let ordered: Vec<String> = arches.iter().map(|a| arch_digests[a].clone()).collect();
        assert_eq!(
            listed, ordered,
            "control: the list holds the arches in order"
        );

        let log = log_synced(&control);
        let landed = Landed::of(&log);
        let blobs: BTreeSet<String> = landed.blobs.iter().cloned().collect();
        assert_eq!(landed.blobs.len(), blobs.len(), "control: a blob PUT twice");
        assert_eq!(
            report["uploaded_blobs"].as_u64(),
            Some(blobs.len() as u64),
            "control: uploaded_blobs matches the access log"
        );
        assert_eq!(
            blobs.len(),
            arches.len() * (layers + 1),
            "control: a config and {layers} layers per arch"
        );
        let fixture = Fixture {
            template,
            arches,
            list_bytes,
            list_digest,
            arch_digests,
            blobs,
            original_meta,
        };
        // The control's meta.json is what every scenario must converge to.
        for arch in &fixture.arches {
            fixture.check_meta(&control, wd.path(), arch, true);
        }
        fixture
    }

    /// The meta.json entry a push of this build to `registry` records for `arch`.
    fn entry(&self, registry: &Registry, arch: &str) -> Value {
        json!({
            "image": registry.repo(REPO_NAME),
            "digest": self.arch_digests[arch],
            "manifest-list-digest": self.list_digest,
            "tags": TAGS,
        })
    }

    /// Asserts `arch`'s meta.json in `wd` parses, keeps every other key but the
    /// meta-stamp (in order and value) and holds KEY as the complete correct entry exactly once, or (if
    /// `!must_have_key`) lacks KEY. Returns whether KEY is there.
    fn check_meta(&self, registry: &Registry, wd: &Path, arch: &str, must_have_key: bool) -> bool {
        let path = meta_path(wd, arch);
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let doc: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{} is torn or not JSON ({e}):\n{}",
                path.display(),
                String::from_utf8_lossy(&bytes)
            )
        });
        let doc = doc
            .as_object()
            .unwrap_or_else(|| panic!("{}: top level is not an object", path.display()));
        let original: Value = serde_json::from_slice(&self.original_meta[arch]).expect("original");
        let original = original.as_object().expect("original object");
        // KEY and cosa's meta-stamp, which every write sets, are the keys a
        // pushgate write may change.
        let others: Vec<(&String, &Value)> = doc
            .iter()
            .filter(|(k, _)| *k != KEY && *k != "coreos-assembler.meta-stamp")
            .collect();
        let before: Vec<(&String, &Value)> = original.iter().collect();
        assert_eq!(
            others,
            before,
            "{}: the other keys changed (order or value)",
            path.display()
        );
        match doc.get(KEY) {
            None => {
                assert!(
                    !must_have_key,
                    "{}: {KEY:?} is missing after a successful run",
                    path.display()
                );
                false
            }
            Some(entry) => {
                assert_eq!(
                    entry,
                    &self.entry(registry, arch),
                    "{}: {KEY:?} is not the complete correct entry (or has additional-images)",
                    path.display()
                );
                true
            }
        }
    }

    /// The manifests a complete push PUTs by digest: every arch's, and the list.
    fn manifests(&self) -> BTreeSet<String> {
        self.arch_digests
            .values()
            .cloned()
            .chain(std::iter::once(self.list_digest.clone()))
            .collect()
    }
}

fn meta_path(wd: &Path, arch: &str) -> PathBuf {
    arch_dir(wd, arch).join("meta.json")
}

fn arch_dir(wd: &Path, arch: &str) -> PathBuf {
    wd.join("builds").join(BUILD_ID).join(arch)
}

fn tag_ref(registry: &Registry, tag: &str) -> String {
    format!("{}:{tag}", registry.repo(REPO_NAME))
}

/// Copies a cosa workdir: the (read-only) archives are hard-linked, the JSON copied.
fn copy_workdir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create workdir copy");
    for entry in fs::read_dir(from).expect("read template dir") {
        let entry = entry.expect("template dir entry");
        let src = entry.path();
        let dst = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_workdir(&src, &dst);
        } else if src.extension().is_some_and(|e| e == "ociarchive") {
            fs::hard_link(&src, &dst).expect("link archive");
        } else {
            fs::copy(&src, &dst).expect("copy file");
        }
    }
}

/// Files in each arch directory that the template lacks, as "arch/name".
fn extra_files(fx: &Fixture, wd: &Path) -> BTreeSet<String> {
    let mut extra = BTreeSet::new();
    for arch in &fx.arches {
        let names = |dir: &Path| -> BTreeSet<String> {
            fs::read_dir(dir)
                .expect("read arch dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        };
        let before = names(&arch_dir(fx.template.path(), arch));
        for name in names(&arch_dir(wd, arch)).difference(&before) {
            extra.insert(format!("{arch}/{name}"));
        }
    }
    extra
}

/// cosa's lock (`.meta.json.lock`), a flufl-style claim (`.meta.json.lock|host|pid|n`)
/// or a meta.json temp file (`.meta.json.*.tmp`): what a kill may leave beside meta.json.
fn is_allowed_leftover(name: &str) -> bool {
    name == ".meta.json.lock"
        || name.starts_with(".meta.json.lock|")
        || (name.starts_with(".meta.json.") && name.ends_with(".tmp"))
}

// ---------------------------------------------------------------------------------
// The registry's access log
// ---------------------------------------------------------------------------------

/// One access-log line, keeping the query string.
#[derive(Debug, Clone)]
struct Line {
    method: String,
    target: String,
    status: u16,
}

/// A successful write, by what it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wrote {
    /// A blob upload's final PUT (the digest is in its query).
    Blob(String),
    /// A manifest PUT by digest.
    Manifest(String),
    /// A manifest PUT by tag.
    Tag(String),
}

impl Line {
    fn parse(text: &str) -> Option<Line> {
        let start = text.find('"')? + 1;
        let len = text[start..].find('"')?;
        let mut parts = text[start..start + len].split(' ');
        let method = parts.next()?.to_string();
        let target = parts.next()?.to_string();
        let status = text[start + len + 1..]
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(Line {
            method,
            target,
            status,
        })
    }

    fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "PUT" | "POST" | "PATCH" | "DELETE")
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// What a successful (2xx) PUT wrote; `None` for anything else.
    fn wrote(&self) -> Option<Wrote> {
        if self.method != "PUT" || !(200..300).contains(&self.status) {
            return None;
        }
        let path = self.path();
        if path.contains("/blobs/uploads/") {
            let query = self.target.split_once('?').map(|(_, q)| q).unwrap_or("");
            let digest = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("digest="))
                .map(percent_decode)
                .unwrap_or_else(|| panic!("blob PUT without ?digest=: {}", self.target));
            return Some(Wrote::Blob(digest));
        }
        let (_, reference) = path.rsplit_once("/manifests/")?;
        Some(if reference.contains(':') {
            Wrote::Manifest(reference.to_string())
        } else {
            Wrote::Tag(reference.to_string())
        })
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(Ok(v)) = s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).expect("decoded query is UTF-8")
}

/// The access log as it is now (complete lines, the harness's own requests left out).
fn log_now(registry: &Registry) -> Vec<Line> {
    let text = fs::read_to_string(registry.dir().join("stdout.log")).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    complete
        .lines()
        .filter(|l| !l.contains(HARNESS_MARK))
        .map(|l| Line::parse(l).unwrap_or_else(|| panic!("unparseable access log line {l:?}")))
        .collect()
}

/// The access log holding at least every request answered before this call.
fn log_synced(registry: &Registry) -> Vec<Line> {
    // The harness's sentinel: once it is in the log, so is every earlier request.
    registry.requests();
    log_now(registry)
}

/// What a stretch of the access log wrote successfully, in order.
#[derive(Debug, Default)]
struct Landed {
    blobs: Vec<String>,
    manifests: Vec<String>,
    tags: Vec<String>,
    /// Every write request, successful or not (POSTs of upload sessions included).
    writes: usize,
}

impl Landed {
    fn of(lines: &[Line]) -> Landed {
        let mut landed = Landed::default();
        for line in lines.iter().filter(|l| l.is_write()) {
            landed.writes += 1;
            match line.wrote() {
                Some(Wrote::Blob(d)) => landed.blobs.push(d),
                Some(Wrote::Manifest(d)) => landed.manifests.push(d),
                Some(Wrote::Tag(t)) => landed.tags.push(t),
                None => {}
            }
        }
        landed
    }

    fn blob_sessions(lines: &[Line]) -> usize {
        lines
            .iter()
            .filter(|l| l.method == "POST" && l.path().ends_with("/blobs/uploads/"))
            .count()
    }
}

// ---------------------------------------------------------------------------------
// Running pushgate
// ---------------------------------------------------------------------------------

fn push_command(registry: &Registry, wd: &Path) -> Command {
    let mut cmd = pushgate();
    cmd.arg("push").arg("--repo").arg(registry.repo(REPO_NAME));
    for tag in TAGS {
        cmd.args(["--tag", tag]);
    }
    cmd.args(["--artifact", ARTIFACT, "--metajsonname", KEY, "--workdir"])
        .arg(wd)
        .args(["--tls-verify=false", "--json", "--jobs", "1"])
        .stdin(Stdio::null());
    cmd
}

/// Runs a push to the end; asserts it exits 0 and returns its JSON report.
fn run_to_end(registry: &Registry, wd: &Path) -> Value {
    let started = Instant::now();
    let out = push_command(registry, wd).output().expect("run pushgate");
    assert!(
        out.status.success(),
        "pushgate push exited {} after {:?}\nstderr:\n{}\nstdout:\n{}",
        out.status,
        started.elapsed(),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "--json output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    crate::support::run::assert_schema(&report, &String::from_utf8_lossy(&out.stdout));
    report
}

/// How a run that was to be killed ended.
struct KillOutcome {
    /// SIGKILL ended it (false: it exited on its own before the condition held).
    killed: bool,
    status: ExitStatus,
    stderr: String,
}

/// Starts a push and SIGKILLs it as soon as `condition` holds over the access-log lines
/// of this run. The condition is polled in a bounded loop.
fn run_and_kill(
    registry: &Registry,
    wd: &Path,
    mut condition: impl FnMut(&[Line]) -> bool,
) -> KillOutcome {
    let start = log_synced(registry).len();
    let outputs = TempDir::new().expect("output dir");
    let stderr_path = outputs.path().join("stderr");
    let mut child = push_command(registry, wd)
        .stdout(File::create(outputs.path().join("stdout")).expect("stdout file"))
        .stderr(File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("spawn pushgate");
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll pushgate") {
            break status;
        }
        let lines = log_now(registry);
        if condition(&lines[start.min(lines.len())..]) {
            child.kill().expect("SIGKILL pushgate");
            break child.wait().expect("reap pushgate");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pushgate neither met the kill condition nor exited within {RUN_TIMEOUT:?}");
        }
        thread::sleep(POLL_INTERVAL);
    };
    let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
    let killed = status.signal() == Some(SIGKILL);
    if !killed {
        assert!(
            status.success(),
            "pushgate failed on its own before the kill ({status}):\n{stderr}"
        );
    }
    KillOutcome {
        killed,
        status,
        stderr,
    }
}

// ---------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------

/// What must hold right after a kill, whatever the instant. Returns (how many arches
/// have KEY, the leftover files).
fn check_after_kill(fx: &Fixture, registry: &Registry, wd: &Path) -> (usize, BTreeSet<String>) {
    let recorded = fx
        .arches
        .iter()
        .filter(|a| fx.check_meta(registry, wd, a, false))
        .count();
    // A tag that exists serves the complete list (the list went up before any tag).
    let mut tags_served = 0;
    for tag in TAGS {
        match skopeo_inspect_raw(&tag_ref(registry, tag), None) {
            Ok(bytes) => {
                assert_eq!(
                    bytes, fx.list_bytes,
                    "after the kill, tag {tag} serves something else than the list"
                );
                tags_served += 1;
            }
            Err(e) => assert!(
                e.contains("manifest unknown") || e.to_lowercase().contains("not found"),
                "after the kill, skopeo cannot read tag {tag}: {e}"
            ),
        }
    }
    // Tags before meta.json: a recorded entry means the registry serves it at every tag.
    if recorded > 0 {
        assert_eq!(
            tags_served,
            TAGS.len(),
            "meta.json records the push but not every tag serves the list yet"
        );
    }
    let extra = extra_files(fx, wd);
    for name in &extra {
        let file = name.rsplit('/').next().unwrap_or_default();
        assert!(
            is_allowed_leftover(file),
            "the kill left an unexpected file {name} in the build (all extra files: {extra:?})"
        );
    }
    (recorded, extra)
}

/// Reruns without a kill and checks convergence; then a third run is a no-op.
/// `killed` is the access log up to the kill, `recorded_before` how many arches had KEY
/// then. Returns a summary of the rerun.
fn rerun_and_check(
    fx: &Fixture,
    registry: &Registry,
    wd: &Path,
    killed: &[Line],
    recorded_before: usize,
    leftovers: &BTreeSet<String>,
) -> String {
    let start = log_synced(registry).len();
    let report = run_to_end(registry, wd);
    let rerun_log = log_synced(registry);
    let rerun = &rerun_log[start..];

    // The registry: both tags serve the clean push's list; every arch manifest is there.
    for tag in TAGS {
        let bytes = skopeo_inspect_raw(&tag_ref(registry, tag), None)
            .unwrap_or_else(|e| panic!("after the rerun, skopeo cannot read tag {tag}: {e}"));
        assert_eq!(
            sha256_digest(&bytes),
            fx.list_digest,
            "after the rerun, tag {tag} does not serve the clean push's list"
        );
        assert_eq!(bytes, fx.list_bytes);
    }
    for (arch, digest) in &fx.arch_digests {
        let at = format!("{}@{digest}", registry.repo(REPO_NAME));
        assert_eq!(
            skopeo_digest(&at, None).unwrap_or_else(|e| panic!("{arch} manifest {at}: {e}")),
            *digest
        );
    }
    assert_eq!(
        report["manifest_list_digest"].as_str(),
        Some(fx.list_digest.as_str()),
        "rerun report: {report}"
    );

    // meta.json: the correct entry, once, in every arch.
    for arch in &fx.arches {
        fx.check_meta(registry, wd, arch, true);
    }
    // The rerun leaves nothing of its own behind.
    let after = extra_files(fx, wd);
    assert!(
        after.is_subset(leftovers),
        "the rerun left new files: {:?}",
        after.difference(leftovers).collect::<Vec<_>>()
    );

    // Nothing that reached the registry before the kill is sent again, and over both
    // runs everything was sent exactly once.
    let first = Landed::of(killed);
    let second = Landed::of(rerun);
    let once = |what: &str, a: &[String], b: &[String], want: BTreeSet<String>| {
        let mut seen = BTreeSet::new();
        for (run, items) in [("killed run", a), ("rerun", b)] {
            for item in items {
                assert!(
                    seen.insert(item.clone()),
                    "{what} {item} was PUT again by the {run} (killed run: {a:?}, rerun: {b:?})"
                );
            }
        }
        assert_eq!(
            seen, want,
            "{what}s PUT over both runs are not exactly the desired ones"
        );
    };
    once("blob", &first.blobs, &second.blobs, fx.blobs.clone());
    once(
        "manifest",
        &first.manifests,
        &second.manifests,
        fx.manifests(),
    );
    once(
        "tag",
        &first.tags,
        &second.tags,
        TAGS.iter().map(|t| t.to_string()).collect(),
    );
    assert_eq!(
        report["uploaded_blobs"].as_u64(),
        Some(second.blobs.len() as u64),
        "rerun report's uploaded_blobs vs the access log: {report}"
    );
    let outcome = report["outcome"].as_str().unwrap_or_default().to_string();
    let expected_outcome = if second.writes > 0 {
        "pushed"
    } else if recorded_before < fx.arches.len() {
        "recorded"
    } else {
        "up-to-date"
    };
    assert_eq!(outcome, expected_outcome, "rerun report: {report}");

    // A third run: up to date, zero writes, meta.json untouched.
    let before: Vec<Vec<u8>> = fx
        .arches
        .iter()
        .map(|a| fs::read(meta_path(wd, a)).expect("read meta.json"))
        .collect();
    let start = rerun_log.len();
    let third = run_to_end(registry, wd);
    let third_log = log_synced(registry);
    let third_writes: Vec<&Line> = third_log[start..].iter().filter(|l| l.is_write()).collect();
    assert!(
        third_writes.is_empty(),
        "the third run wrote to the registry: {third_writes:?}"
    );
    assert_eq!(third["outcome"], "up-to-date", "third run: {third}");
    for (arch, bytes) in fx.arches.iter().zip(&before) {
        assert_eq!(
            &fs::read(meta_path(wd, arch)).expect("read meta.json"),
            bytes,
            "the third run rewrote {arch}'s meta.json"
        );
    }
    format!(
        "rerun {outcome}: {} blob(s), {} manifest(s), {} tag(s) PUT",
        second.blobs.len(),
        second.manifests.len(),
        second.tags.len()
    )
}

fn describe(fx: &Fixture, landed: &Landed, recorded: usize, kill: &KillOutcome) -> String {
    format!(
        "{} after {}/{} blobs, {}/{} manifests, {}/{} tags, {}/{} meta.json entries ({} writes)",
        if kill.killed {
            "killed".to_string()
        } else {
            format!("not killed (exited {})", kill.status)
        },
        landed.blobs.len(),
        fx.blobs.len(),
        landed.manifests.len(),
        fx.manifests().len(),
        landed.tags.len(),
        TAGS.len(),
        recorded,
        fx.arches.len(),
        landed.writes,
    )
}

/// Everything after a kill: the state it left, then a rerun and a third run. Returns a
/// summary; a failure names where the kill landed.
fn after_kill(
    fx: &Fixture,
    registry: &Registry,
    wd: &Path,
    kill: &KillOutcome,
    note: &str,
) -> String {
    let (recorded, leftovers) = check_after_kill(fx, registry, wd);
    // Taken after the checks above, so that a request the registry was still serving
    // when its client died is in this part of the log, not in the rerun's.
    let killed_log = log_synced(registry);
    let landed = Landed::of(&killed_log);
    let what = format!("{}{note}", describe(fx, &landed, recorded, kill));
    let rerun = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rerun_and_check(fx, registry, wd, &killed_log, recorded, &leftovers)
    }))
    .unwrap_or_else(|panic| {
        panic!(
            "{what}; leftovers {leftovers:?}; then: {}",
            panic_message(&*panic)
        )
    });
    let stderr = if kill.killed || kill.stderr.is_empty() {
        String::new()
    } else {
        format!("; stderr {}", kill.stderr.trim())
    };
    format!("{what}; {rerun}; leftovers {leftovers:?}{stderr}")
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(non-string panic)".to_string())
}

/// Runs every scenario on its own thread and fails with all the failures at once.
fn run_all<S: Sync>(
    scenarios: &[S],
    name: impl Fn(&S) -> String,
    run: impl Fn(&S) -> String + Sync,
) {
    let results: Vec<(String, thread::Result<String>)> = thread::scope(|s| {
        let handles: Vec<_> = scenarios
            .iter()
            .map(|sc| (name(sc), s.spawn(|| run(sc))))
            .collect();
        handles.into_iter().map(|(n, h)| (n, h.join())).collect()
    });
    let mut failures = Vec::new();
    for (name, result) in results {
        match result {
            Ok(summary) => eprintln!("ok   {name}: {summary}"),
            Err(panic) => {
                let msg = panic_message(&*panic);
                eprintln!("FAIL {name}: {msg}");
                failures.push(format!("{name}: {msg}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenario(s) failed:\n{}",
        failures.len(),
        scenarios.len(),
        failures.join("\n\n")
    );
}

// ---------------------------------------------------------------------------------
// Kills at points of the registry writes
// ---------------------------------------------------------------------------------

/// Where a push is killed, as a condition over the access log of the run.
#[derive(Debug, Clone, Copy)]
enum Point {
    /// Right after the first blob PUT completed.
    FirstBlob,
    /// While the 8th blob is being streamed (its upload session is open).
    MidBlobUpload,
    /// Right after the last blob, before any manifest.
    LastBlob,
    /// After the per-arch manifests, before the list.
    ArchManifests,
    /// After the list, before the tags.
    List,
    /// After the first tag, before the second.
    FirstTag,
    /// After every registry write: during or around the meta.json writes.
    AllWrites,
}

impl Point {
    fn reached(self, fx: &Fixture, lines: &[Line]) -> bool {
        let landed = Landed::of(lines);
        match self {
            Point::FirstBlob => !landed.blobs.is_empty(),
            Point::MidBlobUpload => Landed::blob_sessions(lines) >= 8,
            Point::LastBlob => landed.blobs.len() >= fx.blobs.len(),
            Point::ArchManifests => landed.manifests.len() >= fx.arches.len(),
            Point::List => landed.manifests.len() > fx.arches.len(),
            Point::FirstTag => !landed.tags.is_empty(),
            Point::AllWrites => landed.tags.len() >= TAGS.len(),
        }
    }
}

fn kill_at(fx: &Fixture, point: Point) -> String {
    let registry = Registry::start();
    let wd = TempDir::new().expect("workdir");
    copy_workdir(fx.template.path(), wd.path());

    let kill = run_and_kill(&registry, wd.path(), |lines| point.reached(fx, lines));
    after_kill(fx, &registry, wd.path(), &kill, "")
}

#[test]
fn sigkill_at_each_point_of_a_push_then_a_rerun_converges() {
    // 3 arches x 4 layers of 2 MiB (incompressible), so a blob upload takes a while.
    let fx = Fixture::new(&["x86_64", "aarch64", "s390x"], 4, 2 << 20);
    let points = [
        Point::FirstBlob,
        Point::MidBlobUpload,
        Point::LastBlob,
        Point::ArchManifests,
        Point::List,
        Point::FirstTag,
        Point::AllWrites,
    ];
    run_all(&points, |p| format!("{p:?}"), |p| kill_at(&fx, *p));
}

// ---------------------------------------------------------------------------------
// Kills while meta.json is being written
// ---------------------------------------------------------------------------------

/// Where the record stage is killed, as a condition over the build directory.
#[derive(Debug, Clone, Copy)]
enum MetaPoint {
    /// While cosa's lock on the first arch's meta.json is held.
    FirstArchLocked,
    /// While a temp file for the third arch's meta.json exists (written, not renamed).
    ThirdArchTempFile,
    /// Right after the third arch's meta.json was replaced, before the fourth's.
    BetweenArches,
}

impl MetaPoint {
    fn reached(self, fx: &Fixture, wd: &Path) -> bool {
        match self {
            MetaPoint::FirstArchLocked => {
                arch_dir(wd, &fx.arches[0]).join(".meta.json.lock").exists()
            }
            MetaPoint::ThirdArchTempFile => fs::read_dir(arch_dir(wd, &fx.arches[2]))
                .map(|dir| {
                    dir.flatten().any(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        name.starts_with(".meta.json.") && name.ends_with(".tmp")
                    })
                })
                .unwrap_or(false),
            MetaPoint::BetweenArches => fs::read(meta_path(wd, &fx.arches[2]))
                .map(|b| String::from_utf8_lossy(&b).contains(&format!("\"{KEY}\"")))
                .unwrap_or(false),
        }
    }
}

fn kill_in_record(fx: &Fixture, point: MetaPoint) -> String {
    let registry = Registry::start();
    let wd = TempDir::new().expect("workdir");
    copy_workdir(fx.template.path(), wd.path());

    // The first attempt pushes everything; when the run ends before the condition is
    // seen, meta.json is reset and the (now record-only) run is tried again.
    let mut attempts = 0;
    let kill = loop {
        attempts += 1;
        let kill = run_and_kill(&registry, wd.path(), |_| point.reached(fx, wd.path()));
        if kill.killed || attempts >= META_ATTEMPTS {
            break kill;
        }
        for arch in &fx.arches {
            fx.check_meta(&registry, wd.path(), arch, true);
            fs::write(meta_path(wd.path(), arch), &fx.original_meta[arch]).expect("reset");
        }
    };
    after_kill(
        fx,
        &registry,
        wd.path(),
        &kill,
        &format!(" (attempt {attempts})"),
    )
}

#[test]
fn sigkill_while_meta_json_is_written_then_a_rerun_converges() {
    // Many arches, small layers: the registry part is quick, the record part has steps.
    let fx = Fixture::new(
        &["x86_64", "aarch64", "s390x", "ppc64le", "riscv64"],
        2,
        4096,
    );
    let points = [
        MetaPoint::FirstArchLocked,
        MetaPoint::ThirdArchTempFile,
        MetaPoint::BetweenArches,
    ];
    run_all(&points, |p| format!("{p:?}"), |p| kill_in_record(&fx, *p));
}
