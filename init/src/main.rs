//! cairn-init: Cairn's PID 1.
//!
//! Boot: early mounts, command line, modules, power button, network, supervised
//! processes, then the ready line. After that, one event loop: signals
//! (children, power off, reboot), ACPI events, network reports and restart
//! timers. PID 1 never exits: errors are logged and boot goes on; a panic ends
//! in sync and reboot.

mod cmdline;
mod control;
mod disk;
mod health;
mod logs;
mod log;
mod modules;
mod mounts;
mod net;
mod power;
mod reaper;
mod supervisor;
mod services;
mod sys;
mod watchdog;

use cmdline::{NetMode, Settings};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const BOOT_MODULES: &str = "/etc/cairn/modules.boot";
const ROOT_MODULES: &str = "/etc/cairn/modules.root";
const SIGNALS: &[libc::c_int] =
    &[libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGPWR, libc::SIGHUP, libc::SIGUSR1, libc::SIGUSR2];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    PowerOff,
    Reboot,
}

struct Init {
    boot_started: Instant,
    warned_not_ready: bool,
    control: Option<control::Control>,
    logs: logs::Logs,
    kmsg: Option<std::fs::File>,
    health_tx: Option<mpsc::Sender<health::Request>>,
    health_rx: Option<mpsc::Receiver<health::Outcome>>,
    settings: Settings,
    signals: OwnedFd,
    acpi: Option<power::AcpiListener>,
    wake: OwnedFd,
    net: Option<mpsc::Receiver<net::Status>>,
    net_status: Option<net::Status>,
    net_deadline: Instant,
    registry: reaper::Registry,
    supervisor: supervisor::Supervisor,
    mounted: mounts::Mounted,
    ready: bool,
    watchdog: Option<watchdog::Watchdog>,
    /// Whether this boot's verdict went to the updater.
    verdict: bool,
}

/// The updater's verdict on a boot: healthy blesses a trial entry, unhealthy
/// gives it up; on every boot it also notices a trial that failed before.
const CAIRNCTL: &str = "/usr/bin/cairnctl";
/// What the updater needs on a UEFI machine: the ESP and systemd-boot's variables.
const UPDATE_MODULES: &[&str] = &["efivarfs", "vfat", "nls_cp437", "nls_iso8859_1"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--version") {
        println!("cairn-init {VERSION}");
        return;
    }
    if std::process::id() != 1 {
        eprintln!("cairn-init: must run as PID 1 (this is pid {})", std::process::id());
        std::process::exit(2);
    }
    std::panic::set_hook(Box::new(panic_hook));
    // One malloc arena for all threads: PID 1 allocates little, and every
    // extra arena costs resident pages.
    // SAFETY: mallopt only tunes the allocator; called before any thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    let logger = log::init(tracing::Level::INFO);
    let stage2 = args.iter().any(|a| a == "--stage2");
    let watchdog_fd = args.iter().find_map(|a| a.strip_prefix(watchdog::FD_ARG)?.parse().ok());
    let mut init = boot(logger, stage2, watchdog_fd);
    init.run()
}

