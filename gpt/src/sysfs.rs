//! Block devices as sysfs shows them: which partition carries which GPT label,
//! on which disk, where; and which disk this machine booted from.
//!
//! Every Cairn disk carries the same labels, so a label alone names no
//! partition: with a second Cairn disk attached (an install stick, a volume
//! from another machine) it could name that disk's. Lookups are scoped to one
//! disk. Stage 1 picks the disk (see `cairn-init`'s `disk::booted`); after it,
//! the disk is the one under the verified root's device-mapper device.

use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDev {
    /// Kernel name (`vda2`); the node is /dev/<name>.
    pub name: String,
    /// GPT partition label, if a partition.
    pub partname: Option<String>,
    pub partn: Option<u32>,
    /// The whole disk a partition sits on (`vda`).
    pub disk: Option<String>,
    /// Size in 512-byte sectors.
    pub sectors: u64,
    /// The GPT partition GUID as the kernel read it at boot (lower case);
    /// in sysfs only from Linux 6.13 on.
    pub partuuid: Option<String>,
}

impl BlockDev {
    pub fn node(&self) -> String {
        format!("/dev/{}", self.name)
    }
}

/// Parses a sysfs `uevent` file (`KEY=value` lines).
pub fn uevent_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=').map(str::to_string))
}

