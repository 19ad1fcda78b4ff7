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
use crate::plan::{Desired, Plan};
use crate::progress::{self, Progress};
use crate::registry::Repository;
use crate::sources::archive::OciLayout;

/// What was uploaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub uploaded_blobs: usize,
    pub uploaded_bytes: u64,
    pub manifests: usize,
    pub tags: Vec<String>,
}

/// Carries out `plan`. `layouts` maps each arch to the layout its blobs are read from.
pub async fn apply(
    repo: &Repository,
    plan: &Plan,
    desired: &Desired,
    layouts: &HashMap<String, Arc<OciLayout>>,
    jobs: usize,
    show_progress: bool,
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
    let progress = Progress::new(
        desired
            .images
            .iter()
            .map(|img| {
                let mine = plan.blobs.iter().filter(|b| owner[&b.digest].0 == img.arch);
                let (n, bytes) = mine.fold((0, 0), |(n, s), b| (n + 1, s + b.size));
                (img.arch.clone(), n, bytes)
            })
            .collect(),
    );
    let _display = show_progress.then(|| progress::Display::start(progress.clone()));
    let bytes = AtomicU64::new(0);
    stream::iter(&plan.blobs)
        .map(|b| {
            let (arch, layout) = owner[&b.digest];
            let counters = progress.arch(arch).expect("every owner arch has counters");
            let bytes = &bytes;
            async move {
                let range = layout.blob_range(&b.digest, b.size)?;
                repo.push_blob(&b.digest, &range, counters.sent.clone())
                    .await?;
                counters.done_blobs.fetch_add(1, Ordering::Relaxed);
                bytes.fetch_add(b.size, Ordering::Relaxed);
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(jobs.max(1))
        .try_collect::<()>()
        .await?;

    let manifests: Vec<_> = desired
        .images
        .iter()
        .filter(|i| plan.manifests.contains(&i.arch))
        .collect();
    stream::iter(&manifests)
        .map(|i| {
            repo.put_manifest(
                i.descriptor.digest.as_str(),
                &i.descriptor.media_type,
                &i.bytes,
            )
        })
        .buffer_unordered(jobs.max(1))
        .try_collect::<()>()
        .await?;
    if plan.list {
        repo.put_manifest(
            desired.list_digest.as_str(),
            desired.list_media_type,
            &desired.list_bytes,
        )
        .await?;
    }
    for tag in &plan.tags {
        repo.put_manifest(tag, desired.list_media_type, &desired.list_bytes)
            .await?;
    }
    Ok(Applied {
        uploaded_blobs: plan.blobs.len(),
        uploaded_bytes: bytes.into_inner(),
        manifests: manifests.len() + usize::from(plan.list),
        tags: plan.tags.clone(),
    })
}
