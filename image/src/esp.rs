//! The EFI system partition: FAT32 written in-process, so its bytes depend
//! only on its files (fatfs stamps every entry 1980-01-01 without a clock).

use anyhow::{bail, Context, Result};
use std::io::{Cursor, Write};

/// Files to put on the ESP: path (with `/`) and contents.
pub type Files = Vec<(String, Vec<u8>)>;

pub fn build(size: u64, files: &Files) -> Result<Vec<u8>> {
    let mut disk = Cursor::new(vec![0u8; size as usize]);
    let opts = fatfs::FormatVolumeOptions::new()
        .fat_type(fatfs::FatType::Fat32)
        .volume_id(0x4341_4952)
        .volume_label(*b"CAIRN-ESP  ");
    fatfs::format_volume(&mut disk, opts).context("Cannot format the ESP as FAT32")?;
    disk.set_position(0);
    {
        let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new()).context("Cannot open the new ESP")?;
        {
        let root = fs.root_dir();
        let mut sorted: Vec<&(String, Vec<u8>)> = files.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, data) in sorted {
            let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            let mut dir = root.clone();
            for d in &parts[..parts.len() - 1] {
                dir = match dir.open_dir(d) {
                    Ok(existing) => existing,
                    Err(_) => dir.create_dir(d).with_context(|| format!("Cannot create ESP directory {d} for {path}"))?,
                };
            }
            let name = parts[parts.len() - 1];
            let mut f = dir.create_file(name).with_context(|| format!("Cannot create {path} on the ESP"))?;
            f.truncate().with_context(|| format!("Cannot truncate {path}"))?;
            f.write_all(data).with_context(|| format!("Cannot write {path} ({} bytes) to the ESP", data.len()))?;
        }
        }
        fs.unmount().context("Cannot finish the ESP")?;
    }
    let mut image = disk.into_inner();
    dots_first(&mut image)?;
    count_free(&mut image)?;
    Ok(image)
}

const ENTRY: usize = 32;
const ATTR_LFN: u8 = 0x0f;
const ATTR_DIR: u8 = 0x10;
const ATTR_VOLUME: u8 = 0x08;
const DELETED: u8 = 0xe5;
const DOT: &[u8; 11] = b".          ";
const DOTDOT: &[u8; 11] = b"..         ";

/// Where a FAT32 volume keeps its clusters.
struct Geometry {
    fat: usize,
    data: usize,
    cluster: usize,
    root: u32,
}

fn le16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Geometry {
    fn read(b: &[u8]) -> Result<Geometry> {
        if b.len() < 512 {
            bail!("the ESP image is {} bytes, too small for a boot sector", b.len());
        }
        let sector = le16(b, 11);
        let reserved = le16(b, 14) * sector;
        let fat_bytes = le32(b, 36) as usize * sector;
        Ok(Geometry { fat: reserved, data: reserved + usize::from(b[16]) * fat_bytes, cluster: usize::from(b[13]) * sector, root: le32(b, 44) })
    }

    /// The byte offsets of every directory entry in the chain from `first`.
    fn entries(&self, b: &[u8], first: u32) -> Result<Vec<usize>> {
        let mut out = Vec::new();
        let mut c = first;
        while (2..0x0fff_fff8).contains(&c) {
            let start = self.data + (c as usize - 2) * self.cluster;
            if start + self.cluster > b.len() || out.len() > b.len() / ENTRY {
                bail!("the ESP's directory chain from cluster {first} leaves the image at cluster {c}");
            }
            out.extend((start..start + self.cluster).step_by(ENTRY));
            c = le32(b, self.fat + c as usize * 4) & 0x0fff_ffff;
        }
        Ok(out)
    }
}

/// fatfs leaves the FSInfo free-cluster count "unknown"; fsck.fat asks for
/// it, and the firmware's driver would scan the FAT for it on every write.
fn count_free(b: &mut [u8]) -> Result<()> {
    let g = Geometry::read(b)?;
    let sector = le16(b, 11);
    let total = le32(b, 32) as usize * sector;
    let clusters = total.saturating_sub(g.data) / g.cluster.max(1);
    let free = (2..clusters + 2).filter(|c| le32(b, g.fat + c * 4) & 0x0fff_ffff == 0).count() as u32;
    let is_info = |b: &[u8], at: usize| at + 512 <= b.len() && le32(b, at) == 0x4161_5252 && le32(b, at + 484) == 0x6141_7272;
    let primary = le16(b, 48);
    if !is_info(b, primary * sector) {
        bail!("the ESP has no FSInfo sector at sector {primary}");
    }
    // The backup, beside the backup boot sector, where there is one.
    for at in [primary * sector, (le16(b, 50) + 1) * sector] {
        if is_info(b, at) {
            b[at + 488..at + 492].copy_from_slice(&free.to_le_bytes());
        }
    }
    Ok(())
}

