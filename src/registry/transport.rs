//! The transport: how pushgate reaches a registry, whatever kind of day it has.
//!
//! One [`Transport`] per registry and identity, shared by the containers of a
//! run ([`Clients`]): one HTTP client (connections reused), one scheme decision,
//! one token cache. [`Transport::send`] carries one request through:
//!
//! * **auth**: the first `401` teaches the challenge (`Basic`, or `Bearer` with
//!   realm and service); Basic credentials are then sent up front, and a Bearer
//!   token is fetched per scope (`repository:NAME:pull,push`) and reused until it
//!   expires. `insufficient_scope` is answered by one fetch with the wider scope.
//!   Credentials only ever go to the registry they are filed under and to the
//!   realm it names, never over plain HTTP to a host that is not loopback unless
//!   `--plain-http` was asked for;
//! * **retries**: transient failures (no answer, 408, 429, 5xx) are retried with
//!   exponential backoff and jitter, honouring `Retry-After`, each retry one line
//!   on stderr and counted; writes are not retried here (see `idempotent`): the
//!   operations check whether a write whose answer was lost landed first;
//! * **TLS**: system roots plus the CAs of `--cert-dir` or certs.d ([`super::tls`]),
//!   Mozilla's roots compiled in when the system has none at all (an empty
//!   container), a client certificate for mutual TLS; `--tls-verify=false` is HTTPS without
//!   verification, falling back to plain HTTP only if the registry does not speak
//!   TLS;
//! * **bounds**: a stall timeout on every read (an answer that stops flowing), a
//!   TCP user timeout on writes (an upload the registry stops taking), no total
//!   deadline on uploads, and at most 10 redirects, http(s) only;
//! * **`--debug`**: each request on stderr (method, URL, status, time, attempt),
//!   never a header, credential or token.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use base64::Engine as _;
use futures_util::StreamExt;
use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use serde::Deserialize;

use super::auth::{self, Credentials};
use super::challenge::{self, Challenge};
use super::error::{MAX_ERROR_BODY, RegistryError, parse_codes};
use super::retry::{RetryPolicy, parse_retry_after};
use super::tls;

/// The largest token answer read.
const MAX_TOKEN_BODY: usize = 1024 * 1024;
/// How long a token is trusted when the token server does not say (the spec's
/// default is 60 s).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// A token is renewed this long before it expires, so none expires in flight.
const TOKEN_MARGIN: Duration = Duration::from_secs(5);

/// How to reach registries, for one run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Verify TLS certificates (`--tls-verify`).
    pub tls_verify: bool,
    /// Talk plain HTTP (`--plain-http`): the user's explicit choice.
    pub plain_http: bool,
    /// `--cert-dir`: CAs (`*.crt`) and a client certificate (`*.cert` + `*.key`).
    pub cert_dir: Option<PathBuf>,
    pub authfile: Option<PathBuf>,
    /// Parallel uploads.
    pub jobs: usize,
    pub retry: RetryPolicy,
    /// No progress on an answer (or an upload) for this long ends the request.
    pub stall_timeout: Duration,
    /// Blobs larger than this go up in chunks of this size.
    pub chunk_size: u64,
    /// Each request on stderr.
    pub debug: bool,
    /// Transports already made in this run, to share.
    pub clients: Clients,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            tls_verify: true,
            plain_http: false,
            cert_dir: None,
            authfile: None,
            jobs: 4,
            retry: RetryPolicy::default(),
            stall_timeout: Duration::from_secs(60),
            chunk_size: 64 << 20,
            debug: false,
            clients: Clients::default(),
        }
    }
}

/// The transports of one run, one per registry and identity: connections and
/// tokens are reused across containers, and a transport never carries one
/// identity's credentials to another's repositories.
#[derive(Clone, Default)]
pub struct Clients {
    pool: Arc<Mutex<HashMap<PoolKey, Arc<Transport>>>>,
    /// The run's blob transfers: `--jobs` at a time over every container.
    uploads: Arc<std::sync::OnceLock<Arc<tokio::sync::Semaphore>>>,
}

impl Clients {
    /// The slots blob transfers take, `jobs` in all for the whole run (made by
    /// the first caller): containers pushed in parallel share them.
    pub fn upload_slots(&self, jobs: usize) -> Arc<tokio::sync::Semaphore> {
        self.uploads
            .get_or_init(|| Arc::new(tokio::sync::Semaphore::new(jobs.max(1))))
            .clone()
    }
}

