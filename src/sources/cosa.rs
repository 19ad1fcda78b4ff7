//! The cosa workdir, read side: `builds/builds.json` and the per-arch `meta.json`.
//!
//! Everything here only reads. Writing meta.json belongs to [`crate::record`],
//! which re-reads the file under cosa's lock before merging.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::digest::Digest;
use crate::meta::ImageEntry;

/// `builds/builds.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Builds {
    #[serde(rename = "schema-version")]
    pub schema_version: String,
    pub builds: Vec<BuildEntry>,
}

/// One build of `builds.json`, newest first.
#[derive(Debug, Clone, Deserialize)]
pub struct BuildEntry {
    pub id: String,
    pub arches: Vec<String>,
}

/// A cosa workdir, rooted at the directory that holds `builds/`.
#[derive(Debug, Clone)]
pub struct Workdir {
    root: PathBuf,
}

impl Workdir {
    pub fn new(root: impl Into<PathBuf>) -> Workdir {
        Workdir { root: root.into() }
    }

    pub fn builds_json(&self) -> PathBuf {
        self.root.join("builds").join("builds.json")
    }

    pub fn arch_dir(&self, build: &str, arch: &str) -> PathBuf {
        self.root.join("builds").join(build).join(arch)
    }

    /// Reads and validates `builds.json`.
    pub fn read_builds(&self) -> Result<Builds> {
        let path = self.builds_json();
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "cannot read {}: is --workdir ({}) a cosa workdir?",
                path.display(),
                self.root.display()
            )
        })?;
        let builds: Builds = serde_json::from_slice(&bytes)
            .with_context(|| format!("malformed builds.json at {}", path.display()))?;
        let major = builds.schema_version.split('.').next().unwrap_or("");
        if major != "1" {
            bail!(
                "{}: unsupported schema-version {:?} (only 1.x is understood)",
                path.display(),
                builds.schema_version
            );
        }
        for b in &builds.builds {
            if b.id.is_empty() || b.id.contains('/') || b.id.starts_with('.') {
                bail!("{}: invalid build id {:?}", path.display(), b.id);
            }
        }
        Ok(builds)
    }

    /// Resolves `--build` (an id or `latest`) to a build of builds.json.
    pub fn resolve_build(&self, requested: &str) -> Result<BuildEntry> {
        let builds = self.read_builds()?;
        let found = if requested == "latest" {
            builds.builds.first()
        } else {
            builds.builds.iter().find(|b| b.id == requested)
        };
        match found {
            Some(b) => Ok(b.clone()),
            None if requested == "latest" => {
                bail!(
                    "--build latest: {} lists no builds",
                    self.builds_json().display()
                )
            }
            None => bail!(
                "--build {requested}: no such build in {}",
                self.builds_json().display()
            ),
        }
    }
}

/// The meta.json key whose `true` means cosa's delayed merge: writers put their
/// changes in `meta.KEY.json` beside meta.json, and `cosa meta --finalize`
/// merges them later.
pub const DELAYED_MERGE: &str = "coreos-assembler.delayed-meta-merge";

/// The meta.json key every cosa write sets to the time in ns: cosa's merge
/// compares it to tell whether the file changed since it was loaded.
pub const META_STAMP: &str = "coreos-assembler.meta-stamp";

/// Where a delayed-merge write of `key` goes: `meta.KEY.json` beside meta.json.
pub fn pending_path(meta_path: &Path, key: &str) -> PathBuf {
    meta_path.with_file_name(format!("meta.{key}.json"))
}

/// One arch's `meta.json`, parsed but kept as a JSON object so nothing is lost.
#[derive(Debug, Clone)]
pub struct ArchMeta {
    pub arch: String,
    pub path: PathBuf,
    pub json: Map<String, Value>,
}

/// An artifact that meta.json's `images` map describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub path: PathBuf,
    pub sha256: Digest,
    pub size: Option<u64>,
}

