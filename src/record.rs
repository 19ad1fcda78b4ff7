//! Recording a push: the only code that writes a cosa `meta.json` or the digest file.
//!
//! Everything here is built so that a SIGKILL at any instant leaves either the old or
//! the new file on disk, never a torn one: new contents go to a temporary file in the
//! same directory, which is written, fsynced, given the original's permissions and then
//! renamed over the original, after which the directory itself is fsynced so the rename
//! survives a power loss too.
//!
//! `meta.json` has several writers (cosa commands, other pushgate runs for other keys),
//! so [`record_entry`] serialises with them through cosa's own lock, `.meta.json.lock`
//! beside the file (a link-based, NFS-safe lock compatible with python's `flufl.lock`,
//! see [`lock_meta`]), and re-reads the file under that lock so that the keys other
//! writers own survive. Unknown keys, their order and their exact number spellings are
//! kept; output uses cosa's format (`json.dump(..., indent=4)`), so a file cosa wrote is
//! rewritten byte-for-byte except for the key pushgate changes.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, RandomState};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::map::Entry;
use serde_json::ser::{Formatter, PrettyFormatter};
use serde_json::{Map, Value};

use crate::digest::Digest;

/// How long a lock we take stays valid before others may break it (flufl's default).
pub const DEFAULT_LOCK_LIFETIME: Duration = Duration::from_secs(60);
/// How long [`lock_meta`] waits for a lock held by someone else.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// How far past its expiry a lock must be before it is broken, to absorb clock skew
/// between NFS clients (flufl.lock's `CLOCK_SLOP`).
const CLOCK_SLOP: Duration = Duration::from_secs(10);

/// Permissions of a file we create from scratch (what cosa and podman use).
const NEW_FILE_MODE: u32 = 0o644;

/// One meta.json image entry (cosa's `primary-image` schema).
///
/// Unknown fields (such as `comment`) are ignored when reading; [`record_entry`] keeps
/// them on disk because it edits the JSON document, not this struct.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageEntry {
    /// The repository, e.g. `quay.io/fedora/fedora-coreos`.
    pub image: String,
    /// That arch's own manifest digest (never the list's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// The digest of the manifest list / index holding that manifest.
    #[serde(
        rename = "manifest-list-digest",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub manifest_list_digest: Option<Digest>,
    /// Every tag pushed.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Later pushes under the same key (forced re-pushes, or pushes of other content).
    #[serde(
        rename = "additional-images",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub additional_images: Vec<ImageEntry>,
}

impl ImageEntry {
    /// Whether `self` already records the push `want`: same image, digest and list
    /// digest, and every tag of `want` among its tags. `additional-images` are not
    /// looked at.
    pub fn covers(&self, want: &ImageEntry) -> bool {
        let tags: BTreeSet<&str> = self.tags.iter().map(String::as_str).collect();
        self.image == want.image
            && self.digest == want.digest
            && self.manifest_list_digest == want.manifest_list_digest
            && want.tags.iter().all(|t| tags.contains(t.as_str()))
    }
}

/// The fields of an on-disk entry that matching looks at. Reading only these means a
/// malformed nested `additional-images` item cannot hide a match of its parent.
#[derive(Deserialize)]
struct EntryHead {
    image: String,
    #[serde(default)]
    digest: Option<Digest>,
    #[serde(rename = "manifest-list-digest", default)]
    manifest_list_digest: Option<Digest>,
    #[serde(default)]
    tags: Vec<String>,
}

/// Whether the on-disk entry `value` already records `entry`. An entry that does not
/// parse (say, a digest algorithm pushgate does not write) records nothing.
fn value_matches(value: &Value, entry: &ImageEntry) -> bool {
    match EntryHead::deserialize(value) {
        Ok(head) => ImageEntry {
            image: head.image,
            digest: head.digest,
            manifest_list_digest: head.manifest_list_digest,
            tags: head.tags,
            additional_images: Vec::new(),
        }
        .covers(entry),
        Err(_) => false,
    }
}

