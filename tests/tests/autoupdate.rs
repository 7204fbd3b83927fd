//! Automatic updates: a machine whose config says `update.policy = "auto"`
//! (checking every minute) leaves a new version in its repository alone
//! while its maintenance window is shut; once `cairnctl config apply` opens
//! the window (live, no reboot), its agent installs the version by itself,
//! the machine boots it, blesses it, and the agent's audit log names the
//! automatic schedule as the caller. The repository is served inside the
//! lab's namespace; the machine has no other network.

use cairn_qemu::repo::{good, Server};
use cairn_tests::lab::{repository, Lab, VmSpec};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Download, install, reboot through UEFI, trial and bless, under TCG.
const UPDATED: Duration = Duration::from_secs(900);

/// `HH:MM` UTC, `offset` minutes from now.
fn clock(offset: i64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let minute = ((now / 60 + offset) % 1440 + 1440) % 1440;
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// An `[update.window]` on every day, opening `from` minutes from now.
fn window(from: i64, length: u32) -> String {
    format!("[update.window]\nstart = \"{}\"\nlength_minutes = {length}\n", clock(from))
}

fn update_status(lab: &Lab) -> String {
    lab.ctl(&[0], &["update", "status"]).expect_ok("update status")
}

fn auto_records(lab: &Lab) -> Vec<serde_json::Value> {
    let audit = lab.api_get(0, "/v1/audit").unwrap_or_default();
    audit["records"].as_array().cloned().unwrap_or_default().into_iter().filter(|r| r["role"] == "auto").collect()
}

#[test]
fn a_machine_on_the_auto_policy_updates_itself_inside_its_window_and_not_outside_it() {
    let mut lab = Lab::new("auto");
    let policy = format!("[update]\nrepository = \"{}\"\npolicy = \"auto\"\ncheck_minutes = 1\n\n", repository());
    // Shut for the next three hours (every day, so no weekday edge).
    let shut = window(180, 60);
    let spec = VmSpec { uefi: true, ..VmSpec::debug("auto").with_config(&format!("{policy}{shut}\n")) };
    lab.add(spec);
    lab.start_all();
    lab.wait_agents();
    let server = Server::start("auto-repo");
    let _repo = lab.serve_repository(&server.dir.path("repo"));
    server.publish(&good());
    let check = lab.ctl(&[0], &["update", "check"]).expect_ok("update check");
    assert!(check.contains("0.2.0 is available"), "the repository offers 0.2.0 to this machine: {check}");

    // The agent checks a minute after it starts and every minute after:
    // two and a half minutes span at least two checks, all outside the window.
    std::thread::sleep(Duration::from_secs(150));
    let status = update_status(&lab);
    assert!(status.contains("version 0.1.0") && !status.contains("0.2.0"), "nothing staged while the window is shut:\n{status}");
    assert!(auto_records(&lab).is_empty(), "no automatic update was started: {:?}", auto_records(&lab));

    // The window opened five minutes ago, for two hours: applied live.
    let doc = std::fs::read_to_string(lab.dir.path("auto.toml")).expect("the lab's config of the machine");
    assert!(doc.contains(&shut), "the lab kept the window as written:\n{doc}");
    let open = lab.dir.path("open.toml");
    std::fs::write(&open, doc.replace(&shut, &window(-5, 120))).expect("write the new config");
    let applied = lab.ctl(&[0], &["--yes", "config", "apply", &open.to_string_lossy()]);
    assert!(applied.ok, "config apply: {}{}", applied.stdout, applied.stderr);

    let start = Instant::now();
    loop {
        let run = lab.ctl(&[0], &["update", "status"]);
        if run.ok && run.stdout.contains("version 0.2.0") && !run.stdout.contains("waiting for its verdict") {
            break;
        }
        assert!(start.elapsed() < UPDATED, "the machine did not update itself to 0.2.0:\n{}{}\n{}", run.stdout, run.stderr, lab.vms[0].console());
        std::thread::sleep(Duration::from_secs(5));
    }
    let records = auto_records(&lab);
    assert_eq!(records.len(), 1, "one automatic update, in the audit log: {records:?}");
    assert!(records[0]["result"].as_str().is_some_and(|r| r.contains("0.2.0")), "{records:?}");
    // Up to date now: the next checks start nothing.
    std::thread::sleep(Duration::from_secs(90));
    assert_eq!(auto_records(&lab).len(), 1, "{:?}", auto_records(&lab));
    lab.power_off_all();
}
