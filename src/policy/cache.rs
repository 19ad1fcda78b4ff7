//! Compiled policy modules kept on disk, so that a rerun does not compile again.
//!
//! Compiling a module with Cranelift costs a few hundred milliseconds, more than
//! everything else a no-op run does. The compiled form is kept in
//! `$XDG_CACHE_HOME/pushgate/modules` (or `~/.cache/pushgate/modules`), named by
//! the module's sha256 and the engine's compatibility hash, so a different module,
//! pushgate version, wasmtime version or engine setting never picks it up.
//!
//! Loading compiled code trusts it as much as pushgate's own, so only files in a
//! directory that this user owns and nobody else can enter are loaded, and only
//! files pushgate wrote there itself (atomically, 0600). Anything odd — another
//! owner, loose permissions, an unreadable or stale entry — means compiling as if
//! there were no cache. `PUSHGATE_POLICY_CACHE=off` turns it off.
//!
//! Whoever can rename a directory on the way to the cache can swap the cache for
//! one of their own, so the whole path is checked ([`trusted`]), with the rule
//! OpenSSH applies to `authorized_keys`:
//!
//! * the directories pushgate's cache owns, from `pushgate/` down, are real
//!   directories (not symlinks), owned by this user and writable by nobody
//!   else; the last one (`modules/`, `oci/`) cannot even be entered by anyone
//!   else;
//! * every directory above (`$XDG_CACHE_HOME` or `~/.cache`, resolved, up to
//!   `/`) is owned by this user or by root, and is not writable by group or
//!   others unless it is sticky (like `/tmp`, where nobody can rename what they
//!   do not own).
//!
//! A path that breaks the rule means no cache, and one warning on stderr naming
//! the directory and what to do.

use std::fs;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::atomic::{self, PRIVATE};
use crate::digest::Digest;

/// Where compiled modules are kept, if a private directory can be had.
pub fn dir() -> Option<PathBuf> {
    private_dir("modules")
}

/// `$XDG_CACHE_HOME/pushgate/NAME` (or `~/.cache/pushgate/NAME`), created
/// private, if it can be had and the cache is not turned off. Fetched policy
/// artifacts ([`super::remote`]) live beside the compiled modules, under the
/// same rules.
pub fn private_dir(name: &str) -> Option<PathBuf> {
    if std::env::var_os("PUSHGATE_POLICY_CACHE").is_some_and(|v| v == "off") {
        return None;
    }
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".cache"),
    };
    let root = base.join("pushgate");
    let dir = root.join(name);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .ok()?;
    match trusted(&root, &dir, euid()) {
        Ok(()) => Some(dir),
        Err(why) => {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                eprintln!(
                    "pushgate: warning: not using the policy cache: {why} \
                     (or set PUSHGATE_POLICY_CACHE=off, or XDG_CACHE_HOME to a private directory)"
                )
            });
            None
        }
    }
}

/// Whether the cache directory `leaf`, under pushgate's cache root `root`, can
/// be trusted by the user `uid` (the rule is in this module's doc); if not, why,
/// naming the directory and what to do.
fn trusted(root: &Path, leaf: &Path, uid: u32) -> Result<(), String> {
    let above = root.parent().unwrap_or(Path::new("/"));
    let above = fs::canonicalize(above).map_err(|e| format!("{}: {e}", above.display()))?;
    for dir in above.ancestors() {
        let m = fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mode = m.mode() & 0o7777;
        if m.uid() != uid && m.uid() != 0 {
            return Err(format!(
                "{} is owned by uid {}, neither you nor root: keep the cache under a \
                 directory of your own",
                dir.display(),
                m.uid()
            ));
        }
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            return Err(format!(
                "{} is writable by others (mode {mode:o}), who could swap the cache: \
                 run `chmod go-w {}`",
                dir.display(),
                dir.display()
            ));
        }
    }
    let below = leaf
        .strip_prefix(root)
        .map_err(|_| format!("{} is not under {}", leaf.display(), root.display()))?;
    let mut dir = root.to_path_buf();
    let mut owned = vec![dir.clone()];
    for c in below.components() {
        dir.push(c);
        owned.push(dir.clone());
    }
    for dir in &owned {
        let m = fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // Nobody else may write any of them; nobody else may enter the last.
        let closed = if dir == leaf { 0o077 } else { 0o022 };
        let mode = m.permissions().mode() & 0o7777;
        if !m.is_dir() {
            return Err(format!(
                "{} is not a directory (a symlink?): remove it, pushgate creates it",
                dir.display()
            ));
        }
        if m.uid() != uid {
            return Err(format!(
                "{} is owned by uid {}, not by you (uid {uid}): remove it, pushgate \
                 creates it",
                dir.display(),
                m.uid()
            ));
        }
        if mode & closed != 0 {
            return Err(format!(
                "{} is open to others (mode {mode:o}): run `chmod {} {}`",
                dir.display(),
                if dir == leaf { "go-rwx" } else { "go-w" },
                dir.display()
            ));
        }
    }
    Ok(())
}

fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The file a module's compiled form lives in, for this engine.
pub fn entry(dir: &Path, engine: &Engine, sha256: &Digest) -> PathBuf {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    env!("CARGO_PKG_VERSION").hash(&mut h);
    dir.join(format!("{}-{:016x}.cwasm", sha256.hex(), h.finish()))
}

