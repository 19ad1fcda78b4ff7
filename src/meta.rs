//! The meta.json image entry (cosa's `primary-image` schema) and the rules for
//! merging a push into a document: when an entry already records a push, and where
//! a new push goes (`additional-images`). Pure: no files are read or written here;
//! [`crate::record`] does that, under cosa's lock.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::map::Entry;
use serde_json::{Map, Value};

use crate::digest::Digest;

/// One meta.json image entry (cosa's `primary-image` schema).
///
/// Unknown fields (such as `comment`) are ignored when reading; the writer keeps
/// them on disk because it edits the JSON document, not this struct.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageEntry {
    /// The repository, e.g. `quay.io/fedora/fedora-coreos`.
    pub image: String,
    /// That arch's own manifest digest (never the list's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// The digest of the manifest list / index holding that manifest.
    #[serde(
        rename = "manifest-list-digest",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub manifest_list_digest: Option<Digest>,
    /// Every tag pushed.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Later pushes under the same key (forced re-pushes, or pushes of other content).
    #[serde(
        rename = "additional-images",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub additional_images: Vec<ImageEntry>,
}

impl ImageEntry {
    /// The newest push under a key: the last `additional-images` entry, or the entry
    /// itself.
    pub fn newest(&self) -> &ImageEntry {
        self.additional_images.last().unwrap_or(self)
    }

    /// Whether `self` already records the push `want`: same image, digest and list
    /// digest, and every tag of `want` among its tags. `additional-images` are not
    /// looked at.
    pub fn covers(&self, want: &ImageEntry) -> bool {
        let tags: BTreeSet<&str> = self.tags.iter().map(String::as_str).collect();
        self.image == want.image
            && self.digest == want.digest
            && self.manifest_list_digest == want.manifest_list_digest
            && want.tags.iter().all(|t| tags.contains(t.as_str()))
    }
}

/// The fields of an on-disk entry that matching looks at. Reading only these means a
/// malformed nested `additional-images` item cannot hide a match of its parent.
#[derive(Deserialize)]
struct EntryHead {
    image: String,
    #[serde(default)]
    digest: Option<Digest>,
    #[serde(rename = "manifest-list-digest", default)]
    manifest_list_digest: Option<Digest>,
    #[serde(default)]
    tags: Vec<String>,
}

/// Whether the on-disk entry `value` already records `entry`. An entry that does not
/// parse (say, a digest algorithm pushgate does not write) records nothing.
fn value_matches(value: &Value, entry: &ImageEntry) -> bool {
    match EntryHead::deserialize(value) {
        Ok(head) => ImageEntry {
            image: head.image,
            digest: head.digest,
            manifest_list_digest: head.manifest_list_digest,
            tags: head.tags,
            additional_images: Vec::new(),
        }
        .covers(entry),
        Err(_) => false,
    }
}

/// What recording a push did to meta.json.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordChange {
    /// The push was already recorded; the file was not rewritten.
    Unchanged,
    /// The key was absent and now holds the entry.
    Set,
    /// The key existed; the entry was appended to its `additional-images`.
    Appended,
}

/// Merges the push `entry` into the parsed meta.json `map` under `key` (see
/// [`crate::record::record_entry`]); errors are about `key`.
pub(crate) fn merge_entry(
    map: &mut Map<String, Value>,
    key: &str,
    entry: &ImageEntry,
    force: bool,
) -> std::result::Result<RecordChange, String> {
    let single = ImageEntry {
        additional_images: Vec::new(),
        ..entry.clone()
    };
    let new = serde_json::to_value(&single).map_err(|e| format!("serializing entry: {e}"))?;
    let existing = match map.get_mut(key) {
        None => {
            map.insert(key.to_string(), new);
            return Ok(RecordChange::Set);
        }
        Some(Value::Object(existing)) => existing,
        Some(other) => {
            return Err(format!(
                "the existing {key:?} is {}, not an object",
                json_type(other)
            ));
        }
    };
    if !force {
        let top = value_matches(&Value::Object(existing.clone()), entry);
        let nested = match existing.get("additional-images") {
            Some(Value::Array(items)) => items.iter().any(|v| value_matches(v, entry)),
            _ => false,
        };
        if top || nested {
            return Ok(RecordChange::Unchanged);
        }
    }
    match existing.entry("additional-images") {
        Entry::Vacant(slot) => {
            slot.insert(Value::Array(vec![new]));
        }
        Entry::Occupied(slot) => match slot.into_mut() {
            Value::Array(items) => items.push(new),
            other => {
                return Err(format!(
                    "its \"additional-images\" is {}, not an array",
                    json_type(other)
                ));
            }
        },
    }
    Ok(RecordChange::Appended)
}

pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_entry_serde_follows_the_schema() {
        let e: ImageEntry = serde_json::from_str(
            r#"{"image": "r", "comment": "x", "additional-images": [{"image": "s", "digest": null}]}"#,
        )
        .unwrap();
        assert_eq!(e.tags, Vec::<String>::new());
        assert_eq!(e.digest, None);
        assert_eq!(e.additional_images[0].image, "s");
        let bare = ImageEntry {
            additional_images: vec![],
            ..e
        };
        assert_eq!(
            serde_json::to_string(&bare).unwrap(),
            r#"{"image":"r","tags":[]}"#
        );
    }
}
