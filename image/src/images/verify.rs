//! `cairn-image verify`: checks a downloaded image set against its signed
//! manifest: the signature first (against a keyring, as the updater checks
//! an update), then the size and sha256 of every file asked for.

use super::{MANIFEST, SIGNATURE};
use crate::release::sha256_of;
use crate::Args;
use anyhow::{bail, Context, Result};
use cairn_model::images::ImageManifest;
use cairn_updater::{check, Keyring};
use std::path::Path;

pub fn verify(a: &Args) -> Result<()> {
    let dir = a.path("dir")?;
    let keyring_path = a.path("keyring")?;
    let ring_text = std::fs::read_to_string(&keyring_path).with_context(|| format!("Cannot read keyring {}", keyring_path.display()))?;
    let ring = Keyring::parse(&ring_text, &keyring_path.display().to_string())?;
    let m = signed_manifest(&dir, &ring)?;
    let names = a.all("file");
    let wanted: Vec<_> = if names.is_empty() {
        m.files.iter().collect()
    } else {
        names
            .iter()
            .map(|n| m.files.iter().find(|f| &f.name == n).with_context(|| format!("--file {n}: the manifest does not list it")))
            .collect::<Result<_>>()?
    };
    let mut bad = Vec::new();
    for f in wanted {
        let path = dir.join(&f.name);
        match std::fs::metadata(&path) {
            Err(e) => bad.push(format!("{}: {e}", path.display())),
            Ok(md) if md.len() != f.size => bad.push(format!("{}: {} bytes, the manifest says {}", path.display(), md.len(), f.size)),
            Ok(_) => {
                let (_, sha256) = sha256_of(&path)?;
                if sha256 == f.sha256 {
                    println!("{}: OK", f.name);
                } else {
                    bad.push(format!("{}: sha256 {sha256}, the manifest says {}", path.display(), f.sha256));
                }
            }
        }
    }
    if !bad.is_empty() {
        bail!("{} file(s) do not match the signed manifest:\n  {}", bad.len(), bad.join("\n  "));
    }
    println!("cairn-image: the manifest of cairn {} is signed by a trusted key; the files above match it", m.version);
    Ok(())
}

/// The manifest in `dir`, if its signature holds.
fn signed_manifest(dir: &Path, ring: &Keyring) -> Result<ImageManifest> {
    let path = dir.join(MANIFEST);
    let sig_path = dir.join(SIGNATURE);
    let text = crate::read(&path)?;
    let sigs = std::fs::read_to_string(&sig_path).with_context(|| format!("Cannot read {}", sig_path.display()))?;
    check::signed(&text, &sigs, ring).with_context(|| format!("{} is refused", path.display()))?;
    let text = std::str::from_utf8(&text).with_context(|| format!("{} is not UTF-8", path.display()))?;
    ImageManifest::parse(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}
