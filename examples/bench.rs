//! Benchmarks `pushgate push` side by side with what release jobs run today, on the
//! same machine and in the same run (see BENCHMARKS.md; `scripts/bench.sh` builds and
//! runs this):
//!
//! - fresh push of a whole cosa build: pushgate vs podman (`manifest create/add/push
//!   --all`, what cosa runs) vs the raw limit (the same blobs and manifests uploaded
//!   with parallel `curl` processes, no tool logic);
//! - the no-op rerun vs one `skopeo inspect --raw` (the first step of cosa's check);
//! - the record-only recovery (meta.json lost after a push), vs cosa's re-push;
//! - a rerun after a SIGKILL halfway through the uploads: bytes re-sent;
//! - peak memory (max RSS, from `/usr/bin/time`) pushing one big layer and the build;
//! - policy cost per container: module load cold and warm, one `decide` call;
//! - signing (bench/signed.rs): the signed fresh push and no-op vs the unsigned ones;
//! - a WAN (bench/wan.rs): the test proxy adding a 40 ms round trip and limiting
//!   bandwidth per connection and in total, so the link, not the registry, is the
//!   limit: fresh push vs raw curl, release vs its largest container, no-op vs skopeo,
//!   the fresh push by `--jobs`, and a build of many small layers.
//!
//! `--only fresh,wan,...` runs some scenarios (each with its own baselines).
//!
//! Every measurement runs against a local `docker-registry` started for it (fresh
//! storage where the scenario needs it). Results are medians; the table is printed,
//! and with `--out FILE` written as a Markdown section into FILE (between the
//! `<!-- bench:begin -->` and `<!-- bench:end -->` markers, which are added at the end
//! of the file when missing). Targets are reported as met or missed, never asserted:
//! only a broken scenario (a tool failing, an unexpected outcome) is an error.
//!
//! ```text
//! cargo run --release --example bench -- [--small] [--runs N] [--out BENCHMARKS.md]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

// The fault-injecting proxy of the integration tests, for the fault scenario.
// What the bench does not use of it (tests do) is neither dead nor unused.
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/support/proxy/mod.rs"]
mod proxy;
#[path = "bench/signed.rs"]
mod signed;
#[path = "bench/wan.rs"]
mod wan;
use clap::Parser;
use pushgate::contract::Facts;
use pushgate::policy::{Limits, PolicyHost};
use pushgate_sample::{
    SampleBuild, SampleContainer, SampleImage, archive_file_name, write_build, write_oci_archive,
};
use serde_json::{Value, json};

const MIB: u64 = 1 << 20;
const BUILD_ID: &str = "41.20261127.1.0";
const ARTIFACT: &str = "ostree";
const KEY: &str = "base-oscontainer";
const REPO: &str = "fedora/fedora-coreos";
const TAG: &str = "stable";
const MARK_BEGIN: &str = "<!-- bench:begin -->";
const MARK_END: &str = "<!-- bench:end -->";
/// Query parameter marking the bench's own readiness probes in access logs.
const PROBE: &str = "bench-probe";

/// The scenarios `--only` selects from.
const SCENARIOS: [&str; 10] = [
    "fresh", "kill", "faults", "latency", "release", "big", "policy", "sign", "wan", "layers",
];

/// Benchmark pushgate against podman, skopeo and raw curl uploads on a local registry.
#[derive(Parser)]
struct Args {
    /// Smoke-test sizes (2 arches × 4 layers × 256 KiB, a 16 MiB big layer), one run each.
    #[arg(long)]
    small: bool,
    /// Runs of each heavy measurement (default 3; 1 with --small).
    #[arg(long)]
    runs: Option<usize>,
    /// Runs of each quick measurement: no-op, skopeo inspect (default 5 × runs).
    #[arg(long)]
    quick_runs: Option<usize>,
    /// Comma-separated basearches of the build (default x86_64,aarch64,ppc64le,s390x).
    #[arg(long, value_delimiter = ',')]
    arches: Option<Vec<String>>,
    /// Layers per image (default 16).
    #[arg(long)]
    layers: Option<usize>,
    /// Bytes per layer (default 16 MiB).
    #[arg(long)]
    layer_size: Option<u64>,
    /// Bytes of the single-layer image pushed for peak memory (default 1 GiB).
    #[arg(long)]
    big_layer: Option<u64>,
    /// Parallel uploads: pushgate's --jobs, and the number of parallel curl workers.
    #[arg(long, default_value_t = 4)]
    jobs: usize,
    /// The pushgate binary (default: `pushgate` beside this example's directory).
    #[arg(long)]
    pushgate: Option<PathBuf>,
    /// Directory holding the policy modules (*.wasm) to time.
    #[arg(long)]
    policies: Option<PathBuf>,
    /// Where workdirs and registries go (default: a fresh temp dir, removed at the end).
    #[arg(long)]
    scratch: Option<PathBuf>,
    /// Skip podman (e.g. where it cannot run).
    #[arg(long)]
    no_podman: bool,
    /// Only these scenarios (comma-separated): fresh (with the no-op and the
    /// record-only recovery), kill, faults, latency, release, big, policy, sign, wan,
    /// layers. Default: all.
    #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(SCENARIOS))]
    only: Option<Vec<String>>,
    /// Per-connection bandwidth of the WAN scenarios, MiB/s (default 10; 64 with --small).
    #[arg(long)]
    wan_per_connection: Option<u64>,
    /// Total bandwidth of the WAN scenarios, MiB/s (default 100; 256 with --small).
    #[arg(long)]
    wan_total: Option<u64>,
    /// Write the results as a Markdown section into this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Extra text for the "reproduce" line (how the bench was invoked).
    #[arg(long, default_value = "scripts/bench.sh")]
    command: String,
}

/// The sizes of one benchmark.
#[derive(Clone)]
struct Size {
    arches: Vec<String>,
    layers: usize,
    layer_size: u64,
    big_layer: u64,
    runs: usize,
    quick_runs: usize,
    decide_calls: usize,
    cold_loads: usize,
    /// Smoke test: timing targets are not judged.
    small: bool,
    /// The link of the WAN scenarios: at the full size, limits that a registry on
    /// this machine keeps up with; with --small, limits high enough to cost nothing.
    link: wan::Link,
    /// The scenarios to run (`--only`); `None`: all.
    only: Option<Vec<String>>,
}

impl Size {
    fn from_args(a: &Args) -> Size {
        let (arches, layers, layer_size, big, runs) = if a.small {
            (vec!["x86_64", "aarch64"], 4, 256 * 1024, 16 * MIB, 1)
        } else {
            (
                vec!["x86_64", "aarch64", "ppc64le", "s390x"],
                16,
                16 * MIB,
                1024 * MIB,
                3,
            )
        };
        let runs = a.runs.unwrap_or(runs).max(1);
        Size {
            arches: a
                .arches
                .clone()
                .unwrap_or_else(|| arches.iter().map(|s| s.to_string()).collect()),
            layers: a.layers.unwrap_or(layers),
            layer_size: a.layer_size.unwrap_or(layer_size),
            big_layer: a.big_layer.unwrap_or(big),
            runs,
            quick_runs: a.quick_runs.unwrap_or(5 * runs).max(1),
            decide_calls: if a.small { 20 } else { 200 },
            cold_loads: if a.small { 1 } else { runs.max(3) },
            small: a.small,
            link: wan::Link {
                per_connection: a
                    .wan_per_connection
                    .unwrap_or(if a.small { 64 } else { 10 })
                    * MIB,
                total: a.wan_total.unwrap_or(if a.small { 256 } else { 100 }) * MIB,
            },
            only: a.only.clone(),
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let size = Size::from_args(&args);
    let pushgate_bin = match &args.pushgate {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .context("locating the target directory")?
            .join("pushgate"),
    };
    if !pushgate_bin.is_file() {
        bail!(
            "{} not found: build it (cargo build --release --bin pushgate) or give --pushgate",
            pushgate_bin.display()
        );
    }
    let policies_dir = args.policies.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/target/wasm32-wasip2/release")
    });
    let _scratch_guard;
    let scratch = match &args.scratch {
        Some(dir) => {
            fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("pushgate-bench-")
                .tempdir()?;
            let p = t.path().to_path_buf();
            _scratch_guard = t;
            p
        }
    };
    let env = Env::new(&scratch, pushgate_bin, args.jobs)?;
    let machine = Machine::describe(&env);
    println!("{}", machine.line());
    let mut bench = Bench {
        env,
        size: size.clone(),
        podman_error: args.no_podman.then(|| "skipped (--no-podman)".to_string()),
        results: Results::default(),
    };
    bench.run(&policies_dir)?;
    let report = bench.report(&machine, &args);
    println!("\n{}", report.text);
    if let Some(out) = &args.out {
        write_section(out, &report.markdown)?;
        println!("results written to {}", out.display());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// environment and processes

/// What child processes run with.
struct Env {
    scratch: PathBuf,
    pushgate: PathBuf,
    jobs: usize,
    /// An empty HOME / XDG_RUNTIME_DIR: no user auth file is picked up.
    home: PathBuf,
    /// TMPDIR for children (podman extracts archives there).
    tmp: PathBuf,
    /// GNU time, for max RSS and CPU time.
    time: Option<PathBuf>,
    counter: AtomicUsize,
}

impl Env {
    fn new(scratch: &Path, pushgate: PathBuf, jobs: usize) -> Result<Env> {
        let home = scratch.join("home");
        let tmp = scratch.join("tmp");
        fs::create_dir_all(&home)?;
        fs::create_dir_all(&tmp)?;
        let time = Path::new("/usr/bin/time");
        let time = (time.is_file()
            && Command::new(time)
                .args(["-f", "%M", "true"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()))
        .then(|| time.to_path_buf());
        if time.is_none() {
            eprintln!("bench: /usr/bin/time (Debian package `time`) is missing: no max RSS");
        }
        Ok(Env {
            scratch: scratch.to_path_buf(),
            pushgate,
            jobs,
            home,
            tmp,
            time,
            counter: AtomicUsize::new(0),
        })
    }

    /// A fresh, unique path under the scratch dir.
    fn fresh(&self, what: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.scratch.join(format!("{what}-{n}"))
    }

    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_remove("REGISTRY_AUTH_FILE")
            .env_remove("DOCKER_CONFIG")
            .env_remove("XDG_CONFIG_HOME")
            .env("HOME", &self.home)
            .env("XDG_RUNTIME_DIR", &self.home)
            .env("TMPDIR", &self.tmp)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a command to completion, timing it; with GNU time, also its max RSS and
    /// CPU time. Fails with the command's stderr if it fails.
    fn measure(&self, program: &Path, args: &[OsString]) -> Result<Measured> {
        let rusage = self.fresh("rusage");
        let mut cmd = match &self.time {
            Some(time) => {
                let mut c = self.command(time);
                c.args(["-f", "%M %U %S", "-o"]).arg(&rusage).arg(program);
                c
            }
            None => self.command(program),
        };
        cmd.args(args);
        let start = Instant::now();
        let out = cmd
            .output()
            .with_context(|| format!("running {}", program.display()))?;
        let wall = start.elapsed();
        let usage = fs::read_to_string(&rusage).unwrap_or_default();
        let _ = fs::remove_file(&rusage);
        if !out.status.success() {
            bail!(
                "{} {} failed ({}):\n{}{}",
                program.display(),
                show_args(args),
                out.status,
                tail(&String::from_utf8_lossy(&out.stderr), 3000),
                tail(&String::from_utf8_lossy(&out.stdout), 1000),
            );
        }
        // GNU time writes "Command exited with ..." first when the command fails;
        // the figures are on the last line.
        let last = usage.lines().last().unwrap_or("");
        let mut fields = last.split_whitespace();
        let rss_kib = fields.next().and_then(|f| f.parse::<u64>().ok());
        let cpu = match (fields.next(), fields.next()) {
            (Some(u), Some(s)) => match (u.parse::<f64>(), s.parse::<f64>()) {
                (Ok(u), Ok(s)) => Some(Duration::from_secs_f64(u + s)),
                _ => None,
            },
            _ => None,
        };
        Ok(Measured {
            wall,
            rss_kib,
            cpu,
            stdout: out.stdout,
        })
    }

    /// `pushgate push` of the sample build in `workdir` to `registry`, with `extra` args.
    fn pushgate_args(&self, registry: &Registry, workdir: &Path, extra: &[&str]) -> Vec<OsString> {
        let repo = format!("{}/{REPO}", registry.addr);
        self.container_args(&repo, ARTIFACT, KEY, workdir, extra)
    }

    /// `pushgate push` of `artifact` (recorded under `key`) of the sample build in
    /// `workdir` to `repo`, with `extra` args.
    fn container_args(
        &self,
        repo: &str,
        artifact: &str,
        key: &str,
        workdir: &Path,
        extra: &[&str],
    ) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec!["push".into(), "--repo".into(), repo.into()];
        for a in [
            "--tag",
            TAG,
            "--artifact",
            artifact,
            "--metajsonname",
            key,
            "--tls-verify=false",
            "--json",
        ] {
            v.push(a.into());
        }
        v.push("--workdir".into());
        v.push(workdir.into());
        v.push("--jobs".into());
        v.push(self.jobs.to_string().into());
        v.extend(extra.iter().map(OsString::from));
        v
    }

    /// Runs pushgate and checks the report's outcome.
    fn pushgate(&self, args: &[OsString], outcome: &str) -> Result<(Measured, PushReport)> {
        self.pushgate_any(args, &[outcome])
    }

    /// Runs pushgate and checks the report's outcome is one of `outcomes`.
    fn pushgate_any(&self, args: &[OsString], outcomes: &[&str]) -> Result<(Measured, PushReport)> {
        let m = self.measure(&self.pushgate, args)?;
        let report = PushReport::parse(&m.stdout)?;
        if !outcomes.contains(&report.outcome.as_str()) {
            bail!(
                "pushgate {}: outcome {:?}, expected one of {outcomes:?}:\n{}",
                show_args(args),
                report.outcome,
                String::from_utf8_lossy(&m.stdout)
            );
        }
        Ok((m, report))
    }
}

fn show_args(args: &[OsString]) -> String {
    args.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// One process run.
#[derive(Clone, Debug)]
struct Measured {
    wall: Duration,
    rss_kib: Option<u64>,
    cpu: Option<Duration>,
    stdout: Vec<u8>,
}

/// What matters of pushgate's `--json` report.
#[derive(Debug)]
struct PushReport {
    outcome: String,
    uploaded_blobs: u64,
    uploaded_bytes: u64,
    retries: u64,
}

impl PushReport {
    fn parse(stdout: &[u8]) -> Result<PushReport> {
        let v: Value = serde_json::from_slice(stdout).with_context(|| {
            format!(
                "pushgate --json printed no JSON report: {}",
                String::from_utf8_lossy(stdout)
            )
        })?;
        let num = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_u64().or_else(|| x.to_string().parse().ok()))
                .unwrap_or(0)
        };
        Ok(PushReport {
            outcome: v["outcome"].as_str().unwrap_or("").to_string(),
            uploaded_blobs: num("uploaded_blobs"),
            uploaded_bytes: num("uploaded_bytes"),
            retries: num("retries"),
        })
    }
}

// ---------------------------------------------------------------------------
// the registry

/// A `docker-registry serve` on a free loopback port, storage and logs in `dir`.
struct Registry {
    child: Child,
    addr: String,
    dir: PathBuf,
}

/// One request, from the access log.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    status: u16,
}

