//! Signed pushes against the real registry: signatures in cosign's layout,
//! checked by an implementation that is not pushgate's (the Sigstore project's
//! crate, with keys made as cosign makes them), a decision attestation as a
//! referrer of the list, `pushgate verify`, and idempotence: a rerun writes
//! nothing, a second tag or a second key adds without dropping, signing newly
//! asked for signs and writes nothing else, a kill between the signatures and
//! the tag converges.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use sigstore::crypto::{CosignVerificationKey, Signature};

use crate::sign_interop::{CosignKeys, cosign_keys, sigstore_verifier};
use crate::support::proxy::{Action, Faults, Proxy, Rule};
use crate::support::run::{Run, digest_at};
use crate::support::{Registry, pushgate, skopeo_inspect_raw};
use pushgate_sample::{SampleBuild, write_build};

const BUILD: &str = "41.20261206.2.0";

pub(crate) fn workdir() -> tempfile::TempDir {
    let wd = tempfile::tempdir().unwrap();
    let small = SampleBuild::small(BUILD, &[]);
    let b = SampleBuild::ostree(
        BUILD,
        &["x86_64", "aarch64"],
        small.layers,
        small.layer_size,
    );
    write_build(wd.path(), &b).unwrap();
    wd
}

pub(crate) fn push(repo: &str, wd: &Path, tags: &[&str], keys: Option<&CosignKeys>) -> Command {
    let mut cmd = pushgate();
    cmd.args(["push", "--repo", repo]);
    for t in tags {
        cmd.args(["--tag", t]);
    }
    cmd.args(["--artifact", "ostree", "--metajsonname", "base-oscontainer"])
        .args(["--tls-verify=false", "--json", "--retry-delay", "20ms"])
        .arg("--workdir")
        .arg(wd);
    if let Some(k) = keys {
        cmd.arg("--sign-by-sigstore-private-key")
            .arg(&k.key)
            .arg("--sign-passphrase-file")
            .arg(&k.passphrase_file);
    }
    cmd
}

pub(crate) fn verify(repo: &str, tags: &[&str], public: &Path, extra: &[&str]) -> Run {
    let mut cmd = pushgate();
    cmd.args(["verify", "--repo", repo, "--tls-verify=false", "--json"]);
    for t in tags {
        cmd.args(["--tag", t]);
    }
    cmd.arg("--key").arg(public).args(extra);
    Run::of(&mut cmd)
}

/// A blob of `repo` on `registry`, read with curl (plain HTTP).
pub(crate) fn blob(registry: &Registry, repo: &str, digest: &str) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-sf", &registry.url(&format!("/v2/{repo}/blobs/{digest}"))])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "GET blob {digest}");
    out.stdout
}