/// Compiles `bytes`, or loads the compiled form a previous run kept.
/// Errors are the compiler's: a cache problem only costs a compilation.
pub fn compile(engine: &Engine, bytes: &[u8], sha256: &Digest) -> wasmtime::Result<Component> {
    let Some(dir) = dir() else {
        return Component::new(engine, bytes);
    };
    let path = entry(&dir, engine, sha256);
    if let Ok(m) = fs::symlink_metadata(&path)
        && m.is_file()
        && m.uid() == euid()
    {
        // SAFETY: the file was written by pushgate (precompile_component below) into
        // a directory only this user can write, under a name that pins the module's
        // content and the engine's compatibility; wasmtime also checks its header.
        if let Ok(c) = unsafe { Component::deserialize_file(engine, &path) } {
            return Ok(c);
        }
        let _ = fs::remove_file(&path);
    }
    let compiled = engine.precompile_component(bytes)?;
    let _ = atomic::write(&path, &compiled, PRIVATE);
    // SAFETY: these bytes come from precompile_component on this very engine.
    unsafe { Component::deserialize(engine, &compiled) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache laid out as pushgate makes it, under a fresh private directory:
    /// (that directory, `pushgate/`, `pushgate/modules/`).
    fn layout() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("pushgate");
        let leaf = root.join("modules");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&leaf)
            .unwrap();
        (d, root, leaf)
    }

    fn chmod(p: &Path, mode: u32) {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn refused(root: &Path, leaf: &Path, uid: u32) -> String {
        trusted(root, leaf, uid).expect_err("the cache is refused")
    }

    #[test]
    fn a_cache_made_private_by_pushgate_is_trusted() {
        let (_d, root, leaf) = layout();
        assert_eq!(trusted(&root, &leaf, euid()), Ok(()));
    }

    #[test]
    fn a_directory_pushgate_owns_open_to_others_is_refused_and_named() {
        let (_d, root, leaf) = layout();
        chmod(&root, 0o775);
        let why = refused(&root, &leaf, euid());
        assert!(
            why.starts_with(&format!("{} is open to others (mode 775)", root.display())),
            "{why}"
        );
        assert!(
            why.contains(&format!("chmod go-w {}", root.display())),
            "{why}"
        );

        // the last directory may not even be entered by others
        chmod(&root, 0o700);
        chmod(&leaf, 0o750);
        let why = refused(&root, &leaf, euid());
        assert!(why.starts_with(&leaf.display().to_string()), "{why}");
        assert!(why.contains("chmod go-rwx"), "{why}");
        // ... where a directory above it may be read by others
        chmod(&leaf, 0o700);
        chmod(&root, 0o755);
        assert_eq!(trusted(&root, &leaf, euid()), Ok(()));
    }

    #[test]
    fn a_directory_pushgate_owns_owned_by_someone_else_is_refused() {
        let (_d, root, leaf) = layout();
        let other = euid() + 1;
        let why = refused(&root, &leaf, other);
        // Above the root, the temp directory is this user's: fine if this user is
        // root, and refused as someone else's otherwise.
        let named = if euid() == 0 {
            root.clone()
        } else {
            root.parent().unwrap().to_path_buf()
        };
        assert!(
            why.starts_with(&format!("{} is owned by uid {}", named.display(), euid())),
            "{why}"
        );
    }

    #[test]
    fn a_symlink_in_place_of_a_directory_pushgate_owns_is_refused() {
        let (d, _root, _leaf) = layout();
        let elsewhere = d.path().join("elsewhere");
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&elsewhere)
            .unwrap();
        fs::DirBuilder::new()
            .mode(0o700)
            .create(elsewhere.join("modules"))
            .unwrap();
        let root = d.path().join("linked");
        std::os::unix::fs::symlink(&elsewhere, &root).unwrap();
        let why = refused(&root, &root.join("modules"), euid());
        assert!(
            why.starts_with(&format!("{} is not a directory", root.display())),
            "{why}"
        );
    }

    #[test]
    fn a_directory_above_writable_by_others_is_refused_unless_sticky() {
        let (d, root, leaf) = layout();
        chmod(d.path(), 0o777);
        let why = refused(&root, &leaf, euid());
        assert!(
            why.starts_with(&format!(
                "{} is writable by others (mode 777)",
                d.path().display()
            )),
            "{why}"
        );
        assert!(
            why.contains(&format!("chmod go-w {}", d.path().display())),
            "{why}"
        );
        // sticky, like /tmp: nobody can rename pushgate/ but its owner
        chmod(d.path(), 0o1777);
        assert_eq!(trusted(&root, &leaf, euid()), Ok(()));
        chmod(d.path(), 0o700);
    }

    #[test]
    fn entries_differ_by_module_and_engine() {
        let e1 = Engine::default();
        let mut c = wasmtime::Config::new();
        c.consume_fuel(true);
        let e2 = Engine::new(&c).unwrap();
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let dir = Path::new("/x");
        assert_ne!(entry(dir, &e1, &a), entry(dir, &e1, &b));
        assert_ne!(entry(dir, &e1, &a), entry(dir, &e2, &a));
        assert_eq!(entry(dir, &e1, &a), entry(dir, &e1, &a));
    }
}
