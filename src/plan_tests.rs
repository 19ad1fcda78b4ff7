//! Tests of the planning rules: named examples for each rule, then every
//! combination of local state × tag state × registry presence × `--force`.

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;
use crate::manifest::{
    DOCKER_CONFIG, DOCKER_LIST, DOCKER_MANIFEST, ImageManifest, OCI_CONFIG, OCI_INDEX, Platform,
};

const REPO: &str = "quay.io/fedora/fedora-coreos";
const OTHER_REPO: &str = "quay.io/someone/else";

/// A repository as `--repo` gives it.
fn repo_name(repo: &str) -> RepoName {
    repo.parse().unwrap()
}
const TAGS: [&str; 3] = ["stable", "40.20261127.3.0", "latest"];
const ARCHES: [&str; 3] = ["x86_64", "aarch64", "s390x"];
const GZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const SHARED: &str = "layer-shared-base";

// ---------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------

fn blob(name: &str, media_type: &str) -> Descriptor {
    Descriptor::of(media_type, name.as_bytes())
}

fn platform(architecture: &str, variant: Option<&str>) -> Platform {
    Platform {
        architecture: architecture.into(),
        os: "linux".into(),
        variant: variant.map(str::to_string),
    }
}

/// An image manifest as an archive holds it. The bytes are padded with whitespace
/// and carry annotations, so any re-serialisation would change its digest.
fn source_with(
    arch: &str,
    platform: Platform,
    media_type: Option<&str>,
    config: &str,
    layers: &[(&str, &str)],
) -> SourceImage {
    let mut doc = serde_json::json!({ "schemaVersion": 2 });
    if let Some(mt) = media_type {
        doc["mediaType"] = mt.into();
    }
    doc["config"] = serde_json::to_value(blob(config, OCI_CONFIG)).unwrap();
    doc["layers"] = layers
        .iter()
        .map(|(name, mt)| serde_json::to_value(blob(name, mt)).unwrap())
        .collect();
    doc["annotations"] = serde_json::json!({ "org.opencontainers.image.version": "40" });
    let mut raw = b"\n  ".to_vec();
    raw.extend(serde_json::to_vec(&doc).unwrap());
    raw.extend(b"\n");
    let manifest = ImageManifest::parse(&raw, arch).unwrap();
    SourceImage {
        arch: arch.into(),
        platform,
        manifest,
        manifest_raw: raw,
    }
}

fn source(arch: &str, platform: Platform, config: &str, layers: &[&str]) -> SourceImage {
    let layers: Vec<(&str, &str)> = layers.iter().map(|l| (*l, GZ)).collect();
    source_with(arch, platform, Some(OCI_MANIFEST), config, &layers)
}

/// One build of three arches: x86_64 and aarch64 share a base layer; `generation` makes
/// each build's own blobs (and so every manifest digest) different.
fn build(generation: &str) -> Vec<SourceImage> {
    vec![
        source(
            "x86_64",
            platform("amd64", None),
            &format!("config-x86_64-{generation}"),
            &[SHARED, &format!("layer-x86_64-{generation}")],
        ),
        source(
            "aarch64",
            platform("arm64", Some("v8")),
            &format!("config-aarch64-{generation}"),
            &[SHARED, &format!("layer-aarch64-{generation}")],
        ),
        source(
            "s390x",
            platform("s390x", None),
            &format!("config-s390x-{generation}"),
            &["layer-s390x-base", &format!("layer-s390x-{generation}")],
        ),
    ]
}

/// The desired state (`a`) and an older, different one (`b`).
struct Fixture {
    a: Desired,
    b: Desired,
}

fn fixture(v2s2: bool) -> Fixture {
    Fixture {
        a: desired(&build("new"), v2s2).unwrap(),
        b: desired(&build("old"), v2s2).unwrap(),
    }
}

fn tags() -> Vec<String> {
    TAGS.iter().map(|t| t.to_string()).collect()
}

fn list_remote(d: &Desired) -> Remote {
    Remote::List {
        media_type: d.list_media_type.to_string(),
        entries: d.images.iter().map(|i| i.descriptor.clone()).collect(),
    }
}

fn missing(tag: &str) -> TagState {
    TagState {
        tag: tag.into(),
        current: None,
    }
}

fn at(tag: &str, digest: &Digest, remote: Remote) -> TagState {
    TagState {
        tag: tag.into(),
        current: Some((digest.clone(), remote)),
    }
}

fn serving(tag: &str, d: &Desired) -> TagState {
    at(tag, &d.list_digest, list_remote(d))
}

/// Every tag serves `d`'s list.
fn all_serving(d: &Desired) -> Vec<TagState> {
    TAGS.iter().map(|t| serving(t, d)).collect()
}

fn single(tag: &str, d: &Desired) -> TagState {
    at(tag, &d.images[0].descriptor.digest, Remote::Image)
}

/// meta.json as a finished run of `d` with [`TAGS`] leaves it, for every arch.
fn recorded_as(d: &Desired, repo: &str) -> Vec<(String, Option<ImageEntry>)> {
    d.images
        .iter()
        .map(|i| {
            (
                i.arch.clone(),
                d.entry_for(&i.arch, &repo_name(repo), &tags()),
            )
        })
        .collect()
}

fn nothing_recorded() -> Vec<(String, Option<ImageEntry>)> {
    ARCHES.iter().map(|a| (a.to_string(), None)).collect()
}

fn entry(image: &str, digest: Option<&Digest>, list: Option<&Digest>) -> ImageEntry {
    ImageEntry {
        image: image.into(),
        digest: digest.cloned(),
        manifest_list_digest: list.cloned(),
        tags: tags(),
        additional_images: Vec::new(),
    }
}

/// Everything `d` needs, including its list.
fn all_present(d: &Desired) -> Presence {
    let mut p = all_but_list(d);
    p.manifests.insert(d.list_digest.clone());
    p
}

fn all_but_list(d: &Desired) -> Presence {
    Presence {
        blobs: d
            .images
            .iter()
            .flat_map(|i| &i.blobs)
            .map(|b| b.digest.clone())
            .collect(),
        manifests: d
            .images
            .iter()
            .map(|i| i.descriptor.digest.clone())
            .collect(),
    }
}

