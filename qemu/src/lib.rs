//! Boots Cairn (or any kernel + initramfs) in QEMU and drives it the way a user
//! would: reads the serial console, presses the power button and Ctrl-Alt-Del
//! through QMP, and types into the debug shell on the second serial port.
//!
//! QEMU always runs with `-accel tcg` (KVM hangs guests on these hosts) and one
//! vCPU by default (two TCG vCPUs hang about one boot in forty).

pub mod metadata;
mod qmp;
pub mod repo;
pub mod sources;

pub use qmp::Qmp;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Missing {path}: run `make image` first")]
    MissingArtifact { path: String },
    #[error("Cannot start {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Timed out after {waited:?} waiting for {what}; console so far:\n{console}")]
    Timeout { what: String, waited: Duration, console: String },
    #[error("QEMU exited ({status}) while waiting for {what}; console:\n{console}")]
    Exited { what: String, status: String, console: String },
    #[error("QMP: {0}")]
    Qmp(String),
    #[error("I/O with QEMU failed")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// How the machine starts.
#[derive(Debug, Clone)]
pub enum Boot {
    /// QEMU loads the kernel and initramfs itself (fast development loop).
    Direct { kernel: PathBuf, initrd: PathBuf },
    /// OVMF firmware, then systemd-boot from the disk's ESP.
    Uefi,
}

/// The machine's disk.
#[derive(Debug, Clone)]
pub enum Disk {
    /// A fresh qcow2 overlay on this image, thrown away with the machine.
    Overlay(PathBuf),
    /// This file itself (raw or qcow2, by extension); changes persist.
    File(PathBuf),
}

/// The controller the machine's disk sits behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskBus {
    VirtioBlk,
    /// virtio-scsi (GCE, some clouds).
    VirtioScsi,
    /// NVMe (AWS Nitro, GCE, servers).
    Nvme,
    /// q35's own AHCI controller (SATA, servers).
    Sata,
}

impl DiskBus {
    fn device_args(self) -> Vec<String> {
        let dev = match self {
            DiskBus::VirtioBlk => "virtio-blk-pci,drive=disk0",
            DiskBus::VirtioScsi => return ["-device", "virtio-scsi-pci,id=scsi0", "-device", "scsi-hd,drive=disk0,bus=scsi0.0,bootindex=1"].map(String::from).to_vec(),
            DiskBus::Nvme => "nvme,drive=disk0,serial=cairn-disk0",
            DiskBus::Sata => "ide-hd,drive=disk0,bus=ide.0",
        };
        vec!["-device".into(), format!("{dev},bootindex=1")]
    }
}

/// What to boot.
#[derive(Debug, Clone)]
pub struct Config {
    pub boot: Boot,
    /// Kernel arguments (direct boot only; under UEFI the boot entry has them).
    pub cmdline: String,
    pub disk: Option<Disk>,
    /// What `disk` is attached to.
    pub disk_bus: DiskBus,
    /// The NIC's QEMU device model (`virtio-net-pci`, `vmxnet3`, `e1000e`).
    pub nic: String,
    /// Further disk files (raw or qcow2, by extension) attached in front of
    /// `disk`, so the guest enumerates them first; never booted from.
    pub disks_in_front: Vec<PathBuf>,
    pub memory_mb: u32,
    pub cpus: u32,
    /// A second serial port (the guest's ttyS1) on a Unix socket, for the debug shell.
    pub debug_port: bool,
    /// Console on this process's terminal instead of captured (for `make run`).
    pub interactive: bool,
    /// Let the guest reboot (Ctrl-Alt-Del) instead of making QEMU exit.
    pub allow_reboot: bool,
    /// More options for the user network, each starting with a comma
    /// (`,net=169.254.169.0/24,guestfwd=...`).
    pub netdev: String,
    /// Run QEMU inside this network namespace (`ip netns exec`), where a
    /// test's taps and servers live apart from the host's networks.
    pub netns: Option<String>,
    /// QEMU's user network (NAT through this process) as the first NIC; off
    /// for machines whose only link is a tap in `netns` (the lab).
    pub user_net: bool,
    pub extra_args: Vec<String>,
    /// Bytes appended to the kernel command line as they are: they need not
    /// be UTF-8 (direct boot only).
    pub cmdline_raw: Vec<u8>,
}

