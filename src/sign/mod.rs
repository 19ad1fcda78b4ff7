//! Signing what pushgate publishes, and attesting why: the offline half of it.
//!
//! Everything here is pure: keys are read from files, and what goes to a
//! registry is built as bytes and parsed from bytes; the registry I/O that
//! stores them is the caller's.
//!
//! * [`key`] reads the key files `cosign generate-key-pair` and
//!   `skopeo generate-sigstore-key` write (ECDSA P-256), and the passphrase file.
//! * [`simple`] is Sigstore "simple signing": the payload naming a reference
//!   and a manifest digest, signed and verified.
//! * [`cosign`] is how cosign and containers/image store those signatures: the
//!   `sha256-<hex>.sig` tag's manifest, one layer per signature.
//! * [`dsse`] is the DSSE envelope and [`attest`] the in-toto statement of a
//!   pushgate decision, published as an OCI 1.1 referrer of the list.
//! * [`referrers`] is the referrers index, and the tag that stands in for the
//!   referrers API on registries without it.
//! * [`trust`] is the named public keys the host verifies with
//!   (`--trust-key NAME=FILE.pub`).
//! * [`oci`] holds the OCI 1.1 artifact shapes those share (descriptors with
//!   annotations and artifactType, manifests with a subject).

pub mod attest;
pub mod cosign;
pub mod dsse;
pub mod key;
pub mod oci;
pub mod referrers;
pub mod simple;
pub mod trust;

pub use key::{PublicKey, SigningKey, read_passphrase_file};
pub use trust::TrustedKeys;
