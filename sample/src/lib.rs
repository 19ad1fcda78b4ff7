//! Sample data: generates cosa workdirs (`builds.json`, per-arch `meta.json`) holding
//! real, deterministic OCI archives and OCI image layout directories.
//!
//! Used as fixtures by the tests, by the README's quick-start (through the
//! `sample-build` example) and by benchmarks with big layers. Everything is
//! streamed: a layer is generated, compressed and hashed on its way to a temporary
//! file, then copied into the archive, so a layer is never held in memory.
//!
//! Content is pseudo-random but fully determined by the seed and by what the data
//! is for (architecture, variant, layer index; and in a build, the build id and the
//! artifact), so the same inputs always give byte-identical files.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tempfile::NamedTempFile;

use pushgate::arch::oci_arch;
use pushgate::digest::Digest;
use pushgate::manifest::{OCI_CONFIG, OCI_INDEX, OCI_MANIFEST};
use pushgate::record::write_json_atomically;

const MEDIA_TYPE_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
const VERSION_ANNOTATION: &str = "org.opencontainers.image.version";

/// One image to put in an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleImage {
    /// OCI architecture written in the config (`amd64`, `arm64`, ...).
    pub oci_arch: String,
    /// OCI architecture variant written in the config (`v8`), if any.
    pub variant: Option<String>,
    /// Number of layers.
    pub layers: usize,
    /// Size in bytes of the one file each layer holds (the layer blob is a bit bigger).
    pub layer_size: u64,
    /// Seed of the layer contents. Contents also depend on the architecture, the
    /// variant and the layer index, so two images differing only there share no layer.
    pub seed: u64,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenImage {
    /// Digest of the whole archive file ([`write_oci_archive`]), or of the manifest
    /// blob ([`write_oci_layout_dir`], where there is no single file).
    pub file_sha256: Digest,
    /// Size in bytes of that same file.
    pub file_size: u64,
    /// Digest of the image manifest blob, as `index.json` names it.
    pub manifest_digest: Digest,
    /// Digest of the image config blob.
    pub config_digest: Digest,
    /// Digests of the (compressed) layer blobs, in manifest order.
    pub layer_digests: Vec<Digest>,
}

/// A cosa build to generate with [`write_build`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleBuild {
    /// Build id, e.g. `41.20261127.1.0`.
    pub build_id: String,
    /// The build's basearches (`x86_64`, `aarch64`, ...), in `builds.json` order.
    pub arches: Vec<String>,
    /// The container artifacts to generate.
    pub containers: Vec<SampleContainer>,
    /// Number of layers of every image.
    pub layers: usize,
    /// Size in bytes of the file in each layer.
    pub layer_size: u64,
    /// Seed of the contents; they also depend on the build id, arch and artifact.
    pub seed: u64,
}

/// One container artifact of a [`SampleBuild`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleContainer {
    /// Key under meta.json's `images`, e.g. `ostree`, `kubevirt`.
    pub artifact: String,
    /// The basearches having this artifact; `None` means all arches of the build.
    pub arches: Option<Vec<String>>,
    /// Layers of its images; `None` means the build's `layers` (an extensions
    /// container is a fraction of the OS one).
    pub layers: Option<usize>,
}

impl SampleBuild {
    /// A small build: `ostree` on every arch, `kubevirt` on the first arch only,
    /// 3 layers of 4 KiB, seed 0.
    pub fn small(build_id: &str, arches: &[&str]) -> SampleBuild {
        SampleBuild {
            build_id: build_id.to_string(),
            arches: arches.iter().map(|a| a.to_string()).collect(),
            containers: vec![
                SampleContainer {
                    artifact: "ostree".to_string(),
                    arches: None,
                    layers: None,
                },
                SampleContainer {
                    artifact: "kubevirt".to_string(),
                    arches: Some(arches.iter().take(1).map(|a| a.to_string()).collect()),
                    layers: None,
                },
            ],
            layers: 3,
            layer_size: 4096,
            seed: 0,
        }
    }

