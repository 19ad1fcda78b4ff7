//! End-to-end behaviours of `pushgate push --policy`: the shipped policies allowing and
//! refusing real pushes, hostile modules failing closed, the sandbox hiding files,
//! environment and clock, determinism, and the facts a module is given. Every run goes
//! against a real `docker-registry`; what landed is confirmed with skopeo, what was
//! written with the registry's access log.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::run::{
    Run, describe, digest_at, list_digests, path_str, raw_json, run_in, s, strs,
};
use crate::support::{Registry, Request, policy_module, sha256_digest, skopeo_inspect_raw};
use pushgate_sample::{SampleBuild, SampleImage, write_build, write_oci_archive};

const BUILD: &str = "41.20261127.1.0";
const NEXT_BUILD: &str = "41.20261128.1.0";
const ARCHES: [&str; 2] = ["x86_64", "aarch64"];
const KEY: &str = "base-oscontainer";
const REPO_NAME: &str = "fcos";

// ---------------------------------------------------------------------------------------
// helpers

trait Echo {
    fn echoed_facts(&self) -> Value;
}

impl Echo for Run {
    /// The facts a `{"mode": "echo"}` module dumped as its reason.
    fn echoed_facts(&self) -> Value {
        serde_json::from_str(self.reason())
            .unwrap_or_else(|e| panic!("the reason is not an echo of the facts ({e}): {self:?}"))
    }
}

/// `--policy MODULE --policy-settings SETTINGS`.
fn policy(module: &Path, settings: &str) -> Vec<String> {
    vec![
        s("--policy"),
        path_str(module),
        s("--policy-settings"),
        s(settings),
    ]
}

/// `policy` plus more arguments.
fn policy_and(module: &Path, settings: &str, more: &[&str]) -> Vec<String> {
    let mut args = policy(module, settings);
    args.extend(more.iter().map(|a| s(a)));
    args
}

fn hostile(mode: &str) -> String {
    json!({ "mode": mode }).to_string()
}

/// The per-arch digests of a report, in order.
fn report_digests(report: &Value) -> Vec<String> {
    report["digests"]
        .as_object()
        .unwrap_or_else(|| panic!("no digests in {report}"))
        .values()
        .map(|d| d.as_str().unwrap().to_string())
        .collect()
}

/// A registry and a cosa workdir holding [`BUILD`] on [`ARCHES`] (`ostree` on both,
/// `kubevirt` on x86_64 only).
struct Fixture {
    reg: Registry,
    wd: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let wd = tempfile::Builder::new()
            .prefix("pushgate-policy-test-")
            .tempdir()
            .unwrap();
        write_build(wd.path(), &SampleBuild::small(BUILD, &ARCHES)).expect("write sample build");
        Fixture {
            reg: Registry::start(),
            wd,
        }
    }

    fn wd(&self) -> &Path {
        self.wd.path()
    }

    fn repo(&self, name: &str) -> String {
        self.reg.repo(name)
    }

    fn digest_file(&self) -> PathBuf {
        self.wd().join("digest")
    }

    fn meta_path(&self, build: &str, arch: &str) -> PathBuf {
        self.wd()
            .join("builds")
            .join(build)
            .join(arch)
            .join("meta.json")
    }

    fn meta(&self, build: &str, arch: &str) -> Value {
        let path = self.meta_path(build, arch);
        serde_json::from_slice(&fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
    }

    /// Every meta.json of every build, by path.
    fn all_metas(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        for build in fs::read_dir(self.wd().join("builds")).unwrap() {
            let build = build.unwrap().path();
            if !build.is_dir() {
                continue;
            }
            for arch in fs::read_dir(&build).unwrap() {
                let meta = arch.unwrap().path().join("meta.json");
                if meta.is_file() {
                    out.insert(meta.clone(), fs::read(&meta).unwrap());
                }
            }
        }
        out
    }

    /// `pushgate push --repo REG/REPO_NAME --tag T... --artifact ARTIFACT --metajsonname
    /// KEY --workdir WD --write-digest-to-file WD/digest --tls-verify=false --json`, then
    /// `extra`, run from the workdir.
    fn push(
        &self,
        repo_name: &str,
        tags: &[&str],
        artifact: &str,
        key: &str,
        extra: &[String],
    ) -> Run {
        let mut args = vec![s("push"), s("--repo"), self.repo(repo_name)];
        for t in tags {
            args.push(s("--tag"));
            args.push(s(t));
        }
        args.extend([
            s("--artifact"),
            s(artifact),
            s("--metajsonname"),
            s(key),
            s("--workdir"),
            path_str(self.wd()),
            s("--write-digest-to-file"),
            path_str(&self.digest_file()),
            s("--tls-verify=false"),
            s("--json"),
        ]);
        args.extend_from_slice(extra);
        run_in(self.wd(), &args)
    }

    /// Pushes the `ostree` artifact under [`KEY`] to [`REPO_NAME`].
    fn push_os(&self, tags: &[&str], extra: &[String]) -> Run {
        self.push(REPO_NAME, tags, "ostree", KEY, extra)
    }

    /// Points `tag` of `repo_name` at a single-arch list of an unrelated image (pushed
    /// without a policy); returns that list's digest.
    fn occupy_tag(&self, repo_name: &str, tag: &str) -> String {
        let archive = self
            .wd()
            .join(format!("other-{repo_name}-{tag}.ociarchive"));
        write_oci_archive(
            &archive,
            &SampleImage {
                oci_arch: s("amd64"),
                variant: None,
                layers: 1,
                layer_size: 1024,
                seed: 4242,
            },
        )
        .unwrap();
        let args = vec![
            s("push"),
            s("--repo"),
            self.repo(repo_name),
            s("--tag"),
            s(tag),
            s("--image"),
            format!("oci-archive:{}", archive.display()),
            s("--tls-verify=false"),
            s("--json"),
        ];
        let run = run_in(self.wd(), &args);
        assert_eq!(run.ok()["outcome"], "pushed", "{run:?}");
        let digest = digest_at(&format!("{}:{tag}", self.repo(repo_name)));
        assert_eq!(run.json["manifest_list_digest"], digest.as_str());
        digest
    }

    /// What the registry and the workdir hold now; the digest file is removed first, so
    /// that a run that should write nothing can be seen not to have written it.
    fn snapshot(&self) -> Snapshot {
        let _ = fs::remove_file(self.digest_file());
        Snapshot {
            writes: self.reg.writes(),
            metas: self.all_metas(),
        }
    }
}

