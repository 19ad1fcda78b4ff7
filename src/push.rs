//! One container, through the whole pipeline:
//! sources → observe → plan → decide → apply → record.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Result, bail};

use crate::contract::{Decision, Facts, Verdict};
use crate::decide::{self, Decided, PolicyChoice};
use crate::decision_log::{self, DecisionLog, LoggedPolicy, Subject, Trace};
use crate::digest::Digest;
use crate::facts::{self, Known};
use crate::meta::{ImageEntry, RecordChange};
use crate::observe::signatures::{self, Source, Verified};
use crate::plan::{self, Desired, Plan, Presence, TagState};
use crate::progress::{Display, Phase, Progress};
use crate::record;
use crate::registry::{self, RepoName, Repository};
use crate::report::Signatures;
use crate::report::{Outcome, Report, SourceLabel};
use crate::sign::TrustedKeys;
use crate::sign::attest::{self, Attestation, DecisionPredicate, SignaturesSeen};
use crate::sources::{self, LoadedImage, Resolved, SourceSpec};
use crate::{apply, evidence, manifest, observe};

/// Everything `pushgate push` was asked to do for one container.
#[derive(Clone)]
pub struct PushRequest {
    /// The container's name, for policies and reports (the meta.json key or the repo).
    pub container: String,
    /// `--repo` (or a release container's `repo`), parsed once where it is read.
    pub repo: RepoName,
    pub tags: Vec<String>,
    pub source: SourceSpec,
    pub v2s2: bool,
    pub force: bool,
    pub dry_run: bool,
    pub registry: registry::Options,
    pub digest_file: Option<PathBuf>,
    pub policy: Option<PolicyChoice>,
    /// Draw progress (verifying archives, uploading) on the terminal.
    pub progress: bool,
    /// Where the decision is logged (`--decision-log`), if anywhere.
    pub decision_log: Option<Arc<DecisionLog>>,
    /// Sign what is published and attest the decision
    /// (`--sign-by-sigstore-private-key`), if asked.
    pub signer: Option<evidence::Signer>,
    /// The keys signatures are verified with for the policy's facts
    /// (`--trust-key`); none: no signature is looked for.
    pub trusted: TrustedKeys,
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

/// What observing and planning found for one container, before any decision.
struct Prepared {
    tags: Vec<String>,
    resolved: Resolved,
    recorded: Vec<(String, Option<ImageEntry>)>,
    repo: Repository,
    tag_states: Vec<TagState>,
    /// The archives and the desired state; `None` when the quick check found the
    /// container up to date without reading them.
    full: Option<(Vec<LoadedImage>, Desired)>,
    plan: Plan,
    /// The run's retry count when this container began (executors are
    /// shared by the run's containers, and a source registry's retries count
    /// for the container that reads it).
    retries_before: u64,
    clients: registry::Clients,
    /// Progress on the terminal, from the moment sources are read.
    display: Option<Display>,
    /// A signed run's evidence: wanted, observed, and what is missing.
    evidence: Option<evidence::Evidence>,
    /// The sources, and the signatures the trusted keys verify (policy facts).
    signatures: Verified,
}

impl Prepared {
    /// Requests retried since this container began.
    fn retries(&self) -> u64 {
        self.clients.retries() - self.retries_before
    }

    fn desired(&self) -> Option<&Desired> {
        self.full.as_ref().map(|(_, d)| d)
    }

