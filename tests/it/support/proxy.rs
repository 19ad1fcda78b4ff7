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

use std::io;
use std::net::{Ipv4Addr, TcpListener as StdTcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt as _;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

/// Longest request or response head (request line or status line plus headers) accepted.
const MAX_HEAD: usize = 64 * 1024;
/// How often a trickled body gets its next piece.
const TRICKLE_TICK: Duration = Duration::from_millis(50);
/// How far a bandwidth-limited flow may fall behind its schedule and catch up at once:
/// the timer wakes a sender late (tokio's ticks are 1 ms), and without this credit
/// every late wake-up would be lost, slowing the flow below its limit.
const PACE_CREDIT: Duration = Duration::from_millis(10);

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

/// The `Retry-After` value of a [`Action::Status`] answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: N` (delay-seconds).
    Seconds(u64),
    /// `Retry-After: <IMF-fixdate>`, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
    Date(SystemTime),
}

/// What the proxy does to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer `code` (503, 429, ...) without forwarding, with a registry-style JSON error
    /// body and `Retry-After` if given. The request body is read and dropped first so the
    /// connection stays usable (unless the client waits for `100 Continue`: then the
    /// connection is closed after the answer, as servers do).
    Status {
        code: u16,
        retry_after: Option<RetryAfter>,
    },
    /// Reset the client connection (TCP RST) as soon as the request head is read; the
    /// registry sees nothing.
    ResetBeforeForward,
    /// Forward the request, body included, wait for the registry's answer, then reset the
    /// client connection before any byte of that answer: the write happened, the answer is
    /// lost.
    ResetAfterUpstream,
    /// Forward, then send only the first `bytes` bytes of the answer as the registry gave
    /// it (status line, headers, body), never the whole of it, and close the connection.
    /// A small `bytes` cuts in the status line or headers, a bigger one in the body.
    CutAnswer { bytes: usize },
    /// Forward, then hold the answer this long before relaying it. [`Duration::MAX`]
    /// holds it forever: the client has to give up.
    Stall(Duration),
    /// Wait this long before forwarding (on top of [`Faults::latency`]).
    Delay(Duration),
    /// Forward and relay the answer's head at once, its body at this rate.
    Trickle { bytes_per_sec: u64 },
    /// Forward without this request header (named in lower case), as a server
    /// or CDN that does not know it would ignore it: `range` makes a registry
    /// that answers every ranged read with the whole blob.
    DropHeader(String),
}

impl Action {
    /// `Status { code, retry_after: None }`.
    pub fn status(code: u16) -> Action {
        Action::Status {
            code,
            retry_after: None,
        }
    }

    /// `Status { code, retry_after: Some(Seconds(seconds)) }`.
    pub fn status_retry_after(code: u16, seconds: u64) -> Action {
        Action::Status {
            code,
            retry_after: Some(RetryAfter::Seconds(seconds)),
        }
    }

    /// `Stall(Duration::MAX)`: the answer never comes.
    pub fn stall_forever() -> Action {
        Action::Stall(Duration::MAX)
    }
}

/// A deterministic fault: `action` on the `nth` request (1-based, counting only the
/// requests this rule matches) whose method is `method` ("*" for any) and whose path and
/// query contain `path_contains`; `nth: None` means every matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub method: String,
    pub path_contains: String,
    pub nth: Option<u64>,
    pub action: Action,
}

impl Rule {
    /// The `n`th matching request (1-based) gets `action`.
    pub fn nth(n: u64, method: &str, path_contains: &str, action: Action) -> Rule {
        assert!(n >= 1, "occurrences count from 1");
        Rule {
            method: method.to_string(),
            path_contains: path_contains.to_string(),
            nth: Some(n),
            action,
        }
    }

    /// Every matching request gets `action`.
    pub fn every(method: &str, path_contains: &str, action: Action) -> Rule {
        Rule {
            method: method.to_string(),
            path_contains: path_contains.to_string(),
            nth: None,
            action,
        }
    }

    fn matches(&self, method: &str, target: &str) -> bool {
        (self.method == "*" || self.method.eq_ignore_ascii_case(method))
            && target.contains(&self.path_contains)
    }
}

/// The seeded random part of [`Faults`]: each request not caught by a rule gets, with
/// probability `probability`, one of `actions`, picked by the PRNG.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomFaults {
    pub seed: u64,
    /// In [0, 1].
    pub probability: f64,
    pub actions: Vec<Action>,
}

/// Everything the proxy does besides forwarding. `Faults::default()` does nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Checked in order; the first rule whose occurrence it is wins.
    pub rules: Vec<Rule>,
    pub random: Option<RandomFaults>,
    /// Added before forwarding every request (not recorded as a fault).
    pub latency: Duration,
    /// Requests whose body is longer than this are answered 413 (after the body is
    /// read away) and the connection closed, as nginx does with its
    /// `client_max_body_size` (1 MiB by default); recorded as the fault
    /// `Status { code: 413 }`.
    pub max_body: Option<u64>,
    /// Limits on body bytes per second (none by default).
    pub bandwidth: Bandwidth,
}

