//! pushgate's signing against an implementation that is not its own: the
//! Sigstore project's Rust crate `sigstore` makes the keys (as cosign makes
//! them) and checks the signatures with its OpenSSL backend, which shares no
//! code with the RustCrypto crates pushgate signs with.
//!
//! Go cosign's key files have the same shape: go-securesystemslib's
//! `encrypted` package writes `{"kdf":{"name":"scrypt","params":{"N":65536,
//! "r":8,"p":1},"salt":…},"cipher":{"name":"nacl/secretbox","nonce":…},
//! "ciphertext":…}` (as the cosign-generated key in sigstore-rs's test data
//! decodes to), and the crate writes that with N = 32768, which
//! `the_key_file_has_cosigns_shape` pins down.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use pushgate::digest::Digest;
use pushgate::sign::cosign::{SIGNATURE_ANNOTATION, SigManifest};
use pushgate::sign::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use pushgate::sign::simple::{self, Rejected};
use pushgate::sign::{PublicKey, SigningKey, read_passphrase_file};
use sigstore::crypto::signing_key::SigStoreKeyPair;
use sigstore::crypto::signing_key::ecdsa::{ECDSAKeys, EllipticCurve};
use sigstore::crypto::{CosignVerificationKey, Signature, SigningScheme};

const REF: &str = "quay.io/fedora/fedora-coreos:stable";
const PASSPHRASE: &[u8] = b"correct horse battery staple";

/// A key pair as `cosign generate-key-pair` writes it: cosign.key, cosign.pub,
/// and a passphrase file as `--sign-passphrase-file` takes it.
pub(crate) struct CosignKeys {
    _dir: tempfile::TempDir,
    pub(crate) key: PathBuf,
    pub(crate) public: PathBuf,
    pub(crate) passphrase_file: PathBuf,
    pair: SigStoreKeyPair,
}

pub(crate) fn cosign_keys() -> CosignKeys {
    let dir = tempfile::tempdir().unwrap();
    let (key, public, passphrase_file, pair) = write_cosign_keys(dir.path());
    CosignKeys {
        _dir: dir,
        key,
        public,
        passphrase_file,
        pair,
    }
}

/// Writes `cosign.key`, `cosign.pub` and `passphrase` into `dir`, as cosign and
/// a pipeline's secret would hold them.
impl CosignKeys {
    /// `message` signed by the Sigstore crate (not pushgate's code), DER.
    pub(crate) fn sigstore_sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair
            .to_sigstore_signer(&SigningScheme::ECDSA_P256_SHA256_ASN1)
            .unwrap()
            .sign(message)
            .unwrap()
    }
}

pub(crate) fn write_cosign_keys(dir: &Path) -> (PathBuf, PathBuf, PathBuf, SigStoreKeyPair) {
    let pair = SigStoreKeyPair::ECDSA(ECDSAKeys::new(EllipticCurve::P256).unwrap());
    let key = dir.join("cosign.key");
    let public = dir.join("cosign.pub");
    let passphrase_file = dir.join("passphrase");
    std::fs::write(
        &key,
        pair.private_key_to_encrypted_pem(PASSPHRASE)
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    std::fs::write(&public, pair.public_key_to_pem().unwrap()).unwrap();
    let mut line = PASSPHRASE.to_vec();
    line.push(b'\n');
    std::fs::write(&passphrase_file, line).unwrap();
    (key, public, passphrase_file, pair)
}

pub(crate) fn sigstore_verifier(public: &Path) -> CosignVerificationKey {
    CosignVerificationKey::from_pem(
        &std::fs::read(public).unwrap(),
        &SigningScheme::ECDSA_P256_SHA256_ASN1,
    )
    .unwrap()
}

#[test]
fn the_key_file_has_cosigns_shape() {
    let keys = cosign_keys();
    let pem = std::fs::read_to_string(&keys.key).unwrap();
    // The crate's PEM writer ends lines with CRLF; Go's with LF: both load.
    assert_eq!(
        pem.lines().next(),
        Some("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")
    );
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let doc: serde_json::Value = serde_json::from_slice(&BASE64.decode(body).unwrap()).unwrap();
    let keys_of = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys_of(&doc), ["cipher", "ciphertext", "kdf"]);
    assert_eq!(keys_of(&doc["kdf"]), ["name", "params", "salt"]);
    assert_eq!(keys_of(&doc["kdf"]["params"]), ["N", "p", "r"]);
    assert_eq!(keys_of(&doc["cipher"]), ["name", "nonce"]);
    assert_eq!(doc["kdf"]["name"], "scrypt");
    assert_eq!(doc["cipher"]["name"], "nacl/secretbox");
    assert_eq!(
        (
            doc["kdf"]["params"]["r"].as_u64(),
            doc["kdf"]["params"]["p"].as_u64()
        ),
        (Some(8), Some(1))
    );
}

