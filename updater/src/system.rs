//! The machine as the updater sees it: which slot and version run, where the
//! partitions are, the ESP mounted on demand, and what the boot loader said.

use crate::entries::Slot;
use cairn_model::manifest::Version;
use std::ffi::CString;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0}")]
    Missing(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SystemError {
    let what = what.into();
    move |source| SystemError::Io { what, source }
}

/// The slot this boot runs from: `cairn.slot=` on the kernel command line.
pub fn running_slot(cmdline: &str) -> Option<Slot> {
    cmdline.split_whitespace().find_map(|w| w.strip_prefix("cairn.slot=")).and_then(Slot::parse)
}

/// The running kernel's release; empty if /proc does not say (then it counts
/// as the metal kernel, and a cloud bundle is refused: the safe side).
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// VERSION_ID from an os-release text.
pub fn os_version(os_release: &str) -> Option<Version> {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_ID="))
        .and_then(|v| v.trim_matches('"').parse().ok())
}

/// The device node of the partition with GPT label `label` on the disk
/// this machine booted from (never another Cairn disk's).
pub fn partition(label: &str) -> Result<PathBuf, SystemError> {
    cairn_gpt::sysfs::on_boot_disk(label)
        .map(|d| PathBuf::from(d.node()))
        .map_err(|e| SystemError::Missing(e.to_string()))
}

fn c(s: &str) -> Result<CString, SystemError> {
    CString::new(s).map_err(|_| SystemError::Missing(format!("{s:?} holds a NUL byte")))
}

/// The ESP, mounted while this value lives.
pub struct Esp {
    pub dir: PathBuf,
    pub writable: bool,
}

pub const ESP_MOUNT: &str = "/run/cairn/esp";

impl Esp {
    /// Mounts the ESP at [`ESP_MOUNT`], read-only unless `writable`: a boot
    /// that changes nothing must not even set the FAT's dirty bit.
    /// `errors=continue`: a FAT left odd by a power cut must not turn
    /// read-only under the updater that repairs it.
    pub fn mount(writable: bool) -> Result<Esp, SystemError> {
        let dev = partition("ESP")?;
        std::fs::create_dir_all(ESP_MOUNT).map_err(io(format!("cannot create {ESP_MOUNT}")))?;
        let (src, dst, fstype) = (c(&dev.display().to_string())?, c(ESP_MOUNT)?, c("vfat")?);
        let data = c("iocharset=iso8859-1,codepage=437,errors=continue")?;
        let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | if writable { 0 } else { libc::MS_RDONLY };
        // Whoever mounted it last is gone (the update lock is ours): a mount
        // left by a killed updater would make a writable mount fail.
        // SAFETY: a live NUL-terminated path; a failure only means nothing was mounted.
        while unsafe { libc::umount2(dst.as_ptr(), libc::MNT_DETACH) } == 0 {}
        let mut tries = 0;
        loop {
            // SAFETY: all pointers are to live NUL-terminated strings owned by this frame.
            let rc = unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), fstype.as_ptr(), flags, data.as_ptr().cast()) };
            if rc == 0 {
                return Ok(Esp { dir: PathBuf::from(ESP_MOUNT), writable });
            }
            let e = std::io::Error::last_os_error();
            // EBUSY: the file system is still held read-only elsewhere for a
            // moment (a mount namespace being torn down); it passes.
            if e.raw_os_error() == Some(libc::EBUSY) && tries < 25 {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(200));
                continue;
            }
            let hint = match e.raw_os_error() {
                Some(libc::ENODEV) => " (the vfat module is not loaded)",
                Some(libc::EBUSY) => " (still mounted read-only elsewhere after 5 s)",
                _ => "",
            };
            return Err(SystemError::Io { what: format!("cannot mount the ESP {} on {ESP_MOUNT}{hint}", dev.display()), source: e });
        }
    }

    pub fn entries_dir(&self) -> PathBuf {
        self.dir.join("loader/entries")
    }

    /// Flushes everything written to the ESP.
    pub fn sync(&self) -> Result<(), SystemError> {
        let f = std::fs::File::open(&self.dir).map_err(io("cannot open the ESP"))?;
        // SAFETY: syncfs on a descriptor we own.
        if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f)) } != 0 {
            return Err(io("cannot sync the ESP")(std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

impl Drop for Esp {
    fn drop(&mut self) {
        if self.writable {
            let _ = self.sync();
        }
        if let Ok(dst) = c(ESP_MOUNT) {
            // SAFETY: a live NUL-terminated path.
            unsafe { libc::umount2(dst.as_ptr(), 0) };
        }
    }
}

pub use cairn_gpt::efi::{loader_var, EFIVARS};

/// Whether the machine booted through UEFI.
pub fn efi() -> bool {
    cairn_gpt::efi::booted_with_efi()
}

/// Takes an exclusive lock on `path`, waiting for whoever holds it.
pub fn lock(path: &str) -> Result<std::fs::File, SystemError> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io(format!("cannot open {path}")))?;
    // SAFETY: flock on a descriptor we own; it blocks until the lock is ours.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) } != 0 {
        return Err(io(format!("cannot lock {path}"))(std::io::Error::last_os_error()));
    }
    Ok(f)
}

