//! A lab of several Cairn VMs on one L2 segment that never touches the
//! host's networks, for cluster tests.
//!
//! - [`Lab::new`] makes a network namespace of its own (`cairn-lab-PID-NAME`),
//!   a bridge `br0` in it with [`GATEWAY`] (10.77.0.1/24), and a lab CA with an
//!   admin client certificate. Dropping the lab (a panic too) kills its VMs
//!   and deletes the namespace; namespaces left by a killed test run are
//!   swept by the next lab.
//! - [`Lab::add`] gives each VM a tap on the bridge (QEMU runs inside the
//!   namespace), a MAC, a qcow2 overlay of its own (so a STATE and a machine
//!   id of its own), a node certificate with its address and name in the
//!   SANs, and a machine config on fw_cfg: its hostname, a static address on
//!   its only link (`eth0`; no QEMU user network) and the `[api]` section, so
//!   sysagent runs on it. [`VmSpec::config`] adds more TOML (a `[cluster]`).
//! - [`Lab::start_all`] starts every VM, then waits for each ready line, so
//!   the boots run side by side; [`Vm::kill`], [`Vm::start`] and
//!   [`Lab::power_off_all`] do the rest.
//! - [`Lab::ctl`] runs `cairnctl --node ...` in the namespace with the admin
//!   certificate against some VMs; [`Lab::command`] and [`Lab::exec`] run any
//!   host program (curl, ping) in the namespace.
//!
//! ```no_run
//! use cairn_tests::lab::{Lab, VmSpec};
//! let mut lab = Lab::new("swarm");
//! for name in ["mgr", "w1", "w2"] {
//!     lab.add(VmSpec::production(name));
//! }
//! lab.start_all();
//! lab.wait_agents();
//! let status = lab.ctl_json(&[0, 1, 2], &["status"]);
//! lab.power_off_all();
//! ```

use crate::{fw_cfg, repo, BOOT, EXIT};
use cairn_pki::{Ca, Issued, Role, Validity};
use cairn_qemu::{make_overlay, out_dir, qemu_img, Config, Machine, Scratch};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The namespace's own address on the bridge; the VMs are .11, .12, ...
pub const GATEWAY: &str = "10.77.0.1";
const PREFIX: u8 = 24;
/// How long a VM's agent may take to answer after its ready line.
const AGENT_WAIT: Duration = Duration::from_secs(120);

/// The lab address of the VM added as number `index` (from 0).
pub fn address(index: usize) -> String {
    format!("10.77.0.{}", 11 + index)
}

/// Which build of Cairn a VM boots (direct kernel boot of out/).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    /// `initramfs.img`: no shell; the agent is the way in.
    Production,
    /// `initramfs-debug.img` with the debug shell on the second serial port.
    Debug,
}

/// Where [`Lab::serve_repository`] listens, on the namespace's end of the bridge.
const REPOSITORY_PORT: u16 = 8000;

/// The update repository [`Lab::serve_repository`] serves, as a machine
/// config's `update.repository` names it.
pub fn repository() -> String {
    format!("http://{GATEWAY}:{REPOSITORY_PORT}")
}

/// The repository's HTTP server; stopped when dropped.
pub struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What one VM is.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// Its hostname, and the name its certificate carries.
    pub name: String,
    pub image: Image,
    pub memory_mb: u32,
    /// More machine config TOML, placed after `version` and `hostname` and
    /// before the lab's own `[[network.links]]` and `[api]` tables.
    pub config: String,
    /// More QEMU arguments (a disk of images, say).
    pub qemu_args: Vec<String>,
    /// Boot the debug disk through UEFI (OVMF, systemd-boot), as updates
    /// need; its disk is 1 GiB larger, so STATE has room to stage one.
    pub uefi: bool,
}

impl VmSpec {
    pub fn production(name: &str) -> VmSpec {
        VmSpec { name: name.into(), image: Image::Production, memory_mb: 1024, config: String::new(), qemu_args: Vec::new(), uefi: false }
    }

    pub fn debug(name: &str) -> VmSpec {
        VmSpec { image: Image::Debug, ..VmSpec::production(name) }
    }

    pub fn with_config(mut self, toml: &str) -> VmSpec {
        self.config.push_str(toml);
        self
    }
}

