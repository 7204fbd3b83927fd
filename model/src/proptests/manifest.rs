use super::{any_text, config};
use crate::manifest::{Manifest, Payload, RootPayload, Version, MAX_BOOT_FILE, MAX_ROOT, VERITY_BLOCK};
use proptest::prelude::*;

fn hex(bytes: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<u8>(), bytes).prop_map(|b| b.iter().map(|x| format!("{x:02x}")).collect())
}

fn file_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_+-][!-.0-\\[\\]-~]{0,40}"
}

fn payload() -> impl Strategy<Value = Payload> {
    (file_name(), 1..=MAX_BOOT_FILE, hex(32)).prop_map(|(file, size, sha256)| Payload { file, size, sha256 })
}

fn manifest() -> impl Strategy<Value = Manifest> {
    let root = (file_name(), 2 * VERITY_BLOCK..=MAX_ROOT, hex(32), hex(32), prop::collection::vec(any::<u8>(), 1..32), any::<u64>())
        .prop_map(|(file, size, sha256, verity_root, salt, blocks)| RootPayload {
            file,
            size,
            sha256,
            verity_root,
            verity_salt: salt.iter().map(|x| format!("{x:02x}")).collect(),
            // Some data, and room for a tree after it.
            verity_blocks: 1 + blocks % ((size - 1) / VERITY_BLOCK),
        });
    let cmdline = any_text(60).prop_filter("the updater's own keys", |c| {
        !c.contains('\n') && !c.contains("cairn.slot=") && !c.contains("cairn.verity_")
    });
    (
        any::<(u64, u64, u64)>(),
        prop::sample::select(vec!["stable", "beta", "alpha"]),
        any_text(40),
        0..=i64::MAX as u64,
        (cmdline, prop::option::of("[a-z0-9.+_-]{1,30}")),
        root,
        payload(),
        payload(),
    )
        .prop_map(|((a, b, c), channel, build_id, expires, (cmdline, kernel_release), root, kernel, initramfs)| Manifest {
            version: Version(a, b, c),
            channel: channel.into(),
            build_id,
            expires,
            cmdline,
            kernel_release,
            root,
            kernel,
            initramfs,
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn written_manifests_read_back_equal(m in manifest()) {
        let text = m.to_text();
        prop_assert_eq!(Manifest::parse(&text), Ok(m), "{}", text);
    }

    #[test]
    fn mutated_manifests_never_panic_and_errors_say_what(text in manifest().prop_flat_map(|m| cairn_mutate::mutated_text(&[&m.to_text()], 6))) {
        if let Err(e) = Manifest::parse(&text) {
            prop_assert!(!e.trim().is_empty());
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in any_text(400)) {
        if let Err(e) = Manifest::parse(&text) {
            prop_assert!(!e.trim().is_empty());
        }
    }
}