impl Request {
    fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "PUT" | "POST" | "PATCH" | "DELETE")
    }

    fn is_blob_commit(&self) -> bool {
        self.method == "PUT" && self.path.contains("/blobs/uploads/") && self.status == 201
    }
}

impl Registry {
    fn start(env: &Env) -> Result<Registry> {
        let dir = env.fresh("registry");
        fs::create_dir_all(dir.join("storage"))?;
        let mut last = String::new();
        for _ in 0..5 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
                .local_addr()?
                .port();
            let addr = format!("127.0.0.1:{port}");
            let config = dir.join("config.yml");
            fs::write(
                &config,
                format!(
                    "version: 0.1\n\
                     log:\n  level: warn\n  accesslog:\n    disabled: false\n\
                     storage:\n  filesystem:\n    rootdirectory: \"{}\"\n  \
                     maintenance:\n    uploadpurging:\n      enabled: false\n\
                     http:\n  addr: {addr}\n  secret: pushgate-bench\n",
                    dir.join("storage").display()
                ),
            )?;
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(File::create(dir.join("access.log"))?)
                .stderr(File::create(dir.join("registry.log"))?)
                .spawn()
                .context("running docker-registry (Debian package docker-registry)")?;
            let mut reg = Registry {
                child,
                addr,
                dir: dir.clone(),
            };
            match reg.wait_ready() {
                Ok(()) => return Ok(reg),
                Err(e) => {
                    last = format!("{e:#}");
                    if !last.contains("address already in use") {
                        break;
                    }
                }
            }
        }
        bail!("docker-registry did not start: {last}")
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "docker-registry exited ({status}): {}",
                    fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
                );
            }
            match http_status(&self.addr, &format!("/v2/?{PROBE}")) {
                Ok(200) => return Ok(()),
                Ok(s) => bail!("docker-registry answered GET /v2/ with {s}"),
                Err(e) if Instant::now() > deadline => {
                    bail!("docker-registry not ready in 20 s: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn access_log(&self) -> PathBuf {
        self.dir.join("access.log")
    }

    /// Every request served so far, without the bench's probes.
    fn requests(&self) -> Vec<Request> {
        fs::read_to_string(self.access_log())
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.contains(PROBE))
            .filter_map(parse_access_line)
            .collect()
    }

    /// Whether the repository links blob `hex` (what a HEAD on it answers).
    fn has_blob(&self, hex: &str) -> bool {
        self.dir
            .join("storage/docker/registry/v2/repositories")
            .join(REPO)
            .join("_layers/sha256")
            .join(hex)
            .join("link")
            .is_file()
    }

    /// CPU time the registry process has used (user + system).
    fn cpu(&self) -> Duration {
        proc_cpu(self.child.id()).unwrap_or_default()
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `127.0.0.1 - - [date] "PUT /v2/x/blobs/uploads/u?... HTTP/1.1" 201 0 "" "agent"`
fn parse_access_line(line: &str) -> Option<Request> {
    let start = line.find('"')? + 1;
    let len = line[start..].find('"')?;
    let mut parts = line[start..start + len].split(' ');
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let status = line[start + len + 1..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(Request {
        method,
        path,
        status,
    })
}

/// A minimal GET over loopback; returns the status code.
fn http_status(addr: &str, path: &str) -> Result<u16> {
    let sock = SocketAddr::from_str(addr)?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    buf.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status line")
}

/// user + system CPU time of a live process, from /proc/PID/stat.
fn proc_cpu(pid: u32) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // fields 14 and 15 of stat; `after` starts at field 3
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10)) // USER_HZ is 100 on Linux
}

/// "N requests: 3 GET, 2 HEAD, ..." of a slice of requests.
fn request_summary(reqs: &[Request]) -> String {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reqs {
        *by.entry(r.method.as_str()).or_default() += 1;
    }
    let parts: Vec<String> = by.iter().map(|(m, n)| format!("{n} {m}")).collect();
    format!("{} ({})", reqs.len(), parts.join(", "))
}

// ---------------------------------------------------------------------------
// the sample build and its raw form

/// The generated cosa workdir and what is needed to restore and re-upload it.
struct Build {
    workdir: PathBuf,
    /// Each arch's meta.json as generated (without the pushgate key).
    metas: Vec<(PathBuf, Vec<u8>)>,
    archives: Vec<(String, PathBuf)>,
    raw: RawBuild,
}

impl Build {
    fn generate(env: &Env, size: &Size) -> Result<Build> {
        Build::generate_in(env, "workdir", size, size.layers, size.layer_size, 7)
    }

    /// A build of `layers` layers of `layer_size` on each of the size's arches, in
    /// the scratch dir's `name` (and its raw form in `name`-raw).
    fn generate_in(
        env: &Env,
        name: &str,
        size: &Size,
        layers: usize,
        layer_size: u64,
        seed: u64,
    ) -> Result<Build> {
        let workdir = env.scratch.join(name);
        let build = SampleBuild {
            build_id: BUILD_ID.to_string(),
            arches: size.arches.clone(),
            containers: vec![SampleContainer {
                artifact: ARTIFACT.to_string(),
                arches: None,
                layers: None,
            }],
            layers,
            layer_size,
            seed,
        };
        write_build(&workdir, &build)?;
        let mut metas = Vec::new();
        let mut archives = Vec::new();
        for arch in &size.arches {
            let dir = workdir.join("builds").join(BUILD_ID).join(arch);
            let meta = dir.join("meta.json");
            metas.push((meta.clone(), fs::read(&meta)?));
            archives.push((
                arch.clone(),
                dir.join(archive_file_name(BUILD_ID, ARTIFACT, arch)),
            ));
        }
        let raw = RawBuild::extract(&env.scratch.join(format!("{name}-raw")), &archives)?;
        Ok(Build {
            workdir,
            metas,
            archives,
            raw,
        })
    }

    /// Puts back meta.json as generated: pushgate's key is gone.
    fn restore_meta(&self) -> Result<()> {
        for (path, bytes) in &self.metas {
            fs::write(path, bytes)?;
        }
        Ok(())
    }

    fn total_bytes(&self) -> u64 {
        self.raw.blobs.iter().map(|b| b.size).sum()
    }
}

/// The build's blobs and manifests as plain files, for curl.
struct RawBuild {
    blobs: Vec<RawBlob>,
    /// (digest, media type, file) of each arch's manifest.
    manifests: Vec<(String, String, PathBuf)>,
    list: PathBuf,
}

struct RawBlob {
    hex: String,
    size: u64,
    file: PathBuf,
}

