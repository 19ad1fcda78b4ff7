//! The decision log (`--decision-log FILE`): one JSON line per container and
//! run, saying what was decided, by which policy, on which facts, and what
//! followed, so that an auditor can tell afterwards why each container was
//! pushed, skipped or failed.
//!
//! The file is opened with `O_APPEND` and each line goes out in one `write`, so
//! concurrent runs appending to the same file never interleave within a line,
//! and a reader never sees half a line from a finished run. Lines are never
//! rewritten.
//!
//! The facts are hashed (`facts_sha256`, over the compact JSON of the facts as
//! the policy was given them, settings included); with `--decision-log-facts`
//! they are logged too, and `pushgate policy facts --from-log` turns such lines
//! back into case files ([`replay_cases`]).
//!
//! A push gathers what the log needs as it goes (`Trace`: the verdict, the
//! decision, the facts) and [`DecisionLog::record`] writes the line, whatever
//! the run's end: a report, a refusal before anything was observed, or an
//! error. What the run was about comes as plain data ([`Subject`]), so the log
//! knows nothing of the pipeline that calls it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::contract::{Facts, Verdict};
use crate::decide::{Decided, PolicyChoice};
use crate::digest::Digest;
use crate::outcome::Outcome;

/// An open decision log.
#[derive(Debug)]
pub struct DecisionLog {
    path: PathBuf,
    file: File,
    with_facts: bool,
}

/// The policy a decision was taken with, or `host`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LoggedPolicy {
    /// No policy: the host's verdict decided (the string `host`).
    Host(String),
    Policy {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256: Option<Digest>,
        /// The module's file, or its reference as configured with the digest
        /// it resolved to (`oci://REGISTRY/REPO:TAG@sha256:…`).
        source: String,
        /// The trusted keys whose signature on the module's artifact was
        /// verified before it decided (`--require-signed-policies`); absent
        /// when none was required.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signed_by: Option<Vec<String>>,
    },
}

/// One line of the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// UTC, RFC 3339, e.g. `2026-11-30T12:00:00.123Z`.
    pub time: String,
    /// Unique per line: how a report, a ticket or a replayed case names it.
    pub decision_id: String,
    pub container: String,
    pub repo: String,
    pub tags: Vec<String>,
    pub build_id: Option<String>,
    pub policy: LoggedPolicy,
    /// The host's verdict; none when the run stopped before it had one.
    pub verdict: Option<Verdict>,
    pub verdict_reason: Option<String>,
    /// `skip`, `push` or `fail`; none when the run stopped before a decision.
    pub decision: Option<String>,
    pub reason: Option<String>,
    pub decided_by: Option<String>,
    pub facts_sha256: Option<Digest>,
    /// With `--decision-log-facts`: the facts, settings included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<Value>,
    /// What followed: `up-to-date`, `recorded`, `pushed`, `skipped`, `failed`,
    /// or `error` (the run stopped; see `error`).
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub dry_run: bool,
    /// The digest of the signed attestation of this decision, when the run
    /// published one (a referrer of the list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<Digest>,
}

impl DecisionLog {
    /// Opens (creating, 0644) `path` for appending. Done before anything is
    /// pushed, so a log that cannot be written stops the run before it starts.
    pub fn open(path: &Path, with_facts: bool) -> Result<DecisionLog> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o644)
            .open(path)
            .with_context(|| {
                format!(
                    "--decision-log: cannot open {} for appending",
                    path.display()
                )
            })?;
        Ok(DecisionLog {
            path: path.to_path_buf(),
            file,
            with_facts,
        })
    }

    pub fn with_facts(&self) -> bool {
        self.with_facts
    }

    /// Appends one line, in one write.
    pub fn append(&self, entry: &Entry) -> Result<()> {
        let mut line = serde_json::to_vec(entry).expect("a log entry serializes");
        line.push(b'\n');
        let written = (&self.file)
            .write(&line)
            .with_context(|| format!("--decision-log: cannot append to {}", self.path.display()))?;
        if written != line.len() {
            bail!(
                "--decision-log: only {written} of {} bytes of a line went to {} (disk full?)",
                line.len(),
                self.path.display()
            );
        }
        Ok(())
    }
}

