//! Observe: what the registry holds now. Reads only (GET and HEAD).
//!
//! [`signatures`] observes what a policy is told of signatures.

pub mod signatures;

use anyhow::Result;
use futures_util::{StreamExt, TryStreamExt, stream};

use crate::digest::Digest;
use crate::manifest;
use crate::plan::{Desired, Presence, TagState};
use crate::registry::Repository;

/// What every tag serves, in the order given.
pub async fn tags(repo: &Repository, tags: &[String]) -> Result<Vec<TagState>> {
    stream::iter(tags)
        .map(|tag| async move {
            let current = repo
                .get_tag(tag)
                .await?
                .map(|(digest, bytes)| (digest, manifest::parse_remote(&bytes, None)));
            Ok(TagState {
                tag: tag.clone(),
                current,
            })
        })
        .buffered(8)
        .try_collect()
        .await
}

/// Which of the desired blobs and manifests the repository already has.
///
/// One HEAD each, all in one stream and many at a time: a HEAD costs the
/// registry a lookup, and against a distant registry these round trips are
/// what a fresh push waits for before its first upload.
pub async fn presence(repo: &Repository, desired: &Desired, jobs: usize) -> Result<Presence> {
    let mut blobs: Vec<&Digest> = desired
        .images
        .iter()
        .flat_map(|i| &i.blobs)
        .map(|b| &b.digest)
        .collect();
    blobs.sort();
    blobs.dedup();
    let manifests = desired
        .images
        .iter()
        .map(|i| &i.descriptor.digest)
        .chain(std::iter::once(&desired.list_digest));
    let asks = blobs
        .into_iter()
        .map(|d| (Kind::Blob, d))
        .chain(manifests.map(|d| (Kind::Manifest, d)));
    let width = (jobs * 4).max(16);
    let found: Vec<Option<(Kind, Digest)>> = stream::iter(asks)
        .map(|(kind, d)| async move {
            let present = match kind {
                Kind::Blob => repo.has_blob(d).await?,
                Kind::Manifest => repo.has_manifest(d).await?,
            };
            Ok::<_, anyhow::Error>(present.then(|| (kind, d.clone())))
        })
        .buffer_unordered(width)
        .try_collect()
        .await?;
    let mut presence = Presence::default();
    for (kind, d) in found.into_iter().flatten() {
        match kind {
            Kind::Blob => presence.blobs.insert(d),
            Kind::Manifest => presence.manifests.insert(d),
        };
    }
    Ok(presence)
}

#[derive(Clone, Copy)]
enum Kind {
    Blob,
    Manifest,
}