impl Config {
    /// The image `make image` left in `out`: out/vmlinuz, the given initramfs,
    /// out/cmdline, and an overlay on out/cairn.qcow2 as the disk.
    pub fn from_out(out: &Path, initrd: &str) -> Result<Config> {
        let kernel = need(out.join("vmlinuz"))?;
        let initrd = need(out.join(initrd))?;
        let cmdline_path = need(out.join("cmdline"))?;
        let cmdline = std::fs::read_to_string(cmdline_path)?.trim().to_string();
        let disk = Some(Disk::Overlay(need(out.join("cairn.qcow2"))?));
        Ok(Config::new(Boot::Direct { kernel, initrd }, cmdline, disk))
    }

    /// UEFI boot of a disk image from `out` (an overlay on it); the image may
    /// be qcow2, VHD, VMDK or raw, by its extension.
    pub fn uefi(out: &Path, image: &str) -> Result<Config> {
        let disk = Some(Disk::Overlay(need(out.join(image))?));
        Ok(Config::new(Boot::Uefi, String::new(), disk))
    }

    /// A kernel and initramfs with no disk (the benchmark's busybox).
    pub fn kernel_only(out: &Path, initrd: &str, cmdline: &str) -> Result<Config> {
        let kernel = need(out.join("vmlinuz"))?;
        let initrd = need(out.join(initrd))?;
        Ok(Config::new(Boot::Direct { kernel, initrd }, cmdline.to_string(), None))
    }

    fn new(boot: Boot, cmdline: String, disk: Option<Disk>) -> Config {
        Config {
            boot,
            cmdline,
            disk,
            disk_bus: DiskBus::VirtioBlk,
            nic: "virtio-net-pci".into(),
            disks_in_front: Vec::new(),
            memory_mb: 512,
            cpus: 1,
            debug_port: false,
            interactive: false,
            allow_reboot: true,
            netdev: String::new(),
            netns: None,
            user_net: true,
            extra_args: Vec::new(),
            cmdline_raw: Vec::new(),
        }
    }

    pub fn append(mut self, args: &str) -> Config {
        self.cmdline.push(' ');
        self.cmdline.push_str(args);
        self
    }

    /// Boots from this disk file instead of a throwaway overlay.
    pub fn with_disk_file(mut self, path: &Path) -> Config {
        self.disk = Some(Disk::File(path.to_path_buf()));
        self
    }

    /// The debug image with its shell turned on, on the second serial port.
    pub fn with_debug_shell(mut self) -> Config {
        self.debug_port = true;
        self.append("cairn.debug=shell")
    }
}

/// QEMU's name for a disk file's format, from its extension (raw if unknown).
fn disk_format(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()) {
        Some("qcow2") => "qcow2",
        Some("vhd") => "vpc",
        Some("vmdk") => "vmdk",
        _ => "raw",
    }
}

fn need(p: PathBuf) -> Result<PathBuf> {
    if p.exists() {
        Ok(p)
    } else {
        Err(Error::MissingArtifact { path: p.display().to_string() })
    }
}

pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

fn run_tool(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().map_err(|source| Error::Spawn { program: what.into(), source })?;
    if !out.status.success() {
        return Err(Error::Qmp(format!("{what} failed: {}", String::from_utf8_lossy(&out.stderr))));
    }
    Ok(())
}

/// A qcow2 overlay at `path` on `base`: a disk a test may change, and keep
/// across machines, without touching `out/`.
pub fn make_overlay(base: &Path, path: &Path) -> Result<()> {
    let base = std::fs::canonicalize(base)?;
    let _ = std::fs::remove_file(path);
    run_tool(
        Command::new("qemu-img").args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"]).arg(&base).arg(path),
        "qemu-img create",
    )
}

