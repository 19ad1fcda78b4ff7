//! The OCI 1.1 shapes signatures and attestations are stored in: descriptors
//! with `annotations` and `artifactType`, image manifests with a `subject`, and
//! the empty config blob.
//!
//! [`crate::manifest`] models what pushgate publishes (images and lists), whose
//! descriptors carry neither field; these are the artifact side of the same
//! format, converting from its [`manifest::Descriptor`]. Documents other tools
//! wrote are rewritten through `Doc`, which keeps every field and entry it
//! does not itself change, so a `.sig` manifest or a referrers index written by
//! cosign or oras loses nothing when pushgate adds to it.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::manifest;

pub use crate::manifest::{Descriptor, EMPTY_BLOB, EMPTY_MEDIA_TYPE};

/// A descriptor as a JSON value (an entry of a list other tools may write).
fn to_value(d: &Descriptor) -> Value {
    serde_json::to_value(d).expect("a descriptor always serializes")
}

/// An image manifest as OCI 1.1 artifacts use it, for the manifests pushgate
/// writes whole (attestations). Field order is the spec's, so the bytes, and
/// the digest, depend on the content alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactManifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ArtifactManifest {
    /// Compact JSON: what is pushed, and what its digest is of.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest always serializes")
    }

    /// Parses an OCI image manifest; `label` names its source in errors.
    pub fn parse(bytes: &[u8], label: &str) -> Result<ArtifactManifest> {
        let m: ArtifactManifest = serde_json::from_slice(bytes)
            .with_context(|| format!("{label}: malformed OCI image manifest"))?;
        if m.schema_version != 2 || m.media_type != manifest::OCI_MANIFEST {
            bail!(
                "{label}: schemaVersion {} mediaType {}, not an OCI image manifest",
                m.schema_version,
                m.media_type
            );
        }
        Ok(m)
    }

    /// The entry a referrers index gives this manifest (OCI distribution 1.1):
    /// its descriptor, with the manifest's `artifactType` (or its config's
    /// media type) and its annotations.
    pub fn referrer_descriptor(&self) -> Descriptor {
        let bytes = self.to_bytes();
        Descriptor {
            artifact_type: Some(
                self.artifact_type
                    .clone()
                    .unwrap_or_else(|| self.config.media_type.clone()),
            ),
            annotations: self.annotations.clone(),
            ..Descriptor::of(manifest::OCI_MANIFEST, &bytes)
        }
    }
}

/// A JSON document other tools may also write (a `.sig` manifest, a referrers
/// index), holding a list of descriptors under `list_key`. Unknown fields, of
/// the document and of every entry, are kept as they were.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Doc {
    fields: Map<String, Value>,
    list_key: &'static str,
}

impl Doc {
    /// A new document: `fields` in order, then an empty list.
    pub(crate) fn new(fields: Vec<(&str, Value)>, list_key: &'static str) -> Doc {
        let mut map: Map<String, Value> = fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        map.insert(list_key.to_string(), Value::Array(Vec::new()));
        Doc {
            fields: map,
            list_key,
        }
    }

    /// Parses `bytes`, which must be a JSON object whose `list_key` is absent
    /// or a list of descriptors; `label` names the source in errors. Entries
    /// pushgate cannot model (a digest other than sha256) are kept, unread.
    pub(crate) fn parse(bytes: &[u8], list_key: &'static str, label: &str) -> Result<Doc> {
        let mut fields: Map<String, Value> = serde_json::from_slice(bytes)
            .with_context(|| format!("{label}: malformed JSON document"))?;
        let list = fields
            .entry(list_key)
            .or_insert_with(|| Value::Array(Vec::new()));
        let Value::Array(entries) = list else {
            bail!("{label}: {list_key} is not a list");
        };
        for (i, e) in entries.iter().enumerate() {
            let is_descriptor = e.get("mediaType").is_some_and(Value::is_string)
                && e.get("digest").is_some_and(Value::is_string)
                && e.get("size").is_some_and(Value::is_u64);
            if !is_descriptor {
                bail!("{label}: {list_key}[{i}] is not a descriptor");
            }
        }
        Ok(Doc { fields, list_key })
    }

