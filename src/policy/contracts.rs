//! The contract versions this host runs, and the one face the rest of the host
//! sees of them.
//!
//! Each released version of `wit/` has bindings of its own, generated from the
//! WIT as released (the newest from `wit/`, older ones from `wit/history/`).
//! A module is bound to the version it exports, and every call goes through
//! [`Guest`]: it gives each version the facts that version knows (the plain
//! [`Facts`] mirror the newest) and reads its answers back into the host's
//! plain data. A new version adds a module here, an arm to each match, and its
//! conversions in [`super::convert`]; no other file changes.

use wasmtime::Store;
use wasmtime::component::{HasSelf, InstancePre, Linker};

use super::convert;
use super::sandbox::State;
use crate::contract::{Decision, Facts};

/// Bindings of the newest contract, `wit/policy.wit`.
pub(crate) mod v0_2 {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "policy-module",
    });
}

/// Bindings of contract 0.1.0 as released, `wit/history/0.1.0/policy.wit`.
pub(crate) mod v0_1 {
    wasmtime::component::bindgen!({
        path: "wit/history/0.1.0",
        world: "policy-module",
    });
}

/// The contract interfaces this host runs, newest first: the interface a
/// module exports names its version.
pub const CONTRACTS: [&str; 2] = [
    "pushgate:policy/policy@0.2.0",
    "pushgate:policy/policy@0.1.0",
];

/// The newest contract: what `policy new` scaffolds against.
pub const CONTRACT: &str = CONTRACTS[0];

/// Whether this host runs modules exporting `contract`.
pub fn runs(contract: &str) -> bool {
    CONTRACTS.contains(&contract)
}

/// A module ready to instantiate, bound to its contract version.
#[derive(Clone)]
pub(crate) enum Pre {
    V0_2(v0_2::PolicyModulePre<State>),
    V0_1(v0_1::PolicyModulePre<State>),
}

impl Pre {
    /// Binds `pre` to `contract` (one of [`CONTRACTS`]), checking that the
    /// module's exports have that version's types.
    pub(crate) fn new(contract: &str, pre: InstancePre<State>) -> wasmtime::Result<Pre> {
        Ok(match contract {
            c if c == CONTRACTS[0] => Pre::V0_2(v0_2::PolicyModulePre::new(pre)?),
            c if c == CONTRACTS[1] => Pre::V0_1(v0_1::PolicyModulePre::new(pre)?),
            other => wasmtime::bail!("no bindings for the contract {other}"),
        })
    }

    pub(crate) fn instantiate(&self, store: &mut Store<State>) -> wasmtime::Result<Guest> {
        Ok(match self {
            Pre::V0_2(p) => Guest::V0_2(p.instantiate(store)?),
            Pre::V0_1(p) => Guest::V0_1(p.instantiate(store)?),
        })
    }
}

/// An instance of a module, of whichever contract version.
pub(crate) enum Guest {
    V0_2(v0_2::PolicyModule),
    V0_1(v0_1::PolicyModule),
}

/// `policy-metadata`, the same in every version so far.
pub(crate) struct RawMetadata {
    pub name: String,
    pub version: String,
    pub description: String,
    pub settings_help: String,
    pub sample_settings: String,
}

macro_rules! raw_metadata {
    ($m:expr) => {{
        let m = $m;
        RawMetadata {
            name: m.name,
            version: m.version,
            description: m.description,
            settings_help: m.settings_help,
            sample_settings: m.sample_settings,
        }
    }};
}

impl Guest {
    pub(crate) fn metadata(&self, store: &mut Store<State>) -> wasmtime::Result<RawMetadata> {
        Ok(match self {
            Guest::V0_2(g) => raw_metadata!(g.pushgate_policy_policy().call_metadata(store)?),
            Guest::V0_1(g) => raw_metadata!(g.pushgate_policy_policy().call_metadata(store)?),
        })
    }

    pub(crate) fn validate_settings(
        &self,
        store: &mut Store<State>,
        settings: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Guest::V0_2(g) => g
                .pushgate_policy_policy()
                .call_validate_settings(store, settings),
            Guest::V0_1(g) => g
                .pushgate_policy_policy()
                .call_validate_settings(store, settings),
        }
    }

    /// `decide`, given the facts the module's version knows.
    pub(crate) fn decide(
        &self,
        store: &mut Store<State>,
        facts: &Facts,
    ) -> wasmtime::Result<Decision> {
        Ok(match self {
            Guest::V0_2(g) => convert::v0_2::decision(
                g.pushgate_policy_policy()
                    .call_decide(store, &convert::v0_2::facts(facts))?,
            ),
            Guest::V0_1(g) => convert::v0_1::decision(
                g.pushgate_policy_policy()
                    .call_decide(store, &convert::v0_1::facts(facts))?,
            ),
        })
    }
}

/// Offers every version's host interface (the log) to the modules.
pub(crate) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    v0_2::PolicyModule::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    v0_1::PolicyModule::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    Ok(())
}

impl v0_2::pushgate::policy::types::Host for State {}
impl v0_1::pushgate::policy::types::Host for State {}

/// The host's `log`, for one version's bindings: the same in every version.
macro_rules! host_log {
    ($v:ident) => {
        impl $v::pushgate::policy::host::Host for State {
            fn log(&mut self, level: $v::pushgate::policy::host::Level, message: String) {
                use $v::pushgate::policy::host::Level;
                let level = match level {
                    Level::Debug => "debug",
                    Level::Info => "info",
                    Level::Warn => "warn",
                };
                self.record_log(level, &message);
            }
        }
    };
}

host_log!(v0_2);
host_log!(v0_1);