impl ArchMeta {
    pub fn read(arch: &str, path: &Path) -> Result<ArchMeta> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read meta.json for {arch} at {}", path.display()))?;
        let value: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("malformed meta.json at {}", path.display()))?;
        let Value::Object(json) = value else {
            bail!(
                "malformed meta.json at {}: not a JSON object",
                path.display()
            );
        };
        Ok(ArchMeta {
            arch: arch.to_string(),
            path: path.to_path_buf(),
            json,
        })
    }

    /// The artifact `name` of `images`, if this arch has it.
    pub fn artifact(&self, name: &str) -> Result<Option<Artifact>> {
        let Some(images) = self.json.get("images") else {
            return Ok(None);
        };
        let Some(entry) = images.get(name) else {
            return Ok(None);
        };
        let bad = |what: &str| {
            anyhow::anyhow!(
                "malformed meta.json at {}: images.{name}.{what}",
                self.path.display()
            )
        };
        let file = entry
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("path missing"))?;
        if file.is_empty() || file.contains('/') || file == ".." {
            return Err(bad("path must be a file name in the arch directory"));
        }
        let sha = entry
            .get("sha256")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("sha256 missing"))?;
        let sha256 = Digest::from_hex(sha).map_err(|_| bad("sha256 is not 64 hex digits"))?;
        let size = match entry.get("size") {
            None => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| bad("size is not a byte count"))?),
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        Ok(Some(Artifact {
            path: dir.join(file),
            sha256,
            size,
        }))
    }

    /// The image entry recorded under `key`, if any. In delayed-merge mode a
    /// pending `meta.KEY.json` that holds the key is newer than meta.json, so its
    /// entry is the one recorded.
    pub fn entry(&self, key: &str) -> Result<Option<ImageEntry>> {
        if self.json.get(DELAYED_MERGE) == Some(&Value::Bool(true)) {
            let pending = pending_path(&self.path, key);
            if pending.exists() {
                let p = ArchMeta::read(&self.arch, &pending)?;
                if p.json.contains_key(key) {
                    return p.entry_here(key);
                }
            }
        }
        self.entry_here(key)
    }

    /// The image entry under `key` in this very file.
    fn entry_here(&self, key: &str) -> Result<Option<ImageEntry>> {
        match self.json.get(key) {
            None => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .with_context(|| {
                    format!(
                        "malformed meta.json at {}: key {key:?}",
                        self.path.display()
                    )
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workdir_with(builds_json: &str) -> (tempfile::TempDir, Workdir) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("builds")).unwrap();
        std::fs::write(dir.path().join("builds/builds.json"), builds_json).unwrap();
        let w = Workdir::new(dir.path());
        (dir, w)
    }

    #[test]
    fn latest_is_the_first_build() {
        let (_d, w) = workdir_with(
            r#"{"schema-version":"1.0.0","builds":[{"id":"b2","arches":["x86_64"]},{"id":"b1","arches":["x86_64","s390x"]}]}"#,
        );
        assert_eq!(w.resolve_build("latest").unwrap().id, "b2");
        assert_eq!(w.resolve_build("b1").unwrap().arches, ["x86_64", "s390x"]);
        let err = format!("{:#}", w.resolve_build("b9").unwrap_err());
        assert!(
            err.contains("--build b9") && err.contains("builds.json"),
            "{err}"
        );
    }

    #[test]
    fn other_schema_majors_and_garbage_are_refused() {
        let (_d, w) = workdir_with(r#"{"schema-version":"2.0.0","builds":[]}"#);
        assert!(format!("{:#}", w.read_builds().unwrap_err()).contains("schema-version"));
        let (_d, w) = workdir_with("{not json");
        assert!(format!("{:#}", w.read_builds().unwrap_err()).contains("malformed builds.json"));
        let (_d, w) = workdir_with(r#"{"schema-version":"1.0.0","builds":[]}"#);
        assert!(format!("{:#}", w.resolve_build("latest").unwrap_err()).contains("no builds"));
        let (_d, w) =
            workdir_with(r#"{"schema-version":"1.0.0","builds":[{"id":"../x","arches":[]}]}"#);
        assert!(w.read_builds().is_err());
    }

    #[test]
    fn missing_workdir_names_the_flag() {
        let w = Workdir::new("/nonexistent/pushgate");
        let err = format!("{:#}", w.read_builds().unwrap_err());
        assert!(err.contains("--workdir"), "{err}");
    }

    #[test]
    fn artifact_paths_are_confined_to_the_arch_dir() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("meta.json");
        let hex = "ab".repeat(32);
        std::fs::write(
            &p,
            format!(r#"{{"images":{{"ok":{{"path":"a.ociarchive","sha256":"{hex}","size":3}},"evil":{{"path":"../x","sha256":"{hex}"}},"bad":{{"path":"b","sha256":"zz"}}}}}}"#),
        )
        .unwrap();
        let m = ArchMeta::read("x86_64", &p).unwrap();
        let a = m.artifact("ok").unwrap().unwrap();
        assert_eq!(a.path, dir.path().join("a.ociarchive"));
        assert_eq!(a.size, Some(3));
        assert!(m.artifact("evil").is_err());
        assert!(m.artifact("bad").is_err());
        assert_eq!(m.artifact("absent").unwrap(), None);
    }
}
