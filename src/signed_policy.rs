//! Signed policies: a policy artifact's signatures, kept where cosign and
//! containers/image keep an image's (the tag `sha256-<hex>.sig` beside it, one
//! simple-signing layer per signature), made by `policy push` with a key
//! ([`publish`]) and required by `--require-signed-policies`
//! ([`fetch_checked`]), as kwctl's `verify` and OPA's signed bundles require
//! theirs. It sits above [`crate::policy::remote`], which fetches and
//! publishes artifacts, and [`crate::sign`] and [`crate::evidence`], which make,
//! write and check signatures.
//!
//! What is verified is a [`SigCopy`] ([`crate::evidence::sigcopy`]): the `.sig` manifest's bytes and the
//! payloads its layers name, read from the registry or from the cache. The
//! cache keeps the copy of an artifact beside the artifact ([`sig_file`],
//! written after the payloads, atomically), so a module served from the cache
//! is verified from the cache, offline. A signature counts when a trusted key
//! made it over a payload naming the artifact's digest and a reference in the
//! module's repository, any tag (a module pinned by digest has no tag to
//! match; `policy push` signs `REGISTRY/REPO:TAG`). [`shown`] says the same
//! of an artifact for `policy inspect`, without requiring anything.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::atomic::{self, PRIVATE};
use crate::digest::Digest;
use crate::evidence::sigcopy::{self, SigCopy};
use crate::evidence::{self, Observed, Wanted};
use crate::policy::PolicyInfo;
use crate::policy::remote::{self, Fetched, OciRef, Published, cache_dir, cached, keep};
use crate::registry::{self, Repository};
use crate::sign::SigningKey;
use crate::sign::cosign::{SigManifest, sig_tag};
use crate::sign::trust::{Signers, TrustedKeys};

/// What `policy push` signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signature {
    /// The reference the signature names, `REGISTRY/REPO:TAG`.
    pub identity: String,
    /// The tag holding the artifact's signatures, `sha256-<hex>.sig`.
    pub tag: String,
    /// The signing key's id (the hex sha256 of its public key).
    pub key_id: String,
    /// Whether this push added it (`false`: that very signature was there).
    pub added: bool,
}

impl SigCopy {
    /// The copy the cache `dir` keeps for the artifact `digest` in `repo`, if any.
    pub fn cached(dir: &Path, repo: &str, digest: &Digest) -> Option<SigCopy> {
        let manifest = fs::read(sig_file(dir, repo, digest)).ok()?;
        let payloads = sigcopy::payload_digests(&manifest)
            .into_iter()
            .filter_map(|d| cached(dir, &d).map(|b| (d, b)))
            .collect();
        Some(SigCopy { manifest, payloads })
    }

    /// Keeps the copy beside the artifact `digest` (of `repo`) in the cache
    /// `dir`: the payloads first, then the manifest (atomically), so a
    /// manifest in the cache has its payloads there. A cache that cannot be
    /// written only costs a read next time.
    pub fn keep(&self, dir: &Path, repo: &str, digest: &Digest) {
        for p in self.payloads.values() {
            if keep(dir, p).is_none() {
                return;
            }
        }
        let _ = atomic::write(&sig_file(dir, repo, digest), &self.manifest, PRIVATE);
    }
}

/// Where the cache keeps the signatures of the artifact `digest` in `repo`:
/// `<hex>.<repo>.sig`, `<repo>` the start of the sha256 of its name (a name no
/// content-addressed entry has). Per repository, because the same artifact
/// has other signatures in another repository (and only those naming its
/// own count there).
pub fn sig_file(dir: &Path, repo: &str, digest: &Digest) -> std::path::PathBuf {
    let repo = Digest::of(repo.as_bytes());
    dir.join(format!("{}.{}.sig", digest.hex(), &repo.hex()[..16]))
}

/// What `policy push` did: the artifact published, and its signature.
#[derive(Debug, Clone, Serialize)]
pub struct Publication {
    #[serde(flatten)]
    pub published: Published,
    /// The artifact's signature by the key given, if one was (`null`: unsigned).
    pub signature: Option<Signature>,
}

