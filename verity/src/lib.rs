//! dm-verity hash trees, byte-for-byte identical to what
//! `veritysetup format --format=1 --hash=sha256 --data-block-size=4096
//! --hash-block-size=4096` writes (with its superblock).
//!
//! On-disk layout of the hash area, as written by cryptsetup 2.6.1:
//!
//! * Block 0: the 512-byte superblock (see [`superblock`]), zero-padded to
//!   4096 bytes so that the tree stays block aligned.
//! * Blocks 1..: the tree levels, the level nearest the root first and the
//!   level hashing the data blocks last. Each level is a run of whole blocks
//!   holding packed 32-byte digests; the tail of a level's last block is zero.
//! * The root hash is not stored: it is the digest of the top level's single
//!   block, or of the only data block when the data is one block long (then
//!   the tree has no levels at all and the hash area is the superblock only).
//!
//! Every digest is `sha256(salt || block)` (hash format 1).

use sha2::{Digest, Sha256};
use std::fmt;
use std::io::{ErrorKind, Read};

/// Size of both data and hash blocks.
pub const BLOCK: u64 = 4096;

/// Size of a SHA-256 digest.
pub const DIGEST: usize = 32;

/// The kernel and cryptsetup keep the salt in a fixed 256-byte superblock field.
pub const MAX_SALT: usize = 256;

/// Size of the on-disk superblock before padding.
pub const SUPERBLOCK_SIZE: usize = 512;

/// `BLOCK` as a `usize`, for slicing buffers.
const BLOCK_BYTES: usize = BLOCK as usize;

/// Reading several blocks per call keeps system calls few without holding
/// more than a small, fixed part of the data in memory.
const READ_CHUNK_BLOCKS: usize = 64;

/// Everything that can go wrong building or checking a tree.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Data length {0} is not a multiple of {BLOCK}")]
    UnalignedLength(u64),
    #[error("Data is empty: a verity tree needs at least one {BLOCK}-byte block")]
    EmptyData,
    #[error("Salt is {0} bytes long; dm-verity allows at most {MAX_SALT}")]
    SaltTooLong(usize),
    #[error("Data is {0} bytes long, too large to hold its hash tree in memory")]
    TooLarge(u64),
    #[error("Data ended after {read} bytes, but {expected} were expected")]
    Truncated { read: u64, expected: u64 },
    #[error("Reading data at byte offset {offset} (of {expected}) failed")]
    Read {
        offset: u64,
        expected: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("Root hash mismatch: expected {expected}, computed {computed}")]
    RootMismatch { expected: String, computed: String },
}

/// Parameters stored in the superblock besides the fixed algorithm and sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// At most [`MAX_SALT`] bytes; may be empty.
    pub salt: Vec<u8>,
    pub uuid: [u8; 16],
}

impl Params {
    /// The UUID in the `8-4-4-4-12` form that `veritysetup --uuid` takes.
    pub fn uuid_string(&self) -> String {
        let h = hex::encode(self.uuid);
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

/// A computed hash area and the values needed to activate it.
#[derive(Clone, PartialEq, Eq)]
pub struct HashTree {
    pub root_hash: [u8; 32],
    pub data_blocks: u64,
    /// Bytes to write to the hash area: superblock (padded to 4096) then the tree levels.
    pub bytes: Vec<u8>,
}

impl HashTree {
    /// Number of tree blocks after the superblock block (veritysetup's "Hash blocks").
    pub fn tree_blocks(&self) -> u64 {
        (self.bytes.len() as u64 / BLOCK).saturating_sub(1)
    }

    /// Size of the protected data in 512-byte sectors, as device-mapper counts it.
    pub fn data_sectors(&self) -> u64 {
        self.data_blocks * (BLOCK / 512)
    }

    /// The root hash as lowercase hex, as veritysetup prints it.
    pub fn root_hex(&self) -> String {
        hex::encode(self.root_hash)
    }
}

// The tree bytes can be megabytes; printing them helps nobody.
impl fmt::Debug for HashTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashTree")
            .field("root_hash", &self.root_hex())
            .field("data_blocks", &self.data_blocks)
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .finish()
    }
}