/// Runs `qemu-img` with these arguments (resize, info...).
pub fn qemu_img(args: &[&str]) -> Result<()> {
    run_tool(Command::new("qemu-img").args(args), "qemu-img")
}

/// A scratch directory for one test, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Result<Scratch> {
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("cairn-test-{name}-{}-{id}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The repository's `out/` directory, found from this crate's location.
pub fn out_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../out")
}

#[derive(Default)]
struct ConsoleState {
    lines: Vec<(Instant, String)>,
    partial: String,
    closed: bool,
}

/// The captured serial console, filled by a reader thread.
#[derive(Default, Clone)]
pub struct Console {
    state: Arc<(Mutex<ConsoleState>, Condvar)>,
}

impl Console {
    fn feed(&self, bytes: &[u8]) {
        let (lock, cv) = &*self.state;
        let Ok(mut st) = lock.lock() else { return };
        for &b in bytes {
            match b {
                b'\n' => {
                    let line = std::mem::take(&mut st.partial);
                    st.lines.push((Instant::now(), line));
                }
                b'\r' => {}
                _ => st.partial.push(b as char),
            }
        }
        cv.notify_all();
    }

    fn close(&self) {
        let (lock, cv) = &*self.state;
        if let Ok(mut st) = lock.lock() {
            let line = std::mem::take(&mut st.partial);
            if !line.is_empty() {
                st.lines.push((Instant::now(), line));
            }
            st.closed = true;
        }
        cv.notify_all();
    }

    pub fn text(&self) -> String {
        let (lock, _) = &*self.state;
        lock.lock().map(|st| st.lines.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>().join("\n")).unwrap_or_default()
    }

    pub fn lines(&self) -> Vec<String> {
        let (lock, _) = &*self.state;
        lock.lock().map(|st| st.lines.iter().map(|(_, l)| l.clone()).collect()).unwrap_or_default()
    }

