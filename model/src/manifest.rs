//! The update manifest: what a bundle holds and how to know it is intact.
//!
//! ```toml
//! version = "0.2.0"
//! channel = "stable"
//! build_id = "1732400000-3f2a9c1"
//! expires = 1735000000            # Unix seconds; refused after
//! cmdline = "console=ttyS0 quiet" # kernel options of the new slot, before
//!                                 # cairn.slot and the verity parameters
//! kernel_release = "6.1.0-50-cloud-amd64" # the kernel's own version string;
//!                                 # absent in older bundles (cloud kernel)
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
    #[serde(default)]
    kernel_release: Option<String>,
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
    /// The release of the kernel payload (`6.1.0-50-cloud-amd64`), read
    /// from the kernel image by the bundle builder; the updater keeps a
    /// machine on its kind of kernel by it. None in bundles made before it
    /// existed, which all carried the cloud kernel.
    pub kernel_release: Option<String>,
    /// The slot image.
    pub root: RootPayload,
    /// The kernel, for the slot's directory on the ESP.
    pub kernel: Payload,
    /// The initramfs, beside the kernel.
    pub initramfs: Payload,
}

/// The largest root image a manifest may name (a slot is far smaller; this
/// keeps every sum over sizes far from `u64::MAX`).
pub const MAX_ROOT: u64 = 1 << 40;
/// The largest kernel or initramfs a manifest may name: they go to the ESP.
pub const MAX_BOOT_FILE: u64 = 1 << 30;
/// The dm-verity data block size.
pub const VERITY_BLOCK: u64 = 4096;

impl RootPayload {
    /// Bytes of file system data the verity tree covers; None if that wraps.
    pub fn verity_data_bytes(&self) -> Option<u64> {
        self.verity_blocks.checked_mul(VERITY_BLOCK)
    }
}

/// A payload's file name: one plain path component of printable ASCII (no
/// `/`, no `\\`, not hidden, not `.` or `..`, no spaces or control
/// characters), at most 255 bytes; it is joined to URLs and to the staging
/// directory.
pub(crate) fn plain_name(key: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b'\\');
    if ok {
        Ok(())
    } else {
        Err(format!("{key} = {name:?} must be a plain file name of printable characters (no `/`, not starting with `.`)"))
    }
}

/// Whether `value` is whole bytes of hexadecimal digits, `len` digits long
/// when a length is given (hashes, salts and keys on command lines and in
/// manifests).
pub fn is_hex(value: &str, len: Option<usize>) -> bool {
    !value.is_empty() && value.len() % 2 == 0 && len.is_none_or(|l| value.len() == l) && value.bytes().all(|b| b.is_ascii_hexdigit())
}

pub(crate) fn hex_of(what: &str, value: &str, len: Option<usize>) -> Result<(), String> {
    if is_hex(value, len) {
        Ok(())
    } else {
        Err(format!("{what} `{value}` is not {}hexadecimal", len.map_or(String::new(), |l| format!("{l}-digit "))))
    }
}

/// `s` as a TOML basic string. Rust's `{:?}` is not TOML: it writes
/// `\u{e000}`-style escapes and escapes characters TOML takes as they are.
pub(crate) fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML error as `line N: message`, naming the key where it can.
pub(crate) fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let start = e.span().map(|s| s.start);
    let message = crate::locate::toml_message(text, e.message(), start);
    match start {
        Some(at) => format!("line {}: {message}", crate::locate::line_col(text, at).0),
        None => message,
    }
}

impl Manifest {
    /// The manifest as TOML, in the order [`Manifest::parse`] documents.
    pub fn to_text(&self) -> String {
        let q = toml_string;
        let payload = |p: &Payload| format!("file = {}\nsize = {}\nsha256 = \"{}\"\n", q(&p.file), p.size, p.sha256);
        let r = &self.root;
        let kernel_release = self.kernel_release.as_ref().map_or(String::new(), |k| format!("kernel_release = {}\n", q(k)));
        format!(
            "version = \"{}\"\nchannel = {}\nbuild_id = {}\nexpires = {}\ncmdline = {}\n{kernel_release}\n[root]\n\
             file = {}\nsize = {}\nsha256 = \"{}\"\nverity_root = \"{}\"\nverity_salt = \"{}\"\nverity_blocks = {}\n\n\
             [kernel]\n{}\n[initramfs]\n{}",
            self.version, q(&self.channel), q(&self.build_id), self.expires, q(&self.cmdline),
            q(&r.file), r.size, r.sha256, r.verity_root, r.verity_salt, r.verity_blocks,
            payload(&self.kernel), payload(&self.initramfs)
        )
    }