    /// (arch, source) per arch, in the sources' order: from the loaded images
    /// when they were read, else from what was resolved.
    fn source_labels(&self) -> Vec<SourceLabel> {
        let pairs: Vec<(String, String)> = match &self.full {
            Some((loaded, _)) => loaded
                .iter()
                .map(|l| (l.image.arch.clone(), l.source.clone()))
                .collect(),
            None => self
                .resolved
                .inputs
                .iter()
                .filter_map(|i| Some((i.arch.clone()?, i.origin.label())))
                .collect(),
        };
        pairs
            .into_iter()
            .map(|(arch, source)| {
                let signed_by = self
                    .signatures
                    .source(&arch)
                    .and_then(|s| s.signatures.as_ref())
                    .map(|s| s.valid_keys.clone());
                (arch, source, signed_by)
            })
            .collect()
    }
}

/// sources → observe → plan, writing nothing.
async fn prepare(req: &PushRequest) -> Result<Prepared> {
    let tags = check_tags(&req.tags)?;
    // sources, without reading any archive yet
    let resolved = sources::resolve(&req.source)?;
    let recorded = resolved.recorded()?;
    let repo = Repository::new(&req.repo, &req.registry)?;
    let retries_before = req.registry.clients.retries();

    // observe the tags: when meta.json and registry agree, the archives are not read
    let tag_states = observe::tags(&repo, &tags).await?;
    let quick =
        plan::check_recorded(&req.repo, &recorded, &tag_states, req.force).and_then(|reason| {
            plan::check_format(&tag_states, manifest::list_media_type(req.v2s2)).map(|()| reason)
        });
    // A signed run is up to date only with its evidence complete; otherwise it
    // goes the full way, and its plan says what is missing.
    let quick_evidence = match (&quick, &req.signer) {
        (Ok(_), Some(signer)) => {
            match evidence::Wanted::served(req.repo.as_str(), &tags, &tag_states) {
                Some(wanted) => {
                    Some(evidence::observe::observe_and_plan(&repo, signer, wanted).await?)
                }
                None => None,
            }
        }
        _ => None,
    };
    let complete =
        req.signer.is_none() || quick_evidence.as_ref().is_some_and(|e| e.gap.is_closed());
    if let (Ok(reason), true) = (quick, complete) {
        let plan = Plan::nothing(Verdict::UpToDate, reason);
        let unread = resolved.inputs.iter().filter_map(Source::unread).collect();
        let signatures = signatures::observe(&repo, &tag_states, unread, &req.trusted).await?;
        return Ok(Prepared {
            tags,
            resolved,
            recorded,
            repo,
            tag_states,
            full: None,
            plan,
            retries_before,
            clients: req.registry.clients.clone(),
            display: None,
            evidence: quick_evidence,
            signatures,
        });
    }

    // read the archives; the desired state; full observation; the plan
    let display = req.progress.then(|| {
        let sources = resolved
            .inputs
            .iter()
            .map(|i| (i.label(), i.archive_size()))
            .collect();
        Display::start(Progress::new(&req.container, sources))
    });
    let loaded = sources::load(&resolved, &req.registry).await?;
    if let Some(p) = display.as_ref().map(Display::progress) {
        for (n, l) in loaded.iter().enumerate() {
            if let Some(a) = p.source(n) {
                a.relabel(&l.image.arch);
            }
        }
        p.set_phase(Phase::Checking);
    }
    let images: Vec<_> = loaded.iter().map(|l| l.image.clone()).collect();
    let mut desired = plan::desired(&images, req.v2s2)?;
    if !req.force
        && let Some(list) = plan::equivalent_list(&desired, &tag_states)
    {
        adopt(&repo, &tags[0], list, &mut desired).await?;
    }
    // What the registry holds of the blobs, of the evidence and of the
    // signatures is read at once: each is round trips, none needs another.
    let presence = async {
        match Presence::vouched_for(&desired, &tag_states, req.force) {
            Some(vouched) => Ok(vouched),
            None => observe::presence(&repo, &desired, req.registry.jobs).await,
        }
    };
    let evidence = async {
        let Some(signer) = &req.signer else {
            return Ok(None);
        };
        let arches: Vec<Digest> = desired
            .images
            .iter()
            .map(|i| i.descriptor.digest.clone())
            .collect();
        let wanted = evidence::Wanted::new(req.repo.as_str(), &tags, &desired.list_digest, &arches);
        // What the quick check observed of the same list is not read again.
        match quick_evidence.filter(|e| e.wanted == wanted) {
            Some(e) => Ok(Some(e)),
            None => evidence::observe::observe_and_plan(&repo, signer, wanted)
                .await
                .map(Some),
        }
    };
    let read = loaded.iter().map(Source::loaded).collect();
    let signatures = signatures::observe(&repo, &tag_states, read, &req.trusted);
    let (presence, evidence, signatures) = futures_util::try_join!(presence, evidence, signatures)?;
    let mut plan = plan::plan(
        &req.repo,
        &tag_states,
        &desired,
        &recorded,
        &presence,
        req.force,
    );
    if let Some(e) = &evidence {
        plan = plan.with_evidence_missing(e.gap.missing(), e.gap.unattested);
    }
    Ok(Prepared {
        tags,
        resolved,
        recorded,
        repo,
        tag_states,
        full: Some((loaded, desired)),
        plan,
        retries_before,
        clients: req.registry.clients.clone(),
        display,
        evidence,
        signatures,
    })
}

/// Takes the equivalent list the tags serve as the desired one, with the bytes
/// the registry serves for it (checked against its digest).
async fn adopt(repo: &Repository, tag: &str, list: Digest, desired: &mut Desired) -> Result<()> {
    if let Some((_, bytes)) = repo.get_tag(tag).await?
        && Digest::of(&bytes) == list
    {
        desired.adopt_list(list, bytes);
    }
    Ok(())
}

/// The facts a policy would be given for this container, observed and planned
/// for real but with nothing written: what `pushgate policy facts` saves as a case.
pub async fn facts(req: &PushRequest) -> Result<Facts> {
    let mut p = prepare(req).await?;
    if let Some(d) = p.display.take() {
        d.finish("observed");
    }
    Ok(gather_facts(req, &p))
}

/// Publishes one container and records it.
///
/// Bad input, a refusing registry or a failed write is an `Err`, with nothing
/// written that should not be. A `fail` decision is an `Ok` report whose
/// outcome is [`Outcome::Failed`]: nothing was written either.
pub async fn push(req: &PushRequest) -> Result<Report> {
    let mut trace = Trace::default();
    let result = push_traced(req, &mut trace).await;
    log(req, None, &trace, result.as_ref())?;
    result
}

/// The report of a container whose policy could not be had (an unreachable or
/// unknown reference, a digest mismatch, an artifact that is not a policy, a
/// refused pinning rule): a `fail` decided by the host, before anything is
/// observed, so nothing is written. Logged like any decision.
pub fn refuse(req: &PushRequest, policy: &str, error: &anyhow::Error) -> Result<Report> {
    let tags = check_tags(&req.tags)?;
    let mut report = Report::new(&req.container, &req.repo, &tags, req.dry_run);
    let decided = Decided {
        decision: Decision::Fail(format!("{error:#}")),
        by: "host".into(),
        logs: vec![],
    };
    report.finish_decided(Outcome::Failed, &decided);
    let trace = Trace {
        decided: Some(decided),
        ..Trace::default()
    };
    log(req, Some(policy), &trace, Ok(&report))?;
    Ok(report)
}

/// Logs a container stopped by `error` before it could run (its policy did not
/// load), and gives the error back; a log that cannot be written wins.
pub fn log_stopped(req: &PushRequest, policy: &str, error: anyhow::Error) -> anyhow::Error {
    match log(req, Some(policy), &Trace::default(), Err(&error)) {
        Ok(()) => error,
        Err(e) => e,
    }
}

/// Appends the run's line to the decision log, if there is one. `unloaded` is
/// the policy that was configured but could not be had.
fn log(
    req: &PushRequest,
    unloaded: Option<&str>,
    trace: &Trace,
    result: Result<&Report, &anyhow::Error>,
) -> Result<()> {
    let Some(log) = &req.decision_log else {
        return Ok(());
    };
    log.record(subject(req, unloaded), trace, result.map(|r| r.outcome))
}

/// What the decision log (and an attestation) says a run was about.
fn subject<'a>(req: &'a PushRequest, unloaded: Option<&str>) -> Subject<'a> {
    Subject {
        container: &req.container,
        repo: req.repo.as_str(),
        tags: &req.tags,
        dry_run: req.dry_run,
        policy: LoggedPolicy::of(req.policy.as_ref(), unloaded),
    }
}

