//! Recording a push: the only code that writes a cosa `meta.json` or the digest file.
//!
//! Everything here is built so that a SIGKILL at any instant leaves either the old or
//! the new file on disk, never a torn one: new contents go to a temporary file in the
//! same directory, which is given the original's permissions, written, fsynced and then
//! renamed over the original, after which the directory itself is fsynced so the rename
//! survives a power loss too ([`crate::atomic`]).
//!
//! `meta.json` has several writers (cosa commands, other pushgate runs for other keys),
//! so [`record_entry`] serialises with them through cosa's own lock, `.meta.json.lock`
//! beside the file (a link-based, NFS-safe lock compatible with python's `flufl.lock`,
//! see [`lock_meta`]), and re-reads the file under that lock so that the keys other
//! writers own survive. Unknown keys, their order and their exact number spellings are
//! kept; output uses cosa's format (`json.dump(..., indent=4)`), so a file cosa wrote is
//! rewritten byte-for-byte except for the key pushgate changes.

pub mod lock;
mod pyjson;
#[cfg(test)]
mod testutil;

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use crate::atomic::{self, SHARED, remove_dead_writers_temps};
use crate::digest::Digest;
use crate::meta::{ImageEntry, RecordChange, json_type, merge_entry};
use crate::sources::cosa::{DELAYED_MERGE, META_STAMP, pending_path};
use pyjson::{number_spellings, render};

pub use lock::{MetaLock, lock_meta, lock_path_for};

/// Records `entry` under `key` in the meta.json at `meta_path`, as cosa does.
///
/// Under the meta.json lock (so do not call this while holding [`lock_meta`] on the
/// same file), the file is re-read from disk, then:
/// * `key` absent: it is set to `entry` → [`RecordChange::Set`];
/// * `key` present and, unless `force`, it or one of its `additional-images` matches
///   `entry` ([`ImageEntry::matches`]) → [`RecordChange::Unchanged`], file untouched;
/// * otherwise `entry` is appended to the existing entry's `additional-images`, every
///   other field kept → [`RecordChange::Appended`].
///
/// `entry.additional_images` is never written: an entry records one push.
pub fn record_entry(
    meta_path: &Path,
    key: &str,
    entry: &ImageEntry,
    force: bool,
) -> Result<RecordChange> {
    // cosa's lock on meta.json serialises every writer of this arch, also in
    // delayed-merge mode, where the file written is meta.KEY.json beside it.
    let lock = lock_meta(meta_path)?;
    remove_dead_writers_temps(meta_path);
    lock::remove_dead_claims(lock.path());
    let (mut original, mut doc) = read_doc(meta_path)?;
    let mut target = meta_path.to_path_buf();
    if doc.get(DELAYED_MERGE) == Some(&Value::Bool(true)) {
        // Distributed builds: cosa writes meta.KEY.json (the whole document with
        // the new key) and `cosa meta --finalize` merges it later. A pending file
        // from an earlier run is the newest state of this key.
        target = pending_path(meta_path, key);
        remove_dead_writers_temps(&target);
        if target.exists() {
            (original, doc) = read_doc(&target)?;
        }
    }
    let Value::Object(map) = &mut doc else {
        bail!(
            "malformed meta.json at {}: the top level is {}, not an object",
            target.display(),
            json_type(&doc)
        );
    };
    let change = merge_entry(map, key, entry, force)
        .map_err(|e| anyhow!("cannot record {key:?} in {}: {e}", target.display()))?;
    if change != RecordChange::Unchanged {
        // cosa's merge keeps its in-memory copy whole when the stamp on disk is
        // the one it loaded: a write that left the stamp alone would be lost.
        map.insert(META_STAMP.to_string(), Value::Number(now_ns().into()));
        // Valid JSON text (it parsed), so valid UTF-8.
        let text = std::str::from_utf8(&original).unwrap_or_default();
        let bytes = render(&doc, original.ends_with(b"\n"), &number_spellings(text))
            .with_context(|| format!("serializing {}", target.display()))?;
        atomic::write(&target, &bytes, SHARED)
            .with_context(|| format!("writing {}", target.display()))?;
    }
    Ok(change)
}

/// How long [`tidy`] waits for a lock someone alive holds before it leaves it be.
const TIDY_WAIT: Duration = Duration::from_millis(200);

