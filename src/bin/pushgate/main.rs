//! The `pushgate` command line: reading argv once (argparse's prefixes expanded,
//! then clap), the JSON failure object, and printing over the library.

mod argparse;
mod cli;
mod man;
mod out;
mod panic;
mod policy;
mod signals;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use anyhow::Context;

use pushgate::decide::PolicyChoice;
use pushgate::decision_log::DecisionLog;
use pushgate::policy::Limits;
use pushgate::policy::remote::PolicySource;
use pushgate::push::{PushRequest, push};
use pushgate::registry;
use pushgate::release::{self, ReleaseConfig, ReleaseOptions};
use pushgate::sources::SourceSpec;

use cli::{Cli, Command, DecisionLogArgs, PolicyArgs, PushArgs, ReleaseArgs, RunArgs, TargetArgs};

impl DecisionLogArgs {
    fn open(&self) -> anyhow::Result<Option<std::sync::Arc<DecisionLog>>> {
        self.decision_log
            .as_deref()
            .map(|p| DecisionLog::open(p, self.decision_log_facts).map(std::sync::Arc::new))
            .transpose()
    }
}

/// A policy named on the command line, not yet loaded.
pub(crate) struct PendingPolicy {
    pub(crate) source: PolicySource,
    pub(crate) settings: String,
    pub(crate) limits: Limits,
    /// `--require-signed-policies`: the keys a reference's artifact must be
    /// signed by (a file is not affected).
    pub(crate) signed_by: Option<pushgate::sign::TrustedKeys>,
}

impl PendingPolicy {
    /// Loads (fetching a reference through `registry`, and checking its
    /// signature when signed policies are required) into a host of its own.
    pub(crate) async fn resolve(
        &self,
        registry: &registry::Options,
    ) -> anyhow::Result<PolicyChoice> {
        let host = std::sync::Arc::new(pushgate::policy::PolicyHost::new(self.limits)?);
        match (&self.source, &self.signed_by) {
            (PolicySource::Oci(r), Some(keys)) => {
                let fetched =
                    pushgate::signed_policy::fetch_checked(r, registry, Some(keys)).await?;
                PolicyChoice::from_fetched(&host, &fetched, self.settings.clone())
            }
            _ => PolicyChoice::resolve(&host, &self.source, self.settings.clone(), registry).await,
        }
    }
}

/// The request of a push (or of `policy facts`, which observes one), its policy
/// still to be loaded.
pub(crate) fn push_request(
    target: TargetArgs,
    run: &RunArgs,
    registry: registry::Options,
    policy: &PolicyArgs,
    progress: bool,
) -> anyhow::Result<(PushRequest, Option<PendingPolicy>)> {
    let pending = match &policy.policy {
        None => None,
        Some(arg) => Some(PendingPolicy {
            source: PolicySource::parse(arg).context("--policy")?,
            settings: PolicyChoice::settings_for_push(policy.policy_settings.as_deref())?,
            limits: policy.limits.limits(),
            signed_by: None,
        }),
    };
    let container = target
        .metajsonname
        .clone()
        .unwrap_or_else(|| target.repo.to_string());
    let source = match target.artifact {
        Some(artifact) => SourceSpec::Artifact {
            workdir: target.workdir,
            artifact,
            key: target
                .metajsonname
                .expect("clap requires --metajsonname with --artifact"),
            build: target.build,
            arches: target.arches,
        },
        None => SourceSpec::Images(target.image),
    };
    let req = PushRequest {
        container,
        repo: target.repo,
        tags: target.tags,
        source,
        v2s2: target.v2s2,
        force: run.force,
        dry_run: run.dry_run,
        registry,
        digest_file: None,
        policy: None,
        progress,
        decision_log: None,
        signer: None,
        trusted: Default::default(),
    };
    Ok((req, pending))
}

/// What was asked, as the JSON object of a run that failed before it had a
/// report names it; from the parsed command line, or from the expanded argv
/// when clap refused it.
#[derive(Clone)]
struct Asked {
    /// The subcommand path: `push`, `release`, `policy NAME`.
    command: String,
    json: bool,
    repo: Option<String>,
    tags: Vec<String>,
}

impl Asked {
    fn of(cli: &Cli, expanded: &argparse::Expanded) -> Asked {
        let (json, target) = match &cli.command {
            Command::Push(a) => (a.output.json, Some(&a.target)),
            Command::Release(a) => (a.output.json, None),
            Command::Verify(a) => (a.json, None),
            // `policy facts`, the one with push's repository and tags, has no --json.
            Command::Policy(p) => (p.json(), None),
            Command::Completions { .. } | Command::Man(_) => (false, None),
        };
        Asked {
            command: expanded.path.join(" "),
            json,
            repo: target.map(|t| t.repo.to_string()),
            tags: target.map(|t| t.tags.clone()).unwrap_or_default(),
        }
    }

