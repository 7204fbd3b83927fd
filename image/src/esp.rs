//! The EFI system partition: FAT32 written in-process, so its bytes depend
//! only on its files (fatfs stamps every entry 1980-01-01 without a clock).

use anyhow::{Context, Result};
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
    Ok(disk.into_inner())
}

/// loader.conf: every Cairn entry matches `default`, and the order among them
/// comes from sort-key and version (systemd-boot 252 boots a bad entry when
/// `default` matches nothing else).
pub const LOADER_CONF: &str = "default cairn-*\ntimeout 0\neditor no\nauto-entries no\nauto-firmware no\n";

#[cfg(test)]
mod tests {
    use super::*;

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
