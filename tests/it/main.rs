//! pushgate's integration tests, as one test binary: each module is what was once
//! a test binary of its own, and `support` is the harness they share (real
//! registries, token server, TLS, fault-injecting proxy, running pushgate). One
//! binary links wasmtime once, where 25 linked it 25 times over.
//!
//! Run one area with a filter, e.g. `cargo test --test it push::`.

mod support;

mod archive;
mod auth;
mod bad_input;
mod contracts;
mod cosa_flags;
mod crash;
mod cred_helpers;
mod docker_sources;
mod docs;
mod faults;
mod harness;
mod hostile_registry;
mod image;
mod json_failures;
mod panics;
mod pipes;
mod policy;
mod policy_cache;
mod policy_metadata;
mod policy_oci;
mod policy_signed;
mod policy_signed_shown;
mod policy_tools;
mod progress;
mod promote;
mod proxy;
mod push;
mod registry_auth_tls;
mod release;
mod release_jobs;
mod sign_interop;
mod sign_race;
mod signals;
mod signing;
mod soak;
mod token_tls;
mod transfers;
mod usage;
mod version;
