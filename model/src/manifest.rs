//! The update manifest: what a bundle holds and how to know it is intact.
//!
//! ```toml
//! version = "0.2.0"
//! channel = "stable"
//! build_id = "1732400000-3f2a9c1"
//! expires = 1735000000            # Unix seconds; refused after
//! cmdline = "console=ttyS0 quiet" # kernel options of the new slot, before
//!                                 # cairn.slot and the verity parameters
//! [root]                          # erofs + dm-verity tree, for the slot partition
//! file = "cairn-0.2.0-root.img"
//! size = 62914560
//! sha256 = "..."
//! verity_root = "..."
//! verity_salt = "..."
//! verity_blocks = 15000
//! [kernel]                        # and [initramfs]: go to the ESP
//! file = "cairn-0.2.0-vmlinuz"
//! size = 8000000
//! sha256 = "..."
//! ```

use serde::Deserialize;
use std::fmt;

/// An OS version, `major.minor.patch`, ordered numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(
    /// Major.
    pub u64,
    /// Minor.
    pub u64,
    /// Patch.
    pub u64,
);

impl std::str::FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> Result<Version, String> {
        let parts: Vec<&str> = s.split('.').collect();
        let num = |p: &str| p.parse::<u64>().map_err(|_| format!("`{s}` is not a version like 1.2.3"));
        match parts.as_slice() {
            [a, b, c] => Ok(Version(num(a)?, num(b)?, num(c)?)),
            _ => Err(format!("`{s}` is not a version like 1.2.3")),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// One file of the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    /// File name in the channel's directory.
    pub file: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256 of the file, hexadecimal.
    pub sha256: String,
}

/// The root image payload, with its dm-verity parameters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootPayload {
    /// File name in the channel's directory.
    pub file: String,
    /// Size in bytes (erofs, verity superblock and tree).
    pub size: u64,
    /// sha256 of the file.
    pub sha256: String,
    /// dm-verity root hash.
    pub verity_root: String,
    /// dm-verity salt.
    pub verity_salt: String,
    /// 4096-byte data blocks the tree covers.
    pub verity_blocks: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    version: String,
    channel: String,
    build_id: String,
    expires: u64,
    cmdline: String,
    root: RootPayload,
    kernel: Payload,
    initramfs: Payload,
}

/// A parsed manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The OS version the bundle installs.
    pub version: Version,
    /// stable, beta or alpha.
    pub channel: String,
    /// Which build made it, free text.
    pub build_id: String,
    /// Unix seconds after which the manifest is refused.
    pub expires: u64,
    /// Kernel options of the new slot; the updater appends `cairn.slot=` and
    /// the verity parameters.
    pub cmdline: String,
    /// The slot image.
    pub root: RootPayload,
    /// The kernel, for the slot's directory on the ESP.
    pub kernel: Payload,
    /// The initramfs, beside the kernel.
    pub initramfs: Payload,
}

/// Whether `value` is whole bytes of hexadecimal digits, `len` digits long
/// when a length is given (hashes, salts and keys on command lines and in
/// manifests).
pub fn is_hex(value: &str, len: Option<usize>) -> bool {
    !value.is_empty() && value.len() % 2 == 0 && len.is_none_or(|l| value.len() == l) && value.bytes().all(|b| b.is_ascii_hexdigit())
}

fn hex_of(what: &str, value: &str, len: Option<usize>) -> Result<(), String> {
    if is_hex(value, len) {
        Ok(())
    } else {
        Err(format!("{what} `{value}` is not {}hexadecimal", len.map_or(String::new(), |l| format!("{l}-digit "))))
    }
}

impl Manifest {
    /// The manifest as TOML, in the order [`Manifest::parse`] documents.
    pub fn to_text(&self) -> String {
        let payload = |p: &Payload| format!("file = {:?}\nsize = {}\nsha256 = \"{}\"\n", p.file, p.size, p.sha256);
        let r = &self.root;
        format!(
            "version = \"{}\"\nchannel = {:?}\nbuild_id = {:?}\nexpires = {}\ncmdline = {:?}\n\n[root]\n\
             file = {:?}\nsize = {}\nsha256 = \"{}\"\nverity_root = \"{}\"\nverity_salt = \"{}\"\nverity_blocks = {}\n\n\
             [kernel]\n{}\n[initramfs]\n{}",
            self.version, self.channel, self.build_id, self.expires, self.cmdline,
            r.file, r.size, r.sha256, r.verity_root, r.verity_salt, r.verity_blocks,
            payload(&self.kernel), payload(&self.initramfs)
        )
    }

