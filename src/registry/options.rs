//! How to reach registries, for one run ([`Options`]), and what the run's
//! requests share ([`Clients`]): one executor per registry and identity
//! (connections and tokens reused across containers, one identity's
//! credentials never carried to another's repositories), one pace per
//! registry host (a 429 there slows every request to it), and the slots blob
//! transfers take.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::executor::Executor;
use super::observer::{Shared, Stderr};
use super::retry::{HostPace, RetryPolicy};

/// How to reach registries, for one run.
#[derive(Clone)]
pub struct Options {
    /// Verify TLS certificates (`--tls-verify`).
    pub tls_verify: bool,
    /// Talk plain HTTP (`--plain-http`): the user's explicit choice.
    pub plain_http: bool,
    /// `--cert-dir`: CAs (`*.crt`) and a client certificate (`*.cert` + `*.key`).
    pub cert_dir: Option<PathBuf>,
    pub authfile: Option<PathBuf>,
    /// Parallel uploads of one container (`--jobs`).
    pub jobs: usize,
    /// Parallel uploads over every container of the run (`release
    /// --total-jobs`); `None`: each container has its own `jobs`, and the
    /// containers under way at once bound the rest.
    pub total_jobs: Option<usize>,
    pub retry: RetryPolicy,
    /// No progress on an answer (or an upload) for this long ends the request.
    pub stall_timeout: Duration,
    /// Blobs larger than this go up in chunks of this size (`--chunk-size`).
    pub chunk_size: u64,
    /// Each request on stderr.
    pub debug: bool,
    /// Where retries, notes and `--debug` lines go.
    pub observer: Shared,
    /// Executors already made in this run, to share.
    pub clients: Clients,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("tls_verify", &self.tls_verify)
            .field("plain_http", &self.plain_http)
            .field("jobs", &self.jobs)
            .field("total_jobs", &self.total_jobs)
            .field("retry", &self.retry)
            .field("chunk_size", &self.chunk_size)
            .finish_non_exhaustive()
    }
}

/// The chunk size when none is asked for: big enough that a chunk's round
/// trip is small beside its transfer, small enough that a cut costs little.
pub const DEFAULT_CHUNK_SIZE: u64 = 64 << 20;

impl Default for Options {
    fn default() -> Options {
        Options {
            tls_verify: true,
            plain_http: false,
            cert_dir: None,
            authfile: None,
            jobs: 4,
            total_jobs: None,
            retry: RetryPolicy::default(),
            stall_timeout: Duration::from_secs(60),
            chunk_size: DEFAULT_CHUNK_SIZE,
            debug: false,
            observer: Arc::new(Stderr),
            clients: Clients::default(),
        }
    }
}

/// What one registry host's requests share for the run, whoever sends them.
#[derive(Debug, Default)]
pub struct HostState {
    /// When the next request may go (backoff, `Retry-After`).
    pub pace: HostPace,
    /// The largest request body the host took after refusing a bigger one
    /// (413); 0 while none was refused.
    pub body_limit: AtomicU64,
}

/// The executors of one run, one per registry and identity, and the state of
/// each registry host.
#[derive(Clone, Default)]
pub struct Clients {
    pub(super) pool: Arc<Mutex<HashMap<PoolKey, Arc<Executor>>>>,
    pub(super) hosts: Arc<Mutex<HashMap<String, Arc<HostState>>>>,
    /// The run's blob transfers: `--total-jobs` at a time over every container.
    uploads: Arc<OnceLock<Arc<tokio::sync::Semaphore>>>,
    /// Retries made by every executor of the run (a container's own count is
    /// the difference over its time: its sources' registries count too).
    pub(super) retries: Arc<AtomicU64>,
}

/// A registry and the user whose credentials its executor carries.
pub(super) type PoolKey = (String, Option<String>);

