//! What the registry holds of a container's evidence: the `.sig` manifest of
//! the list and of every per-arch manifest, and the list's referrers (through
//! the referrers API, or the referrers tag where the registry has none).
//! Reads only. Also: which trusted keys signed a manifest ([`signers`]).

use anyhow::{Context, Result};
use futures_util::{StreamExt, TryStreamExt, stream};

use super::sigcopy::SigCopy;
use super::{DECISION_ANNOTATION, Evidence, KEY_ANNOTATION, Observed, Wanted};
use crate::digest::Digest;
use crate::registry::Repository;
use crate::sign::cosign::{SigManifest, sig_tag};
use crate::sign::dsse::{ENVELOPE_MEDIA_TYPE, IN_TOTO_PAYLOAD_TYPE};
use crate::sign::oci::ArtifactManifest;
use crate::sign::referrers::{ReferrersIndex, referrers_tag};
use crate::sign::trust::{Attested, Signers, TrustedKeys};

/// Reads what `repo` holds of `wanted`'s evidence; `key_id` picks this run's
/// attestations among the list's referrers.
pub async fn observe(repo: &Repository, wanted: &Wanted, key_id: &str) -> Result<Observed> {
    let sigs = stream::iter(&wanted.digests)
        .map(|d| sig_manifest(repo, d))
        .buffered(8)
        .try_collect::<Vec<_>>();
    let (sigs, (index, referrers_api)) =
        futures_util::try_join!(sigs, referrers(repo, wanted.list()))?;
    let attested = index
        .map(|i| {
            i.of_type(IN_TOTO_PAYLOAD_TYPE)
                .into_iter()
                .filter(|d| d.annotations.get(KEY_ANNOTATION).map(String::as_str) == Some(key_id))
                .filter_map(|d| d.annotations.get(DECISION_ANNOTATION).cloned())
                .collect()
        })
        .unwrap_or_default();
    Ok(Observed {
        sigs,
        attested,
        referrers_api,
    })
}

/// Observes and plans the evidence `signer` wants for `wanted`.
pub async fn observe_and_plan(
    repo: &Repository,
    signer: &super::Signer,
    wanted: Wanted,
) -> Result<Evidence> {
    let observed = observe(repo, &wanted, signer.public_key().key_id()).await?;
    let gap = super::plan(signer, &wanted, &observed);
    Ok(Evidence {
        wanted,
        observed,
        gap,
    })
}

/// The `.sig` manifest of `digest`, if its tag exists.
pub async fn sig_manifest(repo: &Repository, digest: &Digest) -> Result<Option<SigManifest>> {
    let tag = sig_tag(digest);
    match repo.get_tag(&tag).await? {
        None => Ok(None),
        Some((_, bytes)) => {
            let label = format!("{}:{tag}", repo.name());
            SigManifest::parse(&bytes, &label)
                .map(Some)
                .context("the signatures already there cannot be read, so none can be added")
        }
    }
}

/// The largest attestation envelope read.
const MAX_ENVELOPE: usize = 1 << 20;

/// Which trusted keys signed `digest` in `repo` (its `.sig` tag, as cosign and
/// containers/image store signatures), for a reference in `repo` (any tag).
/// Nothing there, a `.sig` manifest that cannot be read, a signature that
/// does not verify: facts in the answer. A registry that cannot be read:
/// an error.
pub async fn signers(repo: &Repository, digest: &Digest, keys: &TrustedKeys) -> Result<Signers> {
    Ok(match SigCopy::read(repo, digest).await? {
        None => Signers::default(),
        Some(copy) => copy.check(keys, repo.repo(), digest),
    })
}

/// The most attestations about one manifest read (in each place they may be).
pub const MAX_ATTESTATIONS: usize = 32;

/// The tag where cosign keeps the attestations of the manifest `digest`.
pub fn att_tag(digest: &Digest) -> String {
    format!("sha256-{}.att", digest.hex())
}

/// Which trusted keys attested what about `digest` in `repo`: the in-toto
/// statements in cosign's `.att` tag, and those among the manifest's referrers
/// (OCI 1.1, as cosign's referrers mode and pushgate write them). What cannot
/// be read or does not verify is a fact in the answer; a registry that cannot
/// be read is an error.
pub async fn attestations(
    repo: &Repository,
    digest: &Digest,
    keys: &TrustedKeys,
) -> Result<Attested> {
    let mut envelopes: Vec<(String, Vec<u8>)> = Vec::new();
    let mut unreadable: Vec<String> = Vec::new();
    let tag = att_tag(digest);
    if let Some((_, bytes)) = repo.get_tag(&tag).await? {
        let label = format!("{}:{tag}", repo.name());
        match SigManifest::parse(&bytes, &label) {
            Err(e) => unreadable.push(format!("{e:#}")),
            Ok(att) => {
                for (i, layer) in att
                    .layers()
                    .into_iter()
                    .filter(|l| l.media_type == ENVELOPE_MEDIA_TYPE)
                    .take(MAX_ATTESTATIONS)
                    .enumerate()
                {
                    if let Some(blob) = repo.get_blob(&layer.digest, MAX_ENVELOPE).await? {
                        envelopes.push((format!("{label} attestation {i}"), blob));
                    }
                }
            }
        }
    }
    let (index, _) = referrers(repo, digest).await?;
    for d in index
        .map(|i| i.of_type(IN_TOTO_PAYLOAD_TYPE))
        .unwrap_or_default()
        .into_iter()
        .take(MAX_ATTESTATIONS)
    {
        let Some(fetched) = repo.get_manifest(d.digest.as_str()).await? else {
            continue;
        };
        let label = format!("{}@{}", repo.name(), d.digest);
        let m = match ArtifactManifest::parse(&fetched.bytes, &label) {
            Ok(m) => m,
            Err(e) => {
                unreadable.push(format!("{e:#}"));
                continue;
            }
        };
        let layer = match &m.layers[..] {
            [l] if l.media_type == ENVELOPE_MEDIA_TYPE => l,
            _ => {
                unreadable.push(format!("{label}: not a single DSSE envelope layer"));
                continue;
            }
        };
        if m.subject.as_ref().map(|s| &s.digest) != Some(digest) {
            unreadable.push(format!("{label}: not a referrer of {digest}"));
            continue;
        }
        if let Some(blob) = repo.get_blob(&layer.digest, MAX_ENVELOPE).await? {
            envelopes.push((label, blob));
        }
    }
    let mut found = keys.attested(&envelopes, digest);
    found.invalid.extend(unreadable);
    Ok(found)
}

/// The referrers of `subject`, and whether they came from the referrers API
/// (`false`: from the referrers tag, which the caller then keeps up).
pub async fn referrers(
    repo: &Repository,
    subject: &Digest,
) -> Result<(Option<ReferrersIndex>, bool)> {
    if let Some(bytes) = repo.referrers(subject).await? {
        let label = format!("the referrers of {subject} in {}", repo.name());
        return Ok((Some(ReferrersIndex::parse(&bytes, &label)?), true));
    }
    let tag = referrers_tag(subject);
    match repo.get_tag(&tag).await? {
        None => Ok((None, false)),
        Some((_, bytes)) => {
            let label = format!("{}:{tag}", repo.name());
            Ok((Some(ReferrersIndex::parse(&bytes, &label)?), false))
        }
    }
}
