//! Kernel modules loaded by name, dependencies first, from the standard
//! `modules.dep` the image builder writes; by device in `coldplug`.

pub mod alias;
pub mod coldplug;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

/// Module name → (path relative to the modules directory, direct dependencies).
#[derive(Debug, Default, Clone)]
pub struct DepIndex {
    modules: BTreeMap<String, (String, Vec<String>)>,
}

/// The name the kernel knows a module file by: no directory, no `.ko`, `_` for `-`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

impl DepIndex {
    /// Parses `modules.dep` (`path: dep-path dep-path ...`).
    pub fn parse(text: &str) -> DepIndex {
        let mut modules = BTreeMap::new();
        for line in text.lines() {
            let Some((path, deps)) = line.split_once(':') else { continue };
            let deps = deps.split_whitespace().map(module_name).collect();
            modules.insert(module_name(path), (path.trim().to_string(), deps));
        }
        DepIndex { modules }
    }

    /// The files to load for `name`, dependencies first, each once. Modules
    /// already in `loaded` are left out.
    pub fn load_order(&self, name: &str, loaded: &BTreeSet<String>) -> Result<Vec<String>, ModuleError> {
        let mut order = Vec::new();
        let mut seen = loaded.clone();
        self.visit(&module_name(name), &mut seen, &mut Vec::new(), &mut order)?;
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        seen: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
        order: &mut Vec<String>,
    ) -> Result<(), ModuleError> {
        if seen.contains(name) {
            return Ok(());
        }
        if stack.iter().any(|s| s == name) {
            return Err(ModuleError::Cycle { chain: format!("{} -> {name}", stack.join(" -> ")) });
        }
        let (path, deps) = self
            .modules
            .get(name)
            .ok_or_else(|| ModuleError::Unknown { name: name.to_string() })?;
        stack.push(name.to_string());
        for dep in deps {
            self.visit(dep, seen, stack, order)?;
        }
        stack.pop();
        seen.insert(name.to_string());
        order.push(path.clone());
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// The module is not in modules.dep: the image does not ship it.
    #[error("Module {name} is not in this image's modules.dep")]
    Unknown { name: String },
    /// modules.dep loops.
    #[error("Module dependencies loop: {chain}")]
    Cycle { chain: String },
    /// The kernel refused the module.
    #[error("Cannot load module {path}")]
    Load {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("Cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Loads modules from one modules directory, remembering what it loaded.
pub struct Loader {
    dir: PathBuf,
    index: DepIndex,
    loaded: BTreeSet<String>,
    /// `module.param=value` words of the kernel command line: the kernel
    /// applies them only to built-in code, modprobe hands them to modules;
    /// so does this loader (`nvme_core.io_timeout=` where NVMe is a module).
    params: Vec<(String, String)>,
}

/// The `module.param=value` words of a command line, as (module, `param=value`).
pub fn module_params(cmdline: &str) -> Vec<(String, String)> {
    cmdline
        .split_ascii_whitespace()
        .filter_map(|w| {
            let (key, _) = w.split_once('=')?;
            let (module, param) = key.split_once('.')?;
            let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            (ok(module) && ok(param)).then(|| (module_name(module), w[module.len() + 1..].to_string()))
        })
        .collect()
}

impl Loader {
    /// Opens `/lib/modules/<release>` and its modules.dep.
    pub fn open(dir: &Path) -> Result<Loader, ModuleError> {
        let dep = dir.join("modules.dep");
        let text = std::fs::read_to_string(&dep)
            .map_err(|source| ModuleError::Read { path: dep.display().to_string(), source })?;
        // What is loaded already (by stage 1, or built in) is not loaded again.
        let loaded = std::fs::read_dir("/sys/module")
            .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
            .unwrap_or_default();
        let params = module_params(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default());
        Ok(Loader { dir: dir.to_path_buf(), index: DepIndex::parse(&text), loaded, params })
    }

    /// Loads `name` and what it depends on. Returns how many files it loaded.
    pub fn load(&mut self, name: &str) -> Result<usize, ModuleError> {
        let order = self.index.load_order(name, &self.loaded)?;
        for rel in &order {
            let path = self.dir.join(rel);
            let start = std::time::Instant::now();
            let file = std::fs::File::open(&path)
                .map_err(|source| ModuleError::Read { path: path.display().to_string(), source })?;
            let name = module_name(rel);
            let params: Vec<&str> = self.params.iter().filter(|(m, _)| *m == name).map(|(_, p)| p.as_str()).collect();
            let params = std::ffi::CString::new(params.join(" ")).unwrap_or_default();
            match crate::sys::finit_module(&file, &params) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(source) => {
                    return Err(ModuleError::Load { path: path.display().to_string(), source })
                }
            }
            tracing::debug!("module {name} loaded in {}us", start.elapsed().as_micros());
            self.loaded.insert(name);
        }
        Ok(order.len())
    }
}

/// Reads a list of module names, one a line, `#` for comments.
pub fn read_list(path: &Path) -> io::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio.ko:
kernel/drivers/md/dm-verity.ko: kernel/drivers/md/dm-mod.ko
kernel/drivers/md/dm-mod.ko:
kernel/x/a.ko: kernel/x/b.ko
kernel/x/b.ko: kernel/x/a.ko
";

    #[test]
    fn dependencies_come_first_and_once() {
        let idx = DepIndex::parse(DEP);
        let order = idx.load_order("virtio_pci", &BTreeSet::new()).unwrap();
        assert_eq!(
            order,
            [
                "kernel/drivers/virtio/virtio.ko",
                "kernel/drivers/virtio/virtio_ring.ko",
                "kernel/drivers/virtio/virtio_pci.ko"
            ]
        );
    }

    #[test]
    fn dashes_and_underscores_are_one_name() {
        let idx = DepIndex::parse(DEP);
        let order = idx.load_order("dm-verity", &BTreeSet::new()).unwrap();
        assert_eq!(order, ["kernel/drivers/md/dm-mod.ko", "kernel/drivers/md/dm-verity.ko"]);
        let loaded = BTreeSet::from(["dm_mod".to_string()]);
        assert_eq!(idx.load_order("dm_verity", &loaded).unwrap(), ["kernel/drivers/md/dm-verity.ko"]);
    }

    #[test]
    fn module_parameters_come_from_the_command_line() {
        let p = module_params("console=ttyS0 nvme_core.io_timeout=4294967295 cairn.slot=a dm-mod.x=1 .y=2 a.=3 quiet");
        let want = [("nvme_core", "io_timeout=4294967295"), ("cairn", "slot=a"), ("dm_mod", "x=1")];
        assert_eq!(p, want.map(|(m, v)| (m.to_string(), v.to_string())));
    }

    #[test]
    fn unknown_and_cyclic_modules_are_errors() {
        let idx = DepIndex::parse(DEP);
        let err = idx.load_order("zfs", &BTreeSet::new()).unwrap_err();
        assert_eq!(err.to_string(), "Module zfs is not in this image's modules.dep");
        let err = idx.load_order("a", &BTreeSet::new()).unwrap_err();
        assert_eq!(err.to_string(), "Module dependencies loop: a -> b -> a");
    }
}
