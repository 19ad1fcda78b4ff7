//! Blobs: check for one (HEAD), read a small one whole (bounded, checked
//! against its digest), read a byte range of one as a stream (for a copy into
//! another registry), mount one from another repository, and upload one
//! (the upload itself, chunks and resumption, is [`super::transfer`]'s).

use std::io::SeekFrom;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use futures_util::TryStreamExt;
use reqwest::Method;
use reqwest::header::RANGE;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::error::RegistryError;
use super::manifests::MAX_MANIFEST;
use super::repository::Repository;
use super::request::Op;
use super::transfer;
use crate::blob::BlobRange;
use crate::digest::Digest;

/// Where the bytes of a blob to upload come from.
pub enum BlobSource<'a> {
    /// A byte range of a local file (an archive, or a layout's blob file).
    File(BlobRange),
    /// The blob in another repository, streamed through from its registry:
    /// never written to disk, never more than a buffer of it in memory.
    Registry { from: &'a Repository, size: u64 },
    /// Bytes in memory (small artifacts: a policy's config and module).
    Bytes(bytes::Bytes),
}

/// An upload session opened ahead of its upload ([`Repository::open_upload`]).
/// One left unused (a run that stopped) is the registry's to expire.
#[derive(Debug)]
pub struct Upload(reqwest::Url);

/// Counts a blob's bytes as they go out, into the caller's counter (the
/// progress display), and can set the count back to what the registry
/// confirmed when an attempt fails: the display never shows bytes twice.
#[derive(Debug, Default)]
pub struct Meter {
    /// The caller's counter, shared by every blob it shows.
    sent: Arc<AtomicU64>,
    /// What this blob has put into `sent` so far (shared with the body
    /// streams that count as they are read).
    mine: Arc<AtomicU64>,
}

impl Meter {
    pub fn new(sent: Arc<AtomicU64>) -> Meter {
        Meter {
            sent,
            mine: Arc::default(),
        }
    }

    /// A counting function for a body stream.
    fn counter(&self) -> impl Fn(&bytes::Bytes) + Send + Sync + 'static {
        let (sent, mine) = (self.sent.clone(), self.mine.clone());
        move |chunk: &bytes::Bytes| {
            sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            mine.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
    }

    /// The registry holds `confirmed` bytes of the blob: that is what counts.
    pub fn settle(&self, confirmed: u64) {
        let shown = self.mine.swap(confirmed, Ordering::Relaxed);
        if shown > confirmed {
            self.sent.fetch_sub(shown - confirmed, Ordering::Relaxed);
        } else {
            self.sent.fetch_add(confirmed - shown, Ordering::Relaxed);
        }
    }
}

impl BlobSource<'_> {
    /// The blob's size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            BlobSource::File(r) => r.len,
            BlobSource::Registry { size, .. } => *size,
            BlobSource::Bytes(b) => b.len() as u64,
        }
    }

    /// `len` bytes of the blob from `offset`, as a streamed request body
    /// counted into `meter` as it goes.
    pub(super) async fn open(
        &self,
        digest: &Digest,
        offset: u64,
        len: u64,
        meter: &Meter,
    ) -> Result<reqwest::Body, RegistryError> {
        let count = meter.counter();
        let body = match self {
            BlobSource::File(range) => {
                let io = |e: std::io::Error| RegistryError::Connection {
                    kind: super::error::ConnectKind::Other,
                    detail: format!("reading {}: {e}", range.file.display()),
                };
                let mut f = tokio::fs::File::open(&range.file).await.map_err(io)?;
                f.seek(SeekFrom::Start(range.offset + offset))
                    .await
                    .map_err(io)?;
                let stream = tokio_util::io::ReaderStream::with_capacity(f.take(len), 256 * 1024)
                    .inspect_ok(count);
                reqwest::Body::wrap_stream(stream)
            }
            BlobSource::Registry { from, size } => {
                let stream = from.blob_stream(digest, offset, len, *size).await?;
                reqwest::Body::wrap_stream(stream.inspect_ok(count))
            }
            BlobSource::Bytes(b) => {
                let end = offset.saturating_add(len).min(b.len() as u64);
                let part = b.slice(offset.min(end) as usize..end as usize);
                count(&part);
                reqwest::Body::from(part)
            }
        };
        Ok(body)
    }
}