    /// Parses and checks the shape of a manifest.
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let raw: Raw = toml::from_str(text).map_err(|e| e.message().to_string())?;
        let version: Version = raw.version.parse()?;
        if !["stable", "beta", "alpha"].contains(&raw.channel.as_str()) {
            return Err(format!("channel `{}` is not stable, beta or alpha", raw.channel));
        }
        for (what, p) in [("kernel", &raw.kernel), ("initramfs", &raw.initramfs)] {
            hex_of(&format!("{what}.sha256"), &p.sha256, Some(64))?;
        }
        hex_of("root.sha256", &raw.root.sha256, Some(64))?;
        hex_of("root.verity_root", &raw.root.verity_root, Some(64))?;
        hex_of("root.verity_salt", &raw.root.verity_salt, None)?;
        if raw.cmdline.contains('\n') || raw.cmdline.contains("cairn.slot=") || raw.cmdline.contains("cairn.verity_") {
            return Err("cmdline must be one line without cairn.slot= or cairn.verity_* (the updater adds them)".into());
        }
        for file in [&raw.root.file, &raw.kernel.file, &raw.initramfs.file] {
            if file.is_empty() || file.contains('/') || file.starts_with('.') {
                return Err(format!("payload file name `{file}` must be a plain name"));
            }
        }
        Ok(Manifest {
            version,
            channel: raw.channel,
            build_id: raw.build_id,
            expires: raw.expires,
            cmdline: raw.cmdline,
            root: raw.root,
            kernel: raw.kernel,
            initramfs: raw.initramfs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A well-formed manifest for tests.
    pub fn sample(version: &str, expires: u64) -> String {
        let h = "ab".repeat(32);
        format!(
            "version = \"{version}\"\nchannel = \"stable\"\nbuild_id = \"b1\"\nexpires = {expires}\ncmdline = \"console=ttyS0\"\n\
             [root]\nfile = \"root.img\"\nsize = 8192\nsha256 = \"{h}\"\nverity_root = \"{h}\"\nverity_salt = \"00ff\"\nverity_blocks = 2\n\
             [kernel]\nfile = \"vmlinuz\"\nsize = 10\nsha256 = \"{h}\"\n\
             [initramfs]\nfile = \"initramfs.img\"\nsize = 10\nsha256 = \"{h}\"\n"
        )
    }

    #[test]
    fn parses_a_manifest() {
        let m = Manifest::parse(&sample("1.2.10", 99)).unwrap();
        assert_eq!(m.version, Version(1, 2, 10));
        assert!(Version(1, 2, 10) > Version(1, 2, 9), "numeric, not text, order");
        assert_eq!((m.root.verity_blocks, m.kernel.file.as_str()), (2, "vmlinuz"));
    }

    #[test]
    fn refuses_bad_shapes() {
        let e = Manifest::parse(&sample("1.2", 1)).unwrap_err();
        assert_eq!(e, "`1.2` is not a version like 1.2.3");
        let e = Manifest::parse(&sample("1.0.0", 1).replace("stable", "nightly")).unwrap_err();
        assert!(e.contains("channel `nightly`"), "{e}");
        let e = Manifest::parse(&sample("1.0.0", 1).replace("\"vmlinuz\"", "\"../vmlinuz\"")).unwrap_err();
        assert!(e.contains("plain name"), "{e}");
        let e = Manifest::parse(&sample("1.0.0", 1).replace("size = 10\n", "size = 10\nextra = 1\n")).unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
        let e = Manifest::parse(&sample("1.0.0", 1).replace("console=ttyS0", "cairn.slot=b")).unwrap_err();
        assert!(e.contains("cmdline"), "{e}");
    }

    #[test]
    fn writes_what_it_parses() {
        let m = Manifest::parse(&sample("1.2.10", 99)).unwrap();
        assert_eq!(Manifest::parse(&m.to_text()).unwrap(), m);
    }
}
