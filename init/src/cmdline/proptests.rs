//! The kernel command line as the boot loader hands it over: any bytes. No
//! panic, every warning says what it is about, the settings stay within
//! their ranges, and a word that is not UTF-8 costs that word alone.

use super::*;
use proptest::prelude::*;

/// A command line like the shipped one, every key with a valid value.
const VALID: &str = "console=ttyS0 quiet panic=5 lsm=landlock,lockdown,yama,integrity,bpf cairn.slot=a \
    cairn.verity_blocks=15000 cairn.verity_salt=00ff cairn.verity_root=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef \
    cairn.hostname=node-1 cairn.ip=10.0.2.50/24 cairn.gw=10.0.2.2 cairn.dns=1.1.1.1,9.9.9.9 cairn.iface=eth0 \
    cairn.net_timeout=10 cairn.stop_timeout=5 cairn.debug=shell cairn.debug_tty=ttyS1 cairn.log=debug \
    cairn.root_timeout=20 cairn.enable=admin cairn.disable=chrony cairn.runtime=runc cairn.modules=virtio_net \
    cairn.watchdog=60 cairn.health_timeout=120 \"cairn.hostname=quoted\"";

fn check(line: &[u8]) -> Result<(Settings, Vec<Warning>), TestCaseError> {
    let (s, warnings) = parse(line);
    for w in &warnings {
        prop_assert!(!w.to_string().trim().is_empty());
    }
    if let Some(h) = &s.hostname {
        prop_assert!(valid_hostname(h).is_ok(), "{h:?}");
    }
    if let Some(i) = &s.iface {
        prop_assert!((1..=15).contains(&i.len()) && !i.contains('/'), "{i:?}");
    }
    prop_assert!(!s.debug_tty.is_empty() && !s.debug_tty.contains('/'));
    for d in [s.net_timeout, s.stop_timeout, s.root_timeout, s.health_timeout, s.watchdog] {
        prop_assert!(d <= Duration::from_secs(3600));
    }
    if let Some(v) = &s.verity {
        prop_assert!(v.data_blocks > 0 && v.root_hash.len() == 64);
    }
    Ok((s, warnings))
}

#[test]
fn the_valid_line_gives_no_warning() {
    let (s, w) = parse(VALID);
    assert_eq!(w, []);
    assert_eq!((s.slot, s.hostname.as_deref()), (Some('a'), Some("quoted")));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_bytes(line in prop::collection::vec(any::<u8>(), 0..300)) {
        check(&line)?;
    }

    #[test]
    fn mutated_lines(line in cairn_mutate::mutated(vec![VALID.as_bytes().to_vec()], 8)) {
        check(&line)?;
    }

    /// One word made invalid UTF-8 is ignored with a warning, and the rest
    /// of the line reads as if the word were not there.
    #[test]
    fn a_word_that_is_not_utf8_costs_only_that_word(pick in any::<prop::sample::Index>(), at in any::<prop::sample::Index>(), bad in 0x80u8..=0xff) {
        let words: Vec<&str> = VALID.split(' ').filter(|w| !w.starts_with('"')).collect();
        let n = pick.index(words.len());
        let mut broken = words[n].as_bytes().to_vec();
        broken.insert(at.index(broken.len() + 1), bad);
        prop_assume!(std::str::from_utf8(&broken).is_err());
        let join = |middle: &[u8]| -> Vec<u8> {
            let mut line = words[..n].join(" ").into_bytes();
            line.push(b' ');
            line.extend_from_slice(middle);
            line.push(b' ');
            line.extend_from_slice(words[n + 1..].join(" ").as_bytes());
            line
        };
        let (with_bad, warnings) = check(&join(&broken))?;
        let (without, _) = check(&join(b""))?;
        prop_assert_eq!(with_bad, without);
        let named = warnings.iter().any(|w| matches!(w, Warning::NotUtf8 { .. }));
        prop_assert!(named, "no warning for the word: {:?}", warnings);
    }
}
