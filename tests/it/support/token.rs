//! A token server of our own, speaking the Docker registry token protocol: what quay.io,
//! ghcr.io, Docker Hub and Harbor put in front of their registries.
//!
//! The flow it models: the registry answers `401` with
//! `WWW-Authenticate: Bearer realm="REALM",service="SERVICE",scope="..."`; the client asks
//! `GET REALM?service=SERVICE&scope=repository:NAME:pull,push` (scope may repeat), with
//! Basic credentials or none (anonymous); the token server answers `200
//! {"token", "access_token", "expires_in", "issued_at"}`, or `401` for bad credentials;
//! the client sends `Authorization: Bearer TOKEN` to the registry, which checks the JWT's
//! signature, issuer, audience, time window and `access` claim.
//!
//! The JWT is ES256-signed; its header carries the signing certificate (`x5c`), which the
//! registry trusts through `auth.token.rootcertbundle` ([`TokenServer::signing_cert`]).
//! The `access` claim grants the intersection of what was asked and what the user may do:
//! per-user grants on repository patterns ([`TokenServerBuilder::grant`]) and pull for
//! everyone on public repositories ([`TokenServerBuilder::public`]).
//!
//! Every request to the realm is recorded ([`TokenServer::token_requests`]) so tests can
//! assert how many tokens a client fetched, i.e. that it reuses them.
//!
//! The server runs on its own thread with its own tokio runtime (tests are synchronous),
//! on 127.0.0.1:<free port>, and stops when dropped.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;

use super::tls::{SIGNER_EXTENSIONS, make_cert, pem_to_der};

/// The `service` the registry names in its challenge and the token's audience.
pub const SERVICE: &str = "pushgate-test-registry";
/// The token's issuer, which the registry must be configured to trust.
pub const ISSUER: &str = "pushgate-test-token-server";
/// Path of the realm on the token server.
const REALM_PATH: &str = "/token";
/// Default token lifetime: the spec's recommended minimum.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// Clock-skew leeway distribution adds to `exp` (and subtracts from `nbf`) when it checks
/// a token (`registry/auth/token`, `Leeway`).
pub const REGISTRY_LEEWAY: Duration = Duration::from_secs(60);

/// One request to the realm, as the token server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The Basic user name (even when its password was wrong); None for anonymous.
    pub user: Option<String>,
    /// The `scope` parameters, in order (`repository:NAME:ACTIONS`).
    pub scopes: Vec<String>,
    /// The HTTP status answered: 200, 401 for bad credentials, 400 for another service.
    pub status: u16,
    /// What the token granted, as scopes (`repository:NAME:pull,push`); empty on 401.
    pub granted: Vec<String>,
}

/// Actions `user` (None: anonymous) may do on repositories whose name matches `pattern`
/// (`*` matches any run of characters, e.g. `fcos*`).
#[derive(Debug, Clone)]
struct Grant {
    user: Option<String>,
    pattern: String,
    actions: Vec<String>,
}

/// Configures and starts a [`TokenServer`].
#[derive(Debug, Clone)]
pub struct TokenServerBuilder {
    passwords: BTreeMap<String, String>,
    grants: Vec<Grant>,
    lifetime: Duration,
    strict_expiry: bool,
    /// What `expires_in` says instead of the lifetime, when set.
    told_expires_in: Option<u64>,
}