/// Logs the panic, syncs and reboots: a machine that restarts is better than a
/// kernel panic for killing init, and far better than a hung one.
fn panic_hook(info: &std::panic::PanicHookInfo<'_>) {
    say(&format!("cairn-init: PANIC {info}; syncing and rebooting"));
    sys::sync();
    let _ = sys::reboot(libc::RB_AUTOBOOT);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Writes a line that must reach the console (ready, shutdown, panic), even
/// before the logger exists.
fn say(line: &str) {
    match log::get() {
        Some(l) => l.write_line(line, true),
        None => {
            let _ = std::fs::write("/dev/console", format!("{line}\n"));
        }
    }
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn boot(logger: &'static log::Logger, stage2: bool, watchdog_fd: Option<i32>) -> Init {
    let entered_ms = sys::boottime_ms();
    // Block the signals before any thread exists so every thread inherits the
    // mask and they all arrive on the signalfd.
    let signals = match sys::signalfd(SIGNALS) {
        Ok(fd) => fd,
        Err(e) => panic!("cannot create the signalfd: {e}"),
    };
    if let Err(e) = sys::disable_ctrl_alt_del() {
        warn!("cannot route Ctrl-Alt-Del to init: {e}");
    }
    let mut mounted = mounts::Mounted::default();
    let mount_errors = mounts::mount_table(&mut mounts::RealMounter, mounts::EARLY_MOUNTS, &mut mounted);
    logger.reopen();
    for e in &mount_errors {
        error!("{}", error_chain(e));
    }
    // Lift the kernel's rate limit on /dev/kmsg writes: PID 1's log is not spam.
    let _ = std::fs::write("/proc/sys/kernel/printk_devkmsg", "on\n");

    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let (settings, warnings) = cmdline::parse(&cmdline);
    logger.set_level(settings.log_level);
    let release = sys::kernel_release().unwrap_or_else(|_| "unknown".into());
    let stage = match (stage2, settings.slot) {
        (true, _) => "stage 2",
        (false, Some(_)) => "stage 1",
        (false, None) => "initramfs only",
    };
    info!("cairn-init {VERSION} {stage} kernel={release} entered_ms={entered_ms}");
    for w in &warnings {
        warn!("{w}");
    }
    if !stage2 && settings.slot.is_some() {
        stage1(&release, &settings);
    }
    if stage2 {
        prepare_stage2(&mut mounted);
    }

    // The network thread waits for its link to appear, so it starts before the
    // modules load and DHCP overlaps with the rest of module loading.
    let (wake_rd, wake_wr) = match sys::pipe() {
        Ok(p) => p,
        Err(e) => panic!("cannot create the wake pipe: {e}"),
    };
    let health_wake = wake_wr.try_clone();
    let net = match net::spawn(&settings, wake_wr) {
        Ok(rx) => Some(rx),
        Err(e) => {
            error!("cannot start the network thread: {e}");
            None
        }
    };
    let net_status = if net.is_none() { Some(net::Status::Failed("no network thread".into())) } else { None };

    load_modules(&release, &settings, &[BOOT_MODULES]);
    let watchdog = match (settings.watchdog.is_zero(), watchdog_fd) {
        (true, _) => None,
        (false, Some(fd)) => watchdog::Watchdog::inherit(fd, settings.watchdog)
            .map_err(|e| warn!("cannot take over the watchdog from stage 1 (fd {fd}): {e}"))
            .ok(),
        (false, None) => arm_watchdog(&settings),
    };

    let acpi = match power::AcpiListener::open() {
        Ok(l) => Some(l),
        Err(e) => {
            warn!("no ACPI power button events: {}", error_chain(&e));
            None
        }
    };

    let now = Instant::now();
    let mut supervisor = supervisor::Supervisor::new();
    supervisor::set_runtime(&settings.runtime);
    for spec in services::load(&settings.enable, &settings.disable, &settings.runtime) {
        supervisor.add(spec, now);
    }
    if let Some(spec) = containerd_spec(&release, &settings) {
        supervisor.add(spec, now);
    }
    let (health_tx, health_rx) = match health_wake.and_then(health::spawn) {
        Ok((tx, rx)) => (Some(tx), Some(rx)),
        Err(e) => {
            error!("no TCP/HTTP health checks: cannot start their thread: {e}");
            (None, None)
        }
    };
    let control = match control::Control::open() {
        Ok(c) => Some(c),
        Err(e) => {
            error!("no control socket at {}: {e}", control::SOCKET);
            None
        }
    };
    let kmsg = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/kmsg")
        .ok();
    let logs = logs::Logs::new(stage2 && sys::is_mountpoint(Path::new("/var")));
    if settings.debug_shell {
        let shell = [format!("{}/sh", disk::DEBUG_BIN), "/bin/sh".to_string()].into_iter().find(|p| Path::new(p).exists());
        if let Some(shell) = shell {
            warn!("debug shell enabled on /dev/{} (cairn.debug=shell)", settings.debug_tty);
            supervisor.add(debug_shell_spec(&settings, &shell), now);
        } else {
            warn!("cairn.debug=shell asked for a shell, but this image has none (build the debug image)");
        }
    }

    Init {
        boot_started: now,
        warned_not_ready: false,
        control,
        logs,
        kmsg,
        health_tx,
        health_rx,
        net_deadline: now + settings.net_timeout + Duration::from_secs(1),
        settings,
        signals,
        acpi,
        wake: wake_rd,
        net,
        net_status,
        registry: reaper::Registry::default(),
        supervisor,
        mounted,
        ready: false,
        watchdog,
        verdict: false,
    }
}

fn arm_watchdog(settings: &Settings) -> Option<watchdog::Watchdog> {
    match watchdog::Watchdog::arm(settings.watchdog) {
        Ok(w) => {
            info!("watchdog armed: reboot if PID 1 hangs for {} s", settings.watchdog.as_secs());
            Some(w)
        }
        Err(e) => {
            warn!("no watchdog (softdog): {e}");
            None
        }
    }
}

/// Stage 1 never returns: it execs stage 2, or logs why it could not and
/// reboots, which uses up one of the boot entry's tries.
fn stage1(release: &str, settings: &Settings) -> ! {
    load_modules(release, settings, &[BOOT_MODULES, ROOT_MODULES]);
    // Armed before the root is even found: a trial slot that hangs anywhere
    // from here on reboots and uses up a try.
    let mut stage2_args = vec!["--stage2".to_string()];
    if !settings.watchdog.is_zero() {
        if let Some(w) = arm_watchdog(settings) {
            stage2_args.push(format!("{}{}", watchdog::FD_ARG, w.into_raw_fd()));
        }
    }
    let err = match &settings.verity {
        Some(v) => error_chain(&disk::run(settings, v, &stage2_args)),
        None => "cairn.slot is set but cairn.verity_blocks, cairn.verity_salt and cairn.verity_root are not all valid".into(),
    };
    error!("stage 1 failed: {err}");
    error!("rebooting in 10 s");
    std::thread::sleep(Duration::from_secs(10));
    sys::sync();
    let e = sys::reboot(libc::RB_AUTOBOOT);
    panic!("reboot failed after stage 1 failed: {e}");
}

/// containerd for workloads: a supervised host process (not a container: it
/// makes containers), on unless `cairn.disable=containerd`.
fn containerd_spec(release: &str, settings: &Settings) -> Option<supervisor::Spec> {
    const BIN: &str = "/usr/bin/containerd";
    if !Path::new(BIN).exists() || settings.disable.iter().any(|d| d == "containerd") {
        return None;
    }
    // Its overlayfs snapshotter needs the module.
    let dir = Path::new("/usr/lib/modules").join(release);
    match modules::Loader::open(&dir).and_then(|mut l| l.load("overlay")) {
        Ok(_) => {}
        Err(e) => warn!("containerd without overlayfs: {}", error_chain(&e)),
    }
    Some(supervisor::Spec {
        service: true,
        capture: true,
        env: vec![("PATH".into(), "/usr/sbin:/usr/bin".into())],
        stop_timeout: Duration::from_secs(10),
        ..supervisor::Spec::process("containerd", vec![BIN.into(), "--config".into(), "/etc/containerd/config.toml".into()])
    })
}

/// Stage 2 runs on the verified root: STATE is on /var (unmounted last at
/// shutdown), and the machine id lives there.
fn prepare_stage2(mounted: &mut mounts::Mounted) {
    if sys::is_mountpoint(Path::new("/var")) {
        mounted.targets.insert(0, "/var");
    }
    if let Err(e) = machine_id() {
        warn!("no machine id: {e}");
    }
}

/// A random id made on first boot and kept on STATE; /etc/machine-id links to
/// its copy in /run.
fn machine_id() -> std::io::Result<()> {
    let kept = "/var/lib/cairn/machine-id";
    let id = match std::fs::read_to_string(kept) {
        Ok(id) if id.trim().len() == 32 => id.trim().to_string(),
        _ => {
            let mut bytes = [0u8; 16];
            std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))?;
            let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            std::fs::create_dir_all("/var/lib/cairn")?;
            std::fs::write(format!("{kept}.tmp"), format!("{id}\n"))?;
            std::fs::rename(format!("{kept}.tmp"), kept)?;
            info!("new machine id {id}");
            id
        }
    };
    net::write_run_file("machine-id", &format!("{id}\n"))
}

