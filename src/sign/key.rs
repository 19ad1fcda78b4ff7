//! Signing keys and public keys, as the files `cosign generate-key-pair` and
//! `skopeo generate-sigstore-key` write them, and the passphrase file.
//!
//! The private key file is a PEM block `ENCRYPTED SIGSTORE PRIVATE KEY` (cosign
//! before 2.0: `ENCRYPTED COSIGN PRIVATE KEY`) whose body is JSON:
//!
//! ```json
//! {"kdf": {"name": "scrypt", "params": {"N": 65536, "r": 8, "p": 1}, "salt": "<base64>"},
//!  "cipher": {"name": "nacl/secretbox", "nonce": "<base64, 24 bytes>"},
//!  "ciphertext": "<base64>"}
//! ```
//!
//! The secretbox key is scrypt(passphrase, salt, N, r, p) (32 bytes), and the
//! plaintext is the PKCS#8 DER of an ECDSA P-256 key. This is the shape of
//! go-securesystemslib's `encrypted` package, which Go cosign and
//! containers/image write through, and of the Rust `sigstore` crate's `kdf`
//! module. The public key is a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
//!
//! Signatures are ECDSA P-256 over SHA-256, ASN.1 DER. Signing uses RFC 6979
//! nonces, so signing the same bytes with the same key gives the same
//! signature: a rerun re-derives exactly the signatures already published and
//! adds nothing (cosign's Go signer draws a random nonce; both verify alike).

use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use crypto_secretbox::XSalsa20Poly1305;
use crypto_secretbox::aead::{Aead, KeyInit};
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::pkcs8::der::asn1::ObjectIdentifier;
use p256::pkcs8::der::pem;
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, LineEnding};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// The PEM label of the private key cosign 2 and skopeo write.
pub const SIGSTORE_PRIVATE_KEY_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// The PEM label cosign 1 wrote; the body is the same.
pub const COSIGN_PRIVATE_KEY_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";

/// The most memory scrypt may be asked for (128·r·N bytes, plus 128·r·p).
/// cosign writes N = 32768 or 65536 with r = 8: 32 or 64 MiB. The parameters
/// come from the key file, so a hostile file must not make pushgate allocate
/// gigabytes: up to N = 131072 at r = 8 (twice cosign's largest) fits.
pub const MAX_SCRYPT_MEMORY: u64 = 256 << 20;
/// The most work scrypt may be asked for (N·r·p, its running time): sixteen
/// times cosign's largest (a few seconds here), so a file cannot make the run
/// hang in the key derivation either.
pub const MAX_SCRYPT_WORK: u64 = 65536 * 8 * 16;

const SECRETBOX_NONCE_LEN: usize = 24;
const SECRETBOX_KEY_LEN: usize = 32;

/// Reads a passphrase file as skopeo's `--sign-passphrase-file` does
/// (containers/common `ReadPassphraseFile`, after gpg): the first line, with
/// its `\n` removed and nothing else (a `\r` before it stays part of the
/// passphrase). An empty file is the empty passphrase.
pub fn read_passphrase_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open the passphrase file {}", path.display()))?;
    // Up to the first newline only, so a pipe or FIFO need not be closed.
    let mut line = Zeroizing::new(Vec::new());
    BufReader::new(file)
        .read_until(b'\n', &mut line)
        .with_context(|| format!("cannot read the passphrase file {}", path.display()))?;
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    Ok(line)
}

/// An ECDSA P-256 private key, decrypted.
pub struct SigningKey {
    key: p256::ecdsa::SigningKey,
    public: PublicKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret: the file it came from and its public key's id.
        f.debug_struct("SigningKey")
            .field("source", &self.public.source)
            .field("key_id", &self.public.key_id)
            .finish()
    }
}

#[derive(Deserialize)]
struct EncryptedKey {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Deserialize)]
struct Kdf {
    name: String,
    #[serde(default)]
    params: Option<ScryptParams>,
    #[serde(default)]
    salt: Option<String>,
}

#[derive(Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u64,
    p: u64,
}

#[derive(Deserialize)]
struct Cipher {
    name: String,
    #[serde(default)]
    nonce: Option<String>,
}

impl SigningKey {
    /// Reads and decrypts the private key file at `path` with `passphrase`
    /// (empty when the key was made without one).
    pub fn load(path: &Path, passphrase: &[u8]) -> Result<SigningKey> {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read the signing key {}", path.display()))?;
        SigningKey::from_encrypted_pem(&pem, passphrase, &path.display().to_string())
    }

