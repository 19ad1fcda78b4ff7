//! `pushgate policy ...`: tools for policy authors and for CI.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use pushgate::cases::{self, Kind};
use pushgate::contract::Decision;
use pushgate::policy::remote::{self, PolicySource};
use pushgate::policy::{Limits, Policy, PolicyHost};
use pushgate::signed_policy;

use std::fmt::Write as _;

use crate::cli::{PolicyLimitArgs, RegistryArgs};
use crate::out;

mod args;
mod inspect;
pub use args::*;

fn host(limits: &PolicyLimitArgs) -> Result<PolicyHost> {
    PolicyHost::new(limits.limits())
}

type Signals = tokio::sync::watch::Receiver<i32>;

/// Where the commands get modules from: files, or references fetched (or
/// found in the cache) with the registry flags.
struct Modules<'a> {
    runtime: &'a tokio::runtime::Runtime,
    signals: &'a Signals,
    registry: pushgate::registry::Options,
}

impl Modules<'_> {
    fn fetch(&self, r: &remote::OciRef) -> Result<remote::Fetched> {
        crate::signals::run(self.runtime, self.signals, remote::fetch(r, &self.registry))
    }

    /// Fetches `r` as [`signed_policy::fetch_checked`] does: signed by one of
    /// `signed_by` when given. Its signatures are kept in the cache either way.
    fn fetch_with_signatures(
        &self,
        r: &remote::OciRef,
        signed_by: Option<&pushgate::sign::TrustedKeys>,
    ) -> Result<(remote::Fetched, bool)> {
        crate::signals::run(self.runtime, self.signals, async {
            let f = signed_policy::fetch_checked(r, &self.registry, signed_by).await?;
            let cached = signed_policy::cache(&f, &self.registry)
                .await
                .with_context(|| format!("policy {}: keeping its signatures", f.label()))?;
            Ok((f, cached))
        })
    }

    /// Loads `module` (a file or a reference). A reference that cannot be had
    /// is an error naming it.
    fn load(&self, host: &PolicyHost, module: &str) -> Result<std::sync::Arc<Policy>> {
        Ok(self.try_load(host, module)??)
    }

    /// Like [`Modules::load`], but a module that is had and does not load is
    /// given back as such (for `policy check`, which reports it).
    fn try_load(
        &self,
        host: &PolicyHost,
        module: &str,
    ) -> Result<Result<std::sync::Arc<Policy>, pushgate::policy::PolicyError>> {
        Ok(match PolicySource::parse(module)? {
            PolicySource::File(p) => host.load(&p),
            PolicySource::Oci(r) => host.load_fetched(&self.fetch(&r)?),
        })
    }
}

pub fn run(
    runtime: &tokio::runtime::Runtime,
    signals: &Signals,
    cmd: PolicyCommand,
) -> Result<ExitCode> {
    let modules = |registry: &RegistryArgs| Modules {
        runtime,
        signals,
        registry: registry.options(),
    };
    match cmd {
        PolicyCommand::Test(a) => test(&a, &modules(&a.registry)),
        PolicyCommand::Check(a) => check(&a, &modules(&a.registry)),
        PolicyCommand::Diff(a) => diff(&a, &modules(&a.registry)),
        PolicyCommand::Facts(a) => facts(runtime, signals, *a),
        PolicyCommand::New(a) => new(a),
        PolicyCommand::Inspect(a) => inspect::run(&a, &modules(&a.registry)),
        PolicyCommand::Push(a) => push(runtime, signals, a),
        PolicyCommand::Pull(a) => pull(&a, &modules(&a.registry)),
    }
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn test(a: &TestArgs, modules: &Modules) -> Result<ExitCode> {
    let cases = cases::load_cases(&a.cases)?;
    let host = host(&a.limits)?;
    let policy = modules.load(&host, &a.module)?;
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
            "module": a.module,
            "policy": policy_json(&policy),
            "passed": passed,
            "failed": results.len() - passed,
            "results": results,
        });
        out::json("policy test", ok, doc)?;
    } else {
        out::print(&cases::render_text(&results))?;
    }
    Ok(exit(ok))
}

