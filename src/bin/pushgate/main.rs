//! The `pushgate` command line: argument parsing and printing over the library.

mod argparse;
mod out;
mod policy;
mod signals;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Args, CommandFactory, Parser, Subcommand};

use anyhow::Context;

use pushgate::decide::PolicyChoice;
use pushgate::decision_log::DecisionLog;
use pushgate::policy::Limits;
use pushgate::policy::remote::PolicySource;
use pushgate::push::{PushRequest, push};
use pushgate::registry::retry::parse_duration;
use pushgate::registry::{self, RetryPolicy};
use pushgate::release::{self, ReleaseConfig, ReleaseOptions};
use pushgate::sources::SourceSpec;

/// `pushgate --version`: the version, the git commit it was built from, the policy
/// contract it hosts and the wasmtime that runs the policies.
static LONG_VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} (commit {})\npolicy contract: {}\nwasmtime: {}",
        env!("CARGO_PKG_VERSION"),
        env!("PUSHGATE_GIT_COMMIT"),
        pushgate::policy::CONTRACT,
        env!("PUSHGATE_WASMTIME_VERSION"),
    )
});

/// Publish multi-arch container images from cosa builds, idempotently.
#[derive(Parser)]
#[command(name = "pushgate", version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("PUSHGATE_GIT_COMMIT"), ")"), long_version = LONG_VERSION.as_str(), about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Push a manifest list over per-arch images and record it in meta.json
    /// (a drop-in for `cosa push-container-manifest`).
    #[command(visible_alias = "push-container-manifest")]
    Push(Box<PushCommand>),
    /// Publish every container of a product in one run, from a release config
    Release(ReleaseArgs),
    /// Write, test and check policy modules, offline
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Print a shell completion script, e.g. `pushgate completions bash >
    /// /etc/bash_completion.d/pushgate`
    Completions {
        /// bash, zsh, fish (or elvish, powershell)
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `pushgate man | man -l -`
    Man,
}

/// The completion script or man page, made from the clap definitions so that
/// they never drift from them.
fn documentation(command: &Command) -> anyhow::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    match command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "pushgate", &mut out);
        }
        Command::Man => clap_mangen::Man::new(Cli::command()).render(&mut out)?,
        _ => return Ok(None),
    }
    Ok(Some(out))
}

/// Caps on every policy call (defaults no honest policy reaches).
#[derive(Args, Clone)]
pub(crate) struct PolicyLimitArgs {
    /// Fuel per policy call (roughly, wasm instructions)
    #[arg(long, value_name = "UNITS", default_value_t = Limits::default().fuel)]
    policy_fuel: u64,
    /// Memory per policy instance, in MiB
    #[arg(long, value_name = "MIB", default_value_t = Limits::default().memory >> 20)]
    policy_memory_mib: usize,
    /// Wall-clock time per policy call, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = Limits::default().deadline.as_millis() as u64)]
    policy_timeout_ms: u64,
}

impl PolicyLimitArgs {
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            fuel: self.policy_fuel,
            memory: self.policy_memory_mib << 20,
            deadline: std::time::Duration::from_millis(self.policy_timeout_ms),
        }
    }
}

/// `pushgate push`: push's flags, and where to log the decision.
#[derive(Args)]
pub(crate) struct PushCommand {
    #[command(flatten)]
    push: PushArgs,
    #[command(flatten)]
    log: DecisionLogArgs,
}

/// The decision log, for `push` and `release`.
#[derive(Args)]
pub(crate) struct DecisionLogArgs {
    /// Append one JSON line per container to FILE: the decision, who took it
    /// (policy name, version, sha256, or host), the facts' sha256, the outcome
    #[arg(long, value_name = "FILE")]
    decision_log: Option<PathBuf>,
    /// Log the facts themselves too (replayable with `policy facts --from-log`)
    #[arg(long, requires = "decision_log")]
    decision_log_facts: bool,
}

