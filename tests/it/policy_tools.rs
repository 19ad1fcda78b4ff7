//! The policy authoring and CI tools, through the CLI as an author or a CI job runs
//! them: `pushgate policy test | check | diff | inspect | new | facts`. Modules are the
//! shipped policies and the test-only hostile ones, built for wasm32-wasip2; `facts`
//! runs against a real `docker-registry`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{Registry, policy_module, pushgate, sha256_digest, skopeo_digest};
use pushgate_sample::{SampleBuild, write_build};

const SHIPPED: [&str; 4] = ["default", "kubevirt", "release-tags", "signed-sources"];
const BUILD: &str = "41.20261127.1.0";
const KEY: &str = "base-oscontainer";

// ---------------------------------------------------------------------------------------
// helpers

/// One finished `pushgate` run.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn context(&self) -> String {
        format!(
            "exit {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", self.context()))
    }

    /// Asserts the exit status and returns self.
    fn exits(&self, code: i32) -> &Out {
        assert_eq!(self.code, code, "unexpected exit: {}", self.context());
        self
    }
}

fn run<I, S>(args: I) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    // through Run::of, which holds a --json output to the documented schema
    let out = crate::support::run::Run::of(pushgate().args(args).stdin(Stdio::null()));
    Out {
        code: out.code,
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `policies/NAME/cases`.
fn cases_of(policy: &str) -> PathBuf {
    root().join("policies").join(policy).join("cases")
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|f| f.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn write_json(path: &Path, value: &Value) {
    fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

/// A shipped case of the default policy: a fresh build, decided `push` because
/// "stable is missing, ...".
fn fresh_case() -> Value {
    read_json(&cases_of("default").join("fresh-build-pushes.json"))
}

fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("pushgate-policy-tools-")
        .tempdir()
        .unwrap()
}

/// A temp dir holding one passing and one failing case of the default policy.
fn one_pass_one_fail() -> (TempDir, PathBuf, PathBuf) {
    let dir = tempdir();
    let pass = dir.path().join("a-passes.json");
    write_json(&pass, &fresh_case());
    let mut failing = fresh_case();
    failing["expect"] = json!({ "decision": "skip" });
    let fail = dir.path().join("b-fails.json");
    write_json(&fail, &failing);
    (dir, pass, fail)
}

// ---------------------------------------------------------------------------------------
// policy test

#[test]
fn shipped_policies_pass_every_one_of_their_cases() {
    for policy in SHIPPED {
        let cases = cases_of(policy);
        let files = json_files(&cases);
        assert!(files.len() >= 5, "{policy} ships too few cases: {files:?}");
        // Every decision a policy can take is shown by at least one case.
        let kinds: std::collections::BTreeSet<String> = files
            .iter()
            .map(|f| {
                read_json(f)["expect"]["decision"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            kinds.into_iter().collect::<Vec<_>>(),
            ["fail", "push", "skip"],
            "{policy}: cases should show every decision"
        );

        let out = run([
            "policy".into(),
            "test".into(),
            p(&policy_module(policy)),
            p(&cases),
        ]);
        out.exits(0);
        assert!(
            out.stdout
                .ends_with(&format!("{} passed, 0 failed\n", files.len())),
            "{policy}: {}",
            out.context()
        );
        for f in &files {
            assert!(
                out.stdout.contains(&format!("pass  {}", p(f))),
                "{policy}: {} did not pass: {}",
                f.display(),
                out.context()
            );
        }
    }
}

#[test]
fn a_failing_case_prints_the_difference_and_exits_1() {
    let (dir, pass, fail) = one_pass_one_fail();
    let mut wrong_reason = fresh_case();
    wrong_reason["expect"] = json!({ "decision": "push", "reason": "^stable is up to date$" });
    let reason = dir.path().join("c-wrong-reason.json");
    write_json(&reason, &wrong_reason);

    let out = run([
        "policy".into(),
        "test".into(),
        p(&policy_module("default")),
        p(dir.path()),
    ]);
    out.exits(1);
    let o = &out.stdout;
    assert!(
        o.contains(&format!("pass  {}", p(&pass))),
        "{}",
        out.context()
    );
    assert!(
        o.contains(&format!("FAIL  {}", p(&fail))),
        "{}",
        out.context()
    );
    assert!(
        o.contains("expected skip\n     got push: stable is missing, 41.20261127.1.0 is missing"),
        "{}",
        out.context()
    );
    assert!(
        o.contains(&format!("FAIL  {}", p(&reason))),
        "{}",
        out.context()
    );
    assert!(
        o.contains("expected push with a reason matching /^stable is up to date$/\n     got push: stable is missing"),
        "{}",
        out.context()
    );
    assert!(o.ends_with("1 passed, 2 failed\n"), "{}", out.context());
}

#[test]
fn json_output_has_the_policy_the_counts_and_every_result() {
    let (dir, pass, fail) = one_pass_one_fail();
    let module = policy_module("default");
    let out = run([
        "policy".into(),
        "test".into(),
        "--json".into(),
        p(&module),
        p(dir.path()),
    ]);
    out.exits(1);
    let doc = out.json();
    assert_eq!(doc["module"], p(&module));
    assert_eq!(doc["policy"]["name"], "default");
    assert_eq!(doc["policy"]["version"], "0.1.0");
    assert_eq!(
        doc["policy"]["sha256"],
        sha256_digest(&fs::read(&module).unwrap())
    );
    assert_eq!(doc["passed"], 1);
    assert_eq!(doc["failed"], 1);
    let results = doc["results"].as_array().expect("results");
    assert_eq!(results.len(), 2);

    let good = &results[0];
    assert_eq!(good["case"], p(&pass));
    assert_eq!(good["passed"], true);
    assert_eq!(good["expected"]["decision"], "push");
    assert_eq!(good["actual"]["kind"], "push");
    assert!(
        good["actual"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("stable is missing"),
        "{good}"
    );
    assert!(good.get("difference").is_none(), "{good}");
    assert!(good["time"].as_f64().is_some_and(|t| t >= 0.0), "{good}");

    let bad = &results[1];
    assert_eq!(bad["case"], p(&fail));
    assert_eq!(bad["passed"], false);
    assert_eq!(bad["expected"], json!({ "decision": "skip" }));
    assert_eq!(bad["actual"]["kind"], "push");
    assert!(
        bad["difference"]
            .as_str()
            .unwrap()
            .starts_with("expected skip"),
        "{bad}"
    );
}

#[test]
fn junit_output_is_written_with_the_right_counts_even_when_cases_fail() {
    let (dir, pass, fail) = one_pass_one_fail();
    let junit = dir.path().join("out").join("..").join("report.xml");
    fs::create_dir_all(dir.path().join("out")).unwrap();
    let out = run([
        "policy".into(),
        "test".into(),
        p(&policy_module("default")),
        p(&pass),
        p(&fail),
        "--junit".into(),
        p(&junit),
    ]);
    out.exits(1);
    let xml = fs::read_to_string(&junit).expect("the JUnit file is written");
    assert!(
        xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
        "{xml}"
    );
    assert!(
        xml.contains("<testsuite name=\"default 0.1.0\" tests=\"2\" failures=\"1\" errors=\"0\""),
        "{xml}"
    );
    assert_eq!(xml.matches("<testcase ").count(), 2, "{xml}");
    assert_eq!(
        xml.matches("<failure message=\"expected skip\">").count(),
        1,
        "{xml}"
    );
    assert_eq!(xml.matches("</failure>").count(), 1, "{xml}");
    assert!(xml.contains(&format!("name=\"{}\"", p(&fail))), "{xml}");
    assert!(xml.trim_end().ends_with("</testsuite>"), "{xml}");
    // Text output still goes to stdout beside the file.
    assert!(
        out.stdout.ends_with("1 passed, 1 failed\n"),
        "{}",
        out.context()
    );

    // The shipped cases: as many testcases as files, no failure.
    let cases = cases_of("kubevirt");
    let n = json_files(&cases).len();
    let shipped = dir.path().join("kubevirt.xml");
    run([
        "policy".into(),
        "test".into(),
        p(&policy_module("kubevirt")),
        p(&cases),
        "--junit".into(),
        p(&shipped),
    ])
    .exits(0);
    let xml = fs::read_to_string(&shipped).unwrap();
    assert!(
        xml.contains(&format!("tests=\"{n}\" failures=\"0\"")),
        "{xml}"
    );
    assert_eq!(xml.matches("<testcase ").count(), n, "{xml}");
    assert!(!xml.contains("<failure"), "{xml}");
}

#[test]
fn bad_case_files_are_refused_naming_the_file() {
    let base = fresh_case();
    let mut unknown_top = base.clone();
    unknown_top["expected"] = json!({ "decision": "push" });
    let mut unknown_fact = base.clone();
    unknown_fact["facts"]["forced"] = json!(true);
    let mut settings_in_facts = base.clone();
    settings_in_facts["facts"]["settings"] = json!("{}");
    let mut no_expect = base.clone();
    no_expect.as_object_mut().unwrap().remove("expect");
    let mut no_decision = base.clone();
    no_decision["expect"] = json!({ "reason": "stable" });
    let mut bad_decision = base.clone();
    bad_decision["expect"] = json!({ "decision": "maybe" });
    let mut bad_regex = base.clone();
    bad_regex["expect"] = json!({ "decision": "push", "reason": "(stable" });
    let mut settings_array = base.clone();
    settings_array["settings"] = json!(["x86_64"]);
    let mut no_facts = base.clone();
    no_facts.as_object_mut().unwrap().remove("facts");
    let mut missing_fact = base.clone();
    missing_fact["facts"]
        .as_object_mut()
        .unwrap()
        .remove("verdict");

    let text = |v: &Value| serde_json::to_string_pretty(v).unwrap();
    let table: Vec<(&str, String, &str)> = vec![
        (
            "malformed.json",
            "{\"facts\": {".to_string(),
            "malformed JSON",
        ),
        (
            "trailing-comma.json",
            text(&base).replacen('}', "},", 1),
            "malformed JSON",
        ),
        (
            "unknown-field.json",
            text(&unknown_top),
            "unknown field `expected`",
        ),
        (
            "unknown-fact.json",
            text(&unknown_fact),
            "unknown field `forced`",
        ),
        (
            "settings-in-facts.json",
            text(&settings_in_facts),
            "unknown field `settings`",
        ),
        ("no-expect.json", text(&no_expect), "missing field `expect`"),
        (
            "no-decision.json",
            text(&no_decision),
            "missing field `decision`",
        ),
        (
            "bad-decision.json",
            text(&bad_decision),
            "unknown variant `maybe`",
        ),
        (
            "bad-regex.json",
            text(&bad_regex),
            "expect.reason is not a valid pattern",
        ),
        (
            "settings-array.json",
            text(&settings_array),
            "\"settings\" must be a JSON object",
        ),
        ("no-facts.json", text(&no_facts), "missing field `facts`"),
        (
            "missing-fact.json",
            text(&missing_fact),
            "missing field `verdict`",
        ),
        ("empty.json", String::new(), "malformed JSON"),
    ];
    let module = p(&policy_module("default"));
    for (name, body, needle) in &table {
        let dir = tempdir();
        // A good case beside the bad one: nothing runs, the whole run is refused.
        write_json(&dir.path().join("0-good.json"), &base);
        let file = dir.path().join(name);
        fs::write(&file, body).unwrap();
        for target in [file.clone(), dir.path().to_path_buf()] {
            let out = run(["policy".into(), "test".into(), module.clone(), p(&target)]);
            out.exits(1);
            assert!(
                out.stderr.contains(&format!("case file {}", p(&file))),
                "{name}: the error should name the file: {}",
                out.context()
            );
            assert!(
                out.stderr.contains(needle),
                "{name}: expected {needle:?}: {}",
                out.context()
            );
            assert!(!out.stdout.contains("pass "), "{name}: {}", out.context());
        }
    }

    // An empty directory, and one holding no *.json, are errors too.
    let empty = tempdir();
    fs::write(empty.path().join("notes.txt"), "not a case").unwrap();
    let out = run([
        "policy".into(),
        "test".into(),
        module.clone(),
        p(empty.path()),
    ]);
    out.exits(1);
    assert!(
        out.stderr
            .contains(&format!("no case files (*.json) in {}", p(empty.path()))),
        "{}",
        out.context()
    );
    let missing = empty.path().join("nope");
    let out = run(["policy".into(), "test".into(), module, p(&missing)]);
    out.exits(1);
    assert!(
        out.stderr
            .contains(&format!("cannot read case path {}", p(&missing))),
        "{}",
        out.context()
    );
}

// ---------------------------------------------------------------------------------------
// policy check

#[test]
fn check_passes_the_shipped_modules() {
    for policy in SHIPPED {
        let out = run(["policy".into(), "check".into(), p(&policy_module(policy))]);
        out.exits(0);
        let o = &out.stdout;
        assert!(!o.contains("PROBLEM"), "{policy}: {}", out.context());
        for needle in [
            "a component implementing pushgate:policy/policy@0.2.0",
            "this pushgate runs pushgate:policy/policy@0.2.0, pushgate:policy/policy@0.1.0",
            "imports only what the host offers",
            &format!("metadata name: \"{policy}\""),
            "accepts the settings",
            "answers all 10 situations of the corpus within the caps",
            "answers the same facts the same way twice",
        ] {
            assert!(
                o.contains(needle),
                "{policy}: {needle:?}: {}",
                out.context()
            );
        }
        assert!(o.ends_with("\nok\n"), "{policy}: {}", out.context());
    }
}

/// With its sample settings, kubevirt's rules show on the corpus: not everything fails.
#[test]
fn check_shows_kubevirt_rules_at_work_on_the_corpus() {
    let doc = run([
        "policy".into(),
        "check".into(),
        "--json".into(),
        p(&policy_module("kubevirt")),
    ])
    .exits(0)
    .json();
    assert_eq!(doc["ok"], true, "{doc}");
    let findings = doc["report"]["findings"].as_array().unwrap();
    assert!(findings.iter().all(|f| f["ok"] == true), "{doc}");
    let answers = doc["report"]["answers"].as_array().unwrap();
    assert_eq!(answers.len(), 10, "{doc}");
    let kind_of = |situation: &str| {
        answers
            .iter()
            .find(|a| a["situation"] == situation)
            .unwrap_or_else(|| panic!("no situation {situation:?}: {doc}"))["decision"]["kind"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(kind_of("up-to-date"), "skip");
    assert_eq!(kind_of("push"), "push");
    assert_eq!(kind_of("push, a tag points to another list"), "fail");
    assert_eq!(kind_of("push --force over a moved tag"), "push");
}

#[test]
fn check_with_explicit_settings_from_a_file_or_inline() {
    let module = p(&policy_module("kubevirt"));
    let dir = tempdir();
    let file = dir.path().join("settings.json");
    fs::write(&file, r#"{"required-arches": ["x86_64", "aarch64"]}"#).unwrap();
    let out = run([
        "policy".into(),
        "check".into(),
        module.clone(),
        "--settings".into(),
        format!("@{}", p(&file)),
    ]);
    out.exits(0);
    assert!(
        out.stdout
            .contains(r#"accepts the settings {"required-arches": ["x86_64", "aarch64"]}"#),
        "{}",
        out.context()
    );

    // Settings the module rejects, and settings that are not an object.
    for (settings, needle) in [
        (r#"{"required-arches": []}"#, "must name at least one arch"),
        ("[]", "are not a JSON object"),
    ] {
        let out = run([
            "policy".into(),
            "check".into(),
            module.clone(),
            "--settings".into(),
            settings.into(),
        ]);
        out.exits(1);
        assert!(out.stdout.contains("PROBLEM"), "{}", out.context());
        assert!(out.stdout.contains(needle), "{settings}: {}", out.context());
        assert!(
            out.stdout.ends_with("problems found\n"),
            "{}",
            out.context()
        );
    }
}

#[test]
fn check_finds_the_problems_of_hostile_modules() {
    let hostile = p(&policy_module("hostile"));
    for (mode, extra, needle) in [
        // A small fuel cap keeps the test quick; the default cap stops it just the same.
        (
            "loop",
            ["--policy-fuel", "20000000"],
            "exceeded its fuel (20000000 units) cap",
        ),
        (
            "memory",
            ["--policy-memory-mib", "32"],
            "exceeded its memory (32 MiB) cap",
        ),
        ("trap", ["--policy-timeout-ms", "5000"], "trapped in decide"),
    ] {
        let mut args = vec![
            "policy".to_string(),
            "check".into(),
            hostile.clone(),
            "--settings".into(),
            format!(r#"{{"mode": "{mode}"}}"#),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = run(args);
        out.exits(1);
        assert!(
            out.stdout
                .contains("PROBLEM  no answer within the caps: up-to-date: "),
            "{mode}: {}",
            out.context()
        );
        assert!(out.stdout.contains(needle), "{mode}: {}", out.context());
        assert!(
            out.stdout.contains("(no answer)"),
            "{mode}: {}",
            out.context()
        );
        assert!(
            out.stdout.ends_with("problems found\n"),
            "{mode}: {}",
            out.context()
        );
    }

    let out = run([
        "policy".into(),
        "check".into(),
        hostile.clone(),
        "--settings".into(),
        r#"{"mode": "bad-settings"}"#.into(),
    ]);
    out.exits(1);
    assert!(
        out.stdout.contains(&format!(
            "PROBLEM  policy module {hostile} rejected the settings: hostile: these settings are always rejected"
        )),
        "{}",
        out.context()
    );
    // No corpus run with settings the module refuses.
    assert!(
        !out.stdout.contains("decisions on the built-in corpus"),
        "{}",
        out.context()
    );

    let wrong = p(&policy_module("wrong-version"));
    let out = run(["policy".into(), "check".into(), wrong.clone()]);
    out.exits(1);
    assert!(
        out.stdout.contains(&format!(
            "PROBLEM  policy module {wrong} does not implement a contract this pushgate runs \
             (pushgate:policy/policy@0.2.0, pushgate:policy/policy@0.1.0): \
             it exports pushgate:policy/policy@9.0.0 (a newer pushgate may run it; \
             or build the policy against pushgate:policy/policy@0.2.0)"
        )),
        "{}",
        out.context()
    );

    let dir = tempdir();
    for (name, bytes) in [
        ("text.wasm", b"# not a module\n".to_vec()),
        ("empty.wasm", Vec::new()),
        // The wasm magic and a core-module version: a module, not a component.
        ("core.wasm", b"\0asm\x01\0\0\0".to_vec()),
    ] {
        let file = dir.path().join(name);
        fs::write(&file, bytes).unwrap();
        let out = run(["policy".into(), "check".into(), p(&file)]);
        out.exits(1);
        assert!(
            out.stdout
                .contains(&format!("PROBLEM  policy module {}: ", p(&file))),
            "{name}: {}",
            out.context()
        );
        assert!(
            out.stdout.ends_with("problems found\n"),
            "{name}: {}",
            out.context()
        );
    }
    let out = run([
        "policy".into(),
        "check".into(),
        p(&dir.path().join("absent.wasm")),
    ]);
    out.exits(1);
    assert!(out.stdout.contains("cannot read it"), "{}", out.context());
}

/// Every call runs in a fresh instance: state a module keeps between calls never shows,
/// so even the `counter` mode answers the same facts the same way twice.
#[test]
fn check_passes_a_stateful_module_because_every_call_gets_a_fresh_instance() {
    let out = run([
        "policy".into(),
        "check".into(),
        "--json".into(),
        p(&policy_module("hostile")),
        "--settings".into(),
        r#"{"mode": "counter"}"#.into(),
    ]);
    out.exits(0);
    let doc = out.json();
    let findings = doc["report"]["findings"].as_array().unwrap();
    assert!(
        findings.iter().any(|f| f["what"]
            .as_str()
            .is_some_and(|w| w.starts_with("answers the same facts the same way twice"))
            && f["ok"] == true),
        "{doc}"
    );
    for answer in doc["report"]["answers"].as_array().unwrap() {
        assert_eq!(
            answer["decision"],
            json!({ "kind": "push", "reason": "call 1 of this instance" }),
            "{doc}"
        );
    }
    // Random is seeded the same for every instance, too.
    run([
        "policy".into(),
        "check".into(),
        p(&policy_module("hostile")),
        "--settings".into(),
        r#"{"mode": "random"}"#.into(),
    ])
    .exits(0);
}

// ---------------------------------------------------------------------------------------
// policy diff

#[test]
fn diff_shows_every_changed_case_and_fails_on_change_when_asked() {
    let default = p(&policy_module("default"));
    let kubevirt = p(&policy_module("kubevirt"));
    // kubevirt's cases: default refuses their settings, kubevirt decides them.
    let cases = cases_of("kubevirt");
    let n = json_files(&cases).len();
    let out = run([
        "policy".into(),
        "diff".into(),
        default.clone(),
        kubevirt.clone(),
        p(&cases),
    ]);
    out.exits(0);
    assert!(
        out.stdout.ends_with(&format!(
            "{n} of {n} case(s) decided differently by kubevirt 0.1.0 than by default 0.1.0\n"
        )),
        "{}",
        out.context()
    );
    assert_eq!(
        out.stdout.matches("changed  ").count(),
        n,
        "{}",
        out.context()
    );

    // Settings `{}`: default takes them and follows the host, kubevirt refuses them.
    assert!(
        out.stdout.contains(&format!(
            "changed  {}\n    old  push: stable is missing, 41.20261127.1.0 is missing (want sha256:",
            p(&cases.join("missing-settings-fail.json"))
        )),
        "{}",
        out.context()
    );
    assert!(
        out.stdout.contains(&format!(
            "    new  fail: policy module {kubevirt} rejected the settings: \"required-arches\" is required"
        )),
        "{}",
        out.context()
    );

    // --fail-on-change makes any change exit 1; --json shows the same changes.
    let doc = run([
        "policy".into(),
        "diff".into(),
        "--json".into(),
        "--fail-on-change".into(),
        default.clone(),
        kubevirt.clone(),
        p(&cases),
    ])
    .exits(1)
    .json();
    assert_eq!(doc["old"]["name"], "default");
    assert_eq!(doc["new"]["name"], "kubevirt");
    assert_eq!(doc["new"]["version"], "0.1.0");
    assert!(
        doc["new"]["sha256"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(doc["cases"], n);
    let changed = doc["changed"].as_array().unwrap();
    assert_eq!(changed.len(), n);
    let moved = changed
        .iter()
        .find(|c| {
            c["case"]
                .as_str()
                .unwrap()
                .ends_with("tag-moved-with-force-pushes.json")
        })
        .expect("the forced move is a change");
    assert_eq!(moved["new"]["kind"], "push");
    assert!(
        moved["new"]["reason"]
            .as_str()
            .unwrap()
            .contains("(--force: moving tag stable from sha256:"),
        "{moved}"
    );
    assert_eq!(moved["old"]["kind"], "fail");

    // A module diffed with itself changes nothing; --fail-on-change passes.
    let out = run([
        "policy".into(),
        "diff".into(),
        "--fail-on-change".into(),
        default.clone(),
        default.clone(),
        p(&cases_of("default")),
    ]);
    out.exits(0);
    assert!(!out.stdout.contains("changed  "), "{}", out.context());
    assert!(out.stdout.starts_with("0 of "), "{}", out.context());
}

/// Two builds of the same policy sit at different paths (say, main's module in a temp
/// dir and the branch's in target/): the host's reasons name the module file, which
/// must not count as a change.
#[test]
fn diff_of_two_builds_of_the_same_policy_ignores_where_they_sit() {
    let dir = tempdir();
    let module = policy_module("default");
    let mut bytes = fs::read(&module).unwrap();
    // A custom section (id 0, "note", one byte): other bytes, the same behaviour.
    bytes.extend_from_slice(&[0, 6, 4, b'n', b'o', b't', b'e', b'x']);
    let old = dir.path().join("main-default.wasm");
    fs::write(&old, &bytes).unwrap();
    let inspected = run(["policy".into(), "inspect".into(), "--json".into(), p(&old)])
        .exits(0)
        .json();
    assert_ne!(
        inspected["sha256"],
        sha256_digest(&fs::read(&module).unwrap())
    );

    let cases = cases_of("default");
    let out = run([
        "policy".into(),
        "diff".into(),
        "--fail-on-change".into(),
        p(&old),
        p(&module),
        p(&cases),
    ]);
    out.exits(0);
    assert!(!out.stdout.contains("changed  "), "{}", out.context());
}

// ---------------------------------------------------------------------------------------
// policy inspect

#[test]
fn inspect_describes_a_module() {
    let module = policy_module("kubevirt");
    let bytes = fs::read(&module).unwrap();
    let out = run(["policy".into(), "inspect".into(), p(&module)]);
    out.exits(0);
    let o = &out.stdout;
    for needle in [
        format!("module:    {}\n", p(&module)),
        format!(
            "size:      {} ({} bytes)\n",
            pushgate::human::size(bytes.len() as u64),
            bytes.len()
        ),
        format!("sha256:    {}\n", sha256_digest(&bytes)),
        "policy:    kubevirt 0.1.0\n".to_string(),
        "contract:  pushgate:policy/policy@0.2.0\n".to_string(),
        "exports:   pushgate:policy/policy@0.2.0\n".to_string(),
        "host runs: pushgate:policy/policy@0.2.0, pushgate:policy/policy@0.1.0\n".to_string(),
        "imports:\n".to_string(),
        // kubevirt logs each decision through the host.
        "  pushgate:policy/host@0.2.0\n".to_string(),
        "sample:    {\"required-arches\": [\"x86_64\"]}\n".to_string(),
    ] {
        assert!(o.contains(&needle), "{needle:?}: {}", out.context());
    }

    let doc = run([
        "policy".into(),
        "inspect".into(),
        "--json".into(),
        p(&module),
    ])
    .exits(0)
    .json();
    assert_eq!(doc["size"], bytes.len());
    assert_eq!(doc["sha256"], sha256_digest(&bytes));
    assert_eq!(doc["loaded"]["ok"]["name"], "kubevirt");
    assert_eq!(
        doc["loaded"]["ok"]["contract"],
        "pushgate:policy/policy@0.2.0"
    );
    assert_eq!(doc["host_contracts"], json!(pushgate::policy::CONTRACTS));
    assert!(
        doc["imports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i == "pushgate:policy/host@0.2.0"),
        "{doc}"
    );
}

#[test]
fn inspect_shows_what_a_wrong_version_module_exports_and_exits_1() {
    let module = policy_module("wrong-version");
    let out = run(["policy".into(), "inspect".into(), p(&module)]);
    out.exits(1);
    let o = &out.stdout;
    assert!(
        o.contains("exports:   pushgate:policy/policy@9.0.0\n"),
        "{}",
        out.context()
    );
    assert!(
        o.contains("loads:     no: ") && o.contains("a newer pushgate may run it"),
        "{}",
        out.context()
    );
    assert!(
        o.contains(&format!(
            "sha256:    {}\n",
            sha256_digest(&fs::read(&module).unwrap())
        )),
        "{}",
        out.context()
    );
    assert!(!o.contains("policy:    "), "{}", out.context());

    let doc = run([
        "policy".into(),
        "inspect".into(),
        "--json".into(),
        p(&module),
    ])
    .exits(1)
    .json();
    assert!(
        doc["loaded"]["error"]
            .as_str()
            .unwrap()
            .contains("pushgate:policy/policy@9.0.0"),
        "{doc}"
    );
    assert_eq!(doc["exports"], json!(["pushgate:policy/policy@9.0.0"]));
}

// ---------------------------------------------------------------------------------------
// policy new

#[test]
fn a_new_policy_builds_passes_its_case_and_checks_as_generated() {
    let dir = tempdir();
    let out = run([
        "policy".into(),
        "new".into(),
        "scaffold-test".into(),
        "--dir".into(),
        p(dir.path()),
    ]);
    out.exits(0);
    let crate_dir = dir.path().join("scaffold-test");
    assert!(
        out.stdout
            .starts_with(&format!("created {}\n", p(&crate_dir))),
        "{}",
        out.context()
    );
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "wit/policy.wit",
        "cases/push-follows-the-host.json",
        "README.md",
    ] {
        assert!(crate_dir.join(file).is_file(), "{file} missing");
    }
    assert_eq!(
        fs::read_to_string(crate_dir.join("wit/policy.wit")).unwrap(),
        fs::read_to_string(root().join("wit/policy.wit")).unwrap(),
        "the crate carries the host's contract"
    );
    assert!(
        fs::read_to_string(crate_dir.join("wit/policy.wit"))
            .unwrap()
            .contains(&format!(
                "package {};",
                pushgate::policy::CONTRACT.replace("/policy@", "@")
            )),
        "the crate is scaffolded against the newest contract, {}",
        pushgate::policy::CONTRACT
    );

    // Built as the generated README says, into a target dir shared across runs.
    let target = root().join("tests/policies/target/scaffold");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let build = Command::new(cargo)
        .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(crate_dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .stdin(Stdio::null())
        .output()
        .expect("run cargo");
    assert!(
        build.status.success(),
        "building the scaffolded crate failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let module = target.join("wasm32-wasip2/release/scaffold_test_policy.wasm");
    assert!(module.is_file(), "{} was not built", module.display());

    let out = run([
        "policy".into(),
        "test".into(),
        p(&module),
        p(&crate_dir.join("cases")),
    ]);
    out.exits(0);
    assert!(
        out.stdout.ends_with("1 passed, 0 failed\n"),
        "{}",
        out.context()
    );
    let out = run(["policy".into(), "check".into(), p(&module)]);
    out.exits(0);
    assert!(
        out.stdout.contains("metadata name: \"scaffold-test\""),
        "{}",
        out.context()
    );
    assert!(!out.stdout.contains("PROBLEM"), "{}", out.context());

    // Never over an existing directory; names are checked.
    let out = run([
        "policy".into(),
        "new".into(),
        "scaffold-test".into(),
        "--dir".into(),
        p(dir.path()),
    ]);
    out.exits(1);
    assert!(out.stderr.contains("already exists"), "{}", out.context());
    for bad in ["Scaffold", "../escape", "1st"] {
        let out = run([
            "policy".into(),
            "new".into(),
            bad.to_string(),
            "--dir".into(),
            p(dir.path()),
        ]);
        // a usage error, refused before anything is looked at
        out.exits(2);
        assert!(
            out.stderr.contains("policy name"),
            "{bad}: {}",
            out.context()
        );
    }
}

// ---------------------------------------------------------------------------------------
// policy facts

/// `policy facts --out FILE` for the ostree artifact of the build in `wd`.
fn capture(reg: &Registry, wd: &Path, out: &Path, extra: &[&str]) -> Out {
    let mut args = vec![
        "policy".to_string(),
        "facts".into(),
        "--repo".into(),
        reg.repo("fcos"),
        "--tag".into(),
        "stable".into(),
        "--tag".into(),
        BUILD.into(),
        "--artifact".into(),
        "ostree".into(),
        "--metajsonname".into(),
        KEY.into(),
        "--workdir".into(),
        p(wd),
        "--tls-verify=false".into(),
        "--out".into(),
        p(out),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    run(args)
}

fn meta_jsons(wd: &Path) -> Vec<Vec<u8>> {
    ["x86_64", "aarch64"]
        .iter()
        .map(|a| fs::read(wd.join("builds").join(BUILD).join(a).join("meta.json")).unwrap())
        .collect()
}

#[test]
fn facts_captures_a_real_situation_as_a_passing_case() {
    let reg = Registry::start();
    let wd = tempdir();
    write_build(
        wd.path(),
        &SampleBuild::small(BUILD, &["x86_64", "aarch64"]),
    )
    .unwrap();
    let metas = meta_jsons(wd.path());
    let cases = tempdir();
    let default = p(&policy_module("default"));

    // Before any push: observed, nothing written anywhere.
    let before = cases.path().join("before.json");
    let out = capture(&reg, wd.path(), &before, &[]);
    out.exits(0);
    assert!(
        reg.writes().is_empty(),
        "policy facts wrote to the registry"
    );
    assert_eq!(meta_jsons(wd.path()), metas, "policy facts wrote meta.json");
    let case = read_json(&before);
    let f = &case["facts"];
    assert_eq!(case["settings"], json!({}));
    assert_eq!(case["expect"], json!({ "decision": "push" }));
    assert_eq!(f["verdict"], "push");
    assert_eq!(f["container"], KEY);
    assert_eq!(f["key"], KEY);
    assert_eq!(f["repo"], reg.repo("fcos"));
    assert_eq!(f["build-id"], BUILD);
    assert_eq!(f["requested-arches"], json!(["x86_64", "aarch64"]));
    assert_eq!(f["present-arches"], json!(["x86_64", "aarch64"]));
    assert_eq!(
        f["tags"],
        json!([
            { "name": "stable", "current": null, "is-desired": false, "signatures": null },
            { "name": BUILD, "current": null, "is-desired": false, "signatures": null },
        ])
    );
    for a in f["arches"].as_array().unwrap() {
        assert_eq!(a["has-key"], false, "{a}");
        assert_eq!(a["recorded-digest"], Value::Null, "{a}");
        assert_eq!(a["registry-digest"], Value::Null, "{a}");
        assert!(
            a["desired-digest"].as_str().unwrap().starts_with("sha256:"),
            "{a}"
        );
        // An archive has no registry home: no signatures, said explicitly.
        assert!(a["source"]["origin"]["local"].is_string(), "{a}");
        assert_eq!(a["source"]["signatures"], Value::Null, "{a}");
        assert_eq!(a["source"]["digest"], a["desired-digest"], "{a}");
    }
    assert_eq!(f["trusted-keys"], json!([]));
    let out = run(["policy".into(), "test".into(), default.clone(), p(&before)]);
    out.exits(0);
    assert!(
        out.stdout.ends_with("1 passed, 0 failed\n"),
        "{}",
        out.context()
    );

    // Push: what was published is what the facts said would be.
    let pushed = run([
        "push".to_string(),
        "--repo".into(),
        reg.repo("fcos"),
        "--tag".into(),
        "stable".into(),
        "--tag".into(),
        BUILD.into(),
        "--artifact".into(),
        "ostree".into(),
        "--metajsonname".into(),
        KEY.into(),
        "--workdir".into(),
        p(wd.path()),
        "--tls-verify=false".into(),
        "--json".into(),
    ]);
    let report = pushed.exits(0).json();
    assert_eq!(report["outcome"], "pushed");
    let list = report["manifest_list_digest"].as_str().unwrap().to_string();
    assert_eq!(f["desired-list-digest"], list);
    for a in f["arches"].as_array().unwrap() {
        let arch = a["arch"].as_str().unwrap();
        assert_eq!(a["desired-digest"], report["digests"][arch], "{arch}");
    }

    // After the push: up to date, and the facts match the registry and meta.json.
    let after = cases.path().join("after.json");
    capture(&reg, wd.path(), &after, &[]).exits(0);
    let case = read_json(&after);
    let f = &case["facts"];
    assert_eq!(case["expect"], json!({ "decision": "skip" }));
    assert_eq!(f["verdict"], "up-to-date");
    assert_eq!(f["desired-list-digest"], list);
    for tag in f["tags"].as_array().unwrap() {
        let name = tag["name"].as_str().unwrap();
        let served = skopeo_digest(&format!("{}:{name}", reg.repo("fcos")), None).unwrap();
        assert_eq!(tag["current"], served, "{name}");
        assert_eq!(tag["current"], list, "{name}");
        assert_eq!(tag["is-desired"], true, "{name}");
    }
    for a in f["arches"].as_array().unwrap() {
        let arch = a["arch"].as_str().unwrap();
        let digest = &report["digests"][arch];
        assert_eq!(a["has-key"], true, "{a}");
        assert_eq!(&a["recorded-digest"], digest, "{a}");
        assert_eq!(&a["desired-digest"], digest, "{a}");
        assert_eq!(&a["registry-digest"], digest, "{a}");
        let meta = read_json(
            &wd.path()
                .join("builds")
                .join(BUILD)
                .join(arch)
                .join("meta.json"),
        );
        assert_eq!(&meta[KEY]["digest"], digest, "{arch}: meta.json");
    }
    let out = run(["policy".into(), "test".into(), default, p(&after)]);
    out.exits(0);
    assert!(
        out.stdout.ends_with("1 passed, 0 failed\n"),
        "{}",
        out.context()
    );

    // With a policy, the case holds its settings and expects what the policy decides.
    let kubevirt = p(&policy_module("kubevirt"));
    let strict = cases.path().join("strict.json");
    let settings = r#"{"required-arches": ["x86_64", "s390x"]}"#;
    capture(
        &reg,
        wd.path(),
        &strict,
        &["--policy", &kubevirt, "--policy-settings", settings],
    )
    .exits(0);
    let case = read_json(&strict);
    assert_eq!(
        case["settings"],
        json!({ "required-arches": ["x86_64", "s390x"] })
    );
    assert_eq!(case["expect"], json!({ "decision": "fail" }));
    let out = run(["policy".into(), "test".into(), kubevirt, p(&strict)]);
    out.exits(0);
    assert!(
        out.stdout.ends_with("1 passed, 0 failed\n"),
        "{}",
        out.context()
    );
}
