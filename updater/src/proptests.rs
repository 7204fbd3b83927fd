//! Property tests of what the updater reads from a repository and from the
//! ESP and STATE: keyrings, signature files, secret keys, boot entry names,
//! the key=value files. Arbitrary and mutated inputs never panic, errors name
//! the line, and what the writers write reads back equal.

use crate::entries::{EntryName, Slot};
use crate::keys::{parse_secret, parse_signatures, public_line, signature_line, KeyError, Keyring};
use crate::state::{parse_pairs, Store};
use ed25519_dalek::SigningKey;
use proptest::prelude::*;

fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..max).prop_map(|c| c.into_iter().collect())
}

fn key_id() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,12}"
}

/// 1 to 4 keys with distinct ids.
fn signers() -> impl Strategy<Value = Vec<(String, SigningKey)>> {
    prop::collection::btree_map(key_id(), any::<[u8; 32]>(), 1..4)
        .prop_map(|m| m.into_iter().map(|(id, seed)| (id, SigningKey::from_bytes(&seed))).collect())
}

fn keyring_text(signers: &[(String, SigningKey)], threshold: usize) -> String {
    let keys: String = signers.iter().map(|(id, k)| public_line(id, k)).collect();
    format!("# trusted\nthreshold {threshold}\n{keys}")
}

fn named_line(e: &KeyError) -> bool {
    let KeyError::Line { origin, problem, .. } = e;
    origin == "keyring" && !problem.trim().is_empty()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn keyrings_read_back(signers in signers(), t in any::<prop::sample::Index>()) {
        let threshold = 1 + t.index(signers.len());
        let ring = Keyring::parse(&keyring_text(&signers, threshold), "keyring").map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(ring.threshold, threshold);
        for (id, k) in &signers {
            prop_assert_eq!(ring.keys.get(id), Some(&k.verifying_key()));
        }
    }

    #[test]
    fn mutated_keyrings_never_panic_and_errors_name_the_line(
        text in signers().prop_flat_map(|s| cairn_mutate::mutated_text(&[&keyring_text(&s, s.len())], 6)),
    ) {
        if let Err(e) = Keyring::parse(&text, "keyring") {
            prop_assert!(named_line(&e), "{e}");
        }
    }

    #[test]
    fn arbitrary_keyrings_never_panic(text in text(300)) {
        if let Err(e) = Keyring::parse(&text, "keyring") {
            prop_assert!(named_line(&e), "{e}");
        }
    }

    #[test]
    fn signatures_read_back(signers in signers(), manifest in prop::collection::vec(any::<u8>(), 0..64)) {
        let file: String = signers.iter().map(|(id, k)| signature_line(id, k, &manifest)).collect();
        let read = parse_signatures(&file);
        prop_assert_eq!(read.len(), signers.len());
        for ((id, sig), (want_id, k)) in read.iter().zip(&signers) {
            prop_assert_eq!(id, want_id);
            let sig = sig.ok_or_else(|| TestCaseError::fail(format!("signature of {id} not read")))?;
            prop_assert!(k.verifying_key().verify_strict(&manifest, &sig).is_ok());
        }
    }

    #[test]
    fn mutated_signature_files_never_panic(
        text in signers().prop_flat_map(|s| {
            let file: String = s.iter().map(|(id, k)| signature_line(id, k, b"manifest")).collect();
            cairn_mutate::mutated_text(&[&file], 8)
        }),
    ) {
        for (id, _) in parse_signatures(&text) {
            prop_assert!(!id.chars().any(char::is_whitespace), "{id:?}");
        }
    }

    #[test]
    fn secret_keys_never_panic(text in text(120)) {
        if let Err(e) = parse_secret(&text, "keyring") {
            prop_assert!(named_line(&e), "{e}");
        }
    }

    /// A name the updater reads is one it can write back: it renames and
    /// removes entries by the name it makes from what it read.
    #[test]
    fn entry_names_it_reads_are_the_names_it_writes(name in "cairn-[abAB]([+][+0-9]{1,3}(-[+0-9]{1,3})?)?\\.conf|.{0,20}") {
        if let Some(e) = EntryName::parse(&name) {
            prop_assert_eq!(e.file(), name);
        }
    }

    #[test]
    fn entry_names_round_trip(b in any::<bool>(), counter in prop::option::of(any::<(u32, u32)>())) {
        let e = EntryName { slot: if b { Slot::B } else { Slot::A }, counter };
        prop_assert_eq!(EntryName::parse(&e.file()), Some(e));
    }

    #[test]
    fn key_value_files_never_panic_and_errors_name_the_line(text in text(200)) {
        if let Err(e) = parse_pairs(&text, "config") {
            prop_assert!(e.to_string().starts_with("config:"), "{e}");
        }
    }

    /// What set_config writes, config reads back; what it cannot write back
    /// (a newline that would start another key) it refuses.
    #[test]
    fn config_pairs_read_back_or_are_refused(
        pairs in prop::collection::vec(prop_oneof![(text(10), text(20)), ("[a-z_]{0,8}", "[a-z0-9/]{0,12}")], 0..4),
    ) {
        let dir = std::env::temp_dir().join(format!("cairn-prop-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let store = Store::new(&dir);
        let written = store.set_config(&pairs);
        let read = store.config();
        let _ = std::fs::remove_dir_all(&dir);
        let plain = pairs.iter().all(|(k, v)| {
            let ok = |s: &str, extra: char| s.chars().all(|c| c.is_ascii_alphanumeric() || c == extra);
            ok(k, '_') && ok(v, '/')
        });
        prop_assert!(written.is_ok() || !plain, "{written:?}");
        if written.is_ok() {
            prop_assert_eq!(read.map_err(|e| e.to_string()), Ok(pairs));
        }
    }
}
