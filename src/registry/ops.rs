//! The distribution operations pushgate needs: read a tag, check for a blob or a
//! manifest (HEAD), upload a blob (streamed from a byte range of an archive), put
//! a manifest by digest or tag. Retries and connections are the transport's
//! ([`super::transport`]); failures are explained by [`super::explain`].

use std::io::SeekFrom;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use futures_util::TryStreamExt;
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::explain::explain;
use super::reference::parse_repo;
use super::transport::{Options, connect, retry};
use crate::digest::Digest;
use crate::sources::archive::BlobRange;

/// One repository on one registry, with its client and credentials.
pub struct Repository {
    client: Client,
    auth: RegistryAuth,
    registry: String,
    repository: String,
    /// `--repo` as given, for messages.
    name: String,
}

impl Repository {
    /// Parses `--repo` and finds credentials for its registry.
    pub fn new(repo: &str, opts: &Options) -> Result<Repository> {
        let (registry, repository) = parse_repo(repo)?;
        let conn = connect(&registry, &repository, opts)?;
        Ok(Repository {
            client: conn.client,
            auth: conn.auth,
            registry,
            repository,
            name: repo.to_string(),
        })
    }

    /// Turns a client error into one that names the registry and the way out.
    fn explain(&self, e: OciDistributionError, doing: &str) -> anyhow::Error {
        let anonymous = matches!(self.auth, RegistryAuth::Anonymous);
        explain(e, &self.registry, &self.name, anonymous, doing)
    }
    fn tag_ref(&self, tag: &str) -> Reference {
        Reference::with_tag(
            self.registry.clone(),
            self.repository.clone(),
            tag.to_string(),
        )
    }

    fn digest_ref(&self, digest: &Digest) -> Reference {
        Reference::with_digest(
            self.registry.clone(),
            self.repository.clone(),
            digest.to_string(),
        )
    }

    async fn ensure_auth(&self, r: &Reference) {
        self.client
            .store_auth_if_needed(r.resolve_registry(), &self.auth)
            .await;
    }

    /// What `tag` serves: its digest and bytes, or `None` if the tag does not exist.
    pub async fn get_tag(&self, tag: &str) -> Result<Option<(Digest, Vec<u8>)>> {
        let r = self.tag_ref(tag);
        let res = retry(|| {
            self.client
                .pull_manifest_raw(&r, &self.auth, crate::manifest::ACCEPTED)
        })
        .await;
        match res {
            Ok((bytes, digest)) => {
                let digest = Digest::from_str(&digest).with_context(|| {
                    format!(
                        "registry {} served tag {tag} with an unusable digest",
                        self.registry
                    )
                })?;
                Ok(Some((digest, bytes.to_vec())))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.explain(e, &format!("reading tag {tag}"))),
        }
    }

    /// Does the repository hold blob `digest`?
    pub async fn has_blob(&self, digest: &Digest) -> Result<bool> {
        let r = self.digest_ref(digest);
        self.ensure_auth(&r).await;
        match retry(|| self.client.blob_exists(&r, digest.as_str())).await {
            Ok(b) => Ok(b),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(self.explain(e, &format!("checking blob {digest}"))),
        }
    }

    /// Does the repository hold manifest `digest`?
    pub async fn has_manifest(&self, digest: &Digest) -> Result<bool> {
        let r = self.digest_ref(digest);
        match retry(|| self.client.fetch_manifest_digest(&r, &self.auth)).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(self.explain(e, &format!("checking manifest {digest}"))),
        }
    }

    /// Uploads one blob, streamed from its byte range: never more than a buffer
    /// of it is in memory.
    /// `sent` counts the bytes as they go out (for progress display).
    pub async fn push_blob(
        &self,
        digest: &Digest,
        range: &BlobRange,
        sent: Arc<AtomicU64>,
    ) -> Result<()> {
        let r = self.digest_ref(digest);
        self.ensure_auth(&r).await;
        let res = retry(|| async {
            let stream = open_range(&range.file, range.offset, range.len, sent.clone()).await?;
            self.client
                .push_blob_stream(&r, stream, digest.as_str(), Some(range.len))
                .await
        })
        .await;
        res.map(|_| ())
            .map_err(|e| self.explain(e, &format!("uploading blob {digest}")))
    }

    /// Puts manifest bytes under `reference` (a digest or a tag).
    pub async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<()> {
        let r = match Digest::from_str(reference) {
            Ok(d) => self.digest_ref(&d),
            Err(_) => self.tag_ref(reference),
        };
        self.ensure_auth(&r).await;
        let content_type: http::HeaderValue = media_type
            .parse()
            .context("media type is not a valid header")?;
        let body = bytes::Bytes::copy_from_slice(bytes);
        retry(|| {
            self.client
                .push_manifest_raw(&r, body.clone(), content_type.clone())
        })
        .await
        .map(|_| ())
        .map_err(|e| self.explain(e, &format!("putting manifest {reference}")))
    }
}

async fn open_range(
    file: &Path,
    offset: u64,
    len: u64,
    sent: Arc<AtomicU64>,
) -> Result<
    impl futures_util::Stream<Item = oci_client::errors::Result<bytes::Bytes>> + use<>,
    OciDistributionError,
> {
    let mut f = tokio::fs::File::open(file).await?;
    f.seek(SeekFrom::Start(offset)).await?;
    let reader = f.take(len);
    Ok(
        tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024)
            .inspect_ok(move |chunk| {
                sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            })
            .map_err(OciDistributionError::from),
    )
}

fn is_not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code: 404, .. } => true,
        // An empty error list says nothing: it is not "absent".
        OciDistributionError::RegistryError { envelope, .. } if envelope.errors.is_empty() => false,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().all(|c| {
            matches!(
                c.code,
                OciErrorCode::ManifestUnknown
                    | OciErrorCode::BlobUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::NotFound
            )
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Clients;

    #[test]
    fn repo_must_not_carry_a_tag_or_digest() {
        let opts = Options {
            tls_verify: true,
            authfile: None,
            jobs: 1,
            clients: Clients::default(),
        };
        assert!(Repository::new("quay.io/fedora/fedora-coreos:stable", &opts).is_err());
        assert!(Repository::new("localhost:5000/a@sha256:00", &opts).is_err());
        assert!(
            Repository::new("NOT VALID", &opts)
                .err()
                .expect("an invalid --repo is refused")
                .to_string()
                .contains("--repo")
        );
    }

    #[test]
    fn not_found_is_told_apart() {
        let server = |code| OciDistributionError::ServerError {
            code,
            url: String::new(),
            message: String::new(),
        };
        assert!(is_not_found(&server(404)));
        assert!(!is_not_found(&server(500)));
        let registry = |codes: Vec<OciErrorCode>| OciDistributionError::RegistryError {
            envelope: oci_client::errors::OciEnvelope {
                errors: codes
                    .into_iter()
                    .map(|code| oci_client::errors::OciError {
                        code,
                        message: String::new(),
                        detail: serde_json::Value::Null,
                    })
                    .collect(),
            },
            url: String::new(),
        };
        assert!(is_not_found(&registry(vec![OciErrorCode::ManifestUnknown])));
        assert!(!is_not_found(&registry(vec![])), "an empty errors list");
        assert!(!is_not_found(&registry(vec![
            OciErrorCode::ManifestUnknown,
            OciErrorCode::Denied
        ])));
    }
}
