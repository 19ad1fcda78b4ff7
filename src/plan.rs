//! Planning: the desired state, and the host's verdict on how to reach it.
//!
//! Pure functions over plain data, no I/O: this is where the idempotency rules
//! live, so they are tested here over every combination of local and remote state.
//!
//! Two checks, in order:
//! 1. [`check_recorded`] needs only meta.json and the tags: when every arch has the
//!    key and every tag serves a list of exactly the recorded digests, the run is
//!    up to date without reading a single archive.
//! 2. [`plan`] compares the [`Desired`] state (built by [`desired`] from the
//!    archives) with what the registry holds and says exactly what is missing.

use std::collections::BTreeSet;

use crate::contract::Verdict;
use crate::digest::Digest;
use crate::manifest::{self, Descriptor, OCI_MANIFEST, Remote};
use crate::meta::ImageEntry;
use crate::registry::RepoName;
use crate::sources::SourceImage;

/// One per-arch manifest as it will be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredImage {
    pub arch: String,
    pub descriptor: Descriptor,
    pub bytes: Vec<u8>,
    /// Config first, then layers.
    pub blobs: Vec<Descriptor>,
}

/// Everything the run will publish, known before any write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub images: Vec<DesiredImage>,
    pub list_media_type: &'static str,
    pub list_bytes: Vec<u8>,
    pub list_digest: Digest,
}

impl Desired {
    /// Takes `digest` (serving `bytes`) as the list to publish: an equivalent list
    /// already at the tags (see [`equivalent_list`]), which is recorded as it is
    /// instead of being replaced by pushgate's own serialisation.
    pub fn adopt_list(&mut self, digest: Digest, bytes: Vec<u8>) {
        self.list_digest = digest;
        self.list_bytes = bytes;
    }

    pub fn digest_of(&self, arch: &str) -> Option<&Digest> {
        self.images
            .iter()
            .find(|i| i.arch == arch)
            .map(|i| &i.descriptor.digest)
    }

    /// The meta.json entry each arch gets.
    pub fn entry_for(&self, arch: &str, repo: &RepoName, tags: &[String]) -> Option<ImageEntry> {
        Some(ImageEntry {
            image: repo.to_string(),
            digest: Some(self.digest_of(arch)?.clone()),
            manifest_list_digest: Some(self.list_digest.clone()),
            tags: tags.to_vec(),
            additional_images: Vec::new(),
        })
    }
}

/// Builds the desired state: per-arch manifests (kept byte-for-byte, or converted
/// for `--v2s2`) and the list over them, in the order of `images`.
pub fn desired(images: &[SourceImage], v2s2: bool) -> anyhow::Result<Desired> {
    let mut out = Vec::with_capacity(images.len());
    for img in images {
        let (media_type, bytes) = if v2s2 {
            let label = format!("image for {}", img.arch);
            let bytes = manifest::to_docker_v2s2(&img.manifest, &img.manifest_raw, &label)?;
            (manifest::DOCKER_MANIFEST.to_string(), bytes)
        } else {
            let mt = img
                .manifest
                .media_type
                .clone()
                .unwrap_or_else(|| OCI_MANIFEST.to_string());
            (mt, img.manifest_raw.clone())
        };
        let parsed = manifest::ImageManifest::parse(&bytes, &img.arch)?;
        out.push(DesiredImage {
            arch: img.arch.clone(),
            descriptor: Descriptor {
                platform: Some(img.platform.clone()),
                ..Descriptor::of(&media_type, &bytes)
            },
            blobs: parsed.blobs().cloned().collect(),
            bytes,
        });
    }
    let entries: Vec<Descriptor> = out.iter().map(|i| i.descriptor.clone()).collect();
    let (list_media_type, list_bytes) = manifest::build_list(&entries, v2s2);
    Ok(Desired {
        images: out,
        list_media_type,
        list_digest: Digest::of(&list_bytes),
        list_bytes,
    })
}

/// What one tag serves now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagState {
    pub tag: String,
    /// `None` when the tag does not exist.
    pub current: Option<(Digest, Remote)>,
}

/// Which of the desired blobs and manifests the repository already has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Presence {
    pub blobs: BTreeSet<Digest>,
    pub manifests: BTreeSet<Digest>,
}

impl Presence {
    /// What the repository holds when a tag already serves the desired list,
    /// without asking it blob by blob: a registry serves a list only over
    /// manifests it holds, and a manifest only over blobs it holds (it refuses
    /// the PUT otherwise). The no-op trusts the tags the same way. `None` when
    /// no tag serves the desired list, or when `force` asks for nothing to be
    /// taken on trust.
    pub fn vouched_for(desired: &Desired, tags: &[TagState], force: bool) -> Option<Presence> {
        let served = tags.iter().any(|t| {
            t.current
                .as_ref()
                .is_some_and(|(d, _)| *d == desired.list_digest)
        });
        (served && !force).then(|| Presence {
            blobs: desired
                .images
                .iter()
                .flat_map(|i| &i.blobs)
                .map(|b| b.digest.clone())
                .collect(),
            manifests: desired
                .images
                .iter()
                .map(|i| i.descriptor.digest.clone())
                .chain(std::iter::once(desired.list_digest.clone()))
                .collect(),
        })
    }
}