impl TokenServerBuilder {
    /// Adds a user that authenticates with Basic `name:password`.
    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.passwords.insert(name.into(), password.into());
        self
    }

    /// Lets `user` do `actions` ("pull", "push", "delete", or "*" for all) on
    /// repositories matching `pattern`.
    pub fn grant(mut self, user: &str, pattern: &str, actions: &[&str]) -> Self {
        assert!(
            self.passwords.contains_key(user),
            "grant to unknown user {user:?}: add it with .user() first"
        );
        self.grants.push(Grant {
            user: Some(user.into()),
            pattern: pattern.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        });
        self
    }

    /// Marks repositories matching `pattern` public: anyone, anonymous included, may pull.
    pub fn public(mut self, pattern: &str) -> Self {
        self.grants.push(Grant {
            user: None,
            pattern: pattern.into(),
            actions: vec!["pull".into()],
        });
        self
    }

    /// How long tokens live: `expires_in` and `exp - iat`. Default 300 s.
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Makes the answer say `expires_in: seconds` (the JWT still lives the
    /// lifetime): a token server that claims what it likes, up to u64::MAX.
    pub fn expires_in(mut self, seconds: u64) -> Self {
        self.told_expires_in = Some(seconds);
        self
    }

    /// Makes the registry refuse a token once its lifetime is over, despite the 60 s
    /// leeway distribution allows on `exp`: the JWT's `exp` is set [`REGISTRY_LEEWAY`]
    /// before the end of the lifetime (`expires_in` still says the lifetime). Without
    /// this, a 2 s token stays usable at the registry for 62 s, so a client that never
    /// refreshes would go unnoticed.
    pub fn strict_expiry(mut self) -> Self {
        self.strict_expiry = true;
        self
    }

    /// Makes the signing key and certificate, binds a free port and starts serving.
    pub fn start(self) -> TokenServer {
        TokenServer::start(self)
    }
}

/// A running token server; see the module documentation.
pub struct TokenServer {
    addr: String,
    state: Arc<State>,
    /// Holds the signing key and certificate; removed when the server is dropped.
    _dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// What the request handlers share.
struct State {
    config: TokenServerBuilder,
    signer: Signer,
    requests: Mutex<Vec<TokenRequest>>,
    next_jti: AtomicU64,
}

impl TokenServer {
    /// A builder with no users, no grants and the default lifetime.
    pub fn builder() -> TokenServerBuilder {
        TokenServerBuilder {
            passwords: BTreeMap::new(),
            grants: Vec::new(),
            lifetime: DEFAULT_LIFETIME,
            strict_expiry: false,
            told_expires_in: None,
        }
    }

