//! `policy push`: a loaded module published as an artifact under a tag.

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::{MAX_MODULE, OciRef, artifact, cache_dir, keep};
use crate::digest::Digest;
use crate::manifest::OCI_MANIFEST;
use crate::policy::PolicyInfo;
use crate::registry::{self, Repository};

/// What `policy push` published.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    /// The reference pushed to.
    pub reference: String,
    pub digest: Digest,
    /// `oci://REGISTRY/REPO@sha256:…`: what a release config should name.
    pub pinned: String,
    pub name: String,
    pub version: String,
    pub sha256: Digest,
}

/// Publishes a loaded module as `r` (which must have a tag): config and module
/// blobs unless the repository has them, then the manifest under the tag. The
/// artifact is also kept in the cache, so the publisher can use it offline.
pub async fn publish(
    info: &PolicyInfo,
    module: &[u8],
    r: &OciRef,
    opts: &registry::Options,
) -> Result<Published> {
    let (Some(tag), None) = (r.tag(), r.digest()) else {
        bail!("policy push {r}: push to a tag (oci://REGISTRY/REPO:TAG); the digest is printed");
    };
    if module.len() > MAX_MODULE {
        bail!(
            "policy push {r}: the module is {} bytes, more than the {MAX_MODULE} a policy may be",
            module.len()
        );
    }
    let art = artifact(info);
    let run = async {
        let repo = Repository::new(r.repo(), opts)?;
        repo.push_blob_bytes(&art.config).await?;
        repo.push_blob_bytes(module).await?;
        repo.put_manifest(tag, OCI_MANIFEST, &art.manifest).await?;
        anyhow::Ok(())
    };
    run.await.with_context(|| format!("policy push {r}"))?;
    if let Some(dir) = cache_dir() {
        keep(&dir, &art.config);
        keep(&dir, module);
        keep(&dir, &art.manifest);
    }
    Ok(Published {
        reference: r.to_string(),
        pinned: r.pinned(&art.digest),
        digest: art.digest,
        name: info.name.clone(),
        version: info.version.clone(),
        sha256: info.sha256.clone(),
    })
}
