//! One blob upload, carried through a bad day: a session (POST), then either
//! one streamed PUT of the whole blob or chunks (PATCH) and a closing PUT.
//!
//! A transfer fails only when it stops making progress: every request in it
//! has its own retry budget in the executor, and the transfer as a whole goes
//! on while the registry confirms new bytes; it gives up after `--retry-times`
//! attempts in a row that confirmed nothing, or on a refusal. After a failed
//! chunk the upload resumes at the offset the registry reports; when the
//! registry has lost the session (distribution forgets one whose chunk answer
//! was lost), the blob is looked for and the upload starts over.
//!
//! A body the registry (or a proxy in front of it) refuses as too large (413)
//! is sent again in chunks half that size, down to a floor; the size taken is
//! remembered per registry host for the run.

use std::sync::atomic::Ordering;

use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::{Method, Response, Url};

use super::blobs::{BlobSource, Meter};
use super::error::RegistryError;
use super::repository::Repository;
use super::request::{Body, Landed, OnLoss, Op, Request, Target};
use crate::digest::Digest;

/// The smallest chunk a 413 halves down to: below this, a registry that
/// refuses bodies is refusing uploads, not large requests.
pub const MIN_CHUNK: u64 = 64 * 1024;

/// What one step of an upload achieved.
enum Step {
    /// A chunk was taken: the session goes on at `next`, the registry holds
    /// `confirmed` bytes.
    Moved { next: Url, confirmed: u64 },
    /// The blob is complete.
    Done,
}

/// Uploads `source` as blob `digest` into `repo`, as operation `op`, in
/// `opened` (a session [`open`]ed ahead, while another upload was sending)
/// or in a new one.
pub(super) async fn upload(
    repo: &Repository,
    op: &Op,
    digest: &Digest,
    source: &BlobSource<'_>,
    meter: &Meter,
    opened: Option<Url>,
) -> Result<(), RegistryError> {
    let exec = &repo.exec;
    let total = source.size();
    // Attempts in a row that confirmed no new byte.
    let mut stalled = 0;
    // A session opened ahead may have expired by its turn: the first refusal
    // of it (404, BLOB_UPLOAD_UNKNOWN) opens a new one instead.
    let mut ahead = opened.is_some();
    let mut session: Option<Url> = opened;
    // What the registry confirmed in this session.
    let mut offset = 0u64;
    // The registry refused chunks: whole PUTs only.
    let mut whole_only = false;
    loop {
        let chunk = chunk_size(repo);
        let chunked = !whole_only && (total > chunk || offset > 0);
        let at = match &session {
            Some(at) => at.clone(),
            None => {
                offset = 0;
                meter.settle(0);
                let at = start(repo, op).await?;
                session = Some(at.clone());
                at
            }
        };
        let len = if chunked {
            chunk.min(total - offset)
        } else {
            total
        };
        let step = if chunked && len > 0 {
            patch(repo, op, &at, source, digest, offset, len, meter).await
        } else {
            finish(repo, op, &at, digest, source, chunked, meter)
                .await
                .map(|()| Step::Done)
        };
        let err = match step {
            Ok(Step::Done) => {
                meter.settle(total);
                return Ok(());
            }
            Ok(Step::Moved { next, confirmed }) => {
                ahead = false;
                let confirmed = within(confirmed, total, exec.registry())?;
                if confirmed > offset {
                    stalled = 0;
                }
                offset = confirmed;
                meter.settle(offset);
                session = Some(next);
                continue;
            }
            Err(e) => e,
        };
        if std::mem::take(&mut ahead) && offset == 0 && lost_session(&err) {
            session = None;
            continue;
        }
        if err.status() == Some(413) {
            shrink(repo, len)?;
            meter.settle(offset);
            continue;
        }
        if chunked && offset == 0 && matches!(err.status(), Some(400 | 405 | 416 | 501)) {
            // The registry does not take chunks: one fresh PUT instead.
            whole_only = true;
            session = None;
            continue;
        }
        if !err.is_transient() {
            return Err(err);
        }
        stalled += 1;
        if !exec.schedule_retry(op, &err, stalled) {
            return Err(err);
        }
        // Where does the upload stand? Resume from there.
        if chunked && let Ok((next, confirmed)) = status(repo, op, &at).await {
            let confirmed = within(confirmed, total, exec.registry())?;
            if confirmed > offset {
                stalled = 0;
            }
            offset = confirmed;
            meter.settle(offset);
            session = Some(next);
            continue;
        }
        // The session is gone (or was one PUT): the answer may have been lost
        // after the registry took the whole blob; else start over.
        session = None;
        if has(repo, op, digest).await? {
            meter.settle(total);
            return Ok(());
        }
    }
}

