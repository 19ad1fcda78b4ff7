//! `pushgate policy ...`: tools for policy authors and for CI.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use pushgate::cases::{self, Kind};
use pushgate::contract::Decision;
use pushgate::policy::{Limits, PolicyHost};

use std::fmt::Write as _;

use crate::{PolicyLimitArgs, PushArgs, out};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Run case files (facts, settings, expected decision) against a module, offline
    Test(TestArgs),
    /// Check that a module is fit for a release: contract, imports, metadata,
    /// settings, answers within the caps, same answer twice
    Check(CheckArgs),
    /// Show every case whose decision changes between two versions of a module
    Diff(DiffArgs),
    /// Observe a real build and registry (push's flags) and write the facts as a
    /// case file, without pushing anything
    Facts(Box<FactsArgs>),
    /// Create a policy crate: Cargo.toml, src with the contract wired, a passing case
    New(NewArgs),
    /// Show a module's metadata, contract version, size, sha256 and imports
    Inspect(InspectArgs),
}

#[derive(Args)]
pub struct TestArgs {
    /// The policy module (.wasm)
    module: PathBuf,
    /// Case files, or directories searched for *.json
    #[arg(required = true, value_name = "CASE")]
    cases: Vec<PathBuf>,
    /// Print one JSON object instead of pass/FAIL lines
    #[arg(long)]
    json: bool,
    /// Also write JUnit XML to FILE
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    #[command(flatten)]
    limits: PolicyLimitArgs,
}

#[derive(Args)]
pub struct CheckArgs {
    module: PathBuf,
    /// Settings to check with (JSON or @FILE) [default: the module's sample settings]
    #[arg(long, value_name = "JSON|@FILE")]
    settings: Option<String>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    limits: PolicyLimitArgs,
}

#[derive(Args)]
pub struct DiffArgs {
    old: PathBuf,
    new: PathBuf,
    #[arg(required = true, value_name = "CASE")]
    cases: Vec<PathBuf>,
    #[arg(long)]
    json: bool,
    /// Exit 1 when any decision changed (for CI gates that want a reviewer)
    #[arg(long)]
    fail_on_change: bool,
    #[command(flatten)]
    limits: PolicyLimitArgs,
}

