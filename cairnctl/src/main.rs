//! cairnctl: control of a Cairn machine. On the node it speaks to
//! cairn-init's control socket (and runs the updater and the config checker
//! itself); with `--node HOST,...` the same verbs go to sysagent's API over
//! mutual TLS (remote.rs). Every verb and flag is in cli.rs; `cairnctl
//! --help` and `cairnctl VERB --help` print them.
//!
//! The protocol: one request line of tab-separated words; the answer starts
//! with `ok` or `error: ...` and the rest is printed as it comes until init
//! closes the connection.

use anyhow::{bail, Context, Result};
use clap::Parser;
use cli::{Command, Output};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

mod cli;
mod config;
mod pki;
mod remote;
mod update;

const SOCKET: &str = "/run/cairn/control.sock";
/// cairn-init refuses longer request lines (newline included).
const MAX_REQUEST: usize = 4096;
/// How long cairn-init may take to start its answer. A config change runs
/// the config loader (at most 25 s) and the service loader (at most 30 s).
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

fn run() -> Result<()> {
    let cli = cli::Cli::parse();
    let json = cli.output == Output::Json;
    if !cli.remote.node.is_empty() {
        let opts = remote::Options {
            nodes: cli.remote.node,
            identity: remote::Identity { ca: cli.remote.ca, cert: cli.remote.cert, key: cli.remote.key },
            json,
            yes: cli.remote.yes,
        };
        return remote::run(opts, &cli.command);
    }
    let r = &cli.remote;
    if r.yes || r.ca.is_some() || r.cert.is_some() || r.key.is_some() {
        bail!("--ca, --cert, --key and --yes are for remote nodes: add --node HOST");
    }
    let local_json = matches!(cli.command, Command::Config(cli::Config::Validate { .. } | cli::Config::Status));
    if json && !local_json {
        bail!("--output json is for `config validate`, `config status` and remote nodes (--node HOST)");
    }
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match cli.command {
        Command::Status | Command::Audit | Command::Metrics | Command::Cluster(_) => {
            bail!("status, audit, metrics and cluster are sysagent's: add --node HOST (on the node: `cairnctl list`, `update status`, `config status`)")
        }
        Command::List => control(&words(&["list"])),
        Command::Reboot => control(&words(&["reboot"])),
        Command::Poweroff => control(&words(&["poweroff"])),
        Command::Restart { name } => control(&["restart".to_string(), name]),
        Command::Logs { name, follow } => control(&[if follow { "logs-follow" } else { "logs" }.to_string(), name]),
        Command::Exec { name, command } => {
            let mut w = vec!["exec".to_string(), name];
            w.extend(command);
            control(&w)
        }
        Command::Update(u) => update::run(u),
        Command::Rollback(n) => update::rollback(n.no_reboot),
        Command::Config(c) => config::run(c, json),
        Command::Pki(p) => pki::run(p),
    }
}

/// Sends one request to cairn-init and prints the answer.
fn control(words: &[String]) -> Result<()> {
    if words.iter().any(|w| w.contains('\t') || w.contains('\n')) {
        bail!("arguments may not contain tabs or newlines");
    }
    let line = format!("{}\n", words.join("\t"));
    if line.len() > MAX_REQUEST {
        bail!("the request is {} bytes; cairn-init takes at most {MAX_REQUEST}", line.len());
    }
    let mut stream = UnixStream::connect(SOCKET).with_context(|| format!("Cannot reach cairn-init at {SOCKET}"))?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    stream.write_all(line.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    match reader.read_line(&mut first) {
        Ok(0) => bail!("cairn-init closed the connection without answering"),
        Ok(_) => {}
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            bail!("cairn-init did not answer within {} s", ANSWER_TIMEOUT.as_secs())
        }
        Err(e) => return Err(e).context("cannot read cairn-init's answer"),
    }
    // The rest (a followed log, a command's output) may take any time.
    reader.get_ref().set_read_timeout(None)?;
    let first = first.trim_end();
    if let Some(err) = first.strip_prefix("error: ") {
        // An error may go on for more lines (every problem of a refused config).
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut reader, &mut rest);
        if rest.trim().is_empty() {
            bail!("{err}");
        }
        bail!("{err}\n{}", rest.trim_end());
    }
    if first != "ok" {
        bail!("unexpected answer from cairn-init: {first}");
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        out.write_all(&line)?;
        out.flush()?;
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("cairnctl: {e}");
        for cause in e.chain().skip(1) {
            eprintln!("  {cause}");
        }
        std::process::exit(1);
    }
}
