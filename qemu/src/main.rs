//! `cairn-qemu run [--debug] [--append ARGS]`: boots out/ in QEMU with the
//! console on this terminal (Ctrl-A X quits QEMU).
//! `cairn-qemu bench-update [--runs N]`: only the update part of the benchmark.
//! `cairn-qemu bench-rauc [--runs N]`: only its host part, RAUC beside the
//! updater's install path and `dd`.
//! `cairn-qemu bench [--runs N] [--only boot|services|config]`: boot time and
//! memory, Cairn beside a bare busybox init on the same kernel and QEMU, with
//! Cairn's boot timeline; service start; the machine config per source;
//! updates. `--only` runs one part.

mod bench;
mod bench_config;
mod bench_update;

use anyhow::{bail, Context, Result};
use cairn_qemu::{out_dir, Config, Machine};

fn main() {
    if let Err(err) = run() {
        eprintln!("cairn-qemu: error: {err}");
        for (i, cause) in err.chain().skip(1).enumerate() {
            eprintln!("  {}: {cause}", i + 1);
        }
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let verb = args.next().unwrap_or_default();
    let mut debug = false;
    let mut append = String::new();
    let mut runs = 5usize;
    let mut part = bench::Part::All;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--debug" => debug = true,
            "--append" => append = args.next().context("--append needs a value")?,
            "--only" => part = args.next().context("--only needs boot, services or config")?.parse()?,
            "--runs" => runs = args.next().context("--runs needs a number")?.parse().context("--runs needs a number")?,
            other => bail!("unknown option {other}"),
        }
    }
    match verb.as_str() {
        "run" => {
            let initrd = if debug { "initramfs-debug.img" } else { "initramfs.img" };
            let mut cfg = Config::from_out(&out_dir(), initrd)?;
            if debug {
                // The shell shares the console in interactive runs.
                cfg = cfg.append("cairn.debug=shell cairn.debug_tty=ttyS0");
            }
            if !append.is_empty() {
                cfg = cfg.append(&append);
            }
            cfg.interactive = true;
            eprintln!("cairn-qemu: booting {initrd} with: {}", cfg.cmdline);
            eprintln!("cairn-qemu: quit QEMU at once with Ctrl-A X; power off cleanly with Ctrl-A C, then `system_powerdown`");
            let mut m = Machine::start(&cfg)?;
            let st = m.wait_exit(std::time::Duration::from_secs(u64::MAX / 4))?;
            eprintln!("cairn-qemu: QEMU exited ({st})");
            Ok(())
        }
        "bench" => bench::run(runs, part),
        // One part alone: an update takes a minute or two under TCG.
        "bench-update" => bench_update::in_guest(runs).and_then(|()| bench_update::host_peers(3 * runs)),
        "bench-rauc" => bench_update::host_peers(runs),
        _ => bail!("usage: cairn-qemu run [--debug] [--append ARGS] | bench [--runs N] [--only boot|services|config] | bench-update [--runs N] | bench-rauc [--runs N]"),
    }
}
