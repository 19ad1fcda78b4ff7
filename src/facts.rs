//! Gathering the facts a policy is told about one container, from the
//! pipeline's plain data (the facts themselves are [`crate::contract::Facts`]).

use crate::contract::{ArchFact, Facts, SourceFact, TagFact};
use crate::meta::ImageEntry;
use crate::observe::signatures::Verified;
use crate::plan::{Desired, Plan, TagState};

/// What the pipeline knows when it asks for a decision.
pub struct Known<'a> {
    pub container: &'a str,
    pub repo: &'a str,
    pub build_id: Option<&'a str>,
    pub key: Option<&'a str>,
    pub requested_arches: &'a [String],
    pub present_arches: &'a [String],
    pub tags: &'a [TagState],
    pub recorded: &'a [(String, Option<ImageEntry>)],
    /// `None` when the run stopped at the quick check (nothing desired was built:
    /// the recorded state is the desired one).
    pub desired: Option<&'a Desired>,
    pub plan: &'a Plan,
    pub force: bool,
    pub dry_run: bool,
    pub settings: &'a str,
    /// The sources and what was verified of signatures (contract 0.2.0).
    pub signatures: &'a Verified,
}

/// Builds the facts from the pipeline's plain data.
pub fn gather(k: &Known<'_>) -> Facts {
    let recorded_of = |arch: &str| {
        k.recorded
            .iter()
            .find(|(a, _)| a == arch)
            .and_then(|(_, e)| e.as_ref())
            .map(ImageEntry::newest)
    };
    let desired_list = match k.desired {
        Some(d) => Some(d.list_digest.to_string()),
        None => k
            .recorded
            .iter()
            .find_map(|(_, e)| {
                e.as_ref()
                    .map(ImageEntry::newest)?
                    .manifest_list_digest
                    .as_ref()
            })
            .map(|d| d.to_string())
            // Entries cosa wrote before `manifest-list-digest` existed: the quick
            // check found every tag serving a list of exactly the recorded
            // digests, so that list is the desired one.
            .or_else(|| {
                let (d, _) = k.tags.first()?.current.as_ref()?;
                Some(d.to_string())
            }),
    };
    // The per-arch digests the first tag's list holds now, matched by platform.
    let first_list = k.tags.first().and_then(|t| match &t.current {
        Some((_, crate::manifest::Remote::List { entries, .. })) => Some(entries),
        _ => None,
    });
    let registry_digest = |arch: &str| -> Option<String> {
        let want = crate::arch::oci_arch(arch)?;
        first_list?
            .iter()
            .find(|e| e.platform.as_ref().is_some_and(|p| p.architecture == want))
            .map(|e| e.digest.to_string())
    };
    let arches = k
        .present_arches
        .iter()
        .map(|arch| {
            let rec = recorded_of(arch);
            let desired = match k.desired {
                Some(d) => d.digest_of(arch).map(|d| d.to_string()),
                None => rec.and_then(|e| e.digest.as_ref()).map(|d| d.to_string()),
            };
            ArchFact {
                arch: arch.clone(),
                has_key: rec.is_some(),
                recorded_digest: rec.and_then(|e| e.digest.as_ref()).map(|d| d.to_string()),
                desired_digest: desired,
                registry_digest: registry_digest(arch),
                source: k
                    .signatures
                    .source(arch)
                    .cloned()
                    .unwrap_or_else(SourceFact::default),
            }
        })
        .collect();
    Facts {
        container: k.container.to_string(),
        repo: k.repo.to_string(),
        tags: k
            .tags
            .iter()
            .map(|t| {
                let signatures = t
                    .current
                    .as_ref()
                    .and_then(|(d, _)| k.signatures.of_list(d))
                    .cloned();
                let current = t.current.as_ref().map(|(d, _)| d.to_string());
                TagFact {
                    name: t.tag.clone(),
                    is_desired: current.is_some() && current == desired_list,
                    current,
                    signatures,
                }
            })
            .collect(),
        build_id: k.build_id.map(str::to_string),
        key: k.key.map(str::to_string),
        requested_arches: k.requested_arches.to_vec(),
        present_arches: k.present_arches.to_vec(),
        arches,
        desired_list_digest: desired_list,
        verdict: k.plan.verdict,
        verdict_reason: k.plan.reason.clone(),
        force: k.force,
        dry_run: k.dry_run,
        settings: k.settings.to_string(),
        trusted_keys: k.signatures.trusted_keys.clone(),
    }
}
