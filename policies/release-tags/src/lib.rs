//! The release-tags policy: release tags are immutable once published.
//!
//! Tags matching an `immutable` pattern (e.g. `*.*.*` for version tags) are
//! release tags: once one points to a list, it never points to another, not
//! even with `--force`. Every other tag is floating (e.g. `stable`,
//! `testing`) and may move. Otherwise the host's verdict stands.

wit_bindgen::generate!({
    path: "../../wit",
    world: "policy-module",
    // Lets the tests compare decisions.
    additional_derives: [PartialEq],
});

use exports::pushgate::policy::policy::Guest;
use pushgate::policy::types::{Decision, Facts, PolicyMetadata, Verdict};
use serde_json::{Map, Value};

const SETTINGS_HELP: &str = "\
A JSON object with two optional keys, each a list of tag patterns:
  \"immutable\": tags matching one of these are release tags: once published,
      a release tag never moves to a different list, not even with --force.
  \"floating\": tags that may move, e.g. \"stable\", \"testing\".
Patterns match the whole tag; `*` matches any run of characters and `?` any
one character; there are no other wildcards. A tag matching no pattern is
floating; a tag matching both an immutable and a floating pattern is a release
tag. A pattern may not appear in both lists. Unknown keys are rejected.";

const SAMPLE_SETTINGS: &str =
    r#"{"immutable": ["*.*.*", "*.*.*-*"], "floating": ["stable", "testing", "next"]}"#;

struct ReleaseTagsPolicy;

impl Guest for ReleaseTagsPolicy {
    fn metadata() -> PolicyMetadata {
        PolicyMetadata {
            name: "release-tags".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Release tags (matching the immutable patterns) never move once \
                          published; floating tags may."
                .to_string(),
            settings_help: SETTINGS_HELP.to_string(),
            sample_settings: SAMPLE_SETTINGS.to_string(),
        }
    }

    fn validate_settings(settings: String) -> Result<(), String> {
        Settings::parse(&settings).map(drop)
    }

    fn decide(facts: Facts) -> Decision {
        decide(&facts)
    }
}

export!(ReleaseTagsPolicy);

/// The parsed settings document.
#[derive(Debug, Default, PartialEq)]
pub struct Settings {
    pub immutable: Vec<String>,
    pub floating: Vec<String>,
}

impl Settings {
    pub fn parse(text: &str) -> Result<Settings, String> {
        let value: Value = serde_json::from_str(text)
            .map_err(|err| format!("settings are not valid JSON: {err}"))?;
        let Value::Object(object) = value else {
            return Err("settings must be a JSON object".to_string());
        };
        if let Some(key) = object
            .keys()
            .find(|key| *key != "immutable" && *key != "floating")
        {
            return Err(format!(
                "unknown setting {key:?}: release-tags accepts \"immutable\" and \"floating\""
            ));
        }
        let settings = Settings {
            immutable: patterns(&object, "immutable")?,
            floating: patterns(&object, "floating")?,
        };
        if let Some(both) = settings
            .immutable
            .iter()
            .find(|pattern| settings.floating.contains(pattern))
        {
            return Err(format!(
                "pattern {both:?} is both in \"immutable\" and in \"floating\""
            ));
        }
        Ok(settings)
    }

    /// Whether a tag is a release tag (immutable once published).
    pub fn is_release_tag(&self, tag: &str) -> bool {
        self.immutable
            .iter()
            .any(|pattern| glob_match(pattern, tag))
    }
}

/// The list of patterns under `key`; absent means none.
fn patterns(object: &Map<String, Value>, key: &str) -> Result<Vec<String>, String> {
    let Some(value) = object.get(key) else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = value else {
        return Err(format!("{key:?} must be a list of tag patterns"));
    };
    let mut patterns = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let Value::String(pattern) = item else {
            return Err(format!("{key:?}[{index}] must be a string, not {item}"));
        };
        if pattern.is_empty() {
            return Err(format!("{key:?}[{index}] is empty"));
        }
        // A tag holds only letters, digits, `_`, `.` and `-`: a pattern with
        // anything else (say `[0-9]`) would silently match nothing.
        if let Some(bad) = pattern
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '*' | '?')))
        {
            return Err(format!(
                "{key:?}[{index}] {pattern:?}: {bad:?} can never match a tag; \
                 the only wildcards are * and ?"
            ));
        }
        patterns.push(pattern.clone());
    }
    Ok(patterns)
}

