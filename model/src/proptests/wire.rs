use super::{any_text, config};
use crate::wire::{self, bounds, Check, Condition, HealthSpec, RestartPolicy, Unit};
use proptest::prelude::*;
use std::time::Duration;

fn within((min, max): (Duration, Duration)) -> impl Strategy<Value = Duration> {
    (min.as_millis() as u64..=max.as_millis() as u64).prop_map(Duration::from_millis)
}

fn words(max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(any_text(12), 1..max)
}

fn health() -> impl Strategy<Value = HealthSpec> {
    let check = prop_oneof![
        words(4).prop_map(Check::Exec),
        (any_text(12), any::<u16>()).prop_map(|(host, port)| Check::Tcp { host, port }),
        (any_text(12), any::<u16>(), any_text(12)).prop_map(|(host, port, path)| Check::Http { host, port, path }),
    ];
    (
        check,
        within(bounds::HEALTH_INTERVAL),
        within(bounds::HEALTH_TIMEOUT),
        bounds::HEALTH_RETRIES,
        within(bounds::START_PERIOD),
    )
        .prop_map(|(check, interval, timeout, retries, start_period)| HealthSpec {
            check,
            interval,
            timeout,
            retries,
            start_period,
        })
}

/// Units within the bounds PID 1 enforces, with any text in their strings.
fn unit() -> impl Strategy<Value = Unit> {
    let restart = prop::sample::select(vec![RestartPolicy::Always, RestartPolicy::OnFailure, RestartPolicy::Never]);
    let backoff = (within(bounds::BACKOFF), within(bounds::BACKOFF)).prop_map(|(a, b)| (a.min(b), a.max(b)));
    let dep = (any_text(8), prop::sample::select(vec![Condition::Started, Condition::Healthy]));
    (
        (any_text(12), words(5), prop::collection::vec((any_text(8), any_text(12)), 0..3)),
        (1..64i32, within(bounds::STOP_TIMEOUT), restart, backoff, within(bounds::STABLE_AFTER)),
        (prop::collection::vec(dep, 0..3), prop::option::of(any_text(12)), prop::option::of(health())),
    )
        .prop_map(|((name, argv, env), (stop_signal, stop_timeout, restart, (base, cap), stable_after), (depends, container, health))| Unit {
            name,
            argv,
            env,
            stop_signal,
            stop_timeout,
            restart,
            backoff_base: base,
            backoff_cap: cap,
            stable_after,
            depends,
            container,
            health,
        })
}

fn written(units: &[Unit], logs: &[(String, String)]) -> String {
    let mut text = String::new();
    for (level, msg) in logs {
        wire::log(&mut text, level, msg);
    }
    for u in units {
        wire::write(&mut text, u);
    }
    text
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn written_units_and_logs_read_back_equal(
        units in prop::collection::vec(unit(), 0..4),
        logs in prop::collection::vec((any_text(6), any_text(30)), 0..3),
    ) {
        let answer = wire::read(&written(&units, &logs));
        prop_assert_eq!(&answer.rejected, &Vec::<String>::new());
        prop_assert_eq!(answer.units, units);
        prop_assert_eq!(answer.logs, logs);
    }

    /// Whatever a broken or hostile loader prints, PID 1 gets units within
    /// its bounds, and a reason for everything it drops.
    #[test]
    fn mutated_answers_give_only_units_within_bounds(
        text in prop::collection::vec(unit(), 1..3)
            .prop_flat_map(|u| cairn_mutate::mutated_text(&[&written(&u, &[])], 8)),
    ) {
        let answer = wire::read(&text);
        for u in &answer.units {
            prop_assert_eq!(wire::check(u), Ok(()));
        }
        prop_assert!(answer.rejected.iter().all(|r| !r.trim().is_empty()));
    }

    #[test]
    fn arbitrary_text_never_panics(text in any_text(300)) {
        let answer = wire::read(&text);
        for u in &answer.units {
            prop_assert_eq!(wire::check(u), Ok(()));
        }
    }
}