/// A client certificate and key on disk.
#[derive(Debug, Clone)]
pub struct ClientFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A program's end: exit status and output.
#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(out: Output) -> Run {
        Run { ok: out.status.success(), stdout: String::from_utf8_lossy(&out.stdout).into_owned(), stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
    }

    /// The standard output; panics with both outputs when it failed.
    pub fn expect_ok(self, what: &str) -> String {
        assert!(self.ok, "{what} failed:\n{}{}", self.stdout, self.stderr);
        self.stdout
    }
}

/// One VM of the lab. Its disk outlives its QEMU: kill and start again
/// boot the same STATE.
pub struct Vm {
    pub name: String,
    pub address: String,
    pub mac: String,
    pub image: Image,
    /// The qcow2 overlay that is this VM's disk.
    pub disk: PathBuf,
    cfg: Config,
    machine: Option<Machine>,
}

impl Vm {
    /// Starts QEMU (not waiting for the guest).
    pub fn start(&mut self) {
        assert!(self.machine.is_none(), "{} is already running", self.name);
        self.machine = Some(Machine::start(&self.cfg).unwrap_or_else(|e| panic!("{}: QEMU does not start: {e}", self.name)));
    }

    /// Waits for the next ready line (the first boot, or the one after a reboot).
    pub fn wait_ready(&mut self) -> String {
        let name = self.name.clone();
        self.machine().wait_for("cairn-init: ready", BOOT).unwrap_or_else(|e| panic!("{name}: no ready line: {e}"))
    }

    /// The running QEMU: console, power button, debug shell.
    pub fn machine(&mut self) -> &mut Machine {
        let name = self.name.clone();
        self.machine.as_mut().unwrap_or_else(|| panic!("{name} is not running"))
    }

    pub fn running(&self) -> bool {
        self.machine.is_some()
    }

    /// Pulls the plug: QEMU is killed, the disk keeps what reached it.
    pub fn kill(&mut self) {
        if let Some(mut m) = self.machine.take() {
            m.kill();
        }
    }

    /// The current QEMU's console so far.
    pub fn console(&self) -> String {
        self.machine.as_ref().map(|m| m.console.text()).unwrap_or_default()
    }

    /// Machine ids cairn-init made (and announced) during the current QEMU's
    /// boots: one on a fresh disk, none when STATE kept the id.
    pub fn new_machine_ids(&self) -> Vec<String> {
        self.console().lines().filter_map(|l| l.split("new machine id ").nth(1)).map(|id| id.trim().to_string()).collect()
    }

    /// A file on the VM's STATE file system (`/var` in the guest: pass
    /// `lib/cairn/machine-id` for `/var/lib/cairn/machine-id`), read from its
    /// disk on the host with debugfs. Only while the VM is off: a running
    /// guest's page cache is not on the disk yet.
    pub fn state_file(&self, path: &str) -> String {
        assert!(!self.running(), "{}: read STATE from the disk only while the VM is off", self.name);
        let raw = self.disk.with_extension("raw");
        let out = Command::new("qemu-img").args(["convert", "-O", "raw"]).arg(&self.disk).arg(&raw).output().expect("qemu-img");
        assert!(out.status.success(), "qemu-img convert {}: {}", self.disk.display(), String::from_utf8_lossy(&out.stderr));
        let offset = state_offset(&raw);
        let out = Command::new("debugfs")
            .args(["-R", &format!("cat /{}", path.trim_start_matches('/'))])
            .arg(format!("{}?offset={offset}", raw.display()))
            .output()
            .expect("debugfs");
        let _ = std::fs::remove_file(&raw);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = String::from_utf8_lossy(&out.stderr);
        // debugfs exits 0 even when the file is missing; it says so on stderr.
        assert!(out.status.success() && !err.contains("not found"), "{}: /var/{path} on STATE: {err}", self.name);
        text
    }
}

/// The byte offset of the STATE partition in a raw disk image.
fn state_offset(raw: &Path) -> u64 {
    let mut f = std::fs::File::open(raw).unwrap_or_else(|e| panic!("{}: {e}", raw.display()));
    let bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
    let (gpt, _) = cairn_gpt::Gpt::read(&mut f, bytes).unwrap_or_else(|e| panic!("{}: no GPT: {e}", raw.display()));
    let state = gpt.partitions.iter().find(|p| p.name == "STATE").unwrap_or_else(|| panic!("{}: no STATE partition", raw.display()));
    state.first_lba * cairn_gpt::SECTOR
}