fn check(a: &CheckArgs, modules: &Modules) -> Result<ExitCode> {
    let settings = a
        .settings
        .as_deref()
        .map(|s| pushgate::decide::read_settings_arg(s, "--settings"))
        .transpose()?;
    let host = host(&a.limits)?;
    let loaded = modules.try_load(&host, &a.module)?;
    let report =
        pushgate::check::check_loaded(&host, a.module.clone(), loaded, settings.as_deref());
    if a.json {
        out::json(
            "policy check",
            report.ok(),
            serde_json::json!({ "report": report }),
        )?;
    } else {
        out::print(&report.render())?;
    }
    Ok(exit(report.ok()))
}

/// A policy as the JSON outputs name it: name, version, sha256, and the pinned
/// reference of one fetched from a registry.
fn policy_json(p: &Policy) -> serde_json::Value {
    let mut v = serde_json::json!({ "name": p.info.name, "version": p.info.version, "sha256": p.info.sha256 });
    if let Some(r) = &p.info.reference {
        v["reference"] = r.clone().into();
    }
    v
}

fn describe(d: &Decision) -> String {
    format!("{}: {}", d.kind(), d.reason())
}

fn diff(a: &DiffArgs, modules: &Modules) -> Result<ExitCode> {
    let cases = cases::load_cases(&a.cases)?;
    let host = host(&a.limits)?;
    let old = modules.load(&host, &a.old)?;
    let new = modules.load(&host, &a.new)?;
    let changes = cases::diff(&host, &old, &new, &cases);
    let ok = !a.fail_on_change || changes.is_empty();
    if a.json {
        let doc = serde_json::json!({
            "old": policy_json(&old),
            "new": policy_json(&new),
            "cases": cases.len(),
            "changed": changes,
        });
        out::json("policy diff", ok, doc)?;
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
    Ok(exit(ok))
}

fn facts(
    runtime: &tokio::runtime::Runtime,
    signals: &tokio::sync::watch::Receiver<i32>,
    a: FactsArgs,
) -> Result<ExitCode> {
    if let Some(log) = &a.from_log {
        return from_log(log, a.decision_id.as_deref(), a.out.as_deref());
    }
    // clap holds push's flags required unless --from-log is given.
    let push = a.push.expect("push's flags or --from-log");
    let registry = push.registry.with_transfers(&push.transfers);
    let progress = pushgate::progress::wanted(false, a.quiet);
    let (mut req, policy) =
        crate::push_request(push.target, &push.run, registry, &push.policy, progress)?;
    req.trusted = push.trust.keys()?;
    let signed_by = push.trust.signed_policies(&req.trusted, None)?;
    let policy = policy.map(|p| crate::PendingPolicy { signed_by, ..p });
    if let Some(pending) = &policy {
        req.policy = Some(crate::signals::run(
            runtime,
            signals,
            pending.resolve(&req.registry),
        )?);
    }
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

/// `policy facts --from-log LOG [--out DIR]`: a decision log's facts as cases.
fn from_log(log: &Path, decision_id: Option<&str>, out: Option<&Path>) -> Result<ExitCode> {
    let mut entries = pushgate::decision_log::read(log)?;
    if let Some(id) = decision_id {
        entries.retain(|e| e.decision_id == id);
        if entries.is_empty() {
            anyhow::bail!(
                "decision log {}: no line has decision id {id}",
                log.display()
            );
        }
    }
    let cases = pushgate::decision_log::replay_cases(&entries)?;
    if cases.is_empty() {
        anyhow::bail!(
            "decision log {}: no line holds facts (log them with --decision-log-facts)",
            log.display()
        );
    }
    let text = |case| serde_json::to_string_pretty(case).expect("a case serializes") + "\n";
    let Some(dir) = out else {
        let [(_, case)] = cases.as_slice() else {
            anyhow::bail!(
                "decision log {}: {} lines hold facts: give --out DIR for them all, or \
                 --decision-id ID for one",
                log.display(),
                cases.len()
            );
        };
        out::print(&text(case))?;
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("--out: cannot create {}", dir.display()))?;
    for (name, case) in &cases {
        let path = dir.join(name);
        std::fs::write(&path, text(case))
            .with_context(|| format!("--out: cannot write {}", path.display()))?;
    }
    out::print(&format!(
        "wrote {} case(s) to {} ({} line(s) without facts left out)\n",
        cases.len(),
        dir.display(),
        entries.len() - cases.len()
    ))?;
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

fn push(runtime: &tokio::runtime::Runtime, signals: &Signals, a: PushArgs) -> Result<ExitCode> {
    let r = remote::OciRef::parse(&a.reference)?;
    let host = PolicyHost::new(Limits::default())?;
    // Only a module that loads is published: what a release would refuse
    // should not reach the registry.
    let policy = host.load(&a.module)?;
    let module =
        std::fs::read(&a.module).with_context(|| format!("cannot read {}", a.module.display()))?;
    let key = a.sign.signer(None)?;
    let published = crate::signals::run(
        runtime,
        signals,
        signed_policy::publish(
            &policy.info,
            &module,
            &r,
            &a.registry.options(),
            key.as_deref(),
        ),
    )?;
    if a.json {
        out::json(
            "policy push",
            true,
            serde_json::json!({ "published": published }),
        )?;
    } else {
        let mut t = format!(
            "pushed {} {} to {}\ndigest: {}\npinned: {}\n",
            published.published.name,
            published.published.version,
            published.published.reference,
            published.published.digest,
            published.published.pinned
        );
        if let Some(sig) = &published.signature {
            let _ = writeln!(
                t,
                "signed: for {} by key {} at {} ({})",
                sig.identity,
                sig.key_id,
                sig.tag,
                if sig.added { "added" } else { "already there" }
            );
        }
        out::print(&t)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn pull(a: &PullArgs, modules: &Modules) -> Result<ExitCode> {
    let r = remote::OciRef::parse(&a.reference)?;
    let keys = a.trust.keys()?;
    let signed_by = a.trust.signed_policies(&keys, None)?;
    let (fetched, signature_cached) = modules.fetch_with_signatures(&r, signed_by.as_ref())?;
    // Loaded too: a module that does not load is no use in the cache.
    let host = PolicyHost::new(Limits::default())?;
    let policy = host.load_fetched(&fetched)?;
    if a.json {
        let doc = serde_json::json!({
            "reference": r.to_string(),
            "digest": fetched.digest,
            "pinned": fetched.pinned,
            "policy": policy_json(&policy),
            "cached": fetched.path,
            "from_cache": fetched.from_cache,
            "signature_cached": signature_cached,
            "signed_by": fetched.signed_by,
        });
        out::json("policy pull", true, doc)?;
    } else {
        let mut t = format!(
            "pulled {} {} from {}\ndigest: {}\npinned: {}\n",
            policy.info.name, policy.info.version, r, fetched.digest, fetched.pinned
        );
        match &fetched.path {
            Some(p) => {
                let _ = writeln!(t, "cached:  {}", p.display());
            }
            None => t.push_str("cached:  no (the policy cache is off)\n"),
        }
        if let Some(keys) = &fetched.signed_by {
            let _ = writeln!(t, "signed:  by {}", keys.join(", "));
        } else if signature_cached {
            t.push_str(
                "signed:  not verified (--require-signed-policies --trust-key NAME=FILE.pub \
                 does); its signatures are cached\n",
            );
        }
        out::print(&t)?;
    }
    Ok(ExitCode::SUCCESS)
}
