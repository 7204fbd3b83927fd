//! End-to-end tests live in `tests/`; this crate holds what several of them
//! share on top of `cairn-qemu`: booting the debug image with a config,
//! powering off, reading the service table, putting a file on the guest;
//! where the build left its files, and hashing them.

pub mod oci;

use cairn_qemu::{out_dir, Config, Machine};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const BOOT: Duration = Duration::from_secs(240);
pub const EXIT: Duration = Duration::from_secs(90);

/// The debug image (direct boot, debug shell) on `disk`, with more QEMU arguments.
pub fn machine(disk: &Path, extra: &[String]) -> Config {
    let mut cfg = Config::from_out(&out_dir(), "initramfs-debug.img").expect("make image ran").with_debug_shell().with_disk_file(disk);
    cfg.extra_args.extend(extra.iter().cloned());
    cfg
}

pub use cairn_qemu::sources::fw_cfg;

/// Starts the machine and waits for its ready line.
pub fn boot(cfg: &Config) -> (Machine, String) {
    let mut m = Machine::start(cfg).expect("QEMU starts");
    let ready = m.wait_for("cairn-init: ready", BOOT).expect("the ready line");
    (m, ready)
}

/// The power button, a clean shutdown, QEMU gone.
pub fn power_off(mut m: Machine) {
    m.press_power_button().expect("power button");
    m.wait_for("clean shutdown complete", EXIT).expect("clean shutdown");
    m.wait_exit(EXIT).expect("QEMU exits");
}

/// A service's state in `cairnctl list`, or why it is not there.
pub fn service_state(m: &mut Machine, name: &str) -> String {
    let list = m.sh_ok("cairnctl list").unwrap_or_else(|e| panic!("cairnctl list: {e}"));
    list.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
        .unwrap_or_else(|| format!("absent from:\n{list}"))
}

/// Writes `text` to `path` on the guest through the debug shell. The text
/// may not hold a single quote.
pub fn put_file(m: &mut Machine, path: &str, text: &str) {
    assert!(!text.contains('\''), "put_file cannot carry a single quote");
    let lines: Vec<String> = text.lines().map(|l| format!("'{l}'")).collect();
    m.sh_ok(&format!("printf '%s\\n' {} > {path}", lines.join(" "))).unwrap_or_else(|e| panic!("writing {path}: {e}"));
}

/// Retries a shell command until it succeeds (a service takes a moment to
/// start); fails the test with its last output after `within`.
pub fn wait_sh(m: &mut Machine, cmd: &str, within: Duration) -> String {
    let deadline = std::time::Instant::now() + within;
    loop {
        let (out, code) = m.sh(cmd).unwrap_or_else(|e| panic!("`{cmd}`: {e}"));
        if code == 0 {
            return out;
        }
        assert!(std::time::Instant::now() < deadline, "`{cmd}` kept failing for {within:?}: {out}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A TCP port on the host's loopback that nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// The repository's top directory.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The hex sha256 of a file.
pub fn sha256_file(path: &Path) -> String {
    let mut f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    hex::encode(h.finalize())
}

/// Checks that a fault-injection code path is only in the test build of a
/// binary: `test` (built with the feature) holds `marker`, `production` (what
/// `out/cairn.raw` carries) does not. Both are paths from `make build`.
pub fn only_the_test_build_holds(production: &str, test: &str, marker: &[u8]) {
    let r = repo();
    let read = |p: &str| std::fs::read(r.join(p)).unwrap_or_else(|e| panic!("{p} (from `make build`): {e}"));
    let holds = |bin: &[u8]| bin.windows(marker.len()).any(|w| w == marker);
    assert!(holds(&read(test)), "{test} has the fault-injection code (else this check proves nothing)");
    assert!(!holds(&read(production)), "the production {production} carries the fault-injection code");
}

/// The timestamp `make image` built out/ with.
pub fn build_epoch() -> String {
    let path = out_dir().join("source-date-epoch");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (run make image)", path.display())).trim().to_string()
}

pub mod lab;
