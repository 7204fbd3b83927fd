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
}

pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: &Path) -> Store {
        Store { dir: dir.to_path_buf() }
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
        Some(Stored { generation: n, text, source: field("source")?, instance_id: field("instance_id").filter(|s| !s.is_empty()) })
    }

    /// Keeps a new generation and puts it in force; returns its number.
    pub fn commit(&self, text: &str, source: &str, instance_id: Option<&str>) -> std::io::Result<u64> {
        let gen_dir = self.dir.join("gen");
        std::fs::create_dir_all(&gen_dir)?;
        let n = self.generations().last().copied().unwrap_or(0).max(self.named().unwrap_or(0)) + 1;
        let one_line = |s: &str| s.replace(['\n', '\r'], " ");
        write_durable(&self.gen_path(n, "toml"), text.as_bytes())?;
        let meta = format!("source={}\ninstance_id={}\n", one_line(source), one_line(instance_id.unwrap_or("")));
        // The .meta file marks the generation complete, so it goes second.
        write_durable(&self.gen_path(n, "meta"), meta.as_bytes())?;
        sync_dir(&gen_dir)?;
        write_durable(&self.dir.join("current"), format!("{n}\n").as_bytes())?;
        sync_dir(&self.dir)?;
        self.prune();
        Ok(n)
    }

    fn named(&self) -> Option<u64> {
        std::fs::read_to_string(self.dir.join("current")).ok()?.trim().parse().ok()
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

fn sync_dir(dir: &Path) -> std::io::Result<()> {
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
