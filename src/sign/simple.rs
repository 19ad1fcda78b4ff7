//! Sigstore "simple signing": the payload that binds an image reference to a
//! manifest digest, its signature, and its verification.
//!
//! The payload is containers/image's sigstore format (containers-signature(5)
//! with cosign's type string), which cosign writes and verifies too:
//!
//! ```json
//! {"critical":{"identity":{"docker-reference":"quay.io/fedora/fedora-coreos:stable"},
//!              "image":{"docker-manifest-digest":"sha256:…"},
//!              "type":"cosign container image signature"},
//!  "optional":null}
//! ```
//!
//! Verification follows containers/image: the signature is checked first, and
//! only then is the (now trusted) JSON read, strictly: the exact fields above,
//! nothing missing and nothing extra in `critical`.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::key::{PublicKey, SigningKey};
use crate::digest::Digest;
use crate::registry::{Reference, RepoName};

/// The `critical.type` of a cosign container image signature.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PayloadDoc {
    critical: Critical,
    // Required (as null or an object), as containers/image requires it:
    // checked in verify, as serde would take a missing one for null.
    optional: Option<BTreeMap<String, Value>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Critical {
    identity: IdentityDoc,
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityDoc {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// The payload for `reference` (e.g. `quay.io/fedora/fedora-coreos:stable`)
/// at `digest`, with `optional` annotations (cosign's `-a key=value`,
/// containers/image's `creator`/`timestamp`) if any. The same inputs always
/// give the same bytes: `optional` is sorted by key.
pub fn payload(
    reference: &str,
    digest: &Digest,
    optional: Option<&BTreeMap<String, Value>>,
) -> Vec<u8> {
    let doc = PayloadDoc {
        critical: Critical {
            identity: IdentityDoc {
                docker_reference: reference.to_string(),
            },
            image: Image {
                docker_manifest_digest: digest.to_string(),
            },
            kind: SIGNATURE_TYPE.to_string(),
        },
        optional: optional.cloned(),
    };
    serde_json::to_vec(&doc).expect("a payload always serializes")
}

/// A payload and its signature, as a `.sig` layer stores them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub payload: Vec<u8>,
    /// The DER signature, base64 (standard alphabet, padded), as cosign's
    /// `dev.cosignproject.cosign/signature` annotation holds it.
    pub signature: String,
}

/// Signs the payload for `reference` at `digest`.
pub fn sign(
    key: &SigningKey,
    reference: &str,
    digest: &Digest,
    optional: Option<&BTreeMap<String, Value>>,
) -> Signed {
    let payload = payload(reference, digest, optional);
    let signature = BASE64.encode(key.sign(&payload));
    Signed { payload, signature }
}

/// What a verified payload says.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub reference: String,
    pub digest: Digest,
    pub optional: Option<BTreeMap<String, Value>>,
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("the signature is not base64")]
    NotBase64,
    #[error("the signature does not verify with the public key {0}")]
    BadSignature(String),
    #[error("the signed payload is not a simple-signing payload: {0}")]
    BadPayload(String),
    #[error("the signature is of type {0:?}, not {SIGNATURE_TYPE:?}")]
    WrongType(String),
    #[error("the signature is for {found}, not {wanted}")]
    WrongReference { found: String, wanted: String },
    #[error("the signature is for the manifest {found}, not {wanted}")]
    WrongDigest { found: String, wanted: Digest },
}

