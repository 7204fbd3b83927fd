use std::io;

use crate::Source;

/// Everything that can go wrong reading, checking or writing a table.
///
/// Partitions are numbered from 1, as `sgdisk` and the kernel number them,
/// and are described as e.g. "Partition 3 (STATE)".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("I/O error {action}")]
    Io {
        action: String,
        #[source]
        source: io::Error,
    },

    #[error("Invalid GUID {input:?}: expected the form XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX")]
    BadGuid { input: String },

    #[error("{} GPT header at LBA {lba} has no \"EFI PART\" signature", .which.title())]
    NoSignature { which: Source, lba: u64 },

    #[error("{} GPT header at LBA {lba} declares a header size of {size} bytes (must be 92 to 512)", .which.title())]
    BadHeaderSize { which: Source, lba: u64, size: u32 },

    #[error("{} GPT header CRC mismatch at LBA {lba} (stored {stored:#010x}, computed {computed:#010x})", .which.title())]
    HeaderCrc {
        which: Source,
        lba: u64,
        stored: u32,
        computed: u32,
    },

    #[error("{} GPT header at LBA {lba} says it lives at LBA {my_lba}", .which.title())]
    WrongMyLba {
        which: Source,
        lba: u64,
        my_lba: u64,
    },

    #[error("{} GPT header at LBA {lba} points its backup at LBA {alternate_lba}, which is not a plausible disk end", .which.title())]
    BadAlternateLba {
        which: Source,
        lba: u64,
        alternate_lba: u64,
    },

    #[error("{} GPT header at LBA {lba} declares {count} entries of {size} bytes, which is not supported (entry size must be a power of two from 128 to 4096, array at most 4 MiB)", .which.title())]
    UnsupportedEntryArray {
        which: Source,
        lba: u64,
        count: u32,
        size: u32,
    },

    #[error("{} GPT partition entry array CRC mismatch at LBA {lba} (stored {stored:#010x}, computed {computed:#010x})", .which.title())]
    EntriesCrc {
        which: Source,
        lba: u64,
        stored: u32,
        computed: u32,
    },

    #[error("{} GPT entry {empty} is unused but entry {used} is in use; sparse tables are not supported because rewriting them would renumber partitions", .which.title())]
    SparseEntries {
        which: Source,
        empty: usize,
        used: usize,
    },

    #[error("{} GPT at LBA {lba} is well-formed but describes an invalid table: {problem}", .which.title())]
    InvalidTable {
        which: Source,
        lba: u64,
        problem: Box<Error>,
    },

    #[error("No valid GPT found: primary: {}; backup: {}", chain(.primary), chain(.backup))]
    NoValidTable {
        primary: Box<Error>,
        backup: Box<Error>,
    },

    #[error("No backup GPT location to try: the disk is only {disk_bytes} bytes")]
    NoBackupLocation { disk_bytes: u64 },

    #[error("Disk of {sectors} sectors is too small for a GPT (needs at least {min})")]
    DiskTooSmall { sectors: u64, min: u64 },

    #[error("{count} partitions do not fit in a GPT of {max} entries")]
    TooManyPartitions { count: usize, max: usize },

    #[error("{part} has the all-zero type GUID, which marks an unused entry")]
    ZeroType { part: String },

    #[error(
        "{part} name {name:?} is {units} UTF-16 units long, more than the {max} a GPT entry holds"
    )]
    NameTooLong {
        part: String,
        name: String,
        units: usize,
        max: usize,
    },

    #[error("{part} name {name:?} contains a NUL character, which would cut it short on disk")]
    NameHasNul { part: String, name: String },

    #[error("{part} starts at LBA {first_lba}, after its last LBA {last_lba}")]
    Reversed {
        part: String,
        first_lba: u64,
        last_lba: u64,
    },

    #[error("{part} starts at LBA {first_lba}, before the first usable LBA {first_usable}")]
    BeforeFirstUsable {
        part: String,
        first_lba: u64,
        first_usable: u64,
    },

    #[error("{part} ends at LBA {last_lba}, past the last usable LBA {last_usable}")]
    PastLastUsable {
        part: String,
        last_lba: u64,
        last_usable: u64,
    },

    #[error("Partitions {a} and {b} overlap (LBA {a_first}-{a_last} and {b_first}-{b_last})")]
    Overlap {
        a: usize,
        b: usize,
        a_first: u64,
        a_last: u64,
        b_first: u64,
        b_last: u64,
    },

    #[error("Partitions {a} and {b} share the unique GUID {guid}")]
    DuplicateGuid { a: usize, b: usize, guid: String },

    #[error("Disk of {new_sectors} sectors is too small for this table: {part} ends at LBA {last_lba}, but the last usable LBA would be {last_usable}")]
    DiskShrunk {
        new_sectors: u64,
        part: String,
        last_lba: u64,
        last_usable: u64,
    },

    #[error("GPT read back after growing does not match what was written (read the {which} copy)")]
    VerifyFailed { which: Source },
}

/// Renders an error followed by its causes, so that an error nested in
/// `NoValidTable` does not lose the underlying I/O reason.
fn chain(e: &Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

pub(crate) fn describe(index: usize, name: &str) -> String {
    if name.is_empty() {
        format!("Partition {}", index + 1)
    } else {
        format!("Partition {} ({name})", index + 1)
    }
}
