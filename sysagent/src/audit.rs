//! The audit trail on STATE: one JSON line per mutating call (who, what,
//! when, result), in a file that rotates at a fixed size, a few generations
//! kept, so it can neither fill the disk nor lose the latest calls.

use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const MAX_BYTES: u64 = 1024 * 1024;
/// Rotated files kept beside the live one (`audit.log.1` ...).
pub const KEEP: u32 = 3;

#[derive(Debug, Serialize, Clone)]
pub struct Record<'a> {
    /// Seconds since the epoch.
    pub time: u64,
    pub subject: &'a str,
    pub serial: &'a str,
    pub role: &'a str,
    pub peer: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub result: &'a str,
}

pub struct Audit {
    dir: PathBuf,
    max_bytes: u64,
    lock: Mutex<()>,
}

impl Audit {
    pub fn new(dir: impl Into<PathBuf>) -> Audit {
        Audit::with_limit(dir, MAX_BYTES)
    }

    pub fn with_limit(dir: impl Into<PathBuf>, max_bytes: u64) -> Audit {
        Audit { dir: dir.into(), max_bytes, lock: Mutex::new(()) }
    }

    fn live(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    fn rotated(&self, n: u32) -> PathBuf {
        self.dir.join(format!("audit.log.{n}"))
    }

    /// Appends one record (and fsyncs it: an audit line that a power cut can
    /// take is not one). Errors are the caller's to log; a call is never
    /// refused because its record could not be written.
    pub fn record(&self, r: &Record<'_>) -> std::io::Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        std::fs::create_dir_all(&self.dir)?;
        let live = self.live();
        if std::fs::metadata(&live).map(|m| m.len()).unwrap_or(0) >= self.max_bytes {
            for n in (1..KEEP).rev() {
                let from = self.rotated(n);
                if from.exists() {
                    std::fs::rename(&from, self.rotated(n + 1))?;
                }
            }
            std::fs::rename(&live, self.rotated(1))?;
        }
        let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&live)?;
        f.write_all(&line)?;
        f.sync_data()
    }

    /// The newest `limit` records, oldest first.
    pub fn tail(&self, limit: usize) -> Vec<serde_json::Value> {
        let mut files: Vec<PathBuf> = (1..=KEEP).rev().map(|n| self.rotated(n)).collect();
        files.push(self.live());
        let mut out: Vec<serde_json::Value> = Vec::new();
        for f in files {
            let Ok(text) = std::fs::read_to_string(&f) else { continue };
            out.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
        }
        let skip = out.len().saturating_sub(limit);
        out.split_off(skip)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rec(i: usize, path: &str) -> Record<'_> {
        Record { time: i as u64, subject: "alice", serial: "ab", role: "admin", peer: "10.0.2.2", method: "POST", path, status: 200, result: "ok" }
    }

    #[test]
    fn records_rotate_and_the_newest_survive() {
        let dir = std::env::temp_dir().join(format!("cairn-audit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let limit = 64 * 1024;
        let a = Audit::with_limit(&dir, limit);
        let long = "x".repeat(2000);
        for i in 0..300 {
            a.record(&rec(i, &long)).unwrap();
        }
        let total: u64 = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
        assert!(total <= (u64::from(KEEP) + 1) * (limit + 4096), "bounded: {total}");
        let tail = a.tail(5);
        assert_eq!(tail.len(), 5);
        assert_eq!(tail[4]["time"], 299);
        assert_eq!(tail[0]["time"], 295);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
