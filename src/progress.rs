//! Progress of a long push, per arch (blobs and bytes), on a terminal only.
//!
//! The display is a single line on stderr, redrawn a few times a second. It is
//! off when stderr is not a terminal, with `--json`, or with `--quiet`, so logs and
//! machine-read output stay clean.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Counters for one arch.
pub struct ArchProgress {
    pub arch: String,
    pub total_blobs: usize,
    pub total_bytes: u64,
    pub done_blobs: AtomicUsize,
    /// Bytes sent so far (retries count again).
    pub sent: Arc<AtomicU64>,
}

/// Counters for every arch of a push.
pub struct Progress {
    pub arches: Vec<ArchProgress>,
}

impl Progress {
    pub fn new(totals: Vec<(String, usize, u64)>) -> Arc<Progress> {
        Arc::new(Progress {
            arches: totals
                .into_iter()
                .map(|(arch, total_blobs, total_bytes)| ArchProgress {
                    arch,
                    total_blobs,
                    total_bytes,
                    done_blobs: AtomicUsize::new(0),
                    sent: Arc::new(AtomicU64::new(0)),
                })
                .collect(),
        })
    }

    pub fn arch(&self, arch: &str) -> Option<&ArchProgress> {
        self.arches.iter().find(|a| a.arch == arch)
    }

    /// One line: `x86_64 3/16 blobs 48.0/256.0 MiB | aarch64 ...`.
    pub fn render(&self) -> String {
        self.arches
            .iter()
            .map(|a| {
                let sent = a.sent.load(Ordering::Relaxed).min(a.total_bytes);
                format!(
                    "{} {}/{} blobs {}/{}",
                    a.arch,
                    a.done_blobs.load(Ordering::Relaxed),
                    a.total_blobs,
                    mib(sent),
                    mib(a.total_bytes)
                )
            })
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Whether progress should be drawn: a terminal, and not `--json` or `--quiet`.
pub fn wanted(json: bool, quiet: bool) -> bool {
    !json && !quiet && std::io::stderr().is_terminal()
}

/// Redraws the progress line until dropped; then clears it.
pub struct Display {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Display {
    pub fn start(progress: Arc<Progress>) -> Display {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut err = std::io::stderr();
            while !flag.load(Ordering::Relaxed) {
                let _ = write!(err, "\r\x1b[2K{}", progress.render());
                let _ = err.flush();
                std::thread::park_timeout(Duration::from_millis(200));
            }
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        });
        Display {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_arch_with_blobs_and_bytes() {
        let p = Progress::new(vec![
            ("x86_64".into(), 4, 4 << 20),
            ("s390x".into(), 2, 1 << 20),
        ]);
        let a = p.arch("x86_64").unwrap();
        a.done_blobs.fetch_add(1, Ordering::Relaxed);
        a.sent.fetch_add(3 << 20, Ordering::Relaxed);
        assert_eq!(
            p.render(),
            "x86_64 1/4 blobs 3.0 MiB/4.0 MiB | s390x 0/2 blobs 0.0 MiB/1.0 MiB"
        );
    }

    #[test]
    fn resent_bytes_never_show_more_than_the_total() {
        let p = Progress::new(vec![("x86_64".into(), 1, 10)]);
        p.arch("x86_64")
            .unwrap()
            .sent
            .fetch_add(25, Ordering::Relaxed);
        assert!(p.render().contains("0.0 MiB/0.0 MiB"));
    }
}
