//! The documentation kept true: completion scripts and man pages made from the
//! clap definitions; every `pushgate` command line of the README, POLICIES.md and
//! docs/ (prose, synopses, the pipeline recipe's YAML and Groovy) uses only flags
//! its command has; every relative link there (and its anchor) resolves; the
//! README's first commands are the scripts that exist; and every command block runs
//! ([`examples`]).

mod examples;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support;
use crate::support::run::Run;

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
        for sub in [
            "push",
            "release",
            "policy",
            "retry-times",
            "cert-dir",
            "from-log",
        ] {
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

/// `page` as `man -l -` renders it for an 80-column terminal.
fn render(page: &str) -> String {
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
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_man_pages_render() {
    let text = render(&output(&["man"]));
    for needle in ["NAME", "SYNOPSIS", "pushgate", "push", "release", "policy"] {
        assert!(
            text.contains(needle),
            "the rendered page has {needle}: {text}"
        );
    }
    // A subcommand's page: its flags under push's headings, its parent under SEE ALSO.
    let text = render(&output(&["man", "push"]));
    for needle in [
        "pushgate-push",
        "WHAT TO PUSH",
        "REGISTRY AND CREDENTIALS",
        "RETRIES AND TRANSFERS",
        "POLICY",
        "OUTPUT",
        "--write-digest-to-file",
        "SEE ALSO",
        "pushgate(1)",
    ] {
        assert!(
            text.contains(needle),
            "pushgate man push has {needle}: {text}"
        );
    }
    assert_eq!(
        output(&["man", "push-container-manifest"]),
        output(&["man", "push"])
    );
    let text = render(&output(&["man", "policy", "test"]));
    assert!(text.contains("pushgate policy test"), "{text}");
    assert!(text.contains("pushgate-policy(1)"), "{text}");
    // Not a subcommand: a usage error naming it.
    for path in [&["nope"][..], &["policy", "nope"], &["push", "x"]] {
        let mut args = vec!["man"];
        args.extend(path);
        let r = Run::of(support::pushgate().args(&args));
        assert_eq!(r.code, 2, "{}", r.context());
        assert!(r.stderr.contains(path.last().unwrap()), "{}", r.context());
    }
}

#[test]
fn every_page_a_page_refers_to_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("man");
    let listed = output(&["man", "--out-dir", out_dir.to_str().unwrap()]);
    let mut files: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(listed.lines().count(), files.len(), "{listed}");
    for want in [
        "pushgate.1",
        "pushgate-push.1",
        "pushgate-release.1",
        "pushgate-policy.1",
        "pushgate-policy-test.1",
        "pushgate-policy-facts.1",
        "pushgate-completions.1",
        "pushgate-man.1",
    ] {
        assert!(files.iter().any(|f| f == want), "{want} in {files:?}");
    }
    // Every NAME(1) a rendered page names (SUBCOMMANDS, SEE ALSO) is a file here.
    let reference = regex::Regex::new(r"(pushgate[a-z-]*)\(1\)").unwrap();
    let mut referred = 0;
    for f in &files {
        let page = std::fs::read_to_string(out_dir.join(f)).unwrap();
        let text = render(&page);
        // man joins a word hyphenated at the end of a line; roff's \- is a hyphen
        let joined = text.replace("\u{2010}\n", "").replace('\u{2010}', "-");
        for c in reference.captures_iter(&joined) {
            let name = format!("{}.1", &c[1]);
            assert!(
                files.contains(&name),
                "{f} refers to {name}, not written: {files:?}"
            );
            referred += 1;
        }
        // written pages are the printed ones
        let page_name = f.trim_end_matches(".1");
        let path: Vec<&str> = page_name.split('-').skip(1).collect();
        let mut args = vec!["man"];
        args.extend(&path);
        assert_eq!(output(&args), page, "{f}");
    }
    assert!(
        referred >= files.len(),
        "pages refer to one another: {referred}"
    );
}

/// Every `pushgate ...` command line of `md`, as words: inline code spans, and in
/// code blocks shell
/// lines (joined over `\` continuations, cut at a redirection or the end of a
/// Groovy string) and YAML steps whose `command` is pushgate (their `args` list).
fn command_lines(md: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut in_code = false;
    let mut lines = md.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code {
            // `pushgate ...` spans in the prose are command lines too.
            let parts: Vec<&str> = line.split('`').collect();
            // Closed spans only: the odd parts that are not the line's last.
            let closed = parts.len().saturating_sub(1) / 2 * 2;
            for span in parts[..closed].iter().skip(1).step_by(2) {
                if span.starts_with("pushgate ") {
                    found.push(span.split_whitespace().map(String::from).collect());
                }
            }
            continue;
        }
        let trimmed = line.trim();
        if trimmed.starts_with("command:") && trimmed.contains("pushgate") {
            let mut words = vec!["pushgate".to_string()];
            while let Some(next) = lines.peek() {
                let t = next.trim();
                if t == "args:" {
                } else if let Some(arg) = t.strip_prefix("- ") {
                    words.push(arg.trim_matches('"').to_string());
                } else {
                    break;
                }
                lines.next();
            }
            found.push(words);
            continue;
        }
        let Some(at) = line
            .match_indices("pushgate ")
            .map(|(i, _)| i)
            .find(|&i| i == 0 || line[..i].ends_with([' ', '"', '(']))
        else {
            continue;
        };
        let mut text = line[at..].to_string();
        while text.trim_end().ends_with('\\') {
            let cut = text.trim_end().len() - 1;
            text.truncate(cut);
            text.push(' ');
            text.push_str(lines.next().unwrap_or_default());
        }
        let words = text
            .split_whitespace()
            .take_while(|w| !w.starts_with(['>', '|', ';', '&']) && *w != "\"\"\"")
            .map(|w| w.trim_matches(['"', '\'']).to_string())
            .collect();
        found.push(words);
    }
    found
}

