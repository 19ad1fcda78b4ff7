//! cosa's meta.json lock, `.meta.json.lock`: python `flufl.lock`'s link-based,
//! NFS-safe scheme, so that cosa and pushgate exclude each other.
//!
//! Like flufl.lock, a lock is broken when its expiry (the lock file's mtime) is more
//! than [`CLOCK_SLOP`] past. pushgate breaks a lock earlier only when its holder is
//! *provably* dead: a killed pushgate must not block the rerun for the lock's whole
//! lifetime. The claim file's name and content stay flufl's, so beside its claim a
//! pushgate holder writes an owner file, `<claim>.owner` ([`owner_path_for`]), naming
//! the kernel (boot id), the PID namespace (the inode of `/proc/self/ns/pid`), its pid
//! and its start time (field 22 of `/proc/PID/stat`). A holder is dead only if that
//! file exists, its boot id and PID namespace are ours, and `/proc/PID` is gone or
//! started at another time (the pid was reused). Parallel pushes of the release
//! pipeline run in separate VMs or containers with the same hostname and separate PID
//! namespaces: their pids mean nothing in ours, so the hostname and `/proc/PID` alone
//! would break a live lock and lose a meta.json update. A claim without an owner file
//! (cosa's, an older pushgate's) or from another namespace waits for its expiry.
//!
//! The claim's host field is this host's name as python's `socket.getfqdn()` gives it
//! (flufl.lock's): the hostname, its first address (`getaddrinfo`) and that address's
//! name (`getnameinfo`, which is `gethostbyaddr`'s primary name), else the plain
//! hostname. `getfqdn()` would also prefer an *alias* with a dot over a dotless primary
//! name; `getnameinfo` does not return aliases, so in that corner case the names
//! differ. Nothing depends on it: the name only keeps claim names unique and readable,
//! and the early break relies on the owner file, never on the host field.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::hash::{BuildHasher, RandomState};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};

use crate::atomic::parent_dir;

/// How long a lock we take stays valid before others may break it.
///
/// pushgate holds the lock for one read-merge-write of meta.json, milliseconds
/// normally; but an fsync on a loaded NFS server or a paused VM can stretch that to
/// seconds, and a holder that outlives its lifetime can have its lock broken under it
/// and lose the update. So 60 s rather than flufl.lock's 15 s: the price, paid only
/// after a holder of another namespace died holding the lock (or one we cannot prove
/// dead), is a longer wait.
pub const DEFAULT_LOCK_LIFETIME: Duration = Duration::from_secs(60);
/// How long [`lock_meta`] waits for a lock held by someone else: past the lifetime and
/// the clock slop, so that a waiter never gives up before a dead holder's lock expires
/// and may be broken (a lock taken just before we started waiting expires, at the
/// latest, `lifetime + slop` later), plus a margin for the holders queued before us.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(90);

/// How far past its expiry a lock must be before it is broken, to absorb clock skew
/// between NFS clients (flufl.lock's `CLOCK_SLOP`).
const CLOCK_SLOP: Duration = Duration::from_secs(10);

const _: () = assert!(
    DEFAULT_LOCK_TIMEOUT.as_secs() >= DEFAULT_LOCK_LIFETIME.as_secs() + CLOCK_SLOP.as_secs()
);

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
        let _ = fs::remove_file(owner_path_for(&self.claim_path));
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
/// expiry time; a lock whose mtime has passed (by more than flufl's clock slop) is
/// broken and retried, and so is one whose holder is provably dead (see the module
/// documentation).
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

/// Removes the claim file and its owner file unless disarmed (so a failed attempt
/// never leaves them behind).
struct ClaimGuard(Option<PathBuf>);

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_file(&path);
            let _ = fs::remove_file(owner_path_for(&path));
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

/// This host's name for claim files, as flufl.lock's `socket.getfqdn()` gives it (see
/// the module documentation), looked up once.
fn hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| fqdn().replace(['|', '/'], "_"))
}