/// What [`record_entry`] did to meta.json.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordChange {
    /// The push was already recorded; the file was not rewritten.
    Unchanged,
    /// The key was absent and now holds the entry.
    Set,
    /// The key existed; the entry was appended to its `additional-images`.
    Appended,
}

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
    let _lock = lock_meta(meta_path)?;
    remove_dead_writers_temps(meta_path);
    let original = fs::read(meta_path)
        .with_context(|| format!("reading meta.json at {}", meta_path.display()))?;
    let mut doc: Value = serde_json::from_slice(&original)
        .map_err(|e| anyhow!("malformed meta.json at {}: {e}", meta_path.display()))?;
    let Value::Object(map) = &mut doc else {
        bail!(
            "malformed meta.json at {}: the top level is {}, not an object",
            meta_path.display(),
            json_type(&doc)
        );
    };
    let change = merge_entry(map, key, entry, force)
        .map_err(|e| anyhow!("cannot record {key:?} in {}: {e}", meta_path.display()))?;
    if change != RecordChange::Unchanged {
        // Valid JSON text (it parsed), so valid UTF-8.
        let text = std::str::from_utf8(&original).unwrap_or_default();
        let bytes = render(&doc, original.ends_with(b"\n"), &number_spellings(text))
            .with_context(|| format!("serializing {}", meta_path.display()))?;
        write_atomically(meta_path, &bytes)
            .with_context(|| format!("writing {}", meta_path.display()))?;
    }
    Ok(change)
}

/// The merge of [`record_entry`] on a parsed document; errors are about `key`.
fn merge_entry(
    map: &mut Map<String, Value>,
    key: &str,
    entry: &ImageEntry,
    force: bool,
) -> std::result::Result<RecordChange, String> {
    let single = ImageEntry {
        additional_images: Vec::new(),
        ..entry.clone()
    };
    let new = serde_json::to_value(&single).map_err(|e| format!("serializing entry: {e}"))?;
    let existing = match map.get_mut(key) {
        None => {
            map.insert(key.to_string(), new);
            return Ok(RecordChange::Set);
        }
        Some(Value::Object(existing)) => existing,
        Some(other) => {
            return Err(format!(
                "the existing {key:?} is {}, not an object",
                json_type(other)
            ));
        }
    };
    if !force {
        let top = value_matches(&Value::Object(existing.clone()), entry);
        let nested = match existing.get("additional-images") {
            Some(Value::Array(items)) => items.iter().any(|v| value_matches(v, entry)),
            _ => false,
        };
        if top || nested {
            return Ok(RecordChange::Unchanged);
        }
    }
    match existing.entry("additional-images") {
        Entry::Vacant(slot) => {
            slot.insert(Value::Array(vec![new]));
        }
        Entry::Occupied(slot) => match slot.into_mut() {
            Value::Array(items) => items.push(new),
            other => {
                return Err(format!(
                    "its \"additional-images\" is {}, not an array",
                    json_type(other)
                ));
            }
        },
    }
    Ok(RecordChange::Appended)
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Writes the manifest list digest to `path` atomically, as podman's `--digestfile`
/// does: the digest string alone, no trailing newline.
pub fn write_digest_file(path: &Path, digest: &Digest) -> Result<()> {
    write_atomically(path, digest.as_str().as_bytes())
        .with_context(|| format!("writing digest file {}", path.display()))
}

/// Replaces `path` with `value` serialized the way cosa writes meta.json (4-space
/// indent, non-ASCII escaped as `\uXXXX`), plus a newline if `trailing_newline`.
/// Atomic: see the module documentation.
pub fn write_json_atomically(path: &Path, value: &Value, trailing_newline: bool) -> Result<()> {
    let bytes = render(value, trailing_newline, &[])
        .with_context(|| format!("serializing {}", path.display()))?;
    write_atomically(path, &bytes).with_context(|| format!("writing {}", path.display()))
}

/// `value` as cosa writes it; `spellings` are the number literals of the document it
/// was parsed from, in order (see [`CosaFormatter`]).
fn render(
    value: &Value,
    trailing_newline: bool,
    spellings: &[&str],
) -> serde_json::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut bytes, CosaFormatter::new(spellings));
    value.serialize(&mut ser)?;
    if trailing_newline {
        bytes.push(b'\n');
    }
    Ok(bytes)
}

