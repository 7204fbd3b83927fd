//! Config disks: NoCloud (`cidata` or `CIDATA`: `user-data`, `meta-data`) and
//! OpenStack's `config-2` (`openstack/latest/user_data`, `meta_data.json`), on
//! FAT or ISO9660. The label is read from the file system's own superblock,
//! so no udev is needed; the disk is mounted read-only for the moment of the
//! read.

use super::{check_user_data, failed, Found, SourceError};
use std::ffi::CString;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Where a config disk is mounted while it is read.
const MOUNT_AT: &str = "/run/cairn/config/disk";
const MAX: u64 = 1 << 20;

/// A file system type and its label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub fs: &'static str,
    pub label: String,
}

/// The label of a FAT or ISO9660 file system from its first 36 KiB.
pub fn probe(head: &[u8]) -> Option<Label> {
    // ISO9660: the primary volume descriptor at sector 16 (of 2048 bytes).
    if let Some(pvd) = head.get(0x8000..0x8000 + 72) {
        if pvd[0] == 1 && &pvd[1..6] == b"CD001" {
            return Some(Label { fs: "iso9660", label: text(&pvd[40..72]) });
        }
    }
    let boot = head.get(..512)?;
    if boot[510..512] != [0x55, 0xaa] {
        return None;
    }
    // FAT32 keeps its label at 71 and "FAT32" at 82; FAT12/16 at 43 and 54.
    if &boot[82..87] == b"FAT32" {
        return Some(Label { fs: "vfat", label: text(&boot[71..82]) });
    }
    if &boot[54..57] == b"FAT" {
        return Some(Label { fs: "vfat", label: text(&boot[43..54]) });
    }
    None
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim_end_matches([' ', '\0']).to_string()
}

/// The block devices whose file system is labelled `cidata`, `CIDATA` or
/// `config-2`, in name order.
fn candidates(sys_block: &Path, dev: &Path) -> Vec<(PathBuf, Label)> {
    let Ok(entries) = std::fs::read_dir(sys_block) else { return Vec::new() };
    let mut names: Vec<String> = entries.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        // Device-mapper and loop devices are Cairn's own or empty.
        if name.starts_with("dm-") || name.starts_with("loop") || name.starts_with("ram") {
            continue;
        }
        let path = dev.join(&name);
        let mut head = vec![0u8; 0x8000 + 2048];
        let Ok(mut f) = std::fs::File::open(&path) else { continue };
        let mut got = 0;
        while got < head.len() {
            match f.read(&mut head[got..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        head.truncate(got);
        if let Some(l) = probe(&head) {
            if matches!(l.label.as_str(), "cidata" | "CIDATA" | "config-2" | "CONFIG-2") {
                out.push((path, l));
            }
        }
    }
    out
}

/// Finds, mounts and reads the first config disk.
pub fn scan(sys_block: &Path, dev: &Path) -> Result<Option<Found>, SourceError> {
    let Some((path, label)) = candidates(sys_block, dev).into_iter().next() else { return Ok(None) };
    let source: &'static str = if label.label.eq_ignore_ascii_case("config-2") { "config-2" } else { "nocloud" };
    std::fs::create_dir_all(MOUNT_AT).map_err(|e| failed(source, format!("{MOUNT_AT}: {e}")))?;
    mount_ro(&path, Path::new(MOUNT_AT), label.fs).map_err(|e| failed(source, format!("cannot mount {} ({}): {e}", path.display(), label.fs)))?;
    let read = read_mounted(Path::new(MOUNT_AT), source);
    unmount(Path::new(MOUNT_AT));
    read.map(Some)
}

/// Reads the config out of a mounted config disk.
pub fn read_mounted(root: &Path, source: &'static str) -> Result<Found, SourceError> {
    let (user, meta) = if source == "config-2" {
        (root.join("openstack/latest/user_data"), root.join("openstack/latest/meta_data.json"))
    } else {
        (root.join("user-data"), root.join("meta-data"))
    };
    let text = small_file(&user).map_err(|e| failed(source, format!("{}: {e}", user.display())))?;
    check_user_data(source, &text)?;
    let instance_id = small_file(&meta).ok().and_then(|m| {
        if source == "config-2" {
            serde_json::from_str::<serde_json::Value>(&m).ok()?.get("uuid")?.as_str().map(str::to_string)
        } else {
            nocloud_instance_id(&m)
        }
    });
    Ok(Found { source, text, instance_id })
}

/// `instance-id: ID` from NoCloud's meta-data (YAML, of which this one key
/// is all Cairn reads).
pub fn nocloud_instance_id(meta: &str) -> Option<String> {
    meta.lines().find_map(|l| {
        let v = l.trim().strip_prefix("instance-id:")?.trim().trim_matches(['"', '\'']);
        (!v.is_empty()).then(|| v.to_string())
    })
}

fn small_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let len = f.seek(SeekFrom::End(0))?;
    if len > MAX {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("larger than {MAX} bytes")));
    }
    f.seek(SeekFrom::Start(0))?;
    let mut s = String::new();
    f.take(MAX).read_to_string(&mut s)?;
    Ok(s)
}

