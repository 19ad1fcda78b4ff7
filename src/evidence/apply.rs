//! Writes a container's missing evidence, in two stages so that its round
//! trips overlap the image's:
//!
//! - [`put_blobs`]: the blobs the evidence names (the signatures' payloads,
//!   the `.sig` manifests' configs, the attestation's envelope and empty
//!   config). They are computed before anything is uploaded, and a blob no
//!   manifest names yet is invisible, so they go up beside the image's blobs.
//! - [`put_signatures`]: the `.sig` manifests (every layer already there
//!   kept), each read again just before it is written and read back after,
//!   merged with what another signer wrote meanwhile. Each is found by its
//!   tag, `sha256-<digest>.sig`, which no image tag serves, so they may go up
//!   beside the image's manifests.
//! - [`put_attestation`]: the attestation (the referrer manifest by digest,
//!   naming the list as its subject) and, on a registry without the referrers
//!   API, the referrers tag: after the list is in the registry.
//!
//! All of it before any tag is moved: no tag serves a list unsigned.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::{StreamExt, TryStreamExt, stream};

use super::observe::sig_manifest;
use super::{Gap, Observed, SigWrite};
use crate::digest::Digest;
use crate::manifest::{OCI_INDEX, OCI_MANIFEST};
use crate::registry::{Repository, RetryPolicy};
use crate::sign::attest::Attestation;
use crate::sign::cosign::{SigManifest, sig_tag};
use crate::sign::oci::EMPTY_BLOB;
use crate::sign::referrers::{ReferrersIndex, referrers_tag};

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    pub signatures: usize,
    pub attestation: Option<Digest>,
}

/// How many of the evidence's blobs go up at once: each is a HEAD, a POST
/// and a PUT of a few hundred bytes, so round trips are their whole cost (a
/// signed push of 4 arches has 12; as many as observing sends HEADs at once).
const BLOBS_AT_ONCE: usize = 16;

/// How many `.sig` manifests go up at once (one per arch and the list).
const SIGS_AT_ONCE: usize = 8;

/// One blob the evidence names: its bytes, and what it is for (for errors).
struct EvidenceBlob<'a> {
    bytes: std::borrow::Cow<'a, [u8]>,
    doing: String,
}

/// The blobs the writes of `gap` and `attestation` name, each once.
fn blobs<'a>(gap: &'a Gap, attestation: Option<&'a Attestation>) -> Vec<EvidenceBlob<'a>> {
    let mut all = Vec::new();
    for w in &gap.sigs {
        let doing = format!(
            "signing: the signatures of {} at {}",
            w.digest,
            sig_tag(&w.digest)
        );
        for s in &w.added {
            all.push(EvidenceBlob {
                bytes: s.payload.as_slice().into(),
                doing: doing.clone(),
            });
        }
        all.push(EvidenceBlob {
            bytes: w.manifest.config().into(),
            doing,
        });
    }
    if let Some(att) = attestation {
        let doing = format!("attesting the decision: the referrer {}", att.digest());
        all.push(EvidenceBlob {
            bytes: att.envelope.as_slice().into(),
            doing: doing.clone(),
        });
        all.push(EvidenceBlob {
            bytes: EMPTY_BLOB.into(),
            doing,
        });
    }
    let mut seen = std::collections::HashSet::new();
    all.retain(|b| seen.insert(Digest::of(&b.bytes)));
    all
}

/// Uploads the blobs the evidence of `gap` and `attestation` names that the
/// repository lacks.
pub async fn put_blobs(
    repo: &Repository,
    gap: &Gap,
    attestation: Option<&Attestation>,
) -> Result<()> {
    stream::iter(blobs(gap, attestation))
        .map(|b| async move {
            repo.push_blob_bytes(&b.bytes)
                .await
                .with_context(|| b.doing.clone())
                .map(drop)
        })
        .buffer_unordered(BLOBS_AT_ONCE)
        .try_collect()
        .await
}