#[test]
fn every_command_line_of_the_pipeline_recipe_uses_real_flags() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/pipeline.md"))
        .expect("docs/pipeline.md");
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.contains("docs/pipeline.md"),
        "the README links the recipe"
    );
    let commands = command_lines(&doc);
    let joined: Vec<String> = commands.iter().map(|c| c.join(" ")).collect();
    // The prose, the shell blocks, the Tekton step and the Jenkins stage are
    // all read.
    assert!(commands.len() >= 9, "{joined:#?}");
    for needle in [
        "pushgate push-container-manifest --auth=tmp/push-secret-oscontainer",
        "pushgate release --config",
        "--dry-run",
        "--image=docker://",
        "pushgate push-container-manifest --authfile=$(workspaces.push-secret.path)",
        "--auth=\\${REGISTRY_SECRET}",
    ] {
        assert!(
            joined.iter().any(|c| c.contains(needle)),
            "a command line with {needle} among {joined:#?}"
        );
    }
    let mut helps = Helps::default();
    let unreal = helps.unreal_flags(&commands);
    assert!(unreal.is_empty(), "{}", unreal.join("\n"));
}

/// The long flags each command's `--help` lists, asked once per command.
#[derive(Default)]
struct Helps(std::collections::HashMap<Vec<String>, Option<Vec<String>>>);

impl Helps {
    /// The flags of `pushgate PATH...`, or None when that is not a command.
    fn of(&mut self, path: &[String]) -> Option<&Vec<String>> {
        self.0
            .entry(path.to_vec())
            .or_insert_with(|| {
                let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
                args.push("--help");
                let run = Run::of(support::pushgate().args(&args));
                (run.code == 0).then(|| {
                    let re = regex::Regex::new(r"--[a-z][a-z0-9-]*").unwrap();
                    let mut flags: Vec<String> = re
                        .find_iter(&run.stdout)
                        .map(|m| m.as_str().to_string())
                        .collect();
                    flags.sort();
                    flags.dedup();
                    flags
                })
            })
            .as_ref()
    }