/// The signed attestation of this run's decision, unless the same decision
/// (list, policy module, facts) was attested before. Fixes the decision log
/// line's id and time, which the attestation names.
fn attestation(
    req: &PushRequest,
    signer: &evidence::Signer,
    ev: &evidence::Evidence,
    desired: &Desired,
    trace: &mut Trace,
    outcome: Outcome,
) -> Result<Option<Attestation>> {
    trace.id = Some((decision_log::new_id(), decision_log::now()));
    let entry = decision_log::entry(subject(req, None), trace, Ok(outcome), false);
    let module = req.policy.as_ref().map(|c| &c.policy.info.sha256);
    let key = evidence::decision_key(&desired.list_digest, module, entry.facts_sha256.as_ref());
    if ev.observed.attested.contains(&key) {
        return Ok(None);
    }
    let mut predicate = DecisionPredicate::from_log_entry(&entry)?;
    predicate.signatures = trace.facts.as_ref().and_then(SignaturesSeen::of);
    let list = manifest::Descriptor::of(desired.list_media_type, &desired.list_bytes);
    let mut att = attest::attest_decision(signer, req.repo.as_str(), &list, &predicate);
    let annotations = &mut att.manifest.annotations;
    annotations.insert(
        evidence::KEY_ANNOTATION.to_string(),
        signer.public_key().key_id().to_string(),
    );
    annotations.insert(evidence::DECISION_ANNOTATION.to_string(), key);
    Ok(Some(att))
}