/// Bandwidth limits, in bytes per second, each applying to each direction on its own
/// (uploads and downloads do not share a limit, as a full-duplex link's do not).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bandwidth {
    /// Each client connection's body bytes.
    pub per_connection: Option<u64>,
    /// All connections' body bytes together.
    pub total: Option<u64>,
}

impl Faults {
    /// No faults, no latency: a plain forwarding proxy.
    pub fn none() -> Faults {
        Faults::default()
    }

    pub fn rule(mut self, rule: Rule) -> Faults {
        self.rules.push(rule);
        self
    }

    pub fn random(mut self, seed: u64, probability: f64, actions: Vec<Action>) -> Faults {
        assert!((0.0..=1.0).contains(&probability), "{probability}");
        assert!(!actions.is_empty(), "a random mix needs actions");
        self.random = Some(RandomFaults {
            seed,
            probability,
            actions,
        });
        self
    }

    pub fn latency(mut self, latency: Duration) -> Faults {
        self.latency = latency;
        self
    }

    /// Limit request and response bodies to `per_connection` bytes a second on each
    /// connection and `total` on all of them together (`None`: no such limit).
    pub fn bandwidth(mut self, per_connection: Option<u64>, total: Option<u64>) -> Faults {
        assert!(
            per_connection != Some(0) && total != Some(0),
            "a limit of 0 bytes a second would never send"
        );
        self.bandwidth = Bandwidth {
            per_connection,
            total,
        };
        self
    }

    /// Refuse request bodies longer than `bytes` with 413, as nginx does.
    pub fn max_body(mut self, bytes: u64) -> Faults {
        self.max_body = Some(bytes);
        self
    }
}

// ---------------------------------------------------------------------------------------
// Decisions
// ---------------------------------------------------------------------------------------

/// Decides each request's fault from the configuration and the requests seen before it,
/// nothing else: two deciders with the same [`Faults`] fed the same request sequence give
/// the same answers. The proxy uses one for all its connections, in arrival order.
#[derive(Debug, Clone)]
pub struct Decider {
    faults: Faults,
    /// Per rule, how many requests it matched so far.
    matched: Vec<u64>,
    /// Index of the next request (0-based).
    next: u64,
}

impl Decider {
    pub fn new(faults: Faults) -> Decider {
        Decider {
            matched: vec![0; faults.rules.len()],
            faults,
            next: 0,
        }
    }

    /// The fault for the next request, `method` `target` (path and query).
    pub fn decide(&mut self, method: &str, target: &str) -> Option<Action> {
        let index = self.next;
        self.next += 1;
        // Every rule counts its matches, even when an earlier rule wins, so that a rule's
        // "nth" does not depend on the other rules.
        let mut chosen = None;
        for (rule, matched) in self.faults.rules.iter().zip(&mut self.matched) {
            if !rule.matches(method, target) {
                continue;
            }
            *matched += 1;
            let fires = rule.nth.is_none_or(|n| n == *matched);
            if fires && chosen.is_none() {
                chosen = Some(rule.action.clone());
            }
        }
        chosen.or_else(|| {
            self.faults
                .random
                .as_ref()
                .and_then(|random| random_pick(random, index))
        })
    }

    /// The latency added to every request.
    pub fn latency(&self) -> Duration {
        self.faults.latency
    }

    /// The largest request body forwarded, if bodies are capped.
    pub fn max_body(&self) -> Option<u64> {
        self.faults.max_body
    }
}

/// The random mix's choice for the request with this index: a pure function of the seed
/// and the index, so it does not depend on what the rules did.
fn random_pick(random: &RandomFaults, index: u64) -> Option<Action> {
    let draw = splitmix64(random.seed ^ splitmix64(index));
    // The top 53 bits as a uniform float in [0, 1).
    let unit = (draw >> 11) as f64 / (1u64 << 53) as f64;
    if unit >= random.probability || random.actions.is_empty() {
        return None;
    }
    let pick = splitmix64(draw) % random.actions.len() as u64;
    Some(random.actions[pick as usize].clone())
}

/// SplitMix64's output function: a good 64-bit mix, enough for a test PRNG.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

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

// ---------------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------------

/// How an exchange left the client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    KeepAlive,
    Close,
    /// Abort with a TCP RST.
    Reset,
}