/// Which references a signature must name to count.
#[derive(Debug, Clone, Copy)]
pub enum Identity<'a> {
    /// Exactly this reference (`REPO:TAG`): what pushgate signs for each tag,
    /// and what `pushgate verify` checks.
    Exact(&'a str),
    /// Any reference in this repository, with or without a tag
    /// (containers/image's `matchRepository`): `cosign sign REPO@DIGEST` names
    /// the repository alone, and a promotion checks a staging image by digest
    /// without knowing which tag its builder signed it for.
    Repository(&'a RepoName),
}

impl Identity<'_> {
    fn accepts(&self, found: &str) -> bool {
        match self {
            Identity::Exact(want) => found == *want,
            Identity::Repository(want) => Reference::parse(found, "the signed reference")
                .is_ok_and(|r| {
                    r.digest.is_none()
                        && r.repo.registry() == want.registry()
                        && r.repo.path() == want.path()
                }),
        }
    }

    fn wanted(&self) -> String {
        match self {
            Identity::Exact(want) => want.to_string(),
            Identity::Repository(want) => format!("the repository {want}"),
        }
    }
}

/// Checks that `signature` (base64) is `key`'s over `payload`, and that the
/// payload names exactly `reference` and `digest`.
pub fn verify(
    key: &PublicKey,
    payload: &[u8],
    signature: &str,
    reference: &str,
    digest: &Digest,
) -> Result<Verified, Rejected> {
    verify_identity(key, payload, signature, &Identity::Exact(reference), digest)
}

