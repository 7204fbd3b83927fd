//! The build manifest of the cloud images: one signed list that binds every
//! image file to the one source disk they were all made from.
//!
//! ```toml
//! version = "0.1.0"
//! source_date_epoch = 1764633600
//!
//! [source]                        # the padded GPT disk every image holds
//! size = 3221225472
//! sha256 = "..."
//!
//! [metal_source]                  # the metal disk (generic kernel), which
//! size = 3221225472               # the `metal` files hold instead
//! sha256 = "..."
//!
//! [[file]]
//! name = "cairn-0.1.0-azure.vhd"
//! platform = "azure"
//! format = "vhd"                  # how the file holds the source disk
//! size = 3221225984
//! sha256 = "..."
//! ```
//!
//! Every `[[file]]` whose `format` is a disk format holds, once unpacked, the
//! source disk byte for byte; `bmap` and `sums` files describe it instead.
//! The signature goes beside it (`manifest.toml.sig`, the update manifests'
//! `KEY-ID SIGNATURE` lines) over these exact bytes.

use crate::manifest::{hex_of, plain_name, toml_error, toml_string, Version};
use serde::Deserialize;

/// How a file of the image set holds the source disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The disk itself.
    Raw,
    /// The disk, zstd-compressed.
    RawZst,
    /// A block map of the raw disk for `bmaptool copy`.
    Bmap,
    /// qcow2 (compat 0.10).
    Qcow2,
    /// A fixed VHD: the disk and a 512-byte footer.
    Vhd,
    /// A gzip'd tar (old GNU, sparse) whose one member `disk.raw` is the disk.
    TarGz,
    /// An OVA: OVF descriptor, manifest and a streamOptimized VMDK of the disk.
    Ova,
    /// `SHA256SUMS`: `sha256sum -c` lines for the other files.
    Sums,
}

const FORMATS: &[(Format, &str)] = &[
    (Format::Raw, "raw"),
    (Format::RawZst, "raw.zst"),
    (Format::Bmap, "bmap"),
    (Format::Qcow2, "qcow2"),
    (Format::Vhd, "vhd"),
    (Format::TarGz, "tar.gz"),
    (Format::Ova, "ova"),
    (Format::Sums, "sums"),
];

impl Format {
    /// The name the manifest uses.
    pub fn name(self) -> &'static str {
        FORMATS.iter().find(|(f, _)| *f == self).map_or("?", |(_, n)| n)
    }

    /// Whether the file holds the disk (and so must unpack to the source).
    pub fn holds_disk(self) -> bool {
        !matches!(self, Format::Bmap | Format::Sums)
    }

    fn parse(name: &str) -> Option<Format> {
        FORMATS.iter().find(|(_, n)| *n == name).map(|(f, _)| *f)
    }
}

/// Size and digest of the source disk.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Bytes.
    pub size: u64,
    /// sha256, hexadecimal.
    pub sha256: String,
}

/// One file of the image set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Plain file name beside the manifest.
    pub name: String,
    /// Where it is meant to run (`aws`, `metal`, ...), or `all`.
    pub platform: String,
    /// How it holds the disk.
    pub format: Format,
    /// Bytes.
    pub size: u64,
    /// sha256, hexadecimal.
    pub sha256: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    name: String,
    platform: String,
    format: String,
    size: u64,
    sha256: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    version: String,
    source_date_epoch: u64,
    source: Source,
    #[serde(default)]
    metal_source: Option<Source>,
    file: Vec<RawFile>,
}

/// A parsed image manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageManifest {
    /// The OS version the images carry.
    pub version: Version,
    /// The build's timestamp (every time stamp inside the images).
    pub source_date_epoch: u64,
    /// The disk every image holds (but the metal ones, when `metal_source` is set).
    pub source: Source,
    /// The bare-metal disk, with Debian's generic kernel (AHCI, USB storage,
    /// server NICs): the disk the `metal` files hold.
    pub metal_source: Option<Source>,
    /// The files, in the order they were written.
    pub files: Vec<File>,
}

