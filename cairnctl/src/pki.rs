//! `cairnctl pki ...`: the cluster CA and its certificates, made on an
//! operator's machine. The CA key never goes onto a node.
//!
//! ```text
//! cairnctl pki ca --out DIR [--name NAME] [--days N]
//! cairnctl pki client --ca DIR --name NAME --role admin|operator|reader --out DIR [--days N]
//! cairnctl pki node --ca DIR --name NAME [--san NAME_OR_IP]... --out DIR [--days N]
//! ```
//! `node` also prints the machine config's `[api]` section for that node.

use crate::cli::Pki;
use anyhow::{Context, Result};
use cairn_pki::{Ca, Issued, Validity};
use std::os::unix::fs::OpenOptionsExt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes a certificate and its key (the key 0600, never over an existing one).
fn write_pair(dir: &Path, name: &str, issued: &Issued) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key)
        .with_context(|| format!("cannot create {} (it must not exist yet)", key.display()))?;
    f.write_all(issued.key_pem.as_bytes())?;
    std::fs::write(&cert, &issued.cert_pem).with_context(|| format!("cannot write {}", cert.display()))?;
    Ok((cert, key))
}

fn load_ca(dir: &Path) -> Result<Ca> {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).with_context(|| format!("cannot read {}", dir.join(f).display()));
    Ok(Ca::load(&read("ca.pem")?, &read("ca.key")?)?)
}

pub fn run(command: Pki) -> Result<()> {
    match command {
        Pki::Ca { out, name, days } => {
            let (_, issued) = Ca::generate(&name, Validity::days(days))?;
            let (cert, key) = write_pair(&out, "ca", &issued)?;
            println!("cairnctl: wrote the CA {} and its key {} (keep the key off the nodes)", cert.display(), key.display());
        }
        Pki::Client { ca, name, role, out, days } => {
            let issued = load_ca(&ca)?.issue_client(&name, role, Validity::days(days))?;
            let (cert, key) = write_pair(&out, &name, &issued)?;
            println!("cairnctl: wrote {} ({role}, serial {}) and {}", cert.display(), issued.serial, key.display());
            println!("use it with: export CAIRN_CERT={} CAIRN_KEY={}", cert.display(), key.display());
        }
        Pki::Node { ca: ca_dir, name, san, out, days } => {
            let mut sans = vec![name.clone()];
            sans.extend(san);
            let ca = load_ca(&ca_dir)?;
            let issued = ca.issue_server(&name, &sans, Validity::days(days))?;
            let (cert, _) = write_pair(&out, &name, &issued)?;
            eprintln!("cairnctl: wrote {} for {}; the machine config's [api] section for it:", cert.display(), sans.join(", "));
            println!("[api]\nca = '''\n{}'''\ncertificate = '''\n{}'''\nkey = '''\n{}'''", ca.cert_pem.trim_end(), issued.cert_pem.trim_end(), issued.key_pem.trim_end());
        }
    }
    Ok(())
}