async fn push_traced(req: &PushRequest, trace: &mut Trace) -> Result<Report> {
    let tags = check_tags(&req.tags)?;
    let mut report = Report::new(&req.container, &req.repo, &tags, req.dry_run);
    if let Some(choice) = &req.policy {
        report.policy = Some(crate::report::PolicyRef::of(choice));
        if let Err(decided) = choice.validate() {
            report.finish_decided(Outcome::Failed, &decided);
            trace.decided = Some(decided);
            return Ok(report);
        }
    }
    let mut p = prepare(req).await?;
    // Dropped unfinished (an error, a signal), it says the push stopped.
    let display = p.display.take();
    let source_labels = p.source_labels();
    match p.desired() {
        Some(desired) => report.fill_from_desired(desired, &p.plan),
        None => report.fill_from_recorded(&p.recorded, &p.tag_states),
    }
    report.fill_sources(&source_labels, p.desired().map(|d| (d, &p.plan)), None);
    trace.verdict = Some((p.plan.verdict, p.plan.reason.clone()));
    trace.build_id = p.resolved.build_id.clone();

    // decide
    // The log holds the facts whoever decides: a host decision is audited
    // too; an attestation names their digest.
    let logging = req.decision_log.is_some() || req.signer.is_some();
    let mut facts = None;
    let decided = decide::decide(&p.plan, req.policy.as_ref(), || {
        let f = gather_facts(req, &p);
        if logging {
            facts = Some(f.clone());
        }
        f
    });
    trace.facts = facts.or_else(|| logging.then(|| gather_facts(req, &p)));
    trace.decided = Some(decided.clone());
    let outcome = match (&decided.decision, p.plan.verdict) {
        (Decision::Fail(_), _) => Outcome::Failed,
        (_, Verdict::UpToDate) => Outcome::UpToDate,
        (Decision::Skip(_), _) => Outcome::Skipped,
        (Decision::Push(_), Verdict::RecordOnly) => Outcome::Recorded,
        (Decision::Push(_), Verdict::Push) => Outcome::Pushed,
    };
    report.finish_decided(outcome, &decided);
    report.signatures = p.evidence.as_ref().map(|e| Signatures {
        present: e.gap.present,
        added: e.gap.missing(),
    });
    let Some((loaded, desired)) = &p.full else {
        // Up to date without reading the archives: nothing to apply or record.
        if outcome == Outcome::UpToDate {
            write_digest(req, &report)?;
            tidy_records(req, &p);
        }
        report.retries = p.retries();
        return Ok(report);
    };
    let blob_sources: Vec<(String, sources::Blobs)> = loaded
        .iter()
        .map(|l| (l.image.arch.clone(), l.blobs.clone()))
        .collect();
    let shown = display.as_ref().map(Display::shared);
    if req.dry_run && !matches!(outcome, Outcome::Failed | Outcome::Skipped) {
        // A dry run says whether the real one would pass the archive checks.
        if !p.plan.blobs.is_empty() || !p.plan.manifests.is_empty() {
            if let Some(p) = &shown {
                p.set_phase(Phase::Verifying);
            }
            sources::verify(&blob_sources, shown.clone()).await?;
        }
    }
    let outcome_word = outcome.decision_name(req.dry_run);
    if matches!(outcome, Outcome::Failed | Outcome::Skipped) || req.dry_run {
        if let Some(d) = display {
            d.finish(outcome_word);
        }
        report.retries = p.retries();
        return Ok(report);
    }

    // apply
    let attestation = match (&req.signer, &p.evidence) {
        (Some(signer), Some(ev)) => attestation(req, signer, ev, desired, trace, outcome)?,
        _ => None,
    };
    let evidence_work = p.evidence.as_ref().map(|e| apply::EvidenceWork {
        gap: &e.gap,
        attestation: attestation.as_ref(),
        observed: &e.observed,
    });
    let blob_sources: HashMap<_, _> = blob_sources.into_iter().collect();
    let applied = apply::apply(
        &p.repo,
        &p.plan,
        desired,
        &blob_sources,
        apply::Transfers {
            slots: &req.registry.clients.upload_slots(req.registry.total_jobs),
            jobs: req.registry.jobs,
        },
        shown,
        evidence_work,
    )
    .await?;
    if let Some(s) = &mut report.signatures {
        s.added = applied.evidence.signatures;
    }
    report.attestation = applied.evidence.attestation.clone();
    trace.attestation = applied.evidence.attestation.clone();
    report.uploaded_blobs = applied.uploaded_blobs;
    report.uploaded_bytes = applied.uploaded_bytes;
    report.fill_sources(
        &source_labels,
        Some((desired, &p.plan)),
        Some(&applied.blobs),
    );

    // record: only now does the registry serve the list at every tag
    if let Some(key) = &p.resolved.key {
        for input in &p.resolved.inputs {
            let (Some(arch), Some(meta)) = (&input.arch, &input.meta) else {
                continue;
            };
            if !p.plan.record.contains(arch) {
                record::tidy(&meta.path);
                continue;
            }
            let entry = desired
                .entry_for(arch, &req.repo, &p.tags)
                .expect("every input arch is desired");
            if record::record_entry(&meta.path, key, &entry, req.force)? != RecordChange::Unchanged
            {
                report.recorded.push(arch.clone());
            }
        }
    }
    write_digest(req, &report)?;
    if let Some(d) = display {
        d.finish(outcome_word);
    }
    report.retries = p.retries();
    Ok(report)
}

