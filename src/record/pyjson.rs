//! The JSON text cosa's Python writes (`json.dump(obj, f, indent=4)`), so that a
//! meta.json pushgate rewrites differs from cosa's only in the key it changed.

use std::io;

use serde::Serialize;
use serde_json::Value;
use serde_json::ser::{Formatter, PrettyFormatter};

/// `value` as cosa writes it; `spellings` are the number literals of the document it
/// was parsed from, in order (see [`CosaFormatter`]).
pub(crate) fn render(
    value: &Value,
    trailing_newline: bool,
    spellings: &[&str],
) -> serde_json::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut bytes, CosaFormatter::new(spellings));
    value.serialize(&mut ser)?;
    if trailing_newline {
        bytes.push(b'\n');
    }
    Ok(bytes)
}

/// The number literals of a valid JSON text, in order.
pub(crate) fn number_spellings(text: &str) -> Vec<&str> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                {
                    i += 1;
                }
                out.push(&text[start..i]);
            }
            _ => i += 1,
        }
    }
    out
}

/// The spelling serde_json (with `arbitrary_precision`) gives a number literal after
/// parsing: everything is kept except the exponent, which becomes `e` with a sign.
fn normalized_number(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len() + 1);
    let mut chars = literal.chars().peekable();
    while let Some(c) = chars.next() {
        if c == 'e' || c == 'E' {
            out.push('e');
            if chars.peek().is_some_and(char::is_ascii_digit) {
                out.push('+');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Serializes like python's `json.dump(obj, f, indent=4)`: serde_json's pretty layout
/// with a 4-space indent (python ≥ 3.4 uses the same separators), and `ensure_ascii`:
/// every character outside printable ASCII escaped as `\uXXXX` (UTF-16, lowercase hex).
/// Control characters, `"` and `\` are escaped by serde_json itself exactly as python
/// does.
///
/// Numbers keep their text thanks to `arbitrary_precision`, except that serde_json
/// normalizes exponents (`1.0e3` → `1.0e+3`, `1E5` → `1e+5`). Python never writes those
/// forms, but to keep a file's other bytes intact whatever wrote it, the formatter is
/// given the original literals in document order and writes the next one back when it
/// is a spelling of the number being written; otherwise the normalized text is written,
/// so a misalignment can only cost fidelity, never change a value.
struct CosaFormatter<'a> {
    pretty: PrettyFormatter<'static>,
    spellings: &'a [&'a str],
    next: usize,
}

impl<'a> CosaFormatter<'a> {
    fn new(spellings: &'a [&'a str]) -> Self {
        CosaFormatter {
            pretty: PrettyFormatter::with_indent(b"    "),
            spellings,
            next: 0,
        }
    }
}

impl Formatter for CosaFormatter<'_> {
    fn write_number_str<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        value: &str,
    ) -> io::Result<()> {
        if let Some(original) = self.spellings.get(self.next)
            && normalized_number(original) == value
        {
            self.next += 1;
            return w.write_all(original.as_bytes());
        }
        w.write_all(value.as_bytes())
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut rest = fragment;
        while let Some(at) = rest.find(|c: char| !(' '..='~').contains(&c)) {
            writer.write_all(&rest.as_bytes()[..at])?;
            let c = rest[at..]
                .chars()
                .next()
                .expect("found a char at this index");
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            rest = &rest[at + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }

    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.begin_array(w)
    }
    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_array(w)
    }
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.pretty.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_array_value(w)
    }
    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.begin_object(w)
    }
    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_object(w)
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.pretty.begin_object_key(w, first)
    }
    fn end_object_key<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_object_key(w)
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_object_value(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::testutil::META;

    #[test]
    fn rendering_a_parsed_document_gives_it_back() {
        let doc: Value = serde_json::from_str(META).unwrap();
        let spellings = number_spellings(META);
        assert_eq!(
            spellings[..3],
            ["1.0e3", "123456789012345678901234567890", "-0.000001e-7"]
        );
        assert_eq!(render(&doc, false, &spellings).unwrap(), META.as_bytes());
        assert_eq!(
            render(&doc, true, &spellings).unwrap(),
            format!("{META}\n").as_bytes()
        );
    }
}

/// Fuzz target (see `crate::fuzz`): whatever valid JSON meta.json holds, the
/// rewrite keeps every value, is ASCII as python's `ensure_ascii` writes, and
/// rewriting the rewrite changes no byte (a second record of the same push
/// leaves the file as the first left it).
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::fuzz::{Outcome, ensure, run};

    #[test]
    fn fuzz_meta_json_writer() {
        let dict: &[&[u8]] = &[
            b"1.0e3",
            b"1E5",
            b"-0.000001e-7",
            b"123456789012345678901234567890",
            b"\\u00e9",
            b"\\ud83d\\ude00",
            b"\\u007f",
            b"\"\\\\\"",
            b"    ",
        ];
        run("meta_json_writer", dict, &|input| {
            let Ok(text) = std::str::from_utf8(input) else {
                return Ok(Outcome::Refused);
            };
            let Ok(doc) = serde_json::from_str::<Value>(text) else {
                return Ok(Outcome::Refused);
            };
            let newline = text.ends_with('\n');
            let out = render(&doc, newline, &number_spellings(text))
                .map_err(|e| format!("does not render: {e}"))?;
            ensure(out.is_ascii(), || "the rewrite is not ASCII".into())?;
            let out_text = std::str::from_utf8(&out).expect("ASCII");
            let back: Value = serde_json::from_str(out_text)
                .map_err(|e| format!("the rewrite does not parse: {e}"))?;
            ensure(back == doc, || {
                format!("the rewrite changed a value: {out_text}")
            })?;
            let twice = render(&back, newline, &number_spellings(out_text))
                .map_err(|e| format!("the rewrite does not render: {e}"))?;
            ensure(twice == out, || {
                format!(
                    "rewriting the rewrite changes it:\n{out_text}\n---\n{}",
                    String::from_utf8_lossy(&twice)
                )
            })?;
            Ok(Outcome::Accepted)
        });
    }
}