    /// Each `--flag` of `commands` that its command does not have, as pushgate reads
    /// flags (an exact name, or a unique prefix of one). A command is the longest run
    /// of words after `pushgate` that `--help` knows (`policy test`, not `policy`).
    fn unreal_flags(&mut self, commands: &[Vec<String>]) -> Vec<String> {
        let word = regex::Regex::new(r"^[a-z][a-z-]*$").unwrap();
        let mut unreal = Vec::new();
        for words in commands {
            let line = words.join(" ");
            let mut path: Vec<String> = Vec::new();
            for w in &words[1..] {
                let mut longer = path.clone();
                longer.push(w.clone());
                if !word.is_match(w) || self.of(&longer).is_none() {
                    break;
                }
                path = longer;
            }
            let flags = self.of(&path).cloned().unwrap_or_default();
            for w in words.iter() {
                // `[--json]`, `--json,` in synopses and prose are flags too.
                let w = w
                    .trim_start_matches('[')
                    .trim_end_matches([']', ',', ';', ')', '.']);
                if !w.starts_with("--") || w == "--" {
                    continue;
                }
                let name = w.split('=').next().unwrap();
                let matches = flags.iter().filter(|f| f.starts_with(name)).count();
                if !flags.iter().any(|f| f == name) && matches != 1 {
                    unreal.push(format!(
                        "{name} is not a flag of `pushgate {}` (it has {flags:?}), in: {line}",
                        path.join(" ")
                    ));
                }
            }
        }
        unreal
    }
}

#[test]
fn every_pushgate_command_line_of_the_docs_uses_real_flags() {
    let mut helps = Helps::default();
    let mut checked = 0;
    let mut unreal = Vec::new();
    for doc in documents() {
        let commands = command_lines(&std::fs::read_to_string(&doc).unwrap());
        checked += commands.len();
        for problem in helps.unreal_flags(&commands) {
            unreal.push(format!("{}: {problem}", doc.display()));
        }
    }
    assert!(checked >= 60, "the docs' command lines are read: {checked}");
    assert!(unreal.is_empty(), "{}", unreal.join("\n"));
}

/// The repository's root.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The documents kept true: the README, POLICIES.md and every `docs/*.md`.
pub(crate) fn documents() -> Vec<PathBuf> {
    let mut docs = vec![root().join("README.md"), root().join("POLICIES.md")];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    assert!(pages.len() >= 4, "docs/ holds the reference: {pages:?}");
    docs.extend(pages);
    docs
}

/// `md` without its fenced code blocks and inline code spans: where links are.
fn prose(md: &str) -> String {
    let mut out = String::new();
    let mut fence: Option<&str> = None;
    for line in md.lines() {
        let t = line.trim_start();
        match fence {
            Some(f) if t.starts_with(f) => fence = None,
            Some(_) => {}
            None if t.starts_with("```") => fence = Some("```"),
            None => {
                // Odd parts of a split on backticks are code spans.
                for (i, part) in line.split('`').enumerate() {
                    if i % 2 == 0 {
                        out.push_str(part);
                    }
                }
                out.push('\n');
            }
        }
    }
    out
}

/// The anchors GitHub gives the headings of `md`: lowercased, punctuation other than
/// `-` and `_` dropped, spaces made hyphens.
fn anchors(md: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut in_code = false;
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#').trim();
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        found.push(slug);
    }
    found
}

#[test]
fn every_relative_link_of_the_docs_points_at_a_file_and_anchor_that_exist() {
    let link = regex::Regex::new(r"\]\(([^)\s]+)\)").unwrap();
    let mut checked = 0;
    let mut broken = Vec::new();
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        let name = doc.strip_prefix(root()).unwrap().display().to_string();
        for c in link.captures_iter(&prose(&text)) {
            let target = &c[1];
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
            let file = if path.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap().join(path)
            };
            checked += 1;
            if !file.exists() {
                broken.push(format!("{name}: {target}: no such file"));
            } else if !anchor.is_empty() {
                let page = std::fs::read_to_string(&file).unwrap_or_default();
                if !anchors(&page).iter().any(|a| a == anchor) {
                    broken.push(format!(
                        "{name}: {target}: no heading with that anchor in {}",
                        file.display()
                    ));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked >= 30, "the docs link one another: {checked} links");
    // The README is the map: it links every page of the reference.
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for page in documents().iter().skip(1) {
        let rel = page.strip_prefix(root()).unwrap().display().to_string();
        assert!(
            readme.contains(&format!("]({rel})")),
            "the README links {rel}"
        );
    }
    assert!(
        readme.contains("[Security](SECURITY.md)"),
        "the README links SECURITY.md"
    );
}

#[test]
fn the_readme_opens_with_the_two_commands_for_a_fresh_machine_and_both_are_scripts() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let first_block = readme
        .split("```")
        .nth(1)
        .expect("the README has a code block");
    let before = readme.split("```").next().unwrap();
    assert!(
        !before.contains("\n## "),
        "the commands come before any section: {before}"
    );
    let commands: Vec<&str> = first_block
        .lines()
        .skip(1) // the info string
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(commands, ["scripts/demo.sh", "scripts/test.sh"]);
    for script in commands {
        let meta =
            std::fs::metadata(root().join(script)).unwrap_or_else(|e| panic!("{script}: {e}"));
        assert!(
            meta.is_file() && meta.permissions().mode() & 0o111 != 0,
            "{script} is an executable file"
        );
    }
    // And the pipeline's own push line follows, as cosa is called.
    assert!(
        readme.contains("pushgate push-container-manifest --auth="),
        "the README shows the pipeline's push command line"
    );
}