#[derive(Args)]
pub struct FactsArgs {
    #[command(flatten)]
    push: PushArgs,
    /// Write the case here [default: stdout]
    #[arg(long, short, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Args)]
pub struct NewArgs {
    /// The policy's name (a crate is created in a directory of that name)
    name: String,
    /// Create it under DIR
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
}

#[derive(Args)]
pub struct InspectArgs {
    module: PathBuf,
    #[arg(long)]
    json: bool,
}

fn host(limits: &PolicyLimitArgs) -> Result<PolicyHost> {
    PolicyHost::new(limits.limits())
}

pub fn run(
    runtime: &tokio::runtime::Runtime,
    signals: &tokio::sync::watch::Receiver<i32>,
    cmd: PolicyCommand,
) -> Result<ExitCode> {
    match cmd {
        PolicyCommand::Test(a) => test(a),
        PolicyCommand::Check(a) => check(a),
        PolicyCommand::Diff(a) => diff(a),
        PolicyCommand::Facts(a) => facts(runtime, signals, *a),
        PolicyCommand::New(a) => new(a),
        PolicyCommand::Inspect(a) => inspect(a),
    }
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn test(a: TestArgs) -> Result<ExitCode> {
    let cases = cases::load_cases(&a.cases)?;
    let host = host(&a.limits)?;
    let policy = host.load(&a.module)?;
    let results: Vec<_> = cases
        .iter()
        .map(|c| cases::run_case(&host, &policy, c))
        .collect();
    if let Some(path) = &a.junit {
        let suite = format!("{} {}", policy.info.name, policy.info.version);
        std::fs::write(path, cases::render_junit(&suite, &results))
            .with_context(|| format!("--junit: cannot write {}", path.display()))?;
    }
    let ok = results.iter().all(|r| r.passed);
    if a.json {
        let passed = results.iter().filter(|r| r.passed).count();
        let doc = serde_json::json!({
            "module": a.module.display().to_string(),
            "policy": { "name": policy.info.name, "version": policy.info.version, "sha256": policy.info.sha256 },
            "passed": passed,
            "failed": results.len() - passed,
            "results": results,
        });
        out::println(&doc.to_string())?;
    } else {
        out::print(&cases::render_text(&results))?;
    }
    Ok(exit(ok))
}

fn check(a: CheckArgs) -> Result<ExitCode> {
    let settings = a
        .settings
        .as_deref()
        .map(|s| pushgate::decide::read_settings_arg(s, "--settings"))
        .transpose()?;
    let host = host(&a.limits)?;
    let report = pushgate::check::check(&host, &a.module, settings.as_deref());
    if a.json {
        out::println(&serde_json::json!({ "ok": report.ok(), "report": report }).to_string())?;
    } else {
        out::print(&report.render())?;
    }
    Ok(exit(report.ok()))
}

fn describe(d: &Decision) -> String {
    format!("{}: {}", d.kind(), d.reason())
}

fn diff(a: DiffArgs) -> Result<ExitCode> {
    let cases = cases::load_cases(&a.cases)?;
    let host = host(&a.limits)?;
    let old = host.load(&a.old)?;
    let new = host.load(&a.new)?;
    let changes = cases::diff(&host, &old, &new, &cases);
    if a.json {
        let doc = serde_json::json!({
            "old": { "name": old.info.name, "version": old.info.version, "sha256": old.info.sha256 },
            "new": { "name": new.info.name, "version": new.info.version, "sha256": new.info.sha256 },
            "cases": cases.len(),
            "changed": changes,
        });
        out::println(&doc.to_string())?;
    } else {
        let mut text = String::new();
        for c in &changes {
            let _ = writeln!(
                text,
                "changed  {}\n    old  {}\n    new  {}",
                c.case,
                describe(&c.old),
                describe(&c.new)
            );
        }
        let _ = writeln!(
            text,
            "{} of {} case(s) decided differently by {} {} than by {} {}",
            changes.len(),
            cases.len(),
            new.info.name,
            new.info.version,
            old.info.name,
            old.info.version
        );
        out::print(&text)?;
    }
    Ok(exit(!a.fail_on_change || changes.is_empty()))
}

fn facts(
    runtime: &tokio::runtime::Runtime,
    signals: &tokio::sync::watch::Receiver<i32>,
    a: FactsArgs,
) -> Result<ExitCode> {
    let req = a.push.request()?;
    let facts = crate::signals::run(runtime, signals, pushgate::push::facts(&req))?;
    // The case expects what is decided today (the policy's answer, or the host's),
    // so it passes as written: a regression case to edit or keep.
    let settings: serde_json::Value = match &req.policy {
        Some(p) => serde_json::from_str(&p.settings).context("--policy-settings")?,
        None => serde_json::json!({}),
    };
    let plan = pushgate::plan::Plan::nothing(facts.verdict, facts.verdict_reason.clone());
    let decided = pushgate::decide::decide(&plan, req.policy.as_ref(), || {
        let mut f = facts.clone();
        f.settings = settings.to_string();
        f
    });
    let case = cases::Case {
        description: Some(format!(
            "observed by `pushgate policy facts` for {} at {}",
            req.container,
            req.tags.join(", ")
        )),
        settings,
        facts,
        expect: cases::Expect {
            decision: Kind::of(&decided.decision),
            reason: None,
        },
    };
    let text = serde_json::to_string_pretty(&case).expect("a case serializes") + "\n";
    match &a.out {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("--out: cannot write {}", path.display()))?,
        None => out::print(&text)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn new(a: NewArgs) -> Result<ExitCode> {
    let dir = pushgate::scaffold::create(&a.dir, &a.name)?;
    out::print(&format!(
        "created {0}\n\
         build:  cargo build --release --target wasm32-wasip2 --manifest-path {0}/Cargo.toml\n\
         test:   pushgate policy test {0}/target/wasm32-wasip2/release/{1}.wasm {0}/cases\n",
        dir.display(),
        pushgate::scaffold::crate_name(&a.name)
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn inspect(a: InspectArgs) -> Result<ExitCode> {
    let host = PolicyHost::new(Limits::default())?;
    let i = host.inspect(&a.module)?;
    if a.json {
        out::println(&serde_json::to_string(&i).expect("inspection serializes"))?;
    } else {
        let mut t = String::new();
        let _ = writeln!(t, "module:    {}", i.path.display());
        let _ = writeln!(
            t,
            "size:      {} ({} bytes)",
            pushgate::report::human_size(i.size),
            i.size
        );
        let _ = writeln!(t, "sha256:    {}", i.sha256);
        match &i.loaded {
            Ok(p) => {
                let _ = writeln!(t, "policy:    {} {}", p.name, p.version);
                let _ = writeln!(t, "about:     {}", p.description);
                let _ = writeln!(t, "contract:  {}", p.contract);
                let _ = writeln!(t, "settings:  {}", p.settings_help);
                let _ = writeln!(t, "sample:    {}", p.sample_settings);
            }
            Err(e) => {
                let _ = writeln!(t, "loads:     no: {e}");
            }
        }
        let _ = writeln!(t, "exports:   {}", i.exports.join(", "));
        let _ = writeln!(t, "imports:");
        for imp in &i.imports {
            let _ = writeln!(t, "  {imp}");
        }
        out::print(&t)?;
    }
    Ok(exit(i.loaded.is_ok()))
}
