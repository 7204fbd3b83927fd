//! `modules.dep` as stage 1 and stage 2 read it from the image: whatever it
//! says, `load_order` never panics, lists each file once, and puts every
//! module's dependencies before it; a loop is an error naming the chain.
//! The modalias glob agrees with a plain recursive reading of the same rules
//! and never panics, whatever the pattern and the table.

use super::*;
use proptest::prelude::*;

/// A modules.dep over names m0..m9: each line a module and some others.
fn dep_text() -> impl Strategy<Value = String> {
    prop::collection::vec((0u8..10, prop::collection::vec(0u8..10, 0..4)), 0..12).prop_map(|lines| {
        lines
            .into_iter()
            .map(|(m, deps)| {
                let deps: Vec<String> = deps.iter().map(|d| format!("kernel/m{d}.ko")).collect();
                format!("kernel/m{m}.ko: {}\n", deps.join(" "))
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn load_orders_put_dependencies_first(text in dep_text(), want in 0u8..10) {
        let index = DepIndex::parse(&text);
        match index.load_order(&format!("m{want}"), &BTreeSet::new()) {
            Ok(order) => {
                let names: Vec<String> = order.iter().map(|p| module_name(p)).collect();
                let unique: BTreeSet<&String> = names.iter().collect();
                prop_assert_eq!(unique.len(), names.len(), "{:?}", names);
                prop_assert_eq!(names.last().cloned(), Some(format!("m{want}")));
                for (i, n) in names.iter().enumerate() {
                    for dep in &index.modules[n].1 {
                        prop_assert!(names[..i].contains(dep), "{n} before its dependency {dep}: {names:?}");
                    }
                }
            }
            Err(e) => prop_assert!(!e.to_string().trim().is_empty()),
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,300}", want in ".{0,20}") {
        let _ = DepIndex::parse(&text).load_order(&want, &BTreeSet::new());
    }
}

/// The plain recursive reading of a glob, to check the fast one against.
fn reference(pat: &[u8], text: &[u8]) -> bool {
    match pat.first() {
        None => text.is_empty(),
        Some(b'*') => (0..=text.len()).any(|skip| reference(&pat[1..], &text[skip..])),
        Some(b'?') => !text.is_empty() && reference(&pat[1..], &text[1..]),
        Some(b'[') => {
            let body_start = if matches!(pat.get(1), Some(b'!' | b'^')) { 2 } else { 1 };
            // The set ends at the first `]` after its first member; without
            // one the `[` is a plain byte.
            let Some(close) = (body_start + 1..pat.len()).find(|&i| pat[i] == b']') else {
                return text.first() == Some(&b'[') && reference(&pat[1..], &text[1..]);
            };
            let Some(&c) = text.first() else { return false };
            let body = &pat[body_start..close];
            let mut hit = false;
            let mut i = 0;
            while i < body.len() {
                if i + 2 < body.len() && body[i + 1] == b'-' {
                    hit |= body[i] <= c && c <= body[i + 2];
                    i += 3;
                } else {
                    hit |= body[i] == c;
                    i += 1;
                }
            }
            hit != (body_start == 2) && reference(&pat[close + 1..], &text[1..])
        }
        Some(&c) => text.first() == Some(&c) && reference(&pat[1..], &text[1..]),
    }
}

fn glob_pattern() -> impl Strategy<Value = String> {
    prop::collection::vec(prop_oneof!["a", "b", "c", "\\*", "\\?", "\\[ab\\]", "\\[!a\\]", "\\[a-b\\]", "\\["], 0..8)
        .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn glob_agrees_with_the_plain_reading(pat in glob_pattern(), text in "[abc\\[]{0,8}") {
        prop_assert_eq!(alias::glob(pat.as_bytes(), text.as_bytes()), reference(pat.as_bytes(), text.as_bytes()), "{} vs {}", pat, text);
    }

    #[test]
    fn a_text_matches_itself_and_a_star_matches_all(text in "[a-zA-Z0-9:]{0,40}") {
        prop_assert!(alias::glob(text.as_bytes(), text.as_bytes()));
        prop_assert!(alias::glob(b"*", text.as_bytes()));
        let prefixed = format!("{}*", &text[..text.len() / 2]);
        prop_assert!(alias::glob(prefixed.as_bytes(), text.as_bytes()));
    }

    #[test]
    fn arbitrary_patterns_and_tables_never_panic(pat in prop::collection::vec(any::<u8>(), 0..40), text in prop::collection::vec(any::<u8>(), 0..40), table in ".{0,300}") {
        let _ = alias::glob(&pat, &text);
        let t = alias::Table::parse(table);
        let mut out = Vec::new();
        t.matching(&String::from_utf8_lossy(&text), &mut out);
    }
}
