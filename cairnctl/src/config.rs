//! `cairnctl config validate FILE [--output json]`: checks a machine config
//! with the same code the machine runs, offline, on an operator's laptop too.

use anyhow::{bail, Context, Result};

pub fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("validate") => validate(&args[1..]),
        _ => bail!("usage: cairnctl config validate FILE [--output json]"),
    }
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
