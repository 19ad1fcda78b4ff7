//! One repository on one registry, with the executor that reaches it: what
//! the operations ([`super::manifests`], [`super::blobs`]) are methods of.

use std::sync::Arc;

use anyhow::Result;
use reqwest::Method;

use super::error::RegistryError;
use super::executor::{Executor, connect};
use super::explain::explain;
use super::options::Options;
use super::reference::RepoName;
use super::request::{Op, Request, Target};

/// One repository on one registry.
pub struct Repository {
    pub(super) exec: Arc<Executor>,
    pub(super) registry: String,
    pub(super) repository: String,
    /// `--repo` as given, for messages.
    pub(super) name: String,
    pub(super) repo: RepoName,
}

impl Repository {
    /// Finds credentials and an executor for `repo`'s registry.
    pub fn new(repo: &RepoName, opts: &Options) -> Result<Repository> {
        let exec = connect(repo.registry(), repo.path(), opts)?;
        Ok(Repository {
            exec,
            registry: repo.registry().to_string(),
            repository: repo.path().to_string(),
            name: repo.to_string(),
            repo: repo.clone(),
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

    /// The repository, parsed.
    pub fn repo(&self) -> &RepoName {
        &self.repo
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
