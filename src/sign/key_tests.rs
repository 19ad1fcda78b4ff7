use super::*;
use p256::pkcs8::EncodePrivateKey;

/// A fixed P-256 key for tests (any scalar below the group order).
pub(crate) fn test_key_der(seed: u8) -> Vec<u8> {
    let key = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap();
    key.to_pkcs8_der().unwrap().as_bytes().to_vec()
}

/// Writes `der` the way cosign does: scrypt + nacl/secretbox, JSON, PEM.
/// (The interop tests check the same against the sigstore crate's writer.)
pub(crate) fn encrypt_pem(der: &[u8], passphrase: &[u8], log_n: u8, label: &str) -> String {
    let salt = [7u8; 32];
    let nonce = [9u8; 24];
    let params = scrypt::Params::new(log_n, 8, 1).unwrap();
    let mut key = [0u8; 32];
    scrypt::scrypt(passphrase, &salt, &params, &mut key).unwrap();
    let ct = XSalsa20Poly1305::new(&key.into())
        .encrypt(&nonce.into(), der)
        .unwrap();
    let body = serde_json::json!({
        "kdf": {"name": "scrypt", "params": {"N": 1u64 << log_n, "r": 8, "p": 1},
                "salt": BASE64.encode(salt)},
        "cipher": {"name": "nacl/secretbox", "nonce": BASE64.encode(nonce)},
        "ciphertext": BASE64.encode(ct),
    });
    pem_block(label, serde_json::to_string(&body).unwrap().as_bytes())
}

fn pem_block(label: &str, body: &[u8]) -> String {
    pem::encode_string(label, LineEnding::LF, body).unwrap()
}

/// The PEM of an encrypted key whose JSON body is `edit`ed first.
fn edited(edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let pem = encrypt_pem(&test_key_der(1), b"pw", 10, SIGSTORE_PRIVATE_KEY_LABEL);
    let (_, body) = pem::decode_vec(pem.as_bytes()).unwrap();
    let mut doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    edit(&mut doc);
    pem_block(
        SIGSTORE_PRIVATE_KEY_LABEL,
        serde_json::to_string(&doc).unwrap().as_bytes(),
    )
}

fn load_err(pem: &str, passphrase: &[u8]) -> String {
    format!(
        "{:#}",
        SigningKey::from_encrypted_pem(pem.as_bytes(), passphrase, "keys/cosign.key").unwrap_err()
    )
}

#[test]
fn an_encrypted_key_loads_under_either_label_and_signs() {
    for label in [SIGSTORE_PRIVATE_KEY_LABEL, COSIGN_PRIVATE_KEY_LABEL] {
        let pem = encrypt_pem(&test_key_der(3), b"secret", 10, label);
        let key = SigningKey::from_encrypted_pem(pem.as_bytes(), b"secret", "k").unwrap();
        let sig = key.sign(b"payload");
        assert!(key.public_key().verify(b"payload", &sig));
        assert!(!key.public_key().verify(b"payload!", &sig));
        // RFC 6979: the same bytes signed twice give the same signature.
        assert_eq!(sig, key.sign(b"payload"));
        let expected = p256::ecdsa::SigningKey::from_slice(&[3; 32]).unwrap();
        let spki = expected.verifying_key().to_public_key_der().unwrap();
        assert_eq!(
            key.public_key().key_id(),
            hex::encode(Sha256::digest(spki.as_bytes()))
        );
    }
}

#[test]
fn cosigns_largest_scrypt_parameters_are_within_the_limits() {
    let pem = encrypt_pem(&test_key_der(4), b"pw", 16, SIGSTORE_PRIVATE_KEY_LABEL);
    assert!(SigningKey::from_encrypted_pem(pem.as_bytes(), b"pw", "k").is_ok());
}

#[test]
fn an_empty_passphrase_is_a_passphrase_like_any_other() {
    let pem = encrypt_pem(&test_key_der(2), b"", 10, SIGSTORE_PRIVATE_KEY_LABEL);
    assert!(SigningKey::from_encrypted_pem(pem.as_bytes(), b"", "k").is_ok());
    assert!(load_err(&pem, b"x").contains("wrong passphrase"));
}