impl RawBuild {
    /// Extracts every archive's blobs (once each) and writes the list (an OCI index).
    fn extract(dir: &Path, archives: &[(String, PathBuf)]) -> Result<RawBuild> {
        let blob_dir = dir.join("blobs");
        fs::create_dir_all(&blob_dir)?;
        let mut blobs = Vec::new();
        let mut seen = BTreeSet::new();
        let mut manifests = Vec::new();
        let mut entries = Vec::new();
        for (_, archive) in archives {
            let mut tar = tar::Archive::new(File::open(archive)?);
            let mut index = None;
            for entry in tar.entries()? {
                let mut entry = entry?;
                let path = entry.path()?.to_string_lossy().into_owned();
                if path == "index.json" {
                    let mut s = String::new();
                    entry.read_to_string(&mut s)?;
                    index = Some(serde_json::from_str::<Value>(&s)?);
                } else if let Some(hex) = path.strip_prefix("blobs/sha256/") {
                    let out = blob_dir.join(hex);
                    if !out.exists() && !hex.is_empty() {
                        io::copy(&mut entry, &mut File::create(&out)?)?;
                    }
                }
            }
            let index = index.with_context(|| format!("{}: no index.json", archive.display()))?;
            let desc = &index["manifests"][0];
            let digest = desc["digest"].as_str().context("index.json: no digest")?;
            let hex = digest.trim_start_matches("sha256:");
            let manifest_file = blob_dir.join(hex);
            let manifest: Value = serde_json::from_slice(&fs::read(&manifest_file)?)?;
            let media_type = desc["mediaType"]
                .as_str()
                .or(manifest["mediaType"].as_str())
                .unwrap_or("application/vnd.oci.image.manifest.v1+json")
                .to_string();
            let mut descs = vec![&manifest["config"]];
            descs.extend(manifest["layers"].as_array().into_iter().flatten());
            for d in descs {
                let hex = d["digest"]
                    .as_str()
                    .context("manifest: descriptor without digest")?
                    .trim_start_matches("sha256:")
                    .to_string();
                if seen.insert(hex.clone()) {
                    blobs.push(RawBlob {
                        size: d["size"].as_u64().context("descriptor without size")?,
                        file: blob_dir.join(&hex),
                        hex,
                    });
                }
            }
            let config_hex = manifest["config"]["digest"]
                .as_str()
                .unwrap_or("")
                .trim_start_matches("sha256:");
            let config: Value = serde_json::from_slice(&fs::read(blob_dir.join(config_hex))?)?;
            let mut platform = json!({"architecture": config["architecture"], "os": "linux"});
            if let Some(v) = config["variant"].as_str() {
                platform["variant"] = json!(v);
            }
            entries.push(json!({
                "mediaType": media_type,
                "digest": digest,
                "size": fs::metadata(&manifest_file)?.len(),
                "platform": platform,
            }));
            manifests.push((digest.to_string(), media_type, manifest_file));
        }
        let list = dir.join("list.json");
        fs::write(
            &list,
            serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": entries,
            }))?,
        )?;
        Ok(RawBuild {
            blobs,
            manifests,
            list,
        })
    }

    /// The raw limit: every blob as one POST + one streamed PUT (curl processes,
    /// `jobs` at a time), then the per-arch manifests (in parallel), then the list at
    /// the tag. Nothing is checked first.
    fn push(&self, env: &Env, registry: &Registry) -> Result<Duration> {
        self.push_to(env, &registry.addr)
    }

    /// As [`push`](Self::push), to the registry (or proxy) at `addr`.
    fn push_to(&self, env: &Env, addr: &str) -> Result<Duration> {
        let base = format!("http://{addr}/v2/{REPO}");
        let start = Instant::now();
        let next = AtomicUsize::new(0);
        let error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
        // biggest first, as a scheduler with no other knowledge would do best
        let mut order: Vec<&RawBlob> = self.blobs.iter().collect();
        order.sort_by_key(|b| std::cmp::Reverse(b.size));
        std::thread::scope(|s| {
            for _ in 0..env.jobs.max(1) {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(blob) = order.get(i) else { break };
                        if let Err(e) = curl_blob(env, &base, addr, blob) {
                            *error.lock().expect("error slot") = Some(e);
                            break;
                        }
                    }
                });
            }
        });
        if let Some(e) = error.into_inner().expect("error slot") {
            return Err(e);
        }
        let error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
        std::thread::scope(|s| {
            for (digest, media_type, file) in &self.manifests {
                let (base, error) = (&base, &error);
                s.spawn(move || {
                    let url = format!("{base}/manifests/{digest}");
                    if let Err(e) = curl_put_manifest(env, &url, media_type, file) {
                        *error.lock().expect("error slot") = Some(e);
                    }
                });
            }
        });
        if let Some(e) = error.into_inner().expect("error slot") {
            return Err(e);
        }
        curl_put_manifest(
            env,
            &format!("{base}/manifests/{TAG}"),
            "application/vnd.oci.image.index.v1+json",
            &self.list,
        )?;
        Ok(start.elapsed())
    }
}

