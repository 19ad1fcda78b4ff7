//! Verify, then promote: staging images pushed and signed (or not) with keys
//! made as cosign makes them, promoted by digest (`docker://…@sha256:…`) the
//! way the pipeline's push_manifest assembles a list. The host verifies the
//! signatures with the `--trust-key`s and tells the policy key names; the
//! shipped `signed-sources` policy lets the signed promotion land and fails the
//! others, naming what is missing, with nothing written for them.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::sign_interop::{CosignKeys, cosign_keys};
use crate::support::run::{Run, path_str, run, s};
use crate::support::{Registry, pushgate};
use pushgate_sample::{SampleBuild, write_build};

const BUILD: &str = "41.20261206.3.0";
const ARCHES: [&str; 2] = ["x86_64", "aarch64"];
const DECISION: &str = "https://pushgate.dev/decision/v1";

/// A registry and a cosa build, with the build staged three times: signed by
/// the build key, unsigned, and signed by a key nobody trusts.
struct Staged {
    reg: Registry,
    wd: tempfile::TempDir,
    build_key: CosignKeys,
    other_key: CosignKeys,
    /// Per staging repository, the per-arch digests.
    digests: BTreeMap<&'static str, BTreeMap<String, String>>,
}

fn stage(
    reg: &Registry,
    wd: &Path,
    repo: &str,
    key: Option<&CosignKeys>,
) -> BTreeMap<String, String> {
    let mut cmd = pushgate();
    let key_name = repo.replace('/', "-");
    cmd.args(["push", "--repo", &reg.repo(repo), "--tag", "staged"])
        .args(["--artifact", "ostree", "--metajsonname", &key_name])
        .args(["--tls-verify=false", "--json"])
        .arg("--workdir")
        .arg(wd);
    if let Some(k) = key {
        cmd.arg("--sign-by-sigstore-private-key")
            .arg(&k.key)
            .arg("--sign-passphrase-file")
            .arg(&k.passphrase_file);
    }
    let out = Run::of(&mut cmd);
    out.ok()["digests"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(a, d)| (a.clone(), d.as_str().unwrap().to_string()))
        .collect()
}

impl Staged {
    fn new() -> Staged {
        let reg = Registry::start();
        let wd = tempfile::tempdir().unwrap();
        write_build(wd.path(), &SampleBuild::small(BUILD, &ARCHES)).unwrap();
        let (build_key, other_key) = (cosign_keys(), cosign_keys());
        let mut digests = BTreeMap::new();
        digests.insert(
            "staging/signed",
            stage(&reg, wd.path(), "staging/signed", Some(&build_key)),
        );
        digests.insert(
            "staging/unsigned",
            stage(&reg, wd.path(), "staging/unsigned", None),
        );
        digests.insert(
            "staging/other",
            stage(&reg, wd.path(), "staging/other", Some(&other_key)),
        );
        Staged {
            reg,
            wd,
            build_key,
            other_key,
            digests,
        }
    }

    /// `--image docker://REG/REPO@DIGEST` for each arch of a staging repo.
    fn images(&self, repo: &str) -> Vec<String> {
        self.digests[repo]
            .values()
            .map(|d| format!("docker://{}@{d}", self.reg.repo(repo)))
            .collect()
    }

    fn trust_build(&self) -> String {
        format!("build={}", self.build_key.public.display())
    }

    /// `policy facts` of promoting `images` to `dest`.
    fn facts(&self, dest: &str, images: &[String], trust: &[String]) -> Value {
        let mut args = vec![s("policy"), s("facts"), s("--repo"), self.reg.repo(dest)];
        args.extend([s("--tag"), s("stable"), s("--tls-verify=false")]);
        for i in images {
            args.extend([s("--image"), i.clone()]);
        }
        for t in trust {
            args.extend([s("--trust-key"), t.clone()]);
        }
        let out = run(&args);
        assert_eq!(out.code, 0, "{}", out.context());
        let case: Value = serde_json::from_str(&out.stdout).unwrap();
        case["facts"].clone()
    }
}

fn arch<'a>(facts: &'a Value, arch: &str) -> &'a Value {
    facts["arches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["arch"] == arch)
        .unwrap_or_else(|| panic!("no {arch} in {facts}"))
}

