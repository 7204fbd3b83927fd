//! The update itself: check, download, install, switch; then the verdict of
//! the trial boot (bless or give up), rollback and status.
//!
//! Order matters for power cuts. Nothing touches the inactive slot or the ESP
//! until the manifest and every payload have been checked. The slot's old
//! entry goes first, so no entry points at a half-written slot; the commit
//! point is the flush of a new file `cairn-<slot>+3-0.conf`; the running
//! slot's entry, known good and without a counter, is never touched.
//!
//! Nothing on the ESP is ever renamed. A FAT rename cut by a power cut can
//! leave two names on one cluster chain (Linux's vfat adds the new name
//! first), and removing either name later frees clusters the other still
//! uses. So every file is written under its final name, flushed and read
//! back, and an entry's text puts `linux` last: a file cut short is no entry
//! at all to the loader. The ESP is mounted read-write only while it changes.

use crate::check::{check, Context, Refusal};
use crate::durable;
use crate::entries::{self, EntryName, Slot};
use crate::http::{self, HttpError};
use crate::keys::{KeyError, Keyring};
use crate::state::{StateError, Store, Trial};
use crate::system::{self, Esp, SystemError};
use crate::slot::{verity_check, write_boot_file, write_slot};
use cairn_model::manifest::{Manifest, Version};
use std::path::PathBuf;
use std::time::Duration;