impl DecisionLogArgs {
    fn open(&self) -> anyhow::Result<Option<std::sync::Arc<DecisionLog>>> {
        self.decision_log
            .as_deref()
            .map(|p| DecisionLog::open(p, self.decision_log_facts).map(std::sync::Arc::new))
            .transpose()
    }
}

#[derive(Args)]
struct ReleaseArgs {
    /// Release config (TOML): the product's containers, with artifact, key, repo,
    /// tags, policy and settings each; see examples/release.toml
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Build id, or `latest` [default: the config's build]
    #[arg(long, value_name = "ID")]
    build: Option<String>,
    /// Push and record even when up to date
    #[arg(long)]
    force: bool,
    /// Observe, plan and decide; write nothing anywhere
    #[arg(long)]
    dry_run: bool,
    /// Print one JSON object on stdout instead of the summary table
    #[arg(long)]
    json: bool,
    /// Do not draw progress lines (they are drawn only on a terminal anyway)
    #[arg(long, short)]
    quiet: bool,
    /// Fail every container whose policy is a reference by tag
    /// (oci://REPO:TAG) rather than by digest (oci://REPO@sha256:…)
    #[arg(long)]
    require_pinned_policies: bool,
    #[command(flatten)]
    log: DecisionLogArgs,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    limits: PolicyLimitArgs,
}

/// How to reach the registry, for `push`, `release` and `policy facts` alike.
#[derive(Args)]
pub(crate) struct RegistryArgs {
    /// containers auth.json with the registry credentials
    /// [default: $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json, ~/.docker/config.json]
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// Verify TLS certificates; --tls-verify=false is HTTPS without verification,
    /// falling back to plain HTTP only if the registry does not speak TLS
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    tls_verify: bool,
    /// CAs (*.crt) and a client certificate (*.cert + *.key) for the registry
    /// [default: certs.d: $PUSHGATE_CERTS_D/HOST:PORT, ~/.config/containers/certs.d,
    /// /etc/containers/certs.d, /etc/docker/certs.d]
    #[arg(long, value_name = "DIR")]
    cert_dir: Option<PathBuf>,
    /// Talk plain HTTP to the registry (credentials included, whatever the host)
    #[arg(long)]
    plain_http: bool,
    /// Parallel uploads
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
    /// Retries of a request that failed transiently (no answer, 408, 429, 5xx)
    #[arg(long, value_name = "N", default_value_t = RetryPolicy::default().times, overrides_with = "retry_times")]
    retry_times: u32,
    /// The first wait before a retry; each later one doubles (a registry's
    /// Retry-After wins) [default: 500ms]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, overrides_with = "retry_delay")]
    retry_delay: Option<std::time::Duration>,
    /// Each request on stderr (method, URL, status, time, attempt; never a
    /// credential or token)
    #[arg(long)]
    debug: bool,
    /// A request that makes no progress for this long fails (and is retried);
    /// also the longest a manifest or token answer may take [default: 60s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    stall_timeout: Option<std::time::Duration>,
    /// Blobs larger than this go up in chunks of this size (e.g. 16M), for a
    /// registry or proxy that caps request bodies; one that answers 413 gets
    /// halved chunks anyway [default: 64M]
    #[arg(long, value_name = "SIZE", env = "PUSHGATE_CHUNK_SIZE", value_parser = registry::parse_chunk_size)]
    chunk_size: Option<u64>,
}

impl RegistryArgs {
    pub(crate) fn options(&self) -> registry::Options {
        let defaults = registry::Options::default();
        registry::Options {
            tls_verify: self.tls_verify,
            plain_http: self.plain_http,
            cert_dir: self.cert_dir.clone(),
            authfile: self.authfile.clone(),
            jobs: self.jobs as usize,
            retry: RetryPolicy {
                times: self.retry_times,
                delay: self.retry_delay.unwrap_or(defaults.retry.delay),
                ..defaults.retry
            },
            chunk_size: self.chunk_size.unwrap_or(defaults.chunk_size),
            debug: self.debug,
            observer: std::sync::Arc::new(pushgate::progress::Lines),
            stall_timeout: self.stall_timeout.unwrap_or(defaults.stall_timeout),
            ..defaults
        }
    }
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["image", "artifact"]))]
pub(crate) struct PushArgs {
    /// Repository to push to, e.g. quay.io/fedora/fedora-coreos
    #[arg(long, value_name = "REPO")]
    repo: String,
    /// Tag to point at the manifest list (repeat for several; the first is the main one)
    #[arg(long = "tag", value_name = "TAG", required = true, action = ArgAction::Append)]
    tags: Vec<String>,
    /// Publish Docker schema 2 manifests and a Docker manifest list instead of OCI
    #[arg(long)]
    v2s2: bool,
    /// Push and record even when registry and meta.json are up to date
    #[arg(long)]
    force: bool,
    /// Write the manifest list digest to FILE
    #[arg(long, value_name = "FILE")]
    write_digest_to_file: Option<PathBuf>,
    /// Image sources, one single-arch image each: oci-archive:PATH, oci:DIR or
    /// docker://REF (a tag or @sha256:DIGEST; its blobs are mounted when on the
    /// same registry, else streamed through)
    #[arg(long, value_name = "SRC", num_args = 1.., action = ArgAction::Append)]
    image: Vec<String>,
    /// cosa artifact holding the per-arch OCI archives (images.NAME in meta.json), e.g. ostree
    #[arg(long, value_name = "NAME", requires = "metajsonname")]
    artifact: Option<String>,
    /// meta.json key to record the push under, e.g. base-oscontainer
    #[arg(long, value_name = "KEY", requires = "artifact")]
    metajsonname: Option<String>,
    /// Build id, or `latest`
    #[arg(
        long,
        value_name = "ID",
        default_value = "latest",
        requires = "artifact"
    )]
    build: String,
    /// Arches to push (repeatable) [default: every arch of the build that has the artifact]
    #[arg(long = "arch", value_name = "ARCH", action = ArgAction::Append, requires = "artifact")]
    arches: Vec<String>,
    /// cosa workdir (the directory holding builds/)
    #[arg(long, value_name = "DIR", default_value = ".")]
    workdir: PathBuf,
    /// Observe and plan, print the plan, write nothing anywhere
    #[arg(long)]
    dry_run: bool,
    /// Print one JSON object on stdout instead of the summary
    #[arg(long)]
    json: bool,
    /// Do not draw progress lines (they are drawn only on a terminal anyway)
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Policy module (a wasm32-wasip2 component) that decides skip / push / fail:
    /// a file, or a published one, oci://REGISTRY/REPO@sha256:… (or :TAG),
    /// fetched once, verified and cached
    #[arg(long, value_name = "FILE.wasm|oci://REF")]
    policy: Option<String>,
    /// Settings for the policy: a JSON document, or @FILE to read one
    #[arg(long, value_name = "JSON|@FILE", requires = "policy")]
    policy_settings: Option<String>,
    #[command(flatten)]
    limits: PolicyLimitArgs,
}

