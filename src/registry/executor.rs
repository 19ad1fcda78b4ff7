//! The executor: sends a [`Request`] and owns everything around the sending.
//! One per registry and identity, shared by the containers of a run.
//!
//! * **one retry loop**: a transient failure (no answer, 408, 429, 5xx) is
//!   retried with exponential backoff and jitter, each request with a budget
//!   of `--retry-times` of its own; the wait is remembered per registry host
//!   ([`super::retry::HostPace`]), so a 429 with `Retry-After` holds back
//!   every request to that host, not just the one that got it;
//! * **lost answers**: a write is not repeated blindly; the request says how
//!   to tell whether it landed ([`OnLoss`]), and that is looked at first;
//! * **auth**: the first 401 from the registry's own origin teaches the
//!   challenge ([`super::token`]); credentials and tokens go only to the
//!   registry's origin (and the token request to the realm it named), never
//!   in clear text off this machine unless `--plain-http` was asked for;
//! * **redirects**: followed here (at most 10), so each hop is traced and
//!   judged: another origin gets no credentials, https never turns into http;
//! * **TLS**: `--tls-verify=false` falls back to plain HTTP once, when the
//!   registry turns out not to speak TLS (told by the error's type);
//! * **`--debug`**: each request through the observer, never a header.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, LOCATION};
use reqwest::{Method, Response, StatusCode, Url};

use super::answer::{error_from, header_digest, read_bounded};
use super::auth::{self, Credentials};
use super::client::{self, Origin};
use super::error::{RegistryError, TlsKind};
use super::observer::{self, Shared};
use super::options::{HostState, Options};
use super::request::{Body, Landed, OnLoss, Op, Request, Target};
use super::retry::RetryPolicy;
use super::token::AuthState;

/// The most redirects one request follows.
const MAX_REDIRECTS: usize = 10;