/// The references the `.sig` manifest of `digest` holds a signature for that
/// the Sigstore crate verifies with `verifier`, read with skopeo and curl.
pub(crate) fn sigstore_verified(
    registry: &Registry,
    digest: &str,
    verifier: &CosignVerificationKey,
) -> Vec<String> {
    let hex = digest.trim_start_matches("sha256:");
    let Ok(raw) = skopeo_inspect_raw(&format!("{}:sha256-{hex}.sig", registry.repo("fcos")), None)
    else {
        return Vec::new();
    };
    let manifest: Value = serde_json::from_slice(&raw).unwrap();
    let mut refs = Vec::new();
    for layer in manifest["layers"].as_array().unwrap() {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.dev.cosign.simplesigning.v1+json"
        );
        let payload = blob(registry, "fcos", layer["digest"].as_str().unwrap());
        let sig = base64::engine::general_purpose::STANDARD
            .decode(
                layer["annotations"]["dev.cosignproject.cosign/signature"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap();
        if verifier
            .verify_signature(Signature::Raw(&sig), &payload)
            .is_ok()
        {
            let p: Value = serde_json::from_slice(&payload).unwrap();
            assert_eq!(p["critical"]["type"], "cosign container image signature");
            assert_eq!(p["critical"]["image"]["docker-manifest-digest"], digest);
            refs.push(
                p["critical"]["identity"]["docker-reference"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
    }
    refs
}

/// The list and per-arch digests of a push report.
pub(crate) fn digests(run: &Run) -> Vec<String> {
    let report = run.ok();
    let mut all = vec![report["manifest_list_digest"].as_str().unwrap().to_string()];
    all.extend(
        report["digests"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_str().unwrap().to_string()),
    );
    all
}

#[test]
fn a_signed_push_verifies_with_sigstore_and_pushgate_and_a_rerun_writes_nothing() {
    let registry = Registry::start();
    let keys = cosign_keys();
    let wd = workdir();
    let repo = registry.repo("fcos");
    let run = Run::of(&mut push(&repo, wd.path(), &["stable"], Some(&keys)));
    assert_eq!(run.outcome(), "pushed", "{}", run.context());
    assert_eq!(
        run.ok()["signatures"]["added"],
        3,
        "the list and two arches"
    );
    let attestation = run.ok()["attestation"].as_str().unwrap().to_string();
    let verifier = sigstore_verifier(&keys.public);
    for d in digests(&run) {
        assert_eq!(
            sigstore_verified(&registry, &d, &verifier),
            [format!("{repo}:stable")],
            "{d}"
        );
    }
    let v = verify(&repo, &["stable"], &keys.public, &[]);
    assert_eq!(v.code, 0, "{}", v.context());
    let att = &v.json["tags"][0]["attestation"];
    assert_eq!(att["digest"], attestation.as_str());
    assert_eq!(att["decided_by"], "host");
    assert_eq!(att["decision"], "push");

    // A rerun, and a no-op, write nothing.
    let before = registry.writes().len();
    let again = Run::of(&mut push(&repo, wd.path(), &["stable"], Some(&keys)));
    assert_eq!(again.outcome(), "up-to-date", "{}", again.context());
    assert_eq!(again.ok()["signatures"]["added"], 0);
    assert_eq!(registry.writes().len(), before, "{:?}", registry.writes());
}

#[test]
fn signing_newly_asked_for_signs_and_writes_nothing_else() {
    let registry = Registry::start();
    let keys = cosign_keys();
    let wd = workdir();
    let repo = registry.repo("fcos");
    let plain = Run::of(&mut push(&repo, wd.path(), &["stable"], None));
    assert_eq!(plain.outcome(), "pushed", "{}", plain.context());
    let meta = std::fs::read(wd.path().join(format!("builds/{BUILD}/x86_64/meta.json"))).unwrap();
    let before = registry.writes().len();

    // A dry run says what it would sign, and writes nothing.
    let mut dry = push(&repo, wd.path(), &["stable"], Some(&keys));
    let dry = Run::of(dry.arg("--dry-run"));
    assert_eq!(dry.outcome(), "would-push", "{}", dry.context());
    assert_eq!(dry.ok()["signatures"]["added"], 3);
    assert_eq!(registry.writes().len(), before);

    let signed = Run::of(&mut push(&repo, wd.path(), &["stable"], Some(&keys)));
    assert_eq!(signed.outcome(), "pushed", "{}", signed.context());
    assert!(
        signed.reason().contains("signatures are missing"),
        "{}",
        signed.reason()
    );
    assert_eq!(signed.ok()["uploaded_blobs"], 0);
    let new: Vec<_> = registry.writes().into_iter().skip(before).collect();
    assert!(
        !new.iter().any(|w| w.path.ends_with("/manifests/stable")),
        "no tag moved: {new:?}"
    );
    assert_eq!(
        std::fs::read(wd.path().join(format!("builds/{BUILD}/x86_64/meta.json"))).unwrap(),
        meta,
        "meta.json untouched"
    );
    let v = verify(&repo, &["stable"], &keys.public, &[]);
    assert_eq!(v.code, 0, "{}", v.context());
}

#[test]
fn a_second_tag_and_a_second_key_add_signatures_and_drop_none() {
    let registry = Registry::start();
    let (a, b) = (cosign_keys(), cosign_keys());
    let wd = workdir();
    let repo = registry.repo("fcos");
    let first = Run::of(&mut push(&repo, wd.path(), &["stable"], Some(&a)));
    assert_eq!(first.outcome(), "pushed", "{}", first.context());
    let by_b = Run::of(&mut push(&repo, wd.path(), &["stable"], Some(&b)));
    assert_eq!(by_b.ok()["signatures"]["added"], 3, "{}", by_b.context());
    let two = Run::of(&mut push(&repo, wd.path(), &["stable", "next"], Some(&a)));
    assert_eq!(two.ok()["signatures"]["added"], 3, "{}", two.context());
    assert_eq!(two.ok()["signatures"]["present"], 3);
    let (va, vb) = (sigstore_verifier(&a.public), sigstore_verifier(&b.public));
    for d in digests(&first) {
        let mut by_a = sigstore_verified(&registry, &d, &va);
        by_a.sort();
        assert_eq!(by_a, [format!("{repo}:next"), format!("{repo}:stable")]);
        assert_eq!(
            sigstore_verified(&registry, &d, &vb),
            [format!("{repo}:stable")]
        );
    }
    assert_eq!(verify(&repo, &["stable", "next"], &a.public, &[]).code, 0);
    let not_b = verify(&repo, &["next"], &b.public, &[]);
    assert_eq!(not_b.code, 1, "{}", not_b.context());
    let problems = not_b.json["problems"].to_string();
    assert!(
        problems.contains(":next") && problems.contains("no valid signature"),
        "{problems}"
    );
}

#[test]
fn a_wrong_passphrase_names_the_key_file_and_writes_nothing() {
    let registry = Registry::start();
    let keys = cosign_keys();
    std::fs::write(&keys.passphrase_file, "not it\n").unwrap();
    let wd = workdir();
    let run = Run::of(&mut push(
        &registry.repo("fcos"),
        wd.path(),
        &["stable"],
        Some(&keys),
    ));
    assert_eq!(run.code, 1, "{}", run.context());
    let error = run.json["error"].as_str().unwrap_or_default();
    assert!(error.contains(&keys.key.display().to_string()), "{error}");
    assert!(registry.writes().is_empty());
}

#[test]
fn a_tampered_signature_fails_verify_and_an_unsigned_image_says_so() {
    let registry = Registry::start();
    let keys = cosign_keys();
    let wd = workdir();
    let repo = registry.repo("fcos");
    let unsigned = Run::of(&mut push(&repo, wd.path(), &["stable"], None));
    let v = verify(&repo, &["stable"], &keys.public, &[]);
    assert_eq!(v.code, 1);
    let problems = v.json["problems"].to_string();
    assert!(
        problems.contains("does not exist") && problems.contains("no valid decision attestation"),
        "{problems}"
    );
    let signed = Run::of(&mut push(&repo, wd.path(), &["stable"], Some(&keys)));
    assert_eq!(signed.outcome(), "pushed", "{}", signed.context());
    // Another signature, valid base64, of other bytes, in place of the list's.
    let list = unsigned.ok()["manifest_list_digest"]
        .as_str()
        .unwrap()
        .to_string();
    let tag = format!("sha256-{}.sig", list.trim_start_matches("sha256:"));
    let raw = skopeo_inspect_raw(&format!("{repo}:{tag}"), None).unwrap();
    let mut m: Value = serde_json::from_slice(&raw).unwrap();
    let forged = base64::engine::general_purpose::STANDARD.encode([0x30, 0x06, 2, 1, 1, 2, 1, 1]);
    m["layers"][0]["annotations"]["dev.cosignproject.cosign/signature"] = forged.into();
    let file = wd.path().join("forged.json");
    std::fs::write(&file, serde_json::to_vec(&m).unwrap()).unwrap();
    let put = Command::new("curl")
        .args(["-sf", "-X", "PUT", "-H"])
        .arg("Content-Type: application/vnd.oci.image.manifest.v1+json")
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(registry.url(&format!("/v2/fcos/manifests/{tag}")))
        .status()
        .unwrap();
    assert!(put.success());
    let v = verify(&repo, &["stable"], &keys.public, &[]);
    assert_eq!(v.code, 1, "{}", v.context());
    let problems = v.json["problems"].to_string();
    assert!(
        problems.contains("list manifest") && problems.contains("does not verify"),
        "{problems}"
    );
}

#[test]
fn verify_can_require_the_policy_module_that_decided() {
    let registry = Registry::start();
    let keys = cosign_keys();
    let wd = workdir();
    let repo = registry.repo("fcos");
    let run = Run::of(&mut push(&repo, wd.path(), &["stable"], Some(&keys)));
    assert_eq!(run.outcome(), "pushed", "{}", run.context());
    let v = verify(
        &repo,
        &["stable"],
        &keys.public,
        &["--require-policy-sha256", &"ab".repeat(32)],
    );
    assert_eq!(v.code, 1, "{}", v.context());
    assert!(
        v.json["problems"]
            .to_string()
            .contains("the host (no policy module)"),
        "{}",
        v.context()
    );
}

#[test]
fn the_referrers_tag_keeps_a_foreign_referrer() {
    use pushgate::registry::{Options, RepoName, Repository};
    let registry = Registry::start();
    let keys = cosign_keys();
    let wd = workdir();
    let repo = registry.repo("fcos");
    let unsigned = Run::of(&mut push(&repo, wd.path(), &["stable"], None));
    let list = unsigned.ok()["manifest_list_digest"]
        .as_str()
        .unwrap()
        .to_string();
    let hex = list.trim_start_matches("sha256:").to_string();
    let size = skopeo_inspect_raw(&format!("{repo}:stable"), None)
        .unwrap()
        .len();
    // Another tool's referrer of the list (an SBOM, say), in the referrers tag.
    let sbom = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                   "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json",
                    "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2}],
        "subject": {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": list, "size": size}
    });
    let sbom_bytes = serde_json::to_vec(&sbom).unwrap();
    let sbom_digest = pushgate::digest::Digest::of(&sbom_bytes).to_string();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": sbom_digest, "size": sbom_bytes.len(),
                       "artifactType": "application/spdx+json"}]
    });
    let opts = Options {
        plain_http: true,
        ..Options::default()
    };
    let name: RepoName = repo.parse().unwrap();
    let r = Repository::new(&name, &opts).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        r.push_blob_bytes(b"{}").await.unwrap();
        r.put_manifest(
            &sbom_digest,
            "application/vnd.oci.image.manifest.v1+json",
            &sbom_bytes,
        )
        .await
        .unwrap();
        r.put_manifest(
            &format!("sha256-{hex}"),
            "application/vnd.oci.image.index.v1+json",
            &serde_json::to_vec(&index).unwrap(),
        )
        .await
        .unwrap();
    });
    let signed = Run::of(&mut push(&repo, wd.path(), &["stable"], Some(&keys)));
    assert_eq!(signed.outcome(), "pushed", "{}", signed.context());
    let ours = signed.ok()["attestation"].as_str().unwrap().to_string();
    let raw = skopeo_inspect_raw(&format!("{repo}:sha256-{hex}"), None).unwrap();
    let now: Value = serde_json::from_slice(&raw).unwrap();
    let listed: Vec<&str> = now["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [sbom_digest.as_str(), ours.as_str()]);
    assert_eq!(verify(&repo, &["stable"], &keys.public, &[]).code, 0);
}