fn curl(env: &Env, args: &[&str]) -> Result<Vec<u8>> {
    let out = env
        .command("curl")
        .args(["-sS", "-f"])
        .args(args)
        .output()
        .context("running curl")?;
    if !out.status.success() {
        bail!(
            "curl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

fn curl_blob(env: &Env, base: &str, addr: &str, blob: &RawBlob) -> Result<()> {
    let headers = curl(
        env,
        &[
            "-X",
            "POST",
            "-o",
            "/dev/null",
            "-D",
            "-",
            &format!("{base}/blobs/uploads/"),
        ],
    )?;
    let headers = String::from_utf8_lossy(&headers);
    let location = headers
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("location").then(|| v.trim())
        })
        .context("POST blobs/uploads/: no Location")?;
    let url = if location.starts_with('/') {
        format!("http://{addr}{location}")
    } else {
        location.to_string()
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let file = blob.file.to_string_lossy();
    curl(
        env,
        &[
            "-X",
            "PUT",
            "-H",
            "Expect:",
            "-H",
            "Content-Type: application/octet-stream",
            "-T",
            &file,
            "-o",
            "/dev/null",
            &format!("{url}{sep}digest=sha256:{}", blob.hex),
        ],
    )?;
    Ok(())
}

fn curl_put_manifest(env: &Env, url: &str, media_type: &str, file: &Path) -> Result<()> {
    curl(
        env,
        &[
            "-X",
            "PUT",
            "-H",
            &format!("Content-Type: {media_type}"),
            "--data-binary",
            &format!("@{}", file.display()),
            "-o",
            "/dev/null",
            url,
        ],
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------
// the scenarios

#[derive(Default)]
struct Results {
    build_blobs: usize,
    build_bytes: u64,
    generate: Duration,
    fresh_pushgate: Vec<Measured>,
    fresh_pushgate_registry_cpu: Vec<Duration>,
    fresh_pushgate_requests: String,
    fresh_podman: Vec<Measured>,
    fresh_podman_registry_cpu: Vec<Duration>,
    fresh_podman_requests: String,
    fresh_raw: Vec<Duration>,
    fresh_raw_registry_cpu: Vec<Duration>,
    fresh_raw_requests: String,
    noop: Vec<Measured>,
    noop_requests: String,
    noop_writes: usize,
    skopeo: Vec<Measured>,
    skopeo_requests: String,
    noop_policy: Vec<Measured>,
    noop_policy_name: String,
    record_only: Vec<Measured>,
    record_only_requests: String,
    podman_repush: Vec<Measured>,
    kills: Vec<KillRun>,
    big: Vec<Measured>,
    big_raw: Vec<Duration>,
    big_bytes: u64,
    /// The big layer through the fault proxy's 10% mix (one seed per run).
    big_faults: Vec<FaultRun>,
    policies: Vec<PolicyCost>,
    policy_note: Option<String>,
    faults: Vec<FaultRun>,
    /// Requests of one fresh pushgate push, and the least an idempotent push of
    /// the build needs (see [`min_requests`]).
    fresh_pushgate_count: usize,
    min_requests: usize,
    /// Through a proxy adding [`RTT`] per request.
    rtt_fresh: Vec<Measured>,
    rtt_raw: Vec<Duration>,
    rtt_noop: Vec<Measured>,
    rtt_skopeo: Vec<Measured>,
    rtt_requests: String,
    /// `pushgate release` of three containers, and its largest container alone.
    release: Vec<Measured>,
    release_largest: Vec<Measured>,
    /// The same three containers pushed one after another (`pushgate push` each).
    release_sequential: Vec<Duration>,
    release_requests: String,
    signed: signed::SignedResults,
    wan: wan::WanResults,
}

/// The round trip the latency scenario adds to every request (a transatlantic
/// one; release jobs rarely run beside their registry).
const RTT: Duration = Duration::from_millis(40);

/// The fewest requests a push can make and still not upload what the registry
/// has: per blob a HEAD (is it there?), a POST and a PUT (one-PUT upload; more for
/// chunked ones); per manifest a HEAD and a PUT; for the list a HEAD and a PUT; per
/// tag a GET (what does it serve?) and a PUT. (Raw curl, which knows the registry
/// is empty, needs neither the HEADs nor the GETs.)
fn min_requests(blobs: usize, manifests: usize, tags: usize) -> usize {
    3 * blobs + 2 * manifests + 2 + 2 * tags
}

/// The fault proxy in front of `upstream`, failing one request in ten with
/// the mix release jobs meet (503, 429, resets before and after the write,
/// cut answers), seeded.
fn fault_mix(upstream: &str, seed: u64) -> proxy::Proxy {
    use proxy::{Action, Faults, Proxy};
    Proxy::start(
        upstream,
        Faults::none().random(
            seed,
            0.1,
            vec![
                Action::status(503),
                Action::status_retry_after(429, 0),
                Action::ResetBeforeForward,
                Action::ResetAfterUpstream,
                Action::CutAnswer { bytes: 40 },
            ],
        ),
    )
}

/// One fresh push through a seeded 10% mix of faults.
struct FaultRun {
    wall: Duration,
    /// Faults the proxy injected.
    injected: usize,
    retries: u64,
    uploaded_bytes: u64,
    /// Blob uploads the registry completed (each blob once: no re-send).
    completed: usize,
}

/// One kill-and-rerun.
struct KillRun {
    /// None: pushgate had finished before the kill point.
    killed_after: Option<Duration>,
    blobs_present: usize,
    bytes_present: u64,
    rerun: Option<(Measured, PushReport)>,
}

struct PolicyCost {
    name: String,
    file: String,
    size: u64,
    host_new: Duration,
    cold: Vec<Duration>,
    disk: Vec<Duration>,
    warm: Vec<Duration>,
    decide: Vec<Duration>,
    decide_thread: Vec<Duration>,
    decision: String,
}

/// The containers of the release scenario, sized as a release job's are: (name,
/// artifact, meta.json key, arches (`None`: all), layers (`None`: all)): the OS
/// container on every arch; extensions on every arch, a quarter of its layers;
/// kubevirt, as big, on the first arch only.
type ReleaseContainer = (&'static str, &'static str, &'static str, bool, bool);
const RELEASE_CONTAINERS: [ReleaseContainer; 3] = [
    ("os", "ostree", "base-oscontainer", false, false),
    (
        "extensions",
        "extensions-container",
        "extensions-container",
        false,
        true,
    ),
    ("kubevirt", "kubevirt", "kubevirt", true, false),
];

/// The generated build of the release scenario and how to put its meta.json back.
struct ReleaseBuild {
    workdir: PathBuf,
    metas: Vec<(PathBuf, Vec<u8>)>,
}

impl ReleaseBuild {
    fn generate(env: &Env, size: &Size) -> Result<ReleaseBuild> {
        let workdir = env.fresh("release-workdir");
        write_build(
            &workdir,
            &SampleBuild {
                build_id: BUILD_ID.to_string(),
                arches: size.arches.clone(),
                containers: RELEASE_CONTAINERS
                    .iter()
                    .map(|(_, artifact, _, first_arch, quarter)| SampleContainer {
                        artifact: artifact.to_string(),
                        arches: first_arch.then(|| vec![size.arches[0].clone()]),
                        layers: quarter.then(|| (size.layers / 4).max(1)),
                    })
                    .collect(),
                layers: size.layers,
                layer_size: size.layer_size,
                seed: 13,
            },
        )?;
        let metas = size
            .arches
            .iter()
            .map(|a| {
                let p = workdir
                    .join("builds")
                    .join(BUILD_ID)
                    .join(a)
                    .join("meta.json");
                let b = fs::read(&p)?;
                Ok((p, b))
            })
            .collect::<Result<_>>()?;
        Ok(ReleaseBuild { workdir, metas })
    }

    fn restore(&self) -> Result<()> {
        for (p, b) in &self.metas {
            fs::write(p, b)?;
        }
        Ok(())
    }

    /// The release config pushing every container to `host` ("addr:port").
    fn config(&self, host: &str) -> String {
        let mut config = format!(
            "workdir = {:?}\nbuild = \"{BUILD_ID}\"\n",
            self.workdir.display().to_string()
        );
        for (name, artifact, key, _, _) in &RELEASE_CONTAINERS {
            config.push_str(&format!(
                "\n[[container]]\nname = \"{name}\"\nrepo = \"{host}/{name}\"\ntags = [\"{TAG}\"]\nartifact = \"{artifact}\"\nkey = \"{key}\"\n"
            ));
        }
        config
    }

    /// `pushgate push` of the largest container alone to `host`.
    fn os_args(&self, env: &Env, host: &str) -> Vec<OsString> {
        let (name, artifact, key, _, _) = RELEASE_CONTAINERS[0];
        env.container_args(&format!("{host}/{name}"), artifact, key, &self.workdir, &[])
    }
}

struct Bench {
    env: Env,
    size: Size,
    /// Why podman is not measured, if it is not.
    podman_error: Option<String>,
    results: Results,
}

impl Bench {
    fn run(&mut self, policies_dir: &Path) -> Result<()> {
        let size = self.size.clone();
        println!(
            "generating the build: {} arches × {} layers × {} (and a {} layer image)",
            size.arches.len(),
            size.layers,
            bytes(size.layer_size),
            bytes(size.big_layer)
        );
        let t = Instant::now();
        let build = Build::generate(&self.env, &size)?;
        let big = self.env.scratch.join("big.ociarchive");
        write_oci_archive(
            &big,
            &SampleImage {
                oci_arch: "amd64".into(),
                variant: None,
                layers: 1,
                layer_size: size.big_layer,
                seed: 11,
            },
        )?;
        self.results.generate = t.elapsed();
        self.results.build_blobs = build.raw.blobs.len();
        self.results.build_bytes = build.total_bytes();
        self.results.big_bytes = fs::metadata(&big)?.len();
        println!(
            "  {} blobs, {} ({:.1} s)",
            build.raw.blobs.len(),
            bytes(build.total_bytes()),
            self.results.generate.as_secs_f64()
        );

        let on = |name: &str| {
            size.only
                .as_ref()
                .is_none_or(|o| o.iter().any(|x| x == name))
        };
        if on("fresh") {
            let pushed = self.fresh_push(&build)?;
            self.noop(&build, &pushed, policies_dir)?;
            self.record_only(&build, &pushed)?;
            pushed.stop();
        }
        if on("kill") {
            self.kill_halfway(&build)?;
        }
        if on("faults") {
            self.faults(&build)?;
        }
        if on("latency") {
            self.latency(&build)?;
        }
        if on("release") {
            self.release(&size)?;
        }
        if on("sign") {
            self.signed(&build)?;
        }
        if on("wan") {
            self.wan(&build)?;
        }
        if on("layers") {
            self.many_layers()?;
        }
        if on("big") {
            self.big_layer(&big)?;
        }
        if on("policy") {
            self.policy_cost(policies_dir);
        }
        Ok(())
    }

    /// Fresh pushes, interleaved (pushgate, podman, raw) so that drift hits all
    /// alike. Returns a registry holding the pushed build, with meta.json recorded.
    fn fresh_push(&mut self, build: &Build) -> Result<Registry> {
        let mut pushed = None;
        for run in 0..self.size.runs {
            println!("fresh push, run {}/{}", run + 1, self.size.runs);
            // pushgate
            build.restore_meta()?;
            let reg = Registry::start(&self.env)?;
            let cpu0 = reg.cpu();
            let args = self.env.pushgate_args(&reg, &build.workdir, &[]);
            let (m, report) = self.env.pushgate(&args, "pushed")?;
            if report.uploaded_bytes != build.total_bytes() {
                bail!(
                    "pushgate uploaded {} bytes in {} blobs, the build has {} in {}",
                    report.uploaded_bytes,
                    report.uploaded_blobs,
                    build.total_bytes(),
                    build.raw.blobs.len()
                );
            }
            self.results
                .fresh_pushgate_registry_cpu
                .push(reg.cpu() - cpu0);
            self.results.fresh_pushgate_requests = request_summary(&reg.requests());
            self.results.fresh_pushgate_count = reg.requests().len();
            self.results.min_requests =
                min_requests(build.raw.blobs.len(), build.raw.manifests.len(), 1);
            println!("  pushgate {}", show(&m));
            self.results.fresh_pushgate.push(m);
            if let Some(old) = pushed.replace(reg) {
                Registry::stop(old);
            }

            // podman, as cosa runs it
            if self.podman_error.is_none() {
                let reg = Registry::start(&self.env)?;
                let cpu0 = reg.cpu();
                match self.podman_push(build, &reg) {
                    Ok(m) => {
                        self.results
                            .fresh_podman_registry_cpu
                            .push(reg.cpu() - cpu0);
                        self.results.fresh_podman_requests = request_summary(&reg.requests());
                        println!("  podman   {}", show(&m));
                        self.results.fresh_podman.push(m);
                    }
                    Err(e) => {
                        println!("  podman   failed: {e:#}");
                        self.podman_error = Some(format!("{e:#}"));
                    }
                }
                reg.stop();
            }

            // the raw limit
            let reg = Registry::start(&self.env)?;
            let cpu0 = reg.cpu();
            let wall = build.raw.push(&self.env, &reg)?;
            self.results.fresh_raw_registry_cpu.push(reg.cpu() - cpu0);
            self.results.fresh_raw_requests = request_summary(&reg.requests());
            println!("  raw curl {:.2} s", wall.as_secs_f64());
            self.results.fresh_raw.push(wall);
            reg.stop();
        }
        pushed.context("no run")
    }

    /// Fresh pushes through the fault-injecting proxy, 10% of requests failing
    /// (503, 429, resets before and after the registry's write, cut answers),
    /// one seed per run: the wall time against the fault-free push, and what
    /// the registry completed (every blob once).
    fn faults(&mut self, build: &Build) -> Result<()> {
        let runs = self.size.runs.max(3);
        println!("fresh push through a 10% fault mix, {runs} seeds");
        for seed in 1..=runs as u64 {
            build.restore_meta()?;
            let reg = Registry::start(&self.env)?;
            let proxy = fault_mix(&reg.addr, seed);
            let args = self.env.container_args(
                &format!("{}/{REPO}", proxy.addr()),
                ARTIFACT,
                KEY,
                &build.workdir,
                &["--retry-delay", "50ms", "--retry-times", "8"],
            );
            let (m, report) = self.env.pushgate(&args, "pushed")?;
            let completed = reg.requests().iter().filter(|r| r.is_blob_commit()).count();
            let injected = proxy.log().iter().filter(|e| e.fault.is_some()).count();
            println!(
                "  seed {seed}: {} ({injected} faults, {} retries, {completed} blob uploads completed)",
                show(&m),
                report.retries
            );
            self.results.faults.push(FaultRun {
                wall: m.wall,
                injected,
                retries: report.retries,
                uploaded_bytes: report.uploaded_bytes,
                completed,
            });
            reg.stop();
        }
        Ok(())
    }

    /// The fresh push and the no-op, through a proxy adding [`RTT`] to every
    /// request: pushgate against raw curl and one skopeo inspect, equally delayed.
    fn latency(&mut self, build: &Build) -> Result<()> {
        use proxy::{Faults, Proxy};
        println!(
            "fresh push and no-op at {} ms round trip, {} runs",
            RTT.as_millis(),
            self.size.runs
        );
        for run in 0..self.size.runs {
            build.restore_meta()?;
            let reg = Registry::start(&self.env)?;
            let proxy = Proxy::start(&reg.addr, Faults::none().latency(RTT));
            let repo = format!("{}/{REPO}", proxy.addr());
            let args = self
                .env
                .container_args(&repo, ARTIFACT, KEY, &build.workdir, &[]);
            let (m, _) = self.env.pushgate(&args, "pushed")?;
            self.results.rtt_requests = request_summary(&reg.requests());
            println!("  pushgate {}", show(&m));
            self.results.rtt_fresh.push(m);
            for _ in 0..self.size.quick_runs.div_ceil(self.size.runs) {
                let (m, _) = self.env.pushgate(&args, "up-to-date")?;
                self.results.rtt_noop.push(m);
                let skopeo_args: Vec<OsString> = vec![
                    "inspect".into(),
                    "--raw".into(),
                    "--tls-verify=false".into(),
                    format!("docker://{}/{REPO}:{TAG}", proxy.addr()).into(),
                ];
                let m = self.env.measure(Path::new("skopeo"), &skopeo_args)?;
                self.results.rtt_skopeo.push(m);
            }
            drop(proxy);
            reg.stop();

            let reg = Registry::start(&self.env)?;
            let proxy = Proxy::start(&reg.addr, Faults::none().latency(RTT));
            let wall = build.raw.push_to(&self.env, proxy.addr())?;
            println!("  raw curl {} (run {})", secs(wall), run + 1);
            self.results.rtt_raw.push(wall);
            drop(proxy);
            reg.stop();
        }
        println!(
            "  no-op {:.1} ms, skopeo {:.1} ms",
            ms(median(&walls(&self.results.rtt_noop))),
            ms(median(&walls(&self.results.rtt_skopeo)))
        );
        Ok(())
    }

    /// `pushgate release` of three containers of one build, sized as a release
    /// job's are (the OS container on every arch; extensions on every arch, a
    /// quarter of its size; kubevirt, as big, on the first arch), against the OS
    /// container pushed alone and against the three pushed one after another.
    fn release(&mut self, size: &Size) -> Result<()> {
        println!("release of 3 containers, {} runs", size.runs);
        let rb = ReleaseBuild::generate(&self.env, size)?;
        for _ in 0..size.runs {
            rb.restore()?;
            let reg = Registry::start(&self.env)?;
            let m = self.run_release(&rb, &reg.addr)?;
            self.results.release_requests = request_summary(&reg.requests());
            println!("  release  {}", show(&m));
            self.results.release.push(m);
            reg.stop();

            rb.restore()?;
            let reg = Registry::start(&self.env)?;
            let args = rb.os_args(&self.env, &reg.addr);
            let (m, _) = self.env.pushgate(&args, "pushed")?;
            println!("  os alone {}", show(&m));
            let mut one_after_another = m.wall;
            self.results.release_largest.push(m);
            // The other two on the same registry, after it: the release done
            // one container at a time.
            for (name, artifact, key, _, _) in &RELEASE_CONTAINERS[1..] {
                let repo = format!("{}/{name}", reg.addr);
                let args = self
                    .env
                    .container_args(&repo, artifact, key, &rb.workdir, &[]);
                let (m, _) = self.env.pushgate(&args, "pushed")?;
                one_after_another += m.wall;
            }
            println!("  one after another {}", secs(one_after_another));
            self.results.release_sequential.push(one_after_another);
            reg.stop();
        }
        Ok(())
    }

    /// `pushgate release` of the release build to `host`, checked.
    fn run_release(&self, rb: &ReleaseBuild, host: &str) -> Result<Measured> {
        let config_path = self.env.fresh("release.toml");
        fs::write(&config_path, rb.config(host))?;
        let args: Vec<OsString> = vec![
            "release".into(),
            "--config".into(),
            config_path.into(),
            "--tls-verify=false".into(),
            "--json".into(),
            "--jobs".into(),
            self.env.jobs.to_string().into(),
        ];
        let m = self.env.measure(&self.env.pushgate, &args)?;
        let v: Value = serde_json::from_slice(&m.stdout).context("release --json")?;
        if v["ok"] != true {
            bail!("release failed: {}", String::from_utf8_lossy(&m.stdout));
        }
        Ok(m)
    }

    /// `podman manifest create`, `manifest add` per archive, `manifest push --all`,
    /// with fresh vfs storage: the wall time of the whole sequence, the max RSS of
    /// its biggest step, the CPU time of all steps.
    fn podman_push(&self, build: &Build, reg: &Registry) -> Result<Measured> {
        let root = self.env.fresh("podman");
        let base: Vec<OsString> = vec![
            "--storage-driver".into(),
            "vfs".into(),
            "--root".into(),
            root.join("root").into(),
            "--runroot".into(),
            root.join("run").into(),
        ];
        let list = format!("{}/{REPO}:{TAG}", reg.addr);
        let mut steps: Vec<Vec<OsString>> = vec![vec!["manifest".into(), "create".into()]];
        steps[0].push(list.clone().into());
        for (_, archive) in &build.archives {
            let mut s: Vec<OsString> = vec!["manifest".into(), "add".into(), list.clone().into()];
            let mut src = OsString::from("oci-archive:");
            src.push(archive);
            s.push(src);
            steps.push(s);
        }
        steps.push(
            [
                "manifest",
                "push",
                "--all",
                "--tls-verify=false",
                "--quiet",
                &list,
                &format!("docker://{list}"),
            ]
            .iter()
            .map(OsString::from)
            .collect(),
        );
        let mut total = Measured {
            wall: Duration::ZERO,
            rss_kib: None,
            cpu: None,
            stdout: Vec::new(),
        };
        let start = Instant::now();
        for step in steps {
            let mut args = base.clone();
            args.extend(step);
            let m = self.env.measure(Path::new("podman"), &args)?;
            total.rss_kib = total.rss_kib.max(m.rss_kib);
            total.cpu = match (total.cpu, m.cpu) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
        }
        total.wall = start.elapsed();
        let _ = fs::remove_dir_all(&root);
        Ok(total)
    }

    /// The no-op rerun vs one `skopeo inspect --raw`, interleaved; then the no-op
    /// with a policy module, when one is built.
    fn noop(&mut self, build: &Build, reg: &Registry, policies_dir: &Path) -> Result<()> {
        println!(
            "no-op rerun vs skopeo inspect, {} runs",
            self.size.quick_runs
        );
        let args = self.env.pushgate_args(reg, &build.workdir, &[]);
        let skopeo_args: Vec<OsString> = vec![
            "inspect".into(),
            "--raw".into(),
            "--tls-verify=false".into(),
            format!("docker://{}/{REPO}:{TAG}", reg.addr).into(),
        ];
        let metas_before: Vec<Vec<u8>> = build
            .metas
            .iter()
            .map(|(p, _)| fs::read(p))
            .collect::<io::Result<_>>()?;
        for _ in 0..self.size.quick_runs {
            let before = reg.requests().len();
            let (m, _) = self.env.pushgate(&args, "up-to-date")?;
            let reqs = reg.requests()[before..].to_vec();
            self.results.noop_writes += reqs.iter().filter(|r| r.is_write()).count();
            self.results.noop_requests = request_summary(&reqs);
            self.results.noop.push(m);

            let before = reg.requests().len();
            let m = self.env.measure(Path::new("skopeo"), &skopeo_args)?;
            self.results.skopeo_requests = request_summary(&reg.requests()[before..]);
            self.results.skopeo.push(m);
        }
        for ((p, _), before) in build.metas.iter().zip(&metas_before) {
            if &fs::read(p)? != before {
                bail!("the no-op rerun changed {}", p.display());
            }
        }
        println!(
            "  pushgate {:.1} ms, skopeo {:.1} ms",
            ms(median(&walls(&self.results.noop))),
            ms(median(&walls(&self.results.skopeo)))
        );
        // the shipped `default` policy (pushgate_policy_default.wasm), if built
        let default = fs::read_dir(policies_dir).ok().and_then(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path())).find(|p| {
                p.extension().is_some_and(|x| x == "wasm")
                    && p.file_stem()
                        .is_some_and(|s| s.to_string_lossy().ends_with("default"))
            })
        });
        if let Some(default) = default {
            let name = default
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut args = args.clone();
            args.push("--policy".into());
            args.push(default.into());
            for _ in 0..self.size.quick_runs {
                let (m, _) = self.env.pushgate(&args, "up-to-date")?;
                self.results.noop_policy.push(m);
            }
            println!(
                "  pushgate --policy {name} {:.1} ms",
                ms(median(&walls(&self.results.noop_policy)))
            );
            self.results.noop_policy_name = name;
        }
        Ok(())
    }

    /// meta.json lost after a complete push: pushgate records only; cosa re-pushes
    /// everything with podman (the registry holds all, so podman only skips blobs).
    fn record_only(&mut self, build: &Build, reg: &Registry) -> Result<()> {
        println!("record-only recovery, {} runs", self.size.runs);
        let args = self.env.pushgate_args(reg, &build.workdir, &[]);
        for _ in 0..self.size.runs {
            build.restore_meta()?;
            let before = reg.requests().len();
            let (m, report) = self.env.pushgate(&args, "recorded")?;
            if report.uploaded_bytes != 0 {
                bail!("record-only uploaded {} bytes", report.uploaded_bytes);
            }
            self.results.record_only_requests = request_summary(&reg.requests()[before..]);
            self.results.record_only.push(m);
        }
        // After pushgate's runs: podman pushes a list of its own making (other bytes,
        // another digest), so the tag no longer points to pushgate's list.
        for _ in 0..self.size.runs {
            if self.podman_error.is_some() {
                break;
            }
            match self.podman_push(build, reg) {
                Ok(m) => self.results.podman_repush.push(m),
                Err(e) => {
                    println!("  podman re-push failed: {e:#}");
                    break;
                }
            }
        }
        println!(
            "  pushgate {:.2} s{}",
            median(&walls(&self.results.record_only)).as_secs_f64(),
            if self.results.podman_repush.is_empty() {
                String::new()
            } else {
                format!(
                    ", podman re-push {:.2} s",
                    median(&walls(&self.results.podman_repush)).as_secs_f64()
                )
            }
        );
        Ok(())
    }

    /// SIGKILL pushgate once half the blobs are committed (as the access log shows),
    /// then rerun: what did the rerun send, against what was still missing?
    fn kill_halfway(&mut self, build: &Build) -> Result<()> {
        println!("kill halfway and rerun, {} runs", self.size.runs);
        let half = build.raw.blobs.len().div_ceil(2);
        for _ in 0..self.size.runs {
            build.restore_meta()?;
            let reg = Registry::start(&self.env)?;
            let args = self.env.pushgate_args(&reg, &build.workdir, &[]);
            let start = Instant::now();
            let mut child = self
                .env
                .command(&self.env.pushgate)
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            let mut log = File::open(reg.access_log())?;
            let mut pos = 0u64;
            let mut pending = String::new();
            let mut commits = 0usize;
            let killed_after = loop {
                if child.try_wait()?.is_some() {
                    break None;
                }
                log.seek(SeekFrom::Start(pos))?;
                let mut chunk = String::new();
                pos += log.read_to_string(&mut chunk)? as u64;
                pending.push_str(&chunk);
                while let Some(nl) = pending.find('\n') {
                    let line: String = pending.drain(..=nl).collect();
                    if parse_access_line(&line).is_some_and(|r| r.is_blob_commit()) {
                        commits += 1;
                    }
                }
                if commits >= half {
                    child.kill()?; // SIGKILL
                    break Some(start.elapsed());
                }
                if start.elapsed() > Duration::from_secs(600) {
                    child.kill()?;
                    bail!("pushgate did not reach half the blobs in 10 minutes");
                }
                std::thread::sleep(Duration::from_millis(2));
            };
            child.wait()?;
            // The registry may still commit an upload whose body had fully arrived
            // when the client died: wait until what it holds stops changing.
            let holds = || -> Vec<&RawBlob> {
                build
                    .raw
                    .blobs
                    .iter()
                    .filter(|b| reg.has_blob(&b.hex))
                    .collect()
            };
            let mut present = holds();
            for _ in 0..50 {
                std::thread::sleep(Duration::from_millis(200));
                let now = holds();
                if now.len() == present.len() {
                    break;
                }
                present = now;
            }
            // The kill lands a moment after the log showed half the blobs: on a
            // tiny build pushgate may have got further, even to the end.
            let rerun = match killed_after {
                Some(_) => Some(
                    self.env
                        .pushgate_any(&args, &["pushed", "recorded", "up-to-date"])?,
                ),
                None => None,
            };
            let killed_after =
                killed_after.filter(|_| rerun.as_ref().is_some_and(|(_, r)| r.outcome == "pushed"));
            let run = KillRun {
                killed_after,
                blobs_present: present.len(),
                bytes_present: present.iter().map(|b| b.size).sum(),
                rerun: rerun.filter(|(_, r)| r.outcome == "pushed"),
            };
            match (&run.killed_after, &run.rerun) {
                (Some(after), Some((m, r))) => println!(
                    "  killed after {:.2} s with {}/{} blobs in; rerun sent {} in {} blobs ({} were missing) in {:.2} s",
                    after.as_secs_f64(),
                    run.blobs_present,
                    build.raw.blobs.len(),
                    bytes(r.uploaded_bytes),
                    r.uploaded_blobs,
                    bytes(build.total_bytes() - run.bytes_present),
                    m.wall.as_secs_f64()
                ),
                _ => println!(
                    "  pushgate finished before half the blobs were seen: too small to interrupt"
                ),
            }
            self.results.kills.push(run);
            reg.stop();
        }
        Ok(())
    }

    /// Max RSS pushing an image of one big layer.
    fn big_layer(&mut self, archive: &Path) -> Result<()> {
        println!(
            "one {} layer, {} runs",
            bytes(self.size.big_layer),
            self.size.runs
        );
        let raw_dir = self.env.fresh("raw-big");
        let raw = RawBuild::extract(&raw_dir, &[("amd64".into(), archive.to_path_buf())])?;
        for _ in 0..self.size.runs {
            let reg = Registry::start(&self.env)?;
            let mut src = OsString::from("oci-archive:");
            src.push(archive);
            let args: Vec<OsString> = vec![
                "push".into(),
                "--repo".into(),
                format!("{}/big", reg.addr).into(),
                "--tag".into(),
                "t".into(),
                "--image".into(),
                src,
                "--tls-verify=false".into(),
                "--json".into(),
                "--jobs".into(),
                self.env.jobs.to_string().into(),
            ];
            let (m, _) = self.env.pushgate(&args, "pushed")?;
            println!("  pushgate {}", show(&m));
            self.results.big.push(m);
            reg.stop();

            let reg = Registry::start(&self.env)?;
            let wall = raw.push(&self.env, &reg)?;
            println!("  raw curl {}", secs(wall));
            self.results.big_raw.push(wall);
            reg.stop();

            // The same layer through a link failing one request in ten: it must
            // land in one run, each blob completed once.
            let seed = self.results.big_faults.len() as u64 + 1;
            let reg = Registry::start(&self.env)?;
            let proxy = fault_mix(&reg.addr, seed);
            let mut faulty = args.clone();
            faulty[2] = format!("{}/big", proxy.addr()).into();
            faulty.extend(["--retry-delay".into(), "50ms".into()]);
            let (m, report) = self.env.pushgate(&faulty, "pushed")?;
            let completed = reg.requests().iter().filter(|r| r.is_blob_commit()).count();
            let injected = proxy.log().iter().filter(|e| e.fault.is_some()).count();
            println!(
                "  through a 10% fault mix, seed {seed}: {} ({injected} faults, {} retries)",
                show(&m),
                report.retries
            );
            self.results.big_faults.push(FaultRun {
                wall: m.wall,
                injected,
                retries: report.retries,
                uploaded_bytes: report.uploaded_bytes,
                completed,
            });
            reg.stop();
        }
        let _ = fs::remove_dir_all(&raw_dir);
        Ok(())
    }

    /// Policy cost, in process: a new host, a cold load (compile), a warm load
    /// (cache hit), and `decide` (a fresh store and instance per call, as the host
    /// does), directly and through a thread as `decide::decide` runs it.
    fn policy_cost(&mut self, dir: &Path) {
        let mut modules: Vec<PathBuf> = fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
                    .collect()
            })
            .unwrap_or_default();
        modules.sort();
        if modules.is_empty() {
            self.results.policy_note = Some(format!(
                "no policy modules in {} (scripts/build-policies.sh builds them)",
                dir.display()
            ));
            println!("policy cost: skipped, no modules in {}", dir.display());
            return;
        }
        println!("policy cost, {} modules", modules.len());
        for path in modules {
            match self.one_policy(&path) {
                Ok(c) => {
                    println!(
                        "  {}: cold load {:.1} ms, from disk {:.1} ms, warm load {:.3} ms, decide {:.3} ms ({})",
                        c.name,
                        ms(median(&c.cold)),
                        ms(median(&c.disk)),
                        ms(median(&c.warm)),
                        ms(median(&c.decide)),
                        c.decision
                    );
                    self.results.policies.push(c);
                }
                Err(e) => {
                    println!("  {}: {e:#}", path.display());
                    let note = self.results.policy_note.get_or_insert_with(String::new);
                    note.push_str(&format!("{}: {e:#}. ", path.display()));
                }
            }
        }
    }

    fn one_policy(&self, path: &Path) -> Result<PolicyCost> {
        let mut cold = Vec::new();
        let mut disk = Vec::new();
        let mut host_new = Vec::new();
        let mut kept = None;
        for _ in 0..self.size.cold_loads {
            // A fresh, empty compile cache: the first load compiles (and stores),
            // a new host's load then reads the compiled module back from disk, as
            // a rerun does.
            let cache = tempfile::tempdir()?;
            // SAFETY: the bench runs no other thread that reads the environment now.
            unsafe { std::env::set_var("XDG_CACHE_HOME", cache.path()) };
            let t = Instant::now();
            let host = PolicyHost::new(Limits::default())?;
            host_new.push(t.elapsed());
            let t = Instant::now();
            host.load(path)?;
            cold.push(t.elapsed());
            let host = PolicyHost::new(Limits::default())?;
            let t = Instant::now();
            let policy = host.load(path)?;
            disk.push(t.elapsed());
            kept = Some((host, policy));
        }
        let (host, policy) = kept.expect("at least one load");
        let mut warm = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            host.load(path)?;
            warm.push(t.elapsed());
        }
        let settings = if policy.info.sample_settings.trim().is_empty() {
            "{}".to_string()
        } else {
            policy.info.sample_settings.clone()
        };
        let facts = sample_facts(&self.size.arches, &settings)?;
        let mut decide = Vec::new();
        let mut decision = String::new();
        // one call outside the timing: the first instantiation warms lazy state
        host.decide(&policy, &facts)?;
        for _ in 0..self.size.decide_calls {
            let t = Instant::now();
            let (d, _) = host.decide(&policy, &facts)?;
            decide.push(t.elapsed());
            decision = format!("{d:?}");
        }
        let mut decide_thread = Vec::new();
        for _ in 0..self.size.decide_calls {
            let t = Instant::now();
            std::thread::scope(|s| {
                s.spawn(|| host.decide(&policy, &facts))
                    .join()
                    .expect("policy thread")
            })?;
            decide_thread.push(t.elapsed());
        }
        let kind = decision.split('(').next().unwrap_or("").to_lowercase();
        Ok(PolicyCost {
            name: format!("{} {}", policy.info.name, policy.info.version),
            file: path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            size: policy.info.size,
            host_new: median(&host_new),
            cold,
            disk,
            warm,
            decide,
            decide_thread,
            decision: kind,
        })
    }
}