impl Repository {
    /// Does the repository hold blob `digest`?
    pub async fn has_blob(&self, digest: &Digest) -> Result<bool> {
        let op = Op::CheckBlob(digest.clone());
        let req = self.request(op.clone(), Method::HEAD, format!("blobs/{digest}"));
        match self.exec.send(&req).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(self.explain(e, &op)),
        }
    }

    /// Blob `digest`, read whole into memory (at most `max` bytes) and checked
    /// against its digest; `None` when the repository does not have it. For
    /// small content: an image config, a policy module.
    pub async fn get_blob(&self, digest: &Digest, max: usize) -> Result<Option<Vec<u8>>> {
        let op = Op::ReadBlob(digest.clone());
        let mut req = self.request(op.clone(), Method::GET, format!("blobs/{digest}"));
        // A config is as small as a manifest and gets its deadline; a
        // module's time is bounded by the stall timeout alone.
        if max <= MAX_MANIFEST {
            req = req.small();
        }
        let bytes = match self.exec.read(&req, max).await {
            Ok((_, bytes)) => bytes,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(self.explain(e, &op)),
        };
        let got = Digest::of(&bytes);
        if got != *digest {
            return Err(self.explain(
                RegistryError::Invalid(format!(
                    "the bytes it serves hash to {got}, not to that digest"
                )),
                &op,
            ));
        }
        Ok(Some(bytes))
    }

    /// Uploads a small blob held in memory (a policy's config or module),
    /// unless the repository has it already: its digest.
    pub async fn push_blob_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        if !self.has_blob(&digest).await? {
            let source = BlobSource::Bytes(bytes::Bytes::copy_from_slice(bytes));
            self.push_blob(&digest, &source, Arc::default()).await?;
        }
        Ok(digest)
    }

    /// Mounts blob `digest` from `from` (another repository of the same
    /// registry) without sending it: `true` when the registry mounted it, `false`
    /// when it would not (the blob is absent there, or the identity may not
    /// read it), and the blob must be copied instead.
    pub async fn mount_blob(&self, digest: &Digest, from: &Repository) -> Result<bool> {
        let op = Op::MountBlob {
            digest: digest.clone(),
            from: from.repository.clone(),
        };
        // One token for both: push here, pull there.
        let req = self
            .request(op.clone(), Method::POST, "blobs/uploads/".into())
            .query("mount", digest.to_string())
            .query("from", from.repository.clone())
            .also_reads(&from.repository);
        let resp = match self.exec.send(&req).await {
            Ok(resp) => resp,
            // A token registry refuses the whole request when the identity may
            // push here but not read there (per-repository robot accounts): the
            // copy reads the source with the source's own credentials. A real
            // lack of push rights is then reported by the copy.
            Err(e) if matches!(e.status(), Some(401 | 403)) => return Ok(false),
            Err(e) => return Err(self.explain(e, &op)),
        };
        // 201: mounted. 202: an upload session instead, left to expire (the
        // copy opens its own, so a retried copy starts clean).
        Ok(resp.status().as_u16() == 201)
    }

    /// Opens an upload session for blob `digest` (one POST), to be given to
    /// [`Repository::push_blob_in`]: an upload opened while the one before it
    /// is still sending starts sending as soon as that one ends, instead of a
    /// round trip later.
    pub async fn open_upload(&self, digest: &Digest) -> Result<Upload> {
        let op = Op::UploadBlob(digest.clone());
        transfer::open(self, &op)
            .await
            .map(Upload)
            .map_err(|e| self.explain(e, &op))
    }

    /// Uploads one blob, streamed from its source: never more than a buffer
    /// of it is in memory. `sent` counts the bytes as they go out.
    pub async fn push_blob(
        &self,
        digest: &Digest,
        source: &BlobSource<'_>,
        sent: Arc<AtomicU64>,
    ) -> Result<()> {
        self.push_blob_in(digest, source, sent, None).await
    }

    /// [`Repository::push_blob`] in `opened`, a session opened for this blob
    /// by [`Repository::open_upload`] (a new one when `None`, or when the
    /// registry lost it).
    pub async fn push_blob_in(
        &self,
        digest: &Digest,
        source: &BlobSource<'_>,
        sent: Arc<AtomicU64>,
        opened: Option<Upload>,
    ) -> Result<()> {
        let op = match source {
            BlobSource::File(_) | BlobSource::Bytes(_) => Op::UploadBlob(digest.clone()),
            BlobSource::Registry { from, .. } => Op::CopyBlob {
                digest: digest.clone(),
                from: from.name.clone(),
            },
        };
        let meter = Meter::new(sent);
        transfer::upload(self, &op, digest, source, &meter, opened.map(|u| u.0))
            .await
            .map_err(|e| self.explain(e, &op))
    }

    /// `len` bytes of blob `digest` (`size` in all) from `offset`, as a stream.
    /// A range is asked for when less than the whole blob is wanted; a registry
    /// that answers with the whole blob anyway has the rest cut off here.
    pub(super) async fn blob_stream(
        &self,
        digest: &Digest,
        offset: u64,
        len: u64,
        size: u64,
    ) -> Result<
        impl futures_util::Stream<Item = Result<bytes::Bytes, reqwest::Error>> + use<>,
        RegistryError,
    > {
        let op = Op::StreamBlob {
            digest: digest.clone(),
            of: self.name.clone(),
        };
        let mut req = self.request(op, Method::GET, format!("blobs/{digest}"));
        if offset > 0 || len < size {
            let last = offset.saturating_add(len).saturating_sub(1);
            req = req.header(RANGE, format!("bytes={offset}-{last}"));
        }
        // Sent while sending a request (the upload this stream feeds).
        let resp = self.exec.send_boxed(&req).await?;
        let mut skip = if resp.status().as_u16() == 206 {
            0
        } else {
            offset
        };
        let mut left = len;
        Ok(resp
            .bytes_stream()
            .map_ok(move |mut chunk| {
                let cut = (skip.min(chunk.len() as u64)) as usize;
                skip -= cut as u64;
                chunk = chunk.slice(cut..);
                let keep = (left.min(chunk.len() as u64)) as usize;
                left -= keep as u64;
                chunk.truncate(keep);
                chunk
            })
            .try_filter(|c| std::future::ready(!c.is_empty())))
    }
}