#[test]
fn a_key_made_as_cosign_makes_it_signs_what_sigstore_verifies() {
    let keys = cosign_keys();
    let passphrase = read_passphrase_file(&keys.passphrase_file).unwrap();
    let key = SigningKey::load(&keys.key, &passphrase).unwrap();
    let public = PublicKey::load(&keys.public).unwrap();
    assert_eq!(&public, key.public_key());

    let digest = Digest::of(b"the manifest list");
    let signed = simple::sign(&key, REF, &digest, None);
    let theirs = sigstore_verifier(&keys.public);
    theirs
        .verify_signature(
            Signature::Base64Encoded(signed.signature.as_bytes()),
            &signed.payload,
        )
        .expect("sigstore accepts pushgate's signature");
    simple::verify(&public, &signed.payload, &signed.signature, REF, &digest).unwrap();

    // And the other way: signatures by the sigstore crate (OpenSSL, random
    // nonces, high or low S as they fall) verify in pushgate.
    let signer = keys
        .pair
        .to_sigstore_signer(&SigningScheme::ECDSA_P256_SHA256_ASN1)
        .unwrap();
    for _ in 0..16 {
        let sig = BASE64.encode(signer.sign(&signed.payload).unwrap());
        simple::verify(&public, &signed.payload, &sig, REF, &digest).unwrap();
    }
}

#[test]
fn every_layer_of_a_sig_manifest_verifies_with_sigstore() {
    let keys = cosign_keys();
    let key = SigningKey::load(&keys.key, PASSPHRASE).unwrap();
    let digest = Digest::of(b"the manifest list");
    let signed: Vec<_> = ["stable", "43.20261206.3.0"]
        .iter()
        .map(|tag| {
            let reference = format!("quay.io/fedora/fedora-coreos:{tag}");
            simple::sign(&key, &reference, &digest, None)
        })
        .collect();
    let mut manifest = SigManifest::new();
    manifest.add(&signed);
    let reread = SigManifest::parse(&manifest.to_bytes(), "t").unwrap();
    let theirs = sigstore_verifier(&keys.public);
    let layers = reread.layers();
    assert_eq!(layers.len(), 2);
    for (layer, s) in layers.iter().zip(&signed) {
        assert_eq!(layer.digest, Digest::of(&s.payload));
        let sig = &layer.annotations[SIGNATURE_ANNOTATION];
        theirs
            .verify_signature(Signature::Base64Encoded(sig.as_bytes()), &s.payload)
            .unwrap();
    }
}

#[test]
fn a_wrong_passphrase_fails_naming_the_file() {
    let keys = cosign_keys();
    let err = format!(
        "{:#}",
        SigningKey::load(&keys.key, b"Tr0ub4dor&3").unwrap_err()
    );
    assert!(
        err.contains(&keys.key.display().to_string()) && err.contains("wrong passphrase"),
        "{err}"
    );
    // The passphrase file's newline is not part of the passphrase.
    let mut with_newline = PASSPHRASE.to_vec();
    with_newline.push(b'\n');
    assert!(SigningKey::load(&keys.key, &with_newline).is_err());
}

#[test]
fn a_tampered_payload_fails_pushgates_check_and_sigstores() {
    let keys = cosign_keys();
    let key = SigningKey::load(&keys.key, PASSPHRASE).unwrap();
    let digest = Digest::of(b"the manifest list");
    let signed = simple::sign(&key, REF, &digest, None);
    let other = Digest::of(b"another list");
    let tampered = String::from_utf8(signed.payload.clone())
        .unwrap()
        .replace(digest.as_str(), other.as_str())
        .into_bytes();
    assert_ne!(tampered, signed.payload);
    assert!(matches!(
        simple::verify(key.public_key(), &tampered, &signed.signature, REF, &other),
        Err(Rejected::BadSignature(_))
    ));
    assert!(
        sigstore_verifier(&keys.public)
            .verify_signature(
                Signature::Base64Encoded(signed.signature.as_bytes()),
                &tampered
            )
            .is_err()
    );
}

/// The sigstore crate verifies DSSE only inside Sigstore bundles (its
/// `bundle` feature, with Fulcio and Rekor); its PAE is not public. So the
/// envelope's signature is checked with its key over the PAE as the DSSE
/// spec writes it, spelled out here rather than taken from pushgate.
#[test]
fn a_dsse_envelope_signature_verifies_with_sigstore() {
    let keys = cosign_keys();
    let key = SigningKey::load(&keys.key, PASSPHRASE).unwrap();
    let statement = br#"{"_type":"https://in-toto.io/Statement/v1"}"#;
    let env = Envelope::sign(&key, IN_TOTO_PAYLOAD_TYPE, statement);
    let env = Envelope::parse(&env.to_bytes(), "t").unwrap();
    let payload = BASE64.decode(&env.payload).unwrap();
    let mut pae = format!(
        "DSSEv1 {} {} {} ",
        IN_TOTO_PAYLOAD_TYPE.len(),
        IN_TOTO_PAYLOAD_TYPE,
        payload.len()
    )
    .into_bytes();
    pae.extend_from_slice(&payload);
    let theirs = sigstore_verifier(&keys.public);
    theirs
        .verify_signature(
            Signature::Base64Encoded(env.signatures[0].sig.as_bytes()),
            &pae,
        )
        .unwrap();
    assert!(
        theirs
            .verify_signature(
                Signature::Base64Encoded(env.signatures[0].sig.as_bytes()),
                statement
            )
            .is_err(),
        "the signature is over the PAE, not the bare payload"
    );
    assert_eq!(env.verify(key.public_key(), "t").unwrap(), statement);
}
