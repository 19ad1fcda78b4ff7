//! The policy host: runs WASM policy components, sandboxed and capped.
//!
//! A policy is a component implementing `pushgate:policy/policy@0.1.0`
//! (`wit/policy.wit`). It is linked with a WASI that grants nothing, so that
//! components built for `wasm32-wasip2` load, but can observe nothing: no
//! preopened directories, no environment, no arguments, no sockets, clocks
//! frozen at the epoch and random bytes from a fixed cycle. Same facts in, same
//! decision out.
//!
//! Each call runs in a fresh store with its own fuel, memory limit and wall-clock
//! deadline. Any way a call can go wrong (a trap, an exhausted cap, a malformed
//! answer) comes back as a [`PolicyError`] naming the module, which the caller
//! turns into a `fail`: the host fails closed.
//!
//! Components are compiled once per engine and cached by content, so many
//! containers sharing a policy pay for compilation once; each call then only
//! instantiates, which is cheap.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::decide::Decision;
use crate::digest::Digest;
use crate::facts::Facts;
use crate::plan::Verdict;

mod cache;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "policy-module",
    });
}

use bindings::exports::pushgate::policy::policy as guest;
use bindings::pushgate::policy::host;

/// The contract's exported interface, as it appears in a component's exports.
pub const CONTRACT: &str = "pushgate:policy/policy@0.1.0";

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

/// Why a policy gave no usable answer. The message names the module.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy module {module}: cannot read it: {reason}")]
    Unreadable { module: String, reason: String },
    #[error("policy module {module}: not a usable component: {reason}")]
    Invalid { module: String, reason: String },
    #[error("policy module {module} does not implement the contract {CONTRACT}: {reason}")]
    Contract { module: String, reason: String },
    #[error("policy module {module}: {what} exceeded its {cap} cap")]
    Cap {
        module: String,
        what: &'static str,
        cap: String,
    },
    #[error("policy module {module} trapped in {what}: {reason}")]
    Trap {
        module: String,
        what: &'static str,
        reason: String,
    },
    #[error("policy module {module} rejected the settings: {reason}")]
    Settings { module: String, reason: String },
}

/// What a module says about itself, plus where it came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PolicyInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub settings_help: String,
    pub sample_settings: String,
    pub sha256: Digest,
    pub path: PathBuf,
    pub size: u64,
    /// The contract interface the module exports.
    pub contract: String,
    /// Everything the component imports (WASI interfaces and the host's log).
    pub imports: Vec<String>,
}

/// What a file holds, as far as it can be read: for `policy inspect`, which must
/// say something useful even about a module that does not load.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Inspection {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: Digest,
    pub exports: Vec<String>,
    pub imports: Vec<String>,
    /// The loaded module's description, or why it does not load.
    #[serde(with = "result_as_object")]
    pub loaded: Result<PolicyInfo, String>,
}

mod result_as_object {
    use serde::Serializer;

    pub fn serialize<S: Serializer>(
        r: &Result<super::PolicyInfo, String>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        match r {
            Ok(info) => m.serialize_entry("ok", info)?,
            Err(e) => m.serialize_entry("error", e)?,
        }
        m.end()
    }
}

/// A compiled, contract-checked policy module.
pub struct Policy {
    pub info: PolicyInfo,
    pre: bindings::PolicyModulePre<State>,
    component: Component,
    label: String,
}

/// One engine per run: compiles modules once and runs every call.
pub struct PolicyHost {
    engine: Engine,
    linker: Linker<State>,
    limits: Limits,
    cache: Mutex<HashMap<Digest, Arc<Policy>>>,
    ticker_stop: Arc<AtomicBool>,
}

const NOT_WASM: &str = "not a WebAssembly file";

/// The epoch ticks this often; deadlines are counted in ticks.
const TICK: Duration = Duration::from_millis(10);

struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: Limiter,
    logs: Vec<(host::Level, String)>,
}