/// The connection to the registry serving one client connection.
struct Upstream {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

async fn serve_connection(shared: Arc<Shared>, client: TcpStream) {
    let _ = client.set_nodelay(true);
    let (r, mut client_w) = client.into_split();
    let mut client_r = BufReader::new(r);
    let mut upstream: Option<Upstream> = None;
    let own = Directions::new(shared.per_connection);
    if starts_with_tls_handshake(&mut client_r).await {
        // As the registry (Go's net/http) does: answer at once, so a client probing for
        // HTTPS first (skopeo with --tls-verify=false) falls back to HTTP without waiting
        // for a timeout.
        let _ = client_w.write_all(HTTP_TO_HTTPS).await;
        return;
    }
    loop {
        let req = match read_head(&mut client_r, true).await {
            Ok(Some(lines)) => match RequestHead::parse(lines) {
                Some(req) => req,
                None => {
                    shared.malformed.fetch_add(1, Ordering::SeqCst);
                    let _ = client_w.write_all(&bad_request()).await;
                    return;
                }
            },
            // The client closed between requests, or sent garbage / went away.
            Ok(None) | Err(_) => return,
        };
        let (seq, action, latency, trip) = {
            let mut decider = shared.decider.lock().unwrap();
            let seq = decider.next;
            let mut action = decider.decide(&req.method, &req.target);
            if let (Some(max), Framing::Length(len)) = (decider.max_body(), req.framing)
                && len > max
            {
                action = Some(Action::status(413));
            }
            // Under the decider's lock, so that the tripwire counts in `seq` order.
            let trip = shared.tripped(seq, &req);
            (seq, action, decider.latency(), trip)
        };
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let exchange = Exchange {
            shared: &shared,
            seq,
            req: &req,
            action: action.as_ref(),
            own: &own,
            trip,
        };
        let end = exchange
            .run(latency, &mut client_r, &mut client_w, &mut upstream)
            .await;
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        match end {
            End::KeepAlive => continue,
            End::Close => return,
            End::Reset => {
                reset(client_r, client_w);
                return;
            }
        }
    }
}

/// The answer of Go's net/http to a TLS ClientHello on a plain HTTP port.
const HTTP_TO_HTTPS: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// Whether the client opened with a TLS handshake record (content type 22) instead of a
/// request line.
async fn starts_with_tls_handshake(client_r: &mut BufReader<OwnedReadHalf>) -> bool {
    matches!(client_r.fill_buf().await, Ok([0x16, ..]))
}

/// Aborts the connection: RST instead of FIN, and no shutdown of the write half first
/// (dropping an `OwnedWriteHalf` would send a FIN, which a client reads as a clean end).
fn reset(client_r: BufReader<OwnedReadHalf>, client_w: OwnedWriteHalf) {
    if let Ok(stream) = client_r.into_inner().reunite(client_w) {
        let _ = stream.set_zero_linger();
        drop(stream);
    }
}

/// One request and what is done to it.
struct Exchange<'a> {
    shared: &'a Shared,
    seq: u64,
    req: &'a RequestHead,
    action: Option<&'a Action>,
    /// This connection's own bandwidth limits.
    own: &'a Directions,
    /// What a tripwire does to this request, if it caught it.
    trip: Option<Tripped>,
}

