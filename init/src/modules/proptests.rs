//! `modules.dep` as stage 1 and stage 2 read it from the image: whatever it
//! says, `load_order` never panics, lists each file once, and puts every
//! module's dependencies before it; a loop is an error naming the chain.

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