/// Clears what a writer killed in its record stage left beside `meta_path`, for an
/// arch a run does not record (up to date, or recorded before): a SIGKILL between a
/// meta.json's rename and its unlock leaves cosa's lock, which every rerun would
/// leave too (none records that arch again) and cosa would wait out (it cannot tell
/// that the holder died); a kill while letting the lock go leaves its claim; a kill
/// mid-write leaves a temp file. Done under the lock, taken without waiting for a
/// live holder (a provably dead holder's lock is broken at once, see [`lock_meta`]);
/// only the claims of provably dead processes are removed. When there is neither a
/// lock, nor a claim, nor a temp file, as after every run that ended, nothing is done
/// at all: an up-to-date run writes nothing.
pub fn tidy(meta_path: &Path) {
    let lock_path = lock_path_for(meta_path);
    if fs::symlink_metadata(&lock_path).is_err()
        && lock::claims_beside(&lock_path).is_empty()
        && atomic::temps_of(meta_path).is_empty()
    {
        return;
    }
    if let Ok(lock) = lock::lock_meta_with(meta_path, lock::DEFAULT_LOCK_LIFETIME, TIDY_WAIT) {
        remove_dead_writers_temps(meta_path);
        lock::remove_dead_claims(lock.path());
    }
}

/// The bytes of the meta.json document at `path`, and the document.
fn read_doc(path: &Path) -> Result<(Vec<u8>, Value)> {
    let original =
        fs::read(path).with_context(|| format!("reading meta.json at {}", path.display()))?;
    let doc = serde_json::from_slice(&original)
        .map_err(|e| anyhow!("malformed meta.json at {}: {e}", path.display()))?;
    Ok((original, doc))
}

/// Nanoseconds since the epoch, as python's `time.time_ns()`.
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Writes the manifest list digest to `path` atomically, as podman's `--digestfile`
/// does: the digest string alone, no trailing newline.
pub fn write_digest_file(path: &Path, digest: &Digest) -> Result<()> {
    atomic::write(path, digest.as_str().as_bytes(), SHARED)
        .with_context(|| format!("writing digest file {}", path.display()))
}

