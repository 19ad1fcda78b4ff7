//! OCI image layouts, packed (`oci-archive:`, a tar) or not (`oci:`, a directory).
//!
//! Nothing is extracted. An archive is read once, front to back: that single pass
//! hashes the whole file (to check it against meta.json) and notes where each blob
//! sits in the tar. Blobs are then read as byte ranges of the archive, so pushing
//! a 1 GiB layer never holds more than a buffer of it in memory.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::digest::{Digest, HashingReader};
use crate::manifest::Descriptor;

/// The largest manifest, config or index.json pushgate reads into memory.
pub const MAX_JSON_BLOB: u64 = 4 * 1024 * 1024;

/// Where a blob's bytes are: a file, from `offset`, `len` bytes long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRange {
    pub file: PathBuf,
    pub offset: u64,
    pub len: u64,
}

#[derive(Debug)]
enum Layout {
    Archive {
        path: PathBuf,
        blobs: HashMap<Digest, (u64, u64)>,
    },
    Dir {
        path: PathBuf,
    },
}

/// A reader that adds what it reads to a shared counter.
struct Counted<'a, R> {
    inner: R,
    read: &'a AtomicU64,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// An opened OCI image layout holding exactly the blobs its index.json needs.
#[derive(Debug)]
pub struct OciLayout {
    layout: Layout,
    index_json: Vec<u8>,
}

/// What the caller expects of an archive file, from meta.json.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    pub sha256: &'a Digest,
    pub size: Option<u64>,
}

#[derive(Deserialize)]
struct IndexJson {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    manifests: Vec<Descriptor>,
}

impl OciLayout {
    /// Indexes an OCI archive, verifying its sha256 (and size) when `expected` is given.
    pub fn open_archive(path: &Path, expected: Option<Expected<'_>>) -> Result<OciLayout> {
        OciLayout::open_archive_counting(path, expected, &AtomicU64::new(0))
    }

