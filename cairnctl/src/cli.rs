//! cairnctl's command line: every verb and flag, with the help clap makes
//! from these comments. The same verbs work on the node (cairn-init's
//! socket) and, with `--node`, through sysagent's API from anywhere.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "cairnctl",
    version,
    about = "Control a Cairn machine: on the node through cairn-init's socket, from anywhere through sysagent's API (--node)",
    after_help = "With --node the verbs go to sysagent on each node (port 9440, mutual TLS); --ca, --cert and --key \
                  default to $CAIRN_CA, $CAIRN_CERT and $CAIRN_KEY. A verb that changes machines needs --yes when it \
                  goes to more than one."
)]
pub struct Cli {
    #[command(flatten)]
    pub remote: Remote,
    /// How answers are printed (json: the API's JSON; locally only `config validate` and `config status` have it)
    #[arg(long, value_enum, global = true, default_value_t = Output::Text)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the verb goes. These come before the verb (pki's own --ca is a directory).
#[derive(Args, Debug)]
pub struct Remote {
    /// Ask these nodes' sysagent instead of the local cairn-init (comma-separated; the port defaults to 9440)
    #[arg(long, value_name = "HOST[:PORT],...", value_delimiter = ',')]
    pub node: Vec<String>,
    /// The cluster CA's certificate (PEM) [default: $CAIRN_CA]
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// This client's certificate (PEM) [default: $CAIRN_CERT]
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// This client's private key (PEM) [default: $CAIRN_KEY]
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Do it on every node given, when a verb that changes machines goes to more than one
    #[arg(long)]
    pub yes: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Hostname, version, slot, kernel, uptime, boot time, config, update state (sysagent: needs --node)
    Status,
    /// Every service with state, pid, restarts, uptime and health
    List,
    /// A service's log (NAME `kernel`: the kernel's)
    Logs {
        name: String,
        /// Keep printing new lines as they come
        #[arg(short, long)]
        follow: bool,
    },
    /// Stop and start a service
    Restart { name: String },
    /// Run a command inside a service's container (on the node only)
    Exec {
        name: String,
        /// The command and its arguments (after `--` when they start with `-`)
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Reboot the machine cleanly
    Reboot,
    /// Power the machine off cleanly
    Poweroff,
    /// Signed updates into the other slot
    #[command(subcommand)]
    Update(Update),
    /// Boot the other slot, if it holds a version that was good; the version left is recorded as bad
    Rollback(NoReboot),
    /// The machine config: validate (offline), apply, try, confirm, rollback, status
    #[command(subcommand)]
    Config(Config),
    /// The cluster CA and its certificates, made on an operator's machine
    #[command(subcommand)]
    Pki(Pki),
    /// The newest audit records: who changed what, when, with what result (sysagent: needs --node)
    Audit,
    /// The Prometheus scrape (sysagent: needs --node)
    Metrics,
    /// The Docker Swarm this machine is a member of: status, join tokens, resuming a halted rollout (sysagent: needs --node)
    #[command(subcommand)]
    Cluster(Cluster),
}

#[derive(Subcommand, Debug)]
pub enum Cluster {
    /// Membership; on a manager every node, its state, availability and labels, and the rollout (slots, halt, bad versions)
    Status,
    /// The swarm's join token for a role (admins; nodes fetch theirs themselves)
    Token {
        #[arg(value_parser = ["worker", "manager"])]
        role: String,
    },
    /// Clear a halted rollout (admins); versions recorded as bad stay bad
    Resume,
}

#[derive(Args, Debug, Clone, Copy)]
pub struct NoReboot {
    /// Prepare the switch, but leave the reboot to the operator
    #[arg(long)]
    pub no_reboot: bool,
}

#[derive(Subcommand, Debug)]
pub enum Update {
    /// Is there a newer signed version for this machine?
    Check,
    /// Download, install into the other slot, switch, reboot
    Apply(NoReboot),
    /// Slots, entries, trial, floor, bad versions, repository
    Status,
    /// Where updates come from
    Set {
        /// url=URL, channel=stable|beta|alpha, ca=FILE (CAs for an https repository), proxy=URL; an empty value drops ca or proxy
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
    },
    /// Let apply install a version recorded as bad again
    Unmark { version: String },
    /// This boot's verdict (cairn-init runs it every boot)
    Settle {
        verdict: Verdict,
        /// Why the boot is unhealthy
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        reason: Vec<String>,
    },
    /// The same as `cairnctl rollback`
    Rollback(NoReboot),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    Unhealthy,
}

#[derive(Subcommand, Debug)]
pub enum Config {
    /// Check a machine config with the code the machine runs (offline; every problem, one per line)
    Validate { file: String },
    /// Check, keep as the next generation, apply live
    Apply { file: String },
    /// The same as apply, reverted unless confirmed in time
    Try {
        file: String,
        /// How long the try lasts: 90, 90s, 2m, 1h (10 s to 24 h)
        #[arg(long, default_value = "2m", value_parser = duration)]
        timeout: u64,
    },
    /// Keep the config on trial
    Confirm,
    /// Back to the generation in force before this one
    Rollback,
    /// Generation, try, what needs a reboot, last refused
    Status,
}

#[derive(Subcommand, Debug)]
pub enum Pki {
    /// A new cluster CA: DIR/ca.pem and DIR/ca.key (keep the key off the nodes)
    Ca {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[arg(long, default_value = "cairn cluster CA")]
        name: String,
        #[arg(long, default_value_t = 3650, value_parser = clap::value_parser!(i64).range(1..))]
        days: i64,
    },
    /// A client certificate carrying a role: DIR/NAME.pem and DIR/NAME.key
    Client {
        /// The CA's directory (ca.pem, ca.key)
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = role)]
        role: cairn_pki::Role,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(i64).range(1..))]
        days: i64,
    },
    /// A node's server certificate; prints the machine config's [api] section for it
    Node {
        /// The CA's directory (ca.pem, ca.key)
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The node's name (its first SAN)
        #[arg(long)]
        name: String,
        /// Another name or address of the node (repeatable)
        #[arg(long, value_name = "NAME_OR_IP")]
        san: Vec<String>,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(i64).range(1..))]
        days: i64,
    },
}

