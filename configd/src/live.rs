//! Changing the config of a running machine: `apply`, `try`, `confirm`,
//! `rollback`, the revert when a try runs out, and `status`. cairn-init runs
//! these for `cairnctl config ...` and applies what the answer says
//! (hostname, log level, the service set); what this program can do itself
//! (sysctls, the updater's config, added service specs) it does here.
//!
//! Every change is a generation on STATE first (see `store`), then applied
//! live. What cannot change on a running machine is named as needing a
//! reboot: the difference between the generation the machine booted with
//! and the one in force.

use crate::apply;
use crate::pending::{now_unix, Refused, Try};
use crate::store::{Store, Stored};
use cairn_model::config::{self, handoff::Handoff, MachineConfig};
use std::path::Path;

/// Where the boot notes which generation it applied (gone at the next boot).
pub const BOOTED: &str = "/run/cairn/config/booted";
/// The network daemon: with it, network changes apply live.
const NETD: &str = "/usr/bin/cairn-netd";
/// The shortest and longest `try` timeouts.
pub const TRY_MIN_SECS: u64 = 10;
pub const TRY_MAX_SECS: u64 = 24 * 3600;

fn refused(h: &mut Handoff, why: impl Into<String>) {
    h.refused = true;
    h.say.push(why.into());
}

fn current_label(store: &Store) -> String {
    match store.current() {
        Ok(Some(s)) => format!("{}:{}", s.source, s.generation),
        _ => "none".into(),
    }
}

/// The config a generation holds; 0 or one that no longer checks is the defaults.
fn config_of(store: &Store, n: u64) -> MachineConfig {
    store.load(n).and_then(|s| config::parse(&s.text, &format!("generation {n}")).ok()).unwrap_or_else(defaults)
}

pub fn defaults() -> MachineConfig {
    // The model's tests keep this document valid.
    config::parse("version = 1\n", "defaults").expect("the empty config checks")
}

fn in_force(store: &Store) -> (u64, MachineConfig) {
    match store.current() {
        Ok(Some(s)) => (s.generation, config_of(store, s.generation)),
        _ => (0, defaults()),
    }
}

fn booted_generation() -> Option<u64> {
    std::fs::read_to_string(BOOTED).ok()?.trim().parse().ok()
}

/// Notes which generation this boot applied, for `status` and `apply`.
pub fn note_booted(generation: u64) {
    let path = Path::new(BOOTED);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(path, format!("{generation}\n"));
}

/// What differs between the config the machine booted with and `new` and
/// takes effect only at a boot.
pub fn reboot_needed(booted: &MachineConfig, new: &MachineConfig, netd: bool) -> Vec<String> {
    let mut out = Vec::new();
    // cairn-netd takes a new network live, but only where it runs before
    // and after: PID 1 starts it (or its own first-link path) at boot.
    let live = netd && apply::needs_netd(&booted.network) && apply::needs_netd(&new.network);
    if booted.network != new.network && !live {
        out.push("network".to_string());
    }
    if booted.modules != new.modules {
        out.push("modules".to_string());
    }
    // containerd is started by cairn-init itself at boot, not by the service loader.
    let containerd_off = |c: &MachineConfig| c.services.disable.iter().any(|d| d == "containerd");
    if containerd_off(booted) != containerd_off(new) {
        out.push("containerd".to_string());
    }
    // So is dockerd, and its modules and daemon.json are read once, at boot.
    if booted.docker != new.docker {
        out.push("docker".to_string());
    }
    out
}

/// What `new` changes on the running machine, in words for the operator.
fn live_changes(old: &MachineConfig, new: &MachineConfig) -> Vec<&'static str> {
    let mut out = Vec::new();
    if old.hostname != new.hostname {
        out.push("hostname");
    }
    if old.services != new.services || old.access.admin != new.access.admin {
        out.push("services");
    }
    if old.sysctl != new.sysctl {
        out.push("sysctl");
    }
    if old.update != new.update {
        out.push("update policy");
    }
    if old.logs.level != new.logs.level {
        out.push("log level");
    }
    if old.time.ntp != new.time.ntp {
        out.push("NTP servers");
    }
    if old.access.ssh_authorized_keys != new.access.ssh_authorized_keys {
        out.push("SSH keys");
    }
    out
}

