//! Observe: what the registry holds now. Reads only (GET and HEAD).

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
pub async fn presence(repo: &Repository, desired: &Desired, jobs: usize) -> Result<Presence> {
    let mut blobs: Vec<&Digest> = desired
        .images
        .iter()
        .flat_map(|i| &i.blobs)
        .map(|b| &b.digest)
        .collect();
    blobs.sort();
    blobs.dedup();
    let manifests: Vec<&Digest> = desired
        .images
        .iter()
        .map(|i| &i.descriptor.digest)
        .chain(std::iter::once(&desired.list_digest))
        .collect();
    let width = (jobs * 2).max(4);
    let present_blobs: Vec<Option<Digest>> = stream::iter(blobs)
        .map(|d| async move { Ok::<_, anyhow::Error>(repo.has_blob(d).await?.then(|| d.clone())) })
        .buffer_unordered(width)
        .try_collect()
        .await?;
    let present_manifests: Vec<Option<Digest>> =
        stream::iter(manifests)
            .map(|d| async move {
                Ok::<_, anyhow::Error>(repo.has_manifest(d).await?.then(|| d.clone()))
            })
            .buffer_unordered(width)
            .try_collect()
            .await?;
    Ok(Presence {
        blobs: present_blobs.into_iter().flatten().collect(),
        manifests: present_manifests.into_iter().flatten().collect(),
    })
}
