//! cairn-config: the config loader. cairn-init runs `cairn-config boot` once
//! at boot, after STATE is mounted and before the network and services
//! start, and reads its answer (`cairn_model::config::handoff`) from stdout.
//!
//! At boot it finds the machine config: the generation on STATE when there is
//! one (after the first boot STATE is the source of truth), else the first
//! source that answers (see `sources`). A source whose instance id differs
//! from the stored one means a new machine: it is provisioned afresh. A config
//! is checked whole first; a bad one is never applied, every problem is named,
//! and the machine keeps its last good config (or none).
//!
//! `cairn-config boot --network` is the second try, run by cairn-init once the
//! first link has DHCP when the first found nothing and a source that needs
//! the network (a URL, a metadata service) may have a config.
//! `cairn-config azure-ready` reports the machine ready to Azure's WireServer.
//! `cairn-config show` prints the generation in force.
//!
//! For `cairnctl config` on a running machine (cairn-init runs these and
//! applies the answer, the same hand-off; see `live`):
//! `cairn-config apply FILE`, `try FILE SECS`, `confirm`, `rollback`,
//! `revert` (a try ran out) and `status [--json]`.

mod agent;
mod apply;
mod chrony;
mod decide;
mod docker;
mod live;
mod pending;
mod platform;
mod sources;
mod ssh;
mod store;

use cairn_model::config::handoff::{self, Handoff};
use sources::Phase;
use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("boot") | None => {
            let phase = if args.get(1).map(String::as_str) == Some("--network") { Phase::Network } else { Phase::Local };
            let h = boot(phase);
            print!("{}", handoff::write(&h));
        }
        Some("azure-ready") => {
            if let Err(e) = sources::metadata::azure_ready(&sources::metadata::Endpoints::default()) {
                eprintln!("cairn-config: error: cannot report ready to Azure: {e}");
                std::process::exit(1);
            }
            println!("cairn-config: reported ready to Azure");
        }
        Some("apply") | Some("try") | Some("confirm") | Some("rollback") | Some("revert") | Some("status") => match live_command(&args) {
            Ok(h) => print!("{}", handoff::write(&h)),
            Err(usage) => {
                eprintln!("cairn-config: error: {usage}");
                std::process::exit(2);
            }
        },
        Some("show") => match store::Store::new(Path::new(store::DIR)).current() {
            Ok(Some(s)) => {
                println!("# generation {} from {}", s.generation, s.source);
                print!("{}", s.text);
            }
            Ok(None) => println!("# no machine config on STATE"),
            Err(e) => {
                eprintln!("cairn-config: error: cannot read {}: {e}", store::DIR);
                std::process::exit(1);
            }
        },
        Some(other) => {
            eprintln!("cairn-config: error: unknown command {other:?} (usage: cairn-config boot [--network] | azure-ready | show | apply FILE | try FILE SECS | confirm | rollback | revert | status [--json])");
            std::process::exit(2);
        }
    }
}

fn read_cmdline() -> String {
    String::from_utf8_lossy(&std::fs::read("/proc/cmdline").unwrap_or_default()).into_owned()
}

/// The live commands; Err is a usage error.
fn live_command(args: &[String]) -> Result<Handoff, String> {
    let cmdline = read_cmdline();
    let pause = sources::url::value(&cmdline, "cairn.config.pause").map(str::to_string);
    let store = store::Store::new(Path::new(store::DIR)).pausing_at(pause);
    let paths = apply::Paths::real();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    Ok(match words.as_slice() {
        ["apply", file] => live::apply_file(&store, file, None, &paths),
        ["try", file, secs] => {
            let secs: u64 = secs.parse().map_err(|_| format!("try: {secs:?} is not a number of seconds"))?;
            if !(live::TRY_MIN_SECS..=live::TRY_MAX_SECS).contains(&secs) {
                return Err(format!("try: {secs} s is out of range ({} to {} s)", live::TRY_MIN_SECS, live::TRY_MAX_SECS));
            }
            live::apply_file(&store, file, Some(secs), &paths)
        }
        ["confirm"] => live::confirm(&store),
        ["rollback"] => live::rollback(&store, &paths),
        ["revert"] => live::revert(&store, &paths),
        ["status"] => live::status(&store, false),
        ["status", "--json"] => live::status(&store, true),
        _ => return Err(format!("{:?}: usage: cairn-config apply FILE | try FILE SECS | confirm | rollback | revert | status [--json]", args.join(" "))),
    })
}

fn boot(phase: Phase) -> Handoff {
    let cmdline = read_cmdline();
    let mut h = Handoff { config: "none".into(), ..Handoff::default() };
    let platform = match platform::from_cmdline(&cmdline) {
        Ok(Some(p)) => p,
        Ok(None) => platform::detect(&platform::Dmi::read(Path::new("/sys/class/dmi/id"))),
        Err(why) => {
            h.logs.push(("warn".into(), why));
            platform::detect(&platform::Dmi::read(Path::new("/sys/class/dmi/id")))
        }
    };
    h.platform = platform.to_string();
    let store = store::Store::new(Path::new(store::DIR));
    // A try found after a reboot: this boot takes it once, or it ends.
    if phase == Phase::Local {
        live::resume_try(&store, &mut h);
    }
    let mut notes = Vec::new();
    // After the first boot STATE is the truth; a metadata source is asked
    // only while there is none (its instance id is not checked on later boots).
    let stored = store.current();
    let have_stored = matches!(stored, Ok(Some(_)));
    let found = if have_stored && phase == Phase::Network { None } else { sources::first(phase, &cmdline, platform, &mut notes) };
    for n in notes {
        h.logs.push(("warn".into(), format!("config source {n}")));
    }
    let outcome = decide::decide(&store, stored, found, &mut h.logs);
    match outcome {
        Some((config, source, generation)) => {
            h.config = format!("{source}:{generation}");
            h.logs.push(("info".into(), format!("machine config: generation {generation} from {source} (platform {platform})")));
            let (args, notes) = apply::apply(&config, &apply::Paths::real());
            h.args = args;
            h.logs.extend(notes);
            live::note_booted(generation);
        }
        None if phase == Phase::Local && sources::network_worth_it(&cmdline, platform) => {
            h.network = true;
            h.logs.extend(apply::bind_sources(&live::defaults(), &apply::Paths::real()));
            h.logs.push(("info".into(), format!("no machine config yet (platform {platform}); the network sources follow once the first link is up")));
        }
        None => {
            live::note_booted(0);
            let _ = std::fs::remove_dir_all(apply::SERVICES_DIR);
            let _ = std::fs::remove_file(apply::NETWORK_FILE);
            h.logs.extend(apply::bind_sources(&live::defaults(), &apply::Paths::real()));
            h.logs.push((
                "warn".into(),
                format!("no machine config (platform {platform}): DHCP on the first link, shipped services only. Give one with cairn.config.url=, fw_cfg opt/org.cairn/config, a cidata disk or the platform's user data"),
            ));
        }
    }
    h
}