/// Puts the `.sig` manifests `gap` lacks (their blobs are in: [`put_blobs`]),
/// each checked to hold what it was meant to ([`put_sig`]): the signatures
/// added.
pub async fn put_signatures(repo: &Repository, gap: &Gap) -> Result<usize> {
    let counts: Vec<usize> = stream::iter(&gap.sigs)
        .map(|w| async move {
            put_sig(repo, w).await.with_context(|| {
                format!(
                    "signing: the signatures of {} at {}",
                    w.digest,
                    sig_tag(&w.digest)
                )
            })?;
            Ok::<_, anyhow::Error>(w.added.len())
        })
        .buffer_unordered(SIGS_AT_ONCE)
        .try_collect()
        .await?;
    Ok(counts.into_iter().sum())
}

/// How many times a `.sig` manifest or the referrers tag is written again,
/// merged with what the tag holds, before the run gives up on it.
const REWRITES: u32 = 5;

/// The pause before each rewrite: short (the writers race within a round
/// trip or two of each other), jittered so that two racers do not keep
/// colliding, growing in case the registry answers reads with a copy a little
/// behind its writes. At most 0.1 + 0.2 + 0.4 + 0.8 + 1 s in all.
const REWRITE_PAUSE: RetryPolicy = RetryPolicy {
    times: REWRITES,
    delay: Duration::from_millis(100),
    max_delay: Duration::from_secs(1),
};

/// Puts the `.sig` manifest `w` plans so that no other signer's layers are
/// lost: another signer of the digest (a second release job, a rerun racing a
/// slow first run) reads, adds and writes the same tag, so it is kept with
/// [`keep_in_tag`], read again just before the write (what was observed at
/// the start of the run may be minutes old: the layers written since are
/// kept). A writer that does not check back (cosign) can still drop a layer
/// later. Two GETs of the tag a manifest written, more only where there was a
/// race.
async fn put_sig(repo: &Repository, w: &SigWrite) -> Result<()> {
    let tag = sig_tag(&w.digest);
    keep_in_tag(
        repo,
        &tag,
        "signatures",
        None,
        async || Ok(sig_manifest(repo, &w.digest).await?.unwrap_or_default()),
        |now: &mut SigManifest| {
            let lacking = w.manifest.lacking_in(now) > 0;
            if lacking {
                *now = w.manifest.merged_into(now);
            }
            lacking
        },
        async |manifest: &SigManifest| {
            if manifest.config() != w.manifest.config() {
                // Layers another writer added: a config listing them too.
                repo.push_blob_bytes(&manifest.config()).await?;
            }
            repo.put_manifest(&tag, manifest.media_type(), &manifest.to_bytes())
                .await
        },
    )
    .await
}

/// Keeps what this run means a tag to hold through the read-modify-writes of
/// other writers (no registry offers compare-and-swap on a tag): takes what
/// the tag holds (`first`, when it was read just before, else `read`), adds
/// what it lacks (`merge`, false when it lacked nothing: then nothing is
/// written), writes it and reads it back. A write that landed in between,
/// made from an older read, may have dropped this run's part: while `merge`
/// finds something missing again, the tag is read again after a pause,
/// merged and written again. Two such writers end with the union unless one's
/// whole write and read back fall between the other's read and write (one
/// round trip). After [`REWRITES`] more writes it fails, naming the tag.
async fn keep_in_tag<T>(
    repo: &Repository,
    tag: &str,
    what: &str,
    mut first: Option<T>,
    read: impl AsyncFn() -> Result<T>,
    merge: impl Fn(&mut T) -> bool,
    write: impl AsyncFn(&T) -> Result<()>,
) -> Result<()> {
    for attempt in 0..=REWRITES {
        if attempt > 0 {
            let pause = REWRITE_PAUSE.wait(attempt, None, fastrand::f64());
            tokio::time::sleep(pause.unwrap_or_default()).await;
        }
        let mut now = match first.take() {
            Some(doc) => doc,
            None => read().await?,
        };
        if !merge(&mut now) {
            // Another writer has it all there already (a rerun, or a racer
            // that merged this run's part in).
            return Ok(());
        }
        write(&now).await?;
        if !merge(&mut read().await?) {
            return Ok(());
        }
    }
    bail!(
        "{}:{tag} still lacks {what} this run meant it to hold after {} writes: another \
         writer keeps replacing it (or the registry {} serves reads older than its \
         writes); run again once the other writer is done (a rerun adds only what is \
         missing)",
        repo.name(),
        REWRITES + 1,
        repo.repo().registry(),
    )
}

