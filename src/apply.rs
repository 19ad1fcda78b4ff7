//! Apply: upload exactly what the plan says is missing, in crash-safe order.
//!
//! Blobs, then per-arch manifests (by digest), then the list (by digest), then
//! a signed run's evidence (signatures, the decision's attestation), then each
//! tag. Whatever instant a run is killed at, the registry never serves a tag
//! whose content is incomplete or unsigned, and the next run's plan picks up
//! from there.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use futures_util::{StreamExt, TryStreamExt, stream};

use crate::digest::Digest;
use crate::evidence::{self, Gap, Observed};
use crate::manifest::Descriptor;
use crate::plan::{Desired, DesiredImage, Plan};
use crate::progress::{Phase, Progress};
use crate::registry::{BlobSource, Explained, Repository, Upload};
use crate::sources::Blobs;

/// How a blob got into the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum How {
    /// Sent from a local archive or layout.
    Uploaded,
    /// Mounted from the source's repository on the same registry: nothing sent.
    Mounted,
    /// Streamed from the source's registry through pushgate.
    Copied,
}

/// What was uploaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub uploaded_blobs: usize,
    pub uploaded_bytes: u64,
    pub manifests: usize,
    pub tags: Vec<String>,
    /// How each blob the plan named got there.
    pub blobs: HashMap<Digest, How>,
    /// The evidence written.
    pub evidence: evidence::apply::Written,
}

/// A signed run's evidence to write: what is missing, the attestation (if
/// this decision has none yet), and what was observed.
pub struct EvidenceWork<'a> {
    pub gap: &'a Gap,
    pub attestation: Option<&'a crate::sign::attest::Attestation>,
    pub observed: &'a Observed,
}

/// How many blob transfers may go at once: each takes one of `slots` (shared
/// by the containers of a run), and at most `jobs` of this container's are
/// under way at once.
pub struct Transfers<'a> {
    pub slots: &'a tokio::sync::Semaphore,
    pub jobs: usize,
}

/// Carries out `plan`. `sources` maps each arch to where its blobs are read from.
pub async fn apply(
    repo: &Repository,
    plan: &Plan,
    desired: &Desired,
    sources: &HashMap<String, Blobs>,
    transfers: Transfers<'_>,
    progress: Option<Arc<Progress>>,
    evidence: Option<EvidenceWork<'_>>,
) -> Result<Applied> {
    let Transfers { slots, jobs } = transfers;
    // A blob may be shared by several arches; the first arch that has it uploads
    // it, from its source.
    let mut owner: HashMap<&Digest, (&str, &Blobs)> = HashMap::new();
    for img in &desired.images {
        let source = sources
            .get(&img.arch)
            .context("no source for an arch in the plan")?;
        for b in &img.blobs {
            owner.entry(&b.digest).or_insert((&img.arch, source));
        }
    }
    if let Some(p) = &progress {
        p.set_phase(Phase::Uploading);
        for img in &desired.images {
            let mine = plan.blobs.iter().filter(|b| owner[&b.digest].0 == img.arch);
            let (n, bytes) = mine.fold((0, 0), |(n, s), b| (n + 1, s + b.size));
            if let Some(a) = p.arch(&img.arch) {
                a.start_upload(n, bytes);
            }
        }
    }
    // The archives' checksums are checked while their blobs go up (the
    // registry checks each blob's digest anyway); no manifest is put before
    // every checksum has passed.
    let verifying = (!plan.blobs.is_empty() || !plan.manifests.is_empty()).then(|| {
        let sources: Vec<(String, Blobs)> = sources
            .iter()
            .map(|(a, b)| (a.clone(), b.clone()))
            .collect();
        let progress = progress.clone();
        tokio::spawn(async move { crate::sources::verify(&sources, progress).await })
    });
    let bytes = AtomicU64::new(0);
    // The evidence's blobs go up beside the image's: they are small, and no
    // manifest names them yet.
    let evidence_blobs = async {
        match &evidence {
            Some(e) => evidence::apply::put_blobs(repo, e.gap, e.attestation).await,
            None => Ok(()),
        }
    };
    let uploads = Uploads {
        repo,
        owner: &owner,
        progress: progress.as_deref(),
        slots,
        jobs,
        bytes: &bytes,
    };
    let (uploaded, evidence_blobs) = tokio::join!(uploads.run(&plan.blobs), evidence_blobs);
    if let Some(v) = verifying {
        if let Some(p) = &progress {
            p.set_phase(Phase::Verifying);
        }
        // A corrupt archive explains a refused blob better than the refusal.
        v.await.expect("archive verification panicked")?;
    }
    let hows = uploaded?;
    evidence_blobs?;
    if let Some(p) = &progress {
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
    let image_manifests = async {
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
        Ok(())
    };
    // The `.sig` manifests beside the image's: no image tag serves them.
    let signatures = async {
        match &evidence {
            Some(e) => evidence::apply::put_signatures(repo, e.gap).await,
            None => Ok(0),
        }
    };
    let ((), signatures) = tokio::try_join!(image_manifests, signatures)?;
    // The attestation names the list as its subject: after the list.
    let attestation = match &evidence {
        Some(EvidenceWork {
            attestation: Some(att),
            observed,
            ..
        }) => {
            Some(evidence::apply::put_attestation(repo, att, observed, &desired.list_digest).await?)
        }
        _ => None,
    };
    let written = evidence::apply::Written {
        signatures,
        attestation,
    };
    // The evidence before any tag: no tag serves a list unsigned. The tags
    // are independent of each other.
    stream::iter(&plan.tags)
        .map(|tag| heal.put(tag, desired.list_media_type, &desired.list_bytes, None))
        .buffer_unordered(jobs.max(1))
        .try_collect::<()>()
        .await?;
    let mounted = hows.iter().filter(|(_, h)| *h == How::Mounted).count();
    Ok(Applied {
        uploaded_blobs: plan.blobs.len() - mounted,
        uploaded_bytes: bytes.into_inner(),
        manifests: manifests.len() + usize::from(plan.list),
        tags: plan.tags.clone(),
        blobs: hows.into_iter().collect(),
        evidence: written,
    })
}

/// The image's blob uploads: `jobs` at a time (each also takes one of the
/// run's `slots`), in the plan's order, each in an upload session opened
/// ahead (by a stage of its own, at most about `jobs` sessions ahead), so
/// that a connection goes from one blob's PUT straight to the next blob's
/// PUT instead of waiting a round trip for a POST in between. The requests
/// are the same: one POST and one PUT a blob.
struct Uploads<'a> {
    repo: &'a Repository,
    owner: &'a HashMap<&'a Digest, (&'a str, &'a Blobs)>,
    progress: Option<&'a Progress>,
    slots: &'a tokio::sync::Semaphore,
    jobs: usize,
    /// Bytes sent (mounts not counted).
    bytes: &'a AtomicU64,
}

