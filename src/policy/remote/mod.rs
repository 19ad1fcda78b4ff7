//! Policies as release artifacts: a module published to a registry as an OCI
//! artifact, fetched by tag or digest, verified, and kept on disk.
//!
//! The artifact is an OCI image manifest (v1.1 style) whose `artifactType` and
//! config media type are [`CONFIG_MEDIA_TYPE`], with one layer, the module
//! ([`MODULE_MEDIA_TYPE`]); the policy's name, version, contract and sha256 are
//! annotations of the manifest. It is built deterministically from the module,
//! so publishing the same module twice yields the same digest.
//!
//! A reference is `oci://REGISTRY/REPO:TAG` or `oci://REGISTRY/REPO@sha256:…`.
//! Everything fetched is checked against its digest (the manifest against the
//! reference's digest, the config and the module against the manifest's) and
//! kept, content-addressed, in `$XDG_CACHE_HOME/pushgate/oci` (beside the compiled
//! modules of [`super::cache`], and under the same rules: a private directory,
//! `PUSHGATE_POLICY_CACHE=off` turns it off). A reference pinned by digest whose
//! content is in the cache is served from it without any network; a tag is always
//! resolved at the registry, so it names the module the tag points to now.
//!
//! The registry is reached through [`crate::registry`], with the same auth
//! file, certificates, `--tls-verify`, `--plain-http` and retries as images.
//!
//! [`fetch`] gets a module and [`publish`] publishes one; signing an artifact
//! and requiring it signed (`--require-signed-policies`) is the business of
//! the crate's `signed_policy`, above this module.

mod fetch;
mod publish;

pub use fetch::fetch;
pub use publish::{Published, publish};

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{CONTRACT, CONTRACTS, PolicyInfo, cache, runs};
use crate::atomic::{self, PRIVATE};
use crate::digest::Digest;
use crate::manifest::{ImageManifest, OCI_MANIFEST};
use crate::registry::{Reference, RepoName};

/// The artifact type of a pushgate policy, and the media type of its config.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.pushgate.policy.config.v1+json";
/// The media type of the artifact's one layer: the module itself.
pub const MODULE_MEDIA_TYPE: &str = "application/vnd.pushgate.policy.module.v1.wasm";
/// Manifest annotations: what `policy inspect` and a registry's UI show.
pub const ANNOTATION_NAME: &str = "io.pushgate.policy.name";
pub const ANNOTATION_VERSION: &str = "io.pushgate.policy.version";
pub const ANNOTATION_CONTRACT: &str = "io.pushgate.policy.contract";
pub const ANNOTATION_SHA256: &str = "io.pushgate.policy.sha256";

/// The largest module fetched (shipped policies are a few hundred KiB).
const MAX_MODULE: usize = 64 << 20;
/// The largest config fetched (a manifest is bounded as every manifest is).
const MAX_SMALL: usize = 256 << 10;

const PREFIX: &str = "oci://";

/// `oci://REGISTRY/REPO[:TAG][@sha256:…]`: a [`Reference`] that names its
/// registry, with the `oci://` scheme before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciRef(Reference);

impl OciRef {
    /// Whether `s` is meant as a reference rather than a file path.
    pub fn is_reference(s: &str) -> bool {
        s.starts_with(PREFIX)
    }

    /// Parses `oci://REGISTRY/REPO[:TAG][@sha256:…]`; without a tag or digest,
    /// the tag is `latest`.
    pub fn parse(s: &str) -> Result<OciRef> {
        let bad = |why: &str| anyhow::anyhow!("policy reference {s}: {why}");
        let rest = s.strip_prefix(PREFIX).ok_or_else(|| {
            bad("expected oci://REGISTRY/REPO:TAG or oci://REGISTRY/REPO@sha256:…")
        })?;
        let mut r = Reference::parse_named(rest, bad)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some("latest".to_string());
        }
        Ok(OciRef(r))
    }

    /// `REGISTRY/REPO`, as `--repo` would spell it.
    pub fn repo(&self) -> &RepoName {
        &self.0.repo
    }

    pub fn tag(&self) -> Option<&str> {
        self.0.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.0.digest.as_ref()
    }

    /// The same artifact, pinned to `digest`: `oci://REGISTRY/REPO@sha256:…`.
    pub fn pinned(&self, digest: &Digest) -> String {
        format!("{PREFIX}{}@{digest}", self.0.repo)
    }

    pub fn is_pinned(&self) -> bool {
        self.0.digest.is_some()
    }
}