/// The number literals of a valid JSON text, in order.
fn number_spellings(text: &str) -> Vec<&str> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                {
                    i += 1;
                }
                out.push(&text[start..i]);
            }
            _ => i += 1,
        }
    }
    out
}

/// The spelling serde_json (with `arbitrary_precision`) gives a number literal after
/// parsing: everything is kept except the exponent, which becomes `e` with a sign.
fn normalized_number(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len() + 1);
    let mut chars = literal.chars().peekable();
    while let Some(c) = chars.next() {
        if c == 'e' || c == 'E' {
            out.push('e');
            if chars.peek().is_some_and(char::is_ascii_digit) {
                out.push('+');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Temp file in the same directory, write, fsync, original permissions, rename, fsync
/// the directory. On any failure the temp file is removed and `path` is untouched.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mode = match fs::metadata(path) {
        Ok(meta) => meta.permissions().mode(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => NEW_FILE_MODE,
        Err(e) => return Err(e),
    };
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    // On failure the PersistError holds the temp file; dropping it removes the file.
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()
}

/// Removes the temp files a killed writer left beside `path`. Writers create them
/// only while holding the lock, so under the lock any that exist are dead ones.
/// Best effort: a leftover temp file is litter, never a hazard.
fn remove_dead_writers_temps(path: &Path) {
    let (Some(name), Ok(entries)) = (path.file_name(), fs::read_dir(parent_dir(path))) else {
        return;
    };
    let mut prefix = b".".to_vec();
    prefix.extend_from_slice(name.as_bytes());
    prefix.push(b'.');
    for e in entries.flatten() {
        let n = e.file_name();
        let n = n.as_bytes();
        if n.starts_with(&prefix) && n.ends_with(b".tmp") && n.len() > prefix.len() + 4 {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Serializes like python's `json.dump(obj, f, indent=4)`: serde_json's pretty layout
/// with a 4-space indent (python ≥ 3.4 uses the same separators), and `ensure_ascii`:
/// every character outside printable ASCII escaped as `\uXXXX` (UTF-16, lowercase hex).
/// Control characters, `"` and `\` are escaped by serde_json itself exactly as python
/// does.
///
/// Numbers keep their text thanks to `arbitrary_precision`, except that serde_json
/// normalizes exponents (`1.0e3` → `1.0e+3`, `1E5` → `1e+5`). Python never writes those
/// forms, but to keep a file's other bytes intact whatever wrote it, the formatter is
/// given the original literals in document order and writes the next one back when it
/// is a spelling of the number being written; otherwise the normalized text is written,
/// so a misalignment can only cost fidelity, never change a value.
struct CosaFormatter<'a> {
    pretty: PrettyFormatter<'static>,
    spellings: &'a [&'a str],
    next: usize,
}

impl<'a> CosaFormatter<'a> {
    fn new(spellings: &'a [&'a str]) -> Self {
        CosaFormatter {
            pretty: PrettyFormatter::with_indent(b"    "),
            spellings,
            next: 0,
        }
    }
}

impl Formatter for CosaFormatter<'_> {
    fn write_number_str<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        value: &str,
    ) -> io::Result<()> {
        if let Some(original) = self.spellings.get(self.next)
            && normalized_number(original) == value
        {
            self.next += 1;
            return w.write_all(original.as_bytes());
        }
        w.write_all(value.as_bytes())
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut rest = fragment;
        while let Some(at) = rest.find(|c: char| !(' '..='~').contains(&c)) {
            writer.write_all(&rest.as_bytes()[..at])?;
            let c = rest[at..]
                .chars()
                .next()
                .expect("found a char at this index");
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            rest = &rest[at + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }

    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.begin_array(w)
    }
    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_array(w)
    }
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.pretty.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_array_value(w)
    }
    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.begin_object(w)
    }
    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_object(w)
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.pretty.begin_object_key(w, first)
    }
    fn end_object_key<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_object_key(w)
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_object_value(w)
    }
}

