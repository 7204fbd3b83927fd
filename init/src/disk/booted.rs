//! Which disk this machine booted from. Every Cairn disk carries the same
//! partition labels, so stage 1 first picks its disk and then looks up labels
//! on that disk only; another Cairn disk attached in front of it (an install
//! stick, a volume from another machine) is never used.
//!
//! The rules, in order:
//! 1. Under UEFI, systemd-boot says which partition it was loaded from
//!    (`LoaderDevicePartUUID`): the disk holding that ESP. Once a disk has
//!    booted its GUIDs are its own (see `grow::settle_table`), so this
//!    names exactly one disk.
//! 2. Without that variable (direct kernel boot), or when it names several
//!    disks (a first boot, before the GUIDs were made unique): the disk whose
//!    slot partition holds the root this boot's command line expects, by the
//!    verity root hash. Two such disks are refused, never chosen by name.

use super::blockdev::{self, BlockDev};
use crate::cmdline::Verity;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum NotFound {
    #[error("No partition labelled {label} {rule} after {waited:?}; block devices seen: {seen}")]
    Missing { label: String, waited: Duration, rule: String, seen: String },
    #[error("{label} with this boot's root hash is on more than one disk ({parts}) and the boot loader did not say which one booted; detach the other disk")]
    Ambiguous { label: String, parts: String },
}

/// What the boot loader said about where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loader {
    /// `LoaderDevicePartUUID`, lower case.
    Partition(String),
    /// Direct kernel boot, or a loader that did not say.
    Unknown,
}

impl Loader {
    fn rule(&self) -> String {
        match self {
            Loader::Partition(uuid) => format!("on the disk of the boot loader's partition {uuid}"),
            Loader::Unknown => "with this boot's verity root hash".into(),
        }
    }
}

/// Which rule picked the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Loader,
    RootHash,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Pick {
    Found(BlockDev, By),
    /// Not (yet) there: the disk may still be probed.
    Waiting,
    Ambiguous(Vec<String>),
}

/// Applies the rules to the devices seen now. `root_matches` says whether a
/// partition holds the expected root (read from the disk in real use).
pub fn pick(devs: &[BlockDev], label: &str, loader: &Loader, mut root_matches: impl FnMut(&BlockDev) -> bool) -> Pick {
    let mut candidates: Vec<&BlockDev> =
        devs.iter().filter(|d| d.disk.is_some() && d.partname.as_deref() == Some(label)).collect();
    if let Loader::Partition(uuid) = loader {
        let disks: Vec<&str> =
            devs.iter().filter(|d| d.partuuid.as_deref() == Some(uuid.as_str())).filter_map(|d| d.disk.as_deref()).collect();
        candidates.retain(|c| c.disk.as_deref().is_some_and(|d| disks.contains(&d)));
        if let [one] = candidates[..] {
            return Pick::Found(one.clone(), By::Loader);
        }
    }
    candidates.retain(|c| root_matches(c));
    match candidates[..] {
        [] => Pick::Waiting,
        [one] => Pick::Found(one.clone(), By::RootHash),
        ref many => Pick::Ambiguous(many.iter().map(|d| d.name.clone()).collect()),
    }
}

