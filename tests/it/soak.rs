//! The soak of issue 25: pushgate's promise "a rerun after any failure converges,
//! nothing half-written" shown over many seeded failures, not a dozen.
//!
//! * [`killed_pushes_through_a_faulty_link_converge`]: per seed, a full push of a
//!   4-arch build through the fault proxy of tests/support (a seeded mix of 503, 429,
//!   500, resets before and after the registry did the work, cut answers, on a given
//!   share of the requests), SIGKILLed at a seeded point of its request sequence (a
//!   [tripwire](crate::support::proxy::Proxy::trip_on): held before the registry sees
//!   the request, held after it answered, or let through and killed a seeded few
//!   milliseconds later, which lands some kills in the record stage), then rerun (faults
//!   still on) until a run succeeds, then run once more.
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
//! table and fail when one is.
//!
//! The parameters come from the environment; the defaults make the small version CI
//! runs (a few seconds), `scripts/soak.sh kill|concurrent` the long ones:
//! `PUSHGATE_SOAK_RUNS` (killed pushes, default 2), `PUSHGATE_SOAK_FAULTS` (share of
//! requests faulted, default 0.2), `PUSHGATE_SOAK_SEED` (the first seed, default 1),
//! `PUSHGATE_SOAK_ROUNDS` (concurrent rounds, default 1), `PUSHGATE_SOAK_PUSHES`
//! (pushes per round, default 8), `PUSHGATE_SOAK_LAYERS` and `PUSHGATE_SOAK_LAYER_KIB`
//! (the build's images: default 2 layers of 64 KiB per arch), `PUSHGATE_SOAK_CHUNK_KIB`
//! (`--chunk-size` in KiB, for uploads in chunks; default none: pushgate's 64 MiB).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use crate::support::proxy::{Action, Faults, Proxy, Trip};
use crate::support::run::schema_errors;
use crate::support::{Registry, Request, pushgate, skopeo, skopeo_inspect_raw};
use pushgate_sample::{SampleBuild, write_build};
use serde_json::Value;
use tempfile::TempDir;

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
// The build, and what a clean push of it leaves
// ---------------------------------------------------------------------------------

/// A generated workdir every run copies, and the state a clean push of it ends in.
struct Reference {
    template: TempDir,
    /// Every file of the template, relative to it.
    files: BTreeSet<PathBuf>,
    /// The list every tag serves after a clean push.
    list: Vec<u8>,
    /// arch → meta.json after a clean push, normalised ([`normalise`]).
    meta: BTreeMap<String, String>,
    /// Requests a clean push sends (through a proxy without faults).
    requests: u64,
    /// Blobs a clean push uploads.
    blobs: usize,
    /// The tag a clean push puts last.
    last_tag: String,
    /// `--chunk-size` of every push, in KiB.
    chunk_kib: Option<u64>,
}

impl Reference {
    fn new(settings: &Settings) -> Reference {
        let template = tempfile::Builder::new()
            .prefix("pushgate-soak-build-")
            .tempdir()
            .expect("create the template workdir");
        let build =
            SampleBuild::ostree(BUILD_ID, &ARCHES, settings.layers, settings.layer_kib << 10);
        write_build(template.path(), &build).expect("write the sample build");
        let files = files_under(template.path());

        let registry = Registry::start();
        let proxy = Proxy::start(registry.addr(), Faults::none());
        let wd = TempDir::new().expect("clean push workdir");
        copy_workdir(template.path(), wd.path());
        let repo = proxy.repo(REPO);
        let mut clean = push(&repo, wd.path());
        if let Some(kib) = settings.chunk_kib {
            clean.arg(format!("--chunk-size={kib}k"));
        }
        let clean = Attempt::run(&mut clean);
        assert_eq!(clean.outcome(), "pushed", "clean push: {}", clean.context());
        let log = proxy.log();
        let requests = log.len() as u64;
        let last_tag = log
            .iter()
            .rev()
            .filter(|e| e.method == "PUT")
            .find_map(|e| {
                e.path()
                    .rsplit_once("/manifests/")
                    .map(|(_, t)| t.to_string())
            })
            .filter(|t| TAGS.contains(&t.as_str()))
            .expect("the clean push put its tags last");
        let list = skopeo_inspect_raw(&format!("{repo}:{}", TAGS[0]), None)
            .expect("the clean push's list");
        let meta = ARCHES
            .iter()
            .map(|a| {
                let text = fs::read_to_string(meta_path(wd.path(), a)).expect("meta.json");
                (a.to_string(), normalise(&text, &repo))
            })
            .collect();
        Reference {
            template,
            files,
            list,
            meta,
            requests,
            last_tag,
            chunk_kib: settings.chunk_kib,
            blobs: Puts::of(&registry.requests()).blobs.len(),
        }
    }