impl fmt::Display for OciRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.0)
    }
}

/// Where a policy module comes from: a file, or a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    File(PathBuf),
    Oci(OciRef),
}

impl PolicySource {
    /// `oci://…` is a reference; anything else is a file path.
    pub fn parse(s: &str) -> Result<PolicySource> {
        if OciRef::is_reference(s) {
            Ok(PolicySource::Oci(OciRef::parse(s)?))
        } else {
            Ok(PolicySource::File(PathBuf::from(s)))
        }
    }

    /// A relative file path taken relative to `base`; references are kept.
    pub fn relative_to(self, base: &Path) -> PolicySource {
        match self {
            PolicySource::File(p) => PolicySource::File(base.join(p)),
            oci => oci,
        }
    }

    /// Whether it names exactly one module: a file, or a reference by digest.
    pub fn is_pinned(&self) -> bool {
        match self {
            PolicySource::File(_) => true,
            PolicySource::Oci(r) => r.is_pinned(),
        }
    }
}

impl fmt::Display for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicySource::File(p) => write!(f, "{}", p.display()),
            PolicySource::Oci(r) => write!(f, "{r}"),
        }
    }
}

/// The artifact's config blob: the policy's own account of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ArtifactConfig {
    pub name: String,
    pub version: String,
    pub description: String,
    pub contract: String,
    pub module: ModuleRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleRef {
    pub sha256: Digest,
    pub size: u64,
}

/// A built artifact: the config and manifest for a module, and their digests.
pub struct Artifact {
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    pub digest: Digest,
}

/// The artifact for a loaded module (same module, same bytes, same digest).
pub fn artifact(info: &PolicyInfo) -> Artifact {
    let config = ArtifactConfig {
        name: info.name.clone(),
        version: info.version.clone(),
        description: info.description.clone(),
        contract: info.contract.clone(),
        module: ModuleRef {
            sha256: info.sha256.clone(),
            size: info.size,
        },
    };
    let config = serde_json::to_vec(&config).expect("the config serializes");
    let title = format!("{}.wasm", info.name);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": CONFIG_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": Digest::of(&config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": MODULE_MEDIA_TYPE,
            "digest": info.sha256,
            "size": info.size,
            "annotations": { "org.opencontainers.image.title": title },
        }],
        "annotations": {
            ANNOTATION_NAME: info.name,
            ANNOTATION_VERSION: info.version,
            ANNOTATION_CONTRACT: info.contract,
            ANNOTATION_SHA256: info.sha256,
            "org.opencontainers.image.title": info.name,
            "org.opencontainers.image.version": info.version,
            "org.opencontainers.image.description": info.description,
        },
    });
    let manifest = serde_json::to_vec(&manifest).expect("the manifest serializes");
    Artifact {
        digest: Digest::of(&manifest),
        config,
        manifest,
    }
}

/// What a manifest says about the policy it carries, once checked.
#[derive(Debug, Clone, Serialize)]
pub struct Described {
    pub config: Digest,
    pub module: Digest,
    pub module_size: u64,
    pub annotations: Map<String, Value>,
}