/// What the decision log says about a run, gathered as it goes.
#[derive(Default)]
pub(crate) struct Trace {
    pub(crate) verdict: Option<(Verdict, String)>,
    pub(crate) decided: Option<Decided>,
    pub(crate) facts: Option<Facts>,
    pub(crate) build_id: Option<String>,
    /// The line's id and time, when they were fixed before the line is
    /// written (an attestation of the decision names them).
    pub(crate) id: Option<(String, String)>,
    pub(crate) attestation: Option<Digest>,
}

/// What a logged run was about, as plain data (the caller's request says it).
pub struct Subject<'a> {
    pub container: &'a str,
    /// The repository as given (`--repo`, or the release config's `repo`).
    pub repo: &'a str,
    pub tags: &'a [String],
    pub dry_run: bool,
    pub policy: LoggedPolicy,
}

impl LoggedPolicy {
    /// The policy a run decided with: the one `loaded`, else the source that
    /// was configured but could not be had (`unloaded`), else the host.
    pub fn of(loaded: Option<&PolicyChoice>, unloaded: Option<&str>) -> LoggedPolicy {
        match (loaded, unloaded) {
            (Some(c), _) => LoggedPolicy::Policy {
                name: Some(c.policy.info.name.clone()),
                version: Some(c.policy.info.version.clone()),
                sha256: Some(c.policy.info.sha256.clone()),
                // The file, or the reference as configured with the digest it
                // resolved to (`oci://R/P:TAG@sha256:…`): both what was asked for
                // and what ran.
                source: c.policy.label().to_string(),
                signed_by: c.signed_by.clone(),
            },
            (None, Some(source)) => LoggedPolicy::Policy {
                name: None,
                version: None,
                sha256: None,
                source: source.to_string(),
                signed_by: None,
            },
            (None, None) => LoggedPolicy::Host("host".into()),
        }
    }
}

impl DecisionLog {
    /// Appends the line of a run about `subject`, whatever its end: an outcome,
    /// or the error that stopped it.
    pub(crate) fn record(
        &self,
        subject: Subject<'_>,
        trace: &Trace,
        result: Result<Outcome, &anyhow::Error>,
    ) -> Result<()> {
        let entry = entry(subject, trace, result, self.with_facts());
        self.append(&entry)
    }
}

/// The line of a run about `subject`, whatever its end: an outcome, or the
/// error that stopped it (`with_facts`: the facts themselves, not only their
/// digest).
pub(crate) fn entry(
    subject: Subject<'_>,
    trace: &Trace,
    result: Result<Outcome, &anyhow::Error>,
    with_facts: bool,
) -> Entry {
    let facts = trace.facts.as_ref().map(facts_doc);
    let (outcome, error) = match result {
        Ok(o) => (o.name().to_string(), None),
        Err(e) => ("error".to_string(), Some(format!("{e:#}"))),
    };
    let (decision_id, time) = trace.id.clone().unwrap_or_else(|| (new_id(), now()));
    Entry {
        time,
        decision_id,
        container: subject.container.to_string(),
        repo: subject.repo.to_string(),
        tags: subject.tags.to_vec(),
        build_id: trace.build_id.clone(),
        policy: subject.policy,
        verdict: trace.verdict.as_ref().map(|(v, _)| *v),
        verdict_reason: trace.verdict.as_ref().map(|(_, r)| r.clone()),
        decision: trace
            .decided
            .as_ref()
            .map(|d| d.decision.kind().to_string()),
        reason: trace
            .decided
            .as_ref()
            .map(|d| d.decision.reason().to_string()),
        decided_by: trace.decided.as_ref().map(|d| d.by.clone()),
        facts_sha256: facts.as_ref().map(facts_sha256),
        facts: facts.filter(|_| with_facts),
        outcome,
        error,
        dry_run: subject.dry_run,
        attestation: trace.attestation.clone(),
    }
}

