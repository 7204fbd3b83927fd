//! cairn-netd applies a network PID 1's first-link path cannot: three NICs
//! (QEMU's user network on DHCP; one, picked by MAC, on a real DHCP server,
//! busybox udhcpd, that sends a /32 lease with option 121 routes through an
//! on-link gateway, option 26 and option 119; one with static IPv4 and IPv6
//! addresses, a route, MTU 1400 and a VLAN on it), a link that is missing,
//! and search domains. The taps, the DHCP server and the peer addresses live
//! in a network namespace this test makes, so nothing reaches the host's own
//! networks. The guest must answer pings on every address, and SIGHUP must
//! apply a changed network file live.

use cairn_qemu::{field, make_overlay, out_dir, Config, Machine, Scratch};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BOOT: Duration = Duration::from_secs(240);
const EXIT: Duration = Duration::from_secs(90);
const DHCP_MAC: &str = "52:54:00:00:61:01";
const STATIC_MAC: &str = "52:54:00:00:62:01";

const CONFIG: &str = r#"version = 1
hostname = "netd-node"

[network]
search = ["lab.example"]

# QEMU's user network: DHCP from QEMU.
[[network.links]]
name = "eth0"

# Picked by MAC: DHCP from udhcpd in the test's namespace.
[[network.links]]
mac = "52:54:00:00:61:01"

# Static, with a route and a smaller MTU.
[[network.links]]
name = "eth2"
addresses = ["192.168.62.2/24", "fd62::2/64"]
routes = [{ to = "10.62.0.0/16", via = "192.168.62.1" }]
mtu = 1400

# Not there: logged, the rest applied.
[[network.links]]
name = "eth9"
addresses = ["192.168.99.2/24"]

[[network.vlans]]
name = "eth2.42"
link = "eth2"
id = 42
addresses = ["192.168.42.2/24"]
"#;

/// udhcpd hands out one address, as a /32 reached through an on-link
/// gateway (RFC 3442), with an MTU and a search list.
const UDHCPD: &str = "start 192.168.61.100
end 192.168.61.100
max_leases 1
option subnet 255.255.255.255
option router 192.168.61.1
option dns 192.168.61.53
option domain dhcp.example
option search corp.example
option mtu 1450
option staticroutes 192.168.61.1/32 0.0.0.0, 10.61.0.0/16 192.168.61.1
";

/// Pings 192.168.42.2 on VLAN 42 of a tap with hand-made 802.1Q frames and
/// answers the guest's tagged ARP: the host's kernel here may have no VLAN
/// support, and this checks the tags on the wire besides. Exits 0 on the
/// first echo reply.
const VLAN_PING: &str = r#"
import socket, struct, sys, time
ifname, guest_mac = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", ""))
me = bytes.fromhex("020000004201")
my_ip, guest_ip = socket.inet_aton("192.168.42.1"), socket.inet_aton("192.168.42.2")
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((ifname, 0))
s.setsockopt(263, 8, 1)  # SOL_PACKET, PACKET_AUXDATA: the tag the kernel took off on receive
s.settimeout(0.5)
def tagged(dst, kind, body):
    return dst + me + struct.pack("!HHH", 0x8100, 42, kind) + body
def csum(b):
    if len(b) % 2:
        b += b"\x00"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16:
        t = (t & 0xffff) + (t >> 16)
    return ~t & 0xffff
icmp = struct.pack("!BBHHH", 8, 0, 0, 7, 1) + b"cairn"
icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 1, 0, 64, 1, 0, my_ip, guest_ip)
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
deadline, sent = time.time() + 30, 0
while time.time() < deadline:
    if time.time() - sent > 1:
        s.send(tagged(guest_mac, 0x0800, ip + icmp))
        sent = time.time()
    try:
        f, anc, _, addr = s.recvmsg(2048, socket.CMSG_SPACE(32))
    except socket.timeout:
        continue
    if addr[2] == socket.PACKET_OUTGOING or len(f) < 18:
        continue
    if f[12:14] == b"\x81\x00":
        vid, kind, body = struct.unpack("!H", f[14:16])[0] & 0xfff, struct.unpack("!H", f[16:18])[0], f[18:]
    else:
        aux = [d for (level, t, d) in anc if level == 263 and t == 8]
        fields = struct.unpack("=IIIHHHH", aux[0][:20]) if aux else (0,) * 7
        vid = fields[5] & 0xfff if fields[0] & 0x10 else None
        kind, body = struct.unpack("!H", f[12:14])[0], f[14:]
    if vid != 42:
        continue
    if kind == 0x0806 and body[6:8] == b"\x00\x01" and body[24:28] == my_ip:
        reply = body[:6] + b"\x00\x02" + me + my_ip + body[8:14] + body[14:18]
        s.send(tagged(f[6:12], 0x0806, reply))
    elif kind == 0x0800 and len(body) > 20 and body[9] == 1 and body[12:16] == guest_ip and body[20] == 0:
        sys.exit(0)