/// A registry and the user whose credentials its transport carries.
type PoolKey = (String, Option<String>);

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.pool.lock().map(|m| m.len()).unwrap_or(0);
        write!(f, "Clients({n})")
    }
}

/// The transport for `repository` on `registry`: found credentials for it, and
/// the run's shared transport for that registry and identity.
pub(crate) fn connect(registry: &str, repository: &str, opts: &Options) -> Result<Arc<Transport>> {
    let creds = match auth::find_auth_file(opts.authfile.as_deref())? {
        Some(file) => auth::credentials_for(&file, registry, repository)?,
        None => None,
    };
    let key = (
        registry.to_string(),
        creds.as_ref().map(|c| c.username.clone()),
    );
    let mut pool = opts.clients.pool.lock().expect("transport pool");
    if let Some(t) = pool.get(&key) {
        return Ok(t.clone());
    }
    let t = Arc::new(Transport::new(registry, creds, opts)?);
    pool.insert(key, t.clone());
    Ok(t)
}

/// How the registry wants to be authenticated, as its first 401 said.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Unknown,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

struct AuthState {
    mode: Mode,
    /// scope → (token, renew after)
    tokens: HashMap<String, (String, Instant)>,
    /// Token requests made (for tests and the report).
    fetched: u64,
    /// Scopes the registry found a fresh token insufficient for: re-fetched
    /// once per run, not once per request.
    insufficient: std::collections::HashSet<String>,
}

