//! Fuzz targets for what signing reads: key files (as cosign and skopeo write
//! them), `.sig` manifests, referrers indexes, artifact manifests and DSSE
//! envelopes. Documents must survive pushgate's own rewrite (what it reads
//! back after writing is what it wrote), descriptors name the digest of the
//! bytes they stand for, and nothing verifies without the key's signature.

use super::{Outcome, chain, ensure, run};
use crate::digest::Digest;
use crate::sign::cosign::SigManifest;
use crate::sign::dsse::Envelope;
use crate::sign::key::{PublicKey, SigningKey};
use crate::sign::oci::ArtifactManifest;
use crate::sign::referrers::ReferrersIndex;

const DICT: &[&[u8]] = &[
    b"\"schemaVersion\":2",
    b"\"mediaType\":",
    b"\"application/vnd.oci.image.manifest.v1+json\"",
    b"\"application/vnd.oci.image.index.v1+json\"",
    b"\"application/vnd.dev.cosign.simplesigning.v1+json\"",
    b"\"dev.cosignproject.cosign/signature\"",
    b"\"layers\":[]",
    b"\"manifests\":[]",
    b"\"subject\":",
    b"\"artifactType\":",
    b"\"annotations\":{}",
    b"\"payloadType\":\"application/vnd.in-toto+json\"",
    b"\"signatures\":[]",
    b"\"keyid\":\"\"",
    b"\"sig\":\"MEUCIQ==\"",
    b"\"size\":",
    b"\"digest\":",
];

/// A key that signed nothing the corpus holds.
fn stranger() -> PublicKey {
    use crate::sign::key::tests::{encrypt_pem, test_key_der};
    let pem = encrypt_pem(&test_key_der(7), b"", 1, "ENCRYPTED SIGSTORE PRIVATE KEY");
    SigningKey::from_encrypted_pem(pem.as_bytes(), b"", "stranger")
        .expect("the test key")
        .public_key()
        .clone()
}

fn named(e: &anyhow::Error, label: &str) -> Result<Outcome, String> {
    let msg = chain(e);
    ensure(msg.starts_with(label), || {
        format!("the error does not start with {label:?}: {msg}")
    })?;
    Ok(Outcome::Refused)
}

#[test]
fn fuzz_sig_manifests() {
    let key = stranger();
    let digest = Digest::of(b"image");
    run("sig_manifest", DICT, &|input| {
        let m = match SigManifest::parse(input, "LABEL") {
            Ok(m) => m,
            Err(e) => return named(&e, "LABEL: "),
        };
        let bytes = m.to_bytes();
        let again = SigManifest::parse(&bytes, "rewritten")
            .map_err(|e| format!("pushgate's rewrite does not parse: {e:#}"))?;
        ensure(again.to_bytes() == bytes, || {
            "a second rewrite differs".into()
        })?;
        ensure(again.layers() == m.layers(), || "the layers changed".into())?;
        let blob = |d: &Digest| (*d == Digest::of(b"payload")).then(|| b"payload".to_vec());
        ensure(
            m.valid_layers(blob, &key, "quay.io/a/b", &digest)
                .is_empty(),
            || "a layer verified by a key that signed nothing".into(),
        )?;
        Ok(Outcome::Accepted)
    });
}

#[test]
fn fuzz_referrers_indexes() {
    run("referrers_index", DICT, &|input| {
        let mut index = match ReferrersIndex::parse(input, "LABEL") {
            Ok(i) => i,
            Err(e) => return named(&e, "LABEL: "),
        };
        let bytes = index.to_bytes();
        let again = ReferrersIndex::parse(&bytes, "rewritten")
            .map_err(|e| format!("pushgate's rewrite does not parse: {e:#}"))?;
        ensure(again.manifests() == index.manifests(), || {
            "the entries changed".into()
        })?;
        // Adding a referrer twice writes it once.
        let r = crate::sign::oci::Descriptor::of(crate::manifest::OCI_MANIFEST, b"referrer");
        let listed = index.manifests().iter().any(|d| d.digest == r.digest);
        ensure(index.add(&r) != listed, || {
            "add disagrees with the listing".into()
        })?;
        ensure(!index.add(&r), || {
            "the same referrer was added twice".into()
        })?;
        Ok(Outcome::Accepted)
    });
}

