//! The registry: the only code that speaks the distribution protocol, in
//! layers (as regclient is):
//!
//! * names: [`reference`] (repository names, references and tags, parsed once
//!   at the command line and carried as types after);
//! * the wire: [`client`] (one HTTP client per registry: TLS trust from
//!   [`tls`], mutual TLS, bounds), [`auth`] (which credentials apply, from auth
//!   files and helpers), `token` (challenges as [`challenge`] parses them,
//!   scoped tokens, renewal);
//! * requests as data: [`request`] describes one (operation, method, target,
//!   body, what to do if its answer is lost); the `executor` sends it and owns
//!   auth, retries with per-host backoff ([`retry`]), redirects, lost-answer
//!   checks and the `--debug` trace; `answer` reads what comes back, bounded;
//!   [`observer`] is how it talks to its caller;
//! * operations: `manifests` (tags and manifests), `referrers` (OCI 1.1),
//!   `blobs` (checks, reads, mounts) and `transfer` (one upload: chunks, resumption, 413 halving), on a
//!   `repository`; they build requests and never loop on their own;
//! * failures: [`error`] as data, `explain` as messages that name the
//!   registry and the way out; credentials never appear in either.
//!
//! This is pushgate's own client over reqwest rather than oci-client: the
//! retries with `Retry-After`, the check of a write whose answer was lost,
//! resumable chunked uploads, one challenge per registry instead of a ping per
//! operation, and digests taken from bytes all live below the level oci-client
//! exposes.

mod answer;
pub mod auth;
mod blobs;
pub mod challenge;
pub mod client;
pub mod error;
mod executor;
mod explain;
mod manifests;
pub mod observer;
mod options;
pub mod reference;
mod referrers;
mod repository;
pub mod request;
pub mod retry;
pub mod tls;
mod token;
mod transfer;

pub use blobs::{BlobSource, Upload};
pub use executor::Executor;
pub use explain::{Explained, Who};
pub use manifests::{Fetched, MAX_MANIFEST};
pub use observer::Observer;
pub use options::{Clients, DEFAULT_CHUNK_SIZE, Options, parse_chunk_size};
pub use reference::{Reference, RepoName, Target, check_tag};
pub use repository::Repository;
pub use retry::RetryPolicy;
pub use token::MAX_TOKEN_LIFETIME;
pub use transfer::MIN_CHUNK;
