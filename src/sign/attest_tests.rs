use super::*;
use crate::manifest::OCI_INDEX;
use crate::sign::simple::tests::key;

fn list() -> manifest::Descriptor {
    manifest::Descriptor::of(OCI_INDEX, b"the list")
}

fn entry() -> Entry {
    serde_json::from_value(serde_json::json!({
        "time": "2026-12-06T00:00:00.000Z",
        "decision_id": "0123456789abcdef0123456789abcdef",
        "container": "oscontainer",
        "repo": "quay.io/fedora/fedora-coreos",
        "tags": ["stable", "43.20261206.3.0"],
        "build_id": "43.20261206.3.0",
        "policy": {"name": "fcos-release", "version": "1.2.0",
                   "sha256": Digest::of(b"module").to_string(), "source": "policies/fcos.wasm"},
        "verdict": "push",
        "verdict_reason": "2 of 3 manifests missing",
        "decision": "push",
        "reason": "release stream, signed-off build",
        "decided_by": "policy fcos-release 1.2.0",
        "facts_sha256": Digest::of(b"facts").to_string(),
        "outcome": "pushed",
        "dry_run": false
    }))
    .unwrap()
}

#[test]
fn the_predicate_carries_the_log_line() {
    let p = DecisionPredicate::from_log_entry(&entry()).unwrap();
    assert_eq!(p.host_verdict, Some(Verdict::Push));
    assert_eq!(p.decision, "push");
    assert_eq!(p.decided_by, "policy fcos-release 1.2.0");
    let policy = p.policy.as_ref().unwrap();
    assert_eq!(policy.module_sha256, Some(Digest::of(b"module")));
    assert_eq!(policy.reference, "policies/fcos.wasm");
    assert_eq!(p.facts_sha256, Some(Digest::of(b"facts")));
    assert_eq!(p.contract, crate::policy::CONTRACT);
    assert_eq!(p.pushgate_version, env!("CARGO_PKG_VERSION"));

    let mut host = entry();
    host.policy = LoggedPolicy::Host("host".into());
    assert_eq!(
        DecisionPredicate::from_log_entry(&host).unwrap().policy,
        None
    );
    let mut stopped = entry();
    stopped.decision = None;
    let err = DecisionPredicate::from_log_entry(&stopped)
        .unwrap_err()
        .to_string();
    assert!(err.contains("0123456789abcdef0123456789abcdef"), "{err}");
}

#[test]
fn the_referrer_is_an_oci_1_1_artifact_of_the_list() {
    let k = key(1);
    let p = DecisionPredicate::from_log_entry(&entry()).unwrap();
    let att = attest_decision(&k, "quay.io/fedora/fedora-coreos", &list(), &p);
    let m: Value = serde_json::from_slice(&att.manifest_bytes()).unwrap();
    assert_eq!(m["schemaVersion"], 2);
    assert_eq!(m["mediaType"], OCI_MANIFEST);
    assert_eq!(m["artifactType"], IN_TOTO_PAYLOAD_TYPE);
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    assert_eq!(m["config"]["size"], 2);
    assert_eq!(m["subject"]["digest"], list().digest.as_str());
    assert_eq!(m["subject"]["mediaType"], OCI_INDEX);
    assert_eq!(m["layers"][0]["mediaType"], ENVELOPE_MEDIA_TYPE);
    assert_eq!(m["layers"][0]["digest"], Digest::of(&att.envelope).as_str());
    assert_eq!(
        m["layers"][0]["annotations"]["predicateType"],
        DECISION_PREDICATE_TYPE
    );
    assert_eq!(
        m["annotations"][PREDICATE_TYPE_ANNOTATION],
        DECISION_PREDICATE_TYPE
    );
    assert_eq!(m["annotations"][CREATED_ANNOTATION], p.time);
    // The same decision attests to the same bytes.
    assert_eq!(
        attest_decision(&k, "quay.io/fedora/fedora-coreos", &list(), &p),
        att
    );
}

