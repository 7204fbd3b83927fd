//! The early mounts, as a table, and their undoing at shutdown.
//!
//! What to mount is decided here against the [`Mounter`] trait, so the logic is
//! tested with a recording fake; only [`RealMounter`] touches the machine.

use std::io;
use std::path::Path;

const NOSUID: u64 = libc::MS_NOSUID;
const NODEV: u64 = libc::MS_NODEV;
const NOEXEC: u64 = libc::MS_NOEXEC;

/// One entry of a mount table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mount {
    pub source: &'static str,
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: u64,
    pub data: &'static str,
}

/// What PID 1 mounts before anything else, in order.
pub const EARLY_MOUNTS: &[Mount] = &[
    Mount { source: "proc", target: "/proc", fstype: "proc", flags: NOSUID | NODEV | NOEXEC, data: "" },
    Mount { source: "sysfs", target: "/sys", fstype: "sysfs", flags: NOSUID | NODEV | NOEXEC, data: "" },
    Mount { source: "devtmpfs", target: "/dev", fstype: "devtmpfs", flags: NOSUID, data: "mode=0755" },
    Mount { source: "devpts", target: "/dev/pts", fstype: "devpts", flags: NOSUID | NOEXEC, data: "mode=0620,ptmxmode=0666" },
    Mount { source: "tmpfs", target: "/dev/shm", fstype: "tmpfs", flags: NOSUID | NODEV, data: "mode=1777" },
    Mount { source: "tmpfs", target: "/run", fstype: "tmpfs", flags: NOSUID | NODEV, data: "mode=0755,size=20%" },
    Mount { source: "tmpfs", target: "/tmp", fstype: "tmpfs", flags: NOSUID | NODEV, data: "mode=1777,size=20%" },
    Mount { source: "cgroup2", target: "/sys/fs/cgroup", fstype: "cgroup2", flags: NOSUID | NODEV | NOEXEC, data: "nsdelegate" },
];

/// Links every Linux user space expects under /dev, and where /etc's run-time
/// files live.
pub const EARLY_LINKS: &[(&str, &str)] = &[
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
];

/// The syscalls mounting needs; the seam between decision and effect.
pub trait Mounter {
    fn mkdir_all(&mut self, path: &str) -> io::Result<()>;
    fn is_mountpoint(&mut self, path: &str) -> bool;
    fn mount(&mut self, m: &Mount) -> io::Result<()>;
    fn umount(&mut self, target: &str, detach: bool) -> io::Result<()>;
    fn symlink(&mut self, target: &str, link: &str) -> io::Result<()>;
}

/// The mounts this boot made, so shutdown can undo exactly those.
#[derive(Debug, Default)]
pub struct Mounted {
    pub targets: Vec<&'static str>,
}

/// A mount that failed, with the reason.
#[derive(Debug, thiserror::Error)]
#[error("Cannot mount {fstype} on {target}")]
pub struct MountError {
    pub target: &'static str,
    pub fstype: &'static str,
    #[source]
    pub source: io::Error,
}

/// Mounts the table in order. A failure is reported and the rest still tried:
/// a machine without /dev/shm is better than one that stopped booting.
pub fn mount_table(
    sys: &mut dyn Mounter,
    table: &[Mount],
    done: &mut Mounted,
) -> Vec<MountError> {
    let mut errors = Vec::new();
    for m in table {
        if sys.is_mountpoint(m.target) {
            continue;
        }
        let result = sys.mkdir_all(m.target).and_then(|()| sys.mount(m));
        match result {
            Ok(()) => done.targets.push(m.target),
            Err(source) => errors.push(MountError { target: m.target, fstype: m.fstype, source }),
        }
    }
    for (target, link) in EARLY_LINKS {
        // An existing link (a second boot stage, a devtmpfs that has it) is fine.
        let _ = sys.symlink(target, link);
    }
    errors
}

/// Unmounts in reverse order; a busy file system is detached lazily so the
/// kernel finishes once the last user is gone. Returns what could not be undone.
pub fn unmount_all(sys: &mut dyn Mounter, done: &mut Mounted) -> Vec<(&'static str, io::Error)> {
    let mut failed = Vec::new();
    while let Some(target) = done.targets.pop() {
        if sys.umount(target, false).is_ok() {
            continue;
        }
        if let Err(e) = sys.umount(target, true) {
            failed.push((target, e));
        }
    }
    failed
}

/// The real thing.
pub struct RealMounter;

impl Mounter for RealMounter {
    fn mkdir_all(&mut self, path: &str) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn is_mountpoint(&mut self, path: &str) -> bool {
        crate::sys::is_mountpoint(Path::new(path))
    }
    fn mount(&mut self, m: &Mount) -> io::Result<()> {
        crate::sys::mount(m.source, m.target, m.fstype, m.flags, m.data)
    }
    fn umount(&mut self, target: &str, detach: bool) -> io::Result<()> {
        crate::sys::umount(target, if detach { libc::MNT_DETACH } else { 0 })
    }
    fn symlink(&mut self, target: &str, link: &str) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }
}