#[test]
fn a_kill_between_the_signatures_and_the_tag_converges() {
    let registry = Registry::start();
    let keys = cosign_keys();
    let wd = workdir();
    // The tag's PUT is held before it reaches the registry: once the last of
    // the evidence (the referrers tag) has landed, pushgate is killed, its
    // signatures and attestation written, the tag not.
    let proxy = Proxy::start(
        registry.addr(),
        Faults::none().rule(Rule::nth(
            1,
            "PUT",
            "/manifests/stable",
            Action::Delay(Duration::from_secs(3600)),
        )),
    );
    let mut child = push(&proxy.repo("fcos"), wd.path(), &["stable"], Some(&keys))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let referrers_tag_landed = |r: &crate::support::Request| {
        r.method == "PUT"
            && r.status == 201
            && r.path.contains("/manifests/sha256-")
            && !r.path.ends_with(".sig")
    };
    while !registry.requests().iter().any(referrers_tag_landed) {
        assert!(Instant::now() < deadline, "the tag's PUT never came");
        assert!(child.try_wait().unwrap().is_none(), "pushgate ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let repo = registry.repo("fcos");
    assert!(
        skopeo_inspect_raw(&format!("{repo}:stable"), None).is_err(),
        "no tag yet"
    );
    // Through the same proxy (the signatures name the repository as pushed
    // to), whose hold was for the first PUT only.
    let signed_as = proxy.repo("fcos");
    let rerun = Run::of(&mut push(&signed_as, wd.path(), &["stable"], Some(&keys)));
    assert_eq!(rerun.outcome(), "pushed", "{}", rerun.context());
    assert_eq!(
        rerun.ok()["signatures"]["added"],
        0,
        "signed before the kill"
    );
    assert_eq!(
        digest_at(&format!("{repo}:stable")),
        rerun.ok()["manifest_list_digest"].as_str().unwrap()
    );
    assert_eq!(verify(&signed_as, &["stable"], &keys.public, &[]).code, 0);
}

#[test]
fn a_registry_refusing_the_signatures_fails_the_container_and_moves_no_tag() {
    let registry = Registry::start();
    let keys = cosign_keys();
    let wd = workdir();
    let proxy = Proxy::start(
        registry.addr(),
        Faults::none().rule(Rule::every("PUT", ".sig", Action::status(403))),
    );
    let run = Run::of(&mut push(
        &proxy.repo("fcos"),
        wd.path(),
        &["stable"],
        Some(&keys),
    ));
    assert_eq!(run.code, 1, "{}", run.context());
    let error = run.json["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("signing") && error.contains(".sig"),
        "{error}"
    );
    assert!(
        skopeo_inspect_raw(&format!("{}:stable", registry.repo("fcos")), None).is_err(),
        "no tag serves an unsigned list"
    );
}

#[test]
fn a_release_signs_with_its_configs_key_and_the_log_names_the_attestation() {
    let registry = Registry::start();
    let wd = workdir();
    let d = wd.path();
    crate::sign_interop::write_cosign_keys(d);
    let repo = registry.repo("fcos");
    std::fs::write(
        d.join("release.toml"),
        format!(
            "workdir = \".\"\nbuild = \"{BUILD}\"\n\
             sign-by-sigstore-private-key = \"cosign.key\"\n\
             sign-passphrase-file = \"passphrase\"\n\n\
             [[container]]\nname = \"oscontainer\"\nartifact = \"ostree\"\n\
             key = \"base-oscontainer\"\nrepo = \"{repo}\"\ntags = [\"stable\"]\n"
        ),
    )
    .unwrap();
    let log = d.join("decisions.jsonl");
    let run = Run::of(
        pushgate()
            .args(["release", "--tls-verify=false", "--json", "--config"])
            .arg(d.join("release.toml"))
            .arg("--decision-log")
            .arg(&log),
    );
    assert_eq!(run.code, 0, "{}", run.context());
    let result = &run.json["results"][0];
    assert_eq!(result["outcome"], "pushed", "{}", run.context());
    let attestation = result["attestation"].as_str().unwrap();
    let line: Value = serde_json::from_str(
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(line["attestation"], attestation, "the log names it");
    let v = verify(&repo, &["stable"], &d.join("cosign.pub"), &[]);
    assert_eq!(v.code, 0, "{}", v.context());
    assert_eq!(v.json["tags"][0]["attestation"]["digest"], attestation);
}
