//! Apply: upload exactly what the plan says is missing, in crash-safe order.
//!
//! Blobs, then per-arch manifests (by digest), then the list (by digest), then
//! each tag. Whatever instant a run is killed at, the registry never serves a tag
//! whose content is incomplete, and the next run's plan picks up from there.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use futures_util::{StreamExt, TryStreamExt, stream};

use crate::digest::Digest;
use crate::plan::{Desired, DesiredImage, Plan};
use crate::progress::{Phase, Progress};
use crate::registry::{Explained, Repository};
use crate::sources::archive::OciLayout;

/// What was uploaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub uploaded_blobs: usize,
    pub uploaded_bytes: u64,
    pub manifests: usize,
    pub tags: Vec<String>,
}

/// Carries out `plan`. `layouts` maps each arch to the layout its blobs are read
/// from; `progress`, when drawn, is told each arch's uploads.
pub async fn apply(
    repo: &Repository,
    plan: &Plan,
    desired: &Desired,
    layouts: &HashMap<String, Arc<OciLayout>>,
    jobs: usize,
    progress: Option<&Progress>,
) -> Result<Applied> {
    // A blob may be shared by several arches; the first arch that has it uploads
    // it, from its layout.
    let mut owner: HashMap<&Digest, (&str, &Arc<OciLayout>)> = HashMap::new();
    for img in &desired.images {
        let layout = layouts
            .get(&img.arch)
            .context("no layout for an arch in the plan")?;
        for b in &img.blobs {
            owner.entry(&b.digest).or_insert((&img.arch, layout));
        }
    }
    if let Some(p) = progress {
        p.set_phase(Phase::Uploading);
        for img in &desired.images {
            let mine = plan.blobs.iter().filter(|b| owner[&b.digest].0 == img.arch);
            let (n, bytes) = mine.fold((0, 0), |(n, s), b| (n + 1, s + b.size));
            if let Some(a) = p.arch(&img.arch) {
                a.start_upload(n, bytes);
            }
        }
    }
    let bytes = AtomicU64::new(0);
    stream::iter(&plan.blobs)
        .map(|b| {
            let (arch, layout) = owner[&b.digest];
            let shown = progress.and_then(|p| p.arch(arch));
            let sent = shown.map_or_else(Default::default, |a| a.sent());
            let bytes = &bytes;
            async move {
                let range = layout.blob_range(&b.digest, b.size)?;
                repo.push_blob(&b.digest, &range, sent).await?;
                if let Some(a) = shown {
                    a.blob_done();
                }
                bytes.fetch_add(b.size, Ordering::Relaxed);
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(jobs.max(1))
        .try_collect::<()>()
        .await?;
    if let Some(p) = progress {
        p.set_phase(Phase::Finishing);
    }

    let manifests: Vec<_> = desired
        .images
        .iter()
        .filter(|i| plan.manifests.contains(&i.arch))
        .collect();
    let heal = Heal {
        repo,
        desired,
        owner: &owner,
    };
    stream::iter(&manifests)
        .map(|i| {
            heal.put(
                i.descriptor.digest.as_str(),
                &i.descriptor.media_type,
                &i.bytes,
                Some(i),
            )
        })
        .buffer_unordered(jobs.max(1))
        .try_collect::<()>()
        .await?;
    if plan.list {
        heal.put(
            desired.list_digest.as_str(),
            desired.list_media_type,
            &desired.list_bytes,
            None,
        )
        .await?;
    }
    for tag in &plan.tags {
        heal.put(tag, desired.list_media_type, &desired.list_bytes, None)
            .await?;
    }
    Ok(Applied {
        uploaded_blobs: plan.blobs.len(),
        uploaded_bytes: bytes.into_inner(),
        manifests: manifests.len() + usize::from(plan.list),
        tags: plan.tags.clone(),
    })
}

/// How often a manifest PUT answered MANIFEST_BLOB_UNKNOWN is made again.
const HEAL_ATTEMPTS: u32 = 3;

/// Puts manifests, healing what concurrent writers leave behind: while another
/// push of the same build commits a blob or manifest, the registry may answer
/// MANIFEST_BLOB_UNKNOWN for content that is about to exist (or that was lost).
/// The named content is then looked for, whatever is missing is uploaded again,
/// and the PUT is repeated.
struct Heal<'a> {
    repo: &'a Repository,
    desired: &'a Desired,
    owner: &'a HashMap<&'a Digest, (&'a str, &'a Arc<OciLayout>)>,
}

impl Heal<'_> {
    async fn put(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
        image: Option<&DesiredImage>,
    ) -> Result<()> {
        let mut attempt = 0;
        loop {
            let err = match self.repo.put_manifest(reference, media_type, bytes).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let blob_unknown = Explained::of(&err)
                .is_some_and(|r| r.has_code("MANIFEST_BLOB_UNKNOWN") || r.has_code("BLOB_UNKNOWN"));
            attempt += 1;
            if !blob_unknown || attempt > HEAL_ATTEMPTS {
                return Err(err);
            }
            // Give a concurrent commit a moment, then check and fill in.
            tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
            match image {
                Some(img) => self.fill_blobs(img).await?,
                None => self.fill_manifests().await?,
            }
        }
    }

    /// Uploads the blobs of `img` the registry does not have.
    async fn fill_blobs(&self, img: &DesiredImage) -> Result<()> {
        for b in &img.blobs {
            if !self.repo.has_blob(&b.digest).await? {
                let (_, layout) = self.owner[&b.digest];
                let range = layout.blob_range(&b.digest, b.size)?;
                self.repo
                    .push_blob(&b.digest, &range, Arc::new(AtomicU64::new(0)))
                    .await?;
            }
        }
        Ok(())
    }

    /// Puts the per-arch manifests the registry does not have.
    async fn fill_manifests(&self) -> Result<()> {
        for img in &self.desired.images {
            if !self.repo.has_manifest(&img.descriptor.digest).await? {
                self.fill_blobs(img).await?;
                self.repo
                    .put_manifest(
                        img.descriptor.digest.as_str(),
                        &img.descriptor.media_type,
                        &img.bytes,
                    )
                    .await?;
            }
        }
        Ok(())
    }
}
