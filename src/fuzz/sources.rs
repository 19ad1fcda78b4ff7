//! Fuzz target for the OCI archive index (tar headers of an `oci-archive:`):
//! mutated archives must be refused with an error naming the file, never
//! panic, never place a blob outside the file, and every small blob read
//! must match its digest.

use super::{Outcome, chain, ensure, run, temp_file};
use crate::digest::Digest;
use crate::manifest::ImageManifest;
use crate::sources::archive::{MAX_JSON_BLOB, OciLayout};

/// The input with every ustar header's checksum made right again, so that
/// mutations of sizes, names and types reach the indexer instead of stopping
/// at the tar crate's checksum test.
fn with_checksums(input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    let mut at = 0;
    while at + 512 <= v.len() {
        let block = &mut v[at..at + 512];
        if &block[257..262] == b"ustar" {
            block[148..156].fill(b' ');
            let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
            let field = format!("{sum:06o}\0 ");
            block[148..156].copy_from_slice(field.as_bytes());
        }
        at += 512;
    }
    v
}

fn check_archive(input: &[u8]) -> Result<Outcome, String> {
    let (_dir, path) = temp_file("image.ociarchive", input);
    let len = input.len() as u64;
    let layout = match OciLayout::index_archive(&path, None) {
        Ok(l) => l,
        Err(e) => {
            let msg = chain(&e);
            ensure(msg.contains(&path.display().to_string()), || {
                format!("the error does not name the archive: {msg}")
            })?;
            return Ok(Outcome::Refused);
        }
    };
    let Ok(desc) = layout.manifest_descriptor() else {
        return Ok(Outcome::Accepted);
    };
    let Ok(raw) = layout.read_blob(&desc) else {
        return Ok(Outcome::Accepted);
    };
    ensure(Digest::of(&raw) == desc.digest, || {
        "a manifest read that does not match its digest".into()
    })?;
    ensure(
        raw.len() as u64 == desc.size && desc.size <= MAX_JSON_BLOB,
        || {
            format!(
                "a manifest of {} bytes read for size {}",
                raw.len(),
                desc.size
            )
        },
    )?;
    let Ok(m) = ImageManifest::parse(&raw, "manifest") else {
        return Ok(Outcome::Accepted);
    };
    for blob in m.blobs() {
        if let Ok(r) = layout.blob_range(&blob.digest, blob.size) {
            ensure(r.offset.saturating_add(r.len) <= len, || {
                format!(
                    "blob {} at {}+{} in a {len}-byte file",
                    blob.digest, r.offset, r.len
                )
            })?;
            ensure(r.len == blob.size, || "a blob range of another size".into())?;
        }
    }
    if let Ok(config) = layout.read_blob(&m.config) {
        ensure(Digest::of(&config) == m.config.digest, || {
            "a config read that does not match its digest".into()
        })?;
    }
    Ok(Outcome::Accepted)
}

#[test]
fn fuzz_oci_archives() {
    let dict: &[&[u8]] = &[
        b"index.json",
        b"blobs/sha256/",
        b"./",
        b"././@LongLink",
        b"ustar\0",
        b"ustar  \0",
        b"77777777777",
        b"00000001000",
        b"\x80\0\0\0\0\0\0\0\xff\xff\xff\xff",
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
    ];
    run("oci_archive", dict, &|input| {
        let raw = check_archive(input)?;
        let fixed = check_archive(&with_checksums(input))?;
        Ok(match (raw, fixed) {
            (Outcome::Refused, Outcome::Refused) => Outcome::Refused,
            _ => Outcome::Accepted,
        })
    });
}

#[test]
fn fuzz_image_origins() {
    use crate::sources::{Origin, parse_origin};
    let dict: &[&[u8]] = &[
        b"docker://",
        b"oci-archive:",
        b"oci:",
        b"quay.io/fedora/fedora-coreos:stable",
        b"@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ];
    run("image_origin", dict, &|input| {
        let src = super::text(input);
        match parse_origin(&src) {
            Ok(Origin::Docker(r)) => {
                let again = format!("docker://{r}");
                match parse_origin(&again) {
                    Ok(Origin::Docker(r2)) if r2 == r => Ok(Outcome::Accepted),
                    other => Err(format!("{src:?} reads as {r}, which reads as {other:?}")),
                }
            }
            Ok(_) => Ok(Outcome::Accepted),
            Err(e) => {
                let msg = chain(&e);
                ensure(msg.starts_with(&format!("--image {src}")), || {
                    format!("the error does not name the --image: {msg}")
                })?;
                Ok(Outcome::Refused)
            }
        }
    });
}

#[test]
fn fuzz_policy_references() {
    use crate::policy::remote::{OciRef, PolicySource};
    let dict: &[&[u8]] = &[
        b"oci://",
        b"quay.io/coreos/policies",
        b":default",
        b"@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ];
    run("policy_reference", dict, &|input| {
        let s = super::text(input);
        match PolicySource::parse(&s) {
            Ok(PolicySource::Oci(r)) => {
                let shown = r.to_string();
                let again = OciRef::parse(&shown)
                    .map_err(|e| format!("{s:?} displays as {shown:?}, which fails: {e:#}"))?;
                ensure(again == r, || format!("{s:?} → {shown:?} → {again:?}"))?;
                ensure(r.tag().is_some() || r.digest().is_some(), || {
                    format!("{s:?} names neither a tag nor a digest")
                })?;
                if let Some(d) = r.digest() {
                    let pinned = OciRef::parse(&r.pinned(d))
                        .map_err(|e| format!("{s:?} pinned fails: {e:#}"))?;
                    ensure(pinned.digest() == Some(d), || {
                        "pinning lost the digest".into()
                    })?;
                }
                Ok(Outcome::Accepted)
            }
            Ok(PolicySource::File(p)) => {
                ensure(p.as_os_str() == s.as_str(), || "a file path changed".into())?;
                Ok(Outcome::Accepted)
            }
            Err(e) => {
                let msg = chain(&e);
                ensure(msg.starts_with(&format!("policy reference {s}")), || {
                    format!("the error does not name the reference: {msg}")
                })?;
                Ok(Outcome::Refused)
            }
        }
    });
}

#[test]
fn fuzz_digests() {
    let dict: &[&[u8]] = &[
        b"sha256:",
        b"sha512:",
        b"SHA256:",
        b"e3b0c44298fc1c14",
        b"A",
    ];
    run("digest", dict, &|input| {
        let s = super::text(input);
        match s.parse::<Digest>() {
            Ok(d) => {
                ensure(d.to_string() == s && d.as_str() == s, || {
                    format!("{s:?} shows as {d}")
                })?;
                ensure(
                    d.hex().len() == 64 && Digest::from_hex(d.hex()).is_ok_and(|h| h == d),
                    || format!("{s:?}: hex {:?}", d.hex()),
                )?;
                Ok(Outcome::Accepted)
            }
            Err(e) => {
                ensure(e.0 == s, || format!("the error for {s:?} names {:?}", e.0))?;
                Ok(Outcome::Refused)
            }
        }
    });
}
