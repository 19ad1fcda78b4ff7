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
//!   `--image` sources) and reads it without extracting anything; [`manifest`]
//!   turns it into the exact manifest bytes to publish.
//! * [`observe`] reads remote state (every tag, every blob and manifest) through
//!   [`registry`], the only module that speaks the distribution protocol.
//! * [`plan`] is pure: desired state + observed state → host verdict.
//! * [`decide`] is where the host verdict, or a WASM policy given the [`facts`],
//!   decides skip / push / fail; the data crossing that boundary is the
//!   [`contract`], and [`policy`] runs the modules sandboxed.
//! * [`apply`] uploads exactly what the plan says is missing.
//! * [`record`] writes meta.json (under cosa's lock, atomically) and the digest
//!   file; [`meta`] holds the entry schema and the merge rules it follows.
//!
//! [`push`] strings the stages together for one container, [`release`] runs
//! them for a product's containers; the binary only parses arguments and prints
//! the [`report`]; [`decision_log`] appends each decision to an audit log.
//! [`cases`], [`check`] and [`scaffold`] are the policy authoring
//! tools. [`sign`] makes and checks Sigstore signatures and the attestation of
//! each decision; [`signed_policy`] signs policy artifacts and requires them
//! signed.
//!
//! Beside the pipeline, and depending on none of it: [`human`] writes sizes and
//! times for a person, [`atomic`] replaces a file so that a crash leaves the old
//! or the new one, and [`blob`] says where a blob's bytes lie in a file.

pub mod apply;
pub mod arch;
pub mod atomic;
pub mod blob;
pub mod cases;
pub mod check;
pub mod contract;
pub mod decide;
pub mod decision_log;
pub mod digest;
pub mod evidence;
pub mod facts;
#[cfg(test)]
pub(crate) mod fuzz;
pub mod human;
pub mod manifest;
pub mod meta;
pub mod observe;
pub mod outcome;
pub mod plan;
pub mod policy;
pub mod progress;
pub mod push;
pub mod record;
pub mod registry;
pub mod release;
pub mod report;
pub mod scaffold;
pub mod sign;
pub mod signed_policy;
pub mod sources;
pub mod verify;
