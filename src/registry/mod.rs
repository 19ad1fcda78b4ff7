//! The registry: the only code that speaks the distribution protocol (through
//! `oci-client`).
//!
//! * [`reference`]: repository names and tags, as the spec and Docker spell them;
//! * [`transport`]: connection settings, the client pool, credentials and retries;
//! * [`auth`]: which auth file, and which of its entries, applies to a registry;
//! * [`ops`]: the operations themselves (tags, blobs, manifests);
//! * [`explain`]: failures turned into errors that name the registry and the way
//!   out; credentials never appear in any of them.

pub mod auth;
mod explain;
mod ops;
pub mod reference;
pub mod transport;

pub use ops::Repository;
pub use reference::{check_tag, parse_repo};
pub use transport::{Clients, Options};
