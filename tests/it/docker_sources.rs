//! `--image docker://REF` sources against real registries: images staged with
//! `skopeo copy --preserve-digests`, published byte for byte, their blobs mounted
//! (same registry, seen as `mount=` in the access log with no blob body sent) or
//! streamed from another registry (one with token auth), mixed with an archive,
//! converted by `--v2s2`; reruns that write nothing; sources that are missing or
//! are lists refused before anything is written; a source that cuts, sheds load or
//! ignores Range requests.

use std::path::{Path, PathBuf};

use crate::support;
use crate::support::proxy::{Action, Faults, Proxy, Rule};
use crate::support::run::{Run, list_digests, raw_json, run, s};
use crate::support::token::TokenServer;
use crate::support::{
    Registry, Request, skopeo, skopeo_inspect_raw, skopeo_pull_back, write_authfile,
};
use pushgate_sample::{SampleImage, WrittenImage, write_oci_archive};
use serde_json::Value;

const PASSWORD: &str = "d0cker-s0urce-s3cret";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

fn image(oci_arch: &str, seed: u64) -> SampleImage {
    SampleImage {
        oci_arch: oci_arch.into(),
        variant: None,
        layers: 2,
        layer_size: 4096,
        seed,
    }
}

/// Writes `img` as an archive in `dir` and copies it to `reference` with skopeo,
/// digests preserved, as a build job stages per-arch images.
fn stage(dir: &Path, reference: &str, img: &SampleImage, authfile: Option<&Path>) -> WrittenImage {
    let archive = dir.join(format!("{}-{}.ociarchive", img.oci_arch, img.seed));
    let written = write_oci_archive(&archive, img).expect("write sample archive");
    let mut cmd = skopeo();
    cmd.args([
        "copy",
        "--quiet",
        "--preserve-digests",
        "--dest-tls-verify=false",
    ]);
    if let Some(a) = authfile {
        cmd.arg("--dest-authfile").arg(a);
    }
    let out = cmd
        .arg(format!("oci-archive:{}", archive.display()))
        .arg(format!("docker://{reference}"))
        .output()
        .expect("run skopeo copy");
    assert!(
        out.status.success(),
        "skopeo copy to {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    written
}

/// `pushgate push --repo REPO --tag stable --json --tls-verify=false` + `extra`.
fn push(repo: &str, extra: &[String]) -> Run {
    let mut args = vec![
        s("push"),
        s("--repo"),
        s(repo),
        s("--tag"),
        s("stable"),
        s("--json"),
        s("--tls-verify=false"),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// The report's `sources` entry for `arch`.
fn source<'a>(r: &'a Run, arch: &str) -> &'a Value {
    r.ok()["sources"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["arch"] == arch))
        .unwrap_or_else(|| panic!("no source for {arch}: {}", r.context()))
}

/// (present, uploaded, mounted, copied) of an arch's blobs in the report.
fn blobs(r: &Run, arch: &str) -> (u64, u64, u64, u64) {
    let b = &source(r, arch)["blobs"];
    let n = |k: &str| {
        b[k].as_u64()
            .unwrap_or_else(|| panic!("{k}: {}", r.context()))
    };
    (n("present"), n("uploaded"), n("mounted"), n("copied"))
}

/// The requests served since the first `since` of them.
fn after(registry: &Registry, since: usize) -> Vec<Request> {
    registry.requests().into_iter().skip(since).collect()
}

/// The writes (PUT, POST, PATCH, DELETE) served since the first `since` requests.
fn writes_since(registry: &Registry, since: usize) -> Vec<Request> {
    after(registry, since)
        .into_iter()
        .filter(Request::is_write)
        .collect()
}

fn blob_uploads_to(reqs: &[Request], repo_path: &str) -> Vec<Request> {
    let uploads = format!("/v2/{repo_path}/blobs/uploads/");
    reqs.iter()
        .filter(|r| r.path.starts_with(&uploads) && matches!(r.method.as_str(), "PATCH" | "PUT"))
        .cloned()
        .collect()
}

fn authfile(dir: &Path, registry: &str, user: &str) -> PathBuf {
    let d = dir.join(format!("auth-{user}"));
    std::fs::create_dir_all(&d).unwrap();
    write_authfile(&d, registry, user, PASSWORD)
}

