//! The machine config, as PID 1 takes it. `cairn-config boot` finds, checks
//! and keeps the config (TOML stays out of PID 1); PID 1 reads its short
//! hand-off: settings as command line words, which the real kernel command
//! line then overrides, and lines to log.

use crate::cmdline::{self, Settings};
use cairn_model::config::handoff;
use std::path::Path;
use std::time::Duration;
use tracing::{error, info, warn};

pub const LOADER: &str = "/usr/bin/cairn-config";
/// The loader bounds each source itself (a metadata service costs at most
/// about 15 s); this bounds it all the same, inside the watchdog, which is
/// petted before and after.
const LIMIT: Duration = Duration::from_secs(25);
/// The settings a machine config may give; the rest stay the command line's.
const CONFIG_KEYS: &[&str] = &["hostname", "ip", "gw", "dns", "iface", "enable", "disable", "modules", "log"];

/// What the loader needs to see its sources: QEMU's fw_cfg in sysfs, CDs on
/// virtio-scsi, and FAT and ISO9660 for a config disk. The loader finds a
/// config disk by its label in the raw superblock, so the file systems are
/// only needed to mount one: with the boot disk the only disk, they are not
/// loaded (five module files, about a tenth of a second under TCG).
fn modules() -> Vec<String> {
    let mut m: Vec<&str> = Vec::new();
    let vendor = std::fs::read_to_string("/sys/class/dmi/id/sys_vendor").unwrap_or_default();
    if vendor.trim() == "QEMU" {
        m.push("qemu_fw_cfg");
    }
    let scsi = virtio_scsi_present();
    if scsi {
        m.extend(["virtio_scsi", "sr_mod"]);
    }
    // A CD on virtio-scsi shows up only once sr_mod is in.
    if scsi || disks(Path::new("/sys/block")) > 1 {
        // vfat's default iocharset on Debian's kernel is ascii: without
        // nls_ascii a FAT config disk does not mount.
        m.extend(["vfat", "nls_cp437", "nls_ascii", "isofs"]);
    }
    m.into_iter().map(str::to_string).collect()
}

/// How many disks the machine has, Cairn's own device-mapper and loop
/// devices and RAM disks aside.
fn disks(sys_block: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(sys_block) else { return 0 };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            !["dm-", "loop", "ram", "zram"].iter().any(|p| name.starts_with(p))
        })
        .count()
}

fn virtio_scsi_present() -> bool {
    let Ok(entries) = std::fs::read_dir("/sys/bus/pci/devices") else { return false };
    entries.filter_map(Result::ok).any(|e| {
        let read = |f: &str| std::fs::read_to_string(e.path().join(f)).unwrap_or_default();
        // Red Hat's virtio vendor id; SCSI is 0x1004 (legacy) or 0x1048 (modern).
        read("vendor").trim() == "0x1af4" && matches!(read("device").trim(), "0x1004" | "0x1048")
    })
}

/// What the loader said at boot.
pub struct Loaded {
    /// What the ready line shows: `source:generation` or `none`.
    pub config: String,
    /// The platform it detected.
    pub platform: String,
    /// Nothing found yet; try again once the first link is up.
    pub network: bool,
    /// A `cairnctl config try` is on trial this boot: seconds to its revert.
    pub try_secs: Option<u64>,
}

/// Runs the loader's first phase (local sources, STATE) and applies its
/// settings under the command line's.
pub fn load(release: &str, cmdline: &[u8], settings: &mut Settings) -> Loaded {
    let none = Loaded { config: "none".into(), platform: String::new(), network: false, try_secs: None };
    if !Path::new(LOADER).exists() {
        return none;
    }
    crate::boot::load_module_names(release, &modules());
    crate::timeline::mark("config_modules");
    match run_and_apply(&["boot"], cmdline, settings, &mut || {}) {
        Some(h) => Loaded { config: h.config, platform: h.platform, network: h.network, try_secs: h.try_secs },
        None => none,
    }
}

