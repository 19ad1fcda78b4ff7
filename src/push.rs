//! One container, through the whole pipeline:
//! sources → observe → plan → decide → apply → record.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::decide::{self, Decided, Decision, PolicyChoice};
use crate::facts::{self, Known};
use crate::plan::{self, Desired, Plan, TagState, Verdict};
use crate::record::{self, ImageEntry, RecordChange};
use crate::registry::{self, Repository};
use crate::report::{Outcome, Report};
use crate::sources::{self, Resolved, SourceSpec};
use crate::{apply, observe};

/// Everything `pushgate push` was asked to do for one container.
#[derive(Clone)]
pub struct PushRequest {
    /// The container's name, for policies and reports (the meta.json key or the repo).
    pub container: String,
    pub repo: String,
    pub tags: Vec<String>,
    pub source: SourceSpec,
    pub v2s2: bool,
    pub force: bool,
    pub dry_run: bool,
    pub registry: registry::Options,
    pub digest_file: Option<PathBuf>,
    pub policy: Option<PolicyChoice>,
    /// Draw upload progress on the terminal.
    pub progress: bool,
}

/// Checks and de-duplicates `--tag`s, keeping their order.
pub fn check_tags(tags: &[String]) -> Result<Vec<String>> {
    if tags.is_empty() {
        bail!("--tag: at least one tag is required");
    }
    let mut out: Vec<String> = Vec::new();
    for t in tags {
        registry::check_tag(t)?;
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    Ok(out)
}

/// Publishes one container and records it.
///
/// Bad input, a refusing registry or a failed write is an `Err`, with nothing
/// written that should not be. A `fail` decision is an `Ok` report whose
/// outcome is [`Outcome::Failed`]: nothing was written either.
pub async fn push(req: &PushRequest) -> Result<Report> {
    let tags = check_tags(&req.tags)?;
    let mut report = Report::new(&req.container, &req.repo, &tags, req.dry_run);
    if let Some(choice) = &req.policy {
        report.policy = Some(choice.policy.info.clone().into());
        if let Err(decided) = choice.validate() {
            report.finish_decided(Outcome::Failed, &decided);
            return Ok(report);
        }
    }

    // sources, without reading any archive yet
    let resolved = sources::resolve(&req.source)?;
    let recorded = resolved.recorded()?;
    let repo = Repository::new(&req.repo, &req.registry)?;

    // observe the tags: when meta.json and registry agree, the archives are not read
    let tag_states = observe::tags(&repo, &tags).await?;
    if let Ok(reason) = plan::check_recorded(&req.repo, &recorded, &tag_states, req.force) {
        let plan = Plan::nothing(Verdict::UpToDate, reason);
        let decided = decide_for(req, &resolved, &tag_states, &recorded, None, &plan);
        report.fill_from_recorded(&recorded);
        let outcome = match decided.decision {
            Decision::Fail(_) => Outcome::Failed,
            _ => Outcome::UpToDate,
        };
        report.finish_decided(outcome, &decided);
        if outcome == Outcome::UpToDate {
            write_digest(req, &report)?;
        }
        return Ok(report);
    }

    // read the archives; the desired state; full observation; the plan
    let loaded = sources::load(&resolved)?;
    let images: Vec<_> = loaded.iter().map(|l| l.image.clone()).collect();
    let desired = plan::desired(&images, req.v2s2)?;
    let presence = observe::presence(&repo, &desired, req.registry.jobs).await?;
    let plan = plan::plan(
        &req.repo,
        &tag_states,
        &desired,
        &recorded,
        &presence,
        req.force,
    );
    report.fill_from_desired(&desired, &plan);

    // decide
    let decided = decide_for(
        req,
        &resolved,
        &tag_states,
        &recorded,
        Some(&desired),
        &plan,
    );
    let outcome = match (&decided.decision, plan.verdict) {
        (Decision::Fail(_), _) => Outcome::Failed,
        (_, Verdict::UpToDate) => Outcome::UpToDate,
        (Decision::Skip(_), _) => Outcome::Skipped,
        (Decision::Push(_), Verdict::RecordOnly) => Outcome::Recorded,
        (Decision::Push(_), Verdict::Push) => Outcome::Pushed,
    };
    if matches!(outcome, Outcome::Failed | Outcome::Skipped) || req.dry_run {
        report.finish_decided(outcome, &decided);
        return Ok(report);
    }

    // apply
    let layouts: HashMap<_, _> = loaded
        .iter()
        .map(|l| (l.image.arch.clone(), l.layout.clone()))
        .collect();
    let applied = apply::apply(
        &repo,
        &plan,
        &desired,
        &layouts,
        req.registry.jobs,
        req.progress,
    )
    .await?;
    report.uploaded_blobs = applied.uploaded_blobs;
    report.uploaded_bytes = applied.uploaded_bytes;

    // record: only now does the registry serve the list at every tag
    if let Some(key) = &resolved.key {
        for input in &resolved.inputs {
            let (Some(arch), Some(meta)) = (&input.arch, &input.meta) else {
                continue;
            };
            if !plan.record.contains(arch) {
                continue;
            }
            let entry = desired
                .entry_for(arch, &req.repo, &tags)
                .expect("every input arch is desired");
            if record::record_entry(&meta.path, key, &entry, req.force)? != RecordChange::Unchanged
            {
                report.recorded.push(arch.clone());
            }
        }
    }
    report.finish_decided(outcome, &decided);
    write_digest(req, &report)?;
    Ok(report)
}

fn decide_for(
    req: &PushRequest,
    resolved: &Resolved,
    tags: &[TagState],
    recorded: &[(String, Option<ImageEntry>)],
    desired: Option<&Desired>,
    plan: &Plan,
) -> Decided {
    decide::decide(plan, req.policy.as_ref(), || {
        let present: Vec<String> = match desired {
            Some(d) => d.images.iter().map(|i| i.arch.clone()).collect(),
            None => resolved
                .inputs
                .iter()
                .filter_map(|i| i.arch.clone())
                .collect(),
        };
        facts::gather(&Known {
            container: &req.container,
            repo: &req.repo,
            build_id: resolved.build_id.as_deref(),
            key: resolved.key.as_deref(),
            requested_arches: &resolved.requested_arches,
            present_arches: &present,
            tags,
            recorded,
            desired,
            plan,
            force: req.force,
            dry_run: req.dry_run,
            settings: req.policy.as_ref().map_or("{}", |p| p.settings.as_str()),
        })
    })
}

fn write_digest(req: &PushRequest, report: &Report) -> Result<()> {
    if let (Some(path), Some(d), false) =
        (&req.digest_file, &report.manifest_list_digest, req.dry_run)
    {
        record::write_digest_file(path, d)?;
    }
    Ok(())
}
