use super::{any_text, config};
use crate::config::parse;
use proptest::prelude::*;

const SOURCE: &str = "fw_cfg";

/// The documented complete example, and a minimal one.
const SEEDS: &[&str] = &[include_str!("../../../docs/machine-config.example.toml"), "version = 1\n"];

/// A config comes from a URL, fw_cfg or a config disk: anyone who can hand
/// one over may send anything. Refusals list at least one problem, each with
/// its source, a place and a message.
fn check(text: &str) -> Result<(), TestCaseError> {
    if let Err(problems) = parse(text, SOURCE) {
        prop_assert!(!problems.0.is_empty());
        for p in &problems.0 {
            prop_assert_eq!(p.source.as_str(), SOURCE);
            prop_assert!(p.line >= 1 && p.column >= 1, "{p:?}");
            prop_assert!(!p.message.trim().is_empty(), "{p:?}");
        }
    }
    Ok(())
}

#[test]
fn the_seeds_are_valid() {
    for seed in SEEDS {
        assert!(parse(seed, SOURCE).is_ok(), "{seed}: {:?}", parse(seed, SOURCE).err().map(|p| p.to_string()));
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mutated_configs_never_panic_and_problems_say_where(text in cairn_mutate::mutated_text(SEEDS, 6)) {
        check(&text)?;
    }

    #[test]
    fn arbitrary_text_never_panics(text in any_text(300)) {
        check(&text)?;
    }
}
