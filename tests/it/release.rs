//! End-to-end behaviours of `pushgate release`: a product's containers in one run
//! against a real `docker-registry`, one failing while the others land, reruns that
//! finish only what is missing (also after a SIGKILL halfway), `{build}` expansion and
//! `--build`, and config errors. What landed is confirmed with skopeo, what was written
//! with the registry's access log.

use std::fs::{self, File};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::run::{Run, describe, digest_at, path_str, s};
use crate::support::{Registry, Request, policy_module, pushgate, skopeo_inspect_raw};
use pushgate_sample::{SampleBuild, SampleContainer, write_build};

const BUILD: &str = "41.20261127.1.0";
const NEXT_BUILD: &str = "41.20261128.1.0";
const ARCHES: [&str; 2] = ["x86_64", "aarch64"];
const OS_KEY: &str = "base-oscontainer";
const EXT_KEY: &str = "extensions-container";
const KV_KEY: &str = "kubevirt";
const OS_REPO: &str = "fcos";
const EXT_REPO: &str = "fcos-extensions";
const KV_REPO: &str = "fcos-kubevirt";
const NAMES: [&str; 3] = ["oscontainer", "extensions", "kubevirt"];
/// Upper bound on one release run, for the run that is to be killed.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// The signal `Child::kill` sends.
const SIGKILL: i32 = 9;

// ---------------------------------------------------------------------------------------
// helpers

trait ReleaseRun {
    fn result(&self, name: &str) -> &Value;
    fn outcome_of(&self, name: &str) -> &str;
    fn list_digest(&self, name: &str) -> String;
}

impl ReleaseRun for Run {
    fn result(&self, name: &str) -> &Value {
        let r = self.release_result(name);
        assert!(r.is_object(), "no result for {name}: {self:?}");
        r
    }

    fn outcome_of(&self, name: &str) -> &str {
        self.result(name)["outcome"].as_str().unwrap_or_default()
    }

