//! The machine config on STATE: every accepted document is a numbered
//! generation, and `current` names the one in force. After the first boot
//! this is the source of truth.
//!
//! A power cut at any moment leaves generation N or N+1 in force, never a
//! mix: a generation's files are written and flushed under their final name
//! before `current` is replaced, whole, by a rename.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Where generations live on STATE.
pub const DIR: &str = "/var/lib/cairn/config";
/// How many generations are kept for `rollback` and history.
const KEEP: usize = 10;

/// One kept generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub generation: u64,
    pub text: String,
    /// The source it came from (`fw_cfg`, `nocloud`, `apply`, ...).
    pub source: String,
    pub instance_id: Option<String>,
    /// The generation that was in force when this one was kept (0: none),
    /// where `rollback` goes back to.
    pub previous: Option<u64>,
}

pub struct Store {
    dir: PathBuf,
    /// Fault injection for the power-cut tests: stop at this step of a
    /// commit (`toml`, `meta`, `current`) so the test can cut the power there.
    pause: Option<String>,
}

impl Store {
    pub fn new(dir: &Path) -> Store {
        Store { dir: dir.to_path_buf(), pause: None }
    }

    /// A store whose commits stop for a while at `step` (see `pause_at`).
    pub fn pausing_at(mut self, step: Option<String>) -> Store {
        self.pause = step;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn gen_path(&self, n: u64, ext: &str) -> PathBuf {
        self.dir.join("gen").join(format!("{n:06}.{ext}"))
    }

    /// The generation in force, if any. A `current` that names a generation
    /// whose files are missing falls back to the newest complete one.
    pub fn current(&self) -> std::io::Result<Option<Stored>> {
        let named = std::fs::read_to_string(self.dir.join("current")).ok().and_then(|s| s.trim().parse::<u64>().ok());
        if let Some(n) = named {
            if let Some(s) = self.load(n) {
                return Ok(Some(s));
            }
        }
        let mut gens = self.generations();
        gens.retain(|g| named.is_none_or(|n| *g <= n));
        Ok(gens.iter().rev().find_map(|g| self.load(*g)))
    }

    /// Every complete generation, oldest first.
    pub fn generations(&self) -> Vec<u64> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("gen")) else { return Vec::new() };
        let mut out: Vec<u64> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".meta")?.parse().ok())
            .filter(|n| self.gen_path(*n, "toml").exists())
            .collect();
        out.sort_unstable();
        out
    }

    pub fn load(&self, n: u64) -> Option<Stored> {
        let meta = std::fs::read_to_string(self.gen_path(n, "meta")).ok()?;
        let text = std::fs::read_to_string(self.gen_path(n, "toml")).ok()?;
        let field = |k: &str| meta.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix('=')).map(str::to_string);
        Some(Stored {
            generation: n,
            text,
            source: field("source")?,
            instance_id: field("instance_id").filter(|s| !s.is_empty()),
            previous: field("previous").and_then(|p| p.parse().ok()),
        })
    }

    /// Keeps a new generation and puts it in force; returns its number.
    pub fn commit(&self, text: &str, source: &str, instance_id: Option<&str>) -> std::io::Result<u64> {
        let gen_dir = self.dir.join("gen");
        std::fs::create_dir_all(&gen_dir)?;
        let n = self.next_number();
        let previous = self.current().ok().flatten().map_or(0, |s| s.generation);
        let one_line = |s: &str| s.replace(['\n', '\r'], " ");
        write_durable(&self.gen_path(n, "toml"), text.as_bytes())?;
        self.pause_at("toml");
        let meta = format!("source={}\ninstance_id={}\nprevious={previous}\n", one_line(source), one_line(instance_id.unwrap_or("")));
        // The .meta file marks the generation complete, so it goes second.
        write_durable(&self.gen_path(n, "meta"), meta.as_bytes())?;
        sync_dir(&gen_dir)?;
        self.pause_at("meta");
        self.set_current(n)?;
        self.pause_at("current");
        self.prune();
        Ok(n)
    }

    /// The number the next commit takes.
    pub fn next_number(&self) -> u64 {
        self.generations().last().copied().unwrap_or(0).max(self.named().unwrap_or(0)) + 1
    }

    /// Puts generation `n` in force (0: none), durably, in one rename.
    pub fn set_current(&self, n: u64) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        write_durable(&self.dir.join("current"), format!("{n}\n").as_bytes())?;
        sync_dir(&self.dir)
    }

    /// The newest complete generation before `n`.
    pub fn before(&self, n: u64) -> Option<u64> {
        self.generations().into_iter().rev().find(|g| *g < n)
    }

    fn named(&self) -> Option<u64> {
        std::fs::read_to_string(self.dir.join("current")).ok()?.trim().parse().ok()
    }

    /// The power-cut tests' pause: says so on the console and waits long
    /// enough for the test to kill the machine (less than cairn-init's bound
    /// on the loader, so a machine left alone goes on).
    ///
    /// Only in builds with the `fault-injection` feature (the test images'
    /// cairn-config): on a production image a command line word must not be
    /// able to stall every config change.
    #[cfg(feature = "fault-injection")]
    fn pause_at(&self, step: &str) {
        if self.pause.as_deref() != Some(step) {
            return;
        }
        let line = format!("cairn-config: paused at {step} (cairn.config.pause)");
        eprintln!("{line}");
        let _ = std::fs::write("/dev/kmsg", format!("{line}\n"));
        std::thread::sleep(std::time::Duration::from_secs(15));
    }

    /// Without the `fault-injection` feature `cairn.config.pause=` is ignored.
    #[cfg(not(feature = "fault-injection"))]
    fn pause_at(&self, _step: &str) {
        let _ = &self.pause;
    }

    fn prune(&self) {
        let gens = self.generations();
        for old in gens.iter().take(gens.len().saturating_sub(KEEP)) {
            let _ = std::fs::remove_file(self.gen_path(*old, "meta"));
            let _ = std::fs::remove_file(self.gen_path(*old, "toml"));
        }
    }
}

