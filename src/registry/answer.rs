//! What an answer says, read bounded: its body (never more than the caller
//! accepts), the error an error status stands for (with the registry's codes,
//! and a body cut short told apart from a refusal), its digest header.

use std::time::SystemTime;

use futures_util::StreamExt;
use reqwest::Response;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::error::{MAX_ERROR_BODY, RegistryError, parse_codes};
use super::retry::parse_retry_after;

/// `Docker-Content-Digest`, when the answer has one.
pub(super) fn header_digest(headers: &HeaderMap) -> Option<String> {
    headers
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The error an answer with an error status stands for (its body read, bounded).
/// A refusal cut off in its body is a lost answer (transient, retried), not a
/// refusal without a reason: its codes, which say what it is (a
/// `MANIFEST_BLOB_UNKNOWN` is healed, a `DENIED` explained), are lost with it.
pub(super) async fn error_from(resp: Response) -> RegistryError {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let stands = |codes, message| RegistryError::Status {
        status,
        codes,
        message,
        retry_after,
    };
    match read_bounded(resp, MAX_ERROR_BODY).await {
        Ok(body) => {
            let (codes, message) = parse_codes(&body);
            stands(codes, message)
        }
        // A transient status stands whole without its body.
        Err(cut) if cut.is_transient() && !stands(Vec::new(), String::new()).is_transient() => cut,
        Err(_) => stands(Vec::new(), String::new()),
    }
}

/// Reads a body of at most `max` bytes; a longer one is an error (never read
/// to its end: a hostile answer cannot make pushgate hold more than `max`).
pub(crate) async fn read_bounded(resp: Response, max: usize) -> Result<Vec<u8>, RegistryError> {
    if let Some(n) = resp.content_length().filter(|n| *n > max as u64) {
        return Err(RegistryError::Invalid(format!(
            "the answer is {n} bytes, more than the {max} accepted"
        )));
    }
    let mut out = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| RegistryError::from_reqwest(&e))?;
        if out.len() + chunk.len() > max {
            return Err(RegistryError::Invalid(format!(
                "the answer is more than the {max} bytes accepted"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
