//! What went wrong talking to a registry, as data: the executor branches on it
//! (retry it? was the answer lost after a write? is the thing absent?), the
//! operations branch on it, and [`super::explain`] turns it into a message for
//! a person. Every variant is told apart by what happened (a status, the
//! registry's error codes, the kind of a connection or TLS failure taken from
//! the error's type), never by the text of a message.

use std::time::Duration;

use serde::Deserialize;

/// The largest error body read: enough for any registry's JSON errors, and a
/// hostile answer cannot make pushgate hold more.
pub const MAX_ERROR_BODY: usize = 64 * 1024;

/// A failed request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered with an error status.
    #[error("HTTP {status}{}", codes_suffix(codes, message))]
    Status {
        status: u16,
        /// The distribution spec's error codes (`MANIFEST_UNKNOWN`, `DENIED`, ...).
        codes: Vec<String>,
        /// The first error's message, if any (control characters removed).
        message: String,
        /// `Retry-After`, when the registry gave one.
        retry_after: Option<Duration>,
    },
    /// No answer: the connection could not be made, was cut, or went quiet.
    #[error("{detail}")]
    Connection { kind: ConnectKind, detail: String },
    /// TLS could not be set up with the registry.
    #[error("{detail}")]
    Tls { kind: TlsKind, detail: String },
    /// The token server refused the credentials or gave no usable token.
    #[error("token server {realm}: {reason}")]
    Token { realm: String, reason: String },
    /// The registry (or a proxy in front of it) refused a request body as too
    /// large (413) even at the smallest chunk pushgate sends.
    #[error(
        "HTTP 413: a request body of {refused} bytes was refused, and chunks are not made smaller than {floor} bytes"
    )]
    TooLarge { refused: u64, floor: u64 },
    /// An answer pushgate refuses: too large, lying about its digest, malformed,
    /// pointing somewhere it may not go.
    #[error("{0}")]
    Invalid(String),
}

/// Why a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectKind {
    /// Nobody listens there (connection refused).
    Refused,
    /// The name does not resolve.
    UnknownHost,
    /// The connection was cut (reset, closed mid-answer, broken pipe).
    Cut,
    /// No progress within the stall timeout.
    Stalled,
    /// Anything else on the way (an I/O error of the body source included).
    Other,
}

/// Why TLS failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsKind {
    /// The registry's certificate is not trusted (unknown CA, wrong name,
    /// expired).
    Untrusted,
    /// The other end does not speak TLS (a plain-HTTP registry).
    NotTls,
    /// Another handshake failure.
    Handshake,
}

fn codes_suffix(codes: &[String], message: &str) -> String {
    match (codes.is_empty(), message.is_empty()) {
        (true, _) => String::new(),
        (false, true) => format!(" ({})", codes.join(", ")),
        (false, false) => format!(" ({}: {message})", codes.join(", ")),
    }
}

impl RegistryError {
    /// The HTTP status, if the registry answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn has_code(&self, code: &str) -> bool {
        matches!(self, RegistryError::Status { codes, .. } if codes.iter().any(|c| c == code))
    }

    /// `Retry-After`, when the registry said one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RegistryError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether the request may succeed if sent again: no answer for a reason
    /// that can pass (a cut, a stall, a refused connection while a registry
    /// restarts), or a status that says "not now" (408, 429, 500, 502, 503,
    /// 504). The registry's own refusals (DENIED, NAME_UNKNOWN, ...), a name
    /// that does not resolve and TLS failures are final: sending again would
    /// meet them again.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Connection { kind, .. } => !matches!(kind, ConnectKind::UnknownHost),
            RegistryError::Status { status, .. } => {
                matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
            }
            _ => false,
        }
    }

    /// Whether it says the thing asked for does not exist: a 404, or only
    /// "unknown" codes. An error body with an empty list of errors says nothing.
    pub fn is_not_found(&self) -> bool {
        match self {
            RegistryError::Status { status: 404, .. } => true,
            RegistryError::Status { codes, .. } => {
                !codes.is_empty()
                    && codes.iter().all(|c| {
                        matches!(
                            c.as_str(),
                            "MANIFEST_UNKNOWN" | "BLOB_UNKNOWN" | "NAME_UNKNOWN" | "NOT_FOUND"
                        )
                    })
            }
            _ => false,
        }
    }

    /// A request that got no answer, classified by the types in its error's
    /// chain (rustls's, std's I/O kinds, reqwest's own flags).
    pub fn from_reqwest(e: &reqwest::Error) -> RegistryError {
        let detail = chain(e);
        if let Some(kind) = tls_kind(e) {
            return RegistryError::Tls { kind, detail };
        }
        if e.is_timeout() {
            return RegistryError::Connection {
                kind: ConnectKind::Stalled,
                detail: format!("no progress within the stall timeout ({detail})"),
            };
        }
        let kind = io_kind(e).unwrap_or(ConnectKind::Other);
        RegistryError::Connection { kind, detail }
    }
}

/// The errors of `e`'s source chain, `e` first. An `io::Error` wrapping
/// another error is followed into it (its `source()` skips the wrapped error
/// itself and goes to that error's source).
fn sources<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| match e.downcast_ref::<std::io::Error>() {
        Some(io) => io
            .get_ref()
            .map(|inner| inner as &(dyn std::error::Error + 'static)),
        None => e.source(),
    })
}

