//! Policies as release artifacts, against a real `docker-registry`: `policy push` and
//! `pull` (what landed checked with `skopeo inspect --raw`), references by tag and by
//! digest wherever a module is accepted, the on-disk cache serving pinned references
//! with the registry stopped, bad references (unknown, unreachable, mismatched, not a
//! policy, another contract) failing their container with nothing written, and the
//! decision log of a mixed release.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support;
use crate::support::liar::{Liar, Lie};
use crate::support::run::{Run, path_str, s};
use crate::support::{Registry, policy_module, pushgate, sha256_digest, skopeo_inspect_raw};
use pushgate_sample::{SampleBuild, write_build};

pub(crate) const BUILD: &str = "41.20261127.1.0";
pub(crate) const ARCHES: [&str; 2] = ["x86_64", "aarch64"];
const CONFIG_TYPE: &str = "application/vnd.pushgate.policy.config.v1+json";
const MODULE_TYPE: &str = "application/vnd.pushgate.policy.module.v1.wasm";
const CONTRACT: &str = "pushgate:policy/policy@0.2.0";

/// A cosa workdir, a policy cache of its own, and registries: one for policies,
/// one for images (so the policy registry can be stopped while images are pushed).
pub(crate) struct Env {
    pub(crate) dir: TempDir,
    policies: Option<Registry>,
    pub(crate) images: Registry,
    /// The policy registry's address, kept after it is stopped.
    pub(crate) policy_addr: String,
}

