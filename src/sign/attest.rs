//! The attestation of a decision: why pushgate published (or refused) a list,
//! as a signed in-toto statement stored as an OCI 1.1 referrer of that list.
//!
//! The statement (in-toto Statement v1) names the list by digest as its
//! subject; its predicate, of type [`DECISION_PREDICATE_TYPE`], is the
//! [`DecisionPredicate`]. It travels in a DSSE envelope ([`super::dsse`]) whose
//! blob is the single layer of an image manifest with:
//!
//! * `artifactType` `application/vnd.in-toto+json`, as cosign writes DSSE
//!   attestations as referrers (`WriteAttestationsReferrer`): the artifact is
//!   the statement, the envelope its wrapping;
//! * the layer `application/vnd.dsse.envelope.v1+json`, annotated
//!   `predicateType` (as on cosign's `.att` layers);
//! * the config OCI 1.1's empty descriptor (`{}`);
//! * `subject` the list's descriptor;
//! * annotations `in-toto.io/predicate-type` (BuildKit's key for it) and
//!   `org.opencontainers.image.created` (the decision's time), which a
//!   referrers index repeats, so a client can find pushgate's decisions among
//!   other referrers without fetching any.
//!
//! docker-registry 2.8 stores such a manifest (by digest) but has no referrers
//! API (404): there the referrers tag schema ([`super::referrers`]) applies.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::dsse::{ENVELOPE_MEDIA_TYPE, Envelope, IN_TOTO_PAYLOAD_TYPE};
use super::key::{PublicKey, SigningKey};
use super::oci::{ArtifactManifest, Descriptor};
use crate::contract::{Facts, SignatureFacts, SourceFact, Verdict};
use crate::decision_log::{Entry, LoggedPolicy};
use crate::digest::Digest;
use crate::manifest::{self, OCI_MANIFEST};

/// in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate type of a pushgate decision (a name, not a fetched document).
pub const DECISION_PREDICATE_TYPE: &str = "https://pushgate.dev/decision/v1";
/// The referrer manifest's annotation naming the predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "in-toto.io/predicate-type";
/// cosign's layer annotation naming the predicate type.
pub const LAYER_PREDICATE_TYPE_ANNOTATION: &str = "predicateType";
/// When the attested decision was taken.
pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";

/// An in-toto statement; `P` is the predicate's type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement<P = Value> {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: P,
}

/// What a statement is about: a name and its digests by algorithm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

impl Subject {
    /// `name` (the repository, e.g. `quay.io/fedora/fedora-coreos`) at `digest`.
    pub fn new(name: &str, digest: &Digest) -> Subject {
        Subject {
            name: name.to_string(),
            digest: [("sha256".to_string(), digest.hex().to_string())].into(),
        }
    }
}

/// The predicate `https://pushgate.dev/decision/v1`: one container's decision,
/// field for field the decision log's line (`--decision-log`), so the two can
/// be matched by `decision_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionPredicate {
    /// The cosa container name (e.g. `oscontainer`).
    pub container: String,
    /// The repository published to.
    pub repo: String,
    /// The tags the decision was about.
    pub tags: Vec<String>,
    /// The cosa build id.
    pub build_id: Option<String>,
    /// The host's verdict (`up-to-date`, `record-only`, `push`) and why.
    pub host_verdict: Option<Verdict>,
    pub host_reason: Option<String>,
    /// `skip`, `push` or `fail`, and the reason given.
    pub decision: String,
    pub reason: String,
    /// `host`, or `policy NAME VERSION`.
    pub decided_by: String,
    /// The policy module that decided, if one did.
    pub policy: Option<PolicyRef>,
    /// sha256 of the facts the policy was given (compact JSON, as the log has it).
    pub facts_sha256: Option<Digest>,
    /// The decision log line's id.
    pub decision_id: String,
    /// UTC, RFC 3339.
    pub time: String,
    /// The pushgate that decided.
    pub pushgate_version: String,
    /// The policy contract (WIT package) of that pushgate.
    pub contract: String,
    /// What the host verified of signatures before the decision (with
    /// `--trust-key`): absent when it trusted no key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signatures: Option<SignaturesSeen>,
}