    /// The same read off argv, whose long options are whole once expanded.
    fn of_argv(expanded: &argparse::Expanded) -> Asked {
        let words: Vec<String> = expanded
            .args
            .iter()
            .skip(1)
            .map(|a| a.to_string_lossy().into_owned())
            .take_while(|w| w != "--")
            .collect();
        let values = |flag: &str| -> Vec<String> {
            let mut out = Vec::new();
            let mut it = words.iter();
            while let Some(w) = it.next() {
                if let Some(v) = w.strip_prefix(flag).and_then(|v| v.strip_prefix('=')) {
                    out.push(v.to_string());
                } else if w == flag
                    && let Some(v) = it.next()
                {
                    out.push(v.clone());
                }
            }
            out
        };
        Asked {
            command: expanded.path.join(" "),
            json: words
                .iter()
                .any(|w| w == "--json" || w.starts_with("--json=")),
            repo: values("--repo").pop(),
            tags: values("--tag"),
        }
    }

    /// Prints the JSON object of a run that failed before it had a report: what
    /// was asked (`command`, and for a push the repository and tags) and the
    /// error. Nothing more can be said if stdout is gone.
    fn print_failure(&self, error: &str, usage: bool) {
        let _ = out::println(&self.failure_json(error, usage));
    }

    /// The failure object's line (the panic hook prints it too).
    fn failure_json(&self, error: &str, usage: bool) -> String {
        let mut doc = serde_json::json!({
            "outcome": "failed",
            "error": error,
            "usage_error": usage,
        });
        if let Some(repo) = &self.repo {
            doc["repo"] = repo.clone().into();
            doc["tags"] = self.tags.clone().into();
        }
        out::json_doc(&self.command, false, doc)
    }
}

/// Parses argv as cosa's argparse would: unique prefixes of long options expand
/// first (see [`argparse`]), then clap parses the expanded argv, the only one read
/// from here on. Exits 2 on a usage error, like clap, with the failure object on
/// stdout when `--json` was asked for.
fn parse_args(args: &[OsString]) -> (Cli, Asked) {
    let mut cmd = Cli::command();
    cmd.build();
    let expanded = argparse::expand(&cmd, args);
    let parsed = match &expanded.ambiguous {
        Some(ambiguous) => Err(subcommand(&mut cmd, &ambiguous.path)
            .error(clap::error::ErrorKind::UnknownArgument, ambiguous)),
        None => cmd
            .try_get_matches_from_mut(&expanded.args)
            .and_then(|m| Cli::from_arg_matches(&m))
            .and_then(|cli| {
                if let Command::Man(m) = &cli.command {
                    man::page(&m.path)?;
                }
                Ok(cli)
            }),
    };
    let err = match parsed {
        Ok(cli) => {
            let asked = Asked::of(&cli, &expanded);
            return (cli, asked);
        }
        Err(e) => e,
    };
    let is_usage = !matches!(
        err.kind(),
        clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
    );
    let asked = Asked::of_argv(&expanded);
    if asked.json && is_usage {
        let rendered = err.to_string();
        let first = rendered.lines().next().unwrap_or_default();
        let text = first.strip_prefix("error: ").unwrap_or(first);
        asked.print_failure(text.trim(), true);
    }
    err.exit()
}

/// The (built) subcommand at `path`, to word an error as its own.
fn subcommand<'a>(cmd: &'a mut clap::Command, path: &[String]) -> &'a mut clap::Command {
    let mut sub = cmd;
    for name in path {
        sub = sub
            .find_subcommand_mut(name)
            .expect("the path names built subcommands");
    }
    sub
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let (cli, asked) = parse_args(&args);
    panic::install(last_words(&cli, &asked));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime");
    let signals = signals::watch(&runtime);
    let result = match cli.command {
        Command::Push(args) => run_push(&runtime, &signals, *args),
        Command::Release(args) => run_release(&runtime, &signals, *args),
        Command::Verify(args) => run_verify(&runtime, &signals, *args),
        Command::Policy(cmd) => policy::run(&runtime, &signals, cmd),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "pushgate", &mut script);
            out::print(&String::from_utf8_lossy(&script)).map(|()| ExitCode::SUCCESS)
        }
        Command::Man(m) => man::run(&m),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let message = format!("{e:#}");
            let usage = e.downcast_ref::<cli::UsageError>().is_some();
            if asked.json {
                asked.print_failure(&message, usage);
            }
            out::eprintln(&format!("pushgate: error: {message}"));
            match e.downcast_ref::<signals::Interrupted>() {
                Some(sig) => ExitCode::from(sig.status()),
                None if usage => ExitCode::from(2),
                None => ExitCode::FAILURE,
            }
        }
    }
}

