// Tests fail by panicking; unwrap says where.
#![allow(clippy::unwrap_used)]

use super::*;
use std::collections::VecDeque;

/// Records what the supervisor asks of the machine. Containers are signalled
/// and deleted through runtime calls (children with pids of their own);
/// SIGKILL to a service ends it at the next reap.
#[derive(Default)]
struct Fake {
    next_pid: i32,
    fail: bool,
    started: Vec<String>,
    /// (service, signal) as asked of `signal`.
    signals: Vec<(String, i32)>,
    /// (pid, what) for every runtime call started.
    calls: Vec<(i32, String)>,
    /// (pid, signal) sent straight to a child.
    kills: Vec<(i32, i32)>,
    /// (service, check pid) of late exec checks ended.
    checks_killed: Vec<(String, i32)>,
    /// Exits the next reap hands out.
    exits: VecDeque<(i32, ExitStatus)>,
    /// Services whose pid is known, to end them on SIGKILL.
    pids: Vec<(String, i32)>,
}

impl Fake {
    fn pid(&mut self) -> i32 {
        self.next_pid += 1;
        self.next_pid
    }

    fn call(&mut self, what: String) -> i32 {
        let pid = self.pid();
        self.calls.push((pid, what));
        pid
    }
}

impl Spawn for Fake {
    fn spawn(&mut self, spec: &Spec) -> io::Result<Spawned> {
        if self.fail {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        let pid = self.pid();
        self.started.push(spec.name.clone());
        self.pids.push((spec.name.clone(), pid));
        Ok(Spawned { pid, out: Vec::new() })
    }
    fn exec_check(&mut self, _: &Spec, _: &[String]) -> io::Result<i32> {
        Ok(self.pid())
    }
    fn kill_check(&mut self, spec: &Spec, pid: i32) {
        self.checks_killed.push((spec.name.clone(), pid));
    }
    fn check_done(&mut self, _: &Spec) {}
    fn signal(&mut self, spec: &Spec, pid: i32, sig: i32) -> Option<i32> {
        self.signals.push((spec.name.clone(), sig));
        if sig == libc::SIGKILL {
            self.exits.push_back((pid, ExitStatus::Signal(libc::SIGKILL)));
        }
        spec.container.is_some().then(|| self.call(format!("kill {} {sig}", spec.name)))
    }
    fn cleanup(&mut self, spec: &Spec) -> Option<i32> {
        spec.container.is_some().then(|| self.call(format!("delete {}", spec.name)))
    }
    fn kill(&mut self, pid: i32, sig: i32) {
        self.kills.push((pid, sig));
    }
    fn reap(&mut self, reg: &mut Registry) -> Vec<Exit> {
        self.exits.drain(..).filter_map(|(pid, status)| reg.take(pid, status)).collect()
    }
}

fn spec(name: &str) -> Spec {
    Spec { service: true, ..Spec::process(name, vec!["/bin/true".into()]) }
}

fn container(name: &str) -> Spec {
    Spec { container: Some(format!("cairn-{name}")), ..spec(name) }
}

fn exit(reg: &mut Registry, pid: i32, status: ExitStatus) -> Exit {
    reg.take(pid, status).unwrap()
}

fn state(sup: &Supervisor, name: &str, now: Instant) -> (String, u32) {
    let row = sup.rows(now).into_iter().find(|r| r.name == name).unwrap();
    (row.state, row.restarts)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let b = Backoff::default();
    let delays: Vec<_> = (0..8).map(|n| b.delay(n).as_millis()).collect();
    assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    assert_eq!(b.delay(u32::MAX), b.cap);
}

#[test]
fn quick_exits_back_off_and_a_stable_run_resets() {
    let t0 = Instant::now();
    let mut sup = Supervisor::new();
    let mut reg = Registry::default();
    let mut fake = Fake { next_pid: 100, ..Default::default() };
    sup.add(spec("a"), t0);
    sup.add(spec("b"), t0);
    sup.start_due(t0, &mut fake, &mut reg);
    assert_eq!(fake.started, ["a", "b"]);
    assert_eq!(sup.running(), 2);

    let e = exit(&mut reg, 101, ExitStatus::Code(3));
    sup.on_exit(e, t0 + secs(1), &mut fake, &mut reg);
    assert_eq!(sup.next_deadline(), Some(t0 + Duration::from_millis(1500)));
    sup.start_due(t0 + Duration::from_millis(1400), &mut fake, &mut reg);
    assert_eq!(fake.started.len(), 2, "not before its back-off");
    sup.start_due(t0 + Duration::from_millis(1500), &mut fake, &mut reg);
    assert_eq!(fake.started.len(), 3);

    let e = exit(&mut reg, 103, ExitStatus::Signal(9));
    let t = t0 + Duration::from_millis(1600);
    sup.on_exit(e, t, &mut fake, &mut reg);
    assert_eq!(sup.next_deadline(), Some(t + secs(1)), "second quick exit doubles");

    sup.start_due(t + secs(1), &mut fake, &mut reg);
    let e = exit(&mut reg, 104, ExitStatus::Code(1));
    let t = t + secs(60);
    sup.on_exit(e, t, &mut fake, &mut reg);
    assert_eq!(sup.next_deadline(), Some(t + Duration::from_millis(500)), "a long run resets");
}

#[test]
fn restart_policies() {
    let t0 = Instant::now();
    let mut sup = Supervisor::new();
    let mut reg = Registry::default();
    let mut fake = Fake::default();
    sup.add(Spec { restart: RestartPolicy::OnFailure, ..spec("onf") }, t0);
    sup.add(Spec { restart: RestartPolicy::Never, ..spec("never") }, t0);
    sup.start_due(t0, &mut fake, &mut reg);
    let e = exit(&mut reg, 1, ExitStatus::Code(0));
    sup.on_exit(e, t0, &mut fake, &mut reg);
    let e = exit(&mut reg, 2, ExitStatus::Code(1));
    sup.on_exit(e, t0, &mut fake, &mut reg);
    assert_eq!(sup.next_deadline(), None, "clean exit under on-failure and any exit under never end it");
    let rows = sup.rows(t0);
    assert_eq!(rows[0].state, "stopped (status 0)");
    assert_eq!(rows[1].state, "stopped (status 1)");
    assert!(!sup.ready(), "a failed one-shot is not up");
    assert_eq!(sup.not_ready(), ["never (not running; last exit status 1)"]);
}

#[test]
fn a_failed_spawn_is_retried_later() {
    let t0 = Instant::now();
    let mut sup = Supervisor::new();
    let mut reg = Registry::default();
    let mut fake = Fake { fail: true, ..Default::default() };
    sup.add(spec("a"), t0);
    sup.start_due(t0, &mut fake, &mut reg);
    assert_eq!(sup.running(), 0);
    assert_eq!(sup.next_deadline(), Some(t0 + Duration::from_millis(500)));
}

/// H4: a restart in progress is that process's state alone; another that
/// exits meanwhile is restarted by its own policy.
#[test]
fn restart_returns_at_once_and_another_exit_is_still_restarted() {
    let t0 = Instant::now();
    let mut sup = Supervisor::new();
    let mut reg = Registry::default();
    let mut fake = Fake::default();
    sup.add(Spec { stop_timeout: secs(10), ..spec("app") }, t0);
    sup.add(spec("other"), t0);
    sup.start_due(t0, &mut fake, &mut reg);

    sup.restart("app", t0, &mut fake, &mut reg).unwrap();
    assert_eq!(fake.signals, [("app".to_string(), libc::SIGTERM)]);
    assert_eq!(state(&sup, "app", t0), ("stopping".into(), 1));
    assert_eq!(sup.next_deadline(), Some(t0 + secs(10)), "the stop's deadline is the loop's");

    let t1 = t0 + secs(1);
    let e = exit(&mut reg, 2, ExitStatus::Code(1));
    sup.on_exit(e, t1, &mut fake, &mut reg);
    assert_eq!(state(&sup, "other", t1), ("restarting".into(), 1));
    sup.start_due(t1 + Duration::from_millis(500), &mut fake, &mut reg);
    assert_eq!(fake.started, ["app", "other", "other"], "other is back while app is still stopping");

    let t2 = t0 + secs(2);
    let e = exit(&mut reg, 1, ExitStatus::Signal(libc::SIGTERM));
    sup.on_exit(e, t2, &mut fake, &mut reg);
    sup.start_due(t2, &mut fake, &mut reg);
    assert_eq!(fake.started, ["app", "other", "other", "app"], "app starts again at once, no back-off");
    assert_eq!(state(&sup, "app", t2), ("running".into(), 1));
    assert_eq!(state(&sup, "other", t2), ("running".into(), 1));
}

/// H5: a service that ignores its stop signal is killed at its deadline by
/// the loop, never waited for inside it.
#[test]
fn a_service_that_ignores_its_stop_signal_is_killed_at_the_deadline() {
    let t0 = Instant::now();
    let mut sup = Supervisor::new();
    let mut reg = Registry::default();
    let mut fake = Fake::default();
    sup.add(Spec { stop_timeout: secs(30), ..spec("stubborn") }, t0);
    sup.start_due(t0, &mut fake, &mut reg);
    sup.restart("stubborn", t0, &mut fake, &mut reg).unwrap();
    sup.advance(t0 + secs(29), &mut fake, &mut reg);
    assert_eq!(fake.signals.len(), 1, "only the stop signal before the deadline");
    sup.advance(t0 + secs(30), &mut fake, &mut reg);
    assert_eq!(fake.signals[1], ("stubborn".to_string(), libc::SIGKILL));
    assert_eq!(sup.next_deadline(), Some(t0 + secs(30) + KILL_GRACE));
    for e in fake.reap(&mut reg) {
        sup.on_exit(e, t0 + secs(30), &mut fake, &mut reg);
    }
    sup.start_due(t0 + secs(30), &mut fake, &mut reg);
    assert_eq!(fake.started, ["stubborn", "stubborn"]);
    assert_eq!(state(&sup, "stubborn", t0 + secs(30)), ("running".into(), 1));
}

/// M3: `crun kill` is a child with a deadline: killed when late, and when it
/// fails the process is signalled directly.
#[test]
fn runtime_calls_are_owned_children_with_deadlines() {
    let t0 = Instant::now();
    let mut sup = Supervisor::new();
    let mut reg = Registry::default();
    let mut fake = Fake::default();
    sup.add(container("web"), t0);
    sup.start_due(t0, &mut fake, &mut reg);
    sup.restart("web", t0, &mut fake, &mut reg).unwrap();
    let (call, what) = fake.calls[0].clone();
    assert_eq!(what, "kill web 15");
    sup.advance(t0 + RUNTIME_DEADLINE - Duration::from_millis(1), &mut fake, &mut reg);
    assert!(fake.kills.is_empty());
    sup.advance(t0 + RUNTIME_DEADLINE, &mut fake, &mut reg);
    assert_eq!(fake.kills, [(call, libc::SIGKILL)], "a late runtime call is killed");
    let e = exit(&mut reg, call, ExitStatus::Signal(libc::SIGKILL));
    assert_eq!(e.owner, Owner::Runtime(0));
    sup.on_exit(e, t0 + RUNTIME_DEADLINE, &mut fake, &mut reg);
    assert_eq!(fake.kills[1], (1, libc::SIGTERM), "the stop signal goes to the process itself");
}

/// A container's id is free only once `crun delete` is done: the next start
/// waits for it, and a delete that hangs is killed at its deadline.
fn crashed_container(t0: Instant) -> (Supervisor, Registry, Fake) {
    let mut sup = Supervisor::new();
    let mut reg = Registry::default();
    let mut fake = Fake::default();
    sup.add(container("web"), t0);
    sup.start_due(t0, &mut fake, &mut reg);
    let e = exit(&mut reg, 1, ExitStatus::Code(1));
    sup.on_exit(e, t0, &mut fake, &mut reg);
    (sup, reg, fake)
}

#[test]
fn a_restart_waits_for_the_container_delete() {
    let t0 = Instant::now();
    let (mut sup, mut reg, mut fake) = crashed_container(t0);
    let (delete, what) = fake.calls[0].clone();
    assert_eq!(what, "delete web");
    sup.start_due(t0 + secs(1), &mut fake, &mut reg);
    assert_eq!(fake.started.len(), 1, "not while its delete runs");
    assert_eq!(sup.next_deadline(), Some(t0 + RUNTIME_DEADLINE), "the delete's deadline, not the start that cannot happen");
    sup.advance(t0 + RUNTIME_DEADLINE, &mut fake, &mut reg);
    assert_eq!(fake.kills, [(delete, libc::SIGKILL)]);
    let e = exit(&mut reg, delete, ExitStatus::Signal(libc::SIGKILL));
    sup.on_exit(e, t0 + RUNTIME_DEADLINE, &mut fake, &mut reg);
    sup.start_due(t0 + RUNTIME_DEADLINE, &mut fake, &mut reg);
    assert_eq!(fake.started.len(), 2);
}

/// A delete that outlives even its SIGKILL holds the service back no longer
/// than the grace after it.
#[test]
fn a_stuck_runtime_call_is_given_up() {
    let t0 = Instant::now();
    let (mut sup, mut reg, mut fake) = crashed_container(t0);
    sup.advance(t0 + RUNTIME_DEADLINE, &mut fake, &mut reg);
    let t = t0 + RUNTIME_DEADLINE + KILL_GRACE;
    sup.advance(t, &mut fake, &mut reg);
    sup.start_due(t, &mut fake, &mut reg);
    assert_eq!(fake.started.len(), 2);
}

fn exec_health() -> HealthSpec {
    HealthSpec {
        check: Check::Exec(vec!["/bin/true".into()]),
        interval: secs(1),
        timeout: secs(1),
        retries: 2,
        start_period: Duration::ZERO,
    }
}

fn tcp_health(timeout: Duration) -> HealthSpec {
    HealthSpec { check: Check::Tcp { host: "127.0.0.1".into(), port: 1 }, timeout, ..exec_health() }
}

#[test]
fn depends_on_healthy_waits_for_the_check() {
    let t0 = Instant::now();
    let mut sup = Supervisor::new();
    let mut reg = Registry::default();
    let mut fake = Fake::default();
    sup.add(Spec { health: Some(exec_health()), ..container("db") }, t0);
    sup.add(Spec { depends: vec![("db".into(), Condition::Healthy)], ..spec("app") }, t0);
    sup.start_due(t0, &mut fake, &mut reg);
    assert_eq!(fake.started, ["db"], "app waits for db to be healthy");
    assert!(!sup.ready());
    assert_eq!(sup.not_ready(), ["db (starting)", "app (waiting for db to be healthy)"]);
    let t1 = t0 + Duration::from_millis(600);
    assert!(sup.checks_due(t1, &mut fake, &mut reg, 8).is_empty(), "exec checks are children, not probes");
    let e = exit(&mut reg, 2, ExitStatus::Code(0));
    sup.on_exit(e, t1, &mut fake, &mut reg);
    sup.start_due(t1, &mut fake, &mut reg);
    assert_eq!(fake.started, ["db", "app"]);
    assert!(sup.ready());
}

#[test]
fn failed_checks_make_a_service_unhealthy_after_its_retries() {
    let t0 = Instant::now();
    let mut sup = Supervisor::new();
    let mut reg = Registry::default();
    let mut fake = Fake::default();
    sup.add(Spec { health: Some(exec_health()), ..container("s") }, t0);
    sup.start_due(t0, &mut fake, &mut reg);
    let mut t = t0;
    for round in 0..2 {
        t += secs(1);
        sup.checks_due(t, &mut fake, &mut reg, 8);
        let pid = fake.next_pid;
        let e = exit(&mut reg, pid, ExitStatus::Code(1));
        sup.on_exit(e, t, &mut fake, &mut reg);
        let h = sup.rows(t)[0].health;
        assert_eq!(h, if round == 0 { "starting" } else { "unhealthy" });
    }
}

/// L7: a late exec check is ended with what it started in the container.
#[test]
fn a_late_exec_check_is_killed_and_counts_as_failed() {
    let t0 = Instant::now();
    let mut sup = Supervisor::new();
    let mut reg = Registry::default();
    let mut fake = Fake::default();
    sup.add(Spec { health: Some(HealthSpec { retries: 1, ..exec_health() }), ..container("s") }, t0);
    sup.start_due(t0, &mut fake, &mut reg);
    let t1 = t0 + Duration::from_millis(500);
    sup.checks_due(t1, &mut fake, &mut reg, 8);
    let check = fake.next_pid;
    assert_eq!(sup.next_deadline(), Some(t1 + secs(1)));
    sup.advance(t1 + secs(1), &mut fake, &mut reg);
    assert_eq!(fake.checks_killed, [("s".to_string(), check)]);
    assert_eq!(sup.rows(t1)[0].health, "unhealthy");
    // Its exit, when it comes, is no longer an outcome.
    let e = exit(&mut reg, check, ExitStatus::Code(0));
    sup.on_exit(e, t1 + secs(1), &mut fake, &mut reg);
    assert_eq!(sup.rows(t1)[0].health, "unhealthy");
}

/// M2: probes start only as slots allow; each deadline counts from its start.
#[test]
fn probes_start_as_slots_allow_with_deadlines_from_their_start() {
    let t0 = Instant::now();
    let mut sup = Supervisor::new();
    let mut reg = Registry::default();
    let mut fake = Fake::default();
    for name in ["a", "b", "c"] {
        sup.add(Spec { health: Some(HealthSpec { retries: 1, ..tcp_health(secs(2)) }), ..spec(name) }, t0);
    }
    sup.start_due(t0, &mut fake, &mut reg);
    let t1 = t0 + Duration::from_millis(500);
    let first = sup.checks_due(t1, &mut fake, &mut reg, 2);
    assert_eq!(first.iter().map(|r| r.service).collect::<Vec<_>>(), [0, 1]);
    assert!(sup.checks_due(t1, &mut fake, &mut reg, 8).is_empty(), "one probe per service in flight, and c waits");
    let t2 = t1 + health::NO_ROOM_RETRY;
    let second = sup.checks_due(t2, &mut fake, &mut reg, 1);
    assert_eq!(second.iter().map(|r| r.service).collect::<Vec<_>>(), [2]);
    sup.on_check(0, first[0].seq, true, "ok", t1);
    sup.advance(t1 + secs(2), &mut fake, &mut reg);
    let health = |sup: &Supervisor| sup.rows(t1).iter().map(|r| r.health).collect::<Vec<_>>();
    assert_eq!(health(&sup), ["healthy", "unhealthy", "starting"], "c's deadline counts from when it started");
    sup.advance(t2 + secs(2), &mut fake, &mut reg);
    assert_eq!(health(&sup), ["healthy", "unhealthy", "unhealthy"]);
}

#[test]
fn stop_all_goes_in_reverse_keeps_ticking_and_nothing_restarts() {
    let t0 = Instant::now();
    let mut sup = Supervisor::new();
    let mut reg = Registry::default();
    let mut fake = Fake::default();
    sup.add(Spec { stop_timeout: Duration::from_millis(30), ..spec("first") }, t0);
    sup.add(Spec { stop_signal: libc::SIGINT, stop_timeout: Duration::from_millis(30), ..spec("second") }, t0);
    sup.start_due(t0, &mut fake, &mut reg);
    let mut ticks = 0;
    sup.stop_all(&mut fake, &mut reg, &mut || ticks += 1);
    let names: Vec<_> = fake.signals.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    assert_eq!(
        names,
        [("second", libc::SIGINT), ("second", libc::SIGKILL), ("first", libc::SIGTERM), ("first", libc::SIGKILL)]
    );
    assert!(ticks >= 4, "the watchdog is petted while it waits ({ticks} ticks)");
    assert_eq!(sup.running(), 0);
    assert_eq!(sup.next_deadline(), None);
    assert!(sup.restart("first", Instant::now(), &mut fake, &mut reg).is_err());
}

/// A shutdown that meets a restart in progress stops the process for good.
#[test]
fn stop_all_takes_over_a_restart_in_progress() {
    let t0 = Instant::now();
    let mut sup = Supervisor::new();
    let mut reg = Registry::default();
    let mut fake = Fake::default();
    sup.add(Spec { stop_timeout: Duration::from_millis(20), ..spec("a") }, t0);
    sup.start_due(t0, &mut fake, &mut reg);
    sup.restart("a", t0, &mut fake, &mut reg).unwrap();
    sup.stop_all(&mut fake, &mut reg, &mut || {});
    assert_eq!(fake.started, ["a"]);
    assert_eq!(sup.running(), 0);
}

#[test]
fn a_new_service_set_starts_stops_and_restarts_only_what_changed() {
    let t0 = Instant::now();
    let mut sup = Supervisor::new();
    let mut reg = Registry::default();
    let mut fake = Fake { next_pid: 100, ..Default::default() };
    for n in ["keep", "gone", "edit"] {
        sup.add(container(n), t0);
    }
    sup.add(spec("containerd"), t0);
    sup.start_due(t0, &mut fake, &mut reg);
    assert_eq!(sup.running(), 4);

    let edited = Spec { argv: vec!["/bin/other".into()], ..container("edit") };
    let ch = sup.reconcile(vec![container("keep"), edited.clone(), container("new")], &[], t0, &mut fake, &mut reg);
    assert_eq!(ch, reconcile::Changes { started: vec!["new".into()], stopped: vec!["gone".into()], restarted: vec!["edit".into()] });
    assert_eq!(fake.signals, [("gone".to_string(), libc::SIGTERM), ("edit".to_string(), libc::SIGTERM)], "keep and containerd untouched");
    // Both go down; the container deletes finish; the edited one starts with its new spec.
    for (name, pid) in [("gone", 102), ("edit", 103)] {
        let e = exit(&mut reg, pid, ExitStatus::Signal(libc::SIGTERM));
        sup.on_exit(e, t0, &mut fake, &mut reg);
        assert!(fake.calls.iter().any(|(_, w)| w == &format!("delete {name}")));
    }
    for (pid, _) in fake.calls.clone().iter().filter(|(_, w)| w.starts_with("delete")) {
        let e = exit(&mut reg, *pid, ExitStatus::Code(0));
        sup.on_exit(e, t0, &mut fake, &mut reg);
    }
    sup.start_due(t0, &mut fake, &mut reg);
    assert_eq!(fake.started, ["keep", "gone", "edit", "containerd", "edit", "new"]);
    assert_eq!(sup.procs[2].spec, edited);
    assert_eq!(state(&sup, "gone", t0).0, "disabled");
    assert!(sup.restart("gone", t0, &mut fake, &mut reg).is_err());
    assert!(!sup.not_ready().iter().any(|n| n.starts_with("gone")), "a retired service keeps nothing from being ready");

    // It comes back, and a service named to restart restarts with the same spec.
    let ch = sup.reconcile(vec![container("keep"), edited, container("new"), container("gone")], &["keep".into()], t0, &mut fake, &mut reg);
    assert_eq!((ch.started, ch.restarted, ch.stopped), (vec!["gone".to_string()], vec!["keep".to_string()], vec![]));
    sup.start_due(t0, &mut fake, &mut reg);
    assert_eq!(fake.started.last().map(String::as_str), Some("gone"));
}
