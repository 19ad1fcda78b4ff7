//! cosa's callers' command lines, verbatim but for the repository, version and paths:
//! pushgate reads long flags as cosa's argparse does (unique prefixes, `--flag=value`),
//! so `--auth=FILE` is `--authfile=FILE`. Pushes go to an htpasswd-protected registry,
//! so a push that succeeds proves the abbreviated `--auth` file was used.

use std::fs;
use std::path::PathBuf;

use crate::support::run::{Run, run, run_in, s};
use crate::support::{Registry, sha256_digest, skopeo, skopeo_inspect_raw, write_authfile};
use pushgate_sample::{SampleBuild, archive_file_name, write_build};
use serde_json::Value;

const USER: &str = "builder";
const PASSWORD: &str = "s3cret-Pa55word-4-pushgate";
const VERSION: &str = "41.20261127.1.0";
const STREAM: &str = "stable";
const ARCHES: [&str; 2] = ["x86_64", "aarch64"];
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A cosa workdir with a two-arch build, its push secret at `tmp/push-secret-KEY` (as the
/// release job writes it), and a registry that wants that secret.
struct Case {
    _tmp: tempfile::TempDir,
    workdir: PathBuf,
    registry: Registry,
}

impl Case {
    fn new() -> Case {
        let tmp = tempfile::tempdir().expect("temp dir");
        let workdir = tmp.path().join("work");
        fs::create_dir_all(workdir.join("tmp")).expect("create workdir/tmp");
        write_build(&workdir, &SampleBuild::small(VERSION, &ARCHES)).expect("write sample build");
        let registry = Registry::start_with_htpasswd(USER, PASSWORD);
        let written = write_authfile(tmp.path(), registry.addr(), USER, PASSWORD);
        fs::rename(written, workdir.join("tmp/push-secret-KEY")).expect("place push secret");
        Case {
            _tmp: tmp,
            workdir,
            registry,
        }
    }

    fn secret(&self) -> PathBuf {
        self.workdir.join("tmp/push-secret-KEY")
    }

    fn meta(&self, arch: &str) -> Value {
        let path = self
            .workdir
            .join("builds")
            .join(VERSION)
            .join(arch)
            .join("meta.json");
        serde_json::from_slice(&fs::read(path).expect("read meta.json")).expect("meta.json")
    }

    fn remote_list(&self, tag: &str) -> Value {
        let reference = format!("{}:{tag}", self.registry.repo("fcos"));
        let raw = skopeo_inspect_raw(&reference, Some(&self.secret()))
            .unwrap_or_else(|e| panic!("skopeo {reference}: {e}"));
        serde_json::from_slice(&raw).expect("manifest list JSON")
    }
}

/// jobs/release.Jenkinsfile's line, run in the workdir as cosa runs it, plus
/// `--tls-verify=false` (plain HTTP to the local registry) and `--json`.
fn release_job_line(subcommand: &str, repo: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        s(subcommand),
        s("--auth=tmp/push-secret-KEY"),
        format!("--repo={repo}"),
        format!("--tag={STREAM}"),
        format!("--tag={VERSION}"),
        s("--artifact=ostree"),
        s("--metajsonname=base-oscontainer"),
        format!("--build={VERSION}"),
    ];
    args.extend(extra.iter().map(|e| s(e)));
    args.push(s("--tls-verify=false"));
    args.push(s("--json"));
    args
}

fn assert_pushed_and_recorded(case: &Case, r: &Run, media_type: &str) {
    assert_eq!(r.ok()["outcome"], "pushed", "{}", r.context());
    for tag in [STREAM, VERSION] {
        assert_eq!(case.remote_list(tag)["mediaType"], media_type);
    }
    for arch in ARCHES {
        let entry = &case.meta(arch)["base-oscontainer"];
        assert_eq!(entry["image"], case.registry.repo("fcos"), "{entry}");
        assert_eq!(
            entry["tags"],
            serde_json::json!([STREAM, VERSION]),
            "{entry}"
        );
    }
}

#[test]
fn release_job_line_pushes_with_abbreviated_auth() {
    let case = Case::new();
    let repo = case.registry.repo("fcos");
    let r = run_in(
        &case.workdir,
        &release_job_line("push-container-manifest", &repo, &[]),
    );
    assert_pushed_and_recorded(&case, &r, OCI_INDEX);

    // the same line again is a no-op, through `push` this time
    let again = run_in(&case.workdir, &release_job_line("push", &repo, &[]));
    assert_eq!(again.ok()["outcome"], "up-to-date", "{}", again.context());
}

#[test]
fn release_job_line_with_v2s2() {
    let case = Case::new();
    let repo = case.registry.repo("fcos");
    let r = run_in(&case.workdir, &release_job_line("push", &repo, &["--v2s2"]));
    assert_pushed_and_recorded(&case, &r, DOCKER_LIST);
}