struct Snapshot {
    writes: Vec<Request>,
    metas: BTreeMap<PathBuf, Vec<u8>>,
}

impl Snapshot {
    /// Asserts no registry write since the snapshot and every meta.json byte-identical
    /// (what an up-to-date run leaves; it may still write the digest file).
    fn assert_no_writes(&self, fx: &Fixture, what: &str) {
        let writes = fx.reg.writes();
        assert_eq!(
            describe(&writes[self.writes.len().min(writes.len())..]),
            Vec::<String>::new(),
            "{what}: the registry was written to"
        );
        assert_eq!(writes.len(), self.writes.len(), "{what}: registry writes");
        let metas = fx.all_metas();
        assert_eq!(
            metas.keys().collect::<Vec<_>>(),
            self.metas.keys().collect::<Vec<_>>(),
            "{what}: the set of meta.json files changed"
        );
        for (path, bytes) in metas {
            assert!(
                self.metas.get(&path) == Some(&bytes),
                "{what}: {} changed:\n{}",
                path.display(),
                String::from_utf8_lossy(&bytes)
            );
        }
    }

    /// Asserts nothing was written since the snapshot: no registry write, every
    /// meta.json byte-identical, no digest file.
    fn assert_untouched(&self, fx: &Fixture, what: &str) {
        self.assert_no_writes(fx, what);
        assert!(
            !fx.digest_file().exists(),
            "{what}: a digest file was written"
        );
    }
}

/// Asserts a policy decided `fail`: exit 1, a `failed` report decided by the policy
/// `name`, whose reason (also on stderr) holds every needle; nothing uploaded or
/// recorded.
fn assert_failed_by(run: &Run, name: &str, needles: &[&str]) {
    assert_eq!(run.code, 1, "a fail decision exits 1: {run:?}");
    assert_eq!(run.outcome(), "failed", "{run:?}");
    assert!(
        run.decided_by().starts_with(&format!("policy {name} ")),
        "decided_by names the policy: {run:?}"
    );
    assert_eq!(run.json["policy"]["name"], name, "{run:?}");
    for needle in needles {
        assert!(
            run.reason().contains(needle),
            "the reason holds {needle:?}: {run:?}"
        );
        assert!(
            run.stderr.contains(needle),
            "stderr holds {needle:?}: {run:?}"
        );
    }
    assert!(
        run.stderr.contains(&format!("refused by policy {name} ")),
        "stderr says who refused: {run:?}"
    );
    assert_eq!(run.json["uploaded_blobs"], 0, "{run:?}");
    assert_eq!(strs(&run.json["recorded"]), Vec::<String>::new(), "{run:?}");
}

