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

mod apply;
mod decide;
mod platform;
mod sources;
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
            eprintln!("cairn-config: error: unknown command {other:?} (usage: cairn-config boot [--network] | azure-ready | show)");
            std::process::exit(2);
        }
    }
}

fn boot(phase: Phase) -> Handoff {
    let cmdline = String::from_utf8_lossy(&std::fs::read("/proc/cmdline").unwrap_or_default()).into_owned();
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
        }
        None if phase == Phase::Local && sources::network_worth_it(&cmdline, platform) => {
            h.network = true;
            h.logs.push(("info".into(), format!("no machine config yet (platform {platform}); the network sources follow once the first link is up")));
        }
        None => {
            let _ = std::fs::remove_dir_all(apply::SERVICES_DIR);
            h.logs.push((
                "warn".into(),
                format!("no machine config (platform {platform}): DHCP on the first link, shipped services only. Give one with cairn.config.url=, fw_cfg opt/org.cairn/config, a cidata disk or the platform's user data"),
            ));
        }
    }
    h
}
