use std::collections::HashMap;

use super::*;
use crate::sign::key::SigningKey;
use crate::sign::simple::sign;
use crate::sign::simple::tests::key;

const REF: &str = "quay.io/fedora/fedora-coreos:stable";

fn blobs(signed: &[&Signed]) -> HashMap<Digest, Vec<u8>> {
    signed
        .iter()
        .map(|s| (Digest::of(&s.payload), s.payload.clone()))
        .collect()
}

fn two(k: &SigningKey, d: &Digest) -> Vec<Signed> {
    vec![
        sign(k, REF, d, None),
        sign(k, "quay.io/fedora/fedora-coreos:next", d, None),
    ]
}

#[test]
fn the_sig_tag_is_the_digest_with_a_dash() {
    let d = Digest::of(b"x");
    assert_eq!(sig_tag(&d), format!("sha256-{}.sig", d.hex()));
}

#[test]
fn a_new_manifest_has_a_layer_per_signature_and_a_matching_config() {
    let (k, d) = (key(1), Digest::of(b"list"));
    let sigs = two(&k, &d);
    let mut m = SigManifest::new();
    assert_eq!(m.add(&sigs).len(), 2);
    let bytes = m.to_bytes();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["mediaType"], OCI_MANIFEST);
    assert_eq!(v["config"]["mediaType"], OCI_CONFIG);
    assert_eq!(v["config"]["digest"], Digest::of(&m.config()).as_str());
    assert_eq!(v["config"]["size"], m.config().len());
    let layers = m.layers();
    assert_eq!(layers.len(), 2);
    for (l, s) in layers.iter().zip(&sigs) {
        assert_eq!(l.media_type, SIMPLESIGNING_MEDIA_TYPE);
        assert_eq!(l.digest, Digest::of(&s.payload));
        assert_eq!(l.size, s.payload.len() as u64);
        assert_eq!(l.annotations[SIGNATURE_ANNOTATION], s.signature);
    }
    let config: Value = serde_json::from_slice(&m.config()).unwrap();
    assert_eq!(config["rootfs"]["type"], "layers");
    let diff_ids: Vec<&str> = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let digests: Vec<String> = layers.iter().map(|l| l.digest.to_string()).collect();
    assert_eq!(diff_ids, digests);
    // What is written reads back as the same manifest.
    assert_eq!(SigManifest::parse(&bytes, "t").unwrap().layers(), layers);
}

#[test]
fn adding_again_changes_nothing() {
    let (k, d) = (key(1), Digest::of(b"list"));
    let sigs = two(&k, &d);
    let mut m = SigManifest::new();
    m.add(&sigs);
    let before = m.to_bytes();
    let mut reread = SigManifest::parse(&before, "t").unwrap();
    assert!(reread.add(&sigs).is_empty());
    assert!(reread.add(&two(&k, &d)).is_empty(), "re-signed: same bytes");
    assert_eq!(reread.to_bytes(), before);
}

#[test]
fn another_signature_over_the_same_payload_is_another_layer() {
    let d = Digest::of(b"list");
    let mut m = SigManifest::new();
    m.add(&[sign(&key(1), REF, &d, None)]);
    let other = [sign(&key(2), REF, &d, None)];
    assert_eq!(m.add(&other).len(), 1);
    let layers = m.layers();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0].digest, layers[1].digest);
}

#[test]
fn every_existing_layer_is_kept_as_it_was() {
    let d = Digest::of(b"list");
    let theirs = sign(&key(3), REF, &d, None);
    // As cosign writes it after a keyless signing: a Rekor bundle and a
    // certificate beside the signature, a config with history, fields of its own.
    let existing = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": 233,
                   "digest": Digest::of(b"old config").to_string()},
        "layers": [{
            "mediaType": SIMPLESIGNING_MEDIA_TYPE,
            "size": theirs.payload.len(),
            "digest": Digest::of(&theirs.payload).to_string(),
            "annotations": {
                SIGNATURE_ANNOTATION: theirs.signature,
                "dev.sigstore.cosign/bundle": "{\"SignedEntryTimestamp\":\"MEUC\"}",
                "dev.sigstore.cosign/certificate": "-----BEGIN CERTIFICATE-----"
            }
        }],
        "annotations": {"org.example/kept": "yes"}
    });
    let mut m = SigManifest::parse(&serde_json::to_vec(&existing).unwrap(), "t").unwrap();
    let ours = [sign(&key(1), REF, &d, None)];
    assert_eq!(m.add(&ours).len(), 1);
    let out: Value = serde_json::from_slice(&m.to_bytes()).unwrap();
    assert_eq!(out["layers"][0], existing["layers"][0]);
    assert_eq!(
        out["layers"][1]["digest"],
        Digest::of(&ours[0].payload).as_str()
    );
    assert_eq!(out["annotations"], existing["annotations"]);
    assert_ne!(
        out["config"], existing["config"],
        "config rebuilt for two layers"
    );
    // Their layer, with its extra annotations, is the same signature as ours
    // would be over that payload: not added twice.
    assert!(m.add(&[theirs]).is_empty());
}