pub use crate::slot::{install_root, RootTimes};

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("update refused: {0}")]
    Refused(#[from] Refusal),
    #[error("update refused: {0}")]
    Payload(String),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    System(#[from] SystemError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    File(#[from] durable::FileError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0}")]
    Not(String),
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> UpdateError {
    let what = what.into();
    move |source| UpdateError::Io { what, source }
}

/// Where things are; the defaults are the machine's, tests point elsewhere.
pub struct Updater {
    /// Held while this value lives: one updater at a time (the boot's
    /// verdict and an operator's command may otherwise meet on the ESP).
    _lock: Option<std::fs::File>,
    pub store: Store,
    pub keyring: PathBuf,
    pub slot: Slot,
    pub version: Version,
    pub timeout: Duration,
    pub say: Box<dyn FnMut(&str)>,
    /// Set by [`Updater::check`] from the repository's settings.
    pub(crate) trust: Option<http::Trust>,
}

/// Where updates come from: STATE's settings over the image's.
pub struct Source {
    pub url: String,
    pub channel: String,
    /// One more CA (a PEM file) for an https repository with a private CA.
    pub ca: Option<PathBuf>,
    /// A proxy URL; without one, `HTTPS_PROXY` and the like from the
    /// environment apply.
    pub proxy: Option<String>,
}

impl Source {
    pub fn trust(&self) -> Result<http::Trust, HttpError> {
        http::Trust::with_proxy(self.ca.as_deref(), self.proxy.as_deref())
    }
}

pub(crate) const MIB: f64 = 1048576.0;

impl Updater {
    /// The running machine: slot from /proc/cmdline, version from /etc/os-release.
    pub fn from_system(say: Box<dyn FnMut(&str)>) -> Result<Updater, UpdateError> {
        // Lossy: a byte that is not UTF-8 spoils only the word it sits in.
        let cmdline = String::from_utf8_lossy(&std::fs::read("/proc/cmdline").map_err(io("cannot read /proc/cmdline"))?).into_owned();
        let slot = system::running_slot(&cmdline)
            .ok_or_else(|| UpdateError::Not("this boot has no cairn.slot= (direct kernel boot?); updates need a slot disk".into()))?;
        let osr = std::fs::read_to_string("/etc/os-release").map_err(io("cannot read /etc/os-release"))?;
        let version = system::os_version(&osr).ok_or_else(|| UpdateError::Not("/etc/os-release has no VERSION_ID=".into()))?;
        Ok(Updater {
            _lock: Some(system::lock("/run/cairn/update.lock")?),
            store: Store::new(crate::state::DIR),
            keyring: PathBuf::from("/etc/cairn/update-keys"),
            slot,
            version,
            timeout: Duration::from_secs(30),
            say,
            trust: None,
        })
    }

    pub(crate) fn say(&mut self, line: &str) {
        (self.say)(line);
    }

    pub(crate) fn pause(&self, step: &str) {
        system::checkpoint(&self.store.dir, step);
    }

    /// The repository base URL and channel: STATE's config over the image's
    /// `/etc/cairn/update.conf`.
    pub fn source(&self) -> Result<Source, UpdateError> {
        let mut url = String::new();
        let mut channel = "stable".to_string();
        let mut ca = None;
        let mut proxy = None;
        let image = std::fs::read_to_string("/etc/cairn/update.conf").unwrap_or_default();
        let mut pairs = crate::state::parse_pairs(&image, "/etc/cairn/update.conf")?;
        pairs.extend(self.store.config()?);
        for (k, v) in pairs {
            match k.as_str() {
                "url" => url = v,
                "channel" => channel = v,
                "ca" if v.is_empty() => ca = None,
                "ca" => ca = Some(PathBuf::from(v)),
                "proxy" if v.is_empty() => proxy = None,
                "proxy" => proxy = Some(v),
                _ => {}
            }
        }
        if url.is_empty() {
            return Err(UpdateError::Not("no update repository set; run `cairnctl update set url=https://HOST/PATH`".into()));
        }
        Ok(Source { url, channel, ca, proxy })
    }

    /// Fetches the channel's manifest and checks it; nothing is written.
    pub fn check(&mut self) -> Result<(Manifest, String), UpdateError> {
        let source = self.source()?;
        let trust = source.trust()?;
        let base = http::join(&source.url, &source.channel);
        let channel = source.channel;
        let t = http::Timeouts { step: self.timeout, whole: self.timeout };
        let manifest = http::get(&http::join(&base, "manifest.toml"), 0, &t, &trust)?.bytes(1 << 20)?;
        let sigs = http::get(&http::join(&base, "manifest.toml.sig"), 0, &t, &trust)?.bytes(1 << 16)?;
        self.trust = Some(trust);
        let keyring_text = std::fs::read_to_string(&self.keyring).map_err(io(format!("cannot read the trusted keys {}", self.keyring.display())))?;
        let keyring = Keyring::parse(&keyring_text, &self.keyring.display().to_string())?;
        let bad = self.store.bad()?;
        let ctx = Context {
            now: system::now(),
            channel: &channel,
            running: self.version,
            floor: self.store.floor()?,
            bad: &bad,
            kernel: &system::kernel_release(),
        };
        let m = check(&manifest, &String::from_utf8_lossy(&sigs), &keyring, &ctx)?;
        Ok((m, base))
    }

    /// Everything before the first write outside STATE: the manifest checked,
    /// the payloads downloaded and checked, the verity tree matched to the
    /// signed root hash.
    pub fn prepare(&mut self) -> Result<Prepared, UpdateError> {
        let (m, base) = self.check()?;
        let target = self.slot.other();
        self.say(&format!("update {} -> {} (build {}), into slot {target}", self.version, m.version, m.build_id));
        let root = self.fetch(&base, &m.root.file, m.root.size, &m.root.sha256)?;
        let kernel = self.fetch(&base, &m.kernel.file, m.kernel.size, &m.kernel.sha256)?;
        let initramfs = self.fetch(&base, &m.initramfs.file, m.initramfs.size, &m.initramfs.sha256)?;
        verity_check(&root, &m)?;
        Ok(Prepared { manifest: m, target, root, kernel, initramfs })
    }

    /// Installs a prepared update into the other slot and switches to it.
    pub fn install(&mut self, p: &Prepared) -> Result<InstallReport, UpdateError> {
        let m = &p.manifest;
        self.pause("staged");
        {
            let esp = Esp::mount(true)?;
            self.require_blessed(&esp)?;
            self.store.set_trial(&Trial { slot: p.target, version: m.version, from: self.version, committed: false, committed_at: 0 })?;
            // No entry may point at the slot while it is rewritten.
            remove_entries(&esp, p.target)?;
            esp.sync()?;
        }
        // Unmounted (flushed) for the minutes of the slot write.
        self.pause("old-entry-removed");

        let dev = system::partition(p.target.label())?;
        let dir = self.store.dir.clone();
        let (write_s, verify_s) = write_slot(&dev, &p.root, m.root.size, &m.root.sha256, &|step| system::checkpoint(&dir, step))?;
        self.say(&format!(
            "wrote {:.1} MiB to {} in {write_s:.2} s ({:.1} MiB/s), read back and verified in {verify_s:.2} s",
            m.root.size as f64 / MIB,
            dev.display(),
            m.root.size as f64 / MIB / write_s.max(0.001)
        ));

        let esp = Esp::mount(true)?;
        let slot_dir = esp.dir.join("cairn").join(p.target.letter().to_string());
        std::fs::create_dir_all(&slot_dir).map_err(io(format!("cannot create {}", slot_dir.display())))?;
        for (src, payload, name) in [(&p.kernel, &m.kernel, "vmlinuz"), (&p.initramfs, &m.initramfs, "initramfs.img")] {
            write_boot_file(src, payload, &slot_dir, name)?;
            self.pause(&format!("esp-{name}"));
        }
        durable::sync_dir(&slot_dir)?;

        let generation = next_generation(&esp)?;
        let options = format!(
            "{} cairn.slot={} cairn.verity_blocks={} cairn.verity_salt={} cairn.verity_root={}",
            m.cmdline.trim(),
            p.target,
            m.root.verity_blocks,
            m.root.verity_salt,
            m.root.verity_root
        );
        let text = entries::text(&m.version.to_string(), generation, p.target, options.trim());
        self.commit_entry(&esp, p.target, &text)?;
        self.pause("committed");
        let committed_at = system::now();
        self.store.set_trial(&Trial { slot: p.target, version: m.version, from: self.version, committed: true, committed_at })?;
        drop(esp);
        for f in [&p.root, &p.kernel, &p.initramfs] {
            let _ = std::fs::remove_file(f);
        }
        Ok(InstallReport { write_s, bytes: m.root.size })
    }

    /// The commit: `cairn-<slot>+3-0.conf` written, flushed and read back.
    fn commit_entry(&mut self, esp: &Esp, slot: Slot, text: &str) -> Result<(), UpdateError> {
        let name = EntryName { slot, counter: Some((entries::TRIES, 0)) }.file();
        write_entry(esp, &name, text)?;
        self.pause("entry-written");
        self.say(&format!("boot entry {name} is now first; the next boot tries slot {slot} ({} tries)", entries::TRIES));
        Ok(())
    }

    /// Updates go from a blessed slot only: otherwise the fallback would be
    /// a slot nobody has seen healthy.
    fn require_blessed(&self, esp: &Esp) -> Result<(), UpdateError> {
        let own = list(esp)?.into_iter().filter(|(e, _)| e.slot == self.slot).collect::<Vec<_>>();
        if own.iter().any(|(e, _)| e.counter.is_none()) {
            return Ok(());
        }
        Err(UpdateError::Not(format!(
            "slot {} is on trial and not blessed yet; wait for its verdict before updating",
            self.slot
        )))
    }

    /// The verdict of a boot: called by cairn-init once every service is
    /// healthy, or when the time limit passes first. Returns true when the
    /// machine must reboot.
    pub fn settle(&mut self, healthy: bool, reason: &str) -> Result<bool, UpdateError> {
        let word = if healthy { "healthy" } else { "not healthy" };
        self.say(&format!("verdict on this boot of slot {} ({}): {word}", self.slot, self.version));
        let all = list(&Esp::mount(false)?)?;
        let other = self.slot.other();
        let own_counted = all.iter().any(|(e, _)| e.slot == self.slot && e.counter.is_some());
        let other_failed = all.iter().any(|(e, _)| e.slot == other && e.exhausted());
        if !own_counted && !other_failed {
            let own_blessed = all.iter().any(|(e, _)| e.slot == self.slot && e.counter.is_none());
            if let Some(t) = self.store.trial()?.filter(|t| t.slot == self.slot && t.version == self.version && t.committed && own_blessed) {
                // A bless cut short after its rename: finish the bookkeeping.
                self.record_bless(Some(&t))?;
            }
            if !healthy {
                self.say(&format!("slot {} is known good but not healthy: {reason}; nothing to roll back to automatically", self.slot));
            }
            return Ok(false);
        }
        let esp = Esp::mount(true)?;
        let all = list(&esp)?;
        let own: Vec<&(EntryName, String)> = all.iter().filter(|(e, _)| e.slot == self.slot).collect();
        let trial = self.store.trial()?;
        let counted = own.iter().find(|(e, _)| e.counter.is_some());
        if let Some((entry, text)) = counted {
            let dir = esp.entries_dir();
            // The blessed entry is a new file with the counted one's text;
            // only once it is on disk does the counted one go. A bless cut
            // short may have left the blessed file: whole, it is the verdict
            // of the boot that wrote it, and this boot (which may have come
            // from it, uncounted) only finishes the bless; cut, it is
            // written again.
            let whole = own.iter().any(|(e, t)| e.counter.is_none() && t == text);
            if !whole {
                let booted = system::loader_var("LoaderBootCountPath");
                if healthy && system::efi() && booted.is_none() {
                    return self.fail_trial(&esp, entry, "the boot loader did not count this boot (no LoaderBootCountPath)");
                }
                if !healthy {
                    return self.fail_trial(&esp, entry, reason);
                }
            }
            self.pause("bless");
            let blessed = EntryName { slot: self.slot, counter: None }.file();
            if !whole {
                durable::remove_synced(&dir.join(&blessed))?;
                write_entry(&esp, &blessed, text)?;
            }
            self.pause("bless-written");
            durable::remove(&dir.join(entry.file()))?;
            durable::sync_dir(&dir)?;
            esp.sync()?;
            self.pause("blessed");
            self.record_bless(trial.as_ref())?;
            return Ok(false);
        }
        // A boot of a known-good entry: did the other slot's trial fail?
        if let Some((entry, text)) = all.iter().find(|(e, _)| e.slot == other && e.exhausted()) {
            let version = entries::info(text).os_version.and_then(|v| v.parse().ok()).or(trial.as_ref().map(|t| t.version));
            let why = "did not come up healthy in its tries (crash, kernel panic or hang)";
            if let Some(v) = version {
                self.store.mark_bad(v, why)?;
            }
            durable::remove(&esp.entries_dir().join(entry.file()))?;
            durable::sync_dir(&esp.entries_dir())?;
            if trial.as_ref().is_some_and(|t| t.slot == other) {
                self.store.clear_trial()?;
            }
            let v = version.map_or("?".into(), |v| v.to_string());
            self.say(&format!("slot {other} ({v}) {why}; back on slot {} ({}); {v} is recorded as bad", self.slot, self.version));
        }
        Ok(false)
    }

    /// What follows the bless rename. Only now is the floor raised: raised
    /// before the bless, it could strand the machine on a slot it refuses.
    fn record_bless(&mut self, trial: Option<&Trial>) -> Result<(), UpdateError> {
        self.store.raise_floor(self.version)?;
        let took = trial.filter(|t| t.slot == self.slot && t.committed_at > 0).map(|t| system::now().saturating_sub(t.committed_at));
        self.store.clear_trial()?;
        let after = took.map_or(String::new(), |s| format!(" {s} s after the switch"));
        self.say(&format!("blessed slot {} ({}){after}; slot {} stays as the fallback", self.slot, self.version, self.slot.other()));
        Ok(())
    }

    fn fail_trial(&mut self, esp: &Esp, entry: &EntryName, reason: &str) -> Result<bool, UpdateError> {
        self.store.mark_bad(self.version, reason)?;
        let dir = esp.entries_dir();
        durable::remove(&dir.join(entry.file()))?;
        durable::sync_dir(&dir)?;
        esp.sync()?;
        self.store.clear_trial()?;
        self.say(&format!(
            "slot {} ({}) failed its trial: {reason}; recorded as bad; rebooting into slot {}",
            self.slot,
            self.version,
            self.slot.other()
        ));
        Ok(true)
    }

    /// Boots the other slot next, when it holds a version that was good.
    pub fn rollback(&mut self) -> Result<Version, UpdateError> {
        let esp = Esp::mount(true)?;
        self.require_blessed(&esp)?;
        let other = self.slot.other();
        let all = list(&esp)?;
        let (entry, text) = all
            .iter()
            .find(|(e, _)| e.slot == other && e.counter.is_none())
            .ok_or_else(|| UpdateError::Not(format!("slot {other} holds no version that was blessed; nothing to roll back to")))?;
        let version: Version = entries::info(text)
            .os_version
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| UpdateError::Not(format!("the entry {} names no OS version", entry.file())))?;
        if self.store.bad()?.contains(&version) {
            return Err(UpdateError::Not(format!(
                "slot {other} holds {version}, which is recorded as bad here (`cairnctl update unmark {version}` allows it again)"
            )));
        }
        // The operator says this version is broken: no later `apply` may
        // bring it back on its own.
        self.store.mark_bad(self.version, "rolled back by the operator")?;
        let generation = next_generation(&esp)?;
        let options = text.lines().find_map(|l| l.strip_prefix("options")).unwrap_or("").trim().to_string();
        let new_text = entries::text(&version.to_string(), generation, other, &options);
        self.store.set_trial(&Trial { slot: other, version, from: self.version, committed: false, committed_at: 0 })?;
        durable::remove(&esp.entries_dir().join(entry.file()))?;
        self.commit_entry(&esp, other, &new_text)?;
        self.store.set_trial(&Trial { slot: other, version, from: self.version, committed: true, committed_at: system::now() })?;
        Ok(version)
    }

    /// A human summary.
    pub fn status(&mut self) -> Result<String, UpdateError> {
        let mut out = format!("running: slot {} version {}\n", self.slot, self.version);
        match Esp::mount(false) {
            Ok(esp) => {
                for (e, text) in list(&esp)? {
                    let i = entries::info(&text);
                    let state = match e.counter {
                        None => "good".to_string(),
                        Some((0, _)) => "failed (no tries left)".to_string(),
                        Some((l, d)) => format!("on trial ({l} tries left, {d} used)"),
                    };
                    out.push_str(&format!(
                        "entry {}: slot {} version {} generation {} {state}\n",
                        e.file(),
                        e.slot,
                        i.os_version.unwrap_or_else(|| "?".into()),
                        i.generation
                    ));
                }
            }
            Err(e) => out.push_str(&format!("ESP: {e}\n")),
        }
        match self.store.trial()? {
            Some(t) if t.committed => out.push_str(&format!("trial: {} in slot {} (from {}), waiting for its verdict\n", t.version, t.slot, t.from)),
            Some(t) => out.push_str(&format!("interrupted install: {} into slot {}; `cairnctl update apply` resumes\n", t.version, t.slot)),
            None => {}
        }
        out.push_str(&format!("floor: {}\n", self.store.floor()?));
        let bad: Vec<String> = self.store.bad()?.iter().map(Version::to_string).collect();
        out.push_str(&format!("bad: {}\n", if bad.is_empty() { "none".into() } else { bad.join(" ") }));
        match self.source() {
            Ok(Source { url, channel, ca, proxy }) => {
                let ca = ca.map_or(String::new(), |p| format!(" (also trusting the CA in {})", p.display()));
                let proxy = proxy.map_or(String::new(), |p| format!(" through the proxy {p}"));
                out.push_str(&format!("repository: {url} channel {channel}{ca}{proxy}\n"));
            }
            Err(e) => out.push_str(&format!("repository: {e}\n")),
        }
        Ok(out)
    }
}

/// What `prepare` checked and staged.
pub struct Prepared {
    pub manifest: Manifest,
    pub target: Slot,
    pub root: PathBuf,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

pub struct InstallReport {
    pub write_s: f64,
    pub bytes: u64,
}

/// Writes a boot entry under its final name, flushes it with its directory,
/// and reads it back past the page cache.
fn write_entry(esp: &Esp, name: &str, text: &str) -> Result<(), UpdateError> {
    let dir = esp.entries_dir();
    let path = dir.join(name);
    durable::write_flushed(&path, text.as_bytes())?;
    durable::sync_dir(&dir)?;
    esp.sync()?;
    let back = durable::read_uncached(&path, text.len() as u64 + 1)?;
    if back != text.as_bytes() {
        return Err(UpdateError::Not(format!("{} reads back other than written: the ESP is failing", path.display())));
    }
    Ok(())
}

/// Every Cairn entry on the ESP with its text, sorted by name.
fn list(esp: &Esp) -> Result<Vec<(EntryName, String)>, UpdateError> {
    let dir = esp.entries_dir();
    let rd = std::fs::read_dir(&dir).map_err(io(format!("cannot list {}", dir.display())))?;
    let mut out = Vec::new();
    for e in rd.filter_map(Result::ok) {
        let Some(name) = e.file_name().to_str().and_then(EntryName::parse) else { continue };
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        out.push((name, text));
    }
    out.sort_by_key(|(e, _)| e.file());
    Ok(out)
}

/// The generation for the next entry: one above every entry on the ESP.
fn next_generation(esp: &Esp) -> Result<u64, UpdateError> {
    let max = list(esp)?.iter().map(|(_, t)| entries::info(t).generation).max().unwrap_or(0);
    max.checked_add(1).ok_or_else(|| UpdateError::Not(format!("an entry on the ESP has generation {max}; no higher one exists")))
}

/// Removes every entry of `slot`, staged ones too.
fn remove_entries(esp: &Esp, slot: Slot) -> Result<(), UpdateError> {
    let dir = esp.entries_dir();
    for (e, _) in list(esp)?.into_iter().filter(|(e, _)| e.slot == slot) {
        durable::remove(&dir.join(e.file()))?;
    }
    durable::remove(&dir.join(entries::staging_name(slot)))?;
    durable::sync_dir(&dir)?;
    Ok(())
}
