//! The root file system of a slot: our static binaries, the kernel modules, an
//! /etc skeleton, and the Debian binaries Cairn ships with their libraries.
//! Built as erofs (lz4hc) and followed by its dm-verity hash tree.

use crate::tree::{Node, Tree};
use crate::{docker, elfdeps, kmods};
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::Path;

/// Debian binaries in the root, as paths inside the unpacked packages.
pub const DEBIAN_BINARIES: &[&str] =
    &["usr/bin/crun", "usr/sbin/runc", "usr/bin/containerd", "usr/bin/containerd-shim-runc-v2", "usr/bin/ctr"];

/// containerd's configuration in this repository (relative to where make runs).
pub const CONTAINERD_CONFIG: &str = "image/etc/containerd.toml";

/// The verity parameters of a root image, kept beside it as `key=value` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityInfo {
    pub data_blocks: u64,
    pub salt: String,
    pub root_hash: String,
}

impl VerityInfo {
    pub fn to_text(&self) -> String {
        format!("data_blocks={}\nsalt={}\nroot_hash={}\n", self.data_blocks, self.salt, self.root_hash)
    }

    pub fn parse(text: &str, origin: &str) -> Result<VerityInfo> {
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                .with_context(|| format!("{origin}: no {k}="))
        };
        Ok(VerityInfo {
            data_blocks: get("data_blocks")?.parse().with_context(|| format!("{origin}: data_blocks is not a number"))?,
            salt: get("salt")?.to_string(),
            root_hash: get("root_hash")?.to_string(),
        })
    }

    /// The kernel arguments stage 1 reads.
    pub fn cmdline(&self) -> String {
        format!("cairn.verity_blocks={} cairn.verity_salt={} cairn.verity_root={}", self.data_blocks, self.salt, self.root_hash)
    }
}

/// Merged /usr: what Debian puts in /lib64 or /lib lives under /usr.
pub(crate) fn usr_path(dst: &str) -> String {
    for (from, to) in [("/lib64/", "/usr/lib64/"), ("/lib/", "/usr/lib/"), ("/bin/", "/usr/bin/"), ("/sbin/", "/usr/sbin/")] {
        if let Some(rest) = dst.strip_prefix(from) {
            return format!("{to}{rest}");
        }
    }
    dst.to_string()
}

pub fn etc_skeleton(t: &mut Tree, v: &str) -> Result<()> {
    t.file("/etc/os-release", 0o644, format!(
        "NAME=Cairn\nID=cairn\nVERSION_ID={v}\nPRETTY_NAME=\"Cairn {v}\"\n").into_bytes())?;
    t.file("/etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n".to_vec())?;
    t.file("/etc/group", 0o644, b"root:x:0:\ntty:x:5:\n".to_vec())?;
    // Files that change at run time live in /run (or on STATE, via /run).
    for f in ["resolv.conf", "hostname", "machine-id"] {
        t.symlink(&format!("/etc/{f}"), &format!("../run/cairn/{f}"))?;
    }
    Ok(())
}

/// What makes one release's root differ from another's besides the binaries.
pub struct Release<'a> {
    /// VERSION_ID in /etc/os-release: what the updater compares.
    pub version: &'a str,
    /// The trusted update keys (`threshold K`, `key ID HEX` lines).
    pub keyring: &'a [u8],
    /// Kernel modules to leave out (test fixtures only).
    pub drop_modules: &'a [String],
}