    fn start(config: TokenServerBuilder) -> TokenServer {
        let dir = tempfile::Builder::new()
            .prefix("pushgate-token-")
            .tempdir()
            .expect("create token server temp dir");
        let signer = Signer::new(dir.path());
        // Bound here, before the thread starts, so the port is known and connections are
        // queued by the kernel even before the accept loop runs: no readiness wait needed.
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind token server port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local addr").to_string();
        let state = Arc::new(State {
            config,
            signer,
            requests: Mutex::new(Vec::new()),
            next_jti: AtomicU64::new(1),
        });
        let (shutdown, stop) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("token-server".into())
            .spawn({
                let state = state.clone();
                move || serve(listener, state, stop)
            })
            .expect("spawn token server thread");
        TokenServer {
            addr,
            state,
            _dir: dir,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// "127.0.0.1:PORT"
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The realm URL the registry sends clients to: "http://127.0.0.1:PORT/token".
    pub fn realm(&self) -> String {
        format!("http://{}{REALM_PATH}", self.addr)
    }

    pub fn service(&self) -> &str {
        SERVICE
    }

    pub fn issuer(&self) -> &str {
        ISSUER
    }

    /// The PEM certificate of the signing key, for the registry's `rootcertbundle`.
    pub fn signing_cert(&self) -> &Path {
        &self.state.signer.cert_path
    }

    /// Every request to the realm so far, in arrival order.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// A token as the realm would issue it to `user` (None: anonymous) for `scopes`, but
    /// issued at `issued_at` and without a request (not recorded, no password): to test
    /// expiry without waiting for it.
    pub fn mint(&self, user: Option<&str>, scopes: &[&str], issued_at: SystemTime) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        let access = self.state.config.access(user, &scopes);
        self.state.issue(user, &access, issued_at)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The accept loop, on a runtime of its own, until `stop` fires (or its sender drops).
fn serve(listener: TcpListener, state: Arc<State>, mut stop: oneshot::Receiver<()>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("token server runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        loop {
            let stream = tokio::select! {
                _ = &mut stop => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(state.handle(&request)) }
                });
                // A client hanging up mid-request is its business, not a test failure.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    // Dropping the runtime cancels the connections still open.
}

/// Who a request's Authorization header says it is.
enum Caller {
    Anonymous,
    User(String),
    /// Credentials were sent but are wrong (unknown user, bad password, not Basic).
    Refused(Option<String>),
}

impl State {
    fn handle(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET || request.uri().path() != REALM_PATH {
            return reply(StatusCode::NOT_FOUND, json!({"error": "not found"}));
        }
        let query = request.uri().query().unwrap_or("");
        let scopes: Vec<String> = query_values(query, "scope")
            .flat_map(|s| {
                // Some clients join several scopes with spaces in one parameter.
                s.split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        let service = query_values(query, "service").next();
        match self.caller(request) {
            Caller::Refused(user) => {
                self.record(user, scopes, 401, Vec::new());
                let mut response = reply(
                    StatusCode::UNAUTHORIZED,
                    json!({"details": "bad credentials"}),
                );
                response.headers_mut().insert(
                    "WWW-Authenticate",
                    "Basic realm=\"pushgate-test-token\"".parse().unwrap(),
                );
                response
            }
            _ if service.as_deref() != Some(SERVICE) => {
                let user = self.caller_name(request);
                self.record(user, scopes, 400, Vec::new());
                reply(
                    StatusCode::BAD_REQUEST,
                    json!({"details": format!("unknown service {service:?}")}),
                )
            }
            caller => {
                let user = match caller {
                    Caller::User(user) => Some(user),
                    _ => None,
                };
                let access = self.config.access(user.as_deref(), &scopes);
                let now = SystemTime::now();
                let token = self.issue(user.as_deref(), &access, now);
                let granted = access.iter().map(Access::scope).collect();
                self.record(user, scopes, 200, granted);
                reply(
                    StatusCode::OK,
                    json!({
                        "token": token,
                        "access_token": token,
                        "expires_in": self
                            .config
                            .told_expires_in
                            .unwrap_or(self.config.lifetime.as_secs()),
                        "issued_at": rfc3339(now),
                    }),
                )
            }
        }
    }

    fn caller(&self, request: &Request<Incoming>) -> Caller {
        let Some(header) = request.headers().get(hyper::header::AUTHORIZATION) else {
            return Caller::Anonymous;
        };
        let Some((user, password)) = header.to_str().ok().and_then(parse_basic) else {
            return Caller::Refused(None);
        };
        match self.config.passwords.get(&user) {
            Some(expected) if *expected == password => Caller::User(user),
            _ => Caller::Refused(Some(user)),
        }
    }

    /// The user name a request claims, checked or not.
    fn caller_name(&self, request: &Request<Incoming>) -> Option<String> {
        match self.caller(request) {
            Caller::User(user) | Caller::Refused(Some(user)) => Some(user),
            _ => None,
        }
    }

    fn record(&self, user: Option<String>, scopes: Vec<String>, status: u16, granted: Vec<String>) {
        self.requests.lock().unwrap().push(TokenRequest {
            user,
            scopes,
            status,
            granted,
        });
    }

    /// A signed JWT for `user` granting `access`, issued at `now`.
    fn issue(&self, user: Option<&str>, access: &[Access], now: SystemTime) -> String {
        let iat = now
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs() as i64;
        let mut exp = iat + self.config.lifetime.as_secs() as i64;
        if self.config.strict_expiry {
            exp -= REGISTRY_LEEWAY.as_secs() as i64;
        }
        let jti = self.next_jti.fetch_add(1, Ordering::Relaxed);
        let claims = json!({
            "iss": ISSUER,
            "sub": user.unwrap_or(""),
            "aud": SERVICE,
            "exp": exp,
            "nbf": iat,
            "iat": iat,
            "jti": format!("pushgate-test-{jti}"),
            "access": access.iter().map(Access::claim).collect::<Vec<_>>(),
        });
        self.signer.sign(&claims)
    }
}

impl TokenServerBuilder {
    /// For each requested scope, the actions both asked for and allowed to `user`; scopes
    /// with nothing granted are left out (the registry then answers 401/403).
    fn access(&self, user: Option<&str>, scopes: &[String]) -> Vec<Access> {
        scopes
            .iter()
            .filter_map(|scope| {
                let (kind, name, asked) = parse_scope(scope)?;
                let allowed = self.allowed(user, kind, name);
                let actions: Vec<String> = asked
                    .into_iter()
                    .filter(|a| allowed.iter().any(|b| b == a || b == "*"))
                    .collect();
                (!actions.is_empty()).then(|| Access {
                    kind: kind.into(),
                    name: name.into(),
                    actions,
                })
            })
            .collect()
    }

    /// The union of what the grants give `user` on `kind:name`; public grants apply to all.
    fn allowed(&self, user: Option<&str>, kind: &str, name: &str) -> Vec<String> {
        if kind != "repository" {
            return Vec::new();
        }
        self.grants
            .iter()
            .filter(|g| g.user.is_none() || g.user.as_deref() == user)
            .filter(|g| glob_match(&g.pattern, name))
            .flat_map(|g| g.actions.iter().cloned())
            .collect()
    }
}

/// One entry of the JWT's `access` claim.
#[derive(Debug, Clone)]
struct Access {
    kind: String,
    name: String,
    actions: Vec<String>,
}

impl Access {
    fn claim(&self) -> Value {
        json!({"type": self.kind, "name": self.name, "actions": self.actions})
    }

    fn scope(&self) -> String {
        format!("{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }
}

/// `TYPE:NAME:ACTIONS` → (type, name, actions). The name is everything between the first
/// and the last colon, so a name with a port ("host:5000/x") survives.
fn parse_scope(scope: &str) -> Option<(&str, &str, Vec<String>)> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let actions = actions
        .split(',')
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    Some((kind, name, actions))
}

/// `*` matches any run of characters (including `/`); everything else matches itself.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((prefix, rest)) => {
            let Some(tail) = name.strip_prefix(prefix) else {
                return false;
            };
            (0..=tail.len())
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| glob_match(rest, &tail[i..]))
        }
    }
}

/// `Basic base64(user:password)` → (user, password).
fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.into(), password.into()))
}