/// python's `socket.getfqdn()`: the hostname's first address, and that address's
/// name; the plain hostname if either lookup fails.
fn fqdn() -> String {
    let host = dns_lookup::get_hostname()
        .ok()
        .or_else(|| fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    let Some(addr) = dns_lookup::lookup_host(&host)
        .ok()
        .and_then(|mut addrs| addrs.next())
    else {
        return host;
    };
    match dns_lookup::lookup_addr(&addr) {
        Ok(name) if !name.is_empty() => name,
        _ => host,
    }
}

/// Creates the claim file holding its own path (what flufl.lock writes, so that a
/// breaker can find and remove the claim of a dead holder), after its owner file, so
/// that a claim of ours never lacks one.
fn create_claim(claim_path: &Path) -> io::Result<()> {
    if let Some(me) = Owner::me() {
        fs::write(owner_path_for(claim_path), me.render())?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(claim_path)?;
    file.write_all(claim_path.as_os_str().as_bytes())
}

/// The owner file of a claim: `<claim>.owner`, beside it.
fn owner_path_for(claim_path: &Path) -> PathBuf {
    let mut path = claim_path.as_os_str().to_os_string();
    path.push(".owner");
    PathBuf::from(path)
}

/// Who holds a claim, precisely enough to tell that it died: the content of the
/// claim's owner file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owner {
    /// `/proc/sys/kernel/random/boot_id`: this kernel, this boot.
    boot_id: String,
    /// The inode of the holder's PID namespace (`/proc/self/ns/pid` is `pid:[N]`).
    pid_ns: u64,
    pid: u32,
    /// Field 22 of `/proc/PID/stat`: clock ticks from boot to the process's start.
    start_time: u64,
}

impl Owner {
    /// This process, or `None` if it cannot be told precisely: then we write no owner
    /// file (others wait for our lock's expiry) and break no lock early.
    fn me() -> Option<&'static Owner> {
        static ME: OnceLock<Option<Owner>> = OnceLock::new();
        ME.get_or_init(|| {
            let pid = std::process::id();
            // /proc must be the procfs of our own PID namespace, or the pids in it are
            // not the ones in claim names.
            let self_pid = fs::read_link("/proc/self").ok()?;
            if self_pid.as_os_str().to_str()?.parse::<u32>().ok()? != pid {
                return None;
            }
            Some(Owner {
                boot_id: boot_id()?,
                pid_ns: pid_namespace()?,
                pid,
                start_time: start_time(pid)?,
            })
        })
        .as_ref()
    }

    fn render(&self) -> String {
        format!(
            "boot-id={}\npid-ns={}\npid={}\nstart-time={}\n",
            self.boot_id, self.pid_ns, self.pid, self.start_time
        )
    }

    fn parse(text: &str) -> Option<Owner> {
        let (mut boot_id, mut pid_ns, mut pid, mut start_time) = (None, None, None, None);
        for line in text.lines() {
            match line.split_once('=')? {
                ("boot-id", v) => boot_id = Some(v.to_string()),
                ("pid-ns", v) => pid_ns = Some(v.parse().ok()?),
                ("pid", v) => pid = Some(v.parse().ok()?),
                ("start-time", v) => start_time = Some(v.parse().ok()?),
                _ => {}
            }
        }
        Some(Owner {
            boot_id: boot_id.filter(|b| !b.is_empty())?,
            pid_ns: pid_ns?,
            pid: pid?,
            start_time: start_time?,
        })
    }
}

fn boot_id() -> Option<String> {
    let id = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_string()).filter(|id| !id.is_empty())
}

/// The inode of our PID namespace, from `/proc/self/ns/pid` → `pid:[N]`.
fn pid_namespace() -> Option<u64> {
    let link = fs::read_link("/proc/self/ns/pid").ok()?;
    link.to_str()?
        .strip_prefix("pid:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// What `/proc/PID/stat` says of a process's start time.
#[derive(Debug, PartialEq, Eq)]
enum Started {
    At(u64),
    /// No such process (in our PID namespace).
    Gone,
    /// The file could not be read or parsed: nothing can be concluded.
    Unknown,
}

fn process_start(pid: u32) -> Started {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => parse_start_time(&stat).map_or(Started::Unknown, Started::At),
        // ESRCH: the process exited while we read.
        Err(e) if gone(&e) || e.raw_os_error() == Some(3) => Started::Gone,
        Err(_) => Started::Unknown,
    }
}

fn start_time(pid: u32) -> Option<u64> {
    match process_start(pid) {
        Started::At(t) => Some(t),
        _ => None,
    }
}

/// Field 22 of a `/proc/PID/stat` line. The command (field 2) is in parentheses and
/// may itself hold spaces and parentheses, so fields are counted after the last `)`.
fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // rest starts with field 3 (state).
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
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

/// If the lock at `lock_path` has expired or its holder is provably dead, removes it
/// (and the holder's claim and owner files). Returns whether the caller should retry at once (the lock was broken or has
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
    // Stale: past its expiry, or held by a process of this kernel and PID namespace
    // that is gone (a killed pushgate must not block the rerun for the lock's whole
    // lifetime).
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
        let _ = fs::remove_file(&claim);
        let _ = fs::remove_file(owner_path_for(&claim));
    }
    Ok(true)
}

