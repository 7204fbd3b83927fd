//! Which config is in force this boot: STATE's, a source's, or none.

use crate::sources::Found;
use crate::store::{Store, Stored};
use cairn_model::config::{self, MachineConfig};

type Notes = Vec<(String, String)>;

/// The config in force, its source and generation.
/// `stored` is what `store.current()` read: the caller needs it too, and
/// STATE is read once.
pub fn decide(store: &Store, stored: std::io::Result<Option<Stored>>, found: Option<Found>, notes: &mut Notes) -> Option<(MachineConfig, String, u64)> {
    let stored = match stored {
        Ok(s) => s,
        Err(e) => {
            notes.push(("error".into(), format!("cannot read the machine config on STATE: {e}")));
            None
        }
    };
    match (found, stored) {
        (Some(f), Some(s)) if f.instance_id.is_some() && f.instance_id != s.instance_id => {
            notes.push((
                "info".into(),
                format!(
                    "{} gives instance id {}, STATE's config was for {}: a new machine, provisioned afresh",
                    f.source,
                    f.instance_id.as_deref().unwrap_or("-"),
                    s.instance_id.as_deref().unwrap_or("none")
                ),
            ));
            take(store, f, notes).or_else(|| in_force(store, s, notes))
        }
        (Some(f), Some(s)) => {
            if f.text != s.text {
                notes.push((
                    "info".into(),
                    format!("{} has a different config; STATE's generation {} stays in force (after the first boot STATE is the source of truth)", f.source, s.generation),
                ));
            }
            in_force(store, s, notes)
        }
        (Some(f), None) => take(store, f, notes),
        (None, Some(s)) => in_force(store, s, notes),
        (None, None) => None,
    }
}

/// Checks a source's config and, if good, keeps it as a new generation.
fn take(store: &Store, f: Found, notes: &mut Notes) -> Option<(MachineConfig, String, u64)> {
    match config::parse(&f.text, f.source) {
        Ok(c) => match store.commit(&f.text, f.source, f.instance_id.as_deref()) {
            Ok(n) => Some((c, f.source.to_string(), n)),
            Err(e) => {
                // Applied for this boot even so: it is valid, only not kept.
                notes.push(("error".into(), format!("cannot keep the machine config on STATE: {e}; applied for this boot only")));
                Some((c, f.source.to_string(), 0))
            }
        },
        Err(problems) => {
            let n = problems.0.len();
            notes.push(("error".into(), format!("machine config from {} refused, {n} problem{}; not applied:", f.source, if n == 1 { "" } else { "s" })));
            for p in problems.0 {
                notes.push(("error".into(), format!("  {p}")));
            }
            None
        }
    }
}

/// STATE's generation; one that no longer checks (written by an older Cairn)
/// gives way to the newest older one that does.
fn in_force(store: &Store, s: Stored, notes: &mut Notes) -> Option<(MachineConfig, String, u64)> {
    let mut candidates = vec![s.generation];
    candidates.extend(store.generations().into_iter().rev().filter(|g| *g < s.generation));
    for g in candidates {
        let Some(st) = (if g == s.generation { Some(s.clone()) } else { store.load(g) }) else { continue };
        match config::parse(&st.text, &format!("generation {g}")) {
            Ok(c) => return Some((c, st.source, g)),
            Err(p) => notes.push(("error".into(), format!("STATE's machine config generation {g} no longer checks: {p}"))),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str, iid: Option<&str>) -> Found {
        Found { source: "nocloud", text: text.into(), instance_id: iid.map(str::to_string) }
    }

    fn store(name: &str) -> (Store, std::path::PathBuf) {
        let d = std::env::temp_dir().join(format!("cairn-decide-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        (Store::new(&d), d)
    }

    #[test]
    fn first_boot_keeps_the_source_and_later_boots_need_no_source() {
        let (s, d) = store("first");
        let mut notes = Vec::new();
        let (c, src, g) = decide(&s, s.current(), Some(found("version = 1\nhostname = \"a\"\n", Some("i-1"))), &mut notes).unwrap();
        assert_eq!((c.hostname.as_deref(), src.as_str(), g), (Some("a"), "nocloud", 1));
        let (c, _, g) = decide(&s, s.current(), None, &mut notes).unwrap();
        assert_eq!((c.hostname.as_deref(), g), (Some("a"), 1), "the source gone, STATE's config stays");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_new_instance_id_provisions_afresh_and_the_same_one_does_not() {
        let (s, d) = store("iid");
        let mut notes = Vec::new();
        decide(&s, s.current(), Some(found("version = 1\nhostname = \"a\"\n", Some("i-1"))), &mut notes).unwrap();
        let (c, _, g) = decide(&s, s.current(), Some(found("version = 1\nhostname = \"b\"\n", Some("i-1"))), &mut notes).unwrap();
        assert_eq!((c.hostname.as_deref(), g), (Some("a"), 1));
        let (c, _, g) = decide(&s, s.current(), Some(found("version = 1\nhostname = \"b\"\n", Some("i-2"))), &mut notes).unwrap();
        assert_eq!((c.hostname.as_deref(), g), (Some("b"), 2));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_bad_config_is_never_applied_and_the_last_good_one_stays() {
        let (s, d) = store("bad");
        let mut notes = Vec::new();
        assert!(decide(&s, s.current(), Some(found("version = 1\nhostnme = \"a\"\n", None)), &mut notes).is_none());
        assert!(notes.iter().any(|(_, m)| m.contains("hostnme: unknown key")), "{notes:?}");
        assert!(s.current().unwrap().is_none(), "nothing kept");
        decide(&s, s.current(), Some(found("version = 1\nhostname = \"good\"\n", Some("i-1"))), &mut notes).unwrap();
        let (c, _, g) = decide(&s, s.current(), Some(found("version = 1\nmtu = 3\n", Some("i-2"))), &mut notes).unwrap();
        assert_eq!((c.hostname.as_deref(), g), (Some("good"), 1), "a new instance's bad config keeps the last good one");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
