//! Calling into a module: one capped call in a fresh store and instance, on a
//! thread of its own (wasmtime-wasi's synchronous bindings must never run on an
//! async worker), and every way it can go wrong turned into a [`PolicyError`].

use wasmtime::Store;

use super::bindings::exports::pushgate::policy::policy as guest;
use super::convert::level_name;
use super::sandbox::{self, State};
use super::{Policy, PolicyError, PolicyHost};

impl PolicyHost {
    /// One capped call in a fresh store and instance.
    pub(crate) fn call<R: Send>(
        &self,
        policy: &Policy,
        what: &'static str,
        f: impl FnOnce(&guest::Guest, &mut Store<State>) -> wasmtime::Result<R> + Send,
    ) -> Result<(R, Vec<String>), PolicyError> {
        std::thread::scope(|s| {
            s.spawn(|| self.call_here(policy, what, f))
                .join()
                .expect("policy thread")
        })
    }

    fn call_here<R>(
        &self,
        policy: &Policy,
        what: &'static str,
        f: impl FnOnce(&guest::Guest, &mut Store<State>) -> wasmtime::Result<R>,
    ) -> Result<(R, Vec<String>), PolicyError> {
        let module = policy.label.clone();
        let mut store = sandbox::store(&self.engine, &self.limits);
        let result = policy
            .pre
            .instantiate(&mut store)
            .and_then(|instance| f(instance.pushgate_policy_policy(), &mut store));
        let logs = store
            .data()
            .logs
            .iter()
            .map(|(level, msg)| format!("{}: {msg}", level_name(*level)))
            .collect();
        match result {
            Ok(r) => Ok((r, logs)),
            Err(e) => Err(self.classify(e, &store, module, what)),
        }
    }

    fn classify(
        &self,
        e: wasmtime::Error,
        store: &Store<State>,
        module: String,
        what: &'static str,
    ) -> PolicyError {
        match e.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::OutOfFuel) => PolicyError::Cap {
                module,
                what,
                cap: format!("fuel ({} units)", self.limits.fuel),
            },
            Some(wasmtime::Trap::Interrupt) => PolicyError::Cap {
                module,
                what,
                cap: format!("time ({:?})", self.limits.deadline),
            },
            _ => {
                if store.data().limits.memory_refused {
                    PolicyError::Cap {
                        module,
                        what,
                        cap: format!("memory ({} MiB)", self.limits.memory >> 20),
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
}