/// The one-line JSON objects of the ```json blocks of `md`.
fn json_examples(md: &str) -> Vec<serde_json::Value> {
    md.split("```json\n")
        .skip(1)
        .flat_map(|block| block.split("```").next().unwrap_or_default().lines())
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn every_json_example_of_the_docs_is_valid_against_the_schema() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut commands = Vec::new();
    for doc in ["docs/json.md", "docs/usage.md"] {
        let md = std::fs::read_to_string(root.join(doc)).unwrap();
        for example in json_examples(&md) {
            support::run::assert_schema(&example, doc);
            commands.push(example["command"].as_str().unwrap().to_string());
        }
    }
    // the failure object, a push report, a release (with an errored container)
    for command in ["push", "release"] {
        assert!(commands.iter().any(|c| c == command), "{commands:?}");
    }
    assert!(commands.len() >= 4, "{commands:?}");
}

/// The push report example of docs/json.md.
fn push_example() -> serde_json::Value {
    let md = include_str!("../../docs/json.md");
    json_examples(md)
        .into_iter()
        .find(|e| e["command"] == "push" && e.get("usage_error").is_none())
        .expect("docs/json.md has a push report")
}

#[test]
fn the_schema_refuses_the_shapes_before_it() {
    let refused = |doc: &serde_json::Value, what: &str| {
        assert!(
            !support::run::schema_errors(doc).is_empty(),
            "{what} passed: {doc}"
        );
    };
    let mut no_ok = push_example();
    no_ok.as_object_mut().unwrap().remove("ok");
    refused(&no_ok, "a report without ok");

    let mut dry = push_example();
    dry["dry_run"] = true.into();
    refused(&dry, "a dry run that says pushed");
    dry["outcome"] = "would-push".into();
    assert_eq!(support::run::schema_errors(&dry), Vec::<String>::new());

    let mut failed_ok = push_example();
    failed_ok["outcome"] = "failed".into();
    refused(&failed_ok, "a failed container with ok true");

    let mut unversioned = push_example();
    unversioned["schema"] = 2.into();
    refused(&unversioned, "another schema version");

    let mut undocumented = push_example();
    undocumented["surprise"] = 1.into();
    refused(&undocumented, "a field the schema does not document");

    let report = push_example();
    let mut release = serde_json::json!({
        "schema": 1, "ok": true, "command": "release", "dry_run": false,
        "containers": ["os"], "results": [report.clone()],
    });
    refused(&release, "a release result with a command");
    let mut element = report;
    element.as_object_mut().unwrap().remove("command");
    release["results"] = serde_json::json!([element.clone()]);
    assert_eq!(support::run::schema_errors(&release), Vec::<String>::new());
    release["results"] = serde_json::json!({ "os": element });
    refused(&release, "release results as an object");
}

#[test]
fn the_schema_knows_a_signed_runs_fields() {
    let mut signed = push_example();
    signed["signatures"] = serde_json::json!({ "present": 2, "added": 4 });
    signed["attestation"] = serde_json::json!(format!("sha256:{}", "a".repeat(64)));
    assert_eq!(support::run::schema_errors(&signed), Vec::<String>::new());
    let mut loose = push_example();
    loose["signatures"] = serde_json::json!({ "any": ["thing"] });
    assert!(!support::run::schema_errors(&loose).is_empty());
}