    fn list_digest(&self, name: &str) -> String {
        self.result(name)["manifest_list_digest"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no list digest: {self:?}"))
            .to_string()
    }
}

/// A TOML string literal.
fn toml_str(v: &str) -> String {
    toml::Value::String(v.to_string()).to_string()
}

fn list_digests(reference: &str) -> Vec<String> {
    let raw =
        skopeo_inspect_raw(reference, None).unwrap_or_else(|e| panic!("skopeo {reference}: {e}"));
    let list: Value = serde_json::from_slice(&raw).expect("manifest JSON");
    list["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("{reference} is not a list: {list}"))
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect()
}

/// The writes of `reqs` to repository `repo_name`.
fn writes_to(reqs: &[Request], repo_name: &str) -> Vec<Request> {
    let prefix = format!("/v2/{repo_name}/");
    reqs.iter()
        .filter(|r| r.is_write() && r.path.starts_with(&prefix))
        .cloned()
        .collect()
}

/// A build with `ostree` and `extensions-container` on every arch and `kubevirt` on
/// the first arch only.
fn product_build(id: &str) -> SampleBuild {
    let mut build = SampleBuild::small(id, &ARCHES);
    build.containers.push(SampleContainer {
        artifact: s(EXT_KEY),
        arches: None,
        layers: None,
    });
    build
}

/// A registry, a cosa workdir, and a release config in `WD/release/` whose policy
/// modules are copies in `WD/release/policies/` (paths relative to the config).
struct Product {
    reg: Registry,
    wd: TempDir,
}

impl Product {
    fn new() -> Product {
        let wd = tempfile::Builder::new()
            .prefix("pushgate-release-test-")
            .tempdir()
            .unwrap();
        write_build(wd.path(), &product_build(BUILD)).expect("write sample build");
        let policies = wd.path().join("release").join("policies");
        fs::create_dir_all(&policies).unwrap();
        for (name, file) in [
            ("release-tags", "release-tags.wasm"),
            ("kubevirt", "kubevirt.wasm"),
        ] {
            fs::copy(policy_module(name), policies.join(file)).unwrap();
        }
        Product {
            reg: Registry::start(),
            wd,
        }
    }

    fn wd(&self) -> &Path {
        self.wd.path()
    }

    fn config(&self) -> PathBuf {
        self.wd().join("release").join("release.toml")
    }

    fn repo(&self, name: &str) -> String {
        self.reg.repo(name)
    }

    /// The three containers; kubevirt requires `kubevirt_arches`.
    fn write_config(&self, kubevirt_arches: &[&str]) {
        let required: Vec<String> = kubevirt_arches.iter().map(|a| toml_str(a)).collect();
        let config = format!(
            r#"# written by tests/release.rs
workdir = ".."
build = "latest"

[[container]]
name = "oscontainer"
artifact = "ostree"
key = "{OS_KEY}"
repo = {os_repo}
tags = ["stable", "{{build}}"]
policy = "policies/release-tags.wasm"
settings = {{ immutable = ["*.*.*"], floating = ["stable"] }}

[[container]]
name = "extensions"
artifact = "extensions-container"
key = "{EXT_KEY}"
repo = {ext_repo}
tags = ["{{build}}"]

[[container]]
name = "kubevirt"
artifact = "kubevirt"
key = "{KV_KEY}"
repo = {kv_repo}
tags = ["stable", "{{build}}"]
policy = "policies/kubevirt.wasm"
settings = {{ required-arches = [{required}] }}
"#,
            os_repo = toml_str(&self.repo(OS_REPO)),
            ext_repo = toml_str(&self.repo(EXT_REPO)),
            kv_repo = toml_str(&self.repo(KV_REPO)),
            required = required.join(", "),
        );
        fs::write(self.config(), config).unwrap();
    }

    fn args(&self, config: &Path, extra: &[&str]) -> Vec<String> {
        let mut args = vec![
            s("release"),
            s("--config"),
            path_str(config),
            s("--tls-verify=false"),
        ];
        args.extend(extra.iter().map(|a| s(a)));
        args
    }

    /// `pushgate release --config CONFIG --tls-verify=false EXTRA`, run from the workdir.
    fn release_with(&self, config: &Path, extra: &[&str]) -> Run {
        Run::of(
            pushgate()
                .args(self.args(config, extra))
                .current_dir(self.wd())
                .stdin(Stdio::null()),
        )
    }

    fn release(&self, extra: &[&str]) -> Run {
        self.release_with(&self.config(), extra)
    }

    fn meta_path(&self, build: &str, arch: &str) -> PathBuf {
        self.wd()
            .join("builds")
            .join(build)
            .join(arch)
            .join("meta.json")
    }

    fn meta(&self, build: &str, arch: &str) -> Value {
        serde_json::from_slice(&fs::read(self.meta_path(build, arch)).unwrap()).unwrap()
    }

    fn metas(&self, build: &str) -> Vec<Vec<u8>> {
        ARCHES
            .iter()
            .map(|a| fs::read(self.meta_path(build, a)).unwrap())
            .collect()
    }
}

/// Asserts what a landed container looks like: every tag serves `list` (per skopeo),
/// whose entries are the digests meta.json records under `key` for `arches`, each
/// recorded once, with that list digest.
fn assert_landed(
    p: &Product,
    repo_name: &str,
    tags: &[&str],
    key: &str,
    arches: &[&str],
    list: &str,
) {
    let repo = p.repo(repo_name);
    for tag in tags {
        assert_eq!(digest_at(&format!("{repo}:{tag}")), list, "{repo}:{tag}");
    }
    let entries = list_digests(&format!("{repo}:{}", tags[0]));
    assert_eq!(entries.len(), arches.len(), "{repo}: {entries:?}");
    for (arch, digest) in arches.iter().zip(&entries) {
        let path = p.meta_path(BUILD, arch);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.matches(&format!("\n    \"{key}\": ")).count(),
            1,
            "{key} recorded once in {}:\n{text}",
            path.display()
        );
        let meta: Value = serde_json::from_str(&text).unwrap();
        let entry = &meta[key];
        assert_eq!(entry["image"], repo.as_str(), "{arch} {key}");
        assert_eq!(entry["digest"], digest.as_str(), "{arch} {key}");
        assert_eq!(entry["manifest-list-digest"], list, "{arch} {key}");
        assert!(
            entry.get("additional-images").is_none(),
            "{arch} {key} recorded more than once: {entry}"
        );
    }
}

/// One row of the summary table: (container, decision, list digest, reason).
fn table_rows(stdout: &str) -> Vec<(String, String, String, String)> {
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with("CONTAINER"));
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_else(|| panic!("no summary table in:\n{stdout}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["CONTAINER", "DECISION", "LIST", "DIGEST", "REASON"],
        "{stdout}"
    );
    // Columns are two or more spaces apart; a decision may be two words ("would push").
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut cols = l.split("  ").map(str::trim).filter(|c| !c.is_empty());
            let mut next = || s(cols.next().unwrap_or_default());
            let (name, decision, digest) = (next(), next(), next());
            let reason = cols.collect::<Vec<_>>().join("  ");
            (name, decision, digest, reason)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// a release with a failing container, then a rerun after the fix

#[test]
fn release_lands_the_good_containers_when_one_fails_and_a_fixed_rerun_finishes_it() {
    let p = Product::new();
    // kubevirt exists on x86_64 only: requiring aarch64 fails that container
    p.write_config(&["x86_64", "aarch64"]);
    let pristine = p.metas(BUILD);

    let first = p.release(&[]);
    assert_eq!(first.code, 1, "one container failed: {first:?}");
    assert!(
        first
            .stderr
            .contains("1 of 3 container(s) failed: kubevirt"),
        "{first:?}"
    );
    // what landed
    let os_list = digest_at(&format!("{}:stable", p.repo(OS_REPO)));
    let ext_list = digest_at(&format!("{}:{BUILD}", p.repo(EXT_REPO)));
    assert_landed(&p, OS_REPO, &["stable", BUILD], OS_KEY, &ARCHES, &os_list);
    assert_landed(&p, EXT_REPO, &[BUILD], EXT_KEY, &ARCHES, &ext_list);
    // the failing container wrote nothing
    let writes = p.reg.writes();
    assert_eq!(
        describe(&writes_to(&writes, KV_REPO)),
        Vec::<String>::new(),
        "the failed container wrote to the registry"
    );
    assert!(skopeo_inspect_raw(&format!("{}:stable", p.repo(KV_REPO)), None).is_err());
    for arch in ARCHES {
        assert!(p.meta(BUILD, arch).get(KV_KEY).is_none(), "{arch}");
    }
    assert_ne!(p.metas(BUILD), pristine);
    // the per-container summaries and the table
    assert!(
        first.stdout.contains("FAILED: nothing written"),
        "{first:?}"
    );
    let rows = table_rows(&first.stdout);
    assert_eq!(
        rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        NAMES,
        "{first:?}"
    );
    assert_eq!(
        (rows[0].1.as_str(), rows[0].2.as_str()),
        ("pushed", os_list.as_str())
    );
    assert_eq!(
        (rows[1].1.as_str(), rows[1].2.as_str()),
        ("pushed", ext_list.as_str())
    );
    assert_eq!(rows[2].1, "failed", "{first:?}");
    assert!(
        rows[2].3.contains(&format!(
            "required arch aarch64 has no artifact in build {BUILD}"
        )),
        "{rows:?}"
    );
    for row in &rows[..2] {
        assert!(!row.3.is_empty(), "a reason for every row: {rows:?}");
    }

    // the same release again, as JSON: the two done are up to date, kubevirt still fails
    let metas_before = p.metas(BUILD);
    let writes_before = p.reg.writes();
    let again = p.release(&["--json"]);
    assert_eq!(again.code, 1, "{again:?}");
    assert_eq!(again.json["ok"], false, "{again:?}");
    assert_eq!(again.json["containers"], json!(NAMES));
    // results: an array in config order, each naming its container
    let results = again.json["results"].as_array().unwrap();
    let order: Vec<_> = results.iter().map(|r| r["container"].clone()).collect();
    assert_eq!(order, NAMES, "{again:?}");
    assert_eq!(again.outcome_of("oscontainer"), "up-to-date", "{again:?}");
    assert_eq!(again.list_digest("oscontainer"), os_list);
    assert!(
        again.result("oscontainer")["decided_by"]
            .as_str()
            .unwrap()
            .starts_with("policy release-tags "),
        "{again:?}"
    );
    assert_eq!(again.outcome_of("extensions"), "up-to-date", "{again:?}");
    assert_eq!(again.result("extensions")["decided_by"], "host");
    assert_eq!(again.list_digest("extensions"), ext_list);
    let kv = again.result("kubevirt");
    assert_eq!(kv["outcome"], "failed", "{again:?}");
    assert!(
        kv["reason"]
            .as_str()
            .unwrap()
            .contains("required arch aarch64 has no artifact"),
        "{again:?}"
    );
    assert_eq!(kv["policy"]["name"], "kubevirt");
    assert_eq!(
        kv["policy"]["path"],
        path_str(&p.wd().join("release/policies/kubevirt.wasm")).as_str(),
        "the policy path is relative to the config file"
    );
    assert_eq!(p.reg.writes(), writes_before, "a rerun writes nothing");
    assert_eq!(p.metas(BUILD), metas_before);

    // fixed settings: only kubevirt is written
    p.write_config(&["x86_64"]);
    let before_fix = p.reg.writes().len();
    let fixed = p.release(&["--json"]);
    assert_eq!(fixed.code, 0, "{fixed:?}");
    assert_eq!(fixed.json["ok"], true);
    assert_eq!(fixed.outcome_of("oscontainer"), "up-to-date", "{fixed:?}");
    assert_eq!(fixed.outcome_of("extensions"), "up-to-date", "{fixed:?}");
    assert_eq!(fixed.outcome_of("kubevirt"), "pushed", "{fixed:?}");
    let writes = p.reg.writes();
    let since = &writes[before_fix..];
    for repo in [OS_REPO, EXT_REPO] {
        assert_eq!(
            describe(&writes_to(since, repo)),
            Vec::<String>::new(),
            "{repo} was done already"
        );
    }
    assert!(!writes_to(since, KV_REPO).is_empty());
    let kv_list = fixed.list_digest("kubevirt");
    assert_landed(
        &p,
        KV_REPO,
        &["stable", BUILD],
        KV_KEY,
        &["x86_64"],
        &kv_list,
    );
    assert!(p.meta(BUILD, "aarch64").get(KV_KEY).is_none());
    for (arch, before) in ARCHES.iter().zip(&metas_before) {
        let before: Value = serde_json::from_slice(before).unwrap();
        let after = p.meta(BUILD, arch);
        for key in [OS_KEY, EXT_KEY] {
            assert_eq!(after[key], before[key], "{arch} {key} untouched");
        }
    }
}

// ---------------------------------------------------------------------------------------
// SIGKILL halfway, then reruns

#[test]
fn a_release_killed_halfway_converges_on_rerun() {
    let p = Product::new();
    p.write_config(&["x86_64"]);

    // kill the release as soon as a container's first tag is in the access log (the
    // containers go in parallel: others may be anywhere by then)
    let outputs = TempDir::new().unwrap();
    let mut child = pushgate()
        .args(p.args(&p.config(), &["--json"]))
        .current_dir(p.wd())
        .stdin(Stdio::null())
        .stdout(File::create(outputs.path().join("stdout")).unwrap())
        .stderr(File::create(outputs.path().join("stderr")).unwrap())
        .spawn()
        .expect("spawn pushgate release");
    let is_tag_put = |r: &Request| {
        r.method == "PUT"
            && r.status < 300
            && r.path.contains("/manifests/")
            && !r.path.contains("/manifests/sha256:")
    };
    let mut first_tag = None;
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        // Each poll waits for the registry's sentinel to reach the access log.
        if let Some(put) = p.reg.requests().into_iter().find(is_tag_put) {
            child.kill().expect("SIGKILL pushgate");
            first_tag = Some(put.path);
            break child.wait().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the release neither put the first tag nor exited within {RUN_TIMEOUT:?}");
        }
    };
    assert_eq!(
        status.signal(),
        Some(SIGKILL),
        "the release ended before the kill ({status}): {}",
        fs::read_to_string(outputs.path().join("stderr")).unwrap_or_default()
    );
    let killed_writes = describe(&p.reg.writes());
    let first_tag = first_tag.expect("killed at a tag");
    let tag_put = |r: &Request| r.method == "PUT" && r.path == first_tag;

    // the rerun finishes everything
    let rerun = p.release(&["--json"]);
    assert_eq!(
        rerun.code, 0,
        "{rerun:?}\nkilled run wrote: {killed_writes:?}"
    );
    assert_eq!(rerun.json["ok"], true);
    for name in NAMES {
        assert!(
            ["pushed", "recorded", "up-to-date"].contains(&rerun.outcome_of(name)),
            "{name}: {rerun:?}"
        );
    }
    assert_landed(
        &p,
        OS_REPO,
        &["stable", BUILD],
        OS_KEY,
        &ARCHES,
        &rerun.list_digest("oscontainer"),
    );
    assert_landed(
        &p,
        EXT_REPO,
        &[BUILD],
        EXT_KEY,
        &ARCHES,
        &rerun.list_digest("extensions"),
    );
    assert_landed(
        &p,
        KV_REPO,
        &["stable", BUILD],
        KV_KEY,
        &["x86_64"],
        &rerun.list_digest("kubevirt"),
    );
    // the tag that landed before the kill was not put again
    let puts = p.reg.writes().iter().filter(|r| tag_put(r)).count();
    assert_eq!(puts, 1, "killed run wrote: {killed_writes:?}");

    // a third run: nothing to do
    let metas_before = p.metas(BUILD);
    let writes_before = p.reg.writes();
    let third = p.release(&["--json"]);
    assert_eq!(third.code, 0, "{third:?}");
    for name in NAMES {
        assert_eq!(third.outcome_of(name), "up-to-date", "{name}: {third:?}");
        assert_eq!(third.list_digest(name), rerun.list_digest(name));
    }
    assert_eq!(
        describe(&p.reg.writes()[writes_before.len()..]),
        Vec::<String>::new()
    );
    assert_eq!(p.metas(BUILD), metas_before, "meta.json byte-identical");
}

// ---------------------------------------------------------------------------------------
// {build} and --build

#[test]
fn build_placeholder_expands_to_the_resolved_build_and_build_flag_overrides_the_config() {
    let p = Product::new();
    write_build(p.wd(), &product_build(NEXT_BUILD)).unwrap(); // now `latest`
    let config = p.wd().join("release.toml");
    fs::write(
        &config,
        format!(
            "workdir = \".\"\nbuild = \"{BUILD}\"\n\n[[container]]\nname = \"os\"\n\
             artifact = \"ostree\"\nkey = \"{OS_KEY}\"\nrepo = {}\n\
             tags = [\"{{build}}\", \"stable-{{build}}\"]\n",
            toml_str(&p.repo(OS_REPO))
        ),
    )
    .unwrap();
    let repo = p.repo(OS_REPO);
    let next_pristine = p.metas(NEXT_BUILD);

    // the config's build
    let first = p.release_with(&config, &["--json"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(first.outcome_of("os"), "pushed");
    let stable_build = format!("stable-{BUILD}");
    assert_eq!(
        first.result("os")["tags"],
        json!([BUILD, stable_build.as_str()])
    );
    let list = first.list_digest("os");
    assert_landed(&p, OS_REPO, &[BUILD, &stable_build], OS_KEY, &ARCHES, &list);
    assert_eq!(
        p.metas(NEXT_BUILD),
        next_pristine,
        "the other build untouched"
    );

    // --build latest: the newest build, its id in the tags
    let second = p.release_with(&config, &["--json", "--build", "latest"]);
    assert_eq!(second.code, 0, "{second:?}");
    assert_eq!(second.outcome_of("os"), "pushed");
    let stable_next = format!("stable-{NEXT_BUILD}");
    assert_eq!(
        second.result("os")["tags"],
        json!([NEXT_BUILD, stable_next.as_str()])
    );
    let next_list = second.list_digest("os");
    assert_ne!(next_list, list);
    for tag in [NEXT_BUILD, stable_next.as_str()] {
        assert_eq!(digest_at(&format!("{repo}:{tag}")), next_list, "{tag}");
    }
    for arch in ARCHES {
        let meta = p.meta(NEXT_BUILD, arch);
        assert_eq!(meta[OS_KEY]["manifest-list-digest"], next_list.as_str());
        assert_eq!(
            meta[OS_KEY]["tags"],
            json!([NEXT_BUILD, stable_next.as_str()])
        );
    }
    assert_eq!(
        digest_at(&format!("{repo}:{BUILD}")),
        list,
        "first tags stay"
    );
    assert!(skopeo_inspect_raw(&format!("{repo}:latest"), None).is_err());

    // --build ID of the first one: up to date
    let writes_before = p.reg.writes();
    let third = p.release_with(&config, &["--json", "--build", BUILD]);
    assert_eq!(third.code, 0, "{third:?}");
    assert_eq!(third.outcome_of("os"), "up-to-date", "{third:?}");
    assert_eq!(third.list_digest("os"), list);
    assert_eq!(p.reg.writes(), writes_before);
}

// ---------------------------------------------------------------------------------------
// config errors

#[test]
fn config_errors_fail_naming_the_config_file_and_a_broken_container_does_not_stop_the_others() {
    let p = Product::new();
    let dir = p.wd();
    let repo = toml_str(&p.repo(OS_REPO));
    let container = |name: &str| {
        format!(
            "[[container]]\nname = \"{name}\"\nartifact = \"ostree\"\nkey = \"{OS_KEY}\"\n\
             repo = {repo}\ntags = [\"stable\"]\n"
        )
    };
    let cases: [(&str, Option<String>, &str); 6] = [
        (
            "unknown-field.toml",
            Some(format!("colour = \"blue\"\n{}", container("os"))),
            "colour",
        ),
        (
            "unknown-container-field.toml",
            Some(format!("{}tgas = [\"x\"]\n", container("os"))),
            "tgas",
        ),
        (
            "duplicate.toml",
            Some(format!("{}\n{}", container("os"), container("os"))),
            "container \"os\" is defined twice",
        ),
        (
            "malformed.toml",
            Some(s("[[container]\nname = \"os\"\n")),
            "malformed release config",
        ),
        (
            "no-containers.toml",
            Some(s("workdir = \".\"\n")),
            "container",
        ),
        ("missing.toml", None, "cannot read release config"),
    ];
    for (file, text, needle) in cases {
        let path = dir.join(file);
        if let Some(text) = text {
            fs::write(&path, text).unwrap();
        }
        let run = p.release_with(&path, &["--json"]);
        assert_eq!(run.code, 1, "{file}: {run:?}");
        assert!(
            run.stderr.contains(&path_str(&path)),
            "{file}: the error names the config file: {run:?}"
        );
        assert!(run.stderr.contains(needle), "{file}: {needle:?}: {run:?}");
        // --json: one object saying it failed, and why
        assert_eq!(run.json["outcome"], "failed", "{file}: {run:?}");
        assert!(
            run.json["error"]
                .as_str()
                .is_some_and(|e| e.contains(&path_str(&path))),
            "{file}: {run:?}"
        );
    }
    assert!(p.reg.writes().is_empty());

    // a container whose policy module is missing is an error; the next one still runs
    let config = dir.join("broken-policy.toml");
    fs::write(
        &config,
        format!(
            "{}policy = \"nowhere/policy.wasm\"\n\n{}",
            container("broken").replace(&format!("key = \"{OS_KEY}\""), "key = \"broken\""),
            container("os")
        ),
    )
    .unwrap();
    let run = p.release_with(&config, &["--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.json["ok"], false);
    assert_eq!(run.json["containers"], json!(["broken", "os"]));
    let broken = run.result("broken");
    assert_eq!(broken["outcome"], "error", "{run:?}");
    let error = broken["error"].as_str().unwrap();
    for needle in [
        &path_str(&dir.join("nowhere/policy.wasm")),
        "cannot read it",
    ] {
        assert!(error.contains(needle), "{needle:?} in {error}");
    }
    // the error, and what every element has: schema, ok, its container
    let keys: Vec<_> = broken.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        ["schema", "ok", "container", "outcome", "error"],
        "{broken}"
    );
    assert_eq!(broken["ok"], false, "{broken}");
    assert_eq!(run.outcome_of("os"), "pushed", "{run:?}");
    assert!(
        run.stderr.contains("1 of 2 container(s) failed: broken"),
        "{run:?}"
    );
    assert_eq!(
        digest_at(&format!("{}:stable", p.repo(OS_REPO))),
        run.list_digest("os")
    );
    for arch in ARCHES {
        assert!(p.meta(BUILD, arch).get("broken").is_none());
    }
}

#[test]
fn a_container_whose_repo_is_not_a_repository_fails_alone_and_is_logged() {
    let p = Product::new();
    let dir = p.wd();
    let config = dir.join("bad-repo.toml");
    let log = dir.join("decisions.jsonl");
    fs::write(
        &config,
        format!(
            "[[container]]\nname = \"bad\"\nartifact = \"ostree\"\nkey = \"bad\"\n\
             repo = \"r.io/UPPER\"\ntags = [\"stable\"]\n\n\
             [[container]]\nname = \"os\"\nartifact = \"ostree\"\nkey = \"{OS_KEY}\"\n\
             repo = {}\ntags = [\"stable\"]\n",
            toml_str(&p.repo(OS_REPO))
        ),
    )
    .unwrap();
    let run = p.release_with(&config, &["--json", "--decision-log", &path_str(&log)]);
    assert_eq!(run.code, 1, "{run:?}");
    let bad = run.result("bad");
    assert_eq!(bad["outcome"], "error", "{run:?}");
    let error = bad["error"].as_str().unwrap();
    assert!(
        error.starts_with("container bad: --repo r.io/UPPER: not a valid repository: "),
        "{error}"
    );
    assert_eq!(run.outcome_of("os"), "pushed", "{run:?}");
    let lines: Vec<Value> = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let bad = lines
        .iter()
        .find(|l| l["container"] == "bad")
        .unwrap_or_else(|| panic!("no line for bad: {lines:?}"));
    assert_eq!(
        (&bad["repo"], &bad["outcome"], &bad["policy"]),
        (&json!("r.io/UPPER"), &json!("error"), &json!("host"))
    );
    assert!(
        bad["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("--repo r.io/UPPER: not a valid repository")),
        "{bad}"
    );
    let os = lines.iter().find(|l| l["container"] == "os").unwrap();
    assert_eq!(
        (&os["repo"], &os["outcome"]),
        (&json!(p.repo(OS_REPO)), &json!("pushed"))
    );
}

// ---------------------------------------------------------------------------------------
// hostile policies in a release

#[test]
fn a_module_that_panics_or_floods_stdio_fails_only_its_own_container() {
    let p = Product::new();
    let dir = p.wd().join("release");
    fs::copy(policy_module("hostile"), dir.join("policies/hostile.wasm")).unwrap();
    let config = dir.join("hostile.toml");
    fs::write(
        &config,
        format!(
            r#"workdir = ".."
build = "latest"

[[container]]
name = "panicky"
artifact = "ostree"
key = "panicky"
repo = {panicky_repo}
tags = ["stable"]
policy = "policies/hostile.wasm"
settings = {{ mode = "panic-in-settings" }}

[[container]]
name = "noisy"
artifact = "kubevirt"
key = "{KV_KEY}"
repo = {kv_repo}
tags = ["stable"]
policy = "policies/hostile.wasm"
settings = {{ mode = "stdout-flood" }}

[[container]]
name = "oscontainer"
artifact = "ostree"
key = "{OS_KEY}"
repo = {os_repo}
tags = ["stable"]
"#,
            panicky_repo = toml_str(&p.repo("panicky")),
            kv_repo = toml_str(&p.repo(KV_REPO)),
            os_repo = toml_str(&p.repo(OS_REPO)),
        ),
    )
    .unwrap();

    let run = p.release_with(&config, &["--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        !run.stderr.contains("panicked"),
        "pushgate panicked: {run:?}"
    );
    assert!(
        run.stderr.contains("1 of 3 container(s) failed: panicky"),
        "{run:?}"
    );
    // the panic fails its container, naming the module
    let panicky = run.result("panicky");
    let text = panicky.to_string();
    assert!(text.contains("hostile.wasm"), "{panicky}");
    assert!(text.contains("validate-settings"), "{panicky}");
    // what the modules wrote to stdout and stderr went nowhere
    for needle in [
        "hostile: about to panic",
        "hostile: panic in",
        "hostile flood",
    ] {
        assert!(!run.stdout.contains(needle), "{needle}: {run:?}");
        assert!(!run.stderr.contains(needle), "{needle}: {run:?}");
    }
    assert_eq!(run.outcome_of("noisy"), "skipped", "{run:?}");
    assert_eq!(run.result("noisy")["reason"], "flooded", "{run:?}");
    // the others are pushed
    assert_eq!(run.outcome_of("oscontainer"), "pushed", "{run:?}");
    let os_list = digest_at(&format!("{}:stable", p.repo(OS_REPO)));
    assert_landed(&p, OS_REPO, &["stable"], OS_KEY, &ARCHES, &os_list);
    let writes = p.reg.writes();
    assert!(writes_to(&writes, "panicky").is_empty(), "{writes:?}");
    assert!(writes_to(&writes, KV_REPO).is_empty(), "{writes:?}");
}

// ---------------------------------------------------------------------------------------
// the summary table

/// Where each column of a table line starts: the line's start, and every character
/// that follows two spaces.
fn column_starts(line: &str) -> Vec<usize> {
    let b = line.as_bytes();
    (0..b.len())
        .filter(|&i| b[i] != b' ' && (i == 0 || (i >= 2 && b[i - 1] == b' ' && b[i - 2] == b' ')))
        .collect()
}

#[test]
fn summary_table_has_a_row_per_container_under_headers_that_line_up() {
    let p = Product::new();
    let config = p.wd().join("table.toml");
    // the second container asks for kubevirt on aarch64, which lacks it: an error row
    fs::write(
        &config,
        format!(
            "[[container]]\nname = \"os\"\nartifact = \"ostree\"\nkey = \"{OS_KEY}\"\n\
             repo = {}\ntags = [\"stable\"]\n\n\
             [[container]]\nname = \"kubevirt-everywhere\"\nartifact = \"kubevirt\"\n\
             key = \"{KV_KEY}\"\nrepo = {}\ntags = [\"stable\"]\narches = [\"x86_64\", \"aarch64\"]\n",
            toml_str(&p.repo(OS_REPO)),
            toml_str(&p.repo(KV_REPO)),
        ),
    )
    .unwrap();
    let run = p.release_with(&config, &[]);
    assert_eq!(run.code, 1, "{run:?}");
    let rows = table_rows(&run.stdout);
    assert_eq!(rows.len(), 2, "{run:?}");
    let os_list = digest_at(&format!("{}:stable", p.repo(OS_REPO)));
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1.as_str(), rows[0].2.as_str()),
        ("os", "pushed", os_list.as_str())
    );
    assert_eq!(
        (rows[1].0.as_str(), rows[1].1.as_str(), rows[1].2.as_str()),
        ("kubevirt-everywhere", "error", "-")
    );
    assert!(rows[1].3.contains("aarch64"), "{rows:?}");
    assert!(writes_to(&p.reg.writes(), KV_REPO).is_empty());

    // every row's columns start where the header's labels do
    let table: Vec<&str> = run
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("CONTAINER"))
        .filter(|l| !l.trim().is_empty())
        .collect();
    let header = column_starts(table[0]);
    assert_eq!(header.len(), 4, "{:?}", table[0]);
    for row in &table[1..] {
        let starts = column_starts(row);
        assert_eq!(
            &starts[..4.min(starts.len())],
            &header[..],
            "columns do not line up:\n{}",
            table.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------------------
// --dry-run says what it would do

/// The DECISION column of every row.
fn decisions(run: &Run) -> Vec<String> {
    table_rows(&run.stdout)
        .into_iter()
        .map(|(_, decision, _, _)| decision)
        .collect()
}

/// Asserts no line of a dry run's human output tells of something done.
fn no_past_tense(run: &Run) {
    for line in run.stdout.lines() {
        for done in [": pushed", "recorded:", "uploaded ", "meta.json written"] {
            assert!(
                !line.contains(done),
                "a dry run says {done:?} in {line:?}:\n{}",
                run.stdout
            );
        }
    }
}

#[test]
fn dry_run_summary_says_what_would_be_done() {
    let p = Product::new();
    p.write_config(&["x86_64"]);
    let pristine = p.metas(BUILD);

    // nothing published yet: every container would be pushed
    let dry = p.release(&["--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert_eq!(decisions(&dry), ["would push"; 3], "{}", dry.stdout);
    for (_, _, digest, _) in table_rows(&dry.stdout) {
        assert_eq!(digest, "-", "nothing published: {}", dry.stdout);
    }
    no_past_tense(&dry);
    assert!(p.reg.writes().is_empty(), "{:?}", describe(&p.reg.writes()));

    // the same without --dry-run says what it did
    let real = p.release(&[]);
    assert_eq!(real.code, 0, "{real:?}");
    assert_eq!(decisions(&real), ["pushed"; 3], "{}", real.stdout);

    let dry = p.release(&["--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert_eq!(decisions(&dry), ["up to date"; 3], "{}", dry.stdout);
    no_past_tense(&dry);

    // meta.json lost what was pushed: every container would only be recorded
    for (arch, bytes) in ARCHES.iter().zip(&pristine) {
        fs::write(p.meta_path(BUILD, arch), bytes).unwrap();
    }
    let writes = p.reg.writes().len();
    let dry = p.release(&["--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert_eq!(decisions(&dry), ["would record"; 3], "{}", dry.stdout);
    no_past_tense(&dry);
    assert_eq!(
        p.reg.writes().len(),
        writes,
        "a dry run wrote to the registry"
    );
    assert_eq!(p.metas(BUILD), pristine, "a dry run wrote meta.json");

    // so does the JSON: the outcome (`would-record`, not `recorded`), and dry_run
    let json = p.release(&["--dry-run", "--json"]);
    assert_eq!(json.code, 0, "{json:?}");
    assert_eq!(json.json["dry_run"], true, "{json:?}");
    for name in NAMES {
        assert_eq!(json.outcome_of(name), "would-record", "{json:?}");
        assert_eq!(json.result(name)["dry_run"], true, "{json:?}");
    }
}
