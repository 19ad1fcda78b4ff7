//! A test-only policy whose metadata is hostile and huge: the module of
//! `hostile-metadata` (see there) with a 40 MiB big string, aliased three times,
//! which the host must refuse to lift (fail closed) without holding it. Never
//! ship it.

/// The size of the aliased metadata string.
const BIG: usize = 40 << 20;

include!("../../hostile-metadata/src/module.rs");
