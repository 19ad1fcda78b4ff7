//! The referrers index (OCI distribution 1.1): the OCI index of descriptors,
//! each with its `artifactType` and annotations, of the manifests whose
//! `subject` is a given manifest.
//!
//! A registry with the referrers API (`GET /v2/<name>/referrers/<digest>`)
//! builds it itself. One without it (404 there: distribution 2.8, Docker Hub)
//! gets the referrers tag schema instead: the client keeps the index under the
//! tag `sha256-<hex>` of the subject, by read-modify-write, keeping every entry
//! other clients put there.

use anyhow::{Result, bail};
use serde_json::{Value, json};

use super::oci::{Descriptor, Doc};
use crate::digest::Digest;
use crate::manifest::OCI_INDEX;

/// The tag that stands in for the referrers API: the subject's digest with `-`.
pub fn referrers_tag(subject: &Digest) -> String {
    format!("sha256-{}", subject.hex())
}

/// A referrers index.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferrersIndex {
    doc: Doc,
}

impl Default for ReferrersIndex {
    fn default() -> ReferrersIndex {
        ReferrersIndex::new()
    }
}

impl ReferrersIndex {
    /// An index with no referrers (what a tag that does not exist yet means).
    pub fn new() -> ReferrersIndex {
        ReferrersIndex {
            doc: Doc::new(
                vec![("schemaVersion", json!(2)), ("mediaType", json!(OCI_INDEX))],
                "manifests",
            ),
        }
    }

    /// Parses the referrers API's answer or the referrers tag's index; `label`
    /// names its source in errors.
    pub fn parse(bytes: &[u8], label: &str) -> Result<ReferrersIndex> {
        let doc = Doc::parse(bytes, "manifests", label)?;
        match doc.get("mediaType").and_then(Value::as_str) {
            None | Some(OCI_INDEX) => {}
            Some(other) => bail!("{label}: a {other}, not an OCI index of referrers"),
        }
        Ok(ReferrersIndex { doc })
    }

    /// The referrers, in order (entries of a digest other than sha256 are
    /// kept in the index but not listed).
    pub fn manifests(&self) -> Vec<Descriptor> {
        self.doc.entries().into_iter().flatten().collect()
    }

    /// The referrers of `artifact_type` (what `?artifactType=` asks a registry
    /// for; clients filter themselves when the registry did not).
    pub fn of_type(&self, artifact_type: &str) -> Vec<Descriptor> {
        self.manifests()
            .into_iter()
            .filter(|d| d.artifact_type.as_deref() == Some(artifact_type))
            .collect()
    }

    /// Adds `referrer` after every existing entry, unless a manifest of that
    /// digest is listed already; returns whether it was added (whether the tag
    /// needs writing).
    pub fn add(&mut self, referrer: &Descriptor) -> bool {
        self.doc
            .add_unless(referrer, |d| d.digest == referrer.digest)
    }

    /// The index (compact JSON), to push under [`referrers_tag`].
    pub fn to_bytes(&self) -> Vec<u8> {
        self.doc.to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::OCI_MANIFEST;
    use crate::sign::oci::ArtifactManifest;

    fn referrer(n: u8, artifact_type: &str) -> Descriptor {
        ArtifactManifest {
            schema_version: 2,
            media_type: OCI_MANIFEST.into(),
            artifact_type: Some(artifact_type.into()),
            config: Descriptor::empty(),
            layers: vec![Descriptor::of("application/octet-stream", &[n])],
            subject: Some(Descriptor::of(OCI_INDEX, b"list")),
            annotations: [("k".to_string(), format!("v{n}"))].into(),
        }
        .referrer_descriptor()
    }

    #[test]
    fn the_tag_is_the_subject_digest_with_a_dash() {
        let d = Digest::of(b"list");
        assert_eq!(referrers_tag(&d), format!("sha256-{}", d.hex()));
    }

    #[test]
    fn a_referrer_is_listed_with_its_type_and_annotations() {
        let r = referrer(1, "application/vnd.in-toto+json");
        assert_eq!(r.media_type, OCI_MANIFEST);
        assert_eq!(
            r.artifact_type.as_deref(),
            Some("application/vnd.in-toto+json")
        );
        assert_eq!(r.annotations["k"], "v1");
        let mut idx = ReferrersIndex::new();
        assert!(idx.add(&r));
        let v: Value = serde_json::from_slice(&idx.to_bytes()).unwrap();
        assert_eq!(v["schemaVersion"], 2);
        assert_eq!(v["mediaType"], OCI_INDEX);
        assert_eq!(
            v["manifests"][0]["artifactType"],
            "application/vnd.in-toto+json"
        );
        assert_eq!(ReferrersIndex::parse(&idx.to_bytes(), "t").unwrap(), idx);
    }

    #[test]
    fn adding_keeps_every_other_entry_and_adds_once() {
        // As another client (oras, cosign) left the tag: fields pushgate does
        // not model included.
        let theirs = json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "size": 7,
                           "digest": Digest::of(b"sbom").to_string(),
                           "artifactType": "application/spdx+json",
                           "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
                           "data": "e30="}],
            "annotations": {"tool": "oras"}
        });
        let mut idx = ReferrersIndex::parse(&serde_json::to_vec(&theirs).unwrap(), "t").unwrap();
        let ours = referrer(2, "application/vnd.in-toto+json");
        assert!(idx.add(&ours));
        let before = idx.to_bytes();
        assert!(!idx.add(&ours));
        assert_eq!(idx.to_bytes(), before);
        let v: Value = serde_json::from_slice(&before).unwrap();
        assert_eq!(v["manifests"][0], theirs["manifests"][0]);
        assert_eq!(v["annotations"], theirs["annotations"]);
        assert_eq!(idx.manifests().len(), 2);
        assert_eq!(idx.of_type("application/vnd.in-toto+json"), vec![ours]);
        assert_eq!(idx.of_type("application/spdx+json").len(), 1);
    }

    #[test]
    fn what_is_not_an_index_is_refused() {
        let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "manifests": []});
        let err = ReferrersIndex::parse(&serde_json::to_vec(&m).unwrap(), "repo:sha256-ab")
            .unwrap_err()
            .to_string();
        assert!(err.contains("repo:sha256-ab"), "{err}");
        // An empty API answer may omit mediaType.
        assert!(ReferrersIndex::parse(br#"{"schemaVersion":2,"manifests":[]}"#, "t").is_ok());
    }
}