    /// A top-level field.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key)
    }

    /// Sets a top-level field (in place if it exists, else last).
    pub(crate) fn set(&mut self, key: &str, value: Value) {
        self.fields.insert(key.to_string(), value);
    }

    fn list(&self) -> &Vec<Value> {
        match &self.fields[self.list_key] {
            Value::Array(a) => a,
            _ => unreachable!("checked when parsed or made"),
        }
    }

    /// The descriptors, in order; `None` for one pushgate cannot model.
    pub(crate) fn entries(&self) -> Vec<Option<Descriptor>> {
        self.list()
            .iter()
            .map(|e| serde_json::from_value(e.clone()).ok())
            .collect()
    }

    /// Every entry's digest as written, in order.
    pub(crate) fn digests(&self) -> Vec<Value> {
        self.list().iter().map(|e| e["digest"].clone()).collect()
    }

    /// Appends `entry` unless `same` holds for an existing one; returns whether
    /// it was added.
    pub(crate) fn add_unless(
        &mut self,
        entry: &Descriptor,
        same: impl Fn(&Descriptor) -> bool,
    ) -> bool {
        if self.entries().iter().flatten().any(same) {
            return false;
        }
        match self.fields.get_mut(self.list_key) {
            Some(Value::Array(a)) => a.push(to_value(entry)),
            _ => unreachable!("checked when parsed or made"),
        }
        true
    }

    /// The entries of `other` that no entry here is `same` as, as `other`
    /// wrote them (fields pushgate does not model, and entries it cannot
    /// read, included).
    pub(crate) fn lacking(&self, other: &Doc, same: impl Fn(&Value, &Value) -> bool) -> Vec<Value> {
        other
            .list()
            .iter()
            .filter(|theirs| !self.list().iter().any(|mine| same(mine, theirs)))
            .cloned()
            .collect()
    }

    /// Appends `entries` as they are (see [`lacking`](Self::lacking)).
    pub(crate) fn append(&mut self, entries: Vec<Value>) {
        match self.fields.get_mut(self.list_key) {
            Some(Value::Array(a)) => a.extend(entries),
            _ => unreachable!("checked when parsed or made"),
        }
    }

    /// Compact JSON, fields in the order read (or made).
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.fields).expect("a JSON map always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_descriptor_is_ocis() {
        let d = Descriptor::empty();
        assert_eq!(
            d.digest.as_str(),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(d.size, 2);
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            format!(
                r#"{{"mediaType":"{EMPTY_MEDIA_TYPE}","digest":"{}","size":2}}"#,
                d.digest
            )
        );
    }

    #[test]
    fn docs_keep_what_they_do_not_model() {
        let raw = br#"{"schemaVersion":2,"x-tool":{"k":[1,2]},"manifests":[
            {"mediaType":"m","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"platform":{"os":"linux"},"data":"e30="}]}"#;
        let mut doc = Doc::parse(raw, "manifests", "t").unwrap();
        let new = Descriptor::of("n", b"x");
        assert!(doc.add_unless(&new, |e| e.digest == new.digest));
        assert!(!doc.add_unless(&new, |e| e.digest == new.digest));
        let out: Value = serde_json::from_slice(&doc.to_bytes()).unwrap();
        assert_eq!(out["x-tool"]["k"][1], 2);
        assert_eq!(out["manifests"][0]["platform"]["os"], "linux");
        assert_eq!(out["manifests"][0]["data"], "e30=");
        assert_eq!(out["manifests"][1]["digest"], new.digest.as_str());
        assert_eq!(doc.entries().len(), 2);
    }

    #[test]
    fn entries_of_other_digest_algorithms_are_kept_unread() {
        let sha512 = format!("sha512:{}", "ab".repeat(64));
        let raw = serde_json::to_vec(&serde_json::json!({"layers": [
            {"mediaType": "m", "digest": sha512, "size": 1}]}))
        .unwrap();
        let mut doc = Doc::parse(&raw, "layers", "t").unwrap();
        assert_eq!(doc.entries(), vec![None]);
        assert!(doc.add_unless(&Descriptor::of("n", b"x"), |_| true));
        assert_eq!(doc.digests()[0], sha512.as_str());
        assert_eq!(doc.entries().len(), 2);
    }

    #[test]
    fn docs_with_bad_entries_are_refused_with_their_source() {
        let err = Doc::parse(
            br#"{"manifests":[{"digest":"x"}]}"#,
            "manifests",
            "repo:tag",
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("repo:tag: manifests[0]"),
            "{err:#}"
        );
        assert!(Doc::parse(br#"{"manifests":{}}"#, "manifests", "t").is_err());
        assert!(Doc::parse(b"[]", "manifests", "t").is_err());
    }
}