    /// Only the OS container (`ostree`) on every arch, with `layers` layers of
    /// `layer_size` bytes each: the one container most tests push.
    pub fn ostree(build_id: &str, arches: &[&str], layers: usize, layer_size: u64) -> SampleBuild {
        SampleBuild {
            containers: vec![SampleContainer {
                artifact: "ostree".to_string(),
                arches: None,
                layers: None,
            }],
            layers,
            layer_size,
            ..SampleBuild::small(build_id, arches)
        }
    }

    /// [`SampleBuild::small`] plus `extensions-container` on every arch (one layer):
    /// every artifact `examples/release.toml` names, as a release job's build has them.
    pub fn product(build_id: &str, arches: &[&str]) -> SampleBuild {
        let mut build = SampleBuild::small(build_id, arches);
        build.containers.push(SampleContainer {
            artifact: "extensions-container".to_string(),
            arches: None,
            layers: Some(1),
        });
        build
    }
}

/// The file name cosa gives a container archive: `fedora-coreos-<id>-<artifact>.<arch>.ociarchive`.
pub fn archive_file_name(build_id: &str, artifact: &str, basearch: &str) -> String {
    format!("fedora-coreos-{build_id}-{artifact}.{basearch}.ociarchive")
}

/// Writes `image` as an OCI archive (a tar of an OCI image layout) at `path`.
///
/// The manifest carries the annotation `org.opencontainers.image.version` =
/// `sample-<seed>`.
pub fn write_oci_archive(path: &Path, image: &SampleImage) -> anyhow::Result<WrittenImage> {
    write_archive(path, image, &format!("sample-{}", image.seed))
}

/// Writes `image` as an OCI image layout directory at `dir` (created if needed).
///
/// There is no single file here, so [`WrittenImage::file_sha256`] and
/// [`WrittenImage::file_size`] are those of the manifest blob.
pub fn write_oci_layout_dir(dir: &Path, image: &SampleImage) -> anyhow::Result<WrittenImage> {
    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
    fs::write(dir.join("oci-layout"), OCI_LAYOUT)?;
    let mut sink = DirSink { blobs };
    let written = write_image(&mut sink, image, &format!("sample-{}", image.seed))?;
    fs::write(dir.join("index.json"), &written.index_json)?;
    Ok(WrittenImage {
        file_sha256: written.manifest_digest.clone(),
        file_size: written.manifest_size,
        manifest_digest: written.manifest_digest,
        config_digest: written.config_digest,
        layer_digests: written.layer_digests,
    })
}

/// Writes a cosa build under `workdir`: an OCI archive per (arch, container) and
/// `builds/<id>/<arch>/meta.json` for every arch, then records the build first
/// (newest) in `builds/builds.json`, keeping the builds already there (an older
/// entry with the same id is replaced).
///
/// The arm64 images get the config variant `v8`; each image's manifest carries the
/// build id as `org.opencontainers.image.version`.
pub fn write_build(workdir: &Path, build: &SampleBuild) -> anyhow::Result<()> {
    for container in &build.containers {
        for arch in container.arches.iter().flatten() {
            if !build.arches.contains(arch) {
                bail!(
                    "sample container {:?} names arch {arch:?}, which build {} lacks",
                    container.artifact,
                    build.build_id
                );
            }
        }
    }
    let builds_dir = workdir.join("builds");
    for arch in &build.arches {
        let oci = oci_arch(arch).with_context(|| format!("unknown basearch {arch:?}"))?;
        let arch_dir = builds_dir.join(&build.build_id).join(arch);
        fs::create_dir_all(&arch_dir)
            .with_context(|| format!("creating {}", arch_dir.display()))?;
        let mut images = serde_json::Map::new();
        for container in &build.containers {
            if container.arches.as_ref().is_some_and(|a| !a.contains(arch)) {
                continue;
            }
            let name = archive_file_name(&build.build_id, &container.artifact, arch);
            let image = SampleImage {
                oci_arch: oci.to_string(),
                variant: (oci == "arm64").then(|| "v8".to_string()),
                layers: container.layers.unwrap_or(build.layers),
                layer_size: build.layer_size,
                seed: mix(
                    build.seed,
                    &[
                        build.build_id.as_bytes(),
                        arch.as_bytes(),
                        container.artifact.as_bytes(),
                    ],
                ),
            };
            let written = write_archive(&arch_dir.join(&name), &image, &build.build_id)?;
            images.insert(
                container.artifact.clone(),
                json!({
                    "path": name,
                    "sha256": written.file_sha256.hex(),
                    "size": written.file_size,
                    "skip-compression": true,
                }),
            );
        }
        let commit = Digest::of(format!("{}/{}/{}", build.build_id, arch, build.seed).as_bytes());
        let meta = json!({
            "name": "fedora-coreos",
            "buildid": build.build_id,
            "coreos-assembler.basearch": arch,
            "ostree-commit": commit.hex(),
            "images": images,
        });
        write_json_atomically(&arch_dir.join("meta.json"), &meta, true)?;
    }
    record_build(&builds_dir.join("builds.json"), build)
}

