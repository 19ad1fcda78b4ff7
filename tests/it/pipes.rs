//! Closed pipes end quietly: every command, with its stdout (or stderr) a pipe whose
//! reader has gone (`pushgate ... | head -c 1`), exits with its usual status, without
//! a panic. The pipes are closed before pushgate starts, so every write it makes
//! meets a closed pipe.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::run::{path_str, s};
use crate::support::{Registry, policy_module, pushgate};
use pushgate_sample::{SampleBuild, write_build};

const BUILD: &str = "41.20261127.1.0";
const ARCHES: [&str; 2] = ["x86_64", "aarch64"];

/// Which stream of pushgate is a pipe with no reader.
#[derive(Clone, Copy, Debug)]
enum Closed {
    Stdout,
    Stderr,
    Both,
}

/// Runs `cmd` with `closed` a pipe whose reader is already dropped; returns the exit
/// code and what pushgate wrote on stderr (empty when stderr is the closed one).
fn run_closed(cmd: &mut Command, closed: Closed) -> (Option<i32>, String) {
    let closed_pipe = || {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        writer
    };
    cmd.stdin(Stdio::null());
    match closed {
        Closed::Stdout => cmd.stdout(closed_pipe()).stderr(Stdio::piped()),
        Closed::Stderr => cmd.stdout(Stdio::null()).stderr(closed_pipe()),
        Closed::Both => cmd.stdout(closed_pipe()).stderr(closed_pipe()),
    };
    let out = cmd.output().expect("run pushgate");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts `args` exits `code`, without a panic, with `closed` a closed pipe.
fn ends_quietly(args: &[String], closed: Closed, code: i32) {
    let (status, stderr) = run_closed(pushgate().args(args), closed);
    assert!(
        !stderr.contains("panicked"),
        "pushgate {args:?} panicked with {closed:?} closed: {stderr}"
    );
    assert_eq!(
        status,
        Some(code),
        "pushgate {args:?} with {closed:?} closed: {stderr}"
    );
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| s(a)).collect()
}

#[test]
fn help_and_version_end_quietly_on_a_closed_stdout() {
    for args in [
        &["--help"][..],
        &["--version"],
        &["push", "--help"],
        &["policy", "inspect", "--help"],
    ] {
        for closed in [Closed::Stdout, Closed::Both] {
            ends_quietly(&strings(args), closed, 0);
        }
    }
    // A usage error is told on stderr; closed, it still exits 2.
    ends_quietly(&strings(&["push", "--no-such-flag"]), Closed::Stderr, 2);
}

#[test]
fn policy_tools_end_quietly_on_a_closed_stdout() {
    let default = path_str(&policy_module("default"));
    let kubevirt = path_str(&policy_module("kubevirt"));
    let cases = path_str(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("policies")
            .join("default")
            .join("cases"),
    );
    let new_dir = tempfile::tempdir().unwrap();
    let commands: Vec<Vec<String>> = vec![
        strings(&["policy", "inspect", &default]),
        strings(&["policy", "inspect", "--json", &default]),
        strings(&["policy", "test", &default, &cases]),
        strings(&["policy", "test", "--json", &default, &cases]),
        strings(&["policy", "check", &default]),
        strings(&["policy", "check", "--json", &default]),
        strings(&["policy", "diff", &default, &kubevirt, &cases]),
        strings(&["policy", "diff", "--json", &default, &kubevirt, &cases]),
    ];
    for args in &commands {
        for closed in [Closed::Stdout, Closed::Both] {
            ends_quietly(args, closed, 0);
        }
    }
    let dir = path_str(new_dir.path());
    ends_quietly(
        &strings(&["policy", "new", "piped", "--dir", &dir]),
        Closed::Stdout,
        0,
    );
    // Errors go to stderr; closed, they still exit 1.
    for closed in [Closed::Stderr, Closed::Both] {
        ends_quietly(
            &strings(&["policy", "inspect", "/nonexistent/module.wasm"]),
            closed,
            1,
        );
    }
}

#[test]
fn push_release_and_facts_end_quietly_on_a_closed_stdout() {
    let reg = Registry::start();
    let wd = tempfile::tempdir().unwrap();
    write_build(wd.path(), &SampleBuild::small(BUILD, &ARCHES)).expect("sample build");
    let workdir = path_str(wd.path());
    let repo = reg.repo("fcos");
    let source = |cmd: &[&str]| {
        let mut args = strings(cmd);
        args.extend(strings(&[
            "--repo",
            &repo,
            "--tag",
            "stable",
            "--artifact",
            "ostree",
            "--metajsonname",
            "base-oscontainer",
            "--workdir",
            &workdir,
            "--tls-verify=false",
        ]));
        args
    };
    ends_quietly(&source(&["policy", "facts"]), Closed::Stdout, 0);
    ends_quietly(&source(&["push", "--dry-run"]), Closed::Stdout, 0);
    ends_quietly(&source(&["push", "--json"]), Closed::Stdout, 0);
    ends_quietly(&source(&["push"]), Closed::Both, 0);

    let config = wd.path().join("release.toml");
    fs::write(
        &config,
        format!(
            "workdir = {workdir:?}\nbuild = \"latest\"\n\n[[container]]\nname = \"os\"\n\
             artifact = \"ostree\"\nkey = \"base-oscontainer\"\nrepo = {repo:?}\n\
             tags = [\"stable\", \"{{build}}\"]\n"
        ),
    )
    .unwrap();
    let release = |extra: &[&str]| {
        let mut args = strings(&["release", "--config", &path_str(&config)]);
        args.push(s("--tls-verify=false"));
        args.extend(strings(extra));
        args
    };
    ends_quietly(&release(&[]), Closed::Stdout, 0);
    ends_quietly(&release(&["--json"]), Closed::Stdout, 0);
    ends_quietly(&release(&["--dry-run"]), Closed::Both, 0);

    // A failing push still exits 1 when neither stream has a reader.
    let bad = strings(&[
        "push",
        "--repo",
        &repo,
        "--tag",
        "x",
        "--image",
        "oci:/nonexistent",
        "--tls-verify=false",
    ]);
    ends_quietly(&bad, Closed::Both, 1);
}
