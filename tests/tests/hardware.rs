//! The disk behind each controller a platform gives it, and the NIC each
//! platform has, through UEFI (OVMF, systemd-boot) with QEMU's real device
//! models: virtio-scsi (GCE), NVMe (AWS, servers), SATA on q35's AHCI
//! controller (servers; the metal disk's generic kernel), vmxnet3 (VMware),
//! e1000e (servers). Each boot must reach the ready line with STATE mounted
//! from its disk and a DHCP address on its NIC, with the drivers of that
//! hardware loaded by PID 1's coldplug and none of the others.

use cairn_qemu::{field, out_dir, Config, DiskBus, Machine};
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(240);
const EXIT: Duration = Duration::from_secs(90);

/// Drivers that no machine here has hardware for, whatever its kernel ships.
const NEVER: &[&str] = &["ena", "gve", "hv_vmbus", "hv_netvsc", "hv_storvsc", "vmw_pvscsi", "mlx5_core", "igb", "ixgbe", "i40e", "bnxt_en", "uas", "usb_storage"];

struct Case {
    disk: &'static str,
    bus: DiskBus,
    nic: &'static str,
    /// The block device STATE is mounted from.
    state_dev: &'static str,
    /// Loaded: the drivers of this machine's disk and NIC.
    loaded: &'static [&'static str],
    /// Not loaded: the drivers of the other cases' hardware.
    absent: &'static [&'static str],
}

fn boots_with(case: Case) {
    let mut cfg = Config::uefi(&out_dir(), case.disk).unwrap_or_else(|e| panic!("{e}"));
    cfg.debug_port = true;
    cfg.disk_bus = case.bus;
    cfg.nic = case.nic.into();
    let mut m = Machine::start(&cfg).expect("QEMU starts");
    let ready = m.wait_for("cairn-init: ready", BOOT).unwrap_or_else(|e| panic!("{:?} + {}: {e}", case.bus, case.nic));
    assert_eq!(field(&ready, "ip").as_deref(), Some("10.0.2.15/24"), "DHCP through {}: {ready}", case.nic);
    let var = m.sh_ok("grep ' /var ' /proc/mounts").unwrap();
    assert!(var.starts_with(&format!("{} /var ext4 rw", case.state_dev)), "STATE from {}: {var}", case.state_dev);
    let modules = m.sh_ok("cut -d' ' -f1 /proc/modules").unwrap();
    let modules: Vec<&str> = modules.lines().map(str::trim).collect();
    for want in case.loaded {
        assert!(modules.contains(want), "{want} is loaded for {:?} + {}: {modules:?}", case.bus, case.nic);
    }
    for not in case.absent.iter().chain(NEVER) {
        assert!(!modules.contains(not), "{not} is not loaded on {:?} + {}: {modules:?}", case.bus, case.nic);
    }
    m.press_power_button().expect("power button");
    assert!(m.wait_exit(EXIT).expect("QEMU exits").success());
}

/// GCE's shape: the disk on virtio-scsi, a virtio NIC.
#[test]
fn virtio_scsi_disk_and_virtio_net() {
    boots_with(Case {
        disk: "cairn-debug.qcow2",
        bus: DiskBus::VirtioScsi,
        nic: "virtio-net-pci",
        state_dev: "/dev/sda4",
        loaded: &["virtio_scsi", "sd_mod", "virtio_net", "virtio_pci"],
        absent: &["virtio_blk", "vmxnet3", "e1000e", "ahci"],
    });
}

/// AWS's and VMware's pieces: NVMe (built into the cloud kernel) and vmxnet3.
#[test]
fn nvme_disk_and_vmxnet3() {
    boots_with(Case {
        disk: "cairn-debug.qcow2",
        bus: DiskBus::Nvme,
        nic: "vmxnet3",
        state_dev: "/dev/nvme0n1p4",
        loaded: &["vmxnet3"],
        absent: &["virtio_blk", "virtio_scsi", "sd_mod", "virtio_net", "e1000e", "ahci"],
    });
}

/// A server's: SATA on q35's AHCI controller and an Intel e1000e, which only
/// the metal disk's generic kernel drives.
#[test]
fn metal_disk_on_ahci_and_e1000e() {
    boots_with(Case {
        disk: "cairn-metal-debug.qcow2",
        bus: DiskBus::Sata,
        nic: "e1000e",
        state_dev: "/dev/sda4",
        loaded: &["ahci", "sd_mod", "e1000e"],
        absent: &["virtio_blk", "virtio_scsi", "virtio_net", "vmxnet3", "nvme"],
    });
}