impl Clients {
    /// The slots blob transfers take, `total` in all for the whole run (made
    /// by the first caller): containers pushed in parallel share them. With no
    /// total there are as many as there could be, and only each container's
    /// own `--jobs` bounds its transfers.
    pub fn upload_slots(&self, total: Option<usize>) -> Arc<tokio::sync::Semaphore> {
        self.uploads
            .get_or_init(|| {
                let slots = total.map_or(tokio::sync::Semaphore::MAX_PERMITS, |n| n.max(1));
                Arc::new(tokio::sync::Semaphore::new(slots))
            })
            .clone()
    }

    /// Retries made so far in the run, on every registry.
    pub fn retries(&self) -> u64 {
        self.retries.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The state of `registry`'s host, made on first use.
    pub(super) fn host(&self, registry: &str) -> Arc<HostState> {
        self.hosts
            .lock()
            .expect("host states")
            .entry(registry.to_string())
            .or_default()
            .clone()
    }
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.pool.lock().map(|m| m.len()).unwrap_or(0);
        write!(f, "Clients({n})")
    }
}

/// Parses a size flag: bytes, or with a unit: `512k`, `16M`, `1G` (powers of
/// 1024, as `16MiB` also says), at least 1 KiB.
pub fn parse_chunk_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 16M, 512k, 1048576)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => return Err(format!("{s:?}: unknown unit {other:?} (use k, M or G)")),
    };
    let bytes = n
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if bytes < 1024 {
        return Err(format!("{s:?} is below the smallest chunk, 1024 bytes"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_parse_with_units_and_a_floor() {
        assert_eq!(parse_chunk_size("16M"), Ok(16 << 20));
        assert_eq!(parse_chunk_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_chunk_size("512k"), Ok(512 << 10));
        assert_eq!(parse_chunk_size("1G"), Ok(1 << 30));
        assert_eq!(parse_chunk_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_chunk_size("8192"), Ok(8192));
        assert!(parse_chunk_size("100").is_err(), "below the floor");
        assert!(parse_chunk_size("lots").is_err());
        assert!(parse_chunk_size("16T").is_err());
        assert!(parse_chunk_size("99999999999999999999G").is_err());
    }

    #[test]
    fn upload_slots_are_the_runs_total_shared_by_clones_or_unbounded() {
        let clients = Clients::default();
        let first = clients.upload_slots(Some(3));
        assert_eq!(first.available_permits(), 3);
        // A clone (another container of the run) gets the same slots, whatever
        // it asks: the first caller made them.
        let again = clients.clone().upload_slots(Some(8));
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(
            Clients::default().upload_slots(Some(0)).available_permits(),
            1
        );
        assert_eq!(
            Clients::default().upload_slots(None).available_permits(),
            tokio::sync::Semaphore::MAX_PERMITS
        );
    }
}

/// Fuzz target (see `crate::fuzz`): a size that parses is at least 1 KiB and
/// reads back the same written in bytes; a refusal quotes the flag's value.
#[cfg(test)]
mod fuzz {
    use super::parse_chunk_size;
    use crate::fuzz::{Outcome, ensure, run, text};

    #[test]
    fn fuzz_chunk_sizes() {
        let dict: &[&[u8]] = &[b"k", b"M", b"G", b"KiB", b"mb", b"T", b"b", b"17179869184"];
        run("chunk_size", dict, &|input| {
            let s = text(input);
            match parse_chunk_size(&s) {
                Ok(n) => {
                    ensure(n >= 1024, || format!("{s:?} gives {n} bytes"))?;
                    ensure(parse_chunk_size(&n.to_string()) == Ok(n), || {
                        format!("{s:?} gives {n}, which does not read back")
                    })?;
                    Ok(Outcome::Accepted)
                }
                Err(e) => {
                    ensure(e.contains(&format!("{s:?}")), || {
                        format!("the error for {s:?} does not quote it: {e}")
                    })?;
                    Ok(Outcome::Refused)
                }
            }
        });
    }
}
