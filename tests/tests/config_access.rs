//! What the machine config gives the shipped services: chrony asks the NTP
//! servers it names (a recorder on the host sees its requests), and
//! `[access] ssh_authorized_keys` lets its keys, and only those, into the
//! admin container over SSH (the host's OpenSSH client, keys made by the
//! test). `cairnctl config apply` swaps both live, restarting chrony and the
//! admin container only; the SSH host key is the same after a reboot with
//! the config's source gone.

use cairn_qemu::{field, make_overlay, out_dir, Machine, Scratch};
use cairn_tests::{boot, fw_cfg, machine, power_off, put_file, service_state, BOOT};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A key pair made with the host's ssh-keygen; returns the private key's path
/// and the public key line.
fn keypair(dir: &Scratch, name: &str) -> (PathBuf, String) {
    let key = dir.path(name);
    let out = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"]).arg(&key).output().expect("ssh-keygen (openssh-client)");
    assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_string())
}

/// `ssh` to the machine's port 22 (forwarded to `port`) with `key`, running
/// `command`; the host key must be the one in `known_hosts` once it holds one.
fn ssh(port: u16, key: &Path, known_hosts: &Path, command: &str) -> Output {
    Command::new("ssh")
        .args(["-p", &port.to_string(), "-i"])
        .arg(key)
        .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=20", "-o", "StrictHostKeyChecking=accept-new"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["root@127.0.0.1", command])
        .output()
        .expect("ssh (openssh-client)")
}

/// Retries `ssh` until it logs in (the admin container and dropbear start
/// after the ready line); the bound only keeps a broken machine from hanging.
fn ssh_until_in(m: &Machine, port: u16, key: &Path, known_hosts: &Path, command: &str) -> String {
    let start = Instant::now();
    loop {
        let out = ssh(port, key, known_hosts, command);
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            start.elapsed() < BOOT,
            "no SSH login within {BOOT:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            m.console.text()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn refused(port: u16, key: &Path, known_hosts: &Path) -> String {
    let out = ssh(port, key, known_hosts, "echo in");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(255), "a key not in the config logged in: {}{err}", String::from_utf8_lossy(&out.stdout));
    assert!(err.contains("Permission denied (publickey)"), "{err}");
    err
}

/// The NTP server the guest reaches as 10.0.2.2 (QEMU's user network sends
/// UDP for the host's address to its loopback): it records the client
/// requests (mode 3) that arrive, and answers none.
fn ntp_recorder() -> mpsc::Receiver<u8> {
    let sock = UdpSocket::bind("127.0.0.1:123").expect("the test's NTP recorder binds 127.0.0.1:123 (root, nothing else on it)");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            if n >= 48 && tx.send(buf[0]).is_err() {
                return;
            }
        }
    });
    rx
}

fn config(ntp: &str, key: &str) -> String {
    format!("version = 1\nhostname = \"reach\"\n\n[time]\nntp = [{ntp}]\n\n[access]\nadmin = true\nssh_authorized_keys = [\"{key}\"]\n")
}

/// What chronyd's container sees as its servers.
fn chrony_sources(m: &mut Machine) -> String {
    m.sh_ok("cat /proc/$(pidof chronyd)/root/etc/chrony/sources.d/cairn.sources").unwrap()
}

fn pid(m: &mut Machine, name: &str) -> String {
    m.sh_ok(&format!("pidof {name}")).unwrap().trim().to_string()
}

#[test]
fn ntp_servers_and_ssh_keys_from_the_config_reach_chrony_and_the_admin_container() {
    let dir = Scratch::new("config-access").unwrap();
    let disk = dir.path("disk.qcow2");
    make_overlay(&out_dir().join("cairn.qcow2"), &disk).unwrap();
    let (good, good_pub) = keypair(&dir, "good");
    let (wrong, _) = keypair(&dir, "wrong");
    let (second, second_pub) = keypair(&dir, "second");
    let known = dir.path("known_hosts");
    let doc = dir.path("reach.toml");
    std::fs::write(&doc, config("\"10.0.2.2\"", &good_pub)).unwrap();
    let requests = ntp_recorder();
    let port = free_port();
    let mut cfg = machine(&disk, &fw_cfg(&doc));
    cfg.netdev = format!(",hostfwd=tcp:127.0.0.1:{port}-:22");

    let (mut m, ready) = boot(&cfg);
    assert_eq!(field(&ready, "config").as_deref(), Some("fw_cfg:1"), "{ready}");
    assert!(!m.console.text().contains("not applied yet by this Cairn"), "{}", m.console.text());
    assert_eq!(chrony_sources(&mut m), "server 10.0.2.2 iburst\n");
    let mode = requests.recv_timeout(BOOT).unwrap_or_else(|_| panic!("no NTP request reached 10.0.2.2\n{}", m.console.text()));
    assert_eq!(mode & 7, 3, "an NTP client request");

    // In with the configured key, on the machine (its PID 1), and not with another.
    let pid1 = m.sh_ok("cat /proc/1/comm").unwrap();
    let out = ssh_until_in(&m, port, &good, &known, "echo in; cat /proc/1/comm");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["in", pid1.trim()]);
    refused(port, &wrong, &known);
    assert!(m.sh_ok("ls /var/lib/cairn/ssh").unwrap().contains("dropbear_ed25519_host_key"), "the host key is on STATE");

    // Live: new servers and a new key; chrony and admin restart, nothing else.
    let (chronyd, containerd) = (pid(&mut m, "chronyd"), pid(&mut m, "containerd"));
    put_file(&mut m, "/run/next.toml", &config("\"10.0.2.2\", \"127.0.0.1\"", &second_pub));
    let out = m.sh_ok("cairnctl config apply /run/next.toml 2>&1").unwrap();
    assert!(out.contains("applied live: NTP servers, SSH keys"), "{out}");
    let restarted = out.lines().find_map(|l| l.trim().strip_prefix("restarted: ")).unwrap_or_else(|| panic!("nothing restarted:\n{out}"));
    let mut names: Vec<&str> = restarted.split(", ").collect();
    names.sort_unstable();
    assert_eq!(names, ["admin", "chrony"], "{out}");
    let start = Instant::now();
    while service_state(&mut m, "chrony") != "running" || m.sh("pidof chronyd").unwrap().0.trim() == chronyd || m.sh("pidof chronyd").unwrap().1 != 0 {
        assert!(start.elapsed() < BOOT, "chrony does not run again with a new process\n{}", m.console.text());
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(pid(&mut m, "containerd"), containerd, "containerd did not");
    assert_eq!(chrony_sources(&mut m), "server 10.0.2.2 iburst\nserver 127.0.0.1 iburst\n");
    assert_eq!(ssh_until_in(&m, port, &second, &known, "echo second"), "second\n");
    refused(port, &good, &known);
    power_off(m);

    // The source gone: the same config from STATE, the same host key
    // (known_hosts holds it; ssh refuses a changed one).
    let mut cfg = machine(&disk, &[]);
    cfg.netdev = format!(",hostfwd=tcp:127.0.0.1:{port}-:22");
    let (mut m, ready) = boot(&cfg);
    assert_eq!(field(&ready, "config").as_deref(), Some("apply:2"), "{ready}");
    assert_eq!(m.sh_ok("hostname").unwrap().trim(), "reach");
    assert_eq!(ssh_until_in(&m, port, &second, &known, "echo again"), "again\n");
    power_off(m);
}
