//! The machine config reaches the machine from QEMU's fw_cfg and from NoCloud
//! config disks (FAT and ISO9660, made with Debian's tools), sets its name,
//! address and services, stays on STATE when the source is gone, re-provisions
//! for a new instance id, and a bad config is refused whole, every mistake
//! named, with the last good one kept.

use cairn_qemu::sources::{config_disk, metadata_net};
use cairn_qemu::{field, make_overlay, out_dir, Machine, Scratch};
use cairn_tests::{boot, fw_cfg, machine, power_off, service_state, BOOT};
use std::process::Command;
use std::time::Duration;

const NODE7: &str = r#"version = 1
hostname = "node-7"

[[network.links]]
name = "eth0"
addresses = ["10.0.2.77/24"]
gateway = "10.0.2.2"

[network]
dns = ["10.0.2.3"]

[services.add.hello]
rootfs = "/usr/lib/cairn/rootfs/admin"
command = ["/bin/sh", "-c", "echo hello from the config; exec sleep 2147483647"]
[services.add.hello.stop]
signal = "SIGKILL"
timeout_s = 2
"#;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A NoCloud disk on FAT, labelled CIDATA (mkfs.vfat, mcopy).
fn fat_cidata(dir: &Scratch, name: &str, user_data: &str, instance: &str) -> std::path::PathBuf {
    let img = dir.path(&format!("{name}.img"));
    cairn_qemu::sources::fat_cidata(&img, &dir.path(&format!("{name}-files")), user_data, instance).unwrap();
    img
}

/// A NoCloud disk on ISO9660, volume id cidata (genisoimage).
fn iso_cidata(dir: &Scratch, name: &str, user_data: &str, instance: &str) -> std::path::PathBuf {
    let tree = dir.path(&format!("{name}-tree"));
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("user-data"), user_data).unwrap();
    std::fs::write(tree.join("meta-data"), format!("instance-id: {instance}\n")).unwrap();
    let iso = dir.path(&format!("{name}.iso"));
    run(Command::new("genisoimage").args(["-quiet", "-volid", "cidata", "-joliet", "-rock", "-output"]).arg(&iso).arg(&tree));
    iso
}

#[test]
fn fw_cfg_sets_name_address_and_a_service_wins_over_a_disk_and_outlives_its_source() {
    let dir = Scratch::new("config-fwcfg").unwrap();
    let disk = dir.path("disk.qcow2");
    make_overlay(&out_dir().join("cairn.qcow2"), &disk).unwrap();
    let doc = dir.path("node7.toml");
    std::fs::write(&doc, NODE7).unwrap();
    let other = fat_cidata(&dir, "other", "version = 1\nhostname = \"from-the-disk\"\n", "iid-disk");
    let mut extra = fw_cfg(&doc);
    extra.extend(config_disk(&other, "cfg0"));

    let (mut m, ready) = boot(&machine(&disk, &extra));
    assert_eq!(field(&ready, "config").as_deref(), Some("fw_cfg:1"), "fw_cfg comes before a config disk: {ready}");
    assert_eq!(field(&ready, "ip").as_deref(), Some("10.0.2.77/24"), "{ready}");
    assert_eq!(m.sh_ok("hostname").unwrap().trim(), "node-7");
    assert!(m.sh_ok("ip -4 route show").unwrap().contains("default via 10.0.2.2"));
    assert_eq!(service_state(&mut m, "hello"), "running");
    assert_eq!(m.sh_ok("cat /var/lib/cairn/config/current").unwrap().trim(), "1");
    power_off(m);

    // The source is gone: STATE is the truth now.
    let (mut m, ready) = boot(&machine(&disk, &[]));
    assert_eq!(field(&ready, "config").as_deref(), Some("fw_cfg:1"), "{ready}");
    assert_eq!(field(&ready, "ip").as_deref(), Some("10.0.2.77/24"), "{ready}");
    assert_eq!(m.sh_ok("hostname").unwrap().trim(), "node-7");
    assert_eq!(service_state(&mut m, "hello"), "running");
    power_off(m);
}

#[test]
fn nocloud_on_fat_then_a_new_instance_on_iso_is_provisioned_afresh() {
    let dir = Scratch::new("config-nocloud").unwrap();
    let disk = dir.path("disk.qcow2");
    make_overlay(&out_dir().join("cairn.qcow2"), &disk).unwrap();
    let fat = fat_cidata(&dir, "one", "version = 1\nhostname = \"fat-node\"\n", "iid-1");
    let (mut m, ready) = boot(&machine(&disk, &config_disk(&fat, "cfg0")));
    assert_eq!(field(&ready, "config").as_deref(), Some("nocloud:1"), "{ready}\n{}", m.console.text());
    assert_eq!(m.sh_ok("hostname").unwrap().trim(), "fat-node");
    power_off(m);

    let iso = iso_cidata(&dir, "two", "version = 1\nhostname = \"iso-node\"\n", "iid-2");
    let (mut m, ready) = boot(&machine(&disk, &config_disk(&iso, "cfg0")));
    assert_eq!(field(&ready, "config").as_deref(), Some("nocloud:2"), "a new instance id: {ready}");
    assert_eq!(m.sh_ok("hostname").unwrap().trim(), "iso-node");
    power_off(m);
}

