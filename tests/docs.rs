//! Completion scripts and the man page, made from the clap definitions.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::run::Run;

fn output(args: &[&str]) -> String {
    let run = Run::of(support::pushgate().args(args));
    assert_eq!(run.code, 0, "{}", run.context());
    run.stdout
}

#[test]
fn completions_for_three_shells_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let script = output(&["completions", shell]);
        assert!(script.len() > 1000, "{shell}: {script}");
        for sub in ["push", "release", "policy", "retry-times", "cert-dir"] {
            assert!(script.contains(sub), "{shell} script names {sub}");
        }
    }
    // The bash one parses.
    let script = output(&["completions", "bash"]);
    let mut bash = Command::new("bash")
        .arg("-n")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    bash.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(bash.wait().unwrap().success(), "bash -n refuses the script");
    let unknown = Run::of(support::pushgate().args(["completions", "tcsh"]));
    assert_eq!(unknown.code, 2);
}

#[test]
fn the_man_page_renders() {
    let page = output(&["man"]);
    let mut man = Command::new("man")
        .args(["-l", "-"])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("man (man-db) is installed by scripts/setup.sh");
    man.stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = man.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["NAME", "SYNOPSIS", "pushgate", "push", "release", "policy"] {
        assert!(
            text.contains(needle),
            "the rendered page has {needle}: {text}"
        );
    }
}