/// One registry, one identity.
pub struct Transport {
    http: reqwest::Client,
    /// `host[:port]` as in `--repo`, for messages and URLs.
    registry: String,
    /// Plain HTTP: chosen, or fallen back to.
    plain: AtomicBool,
    /// Whether plain HTTP may be tried when TLS fails (`--tls-verify=false`).
    may_fall_back: bool,
    /// The user asked for plain HTTP: credentials may go over it anywhere.
    plain_asked: bool,
    creds: Option<Credentials>,
    auth: Mutex<AuthState>,
    /// One token fetch at a time: requests that all meet their first 401
    /// together wait for one token instead of each fetching its own.
    fetching: tokio::sync::Mutex<()>,
    retry: RetryPolicy,
    pub(crate) chunk_size: u64,
    /// The longest a small answer (a manifest, a token) may take in all: a
    /// trickle below any sensible rate ends here.
    pub(crate) small_deadline: Duration,
    debug: bool,
    retries: AtomicU64,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// The parts of a token answer pushgate reads.
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Transport {
    fn new(registry: &str, creds: Option<Credentials>, opts: &Options) -> Result<Transport> {
        let http = match client_builder(registry, opts)?.build() {
            Ok(http) => http,
            // A verifying client fails to build when the system has no CA roots
            // at all (reqwest's platform verifier refuses an empty store), as in
            // a FROM-scratch pod without /etc/ssl. Only then are the bundled
            // roots loaded: building again with them costs nothing on a system
            // that has roots, since it is never reached there. Any other cause
            // fails the second build too, and the first error is the one told.
            Err(first) if opts.tls_verify => {
                let http = client_builder(registry, opts)?
                    .tls_certs_merge(bundled_roots())
                    .build()
                    .map_err(|_| first)
                    .context("setting up the HTTP client")?;
                if opts.debug {
                    say(format_args!(
                        "pushgate: debug: no CA roots on this system \
                         (/etc/ssl, SSL_CERT_FILE, SSL_CERT_DIR); trusting the {} bundled \
                         Mozilla roots for {registry}",
                        webpki_root_certs::TLS_SERVER_ROOT_CERTS.len()
                    ));
                }
                http
            }
            Err(e) => return Err(e).context("setting up the HTTP client"),
        };
        Ok(Transport {
            http,
            registry: registry.to_string(),
            plain: AtomicBool::new(opts.plain_http),
            may_fall_back: !opts.tls_verify && !opts.plain_http,
            plain_asked: opts.plain_http,
            creds,
            auth: Mutex::new(AuthState {
                mode: Mode::Unknown,
                tokens: HashMap::new(),
                fetched: 0,
                insufficient: std::collections::HashSet::new(),
            }),
            fetching: tokio::sync::Mutex::new(()),
            retry: opts.retry,
            chunk_size: opts.chunk_size.max(1),
            small_deadline: opts.stall_timeout,
            debug: opts.debug,
            retries: AtomicU64::new(0),
        })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Who is asking, for explanations of refusals.
    pub fn who(&self) -> super::Who {
        super::Who {
            user: self.creds.as_ref().map(|c| c.username.clone()),
            token_auth: matches!(
                self.auth.lock().expect("auth state").mode,
                Mode::Bearer { .. }
            ),
            attempts: self.retry.times + 1,
        }
    }

    /// Retries made so far (all requests, all containers of this transport).
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Token requests made so far.
    pub fn token_requests(&self) -> u64 {
        self.auth.lock().expect("auth state").fetched
    }

    /// `scheme://registry/v2/` + `path`.
    pub fn url(&self, path: &str) -> String {
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
        format!("{scheme}://{host}/v2/{path}")
    }

    /// Sends one request built by `make` (called anew for each attempt, so a
    /// body can be re-created), authenticated for `scopes`. Transient failures
    /// are retried if `idempotent`; otherwise the first one is returned, for the
    /// caller to check whether the write landed before repeating it. A non-2xx
    /// (and non-3xx) answer is an `Err` with its status and codes.
    pub async fn send(
        &self,
        what: &str,
        scopes: &[String],
        idempotent: bool,
        make: &(dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Sync),
    ) -> Result<Response, RegistryError> {
        let mut retry = 0;
        let mut auth_rounds = 0;
        loop {
            let mut rb = make(&self.http);
            let header = self.auth_header(scopes).await?;
            let carried = header
                .as_ref()
                .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned());
            if let Some(h) = header {
                rb = rb.header(AUTHORIZATION, h);
            }
            let mut request = rb
                .build()
                .map_err(|e| RegistryError::Refused(format!("{what}: {e}")))?;
            // URLs are made before the scheme is settled (a fallback to plain
            // HTTP happens on the first request): follow it here.
            if self.plain.load(Ordering::Relaxed) && request.url().scheme() == "https" {
                let _ = request.url_mut().set_scheme("http");
            }
            let (method, url) = (request.method().clone(), request.url().clone());
            let started = Instant::now();
            let result = self.http.execute(request).await;
            let err = match result {
                Ok(resp) => {
                    self.trace(
                        &method,
                        url.as_str(),
                        &resp.status().to_string(),
                        started,
                        retry,
                    );
                    let status = resp.status();
                    if status == StatusCode::UNAUTHORIZED && auth_rounds < 2 {
                        let learnt = self.learn(&resp, scopes, carried.as_deref()).await?;
                        if learnt {
                            auth_rounds += 1;
                            continue;
                        }
                    }
                    if status.is_success() || status.is_redirection() {
                        return Ok(resp);
                    }
                    error_from(resp).await
                }
                Err(e) => {
                    self.trace(&method, url.as_str(), "no answer", started, retry);
                    if self.may_fall_back
                        && url.scheme() == "https"
                        && e.is_connect()
                        && speaks_no_tls(&e)
                    {
                        // --tls-verify=false and the registry does not speak TLS:
                        // plain HTTP from now on, as skopeo and podman do (and
                        // requests that raced the first one just go again).
                        self.plain.store(true, Ordering::Relaxed);
                        continue;
                    }
                    connection_error(&e)
                }
            };
            if !(idempotent && err.is_transient()) {
                return Err(err);
            }
            retry += 1;
            if !self.backoff(what, retry, &err).await {
                return Err(err);
            }
        }
    }

    /// Waits before retry number `retry` of `what` after `err`, saying so on
    /// stderr; `false` when the retries are spent.
    pub async fn backoff(&self, what: &str, retry: u32, err: &RegistryError) -> bool {
        let retry_after = match err {
            RegistryError::Status { retry_after, .. } => *retry_after,
            _ => None,
        };
        let Some(wait) = self.retry.wait(retry, retry_after, fastrand::f64()) else {
            return false;
        };
        self.retries.fetch_add(1, Ordering::Relaxed);
        say(format_args!(
            "pushgate: registry {}: {what} failed ({err}); retry {retry} of {} in {:.1}s",
            self.registry,
            self.retry.times,
            wait.as_secs_f64()
        ));
        tokio::time::sleep(wait).await;
        true
    }

    fn trace(&self, method: &Method, url: &str, status: &str, started: Instant, retry: u32) {
        if self.debug {
            // The URL carries no credential (they go in headers, never queries);
            // the upload state in a query is the registry's own, not a secret.
            say(format_args!(
                "pushgate: debug: {method} {url} -> {status} ({} ms, attempt {})",
                started.elapsed().as_millis(),
                retry + 1
            ));
        }
    }

    /// The Authorization header for `scopes`, if any is known to be needed.
    async fn auth_header(&self, scopes: &[String]) -> Result<Option<HeaderValue>, RegistryError> {
        let mode = self.auth.lock().expect("auth state").mode.clone();
        match mode {
            Mode::Unknown => Ok(None),
            Mode::Basic => Ok(self.basic_header()),
            Mode::Bearer { realm, service } => {
                let token = self
                    .token_for(&realm, service.as_deref(), scopes, None)
                    .await?;
                Ok(bearer(&token))
            }
        }
    }

    /// A token for `scopes`: the cached one unless it expired or is `refused`
    /// (the one a 401 just turned down), else a fresh one.
    async fn token_for(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        refused: Option<&str>,
    ) -> Result<String, RegistryError> {
        let _one_at_a_time = self.fetching.lock().await;
        let key = scopes.join(" ");
        let cached = {
            let st = self.auth.lock().expect("auth state");
            st.tokens
                .get(&key)
                .filter(|(t, renew)| Instant::now() < *renew && Some(t.as_str()) != refused)
                .map(|(t, _)| t.clone())
        };
        match cached {
            Some(t) => Ok(t),
            None => self.fetch_token(realm, service, scopes).await,
        }
    }

    fn basic_header(&self) -> Option<HeaderValue> {
        let c = self.creds.as_ref()?;
        if !self.may_send_credentials() {
            return None;
        }
        let raw = format!("{}:{}", c.username, c.password);
        let mut v = HeaderValue::from_str(&format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ))
        .ok()?;
        v.set_sensitive(true);
        Some(v)
    }