#[test]
fn a_config_with_three_mistakes_is_refused_all_named_and_the_last_good_one_stays() {
    let dir = Scratch::new("config-bad").unwrap();
    let disk = dir.path("disk.qcow2");
    make_overlay(&out_dir().join("cairn.qcow2"), &disk).unwrap();
    let good = iso_cidata(&dir, "good", "version = 1\nhostname = \"good-node\"\n", "iid-1");
    let (m, ready) = boot(&machine(&disk, &config_disk(&good, "cfg0")));
    assert_eq!(field(&ready, "config").as_deref(), Some("nocloud:1"), "{ready}");
    power_off(m);

    let bad_doc = "version = 1\nhostnme = \"bad-node\"\n[[network.links]]\nname = \"eth0\"\nmtu = 20\n[update]\nchannel = \"stabel\"\n";
    let bad = iso_cidata(&dir, "bad", bad_doc, "iid-2");
    let (mut m, ready) = boot(&machine(&disk, &config_disk(&bad, "cfg0")));
    let console = m.console.text();
    for want in [
        "nocloud:2:1: hostnme: unknown key (did you mean \"hostname\"?)",
        "nocloud:5:7: network.links[0].mtu: 20 is out of range (68 to 9216)",
        "nocloud:7:11: update.channel: \"stabel\" is not allowed",
    ] {
        assert!(console.contains(want), "{want} not on the console:\n{console}");
    }
    assert_eq!(field(&ready, "config").as_deref(), Some("nocloud:1"), "the last good config stays: {ready}");
    assert_eq!(m.sh_ok("hostname").unwrap().trim(), "good-node");
    assert_eq!(m.sh_ok("ls /var/lib/cairn/config/gen").unwrap().split_whitespace().collect::<Vec<_>>(), ["000001.meta", "000001.toml"]);
    power_off(m);
}

/// The guest's user network on a link-local range, with the metadata address
/// (and Azure's WireServer) forwarded to the test's server on loopback.
/// `busybox nc` joins each guest connection to the server.
#[test]
fn ec2_user_data_over_imdsv2_sets_a_static_address_after_one_reboot() {
    use cairn_qemu::metadata::{Server, Setup, Token};
    let doc = "version = 1\nhostname = \"ec2-node\"\n[[network.links]]\nname = \"eth0\"\naddresses = [\"169.254.169.77/24\"]\ngateway = \"169.254.169.2\"\n";
    let server = Server::start(Setup { user_data: Some(doc.into()), instance_id: "i-0123456789".into(), token: Token::Required }).unwrap();
    let dir = Scratch::new("config-ec2").unwrap();
    let disk = dir.path("disk.qcow2");
    make_overlay(&out_dir().join("cairn.qcow2"), &disk).unwrap();
    let mut cfg = machine(&disk, &["-smbios".into(), "type=1,manufacturer=Amazon EC2,product=t3.micro".into()]);
    cfg.netdev = metadata_net(server.port, false);
    let mut m = Machine::start(&cfg).expect("QEMU starts");
    m.wait_for("changes the network; rebooting once", BOOT).expect("a config that changes the network reboots once");
    let ready = m.wait_for("cairn-init: ready", BOOT).expect("ready after the reboot");
    assert_eq!(field(&ready, "config").as_deref(), Some("ec2:1"), "{ready}");
    assert_eq!(field(&ready, "ip").as_deref(), Some("169.254.169.77/24"), "{ready}");
    assert_eq!(m.sh_ok("hostname").unwrap().trim(), "ec2-node");
    let seen = server.requests();
    assert_eq!(seen.first().map(|r| (r.method.as_str(), r.path.as_str())), Some(("PUT", "/latest/api/token")), "{seen:?}");
    assert!(seen.iter().filter(|r| r.method == "GET").all(|r| r.header("X-aws-ec2-metadata-token").is_some()), "IMDSv2 all the way: {seen:?}");
    let asked = seen.len();
    power_off(m);
    assert_eq!(server.requests().len(), asked, "after the first boot STATE is the source: IMDS is not asked again");
}

#[test]
fn azure_user_data_is_applied_and_ready_is_reported_exactly_once() {
    use cairn_qemu::metadata::{Server, Setup, Token};
    let doc = "version = 1\nhostname = \"azure-node\"\n";
    let server = Server::start(Setup { user_data: Some(doc.into()), instance_id: "5c3a9c5e-0000-4000-8000-000000000001".into(), token: Token::Required }).unwrap();
    let dir = Scratch::new("config-azure").unwrap();
    let disk = dir.path("disk.qcow2");
    make_overlay(&out_dir().join("cairn.qcow2"), &disk).unwrap();
    let mut cfg = machine(
        &disk,
        &["-smbios".into(), "type=1,manufacturer=Microsoft Corporation,product=Virtual Machine".into(), "-smbios".into(), "type=3,asset=7783-7084-3265-9085-8269-3286-77".into()],
    );
    cfg.netdev = metadata_net(server.port, true);
    let (mut m, ready) = boot(&cfg);
    assert_eq!(field(&ready, "config").as_deref(), Some("azure:1"), "{ready}");
    assert_eq!(m.sh_ok("hostname").unwrap().trim(), "azure-node");
    let waited = std::time::Instant::now();
    while !server.requests().iter().any(|r| r.path == "/machine/?comp=health") {
        assert!(waited.elapsed() < BOOT, "no ready report reached the WireServer: {:?}", server.requests());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Long enough for a second report, if one were to come.
    std::thread::sleep(Duration::from_secs(5));
    let health: Vec<_> = server.requests().into_iter().filter(|r| r.path == "/machine/?comp=health").collect();
    assert_eq!(health.len(), 1, "exactly one ready report: {health:?}");
    assert!(health[0].body.contains("<State>Ready</State>"));
    let first_health = server.requests().iter().position(|r| r.path == "/machine/?comp=health").unwrap();
    let user_data = server.requests().iter().position(|r| r.path.contains("userData")).unwrap();
    assert!(user_data < first_health, "the config is fetched and applied before the report");
    power_off(m);
}
