//! What the updater keeps on STATE (`/var/lib/cairn/update`): the repository
//! to follow, the anti-rollback floor, versions that failed their trial, and
//! the update in flight. Each is a small `key=value` file replaced whole
//! (write, fsync, rename, fsync the directory), so a power cut leaves the old
//! or the new, never half.

use crate::durable::{remove_synced, replace, FileError};
use crate::entries::Slot;
use cairn_model::manifest::Version;
use std::path::{Path, PathBuf};

pub const DIR: &str = "/var/lib/cairn/update";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path}:{line}: {problem}")]
    Bad { path: String, line: usize, problem: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io { path: path.display().to_string(), source }
}

/// `key=value` lines; `#` comments and blank lines are skipped.
pub fn parse_pairs(text: &str, origin: &str) -> Result<Vec<(String, String)>, StateError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let (k, v) = l.split_once('=').ok_or_else(|| StateError::Bad {
            path: origin.into(),
            line: i + 1,
            problem: format!("expected key=value, got `{l}`"),
        })?;
        out.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(out)
}

fn read_opt(path: &Path) -> Result<Option<String>, StateError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

fn version_at(path: &Path, line: usize, text: &str) -> Result<Version, StateError> {
    text.trim().parse().map_err(|problem| StateError::Bad { path: path.display().to_string(), line, problem })
}

/// Where the update is, between `apply` and the verdict of the trial boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trial {
    pub slot: Slot,
    pub version: Version,
    pub from: Version,
    /// `installing` until the commit rename, then `committed`.
    pub committed: bool,
    /// Unix seconds when the entry was committed, for the time to bless.
    pub committed_at: u64,
}

/// The updater's records on STATE.
pub struct Store {
    pub dir: PathBuf,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    pub fn staging(&self) -> PathBuf {
        self.dir.join("staging")
    }

    /// The repository URL and channel (`url=`, `channel=`).
    pub fn config(&self) -> Result<Vec<(String, String)>, StateError> {
        let p = self.dir.join("config");
        match read_opt(&p)? {
            Some(t) => parse_pairs(&t, &p.display().to_string()),
            None => Ok(Vec::new()),
        }
    }

    /// Writes the config; a pair that would not read back the same (a
    /// newline that starts another key, spaces the reader trims, `=` in a
    /// key, a key that reads as a comment) is refused, naming it.
    pub fn set_config(&self, pairs: &[(String, String)]) -> Result<(), StateError> {
        let path = self.dir.join("config");
        let mut text = String::new();
        for (i, (k, v)) in pairs.iter().enumerate() {
            let line = format!("{k}={v}\n");
            if parse_pairs(&line, "").ok().as_deref() != Some(&[(k.clone(), v.clone())]) {
                return Err(StateError::Bad {
                    path: path.display().to_string(),
                    line: i + 1,
                    problem: format!("{k:?} = {v:?} cannot be written as one key=value line"),
                });
            }
            text.push_str(&line);
        }
        Ok(replace(&path, text.as_bytes())?)
    }

    /// The anti-rollback floor: 0.0.0 until a version is blessed.
    pub fn floor(&self) -> Result<Version, StateError> {
        let p = self.dir.join("floor");
        match read_opt(&p)? {
            Some(t) => version_at(&p, 1, &t),
            None => Ok(Version(0, 0, 0)),
        }
    }

    /// Raises the floor; never lowers it.
    pub fn raise_floor(&self, to: Version) -> Result<(), StateError> {
        if to > self.floor()? {
            replace(&self.dir.join("floor"), format!("{to}\n").as_bytes())?;
        }
        Ok(())
    }

    /// Versions that failed a trial on this machine.
    pub fn bad(&self) -> Result<Vec<Version>, StateError> {
        let p = self.dir.join("bad");
        let Some(text) = read_opt(&p)? else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for (i, l) in text.lines().enumerate() {
            let word = l.split_whitespace().next().unwrap_or("");
            if !word.is_empty() && !word.starts_with('#') {
                out.push(version_at(&p, i + 1, word)?);
            }
        }
        Ok(out)
    }

    /// Records `v` as bad, with why.
    pub fn mark_bad(&self, v: Version, why: &str) -> Result<(), StateError> {
        let p = self.dir.join("bad");
        let mut text = read_opt(&p)?.unwrap_or_default();
        if self.bad()?.contains(&v) {
            return Ok(());
        }
        text.push_str(&format!("{v} {}\n", why.replace('\n', " ")));
        Ok(replace(&p, text.as_bytes())?)
    }