pub fn tree(init: &Path, tools: &[(std::path::PathBuf, &str)], kernel: &Path, debroot: &Path, services_dirs: &[std::path::PathBuf], release: &Release<'_>) -> Result<Tree> {
    let mut t = Tree::default();
    for d in ["/dev", "/proc", "/sys", "/run", "/tmp", "/var", "/root", "/mnt", "/usr/bin", "/usr/sbin", "/usr/lib", "/usr/lib64"] {
        t.dir(d, if d == "/tmp" { 0o1777 } else if d == "/root" { 0o700 } else { 0o755 })?;
    }
    for (link, to) in [("/bin", "usr/bin"), ("/sbin", "usr/sbin"), ("/lib", "usr/lib"), ("/lib64", "usr/lib64")] {
        t.symlink(link, to)?;
    }
    let init_bytes = std::fs::read(init).with_context(|| format!("Cannot read {}", init.display()))?;
    t.file("/usr/bin/cairn-init", 0o755, init_bytes)?;
    t.symlink("/usr/sbin/init", "../bin/cairn-init")?;
    for (src, dst) in tools {
        let bytes = std::fs::read(src).with_context(|| format!("Cannot read {}", src.display()))?;
        t.file(dst, 0o755, bytes)?;
    }
    for dir in services_dirs {
        crate::services::add(&mut t, dir, debroot)?;
    }
    etc_skeleton(&mut t, release.version)?;
    let text = std::str::from_utf8(release.keyring).context("the update keyring is not text")?;
    cairn_updater::Keyring::parse(text, "update keyring").context("The update keyring for the root is not valid")?;
    t.file("/etc/cairn/update-keys", 0o644, release.keyring.to_vec())?;
    t.file("/etc/cairn/update.conf", 0o644, b"# The update repository; `cairnctl update set url=...` overrides it on STATE.\nchannel=stable\n".to_vec())?;
    let ctd = std::fs::read(CONTAINERD_CONFIG).with_context(|| format!("Cannot read {CONTAINERD_CONFIG}"))?;
    t.file("/etc/containerd/config.toml", 0o644, ctd)?;
    kmods::add(&mut t, kernel, "/usr/lib/modules", |_| true, release.drop_modules)?;
    let extensions = docker::extensions(debroot)?;
    let binaries: Vec<&str> =
        DEBIAN_BINARIES.iter().chain(docker::BINARIES).copied().chain(extensions.iter().map(String::as_str)).collect();
    for (src, dst) in elfdeps::closure(debroot, &binaries)? {
        let bytes = std::fs::read(&src).with_context(|| format!("Cannot read {}", src.display()))?;
        let mode = if dst.contains("/bin/") || dst.contains("/sbin/") || dst.contains("ld-linux") { 0o755 } else { 0o644 };
        t.file(&usr_path(&dst), mode, bytes)?;
    }
    docker::links(&mut t)?;
    Ok(t)
}

/// Writes the tree into an empty directory, for mkfs.erofs to read.
pub fn materialize(t: &Tree, dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("Cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    let mut dirs = Vec::new();
    for (path, node) in t.iter() {
        let p = dir.join(path);
        match node {
            Node::Dir { mode } => {
                std::fs::create_dir_all(&p)?;
                dirs.push((p, *mode));
            }
            Node::File { mode, data } => {
                std::fs::write(&p, data)?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))?;
            }
            Node::Symlink { target } => std::os::unix::fs::symlink(target, &p)?,
            Node::CharDev { .. } => bail!("/{path}: device nodes do not belong in the root image"),
        }
    }
    for (p, mode) in dirs {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Builds the erofs image, then appends the verity superblock and hash tree.
/// Returns the slot image's bytes and its verity parameters.
pub fn build_image(t: &Tree, staging: &Path, epoch: u64) -> Result<(Vec<u8>, VerityInfo)> {
    materialize(t, staging)?;
    let erofs = staging.with_extension("erofs");
    let _ = std::fs::remove_file(&erofs);
    let status = std::process::Command::new("mkfs.erofs")
        .arg("-zlz4hc")
        .arg(format!("-T{epoch}"))
        .args(["--all-root", "-x-1", "--quiet", "-U", "c41f0000-0000-4000-8000-000000000001"])
        .arg(&erofs)
        .arg(staging)
        .status()
        .context("Cannot run mkfs.erofs (package erofs-utils)")?;
    if !status.success() {
        bail!("mkfs.erofs failed ({status}) on {}", staging.display());
    }
    let mut data = std::fs::read(&erofs).with_context(|| format!("Cannot read {}", erofs.display()))?;
    while data.len() % 4096 != 0 {
        data.push(0);
    }
    // Salt and uuid come from the content, so the same root gives the same
    // bytes and different roots never share a salt.
    let digest = Sha256::digest(&data);
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&Sha256::digest(digest)[..16]);
    let params = cairn_verity::Params { salt: digest.to_vec(), uuid };
    let tree = cairn_verity::build(&data[..], data.len() as u64, &params)?;
    let info = VerityInfo {
        data_blocks: tree.data_blocks,
        salt: hex::encode(&params.salt),
        root_hash: tree.root_hex(),
    };
    data.extend_from_slice(&tree.bytes);
    Ok((data, info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verity_info_round_trips_and_names_what_is_missing() {
        let v = VerityInfo { data_blocks: 7, salt: "aa".into(), root_hash: "bb".into() };
        assert_eq!(VerityInfo::parse(&v.to_text(), "x").unwrap(), v);
        let err = VerityInfo::parse("salt=aa\n", "root.verity").unwrap_err();
        assert_eq!(err.to_string(), "root.verity: no data_blocks=");
        assert_eq!(v.cmdline(), "cairn.verity_blocks=7 cairn.verity_salt=aa cairn.verity_root=bb");
    }

    #[test]
    fn debian_paths_move_under_usr() {
        assert_eq!(usr_path("/lib64/ld-linux-x86-64.so.2"), "/usr/lib64/ld-linux-x86-64.so.2");
        assert_eq!(usr_path("/lib/x86_64-linux-gnu/libc.so.6"), "/usr/lib/x86_64-linux-gnu/libc.so.6");
        assert_eq!(usr_path("/usr/bin/crun"), "/usr/bin/crun");
    }
}