    /// Parses and checks the shape of a manifest. Every error names the key
    /// (or, for TOML syntax, the line) it is about.
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let raw: Raw = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        let version: Version = raw.version.parse().map_err(|e| format!("version: {e}"))?;
        if !["stable", "beta", "alpha"].contains(&raw.channel.as_str()) {
            return Err(format!("channel `{}` is not stable, beta or alpha", raw.channel));
        }
        for (what, p) in [("kernel", &raw.kernel), ("initramfs", &raw.initramfs)] {
            hex_of(&format!("{what}.sha256"), &p.sha256, Some(64))?;
        }
        hex_of("root.sha256", &raw.root.sha256, Some(64))?;
        hex_of("root.verity_root", &raw.root.verity_root, Some(64))?;
        hex_of("root.verity_salt", &raw.root.verity_salt, None)?;
        if let Some(k) = &raw.kernel_release {
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b)) {
                return Err(format!("kernel_release `{k}` is not a kernel release (letters, digits, `.`, `_`, `+`, `-`)"));
            }
        }
        if raw.cmdline.contains('\n') || raw.cmdline.contains("cairn.slot=") || raw.cmdline.contains("cairn.verity_") {
            return Err("cmdline must be one line without cairn.slot= or cairn.verity_* (the updater adds them)".into());
        }
        for (key, file) in [("root.file", &raw.root.file), ("kernel.file", &raw.kernel.file), ("initramfs.file", &raw.initramfs.file)] {
            plain_name(key, file)?;
        }
        for (key, size, max) in [
            ("root.size", raw.root.size, MAX_ROOT),
            ("kernel.size", raw.kernel.size, MAX_BOOT_FILE),
            ("initramfs.size", raw.initramfs.size, MAX_BOOT_FILE),
        ] {
            if size == 0 || size > max {
                return Err(format!("{key} = {size} is not between 1 and {max} bytes"));
            }
        }
        let data = raw.root.verity_data_bytes().ok_or_else(|| format!("root.verity_blocks = {} overflows", raw.root.verity_blocks))?;
        if raw.root.verity_blocks == 0 || data >= raw.root.size {
            return Err(format!(
                "root.verity_blocks = {} ({data} bytes of data) leaves no room for a hash tree in root.size = {}",
                raw.root.verity_blocks, raw.root.size
            ));
        }
        Ok(Manifest {
            version,
            channel: raw.channel,
            build_id: raw.build_id,
            expires: raw.expires,
            cmdline: raw.cmdline,
            kernel_release: raw.kernel_release,
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
             [root]\nfile = \"root.img\"\nsize = 12288\nsha256 = \"{h}\"\nverity_root = \"{h}\"\nverity_salt = \"00ff\"\nverity_blocks = 2\n\
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
        assert_eq!(e, "version: `1.2` is not a version like 1.2.3");
        let e = Manifest::parse(&sample("1.0.0", 1).replace("stable", "nightly")).unwrap_err();
        assert!(e.contains("channel `nightly`"), "{e}");
        for name in ["../vmlinuz", "a/b", "..", ".", "", "vm linuz", "vm\\u0007linuz", "vm\\nlinuz", "vmlinüz", "a\\\\b"] {
            let e = Manifest::parse(&sample("1.0.0", 1).replace("\"vmlinuz\"", &format!("\"{name}\""))).unwrap_err();
            assert!(e.starts_with("kernel.file = ") && e.contains("plain file name"), "{name:?}: {e}");
        }
        let e = Manifest::parse(&sample("1.0.0", 1).replace("size = 10\n", "size = 10\nextra = 1\n")).unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
        let e = Manifest::parse(&sample("1.0.0", 1).replace("console=ttyS0", "cairn.slot=b")).unwrap_err();
        assert!(e.contains("cmdline"), "{e}");
    }

    #[test]
    fn sizes_that_would_wrap_or_do_not_fit_are_refused_by_key() {
        let big = (MAX_ROOT + 1).to_string();
        let cases = [
            (sample("1.0.0", 1).replace("verity_blocks = 2", &format!("verity_blocks = {}", u64::MAX / 2)), "root.verity_blocks"),
            (sample("1.0.0", 1).replace("verity_blocks = 2", "verity_blocks = 2000"), "root.verity_blocks"),
            (sample("1.0.0", 1).replace("verity_blocks = 2", "verity_blocks = 0"), "root.verity_blocks"),
            (sample("1.0.0", 1).replace("size = 12288", &format!("size = {big}")), "root.size"),
            (sample("1.0.0", 1).replacen("size = 10\n", "size = 0\n", 1), "kernel.size"),
            (sample("1.0.0", 1).replacen("size = 10\n", &format!("size = {}\n", MAX_BOOT_FILE + 1), 1), "kernel.size"),
        ];
        for (text, key) in cases {
            let e = Manifest::parse(&text).unwrap_err();
            assert!(e.starts_with(key), "{key}: {e}");
        }
        // A size past i64 is not TOML at all; the error gives the line.
        let e = Manifest::parse(&sample("1.0.0", 1).replace("expires = 1", "expires = 99999999999999999999")).unwrap_err();
        assert!(e.starts_with("line 4: "), "{e}");
    }

    #[test]
    fn writes_what_it_parses() {
        let m = Manifest::parse(&sample("1.2.10", 99)).unwrap();
        assert_eq!(Manifest::parse(&m.to_text()).unwrap(), m);
    }
}