/// The lab: namespace, bridge, CA, VMs.
pub struct Lab {
    /// The network namespace everything runs in.
    pub netns: String,
    pub vms: Vec<Vm>,
    /// The lab's CA (issue more certificates with it) and its PEM file.
    pub ca: Ca,
    pub ca_file: PathBuf,
    /// The admin client certificate [`Lab::ctl`] uses.
    pub admin: ClientFiles,
    /// Where the lab keeps its files; removed with the lab.
    pub dir: Scratch,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// Deletes lab namespaces whose test process is gone (a run that was killed
/// never ran its drop).
fn sweep_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name.strip_prefix("cairn-lab-").and_then(|r| r.split('-').next()) else { continue };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

impl Lab {
    /// An empty lab: the namespace with its bridge up, the CA and the admin
    /// certificate.
    pub fn new(name: &str) -> Lab {
        sweep_stale_namespaces();
        let dir = Scratch::new(&format!("lab-{name}")).expect("scratch directory");
        let (ca, ca_issued) = Ca::generate(&format!("cairn lab {name}"), Validity::days(2)).expect("lab CA");
        let ca_file = dir.path("ca.pem");
        write(&ca_file, &ca_issued.cert_pem);
        let netns = format!("cairn-lab-{}-{name}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &netns]).stderr(Stdio::null()).status();
        ip(&["netns", "add", &netns]);
        // From here on the lab's drop removes the namespace.
        let mut lab = Lab { netns, vms: Vec::new(), ca, ca_file, admin: ClientFiles { cert: PathBuf::new(), key: PathBuf::new() }, dir };
        let n = lab.netns.clone();
        ip(&["-n", &n, "link", "set", "lo", "up"]);
        ip(&["-n", &n, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &n, "addr", "add", &format!("{GATEWAY}/{PREFIX}"), "dev", "br0"]);
        ip(&["-n", &n, "link", "set", "br0", "up"]);
        lab.admin = lab.client("lab-admin", Role::Admin);
        lab
    }

    /// A client certificate of this role, written to the lab's directory.
    pub fn client(&self, name: &str, role: Role) -> ClientFiles {
        let issued = self.ca.issue_client(name, role, Validity::days(1)).expect("client certificate");
        let files = ClientFiles { cert: self.dir.path(&format!("{name}.pem")), key: self.dir.path(&format!("{name}.key")) };
        write(&files.cert, &issued.cert_pem);
        write(&files.key, &issued.key_pem);
        files
    }

    /// Adds a VM (not started); its index, which [`address`] maps to its address.
    pub fn add(&mut self, spec: VmSpec) -> usize {
        let index = self.vms.len();
        let address = address(index);
        let tap = format!("tap{index}");
        let mac = format!("52:54:00:77:00:{:02x}", 11 + index);
        let n = self.netns.clone();
        ip(&["-n", &n, "tuntap", "add", "dev", &tap, "mode", "tap"]);
        ip(&["-n", &n, "link", "set", &tap, "master", "br0"]);
        ip(&["-n", &n, "link", "set", &tap, "up"]);

        let disk = self.dir.path(&format!("{}.qcow2", spec.name));
        let base = if spec.uefi { "cairn-debug.qcow2" } else { "cairn.qcow2" };
        make_overlay(&out_dir().join(base), &disk).unwrap_or_else(|e| panic!("overlay on out/{base}: {e}"));
        if spec.uefi {
            qemu_img(&["resize", "-q", &disk.to_string_lossy(), "+1G"]).expect("qemu-img resize");
        }
        let node = self.ca.issue_server(&spec.name, &[spec.name.clone(), address.clone()], Validity::days(2)).expect("node certificate");
        let doc = self.dir.path(&format!("{}.toml", spec.name));
        write(&doc, &machine_config(&spec, &address, &self.ca.cert_pem, &node));

        let initrd = match spec.image {
            Image::Production => "initramfs.img",
            Image::Debug => "initramfs-debug.img",
        };
        let mut cfg = if spec.uefi {
            // The debug disk's boot entry turns its shell on.
            let mut c = Config::uefi(&out_dir(), "cairn-debug.qcow2").expect("make image ran").with_disk_file(&disk);
            c.debug_port = true;
            c
        } else {
            Config::from_out(&out_dir(), initrd).expect("make image ran").with_disk_file(&disk)
        };
        if spec.image == Image::Debug && !spec.uefi {
            cfg = cfg.with_debug_shell();
        }
        cfg.memory_mb = spec.memory_mb;
        cfg.netns = Some(self.netns.clone());
        cfg.user_net = false;
        cfg.extra_args.extend(fw_cfg(&doc));
        cfg.extra_args.extend(spec.qemu_args.iter().cloned());
        cfg.extra_args.extend([
            "-netdev".to_string(),
            format!("tap,id=lab,ifname={tap},script=no,downscript=no"),
            "-device".to_string(),
            format!("virtio-net-pci,netdev=lab,mac={mac}"),
        ]);
        self.vms.push(Vm { name: spec.name, address, mac, image: spec.image, disk, cfg, machine: None });
        index
    }

    /// Serves `dir` over HTTP inside the namespace at [`repository`] (the
    /// VMs have no other network), for as long as the answer lives.
    pub fn serve_repository(&self, dir: &Path) -> Served {
        let listen = format!("{GATEWAY}:{REPOSITORY_PORT}");
        let child = self.command("busybox").args(["httpd", "-f", "-p", &listen, "-h"]).arg(dir).spawn().expect("busybox httpd in the lab");
        std::thread::sleep(Duration::from_millis(500));
        Served(child)
    }

    pub fn vm(&mut self, index: usize) -> &mut Vm {
        &mut self.vms[index]
    }

    /// Starts every VM that is not running, then waits for the ready line of
    /// each one it started; those ready lines, in the VMs' order.
    pub fn start_all(&mut self) -> Vec<String> {
        let mut started = Vec::new();
        for (i, vm) in self.vms.iter_mut().enumerate().filter(|(_, v)| !v.running()) {
            vm.start();
            started.push(i);
        }
        started.into_iter().map(|i| self.vms[i].wait_ready()).collect()
    }

    /// Presses every VM's power button, then waits for each clean shutdown
    /// and for QEMU to exit. The disks stay.
    pub fn power_off_all(&mut self) {
        for vm in self.vms.iter_mut().filter(|v| v.running()) {
            let name = vm.name.clone();
            vm.machine().press_power_button().unwrap_or_else(|e| panic!("{name}: power button: {e}"));
        }
        for vm in self.vms.iter_mut().filter(|v| v.running()) {
            let name = vm.name.clone();
            let m = vm.machine();
            m.wait_for("clean shutdown complete", EXIT).unwrap_or_else(|e| panic!("{name}: no clean shutdown: {e}"));
            m.wait_exit(EXIT).unwrap_or_else(|e| panic!("{name}: QEMU does not exit: {e}"));
            vm.machine = None;
        }
    }

    /// A program to run inside the namespace (`ip netns exec`), with no
    /// proxy in its environment (nothing in the lab goes through one).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns]).arg(program);
        for v in ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"] {
            c.env_remove(v);
        }
        c.stdin(Stdio::null());
        c
    }