/// Services that restart to take the change: added ones whose spec changed,
/// chrony for new NTP servers, the admin container for new SSH keys.
fn changed_services(old: &MachineConfig, new: &MachineConfig) -> Vec<String> {
    let mut out: Vec<String> =
        new.services.add_toml.iter().filter(|(name, text)| old.services.add_toml.get(*name).is_some_and(|t| t != *text)).map(|(n, _)| n.clone()).collect();
    if old.time.ntp != new.time.ntp {
        out.push("chrony".into());
    }
    if old.access.ssh_authorized_keys != new.access.ssh_authorized_keys {
        out.push("admin".into());
    }
    out
}

/// Applies `new` over `old` live and fills the answer: settings for PID 1,
/// what restarts, what needs a reboot.
fn go_live(h: &mut Handoff, old: &MachineConfig, new: &MachineConfig, paths: &apply::Paths<'_>) {
    let (args, notes) = apply::apply(new, paths);
    h.args = args;
    for (level, msg) in &notes {
        h.say.push(format!("{level}: {msg}"));
    }
    h.logs.extend(notes);
    h.restart = changed_services(old, new);
    // The network daemon's hook: cairn-init hands it the change.
    h.network_changed = old.network != new.network;
    let changes = live_changes(old, new);
    h.say.push(if changes.is_empty() { "nothing to change live".into() } else { format!("applied live: {}", changes.join(", ")) });
}

/// Shared end of every change: the reboot list against the booted config.
fn reboot_list(h: &mut Handoff, store: &Store, new: &MachineConfig) {
    let booted = booted_generation().map_or_else(defaults, |g| config_of(store, g));
    h.reboot = reboot_needed(&booted, new, Path::new(NETD).exists());
    if !h.reboot.is_empty() {
        h.say.push(format!("needs a reboot: {}", h.reboot.join(", ")));
    }
}

/// `cairn-config apply FILE` and `cairn-config try FILE SECS`.
pub fn apply_file(store: &Store, file: &str, try_secs: Option<u64>, paths: &apply::Paths<'_>) -> Handoff {
    let mut h = Handoff { config: current_label(store), ..Handoff::default() };
    if let Some(t) = Try::read(store.dir()).filter(|t| in_force(store).0 == t.generation) {
        refused(&mut h, format!("a try of generation {} is pending: `cairnctl config confirm` or `cairnctl config rollback` first", t.generation));
        h.try_secs = Some(t.deadline_unix.saturating_sub(now_unix()));
        return h;
    }
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            refused(&mut h, format!("cannot read {file}: {e}; nothing changed"));
            return h;
        }
    };
    let new = match config::parse(&text, file) {
        Ok(c) => c,
        Err(problems) => {
            let n = problems.0.len();
            refused(&mut h, format!("{file} refused, {n} problem{}; nothing changed:", if n == 1 { "" } else { "s" }));
            let lines: Vec<String> = problems.0.iter().map(ToString::to_string).collect();
            h.say.extend(lines.iter().cloned());
            let record = Refused { source: file.to_string(), at_unix: now_unix(), problems: lines };
            if let Err(e) = record.write(store.dir()) {
                h.logs.push(("warn".into(), format!("cannot keep the refused config's report: {e}")));
            }
            return h;
        }
    };
    let (old_gen, old) = in_force(store);
    let source = if try_secs.is_some() { "try" } else { "apply" };
    if let Some(secs) = try_secs {
        // The record first: a cut after the commit must find the try.
        let t = Try { generation: store.next_number(), previous: old_gen, timeout_secs: secs, boots_left: 1, deadline_unix: now_unix() + secs };
        if let Err(e) = t.write(store.dir()) {
            refused(&mut h, format!("cannot keep the try's record on STATE: {e}; nothing changed"));
            return h;
        }
    }
    let n = match store.commit(&text, source, None) {
        Ok(n) => n,
        Err(e) => {
            let _ = Try::remove(store.dir());
            refused(&mut h, format!("cannot keep the config on STATE: {e}; nothing changed"));
            return h;
        }
    };
    h.config = format!("{source}:{n}");
    h.logs.push(("info".into(), format!("machine config: generation {n} from {source} of {file} (was {old_gen})")));
    h.say.push(format!("generation {n} in force (was {old_gen})"));
    go_live(&mut h, &old, &new, paths);
    reboot_list(&mut h, store, &new);
    if let Some(secs) = try_secs {
        h.try_secs = Some(secs);
        h.say.push(format!("on trial: back to generation {old_gen} in {secs} s (and after one reboot) unless `cairnctl config confirm`"));
    }
    h
}