// ---------------------------------------------------------------------------------
// The meta.json lock
// ---------------------------------------------------------------------------------

/// A held meta.json lock; released (lock and claim file removed) on drop.
#[derive(Debug)]
pub struct MetaLock {
    lock_path: PathBuf,
    claim_path: PathBuf,
}

impl MetaLock {
    /// The lock file, `<dir>/.<name>.lock`.
    pub fn path(&self) -> &Path {
        &self.lock_path
    }
}

impl Drop for MetaLock {
    fn drop(&mut self) {
        // Remove the lock only while it is still ours: if it expired and someone broke
        // it and took it, the file at lock_path is theirs.
        if same_file(&self.lock_path, &self.claim_path) {
            let _ = fs::remove_file(&self.lock_path);
        }
        let _ = fs::remove_file(&self.claim_path);
    }
}

/// The lock file guarding `meta_path`: `<dir>/.<filename>.lock`, as cosa names it.
pub fn lock_path_for(meta_path: &Path) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(meta_path.file_name().unwrap_or(meta_path.as_os_str()));
    name.push(".lock");
    parent_dir(meta_path).join(name)
}

/// Takes cosa's lock on `meta_path` (waiting up to [`DEFAULT_LOCK_TIMEOUT`]; the lock
/// expires after [`DEFAULT_LOCK_LIFETIME`]).
///
/// The scheme is `flufl.lock`'s, so cosa and pushgate exclude each other, also over
/// NFS: a unique claim file `<lock>|<hostname>|<pid>|<random>` (holding its own path)
/// is hard-linked to the lock path; the link succeeding, or the claim's link count
/// being 2 after an ambiguous error, means we hold the lock. The lock's mtime is its
/// expiry time; a lock whose mtime has passed is broken (its holder died) and retried.
pub fn lock_meta(meta_path: &Path) -> Result<MetaLock> {
    lock_meta_with(meta_path, DEFAULT_LOCK_LIFETIME, DEFAULT_LOCK_TIMEOUT)
}

/// [`lock_meta`] with an explicit lock lifetime and wait timeout.
pub(crate) fn lock_meta_with(
    meta_path: &Path,
    lifetime: Duration,
    timeout: Duration,
) -> Result<MetaLock> {
    let lock_path = std::path::absolute(lock_path_for(meta_path))
        .with_context(|| format!("resolving the lock path of {}", meta_path.display()))?;
    let claim_path = claim_path_for(&lock_path);
    let mut claim = ClaimGuard(Some(claim_path.clone()));
    create_claim(&claim_path)
        .with_context(|| format!("creating lock claim file {}", claim_path.display()))?;

    let deadline = Instant::now() + timeout;
    let mut backoff = Duration::from_millis(5);
    loop {
        let attempt = try_lock(&claim_path, &lock_path, lifetime)
            .with_context(|| format!("locking {}", meta_path.display()))?;
        if attempt == Attempt::Acquired {
            claim.0 = None;
            return Ok(MetaLock {
                lock_path,
                claim_path,
            });
        }
        let now = Instant::now();
        if now >= deadline {
            let holder = fs::read(&lock_path)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|_| "unknown".to_string());
            bail!(
                "timed out after {:?} waiting for the lock {} on {} (held by {holder:?}); \
                 if no cosa or pushgate process is working on this build, remove {} and retry",
                timeout,
                lock_path.display(),
                meta_path.display(),
                lock_path.display()
            );
        }
        if attempt == Attempt::Busy {
            std::thread::sleep(backoff.min(deadline - now));
            backoff = (backoff * 2).min(Duration::from_millis(250));
        }
    }
}