    /// Forgets that `v` was bad; false if it was not recorded.
    pub fn unmark_bad(&self, v: Version) -> Result<bool, StateError> {
        let p = self.dir.join("bad");
        let Some(text) = read_opt(&p)? else { return Ok(false) };
        let mut found = false;
        let mut kept = String::new();
        for l in text.lines() {
            if l.split_whitespace().next().and_then(|w| w.parse::<Version>().ok()) == Some(v) {
                found = true;
            } else {
                kept.push_str(l);
                kept.push('\n');
            }
        }
        if found {
            replace(&p, kept.as_bytes())?;
        }
        Ok(found)
    }

    pub fn trial(&self) -> Result<Option<Trial>, StateError> {
        let p = self.dir.join("trial");
        let Some(text) = read_opt(&p)? else { return Ok(None) };
        let origin = p.display().to_string();
        let pairs = parse_pairs(&text, &origin)?;
        let get = |k: &str| {
            pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str()).ok_or_else(|| StateError::Bad {
                path: origin.clone(),
                line: 0,
                problem: format!("no {k}="),
            })
        };
        let slot = Slot::parse(get("slot")?)
            .ok_or_else(|| StateError::Bad { path: origin.clone(), line: 0, problem: "slot is not a or b".into() })?;
        Ok(Some(Trial {
            slot,
            version: version_at(&p, 0, get("version")?)?,
            from: version_at(&p, 0, get("from")?)?,
            committed: get("stage")? == "committed",
            committed_at: get("committed_at").ok().and_then(|v| v.parse().ok()).unwrap_or(0),
        }))
    }

    pub fn set_trial(&self, t: &Trial) -> Result<(), StateError> {
        let text = format!(
            "slot={}\nversion={}\nfrom={}\nstage={}\ncommitted_at={}\n",
            t.slot,
            t.version,
            t.from,
            if t.committed { "committed" } else { "installing" },
            t.committed_at
        );
        Ok(replace(&self.dir.join("trial"), text.as_bytes())?)
    }

    pub fn clear_trial(&self) -> Result<(), StateError> {
        Ok(remove_synced(&self.dir.join("trial"))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(name: &str) -> Store {
        let dir = std::env::temp_dir().join(format!("cairn-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Store::new(dir)
    }

    #[test]
    fn floor_only_rises_and_bad_versions_are_kept() {
        let s = store("floor");
        assert_eq!(s.floor().unwrap(), Version(0, 0, 0));
        s.raise_floor(Version(0, 2, 0)).unwrap();
        s.raise_floor(Version(0, 1, 0)).unwrap();
        assert_eq!(s.floor().unwrap(), Version(0, 2, 0));
        s.mark_bad(Version(0, 3, 0), "unhealthy: web").unwrap();
        s.mark_bad(Version(0, 3, 0), "again").unwrap();
        assert_eq!(s.bad().unwrap(), vec![Version(0, 3, 0)]);
        s.mark_bad(Version(0, 4, 0), "rolled back by the operator").unwrap();
        assert!(s.unmark_bad(Version(0, 3, 0)).unwrap());
        assert!(!s.unmark_bad(Version(0, 3, 0)).unwrap());
        assert_eq!(s.bad().unwrap(), vec![Version(0, 4, 0)]);
        let _ = std::fs::remove_dir_all(&s.dir);
    }

    #[test]
    fn trial_round_trips_and_bad_files_name_the_line() {
        let s = store("trial");
        let t = Trial { slot: Slot::B, version: Version(0, 2, 0), from: Version(0, 1, 0), committed: true, committed_at: 5 };
        s.set_trial(&t).unwrap();
        assert_eq!(s.trial().unwrap(), Some(t));
        s.clear_trial().unwrap();
        assert_eq!(s.trial().unwrap(), None);
        std::fs::write(s.dir.join("bad"), "0.1.0\nnonsense\n").unwrap();
        let e = s.bad().unwrap_err().to_string();
        assert!(e.ends_with("bad:2: `nonsense` is not a version like 1.2.3"), "{e}");
        let _ = std::fs::remove_dir_all(&s.dir);
    }
}