#[test]
fn a_wrong_passphrase_names_the_file() {
    let pem = encrypt_pem(&test_key_der(1), b"right", 10, SIGSTORE_PRIVATE_KEY_LABEL);
    let err = load_err(&pem, b"wrong");
    assert!(
        err.contains("keys/cosign.key") && err.contains("wrong passphrase"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_no_key_says_what_it_is() {
    let err = load_err("hello", b"");
    assert!(
        err.contains("keys/cosign.key") && err.contains("not a PEM"),
        "{err}"
    );
    let err = load_err(&pem_block("CERTIFICATE", b"x"), b"");
    assert!(err.contains("\"CERTIFICATE\""), "{err}");
    let err = load_err(&pem_block("PRIVATE KEY", &test_key_der(1)), b"");
    assert!(err.contains("unencrypted"), "{err}");
    let err = load_err(&pem_block(SIGSTORE_PRIVATE_KEY_LABEL, b"{not json"), b"");
    assert!(err.contains("malformed encrypted key"), "{err}");
}

/// An edit of a key file's JSON, and what the error it causes says.
type Case = (fn(&mut serde_json::Value), &'static str);

#[test]
fn malformed_fields_are_named() {
    let cases: [Case; 5] = [
        (
            |d| d["kdf"]["salt"] = "%%%".into(),
            "kdf.salt is not base64",
        ),
        (
            |d| d["cipher"]["nonce"] = "AAAA".into(),
            "cipher.nonce is 3 bytes",
        ),
        (
            |d| d["kdf"]["params"] = serde_json::Value::Null,
            "no params",
        ),
        (
            |d| {
                d.as_object_mut().unwrap().remove("ciphertext");
            },
            "malformed encrypted key",
        ),
        (|d| d["ciphertext"] = "AAAA".into(), "wrong passphrase"),
    ];
    for (edit, expected) in cases {
        let err = load_err(&edited(edit), b"pw");
        assert!(
            err.contains("keys/cosign.key") && err.contains(expected),
            "{expected}: {err}"
        );
    }
}

#[test]
fn unsupported_kdf_and_cipher_are_refused() {
    let err = load_err(&edited(|d| d["kdf"]["name"] = "argon2".into()), b"pw");
    assert!(err.contains("key derivation \"argon2\""), "{err}");
    let err = load_err(
        &edited(|d| d["cipher"]["name"] = "aes-256-gcm".into()),
        b"pw",
    );
    assert!(err.contains("cipher \"aes-256-gcm\""), "{err}");
}

#[test]
fn hostile_scrypt_parameters_are_refused_before_any_work() {
    // 2^30 · 8 · 128 bytes would be 1 TiB: refused by arithmetic, not by trying.
    let err = load_err(
        &edited(|d| d["kdf"]["params"]["N"] = (1u64 << 30).into()),
        b"pw",
    );
    assert!(
        err.contains("MiB of memory") && err.contains("keys/cosign.key"),
        "{err}"
    );
    let err = load_err(
        &edited(|d| d["kdf"]["params"]["r"] = 1_000_000u64.into()),
        b"pw",
    );
    assert!(err.contains("MiB of memory"), "{err}");
    // Within the memory limit, but p multiplies the time.
    let err = load_err(
        &edited(|d| {
            d["kdf"]["params"]["N"] = 65536u64.into();
            d["kdf"]["params"]["p"] = 64u64.into();
        }),
        b"pw",
    );
    assert!(err.contains("rounds of work"), "{err}");
    // The first N over the limit at cosign's r = 8.
    let err = load_err(
        &edited(|d| d["kdf"]["params"]["N"] = (1u64 << 18).into()),
        b"pw",
    );
    assert!(err.contains("MiB of memory"), "{err}");
    let err = load_err(&edited(|d| d["kdf"]["params"]["N"] = 1000u64.into()), b"pw");
    assert!(err.contains("not a power of two"), "{err}");
    let err = load_err(&edited(|d| d["kdf"]["params"]["p"] = 0u64.into()), b"pw");
    assert!(err.contains("at least 1"), "{err}");
}

/// The PKCS#8 and SubjectPublicKeyInfo of an Ed25519 key (RFC 8410).
const ED25519_PKCS8_PREFIX: &str = "302e020100300506032b657004220420";
const ED25519_SPKI_PREFIX: &str = "302a300506032b6570032100";

/// A PKCS#8 and a SubjectPublicKeyInfo that name ECDSA on P-384 (their key
/// bytes are placeholders: the algorithm is refused before they are read).
const P384_PKCS8: &str = "301c020100301006072a8648ce3d020106052b8104002204053003020101";
const P384_SPKI: &str = "3016301006072a8648ce3d020106052b8104002203020004";

#[test]
fn keys_on_other_curves_are_named() {
    let der = hex::decode(P384_PKCS8).unwrap();
    let pem = encrypt_pem(&der, b"pw", 10, SIGSTORE_PRIVATE_KEY_LABEL);
    let err = load_err(&pem, b"pw");
    assert!(err.contains("an ECDSA key on P-384"), "{err}");
    let der = hex::decode(P384_SPKI).unwrap();
    let err = PublicKey::from_pem(&pem_block("PUBLIC KEY", &der), "p384.pub")
        .unwrap_err()
        .to_string();
    assert!(err.contains("an ECDSA key on P-384"), "{err}");
}

#[test]
fn keys_of_other_algorithms_are_named() {
    let der = hex::decode(format!("{ED25519_PKCS8_PREFIX}{}", "11".repeat(32))).unwrap();
    let pem = encrypt_pem(&der, b"pw", 10, SIGSTORE_PRIVATE_KEY_LABEL);
    let err = load_err(&pem, b"pw");
    assert!(
        err.contains("an Ed25519 key") && err.contains("P-256"),
        "{err}"
    );

    let der = hex::decode(format!("{ED25519_SPKI_PREFIX}{}", "11".repeat(32))).unwrap();
    let err = PublicKey::from_pem(&pem_block("PUBLIC KEY", &der), "cosign.pub")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cosign.pub") && err.contains("an Ed25519 key"),
        "{err}"
    );
}

#[test]
fn public_keys_load_from_pem_files() {
    let dir = tempfile::tempdir().unwrap();
    let pem = encrypt_pem(&test_key_der(5), b"pw", 10, SIGSTORE_PRIVATE_KEY_LABEL);
    let key_path = dir.path().join("cosign.key");
    std::fs::write(&key_path, &pem).unwrap();
    let key = SigningKey::load(&key_path, b"pw").unwrap();
    let pub_path = dir.path().join("cosign.pub");
    std::fs::write(&pub_path, key.public_key().to_pem()).unwrap();
    let public = PublicKey::load(&pub_path).unwrap();
    assert_eq!(&public, key.public_key());
    assert_eq!(public.key_id(), key.public_key().key_id());
    assert!(public.verify(b"m", &key.sign(b"m")));
    assert!(!public.verify(b"m", b"not DER"));

    let missing = dir.path().join("nope.pub");
    let err = format!("{:#}", PublicKey::load(&missing).unwrap_err());
    assert!(err.contains("nope.pub"), "{err}");
    let err = format!(
        "{:#}",
        SigningKey::load(&dir.path().join("nope.key"), b"").unwrap_err()
    );
    assert!(err.contains("nope.key"), "{err}");
    let err = PublicKey::from_pem(&pem, "k.pub").unwrap_err().to_string();
    assert!(
        err.contains("k.pub") && err.contains("not a \"PUBLIC KEY\""),
        "{err}"
    );
}

#[test]
fn passphrase_files_give_their_first_line_as_skopeo_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[u8], &[u8]); 5] = [
        (b"secret\n", b"secret"),
        (b"secret", b"secret"),
        (b"first\nsecond\n", b"first"),
        (b"dos\r\n", b"dos\r"),
        (b"", b""),
    ];
    for (content, expected) in cases {
        let path = dir.path().join("pass");
        std::fs::write(&path, content).unwrap();
        assert_eq!(&read_passphrase_file(&path).unwrap()[..], expected);
    }
    let err = format!(
        "{:#}",
        read_passphrase_file(&dir.path().join("missing")).unwrap_err()
    );
    assert!(
        err.contains("passphrase file") && err.contains("missing"),
        "{err}"
    );
}