/// The outcome of one [`try_lock`].
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Acquired,
    /// A live lock is held by someone else: wait, then retry.
    Busy,
    /// Something changed (a stale lock was broken, our claim was recreated): retry now.
    Again,
}

/// One attempt at linking our claim to the lock.
fn try_lock(claim_path: &Path, lock_path: &Path, lifetime: Duration) -> Result<Attempt> {
    // Stamp the expiry before linking, so the lock never appears without it
    // (a fresh lock with mtime "now" would look expired to a waiter).
    match set_expiry(claim_path, lifetime) {
        Ok(()) => {}
        Err(e) if gone(&e) => {
            // Someone removed our claim (a breaker that judged us stale); redo it.
            create_claim(claim_path)
                .with_context(|| format!("creating lock claim file {}", claim_path.display()))?;
            return Ok(Attempt::Again);
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!("setting the expiry of lock claim {}", claim_path.display())
            });
        }
    }
    let Err(e) = fs::hard_link(claim_path, lock_path) else {
        return Ok(Attempt::Acquired);
    };
    // Over NFS the link may have happened even though the reply was an error.
    if link_count(claim_path) == Some(2) && same_file(lock_path, claim_path) {
        return Ok(Attempt::Acquired);
    }
    match e.kind() {
        io::ErrorKind::AlreadyExists => Ok(if break_if_expired(lock_path)? {
            Attempt::Again
        } else {
            Attempt::Busy
        }),
        // Our claim vanished between the two calls: recreate it next round.
        _ if gone(&e) => Ok(Attempt::Again),
        _ => Err(e).with_context(|| format!("creating lock {}", lock_path.display())),
    }
}

/// Removes the claim file unless disarmed (so a failed attempt never leaves it behind).
struct ClaimGuard(Option<PathBuf>);

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_file(path);
        }
    }
}

/// `<lock>|<hostname>|<pid>|<random>`, flufl.lock's claim file name.
fn claim_path_for(lock_path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let random = RandomState::new().hash_one((pid, nanos, COUNTER.fetch_add(1, Ordering::Relaxed)));
    let mut claim = lock_path.as_os_str().to_os_string();
    claim.push(format!("|{}|{pid}|{random}", hostname()));
    PathBuf::from(claim)
}

fn hostname() -> String {
    let name = fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    name.replace(['|', '/'], "_")
}

/// Creates the claim file holding its own path (what flufl.lock writes, so that a
/// breaker can find and remove the claim of a dead holder).
fn create_claim(claim_path: &Path) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(claim_path)?;
    file.write_all(claim_path.as_os_str().as_bytes())
}

fn set_expiry(path: &Path, lifetime: Duration) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_modified(SystemTime::now() + lifetime)
}

/// ENOENT, or ESTALE (NFS): the file went away under us.
fn gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::StaleNetworkFileHandle
    )
}

