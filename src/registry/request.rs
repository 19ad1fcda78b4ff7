//! A registry request as data: what operation it is part of, its method, what
//! it addresses, its body, and what to do when its answer is lost. The
//! operations ([`super::blobs`], [`super::manifests`]) build these; the
//! [`super::executor`] sends them and owns everything around the sending. The
//! scope a request needs is derived from it (a read needs `pull`, anything
//! else `pull,push`), never written by hand at each call site.

use std::fmt;

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, Url};

use super::blobs::{BlobSource, Meter};
use crate::digest::Digest;

/// The operation a request is part of: what the trace, the retry line and the
/// explanation of a failure name, and what decides the advice given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    ReadTag(String),
    ReadManifest(String),
    CheckManifest(String),
    PutManifest(String),
    CheckBlob(Digest),
    /// A small blob read whole (a config, a policy module).
    ReadBlob(Digest),
    /// A byte range of a blob read for a copy into another repository
    /// (`of` names the source repository).
    StreamBlob {
        digest: Digest,
        of: String,
    },
    MountBlob {
        digest: Digest,
        from: String,
    },
    UploadBlob(Digest),
    /// A blob streamed from another registry (`from` names it).
    CopyBlob {
        digest: Digest,
        from: String,
    },
    /// The referrers API's list of what refers to a manifest (OCI 1.1).
    ListReferrers(Digest),
    /// The token request for a registry's token auth.
    Token,
}

impl Op {
    /// Whether the operation writes to the registry (so a refusal is about
    /// push rights, not pull rights).
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Op::PutManifest(_) | Op::MountBlob { .. } | Op::UploadBlob(_) | Op::CopyBlob { .. }
        )
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::ReadTag(t) => write!(f, "reading tag {t}"),
            Op::ReadManifest(r) => write!(f, "reading manifest {r}"),
            Op::CheckManifest(r) => write!(f, "checking manifest {r}"),
            Op::PutManifest(r) => write!(f, "putting manifest {r}"),
            Op::CheckBlob(d) => write!(f, "checking blob {d}"),
            Op::ReadBlob(d) => write!(f, "reading blob {d}"),
            Op::StreamBlob { digest, of } => write!(f, "reading blob {digest} of {of}"),
            Op::MountBlob { digest, from } => write!(f, "mounting blob {digest} from {from}"),
            Op::UploadBlob(d) => write!(f, "uploading blob {d}"),
            Op::CopyBlob { digest, from } => write!(f, "copying blob {digest} from {from}"),
            Op::ListReferrers(d) => write!(f, "listing the referrers of {d}"),
            Op::Token => f.write_str("getting a token"),
        }
    }
}

/// Where a request goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// A path under the repository's `/v2/<name>/` (`manifests/stable`,
    /// `blobs/uploads/`).
    Repo(String),
    /// A URL the registry gave (an upload's `Location`): on the registry's own
    /// origin it is treated as the registry; anywhere else it gets no
    /// credentials.
    Upload(Url),
    /// The token realm the registry named (its token service).
    Realm(Url),
}

/// What a request sends.
pub enum Body<'a> {
    Empty,
    Bytes(bytes::Bytes),
    /// `len` bytes of a blob from `offset`, streamed from its source (made
    /// anew for each attempt).
    Blob {
        source: &'a BlobSource<'a>,
        digest: &'a Digest,
        offset: u64,
        len: u64,
        /// Counts the bytes as they go out.
        meter: &'a Meter,
    },
}

impl Body<'_> {
    pub fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::Blob { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the executor does when a request fails transiently (its answer may
/// be lost after the registry acted on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnLoss {
    /// Send it again: it changes nothing, or changing it twice is harmless.
    Repeat,
    /// Look whether it landed; send it again only if it did not.
    Check(Landed),
    /// Give the failure back to the caller, who knows how to go on (a chunk
    /// of an upload resumes at the registry's offset).
    Report,
}

/// How to tell that a write whose answer was lost landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landed {
    /// The repository holds this blob.
    Blob(Digest),
    /// `reference` serves the manifest with this digest.
    Manifest { reference: String, digest: Digest },
}

/// One request.
pub struct Request<'a> {
    pub op: Op,
    pub method: Method,
    pub target: Target,
    pub query: Vec<(&'static str, String)>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Body<'a>,
    /// The repository whose scope it needs (none for a token request).
    pub repository: Option<String>,
    /// Other repositories it reads (a mount's source): `pull` on each.
    pub also_reads: Vec<String>,
    /// The whole answer is small and must arrive within the small-answer
    /// deadline (a manifest, a token, a config).
    pub small: bool,
    pub on_loss: OnLoss,
}