#[test]
fn sources_on_the_same_registry_are_mounted_with_one_token_for_both_repositories() {
    let tokens = TokenServer::builder()
        .user("builder", PASSWORD)
        .grant("builder", "staging*", &["pull", "push"])
        .grant("builder", "release*", &["pull", "push"])
        .start();
    let registry = Registry::start_with_token(&tokens);
    let tmp = tempfile::tempdir().unwrap();
    let auth = authfile(tmp.path(), registry.addr(), "builder");
    let staging = registry.repo("staging");
    let x86 = stage(
        tmp.path(),
        &format!("{staging}:x86_64-0123abc"),
        &image("amd64", 1),
        Some(&auth),
    );
    let arm = stage(
        tmp.path(),
        &format!("{staging}:aarch64-0123abc"),
        &image("arm64", 1),
        Some(&auth),
    );

    let release = registry.repo("release");
    let since = registry.requests().len();
    let tokens_before = tokens.token_requests().len();
    let r = push(
        &release,
        &[
            format!("--image=docker://{staging}:x86_64-0123abc"),
            format!("--image=docker://{staging}@{}", arm.manifest_digest),
            s("--authfile"),
            auth.display().to_string(),
        ],
    );
    assert_eq!(r.outcome(), "pushed", "{}", r.context());
    assert_eq!(blobs(&r, "x86_64"), (0, 0, 3, 0), "{}", r.context());
    assert_eq!(blobs(&r, "aarch64"), (0, 0, 3, 0), "{}", r.context());
    assert_eq!(
        source(&r, "aarch64")["source"],
        format!("docker://{staging}@{}", arm.manifest_digest)
    );
    assert_eq!(r.ok()["uploaded_bytes"], 0, "{}", r.context());

    // every blob mounted from staging, none sent
    let reqs = after(&registry, since);
    let mounts: Vec<&Request> = reqs
        .iter()
        .filter(|r| r.method == "POST" && r.query.contains("mount=") && r.status == 201)
        .collect();
    assert_eq!(mounts.len(), 6, "{reqs:#?}");
    assert!(
        mounts
            .iter()
            .all(|m| m.path == "/v2/release/blobs/uploads/" && m.query.contains("from=staging")),
        "{mounts:#?}"
    );
    assert_eq!(blob_uploads_to(&reqs, "release"), Vec::new());
    // the token that mounted carried pull on the source repository
    let mount_scopes: Vec<String> = tokens.token_requests()[tokens_before..]
        .iter()
        .flat_map(|t| t.scopes.clone())
        .collect();
    assert!(
        mount_scopes.contains(&s("repository:staging:pull")),
        "{mount_scopes:?}"
    );

    // the per-arch manifests are published byte for byte
    let raw = skopeo_inspect_raw(&format!("{release}:stable"), Some(&auth)).unwrap();
    let list: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        list_digests(&list),
        vec![
            x86.manifest_digest.to_string(),
            arm.manifest_digest.to_string()
        ]
    );

    // a rerun writes nothing
    let since = registry.requests().len();
    let again = push(
        &release,
        &[
            format!("--image=docker://{staging}:x86_64-0123abc"),
            format!("--image=docker://{staging}@{}", arm.manifest_digest),
            s("--authfile"),
            auth.display().to_string(),
        ],
    );
    assert_eq!(again.outcome(), "up-to-date", "{}", again.context());
    assert_eq!(blobs(&again, "x86_64"), (3, 0, 0, 0), "{}", again.context());
    let writes = writes_since(&registry, since);
    assert_eq!(writes, Vec::new());
}