    /// Credentials never travel in clear text to a host that is not loopback,
    /// unless the user asked for plain HTTP.
    fn may_send_credentials(&self) -> bool {
        !self.plain.load(Ordering::Relaxed) || self.plain_asked || is_loopback(&self.registry)
    }

    /// Learns from a 401 to a request that `carried` credentials or not: the
    /// challenge, and for Bearer a token for `scopes` (or the wider scope the
    /// challenge names). `false` when there is nothing more to try, so the 401
    /// stands. Requests in flight together may all meet the first 401: those
    /// sent before the challenge was learnt just go again with what is known.
    async fn learn(
        &self,
        resp: &Response,
        scopes: &[String],
        carried: Option<&str>,
    ) -> Result<bool, RegistryError> {
        let Some(ch) = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(challenge::parse)
        else {
            return Ok(false);
        };
        match ch {
            Challenge::Basic => {
                if carried.is_some() || self.creds.is_none() {
                    // The credentials were refused, or there are none.
                    return Ok(false);
                }
                self.auth.lock().expect("auth state").mode = Mode::Basic;
                Ok(self.may_send_credentials())
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
                error,
            } => {
                let mode = Mode::Bearer {
                    realm: realm.clone(),
                    service: service.clone(),
                };
                {
                    let mut st = self.auth.lock().expect("auth state");
                    st.mode = mode;
                    // A token too narrow for the request: one more fetch, with
                    // the scope the registry names, for the whole run. If the
                    // token server grants no more, the refusal stands.
                    if carried.is_some()
                        && error.as_deref() == Some("insufficient_scope")
                        && !st.insufficient.insert(scopes.join(" "))
                    {
                        return Ok(false);
                    }
                }
                let mut want: Vec<String> = scopes.to_vec();
                if let Some(s) = scope
                    && !want.contains(&s)
                {
                    want.push(s);
                }
                let refused = carried.and_then(|h| h.strip_prefix("Bearer "));
                self.token_for(&realm, service.as_deref(), &want, refused)
                    .await?;
                // Later requests for `scopes` use the token for `want`.
                let mut st = self.auth.lock().expect("auth state");
                if let Some(entry) = st.tokens.get(&want.join(" ")).cloned() {
                    st.tokens.insert(scopes.join(" "), entry);
                }
                Ok(true)
            }
        }
    }

