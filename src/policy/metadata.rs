//! What a module says about itself (`metadata`), lifted bounded and inert.
//!
//! Every field is made inert ([`inert`]) and cut to its bound; a field over its
//! bound, or with control characters, is remembered as a problem that
//! `policy check` reports.
//!
//! The host copies the answer once, and at most [`METADATA_BYTES`] of it: the
//! metadata call runs with that much hostcall fuel, which wasmtime spends on
//! every string it lifts (aliases of one region of the module's memory
//! included), and a module whose metadata is larger fails to load. Reading the
//! strings in place instead ([`wasmtime::component::WasmStr`] in a typed
//! function's result) cannot work with wasmtime 48: the call runs the module's
//! post-return (which frees the strings, and a real allocator reuses them)
//! before the caller can read a single byte.

use wasmtime::Store;

use super::contracts::Guest;
use super::convert::inert;
use super::sandbox::State;

/// The most characters kept of each metadata field.
pub const MAX_NAME_CHARS: usize = 128;
pub const MAX_VERSION_CHARS: usize = 64;
pub const MAX_DESCRIPTION_CHARS: usize = 4096;
pub const MAX_SETTINGS_HELP_CHARS: usize = 4096;
pub const MAX_SAMPLE_SETTINGS_CHARS: usize = 4096;

/// The most bytes of strings the host lifts from one metadata answer, all
/// fields together: room for every field at its bound in 4-byte characters,
/// and plenty of control characters besides.
pub const METADATA_BYTES: usize = 1 << 20;

/// The metadata, bounded and inert, and what was wrong with it as given.
#[derive(Debug, Default)]
pub(crate) struct Metadata {
    pub name: String,
    pub version: String,
    pub description: String,
    pub settings_help: String,
    pub sample_settings: String,
    /// One line per field over its bound or with control characters, naming
    /// the field and the bound.
    pub problems: Vec<String>,
}

/// Calls the module's `metadata` export and bounds its answer.
pub(crate) fn call(policy: &Guest, store: &mut Store<State>) -> wasmtime::Result<Metadata> {
    store.set_hostcall_fuel(METADATA_BYTES);
    let raw = policy.metadata(&mut *store)?;
    let mut m = Metadata::default();
    for (field, text, max, one_line, out) in [
        ("name", &raw.name, MAX_NAME_CHARS, true, &mut m.name),
        (
            "version",
            &raw.version,
            MAX_VERSION_CHARS,
            true,
            &mut m.version,
        ),
        (
            "description",
            &raw.description,
            MAX_DESCRIPTION_CHARS,
            false,
            &mut m.description,
        ),
        (
            "settings-help",
            &raw.settings_help,
            MAX_SETTINGS_HELP_CHARS,
            false,
            &mut m.settings_help,
        ),
        (
            "sample-settings",
            &raw.sample_settings,
            MAX_SAMPLE_SETTINGS_CHARS,
            false,
            &mut m.sample_settings,
        ),
    ] {
        let (kept, problems) = bounded(field, text, max, one_line);
        *out = kept;
        m.problems.extend(problems);
    }
    Ok(m)
}

/// `text` made inert and cut to `max` characters, and what was wrong with it.
fn bounded(field: &str, text: &str, max: usize, one_line: bool) -> (String, Vec<String>) {
    let mut problems = Vec::new();
    let chars = text.chars().count();
    if chars > max {
        problems.push(format!(
            "metadata {field} is {chars} characters, over its bound of {max} (cut)"
        ));
    }
    let control = |c: char| c.is_control() && (one_line || !matches!(c, '\t' | '\n' | '\r'));
    if text.chars().any(control) {
        problems.push(format!(
            "metadata {field} holds control characters{} (dropped)",
            if one_line { " or line breaks" } else { "" }
        ));
    }
    (inert(text, max), problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_within_its_bound_is_kept_as_is() {
        let (kept, problems) = bounded("name", "kubevirt", MAX_NAME_CHARS, true);
        assert_eq!(kept, "kubevirt");
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn a_field_over_its_bound_is_cut_and_named() {
        let long = "v".repeat(MAX_VERSION_CHARS + 1);
        let (kept, problems) = bounded("version", &long, MAX_VERSION_CHARS, true);
        assert_eq!(kept.chars().count(), MAX_VERSION_CHARS + 1, "{kept}");
        assert!(kept.ends_with('…'));
        assert_eq!(
            problems,
            [format!(
                "metadata version is {} characters, over its bound of {MAX_VERSION_CHARS} (cut)",
                MAX_VERSION_CHARS + 1
            )]
        );
    }

    #[test]
    fn control_characters_are_dropped_and_named() {
        let (kept, problems) = bounded(
            "name",
            "evil\x1b[31m\x07\npushgate: debug: forged",
            MAX_NAME_CHARS,
            true,
        );
        assert_eq!(kept, "evil[31m pushgate: debug: forged");
        assert_eq!(
            problems,
            ["metadata name holds control characters or line breaks (dropped)"]
        );
    }

    #[test]
    fn line_breaks_in_help_are_no_problem_but_become_spaces() {
        let (kept, problems) = bounded(
            "settings-help",
            "A JSON object:\n  \"key\": a list",
            MAX_SETTINGS_HELP_CHARS,
            false,
        );
        assert_eq!(kept, "A JSON object:   \"key\": a list");
        assert!(problems.is_empty(), "{problems:?}");
        let (_, problems) = bounded("settings-help", "x\x1b[2J", 10, false);
        assert_eq!(
            problems,
            ["metadata settings-help holds control characters (dropped)"]
        );
    }
}