#[test]
fn facts_say_which_trusted_keys_signed_each_source_and_why_others_do_not_count() {
    let st = Staged::new();
    // One arch from each: x86_64 signed by the build key, aarch64 by another.
    let signed = st.images("staging/signed");
    let other = st.images("staging/other");
    let unsigned = st.images("staging/unsigned");
    let mixed = [signed[1].clone(), other[0].clone()];
    let facts = st.facts("prod/os", &mixed, &[st.trust_build()]);
    assert_eq!(facts["trusted-keys"], json!(["build"]));
    let (x86, arm) = (arch(&facts, "x86_64"), arch(&facts, "aarch64"));
    let x86_digest = &st.digests["staging/signed"]["x86_64"];
    assert_eq!(
        x86["source"]["origin"]["registry"],
        format!("{}@{x86_digest}", st.reg.repo("staging/signed"))
    );
    assert_eq!(x86["source"]["digest"], x86_digest.as_str());
    assert_eq!(x86["source"]["signatures"]["valid-keys"], json!(["build"]));
    assert_eq!(x86["source"]["signatures"]["invalid"], json!([]));
    assert_eq!(arm["source"]["signatures"]["valid-keys"], json!([]));
    let invalid = arm["source"]["signatures"]["invalid"].as_array().unwrap();
    assert_eq!(invalid.len(), 1, "{arm}");
    assert!(
        invalid[0]
            .as_str()
            .unwrap()
            .contains("made by none of the trusted keys (build)"),
        "{arm}"
    );
    // pushgate's own decision attestation of the staging push is an in-toto
    // attestation of the list, not of the per-arch images.
    assert_eq!(x86["source"]["signatures"]["attestations"], json!([]));

    // Unsigned: no signature at all, nothing invalid either.
    let facts = st.facts("prod/os", &unsigned, &[st.trust_build()]);
    for a in ARCHES {
        let sigs = &arch(&facts, a)["source"]["signatures"];
        assert_eq!(sigs["valid-keys"], json!([]), "{facts}");
        assert_eq!(sigs["invalid"], json!([]), "{facts}");
    }

    // No trusted key: nothing is looked for, and the facts say so.
    let facts = st.facts("prod/os", &signed, &[]);
    assert_eq!(facts["trusted-keys"], json!([]));
    assert_eq!(arch(&facts, "x86_64")["source"]["signatures"], Value::Null);

    // Both keys trusted: the other key's signature counts for its name.
    let trust_both = [
        st.trust_build(),
        format!("release={}", st.other_key.public.display()),
    ];
    let facts = st.facts("prod/os", &other, &trust_both);
    assert_eq!(
        arch(&facts, "x86_64")["source"]["signatures"]["valid-keys"],
        json!(["release"])
    );
}

#[test]
fn facts_say_which_trusted_keys_signed_the_list_a_tag_serves_and_what_they_attested() {
    let st = Staged::new();
    // The staging push signed `staged` with the build key and attested its
    // decision: the destination facts of a push to that repository see both.
    let facts = st.facts(
        "staging/signed",
        &st.images("staging/signed"),
        &[st.trust_build()],
    );
    let tag = &facts["tags"][0];
    assert_eq!(tag["name"], "stable");
    assert_eq!(
        tag["signatures"],
        Value::Null,
        "stable does not exist: {tag}"
    );

    let mut args = vec![
        s("policy"),
        s("facts"),
        s("--repo"),
        st.reg.repo("staging/signed"),
    ];
    args.extend([s("--tag"), s("staged"), s("--tls-verify=false")]);
    args.extend([
        s("--artifact"),
        s("ostree"),
        s("--metajsonname"),
        s("staging-signed"),
    ]);
    args.extend([s("--workdir"), path_str(st.wd.path())]);
    args.extend([s("--trust-key"), st.trust_build()]);
    let out = run(&args);
    assert_eq!(out.code, 0, "{}", out.context());
    let case: Value = serde_json::from_str(&out.stdout).unwrap();
    let tag = &case["facts"]["tags"][0];
    assert_eq!(tag["name"], "staged");
    assert_eq!(tag["signatures"]["valid-keys"], json!(["build"]), "{tag}");
    assert_eq!(
        tag["signatures"]["attestations"],
        json!([{ "predicate-type": DECISION, "keys": ["build"] }]),
        "{tag}"
    );
    // Archives have no registry home: their signatures are none, explicitly.
    for a in case["facts"]["arches"].as_array().unwrap() {
        assert!(a["source"]["origin"]["local"].is_string(), "{a}");
        assert_eq!(a["source"]["signatures"], Value::Null, "{a}");
    }
}

