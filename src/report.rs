//! The report of one container: what was done and why, as JSON (`--json`) or a
//! short human summary; and the version every `--json` document carries.
//!
//! The JSON shape is a contract with CI scripts: docs/json.md describes it and
//! docs/pushgate.schema.json checks it (the integration tests validate every
//! `--json` output of the suite against that file).

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::apply::How;
use crate::contract::Verdict;
use crate::decide::Decided;
use crate::digest::Digest;
use crate::human;
use crate::meta::ImageEntry;
use crate::plan::{Desired, Plan, TagState};
use crate::registry::RepoName;

/// The `schema` field of every `--json` document. It changes only when a
/// field is removed or changes meaning; fields are added without a change.
pub const JSON_SCHEMA: u64 = 1;

pub use crate::outcome::Outcome;

/// The policy that decided, as the report names it.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyRef {
    pub name: String,
    pub version: String,
    pub sha256: Digest,
    /// The module's file (for a fetched one, its copy in the cache).
    pub path: String,
    /// For a module fetched from a registry: the reference pinned to the digest
    /// it resolved to, `oci://REGISTRY/REPO@sha256:…`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The trusted keys whose signature on the module's artifact was verified
    /// before it decided; absent when none was required (as a registry
    /// source's `signed_by` is absent when none was looked for). Never empty:
    /// a required signature that is not there fails the run first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<Vec<String>>,
}

impl PolicyRef {
    /// The policy of `choice`, with the keys its signature was verified by.
    pub fn of(choice: &crate::decide::PolicyChoice) -> PolicyRef {
        PolicyRef {
            signed_by: choice.signed_by.clone(),
            ..choice.policy.info.clone().into()
        }
    }
}

impl From<crate::policy::PolicyInfo> for PolicyRef {
    fn from(i: crate::policy::PolicyInfo) -> PolicyRef {
        PolicyRef {
            name: i.name,
            version: i.version,
            sha256: i.sha256,
            path: i.path.display().to_string(),
            reference: i.reference,
            signed_by: None,
        }
    }
}

/// The plan as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PlanSummary {
    pub verdict: Verdict,
    pub missing_blobs: usize,
    pub missing_bytes: u64,
    pub manifests: Vec<String>,
    pub list: bool,
    pub tags: Vec<String>,
    pub record: Vec<String>,
}

/// One container's report. Serialized through [`Report::json`], which adds
/// `schema` and `ok` and spells the outcome as a dry run's.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub container: String,
    pub outcome: Outcome,
    pub reason: String,
    pub decided_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRef>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy_logs: Vec<String>,
    pub dry_run: bool,
    pub repo: String,
    pub tags: Vec<String>,
    pub manifest_list_digest: Option<Digest>,
    /// arch → that arch's manifest digest, in the build's arch order.
    pub digests: Map<String, Value>,
    pub uploaded_blobs: usize,
    pub uploaded_bytes: u64,
    /// Requests retried after a transient failure.
    pub retries: u64,
    /// Arches whose meta.json was written.
    pub recorded: Vec<String>,
    /// Per arch, in the sources' order: where its image came from and how its
    /// blobs got into the repository.
    pub sources: Vec<ArchSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanSummary>,
    /// A signed run: the signatures by its key already there, and those it
    /// added (or would add, in a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signatures: Option<Signatures>,
    /// A signed run that wrote: the digest of its decision's attestation, a
    /// referrer of the list (none when this very decision was attested before).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attestation: Option<Digest>,
}

/// The signatures of a signed run (one per tag, for the list and for every
/// per-arch manifest).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Signatures {
    pub present: usize,
    pub added: usize,
}

/// One arch's source, and how its blobs got into the repository.
#[derive(Debug, Clone, Serialize)]
pub struct ArchSource {
    pub arch: String,
    /// `docker://REF`, `oci-archive:PATH`, `oci:DIR` or the archive's path.
    pub source: String,
    /// `None` when the run was up to date without reading the source.
    pub blobs: Option<BlobCounts>,
    /// The trusted keys (`--trust-key`) with a valid signature on a registry
    /// source; absent when none was looked for (no trusted key, a local source).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<Vec<String>>,
}

/// One arch's source as the report names it: the arch, the source, and the
/// trusted keys that signed it (when that was looked for).
pub type SourceLabel = (String, String, Option<Vec<String>>);

