//! The machine config's cost at boot: from the kernel's start to the config
//! applied, for each source (fw_cfg, a NoCloud disk, EC2's metadata service
//! on the host), beside a boot with no source; and PID 1's memory at ready
//! with a full config. Every boot is a first boot (a fresh overlay, so STATE
//! holds no config yet), on the debug initramfs (a shell to read `dmesg`).

use crate::bench::median;
use anyhow::{Context, Result};
use cairn_qemu::metadata::{Server, Setup, Token};
use cairn_qemu::sources::{config_disk, fat_cidata, fw_cfg, metadata_net};
use cairn_qemu::{field, make_overlay, out_dir, Config, Machine, Scratch};
use std::time::Duration;

/// Everything that applies without a reboot (no network section: on EC2
/// that would cost the reboot that applies it, and no other source would).
const FULL: &str = r#"version = 1
hostname = "bench-node"
modules = ["dummy"]
[time]
ntp = ["10.0.2.2"]
[services.add.hello]
rootfs = "/usr/lib/cairn/rootfs/admin"
command = ["/bin/sh", "-c", "exec sleep 2147483647"]
[update]
repository = "http://10.0.2.2:1/cairn"
[access]
admin = true
ssh_authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvq2v0j5c8d7yWq0WcUxwF3m8l9Y7N2sZpX0a1b2c3d bench"]
[logs]
level = "info"
[sysctl]
"vm.swappiness" = 10
"#;

#[derive(Clone, Copy, PartialEq)]
enum Source {
    None,
    FwCfg,
    NoCloud,
    Ec2,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::None => "no source (DHCP, shipped services)",
            Source::FwCfg => "QEMU fw_cfg",
            Source::NoCloud => "NoCloud disk (FAT)",
            Source::Ec2 => "EC2 metadata service (IMDSv2, after DHCP)",
        }
    }
    /// What the config loader logs when it is done, as the kernel log holds it.
    fn applied(self) -> &'static str {
        if self == Source::None { "no machine config (platform" } else { "machine config: generation 1 from" }
    }
}

struct Sample {
    applied_ms: f64,
    ready_ms: f64,
    rss_kb: f64,
}

/// `[   12.345678] ...text...` in `dmesg`: the ms of the line holding `text`.
fn kernel_ms(dmesg: &str, text: &str) -> Option<f64> {
    let line = dmesg.lines().find(|l| l.contains(text))?;
    let stamp = line.strip_prefix('[')?.split(']').next()?.trim();
    Some(stamp.parse::<f64>().ok()? * 1000.0)
}

fn boot(source: Source, dir: &Scratch, run: usize) -> Result<Sample> {
    let out = out_dir();
    let disk = dir.path(&format!("disk-{run}.qcow2"));
    let _ = std::fs::remove_file(&disk);
    make_overlay(&out.join("cairn.qcow2"), &disk)?;
    let mut cfg = Config::from_out(&out, "initramfs-debug.img")?.with_debug_shell().with_disk_file(&disk);
    let doc = dir.path("full.toml");
    std::fs::write(&doc, FULL)?;
    let _server;
    match source {
        Source::None => {}
        Source::FwCfg => cfg.extra_args.extend(fw_cfg(&doc)),
        Source::NoCloud => {
            let img = dir.path("cidata.img");
            fat_cidata(&img, &dir.path("cidata"), FULL, &format!("iid-bench-{run}"))?;
            cfg.extra_args.extend(config_disk(&img, "cfg0"));
        }
        Source::Ec2 => {
            let server = Server::start(Setup { user_data: Some(FULL.into()), instance_id: format!("i-bench{run}"), token: Token::Required })?;
            cfg.extra_args.extend(["-smbios".into(), "type=1,manufacturer=Amazon EC2,product=t3.micro".into()]);
            cfg.netdev = metadata_net(server.port, false);
            _server = server;
        }
    }
    let mut m = Machine::start(&cfg)?;
    let ready = m.wait_for("cairn-init: ready", Duration::from_secs(240))?;
    let want = if source == Source::None { "none" } else { "1" };
    let label = field(&ready, "config").unwrap_or_default();
    anyhow::ensure!(label.ends_with(want) || label == want, "{}: the ready line says config={label}: {ready}", source.name());
    let dmesg = m.sh_ok("dmesg")?;
    let sample = Sample {
        applied_ms: kernel_ms(&dmesg, source.applied()).with_context(|| format!("{}: no {:?} in dmesg", source.name(), source.applied()))?,
        ready_ms: field(&ready, "boot_ms").context("no boot_ms")?.parse()?,
        rss_kb: field(&ready, "rss_kb").context("no rss_kb")?.parse()?,
    };
    m.press_power_button()?;
    m.wait_exit(Duration::from_secs(90))?;
    Ok(sample)
}

pub fn run(runs: usize) -> Result<()> {
    let dir = Scratch::new("bench-config")?;
    let sources = [Source::None, Source::FwCfg, Source::NoCloud, Source::Ec2];
    let mut samples: Vec<Vec<Sample>> = sources.iter().map(|_| Vec::new()).collect();
    for run in 0..runs {
        eprintln!("bench: config sources, run {}/{runs}", run + 1);
        for (i, s) in sources.iter().enumerate() {
            samples[i].push(boot(*s, &dir, run)?);
        }
    }
    println!("Machine config at the first boot, {runs} boots each, medians (QEMU TCG, 1 vCPU; debug initramfs; ms since the kernel started)");
    println!("| source | config applied (loader's log line) | ready | PID 1 rss_kb at ready |");
    println!("| --- | ---: | ---: | ---: |");
    for (s, v) in sources.iter().zip(&samples) {
        println!(
            "| {} | {:.0} | {:.0} | {:.0} |",
            s.name(),
            median(v.iter().map(|x| x.applied_ms).collect()),
            median(v.iter().map(|x| x.ready_ms).collect()),
            median(v.iter().map(|x| x.rss_kb).collect()),
        );
    }
    println!("The config (every source): hostname, a module, NTP, an added service, the update repository, the admin container with an SSH key, a sysctl.");
    println!();
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_kernel_time_of_a_line() {
        let dmesg = "[    0.000000] Linux version\n[   12.345678] cairn-init: machine config: generation 1 from fw_cfg (platform qemu)\n";
        assert_eq!(super::kernel_ms(dmesg, "machine config: generation 1 from").map(|ms| ms.round()), Some(12346.0));
        assert_eq!(super::kernel_ms(dmesg, "nothing"), None);
    }
}
