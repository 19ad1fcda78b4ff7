//! `pushgate policy inspect`: what a module file, or a module from a registry
//! and the artifact it came in (its signatures too), holds, for a person or as
//! JSON.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{Context, Result};

use pushgate::policy::Inspection;
use pushgate::policy::remote::PolicySource;
use pushgate::policy::{Limits, PolicyHost};
use pushgate::sign::TrustedKeys;
use pushgate::signed_policy::{self, ReadFrom, Shown};

use super::{InspectArgs, Modules, exit};
use crate::cli::UsageError;
use crate::out;

pub(super) fn run(a: &InspectArgs, modules: &Modules) -> Result<ExitCode> {
    let host = PolicyHost::new(Limits::default())?;
    let keys = (!a.trust_keys.is_empty())
        .then(|| TrustedKeys::load(&a.trust_keys, "--trust-key"))
        .transpose()?;
    let (i, signatures) = match PolicySource::parse(&a.module)? {
        PolicySource::File(p) => {
            if keys.is_some() {
                return Err(UsageError(format!(
                    "--trust-key: {} is a module file, which carries no signatures; \
                     inspect its artifact as oci://REGISTRY/REPO@sha256:… to check them",
                    p.display()
                ))
                .into());
            }
            (host.inspect(&p)?, None)
        }
        PolicySource::Oci(r) => {
            let f = modules.fetch(&r)?;
            let shown = crate::signals::run(
                modules.runtime,
                modules.signals,
                signed_policy::shown(&f, keys.as_ref(), &modules.registry),
            )
            .with_context(|| format!("policy inspect {}", f.label()))?;
            (host.inspect_fetched(&f)?, Some(shown))
        }
    };
    if a.json {
        let mut doc = serde_json::to_value(&i).expect("an inspection serializes");
        if let Some(s) = &signatures {
            doc["artifact"]["signatures"] = serde_json::to_value(s).expect("signatures serialize");
        }
        out::json("policy inspect", i.loaded.is_ok(), doc)?;
    } else {
        out::print(&text(&i, signatures.as_ref()))?;
    }
    Ok(exit(i.loaded.is_ok()))
}

fn text(i: &Inspection, signatures: Option<&Shown>) -> String {
    let mut t = String::new();
    match &i.artifact {
        Some(art) => {
            let _ = writeln!(t, "module:    {}", art.pinned);
            let _ = writeln!(t, "cached:    {}", i.path.display());
        }
        None => {
            let _ = writeln!(t, "module:    {}", i.path.display());
        }
    }
    let _ = writeln!(
        t,
        "size:      {} ({} bytes)",
        pushgate::human::size(i.size),
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
    let _ = writeln!(t, "host runs: {}", i.host_contracts.join(", "));
    let _ = writeln!(t, "imports:");
    for imp in &i.imports {
        let _ = writeln!(t, "  {imp}");
    }
    if let Some(art) = &i.artifact {
        let _ = writeln!(t, "artifact:  {} (from {})", art.digest, art.reference);
        for (k, v) in &art.annotations {
            let _ = writeln!(t, "  {k}: {}", v.as_str().unwrap_or_default());
        }
    }
    if let Some(s) = signatures {
        signatures_text(&mut t, s);
    }
    t
}

/// The artifact's signatures: how many, where read, and with trusted keys,
/// which signed it and why each other signature does not count.
fn signatures_text(t: &mut String, s: &Shown) {
    let from = match s.read_from {
        ReadFrom::Cache => "the cache",
        ReadFrom::Registry => "the registry",
    };
    if !s.present {
        let why = match s.read_from {
            // A module served from the cache is inspected offline.
            ReadFrom::Cache => {
                "the cache holds no copy of them; inspecting it by tag reads \
                                the registry's"
            }
            ReadFrom::Registry => "the registry has no such tag",
        };
        let _ = writeln!(t, "signatures: none at {} ({why})", s.tag);
    } else {
        let _ = writeln!(t, "signatures: {} at {} (read from {from})", s.count, s.tag);
    }
    match &s.signed_by {
        None if s.present => {
            let _ = writeln!(
                t,
                "  verified:    none (give --trust-key NAME=FILE.pub to check them)"
            );
        }
        None => {}
        Some(keys) if keys.is_empty() => {
            let _ = writeln!(t, "  signed by:   no trusted key");
        }
        Some(keys) => {
            let _ = writeln!(t, "  signed by:   {}", keys.join(", "));
        }
    }
    for why in &s.not_counted {
        let _ = writeln!(t, "  not counted: {why}");
    }
}
