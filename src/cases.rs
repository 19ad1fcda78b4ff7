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

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::decide::Decision;
use crate::facts::Facts;
use crate::policy::{Policy, PolicyHost};

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

fn reason_of(d: &Decision) -> &str {
    match d {
        Decision::Skip(r) | Decision::Push(r) | Decision::Fail(r) => r,
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

/// What a module answered for a case's facts and settings, as `push` would see it:
/// settings rejected or a module that cannot answer is a `fail`.
pub fn answer(host: &PolicyHost, policy: &Policy, case: &LoadedCase) -> Decision {
    let facts = case.facts();
    let settings = case.settings();
    std::thread::scope(|s| {
        s.spawn(|| match host.validate_settings(policy, &settings) {
            Err(e) => Decision::Fail(e.to_string()),
            Ok(()) => match host.decide(policy, &facts) {
                Ok((d, _logs)) => d,
                Err(e) => Decision::Fail(e.to_string()),
            },
        })
        .join()
        .expect("policy thread")
    })
}

/// The result of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub case: String,
    pub passed: bool,
    pub expected: Expect,
    pub actual: Decision,
    /// What differs, for a failed case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub difference: Option<String>,
    #[serde(serialize_with = "millis")]
    pub time: Duration,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// Runs one case.
pub fn run_case(host: &PolicyHost, policy: &Policy, case: &LoadedCase) -> CaseResult {
    let start = Instant::now();
    let actual = answer(host, policy, case);
    let time = start.elapsed();
    let expected = case.case.expect.clone();
    let kind_ok = Kind::of(&actual) == expected.decision;
    let reason_ok = case
        .reason
        .as_ref()
        .is_none_or(|re| re.is_match(reason_of(&actual)));
    let difference = (!(kind_ok && reason_ok)).then(|| {
        let want = match &expected.reason {
            Some(r) => format!("{} with a reason matching /{r}/", expected.decision.name()),
            None => expected.decision.name().to_string(),
        };
        format!(
            "expected {want}\n     got {}: {}",
            Kind::of(&actual).name(),
            reason_of(&actual)
        )
    });
    CaseResult {
        case: case.path.display().to_string(),
        passed: difference.is_none(),
        expected,
        actual,
        difference,
        time,
    }
}

/// `pass`/`FAIL` lines and a count, for a person.
pub fn render_text(results: &[CaseResult]) -> String {
    let mut out = String::new();
    for r in results {
        if r.passed {
            out.push_str(&format!("pass  {}\n", r.case));
        } else {
            out.push_str(&format!(
                "FAIL  {}\n      {}\n",
                r.case,
                r.difference.as_deref().unwrap_or("")
            ));
        }
    }
    let failed = results.iter().filter(|r| !r.passed).count();
    out.push_str(&format!(
        "{} passed, {} failed\n",
        results.len() - failed,
        failed
    ));
    out
}

/// JUnit XML, for CI systems: one testsuite, one testcase per case.
pub fn render_junit(suite: &str, results: &[CaseResult]) -> String {
    let failed = results.iter().filter(|r| !r.passed).count();
    let total: f64 = results.iter().map(|r| r.time.as_secs_f64()).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" time=\"{total:.3}\">\n",
        xml(suite),
        results.len()
    ));
    for r in results {
        out.push_str(&format!(
            "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
            xml(suite),
            xml(&r.case),
            r.time.as_secs_f64()
        ));
        match &r.difference {
            None => out.push_str("/>\n"),
            Some(d) => out.push_str(&format!(
                ">\n    <failure message=\"{}\">{}</failure>\n  </testcase>\n",
                xml(d.lines().next().unwrap_or("")),
                xml(d)
            )),
        }
    }
    out.push_str("</testsuite>\n");
    out
}

fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters other than tab/newline are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' && c != '\r' => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// One case whose decision differs between two versions of a policy.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub case: String,
    pub old: Decision,
    pub new: Decision,
}

/// Runs both modules over every case and returns the cases whose decision (kind
/// or reason) changed.
pub fn diff(host: &PolicyHost, old: &Policy, new: &Policy, cases: &[LoadedCase]) -> Vec<Change> {
    cases
        .iter()
        .filter_map(|c| {
            let (a, b) = (answer(host, old, c), answer(host, new, c));
            (comparable(&a, old) != comparable(&b, new)).then(|| Change {
                case: c.path.display().to_string(),
                old: a,
                new: b,
            })
        })
        .collect()
}

/// A decision with the module's path taken out of its reason: the host's own
/// reasons name the module file (`policy module PATH rejected the settings: ...`),
/// and two builds of a policy sit at different paths without deciding differently.
fn comparable(d: &Decision, policy: &Policy) -> Decision {
    let path = policy.info.path.display().to_string();
    let strip = |r: &str| r.replace(&path, "<module>");
    match d {
        Decision::Skip(r) => Decision::Skip(strip(r)),
        Decision::Push(r) => Decision::Push(strip(r)),
        Decision::Fail(r) => Decision::Fail(strip(r)),
    }
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

    #[test]
    fn junit_escapes_and_counts() {
        let r = CaseResult {
            case: "a<b>&\"c\".json".into(),
            passed: false,
            expected: Expect {
                decision: Kind::Push,
                reason: None,
            },
            actual: Decision::Fail("x & y\u{1}".into()),
            difference: Some("expected push\n     got fail: x & y".into()),
            time: Duration::from_millis(2),
        };
        let x = render_junit("suite", &[r]);
        assert!(x.contains("tests=\"1\" failures=\"1\""), "{x}");
        assert!(
            x.contains("name=\"a&lt;b&gt;&amp;&quot;c&quot;.json\""),
            "{x}"
        );
        assert!(x.contains("<failure message=\"expected push\">"), "{x}");
        assert!(!x.contains('\u{1}'));
    }

    #[test]
    fn text_output_ends_with_the_counts() {
        let ok = CaseResult {
            case: "a.json".into(),
            passed: true,
            expected: Expect {
                decision: Kind::Push,
                reason: None,
            },
            actual: Decision::Push("r".into()),
            difference: None,
            time: Duration::ZERO,
        };
        assert!(render_text(&[ok]).ends_with("1 passed, 0 failed\n"));
    }
}