/// Publishes a loaded module as `r` ([`remote::publish`]) and, with `key`,
/// signs the artifact for `REGISTRY/REPO:TAG` (unless that very signature is
/// there already), keeping the signature in the cache beside the artifact.
pub async fn publish(
    info: &PolicyInfo,
    module: &[u8],
    r: &OciRef,
    opts: &registry::Options,
    key: Option<&SigningKey>,
) -> Result<Publication> {
    let published = remote::publish(info, module, r, opts).await?;
    let signature = match (key, r.tag()) {
        (Some(key), Some(tag)) => {
            let run = async {
                let repo = Repository::new(r.repo(), opts)?;
                let dir = cache_dir();
                sign(&repo, tag, &published.digest, key, dir.as_deref()).await
            };
            let signed = run
                .await
                .with_context(|| format!("policy push {r}: signing {}", published.digest))?;
            Some(signed)
        }
        _ => None,
    };
    Ok(Publication {
        published,
        signature,
    })
}

/// [`remote::fetch`], and then, when `signed_by` is given, the artifact's
/// signature: it must carry a valid signature by one of those keys, from the
/// registry or, for a module served from the cache, from the cache (see
/// [`require`]); else the error says why, naming the reference.
pub async fn fetch_checked(
    r: &OciRef,
    opts: &registry::Options,
    signed_by: Option<&TrustedKeys>,
) -> Result<Fetched> {
    let mut fetched = remote::fetch(r, opts).await?;
    if let Some(keys) = signed_by {
        let valid = require(&fetched, keys, opts)
            .await
            .with_context(|| format!("policy {}", fetched.label()))?;
        fetched.signed_by = Some(valid);
    }
    Ok(fetched)
}

/// Signs the artifact `digest` in `repo` with `key` for `REPO:TAG`, adding to
/// what its `.sig` tag holds (nothing when that very signature is there:
/// signatures are deterministic), and keeps the result in the cache `dir`.
async fn sign(
    repo: &Repository,
    tag: &str,
    digest: &Digest,
    key: &SigningKey,
    dir: Option<&Path>,
) -> Result<Signature> {
    let wanted = Wanted::new(repo.name(), &[tag.to_string()], digest, &[]);
    let observed = Observed {
        sigs: vec![evidence::observe::sig_manifest(repo, digest).await?],
        ..Observed::default()
    };
    let gap = evidence::plan(key, &wanted, &observed);
    evidence::apply::put_blobs(repo, &gap, None).await?;
    let added = evidence::apply::put_signatures(repo, &gap).await?;
    if let Some(dir) = dir
        && let Some(copy) = SigCopy::read(repo, digest).await?
    {
        copy.keep(dir, repo.name(), digest);
    }
    Ok(Signature {
        identity: format!("{}:{tag}", repo.name()),
        tag: sig_tag(digest),
        key_id: key.public_key().key_id().to_string(),
        added: added > 0,
    })
}

/// Under `--require-signed-policies`: the names of the `keys` with a valid
/// signature on the fetched artifact, or why there is none. A module served
/// from the cache is checked against the signature cached beside it first (no
/// request); otherwise, or when that one does not count, against the
/// registry's, which is then cached. The error names the keys looked for and
/// why each signature found does not count.
pub async fn require(
    f: &Fetched,
    keys: &TrustedKeys,
    opts: &registry::Options,
) -> Result<Vec<String>> {
    let repo_name = f.requested.repo();
    let dir = cache_dir();
    let refused = |why: String| {
        anyhow::anyhow!(
            "--require-signed-policies: no valid signature by a trusted key ({}): {why}",
            keys.describe()
        )
    };
    let mut cached_why = None;
    if f.from_cache {
        match dir
            .as_deref()
            .and_then(|d| SigCopy::cached(d, repo_name.as_str(), &f.digest))
        {
            Some(copy) => {
                let s = copy.check(keys, repo_name, &f.digest);
                if !s.valid.is_empty() {
                    return Ok(s.valid);
                }
                cached_why = Some(format!(
                    "the cached signature does not count ({})",
                    none_counts(&s)
                ));
            }
            None => cached_why = Some("the cache holds no signature of it".to_string()),
        }
    }
    let read = async {
        let repo = Repository::new(repo_name, opts)?;
        SigCopy::read(&repo, &f.digest).await
    };
    let copy = match read.await {
        Ok(copy) => copy,
        Err(e) => {
            let e = format!("{e:#}");
            return Err(match cached_why {
                Some(why) => refused(format!(
                    "{why}, and the registry cannot be read for a fresh one: {e}"
                )),
                None => anyhow::anyhow!(
                    "--require-signed-policies: cannot read the signatures of {} in \
                     {repo_name}: {e}",
                    f.digest
                ),
            });
        }
    };
    let Some(copy) = copy else {
        bail!(refused(format!(
            "{repo_name} holds no signature of {} (no tag {}): sign it with `pushgate policy \
             push MODULE oci://{repo_name}:TAG --sign-by-sigstore-private-key KEY`",
            f.digest,
            sig_tag(&f.digest)
        )));
    };
    if let Some(d) = &dir {
        copy.keep(d, repo_name.as_str(), &f.digest);
    }
    let s = copy.check(keys, repo_name, &f.digest);
    if s.valid.is_empty() {
        bail!(refused(format!(
            "{repo_name}:{}: {}",
            sig_tag(&f.digest),
            none_counts(&s)
        )));
    }
    Ok(s.valid)
}

