//! `pushgate policy inspect`: what a module file, or a module from a registry
//! and the artifact it came in, holds, for a person or as JSON.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Result;

use pushgate::policy::remote::PolicySource;
use pushgate::policy::{Limits, PolicyHost};

use super::{InspectArgs, Modules, exit};
use crate::out;

pub(super) fn run(a: &InspectArgs, modules: &Modules) -> Result<ExitCode> {
    let host = PolicyHost::new(Limits::default())?;
    let i = match PolicySource::parse(&a.module)? {
        PolicySource::File(p) => host.inspect(&p)?,
        PolicySource::Oci(r) => host.inspect_fetched(&modules.fetch(&r)?)?,
    };
    if a.json {
        let doc = serde_json::to_value(&i).expect("an inspection serializes");
        out::json("policy inspect", i.loaded.is_ok(), doc)?;
    } else {
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
        out::print(&t)?;
    }
    Ok(exit(i.loaded.is_ok()))
}