/// Whether /var is the STATE partition itself, ext4, on the disk this
/// machine booted from: not the tmpfs that stands in when STATE is missing,
/// not another disk's STATE, not any other mount. Logs go to disk only then,
/// and the update verdict requires it.
pub fn var_is_state() -> bool {
    use std::os::unix::fs::MetadataExt;
    let var = Path::new("/var");
    let ext4 = std::fs::read_to_string("/proc/self/mounts")
        .is_ok_and(|m| m.lines().rev().find(|l| l.split(' ').nth(1) == Some("/var")).is_some_and(|l| l.split(' ').nth(2) == Some("ext4")));
    let Ok(state) = cairn_gpt::sysfs::on_boot_disk("STATE") else { return false };
    crate::sys::is_mountpoint(var)
        && ext4
        && std::fs::metadata(var).is_ok_and(|m| dev_is(m.dev(), Path::new("/sys/class/block"), &state.name))
}

/// Whether device number `dev` is the block device `name`.
fn dev_is(dev: u64, sys_class_block: &Path, name: &str) -> bool {
    let want = format!("{}:{}", libc::major(dev), libc::minor(dev));
    std::fs::read_to_string(sys_class_block.join(name).join("dev")).is_ok_and(|n| n.trim() == want)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records every call; fails the mounts and unmounts it is told to.
    #[derive(Default)]
    struct Recorder {
        calls: Vec<String>,
        already: Vec<&'static str>,
        fail_mount: Vec<&'static str>,
        busy: Vec<&'static str>,
    }

    impl Mounter for Recorder {
        fn mkdir_all(&mut self, path: &str) -> io::Result<()> {
            self.calls.push(format!("mkdir {path}"));
            Ok(())
        }
        fn is_mountpoint(&mut self, path: &str) -> bool {
            self.already.contains(&path)
        }
        fn mount(&mut self, m: &Mount) -> io::Result<()> {
            self.calls.push(format!("mount {} {}", m.fstype, m.target));
            if self.fail_mount.contains(&m.target) {
                return Err(io::Error::from_raw_os_error(libc::ENODEV));
            }
            Ok(())
        }
        fn umount(&mut self, target: &str, detach: bool) -> io::Result<()> {
            self.calls.push(format!("umount{} {target}", if detach { " -l" } else { "" }));
            if !detach && self.busy.iter().any(|b| *b == target) {
                return Err(io::Error::from_raw_os_error(libc::EBUSY));
            }
            Ok(())
        }
        fn symlink(&mut self, _: &str, _: &str) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn mounts_in_table_order_and_skips_what_is_mounted() {
        let mut rec = Recorder { already: vec!["/dev"], ..Default::default() };
        let mut done = Mounted::default();
        let errors = mount_table(&mut rec, EARLY_MOUNTS, &mut done);
        assert!(errors.is_empty());
        let mounts: Vec<_> = rec.calls.iter().filter(|c| c.starts_with("mount")).cloned().collect();
        assert_eq!(
            mounts,
            [
                "mount proc /proc",
                "mount sysfs /sys",
                "mount devpts /dev/pts",
                "mount tmpfs /dev/shm",
                "mount tmpfs /run",
                "mount tmpfs /tmp",
                "mount cgroup2 /sys/fs/cgroup"
            ]
        );
        assert!(!done.targets.contains(&"/dev"), "a mount we did not make is not ours to undo");
    }

    #[test]
    fn a_failed_mount_is_reported_and_the_rest_go_on() {
        let mut rec = Recorder { fail_mount: vec!["/dev/shm"], ..Default::default() };
        let mut done = Mounted::default();
        let errors = mount_table(&mut rec, EARLY_MOUNTS, &mut done);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].to_string(), "Cannot mount tmpfs on /dev/shm");
        assert!(done.targets.contains(&"/sys/fs/cgroup"));
        assert!(!done.targets.contains(&"/dev/shm"));
    }

    #[test]
    fn unmounts_in_reverse_and_detaches_what_is_busy() {
        let mut rec = Recorder { busy: vec!["/dev"], ..Default::default() };
        let mut done = Mounted { targets: vec!["/proc", "/dev", "/run"] };
        let failed = unmount_all(&mut rec, &mut done);
        assert!(failed.is_empty());
        assert_eq!(rec.calls, ["umount /run", "umount /dev", "umount -l /dev", "umount /proc"]);
        assert!(done.targets.is_empty());
    }

    #[test]
    fn state_is_recognised_by_its_device_number() {
        use std::os::unix::fs::MetadataExt;
        let sys = std::env::temp_dir().join(format!("cairn-sysblock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&sys);
        let dev = std::fs::metadata(std::env::temp_dir()).unwrap().dev();
        for (name, label, number) in [("vda3", "STATE", format!("{}:{}", libc::major(dev), libc::minor(dev))), ("vdb3", "STATE", "8:19".into())] {
            std::fs::create_dir_all(sys.join(name)).unwrap();
            std::fs::write(sys.join(name).join("uevent"), format!("PARTN=3\nPARTNAME={label}\n")).unwrap();
            std::fs::write(sys.join(name).join("size"), "2048\n").unwrap();
            std::fs::write(sys.join(name).join("dev"), format!("{number}\n")).unwrap();
        }
        assert!(dev_is(dev, &sys, "vda3"));
        assert!(!dev_is(dev, &sys, "vdb3"), "another disk's STATE is not ours");
        assert!(!dev_is(libc::makedev(0, 99), &sys, "vda3"), "a tmpfs is not STATE");
        std::fs::remove_dir_all(&sys).unwrap();
    }
}