    /// A push of the build in `wd` to `repo`, as every run of the soak makes it.
    fn push(&self, repo: &str, wd: &Path) -> Command {
        let mut cmd = push(repo, wd);
        if let Some(kib) = self.chunk_kib {
            cmd.arg(format!("--chunk-size={kib}k"));
        }
        cmd
    }

    /// A fresh copy of the build, as no push has touched it.
    fn workdir(&self) -> TempDir {
        let wd = tempfile::Builder::new()
            .prefix("pushgate-soak-wd-")
            .tempdir()
            .expect("create a workdir");
        copy_workdir(self.template.path(), wd.path());
        wd
    }
}

/// meta.json text with the repository pushed to (it names the proxy's port) and
/// cosa's meta-stamp (the time of the write) replaced by placeholders.
fn normalise(text: &str, repo: &str) -> String {
    text.replace(repo, "REPO")
        .lines()
        .map(
            |line| match line.split_once(&format!("\"{META_STAMP}\":")) {
                Some((indent, _)) => format!("{indent}\"{META_STAMP}\": STAMP"),
                None => line.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("\n")
}

fn meta_path(wd: &Path, arch: &str) -> PathBuf {
    wd.join("builds")
        .join(BUILD_ID)
        .join(arch)
        .join("meta.json")
}

/// Copies a cosa workdir: the archives hard-linked (nothing writes them), the rest copied.
fn copy_workdir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create the workdir copy");
    for entry in fs::read_dir(from).expect("read the template") {
        let entry = entry.expect("template entry");
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().expect("file type").is_dir() {
            copy_workdir(&src, &dst);
        } else if src.extension().is_some_and(|e| e == "ociarchive") {
            fs::hard_link(&src, &dst).expect("link an archive");
        } else {
            fs::copy(&src, &dst).expect("copy a file");
        }
    }
}

/// Every file and directory under `root`, relative to it.
fn files_under(root: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir)
            .expect("read a workdir directory")
            .flatten()
        {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(path.clone());
            }
            found.insert(path.strip_prefix(root).expect("under root").to_path_buf());
        }
    }
    found
}

// ---------------------------------------------------------------------------------
// Running pushgate
// ---------------------------------------------------------------------------------

fn push(repo: &str, wd: &Path) -> Command {
    let mut cmd = pushgate();
    cmd.args(["push", "--repo", repo]);
    for tag in TAGS {
        cmd.args(["--tag", tag]);
    }
    cmd.args(["--artifact", "ostree", "--metajsonname", KEY, "--workdir"])
        .arg(wd)
        .args(["--tls-verify=false", "--json", "--retry-delay", "20ms"])
        .stdin(Stdio::null());
    cmd
}

/// One pushgate run that ended (on its own or killed).
struct Attempt {
    code: Option<i32>,
    killed: bool,
    json: Value,
    stdout: String,
    stderr: String,
}

impl Attempt {
    /// Runs `cmd` to its end.
    fn run(cmd: &mut Command) -> Attempt {
        Attempt::wait(Running::spawn(cmd), false)
    }

