//! Which platform the machine runs on, from the firmware's DMI strings, so one
//! image serves every platform. `cairn.platform=` on the command line wins.

use std::path::Path;

/// The platforms Cairn knows, by the name `cairn.platform=` takes.
pub const KNOWN: &[&str] = &["qemu", "ec2", "gce", "azure", "openstack", "metal"];

/// Azure's chassis asset tag, the one DMI string it always sets.
const AZURE_ASSET_TAG: &str = "7783-7084-3265-9085-8269-3286-77";

/// The DMI strings that tell platforms apart.
#[derive(Debug, Default, Clone)]
pub struct Dmi {
    pub sys_vendor: String,
    pub product_name: String,
    pub bios_vendor: String,
    pub chassis_asset_tag: String,
}

impl Dmi {
    pub fn read(root: &Path) -> Dmi {
        let get = |f: &str| std::fs::read_to_string(root.join(f)).map(|s| s.trim().to_string()).unwrap_or_default();
        Dmi {
            sys_vendor: get("sys_vendor"),
            product_name: get("product_name"),
            bios_vendor: get("bios_vendor"),
            chassis_asset_tag: get("chassis_asset_tag"),
        }
    }
}

/// The platform these strings describe.
pub fn detect(dmi: &Dmi) -> &'static str {
    let has = |s: &str, what: &str| s.to_ascii_lowercase().contains(what);
    if dmi.chassis_asset_tag == AZURE_ASSET_TAG {
        "azure"
    } else if has(&dmi.sys_vendor, "amazon") || has(&dmi.bios_vendor, "amazon") || has(&dmi.product_name, "amazon ec2") {
        "ec2"
    } else if has(&dmi.sys_vendor, "google") || has(&dmi.product_name, "google compute engine") {
        "gce"
    } else if has(&dmi.product_name, "openstack") || has(&dmi.sys_vendor, "openstack") {
        "openstack"
    } else if has(&dmi.sys_vendor, "qemu") || has(&dmi.product_name, "kvm") || has(&dmi.bios_vendor, "seabios") {
        "qemu"
    } else {
        "metal"
    }
}

/// The override from the command line, if it names a known platform.
pub fn from_cmdline(cmdline: &str) -> Result<Option<&'static str>, String> {
    let Some(v) = crate::sources::url::value(cmdline, "cairn.platform") else {
        return Ok(None);
    };
    KNOWN.iter().find(|k| **k == v).map(|k| Some(*k)).ok_or_else(|| {
        format!("cairn.platform={v}: not a known platform (known: {}); detecting it instead", KNOWN.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dmi(v: &str, p: &str, b: &str, tag: &str) -> Dmi {
        Dmi { sys_vendor: v.into(), product_name: p.into(), bios_vendor: b.into(), chassis_asset_tag: tag.into() }
    }

    #[test]
    fn each_cloud_by_its_strings() {
        assert_eq!(detect(&dmi("QEMU", "Standard PC (Q35 + ICH9, 2009)", "EFI Development Kit II / OVMF", "")), "qemu");
        assert_eq!(detect(&dmi("Amazon EC2", "t3.micro", "Amazon EC2", "Amazon EC2")), "ec2");
        assert_eq!(detect(&dmi("Google", "Google Compute Engine", "Google", "")), "gce");
        assert_eq!(detect(&dmi("Microsoft Corporation", "Virtual Machine", "Microsoft Corporation", AZURE_ASSET_TAG)), "azure");
        assert_eq!(detect(&dmi("OpenStack Foundation", "OpenStack Nova", "SeaBIOS", "")), "openstack");
        assert_eq!(detect(&dmi("Dell Inc.", "PowerEdge R640", "Dell Inc.", "")), "metal");
    }

    #[test]
    fn the_command_line_overrides() {
        assert_eq!(from_cmdline("console=ttyS0 cairn.platform=gce"), Ok(Some("gce")));
        assert_eq!(from_cmdline("console=ttyS0"), Ok(None));
        assert!(from_cmdline("cairn.platform=mars").unwrap_err().contains("known: qemu"));
    }
}
