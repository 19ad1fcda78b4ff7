//! A fault-injecting, latency-adding HTTP/1.1 proxy of our own, placed in front of the
//! real `docker-registry` so tests can reproduce what registries and networks do in the
//! field, deterministically.
//!
//! A client configured with [`Proxy::addr`] instead of the registry's address talks to the
//! registry through the proxy. Each request is forwarded as it came (request line and
//! headers byte for byte, `Host` included); bodies are streamed both ways, never held
//! whole (blob uploads can be many MB), whether framed by `Content-Length` or chunked;
//! connections are kept alive, one upstream connection per client connection. The one
//! rewrite is `Location`: an absolute URL naming the registry's own authority is turned
//! into the proxy's, so a client following it keeps going through the proxy (the registry
//! builds its URLs from `Host`, which names the proxy anyway; the rewrite covers clients
//! that send something else). `WWW-Authenticate` is left alone.
//!
//! What each [`Action`] models:
//! - [`Action::Status`] 503 / 429 with `Retry-After` (seconds or an HTTP-date), answered
//!   by the proxy without forwarding: quay.io and other registries behind load balancers
//!   shed load that way; a well-behaved client waits and retries.
//! - [`Action::ResetBeforeForward`]: the connection dies before the registry saw the
//!   request (a load balancer dropping it, a NAT timeout). Retrying is always safe.
//! - [`Action::ResetAfterUpstream`]: the registry did the work (the blob or the manifest
//!   is there) but the answer is lost. The client cannot tell this from the previous one,
//!   so its retry must cope with the write having happened (idempotence).
//! - [`Action::CutAnswer`]: the answer starts and stops midway (a proxy timing out, a
//!   connection cut while a blob or a manifest is being read).
//! - [`Action::Stall`]: the registry answered but nothing reaches the client for a while
//!   or ever (a hung connection behind a load balancer): only the client's own timeouts
//!   get it out.
//! - [`Action::Delay`] and [`Faults::latency`]: latency per request or on every request
//!   (e.g. 40 ms, a transatlantic round trip), to see what sequential round trips cost.
//!   It is one wait per request, before forwarding: a round trip, not a slower link
//!   (bodies are not delayed; that is [`Action::Trickle`] and [`Faults::bandwidth`]).
//! - [`Action::Trickle`]: a slow link for response bodies.
//! - [`Faults::bandwidth`]: a link of limited capacity under every request and response
//!   body, per direction: each connection at most `per_connection` bytes a second (a
//!   long-haul TCP flow, whose window and round trip cap it), all of them together at
//!   most `total` (the worker's uplink, and its downlink). With [`Faults::latency`], a
//!   WAN: a push's throughput is then set by the link and how many connections share it,
//!   not by the registry.
//!
//! Which request gets which fault is decided by a [`Decider`] from the request sequence
//! alone: rules ("the 2nd PUT whose path contains /manifests/") and a seeded random mix
//! (with probability p, an action picked by a splitmix64 PRNG seeded by the seed and the
//! request's index), so the same seed and the same request sequence give the same faults.
//! With concurrent connections the order in which requests arrive is up to the client;
//! [`ProxyEvent::seq`] says which index each got.
//!
//! [`Proxy::log`] records what was done to each request: the upstream status if it was
//! forwarded and the fault applied. An event is recorded before anything of the final
//! answer reaches the client (only a relayed "100 Continue" may precede it), so once a
//! client has its answer (or its error), the event is there.
//!
//! A [tripwire](Proxy::trip_on) stops one chosen request (the nth from now) and says so
//! on a channel: held before it reaches the registry, held after the registry answered it
//! (the answer never relayed), or let through. A test SIGKILLs its client then, so the
//! kill lands at a known point of the request sequence, not after a guessed delay; or
//! it does something in between and [releases](Proxy::release_held) the request, for an
//! interleaving of two clients that does not depend on timing.
//! [`Proxy::in_flight`] counts the requests being served, so that a test can wait, after
//! a kill, for what the dead client had sent to be finished with before it looks.
//!
//! Not supported, because no test needs it: TLS (a TLS ClientHello gets the same instant
//! 400 the registry gives, so HTTPS-first clients fall back to HTTP at once), HTTP/2,
//! `CONNECT` and absolute-form targets (the proxy is the client's registry, not its HTTP
//! proxy), protocol upgrades.
//!
//! ```ignore
//! let registry = Registry::start();
//! let faults = Faults::none()
//!     .latency(Duration::from_millis(40))
//!     .rule(Rule::nth(3, "PUT", "/blobs/uploads/", Action::ResetAfterUpstream))
//!     .random(7, 0.1, vec![Action::status_retry_after(503, 1), Action::status(429)]);
//! let proxy = Proxy::start(registry.addr(), faults);
//! // ... push to proxy.repo("fcos"), as to a registry ...
//! let lost = proxy.log().into_iter().find(|e| e.fault == Some(Action::ResetAfterUpstream));
//! assert_eq!(lost.unwrap().upstream_status, Some(201), "the 3rd blob PUT was done, its answer lost");
//! ```
//!
//! The proxy runs on its own thread with its own tokio runtime (tests are synchronous) and
//! stops, dropping every connection, when the [`Proxy`] is dropped.