    fn wait(mut running: Running, kill: bool) -> Attempt {
        if kill {
            running.child.kill().expect("SIGKILL pushgate");
        }
        let deadline = Instant::now() + RUN_TIMEOUT;
        let status = loop {
            if let Some(status) = running.child.try_wait().expect("poll pushgate") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = running.child.kill();
                let _ = running.child.wait();
                panic!("pushgate did not end within {RUN_TIMEOUT:?}");
            }
            std::thread::sleep(POLL);
        };
        let read =
            |name: &str| fs::read_to_string(running.out.path().join(name)).unwrap_or_default();
        let stdout = read("stdout");
        Attempt {
            code: status.code(),
            killed: status.signal() == Some(9),
            json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
            stdout,
            stderr: read("stderr"),
        }
    }

    fn outcome(&self) -> &str {
        self.json["outcome"].as_str().unwrap_or_default()
    }

    fn succeeded(&self) -> bool {
        self.code == Some(0) && self.json["ok"] == true
    }

    fn retries(&self) -> u64 {
        self.json["retries"].as_u64().unwrap_or(0)
    }

    /// What is wrong with how it ended: killed runs aside, pushgate exits 0 with a
    /// report or 1 with a failure object, either as the schema says.
    fn unclean(&self) -> Option<String> {
        if self.killed {
            return None;
        }
        let clean = match self.code {
            Some(0) => self.json["ok"] == true,
            Some(1) => self.json["ok"] == false && self.json["error"].is_string(),
            _ => false,
        };
        let schema = if self.json.is_object() {
            schema_errors(&self.json)
        } else {
            vec!["stdout is not one JSON object".to_string()]
        };
        (!clean || !schema.is_empty())
            .then(|| format!("an unclean end ({}): {}", schema.join("; "), self.context()))
    }

    fn context(&self) -> String {
        format!(
            "exit {:?}{}\nstdout: {}\nstderr: {}",
            self.code,
            if self.killed { " (killed)" } else { "" },
            self.stdout.trim(),
            self.stderr.trim()
        )
    }
}

/// A pushgate started, its output going to files.
struct Running {
    child: Child,
    out: TempDir,
}

impl Running {
    fn spawn(cmd: &mut Command) -> Running {
        let out = TempDir::new().expect("output dir");
        let file = |name: &str| File::create(out.path().join(name)).expect("output file");
        let child = cmd
            .stdout(file("stdout"))
            .stderr(file("stderr"))
            .spawn()
            .expect("spawn pushgate");
        Running { child, out }
    }
}

// ---------------------------------------------------------------------------------
// What a run must end in
// ---------------------------------------------------------------------------------

/// The registry's successful PUTs of one repository, by what they wrote.
#[derive(Default)]
struct Puts {
    blobs: BTreeMap<String, usize>,
    manifests: BTreeMap<String, usize>,
    tags: BTreeMap<String, usize>,
}

impl Puts {
    fn of(requests: &[Request]) -> Puts {
        let mut puts = Puts::default();
        let prefix = format!("/v2/{REPO}/");
        for r in requests {
            if r.method != "PUT" || !(200..300).contains(&r.status) {
                continue;
            }
            let Some(rest) = r.path.strip_prefix(&prefix) else {
                continue;
            };
            if rest.starts_with("blobs/uploads/") {
                let digest = r
                    .query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("digest="))
                    .unwrap_or_default()
                    .replace("%3A", ":")
                    .replace("%3a", ":");
                *puts.blobs.entry(digest).or_default() += 1;
            } else if let Some(reference) = rest.strip_prefix("manifests/") {
                let into = if reference.contains(':') {
                    &mut puts.manifests
                } else {
                    &mut puts.tags
                };
                *into.entry(reference.to_string()).or_default() += 1;
            }
        }
        puts
    }

    /// What was PUT successfully more than once.
    fn twice(&self) -> Vec<String> {
        [
            ("blob", &self.blobs),
            ("manifest", &self.manifests),
            ("tag", &self.tags),
        ]
        .into_iter()
        .flat_map(|(what, counts)| {
            counts
                .iter()
                .filter(|(_, n)| **n > 1)
                .map(move |(id, n)| format!("{what} {id} PUT {n} times"))
        })
        .collect()
    }
}