/// Keeps the registry's signatures of the fetched artifact in the cache
/// (`policy pull`, so that a later run that requires signed policies finds
/// them offline): read unless the artifact came from the cache. Returns
/// whether the cache now holds a signature of it.
pub async fn cache(f: &Fetched, opts: &registry::Options) -> Result<bool> {
    let Some(dir) = cache_dir() else {
        return Ok(false);
    };
    let name = f.requested.repo();
    if !f.from_cache {
        let repo = Repository::new(name, opts)?;
        if let Some(copy) = SigCopy::read(&repo, &f.digest).await? {
            copy.keep(&dir, name.as_str(), &f.digest);
        }
    }
    Ok(sig_file(&dir, name.as_str(), &f.digest).is_file())
}

/// Where [`shown`] read an artifact's signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadFrom {
    /// The copy cached beside a module served from the cache (no request).
    Cache,
    /// The registry (and the copy is then cached).
    Registry,
}

/// An artifact's signatures, as `policy inspect` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shown {
    /// The tag holding them, `sha256-<hex>.sig`.
    pub tag: String,
    pub read_from: ReadFrom,
    /// Whether the tag exists (from the cache: whether the cache holds a copy).
    pub present: bool,
    /// How many signatures the tag lists.
    pub count: usize,
    /// With trusted keys: those with a valid signature (`[]`: none); `None`
    /// without any, when nothing was verified.
    pub signed_by: Option<Vec<String>>,
    /// Why each other signature does not count (with trusted keys; without,
    /// only a `.sig` manifest that cannot be read).
    pub not_counted: Vec<String>,
}

/// The signatures of the fetched artifact, checked with `keys` when given, as
/// [`require`] checks them: for a module served from the cache, the copy
/// cached beside it, with no request (offline, `policy inspect` stays
/// offline); otherwise the registry's, which are then cached.
pub async fn shown(
    f: &Fetched,
    keys: Option<&TrustedKeys>,
    opts: &registry::Options,
) -> Result<Shown> {
    let repo_name = f.requested.repo();
    let dir = cache_dir();
    let (copy, read_from) = if f.from_cache {
        let copy = dir
            .as_deref()
            .and_then(|d| SigCopy::cached(d, repo_name.as_str(), &f.digest));
        (copy, ReadFrom::Cache)
    } else {
        let repo = Repository::new(repo_name, opts)?;
        let copy = SigCopy::read(&repo, &f.digest).await.with_context(|| {
            format!("cannot read the signatures of {} in {repo_name}", f.digest)
        })?;
        if let (Some(c), Some(d)) = (&copy, &dir) {
            c.keep(d, repo_name.as_str(), &f.digest);
        }
        (copy, ReadFrom::Registry)
    };
    let tag = sig_tag(&f.digest);
    let listed = copy
        .as_ref()
        .map(|c| SigManifest::parse(&c.manifest, &format!("{repo_name}:{tag}")));
    let count = match &listed {
        Some(Ok(m)) => m.layers().len(),
        _ => 0,
    };
    let (signed_by, not_counted) = match (keys, &copy) {
        (Some(keys), Some(c)) => {
            let s = c.check(keys, repo_name, &f.digest);
            (Some(s.valid), s.invalid)
        }
        (Some(_), None) => (Some(Vec::new()), Vec::new()),
        (None, _) => match listed {
            Some(Err(e)) => (None, vec![format!("{e:#}")]),
            _ => (None, Vec::new()),
        },
    };
    Ok(Shown {
        tag,
        read_from,
        present: copy.is_some(),
        count,
        signed_by,
        not_counted,
    })
}

