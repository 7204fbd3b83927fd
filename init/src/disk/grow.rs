//! The booted disk's partition table on first boot: the disk and its
//! partitions get GUIDs of their own (every image is built with the same
//! ones), STATE grows to fill the disk, and a damaged primary copy is
//! repaired from the backup. The GPT is rewritten once for all of it (backup
//! copy first, so a power cut leaves one valid table, old or new, and the next
//! boot finishes the job), the kernel is told the partition's new size, and
//! the mounted ext4 is resized online.

use super::blockdev::BlockDev;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;

#[derive(Debug, thiserror::Error)]
pub enum GrowError {
    #[error("Cannot open {path}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not a partition")]
    NotPartition(String),
    #[error("Partition table of {disk}")]
    Gpt {
        disk: String,
        #[source]
        source: cairn_gpt::Error,
    },
    #[error("Telling the kernel that {part} grew failed")]
    Blkpg {
        part: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Cannot read the ext4 superblock of {dev}")]
    Superblock {
        dev: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Online resize of {mountpoint} to {blocks} blocks failed")]
    Resize {
        mountpoint: String,
        blocks: u64,
        #[source]
        source: std::io::Error,
    },
}

/// What [`settle_table`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settled {
    pub new_guids: bool,
    /// The primary copy was damaged and was rewritten from the backup.
    pub repaired: bool,
    /// STATE's (old, new) size in sectors, when it grew.
    pub state_grew: Option<(u64, u64)>,
}

/// Settles the table of `disk` (a whole disk, `vda`) on which `state` is
/// STATE: unique GUIDs if the disk still has the build's, STATE grown if the
/// disk grew. Runs before anything on the disk is in use: only STATE's size
/// changes for the kernel, and it is told.
/// Without `random` the GUIDs stay as they are.
pub fn settle_table(disk: &str, state: Option<&BlockDev>, random: Option<&mut dyn FnMut() -> [u8; 16]>) -> Result<Settled, GrowError> {
    let path = format!("/dev/{disk}");
    let mut dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|source| GrowError::Open { path: path.clone(), source })?;
    let gpt_err = |source| GrowError::Gpt { disk: path.clone(), source };
    let disk_bytes = cairn_gpt::device_bytes(&mut dev).map_err(gpt_err)?;
    let (table, source) = cairn_gpt::Gpt::read(&mut dev, disk_bytes).map_err(gpt_err)?;
    let mut next = table.clone();
    let mut settled = Settled { repaired: source == cairn_gpt::Source::Backup, ..Settled::default() };
    if let (true, Some(random)) = (next.is_as_built(), random) {
        next = next.with_new_guids(random);
        settled.new_guids = true;
    }
    if let Some(grown) = next.grown(disk_bytes / 512).map_err(gpt_err)? {
        next = grown;
    }
    if next == table && !settled.repaired {
        return Ok(settled);
    }
    cairn_gpt::write_grown(&mut dev, &next).map_err(gpt_err)?;
    let Some(state) = state else { return Ok(settled) };
    let pno = state.partn.ok_or_else(|| GrowError::NotPartition(state.name.clone()))?;
    let idx = (pno as usize).checked_sub(1).ok_or_else(|| GrowError::NotPartition(state.name.clone()))?;
    let (Some(old), Some(new)) = (table.partitions.get(idx), next.partitions.get(idx)) else {
        return Err(GrowError::NotPartition(state.name.clone()));
    };
    if old.last_lba != new.last_lba {
        blkpg_resize(&dev, pno, new.first_lba * 512, new.sectors() * 512)
            .map_err(|source| GrowError::Blkpg { part: state.name.clone(), source })?;
        settled.state_grew = Some((old.sectors(), new.sectors()));
    }
    Ok(settled)
}

