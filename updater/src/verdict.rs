//! Whether this boot's verdict is in. cairn-init starts `cairnctl update
//! settle` once per UEFI slot boot, when every service is healthy or when
//! `cairn.health_timeout` passes; the verdict may bless or remove boot
//! entries, and the modules that read the ESP load with it. Operator commands
//! that change the ESP wait for it, so they never meet a half-settled boot.

use std::path::Path;
use std::time::Duration;

/// On tmpfs, so it lasts one boot.
const DONE: &str = "/run/cairn/update-verdict";

/// cairn-init's default for `cairn.health_timeout`, in seconds
/// (`init/src/cmdline.rs`).
const HEALTH_TIMEOUT: u64 = 180;

/// Whether cairn-init hands this boot to the updater: a slot disk booted
/// through UEFI.
pub fn expected(cmdline: &str) -> bool {
    crate::system::running_slot(cmdline).is_some() && crate::system::efi()
}

pub fn is_done() -> bool {
    Path::new(DONE).exists()
}

/// Records that the verdict ran (whatever it found).
pub fn mark_done() -> std::io::Result<()> {
    let done = Path::new(DONE);
    if let Some(dir) = done.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(done, b"")
}

/// How long a command waits: the boot's health time limit, and a minute
/// for the verdict itself.
pub fn wait_limit(cmdline: &str) -> Duration {
    let secs = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("cairn.health_timeout="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(HEALTH_TIMEOUT);
    Duration::from_secs(secs.saturating_add(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_limit_follows_the_health_timeout() {
        assert_eq!(wait_limit("quiet cairn.slot=a"), Duration::from_secs(240));
        assert_eq!(wait_limit("cairn.health_timeout=30 cairn.slot=b"), Duration::from_secs(90));
        assert_eq!(wait_limit("cairn.health_timeout=soon"), Duration::from_secs(240));
        let huge = format!("cairn.health_timeout={}", u64::MAX);
        assert_eq!(wait_limit(&huge), Duration::from_secs(u64::MAX), "saturates, never wraps to a short wait");
    }
}