    /// Runs `argv` inside the namespace.
    pub fn exec(&self, argv: &[&str]) -> Run {
        let (program, args) = argv.split_first().expect("a program to run");
        let out = self.command(program).args(args).output().unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        Run::from(out)
    }

    /// `cairnctl --node A,B,... ARGS` inside the namespace with the admin
    /// certificate, against these VMs.
    pub fn ctl(&self, vms: &[usize], args: &[&str]) -> Run {
        self.ctl_as(&self.admin, vms, args)
    }

    /// Like [`Lab::ctl`], with another client certificate.
    pub fn ctl_as(&self, who: &ClientFiles, vms: &[usize], args: &[&str]) -> Run {
        let out = self.ctl_command(who, vms, args).output().unwrap_or_else(|e| panic!("cairnctl: {e}"));
        Run::from(out)
    }

    /// The `cairnctl` command [`Lab::ctl_as`] runs, to spawn (several at once).
    pub fn ctl_command(&self, who: &ClientFiles, vms: &[usize], args: &[&str]) -> Command {
        let nodes: Vec<&str> = vms.iter().map(|&i| self.vms[i].address.as_str()).collect();
        let bin = repo().join("target/x86_64-unknown-linux-gnu/release/cairnctl");
        assert!(bin.exists(), "{} is missing: run make image", bin.display());
        let mut c = self.command(&bin);
        c.arg("--node")
            .arg(nodes.join(","))
            .env("CAIRN_CA", &self.ca_file)
            .env("CAIRN_CERT", &who.cert)
            .env("CAIRN_KEY", &who.key)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// `cairnctl --output json` against these VMs: one JSON answer per VM, in
    /// the order given. Panics when any of them fails.
    pub fn ctl_json(&self, vms: &[usize], args: &[&str]) -> Vec<serde_json::Value> {
        let mut a = vec!["--output", "json"];
        a.extend_from_slice(args);
        let text = self.ctl(vms, &a).expect_ok(&format!("cairnctl {}", a.join(" ")));
        let docs = split_per_node(&text, vms.len());
        docs.iter()
            .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("cairnctl {}: not JSON ({e}):\n{text}", a.join(" "))))
            .collect()
    }

    /// `GET path` from this VM's agent with the admin certificate (curl in
    /// the namespace): the JSON answer, or None when it did not answer 200.
    pub fn api_get(&self, index: usize, path: &str) -> Option<serde_json::Value> {
        let url = format!("https://{}:9440{path}", self.vms[index].address);
        let (ca, cert, key) = (self.ca_file.to_string_lossy(), self.admin.cert.to_string_lossy(), self.admin.key.to_string_lossy());
        let run = self.exec(&["curl", "-sS", "--fail", "--max-time", "30", "--cacert", &ca, "--cert", &cert, "--key", &key, &url]);
        if !run.ok {
            return None;
        }
        serde_json::from_str(&run.stdout).ok()
    }

    /// Waits until every running VM's agent answers `status`.
    pub fn wait_agents(&self) {
        for i in (0..self.vms.len()).filter(|&i| self.vms[i].running()) {
            self.wait_agent(i);
        }
    }

    /// Waits until this VM's agent answers `status` (it starts with the services).
    pub fn wait_agent(&self, index: usize) {
        let started = Instant::now();
        loop {
            let run = self.ctl(&[index], &["status"]);
            if run.ok {
                return;
            }
            assert!(started.elapsed() < AGENT_WAIT, "{}: sysagent never answered: {}", self.vms[index].name, run.stderr);
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // QEMU first: the taps go with the namespace.
        self.vms.clear();
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).status();
    }
}

