//! The fuzz harness (tests only): every parser of outside input has a target
//! here or beside its code that replays a corpus of real samples and then, for
//! a bounded time, feeds it random and mutated inputs, checking properties
//! stronger than "no panic" (round trips, digests, bounds, errors that name
//! what was bad).
//!
//! Why our own harness rather than proptest or bolero: the inputs that matter
//! are byte-level mutations of real documents (a manifest skopeo wrote, an OCI
//! archive cosa wrote), which proptest's generated values do not reach without
//! a grammar per parser, and cargo-fuzz/libFuzzer need nightly. This loop runs
//! on stable, for as long as `PUSHGATE_FUZZ_SECONDS` says, costs no crate (its
//! randomness is fastrand, already a dependency), and keeps the inputs that
//! parse as seeds for further mutation, which is what lets it get past the
//! outer syntax of JSON, TOML and tar.
//!
//! * Corpus: `tests/corpus/<target>/`, replayed first, every run. A target
//!   without a corpus fails.
//! * Budget: `PUSHGATE_FUZZ_SECONDS` per target (default 1.5; `scripts/test.sh`
//!   keeps the default, `scripts/fuzz.sh` sets it from the time asked).
//! * `PUSHGATE_FUZZ_SEED` repeats a run; the seed is printed with a failure.
//! * `PUSHGATE_FUZZ_SAVE=1` (set by `scripts/fuzz.sh`) writes a failing input to
//!   the target's corpus as `regress-<sha256>`, so every later run replays it.

mod documents;
mod registry;
mod sign;
mod sources;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::digest::Digest;

/// The largest input a mutation grows to: past it, inputs only test throughput.
const MAX_INPUT: usize = 256 * 1024;
/// How many parsing inputs the run keeps as seeds beside the corpus.
const MAX_POOL: usize = 512;

/// What a check made of an input that broke no property.
pub(crate) enum Outcome {
    /// It parsed: worth mutating further.
    Accepted,
    /// It was refused, with a proper error.
    Refused,
}

pub(crate) type Check<'a> = &'a dyn Fn(&[u8]) -> Result<Outcome, String>;

/// Tokens worth splicing into every kind of text input.
const COMMON: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"=",
    b"/",
    b"@",
    b"-",
    b".",
    b" ",
    b"\n",
    b"\r\n",
    b"\t",
    b"\0",
    b"0",
    b"-1",
    b"1e999",
    b"0.5",
    b"18446744073709551615",
    b"18446744073709551616",
    b"4294967296",
    b"9223372036854775808",
    b"null",
    b"true",
    b"\xc3\xa9",
    b"\xe2\x80\xae",
    b"\xf0\x9f\x92\xa5",
    b"\xff",
    b"sha256:",
    b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
];

/// Runs target `name`: replays its corpus, then mutates for the time budget.
/// `dict` holds tokens of the target's format.
pub(crate) fn run(name: &str, dict: &[&[u8]], check: Check<'_>) {
    let dir = corpus_dir(name);
    let corpus = load_corpus(&dir);
    assert!(
        !corpus.is_empty(),
        "fuzz target {name}: no corpus in {} (add real samples there)",
        dir.display()
    );
    for (file, bytes) in &corpus {
        if let Err(why) = guarded(check, bytes) {
            panic!(
                "fuzz target {name}: corpus file {} breaks a property: {why}",
                file.display()
            );
        }
    }
    let seed = std::env::var("PUSHGATE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let mut rng = fastrand::Rng::with_seed(seed);
    let deadline = Instant::now() + budget();
    let mut pool: Vec<Vec<u8>> = corpus.into_iter().map(|(_, b)| b).collect();
    let seeds = pool.len();
    let mut runs = 0u64;
    while Instant::now() < deadline {
        let input = if rng.u8(..) < 8 {
            random_input(&mut rng)
        } else {
            let base = &pool[rng.usize(..pool.len())];
            let other = &pool[rng.usize(..pool.len())];
            mutate(&mut rng, base, other, dict)
        };
        runs += 1;
        match guarded(check, &input) {
            Ok(Outcome::Accepted) => {
                if pool.len() < seeds + MAX_POOL {
                    pool.push(input);
                } else {
                    let i = seeds + rng.usize(..MAX_POOL);
                    pool[i] = input;
                }
            }
            Ok(Outcome::Refused) => {}
            Err(why) => {
                let saved = save(&dir, &input);
                panic!(
                    "fuzz target {name} (seed {seed}, run {runs}): {why}\ninput: {}\n{saved}",
                    shown(&input)
                );
            }
        }
    }
    eprintln!("fuzz target {name}: {runs} inputs (seed {seed})");
}

/// The check's verdict, a panic being a failure like any other.
fn guarded(check: Check<'_>, input: &[u8]) -> Result<Outcome, String> {
    match catch_unwind(AssertUnwindSafe(|| check(input))) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("panicked: {msg}"))
        }
    }
}