/// Facts as the host gathers them for a push of the sample build over a tag that
/// points to an older list.
fn sample_facts(arches: &[String], settings: &str) -> Result<Facts> {
    let d = |n: u8| format!("sha256:{}", format!("{n:02x}").repeat(32));
    let doc = json!({
        "container": KEY,
        "repo": format!("quay.io/{REPO}"),
        "tags": [
            {"name": TAG, "current": d(1), "is-desired": false},
            {"name": BUILD_ID, "current": null, "is-desired": false},
        ],
        "build-id": BUILD_ID,
        "key": KEY,
        "requested-arches": [],
        "present-arches": arches,
        "arches": arches.iter().enumerate().map(|(i, a)| json!({
            "arch": a,
            "has-key": false,
            "recorded-digest": null,
            "desired-digest": d(16 + i as u8),
            "registry-digest": d(32 + i as u8),
        })).collect::<Vec<_>>(),
        "desired-list-digest": d(2),
        "verdict": "push",
        "verdict-reason": format!("{TAG} points to another list"),
        "force": false,
        "dry-run": false,
    });
    let mut facts: Facts =
        serde_json::from_value(doc).context("building sample facts (has src/facts.rs changed?)")?;
    facts.settings = settings.to_string();
    Ok(facts)
}

// ---------------------------------------------------------------------------
// figures and the report

