//! The registry: the only module that speaks the distribution protocol (through
//! `oci-client`). Every failure is turned into an error that names the registry
//! and says what to do; credentials never appear in any of them.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::TryStreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::archive::BlobRange;
use crate::auth;
use crate::digest::Digest;

/// How to reach a registry.
#[derive(Debug, Clone)]
pub struct Options {
    pub tls_verify: bool,
    pub authfile: Option<std::path::PathBuf>,
    pub jobs: usize,
    /// Clients already made in this run, to share.
    pub clients: Clients,
}

/// Registry clients shared by the containers of one run, one per registry, TLS
/// mode and identity: connections and tokens are reused across containers, and a
/// client never carries one identity's credentials to another's repositories.
#[derive(Clone, Default)]
pub struct Clients(Arc<Mutex<HashMap<ClientKey, Client>>>);

type ClientKey = (String, bool, Option<String>);

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map(|m| m.len()).unwrap_or(0);
        write!(f, "Clients({n})")
    }
}

impl Clients {
    fn get(&self, key: ClientKey, make: impl FnOnce() -> Client) -> Client {
        let mut map = self.0.lock().expect("client pool");
        map.entry(key).or_insert_with(make).clone()
    }
}

/// One repository on one registry, with its client and credentials.
pub struct Repository {
    client: Client,
    auth: RegistryAuth,
    registry: String,
    repository: String,
    /// `--repo` as given, for messages.
    name: String,
}

