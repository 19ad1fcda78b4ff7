//! Repository names, references and tags as the distribution spec and Docker
//! spell them: the one parser of `--repo`, `--image docker://…` and policy
//! references (`oci://…`, in [`crate::policy::remote`]).

use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};

use crate::digest::Digest;

/// A repository, `[REGISTRY/]PATH`, as Docker names it: the first component
/// is a registry when it has a `.` or a `:` or is `localhost`; otherwise the
/// registry is docker.io (and a single name is under `library/`).
///
/// It keeps the name as written, which is how messages, reports and meta.json
/// name it (`busybox` stays `busybox`); [`registry`](RepoName::registry) and
/// [`path`](RepoName::path) are what the protocol uses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoName {
    written: String,
    registry: String,
    path: String,
}

impl RepoName {
    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.written
    }

    /// The registry's host (and port): `docker.io` when none was written.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository's path in its registry (`library/busybox`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Checks a repository without tag or digest; `what` names it in errors.
    fn checked(repo: &str, what: &str) -> Result<RepoName> {
        let invalid = |why: &str| anyhow::anyhow!("{what} {repo}: not a valid repository: {why}");
        let (registry, path) = match repo.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_string(), rest.to_string())
            }
            Some(_) => ("docker.io".to_string(), repo.to_string()),
            None => ("docker.io".to_string(), format!("library/{repo}")),
        };
        let host_ok = !registry.is_empty()
            && registry
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
        if !host_ok {
            return Err(invalid("bad registry host"));
        }
        if path.is_empty() || path.len() > 255 {
            return Err(invalid("the repository path is empty or too long"));
        }
        for component in path.split('/') {
            if !path_component_ok(component) {
                return Err(invalid(&format!(
                    "{component:?} is not a path component (lowercase letters and digits, \
                     joined by '.', '_', '__' or dashes)"
                )));
            }
        }
        Ok(RepoName {
            written: repo.to_string(),
            registry,
            path,
        })
    }
}

/// Parses `--repo`: a repository without tag or digest (tags go in `--tag`).
///
/// Done by hand rather than with a reference-parsing regex: compiling that regex
/// was most of the cost of a no-op run.
impl FromStr for RepoName {
    type Err = anyhow::Error;

    fn from_str(repo: &str) -> Result<RepoName> {
        let parts = Parts::split(repo);
        if parts.tag.is_some() || parts.digest.is_some() {
            bail!("--repo {repo}: give a repository without tag or digest (tags go in --tag)");
        }
        RepoName::checked(repo, "--repo")
    }
}

/// As written.
impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

/// The pieces of `[REGISTRY/]PATH[:TAG][@DIGEST]`, split by position only: the
/// digest follows the first `@`, the tag the last `:` of the last path
/// component (a `:` in an earlier component is a registry's port).
struct Parts<'a> {
    repo: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

impl Parts<'_> {
    fn split(s: &str) -> Parts<'_> {
        let (name, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (s, None),
        };
        let last = name.rsplit('/').next().unwrap_or(name);
        let (repo, tag) = match last.rfind(':') {
            Some(i) => {
                let at = name.len() - last.len() + i;
                (&name[..at], Some(&name[at + 1..]))
            }
            None => (name, None),
        };
        Parts { repo, tag, digest }
    }
}

/// What an image reference points at in its repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Tag(String),
    Digest(Digest),
}

impl Target {
    /// As the manifest URL names it.
    pub fn as_str(&self) -> &str {
        match self {
            Target::Tag(t) => t,
            Target::Digest(d) => d.as_str(),
        }
    }
}

