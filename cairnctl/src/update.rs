//! `cairnctl update ...` and `cairnctl rollback`: the updater library, run
//! on the machine it updates.

use anyhow::{bail, Result};
use cairn_updater::update::Updater;

fn updater() -> Result<Updater> {
    Ok(Updater::from_system(Box::new(|line: &str| println!("cairn-update: {line}")))?)
}

fn reboot_now() -> Result<()> {
    println!("cairn-update: rebooting");
    super::control(&["reboot".to_string()])
}

pub fn run(args: &[String]) -> Result<()> {
    let no_reboot = args.iter().any(|a| a == "--no-reboot");
    let words: Vec<&str> = args.iter().map(String::as_str).filter(|a| *a != "--no-reboot").collect();
    match words.as_slice() {
        ["check"] => {
            let mut u = updater()?;
            match u.check() {
                Ok((m, _)) => println!("cairn-update: {} is available (running {}); `cairnctl update apply` installs it", m.version, u.version),
                Err(cairn_updater::UpdateError::Refused(cairn_updater::Refusal::NotNewer { offered, running })) => {
                    println!("cairn-update: up to date: the channel offers {offered}, running {running}")
                }
                Err(e) => return Err(e.into()),
            }
        }
        ["apply"] => {
            let mut u = updater()?;
            let prepared = u.prepare()?;
            let report = u.install(&prepared)?;
            println!(
                "cairn-update: installed {} into slot {} (root {:.1} MiB written in {:.2} s)",
                prepared.manifest.version,
                prepared.target,
                report.bytes as f64 / 1048576.0,
                report.write_s
            );
            if !no_reboot {
                reboot_now()?;
            }
        }
        ["status"] => print!("{}", updater()?.status()?),
        ["set", pairs @ ..] if !pairs.is_empty() => {
            let u = updater()?;
            let mut config = u.store.config()?;
            for p in pairs {
                let Some((k, v)) = p.split_once('=') else { bail!("`{p}`: expected KEY=VALUE") };
                match k {
                    "url" if !v.starts_with("http://") => bail!("url={v}: only http:// repositories are supported"),
                    "channel" if !["stable", "beta", "alpha"].contains(&v) => bail!("channel={v}: expected stable, beta or alpha"),
                    "url" | "channel" => {}
                    _ => bail!("`{k}`: the keys are url and channel"),
                }
                config.retain(|(key, _)| key != k);
                config.push((k.to_string(), v.to_string()));
            }
            u.store.set_config(&config)?;
        }
        ["settle", "healthy"] => {
            if updater()?.settle(true, "")? {
                reboot_now()?;
            }
        }
        ["settle", "unhealthy", reason @ ..] => {
            if updater()?.settle(false, &reason.join(" "))? {
                reboot_now()?;
            }
        }
        _ => super::usage(),
    }
    Ok(())
}

pub fn rollback(args: &[String]) -> Result<()> {
    let no_reboot = match args {
        [] => false,
        [a] if a == "--no-reboot" => true,
        _ => super::usage(),
    };
    let v = updater()?.rollback()?;
    println!("cairn-update: the next boot tries {v} in the other slot");
    if !no_reboot {
        reboot_now()?;
    }
    Ok(())
}