#[test]
fn sources_on_another_registry_are_streamed_through_mixed_with_an_archive() {
    // the source needs token auth; the destination is anonymous
    let tokens = TokenServer::builder()
        .user("builder", PASSWORD)
        .user("reader", PASSWORD)
        .grant("builder", "staging*", &["pull", "push"])
        .grant("reader", "staging*", &["pull"])
        .start();
    let source_registry = Registry::start_with_token(&tokens);
    let dest = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let staging = source_registry.repo("staging");
    let builder = authfile(tmp.path(), source_registry.addr(), "builder");
    let x86 = stage(
        tmp.path(),
        &format!("{staging}:x86_64-0123abc"),
        &image("amd64", 2),
        Some(&builder),
    );
    let arm = stage(
        tmp.path(),
        &format!("{staging}:aarch64-0123abc"),
        &image("arm64", 2),
        Some(&builder),
    );
    let ppc_archive = tmp.path().join("ppc64le.ociarchive");
    let ppc = write_oci_archive(&ppc_archive, &image("ppc64le", 2)).unwrap();
    // pushgate reads the source with the reader's credentials, from the same auth file
    // rules as for the destination
    let reader = authfile(tmp.path(), source_registry.addr(), "reader");

    let fcos = dest.repo("fcos");
    let source_since = source_registry.requests().len();
    let args = [
        format!("--image=docker://{staging}:x86_64-0123abc"),
        format!("--image=docker://{staging}@{}", arm.manifest_digest),
        format!("--image=oci-archive:{}", ppc_archive.display()),
        s("--authfile"),
        reader.display().to_string(),
    ];
    let r = push(&fcos, &args);
    assert_eq!(r.outcome(), "pushed", "{}", r.context());
    assert_eq!(blobs(&r, "x86_64"), (0, 0, 0, 3), "{}", r.context());
    assert_eq!(blobs(&r, "aarch64"), (0, 0, 0, 3), "{}", r.context());
    assert_eq!(blobs(&r, "ppc64le"), (0, 3, 0, 0), "{}", r.context());
    assert_eq!(
        source(&r, "ppc64le")["source"],
        format!("oci-archive:{}", ppc_archive.display())
    );
    let list = raw_json(&format!("{fcos}:stable"));
    assert_eq!(
        list_digests(&list),
        vec![
            x86.manifest_digest.to_string(),
            arm.manifest_digest.to_string(),
            ppc.manifest_digest.to_string()
        ]
    );
    // the source was only read
    let source_writes = writes_since(&source_registry, source_since);
    assert_eq!(source_writes, Vec::new());
    // every copied blob is whole at the destination: skopeo pulls the image back
    skopeo_pull_back(
        &format!("{fcos}@{}", x86.manifest_digest),
        &tmp.path().join("back"),
    );

    // a rerun writes nothing at the destination
    let since = dest.requests().len();
    let again = push(&fcos, &args);
    assert_eq!(again.outcome(), "up-to-date", "{}", again.context());
    let writes = writes_since(&dest, since);
    assert_eq!(writes, Vec::new());
}

#[test]
fn v2s2_converts_registry_sources_as_it_converts_archives() {
    let registry = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let staging = registry.repo("coreos-assembler");
    let x86 = stage(
        tmp.path(),
        &format!("{staging}:x86_64-0123abc"),
        &image("amd64", 3),
        None,
    );
    stage(
        tmp.path(),
        &format!("{staging}:aarch64-0123abc"),
        &image("arm64", 3),
        None,
    );
    // build-cosa's line: the staging repository is the destination too
    let r = push(
        &staging,
        &[
            s("--v2s2"),
            s("--image"),
            format!("docker://{staging}:x86_64-0123abc"),
            s("--image"),
            format!("docker://{staging}:aarch64-0123abc"),
        ],
    );
    assert_eq!(r.outcome(), "pushed", "{}", r.context());
    // blobs are already in the repository; only converted manifests and the list go up
    assert_eq!(blobs(&r, "x86_64"), (3, 0, 0, 0), "{}", r.context());
    let list = raw_json(&format!("{staging}:stable"));
    assert_eq!(list["mediaType"], DOCKER_LIST);
    let digests = list_digests(&list);
    assert_ne!(digests[0], x86.manifest_digest.to_string(), "converted");
    let m = raw_json(&format!("{staging}@{}", digests[0]));
    assert_eq!(m["mediaType"], DOCKER_MANIFEST);
    assert_eq!(m["config"]["digest"], x86.config_digest.to_string());
    // the staged image is untouched
    let staged = raw_json(&format!("{staging}:x86_64-0123abc"));
    assert_eq!(staged["mediaType"], OCI_MANIFEST);
}

