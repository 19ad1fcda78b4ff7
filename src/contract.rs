//! The policy contract as plain data: the host-side mirror of the records and
//! variants of `wit/policy.wit` that cross the boundary.
//!
//! [`Facts`] is what a policy is told about one container, [`Verdict`] is the
//! host's own judgement inside it, and [`Decision`] is the policy's answer. These
//! are what case files hold, so they (de)serialize in the WIT's kebab-case; the
//! policy host converts them to and from the generated bindings at the boundary
//! (`policy::convert`), and nothing else in the host sees those bindings.

use serde::{Deserialize, Serialize};

/// The host's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Registry and meta.json already hold the desired state.
    UpToDate,
    /// The registry holds it; meta.json must be written.
    RecordOnly,
    /// Something must be uploaded (then recorded).
    Push,
}

/// What to do with one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "reason", rename_all = "kebab-case")]
pub enum Decision {
    /// Leave registry and meta.json untouched.
    Skip(String),
    /// Carry out the host plan.
    Push(String),
    /// Refuse the container: nothing is written, the run fails.
    Fail(String),
}

impl Decision {
    /// `skip`, `push` or `fail`.
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::Skip(_) => "skip",
            Decision::Push(_) => "push",
            Decision::Fail(_) => "fail",
        }
    }

    /// Why, in the decider's words.
    pub fn reason(&self) -> &str {
        match self {
            Decision::Skip(r) | Decision::Push(r) | Decision::Fail(r) => r,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TagFact {
    pub name: String,
    pub current: Option<String>,
    pub is_desired: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ArchFact {
    pub arch: String,
    pub has_key: bool,
    pub recorded_digest: Option<String>,
    pub desired_digest: Option<String>,
    pub registry_digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Facts {
    pub container: String,
    pub repo: String,
    pub tags: Vec<TagFact>,
    pub build_id: Option<String>,
    pub key: Option<String>,
    pub requested_arches: Vec<String>,
    pub present_arches: Vec<String>,
    pub arches: Vec<ArchFact>,
    pub desired_list_digest: Option<String>,
    pub verdict: Verdict,
    pub verdict_reason: String,
    pub force: bool,
    pub dry_run: bool,
    /// A JSON document; `{}` when the container has no settings. Case files hold
    /// settings beside the facts, as a JSON value, so it is not (de)serialized here.
    #[serde(skip)]
    pub settings: String,
}
