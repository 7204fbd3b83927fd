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

use anyhow::{bail, Context, Result};

const USAGE: &str = "usage: cairnctl config validate FILE [--output json] | apply FILE | try FILE [--timeout 2m] | confirm | rollback | status [--output json]";
/// A try's timeout when none is given.
const DEFAULT_TRY: u64 = 120;

pub fn run(args: &[String]) -> Result<()> {
    let rest = &args[1.min(args.len())..];
    match args.first().map(String::as_str) {
        Some("validate") => validate(rest),
        Some("apply") => match rest {
            [file] => send(&["apply".into(), absolute(file)?]),
            _ => bail!("{USAGE}"),
        },
        Some("try") => {
            let (file, secs) = match rest {
                [file] => (file, DEFAULT_TRY),
                [file, t, d] | [t, d, file] if t == "--timeout" => (file, duration(d)?),
                _ => bail!("{USAGE}"),
            };
            send(&["try".into(), absolute(file)?, secs.to_string()])
        }
        Some(verb @ ("confirm" | "rollback")) if rest.is_empty() => send(&[verb.into()]),
        Some("status") => match rest {
            [] => send(&["status".into()]),
            [o, j] if o == "--output" && j == "json" => send(&["status".into(), "json".into()]),
            [o, t] if o == "--output" => bail!("--output {t}: only json is known (leave it out for text)"),
            _ => bail!("{USAGE}"),
        },
        _ => bail!("{USAGE}"),
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

/// `90`, `90s`, `2m`, `1h`: seconds.
fn duration(text: &str) -> Result<u64> {
    let (num, unit) = text.find(|c: char| !c.is_ascii_digit()).map_or((text, ""), |i| text.split_at(i));
    let n: u64 = num.parse().with_context(|| format!("--timeout {text}: expected a number with s, m or h (90s, 2m, 1h)"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => bail!("--timeout {text}: unknown unit {unit:?} (s, m or h)"),
    };
    if !(10..=24 * 3600).contains(&secs) {
        bail!("--timeout {text}: out of range (10 s to 24 h)");
    }
    Ok(secs)
}

fn send(words: &[String]) -> Result<()> {
    let mut w = vec!["config".to_string()];
    w.extend(words.iter().cloned());
    crate::control(&w)
}

fn validate(args: &[String]) -> Result<()> {
    let (file, json) = match args {
        [f] => (f, false),
        [f, o, j] | [o, j, f] if o == "--output" && j == "json" => (f, true),
        [f, o, t] if o == "--output" => bail!("--output {t}: only json is known (leave it out for text)"),
        _ => bail!("usage: cairnctl config validate FILE [--output json]"),
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_read_with_their_units_and_out_of_range_is_refused() {
        assert_eq!(duration("2m").unwrap(), 120);
        assert_eq!(duration("90").unwrap(), 90);
        assert_eq!(duration("90s").unwrap(), 90);
        assert_eq!(duration("1h").unwrap(), 3600);
        assert!(duration("5s").unwrap_err().to_string().contains("out of range"));
        assert!(duration("2d").unwrap_err().to_string().contains("unknown unit"));
        assert!(duration("m").is_err());
    }
}