/// Splits `--repo` into registry and repository, as Docker names them: the first
/// component is a registry when it has a `.` or a `:` or is `localhost`; otherwise
/// the registry is docker.io (and a single name is under `library/`).
///
/// Done by hand rather than with a reference-parsing regex: compiling that regex
/// was most of the cost of a no-op run.
pub fn parse_repo(repo: &str) -> Result<(String, String)> {
    if repo.contains('@')
        || repo
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'))
    {
        bail!("--repo {repo}: give a repository without tag or digest (tags go in --tag)");
    }
    let invalid = |why: &str| anyhow::anyhow!("--repo {repo}: not a valid repository: {why}");
    let (registry, path) = match repo.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            (first.to_string(), rest.to_string())
        }
        Some(_) => ("docker.io".to_string(), repo.to_string()),
        None => ("docker.io".to_string(), format!("library/{repo}")),
    };
    let host_ok = !registry.is_empty()
        && registry
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    if !host_ok {
        return Err(invalid("bad registry host"));
    }
    if path.is_empty() || path.len() > 255 {
        return Err(invalid("the repository path is empty or too long"));
    }
    for component in path.split('/') {
        if !path_component_ok(component) {
            return Err(invalid(&format!(
                "{component:?} is not a path component (lowercase letters and digits, \
                 joined by '.', '_', '__' or dashes)"
            )));
        }
    }
    Ok((registry, path))
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, the distribution spec's path component.
fn path_component_ok(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    let mut i = 0;
    loop {
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        let sep = i;
        match bytes[i] {
            b'.' => i += 1,
            b'_' => {
                i += if bytes.get(i + 1) == Some(&b'_') {
                    2
                } else {
                    1
                }
            }
            b'-' => {
                while i < bytes.len() && bytes[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == sep {
            return false;
        }
    }
}

/// Validates a tag against the distribution spec's grammar.
pub fn check_tag(tag: &str) -> Result<()> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok {
        bail!(
            "--tag {tag:?}: not a valid tag (letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')"
        );
    }
    Ok(())
}

impl Repository {
    /// Parses `--repo` and finds credentials for its registry.
    pub fn new(repo: &str, opts: &Options) -> Result<Repository> {
        let (registry, repository) = parse_repo(repo)?;
        let auth = match auth::find_auth_file(opts.authfile.as_deref())? {
            Some(file) => match auth::credentials_for(&file, &registry, &repository)? {
                Some(c) => RegistryAuth::Basic(c.username, c.password),
                None => RegistryAuth::Anonymous,
            },
            None => RegistryAuth::Anonymous,
        };
        let config = ClientConfig {
            protocol: if opts.tls_verify {
                ClientProtocol::Https
            } else {
                ClientProtocol::Http
            },
            accept_invalid_certificates: !opts.tls_verify,
            // One POST + one streamed PUT per blob: the size is known up front, and
            // chunked PATCHes would buffer a chunk per upload in memory.
            use_monolithic_push: true,
            max_concurrent_upload: opts.jobs.max(1),
            connect_timeout: Some(Duration::from_secs(30)),
            read_timeout: Some(Duration::from_secs(300)),
            ..ClientConfig::default()
        };
        let identity = match &auth {
            RegistryAuth::Basic(user, _) => Some(user.clone()),
            _ => None,
        };
        let client = opts
            .clients
            .get((registry.clone(), opts.tls_verify, identity), || {
                Client::new(config)
            });
        Ok(Repository {
            client,
            auth,
            registry,
            repository,
            name: repo.to_string(),
        })
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

    /// Turns a client error into one that names the registry and the way out.
    fn explain(&self, e: OciDistributionError, doing: &str) -> anyhow::Error {
        let reg = &self.registry;
        let has_codes = |codes: &[OciErrorCode]| match &e {
            OciDistributionError::RegistryError { envelope, .. } => {
                envelope.errors.iter().any(|c| codes.contains(&c.code))
            }
            _ => false,
        };
        let status = match &e {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => Some(401),
            OciDistributionError::ServerError { code, .. } => Some(*code),
            _ if has_codes(&[OciErrorCode::Unauthorized]) => Some(401),
            _ if has_codes(&[OciErrorCode::Denied]) => Some(403),
            _ if has_codes(&[OciErrorCode::Unsupported]) => Some(405),
            _ => None,
        };
        let anonymous = matches!(self.auth, RegistryAuth::Anonymous);
        let hint = match status {
            Some(401) if anonymous => format!(
                "no credentials for {reg} were found and the registry refuses anonymous \
                 access (HTTP 401): give --authfile, or set REGISTRY_AUTH_FILE"
            ),
            Some(401) => "the registry refused the credentials (HTTP 401): \
                          check the entry for this registry in the auth file"
                .to_string(),
            Some(403) => {
                "access denied (HTTP 403): the credentials lack permission for this repository"
                    .to_string()
            }
            Some(405) => "the registry refuses this operation (HTTP 405): \
                          is it read-only, or in maintenance mode?"
                .to_string(),
            Some(429) => "rate limited (HTTP 429): rerun later; pushgate resumes where it stopped"
                .to_string(),
            Some(code) if code >= 500 => format!(
                "the registry failed (HTTP {code}); rerun when it is healthy: \
                 pushgate resumes where it stopped"
            ),
            _ => match &e {
                OciDistributionError::RequestError(r) if r.is_connect() || r.is_timeout() => {
                    "cannot connect: check the registry address, that it is up, and --tls-verify"
                        .to_string()
                }
                _ => String::new(),
            },
        };
        let msg = if hint.is_empty() {
            format!("registry {reg} ({}): {doing} failed: {e}", self.name)
        } else {
            format!(
                "registry {reg} ({}): {doing} failed: {hint} ({e})",
                self.name
            )
        };
        anyhow::anyhow!(msg)
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

/// Whether an error may go away on its own (connection trouble, 5xx, 429).
fn is_transient(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::RequestError(r) => r.is_connect() || r.is_timeout() || r.is_request(),
        OciDistributionError::ServerError { code, .. } => *code >= 500 || *code == 429,
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|c| c.code == OciErrorCode::Toomanyrequests),
        _ => false,
    }
}

/// Runs an idempotent request up to three times, backing off on transient errors.
async fn retry<T, F, Fut>(mut f: F) -> Result<T, OciDistributionError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, OciDistributionError>>,
{
    let mut delay = Duration::from_millis(200);
    for _ in 0..2 {
        match f().await {
            Err(e) if is_transient(&e) => {
                tokio::time::sleep(delay).await;
                delay *= 4;
            }
            other => return other,
        }
    }
    f().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_the_distribution_grammar() {
        for ok in [
            "stable",
            "41.20261127.1.0",
            "x86_64-abc",
            "_x",
            "A".repeat(128).as_str(),
        ] {
            check_tag(ok).unwrap();
        }
        for bad in [
            "",
            ".x",
            "-x",
            "a/b",
            "a:b",
            "a b",
            "A".repeat(129).as_str(),
        ] {
            let e = check_tag(bad).unwrap_err().to_string();
            assert!(e.contains("--tag"), "{e}");
        }
    }

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
    fn repos_split_into_registry_and_path_as_docker_does() {
        let p = |r: &str| parse_repo(r).unwrap();
        assert_eq!(
            p("quay.io/fedora/fedora-coreos"),
            ("quay.io".into(), "fedora/fedora-coreos".into())
        );
        assert_eq!(
            p("127.0.0.1:5000/fcos"),
            ("127.0.0.1:5000".into(), "fcos".into())
        );
        assert_eq!(p("localhost/a/b/c"), ("localhost".into(), "a/b/c".into()));
        assert_eq!(
            p("fedora/fedora"),
            ("docker.io".into(), "fedora/fedora".into())
        );
        assert_eq!(p("busybox"), ("docker.io".into(), "library/busybox".into()));
        assert_eq!(
            p("r.io/a__b/c-d/e---f/g.h_i"),
            ("r.io".into(), "a__b/c-d/e---f/g.h_i".into())
        );
        for bad in [
            "r.io/UPPER",
            "r.io/a//b",
            "r.io/-a",
            "r.io/a-",
            "r.io/a___b",
            "r.io/a..b",
            "r.io/",
            "r.io/a b",
            "bad host!/a",
            "r.io/a:tag",
            "r.io/a@sha256:00",
        ] {
            let e = parse_repo(bad).unwrap_err().to_string();
            assert!(e.contains("--repo"), "{bad}: {e}");
        }
    }

    #[test]
    fn only_transient_errors_are_retried() {
        let server = |code| OciDistributionError::ServerError {
            code,
            url: String::new(),
            message: String::new(),
        };
        assert!(is_transient(&server(503)));
        assert!(is_transient(&server(429)));
        assert!(!is_transient(&server(401)));
        assert!(!is_transient(&server(404)));
        assert!(is_not_found(&server(404)));
    }
}
