//! Integration-test harness: a real `docker-registry` (CNCF distribution v2.8) on a free
//! loopback port, request counting from its access log, and `skopeo` as an independent
//! client. The registry is anonymous, htpasswd-protected or behind a token server
//! ([`token`]), over plain HTTP or over TLS with a test CA ([`tls`]), optionally mutual.
//! No mocks, no sleeps as synchronisation: every wait polls a real condition and is
//! bounded in time.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

pub mod hostile;
pub mod liar;
pub mod proxy;
pub mod run;
pub mod tls;
pub mod token;

use tls::TestPki;
use token::TokenServer;

/// How long a registry may take to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the access log may take to show the sentinel request.
const SENTINEL_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two polls of a condition (the condition is what synchronises).
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Query parameter marking the harness's own requests (readiness probes and sentinels);
/// lines carrying it are never returned by [`Registry::requests`].
const HARNESS_MARK: &str = "pushgate-harness";
/// How many times a start is retried with a fresh port when the port was taken meanwhile.
const START_ATTEMPTS: usize = 5;

/// Process-wide counter making every probe and sentinel unique.
static MARK_COUNTER: AtomicU64 = AtomicU64::new(0);

fn next_mark() -> u64 {
    MARK_COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// One request served by the registry, as its access log recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request path, without its query string.
    pub path: String,
    /// The query string, without its `?` (empty when there is none).
    pub query: String,
    pub status: u16,
}

impl Request {
    /// True for requests that change the registry (PUT, POST, PATCH, DELETE).
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "PUT" | "POST" | "PATCH" | "DELETE")
    }
}

/// A running `docker-registry serve`, with its config, storage and logs in a temp dir.
/// Dropping it kills the process and removes the directory.
pub struct Registry {
    child: Option<Child>,
    addr: String,
    dir: TempDir,
    auth: Auth,
    /// Served over HTTPS when set.
    tls: Option<Tls>,
    /// Read-only maintenance mode (`storage.maintenance.readonly.enabled`).
    read_only: bool,
}

/// How the registry authenticates clients.
enum Auth {
    Anonymous,
    /// One user in `DIR/htpasswd`.
    Htpasswd {
        user: String,
        password: String,
    },
    /// Bearer tokens from a [`TokenServer`]; its signing certificate is copied to
    /// `DIR/token-signer.crt` (the `rootcertbundle`).
    Token {
        realm: String,
        signing_cert: PathBuf,
    },
}

/// An HTTPS registry. Its files are copied into `DIR/tls/` so the registry does not depend
/// on the [`TestPki`] outliving it (a restart reads them again).
#[derive(Clone, Copy)]
struct Tls {
    /// Clients must present a certificate signed by the test CA (`http.tls.clientcas`).
    require_client_cert: bool,
}

impl Registry {
    /// An anonymous registry over plain HTTP on 127.0.0.1:<free port>.
    pub fn start() -> Registry {
        Registry::launch(Auth::Anonymous, None, false)
    }

    /// A registry with htpasswd (bcrypt) auth, realm "pushgate-test".
    pub fn start_with_htpasswd(user: &str, password: &str) -> Registry {
        let auth = Auth::Htpasswd {
            user: user.to_string(),
            password: password.to_string(),
        };
        Registry::launch(auth, None, false)
    }

    /// A registry (plain HTTP) that only accepts bearer tokens from `tokens`: it answers
    /// 401 with `WWW-Authenticate: Bearer realm=tokens.realm(),service=...` and trusts
    /// JWTs whose `x5c` chains to the token server's signing certificate.
    pub fn start_with_token(tokens: &TokenServer) -> Registry {
        Registry::launch(token_auth(tokens), None, false)
    }

    /// [`Registry::start_with_token`], but its challenge sends clients to `realm`
    /// (e.g. a fault proxy in front of the token server) instead of the token
    /// server's own.
    pub fn start_with_token_realm(tokens: &TokenServer, realm: &str) -> Registry {
        let auth = Auth::Token {
            realm: realm.to_string(),
            signing_cert: tokens.signing_cert().to_path_buf(),
        };
        Registry::launch(auth, None, false)
    }

    /// An anonymous registry in read-only maintenance mode: reads are served, every
    /// write (PUT, POST, PATCH, DELETE) is refused with HTTP 405.
    pub fn start_read_only() -> Registry {
        Registry::launch(Auth::Anonymous, None, true)
    }

    /// An anonymous registry over HTTPS with `pki`'s server certificate (127.0.0.1 and
    /// localhost): clients must trust `pki`'s CA.
    pub fn start_tls(pki: &TestPki) -> Registry {
        let tls = Tls {
            require_client_cert: false,
        };
        Registry::launch(Auth::Anonymous, Some((pki, tls)), false)
    }

