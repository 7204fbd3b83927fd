//! GUID partition tables (UEFI spec, chapter 5) with 512-byte logical
//! sectors and the customary 128 entries of 128 bytes.
//!
//! The host image builder uses [`Gpt::write`] on a fresh image; PID 1 uses
//! [`Gpt::read`], [`Gpt::grown`] and [`write_grown`] on first boot to take
//! over space added to the disk. The crate does no I/O beyond the handles it
//! is given, so a `File` for an image and one for a block device work alike;
//! [`sysfs`] finds which running block device carries which label, and
//! [`efi`] reads what the boot loader said, for PID 1 and the updater alike.

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};

pub mod efi;
mod error;
mod guid;
pub mod sysfs;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use error::describe;
pub use error::Error;
pub use guid::Guid;

/// Logical sector size. 4Kn disks are not supported.
pub const SECTOR: u64 = 512;
/// Entries in the partition entry array we write.
pub const ENTRY_COUNT: usize = 128;
/// Bytes per partition entry we write.
pub const ENTRY_SIZE: usize = 128;
/// Maximum partition name length in UTF-16 code units.
pub const NAME_UNITS: usize = 36;
/// Partition alignment used when growing: 1 MiB.
pub const ALIGN_SECTORS: u64 = 2048;

const ENTRY_SECTORS: u64 = (ENTRY_COUNT * ENTRY_SIZE) as u64 / SECTOR;
const PRIMARY_HEADER_LBA: u64 = 1;
const PRIMARY_ENTRIES_LBA: u64 = 2;
/// MBR + primary header + primary entries.
const FIRST_USABLE: u64 = PRIMARY_ENTRIES_LBA + ENTRY_SECTORS;
/// Backup entries + backup header.
const BACKUP_SECTORS: u64 = ENTRY_SECTORS + 1;
/// Room for both copies of the table and nothing else.
pub const MIN_DISK_SECTORS: u64 = FIRST_USABLE + BACKUP_SECTORS;

const SIGNATURE: &[u8; 8] = b"EFI PART";
const REVISION: u32 = 0x0001_0000;
const HEADER_SIZE: u32 = 92;
/// Keeps a corrupt header from making us allocate gigabytes.
const MAX_ENTRY_ARRAY_BYTES: u64 = 4 << 20;

/// The disk GUID every Cairn image is built with. A disk that still carries
/// it has never booted: its first boot gives the disk and every partition
/// GUIDs of their own ([`Gpt::with_new_guids`]), so that a second Cairn disk
/// in the same machine can be told apart.
pub const BUILD_DISK_GUID: &str = "C41F0000-0000-4000-8000-00000000D15C";

/// Partition type GUIDs (Discoverable Partitions Specification / UEFI).
pub mod types {
    pub const ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
    pub const LINUX_ROOT_X86_64: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
    pub const LINUX_DATA: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    pub type_guid: Guid,
    /// Unique partition GUID; must differ between partitions.
    pub guid: Guid,
    pub first_lba: u64,
    /// Inclusive.
    pub last_lba: u64,
    pub attributes: u64,
    /// At most [`NAME_UNITS`] UTF-16 code units, no NUL.
    pub name: String,
}

impl Partition {
    pub fn sectors(&self) -> u64 {
        self.last_lba
            .saturating_sub(self.first_lba)
            .saturating_add(1)
    }

    pub fn bytes(&self) -> u64 {
        self.sectors().saturating_mul(SECTOR)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gpt {
    pub disk_guid: Guid,
    /// Size of the disk the table describes; the backup header sits at
    /// `disk_sectors - 1`.
    pub disk_sectors: u64,
    /// In entry-array order; partition N is `partitions[N - 1]`.
    pub partitions: Vec<Partition>,
}

/// Which copy of the table [`Gpt::read`] used.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Source {
    Primary,
    Backup,
}

impl Source {
    fn title(self) -> &'static str {
        match self {
            Source::Primary => "Primary",
            Source::Backup => "Backup",
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Primary => "primary",
            Source::Backup => "backup",
        })
    }
}

