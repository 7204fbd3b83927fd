//! Stage 1: from the initramfs to the verified root. Finds the disk the
//! machine booted from and the slot's root partition on it, settles that
//! disk's partition table on first boot, puts dm-verity over the root,
//! mounts the erofs root read-only and the same disk's STATE on /var (grown
//! to fill the disk on first boot), moves the API file systems across, frees
//! the initramfs, switches root and execs stage 2.

pub use cairn_gpt::sysfs as blockdev;
pub mod booted;
pub mod dm;
pub mod grow;

use crate::cmdline::{Settings, Verity};
use std::os::unix::process::CommandExt;
use std::path::Path;
use blockdev::BlockDev;
use std::time::Instant;
use tracing::{info, warn};

pub const SYSROOT: &str = "/sysroot";
pub const STAGE2: &str = "/usr/bin/cairn-init";
pub const DEBUG_BIN: &str = "/run/cairn/debug/bin";

#[derive(Debug, thiserror::Error)]
pub enum Stage1Error {
    #[error("Root partition not found")]
    NoRoot(#[from] booted::NotFound),
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

/// Mounts STATE (found on the booted disk) on /sysroot/var and grows its
/// ext4 when its partition grew. A STATE that is missing or cannot be mounted
/// is left untouched (never reformatted) and /var becomes a tmpfs, so the
/// machine still comes up for an operator to look; the update verdict counts
/// it as unhealthy.
fn mount_state(disk: &str, part: Option<BlockDev>) {
    let target = format!("{SYSROOT}/var");
    let tmpfs = |why: String| {
        warn!("{why}; /var is a tmpfs, nothing will persist");
        let _ = mount("/var", "tmpfs", &target, "tmpfs", libc::MS_NOSUID | libc::MS_NODEV, "mode=0755");
    };
    let Some(part) = part else {
        return tmpfs(format!("no partition labelled STATE on {disk}, the disk this machine booted from"));
    };
    let dev = part.node();
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOATIME;
    if let Err(e) = mount("STATE", &dev, &target, "ext4", flags, "") {
        return tmpfs(crate::error_chain(&e));
    }
    match grow::grow_ext4(&dev, part.sectors * 512, &target) {
        Ok(Some((old, new))) => info!("grew the STATE file system from {old} to {new} blocks"),
        Ok(None) => {}
        Err(e) => warn!("cannot grow the STATE file system: {}", crate::error_chain(&e)),
    }
}

/// First boot of a disk: GUIDs of its own, STATE grown to fill it. Nothing
/// here stops the boot. Returns STATE as it is now.
fn settle_disk(disk: &str) -> Option<BlockDev> {
    let devs = blockdev::scan(Path::new("/sys/class/block"));
    let mut state = blockdev::on_disk(&devs, disk, "STATE").cloned();
    let mut random = booted::random_source().map_err(|e| warn!("cannot read /dev/urandom: {e}; {disk} keeps the build's GUIDs for now")).ok();
    let settled = grow::settle_table(disk, state.as_ref(), random.as_mut().map(|r| r as &mut dyn FnMut() -> [u8; 16]));
    match settled {
        Ok(s) => {
            if s.new_guids {
                info!("gave {disk} and its partitions GUIDs of their own (first boot)");
            }
            if s.repaired {
                warn!("the primary partition table of {disk} was damaged; rewrote it from the backup");
            }
            if let (Some((old, new)), Some(st)) = (s.state_grew, state.as_mut()) {
                info!("grew partition STATE ({}) from {} MiB to {} MiB", st.name, old / 2048, new / 2048);
                st.sectors = new;
            }
        }
        Err(e) => warn!("cannot settle the partition table of {disk}: {}", crate::error_chain(&e)),
    }
    state
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
/// uses up one of the boot entry's tries. `tick` is called while waiting
/// for the disk (the watchdog).
pub fn run(settings: &Settings, verity: &Verity, stage2_args: &[String], tick: impl FnMut()) -> Stage1Error {
    match try_run(settings, verity, stage2_args, tick) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn try_run(settings: &Settings, verity: &Verity, stage2_args: &[String], tick: impl FnMut()) -> Result<std::convert::Infallible, Stage1Error> {
    let start = Instant::now();
    let label = format!("ROOT-{}", settings.slot.unwrap_or('a').to_ascii_uppercase());
    let loader = booted::loader();
    let (part, by) = booted::wait_for_root(&label, &loader, verity, settings.root_timeout, tick)?;
    crate::timeline::mark("root_found");
    let disk = part.disk.clone().unwrap_or_default();
    let how = match (&loader, by) {
        (booted::Loader::Partition(uuid), booted::By::Loader) => format!("the boot loader's partition {uuid} is on it"),
        (booted::Loader::Partition(uuid), booted::By::RootHash) => {
            format!("the boot loader's partition {uuid} is on more than one disk; by its verity root hash")
        }
        (booted::Loader::Unknown, _) => "no boot loader said; by its verity root hash".to_string(),
    };
    info!("booted from {disk} ({label} on {}: {how})", part.name);
    let state = settle_disk(&disk);
    let dev = part.node();
    let target = dm::Target {
        start: 0,
        length: verity.data_blocks * 8,
        kind: "verity".into(),
        params: verity_params(&dev, verity),
    };
    let uuid = format!("CAIRN-VERITY-{label}");
    let root_dev = dm::create(blockdev::ROOT_DM_NAME, &uuid, dm::DM_READONLY_FLAG, &[target])
        .map_err(|source| Stage1Error::Verity { dev: dev.clone(), source })?;
    mount("the root", &root_dev, SYSROOT, "erofs", libc::MS_RDONLY, "")?;
    info!("root {label} ({dev}) verified by dm-verity as {root_dev}, mounted read-only");
    crate::timeline::mark("root_mounted");
    mount_state(&disk, state);
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
    crate::timeline::mark("switch_root");
    let err = std::process::Command::new(STAGE2).args(stage2_args).arg(crate::timeline::arg()).exec();
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
