//! cairnctl: local control of a Cairn machine through cairn-init's socket.
//!
//! ```text
//! cairnctl list                      services with state, pid, restarts, uptime, health
//! cairnctl logs NAME [-f]            a service's log (kernel: the kernel's), -f follows
//! cairnctl restart NAME              stop and start a service
//! cairnctl exec NAME -- CMD [ARG]... run a command inside a service's container
//! cairnctl reboot | poweroff
//! cairnctl update check              is there a newer signed version for this machine?
//! cairnctl update apply [--no-reboot] download, install into the other slot, switch, reboot
//! cairnctl update status             slots, entries, trial, floor, bad versions, repository
//! cairnctl update set url=URL [channel=stable|beta|alpha] [ca=FILE] [proxy=URL]
//! cairnctl update unmark VERSION     let apply install a version recorded as bad again
//! cairnctl update settle healthy | unhealthy REASON   (cairn-init, every boot)
//! cairnctl [update] rollback [--no-reboot]  boot the other slot, if it holds a version
//!                                    that was good; the version left is recorded as bad
//! cairnctl config validate FILE [--output json]   check a machine config (offline)
//! cairnctl config apply FILE | try FILE [--timeout 2m] | confirm | rollback | status [--output json]
//! cairnctl pki ca | client | node ...  the cluster CA and its certificates (see pki.rs)
//!
//! cairnctl --node HOST[:PORT][,HOST...] [--ca F] [--cert F] [--key F] [--output json] [--yes] VERB...
//!     the same verbs (status, list, logs, restart, reboot, poweroff, update ..., rollback,
//!     config ..., audit, metrics) through sysagent's API on each node (port 9440, mutual
//!     TLS); the files default to $CAIRN_CA, $CAIRN_CERT, $CAIRN_KEY
//! ```
//!
//! The protocol: one request line of tab-separated words; the answer starts
//! with `ok` or `error: ...` and the rest is printed as it comes until init
//! closes the connection.

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

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

fn usage() -> ! {
    eprintln!("usage: cairnctl list | logs NAME [-f] | restart NAME | exec NAME -- CMD [ARG]... | reboot | poweroff");
    eprintln!("       cairnctl update check | apply [--no-reboot] | status | set KEY=VALUE... | unmark VERSION | settle healthy|unhealthy REASON");
    eprintln!("       cairnctl [update] rollback [--no-reboot]");
    eprintln!("       cairnctl config validate FILE [--output json] | apply FILE | try FILE [--timeout 2m] | confirm | rollback | status [--output json]");
    std::process::exit(2);
}

fn request(args: &[String]) -> Result<Vec<String>> {
    let words: Vec<String> = match args.first().map(String::as_str) {
        Some("list") | Some("reboot") | Some("poweroff") if args.len() == 1 => args.to_vec(),
        Some("restart") if args.len() == 2 => args.to_vec(),
        Some("logs") => match &args[1..] {
            [name] => vec!["logs".into(), name.clone()],
            [name, f] | [f, name] if f == "-f" => vec!["logs-follow".into(), name.clone()],
            _ => usage(),
        },
        Some("exec") => {
            let name = args.get(1).cloned().unwrap_or_else(|| usage());
            let rest = &args[2..];
            let cmd = match rest.first().map(String::as_str) {
                Some("--") => &rest[1..],
                _ => rest,
            };
            if cmd.is_empty() {
                usage();
            }
            let mut w = vec!["exec".to_string(), name];
            w.extend(cmd.iter().cloned());
            w
        }
        _ => usage(),
    };
    if words.iter().any(|w| w.contains('\t') || w.contains('\n')) {
        bail!("arguments may not contain tabs or newlines");
    }
    Ok(words)
}

/// Takes the remote flags off the front of the arguments; Some when `--node` is among them.
fn remote_options(args: &mut Vec<String>) -> Result<Option<remote::Options>> {
    let mut opts = remote::Options {
        nodes: Vec::new(),
        identity: remote::Identity { ca: None, cert: None, key: None },
        json: false,
        yes: false,
    };
    let mut seen = false;
    loop {
        let Some(first) = args.first().cloned() else { break };
        let value = |args: &mut Vec<String>| -> Result<String> {
            if args.len() < 2 {
                bail!("{first} needs a value");
            }
            args.remove(0);
            Ok(args.remove(0))
        };
        match first.as_str() {
            "--node" => {
                seen = true;
                opts.nodes.extend(value(args)?.split(',').filter(|n| !n.is_empty()).map(str::to_string));
            }
            "--ca" => opts.identity.ca = Some(value(args)?.into()),
            "--cert" => opts.identity.cert = Some(value(args)?.into()),
            "--key" => opts.identity.key = Some(value(args)?.into()),
            "--yes" => {
                args.remove(0);
                opts.yes = true;
            }
            "--output" => {
                let v = value(args)?;
                if v != "json" {
                    bail!("--output {v}: the one format is json");
                }
                opts.json = true;
            }
            _ => break,
        }
    }
    if !seen {
        if opts.json || opts.yes || opts.identity.ca.is_some() || opts.identity.cert.is_some() || opts.identity.key.is_some() {
            bail!("--ca, --cert, --key, --yes and a leading --output are for a remote node: add --node HOST");
        }
        return Ok(None);
    }
    if opts.nodes.is_empty() {
        bail!("--node needs at least one HOST[:PORT]");
    }
    // `--output json` may also come after the verb.
    if let Some(i) = args.iter().position(|a| a == "--output") {
        if args.get(i + 1).is_some_and(|v| v == "json") {
            args.drain(i..i + 2);
            opts.json = true;
        }
    }
    Ok(Some(opts))
}

fn run() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(opts) = remote_options(&mut args)? {
        return remote::run(opts, &args);
    }
    match args.first().map(String::as_str) {
        Some("pki") => return pki::run(&args[1..]),
        Some("update") => return update::run(&args[1..]),
        Some("rollback") => return update::rollback(&args[1..]),
        Some("config") => return config::run(&args[1..]),
        _ => {}
    }
    control(&request(&args)?)
}

/// Sends one request to cairn-init and prints the answer.
fn control(words: &[String]) -> Result<()> {
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