#[test]
fn a_missing_source_or_a_list_is_refused_by_name_before_anything_is_written() {
    let registry = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let staging = registry.repo("staging");
    let x86 = stage(
        tmp.path(),
        &format!("{staging}:x86_64-0123abc"),
        &image("amd64", 4),
        None,
    );
    let fcos = registry.repo("fcos");
    let absent = format!("sha256:{}", "0".repeat(64));
    for (missing, what) in [
        (format!("{staging}:nope"), "no such image"),
        (format!("{staging}@{absent}"), "no such image"),
        (registry.repo("nowhere") + ":x", "no such image"),
    ] {
        let since = registry.requests().len();
        let r = push(
            &fcos,
            &[
                format!("--image=docker://{staging}:x86_64-0123abc"),
                format!("--image=docker://{missing}"),
            ],
        );
        assert_eq!(r.code, 1, "{}", r.context());
        assert!(
            r.stderr.contains(&format!("docker://{missing}")) && r.stderr.contains(what),
            "{}",
            r.context()
        );
        let writes = writes_since(&registry, since);
        assert_eq!(writes, Vec::new(), "{missing}");
    }

    // a list as a source: publish one first, then name it
    let r = push(
        &staging,
        &[format!("--image=docker://{staging}:x86_64-0123abc")],
    );
    assert_eq!(r.outcome(), "pushed", "{}", r.context());
    let since = registry.requests().len();
    let r = push(&fcos, &[format!("--image=docker://{staging}:stable")]);
    assert_eq!(r.code, 1, "{}", r.context());
    assert!(
        r.stderr.contains(&format!(
            "--image docker://{staging}:stable is a manifest list"
        )) && r.stderr.contains(&x86.manifest_digest.to_string()),
        "{}",
        r.context()
    );
    let writes = writes_since(&registry, since);
    assert_eq!(writes, Vec::new());
}

#[test]
fn a_mount_the_registry_refuses_becomes_a_streamed_copy() {
    // quay-style robot accounts: one identity per repository, from per-repository
    // entries of the auth file; the pusher of `release` may not read `staging`, so
    // the registry refuses the mount
    let tokens = TokenServer::builder()
        .user("stager", PASSWORD)
        .user("releaser", PASSWORD)
        .grant("stager", "staging*", &["pull", "push"])
        .grant("releaser", "release*", &["pull", "push"])
        .start();
    let registry = Registry::start_with_token(&tokens);
    let tmp = tempfile::tempdir().unwrap();
    let stager = authfile(tmp.path(), registry.addr(), "stager");
    let staging = registry.repo("staging");
    stage(
        tmp.path(),
        &format!("{staging}:x86_64-0123abc"),
        &image("amd64", 5),
        Some(&stager),
    );
    let entry = |user: &str| {
        use base64::Engine as _;
        serde_json::json!({
            "auth": base64::engine::general_purpose::STANDARD.encode(format!("{user}:{PASSWORD}"))
        })
    };
    let both = tmp.path().join("robots.json");
    std::fs::write(
        &both,
        serde_json::to_vec(&serde_json::json!({"auths": {
            staging.clone(): entry("stager"),
            registry.repo("release"): entry("releaser"),
        }}))
        .unwrap(),
    )
    .unwrap();

    let release = registry.repo("release");
    let since = registry.requests().len();
    let r = push(
        &release,
        &[
            format!("--image=docker://{staging}:x86_64-0123abc"),
            s("--authfile"),
            both.display().to_string(),
        ],
    );
    assert_eq!(r.outcome(), "pushed", "{}", r.context());
    assert_eq!(blobs(&r, "x86_64"), (0, 0, 0, 3), "{}", r.context());
    let reqs = after(&registry, since);
    assert!(
        reqs.iter()
            .any(|r| r.query.contains("mount=") && matches!(r.status, 202 | 401)),
        "the mount was tried: {reqs:#?}"
    );
    assert_eq!(blob_uploads_to(&reqs, "release").len(), 3, "{reqs:#?}");
}

