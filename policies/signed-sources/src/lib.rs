//! The signed-sources policy: publish only sources signed by named keys.
//!
//! The host verifies signatures with the keys it is told to trust
//! (`--trust-key NAME=FILE.pub`, or `[trust-keys]` in a release config) and
//! tells the policy which of them signed each arch's source. This policy
//! requires, for every source (or every source of the arches named in its
//! settings), a valid signature by any one (`any-of`) or by every one
//! (`all-of`) of the keys its settings name, and optionally an in-toto
//! attestation of given predicate types by one of them. A source that falls
//! short fails the container, with a reason naming the arch, the image, the
//! keys looked for and why.
//!
//! Configuration problems (no key trusted by the host, a named key the host
//! does not trust) fail whatever the verdict, so a misconfigured job is found
//! on its first run; the sources themselves are judged only when the run would
//! write something (an up-to-date container is skipped: nothing is published).
//! `--force` waives nothing: it is about re-pushing, not about trust.

wit_bindgen::generate!({
    path: "../../wit",
    world: "policy-module",
    // Lets the tests compare decisions.
    additional_derives: [PartialEq],
});

use exports::pushgate::policy::policy::Guest;
use pushgate::policy::host::{Level, log};
use pushgate::policy::types::{
    ArchFact, Decision, Facts, Origin, PolicyMetadata, SignatureFacts, Verdict,
};
use serde_json::{Map, Value};

const NAME: &str = "signed-sources";

/// The cosa basearches: an arch named in the settings must be one of them, or
/// a typo would silently require nothing.
const ARCHES: [&str; 5] = ["x86_64", "aarch64", "ppc64le", "s390x", "riscv64"];

/// The settings keys, for the unknown-key message.
const KEYS: [&str; 5] = [
    "keys",
    "require",
    "arches",
    "archive-sources",
    "attestations",
];

/// How many of a source's invalid signatures a reason quotes, and how much of each.
const QUOTED_INVALID: usize = 3;
const QUOTED_CHARS: usize = 160;

const SETTINGS_HELP: &str = "\
A JSON object. \"keys\" (required): a non-empty list of the names of trusted keys \
(as given to --trust-key NAME=FILE.pub or in a release config's [trust-keys]) whose \
signature a source must carry. \"require\": \"any-of\" (default: a valid signature by \
one of the keys is enough) or \"all-of\" (every key must have signed). \"arches\": the \
cosa basearches (x86_64, aarch64, ppc64le, s390x, riscv64) whose sources must be \
signed; default every arch. \"archive-sources\": \"fail\" (default) or \"allow\": what \
to do with a local source (a cosa archive, oci-archive:PATH, oci:DIR), which has no \
registry home and so carries no signatures. \"attestations\": a non-empty list of \
in-toto predicate types (e.g. \"https://slsa.dev/provenance/v1\") each signed source \
must also carry an attestation of, by one of the keys. Unknown keys are rejected. \
Every named key must be trusted by the host, and the host must trust at least one key, \
whatever the verdict; an up-to-date container is skipped without judging its sources, \
and --force waives nothing.";

const SAMPLE_SETTINGS: &str =
    r#"{"keys": ["build"], "require": "any-of", "archive-sources": "fail"}"#;

struct SignedSourcesPolicy;

impl Guest for SignedSourcesPolicy {
    fn metadata() -> PolicyMetadata {
        PolicyMetadata {
            name: NAME.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Fails a container any of whose sources (or the sources of named \
                          arches) lacks a valid signature by the keys its settings name \
                          (any-of or all-of), optionally with attestations; otherwise \
                          follows the host's verdict."
                .to_string(),
            settings_help: SETTINGS_HELP.to_string(),
            sample_settings: SAMPLE_SETTINGS.to_string(),
        }
    }

    fn validate_settings(settings: String) -> Result<(), String> {
        Settings::parse(&settings).map(drop)
    }

    fn decide(facts: Facts) -> Decision {
        let decision = decide(&facts);
        let line = match &decision {
            Decision::Skip(reason) => format!("{}: skip: {reason}", facts.container),
            Decision::Push(reason) => format!("{}: push: {reason}", facts.container),
            Decision::Fail(reason) => format!("{}: fail: {reason}", facts.container),
        };
        log(Level::Info, &line);
        decision
    }
}

export!(SignedSourcesPolicy);

/// How many of the keys must have signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Require {
    AnyOf,
    AllOf,
}

/// What to do with a local source, which carries no signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveSources {
    Fail,
    Allow,
}

/// The parsed settings document.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub keys: Vec<String>,
    pub require: Require,
    /// None: every arch.
    pub arches: Option<Vec<String>>,
    pub archive_sources: ArchiveSources,
    pub attestations: Vec<String>,
}