impl Env {
    pub(crate) fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("pushgate-policy-oci-")
            .tempdir()
            .unwrap();
        write_build(&dir.path().join("wd"), &SampleBuild::small(BUILD, &ARCHES)).unwrap();
        let policies = Registry::start();
        Env {
            policy_addr: policies.addr().to_string(),
            policies: Some(policies),
            images: Registry::start(),
            dir,
        }
    }

    pub(crate) fn wd(&self) -> PathBuf {
        self.dir.path().join("wd")
    }

    /// `oci://POLICY-REGISTRY/REST`.
    pub(crate) fn oci(&self, rest: &str) -> String {
        format!("oci://{}/{rest}", self.policy_addr)
    }

    pub(crate) fn stop_policy_registry(&mut self) {
        self.policies.take().expect("running").stop();
    }

    /// `pushgate ARGS` with this environment's policy cache (`cache` under the temp dir).
    fn run(&self, args: &[&str]) -> Run {
        self.run_with_cache(args, "cache")
    }

    pub(crate) fn run_with_cache(&self, args: &[&str], cache: &str) -> Run {
        Run::of(
            pushgate()
                .args(args)
                .env("XDG_CACHE_HOME", self.dir.path().join(cache))
                .current_dir(self.wd())
                .stdin(Stdio::null()),
        )
    }

    /// `policy push MODULE REF --plain-http --json`: the digest it printed.
    fn publish(&self, module: &Path, reference: &str) -> String {
        let run = self.run(&[
            "policy",
            "push",
            &path_str(module),
            reference,
            "--plain-http",
            "--json",
        ]);
        assert_eq!(run.code, 0, "{run:?}");
        run.json["published"]["digest"]
            .as_str()
            .unwrap_or_else(|| panic!("no digest: {run:?}"))
            .to_string()
    }

    fn push_os(&self, repo: &str, extra: &[&str]) -> Run {
        let mut args = vec![
            "push",
            "--repo",
            repo,
            "--tag",
            "stable",
            "--artifact",
            "ostree",
            "--metajsonname",
            "base-oscontainer",
            "--plain-http",
            "--json",
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    pub(crate) fn meta(&self, arch: &str) -> Value {
        let p = self
            .wd()
            .join("builds")
            .join(BUILD)
            .join(arch)
            .join("meta.json");
        serde_json::from_slice(&fs::read(p).unwrap()).unwrap()
    }
}

fn raw(reference: &str) -> (Vec<u8>, Value) {
    let bytes =
        skopeo_inspect_raw(reference, None).unwrap_or_else(|e| panic!("skopeo {reference}: {e}"));
    let doc = serde_json::from_slice(&bytes).unwrap();
    (bytes, doc)
}

#[test]
fn push_and_pull_round_trip_as_an_artifact_skopeo_reads() {
    let env = Env::new();
    let module = policy_module("default");
    let bytes = fs::read(&module).unwrap();
    let reference = env.oci("policies/default:1.0");
    let digest = env.publish(&module, &reference);

    // what landed, as skopeo reads it
    let (manifest, doc) = raw(&format!("{}/policies/default:1.0", env.policy_addr));
    assert_eq!(sha256_digest(&manifest), digest);
    assert_eq!(
        doc["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(doc["artifactType"], CONFIG_TYPE);
    assert_eq!(doc["config"]["mediaType"], CONFIG_TYPE);
    let layers = doc["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{doc}");
    assert_eq!(layers[0]["mediaType"], MODULE_TYPE);
    assert_eq!(layers[0]["digest"], sha256_digest(&bytes).as_str());
    assert_eq!(layers[0]["size"], bytes.len());
    let ann = &doc["annotations"];
    assert_eq!(ann["io.pushgate.policy.name"], "default");
    assert_eq!(ann["io.pushgate.policy.contract"], CONTRACT);
    assert_eq!(
        ann["io.pushgate.policy.sha256"],
        sha256_digest(&bytes).as_str()
    );
    assert!(ann["io.pushgate.policy.version"].is_string(), "{doc}");

    // publishing the same module again is the same artifact, and uploads nothing
    let before = env.policies.as_ref().unwrap().writes().len();
    assert_eq!(env.publish(&module, &reference), digest);
    let writes = env.policies.as_ref().unwrap().writes();
    assert_eq!(
        writes.len(),
        before + 1,
        "only the manifest is put again: {writes:?}"
    );

    // pulled by tag into a fresh cache: the digest it resolved to, the very module
    let pull = env.run_with_cache(
        &["policy", "pull", &reference, "--plain-http", "--json"],
        "fresh",
    );
    assert_eq!(pull.code, 0, "{pull:?}");
    assert_eq!(pull.json["digest"], digest.as_str());
    let pinned = format!("{}@{digest}", env.oci("policies/default"));
    assert_eq!(pull.json["pinned"], pinned.as_str());
    assert_eq!(pull.json["policy"]["name"], "default");
    assert_eq!(pull.json["from_cache"], false);
    let cached = PathBuf::from(pull.json["cached"].as_str().unwrap());
    assert!(cached.starts_with(env.dir.path().join("fresh")), "{pull:?}");
    assert_eq!(fs::read(&cached).unwrap(), bytes);

    // by digest, from the cache: no request at all
    let requests = env.policies.as_ref().unwrap().requests().len();
    let again = env.run_with_cache(
        &["policy", "pull", &pinned, "--plain-http", "--json"],
        "fresh",
    );
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(again.json["from_cache"], true);
    assert_eq!(env.policies.as_ref().unwrap().requests().len(), requests);

    // inspect names the artifact and what the module is
    let inspect = env.run(&["policy", "inspect", &reference, "--plain-http", "--json"]);
    assert_eq!(inspect.code, 0, "{inspect:?}");
    assert_eq!(inspect.json["artifact"]["digest"], digest.as_str());
    assert_eq!(inspect.json["artifact"]["pinned"], pinned.as_str());
    assert_eq!(inspect.json["loaded"]["ok"]["name"], "default");
    assert_eq!(inspect.json["loaded"]["ok"]["reference"], pinned.as_str());
    assert_eq!(inspect.json["sha256"], sha256_digest(&bytes).as_str());
    let text = env.run(&["policy", "inspect", &pinned, "--plain-http"]);
    assert_eq!(text.code, 0, "{text:?}");
    assert!(text.stdout.contains(&pinned), "{text:?}");
    assert!(
        text.stdout
            .contains("io.pushgate.policy.contract: pushgate:policy/policy@0.2.0"),
        "{text:?}"
    );
}

#[test]
fn pinned_references_work_everywhere_and_offline_from_the_cache() {
    let mut env = Env::new();
    let default = policy_module("default");
    let digest = env.publish(&default, &env.oci("policies/default:1.0"));
    let pinned = format!("{}@{digest}", env.oci("policies/default"));
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/default/cases");

    // a tag is resolved, and the report names the digest used
    let repo = env.images.repo("fcos");
    let by_tag = env.oci("policies/default:1.0");
    let run = env.push_os(&repo, &["--policy", &by_tag]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.outcome(), "pushed", "{run:?}");
    assert_eq!(run.json["policy"]["reference"], pinned.as_str());
    assert_eq!(
        run.decided_by(),
        format!(
            "policy default {}",
            run.json["policy"]["version"].as_str().unwrap()
        )
    );

    // the policy registry is gone: the pinned reference is served from the cache
    env.stop_policy_registry();
    for args in [
        vec![
            "policy",
            "test",
            pinned.as_str(),
            cases.to_str().unwrap(),
            "--plain-http",
        ],
        vec!["policy", "check", pinned.as_str(), "--plain-http"],
        vec![
            "policy",
            "diff",
            pinned.as_str(),
            default.to_str().unwrap(),
            cases.to_str().unwrap(),
            "--plain-http",
            "--fail-on-change",
        ],
    ] {
        let run = env.run(&args);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
    }
    let run = env.push_os(&env.images.repo("fcos2"), &["--policy", &pinned]);
    assert_eq!(run.outcome(), "pushed", "{run:?}");
    assert_eq!(run.json["policy"]["reference"], pinned.as_str());

    // a release config naming it, with --require-pinned-policies
    let config = env.wd().join("release.toml");
    let repo3 = env.images.repo("fcos3");
    fs::write(
        &config,
        format!(
            "workdir = \".\"\n[[container]]\nname = \"os\"\nartifact = \"ostree\"\nkey = \"os3\"\n\
             repo = \"{repo3}\"\ntags = [\"stable\"]\npolicy = \"{pinned}\"\n"
        ),
    )
    .unwrap();
    let run = env.run(&[
        "release",
        "--config",
        &path_str(&config),
        "--plain-http",
        "--json",
        "--require-pinned-policies",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.release_result("os")["outcome"], "pushed", "{run:?}");
    assert_eq!(
        run.release_result("os")["policy"]["reference"],
        pinned.as_str()
    );

    // the same reference with an empty cache and no registry: a fail naming it
    let run = env.run_with_cache(
        &[
            "push",
            "--repo",
            &env.images.repo("fcos4"),
            "--tag",
            "stable",
            "--artifact",
            "ostree",
            "--metajsonname",
            "os4",
            "--plain-http",
            "--json",
            "--policy",
            &pinned,
        ],
        "empty",
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.outcome(), "failed", "{run:?}");
    assert!(run.reason().contains(&pinned), "{run:?}");
    assert!(run.stderr.contains(&pinned), "{run:?}");
    assert!(env.meta("x86_64").get("os4").is_none());
    assert!(skopeo_inspect_raw(&format!("{}:stable", env.images.repo("fcos4")), None).is_err());
}

/// Publishes an artifact by hand (the library's registry client): `manifest` with
/// its config and layer blobs, under `tag`.
fn publish_raw(repo: &str, tag: &str, blobs: &[&[u8]], manifest: &Value) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let opts = pushgate::registry::Options {
            plain_http: true,
            ..Default::default()
        };
        let r = pushgate::registry::Repository::new(&repo.parse().unwrap(), &opts).unwrap();
        for b in blobs {
            r.push_blob_bytes(b).await.unwrap();
        }
        r.put_manifest(
            tag,
            "application/vnd.oci.image.manifest.v1+json",
            manifest.to_string().as_bytes(),
        )
        .await
        .unwrap();
    });
}

#[test]
fn bad_references_fail_their_container_naming_the_reference() {
    let env = Env::new();
    let default = policy_module("default");
    let good = env.publish(&default, &env.oci("policies/default:1.0"));
    let module = fs::read(&default).unwrap();

    // an artifact of another contract version, published by hand
    let config = json!({"name": "old", "version": "0.0.1", "description": "d",
        "contract": "pushgate:policy/policy@0.0.9",
        "module": {"sha256": sha256_digest(&module), "size": module.len()}})
    .to_string();
    let descriptor =
        |mt: &str, b: &[u8]| json!({"mediaType": mt, "digest": sha256_digest(b), "size": b.len()});
    let other = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": CONFIG_TYPE,
        "config": descriptor(CONFIG_TYPE, config.as_bytes()),
        "layers": [descriptor(MODULE_TYPE, &module)],
        "annotations": {"io.pushgate.policy.contract": "pushgate:policy/policy@0.0.9"},
    });
    publish_raw(
        &format!("{}/policies/old", env.policy_addr),
        "1",
        &[config.as_bytes(), &module],
        &other,
    );
    // an image, not a policy
    let image = env.push_os(&format!("{}/images/os", env.policy_addr), &[]);
    assert_eq!(image.code, 0, "{image:?}");

    let missing = format!("{}@sha256:{}", env.oci("policies/default"), "0".repeat(64));
    // (not a digest in the cache: a digest names content wherever it is, so a
    // cached one is served whatever registry the reference names)
    let unreachable = format!(
        "oci://127.0.0.1:1/policies/default@sha256:{}",
        "2".repeat(64)
    );
    // a registry that serves other bytes than the digest asked for
    let liar = Liar::start(Lie::WrongDigestHeader);
    let mismatch = format!(
        "oci://{}@{}",
        liar.repo("policies/default"),
        sha256_digest(b"not in the cache")
    );
    let cases: [(String, &[&str]); 6] = [
        (env.oci("policies/default:nope"), &["no tag nope"]),
        (missing.clone(), &["no manifest"]),
        (unreachable.clone(), &["127.0.0.1:1"]),
        (mismatch.clone(), &["should be", "hash to"]),
        (
            env.oci("policies/old:1"),
            &["pushgate:policy/policy@0.0.9", CONTRACT],
        ),
        (env.oci("images/os:stable"), &["not a pushgate policy"]),
    ];
    let repo = env.images.repo("fcos");
    let metas_before: Vec<Value> = ARCHES.iter().map(|a| env.meta(a)).collect();
    for (reference, needles) in &cases {
        let run = env.push_os(&repo, &["--policy", reference, "--retry-times", "0"]);
        assert_eq!(run.code, 1, "{reference}: {run:?}");
        assert_eq!(run.outcome(), "failed", "{reference}: {run:?}");
        assert_eq!(run.decided_by(), "host", "{run:?}");
        assert!(
            run.reason().contains(reference.as_str()),
            "{reference}: {run:?}"
        );
        for n in *needles {
            assert!(run.reason().contains(n), "{reference}: {n:?} in {run:?}");
        }
        assert_eq!(run.json["uploaded_blobs"], 0);
        // the other tools say the same, as an error
        let run = env.run(&[
            "policy",
            "inspect",
            reference,
            "--plain-http",
            "--retry-times",
            "0",
        ]);
        assert_eq!(run.code, 1, "{reference}: {run:?}");
        assert!(
            run.stderr.contains(reference.as_str()),
            "{reference}: {run:?}"
        );
    }
    assert!(
        env.images.writes().is_empty(),
        "nothing written: {:?}",
        env.images.writes()
    );
    let metas: Vec<Value> = ARCHES.iter().map(|a| env.meta(a)).collect();
    assert_eq!(metas, metas_before, "meta.json untouched");

    // a damaged cache entry is not believed: fetched again and verified
    let pinned = format!("{}@{good}", env.oci("policies/default"));
    let pull = env.run(&["policy", "pull", &pinned, "--plain-http", "--json"]);
    let cached = PathBuf::from(pull.json["cached"].as_str().unwrap());
    fs::write(&cached, b"tampered").unwrap();
    let again = env.run(&["policy", "pull", &pinned, "--plain-http", "--json"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(again.json["from_cache"], false);
    assert_eq!(fs::read(&cached).unwrap(), module);
}

fn lines(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn the_decision_log_of_a_mixed_release_and_its_replay_as_cases() {
    let env = Env::new();
    let hostile = env.publish(&policy_module("hostile"), &env.oci("policies/hostile:1"));
    let hostile = format!("{}@{hostile}", env.oci("policies/hostile"));
    let unknown = format!("{}@sha256:{}", env.oci("policies/nothing"), "1".repeat(64));
    let by_tag = env.oci("policies/hostile:1");
    let container = |name: &str, policy: Option<(&str, &str)>| {
        let mut c = format!(
            "[[container]]\nname = \"{name}\"\nartifact = \"ostree\"\nkey = \"{name}\"\n\
             repo = \"{}\"\ntags = [\"stable\", \"{{build}}\"]\n",
            env.images.repo(name)
        );
        if let Some((p, settings)) = policy {
            c.push_str(&format!("policy = \"{p}\"\nsettings = {settings}\n"));
        }
        c
    };
    let config = env.wd().join("release.toml");
    fs::write(
        &config,
        [
            "workdir = \".\"\n".to_string(),
            container("pushed", None),
            container("skipped", Some((&hostile, "{ mode = \"stdout-flood\" }"))),
            container("failed", Some((&unknown, "{}"))),
            container("unpinned", Some((&by_tag, "{}"))),
        ]
        .join("\n"),
    )
    .unwrap();
    let log = env.dir.path().join("decisions.jsonl");
    fs::write(&log, "").unwrap();
    let args = |extra: &[&str]| {
        let mut a = vec![
            s("release"),
            s("--config"),
            path_str(&config),
            s("--plain-http"),
            s("--json"),
            s("--decision-log"),
            path_str(&log),
        ];
        a.extend(extra.iter().map(|x| s(x)));
        a
    };
    let a = args(&["--decision-log-facts", "--require-pinned-policies"]);
    let run = env.run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(run.code, 1, "{run:?}");
    let outcome = |n: &str| {
        run.release_result(n)["outcome"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(outcome("pushed"), "pushed", "{run:?}");
    assert_eq!(outcome("skipped"), "skipped", "{run:?}");
    assert_eq!(outcome("failed"), "failed", "{run:?}");
    assert_eq!(outcome("unpinned"), "failed", "{run:?}");
    assert!(
        run.release_result("unpinned")["reason"]
            .as_str()
            .unwrap()
            .contains("--require-pinned-policies"),
        "{run:?}"
    );
    for name in ["skipped", "failed", "unpinned"] {
        assert!(
            skopeo_inspect_raw(&format!("{}:stable", env.images.repo(name)), None).is_err(),
            "{name}"
        );
    }

    let entries = lines(&log);
    assert_eq!(entries.len(), 4, "{entries:?}");
    let by = |n: &str| {
        entries
            .iter()
            .find(|e| e["container"] == n)
            .unwrap_or_else(|| panic!("{n}"))
    };
    let ids: std::collections::BTreeSet<&str> = entries
        .iter()
        .map(|e| e["decision_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 4);
    for e in &entries {
        assert!(e["time"].as_str().unwrap().ends_with('Z'), "{e}");
    }

    let pushed = by("pushed");
    assert_eq!(pushed["policy"], "host");
    assert_eq!(pushed["verdict"], "push");
    assert_eq!(pushed["decision"], "push");
    assert_eq!(pushed["outcome"], "pushed");
    assert_eq!(pushed["build_id"], BUILD);
    assert_eq!(pushed["tags"], json!(["stable", BUILD]));
    assert_eq!(pushed["repo"], env.images.repo("pushed").as_str());
    let facts = &pushed["facts"];
    assert_eq!(facts["container"], "pushed");
    assert_eq!(
        pushed["facts_sha256"],
        sha256_digest(facts.to_string().as_bytes()).as_str()
    );

    let skipped = by("skipped");
    let by_id_of_skipped = skipped["decision_id"].as_str().unwrap().to_string();
    assert_eq!(skipped["policy"]["name"], "hostile");
    assert_eq!(skipped["policy"]["source"], hostile.as_str());
    assert_eq!(
        skipped["policy"]["sha256"],
        sha256_digest(&fs::read(policy_module("hostile")).unwrap()).as_str()
    );
    assert_eq!(skipped["verdict"], "push");
    assert_eq!(skipped["decision"], "skip");
    assert_eq!(skipped["reason"], "flooded");
    assert_eq!(skipped["outcome"], "skipped");
    assert_eq!(
        skipped["facts"]["settings"],
        json!({"mode": "stdout-flood"})
    );

    let failed = by("failed");
    assert_eq!(failed["policy"]["source"], unknown.as_str());
    assert_eq!(failed["verdict"], Value::Null);
    assert_eq!(failed["decision"], "fail");
    assert!(
        failed["reason"].as_str().unwrap().contains(&unknown),
        "{failed}"
    );
    assert_eq!(failed["outcome"], "failed");
    assert_eq!(by("unpinned")["outcome"], "failed");

    // without --decision-log-facts, only their digest
    let a = args(&[]);
    let rerun = env.run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(rerun.code, 1, "{rerun:?}");
    let entries = lines(&log);
    assert_eq!(entries.len(), 8);
    let again = entries[4..]
        .iter()
        .find(|e| e["container"] == "pushed")
        .unwrap();
    assert_eq!(again["outcome"], "up-to-date");
    assert!(again.get("facts").is_none(), "{again}");
    assert!(again["facts_sha256"].is_string(), "{again}");

    // the logged facts, replayed as cases: each expects what was decided then
    let cases = env.dir.path().join("replayed");
    let out = env.run(&[
        "policy",
        "facts",
        "--from-log",
        &path_str(&log),
        "--out",
        &path_str(&cases),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let written: Vec<PathBuf> = fs::read_dir(&cases)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        written.len(),
        2,
        "the two logged with their facts: {written:?}"
    );
    // one of them, by its id, on stdout
    let id = by_id_of_skipped.clone();
    let one = env.run(&[
        "policy",
        "facts",
        "--from-log",
        &path_str(&log),
        "--decision-id",
        &id,
    ]);
    assert_eq!(one.code, 0, "{one:?}");
    let case: Value = serde_json::from_str(&one.stdout).unwrap();
    assert_eq!(case["expect"]["decision"], "skip");
    assert_eq!(case["settings"], json!({"mode": "stdout-flood"}));
    let many = env.run(&["policy", "facts", "--from-log", &path_str(&log)]);
    assert_eq!(many.code, 1, "{many:?}");
    assert!(many.stderr.contains("--out DIR"), "{many:?}");
    let test = env.run(&[
        "policy",
        "test",
        &hostile,
        &path_str(&cases),
        "--plain-http",
        "--json",
    ]);
    assert_eq!(test.code, 0, "{test:?}");
    assert_eq!(test.json["passed"], 2, "{test:?}");
}

#[test]
fn help_says_where_references_and_the_decision_log_go() {
    let help = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_pushgate"))
            .args(args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let push = help(&["push"]);
    for needle in ["oci://", "--decision-log", "--decision-log-facts"] {
        assert!(push.contains(needle), "push --help: {needle}: {push}");
    }
    let release = help(&["release"]);
    for needle in ["--require-pinned-policies", "--decision-log"] {
        assert!(
            release.contains(needle),
            "release --help: {needle}: {release}"
        );
    }
    let policy = help(&["policy"]);
    for needle in ["push", "pull", "inspect"] {
        assert!(policy.contains(needle), "policy --help: {needle}: {policy}");
    }
    assert!(help(&["policy", "facts"]).contains("--from-log"));
}

#[test]
fn a_release_resolves_each_tag_once_and_reports_the_digest_it_used() {
    let env = Env::new();
    let digest = env.publish(&policy_module("default"), &env.oci("policies/default:1.0"));
    let pinned = format!("{}@{digest}", env.oci("policies/default"));
    let by_tag = env.oci("policies/default:1.0");
    let config = env.wd().join("release.toml");
    let container = |name: &str| {
        format!(
            "[[container]]\nname = \"{name}\"\nartifact = \"ostree\"\nkey = \"{name}\"\n\
             repo = \"{}\"\ntags = [\"stable\"]\npolicy = \"{by_tag}\"\n",
            env.images.repo(name)
        )
    };
    fs::write(
        &config,
        format!("workdir = \".\"\n{}\n{}", container("a"), container("b")),
    )
    .unwrap();
    let before = env.policies.as_ref().unwrap().requests().len();
    let log = env.dir.path().join("decisions.jsonl");
    let run = env.run(&[
        "release",
        "--config",
        &path_str(&config),
        "--plain-http",
        "--json",
        "--decision-log",
        &path_str(&log),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    for name in ["a", "b"] {
        let r = run.release_result(name);
        assert_eq!(r["outcome"], "pushed", "{run:?}");
        assert_eq!(r["policy"]["reference"], pinned.as_str(), "{run:?}");
    }
    let tag_reads: Vec<_> = env.policies.as_ref().unwrap().requests()[before..]
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/manifests/1.0"))
        .cloned()
        .collect();
    assert_eq!(tag_reads.len(), 1, "{tag_reads:?}");
    // the log says both what was asked for and what ran
    let entries = lines(&log);
    assert_eq!(entries.len(), 2);
    for e in entries {
        assert_eq!(
            e["policy"]["source"],
            format!("{by_tag}@{digest}").as_str(),
            "{e}"
        );
        assert_eq!(e["outcome"], "pushed");
    }
}

#[test]
fn artifacts_use_the_credentials_images_use() {
    let env = Env::new();
    let reg = Registry::start_with_htpasswd("publisher", "s3cret");
    let authfile = support::write_authfile(env.dir.path(), reg.addr(), "publisher", "s3cret");
    let module = path_str(&policy_module("default"));
    let reference = format!("oci://{}/policies/default:1.0", reg.addr());

    let anonymous = env.run(&["policy", "push", &module, &reference, "--plain-http"]);
    assert_eq!(anonymous.code, 1, "{anonymous:?}");
    assert!(anonymous.stderr.contains(&reference), "{anonymous:?}");
    assert!(anonymous.stderr.contains("credentials"), "{anonymous:?}");

    let auth = ["--plain-http", "--authfile", authfile.to_str().unwrap()];
    let mut args = vec!["policy", "push", &module, &reference, "--json"];
    args.extend(auth);
    let pushed = env.run(&args);
    assert_eq!(pushed.code, 0, "{pushed:?}");
    let digest = pushed.json["published"]["digest"].as_str().unwrap();

    // pulled into another cache, with the same auth file
    let mut args = vec!["policy", "pull", &reference, "--json"];
    args.extend(auth);
    let pulled = env.run_with_cache(&args, "other");
    assert_eq!(pulled.code, 0, "{pulled:?}");
    assert_eq!(pulled.json["digest"], digest);
    let denied = env.run_with_cache(&["policy", "pull", &reference, "--plain-http"], "third");
    assert_eq!(denied.code, 1, "{denied:?}");
    assert!(denied.stderr.contains(&reference), "{denied:?}");
}
