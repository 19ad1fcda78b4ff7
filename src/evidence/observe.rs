//! What the registry holds of a container's evidence: the `.sig` manifest of
//! the list and of every per-arch manifest, and the list's referrers (through
//! the referrers API, or the referrers tag where the registry has none).
//! Reads only.

use anyhow::{Context, Result};
use futures_util::{StreamExt, TryStreamExt, stream};

use super::{DECISION_ANNOTATION, KEY_ANNOTATION, Observed, Wanted};
use crate::digest::Digest;
use crate::registry::Repository;
use crate::sign::cosign::{SigManifest, sig_tag};
use crate::sign::dsse::IN_TOTO_PAYLOAD_TYPE;
use crate::sign::referrers::{ReferrersIndex, referrers_tag};

/// Reads what `repo` holds of `wanted`'s evidence; `key_id` picks this run's
/// attestations among the list's referrers.
pub async fn observe(repo: &Repository, wanted: &Wanted, key_id: &str) -> Result<Observed> {
    let sigs = stream::iter(&wanted.digests)
        .map(|d| sig_manifest(repo, d))
        .buffered(8)
        .try_collect()
        .await?;
    let (index, referrers_api) = referrers(repo, wanted.list()).await?;
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
