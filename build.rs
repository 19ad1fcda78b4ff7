//! Build facts for `pushgate --version`: the git commit (`git rev-parse --short HEAD`,
//! "unknown" outside a git checkout) and the wasmtime version the binary is built
//! with (from Cargo.lock).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=Cargo.lock");

    let commit = git(&root, &["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo::rustc-env=PUSHGATE_GIT_COMMIT={commit}");
    // Rebuild when HEAD moves: HEAD itself (a branch switch) and the branch's ref (a
    // commit). In a worktree these live in different git directories, so ask git.
    let mut watch = vec![git(&root, &["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&root, &["symbolic-ref", "-q", "HEAD"]) {
        watch.push(git(&root, &["rev-parse", "--git-path", &branch]));
        watch.push(git(&root, &["rev-parse", "--git-path", "packed-refs"]));
    }
    for path in watch.into_iter().flatten() {
        let path = root.join(path);
        if path.exists() {
            println!("cargo::rerun-if-changed={}", path.display());
        }
    }

    let lock = std::fs::read_to_string(root.join("Cargo.lock")).expect("read Cargo.lock");
    let wasmtime = locked_version(&lock, "wasmtime").expect("wasmtime is in Cargo.lock");
    println!("cargo::rustc-env=PUSHGATE_WASMTIME_VERSION={wasmtime}");
}

/// `git ARGS` in `dir`, trimmed; None when git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_string())
}

/// The version of package `name` in a Cargo.lock.
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let wanted = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == wanted {
            let version = lines.next()?.strip_prefix("version = \"")?;
            return Some(version.trim_end_matches('"').to_string());
        }
    }
    None
}