    /// GET realm?service=S&scope=... with Basic credentials (or anonymously).
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<String, RegistryError> {
        let refused = |reason: String| RegistryError::Token {
            realm: realm.to_string(),
            reason,
        };
        let mut url = reqwest::Url::parse(realm)
            .map_err(|e| refused(format!("the realm is not a URL: {e}")))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(refused("the realm is not an http(s) URL".into()));
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
        }
        let mut attempt = 0;
        loop {
            let mut rb = self.http.get(url.clone()).timeout(self.small_deadline);
            // The realm is the registry's own token service: credentials filed
            // for the registry go there, never over plain HTTP off loopback.
            if let Some(c) = &self.creds
                && (url.scheme() == "https"
                    || self.plain_asked
                    || url.host_str().is_some_and(is_loopback_host))
            {
                rb = rb.basic_auth(&c.username, Some(&c.password));
            }
            let started = Instant::now();
            let result = rb.send().await;
            self.auth.lock().expect("auth state").fetched += 1;
            let err = match result {
                Ok(resp) if resp.status().is_success() => {
                    self.trace(
                        &Method::GET,
                        url.as_str(),
                        &resp.status().to_string(),
                        started,
                        attempt,
                    );
                    let body = read_bounded(resp, MAX_TOKEN_BODY)
                        .await
                        .map_err(|e| refused(format!("reading the token: {e}")))?;
                    let t: TokenAnswer = serde_json::from_slice(&body)
                        .map_err(|e| refused(format!("the answer is not a token: {e}")))?;
                    let token = if t.token.is_empty() {
                        t.access_token
                    } else {
                        t.token
                    };
                    if token.is_empty() {
                        return Err(refused("the answer holds no token".into()));
                    }
                    let life = t
                        .expires_in
                        .map(Duration::from_secs)
                        .unwrap_or(DEFAULT_TOKEN_LIFETIME);
                    // Renewed early so none expires in flight, but a short-lived
                    // token is still used for most of its life.
                    let renew = Instant::now() + life.saturating_sub(TOKEN_MARGIN.min(life / 4));
                    let key = scopes.join(" ");
                    self.auth
                        .lock()
                        .expect("auth state")
                        .tokens
                        .insert(key, (token.clone(), renew));
                    return Ok(token);
                }
                Ok(resp) => {
                    self.trace(
                        &Method::GET,
                        url.as_str(),
                        &resp.status().to_string(),
                        started,
                        attempt,
                    );
                    let status = resp.status().as_u16();
                    let e = error_from(resp).await;
                    if matches!(status, 401 | 403) {
                        let who = match &self.creds {
                            Some(c) => format!("the credentials of {}", c.username),
                            None => "anonymous access".to_string(),
                        };
                        return Err(refused(format!(
                            "it refused {who} (HTTP {status}): check the user and password \
                             for this registry in the auth file"
                        )));
                    }
                    e
                }
                Err(e) => {
                    self.trace(&Method::GET, url.as_str(), "no answer", started, attempt);
                    connection_error(&e)
                }
            };
            if !err.is_transient() {
                return Err(refused(err.to_string()));
            }
            attempt += 1;
            if !self.backoff("getting a token", attempt, &err).await {
                return Err(refused(err.to_string()));
            }
        }
    }
}

/// The HTTP client for `registry` as `opts` ask, before it is built: TLS
/// trust from the system plus `--cert-dir` or certs.d, a client certificate,
/// the bounds on every request.
fn client_builder(registry: &str, opts: &Options) -> Result<reqwest::ClientBuilder> {
    install_crypto();
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("pushgate/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(opts.stall_timeout)
        .tcp_user_timeout(opts.stall_timeout)
        .pool_max_idle_per_host(opts.jobs.max(1) * 2)
        .redirect(redirect_policy())
        .http1_only();
    if opts.tls_verify {
        let dir = tls::cert_dir_for(opts.cert_dir.as_deref(), registry);
        if let Some(dir) = dir {
            let files = tls::read_dir(&dir)?;
            for ca in &files.cas {
                let certs = reqwest::Certificate::from_pem_bundle(ca).with_context(|| {
                    format!("{}: a *.crt file is not a PEM certificate", dir.display())
                })?;
                b = b.tls_certs_merge(certs);
            }
            if let Some(pem) = &files.client {
                let id = reqwest::Identity::from_pem(pem).with_context(|| {
                    format!(
                        "{}: the client certificate and key do not load",
                        dir.display()
                    )
                })?;
                b = b.identity(id);
            }
        }
    } else {
        // No verification: no need to load the system's roots either (that
        // costs tens of milliseconds, most of a no-op run).
        b = b
            .tls_certs_only(Vec::new())
            .tls_danger_accept_invalid_certs(true);
        if let Some(dir) = &opts.cert_dir
            && let Some(pem) = tls::read_dir(dir)?.client
        {
            b = b.identity(reqwest::Identity::from_pem(&pem)?);
        }
    }
    Ok(b)
}

/// Makes ring rustls's crypto for this process (reqwest is built without a
/// provider of its own; see Cargo.toml for why not aws-lc-rs). Installing
/// twice is refused by rustls and harmless: the first one stays.
fn install_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Mozilla's CA roots as compiled into pushgate (webpki-root-certs), for a
/// system that has none. A root that does not parse is left out rather than
/// failing the run: the others still verify.
fn bundled_roots() -> Vec<reqwest::Certificate> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .filter_map(|der| reqwest::Certificate::from_der(der).ok())
        .collect()
}