impl Settings {
    pub fn parse(text: &str) -> Result<Settings, String> {
        let value: Value = serde_json::from_str(text)
            .map_err(|err| format!("settings are not valid JSON: {err}"))?;
        let Value::Object(object) = value else {
            return Err("settings must be a JSON object".to_string());
        };
        if let Some(key) = object.keys().find(|key| !KEYS.contains(&key.as_str())) {
            return Err(format!(
                "unknown setting {key:?}: {NAME} accepts {}",
                KEYS.map(|k| format!("{k:?}")).join(", ")
            ));
        }
        let Some(keys) = strings(&object, "keys")? else {
            return Err(
                "\"keys\" is required: the names of the trusted keys a source must be \
                 signed by, e.g. [\"build\"]"
                    .to_string(),
            );
        };
        for (index, key) in keys.iter().enumerate() {
            check_key_name(key).map_err(|err| format!("\"keys\"[{index}]: {err}"))?;
        }
        let require = match choice(&object, "require", &["any-of", "all-of"])? {
            None | Some("any-of") => Require::AnyOf,
            Some(_) => Require::AllOf,
        };
        let arches = strings(&object, "arches")?;
        for (index, arch) in arches.iter().flatten().enumerate() {
            if !ARCHES.contains(&arch.as_str()) {
                return Err(format!(
                    "\"arches\"[{index}] {arch:?} is not a cosa basearch ({})",
                    ARCHES.join(", ")
                ));
            }
        }
        let archive_sources = match choice(&object, "archive-sources", &["fail", "allow"])? {
            None | Some("fail") => ArchiveSources::Fail,
            Some(_) => ArchiveSources::Allow,
        };
        let attestations = strings(&object, "attestations")?.unwrap_or_default();
        Ok(Settings {
            keys,
            require,
            arches,
            archive_sources,
            attestations,
        })
    }

    /// Whether arch `arch`'s source must be signed.
    pub fn covers(&self, arch: &str) -> bool {
        self.arches
            .as_ref()
            .is_none_or(|arches| arches.iter().any(|a| a == arch))
    }

    /// What is looked for, as a reason says it.
    pub fn looked_for(&self) -> String {
        let signatures = match (self.require, self.keys.as_slice()) {
            (_, [key]) => format!("a signature by {key}"),
            (Require::AnyOf, keys) => format!("a signature by any of {}", keys.join(", ")),
            (Require::AllOf, keys) => format!("signatures by all of {}", keys.join(", ")),
        };
        if self.attestations.is_empty() {
            return signatures;
        }
        format!(
            "{signatures} and attestations of {} by {}",
            self.attestations.join(", "),
            self.attesters()
        )
    }

    /// The keys one of which must have made each attestation, as a reason says it.
    fn attesters(&self) -> String {
        match self.keys.as_slice() {
            [key] => key.clone(),
            keys => format!("any of {}", keys.join(", ")),
        }
    }
}

/// A non-empty list of distinct non-empty strings under `key`; absent is none.
fn strings(object: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, String> {
    let Some(value) = object.get(key) else {
        return Ok(None);
    };
    let Value::Array(items) = value else {
        return Err(format!("{key:?} must be a list of strings, not {value}"));
    };
    if items.is_empty() {
        return Err(format!(
            "{key:?} is empty: name at least one, or leave the setting out"
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        match item {
            Value::String(s) if s.is_empty() => {
                return Err(format!("{key:?}[{index}] is empty"));
            }
            Value::String(s) if out.contains(s) => {
                return Err(format!("{key:?}[{index}] {s:?} is given twice"));
            }
            Value::String(s) => out.push(s.clone()),
            _ => return Err(format!("{key:?}[{index}] must be a string, not {item}")),
        }
    }
    Ok(Some(out))
}

/// One of `allowed` under `key`; absent is none.
fn choice<'a>(
    object: &Map<String, Value>,
    key: &str,
    allowed: &[&'a str],
) -> Result<Option<&'a str>, String> {
    let Some(value) = object.get(key) else {
        return Ok(None);
    };
    let quoted = allowed
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(" or ");
    let Value::String(s) = value else {
        return Err(format!("{key:?} must be {quoted}, not {value}"));
    };
    match allowed.iter().find(|a| **a == s) {
        Some(a) => Ok(Some(a)),
        None => Err(format!("{key:?} must be {quoted}, not {s:?}")),
    }
}

/// A key name as the host accepts it in `--trust-key NAME=FILE.pub`: a name
/// it would refuse can never be trusted, so it is a settings error.
fn check_key_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a key name: use 1 to 64 letters, digits, '.', '_' or '-', \
             starting with a letter or digit"
        ))
    }
}