/// Asserts a module could not give a usable answer and the run failed closed: exit 1,
/// and the error, in the report when there is one and on stderr, names the module's
/// path and holds every needle.
fn assert_module_failed(run: &Run, module: &Path, needles: &[&str]) {
    let module = module.display().to_string();
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(&module),
        "stderr names the module {module}: {run:?}"
    );
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "stderr holds {needle:?}: {run:?}"
        );
    }
    if run.json.get("error").is_some() {
        // Failed before any report existed: --json still yields one object.
        assert_eq!(run.outcome(), "failed", "{run:?}");
        assert!(
            run.json["error"].as_str().unwrap().contains(&module),
            "{run:?}"
        );
    } else if !run.json.is_null() {
        assert_eq!(run.outcome(), "failed", "{run:?}");
        assert!(run.reason().contains(&module), "{run:?}");
        for needle in needles {
            assert!(run.reason().contains(needle), "{run:?}");
        }
        assert_eq!(run.json["uploaded_blobs"], 0, "{run:?}");
        assert_eq!(strs(&run.json["recorded"]), Vec::<String>::new(), "{run:?}");
    }
}

// ---------------------------------------------------------------------------------------
// default

#[test]
fn default_policy_follows_the_host_verdict_and_is_named_in_the_report() {
    let fx = Fixture::new();
    let module = policy_module("default");
    let repo = fx.repo(REPO_NAME);

    // settings it does not take: a fail naming the module, nothing written
    let before = fx.snapshot();
    let refused = fx.push_os(&["stable", "41"], &policy(&module, r#"{"x": 1}"#));
    assert_module_failed(&refused, &module, &["rejected the settings", "\"x\""]);
    before.assert_untouched(&fx, "default policy with bad settings");

    // a fresh build: the host says push, so does the policy
    let first = fx.push_os(&["stable", "41"], &policy(&module, "{}"));
    let report = first.ok();
    assert_eq!(first.outcome(), "pushed", "{first:?}");
    assert!(
        first.decided_by().starts_with("policy default "),
        "{first:?}"
    );
    let file = fs::read(&module).unwrap();
    assert_eq!(report["policy"]["name"], "default");
    assert_eq!(report["policy"]["sha256"], sha256_digest(&file).as_str());
    assert_eq!(
        report["policy"]["path"],
        module.display().to_string().as_str()
    );
    assert!(
        report["policy"]["version"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    assert_eq!(
        first.decided_by(),
        format!(
            "policy default {}",
            report["policy"]["version"].as_str().unwrap()
        )
    );
    let list_digest = report["manifest_list_digest"].as_str().unwrap().to_string();
    for tag in ["stable", "41"] {
        assert_eq!(digest_at(&format!("{repo}:{tag}")), list_digest, "{tag}");
    }
    let list = raw_json(&format!("{repo}:stable"));
    assert_eq!(list_digests(&list), report_digests(report));
    for (arch, digest) in ARCHES.iter().zip(list_digests(&list)) {
        let meta = fx.meta(BUILD, arch);
        assert_eq!(meta[KEY]["digest"], digest.as_str(), "{arch}");
        assert_eq!(meta[KEY]["manifest-list-digest"], list_digest.as_str());
    }
    assert_eq!(
        fs::read_to_string(fx.digest_file()).unwrap().trim(),
        list_digest
    );

    // a rerun: up to date, zero writes, still decided by the policy
    let before = fx.snapshot();
    let again = fx.push_os(&["stable", "41"], &policy(&module, "{}"));
    assert_eq!(again.ok()["outcome"], "up-to-date", "{again:?}");
    assert_eq!(again.decided_by(), first.decided_by());
    assert_eq!(again.json["policy"]["sha256"], report["policy"]["sha256"]);
    assert_eq!(again.json["manifest_list_digest"], list_digest.as_str());
    assert_eq!(again.json["uploaded_blobs"], 0);
    before.assert_no_writes(&fx, "an up-to-date rerun");
}

// ---------------------------------------------------------------------------------------
// kubevirt

const KUBEVIRT_X86: &str = r#"{"required-arches": ["x86_64"]}"#;
const KUBEVIRT_BOTH: &str = r#"{"required-arches": ["x86_64", "aarch64"]}"#;

#[test]
fn kubevirt_policy_fails_a_build_lacking_a_required_arch_and_rejects_bad_settings() {
    let fx = Fixture::new();
    let module = policy_module("kubevirt");
    let repo = fx.repo("kubevirt");
    let push = |settings: &str| {
        fx.push(
            "kubevirt",
            &["stable"],
            "kubevirt",
            "kubevirt",
            &policy(&module, settings),
        )
    };

    // the kubevirt artifact exists on x86_64 only: requiring aarch64 fails the container
    let before = fx.snapshot();
    let missing = push(KUBEVIRT_BOTH);
    assert_failed_by(
        &missing,
        "kubevirt",
        &[&format!(
            "required arch aarch64 has no artifact in build {BUILD}"
        )],
    );
    before.assert_untouched(&fx, "kubevirt with a missing required arch");
    assert!(skopeo_inspect_raw(&format!("{repo}:stable"), None).is_err());

    // invalid settings: a fail naming the module, nothing written
    let no_arches = push("{}");
    assert_module_failed(
        &no_arches,
        &module,
        &["rejected the settings", "\"required-arches\" is required"],
    );
    before.assert_untouched(&fx, "kubevirt without required-arches");
    let unknown = push(r#"{"required-arches": ["x86_64"], "arch": "s390x"}"#);
    assert_module_failed(
        &unknown,
        &module,
        &["rejected the settings", "unknown setting \"arch\""],
    );
    before.assert_untouched(&fx, "kubevirt with an unknown setting");

    // the required arch is there (settings from a file): the push lands, on that arch only
    let settings_file = fx.wd().join("kubevirt-settings.json");
    fs::write(&settings_file, KUBEVIRT_X86).unwrap();
    let ok = push(&format!("@{}", settings_file.display()));
    let report = ok.ok();
    assert_eq!(ok.outcome(), "pushed", "{ok:?}");
    assert!(ok.decided_by().starts_with("policy kubevirt "), "{ok:?}");
    let logs = strs(&report["policy_logs"]);
    assert!(
        logs.iter().any(|l| l.contains("kubevirt: push:")),
        "the module's log is reported: {logs:?}"
    );
    let list = raw_json(&format!("{repo}:stable"));
    assert_eq!(
        sha256_digest(&skopeo_inspect_raw(&format!("{repo}:stable"), None).unwrap()),
        report["manifest_list_digest"].as_str().unwrap()
    );
    let x86 = report["digests"]["x86_64"].as_str().unwrap().to_string();
    assert_eq!(list_digests(&list), vec![x86.clone()]);
    assert_eq!(fx.meta(BUILD, "x86_64")["kubevirt"]["digest"], x86.as_str());
    assert!(fx.meta(BUILD, "aarch64").get("kubevirt").is_none());
}

#[test]
fn kubevirt_policy_never_moves_a_tag_to_another_list_without_force() {
    let fx = Fixture::new();
    let module = policy_module("kubevirt");
    let repo = fx.repo("kubevirt");
    let other = fx.occupy_tag("kubevirt", "next");

    let before = fx.snapshot();
    let refused = fx.push(
        "kubevirt",
        &["stable", "next"],
        "kubevirt",
        "kubevirt",
        &policy(&module, KUBEVIRT_X86),
    );
    assert_failed_by(
        &refused,
        "kubevirt",
        &[&format!("tag next already points to {other}")],
    );
    before.assert_untouched(&fx, "kubevirt refusing to move a tag");
    assert_eq!(digest_at(&format!("{repo}:next")), other, "next not moved");
    assert!(
        skopeo_inspect_raw(&format!("{repo}:stable"), None).is_err(),
        "stable not created either"
    );

    // with --force the tag moves
    let forced = fx.push(
        "kubevirt",
        &["stable", "next"],
        "kubevirt",
        "kubevirt",
        &policy_and(&module, KUBEVIRT_X86, &["--force"]),
    );
    let report = forced.ok();
    assert_eq!(forced.outcome(), "pushed", "{forced:?}");
    assert!(
        forced.reason().contains("--force: moving tag next"),
        "{forced:?}"
    );
    let list_digest = report["manifest_list_digest"].as_str().unwrap();
    assert_ne!(list_digest, other);
    assert_eq!(digest_at(&format!("{repo}:next")), list_digest);
    assert_eq!(digest_at(&format!("{repo}:stable")), list_digest);
    assert_eq!(
        fx.meta(BUILD, "x86_64")["kubevirt"]["manifest-list-digest"],
        list_digest
    );
}

// ---------------------------------------------------------------------------------------
// release-tags

const RELEASE_TAGS: &str = r#"{"immutable": ["*.*.*"], "floating": ["stable"]}"#;

#[test]
fn release_tags_policy_never_moves_a_published_release_tag_but_moves_floating_ones() {
    let fx = Fixture::new();
    let module = policy_module("release-tags");
    let repo = fx.repo(REPO_NAME);

    // the first release: a new release tag is published
    let first = fx.push_os(&["stable", BUILD], &policy(&module, RELEASE_TAGS));
    let first_list = first.ok()["manifest_list_digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(first.outcome(), "pushed", "{first:?}");
    assert!(
        first.decided_by().starts_with("policy release-tags "),
        "{first:?}"
    );
    assert_eq!(digest_at(&format!("{repo}:{BUILD}")), first_list);
    assert_eq!(digest_at(&format!("{repo}:stable")), first_list);

    // a newer build wrongly published under the first one's version tag: refused,
    // with and without --force
    write_build(fx.wd(), &SampleBuild::small(NEXT_BUILD, &ARCHES)).unwrap();
    let before = fx.snapshot();
    for extra in [&[][..], &["--force"][..]] {
        let refused = fx.push_os(
            &["stable", BUILD],
            &policy_and(&module, RELEASE_TAGS, extra),
        );
        assert_failed_by(
            &refused,
            "release-tags",
            &[&format!(
                "release tag {BUILD} is already published at {first_list}"
            )],
        );
        before.assert_untouched(&fx, &format!("release-tags refusal {extra:?}"));
        assert_eq!(digest_at(&format!("{repo}:{BUILD}")), first_list);
        assert_eq!(digest_at(&format!("{repo}:stable")), first_list);
    }

    // its own version tag: published, and the floating tag moves to it
    let second = fx.push_os(&["stable", NEXT_BUILD], &policy(&module, RELEASE_TAGS));
    let report = second.ok();
    assert_eq!(second.outcome(), "pushed", "{second:?}");
    let second_list = report["manifest_list_digest"].as_str().unwrap();
    assert_ne!(second_list, first_list);
    assert_eq!(
        digest_at(&format!("{repo}:stable")),
        second_list,
        "stable moved"
    );
    assert_eq!(digest_at(&format!("{repo}:{NEXT_BUILD}")), second_list);
    assert_eq!(
        digest_at(&format!("{repo}:{BUILD}")),
        first_list,
        "the first release tag stays"
    );
    for arch in ARCHES {
        assert_eq!(
            fx.meta(NEXT_BUILD, arch)[KEY]["manifest-list-digest"],
            second_list
        );
        assert_eq!(
            fx.meta(BUILD, arch)[KEY]["manifest-list-digest"],
            first_list.as_str()
        );
    }
}

// ---------------------------------------------------------------------------------------
// hostile modules

#[test]
fn runaway_modules_are_stopped_by_fuel_time_and_memory_caps_and_traps_fail_closed() {
    let fx = Fixture::new();
    let module = policy_module("hostile");
    let cases: [(&str, &[&str], &[&str]); 4] = [
        (
            "loop",
            &["--policy-fuel", "100000000"],
            &["decide exceeded its fuel (100000000 units) cap"],
        ),
        (
            "loop",
            &[
                "--policy-fuel",
                "1000000000000000",
                "--policy-timeout-ms",
                "300",
            ],
            &["decide exceeded its time (300ms) cap"],
        ),
        (
            "memory",
            &["--policy-memory-mib", "64"],
            &["decide exceeded its memory (64 MiB) cap"],
        ),
        ("trap", &[], &["trapped in decide", "unreachable"]),
    ];
    let before = fx.snapshot();
    for (mode, caps, needles) in cases {
        let run = fx.push_os(&["stable"], &policy_and(&module, &hostile(mode), caps));
        assert_module_failed(&run, &module, needles);
        assert!(
            run.decided_by().starts_with("policy hostile "),
            "{mode}: {run:?}"
        );
        before.assert_untouched(&fx, &format!("hostile {mode} {caps:?}"));
    }
    assert!(fx.reg.writes().is_empty());
}

#[test]
fn modules_that_break_the_contract_or_cannot_be_loaded_fail_closed() {
    let fx = Fixture::new();
    let hostile_module = policy_module("hostile");
    let wrong_version = policy_module("wrong-version");
    let not_wasm = fx.wd().join("policy.wasm");
    fs::write(&not_wasm, "fn main() {}\n").unwrap();
    let core_module = fx.wd().join("core.wasm");
    fs::write(&core_module, b"\0asm\x01\0\0\0").unwrap();
    let missing = fx.wd().join("no-such-policy.wasm");

    let before = fx.snapshot();
    let cases: [(&Path, String, &[&str]); 5] = [
        (
            &hostile_module,
            hostile("bad-settings"),
            &[
                "rejected the settings",
                "hostile: these settings are always rejected",
            ],
        ),
        (
            &wrong_version,
            s("{}"),
            &[
                "does not implement a contract this pushgate runs \
                 (pushgate:policy/policy@0.2.0, pushgate:policy/policy@0.1.0)",
                "it exports pushgate:policy/policy@9.0.0",
            ],
        ),
        (&not_wasm, s("{}"), &["not a WebAssembly file"]),
        (&core_module, s("{}"), &["not a usable component"]),
        (&missing, s("{}"), &["cannot read it"]),
    ];
    for (module, settings, needles) in cases {
        let run = fx.push_os(&["stable"], &policy(module, &settings));
        assert_module_failed(&run, module, needles);
        before.assert_untouched(&fx, &module.display().to_string());
    }
    assert!(fx.reg.writes().is_empty());
}

#[test]
fn sandboxed_module_cannot_see_files_environment_or_a_real_clock() {
    let fx = Fixture::new();
    let module = policy_module("hostile");
    // pushgate itself runs with an environment and from a directory full of files
    let before = fx.snapshot();
    for (mode, reason) in [
        ("read-file", "could not read files"),
        ("env", "no environment"),
        ("clock", "clock is fixed"),
    ] {
        let run = fx.push_os(&["stable"], &policy(&module, &hostile(mode)));
        assert_failed_by(&run, "hostile", &[reason]);
        assert_eq!(
            run.reason(),
            reason,
            "{mode}: the module saw something: {run:?}"
        );
        before.assert_untouched(&fx, mode);
    }
    assert!(fx.reg.writes().is_empty());
}

#[test]
fn a_sleeping_module_does_not_hold_pushgate_past_its_deadline() {
    let fx = Fixture::new();
    let module = policy_module("hostile");
    let before = fx.snapshot();

    // sleeping an hour returns at once: the monotonic clock is frozen too
    let start = std::time::Instant::now();
    let run = fx.push_os(&["stable"], &policy_and(&module, &hostile("sleep"), &[]));
    assert!(
        start.elapsed() < std::time::Duration::from_secs(60),
        "{run:?}"
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.outcome(), "skipped", "{run:?}");
    assert_eq!(run.reason(), "slept 0ns", "{run:?}");
    before.assert_untouched(&fx, "hostile sleep");

    // waiting for the clock to move never ends: the deadline does
    let start = std::time::Instant::now();
    let caps = [
        "--policy-fuel",
        "1000000000000000",
        "--policy-timeout-ms",
        "300",
    ];
    let run = fx.push_os(
        &["stable"],
        &policy_and(&module, &hostile("sleep-until"), &caps),
    );
    assert!(
        start.elapsed() < std::time::Duration::from_secs(60),
        "{run:?}"
    );
    assert_module_failed(&run, &module, &["decide exceeded its time (300ms) cap"]);
    before.assert_untouched(&fx, "hostile sleep-until");
    assert!(fx.reg.writes().is_empty());
}

/// Whether `text` holds a control character (a terminal escape, a bell, ...)
/// other than a line break.
fn has_control(text: &str) -> bool {
    text.chars().any(|c| c.is_control() && c != '\n')
}

#[test]
fn what_a_module_says_is_cut_and_inert_and_its_stdio_goes_nowhere() {
    let fx = Fixture::new();
    let module = policy_module("hostile");
    let dry = |mode: &str| {
        fx.push_os(
            &["stable"],
            &policy_and(&module, &hostile(mode), &["--dry-run"]),
        )
    };
    let before = fx.snapshot();

    // escapes are dropped from the reason and from log lines
    let run = dry("escape-reason");
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.reason(), "[2J[31mred[0mbell  next lineend", "{run:?}");
    assert_eq!(
        strs(&run.json["policy_logs"]),
        vec![s("warn: [2J[31mred[0mbell  next lineend")],
        "{run:?}"
    );
    assert!(
        !has_control(&run.stdout) && !run.stderr.contains('\x1b'),
        "{run:?}"
    );

    // a 64 MiB reason is cut to 4000 characters
    let run = dry("huge-reason");
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.reason().chars().count(), 4001, "{}", run.context());
    assert!(run.reason().ends_with('…') && !has_control(run.reason()));
    assert!(
        run.stdout.len() < 64 << 10,
        "{} bytes of stdout",
        run.stdout.len()
    );

    // a flood of logs: 100 lines of 1000 characters
    let run = dry("log-flood");
    assert_eq!(run.reason(), "logged", "{}", run.context());
    let logs = strs(&run.json["policy_logs"]);
    assert_eq!(logs.len(), 100);
    assert!(
        logs.iter().all(|l| l.chars().count() <= 1010),
        "{:?}",
        logs[0]
    );
    assert!(
        run.stdout.len() < 1 << 20,
        "{} bytes of stdout",
        run.stdout.len()
    );

    // what a module writes to stdout and stderr is discarded
    let run = dry("stdout-flood");
    assert_eq!(run.reason(), "flooded", "{}", run.context());
    assert!(!run.stdout.contains("hostile flood"), "{}", run.context());
    assert!(!run.stderr.contains("hostile flood"), "{}", run.context());
    assert!(run.stdout.len() + run.stderr.len() < 64 << 10);

    // a settings rejection is cut and inert too
    let run = dry("escape-settings");
    assert_module_failed(
        &run,
        &module,
        &[
            "rejected the settings",
            "[2J[31mred[0mbell  next lineendyyy",
        ],
    );
    assert!(!has_control(run.reason()), "{run:?}");
    assert!(run.reason().ends_with("yyy…"), "{run:?}");
    assert!(run.reason().len() < 5000, "{} bytes", run.reason().len());

    before.assert_untouched(&fx, "hostile modules that talk too much");
    assert!(fx.reg.writes().is_empty());
}

// ---------------------------------------------------------------------------------------
// skip and determinism

#[test]
fn a_policy_skip_leaves_registry_and_meta_json_untouched() {
    let fx = Fixture::new();
    let module = policy_module("hostile");
    let repo = fx.repo(REPO_NAME);
    // `random` decides by a value drawn from wasi:random, which the host seeds with a
    // fixed value: the same skip on every run, whatever the facts.
    let random = policy(&module, &hostile("random"));

    // the host would push a fresh build; the policy skips it
    let before = fx.snapshot();
    let fresh = fx.push_os(&["stable"], &random);
    assert_eq!(fresh.code, 0, "a skip is not a failure: {fresh:?}");
    assert_eq!(fresh.outcome(), "skipped", "{fresh:?}");
    assert_eq!(fresh.json["plan"]["verdict"], "push", "{fresh:?}");
    assert!(fresh.reason().starts_with("random value "), "{fresh:?}");
    before.assert_untouched(&fx, "skip of a fresh build");
    assert!(skopeo_inspect_raw(&format!("{repo}:stable"), None).is_err());

    // the registry has it, meta.json does not (record-only): a skip records nothing
    let pristine = fx.all_metas();
    assert_eq!(fx.push_os(&["stable"], &[]).ok()["outcome"], "pushed");
    let list_digest = digest_at(&format!("{repo}:stable"));
    for (path, bytes) in &pristine {
        fs::write(path, bytes).unwrap();
    }
    let before = fx.snapshot();
    let record_only = fx.push_os(&["stable"], &random);
    assert_eq!(record_only.code, 0, "{record_only:?}");
    assert_eq!(record_only.outcome(), "skipped", "{record_only:?}");
    assert_eq!(record_only.json["plan"]["verdict"], "record-only");
    assert_eq!(
        record_only.reason(),
        fresh.reason(),
        "same value, same decision"
    );
    before.assert_untouched(&fx, "skip of a record-only build");
    assert_eq!(digest_at(&format!("{repo}:stable")), list_digest);

    // the default policy follows the host: meta.json is recorded
    let recorded = fx.push_os(&["stable"], &policy(&policy_module("default"), "{}"));
    assert_eq!(recorded.ok()["outcome"], "recorded", "{recorded:?}");
    assert_eq!(strs(&recorded.json["recorded"]), ARCHES.map(s).to_vec());
}

#[test]
fn decisions_are_the_same_across_runs_and_calls_sharing_a_module() {
    let fx = Fixture::new();
    let module = policy_module("hostile");

    // two separate runs, same facts: same decision
    let before = fx.snapshot();
    let mut answers = Vec::new();
    for mode in ["random", "counter"] {
        let runs: Vec<Run> = (0..2)
            .map(|_| {
                fx.push_os(
                    &["stable"],
                    &policy_and(&module, &hostile(mode), &["--dry-run"]),
                )
            })
            .collect();
        for run in &runs {
            assert_eq!(run.code, 0, "{mode}: {run:?}");
        }
        assert_eq!(runs[0].outcome(), runs[1].outcome(), "{mode}");
        assert_eq!(runs[0].reason(), runs[1].reason(), "{mode}");
        answers.push((runs[0].outcome().to_string(), runs[0].reason().to_string()));
    }
    before.assert_untouched(&fx, "dry runs");
    // a dry run says what it would do
    assert_eq!(answers[1], (s("would-push"), s("call 1 of this instance")));

    // one release, two containers per mode sharing the module: no state leaks from one
    // call to the next
    let module_toml = toml::Value::String(path_str(&module)).to_string();
    let mut config = format!("workdir = {}\n", toml::Value::String(path_str(fx.wd())));
    for (name, mode) in [
        ("counter-a", "counter"),
        ("counter-b", "counter"),
        ("random-a", "random"),
        ("random-b", "random"),
    ] {
        config.push_str(&format!(
            "\n[[container]]\nname = \"{name}\"\nartifact = \"ostree\"\nkey = \"{name}\"\n\
             repo = \"{repo}\"\ntags = [\"stable\"]\npolicy = {module_toml}\n\
             settings = {{ mode = \"{mode}\" }}\n",
            repo = fx.repo(name),
        ));
    }
    let config_path = fx.wd().join("release.toml");
    fs::write(&config_path, config).unwrap();
    let release = run_in(
        fx.wd(),
        &[
            s("release"),
            s("--config"),
            path_str(&config_path),
            s("--tls-verify=false"),
            s("--json"),
        ],
    );
    assert_eq!(release.code, 0, "{release:?}");
    let results = |name| release.release_result(name);
    for name in ["counter-a", "counter-b"] {
        assert_eq!(results(name)["outcome"], "pushed", "{name}: {release:?}");
        assert_eq!(
            results(name)["reason"],
            "call 1 of this instance",
            "{name}: a fresh instance per call"
        );
        assert_eq!(
            digest_at(&format!("{}:stable", fx.repo(name))),
            results(name)["manifest_list_digest"].as_str().unwrap()
        );
    }
    // what the dry runs said they would do, done
    let done = match answers[0].0.as_str() {
        "would-push" => "pushed",
        "would-record" => "recorded",
        other => other,
    };
    for name in ["random-a", "random-b"] {
        assert_eq!(results(name)["outcome"], done, "{name}: {release:?}");
        assert_eq!(results(name)["reason"], answers[0].1.as_str(), "{name}");
    }
}

// ---------------------------------------------------------------------------------------
// facts

#[test]
fn the_facts_a_module_sees_match_the_real_situation() {
    let fx = Fixture::new();
    let module = policy_module("hostile");
    let repo = fx.repo(REPO_NAME);
    let settings = hostile("echo");
    let echo = policy(&module, &settings);
    let other = fx.occupy_tag(REPO_NAME, "41");
    let requested = json!(ARCHES);

    // a dry run on a fresh build: tag 41 points elsewhere, stable does not exist
    let before = fx.snapshot();
    let dry = fx.push_os(
        &["stable", "41"],
        &policy_and(&module, &settings, &["--dry-run"]),
    );
    assert_eq!(dry.code, 0, "{dry:?}");
    before.assert_untouched(&fx, "echo dry run");
    let f = dry.echoed_facts();
    assert_eq!(f["dry-run"], true);
    assert_eq!(f["verdict"], "push");
    assert_eq!(
        f["tags"],
        json!([
            {"name": "stable", "current": null, "is-desired": false},
            {"name": "41", "current": other, "is-desired": false},
        ])
    );

    // the real push
    let first = fx.push_os(&["stable", "41"], &echo);
    let report = first.ok();
    assert_eq!(first.outcome(), "pushed", "{first:?}");
    let list_digest = digest_at(&format!("{repo}:stable"));
    assert_eq!(digest_at(&format!("{repo}:41")), list_digest);
    let pushed = list_digests(&raw_json(&format!("{repo}:stable")));
    assert_eq!(pushed, report_digests(report));
    let f = first.echoed_facts();
    assert_eq!(f["container"], KEY);
    assert_eq!(f["repo"], repo.as_str());
    assert_eq!(f["build-id"], BUILD);
    assert_eq!(f["key"], KEY);
    assert_eq!(f["requested-arches"], requested);
    assert_eq!(f["present-arches"], requested);
    assert_eq!(f["verdict"], "push");
    assert!(
        f["verdict-reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{f}"
    );
    assert_eq!(f["force"], false);
    assert_eq!(f["dry-run"], false);
    assert_eq!(f["settings"], settings.as_str());
    assert_eq!(f["desired-list-digest"], list_digest.as_str());
    assert_eq!(
        f["tags"],
        json!([
            {"name": "stable", "current": null, "is-desired": false},
            {"name": "41", "current": other, "is-desired": false},
        ])
    );
    let arches: Vec<Value> = ARCHES
        .iter()
        .zip(&pushed)
        .map(|(arch, digest)| {
            json!({"arch": arch, "has-key": false, "recorded-digest": null,
                   "desired-digest": digest, "registry-digest": null})
        })
        .collect();
    assert_eq!(f["arches"], json!(arches));

    // a rerun: up to date, as recorded
    let before = fx.snapshot();
    let again = fx.push_os(&["stable", "41"], &echo);
    assert_eq!(again.ok()["outcome"], "up-to-date", "{again:?}");
    before.assert_no_writes(&fx, "echo rerun");
    let f = again.echoed_facts();
    assert_eq!(f["verdict"], "up-to-date");
    assert_eq!(f["dry-run"], false);
    assert_eq!(f["desired-list-digest"], list_digest.as_str());
    assert_eq!(
        f["tags"],
        json!([
            {"name": "stable", "current": list_digest, "is-desired": true},
            {"name": "41", "current": list_digest, "is-desired": true},
        ])
    );
    let arches: Vec<Value> = ARCHES
        .iter()
        .zip(&pushed)
        .map(|(arch, digest)| {
            json!({"arch": arch, "has-key": true, "recorded-digest": digest,
                   "desired-digest": digest, "registry-digest": digest})
        })
        .collect();
    assert_eq!(f["arches"], json!(arches));

    // an artifact on some arches only, forced, dry: requested and present differ
    let before = fx.snapshot();
    let kubevirt = fx.push(
        "kubevirt",
        &["stable"],
        "kubevirt",
        "kubevirt",
        &policy_and(&module, &settings, &["--dry-run", "--force"]),
    );
    assert_eq!(kubevirt.code, 0, "{kubevirt:?}");
    before.assert_untouched(&fx, "echo of kubevirt");
    let f = kubevirt.echoed_facts();
    assert_eq!(f["container"], "kubevirt");
    assert_eq!(f["key"], "kubevirt");
    assert_eq!(f["requested-arches"], requested);
    assert_eq!(f["present-arches"], json!(["x86_64"]));
    assert_eq!(f["force"], true);
    assert_eq!(f["dry-run"], true);
    let arches = f["arches"].as_array().unwrap();
    assert_eq!(arches.len(), 1, "{f}");
    assert_eq!(arches[0]["arch"], "x86_64");
    assert_eq!(
        arches[0]["desired-digest"],
        kubevirt.json["digests"]["x86_64"]
    );
}
