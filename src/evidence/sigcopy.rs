//! A manifest's signatures as bytes: its `.sig` manifest (the tag
//! `sha256-<hex>.sig`, as cosign and containers/image keep them) and the
//! payloads its signature layers name, read bounded; then checked against the
//! trusted keys. What the host verifies for a policy's facts
//! ([`super::observe::signers`]) and for a signed policy module (which also
//! keeps the copy in its cache, `crate::signed_policy`).

use std::collections::BTreeMap;

use anyhow::Result;
use futures_util::{StreamExt, TryStreamExt, stream};

use crate::digest::Digest;
use crate::registry::{RepoName, Repository};
use crate::sign::cosign::{SIMPLESIGNING_MEDIA_TYPE, SigManifest, sig_tag};
use crate::sign::simple::Identity;
use crate::sign::trust::{Signers, TrustedKeys};

/// The most signature layers of one manifest whose payloads are read.
pub const MAX_SIGNATURES: usize = 64;
/// The largest signature payload read (a payload is a few hundred bytes).
pub const MAX_PAYLOAD: usize = 64 << 10;

/// The `.sig` manifest of a manifest and the payloads its signature layers
/// name, as bytes: what is verified, and what a cache keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigCopy {
    pub manifest: Vec<u8>,
    pub payloads: BTreeMap<Digest, Vec<u8>>,
}

impl SigCopy {
    /// The signatures of `digest` in `repo`: `None` when its `.sig` tag does
    /// not exist. Payloads the registry lacks are left out (the check says so).
    pub async fn read(repo: &Repository, digest: &Digest) -> Result<Option<SigCopy>> {
        let Some((_, manifest)) = repo.get_tag(&sig_tag(digest)).await? else {
            return Ok(None);
        };
        let payloads = stream::iter(payload_digests(&manifest))
            .map(|d| async move {
                let blob = repo.get_blob(&d, MAX_PAYLOAD).await?;
                Ok::<_, anyhow::Error>(blob.map(|b| (d, b)))
            })
            .buffered(8)
            .try_collect::<Vec<_>>()
            .await?
            .into_iter()
            .flatten()
            .collect();
        Ok(Some(SigCopy { manifest, payloads }))
    }

    /// Which of `keys` signed `digest` for a reference in `repo` (any tag), and
    /// why each other signature does not count. A manifest that cannot be
    /// read is one such why.
    pub fn check(&self, keys: &TrustedKeys, repo: &RepoName, digest: &Digest) -> Signers {
        let label = format!("{repo}:{}", sig_tag(digest));
        let sigs = match SigManifest::parse(&self.manifest, &label) {
            Ok(sigs) => sigs,
            Err(e) => {
                return Signers {
                    valid: Vec::new(),
                    invalid: vec![format!("{e:#}")],
                };
            }
        };
        let mut found = keys.check(
            &sigs,
            |d| self.payloads.get(d).cloned(),
            &Identity::Repository(repo),
            digest,
        );
        let layers = sigs.layers().len();
        if layers > MAX_SIGNATURES {
            // The payloads of those past the bound were not read: each is the
            // last of the invalid ones, as "not given"; one line says so.
            let unread = layers - MAX_SIGNATURES;
            found
                .invalid
                .truncate(found.invalid.len().saturating_sub(unread));
            found.invalid.push(format!(
                "{label} holds {layers} signatures; those past the first {MAX_SIGNATURES} \
                 were not checked"
            ));
        }
        found
    }
}

/// The payload digests of the signature layers a `.sig` manifest lists (the
/// first [`MAX_SIGNATURES`] of them), or none if it cannot be read.
pub fn payload_digests(manifest: &[u8]) -> Vec<Digest> {
    SigManifest::parse(manifest, "")
        .map(|m| {
            m.layers()
                .into_iter()
                .filter(|l| l.media_type == SIMPLESIGNING_MEDIA_TYPE)
                .take(MAX_SIGNATURES)
                .map(|l| l.digest)
                .collect()
        })
        .unwrap_or_default()
}