/// Wasmtime's store limits, remembering whether a memory growth was refused, so a
/// trap can be told apart as "exceeded the memory cap".
struct Limiter {
    inner: StoreLimits,
    memory_refused: bool,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let res = self.inner.memory_growing(current, desired, maximum);
        if !matches!(res, Ok(true)) {
            self.memory_refused = true;
        }
        res
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
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

/// A log line is capped, and so is their number: a policy cannot flood the output.
const MAX_LOG_LINES: usize = 100;
const MAX_LOG_CHARS: usize = 1000;

impl bindings::pushgate::policy::types::Host for State {}

impl host::Host for State {
    fn log(&mut self, level: host::Level, message: String) {
        if self.logs.len() < MAX_LOG_LINES {
            let message: String = message.chars().take(MAX_LOG_CHARS).collect();
            self.logs.push((level, message));
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

/// A WASI context that grants nothing and varies in nothing.
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

impl PolicyHost {
    pub fn new(limits: Limits) -> anyhow::Result<PolicyHost> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.consume_fuel(true);
        config.epoch_interruption(true);
        config.cranelift_nan_canonicalization(true);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        bindings::PolicyModule::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)?;

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
        Ok(PolicyHost {
            engine,
            linker,
            limits,
            cache: Mutex::new(HashMap::new()),
            ticker_stop,
        })
    }

    /// Loads a module: compiles it (once per content), checks it implements the
    /// contract, and reads its metadata.
    pub fn load(&self, path: &Path) -> Result<Arc<Policy>, PolicyError> {
        let label = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| PolicyError::Unreadable {
            module: label.clone(),
            reason: e.to_string(),
        })?;
        let sha256 = Digest::of(&bytes);
        if let Some(p) = self.cache.lock().expect("policy cache").get(&sha256) {
            return Ok(p.clone());
        }
        let invalid = |reason: String| PolicyError::Invalid {
            module: label.clone(),
            reason,
        };
        if !bytes.starts_with(b"\0asm") {
            return Err(invalid(NOT_WASM.into()));
        }
        let component = cache::compile(&self.engine, &bytes, &sha256).map_err(|e| {
            invalid(format!(
                "{e:#} (a policy must be a component built for wasm32-wasip2)"
            ))
        })?;
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        if !exports.iter().any(|e| e == CONTRACT) {
            let reason = match exports
                .iter()
                .find(|e| e.starts_with("pushgate:policy/policy@"))
            {
                Some(other) => format!("it exports {other}, an incompatible contract version"),
                None => format!("it exports [{}]", exports.join(", ")),
            };
            return Err(PolicyError::Contract {
                module: label,
                reason,
            });
        }
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| invalid(format!("it needs an import the host does not offer: {e:#}")))?;
        let pre =
            bindings::PolicyModulePre::new(instance_pre).map_err(|e| PolicyError::Contract {
                module: label.clone(),
                reason: format!("{e:#}"),
            })?;
        let mut policy = Policy {
            info: PolicyInfo {
                name: String::new(),
                version: String::new(),
                description: String::new(),
                settings_help: String::new(),
                sample_settings: String::new(),
                sha256: sha256.clone(),
                path: path.to_path_buf(),
                size: bytes.len() as u64,
                contract: CONTRACT.to_string(),
                imports: component
                    .component_type()
                    .imports(&self.engine)
                    .map(|(name, _)| name.to_string())
                    .collect(),
            },
            pre,
            component,
            label,
        };
        let meta = self.call(&policy, "metadata", |p, s| p.call_metadata(s))?.0;
        if meta.name.trim().is_empty() {
            return Err(PolicyError::Contract {
                module: policy.label,
                reason: "its metadata has an empty name".into(),
            });
        }
        policy.info.name = meta.name;
        policy.info.version = meta.version;
        policy.info.description = meta.description;
        policy.info.settings_help = meta.settings_help;
        policy.info.sample_settings = meta.sample_settings;
        let policy = Arc::new(policy);
        self.cache
            .lock()
            .expect("policy cache")
            .insert(sha256, policy.clone());
        Ok(policy)
    }

