//! `cairn-image images`: every cloud format from the one disk, then
//! `SHA256SUMS` and one signed build manifest over all of them.
//!
//! The disk is `cairn.raw` padded to a whole GiB ([`source`]); each format
//! holds exactly those bytes, but the metal ones, which hold the metal disk
//! (`cairn-metal.raw`, Debian's generic kernel) padded the same way. The formats are made side by side (the tools
//! are separate processes), all from the padded disk, sparse, and with every
//! time stamp and identifier fixed or derived from the content, so the same
//! disk and `SOURCE_DATE_EPOCH` give the same files.

mod source;
mod tools;
mod verify;
mod vhd;
mod vmware;

pub use verify::verify;

use crate::release::sha256_of;
use crate::{write_atomic, Args};
use anyhow::{Context, Result};
use cairn_model::images::{File, Format, ImageManifest, Source};
use cairn_updater::keys;
use std::path::Path;
use std::process::Command;
use tools::run;

/// One file of the set: platform, what follows `cairn-VERSION-`, format.
const FILES: &[(&str, &str, Format)] = &[
    ("metal", "metal.raw.zst", Format::RawZst),
    ("metal", "metal.raw.bmap", Format::Bmap),
    ("aws", "aws.raw", Format::Raw),
    ("azure", "azure.vhd", Format::Vhd),
    ("gce", "gce.tar.gz", Format::TarGz),
    ("vmware", "vmware.ova", Format::Ova),
    ("qemu", "qemu.qcow2", Format::Qcow2),
];

pub const MANIFEST: &str = "manifest.toml";
pub const SIGNATURE: &str = "manifest.toml.sig";
pub const SUMS: &str = "SHA256SUMS";