sys.exit(1)
"#;

/// The test's network namespace: two taps with the peer addresses, udhcpd
/// on the first. Torn down when dropped.
struct Netns {
    name: String,
    udhcpd: Option<Child>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Netns {
    fn new(dir: &Scratch) -> Netns {
        let name = format!("cairn-netd-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        ip(&["netns", "add", &name]);
        let mut ns = Netns { name, udhcpd: None };
        let n = ns.name.clone();
        ip(&["-n", &n, "link", "set", "lo", "up"]);
        for (tap, addr) in [("tap1", "192.168.61.1/24"), ("tap2", "192.168.62.1/24")] {
            ip(&["-n", &n, "tuntap", "add", "dev", tap, "mode", "tap"]);
            ip(&["-n", &n, "addr", "add", addr, "dev", tap]);
            ip(&["-n", &n, "link", "set", tap, "up"]);
        }
        ip(&["-n", &n, "addr", "add", "fd62::1/64", "dev", "tap2", "nodad"]);
        ip(&["-n", &n, "link", "set", "tap2", "mtu", "1400"]);
        let conf = dir.path("udhcpd.conf");
        let extra = format!("interface tap1\nlease_file {}\npidfile {}\n", dir.path("udhcpd.leases").display(), dir.path("udhcpd.pid").display());
        std::fs::write(&conf, format!("{UDHCPD}{extra}")).unwrap();
        std::fs::write(dir.path("udhcpd.leases"), "").unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &n, "busybox", "udhcpd", "-f"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("busybox udhcpd starts");
        ns.udhcpd = Some(child);
        ns
    }

    /// Whether `addr` answers a ping from inside the namespace.
    fn answers(&self, addr: &str) -> bool {
        let ping = if addr.contains(':') { "ping6" } else { "ping" };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = Command::new("ip")
                .args(["netns", "exec", &self.name, "busybox", ping, "-c", "1", "-W", "2", addr])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok || Instant::now() >= deadline {
                return ok;
            }
        }
    }
}

impl Netns {
    /// Whether the guest answers a ping on VLAN 42 of tap2.
    fn answers_on_vlan(&self) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.name, "python3", "-c", VLAN_PING, "tap2", STATIC_MAC])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(mut c) = self.udhcpd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Polls a guest command until its output has `want`.