/// Checks that `bytes` is the manifest of a pushgate policy for this host's
/// contract, and says where its config and module are.
pub fn describe(bytes: &[u8]) -> Result<Described> {
    let not_policy = |what: String| {
        anyhow::anyhow!(
            "not a pushgate policy: {what} (a policy artifact has config media type \
             {CONFIG_MEDIA_TYPE}; publish one with `pushgate policy push`)"
        )
    };
    let doc: Value = serde_json::from_slice(bytes)
        .map_err(|e| not_policy(format!("its manifest is not an OCI image manifest ({e})")))?;
    // The media type first, so that an index or a Docker manifest is named as
    // such rather than as a malformed OCI manifest.
    let media_type = doc
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if media_type != OCI_MANIFEST {
        return Err(not_policy(format!("it is a {media_type:?}")));
    }
    let doc = ImageManifest::deserialize(doc)
        .map_err(|e| not_policy(format!("its manifest is not an OCI image manifest ({e})")))?;
    let config = &doc.config;
    if config.media_type != CONFIG_MEDIA_TYPE {
        return Err(not_policy(format!(
            "its config media type is {:?}",
            config.media_type
        )));
    }
    if let Some(t) = doc.artifact_type.as_deref()
        && t != CONFIG_MEDIA_TYPE
    {
        return Err(not_policy(format!("its artifact type is {t:?}")));
    }
    let [layer] = doc.layers.as_slice() else {
        return Err(not_policy(format!(
            "it has {} layers, not the one module",
            doc.layers.len()
        )));
    };
    if layer.media_type != MODULE_MEDIA_TYPE {
        return Err(not_policy(format!(
            "its layer's media type is {:?}",
            layer.media_type
        )));
    }
    let Some(contract) = doc
        .annotations
        .get(ANNOTATION_CONTRACT)
        .and_then(Value::as_str)
    else {
        return Err(not_policy(format!(
            "its manifest does not name the contract it is built for ({ANNOTATION_CONTRACT})"
        )));
    };
    if !runs(contract) {
        bail!(
            "the policy is built for the contract {contract:?}, and this pushgate runs \
             {}: publish a build of the policy against {CONTRACT}",
            CONTRACTS.join(", ")
        );
    }
    let module = layer.digest.clone();
    if let Some(said) = doc
        .annotations
        .get(ANNOTATION_SHA256)
        .and_then(Value::as_str)
        && said != module.as_str()
    {
        // Quoted: what a registry says reaches a terminal inert.
        bail!("its annotation {ANNOTATION_SHA256} is {said:?}, but its module layer is {module}");
    }
    if layer.size > MAX_MODULE as u64 {
        bail!(
            "its module is {} bytes, more than the {MAX_MODULE} a policy may be",
            layer.size
        );
    }
    Ok(Described {
        config: config.digest.clone(),
        module,
        module_size: layer.size,
        annotations: doc.annotations,
    })
}

/// A module fetched from a registry (or the cache), verified.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The reference as given.
    pub requested: OciRef,
    /// The manifest's digest: what the reference resolved to.
    pub digest: Digest,
    /// `oci://REGISTRY/REPO@sha256:…`.
    pub pinned: String,
    pub described: Described,
    pub config: ArtifactConfig,
    pub module: Vec<u8>,
    /// The module's file in the cache, when there is a cache.
    pub path: Option<PathBuf>,
    /// Everything came from the cache: no request was made.
    pub from_cache: bool,
    /// The trusted keys with a valid signature on the artifact, when they were
    /// asked for (`--require-signed-policies`; then never empty); `None`
    /// otherwise.
    pub signed_by: Option<Vec<String>>,
}

impl Fetched {
    /// How errors and reports name the module: the reference as given, with the
    /// digest it resolved to when that was a tag.
    pub fn label(&self) -> String {
        match self.requested.digest() {
            Some(_) => self.requested.to_string(),
            None => format!("{}@{}", self.requested, self.digest),
        }
    }
}

/// The cache directory for artifacts, if there is a cache.
pub fn cache_dir() -> Option<PathBuf> {
    cache::private_dir("oci")
}