impl Exchange<'_> {
    async fn run(
        &self,
        latency: Duration,
        client_r: &mut BufReader<OwnedReadHalf>,
        client_w: &mut OwnedWriteHalf,
        upstream: &mut Option<Upstream>,
    ) -> End {
        if let Some(tripped) = &self.trip {
            let forwarded = !matches!(
                self.action,
                Some(Action::Status { .. } | Action::ResetBeforeForward)
            );
            match tripped.trip {
                Trip::Pass => {
                    let _ = tripped.tell.send(tripped.caught.clone());
                }
                Trip::AfterUpstream if forwarded => {}
                Trip::BeforeForward | Trip::AfterUpstream => self.hold().await,
            }
        }
        let delay = match self.action {
            Some(Action::Delay(extra)) => latency.saturating_add(*extra),
            _ => latency,
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match self.action {
            Some(Action::Status { code, retry_after }) => {
                self.answer_status(*code, retry_after.as_ref(), client_r, client_w)
                    .await
            }
            Some(Action::ResetBeforeForward) => {
                self.record(None, None);
                End::Reset
            }
            _ => {
                let end = self.forward(client_r, client_w, upstream).await;
                if end != End::KeepAlive {
                    // Its state is unknown (a body half read, a cut answer): start afresh.
                    *upstream = None;
                }
                end
            }
        }
    }

    /// Holds this request (a tripwire caught it): no longer in flight, and said on
    /// the tripwire's channel; until [`Proxy::release_held`], for good if that never
    /// comes.
    async fn hold(&self) {
        // Before it is said: a release that follows the telling is for this request.
        let mut released = self.shared.released.subscribe();
        let held_at = *released.borrow_and_update();
        self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        if let Some(tripped) = &self.trip {
            let _ = tripped.tell.send(tripped.caught.clone());
        }
        if released.wait_for(|n| *n > held_at).await.is_err() {
            std::future::pending::<()>().await;
        }
        self.shared.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    fn record(&self, upstream_status: Option<u16>, error: Option<String>) {
        self.shared.log.lock().unwrap().push(ProxyEvent {
            seq: self.seq,
            method: self.req.method.clone(),
            target: self.req.target.clone(),
            upstream_status,
            fault: self.action.cloned(),
            error,
        });
    }

    /// The proxy's own answer, the request not forwarded.
    async fn answer_status(
        &self,
        code: u16,
        retry_after: Option<&RetryAfter>,
        client_r: &mut BufReader<OwnedReadHalf>,
        client_w: &mut OwnedWriteHalf,
    ) -> End {
        // A client waiting for "100 Continue" sends no body: the connection's state is
        // then unclear, close it after the answer. Otherwise read the body away so the
        // next request on the connection is parsed from its start.
        // nginx closes the connection after refusing a body as too large.
        let keep = !self.req.expect_continue && !self.req.close && code != 413;
        if !self.req.expect_continue
            && copy_body(client_r, &mut Discard, self.req.framing, false)
                .await
                .is_err()
        {
            return End::Close;
        }
        self.record(None, None);
        let mut answer = status_answer(code, retry_after, !keep);
        if self.req.method.eq_ignore_ascii_case("HEAD") {
            // Same head, no body: a body here would be read as the next answer.
            answer.truncate(head_len(&answer));
        }
        if client_w.write_all(&answer).await.is_err() {
            return End::Close;
        }
        if keep { End::KeepAlive } else { End::Close }
    }

    /// Forwards the request and relays the answer, applying the forwarding actions.
    async fn forward(
        &self,
        client_r: &mut BufReader<OwnedReadHalf>,
        client_w: &mut OwnedWriteHalf,
        upstream: &mut Option<Upstream>,
    ) -> End {
        let up = match self.connect(upstream).await {
            Ok(up) => up,
            Err(e) => return self.fail(client_w, format!("connect: {e}")).await,
        };
        let head = match self.action {
            Some(Action::DropHeader(name)) => without_header(&self.req.raw, name),
            _ => self.req.raw.clone(),
        };
        if let Err(e) = up.w.write_all(&head).await {
            return self.fail(client_w, format!("send request head: {e}")).await;
        }
        // The request body is sent while the answer is awaited: the registry may answer
        // before reading it all (an error), and a client sending `Expect: 100-continue`
        // waits for the registry's "100 Continue" before sending it.
        let (up_r, up_w) = (&mut up.r, &mut up.w);
        let mut up_w = Paced {
            sink: up_w,
            link: Link([self.own.up.as_ref(), self.shared.total.up.as_ref()]),
        };
        let body = async {
            let sent = copy_body(client_r, &mut up_w, self.req.framing, false).await;
            if sent.is_err() {
                // The client went away mid-body (killed): end the body upstream
                // too, or the registry would wait for the rest of it for ever.
                let _ = up_w.sink.shutdown().await;
            }
            sent
        };
        let answer = self.relay_answer(up_r, client_w);
        tokio::pin!(body, answer);
        let mut body_sent = None;
        let end = loop {
            tokio::select! {
                sent = &mut body, if body_sent.is_none() => body_sent = Some(sent.is_ok()),
                end = &mut answer => break end,
            }
        };
        // The answer came before the client sent its whole body (an early error, or no
        // "100 Continue"): the rest of the body would be read as the next request.
        let body_sent = body_sent.or_else(|| body.now_or_never().map(|sent| sent.is_ok()));
        if end == End::KeepAlive && body_sent != Some(true) {
            End::Close
        } else {
            end
        }
    }

    /// The upstream connection, reused when the registry has not closed it.
    async fn connect<'u>(
        &self,
        upstream: &'u mut Option<Upstream>,
    ) -> io::Result<&'u mut Upstream> {
        if upstream.as_mut().is_some_and(|up| !is_idle(&mut up.r)) {
            *upstream = None;
        }
        if upstream.is_none() {
            let stream = TcpStream::connect(&self.shared.upstream).await?;
            let _ = stream.set_nodelay(true);
            let (r, w) = stream.into_split();
            *upstream = Some(Upstream {
                r: BufReader::new(r),
                w,
            });
        }
        Ok(upstream.as_mut().expect("just connected"))
    }

    /// Records a proxy failure and answers 502.
    async fn fail(&self, client_w: &mut OwnedWriteHalf, error: String) -> End {
        self.record(None, Some(error));
        let _ = client_w.write_all(&status_answer(502, None, true)).await;
        End::Close
    }

    /// Reads the registry's answer and relays it, as the action says.
    async fn relay_answer(
        &self,
        up_r: &mut BufReader<OwnedReadHalf>,
        client_w: &mut OwnedWriteHalf,
    ) -> End {
        let head = match self.read_final_head(up_r, client_w).await {
            Ok(head) => head,
            Err(e) => return self.fail(client_w, format!("read answer: {e}")).await,
        };
        self.record(Some(head.status), None);
        if self
            .trip
            .as_ref()
            .is_some_and(|t| t.trip == Trip::AfterUpstream)
        {
            self.hold().await;
        }
        match self.action {
            Some(Action::ResetAfterUpstream) => return End::Reset,
            Some(Action::Stall(hold)) => tokio::time::sleep(*hold).await,
            _ => {}
        }
        let framing = head.framing(&self.req.method);
        let raw = head.rewritten(&self.shared.upstream, &self.shared.authority);
        let mut out = AnswerWriter {
            w: client_w,
            budget: match self.action {
                Some(Action::CutAnswer { bytes }) => Some(*bytes),
                _ => None,
            },
            trickle: match self.action {
                Some(Action::Trickle { bytes_per_sec }) => Some((*bytes_per_sec).max(1)),
                _ => None,
            },
            link: Link([self.own.down.as_ref(), self.shared.total.down.as_ref()]),
            in_body: false,
        };
        let whole = match out.put(&raw, framing == Framing::Empty).await {
            Ok(true) => {
                out.in_body = true;
                copy_body(up_r, &mut out, framing, true).await
            }
            other => other,
        };
        match whole {
            Ok(true) if !self.req.close && !head.close && framing != Framing::UntilClose => {
                End::KeepAlive
            }
            // Cut, finished by closing, or broken: close (with a FIN, so a cut answer
            // reads as a premature end, not as a reset).
            _ => {
                let _ = client_w.shutdown().await;
                End::Close
            }
        }
    }

    /// The final (non-1xx) answer head; interim answers ("100 Continue") are relayed.
    async fn read_final_head(
        &self,
        up_r: &mut BufReader<OwnedReadHalf>,
        client_w: &mut OwnedWriteHalf,
    ) -> io::Result<ResponseHead> {
        loop {
            let lines = read_head(up_r, false)
                .await?
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no answer"))?;
            let head = ResponseHead::parse(lines)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad status line"))?;
            if (100..200).contains(&head.status) && head.status != 101 {
                client_w.write_all(&head.raw()).await?;
                continue;
            }
            return Ok(head);
        }
    }
}

