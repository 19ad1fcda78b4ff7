//! Sources: what should be published, per arch, and reading it.
//!
//! [`resolve`] reads only builds.json and meta.json, so an up-to-date run can stop
//! before touching any archive. [`load`] then opens the archives (verifying their
//! sha256 against meta.json) and reads each image's manifest and config.
//!
//! [`cosa`] owns the workdir files (read side), [`archive`] reads OCI archives and
//! layout directories without extracting them. A `docker://` source is read from
//! its registry: its manifest and config only; its blobs are mounted or streamed
//! through when they are pushed.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};

pub mod archive;
pub mod cosa;

use crate::arch;
use crate::manifest::{self, ImageConfig, ImageManifest, Platform, Remote};
use crate::meta::ImageEntry;
use crate::progress::Progress;
use crate::registry::{self, MAX_MANIFEST, Reference, Repository};
use archive::{Expected, OciLayout};
use cosa::{ArchMeta, Artifact, Workdir};

/// Where the images come from, as the command line said.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    /// `--artifact NAME --metajsonname KEY [--build ID] [--arch ARCH...]`.
    Artifact {
        workdir: PathBuf,
        artifact: String,
        key: String,
        build: String,
        arches: Vec<String>,
    },
    /// `--image SRC...`: `oci-archive:PATH`, `oci:DIR` or `docker://REF`.
    Images(Vec<String>),
}

/// One image source, before it is read.
#[derive(Debug, Clone)]
pub enum Origin {
    /// An artifact of a cosa build, with what meta.json says of it.
    Artifact(Artifact),
    OciArchive(PathBuf),
    OciDir(PathBuf),
    /// An image in a registry: the reference after `docker://`.
    Docker(Reference),
}

impl Origin {
    /// The source as a person would name it.
    pub fn label(&self) -> String {
        match self {
            Origin::Artifact(a) => a.path.display().to_string(),
            Origin::OciArchive(p) => format!("oci-archive:{}", p.display()),
            Origin::OciDir(p) => format!("oci:{}", p.display()),
            Origin::Docker(r) => format!("docker://{r}"),
        }
    }
}

/// One arch (or, for `--image`, one source whose arch is learnt on load).
#[derive(Debug, Clone)]
pub struct ArchInput {
    /// The cosa basearch; `None` for `--image` sources until loaded.
    pub arch: Option<String>,
    pub origin: Origin,
    /// meta.json, for `--artifact` sources.
    pub meta: Option<ArchMeta>,
}

/// The resolved sources of one container: which arches, from where, and what
/// meta.json already records under the key.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub build_id: Option<String>,
    pub key: Option<String>,
    /// Arches asked for: `--arch`, or every arch of the build.
    pub requested_arches: Vec<String>,
    /// Arches that have the artifact, in the build's arch order.
    pub inputs: Vec<ArchInput>,
}

impl Resolved {
    /// Per present arch, what meta.json records under the key (`--artifact` only).
    pub fn recorded(&self) -> Result<Vec<(String, Option<ImageEntry>)>> {
        let Some(key) = &self.key else {
            return Ok(Vec::new());
        };
        self.inputs
            .iter()
            .filter_map(|i| Some((i.arch.clone()?, i.meta.as_ref()?)))
            .map(|(arch, meta)| Ok((arch, meta.entry(key)?)))
            .collect()
    }
}

/// An `--image` source as given: `oci-archive:PATH`, `oci:DIR` or `docker://REF`
/// (its reference checked, not looked up).
pub fn parse_origin(src: &str) -> Result<Origin> {
    Ok(if let Some(p) = src.strip_prefix("oci-archive:") {
        Origin::OciArchive(PathBuf::from(p))
    } else if let Some(p) = src.strip_prefix("oci:") {
        Origin::OciDir(PathBuf::from(p))
    } else if let Some(r) = src.strip_prefix("docker://") {
        Origin::Docker(Reference::parse(r, &format!("--image {src}"))?)
    } else {
        bail!(
            "--image {src}: unknown transport; use oci-archive:PATH, oci:DIR or docker://REFERENCE"
        )
    })
}

