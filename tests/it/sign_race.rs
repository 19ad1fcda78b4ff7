//! Signers of one digest at once, against the real registry: each reads the
//! `.sig` tag, adds its layer and puts the whole manifest back, so a write
//! made from an older read drops the other's layer (no registry has
//! compare-and-swap on tags). The interleavings are made, not hoped for: the
//! proxy holds a request of pushgate's (its `.sig` write before or after it
//! lands, a blob after the tag was read) while the other signer writes, then
//! lets it go. The other signer is a write of the library's client straight
//! to the registry (it never checks back), or a second pushgate run through a
//! proxy of its own. The signatures left are checked with the Sigstore crate.

use std::process::Command;
use std::time::{Duration, Instant};

use pushgate::digest::Digest;
use pushgate::manifest::{DOCKER_MANIFEST, Descriptor, OCI_INDEX};
use pushgate::registry::{Options, Repository};
use pushgate::sign::cosign::{SigManifest, sig_tag};
use pushgate::sign::referrers::ReferrersIndex;
use pushgate::sign::{SigningKey, read_passphrase_file, simple};

use crate::sign_interop::{CosignKeys, cosign_keys, sigstore_verifier};
use crate::signing::{digests, push, sigstore_verified, verify, workdir};
use crate::support::proxy::{Action, Caught, Faults, Proxy, ProxyEvent, Rule, Trip};
use crate::support::run::Run;
use crate::support::{Registry, skopeo_inspect_raw};

/// Repository `fcos` of `registry`, straight (not through a proxy), with the
/// library's client: the writes of another tool.
fn direct(registry: &Registry) -> Repository {
    let opts = Options {
        plain_http: true,
        ..Options::default()
    };
    Repository::new(&registry.repo("fcos").parse().unwrap(), &opts).unwrap()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Runtime::new().unwrap().block_on(f)
}

/// Puts the `.sig` manifest `keys` would write for `reference` at `digest`
/// having read an empty tag: the write of a signer that read the tag before
/// anyone else wrote it. Straight to the registry, with the library's client.
fn write_racing_signature(registry: &Registry, keys: &CosignKeys, reference: &str, digest: &str) {
    let passphrase = read_passphrase_file(&keys.passphrase_file).unwrap();
    let key = SigningKey::load(&keys.key, &passphrase).unwrap();
    let digest: Digest = digest.parse().unwrap();
    let signed = simple::sign(&key, reference, &digest, None);
    let mut manifest = SigManifest::new();
    manifest.add(std::slice::from_ref(&signed));
    let repo = direct(registry);
    block_on(async {
        repo.push_blob_bytes(&signed.payload).await.unwrap();
        repo.push_blob_bytes(&manifest.config()).await.unwrap();
        repo.put_manifest(
            &sig_tag(&digest),
            "application/vnd.oci.image.manifest.v1+json",
            &manifest.to_bytes(),
        )
        .await
        .unwrap();
    });
}

/// How many layers the `.sig` manifest of `digest` holds.
fn layers(registry: &Registry, digest: &str) -> usize {
    let hex = digest.trim_start_matches("sha256:");
    let raw = skopeo_inspect_raw(&format!("{}:sha256-{hex}.sig", registry.repo("fcos")), None)
        .expect("the .sig tag exists");
    let m: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    m["layers"].as_array().unwrap().len()
}

/// The requests of `method` to the `.sig` tag of `digest` the proxy saw.
fn to_sig_tag(log: &[ProxyEvent], method: &str, digest: &str) -> usize {
    let tag = format!(
        "/manifests/sha256-{}.sig",
        digest.trim_start_matches("sha256:")
    );
    log.iter()
        .filter(|e| e.method == method && e.path().ends_with(&tag))
        .count()
}

fn spawn(mut cmd: Command) -> std::thread::JoinHandle<Run> {
    std::thread::spawn(move || Run::of(&mut cmd))
}