fn digests(blobs: &[Descriptor]) -> Vec<Digest> {
    blobs.iter().map(|b| b.digest.clone()).collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The distinct blobs of `d` in the order a plan uploads them: biggest first,
/// ties in manifest order (the first arch naming a blob places it).
fn unique_blobs(d: &Desired) -> Vec<Digest> {
    let mut out: Vec<&Descriptor> = Vec::new();
    for b in d.images.iter().flat_map(|i| &i.blobs) {
        if !out.iter().any(|o| o.digest == b.digest) {
            out.push(b);
        }
    }
    // An insertion sort written out, not the plan's own sort: biggest first,
    // and a blob never passes one of the same size.
    let mut sorted: Vec<&Descriptor> = Vec::new();
    for b in out {
        let at = sorted
            .iter()
            .position(|s| s.size < b.size)
            .unwrap_or(sorted.len());
        sorted.insert(at, b);
    }
    sorted.into_iter().map(|b| b.digest.clone()).collect()
}

/// The plan for `d` when every tag is missing, nothing is recorded and the
/// registry holds `presence`.
fn plan_all_missing(d: &Desired, presence: &Presence) -> Plan {
    let tags_now: Vec<_> = TAGS.iter().map(|t| missing(t)).collect();
    plan(&repo_name(REPO), &tags_now, d, &[], presence, false)
}

fn assert_uploads_nothing(p: &Plan) {
    assert!(p.blobs.is_empty(), "{p:?}");
    assert!(p.manifests.is_empty(), "{p:?}");
    assert!(!p.list, "{p:?}");
    assert!(p.tags.is_empty(), "{p:?}");
    assert!(!p.writes_registry(), "{p:?}");
}

// ---------------------------------------------------------------------------
// desired()
// ---------------------------------------------------------------------------

#[test]
fn oci_manifests_are_kept_byte_for_byte() {
    let images = build("new");
    let d = desired(&images, false).unwrap();
    assert_eq!(d.images.len(), images.len());
    for (want, got) in images.iter().zip(&d.images) {
        assert_eq!(got.arch, want.arch);
        assert_eq!(got.bytes, want.manifest_raw);
        assert_eq!(got.descriptor.digest, Digest::of(&want.manifest_raw));
        assert_eq!(got.descriptor.size, want.manifest_raw.len() as u64);
        assert_eq!(got.descriptor.media_type, OCI_MANIFEST);
        assert_eq!(got.descriptor.platform.as_ref(), Some(&want.platform));
        let expected: Vec<&Descriptor> = want.manifest.blobs().collect();
        assert_eq!(got.blobs.iter().collect::<Vec<_>>(), expected);
        assert_eq!(got.blobs[0].media_type, OCI_CONFIG, "config comes first");
    }
    assert_eq!(d.digest_of("aarch64"), Some(&d.images[1].descriptor.digest));
    assert_eq!(d.digest_of("riscv64"), None);
}

#[test]
fn oci_manifest_without_media_type_is_published_as_oci() {
    let img = source_with(
        "x86_64",
        platform("amd64", None),
        None,
        "config",
        &[("layer", GZ)],
    );
    let d = desired(std::slice::from_ref(&img), false).unwrap();
    assert_eq!(d.images[0].descriptor.media_type, OCI_MANIFEST);
    assert_eq!(d.images[0].bytes, img.manifest_raw);
}

#[test]
fn oci_list_is_an_index_over_the_images_in_order() {
    let d = desired(&build("new"), false).unwrap();
    assert_eq!(d.list_media_type, OCI_INDEX);
    assert_eq!(d.list_digest, Digest::of(&d.list_bytes));
    let doc: Value = serde_json::from_slice(&d.list_bytes).unwrap();
    assert_eq!(doc["schemaVersion"], 2);
    assert_eq!(doc["mediaType"], OCI_INDEX);
    let entries = doc["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    for (e, img) in entries.iter().zip(&d.images) {
        assert_eq!(e["digest"], img.descriptor.digest.as_str());
        assert_eq!(e["size"], img.bytes.len() as u64);
        assert_eq!(e["mediaType"], OCI_MANIFEST);
        assert_eq!(e["platform"]["os"], "linux");
    }
    let archs: Vec<&str> = entries
        .iter()
        .map(|e| e["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64", "s390x"]);
    // variant only where the image has one
    let variants: Vec<Option<&Value>> = entries
        .iter()
        .map(|e| e["platform"].get("variant"))
        .collect();
    assert_eq!(variants, [None, Some(&Value::from("v8")), None]);
    assert!(!String::from_utf8_lossy(&d.list_bytes).contains("null"));
    assert_eq!(
        manifest::parse_remote(&d.list_bytes, None),
        list_remote(&d),
        "the list parses back to its entries"
    );
}

#[test]
fn v2s2_converts_manifests_and_list() {
    let images = build("new");
    let oci = desired(&images, false).unwrap();
    let d = desired(&images, true).unwrap();
    assert_eq!(d.list_media_type, DOCKER_LIST);
    assert_eq!(d.list_digest, Digest::of(&d.list_bytes));
    assert_ne!(d.list_digest, oci.list_digest);
    let doc: Value = serde_json::from_slice(&d.list_bytes).unwrap();
    assert_eq!(doc["mediaType"], DOCKER_LIST);
    for ((src, o), got) in images.iter().zip(&oci.images).zip(&d.images) {
        assert_eq!(got.descriptor.media_type, DOCKER_MANIFEST);
        assert_eq!(got.descriptor.digest, Digest::of(&got.bytes));
        assert_eq!(got.descriptor.size, got.bytes.len() as u64);
        assert_ne!(got.descriptor.digest, o.descriptor.digest);
        assert_ne!(got.bytes, src.manifest_raw);
        assert_eq!(got.descriptor.platform.as_ref(), Some(&src.platform));
        let parsed = ImageManifest::parse(&got.bytes, "t").unwrap();
        assert_eq!(parsed.media_type.as_deref(), Some(DOCKER_MANIFEST));
        assert_eq!(parsed.config.media_type, DOCKER_CONFIG);
        // the same blobs, in the same order, with Docker media types
        assert_eq!(digests(&got.blobs), digests(&o.blobs));
        assert_eq!(got.blobs, parsed.blobs().cloned().collect::<Vec<_>>());
        assert!(
            got.blobs[1..]
                .iter()
                .all(|b| b.media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip")
        );
    }
    assert_eq!(manifest::parse_remote(&d.list_bytes, None), list_remote(&d));
}

#[test]
fn v2s2_refuses_what_schema2_cannot_express() {
    let img = source_with(
        "x86_64",
        platform("amd64", None),
        Some(OCI_MANIFEST),
        "config",
        &[("layer", "application/vnd.oci.image.layer.v1.tar+zstd")],
    );
    assert!(desired(std::slice::from_ref(&img), true).is_err());
    assert!(desired(std::slice::from_ref(&img), false).is_ok());
}

#[test]
fn desired_is_deterministic() {
    for v2s2 in [false, true] {
        let first = desired(&build("new"), v2s2).unwrap();
        for _ in 0..3 {
            assert_eq!(desired(&build("new"), v2s2).unwrap(), first);
        }
        assert_ne!(
            desired(&build("old"), v2s2).unwrap().list_digest,
            first.list_digest
        );
    }
}

#[test]
fn list_order_follows_image_order() {
    for v2s2 in [false, true] {
        let mut images = build("new");
        let d = desired(&images, v2s2).unwrap();
        images.reverse();
        let r = desired(&images, v2s2).unwrap();
        let arches = |d: &Desired| d.images.iter().map(|i| i.arch.clone()).collect::<Vec<_>>();
        assert_eq!(arches(&r), ["s390x", "aarch64", "x86_64"]);
        let Remote::List { entries, .. } = manifest::parse_remote(&r.list_bytes, None) else {
            panic!("a list");
        };
        let platforms: Vec<&str> = entries
            .iter()
            .map(|e| e.platform.as_ref().unwrap().architecture.as_str())
            .collect();
        assert_eq!(platforms, ["s390x", "arm64", "amd64"]);
        assert_ne!(r.list_digest, d.list_digest);
        for a in ARCHES {
            assert_eq!(
                r.digest_of(a),
                d.digest_of(a),
                "per-arch digests do not move"
            );
        }
    }
}

#[test]
fn entry_for_records_the_arch_digest_and_the_list() {
    let d = desired(&build("new"), false).unwrap();
    let e = d.entry_for("aarch64", &repo_name(REPO), &tags()).unwrap();
    assert_eq!(e.image, REPO);
    assert_eq!(e.digest.as_ref(), d.digest_of("aarch64"));
    assert_ne!(e.digest.as_ref(), Some(&d.list_digest));
    assert_eq!(e.manifest_list_digest.as_ref(), Some(&d.list_digest));
    assert_eq!(e.tags, tags());
    assert!(e.additional_images.is_empty());
    assert_eq!(d.entry_for("ppc64le", &repo_name(REPO), &tags()), None);
}

// ---------------------------------------------------------------------------
// records()
// ---------------------------------------------------------------------------

#[test]
fn records_compares_image_digest_list_and_covers_tags() {
    let f = fixture(false);
    let want = f.a.entry_for("x86_64", &repo_name(REPO), &tags()).unwrap();
    assert!(records(&want, &want));
    let mut reordered = want.clone();
    reordered.tags.reverse();
    reordered.tags.push(TAGS[0].into());
    assert!(
        records(&reordered, &want),
        "tag order and repeats do not matter"
    );

    let mut other = want.clone();
    other.image = OTHER_REPO.into();
    assert!(!records(&other, &want));
    let mut other = want.clone();
    other.digest = f.a.digest_of("s390x").cloned();
    assert!(!records(&other, &want));
    let mut other = want.clone();
    other.digest = None;
    assert!(!records(&other, &want));
    let mut other = want.clone();
    other.manifest_list_digest = Some(f.b.list_digest.clone());
    assert!(!records(&other, &want));
    let mut other = want.clone();
    other.tags.pop();
    assert!(!records(&other, &want));
    let mut other = want.clone();
    other.tags.push("extra".into());
    assert!(
        records(&other, &want),
        "an entry with more tags than asked for still records the push"
    );
}

#[test]
fn records_finds_a_later_push_in_additional_images() {
    let f = fixture(false);
    let want = f.a.entry_for("x86_64", &repo_name(REPO), &tags()).unwrap();
    let mut old = f.b.entry_for("x86_64", &repo_name(REPO), &tags()).unwrap();
    assert!(!records(&old, &want));
    old.additional_images.push(
        f.b.entry_for("x86_64", &repo_name(OTHER_REPO), &tags())
            .unwrap(),
    );
    assert!(!records(&old, &want));
    old.additional_images.push(want.clone());
    assert!(records(&old, &want));
}

// ---------------------------------------------------------------------------
// check_recorded(): the quick check
// ---------------------------------------------------------------------------

#[test]
fn quick_check_up_to_date_when_meta_and_every_tag_agree() {
    for v2s2 in [false, true] {
        let f = fixture(v2s2);
        let reason = check_recorded(
            &repo_name(REPO),
            &recorded_as(&f.a, REPO),
            &all_serving(&f.a),
            false,
        )
        .expect("up to date");
        assert!(reason.contains('3'), "{reason}");
        // what the quick check calls up to date, the full plan does too
        let p = plan(
            &repo_name(REPO),
            &all_serving(&f.a),
            &f.a,
            &recorded_as(&f.a, REPO),
            &Presence::default(),
            false,
        );
        assert_eq!(p.verdict, Verdict::UpToDate, "{p:?}");
        assert!(p.record.is_empty());
        assert_uploads_nothing(&p);
    }
}

#[test]
fn a_tag_asked_for_but_not_recorded_is_recorded_even_if_the_registry_has_it() {
    let f = fixture(false);
    // meta.json records the push under the first tag only; someone else already
    // pointed the other tags at the same list.
    let first_only: Vec<String> = tags()[..1].to_vec();
    let recorded: Vec<_> = recorded_as(&f.a, REPO)
        .into_iter()
        .map(|(arch, e)| {
            let mut e = e.unwrap();
            e.tags = first_only.clone();
            (arch, Some(e))
        })
        .collect();
    let err = check_recorded(&repo_name(REPO), &recorded, &all_serving(&f.a), false).unwrap_err();
    assert!(err.contains("does not record tag"), "{err}");
    let p = plan(
        &repo_name(REPO),
        &all_serving(&f.a),
        &f.a,
        &recorded,
        &Presence::default(),
        false,
    );
    assert_eq!(p.verdict, Verdict::RecordOnly, "{p:?}");
    assert_eq!(p.record.len(), recorded.len());
    assert_uploads_nothing(&p);
}

#[test]
fn quick_check_refuses_with_force() {
    let f = fixture(false);
    let err = check_recorded(
        &repo_name(REPO),
        &recorded_as(&f.a, REPO),
        &all_serving(&f.a),
        true,
    )
    .unwrap_err();
    assert!(err.contains("--force"), "{err}");
}

#[test]
fn quick_check_refuses_without_meta_json() {
    let f = fixture(false);
    let err = check_recorded(&repo_name(REPO), &[], &all_serving(&f.a), false).unwrap_err();
    assert!(!err.is_empty());
}

#[test]
fn quick_check_refuses_when_an_arch_lacks_the_key() {
    let f = fixture(false);
    for i in 0..ARCHES.len() {
        let mut rec = recorded_as(&f.a, REPO);
        rec[i].1 = None;
        let err = check_recorded(&repo_name(REPO), &rec, &all_serving(&f.a), false).unwrap_err();
        assert!(err.contains(ARCHES[i]), "{err}");
    }
    let err = check_recorded(
        &repo_name(REPO),
        &nothing_recorded(),
        &all_serving(&f.a),
        false,
    )
    .unwrap_err();
    assert!(err.contains("x86_64"), "{err}");
}

#[test]
fn quick_check_refuses_an_entry_for_another_repo() {
    let f = fixture(false);
    let mut rec = recorded_as(&f.a, REPO);
    rec[2].1 = f.a.entry_for("s390x", &repo_name(OTHER_REPO), &tags());
    let err = check_recorded(&repo_name(REPO), &rec, &all_serving(&f.a), false).unwrap_err();
    assert!(err.contains(OTHER_REPO) && err.contains("s390x"), "{err}");
}

#[test]
fn quick_check_refuses_an_entry_without_digest() {
    let f = fixture(false);
    let mut rec = recorded_as(&f.a, REPO);
    rec[1].1 = Some(entry(REPO, None, Some(&f.a.list_digest)));
    let err = check_recorded(&repo_name(REPO), &rec, &all_serving(&f.a), false).unwrap_err();
    assert!(err.contains("aarch64"), "{err}");
}

#[test]
fn quick_check_refuses_two_arches_with_one_digest() {
    let f = fixture(false);
    let mut rec = recorded_as(&f.a, REPO);
    rec[1].1 = Some(entry(REPO, f.a.digest_of("x86_64"), Some(&f.a.list_digest)));
    assert!(check_recorded(&repo_name(REPO), &rec, &all_serving(&f.a), false).is_err());
    // even when the tags serve a list of exactly the two distinct digests
    let entries = vec![
        f.a.images[0].descriptor.clone(),
        f.a.images[2].descriptor.clone(),
    ];
    let t: Vec<_> = TAGS
        .iter()
        .map(|tag| {
            at(
                tag,
                &f.a.list_digest,
                Remote::List {
                    media_type: OCI_INDEX.to_string(),
                    entries: entries.clone(),
                },
            )
        })
        .collect();
    assert!(check_recorded(&repo_name(REPO), &rec, &t, false).is_err());
}

#[test]
fn quick_check_refuses_a_missing_tag() {
    let f = fixture(false);
    for i in 0..TAGS.len() {
        let mut t = all_serving(&f.a);
        t[i] = missing(TAGS[i]);
        let err =
            check_recorded(&repo_name(REPO), &recorded_as(&f.a, REPO), &t, false).unwrap_err();
        assert!(err.contains(TAGS[i]), "{err}");
    }
}

#[test]
fn quick_check_refuses_a_tag_on_another_list() {
    let f = fixture(false);
    for i in 0..TAGS.len() {
        let mut t = all_serving(&f.a);
        t[i] = serving(TAGS[i], &f.b);
        let err =
            check_recorded(&repo_name(REPO), &recorded_as(&f.a, REPO), &t, false).unwrap_err();
        assert!(err.contains(TAGS[i]), "{err}");
    }
}

#[test]
fn quick_check_refuses_a_list_with_the_same_digests_under_another_digest() {
    // same per-arch digests, other order: another list, not the recorded one
    let f = fixture(false);
    let Remote::List { mut entries, .. } = list_remote(&f.a) else {
        unreachable!()
    };
    entries.reverse();
    let (_, bytes) = manifest::build_list(&entries, false);
    let mut t = all_serving(&f.a);
    t[1] = at(
        TAGS[1],
        &Digest::of(&bytes),
        Remote::List {
            media_type: OCI_INDEX.to_string(),
            entries,
        },
    );
    let err = check_recorded(&repo_name(REPO), &recorded_as(&f.a, REPO), &t, false).unwrap_err();
    assert!(err.contains(TAGS[1]), "{err}");
}

#[test]
fn quick_check_refuses_a_single_image_tag() {
    let f = fixture(false);
    let mut t = all_serving(&f.a);
    t[0] = single(TAGS[0], &f.a);
    let err = check_recorded(&repo_name(REPO), &recorded_as(&f.a, REPO), &t, false).unwrap_err();
    assert!(err.contains(TAGS[0]), "{err}");

    // even when meta.json names no list digest to compare the tag's digest with
    let rec: Vec<_> =
        f.a.images
            .iter()
            .map(|i| {
                (
                    i.arch.clone(),
                    Some(entry(REPO, Some(&i.descriptor.digest), None)),
                )
            })
            .collect();
    let err = check_recorded(&repo_name(REPO), &rec, &t, false).unwrap_err();
    assert!(
        err.contains(TAGS[0]) && err.contains("not a manifest list"),
        "{err}"
    );
}

/// Tags at the recorded list digest whose entries are not the recorded digests.
#[test]
fn quick_check_refuses_lists_with_other_digests() {
    let f = fixture(false);
    let a: Vec<Descriptor> = f.a.images.iter().map(|i| i.descriptor.clone()).collect();
    let foreign = f.b.images[0].descriptor.clone();
    let cases: Vec<(&str, Vec<Descriptor>)> = vec![
        ("extra", [a.clone(), vec![foreign.clone()]].concat()),
        ("fewer", a[..2].to_vec()),
        (
            "different",
            vec![a[0].clone(), a[1].clone(), foreign.clone()],
        ),
        (
            "repeated",
            vec![a[0].clone(), a[1].clone(), a[2].clone(), a[0].clone()],
        ),
        (
            "repeated instead",
            vec![a[0].clone(), a[1].clone(), a[1].clone()],
        ),
        ("empty", Vec::new()),
    ];
    for (name, entries) in cases {
        for i in 0..TAGS.len() {
            let mut t = all_serving(&f.a);
            t[i] = at(
                TAGS[i],
                &f.a.list_digest,
                Remote::List {
                    media_type: OCI_INDEX.to_string(),
                    entries: entries.clone(),
                },
            );
            let err = check_recorded(&repo_name(REPO), &recorded_as(&f.a, REPO), &t, false)
                .expect_err(name);
            assert!(err.contains(TAGS[i]), "{name}: {err}");
        }
    }
}

#[test]
fn quick_check_refuses_entries_naming_different_lists() {
    let f = fixture(false);
    let mut rec = recorded_as(&f.a, REPO);
    rec[2].1 = Some(entry(REPO, f.a.digest_of("s390x"), Some(&f.b.list_digest)));
    let err = check_recorded(&repo_name(REPO), &rec, &all_serving(&f.a), false).unwrap_err();
    assert!(err.contains("different"), "{err}");
}

#[test]
fn quick_check_compares_the_newest_entry() {
    let f = fixture(false);
    // pushed b, then a (appended to additional-images): a is what counts
    let a_after_b: Vec<_> = ARCHES
        .iter()
        .map(|arch| {
            let mut e = f.b.entry_for(arch, &repo_name(REPO), &tags()).unwrap();
            e.additional_images.push(
                f.b.entry_for(arch, &repo_name(OTHER_REPO), &tags())
                    .unwrap(),
            );
            e.additional_images
                .push(f.a.entry_for(arch, &repo_name(REPO), &tags()).unwrap());
            (arch.to_string(), Some(e))
        })
        .collect();
    assert!(check_recorded(&repo_name(REPO), &a_after_b, &all_serving(&f.a), false).is_ok());
    assert!(check_recorded(&repo_name(REPO), &a_after_b, &all_serving(&f.b), false).is_err());

    // pushed a, then b: b is what counts
    let b_after_a: Vec<_> = ARCHES
        .iter()
        .map(|arch| {
            let mut e = f.a.entry_for(arch, &repo_name(REPO), &tags()).unwrap();
            e.additional_images
                .push(f.b.entry_for(arch, &repo_name(REPO), &tags()).unwrap());
            (arch.to_string(), Some(e))
        })
        .collect();
    assert!(check_recorded(&repo_name(REPO), &b_after_a, &all_serving(&f.b), false).is_ok());
    assert!(check_recorded(&repo_name(REPO), &b_after_a, &all_serving(&f.a), false).is_err());

    // newest entry is for another repo: refused even if an older one matches
    let other_last: Vec<_> = ARCHES
        .iter()
        .map(|arch| {
            let mut e = f.a.entry_for(arch, &repo_name(REPO), &tags()).unwrap();
            e.additional_images.push(
                f.a.entry_for(arch, &repo_name(OTHER_REPO), &tags())
                    .unwrap(),
            );
            (arch.to_string(), Some(e))
        })
        .collect();
    let err = check_recorded(&repo_name(REPO), &other_last, &all_serving(&f.a), false).unwrap_err();
    assert!(err.contains(OTHER_REPO), "{err}");
}

#[test]
fn quick_check_is_ok_for_a_subset_of_arches_when_lists_match_it() {
    // meta.json for two arches (the third lacks the artifact); tags list exactly those
    let images: Vec<SourceImage> = build("new").into_iter().take(2).collect();
    let d = desired(&images, false).unwrap();
    assert!(
        check_recorded(
            &repo_name(REPO),
            &recorded_as(&d, REPO),
            &all_serving(&d),
            false
        )
        .is_ok()
    );
    // the three-arch list is "more digests than meta.json records"
    let three = desired(&build("new"), false).unwrap();
    let t: Vec<_> = TAGS
        .iter()
        .map(|tag| at(tag, &d.list_digest, list_remote(&three)))
        .collect();
    assert!(check_recorded(&repo_name(REPO), &recorded_as(&d, REPO), &t, false).is_err());
}

// ---------------------------------------------------------------------------
// plan(): named rules
// ---------------------------------------------------------------------------

#[test]
fn record_only_when_registry_has_the_list_and_meta_lacks_the_key() {
    for v2s2 in [false, true] {
        let f = fixture(v2s2);
        // lacking on every arch, or on some; presence is irrelevant (the tags prove it)
        for lacking in [vec![0, 1, 2], vec![0], vec![1, 2], vec![2]] {
            let mut rec = recorded_as(&f.a, REPO);
            for &i in &lacking {
                rec[i].1 = None;
            }
            assert!(check_recorded(&repo_name(REPO), &rec, &all_serving(&f.a), false).is_err());
            for presence in [Presence::default(), all_present(&f.a)] {
                let p = plan(
                    &repo_name(REPO),
                    &all_serving(&f.a),
                    &f.a,
                    &rec,
                    &presence,
                    false,
                );
                assert_eq!(p.verdict, Verdict::RecordOnly, "{p:?}");
                assert_uploads_nothing(&p);
                let want: Vec<String> = lacking.iter().map(|&i| ARCHES[i].to_string()).collect();
                assert_eq!(p.record, want);
                for arch in &want {
                    assert!(p.reason.contains(arch.as_str()), "{}", p.reason);
                }
            }
        }
    }
}

#[test]
fn record_only_when_meta_records_an_older_push_or_another_repo() {
    let f = fixture(false);
    for rec in [recorded_as(&f.b, REPO), recorded_as(&f.a, OTHER_REPO)] {
        let p = plan(
            &repo_name(REPO),
            &all_serving(&f.a),
            &f.a,
            &rec,
            &all_present(&f.a),
            false,
        );
        assert_eq!(p.verdict, Verdict::RecordOnly, "{p:?}");
        assert_uploads_nothing(&p);
        assert_eq!(p.record, strings(&ARCHES));
    }
}

#[test]
fn push_uploads_only_what_is_missing() {
    for v2s2 in [false, true] {
        let f = fixture(v2s2);
        let x86 = &f.a.images[0];
        let arm = &f.a.images[1];
        let s390x = &f.a.images[2];
        // the registry has x86_64 entirely, the shared layer, and s390x's config
        let mut presence = Presence::default();
        presence
            .blobs
            .extend(x86.blobs.iter().map(|b| b.digest.clone()));
        presence.blobs.insert(s390x.blobs[0].digest.clone());
        presence.manifests.insert(x86.descriptor.digest.clone());
        let tags_now: Vec<_> = TAGS.iter().map(|t| missing(t)).collect();
        let p = plan(
            &repo_name(REPO),
            &tags_now,
            &f.a,
            &nothing_recorded(),
            &presence,
            false,
        );
        assert_eq!(p.verdict, Verdict::Push);
        assert_eq!(
            digests(&p.blobs),
            vec![
                arm.blobs[0].digest.clone(), // config
                arm.blobs[2].digest.clone(), // own layer (the shared one is there)
                s390x.blobs[1].digest.clone(),
                s390x.blobs[2].digest.clone(),
            ]
        );
        assert_eq!(
            p.blobs[0], arm.blobs[0],
            "full descriptors, not just digests"
        );
        assert_eq!(p.manifests, strings(&["aarch64", "s390x"]));
        assert!(p.list);
        assert_eq!(p.tags, tags());
        assert_eq!(p.record, strings(&ARCHES));
        assert!(p.writes_registry());
        for t in TAGS {
            assert!(
                p.reason.contains(&format!("{t} is missing")),
                "{}",
                p.reason
            );
        }
    }
}

#[test]
fn blobs_go_biggest_first_so_the_connections_finish_together() {
    let f = fixture(false);
    let p = plan_all_missing(&f.a, &Presence::default());
    let sizes: Vec<u64> = p.blobs.iter().map(|b| b.size).collect();
    assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
    // The fixture's manifests do not list their blobs that way: the order is
    // the plan's doing.
    let listed: Vec<u64> =
        f.a.images
            .iter()
            .flat_map(|i| &i.blobs)
            .map(|b| b.size)
            .collect();
    assert!(listed.windows(2).any(|w| w[0] < w[1]), "{listed:?}");
}

#[test]
fn a_blob_shared_by_two_arches_is_uploaded_once() {
    let f = fixture(false);
    let shared = Digest::of(SHARED.as_bytes());
    let refs =
        f.a.images
            .iter()
            .flat_map(|i| &i.blobs)
            .filter(|b| b.digest == shared)
            .count();
    assert_eq!(refs, 2, "the fixture shares a layer");
    let p = plan_all_missing(&f.a, &Presence::default());
    assert_eq!(p.blobs.iter().filter(|b| b.digest == shared).count(), 1);
    assert_eq!(digests(&p.blobs), unique_blobs(&f.a));
    assert_eq!(p.blobs.len(), 8, "3 configs + 5 distinct layers");
    assert_eq!(p.manifests, strings(&ARCHES));
    assert!(p.list);
}

#[test]
fn only_the_list_and_tags_when_images_are_there() {
    let f = fixture(false);
    let tags_now: Vec<_> = TAGS.iter().map(|t| missing(t)).collect();
    let p = plan(
        &repo_name(REPO),
        &tags_now,
        &f.a,
        &nothing_recorded(),
        &all_but_list(&f.a),
        false,
    );
    assert_eq!(p.verdict, Verdict::Push);
    assert!(p.blobs.is_empty() && p.manifests.is_empty());
    assert!(p.list);
    assert_eq!(p.tags, tags());

    // the list is there too (say a run died before tagging): only tags
    let p = plan(
        &repo_name(REPO),
        &tags_now,
        &f.a,
        &nothing_recorded(),
        &all_present(&f.a),
        false,
    );
    assert_eq!(p.verdict, Verdict::Push);
    assert!(p.blobs.is_empty() && p.manifests.is_empty() && !p.list);
    assert_eq!(p.tags, tags());
    assert_eq!(p.record, strings(&ARCHES));
}

#[test]
fn a_tag_moved_by_someone_else_is_put_back() {
    for v2s2 in [false, true] {
        let f = fixture(v2s2);
        for moved_to in [
            serving(TAGS[1], &f.b),
            single(TAGS[1], &f.b),
            missing(TAGS[1]),
        ] {
            let mut t = all_serving(&f.a);
            t[1] = moved_to;
            let rec = recorded_as(&f.a, REPO);
            assert!(check_recorded(&repo_name(REPO), &rec, &t, false).is_err());
            let p = plan(&repo_name(REPO), &t, &f.a, &rec, &all_present(&f.a), false);
            assert_eq!(p.verdict, Verdict::Push, "{p:?}");
            assert_eq!(p.tags, vec![TAGS[1].to_string()]);
            assert!(p.blobs.is_empty() && p.manifests.is_empty() && !p.list);
            assert!(p.record.is_empty(), "meta.json already records it");
            assert!(p.reason.contains(TAGS[1]), "{}", p.reason);
            assert!(!p.reason.contains(TAGS[0]), "{}", p.reason);
        }
    }
}

#[test]
fn force_pushes_and_records_even_when_up_to_date() {
    for v2s2 in [false, true] {
        let f = fixture(v2s2);
        let rec = recorded_as(&f.a, REPO);
        assert!(check_recorded(&repo_name(REPO), &rec, &all_serving(&f.a), true).is_err());
        let p = plan(
            &repo_name(REPO),
            &all_serving(&f.a),
            &f.a,
            &rec,
            &all_present(&f.a),
            true,
        );
        assert_eq!(p.verdict, Verdict::Push);
        assert!(p.blobs.is_empty(), "blobs the repo has are never uploaded");
        assert_eq!(p.manifests, strings(&ARCHES));
        assert!(p.list);
        assert_eq!(p.tags, tags());
        assert_eq!(p.record, strings(&ARCHES));
        assert!(p.reason.contains("--force"), "{}", p.reason);

        // blobs: still only the missing ones
        let mut presence = all_present(&f.a);
        let gone = f.a.images[2].blobs[1].digest.clone();
        presence.blobs.remove(&gone);
        let p = plan(
            &repo_name(REPO),
            &all_serving(&f.a),
            &f.a,
            &rec,
            &presence,
            true,
        );
        assert_eq!(digests(&p.blobs), vec![gone]);
    }
}

#[test]
fn image_mode_records_nothing() {
    let f = fixture(false);
    assert!(check_recorded(&repo_name(REPO), &[], &all_serving(&f.a), false).is_err());

    let p = plan(
        &repo_name(REPO),
        &all_serving(&f.a),
        &f.a,
        &[],
        &Presence::default(),
        false,
    );
    assert_eq!(p.verdict, Verdict::UpToDate, "{p:?}");
    assert!(p.record.is_empty());
    assert_uploads_nothing(&p);

    let mut t = all_serving(&f.a);
    t[2] = serving(TAGS[2], &f.b);
    let p = plan(&repo_name(REPO), &t, &f.a, &[], &all_present(&f.a), false);
    assert_eq!(p.verdict, Verdict::Push);
    assert_eq!(p.tags, vec![TAGS[2].to_string()]);
    assert!(p.record.is_empty());

    let p = plan(
        &repo_name(REPO),
        &all_serving(&f.a),
        &f.a,
        &[],
        &all_present(&f.a),
        true,
    );
    assert_eq!(p.verdict, Verdict::Push);
    assert_eq!(p.tags, tags());
    assert!(p.record.is_empty());
}

#[test]
fn plan_is_a_pure_function() {
    let f = fixture(false);
    let mut t = all_serving(&f.a);
    t[0] = missing(TAGS[0]);
    let args = (t, recorded_as(&f.b, REPO), all_but_list(&f.b));
    let first = plan(&repo_name(REPO), &args.0, &f.a, &args.1, &args.2, false);
    for _ in 0..3 {
        assert_eq!(
            plan(&repo_name(REPO), &args.0, &f.a, &args.1, &args.2, false),
            first
        );
    }
}

// ---------------------------------------------------------------------------
// Every combination
// ---------------------------------------------------------------------------

/// What meta.json holds under the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Local {
    /// `--image`: no meta.json at all.
    ImageMode,
    AbsentAll,
    /// x86_64 lacks the key, the others record the desired push.
    AbsentSome,
    /// Every arch records the desired push.
    Matching,
    /// Every arch records an older push (other digests, other list).
    Older,
    /// Every arch records the desired digests, for another repository.
    OtherRepo,
    /// x86_64 records the older push, the others the desired one.
    Mixed,
}

const LOCALS: [Local; 7] = [
    Local::ImageMode,
    Local::AbsentAll,
    Local::AbsentSome,
    Local::Matching,
    Local::Older,
    Local::OtherRepo,
    Local::Mixed,
];

impl Local {
    fn recorded(self, f: &Fixture) -> Vec<(String, Option<ImageEntry>)> {
        let mut rec = match self {
            Local::ImageMode => return Vec::new(),
            Local::AbsentAll => return nothing_recorded(),
            Local::Older => recorded_as(&f.b, REPO),
            Local::OtherRepo => recorded_as(&f.a, OTHER_REPO),
            Local::AbsentSome | Local::Matching | Local::Mixed => recorded_as(&f.a, REPO),
        };
        match self {
            Local::AbsentSome => rec[0].1 = None,
            Local::Mixed => rec[0].1 = f.b.entry_for("x86_64", &repo_name(REPO), &tags()),
            _ => {}
        }
        rec
    }

    /// Does arch `i` record the desired push?
    fn records_desired(self, i: usize) -> bool {
        match self {
            Local::Matching => true,
            Local::AbsentSome | Local::Mixed => i > 0,
            _ => false,
        }
    }
}

/// What one tag serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TagKind {
    Missing,
    Desired,
    OtherList,
    SingleImage,
}

