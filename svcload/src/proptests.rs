//! The spec model and PID 1 agree on bounds: whatever a spec file says, a
//! spec that `service::parse` accepts becomes a unit PID 1 takes
//! (`wire::check`), so one spec's odd value is refused in that spec alone and
//! never reaches the handoff.

use super::*;
use proptest::prelude::*;

/// Numbers near each bound, and any.
fn number() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0i64),
        Just(1),
        (0i64..=100),
        prop::sample::select(vec![9, 10, 99, 100, 101, 299, 300, 301, 3599, 3600, 3601, 86_400, 86_401, 3_600_000, 3_600_001]),
        any::<i64>(),
    ]
}

fn spec_text() -> impl Strategy<Value = String> {
    let keys = [
        "stop.timeout_s",
        "restart.initial_delay_ms",
        "restart.max_delay_ms",
        "restart.reset_after_s",
        "health.interval_ms",
        "health.timeout_ms",
        "health.retries",
        "health.start_period_ms",
    ];
    prop::collection::vec(prop::option::of(number()), keys.len()).prop_map(move |values| {
        let mut tables: Vec<(&str, String)> = Vec::new();
        for (key, value) in keys.iter().zip(values) {
            let (table, name) = key.split_once('.').unwrap_or(("", key));
            let Some(v) = value else { continue };
            match tables.iter_mut().find(|(t, _)| *t == table) {
                Some((_, body)) => body.push_str(&format!("{name} = {v}\n")),
                None => tables.push((table, format!("{name} = {v}\n"))),
            }
        }
        let mut text = "rootfs = \"/r\"\ncommand = [\"/bin/true\"]\n".to_string();
        for (table, body) in tables {
            let extra = if table == "health" { "exec = [\"/bin/true\"]\n" } else { "" };
            text.push_str(&format!("[{table}]\n{extra}{body}"));
        }
        text
    })
}

fn agrees(text: &str) -> Result<(), TestCaseError> {
    if let Ok(spec) = model::parse(text, "/var/lib/cairn/services/p.toml") {
        let unit = to_unit(&spec, "/run/cairn/services/p", "crun");
        prop_assert_eq!(wire::check(&unit), Ok(()), "{}", text);
        let mut written = String::new();
        wire::write(&mut written, &unit);
        prop_assert_eq!(wire::read(&written).units, vec![unit]);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn accepted_specs_make_units_pid1_takes(text in spec_text()) {
        agrees(&text)?;
    }

    #[test]
    fn mutated_shipped_specs_too(text in cairn_mutate::mutated_text(&[
        include_str!("../../services/chrony/service.toml"),
        include_str!("../../services/admin/service.toml"),
    ], 6)) {
        agrees(&text)?;
    }
}
