//! cosa's meta.json lock, `.meta.json.lock`: python `flufl.lock`'s link-based,
//! NFS-safe scheme, so that cosa and pushgate exclude each other.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::hash::{BuildHasher, RandomState};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};

use super::atomic::parent_dir;

/// How long a lock we take stays valid before others may break it (flufl's default).
pub const DEFAULT_LOCK_LIFETIME: Duration = Duration::from_secs(60);
/// How long [`lock_meta`] waits for a lock held by someone else.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// How far past its expiry a lock must be before it is broken, to absorb clock skew
/// between NFS clients (flufl.lock's `CLOCK_SLOP`).
const CLOCK_SLOP: Duration = Duration::from_secs(10);

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
    use crate::record::testutil::*;

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
}
