//! End-to-end behaviours of `pushgate push` against a real `docker-registry`, each
//! confirmed with skopeo (what the registry serves) and the registry's access log
//! (what was written).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;
use tempfile::TempDir;

use crate::support::run::{Run, describe, digest_at, list_digests, raw_json, run, s, strs};
use crate::support::{Registry, Request, sha256_digest, skopeo_inspect_raw};
use pushgate_sample::{
    SampleBuild, SampleImage, archive_file_name, write_build, write_oci_archive,
    write_oci_layout_dir,
};

const REPO_NAME: &str = "fcos";
const KEY: &str = "base-oscontainer";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

// ---------------------------------------------------------------------------------------
// helpers

/// `push --repo REPO --tag T... --tls-verify=false --json`, then `extra`.
fn base_args(repo: &str, tags: &[&str], extra: &[String]) -> Vec<String> {
    let mut args = vec![s("push"), s("--repo"), s(repo)];
    for t in tags {
        args.push(s("--tag"));
        args.push(s(t));
    }
    args.push(s("--tls-verify=false"));
    args.push(s("--json"));
    args.extend_from_slice(extra);
    args
}

/// Pushes the build in `wd` with `--artifact ARTIFACT --metajsonname KEY`.
fn push_artifact(
    repo: &str,
    tags: &[&str],
    wd: &Path,
    artifact: &str,
    key: &str,
    extra: &[&str],
) -> Run {
    let mut more = vec![
        s("--artifact"),
        s(artifact),
        s("--metajsonname"),
        s(key),
        s("--workdir"),
        wd.display().to_string(),
    ];
    more.extend(extra.iter().map(|e| s(e)));
    run(&base_args(repo, tags, &more))
}

/// Pushes the `ostree` artifact of the build in `wd` under [`KEY`].
fn push_build(repo: &str, tags: &[&str], wd: &Path, extra: &[&str]) -> Run {
    push_artifact(repo, tags, wd, "ostree", KEY, extra)
}

/// Pushes `--image SRC...`.
fn push_images(repo: &str, tags: &[&str], sources: &[String]) -> Run {
    let mut more = Vec::new();
    for src in sources {
        more.push(s("--image"));
        more.push(src.clone());
    }
    run(&base_args(repo, tags, &more))
}

fn arch_dir(wd: &Path, build: &str, arch: &str) -> PathBuf {
    wd.join("builds").join(build).join(arch)
}

fn meta_path(wd: &Path, build: &str, arch: &str) -> PathBuf {
    arch_dir(wd, build, arch).join("meta.json")
}

fn archive_path(wd: &Path, build: &str, arch: &str, artifact: &str) -> PathBuf {
    arch_dir(wd, build, arch).join(archive_file_name(build, artifact, arch))
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&read(path)).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// The meta.json bytes of every arch of `build`.
fn metas(wd: &Path, build: &str, arches: &[&str]) -> Vec<Vec<u8>> {
    arches
        .iter()
        .map(|a| read(&meta_path(wd, build, a)))
        .collect()
}

/// `value` serialized as cosa writes meta.json: 4-space indent.
fn pretty4(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    value.serialize(&mut ser).expect("serialize");
    out
}

/// One image of an OCI layout (archive or directory): its manifest bytes and blobs.
struct LayoutImage {
    manifest: Vec<u8>,
    manifest_digest: String,
    /// (digest, size) of the config, then every layer.
    blobs: Vec<(String, u64)>,
}

fn parse_layout(files: &HashMap<String, Vec<u8>>) -> LayoutImage {
    let index: Value = serde_json::from_slice(&files["index.json"]).expect("index.json");
    let manifests = index["manifests"].as_array().expect("index manifests");
    assert_eq!(manifests.len(), 1, "one image per layout");
    let digest = manifests[0]["digest"].as_str().unwrap().to_string();
    let hex = digest.strip_prefix("sha256:").unwrap();
    let manifest = files[&format!("blobs/sha256/{hex}")].clone();
    assert_eq!(sha256_digest(&manifest), digest);
    let m: Value = serde_json::from_slice(&manifest).unwrap();
    let mut blobs = vec![descriptor(&m["config"])];
    blobs.extend(m["layers"].as_array().unwrap().iter().map(descriptor));
    LayoutImage {
        manifest,
        manifest_digest: digest,
        blobs,
    }
}

fn descriptor(d: &Value) -> (String, u64) {
    (
        d["digest"].as_str().unwrap().to_string(),
        d["size"].as_u64().unwrap(),
    )
}

/// Reads the image in an OCI archive with the tar crate (independently of pushgate).
fn read_archive(path: &Path) -> LayoutImage {
    let mut tar = tar::Archive::new(File::open(path).expect("open archive"));
    let mut files = HashMap::new();
    for entry in tar.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        files.insert(name, bytes);
    }
    parse_layout(&files)
}

/// Reads the image in an OCI layout directory.
fn read_layout_dir(dir: &Path) -> LayoutImage {
    let mut files = HashMap::new();
    files.insert(s("index.json"), read(&dir.join("index.json")));
    for entry in fs::read_dir(dir.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let name = format!("blobs/sha256/{}", entry.file_name().to_string_lossy());
        files.insert(name, read(&entry.path()));
    }
    parse_layout(&files)
}

fn raw(reference: &str) -> Vec<u8> {
    skopeo_inspect_raw(reference, None).unwrap_or_else(|e| panic!("skopeo {reference}: {e}"))
}

/// Requests after the first `from` of `all`.
fn since(all: &[Request], from: usize) -> Vec<Request> {
    all[from..].to_vec()
}

fn blob_upload_posts(reqs: &[Request]) -> usize {
    reqs.iter()
        .filter(|r| r.method == "POST" && r.path.contains("/blobs/uploads"))
        .count()
}

fn manifest_puts(reqs: &[Request], repo_name: &str, reference: &str) -> usize {
    let path = format!("/v2/{repo_name}/manifests/{reference}");
    reqs.iter()
        .filter(|r| r.method == "PUT" && r.path == path)
        .count()
}

/// (os, architecture, variant) of an index entry.
fn platform(entry: &Value) -> (String, String, Option<String>) {
    let p = &entry["platform"];
    (
        p["os"].as_str().unwrap_or_default().to_string(),
        p["architecture"].as_str().unwrap_or_default().to_string(),
        p.get("variant").and_then(Value::as_str).map(str::to_string),
    )
}

fn expected_platform(arch: &str) -> (String, String, Option<String>) {
    match arch {
        "x86_64" => (s("linux"), s("amd64"), None),
        "aarch64" => (s("linux"), s("arm64"), Some(s("v8"))),
        "s390x" => (s("linux"), s("s390x"), None),
        "ppc64le" => (s("linux"), s("ppc64le"), None),
        other => panic!("no platform for {other}"),
    }
}

