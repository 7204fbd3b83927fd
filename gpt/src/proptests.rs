//! `Gpt::read` on what a disk may hold: tables as `write` leaves them, with
//! header fields changed (and the header CRC made right again, so the checks
//! behind it are reached), and with raw bytes changed anywhere in either copy.
//! It never panics, refusals say what is wrong, and an intact table reads
//! back as written.

use super::*;
use proptest::prelude::*;
use std::io::Cursor;

const DISK_SECTORS: u64 = 4096;

fn partition_name() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>().prop_filter("no NUL, one UTF-16 unit", |c| *c != '\0' && c.len_utf16() == 1), 0..=NAME_UNITS)
        .prop_map(|c| c.into_iter().collect())
}

/// One to four partitions one after another in a 2 MiB disk.
fn table() -> impl Strategy<Value = Gpt> {
    let part = (any::<[u8; 16]>(), any::<[u8; 16]>(), 1u64..400, any::<u64>(), partition_name());
    (any::<[u8; 16]>(), prop::collection::vec(part, 1..4)).prop_map(|(disk, parts)| {
        let mut start = FIRST_USABLE;
        let mut partitions = Vec::new();
        for (i, (ty, id, len, attributes, name)) in parts.into_iter().enumerate() {
            let mut id = id;
            id[0] = i as u8; // unique per partition
            partitions.push(Partition {
                type_guid: Guid::from_random_bytes(ty),
                guid: Guid::from_random_bytes(id),
                first_lba: start,
                last_lba: start + len - 1,
                attributes,
                name,
            });
            start += len;
        }
        Gpt { disk_guid: Guid::from_random_bytes(disk), disk_sectors: DISK_SECTORS, partitions }
    })
}

fn image(g: &Gpt) -> Result<Vec<u8>, TestCaseError> {
    let mut dev = Cursor::new(vec![0u8; (DISK_SECTORS * SECTOR) as usize]);
    g.write(&mut dev).map_err(|e| TestCaseError::fail(format!("write: {e}")))?;
    Ok(dev.into_inner())
}

/// Sets a header field (offset within the header, 4 or 8 bytes) and makes
/// the header CRC right again.
fn set_header_field(img: &mut [u8], lba: u64, offset: usize, value: u64, wide: bool) {
    let at = (lba * SECTOR) as usize;
    let h = &mut img[at..at + SECTOR as usize];
    if wide {
        h[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
    } else {
        h[offset..offset + 4].copy_from_slice(&(value as u32).to_le_bytes());
    }
    let size = (u32::from_le_bytes([h[12], h[13], h[14], h[15]]) as usize).clamp(20, SECTOR as usize);
    h[16..20].fill(0);
    let crc = crc32fast::hash(&h[..size]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
}

fn read_checked(img: Vec<u8>, disk_bytes: u64) -> Result<Option<Gpt>, TestCaseError> {
    match Gpt::read(&mut Cursor::new(img), disk_bytes) {
        Ok((g, _)) => Ok(Some(g)),
        Err(e) => {
            prop_assert!(!e.to_string().trim().is_empty());
            Ok(None)
        }
    }
}

/// The header fields after the signature: (offset, 8 bytes wide).
const FIELDS: &[(usize, bool)] =
    &[(8, false), (12, false), (24, true), (32, true), (40, true), (48, true), (72, true), (80, false), (84, false), (88, false)];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn written_tables_read_back(g in table()) {
        let read = read_checked(image(&g)?, DISK_SECTORS * SECTOR)?;
        prop_assert_eq!(read, Some(g));
    }

    #[test]
    fn header_fields_with_a_right_crc(
        g in table(),
        changes in prop::collection::vec((any::<bool>(), prop::sample::select(FIELDS), any::<u64>()), 1..4),
        disk_bytes in prop_oneof![Just(DISK_SECTORS * SECTOR), any::<u64>()],
    ) {
        let mut img = image(&g)?;
        for (backup, (offset, wide), value) in changes {
            let lba = if backup { DISK_SECTORS - 1 } else { PRIMARY_HEADER_LBA };
            // Small values too: counts, sizes and LBAs near the real ones.
            let value = if value % 2 == 0 { value % (2 * DISK_SECTORS) } else { value };
            set_header_field(&mut img, lba, offset, value, wide);
        }
        if let Some(read) = read_checked(img, disk_bytes)? {
            prop_assert!(read.validate().is_ok(), "{read:?}");
        }
    }

    #[test]
    fn raw_bytes_changed_in_either_copy(g in table(), edits in prop::collection::vec((any::<bool>(), 0usize..(34 * 512), any::<u8>()), 1..16)) {
        let mut img = image(&g)?;
        let backup_start = img.len() - 33 * 512;
        for (backup, at, byte) in edits {
            let i = if backup { backup_start + at % (33 * 512) } else { at };
            img[i] ^= byte | 1;
        }
        if let Some(read) = read_checked(img, DISK_SECTORS * SECTOR)? {
            prop_assert!(read.validate().is_ok(), "{read:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// GUIDs as text (the image builder's and the tools' form) read back.
    #[test]
    fn guids_read_back(bytes in any::<[u8; 16]>()) {
        let g = Guid::from_random_bytes(bytes);
        prop_assert_eq!(Guid::parse(&g.to_string()).ok(), Some(g));
        prop_assert_eq!(Guid::parse(&g.to_string().to_lowercase()).ok(), Some(g));
    }

    #[test]
    fn guid_text_never_panics(text in prop_oneof![".{0,40}", "[0-9A-Fa-f-]{30,40}"]) {
        if let Err(e) = Guid::parse(&text) {
            prop_assert!(!e.to_string().trim().is_empty());
        }
    }
}
