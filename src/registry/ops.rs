//! The distribution operations pushgate needs: read a tag or a manifest, read a
//! small blob whole (a config, a policy module), check for a blob or a manifest
//! (HEAD), mount a blob from another repository, upload a blob (streamed from a
//! byte range of an archive, from another registry, or from memory; in one PUT
//! or in resumable chunks), put a manifest by digest or tag.
//!
//! Reads are retried by the transport. Writes are not repeated blindly: when the
//! answer to a write is lost, the registry is asked whether it landed (HEAD)
//! before the write is made again, so a completed blob is never uploaded twice.
//! Everything read from the registry is bounded, and a manifest's digest is
//! computed from its bytes, never taken from a header.

use std::io::SeekFrom;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use futures_util::TryStreamExt;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Response, Url};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::error::RegistryError;
use super::explain::explain;
use super::reference::RepoName;
use super::transport::{Options, Transport, connect, read_bounded};
use crate::blob::BlobRange;
use crate::digest::Digest;
use crate::manifest::ACCEPTED;

/// The largest manifest or index read (distribution's own limit).
pub const MAX_MANIFEST: usize = 4 * 1024 * 1024;

/// One repository on one registry, with the transport that reaches it.
pub struct Repository {
    transport: Arc<Transport>,
    registry: String,
    repository: String,
    /// `--repo` as given, for messages.
    name: String,
}

impl Repository {
    /// Finds credentials and a transport for `repo`'s registry.
    pub fn new(repo: &RepoName, opts: &Options) -> Result<Repository> {
        let transport = connect(repo.registry(), repo.path(), opts)?;
        Ok(Repository {
            transport,
            registry: repo.registry().to_string(),
            repository: repo.path().to_string(),
            name: repo.to_string(),
        })
    }