    /// Waits for a line at index >= `from` that contains `needle`; returns its
    /// index, the line and when it arrived.
    fn wait_line(&self, from: usize, needle: &str, timeout: Duration) -> std::result::Result<(usize, String, Instant), bool> {
        let (lock, cv) = &*self.state;
        let deadline = Instant::now() + timeout;
        let Ok(mut st) = lock.lock() else { return Err(false) };
        loop {
            if let Some((i, (t, l))) = st.lines.iter().enumerate().skip(from).find(|(_, (_, l))| l.contains(needle)) {
                return Ok((i, l.clone(), *t));
            }
            if st.closed {
                return Err(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(false);
            }
            st = match cv.wait_timeout(st, deadline - now) {
                Ok((g, _)) => g,
                Err(_) => return Err(false),
            };
        }
    }
}

/// A running QEMU. Dropping it kills QEMU.
pub struct Machine {
    child: Child,
    pub console: Console,
    pub started: Instant,
    cursor: usize,
    dir: PathBuf,
    qmp: Option<Qmp>,
    shell: Option<Shell>,
}

static NEXT_ID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Machine {
    pub fn start(cfg: &Config) -> Result<Machine> {
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("cairn-qemu-{}-{id}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let qmp_path = dir.join("qmp.sock");
        let shell_path = dir.join("shell.sock");
        let mut cmd = match &cfg.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "qemu-system-x86_64"]);
                c
            }
            None => Command::new("qemu-system-x86_64"),
        };
        cmd.args(["-machine", "q35", "-accel", "tcg,tb-size=256", "-nodefaults", "-no-user-config"])
            .args(["-display", "none", "-smp", &cfg.cpus.to_string(), "-m", &cfg.memory_mb.to_string()]);
        match &cfg.boot {
            Boot::Direct { kernel, initrd } => {
                let mut append = cfg.cmdline.clone().into_bytes();
                if !cfg.cmdline_raw.is_empty() {
                    append.push(b' ');
                    append.extend_from_slice(&cfg.cmdline_raw);
                }
                let append = <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(append);
                cmd.arg("-kernel").arg(kernel).arg("-initrd").arg(initrd).arg("-append").arg(append);
            }
            Boot::Uefi => {
                let vars = dir.join("OVMF_VARS.fd");
                std::fs::copy(OVMF_VARS, &vars).map_err(|source| Error::Spawn { program: OVMF_VARS.into(), source })?;
                cmd.arg("-drive")
                    .arg(format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"))
                    .arg("-drive")
                    .arg(format!("if=pflash,format=raw,unit=1,file={}", vars.display()));
            }
        }
        for (i, p) in cfg.disks_in_front.iter().enumerate() {
            cmd.arg("-drive")
                .arg(format!("file={},format={},if=none,id=front{i}", p.display(), disk_format(p)))
                .args(["-device", &format!("virtio-blk-pci,drive=front{i}")]);
        }
        if let Some(disk) = &cfg.disk {
            let (path, format) = match disk {
                Disk::Overlay(base) => {
                    let base = std::fs::canonicalize(base)?;
                    let overlay = dir.join("disk.qcow2");
                    run_tool(
                        Command::new("qemu-img")
                            .args(["create", "-q", "-f", "qcow2", "-F", disk_format(&base), "-b"])
                            .arg(&base)
                            .arg(&overlay),
                        "qemu-img create",
                    )?;
                    (overlay, "qcow2")
                }
                Disk::File(p) => (p.clone(), disk_format(p)),
            };
            cmd.arg("-drive")
                .arg(format!("file={},format={format},if=none,id=disk0", path.display()))
                .args(cfg.disk_bus.device_args());
        }
        if cfg.user_net {
            cmd.arg("-netdev").arg(format!("user,id=n0{}", cfg.netdev)).args(["-device", &format!("{},netdev=n0", cfg.nic)]);
        }
        cmd.args(["-device", "virtio-rng-pci"])
            .arg("-qmp").arg(format!("unix:{},server=on,wait=off", qmp_path.display()));
        if cfg.interactive {
            // A multiplexed stdio: Ctrl-A X quits QEMU, Ctrl-A C switches to
            // QEMU's monitor (`system_powerdown` there powers off cleanly).
            // Ctrl-C goes to the guest, where a debug shell wants it.
            cmd.args(["-chardev", "stdio,id=con,signal=off,mux=on", "-serial", "chardev:con"])
                .args(["-mon", "chardev=con,mode=readline"]);
        } else {
            cmd.args(["-serial", "stdio"]);
        }
        if cfg.debug_port {
            cmd.arg("-chardev")
                .arg(format!("socket,id=dbg,path={},server=on,wait=off", shell_path.display()))
                .args(["-serial", "chardev:dbg"]);
        }
        if !cfg.allow_reboot {
            cmd.arg("-no-reboot");
        }
        cmd.args(&cfg.extra_args);
        let console = Console::default();
        if cfg.interactive {
            cmd.stdin(Stdio::inherit()).stdout(Stdio::inherit());
        } else {
            cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        }
        cmd.stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|source| Error::Spawn { program: "qemu-system-x86_64".into(), source })?;
        if let Some(mut out) = child.stdout.take() {
            let c = console.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = out.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    c.feed(&buf[..n]);
                }
                c.close();
            });
        }
        if let Some(err) = child.stderr.take() {
            let c = console.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(std::result::Result::ok) {
                    c.feed(format!("[qemu stderr] {line}\n").as_bytes());
                }
            });
        }
        let mut m = Machine { child, console, started, cursor: 0, dir, qmp: None, shell: None };
        m.qmp = Some(m.connect_qmp(&qmp_path)?);
        if cfg.debug_port {
            m.shell = Some(Shell::connect(&shell_path)?);
        }
        Ok(m)
    }

    fn connect_qmp(&mut self, path: &Path) -> Result<Qmp> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Qmp::connect(path) {
                Ok(q) => return Ok(q),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => {
                    if let Ok(Some(st)) = self.child.try_wait() {
                        return Err(Error::Exited { what: "QMP".into(), status: st.to_string(), console: self.console.text() });
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    /// Waits for the next console line (after the last one matched) that
    /// contains `needle`, and returns it.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        self.wait_for_timed(needle, timeout).map(|(l, _)| l)
    }

    /// Like [`Machine::wait_for`], with the time the line arrived.
    pub fn wait_for_timed(&mut self, needle: &str, timeout: Duration) -> Result<(String, Instant)> {
        match self.console.wait_line(self.cursor, needle, timeout) {
            Ok((i, line, t)) => {
                self.cursor = i + 1;
                Ok((line, t))
            }
            Err(closed) => {
                let console = self.console.text();
                if closed {
                    let status = self.child.try_wait().ok().flatten().map_or("running".into(), |s| s.to_string());
                    Err(Error::Exited { what: format!("`{needle}`"), status, console })
                } else {
                    Err(Error::Timeout { what: format!("`{needle}`"), waited: timeout, console })
                }
            }
        }
    }

    pub fn qmp(&mut self, command: &str, args: serde_json::Value) -> Result<serde_json::Value> {
        let q = self.qmp.as_mut().ok_or_else(|| Error::Qmp("not connected".into()))?;
        q.execute(command, args)
    }

    /// The ACPI power button, as a cloud provider's "stop" presses it.
    pub fn press_power_button(&mut self) -> Result<()> {
        self.qmp("system_powerdown", serde_json::json!({})).map(drop)
    }

    /// The power button, then the clean shutdown's last line, then QEMU's
    /// own exit, each within `timeout`.
    pub fn power_off(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        self.press_power_button()?;
        self.wait_for("clean shutdown complete, powering off", timeout)?;
        self.wait_exit(timeout)
    }

    pub fn send_ctrl_alt_del(&mut self) -> Result<()> {
        let keys = serde_json::json!({"keys": [
            {"type": "qcode", "data": "ctrl"},
            {"type": "qcode", "data": "alt"},
            {"type": "qcode", "data": "delete"}
        ]});
        self.qmp("send-key", keys).map(drop)
    }

    /// Waits for QEMU to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout { what: "QEMU to exit".into(), waited: timeout, console: self.console.text() });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a command in the debug shell and returns its output and exit code.
    pub fn sh(&mut self, command: &str) -> Result<(String, i32)> {
        self.sh_for(command, Duration::from_secs(60))
    }

    /// Like [`Machine::sh`], for commands that take longer than a minute.
    pub fn sh_for(&mut self, command: &str, timeout: Duration) -> Result<(String, i32)> {
        let console = self.console.clone();
        let shell = self.shell.as_mut().ok_or_else(|| Error::Qmp("no debug port on this machine".into()))?;
        shell.run(command, timeout).map_err(|e| match e {
            Error::Timeout { what, waited, .. } => Error::Timeout { what, waited, console: console.text() },
            other => other,
        })
    }

    /// Runs a command that must succeed; returns its output.
    pub fn sh_ok(&mut self, command: &str) -> Result<String> {
        let (out, code) = self.sh(command)?;
        if code != 0 {
            return Err(Error::Qmp(format!("`{command}` exited {code}: {out}")));
        }
        Ok(out)
    }

    /// Types a line into the debug shell without waiting for an answer (for
    /// commands that end the shell). The next command first waits for a shell.
    pub fn sh_send(&mut self, line: &str) -> Result<()> {
        let shell = self.shell.as_mut().ok_or_else(|| Error::Qmp("no debug port on this machine".into()))?;
        shell.ready = false;
        shell.stream.write_all(format!("{line}\n").as_bytes())?;
        Ok(())
    }

    /// After the guest rebooted, the next command first waits for the new shell.
    pub fn shell_restarted(&mut self) {
        if let Some(s) = self.shell.as_mut() {
            s.ready = false;
        }
    }

    /// Stops QEMU at once, like pulling the plug.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The guest's debug shell on its second serial port.
struct Shell {
    stream: UnixStream,
    buf: Vec<u8>,
    seq: u32,
    ready: bool,
}

impl Shell {
    fn connect(path: &Path) -> Result<Shell> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match UnixStream::connect(path) {
                Ok(stream) => return Ok(Shell { stream, buf: Vec::new(), seq: 0, ready: false }),
                Err(e) if Instant::now() >= deadline => return Err(e.into()),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn read_until(&mut self, marker: &str, deadline: Instant) -> Result<Option<String>> {
        loop {
            let text = String::from_utf8_lossy(&self.buf).replace('\r', "");
            if let Some(pos) = text.find(marker) {
                if let Some(nl) = text[pos..].find('\n') {
                    let upto = pos + nl + 1;
                    let consumed = text[..upto].to_string();
                    let raw_len = {
                        // Map back to the raw buffer: drop the bytes up to the
                        // marker line, counting the \r we removed.
                        let mut seen = 0;
                        let mut raw = 0;
                        for &b in &self.buf {
                            if seen == upto {
                                break;
                            }
                            raw += 1;
                            if b != b'\r' {
                                seen += 1;
                            }
                        }
                        raw
                    };
                    self.buf.drain(..raw_len);
                    return Ok(Some(consumed));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.stream.set_read_timeout(Some((deadline - now).min(Duration::from_millis(200))))?;
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(Error::Qmp("debug shell socket closed".into())),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Waits until the shell answers; it may not have started yet, and bytes
    /// sent before the guest opened the port are lost.
    fn sync(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            self.seq += 1;
            let n = self.seq;
            self.stream.write_all(format!("\nPS1=; PS2=; stty -echo; echo SY''NC{n}\n").as_bytes())?;
            if self.read_until(&format!("SYNC{n}"), Instant::now() + Duration::from_secs(2))?.is_some() {
                self.ready = true;
                return Ok(());
            }
        }
        Err(Error::Timeout { what: "the debug shell".into(), waited: timeout, console: String::new() })
    }

    fn run(&mut self, command: &str, timeout: Duration) -> Result<(String, i32)> {
        if !self.ready {
            self.sync(Duration::from_secs(60))?;
        }
        self.seq += 1;
        let n = self.seq;
        // The quotes keep the echoed command line from matching the markers.
        let line = format!("echo BE''GIN{n}; {command}\necho EN''D{n} $?\n");
        self.stream.write_all(line.as_bytes())?;
        let deadline = Instant::now() + timeout;
        let what = || Error::Timeout { what: format!("`{command}` in the debug shell"), waited: timeout, console: String::new() };
        self.read_until(&format!("BEGIN{n}"), deadline)?.ok_or_else(what)?;
        let out = self.read_until(&format!("END{n} "), deadline)?.ok_or_else(what)?;
        let marker = format!("END{n} ");
        let pos = out.rfind(&marker).unwrap_or(out.len());
        let code = out[pos..].trim_start_matches(&marker).trim().parse().unwrap_or(-1);
        Ok((out[..pos].to_string(), code))
    }
}

/// Parses `key=value` fields of a console line (the ready line).
pub fn field(line: &str, key: &str) -> Option<String> {
    line.split_whitespace().find_map(|w| w.strip_prefix(&format!("{key}=")).map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_the_ready_line() {
        let l = "cairn-init: ready boot_ms=1834 rss_kb=1020 services=0 ip=10.0.2.15/24";
        assert_eq!(field(l, "boot_ms").as_deref(), Some("1834"));
        assert_eq!(field(l, "ip").as_deref(), Some("10.0.2.15/24"));
        assert_eq!(field(l, "nope"), None);
    }

    #[test]
    fn console_splits_lines_and_drops_carriage_returns() {
        let c = Console::default();
        c.feed(b"a\r\nb");
        c.feed(b"c\r\n");
        assert_eq!(c.lines(), ["a", "bc"]);
        assert_eq!(c.wait_line(0, "bc", Duration::from_millis(1)).map(|(i, l, _)| (i, l)), Ok((1, "bc".into())));
        assert!(c.wait_line(2, "bc", Duration::from_millis(1)).is_err());
    }
}