fn debug_shell_spec(settings: &Settings, shell: &str) -> supervisor::Spec {
    supervisor::Spec {
        env: vec![
            ("PATH".into(), format!("{}:/bin:/sbin:/usr/bin:/usr/sbin", disk::DEBUG_BIN)),
            ("HOME".into(), "/".into()),
            ("TERM".into(), "vt100".into()),
            ("PS1".into(), "cairn# ".into()),
        ],
        tty: Some(settings.debug_tty.clone()),
        // An interactive busybox shell ignores SIGTERM and SIGHUP; it holds
        // nothing that needs a clean stop.
        stop_signal: libc::SIGKILL,
        stop_timeout: Duration::from_secs(1),
        ..supervisor::Spec::process("debug-shell", vec![shell.into()])
    }
}

fn load_modules(release: &str, settings: &Settings, lists: &[&str]) {
    let mut names = Vec::new();
    for list in lists {
        match modules::read_list(Path::new(list)) {
            Ok(l) => names.extend(l),
            Err(e) => warn!("cannot read {list}: {e}"),
        }
    }
    names.extend(settings.modules.iter().cloned());
    load_module_names(release, &names);
}

fn load_module_names(release: &str, names: &[String]) {
    let start = Instant::now();
    if names.is_empty() {
        return;
    }
    let dir = ["/usr/lib/modules", "/lib/modules"]
        .iter()
        .map(|d| Path::new(d).join(release))
        .find(|d| d.exists())
        .unwrap_or_else(|| Path::new("/lib/modules").join(release));
    let mut loader = match modules::Loader::open(&dir) {
        Ok(l) => l,
        Err(e) => {
            error!("no kernel modules loaded: {}", error_chain(&e));
            return;
        }
    };
    let mut files = 0;
    for name in names {
        match loader.load(name) {
            Ok(n) => files += n,
            Err(e) => error!("{}", error_chain(&e)),
        }
    }
    if files > 0 {
        info!("loaded {files} kernel modules for {} in {}ms", names.join(","), start.elapsed().as_millis());
    }
}

