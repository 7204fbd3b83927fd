//! cairn-image: builds Cairn's images on the host.
//!
//! ```text
//! cairn-image initramfs --out FILE --init BIN [--kernel DIR] [--busybox BIN]
//!                       [--file SRC:DST[:MODE]]... [--drop-module NAME]...
//! cairn-image root      --out FILE --init BIN --cairnctl BIN --svcload BIN --config-loader BIN --netd BIN --sysagent BIN --kernel DIR
//!                       --debroot DIR --services DIR [--services DIR]... --keyring FILE
//!                       [--version X.Y.Z] [--drop-module NAME]...
//! cairn-image disk      --out RAW --root FILE --vmlinuz FILE --initramfs FILE
//!                       --cmdline ARGS [--cmdline-out FILE] [--qcow2 FILE]
//!                       [--bootloader EFI] [--version X.Y.Z]
//! cairn-image keygen    --out FILE --id ID          secret key FILE, public line FILE.pub
//! cairn-image bundle    --out DIR --root FILE --vmlinuz FILE --initramfs FILE --version X.Y.Z
//!                       --cmdline ARGS --key FILE [--key FILE]... [--channel stable]
//!                       [--expires UNIX | --expires-days N] [--build-id TEXT]
//! cairn-image publish   --bundle DIR --repo DIR      into DIR/<channel>/
//! cairn-image images    --raw FILE [--metal-raw FILE] --out DIR --version X.Y.Z --key FILE
//!                       every cloud format, SHA256SUMS, signed manifest.toml
//! cairn-image verify    --dir DIR --keyring FILE [--file NAME]...
//!                       checks the manifest's signature and the files
//! ```
//!
//! Outputs depend only on the inputs: timestamps come from `SOURCE_DATE_EPOCH`
//! (0 when unset), entries are in byte order, identifiers are fixed or derived
//! from the content.

mod cpio;
mod disk;
mod docker;
mod elfdeps;
mod esp;
mod images;
mod kmods;
mod release;
mod modinfo;
mod rootfs;
mod services;
mod tree;

use anyhow::{bail, Context, Result};
use cairn_kconfig::Load;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tree::{Node, Tree};

fn main() {
    if let Err(err) = run() {
        eprintln!("cairn-image: error: {err}");
        for (i, cause) in err.chain().skip(1).enumerate() {
            eprintln!("  {}: {cause}", i + 1);
        }
        std::process::exit(1);
    }
}

/// `--flag value` pairs; `--file` may repeat.
struct Args(BTreeMap<String, Vec<String>>);

impl Args {
    fn parse(mut it: impl Iterator<Item = String>, known: &[&str]) -> Result<Args> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        while let Some(flag) = it.next() {
            let name = flag.strip_prefix("--").with_context(|| format!("expected an option, got {flag}"))?;
            if !known.contains(&name) {
                bail!("unknown option {flag}; this command takes --{}", known.join(", --"));
            }
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            map.entry(name.to_string()).or_default().push(value);
        }
        Ok(Args(map))
    }
    fn opt(&self, k: &str) -> Option<&str> {
        self.0.get(k).and_then(|v| v.last()).map(String::as_str)
    }
    fn path(&self, k: &str) -> Result<PathBuf> {
        self.opt(k).map(PathBuf::from).with_context(|| format!("--{k} is required"))
    }
    fn all(&self, k: &str) -> &[String] {
        self.0.get(k).map_or(&[], Vec::as_slice)
    }
}

fn epoch() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.parse().with_context(|| format!("SOURCE_DATE_EPOCH={v} is not a number of seconds")),
        Err(_) => Ok(0),
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("Cannot read {}", path.display()))
}

