//! One container, through the whole pipeline:
//! sources → observe → plan → decide → apply → record.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::decide::{self, Decision};
use crate::plan::{self, Verdict};
use crate::record::{self, RecordChange};
use crate::registry::{self, Repository};
use crate::report::{Outcome, Report};
use crate::sources::{self, SourceSpec};
use crate::{apply, observe};

/// Everything `pushgate push` was asked to do.
#[derive(Debug, Clone)]
pub struct PushRequest {
    pub repo: String,
    pub tags: Vec<String>,
    pub source: SourceSpec,
    pub v2s2: bool,
    pub force: bool,
    pub dry_run: bool,
    pub registry: registry::Options,
    pub digest_file: Option<PathBuf>,
}

/// Publishes one container and records it. Returns the report; fails (having
/// written nothing it should not have) on bad input, a refusing registry or a
/// `fail` decision.
pub async fn push(req: &PushRequest) -> Result<Report> {
    if req.tags.is_empty() {
        bail!("--tag: at least one tag is required");
    }
    let mut tags: Vec<String> = Vec::new();
    for t in &req.tags {
        registry::check_tag(t)?;
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    // sources (without reading archives yet)
    let resolved = sources::resolve(&req.source)?;
    let recorded = resolved.recorded()?;
    let repo = Repository::new(&req.repo, &req.registry)?;

    // observe the tags, and stop right here when meta.json and registry agree
    let tag_states = observe::tags(&repo, &tags).await?;
    let mut report = Report::new(&req.repo, &tags, req.dry_run);
    if let Ok(reason) = plan::check_recorded(&req.repo, &recorded, &tag_states, req.force) {
        report.fill_from_recorded(&recorded);
        report.finish(Outcome::UpToDate, reason, "host");
        write_digest(req, &report)?;
        return Ok(report);
    }

    // read the archives; desired state; full observation; plan
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
    let decided = decide::host_default(&plan);
    let reason = match &decided.decision {
        Decision::Fail(reason) => bail!("refused by {}: {reason}", decided.by),
        Decision::Skip(reason) => {
            let outcome = if plan.verdict == Verdict::UpToDate {
                Outcome::UpToDate
            } else {
                Outcome::Skipped
            };
            report.finish(outcome, reason.clone(), &decided.by);
            if outcome == Outcome::UpToDate {
                write_digest(req, &report)?;
            }
            return Ok(report);
        }
        Decision::Push(reason) => reason.clone(),
    };
    let outcome = if plan.writes_registry() {
        Outcome::Pushed
    } else if plan.verdict == Verdict::UpToDate {
        Outcome::UpToDate
    } else {
        Outcome::Recorded
    };
    if req.dry_run {
        report.finish(outcome, reason, &decided.by);
        return Ok(report);
    }

    // apply
    let layouts: HashMap<_, _> = loaded
        .iter()
        .map(|l| (l.image.arch.clone(), l.layout.clone()))
        .collect();
    let applied = apply::apply(&repo, &plan, &desired, &layouts, req.registry.jobs).await?;
    report.uploaded_blobs = applied.uploaded_blobs;
    report.uploaded_bytes = applied.uploaded_bytes;

    // record: only now does the registry hold the list at every tag
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
    report.finish(outcome, reason, &decided.by);
    write_digest(req, &report)?;
    Ok(report)
}

fn write_digest(req: &PushRequest, report: &Report) -> Result<()> {
    if let (Some(path), Some(d), false) =
        (&req.digest_file, &report.manifest_list_digest, req.dry_run)
    {
        record::write_digest_file(path, d)?;
    }
    Ok(())
}
