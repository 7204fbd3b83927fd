//! The VMware OVA: an OVF descriptor (virtual hardware 13, a paravirtual
//! SCSI controller, a vmxnet3 NIC, UEFI firmware), a manifest of their
//! sha256s, and the disk as a streamOptimized VMDK, in that order in a ustar
//! archive.
//!
//! `qemu-img` writes the VMDK; the only bytes that vary between two runs are
//! the descriptor's `CID=` (a random content id), which [`fix_cid`] replaces with one taken
//! from the VMDK's own content so that the same disk gives the same file.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::os::unix::fs::FileExt;
use std::path::Path;

const SECTOR: u64 = 512;
/// Bytes of the VMDK sparse header we read: magic to descriptor size.
const HEADER: usize = 44;

/// Replaces the `CID=` of a VMDK's embedded descriptor, in place, with the
/// first 32 bits of the sha256 of the file as it is with `CID=00000000`.
pub fn fix_cid(path: &Path) -> Result<String> {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).with_context(|| format!("Cannot open {}", path.display()))?;
    let mut head = [0u8; HEADER];
    f.read_exact_at(&mut head, 0).with_context(|| format!("{}: too short for a VMDK", path.display()))?;
    if &head[0..4] != b"KDMV" {
        bail!("{}: not a sparse VMDK (no KDMV magic)", path.display());
    }
    let word = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().unwrap_or([0; 8]));
    let (desc_at, desc_len) = (word(28) * SECTOR, word(36) * SECTOR);
    if desc_len == 0 || desc_len > 1 << 20 {
        bail!("{}: the VMDK has no embedded descriptor ({desc_len} bytes)", path.display());
    }
    let mut desc = vec![0u8; usize::try_from(desc_len)?];
    f.read_exact_at(&mut desc, desc_at)?;
    let at = find_cid(&desc).with_context(|| format!("{}: the VMDK descriptor has no CID=XXXXXXXX line", path.display()))?;
    let cid_at = desc_at + at as u64;
    f.write_all_at(b"00000000", cid_at)?;
    let mut h = Sha256::new();
    std::io::copy(&mut &f, &mut h).with_context(|| format!("Cannot read {}", path.display()))?;
    let digest = h.finalize();
    let mut cid = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    // ffffffff means "no parent" in parentCID; keep the content id clear of it.
    if cid == u32::MAX {
        cid = 1;
    }
    let text = format!("{cid:08x}");
    f.write_all_at(text.as_bytes(), cid_at)?;
    f.sync_all()?;
    Ok(text)
}

/// Where the eight hex digits of `CID=` start in the descriptor.
fn find_cid(desc: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    for line in desc.split(|&b| b == b'\n') {
        if let Some(rest) = line.strip_prefix(b"CID=") {
            if rest.len() >= 8 && rest[..8].iter().all(u8::is_ascii_hexdigit) {
                return Some(line_start + 4);
            }
        }
        line_start += line.len() + 1;
    }
    None
}

/// The OVF descriptor for a disk of `capacity` bytes held in `vmdk`.
pub fn ovf(version: &str, vmdk: &str, vmdk_size: u64, capacity: u64) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:href="{vmdk}" ovf:id="file1" ovf:size="{vmdk_size}"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="{capacity}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection>
    <Info>The logical networks</Info>
    <Network ovf:name="VM Network">
      <Description>The network the machine gets its address on (DHCP)</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="cairn-{version}">
    <Info>Cairn {version}, a container-optimized Linux</Info>
    <Name>cairn-{version}</Name>
    <OperatingSystemSection ovf:id="101" vmw:osType="other3xLinux64Guest">
      <Info>The guest operating system</Info>
      <Description>Other 3.x or later Linux (64-bit)</Description>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>cairn-{version}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of virtual CPUs</rasd:Description>
        <rasd:ElementName>2 virtual CPUs</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>2</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory size</rasd:Description>
        <rasd:ElementName>2048 MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>2048</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SCSI controller (paravirtual)</rasd:Description>
        <rasd:ElementName>SCSI controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>7</rasd:AddressOnParent>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>VM Network</rasd:Connection>
        <rasd:Description>vmxnet3 network adapter</rasd:Description>
        <rasd:ElementName>Network adapter 1</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"#
    )
}

/// The OVA's manifest: `SHA256(name)= hex` for each file.
pub fn mf(files: &[(&str, &str)]) -> String {
    files.iter().map(|(name, sha)| format!("SHA256({name})= {sha}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cid_line_only() {
        let desc = b"# Disk DescriptorFile\nversion=1\nCID=cd82127b\nparentCID=ffffffff\n";
        let at = find_cid(desc).unwrap();
        assert_eq!(&desc[at..at + 8], b"cd82127b");
        assert_eq!(find_cid(b"parentCID=ffffffff\nCID=xyz\n"), None);
    }

    #[test]
    fn the_ovf_names_the_hardware_vmware_needs() {
        let x = ovf("0.1.0", "d.vmdk", 123, 3 << 30);
        for want in ["vmx-13", ">VirtualSCSI<", ">VmxNet3<", r#"vmw:key="firmware" vmw:value="efi""#, r#"ovf:size="123""#, "#streamOptimized"] {
            assert!(x.contains(want), "{want} missing");
        }
        assert_eq!(mf(&[("a.ovf", "00")]), "SHA256(a.ovf)= 00\n");
    }
}