/// Writes a file whole or not at all.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("Cannot create {}", parent.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("Cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("Cannot rename {} to {}", tmp.display(), path.display()))
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("initramfs") => initramfs(Args::parse(args, &["out", "init", "kernel", "busybox", "file", "drop-module"])?),
        Some("root") => root(Args::parse(
            args,
            &["out", "init", "cairnctl", "svcload", "config-loader", "netd", "sysagent", "kernel", "debroot", "services", "keyring", "version", "drop-module"],
        )?),
        Some("disk") => disk_cmd(Args::parse(
            args,
            &["out", "root", "vmlinuz", "initramfs", "cmdline", "cmdline-out", "qcow2", "bootloader", "version"],
        )?),
        Some("keygen") => release::keygen(&Args::parse(args, &["out", "id"])?),
        Some("bundle") => release::bundle(&Args::parse(
            args,
            &["out", "root", "vmlinuz", "initramfs", "version", "cmdline", "key", "channel", "expires", "expires-days", "build-id"],
        )?),
        Some("publish") => release::publish(&Args::parse(args, &["bundle", "repo"])?),
        Some("images") => images::build(&Args::parse(args, &["raw", "metal-raw", "out", "version", "key"])?),
        Some("verify") => images::verify(&Args::parse(args, &["dir", "keyring", "file"])?),
        Some(other) => bail!("unknown command {other}; expected initramfs, root, disk, keygen, bundle, publish, images or verify"),
        None => bail!("usage: cairn-image initramfs|root|disk|keygen|bundle|publish|images|verify --out FILE ..."),
    }
}

/// Adds busybox at `dir/busybox` and a link for each of its applets; returns
/// how many applets.
pub(crate) fn add_busybox(tree: &mut Tree, busybox: &Path, dir: &str) -> Result<usize> {
    tree.file(&format!("{dir}/busybox"), 0o755, read(busybox)?)?;
    let out = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .with_context(|| format!("Cannot run {} --list", busybox.display()))?;
    let list = String::from_utf8_lossy(&out.stdout);
    let mut n = 0;
    for applet in list.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        tree.symlink(&format!("{dir}/{applet}"), "busybox")?;
        n += 1;
    }
    Ok(n)
}

/// Stage 1's initramfs: the init, /dev/console, the modules that boot and
/// mount the root; with --busybox, the debug tools.
fn initramfs(a: Args) -> Result<()> {
    let out = a.path("out")?;
    let mut t = Tree::default();
    for d in ["/dev", "/proc", "/sys", "/run", "/tmp", "/root", "/var", "/sysroot"] {
        t.dir(d, if d == "/tmp" { 0o1777 } else { 0o755 })?;
    }
    // The kernel opens /dev/console for init's stdio before anything is mounted.
    t.add("/dev/console", Node::CharDev { mode: 0o600, major: 5, minor: 1 })?;
    t.file("/init", 0o755, read(&a.path("init")?)?)?;
    rootfs::etc_skeleton(&mut t, env!("CARGO_PKG_VERSION"))?;
    let mods = match a.opt("kernel") {
        Some(k) => kmods::add(&mut t, Path::new(k), "/lib/modules", |l| matches!(l, Load::Boot | Load::Root | Load::Disk), a.all("drop-module"))?,
        None => 0,
    };
    let applets = match a.opt("busybox") {
        Some(b) => add_busybox(&mut t, Path::new(b), "/bin")?,
        None => 0,
    };
    for spec in a.all("file") {
        let parts: Vec<&str> = spec.split(':').collect();
        let (src, dst, mode) = match parts.as_slice() {
            [s, d] => (s, d, 0o644),
            [s, d, m] => (s, d, u32::from_str_radix(m, 8).with_context(|| format!("--file {spec}: mode {m} is not octal"))?),
            _ => bail!("--file {spec}: expected SRC:DST[:MODE]"),
        };
        t.file(dst, mode, read(Path::new(src))?)?;
    }
    let bytes = cpio::write(&t, u32::try_from(epoch()?).context("SOURCE_DATE_EPOCH past 2106")?);
    write_atomic(&out, &bytes)?;
    println!("cairn-image: wrote {} ({} KiB, {mods} modules, {applets} busybox applets)", out.display(), bytes.len() / 1024);
    Ok(())
}

