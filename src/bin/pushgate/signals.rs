//! SIGINT and SIGTERM (what Jenkins and Kubernetes send before SIGKILL): stop
//! at the next await point, so no new request starts and in-flight ones are
//! dropped, while everything written so far stays consistent (meta.json is
//! written by rename under its lock in code that has no await point, temp files
//! are removed by their guards). A run stuck in code that cannot be cancelled
//! (waiting for a meta.json lock) is ended a few seconds later; what it leaves
//! is what a SIGKILL leaves, which the next run cleans up at once.

use std::future::Future;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// How long a run may take to stop at an await point before it is ended.
const GRACE: Duration = Duration::from_secs(5);

/// The signal that stopped the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted(pub i32);

impl Interrupted {
    pub fn name(self) -> &'static str {
        match self.0 {
            2 => "SIGINT",
            _ => "SIGTERM",
        }
    }

    /// The conventional exit status: 128 + the signal number.
    pub fn status(self) -> u8 {
        128 + self.0 as u8
    }
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "interrupted by {}: stopped before finishing, nothing half-written; \
             the next run finishes what is missing",
            self.name()
        )
    }
}

impl std::error::Error for Interrupted {}

/// Watches for SIGINT and SIGTERM on `runtime`; returns what [`run`] waits on.
pub fn watch(runtime: &tokio::runtime::Runtime) -> watch::Receiver<i32> {
    let (tx, rx) = watch::channel(0);
    runtime.spawn(async move {
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        let sig = tokio::select! {
            _ = int.recv() => 2,
            _ = term.recv() => 15,
        };
        let _ = tx.send(sig);
        tokio::time::sleep(GRACE).await;
        crate::out::eprintln(&format!("pushgate: error: {}", Interrupted(sig)));
        std::process::exit(128 + sig);
    });
    rx
}

/// Runs `work` to its end, or until a signal arrives: then it is dropped at
/// its next await point and the signal is the error.
pub fn run<T>(
    runtime: &tokio::runtime::Runtime,
    signals: &watch::Receiver<i32>,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let mut rx = signals.clone();
    runtime.block_on(async move {
        tokio::select! {
            biased;
            Ok(sig) = rx.wait_for(|s| *s != 0) => Err(Interrupted(*sig).into()),
            r = work => r,
        }
    })
}