/// Whether `text` matches `pattern` as a whole: `*` matches any run of
/// characters (including none), `?` exactly one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // The last `*` seen, and where in the text its match currently ends.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            // Let the last `*` swallow one more character and retry.
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// The decision for one container.
pub fn decide(facts: &Facts) -> Decision {
    let settings = match Settings::parse(&facts.settings) {
        Ok(settings) => settings,
        Err(err) => return Decision::Fail(format!("invalid settings: {err}")),
    };
    let moved: Vec<String> = facts
        .tags
        .iter()
        .filter(|tag| !tag.is_desired && settings.is_release_tag(&tag.name))
        .filter_map(|tag| {
            let digest = tag.current.as_deref()?;
            Some(format!(
                "release tag {} is already published at {digest}; release tags never move",
                tag.name
            ))
        })
        .collect();
    if !moved.is_empty() {
        return Decision::Fail(moved.join("; "));
    }
    match facts.verdict {
        Verdict::UpToDate => Decision::Skip(facts.verdict_reason.clone()),
        Verdict::RecordOnly | Verdict::Push => Decision::Push(facts.verdict_reason.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushgate::policy::types::TagFact;

    fn tag(name: &str, current: Option<&str>, is_desired: bool) -> TagFact {
        TagFact {
            name: name.into(),
            current: current.map(Into::into),
            is_desired,
            signatures: None,
        }
    }

    fn facts(tags: Vec<TagFact>) -> Facts {
        Facts {
            container: "os".into(),
            repo: "quay.io/example/os".into(),
            tags,
            build_id: Some("42.20240101.0".into()),
            key: Some("base-oscontainer".into()),
            requested_arches: vec!["x86_64".into()],
            present_arches: vec!["x86_64".into()],
            arches: vec![],
            desired_list_digest: Some("sha256:new".into()),
            verdict: Verdict::Push,
            verdict_reason: "1 arch to upload".into(),
            force: false,
            dry_run: false,
            settings: SAMPLE_SETTINGS.into(),
            trusted_keys: vec![],
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("*.*.*", "4.16.2"));
        assert!(glob_match("4*.*.*", "42.20240101.0"));
        assert!(!glob_match("*.*.*", "stable"));
        assert!(!glob_match("*.*.*", "4.16"));
        assert!(glob_match("v?.?", "v1.2"));
        assert!(!glob_match("v?.?", "v1.22"));
        assert!(glob_match("stable", "stable"));
        assert!(!glob_match("stable", "stable-1"));
        assert!(!glob_match("stable", "stabl"));
        assert!(glob_match("*", ""));
        assert!(glob_match("**a*", "bab"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b*c", "aXbYbZ"));
        assert!(!glob_match("", "a"));
        assert!(glob_match("", ""));
    }

    #[test]
    fn a_published_release_tag_never_moves() {
        let mut f = facts(vec![
            tag("stable", Some("sha256:old"), false),
            tag("4.16.2", Some("sha256:old"), false),
        ]);
        let expected = Decision::Fail(
            "release tag 4.16.2 is already published at sha256:old; release tags never move".into(),
        );
        assert_eq!(decide(&f), expected);
        f.force = true;
        assert_eq!(decide(&f), expected);
    }

    #[test]
    fn floating_and_unmatched_tags_move() {
        let f = facts(vec![
            tag("stable", Some("sha256:old"), false),
            tag("whatever", Some("sha256:old"), false),
            tag("4.16.2", None, false),
        ]);
        assert_eq!(decide(&f), Decision::Push("1 arch to upload".into()));
    }

    #[test]
    fn a_release_tag_at_the_desired_list_follows_the_host() {
        let mut f = facts(vec![tag("4.16.2", Some("sha256:new"), true)]);
        f.verdict = Verdict::UpToDate;
        f.verdict_reason = "up to date".into();
        assert_eq!(decide(&f), Decision::Skip("up to date".into()));
        f.verdict = Verdict::RecordOnly;
        assert!(matches!(decide(&f), Decision::Push(_)));
    }

    #[test]
    fn immutable_wins_over_floating() {
        let mut f = facts(vec![tag("4.16.2", Some("sha256:old"), false)]);
        f.settings = r#"{"immutable": ["4.*"], "floating": ["*"]}"#.into();
        assert!(matches!(decide(&f), Decision::Fail(_)));
    }

    #[test]
    fn settings() {
        assert_eq!(Settings::parse("{}"), Ok(Settings::default()));
        assert_eq!(
            Settings::parse(r#"{"immutable": ["*.*.*"]}"#),
            Ok(Settings {
                immutable: vec!["*.*.*".into()],
                floating: vec![],
            })
        );
        assert!(Settings::parse(SAMPLE_SETTINGS).is_ok());
        for (bad, needle) in [
            (r#"{"immutable": ["*"], "floating": ["*"]}"#, "both"),
            (r#"{"mutable": []}"#, "\"mutable\""),
            (r#"{"immutable": "*.*.*"}"#, "list"),
            (r#"{"floating": [""]}"#, "empty"),
            (r#"{"floating": [1]}"#, "[0]"),
            (r#"{"immutable": ["[0-9]*"]}"#, "wildcards"),
            ("[]", "object"),
            ("", "JSON"),
        ] {
            let err = Settings::parse(bad).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn invalid_settings_in_facts_fail() {
        let mut f = facts(vec![]);
        f.settings = r#"{"immutable": 1}"#.into();
        assert!(matches!(decide(&f), Decision::Fail(r) if r.contains("invalid settings")));
    }
}