fn link_count(path: &Path) -> Option<u64> {
    fs::symlink_metadata(path).ok().map(|m| m.nlink())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::symlink_metadata(a), fs::symlink_metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// If the lock at `lock_path` has expired, removes it (and its dead holder's claim
/// file). Returns whether the caller should retry at once (the lock was broken or has
/// disappeared).
///
/// Like flufl.lock, this cannot be fully race-free without a server-side primitive;
/// re-checking that the very same, still-expired file is there right before removing
/// it shrinks the window to two consecutive system calls.
fn break_if_expired(lock_path: &Path) -> Result<bool> {
    let seen = match fs::symlink_metadata(lock_path) {
        Ok(m) => m,
        Err(e) if gone(&e) => return Ok(true),
        Err(e) => {
            return Err(e).with_context(|| format!("inspecting lock {}", lock_path.display()));
        }
    };
    // Stale: past its expiry, or held by a process of this host that is gone (a
    // killed pushgate must not block the rerun for the lock's whole lifetime).
    let holder_dead = holder_is_dead(lock_path);
    let expired = |m: &fs::Metadata| {
        holder_dead
            || m.modified()
                .is_ok_and(|t| t + CLOCK_SLOP < SystemTime::now())
    };
    if !expired(&seen) {
        return Ok(false);
    }
    // The holder's claim: named in the lock, same directory, same inode as the lock.
    let holder_claim = fs::read(lock_path).ok().and_then(|content| {
        let name = Path::new(std::ffi::OsStr::from_bytes(&content)).file_name()?;
        let mut prefix = lock_path.file_name()?.as_bytes().to_vec();
        prefix.push(b'|');
        if !name.as_bytes().starts_with(&prefix) {
            return None;
        }
        let path = parent_dir(lock_path).join(name);
        let m = fs::symlink_metadata(&path).ok()?;
        (m.dev() == seen.dev() && m.ino() == seen.ino()).then_some(path)
    });
    match fs::symlink_metadata(lock_path) {
        Ok(now) if now.dev() == seen.dev() && now.ino() == seen.ino() && expired(&now) => {}
        Ok(_) => return Ok(true),
        Err(e) if gone(&e) => return Ok(true),
        Err(e) => {
            return Err(e).with_context(|| format!("inspecting lock {}", lock_path.display()));
        }
    }
    match fs::remove_file(lock_path) {
        Ok(()) => {}
        Err(e) if gone(&e) => {}
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "breaking the expired lock {}; remove it by hand if no cosa or \
                     pushgate process is running",
                    lock_path.display()
                )
            });
        }
    }
    if let Some(claim) = holder_claim {
        let _ = fs::remove_file(claim);
    }
    Ok(true)
}