/// Replaces `path` with `value` serialized the way cosa writes meta.json (4-space
/// indent, non-ASCII escaped as `\uXXXX`), plus a newline if `trailing_newline`.
/// Atomic: see the module documentation.
pub fn write_json_atomically(path: &Path, value: &Value, trailing_newline: bool) -> Result<()> {
    let bytes = render(value, trailing_newline, &[])
        .with_context(|| format!("serializing {}", path.display()))?;
    atomic::write(path, &bytes, SHARED).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::testutil::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, SystemTime};

    #[test]
    fn sets_absent_key_keeping_everything_else_byte_for_byte() {
        let (dir, path) = setup(META);
        let e = entry(D1, L1, &["stable", "40.20261127.3.0"]);
        let change = record_entry(&path, "base-oscontainer", &e, false).unwrap();
        assert_eq!(change, RecordChange::Set);
        let stamp = stamp_of(&path);
        let expected = format!(
            "{},\n    \"base-oscontainer\": {{\n        \"image\": \"quay.io/fedora/fedora-coreos\",\n        \"digest\": \"{D1}\",\n        \"manifest-list-digest\": \"{L1}\",\n        \"tags\": [\n            \"stable\",\n            \"40.20261127.3.0\"\n        ]\n    }},\n    \"coreos-assembler.meta-stamp\": {stamp}\n}}",
            META.strip_suffix("\n}").unwrap()
        );
        assert_eq!(read(&path), expected);
        assert_eq!(dir_names(dir.path()), ["meta.json"]);
    }

    #[test]
    fn write_json_atomically_without_spellings_keeps_values() {
        let (dir, path) = setup("");
        let doc: Value = serde_json::from_str(META).unwrap();
        write_json_atomically(&path, &doc, true).unwrap();
        let text = read(&path);
        assert!(text.contains("1.0e+3,") && text.contains("1e+5,") && text.ends_with("}\n"));
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), doc);
        assert_eq!(dir_names(dir.path()), ["meta.json"]);
    }

    #[test]
    fn trailing_newline_is_kept_iff_present() {
        let (_dir, path) = setup(&format!("{META}\n"));
        record_entry(&path, "k", &entry(D1, L1, &["a"]), false).unwrap();
        assert!(read(&path).ends_with("}\n"));
        assert!(!read(&path).ends_with("\n\n"));

        let (_dir2, path2) = setup(META);
        record_entry(&path2, "k", &entry(D1, L1, &["a"]), false).unwrap();
        assert!(read(&path2).ends_with('}'));
    }

    #[test]
    fn matching_entry_leaves_bytes_and_mtime_untouched() {
        let (dir, path) = setup(META);
        record_entry(&path, "k", &entry(D1, L1, &["stable", "40"]), false).unwrap();
        let before = fs::read(&path).unwrap();
        let past = SystemTime::now() - Duration::from_secs(3600);
        set_mtime(&path, past);
        // Same tags in another order still match.
        let change = record_entry(&path, "k", &entry(D1, L1, &["40", "stable"]), false).unwrap();
        assert_eq!(change, RecordChange::Unchanged);
        assert_eq!(fs::read(&path).unwrap(), before);
        assert_eq!(mtime(&path), past);
        assert_eq!(dir_names(dir.path()), ["meta.json"]);
    }

    #[test]
    fn force_appends_even_when_matching() {
        let (_dir, path) = setup(META);
        let e = entry(D1, L1, &["stable"]);
        record_entry(&path, "k", &e, false).unwrap();
        assert_eq!(
            record_entry(&path, "k", &e, true).unwrap(),
            RecordChange::Appended
        );
        let doc: Value = serde_json::from_str(&read(&path)).unwrap();
        let k = &doc["k"];
        assert_eq!(k["digest"], D1);
        let extra: Vec<ImageEntry> =
            serde_json::from_value(k["additional-images"].clone()).unwrap();
        assert_eq!(extra, vec![e.clone()]);
        assert_eq!(
            record_entry(&path, "k", &e, true).unwrap(),
            RecordChange::Appended
        );
        let doc: Value = serde_json::from_str(&read(&path)).unwrap();
        assert_eq!(doc["k"]["additional-images"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn non_matching_entry_is_appended_keeping_other_fields() {
        let existing = format!(
            r#"{{
    "a": 1,
    "k": {{
        "image": "quay.io/fedora/fedora-coreos",
        "digest": "{D1}",
        "comment": "kept",
        "tags": [
            "stable"
        ],
        "future-field": [
            1.50
        ]
    }},
    "z": 2
}}"#
        );
        let (_dir, path) = setup(&existing);
        // Differs in list digest (the existing entry has none), then in tags, then digest.
        for e in [
            entry(D1, L1, &["stable"]),
            entry(D1, L2, &["stable", "next"]),
            entry(D2, L2, &["stable"]),
        ] {
            assert_eq!(
                record_entry(&path, "k", &e, false).unwrap(),
                RecordChange::Appended
            );
        }
        let doc: Value = serde_json::from_str(&read(&path)).unwrap();
        let keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["a", "k", "z", META_STAMP]);
        let k = doc["k"].as_object().unwrap();
        let fields: Vec<&String> = k.keys().collect();
        assert_eq!(
            fields,
            [
                "image",
                "digest",
                "comment",
                "tags",
                "future-field",
                "additional-images"
            ]
        );
        assert_eq!(k["comment"], "kept");
        assert!(k.get("manifest-list-digest").is_none());
        assert_eq!(k["additional-images"].as_array().unwrap().len(), 3);
        assert!(read(&path).contains("\"future-field\": [\n            1.50\n        ],"));
    }

    #[test]
    fn match_inside_additional_images_is_unchanged() {
        let (_dir, path) = setup("{}");
        record_entry(&path, "k", &entry(D1, L1, &["a"]), false).unwrap();
        record_entry(&path, "k", &entry(D2, L2, &["b"]), false).unwrap();
        let before = fs::read(&path).unwrap();
        let again = entry(D2, L2, &["b"]);
        assert_eq!(
            record_entry(&path, "k", &again, false).unwrap(),
            RecordChange::Unchanged
        );
        assert_eq!(fs::read(&path).unwrap(), before);
    }

    #[test]
    fn entry_additional_images_are_not_written() {
        let (_dir, path) = setup("{}");
        let mut e = entry(D1, L1, &["a"]);
        e.additional_images.push(entry(D2, L2, &["b"]));
        record_entry(&path, "k", &e, false).unwrap();
        let doc: Value = serde_json::from_str(&read(&path)).unwrap();
        assert!(doc["k"].get("additional-images").is_none());
    }

    #[test]
    fn malformed_json_is_an_error_naming_the_file_and_leaves_it() {
        let bad = "{\"a\": 1,,}";
        let (dir, path) = setup(bad);
        let err = record_entry(&path, "k", &entry(D1, L1, &["a"]), false).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("malformed meta.json at"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert_eq!(read(&path), bad);
        assert_eq!(dir_names(dir.path()), ["meta.json"]);
    }

    #[test]
    fn non_object_top_level_is_an_error() {
        let (dir, path) = setup("[1, 2]");
        let err = record_entry(&path, "k", &entry(D1, L1, &["a"]), false).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("malformed meta.json at"), "{msg}");
        assert!(msg.contains("not an object"), "{msg}");
        assert_eq!(read(&path), "[1, 2]");
        assert_eq!(dir_names(dir.path()), ["meta.json"]);
    }

    #[test]
    fn non_object_existing_entry_is_an_error_naming_file_and_key() {
        for content in [
            r#"{"k": "oops"}"#,
            r#"{"k": {"image": "x", "additional-images": {}}}"#,
        ] {
            let (dir, path) = setup(content);
            let err = record_entry(&path, "k", &entry(D1, L1, &["a"]), false).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains("\"k\""), "{msg}");
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert_eq!(read(&path), content);
            assert_eq!(dir_names(dir.path()), ["meta.json"]);
        }
    }

    #[test]
    fn missing_meta_json_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.json");
        let err = record_entry(&path, "k", &entry(D1, L1, &["a"]), false).unwrap_err();
        assert!(format!("{err:#}").contains("meta.json"));
        assert!(dir_names(dir.path()).is_empty());
    }

    #[test]
    fn permissions_are_kept() {
        let (_dir, path) = setup("{}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        record_entry(&path, "k", &entry(D1, L1, &["a"]), false).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            0o640
        );
    }

    #[test]
    fn failed_write_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        // Renaming a file over a non-empty directory fails.
        let target = dir.path().join("meta.json");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("inside"), "x").unwrap();
        let err = write_json_atomically(&target, &serde_json::json!({"a": 1}), false);
        assert!(err.is_err());
        assert_eq!(dir_names(dir.path()), ["meta.json"]);
        assert!(target.is_dir());
    }

    #[test]
    fn digest_file_is_written_atomically_without_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("digest");
        let d: Digest = L1.parse().unwrap();
        write_digest_file(&path, &d).unwrap();
        assert_eq!(read(&path), L1);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let d2: Digest = L2.parse().unwrap();
        write_digest_file(&path, &d2).unwrap();
        assert_eq!(read(&path), L2);
        assert_eq!(dir_names(dir.path()), ["digest"]);
    }

    #[test]
    fn record_waits_for_the_lock_and_merges_with_disk() {
        let (_dir, path) = setup("{}");
        let held = lock_meta(&path).unwrap();
        let p = path.clone();
        let writer = std::thread::spawn(move || {
            record_entry(&p, "mine", &entry(D1, L1, &["a"]), false).unwrap()
        });
        std::thread::sleep(Duration::from_millis(100));
        // Another writer (holding the lock) adds its key meanwhile.
        fs::write(&path, "{\n    \"theirs\": true\n}").unwrap();
        drop(held);
        assert_eq!(writer.join().unwrap(), RecordChange::Set);
        let doc: Value = serde_json::from_str(&read(&path)).unwrap();
        assert_eq!(doc["theirs"], true);
        assert_eq!(doc["mine"]["digest"], D1);
    }

    #[test]
    fn temp_files_of_a_killed_writer_are_removed_under_the_lock() {
        let (dir, path) = setup("{}");
        fs::write(dir.path().join(".meta.json.abc123.tmp"), "half").unwrap();
        fs::write(dir.path().join(".other.json.abc123.tmp"), "not ours").unwrap();
        record_entry(&path, "k", &entry(D1, D2, &["t"]), false).unwrap();
        assert_eq!(
            dir_names(dir.path()),
            [".other.json.abc123.tmp", "meta.json"]
        );
    }

    #[test]
    fn concurrent_writers_of_different_keys_all_land() {
        let (_dir, path) = setup("{}");
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let p = path.clone();
                std::thread::spawn(move || {
                    record_entry(&p, &format!("k{i}"), &entry(D1, L1, &["a"]), false).unwrap()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), RecordChange::Set);
        }
        let doc: Value = serde_json::from_str(&read(&path)).unwrap();
        // eight keys and the meta-stamp
        assert_eq!(doc.as_object().unwrap().len(), 9);
    }

    fn stamp_of(path: &Path) -> u64 {
        let doc: Value = serde_json::from_str(&read(path)).unwrap();
        doc[META_STAMP].as_u64().expect("an integer meta-stamp")
    }

    /// cosa's `merge_meta(disk, loaded)`: when the stamp on disk is the one it
    /// loaded, its in-memory copy is written whole; otherwise the newer of the
    /// two is merged over the older.
    fn cosa_merge(disk: &Value, loaded: &Value) -> Value {
        let stamp = |v: &Value| v.get(META_STAMP).and_then(Value::as_f64).unwrap_or(0.0);
        if stamp(disk) == stamp(loaded) {
            return loaded.clone();
        }
        let (newer, older) = if stamp(disk) > stamp(loaded) {
            (disk, loaded)
        } else {
            (loaded, disk)
        };
        let mut out = older.as_object().unwrap().clone();
        for (k, v) in newer.as_object().unwrap() {
            out.insert(k.clone(), v.clone());
        }
        Value::Object(out)
    }

    #[test]
    fn every_write_sets_the_meta_stamp_so_a_cosa_writer_merges_instead_of_overwriting() {
        let (_dir, path) = setup("{\n    \"coreos-assembler.meta-stamp\": 1700000000000000000\n}");
        // A cosa process loads meta.json and adds a key of its own in memory.
        let mut cosa: Value = serde_json::from_str(&read(&path)).unwrap();
        cosa["cosa-key"] = Value::Bool(true);
        let before = now_ns();
        record_entry(&path, "k", &entry(D1, L1, &["a"]), false).unwrap();
        let stamp = stamp_of(&path);
        assert!(stamp >= before, "the stamp is the time of the write in ns");
        // Then cosa writes: its merge keeps pushgate's key.
        let disk: Value = serde_json::from_str(&read(&path)).unwrap();
        let merged = cosa_merge(&disk, &cosa);
        assert_eq!(merged["k"]["digest"], D1, "{merged}");
        assert_eq!(merged["cosa-key"], true);
        // An unchanged record leaves the stamp (and the file) alone.
        record_entry(&path, "k", &entry(D1, L1, &["a"]), false).unwrap();
        assert_eq!(stamp_of(&path), stamp);
    }

    #[test]
    fn delayed_merge_writes_meta_key_json_and_leaves_meta_json_alone() {
        let meta =
            "{\n    \"coreos-assembler.delayed-meta-merge\": true,\n    \"buildid\": \"1\"\n}";
        let (dir, path) = setup(meta);
        let e = entry(D1, L1, &["a"]);
        assert_eq!(
            record_entry(&path, "k", &e, false).unwrap(),
            RecordChange::Set
        );
        assert_eq!(read(&path), meta);
        let pending = dir.path().join("meta.k.json");
        let doc: Value = serde_json::from_str(&read(&pending)).unwrap();
        assert_eq!(doc["buildid"], "1", "the whole document, as cosa writes it");
        assert_eq!(doc["k"]["digest"], D1);
        assert!(doc[META_STAMP].as_u64().is_some());
        // The pending file is what a rerun compares with: nothing to do.
        assert_eq!(
            record_entry(&path, "k", &e, false).unwrap(),
            RecordChange::Unchanged
        );
        let m = crate::sources::cosa::ArchMeta::read("x86_64", &path).unwrap();
        assert_eq!(m.entry("k").unwrap(), Some(e));
        assert_eq!(dir_names(dir.path()), ["meta.json", "meta.k.json"]);
    }
}