/// The VM's machine config: name, the lab link, extra TOML, the agent.
fn machine_config(spec: &VmSpec, address: &str, ca_pem: &str, node: &Issued) -> String {
    format!(
        "version = 1\nhostname = \"{}\"\n\n{}\n\n[[network.links]]\nname = \"eth0\"\naddresses = [\"{address}/{PREFIX}\"]\n\n[api]\nca = '''\n{ca_pem}'''\ncertificate = '''\n{}'''\nkey = '''\n{}'''\n",
        spec.name, spec.config, node.cert_pem, node.key_pem
    )
}

/// cairnctl's output for several nodes is `== NODE` and that node's answer,
/// node after node; for one node it is the answer alone.
fn split_per_node(text: &str, nodes: usize) -> Vec<String> {
    if nodes == 1 {
        return vec![text.to_string()];
    }
    let mut docs: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with("== ") {
            docs.push(String::new());
        } else if let Some(d) = docs.last_mut() {
            d.push_str(line);
            d.push('\n');
        }
    }
    assert_eq!(docs.len(), nodes, "one answer per node expected:\n{text}");
    docs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_of_several_nodes_are_split_at_their_headers() {
        let text = "== 10.77.0.11\n{\n  \"a\": 1\n}\n== 10.77.0.12\n{\"a\": 2}\n";
        assert_eq!(split_per_node(text, 2), ["{\n  \"a\": 1\n}\n", "{\"a\": 2}\n"]);
        assert_eq!(split_per_node("{}\n", 1), ["{}\n"]);
    }

    #[test]
    fn the_machine_config_carries_name_link_extra_and_agent() {
        let (ca, ca_files) = Ca::generate("t", Validity::days(1)).unwrap();
        let node = ca.issue_server("n1", &["n1".into(), address(0)], Validity::days(1)).unwrap();
        let spec = VmSpec::production("n1").with_config("[cluster]\nrole = \"manager\"\n");
        let text = machine_config(&spec, &address(0), &ca_files.cert_pem, &node);
        // The machine's own checker reads it: every key in its place.
        let doc = cairn_model::config::parse(&text, "lab").unwrap_or_else(|p| panic!("{p:?}\n{text}"));
        assert_eq!(doc.hostname.as_deref(), Some("n1"));
        assert_eq!(doc.network.links.len(), 1, "{text}");
        assert_eq!(doc.network.links[0].addressing.addresses.iter().map(|a| format!("{}/{}", a.addr, a.prefix)).collect::<Vec<_>>(), ["10.77.0.11/24"]);
        assert!(!doc.network.links[0].addressing.dhcp);
        assert!(doc.cluster.is_some() && doc.api.enabled, "{text}");
    }
}