/// `a / b`, when `b` is not zero.
fn ratio(a: Duration, b: Duration) -> Option<f64> {
    (!b.is_zero()).then(|| a.as_secs_f64() / b.as_secs_f64())
}

fn walls(ms: &[Measured]) -> Vec<Duration> {
    ms.iter().map(|m| m.wall).collect()
}

fn median(v: &[Duration]) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let mut s = v.to_vec();
    s.sort();
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2
    }
}

fn median_cpu(v: &[Measured]) -> Option<Duration> {
    let c: Vec<Duration> = v.iter().filter_map(|m| m.cpu).collect();
    (!c.is_empty()).then(|| median(&c))
}

fn max_rss(v: &[Measured]) -> Option<u64> {
    v.iter().filter_map(|m| m.rss_kib).max()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.1} ms", ms(d))
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

fn bytes(n: u64) -> String {
    if n >= 1 << 30 {
        format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64)
    } else if n >= MIB {
        format!("{:.1} MiB", n as f64 / MIB as f64)
    } else if n >= 1024 {
        format!("{:.0} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

fn rss(kib: Option<u64>) -> String {
    kib.map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

fn show(m: &Measured) -> String {
    format!(
        "{} (cpu {}, max RSS {})",
        secs(m.wall),
        m.cpu.map_or("n/a".into(), secs),
        rss(m.rss_kib)
    )
}

fn list(v: &[Duration]) -> String {
    v.iter().map(|d| secs(*d)).collect::<Vec<_>>().join(", ")
}

/// The machine, for the report.
struct Machine {
    cpus: usize,
    cpu_model: String,
    memory: String,
    kernel: String,
    tools: Vec<String>,
    commit: String,
    date: String,
    /// 1-minute load average when the bench started.
    load: String,
}

impl Machine {
    fn describe(env: &Env) -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let memory = fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .map_or("unknown".into(), |kib| bytes(kib * 1024));
        let first_line = |prog: &str, args: &[&str]| -> Option<String> {
            let out = Command::new(prog).args(args).output().ok()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            Some(text.lines().next()?.trim().to_string())
        };
        let mut tools = Vec::new();
        let pushgate = env.pushgate.to_string_lossy().into_owned();
        for prog in [
            pushgate.as_str(),
            "podman",
            "skopeo",
            "docker-registry",
            "curl",
        ] {
            if let Some(l) = first_line(prog, &["--version"]) {
                let l = l
                    .replace(" github.com/docker/distribution", "")
                    .replace(" version ", " ");
                // curl's first line lists every library: keep "curl X.Y.Z"
                tools.push(l.split(" (").next().unwrap_or(&l).to_string());
            }
        }
        let commit = first_line(
            "git",
            &[
                "-C",
                env!("CARGO_MANIFEST_DIR"),
                "describe",
                "--always",
                "--dirty",
            ],
        )
        .unwrap_or_else(|| "unknown".into());
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            memory,
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            tools,
            commit,
            load: load_average(),
            date: first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default(),
        }
    }

    fn line(&self) -> String {
        format!(
            "{} CPUs ({}), {} RAM, Linux {}; {}",
            self.cpus,
            self.cpu_model,
            self.memory,
            self.kernel,
            self.tools.join(", ")
        )
    }
}

/// One line of the summary table.
struct Row {
    what: String,
    pushgate: String,
    baseline: String,
    ratio: String,
    target: String,
    verdict: String,
}

fn target_row(
    what: &str,
    pushgate: String,
    baseline: String,
    ratio: Option<f64>,
    limit: f64,
    unit_target: &str,
    judged: bool,
) -> Row {
    let (ratio_s, verdict) = match ratio {
        Some(r) if r.is_finite() && judged => (
            format!("{r:.2}"),
            if r <= limit { "met" } else { "missed" }.to_string(),
        ),
        Some(r) if r.is_finite() => (format!("{r:.2}"), "not judged (smoke test)".into()),
        _ => ("n/a".into(), "not measured".into()),
    };
    Row {
        what: what.into(),
        pushgate,
        baseline,
        ratio: ratio_s,
        target: unit_target.into(),
        verdict,
    }
}

struct Report {
    text: String,
    markdown: String,
}

impl Bench {
    fn report(&self, machine: &Machine, args: &Args) -> Report {
        let r = &self.results;
        let s = &self.size;
        let mut rows = Vec::new();

        let pg = median(&walls(&r.fresh_pushgate));
        let podman = median(&walls(&r.fresh_podman));
        let raw = median(&r.fresh_raw);
        let podman_s = match &self.podman_error {
            Some(e) => format!("podman: {}", first_line_of(e)),
            None => format!("podman {}", secs(podman)),
        };
        rows.push(target_row(
            "fresh push, whole build: vs podman",
            secs(pg),
            podman_s,
            if self.podman_error.is_some() {
                None
            } else {
                ratio(pg, podman)
            },
            0.5,
            "≤ 0.5",
            !s.small,
        ));
        rows.push(target_row(
            "fresh push, whole build: vs raw curl",
            secs(pg),
            format!("raw {}", secs(raw)),
            ratio(pg, raw),
            1.0,
            "≤ 1.0",
            !s.small,
        ));
        rows.push(target_row(
            "requests of a fresh push vs the least an idempotent push needs",
            r.fresh_pushgate_count.to_string(),
            format!("minimum {}", r.min_requests),
            (r.min_requests > 0).then(|| r.fresh_pushgate_count as f64 / r.min_requests as f64),
            1.1,
            "≤ 1.1",
            true,
        ));
        let rtt_ms = RTT.as_millis();
        let (rtt_pg, rtt_raw) = (median(&walls(&r.rtt_fresh)), median(&r.rtt_raw));
        rows.push(target_row(
            &format!("fresh push at {rtt_ms} ms RTT vs raw curl"),
            secs(rtt_pg),
            format!("raw {}", secs(rtt_raw)),
            ratio(rtt_pg, rtt_raw),
            1.1,
            "≤ 1.1",
            !s.small,
        ));
        let (rtt_noop, rtt_skopeo) = (median(&walls(&r.rtt_noop)), median(&walls(&r.rtt_skopeo)));
        rows.push(target_row(
            &format!("no-op at {rtt_ms} ms RTT vs one skopeo inspect --raw"),
            secs(rtt_noop),
            format!("skopeo {}", secs(rtt_skopeo)),
            ratio(rtt_noop, rtt_skopeo),
            1.0,
            "≤ 1",
            !s.small,
        ));
        let (rel, alone) = (
            median(&walls(&r.release)),
            median(&walls(&r.release_largest)),
        );
        rows.push(target_row(
            "release of 3 containers vs its largest alone",
            secs(rel),
            format!("largest alone {}", secs(alone)),
            ratio(rel, alone),
            1.2,
            "≤ 1.2",
            !s.small,
        ));
        let sequential = median(&r.release_sequential);
        rows.push(target_row(
            "release of 3 containers vs the three one after another",
            secs(rel),
            format!("one after another {}", secs(sequential)),
            ratio(rel, sequential),
            1.0,
            "≤ 1",
            !s.small,
        ));
        let noop = median(&walls(&r.noop));
        let skopeo = median(&walls(&r.skopeo));
        rows.push(target_row(
            "no-op rerun vs one skopeo inspect --raw",
            secs(noop),
            format!("skopeo {}", secs(skopeo)),
            ratio(noop, skopeo),
            1.0,
            "≤ 1",
            !s.small,
        ));
        let rec = median(&walls(&r.record_only));
        rows.push(target_row(
            "record-only recovery vs the no-op",
            secs(rec),
            format!("no-op {}", secs(noop)),
            ratio(rec, noop),
            3.0,
            "≤ 3",
            !s.small,
        ));
        let repush = median(&walls(&r.podman_repush));
        rows.push(Row {
            what: "record-only recovery (meta.json lost)".into(),
            pushgate: secs(rec),
            baseline: if r.podman_repush.is_empty() {
                "n/a".into()
            } else {
                format!("cosa re-push (podman) {}", secs(repush))
            },
            ratio: ratio(rec, repush).map_or("n/a".into(), |x| format!("{x:.2}")),
            target: "—".into(),
            verdict: "—".into(),
        });
        let killed: Vec<&KillRun> = r.kills.iter().filter(|k| k.rerun.is_some()).collect();
        let resent_row = if killed.is_empty() {
            Row {
                what: "rerun after SIGKILL at half the blobs".into(),
                pushgate: "not interrupted (too small)".into(),
                baseline: "—".into(),
                ratio: "—".into(),
                target: "—".into(),
                verdict: "not measured".into(),
            }
        } else {
            let total = r.build_bytes;
            let resent: Vec<i128> = killed
                .iter()
                .map(|k| {
                    let sent = k.rerun.as_ref().map_or(0, |(_, p)| p.uploaded_bytes);
                    sent as i128 - (total - k.bytes_present) as i128
                })
                .collect();
            let worst = resent.iter().copied().max().unwrap_or(0);
            let k = killed[0];
            let (m, p) = k.rerun.as_ref().expect("rerun");
            Row {
                what: "rerun after SIGKILL at half the blobs".into(),
                pushgate: format!(
                    "sent {} of {} missing, {} re-sent",
                    bytes(p.uploaded_bytes),
                    bytes(total - k.bytes_present),
                    bytes(worst.max(0) as u64)
                ),
                baseline: format!("rerun {}", secs(m.wall)),
                ratio: "—".into(),
                target: "0 re-sent".into(),
                verdict: if worst <= 0 { "met" } else { "missed" }.into(),
            }
        };
        rows.push(resent_row);
        if !r.faults.is_empty() {
            let wall = median(&r.faults.iter().map(|f| f.wall).collect::<Vec<_>>());
            let clean = median(&walls(&r.fresh_pushgate));
            let twice = r
                .faults
                .iter()
                .any(|f| f.completed != r.build_blobs || f.uploaded_bytes != r.build_bytes);
            let injected: usize = r.faults.iter().map(|f| f.injected).sum();
            let retries: u64 = r.faults.iter().map(|f| f.retries).sum();
            rows.push(Row {
                what: "fresh push through a 10% fault mix".into(),
                pushgate: format!(
                    "{} ({injected} faults, {retries} retries in {} runs)",
                    secs(wall),
                    r.faults.len()
                ),
                baseline: format!("fault-free {}", secs(clean)),
                ratio: ratio(wall, clean).map_or("n/a".into(), |x| format!("{x:.2}")),
                target: "every blob once".into(),
                verdict: if twice { "missed" } else { "met" }.into(),
            });
        }
        let big = median(&walls(&r.big));
        let big_raw = median(&r.big_raw);
        rows.push(Row {
            what: format!("push of one {} layer: vs raw curl", bytes(s.big_layer)),
            pushgate: secs(big),
            baseline: format!("raw {}", secs(big_raw)),
            ratio: ratio(big, big_raw).map_or("n/a".into(), |x| format!("{x:.2}")),
            target: "—".into(),
            verdict: "—".into(),
        });
        if !r.big_faults.is_empty() {
            let wall = median(&r.big_faults.iter().map(|f| f.wall).collect::<Vec<_>>());
            let injected: usize = r.big_faults.iter().map(|f| f.injected).sum();
            let retries: u64 = r.big_faults.iter().map(|f| f.retries).sum();
            // The image's config and its one layer, each completed once.
            let twice = r.big_faults.iter().any(|f| f.completed != 2);
            rows.push(Row {
                what: format!(
                    "push of one {} layer through a 10% fault mix",
                    bytes(s.big_layer)
                ),
                pushgate: format!(
                    "{} ({injected} faults, {retries} retries in {} runs)",
                    secs(wall),
                    r.big_faults.len()
                ),
                baseline: format!("fault-free {}", secs(big)),
                ratio: ratio(wall, big).map_or("n/a".into(), |x| format!("{x:.2}")),
                target: "lands in one run, every blob once".into(),
                verdict: if twice { "missed" } else { "met" }.into(),
            });
        }
        let mem_limit = 64 * 1024;
        for (what, v, baseline) in [
            (
                format!("max RSS, one {} layer", bytes(s.big_layer)),
                &r.big,
                "—".to_string(),
            ),
            (
                format!("max RSS, whole build ({})", bytes(r.build_bytes)),
                &r.fresh_pushgate,
                format!("podman {}", rss(max_rss(&r.fresh_podman))),
            ),
        ] {
            let m = max_rss(v);
            rows.push(Row {
                what,
                pushgate: rss(m),
                baseline,
                ratio: "—".into(),
                target: "≤ 64 MiB".into(),
                verdict: match m {
                    Some(k) if k <= mem_limit => "met".into(),
                    Some(_) => "missed".into(),
                    None => "not measured".into(),
                },
            });
        }
        if r.policies.is_empty() {
            rows.push(Row {
                what: "policy decide, warm".into(),
                pushgate: "n/a".into(),
                baseline: r.policy_note.clone().unwrap_or_default(),
                ratio: "—".into(),
                target: "≤ 1 ms".into(),
                verdict: "not measured".into(),
            });
        } else {
            let worst = r
                .policies
                .iter()
                .max_by_key(|p| median(&p.decide))
                .expect("a policy");
            let d = median(&worst.decide);
            rows.push(Row {
                what: "policy decide, warm (slowest module)".into(),
                pushgate: format!("{:.3} ms ({})", ms(d), worst.file),
                baseline: "—".into(),
                ratio: "—".into(),
                target: "≤ 1 ms".into(),
                verdict: if s.small {
                    "not judged (smoke test)".into()
                } else if d <= Duration::from_millis(1) {
                    "met".into()
                } else {
                    "missed".into()
                },
            });
        }

        let (signed_rows, signed_details) = self.signed_rows();
        let (wan_rows, wan_details, jobs_table) = self.wan_rows();
        rows.extend(signed_rows);
        rows.extend(wan_rows);

        // details
        let mut details = Vec::new();
        details.push(format!(
            "| fresh push, pushgate | {} | CPU {} | registry CPU {} | {} requests |",
            list(&walls(&r.fresh_pushgate)),
            median_cpu(&r.fresh_pushgate).map_or("n/a".into(), secs),
            secs(median(&r.fresh_pushgate_registry_cpu)),
            r.fresh_pushgate_requests
        ));
        if !r.fresh_podman.is_empty() {
            details.push(format!(
                "| fresh push, podman (create + {} add + push --all) | {} | CPU {} | registry CPU {} | {} requests |",
                s.arches.len(),
                list(&walls(&r.fresh_podman)),
                median_cpu(&r.fresh_podman).map_or("n/a".into(), secs),
                secs(median(&r.fresh_podman_registry_cpu)),
                r.fresh_podman_requests
            ));
        }
        details.push(format!(
            "| fresh push, raw curl ({} workers) | {} | — | registry CPU {} | {} requests |",
            self.env.jobs,
            list(&r.fresh_raw),
            secs(median(&r.fresh_raw_registry_cpu)),
            r.fresh_raw_requests
        ));
        details.push(format!(
            "| no-op rerun, pushgate | {} | CPU {} | max RSS {} | {} requests, {} writes |",
            list(&walls(&r.noop)),
            median_cpu(&r.noop).map_or("n/a".into(), secs),
            rss(max_rss(&r.noop)),
            r.noop_requests,
            r.noop_writes
        ));
        details.push(format!(
            "| skopeo inspect --raw | {} | CPU {} | max RSS {} | {} requests |",
            list(&walls(&r.skopeo)),
            median_cpu(&r.skopeo).map_or("n/a".into(), secs),
            rss(max_rss(&r.skopeo)),
            r.skopeo_requests
        ));
        if !r.noop_policy.is_empty() {
            details.push(format!(
                "| no-op rerun, pushgate --policy {} | {} | CPU {} | max RSS {} | median {} |",
                r.noop_policy_name,
                list(&walls(&r.noop_policy)),
                median_cpu(&r.noop_policy).map_or("n/a".into(), secs),
                rss(max_rss(&r.noop_policy)),
                secs(median(&walls(&r.noop_policy)))
            ));
        }
        details.push(format!(
            "| record-only recovery, pushgate | {} | CPU {} | max RSS {} | {} requests |",
            list(&walls(&r.record_only)),
            median_cpu(&r.record_only).map_or("n/a".into(), secs),
            rss(max_rss(&r.record_only)),
            r.record_only_requests
        ));
        details.push(format!(
            "| fresh push at {} ms RTT, pushgate | {} | CPU {} | max RSS {} | {} requests |",
            RTT.as_millis(),
            list(&walls(&r.rtt_fresh)),
            median_cpu(&r.rtt_fresh).map_or("n/a".into(), secs),
            rss(max_rss(&r.rtt_fresh)),
            r.rtt_requests
        ));
        details.push(format!(
            "| fresh push at {} ms RTT, raw curl | {} | | | |",
            RTT.as_millis(),
            list(&r.rtt_raw),
        ));
        details.push(format!(
            "| no-op at {} ms RTT, pushgate / skopeo inspect | {} / {} | | | |",
            RTT.as_millis(),
            list(&walls(&r.rtt_noop)),
            list(&walls(&r.rtt_skopeo)),
        ));
        details.push(format!(
            "| release of 3 containers | {} | CPU {} | max RSS {} | {} requests |",
            list(&walls(&r.release)),
            median_cpu(&r.release).map_or("n/a".into(), secs),
            rss(max_rss(&r.release)),
            r.release_requests
        ));
        details.push(format!(
            "| its largest container alone | {} | CPU {} | max RSS {} | |",
            list(&walls(&r.release_largest)),
            median_cpu(&r.release_largest).map_or("n/a".into(), secs),
            rss(max_rss(&r.release_largest)),
        ));
        details.push(format!(
            "| its three containers one after another | {} | | | |",
            list(&r.release_sequential),
        ));
        if !r.podman_repush.is_empty() {
            details.push(format!(
                "| record-only recovery, cosa re-push (podman) | {} | CPU {} | max RSS {} | |",
                list(&walls(&r.podman_repush)),
                median_cpu(&r.podman_repush).map_or("n/a".into(), secs),
                rss(max_rss(&r.podman_repush)),
            ));
        }
        for k in &r.kills {
            details.push(match (&k.killed_after, &k.rerun) {
                (Some(after), Some((m, p))) => format!(
                    "| kill at half, then rerun | rerun {} | killed after {} with {}/{} blobs ({}) in | rerun sent {} blobs, {} | {} were missing |",
                    secs(m.wall),
                    secs(*after),
                    k.blobs_present,
                    r.build_blobs,
                    bytes(k.bytes_present),
                    p.uploaded_blobs,
                    bytes(p.uploaded_bytes),
                    bytes(r.build_bytes - k.bytes_present)
                ),
                _ => "| kill at half, then rerun | — | finished before the kill point | | |".into(),
            });
        }
        details.push(format!(
            "| one {} layer, pushgate | {} | CPU {} | max RSS {} | {:.0} MiB/s |",
            bytes(s.big_layer),
            list(&walls(&r.big)),
            median_cpu(&r.big).map_or("n/a".into(), secs),
            rss(max_rss(&r.big)),
            r.big_bytes as f64 / MIB as f64 / median(&walls(&r.big)).as_secs_f64().max(1e-9)
        ));
        details.push(format!(
            "| one {} layer, raw curl | {} | — | — | {:.0} MiB/s |",
            bytes(s.big_layer),
            list(&r.big_raw),
            r.big_bytes as f64 / MIB as f64 / median(&r.big_raw).as_secs_f64().max(1e-9)
        ));

        if s.only.is_some() {
            // Some scenarios did not run: leave out what they would have filled.
            rows.retain(|row| row.verdict != "not measured" && !row.pushgate.starts_with("0.0 ms"));
            details.clear();
        }
        details.extend(signed_details);
        details.extend(wan_details);

        let mut policy_rows = Vec::new();
        for p in &r.policies {
            policy_rows.push(format!(
                "| {} ({}, {}) | {} | {} | {} | {:.3} ms | {:.3} ms (max {:.3}) | {:.3} ms | {} |",
                p.name,
                p.file,
                bytes(p.size),
                secs(p.host_new),
                secs(median(&p.cold)),
                secs(median(&p.disk)),
                ms(median(&p.warm)),
                ms(median(&p.decide)),
                ms(p.decide.iter().max().copied().unwrap_or_default()),
                ms(median(&p.decide_thread)),
                p.decision
            ));
        }

        let sizes = format!(
            "{} arches ({}) × {} layers × {} = {} in {} blobs (layers and configs); \
             big-layer image: 1 layer, {}; pushgate --jobs {}, {} curl workers; \
             medians of {} runs ({} for the no-op and skopeo).",
            s.arches.len(),
            s.arches.join(", "),
            s.layers,
            bytes(s.layer_size),
            bytes(r.build_bytes),
            r.build_blobs,
            bytes(r.big_bytes),
            self.env.jobs,
            self.env.jobs,
            s.runs,
            s.quick_runs
        );
        let mode = if args.small {
            "small (smoke test: the figures mean little)"
        } else {
            "full"
        };
        let cmd = format!(
            "{}{}",
            args.command,
            if args.small { " --small" } else { "" }
        );

        // plain text
        let mut text = String::new();
        text.push_str(&format!("{} — {mode}\n{sizes}\n\n", machine.date));
        let w = [48, 36, 40, 6, 10, 12];
        text.push_str(&format!(
            "{:<w0$} {:<w1$} {:<w2$} {:>w3$} {:<w4$} {}\n",
            "measurement",
            "pushgate",
            "baseline",
            "ratio",
            "target",
            "verdict",
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4]
        ));
        for row in &rows {
            text.push_str(&format!(
                "{:<w0$} {:<w1$} {:<w2$} {:>w3$} {:<w4$} {}\n",
                row.what,
                row.pushgate,
                row.baseline,
                row.ratio,
                row.target,
                row.verdict,
                w0 = w[0],
                w1 = w[1],
                w2 = w[2],
                w3 = w[3],
                w4 = w[4]
            ));
        }
        text.push_str(&jobs_table);
        for p in &r.policies {
            text.push_str(&format!(
                "policy {}: host {}, cold load {}, from disk {}, warm load {:.3} ms, decide {:.3} ms ({:.3} ms via a thread)\n",
                p.file,
                secs(p.host_new),
                secs(median(&p.cold)),
                secs(median(&p.disk)),
                ms(median(&p.warm)),
                ms(median(&p.decide)),
                ms(median(&p.decide_thread))
            ));
        }

        // markdown
        let mut md = String::new();
        md.push_str(&format!("## Results: {mode} run, {}\n\n", machine.date));
        md.push_str(&format!(
            "- Machine: {} CPUs ({}), {} RAM, Linux {}; load average {} at the start, {} at the end (other work on the machine competes with the bench).\n- Tools: {}; pushgate at commit {}.\n- Build: {sizes}\n- Reproduce: `{cmd}`.\n\n",
            machine.cpus,
            machine.cpu_model,
            machine.memory,
            machine.kernel,
            machine.load,
            load_average(),
            machine.tools.join(", "),
            machine.commit
        ));
        md.push_str("| measurement | pushgate | baseline | ratio | target | verdict |\n");
        md.push_str("|---|---|---|---|---|---|\n");
        for row in &rows {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                row.what, row.pushgate, row.baseline, row.ratio, row.target, row.verdict
            ));
        }
        md.push_str("\nEvery run (wall times), CPU (user + system, medians), and the requests the registry served (last run):\n\n");
        md.push_str("| what | wall times | CPU | | |\n|---|---|---|---|---|\n");
        for d in &details {
            md.push_str(d);
            md.push('\n');
        }
        md.push_str(&jobs_table);
        if !r.policies.is_empty() {
            md.push_str("\nPolicy cost per container (in process, `pushgate::policy::PolicyHost`, default limits):\n\n");
            md.push_str("| module | new host (engine) | load, cold (compile) | load, compiled form from disk (a rerun) | load, warm (same run) | decide (fresh instance) | decide via a thread, as `decide::decide` | decision |\n");
            md.push_str("|---|---|---|---|---|---|---|---|\n");
            for p in &policy_rows {
                md.push_str(p);
                md.push('\n');
            }
        }
        if let Some(note) = &r.policy_note {
            md.push_str(&format!("\nPolicies: {note}\n"));
        }
        if let Some(e) = &self.podman_error {
            md.push_str(&format!("\nPodman: {}\n", first_line_of(e)));
        }
        Report { text, markdown: md }
    }
}

/// The 1-minute load average.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn first_line_of(s: &str) -> String {
    let l = s.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    tail(l, 200).to_string()
}

/// Replaces the generated section of `path` (between the markers), or appends it.
fn write_section(path: &Path, section: &str) -> Result<()> {
    let old = match fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let block = format!("{MARK_BEGIN}\n{}\n{MARK_END}", section.trim_end());
    let new = match (old.find(MARK_BEGIN), old.find(MARK_END)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{block}{}", &old[..b], &old[e + MARK_END.len()..])
        }
        _ if old.trim().is_empty() => format!("{block}\n"),
        _ => format!("{}\n\n{block}\n", old.trim_end()),
    };
    fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}
