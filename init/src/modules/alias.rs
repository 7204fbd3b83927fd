//! `modules.alias` and the glob patterns in it: which shipped module drives a
//! device, by the device's `modalias` (what udev and modprobe do elsewhere;
//! Cairn has neither).

/// Whether `text` matches the glob `pat`, as modprobe compares a modalias
/// with an alias: `*` any run of bytes, `?` one byte, `[a-z]`, `[!x]` or
/// `[^x]` one byte of (or not of) a set. A `[` without its `]` is a plain
/// byte. No allocation; one backtracking point (the last `*`), so the cost
/// stays near `pat.len() * text.len()` at worst.
pub fn glob(pat: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // After a `*`: where the pattern resumes, and the text byte it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pat.len() {
            let step = match pat[p] {
                b'*' => {
                    star = Some((p + 1, t));
                    p += 1;
                    continue;
                }
                b'?' => Some(1),
                b'[' => match class(&pat[p..], text[t]) {
                    Some((true, len)) => Some(len),
                    Some((false, _)) => None,
                    None => (text[t] == b'[').then_some(1),
                },
                c => (c == text[t]).then_some(1),
            };
            if let Some(len) = step {
                p += len;
                t += 1;
                continue;
            }
        }
        match star {
            // Let the `*` swallow one more byte and try again from there.
            Some((resume, at)) => {
                star = Some((resume, at + 1));
                p = resume;
                t = at + 1;
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

/// A `[...]` set at the start of `pat` against byte `c`: whether it matches
/// and how long the set is, or `None` if it never closes. A `]` right after
/// the `[` (or the `!`) is a member, as in fnmatch.
fn class(pat: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(pat.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let first = i;
    let mut hit = false;
    loop {
        let lo = *pat.get(i)?;
        if lo == b']' && i > first {
            break;
        }
        match (pat.get(i + 1), pat.get(i + 2)) {
            (Some(b'-'), Some(&hi)) if hi != b']' => {
                hit |= lo <= c && c <= hi;
                i += 3;
            }
            _ => {
                hit |= lo == c;
                i += 1;
            }
        }
    }
    Some((hit != negate, i + 1))
}

/// The bus a pattern or a modalias belongs to: its leading word (`pci` in
/// `pci:v...`, `acpi` in `acpi*:VMBUS:*`), which is also its directory
/// under /sys/bus; empty when the word is not followed by `:` or `*`
/// (`fs-ext4` names no device).
pub fn bus_of(s: &str) -> &str {
    let len = s.bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'_').count();
    match s.as_bytes().get(len) {
        Some(b':' | b'*') => &s[..len],
        _ => "",
    }
}

/// A parsed `modules.alias` (`alias PATTERN MODULE` lines), kept as the
/// file's text and the byte ranges of its entries, grouped by bus: one
/// allocation for the text, one small one for the ranges.
#[derive(Debug, Default)]
pub struct Table {
    text: String,
    /// (bus, pattern, module) as ranges into `text`.
    entries: Vec<[(u32, u32); 3]>,
}

impl Table {
    pub fn parse(text: String) -> Table {
        let mut entries = Vec::new();
        let mut offset = 0usize;
        for line in text.split_inclusive('\n') {
            let start = offset;
            offset += line.len();
            let mut words = line.split_ascii_whitespace();
            let (Some("alias"), Some(pat), Some(module), None) = (words.next(), words.next(), words.next(), words.next()) else {
                continue;
            };
            let bus = bus_of(pat);
            if bus.is_empty() || text.len() > u32::MAX as usize {
                continue;
            }
            let range = |s: &str| {
                let at = start + (s.as_ptr() as usize - line.as_ptr() as usize);
                (at as u32, (at + s.len()) as u32)
            };
            entries.push([range(bus), range(pat), range(module)]);
        }
        entries.sort_by(|a, b| text[span(a[0])].cmp(&text[span(b[0])]));
        Table { text, entries }
    }

    fn get(&self, r: (u32, u32)) -> &str {
        &self.text[span(r)]
    }

    /// The buses the table has patterns for, each once.
    pub fn buses(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.entries.iter().map(|e| self.get(e[0])).collect();
        out.dedup();
        out
    }

    /// The modules whose patterns match a device's modalias, each once, in
    /// table order.
    pub fn matching<'a>(&'a self, modalias: &str, out: &mut Vec<&'a str>) {
        let bus = bus_of(modalias);
        let first = self.entries.partition_point(|e| self.get(e[0]) < bus);
        for e in self.entries[first..].iter().take_while(|e| self.get(e[0]) == bus) {
            let module = self.get(e[2]);
            if !out.contains(&module) && glob(self.get(e[1]).as_bytes(), modalias.as_bytes()) {
                out.push(module);
            }
        }
    }
}

fn span((a, b): (u32, u32)) -> std::ops::Range<usize> {
    a as usize..b as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_patterns_match_real_modaliases() {
        let yes = [
            ("pci:v00001AF4d*sv*sd*bc*sc*i*", "pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00"),
            ("virtio:d00000001v*", "virtio:d00000001v00001AF4"),
            ("acpi*:VMBUS:*", "acpi:VMBUS:"),
            ("pci:v*d*sv*sd*bc01sc06i01*", "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"),
            ("scsi:t-0x00*", "scsi:t-0x00"),
            ("usb:v0BC2p2321d0[0-1]*dc*", "usb:v0BC2p2321d0100dc00"),
        ];
        for (p, t) in yes {
            assert!(glob(p.as_bytes(), t.as_bytes()), "{p} should match {t}");
        }
        let no = [
            ("virtio:d00000001v*", "virtio:d00000002v00001AF4"),
            ("pci:v*d*sv*sd*bc01sc06i01*", "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00"),
            ("scsi:t-0x00*", "scsi:t-0x05"),
            ("usb:v0BC2p2321d0[!0-1]*", "usb:v0BC2p2321d0100"),
        ];
        for (p, t) in no {
            assert!(!glob(p.as_bytes(), t.as_bytes()), "{p} should not match {t}");
        }
    }

    #[test]
    fn sets_with_a_leading_bracket_or_no_end() {
        assert!(glob(b"[]a]", b"]"));
        assert!(glob(b"[!]]", b"x"));
        assert!(!glob(b"[!]]", b"]"));
        assert!(glob(b"a[b", b"a[b"));
        assert!(glob(b"[a-]", b"-"));
    }

    #[test]
    fn the_table_finds_modules_by_bus_and_pattern() {
        let t = Table::parse(
            "# comment\nalias virtio:d00000001v* virtio_net\nalias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\n\
             alias acpi*:VMBUS:* hv_vmbus\nalias pci:v*d*sv*sd*bc01sc06i01* ahci\nalias pci:v00001AF4d* virtio_pci\n\
             broken line\nalias fs-ext4 ext4\n"
                .to_string(),
        );
        assert_eq!(t.buses(), ["acpi", "pci", "virtio"]);
        let mut out = Vec::new();
        t.matching("pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00", &mut out);
        assert_eq!(out, ["virtio_pci"]);
        out.clear();
        t.matching("acpi:VMBUS:", &mut out);
        assert_eq!(out, ["hv_vmbus"]);
        out.clear();
        t.matching("usb:v1d1", &mut out);
        assert!(out.is_empty());
    }
}