    /// Describes a module file: its imports and exports, and whether it loads.
    pub fn inspect(&self, path: &Path) -> Result<Inspection, PolicyError> {
        let label = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| PolicyError::Unreadable {
            module: label.clone(),
            reason: e.to_string(),
        })?;
        if !bytes.starts_with(b"\0asm") {
            return Err(PolicyError::Invalid {
                module: label,
                reason: NOT_WASM.into(),
            });
        }
        let loaded = self.load(path);
        // A module that loads was compiled already; one that does not is compiled
        // here only to list what it exports and imports.
        let component = match &loaded {
            Ok(p) => p.component.clone(),
            Err(_) => Component::new(&self.engine, &bytes).map_err(|e| PolicyError::Invalid {
                module: label,
                reason: format!("{e:#} (a policy must be a component built for wasm32-wasip2)"),
            })?,
        };
        let ty = component.component_type();
        Ok(Inspection {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            sha256: Digest::of(&bytes),
            exports: ty
                .exports(&self.engine)
                .map(|(n, _)| n.to_string())
                .collect(),
            imports: ty
                .imports(&self.engine)
                .map(|(n, _)| n.to_string())
                .collect(),
            loaded: loaded.map(|p| p.info.clone()).map_err(|e| e.to_string()),
        })
    }

    /// Asks the module whether it accepts `settings` (a JSON document).
    pub fn validate_settings(&self, policy: &Policy, settings: &str) -> Result<(), PolicyError> {
        let (res, _) = self.call(policy, "validate-settings", |p, s| {
            p.call_validate_settings(s, settings)
        })?;
        res.map_err(|reason| PolicyError::Settings {
            module: policy.label.clone(),
            reason,
        })
    }

    /// Runs `decide`. Returns the decision and the module's log lines.
    pub fn decide(
        &self,
        policy: &Policy,
        facts: &Facts,
    ) -> Result<(Decision, Vec<String>), PolicyError> {
        let wit_facts = to_wit(facts);
        let (d, logs) = self.call(policy, "decide", |p, s| p.call_decide(s, &wit_facts))?;
        let decision = match d {
            guest::Decision::Skip(r) => Decision::Skip(r),
            guest::Decision::Push(r) => Decision::Push(r),
            guest::Decision::Fail(r) => Decision::Fail(r),
        };
        Ok((decision, logs))
    }

    /// One capped call in a fresh store and instance.
    fn call<R>(
        &self,
        policy: &Policy,
        what: &'static str,
        f: impl FnOnce(&guest::Guest, &mut Store<State>) -> wasmtime::Result<R>,
    ) -> Result<(R, Vec<String>), PolicyError> {
        let module = policy.label.clone();
        let state = State {
            wasi: sealed_wasi(),
            table: ResourceTable::new(),
            limits: Limiter {
                inner: StoreLimitsBuilder::new()
                    .memory_size(self.limits.memory)
                    .trap_on_grow_failure(true)
                    .build(),
                memory_refused: false,
            },
            logs: Vec::new(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_fuel(self.limits.fuel).expect("fuel is enabled");
        let ticks = (self.limits.deadline.as_millis() / TICK.as_millis()).max(1) as u64 + 1;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();

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

impl Drop for PolicyHost {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn level_name(l: host::Level) -> &'static str {
    match l {
        host::Level::Debug => "debug",
        host::Level::Info => "info",
        host::Level::Warn => "warn",
    }
}

fn to_wit(f: &Facts) -> guest::Facts {
    use bindings::pushgate::policy::types as t;
    t::Facts {
        container: f.container.clone(),
        repo: f.repo.clone(),
        tags: f
            .tags
            .iter()
            .map(|x| t::TagFact {
                name: x.name.clone(),
                current: x.current.clone(),
                is_desired: x.is_desired,
            })
            .collect(),
        build_id: f.build_id.clone(),
        key: f.key.clone(),
        requested_arches: f.requested_arches.clone(),
        present_arches: f.present_arches.clone(),
        arches: f
            .arches
            .iter()
            .map(|a| t::ArchFact {
                arch: a.arch.clone(),
                has_key: a.has_key,
                recorded_digest: a.recorded_digest.clone(),
                desired_digest: a.desired_digest.clone(),
                registry_digest: a.registry_digest.clone(),
            })
            .collect(),
        desired_list_digest: f.desired_list_digest.clone(),
        verdict: match f.verdict {
            Verdict::UpToDate => t::Verdict::UpToDate,
            Verdict::RecordOnly => t::Verdict::RecordOnly,
            Verdict::Push => t::Verdict::Push,
        },
        verdict_reason: f.verdict_reason.clone(),
        force: f.force,
        dry_run: f.dry_run,
        settings: f.settings.clone(),
    }
}