#[test]
fn only_valid_signatures_by_the_key_for_the_image_count() {
    let (k, d) = (key(1), Digest::of(b"list"));
    let good = sign(&k, REF, &d, None);
    let other_key = sign(&key(2), REF, &d, None);
    let other_image = sign(&k, REF, &Digest::of(b"other"), None);
    let missing = sign(&k, "quay.io/fedora/fedora-coreos:testing", &d, None);
    let mut m = SigManifest::new();
    m.add(&[
        good.clone(),
        other_key.clone(),
        other_image.clone(),
        missing,
    ]);
    let store = blobs(&[&good, &other_key, &other_image]);
    let check = m.check(|d| store.get(d).cloned(), k.public_key(), REF, &d);
    assert!(check[0].1.is_ok());
    assert!(matches!(
        check[1].1,
        Err(LayerError::Rejected(Rejected::BadSignature(_)))
    ));
    assert!(matches!(
        check[2].1,
        Err(LayerError::Rejected(Rejected::WrongDigest { .. }))
    ));
    assert!(matches!(check[3].1, Err(LayerError::MissingBlob(_))));
    assert_eq!(
        m.valid_layers(|d| store.get(d).cloned(), k.public_key(), REF, &d),
        vec![0]
    );
    // A registry handing back other bytes for the payload is caught.
    let lying = |_: &Digest| Some(b"{}".to_vec());
    assert!(matches!(
        m.check(lying, k.public_key(), REF, &d)[0].1,
        Err(LayerError::BlobMismatch(_))
    ));
}

#[test]
fn foreign_layers_are_not_signatures() {
    let d = Digest::of(b"list");
    let raw = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
    "config": {"mediaType": OCI_CONFIG, "size": 2, "digest": Digest::of(b"{}").to_string()},
    "layers": [
        {"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": 1,
         "digest": Digest::of(b"x").to_string()},
        {"mediaType": SIMPLESIGNING_MEDIA_TYPE, "size": 1, "digest": Digest::of(b"y").to_string()},
        {"mediaType": SIMPLESIGNING_MEDIA_TYPE, "size": 1, "digest": format!("sha512:{}", "ab".repeat(64))}
    ]});
    let m = SigManifest::parse(&serde_json::to_vec(&raw).unwrap(), "t").unwrap();
    let check = m.check(|_| None, key(1).public_key(), REF, &d);
    assert!(matches!(check[0].1, Err(LayerError::NotSimpleSigning(_))));
    assert_eq!(check[1].1, Err(LayerError::NoSignature));
    assert_eq!((check[2].0, &check[2].1), (2, &Err(LayerError::Unreadable)));
    // Kept, and counted in the config's diff_ids like any layer.
    let config: Value = serde_json::from_slice(&m.config()).unwrap();
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
    assert_eq!(m.layers().len(), 2);
}

#[test]
fn docker_schema2_signature_manifests_keep_their_config_type() {
    let raw = json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": 2, "digest": Digest::of(b"{}").to_string()},
        "layers": []});
    let mut m = SigManifest::parse(&serde_json::to_vec(&raw).unwrap(), "t").unwrap();
    m.add(&[sign(&key(1), REF, &Digest::of(b"l"), None)]);
    let out: Value = serde_json::from_slice(&m.to_bytes()).unwrap();
    assert_eq!(out["mediaType"], DOCKER_MANIFEST);
    assert_eq!(out["config"]["mediaType"], DOCKER_CONFIG);
}

