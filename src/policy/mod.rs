//! The policy host: runs WASM policy components, sandboxed and capped.
//!
//! A policy is a component implementing one of the contract versions the host
//! runs ([`CONTRACTS`]: the newest is `wit/policy.wit`, older ones are kept as
//! released in `wit/history/`). It is linked with a WASI that grants nothing, so that
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

//!
//! * [`sandbox`]: the sealed WASI, the caps and the engine that enforces them;
//! * [`load`] and [`cache`]: compiling a module once, checking the contract;
//! * [`call`]: one capped call, on a thread of its own;
//! * [`metadata`]: what a module says about itself, read bounded and inert;
//! * [`contracts`]: the contract versions, their bindings, one face for calls;
//! * [`convert`]: the contract's plain data to and from each version's bindings;
//! * [`inspect`]: describing a module file for `policy inspect`;
//! * [`remote`]: modules published to and fetched from registries as OCI
//!   artifacts, verified by digest and cached on disk.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use crate::contract::{Decision, Facts};
use crate::digest::Digest;

mod cache;
mod call;
mod contracts;
mod convert;
mod inspect;
mod load;
mod metadata;
pub mod remote;
mod sandbox;

pub use contracts::{CONTRACT, CONTRACTS, runs};
pub use inspect::{ArtifactSummary, Inspection};
pub use sandbox::Limits;

/// Why a policy gave no usable answer. The message names the module.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy module {module}: cannot read it: {reason}")]
    Unreadable { module: String, reason: String },
    #[error("policy module {module}: not a usable component: {reason}")]
    Invalid { module: String, reason: String },
    #[error("policy module {module} does not implement a contract this pushgate runs ({}): {reason}", CONTRACTS.join(", "))]
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
    /// What was wrong with the metadata as the module gave it (a field over its
    /// bound, control characters): `policy check` reports each as a problem.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metadata_problems: Vec<String>,
    pub sha256: Digest,
    pub path: PathBuf,
    pub size: u64,
    /// The contract interface the module exports (one of [`CONTRACTS`]).
    pub contract: String,
    /// Everything the component imports (WASI interfaces and the host's log).
    pub imports: Vec<String>,
    /// Fetched from a registry: the reference pinned to the digest it resolved to
    /// (`oci://REGISTRY/REPO@sha256:…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// A compiled, contract-checked policy module.
pub struct Policy {
    pub info: PolicyInfo,
    pre: contracts::Pre,
    component: Component,
    label: String,
}

impl Policy {
    /// How the host's own messages name the module: its path, or the reference
    /// it was fetched by.
    pub fn label(&self) -> &str {
        &self.label
    }
}

/// One engine per run: compiles modules once and runs every call.
pub struct PolicyHost {
    engine: Engine,
    linker: Linker<sandbox::State>,
    limits: Limits,
    /// Loaded modules by content and by how they are named (a module fetched
    /// from a registry is named by its reference, not by its cached file).
    cache: Mutex<HashMap<(Digest, String), Arc<Policy>>>,
    ticker_stop: Arc<AtomicBool>,
}

const NOT_WASM: &str = "not a WebAssembly file";

impl PolicyHost {
    pub fn new(limits: Limits) -> anyhow::Result<PolicyHost> {
        let (engine, linker, ticker_stop) = sandbox::engine()?;
        Ok(PolicyHost {
            engine,
            linker,
            limits,
            cache: Mutex::new(HashMap::new()),
            ticker_stop,
        })
    }

    /// Asks the module whether it accepts `settings` (a JSON document).
    pub fn validate_settings(&self, policy: &Policy, settings: &str) -> Result<(), PolicyError> {
        let settings = settings.to_string();
        let (res, _) = self.call(policy, "validate-settings", move |g, s| {
            g.validate_settings(s, &settings)
        })?;
        res.map_err(|reason| PolicyError::Settings {
            module: policy.label.clone(),
            reason: convert::inert(&reason, convert::MAX_REASON_CHARS),
        })
    }

    /// Runs `decide`. Returns the decision and the module's log lines.
    pub fn decide(
        &self,
        policy: &Policy,
        facts: &Facts,
    ) -> Result<(Decision, Vec<String>), PolicyError> {
        let facts = facts.clone();
        self.call(policy, "decide", move |g, s| g.decide(s, &facts))
    }
}

impl Drop for PolicyHost {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}
