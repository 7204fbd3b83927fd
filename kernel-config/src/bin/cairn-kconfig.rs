//! `cairn-kconfig check CONFIG`: fails naming every option Cairn needs that the
//! kernel config lacks. `cairn-kconfig modules CONFIG`: the modules to ship.
//! The kernel's flavour (cloud or metal) comes from the file name,
//! `config-<release>`, as Debian names it.

use anyhow::{bail, Context, Result};
use cairn_kconfig::{check, for_flavour, modules_for, read_config, requirements, Flavour, Load};
use std::path::PathBuf;

fn main() {
    if let Err(err) = run() {
        eprintln!("cairn-kconfig: error: {err}");
        for (i, cause) in err.chain().skip(1).enumerate() {
            eprintln!("  {}: {cause}", i + 1);
        }
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (verb, path) = match args.as_slice() {
        [verb, path] => (verb.as_str(), PathBuf::from(path)),
        _ => bail!("usage: cairn-kconfig check|modules KERNEL_CONFIG"),
    };
    let config = read_config(&path).context("Cannot check the kernel config")?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let flavour = Flavour::of_release(name.strip_prefix("config-").unwrap_or(name));
    let reqs = for_flavour(&requirements(), flavour);
    match verb {
        "check" => {
            let missing = check(&reqs, &config);
            if missing.is_empty() {
                println!("{}: all {} required options of a {} kernel present", path.display(), reqs.len(), flavour.name());
                return Ok(());
            }
            for m in &missing {
                eprintln!("missing: {m}");
            }
            bail!(
                "{} lacks {} option(s) Cairn needs: {}",
                path.display(),
                missing.len(),
                missing.iter().map(|m| m.option.as_str()).collect::<Vec<_>>().join(", ")
            )
        }
        "modules" => {
            for (name, load) in modules_for(&reqs, &config) {
                let when = match load {
                    Load::Boot => "boot",
                    Load::Root => "root",
                    Load::Disk => "disk",
                    Load::Device => "device",
                    Load::Docker => "docker",
                    Load::Later => "later",
                };
                println!("{name} {when}");
            }
            Ok(())
        }
        other => bail!("unknown verb `{other}`; expected check or modules"),
    }
}
