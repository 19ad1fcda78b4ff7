//! Where cosign and containers/image keep simple-signing signatures: the tag
//! `sha256-<hex>.sig` beside the signed manifest, holding an image manifest
//! with one layer per signature.
//!
//! Each layer is `application/vnd.dev.cosign.simplesigning.v1+json`, its blob
//! the payload, its annotation `dev.cosignproject.cosign/signature` the base64
//! signature. Adding a signature rewrites the manifest with every earlier layer
//! kept as it was (other signers' layers, with their Rekor bundles or
//! certificates, included).
//!
//! The config is an image config whose `rootfs.diff_ids` lists the layers'
//! digests, one per layer, as both cosign (go-containerregistry) and
//! containers/image write it; registries that check a manifest against its
//! config (quay.io) accept nothing less. pushgate rebuilds it from the layers
//! on every change rather than editing the old one, so the same layers always
//! give the same config, and no config blob needs reading first.
//!
//! What to sign: containers/image (podman, CRI-O, rpm-ostree) checks the
//! signature of the per-architecture manifest it pulls out of a list, not the
//! list's (containers/image#1953; skopeo 1.9 here, with only the list signed,
//! refused the copy for want of `sha256-<instance>.sig`), while
//! cosign verifies the digest it is given. So each tag's reference is signed
//! for the list digest and for every per-arch digest, as the pipeline's GPG
//! signing does today. docker-registry 2.8 accepts these manifests as written
//! here (checked by hand; Debian's skopeo then stops at "sigstore disabled").

use anyhow::{Result, bail};
use serde_json::{Value, json};

use super::key::PublicKey;
use super::oci::{Descriptor, Doc};
use super::simple::{self, Identity, Rejected, Signed, Verified};
use crate::digest::Digest;
use crate::manifest::{DOCKER_CONFIG, DOCKER_MANIFEST, OCI_CONFIG, OCI_MANIFEST};

/// The media type of a signature layer.
pub const SIMPLESIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// The tag holding the signatures of the manifest `digest`.
pub fn sig_tag(digest: &Digest) -> String {
    format!("sha256-{}.sig", digest.hex())
}

/// The layer descriptor of one signature.
pub fn layer(signed: &Signed) -> Descriptor {
    Descriptor::of(SIMPLESIGNING_MEDIA_TYPE, &signed.payload)
        .with_annotations([(SIGNATURE_ANNOTATION.to_string(), signed.signature.clone())].into())
}

/// A `.sig` manifest, read from a registry or new.
#[derive(Debug, Clone, PartialEq)]
pub struct SigManifest {
    doc: Doc,
}

impl Default for SigManifest {
    fn default() -> SigManifest {
        SigManifest::new()
    }
}

/// Why a layer does not count as a valid signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayerError {
    #[error("layer of media type {0}, not a simple-signing signature")]
    NotSimpleSigning(String),
    #[error("layer of a digest algorithm other than sha256")]
    Unreadable,
    #[error("layer without the {SIGNATURE_ANNOTATION} annotation")]
    NoSignature,
    #[error("the payload blob {0} was not given")]
    MissingBlob(Digest),
    #[error("the payload blob does not have the layer's digest {0}")]
    BlobMismatch(Digest),
    #[error(transparent)]
    Rejected(#[from] Rejected),
}

impl SigManifest {
    /// A manifest with no signatures yet.
    pub fn new() -> SigManifest {
        SigManifest {
            doc: Doc::new(
                vec![
                    ("schemaVersion", json!(2)),
                    ("mediaType", json!(OCI_MANIFEST)),
                    // Filled in from the layers when serialized.
                    ("config", Value::Null),
                ],
                "layers",
            ),
        }
    }

    /// Parses what the `.sig` tag holds; `label` (the tag) names it in errors.
    pub fn parse(bytes: &[u8], label: &str) -> Result<SigManifest> {
        let doc = Doc::parse(bytes, "layers", label)?;
        if doc.get("schemaVersion") != Some(&json!(2)) {
            bail!("{label}: not a schemaVersion 2 image manifest");
        }
        match doc.get("mediaType").and_then(Value::as_str) {
            None | Some(OCI_MANIFEST | DOCKER_MANIFEST) => {}
            Some(other) => bail!("{label}: a {other}, not an image manifest of signatures"),
        }
        Ok(SigManifest { doc })
    }

    /// The layers, in order (those of a digest other than sha256, which
    /// pushgate cannot read, are kept in the manifest but not listed).
    pub fn layers(&self) -> Vec<Descriptor> {
        self.doc.entries().into_iter().flatten().collect()
    }