fn budget() -> Duration {
    let secs = std::env::var("PUSHGATE_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(1.5);
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::ZERO)
}

fn corpus_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name)
}

fn load_corpus(dir: &std::path::Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, bytes)
        })
        .collect()
}

/// Keeps a failing input as a regression case when asked to.
fn save(dir: &std::path::Path, input: &[u8]) -> String {
    if std::env::var_os("PUSHGATE_FUZZ_SAVE").is_none() {
        return "(set PUSHGATE_FUZZ_SAVE=1 to keep it in the corpus)".to_string();
    }
    let path = dir.join(format!("regress-{}", &Digest::of(input).hex()[..16]));
    match std::fs::write(&path, input) {
        Ok(()) => format!("saved as {}", path.display()),
        Err(e) => format!("could not save it as {}: {e}", path.display()),
    }
}

/// An input for a failure message: escaped, and cut when long.
fn shown(input: &[u8]) -> String {
    let head = &input[..input.len().min(2048)];
    let mut s = head.escape_ascii().to_string();
    if input.len() > head.len() {
        s.push_str(&format!("... ({} bytes)", input.len()));
    }
    s
}

fn random_input(rng: &mut fastrand::Rng) -> Vec<u8> {
    let len = rng.usize(..64);
    if rng.bool() {
        (0..len).map(|_| rng.u8(..)).collect()
    } else {
        (0..len).map(|_| rng.u8(0x20..0x7f)).collect()
    }
}

/// A few random edits of `base`, sometimes spliced with `other`.
fn mutate(rng: &mut fastrand::Rng, base: &[u8], other: &[u8], dict: &[&[u8]]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..1 + rng.usize(..6) {
        let at = rng.usize(..=v.len());
        match rng.u8(..11) {
            0 if !v.is_empty() => {
                let i = rng.usize(..v.len());
                v[i] ^= 1 << rng.u8(..8);
            }
            1 if !v.is_empty() => {
                let i = rng.usize(..v.len());
                v[i] = rng.u8(..);
            }
            2 | 3 => {
                let tokens = if rng.bool() && !dict.is_empty() {
                    dict
                } else {
                    COMMON
                };
                let t = tokens[rng.usize(..tokens.len())];
                v.splice(at..at, t.iter().copied());
            }
            4 if !v.is_empty() => {
                // replace a short run by a token: numbers and names swapped whole
                let end = (at + 1 + rng.usize(..8)).min(v.len());
                let tokens = if !dict.is_empty() { dict } else { COMMON };
                let t = tokens[rng.usize(..tokens.len())];
                let start = at.min(end.saturating_sub(1));
                v.splice(start..end, t.iter().copied());
            }
            5 if !v.is_empty() => {
                let end = (at + 1 + rng.usize(..32)).min(v.len());
                v.drain(at.min(end)..end);
            }
            6 if !v.is_empty() => {
                let start = rng.usize(..v.len());
                let end = (start + 1 + rng.usize(..64)).min(v.len());
                let chunk = v[start..end].to_vec();
                v.splice(at..at, chunk);
            }
            7 if !other.is_empty() => {
                let cut = rng.usize(..=other.len());
                v.truncate(at);
                v.extend_from_slice(&other[cut..]);
            }
            8 => v.truncate(at),
            9 if !v.is_empty() => {
                // a digit changed: lengths, sizes and counts
                let digits: Vec<usize> = (0..v.len()).filter(|&i| v[i].is_ascii_digit()).collect();
                if !digits.is_empty() {
                    let i = digits[rng.usize(..digits.len())];
                    v[i] = rng.u8(b'0'..=b'9');
                }
            }
            _ => {
                let t = COMMON[rng.usize(..COMMON.len())];
                v.splice(at..at, t.iter().copied());
            }
        }
    }
    v.truncate(MAX_INPUT);
    v
}

/// The input as text, as parsers of strings see it.
pub(crate) fn text(input: &[u8]) -> String {
    String::from_utf8_lossy(input).into_owned()
}

/// Fails with `what` unless `cond`.
pub(crate) fn ensure(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what()) }
}

/// An error's whole chain, as pushgate prints it.
pub(crate) fn chain(e: &anyhow::Error) -> String {
    format!("{e:#}")
}

/// A temporary file holding `bytes`, for parsers that read a path.
pub(crate) fn temp_file(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("temp file");
    (dir, path)
}