#[test]
fn a_signature_dropped_by_a_racing_signer_is_merged_back_and_both_verify() {
    let registry = Registry::start();
    let (a, b) = (cosign_keys(), cosign_keys());
    let wd = workdir();
    let proxy = Proxy::start(registry.addr(), Faults::none());
    let repo = proxy.repo("fcos");
    // The first `.sig` manifest pushgate (key A) puts lands; its answer is
    // held until the other signer (key B) has written.
    let held = proxy.trip_on(1, "PUT", ".sig", Trip::AfterUpstream);
    let run = spawn(push(&repo, wd.path(), &["stable"], Some(&a)));
    let caught = held
        .recv_timeout(Duration::from_secs(120))
        .expect("pushgate never put a .sig manifest");
    let raced = sig_digest(&caught);
    assert_eq!(layers(&registry, &raced), 1, "A's write landed");
    // B read the tag before A's write landed; its write drops A's layer.
    write_racing_signature(&registry, &b, &format!("{repo}:stable"), &raced);
    proxy.release_held();
    let run = run.join().unwrap();
    assert_eq!(run.outcome(), "pushed", "{}", run.context());
    assert_eq!(run.ok()["signatures"]["added"], 3, "{}", run.context());

    let (va, vb) = (sigstore_verifier(&a.public), sigstore_verifier(&b.public));
    let all = digests(&run);
    assert!(all.contains(&raced), "{raced} is one of {all:?}");
    let stable = [format!("{repo}:stable")];
    for d in &all {
        assert_eq!(sigstore_verified(&registry, d, &va), stable, "A's, at {d}");
    }
    assert_eq!(
        sigstore_verified(&registry, &raced, &vb),
        stable,
        "B's kept"
    );
    assert_eq!(layers(&registry, &raced), 2, "each signature once");

    // The cost: a GET of the tag before and after each write (besides
    // observing it first), and one more write where the race was.
    let log = proxy.log();
    for d in &all {
        let (puts, gets) = if *d == raced { (2, 5) } else { (1, 3) };
        assert_eq!(to_sig_tag(&log, "PUT", d), puts, "PUTs of {d}'s .sig");
        assert_eq!(to_sig_tag(&log, "GET", d), gets, "GETs of {d}'s .sig");
    }
    assert_eq!(verify(&repo, &["stable"], &a.public, &[]).code, 0);
}

#[test]
fn a_signature_written_after_pushgate_read_the_tag_is_kept() {
    let registry = Registry::start();
    let (a, b) = (cosign_keys(), cosign_keys());
    let wd = workdir();
    let proxy = Proxy::start(registry.addr(), Faults::none());
    let repo = proxy.repo("fcos");
    // pushgate (key A) has read every `.sig` tag (none there) and planned;
    // its first blob is held before it reaches the registry.
    let held = proxy.trip_on(1, "PUT", "/blobs/uploads/", Trip::BeforeForward);
    let run = spawn(push(&repo, wd.path(), &["stable"], Some(&a)));
    held.recv_timeout(Duration::from_secs(120))
        .expect("pushgate never uploaded a blob");
    let observed: Vec<String> = proxy
        .log()
        .iter()
        .filter(|e| e.method == "GET")
        .filter_map(|e| e.path().rsplit_once("/manifests/sha256-"))
        .filter_map(|(_, t)| t.strip_suffix(".sig"))
        .map(|hex| format!("sha256:{hex}"))
        .collect();
    assert_eq!(observed.len(), 3, "the list and two arches: {observed:?}");
    // Meanwhile another signer (key B), a job that started a little earlier,
    // signs all three: what pushgate read is stale by the time it writes.
    for d in &observed {
        write_racing_signature(&registry, &b, &format!("{repo}:stable"), d);
    }
    proxy.release_held();
    let run = run.join().unwrap();
    assert_eq!(run.outcome(), "pushed", "{}", run.context());

    let (va, vb) = (sigstore_verifier(&a.public), sigstore_verifier(&b.public));
    let stable = [format!("{repo}:stable")];
    for d in &observed {
        assert_eq!(sigstore_verified(&registry, d, &vb), stable, "B's, at {d}");
        assert_eq!(sigstore_verified(&registry, d, &va), stable, "A's, at {d}");
        assert_eq!(layers(&registry, d), 2);
    }
}

/// The digest whose `.sig` tag `caught` is a request of.
fn sig_digest(caught: &Caught) -> String {
    let hex = caught
        .path()
        .rsplit_once("/manifests/sha256-")
        .and_then(|(_, t)| t.strip_suffix(".sig"))
        .expect("a .sig tag");
    format!("sha256:{hex}")
}