use std::net::{Ipv4Addr, TcpListener as StdTcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

mod answer;
mod exchange;
mod faults;
mod http;

pub use answer::http_date;
pub use faults::{Action, Decider, Faults, RetryAfter, Rule};
pub use http::rewrite_location;

use answer::*;
use exchange::*;
use http::*;

/// Longest request or response head (request line or status line plus headers) accepted.
const MAX_HEAD: usize = 64 * 1024;
/// How often a trickled body gets its next piece.
const TRICKLE_TICK: Duration = Duration::from_millis(50);
/// How far a bandwidth-limited flow may fall behind its schedule and catch up at once:
/// the timer wakes a sender late (tokio's ticks are 1 ms), and without this credit
/// every late wake-up would be lost, slowing the flow below its limit.
const PACE_CREDIT: Duration = Duration::from_millis(10);

// ---------------------------------------------------------------------------------------
// The record
// ---------------------------------------------------------------------------------------

/// What the proxy did with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyEvent {
    /// The request's index in arrival order (0-based), as the [`Decider`] saw it.
    pub seq: u64,
    pub method: String,
    /// Path and query, as requested.
    pub target: String,
    /// The registry's status, when the request was forwarded and answered.
    pub upstream_status: Option<u16>,
    /// The fault applied, if any ([`Faults::latency`] is not one).
    pub fault: Option<Action>,
    /// What went wrong in the proxy itself (registry unreachable, ...): answered 502.
    pub error: Option<String>,
}

