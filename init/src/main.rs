//! cairn-init: Cairn's PID 1.
//!
//! Boot: early mounts, command line, modules, power button, network, supervised
//! processes, then the ready line. After that, one event loop: signals
//! (children, power off, reboot), ACPI events, network reports and restart
//! timers. PID 1 never exits: errors are logged and boot goes on; a panic ends
//! in sync and reboot.

mod boot;
mod cmdline;
mod config;
mod config_live;
mod control;
mod control_handlers;
mod disk;
mod docker;
mod event_loop;
mod health;
mod helper;
mod logs;
mod log;
mod modules;
mod mounts;
mod net;
mod power;
mod reaper;
mod services;
mod shutdown;
mod supervisor;
mod sys;
mod timeline;
mod verdict;
mod watchdog;

use cmdline::Settings;
use std::os::fd::OwnedFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const SIGNALS: &[libc::c_int] =
    &[libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGPWR, libc::SIGHUP, libc::SIGUSR1, libc::SIGUSR2];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    PowerOff,
    Reboot,
}

/// PID 1's state after boot, shared by the event loop, the control handlers,
/// the verdict and shutdown (each in its own module).
struct Init {
    boot_started: Instant,
    warned_not_ready: bool,
    control: Option<control::Control>,
    logs: logs::Logs,
    kmsg: Option<std::fs::File>,
    probes: Option<health::Probes>,
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
    /// What a trial boot must reach to be healthy.
    gate: verdict::Gate,
    /// The machine config in force, `source:generation` or `none`.
    config: String,
    /// The platform the config loader detected; Azure wants a ready report.
    platform: String,
    /// When the machine config on trial (`cairnctl config try`) reverts
    /// unless confirmed.
    config_try: Option<Instant>,
}

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
    timeline::take_arg(&args);
    let watchdog_fd = args.iter().find_map(|a| a.strip_prefix(watchdog::FD_ARG)?.parse().ok());
    let mut init = boot::boot(logger, stage2, watchdog_fd);
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
        Some(l) => l.write_line(line, log::Urgency::Must),
        None => {
            let _ = std::fs::write("/dev/console", format!("{line}\n"));
        }
    }
}

pub(crate) use cairn_netconf::error_chain;
