//! systemd-boot's EFI variables, as efivarfs shows them: which entry it
//! booted, whether its boot-count rename worked, and which partition (the
//! ESP) it was loaded from.

use std::path::Path;

const LOADER_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
pub const EFIVARS: &str = "/sys/firmware/efi/efivars";

/// Whether the machine booted through UEFI.
pub fn booted_with_efi() -> bool {
    Path::new("/sys/firmware/efi").exists()
}

/// An efivarfs file's text: 4 attribute bytes, then NUL-terminated UTF-16LE.
pub fn decode_text(bytes: &[u8]) -> Option<String> {
    let units: Vec<u16> = bytes.get(4..)?.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    Some(String::from_utf16_lossy(&units).trim_end_matches('\0').to_string())
}

/// A systemd-boot variable as text, if set.
pub fn loader_var(name: &str) -> Option<String> {
    decode_text(&std::fs::read(format!("{EFIVARS}/{name}-{LOADER_GUID}")).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_loader_variable() {
        let mut bytes = vec![6, 0, 0, 0];
        for u in "C41F0000-E5\0".encode_utf16() {
            bytes.extend_from_slice(&u.to_le_bytes());
        }
        assert_eq!(decode_text(&bytes).as_deref(), Some("C41F0000-E5"));
        assert_eq!(decode_text(&[6, 0]), None);
    }
}