fn blkpg_resize(disk: &std::fs::File, pno: u32, start: u64, length: u64) -> std::io::Result<()> {
    #[repr(C)]
    struct BlkpgPartition {
        start: i64,
        length: i64,
        pno: libc::c_int,
        devname: [u8; 64],
        volname: [u8; 64],
    }
    #[repr(C)]
    struct BlkpgIoctlArg {
        op: libc::c_int,
        flags: libc::c_int,
        datalen: libc::c_int,
        data: *mut BlkpgPartition,
    }
    const BLKPG: libc::c_ulong = 0x1269;
    const BLKPG_RESIZE_PARTITION: libc::c_int = 3;
    let mut part = BlkpgPartition {
        start: start as i64,
        length: length as i64,
        pno: pno as libc::c_int,
        devname: [0; 64],
        volname: [0; 64],
    };
    let mut arg = BlkpgIoctlArg {
        op: BLKPG_RESIZE_PARTITION,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as libc::c_int,
        data: &mut part,
    };
    // SAFETY: `arg` and the partition it points to are valid, correctly laid
    // out (repr(C), as linux/blkpg.h) and live for the duration of the call.
    let rc = unsafe { libc::ioctl(disk.as_raw_fd(), BLKPG, &mut arg) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Block count and block size from an ext4 superblock (at byte 1024).
pub fn ext4_size(sb: &[u8]) -> Option<(u64, u64)> {
    let u32_at = |o: usize| Some(u32::from_le_bytes(sb.get(o..o + 4)?.try_into().ok()?));
    if sb.get(0x38..0x3a)? != [0x53, 0xef] {
        return None;
    }
    let lo = u64::from(u32_at(0x4)?);
    // s_log_block_size: ext4 blocks are 1 KiB to 64 KiB. A larger field
    // (STATE is not verified) would overflow the shift, or in a release
    // build wrap to a block size of 0 that the caller divides by.
    let log = u32_at(0x18)?;
    if log > 6 {
        return None;
    }
    let block = 1024u64 << log;
    let incompat = u32_at(0x60)?;
    let hi = if incompat & 0x80 != 0 { u64::from(u32_at(0x150)?) } else { 0 };
    Some(((hi << 32) | lo, block))
}

/// Grows a mounted ext4 to fill its partition. Returns (old, new) block counts,
/// or None when it fills it already.
pub fn grow_ext4(dev: &str, part_bytes: u64, mountpoint: &str) -> Result<Option<(u64, u64)>, GrowError> {
    let sb_err = |source| GrowError::Superblock { dev: dev.into(), source };
    let mut f = std::fs::File::open(dev).map_err(sb_err)?;
    let mut sb = vec![0u8; 1024];
    f.seek(SeekFrom::Start(1024)).map_err(sb_err)?;
    f.read_exact(&mut sb).map_err(sb_err)?;
    let (blocks, block_size) = ext4_size(&sb)
        .ok_or_else(|| sb_err(std::io::Error::new(std::io::ErrorKind::InvalidData, "not an ext4 superblock")))?;
    let want = part_bytes / block_size;
    // Less than 1 MiB to gain is not worth a resize.
    if want <= blocks || (want - blocks) * block_size < 1 << 20 {
        return Ok(None);
    }
    let dir = std::fs::File::open(mountpoint).map_err(|source| GrowError::Open { path: mountpoint.into(), source })?;
    // EXT4_IOC_RESIZE_FS = _IOW('f', 16, __u64)
    const EXT4_IOC_RESIZE_FS: libc::c_ulong = 0x4008_6610;
    // SAFETY: the argument is a pointer to a u64 that lives across the call.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), EXT4_IOC_RESIZE_FS, &want) };
    if rc < 0 {
        return Err(GrowError::Resize { mountpoint: mountpoint.into(), blocks: want, source: std::io::Error::last_os_error() });
    }
    Ok(Some((blocks, want)))
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_block_count_of_a_64bit_ext4() {
        let mut sb = vec![0u8; 1024];
        sb[0x38] = 0x53;
        sb[0x39] = 0xef;
        sb[0x4..0x8].copy_from_slice(&32768u32.to_le_bytes());
        sb[0x18..0x1c].copy_from_slice(&2u32.to_le_bytes());
        sb[0x60..0x64].copy_from_slice(&0x80u32.to_le_bytes());
        sb[0x150..0x154].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(ext4_size(&sb), Some(((1 << 32) + 32768, 4096)));
        sb[0x38] = 0;
        assert_eq!(ext4_size(&sb), None);
    }

    /// A real file system made by mke2fs. `scripts/install-deps` installs
    /// e2fsprogs, so a host without it is a broken setup, not a reason to pass.
    #[test]
    fn reads_what_mke2fs_wrote() {
        let path = std::env::temp_dir().join(format!("cairn-ext4-{}", std::process::id()));
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(16 << 20).unwrap();
        drop(f);
        // Where Debian puts it, for a PATH without the sbin directories.
        let status = ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4", "mkfs.ext4"]
            .iter()
            .find_map(|cmd| std::process::Command::new(cmd).args(["-q", "-F", "-b", "4096"]).arg(&path).status().ok())
            .unwrap_or_else(|| panic!("cannot run mkfs.ext4 (e2fsprogs; scripts/install-deps installs it)"));
        assert!(status.success(), "mkfs.ext4 on {} failed: {status}", path.display());
        let bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(ext4_size(&bytes[1024..2048]), Some((4096, 4096)));
    }
}