/// The second phase, once the first link has an address: the sources that
/// need the network. Returns the config now in force, if one was found.
pub fn load_network(cmdline: &[u8], settings: &mut Settings, pet: &mut dyn FnMut()) -> Option<String> {
    let h = run_and_apply(&["boot", "--network"], cmdline, settings, pet)?;
    (h.config != "none").then_some(h.config)
}

/// Whether a change of settings needs the network set up again, which the
/// running network thread cannot do.
pub fn network_changed(before: &Settings, after: &Settings) -> bool {
    before.net != after.net || before.gateway != after.gateway || before.dns != after.dns || before.iface != after.iface
}

fn run_and_apply(args: &[&str], cmdline: &[u8], settings: &mut Settings, pet: &mut dyn FnMut()) -> Option<handoff::Handoff> {
    let h = match run(args, pet) {
        Ok(h) => h,
        Err(e) => {
            error!("machine config: {e}; running without one");
            return None;
        }
    };
    *settings = settings_from(&h, cmdline);
    Some(h)
}

/// Runs the loader with `args` and reads its hand-off.
pub fn run(args: &[&str], pet: &mut dyn FnMut()) -> Result<handoff::Handoff, String> {
    let text = crate::helper::run(LOADER, args, LIMIT, pet)?;
    handoff::read(&text).map_err(|e| format!("{LOADER}'s answer is garbled ({e})"))
}

/// Logs what the loader said and returns the settings its answer gives,
/// under the command line's.
pub fn settings_from(h: &handoff::Handoff, cmdline: &[u8]) -> Settings {
    for (level, msg) in &h.logs {
        match level.as_str() {
            "error" => error!("{msg}"),
            "warn" => warn!("{msg}"),
            _ => info!("{msg}"),
        }
    }
    let (words, refused): (Vec<&String>, Vec<&String>) = h.args.iter().partition(|a| {
        let key = a.strip_prefix("cairn.").and_then(|r| r.split('=').next()).unwrap_or("");
        CONFIG_KEYS.contains(&key)
    });
    for r in refused {
        warn!("machine config: setting {r} is not one a config may give; ignored");
    }
    let mut config_line: Vec<u8> = Vec::new();
    for w in &words {
        config_line.extend_from_slice(w.as_bytes());
        config_line.push(b' ');
    }
    let (_, warnings) = cmdline::parse(&config_line);
    for w in warnings {
        warn!("machine config: {w}");
    }
    // The command line comes last, so what it says wins.
    config_line.extend_from_slice(cmdline);
    cmdline::parse(&config_line).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disks_count_whole_disks_but_not_cairns_own_devices() {
        let d = std::env::temp_dir().join(format!("cairn-config-disks-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        for name in ["vda", "dm-0", "loop0", "ram0", "zram0"] {
            std::fs::create_dir_all(d.join(name)).unwrap();
        }
        assert_eq!(disks(&d), 1, "the boot disk alone");
        std::fs::create_dir_all(d.join("vdb")).unwrap();
        assert_eq!(disks(&d), 2, "a second disk may be a config disk");
        std::fs::remove_dir_all(&d).unwrap();
        assert_eq!(disks(&d), 0);
    }

    #[test]
    fn only_config_keys_are_settings_a_config_may_give() {
        for k in CONFIG_KEYS {
            let (_, w) = cmdline::parse(format!("cairn.{k}=x").as_bytes());
            assert!(!w.iter().any(|w| matches!(w, cmdline::Warning::UnknownKey { .. })), "{k} is a command line key");
        }
        assert!(!CONFIG_KEYS.contains(&"slot") && !CONFIG_KEYS.contains(&"verity_root"), "the boot entry's keys never come from a config");
    }

    #[test]
    fn the_command_line_wins_over_the_config() {
        let mut line = b"cairn.hostname=from-config cairn.ip=10.0.2.77/24 ".to_vec();
        line.extend_from_slice(b"console=ttyS0 cairn.hostname=from-cmdline");
        let (s, _) = cmdline::parse(&line);
        assert_eq!(s.hostname.as_deref(), Some("from-cmdline"));
        assert!(matches!(s.net, cmdline::NetMode::Static(_)));
    }
}