/// The facts as logged: the WIT record, with the settings as a JSON value.
pub fn facts_doc(facts: &Facts) -> Value {
    let mut v = serde_json::to_value(facts).expect("facts serialize");
    let settings = serde_json::from_str(&facts.settings)
        .unwrap_or_else(|_| Value::String(facts.settings.clone()));
    v["settings"] = settings;
    v
}

/// The digest the log gives a facts document: of its compact JSON.
pub fn facts_sha256(doc: &Value) -> Digest {
    Digest::of(&serde_json::to_vec(doc).expect("JSON serializes"))
}

/// A fresh decision id: 128 random bits, in hex.
pub fn new_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// Now, as UTC RFC 3339 with milliseconds.
pub fn now() -> String {
    rfc3339(SystemTime::now())
}

fn rfc3339(t: SystemTime) -> String {
    // humantime formats only 1970 to 9999 (it panics before, and fails after):
    // a clock outside them is logged at the nearest end rather than stopping a run.
    let last = UNIX_EPOCH + Duration::from_secs(253_402_300_799);
    humantime::format_rfc3339_millis(t.clamp(UNIX_EPOCH, last)).to_string()
}

/// Reads a decision log: every line, in order. A malformed line is an error
/// naming its number.
pub fn read(path: &Path) -> Result<Vec<Entry>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read decision log {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| {
                format!(
                    "decision log {} line {}: not a decision log line",
                    path.display(),
                    i + 1
                )
            })
        })
        .collect()
}

