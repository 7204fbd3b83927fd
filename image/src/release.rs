//! Signing keys, signed bundles and the static update repository.
//!
//! A bundle is a directory: `manifest.toml`, `manifest.toml.sig` (one
//! `KEY-ID SIGNATURE` line a signer) and the payloads, named after the
//! version. Publishing copies it into `<repo>/<channel>/`: payloads first,
//! then the signatures, the manifest last, each by rename, so a client never
//! sees a manifest whose payloads are missing.

use crate::{read, write_atomic, Args};
use anyhow::{bail, Context, Result};
use cairn_updater::keys;
use cairn_updater::manifest::{Manifest, Payload, RootPayload};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A new ed25519 key: FILE holds `ID SEED` (mode 0600), FILE.pub the
/// keyring line. Refuses to overwrite a key.
pub fn keygen(a: &Args) -> Result<()> {
    let out = a.path("out")?;
    let id = a.opt("id").context("--id is required")?;
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        bail!("--id {id}: use letters, digits, - and _");
    }
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut seed)).context("Cannot read /dev/urandom")?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("Cannot create {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&out)
        .with_context(|| format!("Cannot create {} (a key is never overwritten)", out.display()))?;
    std::io::Write::write_all(&mut f, format!("{id} {}\n", hex::encode(seed)).as_bytes())?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    write_atomic(&PathBuf::from(format!("{}.pub", out.display())), keys::public_line(id, &key).as_bytes())?;
    println!("cairn-image: wrote secret key {} and {}.pub", out.display(), out.display());
    Ok(())
}

pub(crate) fn sha256_of(path: &Path) -> Result<(u64, String)> {
    let mut f = std::fs::File::open(path).with_context(|| format!("Cannot read {}", path.display()))?;
    let mut h = Sha256::new();
    let n = std::io::copy(&mut f, &mut h).with_context(|| format!("Cannot read {}", path.display()))?;
    Ok((n, hex::encode(h.finalize())))
}

/// Hard-links (or copies) `src` to `dst`.
fn place(src: &Path, dst: &Path) -> Result<()> {
    let _ = std::fs::remove_file(dst);
    if std::fs::hard_link(src, dst).is_err() {
        std::fs::copy(src, dst).with_context(|| format!("Cannot copy {} to {}", src.display(), dst.display()))?;
    }
    Ok(())
}

pub fn bundle(a: &Args) -> Result<()> {
    let out = a.path("out")?;
    let version: cairn_updater::Version = a.opt("version").context("--version is required")?.parse().map_err(|e| anyhow::anyhow!("--version: {e}"))?;
    let channel = a.opt("channel").unwrap_or("stable").to_string();
    let expires = match (a.opt("expires"), a.opt("expires-days")) {
        (Some(e), _) => e.parse().with_context(|| format!("--expires {e} is not Unix seconds"))?,
        (None, d) => {
            let days: u64 = d.unwrap_or("30").parse().context("--expires-days is not a number")?;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
            now + days * 86400
        }
    };
    let root = a.path("root")?;
    let verity_path = PathBuf::from(format!("{}.verity", root.display()));
    let info = crate::rootfs::VerityInfo::parse(
        &std::fs::read_to_string(&verity_path).with_context(|| format!("Cannot read {}", verity_path.display()))?,
        &verity_path.display().to_string(),
    )?;
    let signers: Vec<(String, ed25519_dalek::SigningKey)> = a
        .all("key")
        .iter()
        .map(|k| {
            let text = std::fs::read_to_string(k).with_context(|| format!("Cannot read key {k}"))?;
            Ok(keys::parse_secret(&text, k)?)
        })
        .collect::<Result<_>>()?;
    if signers.is_empty() {
        bail!("--key is required: a bundle must be signed");
    }
    std::fs::create_dir_all(&out).with_context(|| format!("Cannot create {}", out.display()))?;
    let payload = |src: PathBuf, what: &str| -> Result<Payload> {
        let file = format!("cairn-{version}-{what}");
        place(&src, &out.join(&file))?;
        let (size, sha256) = sha256_of(&src)?;
        Ok(Payload { file, size, sha256 })
    };
    let r = payload(root, "root.img")?;
    let vmlinuz = a.path("vmlinuz")?;
    let kernel_release = cairn_kconfig::bzimage_release(&read(&vmlinuz)?)
        .with_context(|| format!("{} is not a bzImage that names its release", vmlinuz.display()))?;
    let kernel = payload(vmlinuz, "vmlinuz")?;
    let initramfs = payload(a.path("initramfs")?, "initramfs.img")?;
    let m = Manifest {
        version,
        channel,
        build_id: a.opt("build-id").unwrap_or("local").to_string(),
        expires,
        cmdline: a.opt("cmdline").context("--cmdline is required")?.trim().to_string(),
        kernel_release: Some(kernel_release),
        root: RootPayload {
            file: r.file,
            size: r.size,
            sha256: r.sha256,
            verity_root: info.root_hash,
            verity_salt: info.salt,
            verity_blocks: info.data_blocks,
        },
        kernel,
        initramfs,
    };
    let text = m.to_text();
    Manifest::parse(&text).map_err(|e| anyhow::anyhow!("the manifest written does not parse back: {e}"))?;
    let sigs: String = signers.iter().map(|(id, k)| keys::signature_line(id, k, text.as_bytes())).collect();
    write_atomic(&out.join("manifest.toml.sig"), sigs.as_bytes())?;
    write_atomic(&out.join("manifest.toml"), text.as_bytes())?;
    println!("cairn-image: bundle {version} ({}) in {}, signed by {}", m.channel, out.display(), signers.iter().map(|s| s.0.as_str()).collect::<Vec<_>>().join(", "));
    Ok(())
}

pub fn publish(a: &Args) -> Result<()> {
    let bundle = a.path("bundle")?;
    let repo = a.path("repo")?;
    let text = std::fs::read_to_string(bundle.join("manifest.toml")).with_context(|| format!("{} holds no manifest.toml", bundle.display()))?;
    let m = Manifest::parse(&text).map_err(|e| anyhow::anyhow!("{}/manifest.toml: {e}", bundle.display()))?;
    let dir = repo.join(&m.channel);
    std::fs::create_dir_all(&dir).with_context(|| format!("Cannot create {}", dir.display()))?;
    for f in [&m.root.file, &m.kernel.file, &m.initramfs.file] {
        let tmp = dir.join(format!(".{f}.tmp"));
        place(&bundle.join(f), &tmp)?;
        std::fs::rename(&tmp, dir.join(f))?;
    }
    for f in ["manifest.toml.sig", "manifest.toml"] {
        write_atomic(&dir.join(f), &read(&bundle.join(f))?)?;
    }
    println!("cairn-image: published {} to {}", m.version, dir.display());
    Ok(())
}
