//! A module whose metadata is hostile reaches pushgate's output only as bounded,
//! inert text: tests/policies/hostile-metadata (terminal escapes and a forged
//! `pushgate: debug:` line in its name; a 256 KiB string of escapes and forged
//! lines as version, description and settings help, three aliases of one
//! region) loads, with every field cut and `policy check` naming each field
//! and its bound; hostile-metadata-huge (the same at 40 MiB) fails closed
//! without the host ever holding the string. Each runs a real `push` against a
//! real registry with a decision log, `policy inspect` and `policy check`, under
//! GNU time for its peak memory.

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

use crate::support::run::{Run, path_str, s};
use crate::support::{Registry, policy_module, pushgate};
use pushgate_sample::{SampleBuild, write_build};

const BUILD: &str = "41.20261127.1.0";

/// The most a run may hold at its peak. The huge module's own memory holds its
/// 40 MiB string once (in the instance that answered `metadata`); a host that
/// lifted the three aliases (120 MiB) would be over this, and one that also
/// formatted and logged them went past 400 MiB with a single one.
const MAX_RSS_KIB: u64 = 160 << 10;

/// The most bytes a run may write to stdout and to stderr together.
const MAX_OUTPUT: usize = 64 << 10;

/// A finished run and its peak resident memory.
struct Timed {
    run: Run,
    max_rss_kib: u64,
}

/// `pushgate ARGS` in `dir`, under GNU time (`/usr/bin/time`, installed by
/// scripts/setup.sh), with the clean environment of [`pushgate`].
fn timed(dir: &Path, args: &[String]) -> Timed {
    let base = pushgate();
    let rss = dir.join("max-rss");
    let mut cmd = Command::new("/usr/bin/time");
    cmd.args(["-f", "%M", "-o"])
        .arg(&rss)
        .arg(base.get_program())
        .args(args)
        .current_dir(dir);
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let run = Run::of(&mut cmd);
    // GNU time writes "Command exited with non-zero status N" first on a failure.
    let text = fs::read_to_string(&rss).expect("GNU time's output");
    let max_rss_kib = text
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("max RSS from {text:?}"));
    Timed { run, max_rss_kib }
}

/// The start of what a run wrote: a failing run's output can be the 40 MiB
/// string, too much for an assertion message.
fn excerpt(run: &Run) -> String {
    let cut = |t: &str| t.chars().take(2000).collect::<String>();
    format!(
        "exit {}\nstdout: {}\nstderr: {}",
        run.code,
        cut(&run.stdout),
        cut(&run.stderr)
    )
}

/// Asserts what `what` wrote is inert and bounded, and its peak memory too: no
/// control character but line breaks, no line that starts as one of pushgate's
/// own (`pushgate: debug: forged line`) other than pushgate's, little of it.
fn assert_inert(t: &Timed, what: &str) {
    let run = &t.run;
    for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        if let Some(c) = text.chars().find(|c| c.is_control() && *c != '\n') {
            panic!(
                "{what}: {stream} holds the control character {c:?}: {}",
                excerpt(run)
            );
        }
        if let Some(line) = text
            .lines()
            .find(|l| l.trim_start().starts_with("pushgate: debug: forged"))
        {
            panic!("{what}: {stream} holds a forged line {line:?}");
        }
    }
    assert!(
        run.stdout.len() + run.stderr.len() < MAX_OUTPUT,
        "{what}: {} bytes of stdout, {} of stderr",
        run.stdout.len(),
        run.stderr.len()
    );
    assert!(
        t.max_rss_kib < MAX_RSS_KIB,
        "{what}: peak memory {} KiB, over {MAX_RSS_KIB} KiB",
        t.max_rss_kib
    );
}

/// Every string in `v`, recursively.
fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s],
        Value::Array(a) => a.iter().flat_map(strings).collect(),
        Value::Object(o) => o.values().flat_map(strings).collect(),
        _ => vec![],
    }
}

/// A sample build and a registry to push it to, with `module` as the policy.
struct Pusher {
    module: std::path::PathBuf,
    wd: TempDir,
    reg: Registry,
}

impl Pusher {
    fn new(module: &str) -> Pusher {
        let wd = TempDir::new().unwrap();
        write_build(wd.path(), &SampleBuild::small(BUILD, &["x86_64"])).expect("sample build");
        Pusher {
            module: policy_module(module),
            wd,
            reg: Registry::start(),
        }
    }

    fn log(&self) -> std::path::PathBuf {
        self.wd.path().join("decisions.jsonl")
    }

    /// `push` of the build's `ostree` to `repo`, with a decision log and
    /// pushgate's own debug lines (which the forged ones imitate).
    fn push(&self, repo: &str, json: bool) -> Timed {
        let mut args = vec![
            s("push"),
            s("--repo"),
            self.reg.repo(repo),
            s("--tag"),
            s("stable"),
            s("--artifact"),
            s("ostree"),
            s("--metajsonname"),
            s(repo),
            s("--workdir"),
            path_str(self.wd.path()),
            s("--tls-verify=false"),
            s("--policy"),
            path_str(&self.module),
            s("--decision-log"),
            path_str(&self.log()),
            s("--debug"),
        ];
        if json {
            args.push(s("--json"));
        }
        timed(self.wd.path(), &args)
    }
}

