//! `cairnctl update ...` and `cairnctl rollback`: the updater library, run
//! on the machine it updates.

use crate::cli::{NoReboot, Update, Verdict};
use anyhow::{bail, Result};
use cairn_updater::update::Updater;

fn updater() -> Result<Updater> {
    Ok(Updater::from_system(Box::new(|line: &str| println!("cairn-update: {line}")))?)
}

/// Waits until this boot's verdict is in (see `cairn_updater::verdict`)
/// before an operator's command touches the ESP: the verdict may bless or
/// drop entries, and the modules to read the ESP load with it.
fn after_verdict() -> Result<()> {
    use cairn_updater::verdict;
    // Lossy: a byte that is not UTF-8 spoils only the word it sits in.
    let cmdline = String::from_utf8_lossy(&std::fs::read("/proc/cmdline").unwrap_or_default()).into_owned();
    if !verdict::expected(&cmdline) || verdict::is_done() {
        return Ok(());
    }
    let limit = verdict::wait_limit(&cmdline);
    println!("cairn-update: waiting for this boot's verdict (every service healthy, or cairn.health_timeout); at most {} s", limit.as_secs());
    let started = std::time::Instant::now();
    while !verdict::is_done() {
        if started.elapsed() >= limit {
            bail!("this boot's update verdict has not come in {} s; its output is on the console", limit.as_secs());
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    Ok(())
}

fn reboot_now() -> Result<()> {
    println!("cairn-update: rebooting");
    super::control(&["reboot".to_string()])
}

pub fn run(command: Update) -> Result<()> {
    match command {
        Update::Rollback(n) => return rollback(n.no_reboot),
        Update::Check => {
            let mut u = updater()?;
            match u.check() {
                Ok((m, _)) => println!("cairn-update: {} is available (running {}); `cairnctl update apply` installs it", m.version, u.version),
                Err(cairn_updater::UpdateError::Refused(cairn_updater::Refusal::NotNewer { offered, running })) => {
                    println!("cairn-update: up to date: the channel offers {offered}, running {running}")
                }
                Err(e) => return Err(e.into()),
            }
        }
        Update::Apply(NoReboot { no_reboot }) => {
            after_verdict()?;
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
        Update::Status => print!("{}", updater()?.status()?),
        Update::Unmark { version } => {
            let v: cairn_updater::Version = version.parse().map_err(|e: String| anyhow::anyhow!("unmark {version}: {e}"))?;
            if !updater()?.store.unmark_bad(v)? {
                bail!("{v} is not recorded as bad (see `cairnctl update status`)");
            }
            println!("cairn-update: {v} is no longer recorded as bad; `cairnctl update apply` may install it again");
        }
        Update::Set { pairs } => {
            let u = updater()?;
            let mut config = u.store.config()?;
            for p in &pairs {
                let Some((k, v)) = p.split_once('=') else { bail!("`{p}`: expected KEY=VALUE") };
                match k {
                    "url" if !(v.starts_with("http://") || v.starts_with("https://")) => bail!("url={v}: expected an http:// or https:// URL"),
                    "channel" if !["stable", "beta", "alpha"].contains(&v) => bail!("channel={v}: expected stable, beta or alpha"),
                    // Checked now, so a bad file is named here and not at the next check.
                    "ca" if !v.is_empty() => {
                        cairn_updater::http::Trust::new(Some(std::path::Path::new(v)))?;
                    }
                    "proxy" if !v.is_empty() => {
                        cairn_updater::http::Trust::with_proxy(None, Some(v))?;
                    }
                    "url" | "channel" | "ca" | "proxy" => {}
                    _ => bail!(
                        "`{k}`: the keys are url, channel, ca (a PEM file of CAs for an https repository) and proxy (an http:// proxy URL); an empty value drops ca or proxy"
                    ),
                }
                config.retain(|(key, _)| key != k);
                config.push((k.to_string(), v.to_string()));
            }
            u.store.set_config(&config)?;
        }
        Update::Settle { verdict, reason } => {
            if verdict == Verdict::Healthy && !reason.is_empty() {
                bail!("update settle healthy takes no reason (`{}`)", reason.join(" "));
            }
            let reason = reason.join(" ");
            let settled = updater().and_then(|mut u| Ok(u.settle(verdict == Verdict::Healthy, &reason)?));
            // Done, well or not: commands waiting for it go on and meet
            // whatever the ESP now holds.
            if let Err(e) = cairn_updater::verdict::mark_done() {
                eprintln!("cairn-update: cannot record that this boot's verdict is in: {e}");
            }
            if settled? {
                reboot_now()?;
            }
        }
    }
    Ok(())
}

pub fn rollback(no_reboot: bool) -> Result<()> {
    after_verdict()?;
    let mut u = updater()?;
    let v = u.rollback()?;
    println!("cairn-update: the next boot tries {v} in the other slot; {} is recorded as bad (`cairnctl update unmark {}` undoes that)", u.version, u.version);
    if !no_reboot {
        reboot_now()?;
    }
    Ok(())
}
