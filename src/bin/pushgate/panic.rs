//! The last resort: a panic is a bug in pushgate, but the run it ends is still
//! recorded the way every other end is (issue 27). The hook installed here
//! says so on stderr (after Rust's own message, with its location), writes the
//! JSON failure object on stdout with `--json`, appends an `error` line to the
//! decision log with `--decision-log`, and exits 101, Rust's status for a
//! panic, at once: whatever thread panicked (a tokio worker included), the
//! run ends there and is recorded once.
//!
//! Debug builds only: `PUSHGATE_DEBUG_PANIC` set makes a push or a release
//! panic on a runtime worker, for the tests of this hook ([`debug_panic`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use pushgate::decision_log::{self, DecisionLog, Entry, LoggedPolicy};

use crate::out;

/// Makes the JSON failure object of the run for an error message.
pub(crate) type FailureJson = Box<dyn Fn(&str) -> String + Send + Sync>;

/// What the hook needs to record the run, taken from the command line before
/// the run starts.
pub(crate) struct LastWords {
    /// The JSON failure object for an error message, when `--json` was given.
    pub(crate) json: Option<FailureJson>,
    pub(crate) log: Option<LogLine>,
}

/// The decision-log line of a run stopped by a panic.
pub(crate) struct LogLine {
    pub(crate) path: PathBuf,
    /// The container; a release logs one line for the whole run (`release`),
    /// its containers not yet known to the command line.
    pub(crate) container: String,
    /// The repository (for a release, its config file).
    pub(crate) repo: String,
    pub(crate) tags: Vec<String>,
    pub(crate) dry_run: bool,
    /// `--policy` as given, if any.
    pub(crate) policy: Option<String>,
}

/// Installs the hook, on top of Rust's own (which prints the message,
/// its location and, with RUST_BACKTRACE, the backtrace).
pub(crate) fn install(words: LastWords) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        static ONCE: AtomicBool = AtomicBool::new(false);
        default(info);
        if ONCE.swap(true, Ordering::SeqCst) {
            // Another thread is already recording the run.
            return;
        }
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = format!(
            "pushgate panicked{at}: {what} (a bug in pushgate: please report it \
             with this message; the run stopped where it was)"
        );
        out::eprintln(&format!("pushgate: error: {message}"));
        if let Some(json) = &words.json {
            let _ = out::println(&json(&message));
        }
        if let Some(line) = &words.log
            && let Err(e) = record(line, &message)
        {
            out::eprintln(&format!("pushgate: error: {e:#}"));
        }
        std::process::exit(101);
    }));
}

/// Appends the `error` line of the run to the decision log.
fn record(line: &LogLine, message: &str) -> anyhow::Result<()> {
    let log = DecisionLog::open(&line.path, false)?;
    log.append(&Entry {
        time: decision_log::now(),
        decision_id: decision_log::new_id(),
        container: line.container.clone(),
        repo: line.repo.clone(),
        tags: line.tags.clone(),
        build_id: None,
        policy: LoggedPolicy::of(None, line.policy.as_deref()),
        verdict: None,
        verdict_reason: None,
        decision: None,
        reason: None,
        decided_by: None,
        facts_sha256: None,
        facts: None,
        outcome: "error".into(),
        error: Some(message.to_string()),
        dry_run: line.dry_run,
        attestation: None,
    })
}

/// Debug builds: panics on a runtime worker when `PUSHGATE_DEBUG_PANIC` is
/// set, as a bug deep in a run would. Release builds never look.
pub(crate) async fn debug_panic() {
    #[cfg(debug_assertions)]
    if let Some(why) = std::env::var_os("PUSHGATE_DEBUG_PANIC") {
        let why = why.to_string_lossy().into_owned();
        let _ = tokio::spawn(async move { panic!("PUSHGATE_DEBUG_PANIC: {why}") }).await;
    }
}
