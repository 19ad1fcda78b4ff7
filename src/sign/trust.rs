//! The keys the host may verify with: `--trust-key NAME=FILE.pub` (repeatable)
//! and a release config's `[trust-keys]` table.
//!
//! Keys are named so that everything past the host (policy facts, settings,
//! attestations, messages) speaks of names, never of key bytes: a policy says
//! "signed by `build`", and which key `build` is stays host configuration.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Result, bail};

use super::attest::verify_envelope;
use super::cosign::{LayerError, SigManifest};
use super::dsse::Envelope;
use super::key::PublicKey;
use super::simple::{Identity, Rejected};
use crate::digest::Digest;

/// The longest key name.
pub const MAX_NAME_CHARS: usize = 64;

/// One trusted key and the name it goes by.
#[derive(Debug, Clone, PartialEq)]
pub struct TrustedKey {
    pub name: String,
    pub key: PublicKey,
}

/// The trusted keys of a run, in the order given; names are unique.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrustedKeys(Arc<Vec<TrustedKey>>);

/// What the signatures of one manifest say, checked with the trusted keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signers {
    /// The names of the trusted keys with a valid signature, in trust order.
    pub valid: Vec<String>,
    /// Why each signature that counts for none of them does not: a layer that
    /// verifies with no trusted key, a trusted key's signature of something
    /// else, a payload missing.
    pub invalid: Vec<String>,
}

/// One trusted key's verdict on one signature layer.
type KeyVerdict<'a> = (&'a str, Result<(), LayerError>);

/// What the attestations about one manifest say, checked with the trusted keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attested {
    /// Per predicate type (in the order first found), the names of the trusted
    /// keys that signed such a statement about the manifest.
    pub by_type: Vec<(String, Vec<String>)>,
    /// Why each other attestation found does not count.
    pub invalid: Vec<String>,
}

/// Checks a key name: 1 to [`MAX_NAME_CHARS`] of ASCII letters, digits, `.`,
/// `_` and `-`, starting with a letter or digit (it appears in facts, settings
/// and messages, so it must be plain).
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        bail!(
            "key name {name:?}: use 1 to {MAX_NAME_CHARS} letters, digits, '.', '_' or '-', \
             starting with a letter or digit"
        );
    }
    Ok(())
}

/// Parses `NAME=FILE` (the form only: the file is read by [`TrustedKeys::load`]).
pub fn parse_arg(arg: &str) -> Result<(String, PathBuf)> {
    let Some((name, file)) = arg.split_once('=') else {
        bail!("--trust-key {arg}: expected NAME=FILE.pub, e.g. build=keys/build.pub");
    };
    check_name(name).map_err(|e| anyhow::anyhow!("--trust-key {arg}: {e}"))?;
    if file.is_empty() {
        bail!("--trust-key {arg}: no public key file after '='");
    }
    Ok((name.to_string(), PathBuf::from(file)))
}

impl TrustedKeys {
    /// Reads each named key file. `what` names where the pairs came from in
    /// errors (`--trust-key`, or the release config's file).
    pub fn load(pairs: &[(String, PathBuf)], what: &str) -> Result<TrustedKeys> {
        let mut keys: Vec<TrustedKey> = Vec::new();
        for (name, file) in pairs {
            check_name(name).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
            if keys.iter().any(|k| &k.name == name) {
                bail!("{what}: the key name {name:?} is given twice");
            }
            let key = PublicKey::load(file)
                .map_err(|e| anyhow::anyhow!("{what}: trusted key {name:?}: {e:#}"))?;
            keys.push(TrustedKey {
                name: name.clone(),
                key,
            });
        }
        Ok(TrustedKeys(Arc::new(keys)))
    }

    /// `self`'s keys, then those of `more` whose names `self` does not have:
    /// flags given on the command line win over a config's keys of the same
    /// name.
    pub fn or(&self, more: &TrustedKeys) -> TrustedKeys {
        let mut keys = self.0.as_ref().clone();
        for k in more.iter() {
            if !keys.iter().any(|have| have.name == k.name) {
                keys.push(k.clone());
            }
        }
        TrustedKeys(Arc::new(keys))
    }