/// The signature facts a decision saw, as the policy was told them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignaturesSeen {
    /// The names of the keys the host verified with.
    pub trusted_keys: Vec<String>,
    /// Each arch's source and what was verified on it.
    pub sources: Vec<SourceSeen>,
    /// Each tag, the list it served and what was verified on that list.
    pub tags: Vec<TagSeen>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceSeen {
    pub arch: String,
    #[serde(flatten)]
    pub source: SourceFact,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagSeen {
    pub tag: String,
    pub current: Option<String>,
    pub signatures: Option<SignatureFacts>,
}

impl SignaturesSeen {
    /// The signature facts of `facts`; none when no key was trusted.
    pub fn of(facts: &Facts) -> Option<SignaturesSeen> {
        if facts.trusted_keys.is_empty() {
            return None;
        }
        Some(SignaturesSeen {
            trusted_keys: facts.trusted_keys.clone(),
            sources: facts
                .arches
                .iter()
                .map(|a| SourceSeen {
                    arch: a.arch.clone(),
                    source: a.source.clone(),
                })
                .collect(),
            tags: facts
                .tags
                .iter()
                .map(|t| TagSeen {
                    tag: t.name.clone(),
                    current: t.current.clone(),
                    signatures: t.signatures.clone(),
                })
                .collect(),
        })
    }
}

/// A policy module, as the decision names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRef {
    pub name: Option<String>,
    pub version: Option<String>,
    /// sha256 of the module's bytes.
    pub module_sha256: Option<Digest>,
    /// The module's file, or `oci://REGISTRY/REPO:TAG@sha256:…`.
    pub reference: String,
    /// The trusted keys whose signature on the module's artifact the host
    /// verified before it decided (`--require-signed-policies`); absent when
    /// none was required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<Vec<String>>,
}

impl DecisionPredicate {
    /// The predicate of a decision log line. A line without a decision (the
    /// run stopped before one) has nothing to attest.
    pub fn from_log_entry(e: &Entry) -> Result<DecisionPredicate> {
        let (Some(decision), Some(reason), Some(decided_by)) =
            (&e.decision, &e.reason, &e.decided_by)
        else {
            bail!(
                "decision {}: the run stopped before a decision, so there is none to attest",
                e.decision_id
            );
        };
        let policy = match &e.policy {
            LoggedPolicy::Host(_) => None,
            LoggedPolicy::Policy {
                name,
                version,
                sha256,
                source,
                signed_by,
            } => Some(PolicyRef {
                name: name.clone(),
                version: version.clone(),
                module_sha256: sha256.clone(),
                reference: source.clone(),
                signed_by: signed_by.clone(),
            }),
        };
        Ok(DecisionPredicate {
            container: e.container.clone(),
            repo: e.repo.clone(),
            tags: e.tags.clone(),
            build_id: e.build_id.clone(),
            host_verdict: e.verdict,
            host_reason: e.verdict_reason.clone(),
            decision: decision.clone(),
            reason: reason.clone(),
            decided_by: decided_by.clone(),
            policy,
            facts_sha256: e.facts_sha256.clone(),
            decision_id: e.decision_id.clone(),
            time: e.time.clone(),
            pushgate_version: env!("CARGO_PKG_VERSION").to_string(),
            contract: crate::policy::CONTRACT.to_string(),
            signatures: None,
        })
    }
}

/// A signed attestation, ready to store: the envelope blob and the referrer
/// manifest that holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Attestation {
    /// The DSSE envelope: the manifest's one layer.
    pub envelope: Vec<u8>,
    pub manifest: ArtifactManifest,
}

impl Attestation {
    /// The manifest's bytes, as pushed (by digest: a referrer needs no tag).
    pub fn manifest_bytes(&self) -> Vec<u8> {
        self.manifest.to_bytes()
    }

    pub fn digest(&self) -> Digest {
        Digest::of(&self.manifest_bytes())
    }
}

/// Signs `predicate` about the list `subject` (in repository `name`) and wraps
/// it as a referrer of the list.
pub fn attest_decision(
    key: &SigningKey,
    name: &str,
    subject: &manifest::Descriptor,
    predicate: &DecisionPredicate,
) -> Attestation {
    let statement = Statement {
        statement_type: STATEMENT_TYPE.to_string(),
        subject: vec![Subject::new(name, &subject.digest)],
        predicate_type: DECISION_PREDICATE_TYPE.to_string(),
        predicate,
    };
    let payload = serde_json::to_vec(&statement).expect("a statement always serializes");
    let envelope = Envelope::sign(key, IN_TOTO_PAYLOAD_TYPE, &payload);
    referrer(subject, &envelope, DECISION_PREDICATE_TYPE, &predicate.time)
}