    /// [`OciLayout::open_archive`], adding to `read` the bytes read so far: reading
    /// (and hashing) a large archive takes long enough to be worth showing.
    pub fn open_archive_counting(
        path: &Path,
        expected: Option<Expected<'_>>,
        read: &AtomicU64,
    ) -> Result<OciLayout> {
        let file = File::open(path)
            .with_context(|| format!("cannot open OCI archive {}", path.display()))?;
        let on_disk = file.metadata().map(|m| m.len()).ok();
        if let (Some(want), Some(have)) = (expected.as_ref().and_then(|e| e.size), on_disk)
            && want != have
        {
            bail!(
                "OCI archive {} is {have} bytes but meta.json says {want}: \
                 the file is truncated or not the one the build produced",
                path.display()
            );
        }
        let counted = Counted { inner: file, read };
        let mut tar = tar::Archive::new(HashingReader::new(BufReader::with_capacity(
            1 << 20,
            counted,
        )));
        let mut blobs = HashMap::new();
        let mut index_json = None;
        let corrupt =
            |e: std::io::Error| anyhow::anyhow!("corrupt OCI archive {}: {e}", path.display());
        for entry in tar.entries().map_err(corrupt)? {
            let mut entry = entry.map_err(corrupt)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = entry
                .path()
                .map_err(corrupt)?
                .to_string_lossy()
                .into_owned();
            let name = name.trim_start_matches("./");
            if name == "index.json" {
                if entry.size() > MAX_JSON_BLOB {
                    bail!(
                        "corrupt OCI archive {}: index.json is too large",
                        path.display()
                    );
                }
                let mut buf = Vec::new();
                entry.read_to_end(&mut buf).map_err(corrupt)?;
                index_json = Some(buf);
            } else if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                let digest = Digest::from_hex(hex).map_err(|_| {
                    anyhow::anyhow!(
                        "corrupt OCI archive {}: bad blob name {name}",
                        path.display()
                    )
                })?;
                blobs.insert(digest, (entry.raw_file_position(), entry.size()));
            }
        }
        let (sha256, _len) = tar.into_inner().finish().map_err(corrupt)?;
        if let Some(e) = expected
            && &sha256 != e.sha256
        {
            bail!(
                "OCI archive {} has sha256 {} but meta.json says {}: \
                 the file is corrupt or not the one the build produced",
                path.display(),
                sha256.hex(),
                e.sha256.hex()
            );
        }
        let index_json = index_json.ok_or_else(|| {
            anyhow::anyhow!(
                "corrupt OCI archive {}: no index.json (is it an OCI archive?)",
                path.display()
            )
        })?;
        Ok(OciLayout {
            layout: Layout::Archive {
                path: path.to_path_buf(),
                blobs,
            },
            index_json,
        })
    }

    /// Opens an OCI image layout directory.
    pub fn open_dir(path: &Path) -> Result<OciLayout> {
        let index = path.join("index.json");
        let index_json = std::fs::read(&index).with_context(|| {
            format!(
                "cannot read {}: is {} an OCI image layout?",
                index.display(),
                path.display()
            )
        })?;
        Ok(OciLayout {
            layout: Layout::Dir {
                path: path.to_path_buf(),
            },
            index_json,
        })
    }

    /// A name for messages: the archive or directory path.
    pub fn label(&self) -> String {
        match &self.layout {
            Layout::Archive { path, .. } | Layout::Dir { path } => path.display().to_string(),
        }
    }

    /// The one image manifest this layout's index.json names.
    pub fn manifest_descriptor(&self) -> Result<Descriptor> {
        let index: IndexJson = serde_json::from_slice(&self.index_json)
            .with_context(|| format!("{}: malformed index.json", self.label()))?;
        if index.schema_version != 2 {
            bail!(
                "{}: index.json schemaVersion {} (expected 2)",
                self.label(),
                index.schema_version
            );
        }
        match <[Descriptor; 1]>::try_from(index.manifests) {
            Ok([d]) => Ok(d),
            Err(v) => bail!(
                "{}: index.json lists {} manifests; pushgate publishes archives holding exactly one image",
                self.label(),
                v.len()
            ),
        }
    }

    /// Where blob `digest` is, checking it is there and `size` bytes long.
    pub fn blob_range(&self, digest: &Digest, size: u64) -> Result<BlobRange> {
        let range = match &self.layout {
            Layout::Archive { path, blobs } => {
                let &(offset, len) = blobs.get(digest).ok_or_else(|| {
                    anyhow::anyhow!(
                        "{}: blob {digest} is missing from the archive",
                        self.label()
                    )
                })?;
                BlobRange {
                    file: path.clone(),
                    offset,
                    len,
                }
            }
            Layout::Dir { path } => {
                let file = path.join("blobs").join("sha256").join(digest.hex());
                let len = std::fs::metadata(&file)
                    .with_context(|| format!("{}: blob {digest} is missing", self.label()))?
                    .len();
                BlobRange {
                    file,
                    offset: 0,
                    len,
                }
            }
        };
        if range.len != size {
            bail!(
                "{}: blob {digest} is {} bytes but its descriptor says {size}",
                self.label(),
                range.len
            );
        }
        Ok(range)
    }

    /// Reads a small blob (manifest, config) and checks its digest.
    pub fn read_blob(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        if desc.size > MAX_JSON_BLOB {
            bail!(
                "{}: blob {} is too large to be a manifest or config",
                self.label(),
                desc.digest
            );
        }
        let range = self.blob_range(&desc.digest, desc.size)?;
        let mut file = File::open(&range.file)
            .with_context(|| format!("cannot open {}", range.file.display()))?;
        file.seek(SeekFrom::Start(range.offset))?;
        let mut buf = Vec::with_capacity(range.len as usize);
        file.take(range.len).read_to_end(&mut buf)?;
        if Digest::of(&buf) != desc.digest {
            bail!(
                "{}: blob {} does not match its digest: the layout is corrupt",
                self.label(),
                desc.digest
            );
        }
        Ok(buf)
    }
}
