//! Coldplug without udev: read every device's `modalias` under /sys/bus and
//! load the shipped modules whose aliases match, so a driver loads only where
//! its hardware is. A loaded driver can bring new devices (virtio_pci the
//! virtio devices, a SCSI controller its disks, xhci the USB sticks), so a
//! caller runs passes until one finds nothing new, or keeps running them
//! while it waits for a disk.

use super::alias::Table;
use super::{Loader, ModuleError};
use std::collections::BTreeSet;
use std::path::Path;

/// What one pass did.
#[derive(Debug, Default)]
pub struct Pass {
    /// Devices seen for the first time.
    pub new_devices: usize,
    /// Modules loaded (dependencies not counted), in order.
    pub loaded: Vec<String>,
    pub errors: Vec<ModuleError>,
}

pub struct Coldplug {
    table: Table,
    buses: Vec<String>,
    loader: Loader,
    /// Devices already handled, by their sysfs directory.
    seen: BTreeSet<String>,
}

impl Coldplug {
    /// The modules directory's modules.alias and modules.dep.
    pub fn open(dir: &Path) -> Result<Coldplug, ModuleError> {
        let path = dir.join("modules.alias");
        let text = std::fs::read_to_string(&path).map_err(|source| ModuleError::Read { path: path.display().to_string(), source })?;
        let table = Table::parse(text);
        let buses = table.buses().into_iter().map(str::to_string).collect();
        Ok(Coldplug { table, buses, loader: Loader::open(dir)?, seen: BTreeSet::new() })
    }

    /// Looks at the devices on the buses the table names that it has not seen
    /// yet, and loads what matches them.
    pub fn pass(&mut self, sys_bus: &Path) -> Pass {
        let mut pass = Pass::default();
        let mut wanted: Vec<&str> = Vec::new();
        for bus in &self.buses {
            let Ok(entries) = std::fs::read_dir(sys_bus.join(bus).join("devices")) else { continue };
            for e in entries.filter_map(Result::ok) {
                let dev = e.path();
                let key = dev.display().to_string();
                if self.seen.contains(&key) {
                    continue;
                }
                // A device whose modalias is not there (yet) is looked at again.
                let Ok(modalias) = std::fs::read_to_string(dev.join("modalias")) else { continue };
                self.seen.insert(key);
                pass.new_devices += 1;
                self.table.matching(modalias.trim_end(), &mut wanted);
            }
        }
        for name in wanted {
            match self.loader.load(name) {
                Ok(0) => {}
                Ok(_) => pass.loaded.push(name.to_string()),
                Err(e) => pass.errors.push(e),
            }
        }
        pass
    }

    /// Passes until one finds no new device or loads nothing, at most `max`.
    pub fn settle(&mut self, sys_bus: &Path, max: usize) -> Pass {
        let mut all = Pass::default();
        for _ in 0..max {
            let p = self.pass(sys_bus);
            all.new_devices += p.new_devices;
            all.errors.extend(p.errors);
            let done = p.loaded.is_empty();
            all.loaded.extend(p.loaded);
            if done {
                break;
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake /sys/bus and a modules directory whose one module file is
    /// missing: the pass names it, and a device seen once is not looked at
    /// again. (Names no host has loaded: the loader skips loaded modules.)
    #[test]
    fn a_matching_device_is_loaded_once_and_others_are_left_alone() {
        let root = std::env::temp_dir().join(format!("cairn-coldplug-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let bus = root.join("bus");
        let dir = root.join("modules");
        for (dev, alias) in [("pci/devices/0000:00:01.0", "pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00"), ("pci/devices/0000:00:02.0", "pci:v00008086d000010D3sv0sd0bc02sc00i00"), ("usb/devices/1-1", "usb:v1p1")] {
            std::fs::create_dir_all(bus.join(dev)).unwrap();
            std::fs::write(bus.join(dev).join("modalias"), format!("{alias}\n")).unwrap();
        }
        std::fs::create_dir_all(bus.join("virtio/devices/virtio0")).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("modules.alias"), "alias pci:v00001AF4d*sv*sd*bc*sc*i* cairn_test_pci\nalias virtio:d00000001v* cairn_test_net\n").unwrap();
        std::fs::write(dir.join("modules.dep"), "kernel/cairn_test_pci.ko:\nkernel/cairn_test_net.ko:\n").unwrap();
        let mut plug = Coldplug::open(&dir).unwrap();
        let p = plug.pass(&bus);
        assert_eq!(p.new_devices, 2, "the pci devices only: no usb pattern, virtio0 has no modalias yet");
        assert!(p.loaded.is_empty());
        assert_eq!(p.errors.len(), 1);
        assert!(p.errors[0].to_string().contains("kernel/cairn_test_pci.ko"), "{}", p.errors[0]);
        std::fs::write(bus.join("virtio/devices/virtio0/modalias"), "virtio:d00000002v00001AF4\n").unwrap();
        let p = plug.pass(&bus);
        assert_eq!((p.new_devices, p.errors.len()), (1, 0), "only the new device, and it matches nothing");
        let _ = std::fs::remove_dir_all(&root);
    }
}