const TAG_KINDS: [TagKind; 4] = [
    TagKind::Missing,
    TagKind::Desired,
    TagKind::OtherList,
    TagKind::SingleImage,
];

fn tag_state(tag: &str, kind: TagKind, f: &Fixture) -> TagState {
    match kind {
        TagKind::Missing => missing(tag),
        TagKind::Desired => serving(tag, &f.a),
        TagKind::OtherList => serving(tag, &f.b),
        TagKind::SingleImage => single(tag, &f.a),
    }
}

/// Every assignment of a [`TagKind`] to each of the [`TAGS`].
fn tag_combinations() -> Vec<[TagKind; 3]> {
    let n = TAG_KINDS.len();
    (0..n.pow(3))
        .map(|c| {
            [
                TAG_KINDS[c % n],
                TAG_KINDS[c / n % n],
                TAG_KINDS[c / (n * n) % n],
            ]
        })
        .collect()
}

/// What the repository already holds of the desired state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Nothing,
    /// The shared layer, s390x's config, and blobs of the older push.
    SomeBlobs,
    AllButList,
    All,
}

const HELD: [Held; 4] = [Held::Nothing, Held::SomeBlobs, Held::AllButList, Held::All];

fn presence(held: Held, f: &Fixture) -> Presence {
    match held {
        Held::Nothing => Presence::default(),
        Held::SomeBlobs => {
            let mut p = all_present(&f.b);
            p.blobs.insert(f.a.images[2].blobs[0].digest.clone());
            p
        }
        Held::AllButList => all_but_list(&f.a),
        Held::All => all_present(&f.a),
    }
}