/// The registry does not know the upload session (it expired, or was purged).
fn lost_session(err: &RegistryError) -> bool {
    err.status() == Some(404) || err.has_code("BLOB_UPLOAD_UNKNOWN")
}

/// The chunk size for `repo` now: `--chunk-size`, or less if its host
/// refused bodies that large.
fn chunk_size(repo: &Repository) -> u64 {
    let limit = repo.exec.host().body_limit.load(Ordering::Relaxed);
    match limit {
        0 => repo.exec.chunk_size,
        n => repo.exec.chunk_size.min(n),
    }
}

/// After a 413 for a body of `refused` bytes: halve, remember it for the
/// host, say so; an error once the floor is reached.
fn shrink(repo: &Repository, refused: u64) -> Result<(), RegistryError> {
    let next = refused / 2;
    if next < MIN_CHUNK {
        return Err(RegistryError::TooLarge {
            refused,
            floor: MIN_CHUNK,
        });
    }
    repo.exec
        .host()
        .body_limit
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
            (now == 0 || next < now).then_some(next)
        })
        .ok();
    repo.exec.say(&format!(
        "pushgate: registry {}: a request body of {refused} bytes was refused as too large \
         (HTTP 413); sending blobs in chunks of {next} bytes from now on",
        repo.exec.registry()
    ));
    Ok(())
}

/// `confirmed` bytes held by the registry, refused when past the blob's end
/// (a registry cannot hold more of a blob than there is).
fn within(confirmed: u64, total: u64, registry: &str) -> Result<u64, RegistryError> {
    if confirmed > total {
        return Err(RegistryError::Invalid(format!(
            "registry {registry} says the upload holds {confirmed} bytes of a {total}-byte blob"
        )));
    }
    Ok(confirmed)
}

/// POST to start an upload session ahead of its upload: its URL.
pub(super) async fn open(repo: &Repository, op: &Op) -> Result<Url, RegistryError> {
    start(repo, op).await
}

/// POST to start an upload session: its URL.
async fn start(repo: &Repository, op: &Op) -> Result<Url, RegistryError> {
    let req = repo.request(op.clone(), Method::POST, "blobs/uploads/".into());
    let resp = repo.exec.send(&req).await?;
    location(&resp)
}

/// A request of `op` on the upload session `at`.
fn on_session<'a>(repo: &Repository, op: &Op, method: Method, at: &Url) -> Request<'a> {
    Request::new(
        op.clone(),
        method,
        &repo.repository,
        Target::Upload(at.clone()),
    )
}

/// PATCH `len` bytes from `offset`.
#[allow(clippy::too_many_arguments)]
async fn patch(
    repo: &Repository,
    op: &Op,
    at: &Url,
    source: &BlobSource<'_>,
    digest: &Digest,
    offset: u64,
    len: u64,
    meter: &Meter,
) -> Result<Step, RegistryError> {
    let req = on_session(repo, op, Method::PATCH, at)
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(
            reqwest::header::HeaderName::from_static("content-range"),
            format!("{offset}-{}", offset + len - 1),
        )
        .body(Body::Blob {
            source,
            digest,
            offset,
            len,
            meter,
        })
        .on_loss(OnLoss::Report);
    let resp = repo.exec.send(&req).await?;
    let next = location(&resp)?;
    let confirmed = match range_end(&resp)? {
        Some(end) => end.saturating_add(1),
        None => offset + len,
    };
    Ok(Step::Moved { next, confirmed })
}

/// The closing PUT: empty after chunks, or the whole blob in one.
async fn finish(
    repo: &Repository,
    op: &Op,
    at: &Url,
    digest: &Digest,
    source: &BlobSource<'_>,
    chunked: bool,
    meter: &Meter,
) -> Result<(), RegistryError> {
    let req = on_session(repo, op, Method::PUT, at).query("digest", digest.to_string());
    let req = if chunked {
        // Nothing is sent: if its answer is lost, the blob tells.
        req.on_loss(OnLoss::Check(Landed::Blob(digest.clone())))
    } else {
        req.header(CONTENT_TYPE, "application/octet-stream")
            .body(Body::Blob {
                source,
                digest,
                offset: 0,
                len: source.size(),
                meter,
            })
            .on_loss(OnLoss::Report)
    };
    repo.exec.write(&req).await
}

/// GET on an upload's URL: its (maybe new) URL and the bytes it holds.
async fn status(repo: &Repository, op: &Op, at: &Url) -> Result<(Url, u64), RegistryError> {
    let req = on_session(repo, op, Method::GET, at);
    let resp = repo.exec.send(&req).await?;
    let next = location(&resp).unwrap_or_else(|_| at.clone());
    let held = range_end(&resp)?.map_or(0, |end| end.saturating_add(1));
    Ok((next, held))
}