fn rss_kb() -> u64 {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("Rss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

impl Init {
    fn run(&mut self) -> ! {
        loop {
            let now = Instant::now();
            self.supervisor.start_due(now, &mut supervisor::RealSpawner, &mut self.registry);
            self.supervisor.check_timeouts(now);
            for req in self.supervisor.checks_due(now, &mut supervisor::RealSpawner, &mut self.registry) {
                if let Some(tx) = &self.health_tx {
                    let _ = tx.send(req);
                }
            }
            self.maybe_ready();
            self.maybe_verdict();
            if let Some(w) = &mut self.watchdog {
                w.pet();
            }
            let now = Instant::now();
            let mut deadline = self.supervisor.next_deadline();
            if let Some(w) = &self.watchdog {
                let pet = now + w.interval();
                deadline = Some(deadline.map_or(pet, |d| d.min(pet)));
            }
            if !self.verdict {
                let limit = self.boot_started + self.settings.health_timeout;
                deadline = Some(deadline.map_or(limit, |d| d.min(limit)));
            }
            if !self.ready {
                let wake = if self.net_status.is_none() { self.net_deadline } else { now + Duration::from_secs(5) };
                deadline = Some(deadline.map_or(wake, |d| d.min(wake)));
            }
            let timeout = deadline.map(|d| d.saturating_duration_since(now));
            // What each polled fd is: the order below.
            let mut fds = vec![self.signals.as_raw_fd(), self.wake.as_raw_fd()];
            let acpi_at = fds.len();
            if let Some(a) = &self.acpi {
                fds.push(a.raw_fd());
            }
            let kmsg_at = fds.len();
            if let Some(k) = &self.kmsg {
                fds.push(k.as_raw_fd());
            }
            let control_at = fds.len();
            let control_n = self.control.as_ref().map_or(0, |c| {
                let f = c.fds();
                let n = f.len();
                fds.extend(f);
                n
            });
            let outputs_at = fds.len();
            let outputs = self.supervisor.outputs();
            fds.extend(outputs.iter().map(|(fd, _, _)| *fd));
            let readable = match sys::poll_readable(&fds, timeout) {
                Ok(r) => r,
                Err(e) => {
                    error!("poll failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if readable[0] {
                self.on_signals();
            }
            if readable[1] {
                self.on_wake();
            }
            if self.acpi.is_some() && readable[acpi_at] {
                self.on_acpi();
            }
            if self.kmsg.is_some() && readable[kmsg_at] {
                self.on_kmsg();
            }
            if readable[control_at..control_at + control_n].iter().any(|r| *r) {
                self.on_control();
            }
            for (i, (fd, idx, stream)) in outputs.iter().enumerate() {
                if readable[outputs_at + i] {
                    self.on_output(*fd, *idx, *stream);
                }
            }
        }
    }

    fn on_output(&mut self, fd: std::os::fd::RawFd, idx: usize, stream: u8) {
        let mut buf = [0u8; 8192];
        // SAFETY: reading into a valid local buffer from a non-blocking pipe
        // the supervisor owns; it stays open until close_output below.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        let name = self.supervisor.name(idx).unwrap_or("?").to_string();
        if n > 0 {
            self.logs.feed(&name, stream, &buf[..n as usize]);
        } else if n == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::WouldBlock {
            self.supervisor.close_output(idx, fd);
        }
    }

    fn on_kmsg(&mut self) {
        let Some(k) = self.kmsg.as_mut() else { return };
        let mut buf = [0u8; 8192];
        loop {
            match std::io::Read::read(k, &mut buf) {
                Ok(n) if n > 0 => {
                    let rec = String::from_utf8_lossy(&buf[..n]);
                    // "prio,seq,usec,flags;message"
                    let (head, msg) = rec.split_once(';').unwrap_or(("", &rec));
                    let usec: u64 = head.split(',').nth(2).and_then(|v| v.parse().ok()).unwrap_or(0);
                    let line = format!("{:>5}.{:06} {}", usec / 1_000_000, usec % 1_000_000, msg.lines().next().unwrap_or(""));
                    self.logs.line("kernel", &line);
                }
                Ok(_) => break,
                // EPIPE: records were overwritten before we read them; go on.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(_) => break,
            }
        }
    }

    fn on_control(&mut self) {
        let Some(c) = self.control.as_mut() else { return };
        for (stream, req) in c.poll() {
            let req = match req {
                Ok(r) => r,
                Err(e) => {
                    control::answer(stream, Err(e));
                    continue;
                }
            };
            match req {
                control::Request::List => {
                    let mut t = format!("{:<16} {:<22} {:>7} {:>8} {:>9}  {}\n", "NAME", "STATE", "PID", "RESTARTS", "UPTIME", "HEALTH");
                    for r in self.supervisor.rows(Instant::now()) {
                        t.push_str(&format!(
                            "{:<16} {:<22} {:>7} {:>8} {:>9}  {}\n",
                            r.name,
                            r.state,
                            r.pid.map_or("-".into(), |p| p.to_string()),
                            r.restarts,
                            r.uptime.map_or("-".into(), |u| format!("{}s", u.as_secs())),
                            r.health
                        ));
                    }
                    control::answer(stream, Ok(t));
                }
                control::Request::Logs(name) => {
                    let known = name == "kernel" || self.supervisor.container(&name).is_some() || self.supervisor.knows(&name);
                    let text = self.logs.text(&name).or_else(|| known.then(String::new));
                    control::answer(stream, text.ok_or_else(|| format!("no service named {name}")));
                }
                control::Request::Follow(name) => {
                    let text = self.logs.text(&name).unwrap_or_default();
                    if let Ok(s2) = stream.try_clone() {
                        control::answer(stream, Ok(text));
                        self.logs.follow(&name, s2);
                    }
                }
                control::Request::Restart(name) => {
                    let r = self.supervisor.restart(&name, &mut self.registry, &mut supervisor::RealSpawner);
                    control::answer(stream, r.map(|()| format!("restarting {name}\n")));
                }
                control::Request::Exec(name, argv) => self.exec_in(stream, &name, &argv),
                control::Request::Reboot => {
                    control::answer(stream, Ok("rebooting\n".into()));
                    self.shutdown(Action::Reboot, "cairnctl reboot");
                }
                control::Request::PowerOff => {
                    control::answer(stream, Ok("powering off\n".into()));
                    self.shutdown(Action::PowerOff, "cairnctl poweroff");
                }
            }
        }
    }

    /// `cairnctl exec`: the runtime's `exec` with the client's connection as its output.
    fn exec_in(&mut self, stream: std::os::unix::net::UnixStream, name: &str, argv: &[String]) {
        let Some(id) = self.supervisor.container(name) else {
            return control::answer(stream, Err(format!("no service named {name}")));
        };
        let (Ok(out), Ok(err)) = (stream.try_clone(), stream.try_clone()) else {
            return control::answer(stream, Err("cannot pass the connection on".into()));
        };
        let _ = std::io::Write::write_all(&mut &stream, b"ok\n");
        let (bin, state) = supervisor::runtime();
        let spawned = std::process::Command::new(bin)
            .args(["--root", state, "exec", &id])
            .args(argv)
            .stdin(std::process::Stdio::null())
            .stdout(OwnedFd::from(out))
            .stderr(OwnedFd::from(err))
            .spawn();
        if let Err(e) = spawned {
            let _ = std::io::Write::write_all(&mut &stream, format!("cannot run crun exec: {e}\n").as_bytes());
        }
        // The reaper takes the process as an orphan; its output went straight
        // to the client, which sees the end when the process closes it.
    }

    fn on_signals(&mut self) {
        for sig in sys::read_signals(&self.signals) {
            match sig as libc::c_int {
                libc::SIGCHLD => {
                    for exit in self.registry.reap() {
                        self.supervisor.on_exit(exit, Instant::now(), &mut supervisor::RealSpawner);
                    }
                }
                libc::SIGTERM => self.shutdown(Action::PowerOff, "SIGTERM"),
                libc::SIGPWR => self.shutdown(Action::PowerOff, "SIGPWR"),
                libc::SIGINT => self.shutdown(Action::Reboot, "Ctrl-Alt-Del"),
                other => debug!("ignoring signal {other}"),
            }
        }
    }

    fn on_acpi(&mut self) {
        let Some(acpi) = &self.acpi else { return };
        for ev in acpi.read_events() {
            debug!("ACPI event class={} bus={} type={:#x}", ev.device_class, ev.bus_id, ev.kind);
            if ev.is_power_button() {
                self.shutdown(Action::PowerOff, "ACPI power button");
            }
        }
    }

    fn on_wake(&mut self) {
        let mut buf = [0u8; 64];
        // SAFETY: reading into a valid local buffer from our non-blocking pipe.
        while unsafe { libc::read(self.wake.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
        if let Some(rx) = &self.health_rx {
            let now = Instant::now();
            while let Ok(o) = rx.try_recv() {
                self.supervisor.on_check(o.service, o.seq, o.ok, &o.detail, now);
            }
        }
        let Some(rx) = &self.net else { return };
        while let Ok(status) = rx.try_recv() {
            if let net::Status::Failed(why) = &status {
                warn!("network not configured: {why}");
            }
            if self.net_status.is_none() {
                self.net_status = Some(status);
            }
        }
    }

    fn maybe_ready(&mut self) {
        if self.ready {
            return;
        }
        if !self.supervisor.ready() {
            if !self.warned_not_ready && self.boot_started.elapsed() > Duration::from_secs(60) {
                self.warned_not_ready = true;
                warn!("not ready after 60 s; waiting for: {}", self.supervisor.not_ready().join(", "));
            }
            return;
        }
        let net_done = self.net_status.is_some()
            || self.settings.net == NetMode::Off
            || Instant::now() >= self.net_deadline;
        if !net_done {
            return;
        }
        self.ready = true;
        let ip = match &self.net_status {
            Some(net::Status::Configured { addr, prefix, .. }) => format!(" ip={addr}/{prefix}"),
            Some(net::Status::Off) => " ip=off".into(),
            _ => " ip=none".into(),
        };
        let line = format!(
            "cairn-init: ready boot_ms={} rss_kb={} services={}{ip}",
            sys::boottime_ms(),
            rss_kb(),
            self.supervisor.services_running()
        );
        say(&line);
    }

    /// Once per boot, on a disk booted through UEFI: hand the verdict to the
    /// updater (`cairnctl update settle`), healthy when the ready line is
    /// out, unhealthy when `cairn.health_timeout` passes first.
    fn maybe_verdict(&mut self) {
        if self.verdict {
            return;
        }
        let timed_out = self.boot_started.elapsed() >= self.settings.health_timeout;
        if !self.ready && !timed_out {
            return;
        }
        self.verdict = true;
        if self.settings.slot.is_none() || !Path::new("/sys/firmware/efi").exists() || !Path::new(CAIRNCTL).exists() {
            return;
        }
        let release = sys::kernel_release().unwrap_or_default();
        let names: Vec<String> = UPDATE_MODULES.iter().map(|m| m.to_string()).collect();
        load_module_names(&release, &names);
        let efivars = "/sys/firmware/efi/efivars";
        if !sys::is_mountpoint(Path::new(efivars)) {
            if let Err(e) = sys::mount("efivarfs", efivars, "efivarfs", (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC) as u64, "") {
                warn!("cannot mount efivarfs on {efivars}: {e}");
            }
        }
        let mut argv: Vec<String> = [CAIRNCTL, "update", "settle"].iter().map(|s| s.to_string()).collect();
        if self.ready {
            argv.push("healthy".into());
        } else {
            let waiting = self.supervisor.not_ready().join(", ");
            warn!("not healthy within cairn.health_timeout={} s: {waiting}", self.settings.health_timeout.as_secs());
            argv.extend(["unhealthy".to_string(), format!("not healthy within {} s: {waiting}", self.settings.health_timeout.as_secs())]);
        }
        // A verdict that fails (the ESP busy or unreadable for a moment) is
        // tried again with back-off: left undone, a healthy trial would be
        // counted down and dropped at the next reboots.
        let spec = supervisor::Spec {
            restart: cairn_model::wire::RestartPolicy::OnFailure,
            env: vec![("PATH".into(), "/usr/sbin:/usr/bin".into())],
            ..supervisor::Spec::process("update-verdict", argv)
        };
        self.supervisor.add(spec, Instant::now());
    }

    /// Stops everything, unmounts, syncs and powers off or reboots. Never returns.
    fn shutdown(&mut self, action: Action, reason: &str) -> ! {
        let verb = if action == Action::PowerOff { "power off" } else { "reboot" };
        warn!("shutdown: {reason}; will {verb}");
        // Stopping may take every service's stop timeout in turn; the
        // watchdog still guards against a shutdown that hangs for good.
        if let Some(w) = &mut self.watchdog {
            let _ = w.set_timeout(Duration::from_secs(600));
        }
        self.supervisor.stop_all(&mut self.registry, &mut supervisor::RealSpawner);

        let _ = sys::kill(-1, libc::SIGTERM);
        let left = self.wait_children(self.settings.stop_timeout);
        if left {
            warn!("processes left after {:?}; sending SIGKILL", self.settings.stop_timeout);
            let _ = sys::kill(-1, libc::SIGKILL);
            self.wait_children(Duration::from_secs(2));
        }
        info!("orphans reaped since boot: {}", self.registry.orphans_reaped());
        sys::sync();
        for (target, e) in mounts::unmount_all(&mut mounts::RealMounter, &mut self.mounted) {
            warn!("cannot unmount {target}: {e}");
        }
        sys::sync();
        let done = if action == Action::PowerOff { "powering off" } else { "rebooting" };
        say(&format!("cairn-init: clean shutdown complete, {done}"));
        let cmd = if action == Action::PowerOff { libc::RB_POWER_OFF } else { libc::RB_AUTOBOOT };
        let err = sys::reboot(cmd);
        error!("reboot(2) failed: {err}; halting here");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }

    /// Reaps until no children are left or `limit` passes; true if some remain.
    fn wait_children(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            loop {
                match sys::reap_one() {
                    Ok(Some((pid, status))) => {
                        if let Some(exit) = self.registry.take(pid, status) {
                            self.supervisor.on_exit(exit, Instant::now(), &mut supervisor::RealSpawner);
                        }
                    }
                    Ok(None) => break,
                    Err(_) => return false,
                }
            }
            if Instant::now() >= deadline {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