fn role(text: &str) -> Result<cairn_pki::Role, String> {
    text.parse().map_err(|_| {
        let all: Vec<&str> = cairn_pki::Role::ALL.iter().map(|r| r.as_str()).collect();
        format!("expected one of {}", all.join(", "))
    })
}

/// `90`, `90s`, `2m`, `1h`: seconds.
pub fn duration(text: &str) -> Result<u64, String> {
    let (num, unit) = text.find(|c: char| !c.is_ascii_digit()).map_or((text, ""), |i| text.split_at(i));
    let n: u64 = num.parse().map_err(|_| "expected a number with s, m or h (90s, 2m, 1h)".to_string())?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("unknown unit {unit:?} (s, m or h)")),
    };
    if !(10..=24 * 3600).contains(&secs) {
        return Err("out of range (10 s to 24 h)".into());
    }
    Ok(secs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("cairnctl").chain(line.split(' ')))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_verbs_read_as_the_docs_and_tests_write_them() {
        assert!(matches!(parse("logs chrony -f").unwrap().command, Command::Logs { follow: true, .. }));
        assert!(matches!(parse("logs -f chrony").unwrap().command, Command::Logs { follow: true, .. }));
        let Command::Exec { name, command } = parse("exec admin -- ps -ef").unwrap().command else { panic!() };
        assert_eq!((name.as_str(), command), ("admin", vec!["ps".to_string(), "-ef".to_string()]));
        let Command::Exec { command, .. } = parse("exec admin ps -ef").unwrap().command else { panic!() };
        assert_eq!(command, ["ps", "-ef"]);
        assert!(matches!(parse("update apply --no-reboot").unwrap().command, Command::Update(Update::Apply(NoReboot { no_reboot: true }))));
        let Command::Update(Update::Settle { verdict, reason }) = parse("update settle unhealthy chrony -x failed").unwrap().command else { panic!() };
        assert_eq!((verdict, reason.join(" ")), (Verdict::Unhealthy, "chrony -x failed".to_string()));
        let Command::Config(Config::Try { timeout, .. }) = parse("config try /run/x.toml --timeout 30s").unwrap().command else { panic!() };
        assert_eq!(timeout, 30);
        let Command::Config(Config::Try { timeout, .. }) = parse("config try /run/x.toml").unwrap().command else { panic!() };
        assert_eq!(timeout, 120);
        assert_eq!(parse("config status --output json").unwrap().output, Output::Json);
        let cli = parse("--node a,b:1,[fd00::1]:2 --yes --output json restart chrony").unwrap();
        assert_eq!(cli.remote.node, ["a", "b:1", "[fd00::1]:2"]);
        assert!(cli.remote.yes);
        assert_eq!(cli.output, Output::Json);
        assert!(matches!(parse("pki client --ca d --name me --role operator --out d").unwrap().command, Command::Pki(Pki::Client { .. })));
    }

    #[test]
    fn mistakes_are_named() {
        let e = |line: &str| parse(line).unwrap_err().to_string();
        assert!(e("frobnicate").contains("frobnicate"));
        assert!(e("config try f --timeout 5s").contains("out of range"));
        assert!(e("config try f --timeout 2d").contains("unknown unit"));
        assert!(e("pki client --ca d --name me --role root --out d").contains("expected one of admin"));
        assert!(e("--output yaml list").contains("yaml"));
        assert!(e("restart").contains("<NAME>"));
        assert!(e("exec admin").contains("<CMD>"));
    }
}