/// How many of an arch's blobs (config and layers) got there which way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BlobCounts {
    /// Already in the repository.
    pub present: usize,
    /// Sent from a local archive or layout.
    pub uploaded: usize,
    /// Mounted from the source's repository on the same registry.
    pub mounted: usize,
    /// Streamed from the source's registry.
    pub copied: usize,
    /// Missing and not written (a dry run, a skip, a failure).
    pub missing: usize,
}

impl BlobCounts {
    /// Counts `blobs` against the plan's missing blobs and, if the plan was
    /// carried out, how each got there.
    pub fn of<'a>(
        blobs: impl IntoIterator<Item = &'a Digest>,
        plan: &Plan,
        applied: Option<&HashMap<Digest, How>>,
    ) -> BlobCounts {
        let mut c = BlobCounts::default();
        for d in blobs {
            if !plan.blobs.iter().any(|b| b.digest == *d) {
                c.present += 1;
                continue;
            }
            match applied.and_then(|a| a.get(d)) {
                Some(How::Uploaded) => c.uploaded += 1,
                Some(How::Mounted) => c.mounted += 1,
                Some(How::Copied) => c.copied += 1,
                None => c.missing += 1,
            }
        }
        c
    }

    fn human(&self) -> String {
        let parts: Vec<String> = [
            ("present", self.present),
            ("uploaded", self.uploaded),
            ("mounted", self.mounted),
            ("copied", self.copied),
            ("missing", self.missing),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!("{n} {what}"))
        .collect();
        parts.join(", ")
    }
}

impl Report {
    pub fn new(container: &str, repo: &RepoName, tags: &[String], dry_run: bool) -> Report {
        Report {
            container: container.to_string(),
            outcome: Outcome::UpToDate,
            reason: String::new(),
            decided_by: String::new(),
            policy: None,
            policy_logs: Vec::new(),
            dry_run,
            repo: repo.to_string(),
            tags: tags.to_vec(),
            manifest_list_digest: None,
            digests: Map::new(),
            uploaded_blobs: 0,
            uploaded_bytes: 0,
            retries: 0,
            recorded: Vec::new(),
            sources: Vec::new(),
            plan: None,
            signatures: None,
            attestation: None,
        }
    }

    /// Fills in, per arch, the source and how its blobs got there
    /// (`applied`: what apply did, if it ran).
    pub fn fill_sources(
        &mut self,
        sources: &[SourceLabel],
        desired: Option<(&Desired, &Plan)>,
        applied: Option<&HashMap<Digest, How>>,
    ) {
        self.sources = sources
            .iter()
            .map(|(arch, source, signed_by)| ArchSource {
                arch: arch.clone(),
                source: source.clone(),
                signed_by: signed_by.clone(),
                blobs: desired.and_then(|(d, plan)| {
                    let img = d.images.iter().find(|i| i.arch == *arch)?;
                    Some(BlobCounts::of(
                        img.blobs.iter().map(|b| &b.digest),
                        plan,
                        applied,
                    ))
                }),
            })
            .collect();
    }

    /// Fills what the quick check knows: the recorded digests, and the list every
    /// tag serves (from meta.json, or, for entries cosa wrote before
    /// `manifest-list-digest` existed, from the tags).
    pub fn fill_from_recorded(
        &mut self,
        recorded: &[(String, Option<ImageEntry>)],
        tags: &[TagState],
    ) {
        for (arch, entry) in recorded {
            let Some(e) = entry else { continue };
            let e = e.newest();
            if let Some(d) = &e.digest {
                self.digests
                    .insert(arch.clone(), Value::String(d.to_string()));
            }
            if self.manifest_list_digest.is_none() {
                self.manifest_list_digest = e.manifest_list_digest.clone();
            }
        }
        if self.manifest_list_digest.is_none() {
            self.manifest_list_digest = tags
                .first()
                .and_then(|t| t.current.as_ref())
                .map(|(d, _)| d.clone());
        }
    }

    pub fn fill_from_desired(&mut self, desired: &Desired, plan: &Plan) {
        self.manifest_list_digest = Some(desired.list_digest.clone());
        self.digests = desired
            .images
            .iter()
            .map(|i| {
                (
                    i.arch.clone(),
                    Value::String(i.descriptor.digest.to_string()),
                )
            })
            .collect();
        self.plan = Some(PlanSummary {
            verdict: plan.verdict,
            missing_blobs: plan.blobs.len(),
            missing_bytes: plan.blobs.iter().map(|b| b.size).sum(),
            manifests: plan.manifests.clone(),
            list: plan.list,
            tags: plan.tags.clone(),
            record: plan.record.clone(),
        });
    }

