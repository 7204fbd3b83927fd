#![allow(clippy::unwrap_used)]

use super::*;
use std::fs::File;
use std::io::{BufWriter, Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

const VERITYSETUP: &str = "/usr/sbin/veritysetup";

fn params() -> Params {
    Params {
        salt: hex::decode("5a17c0ffee0ddba11de7ec7ab1e5eed5").unwrap(),
        uuid: [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0x4d, 0xef, 0x81, 0x23, 0x45, 0x67, 0x89, 0xab,
            0xcd, 0xef,
        ],
    }
}

/// Deterministic test data without a rand dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

fn random_data(blocks: u64, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; (blocks * BLOCK) as usize];
    XorShift(seed).fill(&mut data);
    data
}

/// A temp path removed on drop, so failing asserts do not leave files behind.
struct TempPath(PathBuf);

impl TempPath {
    fn new(what: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        TempPath(std::env::temp_dir().join(format!(
            "cairn-verity-test-{}-{n}-{nanos}-{what}",
            std::process::id()
        )))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn veritysetup_available() -> bool {
    Path::new(VERITYSETUP).exists()
        || Command::new("veritysetup")
            .arg("--version")
            .output()
            .is_ok()
}

fn veritysetup_program() -> &'static str {
    if Path::new(VERITYSETUP).exists() {
        VERITYSETUP
    } else {
        "veritysetup"
    }
}

fn tree_for(data: &[u8]) -> HashTree {
    build(Cursor::new(data), data.len() as u64, &params()).unwrap()
}

#[test]
fn one_block_root_is_the_block_digest_and_tree_is_empty() {
    let data = random_data(1, 1);
    let tree = tree_for(&data);
    let mut h = Sha256::new();
    h.update(&params().salt);
    h.update(&data);
    let expected: [u8; 32] = h.finalize().into();
    assert_eq!(tree.root_hash, expected);
    assert_eq!(tree.bytes.len(), BLOCK_BYTES);
    assert_eq!(tree.tree_blocks(), 0);
}

#[test]
fn level_counts_follow_cryptsetup() {
    // (data blocks, tree blocks): 128 digests fit a block, 16384 fit two levels.
    for (blocks, tree_blocks) in [
        (1, 0),
        (2, 1),
        (128, 1),
        (129, 3),
        (16384, 129),
        (16385, 132),
    ] {
        let data = vec![0u8; (blocks * BLOCK) as usize];
        let tree = tree_for(&data);
        assert_eq!(tree.tree_blocks(), tree_blocks, "{blocks} data blocks");
        assert_eq!(tree.data_blocks, blocks);
    }
}

#[test]
fn superblock_layout() {
    let tree = tree_for(&random_data(3, 2));
    let sb = &tree.bytes[..SUPERBLOCK_SIZE];
    assert_eq!(&sb[0..8], b"verity\0\0");
    assert_eq!(&sb[8..16], &[1, 0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(&sb[16..32], &params().uuid);
    assert_eq!(&sb[32..40], b"sha256\0\0");
    assert_eq!(&sb[64..72], &[0, 0x10, 0, 0, 0, 0x10, 0, 0]);
    assert_eq!(&sb[72..80], &3u64.to_le_bytes());
    assert_eq!(&sb[80..82], &16u16.to_le_bytes());
    assert_eq!(&sb[88..104], params().salt.as_slice());
    assert!(tree.bytes[104..BLOCK_BYTES].iter().all(|&b| b == 0));
}

#[test]
fn uuid_string_format() {
    assert_eq!(
        params().uuid_string(),
        "12345678-9abc-4def-8123-456789abcdef"
    );
}

#[test]
fn table_without_options() {
    let tree = HashTree {
        root_hash: [0xab; 32],
        data_blocks: 10,
        bytes: vec![0; BLOCK_BYTES * 2],
    };
    let line = table("/dev/vda3", "/dev/vda4", 0, &tree, &[0x01, 0xff], &[]);
    assert_eq!(
        line,
        format!(
            "0 80 verity 1 /dev/vda3 /dev/vda4 4096 4096 10 1 sha256 {} 01ff",
            "ab".repeat(32)
        )
    );
}

#[test]
fn table_with_options_and_offset() {
    let tree = HashTree {
        root_hash: [0x01; 32],
        data_blocks: 256,
        bytes: Vec::new(),
    };
    let line = table(
        "/dev/vda3",
        "/dev/vda3",
        256 * BLOCK,
        &tree,
        b"\x00\x10",
        &["restart_on_corruption", "ignore_zero_blocks"],
    );
    assert_eq!(
        line,
        format!(
            "0 2048 verity 1 /dev/vda3 /dev/vda3 4096 4096 256 257 sha256 {} 0010 \
             2 restart_on_corruption ignore_zero_blocks",
            "01".repeat(32)
        )
    );
}

#[test]
fn table_counts_option_words_and_spells_empty_salt() {
    let tree = HashTree {
        root_hash: [0; 32],
        data_blocks: 1,
        bytes: Vec::new(),
    };
    let line = table(
        "a",
        "b",
        BLOCK,
        &tree,
        &[],
        &["panic_on_corruption", "fec_roots 2"],
    );
    let suffix = format!(
        " sha256 {} - 3 panic_on_corruption fec_roots 2",
        "00".repeat(32)
    );
    assert!(line.ends_with(&suffix), "{line}");
    assert!(
        line.starts_with("0 8 verity 1 a b 4096 4096 1 2 sha256 "),
        "{line}"
    );
}

#[test]
fn rejects_unaligned_length() {
    let err = build(Cursor::new(vec![0u8; 5000]), 5000, &params()).unwrap_err();
    assert!(matches!(err, Error::UnalignedLength(5000)));
    assert_eq!(
        err.to_string(),
        "Data length 5000 is not a multiple of 4096"
    );
    let err = verify(Cursor::new(vec![0u8; 5000]), 5000, &params(), &[0; 32]).unwrap_err();
    assert!(matches!(err, Error::UnalignedLength(5000)));
}

#[test]
fn rejects_empty_data() {
    let err = build(Cursor::new(Vec::new()), 0, &params()).unwrap_err();
    assert!(matches!(err, Error::EmptyData), "{err}");
}

#[test]
fn rejects_long_salt() {
    let p = Params {
        salt: vec![7; 257],
        uuid: [0; 16],
    };
    let err = build(Cursor::new(vec![0u8; 4096]), 4096, &p).unwrap_err();
    assert!(matches!(err, Error::SaltTooLong(257)), "{err}");
    // The limit itself is fine.
    let p = Params {
        salt: vec![7; 256],
        uuid: [0; 16],
    };
    let tree = build(Cursor::new(vec![0u8; 4096]), 4096, &p).unwrap();
    assert_eq!(&tree.bytes[88..344], &[7u8; 256][..]);
}

#[test]
fn reports_truncated_data() {
    let err = build(Cursor::new(vec![0u8; 8192]), 3 * BLOCK, &params()).unwrap_err();
    assert!(matches!(
        err,
        Error::Truncated {
            read: 8192,
            expected: 12288
        }
    ));
    assert_eq!(
        err.to_string(),
        "Data ended after 8192 bytes, but 12288 were expected"
    );
}

#[test]
fn reports_read_errors_with_offset() {
    /// Serves one block in small pieces, then fails.
    struct Failing {
        served: usize,
    }
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.served >= BLOCK_BYTES {
                return Err(std::io::Error::other("disk on fire"));
            }
            let n = buf.len().min(1000).min(BLOCK_BYTES - self.served);
            buf[..n].fill(0);
            self.served += n;
            Ok(n)
        }
    }
    let err = build(Failing { served: 0 }, 2 * BLOCK, &params()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Reading data at byte offset 4096 (of 8192) failed"
    );
    let source = std::error::Error::source(&err).unwrap();
    assert_eq!(source.to_string(), "disk on fire");
}

#[test]
fn verify_accepts_good_data_and_rejects_a_flipped_byte() {
    let mut data = random_data(129, 7);
    let tree = tree_for(&data);
    verify(
        Cursor::new(&data),
        data.len() as u64,
        &params(),
        &tree.root_hash,
    )
    .unwrap();

    data[100 * BLOCK_BYTES + 17] ^= 0x01;
    let err = verify(
        Cursor::new(&data),
        data.len() as u64,
        &params(),
        &tree.root_hash,
    )
    .unwrap_err();
    let computed = tree_for(&data).root_hash;
    assert!(matches!(err, Error::RootMismatch { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "Root hash mismatch: expected {}, computed {}",
            hex::encode(tree.root_hash),
            hex::encode(computed)
        )
    );
}

/// Runs `veritysetup format` and returns (hash file bytes, printed root hash).
fn veritysetup_format(data_path: &Path, hash_path: &Path, p: &Params) -> (Vec<u8>, String) {
    let out = Command::new(veritysetup_program())
        .arg("format")
        .arg("--format=1")
        .arg("--hash=sha256")
        .arg("--data-block-size=4096")
        .arg("--hash-block-size=4096")
        .arg(format!("--salt={}", hex::encode(&p.salt)))
        .arg(format!("--uuid={}", p.uuid_string()))
        .arg(data_path)
        .arg(hash_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "veritysetup failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let root = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .map(|rest| rest.trim().to_owned())
        .unwrap_or_else(|| panic!("no 'Root hash:' line in veritysetup output:\n{stdout}"));
    (std::fs::read(hash_path).unwrap(), root)
}

#[test]
fn matches_veritysetup() {
    // scripts/install-deps installs it: without it this comparison must fail, not pass.
    assert!(veritysetup_available(), "veritysetup (cryptsetup-bin) is not installed; run scripts/install-deps");
    let p = params();
    for (blocks, seed) in [(1u64, 11u64), (3, 12), (129, 13), (16385, 14)] {
        let data_file = TempPath::new(&format!("data-{blocks}"));
        let hash_file = TempPath::new(&format!("hash-{blocks}"));

        // Written in pieces so the test data, like real images, never has to
        // sit in memory whole.
        {
            let mut w = BufWriter::new(File::create(&data_file.0).unwrap());
            let mut rng = XorShift(seed);
            let mut block = vec![0u8; BLOCK_BYTES];
            for _ in 0..blocks {
                rng.fill(&mut block);
                w.write_all(&block).unwrap();
            }
            w.flush().unwrap();
        }

        let tree = build(File::open(&data_file.0).unwrap(), blocks * BLOCK, &p).unwrap();
        let (theirs, their_root) = veritysetup_format(&data_file.0, &hash_file.0, &p);

        // veritysetup sizes the hash file to exactly superblock block + tree.
        assert_eq!(
            theirs.len(),
            tree.bytes.len(),
            "{blocks} blocks: hash area length"
        );
        if let Some(i) = theirs.iter().zip(&tree.bytes).position(|(a, b)| a != b) {
            panic!("{blocks} blocks: hash area differs first at byte {i}");
        }
        assert_eq!(their_root, tree.root_hex(), "{blocks} blocks: root hash");
        verify(
            File::open(&data_file.0).unwrap(),
            blocks * BLOCK,
            &p,
            &tree.root_hash,
        )
        .unwrap();
    }
}