/// The host plan: the verdict, why, and exactly what is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub verdict: Verdict,
    pub reason: String,
    /// Blobs to upload, each once, biggest first (ties in manifest order).
    pub blobs: Vec<Descriptor>,
    /// Arches whose manifest must be put.
    pub manifests: Vec<String>,
    pub list: bool,
    pub tags: Vec<String>,
    /// Arches whose meta.json gets an entry.
    pub record: Vec<String>,
}

impl Plan {
    /// A plan with nothing to upload or record.
    pub fn nothing(verdict: Verdict, reason: String) -> Plan {
        Plan {
            verdict,
            reason,
            blobs: Vec::new(),
            manifests: Vec::new(),
            list: false,
            tags: Vec::new(),
            record: Vec::new(),
        }
    }

    /// The plan of a signed run whose evidence is incomplete (`signatures`
    /// missing, or no attestation yet): a run that is up to date otherwise
    /// becomes a push of the evidence alone, and says so; one that writes
    /// anyway keeps its verdict and adds the evidence to what it writes.
    pub fn with_evidence_missing(mut self, signatures: usize, unattested: bool) -> Plan {
        if self.verdict != Verdict::UpToDate || (signatures == 0 && !unattested) {
            return self;
        }
        self.verdict = Verdict::Push;
        self.reason = match (signatures, unattested) {
            (0, _) => "the decision attestation is missing (signing asked for)".to_string(),
            (n, _) => format!("{n} signatures are missing (signing asked for)"),
        };
        self
    }

    pub fn writes_registry(&self) -> bool {
        !self.blobs.is_empty() || !self.manifests.is_empty() || self.list || !self.tags.is_empty()
    }
}

/// The quick check, from meta.json and tags alone. `Ok(reason)` means up to date;
/// `Err(reason)` says why the archives must be read and a full plan made.
pub fn check_recorded(
    repo: &RepoName,
    recorded: &[(String, Option<ImageEntry>)],
    tags: &[TagState],
    force: bool,
) -> Result<String, String> {
    if force {
        return Err("--force given".into());
    }
    if recorded.is_empty() {
        return Err("no meta.json to compare with".into());
    }
    let mut list_digest: Option<&Digest> = None;
    let mut digests = BTreeSet::new();
    for (arch, entry) in recorded {
        let Some(entry) = entry else {
            return Err(format!("meta.json for {arch} has no entry yet"));
        };
        let e = entry.newest();
        if e.image != repo.as_str() {
            return Err(format!(
                "meta.json for {arch} records {} rather than {repo}",
                e.image
            ));
        }
        let Some(d) = &e.digest else {
            return Err(format!("meta.json for {arch} records no digest"));
        };
        if let Some(t) = tags.iter().find(|t| !e.tags.contains(&t.tag)) {
            return Err(format!(
                "meta.json for {arch} does not record tag {}",
                t.tag
            ));
        }
        digests.insert(d);
        match (&e.manifest_list_digest, list_digest) {
            (Some(l), None) => list_digest = Some(l),
            (Some(l), Some(prev)) if l != prev => {
                return Err("meta.json entries name different manifest lists".into());
            }
            _ => {}
        }
    }
    if digests.len() != recorded.len() {
        return Err("meta.json records the same digest for two arches".into());
    }
    for t in tags {
        let Some((digest, remote)) = &t.current else {
            return Err(format!("tag {} does not exist", t.tag));
        };
        if list_digest.is_some_and(|l| l != digest) {
            return Err(format!(
                "tag {} points to {digest}, not the recorded list",
                t.tag
            ));
        }
        let Remote::List { entries, .. } = remote else {
            return Err(format!("tag {} is not a manifest list", t.tag));
        };
        let remote: BTreeSet<&Digest> = entries.iter().map(|e| &e.digest).collect();
        if remote != digests || entries.len() != digests.len() {
            return Err(format!(
                "tag {} lists other digests than meta.json records",
                t.tag
            ));
        }
    }
    Ok(format!(
        "meta.json records every arch and all {} tag(s) serve that list",
        tags.len()
    ))
}

/// The format is part of the desired state: `Err` names a tag serving a list of
/// another media type than `list_media_type`, the one this run publishes (an OCI
/// index after a `--v2s2` push, or the reverse), so the quick check must not call
/// the run up to date.
pub fn check_format(tags: &[TagState], list_media_type: &str) -> Result<(), String> {
    for t in tags {
        if let Some((_, Remote::List { media_type, .. })) = &t.current
            && media_type != list_media_type
        {
            return Err(format!(
                "tag {} serves a {media_type}, this run publishes a {list_media_type}",
                t.tag
            ));
        }
    }
    Ok(())
}

