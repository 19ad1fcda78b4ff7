//! Fuzz targets for the documents pushgate reads: image manifests and lists (as
//! skopeo, podman and registries write them), cosa's builds.json and meta.json,
//! release configs, policy case files and decision logs. (meta.json's writer has
//! its target beside it, in `record/pyjson.rs`.)

use serde_json::Value;

use super::{Outcome, chain, ensure, run, temp_file};
use crate::digest::Digest;
use crate::manifest::{self, ImageManifest, Remote};
use crate::meta::RecordChange;

const JSON_DICT: &[&[u8]] = &[
    b"\"schemaVersion\":2",
    b"\"schemaVersion\":1",
    b"\"mediaType\":",
    b"\"application/vnd.oci.image.index.v1+json\"",
    b"\"application/vnd.oci.image.manifest.v1+json\"",
    b"\"application/vnd.docker.distribution.manifest.v2+json\"",
    b"\"application/vnd.docker.distribution.manifest.list.v2+json\"",
    b"\"application/vnd.oci.image.layer.v1.tar+gzip\"",
    b"\"application/vnd.oci.image.layer.v1.tar+zstd\"",
    b"\"manifests\":[]",
    b"\"layers\":[]",
    b"\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"}",
    b"\"size\":",
    b"\"digest\":",
    b"\"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"",
    b"\"sha512:00\"",
    b"\"annotations\":{}",
    b"\"artifactType\":",
];

#[test]
fn fuzz_image_manifests() {
    run("image_manifest", JSON_DICT, &|input| {
        let m = match ImageManifest::parse(input, "LABEL") {
            Ok(m) => m,
            Err(e) => {
                let msg = chain(&e);
                ensure(msg.starts_with("LABEL: "), || {
                    format!("the error does not name the manifest: {msg}")
                })?;
                return Ok(Outcome::Refused);
            }
        };
        ensure(m.schema_version == 2, || "schemaVersion is not 2".into())?;
        // --v2s2: the conversion parses back as the same blobs, and converting
        // the conversion changes nothing (its digest is what is planned with).
        let Ok(v2s2) = manifest::to_docker_v2s2(&m, input, "LABEL") else {
            return Ok(Outcome::Accepted);
        };
        let back = ImageManifest::parse(&v2s2, "converted")
            .map_err(|e| format!("the v2s2 form does not parse: {e:#}"))?;
        let digests = |m: &ImageManifest| {
            m.blobs()
                .map(|d| (d.digest.clone(), d.size))
                .collect::<Vec<_>>()
        };
        ensure(digests(&back) == digests(&m), || {
            "the v2s2 form names other blobs".into()
        })?;
        let twice = manifest::to_docker_v2s2(&back, &v2s2, "converted")
            .map_err(|e| format!("the v2s2 form does not convert again: {e:#}"))?;
        ensure(Digest::of(&twice) == Digest::of(&v2s2), || {
            "converting the v2s2 form again changes its digest".into()
        })?;
        Ok(Outcome::Accepted)
    });
}

#[test]
fn fuzz_manifest_lists() {
    run("manifest_list", JSON_DICT, &|input| {
        let content_type = if input.len() % 2 == 0 {
            Some(manifest::DOCKER_LIST)
        } else {
            None
        };
        let Remote::List {
            media_type,
            entries,
        } = manifest::parse_remote(input, content_type)
        else {
            return Ok(Outcome::Refused);
        };
        // The list pushgate would publish over the same entries reads back as
        // the same list: what it plans with is what it then finds.
        let (mt, bytes) = manifest::build_list(&entries, media_type == manifest::DOCKER_LIST);
        ensure(mt == media_type, || format!("{media_type} rebuilt as {mt}"))?;
        let again = manifest::parse_remote(&bytes, None);
        ensure(
            again
                == Remote::List {
                    media_type: media_type.clone(),
                    entries: entries.clone(),
                },
            || format!("the rebuilt list reads back as {again:?}"),
        )?;
        Ok(Outcome::Accepted)
    });
}