/// Resolves the sources without reading any archive.
pub fn resolve(spec: &SourceSpec) -> Result<Resolved> {
    match spec {
        SourceSpec::Artifact {
            workdir,
            artifact,
            key,
            build,
            arches,
        } => {
            let workdir = Workdir::new(workdir);
            let build = workdir.resolve_build(build)?;
            for a in arches {
                if !build.arches.contains(a) {
                    bail!(
                        "--arch {a}: build {} has no {a} (it has {})",
                        build.id,
                        build.arches.join(", ")
                    );
                }
            }
            let explicit = !arches.is_empty();
            let requested: Vec<String> = if explicit {
                build
                    .arches
                    .iter()
                    .filter(|a| arches.contains(a))
                    .cloned()
                    .collect()
            } else {
                build.arches.clone()
            };
            let mut inputs = Vec::new();
            for a in &requested {
                let meta = ArchMeta::read(a, &workdir.arch_dir(&build.id, a).join("meta.json"))?;
                match meta.artifact(artifact)? {
                    Some(art) => inputs.push(ArchInput {
                        arch: Some(a.clone()),
                        origin: Origin::Artifact(art),
                        meta: Some(meta),
                    }),
                    // cosa's rule: without --arch, an arch lacking the artifact is skipped
                    // (kubevirt exists only on some arches); with --arch it is an error.
                    None if explicit => bail!(
                        "--arch {a}: {} has no artifact {artifact:?}",
                        meta.path.display()
                    ),
                    None => {}
                }
            }
            if inputs.is_empty() {
                bail!(
                    "--artifact {artifact}: no arch of build {} has it",
                    build.id
                );
            }
            Ok(Resolved {
                build_id: Some(build.id),
                key: Some(key.clone()),
                requested_arches: requested,
                inputs,
            })
        }
        SourceSpec::Images(images) => {
            let inputs = images
                .iter()
                .map(|src| {
                    Ok(ArchInput {
                        arch: None,
                        origin: parse_origin(src)?,
                        meta: None,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Resolved {
                build_id: None,
                key: None,
                requested_arches: Vec::new(),
                inputs,
            })
        }
    }
}

/// An image as its source holds it.
#[derive(Debug, Clone)]
pub struct SourceImage {
    pub arch: String,
    pub platform: Platform,
    pub manifest: ImageManifest,
    /// The manifest's bytes exactly as stored, so its digest is preserved.
    pub manifest_raw: Vec<u8>,
}

/// Where an image's blobs are read from when they must be pushed.
#[derive(Clone)]
pub enum Blobs {
    /// An OCI layout (archive or directory).
    Layout(Arc<OciLayout>),
    /// The repository of a `docker://` source.
    Registry(Arc<Repository>),
}

/// An image and where its blobs are read from.
#[derive(Clone)]
pub struct LoadedImage {
    pub image: SourceImage,
    pub blobs: Blobs,
    /// The source, as a person would name it.
    pub source: String,
}

/// Opens every source and reads its manifest and config, all at once: archives
/// are indexed from their headers (their checksums are left to [`verify`]),
/// registry sources are read over the network.
pub async fn load(resolved: &Resolved, opts: &registry::Options) -> Result<Vec<LoadedImage>> {
    let loads = resolved.inputs.iter().map(|input| async move {
        match &input.origin {
            Origin::Docker(reference) => load_docker(input, reference, opts).await,
            _ => {
                let input = input.clone();
                tokio::task::spawn_blocking(move || load_layout(&input))
                    .await
                    .expect("loader thread panicked")
            }
        }
    });
    let loaded = futures_util::future::join_all(loads)
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    let mut seen = std::collections::BTreeSet::new();
    for l in &loaded {
        if !seen.insert(&l.image.arch) {
            bail!(
                "two sources hold an image for {}; give one per arch",
                l.image.arch
            );
        }
    }
    Ok(loaded)
}

/// Checks every archive among `sources` (arch, blobs) against the sha256
/// meta.json gives for it, each on a thread of its own (a full read of each),
/// counting what is read into `progress`. Nothing from an archive may be
/// published before this has passed.
pub async fn verify(sources: &[(String, Blobs)], progress: Option<Arc<Progress>>) -> Result<()> {
    let checks = sources.iter().filter_map(|(arch, b)| match b {
        Blobs::Layout(l) if l.has_checksum() => {
            let (l, arch, progress) = (l.clone(), arch.clone(), progress.clone());
            Some(async move {
                tokio::task::spawn_blocking(move || {
                    let shown = progress.as_deref().and_then(|p| p.arch(&arch));
                    match shown {
                        Some(a) => l.verify_counting(a.verified()),
                        None => l.verify(),
                    }
                })
                .await
                .expect("verifier thread panicked")
            })
        }
        _ => None,
    });
    futures_util::future::join_all(checks)
        .await
        .into_iter()
        .collect()
}

impl ArchInput {
    /// A name for progress lines: the arch, or until it is known the source's
    /// file name or reference.
    pub fn label(&self) -> String {
        if let Some(arch) = &self.arch {
            return arch.clone();
        }
        let path = match &self.origin {
            Origin::Artifact(a) => &a.path,
            Origin::OciArchive(p) | Origin::OciDir(p) => p,
            Origin::Docker(r) => {
                let r = r.to_string();
                return r.rsplit('/').next().unwrap_or(&r).to_string();
            }
        };
        path.file_name()
            .unwrap_or(path.as_os_str())
            .to_string_lossy()
            .into_owned()
    }

    /// How many bytes verifying the source reads: an archive's size (0 when it
    /// cannot be known; opening it will say why), 0 for a directory or a registry.
    pub fn archive_size(&self) -> u64 {
        match &self.origin {
            Origin::Artifact(Artifact { path, .. }) | Origin::OciArchive(path) => {
                std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
            }
            Origin::OciDir(_) | Origin::Docker(_) => 0,
        }
    }
}

fn load_layout(input: &ArchInput) -> Result<LoadedImage> {
    let layout = match &input.origin {
        Origin::Artifact(a) => OciLayout::index_archive(
            &a.path,
            Some(Expected {
                sha256: &a.sha256,
                size: a.size,
            }),
        )?,
        Origin::OciArchive(p) => OciLayout::index_archive(p, None)?,
        Origin::OciDir(p) => OciLayout::open_dir(p)?,
        Origin::Docker(_) => unreachable!("registry sources are loaded by load_docker"),
    };
    let label = layout.label();
    let desc = layout.manifest_descriptor()?;
    let manifest_raw = layout.read_blob(&desc)?;
    let manifest = ImageManifest::parse(&manifest_raw, &label)?;
    let config = ImageConfig::parse(&layout.read_blob(&manifest.config)?, &label)?;
    for l in &manifest.layers {
        layout.blob_range(&l.digest, l.size)?;
    }
    Ok(LoadedImage {
        image: source_image(input, &label, manifest, manifest_raw, &config)?,
        blobs: Blobs::Layout(Arc::new(layout)),
        source: input.origin.label(),
    })
}

/// Reads a `docker://` source's manifest and config from its registry. Its
/// blobs are not read: they are mounted or streamed through if they must be
/// pushed.
async fn load_docker(
    input: &ArchInput,
    r: &Reference,
    opts: &registry::Options,
) -> Result<LoadedImage> {
    let label = format!("--image docker://{r}");
    let repo = Repository::new(&r.repo, opts).with_context(|| label.clone())?;
    let target = r.target();
    let fetched = repo
        .get_manifest(target.as_str())
        .await
        .with_context(|| label.clone())?
        .with_context(|| {
            format!(
                "{label}: no such image: {} has no manifest {} in {}",
                r.repo.registry(),
                target.as_str(),
                r.repo.path()
            )
        })?;
    if let Remote::List { entries, .. } =
        manifest::parse_remote(&fetched.bytes, fetched.media_type.as_deref())
    {
        let platforms: Vec<String> = entries
            .iter()
            .filter_map(|e| {
                let p = e.platform.as_ref()?;
                Some(format!("{} {}", p.architecture, e.digest))
            })
            .collect();
        bail!(
            "{label} is a manifest list ({} entries); pushgate takes one image per --image: \
             name one of its images by digest ({}@DIGEST){}",
            entries.len(),
            r.repo,
            if platforms.is_empty() {
                String::new()
            } else {
                format!(": {}", platforms.join(", "))
            }
        );
    }
    let manifest = ImageManifest::parse(&fetched.bytes, &label)?;
    let config = &manifest.config;
    if config.size > MAX_MANIFEST as u64 {
        bail!(
            "{label}: its config {} is {} bytes by its descriptor, too large for a config",
            config.digest,
            config.size
        );
    }
    let config = repo
        .get_blob(&config.digest, MAX_MANIFEST)
        .await
        .with_context(|| format!("{label}: reading its config"))?
        .with_context(|| {
            format!(
                "{label}: the registry lacks its config {}",
                manifest.config.digest
            )
        })?;
    let config = ImageConfig::parse(&config, &label)?;
    Ok(LoadedImage {
        image: source_image(input, &label, manifest, fetched.bytes, &config)?,
        blobs: Blobs::Registry(Arc::new(repo)),
        source: input.origin.label(),
    })
}

/// The image, its arch checked against the one it is filed under (or learnt
/// from its config).
fn source_image(
    input: &ArchInput,
    label: &str,
    manifest: ImageManifest,
    manifest_raw: Vec<u8>,
    config: &ImageConfig,
) -> Result<SourceImage> {
    let arch = match &input.arch {
        Some(arch) => {
            let want =
                arch::oci_arch(arch).with_context(|| format!("{label}: unknown arch {arch}"))?;
            if config.architecture != want {
                bail!(
                    "{label} is filed under {arch} but holds an image for {} (expected {want})",
                    config.architecture
                );
            }
            arch.clone()
        }
        None => arch::basearch(&config.architecture)
            .with_context(|| {
                format!(
                    "{label}: unknown image architecture {:?}",
                    config.architecture
                )
            })?
            .to_string(),
    };
    Ok(SourceImage {
        arch,
        platform: config.platform(),
        manifest,
        manifest_raw,
    })
}
