//! Calling into a module: one capped call in a fresh store and instance, on a
//! thread of its own (wasmtime-wasi's synchronous bindings must never run on an
//! async worker), and every way it can go wrong turned into a [`PolicyError`].
//!
//! The caller waits for that thread no longer than the deadline (plus [`GRACE`]).
//! The epoch deadline interrupts wasm code; the watchdog bounds everything else
//! (a host call that blocks): past the deadline the call is abandoned, its thread
//! left to finish on its own, and the call fails with the time cap.

use std::sync::mpsc;
use std::time::Duration;

use wasmtime::Store;

use super::contracts::{Guest, Pre};
use super::sandbox::{self, Limits, State};
use super::{Policy, PolicyError, PolicyHost};

/// How long past the deadline the watchdog waits before abandoning a call: the
/// epoch (which ticks every 10 ms) normally interrupts a runaway call first, with
/// a cleaner trap.
const GRACE: Duration = Duration::from_millis(200);

/// Why a job run under [`watchdog`] gave no result.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Abandoned {
    /// It was still running at the deadline (its thread is left to finish).
    TimedOut,
    /// Its thread panicked, or could not be started.
    Died,
}

/// Runs `job` on a thread of its own and waits for it at most `deadline`.
pub(crate) fn watchdog<R: Send + 'static>(
    deadline: Duration,
    job: impl FnOnce() -> R + Send + 'static,
) -> Result<R, Abandoned> {
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("pushgate-policy-call".into())
        .spawn(move || {
            // The receiver is gone when the call was abandoned: nobody to tell.
            let _ = tx.send(job());
        })
        .map_err(|_| Abandoned::Died)?;
    rx.recv_timeout(deadline).map_err(|e| match e {
        mpsc::RecvTimeoutError::Timeout => Abandoned::TimedOut,
        mpsc::RecvTimeoutError::Disconnected => Abandoned::Died,
    })
}

impl PolicyHost {
    /// One capped call in a fresh store and instance, on a thread of its own,
    /// abandoned past the deadline.
    pub(crate) fn call<R: Send + 'static>(
        &self,
        policy: &Policy,
        what: &'static str,
        f: impl FnOnce(&Guest, &mut Store<State>) -> wasmtime::Result<R> + Send + 'static,
    ) -> Result<(R, Vec<String>), PolicyError> {
        let (engine, limits, pre) = (self.engine.clone(), self.limits, policy.pre.clone());
        let module = policy.label.clone();
        let label = module.clone();
        let job = move || call_here(&engine, &limits, &pre, label, what, f);
        match watchdog(self.limits.deadline + GRACE, job) {
            Ok(result) => result,
            Err(Abandoned::TimedOut) => Err(time_cap(&self.limits, module, what)),
            Err(Abandoned::Died) => Err(PolicyError::Trap {
                module,
                what,
                reason: "the host's call thread died".to_string(),
            }),
        }
    }
}

fn call_here<R>(
    engine: &wasmtime::Engine,
    limits: &Limits,
    pre: &Pre,
    module: String,
    what: &'static str,
    f: impl FnOnce(&Guest, &mut Store<State>) -> wasmtime::Result<R>,
) -> Result<(R, Vec<String>), PolicyError> {
    let mut store = sandbox::store(engine, limits);
    let result = pre
        .instantiate(&mut store)
        .and_then(|guest| f(&guest, &mut store));
    let logs = store
        .data()
        .logs
        .iter()
        .map(|(level, msg)| format!("{level}: {msg}"))
        .collect();
    match result {
        Ok(r) => Ok((r, logs)),
        Err(e) => Err(classify(limits, e, &store, module, what)),
    }
}

fn time_cap(limits: &Limits, module: String, what: &'static str) -> PolicyError {
    PolicyError::Cap {
        module,
        what,
        cap: format!("time ({:?})", limits.deadline),
    }
}

/// `n` bytes, in the largest unit that divides it.
fn bytes(n: usize) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

fn classify(
    limits: &Limits,
    e: wasmtime::Error,
    store: &Store<State>,
    module: String,
    what: &'static str,
) -> PolicyError {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::OutOfFuel) => PolicyError::Cap {
            module,
            what,
            cap: format!("fuel ({} units)", limits.fuel),
        },
        Some(wasmtime::Trap::Interrupt) => time_cap(limits, module, what),
        // wasmtime's own words when an answer is larger than the store's
        // hostcall fuel ([`sandbox::HOSTCALL_BYTES`], less for metadata).
        _ if format!("{e:#}").contains("fuel allocated for hostcalls") => PolicyError::Cap {
            module,
            what,
            cap: format!("answer size ({})", bytes(store.hostcall_fuel())),
        },
        _ => {
            if store.data().limits.memory_refused {
                PolicyError::Cap {
                    module,
                    what,
                    cap: format!("memory ({} MiB)", limits.memory >> 20),
                }
            } else {
                // One line: the trap itself (or the root cause), not the
                // wasm backtrace, which names nothing a user can act on.
                let reason = match e.downcast_ref::<wasmtime::Trap>() {
                    Some(trap) => trap.to_string(),
                    None => e.root_cause().to_string(),
                };
                PolicyError::Trap {
                    module,
                    what,
                    reason,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn watchdog_returns_what_the_job_returns() {
        assert_eq!(watchdog(Duration::from_secs(5), || 42), Ok(42));
    }

    #[test]
    fn watchdog_abandons_a_job_that_blocks_past_the_deadline() {
        let start = Instant::now();
        let res = watchdog(Duration::from_millis(50), || {
            std::thread::sleep(Duration::from_secs(30));
        });
        assert_eq!(res, Err(Abandoned::TimedOut));
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn watchdog_survives_a_job_that_panics() {
        let res = watchdog(Duration::from_secs(5), || -> u8 { panic!("job panicked") });
        assert_eq!(res, Err(Abandoned::Died));
    }
}
