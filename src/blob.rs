//! Where a blob's bytes lie on disk: what [`sources`](crate::sources) finds in an
//! archive and [`registry`](crate::registry) streams up. Its own module so that
//! neither of the two has to import the other for it.

use std::path::PathBuf;

/// Where a blob's bytes are: a file, from `offset`, `len` bytes long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRange {
    pub file: PathBuf,
    pub offset: u64,
    pub len: u64,
}
