//! Conversion between the contract's plain data ([`crate::contract`]) and the
//! bindings generated from the WIT: the only place that sees both.

use super::bindings::exports::pushgate::policy::policy as guest;
use super::bindings::pushgate::policy::host;
use crate::contract::{Decision, Facts, Verdict};

pub(crate) fn level_name(l: host::Level) -> &'static str {
    match l {
        host::Level::Debug => "debug",
        host::Level::Info => "info",
        host::Level::Warn => "warn",
    }
}

/// The most characters kept of a reason a module gives (of a decision, or of a
/// settings rejection).
pub(crate) const MAX_REASON_CHARS: usize = 4000;
/// The most characters kept of one log line.
pub(crate) const MAX_LOG_CHARS: usize = 1000;

/// What a module says, made inert and bounded: tabs and line breaks become
/// spaces, every other control character (escape, bell, NUL, ...) is dropped, so
/// nothing reaches a terminal but plain text; cut to `max` characters, then `…`.
pub(crate) fn inert(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut kept = 0;
    for c in text.chars() {
        let c = match c {
            '\t' | '\n' | '\r' => ' ',
            c if c.is_control() => continue,
            c => c,
        };
        if kept == max {
            out.push('…');
            break;
        }
        out.push(c);
        kept += 1;
    }
    out
}

pub(crate) fn from_wit(d: guest::Decision) -> Decision {
    let reason = |r: String| inert(&r, MAX_REASON_CHARS);
    match d {
        guest::Decision::Skip(r) => Decision::Skip(reason(r)),
        guest::Decision::Push(r) => Decision::Push(reason(r)),
        guest::Decision::Fail(r) => Decision::Fail(reason(r)),
    }
}

pub(crate) fn to_wit(f: &Facts) -> guest::Facts {
    use super::bindings::pushgate::policy::types as t;
    t::Facts {
        container: f.container.clone(),
        repo: f.repo.clone(),
        tags: f
            .tags
            .iter()
            .map(|x| t::TagFact {
                name: x.name.clone(),
                current: x.current.clone(),
                is_desired: x.is_desired,
            })
            .collect(),
        build_id: f.build_id.clone(),
        key: f.key.clone(),
        requested_arches: f.requested_arches.clone(),
        present_arches: f.present_arches.clone(),
        arches: f
            .arches
            .iter()
            .map(|a| t::ArchFact {
                arch: a.arch.clone(),
                has_key: a.has_key,
                recorded_digest: a.recorded_digest.clone(),
                desired_digest: a.desired_digest.clone(),
                registry_digest: a.registry_digest.clone(),
            })
            .collect(),
        desired_list_digest: f.desired_list_digest.clone(),
        verdict: match f.verdict {
            Verdict::UpToDate => t::Verdict::UpToDate,
            Verdict::RecordOnly => t::Verdict::RecordOnly,
            Verdict::Push => t::Verdict::Push,
        },
        verdict_reason: f.verdict_reason.clone(),
        force: f.force,
        dry_run: f.dry_run,
        settings: f.settings.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inert_drops_control_characters_and_keeps_plain_text() {
        assert_eq!(inert("plain é 字", 10), "plain é 字");
        assert_eq!(
            inert(
                "\x1b[2J\x1b[31mred\x1b[0m\x07bell\r\nnext\tline\x08\x00end",
                100
            ),
            "[2J[31mred[0mbell  next lineend"
        );
        assert_eq!(inert("\u{9b}31m\u{7f}x", 100), "31mx");
    }

    #[test]
    fn inert_cuts_long_text() {
        assert_eq!(inert("abcdef", 3), "abc…");
        assert_eq!(inert("abc", 3), "abc");
        assert_eq!(inert("abc\x1b", 3), "abc");
        let huge = "\x1b[31m".repeat(1 << 20);
        let cut = inert(&huge, MAX_REASON_CHARS);
        assert_eq!(cut.chars().count(), MAX_REASON_CHARS + 1);
        assert!(cut.starts_with("[31m[31m"));
    }
}
