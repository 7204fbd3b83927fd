//! The ext4 superblock as STATE holds it: STATE is written at run time and
//! not verified, so anything may be there. `ext4_size` never panics and
//! never gives a block size ext4 cannot have (stage 1 divides by it).

use super::*;
use proptest::prelude::*;

/// A superblock of `blocks` blocks of `1024 << log` bytes, 64-bit or not.
fn superblock(blocks: u64, log: u32, wide: bool) -> Vec<u8> {
    let mut sb = vec![0u8; 1024];
    sb[0x38..0x3a].copy_from_slice(&[0x53, 0xef]);
    sb[0x4..0x8].copy_from_slice(&(blocks as u32).to_le_bytes());
    sb[0x18..0x1c].copy_from_slice(&log.to_le_bytes());
    if wide {
        sb[0x60..0x64].copy_from_slice(&0x80u32.to_le_bytes());
        sb[0x150..0x154].copy_from_slice(&((blocks >> 32) as u32).to_le_bytes());
    }
    sb
}

fn sane(sb: &[u8]) -> Result<(), TestCaseError> {
    if let Some((_, block)) = ext4_size(sb) {
        prop_assert!((1024..=65536).contains(&block) && block.is_power_of_two(), "block size {block}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn superblocks_read_back(blocks in any::<u32>(), hi in any::<u32>(), log in 0u32..=6, wide in any::<bool>()) {
        let blocks = if wide { u64::from(hi) << 32 | u64::from(blocks) } else { u64::from(blocks) };
        prop_assert_eq!(ext4_size(&superblock(blocks, log, wide)), Some((blocks, 1024 << log)));
    }

    #[test]
    fn any_block_size_field(blocks in any::<u64>(), log in any::<u32>(), wide in any::<bool>()) {
        sane(&superblock(blocks, log, wide))?;
    }

    #[test]
    fn mutated_and_short_superblocks(sb in cairn_mutate::mutated(vec![superblock(32768, 2, true), superblock(4096, 0, false)], 8)) {
        sane(&sb)?;
    }
}