/// A rustls error anywhere in the chain (tokio-rustls wraps it in an
/// `io::Error`), as a kind of TLS failure.
fn tls_kind(e: &reqwest::Error) -> Option<TlsKind> {
    sources(e).find_map(|s| {
        Some(match s.downcast_ref::<rustls::Error>()? {
            rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::UnsupportedNameType => TlsKind::Untrusted,
            // The first bytes of an HTTP answer read as a TLS record of an
            // unknown type (or one too long): the server speaks plain HTTP.
            rustls::Error::InvalidMessage(
                rustls::InvalidMessage::InvalidContentType
                | rustls::InvalidMessage::MessageTooLarge
                | rustls::InvalidMessage::InvalidEmptyPayload,
            ) => TlsKind::NotTls,
            _ => TlsKind::Handshake,
        })
    })
}

/// The kind of the first I/O error in the chain, or of hyper's own word for a
/// connection closed early.
fn io_kind(e: &reqwest::Error) -> Option<ConnectKind> {
    use std::io::ErrorKind as K;
    for s in sources(e) {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(match io.kind() {
                K::ConnectionRefused => ConnectKind::Refused,
                K::ConnectionReset
                | K::ConnectionAborted
                | K::BrokenPipe
                | K::UnexpectedEof
                | K::NotConnected => ConnectKind::Cut,
                K::TimedOut => ConnectKind::Stalled,
                // A connect error with no errno behind it and none of the
                // kinds a socket gives is the resolver's: getaddrinfo's failures
                // reach hyper-util as std's uncategorised I/O error, under a
                // connect error type of its own that is private to it.
                _ if e.is_connect() && io.raw_os_error().is_none() => ConnectKind::UnknownHost,
                _ => ConnectKind::Other,
            });
        }
        if let Some(h) = s.downcast_ref::<hyper::Error>()
            && (h.is_incomplete_message() || h.is_canceled() || h.is_closed())
        {
            return Some(ConnectKind::Cut);
        }
    }
    None
}

/// `e` and its sources, joined, for a person.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    for s in sources(e) {
        let text = s.to_string();
        // reqwest and hyper repeat their source's text; say each thing once.
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize)]
struct ErrorItem {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The error codes and first message of an error body (the distribution spec's
/// `{"errors": [{"code", "message", "detail"}]}`); nothing for another body.
/// What a registry says is made inert: control characters are dropped, the
/// message and every code are bounded.
pub fn parse_codes(body: &[u8]) -> (Vec<String>, String) {
    let inert = |s: &str, max: usize| -> String {
        s.chars().filter(|c| !c.is_control()).take(max).collect()
    };
    match serde_json::from_slice::<Envelope>(body) {
        Ok(e) => {
            let message = e
                .errors
                .first()
                .map(|i| inert(&i.message, 300))
                .unwrap_or_default();
            let codes = e.errors.iter().take(16).map(|i| inert(&i.code, 64));
            (codes.collect(), message)
        }
        Err(_) => (Vec::new(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, codes: &[&str]) -> RegistryError {
        RegistryError::Status {
            status,
            codes: codes.iter().map(|c| c.to_string()).collect(),
            message: String::new(),
            retry_after: None,
        }
    }

    fn connection(kind: ConnectKind) -> RegistryError {
        RegistryError::Connection {
            kind,
            detail: String::new(),
        }
    }

    #[test]
    fn only_transient_failures_are_retried() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(status(s, &[]).is_transient(), "{s}");
        }
        for s in [400, 401, 403, 404, 405, 409, 413, 501] {
            assert!(!status(s, &[]).is_transient(), "{s}");
        }
        for k in [
            ConnectKind::Refused,
            ConnectKind::Cut,
            ConnectKind::Stalled,
            ConnectKind::Other,
        ] {
            assert!(connection(k).is_transient(), "{k:?}");
        }
        assert!(!connection(ConnectKind::UnknownHost).is_transient());
        for kind in [TlsKind::Untrusted, TlsKind::NotTls, TlsKind::Handshake] {
            let e = RegistryError::Tls {
                kind,
                detail: String::new(),
            };
            assert!(!e.is_transient(), "{kind:?}");
        }
        assert!(!RegistryError::Invalid("too big".into()).is_transient());
    }

    #[test]
    fn not_found_needs_a_404_or_only_unknown_codes() {
        assert!(status(404, &[]).is_not_found());
        assert!(status(400, &["MANIFEST_UNKNOWN"]).is_not_found());
        assert!(!status(400, &[]).is_not_found(), "an empty errors list");
        assert!(!status(401, &["MANIFEST_UNKNOWN", "DENIED"]).is_not_found());
        assert!(!status(500, &["UNKNOWN"]).is_not_found());
    }

    #[test]
    fn error_bodies_give_codes_and_the_first_message_made_inert() {
        let (codes, msg) =
            parse_codes(br#"{"errors":[{"code":"DENIED","message":"no","detail":{}}]}"#);
        assert_eq!(codes, ["DENIED"]);
        assert_eq!(msg, "no");
        assert_eq!(parse_codes(br#"{"errors":[]}"#), (vec![], String::new()));
        assert_eq!(parse_codes(b"<html>"), (vec![], String::new()));
        let (codes, msg) = parse_codes(
            "{\"errors\":[{\"code\":\"X\\u001b[31m\",\"message\":\"a\\nb\\u0007\"}]}".as_bytes(),
        );
        assert_eq!(codes, ["X[31m"]);
        assert_eq!(msg, "ab");
    }
}