/// Hash `data_len` bytes read from `data` (must be a multiple of 4096; error otherwise).
pub fn build<R: Read>(data: R, data_len: u64, params: &Params) -> Result<HashTree, Error> {
    let data_blocks = check(data_len, params)?;
    let salted = salted_hasher(&params.salt);
    let leaves = hash_data(data, data_len, &salted)?;

    let mut levels = Vec::new();
    let root_hash = fold_levels(leaves, &salted, |level| levels.push(level));

    let total = BLOCK_BYTES + levels.iter().map(Vec::len).sum::<usize>();
    let mut bytes = Vec::with_capacity(total);
    bytes.extend_from_slice(&superblock(params, data_blocks));
    bytes.resize(BLOCK_BYTES, 0);
    // Levels were produced leaves first; the disk wants the root end first.
    for level in levels.iter().rev() {
        bytes.extend_from_slice(level);
    }

    Ok(HashTree {
        root_hash,
        data_blocks,
        bytes,
    })
}

/// Re-reads data and checks it against an expected root hash (used later by the updater to check a written slot).
pub fn verify<R: Read>(
    data: R,
    data_len: u64,
    params: &Params,
    expected_root: &[u8; 32],
) -> Result<(), Error> {
    check(data_len, params)?;
    let salted = salted_hasher(&params.salt);
    let leaves = hash_data(data, data_len, &salted)?;
    // Only the root matters here, so each level is dropped once the next is built.
    let computed = fold_levels(leaves, &salted, drop);
    if &computed != expected_root {
        return Err(Error::RootMismatch {
            expected: hex::encode(expected_root),
            computed: hex::encode(computed),
        });
    }
    Ok(())
}

/// The device-mapper table line for a verity target whose hash area begins at byte
/// `hash_offset` of `hash_dev` (the superblock is there, so the tree's first block
/// is at hash_offset + 4096). Returns e.g.
/// "0 <data_sectors> verity 1 <data_dev> <hash_dev> 4096 4096 <data_blocks> <hash_start_block> sha256 <root hex> <salt hex>"
/// followed by " <n> <opts...>" when `options` is not empty (n = number of option words).
///
/// `hash_offset` must be a multiple of [`BLOCK`]: the target addresses the
/// hash device in whole hash blocks. An empty salt is written as `-`, which is
/// how the kernel spells "no salt". Options may hold several words each
/// (e.g. `"fec_roots 2"`); they are counted word by word as the kernel does.
// `u64::is_multiple_of` needs Rust 1.87; the workspace still supports 1.82.
#[allow(clippy::manual_is_multiple_of)]
pub fn table(
    data_dev: &str,
    hash_dev: &str,
    hash_offset: u64,
    tree: &HashTree,
    salt: &[u8],
    options: &[&str],
) -> String {
    debug_assert!(
        hash_offset % BLOCK == 0,
        "hash_offset {hash_offset} is not a multiple of {BLOCK}"
    );
    let salt_hex = if salt.is_empty() {
        "-".to_owned()
    } else {
        hex::encode(salt)
    };
    let mut line = format!(
        "0 {} verity 1 {} {} {BLOCK} {BLOCK} {} {} sha256 {} {}",
        tree.data_sectors(),
        data_dev,
        hash_dev,
        tree.data_blocks,
        hash_start_block(hash_offset),
        tree.root_hex(),
        salt_hex,
    );
    let words: Vec<&str> = options.iter().flat_map(|o| o.split_whitespace()).collect();
    if !words.is_empty() {
        line.push_str(&format!(" {} {}", words.len(), words.join(" ")));
    }
    line
}

/// The table's `<hash_start_block>`: the hash block holding the top tree
/// level, i.e. the one right after the superblock at `hash_offset`.
pub fn hash_start_block(hash_offset: u64) -> u64 {
    hash_offset / BLOCK + 1
}

