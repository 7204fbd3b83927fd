//! Inputs for property tests of the parsers that read what the network or
//! the disk hands them. Arbitrary bytes rarely get past a parser's first
//! check, so most cases start from a valid input and change it a little:
//! flip a byte, insert one, remove one, or repeat a stretch of the input
//! somewhere else (which makes plausible structure: a second option, a
//! duplicated key, a length that no longer fits).

use proptest::prelude::*;

/// One change to an input. Positions are taken modulo the input's length at
/// the time of the edit, so every edit applies to any input.
#[derive(Debug, Clone)]
pub enum Edit {
    /// XOR the byte at a position with a non-zero value.
    Flip(usize, u8),
    /// Insert a byte.
    Insert(usize, u8),
    /// Remove the byte at a position.
    Remove(usize),
    /// Copy up to `len` bytes from one position to another.
    Repeat(usize, usize, u8),
    /// Cut the input at a position.
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), 1u8..).prop_map(|(i, b)| Edit::Flip(i, b)),
        3 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        3 => any::<usize>().prop_map(Edit::Remove),
        2 => (any::<usize>(), any::<usize>(), 1u8..32).prop_map(|(f, t, n)| Edit::Repeat(f, t, n)),
        1 => any::<usize>().prop_map(Edit::Truncate),
    ]
}

/// `input` with `edits` applied in order.
pub fn apply(mut input: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = input.len();
        match *e {
            Edit::Flip(i, b) if len > 0 => input[i % len] ^= b,
            Edit::Insert(i, b) => input.insert(i % (len + 1), b),
            Edit::Remove(i) if len > 0 => drop(input.remove(i % len)),
            Edit::Repeat(from, to, n) if len > 0 => {
                let start = from % len;
                let piece = input[start..(start + usize::from(n)).min(len)].to_vec();
                let at = to % (len + 1);
                input.splice(at..at, piece);
            }
            Edit::Truncate(i) => input.truncate(i % (len + 1)),
            _ => {}
        }
    }
    input
}

/// One to `max` edits, for inputs that are themselves generated.
pub fn edits(max: usize) -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(edit(), 1..=max.max(1))
}

/// One of `seeds`, changed by one to `max_edits` edits.
pub fn mutated(seeds: Vec<Vec<u8>>, max_edits: usize) -> impl Strategy<Value = Vec<u8>> {
    assert!(!seeds.is_empty(), "mutated needs at least one valid input");
    (prop::sample::select(seeds), edits(max_edits)).prop_map(|(seed, edits)| apply(seed, &edits))
}

/// Like [`mutated`] for parsers of text: the bytes are read as UTF-8, each
/// invalid sequence replaced.
pub fn mutated_text(seeds: &[&str], max_edits: usize) -> impl Strategy<Value = String> {
    let seeds = seeds.iter().map(|s| s.as_bytes().to_vec()).collect();
    mutated(seeds, max_edits).prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_change_what_they_say() {
        let seed = b"abcdef".to_vec();
        assert_eq!(apply(seed.clone(), &[Edit::Flip(0, 0x20)]), b"Abcdef");
        assert_eq!(apply(seed.clone(), &[Edit::Remove(0)]), b"bcdef");
        assert_eq!(apply(seed.clone(), &[Edit::Insert(0, b'x')]), b"xabcdef");
        assert_eq!(apply(seed.clone(), &[Edit::Truncate(0)]), b"");
        assert_eq!(apply(Vec::new(), &[Edit::Flip(3, 1), Edit::Remove(1), Edit::Repeat(0, 0, 4)]), b"");
        let repeated = apply(seed, &[Edit::Repeat(0, 0, 2)]);
        assert_eq!(repeated.len(), 8, "{:?}", String::from_utf8_lossy(&repeated));
    }
}
