//! Writes a container's missing evidence: the signatures' payloads and the
//! `.sig` manifests that list them (every layer already there kept), then the
//! attestation (its envelope, the empty config, the referrer manifest by
//! digest) and, on a registry without the referrers API, the referrers tag.
//! Called after the list is in the registry and before any tag is moved.

use anyhow::{Context, Result};
use futures_util::{StreamExt, TryStreamExt, stream};

use super::{Gap, Observed};
use crate::digest::Digest;
use crate::manifest::{OCI_INDEX, OCI_MANIFEST};
use crate::registry::Repository;
use crate::sign::attest::Attestation;
use crate::sign::cosign::sig_tag;
use crate::sign::oci::EMPTY_BLOB;
use crate::sign::referrers::{ReferrersIndex, referrers_tag};

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    pub signatures: usize,
    pub attestation: Option<Digest>,
}

/// Writes the signatures `gap` lacks and, if given, `attestation` (a referrer
/// of `list`).
pub async fn apply(
    repo: &Repository,
    gap: &Gap,
    attestation: Option<&Attestation>,
    observed: &Observed,
    list: &Digest,
) -> Result<Written> {
    let mut written = Written::default();
    // The manifests' `.sig` tags are independent of each other: written side
    // by side (each is a few small requests, so their round trips are the cost).
    let counts: Vec<usize> = stream::iter(&gap.sigs)
        .map(|w| async move {
            let tag = sig_tag(&w.digest);
            let doing = || format!("signing: the signatures of {} at {tag}", w.digest);
            for s in &w.added {
                repo.push_blob_bytes(&s.payload).await.with_context(doing)?;
            }
            repo.push_blob_bytes(&w.manifest.config())
                .await
                .with_context(doing)?;
            repo.put_manifest(&tag, OCI_MANIFEST, &w.manifest.to_bytes())
                .await
                .with_context(doing)?;
            Ok::<_, anyhow::Error>(w.added.len())
        })
        .buffer_unordered(4)
        .try_collect()
        .await?;
    written.signatures = counts.into_iter().sum();
    if let Some(att) = attestation {
        let digest = att.digest();
        let doing = || format!("attesting the decision: the referrer {digest} of {list}");
        repo.push_blob_bytes(&att.envelope)
            .await
            .with_context(doing)?;
        repo.push_blob_bytes(EMPTY_BLOB).await.with_context(doing)?;
        repo.put_manifest(digest.as_str(), OCI_MANIFEST, &att.manifest_bytes())
            .await
            .with_context(doing)?;
        if !observed.referrers_api {
            add_to_referrers_tag(repo, list, att)
                .await
                .with_context(doing)?;
        }
        written.attestation = Some(digest);
    }
    Ok(written)
}

/// Keeps the referrers tag schema: reads the index the tag holds now (other
/// tools' entries included), adds the attestation, writes it back.
async fn add_to_referrers_tag(repo: &Repository, list: &Digest, att: &Attestation) -> Result<()> {
    let tag = referrers_tag(list);
    let mut index = match repo.get_tag(&tag).await? {
        Some((_, bytes)) => ReferrersIndex::parse(&bytes, &format!("{}:{tag}", repo.name()))?,
        None => ReferrersIndex::new(),
    };
    if index.add(&att.manifest.referrer_descriptor()) {
        repo.put_manifest(&tag, OCI_INDEX, &index.to_bytes())
            .await?;
    }
    Ok(())
}