/// True when nothing came from the registry on an idle connection: neither data nor its
/// close (a registry closing idle connections must not cost a request a 502).
fn is_idle(r: &mut BufReader<OwnedReadHalf>) -> bool {
    r.fill_buf().now_or_never().is_none()
}

// ---------------------------------------------------------------------------------------
// Writing answers
// ---------------------------------------------------------------------------------------

/// Where a body goes, piece by piece; `last` marks the piece that completes the message.
/// `Ok(false)` means: stop here (the answer is cut).
trait Sink {
    async fn put(&mut self, bytes: &[u8], last: bool) -> io::Result<bool>;
}

impl Sink for OwnedWriteHalf {
    async fn put(&mut self, bytes: &[u8], _last: bool) -> io::Result<bool> {
        self.write_all(bytes).await?;
        Ok(true)
    }
}

/// Drops what it is given (a request body the proxy answers itself).
struct Discard;

impl Sink for Discard {
    async fn put(&mut self, _bytes: &[u8], _last: bool) -> io::Result<bool> {
        Ok(true)
    }
}

/// The client side of an answer, applying [`Action::CutAnswer`] and [`Action::Trickle`].
struct AnswerWriter<'a> {
    w: &'a mut OwnedWriteHalf,
    /// Bytes still allowed through when the answer is to be cut.
    budget: Option<usize>,
    /// Body bytes per second when trickling.
    trickle: Option<u64>,
    /// The bandwidth limits bodies go through.
    link: Link<'a>,
    /// The head is sent (trickling applies to the body only).
    in_body: bool,
}

impl Sink for AnswerWriter<'_> {
    async fn put(&mut self, bytes: &[u8], last: bool) -> io::Result<bool> {
        let (send, cut) = match self.budget {
            // The last byte of the answer is always withheld: a cut answer is never whole.
            Some(budget) if budget < bytes.len() || last => {
                (&bytes[..budget.min(bytes.len().saturating_sub(1))], true)
            }
            _ => (bytes, false),
        };
        if let Some(budget) = &mut self.budget {
            *budget -= send.len();
        }
        match self.trickle {
            Some(rate) if self.in_body => trickle(self.w, send, rate).await?,
            _ if self.in_body => self.link.send(self.w, send).await?,
            _ => self.w.write_all(send).await?,
        }
        Ok(!cut)
    }
}

/// A bandwidth limit: each piece of `n` bytes sent through it takes the next `n / rate`
/// seconds of a timeline kept by the pacer, and its sender waits for that span's end
/// before sending it. Whoever shares the pacer shares the rate, piece by piece in the
/// order they ask (the pieces are small: what one read of a body gives).
struct Pacer {
    rate: u64,
    /// Where the timeline's free part starts; `None` before the first piece.
    free_at: Mutex<Option<tokio::time::Instant>>,
}