    /// Adds `signatures` after every existing layer; one whose payload and
    /// signature a layer already has is not added again. Returns the added
    /// ones, whose payloads must be uploaded (with the [`config`](Self::config)
    /// blob) before the manifest is.
    pub fn add<'a>(&mut self, signatures: &'a [Signed]) -> Vec<&'a Signed> {
        let mut added = Vec::new();
        for s in signatures {
            let new = layer(s);
            let was_added = self.doc.add_unless(&new, |l| {
                l.digest == new.digest
                    && l.annotations.get(SIGNATURE_ANNOTATION) == Some(&s.signature)
            });
            if was_added {
                added.push(s);
            }
        }
        added
    }

    /// How many layers of `self` (what a writer meant the tag to hold) `now`
    /// (what it holds) lacks. Layers are told apart as [`add`](Self::add)
    /// does: by payload digest and signature, whatever else a tool annotated.
    pub fn lacking_in(&self, now: &SigManifest) -> usize {
        now.doc.lacking(&self.doc, same_layer).len()
    }

    /// `now` with every layer of `self` it lacks added after its own, each as
    /// `self` had it: what a writer whose manifest `self` was replaced by
    /// another writer's `now` (both having read the tag before either wrote)
    /// writes so that neither's signatures are lost. Whoever merges last
    /// writes the union; merging again changes nothing.
    pub fn merged_into(&self, now: &SigManifest) -> SigManifest {
        let mut merged = now.clone();
        merged.doc.append(now.doc.lacking(&self.doc, same_layer));
        merged
    }

    /// The config blob for the current layers.
    pub fn config(&self) -> Vec<u8> {
        let diff_ids = self.doc.digests();
        let config = json!({
            "architecture": "",
            "os": "",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        serde_json::to_vec(&config).expect("a config always serializes")
    }

    /// The manifest's own media type, which its PUT must name: a Docker
    /// schema 2 one (cosign with COSIGN_DOCKER_MEDIA_TYPES=1) stays one when
    /// layers are added to it, as a registry refuses a body whose type is not
    /// the one the request names.
    pub fn media_type(&self) -> &'static str {
        match self.doc.get("mediaType").and_then(Value::as_str) {
            Some(DOCKER_MANIFEST) => DOCKER_MANIFEST,
            _ => OCI_MANIFEST,
        }
    }

    fn config_media_type(&self) -> &'static str {
        // A Docker schema 2 manifest (cosign with COSIGN_DOCKER_MEDIA_TYPES=1)
        // keeps its Docker config type.
        match self.doc.get("mediaType").and_then(Value::as_str) {
            Some(DOCKER_MANIFEST) => DOCKER_CONFIG,
            _ => OCI_CONFIG,
        }
    }

    /// The manifest bytes (compact JSON), its config descriptor pointing at
    /// [`config`](Self::config).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut doc = self.doc.clone();
        let config = Descriptor::of(self.config_media_type(), &self.config());
        doc.set(
            "config",
            serde_json::to_value(config).expect("a descriptor serializes"),
        );
        doc.to_bytes()
    }

    /// Checks every layer (index as in the manifest): is it `key`'s signature over a payload for exactly
    /// `reference` and `digest`? `blob` gives a layer's payload by digest (the
    /// caller fetched them). Returns each layer's index and verdict.
    pub fn check(
        &self,
        blob: impl Fn(&Digest) -> Option<Vec<u8>>,
        key: &PublicKey,
        reference: &str,
        digest: &Digest,
    ) -> Vec<(usize, Result<Verified, LayerError>)> {
        self.check_identity(blob, key, &Identity::Exact(reference), digest)
    }

    /// [`check`](Self::check), for the references `identity` accepts.
    pub fn check_identity(
        &self,
        blob: impl Fn(&Digest) -> Option<Vec<u8>>,
        key: &PublicKey,
        identity: &Identity<'_>,
        digest: &Digest,
    ) -> Vec<(usize, Result<Verified, LayerError>)> {
        self.doc
            .entries()
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let result = match l {
                    Some(l) => check_layer(l, &blob, key, identity, digest),
                    None => Err(LayerError::Unreadable),
                };
                (i, result)
            })
            .collect()
    }

    /// The indexes of the layers holding a valid signature by `key` for
    /// `reference` and `digest` (see [`check`](Self::check)).
    pub fn valid_layers(
        &self,
        blob: impl Fn(&Digest) -> Option<Vec<u8>>,
        key: &PublicKey,
        reference: &str,
        digest: &Digest,
    ) -> Vec<usize> {
        self.check(blob, key, reference, digest)
            .into_iter()
            .filter_map(|(i, r)| r.ok().map(|_| i))
            .collect()
    }
}

/// Whether two layers, as written, are one signature: the same digest and
/// the same signature annotation (or both without one). Compared as JSON, so
/// a layer pushgate cannot model (a digest other than sha256) still matches
/// its own copy.
fn same_layer(a: &Value, b: &Value) -> bool {
    let signature = |l: &Value| {
        l.get("annotations")
            .and_then(|a| a.get(SIGNATURE_ANNOTATION))
            .cloned()
    };
    a.get("digest") == b.get("digest") && signature(a) == signature(b)
}

fn check_layer(
    layer: &Descriptor,
    blob: &impl Fn(&Digest) -> Option<Vec<u8>>,
    key: &PublicKey,
    identity: &Identity<'_>,
    digest: &Digest,
) -> Result<Verified, LayerError> {
    if layer.media_type != SIMPLESIGNING_MEDIA_TYPE {
        return Err(LayerError::NotSimpleSigning(layer.media_type.clone()));
    }
    let signature = layer
        .annotations
        .get(SIGNATURE_ANNOTATION)
        .ok_or(LayerError::NoSignature)?;
    let payload =
        blob(&layer.digest).ok_or_else(|| LayerError::MissingBlob(layer.digest.clone()))?;
    if Digest::of(&payload) != layer.digest {
        return Err(LayerError::BlobMismatch(layer.digest.clone()));
    }
    Ok(simple::verify_identity(
        key, &payload, signature, identity, digest,
    )?)
}

#[cfg(test)]
#[path = "cosign_tests.rs"]
mod tests;
