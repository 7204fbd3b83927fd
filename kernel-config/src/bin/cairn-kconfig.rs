//! `cairn-kconfig check CONFIG`: fails naming every option Cairn needs that the
//! kernel config lacks. `cairn-kconfig modules CONFIG`: the modules to ship.

use anyhow::{bail, Context, Result};
use cairn_kconfig::{check, modules_for, read_config, requirements, Load};
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
    let reqs = requirements();
    match verb {
        "check" => {
            let missing = check(&reqs, &config);
            if missing.is_empty() {
                println!("{}: all {} required options present", path.display(), reqs.len());
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
                    Load::Later => "later",
                };
                println!("{name} {when}");
            }
            Ok(())
        }
        other => bail!("unknown verb `{other}`; expected check or modules"),
    }
}
