//! `pushgate verify`: checks, from the registry alone, what a signed run left
//! beside what it published. For each tag: the list it serves and every
//! per-arch manifest of that list carry a valid signature by the given key for
//! `REPO:TAG` (cosign's `.sig` layout), and the list has a valid attestation of
//! a decision, signed by the same key; who decided, with which policy module
//! and when, is reported. Nothing is written.

use std::collections::HashMap;

use anyhow::Result;
use serde::Serialize;

use crate::digest::Digest;
use crate::evidence::observe::referrer_attestations;
use crate::evidence::sigcopy::SigCopy;
use crate::manifest::{self, Remote};
use crate::registry::{self, RepoName, Repository};
use crate::sign::PublicKey;
use crate::sign::attest::{self, DECISION_PREDICATE_TYPE, DecisionPredicate};
use crate::sign::cosign::{SigManifest, sig_tag};

/// What to verify.
pub struct Asked {
    pub repo: RepoName,
    pub tags: Vec<String>,
    pub key: PublicKey,
    /// Fail unless the decision was made by the module of this sha256 (hex).
    pub require_policy_sha256: Option<String>,
    pub registry: registry::Options,
}

/// What was found, for each tag.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    /// Every check held (printed as the JSON object's `ok`).
    #[serde(skip)]
    pub ok: bool,
    pub repo: String,
    /// The public key file.
    pub key: String,
    pub tags: Vec<TagCheck>,
    /// Every failure, each naming what is missing or invalid.
    pub problems: Vec<String>,
}

/// One tag.
#[derive(Debug, Clone, Serialize)]
pub struct TagCheck {
    pub tag: String,
    pub manifest_list_digest: Option<Digest>,
    /// The list, then each per-arch manifest.
    pub signatures: Vec<SignatureCheck>,
    pub attestation: Option<AttestationCheck>,
}

/// The signature of one manifest for one tag.
#[derive(Debug, Clone, Serialize)]
pub struct SignatureCheck {
    pub digest: Digest,
    /// `list`, or the arch the manifest is for.
    pub of: String,
    pub valid: bool,
}

/// The newest valid attestation of the list's decision.
#[derive(Debug, Clone, Serialize)]
pub struct AttestationCheck {
    pub digest: Digest,
    pub decision: String,
    pub reason: String,
    pub decided_by: String,
    pub policy_module_sha256: Option<Digest>,
    pub policy: Option<String>,
    pub time: String,
    pub build_id: Option<String>,
}

/// Verifies what `asked` names.
pub async fn verify(asked: &Asked) -> Result<Verified> {
    let repo = Repository::new(&asked.repo, &asked.registry)?;
    let mut out = Verified {
        ok: true,
        repo: asked.repo.to_string(),
        key: asked.key.source().to_string(),
        tags: Vec::new(),
        problems: Vec::new(),
    };
    // Tags often serve one list: its attestation is looked for once.
    let mut attested: HashMap<Digest, Option<AttestationCheck>> = HashMap::new();
    for tag in &asked.tags {
        let mut check = TagCheck {
            tag: tag.clone(),
            manifest_list_digest: None,
            signatures: Vec::new(),
            attestation: None,
        };
        let Some((list, bytes)) = repo.get_tag(tag).await? else {
            out.problems
                .push(format!("{}:{tag} does not exist", asked.repo));
            out.tags.push(check);
            continue;
        };
        check.manifest_list_digest = Some(list.clone());
        let mut targets = vec![(list.clone(), "list".to_string())];
        match manifest::parse_remote(&bytes, None) {
            Remote::List { entries, .. } => targets.extend(entries.into_iter().map(|e| {
                let of = e
                    .platform
                    .map_or_else(|| "image".to_string(), |p| p.architecture);
                (e.digest, of)
            })),
            Remote::Image => out.problems.push(format!(
                "{}:{tag} serves {list}, a single image, not a manifest list",
                asked.repo
            )),
        }
        let reference = format!("{}:{tag}", asked.repo);
        for (digest, of) in targets {
            let valid = signed(&repo, &asked.key, &reference, &digest).await?;
            if let Err(why) = &valid {
                out.problems.push(format!(
                    "{reference}: the {of} manifest {digest} has no valid signature by {}: {why}",
                    asked.key.source()
                ));
            }
            check.signatures.push(SignatureCheck {
                digest,
                of,
                valid: valid.is_ok(),
            });
        }
        if !attested.contains_key(&list) {
            let found = attestation(&repo, &asked.key, &list).await?;
            attested.insert(list.clone(), found);
        }
        check.attestation = attested[&list].clone();
        match &check.attestation {
            None => out.problems.push(format!(
                "{reference}: no valid decision attestation by {} for the list {list}",
                asked.key.source()
            )),
            Some(a) => {
                if let Some(want) = &asked.require_policy_sha256 {
                    let by = a.policy_module_sha256.as_ref().map(Digest::hex);
                    if by != Some(want.trim_start_matches("sha256:")) {
                        out.problems.push(format!(
                            "{reference}: the decision was made by {}, not by the module \
                             sha256:{}",
                            by.map_or("the host (no policy module)".to_string(), |h| {
                                format!("the module sha256:{h}")
                            }),
                            want.trim_start_matches("sha256:")
                        ));
                    }
                }
            }
        }
        out.tags.push(check);
    }
    out.ok = out.problems.is_empty();
    Ok(out)
}

