//! What the registry holds of a container's evidence: the `.sig` manifest of
//! the list and of every per-arch manifest, and the list's referrers (through
//! the referrers API, or the referrers tag where the registry has none).
//! Reads only. Also: which trusted keys signed a manifest ([`signers`]).

use anyhow::{Context, Result};
use futures_util::{StreamExt, TryStreamExt, stream};

use super::sigcopy::SigCopy;
use super::{DECISION_ANNOTATION, Evidence, KEY_ANNOTATION, Observed, Wanted};
use crate::digest::Digest;
use crate::registry::Repository;
use crate::sign::cosign::{SigManifest, sig_tag};
use crate::sign::dsse::{ENVELOPE_MEDIA_TYPE, IN_TOTO_PAYLOAD_TYPE};
use crate::sign::oci::ArtifactManifest;
use crate::sign::referrers::{ReferrersIndex, referrers_tag};
use crate::sign::trust::{Attested, Signers, TrustedKeys};

/// Reads what `repo` holds of `wanted`'s evidence; `key_id` picks this run's
/// attestations among the list's referrers.
pub async fn observe(repo: &Repository, wanted: &Wanted, key_id: &str) -> Result<Observed> {
    let sigs = stream::iter(&wanted.digests)
        .map(|d| sig_manifest(repo, d))
        .buffered(8)
        .try_collect::<Vec<_>>();
    let (sigs, (index, referrers_api)) =
        futures_util::try_join!(sigs, referrers(repo, wanted.list()))?;
    let attested = index
        .map(|i| {
            i.of_type(IN_TOTO_PAYLOAD_TYPE)
                .into_iter()
                .filter(|d| d.annotations.get(KEY_ANNOTATION).map(String::as_str) == Some(key_id))
                .filter_map(|d| d.annotations.get(DECISION_ANNOTATION).cloned())
                .collect()
        })
        .unwrap_or_default();
    Ok(Observed {
        sigs,
        attested,
        referrers_api,
    })
}

/// Observes and plans the evidence `signer` wants for `wanted`.
pub async fn observe_and_plan(
    repo: &Repository,
    signer: &super::Signer,
    wanted: Wanted,
) -> Result<Evidence> {
    let observed = observe(repo, &wanted, signer.public_key().key_id()).await?;
    let gap = super::plan(signer, &wanted, &observed);
    Ok(Evidence {
        wanted,
        observed,
        gap,
    })
}

/// The `.sig` manifest of `digest`, if its tag exists.
pub async fn sig_manifest(repo: &Repository, digest: &Digest) -> Result<Option<SigManifest>> {
    let tag = sig_tag(digest);
    match repo.get_tag(&tag).await? {
        None => Ok(None),
        Some((_, bytes)) => {
            let label = format!("{}:{tag}", repo.name());
            SigManifest::parse(&bytes, &label)
                .map(Some)
                .context("the signatures already there cannot be read, so none can be added")
        }
    }
}

/// The largest attestation envelope read.
pub const MAX_ENVELOPE: usize = 1 << 20;

/// Which trusted keys signed `digest` in `repo` (its `.sig` tag, as cosign and
/// containers/image store signatures), for a reference in `repo` (any tag).
/// Nothing there, a `.sig` manifest that cannot be read, a signature that
/// does not verify: facts in the answer. A registry that cannot be read:
/// an error.
pub async fn signers(repo: &Repository, digest: &Digest, keys: &TrustedKeys) -> Result<Signers> {
    Ok(match SigCopy::read(repo, digest).await? {
        None => Signers::default(),
        Some(copy) => copy.check(keys, repo.repo(), digest),
    })
}

/// The most attestations about one manifest read (in each place they may be).
pub const MAX_ATTESTATIONS: usize = 32;

/// The tag where cosign keeps the attestations of the manifest `digest`.
pub fn att_tag(digest: &Digest) -> String {
    format!("sha256-{}.att", digest.hex())
}

/// Which trusted keys attested what about `digest` in `repo`: the in-toto
/// statements in cosign's `.att` tag, and those among the manifest's referrers
/// (OCI 1.1, as cosign's referrers mode and pushgate write them). What cannot
/// be read or does not verify is a fact in the answer; a registry that cannot
/// be read is an error.
pub async fn attestations(
    repo: &Repository,
    digest: &Digest,
    keys: &TrustedKeys,
) -> Result<Attested> {
    let ((mut envelopes, att_unreadable), (stored, unreadable)) = futures_util::try_join!(
        att_envelopes(repo, digest),
        referrer_attestations(repo, digest)
    )?;
    envelopes.extend(stored.into_iter().map(|s| (s.label, s.envelope)));
    let mut found = keys.attested(&envelopes, digest);
    found.invalid.extend(att_unreadable);
    found.invalid.extend(unreadable);
    Ok(found)
}

