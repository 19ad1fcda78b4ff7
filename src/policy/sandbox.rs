//! The sandbox a policy runs in: a WASI that grants nothing and varies in nothing,
//! the caps on every call (fuel, memory, wall-clock deadline), and the engine and
//! linker that enforce them.
//!
//! Time does not pass in the sandbox. Both clocks are frozen at zero, and a
//! monotonic-clock subscription (`subscribe-duration`, `subscribe-instant`: what
//! `std::thread::sleep` uses) is ready at once, so sleeping returns immediately
//! and never holds pushgate: a module that waits for the clock to move spins
//! until its fuel or deadline runs out. The deadline itself is kept twice: the
//! engine's epoch interrupts wasm code, and the caller abandons a call still
//! running past it (see [`super::call`]), so no host call can outlast it either.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreContextMut, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::contracts;
use super::convert::{MAX_LOG_CHARS, inert};

/// Caps on every call into a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel per call (roughly, wasm instructions).
    pub fuel: u64,
    /// Linear memory per instance, in bytes.
    pub memory: usize,
    /// Wall-clock time per call.
    pub deadline: Duration,
}

impl Default for Limits {
    /// Far above what an honest policy needs (a `decide` takes well under a
    /// million instructions and a few MiB), far below what would stall a release.
    fn default() -> Limits {
        Limits {
            fuel: 2_000_000_000,
            memory: 256 << 20,
            deadline: Duration::from_secs(5),
        }
    }
}

/// The epoch ticks this often; deadlines are counted in ticks.
const TICK: Duration = Duration::from_millis(10);

pub(crate) struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limits: Limiter,
    /// The module's log lines: level (`debug`, `info`, `warn`) and message.
    pub(crate) logs: Vec<(&'static str, String)>,
}

/// Caps on what an instance may hold, beyond `--policy-memory-mib`: far above what
/// a component built from Rust needs (a handful of each, tables of a few hundred
/// elements).
const MAX_INSTANCES: usize = 64;
const MAX_TABLES: usize = 64;
const MAX_MEMORIES: usize = 16;
/// Table elements, in total over all tables of a store.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Wasmtime's store limits, plus totals: the memory cap bounds the sum of all
/// memories of a store (wasmtime's own is per memory), and so does the table
/// element cap for tables. Remembers whether a memory growth was refused, so a
/// trap can be told apart as "exceeded the memory cap".
pub(crate) struct Limiter {
    inner: StoreLimits,
    memory_cap: usize,
    memory_total: usize,
    table_total: usize,
    pub(crate) memory_refused: bool,
}

impl Limiter {
    fn new(memory_cap: usize) -> Limiter {
        Limiter {
            inner: StoreLimitsBuilder::new()
                .memory_size(memory_cap)
                .table_elements(MAX_TABLE_ELEMENTS)
                .instances(MAX_INSTANCES)
                .tables(MAX_TABLES)
                .memories(MAX_MEMORIES)
                .trap_on_grow_failure(true)
                .build(),
            memory_cap,
            memory_total: 0,
            table_total: 0,
            memory_refused: false,
        }
    }
}

/// The total over all memories (or tables) once one grows from `current` to
/// `desired`.
fn grown(total: usize, current: usize, desired: usize) -> usize {
    total.saturating_sub(current).saturating_add(desired)
}