/// Puts generation `to` back in force in place of the one in force, live.
fn switch_to(store: &Store, h: &mut Handoff, to: u64, why: &str, paths: &apply::Paths<'_>) -> bool {
    let (from, old) = in_force(store);
    if let Err(e) = store.set_current(to) {
        refused(h, format!("cannot put generation {to} back in force: {e}; nothing changed"));
        return false;
    }
    h.config = current_label(store);
    let new = config_of(store, to);
    h.logs.push(("warn".into(), format!("machine config: back on generation {to} from {from} ({why})")));
    h.say.push(format!("generation {to} in force (was {from}): {why}"));
    go_live(h, &old, &new, paths);
    reboot_list(h, store, &new);
    true
}

/// The end of a try that was not confirmed: back to its previous generation.
pub fn revert(store: &Store, paths: &apply::Paths<'_>) -> Handoff {
    let mut h = Handoff { config: current_label(store), ..Handoff::default() };
    let Some(t) = Try::read(store.dir()) else {
        h.say.push("no try is pending".into());
        return h;
    };
    if in_force(store).0 == t.generation && !switch_to(store, &mut h, t.previous, &format!("the try of generation {} was not confirmed", t.generation), paths) {
        return h;
    }
    if let Err(e) = Try::remove(store.dir()) {
        h.logs.push(("error".into(), format!("cannot remove the try's record: {e}")));
    }
    h
}

/// `cairnctl config confirm`: the tried generation stays.
pub fn confirm(store: &Store) -> Handoff {
    let mut h = Handoff { config: current_label(store), ..Handoff::default() };
    match Try::read(store.dir()) {
        Some(t) if in_force(store).0 == t.generation => match Try::remove(store.dir()) {
            Ok(()) => {
                h.logs.push(("info".into(), format!("machine config: generation {} confirmed", t.generation)));
                h.say.push(format!("generation {} confirmed; it stays", t.generation));
            }
            Err(e) => {
                refused(&mut h, format!("cannot remove the try's record: {e}; the try is still pending"));
                h.try_secs = Some(t.deadline_unix.saturating_sub(now_unix()));
            }
        },
        _ => refused(&mut h, "no try is pending"),
    }
    h
}

/// `cairnctl config rollback`: a pending try ends at once; otherwise the
/// generation before the one in force comes back.
pub fn rollback(store: &Store, paths: &apply::Paths<'_>) -> Handoff {
    if Try::read(store.dir()).is_some_and(|t| in_force(store).0 == t.generation) {
        return revert(store, paths);
    }
    let mut h = Handoff { config: current_label(store), ..Handoff::default() };
    let (now, _) = in_force(store);
    // What was in force before this one (a reverted try is skipped that
    // way); generations kept by an older Cairn name none: the one before.
    let previous = store.load(now).and_then(|s| s.previous).filter(|p| *p == 0 || store.load(*p).is_some()).or_else(|| store.before(now));
    match previous.filter(|p| *p > 0) {
        Some(prev) => {
            switch_to(store, &mut h, prev, "cairnctl config rollback", paths);
        }
        None if now == 0 => refused(&mut h, "no machine config is in force; nothing to roll back to"),
        None => refused(&mut h, format!("generation {now} is the oldest kept; nothing to roll back to")),
    }
    h
}