/// Every block device the kernel knows now, sorted by name.
pub fn scan(sys_class_block: &Path) -> Vec<BlockDev> {
    let Ok(dir) = std::fs::read_dir(sys_class_block) else { return Vec::new() };
    let mut out: Vec<BlockDev> = dir
        .filter_map(Result::ok)
        .filter_map(|e| {
            let path = e.path();
            let name = e.file_name().into_string().ok()?;
            let uevent = std::fs::read_to_string(path.join("uevent")).unwrap_or_default();
            let sectors = std::fs::read_to_string(path.join("size")).ok()?.trim().parse().unwrap_or(0);
            let partn = uevent_value(&uevent, "PARTN").and_then(|v| v.parse().ok());
            // A partition's sysfs directory sits inside its disk's.
            let disk = partn.and_then(|_| {
                std::fs::canonicalize(&path).ok()?.parent()?.file_name()?.to_str().map(str::to_string)
            });
            let partuuid = uevent_value(&uevent, "PARTUUID").map(|u| u.to_ascii_lowercase());
            Some(BlockDev { name, partname: uevent_value(&uevent, "PARTNAME"), partn, disk, sectors, partuuid })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// How the devices looked, for an error message.
pub fn describe(devs: &[BlockDev]) -> String {
    if devs.is_empty() {
        return "none".into();
    }
    devs.iter()
        .map(|d| match &d.partname {
            Some(p) => format!("{} ({p}, {} MiB)", d.name, d.sectors / 2048),
            None => format!("{} ({} MiB)", d.name, d.sectors / 2048),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The partition labelled `label` on `disk`.
pub fn on_disk<'a>(devs: &'a [BlockDev], disk: &str, label: &str) -> Option<&'a BlockDev> {
    devs.iter().find(|d| d.disk.as_deref() == Some(disk) && d.partname.as_deref() == Some(label))
}

/// The device-mapper name stage 1 gives the verified root.
pub const ROOT_DM_NAME: &str = "cairn-root";

/// The whole disk under the device-mapper device named `dm_name`: the disk
/// of its first underlying partition (`vda` for a root on `vda2`).
pub fn disk_under(sys_block: &Path, dm_name: &str) -> Option<String> {
    let dm = std::fs::read_dir(sys_block).ok()?.filter_map(Result::ok).find(|e| {
        e.file_name().to_string_lossy().starts_with("dm-")
            && std::fs::read_to_string(e.path().join("dm/name")).is_ok_and(|n| n.trim() == dm_name)
    })?;
    let slave = std::fs::read_dir(dm.path().join("slaves")).ok()?.filter_map(Result::ok).next()?;
    // The slave's entry links to its sysfs directory, which for a partition
    // sits inside its disk's.
    let real = std::fs::canonicalize(slave.path()).ok()?;
    if real.join("partition").exists() {
        real.parent()?.file_name()?.to_str().map(str::to_string)
    } else {
        real.file_name()?.to_str().map(str::to_string)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotOnBootDisk {
    #[error("No verified root ({ROOT_DM_NAME} in /sys/block/dm-*) over a disk: cannot tell which disk this machine booted from")]
    NoBootDisk,
    #[error("No partition labelled {label} on {disk}, the disk this machine booted from; block devices seen: {seen}")]
    NoLabel { label: String, disk: String, seen: String },
}

/// The partition labelled `label` on the disk the running root comes from.
pub fn on_boot_disk(label: &str) -> Result<BlockDev, NotOnBootDisk> {
    let disk = disk_under(Path::new("/sys/block"), ROOT_DM_NAME).ok_or(NotOnBootDisk::NoBootDisk)?;
    let devs = scan(Path::new("/sys/class/block"));
    on_disk(&devs, &disk, label).cloned().ok_or_else(|| NotOnBootDisk::NoLabel {
        label: label.into(),
        disk: disk.clone(),
        seen: describe(&devs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_uevent_keys() {
        let t = "MAJOR=254\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=ROOT-A\n";
        assert_eq!(uevent_value(t, "PARTNAME").as_deref(), Some("ROOT-A"));
        assert_eq!(uevent_value(t, "PARTN").as_deref(), Some("2"));
        assert_eq!(uevent_value(t, "PART"), None);
    }

    #[test]
    fn describes_what_was_seen() {
        let d = vec![
            BlockDev { name: "vda".into(), partname: None, partn: None, disk: None, sectors: 4194304, partuuid: None },
            BlockDev { name: "vda1".into(), partname: Some("ESP".into()), partn: Some(1), disk: Some("vda".into()), sectors: 262144, partuuid: None },
        ];
        assert_eq!(describe(&d), "vda (2048 MiB), vda1 (ESP, 128 MiB)");
        assert_eq!(describe(&[]), "none");
    }

    fn part(name: &str, disk: &str, label: &str) -> BlockDev {
        BlockDev { name: name.into(), partname: Some(label.into()), partn: Some(1), disk: Some(disk.into()), sectors: 8, partuuid: None }
    }

    #[test]
    fn a_label_is_looked_up_on_one_disk_only() {
        let d = vec![part("vda4", "vda", "STATE"), part("vdb4", "vdb", "STATE")];
        assert_eq!(on_disk(&d, "vdb", "STATE").map(|p| p.name.as_str()), Some("vdb4"));
        assert_eq!(on_disk(&d, "vda", "STATE").map(|p| p.name.as_str()), Some("vda4"));
        assert!(on_disk(&d, "vdc", "STATE").is_none());
        assert!(on_disk(&d, "vda", "ESP").is_none());
    }

    /// A sysfs tree as the kernel lays it out: the partition's directory in
    /// its disk's, the dm device's slaves linking to it.
    #[test]
    fn the_disk_under_the_verified_root() {
        let root = std::env::temp_dir().join(format!("cairn-sysfs-dm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let devices = root.join("devices/virtual/block");
        let disk = root.join("devices/pci/virtio1/block/vdb");
        std::fs::create_dir_all(disk.join("vdb2")).unwrap();
        std::fs::write(disk.join("vdb2/partition"), "2\n").unwrap();
        std::fs::create_dir_all(devices.join("dm-0/dm")).unwrap();
        std::fs::create_dir_all(devices.join("dm-0/slaves")).unwrap();
        std::fs::write(devices.join("dm-0/dm/name"), "cairn-root\n").unwrap();
        std::os::unix::fs::symlink(disk.join("vdb2"), devices.join("dm-0/slaves/vdb2")).unwrap();
        let block = root.join("block");
        std::fs::create_dir_all(&block).unwrap();
        std::os::unix::fs::symlink(devices.join("dm-0"), block.join("dm-0")).unwrap();
        assert_eq!(disk_under(&block, ROOT_DM_NAME).as_deref(), Some("vdb"));
        assert_eq!(disk_under(&block, "other"), None);
        let _ = std::fs::remove_dir_all(&root);
    }

    /// What the scan finds on this machine is what the kernel lists in
    /// /proc/partitions: every device there, with its size (1 KiB blocks).
    #[test]
    fn scan_of_this_machine_agrees_with_proc_partitions() {
        let devs = scan(Path::new("/sys/class/block"));
        let table = std::fs::read_to_string("/proc/partitions").unwrap();
        let listed: Vec<(&str, u64)> = table
            .lines()
            .skip(2)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some((*f.get(3)?, f.get(2)?.parse().ok()?))
            })
            .collect();
        assert!(!listed.is_empty(), "/proc/partitions lists no device:\n{table}");
        for (name, kib) in listed {
            let dev = devs.iter().find(|d| d.name == name);
            assert_eq!(dev.map(|d| d.sectors), Some(kib * 2), "{name} in /proc/partitions; scan found {devs:?}");
        }
        assert!(scan(Path::new("/nonexistent")).is_empty());
    }

    /// A disk with one labelled partition, laid out as sysfs does it (the
    /// partition's directory inside the disk's, a link in class/block).
    #[test]
    fn scan_reads_label_number_size_and_disk() {
        let root = std::env::temp_dir().join(format!("cairn-sysfs-{}", std::process::id()));
        let (devices, class) = (root.join("devices/vdb"), root.join("class/block"));
        std::fs::create_dir_all(devices.join("vdb1")).unwrap();
        std::fs::create_dir_all(&class).unwrap();
        std::fs::write(devices.join("uevent"), "MAJOR=254\nDEVNAME=vdb\nDEVTYPE=disk\n").unwrap();
        std::fs::write(devices.join("size"), "4194304\n").unwrap();
        std::fs::write(devices.join("vdb1/uevent"), "DEVNAME=vdb1\nPARTN=1\nPARTNAME=STATE\n").unwrap();
        std::fs::write(devices.join("vdb1/size"), "262144\n").unwrap();
        std::os::unix::fs::symlink(&devices, class.join("vdb")).unwrap();
        std::os::unix::fs::symlink(devices.join("vdb1"), class.join("vdb1")).unwrap();
        let devs = scan(&class);
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(
            devs,
            [
                BlockDev { name: "vdb".into(), partname: None, partn: None, disk: None, sectors: 4194304, partuuid: None },
                BlockDev {
                    name: "vdb1".into(),
                    partname: Some("STATE".into()),
                    partn: Some(1),
                    disk: Some("vdb".into()),
                    sectors: 262144,
                    partuuid: None,
                },
            ]
        );
    }
}
