//! Types shared by Cairn's programs: service specs, the OCI bundles crun
//! runs them from, the update manifest and the cloud images' manifest.
//!
//! Nothing here touches files or processes. [`service::parse`] takes the
//! text of a service file, [`bundle::oci_config`] turns the result into an
//! OCI runtime config, and the caller does the reading and writing. That
//! keeps the rules in one place, testable without a system, and the same
//! for `cairn-init` on the device and for `cairnctl` checking files at
//! build time.
//!
//! A service file, in short (see [`service`] for every key and default):
//!
//! ```toml
//! rootfs = "/usr/lib/cairn/rootfs/chrony"
//! command = ["/usr/sbin/chronyd", "-d"]
//! capabilities = ["CAP_SYS_TIME"]
//! host_namespaces = ["network"]
//! ```

// The README points at these docs, so every public item needs one.
#![warn(missing_docs)]

mod locate;

pub mod bundle;
pub mod config;
pub mod images;
pub mod manifest;
pub mod seccomp;
pub mod service;
pub mod wire;

#[cfg(test)]
mod proptests;

pub use bundle::{oci_config, to_json, BundleError};
pub use service::{
    start_order, Check, Condition, Health, Limits, MountSpec, Restart, RestartPolicy, Root,
    Seccomp, ServiceSpec, SpecError, DEFAULT_CAPS,
};