impl ProxyEvent {
    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------
// The proxy
// ---------------------------------------------------------------------------------------

/// A running proxy; dropping it stops it and drops every connection.
pub struct Proxy {
    addr: String,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// What every connection of a proxy shares.
struct Shared {
    /// The registry's "host:port".
    upstream: String,
    /// The proxy's own "host:port".
    authority: String,
    decider: Mutex<Decider>,
    log: Mutex<Vec<ProxyEvent>>,
    connections: AtomicU64,
    /// Requests read and not yet answered nor held by a tripwire.
    in_flight: AtomicU64,
    /// Request heads that could not be parsed (answered 400, not in the log).
    malformed: AtomicU64,
    /// The armed tripwire, if any ([`Proxy::trip_on`]).
    tripwire: Mutex<Option<Tripwire>>,
    /// How many times [`Proxy::release_held`] was called: a request held before the
    /// count moved goes on.
    released: watch::Sender<u64>,
    /// Each connection's own limit, per direction ([`Bandwidth::per_connection`]).
    per_connection: Option<u64>,
    /// The limits all connections share ([`Bandwidth::total`]).
    total: Directions,
}

/// A pacer per direction, `None` when that link is not limited.
#[derive(Default)]
struct Directions {
    /// Request bodies, client to registry.
    up: Option<Pacer>,
    /// Response bodies, registry to client.
    down: Option<Pacer>,
}

impl Directions {
    fn new(rate: Option<u64>) -> Directions {
        Directions {
            up: rate.map(Pacer::new),
            down: rate.map(Pacer::new),
        }
    }
}

impl Proxy {
    /// A proxy on 127.0.0.1:<free port> forwarding to `upstream` ("host:port").
    pub fn start(upstream: &str, faults: Faults) -> Proxy {
        // Bound here and kept: no window in which another process could take the port.
        let listener = StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind proxy port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("proxy addr").to_string();
        let bandwidth = faults.bandwidth;
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            authority: addr.clone(),
            decider: Mutex::new(Decider::new(faults)),
            log: Mutex::new(Vec::new()),
            connections: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            tripwire: Mutex::new(None),
            released: watch::Sender::new(0),
            per_connection: bandwidth.per_connection,
            total: Directions::new(bandwidth.total),
        });
        let (shutdown, stop) = oneshot::channel();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("proxy-{addr}"))
            .spawn(move || run(listener, thread_shared, stop))
            .expect("spawn proxy thread");
        Proxy {
            addr,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// "127.0.0.1:PORT"
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// "127.0.0.1:PORT/name", a repository reference through this proxy.
    pub fn repo(&self, name: &str) -> String {
        format!("{}/{}", self.addr, name)
    }

    /// "http://127.0.0.1:PORT" followed by `path` (which should start with '/').
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// What was done so far, by [`ProxyEvent::seq`].
    pub fn log(&self) -> Vec<ProxyEvent> {
        let mut events = self.shared.log.lock().unwrap().clone();
        events.sort_by_key(|e| e.seq);
        events
    }

    /// How many client connections were accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Arms a tripwire on the `n`th request (1-based) the proxy reads from now on whose
    /// method is `method` ("*" for any) and whose path and query contain
    /// `path_contains` ("" for any), as a [`Rule`] matches, replacing one armed before.
    /// When that request comes, the proxy does what `trip` says and sends what it
    /// caught on the returned channel. A held request stays held until
    /// [`Proxy::release_held`], or until the proxy is dropped (its client then
    /// meant to be killed meanwhile). The channel is
    /// closed without a message when the proxy is dropped first, or when the request
    /// is one the registry cannot answer ([`Trip::AfterUpstream`] on a request the
    /// proxy failed to forward).
    pub fn trip_on(
        &self,
        n: u64,
        method: &str,
        path_contains: &str,
        trip: Trip,
    ) -> mpsc::Receiver<Caught> {
        assert!(n >= 1, "requests count from 1");
        let (tell, told) = mpsc::channel();
        *self.shared.tripwire.lock().unwrap() = Some(Tripwire {
            left: n,
            matching: Rule::every(method, path_contains, Action::ResetBeforeForward),
            trip,
            tell,
        });
        told
    }

    /// Lets every request a tripwire holds now go on as if it had not been held: one
    /// [`Trip::BeforeForward`] is forwarded, one [`Trip::AfterUpstream`] has its answer
    /// relayed. Requests held later are held until the next call. For an interleaving:
    /// hold a client's request, do something in between, release it.
    pub fn release_held(&self) {
        self.shared.released.send_modify(|n| *n += 1);
    }

    /// Request heads the proxy could not parse, and answered with a bare 400 (they are
    /// not in [`Proxy::log`]): a client, or the proxy, out of step with the framing.
    pub fn malformed(&self) -> u64 {
        self.shared.malformed.load(Ordering::SeqCst)
    }

    /// Requests read from clients and not finished with yet: neither answered (or
    /// failed) nor held by a tripwire.
    pub fn in_flight(&self) -> u64 {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// Waits until no request is in flight ([`Proxy::in_flight`]), at most `timeout`;
    /// whether that happened. After a client was killed, what it had sent is then done
    /// with: the registry finished, or will never see, each of its requests.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.in_flight() == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Where a tripwire stops its request ([`Proxy::trip_on`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trip {
    /// Held as soon as its head is read: the registry never sees it.
    BeforeForward,
    /// Forwarded, and held once the registry answered: the registry did the work, the
    /// client never gets the answer. A request the proxy answers itself (a
    /// [`Action::Status`] or [`Action::ResetBeforeForward`] fault) is held before
    /// forwarding instead: it never reaches the registry anyway.
    AfterUpstream,
    /// Not held: it goes on as if there were no tripwire, which only says it came.
    Pass,
}

/// An armed tripwire: `left` more requests `matching` to its own.
struct Tripwire {
    left: u64,
    /// The requests it counts (its action is not used).
    matching: Rule,
    trip: Trip,
    tell: mpsc::Sender<Caught>,
}

/// The request a tripwire caught ([`Proxy::trip_on`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caught {
    /// Its [`ProxyEvent::seq`] (a held request is never in [`Proxy::log`]).
    pub seq: u64,
    /// Its path and query, as requested.
    pub target: String,
}

impl Caught {
    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
}

impl Shared {
    /// The tripwire's action, if request `seq`, `req` (just read), is the one it waits
    /// for.
    fn tripped(&self, seq: u64, req: &RequestHead) -> Option<Tripped> {
        let mut armed = self.tripwire.lock().unwrap();
        let wire = armed.as_mut()?;
        if !wire.matching.matches(&req.method, &req.target) {
            return None;
        }
        wire.left -= 1;
        if wire.left > 0 {
            return None;
        }
        let wire = armed.take()?;
        Some(Tripped {
            trip: wire.trip,
            caught: Caught {
                seq,
                target: req.target.clone(),
            },
            tell: wire.tell,
        })
    }
}

/// A request a tripwire caught.
struct Tripped {
    trip: Trip,
    caught: Caught,
    tell: mpsc::Sender<Caught>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The proxy thread: accepts until told to stop; dropping the runtime then drops every
/// connection task, stalled ones included.
fn run(listener: StdTcpListener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("proxy runtime");
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener).expect("tokio listener");
        loop {
            tokio::select! {
                _ = &mut stop => return,
                accepted = listener.accept() => {
                    let Ok((client, _)) = accepted else { continue };
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(serve_connection(Arc::clone(&shared), client));
                }
            }
        }
    });
}
