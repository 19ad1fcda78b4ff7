//! One repository on one registry, with the executor that reaches it: what
//! the operations ([`super::manifests`], [`super::blobs`]) are methods of.

use std::sync::Arc;

use anyhow::Result;
use reqwest::Method;

use super::error::RegistryError;
use super::executor::{Executor, connect};
use super::explain::explain;
use super::options::Options;
use super::reference::parse_repo;
use super::request::{Op, Request, Target};

/// One repository on one registry.
pub struct Repository {
    pub(super) exec: Arc<Executor>,
    pub(super) registry: String,
    pub(super) repository: String,
    /// `--repo` as given, for messages.
    pub(super) name: String,
}

impl Repository {
    /// Parses `--repo` and finds credentials and an executor for its registry.
    pub fn new(repo: &str, opts: &Options) -> Result<Repository> {
        let (registry, repository) = parse_repo(repo)?;
        let exec = connect(&registry, &repository, opts)?;
        Ok(Repository {
            exec,
            registry,
            repository,
            name: repo.to_string(),
        })
    }

    /// The executor (for its counters).
    pub fn executor(&self) -> &Executor {
        &self.exec
    }

    /// The repository as it was named (`--repo`, or a source reference's).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `other` is on the same registry as this repository (so a blob of
    /// it may be mounted rather than copied).
    pub fn same_registry(&self, other: &Repository) -> bool {
        self.registry == other.registry && self.repository != other.repository
    }

    /// A request of `op` for `path` under this repository.
    pub(super) fn request<'a>(&self, op: Op, method: Method, path: String) -> Request<'a> {
        Request::new(op, method, &self.repository, Target::Repo(path))
    }

    /// A failure of `op` here, explained for a person.
    pub(super) fn explain(&self, e: RegistryError, op: &Op) -> anyhow::Error {
        explain(e, &self.registry, &self.name, &self.exec.who(), op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_must_not_carry_a_tag_or_digest() {
        let opts = Options::default();
        assert!(Repository::new("quay.io/fedora/fedora-coreos:stable", &opts).is_err());
        assert!(Repository::new("localhost:5000/a@sha256:00", &opts).is_err());
        assert!(
            Repository::new("NOT VALID", &opts)
                .err()
                .expect("an invalid --repo is refused")
                .to_string()
                .contains("--repo")
        );
    }
}