impl Uploads<'_> {
    async fn run(&self, blobs: &[Descriptor]) -> Result<Vec<(Digest, How)>> {
        let jobs = self.jobs.max(1);
        // What is opened waits here for an upload to take it; a session is
        // opened only once one more fits.
        let (ready, mut next) = tokio::sync::mpsc::channel::<(&Descriptor, Option<Upload>)>(1);
        let opener = async move {
            let mut opened = stream::iter(blobs)
                .map(|b| async move {
                    let session = match self.owner[&b.digest].1 {
                        Blobs::Layout(_) => Some(self.repo.open_upload(&b.digest).await?),
                        // A mount or a copy: opened when it is its turn.
                        Blobs::Registry(_) => None,
                    };
                    Ok::<_, anyhow::Error>((b, session))
                })
                .buffered(jobs);
            while let Some(one) = opened.next().await {
                if ready.send(one?).await.is_err() {
                    break; // the uploads stopped on an error
                }
            }
            Ok(())
        };
        let uploads = stream::poll_fn(|cx| next.poll_recv(cx))
            .map(|(b, session)| self.one(b, session))
            .buffer_unordered(jobs)
            .try_collect::<Vec<_>>();
        let ((), done) = tokio::try_join!(opener, uploads)?;
        Ok(done)
    }

    async fn one(&self, b: &Descriptor, session: Option<Upload>) -> Result<(Digest, How)> {
        let (arch, source) = self.owner[&b.digest];
        let shown = self.progress.and_then(|p| p.arch(arch));
        let sent = shown.map_or_else(Default::default, |a| a.sent());
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("the upload slots are never closed");
        let how = put_blob(self.repo, source, &b.digest, b.size, sent, session).await?;
        if let Some(a) = shown {
            a.blob_done();
        }
        if how != How::Mounted {
            self.bytes.fetch_add(b.size, Ordering::Relaxed);
        }
        Ok((b.digest.clone(), how))
    }
}

/// Puts one blob into `repo` from `source`: a mount when the source is another
/// repository of the same registry (nothing sent; a copy if the registry will
/// not mount), otherwise an upload (in `opened`, if a session was opened
/// ahead) or a streamed copy.
async fn put_blob(
    repo: &Repository,
    source: &Blobs,
    digest: &Digest,
    size: u64,
    sent: Arc<AtomicU64>,
    opened: Option<Upload>,
) -> Result<How> {
    match source {
        Blobs::Layout(layout) => {
            let range = layout.blob_range(digest, size)?;
            repo.push_blob_in(digest, &BlobSource::File(range), sent, opened)
                .await?;
            Ok(How::Uploaded)
        }
        Blobs::Registry(from) => {
            if repo.same_registry(from) && repo.mount_blob(digest, from).await? {
                sent.fetch_add(size, Ordering::Relaxed);
                return Ok(How::Mounted);
            }
            repo.push_blob(digest, &BlobSource::Registry { from, size }, sent)
                .await?;
            Ok(How::Copied)
        }
    }
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
    owner: &'a HashMap<&'a Digest, (&'a str, &'a Blobs)>,
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
                let (_, source) = self.owner[&b.digest];
                put_blob(
                    self.repo,
                    source,
                    &b.digest,
                    b.size,
                    Arc::new(AtomicU64::new(0)),
                    None,
                )
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