/// fatfs 0.3 gives `.` and `..` long-name entries, so they are not the first
/// two slots of a new directory, and points `..` of a top-level directory at
/// the root's cluster instead of 0; fsck.fat repairs both, and firmware may
/// not expect them. Move them to the front, drop their long names (as
/// deleted slots) and point `..` at 0 where the parent is the root.
fn dots_first(b: &mut [u8]) -> Result<()> {
    let g = Geometry::read(b)?;
    let mut todo = vec![(g.root, 0u32)];
    let mut seen = 0;
    while let Some((dir, parent)) = todo.pop() {
        seen += 1;
        if seen > 10_000 {
            bail!("the ESP has more than 10000 directories (a loop?)");
        }
        let slots = g.entries(b, dir)?;
        let name = |b: &[u8], at: usize| b[at..at + 11].to_vec();
        let mut first = 0;
        if dir != g.root {
            let [s0, s1, s2, s3] = match slots.get(..4) {
                Some(&[a, b, c, d]) => [a, b, c, d],
                _ => bail!("ESP directory at cluster {dir} has fewer than four entries"),
            };
            if b[s0 + 11] == ATTR_LFN && name(b, s1) == DOT && b[s2 + 11] == ATTR_LFN && name(b, s3) == DOTDOT {
                let (dot, dotdot) = (b[s1..s1 + ENTRY].to_vec(), b[s3..s3 + ENTRY].to_vec());
                b[s0..s0 + ENTRY].copy_from_slice(&dot);
                b[s1..s1 + ENTRY].copy_from_slice(&dotdot);
                for s in [s2, s3] {
                    b[s..s + ENTRY].fill(0);
                    b[s] = DELETED;
                }
            } else if !(name(b, s0) == DOT && name(b, s1) == DOTDOT) {
                bail!("ESP directory at cluster {dir} does not start with `.` and `..`");
            }
            let up = if parent == g.root { 0 } else { parent };
            b[s1 + 20..s1 + 22].copy_from_slice(&((up >> 16) as u16).to_le_bytes());
            b[s1 + 26..s1 + 28].copy_from_slice(&(up as u16).to_le_bytes());
            first = 2;
        }
        for &s in &slots[first..] {
            let attr = b[s + 11];
            match b[s] {
                0 => break,
                DELETED => continue,
                _ if attr == ATTR_LFN || attr & ATTR_VOLUME != 0 || attr & ATTR_DIR == 0 => continue,
                _ => {
                    let child = (le16(b, s + 20) << 16 | le16(b, s + 26)) as u32;
                    todo.push((child, dir));
                }
            }
        }
    }
    Ok(())
}

/// loader.conf: every Cairn entry matches `default`, and the order among them
/// comes from sort-key and version (systemd-boot 252 boots a bad entry when
/// `default` matches nothing else).
pub const LOADER_CONF: &str = "default cairn-*\ntimeout 0\neditor no\nauto-entries no\nauto-firmware no\n";

#[cfg(test)]
mod tests {
    use super::*;

    /// fsck.fat (dosfstools) finds nothing to repair in what `build` writes,
    /// with the directories the real ESP has.
    #[test]
    fn fsck_fat_finds_nothing_to_repair() {
        let files: Files = vec![
            ("loader/loader.conf".into(), LOADER_CONF.as_bytes().to_vec()),
            ("loader/entries/cairn-a.conf".into(), b"title Cairn\n".to_vec()),
            ("EFI/BOOT/BOOTX64.EFI".into(), vec![7u8; 5000]),
            ("EFI/systemd/systemd-bootx64.efi".into(), vec![8u8; 70000]),
            ("cairn/a/vmlinuz".into(), vec![9u8; 300000]),
            ("cairn/a/initramfs.img".into(), vec![1u8; 4096]),
        ];
        let image = build(64 << 20, &files).unwrap();
        let path = std::env::temp_dir().join(format!("cairn-esp-fsck-{}.img", std::process::id()));
        std::fs::write(&path, &image).unwrap();
        let out = std::process::Command::new("fsck.fat")
            .arg("-n")
            .arg(&path)
            .output()
            .expect("fsck.fat runs (package dosfstools, which scripts/install-deps installs)");
        let _ = std::fs::remove_file(&path);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "fsck.fat -n: {text}");
        assert_eq!(text.lines().count(), 2, "only the version and the summary: {text}");
        // Still readable the same way, `.` and `..` included.
        let mut c = Cursor::new(image);
        let fs = fatfs::FileSystem::new(&mut c, fatfs::FsOptions::new()).unwrap();
        let names: Vec<String> = fs.root_dir().open_dir("cairn/a").unwrap().iter().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [".", "..", "initramfs.img", "vmlinuz"]);
    }

    #[test]
    fn same_files_same_bytes_and_readable_back() {
        let files: Files = vec![
            ("loader/loader.conf".into(), LOADER_CONF.as_bytes().to_vec()),
            ("EFI/BOOT/BOOTX64.EFI".into(), vec![7u8; 5000]),
        ];
        let a = build(40 << 20, &files).unwrap();
        let b = build(40 << 20, &files).unwrap();
        assert!(a == b, "two builds differ");
        let mut c = Cursor::new(a);
        let fs = fatfs::FileSystem::new(&mut c, fatfs::FsOptions::new()).unwrap();
        assert_eq!(fs.fat_type(), fatfs::FatType::Fat32);
        let mut f = fs.root_dir().open_file("EFI/BOOT/BOOTX64.EFI").unwrap();
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut back).unwrap();
        assert_eq!(back.len(), 5000);
    }
}