impl Pacer {
    fn new(rate: u64) -> Pacer {
        Pacer {
            rate: rate.max(1),
            free_at: Mutex::new(None),
        }
    }

    /// When a piece of `n` bytes asked for now may go.
    fn reserve(&self, n: usize) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        let mut free_at = self.free_at.lock().unwrap();
        // A flow that fell behind (a late wake-up, an idle moment) catches up by at most
        // PACE_CREDIT, so over any span it never gets much more than its rate.
        let start = match *free_at {
            Some(free) => free.max(now.checked_sub(PACE_CREDIT).unwrap_or(now)),
            None => now,
        };
        let end = start + Duration::from_secs_f64(n as f64 / self.rate as f64);
        *free_at = Some(end);
        end
    }
}

/// The pacers one direction of one connection goes through: its own and the shared one.
#[derive(Clone, Copy)]
struct Link<'a>([Option<&'a Pacer>; 2]);

impl Link<'_> {
    /// Writes `bytes` once every pacer lets them go (at once without limits).
    async fn send(&self, w: &mut OwnedWriteHalf, bytes: &[u8]) -> io::Result<()> {
        if !bytes.is_empty() {
            let due = self
                .0
                .iter()
                .flatten()
                .map(|p| p.reserve(bytes.len()))
                .max();
            if let Some(due) = due
                && due > tokio::time::Instant::now()
            {
                tokio::time::sleep_until(due).await;
            }
        }
        w.write_all(bytes).await
    }
}

/// The registry side of a request body, sent through the connection's link.
struct Paced<'a, 'w> {
    sink: &'w mut OwnedWriteHalf,
    link: Link<'a>,
}

impl Sink for Paced<'_, '_> {
    async fn put(&mut self, bytes: &[u8], _last: bool) -> io::Result<bool> {
        self.link.send(self.sink, bytes).await?;
        Ok(true)
    }
}

/// Writes `bytes` at `rate` bytes a second, a piece every [`TRICKLE_TICK`].
async fn trickle(w: &mut OwnedWriteHalf, bytes: &[u8], rate: u64) -> io::Result<()> {
    let piece = (rate * TRICKLE_TICK.as_millis() as u64 / 1000).max(1) as usize;
    for chunk in bytes.chunks(piece) {
        w.write_all(chunk).await?;
        w.flush().await?;
        tokio::time::sleep(Duration::from_secs_f64(chunk.len() as f64 / rate as f64)).await;
    }
    Ok(())
}

/// An answer of the proxy's own, in the registry's JSON error format.
fn status_answer(code: u16, retry_after: Option<&RetryAfter>, close: bool) -> Vec<u8> {
    let (reason, error_code) = match code {
        413 => ("Request Entity Too Large", "SIZE_INVALID"),
        429 => ("Too Many Requests", "TOOMANYREQUESTS"),
        502 => ("Bad Gateway", "UNAVAILABLE"),
        503 => ("Service Unavailable", "UNAVAILABLE"),
        500 => ("Internal Server Error", "UNKNOWN"),
        _ => ("Injected Fault", "UNKNOWN"),
    };
    let body = format!(
        r#"{{"errors":[{{"code":"{error_code}","message":"pushgate test proxy: injected {code}"}}]}}"#
    );
    let mut head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Docker-Distribution-Api-Version: registry/2.0\r\n",
        body.len()
    );
    match retry_after {
        Some(RetryAfter::Seconds(seconds)) => head.push_str(&format!("Retry-After: {seconds}\r\n")),
        Some(RetryAfter::Date(date)) => {
            head.push_str(&format!("Retry-After: {}\r\n", http_date(*date)))
        }
        None => {}
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    head.push_str(&body);
    head.into_bytes()
}

/// The length of the head of a serialised message (up to and including the empty line).
fn head_len(message: &[u8]) -> usize {
    message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |i| i + 4)
}

fn bad_request() -> Vec<u8> {
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
}

/// `time` as an HTTP-date (IMF-fixdate, RFC 9110 section 5.6.7), always in GMT.
pub fn http_date(time: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = time
        .duration_since(UNIX_EPOCH)
        .expect("a date after 1970")
        .as_secs();
    let days = secs / 86_400;
    let (year, month, day) = civil_from_days(days);
    let of_day = secs % 86_400;
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// (year, month 1-12, day 1-31) of the day `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

// ---------------------------------------------------------------------------------------
// HTTP/1.1 message heads and bodies
// ---------------------------------------------------------------------------------------

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Until the connection closes (answers without length nor chunking).
    UntilClose,
}