/// Whether the lock's holder is provably dead ([`claim_is_dead`]). The lock holds
/// its claim's path, `<lock>|<hostname>|<pid>|<random>`.
fn holder_is_dead(lock_path: &Path) -> bool {
    let Ok(content) = fs::read(lock_path) else {
        return false;
    };
    let Some(name) = Path::new(std::ffi::OsStr::from_bytes(&content)).file_name() else {
        return false;
    };
    claim_is_dead(&parent_dir(lock_path).join(name))
}

/// Removes the claims beside `lock_path` (and their owner files) whose process is
/// provably dead: those of a pushgate killed while it waited for the lock, or while it
/// let it go (the lock removed, its claim or owner file not yet). Call it holding the
/// lock: the holder's own claim is alive.
pub(crate) fn remove_dead_claims(lock_path: &Path) {
    for claim in claims_beside(lock_path) {
        if claim_is_dead(&claim) {
            let _ = fs::remove_file(owner_path_for(&claim));
            let _ = fs::remove_file(&claim);
        }
    }
}

/// The claims beside `lock_path` (`<lock>|...`): of each claim file or owner file
/// there, the claim's path (the claim file may be gone, its owner file left).
pub(crate) fn claims_beside(lock_path: &Path) -> BTreeSet<PathBuf> {
    let Some(lock_name) = lock_path.file_name() else {
        return BTreeSet::new();
    };
    let mut prefix = lock_name.as_bytes().to_vec();
    prefix.push(b'|');
    let Ok(entries) = fs::read_dir(parent_dir(lock_path)) else {
        return BTreeSet::new();
    };
    entries
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.as_bytes().starts_with(&prefix))
        .map(|n| {
            let n = n.as_bytes();
            let claim = n.strip_suffix(b".owner").unwrap_or(n);
            parent_dir(lock_path).join(std::ffi::OsStr::from_bytes(claim))
        })
        .collect()
}

/// Whether the process of a claim (`<lock>|<hostname>|<pid>|<random>`) is provably
/// dead: the claim has an owner file naming our kernel (boot id) and PID namespace, and
/// its pid is gone from that namespace or now belongs to a process started at another
/// time. Anything less (no owner file: cosa, an older pushgate; another boot or
/// namespace; an unreadable `/proc`) is not proof.
fn claim_is_dead(claim: &Path) -> bool {
    let Some(me) = Owner::me() else {
        return false;
    };
    let Some(name) = claim.file_name() else {
        return false;
    };
    let Some(pid) = name
        .to_str()
        .and_then(|n| n.rsplit('|').nth(1))
        .and_then(|pid| pid.parse::<u32>().ok())
    else {
        return false;
    };
    let owner_path = owner_path_for(claim);
    let Some(owner) = fs::symlink_metadata(&owner_path)
        .ok()
        // With procfs's hidepid, other users' processes are invisible, so they would
        // look gone: only trust /proc for our own user's holders (or as root).
        .filter(|m| m.is_file() && (m.uid() == me_uid() || me_uid() == 0))
        .and_then(|_| fs::read_to_string(&owner_path).ok())
        .and_then(|text| Owner::parse(&text))
    else {
        return false;
    };
    if owner.pid != pid || owner.boot_id != me.boot_id || owner.pid_ns != me.pid_ns {
        return false;
    }
    if owner.pid == me.pid {
        // Our own pid: another lock of this very process, alive.
        return owner.start_time != me.start_time;
    }
    match process_start(pid) {
        Started::Gone => true,
        Started::At(t) => t != owner.start_time,
        Started::Unknown => false,
    }
}