#[test]
fn every_combination_obeys_the_rules() {
    let mut cases = 0;
    let mut verdicts = [0usize; 3];
    let mut quick_ok = 0;
    for v2s2 in [false, true] {
        let f = fixture(v2s2);
        for local in LOCALS {
            let rec = local.recorded(&f);
            for kinds in tag_combinations() {
                let tag_states: Vec<TagState> = TAGS
                    .iter()
                    .zip(kinds)
                    .map(|(t, k)| tag_state(t, k, &f))
                    .collect();
                for held in HELD {
                    let pres = presence(held, &f);
                    for force in [false, true] {
                        let ctx = format!(
                            "v2s2={v2s2} local={local:?} tags={kinds:?} held={held:?} force={force}"
                        );
                        check_combination(&f, local, &rec, kinds, &tag_states, &pres, force, &ctx);
                        let p = plan(&repo_name(REPO), &tag_states, &f.a, &rec, &pres, force);
                        verdicts[p.verdict as usize] += 1;
                        quick_ok += check_recorded(&repo_name(REPO), &rec, &tag_states, force)
                            .is_ok() as usize;
                        cases += 1;
                    }
                }
            }
        }
    }
    assert_eq!(cases, 2 * LOCALS.len() * 64 * HELD.len() * 2);
    // each verdict and the quick check's success are reached many times
    assert!(verdicts.iter().all(|&n| n > 10), "{verdicts:?}");
    assert!(quick_ok > 10, "{quick_ok}");
}