#[test]
fn two_pushgate_signers_racing_on_one_tag_both_keep_their_signature() {
    let registry = Registry::start();
    let (a, b) = (cosign_keys(), cosign_keys());
    let (wd_a, wd_b) = (workdir(), workdir());
    // A proxy each, so that each signer's requests can be held on their own.
    let pa = Proxy::start(registry.addr(), Faults::none());
    let pb = Proxy::start(registry.addr(), Faults::none());
    let wait = Duration::from_secs(120);

    // A has read the tag (nothing there) and is about to write it: held.
    let a_writes = pa.trip_on(1, "PUT", ".sig", Trip::BeforeForward);
    let run_a = spawn(push(&pa.repo("fcos"), wd_a.path(), &["stable"], Some(&a)));
    let raced = sig_digest(&a_writes.recv_timeout(wait).expect("A's write"));
    // B reads the same tag (still nothing) and is about to write it: held.
    let tag = format!("sha256-{}.sig", raced.trim_start_matches("sha256:"));
    let b_writes = pb.trip_on(1, "PUT", &tag, Trip::BeforeForward);
    let run_b = spawn(push(&pb.repo("fcos"), wd_b.path(), &["stable"], Some(&b)));
    b_writes.recv_timeout(wait).expect("B's write");
    // A's write lands; its read-back is held.
    let a_reads_back = pa.trip_on(1, "GET", &tag, Trip::BeforeForward);
    pa.release_held();
    let deadline = Instant::now() + wait;
    // (Without a read-back, A goes on to its end.)
    while a_reads_back.try_recv().is_err() && !run_a.is_finished() {
        assert!(Instant::now() < deadline, "A neither read back nor ended");
        std::thread::sleep(Duration::from_millis(10));
    }
    // B's write lands on A's and drops it (B read before A wrote); B reads
    // back its own and is done.
    pb.release_held();
    let run_b = run_b.join().unwrap();
    assert_eq!(run_b.outcome(), "pushed", "{}", run_b.context());
    assert_eq!(layers(&registry, &raced), 1, "A's layer was dropped");
    // A reads back, finds its layer gone, merges it with B's and writes again.
    pa.release_held();
    let run_a = run_a.join().unwrap();
    assert_eq!(run_a.outcome(), "pushed", "{}", run_a.context());

    let (va, vb) = (sigstore_verifier(&a.public), sigstore_verifier(&b.public));
    assert_eq!(digests(&run_a), digests(&run_b), "one image");
    assert_eq!(
        sigstore_verified(&registry, &raced, &va),
        [format!("{}:stable", pa.repo("fcos"))],
        "A's, merged back"
    );
    assert_eq!(
        sigstore_verified(&registry, &raced, &vb),
        [format!("{}:stable", pb.repo("fcos"))],
        "B's, kept"
    );
    assert_eq!(layers(&registry, &raced), 2);
    assert_eq!(to_sig_tag(&pa.log(), "PUT", &raced), 2, "A wrote twice");
    assert_eq!(to_sig_tag(&pb.log(), "PUT", &raced), 1, "B once");
}

#[test]
fn a_sig_tag_that_never_holds_what_was_written_fails_naming_it_and_moves_no_tag() {
    let registry = Registry::start();
    let keys = cosign_keys();
    let wd = workdir();
    // The proxy says yes to every `.sig` write and forwards none: the tag
    // never holds the signatures, as if another writer always came between.
    let proxy = Proxy::start(
        registry.addr(),
        Faults::none().rule(Rule::every("PUT", ".sig", Action::status(201))),
    );
    let run = spawn(push(
        &proxy.repo("fcos"),
        wd.path(),
        &["stable"],
        Some(&keys),
    ))
    .join()
    .unwrap();
    assert_eq!(run.code, 1, "{}", run.context());
    let error = run.json["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(".sig") && error.contains("still lacks") && error.contains(proxy.addr()),
        "names the tag and the registry: {error}"
    );
    assert!(
        skopeo_inspect_raw(&format!("{}:stable", registry.repo("fcos")), None).is_err(),
        "no tag serves a list whose signatures did not hold"
    );
    // Bounded: the first write and 5 merged ones, each read back.
    let at = error.find("sha256-").expect("the tag") + "sha256-".len();
    let named = format!("sha256:{}", &error[at..at + 64]);
    let log = proxy.log();
    assert_eq!(to_sig_tag(&log, "PUT", &named), 6, "{log:#?}");
    assert_eq!(
        to_sig_tag(&log, "GET", &named),
        13,
        "observed, then read before and after each write"
    );
}

