//! Replacing a file so that a crash at any instant leaves the old or the new
//! contents, never a torn file, and cleaning up after writers that were killed.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Permissions of a file we create from scratch (what cosa and podman use).
const NEW_FILE_MODE: u32 = 0o644;

/// Temp file in the same directory, write, fsync, original permissions, rename, fsync
/// the directory. On any failure the temp file is removed and `path` is untouched.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mode = match fs::metadata(path) {
        Ok(meta) => meta.permissions().mode(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => NEW_FILE_MODE,
        Err(e) => return Err(e),
    };
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    // On failure the PersistError holds the temp file; dropping it removes the file.
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()
}

/// Removes the temp files a killed writer left beside `path`. Writers create them
/// only while holding the lock, so under the lock any that exist are dead ones.
/// Best effort: a leftover temp file is litter, never a hazard.
pub(crate) fn remove_dead_writers_temps(path: &Path) {
    let (Some(name), Ok(entries)) = (path.file_name(), fs::read_dir(parent_dir(path))) else {
        return;
    };
    let mut prefix = b".".to_vec();
    prefix.extend_from_slice(name.as_bytes());
    prefix.push(b'.');
    for e in entries.flatten() {
        let n = e.file_name();
        let n = n.as_bytes();
        if n.starts_with(&prefix) && n.ends_with(b".tmp") && n.len() > prefix.len() + 4 {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}
