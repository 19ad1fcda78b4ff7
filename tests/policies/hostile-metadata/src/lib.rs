//! A test-only policy whose metadata is hostile, to show that what a module says
//! about itself reaches pushgate's output inert and bounded. Never ship it.
//!
//! The metadata cannot depend on settings, hence modules of their own, sharing
//! `module.rs`; this one's big string is [`BIG`] bytes, the metadata in all
//! under the 1 MiB the host lifts (so it loads, with every field but the sample
//! over its bound); `hostile-metadata-huge` is the same with 40 MiB.
//!
//! * `name` carries terminal escapes (colour, window title, bell) and a line
//!   break followed by a forged `pushgate: debug:` line;
//! * `version`, `description` and `settings-help` are one `BIG`-byte string of
//!   escapes and forged lines: three strings aliasing one region of the module's
//!   memory, so that a host copying each string it is given would hold the region
//!   three times over, whatever the module's memory cap;
//! * `sample-settings` is `{}`, so that `policy check` gets as far as the corpus.
//!
//! `decide` follows the host's verdict; `validate-settings` accepts anything.
//!
//! The aliased strings would be freed three times after the call (by the
//! bindings' post-return), so this module allocates with a bump allocator whose
//! `dealloc` does nothing: every call runs in a fresh instance anyway.

/// The size of the aliased metadata string: three aliases of it stay under the
/// host's 1 MiB.
const BIG: usize = 256 << 10;

include!("module.rs");
