//! Property tests of the parsers in this crate that read what comes from the
//! network or the disk: the machine config (a URL, fw_cfg, a config disk),
//! the update manifest (a repository), the svcload wire
//! (another process), service specs (STATE). Arbitrary and mutated inputs
//! never panic and are refused with a message; what an encoder writes reads
//! back equal.

mod config;
mod manifest;
mod service;
mod wire;

use proptest::prelude::*;

/// Cases per property: enough to reach the corners in a second or two of a
/// debug build, so `make test` stays quick.
const CASES: u32 = 150;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(CASES)
}

/// Text of any characters, control characters and quotes included.
fn any_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..max).prop_map(|c| c.into_iter().collect())
}
