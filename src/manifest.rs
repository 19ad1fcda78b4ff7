//! Manifests and manifest lists: parsing what archives hold, converting to Docker
//! schema 2 for `--v2s2`, and building the list to publish.
//!
//! Everything here is pure and deterministic: the same inputs give the same bytes,
//! so the digests pushgate plans with are the digests the registry then serves.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// The media type of OCI 1.1's empty descriptor, the config of artifacts.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// Its blob: the two bytes `{}`.
pub const EMPTY_BLOB: &[u8] = b"{}";

/// Media types pushgate asks a registry for when it reads a tag.
pub const ACCEPTED: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// A content descriptor, as in manifests and indexes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// OCI 1.1: what kind of artifact a referrer is (a referrers index's entries).
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// The descriptor of `blob` as `media_type`.
    pub fn of(media_type: &str, blob: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest: Digest::of(blob),
            size: blob.len() as u64,
            platform: None,
            artifact_type: None,
            annotations: BTreeMap::new(),
        }
    }

    /// OCI 1.1's empty descriptor (`{}` as `application/vnd.oci.empty.v1+json`).
    pub fn empty() -> Descriptor {
        Descriptor::of(EMPTY_MEDIA_TYPE, EMPTY_BLOB)
    }

    /// With `annotations`.
    pub fn with_annotations(mut self, annotations: BTreeMap<String, String>) -> Descriptor {
        self.annotations = annotations;
        self
    }

    /// As the `subject` of a referrer names it: media type, digest and size
    /// (a list entry's platform is no part of a subject).
    pub fn subject(&self) -> Descriptor {
        Descriptor {
            platform: None,
            artifact_type: None,
            annotations: BTreeMap::new(),
            ..self.clone()
        }
    }
}

/// An image's platform, as the list names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// The parts of an image manifest (OCI or Docker schema 2) pushgate uses: an
/// image's, or an OCI artifact's such as a policy ([`crate::policy::remote`]).
#[derive(Debug, Clone, Deserialize)]
pub struct ImageManifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType")]
    pub media_type: Option<String>,
    /// What an OCI 1.1 artifact is (none for an image).
    #[serde(rename = "artifactType", default)]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    /// The manifest's own annotations (a Docker manifest has none).
    #[serde(default)]
    pub annotations: serde_json::Map<String, serde_json::Value>,
}

impl ImageManifest {
    /// Parses image manifest bytes; `label` names their source in errors.
    pub fn parse(bytes: &[u8], label: &str) -> Result<ImageManifest> {
        let m: ImageManifest = serde_json::from_slice(bytes)
            .with_context(|| format!("{label}: malformed image manifest"))?;
        if m.schema_version != 2 {
            bail!(
                "{label}: manifest schemaVersion {} (expected 2)",
                m.schema_version
            );
        }
        if let Some(mt) = &m.media_type
            && mt != OCI_MANIFEST
            && mt != DOCKER_MANIFEST
        {
            bail!("{label}: {mt} is not an image manifest");
        }
        Ok(m)
    }

    /// The blobs this manifest references: config first, then layers.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        std::iter::once(&self.config).chain(&self.layers)
    }
}

/// The platform fields of an image config.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageConfig {
    pub architecture: String,
    pub os: String,
    pub variant: Option<String>,
}

impl ImageConfig {
    pub fn parse(bytes: &[u8], label: &str) -> Result<ImageConfig> {
        serde_json::from_slice(bytes).with_context(|| format!("{label}: malformed image config"))
    }

    pub fn platform(&self) -> Platform {
        Platform {
            architecture: self.architecture.clone(),
            os: self.os.clone(),
            variant: self.variant.clone().filter(|v| !v.is_empty()),
        }
    }
}

#[derive(Serialize)]
struct DockerManifest<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// The Docker schema 2 media type for an OCI layer media type.
fn docker_layer_type(media_type: &str) -> Option<&'static str> {
    Some(match media_type {
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        }
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => {
            "application/vnd.docker.image.rootfs.diff.tar"
        }
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
        }
        _ => return None,
    })
}

