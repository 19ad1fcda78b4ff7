//! OCI image layouts, packed (`oci-archive:`, a tar) or not (`oci:`, a directory).
//!
//! Nothing is extracted. An archive is indexed from its tar headers alone (seeking
//! over the contents), so what it holds and where is known at once, whatever its
//! size. Its sha256 is checked against meta.json by a separate full read, only when
//! something from it is to be published (and then while its blobs go up). Blobs are
//! read as byte ranges of the archive, so pushing a 1 GiB layer never holds more
//! than a buffer of it in memory.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::blob::BlobRange;
use crate::digest::{Digest, HashingReader};
use crate::manifest::Descriptor;

/// The largest manifest, config or index.json pushgate reads into memory.
pub const MAX_JSON_BLOB: u64 = 4 * 1024 * 1024;

#[derive(Debug)]
enum Layout {
    Archive {
        path: PathBuf,
        blobs: HashMap<Digest, (u64, u64)>,
        /// What meta.json says the whole file hashes to, if anything.
        sha256: Option<Digest>,
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
    /// Indexes an OCI archive and verifies its sha256 (and size) when `expected`
    /// is given: [`index_archive`](Self::index_archive) then
    /// [`verify`](Self::verify).
    pub fn open_archive(path: &Path, expected: Option<Expected<'_>>) -> Result<OciLayout> {
        let layout = OciLayout::index_archive(path, expected)?;
        layout.verify()?;
        Ok(layout)
    }

    /// Indexes an OCI archive from its tar headers alone, seeking over the
    /// members' contents: what an archive holds and where is known without
    /// reading it. Only index.json is read. The size is checked against
    /// `expected` now; the sha256 is checked by [`verify`](Self::verify), which
    /// reads the whole file, when something from the archive is to be published.
    pub fn index_archive(path: &Path, expected: Option<Expected<'_>>) -> Result<OciLayout> {
        let file = File::open(path)
            .with_context(|| format!("cannot open OCI archive {}", path.display()))?;
        let on_disk = file
            .metadata()
            .with_context(|| format!("cannot read OCI archive {}", path.display()))?
            .len();
        if let Some(want) = expected.as_ref().and_then(|e| e.size)
            && want != on_disk
        {
            bail!(
                "OCI archive {} is {on_disk} bytes but meta.json says {want}: \
                 the file is truncated or not the one the build produced",
                path.display()
            );
        }
        // Small buffer: between headers the reader seeks, so a large one would
        // only read contents that are skipped.
        let mut tar = tar::Archive::new(BufReader::with_capacity(16 * 1024, file));
        let mut blobs = HashMap::new();
        let mut index_json = None;
        let corrupt =
            |e: std::io::Error| anyhow::anyhow!("corrupt OCI archive {}: {e}", path.display());
        for entry in tar.entries_with_seek().map_err(corrupt)? {
            let mut entry = entry.map_err(corrupt)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let (offset, size) = (entry.raw_file_position(), entry.size());
            if offset.saturating_add(size) > on_disk {
                bail!(
                    "corrupt OCI archive {}: it ends inside a member (truncated?)",
                    path.display()
                );
            }
            let name = entry
                .path()
                .map_err(corrupt)?
                .to_string_lossy()
                .into_owned();
            let name = name.trim_start_matches("./");
            if name == "index.json" {
                if size > MAX_JSON_BLOB {
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
                blobs.insert(digest, (offset, size));
            }
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
                sha256: expected.map(|e| e.sha256.clone()),
            },
            index_json,
        })
    }

    /// Whether [`verify`](Self::verify) has a checksum to check (an archive of a
    /// cosa build, whose meta.json names its sha256).
    pub fn has_checksum(&self) -> bool {
        matches!(
            &self.layout,
            Layout::Archive {
                sha256: Some(_),
                ..
            }
        )
    }

    /// Reads the whole archive and checks it against the sha256 meta.json gives
    /// for it; nothing to do for a layout without one.
    pub fn verify(&self) -> Result<()> {
        self.verify_counting(&AtomicU64::new(0))
    }

    /// [`verify`](Self::verify), adding to `read` the bytes read so far: hashing
    /// a large archive takes long enough to be worth showing.
    pub fn verify_counting(&self, read: &AtomicU64) -> Result<()> {
        let Layout::Archive {
            path,
            sha256: Some(want),
            ..
        } = &self.layout
        else {
            return Ok(());
        };
        let file = File::open(path)
            .with_context(|| format!("cannot open OCI archive {}", path.display()))?;
        let counted = Counted { inner: file, read };
        let (have, _) = HashingReader::new(BufReader::with_capacity(1 << 20, counted))
            .finish()
            .with_context(|| format!("cannot read OCI archive {}", path.display()))?;
        if have != *want {
            bail!(
                "OCI archive {} has sha256 {} but meta.json says {}: \
                 the file is corrupt or not the one the build produced",
                path.display(),
                have.hex(),
                want.hex()
            );
        }
        Ok(())
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
            Layout::Archive { path, blobs, .. } => {
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