#[test]
fn fuzz_artifact_manifests() {
    run("artifact_manifest", DICT, &|input| {
        let m = match ArtifactManifest::parse(input, "LABEL") {
            Ok(m) => m,
            Err(e) => return named(&e, "LABEL: "),
        };
        let bytes = m.to_bytes();
        let again = ArtifactManifest::parse(&bytes, "rewritten")
            .map_err(|e| format!("pushgate's rewrite does not parse: {e:#}"))?;
        ensure(again == m, || "the manifest changed on a round trip".into())?;
        let d = m.referrer_descriptor();
        ensure(
            d.digest == Digest::of(&bytes) && d.size == bytes.len() as u64,
            || "the referrer descriptor does not name the manifest's bytes".into(),
        )?;
        Ok(Outcome::Accepted)
    });
}

#[test]
fn fuzz_dsse_envelopes() {
    let key = stranger();
    run("dsse_envelope", DICT, &|input| {
        let env = match Envelope::parse(input, "LABEL") {
            Ok(e) => e,
            Err(e) => return named(&e, "LABEL: "),
        };
        let again = Envelope::parse(&env.to_bytes(), "rewritten")
            .map_err(|e| format!("pushgate's rewrite does not parse: {e:#}"))?;
        ensure(again == env, || {
            "the envelope changed on a round trip".into()
        })?;
        match env.verify(&key, "LABEL") {
            Ok(_) => Err("a key that signed nothing verified an envelope".into()),
            Err(e) => named(&e, "LABEL: ").map(|_| Outcome::Accepted),
        }
    });
}

#[test]
fn fuzz_public_keys() {
    let dict: &[&[u8]] = &[
        b"-----BEGIN PUBLIC KEY-----\n",
        b"-----END PUBLIC KEY-----\n",
        b"-----BEGIN EC PRIVATE KEY-----\n",
        b"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE",
        b"=",
    ];
    run("public_key", dict, &|input| {
        let text = String::from_utf8_lossy(input);
        match PublicKey::from_pem(&text, "SRC") {
            Ok(k) => {
                let again = PublicKey::from_pem(&k.to_pem(), "SRC")
                    .map_err(|e| format!("its own PEM does not load: {e:#}"))?;
                ensure(again == k && again.key_id() == k.key_id(), || {
                    "the key changed on a round trip".into()
                })?;
                ensure(
                    !k.verify(b"message", &[0x30, 0x06, 2, 1, 1, 2, 1, 1]),
                    || "a forged signature verified".into(),
                )?;
                Ok(Outcome::Accepted)
            }
            Err(e) => named(&e, "public key SRC: "),
        }
    });
}

#[test]
fn fuzz_signing_keys() {
    let dict: &[&[u8]] = &[
        b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
        b"-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
        b"-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\n",
        b"eyJrZGYiOnsibmFtZSI6InNjcnlwdCIsInBhcmFtcyI6eyJOIjoyLCJyIjoxLCJwIjoxfX0",
        b"=",
    ];
    run("signing_key", dict, &|input| {
        // The corpus keys' passphrase (written with skopeo's
        // --passphrase-file).
        match SigningKey::from_encrypted_pem(input, b"fuzz", "SRC") {
            Ok(k) => {
                let sig = k.sign(b"message");
                ensure(k.public_key().verify(b"message", &sig), || {
                    "a loaded key's signature does not verify".into()
                })?;
                Ok(Outcome::Accepted)
            }
            Err(e) => named(&e, "signing key SRC: "),
        }
    });
}
