//! Conversion between the contract's plain data ([`crate::contract`]) and the
//! bindings generated from each contract version's WIT
//! ([`super::contracts`]): the only place that sees both. What a module says
//! is made inert here too.

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

/// The facts every contract version has, as `$t` (a version's `types`)
/// spells them: `$tag` and `$arch` convert one tag and one arch, `$($extra)*`
/// are the version's own fields.
macro_rules! facts {
    ($t:ident, $f:expr, $tag:expr, $arch:expr $(, $field:ident: $value:expr)*) => {{
        let f: &Facts = $f;
        $t::Facts {
            container: f.container.clone(),
            repo: f.repo.clone(),
            tags: f.tags.iter().map($tag).collect(),
            build_id: f.build_id.clone(),
            key: f.key.clone(),
            requested_arches: f.requested_arches.clone(),
            present_arches: f.present_arches.clone(),
            arches: f.arches.iter().map($arch).collect(),
            desired_list_digest: f.desired_list_digest.clone(),
            verdict: match f.verdict {
                Verdict::UpToDate => $t::Verdict::UpToDate,
                Verdict::RecordOnly => $t::Verdict::RecordOnly,
                Verdict::Push => $t::Verdict::Push,
            },
            verdict_reason: f.verdict_reason.clone(),
            force: f.force,
            dry_run: f.dry_run,
            settings: f.settings.clone(),
            $($field: $value,)*
        }
    }};
}

/// A decision as every version spells it, made inert.
macro_rules! decision {
    ($guest:ident, $d:expr) => {{
        let reason = |r: String| super::inert(&r, super::MAX_REASON_CHARS);
        match $d {
            $guest::Decision::Skip(r) => Decision::Skip(reason(r)),
            $guest::Decision::Push(r) => Decision::Push(reason(r)),
            $guest::Decision::Fail(r) => Decision::Fail(reason(r)),
        }
    }};
}

/// Contract 0.2.0: everything, signatures included.
pub(crate) mod v0_2 {
    use super::super::contracts::v0_2::exports::pushgate::policy::policy as guest;
    use super::super::contracts::v0_2::pushgate::policy::types as t;
    use crate::contract::{self, Decision, Facts, Verdict};

    fn signatures(s: &contract::SignatureFacts) -> t::SignatureFacts {
        t::SignatureFacts {
            valid_keys: s.valid_keys.clone(),
            invalid: s.invalid.clone(),
            attestations: s
                .attestations
                .iter()
                .map(|a| t::AttestationFact {
                    predicate_type: a.predicate_type.clone(),
                    keys: a.keys.clone(),
                })
                .collect(),
        }
    }

    pub(crate) fn facts(f: &Facts) -> t::Facts {
        facts!(
            t,
            f,
            |x| t::TagFact {
                name: x.name.clone(),
                current: x.current.clone(),
                is_desired: x.is_desired,
                signatures: x.signatures.as_ref().map(signatures),
            },
            |a| t::ArchFact {
                arch: a.arch.clone(),
                has_key: a.has_key,
                recorded_digest: a.recorded_digest.clone(),
                desired_digest: a.desired_digest.clone(),
                registry_digest: a.registry_digest.clone(),
                source: t::SourceFact {
                    origin: match &a.source.origin {
                        contract::Origin::Local(p) => t::Origin::Local(p.clone()),
                        contract::Origin::Registry(r) => t::Origin::Registry(r.clone()),
                    },
                    digest: a.source.digest.clone(),
                    signatures: a.source.signatures.as_ref().map(signatures),
                },
            },
            trusted_keys: f.trusted_keys.clone()
        )
    }

    pub(crate) fn decision(d: guest::Decision) -> Decision {
        decision!(guest, d)
    }
}

/// Contract 0.1.0: the facts it knows; signatures and sources are not among them.
pub(crate) mod v0_1 {
    use super::super::contracts::v0_1::exports::pushgate::policy::policy as guest;
    use super::super::contracts::v0_1::pushgate::policy::types as t;
    use crate::contract::{Decision, Facts, Verdict};

    pub(crate) fn facts(f: &Facts) -> t::Facts {
        facts!(
            t,
            f,
            |x| t::TagFact {
                name: x.name.clone(),
                current: x.current.clone(),
                is_desired: x.is_desired,
            },
            |a| t::ArchFact {
                arch: a.arch.clone(),
                has_key: a.has_key,
                recorded_digest: a.recorded_digest.clone(),
                desired_digest: a.desired_digest.clone(),
                registry_digest: a.registry_digest.clone(),
            }
        )
    }

    pub(crate) fn decision(d: guest::Decision) -> Decision {
        decision!(guest, d)
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
