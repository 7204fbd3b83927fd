//! The update itself: check, download, install, switch; then the verdict of
//! the trial boot (bless or give up), rollback and status.
//!
//! Order matters for power cuts. Nothing touches the inactive slot or the ESP
//! until the manifest and every payload have been checked. The slot's old
//! entry goes first, so no entry points at a half-written slot; the commit
//! point is one rename of `cairn-<slot>.new` to `cairn-<slot>+3-0.conf`; the
//! running slot's entry, known good and without a counter, is never touched.

use crate::check::{check, Context, Refusal};
use crate::durable;
use crate::entries::{self, EntryName, Slot};
use crate::http::{self, HttpError};
use crate::keys::{KeyError, Keyring};
use crate::state::{StateError, Store, Trial};
use crate::system::{self, Esp, SystemError};
use cairn_model::manifest::{Manifest, Payload, Version};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> UpdateError {
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
    trust: Option<http::Trust>,
}

/// Where updates come from: STATE's settings over the image's.
pub struct Source {
    pub url: String,
    pub channel: String,
    /// One more CA (a PEM file) for an https repository with a private CA.
    pub ca: Option<PathBuf>,
}

const MIB: f64 = 1048576.0;
const CHUNK: usize = 4 << 20;
const DOWNLOAD_TRIES: u32 = 5;

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

    fn say(&mut self, line: &str) {
        (self.say)(line);
    }

    fn pause(&self, step: &str) {
        system::checkpoint(&self.store.dir, step);
    }

    /// The repository base URL and channel: STATE's config over the image's
    /// `/etc/cairn/update.conf`.
    pub fn source(&self) -> Result<Source, UpdateError> {
        let mut url = String::new();
        let mut channel = "stable".to_string();
        let mut ca = None;
        let image = std::fs::read_to_string("/etc/cairn/update.conf").unwrap_or_default();
        let mut pairs = crate::state::parse_pairs(&image, "/etc/cairn/update.conf")?;
        pairs.extend(self.store.config()?);
        for (k, v) in pairs {
            match k.as_str() {
                "url" => url = v,
                "channel" => channel = v,
                "ca" if v.is_empty() => ca = None,
                "ca" => ca = Some(PathBuf::from(v)),
                _ => {}
            }
        }
        if url.is_empty() {
            return Err(UpdateError::Not("no update repository set; run `cairnctl update set url=https://HOST/PATH`".into()));
        }
        Ok(Source { url, channel, ca })
    }

    /// Fetches the channel's manifest and checks it; nothing is written.
    pub fn check(&mut self) -> Result<(Manifest, String), UpdateError> {
        let Source { url, channel, ca } = self.source()?;
        let trust = http::Trust::new(ca.as_deref())?;
        let base = http::join(&url, &channel);
        let manifest = http::get(&http::join(&base, "manifest.toml"), 0, self.timeout, &trust)?.bytes(1 << 20)?;
        let sigs = http::get(&http::join(&base, "manifest.toml.sig"), 0, self.timeout, &trust)?.bytes(1 << 16)?;
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
        };
        let m = check(&manifest, &String::from_utf8_lossy(&sigs), &keyring, &ctx)?;
        Ok((m, base))
    }

    /// Downloads one payload into `staging/NAME`, resuming what an earlier try
    /// left, and checks its size and sha256.
    fn fetch(&mut self, base: &str, file: &str, size: u64, sha256: &str) -> Result<PathBuf, UpdateError> {
        let dir = self.store.staging();
        std::fs::create_dir_all(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
        let path = dir.join(file);
        let mut hasher = Sha256::new();
        let mut have = 0u64;
        let mut resumed = false;
        if let Ok(mut f) = std::fs::File::open(&path) {
            have = hash_into(&mut f, u64::MAX, &mut hasher).map_err(io(format!("cannot read {}", path.display())))?;
            if have > size {
                let _ = std::fs::remove_file(&path);
                hasher = Sha256::new();
                have = 0;
            } else if have > 0 {
                resumed = true;
                self.say(&format!("resuming {file} at {:.1} of {:.1} MiB", have as f64 / MIB, size as f64 / MIB));
            }
        }
        free_space(&dir, size - have)?;
        let url = http::join(base, file);
        let trust = match &self.trust {
            Some(t) => t.clone(),
            None => http::Trust::new(self.source()?.ca.as_deref())?,
        };
        let started = Instant::now();
        let mut last_report = Instant::now();
        let mut tries = 0;
        while have < size {
            let mut resp = match http::get(&url, have, self.timeout, &trust) {
                Ok(r) => r,
                Err(HttpError::Io { .. }) if tries + 1 < DOWNLOAD_TRIES => {
                    tries += 1;
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if resp.total.is_some_and(|t| t != size) {
                let total = resp.total.unwrap_or(0);
                let _ = std::fs::remove_file(&path);
                return Err(UpdateError::Payload(format!("{file} on the server is {total} bytes, the manifest says {size} (truncated or replaced)")));
            }
            if have > 0 && resp.status == 200 {
                // The server ignored the range: start over.
                hasher = Sha256::new();
                have = 0;
            }
            let mut out = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(have == 0)
                .open(&path)
                .map_err(io(format!("cannot open {}", path.display())))?;
            out.seek(SeekFrom::Start(have)).map_err(io(format!("cannot seek {}", path.display())))?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = match resp.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(_) => break,
                };
                let n = n.min((size - have) as usize);
                out.write_all(&buf[..n]).map_err(io(format!("cannot write {} (disk full?)", path.display())))?;
                hasher.update(&buf[..n]);
                have += n as u64;
                if last_report.elapsed() > Duration::from_secs(2) {
                    last_report = Instant::now();
                    let rate = have as f64 / MIB / started.elapsed().as_secs_f64().max(0.001);
                    self.say(&format!(
                        "downloading {file}: {:.1} of {:.1} MiB ({}%), {rate:.1} MiB/s",
                        have as f64 / MIB,
                        size as f64 / MIB,
                        percent(have, size)
                    ));
                }
                if have >= size / 2 && have - (n as u64) < size / 2 {
                    out.sync_all().map_err(io(format!("cannot flush {}", path.display())))?;
                    self.pause(&format!("download-half-{file}"));
                }
                if have == size {
                    break;
                }
            }
            out.sync_all().map_err(io(format!("cannot flush {}", path.display())))?;
            if have < size {
                tries += 1;
                if tries >= DOWNLOAD_TRIES {
                    return Err(UpdateError::Not(format!(
                        "download of {file} broke off at {have} of {size} bytes {tries} times; run the update again to resume"
                    )));
                }
                self.say(&format!("connection lost at {have} of {size} bytes of {file}; resuming"));
            }
        }
        let got = hex::encode(hasher.finalize());
        if got != sha256 && resumed {
            // What an earlier, interrupted try left may not be what the
            // server holds; one fresh download settles it.
            let _ = std::fs::remove_file(&path);
            self.say(&format!("{file} did not verify after resuming; downloading it again from the start"));
            return self.fetch(base, file, size, sha256);
        }
        if got != sha256 {
            let _ = std::fs::remove_file(&path);
            return Err(UpdateError::Payload(format!("{file}: sha256 is {got}, the signed manifest says {sha256}")));
        }
        Ok(path)
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
        let esp = Esp::mount(true)?;
        self.require_blessed(&esp)?;
        self.store.set_trial(&Trial { slot: p.target, version: m.version, from: self.version, committed: false, committed_at: 0 })?;
        // No entry may point at the slot while it is rewritten.
        remove_entries(&esp, p.target)?;
        esp.sync()?;
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

    /// Writes `cairn-<slot>.new`, then the commit: one rename to `+3-0`.
    fn commit_entry(&mut self, esp: &Esp, slot: Slot, text: &str) -> Result<(), UpdateError> {
        let dir = esp.entries_dir();
        let staged = dir.join(entries::staging_name(slot));
        durable::write_flushed(&staged, text.as_bytes())?;
        durable::sync_dir(&dir)?;
        self.pause("entry-staged");
        let name = EntryName { slot, counter: Some((entries::TRIES, 0)) }.file();
        std::fs::rename(&staged, dir.join(&name)).map_err(io(format!("cannot rename {} to {name}", staged.display())))?;
        durable::sync_dir(&dir)?;
        esp.sync()?;
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
        if let Some((entry, _)) = counted {
            let dir = esp.entries_dir();
            let booted = system::loader_var("LoaderBootCountPath");
            if healthy && system::efi() && booted.is_none() {
                return self.fail_trial(&esp, entry, "the boot loader did not count this boot (no LoaderBootCountPath)");
            }
            if !healthy {
                return self.fail_trial(&esp, entry, reason);
            }
            self.pause("bless");
            let blessed = EntryName { slot: self.slot, counter: None }.file();
            if own.iter().any(|(e, _)| e.counter.is_none()) {
                // A bless cut short left both names; keep the blessed one.
                durable::remove(&dir.join(entry.file()))?;
            } else {
                std::fs::rename(dir.join(entry.file()), dir.join(&blessed)).map_err(io(format!("cannot rename {} to {blessed}", entry.file())))?;
            }
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
            return Err(UpdateError::Not(format!("slot {other} holds {version}, which failed its trial here")));
        }
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
            Ok(Source { url, channel, ca }) => {
                let ca = ca.map_or(String::new(), |p| format!(" (also trusting the CA in {})", p.display()));
                out.push_str(&format!("repository: {url} channel {channel}{ca}\n"));
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

fn hash_into(r: &mut impl Read, limit: u64, h: &mut Sha256) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    while total < limit {
        let want = buf.len().min((limit - total).min(usize::MAX as u64) as usize);
        let n = r.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok(total)
}

fn free_space(dir: &Path, need: u64) -> Result<(), UpdateError> {
    let c = std::ffi::CString::new(dir.display().to_string()).map_err(|_| UpdateError::Not("NUL in path".into()))?;
    // SAFETY: statvfs fills the zeroed struct we pass; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io(format!("cannot statvfs {}", dir.display()))(std::io::Error::last_os_error()));
    }
    let free = (st.f_bavail as u64).saturating_mul(st.f_frsize as u64);
    if free < need.saturating_add(4 << 20) {
        return Err(UpdateError::Not(format!(
            "STATE is full: {} needs {:.1} MiB more, {:.1} MiB free",
            dir.display(),
            need as f64 / MIB,
            free as f64 / MIB
        )));
    }
    Ok(())
}

/// The staged root's data blocks must hash to the signed verity root.
fn verity_check(root: &Path, m: &Manifest) -> Result<(), UpdateError> {
    let salt = hex::decode(&m.root.verity_salt).map_err(|_| UpdateError::Payload("verity salt is not hex".into()))?;
    let want: [u8; 32] = hex::decode(&m.root.verity_root)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| UpdateError::Payload("verity root is not 32 bytes of hex".into()))?;
    let data_len = m.root.verity_data_bytes().filter(|d| *d < m.root.size).ok_or_else(|| {
        UpdateError::Payload(format!("{} verity blocks do not leave room for a tree in {} bytes", m.root.verity_blocks, m.root.size))
    })?;
    let f = std::fs::File::open(root).map_err(io(format!("cannot open {}", root.display())))?;
    let params = cairn_verity::Params { salt, uuid: [0; 16] };
    cairn_verity::verify(std::io::BufReader::with_capacity(CHUNK, f), data_len, &params, &want)
        .map_err(|e| UpdateError::Payload(format!("{}: {e}", m.root.file)))
}

/// How long each part of [`install_root`] took, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct RootTimes {
    /// sha256 of the staged payload (during an update, done as it downloads).
    pub hash_s: f64,
    /// The verity tree checked against the signed root hash.
    pub verity_s: f64,
    /// Written to the slot, to the end of the flush.
    pub write_s: f64,
    /// Read back past the page cache and hashed.
    pub verify_s: f64,
}

/// What an update does with a root payload once it is on local storage:
/// hash it, check its verity tree against the signed root, write it to the
/// slot device, flush, read it back and hash it again. `install` runs the same
/// steps (the first while downloading); this is the part a benchmark can set
/// against other installers writing the same bytes to the same device.
pub fn install_root(dev: &Path, staged: &Path, m: &Manifest) -> Result<RootTimes, UpdateError> {
    let started = Instant::now();
    let mut f = std::fs::File::open(staged).map_err(io(format!("cannot open {}", staged.display())))?;
    let mut h = Sha256::new();
    hash_into(&mut f, m.root.size, &mut h).map_err(io(format!("cannot read {}", staged.display())))?;
    let got = hex::encode(h.finalize());
    if got != m.root.sha256 {
        return Err(UpdateError::Payload(format!("{}: sha256 is {got}, the signed manifest says {}", m.root.file, m.root.sha256)));
    }
    let hash_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    verity_check(staged, m)?;
    let verity_s = started.elapsed().as_secs_f64();
    let (write_s, verify_s) = write_slot(dev, staged, m.root.size, &m.root.sha256, &|_| {})?;
    Ok(RootTimes { hash_s, verity_s, write_s, verify_s })
}

/// Streams the staged root to the partition, then reads it back past the
/// page cache and checks the sha256 again.
/// Returns the seconds spent writing (to the end of the fsync) and verifying.
fn write_slot(dev: &Path, src: &Path, size: u64, sha256: &str, pause: &dyn Fn(&str)) -> Result<(f64, f64), UpdateError> {
    let started = Instant::now();
    let mut out = std::fs::OpenOptions::new().write(true).open(dev).map_err(io(format!("cannot open {}", dev.display())))?;
    let capacity = out.seek(SeekFrom::End(0)).map_err(io(format!("cannot size {}", dev.display())))?;
    if size > capacity {
        return Err(UpdateError::Not(format!("the root image ({size} bytes) is larger than {} ({capacity} bytes)", dev.display())));
    }
    out.seek(SeekFrom::Start(0)).map_err(io(format!("cannot seek {}", dev.display())))?;
    let mut input = std::fs::File::open(src).map_err(io(format!("cannot open {}", src.display())))?;
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < size {
        let want = CHUNK.min((size - done) as usize);
        input.read_exact(&mut buf[..want]).map_err(io(format!("cannot read {}", src.display())))?;
        out.write_all(&buf[..want]).map_err(io(format!("cannot write {}", dev.display())))?;
        done += want as u64;
        if done >= size / 2 && done - (want as u64) < size / 2 {
            pause("slot-half-written");
        }
    }
    out.sync_all().map_err(io(format!("cannot flush {}", dev.display())))?;
    let write_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    // SAFETY: advice on a descriptor we own; it only drops clean cached pages.
    unsafe { libc::posix_fadvise(out.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    drop(out);
    pause("slot-written");
    let mut back = std::fs::File::open(dev).map_err(io(format!("cannot open {}", dev.display())))?;
    let mut h = Sha256::new();
    hash_into(&mut back, size, &mut h).map_err(io(format!("cannot read back {}", dev.display())))?;
    let got = hex::encode(h.finalize());
    if got != sha256 {
        return Err(UpdateError::Not(format!("{} reads back with sha256 {got}, not {sha256}: the disk is failing", dev.display())));
    }
    Ok((write_s, started.elapsed().as_secs_f64()))
}

/// Copies a staged kernel or initramfs to `dir/name` on the ESP. The bytes are
/// hashed against the manifest as they are written (the staged file sat on
/// STATE through the slot write and could have been swapped), and the ESP
/// copy is read back past the page cache before it takes the name.
fn write_boot_file(src: &Path, payload: &Payload, dir: &Path, name: &str) -> Result<(), UpdateError> {
    let mut bytes = Vec::new();
    let f = std::fs::File::open(src).map_err(io(format!("cannot open {}", src.display())))?;
    f.take(payload.size.saturating_add(1)).read_to_end(&mut bytes).map_err(io(format!("cannot read {}", src.display())))?;
    let got = hex::encode(Sha256::digest(&bytes));
    if bytes.len() as u64 != payload.size || got != payload.sha256 {
        return Err(UpdateError::Payload(format!(
            "{}: {} bytes with sha256 {got} when copied to the ESP, the signed manifest says {} bytes with {} (changed on STATE after the download)",
            src.display(),
            bytes.len(),
            payload.size,
            payload.sha256
        )));
    }
    let tmp = dir.join(format!("{name}.new"));
    durable::write_flushed(&tmp, &bytes)?;
    drop(bytes);
    let mut back = std::fs::File::open(&tmp).map_err(io(format!("cannot open {}", tmp.display())))?;
    // SAFETY: advice on a descriptor we own; it only drops clean cached pages,
    // so the read below comes from the disk.
    unsafe { libc::posix_fadvise(back.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    let mut h = Sha256::new();
    let len = hash_into(&mut back, payload.size.saturating_add(1), &mut h).map_err(io(format!("cannot read back {}", tmp.display())))?;
    let back_sha = hex::encode(h.finalize());
    if len != payload.size || back_sha != payload.sha256 {
        return Err(UpdateError::Not(format!(
            "{} reads back as {len} bytes with sha256 {back_sha}, not {} bytes with {}: the ESP is failing",
            tmp.display(),
            payload.size,
            payload.sha256
        )));
    }
    std::fs::rename(&tmp, dir.join(name)).map_err(io(format!("cannot rename {} to {name}", tmp.display())))
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

/// Whole percent of `part` in `whole`, without overflow.
fn percent(part: u64, whole: u64) -> u64 {
    (u128::from(part) * 100 / u128::from(whole.max(1))) as u64
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

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(bytes: &[u8]) -> Payload {
        Payload { file: "vmlinuz".into(), size: bytes.len() as u64, sha256: hex::encode(Sha256::digest(bytes)) }
    }

    #[test]
    fn a_boot_file_swapped_after_the_download_never_reaches_the_esp() {
        let dir = std::env::temp_dir().join(format!("cairn-bootfile-{}", std::process::id()));
        let (staging, esp) = (dir.join("staging"), dir.join("esp"));
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::create_dir_all(&esp).unwrap();
        let src = staging.join("vmlinuz");
        let signed = payload(b"the signed kernel");
        std::fs::write(&src, b"the signed kernel").unwrap();
        write_boot_file(&src, &signed, &esp, "vmlinuz").unwrap();
        assert_eq!(std::fs::read(esp.join("vmlinuz")).unwrap(), b"the signed kernel");
        // Same size, other bytes; then longer: neither is written.
        for evil in [&b"the signed kernal"[..], b"the signed kernel and more"] {
            std::fs::write(&src, evil).unwrap();
            let e = write_boot_file(&src, &signed, &esp, "vmlinuz").unwrap_err().to_string();
            assert!(e.contains("changed on STATE after the download"), "{e}");
            assert_eq!(std::fs::read(esp.join("vmlinuz")).unwrap(), b"the signed kernel");
            assert!(!esp.join("vmlinuz.new").exists());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn percent_does_not_overflow() {
        assert_eq!(percent(u64::MAX, u64::MAX), 100);
        assert_eq!(percent(1, 0), 100);
        assert_eq!(percent(1, 4), 25);
    }
}
