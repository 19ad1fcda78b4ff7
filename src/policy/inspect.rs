//! `policy inspect`: what a module file holds, even when it does not load.

use std::path::{Path, PathBuf};

use wasmtime::component::Component;

use super::convert::inert;
use super::{NOT_WASM, PolicyError, PolicyHost, PolicyInfo, remote};
use crate::digest::Digest;

/// What a file holds, as far as it can be read: for `policy inspect`, which must
/// say something useful even about a module that does not load.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Inspection {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: Digest,
    pub exports: Vec<String>,
    pub imports: Vec<String>,
    /// The contract versions this pushgate runs, newest first.
    pub host_contracts: Vec<String>,
    /// The loaded module's description, or why it does not load.
    #[serde(with = "result_as_object")]
    pub loaded: Result<PolicyInfo, String>,
    /// For a module fetched from a registry: the artifact it came in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact: Option<ArtifactSummary>,
}

/// The artifact a fetched module came in, as `policy inspect` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ArtifactSummary {
    /// The reference as given.
    pub reference: String,
    /// `oci://REGISTRY/REPO@sha256:…`.
    pub pinned: String,
    pub digest: Digest,
    pub annotations: serde_json::Map<String, serde_json::Value>,
    /// Served from the cache, without a request.
    pub from_cache: bool,
}

mod result_as_object {
    use serde::Serializer;

    pub fn serialize<S: Serializer>(
        r: &Result<super::PolicyInfo, String>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        match r {
            Ok(info) => m.serialize_entry("ok", info)?,
            Err(e) => m.serialize_entry("error", e)?,
        }
        m.end()
    }
}

/// The most characters kept of an annotation's key, and of its value.
const MAX_ANNOTATION_KEY_CHARS: usize = 128;
const MAX_ANNOTATION_VALUE_CHARS: usize = 4096;

/// A manifest's annotations as `policy inspect` shows them: what a registry
/// says is held to the rule for what a module says ([`inert`]), keys and string
/// values alike (other values are shown as JSON, which escapes what it holds).
fn inert_annotations(
    annotations: &serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    annotations
        .iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => {
                    serde_json::Value::String(inert(s, MAX_ANNOTATION_VALUE_CHARS))
                }
                other => other.clone(),
            };
            (inert(k, MAX_ANNOTATION_KEY_CHARS), v)
        })
        .collect()
}

impl PolicyHost {
    /// Describes a module file: its imports and exports, and whether it loads.
    pub fn inspect(&self, path: &Path) -> Result<Inspection, PolicyError> {
        let label = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| PolicyError::Unreadable {
            module: label.clone(),
            reason: e.to_string(),
        })?;
        self.describe(&bytes, path, label, || self.load(path), None)
    }

    /// Describes a module fetched from a registry, and the artifact it came in.
    pub fn inspect_fetched(&self, f: &remote::Fetched) -> Result<Inspection, PolicyError> {
        let path = f.path.clone().unwrap_or_else(|| f.pinned.clone().into());
        let artifact = ArtifactSummary {
            reference: f.requested.to_string(),
            pinned: f.pinned.clone(),
            digest: f.digest.clone(),
            annotations: inert_annotations(&f.described.annotations),
            from_cache: f.from_cache,
        };
        self.describe(
            &f.module,
            &path,
            f.label(),
            || self.load_fetched(f),
            Some(artifact),
        )
    }

    fn describe(
        &self,
        bytes: &[u8],
        path: &Path,
        label: String,
        load: impl FnOnce() -> Result<std::sync::Arc<super::Policy>, PolicyError>,
        artifact: Option<ArtifactSummary>,
    ) -> Result<Inspection, PolicyError> {
        if !bytes.starts_with(b"\0asm") {
            return Err(PolicyError::Invalid {
                module: label,
                reason: NOT_WASM.into(),
            });
        }
        let loaded = load();
        // A module that loads was compiled already; one that does not is compiled
        // here only to list what it exports and imports.
        let component = match &loaded {
            Ok(p) => p.component.clone(),
            Err(_) => Component::new(&self.engine, bytes).map_err(|e| PolicyError::Invalid {
                module: label,
                reason: format!("{e:#} (a policy must be a component built for wasm32-wasip2)"),
            })?,
        };
        let ty = component.component_type();
        Ok(Inspection {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            sha256: Digest::of(bytes),
            exports: ty
                .exports(&self.engine)
                .map(|(n, _)| n.to_string())
                .collect(),
            imports: ty
                .imports(&self.engine)
                .map(|(n, _)| n.to_string())
                .collect(),
            host_contracts: super::CONTRACTS.map(str::to_string).to_vec(),
            loaded: loaded.map(|p| p.info.clone()).map_err(|e| e.to_string()),
            artifact,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_from_a_registry_are_shown_inert_and_bounded() {
        let mut a = serde_json::Map::new();
        a.insert(
            "org.example.\x1b[31mkey\n".into(),
            serde_json::Value::String(format!("v\x1b]0;T\x07\npushgate: x{}", "y".repeat(10_000))),
        );
        a.insert("n".into(), serde_json::json!(3));
        let shown = inert_annotations(&a);
        let v = shown["org.example.[31mkey "].as_str().unwrap();
        assert!(v.starts_with("v]0;T pushgate: xyyy"), "{v}");
        assert_eq!(v.chars().count(), MAX_ANNOTATION_VALUE_CHARS + 1);
        assert_eq!(shown["n"], 3);
    }
}
