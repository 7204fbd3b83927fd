//! The cluster lab ([`cairn_tests::lab`]): three production VMs and one
//! debug VM on a bridge in a network namespace of the test's own, each booted
//! from its machine config alone (hostname, static address, agent
//! certificate on fw_cfg). All answer `cairnctl --node A,B,C status` from
//! the namespace; the debug VM reaches the others over the bridge; one VM is
//! rebooted through its agent and one is killed and started again, and both
//! keep their identity, which is read back from their disks at the end.

use cairn_tests::lab::{Lab, VmSpec, GATEWAY};
use std::collections::BTreeSet;

const NAMES: [&str; 3] = ["lab-a", "lab-b", "lab-c"];

fn status_of(lab: &Lab, vm: usize) -> serde_json::Value {
    lab.ctl_json(&[vm], &["status"]).remove(0)
}

#[test]
fn three_vms_boot_from_their_configs_answer_together_and_keep_their_identity_across_reboot_and_power_cut() {
    let mut lab = Lab::new("three");
    for name in NAMES {
        lab.add(VmSpec::production(name));
    }
    // A debug VM to look at the segment from the inside; it needs less memory.
    let debug = lab.add(VmSpec { memory_mb: 512, ..VmSpec::debug("lab-d") });
    let readies = lab.start_all();
    for (vm, ready) in lab.vms.iter().zip(&readies) {
        assert!(ready.contains("config=fw_cfg:1"), "{}: {ready}", vm.name);
    }
    lab.wait_agents();

    // Everything at once, one answer per node, each its own machine.
    let all = lab.ctl_json(&[0, 1, 2], &["status"]);
    let hostnames: Vec<&str> = all.iter().map(|s| s["hostname"].as_str().unwrap_or("")).collect();
    assert_eq!(hostnames, NAMES, "{all:?}");
    assert!(all.iter().all(|s| s["ready"] == true), "{all:?}");
    let born: Vec<String> = lab
        .vms
        .iter()
        .map(|vm| {
            let ids = vm.new_machine_ids();
            assert_eq!(ids.len(), 1, "{}: one machine id made on a fresh disk: {ids:?}", vm.name);
            ids[0].clone()
        })
        .collect();
    assert_eq!(born.iter().collect::<BTreeSet<_>>().len(), born.len(), "every VM has its own machine id: {born:?}");
    assert!(born.iter().all(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())), "{born:?}");

    // The debug VM: its id is the one announced, and it reaches the other
    // VMs and the namespace's end of the bridge (VM to VM over L2).
    let d = lab.vm(debug).machine();
    assert_eq!(d.sh_ok("cat /etc/machine-id").unwrap().trim(), born[debug]);
    let addr = d.sh_ok("ip -4 addr show dev eth0").unwrap();
    assert!(addr.contains("inet 10.77.0.14/24"), "{addr}");
    for target in ["10.77.0.11", "10.77.0.12", "10.77.0.13", GATEWAY] {
        let (out, code) = d.sh(&format!("ping -c 1 -W 5 {target}")).unwrap();
        assert_eq!(code, 0, "lab-d pings {target}: {out}");
    }
    // The namespace reaches the VMs; the host's own network does not.
    assert!(lab.exec(&["busybox", "ping", "-c", "1", "-W", "5", "10.77.0.12"]).ok, "the namespace reaches lab-b");
    let host_routes = std::process::Command::new("ip").args(["-4", "route", "show"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&host_routes.stdout).contains("10.77.0."), "the lab's segment is not on the host");

    // A reboot through the agent: the same machine again, a fresh boot.
    let asked = std::time::Instant::now();
    let run = lab.ctl(&[1], &["--yes", "reboot"]);
    assert!(run.ok, "reboot: {}{}", run.stdout, run.stderr);
    lab.vm(1).wait_ready();
    lab.wait_agent(1);
    let after = status_of(&lab, 1);
    assert_eq!(after["hostname"], "lab-b", "{after}");
    // The kernel that answers started after the reboot was asked for.
    let uptime = after["uptime_s"].as_f64().unwrap_or_else(|| panic!("no uptime_s in {after}"));
    assert!(uptime <= asked.elapsed().as_secs_f64() + 1.0, "a boot since the reboot: {after}");
    assert_eq!(lab.vms[1].new_machine_ids(), [born[1].clone()], "the reboot made no new machine id");

    // A power cut and a cold start from the same disk.
    lab.vm(2).kill();
    lab.vm(2).start();
    let ready = lab.vm(2).wait_ready();
    assert!(ready.contains("config=fw_cfg:1"), "lab-c keeps its config: {ready}");
    lab.wait_agent(2);
    assert_eq!(status_of(&lab, 2)["hostname"], "lab-c");
    assert!(lab.vms[2].new_machine_ids().is_empty(), "STATE kept lab-c's machine id:\n{}", lab.vms[2].console());
    let again = lab.ctl_json(&[0, 1, 2], &["status"]);
    assert_eq!(again.iter().map(|s| s["hostname"].as_str().unwrap_or("")).collect::<Vec<_>>(), NAMES);

    // Off, and the ids on each STATE are the ones made at the first boot.
    lab.power_off_all();
    for (i, id) in born.iter().enumerate() {
        let kept = lab.vms[i].state_file("lib/cairn/machine-id");
        assert_eq!(kept.trim(), id, "{}: the machine id on its STATE", lab.vms[i].name);
    }
}
