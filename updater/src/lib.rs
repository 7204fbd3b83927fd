//! Cairn's updater: signed bundles from a static HTTP repository, installed
//! into the slot that is not running, switched to with one rename, and kept
//! only when the new slot comes up healthy.
//!
//! - [`check`]: signatures over the exact manifest bytes (k of n trusted
//!   keys), expiry, channel, newer than running, the anti-rollback floor,
//!   versions that failed here before;
//! - [`update::Updater`]: download with resume, install, switch, the verdict
//!   of the trial boot, rollback and status;
//! - [`entries`]: systemd-boot entry names and text; [`state`]: what the
//!   updater keeps on STATE.

pub mod check;
pub mod download;
pub mod durable;
pub mod entries;
pub mod http;
pub use cairn_model::manifest;
pub mod keys;
pub mod slot;
pub mod state;
pub mod system;
pub mod update;
pub mod verdict;

#[cfg(test)]
mod proptests;

pub use cairn_model::manifest::{Manifest, Payload, RootPayload, Version};
pub use check::{check, Context, Refusal};
pub use keys::{KeyError, Keyring};
pub use update::{UpdateError, Updater};