/// The 512-byte superblock (`struct verity_sb` in cryptsetup), little endian:
///
/// | offset | size | field                              |
/// |--------|------|------------------------------------|
/// | 0      | 8    | signature `"verity\0\0"`           |
/// | 8      | 4    | version = 1                        |
/// | 12     | 4    | hash_type = 1 (salt first)         |
/// | 16     | 16   | uuid (raw bytes)                   |
/// | 32     | 32   | algorithm, NUL padded (`"sha256"`) |
/// | 64     | 4    | data_block_size                    |
/// | 68     | 4    | hash_block_size                    |
/// | 72     | 8    | data_blocks                        |
/// | 80     | 2    | salt_size                          |
/// | 82     | 6    | padding                            |
/// | 88     | 256  | salt, zero padded                  |
/// | 344    | 168  | padding                            |
///
/// The caller has checked that the salt fits.
pub fn superblock(params: &Params, data_blocks: u64) -> [u8; SUPERBLOCK_SIZE] {
    let mut sb = [0u8; SUPERBLOCK_SIZE];
    sb[0..8].copy_from_slice(b"verity\0\0");
    sb[8..12].copy_from_slice(&1u32.to_le_bytes());
    sb[12..16].copy_from_slice(&1u32.to_le_bytes());
    sb[16..32].copy_from_slice(&params.uuid);
    sb[32..38].copy_from_slice(b"sha256");
    sb[64..68].copy_from_slice(&(BLOCK as u32).to_le_bytes());
    sb[68..72].copy_from_slice(&(BLOCK as u32).to_le_bytes());
    sb[72..80].copy_from_slice(&data_blocks.to_le_bytes());
    let salt_len = params.salt.len().min(MAX_SALT);
    sb[80..82].copy_from_slice(&(salt_len as u16).to_le_bytes());
    sb[88..88 + salt_len].copy_from_slice(&params.salt[..salt_len]);
    sb
}

/// Validates the inputs and returns the number of data blocks.
// `u64::is_multiple_of` needs Rust 1.87; the workspace still supports 1.82.
#[allow(clippy::manual_is_multiple_of)]
fn check(data_len: u64, params: &Params) -> Result<u64, Error> {
    if params.salt.len() > MAX_SALT {
        return Err(Error::SaltTooLong(params.salt.len()));
    }
    if data_len % BLOCK != 0 {
        return Err(Error::UnalignedLength(data_len));
    }
    if data_len == 0 {
        return Err(Error::EmptyData);
    }
    Ok(data_len / BLOCK)
}

/// Format 1 puts the salt before the block, so the state after absorbing the
/// salt is computed once and cloned for every block.
fn salted_hasher(salt: &[u8]) -> Sha256 {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher
}

fn digest(salted: &Sha256, block: &[u8]) -> [u8; DIGEST] {
    let mut hasher = salted.clone();
    hasher.update(block);
    hasher.finalize().into()
}

/// Streams the data and returns the packed digests of its blocks.
fn hash_data<R: Read>(mut data: R, data_len: u64, salted: &Sha256) -> Result<Vec<u8>, Error> {
    let leaf_bytes = (data_len / BLOCK)
        .checked_mul(DIGEST as u64)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or(Error::TooLarge(data_len))?;
    let mut leaves = Vec::with_capacity(leaf_bytes);
    let mut buf = vec![0u8; READ_CHUNK_BLOCKS * BLOCK_BYTES];
    let mut offset = 0u64;
    while offset < data_len {
        let want = usize::try_from((data_len - offset).min(buf.len() as u64))
            .map_err(|_| Error::TooLarge(data_len))?;
        let chunk = &mut buf[..want];
        fill(&mut data, chunk, offset, data_len)?;
        for block in chunk.chunks_exact(BLOCK_BYTES) {
            leaves.extend_from_slice(&digest(salted, block));
        }
        offset += want as u64;
    }
    Ok(leaves)
}

/// Like `read_exact`, but errors say where in the data reading stopped.
fn fill<R: Read>(data: &mut R, buf: &mut [u8], offset: u64, expected: u64) -> Result<(), Error> {
    let mut filled = 0;
    while filled < buf.len() {
        match data.read(&mut buf[filled..]) {
            Ok(0) => {
                return Err(Error::Truncated {
                    read: offset + filled as u64,
                    expected,
                })
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(Error::Read {
                    offset: offset + filled as u64,
                    expected,
                    source,
                })
            }
        }
    }
    Ok(())
}

/// Builds the levels above the data digests, handing each finished level
/// (leaves first, zero-padded to whole blocks) to `emit`, and returns the root.
///
/// This reproduces cryptsetup's level count: a level is added while the one
/// below spans more than one block, so one data block gives no level at all
/// (its digest is the root) and up to 128 data blocks give a single level.
fn fold_levels(mut digests: Vec<u8>, salted: &Sha256, mut emit: impl FnMut(Vec<u8>)) -> [u8; 32] {
    loop {
        if digests.len() == DIGEST {
            let mut root = [0u8; DIGEST];
            root.copy_from_slice(&digests);
            return root;
        }
        let padded = digests.len().div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
        digests.resize(padded, 0);
        let next: Vec<u8> = digests
            .chunks_exact(BLOCK_BYTES)
            .flat_map(|block| digest(salted, block))
            .collect();
        emit(digests);
        digests = next;
    }
}

#[cfg(test)]
mod tests;
