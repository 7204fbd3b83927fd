//! A fixed VHD, written here rather than by `qemu-img` so that the same disk
//! gives the same bytes: a fixed VHD is the disk followed by a 512-byte
//! footer, and qemu-img puts the current time and a random UUID in it.
//!
//! The footer matches what `qemu-img convert -O vpc -o subformat=fixed,force_size`
//! writes (the form Azure documents and takes): creator `qem2` and the
//! largest CHS geometry, both of which tell readers to take the size from the
//! footer rather than round it to a geometry. Only the time stamp (from
//! `SOURCE_DATE_EPOCH`) and the UUID (from the disk's sha256) differ.

use super::source::copy_sparse;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Write;
use std::path::Path;

pub const FOOTER: usize = 512;
const MIB: u64 = 1 << 20;
/// VHD time stamps count seconds from 2000-01-01 00:00:00 UTC.
const VHD_EPOCH: u64 = 946_684_800;

/// The footer of a fixed VHD of `size` bytes whose content has this sha256.
pub fn footer(size: u64, unix_time: u64, content_sha256: &[u8; 32]) -> [u8; FOOTER] {
    let mut f = [0u8; FOOTER];
    f[0..8].copy_from_slice(b"conectix");
    f[8..12].copy_from_slice(&2u32.to_be_bytes()); // features: the reserved bit, always set
    f[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes()); // format version 1.0
    f[16..24].copy_from_slice(&u64::MAX.to_be_bytes()); // data offset: none, a fixed disk
    let stamp = u32::try_from(unix_time.saturating_sub(VHD_EPOCH)).unwrap_or(u32::MAX);
    f[24..28].copy_from_slice(&stamp.to_be_bytes());
    f[28..32].copy_from_slice(b"qem2");
    f[32..36].copy_from_slice(&0x0005_0003u32.to_be_bytes()); // creator version
    f[36..40].copy_from_slice(b"Wi2k"); // creator host OS
    f[40..48].copy_from_slice(&size.to_be_bytes()); // original size
    f[48..56].copy_from_slice(&size.to_be_bytes()); // current size
    f[56..58].copy_from_slice(&65535u16.to_be_bytes()); // cylinders
    f[58] = 16; // heads
    f[59] = 255; // sectors per track
    f[60..64].copy_from_slice(&2u32.to_be_bytes()); // disk type: fixed
    let mut uuid: [u8; 16] = Sha256::new().chain_update(b"cairn vhd uuid\0").chain_update(content_sha256).finalize()[..16]
        .try_into()
        .unwrap_or([0; 16]);
    // RFC 9562 version 8 (custom), variant 10.
    uuid[6] = (uuid[6] & 0x0f) | 0x80;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    f[68..84].copy_from_slice(&uuid);
    let sum = f.iter().fold(0u32, |s, &b| s.wrapping_add(u32::from(b)));
    f[64..68].copy_from_slice(&(!sum).to_be_bytes());
    f
}

/// What [`write`] learnt on its one pass over the disk.
pub struct Written {
    pub source_sha256: String,
    pub vhd_size: u64,
    pub vhd_sha256: String,
}

/// Writes `disk` plus its footer to `out` (sparse), hashing the disk as it
/// goes: one read of the disk gives its sha256, the footer's UUID and the
/// VHD's sha256.
pub fn write(disk: &Path, out: &Path, unix_time: u64) -> Result<Written> {
    let mut src = File::open(disk).with_context(|| format!("Cannot read {}", disk.display()))?;
    let size = src.metadata()?.len();
    if size % MIB != 0 {
        bail!("{}: {size} bytes is not a whole number of MiB, which Azure requires of a VHD", disk.display());
    }
    let mut dst = File::create(out).with_context(|| format!("Cannot create {}", out.display()))?;
    dst.set_len(size)?;
    let mut h = Sha256::new();
    copy_sparse(&mut src, &mut dst, size, |chunk| h.update(chunk))?;
    let disk_sum: [u8; 32] = h.clone().finalize().into();
    let foot = footer(size, unix_time, &disk_sum);
    std::io::Seek::seek(&mut dst, std::io::SeekFrom::Start(size))?;
    dst.write_all(&foot).with_context(|| format!("Cannot write {}", out.display()))?;
    dst.sync_all()?;
    h.update(foot);
    Ok(Written { source_sha256: hex::encode(disk_sum), vhd_size: size + FOOTER as u64, vhd_sha256: hex::encode(h.finalize()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_footer_checksums_and_carries_the_size_time_and_a_content_uuid() {
        let f = footer(3 << 30, VHD_EPOCH + 86400, &[7; 32]);
        let mut zeroed = f;
        zeroed[64..68].fill(0);
        let sum = zeroed.iter().fold(0u32, |s, &b| s.wrapping_add(u32::from(b)));
        assert_eq!(u32::from_be_bytes(f[64..68].try_into().unwrap()), !sum);
        assert_eq!(u64::from_be_bytes(f[48..56].try_into().unwrap()), 3 << 30);
        assert_eq!(u32::from_be_bytes(f[24..28].try_into().unwrap()), 86400);
        assert_eq!(f, footer(3 << 30, VHD_EPOCH + 86400, &[7; 32]), "same input, same footer");
        assert_ne!(f[68..84], footer(3 << 30, VHD_EPOCH + 86400, &[8; 32])[68..84], "another disk, another UUID");
        assert_eq!(footer(1 << 20, 0, &[0; 32])[24..28], [0; 4], "a date before 2000 is 2000");
    }

    /// The footer is qemu-img's `force_size` footer but for the time stamp,
    /// the UUID and so the checksum; `qemu-img` reads the VHD back as the disk.
    #[test]
    fn the_footer_is_the_one_qemu_img_writes_but_for_time_and_uuid() {
        let dir = std::env::temp_dir().join(format!("cairn-vhd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (raw, ours, theirs) = (dir.join("d.raw"), dir.join("ours.vhd"), dir.join("theirs.vhd"));
        let mut disk = vec![0u8; 2 << 20];
        disk[5000..5005].copy_from_slice(b"cairn");
        std::fs::write(&raw, &disk).unwrap();
        let w = write(&raw, &ours, 1_700_000_000).unwrap();
        let q = |args: &[&str]| std::process::Command::new("qemu-img").args(args).output().expect("qemu-img (package qemu-utils)");
        let st = q(&["convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed,force_size", raw.to_str().unwrap(), theirs.to_str().unwrap()]);
        assert!(st.status.success(), "{st:?}");
        let (a, b) = (std::fs::read(&ours).unwrap(), std::fs::read(&theirs).unwrap());
        assert_eq!((a.len(), b.len()), (disk.len() + FOOTER, disk.len() + FOOTER));
        assert_eq!(a[..disk.len()], disk[..]);
        let (fa, fb) = (&a[disk.len()..], &b[disk.len()..]);
        for (i, (x, y)) in fa.iter().zip(fb).enumerate() {
            assert!(x == y || (24..28).contains(&i) || (64..84).contains(&i), "footer byte {i}: ours {x:#04x}, qemu-img's {y:#04x}");
        }
        assert_eq!(w.vhd_sha256, hex::encode(Sha256::digest(&a)));
        assert_eq!(w.source_sha256, hex::encode(Sha256::digest(&disk)));
        let cmp = q(&["compare", "-f", "raw", raw.to_str().unwrap(), "-F", "vpc", ours.to_str().unwrap()]);
        assert!(cmp.status.success(), "qemu-img compare: {cmp:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