/// The digests the referrers index at `tag` (of repository `fcos`) lists.
fn referrers(registry: &Registry, tag: &str) -> Vec<String> {
    let raw = skopeo_inspect_raw(&format!("{}:{tag}", registry.repo("fcos")), None)
        .expect("the referrers tag exists");
    let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn an_attestation_dropped_from_the_referrers_tag_by_a_racing_writer_is_merged_back() {
    let registry = Registry::start();
    let a = cosign_keys();
    let wd = workdir();
    let proxy = Proxy::start(registry.addr(), Faults::none());
    let repo = proxy.repo("fcos");
    // docker-registry 2.8 has no referrers API: the attestation is listed in
    // the referrers tag, `sha256-<list hex>`, put after the three `.sig`
    // manifests (the list's and two arches'). That write lands; its answer is
    // held while another tool rewrites the tag from an older read.
    let held = proxy.trip_on(4, "PUT", "/manifests/sha256-", Trip::AfterUpstream);
    let run = spawn(push(&repo, wd.path(), &["stable"], Some(&a)));
    let caught = held
        .recv_timeout(Duration::from_secs(120))
        .expect("pushgate never put the referrers tag");
    let tag = caught
        .path()
        .rsplit_once("/manifests/")
        .unwrap()
        .1
        .to_string();
    assert!(!tag.ends_with(".sig"), "{caught:?}");
    assert_eq!(referrers(&registry, &tag).len(), 1, "A's write landed");

    // The other writer lists a referrer of its own (any manifest the registry
    // holds will do: the list's first image) and not A's attestation.
    let list = format!("sha256:{}", tag.trim_start_matches("sha256-"));
    let raw = skopeo_inspect_raw(&format!("{}@{list}", registry.repo("fcos")), None).unwrap();
    let first: Descriptor = serde_json::from_value(
        serde_json::from_slice::<serde_json::Value>(&raw).unwrap()["manifests"][0].clone(),
    )
    .unwrap();
    let other = Descriptor {
        platform: None,
        artifact_type: Some("application/vnd.example.other-tool".into()),
        ..first
    };
    let mut index = ReferrersIndex::new();
    index.add(&other);
    let direct = direct(&registry);
    block_on(async {
        direct
            .put_manifest(&tag, OCI_INDEX, &index.to_bytes())
            .await
            .unwrap();
    });
    assert_eq!(referrers(&registry, &tag), [other.digest.to_string()]);
    proxy.release_held();

    let run = run.join().unwrap();
    assert_eq!(run.outcome(), "pushed", "{}", run.context());
    let attestation = run.ok()["attestation"].as_str().unwrap().to_string();
    let listed = referrers(&registry, &tag);
    assert_eq!(
        listed,
        [other.digest.to_string(), attestation],
        "both referrers, each once"
    );
    let puts = proxy
        .log()
        .iter()
        .filter(|e| e.method == "PUT" && e.path().ends_with(&format!("/manifests/{tag}")))
        .count();
    assert_eq!(puts, 2, "written again once, after the race");
}

#[test]
fn a_docker_typed_sig_manifest_another_tool_wrote_is_merged_into_as_docker() {
    let registry = Registry::start();
    let (a, b) = (cosign_keys(), cosign_keys());
    let wd = workdir();
    let repo = registry.repo("fcos");
    let unsigned = Run::of(&mut push(&repo, wd.path(), &["stable"], None));
    assert_eq!(unsigned.outcome(), "pushed", "{}", unsigned.context());
    let list = unsigned.ok()["manifest_list_digest"]
        .as_str()
        .unwrap()
        .to_string();
    // cosign with COSIGN_DOCKER_MEDIA_TYPES=1 signed the list (key B): its
    // `.sig` manifest is a Docker schema 2 one.
    let passphrase = read_passphrase_file(&b.passphrase_file).unwrap();
    let key = SigningKey::load(&b.key, &passphrase).unwrap();
    let digest: Digest = list.parse().unwrap();
    let signed = simple::sign(&key, &format!("{repo}:stable"), &digest, None);
    let mut manifest = SigManifest::new();
    manifest.add(std::slice::from_ref(&signed));
    let mut doc: serde_json::Value = serde_json::from_slice(&manifest.to_bytes()).unwrap();
    doc["mediaType"] = DOCKER_MANIFEST.into();
    doc["config"]["mediaType"] = "application/vnd.docker.container.image.v1+json".into();
    let direct = direct(&registry);
    block_on(async {
        direct.push_blob_bytes(&signed.payload).await.unwrap();
        direct.push_blob_bytes(&manifest.config()).await.unwrap();
        direct
            .put_manifest(
                &sig_tag(&digest),
                DOCKER_MANIFEST,
                &serde_json::to_vec(&doc).unwrap(),
            )
            .await
            .unwrap();
    });

    // pushgate (key A) signs the same list: it adds its layer to that manifest.
    let run = Run::of(&mut push(&repo, wd.path(), &["stable"], Some(&a)));
    assert_eq!(run.code, 0, "{}", run.context());
    let raw = skopeo_inspect_raw(
        &format!("{repo}:sha256-{}.sig", list.trim_start_matches("sha256:")),
        None,
    )
    .unwrap();
    let sig: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(sig["mediaType"], DOCKER_MANIFEST, "{sig}");
    assert_eq!(layers(&registry, &list), 2);
    let stable = [format!("{repo}:stable")];
    for keys in [&a, &b] {
        let v = sigstore_verifier(&keys.public);
        assert_eq!(sigstore_verified(&registry, &list, &v), stable);
    }
}