impl ImageManifest {
    /// The manifest as TOML, in the order [`ImageManifest::parse`] reads.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "version = \"{}\"\nsource_date_epoch = {}\n\n[source]\nsize = {}\nsha256 = \"{}\"\n",
            self.version, self.source_date_epoch, self.source.size, self.source.sha256
        );
        if let Some(m) = &self.metal_source {
            out.push_str(&format!("\n[metal_source]\nsize = {}\nsha256 = \"{}\"\n", m.size, m.sha256));
        }
        for f in &self.files {
            out.push_str(&format!(
                "\n[[file]]\nname = {}\nplatform = {}\nformat = \"{}\"\nsize = {}\nsha256 = \"{}\"\n",
                toml_string(&f.name),
                toml_string(&f.platform),
                f.format.name(),
                f.size,
                f.sha256
            ));
        }
        out
    }

    /// Parses and checks a manifest; every error names its key or line.
    pub fn parse(text: &str) -> Result<ImageManifest, String> {
        let raw: Raw = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        let version: Version = raw.version.parse().map_err(|e| format!("version: {e}"))?;
        hex_of("source.sha256", &raw.source.sha256, Some(64))?;
        if let Some(m) = &raw.metal_source {
            hex_of("metal_source.sha256", &m.sha256, Some(64))?;
        }
        if raw.file.is_empty() {
            return Err("the manifest lists no [[file]]".into());
        }
        let mut files = Vec::with_capacity(raw.file.len());
        for (i, f) in raw.file.into_iter().enumerate() {
            let at = format!("file[{i}]");
            plain_name(&format!("{at}.name"), &f.name)?;
            if files.iter().any(|g: &File| g.name == f.name) {
                return Err(format!("{at}.name = {:?} is listed twice", f.name));
            }
            let format = Format::parse(&f.format).ok_or_else(|| {
                let known: Vec<&str> = FORMATS.iter().map(|(_, n)| *n).collect();
                format!("{at}.format = {:?} is not one of {}", f.format, known.join(", "))
            })?;
            hex_of(&format!("{at}.sha256"), &f.sha256, Some(64))?;
            files.push(File { name: f.name, platform: f.platform, format, size: f.size, sha256: f.sha256 });
        }
        Ok(ImageManifest { version, source_date_epoch: raw.source_date_epoch, source: raw.source, metal_source: raw.metal_source, files })
    }

    /// The disk a file holds once unpacked.
    pub fn source_of(&self, f: &File) -> &Source {
        match &self.metal_source {
            Some(m) if f.platform == "metal" => m,
            _ => &self.source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ImageManifest {
        let h = "ab".repeat(32);
        let file = |name: &str, platform: &str, format| File { name: name.into(), platform: platform.into(), format, size: 7, sha256: h.clone() };
        ImageManifest {
            version: Version(0, 1, 0),
            source_date_epoch: 1_700_000_000,
            source: Source { size: 1 << 30, sha256: h.clone() },
            metal_source: Some(Source { size: 1 << 30, sha256: "cd".repeat(32) }),
            files: vec![file("cairn-0.1.0-aws.raw", "aws", Format::Raw), file("SHA256SUMS", "all", Format::Sums)],
        }
    }

    #[test]
    fn writes_what_it_parses() {
        let m = sample();
        assert_eq!(ImageManifest::parse(&m.to_text()).unwrap(), m);
        let cloud_only = ImageManifest { metal_source: None, ..m.clone() };
        assert_eq!(ImageManifest::parse(&cloud_only.to_text()).unwrap(), cloud_only);
        let metal = File { platform: "metal".into(), ..m.files[0].clone() };
        assert_eq!(m.source_of(&metal).sha256, "cd".repeat(32));
        assert_eq!(m.source_of(&m.files[0]).sha256, "ab".repeat(32));
        for (f, _) in FORMATS {
            assert_eq!(Format::parse(f.name()), Some(*f));
        }
    }

    #[test]
    fn refuses_bad_entries_by_key() {
        let text = sample().to_text();
        let cases = [
            (text.replace("format = \"raw\"", "format = \"iso\""), "file[0].format = \"iso\" is not one of raw, "),
            (text.replace("cairn-0.1.0-aws.raw", "../aws.raw"), "file[0].name = \"../aws.raw\" must be a plain file name"),
            (text.replace("SHA256SUMS", "cairn-0.1.0-aws.raw"), "file[1].name = \"cairn-0.1.0-aws.raw\" is listed twice"),
            (text.replacen(&"ab".repeat(32), "abc", 1), "source.sha256 `abc` is not 64-digit hexadecimal"),
            (text.replace("version = \"0.1.0\"", "version = \"1\""), "version: `1` is not a version"),
            (text.replace("size = 7\n", "size = 7\nextra = 1\n"), "unknown field `extra`"),
        ];
        for (bad, want) in cases {
            let e = ImageManifest::parse(&bad).unwrap_err();
            assert!(e.contains(want), "want {want:?}, got {e:?}");
        }
    }
}