#[test]
fn a_stored_attestation_verifies_back_to_the_decision() {
    let k = key(1);
    let p = DecisionPredicate::from_log_entry(&entry()).unwrap();
    let att = attest_decision(&k, "quay.io/fedora/fedora-coreos", &list(), &p);
    let st = verify(
        &att.manifest_bytes(),
        &att.envelope,
        k.public_key(),
        &list().digest,
        "ref",
    )
    .unwrap();
    assert_eq!(st.statement_type, STATEMENT_TYPE);
    assert_eq!(
        st.subject,
        vec![Subject::new("quay.io/fedora/fedora-coreos", &list().digest)]
    );
    assert_eq!(st.decision().unwrap(), p);
    let raw: Value = serde_json::from_slice(
        &Envelope::parse(&att.envelope, "t")
            .unwrap()
            .verify(k.public_key(), "t")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(raw["subject"][0]["digest"]["sha256"], list().digest.hex());
}

#[test]
fn attestations_that_do_not_hold_are_refused() {
    let k = key(1);
    let p = DecisionPredicate::from_log_entry(&entry()).unwrap();
    let att = attest_decision(&k, "quay.io/fedora/fedora-coreos", &list(), &p);
    let bytes = att.manifest_bytes();
    let other = Digest::of(b"another list");
    let cases = [
        verify(&bytes, &att.envelope, k.public_key(), &other, "ref"),
        verify(
            &bytes,
            &att.envelope,
            key(2).public_key(),
            &list().digest,
            "ref",
        ),
        verify(&bytes, b"{}", k.public_key(), &list().digest, "ref"),
    ];
    for c in cases {
        let err = c.unwrap_err().to_string();
        assert!(err.starts_with("ref: "), "{err}");
    }
    // A validly signed statement about another subject, in a manifest that
    // claims this one, is not an attestation of this one.
    let mut elsewhere = p.clone();
    elsewhere.reason = "other".into();
    let stmt = Statement {
        statement_type: STATEMENT_TYPE.to_string(),
        subject: vec![Subject::new("r", &other)],
        predicate_type: DECISION_PREDICATE_TYPE.to_string(),
        predicate: &elsewhere,
    };
    let env = Envelope::sign(
        &k,
        IN_TOTO_PAYLOAD_TYPE,
        &serde_json::to_vec(&stmt).unwrap(),
    );
    let forged = referrer(&list(), &env, DECISION_PREDICATE_TYPE, "t");
    let err = verify(
        &forged.manifest_bytes(),
        &forged.envelope,
        k.public_key(),
        &list().digest,
        "ref",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("not about"), "{err}");
}

#[test]
fn the_predicate_carries_the_signature_facts_the_decision_saw_when_keys_were_trusted() {
    use crate::contract::{AttestationFact, Origin};
    let mut facts = crate::check::corpus()
        .into_iter()
        .find(|(name, _)| name.starts_with("promotion from a registry"))
        .map(|(_, f)| f)
        .expect("the corpus has a promotion");
    facts.arches[0]
        .source
        .signatures
        .as_mut()
        .unwrap()
        .attestations = vec![AttestationFact {
        predicate_type: "https://slsa.dev/provenance/v1".into(),
        keys: vec!["build".into()],
    }];
    let seen = SignaturesSeen::of(&facts).expect("keys were trusted");
    assert_eq!(seen.trusted_keys, ["build", "release"]);
    assert_eq!(seen.sources.len(), facts.arches.len());
    assert!(matches!(seen.sources[0].source.origin, Origin::Registry(_)));

    let mut p = DecisionPredicate::from_log_entry(&entry()).unwrap();
    let bare = serde_json::to_value(&p).unwrap();
    assert!(bare.get("signatures").is_none(), "{bare}");
    p.signatures = Some(seen);
    let doc = serde_json::to_value(&p).unwrap();
    let source = &doc["signatures"]["sources"][0];
    assert_eq!(source["arch"], "x86_64");
    assert_eq!(
        source["signatures"]["valid-keys"],
        serde_json::json!(["build"])
    );
    assert_eq!(
        source["signatures"]["attestations"][0]["predicate-type"],
        "https://slsa.dev/provenance/v1"
    );
    let back: DecisionPredicate = serde_json::from_value(doc).unwrap();
    assert_eq!(back, p);

    facts.trusted_keys.clear();
    assert_eq!(SignaturesSeen::of(&facts), None);
}