/// A request head, kept raw to be forwarded byte for byte.
#[derive(Debug)]
struct RequestHead {
    raw: Vec<u8>,
    method: String,
    target: String,
    framing: Framing,
    /// The connection ends after this exchange (`Connection: close`, or HTTP/1.0).
    close: bool,
    expect_continue: bool,
}

impl RequestHead {
    fn parse(lines: Vec<Vec<u8>>) -> Option<RequestHead> {
        let request_line = String::from_utf8(lines.first()?.clone()).ok()?;
        let mut parts = request_line.split_whitespace();
        let method = parts.next()?.to_string();
        let target = parts.next()?.to_string();
        let version = parts.next()?.to_string();
        let headers = Headers::parse(&lines[1..])?;
        let framing = if headers.chunked() {
            Framing::Chunked
        } else {
            match headers.content_length()? {
                Some(n) if n > 0 => Framing::Length(n),
                _ => Framing::Empty,
            }
        };
        let close = headers.has_token("connection", "close")
            || (version == "HTTP/1.0" && !headers.has_token("connection", "keep-alive"));
        Some(RequestHead {
            raw: lines.concat(),
            expect_continue: headers.has_token("expect", "100-continue"),
            method,
            target,
            framing,
            close,
        })
    }
}

/// A response head: the raw lines (for relaying) and what framing needs.
#[derive(Debug)]
struct ResponseHead {
    lines: Vec<Vec<u8>>,
    status: u16,
    headers: Headers,
    close: bool,
}

impl ResponseHead {
    fn parse(lines: Vec<Vec<u8>>) -> Option<ResponseHead> {
        let status_line = std::str::from_utf8(lines.first()?).ok()?;
        let mut parts = status_line.split_whitespace();
        let version = parts.next()?;
        let status = parts.next()?.parse().ok()?;
        let headers = Headers::parse(&lines[1..])?;
        let close = headers.has_token("connection", "close")
            || (version == "HTTP/1.0" && !headers.has_token("connection", "keep-alive"));
        Some(ResponseHead {
            lines,
            status,
            headers,
            close,
        })
    }

    fn raw(&self) -> Vec<u8> {
        self.lines.concat()
    }

    /// RFC 9112 section 6.3, for the answers a registry gives.
    fn framing(&self, request_method: &str) -> Framing {
        if request_method.eq_ignore_ascii_case("HEAD")
            || (100..200).contains(&self.status)
            || self.status == 204
            || self.status == 304
        {
            return Framing::Empty;
        }
        if self.headers.chunked() {
            return Framing::Chunked;
        }
        match self.headers.content_length() {
            Some(Some(0)) => Framing::Empty,
            Some(Some(n)) => Framing::Length(n),
            _ => Framing::UntilClose,
        }
    }

    /// The head with `Location` rewritten to point at the proxy.
    fn rewritten(&self, upstream: &str, proxy: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, line) in self.lines.iter().enumerate() {
            let rewritten = (i > 0)
                .then(|| std::str::from_utf8(line).ok())
                .flatten()
                .and_then(|text| text.split_once(':'))
                .filter(|(name, _)| name.trim().eq_ignore_ascii_case("location"))
                .and_then(|(name, value)| {
                    rewrite_location(value.trim(), upstream, proxy)
                        .map(|value| format!("{name}: {value}\r\n"))
                });
            match rewritten {
                Some(new) => out.extend_from_slice(new.as_bytes()),
                None => out.extend_from_slice(line),
            }
        }
        out
    }
}

/// `location` pointing at the proxy instead of `upstream`, when it is an absolute URL
/// naming `upstream`; `None` when it needs no change (relative, or another host).
/// A request head without the header lines named `name` (lower case).
fn without_header(raw: &[u8], name: &str) -> Vec<u8> {
    raw.split_inclusive(|&b| b == b'\n')
        .filter(|line| {
            let field = line.split(|&b| b == b':').next().unwrap_or_default();
            !(line.contains(&b':') && field.eq_ignore_ascii_case(name.as_bytes()))
        })
        .flatten()
        .copied()
        .collect()
}