#[allow(clippy::too_many_arguments)]
fn check_combination(
    f: &Fixture,
    local: Local,
    rec: &[(String, Option<ImageEntry>)],
    kinds: [TagKind; 3],
    tag_states: &[TagState],
    pres: &Presence,
    force: bool,
    ctx: &str,
) {
    let p = plan(&repo_name(REPO), tag_states, &f.a, rec, pres, force);
    let ctx = format!("{ctx}\n{p:#?}");

    let all_tags_desired = kinds.iter().all(|&k| k == TagKind::Desired);
    let every_arch_records = (0..ARCHES.len()).all(|i| local.records_desired(i));
    let stale: Vec<String> = TAGS
        .iter()
        .zip(kinds)
        .filter(|(_, k)| *k != TagKind::Desired)
        .map(|(t, _)| t.to_string())
        .collect();

    // record: every arch with force, else exactly those not recording the push;
    // nothing in --image mode
    let want_record: Vec<String> = match local {
        Local::ImageMode => Vec::new(),
        _ => ARCHES
            .iter()
            .enumerate()
            .filter(|&(i, _)| force || !local.records_desired(i))
            .map(|(_, a)| a.to_string())
            .collect(),
    };
    assert_eq!(p.record, want_record, "{ctx}");

    // the verdict
    let up_to_date =
        !force && all_tags_desired && (local == Local::ImageMode || every_arch_records);
    assert_eq!(p.verdict == Verdict::UpToDate, up_to_date, "{ctx}");
    assert_eq!(
        p.verdict == Verdict::RecordOnly,
        !force && all_tags_desired && !up_to_date,
        "{ctx}"
    );
    assert_eq!(
        p.verdict == Verdict::Push,
        force || !all_tags_desired,
        "{ctx}"
    );
    assert_eq!(p.writes_registry(), p.verdict == Verdict::Push, "{ctx}");
    assert!(!p.reason.is_empty(), "{ctx}");

    if p.verdict != Verdict::Push {
        // nothing to upload, whatever the presence says
        assert!(p.blobs.is_empty(), "{ctx}");
        assert!(p.manifests.is_empty(), "{ctx}");
        assert!(!p.list, "{ctx}");
        assert!(p.tags.is_empty(), "{ctx}");
        if p.verdict == Verdict::RecordOnly {
            assert!(!p.record.is_empty(), "{ctx}");
        }
    } else {
        // tags: exactly the stale ones (in order), or all of them with force
        let want_tags = if force { tags() } else { stale.clone() };
        assert_eq!(p.tags, want_tags, "{ctx}");
        for t in &stale {
            assert!(p.tags.contains(t), "a moved tag is put back\n{ctx}");
            if !force {
                assert!(p.reason.contains(t.as_str()), "{ctx}");
            }
        }

        // blobs: each missing one once, none present, biggest first
        let listed: BTreeSet<&Digest> = p.blobs.iter().map(|b| &b.digest).collect();
        assert_eq!(listed.len(), p.blobs.len(), "a blob listed twice\n{ctx}");
        assert!(
            p.blobs.iter().all(|b| !pres.blobs.contains(&b.digest)),
            "a present blob is uploaded\n{ctx}"
        );
        let want_blobs: Vec<Digest> = unique_blobs(&f.a)
            .into_iter()
            .filter(|d| !pres.blobs.contains(d))
            .collect();
        assert_eq!(digests(&p.blobs), want_blobs, "{ctx}");
        for b in &p.blobs {
            assert!(
                f.a.images.iter().flat_map(|i| &i.blobs).any(|d| d == b),
                "{ctx}"
            );
        }

        // manifests: the missing ones, or all with force, in image order
        let want_manifests: Vec<String> =
            f.a.images
                .iter()
                .filter(|i| force || !pres.manifests.contains(&i.descriptor.digest))
                .map(|i| i.arch.clone())
                .collect();
        assert_eq!(p.manifests, want_manifests, "{ctx}");

        // the list iff force or it is missing
        assert_eq!(
            p.list,
            force || !pres.manifests.contains(&f.a.list_digest),
            "{ctx}"
        );
    }

    // the quick check
    let quick = check_recorded(&repo_name(REPO), rec, tag_states, force);
    let matching_state = match local {
        Local::Matching => Some((&f.a, TagKind::Desired)),
        Local::Older => Some((&f.b, TagKind::OtherList)),
        _ => None,
    };
    let want_ok =
        !force && matching_state.is_some_and(|(_, kind)| kinds.iter().all(|&k| k == kind));
    assert_eq!(quick.is_ok(), want_ok, "{quick:?}\n{ctx}");
    match &quick {
        Ok(_) => {
            // Ok ⇒ the full plan over the recorded state finds nothing to do
            let (d, _) = matching_state.unwrap();
            let p = plan(&repo_name(REPO), tag_states, d, rec, pres, false);
            assert_eq!(p.verdict, Verdict::UpToDate, "{ctx}");
            assert!(p.record.is_empty() && !p.writes_registry(), "{ctx}");
            if local == Local::Matching {
                assert_eq!(
                    plan(&repo_name(REPO), tag_states, &f.a, rec, pres, false).verdict,
                    Verdict::UpToDate,
                    "{ctx}"
                );
            }
        }
        Err(reason) => assert!(!reason.is_empty(), "{ctx}"),
    }
    if force || local == Local::ImageMode {
        assert!(quick.is_err(), "{ctx}");
    }
}

