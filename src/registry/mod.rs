//! The registry: the only code that speaks the distribution protocol.
//!
//! * [`reference`]: repository names, references and tags, as the spec and
//!   Docker spell them;
//! * [`transport`]: one HTTP client per registry and identity, auth (Basic, and
//!   Docker token auth with scoped tokens), retries, stall timeouts, `--debug`;
//!   [`challenge`] parses what a 401 asks for, [`retry`] decides the waits,
//!   [`tls`] finds CAs and client certificates;
//! * [`auth`]: which auth file, and which of its entries, applies to a registry;
//! * [`ops`]: the operations themselves (tags, blobs, manifests), bounded reads,
//!   digests from bytes, writes checked before they are repeated; its child
//!   `artifact_ops` reads and writes small non-image content whole (policy
//!   modules);
//! * [`error`] and [`explain`]: failures as data, then as messages that name the
//!   registry and the way out; credentials never appear in any of them.
//!
//! This is pushgate's own client over reqwest rather than oci-client: the
//! retries with `Retry-After`, the check of a write whose answer was lost,
//! resumable chunked uploads, one challenge per registry instead of a ping per
//! operation, and digests taken from bytes all live below the level oci-client
//! exposes.

pub mod auth;
pub mod challenge;
pub mod error;
mod explain;
mod ops;
pub mod reference;
pub mod retry;
pub mod tls;
pub mod transport;

pub use explain::{Explained, Who};

pub use ops::{BlobSource, Fetched, MAX_MANIFEST, Repository};
pub use reference::{Reference, RepoName, Target, check_tag};
pub use retry::RetryPolicy;
pub use transport::{Clients, Options, Transport};
