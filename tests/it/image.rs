//! pushgate's own image, published by pushgate: the repository's Containerfile
//! built with podman (FROM scratch, vfs storage in a temp root, no network),
//! saved as an OCI archive, pushed with `pushgate push --image oci-archive:`
//! as a multi-arch list to a local registry, checked and pulled back with
//! skopeo, and pushed again as a no-op.
//!
//! The image packages the debug binary at hand, not a static release build
//! (scripts/build-release.sh is too slow for CI): the round trip is the point,
//! not running it. A machine where podman cannot build fails this test with
//! podman's own words, never skips it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support;
use crate::support::run::Run;
use crate::support::{Registry, pushgate, skopeo, skopeo_inspect_raw, skopeo_pull_back};
use serde_json::Value;

/// The shipped policies, as the Containerfile's context holds them.
const POLICIES: [&str; 4] = ["default", "kubevirt", "release-tags", "signed-sources"];
/// The CA roots the image carries (Debian's ca-certificates).
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// `podman` with throwaway vfs storage under `root`: no daemon, no overlay
/// mounts, nothing of the machine's own storage touched.
fn podman(root: &Path) -> Command {
    let mut cmd = Command::new("podman");
    cmd.arg("--storage-driver")
        .arg("vfs")
        .arg("--root")
        .arg(root.join("storage"))
        .arg("--runroot")
        .arg(root.join("run"))
        .env("TMPDIR", root)
        .stdin(Stdio::null());
    cmd
}

/// Runs `cmd`, failing the test with its words if it fails or cannot start.
fn must(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "{what}: cannot run {:?} ({e}); scripts/setup.sh installs podman and skopeo",
            cmd.get_program()
        )
    });
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The build context scripts/build-release.sh would leave in dist/x86_64/,
/// with the binary at hand: debug info stripped when `strip` is there (it is
/// most of a debug binary's size, and every copy of it is written four times
/// over by the round trip), as is otherwise.
fn context(dir: &Path) -> PathBuf {
    let ctx = dir.join("context");
    fs::create_dir_all(ctx.join("policies")).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_pushgate"));
    let stripped = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(ctx.join("pushgate"))
        .arg(bin)
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        fs::copy(bin, ctx.join("pushgate")).unwrap();
    }
    for name in POLICIES {
        let module = support::policy_module(name);
        fs::copy(
            &module,
            ctx.join("policies").join(module.file_name().unwrap()),
        )
        .unwrap();
    }
    fs::copy(SYSTEM_ROOTS, ctx.join("ca-certificates.crt")).unwrap_or_else(|e| {
        panic!("{SYSTEM_ROOTS}: {e} (Debian's ca-certificates package provides it)")
    });
    ctx
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("a JSON manifest")
}

#[test]
fn pushgates_image_is_built_published_by_pushgate_and_pulled_back() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path());
    let containerfile = Path::new(env!("CARGO_MANIFEST_DIR")).join("Containerfile");

    // Build, and save as an OCI archive: FROM scratch pulls nothing.
    must(Command::new("podman").arg("--version"), "podman --version");
    let archive = dir.path().join("pushgate-x86_64.ociarchive");
    must(
        podman(dir.path())
            .args(["build", "--network", "none", "--platform", "linux/amd64"])
            .args(["--quiet", "--tag", "localhost/pushgate:x86_64", "--file"])
            .arg(&containerfile)
            .arg(&ctx),
        "podman build of the Containerfile",
    );
    must(
        podman(dir.path())
            .args(["save", "--format", "oci-archive", "--output"])
            .arg(&archive)
            .arg("localhost/pushgate:x86_64"),
        "podman save --format oci-archive",
    );

    // Published by pushgate itself, as a list.
    let registry = Registry::start();
    let repo = registry.repo("coreos/pushgate");
    let push = || {
        let mut cmd = pushgate();
        cmd.args([
            "push",
            "--repo",
            &repo,
            "--tag",
            "latest",
            "--tag",
            "0.1.0",
            "--json",
            "--tls-verify=false",
        ])
        .arg(format!("--image=oci-archive:{}", archive.display()));
        Run::of(&mut cmd)
    };
    let run = push();
    assert_eq!(run.ok()["outcome"], "pushed", "{}", run.context());
    let list_digest = run.json["manifest_list_digest"]
        .as_str()
        .unwrap()
        .to_string();

    // The list, as skopeo reads it, names one image: linux/amd64, the one
    // pushgate reported, whose config is the image podman built.
    let raw = skopeo_inspect_raw(&format!("{repo}:latest"), None).unwrap();
    assert_eq!(support::sha256_digest(&raw), list_digest);
    let list = json(&raw);
    let entries = list["manifests"].as_array().expect("a list of manifests");
    assert_eq!(entries.len(), 1, "{list:#}");
    assert_eq!(entries[0]["platform"]["architecture"], "amd64", "{list:#}");
    assert_eq!(entries[0]["platform"]["os"], "linux", "{list:#}");
    let image_digest = entries[0]["digest"].as_str().unwrap();
    assert_eq!(
        run.json["digests"]["x86_64"],
        image_digest,
        "{}",
        run.context()
    );
    let manifest = json(&skopeo_inspect_raw(&format!("{repo}@{image_digest}"), None).unwrap());
    assert_eq!(
        manifest["layers"].as_array().map(Vec::len),
        Some(3),
        "roots, policies, binary: {manifest:#}"
    );
    let config = json(
        &must(
            skopeo()
                .args(["inspect", "--tls-verify=false", "--config", "--raw"])
                .arg(format!("docker://{repo}@{image_digest}")),
            "skopeo inspect --config",
        )
        .into_bytes(),
    );
    assert_eq!(
        config["config"]["Entrypoint"][0], "/usr/bin/pushgate",
        "{config:#}"
    );
    assert_eq!(config["architecture"], "amd64", "{config:#}");

    // Pulled back whole, every blob checked against its digest by skopeo: the
    // copy's manifest is the published one, byte for byte.
    let pulled = dir.path().join("pulled");
    skopeo_pull_back(&format!("{repo}:0.1.0"), &pulled);
    let index = json(&fs::read(pulled.join("index.json")).unwrap());
    assert_eq!(index["manifests"][0]["digest"], image_digest, "{index:#}");

    // Again: nothing to do, nothing written.
    let writes = registry.writes().len();
    let again = push();
    assert_eq!(again.ok()["outcome"], "up-to-date", "{}", again.context());
    assert_eq!(registry.writes().len(), writes, "a no-op writes nothing");
}