/// One line on stderr, above the progress lines if they are drawn; a closed
/// stderr is not an error worth failing a push for.
fn say(line: std::fmt::Arguments<'_>) {
    crate::progress::say(&line.to_string());
}

fn bearer(token: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// At most 10 redirects, to http(s) only. reqwest drops the Authorization
/// header when a redirect leaves the host, so credentials stay with their host.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= 10 {
            attempt.error("more than 10 redirects")
        } else if !matches!(attempt.url().scheme(), "http" | "https") {
            let msg = format!("a redirect to a {} URL", attempt.url().scheme());
            attempt.error(msg)
        } else {
            attempt.follow()
        }
    })
}

fn is_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => registry,
    };
    is_loopback_host(host)
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether a connection error says the other end does not speak TLS.
fn speaks_no_tls(e: &reqwest::Error) -> bool {
    let text = error_chain(e).to_lowercase();
    text.contains("corrupt message")
        || text.contains("invalidcontenttype")
        || text.contains("invalid content type")
        || text.contains("wrong version number")
        || text.contains("http request to https")
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A request that got no answer, as an error saying why.
pub(crate) fn connection_error(e: &reqwest::Error) -> RegistryError {
    let chain = error_chain(e);
    let lower = chain.to_lowercase();
    if lower.contains("certificate") || lower.contains("unknownissuer") {
        return RegistryError::Certificate(chain);
    }
    if e.is_timeout() {
        return RegistryError::Connection(format!(
            "no progress within the stall timeout ({chain})"
        ));
    }
    if e.is_redirect() {
        return RegistryError::Refused(chain);
    }
    RegistryError::Connection(chain)
}

/// The error an answer with an error status stands for (its body read, bounded).
pub(crate) async fn error_from(resp: Response) -> RegistryError {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let body = read_bounded(resp, MAX_ERROR_BODY).await.unwrap_or_default();
    let (codes, message) = parse_codes(&body);
    RegistryError::Status {
        status,
        codes,
        message,
        retry_after,
    }
}

/// Reads a body of at most `max` bytes; a longer one is an error (never read
/// to its end: a hostile answer cannot make pushgate hold more than `max`).
pub(crate) async fn read_bounded(resp: Response, max: usize) -> Result<Vec<u8>, RegistryError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(RegistryError::Refused(format!(
            "the answer is {} bytes, more than the {max} accepted",
            resp.content_length().unwrap_or_default()
        )));
    }
    let mut out = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| connection_error(&e))?;
        if out.len() + chunk.len() > max {
            return Err(RegistryError::Refused(format!(
                "the answer is more than the {max} bytes accepted"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bundled_root_loads() {
        // A root dropped here would leave a pod without /etc/ssl unable to
        // reach a registry it signs for.
        assert!(webpki_root_certs::TLS_SERVER_ROOT_CERTS.len() > 100);
        assert_eq!(
            bundled_roots().len(),
            webpki_root_certs::TLS_SERVER_ROOT_CERTS.len()
        );
    }

    #[test]
    fn loopback_hosts_are_told_apart() {
        for h in [
            "127.0.0.1:5000",
            "localhost",
            "localhost:80",
            "[::1]:5000",
            "127.1.2.3",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["quay.io", "10.0.0.1:5000", "localhost.evil.com", "[::2]:1"] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn urls_use_the_scheme_and_docker_hubs_api_host() {
        let opts = Options {
            plain_http: true,
            ..Options::default()
        };
        let t = Transport::new("127.0.0.1:5000", None, &opts).unwrap();
        assert_eq!(
            t.url("a/b/tags/list"),
            "http://127.0.0.1:5000/v2/a/b/tags/list"
        );
        let t = Transport::new("docker.io", None, &Options::default()).unwrap();
        assert_eq!(
            t.url("library/x/manifests/1"),
            "https://registry-1.docker.io/v2/library/x/manifests/1"
        );
    }
}