    pub fn iter(&self) -> impl Iterator<Item = &TrustedKey> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The names, in order.
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|k| k.name.clone()).collect()
    }

    /// The key of `name`.
    pub fn get(&self, name: &str) -> Option<&PublicKey> {
        self.0.iter().find(|k| k.name == name).map(|k| &k.key)
    }

    /// Checks every signature `sigs` holds for `digest` (and a reference
    /// `identity` accepts) with every trusted key. `blob` gives a layer's
    /// payload by digest.
    pub fn check(
        &self,
        sigs: &SigManifest,
        blob: impl Fn(&Digest) -> Option<Vec<u8>>,
        identity: &Identity<'_>,
        digest: &Digest,
    ) -> Signers {
        let mut out = Signers::default();
        // Per layer (as the manifest numbers them), the verdict of each key.
        let mut by_layer: std::collections::BTreeMap<usize, Vec<KeyVerdict<'_>>> =
            Default::default();
        for k in self.iter() {
            for (i, r) in sigs.check_identity(&blob, &k.key, identity, digest) {
                by_layer
                    .entry(i)
                    .or_default()
                    .push((k.name.as_str(), r.map(|_| ())));
            }
        }
        for (i, verdicts) in &by_layer {
            let mut counted = false;
            for (name, r) in verdicts {
                if r.is_ok() {
                    counted = true;
                    if !out.valid.iter().any(|v| v == name) {
                        out.valid.push(name.to_string());
                    }
                }
            }
            if counted {
                continue;
            }
            // A trusted key's signature of something else says most; then an
            // error of the layer itself; else no trusted key made it.
            let signed_by = verdicts.iter().find(|(_, r)| {
                matches!(r, Err(LayerError::Rejected(e)) if !matches!(e, Rejected::BadSignature(_) | Rejected::NotBase64))
            });
            let why = match (signed_by, verdicts.first()) {
                (Some((name, Err(e))), _) => format!("signature {i}: by {name}, but {e}"),
                (_, Some((_, Err(LayerError::Rejected(Rejected::BadSignature(_))))))
                | (_, None) => {
                    format!(
                        "signature {i}: made by none of the trusted keys ({})",
                        self.names().join(", ")
                    )
                }
                (_, Some((_, Err(e)))) => format!("signature {i}: {e}"),
                (_, Some((_, Ok(())))) => unreachable!("a valid layer is counted"),
            };
            out.invalid.push(why);
        }
        out
    }

    /// Checks attestation envelopes (DSSE blobs, each with a label naming
    /// where it was found) about `digest` with every trusted key.
    pub fn attested(&self, envelopes: &[(String, Vec<u8>)], digest: &Digest) -> Attested {
        let mut out = Attested::default();
        for (label, blob) in envelopes {
            let mut counted = false;
            for k in self.iter() {
                let Ok(statement) = verify_envelope(blob, &k.key, digest, label) else {
                    continue;
                };
                counted = true;
                let ptype = statement.predicate_type;
                match out.by_type.iter_mut().find(|(t, _)| *t == ptype) {
                    Some((_, keys)) if keys.contains(&k.name) => {}
                    Some((_, keys)) => keys.push(k.name.clone()),
                    None => out.by_type.push((ptype, vec![k.name.clone()])),
                }
            }
            if !counted {
                // Say why in the words of the envelope, not of a key file:
                // policies see key names only.
                let why = match Envelope::parse(blob, label) {
                    Err(e) => format!("{e:#}"),
                    Ok(_) => format!(
                        "{label}: signed by none of the trusted keys ({}), or not a statement \
                         about {digest}",
                        self.names().join(", ")
                    ),
                };
                out.invalid.push(why);
            }
        }
        out
    }

    /// Where the keys came from, for messages: `build (keys/build.pub), …`.
    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(|k| format!("{} ({})", k.name, k.key.source()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn names_are_plain() {
        for ok in ["build", "a", "build-2026.key_1", "X9"] {
            check_name(ok).unwrap();
        }
        let long = "k".repeat(MAX_NAME_CHARS + 1);
        for bad in [
            "",
            "-lead",
            ".x",
            "with space",
            "é",
            "a/b",
            "a=b",
            long.as_str(),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_flag_is_name_equals_file() {
        assert_eq!(
            parse_arg("build=keys/build.pub").unwrap(),
            ("build".into(), PathBuf::from("keys/build.pub"))
        );
        // only the first '=' splits: a file name may hold one
        assert_eq!(
            parse_arg("b=a=b.pub").unwrap(),
            ("b".into(), PathBuf::from("a=b.pub"))
        );
        let e = parse_arg("keys/build.pub").unwrap_err().to_string();
        assert!(e.contains("expected NAME=FILE.pub"), "{e}");
        assert!(parse_arg("build=").is_err());
        assert!(parse_arg("=x.pub").is_err());
    }

    fn write_key(dir: &Path, name: &str, seed: u8) -> PathBuf {
        let key = crate::sign::simple::tests::key(seed);
        let path = dir.join(name);
        std::fs::write(&path, key.public_key().to_pem()).unwrap();
        path
    }

    #[test]
    fn keys_load_by_name_and_a_name_is_given_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_key(dir.path(), "a.pub", 1);
        let b = write_key(dir.path(), "b.pub", 2);
        let keys = TrustedKeys::load(
            &[("build".into(), a.clone()), ("release".into(), b.clone())],
            "--trust-key",
        )
        .unwrap();
        assert_eq!(keys.names(), ["build", "release"]);
        assert!(keys.get("build").is_some() && keys.get("other").is_none());
        assert_ne!(keys.get("build"), keys.get("release"));

        let e = TrustedKeys::load(
            &[("build".into(), a.clone()), ("build".into(), b)],
            "--trust-key",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("\"build\" is given twice"), "{e}");

        let missing = dir.path().join("none.pub");
        let e = format!(
            "{:#}",
            TrustedKeys::load(&[("x".into(), missing)], "--trust-key").unwrap_err()
        );
        assert!(
            e.contains("trusted key \"x\"") && e.contains("none.pub"),
            "{e}"
        );
    }

    #[test]
    fn flags_win_over_a_configs_keys_of_the_same_name() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_key(dir.path(), "a.pub", 1);
        let b = write_key(dir.path(), "b.pub", 2);
        let flags = TrustedKeys::load(&[("build".into(), a.clone())], "flags").unwrap();
        let config = TrustedKeys::load(
            &[("build".into(), b.clone()), ("other".into(), b)],
            "config",
        )
        .unwrap();
        let both = flags.or(&config);
        assert_eq!(both.names(), ["build", "other"]);
        assert_eq!(both.get("build"), flags.get("build"));
    }

    #[test]
    fn signatures_count_for_the_trusted_keys_that_made_them_and_the_rest_say_why() {
        use crate::registry::RepoName;
        use crate::sign::simple::sign;
        let dir = tempfile::tempdir().unwrap();
        let keys = TrustedKeys::load(
            &[
                ("build".into(), write_key(dir.path(), "a.pub", 1)),
                ("release".into(), write_key(dir.path(), "b.pub", 3)),
            ],
            "--trust-key",
        )
        .unwrap();
        let (build, stranger) = (
            crate::sign::simple::tests::key(1),
            crate::sign::simple::tests::key(2),
        );
        let repo: RepoName = "registry.example/staging/os".parse().unwrap();
        let image = Digest::of(b"image");
        let signatures = [
            sign(&stranger, "registry.example/staging/os", &image, None),
            sign(&build, "registry.example/staging/os:x86_64", &image, None),
            sign(
                &build,
                "registry.example/staging/os",
                &Digest::of(b"other"),
                None,
            ),
            sign(&build, "registry.example/elsewhere/os", &image, None),
            sign(&build, "registry.example/staging/os", &image, None),
        ];
        let mut sigs = SigManifest::new();
        sigs.add(&signatures);
        let payloads: std::collections::HashMap<Digest, Vec<u8>> = signatures
            .iter()
            .map(|s| (Digest::of(&s.payload), s.payload.clone()))
            .collect();
        let got = keys.check(
            &sigs,
            |d| payloads.get(d).cloned(),
            &Identity::Repository(&repo),
            &image,
        );
        assert_eq!(got.valid, ["build"]);
        assert_eq!(got.invalid.len(), 3, "{:?}", got.invalid);
        assert_eq!(
            got.invalid[0],
            "signature 0: made by none of the trusted keys (build, release)"
        );
        assert!(
            got.invalid[1]
                .starts_with("signature 2: by build, but the signature is for the manifest"),
            "{}",
            got.invalid[1]
        );
        assert!(
            got.invalid[2].contains(
                "signature 3: by build, but the signature is for registry.example/elsewhere/os"
            ),
            "{}",
            got.invalid[2]
        );

        // a payload the registry did not give is a fact too
        let none = keys.check(&sigs, |_| None, &Identity::Repository(&repo), &image);
        assert!(none.valid.is_empty());
        assert_eq!(none.invalid.len(), 5);
        assert!(
            none.invalid[0].contains("was not given"),
            "{}",
            none.invalid[0]
        );
    }
}