    /// Decrypts an encrypted private key PEM; `source` names it in errors.
    pub fn from_encrypted_pem(pem: &[u8], passphrase: &[u8], source: &str) -> Result<SigningKey> {
        let what = format!("signing key {source}");
        let (label, body) =
            pem::decode_vec(pem).map_err(|e| anyhow::anyhow!("{what}: not a PEM file ({e})"))?;
        let body = Zeroizing::new(body);
        match label {
            SIGSTORE_PRIVATE_KEY_LABEL | COSIGN_PRIVATE_KEY_LABEL => {}
            "PRIVATE KEY" | "EC PRIVATE KEY" => bail!(
                "{what}: an unencrypted {label}; pushgate reads the encrypted key \
                 ({SIGSTORE_PRIVATE_KEY_LABEL}) that `cosign generate-key-pair` or \
                 `skopeo generate-sigstore-key` writes"
            ),
            other => bail!(
                "{what}: a PEM {other:?} block, not an {SIGSTORE_PRIVATE_KEY_LABEL} \
                 (as `cosign generate-key-pair` or `skopeo generate-sigstore-key` writes)"
            ),
        }
        let doc: EncryptedKey = serde_json::from_slice(&body)
            .map_err(|e| anyhow::anyhow!("{what}: malformed encrypted key ({e})"))?;
        let der = decrypt(&doc, passphrase).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        let key = p256::ecdsa::SigningKey::from_pkcs8_der(&der).map_err(|e| {
            let found = p256::pkcs8::PrivateKeyInfoRef::try_from(&der[..])
                .map(|info| {
                    describe_algorithm(
                        info.algorithm.oid,
                        info.algorithm
                            .parameters
                            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok()),
                    )
                })
                .unwrap_or_else(|_| format!("an unreadable PKCS#8 key ({e})"));
            anyhow::anyhow!(
                "{what}: decrypts to {found}; pushgate signs with ECDSA P-256 keys only \
                 (what cosign and skopeo generate)"
            )
        })?;
        let public = PublicKey::from_verifying_key(*key.verifying_key(), source);
        Ok(SigningKey { key, public })
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `message`: ECDSA P-256 over its SHA-256, ASN.1 DER.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let sig: p256::ecdsa::Signature = self.key.sign(message);
        sig.to_der().as_bytes().to_vec()
    }
}

/// Checks the key file's parameters, derives the secretbox key and opens it.
/// Errors are phrased for "signing key FILE: …".
fn decrypt(doc: &EncryptedKey, passphrase: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if doc.kdf.name != "scrypt" {
        bail!(
            "unsupported key derivation {:?} (pushgate reads scrypt, which cosign and skopeo write)",
            doc.kdf.name
        );
    }
    if doc.cipher.name != "nacl/secretbox" {
        bail!(
            "unsupported cipher {:?} (pushgate reads nacl/secretbox, which cosign and skopeo write)",
            doc.cipher.name
        );
    }
    let Some(params) = &doc.kdf.params else {
        bail!("malformed encrypted key: the scrypt kdf has no params");
    };
    let log_n = check_scrypt(params)?;
    let salt = decode_b64(doc.kdf.salt.as_deref(), "kdf.salt")?;
    if salt.is_empty() {
        bail!("malformed encrypted key: kdf.salt is empty");
    }
    let nonce = decode_b64(doc.cipher.nonce.as_deref(), "cipher.nonce")?;
    let nonce: [u8; SECRETBOX_NONCE_LEN] = nonce.as_slice().try_into().map_err(|_| {
        anyhow::anyhow!(
            "malformed encrypted key: cipher.nonce is {} bytes (nacl/secretbox takes {SECRETBOX_NONCE_LEN})",
            nonce.len()
        )
    })?;
    let ciphertext = decode_b64(Some(&doc.ciphertext), "ciphertext")?;

    // check_scrypt bounds r and p far below what Params refuses.
    let scrypt_params = scrypt::Params::new(log_n, params.r as u32, params.p as u32)
        .map_err(|e| anyhow::anyhow!("scrypt parameters refused ({e})"))?;
    let mut key = Zeroizing::new([0u8; SECRETBOX_KEY_LEN]);
    scrypt::scrypt(passphrase, &salt, &scrypt_params, &mut key[..])
        .expect("a 32-byte scrypt output is always valid");
    let cipher = XSalsa20Poly1305::new(&(*key).into());
    cipher
        .decrypt(&nonce.into(), ciphertext.as_slice())
        .map(Zeroizing::new)
        .map_err(|_| {
            anyhow::anyhow!(
                "does not decrypt: wrong passphrase (check --sign-passphrase-file), \
                 or the file was altered"
            )
        })
}