/// One registry, one identity.
pub struct Executor {
    http: reqwest::Client,
    /// `host[:port]` as in `--repo`, for messages.
    registry: String,
    /// Plain HTTP: chosen, or fallen back to.
    plain: AtomicBool,
    /// Whether plain HTTP may be tried when TLS fails (`--tls-verify=false`).
    may_fall_back: bool,
    /// The user asked for plain HTTP: credentials may go over it anywhere.
    plain_asked: bool,
    pub(super) creds: Option<Credentials>,
    pub(super) auth: std::sync::Mutex<AuthState>,
    /// One token fetch at a time: requests that all meet their first 401
    /// together wait for one token instead of each fetching its own.
    pub(super) fetching: tokio::sync::Mutex<()>,
    host: Arc<HostState>,
    retry: RetryPolicy,
    pub(super) chunk_size: u64,
    /// The longest a small answer (a manifest, a token) may take in all: a
    /// trickle below any sensible rate ends here.
    small_deadline: Duration,
    debug: bool,
    observer: Shared,
    retries: AtomicU64,
    /// The run's count, over every executor.
    run_retries: Arc<AtomicU64>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// The executor for `repository` on `registry`: credentials found for it, and
/// the run's shared executor for that registry and identity.
pub(crate) fn connect(registry: &str, repository: &str, opts: &Options) -> Result<Arc<Executor>> {
    let creds = match auth::find_auth_file(opts.authfile.as_deref())? {
        Some(file) => auth::credentials_for(&file, registry, repository)?,
        None => None,
    };
    let key = (
        registry.to_string(),
        creds.as_ref().map(|c| c.username.clone()),
    );
    let mut pool = opts.clients.pool.lock().expect("executor pool");
    if let Some(t) = pool.get(&key) {
        return Ok(t.clone());
    }
    let t = Arc::new(Executor::new(registry, creds, opts)?);
    pool.insert(key, t.clone());
    Ok(t)
}

/// What became of a request.
pub(super) enum Sent {
    /// The registry's answer (2xx).
    Answer(Response),
    /// The answer was lost, and the registry was found to hold what the
    /// request wrote.
    Landed,
}

impl Executor {
    pub(super) fn new(
        registry: &str,
        creds: Option<Credentials>,
        opts: &Options,
    ) -> Result<Executor> {
        Ok(Executor {
            http: client::build(registry, opts, &opts.observer)?,
            registry: registry.to_string(),
            plain: AtomicBool::new(opts.plain_http),
            may_fall_back: !opts.tls_verify && !opts.plain_http,
            plain_asked: opts.plain_http,
            creds,
            auth: std::sync::Mutex::new(AuthState::default()),
            fetching: tokio::sync::Mutex::new(()),
            host: opts.clients.host(registry),
            retry: opts.retry,
            chunk_size: opts.chunk_size.max(1),
            small_deadline: opts.stall_timeout,
            debug: opts.debug,
            observer: opts.observer.clone(),
            retries: AtomicU64::new(0),
            run_retries: opts.clients.retries.clone(),
        })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Who is asking, for explanations of refusals.
    pub fn who(&self) -> super::Who {
        super::Who {
            user: self.creds.as_ref().map(|c| c.username.clone()),
            token_auth: self.token_auth(),
            attempts: self.retry.times + 1,
            plain_http: self.plain.load(Ordering::Relaxed),
        }
    }

    /// Retries made so far (all requests, all containers of this executor).
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    pub(super) fn host(&self) -> &HostState {
        &self.host
    }

    /// Whether the user asked for plain HTTP (`--plain-http`).
    pub(super) fn plain_asked(&self) -> bool {
        self.plain_asked
    }

    pub(super) fn say(&self, line: &str) {
        self.observer.line(line);
    }

    /// The registry's origin, as requests reach it now (after any fallback
    /// to plain HTTP).
    fn origin(&self) -> Origin {
        Origin::of(&self.base())
    }

    /// `scheme://host/v2/`.
    fn base(&self) -> Url {
        let scheme = if self.plain.load(Ordering::Relaxed) {
            "http"
        } else {
            "https"
        };
        // Docker Hub's API lives on another name than its references use.
        let host = match self.registry.as_str() {
            "docker.io" => "registry-1.docker.io",
            other => other,
        };
        Url::parse(&format!("{scheme}://{host}/v2/")).expect("a registry name makes a URL")
    }

    /// The URL of `path` under repository `repo`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// Whether credentials (Basic, or a token) may travel to `url`, whose
    /// requests are authenticated as `origin` (the registry's, or the realm's).
    fn may_authenticate(&self, url: &Url, origin: &Origin) -> bool {
        let here = Origin::of(url);
        here == *origin && (here.scheme == "https" || self.plain_asked || here.is_loopback())
    }

    /// The Authorization a request to `url` carries, authenticated as
    /// `authority`: Basic credentials for the token request (`realm`), else
    /// what the registry's challenge asks (Basic, or a token for `scopes`).
    /// None wherever [`Executor::may_authenticate`] says no, tokens included.
    async fn header_for(
        &self,
        url: &Url,
        authority: &Origin,
        realm: bool,
        scopes: &[String],
    ) -> Result<Option<HeaderValue>, RegistryError> {
        if !self.may_authenticate(url, authority) {
            Ok(None)
        } else if realm {
            Ok(self.basic_header())
        } else {
            self.auth_header(scopes).await
        }
    }

    /// Sends `req`: a 2xx answer, or what went wrong once the retries are
    /// spent (or at once for a failure that is not transient).
    pub(super) async fn send(&self, req: &Request<'_>) -> Result<Response, RegistryError> {
        match self.run(req).await? {
            Sent::Answer(resp) => Ok(resp),
            // A request that checks for a lost answer is sent by `write`.
            Sent::Landed => Err(RegistryError::Invalid(format!(
                "{}: no answer to give",
                req.op
            ))),
        }
    }

    /// [`Executor::send`] behind a pointer, for the calls made while sending
    /// (a token request, a check for a lost answer): an async fn cannot
    /// contain itself.
    pub(super) fn send_boxed<'a>(
        &'a self,
        req: &'a Request<'_>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response, RegistryError>> + Send + 'a>,
    > {
        Box::pin(self.send(req))
    }

    /// Sends a write whose answer is not needed, only that it landed.
    pub(super) async fn write(&self, req: &Request<'_>) -> Result<(), RegistryError> {
        self.run(req).await.map(|_| ())
    }

    /// Sends a read and reads its answer whole, at most `max` bytes: the
    /// answer's headers and body. An answer cut in its body is a transient
    /// failure like one cut before it, retried within the request's one budget
    /// of retries (the head alone proves nothing was read).
    pub(super) async fn read(
        &self,
        req: &Request<'_>,
        max: usize,
    ) -> Result<(HeaderMap, Vec<u8>), RegistryError> {
        let mut failures = 0;
        loop {
            let resp = match self.run_counted(req, &mut failures).await? {
                Sent::Answer(resp) => resp,
                Sent::Landed => {
                    return Err(RegistryError::Invalid(format!(
                        "{}: no answer to give",
                        req.op
                    )));
                }
            };
            let headers = resp.headers().clone();
            let err = match read_bounded(resp, max).await {
                Ok(bytes) => return Ok((headers, bytes)),
                Err(err) => err,
            };
            failures += 1;
            if !err.is_transient() || !self.schedule_retry(&req.op, &err, failures) {
                return Err(err);
            }
        }
    }

    /// The one retry loop.
    pub(super) async fn run(&self, req: &Request<'_>) -> Result<Sent, RegistryError> {
        self.run_counted(req, &mut 0).await
    }

    /// [`Executor::run`], counting `req`'s transient failures on from
    /// `failures` (those its answers' bodies met before, for [`Executor::read`]).
    async fn run_counted(
        &self,
        req: &Request<'_>,
        failures: &mut u32,
    ) -> Result<Sent, RegistryError> {
        let mut auth_rounds = 0;
        let mut start = self.url_of(req)?;
        loop {
            // Two rounds of learning at most: a registry that keeps asking
            // for what it was given has its 401 stand.
            let may_learn = auth_rounds < 2;
            let err = match self.attempt(req, &start, *failures, may_learn).await? {
                Attempt::Done(resp) => return Ok(Sent::Answer(resp)),
                Attempt::Learnt => {
                    auth_rounds += 1;
                    continue;
                }
                Attempt::FellBack => {
                    let _ = start.set_scheme("http");
                    continue;
                }
                Attempt::Failed(err) => err,
            };
            if !err.is_transient() || req.on_loss == OnLoss::Report {
                return Err(err);
            }
            *failures += 1;
            if !self.schedule_retry(&req.op, &err, *failures) {
                return Err(err);
            }
            if let OnLoss::Check(landed) = &req.on_loss
                && self.landed(req, landed).await?
            {
                return Ok(Sent::Landed);
            }
            start = self.url_of(req)?;
        }
    }

    /// Records a transient failure of `op`, its `retry`-th in a row: the
    /// host is held back by the wait (or the registry's `Retry-After`), and a
    /// line says so. `false` when the retries are spent.
    pub(super) fn schedule_retry(&self, op: &Op, err: &RegistryError, retry: u32) -> bool {
        let Some(wait) = self.retry.wait(retry, err.retry_after(), fastrand::f64()) else {
            return false;
        };
        self.host.pace.hold(Instant::now(), wait);
        self.retries.fetch_add(1, Ordering::Relaxed);
        self.run_retries.fetch_add(1, Ordering::Relaxed);
        self.say(&observer::retry_line(
            &self.registry,
            op,
            err,
            retry,
            self.retry.times,
            wait,
        ));
        true
    }

    /// Whether the write of `req`, whose answer was lost, landed.
    async fn landed(&self, req: &Request<'_>, landed: &Landed) -> Result<bool, RegistryError> {
        let Some(repo) = &req.repository else {
            return Ok(false);
        };
        let check = match landed {
            Landed::Blob(d) => Request::new(
                req.op.clone(),
                Method::HEAD,
                repo,
                Target::Repo(format!("blobs/{d}")),
            ),
            Landed::Manifest { reference, .. } => Request::new(
                req.op.clone(),
                Method::HEAD,
                repo,
                Target::Repo(format!("manifests/{reference}")),
            )
            .header(
                reqwest::header::ACCEPT,
                crate::manifest::ACCEPTED.join(", "),
            ),
        };
        match self.send_boxed(&check).await {
            Ok(resp) => Ok(match landed {
                Landed::Blob(_) => true,
                Landed::Manifest { digest, .. } => {
                    header_digest(resp.headers()).as_deref() == Some(digest.as_str())
                }
            }),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// One attempt of `req` from `start`, redirects followed.
    async fn attempt(
        &self,
        req: &Request<'_>,
        start: &Url,
        failures: u32,
        may_learn: bool,
    ) -> Result<Attempt, RegistryError> {
        let realm = matches!(req.target, Target::Realm(_));
        // Whose credentials the request carries, and where they may go.
        let authority = if realm {
            Origin::of(start)
        } else {
            self.origin()
        };
        let mut url = start.clone();
        let mut method = req.method.clone();
        for _ in 0..=MAX_REDIRECTS {
            let pace = self.host.pace.delay(Instant::now());
            if !pace.is_zero() {
                tokio::time::sleep(pace).await;
            }
            let header = self
                .header_for(&url, &authority, realm, &req.scopes())
                .await?;
            let carried = header
                .as_ref()
                .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned());
            let mut rb = self.http.request(method.clone(), url.clone());
            for (name, value) in &req.headers {
                rb = rb.header(name, value);
            }
            if let Some(h) = header {
                rb = rb.header(AUTHORIZATION, h);
            }
            if req.small {
                rb = rb.timeout(self.small_deadline);
            }
            if method != Method::GET && method != Method::HEAD {
                rb = rb.header(reqwest::header::CONTENT_LENGTH, req.body.len());
                rb = match &req.body {
                    Body::Empty => rb,
                    Body::Bytes(b) => rb.body(b.clone()),
                    Body::Blob {
                        source,
                        digest,
                        offset,
                        len,
                        meter,
                    } => rb.body(source.open(digest, *offset, *len, meter).await?),
                };
            }
            let started = Instant::now();
            let result = rb.send().await;
            let resp = match result {
                Ok(resp) => resp,
                Err(e) => {
                    self.trace(&method, &url, "no answer", started, failures);
                    let err = RegistryError::from_reqwest(&e);
                    if self.may_fall_back
                        && url.scheme() == "https"
                        && Origin::of(&url).host == self.origin().host
                        && matches!(
                            err,
                            RegistryError::Tls {
                                kind: TlsKind::NotTls,
                                ..
                            }
                        )
                    {
                        // --tls-verify=false and the registry does not speak
                        // TLS: plain HTTP from now on, as skopeo and podman do
                        // (requests that raced the first one just go again).
                        self.plain.store(true, Ordering::Relaxed);
                        return Ok(Attempt::FellBack);
                    }
                    return Ok(Attempt::Failed(err));
                }
            };
            self.trace(&method, &url, &resp.status().to_string(), started, failures);
            let status = resp.status();
            if status.is_redirection()
                && let Some(next) = resp.headers().get(LOCATION)
            {
                let next = next
                    .to_str()
                    .ok()
                    .and_then(|l| url.join(l).ok())
                    .ok_or_else(|| {
                        RegistryError::Invalid("a redirect to an unreadable Location".into())
                    })?;
                self.check_hop(&url, &next)?;
                if status == StatusCode::SEE_OTHER {
                    method = Method::GET;
                }
                url = next;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED
                && may_learn
                && !realm
                && Origin::of(&url) == self.origin()
                && self.learn(&resp, &req.scopes(), carried.as_deref()).await?
            {
                return Ok(Attempt::Learnt);
            }
            if status.is_success() {
                return Ok(Attempt::Done(resp));
            }
            if status == StatusCode::UNAUTHORIZED && Origin::of(&url) != authority {
                // Not the registry's refusal of its credentials (which it
                // never saw): another origin asking for some of its own.
                return Ok(Attempt::Failed(RegistryError::Invalid(format!(
                    "{} asked for credentials (HTTP 401), but it is not registry {} \
                     (a redirect or an upload Location sent the request there): \
                     the registry's credentials go to the registry alone, so none were sent",
                    url.origin().ascii_serialization(),
                    self.registry
                ))));
            }
            return Ok(Attempt::Failed(error_from(resp).await));
        }
        Err(RegistryError::Invalid(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }

    /// Where a request may go from `from`: http(s) only, and never from
    /// https down to plain http.
    fn check_hop(&self, from: &Url, to: &Url) -> Result<(), RegistryError> {
        if !matches!(to.scheme(), "http" | "https") {
            return Err(RegistryError::Invalid(format!(
                "registry {}: a redirect to a {} URL",
                self.registry,
                to.scheme()
            )));
        }
        if from.scheme() == "https" && to.scheme() == "http" {
            return Err(RegistryError::Invalid(format!(
                "registry {} sent the request from https to plain http ({}): refused, \
                 it would cross the network unencrypted",
                self.registry,
                to.origin().ascii_serialization()
            )));
        }
        Ok(())
    }

    /// The URL a request starts at.
    fn url_of(&self, req: &Request<'_>) -> Result<Url, RegistryError> {
        let mut url = match &req.target {
            Target::Repo(path) => {
                let repo = req.repository.as_deref().unwrap_or_default();
                Url::parse(&format!("{}{repo}/{path}", self.base()))
                    .map_err(|e| RegistryError::Invalid(format!("{}: {e}", req.op)))?
            }
            Target::Upload(u) => {
                let mut u = u.clone();
                // An upload URL made before the fallback to plain HTTP.
                if self.plain.load(Ordering::Relaxed)
                    && u.scheme() == "https"
                    && Origin::of(&u).host == self.origin().host
                {
                    let _ = u.set_scheme("http");
                }
                self.check_hop(&self.base(), &u)?;
                u
            }
            Target::Realm(u) => u.clone(),
        };
        if !req.query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in &req.query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    fn trace(&self, method: &Method, url: &Url, status: &str, started: Instant, failures: u32) {
        if self.debug {
            self.say(&observer::trace_line(
                method.as_str(),
                url.as_str(),
                status,
                started.elapsed().as_millis(),
                failures + 1,
            ));
        }
    }
}

/// How one attempt ended.
enum Attempt {
    Done(Response),
    /// Auth was learnt from a 401: send again, not a retry.
    Learnt,
    /// The registry speaks no TLS and plain HTTP may be tried: not a retry.
    FellBack,
    Failed(RegistryError),
}

/// A header value that never shows in debug output.
pub(super) fn sensitive(value: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(value).ok()?;
    v.set_sensitive(true);
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_use_the_scheme_and_docker_hubs_api_host() {
        let opts = Options {
            plain_http: true,
            ..Options::default()
        };
        let t = Executor::new("127.0.0.1:5000", None, &opts).unwrap();
        assert_eq!(
            t.url("a/b/tags/list"),
            "http://127.0.0.1:5000/v2/a/b/tags/list"
        );
        let t = Executor::new("docker.io", None, &Options::default()).unwrap();
        assert_eq!(
            t.url("library/x/manifests/1"),
            "https://registry-1.docker.io/v2/library/x/manifests/1"
        );
    }

    #[test]
    fn credentials_go_only_to_their_origin_and_never_in_clear_off_this_machine() {
        let t = Executor::new("r.example:5000", None, &Options::default()).unwrap();
        let u = |s: &str| Url::parse(s).unwrap();
        let registry = t.origin();
        assert!(t.may_authenticate(&u("https://r.example:5000/v2/a/blobs/uploads/1"), &registry));
        assert!(!t.may_authenticate(&u("https://r.example:5001/v2/"), &registry));
        assert!(!t.may_authenticate(&u("https://cdn.example/blob"), &registry));
        assert!(!t.may_authenticate(&u("http://r.example:5000/v2/"), &registry));
        // After a fallback to plain HTTP: still not in clear to another host.
        t.plain.store(true, Ordering::Relaxed);
        let plain = t.origin();
        assert!(!t.may_authenticate(&u("http://r.example:5000/v2/"), &plain));
        let local = Executor::new("127.0.0.1:5000", None, &Options::default()).unwrap();
        local.plain.store(true, Ordering::Relaxed);
        assert!(local.may_authenticate(&u("http://127.0.0.1:5000/v2/"), &local.origin()));
    }

    fn creds() -> Option<Credentials> {
        Some(Credentials {
            username: "u".into(),
            password: "p".into(),
        })
    }

    /// What `t` sends to `url` as the registry (or, with `realm`, as the
    /// token request to the realm at `url`).
    fn sent(t: &Executor, url: &str, realm: bool) -> Option<String> {
        let url = Url::parse(url).unwrap();
        let authority = if realm { Origin::of(&url) } else { t.origin() };
        let scopes = ["repository:a:pull".to_string()];
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(t.header_for(&url, &authority, realm, &scopes))
            .unwrap()
            .map(|h| h.to_str().unwrap().to_string())
    }

    #[test]
    fn bearer_tokens_follow_the_plain_http_rule_of_basic_credentials() {
        let scopes = ["repository:a:pull".to_string()];
        let realm = "https://auth.example/token";
        let t = Executor::new("r.example:5000", creds(), &Options::default()).unwrap();
        t.learnt_token(realm, &scopes, "t0ken");
        let token = Some("Bearer t0ken".to_string());
        assert_eq!(
            sent(&t, "https://r.example:5000/v2/a/manifests/1", false),
            token
        );
        assert_eq!(
            sent(&t, "https://cdn.example/v2/a/manifests/1", false),
            None
        );
        // --tls-verify=false fell back to plain HTTP: the token, like the
        // password, does not cross the network in clear.
        t.plain.store(true, Ordering::Relaxed);
        assert_eq!(
            sent(&t, "http://r.example:5000/v2/a/manifests/1", false),
            None
        );
        // On this machine it may.
        let local = Executor::new("127.0.0.1:5000", creds(), &Options::default()).unwrap();
        local.learnt_token(realm, &scopes, "t0ken");
        local.plain.store(true, Ordering::Relaxed);
        assert_eq!(
            sent(&local, "http://127.0.0.1:5000/v2/a/manifests/1", false),
            token
        );
        // So may it when plain HTTP was asked for (--plain-http).
        let asked = Options {
            plain_http: true,
            ..Options::default()
        };
        let plain = Executor::new("r.example:5000", creds(), &asked).unwrap();
        plain.learnt_token(realm, &scopes, "t0ken");
        assert_eq!(
            sent(&plain, "http://r.example:5000/v2/a/manifests/1", false),
            token
        );
    }

    #[test]
    fn the_token_request_gets_the_password_only_over_https_or_on_this_machine() {
        let t = Executor::new("r.example", creds(), &Options::default()).unwrap();
        let basic = sent(&t, "https://auth.example/token", true);
        assert!(basic.is_some_and(|h| h.starts_with("Basic ")));
        assert_eq!(sent(&t, "http://auth.example/token", true), None);
        assert!(sent(&t, "http://127.0.0.1:5001/token", true).is_some());
    }

    #[test]
    fn redirects_never_go_from_https_to_http() {
        let t = Executor::new("r.example", None, &Options::default()).unwrap();
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(
            t.check_hop(&u("https://r.example/v2/"), &u("https://cdn.example/x"))
                .is_ok()
        );
        let e = t
            .check_hop(&u("https://r.example/v2/"), &u("http://cdn.example/x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("r.example") && e.contains("plain http"), "{e}");
        assert!(
            t.check_hop(&u("https://r.example/v2/"), &u("file:///etc/passwd"))
                .is_err()
        );
    }
}