#[test]
fn fuzz_builds_json() {
    let dict: &[&[u8]] = &[
        b"\"schema-version\": \"1.0.0\"",
        b"\"schema-version\": \"2.0\"",
        b"\"builds\": []",
        b"\"id\": \"..\"",
        b"\"id\": \"a/b\"",
        b"\"arches\": [\"x86_64\", \"aarch64\"]",
    ];
    run("builds_json", dict, &|input| {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("builds")).expect("builds dir");
        let path = dir.path().join("builds/builds.json");
        std::fs::write(&path, input).expect("builds.json");
        let w = crate::sources::cosa::Workdir::new(dir.path());
        match w.read_builds() {
            Ok(b) => {
                for e in &b.builds {
                    ensure(
                        !e.id.is_empty() && !e.id.contains('/') && !e.id.starts_with('.'),
                        || format!("build id {:?} accepted", e.id),
                    )?;
                }
                // Written back as cosa writes it, it reads the same.
                let doc = serde_json::json!({
                    "schema-version": b.schema_version,
                    "builds": b.builds.iter().map(|e| serde_json::json!({"id": e.id, "arches": e.arches})).collect::<Vec<_>>(),
                });
                std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
                let again = w
                    .read_builds()
                    .map_err(|e| format!("written back, builds.json fails: {e:#}"))?;
                let ids = |b: &crate::sources::cosa::Builds| {
                    b.builds
                        .iter()
                        .map(|e| (e.id.clone(), e.arches.clone()))
                        .collect::<Vec<_>>()
                };
                ensure(ids(&again) == ids(&b), || {
                    "builds changed on a round trip".into()
                })?;
                if let Some(first) = b.builds.first() {
                    let latest = w.resolve_build("latest").map_err(|e| format!("{e:#}"))?;
                    ensure(latest.id == first.id, || {
                        "latest is not the first build".into()
                    })?;
                }
                Ok(Outcome::Accepted)
            }
            Err(e) => {
                let msg = chain(&e);
                ensure(msg.contains(&path.display().to_string()), || {
                    format!("the error does not name builds.json: {msg}")
                })?;
                Ok(Outcome::Refused)
            }
        }
    });
}

#[test]
fn fuzz_cosa_meta_json() {
    let dict: &[&[u8]] = &[
        b"\"images\"",
        b"\"ostree\"",
        b"\"path\": \"../x\"",
        b"\"path\": \"..\"",
        b"\"sha256\"",
        b"\"size\": -1",
        b"\"size\": 1.5",
        b"\"coreos-assembler.delayed-meta-merge\": true",
        b"\"base-oscontainer\"",
        b"\"additional-images\"",
        b"\"manifest-list-digest\"",
        b"\"tags\"",
    ];
    run("cosa_meta", dict, &|input| {
        let (dir, path) = temp_file("meta.json", input);
        let meta = match crate::sources::cosa::ArchMeta::read("x86_64", &path) {
            Ok(m) => m,
            Err(e) => {
                let msg = chain(&e);
                ensure(msg.contains(&path.display().to_string()), || {
                    format!("the error does not name meta.json: {msg}")
                })?;
                return Ok(Outcome::Refused);
            }
        };
        let names: Vec<String> = match meta.json.get("images") {
            Some(Value::Object(m)) => m.keys().cloned().collect(),
            _ => Vec::new(),
        };
        for name in names {
            match meta.artifact(&name) {
                Ok(Some(a)) => ensure(a.path.parent() == Some(dir.path()), || {
                    format!(
                        "artifact {name} lies outside the arch dir: {}",
                        a.path.display()
                    )
                })?,
                Ok(None) => return Err(format!("images.{name} is there but not found")),
                Err(e) => ensure(chain(&e).contains(&format!("images.{name}.")), || {
                    format!("the error does not name images.{name}: {e:#}")
                })?,
            }
        }
        for key in meta.json.keys() {
            if let Ok(Some(entry)) = meta.entry(key) {
                // What pushgate reads back is what it would write.
                let v = serde_json::to_value(&entry).unwrap();
                let again: crate::meta::ImageEntry = serde_json::from_value(v).unwrap();
                ensure(again == entry, || {
                    format!("entry {key:?} changes on a round trip")
                })?;
            }
        }
        Ok(Outcome::Accepted)
    });
}

