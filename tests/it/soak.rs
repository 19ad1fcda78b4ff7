//! The soak of issue 25: pushgate's promise "a rerun after any failure converges,
//! nothing half-written" shown over many seeded failures, not a dozen.
//!
//! * [`killed_pushes_through_a_faulty_link_converge`]: per seed, a full push of a
//!   4-arch build through the fault proxy of tests/support (a seeded mix of 503, 429,
//!   500, resets before and after the registry did the work, cut answers, on a given
//!   share of the requests), SIGKILLed at a seeded point of its request sequence (a
//!   [tripwire](crate::support::proxy::Proxy::trip_on) aimed at any request, a blob
//!   upload, a manifest, a tag: held before the registry sees it, held after it
//!   answered, or let through and killed a seeded few milliseconds later, which lands
//!   some kills in the record stage), then rerun (faults still on) until a run
//!   succeeds, then run once more.
//! * [`concurrent_pushes_of_one_build_converge`]: per round, 8 pushes of one build (same
//!   workdir, same tags) started at once through the same faulty link; each succeeds or
//!   fails cleanly (exit 1, a failure object), and a rerun converges.
//!
//! Every run, and every round, must end in the exact state: every tag serves the very
//! list a clean push serves and skopeo pulls the whole image back (every blob checked
//! against its digest); every meta.json is the clean push's byte for byte (but for the
//! registry's address and cosa's meta-stamp) and parses with Python's `json`; the last
//! run is a true no-op (`up-to-date`, zero registry writes, meta.json untouched); no
//! file is left in the workdir that the build did not have (a lock, a claim, an owner
//! file, a temp file); and, for the killed pushes, no blob, manifest or tag was PUT
//! successfully twice over the run and its reruns (the proxy's in-flight requests are
//! waited out after the kill, so that nothing the dead process sent lands after the
//! rerun looked). A run that breaks any of these is *lost*; the tests print a summary
//! table and fail when one is. [`runs`] has the build, running pushgate and these
//! checks; [`found`] the tests of what the soak found, each failing without its fix.
//!
//! The parameters come from the environment; the defaults make the small version CI
//! runs (a few seconds), `scripts/soak.sh kill|concurrent` the long ones:
//! `PUSHGATE_SOAK_RUNS` (killed pushes, default 2), `PUSHGATE_SOAK_FAULTS` (share of
//! requests faulted, default 0.2), `PUSHGATE_SOAK_SEED` (the first seed, default 1),
//! `PUSHGATE_SOAK_ROUNDS` (concurrent rounds, default 1), `PUSHGATE_SOAK_PUSHES`
//! (pushes per round, default 8), `PUSHGATE_SOAK_LAYERS` and `PUSHGATE_SOAK_LAYER_KIB`
//! (the build's images: default 2 layers of 64 KiB per arch), `PUSHGATE_SOAK_CHUNK_KIB`
//! (`--chunk-size` in KiB, for uploads in chunks; default none: pushgate's 64 MiB).

mod found;
mod runs;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use crate::support::Registry;
use crate::support::proxy::{Action, Faults, Proxy, Trip};
use runs::{Attempt, Puts, Reference, Running, check_end_state, files_under, meta_path};

const BUILD_ID: &str = "41.20261206.1.0";
const ARCHES: [&str; 4] = ["x86_64", "aarch64", "s390x", "ppc64le"];
const REPO: &str = "fcos";
const TAGS: [&str; 2] = ["stable", BUILD_ID];
const KEY: &str = "base-oscontainer";
const META_STAMP: &str = "coreos-assembler.meta-stamp";
/// Longest one pushgate run may take (a rerun may wait out a dead holder's lock).
const RUN_TIMEOUT: Duration = Duration::from_secs(180);
/// Reruns after which a run that has not converged counts as lost.
const MAX_RERUNS: usize = 10;
/// How long the requests a killed client left in flight may take to finish.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest delay between a let-through tripwire and its kill.
const MAX_KILL_DELAY_US: u64 = 30_000;
/// How often a running child is looked at while waiting for its tripwire.
const POLL: Duration = Duration::from_millis(2);

// ---------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------