    /// Like [`Registry::start_tls`], and clients must also present a certificate signed
    /// by `pki`'s CA (mutual TLS); without one the TLS handshake fails.
    pub fn start_mtls(pki: &TestPki) -> Registry {
        let tls = Tls {
            require_client_cert: true,
        };
        Registry::launch(Auth::Anonymous, Some((pki, tls)), false)
    }

    /// [`Registry::start_with_token`] over HTTPS ([`Registry::start_tls`]): quay.io's and
    /// ghcr.io's setup, with a private CA.
    pub fn start_tls_with_token(pki: &TestPki, tokens: &TokenServer) -> Registry {
        let tls = Tls {
            require_client_cert: false,
        };
        Registry::launch(token_auth(tokens), Some((pki, tls)), false)
    }

    /// Creates the temp dir and the files the config refers to, then starts the registry
    /// on a free port.
    fn launch(auth: Auth, tls: Option<(&TestPki, Tls)>, read_only: bool) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("pushgate-registry-")
            .tempdir()
            .expect("create registry temp dir");
        fs::create_dir(dir.path().join("storage")).expect("create storage dir");
        match &auth {
            Auth::Anonymous => {}
            Auth::Htpasswd { user, password } => {
                write_htpasswd(&dir.path().join("htpasswd"), user, password)
            }
            Auth::Token { signing_cert, .. } => {
                copy_file(signing_cert, &dir.path().join("token-signer.crt"))
            }
        }
        let tls = tls.map(|(pki, tls)| {
            copy_tls_files(pki, &dir.path().join("tls"));
            tls
        });
        let mut registry = Registry {
            child: None,
            addr: String::new(),
            dir,
            auth,
            tls,
            read_only,
        };
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            registry.addr = format!("127.0.0.1:{}", free_port());
            match registry.spawn_and_wait() {
                Ok(()) => return registry,
                Err(StartError::AddrInUse(stderr)) => last_error = stderr,
                Err(StartError::Fatal(message)) => panic!("{message}"),
            }
        }
        panic!(
            "docker-registry could not bind a free port after {START_ATTEMPTS} attempts:\n{last_error}"
        );
    }

    /// "127.0.0.1:PORT"
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// "127.0.0.1:PORT/name", a repository reference on this registry.
    pub fn repo(&self, name: &str) -> String {
        format!("{}/{}", self.addr, name)
    }

    /// "http://127.0.0.1:PORT" (https for a TLS registry) followed by `path` (which
    /// should start with '/').
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{}", self.addr, path)
    }

    /// The temp dir holding config.yml, storage/, stdout.log (access log) and stderr.log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The registry's application log (stderr) so far, for diagnostics.
    pub fn app_log(&self) -> String {
        fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    /// Every request the registry served so far, in log order, excluding the harness's own
    /// probes and sentinels.
    ///
    /// The access log line of a request is written when the handler returns, so this sends
    /// a sentinel request and waits until the sentinel's line is in the log: every request
    /// whose response a client has received before this call is then in the log too.
    pub fn requests(&self) -> Vec<Request> {
        let sentinel = format!("{HARNESS_MARK}=sentinel-{}", next_mark());
        let status = self
            .get_status(&format!("/v2/?{sentinel}"))
            .unwrap_or_else(|e| panic!("sentinel request to {} failed: {e}", self.addr));
        assert!(
            status == 200 || status == 401,
            "sentinel request to {} answered {status}",
            self.addr
        );
        let deadline = Instant::now() + SENTINEL_TIMEOUT;
        loop {
            let log = fs::read_to_string(self.stdout_path()).unwrap_or_default();
            // Only complete lines: the last one may still be being written.
            let complete = match log.rfind('\n') {
                Some(end) => &log[..=end],
                None => "",
            };
            let lines: Vec<&str> = complete.lines().collect();
            if let Some(pos) = lines.iter().position(|line| line.contains(&sentinel)) {
                return lines[..pos]
                    .iter()
                    .filter(|line| !line.contains(HARNESS_MARK))
                    .map(|line| {
                        parse_access_line(line).unwrap_or_else(|| {
                            panic!("unparseable access log line in {}: {line:?}", self.addr)
                        })
                    })
                    .collect();
            }
            assert!(
                Instant::now() < deadline,
                "sentinel {sentinel} did not appear in the access log of {} within {:?}; log:\n{log}",
                self.addr,
                SENTINEL_TIMEOUT
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// The requests that changed something: PUT, POST, PATCH or DELETE.
    pub fn writes(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(Request::is_write)
            .collect()
    }

    /// Kills the registry and removes its storage.
    pub fn stop(self) {}

    /// Kills the registry and starts it again on the same port with the same storage;
    /// the access log is appended to, so `requests()` still sees earlier requests.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                // The old socket may linger briefly; the port is ours, so try again.
                Err(StartError::AddrInUse(stderr)) => assert!(
                    Instant::now() < deadline,
                    "docker-registry could not rebind {} within {:?}:\n{stderr}",
                    self.addr,
                    READY_TIMEOUT
                ),
                Err(StartError::Fatal(message)) => panic!("{message}"),
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn stdout_path(&self) -> PathBuf {
        self.dir.path().join("stdout.log")
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("stderr.log")
    }

    fn write_config(&self) -> PathBuf {
        let root = self.dir.path();
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n{readonly}\
             http:\n  addr: {addr}\n  secret: pushgate-test-secret\n",
            storage = yaml_str(&root.join("storage").to_string_lossy()),
            addr = self.addr,
            readonly = if self.read_only {
                "    readonly:\n      enabled: true\n"
            } else {
                ""
            },
        );
        if self.tls.is_some() {
            config.push_str(&self.tls_config());
        }
        config.push_str(&self.auth_config());
        let path = root.join("config.yml");
        fs::write(&path, config).expect("write registry config");
        path
    }

    /// The `http.tls` section (indented under `http:`).
    fn tls_config(&self) -> String {
        let tls = self.dir.path().join("tls");
        let path = |name: &str| yaml_str(&tls.join(name).to_string_lossy());
        let mut config = format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            path("server.crt"),
            path("server.key")
        );
        if self.tls.as_ref().is_some_and(|t| t.require_client_cert) {
            // distribution then sets RequireAndVerifyClientCert.
            config.push_str(&format!("    clientcas:\n      - {}\n", path("ca.crt")));
        }
        config
    }

    /// The `auth` section, if any.
    fn auth_config(&self) -> String {
        let root = self.dir.path();
        match &self.auth {
            Auth::Anonymous => String::new(),
            Auth::Htpasswd { .. } => format!(
                "auth:\n  htpasswd:\n    realm: pushgate-test\n    path: {}\n",
                yaml_str(&root.join("htpasswd").to_string_lossy())
            ),
            Auth::Token { realm, .. } => format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    \
                 rootcertbundle: {}\n",
                yaml_str(realm),
                yaml_str(token::SERVICE),
                yaml_str(token::ISSUER),
                yaml_str(&root.join("token-signer.crt").to_string_lossy())
            ),
        }
    }

    /// The status of `GET path` on this registry: over a raw TCP stream for plain HTTP,
    /// through curl (trusting the test CA, with the client certificate) for HTTPS.
    fn get_status(&self, path_and_query: &str) -> Result<u16, String> {
        match self.tls {
            None => http_get_status(&self.addr, path_and_query),
            Some(_) => curl_get_status(&self.url(path_and_query), &self.dir.path().join("tls")),
        }
    }

    fn spawn_and_wait(&mut self) -> Result<(), StartError> {
        let config = self.write_config();
        let stdout = append(&self.stdout_path());
        // stderr is truncated per start so a bind failure is judged on this start only.
        let stderr = File::create(self.stderr_path()).expect("create registry stderr log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| StartError::Fatal(format!("cannot run docker-registry: {e}")))?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Polls `GET /v2/` until it answers 200 (or 401 with auth); fails if the process exits.
    fn wait_ready(&mut self) -> Result<(), StartError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let expected = match self.auth {
            Auth::Anonymous => 200,
            Auth::Htpasswd { .. } | Auth::Token { .. } => 401,
        };
        loop {
            let child = self.child.as_mut().expect("registry child");
            if let Some(exit) = child.try_wait().expect("poll registry process") {
                self.child = None;
                let stderr = self.app_log();
                return Err(if stderr.contains("address already in use") {
                    StartError::AddrInUse(stderr)
                } else {
                    StartError::Fatal(format!(
                        "docker-registry on {} exited ({exit}) before answering:\n{stderr}",
                        self.addr
                    ))
                });
            }
            let probe = format!("/v2/?{HARNESS_MARK}=probe-{}", next_mark());
            match self.get_status(&probe) {
                Ok(status) if status == expected => return Ok(()),
                Ok(status) => {
                    self.kill();
                    return Err(StartError::Fatal(format!(
                        "docker-registry on {} answered GET /v2/ with {status}, expected {expected}:\n{}",
                        self.addr,
                        self.app_log()
                    )));
                }
                Err(_) if Instant::now() < deadline => std::thread::sleep(POLL_INTERVAL),
                Err(e) => {
                    self.kill();
                    return Err(StartError::Fatal(format!(
                        "docker-registry on {} not ready within {READY_TIMEOUT:?} ({e}):\n{}",
                        self.addr,
                        self.app_log()
                    )));
                }
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

enum StartError {
    /// The port was taken between choosing it and the registry binding it.
    AddrInUse(String),
    Fatal(String),
}

/// A port that was free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

fn append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// A YAML double-quoted scalar.
fn yaml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn token_auth(tokens: &TokenServer) -> Auth {
    Auth::Token {
        realm: tokens.realm(),
        signing_cert: tokens.signing_cert().to_path_buf(),
    }
}

fn copy_file(from: &Path, to: &Path) {
    fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
}

/// Copies what an HTTPS registry and its probes need into `dir`: the server pair, the CA
/// (trusted by the probes; the client CA under mutual TLS) and the client pair.
fn copy_tls_files(pki: &TestPki, dir: &Path) {
    fs::create_dir(dir).expect("create tls dir");
    copy_file(&pki.server.cert, &dir.join("server.crt"));
    copy_file(&pki.server.key, &dir.join("server.key"));
    copy_file(&pki.ca.cert, &dir.join("ca.crt"));
    copy_file(&pki.client.cert, &dir.join("client.crt"));
    copy_file(&pki.client.key, &dir.join("client.key"));
}

fn write_htpasswd(path: &Path, user: &str, password: &str) {
    let out = Command::new("htpasswd")
        .args(["-Bbn", user, password])
        .output()
        .expect("run htpasswd (apache2-utils)");
    assert!(
        out.status.success(),
        "htpasswd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::write(path, &out.stdout).expect("write htpasswd file");
}

/// A minimal HTTP/1.1 GET over a loopback TcpStream; returns the status code.
fn http_get_status(addr: &str, path_and_query: &str) -> Result<u16, String> {
    let sock: SocketAddr = addr.parse().map_err(|e| format!("bad addr {addr}: {e}"))?;
    let mut stream = TcpStream::connect_timeout(&sock, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(5))))
        .map_err(|e| format!("socket timeouts: {e}"))?;
    write!(
        stream,
        "GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: pushgate-harness\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&response);
    let status_line = text.lines().next().unwrap_or("");
    status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line from {addr}: {status_line:?}"))
}

/// `GET url` with curl, trusting `tls_dir/ca.crt` and presenting `tls_dir/client.crt`;
/// returns the status code. curl exits non-zero when it gets no HTTP answer at all.
fn curl_get_status(url: &str, tls_dir: &Path) -> Result<u16, String> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--noproxy",
            "*",
        ])
        .args(["--max-time", "5", "-A", "pushgate-harness", "--cacert"])
        .arg(tls_dir.join("ca.crt"))
        .arg("--cert")
        .arg(tls_dir.join("client.crt"))
        .arg("--key")
        .arg(tls_dir.join("client.key"))
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "curl {url}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let code = String::from_utf8_lossy(&out.stdout);
    code.trim()
        .parse()
        .map_err(|_| format!("curl {url}: bad status {code:?}"))
}

/// Parses an Apache combined log line:
/// `127.0.0.1 - - [27/Nov/2026:23:30:40 +0000] "POST /v2/x/blobs/uploads/ HTTP/1.1" 202 0 "" "curl/7.88.1"`
pub fn parse_access_line(line: &str) -> Option<Request> {
    let start = line.find('"')? + 1;
    let len = line[start..].find('"')?;
    let request_line = &line[start..start + len];
    let mut parts = request_line.split(' ');
    let method = parts.next()?.to_string();
    let target = parts.next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (path, query) = (path.to_string(), query.to_string());
    let status = line[start + len + 1..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(Request {
        method,
        path,
        query,
        status,
    })
}

/// A process-wide empty directory used as HOME / XDG_RUNTIME_DIR / XDG_CONFIG_HOME for
/// child processes, so that no user auth file is picked up. Never removed while running.
///
/// A static is never dropped, so a `TempDir` here would outlive every test run (and
/// hold the policy cache pushgate writes under HOME): each process's home is named by
/// its pid under the target's tmp dir instead, and the homes of processes that have
/// ended are removed when the next one starts.
fn empty_home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-homes");
        fs::create_dir_all(&base).expect("create the test homes' directory");
        for entry in fs::read_dir(&base).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let ended = name
                .to_str()
                .and_then(|n| n.strip_prefix("pid-"))
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
            if ended {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        let home = base.join(format!("pid-{}", std::process::id()));
        // A home left by an earlier process with this pid.
        let _ = fs::remove_dir_all(&home);
        fs::create_dir_all(&home).expect("create empty home");
        home
    })
}

/// Applies the clean environment shared by `pushgate()` and the skopeo helpers.
fn clean_env(cmd: &mut Command) -> &mut Command {
    let home = empty_home();
    cmd.env_remove("REGISTRY_AUTH_FILE")
        .env_remove("DOCKER_CONFIG")
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", home)
        .env("XDG_RUNTIME_DIR", home)
}

/// The pushgate binary under test, with a clean auth environment: REGISTRY_AUTH_FILE and
/// DOCKER_CONFIG removed, HOME and XDG_RUNTIME_DIR pointing at an empty directory.
pub fn pushgate() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pushgate"));
    clean_env(&mut cmd);
    cmd
}