/// At boot, before the generation in force is read: a try found after a
/// reboot gets this boot (once) or ends.
pub fn resume_try(store: &Store, h: &mut Handoff) {
    let Some(mut t) = Try::read(store.dir()) else { return };
    let named = store.current().ok().flatten().map(|s| s.generation);
    if named != Some(t.generation) {
        // Cut before the tried generation went in force, or after it was
        // reverted: nothing is on trial.
        let _ = Try::remove(store.dir());
        return;
    }
    if t.boots_left == 0 {
        match store.set_current(t.previous).and_then(|()| Try::remove(store.dir())) {
            Ok(()) => h.logs.push((
                "warn".into(),
                format!("machine config: the try of generation {} was not confirmed before a second reboot; back on generation {}", t.generation, t.previous),
            )),
            Err(e) => h.logs.push(("error".into(), format!("cannot end the try of generation {}: {e}", t.generation))),
        }
        return;
    }
    t.boots_left -= 1;
    t.deadline_unix = now_unix() + t.timeout_secs;
    if let Err(e) = t.write(store.dir()) {
        h.logs.push(("error".into(), format!("cannot count the try's boot ({e}); ending it")));
        let _ = store.set_current(t.previous).and_then(|()| Try::remove(store.dir()));
        return;
    }
    h.try_secs = Some(t.timeout_secs);
    h.logs.push((
        "warn".into(),
        format!(
            "machine config: generation {} is on trial after a reboot: back to generation {} in {} s unless `cairnctl config confirm`",
            t.generation, t.previous, t.timeout_secs
        ),
    ));
}

