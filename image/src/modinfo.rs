//! Kernel modules and their dependencies, read from each module's `.modinfo`
//! section (`depends=`), since Debian's package ships no `modules.dep`.

use cairn_kconfig::normalize_module;
use object::{Object, ObjectSection};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ModError {
    #[error("Cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a kernel module: {problem}")]
    NotModule { path: String, problem: String },
    #[error("Module {name} is needed{by} but not in {dir}")]
    Missing { name: String, by: String, dir: String },
}

/// The `key=value` strings of a module's `.modinfo` section.
pub fn modinfo(bytes: &[u8], path: &str) -> Result<Vec<(String, String)>, ModError> {
    let bad = |problem: String| ModError::NotModule { path: path.into(), problem };
    let file = object::File::parse(bytes).map_err(|e| bad(e.to_string()))?;
    let section = file.section_by_name(".modinfo").ok_or_else(|| bad("no .modinfo section".into()))?;
    let data = section.data().map_err(|e| bad(e.to_string()))?;
    Ok(data
        .split(|&b| b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok()?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// The modules found under a `lib/modules/<release>` directory, by name.
pub struct ModuleDir {
    root: PathBuf,
    by_name: BTreeMap<String, String>,
}

fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) -> Result<(), ModError> {
    let read = |source| ModError::Read { path: dir.display().to_string(), source };
    let mut entries: Vec<_> = std::fs::read_dir(dir).map_err(read)?.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            walk(&p, root, out)?;
        } else if let Some(name) = p.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".ko")) {
            let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
            out.insert(normalize_module(name), rel);
        }
    }
    Ok(())
}

impl ModuleDir {
    pub fn open(root: &Path) -> Result<ModuleDir, ModError> {
        let mut by_name = BTreeMap::new();
        walk(root, root, &mut by_name)?;
        Ok(ModuleDir { root: root.to_path_buf(), by_name })
    }

    fn depends(&self, rel: &str) -> Result<Vec<String>, ModError> {
        let path = self.root.join(rel);
        let bytes = std::fs::read(&path)
            .map_err(|source| ModError::Read { path: path.display().to_string(), source })?;
        let info = modinfo(&bytes, &path.display().to_string())?;
        Ok(info
            .into_iter()
            .filter(|(k, _)| k == "depends")
            .flat_map(|(_, v)| v.split(',').filter(|s| !s.is_empty()).map(normalize_module).collect::<Vec<_>>())
            .collect())
    }

    /// The closure of `wanted` under `depends=`: name → (relative path, deps).
    pub fn closure(&self, wanted: &[String]) -> Result<BTreeMap<String, (String, Vec<String>)>, ModError> {
        let mut out = BTreeMap::new();
        let mut todo: Vec<(String, String)> = wanted.iter().map(|w| (normalize_module(w), String::new())).collect();
        let mut seen = BTreeSet::new();
        while let Some((name, by)) = todo.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            let rel = self.by_name.get(&name).ok_or_else(|| ModError::Missing {
                name: name.clone(),
                by: if by.is_empty() { String::new() } else { format!(" by {by}") },
                dir: self.root.display().to_string(),
            })?;
            let deps = self.depends(rel)?;
            for d in &deps {
                todo.push((d.clone(), name.clone()));
            }
            out.insert(name, (rel.clone(), deps));
        }
        Ok(out)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `alias=` patterns of one module.
    fn aliases(&self, name: &str) -> Result<Vec<String>, ModError> {
        let rel = self.by_name.get(name).ok_or_else(|| ModError::Missing {
            name: name.to_string(),
            by: String::new(),
            dir: self.root.display().to_string(),
        })?;
        let path = self.root.join(rel);
        let bytes = std::fs::read(&path).map_err(|source| ModError::Read { path: path.display().to_string(), source })?;
        let info = modinfo(&bytes, &path.display().to_string())?;
        Ok(info.into_iter().filter(|(k, _)| k == "alias").map(|(_, v)| v).collect())
    }
}