/// A policy named on the command line, not yet loaded.
pub(crate) struct PendingPolicy {
    pub(crate) source: PolicySource,
    pub(crate) settings: String,
    pub(crate) limits: Limits,
}

impl PendingPolicy {
    /// Loads (fetching a reference through `registry`) into a host of its own.
    pub(crate) async fn resolve(
        &self,
        registry: &registry::Options,
    ) -> anyhow::Result<PolicyChoice> {
        let host = std::sync::Arc::new(pushgate::policy::PolicyHost::new(self.limits)?);
        PolicyChoice::resolve(&host, &self.source, self.settings.clone(), registry).await
    }
}

impl PushArgs {
    /// The request, its policy still to be loaded.
    pub(crate) fn request(self) -> anyhow::Result<(PushRequest, Option<PendingPolicy>)> {
        let policy = match &self.policy {
            None => None,
            Some(arg) => Some(PendingPolicy {
                source: PolicySource::parse(arg).context("--policy")?,
                settings: PolicyChoice::settings_for_push(self.policy_settings.as_deref())?,
                limits: self.limits.limits(),
            }),
        };
        let container = self
            .metajsonname
            .clone()
            .unwrap_or_else(|| self.repo.clone());
        let source = match self.artifact {
            Some(artifact) => SourceSpec::Artifact {
                workdir: self.workdir,
                artifact,
                key: self
                    .metajsonname
                    .expect("clap requires --metajsonname with --artifact"),
                build: self.build,
                arches: self.arches,
            },
            None => SourceSpec::Images(self.image),
        };
        let req = PushRequest {
            container,
            repo: self.repo.parse()?,
            tags: self.tags,
            source,
            v2s2: self.v2s2,
            force: self.force,
            dry_run: self.dry_run,
            registry: self.registry.options(),
            digest_file: self.write_digest_to_file,
            policy: None,
            progress: pushgate::progress::wanted(self.json, self.quiet),
            decision_log: None,
        };
        Ok((req, policy))
    }
}