/// A trap when growing one `what` to `desired` would take the total over all
/// of them (`all`) past `cap`.
fn within(
    total: usize,
    cap: usize,
    (what, all, unit): (&str, &str, &str),
    desired: usize,
) -> wasmtime::Result<()> {
    if total > cap {
        return Err(wasmtime::Error::msg(format!(
            "forcing trap when growing {what} to {desired} {unit}: \
             all {all} would hold {total} {unit}"
        )));
    }
    Ok(())
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = grown(self.memory_total, current, desired);
        let res = within(
            total,
            self.memory_cap,
            ("memory", "memories", "bytes"),
            desired,
        )
        .and_then(|()| self.inner.memory_growing(current, desired, maximum));
        match res {
            Ok(true) => self.memory_total = total,
            _ => self.memory_refused = true,
        }
        res
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = grown(self.table_total, current, desired);
        let res = within(
            total,
            MAX_TABLE_ELEMENTS,
            ("table", "tables", "elements"),
            desired,
        )
        .and_then(|()| self.inner.table_growing(current, desired, maximum));
        if matches!(res, Ok(true)) {
            self.table_total = total;
        }
        res
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A log line is capped and made inert, and so is their number: a policy cannot
/// flood the output. (Each message is lifted from the guest's memory, which the
/// memory cap bounds, and dropped once cut.)
const MAX_LOG_LINES: usize = 100;

impl State {
    /// The host's `log`, in every contract version.
    pub(crate) fn record_log(&mut self, level: &'static str, message: &str) {
        if self.logs.len() < MAX_LOG_LINES {
            self.logs.push((level, inert(message, MAX_LOG_CHARS)));
        }
    }
}

struct FrozenWallClock;
impl wasmtime_wasi::HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

struct FrozenMonotonicClock;
impl wasmtime_wasi::HostMonotonicClock for FrozenMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// A monotonic-clock subscription that is ready at once.
struct Elapsed;

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for Elapsed {
    async fn ready(&mut self) {}
}

/// The version of `wasi:clocks` that wasmtime-wasi links; guests importing any
/// `0.2.x` are linked to it.
const WASI_CLOCKS: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// wasmtime-wasi's `subscribe-duration` and `subscribe-instant` wait on the
/// host's real clock whatever monotonic clock the context has. Replaces them
/// with subscriptions that are ready at once: in the sandbox time does not pass.
fn freeze_monotonic_subscriptions(linker: &mut Linker<State>) -> anyhow::Result<()> {
    fn ready_now(state: &mut State) -> wasmtime::Result<(Resource<DynPollable>,)> {
        let elapsed = state.table.push(Elapsed)?;
        Ok((wasmtime_wasi::p2::subscribe(&mut state.table, elapsed)?,))
    }
    linker.allow_shadowing(true);
    let mut clock = linker.instance(WASI_CLOCKS)?;
    clock.func_wrap(
        "subscribe-duration",
        |mut store: StoreContextMut<'_, State>, (_,): (u64,)| ready_now(store.data_mut()),
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |mut store: StoreContextMut<'_, State>, (_,): (u64,)| ready_now(store.data_mut()),
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// A WASI context that grants nothing and varies in nothing. Its stdin is empty,
/// and what a module writes to stdout or stderr is discarded (wasmtime-wasi's
/// default when none is configured): none of it reaches pushgate's output.
fn sealed_wasi() -> WasiCtx {
    WasiCtx::builder()
        .wall_clock(FrozenWallClock)
        .monotonic_clock(FrozenMonotonicClock)
        .secure_random(wasmtime_wasi::Deterministic::new(vec![0x5a; 32]))
        .insecure_random(wasmtime_wasi::Deterministic::new(vec![0xa5; 32]))
        .insecure_random_seed(0)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

/// The engine every policy of a run is compiled for, and the linker offering
/// them the sealed WASI and the host's log. The returned flag stops the thread
/// that ticks the engine's epoch (the deadline clock) when set.
pub(crate) fn engine() -> anyhow::Result<(Engine, Linker<State>, Arc<AtomicBool>)> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.consume_fuel(true);
    config.epoch_interruption(true);
    config.cranelift_nan_canonicalization(true);
    let engine = Engine::new(&config)?;
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    freeze_monotonic_subscriptions(&mut linker)?;
    contracts::add_to_linker(&mut linker)?;

    // The deadline clock: one thread ticks the engine's epoch while the host lives.
    let ticker_stop = Arc::new(AtomicBool::new(false));
    let (stop, eng) = (ticker_stop.clone(), engine.clone());
    std::thread::Builder::new()
        .name("pushgate-policy-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(TICK);
                eng.increment_epoch();
            }
        })?;
    Ok((engine, linker, ticker_stop))
}

/// The most bytes of strings and lists wasmtime lifts out of a module for one
/// answer (the result of a call, or the arguments of one host call), counted
/// over every string, aliases of one region included: the host's copy of what a
/// module says is bounded by this whatever the module's memory cap. A larger
/// answer fails the call. (wasmtime's default, set here so that it is ours; the
/// metadata call gets far less, [`super::metadata::METADATA_BYTES`].)
pub(crate) const HOSTCALL_BYTES: usize = 128 << 20;

/// A fresh store for one call, with its caps set.
pub(crate) fn store(engine: &Engine, limits: &Limits) -> Store<State> {
    let state = State {
        wasi: sealed_wasi(),
        table: ResourceTable::new(),
        limits: Limiter::new(limits.memory),
        logs: Vec::new(),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    store.set_fuel(limits.fuel).expect("fuel is enabled");
    store.set_hostcall_fuel(HOSTCALL_BYTES);
    let ticks = (limits.deadline.as_millis() / TICK.as_millis()).max(1) as u64 + 1;
    store.set_epoch_deadline(ticks);
    store.epoch_deadline_trap();
    store
}

#[cfg(test)]
mod tests {
    use wasmtime::ResourceLimiter;

    use super::*;

    #[test]
    fn the_memory_cap_is_a_total_over_all_memories() {
        let mut l = Limiter::new(100 << 20);
        assert!(l.memory_growing(0, 60 << 20, None).unwrap());
        assert!(!l.memory_refused);
        // a second memory would take the total past the cap
        assert!(l.memory_growing(0, 60 << 20, None).is_err());
        assert!(l.memory_refused);
        // within the total, growth goes on
        assert!(l.memory_growing(60 << 20, 90 << 20, None).unwrap());
        assert!(l.memory_growing(0, 10 << 20, None).unwrap());
        assert!(l.memory_growing(10 << 20, (10 << 20) + 1, None).is_err());
    }

    #[test]
    fn table_elements_are_capped_in_total_and_instances_tables_memories_counted() {
        let mut l = Limiter::new(100 << 20);
        assert!(l.table_growing(0, 1000, None).unwrap());
        assert!(l.table_growing(0, MAX_TABLE_ELEMENTS - 1000, None).unwrap());
        assert!(l.table_growing(0, 1, None).is_err());
        let mut fresh = Limiter::new(100 << 20);
        assert!(
            fresh
                .table_growing(0, MAX_TABLE_ELEMENTS + 1, None)
                .is_err()
        );
        assert_eq!(l.instances(), MAX_INSTANCES);
        assert_eq!(l.tables(), MAX_TABLES);
        assert_eq!(l.memories(), MAX_MEMORIES);
    }
}