/// Whether the repository holds the blob (a lost answer's write landed).
async fn has(repo: &Repository, op: &Op, digest: &Digest) -> Result<bool, RegistryError> {
    let req = repo.request(op.clone(), Method::HEAD, format!("blobs/{digest}"));
    match repo.exec.send(&req).await {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// The upload URL an answer points to, resolved against the request's URL.
fn location(resp: &Response) -> Result<Url, RegistryError> {
    let loc = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| RegistryError::Invalid("the upload answer has no Location".into()))?;
    resp.url()
        .join(loc)
        .map_err(|e| RegistryError::Invalid(format!("the upload Location {loc:?}: {e}")))
}

/// The last byte an upload holds, from `Range: 0-N`; `None` when it holds
/// nothing yet or says nothing. A Range that does not parse as two numbers,
/// or whose end comes before its start, is refused.
fn range_end(resp: &Response) -> Result<Option<u64>, RegistryError> {
    let Some(r) = resp.headers().get("Range") else {
        return Ok(None);
    };
    parse_range(r.to_str().unwrap_or_default())
}

pub(super) fn parse_range(r: &str) -> Result<Option<u64>, RegistryError> {
    let bad = || RegistryError::Invalid(format!("the upload's Range {r:?} is not N-M"));
    let r = r.strip_prefix("bytes=").unwrap_or(r);
    let (start, end) = r.split_once('-').ok_or_else(bad)?;
    let start: u64 = start.trim().parse().map_err(|_| bad())?;
    let end: u64 = end.trim().parse().map_err(|_| bad())?;
    if end < start {
        return Err(bad());
    }
    // distribution answers "0-0" for an upload that holds nothing yet (and for
    // one byte, which pushgate's chunks never are).
    Ok((end > start).then_some(end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_nonsense_is_refused() {
        assert_eq!(parse_range("0-0").unwrap(), None);
        assert_eq!(parse_range("0-8191").unwrap(), Some(8191));
        assert_eq!(parse_range("bytes=0-99").unwrap(), Some(99));
        assert!(parse_range("5-3").is_err());
        assert!(parse_range("0-18446744073709551616").is_err(), "past u64");
        assert!(parse_range("x").is_err());
        // The largest end parses; what it confirms is bounded by the blob.
        assert_eq!(
            parse_range("0-18446744073709551615").unwrap(),
            Some(u64::MAX)
        );
        assert!(within(u64::MAX.saturating_add(1), 100, "r").is_err());
        assert_eq!(within(100, 100, "r").unwrap(), 100);
    }

    #[test]
    fn only_an_unknown_session_is_opened_again() {
        let status = |status: u16, codes: &[&str]| RegistryError::Status {
            status,
            codes: codes.iter().map(|c| c.to_string()).collect(),
            message: String::new(),
            retry_after: None,
        };
        assert!(lost_session(&status(404, &[])));
        assert!(lost_session(&status(404, &["BLOB_UPLOAD_UNKNOWN"])));
        assert!(lost_session(&status(400, &["BLOB_UPLOAD_UNKNOWN"])));
        for refused in [
            status(400, &["DIGEST_INVALID"]),
            status(401, &[]),
            status(403, &["DENIED"]),
            status(500, &[]),
        ] {
            assert!(!lost_session(&refused), "{refused:?}");
        }
    }
}

/// Fuzz target (see `crate::fuzz`): an upload's Range either gives an end that
/// reads back the same, or is refused naming the header's value.
#[cfg(test)]
mod fuzz {
    use super::parse_range;
    use crate::fuzz::{Outcome, ensure, run, text};

    #[test]
    fn fuzz_upload_ranges() {
        let dict: &[&[u8]] = &[b"bytes=", b"0-", b"-0", b"18446744073709551615", b"+1"];
        run("upload_range", dict, &|input| {
            let r = text(input);
            match parse_range(&r) {
                Ok(Some(end)) => {
                    ensure(end > 0, || format!("{r:?} ends at 0"))?;
                    ensure(
                        matches!(parse_range(&format!("0-{end}")), Ok(Some(e)) if e == end),
                        || format!("{r:?} ends at {end}, which does not read back"),
                    )?;
                    Ok(Outcome::Accepted)
                }
                Ok(None) => Ok(Outcome::Accepted),
                Err(e) => {
                    let msg = e.to_string();
                    ensure(msg.contains(&format!("{r:?}")), || {
                        format!("the error for {r:?} does not quote it: {msg}")
                    })?;
                    Ok(Outcome::Refused)
                }
            }
        });
    }
}