/// The values of parameter `key` in a query string, percent-decoded, in order.
fn query_values<'a>(query: &'a str, key: &'a str) -> impl Iterator<Item = String> + 'a {
    query.split('&').filter_map(move |pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

/// Decodes `%XX` escapes and `+` (space), as in `application/x-www-form-urlencoded`.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("Content-Type", "application/json".parse().unwrap());
    response
}

/// The ES256 signing key and its self-signed certificate.
struct Signer {
    key: EcdsaKeyPair,
    /// The certificate's DER, standard base64: the JWT header's `x5c` entry.
    x5c: String,
    cert_path: PathBuf,
}

impl Signer {
    fn new(dir: &Path) -> Signer {
        let pair = make_cert(
            dir,
            "token-signer",
            "pushgate test token signer",
            SIGNER_EXTENSIONS,
            None,
        );
        let key_pem = fs::read_to_string(&pair.key).expect("read signing key");
        let cert_pem = fs::read_to_string(&pair.cert).expect("read signing cert");
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &pem_to_der(&key_pem, "PRIVATE KEY"),
            &SystemRandom::new(),
        )
        .expect("signing key is a PKCS#8 P-256 key");
        Signer {
            key,
            x5c: STANDARD.encode(pem_to_der(&cert_pem, "CERTIFICATE")),
            cert_path: pair.cert,
        }
    }

    /// `base64url(header).base64url(claims).base64url(r || s)`.
    fn sign(&self, claims: &Value) -> String {
        let header = json!({"typ": "JWT", "alg": "ES256", "x5c": [self.x5c]});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        // FIXED signing yields the 64-byte r || s that JWS ES256 wants (not DER).
        let signature = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .expect("sign token");
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }
}

/// The header and claims of a JWT, decoded without checking the signature (the registry
/// does that): for assertions on `exp`, `access`, ...
pub fn decode_jwt(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut part = |what: &str| -> Value {
        let encoded = parts.next().unwrap_or_else(|| panic!("JWT has no {what}"));
        let bytes = URL_SAFE_NO_PAD
            .decode(encoded)
            .unwrap_or_else(|e| panic!("JWT {what} is not base64url: {e}"));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("JWT {what} is not JSON: {e}"))
    };
    (part("header"), part("claims"))
}

/// `2026-11-27T23:30:40Z`: RFC 3339 in UTC, to the second.
fn rfc3339(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
