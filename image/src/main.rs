//! cairn-image: builds Cairn's boot artefacts on the host.
//!
//! `cairn-image initramfs --out FILE --init BIN --kernel DIR [--busybox BIN]
//!  [--file SRC:DST[:MODE]]... [--no-modules]`
//!
//! The output depends only on the inputs: timestamps come from
//! `SOURCE_DATE_EPOCH` (0 when unset) and entries are in byte order.

mod cpio;
mod modinfo;
mod tree;

use anyhow::{bail, Context, Result};
use cairn_kconfig::{check, modules_for, read_config, requirements, Load};
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

struct Args {
    out: PathBuf,
    init: PathBuf,
    kernel: Option<PathBuf>,
    busybox: Option<PathBuf>,
    files: Vec<(PathBuf, String, u32)>,
    modules: bool,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args> {
    let mut a = Args { out: PathBuf::new(), init: PathBuf::new(), kernel: None, busybox: None, files: vec![], modules: true };
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--out" => a.out = val()?.into(),
            "--init" => a.init = val()?.into(),
            "--kernel" => a.kernel = Some(val()?.into()),
            "--busybox" => a.busybox = Some(val()?.into()),
            "--no-modules" => a.modules = false,
            "--file" => {
                let v = val()?;
                let parts: Vec<&str> = v.split(':').collect();
                let (src, dst, mode) = match parts.as_slice() {
                    [s, d] => (s, d, 0o644),
                    [s, d, m] => (s, d, u32::from_str_radix(m, 8).with_context(|| format!("--file {v}: mode {m} is not octal"))?),
                    _ => bail!("--file {v}: expected SRC:DST[:MODE]"),
                };
                a.files.push((PathBuf::from(src), dst.to_string(), mode));
            }
            other => bail!("unknown option {other}"),
        }
    }
    if a.out.as_os_str().is_empty() || a.init.as_os_str().is_empty() {
        bail!("--out and --init are required");
    }
    if a.modules && a.kernel.is_none() {
        bail!("--kernel DIR is required unless --no-modules is given");
    }
    Ok(a)
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("initramfs") => initramfs(parse_args(args)?),
        Some(other) => bail!("unknown command {other}; expected initramfs"),
        None => bail!("usage: cairn-image initramfs --out FILE --init BIN --kernel DIR [...]"),
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("Cannot read {}", path.display()))
}

/// The one kernel release unpacked under `dir/lib/modules`.
fn kernel_release(dir: &Path) -> Result<String> {
    let mods = dir.join("lib/modules");
    let mut releases: Vec<String> = std::fs::read_dir(&mods)
        .with_context(|| format!("Cannot list {} (is the kernel unpacked?)", mods.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    releases.sort();
    match releases.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no kernel release under {}", mods.display()),
        many => bail!("more than one kernel release under {}: {}", mods.display(), many.join(", ")),
    }
}

fn add_modules(tree: &mut Tree, kernel: &Path) -> Result<usize> {
    let release = kernel_release(kernel)?;
    let config_path = kernel.join(format!("boot/config-{release}"));
    let config = read_config(&config_path)?;
    let reqs = requirements();
    let missing = check(&reqs, &config);
    if !missing.is_empty() {
        let names: Vec<_> = missing.iter().map(|m| m.to_string()).collect();
        bail!("kernel {release} lacks options Cairn needs:\n  {}", names.join("\n  "));
    }
    let wanted = modules_for(&reqs, &config);
    let names: Vec<String> = wanted.iter().map(|(n, _)| n.clone()).collect();
    let dir = modinfo::ModuleDir::open(&kernel.join("lib/modules").join(&release))?;
    let closure = dir.closure(&names)?;
    let base = format!("/lib/modules/{release}");
    for (rel, _) in closure.values() {
        tree.file(&format!("{base}/{rel}"), 0o644, read(&dir.root().join(rel))?)?;
    }
    tree.file(&format!("{base}/modules.dep"), 0o644, modinfo::modules_dep(&closure).into_bytes())?;
    let boot: Vec<&str> = wanted.iter().filter(|(_, l)| *l == Load::Boot).map(|(n, _)| n.as_str()).collect();
    let list = format!("# Loaded by cairn-init at every boot (kernel-config/required.txt)\n{}\n", boot.join("\n"));
    tree.file("/etc/cairn/modules.boot", 0o644, list.into_bytes())?;
    Ok(closure.len())
}

fn add_busybox(tree: &mut Tree, busybox: &Path) -> Result<usize> {
    tree.file("/bin/busybox", 0o755, read(busybox)?)?;
    let out = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .with_context(|| format!("Cannot run {} --list", busybox.display()))?;
    let list = String::from_utf8_lossy(&out.stdout);
    let mut n = 0;
    for applet in list.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        tree.symlink(&format!("/bin/{applet}"), "busybox")?;
        n += 1;
    }
    Ok(n)
}

fn initramfs(a: Args) -> Result<()> {
    let mut t = Tree::default();
    for d in ["/dev", "/proc", "/sys", "/run", "/tmp", "/root", "/var"] {
        t.dir(d, if d == "/tmp" { 0o1777 } else { 0o755 })?;
    }
    // The kernel opens /dev/console for init's stdio before anything is mounted.
    t.add("/dev/console", Node::CharDev { mode: 0o600, major: 5, minor: 1 })?;
    t.file("/init", 0o755, read(&a.init)?)?;
    t.symlink("/etc/resolv.conf", "../run/cairn/resolv.conf")?;
    t.symlink("/etc/hostname", "../run/cairn/hostname")?;
    t.file("/etc/os-release", 0o644, format!(
        "NAME=Cairn\nID=cairn\nVERSION_ID={}\nPRETTY_NAME=\"Cairn {}\"\nHOME_URL=\"https://example.invalid/cairn\"\n",
        env!("CARGO_PKG_VERSION"), env!("CARGO_PKG_VERSION")).into_bytes())?;
    t.file("/etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n".to_vec())?;
    t.file("/etc/group", 0o644, b"root:x:0:\ntty:x:5:\n".to_vec())?;
    let mods = match (&a.kernel, a.modules) {
        (Some(k), true) => add_modules(&mut t, k)?,
        _ => 0,
    };
    let applets = match &a.busybox {
        Some(b) => add_busybox(&mut t, b)?,
        None => 0,
    };
    for (src, dst, mode) in &a.files {
        t.file(dst, *mode, read(src)?)?;
    }
    let epoch: u32 = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.parse().with_context(|| format!("SOURCE_DATE_EPOCH={v} is not a number of seconds"))?,
        Err(_) => 0,
    };
    let bytes = cpio::write(&t, epoch);
    if let Some(parent) = a.out.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("Cannot create {}", parent.display()))?;
    }
    let tmp = a.out.with_extension("tmp");
    std::fs::write(&tmp, &bytes).with_context(|| format!("Cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &a.out).with_context(|| format!("Cannot rename {} to {}", tmp.display(), a.out.display()))?;
    println!(
        "cairn-image: wrote {} ({} KiB, {mods} modules, {applets} busybox applets)",
        a.out.display(),
        bytes.len() / 1024
    );
    Ok(())
}