/// A 3-blob x86_64 image (layers of 300 000 bytes, so a copy in 64 KiB chunks
/// reads each in several ranged GETs) staged in a source registry, and the
/// source's proxy doing `faults` (given the staged layer digests).
fn staged_behind_proxy(
    seed: u64,
    faults: impl FnOnce(&[pushgate::digest::Digest]) -> Faults,
) -> (Registry, tempfile::TempDir, WrittenImage, Proxy) {
    let source_registry = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let img = SampleImage {
        layer_size: 300_000,
        ..image("amd64", seed)
    };
    let staged = stage(
        tmp.path(),
        &format!("{}:x86_64-0123abc", source_registry.repo("staging")),
        &img,
        None,
    );
    let proxy = Proxy::start(source_registry.addr(), faults(&staged.layer_digests));
    (source_registry, tmp, staged, proxy)
}

/// Pushes the staged image, read through `proxy`, to `fcos` in 64 KiB chunks.
fn push_through(proxy: &Proxy, fcos: &str) -> Run {
    let mut cmd = support::pushgate();
    cmd.args(["push", "--repo", fcos, "--tag", "stable", "--json"])
        .args(["--tls-verify=false", "--retry-delay=10ms"])
        .arg(format!(
            "--image=docker://{}:x86_64-0123abc",
            proxy.repo("staging")
        ))
        .env("PUSHGATE_CHUNK_SIZE", "65536");
    Run::of(&mut cmd)
}

#[test]
fn a_copy_survives_a_source_that_cuts_and_sheds_load() {
    // the source registry behind the fault proxy: the first read of one layer is cut
    // midway, the first read of the other is answered 503; the copy goes in chunks
    // (each a ranged read of the source) and resumes
    let (_source, tmp, staged, proxy) = staged_behind_proxy(6, |layers| {
        Faults::none()
            .rule(Rule::nth(
                1,
                "GET",
                layers[0].as_str(),
                Action::CutAnswer { bytes: 50_000 },
            ))
            .rule(Rule::nth(1, "GET", layers[1].as_str(), Action::status(503)))
    });
    let dest = Registry::start();
    let fcos = dest.repo("fcos");
    let r = push_through(&proxy, &fcos);
    assert_eq!(r.outcome(), "pushed", "{}", r.context());
    assert_eq!(blobs(&r, "x86_64"), (0, 0, 0, 3), "{}", r.context());
    assert!(r.ok()["retries"].as_u64().unwrap() >= 2, "{}", r.context());
    let faults: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|e| e.fault.is_some())
        .collect();
    assert_eq!(faults.len(), 2, "{faults:#?}");
    // what landed is whole: skopeo pulls the image back, checking every digest
    skopeo_pull_back(
        &format!("{fcos}@{}", staged.manifest_digest),
        &tmp.path().join("back"),
    );
}

#[test]
fn a_source_that_ignores_range_requests_still_gives_each_chunk_its_own_bytes() {
    // the source registry behind a proxy that drops every Range header: each
    // chunk's ranged read is answered 200 with the whole blob, and the copy must
    // cut the chunk out of it itself
    let (_source, tmp, staged, proxy) = staged_behind_proxy(7, |_| {
        Faults::none().rule(Rule::every(
            "GET",
            "/blobs/sha256:",
            Action::DropHeader("range".into()),
        ))
    });
    let dest = Registry::start();
    let fcos = dest.repo("fcos");
    let r = push_through(&proxy, &fcos);
    assert_eq!(r.outcome(), "pushed", "{}", r.context());
    assert_eq!(blobs(&r, "x86_64"), (0, 0, 0, 3), "{}", r.context());
    // every layer was read in several chunks, and the source answered each of
    // those reads with the whole blob
    for layer in &staged.layer_digests {
        let reads: Vec<_> = proxy
            .log()
            .into_iter()
            .filter(|e| e.method == "GET" && e.target.ends_with(layer.as_str()))
            .collect();
        assert!(reads.len() >= 300_000 / 65536, "{layer}: {reads:#?}");
        assert!(
            reads.iter().all(|e| e.upstream_status == Some(200)),
            "{reads:#?}"
        );
    }
    // what landed is whole: the destination took every blob under its digest,
    // and skopeo pulls the image back, checking each one
    skopeo_pull_back(
        &format!("{fcos}@{}", staged.manifest_digest),
        &tmp.path().join("back"),
    );
}