pub fn rewrite_location(location: &str, upstream: &str, proxy: &str) -> Option<String> {
    for scheme in ["http://", "https://"] {
        let Some(rest) = location.strip_prefix(scheme) else {
            continue;
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if authority.eq_ignore_ascii_case(upstream) {
            return Some(format!("{scheme}{proxy}{tail}"));
        }
    }
    None
}

/// Header fields, names lowercased.
#[derive(Debug)]
struct Headers(Vec<(String, String)>);

impl Headers {
    fn parse(lines: &[Vec<u8>]) -> Option<Headers> {
        let mut fields = Vec::new();
        for line in lines {
            let text = std::str::from_utf8(line).ok()?.trim_end();
            if text.is_empty() {
                continue;
            }
            let (name, value) = text.split_once(':')?;
            fields.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        Some(Headers(fields))
    }

    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.0
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header `name` holds `token` (case-insensitive).
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.values(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    fn chunked(&self) -> bool {
        self.has_token("transfer-encoding", "chunked")
    }

    /// `None`: malformed; `Some(None)`: absent.
    fn content_length(&self) -> Option<Option<u64>> {
        match self.values("content-length").next() {
            None => Some(None),
            Some(v) => v.parse().ok().map(Some),
        }
    }
}

/// Reads a message head: its lines (CRLF included) up to and including the empty line.
/// `Ok(None)` when the peer closed cleanly before sending anything. Requests may be
/// preceded by empty lines, which are skipped (RFC 9112 section 2.2).
async fn read_head<R: AsyncBufRead + Unpin>(
    r: &mut R,
    skip_leading_empty: bool,
) -> io::Result<Option<Vec<Vec<u8>>>> {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut total = 0;
    loop {
        let mut line = Vec::new();
        let n = read_line(r, &mut line, MAX_HEAD - total).await?;
        if n == 0 {
            return if lines.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        total += n;
        let empty = line == b"\r\n" || line == b"\n";
        if empty && lines.is_empty() && skip_leading_empty {
            continue;
        }
        lines.push(line);
        if empty {
            if lines.len() == 1 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "empty head"));
            }
            return Ok(Some(lines));
        }
    }
}

/// Appends one line (up to and including '\n', or to EOF) to `out`; fails past `limit`
/// bytes. Returns the number of bytes read.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    out: &mut Vec<u8>,
    limit: usize,
) -> io::Result<usize> {
    let start = out.len();
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(out.len() - start);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        out.extend_from_slice(&buf[..take]);
        r.consume(take);
        if out.len() - start > limit {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
        }
        if done {
            return Ok(out.len() - start);
        }
    }
}

/// Streams a body from `r` to `sink` as it is framed, framing bytes included (chunk
/// sizes, trailers), so the receiver sees the same message. `ends_message`: the body's
/// last piece is the message's last byte (false when the message head came after, never).
/// Returns `Ok(false)` when the sink stopped it.
async fn copy_body<R: AsyncBufRead + Unpin, S: Sink>(
    r: &mut R,
    sink: &mut S,
    framing: Framing,
    ends_message: bool,
) -> io::Result<bool> {
    match framing {
        Framing::Empty => Ok(true),
        Framing::Length(n) => copy_exact(r, sink, n, ends_message).await,
        Framing::Chunked => copy_chunked(r, sink, ends_message).await,
        Framing::UntilClose => copy_to_eof(r, sink).await,
    }
}

/// Copies exactly `n` bytes; `ends_message`: their last one is the message's last.
async fn copy_exact<R: AsyncBufRead + Unpin, S: Sink>(
    r: &mut R,
    sink: &mut S,
    n: u64,
    ends_message: bool,
) -> io::Result<bool> {
    let mut left = n;
    while left > 0 {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let last = ends_message && take as u64 == left;
        let go_on = sink.put(&buf[..take], last).await?;
        r.consume(take);
        left -= take as u64;
        if !go_on {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Copies a chunked body: size lines, data, the last chunk and the trailers.
async fn copy_chunked<R: AsyncBufRead + Unpin, S: Sink>(
    r: &mut R,
    sink: &mut S,
    ends_message: bool,
) -> io::Result<bool> {
    loop {
        let size_line = read_required_line(r).await?;
        let size = chunk_size(&size_line)?;
        if !sink.put(&size_line, false).await? {
            return Ok(false);
        }
        if size == 0 {
            // Trailer fields, then the empty line ending the message.
            loop {
                let line = read_required_line(r).await?;
                let end = line == b"\r\n" || line == b"\n";
                if !sink.put(&line, end && ends_message).await? {
                    return Ok(false);
                }
                if end {
                    return Ok(true);
                }
            }
        }
        if !copy_exact(r, sink, size, false).await? {
            return Ok(false);
        }
        let crlf = read_required_line(r).await?;
        if !sink.put(&crlf, false).await? {
            return Ok(false);
        }
    }
}

async fn copy_to_eof<R: AsyncBufRead + Unpin, S: Sink>(
    r: &mut R,
    sink: &mut S,
) -> io::Result<bool> {
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(true);
        }
        let len = buf.len();
        let go_on = sink.put(buf, false).await?;
        r.consume(len);
        if !go_on {
            return Ok(false);
        }
    }
}

/// A line of a chunked body; EOF before its end is an error.
async fn read_required_line<R: AsyncBufRead + Unpin>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    read_line(r, &mut line, MAX_HEAD).await?;
    if !line.ends_with(b"\n") {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line)
}

/// The size of a chunk from its size line ("1a2b;ext=1\r\n").
fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let text = std::str::from_utf8(line).map_err(|_| io::ErrorKind::InvalidData)?;
    let hex = text.split(';').next().unwrap_or_default().trim();
    u64::from_str_radix(hex, 16)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))
}
