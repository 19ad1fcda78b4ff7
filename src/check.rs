//! `pushgate policy check`: is a module fit to run in a release?
//!
//! It must load (a component, the compatible contract, no imports the host does not
//! offer), describe itself, accept its settings, and answer a built-in corpus of
//! situations within the caps, the same way twice.

use serde::Serialize;

use crate::contract::{
    ArchFact, Decision, Facts, Origin, SignatureFacts, SourceFact, TagFact, Verdict,
};
use crate::policy::{Policy, PolicyHost};

/// One finding of a check.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub ok: bool,
    pub what: String,
}

/// A situation of the corpus and what the module answered.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub situation: String,
    pub decision: Option<Decision>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub module: String,
    pub findings: Vec<Finding>,
    pub answers: Vec<Answer>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.findings.iter().all(|f| f.ok)
    }

    pub fn render(&self) -> String {
        let mut out = format!("policy check {}\n", self.module);
        for f in &self.findings {
            out.push_str(&format!(
                "  {}  {}\n",
                if f.ok { "ok     " } else { "PROBLEM" },
                f.what
            ));
        }
        if !self.answers.is_empty() {
            out.push_str("  decisions on the built-in corpus:\n");
            for a in &self.answers {
                let d = match &a.decision {
                    Some(Decision::Skip(r)) => format!("skip: {r}"),
                    Some(Decision::Push(r)) => format!("push: {r}"),
                    Some(Decision::Fail(r)) => format!("fail: {r}"),
                    None => "(no answer)".into(),
                };
                out.push_str(&format!("    {:<34} {d}\n", a.situation));
            }
        }
        out.push_str(if self.ok() {
            "ok\n"
        } else {
            "problems found\n"
        });
        out
    }
}

const D_LIST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D_OTHER: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
const D_X86: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
const D_ARM: &str = "sha256:4444444444444444444444444444444444444444444444444444444444444444";

/// The built-in corpus: every verdict, then the awkward situations.
pub fn corpus() -> Vec<(String, Facts)> {
    let base = |verdict: Verdict| {
        let recorded = verdict == Verdict::UpToDate;
        let at_desired = verdict != Verdict::Push;
        Facts {
            container: "oscontainer".into(),
            repo: "quay.io/example/os".into(),
            tags: ["stable", "41.20261127.1.0"]
                .iter()
                .map(|t| TagFact {
                    name: t.to_string(),
                    current: at_desired.then(|| D_LIST.to_string()),
                    is_desired: at_desired,
                    signatures: None,
                })
                .collect(),
            build_id: Some("41.20261127.1.0".into()),
            key: Some("base-oscontainer".into()),
            requested_arches: vec!["x86_64".into(), "aarch64".into()],
            present_arches: vec!["x86_64".into(), "aarch64".into()],
            arches: [("x86_64", D_X86), ("aarch64", D_ARM)]
                .iter()
                .map(|(a, d)| ArchFact {
                    arch: a.to_string(),
                    has_key: recorded,
                    recorded_digest: recorded.then(|| d.to_string()),
                    desired_digest: Some(d.to_string()),
                    registry_digest: at_desired.then(|| d.to_string()),
                    source: SourceFact {
                        origin: Origin::Local(format!("builds/41.20261127.1.0/{a}/os.ociarchive")),
                        digest: Some(d.to_string()),
                        signatures: None,
                    },
                })
                .collect(),
            desired_list_digest: Some(D_LIST.into()),
            verdict,
            verdict_reason: format!("the host's verdict is {verdict:?}"),
            force: false,
            dry_run: false,
            settings: String::new(),
            trusted_keys: Vec::new(),
        }
    };
    let mut out = vec![
        ("up-to-date".to_string(), base(Verdict::UpToDate)),
        ("record-only".to_string(), base(Verdict::RecordOnly)),
        ("push".to_string(), base(Verdict::Push)),
    ];
    let mut missing = base(Verdict::Push);
    missing.requested_arches.push("s390x".into());
    out.push(("push, an arch lacks the artifact".into(), missing));
    let mut moved = base(Verdict::Push);
    moved.tags[1].current = Some(D_OTHER.into());
    out.push(("push, a tag points to another list".into(), moved.clone()));
    let mut forced = moved;
    forced.force = true;
    out.push(("push --force over a moved tag".into(), forced));
    let mut forced_done = base(Verdict::UpToDate);
    forced_done.force = true;
    forced_done.verdict = Verdict::Push;
    forced_done.verdict_reason = format!("the host's verdict is {:?}", Verdict::Push);
    out.push(("push --force when up to date".into(), forced_done));
    let mut dry = base(Verdict::Push);
    dry.dry_run = true;
    out.push(("push --dry-run".into(), dry));
    let mut images = base(Verdict::Push);
    images.build_id = None;
    images.key = None;
    images.requested_arches.clear();
    out.push(("push from --image sources".into(), images.clone()));
    // Contract 0.2.0: sources in a registry, with what their signatures say.
    let mut staged = images;
    staged.trusted_keys = vec!["build".into(), "release".into()];
    for a in &mut staged.arches {
        let signed = a.arch == "x86_64";
        let digest = a.desired_digest.clone().unwrap_or_default();
        a.source = SourceFact {
            origin: Origin::Registry(format!("registry.example/staging/os@{digest}")),
            digest: a.desired_digest.clone(),
            signatures: Some(SignatureFacts {
                valid_keys: if signed { vec!["build".into()] } else { vec![] },
                invalid: if signed {
                    vec![]
                } else {
                    vec!["signature 0: made by none of the trusted keys (build, release)".into()]
                },
                attestations: vec![],
            }),
        };
    }
    for t in &mut staged.tags {
        t.signatures = t.current.as_ref().map(|_| SignatureFacts::default());
    }
    out.push((
        "promotion from a registry, one arch signed by a trusted key, one not".into(),
        staged,
    ));
    out
}