fn me_uid() -> u32 {
    rustix::process::geteuid().as_raw()
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
        // Beside the lock, the claim and its owner file; the failed attempt left no
        // claim file behind.
        let owner = owner_path_for(Path::new(&claim));
        assert_eq!(
            Owner::parse(&read(&owner)).as_ref(),
            Owner::me(),
            "{}",
            read(&owner)
        );
        assert_eq!(
            dir_names(dir.path()).len(),
            4,
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

    /// Plants a lock held by `pid` on this host, unexpired, with `owner` as its
    /// owner file; returns the claim file.
    fn plant_lock(lock_file: &Path, pid: u32, owner: Option<Owner>) -> PathBuf {
        let claim = PathBuf::from(format!("{}|{}|{pid}|7", lock_file.display(), hostname()));
        if let Some(owner) = owner {
            fs::write(owner_path_for(&claim), owner.render()).unwrap();
        }
        fs::write(&claim, claim.as_os_str().as_bytes()).unwrap();
        fs::hard_link(&claim, lock_file).unwrap();
        // Not expired: only the holder's death may make it stale.
        set_mtime(lock_file, SystemTime::now() + Duration::from_secs(60));
        claim
    }

    /// The owner file a pushgate holder with `pid` of this namespace writes.
    fn owner_here(pid: u32, start_time: u64) -> Owner {
        Owner {
            pid,
            start_time,
            ..Owner::me().expect("this test needs /proc").clone()
        }
    }

    #[test]
    fn a_lock_left_by_a_dead_process_of_this_host_is_broken_at_once() {
        let (dir, path) = setup("{}");
        let lock_file = dir.path().join(".meta.json.lock");
        let pid = dead_pid();
        let claim = plant_lock(&lock_file, pid, Some(owner_here(pid, 12345)));
        let lock =
            lock_meta_with(&path, DEFAULT_LOCK_LIFETIME, Duration::from_millis(200)).unwrap();
        // The dead holder's claim and owner file went with its lock.
        assert!(!claim.exists());
        assert!(!owner_path_for(&claim).exists());
        drop(lock);
        assert_eq!(dir_names(dir.path()), ["meta.json"]);
    }

    /// Claims of dead waiters, or of holders killed while letting go, go (an owner
    /// file left alone too); a live claim, or one that cannot be proven dead, stays.
    #[test]
    fn only_claims_of_provably_dead_processes_are_removed() {
        let (dir, path) = setup("{}");
        let lock_file = dir.path().join(".meta.json.lock");
        let claim_of = |pid: u32, owner: Option<Owner>| {
            let claim = PathBuf::from(format!("{}|{}|{pid}|9", lock_file.display(), hostname()));
            if let Some(owner) = owner {
                fs::write(owner_path_for(&claim), owner.render()).unwrap();
            }
            fs::write(&claim, claim.as_os_str().as_bytes()).unwrap();
            claim
        };
        let dead = dead_pid();
        let me = Owner::me().expect("this test needs /proc");
        claim_of(dead, Some(owner_here(dead, 1)));
        let gone = dead_pid();
        let lone_owner = claim_of(gone, Some(owner_here(gone, 1)));
        fs::remove_file(&lone_owner).unwrap();
        let live = claim_of(me.pid, Some(me.clone()));
        let unproven = claim_of(dead_pid(), None);
        let lock =
            lock_meta_with(&path, DEFAULT_LOCK_LIFETIME, Duration::from_millis(200)).unwrap();
        remove_dead_claims(lock.path());
        drop(lock);
        let mut left = vec![
            "meta.json".to_string(),
            live.file_name().unwrap().to_string_lossy().into_owned(),
            format!("{}.owner", live.file_name().unwrap().to_string_lossy()),
            unproven.file_name().unwrap().to_string_lossy().into_owned(),
        ];
        left.sort();
        assert_eq!(dir_names(dir.path()), left);
    }

    /// A parallel push in another VM or container: same hostname, a pid that does not
    /// exist here. Without an owner file naming this namespace, it is not provably
    /// dead.
    #[test]
    fn a_live_holder_of_another_pid_namespace_is_not_broken_before_expiry() {
        let (dir, path) = setup("{}");
        let lock_file = dir.path().join(".meta.json.lock");
        let pid = dead_pid();
        let me = Owner::me().unwrap();
        for owner in [
            None,
            Some(Owner {
                pid_ns: me.pid_ns + 1,
                ..owner_here(pid, 1)
            }),
            Some(Owner {
                boot_id: "another-boot".to_string(),
                ..owner_here(pid, 1)
            }),
        ] {
            let claim = plant_lock(&lock_file, pid, owner.clone());
            assert!(
                lock_meta_with(&path, DEFAULT_LOCK_LIFETIME, Duration::from_millis(50)).is_err(),
                "{owner:?}"
            );
            assert!(same_file(&lock_file, &claim), "{owner:?}");
            fs::remove_file(&lock_file).unwrap();
            fs::remove_file(&claim).unwrap();
            let _ = fs::remove_file(owner_path_for(&claim));
        }
        assert_eq!(dir_names(dir.path()), ["meta.json"]);
    }

    /// The same, through a meta.json write: the writer waits for the holder, and the
    /// holder's update (done after the writer started waiting) and the writer's both
    /// land.
    #[test]
    fn a_parallel_push_of_another_namespace_keeps_its_update() {
        let (dir, path) = setup("{}");
        let lock_file = dir.path().join(".meta.json.lock");
        // The holder has read meta.json ("{}") and holds the lock.
        let claim = plant_lock(&lock_file, dead_pid(), None);
        let p = path.clone();
        let writer = std::thread::spawn(move || {
            crate::record::record_entry(&p, "mine", &entry(D1, L1, &["a"]), false).unwrap()
        });
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            same_file(&lock_file, &claim),
            "the holder's lock was broken"
        );
        assert_eq!(
            read(&path),
            "{}",
            "meta.json was written under the holder's lock"
        );
        // The holder writes its update (from what it read) and releases the lock.
        fs::write(&path, "{\n    \"theirs\": true\n}").unwrap();
        fs::remove_file(&lock_file).unwrap();
        fs::remove_file(&claim).unwrap();
        assert_eq!(writer.join().unwrap(), crate::meta::RecordChange::Set);
        let doc: serde_json::Value = serde_json::from_str(&read(&path)).unwrap();
        assert_eq!(doc["theirs"], true, "{doc}");
        assert_eq!(doc["mine"]["digest"], D1, "{doc}");
        assert_eq!(dir_names(dir.path()), ["meta.json"]);
    }

    /// A pid of this namespace that now belongs to another process (another start
    /// time) means its holder died; the same start time means it is alive.
    #[test]
    fn a_holder_whose_pid_was_reused_is_dead() {
        let (dir, path) = setup("{}");
        let lock_file = dir.path().join(".meta.json.lock");
        let mut other = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = other.id();
        let started = start_time(pid).unwrap();

        let claim = plant_lock(&lock_file, pid, Some(owner_here(pid, started)));
        assert!(lock_meta_with(&path, DEFAULT_LOCK_LIFETIME, Duration::from_millis(50)).is_err());
        assert!(same_file(&lock_file, &claim));
        fs::remove_file(&lock_file).unwrap();
        fs::remove_file(&claim).unwrap();

        let claim = plant_lock(&lock_file, pid, Some(owner_here(pid, started + 1)));
        let lock =
            lock_meta_with(&path, DEFAULT_LOCK_LIFETIME, Duration::from_millis(200)).unwrap();
        assert!(!claim.exists());
        assert!(!owner_path_for(&claim).exists());
        drop(lock);
        assert_eq!(dir_names(dir.path()), ["meta.json"]);
        other.kill().unwrap();
        other.wait().unwrap();
    }

    #[test]
    fn claim_names_carry_the_fqdn_as_one_field() {
        let host = hostname();
        assert!(!host.is_empty() && !host.contains(['|', '/']), "{host:?}");
        assert!(std::ptr::eq(host, hostname()), "looked up once");
        let claim = claim_path_for(Path::new("/b/.meta.json.lock"));
        let name = claim.to_str().unwrap();
        let fields: Vec<&str> = name.rsplitn(4, '|').collect();
        assert_eq!(fields[2], host, "{name}");
        assert_eq!(fields[1], std::process::id().to_string(), "{name}");
        assert_eq!(fields[3], "/b/.meta.json.lock", "{name}");
    }

    #[test]
    fn owner_files_and_proc_stat_parse() {
        let me = Owner::me().expect("this test needs /proc");
        assert_eq!(Owner::parse(&me.render()).as_ref(), Some(me));
        assert_eq!(Owner::parse("boot-id=x\npid-ns=1\npid=2\n"), None);
        assert_eq!(Owner::parse("garbage"), None);
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 \
                    987654 1000 10 18446744073709551615";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("42 (short) S 1"), None);
        assert_eq!(process_start(dead_pid()), Started::Gone);
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
