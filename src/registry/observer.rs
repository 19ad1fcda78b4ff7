//! What the registry client tells its caller while it works: each retry (one
//! line a person reads), each request under `--debug`, and notes. The caller
//! passes an [`Observer`] in [`super::Options`]; the client never prints on
//! its own, so a caller drawing progress lines can put these above them, and a
//! test can collect them.

use std::sync::Arc;
use std::time::Duration;

use super::error::RegistryError;
use super::request::Op;

/// Receives what the client has to say. Implementations must not block for
/// long: they are called on the request path.
pub trait Observer: Send + Sync {
    /// A line for a person (a retry, a fallback, a note), already worded.
    fn line(&self, line: &str);
}

/// Lines go to stderr as they come.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stderr;

impl Observer for Stderr {
    fn line(&self, line: &str) {
        use std::io::Write as _;
        // A closed stderr is not worth failing a push for.
        let _ = writeln!(std::io::stderr(), "{line}");
    }
}

/// The observer of a run: shared by every executor of it.
pub type Shared = Arc<dyn Observer>;

/// The line for a retry: what failed, why, which retry of how many, and the
/// wait before it.
pub fn retry_line(
    registry: &str,
    op: &Op,
    err: &RegistryError,
    retry: u32,
    of: u32,
    wait: Duration,
) -> String {
    format!(
        "pushgate: registry {registry}: {op} failed ({err}); retry {retry} of {of} in {:.1}s",
        wait.as_secs_f64()
    )
}

/// The `--debug` line of one request: method, URL, what came back, time,
/// attempt. The URL carries no credential (they go in headers, never in
/// queries); the upload state in a query is the registry's own, not a secret.
pub fn trace_line(method: &str, url: &str, status: &str, millis: u128, attempt: u32) -> String {
    format!("pushgate: debug: {method} {url} -> {status} ({millis} ms, attempt {attempt})")
}
