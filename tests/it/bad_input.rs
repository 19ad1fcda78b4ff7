//! Bad input is refused before anything is written: every case below exits 1 (2 for
//! usage errors) with an error naming the file, flag, arch or registry at fault, and
//! leaves the registry without a single successful write, every file under `builds/`
//! byte-identical, and no digest file.

use std::collections::BTreeMap;
use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support;
use crate::support::{Registry, pushgate};
use pushgate_sample::{SampleBuild, SampleImage, archive_file_name, write_build};
use serde_json::Value;

const BUILD: &str = "41.20261127.1.0";
const ARCHES: [&str; 2] = ["x86_64", "aarch64"];

/// Every file under a directory, by path, with its bytes.
type Snapshot = BTreeMap<PathBuf, Vec<u8>>;

fn snapshot(dir: &Path) -> Snapshot {
    let mut files = Snapshot::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("read {}: {e}", d.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                files.insert(path, bytes);
            }
        }
    }
    files
}

/// A cosa workdir holding a small two-arch build, and a registry to push it to.
struct Case {
    _tmp: tempfile::TempDir,
    workdir: PathBuf,
    registry: Registry,
    /// `builds/` as it was when [`Case::freeze`] was called.
    before: Option<Snapshot>,
    /// Blob uploads are allowed among the writes (failures found while blobs go up).
    blobs_may_land: bool,
}

impl Case {
    fn new() -> Case {
        Case::with_registry(Registry::start())
    }

    fn with_registry(registry: Registry) -> Case {
        let tmp = tempfile::tempdir().expect("temp dir");
        let workdir = tmp.path().join("work");
        fs::create_dir(&workdir).expect("create workdir");
        write_build(&workdir, &SampleBuild::small(BUILD, &ARCHES)).expect("write sample build");
        Case {
            _tmp: tmp,
            workdir,
            registry,
            before: None,
            blobs_may_land: false,
        }
    }

    fn builds(&self) -> PathBuf {
        self.workdir.join("builds")
    }

    fn arch_dir(&self, arch: &str) -> PathBuf {
        self.builds().join(BUILD).join(arch)
    }

    fn meta_path(&self, arch: &str) -> PathBuf {
        self.arch_dir(arch).join("meta.json")
    }

    fn archive(&self, artifact: &str, arch: &str) -> PathBuf {
        self.arch_dir(arch)
            .join(archive_file_name(BUILD, artifact, arch))
    }

    fn digest_file(&self) -> PathBuf {
        self.workdir.join("digest")
    }

    fn meta(&self, arch: &str) -> Value {
        serde_json::from_slice(&fs::read(self.meta_path(arch)).expect("read meta.json"))
            .expect("parse meta.json")
    }

    fn write_meta(&self, arch: &str, meta: &Value) {
        let mut text = serde_json::to_string_pretty(meta).expect("serialize meta.json");
        text.push('\n');
        fs::write(self.meta_path(arch), text).expect("write meta.json");
    }

    /// Makes meta.json's sha256 and size for `artifact` on `arch` match the file on
    /// disk, so that the checksum passes and a later check is reached.
    fn fix_checksum(&self, artifact: &str, arch: &str) {
        let bytes = fs::read(self.archive(artifact, arch)).expect("read archive");
        let mut meta = self.meta(arch);
        let entry = &mut meta["images"][artifact];
        entry["sha256"] = Value::String(support::sha256_digest(&bytes)["sha256:".len()..].into());
        entry["size"] = Value::from(bytes.len() as u64);
        self.write_meta(arch, &meta);
    }

    /// Takes the snapshot of `builds/` the run must leave untouched. Call after
    /// breaking the input, before running pushgate.
    fn freeze(&mut self) {
        self.before = Some(snapshot(&self.builds()));
    }

    /// `pushgate push` of artifact `ostree` (key `base-oscontainer`) with `extra` args.
    fn push(&mut self, extra: &[&str]) -> Output {
        let repo = self.registry.repo("fcos");
        self.push_to(&repo, extra)
    }

