//! The kernel modules an image ships, chosen by the kernel-config table, with
//! their dependency closure, a `modules.dep`, and a `modules.alias` for the
//! ones PID 1 loads where their hardware is.

use crate::modinfo;
use crate::tree::Tree;
use anyhow::{bail, Result};
use cairn_kconfig::{check, for_flavour, modules_for, read_config, requirements, Flavour, Load};
use std::path::Path;

/// The one kernel release unpacked under `dir/lib/modules`.
pub fn kernel_release(dir: &Path) -> Result<String> {
    let mods = dir.join("lib/modules");
    let mut releases: Vec<String> = std::fs::read_dir(&mods)
        .map_err(|e| anyhow::anyhow!("Cannot list {} (is the kernel unpacked?): {e}", mods.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    releases.sort();
    match releases.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no kernel release under {}", mods.display()),
        many => bail!("more than one kernel release under {}: {}", mods.display(), many.join(", ")),
    }
}

/// Adds the modules whose load class passes `want` (and what they depend on)
/// under `base/<release>`, with modules.dep, and writes the boot-time lists
/// to /etc/cairn. Modules named in `drop` are left out of all of them (test
/// fixtures: a release without its NIC driver). Returns how many module
/// files it added.
pub fn add(tree: &mut Tree, kernel: &Path, base: &str, want: impl Fn(Load) -> bool, drop: &[String]) -> Result<usize> {
    let release = kernel_release(kernel)?;
    let config = read_config(&kernel.join(format!("boot/config-{release}")))?;
    let reqs = for_flavour(&requirements(), Flavour::of_release(&release));
    let missing = check(&reqs, &config);
    if !missing.is_empty() {
        let names: Vec<_> = missing.iter().map(|m| m.to_string()).collect();
        bail!("kernel {release} lacks options Cairn needs:\n  {}", names.join("\n  "));
    }
    for d in drop {
        if !modules_for(&reqs, &config).iter().any(|(n, _)| n == d) {
            bail!("--drop-module {d}: no such module in kernel-config/required.txt");
        }
    }
    let wanted: Vec<(String, Load)> =
        modules_for(&reqs, &config).into_iter().filter(|(n, l)| want(*l) && !drop.contains(n)).collect();
    let names: Vec<String> = wanted.iter().map(|(n, _)| n.clone()).collect();
    let dir = modinfo::ModuleDir::open(&kernel.join("lib/modules").join(&release))?;
    let closure = dir.closure(&names)?;
    let root = format!("{base}/{release}");
    for (rel, _) in closure.values() {
        let path = dir.root().join(rel);
        let bytes = std::fs::read(&path).map_err(|e| anyhow::anyhow!("Cannot read {}: {e}", path.display()))?;
        tree.file(&format!("{root}/{rel}"), 0o644, bytes)?;
    }
    tree.file(&format!("{root}/modules.dep"), 0o644, modinfo::modules_dep(&closure).into_bytes())?;
    let by_alias: Vec<String> = wanted.iter().filter(|(_, l)| l.by_alias()).map(|(n, _)| n.clone()).collect();
    tree.file(&format!("{root}/modules.alias"), 0o644, modinfo::modules_alias(&dir, &by_alias)?.into_bytes())?;
    for (load, file, what) in [
        (Load::Boot, "modules.boot", "at every boot"),
        (Load::Root, "modules.root", "by stage 1 to mount the verified root"),
        (Load::Docker, "modules.docker", "before it starts dockerd"),
    ] {
        let list: Vec<&str> = wanted.iter().filter(|(_, l)| *l == load).map(|(n, _)| n.as_str()).collect();
        let text = format!("# Loaded by cairn-init {what} (kernel-config/required.txt)\n{}\n", list.join("\n"));
        tree.file(&format!("/etc/cairn/{file}"), 0o644, text.into_bytes())?;
    }
    Ok(closure.len())
}
