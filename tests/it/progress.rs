//! Progress on a terminal. pushgate runs on a real pseudo-terminal of a given size
//! (`script(1)`'s, from util-linux, which every Debian has), and what it draws there
//! is rendered into a screen as a terminal would (vt100), so the checks are about
//! what a person sees: at no moment a line wider than the terminal (it would spill
//! onto the next row), and a last frame showing every arch complete. Nothing is
//! drawn without a terminal, nor with `--json` or `--quiet`.

use std::path::Path;
use std::process::{Command, ExitStatus};

use crate::support::{Registry, pushgate};
use pushgate_sample::{SampleBuild, write_build};

const ARCHES: [&str; 4] = ["x86_64", "aarch64", "ppc64le", "s390x"];
/// Rows of the test terminal: room for every line drawn, so none scrolls away.
const ROWS: u16 = 40;

fn build(dir: &Path, arches: &[&str]) {
    let mut b = SampleBuild::small("41.1", arches);
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

/// What a terminal showed while pushgate ran on it (its stderr), and its stdout.
struct Seen {
    status: ExitStatus,
    stdout: String,
    /// The screen at the end, row by row, trailing blanks trimmed.
    last: Vec<String>,
    /// Screens in which a row did not begin a line pushgate draws.
    broken: Vec<String>,
}

impl Seen {
    /// The non-blank rows of the last screen.
    fn lines(&self) -> Vec<&str> {
        self.last
            .iter()
            .map(String::as_str)
            .filter(|r| !r.is_empty())
            .collect()
    }

    fn line_of(&self, start: &str) -> &str {
        self.lines()
            .into_iter()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line for {start:?} in {:#?}", self.last))
    }
}

/// Renders a terminal's output and checks it at every moment a line may have been
/// completed: every row that is not blank begins with one of `starts`. A line
/// wider than the terminal would spill onto the next row, which then would not.
struct Watch {
    parser: vt100::Parser,
    starts: Vec<String>,
    broken: Vec<String>,
}

impl Watch {
    fn new(cols: u16, starts: Vec<String>) -> Watch {
        let size = |n: u16| std::num::NonZeroU16::new(n).unwrap();
        Watch {
            parser: vt100::Parser::new(size(ROWS), size(cols), 0),
            starts,
            broken: Vec::new(),
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        for b in bytes {
            // Every redraw and every clear begins with an escape sequence: just
            // before one, the text written since is all on the screen.
            if *b == 0x1b {
                self.check();
            }
            self.parser.process(std::slice::from_ref(b));
        }
    }

    fn check(&mut self) {
        let (_, cols) = self.parser.screen().size();
        let rows: Vec<String> = self.parser.screen().rows(0, cols.get()).collect();
        let stray = rows
            .iter()
            .map(|r| r.trim_end())
            .any(|r| !r.is_empty() && !self.starts.iter().any(|s| r.starts_with(s.as_str())));
        if stray && self.broken.len() < 3 {
            self.broken.push(self.parser.screen().contents());
        }
    }

    fn last(&mut self) -> Vec<String> {
        self.check();
        let (_, cols) = self.parser.screen().size();
        self.parser
            .screen()
            .rows(0, cols.get())
            .map(|r| r.trim_end().to_string())
            .collect()
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs pushgate with its stderr on a terminal `cols` columns wide and its stdout in
/// a file, watching what it draws; `starts` are the beginnings of the lines it may
/// draw. The terminal is `script(1)`'s pseudo-terminal, sized with `stty` before
/// pushgate starts, so what script relays is exactly what pushgate drew there.
fn on_terminal(args: &[String], cols: u16, starts: &[String]) -> Seen {
    run_on_terminal(args, cols, starts, false)
}

/// [`on_terminal`] with stdout on the terminal too, as a person runs pushgate.
fn all_on_terminal(args: &[String], cols: u16) -> Seen {
    run_on_terminal(args, cols, &[], true)
}

fn run_on_terminal(args: &[String], cols: u16, starts: &[String], stdout_too: bool) -> Seen {
    let dir = tempfile::tempdir().unwrap();
    let stdout = dir.path().join("stdout");
    let redirect = match stdout_too {
        true => String::new(),
        false => format!(">{}", quote(&stdout.display().to_string())),
    };
    let cmd = pushgate();
    let line = std::iter::once(cmd.get_program().to_string_lossy().into_owned())
        .chain(args.iter().cloned())
        .map(|a| quote(&a))
        .collect::<Vec<_>>()
        .join(" ");
    let line = format!("stty cols {cols} rows {ROWS} && exec {line} {redirect}");
    let mut script = Command::new("script");
    script.args(["-qec", &line, "/dev/null"]);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    script.env("TERM", "xterm-256color").env_remove("COLUMNS");
    let out = script.output().expect("run script(1)");
    let mut watch = Watch::new(cols, starts.to_vec());
    watch.feed(&out.stdout);
    Seen {
        status: out.status,
        stdout: std::fs::read_to_string(&stdout).unwrap_or_default(),
        last: watch.last(),
        broken: watch.broken,
    }
}

/// The beginnings of the lines a push of `container` over `arches` draws.
fn starts(containers: &[&str], arches: &[&str]) -> Vec<String> {
    containers
        .iter()
        .map(|c| format!("{c}: "))
        .chain(arches.iter().map(|a| format!("{a} ")))
        .collect()
}

/// The last frame of a push: its title says pushed and every arch's blobs are in.
fn assert_complete(seen: &Seen, container: &str, arches: &[&str], blobs: usize) {
    assert_eq!(
        seen.line_of(&format!("{container}: ")),
        format!("{container}: pushed"),
        "{:#?}",
        seen.last
    );
    for arch in arches {
        let line = seen.line_of(&format!("{arch} "));
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.last(), Some(&"done"), "{line:?}");
        assert!(words.contains(&&*format!("{blobs}/{blobs}")), "{line:?}");
        assert!(line.contains("4.0 MiB/4.0 MiB"), "{line:?}");
    }
}

#[test]
fn progress_fits_the_terminal_and_ends_with_every_arch_complete() {
    let reg = Registry::start();
    let wd = tempfile::tempdir().unwrap();
    build(wd.path(), &ARCHES);
    for cols in [60, 80, 200] {
        let repo = format!("fits-{cols}");
        let seen = on_terminal(
            &args(&reg, &repo, wd.path(), &[]),
            cols,
            &starts(&[&repo], &ARCHES),
        );
        assert!(seen.status.success(), "{cols}: {}", seen.stdout);
        assert!(
            seen.broken.is_empty(),
            "{cols} columns: a line spilled over:\n{}",
            seen.broken.join("\n----\n")
        );
        // the blob count of each arch: its 4 layers and its config
        assert_complete(&seen, &repo, &ARCHES, 5);
        // At 200 columns a bar fits beside every number, at 60 it gives way to
        // them; at 80 it depends on how wide the measured rates print.
        let x86 = seen.line_of("x86_64 ");
        if cols != 80 {
            assert_eq!(x86.contains("[==="), cols == 200, "{cols}: {x86:?}");
        }
        assert!(x86.contains("5/5 blobs"), "{cols}: {x86:?}");
        assert!(seen.stdout.contains("pushed"), "{}", seen.stdout);
    }
}

#[test]
fn the_report_follows_the_last_frame_on_the_same_terminal() {
    let reg = Registry::start();
    let wd = tempfile::tempdir().unwrap();
    build(wd.path(), &ARCHES);
    let seen = all_on_terminal(&args(&reg, "together", wd.path(), &[]), 200);
    assert!(seen.status.success(), "{:#?}", seen.last);
    let lines = seen.lines();
    assert_eq!(lines[0], "together: pushed", "{lines:#?}");
    for (line, arch) in lines[1..5].iter().zip(ARCHES) {
        assert!(
            line.starts_with(arch) && line.ends_with(" done"),
            "{lines:#?}"
        );
    }
    let report = format!("{}:stable: pushed", reg.repo("together"));
    assert_eq!(lines[5], report, "{lines:#?}");
}

#[test]
fn a_release_shows_each_container_in_a_block_of_its_own() {
    let reg = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let wd = dir.path().join("work");
    build(&wd, &ARCHES[..2]);
    let config = dir.path().join("release.toml");
    std::fs::write(
        &config,
        format!(
            r#"workdir = "work"
[[container]]
name = "os"
artifact = "ostree"
key = "os"
repo = "{}"
tags = ["stable"]

[[container]]
name = "kubevirt"
artifact = "kubevirt"
key = "kubevirt"
repo = "{}"
tags = ["stable"]
"#,
            reg.repo("release-os"),
            reg.repo("release-kv")
        ),
    )
    .unwrap();
    let args: Vec<String> = ["release", "--config", config.to_str().unwrap()]
        .iter()
        .map(|s| s.to_string())
        .chain(["--tls-verify=false".to_string()])
        .collect();
    let seen = on_terminal(&args, 80, &starts(&["os", "kubevirt"], &ARCHES[..2]));
    assert!(seen.status.success(), "{}", seen.stdout);
    assert!(seen.broken.is_empty(), "{}", seen.broken.join("\n----\n"));
    // Each container's lines stay, together under its name: os (both arches) and
    // kubevirt (built for the first arch only). The containers go in parallel, so
    // the blocks are in the order the containers started.
    let lines = seen.lines();
    let words: Vec<String> = lines
        .iter()
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
        .collect();
    let mut blocks: Vec<Vec<String>> = Vec::new();
    for w in words {
        if w.ends_with(':') {
            blocks.push(vec![w]);
        } else {
            blocks.last_mut().expect("a container's name first").push(w);
        }
    }
    blocks.sort();
    assert_eq!(
        blocks,
        [
            vec!["kubevirt:", "x86_64"],
            vec!["os:", "x86_64", "aarch64"]
        ]
    );
    assert!(
        lines
            .iter()
            .all(|l| l.ends_with(" done") || l.ends_with(": pushed")),
        "{lines:#?}"
    );
}

#[test]
fn json_and_quiet_draw_nothing_even_on_a_terminal() {
    let reg = Registry::start();
    let wd = tempfile::tempdir().unwrap();
    build(wd.path(), &ARCHES[..2]);
    for (repo, flag) in [("json", "--json"), ("quiet", "--quiet")] {
        let seen = on_terminal(&args(&reg, repo, wd.path(), &[flag]), 80, &[]);
        assert!(seen.status.success(), "{}", seen.stdout);
        assert!(seen.lines().is_empty(), "{flag}: {:#?}", seen.last);
        assert!(seen.stdout.contains("pushed"), "{}", seen.stdout);
    }
}

#[test]
fn without_a_terminal_stderr_stays_empty() {
    let reg = Registry::start();
    let wd = tempfile::tempdir().unwrap();
    build(wd.path(), &ARCHES[..2]);
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

#[test]
fn the_watch_sees_a_line_spill_over() {
    let mut w = Watch::new(60, starts(&["c"], &["x86_64"]));
    w.feed(format!("\x1b[2Kx86_64 {}\x1b[1A", "9".repeat(70)).as_bytes());
    assert_eq!(w.broken.len(), 1);
    let mut w = Watch::new(60, starts(&["c"], &["x86_64"]));
    w.feed(format!("\x1b[2Kx86_64 {}\x1b[1A", "9".repeat(53)).as_bytes());
    assert!(w.broken.is_empty());
}
