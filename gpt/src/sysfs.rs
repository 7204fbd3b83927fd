//! Block devices as sysfs shows them: which partition carries which GPT label,
//! on which disk, where.

use std::path::Path;
use std::time::{Duration, Instant};

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
            Some(BlockDev { name, partname: uevent_value(&uevent, "PARTNAME"), partn, disk, sectors })
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

#[derive(Debug, thiserror::Error)]
#[error("No partition labelled {label} after {waited:?}; block devices seen: {seen}")]
pub struct NotFound {
    pub label: String,
    pub waited: Duration,
    pub seen: String,
}

/// Waits for the partition with GPT label `label` (drivers probe disks in the
/// background). Loop devices and device-mapper targets are not candidates.
pub fn wait_for_label(label: &str, limit: Duration) -> Result<BlockDev, NotFound> {
    let start = Instant::now();
    loop {
        let devs = scan(Path::new("/sys/class/block"));
        let mut found = devs.iter().filter(|d| d.partname.as_deref() == Some(label));
        if let Some(first) = found.next() {
            if let Some(other) = found.next() {
                tracing::warn!("two partitions labelled {label}: {} and {}; using {}", first.name, other.name, first.name);
            }
            return Ok(first.clone());
        }
        if start.elapsed() >= limit {
            return Err(NotFound { label: label.into(), waited: limit, seen: describe(&devs) });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
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
            BlockDev { name: "vda".into(), partname: None, partn: None, disk: None, sectors: 4194304 },
            BlockDev { name: "vda1".into(), partname: Some("ESP".into()), partn: Some(1), disk: Some("vda".into()), sectors: 262144 },
        ];
        assert_eq!(describe(&d), "vda (2048 MiB), vda1 (ESP, 128 MiB)");
        assert_eq!(describe(&[]), "none");
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
                BlockDev { name: "vdb".into(), partname: None, partn: None, disk: None, sectors: 4194304 },
                BlockDev {
                    name: "vdb1".into(),
                    partname: Some("STATE".into()),
                    partn: Some(1),
                    disk: Some("vdb".into()),
                    sectors: 262144
                },
            ]
        );
    }
}