/// Puts `attestation` (its blobs are in: [`put_blobs`]), a referrer of
/// `list`, which must be in the registry: its digest.
pub async fn put_attestation(
    repo: &Repository,
    attestation: &Attestation,
    observed: &Observed,
    list: &Digest,
) -> Result<Digest> {
    let digest = attestation.digest();
    let doing = || format!("attesting the decision: the referrer {digest} of {list}");
    let manifest = async {
        repo.put_manifest(digest.as_str(), OCI_MANIFEST, &attestation.manifest_bytes())
            .await
    };
    if observed.referrers_api {
        manifest.await.with_context(doing)?;
    } else {
        // The referrers tag is read while the manifest goes up; it is written
        // after, as an index names only manifests the registry holds.
        let (put, index) = tokio::join!(manifest, read_referrers_tag(repo, list));
        put.with_context(doing)?;
        let index = index.with_context(doing)?;
        add_to_referrers_tag(repo, list, attestation, index)
            .await
            .with_context(doing)?;
    }
    Ok(digest)
}

/// The index the referrers tag of `list` holds now (other tools' entries
/// included), or a new one.
async fn read_referrers_tag(repo: &Repository, list: &Digest) -> Result<ReferrersIndex> {
    let tag = referrers_tag(list);
    match repo.get_tag(&tag).await? {
        Some((_, bytes)) => ReferrersIndex::parse(&bytes, &format!("{}:{tag}", repo.name())),
        None => Ok(ReferrersIndex::new()),
    }
}

/// Keeps the referrers tag schema: adds the attestation to `read` (what the
/// tag held just before) and writes it, kept with [`keep_in_tag`] as a
/// `.sig` manifest is: every tool attesting `list` (another job's decision,
/// cosign) read-modify-writes the tag too.
async fn add_to_referrers_tag(
    repo: &Repository,
    list: &Digest,
    att: &Attestation,
    read: ReferrersIndex,
) -> Result<()> {
    let tag = referrers_tag(list);
    let mut meant = read.manifests();
    meant.push(att.manifest.referrer_descriptor());
    keep_in_tag(
        repo,
        &tag,
        "the entries",
        Some(read),
        async || read_referrers_tag(repo, list).await,
        // Whether any entry of `meant` was missing (each is added).
        |index: &mut ReferrersIndex| meant.iter().filter(|d| index.add(d)).count() > 0,
        async |index: &ReferrersIndex| repo.put_manifest(&tag, OCI_INDEX, &index.to_bytes()).await,
    )
    .await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::evidence::{Wanted, plan};
    use crate::sign::SigningKey;
    use crate::sign::key::tests::{encrypt_pem, test_key_der};

    #[test]
    fn the_blobs_beside_the_image_are_every_payload_and_config_each_once() {
        let pem = encrypt_pem(
            &test_key_der(3),
            b"",
            10,
            crate::sign::key::SIGSTORE_PRIVATE_KEY_LABEL,
        );
        let key = SigningKey::from_encrypted_pem(pem.as_bytes(), b"", "test key").unwrap();
        let tags = ["stable".to_string(), "41.1".to_string()];
        let wanted = Wanted::new(
            "r.io/fcos",
            &tags,
            &Digest::of(b"list"),
            &[Digest::of(b"amd64"), Digest::of(b"arm64")],
        );
        let gap = plan(&key, &wanted, &Observed::default());
        let named: BTreeSet<Digest> = gap
            .sigs
            .iter()
            .flat_map(|w| {
                w.added
                    .iter()
                    .map(|s| Digest::of(&s.payload))
                    .chain([Digest::of(&w.manifest.config())])
            })
            .collect();
        let listed: Vec<Digest> = blobs(&gap, None)
            .iter()
            .map(|b| Digest::of(&b.bytes))
            .collect();
        let unique: BTreeSet<Digest> = listed.iter().cloned().collect();
        assert_eq!(unique.len(), listed.len(), "each blob once: {listed:?}");
        assert_eq!(unique, named, "every blob a .sig manifest names");
        assert!(
            blobs(&gap, None).iter().all(|b| b.doing.contains(".sig")),
            "an error names the .sig tag it was for"
        );
    }
}