/// Checks that `signature` (base64) is `key`'s over `payload`, and that the
/// payload names `digest` and a reference `identity` accepts.
pub fn verify_identity(
    key: &PublicKey,
    payload: &[u8],
    signature: &str,
    identity: &Identity<'_>,
    digest: &Digest,
) -> Result<Verified, Rejected> {
    let sig = BASE64
        .decode(signature.trim())
        .map_err(|_| Rejected::NotBase64)?;
    if !key.verify(payload, &sig) {
        return Err(Rejected::BadSignature(key.source().to_string()));
    }
    let raw: serde_json::Map<String, Value> =
        serde_json::from_slice(payload).map_err(|e| Rejected::BadPayload(e.to_string()))?;
    // serde reads a missing `optional` as null; containers/image requires it.
    if !raw.contains_key("optional") {
        return Err(Rejected::BadPayload("missing field `optional`".into()));
    }
    let doc: PayloadDoc = serde_json::from_value(Value::Object(raw))
        .map_err(|e| Rejected::BadPayload(e.to_string()))?;
    if doc.critical.kind != SIGNATURE_TYPE {
        return Err(Rejected::WrongType(doc.critical.kind));
    }
    let found_digest = doc.critical.image.docker_manifest_digest;
    if found_digest != digest.as_str() {
        return Err(Rejected::WrongDigest {
            found: found_digest,
            wanted: digest.clone(),
        });
    }
    let found_ref = doc.critical.identity.docker_reference;
    if !identity.accepts(&found_ref) {
        return Err(Rejected::WrongReference {
            found: found_ref,
            wanted: identity.wanted(),
        });
    }
    Ok(Verified {
        reference: found_ref,
        digest: digest.clone(),
        optional: doc.optional,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sign::key::SIGSTORE_PRIVATE_KEY_LABEL;
    use crate::sign::key::tests::{encrypt_pem, test_key_der};

    pub(crate) fn key(seed: u8) -> SigningKey {
        let pem = encrypt_pem(&test_key_der(seed), b"", 10, SIGSTORE_PRIVATE_KEY_LABEL);
        SigningKey::from_encrypted_pem(pem.as_bytes(), b"", &format!("key{seed}")).unwrap()
    }

    const REF: &str = "quay.io/fedora/fedora-coreos:stable";

    #[test]
    fn the_payload_is_cosigns_exact_shape() {
        let d = Digest::of(b"list");
        let p = String::from_utf8(payload(REF, &d, None)).unwrap();
        assert_eq!(
            p,
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"{REF}"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"cosign container image signature"}},"optional":null}}"#
            )
        );
        let mut opt = BTreeMap::new();
        opt.insert("z".to_string(), Value::from("last"));
        opt.insert("a".to_string(), Value::from(1));
        let p = String::from_utf8(payload(REF, &d, Some(&opt))).unwrap();
        assert!(p.ends_with(r#""optional":{"a":1,"z":"last"}}"#), "{p}");
    }

    #[test]
    fn a_signature_verifies_for_what_it_names_only() {
        let k = key(1);
        let d = Digest::of(b"list");
        let s = sign(&k, REF, &d, None);
        assert_eq!(s, sign(&k, REF, &d, None), "signing is deterministic");
        let v = verify(k.public_key(), &s.payload, &s.signature, REF, &d).unwrap();
        assert_eq!((v.reference.as_str(), &v.digest), (REF, &d));

        let other = Digest::of(b"other");
        assert!(matches!(
            verify(k.public_key(), &s.payload, &s.signature, REF, &other),
            Err(Rejected::WrongDigest { .. })
        ));
        assert!(matches!(
            verify(
                k.public_key(),
                &s.payload,
                &s.signature,
                "quay.io/fedora/fedora-coreos:next",
                &d
            ),
            Err(Rejected::WrongReference { .. })
        ));
        assert_eq!(
            verify(key(2).public_key(), &s.payload, &s.signature, REF, &d),
            Err(Rejected::BadSignature("key2".into()))
        );
        assert_eq!(
            verify(k.public_key(), &s.payload, "***", REF, &d),
            Err(Rejected::NotBase64)
        );
    }

    #[test]
    fn a_repository_identity_takes_any_tag_of_that_repository_only() {
        let k = key(1);
        let d = Digest::of(b"image");
        let repo = "quay.io/fedora/fedora-coreos".parse::<RepoName>().unwrap();
        let want = Identity::Repository(&repo);
        for signed_for in [
            "quay.io/fedora/fedora-coreos",
            "quay.io/fedora/fedora-coreos:stable",
        ] {
            let s = sign(&k, signed_for, &d, None);
            verify_identity(k.public_key(), &s.payload, &s.signature, &want, &d).unwrap();
        }
        for other in [
            "quay.io/fedora/fedora-coreos-staging:stable",
            "registry.example/fedora/fedora-coreos",
            "quay.io/fedora/fedora-coreos@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "not a reference",
        ] {
            let s = sign(&k, other, &d, None);
            let e = verify_identity(k.public_key(), &s.payload, &s.signature, &want, &d);
            assert!(
                matches!(&e, Err(Rejected::WrongReference { wanted, .. })
                    if wanted == "the repository quay.io/fedora/fedora-coreos"),
                "{other}: {e:?}"
            );
        }
    }

    #[test]
    fn a_tampered_payload_fails_the_signature_check() {
        let k = key(1);
        let d = Digest::of(b"list");
        let s = sign(&k, REF, &d, None);
        let tampered = String::from_utf8(s.payload.clone())
            .unwrap()
            .replace(":stable", ":next")
            .into_bytes();
        assert_eq!(
            verify(
                k.public_key(),
                &tampered,
                &s.signature,
                "quay.io/fedora/fedora-coreos:next",
                &d
            ),
            Err(Rejected::BadSignature("key1".into()))
        );
    }

    #[test]
    fn signed_payloads_of_another_shape_are_refused() {
        let k = key(1);
        let d = Digest::of(b"list");
        let sign_raw = |p: &str| BASE64.encode(k.sign(p.as_bytes()));
        let extra = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"{REF}"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"{SIGNATURE_TYPE}","x":1}},"optional":null}}"#
        );
        let no_optional = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"{REF}"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"{SIGNATURE_TYPE}"}}}}"#
        );
        let other_type = String::from_utf8(payload(REF, &d, None))
            .unwrap()
            .replace(SIGNATURE_TYPE, "atomic container signature");
        for p in [&extra, &no_optional] {
            assert!(matches!(
                verify(k.public_key(), p.as_bytes(), &sign_raw(p), REF, &d),
                Err(Rejected::BadPayload(_))
            ));
        }
        assert!(matches!(
            verify(
                k.public_key(),
                other_type.as_bytes(),
                &sign_raw(&other_type),
                REF,
                &d
            ),
            Err(Rejected::WrongType(_))
        ));
    }
}