/// Why no signature counts: each one's reason, or that there are none.
fn none_counts(s: &Signers) -> String {
    if s.invalid.is_empty() {
        "it lists no signature".to_string()
    } else {
        s.invalid.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::registry::RepoName;
    use crate::sign::simple;

    fn keys(seeds: &[(&str, u8)]) -> (tempfile::TempDir, TrustedKeys) {
        let dir = tempfile::tempdir().unwrap();
        let pairs: Vec<_> = seeds
            .iter()
            .map(|(name, seed)| {
                let path = dir.path().join(format!("{name}.pub"));
                let pem = simple::tests::key(*seed).public_key().to_pem();
                fs::write(&path, pem).unwrap();
                (name.to_string(), path)
            })
            .collect();
        let keys = TrustedKeys::load(&pairs, "--trust-key").unwrap();
        (dir, keys)
    }

    /// A copy holding `key`'s signature of `digest` for `reference`.
    fn copy(seed: u8, reference: &str, digest: &Digest) -> SigCopy {
        let signed = simple::sign(&simple::tests::key(seed), reference, digest, None);
        let mut m = SigManifest::new();
        m.add(std::slice::from_ref(&signed));
        SigCopy {
            manifest: m.to_bytes(),
            payloads: [(Digest::of(&signed.payload), signed.payload)].into(),
        }
    }

    fn repo() -> RepoName {
        "r.example/policies/kv".parse().unwrap()
    }

    #[test]
    fn a_signature_by_a_trusted_key_for_any_tag_of_the_repository_counts() {
        let (_d, keys) = keys(&[("build", 1), ("release", 2)]);
        let art = Digest::of(b"artifact");
        let s = copy(2, "r.example/policies/kv:1.0", &art).check(&keys, &repo(), &art);
        assert_eq!(s.valid, ["release"]);
        assert!(s.invalid.is_empty(), "{s:?}");
    }

    #[test]
    fn other_keys_repositories_digests_and_damage_do_not_count_and_say_why() {
        let (_d, keys) = keys(&[("build", 1)]);
        let art = Digest::of(b"artifact");
        let other_key = copy(9, "r.example/policies/kv:1.0", &art).check(&keys, &repo(), &art);
        assert!(other_key.valid.is_empty());
        assert!(
            other_key.invalid[0].contains("none of the trusted keys (build)"),
            "{other_key:?}"
        );
        let other_repo = copy(1, "r.example/policies/other:1.0", &art).check(&keys, &repo(), &art);
        assert!(other_repo.valid.is_empty());
        assert!(
            other_repo.invalid[0].contains("r.example/policies/other:1.0"),
            "{other_repo:?}"
        );
        let other_digest =
            copy(1, "r.example/policies/kv:1.0", &Digest::of(b"else")).check(&keys, &repo(), &art);
        assert!(other_digest.valid.is_empty(), "{other_digest:?}");
        // a payload missing, a manifest that is not one
        let mut no_payload = copy(1, "r.example/policies/kv:1.0", &art);
        no_payload.payloads.clear();
        let s = no_payload.check(&keys, &repo(), &art);
        assert!(
            s.valid.is_empty() && s.invalid[0].contains("not given"),
            "{s:?}"
        );
        let garbage = SigCopy {
            manifest: b"{not json".to_vec(),
            payloads: BTreeMap::new(),
        };
        let s = garbage.check(&keys, &repo(), &art);
        assert!(s.valid.is_empty() && s.invalid.len() == 1, "{s:?}");
        assert!(none_counts(&s).contains("sha256-"), "{s:?}");
    }

    #[test]
    fn the_cache_keeps_a_copy_beside_the_artifact_and_gives_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let art = Digest::of(b"artifact");
        let kv = "r.example/policies/kv";
        assert_eq!(SigCopy::cached(dir.path(), kv, &art), None);
        let c = copy(1, "r.example/policies/kv:1.0", &art);
        c.keep(dir.path(), kv, &art);
        assert_eq!(SigCopy::cached(dir.path(), kv, &art), Some(c.clone()));
        assert!(sig_file(dir.path(), kv, &art).is_file());
        // another repository's copy of the same artifact is its own
        assert_eq!(SigCopy::cached(dir.path(), "r.example/other", &art), None);
        assert_ne!(
            sig_file(dir.path(), kv, &art),
            sig_file(dir.path(), "r.example/other", &art)
        );
        // a payload damaged in the cache is dropped, and the check says so
        let (payload, _) = c.payloads.iter().next().unwrap();
        fs::write(dir.path().join(payload.hex()), b"tampered").unwrap();
        let back = SigCopy::cached(dir.path(), kv, &art).unwrap();
        assert!(back.payloads.is_empty());
        let (_d, keys) = keys(&[("build", 1)]);
        assert!(back.check(&keys, &repo(), &art).valid.is_empty());
    }
}
