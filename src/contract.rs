//! The policy contract as plain data: the host-side mirror of the records and
//! variants of `wit/policy.wit` that cross the boundary.
//!
//! It mirrors the newest contract version; a module built against an older one
//! is given the part of these facts its version knows (`policy::convert`).
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

/// One kind of valid in-toto attestation on an image (contract 0.2.0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AttestationFact {
    pub predicate_type: String,
    pub keys: Vec<String>,
}

/// What the host verified of one manifest's signatures (contract 0.2.0).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SignatureFacts {
    pub valid_keys: Vec<String>,
    pub invalid: Vec<String>,
    pub attestations: Vec<AttestationFact>,
}

/// Where an arch's image is read from (contract 0.2.0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Origin {
    /// A file: no registry home, no signatures.
    Local(String),
    /// An image in a registry, `REGISTRY/REPO@sha256:…`.
    Registry(String),
}

/// One arch's source (contract 0.2.0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SourceFact {
    pub origin: Origin,
    pub digest: Option<String>,
    pub signatures: Option<SignatureFacts>,
}

impl Default for SourceFact {
    /// What a case written before contract 0.2.0 stands for: a local source,
    /// unnamed, with no signatures looked for.
    fn default() -> SourceFact {
        SourceFact {
            origin: Origin::Local(String::new()),
            digest: None,
            signatures: None,
        }
    }
}

// The fields contract 0.2.0 added take their defaults when missing, so that
// case files written for 0.1.0 still read.

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TagFact {
    pub name: String,
    pub current: Option<String>,
    pub is_desired: bool,
    #[serde(default)]
    pub signatures: Option<SignatureFacts>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ArchFact {
    pub arch: String,
    pub has_key: bool,
    pub recorded_digest: Option<String>,
    pub desired_digest: Option<String>,
    pub registry_digest: Option<String>,
    #[serde(default)]
    pub source: SourceFact,
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
    #[serde(default)]
    pub trusted_keys: Vec<String>,
}