    pub fn finish_decided(&mut self, outcome: Outcome, decided: &Decided) {
        self.outcome = outcome;
        self.reason = decided.decision.reason().to_string();
        self.decided_by = decided.by.clone();
        self.policy_logs = decided.logs.clone();
    }

    /// Whether the run should exit non-zero.
    pub fn failed(&self) -> bool {
        self.outcome == Outcome::Failed
    }

    /// The report as `--json` prints it (docs/json.md): `schema` and `ok`
    /// first, then the fields, `outcome` as [`Outcome::json_name`] spells it.
    pub fn json(&self) -> Value {
        let mut doc = Map::new();
        doc.insert("schema".into(), JSON_SCHEMA.into());
        doc.insert("ok".into(), (!self.failed()).into());
        let Value::Object(fields) = serde_json::to_value(self).expect("a report serializes") else {
            unreachable!("a struct serializes as an object")
        };
        doc.extend(fields);
        doc["outcome"] = self.outcome.json_name(self.dry_run).into();
        Value::Object(doc)
    }

    /// A few lines for a person: what was done, and why.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let what = match (self.outcome, self.dry_run) {
            (Outcome::UpToDate, _) => "up to date: nothing to do",
            (Outcome::Recorded, false) => {
                "recorded: the registry already had it; meta.json written"
            }
            (Outcome::Recorded, true) => "dry run: would record meta.json only",
            (Outcome::Pushed, false) => "pushed",
            (Outcome::Pushed, true) => "dry run: would push",
            (Outcome::Skipped, false) => "skipped: nothing written",
            (Outcome::Skipped, true) => "dry run: would skip",
            (Outcome::Failed, false) => "FAILED: nothing written",
            (Outcome::Failed, true) => "dry run: would FAIL",
        };
        let _ = writeln!(s, "{}:{}: {what}", self.repo, self.tags.join(","));
        let _ = writeln!(s, "  why: {} (decided by {})", self.reason, self.decided_by);
        if let Some(p) = &self.policy {
            let signed = p
                .signed_by
                .as_ref()
                .map(|keys| format!("; signed by {}", keys.join(", ")));
            let _ = writeln!(
                s,
                "  policy: {} {} ({}, {}){}",
                p.name,
                p.version,
                p.reference.as_deref().unwrap_or(&p.path),
                p.sha256,
                signed.unwrap_or_default()
            );
        }
        for line in &self.policy_logs {
            let _ = writeln!(s, "  policy log: {line}");
        }
        if let Some(d) = &self.manifest_list_digest {
            let _ = writeln!(s, "  manifest list: {d}");
        }
        for (arch, d) in &self.digests {
            let _ = writeln!(s, "  {arch}: {}", d.as_str().unwrap_or_default());
        }
        if let (true, Some(p)) = (self.dry_run, &self.plan) {
            let _ = writeln!(
                s,
                "  plan: {} blob(s) ({}), manifests [{}], list: {}, tags [{}], record [{}]",
                p.missing_blobs,
                human::size(p.missing_bytes),
                p.manifests.join(", "),
                if p.list { "yes" } else { "no" },
                p.tags.join(", "),
                p.record.join(", ")
            );
        } else if self.outcome == Outcome::Pushed {
            let tags = self
                .plan
                .as_ref()
                .map(|p| p.tags.join(", "))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "  uploaded {} blob(s), {}; tags set: [{tags}]",
                self.uploaded_blobs,
                human::size(self.uploaded_bytes)
            );
        }
        // Where blobs came from matters when a registry was the source.
        for src in self
            .sources
            .iter()
            .filter(|s| s.source.starts_with("docker://"))
        {
            let blobs = src.blobs.as_ref().map(BlobCounts::human);
            let signed = src.signed_by.as_ref().map(|keys| match &keys[..] {
                [] => "; signed by no trusted key".to_string(),
                keys => format!("; signed by {}", keys.join(", ")),
            });
            let _ = writeln!(
                s,
                "  {} from {}{}{}",
                src.arch,
                src.source,
                blobs.map(|b| format!(": blobs {b}")).unwrap_or_default(),
                signed.unwrap_or_default()
            );
        }
        if !self.recorded.is_empty() {
            let _ = writeln!(s, "  meta.json written for: {}", self.recorded.join(", "));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::Outcome;

    const ALL: [Outcome; 5] = [
        Outcome::UpToDate,
        Outcome::Recorded,
        Outcome::Pushed,
        Outcome::Skipped,
        Outcome::Failed,
    ];

    #[test]
    fn outcome_names_are_how_the_json_spells_them() {
        for o in ALL {
            assert_eq!(
                serde_json::to_value(o).unwrap(),
                serde_json::Value::String(o.name().into())
            );
            assert_eq!(o.decision_name(false), o.name());
            assert_eq!(o.json_name(false), o.name());
        }
    }

    #[test]
    fn a_dry_runs_json_outcome_names_only_what_it_did_not_do() {
        let names: Vec<_> = ALL.iter().map(|o| o.json_name(true)).collect();
        assert_eq!(
            names,
            [
                "up-to-date",
                "would-record",
                "would-push",
                "skipped",
                "failed"
            ]
        );
    }

    #[test]
    fn the_json_report_leads_with_schema_and_ok_and_says_would_push() {
        let repo: crate::registry::RepoName = "registry.example/fcos".parse().unwrap();
        let mut r = super::Report::new("os", &repo, &["stable".into()], true);
        r.outcome = Outcome::Pushed;
        let v = r.json();
        let keys: Vec<_> = v.as_object().unwrap().keys().take(4).cloned().collect();
        assert_eq!(keys, ["schema", "ok", "container", "outcome"]);
        assert_eq!(v["schema"], super::JSON_SCHEMA);
        assert_eq!(v["ok"], true);
        assert_eq!(v["outcome"], "would-push");
        r.outcome = Outcome::Failed;
        assert_eq!(r.json()["ok"], false);
        assert_eq!(r.json()["outcome"], "failed");
    }

    #[test]
    fn a_dry_run_says_what_would_be_done() {
        let names: Vec<_> = ALL.iter().map(|o| o.decision_name(true)).collect();
        assert_eq!(
            names,
            [
                "up to date",
                "would record",
                "would push",
                "would skip",
                "would fail"
            ]
        );
    }

    #[test]
    fn a_registry_source_says_which_trusted_keys_signed_it() {
        let repo: crate::registry::RepoName = "registry.example/fcos".parse().unwrap();
        let mut r = super::Report::new("os", &repo, &["stable".into()], false);
        r.outcome = Outcome::Pushed;
        r.fill_sources(
            &[
                (
                    "x86_64".into(),
                    "docker://r.example/s@sha256:aa".into(),
                    Some(vec!["build".into()]),
                ),
                (
                    "aarch64".into(),
                    "docker://r.example/s@sha256:bb".into(),
                    Some(vec![]),
                ),
                (
                    "s390x".into(),
                    "docker://r.example/s@sha256:cc".into(),
                    None,
                ),
            ],
            None,
            None,
        );
        let text = r.human();
        assert!(
            text.contains("x86_64 from docker://r.example/s@sha256:aa; signed by build\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "aarch64 from docker://r.example/s@sha256:bb; signed by no trusted key\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("s390x from docker://r.example/s@sha256:cc\n"),
            "{text}"
        );
        let v = r.json();
        assert_eq!(v["sources"][0]["signed_by"], serde_json::json!(["build"]));
        assert!(v["sources"][2].get("signed_by").is_none(), "{v}");
    }

    #[test]
    fn a_policy_whose_signature_was_required_names_its_signers() {
        let repo: crate::registry::RepoName = "registry.example/fcos".parse().unwrap();
        let mut r = super::Report::new("os", &repo, &["stable".into()], false);
        let policy = super::PolicyRef {
            name: "default".into(),
            version: "1.0.0".into(),
            sha256: crate::digest::Digest::of(b"module"),
            path: "cache/aa".into(),
            reference: Some("oci://r.example/p@sha256:bb".into()),
            signed_by: Some(vec!["build".into(), "release".into()]),
        };
        r.policy = Some(policy.clone());
        let text = r.human();
        assert!(
            text.contains("sha256:bb, sha256:") && text.contains("; signed by build, release\n"),
            "{text}"
        );
        assert_eq!(
            r.json()["policy"]["signed_by"],
            serde_json::json!(["build", "release"])
        );
        r.policy = Some(super::PolicyRef {
            signed_by: None,
            ..policy
        });
        assert!(!r.human().contains("signed by"), "{}", r.human());
        assert!(r.json()["policy"].get("signed_by").is_none());
    }
}
