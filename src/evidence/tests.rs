use super::*;
use crate::sign::key::tests::{encrypt_pem, test_key_der};

fn key(seed: u8) -> SigningKey {
    let pem = encrypt_pem(
        &test_key_der(seed),
        b"",
        10,
        crate::sign::key::SIGSTORE_PRIVATE_KEY_LABEL,
    );
    SigningKey::from_encrypted_pem(pem.as_bytes(), b"", "test key").unwrap()
}

fn wanted(tags: &[&str]) -> Wanted {
    let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    Wanted::new(
        "r.io/fcos",
        &tags,
        &Digest::of(b"list"),
        &[Digest::of(b"amd64"), Digest::of(b"arm64")],
    )
}

/// What the registry would hold after `gap` was written.
fn after(wanted: &Wanted, before: &Observed, gap: &Gap, attested: &str) -> Observed {
    let mut sigs = before.sigs.clone();
    sigs.resize(wanted.digests.len(), None);
    for w in &gap.sigs {
        let i = wanted.digests.iter().position(|d| *d == w.digest).unwrap();
        sigs[i] = Some(w.manifest.clone());
    }
    let mut seen = before.attested.clone();
    if gap.unattested {
        seen.push(attested.to_string());
    }
    Observed {
        sigs,
        attested: seen,
        referrers_api: before.referrers_api,
    }
}

#[test]
fn nothing_signed_yet_wants_a_signature_per_tag_and_digest_and_an_attestation() {
    let k = key(1);
    let w = wanted(&["stable", "41.1"]);
    let gap = plan(&k, &w, &Observed::default());
    assert_eq!(gap.sigs.len(), 3, "the list and both arches");
    assert_eq!(gap.missing(), 6, "two tags each");
    assert_eq!(gap.present, 0);
    assert!(gap.unattested);
    assert!(!gap.is_closed());
    // The references are REPO:TAG, the digest each manifest's own.
    let first = &gap.sigs[0];
    assert_eq!(first.digest, *w.list());
    let v = simple::verify(
        k.public_key(),
        &first.added[1].payload,
        &first.added[1].signature,
        "r.io/fcos:41.1",
        w.list(),
    );
    assert!(v.is_ok(), "{v:?}");
}

#[test]
fn once_written_the_plan_is_empty_and_a_rerun_adds_nothing() {
    let k = key(1);
    let w = wanted(&["stable"]);
    let gap = plan(&k, &w, &Observed::default());
    let now = after(&w, &Observed::default(), &gap, "d");
    let again = plan(&k, &w, &now);
    assert!(again.is_closed(), "{again:?}");
    assert_eq!(again.present, 3);
}

#[test]
fn a_second_tag_adds_its_signatures_and_keeps_the_first() {
    let k = key(1);
    let one = wanted(&["stable"]);
    let first = after(
        &one,
        &Observed::default(),
        &plan(&k, &one, &Observed::default()),
        "d",
    );
    let two = wanted(&["stable", "next"]);
    let gap = plan(&k, &two, &first);
    assert_eq!(gap.missing(), 3, "one per digest, for the new tag");
    assert_eq!(gap.present, 3, "the first tag's are kept");
    for w in &gap.sigs {
        assert_eq!(w.manifest.layers().len(), 2, "old layer kept, new added");
    }
}

#[test]
fn another_keys_signatures_survive_and_do_not_count() {
    let (mine, theirs) = (key(1), key(2));
    let w = wanted(&["stable"]);
    let by_them = after(
        &w,
        &Observed::default(),
        &plan(&theirs, &w, &Observed::default()),
        "theirs",
    );
    let mut observed = by_them.clone();
    observed.attested.clear();
    let gap = plan(&mine, &w, &observed);
    assert_eq!(gap.missing(), 3, "their signatures are not mine");
    assert!(gap.unattested);
    for s in &gap.sigs {
        assert_eq!(s.manifest.layers().len(), 2, "their layer is kept");
    }
}

#[test]
fn decisions_are_told_apart_by_list_module_and_facts() {
    let (l, m, f) = (Digest::of(b"l"), Digest::of(b"m"), Digest::of(b"f"));
    let k = decision_key(&l, Some(&m), Some(&f));
    assert_eq!(k, decision_key(&l, Some(&m), Some(&f)), "stable");
    assert_ne!(k, decision_key(&l, None, Some(&f)));
    assert_ne!(k, decision_key(&l, Some(&m), None));
    assert_ne!(k, decision_key(&Digest::of(b"x"), Some(&m), Some(&f)));
    assert_eq!(k.len(), 64);
}
