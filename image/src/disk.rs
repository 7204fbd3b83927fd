//! The GPT disk: ESP, ROOT-A, ROOT-B, STATE. Written sparse (all-zero blocks
//! are holes), so the 2.3 GiB image takes only what it holds.

use crate::esp;
use anyhow::{bail, Context, Result};
use cairn_gpt::{types, Gpt, Guid, Partition};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

const MIB: u64 = 1 << 20;
const SECTORS_PER_MIB: u64 = MIB / 512;

/// The partition layout. Labels, type GUIDs and the build's disk and
/// partition GUIDs are fixed and documented in the README, so the same build
/// gives the same bytes; a disk's first boot replaces the disk and partition
/// GUIDs with random ones, so that no two machines' disks share them.
pub struct Slot {
    pub label: &'static str,
    pub type_guid: &'static str,
    pub guid: &'static str,
    pub size_mib: u64,
}

pub const LAYOUT: &[Slot] = &[
    Slot { label: "ESP", type_guid: types::ESP, guid: "C41F0000-0000-4000-8000-0000000000E5", size_mib: 128 },
    Slot { label: "ROOT-A", type_guid: types::LINUX_ROOT_X86_64, guid: "C41F0000-0000-4000-8000-00000000000A", size_mib: 1024 },
    Slot { label: "ROOT-B", type_guid: types::LINUX_ROOT_X86_64, guid: "C41F0000-0000-4000-8000-00000000000B", size_mib: 1024 },
    Slot { label: "STATE", type_guid: types::LINUX_DATA, guid: "C41F0000-0000-4000-8000-000000005747", size_mib: 128 },
];
pub const STATE_FS_UUID: &str = "c41f0000-0000-4000-8000-000000005747";

pub fn table() -> Result<Gpt> {
    let mut lba = SECTORS_PER_MIB;
    let mut partitions = Vec::new();
    for s in LAYOUT {
        let sectors = s.size_mib * SECTORS_PER_MIB;
        partitions.push(Partition {
            type_guid: Guid::parse(s.type_guid)?,
            guid: Guid::parse(s.guid)?,
            first_lba: lba,
            last_lba: lba + sectors - 1,
            attributes: 0,
            name: s.label.to_string(),
        });
        lba += sectors;
    }
    // One MiB at the end holds the backup table.
    let gpt = Gpt { disk_guid: Guid::parse(cairn_gpt::BUILD_DISK_GUID)?, disk_sectors: lba + SECTORS_PER_MIB, partitions };
    gpt.validate()?;
    Ok(gpt)
}

/// Writes `data` at `offset`, leaving all-zero 4 KiB blocks as holes.
pub(crate) fn write_sparse(f: &mut std::fs::File, offset: u64, data: &[u8]) -> Result<()> {
    for (i, chunk) in data.chunks(4096).enumerate() {
        if chunk.iter().all(|&b| b == 0) {
            continue;
        }
        f.seek(SeekFrom::Start(offset + i as u64 * 4096))?;
        f.write_all(chunk)?;
    }
    Ok(())
}

/// An empty ext4 for STATE, reproducible: fixed UUID and hash seed, and
/// E2FSPROGS_FAKE_TIME for every timestamp.
pub fn state_fs(size: u64, scratch: &Path, epoch: u64) -> Result<Vec<u8>> {
    let _ = std::fs::remove_file(scratch);
    let f = std::fs::File::create(scratch).with_context(|| format!("Cannot create {}", scratch.display()))?;
    f.set_len(size)?;
    drop(f);
    let status = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-L", "STATE", "-U", STATE_FS_UUID])
        .arg("-E")
        .arg(format!("root_owner=0:0,hash_seed={STATE_FS_UUID},lazy_itable_init=1,nodiscard"))
        .arg(scratch)
        .env("E2FSPROGS_FAKE_TIME", epoch.to_string())
        .status()
        .context("Cannot run mkfs.ext4 (package e2fsprogs)")?;
    if !status.success() {
        bail!("mkfs.ext4 failed ({status}) on {}", scratch.display());
    }
    let bytes = std::fs::read(scratch)?;
    let _ = std::fs::remove_file(scratch);
    Ok(bytes)
}

pub struct DiskInputs<'a> {
    pub esp_files: esp::Files,
    pub root_a: &'a [u8],
    pub state: Vec<u8>,
}

pub fn write(out: &Path, inputs: &DiskInputs<'_>) -> Result<()> {
    let gpt = table()?;
    let part = |label: &str| gpt.partitions.iter().find(|p| p.name == label).context("layout lacks a partition");
    let size = |p: &Partition| (p.last_lba - p.first_lba + 1) * 512;
    let esp_part = part("ESP")?;
    let root_part = part("ROOT-A")?;
    let state_part = part("STATE")?;
    if inputs.root_a.len() as u64 > size(root_part) {
        bail!("the root image ({} MiB) does not fit ROOT-A ({} MiB)", inputs.root_a.len() as u64 / MIB, size(root_part) / MIB);
    }
    let esp = esp::build(size(esp_part), &inputs.esp_files)?;
    let tmp = out.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("Cannot create {}", tmp.display()))?;
    f.set_len(gpt.disk_sectors * 512)?;
    gpt.write(&mut f)?;
    write_sparse(&mut f, esp_part.first_lba * 512, &esp)?;
    write_sparse(&mut f, root_part.first_lba * 512, inputs.root_a)?;
    write_sparse(&mut f, state_part.first_lba * 512, &inputs.state)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, out).with_context(|| format!("Cannot rename {} to {}", tmp.display(), out.display()))?;
    Ok(())
}

pub fn qcow2(raw: &Path, out: &Path) -> Result<()> {
    let tmp = out.with_extension("qcow2.tmp");
    let status = std::process::Command::new("qemu-img")
        .args(["convert", "-q", "-c", "-f", "raw", "-O", "qcow2"])
        .arg(raw)
        .arg(&tmp)
        .status()
        .context("Cannot run qemu-img")?;
    if !status.success() {
        bail!("qemu-img convert failed ({status})");
    }
    std::fs::rename(&tmp, out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_aligned_and_in_order() {
        let g = table().unwrap();
        let names: Vec<_> = g.partitions.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["ESP", "ROOT-A", "ROOT-B", "STATE"]);
        for p in &g.partitions {
            assert_eq!(p.first_lba % SECTORS_PER_MIB, 0, "{} is MiB-aligned", p.name);
        }
        assert!(g.partitions[3].last_lba <= g.last_usable());
        assert!(g.is_as_built(), "first boot knows the disk by the build's GUID");
    }
}