#[test]
fn a_source_registry_that_cannot_be_read_for_signatures_fails_the_container_naming_it() {
    use crate::support::proxy::{Action, Faults, Proxy, Rule};
    let st = Staged::new();
    // The staging registry, behind a proxy that refuses every read of a `.sig`.
    let proxy = Proxy::start(
        st.reg.addr(),
        Faults::none().rule(Rule::every("GET", ".sig", Action::status(403))),
    );
    let images: Vec<String> = st.digests["staging/signed"]
        .values()
        .map(|d| format!("docker://{}@{d}", proxy.repo("staging/signed")))
        .collect();
    let mut args = vec![s("push"), s("--repo"), st.reg.repo("prod/os")];
    args.extend([
        s("--tag"),
        s("stable"),
        s("--tls-verify=false"),
        s("--json"),
    ]);
    args.extend([s("--trust-key"), st.trust_build()]);
    for i in &images {
        args.extend([s("--image"), i.clone()]);
    }
    let out = run(&args);
    assert_eq!(out.code, 1, "{}", out.context());
    assert!(
        out.stderr.contains("cannot read the signatures of the")
            && out.stderr.contains(proxy.addr()),
        "the error names the source and its registry: {}",
        out.context()
    );
    assert!(
        st.reg.writes().iter().all(|w| !w.path.contains("prod/os")),
        "nothing written for the container: {:?}",
        st.reg.writes()
    );
}

/// DSSE's pre-authentication encoding, written out here from the spec (not
/// pushgate's).
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut pae = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    pae.extend_from_slice(payload);
    pae
}

/// An in-toto statement of `predicate_type` about `digest`, in a DSSE envelope
/// signed by the Sigstore crate with `keys`, stored as cosign stores
/// attestations: a layer of the `sha256-<hex>.att` manifest.
fn attach_attestation(
    reg: &Registry,
    repo: &str,
    digest: &str,
    predicate_type: &str,
    keys: &CosignKeys,
) {
    use base64::Engine as _;
    use pushgate::registry::{Options, RepoName, Repository};
    let b64 = base64::engine::general_purpose::STANDARD;
    let hex = digest.trim_start_matches("sha256:");
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": reg.repo(repo), "digest": {"sha256": hex}}],
        "predicateType": predicate_type,
        "predicate": {"buildDefinition": {"buildType": "https://example.com/cosa"}},
    });
    let payload = serde_json::to_vec(&statement).unwrap();
    let payload_type = "application/vnd.in-toto+json";
    let pae = pae(payload_type, &payload);
    let envelope = serde_json::to_vec(&json!({
        "payloadType": payload_type,
        "payload": b64.encode(&payload),
        "signatures": [{"keyid": "", "sig": b64.encode(keys.sigstore_sign(&pae))}],
    }))
    .unwrap();
    let digest_of = |b: &[u8]| pushgate::digest::Digest::of(b).to_string();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest_of(b"{}"), "size": 2},
        "layers": [{"mediaType": "application/vnd.dsse.envelope.v1+json",
                    "digest": digest_of(&envelope), "size": envelope.len(),
                    "annotations": {"predicateType": predicate_type}}],
    }))
    .unwrap();
    let name: RepoName = reg.repo(repo).parse().unwrap();
    let opts = Options {
        plain_http: true,
        ..Options::default()
    };
    let r = Repository::new(&name, &opts).unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        r.push_blob_bytes(b"{}").await.unwrap();
        r.push_blob_bytes(&envelope).await.unwrap();
        r.put_manifest(
            &format!("sha256-{hex}.att"),
            "application/vnd.oci.image.manifest.v1+json",
            &manifest,
        )
        .await
        .unwrap();
    });
}

