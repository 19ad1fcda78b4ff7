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