/// Checks a module; `settings` defaults to the module's own sample settings.
pub fn check(host: &PolicyHost, path: &std::path::Path, settings: Option<&str>) -> CheckReport {
    check_loaded(host, path.display().to_string(), host.load(path), settings)
}

/// [`check`] of a module already loaded (or not): one fetched from a registry,
/// say. `module` names it in the report.
pub fn check_loaded(
    host: &PolicyHost,
    module: String,
    loaded: Result<std::sync::Arc<Policy>, crate::policy::PolicyError>,
    settings: Option<&str>,
) -> CheckReport {
    let mut r = CheckReport {
        module,
        findings: vec![],
        answers: vec![],
    };
    let mut note = |ok: bool, what: String| r.findings.push(Finding { ok, what });
    let policy = match loaded {
        Ok(p) => p,
        Err(e) => {
            note(false, e.to_string());
            return r;
        }
    };
    let info = &policy.info;
    note(
        true,
        format!(
            "a component implementing {} ({}, {}); this pushgate runs {}",
            info.contract,
            crate::human::size(info.size),
            info.sha256,
            crate::policy::CONTRACTS.join(", ")
        ),
    );
    note(
        true,
        format!(
            "imports only what the host offers ({} imports)",
            info.imports.len()
        ),
    );
    for (field, value) in [
        ("name", &info.name),
        ("version", &info.version),
        ("description", &info.description),
    ] {
        let flagged = format!("metadata {field} ");
        let ok = !value.trim().is_empty()
            && !info
                .metadata_problems
                .iter()
                .any(|p| p.starts_with(&flagged));
        note(
            ok,
            format!(
                "metadata {field}: {value:?}{}",
                if value.trim().is_empty() {
                    " is empty"
                } else {
                    ""
                }
            ),
        );
    }
    for problem in &info.metadata_problems {
        note(false, problem.clone());
    }
    let settings = settings.unwrap_or(&info.sample_settings).to_string();
    match serde_json::from_str::<serde_json::Value>(&settings) {
        Ok(v) if v.is_object() => {}
        _ => note(
            false,
            format!("settings {settings:?} are not a JSON object"),
        ),
    }
    let settings_ok = match std::thread::scope(|s| {
        s.spawn(|| host.validate_settings(&policy, &settings))
            .join()
    }) {
        Ok(Ok(())) => {
            note(true, format!("accepts the settings {settings}"));
            true
        }
        Ok(Err(e)) => {
            note(false, e.to_string());
            false
        }
        Err(_) => {
            note(false, "validating the settings crashed the check".into());
            false
        }
    };
    if settings_ok {
        corpus_answers(host, &policy, &settings, &mut r);
    }
    r
}

fn corpus_answers(host: &PolicyHost, policy: &Policy, settings: &str, r: &mut CheckReport) {
    let mut failures = Vec::new();
    let mut unstable = Vec::new();
    for (situation, mut facts) in corpus() {
        facts.settings = settings.to_string();
        let ask = || {
            std::thread::scope(|s| {
                s.spawn(|| host.decide(policy, &facts))
                    .join()
                    .expect("policy thread")
            })
        };
        let (first, second) = (ask(), ask());
        let decision = match (&first, &second) {
            (Ok((a, _)), Ok((b, _))) => {
                if a != b {
                    unstable.push(situation.clone());
                }
                Some(a.clone())
            }
            (Err(e), _) | (_, Err(e)) => {
                failures.push(format!("{situation}: {e}"));
                None
            }
        };
        r.answers.push(Answer {
            situation,
            decision,
        });
    }
    let n = r.answers.len();
    r.findings.push(Finding {
        ok: failures.is_empty(),
        what: if failures.is_empty() {
            format!("answers all {n} situations of the corpus within the caps")
        } else {
            format!("no answer within the caps: {}", failures.join("; "))
        },
    });
    let answered = r.answers.iter().filter(|a| a.decision.is_some()).count();
    r.findings.push(Finding {
        ok: unstable.is_empty() && answered > 0,
        what: if answered == 0 {
            "determinism not shown: no situation was answered".into()
        } else if unstable.is_empty() {
            format!("answers the same facts the same way twice ({answered} situations)")
        } else {
            format!(
                "answered differently the second time: {}",
                unstable.join(", ")
            )
        },
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_corpus_covers_every_verdict_and_the_awkward_cases() {
        let c = corpus();
        for v in [Verdict::UpToDate, Verdict::RecordOnly, Verdict::Push] {
            assert!(c.iter().any(|(_, f)| f.verdict == v));
        }
        assert!(c.iter().any(|(_, f)| f.force));
        assert!(c.iter().any(|(_, f)| f.dry_run));
        assert!(
            c.iter()
                .any(|(_, f)| f.tags.iter().any(|t| t.current.is_some() && !t.is_desired))
        );
        assert!(c.iter().any(|(_, f)| {
            f.requested_arches
                .iter()
                .any(|a| !f.present_arches.contains(a))
        }));
        assert!(c.iter().any(|(_, f)| f.key.is_none()));
        let names: std::collections::BTreeSet<_> = c.iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), c.len(), "situations have distinct names");
    }
}