/// What the panic hook records a run with: its JSON failure object, and the
/// decision-log line of the push (or of the release as a whole).
fn last_words(cli: &Cli, asked: &Asked) -> panic::LastWords {
    let json: Option<panic::FailureJson> = if asked.json {
        let asked = asked.clone();
        Some(Box::new(move |message| asked.failure_json(message, false)))
    } else {
        None
    };
    let log = match &cli.command {
        Command::Push(a) => a.log.decision_log.as_ref().map(|path| panic::LogLine {
            path: path.clone(),
            container: a
                .target
                .metajsonname
                .clone()
                .unwrap_or_else(|| a.target.repo.to_string()),
            repo: a.target.repo.to_string(),
            tags: a.target.tags.clone(),
            dry_run: a.run.dry_run,
            policy: a.policy.policy.clone(),
        }),
        Command::Release(a) => a.log.decision_log.as_ref().map(|path| panic::LogLine {
            path: path.clone(),
            container: "release".into(),
            repo: a.config.display().to_string(),
            tags: Vec::new(),
            dry_run: a.run.dry_run,
            policy: None,
        }),
        Command::Verify(_) | Command::Policy(_) | Command::Completions { .. } | Command::Man(_) => {
            None
        }
    };
    panic::LastWords { json, log }
}

fn run_verify(
    runtime: &tokio::runtime::Runtime,
    signals: &tokio::sync::watch::Receiver<i32>,
    args: cli::VerifyArgs,
) -> anyhow::Result<ExitCode> {
    let asked = pushgate::verify::Asked {
        repo: args.repo,
        tags: args.tags,
        key: pushgate::sign::PublicKey::load(&args.key)?,
        require_policy_sha256: args.require_policy_sha256,
        registry: args.registry.options(),
    };
    let verified = signals::run(runtime, signals, async {
        pushgate::verify::verify(&asked).await
    })?;
    if args.json {
        let body = serde_json::to_value(&verified).expect("the result serializes");
        out::json("verify", verified.ok, body)?;
    } else {
        out::print(&verified.human())?;
    }
    if !verified.ok {
        out::eprintln(&format!(
            "pushgate: error: {} is not verified: {}",
            verified.repo,
            verified.problems.join("; ")
        ));
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn run_push(
    runtime: &tokio::runtime::Runtime,
    signals: &tokio::sync::watch::Receiver<i32>,
    args: PushArgs,
) -> anyhow::Result<ExitCode> {
    let json = args.output.json;
    let registry = args.registry.with_transfers(&args.transfers);
    let progress = pushgate::progress::wanted(json, args.output.quiet);
    let (mut req, policy) = push_request(args.target, &args.run, registry, &args.policy, progress)?;
    req.digest_file = args.write_digest_to_file;
    req.signer = args.sign.signer(None)?;
    req.trusted = args.trust.keys()?;
    let signed_by = args.trust.signed_policies(&req.trusted, None)?;
    let policy = policy.map(|p| PendingPolicy { signed_by, ..p });
    req.decision_log = args.log.open()?;
    let run = async {
        panic::debug_panic().await;
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
        out::json("push", !report.failed(), report.json())?;
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
    let trusted = args
        .trust
        .keys_with_config(&cfg.trust_keys(), &args.config)?;
    let signed_by = args.trust.signed_policies(
        &trusted,
        cfg.require_signed_policies.then_some(args.config.as_path()),
    )?;
    let opts = ReleaseOptions {
        build: args.build,
        force: args.run.force,
        dry_run: args.run.dry_run,
        registry: registry::Options {
            total_jobs: args.total_jobs.map(usize::from).or(cfg.total_jobs),
            ..args.registry.with_transfers(&args.transfers)
        },
        policy_limits: args.limits.limits(),
        progress: pushgate::progress::wanted(args.output.json, args.output.quiet),
        require_pinned_policies: args.require_pinned_policies,
        require_signed_policies: signed_by.is_some(),
        signer: args.sign.signer(
            cfg.sign_key
                .as_deref()
                .map(|k| (k, cfg.sign_passphrase_file.as_deref())),
        )?,
        decision_log: args.log.open()?,
        trusted,
    };
    let run = async {
        panic::debug_panic().await;
        release::release(&cfg, &opts).await
    };
    let results = signals::run(runtime, signals, run)?;
    if args.output.json {
        let doc = release::json(&results, args.run.dry_run);
        out::json("release", doc["ok"] == true, doc)?;
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
