use super::{any_text, config};
use crate::service::parse;
use proptest::prelude::*;

const FILE: &str = "/var/lib/cairn/services/fuzz.toml";

/// Valid specs to start mutations from: the shipped ones, and the keys
/// they do not use.
const SEEDS: &[&str] = &[
    include_str!("../../../services/chrony/service.toml"),
    include_str!("../../../services/admin/service.toml"),
    include_str!("../../../tests/fixtures/services/never-healthy/service.toml"),
    "image = \"docker.io/library/nginx:1\"\ncommand = [\"/usr/sbin/nginx\"]\nenv = { A = \"1\", B_C = \"x y\" }\n\
     user = 1\ngroup = 2\nworking_dir = \"/srv\"\nseccomp = \"default\"\n\
     [depends_on]\ndb = \"healthy\"\n[health]\nhttp = \"http://127.0.0.1:8080/h\"\ntimeout_ms = 300\nretries = 3\n\
     [limits]\ncpu = 1.5\nmemory_max = \"1G\"\n[restart]\npolicy = \"on-failure\"\ninitial_delay_ms = 50\nmax_delay_ms = 800\n",
];

fn check(text: &str) -> Result<(), TestCaseError> {
    match parse(text, FILE) {
        Ok(spec) => {
            // A spec that is accepted also makes an OCI config.
            let _ = crate::bundle::oci_config(&spec, "/rootfs", "/cairn/fuzz");
        }
        Err(e) => {
            prop_assert_eq!(e.file.as_str(), FILE);
            prop_assert!(!e.message.trim().is_empty(), "{e:?}");
            prop_assert!(e.to_string().contains(FILE), "{e}");
        }
    }
    Ok(())
}

#[test]
fn the_seeds_are_valid() {
    for seed in SEEDS {
        assert!(parse(seed, FILE).is_ok(), "{seed}: {:?}", parse(seed, FILE));
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mutated_specs_never_panic_and_errors_name_the_file(text in cairn_mutate::mutated_text(SEEDS, 6)) {
        check(&text)?;
    }

    #[test]
    fn arbitrary_text_never_panics(text in any_text(300)) {
        check(&text)?;
    }
}