/// Whether `digest` carries a valid signature by `key` for `reference`; why
/// not, if not.
async fn signed(
    repo: &Repository,
    key: &PublicKey,
    reference: &str,
    digest: &Digest,
) -> Result<std::result::Result<(), String>> {
    let Some(copy) = SigCopy::read(repo, digest).await? else {
        return Ok(Err(format!("the tag {} does not exist", sig_tag(digest))));
    };
    let label = format!("{}:{}", repo.name(), sig_tag(digest));
    let sigs = SigManifest::parse(&copy.manifest, &label)?;
    let checks = sigs.check(|d| copy.payloads.get(d).cloned(), key, reference, digest);
    if checks.iter().any(|(_, r)| r.is_ok()) {
        return Ok(Ok(()));
    }
    let why: Vec<String> = checks
        .iter()
        .map(|(i, r)| match r {
            Err(e) => format!("layer {i}: {e}"),
            Ok(_) => unreachable!("none verified"),
        })
        .collect();
    Ok(Err(if why.is_empty() {
        format!("{} holds no signature", sig_tag(digest))
    } else {
        why.join("; ")
    }))
}

/// The newest valid attestation by `key` of the decision about `list`.
async fn attestation(
    repo: &Repository,
    key: &PublicKey,
    list: &Digest,
) -> Result<Option<AttestationCheck>> {
    let (stored, _) = referrer_attestations(repo, list).await?;
    let mut best: Option<AttestationCheck> = None;
    for s in stored {
        let Ok(statement) = attest::verify(&s.manifest, &s.envelope, key, list, &s.label) else {
            continue;
        };
        if statement.predicate_type != DECISION_PREDICATE_TYPE {
            continue;
        }
        let Ok(p): Result<DecisionPredicate> = statement.decision() else {
            continue;
        };
        let found = AttestationCheck {
            digest: s.digest,
            decision: p.decision,
            reason: p.reason,
            decided_by: p.decided_by,
            policy_module_sha256: p.policy.as_ref().and_then(|x| x.module_sha256.clone()),
            policy: p.policy.map(|x| x.reference),
            time: p.time,
            build_id: p.build_id,
        };
        if best.as_ref().is_none_or(|b| b.time < found.time) {
            best = Some(found);
        }
    }
    Ok(best)
}

impl Verified {
    /// For a person: per tag, what holds and what does not.
    pub fn human(&self) -> String {
        let mut out = String::new();
        for t in &self.tags {
            let list = t
                .manifest_list_digest
                .as_ref()
                .map_or("(missing)".to_string(), Digest::to_string);
            out.push_str(&format!("{}:{} -> {list}\n", self.repo, t.tag));
            for s in &t.signatures {
                let mark = if s.valid { "signed" } else { "NOT SIGNED" };
                out.push_str(&format!("  {mark:10} {} ({})\n", s.digest, s.of));
            }
            match &t.attestation {
                Some(a) => out.push_str(&format!(
                    "  attested   {}: {} by {} at {}{} ({})\n",
                    a.digest,
                    a.decision,
                    a.decided_by,
                    a.time,
                    a.policy_module_sha256
                        .as_ref()
                        .map_or(String::new(), |m| format!(", module {m}")),
                    a.reason
                )),
                None => out.push_str("  NOT ATTESTED\n"),
            }
        }
        for p in &self.problems {
            out.push_str(&format!("problem: {p}\n"));
        }
        out.push_str(if self.ok {
            "verified\n"
        } else {
            "NOT verified\n"
        });
        out
    }
}
