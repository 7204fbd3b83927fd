//! From the kernel's hand-off to the first turn of the event loop: early
//! mounts, command line, stage 1 (find and verify the root, switch to it),
//! stage 2's preparation, modules, watchdog, and the processes PID 1 starts
//! itself (containerd, dockerd, the debug shell).

use crate::cmdline::Settings;
use crate::{cmdline, control, disk, error_chain, health, log, logs, modules, mounts, net, power, reaper, services, supervisor, sys, timeline, verdict, watchdog};
use crate::{Init, SIGNALS, VERSION};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

const BOOT_MODULES: &str = "/etc/cairn/modules.boot";
const ROOT_MODULES: &str = "/etc/cairn/modules.root";

pub(crate) fn boot(logger: &'static log::Logger, stage2: bool, watchdog_fd: Option<i32>) -> Init {
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

    // Bytes: a byte that is not UTF-8 costs only the word it sits in.
    let cmdline = std::fs::read("/proc/cmdline").unwrap_or_else(|e| {
        warn!("cannot read /proc/cmdline: {e}; using the defaults");
        Vec::new()
    });
    let (mut settings, warnings) = cmdline::parse(&cmdline);
    logger.set_level(settings.log_level);
    let release = sys::kernel_release().unwrap_or_else(|_| "unknown".into());
    let stage = match (stage2, settings.slot) {
        (true, _) => "stage 2",
        (false, Some(_)) => "stage 1",
        (false, None) => "initramfs only",
    };
    info!("cairn-init {VERSION} {stage} kernel={release} entered_ms={entered_ms}");
    timeline::mark_at(if stage2 { "stage2" } else { "stage1" }, entered_ms);
    for w in &warnings {
        warn!("{w}");
    }
    if !stage2 && settings.slot.is_some() {
        stage1(&release, &settings);
    }
    let mut loaded = crate::config::Loaded { config: "none".into(), platform: String::new(), network: false, try_secs: None };
    if stage2 {
        prepare_stage2(&mut mounted);
        // Before the network and services: the config may name both.
        loaded = crate::config::load(&release, &cmdline, &mut settings);
        logger.set_level(settings.log_level);
        timeline::mark("config");
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
    let mut net_status = if net.is_none() { Some(net::Status::Failed("no network thread".into())) } else { None };

    // NICs first among the devices: DHCP overlaps with the rest.
    let _ = coldplug(&release);
    load_modules(&release, &settings, &[BOOT_MODULES]);
    timeline::mark("modules");
    let watchdog = match (settings.watchdog.is_zero(), watchdog_fd) {
        (true, _) => None,
        (false, Some(fd)) => watchdog::Watchdog::inherit(fd, settings.watchdog)
            .map_err(|e| warn!("cannot take over the watchdog from stage 1 (fd {fd}): {e}"))
            .ok(),
        (false, None) => arm_watchdog(&settings),
    };
    let mut watchdog = watchdog;
    if loaded.network {
        network_config(&release, &cmdline, &mut settings, &mut loaded, net.as_ref(), &mut net_status, &mut watchdog, &mut mounted);
    }
    let config = loaded.config;
    let platform = loaded.platform;
    let config_try = loaded.try_secs;

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
    let loaded = services::load(&settings.enable, &settings.disable, &settings.runtime, &mut || {});
    timeline::mark("svcload");
    for spec in loaded.specs {
        supervisor.add(spec, now);
    }
    let mut gate = verdict::Gate {
        loader_failed: loaded.failed,
        services: loaded.gates,
        var_is_state: stage2 && mounts::var_is_state(),
        files: Vec::new(),
    };
    let specs = [netd_spec(&settings), containerd_spec(&release, &settings), crate::docker::spec(&release, &settings)];
    for spec in specs.into_iter().flatten() {
        gate.services.push(spec.name.clone());
        supervisor.add(spec, now);
    }
    timeline::mark("containerd_spec");
    if let Some(spec) = sysagent_spec(&settings) {
        gate.services.push(spec.name.clone());
        if Path::new(CLUSTER_FILE).exists() {
            // A member is healthy only once it is back in its swarm and Ready.
            gate.files.push((CLUSTER_READY, "the cluster (this node back in the swarm and Ready)"));
        }
        supervisor.add(spec, now);
    }
    let probes = match health_wake {
        Ok(wake) => Some(health::Probes::new(wake)),
        Err(e) => {
            error!("no TCP/HTTP health checks: cannot duplicate the wake pipe: {e}");
            None
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
    let logs = logs::Logs::new(stage2 && mounts::var_is_state());
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
        probes,
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
        gate,
        config,
        platform,
        config_try: config_try.map(|s| now + Duration::from_secs(s)),
    }
}

/// The machine config's second try, from the sources that need the network
/// (a URL, the platform's metadata service), once the first link has DHCP.
/// A config that changes the network is kept and applied by rebooting once:
/// the network thread sets a link up once and does not start over.
#[allow(clippy::too_many_arguments)]
fn network_config(
    release: &str,
    cmdline: &[u8],
    settings: &mut Settings,
    loaded: &mut crate::config::Loaded,
    net: Option<&std::sync::mpsc::Receiver<net::Status>>,
    net_status: &mut Option<net::Status>,
    watchdog: &mut Option<watchdog::Watchdog>,
    mounted: &mut mounts::Mounted,
) {
    if let Some(w) = watchdog.as_mut() {
        w.pet();
    }
    if net_status.is_none() {
        *net_status = net.and_then(|rx| rx.recv_timeout(settings.net_timeout).ok());
    }
    if !matches!(net_status, Some(net::Status::Configured { .. })) {
        warn!("no network for the machine config's network sources; running without a machine config");
        return;
    }
    let before = settings.clone();
    let mut pet = || {
        if let Some(w) = watchdog.as_mut() {
            w.pet();
        }
    };
    let Some(label) = crate::config::load_network(cmdline, settings, &mut pet) else { return };
    loaded.config = label;
    if crate::config::network_changed(&before, settings) {
        if loaded.config.ends_with(":0") {
            error!("machine config {} changes the network but could not be kept on STATE; the network stays as it is", loaded.config);
            *settings = Settings { net: before.net, gateway: before.gateway, dns: before.dns, iface: before.iface, ..settings.clone() };
        } else {
            crate::say(&format!("cairn-init: machine config {} changes the network; rebooting once to apply it", loaded.config));
            sys::sync();
            for (target, e) in mounts::unmount_all(&mut mounts::RealMounter, mounted) {
                warn!("cannot unmount {target}: {e}");
            }
            sys::sync();
            let e = sys::reboot(libc::RB_AUTOBOOT);
            error!("reboot(2) failed: {e}; the network stays as it is until the next boot");
            *settings = Settings { net: before.net, gateway: before.gateway, dns: before.dns, iface: before.iface, ..settings.clone() };
        }
    }
    if settings.hostname != before.hostname {
        if let Some(h) = &settings.hostname {
            if let Err(e) = sys::sethostname(h).and_then(|()| net::write_run_file("hostname", &format!("{h}\n"))) {
                warn!("cannot set hostname {h}: {e}");
            }
        }
    }
    let extra: Vec<String> = settings.modules.iter().filter(|m| !before.modules.contains(m)).cloned().collect();
    load_module_names(release, &extra);
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
    // The disk controllers first: their disks appear while the rest loads.
    let mut plug = coldplug(release);
    load_modules(release, settings, &[BOOT_MODULES, ROOT_MODULES]);
    timeline::mark("stage1_modules");
    // Armed before the root is even found: a trial slot that hangs anywhere
    // from here on reboots and uses up a try. The bounded waits below pet
    // it, so a missing disk ends in the message naming what was seen, not in
    // a watchdog reset.
    let mut stage2_args = vec!["--stage2".to_string()];
    let mut watchdog = if settings.watchdog.is_zero() { None } else { arm_watchdog(settings) };
    if let Some(w) = &watchdog {
        // Left open across the exec (no CLOEXEC): stage 2 takes it over.
        stage2_args.push(format!("{}{}", watchdog::FD_ARG, w.raw_fd()));
    }
    let mut last_plug = Instant::now();
    let mut pet = || {
        if let Some(w) = &mut watchdog {
            w.pet();
        }
        // Disks behind a controller (SCSI, USB) show up some time after its
        // driver loaded, and then need theirs: look again while waiting.
        if let Some(p) = plug.as_mut().filter(|_| last_plug.elapsed() >= COLDPLUG_EVERY) {
            let start = Instant::now();
            report_coldplug(p.pass(Path::new(SYS_BUS)), start);
            last_plug = Instant::now();
        }
    };
    let err = match &settings.verity {
        Some(v) => error_chain(&disk::run(settings, v, &stage2_args, &mut pet)),
        None => "cairn.slot is set but cairn.verity_blocks, cairn.verity_salt and cairn.verity_root are not all valid".into(),
    };
    error!("stage 1 failed: {err}");
    error!("rebooting in 10 s");
    for _ in 0..20 {
        pet();
        std::thread::sleep(Duration::from_millis(500));
    }
    sys::sync();
    let e = sys::reboot(libc::RB_AUTOBOOT);
    panic!("reboot failed after stage 1 failed: {e}");
}

/// cairn-netd, when the machine config asks for more than the first link
/// (`cairn.ip=netd`): a supervised host process, so the work and memory of
/// many links, VLANs and DHCP options stay out of PID 1. It counts for the
/// verdict like containerd.
fn netd_spec(settings: &Settings) -> Option<supervisor::Spec> {
    const BIN: &str = "/usr/bin/cairn-netd";
    if settings.net != cmdline::NetMode::Daemon {
        return None;
    }
    if !Path::new(BIN).exists() {
        // Still supervised, so the verdict counts what is missing.
        error!("the machine config's network needs {BIN}, which this image lacks; no link is configured");
    }
    Some(supervisor::Spec { service: true, capture: true, ..supervisor::Spec::process("netd", vec![BIN.into()]) })
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

/// Written by cairn-config when the machine config has `[cluster]`.
const CLUSTER_FILE: &str = "/var/lib/cairn/sysagent/cluster.json";
/// Written by sysagent once the node is in its swarm and Ready.
const CLUSTER_READY: &str = "/run/cairn/cluster-ready";

/// sysagent, the node's API: a supervised host process, started when the
/// machine config gave it a server certificate (cairn-config writes it)
/// unless `cairn.disable=sysagent`.
fn sysagent_spec(settings: &Settings) -> Option<supervisor::Spec> {
    const BIN: &str = "/usr/bin/sysagent";
    const CERT: &str = "/var/lib/cairn/sysagent/server.pem";
    if !Path::new(BIN).exists() || !Path::new(CERT).exists() || settings.disable.iter().any(|d| d == "sysagent") {
        return None;
    }
    Some(supervisor::Spec {
        service: true,
        capture: true,
        env: vec![("PATH".into(), "/usr/sbin:/usr/bin".into())],
        stop_timeout: Duration::from_secs(5),
        ..supervisor::Spec::process("sysagent", vec![BIN.into()])
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

const SYS_BUS: &str = "/sys/bus";
/// How often stage 1 looks for new devices while it waits for its disk.
const COLDPLUG_EVERY: Duration = Duration::from_millis(25);

/// Loads the drivers of the hardware that is there, by modalias, from this
/// stage's modules.alias (stage 1's has the disk controllers, stage 2's the
/// rest too). Keeps the table for another look later.
fn coldplug(release: &str) -> Option<modules::coldplug::Coldplug> {
    let start = Instant::now();
    let mut plug = match modules::coldplug::Coldplug::open(&modules_dir(release)) {
        Ok(p) => p,
        Err(e) => {
            error!("no drivers loaded by device: {}", error_chain(&e));
            return None;
        }
    };
    // virtio_pci, then the virtio devices it brings: two passes in the usual
    // case; more only for buses behind buses.
    report_coldplug(plug.settle(Path::new(SYS_BUS), 4), start);
    Some(plug)
}

fn report_coldplug(pass: modules::coldplug::Pass, start: Instant) {
    for e in &pass.errors {
        error!("{}", error_chain(e));
    }
    if !pass.loaded.is_empty() {
        info!("loaded {} for the devices found, in {}ms", pass.loaded.join(","), start.elapsed().as_millis());
    }
}

fn modules_dir(release: &str) -> std::path::PathBuf {
    ["/usr/lib/modules", "/lib/modules"]
        .iter()
        .map(|d| Path::new(d).join(release))
        .find(|d| d.exists())
        .unwrap_or_else(|| Path::new("/lib/modules").join(release))
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

pub(crate) fn load_module_names(release: &str, names: &[String]) {
    let start = Instant::now();
    if names.is_empty() {
        return;
    }
    let mut loader = match modules::Loader::open(&modules_dir(release)) {
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
            // The module's init found nothing to drive (efivarfs on a machine
            // booted without UEFI): not an error of this machine.
            Err(modules::ModuleError::Load { source, .. }) if source.raw_os_error() == Some(libc::ENODEV) => {
                info!("module {name}: not for this machine (no such device)")
            }
            Err(e) => error!("{}", error_chain(&e)),
        }
    }
    if files > 0 {
        info!("loaded {files} kernel modules for {} in {}ms", names.join(","), start.elapsed().as_millis());
    }
}
