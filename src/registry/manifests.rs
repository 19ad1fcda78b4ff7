//! Manifests and tags: read one (bounded, its digest computed from its bytes
//! and checked against what was asked and what the registry says), check for
//! one (HEAD), put one by digest or tag. A put whose answer is lost is checked
//! (does the reference now serve these bytes?) before it is made again.

use anyhow::Result;
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE};

use super::answer::header_digest;
use super::error::RegistryError;
use super::repository::Repository;
use super::request::{Body, Landed, OnLoss, Op};
use crate::digest::Digest;
use crate::manifest::ACCEPTED;

/// The largest manifest or index read (distribution's own limit).
pub const MAX_MANIFEST: usize = 4 * 1024 * 1024;

/// A manifest as read from a registry.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Of the bytes.
    pub digest: Digest,
    /// The answer's Content-Type.
    pub media_type: Option<String>,
    pub bytes: Vec<u8>,
}

impl Repository {
    /// What `tag` serves: its digest (of the bytes) and bytes, or `None` if the
    /// tag does not exist.
    pub async fn get_tag(&self, tag: &str) -> Result<Option<(Digest, Vec<u8>)>> {
        let op = Op::ReadTag(tag.to_string());
        Ok(self
            .fetch_manifest(tag, op)
            .await?
            .map(|m| (m.digest, m.bytes)))
    }

    /// The manifest at `reference` (a tag or a digest), or `None` if there is
    /// none. The digest is computed from the bytes; asked by digest, bytes that
    /// hash to anything else are refused.
    pub async fn get_manifest(&self, reference: &str) -> Result<Option<Fetched>> {
        let op = Op::ReadManifest(reference.to_string());
        self.fetch_manifest(reference, op).await
    }

    async fn fetch_manifest(&self, reference: &str, op: Op) -> Result<Option<Fetched>> {
        let req = self
            .request(op.clone(), Method::GET, format!("manifests/{reference}"))
            .header(ACCEPT, ACCEPTED.join(", "))
            .small();
        let (headers, bytes) = match self.exec.read(&req, MAX_MANIFEST).await {
            Ok(read) => read,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(self.explain(e, &op)),
        };
        let said = header_digest(&headers);
        let media_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let digest = Digest::of(&bytes);
        let lie = if reference.starts_with("sha256:") && reference != digest.as_str() {
            Some(format!(
                "the manifest should be {reference}, but its bytes hash to {digest}"
            ))
        } else {
            said.filter(|said| said != digest.as_str()).map(|said| {
                format!("it says the manifest is {said}, but its bytes hash to {digest}")
            })
        };
        if let Some(lie) = lie {
            return Err(self.explain(RegistryError::Invalid(lie), &op));
        }
        Ok(Some(Fetched {
            digest,
            media_type,
            bytes,
        }))
    }

    /// Does the repository hold manifest `digest`? (A HEAD, trusted.)
    pub async fn has_manifest(&self, digest: &Digest) -> Result<bool> {
        let op = Op::CheckManifest(digest.to_string());
        let req = self
            .request(op.clone(), Method::HEAD, format!("manifests/{digest}"))
            .header(ACCEPT, ACCEPTED.join(", "));
        match self.exec.send(&req).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(self.explain(e, &op)),
        }
    }

    /// Puts manifest bytes under `reference` (a digest or a tag). When the answer
    /// is lost, the registry is asked whether `reference` now serves these bytes
    /// before the PUT is made again.
    pub async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<()> {
        let op = Op::PutManifest(reference.to_string());
        let req = self
            .request(op.clone(), Method::PUT, format!("manifests/{reference}"))
            .header(CONTENT_TYPE, media_type)
            .body(Body::Bytes(bytes::Bytes::copy_from_slice(bytes)))
            .on_loss(OnLoss::Check(Landed::Manifest {
                reference: reference.to_string(),
                digest: Digest::of(bytes),
            }));
        self.exec
            .write(&req)
            .await
            .map_err(|e| self.explain(e, &op))
    }
}