#[test]
fn the_format_is_part_of_the_desired_state() {
    let oci = fixture(false);
    let docker = fixture(true);
    // Tags serving the OCI index: fine for an OCI run, not for a --v2s2 one.
    assert_eq!(check_format(&all_serving(&oci.a), OCI_INDEX), Ok(()));
    let err = check_format(&all_serving(&oci.a), DOCKER_LIST).unwrap_err();
    assert!(err.contains(TAGS[0]) && err.contains(OCI_INDEX), "{err}");
    // And the reverse.
    assert_eq!(check_format(&all_serving(&docker.a), DOCKER_LIST), Ok(()));
    assert!(check_format(&all_serving(&docker.a), OCI_INDEX).is_err());
    // Missing tags and single images are for the other checks to judge.
    let t = vec![missing(TAGS[0]), single(TAGS[1], &oci.a)];
    assert_eq!(check_format(&t, DOCKER_LIST), Ok(()));
}

/// `d`'s list with its entries in reverse order: the same images, other bytes.
fn reserialised(d: &Desired) -> (Digest, Remote) {
    let mut entries: Vec<Descriptor> = d.images.iter().map(|i| i.descriptor.clone()).collect();
    entries.reverse();
    let (mt, bytes) = manifest::build_list(&entries, d.list_media_type == DOCKER_LIST);
    (Digest::of(&bytes), manifest::parse_remote(&bytes, Some(mt)))
}

