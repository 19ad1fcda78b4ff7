//! pushgate: publish multi-arch container images from cosa builds, idempotently.
//!
//! One container goes through a pipeline of plain functions over plain data, and
//! the module names follow it:
//!
//! ```text
//! sources ──► observe ──► plan ──► decide ──► apply ──► record
//! ```
//!
//! * [`sources`] resolves what should be published (a cosa build's archives, or
//!   `--image` sources) and reads it: [`cosa`] owns the workdir files, [`archive`]
//!   reads OCI archives and layouts without extracting them, [`manifest`] turns
//!   them into the exact manifest bytes to publish.
//! * [`observe`] reads remote state (every tag, every blob and manifest) through
//!   [`registry`], the only module that speaks the distribution protocol.
//! * [`plan`] is pure: desired state + observed state → host verdict.
//! * [`decide`] is where the host verdict, or a WASM policy given the [`facts`],
//!   decides skip / push / fail; [`policy`] runs those modules sandboxed.
//! * [`apply`] uploads exactly what the plan says is missing.
//! * [`record`] writes meta.json (under cosa's lock, atomically) and the digest file.
//!
//! [`push`] strings the stages together for one container; the binary in
//! `main.rs` only parses arguments and prints the [`report`].

pub mod apply;
pub mod arch;
pub mod archive;
pub mod auth;
pub mod cases;
pub mod check;
pub mod cosa;
pub mod decide;
pub mod digest;
pub mod facts;
pub mod manifest;
pub mod observe;
pub mod plan;
pub mod policy;
pub mod progress;
pub mod push;
pub mod record;
pub mod registry;
pub mod release;
pub mod report;
pub mod sample;
pub mod scaffold;
pub mod sources;
