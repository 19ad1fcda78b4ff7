//! What went wrong talking to a registry, as data the transport and the
//! operations branch on (retry it? is the thing absent? was the answer lost after
//! a write?) and that [`super::explain`] turns into a message for a person.

use std::time::Duration;

use serde::Deserialize;

/// The largest error body read: enough for any registry's JSON errors, and a
/// hostile answer cannot make pushgate hold more.
pub const MAX_ERROR_BODY: usize = 64 * 1024;

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered with an error status.
    #[error("HTTP {status}{}", codes_suffix(codes, message))]
    Status {
        status: u16,
        /// The distribution spec's error codes (`MANIFEST_UNKNOWN`, `DENIED`, ...).
        codes: Vec<String>,
        /// The first error's message, if any.
        message: String,
        /// `Retry-After`, when the registry gave one.
        retry_after: Option<Duration>,
    },
    /// No answer: the connection could not be made, was reset, or timed out.
    #[error("{0}")]
    Connection(String),
    /// The certificate of the registry is not trusted.
    #[error("{0}")]
    Certificate(String),
    /// The token server refused the credentials or gave no usable token.
    #[error("token server {realm}: {reason}")]
    Token { realm: String, reason: String },
    /// An answer pushgate refuses: too large, lying about its digest, malformed.
    #[error("{0}")]
    Refused(String),
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

    /// Whether the request may succeed if sent again: no answer at all, or a
    /// status that says "not now" (408, 429, 500, 502, 503, 504). The registry's
    /// own refusals (DENIED, NAME_UNKNOWN, MANIFEST_INVALID, ...) are final.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Connection(_) => true,
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
pub fn parse_codes(body: &[u8]) -> (Vec<String>, String) {
    match serde_json::from_slice::<Envelope>(body) {
        Ok(e) => {
            let message = e
                .errors
                .first()
                .map(|i| i.message.chars().take(300).collect())
                .unwrap_or_default();
            (e.errors.into_iter().map(|i| i.code).collect(), message)
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

    #[test]
    fn only_transient_failures_are_retried() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(status(s, &[]).is_transient(), "{s}");
        }
        for s in [400, 401, 403, 404, 405, 409, 501] {
            assert!(!status(s, &[]).is_transient(), "{s}");
        }
        assert!(RegistryError::Connection("reset".into()).is_transient());
        assert!(!RegistryError::Refused("too big".into()).is_transient());
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
    fn error_bodies_give_codes_and_the_first_message() {
        let (codes, msg) =
            parse_codes(br#"{"errors":[{"code":"DENIED","message":"no","detail":{}}]}"#);
        assert_eq!(codes, ["DENIED"]);
        assert_eq!(msg, "no");
        assert_eq!(parse_codes(br#"{"errors":[]}"#), (vec![], String::new()));
        assert_eq!(parse_codes(b"<html>"), (vec![], String::new()));
    }
}