#[test]
fn an_equivalent_list_at_every_tag_is_adopted() {
    for v2s2 in [false, true] {
        let f = fixture(v2s2);
        let (other, remote) = reserialised(&f.a);
        assert_ne!(other, f.a.list_digest);
        let t: Vec<TagState> = TAGS
            .iter()
            .map(|tag| at(tag, &other, remote.clone()))
            .collect();
        assert_eq!(equivalent_list(&f.a, &t), Some(other.clone()));
        // Adopted, the plan records it and writes nothing to the registry.
        let mut d = f.a.clone();
        d.adopt_list(other.clone(), Vec::new());
        let p = plan(
            &repo_name(REPO),
            &t,
            &d,
            &nothing_recorded(),
            &all_present(&d),
            false,
        );
        assert_eq!(p.verdict, Verdict::RecordOnly, "{p:?}");
        assert_uploads_nothing(&p);
        assert_eq!(
            d.entry_for(ARCHES[0], &repo_name(REPO), &tags())
                .unwrap()
                .manifest_list_digest,
            Some(other)
        );
    }
}

#[test]
fn a_list_that_is_not_equivalent_is_not_adopted() {
    let f = fixture(false);
    let (other, remote) = reserialised(&f.a);
    let every = |r: &Remote| -> Vec<TagState> {
        TAGS.iter().map(|tag| at(tag, &other, r.clone())).collect()
    };
    // pushgate's own list: nothing to adopt
    assert_eq!(equivalent_list(&f.a, &all_serving(&f.a)), None);
    // a tag missing, or on another list
    let mut t = every(&remote);
    t[1] = missing(TAGS[1]);
    assert_eq!(equivalent_list(&f.a, &t), None);
    let mut t = every(&remote);
    t[2] = serving(TAGS[2], &f.a);
    assert_eq!(equivalent_list(&f.a, &t), None);
    let Remote::List {
        media_type,
        entries,
    } = remote.clone()
    else {
        unreachable!()
    };
    // one entry fewer, one more, another platform, the other format
    let fewer = Remote::List {
        media_type: media_type.clone(),
        entries: entries[1..].to_vec(),
    };
    assert_eq!(equivalent_list(&f.a, &every(&fewer)), None);
    let mut more = entries.clone();
    more.push(f.b.images[0].descriptor.clone());
    let more = Remote::List {
        media_type: media_type.clone(),
        entries: more,
    };
    assert_eq!(equivalent_list(&f.a, &every(&more)), None);
    let mut moved = entries.clone();
    moved[0].platform.as_mut().unwrap().variant = Some("v7".into());
    let moved = Remote::List {
        media_type: media_type.clone(),
        entries: moved,
    };
    assert_eq!(equivalent_list(&f.a, &every(&moved)), None);
    let docker = Remote::List {
        media_type: DOCKER_LIST.into(),
        entries,
    };
    assert_eq!(equivalent_list(&f.a, &every(&docker)), None);
    // a single image
    assert_eq!(equivalent_list(&f.a, &every(&Remote::Image)), None);
}

