//! Writing to stdout and stderr without panicking when the reader has gone.
//!
//! `println!` panics when stdout is a closed pipe (`pushgate ... | head -1`). Every
//! write of the binary goes through here instead: a closed pipe is not an error (the
//! reader wanted no more; the rest of the output is dropped, as ripgrep does), and the
//! exit status stays the run's own. Any other write error on stdout (a full disk) is
//! reported as an error.
//!
//! Every `--json` document is printed by [`json`], so each has the same head
//! (`schema`, `ok`, `command`; docs/json.md).

use std::io::{self, ErrorKind, Write};

use anyhow::Context;
use serde_json::{Map, Value};

/// Writes `text` to stdout, as is. A closed pipe is quietly ignored.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}

/// Writes `line` and a newline to stdout. A closed pipe is quietly ignored.
pub fn println(line: &str) -> anyhow::Result<()> {
    print(&format!("{line}\n"))
}

/// Writes one `--json` document, on one line: `schema`, `ok` (whether the run
/// exits 0) and `command` (the subcommand's canonical path: `push`, `policy
/// test`), then the fields of `body`, an object, less its own of those three.
pub fn json(command: &str, ok: bool, body: Value) -> anyhow::Result<()> {
    println(&json_doc(command, ok, body))
}

/// The line [`json`] prints.
pub fn json_doc(command: &str, ok: bool, body: Value) -> String {
    let mut doc = Map::new();
    doc.insert("schema".into(), pushgate::report::JSON_SCHEMA.into());
    doc.insert("ok".into(), ok.into());
    doc.insert("command".into(), command.into());
    let Value::Object(fields) = body else {
        unreachable!("a --json body is an object: {body}")
    };
    doc.extend(
        fields
            .into_iter()
            .filter(|(k, _)| !matches!(k.as_str(), "schema" | "ok" | "command")),
    );
    Value::Object(doc).to_string()
}

/// Writes `line` and a newline to stderr; if stderr cannot be written, there is
/// nowhere left to say so, and the exit status still tells.
pub fn eprintln(line: &str) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}