/// An image reference, `[REGISTRY/]PATH[:TAG][@DIGEST]`: a repository, and
/// the tag or digest written after it, if any. Displayed, it is the reference
/// as written, so it reads back the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub repo: RepoName,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses a reference as Docker and skopeo's `docker://` transport read one;
    /// `what` names it in errors (e.g. `--image docker://…`).
    pub fn parse(reference: &str, what: &str) -> Result<Reference> {
        let parts = Parts::split(reference);
        let digest = match parts.digest {
            Some(d) => Some(
                d.parse::<Digest>()
                    .map_err(|e| anyhow::anyhow!("{what}: {d:?} is not a digest: {e}"))?,
            ),
            None => None,
        };
        if let Some(tag) = parts.tag {
            check_tag(tag).map_err(|_| anyhow::anyhow!("{what}: {tag:?} is not a valid tag"))?;
        }
        Ok(Reference {
            repo: RepoName::checked(parts.repo, what)?,
            tag: parts.tag.map(str::to_string),
            digest,
        })
    }

    /// Parses a policy reference's name (after `oci://`), keeping the error
    /// texts policy references have always had: `bad` wraps each reason. The
    /// registry must be written.
    pub(crate) fn parse_named(
        reference: &str,
        bad: impl Fn(&str) -> anyhow::Error,
    ) -> Result<Reference> {
        let parts = Parts::split(reference);
        let digest = match parts.digest {
            Some(d) => Some(d.parse::<Digest>().map_err(|e| bad(&e.to_string()))?),
            None => None,
        };
        if !parts.repo.contains('/') {
            return Err(bad(
                "name the registry and the repository: oci://REGISTRY/REPO",
            ));
        }
        let repo = RepoName::checked(parts.repo, "--repo").map_err(|e| bad(&format!("{e:#}")))?;
        if let Some(t) = parts.tag {
            check_tag(t).map_err(|e| bad(&format!("{e:#}")))?;
        }
        Ok(Reference {
            repo,
            tag: parts.tag.map(str::to_string),
            digest,
        })
    }

    /// What it points at: the digest when one is given (a tag beside it is
    /// ignored, as skopeo does), else the tag, `latest` by default.
    pub fn target(&self) -> Target {
        match (&self.digest, &self.tag) {
            (Some(d), _) => Target::Digest(d.clone()),
            (None, Some(t)) => Target::Tag(t.clone()),
            (None, None) => Target::Tag("latest".to_string()),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repo)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, the distribution spec's path component.
fn path_component_ok(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    let mut i = 0;
    loop {
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        let sep = i;
        match bytes[i] {
            b'.' => i += 1,
            b'_' => {
                i += if bytes.get(i + 1) == Some(&b'_') {
                    2
                } else {
                    1
                }
            }
            b'-' => {
                while i < bytes.len() && bytes[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == sep {
            return false;
        }
    }
}

/// Validates a tag against the distribution spec's grammar.
pub fn check_tag(tag: &str) -> Result<()> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok {
        bail!(
            "--tag {tag:?}: not a valid tag (letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_the_distribution_grammar() {
        for ok in [
            "stable",
            "41.20261127.1.0",
            "x86_64-abc",
            "_x",
            "A".repeat(128).as_str(),
        ] {
            check_tag(ok).unwrap();
        }
        for bad in [
            "",
            ".x",
            "-x",
            "a/b",
            "a:b",
            "a b",
            "A".repeat(129).as_str(),
        ] {
            let e = check_tag(bad).unwrap_err().to_string();
            assert!(e.contains("--tag"), "{e}");
        }
    }

    #[test]
    fn repos_split_into_registry_and_path_as_docker_does() {
        let p = |r: &str| {
            let n: RepoName = r.parse().unwrap();
            assert_eq!(n.to_string(), r, "displayed as written");
            (n.registry().to_string(), n.path().to_string())
        };
        assert_eq!(
            p("quay.io/fedora/fedora-coreos"),
            ("quay.io".into(), "fedora/fedora-coreos".into())
        );
        assert_eq!(
            p("127.0.0.1:5000/fcos"),
            ("127.0.0.1:5000".into(), "fcos".into())
        );
        assert_eq!(p("localhost/a/b/c"), ("localhost".into(), "a/b/c".into()));
        assert_eq!(
            p("fedora/fedora"),
            ("docker.io".into(), "fedora/fedora".into())
        );
        assert_eq!(p("busybox"), ("docker.io".into(), "library/busybox".into()));
        assert_eq!(
            p("r.io/a__b/c-d/e---f/g.h_i"),
            ("r.io".into(), "a__b/c-d/e---f/g.h_i".into())
        );
        for bad in [
            "r.io/UPPER",
            "r.io/a//b",
            "r.io/-a",
            "r.io/a-",
            "r.io/a___b",
            "r.io/a..b",
            "r.io/",
            "r.io/a b",
            "bad host!/a",
        ] {
            let e = bad.parse::<RepoName>().unwrap_err().to_string();
            assert_eq!(
                e.split(": not a valid repository: ").next(),
                Some(format!("--repo {bad}").as_str()),
                "{e}"
            );
        }
        for with_tag_or_digest in ["r.io/a:tag", "r.io/a@sha256:00", "localhost:5000/a:"] {
            let e = with_tag_or_digest
                .parse::<RepoName>()
                .unwrap_err()
                .to_string();
            assert_eq!(
                e,
                format!(
                    "--repo {with_tag_or_digest}: give a repository without tag or digest \
                     (tags go in --tag)"
                )
            );
        }
    }

    #[test]
    fn image_references_read_as_skopeo_reads_docker_transport_names() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let p = |r: &str| {
            let parsed = Reference::parse(r, "--image").unwrap();
            assert_eq!(parsed.to_string(), r, "displayed as written");
            parsed
        };
        let r = p("quay.io/fedora/fcos:x86_64-abc");
        assert_eq!(
            (r.repo.as_str(), r.repo.registry(), r.repo.path()),
            ("quay.io/fedora/fcos", "quay.io", "fedora/fcos")
        );
        assert_eq!(r.target(), Target::Tag("x86_64-abc".into()));
        let r = p(&format!("127.0.0.1:5000/fcos@{d}"));
        assert_eq!(r.repo.registry(), "127.0.0.1:5000");
        assert_eq!(r.target(), Target::Digest(d.parse().unwrap()));
        // a digest wins over a tag written beside it
        let r = p(&format!("localhost:5000/a/b:t@{d}"));
        assert_eq!(
            (r.repo.as_str(), r.tag.as_deref(), r.target().as_str()),
            ("localhost:5000/a/b", Some("t"), d.as_str())
        );
        let r = p("localhost:5000/a");
        assert_eq!(
            (r.tag.as_deref(), r.target()),
            (None, Target::Tag("latest".into()))
        );
        assert_eq!(p("busybox").repo.path(), "library/busybox");
        assert_eq!(p("busybox:1").target(), Target::Tag("1".into()));
        for (bad, says) in [
            (
                "r.io/A:t",
                "--image docker://x r.io/A: not a valid repository",
            ),
            (
                "r.io/a@sha256:00",
                "--image docker://x: \"sha256:00\" is not a digest",
            ),
            ("r.io/a:-t", "--image docker://x: \"-t\" is not a valid tag"),
            (
                "r.io/a@md5:00",
                "--image docker://x: \"md5:00\" is not a digest",
            ),
            ("", "--image docker://x : not a valid repository"),
        ] {
            let e = Reference::parse(bad, "--image docker://x")
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(says), "{bad}: {e}");
        }
    }

    #[test]
    fn named_references_need_their_registry_and_say_why_not() {
        let bad = |why: &str| anyhow::anyhow!("ref: {why}");
        let r = Reference::parse_named("127.0.0.1:5000/p/kv:1.0", bad).unwrap();
        assert_eq!(
            (r.repo.registry(), r.repo.path(), r.tag.as_deref()),
            ("127.0.0.1:5000", "p/kv", Some("1.0"))
        );
        for (input, says) in [
            ("kv:1", "ref: name the registry and the repository"),
            ("r.io/KV:1", "ref: --repo r.io/KV: not a valid repository"),
            ("r.io/kv:-x", "ref: --tag \"-x\": not a valid tag"),
            ("r.io/kv@sha256:00", "ref: invalid digest"),
        ] {
            let e = Reference::parse_named(input, bad).unwrap_err().to_string();
            assert!(e.starts_with(says), "{input}: {e}");
        }
    }
}