#[test]
fn an_attestation_made_by_cosigns_tooling_is_a_fact_by_key_name() {
    const SLSA: &str = "https://slsa.dev/provenance/v1";
    let st = Staged::new();
    let x86 = st.digests["staging/signed"]["x86_64"].clone();
    attach_attestation(&st.reg, "staging/signed", &x86, SLSA, &st.build_key);
    // One by a key nobody trusts, of the same type: an invalid fact.
    attach_attestation(
        &st.reg,
        "staging/signed",
        &st.digests["staging/signed"]["aarch64"],
        SLSA,
        &st.other_key,
    );
    let facts = st.facts("prod/os", &st.images("staging/signed"), &[st.trust_build()]);
    let x = &arch(&facts, "x86_64")["source"]["signatures"];
    assert_eq!(
        x["attestations"],
        json!([{ "predicate-type": SLSA, "keys": ["build"] }]),
        "{x}"
    );
    assert_eq!(x["valid-keys"], json!(["build"]), "{x}");
    let a = &arch(&facts, "aarch64")["source"]["signatures"];
    assert_eq!(a["attestations"], json!([]), "{a}");
    let invalid = a["invalid"].as_array().unwrap();
    assert!(
        invalid.iter().any(|i| i
            .as_str()
            .unwrap()
            .contains(".att attestation 0: signed by none of the trusted keys (build)")),
        "{a}"
    );
}