/// The list every tag serves, when it is not pushgate's own serialisation of the
/// desired list but is equivalent to it: the same format, and exactly the desired
/// per-arch manifests under the same platforms (os, architecture, variant), no
/// more, no less. podman (cosa's path) serialises an index differently, so the
/// same images give another list digest; such a list satisfies the desired state,
/// and moving every tag to pushgate's bytes would be needless writes.
///
/// `None` when a tag is missing, the tags disagree, or the list differs in any of
/// those ways.
pub fn equivalent_list(desired: &Desired, tags: &[TagState]) -> Option<Digest> {
    let key = |d: &Descriptor| {
        let p = d.platform.as_ref();
        (
            d.digest.clone(),
            p.map(|p| (p.os.clone(), p.architecture.clone(), p.variant.clone())),
        )
    };
    let mut want: Vec<_> = desired.images.iter().map(|i| key(&i.descriptor)).collect();
    want.sort();
    let (first, rest) = tags.split_first()?;
    let (digest, remote) = first.current.as_ref()?;
    if *digest == desired.list_digest
        || rest
            .iter()
            .any(|t| t.current.as_ref().map(|(d, _)| d) != Some(digest))
    {
        return None;
    }
    let Remote::List {
        media_type,
        entries,
    } = remote
    else {
        return None;
    };
    let mut have: Vec<_> = entries.iter().map(key).collect();
    have.sort();
    (media_type == desired.list_media_type && have == want).then(|| digest.clone())
}

/// Does `entry` (or one of its additional images) already record `want`?
pub fn records(entry: &ImageEntry, want: &ImageEntry) -> bool {
    entry.covers(want) || entry.additional_images.iter().any(|e| e.covers(want))
}

/// The full plan: desired state against the registry and meta.json.
pub fn plan(
    repo: &RepoName,
    tags: &[TagState],
    desired: &Desired,
    recorded: &[(String, Option<ImageEntry>)],
    presence: &Presence,
    force: bool,
) -> Plan {
    let tag_names: Vec<String> = tags.iter().map(|t| t.tag.clone()).collect();
    let stale_tags: Vec<&TagState> = tags
        .iter()
        .filter(|t| t.current.as_ref().map(|(d, _)| d) != Some(&desired.list_digest))
        .collect();
    let record: Vec<String> = recorded
        .iter()
        .filter(|(arch, entry)| {
            force
                || match (entry, desired.entry_for(arch, repo, &tag_names)) {
                    (Some(have), Some(want)) => !records(have, &want),
                    _ => true,
                }
        })
        .map(|(arch, _)| arch.clone())
        .collect();

    if !force && stale_tags.is_empty() {
        let (verdict, reason) = if record.is_empty() {
            (
                Verdict::UpToDate,
                format!("every tag already serves {}", desired.list_digest),
            )
        } else {
            (
                Verdict::RecordOnly,
                format!(
                    "every tag already serves {}; meta.json lacks it for {}",
                    desired.list_digest,
                    record.join(", ")
                ),
            )
        };
        return Plan {
            record,
            ..Plan::nothing(verdict, reason)
        };
    }

    let mut seen = BTreeSet::new();
    let mut blobs: Vec<Descriptor> = desired
        .images
        .iter()
        .flat_map(|i| &i.blobs)
        .filter(|b| !presence.blobs.contains(&b.digest) && seen.insert(b.digest.clone()))
        .cloned()
        .collect();
    // Biggest first: `--jobs` connections then finish together, instead of
    // one carrying a big layer that came last in its manifest alone at the end.
    blobs.sort_by_key(|b| std::cmp::Reverse(b.size));
    let manifests: Vec<String> = desired
        .images
        .iter()
        .filter(|i| force || !presence.manifests.contains(&i.descriptor.digest))
        .map(|i| i.arch.clone())
        .collect();
    let list = force || !presence.manifests.contains(&desired.list_digest);
    let push_tags: Vec<String> = if force {
        tag_names.clone()
    } else {
        stale_tags.iter().map(|t| t.tag.clone()).collect()
    };
    let reason = if force {
        "--force given".to_string()
    } else {
        let describe = |t: &&TagState| match &t.current {
            None => format!("{} is missing", t.tag),
            Some((d, _)) => format!("{} points to {d}", t.tag),
        };
        format!(
            "{} (want {})",
            stale_tags
                .iter()
                .map(describe)
                .collect::<Vec<_>>()
                .join(", "),
            desired.list_digest
        )
    };
    Plan {
        verdict: Verdict::Push,
        reason,
        blobs,
        manifests,
        list,
        tags: push_tags,
        record,
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