/// Whether an alias names a device on a bus (`pci:v...`, `acpi*:VMBUS:*`),
/// as a device's `modalias` in sysfs would: the bus name, then `:` or `*`.
/// Others (`fs-ext4`, `block-major-8-*`, `devname:...`) name no device.
fn is_device_alias(alias: &str) -> bool {
    let bus_len = alias.bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'_').count();
    let bus = &alias[..bus_len];
    bus_len > 0 && bus != "devname" && matches!(alias.as_bytes().get(bus_len), Some(b':' | b'*')) && alias.contains(':')
}

/// `modules.alias` for `names`: `alias PATTERN MODULE` lines, sorted, only
/// the patterns that match a device's modalias. PID 1's coldplug reads it.
pub fn modules_alias(dir: &ModuleDir, names: &[String]) -> Result<String, ModError> {
    let mut lines = BTreeSet::new();
    for name in names {
        for a in dir.aliases(&normalize_module(name))? {
            if is_device_alias(&a) && !a.contains(char::is_whitespace) {
                lines.insert(format!("alias {a} {}", normalize_module(name)));
            }
        }
    }
    let mut text = String::from("# Device patterns of the modules PID 1 loads where their hardware is\n");
    for l in lines {
        text.push_str(&l);
        text.push('\n');
    }
    Ok(text)
}

/// `modules.dep` for a closure: `path: dep-path ...`, sorted by path.
pub fn modules_dep(closure: &BTreeMap<String, (String, Vec<String>)>) -> String {
    let mut lines: Vec<String> = closure
        .values()
        .map(|(rel, deps)| {
            let dep_paths: Vec<&str> =
                deps.iter().filter_map(|d| closure.get(d).map(|(p, _)| p.as_str())).collect();
            format!("{rel}: {}", dep_paths.join(" ")).trim_end().to_string()
        })
        .collect();
    lines.sort();
    lines.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_dep_lists_paths_of_dependencies() {
        let mut c = BTreeMap::new();
        c.insert("a".to_string(), ("kernel/a.ko".to_string(), vec!["b".to_string()]));
        c.insert("b".to_string(), ("kernel/b.ko".to_string(), vec![]));
        assert_eq!(modules_dep(&c), "kernel/a.ko: kernel/b.ko\nkernel/b.ko:\n");
    }

    #[test]
    fn only_device_aliases_count() {
        for a in ["pci:v00001AF4d*sv*sd*bc*sc*i*", "acpi*:VMBUS:*", "virtio:d00000001v*", "usb:v*p*d*dc*dsc*dp*ic08isc06ip50in*"] {
            assert!(is_device_alias(a), "{a}");
        }
        for a in ["fs-ext4", "block-major-8-*", "devname:nvme-fabrics", "net-pf-16-proto-16", ":x"] {
            assert!(!is_device_alias(a), "{a}");
        }
    }

    #[test]
    fn non_elf_is_a_clear_error() {
        let err = modinfo(b"not an elf", "x.ko").unwrap_err();
        assert!(err.to_string().starts_with("x.ko is not a kernel module"));
    }

    /// Against the pinned Debian kernel, when the build has unpacked it.
    #[test]
    fn resolves_real_virtio_net_dependencies() {
        // `make unit-test` unpacks it first (make kernel).
        let dir = std::fs::read_dir("../build/kernel/lib/modules")
            .ok()
            .and_then(|mut d| d.next())
            .expect("build/kernel/lib/modules has the pinned kernel's modules: run make kernel");
        let root = dir.unwrap().path();
        let md = ModuleDir::open(&root).unwrap();
        let c = md.closure(&["virtio_net".to_string()]).unwrap();
        for m in ["virtio_net", "virtio", "virtio_ring", "net_failover", "failover"] {
            assert!(c.contains_key(m), "{m} missing from {:?}", c.keys());
        }
        let alias = modules_alias(&md, &["virtio_net".to_string(), "virtio_pci".to_string()]).unwrap();
        assert!(alias.contains("\nalias virtio:d00000001v* virtio_net\n"), "{alias}");
        assert!(alias.contains("\nalias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\n"), "{alias}");
        let err = md.closure(&["no_such_mod".to_string()]).unwrap_err();
        assert!(err.to_string().starts_with("Module no_such_mod is needed but not in"));
    }
}