/// Inserts `build` first in `builds.json` (created if missing).
fn record_build(path: &Path, build: &SampleBuild) -> anyhow::Result<()> {
    let mut doc = match fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<Value>(&bytes)
            .with_context(|| format!("parsing {}", path.display()))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            json!({"schema-version": "1.0.0", "builds": []})
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let builds = doc
        .get_mut("builds")
        .and_then(Value::as_array_mut)
        .with_context(|| format!("{}: no \"builds\" array", path.display()))?;
    builds.retain(|b| b.get("id").and_then(Value::as_str) != Some(build.build_id.as_str()));
    builds.insert(0, json!({"id": build.build_id, "arches": build.arches}));
    write_json_atomically(path, &doc, true)
}

/// Gives a temp file (created 0600) the 0644 mode that ordinary files get.
fn readable_by_all(tmp: &NamedTempFile) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o644))?;
    }
    #[cfg(not(unix))]
    let _ = tmp;
    Ok(())
}

/// Writes the archive at `path`, hashing the file as it is written.
fn write_archive(path: &Path, image: &SampleImage, version: &str) -> anyhow::Result<WrittenImage> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let out = HashingWriter::new(BufWriter::new(file));
    let mut sink = TarSink {
        tar: tar::Builder::new(out),
        // Layers are staged beside the archive (same filesystem, no /tmp limits).
        tmp_dir: std::path::absolute(path)?
            .parent()
            .expect("an absolute file path has a parent")
            .to_path_buf(),
    };
    sink.put_bytes("oci-layout", OCI_LAYOUT)?;
    sink.put_dir("blobs/")?;
    sink.put_dir("blobs/sha256/")?;
    let written = write_image(&mut sink, image, version)?;
    sink.put_bytes("index.json", &written.index_json)?;
    let out = sink.tar.into_inner()?;
    let (file_sha256, file_size, buffered) = out.finish();
    buffered
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    Ok(WrittenImage {
        file_sha256,
        file_size,
        manifest_digest: written.manifest_digest,
        config_digest: written.config_digest,
        layer_digests: written.layer_digests,
    })
}

/// The blobs and `index.json` of one image, as [`write_image`] produced them.
struct ImageBlobs {
    manifest_digest: Digest,
    manifest_size: u64,
    config_digest: Digest,
    layer_digests: Vec<Digest>,
    index_json: Vec<u8>,
}

/// Where blobs go: a tar (archive) or a `blobs/sha256` directory (layout).
trait BlobSink {
    /// A directory where a layer can be staged before [`BlobSink::put_layer`].
    fn tmp_dir(&self) -> &Path;
    /// Stores a staged layer blob (its file is positioned anywhere).
    fn put_layer(&mut self, digest: &Digest, size: u64, file: NamedTempFile) -> anyhow::Result<()>;
    /// Stores a small blob.
    fn put_blob(&mut self, digest: &Digest, bytes: &[u8]) -> anyhow::Result<()>;
}