/// The cases a log's lines with facts stand for: each expects the decision
/// logged (no reason pattern), so it passes against the module that took it,
/// and `policy test` or `policy diff` replays real decisions against another.
/// Named `CONTAINER-DECISION_ID.json`. Lines without facts (logged without
/// `--decision-log-facts`, or stopped before a decision) are left out.
pub fn replay_cases(entries: &[Entry]) -> Result<Vec<(String, crate::cases::Case)>> {
    let mut out = Vec::new();
    for e in entries {
        let (Some(facts), Some(decision)) = (&e.facts, &e.decision) else {
            continue;
        };
        let mut facts = facts.clone();
        let settings = facts
            .as_object_mut()
            .and_then(|o| o.remove("settings"))
            .unwrap_or_else(|| Value::Object(Default::default()));
        let facts: Facts = serde_json::from_value(facts)
            .with_context(|| format!("decision {}: the logged facts", e.decision_id))?;
        let decision: crate::cases::Kind = serde_json::from_value(Value::String(decision.clone()))
            .with_context(|| format!("decision {}: the logged decision", e.decision_id))?;
        let by = e.decided_by.as_deref().unwrap_or("host");
        let case = crate::cases::Case {
            description: Some(format!(
                "replayed from decision {} ({} at {}): {} by {by}: {}",
                e.decision_id,
                e.container,
                e.time,
                decision.name(),
                e.reason.as_deref().unwrap_or_default()
            )),
            settings,
            facts,
            expect: crate::cases::Expect {
                decision,
                reason: None,
            },
        };
        let safe: String = e
            .container
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        out.push((format!("{safe}-{}.json", e.decision_id), case));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_796_040_000_123);
        assert_eq!(rfc3339(t), "2026-11-30T12:00:00.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
        let end_of_2024 = UNIX_EPOCH + Duration::from_millis(1_735_689_599_999);
        assert_eq!(rfc3339(end_of_2024), "2024-12-31T23:59:59.999Z");
        // a clock outside what the format can say is logged at its nearest end
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(rfc3339(before), "1970-01-01T00:00:00.000Z");
        let after = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(rfc3339(after), "9999-12-31T23:59:59.000Z");
    }

    fn entry() -> Entry {
        Entry {
            time: now(),
            decision_id: new_id(),
            container: "os".into(),
            repo: "r.io/os".into(),
            tags: vec!["stable".into()],
            build_id: Some("41".into()),
            policy: LoggedPolicy::Host("host".into()),
            verdict: Some(Verdict::Push),
            verdict_reason: Some("stable is missing".into()),
            decision: Some("push".into()),
            reason: Some("stable is missing".into()),
            decided_by: Some("host".into()),
            facts_sha256: None,
            facts: None,
            outcome: "pushed".into(),
            error: None,
            dry_run: false,
            attestation: None,
        }
    }

    #[test]
    fn lines_are_appended_whole_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let entry = entry();
        for _ in 0..2 {
            DecisionLog::open(&path, false)
                .unwrap()
                .append(&entry)
                .unwrap();
        }
        let back = read(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].policy, LoggedPolicy::Host("host".into()));
        let line: Value = serde_json::from_str(
            std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .next()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(line["policy"], "host");
        assert_ne!(new_id(), new_id());
    }

    #[test]
    fn a_run_is_logged_from_plain_data_with_its_outcome_or_its_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let log = DecisionLog::open(&path, false).unwrap();
        let tags = vec!["stable".to_string()];
        let subject = |policy| Subject {
            container: "os",
            repo: "busybox",
            tags: &tags,
            dry_run: true,
            policy,
        };
        let trace = Trace {
            build_id: Some("41".into()),
            ..Trace::default()
        };
        log.record(
            subject(LoggedPolicy::of(None, None)),
            &trace,
            Ok(Outcome::UpToDate),
        )
        .unwrap();
        let stopped = anyhow::anyhow!("cannot reach r.io");
        let unloaded = LoggedPolicy::of(None, Some("oci://r.io/p:1"));
        log.record(subject(unloaded.clone()), &Trace::default(), Err(&stopped))
            .unwrap();
        let back = read(&path).unwrap();
        assert_eq!(
            (
                back[0].repo.as_str(),
                back[0].tags.as_slice(),
                back[0].dry_run
            ),
            ("busybox", tags.as_slice(), true)
        );
        assert_eq!(back[0].build_id.as_deref(), Some("41"));
        assert_eq!(back[0].policy, LoggedPolicy::Host("host".into()));
        assert_eq!(
            (back[0].outcome.as_str(), back[0].error.as_deref()),
            ("up-to-date", None)
        );
        assert_eq!(back[1].policy, unloaded);
        assert_eq!(
            (back[1].outcome.as_str(), back[1].error.as_deref()),
            ("error", Some("cannot reach r.io"))
        );
        assert_eq!(back[1].decision, None);
    }

    #[test]
    fn a_policys_signers_are_read_back_and_a_line_without_them_still_reads() {
        let signed = LoggedPolicy::Policy {
            name: Some("default".into()),
            version: Some("1".into()),
            sha256: Some(Digest::of(b"m")),
            source: "oci://r.io/p:1@sha256:aa".into(),
            signed_by: Some(vec!["release".into()]),
        };
        let json = serde_json::to_value(&signed).unwrap();
        assert_eq!(json["signed_by"], serde_json::json!(["release"]));
        assert_eq!(
            serde_json::from_value::<LoggedPolicy>(json).unwrap(),
            signed
        );
        // a line written before signers were logged, or without a required
        // signature: no field, and none read
        let old = serde_json::json!({"name": "default", "source": "p.wasm"});
        let LoggedPolicy::Policy { signed_by, .. } = serde_json::from_value(old).unwrap() else {
            panic!("a policy reads as a policy")
        };
        assert_eq!(signed_by, None);
    }

    #[test]
    fn concurrent_writers_never_interleave_within_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        std::thread::scope(|scope| {
            for t in 0..8 {
                let path = &path;
                scope.spawn(move || {
                    // a handle each, as separate runs would have
                    let log = DecisionLog::open(path, false).unwrap();
                    let mut e = entry();
                    e.container = format!("c{t}");
                    e.reason = Some(format!("{t}").repeat(32 << 10));
                    for _ in 0..25 {
                        log.append(&e).unwrap();
                    }
                });
            }
        });
        let back = read(&path).unwrap();
        assert_eq!(back.len(), 200);
        for e in back {
            let t = e.container.trim_start_matches('c');
            assert_eq!(e.reason.unwrap(), t.repeat(32 << 10));
        }
    }
}