#[test]
fn a_tag_serving_the_desired_list_vouches_for_all_it_names() {
    let d = &fixture(false).a;
    // one tag of two serves the list: everything it names is there
    let tags = vec![serving("stable", d), missing("41")];
    let vouched = Presence::vouched_for(d, &tags, false);
    assert_eq!(vouched, Some(all_present(d)));
    // and the plan then only sets the missing tag
    let p = plan(
        &repo_name(REPO),
        &tags,
        d,
        &recorded_as(d, REPO),
        &vouched.unwrap(),
        false,
    );
    assert!(p.blobs.is_empty(), "{p:?}");
    assert!(p.manifests.is_empty(), "{p:?}");
    assert!(!p.list, "{p:?}");
    assert_eq!(p.tags, strings(&["41"]));
}

#[test]
fn nothing_is_vouched_for_without_the_list_at_a_tag_or_under_force() {
    let f = fixture(false);
    let d = &f.a;
    assert_eq!(Presence::vouched_for(d, &[missing("stable")], false), None);
    // another build's list at the tag says nothing of this one's content
    let tags = vec![serving("stable", &f.b)];
    assert_eq!(Presence::vouched_for(d, &tags, false), None);
    assert_eq!(Presence::vouched_for(d, &all_serving(d), true), None);
}

#[test]
fn missing_evidence_turns_an_up_to_date_plan_into_a_push_of_it_alone() {
    let up = Plan::nothing(Verdict::UpToDate, "all there".into());
    assert_eq!(up.clone().with_evidence_missing(0, false), up);
    let signs = up.clone().with_evidence_missing(3, true);
    assert_eq!(signs.verdict, Verdict::Push);
    assert!(signs.reason.contains("3 signatures"), "{}", signs.reason);
    assert!(!signs.writes_registry(), "nothing else is written");
    let attest = up.with_evidence_missing(0, true);
    assert_eq!(attest.verdict, Verdict::Push);
    assert!(attest.reason.contains("attestation"), "{}", attest.reason);
    let record = Plan::nothing(Verdict::RecordOnly, "meta.json lacks it".into());
    assert_eq!(
        record.clone().with_evidence_missing(3, true),
        record,
        "a plan that writes keeps its verdict"
    );
}
