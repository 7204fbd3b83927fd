//! The services that ship with the OS: their specs go to
//! /usr/lib/cairn/services/<name>.toml and their root file systems are baked
//! into the verified root under /usr/lib/cairn/rootfs/<name>, so they need no
//! pull and cannot be changed.
//!
//! Each `services/<name>/rootfs.txt` lists the root file system, a line each:
//! `bin PATH` (a binary from the Debian packages, with its libraries),
//! `busybox PATH` (busybox and a link for every applet), `file SRC DST MODE`
//! (from the service's directory), `dir DST`, `empty DST` (an empty file, as a
//! bind-mount target).

use crate::elfdeps;
use crate::tree::Tree;
use anyhow::{bail, Context, Result};
use std::path::Path;

pub const SPEC_DIR: &str = "/usr/lib/cairn/services";
pub const ROOTFS_DIR: &str = "/usr/lib/cairn/rootfs";

fn base(t: &mut Tree, root: &str) -> Result<()> {
    for d in ["dev", "proc", "sys", "tmp", "run", "etc", "var", "usr/bin", "usr/sbin", "usr/lib"] {
        t.dir(&format!("{root}/{d}"), if d == "tmp" { 0o1777 } else { 0o755 })?;
    }
    for (link, to) in [("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")] {
        t.symlink(&format!("{root}/{link}"), to)?;
    }
    t.file(&format!("{root}/etc/passwd"), 0o644, b"root:x:0:0:root:/:/bin/sh\n".to_vec())?;
    t.file(&format!("{root}/etc/group"), 0o644, b"root:x:0:\n".to_vec())?;
    Ok(())
}

fn add_one(t: &mut Tree, dir: &Path, name: &str, debroot: &Path) -> Result<()> {
    let root = format!("{ROOTFS_DIR}/{name}");
    base(t, &root)?;
    let manifest = dir.join("rootfs.txt");
    let text = std::fs::read_to_string(&manifest).with_context(|| format!("Cannot read {}", manifest.display()))?;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}", manifest.display(), i + 1);
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["bin", path] => {
                for (src, dst) in elfdeps::closure(debroot, &[path]).with_context(at)? {
                    let bytes = std::fs::read(&src).with_context(|| format!("Cannot read {}", src.display()))?;
                    let mode = if dst.contains("/bin/") || dst.contains("/sbin/") || dst.contains("ld-linux") { 0o755 } else { 0o644 };
                    t.file(&format!("{root}{}", crate::rootfs::usr_path(&dst)), mode, bytes)?;
                }
            }
            ["busybox", path] => {
                crate::add_busybox(t, &debroot.join(path), &format!("{root}/usr/bin")).with_context(at)?;
            }
            ["file", src, dst, mode] => {
                let mode = u32::from_str_radix(mode, 8).with_context(|| format!("{}: mode {mode} is not octal", at()))?;
                let bytes = std::fs::read(dir.join(src)).with_context(|| format!("{}: cannot read {src}", at()))?;
                t.file(&format!("{root}{dst}"), mode, bytes)?;
            }
            ["dir", dst] => t.dir(&format!("{root}{dst}"), 0o755)?,
            ["empty", dst] => t.file(&format!("{root}{dst}"), 0o644, Vec::new())?,
            _ => bail!("{}: expected `bin PATH`, `busybox PATH`, `file SRC DST MODE`, `dir DST` or `empty DST`", at()),
        }
    }
    Ok(())
}

/// Adds every service under `services_dir` (one directory each) to the root.
pub fn add(t: &mut Tree, services_dir: &Path, debroot: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(services_dir)
        .with_context(|| format!("Cannot list {}", services_dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("service.toml").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    for name in &names {
        let dir = services_dir.join(name);
        let spec_path = dir.join("service.toml");
        let spec = std::fs::read_to_string(&spec_path).with_context(|| format!("Cannot read {}", spec_path.display()))?;
        // A spec that does not parse would only fail at boot; fail the build.
        cairn_model::service::parse(&spec, &format!("{SPEC_DIR}/{name}.toml"))
            .with_context(|| format!("{} is not a valid service spec", spec_path.display()))?;
        t.file(&format!("{SPEC_DIR}/{name}.toml"), 0o644, spec.into_bytes())?;
        add_one(t, &dir, name, debroot)?;
    }
    Ok(names)
}