/// The newest entry recorded under `key`: the last of `additional-images`, or the
/// entry itself.
fn latest_entry<'a>(meta: &'a Value, key: &str) -> &'a Value {
    let entry = &meta[key];
    entry
        .get("additional-images")
        .and_then(Value::as_array)
        .and_then(|a| a.last())
        .unwrap_or(entry)
}

fn workdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("pushgate-push-test-")
        .tempdir()
        .unwrap()
}

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

const BUILD: &str = "41.20261127.1.0";
const ARCHES3: [&str; 3] = ["x86_64", "aarch64", "s390x"];
const ARCHES2: [&str; 2] = ["x86_64", "aarch64"];

/// Writes a small build (`ostree` on every arch, `kubevirt` on the first).
/// cosa's meta-stamp, which every write sets to the time of the write.
const META_STAMP: &str = "coreos-assembler.meta-stamp";

/// meta.json files with the meta-stamp's value blanked, to compare two writes.
fn unstamped(metas: &[Vec<u8>]) -> Vec<String> {
    metas
        .iter()
        .map(|m| {
            let text = String::from_utf8(m.clone()).unwrap();
            text.lines()
                .map(|l| {
                    if l.trim_start().starts_with(&format!("\"{META_STAMP}\"")) {
                        "STAMP"
                    } else {
                        l
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

fn small_build(wd: &Path, id: &str, arches: &[&str]) {
    write_build(wd, &SampleBuild::small(id, arches)).expect("write sample build");
}

// ---------------------------------------------------------------------------------------
// 1. fresh push

#[test]
fn fresh_push_of_three_arch_build_publishes_index_at_every_tag_and_records_meta_json() {
    let reg = Registry::start();
    let repo = reg.repo(REPO_NAME);
    let wd = workdir();
    small_build(wd.path(), BUILD, &ARCHES3);
    let before: Vec<Value> = ARCHES3
        .iter()
        .map(|a| read_json(&meta_path(wd.path(), BUILD, a)))
        .collect();
    let archives: Vec<LayoutImage> = ARCHES3
        .iter()
        .map(|a| read_archive(&archive_path(wd.path(), BUILD, a, "ostree")))
        .collect();
    for a in &archives {
        assert!(a.blobs.len() >= 3, "several layers plus a config");
    }
    let digest_file = wd.path().join("digest");
    let digest_file_arg = digest_file.display().to_string();

    let r = push_build(
        &repo,
        &["stable", "41"],
        wd.path(),
        &["--write-digest-to-file", &digest_file_arg],
    );
    let report = r.ok();

    // the list, as the registry serves it at every tag
    let list_bytes = raw(&format!("{repo}:stable"));
    assert_eq!(
        raw(&format!("{repo}:41")),
        list_bytes,
        "both tags serve the same list"
    );
    let list_digest = sha256_digest(&list_bytes);
    let list: Value = serde_json::from_slice(&list_bytes).unwrap();
    assert_eq!(list["mediaType"], OCI_INDEX);
    assert_eq!(list["schemaVersion"], 2);
    let entries = list["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    for ((entry, arch), archive) in entries.iter().zip(ARCHES3).zip(&archives) {
        assert_eq!(platform(entry), expected_platform(arch), "{arch}: {entry}");
        assert_eq!(entry["mediaType"], OCI_MANIFEST);
        assert_eq!(
            entry["digest"].as_str().unwrap(),
            archive.manifest_digest,
            "{arch}: digest preserved from the archive"
        );
        assert_eq!(
            entry["size"].as_u64().unwrap(),
            archive.manifest.len() as u64
        );
        // byte-for-byte: the registry serves the archive's manifest bytes
        let served = raw(&format!("{repo}@{}", archive.manifest_digest));
        assert_eq!(served, archive.manifest, "{arch}: manifest bytes preserved");
        assert_eq!(sha256_digest(&served), archive.manifest_digest);
    }

    // meta.json per arch
    for ((arch, orig), archive) in ARCHES3.iter().zip(&before).zip(&archives) {
        let path = meta_path(wd.path(), BUILD, arch);
        let bytes = read(&path);
        let meta: Value = serde_json::from_slice(&bytes).unwrap();
        let entry = &meta[KEY];
        assert_eq!(entry["image"], repo.as_str(), "{arch}");
        assert_eq!(
            entry["digest"].as_str().unwrap(),
            archive.manifest_digest,
            "{arch}: the arch's own digest, not the list's"
        );
        assert_ne!(entry["digest"].as_str().unwrap(), list_digest);
        assert_eq!(entry["manifest-list-digest"].as_str().unwrap(), list_digest);
        assert_eq!(strs(&entry["tags"]), vec![s("stable"), s("41")]);
        assert!(entry.get("additional-images").is_none());
        // other keys kept, in order, with KEY added
        let orig_map = orig.as_object().unwrap();
        let new_map = meta.as_object().unwrap();
        let mut want_keys: Vec<&String> = orig_map.keys().collect();
        let key = s(KEY);
        want_keys.push(&key);
        let stamp = s(META_STAMP);
        want_keys.push(&stamp);
        assert_eq!(new_map.keys().collect::<Vec<_>>(), want_keys, "{arch}");
        for (k, v) in orig_map {
            assert_eq!(&new_map[k], v, "{arch}: {k} kept");
        }
        // 4-space indentation, cosa's format
        let mut expected = pretty4(&meta);
        if bytes.ends_with(b"\n") {
            expected.push(b'\n');
        }
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            String::from_utf8_lossy(&expected),
            "{arch}: meta.json is 4-space indented"
        );
    }

    // digest file and report
    assert_eq!(
        fs::read_to_string(&digest_file).unwrap().trim(),
        list_digest
    );
    assert_eq!(report["outcome"], "pushed");
    assert!(!report["reason"].as_str().unwrap().is_empty());
    assert_eq!(report["manifest_list_digest"], list_digest.as_str());
    assert_eq!(strs(&report["tags"]), vec![s("stable"), s("41")]);
    let digests = report["digests"].as_object().unwrap();
    assert_eq!(
        digests.keys().map(String::as_str).collect::<Vec<_>>(),
        ARCHES3.to_vec()
    );
    for (arch, archive) in ARCHES3.iter().zip(&archives) {
        assert_eq!(digests[*arch], archive.manifest_digest.as_str());
    }
    let blob_count: usize = archives.iter().map(|a| a.blobs.len()).sum();
    let blob_bytes: u64 = archives
        .iter()
        .flat_map(|a| a.blobs.iter().map(|b| b.1))
        .sum();
    assert_eq!(
        report["uploaded_blobs"].as_u64().unwrap() as usize,
        blob_count
    );
    assert_eq!(report["uploaded_bytes"].as_u64().unwrap(), blob_bytes);
    assert_eq!(strs(&report["recorded"]), ARCHES3.map(s).to_vec());
    assert!(report["plan"].is_object());
    let writes = reg.writes();
    assert_eq!(blob_upload_posts(&writes), blob_count);
    assert_eq!(manifest_puts(&writes, REPO_NAME, "stable"), 1);
    assert_eq!(manifest_puts(&writes, REPO_NAME, "41"), 1);
}

// ---------------------------------------------------------------------------------------
// 2. no-op rerun

#[test]
fn rerun_when_up_to_date_writes_nothing_and_does_not_read_the_archives() {
    let reg = Registry::start();
    let repo = reg.repo(REPO_NAME);
    let wd = workdir();
    small_build(wd.path(), BUILD, &ARCHES3);
    let first = push_build(&repo, &["stable", "41"], wd.path(), &[]);
    assert_eq!(first.ok()["outcome"], "pushed");
    let list_digest = first.json["manifest_list_digest"].clone();
    let metas_before = metas(wd.path(), BUILD, &ARCHES3);
    let writes_before = reg.writes();

    // the archives are gone: an up-to-date check must not need them
    for arch in ARCHES3 {
        for artifact in ["ostree", "kubevirt"] {
            let p = archive_path(wd.path(), BUILD, arch, artifact);
            if p.exists() {
                fs::remove_file(&p).unwrap();
            }
        }
    }

    let again = push_build(&repo, &["stable", "41"], wd.path(), &[]);
    let report = again.ok();
    assert_eq!(again.outcome(), "up-to-date", "{report}");
    assert_eq!(report["manifest_list_digest"], list_digest);
    assert_eq!(report["uploaded_blobs"], 0);
    assert_eq!(report["uploaded_bytes"], 0);
    assert_eq!(strs(&report["recorded"]), Vec::<String>::new());
    assert_eq!(reg.writes(), writes_before, "no registry write at all");
    assert_eq!(
        metas(wd.path(), BUILD, &ARCHES3),
        metas_before,
        "meta.json byte-identical"
    );
    for arch in ARCHES3 {
        assert!(
            !arch_dir(wd.path(), BUILD, arch)
                .join(".meta.json.lock")
                .exists()
        );
    }
}

// ---------------------------------------------------------------------------------------
// 3. record-only recovery

#[test]
fn job_died_before_recording_rerun_records_meta_json_without_uploading() {
    let reg = Registry::start();
    let repo = reg.repo(REPO_NAME);
    let wd = workdir();
    small_build(wd.path(), BUILD, &ARCHES3);
    let pristine = metas(wd.path(), BUILD, &ARCHES3);
    let first = push_build(&repo, &["stable", "41"], wd.path(), &[]);
    assert_eq!(first.ok()["outcome"], "pushed");
    let recorded_by_push = metas(wd.path(), BUILD, &ARCHES3);
    assert_ne!(recorded_by_push, pristine);

    // the job died between push and record: meta.json as before the push
    for (arch, bytes) in ARCHES3.iter().zip(&pristine) {
        fs::write(meta_path(wd.path(), BUILD, arch), bytes).unwrap();
    }
    let from = reg.requests().len();

    let again = push_build(&repo, &["stable", "41"], wd.path(), &[]);
    let report = again.ok();
    assert_eq!(again.outcome(), "recorded", "{report}");
    assert_eq!(report["uploaded_blobs"], 0);
    assert_eq!(report["uploaded_bytes"], 0);
    assert_eq!(strs(&report["recorded"]), ARCHES3.map(s).to_vec());
    assert_eq!(
        report["manifest_list_digest"],
        first.json["manifest_list_digest"]
    );
    let after = since(&reg.requests(), from);
    assert_eq!(blob_upload_posts(&after), 0, "no blob upload");
    // the tags serve the list the archives describe: it vouches for its content,
    // so the rerun reads the two tags and asks nothing blob by blob
    assert!(
        after.len() == 2
            && after
                .iter()
                .all(|r| r.method == "GET" && r.path.contains("/manifests/")),
        "only the tags are read: {:?}",
        describe(&after)
    );
    let writes: Vec<_> = after.into_iter().filter(Request::is_write).collect();
    assert!(
        writes.is_empty(),
        "the registry held everything: {:?}",
        describe(&writes)
    );
    assert_eq!(
        unstamped(&metas(wd.path(), BUILD, &ARCHES3)),
        unstamped(&recorded_by_push),
        "meta.json now records the push, as the first run would have"
    );
    let list_digest = digest_at(&format!("{repo}:stable"));
    for arch in ARCHES3 {
        let meta = read_json(&meta_path(wd.path(), BUILD, arch));
        assert_eq!(meta[KEY]["manifest-list-digest"], list_digest.as_str());
    }
}

// ---------------------------------------------------------------------------------------
// 4. drift repair

#[test]
fn tag_moved_by_someone_else_is_put_back_and_only_that_tag_is_written() {
    let reg = Registry::start();
    let repo = reg.repo(REPO_NAME);
    let wd = workdir();
    small_build(wd.path(), BUILD, &ARCHES2);
    let first = push_build(&repo, &["stable", "41"], wd.path(), &[]);
    let list_digest = first.ok()["manifest_list_digest"]
        .as_str()
        .unwrap()
        .to_string();
    let stable_bytes = raw(&format!("{repo}:stable"));
    let metas_before = metas(wd.path(), BUILD, &ARCHES2);

    // someone moves tag 41 to another image
    let other = wd.path().join("other.ociarchive");
    write_oci_archive(
        &other,
        &SampleImage {
            oci_arch: s("amd64"),
            variant: None,
            layers: 1,
            layer_size: 1024,
            seed: 4242,
        },
    )
    .unwrap();
    let moved = push_images(
        &repo,
        &["41"],
        &[format!("oci-archive:{}", other.display())],
    );
    moved.ok();
    assert_ne!(
        digest_at(&format!("{repo}:41")),
        list_digest,
        "tag 41 moved"
    );
    let from = reg.requests().len();

    let again = push_build(&repo, &["stable", "41"], wd.path(), &[]);
    let report = again.ok();
    assert_eq!(again.outcome(), "pushed", "{report}");
    assert_eq!(report["uploaded_blobs"], 0);
    let after = since(&reg.requests(), from);
    let writes: Vec<_> = after.iter().filter(|r| r.is_write()).cloned().collect();
    assert_eq!(blob_upload_posts(&after), 0, "no blob upload");
    assert_eq!(manifest_puts(&writes, REPO_NAME, "41"), 1);
    assert_eq!(manifest_puts(&writes, REPO_NAME, "stable"), 0);
    assert_eq!(
        writes.len(),
        1,
        "only tag 41 is written: {:?}",
        describe(&writes)
    );
    assert_eq!(digest_at(&format!("{repo}:41")), list_digest, "41 is back");
    assert_eq!(
        raw(&format!("{repo}:stable")),
        stable_bytes,
        "stable untouched"
    );
    assert_eq!(
        metas(wd.path(), BUILD, &ARCHES2),
        metas_before,
        "meta.json already recorded this push"
    );
}

// ---------------------------------------------------------------------------------------
// 5. new tag on rerun

#[test]
fn tag_added_on_rerun_is_the_only_thing_written() {
    let reg = Registry::start();
    let repo = reg.repo(REPO_NAME);
    let wd = workdir();
    small_build(wd.path(), BUILD, &ARCHES2);
    let first = push_build(&repo, &["stable"], wd.path(), &[]);
    let list_digest = first.ok()["manifest_list_digest"]
        .as_str()
        .unwrap()
        .to_string();
    let stable_bytes = raw(&format!("{repo}:stable"));
    assert!(skopeo_inspect_raw(&format!("{repo}:41"), None).is_err());
    let from = reg.requests().len();

    let again = push_build(&repo, &["stable", "41"], wd.path(), &[]);
    let report = again.ok();
    assert_eq!(again.outcome(), "pushed", "{report}");
    assert_eq!(report["uploaded_blobs"], 0);
    assert_eq!(report["manifest_list_digest"], list_digest.as_str());
    let after = since(&reg.requests(), from);
    let writes: Vec<_> = after.iter().filter(|r| r.is_write()).cloned().collect();
    assert_eq!(blob_upload_posts(&after), 0);
    assert_eq!(manifest_puts(&writes, REPO_NAME, "41"), 1);
    assert_eq!(
        writes.len(),
        1,
        "only the new tag is written: {:?}",
        describe(&writes)
    );
    assert_eq!(raw(&format!("{repo}:41")), stable_bytes);
    assert_eq!(raw(&format!("{repo}:stable")), stable_bytes);
    for arch in ARCHES2 {
        let meta = read_json(&meta_path(wd.path(), BUILD, arch));
        let entry = latest_entry(&meta, KEY);
        assert_eq!(strs(&entry["tags"]), vec![s("stable"), s("41")], "{arch}");
        assert_eq!(entry["manifest-list-digest"], list_digest.as_str());
    }
}

// ---------------------------------------------------------------------------------------
// 6. --v2s2

#[test]
fn v2s2_publishes_docker_list_and_records_the_digests_the_registry_serves() {
    let reg = Registry::start();
    let repo = reg.repo(REPO_NAME);
    let wd = workdir();
    small_build(wd.path(), BUILD, &ARCHES3);
    let archives: Vec<LayoutImage> = ARCHES3
        .iter()
        .map(|a| read_archive(&archive_path(wd.path(), BUILD, a, "ostree")))
        .collect();
    let digest_file = wd.path().join("digest");
    let digest_file_arg = digest_file.display().to_string();

    let r = push_build(
        &repo,
        &["stable", "41"],
        wd.path(),
        &["--v2s2", "--write-digest-to-file", &digest_file_arg],
    );
    let report = r.ok().clone();
    assert_eq!(r.outcome(), "pushed");

    let list_bytes = raw(&format!("{repo}:stable"));
    assert_eq!(raw(&format!("{repo}:41")), list_bytes);
    let list_digest = sha256_digest(&list_bytes);
    let list: Value = serde_json::from_slice(&list_bytes).unwrap();
    assert_eq!(list["mediaType"], DOCKER_LIST);
    assert_eq!(list["schemaVersion"], 2);
    assert_eq!(report["manifest_list_digest"], list_digest.as_str());
    assert_eq!(
        fs::read_to_string(&digest_file).unwrap().trim(),
        list_digest
    );
    let entries = list["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    for ((entry, arch), archive) in entries.iter().zip(ARCHES3).zip(&archives) {
        assert_eq!(platform(entry), expected_platform(arch), "{arch}");
        assert_eq!(entry["mediaType"], DOCKER_MANIFEST);
        let digest = entry["digest"].as_str().unwrap();
        let served = raw(&format!("{repo}@{digest}"));
        assert_eq!(sha256_digest(&served), digest);
        assert_eq!(entry["size"].as_u64().unwrap(), served.len() as u64);
        let m: Value = serde_json::from_slice(&served).unwrap();
        assert_eq!(m["mediaType"], DOCKER_MANIFEST, "{arch}");
        assert_eq!(m["schemaVersion"], 2);
        assert_eq!(m["config"]["mediaType"], DOCKER_CONFIG);
        let layers = m["layers"].as_array().unwrap();
        assert_eq!(layers.len() + 1, archive.blobs.len());
        for (layer, (blob, size)) in layers.iter().zip(&archive.blobs[1..]) {
            assert_eq!(layer["mediaType"], DOCKER_LAYER);
            assert_eq!(layer["digest"].as_str().unwrap(), blob, "same layer blobs");
            assert_eq!(layer["size"].as_u64().unwrap(), *size);
        }
        assert_ne!(digest, archive.manifest_digest, "{arch}: converted");

        // recorded digests are what the registry serves
        assert_eq!(report["digests"][arch], digest, "{arch} in the report");
        let meta = read_json(&meta_path(wd.path(), BUILD, arch));
        assert_eq!(meta[KEY]["digest"], digest, "{arch} in meta.json");
        assert_eq!(meta[KEY]["manifest-list-digest"], list_digest.as_str());
        assert_eq!(
            sha256_digest(&raw(&format!(
                "{repo}@{}",
                meta[KEY]["digest"].as_str().unwrap()
            ))),
            meta[KEY]["digest"].as_str().unwrap()
        );
    }

    // a rerun is a no-op
    let metas_before = metas(wd.path(), BUILD, &ARCHES3);
    let writes_before = reg.writes();
    let again = push_build(&repo, &["stable", "41"], wd.path(), &["--v2s2"]);
    assert_eq!(again.ok()["outcome"], "up-to-date", "{}", again.json);
    assert_eq!(again.json["manifest_list_digest"], list_digest.as_str());
    assert_eq!(reg.writes(), writes_before);
    assert_eq!(metas(wd.path(), BUILD, &ARCHES3), metas_before);
}

// ---------------------------------------------------------------------------------------
// 7. --force

#[test]
fn force_on_up_to_date_build_reputs_tags_without_uploading_blobs_and_appends_additional_image() {
    let reg = Registry::start();
    let repo = reg.repo(REPO_NAME);
    let wd = workdir();
    small_build(wd.path(), BUILD, &ARCHES2);
    let first = push_build(&repo, &["stable", "41"], wd.path(), &[]);
    let list_digest = first.ok()["manifest_list_digest"]
        .as_str()
        .unwrap()
        .to_string();
    let originals: Vec<Value> = ARCHES2
        .iter()
        .map(|a| read_json(&meta_path(wd.path(), BUILD, a)))
        .collect();
    let from = reg.requests().len();

    let forced = push_build(&repo, &["stable", "41"], wd.path(), &["--force"]);
    let report = forced.ok();
    assert_eq!(forced.outcome(), "pushed", "{report}");
    assert_eq!(report["uploaded_blobs"], 0);
    assert_eq!(report["uploaded_bytes"], 0);
    assert_eq!(report["manifest_list_digest"], list_digest.as_str());
    assert_eq!(strs(&report["recorded"]), ARCHES2.map(s).to_vec());
    let after = since(&reg.requests(), from);
    assert_eq!(blob_upload_posts(&after), 0, "blobs are HEAD-checked");
    assert!(
        after
            .iter()
            .any(|r| r.method == "HEAD" && r.path.contains("/blobs/")),
        "blobs were checked: {:?}",
        describe(&after)
    );
    assert_eq!(
        manifest_puts(&after, REPO_NAME, "stable"),
        1,
        "stable re-put"
    );
    assert_eq!(manifest_puts(&after, REPO_NAME, "41"), 1, "41 re-put");
    assert_eq!(digest_at(&format!("{repo}:stable")), list_digest);
    assert_eq!(digest_at(&format!("{repo}:41")), list_digest);

    for (arch, orig) in ARCHES2.iter().zip(&originals) {
        let meta = read_json(&meta_path(wd.path(), BUILD, arch));
        let entry = meta[KEY].as_object().unwrap();
        let orig_entry = orig[KEY].as_object().unwrap();
        for (k, v) in orig_entry {
            assert_eq!(&entry[k], v, "{arch}: original {k} kept");
        }
        let additional = entry["additional-images"]
            .as_array()
            .unwrap_or_else(|| panic!("{arch}: no additional-images in {}", meta[KEY]));
        assert_eq!(additional.len(), 1, "{arch}");
        let added = &additional[0];
        assert_eq!(added["image"], repo.as_str());
        assert_eq!(added["digest"], orig_entry["digest"]);
        assert_eq!(added["manifest-list-digest"], list_digest.as_str());
        assert_eq!(strs(&added["tags"]), vec![s("stable"), s("41")]);
    }
}

// ---------------------------------------------------------------------------------------
// 8. partial arches

#[test]
fn artifact_on_some_arches_only_is_pushed_for_those_and_required_when_arch_is_named() {
    let reg = Registry::start();
    let repo = reg.repo("kubevirt");
    let wd = workdir();
    small_build(wd.path(), BUILD, &ARCHES2);
    let key = "kubevirt-container";
    let pristine = metas(wd.path(), BUILD, &ARCHES2);
    let digest_file = wd.path().join("digest");
    let digest_file_arg = digest_file.display().to_string();

    // --arch aarch64, which lacks kubevirt: refused, nothing written
    let refused = push_artifact(
        &repo,
        &["stable"],
        wd.path(),
        "kubevirt",
        key,
        &[
            "--arch",
            "aarch64",
            "--write-digest-to-file",
            &digest_file_arg,
        ],
    );
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("aarch64"),
        "error names the arch: {}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("meta.json") || refused.stderr.contains("kubevirt"),
        "error names the meta.json or artifact: {}",
        refused.stderr
    );
    assert!(reg.writes().is_empty(), "nothing written to the registry");
    assert_eq!(metas(wd.path(), BUILD, &ARCHES2), pristine);
    assert!(!digest_file.exists());

    // without --arch: only x86_64 has it
    let x86 = read_archive(&archive_path(wd.path(), BUILD, "x86_64", "kubevirt"));
    let r = push_artifact(&repo, &["stable"], wd.path(), "kubevirt", key, &[]);
    let report = r.ok();
    assert_eq!(r.outcome(), "pushed");
    let list = raw_json(&format!("{repo}:stable"));
    assert_eq!(list_digests(&list), vec![x86.manifest_digest.clone()]);
    assert_eq!(platform(&list["manifests"][0]), expected_platform("x86_64"));
    assert_eq!(
        report["digests"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        vec!["x86_64"]
    );
    assert_eq!(strs(&report["recorded"]), vec![s("x86_64")]);
    let x86_meta = read_json(&meta_path(wd.path(), BUILD, "x86_64"));
    assert_eq!(x86_meta[key]["digest"], x86.manifest_digest.as_str());
    assert_eq!(
        read(&meta_path(wd.path(), BUILD, "aarch64")),
        pristine[1],
        "aarch64 meta.json untouched"
    );
    assert!(
        read_json(&meta_path(wd.path(), BUILD, "aarch64"))
            .get(key)
            .is_none()
    );
}

// ---------------------------------------------------------------------------------------
// 9. --image mode

#[test]
fn image_mode_pushes_archive_and_layout_dir_by_config_arch_without_meta_json() {
    let reg = Registry::start();
    let repo = reg.repo("tool");
    let wd = workdir();
    let archive = wd.path().join("amd64.ociarchive");
    let dir = wd.path().join("arm64-layout");
    let amd = write_oci_archive(
        &archive,
        &SampleImage {
            oci_arch: s("amd64"),
            variant: None,
            layers: 2,
            layer_size: 2048,
            seed: 1,
        },
    )
    .unwrap();
    let arm = write_oci_layout_dir(
        &dir,
        &SampleImage {
            oci_arch: s("arm64"),
            variant: Some(s("v8")),
            layers: 2,
            layer_size: 2048,
            seed: 2,
        },
    )
    .unwrap();
    let arm_layout = read_layout_dir(&dir);
    assert_eq!(arm_layout.manifest_digest, arm.manifest_digest.as_str());
    let mut files_before = Vec::new();
    all_files(wd.path(), &mut files_before);
    let sources = [
        format!("oci-archive:{}", archive.display()),
        format!("oci:{}", dir.display()),
    ];

    let r = push_images(&repo, &["latest", "v1"], &sources);
    let report = r.ok();
    assert_eq!(r.outcome(), "pushed", "{report}");
    let list_bytes = raw(&format!("{repo}:latest"));
    assert_eq!(raw(&format!("{repo}:v1")), list_bytes);
    let list: Value = serde_json::from_slice(&list_bytes).unwrap();
    assert_eq!(list["mediaType"], OCI_INDEX);
    assert_eq!(
        list_digests(&list),
        vec![
            amd.manifest_digest.to_string(),
            arm.manifest_digest.to_string()
        ]
    );
    assert_eq!(platform(&list["manifests"][0]), expected_platform("x86_64"));
    assert_eq!(
        platform(&list["manifests"][1]),
        expected_platform("aarch64")
    );
    assert_eq!(
        raw(&format!("{repo}@{}", arm.manifest_digest)),
        arm_layout.manifest
    );
    assert_eq!(report["manifest_list_digest"], sha256_digest(&list_bytes));
    assert_eq!(report["digests"]["x86_64"], amd.manifest_digest.as_str());
    assert_eq!(report["digests"]["aarch64"], arm.manifest_digest.as_str());
    assert_eq!(strs(&report["recorded"]), Vec::<String>::new());

    let mut files_after = Vec::new();
    all_files(wd.path(), &mut files_after);
    assert_eq!(files_after, files_before, "no file written anywhere");
    assert!(
        files_after
            .iter()
            .all(|f| f.file_name().unwrap() != "meta.json")
    );

    // rerun: up to date, zero writes
    let writes_before = reg.writes();
    let again = push_images(&repo, &["latest", "v1"], &sources);
    assert_eq!(again.ok()["outcome"], "up-to-date", "{}", again.json);
    assert_eq!(again.json["uploaded_blobs"], 0);
    assert_eq!(reg.writes(), writes_before);
}

// ---------------------------------------------------------------------------------------
// 10. --dry-run

#[test]
fn dry_run_on_fresh_build_plans_a_push_and_writes_nothing() {
    let reg = Registry::start();
    let repo = reg.repo(REPO_NAME);
    let wd = workdir();
    small_build(wd.path(), BUILD, &ARCHES2);
    let pristine = metas(wd.path(), BUILD, &ARCHES2);
    let archives: Vec<LayoutImage> = ARCHES2
        .iter()
        .map(|a| read_archive(&archive_path(wd.path(), BUILD, a, "ostree")))
        .collect();
    let digest_file = wd.path().join("digest");
    let digest_file_arg = digest_file.display().to_string();

    let r = push_build(
        &repo,
        &["stable", "41"],
        wd.path(),
        &["--dry-run", "--write-digest-to-file", &digest_file_arg],
    );
    let report = r.ok();
    // what a dry run did not do, it says it would
    assert_eq!(r.outcome(), "would-push", "{report}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["uploaded_blobs"], 0);
    assert_eq!(strs(&report["recorded"]), Vec::<String>::new());
    for (arch, archive) in ARCHES2.iter().zip(&archives) {
        assert_eq!(report["digests"][*arch], archive.manifest_digest.as_str());
    }
    assert!(report["manifest_list_digest"].is_string());
    let plan = &report["plan"];
    assert!(plan.is_object(), "a plan is reported: {report}");
    let blob_count: usize = archives.iter().map(|a| a.blobs.len()).sum();
    let blob_bytes: u64 = archives
        .iter()
        .flat_map(|a| a.blobs.iter().map(|b| b.1))
        .sum();
    assert_eq!(plan["missing_blobs"].as_u64().unwrap() as usize, blob_count);
    assert_eq!(plan["missing_bytes"].as_u64().unwrap(), blob_bytes);
    assert_eq!(plan["manifests"].as_array().unwrap().len(), 2);
    assert_eq!(plan["list"], true);
    assert_eq!(strs(&plan["tags"]), vec![s("stable"), s("41")]);
    assert_eq!(strs(&plan["record"]), ARCHES2.map(s).to_vec());

    let writes = reg.writes();
    assert!(
        writes.is_empty(),
        "no registry write: {:?}",
        describe(&writes)
    );
    assert_eq!(metas(wd.path(), BUILD, &ARCHES2), pristine);
    assert!(!digest_file.exists(), "no digest file");
    assert!(skopeo_inspect_raw(&format!("{repo}:stable"), None).is_err());
}

/// `push_build` without `--json`: the human summary.
fn push_build_human(repo: &str, tags: &[&str], wd: &Path, extra: &[&str]) -> Run {
    let mut more = vec![
        s("--artifact"),
        s("ostree"),
        s("--metajsonname"),
        s(KEY),
        s("--workdir"),
        wd.display().to_string(),
    ];
    more.extend(extra.iter().map(|e| s(e)));
    let args: Vec<String> = base_args(repo, tags, &more)
        .into_iter()
        .filter(|a| a != "--json")
        .collect();
    run(&args)
}

#[test]
fn dry_run_human_summary_says_what_would_be_done_never_what_was() {
    let reg = Registry::start();
    let repo = reg.repo(REPO_NAME);
    let wd = workdir();
    small_build(wd.path(), BUILD, &ARCHES2);
    let pristine = metas(wd.path(), BUILD, &ARCHES2);
    let first_line = |r: &Run| {
        assert_eq!(r.code, 0, "{r:?}");
        r.stdout.lines().next().unwrap_or_default().to_string()
    };
    let no_past_tense = |r: &Run| {
        for done in [": pushed", "recorded:", "uploaded ", "meta.json written"] {
            assert!(!r.stdout.contains(done), "a dry run says {done:?}: {r:?}");
        }
    };

    let dry = push_build_human(&repo, &["stable"], wd.path(), &["--dry-run"]);
    assert!(
        first_line(&dry).ends_with(": dry run: would push"),
        "{dry:?}"
    );
    assert!(dry.stdout.contains("  plan: "), "{dry:?}");
    // sizes for a person: "(12.3 KiB)", not a byte count
    let plan = dry
        .stdout
        .lines()
        .find(|l| l.starts_with("  plan: "))
        .unwrap();
    assert!(plan.contains("iB), ") && !plan.contains("bytes"), "{plan}");
    no_past_tense(&dry);
    assert!(reg.writes().is_empty(), "{:?}", describe(&reg.writes()));

    let real = push_build_human(&repo, &["stable"], wd.path(), &[]);
    assert!(first_line(&real).ends_with(": pushed"), "{real:?}");
    let uploaded = real
        .stdout
        .lines()
        .find(|l| l.starts_with("  uploaded "))
        .unwrap();
    assert!(
        uploaded.contains("iB; tags set") && !uploaded.contains("bytes"),
        "{uploaded}"
    );

    let dry = push_build_human(&repo, &["stable"], wd.path(), &["--dry-run"]);
    assert!(
        first_line(&dry).ends_with(": up to date: nothing to do"),
        "{dry:?}"
    );
    no_past_tense(&dry);

    for (arch, bytes) in ARCHES2.iter().zip(&pristine) {
        fs::write(meta_path(wd.path(), BUILD, arch), bytes).unwrap();
    }
    let dry = push_build_human(&repo, &["stable"], wd.path(), &["--dry-run"]);
    assert!(
        first_line(&dry).ends_with(": dry run: would record meta.json only"),
        "{dry:?}"
    );
    no_past_tense(&dry);
    assert_eq!(metas(wd.path(), BUILD, &ARCHES2), pristine);
}

// ---------------------------------------------------------------------------------------
// 11. a newer build to the same tag

#[test]
fn newer_build_pushed_to_same_tag_moves_it_and_leaves_old_build_meta_json_alone() {
    let reg = Registry::start();
    let repo = reg.repo(REPO_NAME);
    let wd = workdir();
    let old = "41.20261127.1.0";
    let new = "41.20261128.1.0";
    small_build(wd.path(), old, &ARCHES2);
    let first = push_build(&repo, &["stable"], wd.path(), &[]);
    let old_list = first.ok()["manifest_list_digest"]
        .as_str()
        .unwrap()
        .to_string();
    let old_metas = metas(wd.path(), old, &ARCHES2);

    small_build(wd.path(), new, &ARCHES2); // now `latest`
    let new_archives: Vec<LayoutImage> = ARCHES2
        .iter()
        .map(|a| read_archive(&archive_path(wd.path(), new, a, "ostree")))
        .collect();
    let second = push_build(&repo, &["stable"], wd.path(), &[]);
    let report = second.ok();
    assert_eq!(second.outcome(), "pushed", "{report}");
    let new_list = report["manifest_list_digest"].as_str().unwrap().to_string();
    assert_ne!(new_list, old_list);
    assert_eq!(digest_at(&format!("{repo}:stable")), new_list, "tag moved");
    let list = raw_json(&format!("{repo}:stable"));
    assert_eq!(
        list_digests(&list),
        new_archives
            .iter()
            .map(|a| a.manifest_digest.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        metas(wd.path(), old, &ARCHES2),
        old_metas,
        "old build untouched"
    );
    for (arch, archive) in ARCHES2.iter().zip(&new_archives) {
        let meta = read_json(&meta_path(wd.path(), new, arch));
        assert_eq!(meta[KEY]["digest"], archive.manifest_digest.as_str());
        assert_eq!(meta[KEY]["manifest-list-digest"], new_list.as_str());
    }
}

// ---------------------------------------------------------------------------------------
// 12. shared blobs

#[test]
fn second_image_sharing_layers_uploads_only_the_blobs_the_repo_lacks() {
    let reg = Registry::start();
    let repo = reg.repo("shared");
    let wd = workdir();
    let image = |layers| SampleImage {
        oci_arch: s("amd64"),
        variant: None,
        layers,
        layer_size: 2048,
        seed: 7,
    };
    let a_path = wd.path().join("a.ociarchive");
    let b_path = wd.path().join("b.ociarchive");
    let a = write_oci_archive(&a_path, &image(2)).unwrap();
    let b = write_oci_archive(&b_path, &image(3)).unwrap();
    assert_eq!(
        a.layer_digests[..],
        b.layer_digests[..2],
        "two shared layers"
    );
    assert_ne!(a.config_digest, b.config_digest);
    let b_layout = read_archive(&b_path);

    let first = push_images(
        &repo,
        &["a"],
        &[format!("oci-archive:{}", a_path.display())],
    );
    assert_eq!(first.ok()["uploaded_blobs"], 3, "2 layers + config");
    let from = reg.requests().len();

    let second = push_images(
        &repo,
        &["b"],
        &[format!("oci-archive:{}", b_path.display())],
    );
    let report = second.ok();
    assert_eq!(second.outcome(), "pushed");
    assert_eq!(report["uploaded_blobs"], 2, "the new layer and the config");
    let missing: HashMap<&str, u64> = b_layout
        .blobs
        .iter()
        .filter(|(d, _)| *d == b.config_digest.as_str() || *d == b.layer_digests[2].as_str())
        .map(|(d, size)| (d.as_str(), *size))
        .collect();
    assert_eq!(missing.len(), 2);
    assert_eq!(
        report["uploaded_bytes"].as_u64().unwrap(),
        missing.values().sum::<u64>()
    );
    let after = since(&reg.requests(), from);
    assert_eq!(blob_upload_posts(&after), 2, "{:?}", describe(&after));
    let list = raw_json(&format!("{repo}:b"));
    assert_eq!(list_digests(&list), vec![b.manifest_digest.to_string()]);
    let m = raw_json(&format!("{repo}@{}", b.manifest_digest));
    assert_eq!(m["layers"].as_array().unwrap().len(), 3);
    let list_a = raw_json(&format!("{repo}:a"));
    assert_eq!(list_digests(&list_a), vec![a.manifest_digest.to_string()]);
}

// ---------------------------------------------------------------------------------------
// the format is part of the desired state

#[test]
fn switching_between_oci_and_v2s2_publishes_the_other_format_then_is_a_noop() {
    let reg = Registry::start();
    let repo = reg.repo(REPO_NAME);
    let wd = workdir();
    small_build(wd.path(), BUILD, &ARCHES3);
    let oci = push_build(&repo, &["stable", "41"], wd.path(), &[]);
    assert_eq!(oci.ok()["outcome"], "pushed");
    assert_eq!(raw_json(&format!("{repo}:stable"))["mediaType"], OCI_INDEX);

    // The same build with --v2s2: the tags serve an OCI index, which is not
    // what this run publishes.
    let docker = push_build(&repo, &["stable", "41"], wd.path(), &["--v2s2"]);
    let report = docker.ok();
    assert_eq!(docker.outcome(), "pushed", "{report}");
    for tag in ["stable", "41"] {
        let list = raw_json(&format!("{repo}:{tag}"));
        assert_eq!(list["mediaType"], DOCKER_LIST, "{tag}");
        assert_eq!(
            digest_at(&format!("{repo}:{tag}")),
            report["manifest_list_digest"].as_str().unwrap()
        );
    }
    // recorded as a new push, after the OCI one
    for arch in ARCHES3 {
        let meta = read_json(&meta_path(wd.path(), BUILD, arch));
        let newest = latest_entry(&meta, "base-oscontainer");
        assert_eq!(
            newest["manifest-list-digest"],
            report["manifest_list_digest"]
        );
        assert_eq!(
            meta["base-oscontainer"]["manifest-list-digest"], oci.json["manifest_list_digest"],
            "the OCI push stays recorded"
        );
    }

    // A second identical run writes nothing.
    let metas_before = metas(wd.path(), BUILD, &ARCHES3);
    let writes_before = reg.writes();
    let again = push_build(&repo, &["stable", "41"], wd.path(), &["--v2s2"]);
    assert_eq!(again.outcome(), "up-to-date", "{:?}", again.json);
    assert_eq!(reg.writes(), writes_before, "no registry write at all");
    assert_eq!(metas(wd.path(), BUILD, &ARCHES3), metas_before);

    // And back to OCI: the tags serve the Docker list, so the index goes back.
    let back = push_build(&repo, &["stable", "41"], wd.path(), &[]);
    assert_eq!(back.outcome(), "pushed", "{:?}", back.json);
    assert_eq!(raw_json(&format!("{repo}:stable"))["mediaType"], OCI_INDEX);
    let writes_before = reg.writes();
    let again = push_build(&repo, &["stable", "41"], wd.path(), &[]);
    assert_eq!(again.ok()["outcome"], "up-to-date");
    assert_eq!(reg.writes(), writes_before, "no registry write at all");
}

// ---------------------------------------------------------------------------------------
// entries cosa wrote before `manifest-list-digest` existed

#[test]
fn entries_without_a_list_digest_are_up_to_date_with_is_desired_tags_and_a_digest_file() {
    let reg = Registry::start();
    let repo = reg.repo(REPO_NAME);
    let wd = workdir();
    small_build(wd.path(), BUILD, &ARCHES3);
    let first = push_build(&repo, &["stable", "41"], wd.path(), &[]);
    let list_digest = first.ok()["manifest_list_digest"].clone();
    // What an older cosa recorded: image, digest and tags, no list digest.
    for arch in ARCHES3 {
        let path = meta_path(wd.path(), BUILD, arch);
        let mut meta = read_json(&path);
        meta["base-oscontainer"]
            .as_object_mut()
            .unwrap()
            .remove("manifest-list-digest");
        fs::write(&path, pretty4(&meta)).unwrap();
    }
    let metas_before = metas(wd.path(), BUILD, &ARCHES3);
    let writes_before = reg.writes();
    let digest_file = wd.path().join("digest");
    let digest_arg = digest_file.display().to_string();

    let again = push_build(
        &repo,
        &["stable", "41"],
        wd.path(),
        &["--write-digest-to-file", &digest_arg],
    );
    let report = again.ok();
    assert_eq!(again.outcome(), "up-to-date", "{report}");
    assert_eq!(report["manifest_list_digest"], list_digest);
    assert_eq!(reg.writes(), writes_before, "no registry write at all");
    assert_eq!(metas(wd.path(), BUILD, &ARCHES3), metas_before);
    assert_eq!(
        fs::read_to_string(&digest_file).unwrap(),
        list_digest.as_str().unwrap()
    );

    // The facts a policy gets say that every tag serves the desired list.
    let facts_file = wd.path().join("facts.json");
    let facts = run(&[
        s("policy"),
        s("facts"),
        s("--repo"),
        s(&repo),
        s("--tag"),
        s("stable"),
        s("--tag"),
        s("41"),
        s("--artifact"),
        s("ostree"),
        s("--metajsonname"),
        s("base-oscontainer"),
        s("--workdir"),
        wd.path().display().to_string(),
        s("--tls-verify=false"),
        s("--out"),
        facts_file.display().to_string(),
    ]);
    assert_eq!(facts.code, 0, "{}", facts.context());
    let case = read_json(&facts_file);
    let facts = &case["facts"];
    assert_eq!(facts["verdict"], "up-to-date", "{case}");
    assert_eq!(facts["desired-list-digest"], list_digest, "{case}");
    for tag in facts["tags"].as_array().unwrap() {
        assert_eq!(tag["is-desired"], true, "{case}");
    }
}

// ---------------------------------------------------------------------------------------
// living beside cosa: a list podman pushed is adopted

/// `podman manifest create/add/push --all` as cosa runs it, to every tag, with
/// fresh vfs storage under `root`.
fn podman_push(root: &Path, repo: &str, tags: &[&str], archives: &[PathBuf]) {
    let podman = |args: &[String]| {
        let out = std::process::Command::new("podman")
            .args(["--storage-driver", "vfs", "--root"])
            .arg(root.join("root"))
            .arg("--runroot")
            .arg(root.join("run"))
            .args(args)
            .output()
            .expect("run podman");
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let list = s("cosa-list");
    podman(&[s("manifest"), s("create"), list.clone()]);
    for a in archives {
        podman(&[
            s("manifest"),
            s("add"),
            list.clone(),
            format!("oci-archive:{}", a.display()),
        ]);
    }
    for tag in tags {
        podman(&[
            s("manifest"),
            s("push"),
            s("--all"),
            s("--tls-verify=false"),
            s("--quiet"),
            list.clone(),
            format!("docker://{repo}:{tag}"),
        ]);
    }
}

#[test]
fn a_list_podman_pushed_for_the_same_images_is_recorded_with_zero_writes() {
    let reg = Registry::start();
    let repo = reg.repo(REPO_NAME);
    let wd = workdir();
    small_build(wd.path(), BUILD, &ARCHES3);
    let archives: Vec<PathBuf> = ARCHES3
        .iter()
        .map(|a| archive_path(wd.path(), BUILD, a, "ostree"))
        .collect();
    // cosa pushed, then the job died before meta.json was written.
    podman_push(
        &wd.path().join("podman"),
        &repo,
        &["stable", "41"],
        &archives,
    );
    let podman_list = digest_at(&format!("{repo}:stable"));
    assert_eq!(digest_at(&format!("{repo}:41")), podman_list);
    let writes_before = reg.writes();

    let r = push_build(&repo, &["stable", "41"], wd.path(), &[]);
    let report = r.ok();
    assert_eq!(r.outcome(), "recorded", "{report}");
    assert_eq!(report["manifest_list_digest"], podman_list.as_str());
    assert_eq!(
        describe(&reg.writes()[writes_before.len()..]),
        Vec::<String>::new(),
        "no registry write: every tag keeps podman's list"
    );
    assert_eq!(digest_at(&format!("{repo}:stable")), podman_list);
    let podman_index = raw_json(&format!("{repo}:stable"));
    for arch in ARCHES3 {
        let meta = read_json(&meta_path(wd.path(), BUILD, arch));
        let e = &meta["base-oscontainer"];
        assert_eq!(e["manifest-list-digest"], podman_list.as_str(), "{arch}");
        assert!(
            list_digests(&podman_index).contains(&e["digest"].as_str().unwrap().to_string()),
            "{arch}: its digest is in the list"
        );
    }

    // And the rerun is a no-op.
    let metas_before = metas(wd.path(), BUILD, &ARCHES3);
    let writes_before = reg.writes();
    let again = push_build(&repo, &["stable", "41"], wd.path(), &[]);
    assert_eq!(again.ok()["outcome"], "up-to-date");
    assert_eq!(reg.writes(), writes_before);
    assert_eq!(metas(wd.path(), BUILD, &ARCHES3), metas_before);

    // Only --force replaces it with pushgate's own list.
    let forced = push_build(&repo, &["stable", "41"], wd.path(), &["--force"]);
    assert_eq!(forced.ok()["outcome"], "pushed");
    assert_ne!(digest_at(&format!("{repo}:stable")), podman_list);
}
