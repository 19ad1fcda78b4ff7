//! OCI 1.1 referrers: what refers to a manifest (a signature, an attestation),
//! through the referrers API where the registry has it. Where it has not
//! (distribution 2.8 answers 404), the caller keeps the referrers tag schema
//! (`sha256-<hex>`, an index read and written with the manifest operations).

use anyhow::Result;
use reqwest::Method;
use reqwest::header::ACCEPT;

use super::manifests::MAX_MANIFEST;
use super::repository::Repository;
use super::request::Op;
use crate::digest::Digest;

/// The media type of the referrers API's answer (an OCI image index).
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

impl Repository {
    /// The referrers of `subject` as the API lists them (an OCI index's
    /// bytes), or `None` when the registry has no referrers API.
    pub async fn referrers(&self, subject: &Digest) -> Result<Option<Vec<u8>>> {
        let op = Op::ListReferrers(subject.clone());
        let req = self
            .request(op.clone(), Method::GET, format!("referrers/{subject}"))
            .header(ACCEPT, INDEX)
            .small();
        let (headers, bytes) = match self.exec.read(&req, MAX_MANIFEST).await {
            Ok(read) => read,
            // A registry without the API has no such route: 404 (distribution
            // 2.8 with a plain-text body), or 405 from some proxies. One with
            // the API answers 200 and an empty index when nothing refers.
            Err(e) if matches!(e.status(), Some(404 | 405)) => return Ok(None),
            Err(e) => return Err(self.explain(e, &op)),
        };
        let is_index = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(INDEX));
        // An answer that is not an index is a registry routing the path
        // somewhere else (a catch-all), not the API.
        Ok(is_index.then_some(bytes))
    }
}