#[test]
fn push_with_a_module_whose_metadata_is_hostile_writes_bounded_inert_output() {
    let p = Pusher::new("hostile-metadata");
    let (push, log) = (|repo: &str, json: bool| p.push(repo, json), p.log());

    let t = push("human", false);
    assert_eq!(t.run.code, 0, "{}", excerpt(&t.run));
    assert_inert(&t, "push");

    let t = push("machine", true);
    assert_eq!(t.run.code, 0, "{}", excerpt(&t.run));
    assert_eq!(t.run.outcome(), "pushed", "{}", excerpt(&t.run));
    assert_inert(&t, "push --json");
    for v in strings(&t.run.json) {
        assert!(!v.chars().any(char::is_control), "--json holds {v:?}");
    }

    let text = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text:.2000}");
    for line in lines {
        assert!(
            line.len() < 16 << 10,
            "a decision-log line of {} bytes",
            line.len()
        );
        let entry: Value = serde_json::from_str(line).unwrap();
        for v in strings(&entry) {
            assert!(!v.chars().any(char::is_control), "the log holds {v:?}");
        }
        let policy = &entry["policy"];
        assert_eq!(
            policy["name"], "evil[31m]0;TITLE pushgate: debug: forged line",
            "the module is named by its inert name: {policy}"
        );
        let version = policy["version"].as_str().unwrap();
        assert_eq!(version.chars().count(), 65, "{version}");
        assert_eq!(entry["outcome"], "pushed", "{entry}");
    }
}

#[test]
fn inspect_and_check_show_hostile_metadata_inert_and_check_names_the_field() {
    let module = policy_module("hostile-metadata");
    let dir = TempDir::new().unwrap();
    let run = |args: &[&str]| {
        let mut a: Vec<String> = args.iter().map(|x| s(x)).collect();
        a.push(path_str(&module));
        timed(dir.path(), &a)
    };

    let t = run(&["policy", "inspect"]);
    assert_eq!(t.run.code, 0, "{}", excerpt(&t.run));
    assert_inert(&t, "policy inspect");
    assert!(
        t.run
            .stdout
            .contains("policy:    evil[31m]0;TITLE pushgate: debug: forged line "),
        "{}",
        excerpt(&t.run)
    );

    let t = run(&["policy", "inspect", "--json"]);
    assert_eq!(t.run.code, 0, "{}", excerpt(&t.run));
    assert_inert(&t, "policy inspect --json");
    let info = &t.run.json["loaded"]["ok"];
    for (field, max) in [
        ("name", 128),
        ("version", 64),
        ("description", 4096),
        ("settings_help", 4096),
        ("sample_settings", 4096),
    ] {
        let v = info[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field}: {info}"));
        assert!(v.chars().count() <= max + 1, "{field}: {} chars", v.len());
        assert!(!v.chars().any(char::is_control), "{field}: {v:?}");
    }
    assert_eq!(info["version"].as_str().unwrap().chars().count(), 65);
    assert!(info["version"].as_str().unwrap().ends_with('…'));

    let t = run(&["policy", "check"]);
    assert_eq!(t.run.code, 1, "{}", excerpt(&t.run));
    assert_inert(&t, "policy check");
    let lines: Vec<&str> = t.run.stdout.lines().collect();
    for (start, end) in [
        (
            "  PROBLEM  metadata name holds control characters or line breaks",
            "(dropped)",
        ),
        (
            "  PROBLEM  metadata version is ",
            "over its bound of 64 (cut)",
        ),
        (
            "  PROBLEM  metadata description is ",
            "over its bound of 4096 (cut)",
        ),
        (
            "  PROBLEM  metadata settings-help is ",
            "over its bound of 4096 (cut)",
        ),
        (
            "  PROBLEM  metadata settings-help holds control characters",
            "(dropped)",
        ),
        ("  PROBLEM  metadata name: ", ""),
        ("  PROBLEM  metadata version: ", ""),
        ("  ok       answers all ", "within the caps"),
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(start) && l.ends_with(end)),
            "{start:?}…{end:?}: {}",
            excerpt(&t.run)
        );
    }
}

#[test]
fn a_module_whose_metadata_is_huge_fails_closed_without_the_host_holding_it() {
    let p = Pusher::new("hostile-metadata-huge");
    let cap = "metadata exceeded its answer size (1 MiB) cap";
    for json in [false, true] {
        let t = p.push(if json { "machine" } else { "human" }, json);
        assert_eq!(t.run.code, 1, "{}", excerpt(&t.run));
        assert!(t.run.stderr.contains(cap), "{}", excerpt(&t.run));
        assert_inert(&t, "push");
    }
    if let Ok(text) = fs::read_to_string(p.log()) {
        for line in text.lines() {
            assert!(
                line.len() < 16 << 10,
                "a decision-log line of {} bytes",
                line.len()
            );
        }
    }

    let dir = TempDir::new().unwrap();
    for args in [&["policy", "inspect"][..], &["policy", "check"]] {
        let mut a: Vec<String> = args.iter().map(|x| s(x)).collect();
        a.push(path_str(&p.module));
        let t = timed(dir.path(), &a);
        assert_eq!(t.run.code, 1, "{args:?}: {}", excerpt(&t.run));
        assert!(t.run.stdout.contains(cap), "{args:?}: {}", excerpt(&t.run));
        assert_inert(&t, &args.join(" "));
    }
}