pub fn build(a: &Args) -> Result<()> {
    let raw = a.path("raw")?;
    let out = a.path("out")?;
    let version: cairn_updater::Version = a.opt("version").context("--version is required")?.parse().map_err(|e| anyhow::anyhow!("--version: {e}"))?;
    let key_path = a.path("key")?;
    let key_text = std::fs::read_to_string(&key_path).with_context(|| format!("Cannot read key {}", key_path.display()))?;
    let (key_id, key) = keys::parse_secret(&key_text, &key_path.display().to_string())?;
    let epoch = crate::epoch()?;
    let started = std::time::Instant::now();

    // Built beside the old set and swapped in whole at the end.
    let stage = out.with_extension("staging");
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(&stage).with_context(|| format!("Cannot create {}", stage.display()))?;
    let name = |suffix: &str| format!("cairn-{version}-{suffix}");
    let at = |suffix: &str| stage.join(name(suffix));

    let disk = at("aws.raw");
    let size = source::pad(&raw, &disk)?;
    // The metal files hold the metal disk when there is one; it is not
    // shipped as a raw file of its own (the .zst and .bmap carry it).
    let metal_disk = match a.opt("metal-raw") {
        Some(m) => {
            let padded = stage.join("metal-source.tmp");
            let metal_size = source::pad(Path::new(m), &padded)?;
            let (_, sha256) = sha256_of(&padded)?;
            Some((padded, Source { size: metal_size, sha256 }))
        }
        None => None,
    };
    let metal_from = metal_disk.as_ref().map_or(disk.as_path(), |(p, _)| p.as_path());
    let v = version.to_string();
    let written = std::thread::scope(|s| -> Result<_> {
        let vhd = s.spawn(|| vhd::write(&disk, &at("azure.vhd"), epoch));
        let qcow2 = s.spawn(|| qcow2(&disk, &at("qemu.qcow2")));
        let metal = s.spawn(|| metal(metal_from, &at("metal.raw.zst"), &at("metal.raw.bmap")));
        let gce = s.spawn(|| gce(&disk, &at("gce.tar.gz"), epoch));
        let ova = s.spawn(|| ova(&disk, &stage, &name("vmware"), &v, size, epoch));
        let join = |h: std::thread::ScopedJoinHandle<'_, Result<()>>| h.join().map_err(|_| anyhow::anyhow!("a format's thread panicked"))?;
        let written = vhd.join().map_err(|_| anyhow::anyhow!("the VHD thread panicked"))??;
        join(qcow2)?;
        join(metal)?;
        join(gce)?;
        join(ova)?;
        Ok(written)
    })?;
    if let Some((padded, _)) = &metal_disk {
        std::fs::remove_file(padded).with_context(|| format!("Cannot remove {}", padded.display()))?;
    }

    let mut files = Vec::new();
    let mut sums = String::new();
    for (platform, suffix, format) in FILES {
        let file = name(suffix);
        let (size, sha256) = match format {
            Format::Raw => (size, written.source_sha256.clone()),
            Format::Vhd => (written.vhd_size, written.vhd_sha256.clone()),
            _ => sha256_of(&stage.join(&file))?,
        };
        sums.push_str(&format!("{sha256}  {file}\n"));
        files.push(File { name: file, platform: platform.to_string(), format: *format, size, sha256 });
    }
    write_atomic(&stage.join(SUMS), sums.as_bytes())?;
    let (sums_size, sums_sha) = sha256_of(&stage.join(SUMS))?;
    files.push(File { name: SUMS.into(), platform: "all".into(), format: Format::Sums, size: sums_size, sha256: sums_sha });
    let m = ImageManifest {
        version,
        source_date_epoch: epoch,
        source: Source { size, sha256: written.source_sha256 },
        metal_source: metal_disk.map(|(_, s)| s),
        files,
    };
    let text = m.to_text();
    ImageManifest::parse(&text).map_err(|e| anyhow::anyhow!("the manifest written does not parse back: {e}"))?;
    write_atomic(&stage.join(SIGNATURE), keys::signature_line(&key_id, &key, text.as_bytes()).as_bytes())?;
    write_atomic(&stage.join(MANIFEST), text.as_bytes())?;

    let _ = std::fs::remove_dir_all(&out);
    std::fs::rename(&stage, &out).with_context(|| format!("Cannot rename {} to {}", stage.display(), out.display()))?;
    println!(
        "cairn-image: wrote {} images of a {} MiB disk (sha256 {}) to {} in {:.1} s, manifest signed by {key_id}",
        FILES.len(),
        size >> 20,
        m.source.sha256,
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// qcow2 version 2 (`compat=0.10`), which old hypervisors read too.
fn qcow2(disk: &Path, out: &Path) -> Result<()> {
    run(Command::new("qemu-img").args(["convert", "-q", "-c", "-f", "raw", "-O", "qcow2", "-o", "compat=0.10"]).arg(disk).arg(out), "qemu-img convert (qcow2)")
}

/// The disk zstd-compressed, and a block map so `bmaptool copy` writes only
/// the blocks that hold data.
fn metal(disk: &Path, zst: &Path, bmap: &Path) -> Result<()> {
    // Pinned level and threads: ZSTD_CLEVEL / ZSTD_NBTHREADS must not change the bytes.
    run(
        Command::new("zstd").args(["-q", "-3", "-T1", "-f"]).env_remove("ZSTD_CLEVEL").env_remove("ZSTD_NBTHREADS").arg(disk).arg("-o").arg(zst),
        "zstd (package zstd)",
    )?;
    run(Command::new("bmaptool").args(["-q", "create", "-o"]).arg(bmap).arg(disk), "bmaptool create (package bmap-tools)")
}

/// GCE: a gzip'd old-GNU tar, sparse, of one member named `disk.raw`, owned
/// by 0 and dated `SOURCE_DATE_EPOCH`; gzip without a name or time.
fn gce(disk: &Path, out: &Path, epoch: u64) -> Result<()> {
    let dir = disk.parent().context("the disk has no directory")?;
    let file = disk.file_name().context("the disk has no file name")?;
    let mut tar = Command::new("tar");
    tar.args(["--format=oldgnu", "--sparse", "--owner=0", "--group=0", "--numeric-owner", "--mode=0644"])
        .arg(format!("--mtime=@{epoch}"))
        .arg("--transform=s,.*,disk.raw,")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg("-")
        .arg(file);
    tools::pipe_to_gzip(tar, out)
}

/// VMware: the streamOptimized VMDK (deterministic CID), its OVF and
/// manifest, in a ustar archive in the order OVF, manifest, disk.
fn ova(disk: &Path, stage: &Path, base: &str, version: &str, capacity: u64, epoch: u64) -> Result<()> {
    let work = stage.join(".vmware");
    std::fs::create_dir_all(&work).with_context(|| format!("Cannot create {}", work.display()))?;
    let (vmdk, ovf, mf) = (format!("{base}.vmdk"), format!("{base}.ovf"), format!("{base}.mf"));
    // qemu-img writes the file's own name into the descriptor; the name is
    // the one the OVF refers to, in every build.
    run(
        Command::new("qemu-img")
            .args(["convert", "-q", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized,adapter_type=lsilogic,hwversion=13"])
            .arg(disk)
            .arg(work.join(&vmdk)),
        "qemu-img convert (vmdk)",
    )?;
    vmware::fix_cid(&work.join(&vmdk))?;
    let (vmdk_size, vmdk_sha) = sha256_of(&work.join(&vmdk))?;
    let ovf_text = vmware::ovf(version, &vmdk, vmdk_size, capacity);
    write_atomic(&work.join(&ovf), ovf_text.as_bytes())?;
    let (_, ovf_sha) = sha256_of(&work.join(&ovf))?;
    write_atomic(&work.join(&mf), vmware::mf(&[(&ovf, &ovf_sha), (&vmdk, &vmdk_sha)]).as_bytes())?;
    run(
        Command::new("tar")
            .args(["--format=ustar", "--owner=0", "--group=0", "--numeric-owner", "--mode=0644"])
            .arg(format!("--mtime=@{epoch}"))
            .env_remove("TAR_OPTIONS")
            .arg("-C")
            .arg(&work)
            .arg("-cf")
            .arg(stage.join(format!("{base}.ova")))
            .args([&ovf, &mf, &vmdk]),
        "tar (the OVA)",
    )?;
    std::fs::remove_dir_all(&work).with_context(|| format!("Cannot remove {}", work.display()))
}