/// `skopeo` with the clean auth environment of [`pushgate`], for tests that need flags
/// the helpers below do not take.
pub fn skopeo() -> Command {
    let mut cmd = Command::new("skopeo");
    clean_env(&mut cmd);
    cmd.stdin(Stdio::null());
    cmd
}

/// Pulls `image_ref` (plain HTTP) into an OCI layout at `dest` with skopeo, which
/// checks every blob against its digest: what landed is whole, or the test fails
/// with skopeo's words.
pub fn skopeo_pull_back(image_ref: &str, dest: &Path) {
    let out = skopeo()
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{image_ref}"))
        .arg(format!("oci:{}", dest.display()))
        .output()
        .expect("run skopeo copy");
    assert!(
        out.status.success(),
        "skopeo copy docker://{image_ref}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `skopeo inspect --raw --tls-verify=false docker://REF`: the manifest bytes exactly as
/// the registry serves them, or skopeo's stderr.
pub fn skopeo_inspect_raw(image_ref: &str, authfile: Option<&Path>) -> Result<Vec<u8>, String> {
    let mut cmd = Command::new("skopeo");
    clean_env(&mut cmd);
    cmd.args(["inspect", "--raw", "--tls-verify=false"]);
    if let Some(authfile) = authfile {
        cmd.arg("--authfile").arg(authfile);
    }
    cmd.arg(format!("docker://{image_ref}"));
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run skopeo: {e}"))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The digest of the manifest `image_ref` resolves to, as "sha256:<hex>", computed over
/// the raw bytes skopeo fetched.
pub fn skopeo_digest(image_ref: &str, authfile: Option<&Path>) -> Result<String, String> {
    let raw = skopeo_inspect_raw(image_ref, authfile)?;
    Ok(sha256_digest(&raw))
}

/// "sha256:<hex>" of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Writes a containers-auth.json (`{"auths": {REGISTRY: {"auth": base64(user:password)}}}`)
/// as `dir/auth.json` and returns its path.
pub fn write_authfile(dir: &Path, registry: &str, user: &str, password: &str) -> PathBuf {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let doc = serde_json::json!({ "auths": { registry: { "auth": auth } } });
    let path = dir.join("auth.json");
    fs::write(
        &path,
        serde_json::to_vec_pretty(&doc).expect("serialise auth.json"),
    )
    .expect("write auth.json");
    path
}

/// The path of a policy module built for `wasm32-wasip2`: a shipped one (`default`,
/// `kubevirt`, `release-tags`) or a test-only one (`hostile`, `wrong-version`); `-` and
/// `_` are interchangeable. The first call in a test process runs
/// `scripts/build-policies.sh --tests` (quick when the modules are up to date; the script
/// sets each workspace's CARGO_TARGET_DIR itself); a failed build panics with its output.
pub fn policy_module(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = BUILT.get_or_init(|| {
        let script = root.join("scripts").join("build-policies.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("--tests")
            .current_dir(root)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} --tests failed ({}):\n{}{}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(message) = built {
        panic!("{message}");
    }
    let file = name.replace('-', "_");
    let workspace = match file.as_str() {
        "default" | "kubevirt" | "release_tags" | "signed_sources" => "policies",
        "hostile" | "hostile_metadata" | "hostile_metadata_huge" | "wrong_version" => {
            "tests/policies"
        }
        other => panic!("no policy module named {other:?}"),
    };
    let path = root
        .join(workspace)
        .join("target/wasm32-wasip2/release")
        .join(format!("pushgate_policy_{file}.wasm"));
    assert!(
        path.is_file(),
        "the policy build did not produce {}",
        path.display()
    );
    path
}