/// A slot's root image: erofs, then the verity superblock and tree. The
/// verity parameters go beside it in `<out>.verity`.
fn root(a: Args) -> Result<()> {
    let out = a.path("out")?;
    let services: Vec<PathBuf> = a.all("services").iter().map(PathBuf::from).collect();
    if services.is_empty() {
        bail!("--services is required");
    }
    let version = a.opt("version").unwrap_or(env!("CARGO_PKG_VERSION"));
    version.parse::<cairn_updater::Version>().map_err(|e| anyhow::anyhow!("--version: {e}"))?;
    let keyring = read(&a.path("keyring")?)?;
    let release = rootfs::Release { version, keyring: &keyring, drop_modules: a.all("drop-module") };
    let tools = [
        (a.path("cairnctl")?, "/usr/bin/cairnctl"),
        (a.path("svcload")?, "/usr/bin/cairn-svcload"),
        (a.path("config-loader")?, "/usr/bin/cairn-config"),
        (a.path("netd")?, "/usr/bin/cairn-netd"),
        (a.path("sysagent")?, "/usr/bin/sysagent"),
    ];
    let t = rootfs::tree(&a.path("init")?, &tools, &a.path("kernel")?, &a.path("debroot")?, &services, &release)?;
    let staging = out.with_extension("staging");
    let (bytes, info) = rootfs::build_image(&t, &staging, epoch()?)?;
    let _ = std::fs::remove_dir_all(&staging);
    write_atomic(&out, &bytes)?;
    write_atomic(&PathBuf::from(format!("{}.verity", out.display())), info.to_text().as_bytes())?;
    println!(
        "cairn-image: wrote {} ({} KiB: {} data blocks + verity tree), root hash {}",
        out.display(),
        bytes.len() / 1024,
        info.data_blocks,
        info.root_hash
    );
    Ok(())
}

fn disk_cmd(a: Args) -> Result<()> {
    let out = a.path("out")?;
    let root_path = a.path("root")?;
    let verity_path = PathBuf::from(format!("{}.verity", root_path.display()));
    let info = rootfs::VerityInfo::parse(
        &std::fs::read_to_string(&verity_path).with_context(|| format!("Cannot read {}", verity_path.display()))?,
        &verity_path.display().to_string(),
    )?;
    let cmdline = format!("{} cairn.slot=a {}", a.opt("cmdline").unwrap_or("").trim(), info.cmdline());
    let bootloader = a.opt("bootloader").unwrap_or("/usr/lib/systemd/boot/efi/systemd-bootx64.efi");
    let version = a.opt("version").unwrap_or(env!("CARGO_PKG_VERSION"));
    let esp_files: esp::Files = vec![
        ("EFI/BOOT/BOOTX64.EFI".into(), read(Path::new(bootloader))?),
        ("loader/loader.conf".into(), esp::LOADER_CONF.as_bytes().to_vec()),
        // The first entry is known good: it never carries a boot counter.
        ("loader/entries/cairn-a.conf".into(), cairn_updater::entries::text(version, 1, cairn_updater::entries::Slot::A, &cmdline).into_bytes()),
        ("cairn/a/vmlinuz".into(), read(&a.path("vmlinuz")?)?),
        ("cairn/a/initramfs.img".into(), read(&a.path("initramfs")?)?),
    ];
    let root_a = read(&root_path)?;
    let state_size = disk::LAYOUT.iter().find(|s| s.label == "STATE").map_or(128, |s| s.size_mib) << 20;
    let state = disk::state_fs(state_size, &out.with_extension("state.tmp"), epoch()?)?;
    disk::write(&out, &disk::DiskInputs { esp_files, root_a: &root_a, state })?;
    println!("cairn-image: wrote {}", out.display());
    if let Some(c) = a.opt("cmdline-out") {
        write_atomic(Path::new(c), format!("{cmdline}\n").as_bytes())?;
    }
    if let Some(q) = a.opt("qcow2") {
        disk::qcow2(&out, Path::new(q))?;
        println!("cairn-image: wrote {q}");
    }
    Ok(())
}