/// Converts an image manifest to Docker schema 2, deterministically.
///
/// A manifest that already is schema 2 is returned unchanged, so its digest holds.
/// Annotations and other OCI-only fields have no schema 2 form and are dropped.
pub fn to_docker_v2s2(manifest: &ImageManifest, raw: &[u8], label: &str) -> Result<Vec<u8>> {
    if manifest.media_type.as_deref() == Some(DOCKER_MANIFEST) {
        return Ok(raw.to_vec());
    }
    let layers = manifest
        .layers
        .iter()
        .map(|l| {
            let media_type = docker_layer_type(&l.media_type).ok_or_else(|| {
                anyhow::anyhow!(
                    "{label}: layer {} has media type {} which Docker schema 2 cannot express; \
                     publish without --v2s2",
                    l.digest,
                    l.media_type
                )
            })?;
            // A Docker descriptor has no platform, artifactType or annotations.
            Ok(Descriptor {
                media_type: media_type.to_string(),
                ..l.subject()
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let config = Descriptor {
        media_type: DOCKER_CONFIG.to_string(),
        ..manifest.config.subject()
    };
    let doc = DockerManifest {
        schema_version: 2,
        media_type: DOCKER_MANIFEST,
        config,
        layers,
    };
    Ok(serde_json::to_vec_pretty(&doc).expect("a manifest always serializes"))
}

#[derive(Serialize, Deserialize)]
struct ListDoc {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    manifests: Vec<Descriptor>,
}

/// The media type of the list a run publishes: a Docker list with `--v2s2`,
/// else an OCI index.
pub fn list_media_type(v2s2: bool) -> &'static str {
    if v2s2 { DOCKER_LIST } else { OCI_INDEX }
}

/// Builds the manifest list (OCI index, or Docker list for `--v2s2`) over
/// `entries`, in the order given. Returns the media type and the bytes.
pub fn build_list(entries: &[Descriptor], v2s2: bool) -> (&'static str, Vec<u8>) {
    let media_type = list_media_type(v2s2);
    let doc = ListDoc {
        schema_version: 2,
        media_type: Some(media_type.to_string()),
        manifests: entries.to_vec(),
    };
    (
        media_type,
        serde_json::to_vec_pretty(&doc).expect("a list always serializes"),
    )
}

/// What a tag points to, parsed from the registry's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    /// A manifest list or OCI index (`media_type`: which of the two), with its
    /// entries in order.
    List {
        media_type: String,
        entries: Vec<Descriptor>,
    },
    /// A single-image manifest (or anything else that is not a list).
    Image,
}

/// Parses what a tag serves; `media_type` is the response's Content-Type, if any.
pub fn parse_remote(bytes: &[u8], media_type: Option<&str>) -> Remote {
    let Ok(doc) = serde_json::from_slice::<ListDoc>(bytes) else {
        return Remote::Image;
    };
    let mt = doc.media_type.as_deref().or(media_type);
    match mt {
        Some(mt @ (OCI_INDEX | DOCKER_LIST)) => Remote::List {
            media_type: mt.to_string(),
            entries: doc.manifests,
        },
        // An OCI index may omit mediaType; a list of manifests is still a list.
        None => Remote::List {
            media_type: OCI_INDEX.to_string(),
            entries: doc.manifests,
        },
        Some(_) => Remote::Image,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8, mt: &str) -> Descriptor {
        Descriptor {
            size: n as u64,
            ..Descriptor::of(mt, &[n])
        }
    }

    #[test]
    fn v2s2_drops_what_docker_descriptors_cannot_say() {
        let mut layer = d(1, "application/vnd.oci.image.layer.v1.tar+gzip");
        layer.annotations = [("org.example".to_string(), "x".to_string())].into();
        layer.artifact_type = Some("application/example".into());
        let m = ImageManifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            artifact_type: None,
            config: d(2, OCI_CONFIG),
            layers: vec![layer],
            annotations: Default::default(),
        };
        let bytes = to_docker_v2s2(&m, b"{}", "t").unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            !text.contains("annotations") && !text.contains("artifactType"),
            "{text}"
        );
    }

    fn oci_manifest(layer_type: &str) -> (ImageManifest, Vec<u8>) {
        let raw = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": d(1, OCI_CONFIG),
            "layers": [d(2, layer_type), d(3, layer_type)],
            "annotations": {"a": "b"}
        }))
        .unwrap();
        (ImageManifest::parse(&raw, "t").unwrap(), raw)
    }

    #[test]
    fn v2s2_conversion_is_deterministic_and_maps_media_types() {
        let (m, raw) = oci_manifest("application/vnd.oci.image.layer.v1.tar+gzip");
        let a = to_docker_v2s2(&m, &raw, "t").unwrap();
        assert_eq!(a, to_docker_v2s2(&m, &raw, "t").unwrap());
        let back = ImageManifest::parse(&a, "t").unwrap();
        assert_eq!(back.media_type.as_deref(), Some(DOCKER_MANIFEST));
        assert_eq!(back.config.media_type, DOCKER_CONFIG);
        assert_eq!(back.config.digest, m.config.digest);
        assert!(
            back.layers
                .iter()
                .all(|l| l.media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip")
        );
        assert_eq!(
            back.layers.iter().map(|l| &l.digest).collect::<Vec<_>>(),
            m.layers.iter().map(|l| &l.digest).collect::<Vec<_>>()
        );
        assert!(!String::from_utf8(a).unwrap().contains("annotations"));
    }

    #[test]
    fn v2s2_keeps_schema2_bytes_and_refuses_zstd() {
        let raw = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": d(1, DOCKER_CONFIG), "layers": []
        }))
        .unwrap();
        let m = ImageManifest::parse(&raw, "t").unwrap();
        assert_eq!(to_docker_v2s2(&m, &raw, "t").unwrap(), raw);
        let (m, raw) = oci_manifest("application/vnd.oci.image.layer.v1.tar+zstd");
        let err = to_docker_v2s2(&m, &raw, "t").unwrap_err().to_string();
        assert!(err.contains("zstd") && err.contains("--v2s2"), "{err}");
    }

    #[test]
    fn lists_round_trip_in_order() {
        let mut a = d(5, OCI_MANIFEST);
        a.platform = Some(Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            variant: Some("v8".into()),
        });
        let mut b = d(6, OCI_MANIFEST);
        b.platform = Some(Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
        });
        for v2s2 in [false, true] {
            let (mt, bytes) = build_list(&[a.clone(), b.clone()], v2s2);
            assert_eq!(build_list(&[a.clone(), b.clone()], v2s2).1, bytes);
            assert_eq!(
                parse_remote(&bytes, Some(mt)),
                Remote::List {
                    media_type: mt.to_string(),
                    entries: vec![a.clone(), b.clone()]
                }
            );
            assert!(
                !String::from_utf8(bytes)
                    .unwrap()
                    .contains("variant\": null")
            );
        }
    }

    #[test]
    fn single_images_are_not_lists() {
        let (_, raw) = oci_manifest("application/vnd.oci.image.layer.v1.tar");
        assert_eq!(parse_remote(&raw, Some(OCI_MANIFEST)), Remote::Image);
        assert_eq!(parse_remote(b"garbage", None), Remote::Image);
    }

    #[test]
    fn an_artifact_manifest_keeps_its_type_and_annotations() {
        let raw = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/x.t",
            "config": d(1, "application/x.t"),
            "layers": [d(2, "application/wasm")],
            "annotations": {"k": "v"}
        }))
        .unwrap();
        let m = ImageManifest::parse(&raw, "t").unwrap();
        assert_eq!(m.artifact_type.as_deref(), Some("application/x.t"));
        assert_eq!(m.annotations["k"], "v");
        assert_eq!(m.layers[0].digest, Digest::of(&[2]));
        let (_, raw) = oci_manifest("application/vnd.oci.image.layer.v1.tar");
        let m = ImageManifest::parse(&raw, "t").unwrap();
        assert_eq!((m.artifact_type, m.annotations.len()), (None, 1));
    }

    #[test]
    fn bad_manifests_are_refused_with_their_source() {
        assert!(
            ImageManifest::parse(b"{}", "x.ociarchive")
                .unwrap_err()
                .to_string()
                .contains("x.ociarchive")
        );
        let raw = br#"{"schemaVersion":1,"config":{"mediaType":"a","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;
        assert!(ImageManifest::parse(raw, "t").is_err());
    }
}