/// Waits up to `limit` for the slot's root partition on this machine's own
/// disk, calling `tick` every turn (the watchdog must not fire while an
/// operator is owed the message that names what was seen).
pub fn wait_for_root(label: &str, loader: &Loader, verity: &Verity, limit: Duration, mut tick: impl FnMut()) -> Result<(BlockDev, By), NotFound> {
    let start = Instant::now();
    let expected = RootHash::from(verity);
    loop {
        tick();
        let mut devs = blockdev::scan(Path::new("/sys/class/block"));
        if matches!(loader, Loader::Partition(_)) {
            fill_partition_guids(&mut devs);
        }
        match pick(&devs, label, loader, |d| expected.as_ref().is_some_and(|e| e.matches(d, verity.data_blocks))) {
            Pick::Found(d, by) => return Ok((d, by)),
            Pick::Ambiguous(parts) => return Err(NotFound::Ambiguous { label: label.into(), parts: parts.join(", ") }),
            Pick::Waiting if start.elapsed() >= limit => {
                return Err(NotFound::Missing { label: label.into(), waited: limit, rule: loader.rule(), seen: blockdev::describe(&devs) })
            }
            Pick::Waiting => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Kernels before 6.13 do not say a partition's GUID in sysfs: read it from
/// each disk's own table.
fn fill_partition_guids(devs: &mut [BlockDev]) {
    let disks: Vec<String> = devs.iter().filter(|d| d.partn.is_none()).map(|d| d.name.clone()).collect();
    for disk in disks {
        if !devs.iter().any(|d| d.disk.as_deref() == Some(disk.as_str()) && d.partuuid.is_none()) {
            continue;
        }
        let Ok(mut f) = std::fs::File::open(format!("/dev/{disk}")) else { continue };
        let Ok(bytes) = cairn_gpt::device_bytes(&mut f) else { continue };
        let Ok((table, _)) = cairn_gpt::Gpt::read(&mut f, bytes) else { continue };
        for d in devs.iter_mut().filter(|d| d.disk.as_deref() == Some(disk.as_str())) {
            let entry = d.partn.and_then(|n| table.partitions.get((n as usize).checked_sub(1)?));
            if let Some(p) = entry {
                d.partuuid = Some(p.guid.to_string().to_ascii_lowercase());
            }
        }
    }
}

/// The verity root hash and salt from the command line, as bytes.
struct RootHash {
    root: Vec<u8>,
    salt: Vec<u8>,
}

impl RootHash {
    fn from(v: &Verity) -> Option<RootHash> {
        let salt = if v.salt == "-" { Vec::new() } else { unhex(&v.salt)? };
        Some(RootHash { root: unhex(&v.root_hash)?, salt })
    }

    /// The root hash is the digest of the tree's top block, the first block
    /// after the data and the verity superblock (hash format 1: salt first).
    fn matches(&self, part: &BlockDev, data_blocks: u64) -> bool {
        let Some(offset) = data_blocks.checked_add(1).and_then(|b| b.checked_mul(4096)) else { return false };
        let mut block = vec![0u8; 4096];
        let read = std::fs::File::open(part.node()).and_then(|f| f.read_exact_at(&mut block, offset));
        if read.is_err() {
            return false;
        }
        let mut h = Sha256::new();
        h.update(&self.salt);
        h.update(&block);
        h.finalize().as_slice() == self.root.as_slice()
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// `LoaderDevicePartUUID`, read through efivarfs (mounted for the moment
/// if it is not yet).
pub fn loader() -> Loader {
    if !cairn_gpt::efi::booted_with_efi() {
        return Loader::Unknown;
    }
    let dir = cairn_gpt::efi::EFIVARS;
    let mounted_here = !crate::sys::is_mountpoint(Path::new(dir))
        && crate::sys::mount("efivarfs", dir, "efivarfs", libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY, "").is_ok();
    let var = cairn_gpt::efi::loader_var("LoaderDevicePartUUID");
    if mounted_here {
        let _ = crate::sys::umount(dir, 0);
    }
    match var {
        Some(v) if !v.trim().is_empty() => Loader::Partition(v.trim().to_ascii_lowercase()),
        _ => Loader::Unknown,
    }
}

/// 16 random bytes at a time, for new GUIDs. /dev/urandom never blocks.
pub fn random_source() -> std::io::Result<impl FnMut() -> [u8; 16]> {
    let mut f = std::fs::File::open("/dev/urandom")?;
    let mut pool = [0u8; 16 * 16];
    f.read_exact(&mut pool)?;
    let mut i = 0;
    Ok(move || {
        let mut out = [0u8; 16];
        out.copy_from_slice(&pool[(i % 16) * 16..(i % 16) * 16 + 16]);
        i += 1;
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(name: &str, label: &str, uuid: &str) -> BlockDev {
        let disk = name.trim_end_matches(|c: char| c.is_ascii_digit()).to_string();
        BlockDev {
            name: name.into(),
            partname: Some(label.into()),
            partn: Some(1),
            disk: Some(disk),
            sectors: 8,
            partuuid: Some(uuid.into()),
        }
    }

    /// A stick (vda) in front of the machine's own disk (vdb), both with
    /// the build's GUIDs, and the own disk after its first boot.
    fn two_disks(own_esp: &str) -> Vec<BlockDev> {
        vec![
            part("vda1", "ESP", "c41f-e5"),
            part("vda2", "ROOT-A", "c41f-0a"),
            part("vdb1", "ESP", own_esp),
            part("vdb2", "ROOT-A", "aaaa-0a"),
        ]
    }

    fn name(p: Pick) -> String {
        match p {
            Pick::Found(d, By::Loader) => format!("{} by the loader", d.name),
            Pick::Found(d, By::RootHash) => format!("{} by the root hash", d.name),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn the_loaders_partition_names_the_disk() {
        let devs = two_disks("bbbb-e5");
        let loader = Loader::Partition("bbbb-e5".into());
        assert_eq!(name(pick(&devs, "ROOT-A", &loader, |_| panic!("no hash needed"))), "vdb2 by the loader");
        // The loader's disk not probed yet: wait, never take the other one.
        assert_eq!(pick(&devs[..2], "ROOT-A", &loader, |_| true), Pick::Waiting);
    }

    #[test]
    fn same_guids_on_both_disks_fall_back_to_the_root_hash() {
        let devs = two_disks("c41f-e5");
        let loader = Loader::Partition("c41f-e5".into());
        assert_eq!(name(pick(&devs, "ROOT-A", &loader, |d| d.name == "vdb2")), "vdb2 by the root hash");
        assert_eq!(name(pick(&devs, "ROOT-A", &loader, |d| d.name == "vda2")), "vda2 by the root hash");
        assert_eq!(pick(&devs, "ROOT-A", &loader, |_| true), Pick::Ambiguous(vec!["vda2".into(), "vdb2".into()]));
    }

    #[test]
    fn direct_boot_takes_the_disk_with_the_expected_root_never_the_first_by_name() {
        let devs = two_disks("c41f-e5");
        assert_eq!(name(pick(&devs, "ROOT-A", &Loader::Unknown, |d| d.name == "vdb2")), "vdb2 by the root hash");
        assert_eq!(pick(&devs, "ROOT-A", &Loader::Unknown, |_| false), Pick::Waiting);
        assert_eq!(pick(&devs, "ROOT-B", &Loader::Unknown, |_| true), Pick::Waiting);
    }

    #[test]
    fn hex_and_missing_names_say_the_rule() {
        assert_eq!(unhex("0aff"), Some(vec![0x0a, 0xff]));
        assert_eq!(unhex("0af"), None);
        assert_eq!(unhex("zz"), None);
        let e = NotFound::Missing { label: "ROOT-A".into(), waited: Duration::from_secs(2), rule: Loader::Unknown.rule(), seen: "none".into() };
        assert!(e.to_string().starts_with("No partition labelled ROOT-A with this boot's verity root hash after 2s; block devices seen: none"), "{e}");
    }

    #[test]
    fn random_guid_bytes_differ() {
        let mut r = random_source().expect("/dev/urandom");
        let (a, b) = (r(), r());
        assert_ne!(a, b);
    }
}