/// Whether the lock names a holder on this host whose process no longer exists.
/// The lock holds its claim's path, `<lock>|<hostname>|<pid>|<random>`.
fn holder_is_dead(lock_path: &Path) -> bool {
    let Ok(content) = fs::read(lock_path) else {
        return false;
    };
    let Some(name) = Path::new(std::ffi::OsStr::from_bytes(&content)).file_name() else {
        return false;
    };
    let name = name.to_string_lossy();
    let mut fields = name.rsplitn(4, '|');
    let (Some(_random), Some(pid), Some(host)) = (fields.next(), fields.next(), fields.next())
    else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    host == hostname()
        && pid != std::process::id()
        && !Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const L1: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const L2: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn entry(digest: &str, list: &str, tags: &[&str]) -> ImageEntry {
        ImageEntry {
            image: "quay.io/fedora/fedora-coreos".to_string(),
            digest: Some(digest.parse().unwrap()),
            manifest_list_digest: Some(list.parse().unwrap()),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            additional_images: Vec::new(),
        }
    }

    /// A meta.json as cosa writes it: 4-space indent, no trailing newline, odd numbers.
    const META: &str = r#"{
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

    fn setup(content: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.json");
        fs::write(&path, content).unwrap();
        (dir, path)
    }

    fn dir_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap()
    }

    fn set_mtime(path: &Path, t: SystemTime) {
        OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    fn mtime(path: &Path) -> SystemTime {
        fs::metadata(path).unwrap().modified().unwrap()
    }

    #[test]
    fn sets_absent_key_keeping_everything_else_byte_for_byte() {
        let (dir, path) = setup(META);
        let e = entry(D1, L1, &["stable", "40.20261127.3.0"]);
        let change = record_entry(&path, "base-oscontainer", &e, false).unwrap();
        assert_eq!(change, RecordChange::Set);
        let expected = format!(
            "{},\n    \"base-oscontainer\": {{\n        \"image\": \"quay.io/fedora/fedora-coreos\",\n        \"digest\": \"{D1}\",\n        \"manifest-list-digest\": \"{L1}\",\n        \"tags\": [\n            \"stable\",\n            \"40.20261127.3.0\"\n        ]\n    }}\n}}",
            META.strip_suffix("\n}").unwrap()
        );
        assert_eq!(read(&path), expected);
        assert_eq!(dir_names(dir.path()), ["meta.json"]);
    }

    #[test]
    fn rendering_a_parsed_document_gives_it_back() {
        let doc: Value = serde_json::from_str(META).unwrap();
        let spellings = number_spellings(META);
        assert_eq!(
            spellings[..3],
            ["1.0e3", "123456789012345678901234567890", "-0.000001e-7"]
        );
        assert_eq!(render(&doc, false, &spellings).unwrap(), META.as_bytes());
        assert_eq!(
            render(&doc, true, &spellings).unwrap(),
            format!("{META}\n").as_bytes()
        );
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
        assert_eq!(keys, ["a", "k", "z"]);
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
    fn lock_path_follows_cosa() {
        assert_eq!(
            lock_path_for(Path::new("/b/x86_64/meta.json")),
            Path::new("/b/x86_64/.meta.json.lock")
        );
        assert_eq!(
            lock_path_for(Path::new("meta.json")),
            Path::new("./.meta.json.lock")
        );
    }

    #[test]
    fn lock_excludes_a_second_locker_until_dropped() {
        let (dir, path) = setup("{}");
        let first = lock_meta(&path).unwrap();
        let lock_file = dir.path().join(".meta.json.lock");
        assert!(lock_file.exists());
        // flufl.lock compatible: the lock is a hard link of a claim file naming itself,
        // and its mtime is the expiry time.
        let claim = read(&lock_file);
        assert!(
            claim.starts_with(&format!("{}|", lock_file.display())),
            "{claim}"
        );
        assert_eq!(fs::metadata(&lock_file).unwrap().nlink(), 2);
        assert!(mtime(&lock_file) > SystemTime::now() + Duration::from_secs(30));

        let err =
            lock_meta_with(&path, DEFAULT_LOCK_LIFETIME, Duration::from_millis(100)).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(&lock_file.display().to_string()), "{msg}");
        assert!(msg.contains("remove"), "{msg}");
        // The failed attempt left no claim file behind.
        assert_eq!(
            dir_names(dir.path()).len(),
            3,
            "{:?}",
            dir_names(dir.path())
        );

        drop(first);
        assert_eq!(dir_names(dir.path()), ["meta.json"]);
        let second =
            lock_meta_with(&path, DEFAULT_LOCK_LIFETIME, Duration::from_millis(100)).unwrap();
        drop(second);
        assert_eq!(dir_names(dir.path()), ["meta.json"]);
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
    fn stale_lock_is_broken_but_a_live_one_is_not() {
        let (dir, path) = setup("{}");
        let lock_file = dir.path().join(".meta.json.lock");
        // A dead cosa holder: claim file linked to the lock, expiry in the past.
        let dead_claim = PathBuf::from(format!("{}|otherhost|4242|99", lock_file.display()));
        fs::write(&dead_claim, dead_claim.as_os_str().as_bytes()).unwrap();
        fs::hard_link(&dead_claim, &lock_file).unwrap();
        set_mtime(&lock_file, SystemTime::now() - Duration::from_secs(60));

        let lock =
            lock_meta_with(&path, DEFAULT_LOCK_LIFETIME, Duration::from_millis(500)).unwrap();
        assert!(!dead_claim.exists());
        drop(lock);
        assert_eq!(dir_names(dir.path()), ["meta.json"]);

        // A live holder (expiry in the future) is respected.
        fs::write(&lock_file, "someone").unwrap();
        set_mtime(&lock_file, SystemTime::now() + Duration::from_secs(60));
        assert!(lock_meta_with(&path, DEFAULT_LOCK_LIFETIME, Duration::from_millis(50)).is_err());
        assert_eq!(read(&lock_file), "someone");
        assert_eq!(dir_names(dir.path()), [".meta.json.lock", "meta.json"]);
    }

    /// A pid that no process has now: spawn one, reap it.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn a_lock_left_by_a_dead_process_of_this_host_is_broken_at_once() {
        let (dir, path) = setup("{}");
        let lock_file = dir.path().join(".meta.json.lock");
        let claim = PathBuf::from(format!(
            "{}|{}|{}|7",
            lock_file.display(),
            hostname(),
            dead_pid()
        ));
        fs::write(&claim, claim.as_os_str().as_bytes()).unwrap();
        fs::hard_link(&claim, &lock_file).unwrap();
        // Not expired: only the holder's death makes it stale.
        set_mtime(&lock_file, SystemTime::now() + Duration::from_secs(60));
        let lock =
            lock_meta_with(&path, DEFAULT_LOCK_LIFETIME, Duration::from_millis(200)).unwrap();
        assert!(!claim.exists());
        drop(lock);
        assert_eq!(dir_names(dir.path()), ["meta.json"]);
    }

    #[test]
    fn a_lock_of_a_live_process_or_another_host_waits_for_expiry() {
        let (dir, path) = setup("{}");
        let lock_file = dir.path().join(".meta.json.lock");
        for holder in [
            format!("{}|{}", hostname(), std::process::id()),
            format!("{}-elsewhere|{}", hostname(), dead_pid()),
        ] {
            let claim = PathBuf::from(format!("{}|{holder}|7", lock_file.display()));
            fs::write(&claim, claim.as_os_str().as_bytes()).unwrap();
            fs::hard_link(&claim, &lock_file).unwrap();
            set_mtime(&lock_file, SystemTime::now() + Duration::from_secs(60));
            assert!(
                lock_meta_with(&path, DEFAULT_LOCK_LIFETIME, Duration::from_millis(50)).is_err(),
                "{holder}"
            );
            fs::remove_file(&lock_file).unwrap();
            fs::remove_file(&claim).unwrap();
        }
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
    fn expiry_within_clock_slop_is_respected_and_broken_holder_keeps_off() {
        let (_dir, path) = setup("{}");
        let first = lock_meta(&path).unwrap();
        // Expired, but by less than the clock slop: still held.
        set_mtime(first.path(), SystemTime::now() - Duration::from_secs(2));
        assert!(lock_meta_with(&path, DEFAULT_LOCK_LIFETIME, Duration::from_millis(50)).is_err());
        // Long expired: its holder is presumed dead and the lock is broken.
        set_mtime(first.path(), SystemTime::now() - Duration::from_secs(60));
        let next =
            lock_meta_with(&path, DEFAULT_LOCK_LIFETIME, Duration::from_millis(500)).unwrap();
        // Dropping the expired holder must not release the new holder's lock.
        drop(first);
        assert!(next.path().exists());
        drop(next);
        assert!(!lock_path_for(&path).exists());
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
        assert_eq!(doc.as_object().unwrap().len(), 8);
    }

    #[test]
    fn image_entry_serde_follows_the_schema() {
        let e: ImageEntry = serde_json::from_str(
            r#"{"image": "r", "comment": "x", "additional-images": [{"image": "s", "digest": null}]}"#,
        )
        .unwrap();
        assert_eq!(e.tags, Vec::<String>::new());
        assert_eq!(e.digest, None);
        assert_eq!(e.additional_images[0].image, "s");
        let bare = ImageEntry {
            additional_images: vec![],
            ..e
        };
        assert_eq!(
            serde_json::to_string(&bare).unwrap(),
            r#"{"image":"r","tags":[]}"#
        );
    }
}
