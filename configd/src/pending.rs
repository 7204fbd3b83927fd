//! What STATE remembers besides the generations: a `try` that is not yet
//! confirmed, and the last config that was refused.
//!
//! The try record is written before the tried generation is put in force
//! and removed after the revert or the confirm, so a power cut anywhere
//! leaves either no try (generation N in force) or a try whose generation is
//! in force or not: a record that names a generation not in force is stale
//! and dropped.

use crate::store::{sync_dir, write_durable};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

const TRY_FILE: &str = "try";
const REFUSED_FILE: &str = "refused";

/// A pending `cairnctl config try`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Try {
    /// The generation on trial.
    pub generation: u64,
    /// The one it reverts to (0: no config).
    pub previous: u64,
    /// How long each boot of the try waits for a confirm.
    pub timeout_secs: u64,
    /// Boots the try may still take after a reboot (it starts at 1).
    pub boots_left: u32,
    /// When this boot's wait ends, in seconds since 1970 (for `status`).
    pub deadline_unix: u64,
}

pub fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Try {
    pub fn read(dir: &Path) -> Option<Try> {
        let text = std::fs::read_to_string(dir.join(TRY_FILE)).ok()?;
        let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix('=')?.trim().parse::<u64>().ok());
        Some(Try {
            generation: field("generation")?,
            previous: field("previous")?,
            timeout_secs: field("timeout_secs")?,
            boots_left: u32::try_from(field("boots_left")?).ok()?,
            deadline_unix: field("deadline_unix").unwrap_or(0),
        })
    }

    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let text = format!(
            "generation={}\nprevious={}\ntimeout_secs={}\nboots_left={}\ndeadline_unix={}\n",
            self.generation, self.previous, self.timeout_secs, self.boots_left, self.deadline_unix
        );
        write_durable(&dir.join(TRY_FILE), text.as_bytes())?;
        sync_dir(dir)
    }

    pub fn remove(dir: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(dir.join(TRY_FILE)) {
            Ok(()) => sync_dir(dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The last refused config: where it came from, when, and every problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub source: String,
    pub at_unix: u64,
    pub problems: Vec<String>,
}

impl Refused {
    fn path(dir: &Path) -> PathBuf {
        dir.join(REFUSED_FILE)
    }

    pub fn read(dir: &Path) -> Option<Refused> {
        let text = std::fs::read_to_string(Self::path(dir)).ok()?;
        let mut lines = text.lines();
        let source = lines.next()?.strip_prefix("source=")?.to_string();
        let at_unix = lines.next()?.strip_prefix("at=")?.parse().ok()?;
        Some(Refused { source, at_unix, problems: lines.map(str::to_string).collect() })
    }

    /// Kept for `status`; losing it to a power cut loses only the report.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let one_line = |s: &str| s.replace(['\n', '\r'], " ");
        let mut text = format!("source={}\nat={}\n", one_line(&self.source), self.at_unix);
        for p in &self.problems {
            text.push_str(&one_line(p));
            text.push('\n');
        }
        write_durable(&Self::path(dir), text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_and_a_missing_one_is_none() {
        let d = std::env::temp_dir().join(format!("cairn-pending-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        assert_eq!(Try::read(&d), None);
        let t = Try { generation: 3, previous: 2, timeout_secs: 120, boots_left: 1, deadline_unix: 99 };
        t.write(&d).unwrap();
        assert_eq!(Try::read(&d), Some(t));
        Try::remove(&d).unwrap();
        Try::remove(&d).unwrap();
        assert_eq!(Try::read(&d), None);
        let r = Refused { source: "/run/x.toml".into(), at_unix: 5, problems: vec!["a:1:1: b: c".into(), "two\nlines".into()] };
        r.write(&d).unwrap();
        let back = Refused::read(&d).unwrap();
        assert_eq!(back.problems, ["a:1:1: b: c", "two lines"]);
        std::fs::write(d.join(TRY_FILE), "generation=x\n").unwrap();
        assert_eq!(Try::read(&d), None, "a garbled record is no try");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
