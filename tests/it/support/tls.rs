//! A private PKI for TLS tests: a test CA, a server certificate for `127.0.0.1` and
//! `localhost`, and a client certificate, all made by the `openssl` command line in a temp
//! dir. It models the registries that sit behind a company CA (self-hosted Quay, Harbor,
//! an internal distribution) that clients only trust once told about the CA, and the ones
//! that also demand a client certificate (mutual TLS).
//!
//! Clients are told about the CA the way skopeo and podman are: a cert dir holding
//! `ca.crt` (trusted roots, `*.crt`) and optionally `client.cert` + `client.key`
//! (`--cert-dir`, `--dest-cert-dir`), or a `certs.d` tree (`DIR/HOST:PORT/ca.crt`) as in
//! `/etc/containers/certs.d` and `$HOME/.config/containers/certs.d`.
//!
//! All keys are EC P-256; certificates are valid for two days, long enough for any test.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use tempfile::TempDir;

/// Validity of every certificate made here, in days.
const VALIDITY_DAYS: &str = "2";

/// Extensions of the test CA: it may sign certificates, and nothing else.
const CA_EXTENSIONS: &str = "basicConstraints = critical,CA:TRUE\n\
     keyUsage = critical,keyCertSign,cRLSign\n\
     subjectKeyIdentifier = hash\n";

/// Extensions of the server certificate. Go (the registry) and curl match the host against
/// the SAN only, never the CN, so both the IP and the name are listed.
const SERVER_EXTENSIONS: &str = "basicConstraints = critical,CA:FALSE\n\
     keyUsage = critical,digitalSignature\n\
     extendedKeyUsage = serverAuth\n\
     subjectAltName = IP:127.0.0.1,DNS:localhost\n\
     subjectKeyIdentifier = hash\n\
     authorityKeyIdentifier = keyid\n";

/// Extensions of the client certificate (mutual TLS).
const CLIENT_EXTENSIONS: &str = "basicConstraints = critical,CA:FALSE\n\
     keyUsage = critical,digitalSignature\n\
     extendedKeyUsage = clientAuth\n\
     subjectKeyIdentifier = hash\n\
     authorityKeyIdentifier = keyid\n";

/// Extensions of a self-signed signing certificate (the token server's JWT signer).
pub const SIGNER_EXTENSIONS: &str = "basicConstraints = critical,CA:FALSE\n\
     keyUsage = critical,digitalSignature\n\
     subjectKeyIdentifier = hash\n";

/// Whether a cert dir also holds the client certificate and key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCert {
    Include,
    Omit,
}

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A test CA with one server and one client certificate, in a temp dir removed on drop.
pub struct TestPki {
    dir: TempDir,
    pub ca: CertPair,
    pub server: CertPair,
    pub client: CertPair,
}

impl TestPki {
    /// Makes the CA, then the server and client certificates it signs.
    pub fn new() -> TestPki {
        let dir = tempfile::Builder::new()
            .prefix("pushgate-pki-")
            .tempdir()
            .expect("create PKI temp dir");
        let ca = make_cert(dir.path(), "ca", "pushgate test CA", CA_EXTENSIONS, None);
        let server = make_cert(
            dir.path(),
            "server",
            "127.0.0.1",
            SERVER_EXTENSIONS,
            Some(&ca),
        );
        let client = make_cert(
            dir.path(),
            "client",
            "pushgate test client",
            CLIENT_EXTENSIONS,
            Some(&ca),
        );
        TestPki {
            dir,
            ca,
            server,
            client,
        }
    }

    /// A fresh skopeo/podman cert dir: `ca.crt`, plus `client.cert` and `client.key` when
    /// `client` is [`ClientCert::Include`]. For `--cert-dir` / `--src-cert-dir` /
    /// `--dest-cert-dir`.
    pub fn cert_dir(&self, client: ClientCert) -> PathBuf {
        let dir = self.fresh_dir("cert-dir");
        self.fill_cert_dir(&dir, client);
        dir
    }

    /// A fresh `certs.d` tree trusting the CA for `host_port` ("127.0.0.1:PORT"):
    /// `ROOT/HOST:PORT/ca.crt` (and the client pair when asked). Returns ROOT.
    pub fn certs_d(&self, host_port: &str, client: ClientCert) -> PathBuf {
        let root = self.fresh_dir("certs.d");
        let host_dir = root.join(host_port);
        fs::create_dir(&host_dir).expect("create certs.d host dir");
        self.fill_cert_dir(&host_dir, client);
        root
    }

    fn fill_cert_dir(&self, dir: &Path, client: ClientCert) {
        copy(&self.ca.cert, &dir.join("ca.crt"));
        if client == ClientCert::Include {
            // containers/image pairs `NAME.cert` with `NAME.key`; a lone one is an error.
            copy(&self.client.cert, &dir.join("client.cert"));
            copy(&self.client.key, &dir.join("client.key"));
        }
    }

    /// A new, empty directory under the PKI's temp dir.
    fn fresh_dir(&self, prefix: &str) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir.path().join(format!("{prefix}-{n}"));
        fs::create_dir(&dir).expect("create cert dir");
        dir
    }
}

impl Default for TestPki {
    fn default() -> Self {
        TestPki::new()
    }
}

/// Makes `DIR/NAME.key` (EC P-256, PKCS#8 PEM) and `DIR/NAME.crt` with subject CN=`cn`
/// and the given X.509v3 `extensions`, signed by `issuer` or self-signed.
pub fn make_cert(
    dir: &Path,
    name: &str,
    cn: &str,
    extensions: &str,
    issuer: Option<&CertPair>,
) -> CertPair {
    let pair = CertPair {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    // An own config file rather than the system openssl.cnf, whose `v3_ca` defaults would
    // otherwise land in every certificate `req -x509` makes.
    let config = dir.join(format!("{name}.cnf"));
    fs::write(
        &config,
        format!(
            "[req]\nprompt = no\ndistinguished_name = dn\nx509_extensions = ext\n\
             [dn]\nCN = {cn}\n[ext]\n{extensions}"
        ),
    )
    .expect("write openssl config");
    let mut cmd = Command::new("openssl");
    cmd.args(["req", "-x509", "-new", "-noenc"])
        .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
        .args(["-days", VALIDITY_DAYS, "-config"])
        .arg(&config)
        .arg("-keyout")
        .arg(&pair.key)
        .arg("-out")
        .arg(&pair.cert);
    if let Some(issuer) = issuer {
        cmd.arg("-CA")
            .arg(&issuer.cert)
            .arg("-CAkey")
            .arg(&issuer.key);
    }
    run_openssl(&mut cmd);
    pair
}

fn run_openssl(cmd: &mut Command) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("run openssl (OpenSSL 3 command line)");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn copy(from: &Path, to: &Path) {
    fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
}

/// The DER bytes of the first PEM block labelled `label` in `pem`
/// ("CERTIFICATE", "PRIVATE KEY").
pub fn pem_to_der(pem: &str, label: &str) -> Vec<u8> {
    use base64::Engine as _;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem
        .find(&begin)
        .unwrap_or_else(|| panic!("no {begin} in PEM"))
        + begin.len();
    let stop = start
        + pem[start..]
            .find(&end)
            .unwrap_or_else(|| panic!("no {end} in PEM"));
    let body: String = pem[start..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM body is base64")
}