fn mount_ro(dev: &Path, at: &Path, fs: &str) -> std::io::Result<()> {
    let cstr = |p: &str| CString::new(p).map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"));
    let (d, a, t) = (cstr(&dev.to_string_lossy())?, cstr(&at.to_string_lossy())?, cstr(fs)?);
    let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    // SAFETY: all pointers are NUL-terminated strings that outlive the call;
    // no data argument.
    let r = unsafe { libc::mount(d.as_ptr(), a.as_ptr(), t.as_ptr(), flags, std::ptr::null()) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn unmount(at: &Path) {
    if let Ok(a) = CString::new(at.to_string_lossy().as_bytes()) {
        // SAFETY: a NUL-terminated path; MNT_DETACH never blocks on a busy mount.
        unsafe { libc::umount2(a.as_ptr(), libc::MNT_DETACH) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_of_fat_and_iso() {
        let mut fat32 = vec![0u8; 512];
        fat32[510] = 0x55;
        fat32[511] = 0xaa;
        fat32[82..87].copy_from_slice(b"FAT32");
        fat32[71..82].copy_from_slice(b"CIDATA     ");
        assert_eq!(probe(&fat32), Some(Label { fs: "vfat", label: "CIDATA".into() }));
        let mut fat16 = vec![0u8; 512];
        fat16[510] = 0x55;
        fat16[511] = 0xaa;
        fat16[54..59].copy_from_slice(b"FAT16");
        fat16[43..54].copy_from_slice(b"cidata     ");
        assert_eq!(probe(&fat16).map(|l| l.label), Some("cidata".into()));
        let mut iso = vec![0u8; 0x8000 + 2048];
        iso[0x8000] = 1;
        iso[0x8001..0x8006].copy_from_slice(b"CD001");
        iso[0x8028..0x8028 + 32].copy_from_slice(b"config-2                        ");
        assert_eq!(probe(&iso), Some(Label { fs: "iso9660", label: "config-2".into() }));
        assert_eq!(probe(&[0u8; 100]), None);
        assert_eq!(probe(&vec![0u8; 40000]), None);
    }

    #[test]
    fn instance_id_from_meta_data() {
        assert_eq!(nocloud_instance_id("instance-id: i-123\nlocal-hostname: a\n"), Some("i-123".into()));
        assert_eq!(nocloud_instance_id("instance-id: \"iid-x\"\n"), Some("iid-x".into()));
        assert_eq!(nocloud_instance_id("local-hostname: a\n"), None);
    }

    #[test]
    fn a_mounted_nocloud_tree_is_read_and_cloud_config_refused() {
        let dir = std::env::temp_dir().join(format!("cairn-nocloud-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("user-data"), "version = 1\nhostname = \"n\"\n").unwrap();
        std::fs::write(dir.join("meta-data"), "instance-id: iid-1\n").unwrap();
        let f = read_mounted(&dir, "nocloud").unwrap();
        assert_eq!((f.source, f.instance_id.as_deref()), ("nocloud", Some("iid-1")));
        std::fs::write(dir.join("user-data"), "#cloud-config\nhostname: n\n").unwrap();
        let e = read_mounted(&dir, "nocloud").unwrap_err().to_string();
        assert!(e.contains("cloud-init's"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
