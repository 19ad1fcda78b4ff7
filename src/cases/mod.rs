//! Policy cases: facts, settings and the expected decision, as JSON files that a
//! policy author runs offline with `pushgate policy test` (and CI with `diff`).
//!
//! A case file:
//!
//! ```json
//! {
//!   "description": "a moved release tag is never put back",
//!   "settings": { "immutable": ["*.*.*"] },
//!   "facts": { "container": "oscontainer", "repo": "...", "tags": [...], ... },
//!   "expect": { "decision": "fail", "reason": "never move" }
//! }
//! ```
//!
//! `facts` has exactly the fields of the WIT `facts` record (kebab-case) but for
//! `settings`, which sits beside it; `expect.reason` is an optional regular
//! expression the decision's reason must match.

//!
//! This module owns the format; [`run`] runs cases against a module, [`output`]
//! renders results for people and CI, [`diff`] compares two versions of a policy.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::contract::{Decision, Facts};

mod diff;
mod output;
mod run;

pub use diff::{Change, diff};
pub use output::{render_junit, render_text};
pub use run::{CaseResult, answer, run_case};

/// A decision kind, as cases name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Skip,
    Push,
    Fail,
}

impl Kind {
    pub fn of(d: &Decision) -> Kind {
        match d {
            Decision::Skip(_) => Kind::Skip,
            Decision::Push(_) => Kind::Push,
            Decision::Fail(_) => Kind::Fail,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Skip => "skip",
            Kind::Push => "push",
            Kind::Fail => "fail",
        }
    }
}

/// What a case expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub decision: Kind,
    /// A regular expression the reason must match (anywhere in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One case file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default = "empty_settings")]
    pub settings: serde_json::Value,
    pub facts: Facts,
    pub expect: Expect,
}

fn empty_settings() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// A case read from disk, its reason pattern compiled.
#[derive(Debug, Clone)]
pub struct LoadedCase {
    pub path: PathBuf,
    pub case: Case,
    reason: Option<Regex>,
}

impl LoadedCase {
    /// The facts with the case's settings in place, as the host would pass them.
    pub fn facts(&self) -> Facts {
        let mut f = self.case.facts.clone();
        f.settings = self.settings();
        f
    }

    pub fn settings(&self) -> String {
        self.case.settings.to_string()
    }
}

/// Parses one case file; errors name the file and, for JSON, the line and column.
pub fn parse_case(path: &Path, text: &str) -> Result<LoadedCase> {
    let case: Case = serde_json::from_str(text).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "malformed JSON"
            }
            _ => "not a case",
        };
        anyhow::anyhow!(
            "case file {}: {what}: {e} (a case holds \"facts\", \"expect\" and optionally \
             \"settings\" and \"description\"; see POLICIES.md)",
            path.display()
        )
    })?;
    if !case.settings.is_object() {
        bail!(
            "case file {}: \"settings\" must be a JSON object",
            path.display()
        );
    }
    let reason = match &case.expect.reason {
        None => None,
        Some(r) => Some(Regex::new(r).map_err(|e| {
            anyhow::anyhow!(
                "case file {}: expect.reason is not a valid pattern: {e}",
                path.display()
            )
        })?),
    };
    Ok(LoadedCase {
        path: path.to_path_buf(),
        case,
        reason,
    })
}

/// Reads cases from files and directories (every `*.json` below a directory, in
/// path order). Any unreadable or malformed file is an error: a case that silently
/// does not run is worse than none.
pub fn load_cases(paths: &[PathBuf]) -> Result<Vec<LoadedCase>> {
    let mut files = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p)
            .with_context(|| format!("cannot read case path {}", p.display()))?;
        if meta.is_dir() {
            collect_json(p, &mut files)?;
        } else {
            files.push(p.clone());
        }
    }
    if files.is_empty() {
        bail!(
            "no case files (*.json) in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read case file {}", f.display()))?;
            parse_case(f, &text)
        })
        .collect()
}

fn collect_json(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read case directory {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    entries.sort();
    for e in entries {
        if e.is_dir() {
            collect_json(&e, out)?;
        } else if e.extension().is_some_and(|x| x == "json") {
            out.push(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FACTS: &str = r#"{
        "container": "os", "repo": "quay.io/x/y",
        "tags": [{"name": "stable", "current": null, "is-desired": false}],
        "build-id": "41.1", "key": "base-oscontainer",
        "requested-arches": ["x86_64"], "present-arches": ["x86_64"],
        "arches": [{"arch": "x86_64", "has-key": false, "recorded-digest": null,
                    "desired-digest": null, "registry-digest": null}],
        "desired-list-digest": null, "verdict": "push", "verdict-reason": "stable is missing",
        "force": false, "dry-run": false
    }"#;

    fn case(body: &str) -> Result<LoadedCase> {
        parse_case(Path::new("cases/x.json"), body)
    }

    #[test]
    fn a_complete_case_parses_with_default_settings() {
        let c = case(&format!(
            r#"{{"facts": {FACTS}, "expect": {{"decision": "push"}}}}"#
        ))
        .unwrap();
        assert_eq!(c.settings(), "{}");
        assert_eq!(c.facts().settings, "{}");
        assert_eq!(c.case.expect.decision, Kind::Push);
    }

    #[test]
    fn malformed_json_names_the_file_and_position() {
        let e = case("{\"facts\": ").unwrap_err().to_string();
        assert!(
            e.contains("cases/x.json") && e.contains("malformed JSON") && e.contains("line"),
            "{e}"
        );
    }

    #[test]
    fn unknown_fields_are_refused_at_every_level() {
        let e = case(&format!(
            r#"{{"facts": {FACTS}, "expect": {{"decision": "push"}}, "expected": 1}}"#
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown field `expected`"), "{e}");
        let facts = FACTS.replace("\"force\"", "\"forced\": true, \"force\"");
        let e = case(&format!(
            r#"{{"facts": {facts}, "expect": {{"decision": "push"}}}}"#
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown field `forced`"), "{e}");
        let e = case(&format!(
            r#"{{"facts": {FACTS}, "expect": {{"decision": "push", "why": "x"}}}}"#
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown field `why`"), "{e}");
        // settings live beside the facts, not inside them
        let facts = FACTS.replace("\"force\"", "\"settings\": \"{}\", \"force\"");
        assert!(
            case(&format!(
                r#"{{"facts": {facts}, "expect": {{"decision": "push"}}}}"#
            ))
            .is_err()
        );
    }

    #[test]
    fn a_missing_or_bad_expectation_is_refused() {
        let e = case(&format!(r#"{{"facts": {FACTS}}}"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `expect`"), "{e}");
        let e = case(&format!(
            r#"{{"facts": {FACTS}, "expect": {{"decision": "maybe"}}}}"#
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("maybe"), "{e}");
        let e = case(&format!(
            r#"{{"facts": {FACTS}, "expect": {{"decision": "push", "reason": "("}}}}"#
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("expect.reason"), "{e}");
        let e = case(&format!(
            r#"{{"facts": {FACTS}, "settings": [1], "expect": {{"decision": "push"}}}}"#
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("settings"), "{e}");
    }
}
