//! The policy cache (`$XDG_CACHE_HOME/pushgate/...`) is used only when no one
//! else could have put anything in it: a directory on the way that others can
//! write means no cache, and one warning naming the directory and what to do.
//! (The rule, directory by directory, is unit-tested in src/policy/cache.rs.)

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tempfile::TempDir;

use crate::support::run::{Run, path_str, s};
use crate::support::{policy_module, pushgate};

/// `pushgate policy inspect` of the default module, with its cache under `cache`.
fn inspect(cache: &Path) -> Run {
    let module = policy_module("default");
    Run::of(pushgate().env("XDG_CACHE_HOME", cache).args([
        s("policy"),
        s("inspect"),
        path_str(&module),
    ]))
}

fn compiled(cache: &Path) -> usize {
    fs::read_dir(cache.join("pushgate").join("modules"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".cwasm"))
            })
            .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_cache_directory_others_can_write_is_not_used_and_is_named() {
    let dir = TempDir::new().unwrap();
    let cache = dir.path().join("cache");
    let root = cache.join("pushgate");
    fs::create_dir_all(root.join("modules")).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o777)).unwrap();
    fs::set_permissions(root.join("modules"), fs::Permissions::from_mode(0o700)).unwrap();

    let run = inspect(&cache);
    assert_eq!(run.code, 0, "{}", run.context());
    let warning = format!(
        "pushgate: warning: not using the policy cache: {} is open to others (mode 777): \
         run `chmod go-w {}`",
        root.display(),
        root.display()
    );
    assert!(run.stderr.contains(&warning), "{}", run.context());
    assert_eq!(
        run.stderr.matches("warning").count(),
        1,
        "{}",
        run.context()
    );
    assert_eq!(compiled(&cache), 0, "nothing is kept in a refused cache");

    fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();
    let run = inspect(&cache);
    assert_eq!(run.code, 0, "{}", run.context());
    assert!(!run.stderr.contains("warning"), "{}", run.context());
    assert_eq!(compiled(&cache), 1, "the module is compiled into the cache");
}