/// Writes `bytes` to `path` through a flushed temporary file and a rename, so
/// the file is either the old one or the new one, whole.
pub(crate) fn write_durable(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cairn-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn generations_count_up_and_the_newest_is_in_force() {
        let d = tmp("up");
        let s = Store::new(&d);
        assert_eq!(s.current().unwrap(), None);
        assert_eq!(s.commit("version = 1\n", "fw_cfg", None).unwrap(), 1);
        assert_eq!(s.commit("version = 1\nhostname = \"b\"\n", "nocloud", Some("iid-2")).unwrap(), 2);
        let c = s.current().unwrap().unwrap();
        assert_eq!((c.generation, c.source.as_str(), c.instance_id.as_deref()), (2, "nocloud", Some("iid-2")));
        assert!(c.text.contains("hostname"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// A default build (what `out/cairn.raw` carries) commits straight past
    /// a requested pause.
    #[cfg(not(feature = "fault-injection"))]
    #[test]
    fn without_the_feature_a_pause_is_ignored() {
        let d = tmp("nopause");
        let s = Store::new(&d).pausing_at(Some("meta".into()));
        let start = std::time::Instant::now();
        assert_eq!(s.commit("version = 1\n", "apply", None).unwrap(), 1);
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "the commit paused");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_cut_before_current_moves_leaves_the_old_generation() {
        let d = tmp("cut");
        let s = Store::new(&d);
        s.commit("version = 1\n", "fw_cfg", None).unwrap();
        // Generation 2 written but `current` never replaced (the cut).
        std::fs::write(s.gen_path(2, "toml"), "version = 1\nhostname = \"x\"\n").unwrap();
        std::fs::write(s.gen_path(2, "meta"), "source=apply\ninstance_id=\n").unwrap();
        assert_eq!(s.current().unwrap().unwrap().generation, 1);
        // Half of generation 3 (no .meta): never counted, and the next commit skips past it.
        std::fs::write(s.gen_path(3, "toml"), "garbage").unwrap();
        assert_eq!(s.generations(), [1, 2]);
        assert_eq!(s.commit("version = 1\n", "apply", None).unwrap(), 3);
        assert_eq!(s.current().unwrap().unwrap().text, "version = 1\n");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_lost_generation_falls_back_to_the_newest_complete_one() {
        let d = tmp("lost");
        let s = Store::new(&d);
        s.commit("version = 1\n", "fw_cfg", None).unwrap();
        s.commit("version = 1\n", "apply", None).unwrap();
        std::fs::remove_file(s.gen_path(2, "toml")).unwrap();
        assert_eq!(s.current().unwrap().unwrap().generation, 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn current_moves_back_and_forth_and_new_generations_count_past_all() {
        let d = tmp("back");
        let s = Store::new(&d);
        for _ in 0..3 {
            s.commit("version = 1\n", "apply", None).unwrap();
        }
        assert_eq!(s.before(3), Some(2));
        s.set_current(2).unwrap();
        assert_eq!(s.current().unwrap().unwrap().generation, 2);
        assert_eq!(s.commit("version = 1\n", "apply", None).unwrap(), 4, "history is kept: a rollback never reuses a number");
        assert_eq!(s.load(4).unwrap().previous, Some(2), "4 came over 2, not over 3");
        assert_eq!(s.load(1).unwrap().previous, Some(0));
        s.set_current(0).unwrap();
        assert_eq!(s.current().unwrap(), None, "0 is no config");
        assert_eq!(s.before(1), None);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn old_generations_are_pruned() {
        let d = tmp("prune");
        let s = Store::new(&d);
        for _ in 0..13 {
            s.commit("version = 1\n", "apply", None).unwrap();
        }
        assert_eq!(s.generations(), (4..=13).collect::<Vec<_>>());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
