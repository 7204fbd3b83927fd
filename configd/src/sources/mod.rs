//! Where a machine config can come from, tried in a fixed order; the first
//! source that answers wins:
//!
//! 1. the kernel command line: `cairn.config.url=` (`http://` or `https://`),
//!    with an optional `cairn.config.sha256=` the document must match;
//! 2. QEMU's fw_cfg item `opt/org.cairn/config`;
//! 3. a config disk: NoCloud (`cidata`/`CIDATA`, FAT or ISO9660, `user-data`
//!    and `meta-data`) or OpenStack's `config-2` (`openstack/latest/user_data`);
//! 4. the platform's metadata service (EC2, GCE, Azure, OpenStack).
//!
//! The first and the last need the network, which is not up yet when the
//! loader first runs: [`Phase::Local`] tries only 2 and 3 (and skips them when
//! a URL is given, which comes first), and says whether a network phase is
//! worth it; [`Phase::Network`], run once the first link has DHCP, tries all
//! four in order. Each source is bounded in time (a metadata service that
//! never answers costs at most about 15 s: four tries of 3 s); one that fails
//! is logged and the next is tried.

pub mod disk;
pub mod fw_cfg;
pub mod http;
pub mod metadata;
pub mod url;

/// A config document found by a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The source's name, as the ready line shows it: `cmdline`, `fw_cfg`,
    /// `nocloud`, `config-2`, `ec2`, `gce`, `azure`, `openstack`.
    pub source: &'static str,
    /// The document.
    pub text: String,
    /// The instance id the source gives, if it gives one: a new one means a
    /// new machine, provisioned afresh.
    pub instance_id: Option<String>,
}

/// Why a source did not give a config.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Reading the source failed.
    #[error("{source_name}: {what}")]
    Failed { source_name: &'static str, what: String },
}

pub(crate) fn failed(source_name: &'static str, what: impl Into<String>) -> SourceError {
    SourceError::Failed { source_name, what: what.into() }
}

/// A user-data document that is cloud-init's, not ours, gets a clear word.
pub(crate) fn check_user_data(source: &'static str, text: &str) -> Result<(), SourceError> {
    let first = text.lines().next().unwrap_or("").trim();
    if first.starts_with("#cloud-config") || first.starts_with("#!") || first.starts_with("Content-Type:") {
        return Err(failed(source, format!("user-data is cloud-init's ({first}); Cairn reads a machine config (TOML, `version = 1`)")));
    }
    Ok(())
}

/// Which sources a run of the loader may try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before the network: fw_cfg and config disks.
    Local,
    /// With the first link up: every source, in order.
    Network,
}

/// Whether a network phase could find what the local one did not.
pub fn network_worth_it(cmdline: &str, platform: &str) -> bool {
    url::given(cmdline) || metadata::exists(platform)
}

/// Tries the sources of `phase` in order; returns the first config found.
/// What each failing source said goes to `notes`.
pub fn first(phase: Phase, cmdline: &str, platform: &str, notes: &mut Vec<String>) -> Option<Found> {
    let endpoints = metadata::Endpoints::default();
    let local = phase == Phase::Local;
    // A URL on the command line comes first; the local phase leaves it all
    // to the network phase rather than take a later source in its place.
    if local && url::given(cmdline) {
        return None;
    }
    let tries: [(&dyn Fn() -> Result<Option<Found>, SourceError>, bool); 4] = [
        (&|| url::fetch(cmdline), !local),
        (&|| fw_cfg::read(std::path::Path::new(fw_cfg::PATH)), true),
        (&|| disk::scan(std::path::Path::new("/sys/class/block"), std::path::Path::new("/dev")), true),
        (&|| metadata::fetch(platform, &endpoints), !local),
    ];
    for (t, allowed) in tries {
        if !allowed {
            continue;
        }
        match t() {
            Ok(Some(f)) => return Some(f),
            Ok(None) => {}
            Err(e) => notes.push(e.to_string()),
        }
    }
    None
}
