//! The Docker engine on a Cairn machine whose config says `[docker] enabled`:
//! dockerd comes up on init's containerd (overlay2 on STATE, cgroup v2, no
//! swarm yet), loads an image from an archive on a second disk (there is no
//! registry), runs a container, publishes a port the host reaches through
//! QEMU's user network, and after a reboot still has the image and answers
//! again. One booted machine for all of it.

use cairn_qemu::{field, make_overlay, out_dir, Machine, Scratch};
use cairn_tests::oci::{write_busybox_archive, BUSYBOX_TAG, INDEX_HTML};
use cairn_tests::{boot, free_port, fw_cfg, machine, power_off, service_state, BOOT, EXIT};
use std::process::Command;
use std::time::{Duration, Instant};

/// dockerd's start under TCG, after the ready line.
const DOCKERD_UP: Duration = Duration::from_secs(360);

/// The guest's block device whose virtio serial is `serial`.
fn device_by_serial(m: &mut Machine, serial: &str) -> String {
    let cmd = format!("for d in /sys/block/vd*; do [ \"$(cat $d/serial 2>/dev/null)\" = {serial} ] && echo /dev/${{d##*/}}; done");
    let dev = m.sh_ok(&cmd).unwrap().trim().to_string();
    assert!(dev.starts_with("/dev/vd"), "no disk with serial {serial}: {dev:?}");
    dev
}

/// The host's view of a published port: the page, once it answers.
fn fetch_from_host(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let out = Command::new("curl").args(["-sS", "--max-time", "10"]).arg(format!("http://127.0.0.1:{port}/index.html")).output().expect("curl");
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(Instant::now() < deadline, "the published port never answered: {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Waits for dockerd to answer the stock client; names what its log says if it never does.
fn wait_dockerd(m: &mut Machine) {
    let deadline = Instant::now() + DOCKERD_UP;
    loop {
        // Bounded in the guest too: a dockerd still starting (after a reboot,
        // on a loaded host) can hold the client's request for minutes.
        let (out, code) = m.sh_for("timeout 20 docker version --format '{{.Server.APIVersion}}'", Duration::from_secs(60)).unwrap();
        if code == 0 {
            assert_eq!(out.trim(), "1.41", "Engine API 1.41");
            return;
        }
        if Instant::now() > deadline {
            let log = m.sh("cairnctl list; cairnctl logs dockerd | tail -n 40").map(|r| r.0).unwrap_or_default();
            panic!("dockerd never answered on /var/run/docker.sock: {out}\n{log}");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn vm_rss_kb(m: &mut Machine, process: &str) -> u64 {
    let out = m.sh_ok(&format!("grep VmRSS /proc/$(pidof {process})/status")).unwrap();
    out.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no VmRSS for {process}: {out}"))
}

#[test]
fn dockerd_loads_runs_publishes_and_keeps_its_images_across_a_reboot() {
    let dir = Scratch::new("docker").unwrap();
    let disk = dir.path("disk.qcow2");
    make_overlay(&out_dir().join("cairn.qcow2"), &disk).unwrap();
    let doc = dir.path("docker.toml");
    std::fs::write(&doc, "version = 1\n[docker]\nenabled = true\n").unwrap();
    let archive = dir.path("busybox.tar");
    write_busybox_archive(&archive);
    let mut extra = fw_cfg(&doc);
    extra.extend([
        "-drive".into(),
        format!("file={},format=raw,if=none,id=images,readonly=on", archive.display()),
        "-device".into(),
        "virtio-blk-pci,drive=images,serial=cairn-images".into(),
    ]);
    let port = free_port();
    let mut cfg = machine(&disk, &extra);
    cfg.netdev = format!(",hostfwd=tcp:127.0.0.1:{port}-:8080");
    cfg.memory_mb = 1024;
    let (mut m, ready) = boot(&cfg);
    assert!(field(&ready, "config").is_some_and(|c| c.starts_with("fw_cfg:")), "{ready}");
    assert_eq!(service_state(&mut m, "dockerd"), "running", "dockerd is one of init's services");

    // The stock client on its default socket (/var/run/docker.sock).
    wait_dockerd(&mut m);
    let info = m.sh_ok("docker info --format '{{.Driver}} {{.CgroupVersion}} {{.Swarm.LocalNodeState}} {{.DockerRootDir}}'").unwrap();
    assert_eq!(info.trim(), "overlay2 2 inactive /var/lib/docker");
    assert_eq!(m.sh_ok("stat -f -c %T /var/lib/docker").unwrap().trim(), "ext2/ext3", "data on STATE");
    // On init's containerd: one containerd, and none of dockerd's own.
    assert_eq!(m.sh_ok("pidof containerd | wc -w").unwrap().trim(), "1");
    assert_eq!(m.sh("test -e /run/docker/containerd/containerd.sock").unwrap().1, 1, "dockerd started no containerd of its own");

    let images = device_by_serial(&mut m, "cairn-images");
    let loaded = m.sh_for(&format!("docker load -i {images}"), Duration::from_secs(180)).unwrap();
    assert_eq!(loaded.1, 0, "docker load: {}", loaded.0);
    assert!(loaded.0.contains(&format!("Loaded image: {BUSYBOX_TAG}")), "{}", loaded.0);

    let run = m.sh_for(&format!("docker run --rm {BUSYBOX_TAG} echo hello from a container"), Duration::from_secs(120)).unwrap();
    assert_eq!((run.0.trim(), run.1), ("hello from a container", 0));
    let cgroup = m.sh_ok(&format!("docker run --rm {BUSYBOX_TAG} cat /proc/self/cgroup")).unwrap();
    assert_eq!(cgroup.trim(), "0::/", "cgroup v2, a namespace of its own");
    // Its containers are containerd's, in dockerd's namespace.
    let namespaces = m.sh_ok("ctr --address /run/containerd/containerd.sock namespaces ls -q").unwrap();
    assert!(namespaces.lines().any(|l| l.trim() == "moby"), "{namespaces}");

    m.sh_ok(&format!("docker run -d --name web -p 8080:80 {BUSYBOX_TAG} httpd -f -p 80 -h /www")).unwrap();
    assert_eq!(fetch_from_host(port), INDEX_HTML, "the host reaches the container through -p 8080:80");
    let (dockerd, containerd) = (vm_rss_kb(&mut m, "dockerd"), vm_rss_kb(&mut m, "containerd"));
    eprintln!("figure: dockerd VmRSS {dockerd} kB, containerd VmRSS {containerd} kB (one container running)");

    m.sh_send("cairnctl reboot").unwrap();
    m.wait_for("shutdown: cairnctl reboot; will reboot", EXIT).expect("reboot through cairnctl");
    m.shell_restarted();
    m.wait_for("cairn-init: ready", BOOT).expect("ready after the reboot");
    wait_dockerd(&mut m);
    let tags = m.sh_ok("docker image ls --format '{{.Repository}}:{{.Tag}}'").unwrap();
    assert!(tags.lines().any(|l| l.trim() == BUSYBOX_TAG), "the loaded image is still there: {tags}");
    let again = m.sh_for(&format!("docker run --rm {BUSYBOX_TAG} echo still here"), Duration::from_secs(120)).unwrap();
    assert_eq!((again.0.trim(), again.1), ("still here", 0));
    let (dockerd, containerd) = (vm_rss_kb(&mut m, "dockerd"), vm_rss_kb(&mut m, "containerd"));
    eprintln!("figure: idle dockerd VmRSS {dockerd} kB, containerd VmRSS {containerd} kB (after a reboot, no container)");
    power_off(m);
}
