//! Boot entries on the ESP, as names and text; no I/O.
//!
//! One Type #1 entry a slot: `cairn-a.conf` is known good (no counter, never
//! touched while it is the fallback); `cairn-b+3-0.conf` is on trial and
//! systemd-boot counts its tries down (`+2-1`, `+1-2`, `+0-3`). Among the
//! entries the loader boots the one with the highest `version`, which is a
//! generation number the updater raises each switch; the OS version is in
//! the title and a comment.

/// A slot: `a` or `b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn parse(s: &str) -> Option<Slot> {
        match s {
            "a" | "A" => Some(Slot::A),
            "b" | "B" => Some(Slot::B),
            _ => None,
        }
    }
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
    pub fn letter(self) -> char {
        match self {
            Slot::A => 'a',
            Slot::B => 'b',
        }
    }
    /// The GPT label of its root partition.
    pub fn label(self) -> &'static str {
        match self {
            Slot::A => "ROOT-A",
            Slot::B => "ROOT-B",
        }
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.letter())
    }
}

/// What an entry's file name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryName {
    pub slot: Slot,
    /// (tries left, tries done); None: not counted, known good.
    pub counter: Option<(u32, u32)>,
}

impl EntryName {
    /// `cairn-b+2-1.conf` and the like, as [`EntryName::file`] writes them;
    /// None for any other file.
    pub fn parse(file: &str) -> Option<EntryName> {
        let stem = file.strip_prefix("cairn-")?.strip_suffix(".conf")?;
        let (slot, counter) = match stem.split_once('+') {
            None => (stem, None),
            Some((slot, c)) => {
                let (left, done) = match c.split_once('-') {
                    Some((l, d)) => (l.parse().ok()?, d.parse().ok()?),
                    None => (c.parse().ok()?, 0),
                };
                (slot, Some((left, done)))
            }
        };
        // Only the names `file` writes: the updater renames and removes an
        // entry by the name it makes from what it read (`cairn-b+3.conf` or
        // `cairn-b+03-0.conf` would be read, then not found).
        Some(EntryName { slot: Slot::parse(slot)?, counter }).filter(|e| e.file() == file)
    }
    pub fn file(&self) -> String {
        match self.counter {
            None => format!("cairn-{}.conf", self.slot),
            Some((l, d)) => format!("cairn-{}+{l}-{d}.conf", self.slot),
        }
    }
    /// A counted entry with no tries left: the loader gave up on it.
    pub fn exhausted(&self) -> bool {
        matches!(self.counter, Some((0, _)))
    }
}

/// The name an entry is written under before the commit rename; the loader
/// reads only `*.conf`.
pub fn staging_name(slot: Slot) -> String {
    format!("cairn-{slot}.new")
}

/// Tries a fresh trial entry gets.
pub const TRIES: u32 = 3;

/// The text of a slot's entry. `linux` comes last: an entry file cut short
/// by a power cut lacks it (or ends in a path that does not exist), and the
/// loader takes no entry without a kernel, rather than boot one with half
/// its options.
pub fn text(os_version: &str, generation: u64, slot: Slot, options: &str) -> String {
    format!(
        "# cairn-os-version {os_version}\ntitle      Cairn {os_version} (slot {up})\nversion    {generation}\nsort-key   cairn\n\
         options    {options}\ninitrd     /cairn/{slot}/initramfs.img\nlinux      /cairn/{slot}/vmlinuz\n",
        up = slot.letter().to_ascii_uppercase()
    )
}

/// What the updater reads back from an entry's text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntryInfo {
    pub os_version: Option<String>,
    pub generation: u64,
}

pub fn info(text: &str) -> EntryInfo {
    let mut out = EntryInfo::default();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("# cairn-os-version ") {
            out.os_version = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("version") {
            out.generation = v.trim().parse().unwrap_or(0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_count() {
        for f in ["cairn-a.conf", "cairn-b+3-0.conf", "cairn-b+0-3.conf"] {
            assert_eq!(EntryName::parse(f).unwrap().file(), f);
        }
        assert!(EntryName::parse("cairn-b+0-3.conf").unwrap().exhausted());
        assert!(!EntryName::parse("cairn-a.conf").unwrap().exhausted());
        // Names the updater would not write, so could not rename or remove.
        for bad in ["cairn-c.conf", "cairn-b.new", "other.conf", "cairn-b+x-1.conf", "cairn-b+2.conf", "cairn-b+02-1.conf", "cairn-B.conf"] {
            assert_eq!(EntryName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn entry_text_carries_version_and_generation() {
        let t = text("0.2.0", 7, Slot::B, "console=ttyS0 cairn.slot=b");
        assert!(t.contains("options    console=ttyS0 cairn.slot=b\n"));
        assert!(t.contains("title      Cairn 0.2.0 (slot B)\n"));
        assert!(t.ends_with("\nlinux      /cairn/b/vmlinuz\n"), "linux last, so a cut file is no entry: {t}");
        assert_eq!(info(&t), EntryInfo { os_version: Some("0.2.0".into()), generation: 7 });
    }
}