#[test]
fn a_release_promotes_the_signed_staging_images_and_fails_the_others_writing_nothing_for_them() {
    use base64::Engine as _;
    let st = Staged::new();
    let module = crate::support::policy_module("signed-sources");
    let container = |name: &str, staging: &str| {
        let images: Vec<String> = st
            .images(staging)
            .iter()
            .map(|i| format!("{i:?}"))
            .collect();
        format!(
            "[[container]]\nname = \"{name}\"\nrepo = \"{}\"\ntags = [\"stable\", \"{{build}}\"]\n\
             images = [{}]\npolicy = {:?}\nsettings = {{ keys = [\"build\"] }}\n\n",
            st.reg.repo(&format!("prod/{name}")),
            images.join(", "),
            module.display().to_string(),
        )
    };
    let config = st.wd.path().join("promote.toml");
    std::fs::write(
        &config,
        format!(
            "build = \"{BUILD}\"\n[trust-keys]\nbuild = {:?}\n\n{}{}{}",
            st.build_key.public.display().to_string(),
            container("signed", "staging/signed"),
            container("unsigned", "staging/unsigned"),
            container("other", "staging/other"),
        ),
    )
    .unwrap();
    let writes_before = st.reg.writes().len();
    let mut cmd = pushgate();
    cmd.args(["release", "--tls-verify=false", "--json", "--config"])
        .arg(&config)
        .arg("--sign-by-sigstore-private-key")
        .arg(&st.build_key.key)
        .arg("--sign-passphrase-file")
        .arg(&st.build_key.passphrase_file);
    let out = Run::of(&mut cmd);
    assert_eq!(out.code, 1, "{}", out.context());

    let signed = out.release_result("signed");
    assert_eq!(signed["outcome"], "pushed", "{}", out.context());
    let listed = crate::support::run::list_digests(&crate::support::run::raw_json(&format!(
        "{}:{BUILD}",
        st.reg.repo("prod/signed")
    )));
    let staged: Vec<String> = st.digests["staging/signed"].values().cloned().collect();
    assert_eq!(
        listed.iter().collect::<std::collections::BTreeSet<_>>(),
        staged.iter().collect(),
        "the promoted list holds the staged images"
    );

    for src in signed["sources"].as_array().unwrap() {
        assert_eq!(src["signed_by"], json!(["build"]), "{}", out.context());
    }
    let unsigned = out.release_result("unsigned");
    assert_eq!(unsigned["outcome"], "failed", "{}", out.context());
    for src in unsigned["sources"].as_array().unwrap() {
        assert_eq!(src["signed_by"], json!([]), "{}", out.context());
    }
    let reason = unsigned["reason"].as_str().unwrap();
    for arch in ARCHES {
        let image = format!(
            "{}@{}",
            st.reg.repo("staging/unsigned"),
            st.digests["staging/unsigned"][arch]
        );
        assert!(
            reason.contains(&format!("{arch}: {image}: no signature at all")),
            "names the arch, the image and what is missing: {reason}"
        );
    }
    assert!(
        reason.contains("build"),
        "names the keys looked for: {reason}"
    );
    let other = out.release_result("other");
    assert_eq!(other["outcome"], "failed", "{}", out.context());
    assert!(
        other["reason"]
            .as_str()
            .unwrap()
            .contains("made by none of the trusted keys (build)"),
        "{}",
        out.context()
    );
    let writes: Vec<_> = st.reg.writes()[writes_before..].to_vec();
    for refused in ["prod/unsigned", "prod/other"] {
        assert!(
            writes.iter().all(|w| !w.path.contains(refused)),
            "nothing written to {refused}: {writes:?}"
        );
    }

    // The decision's attestation carries the signature facts it saw: read back
    // with skopeo and curl, its envelope checked with the Sigstore crate.
    let attestation = signed["attestation"].as_str().expect("an attestation");
    let manifest: Value = serde_json::from_slice(
        &crate::support::skopeo_inspect_raw(
            &format!("{}@{attestation}", st.reg.repo("prod/signed")),
            None,
        )
        .unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let envelope: Value =
        serde_json::from_slice(&crate::signing::blob(&st.reg, "prod/signed", layer)).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64.decode(envelope["payload"].as_str().unwrap()).unwrap();
    let payload_type = envelope["payloadType"].as_str().unwrap();
    let pae = pae(payload_type, &payload);
    let sig = b64
        .decode(envelope["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    crate::sign_interop::sigstore_verifier(&st.build_key.public)
        .verify_signature(sigstore::crypto::Signature::Raw(&sig), &pae)
        .expect("the Sigstore crate verifies the attestation");
    let statement: Value = serde_json::from_slice(&payload).unwrap();
    let seen = &statement["predicate"]["signatures"];
    assert_eq!(seen["trusted_keys"], json!(["build"]), "{statement}");
    for s in seen["sources"].as_array().unwrap() {
        assert_eq!(
            s["signatures"]["valid-keys"],
            json!(["build"]),
            "{statement}"
        );
        assert!(
            s["origin"]["registry"]
                .as_str()
                .unwrap()
                .contains("staging/signed"),
            "{s}"
        );
    }
}

#[test]
fn a_promotion_captured_as_a_case_replays_offline_and_diff_shows_what_the_policy_changes() {
    let st = Staged::new();
    let module = crate::support::policy_module("signed-sources");
    let default = crate::support::policy_module("default");
    let cases = st.wd.path().join("cases");
    std::fs::create_dir(&cases).unwrap();
    for (name, staging) in [
        ("signed", "staging/signed"),
        ("unsigned", "staging/unsigned"),
    ] {
        let mut args = vec![s("policy"), s("facts"), s("--repo"), st.reg.repo("prod/os")];
        args.extend([s("--tag"), s("stable"), s("--tls-verify=false")]);
        for i in st.images(staging) {
            args.extend([s("--image"), i]);
        }
        args.extend([s("--trust-key"), st.trust_build()]);
        args.extend([s("--policy"), path_str(&module)]);
        args.extend([s("--policy-settings"), s(r#"{"keys": ["build"]}"#)]);
        args.extend([s("--out"), path_str(&cases.join(format!("{name}.json")))]);
        let out = run(&args);
        assert_eq!(out.code, 0, "{}", out.context());
    }
    let case = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(cases.join(format!("{name}.json"))).unwrap()).unwrap()
    };
    assert_eq!(case("signed")["expect"]["decision"], "push");
    assert_eq!(case("unsigned")["expect"]["decision"], "fail");

    // Offline: the registry is gone, the cases still decide the same.
    drop(st.reg);
    let test = run(&[s("policy"), s("test"), path_str(&module), path_str(&cases)]);
    assert_eq!(test.code, 0, "{}", test.context());
    assert!(
        test.stdout.ends_with("2 passed, 0 failed\n"),
        "{}",
        test.context()
    );

    // Against the default policy (which takes no settings, so refuses these
    // cases' own): diff shows each case's decision before and after, and the
    // new side is decided on the signature facts the cases carry.
    let diff = run(&[
        s("policy"),
        s("diff"),
        s("--json"),
        path_str(&default),
        path_str(&module),
        path_str(&cases),
    ]);
    let doc = diff.ok();
    let changed = doc["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 2, "{}", diff.context());
    let of = |name: &str| {
        changed
            .iter()
            .find(|c| c["case"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("{name} in {}", diff.context()))
    };
    assert_eq!(of("/signed.json")["new"]["kind"], "push");
    let unsigned = of("/unsigned.json");
    assert_eq!(unsigned["new"]["kind"], "fail");
    assert!(
        unsigned["new"]["reason"]
            .as_str()
            .unwrap()
            .contains("no signature at all; looked for a signature by build"),
        "{}",
        diff.context()
    );
}
