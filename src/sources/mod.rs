//! Sources: what should be published, per arch, and reading it.
//!
//! [`resolve`] reads only builds.json and meta.json, so an up-to-date run can stop
//! before touching any archive. [`load`] then opens the archives (verifying their
//! sha256 against meta.json) and reads each image's manifest and config.
//!
//! [`cosa`] owns the workdir files (read side), [`archive`] reads OCI archives and
//! layout directories without extracting them.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use anyhow::{Context, Result, bail};

pub mod archive;
pub mod cosa;

use crate::arch;
use crate::manifest::{ImageConfig, ImageManifest, Platform};
use crate::meta::ImageEntry;
use crate::progress::Progress;
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
    /// `--image SRC...`: `oci-archive:PATH` or `oci:DIR`.
    Images(Vec<String>),
}

/// One image source, before it is read.
#[derive(Debug, Clone)]
pub enum Origin {
    /// An artifact of a cosa build, with what meta.json says of it.
    Artifact(Artifact),
    OciArchive(PathBuf),
    OciDir(PathBuf),
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
                    let origin = if let Some(p) = src.strip_prefix("oci-archive:") {
                        Origin::OciArchive(PathBuf::from(p))
                    } else if let Some(p) = src.strip_prefix("oci:") {
                        Origin::OciDir(PathBuf::from(p))
                    } else if src.starts_with("docker://") {
                        bail!("--image {src}: docker:// sources are not supported yet; use oci-archive:PATH or oci:DIR")
                    } else {
                        bail!("--image {src}: unknown transport; use oci-archive:PATH or oci:DIR")
                    };
                    Ok(ArchInput { arch: None, origin, meta: None })
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

/// An image and the layout its blobs are read from.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    pub image: SourceImage,
    pub layout: Arc<OciLayout>,
}

impl ArchInput {
    /// A name for progress lines: the arch, or until it is known the source's file name.
    pub fn label(&self) -> String {
        if let Some(arch) = &self.arch {
            return arch.clone();
        }
        let path = match &self.origin {
            Origin::Artifact(a) => &a.path,
            Origin::OciArchive(p) | Origin::OciDir(p) => p,
        };
        path.file_name()
            .unwrap_or(path.as_os_str())
            .to_string_lossy()
            .into_owned()
    }

    /// How many bytes loading reads to verify and index the source: an archive's
    /// size (0 when it cannot be known; opening it will say why), 0 for a directory.
    pub fn archive_size(&self) -> u64 {
        match &self.origin {
            Origin::Artifact(Artifact { path, .. }) | Origin::OciArchive(path) => {
                std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
            }
            Origin::OciDir(_) => 0,
        }
    }
}

/// Opens every source (in parallel: verifying a checksum reads the whole archive)
/// and reads its manifest and config. `progress` has one entry per input, in order;
/// each is named by its arch once loaded.
pub fn load(resolved: &Resolved, progress: Option<&Progress>) -> Result<Vec<LoadedImage>> {
    let loaded: Vec<Result<LoadedImage>> = std::thread::scope(|s| {
        let handles: Vec<_> = resolved
            .inputs
            .iter()
            .enumerate()
            .map(|(n, i)| {
                let read = progress.and_then(|p| p.source(n)).map(|a| a.verified());
                s.spawn(move || load_one(i, read))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("loader thread panicked"))
            .collect()
    });
    let loaded = loaded.into_iter().collect::<Result<Vec<_>>>()?;
    if let Some(p) = progress {
        for (n, l) in loaded.iter().enumerate() {
            if let Some(a) = p.source(n) {
                a.relabel(&l.image.arch);
            }
        }
    }
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

fn load_one(input: &ArchInput, read: Option<&AtomicU64>) -> Result<LoadedImage> {
    let unwatched = AtomicU64::new(0);
    let read = read.unwrap_or(&unwatched);
    let layout = match &input.origin {
        Origin::Artifact(a) => OciLayout::open_archive_counting(
            &a.path,
            Some(Expected {
                sha256: &a.sha256,
                size: a.size,
            }),
            read,
        )?,
        Origin::OciArchive(p) => OciLayout::open_archive_counting(p, None, read)?,
        Origin::OciDir(p) => OciLayout::open_dir(p)?,
    };
    let label = layout.label();
    let desc = layout.manifest_descriptor()?;
    let manifest_raw = layout.read_blob(&desc)?;
    let manifest = ImageManifest::parse(&manifest_raw, &label)?;
    let config = ImageConfig::parse(&layout.read_blob(&manifest.config)?, &label)?;
    for l in &manifest.layers {
        layout.blob_range(&l.digest, l.size)?;
    }
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
    Ok(LoadedImage {
        image: SourceImage {
            arch,
            platform: config.platform(),
            manifest,
            manifest_raw,
        },
        layout: Arc::new(layout),
    })
}
