//! Evidence beside what a signed run publishes: a Sigstore signature per tag
//! for the list and for every per-arch manifest (cosign's `.sig` layout), and
//! a signed attestation of the decision, a referrer of the list.
//!
//! Signing is part of the desired state, planned like the rest:
//! [`observe`] reads the `.sig` manifests and the list's referrers,
//! [`plan`](plan()) (pure) says which signatures are missing and whether an
//! attestation is, [`apply`] writes exactly those, after the list and before
//! any tag, so no tag serves a list whose signatures are not beside it.
//! [`sigcopy`] reads a manifest's signatures as bytes and checks them with
//! the trusted keys (for the policy's facts, and for signed policies).
//!
//! Signatures are deterministic (RFC 6979): the signature pushgate would make
//! for a tag and a digest is computed, and the `.sig` manifest either holds that
//! very layer (same payload digest, same signature) or it is missing. Nothing
//! has to be fetched to know, and a rerun adds nothing.

pub mod apply;
pub mod observe;
pub mod sigcopy;

use std::sync::Arc;

use crate::digest::Digest;
use crate::manifest::Remote;
use crate::plan::TagState;
use crate::sign::SigningKey;
use crate::sign::cosign::SigManifest;
use crate::sign::simple::{self, Signed};

/// The annotation naming the key (its id) an attestation is signed with: how
/// a run finds its own attestations among a list's referrers.
pub const KEY_ANNOTATION: &str = "dev.pushgate.key-id";
/// The annotation naming the decision an attestation is of (see
/// [`decision_key`]): one attestation per distinct decision.
pub const DECISION_ANNOTATION: &str = "dev.pushgate.decision";

/// The signing key of a run, shared by its containers.
pub type Signer = Arc<SigningKey>;

/// What a signed container must have beside its list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The repository as the references name it (`quay.io/fedora/fedora-coreos`).
    pub repo: String,
    pub tags: Vec<String>,
    /// The list, then every per-arch manifest.
    pub digests: Vec<Digest>,
}

impl Wanted {
    pub fn new(repo: &str, tags: &[String], list: &Digest, arches: &[Digest]) -> Wanted {
        Wanted {
            repo: repo.to_string(),
            tags: tags.to_vec(),
            digests: std::iter::once(list.clone())
                .chain(arches.iter().cloned())
                .collect(),
        }
    }

    /// What the tags serve now, as the evidence wants it: the list (the
    /// first tag's) and its per-arch manifests; `None` when no list is served.
    pub fn served(repo: &str, tags: &[String], states: &[TagState]) -> Option<Wanted> {
        let (list, Remote::List { entries, .. }) = states.first()?.current.as_ref()? else {
            return None;
        };
        let arches: Vec<Digest> = entries.iter().map(|e| e.digest.clone()).collect();
        Some(Wanted::new(repo, tags, list, &arches))
    }

    /// The list's digest.
    pub fn list(&self) -> &Digest {
        &self.digests[0]
    }
}

/// A signed container's evidence as observed and planned.
pub struct Evidence {
    pub wanted: Wanted,
    pub observed: Observed,
    pub gap: Gap,
}

/// What the registry holds of the evidence, as observed.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Per wanted digest, in order: its `.sig` manifest, if the tag exists.
    pub sigs: Vec<Option<SigManifest>>,
    /// The decision keys of the list's attestations by this run's key.
    pub attested: Vec<String>,
    /// Whether the registry has the referrers API (else the tag schema).
    pub referrers_api: bool,
}

/// One `.sig` manifest to write: the manifest with the new layers added, and
/// those layers' payloads (to upload first).
#[derive(Debug, Clone)]
pub struct SigWrite {
    pub digest: Digest,
    pub manifest: SigManifest,
    pub added: Vec<Signed>,
}

/// The evidence missing.
#[derive(Debug, Clone, Default)]
pub struct Gap {
    pub sigs: Vec<SigWrite>,
    /// Signatures already there (valid: pushgate's own, for this key).
    pub present: usize,
    /// No attestation by this key exists for the list yet.
    pub unattested: bool,
}

impl Gap {
    /// Signatures to add.
    pub fn missing(&self) -> usize {
        self.sigs.iter().map(|w| w.added.len()).sum()
    }

    /// Whether nothing is missing (an attestation of the current decision
    /// aside: a run that writes nothing else writes none).
    pub fn is_closed(&self) -> bool {
        self.sigs.is_empty() && !self.unattested
    }
}

/// The signatures `key` makes for `wanted`: one per tag and digest, the
/// reference being `REPO:TAG` as containers/image and cosign check it.
pub fn signatures(key: &SigningKey, wanted: &Wanted, digest: &Digest) -> Vec<Signed> {
    wanted
        .tags
        .iter()
        .map(|tag| simple::sign(key, &format!("{}:{tag}", wanted.repo), digest, None))
        .collect()
}

/// What is missing of `wanted` given what was `observed`: for each digest,
/// the signatures (per tag) its `.sig` manifest lacks, every layer already
/// there (other keys', other tags') kept.
pub fn plan(key: &SigningKey, wanted: &Wanted, observed: &Observed) -> Gap {
    let mut gap = Gap {
        unattested: observed.attested.is_empty(),
        ..Gap::default()
    };
    for (i, digest) in wanted.digests.iter().enumerate() {
        let mut manifest = observed.sigs.get(i).cloned().flatten().unwrap_or_default();
        let want = signatures(key, wanted, digest);
        let added: Vec<Signed> = manifest.add(&want).into_iter().cloned().collect();
        gap.present += want.len() - added.len();
        if !added.is_empty() {
            gap.sigs.push(SigWrite {
                digest: digest.clone(),
                manifest,
                added,
            });
        }
    }
    gap
}

/// The key of a decision, for "one attestation per distinct decision": the
/// list, the policy module that decided (or the host) and the facts it saw.
pub fn decision_key(list: &Digest, module: Option<&Digest>, facts: Option<&Digest>) -> String {
    let text = format!(
        "{list}\n{}\n{}",
        module.map_or("host", Digest::as_str),
        facts.map_or("-", Digest::as_str)
    );
    Digest::of(text.as_bytes()).hex().to_string()
}

#[cfg(test)]
mod tests;