#[test]
fn fuzz_meta_merge() {
    let dict: &[&[u8]] = &[
        b"\"base-oscontainer\"",
        b"\"additional-images\"",
        b"\"image\"",
        b"\"digest\"",
        b"\"manifest-list-digest\"",
        b"\"tags\"",
        b"\"quay.io/fedora/fedora-coreos\"",
    ];
    let entry = crate::meta::ImageEntry {
        image: "quay.io/fedora/fedora-coreos".into(),
        digest: Some(Digest::of(b"manifest")),
        manifest_list_digest: Some(Digest::of(b"list")),
        tags: vec!["stable".into(), "41.20261127.1.0".into()],
        additional_images: Vec::new(),
    };
    run("meta_merge", dict, &|input| {
        let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(input) else {
            return Ok(Outcome::Refused);
        };
        let before = map.clone();
        let key = "base-oscontainer";
        match crate::meta::merge_entry(&mut map, key, &entry, false) {
            Ok(change) => {
                for (k, v) in &before {
                    if k != key {
                        ensure(map.get(k) == Some(v), || format!("merging changed {k:?}"))?;
                    }
                }
                // The push is the entry itself or its last additional image.
                let top = &map[key];
                let newest = match top.get("additional-images") {
                    Some(Value::Array(items)) if change == RecordChange::Appended => {
                        items.last().unwrap_or(top)
                    }
                    _ => top,
                };
                let recorded: crate::meta::ImageEntry = serde_json::from_value(newest.clone())
                    .map_err(|e| format!("after a {change:?}, the push does not read: {e}"))?;
                ensure(recorded.covers(&entry), || {
                    format!("after a {change:?}, {key:?} does not cover the push")
                })?;
                let second = crate::meta::merge_entry(&mut map, key, &entry, false);
                ensure(second == Ok(RecordChange::Unchanged), || {
                    format!("merging the same push twice: {second:?}")
                })?;
                Ok(Outcome::Accepted)
            }
            Err(e) => {
                ensure(map == before, || {
                    "a refused merge changed the document".into()
                })?;
                ensure(!e.is_empty(), || "an empty error".into())?;
                Ok(Outcome::Refused)
            }
        }
    });
}

#[test]
fn fuzz_release_toml() {
    let dict: &[&[u8]] = &[
        b"[[container]]\n",
        b"name = \"a\"\n",
        b"tags = []\n",
        b"tags = [\"{build}\"]\n",
        b"policy = \"oci://quay.io/a/b:t\"\n",
        b"policy = \"oci://x\"\n",
        b"[container.settings]\n",
        b"v2s2 = true\n",
        b"workdir = \"/\"\n",
        b"artifact = \"ostree\"\n",
        b"key = \"k\"\n",
        b"images = [\"docker://r.io/a@sha256:0000000000000000000000000000000000000000000000000000000000000000\"]\n",
        b"images = [\"oci:dir\", \"ftp://x\"]\n",
        b"[trust-keys]\n",
        b"build = \"keys/build.pub\"\n",
        b"require-signed-policies = true\n",
        b"total-jobs = 0\n",
        b"total-jobs = 8\n",
        b"total-jobs = 100000\n",
        b"'''",
        b"\"\"\"",
    ];
    run("release_toml", dict, &|input| {
        let (dir, path) = temp_file("release.toml", input);
        match crate::release::ReleaseConfig::read(&path) {
            Ok(cfg) => {
                ensure(!cfg.containers.is_empty(), || {
                    "no containers accepted".into()
                })?;
                let mut names = std::collections::BTreeSet::new();
                for c in &cfg.containers {
                    ensure(names.insert(&c.name), || format!("{:?} twice", c.name))?;
                    ensure(!c.tags.is_empty(), || format!("{:?} without tags", c.name))?;
                    ensure(c.policy.is_some() == c.policy_source.is_some(), || {
                        format!("{:?}: policy not parsed", c.name)
                    })?;
                    // Its images, or a cosa artifact and its meta.json key: not both.
                    let artifact = c.artifact.is_some() && c.key.is_some();
                    ensure(artifact == c.images.is_empty(), || {
                        format!("{:?}: neither or both of images and artifact", c.name)
                    })?;
                    for i in &c.images {
                        ensure(crate::sources::parse_origin(i).is_ok(), || {
                            format!("{:?}: image {i:?} accepted unparsed", c.name)
                        })?;
                    }
                }
                ensure(
                    cfg.workdir.starts_with(dir.path()) || cfg.workdir.is_absolute(),
                    || "the workdir is not relative to the config".into(),
                )?;
                if let Some(n) = cfg.total_jobs {
                    ensure((1..=crate::release::MAX_TOTAL_JOBS).contains(&n), || {
                        format!("total-jobs = {n} accepted")
                    })?;
                }
                for (name, file) in cfg.trust_keys() {
                    ensure(file.starts_with(dir.path()) || file.is_absolute(), || {
                        format!("trust key {name:?} is not relative to the config")
                    })?;
                }
                Ok(Outcome::Accepted)
            }
            Err(e) => {
                let msg = chain(&e);
                ensure(msg.contains(&path.display().to_string()), || {
                    format!("the error does not name the config: {msg}")
                })?;
                Ok(Outcome::Refused)
            }
        }
    });
}

