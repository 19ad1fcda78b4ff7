//! Servers that try to get a registry's credentials where they do not belong
//! (issue 27), over plain HTTP or over TLS with the test CA ([`super::tls`]):
//!
//! * a registry that wants Basic credentials and then sends pushgate to another
//!   origin: its upload `Location` ([`Role::UploadTo`]) or a redirect of its
//!   manifest reads ([`Role::RedirectReadsTo`]);
//! * that other origin, the attacker's ([`Role::Attacker`]): it answers
//!   everything with `401` and a Bearer challenge whose realm is its own
//!   `/token`, hoping to be handed the password for a token.
//!
//! * a registry whose token realm answers what it likes ([`Role::TokenAnswer`]),
//!   `expires_in` = u64::MAX and beyond included.
//!
//! Each records every request: method, path, and whether it carried an
//! `Authorization` header. Plain std threads and sockets (rustls's blocking
//! API for TLS): one thread accepts, one per connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::tls::{TestPki, pem_to_der};

/// What the server plays.
#[derive(Debug, Clone)]
pub enum Role {
    /// A registry wanting Basic credentials: reads are 404 (nothing is there
    /// yet), and an upload POST is answered `202` with `Location: URL`.
    UploadTo(String),
    /// A registry wanting Basic credentials whose manifest reads are
    /// redirected (`307`) to `URL`.
    RedirectReadsTo(String),
    /// A registry with token auth whose realm is its own `/token`, answered
    /// with this body (any `expires_in` it likes); with a token, reads are
    /// 404 and writes refused.
    TokenAnswer(String),
    /// Another origin: `401` with `Bearer realm="<own origin>/token"` to every
    /// request but the realm's, which hands out a token to anyone.
    Attacker,
}

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorization: bool,
}

pub struct Hostile {
    addr: String,
    scheme: &'static str,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Hostile {
    /// Starts `role` on a free loopback port: over TLS with the server
    /// certificate of `pki` when given, else plain HTTP.
    pub fn start(role: Role, pki: Option<&TestPki>) -> Hostile {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let addr = listener.local_addr().unwrap().to_string();
        let tls = pki.map(server_config);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let origin = format!("{scheme}://{addr}");
        let (s, st) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (role, seen, tls, origin) =
                    (role.clone(), s.clone(), tls.clone(), origin.clone());
                std::thread::spawn(move || match tls {
                    Some(config) => {
                        let Ok(session) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        serve(
                            rustls::StreamOwned::new(session, conn),
                            &role,
                            &seen,
                            &origin,
                        );
                    }
                    None if is_tls_hello(&conn) => refuse_tls(conn),
                    None => serve(conn, &role, &seen, &origin),
                });
            }
        });
        Hostile {
            addr,
            scheme,
            seen,
            stop,
        }
    }

    /// "127.0.0.1:PORT"
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn repo(&self, name: &str) -> String {
        format!("{}/{name}", self.addr)
    }

    /// `scheme://127.0.0.1:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
    }
}

/// Whether a plain-HTTP connection opens with a TLS ClientHello.
fn is_tls_hello(conn: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    conn.peek(&mut first).is_ok() && first[0] == 0x16
}

/// Answers a ClientHello as Go's HTTP server does, so that a client trying
/// HTTPS first (`--tls-verify=false`) falls back to plain HTTP at once.
fn refuse_tls(mut conn: TcpStream) {
    let _ = conn.write_all(
        b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
    );
    let _ = conn.shutdown(std::net::Shutdown::Both);
}

/// A TLS server configuration with the test PKI's server certificate (for
/// 127.0.0.1 and localhost).
fn server_config(pki: &TestPki) -> Arc<rustls::ServerConfig> {
    let pem = |p: &std::path::Path| std::fs::read_to_string(p).expect("read PEM");
    let cert = CertificateDer::from(pem_to_der(&pem(&pki.server.cert), "CERTIFICATE"));
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pem_to_der(
        &pem(&pki.server.key),
        "PRIVATE KEY",
    )));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("the test server certificate loads");
    Arc::new(config)
}

/// Answers the requests of one connection until the client closes it.
fn serve<S: Read + Write>(stream: S, role: &Role, seen: &Mutex<Vec<Seen>>, origin: &str) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let mut authorization = false;
        let mut length = 0u64;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" || h == "\n" {
                break;
            }
            let lower = h.to_ascii_lowercase();
            authorization |= lower.starts_with("authorization:");
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        // The body is read (and dropped) so the next request starts where it should.
        if std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink()).unwrap_or(0)
            != length
        {
            return;
        }
        let path = target.split('?').next().unwrap_or_default().to_string();
        seen.lock().unwrap().push(Seen {
            method: method.clone(),
            path: path.clone(),
            authorization,
        });
        let answer = answer(role, &method, &path, authorization, origin);
        let out = reader.get_mut();
        if out
            .write_all(answer.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            return;
        }
    }
}

/// The whole answer to one request.
fn answer(role: &Role, method: &str, path: &str, authorization: bool, origin: &str) -> String {
    let empty = |status: &str, headers: &str| {
        format!("HTTP/1.1 {status}\r\n{headers}Content-Length: 0\r\n\r\n")
    };
    let error = |status: &str, code: &str| {
        let body = format!(r#"{{"errors":[{{"code":"{code}","message":"not here"}}]}}"#);
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
            body.len(),
            if method == "HEAD" { "" } else { &body }
        )
    };
    match role {
        Role::Attacker if path == "/token" => {
            let body = r#"{"token":"attacker-token"}"#;
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        }
        Role::Attacker => empty(
            "401 Unauthorized",
            &format!("WWW-Authenticate: Bearer realm=\"{origin}/token\",service=\"attacker\"\r\n"),
        ),
        Role::TokenAnswer(body) if path == "/token" => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
        Role::TokenAnswer(_) if !authorization => empty(
            "401 Unauthorized",
            &format!("WWW-Authenticate: Bearer realm=\"{origin}/token\",service=\"hostile\"\r\n"),
        ),
        _ if !authorization => empty(
            "401 Unauthorized",
            "WWW-Authenticate: Basic realm=\"hostile\"\r\n",
        ),
        _ if path == "/v2/" => empty("200 OK", ""),
        Role::RedirectReadsTo(url) if path.contains("/manifests/") => {
            empty("307 Temporary Redirect", &format!("Location: {url}\r\n"))
        }
        Role::UploadTo(url) if method == "POST" && path.ends_with("/blobs/uploads/") => empty(
            "202 Accepted",
            &format!("Location: {url}\r\nDocker-Upload-UUID: 1\r\nRange: 0-0\r\n"),
        ),
        _ if path.contains("/manifests/") => error("404 Not Found", "MANIFEST_UNKNOWN"),
        _ if path.contains("/blobs/") => error("404 Not Found", "BLOB_UNKNOWN"),
        _ => error("404 Not Found", "NAME_UNKNOWN"),
    }
}