/// The envelopes in cosign's `.att` tag of `digest` (labelled), and what of
/// it cannot be read.
async fn att_envelopes(
    repo: &Repository,
    digest: &Digest,
) -> Result<(Vec<(String, Vec<u8>)>, Vec<String>)> {
    let tag = att_tag(digest);
    let Some((_, bytes)) = repo.get_tag(&tag).await? else {
        return Ok((Vec::new(), Vec::new()));
    };
    let label = format!("{}:{tag}", repo.name());
    let att = match SigManifest::parse(&bytes, &label) {
        Ok(att) => att,
        Err(e) => return Ok((Vec::new(), vec![format!("{e:#}")])),
    };
    let layers: Vec<_> = att
        .layers()
        .into_iter()
        .filter(|l| l.media_type == ENVELOPE_MEDIA_TYPE)
        .take(MAX_ATTESTATIONS)
        .enumerate()
        .collect();
    let envelopes = stream::iter(layers)
        .map(|(i, layer)| {
            let label = format!("{label} attestation {i}");
            async move {
                let blob = repo.get_blob(&layer.digest, MAX_ENVELOPE).await?;
                Ok::<_, anyhow::Error>(blob.map(|b| (label, b)))
            }
        })
        .buffered(8)
        .try_collect::<Vec<_>>()
        .await?;
    Ok((envelopes.into_iter().flatten().collect(), Vec::new()))
}

/// An in-toto attestation among a manifest's referrers, as stored (not yet
/// verified): the referrer manifest and the envelope blob of its one layer.
pub struct StoredAttestation {
    pub digest: Digest,
    /// `REPO@DIGEST`, for messages.
    pub label: String,
    pub manifest: Vec<u8>,
    pub envelope: Vec<u8>,
}

/// The in-toto attestations among `subject`'s referrers (at most
/// [`MAX_ATTESTATIONS`]), as stored; and why each referrer of that type that
/// is not one DSSE envelope about `subject` was passed over.
pub async fn referrer_attestations(
    repo: &Repository,
    subject: &Digest,
) -> Result<(Vec<StoredAttestation>, Vec<String>)> {
    let (index, _) = referrers(repo, subject).await?;
    let listed: Vec<_> = index
        .map(|i| i.of_type(IN_TOTO_PAYLOAD_TYPE))
        .unwrap_or_default()
        .into_iter()
        .take(MAX_ATTESTATIONS)
        .collect();
    let read = stream::iter(listed)
        .map(|d| async move {
            let Some(fetched) = repo.get_manifest(d.digest.as_str()).await? else {
                return Ok(None);
            };
            let label = format!("{}@{}", repo.name(), d.digest);
            let m = match ArtifactManifest::parse(&fetched.bytes, &label) {
                Ok(m) => m,
                Err(e) => return Ok(Some(Err(format!("{e:#}")))),
            };
            let layer = match &m.layers[..] {
                [l] if l.media_type == ENVELOPE_MEDIA_TYPE => l,
                _ => {
                    return Ok(Some(Err(format!(
                        "{label}: not a single DSSE envelope layer"
                    ))));
                }
            };
            if m.subject.as_ref().map(|s| &s.digest) != Some(subject) {
                return Ok(Some(Err(format!("{label}: not a referrer of {subject}"))));
            }
            let Some(envelope) = repo.get_blob(&layer.digest, MAX_ENVELOPE).await? else {
                return Ok(None);
            };
            Ok::<_, anyhow::Error>(Some(Ok(StoredAttestation {
                digest: d.digest.clone(),
                label,
                manifest: fetched.bytes,
                envelope,
            })))
        })
        .buffered(8)
        .try_collect::<Vec<_>>()
        .await?;
    let (mut stored, mut passed_over) = (Vec::new(), Vec::new());
    for r in read.into_iter().flatten() {
        match r {
            Ok(s) => stored.push(s),
            Err(why) => passed_over.push(why),
        }
    }
    Ok((stored, passed_over))
}

/// The referrers of `subject`, and whether they came from the referrers API
/// (`false`: from the referrers tag, which the caller then keeps up).
pub async fn referrers(
    repo: &Repository,
    subject: &Digest,
) -> Result<(Option<ReferrersIndex>, bool)> {
    if let Some(bytes) = repo.referrers(subject).await? {
        let label = format!("the referrers of {subject} in {}", repo.name());
        return Ok((Some(ReferrersIndex::parse(&bytes, &label)?), true));
    }
    let tag = referrers_tag(subject);
    match repo.get_tag(&tag).await? {
        None => Ok((None, false)),
        Some((_, bytes)) => {
            let label = format!("{}:{tag}", repo.name());
            Ok((Some(ReferrersIndex::parse(&bytes, &label)?), false))
        }
    }
}
