//! Boot-time and memory benchmark: Cairn and a bare busybox init, booted
//! alternately on the same kernel with the same QEMU settings, medians printed
//! side by side.

use anyhow::{Context, Result};
use cairn_qemu::{field, out_dir, Config, Machine};
use std::time::Duration;

struct Sample {
    guest_ms: f64,
    host_ms: f64,
    rss_kb: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn boot_cairn(cfg: &Config) -> Result<Sample> {
    let mut m = Machine::start(cfg)?;
    let (line, at) = m.wait_for_timed("cairn-init: ready", Duration::from_secs(120))?;
    let sample = Sample {
        guest_ms: field(&line, "boot_ms").context("no boot_ms")?.parse()?,
        host_ms: (at - m.started).as_secs_f64() * 1000.0,
        rss_kb: field(&line, "rss_kb").context("no rss_kb")?.parse()?,
    };
    m.press_power_button()?;
    m.wait_exit(Duration::from_secs(60))?;
    Ok(sample)
}

fn boot_busybox(cfg: &Config) -> Result<Sample> {
    let mut m = Machine::start(cfg)?;
    let (line, at) = m.wait_for_timed("busybox-init: ready", Duration::from_secs(120))?;
    let uptime: f64 = field(&line, "uptime").context("no uptime")?.parse()?;
    let sample = Sample {
        guest_ms: uptime * 1000.0,
        host_ms: (at - m.started).as_secs_f64() * 1000.0,
        rss_kb: field(&line, "rss_kb").context("no rss_kb")?.parse()?,
    };
    m.wait_exit(Duration::from_secs(60))?;
    Ok(sample)
}

pub fn run(runs: usize) -> Result<()> {
    let out = out_dir();
    let cairn = Config::from_out(&out, "initramfs.img")?;
    let base_cmdline = std::fs::read_to_string(out.join("cmdline"))?;
    // The same kernel arguments; the busybox init ignores Cairn's.
    let mut busybox = Config::kernel_only(&out, "bench-busybox.img", base_cmdline.trim())?;
    busybox.allow_reboot = false;
    let mut results: Vec<(&str, Vec<Sample>)> = vec![("cairn-init", Vec::new()), ("busybox init (lower bound)", Vec::new())];
    for i in 0..runs {
        eprintln!("bench: run {}/{runs}", i + 1);
        results[0].1.push(boot_cairn(&cairn)?);
        results[1].1.push(boot_busybox(&busybox)?);
    }
    println!();
    println!("Boot to ready, {runs} boots each, medians (QEMU TCG, 1 vCPU, 512 MiB, direct kernel boot)");
    println!("| init | guest boot_ms | host ms to ready line | PID 1 rss_kb |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, s) in &results {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} |",
            median(s.iter().map(|x| x.guest_ms).collect()),
            median(s.iter().map(|x| x.host_ms).collect()),
            median(s.iter().map(|x| x.rss_kb).collect()),
        );
    }
    let c = median(results[0].1.iter().map(|x| x.guest_ms).collect());
    let b = median(results[1].1.iter().map(|x| x.guest_ms).collect());
    println!();
    println!("cairn-init is {:.0} ms behind the bare busybox init (target: within 300 ms)", c - b);
    println!("guest boot_ms: CLOCK_BOOTTIME at the ready line (busybox: /proc/uptime, 10 ms steps)");
    Ok(())
}
