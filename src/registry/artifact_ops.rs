//! Whole, bounded reads and writes of small content, for artifacts that are not
//! images (policy modules): a manifest by tag or digest with the caller's accept
//! types, a blob read into memory and checked against its digest, and a blob
//! uploaded from memory.
//!
//! Every answer is bounded and hashed: a manifest or blob whose bytes do not hash
//! to the digest asked for is refused, whatever the registry's headers say. These
//! go through the same transport as image pushes (auth, TLS, retries).

use anyhow::Result;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};

use super::{Repository, header_digest, with_digest};
use crate::digest::Digest;
use crate::registry::error::RegistryError;
use crate::registry::transport::read_bounded;

/// A manifest as the registry served it: the digest of its bytes, its media
/// type (`Content-Type`) and the bytes.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

impl Repository {
    /// The manifest at `reference` (a tag or a digest), asking for `accept`, at
    /// most `max` bytes; `None` when the registry does not have it. Asked by
    /// digest, bytes that hash to anything else are refused.
    pub async fn get_manifest_as(
        &self,
        reference: &str,
        accept: &[&str],
        max: usize,
    ) -> Result<Option<FetchedManifest>> {
        let doing = format!("reading manifest {reference}");
        let url = self.url(&format!("manifests/{reference}"));
        let res = self
            .transport
            .send(&doing, &self.pull(), true, &|c| {
                c.get(&url)
                    .header(ACCEPT, accept.join(", "))
                    .timeout(self.transport.small_deadline)
            })
            .await;
        let resp = match res {
            Ok(r) => r,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(self.explain(e, &doing)),
        };
        let said = header_digest(&resp);
        let media_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = read_bounded(resp, max)
            .await
            .map_err(|e| self.explain(e, &doing))?;
        let digest = Digest::of(&bytes);
        let wanted = reference.starts_with("sha256:").then_some(reference);
        if let Some(claimed) = wanted.or(said.as_deref())
            && claimed != digest.as_str()
        {
            return Err(self.explain(
                RegistryError::Refused(format!(
                    "the manifest should be {claimed}, but its bytes hash to {digest}"
                )),
                &doing,
            ));
        }
        Ok(Some(FetchedManifest {
            digest,
            media_type,
            bytes,
        }))
    }

    /// Blob `digest`, read whole into memory (at most `max` bytes) and checked
    /// against its digest; `None` when the repository does not have it.
    pub async fn get_blob_bounded(&self, digest: &Digest, max: usize) -> Result<Option<Vec<u8>>> {
        let doing = format!("reading blob {digest}");
        let url = self.url(&format!("blobs/{digest}"));
        let res = self
            .transport
            .send(&doing, &self.pull(), true, &|c| c.get(&url))
            .await;
        let resp = match res {
            Ok(r) => r,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(self.explain(e, &doing)),
        };
        let bytes = read_bounded(resp, max)
            .await
            .map_err(|e| self.explain(e, &doing))?;
        let got = Digest::of(&bytes);
        if &got != digest {
            return Err(self.explain(
                RegistryError::Refused(format!("the blob's bytes hash to {got}")),
                &doing,
            ));
        }
        Ok(Some(bytes))
    }

    /// Uploads a small blob from memory (POST, then one PUT), unless the
    /// repository has it already. A write whose answer was lost is looked for
    /// before it is made again.
    pub async fn push_blob_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        if self.has_blob(&digest).await? {
            return Ok(digest);
        }
        let doing = format!("uploading blob {digest}");
        let body = bytes::Bytes::copy_from_slice(bytes);
        let mut retry = 0;
        loop {
            let err = match self.start_upload(&doing).await {
                Err(e) => e,
                Ok(session) => {
                    let put = with_digest(&session, &digest);
                    match self
                        .transport
                        .send(&doing, &self.push(), false, &|c| {
                            c.put(put.clone())
                                .header(CONTENT_TYPE, "application/octet-stream")
                                .header(CONTENT_LENGTH, body.len())
                                .body(body.clone())
                        })
                        .await
                    {
                        Ok(_) => return Ok(digest),
                        Err(e) => e,
                    }
                }
            };
            if !err.is_transient() {
                return Err(self.explain(err, &doing));
            }
            retry += 1;
            if !self.transport.backoff(&doing, retry, &err).await {
                return Err(self.explain(err, &doing));
            }
            if self.has_blob(&digest).await? {
                return Ok(digest);
            }
        }
    }
}
