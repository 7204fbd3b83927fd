//! Stage 1: from the initramfs to the verified root. Finds the slot's root
//! partition, puts dm-verity over it, mounts the erofs root read-only and
//! STATE on /var (grown to fill the disk on first boot), moves the API file
//! systems across, frees the initramfs, switches root and execs stage 2.

pub use cairn_gpt::sysfs as blockdev;
pub mod dm;
pub mod grow;

use crate::cmdline::{Settings, Verity};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};
use tracing::{info, warn};

pub const SYSROOT: &str = "/sysroot";
pub const STAGE2: &str = "/usr/bin/cairn-init";
pub const DEBUG_BIN: &str = "/run/cairn/debug/bin";

#[derive(Debug, thiserror::Error)]
pub enum Stage1Error {
    #[error("Root partition not found")]
    NoRoot(#[from] blockdev::NotFound),
    #[error("Cannot set up dm-verity on {dev}")]
    Verity {
        dev: String,
        #[source]
        source: dm::DmError,
    },
    #[error("Cannot mount {what} from {dev} on {target}")]
    Mount {
        what: &'static str,
        dev: String,
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Cannot switch root to {SYSROOT}")]
    SwitchRoot(#[source] std::io::Error),
    #[error("Cannot exec stage 2 ({STAGE2})")]
    Exec(#[source] std::io::Error),
}

/// The dm-verity parameter string for a root partition whose hash tree follows
/// its data, with a verity superblock first.
pub fn verity_params(dev: &str, v: &Verity) -> String {
    format!(
        "1 {dev} {dev} 4096 4096 {blocks} {hash_start} sha256 {root} {salt} 1 restart_on_corruption",
        blocks = v.data_blocks,
        hash_start = v.data_blocks + 1,
        root = v.root_hash,
        salt = v.salt
    )
}

fn mount(what: &'static str, dev: &str, target: &str, fstype: &str, flags: u64, data: &str) -> Result<(), Stage1Error> {
    let _ = std::fs::create_dir_all(target);
    crate::sys::mount(dev, target, fstype, flags, data).map_err(|source| Stage1Error::Mount {
        what,
        dev: dev.into(),
        target: target.into(),
        source,
    })
}

/// Mounts STATE on /sysroot/var, growing it first when the disk grew. A STATE
/// that cannot be mounted is left untouched (never reformatted) and /var
/// becomes a tmpfs, so the machine still comes up for an operator to look.
fn mount_state(limit: Duration) {
    let target = format!("{SYSROOT}/var");
    let part = match blockdev::wait_for_label("STATE", limit) {
        Ok(p) => p,
        Err(e) => {
            warn!("{e}; /var is a tmpfs, nothing will persist");
            let _ = mount("/var", "tmpfs", &target, "tmpfs", libc::MS_NOSUID | libc::MS_NODEV, "mode=0755");
            return;
        }
    };
    let disk_sectors = part
        .disk
        .as_ref()
        .and_then(|d| std::fs::read_to_string(format!("/sys/class/block/{d}/size")).ok())
        .and_then(|s| s.trim().parse::<u64>().ok());
    let mut part_sectors = part.sectors;
    if let Some(disk_sectors) = disk_sectors {
        match grow::grow_partition(&part, disk_sectors) {
            Ok(Some((old, new))) => {
                info!("grew partition STATE ({}) from {} MiB to {} MiB", part.name, old / 2048, new / 2048);
                part_sectors = new;
            }
            Ok(None) => {}
            Err(e) => warn!("cannot grow STATE: {}", crate::error_chain(&e)),
        }
    }
    let dev = part.node();
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOATIME;
    if let Err(e) = mount("STATE", &dev, &target, "ext4", flags, "") {
        warn!("{}; /var is a tmpfs, nothing will persist", crate::error_chain(&e));
        let _ = mount("/var", "tmpfs", &target, "tmpfs", libc::MS_NOSUID | libc::MS_NODEV, "mode=0755");
        return;
    }
    match grow::grow_ext4(&dev, part_sectors * 512, &target) {
        Ok(Some((old, new))) => info!("grew the STATE file system from {old} to {new} blocks"),
        Ok(None) => {}
        Err(e) => warn!("cannot grow the STATE file system: {}", crate::error_chain(&e)),
    }
}

/// The debug image carries busybox in its initramfs; copy it into /run so the
/// debug shell exists in stage 2 while the verified root stays as built.
fn carry_debug_tools() {
    if !Path::new("/bin/busybox").exists() {
        return;
    }
    let result = (|| -> std::io::Result<()> {
        std::fs::create_dir_all(DEBUG_BIN)?;
        std::fs::copy("/bin/busybox", format!("{DEBUG_BIN}/busybox"))?;
        for entry in std::fs::read_dir("/bin")?.filter_map(Result::ok) {
            if entry.file_type()?.is_symlink() {
                let _ = std::os::unix::fs::symlink("busybox", format!("{DEBUG_BIN}/{}", entry.file_name().to_string_lossy()));
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        warn!("cannot carry the debug tools to stage 2: {e}");
    }
}

/// Deletes the initramfs's files, as switch_root does: they would pin memory
/// for the machine's lifetime. Mount points (now only /sysroot) are left.
fn free_initramfs() {
    let Ok(entries) = std::fs::read_dir("/") else { return };
    for e in entries.filter_map(Result::ok) {
        let path = e.path();
        if path == Path::new(SYSROOT) || crate::sys::is_mountpoint(&path) {
            continue;
        }
        let _ = match e.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
    }
}

/// Runs stage 1. Returns only on failure; the caller logs and reboots, which
/// uses up one of the boot entry's tries.
pub fn run(settings: &Settings, verity: &Verity, stage2_args: &[String]) -> Stage1Error {
    match try_run(settings, verity, stage2_args) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn try_run(settings: &Settings, verity: &Verity, stage2_args: &[String]) -> Result<std::convert::Infallible, Stage1Error> {
    let start = Instant::now();
    let label = format!("ROOT-{}", settings.slot.unwrap_or('a').to_ascii_uppercase());
    let part = blockdev::wait_for_label(&label, settings.root_timeout)?;
    let dev = part.node();
    let target = dm::Target {
        start: 0,
        length: verity.data_blocks * 8,
        kind: "verity".into(),
        params: verity_params(&dev, verity),
    };
    let uuid = format!("CAIRN-VERITY-{label}");
    let root_dev = dm::create("cairn-root", &uuid, dm::DM_READONLY_FLAG, &[target])
        .map_err(|source| Stage1Error::Verity { dev: dev.clone(), source })?;
    mount("the root", &root_dev, SYSROOT, "erofs", libc::MS_RDONLY, "")?;
    info!("root {label} ({dev}) verified by dm-verity as {root_dev}, mounted read-only");
    mount_state(Duration::from_secs(5));
    if settings.debug_shell {
        carry_debug_tools();
    }
    for api in ["/dev", "/proc", "/sys", "/run"] {
        let to = format!("{SYSROOT}{api}");
        crate::sys::mount(api, &to, "", libc::MS_MOVE, "").map_err(|source| Stage1Error::Mount {
            what: "(move)",
            dev: api.into(),
            target: to.clone(),
            source,
        })?;
    }
    free_initramfs();
    info!("stage 1 done in {}ms; switching root", start.elapsed().as_millis());
    std::env::set_current_dir(SYSROOT).map_err(Stage1Error::SwitchRoot)?;
    crate::sys::mount(".", "/", "", libc::MS_MOVE, "").map_err(Stage1Error::SwitchRoot)?;
    crate::sys::chroot(".").map_err(Stage1Error::SwitchRoot)?;
    std::env::set_current_dir("/").map_err(Stage1Error::SwitchRoot)?;
    let err = std::process::Command::new(STAGE2).args(stage2_args).exec();
    Err(Stage1Error::Exec(err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verity_table_for_a_tree_after_the_data() {
        let v = Verity { data_blocks: 100, salt: "ab".into(), root_hash: "cd".into() };
        assert_eq!(
            verity_params("/dev/vda2", &v),
            "1 /dev/vda2 /dev/vda2 4096 4096 100 101 sha256 cd ab 1 restart_on_corruption"
        );
    }
}