/// `cairnctl config status [--output json]`.
pub fn status(store: &Store, json: bool) -> Handoff {
    let mut h = Handoff { config: current_label(store), ..Handoff::default() };
    let current: Option<Stored> = store.current().ok().flatten();
    let (n, new) = in_force(store);
    let booted = booted_generation();
    let t = Try::read(store.dir()).filter(|t| t.generation == n);
    let refused_last = Refused::read(store.dir());
    let reboot = reboot_needed(&booted.map_or_else(defaults, |g| config_of(store, g)), &new, Path::new(NETD).exists());
    let now = now_unix();
    if json {
        let v = serde_json::json!({
            "generation": current.as_ref().map(|s| s.generation),
            "source": current.as_ref().map(|s| s.source.clone()),
            "booted_generation": booted,
            "generations": store.generations(),
            "try": t.as_ref().map(|t| serde_json::json!({
                "generation": t.generation,
                "previous": t.previous,
                "timeout_secs": t.timeout_secs,
                "boots_left": t.boots_left,
                "deadline_unix": t.deadline_unix,
                "seconds_left": t.deadline_unix.saturating_sub(now),
            })),
            "needs_reboot": reboot,
            "last_refused": refused_last.as_ref().map(|r| serde_json::json!({ "source": r.source, "at_unix": r.at_unix, "problems": r.problems })),
        });
        h.say.push(v.to_string());
        return h;
    }
    h.say.push(match &current {
        Some(s) => format!("generation:    {} (from {})", s.generation, s.source),
        None => "generation:    none (no machine config)".into(),
    });
    h.say.push(format!("booted with:   {}", booted.map_or("-".into(), |b| b.to_string())));
    let kept: Vec<String> = store.generations().iter().map(ToString::to_string).collect();
    h.say.push(format!("kept:          {}", if kept.is_empty() { "-".into() } else { kept.join(" ") }));
    h.say.push(match &t {
        Some(t) => format!(
            "pending try:   generation {}, back to {} in {} s unless confirmed ({} reboot{} left)",
            t.generation,
            t.previous,
            t.deadline_unix.saturating_sub(now),
            t.boots_left,
            if t.boots_left == 1 { "" } else { "s" }
        ),
        None => "pending try:   none".into(),
    });
    h.say.push(format!("needs reboot:  {}", if reboot.is_empty() { "nothing".into() } else { reboot.join(", ") }));
    match &refused_last {
        Some(r) => {
            h.say.push(format!("last refused:  {} ({} s ago), {} problem(s):", r.source, now.saturating_sub(r.at_unix), r.problems.len()));
            h.say.extend(r.problems.iter().map(|p| format!("  {p}")));
        }
        None => h.say.push("last refused:  none".into()),
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Machine {
        root: std::path::PathBuf,
    }

    impl Machine {
        fn new(name: &str) -> Machine {
            let root = std::env::temp_dir().join(format!("cairn-live-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(root.join("sys")).unwrap();
            Machine { root }
        }
        fn store(&self) -> Store {
            Store::new(&self.root.join("state"))
        }
        fn file(&self, name: &str, text: &str) -> String {
            let p = self.root.join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        }
        fn paths(&self) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
            (self.root.join("services"), self.root.join("net"), self.root.join("sys"), self.root.join("update"))
        }
    }

    impl Drop for Machine {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    const HELLO: &str = "version = 1\nhostname = \"a\"\n[services.add.hello]\nrootfs = \"/r\"\ncommand = [\"/bin/sh\"]\n";

    #[test]
    fn the_docker_engine_changes_at_the_next_boot() {
        let parse = |t: &str| config::parse(t, "t").unwrap();
        let none = parse("version = 1\n");
        assert_eq!(reboot_needed(&none, &parse("version = 1\n[docker]\n"), true), ["docker"]);
        assert_eq!(reboot_needed(&none, &parse("version = 1\n[cluster]\nrole = \"manager\"\n"), true), ["docker"]);
        assert!(reboot_needed(&none, &parse("version = 1\n[docker]\nenabled = false\n"), true).is_empty());
    }

    #[test]
    fn apply_keeps_a_generation_and_says_what_changes() {
        let m = Machine::new("apply");
        let (s, n, y, u) = m.paths();
        let p = apply::Paths { services: &s, sys_net: &n, proc_sys: &y, update_config: &u, network: &y.join("network.toml"), agent: &y.join("agent"), chrony: &y.join("chrony"), ssh_keys: &y.join("ssh"), ssh_host_keys: &y.join("ssh-host"), docker: &y.join("docker") };
        let store = m.store();
        let h = apply_file(&store, &m.file("one.toml", HELLO), None, &p);
        assert!(!h.refused, "{h:?}");
        assert_eq!(h.config, "apply:1");
        assert!(h.args.contains(&"cairn.hostname=a".to_string()), "{:?}", h.args);
        assert!(s.join("hello.toml").exists());
        let h = apply_file(&store, &m.file("two.toml", &HELLO.replace("/bin/sh", "/bin/ash").replace("\"a\"", "\"b\"")), None, &p);
        assert_eq!((h.config.as_str(), h.restart.as_slice()), ("apply:2", ["hello".to_string()].as_slice()));
        assert!(h.say.iter().any(|l| l == "applied live: hostname, services"), "{:?}", h.say);
        let h = apply_file(&store, &m.file("ntp.toml", "version = 1\nhostname = \"b\"\n[time]\nntp = [\"10.0.2.2\"]\n"), None, &p);
        assert_eq!(h.restart, ["chrony"], "only chrony restarts for new servers");
        assert_eq!(std::fs::read_to_string(y.join("chrony/cairn.sources")).unwrap(), "server 10.0.2.2 iburst\n");
        let h = apply_file(&store, &m.file("net.toml", "version = 1\nmodules = [\"dummy\"]\n[[network.links]]\nname = \"eth0\"\n"), None, &p);
        assert_eq!(h.reboot, ["network", "modules"], "no boot noted: the defaults booted");
        assert!(h.network_changed);
    }

    #[test]
    fn a_bad_config_changes_nothing_and_is_remembered() {
        let m = Machine::new("bad");
        let (s, n, y, u) = m.paths();
        let p = apply::Paths { services: &s, sys_net: &n, proc_sys: &y, update_config: &u, network: &y.join("network.toml"), agent: &y.join("agent"), chrony: &y.join("chrony"), ssh_keys: &y.join("ssh"), ssh_host_keys: &y.join("ssh-host"), docker: &y.join("docker") };
        let store = m.store();
        apply_file(&store, &m.file("one.toml", HELLO), None, &p);
        let bad = m.file("bad.toml", "version = 1\nhostnme = \"x\"\nmodules = 3\n[logs]\nlevel = \"loud\"\n");
        let h = apply_file(&store, &bad, None, &p);
        assert!(h.refused);
        assert_eq!(h.say.len(), 4, "{:?}", h.say);
        assert_eq!(store.generations(), [1]);
        assert_eq!(h.config, "apply:1");
        let r = Refused::read(store.dir()).unwrap();
        assert_eq!((r.source, r.problems.len()), (bad, 3));
        let st = status(&store, true);
        let v: serde_json::Value = serde_json::from_str(&st.say[0]).unwrap();
        assert_eq!(v["generation"], 1);
        assert_eq!(v["last_refused"]["problems"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn a_try_reverts_confirms_and_survives_one_reboot_only() {
        let m = Machine::new("try");
        let (s, n, y, u) = m.paths();
        let p = apply::Paths { services: &s, sys_net: &n, proc_sys: &y, update_config: &u, network: &y.join("network.toml"), agent: &y.join("agent"), chrony: &y.join("chrony"), ssh_keys: &y.join("ssh"), ssh_host_keys: &y.join("ssh-host"), docker: &y.join("docker") };
        let store = m.store();
        apply_file(&store, &m.file("one.toml", HELLO), None, &p);
        let two = m.file("two.toml", "version = 1\nhostname = \"tried\"\n");
        let h = apply_file(&store, &two, Some(60), &p);
        assert_eq!((h.config.as_str(), h.try_secs), ("try:2", Some(60)));
        assert!(apply_file(&store, &two, None, &p).refused, "no apply over a pending try");
        let h = revert(&store, &p);
        assert_eq!((h.config.as_str(), h.try_secs), ("apply:1", None));
        assert!(h.args.contains(&"cairn.hostname=a".to_string()));
        assert_eq!(Try::read(store.dir()), None);

        apply_file(&store, &two, Some(60), &p);
        assert!(!confirm(&store).refused);
        assert_eq!(revert(&store, &p).config, "try:3", "a confirmed try stays");
        assert!(confirm(&store).refused, "nothing left to confirm");

        // Across reboots: the first boot takes the try once, the second ends it.
        apply_file(&store, &two, Some(60), &p);
        let mut h = Handoff::default();
        resume_try(&store, &mut h);
        assert_eq!((h.try_secs, store.current().unwrap().unwrap().generation), (Some(60), 4));
        let mut h = Handoff::default();
        resume_try(&store, &mut h);
        assert_eq!((h.try_secs, store.current().unwrap().unwrap().generation), (None, 3));
        assert_eq!(Try::read(store.dir()), None);
    }

    #[test]
    fn a_try_record_without_its_generation_is_stale() {
        let m = Machine::new("stale");
        let store = m.store();
        store.commit("version = 1\n", "apply", None).unwrap();
        // The cut came after the record and before the commit.
        Try { generation: 2, previous: 1, timeout_secs: 60, boots_left: 1, deadline_unix: 0 }.write(store.dir()).unwrap();
        let mut h = Handoff::default();
        resume_try(&store, &mut h);
        assert_eq!((h.try_secs, Try::read(store.dir())), (None, None));
        assert_eq!(store.current().unwrap().unwrap().generation, 1);
    }

    #[test]
    fn rollback_goes_back_one_generation_and_not_past_the_first() {
        let m = Machine::new("rollback");
        let (s, n, y, u) = m.paths();
        let p = apply::Paths { services: &s, sys_net: &n, proc_sys: &y, update_config: &u, network: &y.join("network.toml"), agent: &y.join("agent"), chrony: &y.join("chrony"), ssh_keys: &y.join("ssh"), ssh_host_keys: &y.join("ssh-host"), docker: &y.join("docker") };
        let store = m.store();
        apply_file(&store, &m.file("one.toml", HELLO), None, &p);
        let two = m.file("two.toml", "version = 1\nhostname = \"b\"\n");
        apply_file(&store, &two, None, &p);
        // A try of 3 that went back to 2, then 4 over 2: rollback skips 3.
        apply_file(&store, &two, Some(60), &p);
        revert(&store, &p);
        apply_file(&store, &m.file("four.toml", "version = 1\nhostname = \"d\"\n"), None, &p);
        assert_eq!(rollback(&store, &p).config, "apply:2");
        let h = rollback(&store, &p);
        assert_eq!(h.config, "apply:1");
        assert!(h.args.contains(&"cairn.hostname=a".to_string()));
        assert!(rollback(&store, &p).refused, "1 came over no config");
        assert_eq!(store.generations(), [1, 2, 3, 4], "history kept");
    }
}
