//! The HTTP client for one registry: TLS trust (the system's roots plus
//! `--cert-dir` or certs.d CAs, Mozilla's roots compiled in when the system has
//! none), a client certificate for mutual TLS, the bounds every request gets,
//! and origins (scheme, host, port), the unit credentials belong to.
//!
//! The client follows no redirect by itself: the executor does, so that it
//! decides where credentials go at every hop.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::Url;

use super::observer::Shared;
use super::options::Options;
use super::tls;

/// Builds the client for `registry` as `opts` ask.
pub(super) fn build(registry: &str, opts: &Options, observer: &Shared) -> Result<reqwest::Client> {
    match builder(registry, opts)?.build() {
        Ok(http) => Ok(http),
        // A verifying client fails to build when the system has no CA roots
        // at all (reqwest's platform verifier refuses an empty store), as in
        // a FROM-scratch pod without /etc/ssl. Only then are the bundled
        // roots loaded: building again with them costs nothing on a system
        // that has roots, since it is never reached there. Any other cause
        // fails the second build too, and the first error is the one told.
        Err(first) if opts.tls_verify => {
            let http = builder(registry, opts)?
                .tls_certs_merge(bundled_roots())
                .build()
                .map_err(|_| first)
                .context("setting up the HTTP client")?;
            if opts.debug {
                observer.line(&format!(
                    "pushgate: debug: no CA roots on this system \
                     (/etc/ssl, SSL_CERT_FILE, SSL_CERT_DIR); trusting the {} bundled \
                     Mozilla roots for {registry}",
                    webpki_root_certs::TLS_SERVER_ROOT_CERTS.len()
                ));
            }
            Ok(http)
        }
        Err(e) => Err(e).context("setting up the HTTP client"),
    }
}

/// The client for `registry` before it is built.
fn builder(registry: &str, opts: &Options) -> Result<reqwest::ClientBuilder> {
    install_crypto();
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("pushgate/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(opts.stall_timeout)
        .tcp_user_timeout(opts.stall_timeout)
        // A connection per upload and per session opened ahead, for each of
        // the (up to 4) containers of a release under way at once.
        .pool_max_idle_per_host(opts.total_jobs.unwrap_or(opts.jobs.max(1) * 4) * 2)
        .redirect(reqwest::redirect::Policy::none())
        .http1_only();
    if opts.tls_verify {
        if let Some(dir) = tls::cert_dir_for(opts.cert_dir.as_deref(), registry) {
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

/// Scheme, host and port: where credentials may go is decided per origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: Option<u16>,
}

impl Origin {
    pub fn of(url: &Url) -> Origin {
        Origin {
            scheme: url.scheme().to_string(),
            host: url.host_str().unwrap_or_default().to_ascii_lowercase(),
            port: url.port_or_known_default(),
        }
    }

    /// Whether its host is this machine (credentials may cross plain HTTP
    /// there: nothing leaves the machine).
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.host)
    }
}

pub(super) fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
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
        for h in ["127.0.0.1", "localhost", "[::1]", "127.1.2.3"] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["quay.io", "10.0.0.1", "localhost.evil.com", "[::2]"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn origins_are_scheme_host_and_port() {
        let o = |u: &str| Origin::of(&Url::parse(u).unwrap());
        assert_eq!(o("https://Quay.io/v2/"), o("https://quay.io:443/x"));
        assert_ne!(o("https://quay.io/"), o("http://quay.io/"));
        assert_ne!(o("https://quay.io/"), o("https://quay.io:8443/"));
        assert_ne!(o("https://quay.io/"), o("https://quay.io.evil.com/"));
        assert!(o("http://127.0.0.1:5000/").is_loopback());
        assert!(!o("http://10.1.1.1:5000/").is_loopback());
    }
}
