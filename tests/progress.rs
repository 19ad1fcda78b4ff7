//! Upload progress: drawn on a terminal, never otherwise (pipes, `--json`, `--quiet`).
//! A terminal is given to pushgate through `script(1)`, which runs it on a pty.

mod support;

use std::path::Path;
use std::process::Command;

use pushgate_sample::{SampleBuild, write_build};
use support::{Registry, pushgate};

fn build(dir: &Path) {
    let mut b = SampleBuild::small("41.1", &["x86_64", "aarch64"]);
    b.layers = 4;
    b.layer_size = 1 << 20;
    write_build(dir, &b).unwrap();
}

fn args(reg: &Registry, repo: &str, wd: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "push",
        "--repo",
        &reg.repo(repo),
        "--tag",
        "stable",
        "--artifact",
        "ostree",
        "--metajsonname",
        repo,
        "--tls-verify=false",
        "--workdir",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(wd.display().to_string());
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// Runs pushgate on a pty; returns everything it wrote there.
fn on_terminal(args: &[String]) -> String {
    let cmd = pushgate();
    let program = cmd.get_program().to_string_lossy().into_owned();
    let line = std::iter::once(program)
        .chain(args.iter().cloned())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = Command::new("script");
    script.args(["-qec", &line, "/dev/null"]);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    let out = script.output().expect("run script(1)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_terminal_shows_blobs_and_bytes_per_arch() {
    let reg = Registry::start();
    let wd = tempfile::tempdir().unwrap();
    build(wd.path());
    let seen = on_terminal(&args(&reg, "shown", wd.path(), &[]));
    // How far each redraw got depends on timing; that a line names every arch with
    // its blob count and byte total does not.
    for arch in ["x86_64", "aarch64"] {
        let shown = seen.split(arch).skip(1).any(|rest| {
            rest.split_once(" blobs ").is_some_and(|(count, bytes)| {
                count.ends_with("/5") && bytes.contains("MiB/4.0 MiB")
            })
        });
        assert!(shown, "no progress for {arch} in {seen:?}");
    }
    assert!(seen.contains("pushed"), "{seen:?}");
}

#[test]
fn json_and_quiet_draw_nothing_even_on_a_terminal() {
    let reg = Registry::start();
    let wd = tempfile::tempdir().unwrap();
    build(wd.path());
    let seen = on_terminal(&args(&reg, "json", wd.path(), &["--json"]));
    assert!(!seen.contains("/5 blobs"), "{seen:?}");
    let seen = on_terminal(&args(&reg, "quiet", wd.path(), &["--quiet"]));
    assert!(!seen.contains("/5 blobs"), "{seen:?}");
    assert!(seen.contains("pushed"), "{seen:?}");
}

#[test]
fn without_a_terminal_stderr_stays_empty() {
    let reg = Registry::start();
    let wd = tempfile::tempdir().unwrap();
    build(wd.path());
    let out = pushgate()
        .args(args(&reg, "piped", wd.path(), &[]))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("pushed"));
}
