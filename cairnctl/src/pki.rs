//! `cairnctl pki ...`: the cluster CA and its certificates, made on an
//! operator's machine. The CA key never goes onto a node.
//!
//! ```text
//! cairnctl pki ca --out DIR [--name NAME] [--days N]
//! cairnctl pki client --ca DIR --name NAME --role admin|operator|reader --out DIR [--days N]
//! cairnctl pki node --ca DIR --name NAME [--san NAME_OR_IP]... --out DIR [--days N]
//! ```
//! `node` also prints the machine config's `[api]` section for that node.

use anyhow::{bail, Context, Result};
use cairn_pki::{Ca, Issued, Role, Validity};
use std::os::unix::fs::OpenOptionsExt;
use std::io::Write;
use std::path::{Path, PathBuf};

struct Flags {
    values: Vec<(String, String)>,
}

impl Flags {
    fn parse(args: &[String], known: &[&str]) -> Result<Flags> {
        let mut values = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let Some(name) = a.strip_prefix("--").filter(|n| known.contains(n)) else {
                bail!("unknown argument {a:?} (this verb takes --{})", known.join(", --"));
            };
            let v = it.next().with_context(|| format!("--{name} needs a value"))?;
            values.push((name.to_string(), v.clone()));
        }
        Ok(Flags { values })
    }
    fn one(&self, name: &str) -> Option<&str> {
        self.values.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    fn need(&self, name: &str) -> Result<&str> {
        self.one(name).with_context(|| format!("--{name} is required"))
    }
    fn all(&self, name: &str) -> Vec<String> {
        self.values.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
    }
    fn days(&self, default: i64) -> Result<Validity> {
        let days = match self.one("days") {
            Some(d) => d.parse::<i64>().ok().filter(|d| *d > 0).with_context(|| format!("--days {d}: a positive number"))?,
            None => default,
        };
        Ok(Validity::days(days))
    }
}

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

fn load_ca(dir: &str) -> Result<Ca> {
    let dir = Path::new(dir);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).with_context(|| format!("cannot read {}", dir.join(f).display()));
    Ok(Ca::load(&read("ca.pem")?, &read("ca.key")?)?)
}

pub fn run(args: &[String]) -> Result<()> {
    let (verb, rest) = args.split_first().context("cairnctl pki ca | client | node (see cairnctl --help)")?;
    match verb.as_str() {
        "ca" => {
            let f = Flags::parse(rest, &["out", "name", "days"])?;
            let (_, issued) = Ca::generate(f.one("name").unwrap_or("cairn cluster CA"), f.days(3650)?)?;
            let (cert, key) = write_pair(Path::new(f.need("out")?), "ca", &issued)?;
            println!("cairnctl: wrote the CA {} and its key {} (keep the key off the nodes)", cert.display(), key.display());
        }
        "client" => {
            let f = Flags::parse(rest, &["ca", "name", "role", "out", "days"])?;
            let role: Role = f.need("role")?.parse()?;
            let name = f.need("name")?;
            let issued = load_ca(f.need("ca")?)?.issue_client(name, role, f.days(365)?)?;
            let (cert, key) = write_pair(Path::new(f.need("out")?), name, &issued)?;
            println!("cairnctl: wrote {} ({role}, serial {}) and {}", cert.display(), issued.serial, key.display());
            println!("use it with: export CAIRN_CERT={} CAIRN_KEY={}", cert.display(), key.display());
        }
        "node" => {
            let f = Flags::parse(rest, &["ca", "name", "san", "out", "days"])?;
            let name = f.need("name")?;
            let mut sans = vec![name.to_string()];
            sans.extend(f.all("san"));
            let ca_dir = f.need("ca")?;
            let ca = load_ca(ca_dir)?;
            let issued = ca.issue_server(name, &sans, f.days(365)?)?;
            let (cert, _) = write_pair(Path::new(f.need("out")?), name, &issued)?;
            eprintln!("cairnctl: wrote {} for {}; the machine config's [api] section for it:", cert.display(), sans.join(", "));
            println!("[api]\nca = '''\n{}'''\ncertificate = '''\n{}'''\nkey = '''\n{}'''", ca.cert_pem.trim_end(), issued.cert_pem.trim_end(), issued.key_pem.trim_end());
        }
        other => bail!("cairnctl pki {other}: the verbs are ca, client and node"),
    }
    Ok(())
}