    /// The transport (for its counters).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    fn explain(&self, e: RegistryError, doing: &str) -> anyhow::Error {
        explain(e, &self.registry, &self.name, &self.transport.who(), doing)
    }

    fn url(&self, rest: &str) -> String {
        self.transport.url(&format!("{}/{rest}", self.repository))
    }

    fn pull(&self) -> Vec<String> {
        vec![format!("repository:{}:pull", self.repository)]
    }

    fn push(&self) -> Vec<String> {
        vec![format!("repository:{}:pull,push", self.repository)]
    }

    /// What `tag` serves: its digest (of the bytes) and bytes, or `None` if the
    /// tag does not exist.
    pub async fn get_tag(&self, tag: &str) -> Result<Option<(Digest, Vec<u8>)>> {
        let doing = format!("reading tag {tag}");
        Ok(self
            .fetch_manifest(tag, &doing)
            .await?
            .map(|m| (m.digest, m.bytes)))
    }

    /// The manifest at `reference` (a tag or a digest), or `None` if there is
    /// none. The digest is computed from the bytes; asked by digest, bytes that
    /// hash to anything else are refused.
    pub async fn get_manifest(&self, reference: &str) -> Result<Option<Fetched>> {
        let doing = format!("reading manifest {reference}");
        self.fetch_manifest(reference, &doing).await
    }

    async fn fetch_manifest(&self, reference: &str, doing: &str) -> Result<Option<Fetched>> {
        let url = self.url(&format!("manifests/{reference}"));
        let res = self
            .transport
            .send(doing, &self.pull(), true, &|c| {
                c.get(&url)
                    .header(ACCEPT, ACCEPTED.join(", "))
                    .timeout(self.transport.small_deadline)
            })
            .await;
        let resp = match res {
            Ok(r) => r,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(self.explain(e, doing)),
        };
        let said = header_digest(&resp);
        let media_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let bytes = read_bounded(resp, MAX_MANIFEST)
            .await
            .map_err(|e| self.explain(e, doing))?;
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
            return Err(self.explain(RegistryError::Refused(lie), doing));
        }
        Ok(Some(Fetched {
            digest,
            media_type,
            bytes,
        }))
    }

    /// Blob `digest`, read whole into memory (at most `max` bytes) and checked
    /// against its digest; `None` when the repository does not have it. For
    /// small content: an image config, a policy module.
    pub async fn get_blob(&self, digest: &Digest, max: usize) -> Result<Option<Vec<u8>>> {
        let doing = format!("reading blob {digest}");
        let url = self.url(&format!("blobs/{digest}"));
        let res = self
            .transport
            .send(&doing, &self.pull(), true, &|c| {
                let rb = c.get(&url);
                // A config is as small as a manifest and gets its deadline; a
                // module's time is bounded by the stall timeout alone.
                if max <= MAX_MANIFEST {
                    rb.timeout(self.transport.small_deadline)
                } else {
                    rb
                }
            })
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
        if got != *digest {
            return Err(self.explain(
                RegistryError::Refused(format!(
                    "the bytes it serves hash to {got}, not to that digest"
                )),
                &doing,
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
        let doing = format!("mounting blob {digest} from {}", from.repository);
        let mut url =
            Url::parse(&self.url("blobs/uploads/")).map_err(|e| anyhow::anyhow!("{doing}: {e}"))?;
        url.query_pairs_mut()
            .append_pair("mount", digest.as_str())
            .append_pair("from", &from.repository);
        // One token for both: push here, pull there.
        let scopes = [
            self.push().remove(0),
            format!("repository:{}:pull", from.repository),
        ];
        let resp = match self
            .transport
            .send(&doing, &scopes, true, &|c| {
                c.post(url.clone()).header(CONTENT_LENGTH, 0)
            })
            .await
        {
            Ok(resp) => resp,
            // A token registry refuses the whole request when the identity may
            // push here but not read there (per-repository robot accounts): the
            // copy reads the source with the source's own credentials. A real
            // lack of push rights is then reported by the copy.
            Err(e) if matches!(e.status(), Some(401 | 403)) => return Ok(false),
            Err(e) => return Err(self.explain(e, &doing)),
        };
        // 201: mounted. 202: an upload session instead, left to expire (the
        // copy opens its own, so a retried copy starts clean).
        Ok(resp.status().as_u16() == 201)
    }

    /// Whether `other` is on the same registry as this repository (so a blob of
    /// it may be mounted rather than copied).
    pub fn same_registry(&self, other: &Repository) -> bool {
        self.registry == other.registry && self.repository != other.repository
    }

    /// The repository as it was named (`--repo`, or a source reference's).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Does the repository hold blob `digest`?
    pub async fn has_blob(&self, digest: &Digest) -> Result<bool> {
        let doing = format!("checking blob {digest}");
        let url = self.url(&format!("blobs/{digest}"));
        match self
            .transport
            .send(&doing, &self.pull(), true, &|c| c.head(&url))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(self.explain(e, &doing)),
        }
    }

    /// Does the repository hold manifest `digest`? (A HEAD, trusted.)
    pub async fn has_manifest(&self, digest: &Digest) -> Result<bool> {
        let doing = format!("checking manifest {digest}");
        Ok(self.head_manifest(digest.as_str(), &doing).await?.is_some())
    }

    /// HEAD of a manifest by digest or tag: the digest the registry says it
    /// serves there (`Docker-Content-Digest`), or `None` when absent.
    async fn head_manifest(&self, reference: &str, doing: &str) -> Result<Option<String>> {
        let url = self.url(&format!("manifests/{reference}"));
        match self
            .transport
            .send(doing, &self.pull(), true, &|c| {
                c.head(&url).header(ACCEPT, ACCEPTED.join(", "))
            })
            .await
        {
            Ok(resp) => Ok(Some(header_digest(&resp).unwrap_or_default())),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(self.explain(e, doing)),
        }
    }

    /// Uploads one blob, streamed from its byte range: never more than a buffer
    /// of it is in memory. `sent` counts the bytes as they go out.
    ///
    /// Blobs larger than the chunk size go up in chunks, so a cut costs at most
    /// a chunk: the upload resumes where the registry says it stands. When a
    /// write's answer is lost, the blob is looked for (HEAD) before anything is
    /// sent again.
    pub async fn push_blob(
        &self,
        digest: &Digest,
        range: &BlobSource<'_>,
        sent: Arc<AtomicU64>,
    ) -> Result<()> {
        let doing = match range {
            BlobSource::File(_) | BlobSource::Bytes(_) => format!("uploading blob {digest}"),
            BlobSource::Registry { from, .. } => {
                format!("copying blob {digest} from {}", from.name)
            }
        };
        let mut retry = 0;
        let mut chunked = range.size() > self.transport.chunk_size;
        let mut restart;
        loop {
            let result = if chunked {
                self.upload_chunked(digest, range, &sent, &doing, &mut retry)
                    .await
            } else {
                self.upload_whole(digest, range, &sent, &doing).await
            };
            let err = match result {
                Ok(()) => return Ok(()),
                Err(Upload::ChunksRefused) => {
                    // The registry does not take chunks: one fresh PUT instead.
                    chunked = false;
                    continue;
                }
                Err(Upload::Restart(e)) => {
                    restart = true;
                    e
                }
                Err(Upload::Failed(e)) => {
                    restart = false;
                    e
                }
            };
            if !err.is_transient() && !restart {
                return Err(self.explain(err, &doing));
            }
            retry += 1;
            if !self.transport.backoff(&doing, retry, &err).await {
                return Err(self.explain(err, &doing));
            }
            // The answer may have been lost after the registry took the blob.
            if self.has_blob(digest).await? {
                return Ok(());
            }
        }
    }

    /// POST to start an upload session: its URL.
    async fn start_upload(&self, doing: &str) -> Result<Url, RegistryError> {
        let url = self.url("blobs/uploads/");
        let resp = self
            .transport
            .send(doing, &self.push(), true, &|c| {
                c.post(&url).header(CONTENT_LENGTH, 0)
            })
            .await?;
        location(&resp)
    }

    /// POST, then one streamed PUT of the whole blob.
    async fn upload_whole(
        &self,
        digest: &Digest,
        range: &BlobSource<'_>,
        sent: &Arc<AtomicU64>,
        doing: &str,
    ) -> Result<(), Upload> {
        let session = self.start_upload(doing).await?;
        let put = with_digest(&session, digest);
        let (body, counted) = range.body(digest, 0, range.size(), sent.clone()).await?;
        let body = std::sync::Mutex::new(Some(body));
        let res = self
            .transport
            .send(doing, &self.push(), false, &|c| {
                let b = body.lock().expect("body").take().unwrap_or_default();
                c.put(put.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, range.size())
                    .body(b)
            })
            .await;
        if res.is_err() {
            // What went out will go again (or was the registry's already).
            sent.fetch_sub(counted.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        res?;
        Ok(())
    }

    /// POST, PATCH a chunk at a time, PUT to finish. After a failed chunk, the
    /// upload's state is asked for (GET on its URL) and the upload goes on from
    /// the registry's offset.
    async fn upload_chunked(
        &self,
        digest: &Digest,
        range: &BlobSource<'_>,
        sent: &Arc<AtomicU64>,
        doing: &str,
        retry: &mut u32,
    ) -> Result<(), Upload> {
        let mut session = self.start_upload(doing).await?;
        let mut offset = 0u64;
        let total = range.size();
        while offset < total {
            let len = self.transport.chunk_size.min(total - offset);
            let (body, counted) = range.body(digest, offset, len, sent.clone()).await?;
            let body = std::sync::Mutex::new(Some(body));
            let at = session.clone();
            let res = self
                .transport
                .send(doing, &self.push(), false, &|c| {
                    let b = body.lock().expect("body").take().unwrap_or_default();
                    c.patch(at.clone())
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_LENGTH, len)
                        .header("Content-Range", format!("{offset}-{}", offset + len - 1))
                        .body(b)
                })
                .await;
            match res {
                Ok(resp) => {
                    session = location(&resp)?;
                    offset = range_end(&resp).map_or(offset + len, |end| end + 1);
                }
                Err(e) if e.is_transient() => {
                    *retry += 1;
                    if !self.transport.backoff(doing, *retry, &e).await {
                        return Err(Upload::Failed(e));
                    }
                    // Where does the upload stand? Resume from there. A registry
                    // that took the chunk but lost the answer may no longer know
                    // this URL (distribution's state token names the old offset):
                    // then the upload starts over, after a look for the blob.
                    let (at, end) = match self.upload_status(&session, doing).await {
                        Ok(status) => status,
                        Err(e) => {
                            sent.fetch_sub(
                                offset + counted.load(Ordering::Relaxed),
                                Ordering::Relaxed,
                            );
                            return Err(Upload::Restart(e));
                        }
                    };
                    let resume = end.map_or(0, |e| e + 1).min(offset + len);
                    // The display counted `offset` plus what this chunk read;
                    // the registry holds `resume`.
                    let shown = offset + counted.load(Ordering::Relaxed);
                    if shown > resume {
                        sent.fetch_sub(shown - resume, Ordering::Relaxed);
                    } else {
                        sent.fetch_add(resume - shown, Ordering::Relaxed);
                    }
                    session = at;
                    offset = resume;
                }
                Err(e) if matches!(e.status(), Some(400 | 405 | 416 | 501)) && offset == 0 => {
                    return Err(Upload::ChunksRefused);
                }
                Err(e) => return Err(Upload::Failed(e)),
            }
        }
        let put = with_digest(&session, digest);
        self.transport
            .send(doing, &self.push(), false, &|c| {
                c.put(put.clone()).header(CONTENT_LENGTH, 0)
            })
            .await?;
        Ok(())
    }

    /// GET on an upload's URL: its (maybe new) URL and the last byte it holds.
    async fn upload_status(
        &self,
        session: &Url,
        doing: &str,
    ) -> Result<(Url, Option<u64>), RegistryError> {
        let resp = self
            .transport
            .send(doing, &self.push(), true, &|c| c.get(session.clone()))
            .await?;
        let at = location(&resp).unwrap_or_else(|_| session.clone());
        Ok((at, range_end(&resp)))
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
        let doing = format!("putting manifest {reference}");
        let url = self.url(&format!("manifests/{reference}"));
        let want = Digest::of(bytes);
        let body = bytes::Bytes::copy_from_slice(bytes);
        let mut retry = 0;
        loop {
            let res = self
                .transport
                .send(&doing, &self.push(), false, &|c| {
                    c.put(&url)
                        .header(CONTENT_TYPE, media_type)
                        .body(body.clone())
                })
                .await;
            let err = match res {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if !err.is_transient() {
                return Err(self.explain(err, &doing));
            }
            retry += 1;
            if !self.transport.backoff(&doing, retry, &err).await {
                return Err(self.explain(err, &doing));
            }
            if self.head_manifest(reference, &doing).await?.as_deref() == Some(want.as_str()) {
                return Ok(());
            }
        }
    }
}

/// Why an upload attempt ended.
enum Upload {
    Failed(RegistryError),
    /// The upload cannot go on where it stands: start it over (after a look for
    /// the blob). Counted as a retry.
    Restart(RegistryError),
    /// The registry answered the first chunk with a refusal of chunks.
    ChunksRefused,
}

impl From<RegistryError> for Upload {
    fn from(e: RegistryError) -> Upload {
        Upload::Failed(e)
    }
}

/// `Docker-Content-Digest`, when the answer has one.
fn header_digest(resp: &Response) -> Option<String> {
    resp.headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The upload URL an answer points to, resolved against the request's URL.
fn location(resp: &Response) -> Result<Url, RegistryError> {
    let loc = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| RegistryError::Refused("the upload answer has no Location".into()))?;
    resp.url()
        .join(loc)
        .map_err(|e| RegistryError::Refused(format!("the upload Location {loc:?}: {e}")))
}

/// The last byte an upload holds, from `Range: 0-N`.
fn range_end(resp: &Response) -> Option<u64> {
    let r = resp.headers().get("Range")?.to_str().ok()?;
    let r = r.strip_prefix("bytes=").unwrap_or(r);
    let (start, end) = r.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    // distribution answers "0-0" for an upload that holds nothing yet (and for
    // one byte, which pushgate's chunks never are).
    (end > start).then_some(end)
}

/// `session` with `digest=D` added to its query (the upload state stays).
fn with_digest(session: &Url, digest: &Digest) -> Url {
    let mut u = session.clone();
    u.query_pairs_mut().append_pair("digest", digest.as_str());
    u
}

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

impl BlobSource<'_> {
    /// The blob's size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            BlobSource::File(r) => r.len,
            BlobSource::Registry { size, .. } => *size,
            BlobSource::Bytes(b) => b.len() as u64,
        }
    }

    /// `len` bytes of the blob from `offset`, as a streamed request body,
    /// counting into `sent` (the display) and into the returned counter (this
    /// body alone, so a failed attempt can be taken back out of the display).
    async fn body(
        &self,
        digest: &Digest,
        offset: u64,
        len: u64,
        sent: Arc<AtomicU64>,
    ) -> Result<(reqwest::Body, Arc<AtomicU64>), RegistryError> {
        let mine = Arc::new(AtomicU64::new(0));
        let counted = mine.clone();
        let count = move |chunk: &bytes::Bytes| {
            sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            counted.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        };
        let body = match self {
            BlobSource::File(range) => {
                let io = |e: std::io::Error| {
                    RegistryError::Refused(format!("reading {}: {e}", range.file.display()))
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
                let part = b.slice(offset as usize..(offset + len) as usize);
                count(&part);
                reqwest::Body::from(part)
            }
        };
        Ok((body, mine))
    }
}

impl Repository {
    /// `len` bytes of blob `digest` (`size` in all) from `offset`, as a stream.
    /// A range is asked for when less than the whole blob is wanted; a registry
    /// that answers with the whole blob anyway has the rest cut off here.
    async fn blob_stream(
        &self,
        digest: &Digest,
        offset: u64,
        len: u64,
        size: u64,
    ) -> Result<
        impl futures_util::Stream<Item = Result<bytes::Bytes, reqwest::Error>> + use<>,
        RegistryError,
    > {
        let doing = format!("reading blob {digest} of {}", self.name);
        let url = self.url(&format!("blobs/{digest}"));
        let partial = offset > 0 || len < size;
        let resp = self
            .transport
            .send(&doing, &self.pull(), true, &|c| {
                let rb = c.get(&url);
                if partial {
                    rb.header(RANGE, format!("bytes={offset}-{}", offset + len - 1))
                } else {
                    rb
                }
            })
            .await?;
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

/// A manifest as read from a registry.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Of the bytes.
    pub digest: Digest,
    /// The answer's Content-Type.
    pub media_type: Option<String>,
    pub bytes: Vec<u8>,
}