struct Settings {
    runs: u64,
    rate: f64,
    seed: u64,
    rounds: u64,
    pushes: usize,
    layers: usize,
    layer_kib: u64,
    /// `--chunk-size`, in KiB, when set: bigger blobs go up in chunks.
    chunk_kib: Option<u64>,
}

impl Settings {
    fn from_env() -> Settings {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
                Err(_) => default,
            }
        }
        let s = Settings {
            runs: var("PUSHGATE_SOAK_RUNS", 2),
            rate: var("PUSHGATE_SOAK_FAULTS", 0.2),
            seed: var("PUSHGATE_SOAK_SEED", 1),
            rounds: var("PUSHGATE_SOAK_ROUNDS", 1),
            pushes: var("PUSHGATE_SOAK_PUSHES", 8),
            layers: var("PUSHGATE_SOAK_LAYERS", 2),
            layer_kib: var("PUSHGATE_SOAK_LAYER_KIB", 64),
            chunk_kib: std::env::var("PUSHGATE_SOAK_CHUNK_KIB").ok().map(|v| {
                v.trim()
                    .parse()
                    .expect("PUSHGATE_SOAK_CHUNK_KIB is a number")
            }),
        };
        assert!(
            (0.0..=1.0).contains(&s.rate),
            "PUSHGATE_SOAK_FAULTS in [0, 1]"
        );
        s
    }

    /// The build and how it goes up, for the summaries.
    fn describe(&self) -> String {
        let chunks = match self.chunk_kib {
            Some(kib) => format!(", in chunks of {kib} KiB"),
            None => String::new(),
        };
        format!(
            "{} layers of {} KiB per arch{chunks}",
            self.layers, self.layer_kib
        )
    }

    /// The proxy's faults for `seed`: each request, with probability `rate`, gets one
    /// of what registries and networks do on a bad day.
    fn faults(&self, seed: u64) -> Faults {
        Faults::none().random(
            seed,
            self.rate,
            vec![
                Action::status(503),
                Action::status_retry_after(429, 0),
                Action::status(500),
                Action::ResetBeforeForward,
                Action::ResetAfterUpstream,
                // In the status line or headers, and in a manifest's body.
                Action::CutAnswer { bytes: 40 },
                Action::CutAnswer { bytes: 400 },
            ],
        )
    }
}

/// SplitMix64, the soak's own seeded choices (where to kill).
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

// ---------------------------------------------------------------------------------
// Killed pushes
// ---------------------------------------------------------------------------------

/// Where a run is killed: at the `nth` request matching `method` and `path` (as a
/// proxy rule matches: "*" and "" for any), as `trip` says, `delay` after the
/// tripwire when it lets the request through.
#[derive(Debug, Clone)]
struct KillPoint {
    nth: u64,
    method: &'static str,
    path: String,
    trip: Trip,
    delay: Duration,
}

impl KillPoint {
    /// Seeded. Faults make a push's request sequence longer than a clean push's, and
    /// most of it is blobs: a point drawn from the whole sequence alone would seldom
    /// be past the blobs. So some points are drawn from the whole sequence, and the
    /// others aimed at a blob upload, a manifest, a tag, or just after the last tag
    /// (let through, killed up to [`MAX_KILL_DELAY_US`] later: in the record stage, or
    /// too late when the run is quicker).
    fn of(seed: u64, reference: &Reference) -> KillPoint {
        let r = mix(seed ^ 0x5EED_C0DE);
        let any_trip =
            [Trip::BeforeForward, Trip::AfterUpstream, Trip::Pass][(mix(r) % 3) as usize];
        let pick = |n: u64| 1 + mix(r ^ 2) % n.max(1);
        let tag = |t: &str| format!("/manifests/{t}");
        let (nth, method, path, trip) = match mix(r ^ 3) % 20 {
            0..8 => (pick(reference.requests), "*", String::new(), any_trip),
            8..12 => (
                pick(reference.blobs as u64),
                "PUT",
                "/blobs/uploads/".to_string(),
                any_trip,
            ),
            12..15 => (
                pick(ARCHES.len() as u64 + 1),
                "PUT",
                "/manifests/sha256:".to_string(),
                any_trip,
            ),
            15..17 => (1, "PUT", tag(TAGS[(r % 2) as usize]), any_trip),
            _ => (1, "PUT", tag(&reference.last_tag), Trip::Pass),
        };
        KillPoint {
            nth,
            method,
            path,
            trip,
            delay: match trip {
                Trip::Pass => Duration::from_micros(mix(r ^ 1) % MAX_KILL_DELAY_US),
                _ => Duration::ZERO,
            },
        }
    }
}

