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
    let dir = base.join("pushgate").join(name);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .ok()?;
    private(&dir).then_some(dir)
}

/// Owned by this user, a directory, and closed to everyone else.
fn private(dir: &Path) -> bool {
    fs::symlink_metadata(dir)
        .is_ok_and(|m| m.is_dir() && m.uid() == euid() && m.permissions().mode() & 0o077 == 0)
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

    #[test]
    fn only_a_private_directory_is_trusted() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c");
        fs::DirBuilder::new().mode(0o700).create(&p).unwrap();
        assert!(private(&p));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(!private(&p));
        let f = d.path().join("file");
        fs::write(&f, "").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(!private(&f));
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
