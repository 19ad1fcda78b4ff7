//! What the proxy is told to do (rules, random faults, latency, bandwidth) and the
//! decider that picks, request by request, the fault each one gets.

use std::time::{Duration, SystemTime};

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

    pub(super) fn matches(&self, method: &str, target: &str) -> bool {
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
    pub(super) faults: Faults,
    /// Per rule, how many requests it matched so far.
    pub(super) matched: Vec<u64>,
    /// Index of the next request (0-based).
    pub(super) next: u64,
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
pub(super) fn random_pick(random: &RandomFaults, index: u64) -> Option<Action> {
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
pub(super) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
