//! Repository names and tags as the distribution spec and Docker spell them.

use anyhow::{Result, bail};

use crate::digest::Digest;

/// Splits `--repo` into registry and repository, as Docker names them: the first
/// component is a registry when it has a `.` or a `:` or is `localhost`; otherwise
/// the registry is docker.io (and a single name is under `library/`).
///
/// Done by hand rather than with a reference-parsing regex: compiling that regex
/// was most of the cost of a no-op run.
pub fn parse_repo(repo: &str) -> Result<(String, String)> {
    if repo.contains('@') || last_has_tag(repo) {
        bail!("--repo {repo}: give a repository without tag or digest (tags go in --tag)");
    }
    split_repo(repo, "--repo")
}

/// Whether the last path component carries `:TAG` (a `:` in an earlier
/// component is a registry's port).
fn last_has_tag(name: &str) -> bool {
    name.rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'))
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

/// A parsed image reference: `[REGISTRY/]PATH[:TAG][@DIGEST]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The repository as written (registry included when it was), for
    /// [`Repository::new`](super::Repository::new).
    pub repo: String,
    pub registry: String,
    pub repository: String,
    /// The digest when one is given (a tag beside it is ignored, as skopeo
    /// does), else the tag, `latest` by default.
    pub target: Target,
}

/// Parses an image reference as Docker and skopeo's `docker://` transport read
/// one; `what` names it in errors (e.g. `--image docker://…`).
pub fn parse_image(reference: &str, what: &str) -> Result<ImageRef> {
    let (name, digest) = match reference.split_once('@') {
        Some((name, d)) => {
            let digest: Digest = d
                .parse()
                .map_err(|e| anyhow::anyhow!("{what}: {d:?} is not a digest: {e}"))?;
            (name, Some(digest))
        }
        None => (reference, None),
    };
    let (repo, tag) = if last_has_tag(name) {
        let (repo, tag) = name.rsplit_once(':').expect("a tag follows a ':'");
        check_tag(tag).map_err(|_| anyhow::anyhow!("{what}: {tag:?} is not a valid tag"))?;
        (repo, Some(tag))
    } else {
        (name, None)
    };
    let (registry, repository) = split_repo(repo, what)?;
    let target = match (digest, tag) {
        (Some(d), _) => Target::Digest(d),
        (None, Some(t)) => Target::Tag(t.to_string()),
        (None, None) => Target::Tag("latest".to_string()),
    };
    Ok(ImageRef {
        repo: repo.to_string(),
        registry,
        repository,
        target,
    })
}

/// Splits a repository without tag or digest; `what` names it in errors.
fn split_repo(repo: &str, what: &str) -> Result<(String, String)> {
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
    Ok((registry, path))
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
        let p = |r: &str| parse_repo(r).unwrap();
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
            "r.io/a:tag",
            "r.io/a@sha256:00",
        ] {
            let e = parse_repo(bad).unwrap_err().to_string();
            assert!(e.contains("--repo"), "{bad}: {e}");
        }
    }

    #[test]
    fn image_references_read_as_skopeo_reads_docker_transport_names() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let p = |r: &str| parse_image(r, "--image").unwrap();
        let r = p("quay.io/fedora/fcos:x86_64-abc");
        assert_eq!(
            (r.repo.as_str(), r.registry.as_str(), r.repository.as_str()),
            ("quay.io/fedora/fcos", "quay.io", "fedora/fcos")
        );
        assert_eq!(r.target, Target::Tag("x86_64-abc".into()));
        let r = p(&format!("127.0.0.1:5000/fcos@{d}"));
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.target, Target::Digest(d.parse().unwrap()));
        // a digest wins over a tag written beside it
        let r = p(&format!("localhost:5000/a/b:t@{d}"));
        assert_eq!(
            (r.repo.as_str(), r.target.as_str()),
            ("localhost:5000/a/b", d.as_str())
        );
        assert_eq!(p("localhost:5000/a").target, Target::Tag("latest".into()));
        assert_eq!(p("busybox").repository, "library/busybox");
        assert_eq!(p("busybox:1").target, Target::Tag("1".into()));
        for bad in [
            "r.io/A:t",
            "r.io/a@sha256:00",
            "r.io/a:-t",
            "r.io/a@md5:00",
            "",
        ] {
            let e = parse_image(bad, "--image docker://x")
                .unwrap_err()
                .to_string();
            assert!(e.contains("--image docker://x"), "{bad}: {e}");
        }
    }
}
