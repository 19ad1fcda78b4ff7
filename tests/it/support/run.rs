//! Running the `pushgate` binary and reading what it said, for every test file.
//! What a run asked with `--json` prints is checked against the documented
//! schema (docs/pushgate.schema.json) here, so every test that reads a
//! `--json` output also holds it to the contract.

use std::path::Path;
use std::process::Command;
use std::sync::LazyLock;

use serde_json::Value;

use super::{Request, skopeo_digest, skopeo_inspect_raw};

/// One finished `pushgate` run.
pub struct Run {
    pub code: i32,
    /// The `--json` output; Null when stdout held none (an error before any report).
    pub json: Value,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Runs `cmd` to its end. With `--json` asked (however argparse lets it
    /// be spelt), a JSON object on stdout must be valid against the schema.
    pub fn of(cmd: &mut Command) -> Run {
        let json_asked = asks_json(cmd);
        let out = cmd.output().expect("run pushgate");
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            json: serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        if json_asked && run.json.is_object() {
            assert_schema(&run.json, &run.context());
        }
        run
    }

    pub fn outcome(&self) -> &str {
        self.json["outcome"].as_str().unwrap_or_default()
    }

    pub fn reason(&self) -> &str {
        self.json["reason"].as_str().unwrap_or_default()
    }

    pub fn decided_by(&self) -> &str {
        self.json["decided_by"].as_str().unwrap_or_default()
    }

    /// Everything about the run, for assertion messages.
    pub fn context(&self) -> String {
        format!(
            "exit {}\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        )
    }

    /// A release's result for container `name` (`results` is an array in
    /// config order, each element naming its container); Null if none.
    pub fn release_result(&self, name: &str) -> &Value {
        self.json["results"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["container"] == name))
            .unwrap_or(&Value::Null)
    }

    /// Asserts exit 0 and returns the report.
    pub fn ok(&self) -> &Value {
        assert_eq!(self.code, 0, "pushgate failed: {}", self.context());
        assert!(self.json.is_object(), "no JSON report: {}", self.context());
        &self.json
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.context())
    }
}

/// The documented schema of every `--json` output, compiled once.
static SCHEMA: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let schema: Value = serde_json::from_str(include_str!("../../../docs/pushgate.schema.json"))
        .expect("docs/pushgate.schema.json is JSON");
    jsonschema::draft202012::new(&schema).expect("docs/pushgate.schema.json is a valid schema")
});

/// Where, and how, `doc` is not a `--json` output as
/// docs/pushgate.schema.json describes it; empty when it is one.
pub fn schema_errors(doc: &Value) -> Vec<String> {
    SCHEMA
        .iter_errors(doc)
        .map(|e| format!("at {}: {e}", e.instance_path()))
        .collect()
}

/// Asserts that `doc` is a `--json` output as docs/pushgate.schema.json
/// describes it, naming every place it is not.
pub fn assert_schema(doc: &Value, context: &str) {
    let errors = schema_errors(doc);
    assert!(
        errors.is_empty(),
        "--json output does not match docs/pushgate.schema.json:\n  {}\n{context}",
        errors.join("\n  ")
    );
}

/// Whether `cmd`'s arguments ask for `--json`: the flag, `--json=…`, or a
/// prefix argparse expands to it (`--js`; `--j` is ambiguous with `--jobs`).
fn asks_json(cmd: &Command) -> bool {
    cmd.get_args()
        .filter_map(|a| a.to_str())
        .take_while(|a| *a != "--")
        .any(|a| {
            let flag = a.split('=').next().unwrap_or(a);
            flag.len() >= 4 && "--json".starts_with(flag)
        })
}

/// `pushgate ARGS`.
pub fn run(args: &[String]) -> Run {
    Run::of(super::pushgate().args(args))
}

/// `pushgate ARGS` in `dir`.
pub fn run_in(dir: &Path, args: &[String]) -> Run {
    Run::of(super::pushgate().args(args).current_dir(dir))
}

pub fn s(v: &str) -> String {
    v.to_string()
}

pub fn path_str(p: &Path) -> String {
    p.to_str().expect("UTF-8 path").to_string()
}

/// The digest `reference` serves, as skopeo sees it.
pub fn digest_at(reference: &str) -> String {
    skopeo_digest(reference, None).unwrap_or_else(|e| panic!("skopeo {reference}: {e}"))
}

/// The manifest `reference` serves, as skopeo reads it.
pub fn raw_json(reference: &str) -> Value {
    let raw =
        skopeo_inspect_raw(reference, None).unwrap_or_else(|e| panic!("skopeo {reference}: {e}"));
    serde_json::from_slice(&raw).expect("manifest JSON")
}

/// The digests a manifest list / index names, in order.
pub fn list_digests(list: &Value) -> Vec<String> {
    list["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect()
}

/// A JSON array of strings.
pub fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// `METHOD PATH STATUS` per request, for assertion messages.
pub fn describe(reqs: &[Request]) -> Vec<String> {
    reqs.iter()
        .map(|r| format!("{} {} {}", r.method, r.path, r.status))
        .collect()
}
