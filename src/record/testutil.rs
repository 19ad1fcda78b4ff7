//! Fixtures shared by the tests of the meta.json writer.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::meta::ImageEntry;

pub(crate) const D1: &str =
    "sha256:1111111111111111111111111111111111111111111111111111111111111111";
pub(crate) const D2: &str =
    "sha256:2222222222222222222222222222222222222222222222222222222222222222";
pub(crate) const L1: &str =
    "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
pub(crate) const L2: &str =
    "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

pub(crate) fn entry(digest: &str, list: &str, tags: &[&str]) -> ImageEntry {
    ImageEntry {
        image: "quay.io/fedora/fedora-coreos".to_string(),
        digest: Some(digest.parse().unwrap()),
        manifest_list_digest: Some(list.parse().unwrap()),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        additional_images: Vec::new(),
    }
}

/// A meta.json as cosa writes it: 4-space indent, no trailing newline, odd numbers.
pub(crate) const META: &str = r#"{
    "buildid": "40.20261127.3.0",
    "name": "fedora",
    "coreos-assembler.build-timestamp": 1.0e3,
    "big": 123456789012345678901234567890,
    "neg": -0.000001e-7,
    "odd \"1e5\" 7": [
        1E5,
        -0,
        0.10,
        2e-0,
        1e+16
    ],
    "empty": {},
    "list": [],
    "text": "caf\u00e9 \ud83d\ude00 \u007f \"q\" \\ \n",
    "images": {
        "ostree": {
            "path": "fedora-coreos-40-ostree.x86_64.ociarchive",
            "sha256": "abc",
            "size": 12345
        }
    }
}"#;

pub(crate) fn setup(content: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.json");
    fs::write(&path, content).unwrap();
    (dir, path)
}

pub(crate) fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

pub(crate) fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap()
}

pub(crate) fn set_mtime(path: &Path, t: SystemTime) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

pub(crate) fn mtime(path: &Path) -> SystemTime {
    fs::metadata(path).unwrap().modified().unwrap()
}