#[test]
fn what_is_not_a_signature_manifest_is_refused_with_its_tag() {
    let index =
        json!({"schemaVersion": 2, "mediaType": crate::manifest::OCI_INDEX, "manifests": []});
    let err = SigManifest::parse(&serde_json::to_vec(&index).unwrap(), "repo:sha256-ab.sig")
        .unwrap_err()
        .to_string();
    assert!(err.contains("repo:sha256-ab.sig"), "{err}");
    assert!(SigManifest::parse(br#"{"schemaVersion":1,"layers":[]}"#, "t").is_err());
}

#[test]
fn racing_writers_merge_to_the_union_and_merging_again_changes_nothing() {
    let d = Digest::of(b"list");
    let mut base = SigManifest::new();
    base.add(&[sign(&key(3), REF, &d, None)]);
    // Both read `base`; each wrote its own signature added to it.
    let (mut a, mut b) = (base.clone(), base.clone());
    a.add(&[sign(&key(1), REF, &d, None)]);
    b.add(&[sign(&key(2), REF, &d, None)]);
    assert_eq!(a.lacking_in(&b), 1, "b's write dropped a's layer");
    assert_eq!(a.lacking_in(&a), 0);
    assert_eq!(base.lacking_in(&b), 0, "what both read is still there");

    let merged = a.merged_into(&b);
    // The payloads are the same (one reference, one digest): the
    // signatures tell the layers apart.
    let signatures = |m: &SigManifest| -> Vec<String> {
        m.layers()
            .into_iter()
            .map(|l| l.annotations[SIGNATURE_ANNOTATION].clone())
            .collect()
    };
    let (sa, sb) = (signatures(&a), signatures(&b));
    assert_eq!(signatures(&merged), [&sb[..], &sa[1..]].concat());
    assert_eq!(a.lacking_in(&merged), 0);
    assert_eq!(b.lacking_in(&merged), 0);
    // b, reading back what a wrote, finds nothing of its own missing; were
    // it to merge anyway, the bytes would not change.
    assert_eq!(b.merged_into(&merged).to_bytes(), merged.to_bytes());
    let config: Value = serde_json::from_slice(&merged.config()).unwrap();
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
}

#[test]
fn a_merge_keeps_each_layer_as_written_and_tells_signatures_apart() {
    let d = Digest::of(b"list");
    let ours = sign(&key(1), REF, &d, None);
    let sha512 = format!("sha512:{}", "ab".repeat(64));
    // What this writer meant: a foreign layer with a bundle, one pushgate
    // cannot read, and its own.
    let meant = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "layers": [
            {"mediaType": SIMPLESIGNING_MEDIA_TYPE, "size": 3, "digest": sha512,
             "annotations": {SIGNATURE_ANNOTATION: "c2ln"}},
            {"mediaType": SIMPLESIGNING_MEDIA_TYPE,
             "size": ours.payload.len(),
             "digest": Digest::of(&ours.payload).to_string(),
             "annotations": {SIGNATURE_ANNOTATION: ours.signature,
                             "dev.sigstore.cosign/bundle": "{}"}}
        ]
    });
    let meant = SigManifest::parse(&serde_json::to_vec(&meant).unwrap(), "t").unwrap();
    // What is there now: the same payload under another signature (another
    // key signing the same reference and digest), and nothing else.
    let mut now = SigManifest::new();
    let mut same_payload = ours.clone();
    same_payload.signature = sign(&key(2), REF, &d, None).signature;
    assert_eq!(
        same_payload.payload, ours.payload,
        "payloads are deterministic"
    );
    now.add(&[same_payload]);
    assert_eq!(
        meant.lacking_in(&now),
        2,
        "another signature is another layer"
    );

    let merged = meant.merged_into(&now);
    let out: Value = serde_json::from_slice(&merged.to_bytes()).unwrap();
    let meant_json: Value = serde_json::from_slice(&meant.to_bytes()).unwrap();
    assert_eq!(out["layers"].as_array().unwrap().len(), 3);
    assert_eq!(out["layers"][1], meant_json["layers"][0], "unread, kept");
    assert_eq!(
        out["layers"][2], meant_json["layers"][1],
        "annotations kept"
    );
    assert_eq!(meant.lacking_in(&merged), 0);
}
