//! DSSE (Dead Simple Signing Envelope, secure-systems-lab/dsse v1): a payload,
//! its type, and signatures over both.
//!
//! ```json
//! {"payloadType":"application/vnd.in-toto+json","payload":"<base64>",
//!  "signatures":[{"keyid":"<hint>","sig":"<base64>"}]}
//! ```
//!
//! Each signature covers the pre-authentication encoding
//! `PAE = "DSSEv1" SP LEN(type) SP type SP LEN(payload) SP payload` (lengths in
//! bytes, ASCII decimal), never the JSON, so the envelope's own bytes are not
//! what is trusted: [`Envelope::verify`] hands back the payload only once a
//! signature over it verified.

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

use super::key::{PublicKey, SigningKey};

/// The payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The media type of a DSSE envelope stored as a blob (cosign's `.att` layers,
/// and the layer of a DSSE attestation referrer).
pub const ENVELOPE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";

/// The pre-authentication encoding of `payload_type` and `payload`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Base64 of the payload.
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// A hint naming the key (unauthenticated: never a reason to trust).
    #[serde(default)]
    pub keyid: String,
    /// Base64 of the signature over the PAE.
    pub sig: String,
}

impl Envelope {
    /// Signs `payload` of `payload_type` with `key`.
    pub fn sign(key: &SigningKey, payload_type: &str, payload: &[u8]) -> Envelope {
        let sig = key.sign(&pae(payload_type, payload));
        Envelope {
            payload_type: payload_type.to_string(),
            payload: STANDARD.encode(payload),
            signatures: vec![EnvelopeSignature {
                keyid: key.public_key().key_id().to_string(),
                sig: STANDARD.encode(sig),
            }],
        }
    }

    /// Compact JSON: the blob that is stored.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope always serializes")
    }

    /// Parses an envelope; `label` names its source in errors.
    pub fn parse(bytes: &[u8], label: &str) -> Result<Envelope> {
        serde_json::from_slice(bytes).with_context(|| format!("{label}: malformed DSSE envelope"))
    }

    /// The payload, once a signature by `key` over it verified; `label` names
    /// the envelope in errors. Signatures by other keys are passed over.
    pub fn verify(&self, key: &PublicKey, label: &str) -> Result<Vec<u8>> {
        let payload = decode(&self.payload)
            .with_context(|| format!("{label}: the DSSE payload is not base64"))?;
        let message = pae(&self.payload_type, &payload);
        let valid = self
            .signatures
            .iter()
            .filter_map(|s| decode(&s.sig).ok())
            .any(|sig| key.verify(&message, &sig));
        if !valid {
            bail!(
                "{label}: none of the envelope's {} signature(s) verifies with the public key {}",
                self.signatures.len(),
                key.source()
            );
        }
        Ok(payload)
    }
}

/// Base64 as DSSE allows it: standard or URL-safe alphabet.
fn decode(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    STANDARD
        .decode(s)
        .or_else(|_| URL_SAFE.decode(s))
        .or_else(|_| URL_SAFE_NO_PAD.decode(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::simple::tests::key;

    #[test]
    fn pae_is_the_specs_example() {
        // secure-systems-lab/dsse protocol.md, "Test Vectors".
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        // Lengths count bytes, not characters.
        assert_eq!(pae("t", "é".as_bytes()), "DSSEv1 1 t 2 é".as_bytes());
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
    }

    #[test]
    fn an_envelope_verifies_and_yields_its_payload() {
        let k = key(1);
        let env = Envelope::sign(&k, IN_TOTO_PAYLOAD_TYPE, b"{\"a\":1}");
        let parsed = Envelope::parse(&env.to_bytes(), "t").unwrap();
        assert_eq!(parsed, env);
        assert_eq!(parsed.signatures[0].keyid, k.public_key().key_id());
        assert_eq!(parsed.verify(k.public_key(), "t").unwrap(), b"{\"a\":1}");
        let raw: serde_json::Value = serde_json::from_slice(&env.to_bytes()).unwrap();
        assert_eq!(raw["payloadType"], IN_TOTO_PAYLOAD_TYPE);
        assert_eq!(raw["payload"], STANDARD.encode(b"{\"a\":1}"));
    }

    #[test]
    fn tampering_with_payload_or_type_breaks_it() {
        let k = key(1);
        let env = Envelope::sign(&k, IN_TOTO_PAYLOAD_TYPE, b"{\"a\":1}");
        let mut other_payload = env.clone();
        other_payload.payload = STANDARD.encode(b"{\"a\":2}");
        let mut other_type = env.clone();
        other_type.payload_type = "application/json".into();
        for bad in [other_payload, other_type] {
            let err = bad
                .verify(k.public_key(), "att.json")
                .unwrap_err()
                .to_string();
            assert!(err.contains("att.json") && err.contains("key1"), "{err}");
        }
        assert!(env.verify(key(2).public_key(), "t").is_err());
    }

    #[test]
    fn any_one_valid_signature_among_others_will_do() {
        let (k1, k2) = (key(1), key(2));
        let mut env = Envelope::sign(&k2, IN_TOTO_PAYLOAD_TYPE, b"p");
        env.signatures.push(EnvelopeSignature {
            keyid: String::new(),
            sig: "!!".into(),
        });
        env.signatures
            .extend(Envelope::sign(&k1, IN_TOTO_PAYLOAD_TYPE, b"p").signatures);
        assert_eq!(env.verify(k1.public_key(), "t").unwrap(), b"p");
        // URL-safe base64 is DSSE too.
        let mut url = env.clone();
        url.payload = URL_SAFE_NO_PAD.encode(b"p");
        assert_eq!(url.verify(k1.public_key(), "t").unwrap(), b"p");
    }
}
