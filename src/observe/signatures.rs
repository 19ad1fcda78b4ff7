//! Observe the signatures a policy is told about (contract 0.2.0): for each
//! arch's source in a registry, and for the list each tag serves now, which
//! trusted keys signed it and what they attested. Reads only, and nothing at
//! all when the host trusts no key.
//!
//! A source is checked in its own repository for any tag of it (what
//! `cosign sign REPO@DIGEST` and a build job's signing leave), the destination
//! in the destination repository. A local source (an archive, a layout
//! directory) has no registry home, so its `signatures` is none, said
//! explicitly.

use anyhow::{Context, Result};
use futures_util::{StreamExt, TryStreamExt, stream};

use crate::contract::{AttestationFact, Origin, SignatureFacts, SourceFact};
use crate::digest::Digest;
use crate::evidence::observe::{attestations, signers};
use crate::plan::TagState;
use crate::registry::Repository;
use crate::sign::TrustedKeys;
use crate::sources::{ArchInput, Blobs, LoadedImage};

/// One arch's source, as the pipeline knows it.
pub struct Source<'a> {
    pub arch: String,
    pub origin: Origin,
    /// The manifest digest it holds, when it was read.
    pub digest: Option<Digest>,
    /// Its repository, for a source in a registry.
    pub registry: Option<&'a Repository>,
}

impl<'a> Source<'a> {
    /// A source that was read.
    pub fn loaded(l: &'a LoadedImage) -> Source<'a> {
        let digest = Digest::of(&l.image.manifest_raw);
        let (origin, registry) = match &l.blobs {
            Blobs::Registry(repo) => (
                Origin::Registry(format!("{}@{digest}", repo.name())),
                Some(repo.as_ref()),
            ),
            Blobs::Layout(_) => (Origin::Local(l.source.clone()), None),
        };
        Source {
            arch: l.image.arch.clone(),
            origin,
            digest: Some(digest),
            registry,
        }
    }

    /// A source that was not read (the container was found up to date from
    /// meta.json alone, which only archives of a cosa build can be).
    pub fn unread(input: &ArchInput) -> Option<Source<'a>> {
        Some(Source {
            arch: input.arch.clone()?,
            origin: Origin::Local(input.origin.label()),
            digest: None,
            registry: None,
        })
    }
}

/// What was observed, for the facts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verified {
    /// The trusted keys' names; empty when none were given.
    pub trusted_keys: Vec<String>,
    /// Per arch, its source.
    pub sources: Vec<(String, SourceFact)>,
    /// Per distinct list the tags serve now, its signatures (only when keys
    /// are trusted).
    pub lists: Vec<(Digest, SignatureFacts)>,
}

impl Verified {
    /// The signatures on the list `digest`, if they were looked for.
    pub fn of_list(&self, digest: &Digest) -> Option<&SignatureFacts> {
        self.lists.iter().find(|(d, _)| d == digest).map(|(_, s)| s)
    }

    /// Arch `arch`'s source.
    pub fn source(&self, arch: &str) -> Option<&SourceFact> {
        self.sources.iter().find(|(a, _)| a == arch).map(|(_, s)| s)
    }
}

/// Everything `keys` verify on `digest` in `repo`.
async fn verified(
    repo: &Repository,
    digest: &Digest,
    keys: &TrustedKeys,
) -> Result<SignatureFacts> {
    let (signed, attested) = futures_util::try_join!(
        signers(repo, digest, keys),
        attestations(repo, digest, keys)
    )?;
    let mut invalid = signed.invalid;
    invalid.extend(attested.invalid);
    Ok(SignatureFacts {
        valid_keys: signed.valid,
        invalid,
        attestations: attested
            .by_type
            .into_iter()
            .map(|(predicate_type, keys)| AttestationFact {
                predicate_type,
                keys,
            })
            .collect(),
    })
}

/// Observes the signatures of `sources` and of the lists `tags` serve in
/// `dest`, with `keys`.
pub async fn observe(
    dest: &Repository,
    tags: &[TagState],
    sources: Vec<Source<'_>>,
    keys: &TrustedKeys,
) -> Result<Verified> {
    let trusted = !keys.is_empty();
    let sources = stream::iter(sources)
        .map(|s| async move {
            let signatures = match (trusted, s.registry, &s.digest) {
                (true, Some(repo), Some(digest)) => {
                    Some(verified(repo, digest, keys).await.with_context(|| {
                        format!("cannot read the signatures of the {} source", s.arch)
                    })?)
                }
                _ => None,
            };
            let fact = SourceFact {
                origin: s.origin,
                digest: s.digest.map(|d| d.to_string()),
                signatures,
            };
            Ok::<_, anyhow::Error>((s.arch, fact))
        })
        .buffered(8)
        .try_collect()
        .await?;
    let mut lists: Vec<Digest> = Vec::new();
    if trusted {
        for t in tags {
            if let Some((d, _)) = &t.current
                && !lists.contains(d)
            {
                lists.push(d.clone());
            }
        }
    }
    let lists = stream::iter(lists)
        .map(|d| async move {
            let facts = verified(dest, &d, keys)
                .await
                .with_context(|| format!("cannot read the signatures of {d} in {}", dest.name()))?;
            Ok::<_, anyhow::Error>((d, facts))
        })
        .buffered(8)
        .try_collect()
        .await?;
    Ok(Verified {
        trusted_keys: keys.names(),
        sources,
        lists,
    })
}
