//! The source disk of every cloud image: `cairn.raw` padded to a whole GiB
//! (what GCE and EBS take; a whole MiB for Azure follows), with its GPT
//! backup moved to the new end. The partitions stay as built, so STATE still
//! grows into the added space on first boot, as on any bigger disk.

use anyhow::{bail, Context, Result};
use cairn_gpt::{Gpt, Source};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

pub const GIB: u64 = 1 << 30;
const CHUNK: usize = 1 << 20;

/// Copies the first `len` bytes of `src` to the start of `dst`, leaving
/// all-zero 4 KiB blocks as holes, and hands every chunk read to `each`
/// (to hash it on the way).
pub fn copy_sparse(src: &mut File, dst: &mut File, len: u64, mut each: impl FnMut(&[u8])) -> Result<()> {
    src.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; CHUNK];
    let mut at = 0u64;
    while at < len {
        let n = usize::try_from((len - at).min(CHUNK as u64)).unwrap_or(CHUNK);
        src.read_exact(&mut buf[..n]).with_context(|| format!("Cannot read at byte {at}"))?;
        each(&buf[..n]);
        crate::disk::write_sparse(dst, at, &buf[..n])?;
        at += n as u64;
    }
    Ok(())
}

/// Writes the padded disk to `out`; returns its size.
pub fn pad(raw: &Path, out: &Path) -> Result<u64> {
    let mut src = File::open(raw).with_context(|| format!("Cannot read {}", raw.display()))?;
    let len = src.metadata()?.len();
    let (gpt, which) = Gpt::read(&mut src, len).with_context(|| format!("{} holds no valid GPT", raw.display()))?;
    if which != Source::Primary || gpt.disk_sectors * cairn_gpt::SECTOR != len {
        bail!(
            "{}: the GPT ({which} copy) describes {} bytes, the file has {len}: not a disk as `cairn-image disk` writes it",
            raw.display(),
            gpt.disk_sectors * cairn_gpt::SECTOR
        );
    }
    let size = len.div_ceil(GIB) * GIB;
    let padded = Gpt { disk_sectors: size / cairn_gpt::SECTOR, ..gpt.clone() };
    let tmp = out.with_extension("tmp");
    let mut dst = File::create(&tmp).with_context(|| format!("Cannot create {}", tmp.display()))?;
    dst.set_len(size)?;
    // Everything up to the old backup table; the new table goes on top.
    copy_sparse(&mut src, &mut dst, (gpt.last_usable() + 1) * cairn_gpt::SECTOR, |_| {})?;
    padded.write(&mut dst).with_context(|| format!("Cannot write the GPT of {}", tmp.display()))?;
    dst.sync_all()?;
    std::fs::rename(&tmp, out).with_context(|| format!("Cannot rename {} to {}", tmp.display(), out.display()))?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_to_a_whole_gib_with_the_backup_table_at_the_new_end() {
        let dir = std::env::temp_dir().join(format!("cairn-pad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let raw = dir.join("small.raw");
        // The build's layout shrunk to a few MiB: STATE last, 1 MiB for the backup table.
        let mut gpt = crate::disk::table().unwrap();
        let mut lba = 2048;
        for p in &mut gpt.partitions {
            (p.first_lba, p.last_lba) = (lba, lba + 2047);
            lba += 2048;
        }
        gpt.disk_sectors = lba + 2048;
        let mut f = File::create(&raw).unwrap();
        f.set_len(gpt.disk_sectors * 512).unwrap();
        gpt.write(&mut f).unwrap();
        crate::disk::write_sparse(&mut f, 2 << 20, b"payload").unwrap();
        drop(f);
        let out = dir.join("padded.raw");
        let size = pad(&raw, &out).unwrap();
        assert_eq!(size % GIB, 0);
        assert!(size >= gpt.disk_sectors * 512 && size - gpt.disk_sectors * 512 < GIB);
        let mut p = File::open(&out).unwrap();
        assert_eq!(p.metadata().unwrap().len(), size);
        let (back, which) = Gpt::read(&mut p, size).unwrap();
        assert_eq!(which, Source::Primary);
        assert_eq!(back.disk_sectors * 512, size);
        assert_eq!(back.partitions, gpt.partitions, "the partitions stay as built; STATE grows on first boot");
        use std::os::unix::fs::FileExt;
        let mut payload = [0u8; 7];
        p.read_exact_at(&mut payload, 2 << 20).unwrap();
        assert_eq!(&payload, b"payload");
        let mut old_backup = [1u8; 512];
        p.read_exact_at(&mut old_backup, gpt.disk_sectors * 512 - 512).unwrap();
        assert!(old_backup.iter().all(|&b| b == 0), "the old backup header is gone");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