/// Makes written data durable. [`write_grown`] needs this between the two
/// copies of the table: without a barrier the disk may reorder the writes
/// and a power cut could leave neither copy valid.
pub trait SyncDevice {
    fn sync(&mut self) -> io::Result<()>;
}

impl SyncDevice for File {
    fn sync(&mut self) -> io::Result<()> {
        self.sync_all()
    }
}

impl<T: SyncDevice + ?Sized> SyncDevice for &mut T {
    fn sync(&mut self) -> io::Result<()> {
        (**self).sync()
    }
}

/// In-memory images have nothing to make durable.
impl<T> SyncDevice for Cursor<T> {
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Size in bytes of an image file or block device (`lseek(SEEK_END)` works
/// for both on Linux, where `metadata().len()` is 0 for block devices).
pub fn device_bytes<D: Seek>(dev: &mut D) -> Result<u64, Error> {
    dev.seek(SeekFrom::End(0)).map_err(|source| Error::Io {
        action: "finding the size of the disk".to_string(),
        source,
    })
}

impl Gpt {
    /// First usable LBA: after the MBR, primary header and 32 entry sectors.
    pub fn first_usable(&self) -> u64 {
        FIRST_USABLE
    }

    /// Last usable LBA: before the 32 backup entry sectors and the backup
    /// header.
    pub fn last_usable(&self) -> u64 {
        self.disk_sectors.saturating_sub(BACKUP_SECTORS + 1)
    }

    fn backup_header_lba(&self) -> u64 {
        self.disk_sectors.saturating_sub(1)
    }

    fn backup_entries_lba(&self) -> u64 {
        self.disk_sectors.saturating_sub(BACKUP_SECTORS)
    }

    /// Checks that the table can be written and read back unchanged and
    /// that partitions stay within the usable area without overlapping.
    pub fn validate(&self) -> Result<(), Error> {
        if self.disk_sectors < MIN_DISK_SECTORS {
            return Err(Error::DiskTooSmall {
                sectors: self.disk_sectors,
                min: MIN_DISK_SECTORS,
            });
        }
        if self.partitions.len() > ENTRY_COUNT {
            return Err(Error::TooManyPartitions {
                count: self.partitions.len(),
                max: ENTRY_COUNT,
            });
        }
        for (i, p) in self.partitions.iter().enumerate() {
            let part = || describe(i, &p.name);
            if p.type_guid.is_zero() {
                return Err(Error::ZeroType { part: part() });
            }
            let units = p.name.encode_utf16().count();
            if units > NAME_UNITS {
                return Err(Error::NameTooLong {
                    part: part(),
                    name: p.name.clone(),
                    units,
                    max: NAME_UNITS,
                });
            }
            if p.name.contains('\0') {
                return Err(Error::NameHasNul {
                    part: part(),
                    name: p.name.clone(),
                });
            }
            if p.first_lba > p.last_lba {
                return Err(Error::Reversed {
                    part: part(),
                    first_lba: p.first_lba,
                    last_lba: p.last_lba,
                });
            }
            if p.first_lba < self.first_usable() {
                return Err(Error::BeforeFirstUsable {
                    part: part(),
                    first_lba: p.first_lba,
                    first_usable: self.first_usable(),
                });
            }
            if p.last_lba > self.last_usable() {
                return Err(Error::PastLastUsable {
                    part: part(),
                    last_lba: p.last_lba,
                    last_usable: self.last_usable(),
                });
            }
        }

        // Sweep in start order, remembering the partition that reaches
        // furthest: any overlap involves it, including non-adjacent ones.
        let mut order: Vec<usize> = (0..self.partitions.len()).collect();
        order.sort_by_key(|&i| (self.partitions[i].first_lba, i));
        let mut reach: Option<usize> = None;
        for &i in &order {
            let p = &self.partitions[i];
            if let Some(r) = reach {
                let q = &self.partitions[r];
                if p.first_lba <= q.last_lba {
                    let (a, b) = if r < i { (r, i) } else { (i, r) };
                    let (pa, pb) = (&self.partitions[a], &self.partitions[b]);
                    return Err(Error::Overlap {
                        a: a + 1,
                        b: b + 1,
                        a_first: pa.first_lba,
                        a_last: pa.last_lba,
                        b_first: pb.first_lba,
                        b_last: pb.last_lba,
                    });
                }
                if p.last_lba > q.last_lba {
                    reach = Some(i);
                }
            } else {
                reach = Some(i);
            }
        }

        for (a, pa) in self.partitions.iter().enumerate() {
            for (b, pb) in self.partitions.iter().enumerate().skip(a + 1) {
                if pa.guid == pb.guid {
                    return Err(Error::DuplicateGuid {
                        a: a + 1,
                        b: b + 1,
                        guid: pa.guid.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Writes the whole table: protective MBR, primary header and entries,
    /// backup entries and header. Nothing else on the device is touched.
    pub fn write<D: Write + Seek>(&self, dev: &mut D) -> Result<(), Error> {
        self.validate()?;
        let entries = self.encode_entries();
        let entries_crc = crc32fast::hash(&entries);
        write_at(
            dev,
            0,
            &protective_mbr(self.disk_sectors),
            "the protective MBR",
        )?;
        self.write_copy(dev, Source::Primary, &entries, entries_crc)?;
        self.write_copy(dev, Source::Backup, &entries, entries_crc)?;
        dev.flush().map_err(|source| Error::Io {
            action: "flushing the GPT".to_string(),
            source,
        })
    }

    /// Entries first, header last: a header is only valid with a matching
    /// entry array, so a cut between the two leaves this copy detectably
    /// broken rather than silently wrong.
    fn write_copy<D: Write + Seek>(
        &self,
        dev: &mut D,
        which: Source,
        entries: &[u8],
        entries_crc: u32,
    ) -> Result<(), Error> {
        let header = self.header(which, entries_crc);
        write_at(
            dev,
            header.entries_lba,
            entries,
            &format!("the {which} GPT partition entries"),
        )?;
        write_at(
            dev,
            header.my_lba,
            &header.encode(),
            &format!("the {which} GPT header"),
        )
    }

    fn header(&self, which: Source, entries_crc: u32) -> Header {
        let (my_lba, alternate_lba, entries_lba) = match which {
            Source::Primary => (
                PRIMARY_HEADER_LBA,
                self.backup_header_lba(),
                PRIMARY_ENTRIES_LBA,
            ),
            Source::Backup => (
                self.backup_header_lba(),
                PRIMARY_HEADER_LBA,
                self.backup_entries_lba(),
            ),
        };
        Header {
            my_lba,
            alternate_lba,
            first_usable: self.first_usable(),
            last_usable: self.last_usable(),
            disk_guid: self.disk_guid,
            entries_lba,
            entry_count: ENTRY_COUNT as u32,
            entry_size: ENTRY_SIZE as u32,
            entries_crc,
        }
    }

    fn encode_entries(&self) -> Vec<u8> {
        let mut out = vec![0u8; ENTRY_COUNT * ENTRY_SIZE];
        for (p, e) in self.partitions.iter().zip(out.chunks_exact_mut(ENTRY_SIZE)) {
            e[0..16].copy_from_slice(&p.type_guid.0);
            e[16..32].copy_from_slice(&p.guid.0);
            e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
            e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
            e[48..56].copy_from_slice(&p.attributes.to_le_bytes());
            for (unit, slot) in p.name.encode_utf16().zip(e[56..128].chunks_exact_mut(2)) {
                slot.copy_from_slice(&unit.to_le_bytes());
            }
        }
        out
    }

    /// Whether this table still has the GUIDs the image was built with.
    pub fn is_as_built(&self) -> bool {
        Guid::parse(BUILD_DISK_GUID).is_ok_and(|g| g == self.disk_guid)
    }

    /// The same table with a new disk GUID and new partition GUIDs, each
    /// made from 16 bytes `random` returns; layout, types and names stay.
    pub fn with_new_guids(&self, mut random: impl FnMut() -> [u8; 16]) -> Gpt {
        let mut out = self.clone();
        out.disk_guid = Guid::from_random_bytes(random());
        for p in &mut out.partitions {
            p.guid = Guid::from_random_bytes(random());
        }
        out
    }

    /// Reads the primary table, or the backup if the primary is damaged.
    ///
    /// `disk_bytes` is the current size of the device; the backup is looked
    /// for at its last LBA and, if the primary header itself is intact but
    /// its entries are not, where that header says the backup is (the disk
    /// may have been enlarged since). The returned `disk_sectors` is the
    /// size the table describes, which differs from `disk_bytes` when the
    /// disk was resized underneath it.
    pub fn read<D: Read + Seek>(dev: &mut D, disk_bytes: u64) -> Result<(Gpt, Source), Error> {
        let primary_header = read_header(dev, Source::Primary, PRIMARY_HEADER_LBA);
        let (primary_err, alternate) = match primary_header {
            Ok(h) => match read_table(dev, Source::Primary, &h) {
                Ok(gpt) => return Ok((gpt, Source::Primary)),
                Err(e) => (e, Some(h.alternate_lba)),
            },
            Err(e) => (e, None),
        };

        let mut candidates = Vec::new();
        if let Some(last) = (disk_bytes / SECTOR).checked_sub(1) {
            candidates.push(last);
        }
        if let Some(alt) = alternate {
            if alt > PRIMARY_HEADER_LBA && !candidates.contains(&alt) {
                candidates.push(alt);
            }
        }
        let mut backup_err = None;
        for lba in candidates {
            match read_header(dev, Source::Backup, lba)
                .and_then(|h| read_table(dev, Source::Backup, &h))
            {
                Ok(gpt) => return Ok((gpt, Source::Backup)),
                Err(e) => {
                    // The disk's last LBA is the backup's proper place, so its
                    // error is the one worth reporting.
                    backup_err.get_or_insert(e);
                }
            }
        }
        Err(Error::NoValidTable {
            primary: Box::new(primary_err),
            backup: Box::new(backup_err.unwrap_or(Error::NoBackupLocation { disk_bytes })),
        })
    }

    /// The table for the same disk enlarged (or otherwise resized) to
    /// `new_disk_sectors`: the backup moves to the new end, and the
    /// partition reaching furthest grows to the last 1 MiB boundary that
    /// fits, i.e. it ends at `(last_usable + 1)` rounded down to a multiple
    /// of [`ALIGN_SECTORS`], minus one. It never shrinks, and it is left
    /// alone when less than 1 MiB would be gained, so growing is idempotent.
    ///
    /// `None` when there is nothing to do: the size is unchanged and the
    /// last partition already ends within 1 MiB of the last usable LBA. A
    /// size change alone still yields a table, because the backup header
    /// must sit at the last LBA to be found.
    pub fn grown(&self, new_disk_sectors: u64) -> Result<Option<Gpt>, Error> {
        self.validate()?;
        if new_disk_sectors < MIN_DISK_SECTORS {
            return Err(Error::DiskTooSmall {
                sectors: new_disk_sectors,
                min: MIN_DISK_SECTORS,
            });
        }
        let mut grown = self.clone();
        grown.disk_sectors = new_disk_sectors;
        let last_usable = grown.last_usable();
        let mut changed = new_disk_sectors != self.disk_sectors;

        let furthest = self
            .partitions
            .iter()
            .enumerate()
            .max_by_key(|(_, p)| p.last_lba);
        if let Some((i, p)) = furthest {
            if p.last_lba > last_usable {
                return Err(Error::DiskShrunk {
                    new_sectors: new_disk_sectors,
                    part: describe(i, &p.name),
                    last_lba: p.last_lba,
                    last_usable,
                });
            }
            if last_usable - p.last_lba >= ALIGN_SECTORS {
                // Rounding last_usable + 1 rather than last_usable keeps a
                // disk whose usable area ends exactly on a boundary from
                // losing its final MiB.
                let aligned_end =
                    ((last_usable + 1) / ALIGN_SECTORS * ALIGN_SECTORS).saturating_sub(1);
                let end = aligned_end.max(p.last_lba);
                if end != p.last_lba {
                    grown.partitions[i].last_lba = end;
                    changed = true;
                }
            }
        }
        if !changed {
            return Ok(None);
        }
        grown.validate()?;
        Ok(Some(grown))
    }
}

/// Writes a table produced by [`Gpt::grown`] or [`Gpt::with_new_guids`] (or
/// the table read, to repair a damaged copy) so that a power cut at any
/// point leaves a table [`Gpt::read`] accepts (given the new disk size),
/// either the old one from the primary copy or the new one:
///
/// 1. the protective MBR's size, which no reader of ours depends on;
/// 2. the new backup entries and header at the new end, then a sync; the
///    old primary is untouched and still valid throughout;
/// 3. the new primary entries and header, then a sync; while they are
///    half-written the primary fails its CRCs and the new backup is used;
/// 4. the old backup header, now inside the grown partition, is zeroed so
///    that no stale table lingers there, then a sync;
/// 5. the result is read back and compared.
pub fn write_grown<D: Read + Write + Seek + SyncDevice>(
    dev: &mut D,
    grown: &Gpt,
) -> Result<(), Error> {
    grown.validate()?;
    let entries = grown.encode_entries();
    let entries_crc = crc32fast::hash(&entries);

    // Only a header that sits in what is now plain partition space is
    // retired; one overlapped by the new backup area is overwritten anyway,
    // and one past the new end is not ours to touch.
    let stale_backup = read_header(dev, Source::Primary, PRIMARY_HEADER_LBA)
        .ok()
        .map(|h| h.alternate_lba)
        .filter(|&lba| lba >= FIRST_USABLE && lba < grown.backup_entries_lba())
        .filter(|&lba| read_header(dev, Source::Backup, lba).is_ok());

    update_protective_mbr(dev, grown.disk_sectors)?;
    grown.write_copy(dev, Source::Backup, &entries, entries_crc)?;
    sync(dev, "after writing the backup GPT")?;
    grown.write_copy(dev, Source::Primary, &entries, entries_crc)?;
    sync(dev, "after writing the primary GPT")?;
    if let Some(lba) = stale_backup {
        write_at(
            dev,
            lba,
            &[0u8; SECTOR as usize],
            "the old backup GPT header",
        )?;
        sync(dev, "after retiring the old backup GPT header")?;
    }

    let (back, which) = Gpt::read(dev, grown.disk_sectors.saturating_mul(SECTOR))?;
    if which != Source::Primary || back != *grown {
        return Err(Error::VerifyFailed { which });
    }
    Ok(())
}

fn sync<D: SyncDevice>(dev: &mut D, when: &str) -> Result<(), Error> {
    dev.sync().map_err(|source| Error::Io {
        action: format!("syncing the disk {when}"),
        source,
    })
}

fn byte_offset(lba: u64, what: &str) -> Result<u64, Error> {
    lba.checked_mul(SECTOR).ok_or_else(|| Error::Io {
        action: format!("seeking to {what} at LBA {lba}"),
        source: io::Error::new(
            io::ErrorKind::InvalidInput,
            "LBA beyond 64-bit byte offsets",
        ),
    })
}

fn write_at<D: Write + Seek>(dev: &mut D, lba: u64, data: &[u8], what: &str) -> Result<(), Error> {
    let offset = byte_offset(lba, what)?;
    dev.seek(SeekFrom::Start(offset))
        .and_then(|_| dev.write_all(data))
        .map_err(|source| Error::Io {
            action: format!("writing {what} at LBA {lba}"),
            source,
        })
}

fn read_at<D: Read + Seek>(
    dev: &mut D,
    lba: u64,
    len: usize,
    what: &str,
) -> Result<Vec<u8>, Error> {
    let offset = byte_offset(lba, what)?;
    let mut buf = vec![0u8; len];
    dev.seek(SeekFrom::Start(offset))
        .and_then(|_| dev.read_exact(&mut buf))
        .map_err(|source| Error::Io {
            action: format!("reading {what} at LBA {lba}"),
            source,
        })?;
    Ok(buf)
}

/// A protective MBR: one partition of type 0xEE covering the disk (as much
/// of it as 32 bits can say), so MBR-only tools see the disk as in use.
/// Boot code and disk signature stay zero to keep images reproducible.
fn protective_mbr(disk_sectors: u64) -> [u8; SECTOR as usize] {
    let mut mbr = [0u8; SECTOR as usize];
    let e = &mut mbr[446..462];
    e[0] = 0x00; // not bootable
    e[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
    e[4] = 0xEE;
    e[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]); // CHS "not representable", as UEFI allows
    e[8..12].copy_from_slice(&1u32.to_le_bytes());
    e[12..16].copy_from_slice(&protective_size(disk_sectors).to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    mbr
}

fn protective_size(disk_sectors: u64) -> u32 {
    u32::try_from(disk_sectors.saturating_sub(1)).unwrap_or(u32::MAX)
}

/// Rewrites only the size of a pure protective MBR, keeping whatever boot
/// code and disk signature another tool may have put there. Hybrid or
/// missing MBRs are left alone: their layout is someone else's decision.
fn update_protective_mbr<D: Read + Write + Seek>(
    dev: &mut D,
    disk_sectors: u64,
) -> Result<(), Error> {
    let mut mbr = read_at(dev, 0, SECTOR as usize, "the protective MBR")?;
    if mbr[510..512] != [0x55, 0xAA] {
        return Ok(());
    }
    let used: Vec<usize> = (0..4)
        .map(|i| 446 + 16 * i)
        .filter(|&off| mbr[off + 4] != 0)
        .collect();
    let [off] = used[..] else { return Ok(()) };
    if mbr[off + 4] != 0xEE || mbr[off + 8..off + 12] != 1u32.to_le_bytes() {
        return Ok(());
    }
    let size = protective_size(disk_sectors).to_le_bytes();
    if mbr[off + 12..off + 16] == size {
        return Ok(());
    }
    mbr[off + 12..off + 16].copy_from_slice(&size);
    write_at(dev, 0, &mbr, "the protective MBR")
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v)
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

fn guid_at(b: &[u8], at: usize) -> Guid {
    let mut g = [0u8; 16];
    g.copy_from_slice(&b[at..at + 16]);
    Guid(g)
}

/// Reads the header at `lba` and checks what can be checked without the
/// entry array: signature, size, CRC, self-pointer and array geometry.
fn read_header<D: Read + Seek>(dev: &mut D, which: Source, lba: u64) -> Result<Header, Error> {
    let buf = read_at(
        dev,
        lba,
        SECTOR as usize,
        &format!("the {which} GPT header"),
    )?;
    if &buf[0..8] != SIGNATURE {
        return Err(Error::NoSignature { which, lba });
    }
    let size = le32(&buf, 12);
    if size < HEADER_SIZE || u64::from(size) > SECTOR {
        return Err(Error::BadHeaderSize { which, lba, size });
    }
    let stored = le32(&buf, 16);
    let mut zeroed = buf[..size as usize].to_vec();
    zeroed[16..20].fill(0);
    let computed = crc32fast::hash(&zeroed);
    if stored != computed {
        return Err(Error::HeaderCrc {
            which,
            lba,
            stored,
            computed,
        });
    }
    let my_lba = le64(&buf, 24);
    if my_lba != lba {
        return Err(Error::WrongMyLba { which, lba, my_lba });
    }
    let header = Header {
        my_lba,
        alternate_lba: le64(&buf, 32),
        first_usable: le64(&buf, 40),
        last_usable: le64(&buf, 48),
        disk_guid: guid_at(&buf, 56),
        entries_lba: le64(&buf, 72),
        entry_count: le32(&buf, 80),
        entry_size: le32(&buf, 84),
        entries_crc: le32(&buf, 88),
    };
    let array_bytes = u64::from(header.entry_count) * u64::from(header.entry_size);
    if header.entry_size < ENTRY_SIZE as u32
        || header.entry_size > 4096
        || !header.entry_size.is_power_of_two()
        || array_bytes > MAX_ENTRY_ARRAY_BYTES
    {
        return Err(Error::UnsupportedEntryArray {
            which,
            lba,
            count: header.entry_count,
            size: header.entry_size,
        });
    }
    Ok(header)
}

/// Reads and checks the entry array a valid header points at, and turns
/// the pair into a `Gpt`.
fn read_table<D: Read + Seek>(dev: &mut D, which: Source, header: &Header) -> Result<Gpt, Error> {
    // Bounded by MAX_ENTRY_ARRAY_BYTES in read_header.
    let len = header.entry_count as usize * header.entry_size as usize;
    let array = read_at(
        dev,
        header.entries_lba,
        len,
        &format!("the {which} GPT partition entries"),
    )?;
    let computed = crc32fast::hash(&array);
    if computed != header.entries_crc {
        return Err(Error::EntriesCrc {
            which,
            lba: header.entries_lba,
            stored: header.entries_crc,
            computed,
        });
    }

    let mut partitions = Vec::new();
    let mut first_unused = None;
    for (i, e) in array.chunks_exact(header.entry_size as usize).enumerate() {
        let type_guid = guid_at(e, 0);
        if type_guid.is_zero() {
            first_unused.get_or_insert(i);
            continue;
        }
        if let Some(empty) = first_unused {
            return Err(Error::SparseEntries {
                which,
                empty: empty + 1,
                used: i + 1,
            });
        }
        let units: Vec<u16> = e[56..128]
            .chunks_exact(2)
            .map(|u| u16::from_le_bytes([u[0], u[1]]))
            .take_while(|&u| u != 0)
            .collect();
        partitions.push(Partition {
            type_guid,
            guid: guid_at(e, 16),
            first_lba: le64(e, 32),
            last_lba: le64(e, 40),
            attributes: le64(e, 48),
            // A mangled name must not make the disk unbootable.
            name: String::from_utf16_lossy(&units),
        });
    }

    let disk_sectors = match which {
        Source::Primary => header.alternate_lba.checked_add(1),
        Source::Backup => header.my_lba.checked_add(1),
    }
    .filter(|&n| n >= MIN_DISK_SECTORS)
    .ok_or(Error::BadAlternateLba {
        which,
        lba: header.my_lba,
        alternate_lba: header.alternate_lba,
    })?;
    let gpt = Gpt {
        disk_guid: header.disk_guid,
        disk_sectors,
        partitions,
    };
    gpt.validate().map_err(|problem| Error::InvalidTable {
        which,
        lba: header.my_lba,
        problem: Box::new(problem),
    })?;
    Ok(gpt)
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Header {
    my_lba: u64,
    alternate_lba: u64,
    first_usable: u64,
    last_usable: u64,
    disk_guid: Guid,
    entries_lba: u64,
    entry_count: u32,
    entry_size: u32,
    entries_crc: u32,
}

impl Header {
    fn encode(&self) -> [u8; SECTOR as usize] {
        let mut b = [0u8; SECTOR as usize];
        b[0..8].copy_from_slice(SIGNATURE);
        b[8..12].copy_from_slice(&REVISION.to_le_bytes());
        b[12..16].copy_from_slice(&HEADER_SIZE.to_le_bytes());
        // 16..20: CRC, computed below over the header with this field zero.
        // 20..24: reserved, zero.
        b[24..32].copy_from_slice(&self.my_lba.to_le_bytes());
        b[32..40].copy_from_slice(&self.alternate_lba.to_le_bytes());
        b[40..48].copy_from_slice(&self.first_usable.to_le_bytes());
        b[48..56].copy_from_slice(&self.last_usable.to_le_bytes());
        b[56..72].copy_from_slice(&self.disk_guid.0);
        b[72..80].copy_from_slice(&self.entries_lba.to_le_bytes());
        b[80..84].copy_from_slice(&self.entry_count.to_le_bytes());
        b[84..88].copy_from_slice(&self.entry_size.to_le_bytes());
        b[88..92].copy_from_slice(&self.entries_crc.to_le_bytes());
        let crc = crc32fast::hash(&b[..HEADER_SIZE as usize]);
        b[16..20].copy_from_slice(&crc.to_le_bytes());
        b
    }
}