/// Clears what a run killed while recording left beside each meta.json
/// ([`record::tidy`]), for a run that records nothing.
fn tidy_records(req: &PushRequest, p: &Prepared) {
    if req.dry_run || p.resolved.key.is_none() {
        return;
    }
    for meta in p.resolved.inputs.iter().filter_map(|i| i.meta.as_ref()) {
        record::tidy(&meta.path);
    }
}

fn gather_facts(req: &PushRequest, p: &Prepared) -> Facts {
    let present: Vec<String> = match p.desired() {
        Some(d) => d.images.iter().map(|i| i.arch.clone()).collect(),
        None => p
            .resolved
            .inputs
            .iter()
            .filter_map(|i| i.arch.clone())
            .collect(),
    };
    facts::gather(&Known {
        container: &req.container,
        repo: req.repo.as_str(),
        build_id: p.resolved.build_id.as_deref(),
        key: p.resolved.key.as_deref(),
        requested_arches: &p.resolved.requested_arches,
        present_arches: &present,
        tags: &p.tag_states,
        recorded: &p.recorded,
        desired: p.desired(),
        plan: &p.plan,
        force: req.force,
        dry_run: req.dry_run,
        settings: req.policy.as_ref().map_or("{}", |c| c.settings.as_str()),
        signatures: &p.signatures,
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
