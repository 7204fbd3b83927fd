//! Payload downloads into STATE's staging directory: resumed where an
//! earlier try stopped, one deadline per request, hashed as they arrive.

use crate::http;
use crate::update::{io, UpdateError, Updater, MIB};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DOWNLOAD_TRIES: u32 = 5;
/// The slowest link a payload request is given time for; a slower one ends
/// the request at its deadline and the next request resumes.
const MIN_RATE: u64 = 64 << 10;

impl Updater {
    /// Downloads one payload into `staging/NAME`, resuming what an earlier try
    /// left, and checks its size and sha256.
    pub(crate) fn fetch(&mut self, base: &str, file: &str, size: u64, sha256: &str) -> Result<PathBuf, UpdateError> {
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
            None => self.source()?.trust()?,
        };
        let started = Instant::now();
        let mut last_report = Instant::now();
        let mut tries = 0;
        while have < size {
            // One deadline for the whole request: enough for what is left at
            // MIN_RATE; a request cut there is resumed by the next one.
            let whole = self.timeout.saturating_add(Duration::from_secs((size - have) / MIN_RATE));
            let t = http::Timeouts { step: self.timeout, whole };
            let mut resp = match http::get(&url, have, &t, &trust) {
                Ok(r) => r,
                Err(e) if e.transient() && tries + 1 < DOWNLOAD_TRIES => {
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
}

pub(crate) fn hash_into(r: &mut impl Read, limit: u64, h: &mut Sha256) -> std::io::Result<u64> {
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

/// Whole percent of `part` in `whole`, without overflow.
fn percent(part: u64, whole: u64) -> u64 {
    (u128::from(part) * 100 / u128::from(whole.max(1))) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_does_not_overflow() {
        assert_eq!(percent(u64::MAX, u64::MAX), 100);
        assert_eq!(percent(1, 0), 100);
        assert_eq!(percent(1, 4), 25);
    }
}
