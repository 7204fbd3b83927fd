//! Cairn's updater, its first half: what an update must pass before it
//! touches the inactive slot. A manifest (TOML) is signed with ed25519 over its
//! exact bytes; the trusted keys ship in the verified root, and a manifest may
//! need k of n signatures so keys rotate without a flag day.
//!
//! Signatures are checked before the manifest is even parsed. Installing,
//! switching the boot entry, the health-gated commit and rollback come next.

pub mod check;
pub mod keys;
pub mod manifest;

pub use check::{check, Context, Refusal};
pub use keys::{Keyring, KeyError};
pub use manifest::{Manifest, Payload, Version};