/// Parses argv as cosa's argparse would: unique prefixes of long options expand first
/// (see [`argparse`]), then clap parses. Exits 2 on a usage error, like clap.
/// Whether the command line asks for JSON: then every outcome, failures and
/// usage errors included, is one JSON object on stdout.
fn wants_json(args: &[std::ffi::OsString]) -> bool {
    args.iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "--json" || a == "--json=true")
}

/// The JSON object of a run that failed before it had a report: what was asked
/// (`command`, and for a push the repository and tags) and the error.
fn failure_json(args: &[std::ffi::OsString], error: &str, usage: bool) -> String {
    let words: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // The subcommand path: `push`, `release`, `policy NAME`.
    let depth = if words.first().is_some_and(|w| w == "policy") {
        2
    } else {
        1
    };
    let command: Vec<&str> = words
        .iter()
        .take(depth)
        .take_while(|w| !w.starts_with('-'))
        .map(String::as_str)
        .collect();
    let values = |flag: &str| -> Vec<String> {
        let mut out = Vec::new();
        let mut it = words.iter().peekable();
        while let Some(w) = it.next() {
            if let Some(v) = w.strip_prefix(&format!("{flag}=")) {
                out.push(v.to_string());
            } else if w == flag
                && let Some(v) = it.next()
            {
                out.push(v.clone());
            }
        }
        out
    };
    let mut doc = serde_json::json!({
        "ok": false,
        "outcome": "failed",
        "command": command.join(" "),
        "error": error,
        "usage_error": usage,
    });
    if let Some(repo) = values("--repo").pop() {
        doc["repo"] = repo.into();
        doc["tags"] = values("--tag").into();
    }
    doc.to_string()
}