/// The cached content of `digest`, if it is there and hashes right (a damaged
/// entry is removed, and fetched again).
pub fn cached(dir: &Path, digest: &Digest) -> Option<Vec<u8>> {
    let path = dir.join(digest.hex());
    let bytes = fs::read(&path).ok()?;
    if &Digest::of(&bytes) == digest {
        Some(bytes)
    } else {
        let _ = fs::remove_file(&path);
        None
    }
}

/// Keeps `bytes` under their digest (atomically, 0600); a cache that cannot be
/// written only costs a fetch next time.
pub fn keep(dir: &Path, bytes: &[u8]) -> Option<PathBuf> {
    let path = dir.join(Digest::of(bytes).hex());
    if path.is_file() {
        return Some(path);
    }
    atomic::write(&path, bytes, PRIVATE).ok()?;
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_with_tags_digests_and_ports() {
        let d = "sha256:".to_string() + &"a".repeat(64);
        let r = OciRef::parse("oci://127.0.0.1:5000/policies/kv:1.0").unwrap();
        assert_eq!(r.repo().as_str(), "127.0.0.1:5000/policies/kv");
        assert_eq!(r.tag(), Some("1.0"));
        assert!(!r.is_pinned());
        let r = OciRef::parse(&format!("oci://quay.io/p/kv@{d}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().as_str(), d);
        assert_eq!(r.to_string(), format!("oci://quay.io/p/kv@{d}"));
        let r = OciRef::parse("oci://localhost:5000/kv").unwrap();
        assert_eq!(r.tag(), Some("latest"));
        assert_eq!(r.to_string(), "oci://localhost:5000/kv:latest");
        let r = OciRef::parse(&format!("oci://r.io/kv:1@{d}")).unwrap();
        assert_eq!(r.pinned(r.digest().unwrap()), format!("oci://r.io/kv@{d}"));
        for bad in [
            "oci://kv:1",
            "oci://r.io/KV:1",
            "oci://r.io/kv@sha256:00",
            "oci://r.io/kv:-x",
            "r.io/kv:1",
        ] {
            let e = OciRef::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }

    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "kv".into(),
            version: "1.0.0".into(),
            description: "d".into(),
            settings_help: String::new(),
            sample_settings: String::new(),
            metadata_problems: Vec::new(),
            sha256: Digest::of(b"module"),
            path: PathBuf::from("kv.wasm"),
            size: 6,
            contract: CONTRACT.into(),
            imports: vec![],
            reference: None,
        }
    }

    #[test]
    fn the_artifact_is_deterministic_and_describes_itself() {
        let (a, b) = (artifact(&info()), artifact(&info()));
        assert_eq!(a.manifest, b.manifest);
        assert_eq!(a.digest, Digest::of(&a.manifest));
        let d = describe(&a.manifest).unwrap();
        assert_eq!(d.module, Digest::of(b"module"));
        assert_eq!(d.config, Digest::of(&a.config));
        assert_eq!(d.annotations[ANNOTATION_NAME], "kv");
    }

    #[test]
    fn other_manifests_and_contracts_are_refused() {
        let mut other = info();
        other.contract = "pushgate:policy/policy@9.0.0".into();
        let e = describe(&artifact(&other).manifest)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("pushgate:policy/policy@9.0.0") && e.contains(CONTRACT),
            "{e}"
        );
        let image = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::of(b""), "size": 0},
            "layers": [],
        });
        let e = describe(image.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a pushgate policy"), "{e}");
        let mut bad_digest: Value = serde_json::from_slice(&artifact(&info()).manifest).unwrap();
        bad_digest["layers"][0]["digest"] = json!("sha256:00");
        let e = describe(bad_digest.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not a pushgate policy") && e.contains("sha256:00"),
            "{e}"
        );
        let index =
            json!({"schemaVersion": 2, "mediaType": crate::manifest::OCI_INDEX, "manifests": []});
        let e = describe(index.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not a pushgate policy") && e.contains(crate::manifest::OCI_INDEX),
            "{e}"
        );
    }
}