    fn push_to(&mut self, repo: &str, extra: &[&str]) -> Output {
        let mut args: Vec<String> = vec!["push".into(), "--repo".into(), repo.into()];
        let has = |flag: &str| extra.contains(&flag);
        if !has("--tag") {
            args.extend(["--tag".into(), "stable".into()]);
        }
        if !has("--artifact") && !has("--image") {
            args.extend(["--artifact".into(), "ostree".into()]);
        }
        if !has("--metajsonname") && !has("--image") {
            args.extend(["--metajsonname".into(), "base-oscontainer".into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        self.run(&args)
    }

    /// Runs pushgate with exactly `args` plus the workdir, TLS and digest-file flags.
    fn run(&mut self, args: &[String]) -> Output {
        if self.before.is_none() {
            self.freeze();
        }
        pushgate()
            .args(args)
            .arg("--workdir")
            .arg(&self.workdir)
            .arg("--tls-verify=false")
            .arg("--write-digest-to-file")
            .arg(self.digest_file())
            .output()
            .expect("run pushgate")
    }

    /// The run failed with `code`, its stderr names every one of `needles`, and nothing
    /// was written anywhere. Returns stderr.
    fn assert_refused(&self, out: &Output, code: i32, needles: &[&str]) -> String {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        // shown with --nocapture, and on failure
        eprintln!("pushgate stderr: {stderr}");
        assert_eq!(
            out.status.code(),
            Some(code),
            "exit status\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        // clap's Usage line names every flag: look only at the error above it
        let message = stderr.split("Usage:").next().unwrap_or_default();
        for needle in needles {
            assert!(
                message.contains(needle),
                "stderr does not name {needle:?}:\n{stderr}"
            );
        }
        assert!(!stderr.contains("panicked"), "pushgate panicked:\n{stderr}");
        let successful_writes: Vec<_> = self
            .registry
            .writes()
            .into_iter()
            .filter(|w| w.status < 400)
            .filter(|w| !(self.blobs_may_land && w.path.contains("/blobs/uploads/")))
            .collect();
        assert!(
            successful_writes.is_empty(),
            "the registry was written to: {successful_writes:?}"
        );
        let after = snapshot(&self.builds());
        let before = self.before.as_ref().expect("snapshot taken");
        assert_eq!(
            before.keys().collect::<Vec<_>>(),
            after.keys().collect::<Vec<_>>(),
            "files under builds/ were created or removed"
        );
        for (path, bytes) in before {
            assert!(after[path] == *bytes, "{} changed", path.display());
        }
        assert!(!self.digest_file().exists(), "the digest file was written");
        stderr
    }

    /// [`Case::assert_refused`], also checking the registry saw no write attempt at all.
    fn assert_refused_untouched(&self, out: &Output, code: i32, needles: &[&str]) -> String {
        let stderr = self.assert_refused(out, code, needles);
        let writes = self.registry.writes();
        assert!(writes.is_empty(), "write attempts: {writes:?}");
        stderr
    }
}

fn flip_middle(path: &Path) {
    let mut bytes = fs::read(path).expect("read archive");
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 16] {
        *b ^= 0xff;
    }
    fs::write(path, bytes).expect("write archive");
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

// ---------------------------------------------------------------- archives

#[test]
fn corrupt_archive_is_refused_naming_it() {
    let mut c = Case::new();
    let archive = c.archive("ostree", "aarch64");
    flip_middle(&archive);
    // the checksum is checked while blobs go up (the registry checks each blob's
    // digest): blobs may land, but nothing that names them
    c.blobs_may_land = true;
    let out = c.push(&[]);
    let err = c.assert_refused(&out, 1, &[&path_str(&archive)]);
    assert!(
        err.contains("sha256") || err.contains("corrupt"),
        "says why: {err}"
    );
    // a dry run finds it too, and puts no manifest or tag. The blob uploads the
    // first run had in flight when it failed may reach the registry's access
    // log after this count (it logs a request when it has served it, and the
    // first run does not wait for that), so upload requests logged late are
    // not the dry run's; that a dry run uploads nothing is tests/push.rs's.
    let writes = c.registry.writes().len();
    let out = c.push(&["--dry-run"]);
    c.assert_refused(&out, 1, &[&path_str(&archive), "sha256"]);
    let late = c.registry.writes()[writes..].to_vec();
    assert!(
        late.iter().all(|r| r.path.contains("/blobs/uploads/")),
        "the dry run wrote: {late:?}"
    );
}

#[test]
fn truncated_archive_is_refused_naming_it() {
    let mut c = Case::new();
    let archive = c.archive("ostree", "x86_64");
    let len = fs::metadata(&archive).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&archive)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let out = c.push(&[]);
    c.assert_refused_untouched(&out, 1, &[&path_str(&archive)]);
}

#[test]
fn missing_archive_is_refused_naming_it() {
    let mut c = Case::new();
    let archive = c.archive("ostree", "aarch64");
    fs::remove_file(&archive).unwrap();
    let out = c.push(&[]);
    c.assert_refused_untouched(&out, 1, &[&path_str(&archive)]);
}

#[test]
fn archive_that_is_not_a_tar_is_refused() {
    let mut c = Case::new();
    let archive = c.archive("ostree", "x86_64");
    fs::write(&archive, "this is not a tar archive\n".repeat(100)).unwrap();
    c.fix_checksum("ostree", "x86_64");
    let out = c.push(&[]);
    c.assert_refused_untouched(&out, 1, &[&path_str(&archive)]);
}

#[test]
fn archive_without_index_json_is_refused() {
    let mut c = Case::new();
    let archive = c.archive("ostree", "x86_64");
    {
        let mut tar = tar::Builder::new(fs::File::create(&archive).unwrap());
        let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
        let mut header = tar::Header::new_ustar();
        header.set_size(layout.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "oci-layout", &layout[..])
            .unwrap();
        tar.into_inner().unwrap();
    }
    c.fix_checksum("ostree", "x86_64");
    let out = c.push(&[]);
    c.assert_refused_untouched(&out, 1, &[&path_str(&archive), "index.json"]);
}

#[test]
fn archive_filed_under_the_wrong_arch_is_refused() {
    let mut c = Case::new();
    let archive = c.archive("ostree", "x86_64");
    pushgate_sample::write_oci_archive(
        &archive,
        &SampleImage {
            oci_arch: "arm64".into(),
            variant: Some("v8".into()),
            layers: 2,
            layer_size: 1024,
            seed: 7,
        },
    )
    .unwrap();
    c.fix_checksum("ostree", "x86_64");
    let out = c.push(&[]);
    c.assert_refused_untouched(&out, 1, &[&path_str(&archive), "x86_64", "arm64"]);
}

// ---------------------------------------------------------------- meta.json, builds.json

#[test]
fn malformed_meta_json_is_refused_naming_it() {
    let mut c = Case::new();
    let meta = c.meta_path("aarch64");
    fs::write(&meta, "{\"images\": {\"ostree\": ").unwrap();
    let out = c.push(&[]);
    c.assert_refused_untouched(&out, 1, &[&path_str(&meta)]);
}

#[test]
fn meta_json_image_without_sha256_is_refused() {
    let mut c = Case::new();
    let mut meta = c.meta("x86_64");
    meta["images"]["ostree"]
        .as_object_mut()
        .unwrap()
        .remove("sha256");
    c.write_meta("x86_64", &meta);
    let out = c.push(&[]);
    c.assert_refused_untouched(&out, 1, &[&path_str(&c.meta_path("x86_64")), "sha256"]);
}

#[test]
fn malformed_builds_json_is_refused_naming_it() {
    let mut c = Case::new();
    let builds_json = c.builds().join("builds.json");
    fs::write(
        &builds_json,
        "{\"schema-version\": \"1.0.0\", \"builds\": [",
    )
    .unwrap();
    let out = c.push(&[]);
    c.assert_refused_untouched(&out, 1, &[&path_str(&builds_json)]);
}

#[test]
fn builds_json_schema_2_is_refused() {
    let mut c = Case::new();
    let builds_json = c.builds().join("builds.json");
    let mut doc: Value = serde_json::from_slice(&fs::read(&builds_json).unwrap()).unwrap();
    doc["schema-version"] = Value::String("2.0.0".into());
    fs::write(&builds_json, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let out = c.push(&[]);
    c.assert_refused_untouched(&out, 1, &[&path_str(&builds_json), "2.0.0"]);
}

// ---------------------------------------------------------------- builds and arches

#[test]
fn unknown_build_is_refused() {
    let mut c = Case::new();
    let out = c.push(&["--build", "nope"]);
    c.assert_refused_untouched(&out, 1, &["--build", "nope"]);
}

#[test]
fn arch_not_in_the_build_is_refused() {
    let mut c = Case::new();
    let out = c.push(&["--arch", "s390x"]);
    c.assert_refused_untouched(&out, 1, &["--arch", "s390x", BUILD]);
}

#[test]
fn artifact_absent_on_a_requested_arch_is_refused() {
    let mut c = Case::new();
    // kubevirt exists on x86_64 only
    let out = c.push(&[
        "--artifact",
        "kubevirt",
        "--metajsonname",
        "kubevirt-container",
        "--arch",
        "x86_64",
        "--arch",
        "aarch64",
    ]);
    c.assert_refused_untouched(&out, 1, &["aarch64", "kubevirt"]);
}

// ---------------------------------------------------------------- flags
//
// A malformed flag value is a usage error (2); what the values point at (a
// build, an arch of it, an image) is looked at by the run (1).

#[test]
fn tag_with_a_space_is_refused() {
    let mut c = Case::new();
    let out = c.push(&["--tag", "bad tag"]);
    c.assert_refused_untouched(&out, 2, &["--tag", "bad tag"]);
}

#[test]
fn tag_starting_with_a_dot_is_refused() {
    let mut c = Case::new();
    let out = c.push(&["--tag", "stable", "--tag", ".x"]);
    c.assert_refused_untouched(&out, 2, &["--tag", ".x"]);
}

#[test]
fn repo_with_a_tag_is_refused() {
    let mut c = Case::new();
    let repo = format!("{}:stable", c.registry.repo("fcos"));
    let out = c.push_to(&repo, &[]);
    c.assert_refused_untouched(&out, 2, &["--repo", &repo]);
}

#[test]
fn image_with_an_unknown_transport_is_refused() {
    let mut c = Case::new();
    let src = format!("dir:{}", c.archive("ostree", "x86_64").display());
    let out = c.push(&["--image", &src]);
    c.assert_refused_untouched(&out, 2, &["--image", &src]);
}

#[test]
fn image_from_a_docker_source_that_does_not_exist_is_refused() {
    let mut c = Case::new();
    let src = format!("docker://{}:x86_64", c.registry.repo("staging"));
    let out = c.push(&["--image", &src]);
    c.assert_refused_untouched(&out, 1, &["--image", &src, "no such image"]);
}

#[test]
fn missing_tag_is_a_usage_error() {
    let mut c = Case::new();
    let repo = c.registry.repo("fcos");
    let args: Vec<String> = [
        "push",
        "--repo",
        &repo,
        "--artifact",
        "ostree",
        "--metajsonname",
        "base-oscontainer",
    ]
    .map(String::from)
    .to_vec();
    let out = c.run(&args);
    c.assert_refused_untouched(&out, 2, &["required", "--tag"]);
}

#[test]
fn image_and_artifact_together_is_a_usage_error() {
    let mut c = Case::new();
    let src = format!("oci-archive:{}", c.archive("ostree", "x86_64").display());
    let out = c.push(&[
        "--image",
        &src,
        "--artifact",
        "ostree",
        "--metajsonname",
        "base-oscontainer",
    ]);
    c.assert_refused_untouched(&out, 2, &["--image", "--artifact"]);
}

#[test]
fn artifact_without_metajsonname_is_a_usage_error() {
    let mut c = Case::new();
    let repo = c.registry.repo("fcos");
    let args: Vec<String> = [
        "push",
        "--repo",
        &repo,
        "--tag",
        "stable",
        "--artifact",
        "ostree",
    ]
    .map(String::from)
    .to_vec();
    let out = c.run(&args);
    c.assert_refused_untouched(&out, 2, &["required", "--metajsonname"]);
}

// ---------------------------------------------------------------- registries

#[test]
fn unreachable_registry_is_refused_naming_it() {
    let mut c = Case::new();
    let addr = {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.local_addr().unwrap()
    };
    // the listener is closed: nothing listens there any more
    let host = format!("127.0.0.1:{}", addr.port());
    let out = c.push_to(&format!("{host}/fcos"), &[]);
    c.assert_refused_untouched(&out, 1, &[&host]);
}

#[test]
fn read_only_registry_is_refused_naming_it() {
    let mut c = Case::with_registry(Registry::start_read_only());
    let out = c.push(&[]);
    let err = c.assert_refused(&out, 1, &[c.registry.addr()]);
    // it tried, and was refused every time
    let writes = c.registry.writes();
    assert!(writes.iter().all(|w| w.status == 405), "{writes:?}\n{err}");
    let repo = c.registry.repo("fcos");
    assert!(
        support::skopeo_inspect_raw(&format!("{repo}:stable"), None).is_err(),
        "the tag exists"
    );
}