struct TarSink<W: Write> {
    tar: tar::Builder<W>,
    tmp_dir: PathBuf,
}

impl<W: Write> TarSink<W> {
    fn header(entry_type: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(entry_type);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(size);
        h
    }

    fn put_dir(&mut self, name: &str) -> io::Result<()> {
        let mut h = Self::header(tar::EntryType::Directory, 0o755, 0);
        self.tar.append_data(&mut h, name, io::empty())
    }

    fn put_bytes(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let mut h = Self::header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
        self.tar.append_data(&mut h, name, bytes)
    }
}

impl<W: Write> BlobSink for TarSink<W> {
    fn tmp_dir(&self) -> &Path {
        &self.tmp_dir
    }

    fn put_layer(
        &mut self,
        digest: &Digest,
        size: u64,
        mut file: NamedTempFile,
    ) -> anyhow::Result<()> {
        file.seek(SeekFrom::Start(0))?;
        let mut h = Self::header(tar::EntryType::Regular, 0o644, size);
        let name = format!("blobs/sha256/{}", digest.hex());
        self.tar
            .append_data(&mut h, name, file.as_file_mut().take(size))?;
        Ok(())
    }

    fn put_blob(&mut self, digest: &Digest, bytes: &[u8]) -> anyhow::Result<()> {
        Ok(self.put_bytes(&format!("blobs/sha256/{}", digest.hex()), bytes)?)
    }
}

struct DirSink {
    blobs: PathBuf,
}

impl BlobSink for DirSink {
    fn tmp_dir(&self) -> &Path {
        &self.blobs
    }

    fn put_layer(
        &mut self,
        digest: &Digest,
        _size: u64,
        file: NamedTempFile,
    ) -> anyhow::Result<()> {
        readable_by_all(&file)?;
        file.persist(self.blobs.join(digest.hex()))?;
        Ok(())
    }

    fn put_blob(&mut self, digest: &Digest, bytes: &[u8]) -> anyhow::Result<()> {
        Ok(fs::write(self.blobs.join(digest.hex()), bytes)?)
    }
}

/// Generates the layers, config and manifest of `image` into `sink`, and returns
/// the `index.json` to write beside them.
fn write_image(
    sink: &mut impl BlobSink,
    image: &SampleImage,
    version: &str,
) -> anyhow::Result<ImageBlobs> {
    let mut layer_descriptors = Vec::with_capacity(image.layers);
    let mut layer_digests = Vec::with_capacity(image.layers);
    let mut diff_ids = Vec::with_capacity(image.layers);
    for index in 0..image.layers {
        let seed = mix(
            image.seed,
            &[
                image.oci_arch.as_bytes(),
                image.variant.as_deref().unwrap_or("").as_bytes(),
                &(index as u64).to_le_bytes(),
            ],
        );
        let layer = write_layer(sink.tmp_dir(), index, image.layer_size, seed)?;
        sink.put_layer(&layer.digest, layer.size, layer.file)?;
        layer_descriptors.push(descriptor(MEDIA_TYPE_LAYER, &layer.digest, layer.size));
        diff_ids.push(layer.diff_id);
        layer_digests.push(layer.digest);
    }

    let mut config = serde_json::Map::new();
    config.insert("architecture".into(), json!(image.oci_arch));
    config.insert("os".into(), json!("linux"));
    if let Some(variant) = &image.variant {
        config.insert("variant".into(), json!(variant));
    }
    config.insert("config".into(), json!({}));
    config.insert(
        "rootfs".into(),
        json!({"type": "layers", "diff_ids": diff_ids}),
    );
    let config = serde_json::to_vec(&Value::Object(config))?;
    let config_digest = Digest::of(&config);
    sink.put_blob(&config_digest, &config)?;

    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config_digest, config.len() as u64),
        "layers": layer_descriptors,
        "annotations": { VERSION_ANNOTATION: version },
    });
    // Pretty on purpose: manifests must be pushed byte-for-byte, not re-serialized.
    let manifest = serde_json::to_vec_pretty(&manifest)?;
    let manifest_digest = Digest::of(&manifest);
    sink.put_blob(&manifest_digest, &manifest)?;

    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [descriptor(OCI_MANIFEST, &manifest_digest, manifest.len() as u64)],
    });
    Ok(ImageBlobs {
        manifest_digest,
        manifest_size: manifest.len() as u64,
        config_digest,
        layer_digests,
        index_json: serde_json::to_vec(&index)?,
    })
}

