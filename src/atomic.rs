//! Replacing a file so that a crash or a power loss at any instant leaves the old
//! or the new contents, never a torn file; and cleaning up after writers that
//! were killed. The one way pushgate writes a file that others read: meta.json
//! and the digest file ([`crate::record`]), the compiled-module cache
//! ([`crate::policy::cache`]) and the policy artifact cache
//! ([`crate::policy::remote`]).

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The permissions the new file gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Those of the file replaced, or these when there is none (a file others
    /// own and read, such as meta.json, keeps what its owner gave it).
    KeepOr(u32),
    /// These, whatever the file replaced had (a private cache entry).
    Exactly(u32),
}

/// Permissions of a file we create from scratch beside cosa's (what cosa and
/// podman use).
pub const SHARED: Mode = Mode::KeepOr(0o644);
/// A file only this user may read: the policy caches.
pub const PRIVATE: Mode = Mode::Exactly(0o600);

/// Replaces `path` with `bytes`: a temp file in the same directory (so the
/// rename cannot cross filesystems), its permissions set before anything is
/// written to it, written, fsynced, renamed over `path`, then the directory
/// fsynced so the rename survives a power loss too. On any failure the temp file
/// is removed and `path` is untouched.
pub fn write(path: &Path, bytes: &[u8], mode: Mode) -> io::Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mode = match mode {
        Mode::Exactly(m) => m,
        Mode::KeepOr(new) => match fs::metadata(path) {
            Ok(meta) => meta.permissions().mode(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => new,
            Err(e) => return Err(e),
        },
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(&temp_prefix(name))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    // On failure the PersistError holds the temp file; dropping it removes the file.
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()
}

/// `.NAME.`: how the temp files of `NAME` begin (they end in `.tmp`).
fn temp_prefix(name: &std::ffi::OsStr) -> OsString {
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    prefix
}

/// Removes the temp files a killed writer left beside `path`. Only for a file
/// whose writers hold a lock while they write: under the lock, any temp file
/// that exists is a dead one. Best effort: a leftover temp file is litter,
/// never a hazard.
pub fn remove_dead_writers_temps(path: &Path) {
    for temp in temps_of(path) {
        let _ = fs::remove_file(temp);
    }
}

/// The temp files of writes of `path` there are beside it, live or dead.
pub fn temps_of(path: &Path) -> Vec<PathBuf> {
    let (Some(name), Ok(entries)) = (path.file_name(), fs::read_dir(parent_dir(path))) else {
        return Vec::new();
    };
    let prefix = temp_prefix(name);
    let prefix = prefix.as_bytes();
    entries
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.as_bytes();
            n.starts_with(prefix) && n.ends_with(b".tmp") && n.len() > prefix.len() + 4
        })
        .map(|e| e.path())
        .collect()
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_new_file_gets_the_mode_and_the_bytes_and_no_temp_is_left() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.json");
        write(&p, b"one", SHARED).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(mode_of(&p), 0o644);
        let q = d.path().join("private");
        write(&q, b"two", PRIVATE).unwrap();
        assert_eq!(mode_of(&q), 0o600);
        assert_eq!(names(d.path()), ["f.json", "private"]);
    }

    #[test]
    fn a_replaced_file_keeps_its_mode_unless_one_is_imposed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("meta.json");
        fs::write(&p, "old").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        write(&p, b"new", SHARED).unwrap();
        assert_eq!(
            (fs::read(&p).unwrap(), mode_of(&p)),
            (b"new".to_vec(), 0o640)
        );
        fs::set_permissions(&p, fs::Permissions::from_mode(0o666)).unwrap();
        write(&p, b"newer", PRIVATE).unwrap();
        assert_eq!(mode_of(&p), 0o600);
    }

    #[test]
    fn a_failed_write_leaves_the_target_and_no_temp() {
        let d = tempfile::tempdir().unwrap();
        // A non-empty directory cannot be renamed over.
        let p = d.path().join("target");
        fs::create_dir(&p).unwrap();
        fs::write(p.join("inside"), "kept").unwrap();
        write(&p, b"x", SHARED).unwrap_err();
        assert_eq!(fs::read_to_string(p.join("inside")).unwrap(), "kept");
        assert_eq!(names(d.path()), ["target"]);
    }

    #[test]
    fn only_the_temp_files_of_the_named_file_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("meta.json");
        for n in [
            ".meta.json.abc123.tmp",
            ".meta.json..tmp",
            ".other.json.abc.tmp",
            "meta.json",
        ] {
            fs::write(d.path().join(n), "").unwrap();
        }
        remove_dead_writers_temps(&p);
        assert_eq!(
            names(d.path()),
            [".meta.json..tmp", ".other.json.abc.tmp", "meta.json"]
        );
    }
}
