//! OCI archives and layout directories read without extracting them: indexing,
//! byte ranges, checksum and size checks.

use std::fs::File;

use pushgate::digest::Digest;
use pushgate::sources::archive::{Expected, OciLayout};
use pushgate_sample::{SampleImage, write_oci_archive, write_oci_layout_dir};

fn image() -> SampleImage {
    SampleImage {
        oci_arch: "amd64".into(),
        variant: None,
        layers: 2,
        layer_size: 1000,
        seed: 7,
    }
}

#[test]
fn an_archive_is_indexed_and_its_blobs_read_back_by_range() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("a.ociarchive");
    let w = write_oci_archive(&path, &image()).unwrap();
    let layout = OciLayout::open_archive(
        &path,
        Some(Expected {
            sha256: &w.file_sha256,
            size: Some(w.file_size),
        }),
    )
    .unwrap();
    let desc = layout.manifest_descriptor().unwrap();
    assert_eq!(desc.digest, w.manifest_digest);
    let manifest = layout.read_blob(&desc).unwrap();
    assert_eq!(Digest::of(&manifest), w.manifest_digest);
    // a layer's range, read straight from the file, has the layer's digest
    let m = pushgate::manifest::ImageManifest::parse(&manifest, "t").unwrap();
    let layer = &m.layers[0];
    let r = layout.blob_range(&layer.digest, layer.size).unwrap();
    let bytes = std::fs::read(&r.file).unwrap();
    let slice = &bytes[r.offset as usize..(r.offset + r.len) as usize];
    assert_eq!(Digest::of(slice), layer.digest);
    // the same image as a layout directory gives the same manifest
    let dir = d.path().join("dir");
    write_oci_layout_dir(&dir, &image()).unwrap();
    let l2 = OciLayout::open_dir(&dir).unwrap();
    assert_eq!(l2.manifest_descriptor().unwrap().digest, w.manifest_digest);
}

#[test]
fn a_checksum_or_size_mismatch_names_the_archive() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("a.ociarchive");
    let w = write_oci_archive(&path, &image()).unwrap();
    let other = Digest::of(b"other");
    let e = OciLayout::open_archive(
        &path,
        Some(Expected {
            sha256: &other,
            size: None,
        }),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("a.ociarchive") && e.contains("sha256"), "{e}");
    let e = OciLayout::open_archive(
        &path,
        Some(Expected {
            sha256: &w.file_sha256,
            size: Some(w.file_size + 1),
        }),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("a.ociarchive") && e.contains("bytes"), "{e}");
}

#[test]
fn a_wrong_blob_size_and_a_missing_blob_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("a.ociarchive");
    write_oci_archive(&path, &image()).unwrap();
    let layout = OciLayout::open_archive(&path, None).unwrap();
    let desc = layout.manifest_descriptor().unwrap();
    assert!(layout.blob_range(&desc.digest, desc.size + 1).is_err());
    let e = layout
        .blob_range(&Digest::of(b"absent"), 6)
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing"), "{e}");
}

#[test]
fn a_tar_without_index_json_is_not_an_oci_archive() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("x.tar");
    let mut b = tar::Builder::new(File::create(&path).unwrap());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "./oci-layout", &b"{}"[..]).unwrap();
    b.finish().unwrap();
    drop(b);
    let e = OciLayout::open_archive(&path, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("x.tar") && e.contains("index.json"), "{e}");
}

#[test]
fn indexing_reads_headers_only_and_verifying_reads_everything() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("a.ociarchive");
    let w = write_oci_archive(&path, &image()).unwrap();
    // flip bytes inside the last layer: headers, index.json and manifest stay intact
    let probe = OciLayout::open_archive(&path, None).unwrap();
    let last = w.layer_digests.last().unwrap();
    let r = probe.blob_range(last, 1000 + 1024).or_else(|_| {
        let m = probe
            .read_blob(&probe.manifest_descriptor().unwrap())
            .unwrap();
        let m = pushgate::manifest::ImageManifest::parse(&m, "t").unwrap();
        let l = m.layers.last().unwrap();
        probe.blob_range(&l.digest, l.size)
    });
    let r = r.unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(r.offset + r.len / 2) as usize] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let expected = Expected {
        sha256: &w.file_sha256,
        size: Some(w.file_size),
    };
    let layout = OciLayout::index_archive(&path, Some(expected.clone())).unwrap();
    assert_eq!(
        layout.manifest_descriptor().unwrap().digest,
        w.manifest_digest
    );
    assert!(layout.has_checksum());
    let e = layout.verify().unwrap_err().to_string();
    assert!(e.contains("a.ociarchive") && e.contains("sha256"), "{e}");
    assert!(OciLayout::open_archive(&path, Some(expected)).is_err());
}