fn descriptor(media_type: &str, digest: &Digest, size: u64) -> Value {
    json!({"mediaType": media_type, "digest": digest, "size": size})
}

/// A layer blob staged in a temporary file.
struct Layer {
    file: NamedTempFile,
    /// Digest of the compressed blob.
    digest: Digest,
    /// Size of the compressed blob.
    size: u64,
    /// Digest of the uncompressed tar.
    diff_id: Digest,
}

/// Streams a gzip'd tar holding one file of `size` pseudo-random bytes into a temp
/// file in `dir`, hashing both the tar and the gzip stream on the way.
fn write_layer(dir: &Path, index: usize, size: u64, seed: u64) -> anyhow::Result<Layer> {
    let tmp = tempfile::Builder::new()
        .prefix(".sample-layer-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    let compressed = HashingWriter::new(BufWriter::with_capacity(1 << 16, tmp));
    let gz = GzEncoder::new(compressed, Compression::none());
    let mut tar = tar::Builder::new(HashingWriter::new(gz));
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    tar.append_data(
        &mut h,
        format!("layer-{index}.bin"),
        PseudoRandom::new(seed).take(size),
    )?;
    let (diff_id, _, gz) = tar.into_inner()?.finish();
    let (digest, blob_size, buffered) = gz.finish()?.finish();
    let file = buffered.into_inner().map_err(|e| e.into_error())?;
    Ok(Layer {
        file,
        digest,
        size: blob_size,
        diff_id,
    })
}

/// A writer that hashes and counts every byte written through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// The digest and length of what was written, and the inner writer (not flushed).
    fn finish(self) -> (Digest, u64, W) {
        (Digest::from_hasher(self.hasher), self.len, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// An endless deterministic byte stream (xorshift64*), independent of how it is read.
struct PseudoRandom {
    state: u64,
    pending: [u8; 8],
    /// Bytes of `pending` already handed out (8 = none left).
    used: usize,
}

impl PseudoRandom {
    fn new(seed: u64) -> Self {
        let state = splitmix64(seed);
        PseudoRandom {
            state: if state == 0 {
                0x9e37_79b9_7f4a_7c15
            } else {
                state
            },
            pending: [0; 8],
            used: 8,
        }
    }

    fn next_word(&mut self) -> [u8; 8] {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes()
    }
}

impl Read for PseudoRandom {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while self.used < 8 && filled < buf.len() {
            buf[filled] = self.pending[self.used];
            self.used += 1;
            filled += 1;
        }
        let mut chunks = buf[filled..].chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&self.next_word());
        }
        let tail = chunks.into_remainder();
        if !tail.is_empty() {
            self.pending = self.next_word();
            let n = tail.len();
            tail.copy_from_slice(&self.pending[..n]);
            self.used = n;
        }
        Ok(buf.len())
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Derives a seed from `seed` and `parts` (FNV-1a over each part, its length as a
/// separator, then splitmix64): stable across Rust versions, unlike std's hashers.
fn mix(seed: u64, parts: &[&[u8]]) -> u64 {
    let mut h = splitmix64(seed);
    for part in parts {
        for &b in *part {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        h = splitmix64(h ^ part.len() as u64);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushgate::digest::HashingReader;
    use std::collections::BTreeMap;
    use std::process::Command;

    /// The sha256 and size of a file, streamed.
    fn file_digest(path: &Path) -> io::Result<(Digest, u64)> {
        HashingReader::new(File::open(path)?).finish()
    }

    fn image(oci_arch: &str, seed: u64) -> SampleImage {
        SampleImage {
            oci_arch: oci_arch.into(),
            variant: None,
            layers: 3,
            layer_size: 5000,
            seed,
        }
    }

    /// Every regular file of a (small) archive, by path.
    fn archive_files(path: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut tar = tar::Archive::new(File::open(path).unwrap());
        let mut files = BTreeMap::new();
        for entry in tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            files.insert(name, data);
        }
        files
    }

    fn blob<'a>(files: &'a BTreeMap<String, Vec<u8>>, digest: &Digest) -> &'a [u8] {
        &files[&format!("blobs/sha256/{}", digest.hex())]
    }

    fn read_json(path: &Path) -> Value {
        serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn archive_parses_back_and_digests_match() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.ociarchive");
        let img = SampleImage {
            variant: Some("v8".into()),
            ..image("arm64", 7)
        };
        let w = write_oci_archive(&path, &img).unwrap();

        assert_eq!(
            file_digest(&path).unwrap(),
            (w.file_sha256.clone(), w.file_size)
        );
        let files = archive_files(&path);
        assert_eq!(files["oci-layout"], OCI_LAYOUT);
        for (name, data) in &files {
            if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                assert_eq!(Digest::of(data).hex(), hex, "blob {name}");
            }
        }
        // No temp file left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

        let index: Value = serde_json::from_slice(&files["index.json"]).unwrap();
        assert_eq!(index["schemaVersion"], 2);
        assert_eq!(index["mediaType"], OCI_INDEX);
        let manifests = index["manifests"].as_array().unwrap();
        assert_eq!(manifests.len(), 1);
        assert_eq!(manifests[0]["digest"], w.manifest_digest.as_str());
        let manifest_bytes = blob(&files, &w.manifest_digest);
        assert_eq!(Digest::of(manifest_bytes), w.manifest_digest);
        assert_eq!(manifests[0]["size"], manifest_bytes.len());

        let manifest: Value = serde_json::from_slice(manifest_bytes).unwrap();
        assert_eq!(manifest["mediaType"], OCI_MANIFEST);
        assert_eq!(manifest["config"]["digest"], w.config_digest.as_str());
        assert_eq!(manifest["annotations"][VERSION_ANNOTATION], "sample-7");
        let config: Value = serde_json::from_slice(blob(&files, &w.config_digest)).unwrap();
        assert_eq!(config["architecture"], "arm64");
        assert_eq!(config["variant"], "v8");
        assert_eq!(config["os"], "linux");

        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 3);
        for (i, layer) in layers.iter().enumerate() {
            assert_eq!(layer["digest"], w.layer_digests[i].as_str());
            assert_eq!(layer["mediaType"], MEDIA_TYPE_LAYER);
            let compressed = blob(&files, &w.layer_digests[i]);
            assert_eq!(layer["size"], compressed.len());
            let mut tar_bytes = Vec::new();
            flate2::read::GzDecoder::new(compressed)
                .read_to_end(&mut tar_bytes)
                .unwrap();
            assert_eq!(
                config["rootfs"]["diff_ids"][i],
                Digest::of(&tar_bytes).as_str()
            );
            let mut inner = tar::Archive::new(&tar_bytes[..]);
            let entries: Vec<_> = inner
                .entries()
                .unwrap()
                .map(|e| e.unwrap().size())
                .collect();
            assert_eq!(entries, [5000]);
        }
    }

    #[test]
    fn archives_are_deterministic_and_differ_per_arch_and_layer() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_oci_archive(&dir.path().join("a"), &image("amd64", 1)).unwrap();
        let b = write_oci_archive(&dir.path().join("b"), &image("amd64", 1)).unwrap();
        let c = write_oci_archive(&dir.path().join("c"), &image("s390x", 1)).unwrap();
        assert_eq!(a, b);
        let mut all: Vec<_> = a.layer_digests.iter().chain(&c.layer_digests).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 6);
    }

    #[test]
    fn pseudo_random_stream_does_not_depend_on_read_sizes() {
        let mut whole = vec![0u8; 1000];
        PseudoRandom::new(3).read_exact(&mut whole).unwrap();
        let mut pieces = Vec::new();
        let mut r = PseudoRandom::new(3);
        for n in [1, 7, 3, 64, 5, 920] {
            let mut buf = vec![0u8; n];
            r.read_exact(&mut buf).unwrap();
            pieces.extend(buf);
        }
        assert_eq!(whole, pieces);
    }

    #[test]
    fn layout_dir_holds_the_same_image_as_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        let img = image("ppc64le", 9);
        let a = write_oci_archive(&dir.path().join("a.ociarchive"), &img).unwrap();
        let layout = dir.path().join("layout");
        let d = write_oci_layout_dir(&layout, &img).unwrap();
        assert_eq!(a.manifest_digest, d.manifest_digest);
        assert_eq!(a.layer_digests, d.layer_digests);
        assert_eq!(d.file_sha256, d.manifest_digest);
        let blobs = layout.join("blobs/sha256");
        assert_eq!(fs::read_dir(&blobs).unwrap().count(), 5);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let layer = fs::metadata(blobs.join(d.layer_digests[0].hex())).unwrap();
            assert_eq!(layer.permissions().mode() & 0o777, 0o644);
        }
        for entry in fs::read_dir(&blobs).unwrap() {
            let entry = entry.unwrap();
            let (digest, _) = file_digest(&entry.path()).unwrap();
            assert_eq!(digest.hex(), entry.file_name().to_str().unwrap());
        }
        let (_, manifest_size) = file_digest(&blobs.join(d.manifest_digest.hex())).unwrap();
        assert_eq!(manifest_size, d.file_size);
        let index = read_json(&layout.join("index.json"));
        assert_eq!(index["manifests"][0]["digest"], d.manifest_digest.as_str());
    }

    #[test]
    fn build_meta_json_and_kubevirt_on_first_arch_only() {
        let dir = tempfile::tempdir().unwrap();
        let build = SampleBuild::small("41.1", &["x86_64", "aarch64"]);
        write_build(dir.path(), &build).unwrap();
        let mut ostree_digests = Vec::new();
        for arch in ["x86_64", "aarch64"] {
            let arch_dir = dir.path().join("builds/41.1").join(arch);
            let text = fs::read_to_string(arch_dir.join("meta.json")).unwrap();
            assert!(
                text.starts_with("{\n    \"name\": \"fedora-coreos\",\n    \"buildid\": \"41.1\"")
            );
            let meta: Value = serde_json::from_str(&text).unwrap();
            let keys: Vec<_> = meta.as_object().unwrap().keys().cloned().collect();
            assert_eq!(
                keys,
                [
                    "name",
                    "buildid",
                    "coreos-assembler.basearch",
                    "ostree-commit",
                    "images"
                ]
            );
            assert_eq!(meta["coreos-assembler.basearch"], arch);
            let images = meta["images"].as_object().unwrap();
            assert_eq!(images.contains_key("kubevirt"), arch == "x86_64");
            for entry in images.values() {
                let path = arch_dir.join(entry["path"].as_str().unwrap());
                let (digest, size) = file_digest(&path).unwrap();
                assert_eq!(entry["sha256"], digest.hex());
                assert_eq!(entry["size"], size);
                assert_eq!(entry["skip-compression"], true);
            }
            let ostree = &images["ostree"];
            assert_eq!(
                ostree["path"],
                format!("fedora-coreos-41.1-ostree.{arch}.ociarchive")
            );
            let files = archive_files(&arch_dir.join(ostree["path"].as_str().unwrap()));
            let index: Value = serde_json::from_slice(&files["index.json"]).unwrap();
            let manifest_digest: Digest = index["manifests"][0]["digest"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let manifest: Value = serde_json::from_slice(blob(&files, &manifest_digest)).unwrap();
            assert_eq!(manifest["annotations"][VERSION_ANNOTATION], "41.1");
            let config_digest: Digest = manifest["config"]["digest"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let config: Value = serde_json::from_slice(blob(&files, &config_digest)).unwrap();
            let expected = if arch == "aarch64" {
                ("arm64", json!("v8"))
            } else {
                ("amd64", Value::Null)
            };
            assert_eq!(
                (
                    config["architecture"].as_str().unwrap(),
                    config["variant"].clone()
                ),
                expected
            );
            ostree_digests.push(manifest_digest);
        }
        assert_ne!(ostree_digests[0], ostree_digests[1]);
    }

    #[test]
    fn second_build_goes_first_in_builds_json() {
        let dir = tempfile::tempdir().unwrap();
        write_build(dir.path(), &SampleBuild::small("41.1", &["x86_64"])).unwrap();
        write_build(
            dir.path(),
            &SampleBuild::small("41.2", &["x86_64", "s390x"]),
        )
        .unwrap();
        let doc = read_json(&dir.path().join("builds/builds.json"));
        assert_eq!(doc["schema-version"], "1.0.0");
        assert_eq!(
            doc["builds"],
            json!([{"id": "41.2", "arches": ["x86_64", "s390x"]}, {"id": "41.1", "arches": ["x86_64"]}])
        );
        // Rewriting an existing build moves it first without duplicating it.
        write_build(dir.path(), &SampleBuild::small("41.1", &["x86_64"])).unwrap();
        let doc = read_json(&dir.path().join("builds/builds.json"));
        let ids: Vec<_> = doc["builds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].clone())
            .collect();
        assert_eq!(ids, [json!("41.1"), json!("41.2")]);
        // Layers differ between builds.
        let meta = |id: &str| read_json(&dir.path().join(format!("builds/{id}/x86_64/meta.json")));
        assert_ne!(
            meta("41.1")["images"]["ostree"]["sha256"],
            meta("41.2")["images"]["ostree"]["sha256"]
        );
    }

    #[test]
    fn a_product_build_has_extensions_on_every_arch_and_kubevirt_on_the_first() {
        let dir = tempfile::tempdir().unwrap();
        write_build(
            dir.path(),
            &SampleBuild::product("41.1", &["x86_64", "s390x"]),
        )
        .unwrap();
        for arch in ["x86_64", "s390x"] {
            let meta = read_json(&dir.path().join("builds/41.1").join(arch).join("meta.json"));
            let images = meta["images"].as_object().unwrap();
            assert!(images.contains_key("ostree"), "{arch}");
            assert!(images.contains_key("extensions-container"), "{arch}");
            assert_eq!(images.contains_key("kubevirt"), arch == "x86_64");
        }
    }

    #[test]
    fn container_on_an_arch_the_build_lacks_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut build = SampleBuild::small("41.1", &["x86_64"]);
        build.containers[1].arches = Some(vec!["s390x".into()]);
        assert!(write_build(dir.path(), &build).is_err());
        assert!(!dir.path().join("builds/builds.json").exists());
    }

    #[test]
    fn skopeo_reads_the_manifest_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.ociarchive");
        let w = write_oci_archive(&path, &image("amd64", 5)).unwrap();
        let layout = dir.path().join("layout");
        write_oci_layout_dir(&layout, &image("amd64", 5)).unwrap();
        let manifest =
            archive_files(&path)[&format!("blobs/sha256/{}", w.manifest_digest.hex())].clone();
        for reference in [
            format!("oci-archive:{}", path.display()),
            format!("oci:{}", layout.display()),
        ] {
            let out = match Command::new("skopeo")
                .args(["inspect", "--raw", &reference])
                .output()
            {
                Ok(out) => out,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    eprintln!("skopeo not installed: skipping the cross-check");
                    return;
                }
                Err(e) => panic!("running skopeo: {e}"),
            };
            assert!(
                out.status.success(),
                "skopeo: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.stdout, manifest, "{reference}");
        }
    }
}