/// The decision for one container.
pub fn decide(facts: &Facts) -> Decision {
    let settings = match Settings::parse(&facts.settings) {
        Ok(settings) => settings,
        Err(err) => return Decision::Fail(format!("{NAME}: invalid settings: {err}")),
    };
    if facts.trusted_keys.is_empty() {
        return Decision::Fail(format!(
            "{NAME}: the host trusts no key, so no signature was checked; pass --trust-key \
             NAME=FILE.pub (or a release config's [trust-keys]) for {}",
            settings.keys.join(", ")
        ));
    }
    let untrusted: Vec<String> = settings
        .keys
        .iter()
        .filter(|key| !facts.trusted_keys.contains(key))
        .map(|key| {
            format!(
                "{NAME}: key {key} is not trusted by the host: pass --trust-key {key}=FILE.pub \
                 (the host trusts {})",
                facts.trusted_keys.join(", ")
            )
        })
        .collect();
    if !untrusted.is_empty() {
        return Decision::Fail(untrusted.join("; "));
    }
    // Nothing is published: there is nothing to guard (and the sources of an
    // up-to-date cosa build are not even read).
    if facts.verdict == Verdict::UpToDate {
        return Decision::Skip(facts.verdict_reason.clone());
    }
    let failures: Vec<String> = facts
        .arches
        .iter()
        .filter(|arch| settings.covers(&arch.arch))
        .filter_map(|arch| judge(&settings, arch))
        .collect();
    if !failures.is_empty() {
        return Decision::Fail(failures.join("; "));
    }
    Decision::Push(facts.verdict_reason.clone())
}

/// Why arch `arch`'s source falls short, if it does.
pub fn judge(settings: &Settings, arch: &ArchFact) -> Option<String> {
    let name = &arch.arch;
    let looked_for = settings.looked_for();
    let image = match &arch.source.origin {
        Origin::Local(path) => {
            if settings.archive_sources == ArchiveSources::Allow {
                return None;
            }
            let what = if path.is_empty() {
                "a local source".to_string()
            } else {
                format!("local source {path}")
            };
            return Some(format!(
                "{NAME}: {name}: {what} carries no signatures (it has no registry home); \
                 looked for {looked_for}; set \"archive-sources\": \"allow\" to publish \
                 local sources unsigned"
            ));
        }
        Origin::Registry(image) => image,
    };
    let Some(signatures) = &arch.source.signatures else {
        return Some(format!(
            "{NAME}: {name}: {image}: the host checked no signature of it; looked for \
             {looked_for}"
        ));
    };
    let mut problems = Vec::new();
    if let Some(problem) = unsigned(settings, signatures) {
        problems.push(problem);
    }
    let missing: Vec<&str> = settings
        .attestations
        .iter()
        .filter(|ptype| !attested(settings, signatures, ptype))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "no attestation of {} by {}",
            missing.join(", "),
            settings.attesters()
        ));
    }
    if problems.is_empty() {
        return None;
    }
    let mut reason = format!(
        "{NAME}: {name}: {image}: {}; looked for {looked_for}",
        problems.join(", and ")
    );
    if !signatures.invalid.is_empty() {
        reason.push_str(&format!(" ({})", quote_invalid(&signatures.invalid)));
    }
    Some(reason)
}

/// Why the signatures fall short of the keys, if they do.
fn unsigned(settings: &Settings, signatures: &SignatureFacts) -> Option<String> {
    let missing: Vec<&str> = settings
        .keys
        .iter()
        .filter(|key| !signatures.valid_keys.contains(key))
        .map(String::as_str)
        .collect();
    let enough = match settings.require {
        Require::AnyOf => missing.len() < settings.keys.len(),
        Require::AllOf => missing.is_empty(),
    };
    if enough {
        return None;
    }
    Some(
        match (signatures.valid_keys.as_slice(), signatures.invalid.len()) {
            ([], 0) => "no signature at all".to_string(),
            ([], n) => format!("no valid signature by a trusted key, {n} that do not count"),
            (valid, _) if settings.require == Require::AnyOf => {
                format!("signed by {} only", valid.join(", "))
            }
            (valid, _) => format!(
                "signed by {} but not by {}",
                valid.join(", "),
                missing.join(", ")
            ),
        },
    )
}

/// Whether one of the keys attested `ptype` about the image.
fn attested(settings: &Settings, signatures: &SignatureFacts, ptype: &str) -> bool {
    signatures
        .attestations
        .iter()
        .filter(|a| a.predicate_type == ptype)
        .any(|a| a.keys.iter().any(|k| settings.keys.contains(k)))
}

/// The host's reasons for the signatures that do not count, quoted and shortened.
fn quote_invalid(invalid: &[String]) -> String {
    let mut quoted: Vec<String> = invalid
        .iter()
        .take(QUOTED_INVALID)
        .map(|why| {
            if why.chars().count() > QUOTED_CHARS {
                let cut: String = why.chars().take(QUOTED_CHARS - 1).collect();
                format!("\"{cut}…\"")
            } else {
                format!("\"{why}\"")
            }
        })
        .collect();
    if invalid.len() > QUOTED_INVALID {
        quoted.push(format!("and {} more", invalid.len() - QUOTED_INVALID));
    }
    format!("not counted: {}", quoted.join(", "))
}

#[cfg(test)]
mod tests;