#[test]
fn fuzz_policy_cases() {
    let dict: &[&[u8]] = &[
        b"\"facts\"",
        b"\"expect\"",
        b"\"decision\": \"push\"",
        b"\"decision\": \"skip\"",
        b"\"reason\": \"(\"",
        b"\"reason\": \"a{99999}\"",
        b"\"settings\": []",
        b"\"description\"",
    ];
    let path = std::path::Path::new("cases/CASE.json");
    run("policy_case", dict, &|input| {
        let Ok(text) = std::str::from_utf8(input) else {
            return Ok(Outcome::Refused);
        };
        match crate::cases::parse_case(path, text) {
            Ok(loaded) => {
                let v = serde_json::to_string(&loaded.case).unwrap();
                let again = crate::cases::parse_case(path, &v)
                    .map_err(|e| format!("written back, the case fails: {e:#}"))?;
                let v2 = serde_json::to_string(&again.case).unwrap();
                ensure(v == v2, || format!("{v} reads back as {v2}"))?;
                Ok(Outcome::Accepted)
            }
            Err(e) => {
                let msg = chain(&e);
                ensure(msg.starts_with("case file cases/CASE.json: "), || {
                    format!("the error does not name the case file: {msg}")
                })?;
                Ok(Outcome::Refused)
            }
        }
    });
}

#[test]
fn fuzz_decision_logs() {
    let dict: &[&[u8]] = &[
        b"\n",
        b"\"verdict\": \"allow\"",
        b"\"policy\"",
        b"\"facts_sha256\"",
        b"\"attestation\"",
        b"\"outcome\": \"pushed\"",
        b"\"dry_run\": false",
    ];
    run("decision_log", dict, &|input| {
        let (_dir, path) = temp_file("decisions.jsonl", input);
        match crate::decision_log::read(&path) {
            Ok(entries) => {
                let mut text = String::new();
                for e in &entries {
                    text.push_str(&serde_json::to_string(e).unwrap());
                    text.push('\n');
                }
                std::fs::write(&path, &text).unwrap();
                let again = crate::decision_log::read(&path)
                    .map_err(|e| format!("written back, the log fails: {e:#}"))?;
                let mut text2 = String::new();
                for e in &again {
                    text2.push_str(&serde_json::to_string(e).unwrap());
                    text2.push('\n');
                }
                ensure(text == text2, || "the log changes on a round trip".into())?;
                let _ = crate::decision_log::replay_cases(&entries);
                Ok(Outcome::Accepted)
            }
            Err(e) => {
                let msg = chain(&e);
                ensure(msg.contains(&path.display().to_string()), || {
                    format!("the error does not name the log: {msg}")
                })?;
                Ok(Outcome::Refused)
            }
        }
    });
}