fn parse_args(args: &[std::ffi::OsString]) -> Cli {
    let mut cmd = Cli::command();
    cmd.build();
    let json = wants_json(args);
    let err = match argparse::expand(&cmd, args) {
        Ok(expanded) => match Cli::try_parse_from(expanded) {
            Ok(cli) => return cli,
            Err(e) => e,
        },
        Err(ambiguous) => {
            let mut sub = &mut cmd;
            for name in &ambiguous.path {
                sub = sub
                    .find_subcommand_mut(name)
                    .expect("the path names built subcommands");
            }
            sub.error(clap::error::ErrorKind::UnknownArgument, ambiguous)
        }
    };
    let is_usage = !matches!(
        err.kind(),
        clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
    );
    if json && is_usage {
        let rendered = err.to_string();
        let first = rendered.lines().next().unwrap_or_default();
        let text = first.strip_prefix("error: ").unwrap_or(first);
        let _ = out::println(&failure_json(args, text.trim(), true));
    }
    err.exit()
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = parse_args(&args);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime");
    let signals = signals::watch(&runtime);
    let result = match cli.command {
        Command::Push(args) => run_push(&runtime, &signals, *args),
        Command::Release(args) => run_release(&runtime, &signals, args),
        Command::Policy(cmd) => policy::run(&runtime, &signals, cmd),
        other => documentation(&other).and_then(|doc| {
            out::print(&String::from_utf8_lossy(&doc.unwrap_or_default()))?;
            Ok(ExitCode::SUCCESS)
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let message = format!("{e:#}");
            if let Some(sig) = e.downcast_ref::<signals::Interrupted>() {
                if wants_json(&args) {
                    let _ = out::println(&failure_json(&args, &message, false));
                }
                out::eprintln(&format!("pushgate: error: {message}"));
                return ExitCode::from(sig.status());
            }
            if wants_json(&args) {
                let _ = out::println(&failure_json(&args, &message, false));
            }
            out::eprintln(&format!("pushgate: error: {message}"));
            ExitCode::FAILURE
        }
    }
}

fn run_push(
    runtime: &tokio::runtime::Runtime,
    signals: &tokio::sync::watch::Receiver<i32>,
    cmd: PushCommand,
) -> anyhow::Result<ExitCode> {
    let json = cmd.push.json;
    let (mut req, policy) = cmd.push.request()?;
    req.decision_log = cmd.log.open()?;
    let run = async {
        if let Some(pending) = &policy {
            match pending.resolve(&req.registry).await {
                Ok(choice) => req.policy = Some(choice),
                // A reference that cannot be had fails the container, reported
                // and logged; a file that does not load is an error, as always.
                Err(e) if matches!(pending.source, PolicySource::Oci(_)) => {
                    return pushgate::push::refuse(&req, &pending.source.to_string(), &e);
                }
                Err(e) => {
                    let source = pending.source.to_string();
                    return Err(pushgate::push::log_stopped(&req, &source, e));
                }
            }
        }
        push(&req).await
    };
    let report = signals::run(runtime, signals, run)?;
    if json {
        out::println(&serde_json::to_string(&report).expect("report serializes"))?;
    } else {
        out::print(&report.human())?;
    }
    if report.failed() {
        out::eprintln(&format!(
            "pushgate: error: {} refused by {}: {}",
            report.container, report.decided_by, report.reason
        ));
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn run_release(
    runtime: &tokio::runtime::Runtime,
    signals: &tokio::sync::watch::Receiver<i32>,
    args: ReleaseArgs,
) -> anyhow::Result<ExitCode> {
    let cfg = ReleaseConfig::read(&args.config)?;
    let opts = ReleaseOptions {
        build: args.build,
        force: args.force,
        dry_run: args.dry_run,
        registry: args.registry.options(),
        policy_limits: args.limits.limits(),
        progress: pushgate::progress::wanted(args.json, args.quiet),
        require_pinned_policies: args.require_pinned_policies,
        decision_log: args.log.open()?,
    };
    let results = signals::run(runtime, signals, release::release(&cfg, &opts))?;
    if args.json {
        out::println(&release::json(&results).to_string())?;
    } else {
        let mut text = String::new();
        for r in &results {
            match &r.result {
                Ok(rep) => text.push_str(&rep.human()),
                Err(e) => text.push_str(&format!("{}: error: {e:#}\n", r.name)),
            }
        }
        text.push('\n');
        text.push_str(&release::summary(&results));
        out::print(&text)?;
    }
    let failed: Vec<&str> = results
        .iter()
        .filter(|r| !r.ok())
        .map(|r| r.name.as_str())
        .collect();
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        out::eprintln(&format!(
            "pushgate: error: {} of {} container(s) failed: {}",
            failed.len(),
            results.len(),
            failed.join(", ")
        ));
        Ok(ExitCode::FAILURE)
    }
}