/// Checks the state a converged run left; returns what is wrong, one line each.
/// `converged` is the last (successful) run; `noop` runs once more and checks it
/// wrote nothing and changed nothing.
fn check_end_state(
    reference: &Reference,
    registry: &Registry,
    repo: &str,
    wd: &Path,
) -> Vec<String> {
    let mut wrong = Vec::new();
    // A true no-op: up-to-date, no registry write, meta.json untouched.
    let metas = |wd: &Path| -> Vec<Vec<u8>> {
        ARCHES
            .iter()
            .map(|a| fs::read(meta_path(wd, a)).unwrap_or_default())
            .collect()
    };
    let before = metas(wd);
    let seen = registry.requests().len();
    let noop = Attempt::run(&mut reference.push(repo, wd));
    let writes: Vec<String> = registry.requests()[seen..]
        .iter()
        .filter(|r| r.is_write())
        .map(|r| format!("{} {} {}", r.method, r.path, r.status))
        .collect();
    if noop.outcome() != "up-to-date" || !writes.is_empty() || metas(wd) != before {
        wrong.push(format!(
            "the run after convergence was no no-op (writes {writes:?}, meta.json {}): {}",
            if metas(wd) == before {
                "untouched"
            } else {
                "rewritten"
            },
            noop.context()
        ));
    }
    // Every tag serves the list a clean push serves, read by skopeo.
    for tag in TAGS {
        match skopeo_inspect_raw(&format!("{}:{tag}", registry.repo(REPO)), None) {
            Ok(list) if list == reference.list => {}
            Ok(list) => wrong.push(format!(
                "tag {tag} serves another list: {}",
                String::from_utf8_lossy(&list)
            )),
            Err(e) => wrong.push(format!("tag {tag} cannot be read: {e}")),
        }
    }
    // Everything the list names is there and whole: skopeo checks every digest.
    let back = TempDir::new().expect("pull-back dir");
    let out = skopeo()
        .args(["copy", "--quiet", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{}:{}", registry.repo(REPO), TAGS[0]))
        .arg(format!("oci:{}", back.path().join("image").display()))
        .output()
        .expect("run skopeo copy");
    if !out.status.success() {
        wrong.push(format!(
            "skopeo cannot pull the image back: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // meta.json: the clean push's, and Python reads it.
    for arch in ARCHES {
        let path = meta_path(wd, arch);
        let text = fs::read_to_string(&path).unwrap_or_default();
        if normalise(&text, repo) != reference.meta[arch] {
            wrong.push(format!(
                "{} is not what a clean push writes:\n{text}",
                path.display()
            ));
        }
    }
    let python = Command::new("python3")
        .args([
            "-c",
            "import json, sys\nfor p in sys.argv[1:]:\n    json.load(open(p))",
        ])
        .args(ARCHES.iter().map(|a| meta_path(wd, a)))
        .output()
        .expect("run python3");
    if !python.status.success() {
        wrong.push(format!(
            "Python's json cannot read a meta.json: {}",
            String::from_utf8_lossy(&python.stderr).trim()
        ));
    }
    // Nothing left that the build did not have: no lock, claim, owner or temp file.
    let left: Vec<_> = files_under(wd)
        .difference(&reference.files)
        .map(|p| p.display().to_string())
        .collect();
    if !left.is_empty() {
        wrong.push(format!("files left in the workdir: {left:?}"));
    }
    wrong
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
         kills by how far the push had got: {stages}; kills that left a lock or a temp \
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

// ---------------------------------------------------------------------------------
// What the soak found, each pinned by a test of its own
// ---------------------------------------------------------------------------------

/// A repository client for `repo` (plain HTTP, quick retries).
fn client(repo: &str) -> pushgate::registry::Repository {
    let opts = pushgate::registry::Options {
        plain_http: true,
        retry: pushgate::registry::RetryPolicy {
            delay: Duration::from_millis(20),
            ..pushgate::registry::RetryPolicy::default()
        },
        ..pushgate::registry::Options::default()
    };
    let name: pushgate::registry::RepoName = repo.parse().expect("a repository name");
    pushgate::registry::Repository::new(&name, &opts).expect("a repository client")
}

/// The GETs of `path` the proxy saw: (registry's status, fault).
fn gets(proxy: &Proxy, path: &str) -> Vec<(Option<u16>, Option<Action>)> {
    proxy
        .log()
        .into_iter()
        .filter(|e| e.method == "GET" && e.path().ends_with(path))
        .map(|e| (e.upstream_status, e.fault))
        .collect()
}

/// Seed 52 of the first soak: the run after convergence read a tag whose answer was
/// cut in its body, and failed at once ("after 6 attempts", having made one).
#[test]
fn a_manifest_answer_cut_in_its_body_is_read_again() {
    let registry = Registry::start();
    // An index padded past any answer head, so the cut lands in its body.
    let pad = "x".repeat(4000);
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"annotations":{{"pad":"{pad}"}}}}"#
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let media_type = "application/vnd.oci.image.index.v1+json";
    rt.block_on(client(&registry.repo(REPO)).put_manifest("stable", media_type, index.as_bytes()))
        .unwrap();
    let cut = Action::CutAnswer { bytes: 2000 };
    let proxy = Proxy::start(
        registry.addr(),
        Faults::none().rule(crate::support::proxy::Rule::nth(
            1,
            "GET",
            "/manifests/stable",
            cut.clone(),
        )),
    );
    let read = rt
        .block_on(client(&proxy.repo(REPO)).get_tag("stable"))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let (_, bytes) = read.expect("the tag is there");
    assert_eq!(bytes, index.as_bytes());
    assert_eq!(
        gets(&proxy, "/manifests/stable"),
        vec![(Some(200), Some(cut)), (Some(200), None)],
        "the cut answer, then the whole one"
    );
}

/// The same for a small blob read whole (an image config).
#[test]
fn a_blob_answer_cut_in_its_body_is_read_again() {
    let registry = Registry::start();
    let blob: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let digest = rt
        .block_on(client(&registry.repo(REPO)).push_blob_bytes(&blob))
        .unwrap();
    let cut = Action::CutAnswer { bytes: 3000 };
    let path = format!("/blobs/{digest}");
    let proxy = Proxy::start(
        registry.addr(),
        Faults::none().rule(crate::support::proxy::Rule::nth(
            1,
            "GET",
            &path,
            cut.clone(),
        )),
    );
    let read = rt
        .block_on(client(&proxy.repo(REPO)).get_blob(&digest, 1 << 20))
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(read.as_deref(), Some(&blob[..]));
    assert_eq!(
        gets(&proxy, &path),
        vec![(Some(200), Some(cut)), (Some(200), None)],
        "the cut answer, then the whole one"
    );
}

/// Plants, beside `meta`, what a pushgate SIGKILLed in its record stage leaves: cosa's
/// lock held (unexpired) by a process of this kernel and PID namespace that is gone,
/// its claim and owner file (as src/record/lock.rs writes them), and a temp file of
/// a write that never got renamed. Returns the planted files.
fn plant_a_dead_writer(meta: &Path) -> Vec<PathBuf> {
    let dir = meta.parent().expect("an arch directory");
    let mut gone = Command::new("true").spawn().expect("spawn true");
    let pid = gone.id();
    gone.wait().expect("reap true");
    let boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("boot id");
    let ns = fs::read_link("/proc/self/ns/pid").expect("pid namespace");
    let ns = ns.to_string_lossy();
    let ns = ns.trim_start_matches("pid:[").trim_end_matches(']');
    let lock = dir.join(".meta.json.lock");
    let claim = dir.join(format!(".meta.json.lock|localhost|{pid}|42"));
    let owner = dir.join(format!(".meta.json.lock|localhost|{pid}|42.owner"));
    let temp = dir.join(".meta.json.k1ll3d.tmp");
    fs::write(
        &owner,
        format!(
            "boot-id={}\npid-ns={ns}\npid={pid}\nstart-time=1\n",
            boot_id.trim()
        ),
    )
    .expect("write the owner file");
    fs::write(&claim, claim.as_os_str().as_encoded_bytes()).expect("write the claim");
    fs::hard_link(&claim, &lock).expect("link the lock");
    File::options()
        .write(true)
        .open(&lock)
        .and_then(|f| f.set_modified(std::time::SystemTime::now() + Duration::from_secs(60)))
        .expect("set the lock's expiry");
    fs::write(&temp, b"{\"half\": ").expect("write a temp file");
    vec![lock, claim, owner, temp]
}

/// Seed 10 of the second soak: killed between a meta.json's rename and its unlock,
/// the push left that arch's lock, and every rerun left it there, since none records
/// an arch whose meta.json has the entry; cosa, which cannot tell that the holder
/// died, would wait out the lock's lifetime.
#[test]
fn an_up_to_date_run_clears_the_lock_a_killed_run_left() {
    let wd = TempDir::new().unwrap();
    write_build(
        wd.path(),
        &SampleBuild::ostree(BUILD_ID, &ARCHES[..2], 1, 1024),
    )
    .unwrap();
    let registry = Registry::start();
    let repo = registry.repo(REPO);
    let first = Attempt::run(&mut push(&repo, wd.path()));
    assert_eq!(first.outcome(), "pushed", "{}", first.context());
    let planted: Vec<PathBuf> = ARCHES[..2]
        .iter()
        .flat_map(|a| plant_a_dead_writer(&meta_path(wd.path(), a)))
        .collect();
    let metas: Vec<Vec<u8>> = ARCHES[..2]
        .iter()
        .map(|a| fs::read(meta_path(wd.path(), a)).unwrap())
        .collect();
    let seen = registry.requests().len();
    let again = Attempt::run(&mut push(&repo, wd.path()));
    assert_eq!(again.outcome(), "up-to-date", "{}", again.context());
    let writes: Vec<_> = registry.requests()[seen..]
        .iter()
        .filter(|r| r.is_write())
        .cloned()
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    for (arch, before) in ARCHES[..2].iter().zip(&metas) {
        assert_eq!(&fs::read(meta_path(wd.path(), arch)).unwrap(), before);
    }
    let left: Vec<_> = planted.iter().filter(|p| p.exists()).collect();
    assert!(left.is_empty(), "left: {left:?}");
}

/// The same when the rerun records the other arches only.
#[test]
fn a_rerun_that_records_other_arches_clears_the_lock_a_killed_run_left() {
    let wd = TempDir::new().unwrap();
    write_build(
        wd.path(),
        &SampleBuild::ostree(BUILD_ID, &ARCHES[..2], 1, 1024),
    )
    .unwrap();
    let registry = Registry::start();
    let repo = registry.repo(REPO);
    let original = fs::read(meta_path(wd.path(), ARCHES[1])).unwrap();
    let first = Attempt::run(&mut push(&repo, wd.path()));
    assert_eq!(first.outcome(), "pushed", "{}", first.context());
    // Killed after the first arch's meta.json was replaced, before its unlock.
    fs::write(meta_path(wd.path(), ARCHES[1]), &original).unwrap();
    let planted = plant_a_dead_writer(&meta_path(wd.path(), ARCHES[0]));
    let again = Attempt::run(&mut push(&repo, wd.path()));
    assert_eq!(again.outcome(), "recorded", "{}", again.context());
    assert_eq!(again.json["recorded"], serde_json::json!([ARCHES[1]]));
    let left: Vec<_> = planted.iter().filter(|p| p.exists()).collect();
    assert!(left.is_empty(), "left: {left:?}");
}