fn until(m: &mut Machine, cmd: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = m.sh_ok(cmd).unwrap_or_default();
        if out.contains(want) || Instant::now() >= deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn netd_applies_links_by_name_and_mac_dhcp_options_static_routes_mtu_vlans_and_sighup() {
    let dir = Scratch::new("network-netd").unwrap();
    let ns = Netns::new(&dir);
    let disk = dir.path("disk.qcow2");
    make_overlay(&out_dir().join("cairn.qcow2"), &disk).unwrap();
    let doc = dir.path("network.toml");
    std::fs::write(&doc, CONFIG).unwrap();
    let mut cfg = Config::from_out(&out_dir(), "initramfs-debug.img").expect("make image ran").with_debug_shell().with_disk_file(&disk);
    cfg.netns = Some(ns.name.clone());
    cfg.extra_args.extend(["-fw_cfg".to_string(), format!("name=opt/org.cairn/config,file={}", doc.display())]);
    for (id, tap, mac) in [("n1", "tap1", DHCP_MAC), ("n2", "tap2", STATIC_MAC)] {
        cfg.extra_args.extend([
            "-netdev".to_string(),
            format!("tap,id={id},ifname={tap},script=no,downscript=no"),
            "-device".to_string(),
            format!("virtio-net-pci,netdev={id},mac={mac}"),
        ]);
    }
    let mut m = Machine::start(&cfg).expect("QEMU starts");
    let ready = m.wait_for("cairn-init: ready", BOOT).expect("the ready line");
    assert_eq!(field(&ready, "ip").as_deref(), Some("netd"), "PID 1 hands the links to cairn-netd: {ready}");
    let log = until(&mut m, "cairnctl logs netd", "network applied");
    assert!(log.contains("network.links[3]: no link named eth9"), "the missing link is named:\n{log}");

    // The DHCP link: a /32 lease, option 121's routes (the gateway on the
    // link first), option 26's MTU.
    let addr1 = until(&mut m, "ip -4 addr show dev eth1", "192.168.61.100/32");
    assert!(addr1.contains("inet 192.168.61.100/32"), "{addr1}");
    let routes = until(&mut m, "ip -4 route show", "10.61.0.0/16");
    assert!(routes.contains("192.168.61.1 dev eth1"), "on-link gateway of the /32 lease:\n{routes}");
    assert!(routes.contains("10.61.0.0/16 via 192.168.61.1 dev eth1"), "option 121 route:\n{routes}");
    assert_eq!(m.sh_ok("cat /sys/class/net/eth1/mtu").unwrap().trim(), "1450", "option 26");
    // The static link, its route, its MTU, the VLAN on it.
    let addr2 = m.sh_ok("ip addr show dev eth2").unwrap();
    assert!(addr2.contains("inet 192.168.62.2/24") && addr2.contains("inet6 fd62::2/64"), "{addr2}");
    assert!(routes.contains("10.62.0.0/16 via 192.168.62.1 dev eth2"), "{routes}");
    assert_eq!(m.sh_ok("cat /sys/class/net/eth2/mtu").unwrap().trim(), "1400");
    assert!(m.sh_ok("ip -4 addr show dev eth2.42").unwrap().contains("inet 192.168.42.2/24"));
    // The user network still has QEMU's lease.
    assert!(until(&mut m, "ip -4 addr show dev eth0", "10.0.2.15").contains("10.0.2.15/24"));
    // resolv.conf: the config's search domain first, then the leases'.
    let resolv = until(&mut m, "cat /etc/resolv.conf", "corp.example");
    let search = resolv.lines().find(|l| l.starts_with("search ")).unwrap_or_default().to_string();
    assert!(search.starts_with("search lab.example ") && search.contains("corp.example") && search.contains("dhcp.example"), "{resolv}");
    assert!(resolv.contains("nameserver 192.168.61.53") && resolv.contains("nameserver 10.0.2.3"), "{resolv}");
    assert!(!m.sh_ok("ip link show eth9 2>&1; true").unwrap().contains("192.168.99.2"));
    for a in ["192.168.61.100", "192.168.62.2", "fd62::2"] {
        assert!(ns.answers(a), "the guest answers on {a}");
    }
    assert!(ns.answers_on_vlan(), "the guest answers on 192.168.42.2, VLAN 42 of eth2");

    // SIGHUP applies a changed file live: a new MTU, the VLAN gone.
    m.sh_ok("sed -i 's/^mtu = 1400$/mtu = 1300/; /network.vlans/,$d' /run/cairn/config/network.toml && kill -HUP $(cat /run/cairn/netd.pid)").unwrap();
    assert_eq!(until(&mut m, "cat /sys/class/net/eth2/mtu", "1300").trim(), "1300");
    let links = until(&mut m, "ip -o link show", "eth2");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut links = links;
    while links.contains("eth2.42") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        links = m.sh_ok("ip -o link show").unwrap();
    }
    assert!(!links.contains("eth2.42"), "the VLAN is removed with its entry:\n{links}");
    assert!(ns.answers("192.168.62.2") && ns.answers("192.168.61.100"), "the rest is untouched");

    m.press_power_button().expect("power button");
    m.wait_for("clean shutdown complete", EXIT).expect("clean shutdown");
    m.wait_exit(EXIT).expect("QEMU exits");
}
