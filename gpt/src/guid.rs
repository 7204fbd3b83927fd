use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A GUID in the byte order GPT stores it on disk: the first three fields
/// little-endian, the last two as written. Keeping the on-disk form means
/// tables are copied to and from sectors without conversion, and only text
/// I/O pays for the swap.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Guid(pub [u8; 16]);

/// Maps between the canonical (textual, big-endian) byte order and the
/// on-disk one. The permutation is its own inverse.
const MIXED_ENDIAN: [usize; 16] = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];

/// Byte offsets of the dashes in "XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX".
const DASHES: [usize; 4] = [8, 13, 18, 23];

impl Guid {
    /// The all-zero GUID; as a partition type it marks an unused entry.
    pub const ZERO: Guid = Guid([0; 16]);

    /// Parses "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" (either case) into the
    /// on-disk byte order.
    pub fn parse(s: &str) -> Result<Guid, Error> {
        let bad = || Error::BadGuid {
            input: s.to_string(),
        };
        let text = s.as_bytes();
        if text.len() != 36 {
            return Err(bad());
        }
        let mut digits = Vec::with_capacity(32);
        for (i, &c) in text.iter().enumerate() {
            if DASHES.contains(&i) {
                if c != b'-' {
                    return Err(bad());
                }
                continue;
            }
            let nibble = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(bad()),
            };
            digits.push(nibble);
        }
        let mut canonical = [0u8; 16];
        for (byte, pair) in canonical.iter_mut().zip(digits.chunks_exact(2)) {
            *byte = (pair[0] << 4) | pair[1];
        }
        Ok(Guid::from_canonical(canonical))
    }

    /// Builds a GUID from bytes in canonical (textual) order.
    pub fn from_canonical(canonical: [u8; 16]) -> Guid {
        let mut disk = [0u8; 16];
        for (i, &from) in MIXED_ENDIAN.iter().enumerate() {
            disk[i] = canonical[from];
        }
        Guid(disk)
    }

    /// The bytes in canonical (textual) order.
    pub fn to_canonical(self) -> [u8; 16] {
        // The permutation is an involution, so the same mapping undoes it.
        Guid::from_canonical(self.0).0
    }

    /// A version-4 (random) GUID made from 16 caller-supplied bytes, e.g.
    /// from a RNG or, for reproducible images, from a hash of the build
    /// inputs. The version and variant bits are forced so the result is a
    /// well-formed RFC 4122 GUID whatever the input.
    pub fn from_random_bytes(bytes: [u8; 16]) -> Guid {
        let mut canonical = bytes;
        canonical[6] = (canonical[6] & 0x0f) | 0x40;
        canonical[8] = (canonical[8] & 0x3f) | 0x80;
        Guid::from_canonical(canonical)
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl FromStr for Guid {
    type Err = Error;
    fn from_str(s: &str) -> Result<Guid, Error> {
        Guid::parse(s)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.to_canonical().iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}