/// Fault injection for the power-cut tests: when STATE holds
/// `update/pause-at` naming this step, say so on the console and stop here
/// until the machine is killed.
///
/// The file is removed (durably) before the pause, so each request cuts the
/// power once: the boot after the cut runs the same step again, and a second
/// pause there would hold the update lock on a machine the test wants to
/// inspect.
///
/// Only in builds with the `fault-injection` feature (the test images'
/// cairnctl): on a production image anyone who can write STATE could
/// otherwise stall every update at will.
#[cfg(feature = "fault-injection")]
pub fn checkpoint(dir: &Path, step: &str) {
    let file = dir.join("pause-at");
    let Ok(want) = std::fs::read_to_string(&file) else { return };
    if want.trim() != step {
        return;
    }
    if std::fs::remove_file(&file).and_then(|()| std::fs::File::open(dir)?.sync_all()).is_err() {
        return;
    }
    let line = format!("<2>cairn-update: paused at {step} (pause-at on STATE)\n");
    let _ = std::fs::OpenOptions::new().write(true).open("/dev/kmsg").and_then(|mut k| std::io::Write::write_all(&mut k, line.as_bytes()));
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// Without the `fault-injection` feature a `pause-at` file is ignored.
#[cfg(not(feature = "fault-injection"))]
pub fn checkpoint(_dir: &Path, _step: &str) {}

/// Whether this build honours `pause-at` (see [`checkpoint`]).
pub const FAULT_INJECTION: bool = cfg!(feature = "fault-injection");

/// Wall-clock seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_slot_and_version() {
        assert_eq!(running_slot("console=ttyS0 cairn.slot=b quiet"), Some(Slot::B));
        assert_eq!(running_slot("console=ttyS0"), None);
        assert_eq!(os_version("NAME=Cairn\nVERSION_ID=0.2.0\n"), Some(Version(0, 2, 0)));
        assert_eq!(os_version("VERSION_ID=\"1.0.3\"\n"), Some(Version(1, 0, 3)));
    }

    /// A default build (what `out/cairn.raw` carries) goes on past a
    /// requested pause and leaves the request where it was.
    #[cfg(not(feature = "fault-injection"))]
    #[test]
    fn without_the_feature_pause_at_is_ignored() {
        let dir = std::env::temp_dir().join(format!("cairn-pause-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pause-at"), "staged\n").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let d = dir.clone();
        std::thread::spawn(move || {
            checkpoint(&d, "staged");
            let _ = tx.send(());
        });
        assert!(rx.recv_timeout(std::time::Duration::from_secs(5)).is_ok(), "the checkpoint paused");
        assert!(dir.join("pause-at").exists());
        assert!(!FAULT_INJECTION);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
