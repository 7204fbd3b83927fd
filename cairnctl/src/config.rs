//! `cairnctl config ...`: `validate FILE [--output json]` checks a machine
//! config with the same code the machine runs, offline, on an operator's
//! laptop too. The others change the running machine through cairn-init:
//!
//! ```text
//! cairnctl config apply FILE                 check, keep as the next generation, apply live
//! cairnctl config try FILE [--timeout 2m]    the same, reverted unless confirmed in time
//! cairnctl config confirm                    keep the config on trial
//! cairnctl config rollback                   back to the previous generation
//! cairnctl config status [--output json]     generation, try, what needs a reboot, last refused
//! ```

use crate::cli::Config;
use anyhow::{Context, Result};

pub fn run(c: Config, json: bool) -> Result<()> {
    match c {
        Config::Validate { file } => validate(&file, json),
        Config::Apply { file } => send(&["apply".into(), absolute(&file)?]),
        Config::Try { file, timeout } => send(&["try".into(), absolute(&file)?, timeout.to_string()]),
        Config::Confirm => send(&["confirm".into()]),
        Config::Rollback => send(&["rollback".into()]),
        Config::Status if json => send(&["status".into(), "json".into()]),
        Config::Status => send(&["status".into()]),
    }
}

/// The file as cairn-init's config loader sees it: an absolute path (it runs
/// in the root directory, not in ours). Read here first, so a missing file
/// is named before anything is asked.
fn absolute(file: &str) -> Result<String> {
    std::fs::metadata(file).with_context(|| format!("Cannot read {file}"))?;
    let path = std::path::absolute(file).with_context(|| format!("Cannot make {file} absolute"))?;
    path.to_str().map(str::to_string).with_context(|| format!("{} is not UTF-8", path.display()))
}

fn send(words: &[String]) -> Result<()> {
    let mut w = vec!["config".to_string()];
    w.extend(words.iter().cloned());
    crate::control(&w)
}

fn validate(file: &str, json: bool) -> Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("Cannot read {file}"))?;
    let result = cairn_model::config::parse(&text, file);
    if json {
        let problems = result.as_ref().err().map_or(Vec::new(), |p| p.0.clone());
        let out = serde_json::json!({ "file": file, "valid": problems.is_empty(), "problems": problems });
        println!("{out}");
    } else {
        match &result {
            Ok(c) => println!(
                "{file}: valid (hostname {}, {} link(s), {} added service(s), update policy {:?})",
                c.hostname.as_deref().unwrap_or("from the platform"),
                c.network.links.len(),
                c.services.add.len(),
                c.update.policy
            ),
            Err(p) => {
                for problem in &p.0 {
                    eprintln!("{problem}");
                }
            }
        }
    }
    match result {
        Ok(_) => Ok(()),
        Err(p) => std::process::exit(if p.0.is_empty() { 0 } else { 1 }),
    }
}