/// What one killed-and-rerun push did.
#[derive(Default)]
struct RunStats {
    faults: u64,
    killed: bool,
    retries: u64,
    reruns: usize,
    /// The killed client's requests did not finish within [`IDLE_TIMEOUT`].
    stragglers: bool,
    /// Where the kill landed, when it did.
    stage: Option<Stage>,
    /// The kill left files beside meta.json (a lock, a claim, a temp file).
    left_by_kill: bool,
    wrong: Vec<String>,
}

/// How far a push had got when it was killed, as the registry and the workdir show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    /// Not every blob was up.
    Blobs,
    /// Every blob, not every manifest (the list included).
    Manifests,
    /// Every manifest, not every tag.
    Tags,
    /// Every tag: in the record stage (meta.json), or right before it.
    Record,
}

impl Stage {
    fn of(puts: &Puts, reference: &Reference, wd: &Path) -> Stage {
        let recorded = ARCHES.iter().any(|a| {
            fs::read_to_string(meta_path(wd, a)).is_ok_and(|t| t.contains(&format!("\"{KEY}\"")))
        });
        if recorded || puts.tags.len() == TAGS.len() {
            Stage::Record
        } else if puts.manifests.len() > ARCHES.len() {
            Stage::Tags
        } else if puts.blobs.len() == reference.blobs {
            Stage::Manifests
        } else {
            Stage::Blobs
        }
    }
}

/// Starts a push with the tripwire armed, kills it when the tripwire says.
fn killed_attempt(
    reference: &Reference,
    proxy: &Proxy,
    repo: &str,
    wd: &Path,
    at: &KillPoint,
) -> Attempt {
    let tripped = proxy.trip_on(at.nth, at.method, &at.path, at.trip);
    let mut running = Running::spawn(&mut reference.push(repo, wd));
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        match tripped.recv_timeout(POLL) {
            Ok(_) => {
                // Not a synchronisation: the seeded delay is where the kill lands.
                std::thread::sleep(at.delay);
                return Attempt::wait(running, true);
            }
            Err(RecvTimeoutError::Timeout) => {
                if running.child.try_wait().expect("poll pushgate").is_some() {
                    return Attempt::wait(running, false);
                }
                if Instant::now() >= deadline {
                    return Attempt::wait(running, true);
                }
            }
            Err(RecvTimeoutError::Disconnected) => return Attempt::wait(running, false),
        }
    }
}

fn killed_push(settings: &Settings, reference: &Reference, seed: u64) -> RunStats {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.addr(), settings.faults(seed));
    let repo = proxy.repo(REPO);
    let wd = reference.workdir();
    let at = KillPoint::of(seed, reference);
    let mut stats = RunStats::default();

    let first = killed_attempt(reference, &proxy, &repo, wd.path(), &at);
    stats.killed = first.killed;
    // What the dead process sent is finished with before anyone looks.
    stats.stragglers = !proxy.wait_idle(IDLE_TIMEOUT);
    if first.killed {
        let puts = Puts::of(&registry.requests());
        stats.stage = Some(Stage::of(&puts, reference, wd.path()));
        stats.left_by_kill = files_under(wd.path()) != reference.files;
    }
    stats.retries += first.retries();
    stats.wrong.extend(first.unclean());
    let mut last = first;
    while !last.succeeded() && stats.reruns < MAX_RERUNS {
        stats.reruns += 1;
        last = Attempt::run(&mut reference.push(&repo, wd.path()));
        stats.retries += last.retries();
        stats.wrong.extend(last.unclean());
    }
    if !last.succeeded() {
        stats.wrong.push(format!(
            "no convergence in {MAX_RERUNS} reruns: {}",
            last.context()
        ));
    } else {
        stats
            .wrong
            .extend(check_end_state(reference, &registry, &repo, wd.path()));
    }
    stats.wrong.extend(Puts::of(&registry.requests()).twice());
    stats.faults = proxy.log().iter().filter(|e| e.fault.is_some()).count() as u64;
    if !stats.wrong.is_empty() {
        stats
            .wrong
            .push(format!("the last requests: {}", tail(&proxy)));
        stats.wrong.insert(
            0,
            format!(
                "seed {seed}, kill at {at:?} ({}), {} rerun(s)",
                if stats.killed {
                    "killed"
                } else {
                    "ended before the kill"
                },
                stats.reruns
            ),
        );
    }
    stats
}