impl<'a> Request<'a> {
    /// A request of `op` to `target` in `repository`: no body, repeated when
    /// its answer is lost (right for reads; writes say otherwise).
    pub fn new(op: Op, method: Method, repository: &str, target: Target) -> Request<'a> {
        Request {
            op,
            method,
            target,
            query: Vec::new(),
            headers: Vec::new(),
            body: Body::Empty,
            repository: Some(repository.to_string()),
            also_reads: Vec::new(),
            small: false,
            on_loss: OnLoss::Repeat,
        }
    }

    pub fn header(mut self, name: HeaderName, value: impl AsRef<str>) -> Request<'a> {
        if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
            self.headers.push((name, v));
        }
        self
    }

    pub fn query(mut self, name: &'static str, value: impl Into<String>) -> Request<'a> {
        self.query.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: Body<'a>) -> Request<'a> {
        self.body = body;
        self
    }

    pub fn small(mut self) -> Request<'a> {
        self.small = true;
        self
    }

    pub fn on_loss(mut self, on_loss: OnLoss) -> Request<'a> {
        self.on_loss = on_loss;
        self
    }

    pub fn also_reads(mut self, repository: &str) -> Request<'a> {
        self.also_reads.push(repository.to_string());
        self
    }

    /// Whether the request needs push rights: any method but a read, and
    /// anything on an upload session (distribution guards those with push,
    /// status reads included).
    pub fn pushes(&self) -> bool {
        !matches!(self.method, Method::GET | Method::HEAD)
            || matches!(self.target, Target::Upload(_))
    }

    /// The token scopes it needs, as the Docker token protocol spells them.
    pub fn scopes(&self) -> Vec<String> {
        let Some(repo) = &self.repository else {
            return Vec::new();
        };
        let actions = if self.pushes() { "pull,push" } else { "pull" };
        let mut scopes = vec![format!("repository:{repo}:{actions}")];
        scopes.extend(
            self.also_reads
                .iter()
                .map(|r| format!("repository:{r}:pull")),
        );
        scopes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        Digest::of(b"x")
    }

    #[test]
    fn scopes_follow_the_method_and_upload_sessions_need_push() {
        let read = Request::new(
            Op::ReadTag("t".into()),
            Method::GET,
            "a/b",
            Target::Repo("manifests/t".into()),
        );
        assert_eq!(read.scopes(), ["repository:a/b:pull"]);
        let head = Request::new(
            Op::CheckBlob(digest()),
            Method::HEAD,
            "a/b",
            Target::Repo("blobs/x".into()),
        );
        assert_eq!(head.scopes(), ["repository:a/b:pull"]);
        let put = Request::new(
            Op::PutManifest("t".into()),
            Method::PUT,
            "a/b",
            Target::Repo("manifests/t".into()),
        );
        assert_eq!(put.scopes(), ["repository:a/b:pull,push"]);
        let status = Request::new(
            Op::UploadBlob(digest()),
            Method::GET,
            "a/b",
            Target::Upload(Url::parse("https://r.io/v2/a/b/blobs/uploads/1").unwrap()),
        );
        assert_eq!(status.scopes(), ["repository:a/b:pull,push"]);
        let mount = Request::new(
            Op::MountBlob {
                digest: digest(),
                from: "c/d".into(),
            },
            Method::POST,
            "a/b",
            Target::Repo("blobs/uploads/".into()),
        )
        .also_reads("c/d");
        assert_eq!(
            mount.scopes(),
            ["repository:a/b:pull,push", "repository:c/d:pull"]
        );
    }

    #[test]
    fn operations_say_what_they_do_and_whether_they_write() {
        let d = digest();
        assert_eq!(
            Op::UploadBlob(d.clone()).to_string(),
            format!("uploading blob {d}")
        );
        assert_eq!(
            Op::PutManifest("stable".into()).to_string(),
            "putting manifest stable"
        );
        assert!(Op::PutManifest("x".into()).writes());
        assert!(
            Op::MountBlob {
                digest: d.clone(),
                from: "x".into()
            }
            .writes()
        );
        assert!(!Op::ReadTag("x".into()).writes());
        assert!(!Op::CheckBlob(d).writes());
    }
}
