//! A registry that misbehaves on purpose, for the tests of what pushgate
//! refuses to believe or to wait for: a `Docker-Content-Digest` that is not the
//! digest of the bytes, a 100 MiB "manifest", an answer that never ends, one
//! that trickles, redirect loops and redirects elsewhere. It answers only the
//! manifest GET/HEAD of any tag (the first thing a push asks); everything else
//! is 404. It records every request's method, path and whether it carried an
//! `Authorization` header.
//!
//! Plain std threads and sockets: one thread accepts, one per connection.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the manifest GET is answered.
#[derive(Debug, Clone)]
pub enum Lie {
    /// A valid (empty) OCI index, with a `Docker-Content-Digest` of other bytes.
    WrongDigestHeader,
    /// `Content-Length: 100 MiB` and zeros for as long as the client reads.
    Huge,
    /// A chunked body that never ends.
    Endless,
    /// A valid index, one byte a second.
    Trickle,
    /// `307` to the same URL, forever.
    RedirectLoop,
    /// `307` to this URL (another host).
    RedirectTo(String),
    /// `401` with a Basic challenge until credentials come, then `307` to this
    /// URL (another host): the credentials must not follow.
    BasicThenRedirectTo(String),
}

/// One request the liar saw.
#[derive(Debug, Clone)]
#[expect(
    dead_code,
    reason = "method and path are read only through Debug, in failure messages, which the lint does not count"
)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorization: bool,
}

pub struct Liar {
    addr: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

/// The index the liar serves when it serves one.
pub const INDEX: &str =
    r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;

impl Liar {
    pub fn start(lie: Lie) -> Liar {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st, a) = (seen.clone(), stop.clone(), addr.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (lie, seen, stop, addr) = (lie.clone(), s.clone(), st.clone(), a.clone());
                std::thread::spawn(move || serve(conn, &lie, &seen, &stop, &addr));
            }
        });
        Liar { addr, seen, stop }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn repo(&self, name: &str) -> String {
        format!("{}/{name}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Liar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
    }
}

fn serve(conn: TcpStream, lie: &Lie, seen: &Mutex<Vec<Seen>>, stop: &AtomicBool, addr: &str) {
    let mut peek = [0u8; 1];
    if conn.peek(&mut peek).is_ok() && peek[0] == 0x16 {
        // A TLS ClientHello: answer as Go's HTTP server does, so that a client
        // trying HTTPS first falls back to plain HTTP at once.
        let mut c = &conn;
        let _ = c.write_all(
            b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
        );
        let _ = conn.shutdown(Shutdown::Both);
        return;
    }
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let mut authorization = false;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" || h == "\n" {
                break;
            }
            authorization |= h.to_ascii_lowercase().starts_with("authorization:");
        }
        let path = target.split('?').next().unwrap_or_default().to_string();
        seen.lock().unwrap().push(Seen {
            method: method.clone(),
            path: path.clone(),
            authorization,
        });
        let mut c = &conn;
        if !path.contains("/manifests/") {
            let _ = c.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            continue;
        }
        let ok = match lie {
            Lie::WrongDigestHeader => c
                .write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\nDocker-Content-Digest: sha256:{}\r\nContent-Length: {}\r\n\r\n{}",
                        "0".repeat(64),
                        INDEX.len(),
                        if method == "HEAD" { "" } else { INDEX }
                    )
                    .as_bytes(),
                )
                .is_ok(),
            Lie::Huge => {
                let _ = c.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\nContent-Length: {}\r\n\r\n",
                        100u64 << 20
                    )
                    .as_bytes(),
                );
                flood(c, stop);
                return;
            }
            Lie::Endless => {
                let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\nTransfer-Encoding: chunked\r\n\r\n");
                while !stop.load(Ordering::Relaxed) {
                    if c.write_all(b"4000\r\n").is_err()
                        || c.write_all(&[b' '; 0x4000]).is_err()
                        || c.write_all(b"\r\n").is_err()
                    {
                        return;
                    }
                }
                return;
            }
            Lie::Trickle => {
                let _ = c.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\nContent-Length: {}\r\n\r\n",
                        INDEX.len()
                    )
                    .as_bytes(),
                );
                for b in INDEX.bytes() {
                    if stop.load(Ordering::Relaxed) || c.write_all(&[b]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
                true
            }
            Lie::RedirectLoop => c
                .write_all(
                    format!(
                        "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{addr}{target}\r\nContent-Length: 0\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .is_ok(),
            Lie::BasicThenRedirectTo(_) if !authorization => c
                .write_all(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"liar\"\r\nContent-Length: 0\r\n\r\n")
                .is_ok(),
            Lie::RedirectTo(url) | Lie::BasicThenRedirectTo(url) => c
                .write_all(
                    format!(
                        "HTTP/1.1 307 Temporary Redirect\r\nLocation: {url}\r\nContent-Length: 0\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .is_ok(),
        };
        if !ok {
            return;
        }
    }
}

/// Zeros until the client stops reading.
fn flood(mut c: &TcpStream, stop: &AtomicBool) {
    let block = [0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        if c.write_all(&block).is_err() {
            return;
        }
    }
}