/// The referrer manifest holding `envelope` (an in-toto statement of
/// `predicate_type`) about `subject`, `created` at that time.
pub fn referrer(
    subject: &manifest::Descriptor,
    envelope: &Envelope,
    predicate_type: &str,
    created: &str,
) -> Attestation {
    let blob = envelope.to_bytes();
    let layer = Descriptor::of(ENVELOPE_MEDIA_TYPE, &blob).with_annotations(
        [(
            LAYER_PREDICATE_TYPE_ANNOTATION.to_string(),
            predicate_type.to_string(),
        )]
        .into(),
    );
    let manifest = ArtifactManifest {
        schema_version: 2,
        media_type: OCI_MANIFEST.to_string(),
        artifact_type: Some(IN_TOTO_PAYLOAD_TYPE.to_string()),
        config: Descriptor::empty(),
        layers: vec![layer],
        subject: Some(subject.subject()),
        annotations: [
            (
                PREDICATE_TYPE_ANNOTATION.to_string(),
                predicate_type.to_string(),
            ),
            (CREATED_ANNOTATION.to_string(), created.to_string()),
        ]
        .into(),
    };
    Attestation {
        envelope: blob,
        manifest,
    }
}

/// Verifies a stored attestation: `manifest` (its bytes) must be a referrer
/// of the manifest `subject`, its one envelope layer must be `envelope` (the
/// blob, as fetched) and signed by `key`, and the statement inside must name
/// `subject` by digest. Returns the statement. `label` names it in errors.
pub fn verify(
    manifest: &[u8],
    envelope: &[u8],
    key: &PublicKey,
    subject: &Digest,
    label: &str,
) -> Result<Statement> {
    let m = ArtifactManifest::parse(manifest, label)?;
    if m.subject.as_ref().map(|s| &s.digest) != Some(subject) {
        bail!("{label}: not a referrer of {subject}");
    }
    let [layer] = &m.layers[..] else {
        bail!("{label}: {} layers, not one envelope", m.layers.len());
    };
    if layer.media_type != ENVELOPE_MEDIA_TYPE {
        bail!(
            "{label}: its layer is a {}, not a DSSE envelope",
            layer.media_type
        );
    }
    if Digest::of(envelope) != layer.digest {
        bail!(
            "{label}: the envelope blob given is not the layer {}",
            layer.digest
        );
    }
    verify_envelope(envelope, key, subject, label)
}

/// Verifies an attestation's DSSE envelope (the blob), wherever it is stored
/// (a referrer's layer, a layer of cosign's `.att` manifest): signed by `key`,
/// holding an in-toto statement that names `subject` by digest. Returns the
/// statement. `label` names it in errors.
pub fn verify_envelope(
    envelope: &[u8],
    key: &PublicKey,
    subject: &Digest,
    label: &str,
) -> Result<Statement> {
    let env = Envelope::parse(envelope, label)?;
    let payload = env.verify(key, label)?;
    if env.payload_type != IN_TOTO_PAYLOAD_TYPE {
        bail!(
            "{label}: the envelope holds a {}, not an in-toto statement",
            env.payload_type
        );
    }
    let statement: Statement = serde_json::from_slice(&payload)
        .with_context(|| format!("{label}: the signed payload is not an in-toto statement"))?;
    if statement.statement_type != STATEMENT_TYPE {
        bail!(
            "{label}: a statement of type {}, not {STATEMENT_TYPE}",
            statement.statement_type
        );
    }
    let names_subject = statement
        .subject
        .iter()
        .any(|s| s.digest.get("sha256").map(String::as_str) == Some(subject.hex()));
    if !names_subject {
        bail!("{label}: the signed statement is not about {subject}");
    }
    Ok(statement)
}

impl Statement {
    /// The predicate as a pushgate decision, if it is one.
    pub fn decision(&self) -> Result<DecisionPredicate> {
        if self.predicate_type != DECISION_PREDICATE_TYPE {
            bail!(
                "a {} statement, not a pushgate decision",
                self.predicate_type
            );
        }
        serde_json::from_value(self.predicate.clone())
            .context("malformed pushgate decision predicate")
    }
}

#[cfg(test)]
#[path = "attest_tests.rs"]
mod tests;