/// Refuses scrypt parameters that are invalid or would cost more than the
/// limits; returns log2(N).
fn check_scrypt(p: &ScryptParams) -> Result<u8> {
    if p.n < 2 || !p.n.is_power_of_two() {
        bail!("scrypt N = {} is not a power of two above 1", p.n);
    }
    if p.r == 0 || p.p == 0 {
        bail!("scrypt r = {} and p = {} must both be at least 1", p.r, p.p);
    }
    let (n, r, pp) = (p.n as u128, p.r as u128, p.p as u128);
    let memory = 128 * r * n + 128 * r * pp;
    if memory > MAX_SCRYPT_MEMORY as u128 {
        bail!(
            "scrypt parameters N = {}, r = {}, p = {} would need {} MiB of memory; pushgate \
             allows {} MiB (cosign's keys need 32 or 64)",
            p.n,
            p.r,
            p.p,
            memory >> 20,
            MAX_SCRYPT_MEMORY >> 20
        );
    }
    if n * r * pp > MAX_SCRYPT_WORK as u128 {
        bail!(
            "scrypt parameters N = {}, r = {}, p = {} ask for N·r·p = {} rounds of work; \
             pushgate allows {MAX_SCRYPT_WORK} (cosign's keys ask for at most 524288)",
            p.n,
            p.r,
            p.p,
            n * r * pp
        );
    }
    Ok(p.n.trailing_zeros() as u8)
}

fn decode_b64(value: Option<&str>, field: &str) -> Result<Vec<u8>> {
    let value = value.with_context(|| format!("malformed encrypted key: no {field}"))?;
    BASE64
        .decode(value)
        .map_err(|e| anyhow::anyhow!("malformed encrypted key: {field} is not base64 ({e})"))
}

/// Names a key algorithm for an error: "an RSA key", "an ECDSA key on P-384"...
fn describe_algorithm(oid: ObjectIdentifier, curve: Option<ObjectIdentifier>) -> String {
    let curve_name = |c: ObjectIdentifier| match c.to_string().as_str() {
        "1.2.840.10045.3.1.7" => "P-256".to_string(),
        "1.3.132.0.34" => "P-384".to_string(),
        "1.3.132.0.35" => "P-521".to_string(),
        "1.3.132.0.10" => "secp256k1".to_string(),
        other => format!("the curve {other}"),
    };
    match oid.to_string().as_str() {
        "1.2.840.10045.2.1" => match curve {
            Some(c) => format!("an ECDSA key on {}", curve_name(c)),
            None => "an ECDSA key without a named curve".to_string(),
        },
        "1.2.840.113549.1.1.1" => "an RSA key".to_string(),
        "1.3.101.112" => "an Ed25519 key".to_string(),
        other => format!("a key of algorithm {other}"),
    }
}

/// An ECDSA P-256 public key.
#[derive(Clone)]
pub struct PublicKey {
    key: p256::ecdsa::VerifyingKey,
    key_id: String,
    source: String,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("source", &self.source)
            .field("key_id", &self.key_id)
            .finish()
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &PublicKey) -> bool {
        self.key == other.key
    }
}

impl PublicKey {
    /// Reads a PEM `PUBLIC KEY` file (as `cosign generate-key-pair` writes
    /// `cosign.pub`).
    pub fn load(path: &Path) -> Result<PublicKey> {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the public key {}", path.display()))?;
        PublicKey::from_pem(&pem, &path.display().to_string())
    }

    /// Parses a PEM `PUBLIC KEY`; `source` names it in errors.
    pub fn from_pem(pem: &str, source: &str) -> Result<PublicKey> {
        let what = format!("public key {source}");
        let (label, der) = pem::decode_vec(pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("{what}: not a PEM file ({e})"))?;
        if label != PUBLIC_KEY_LABEL {
            bail!("{what}: a PEM {label:?} block, not a {PUBLIC_KEY_LABEL:?}");
        }
        let key = p256::ecdsa::VerifyingKey::from_public_key_der(&der).map_err(|e| {
            let found = p256::pkcs8::spki::SubjectPublicKeyInfoRef::try_from(&der[..])
                .map(|info| {
                    describe_algorithm(
                        info.algorithm.oid,
                        info.algorithm
                            .parameters
                            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok()),
                    )
                })
                .unwrap_or_else(|_| format!("an unreadable SubjectPublicKeyInfo ({e})"));
            anyhow::anyhow!("{what}: {found}; pushgate verifies ECDSA P-256 keys only")
        })?;
        Ok(PublicKey::from_verifying_key(key, source))
    }

    fn from_verifying_key(key: p256::ecdsa::VerifyingKey, source: &str) -> PublicKey {
        let der = key
            .to_public_key_der()
            .expect("a P-256 public key always encodes");
        PublicKey {
            key,
            key_id: hex::encode(Sha256::digest(der.as_bytes())),
            source: source.to_string(),
        }
    }

    /// Whether `signature` (ASN.1 DER) is this key's ECDSA P-256 signature over
    /// the SHA-256 of `message`. High-S signatures verify: Go's signer makes them.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        p256::ecdsa::Signature::from_der(signature)
            .is_ok_and(|sig| self.key.verify(message, &sig).is_ok())
    }

    /// The hex SHA-256 of the key's SubjectPublicKeyInfo DER: the DSSE `keyid`
    /// pushgate writes, a hint for choosing among keys (never trusted).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The file (or other source) the key came from, for messages.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The key as a PEM `PUBLIC KEY`.
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .expect("a P-256 public key always encodes")
    }
}

#[cfg(test)]
#[path = "key_tests.rs"]
pub(crate) mod tests;