/// The proxy's last requests, for a lost run's message.
fn tail(proxy: &Proxy) -> String {
    let log = proxy.log();
    log[log.len().saturating_sub(40)..]
        .iter()
        .map(|e| {
            format!(
                "\n    #{} {} {} -> {:?} {:?}{}",
                e.seq,
                e.method,
                e.target,
                e.upstream_status,
                e.fault,
                e.error.as_deref().unwrap_or_default()
            )
        })
        .collect()
}

/// The median and the largest of `values` (0 for none).
fn median_max(values: &[usize]) -> (f64, usize) {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    let median = match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted[n / 2] as f64,
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) as f64 / 2.0,
    };
    (median, sorted.last().copied().unwrap_or(0))
}

#[test]
fn killed_pushes_through_a_faulty_link_converge() {
    let settings = Settings::from_env();
    let started = Instant::now();
    let reference = Reference::new(&settings);
    let mut all = Vec::new();
    for seed in settings.seed..settings.seed + settings.runs {
        let stats = killed_push(&settings, &reference, seed);
        for line in &stats.wrong {
            eprintln!("LOST {line}");
        }
        all.push(stats);
    }
    let reruns: Vec<usize> = all.iter().map(|s| s.reruns).collect();
    let (median, max) = median_max(&reruns);
    let lost: Vec<&RunStats> = all.iter().filter(|s| !s.wrong.is_empty()).collect();
    let faults: u64 = all.iter().map(|s| s.faults).sum();
    let mut stages: BTreeMap<Stage, usize> = BTreeMap::new();
    for stage in all.iter().filter_map(|s| s.stage) {
        *stages.entry(stage).or_default() += 1;
    }
    let stages = stages
        .iter()
        .map(|(stage, n)| format!("{stage:?} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    eprintln!(
        "\nsoak: killed pushes of a {}-arch build ({}) at {:.0} % faults, seeds {}..={}, \
         in {:.0?}\n\n\
         | runs | faults injected | kills | retries | reruns to converge (median / max) | stragglers | lost |\n\
         |-----:|----------------:|------:|--------:|----------------------------------:|-----------:|-----:|\n\
         | {} | {} | {} | {} | {median} / {max} | {} | {} |\n\n\
         kills by how far the push had got: {stages}; kills that left a lock, a claim or a temp \
         file beside meta.json: {}\n",
        ARCHES.len(),
        settings.describe(),
        settings.rate * 100.0,
        settings.seed,
        settings.seed + settings.runs - 1,
        started.elapsed(),
        all.len(),
        faults,
        all.iter().filter(|s| s.killed).count(),
        all.iter().map(|s| s.retries).sum::<u64>(),
        all.iter().filter(|s| s.stragglers).count(),
        lost.len(),
        all.iter().filter(|s| s.left_by_kill).count(),
    );
    if settings.rate > 0.0 && settings.runs > 0 {
        assert!(faults > 0, "no fault was injected");
    }
    assert!(
        all.iter().any(|s| s.killed) || settings.runs == 0,
        "no run was killed"
    );
    assert!(
        lost.is_empty(),
        "{} of {} run(s) lost:\n{}",
        lost.len(),
        all.len(),
        lost.iter()
            .map(|s| s.wrong.join("\n  "))
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}

// ---------------------------------------------------------------------------------
// Concurrent pushes
// ---------------------------------------------------------------------------------

/// What one round of concurrent pushes did.
#[derive(Default)]
struct RoundStats {
    faults: u64,
    retries: u64,
    /// Pushes by how they ended: an outcome, or "failed".
    ends: BTreeMap<String, usize>,
    reruns: usize,
    wrong: Vec<String>,
}

fn concurrent_round(settings: &Settings, reference: &Reference, seed: u64) -> RoundStats {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.addr(), settings.faults(seed));
    let repo = proxy.repo(REPO);
    let wd = reference.workdir();
    let mut stats = RoundStats::default();

    let running: Vec<Running> = (0..settings.pushes)
        .map(|_| Running::spawn(&mut reference.push(&repo, wd.path())))
        .collect();
    let ended: Vec<Attempt> = running
        .into_iter()
        .map(|r| Attempt::wait(r, false))
        .collect();
    for attempt in &ended {
        stats.retries += attempt.retries();
        stats.wrong.extend(attempt.unclean());
        let end = if attempt.succeeded() {
            attempt.outcome().to_string()
        } else {
            // Which retries it made, to tell a spent budget from a failure not retried.
            let retries: Vec<&str> = attempt
                .stderr
                .lines()
                .filter(|l| l.contains("; retry "))
                .collect();
            // And what answered 400, for a 400 without a registry error code.
            let bad: Vec<String> = registry
                .requests()
                .iter()
                .filter(|r| r.status == 400)
                .map(|r| format!("{} {}", r.method, r.path))
                .collect();
            eprintln!(
                "round {seed}: a push failed cleanly: {}\n  after: {retries:#?}\n  \
                 registry 400s: {bad:?}; heads the proxy could not parse: {}",
                attempt.json["error"].as_str().unwrap_or(&attempt.stderr),
                proxy.malformed()
            );
            "failed".to_string()
        };
        *stats.ends.entry(end).or_default() += 1;
    }
    let mut converged = ended.iter().all(Attempt::succeeded);
    while !converged && stats.reruns < MAX_RERUNS {
        stats.reruns += 1;
        let rerun = Attempt::run(&mut reference.push(&repo, wd.path()));
        stats.retries += rerun.retries();
        stats.wrong.extend(rerun.unclean());
        converged = rerun.succeeded();
    }
    if converged {
        stats
            .wrong
            .extend(check_end_state(reference, &registry, &repo, wd.path()));
    } else {
        stats
            .wrong
            .push(format!("no convergence in {MAX_RERUNS} reruns"));
    }
    stats.faults = proxy.log().iter().filter(|e| e.fault.is_some()).count() as u64;
    if !stats.wrong.is_empty() {
        stats.wrong.insert(0, format!("round with seed {seed}"));
    }
    stats
}

#[test]
fn concurrent_pushes_of_one_build_converge() {
    let settings = Settings::from_env();
    let started = Instant::now();
    let reference = Reference::new(&settings);
    let mut all = Vec::new();
    for round in 0..settings.rounds {
        let stats = concurrent_round(&settings, &reference, settings.seed + round);
        for line in &stats.wrong {
            eprintln!("LOST {line}");
        }
        all.push(stats);
    }
    let mut ends: BTreeMap<String, usize> = BTreeMap::new();
    for stats in &all {
        for (end, n) in &stats.ends {
            *ends.entry(end.clone()).or_default() += n;
        }
    }
    let reruns: Vec<usize> = all.iter().map(|s| s.reruns).collect();
    let (median, max) = median_max(&reruns);
    let lost = all.iter().filter(|s| !s.wrong.is_empty()).count();
    eprintln!(
        "\nsoak: {} concurrent pushes of one {}-arch build ({}) x {} rounds at {:.0} % \
         faults, seeds {}..={}, in {:.0?}\n\n\
         | rounds | pushes | ended (outcome: pushes) | faults injected | retries | reruns to converge (median / max) | lost |\n\
         |-------:|-------:|-------------------------|----------------:|--------:|----------------------------------:|-----:|\n\
         | {} | {} | {} | {} | {} | {median} / {max} | {lost} |\n",
        settings.pushes,
        ARCHES.len(),
        settings.describe(),
        settings.rounds,
        settings.rate * 100.0,
        settings.seed,
        settings.seed + settings.rounds.max(1) - 1,
        started.elapsed(),
        all.len(),
        all.len() * settings.pushes,
        ends.iter()
            .map(|(e, n)| format!("{e}: {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        all.iter().map(|s| s.faults).sum::<u64>(),
        all.iter().map(|s| s.retries).sum::<u64>(),
    );
    assert!(
        lost == 0,
        "{lost} of {} round(s) lost:\n{}",
        all.len(),
        all.iter()
            .filter(|s| !s.wrong.is_empty())
            .map(|s| s.wrong.join("\n  "))
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}