impl Case {
    /// Copies each arch's ostree archive of the build to `REPO:ARCH-0123abc` with skopeo
    /// (digests preserved), as the build jobs stage per-arch images; their manifest
    /// digests, in arch order.
    fn stage(&self, repo: &str) -> Vec<String> {
        ARCHES
            .iter()
            .map(|arch| {
                let archive = self
                    .workdir
                    .join("builds")
                    .join(VERSION)
                    .join(arch)
                    .join(archive_file_name(VERSION, "ostree", arch));
                let out = skopeo()
                    .args([
                        "copy",
                        "--quiet",
                        "--preserve-digests",
                        "--dest-tls-verify=false",
                    ])
                    .arg("--dest-authfile")
                    .arg(self.secret())
                    .arg(format!("oci-archive:{}", archive.display()))
                    .arg(format!("docker://{repo}:{arch}-0123abc"))
                    .output()
                    .expect("run skopeo copy");
                assert!(
                    out.status.success(),
                    "skopeo copy: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let raw =
                    skopeo_inspect_raw(&format!("{repo}:{arch}-0123abc"), Some(&self.secret()))
                        .expect("inspect the staged image");
                sha256_digest(&raw)
            })
            .collect()
    }
}

#[test]
fn utils_groovy_push_manifest_line_pushes_images_named_by_digest() {
    let case = Case::new();
    let repo = case.registry.repo("node");
    let staged = case.stage(&repo);
    let digest_file = case.workdir.join("4.18.digestfile");
    for (v2s2, list_type) in [(false, OCI_INDEX), (true, DOCKER_LIST)] {
        let mut args = vec![
            s("push-container-manifest"),
            format!("--image=docker://{repo}@{}", staged[0]),
            format!("--image=docker://{repo}@{}", staged[1]),
            s("--tag"),
            s("4.18"),
            s("--repo"),
            repo.clone(),
            s("--write-digest-to-file"),
            digest_file.display().to_string(),
            s("--auth"),
            case.secret().display().to_string(),
            s("--tls-verify=false"),
            s("--json"),
        ];
        if v2s2 {
            args.push(s("--v2s2"));
        }
        let r = run(&args);
        assert_eq!(r.ok()["outcome"], "pushed", "{}", r.context());
        let raw = skopeo_inspect_raw(&format!("{repo}:4.18"), Some(&case.secret())).unwrap();
        let list: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(list["mediaType"], list_type);
        if !v2s2 {
            let digests: Vec<&str> = list["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["digest"].as_str().unwrap())
                .collect();
            assert_eq!(digests, staged, "published byte for byte");
        }
        assert_eq!(
            fs::read_to_string(&digest_file).unwrap().trim(),
            sha256_digest(&raw)
        );
    }
}

#[test]
fn build_cosa_line_pushes_the_staged_arches() {
    let case = Case::new();
    let repo = case.registry.repo("coreos-assembler");
    case.stage(&repo);
    let args = [
        s("push-container-manifest"),
        s("--v2s2"),
        format!("--auth={}", case.secret().display()),
        s("--tag"),
        s("latest"),
        s("--repo"),
        repo.clone(),
        s("--image"),
        format!("docker://{repo}:x86_64-0123abc"),
        s("--image"),
        format!("docker://{repo}:aarch64-0123abc"),
        s("--tls-verify=false"),
        s("--json"),
    ];
    let r = run(&args);
    assert_eq!(r.ok()["outcome"], "pushed", "{}", r.context());
    let raw = skopeo_inspect_raw(&format!("{repo}:latest"), Some(&case.secret())).unwrap();
    let list: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(list["mediaType"], DOCKER_LIST);
    assert_eq!(list["manifests"].as_array().unwrap().len(), 2);
    // the same line again writes nothing
    let again = run(&args);
    assert_eq!(again.ok()["outcome"], "up-to-date", "{}", again.context());
}

#[test]
fn ambiguous_prefix_is_a_usage_error_naming_the_candidates() {
    let r = run(&[
        s("push"),
        s("--repo=r"),
        s("--tag=stable"),
        s("--a"),
        s("x"),
    ]);
    assert_eq!(r.code, 2, "{}", r.context());
    assert!(
        r.stderr
            .contains("ambiguous option: --a could match --artifact, --arch, --authfile"),
        "{}",
        r.context()
    );
    assert!(r.stdout.is_empty(), "{}", r.context());
}

#[test]
fn values_and_arguments_after_double_dash_are_not_expanded() {
    // `--metajsonname=--aut` keeps its value (a tag could not be one: it is
    // checked as a tag); clap then refuses the stray `--auth` after `--` as an
    // unexpected positional argument, proving it was left alone.
    let r = run(&[
        s("push"),
        s("--repo=r"),
        s("--tag=t"),
        s("--artifact=ostree"),
        s("--metajsonname=--aut"),
        s("--"),
        s("--auth"),
    ]);
    assert_eq!(r.code, 2, "{}", r.context());
    assert!(r.stderr.contains("'--auth'"), "{}", r.context());
    assert!(!r.stderr.contains("--authfile"), "{}", r.context());
}
