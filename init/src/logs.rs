//! Per-service logs: a bounded in-memory ring (what `cairnctl logs` shows
//! first) and a size-capped file on STATE rotated once, so a chatty service can
//! neither fill memory nor the disk.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;

pub const RING_BYTES: usize = 64 * 1024;
pub const FILE_BYTES: u64 = 1024 * 1024;
pub const LOG_DIR: &str = "/var/log/cairn";
const MAX_LINE: usize = 4096;

#[derive(Debug, Default)]
pub struct Ring {
    lines: VecDeque<String>,
    bytes: usize,
    cap: usize,
}

impl Ring {
    pub fn new(cap: usize) -> Ring {
        Ring { lines: VecDeque::new(), bytes: 0, cap }
    }

    pub fn push(&mut self, line: String) {
        self.bytes += line.len() + 1;
        self.lines.push_back(line);
        while self.bytes > self.cap {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.len() + 1,
                None => break,
            }
        }
    }

    pub fn text(&self) -> String {
        let mut s = String::with_capacity(self.bytes);
        for l in &self.lines {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}

/// A log file that is renamed to `.1` when it passes `cap` bytes.
#[derive(Debug)]
pub struct LogFile {
    path: String,
    file: Option<std::fs::File>,
    size: u64,
    cap: u64,
}

impl LogFile {
    pub fn new(path: String, cap: u64) -> LogFile {
        LogFile { path, file: None, size: 0, cap }
    }

    pub fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        if self.file.is_none() {
            let f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
            self.size = f.metadata()?.len();
            self.file = Some(f);
        }
        if self.size + line.len() as u64 + 1 > self.cap {
            self.file = None;
            std::fs::rename(&self.path, format!("{}.1", self.path))?;
            let f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
            self.size = 0;
            self.file = Some(f);
        }
        if let Some(f) = self.file.as_mut() {
            f.write_all(line.as_bytes())?;
            f.write_all(b"\n")?;
            self.size += line.len() as u64 + 1;
        }
        Ok(())
    }
}

struct Log {
    ring: Ring,
    file: Option<LogFile>,
    file_failed: bool,
}

/// Every service's log. New lines also go to a `publish` callback (the
/// control socket's followers), which must not block.
#[derive(Default)]
pub struct Logs {
    logs: BTreeMap<String, Log>,
    partial: BTreeMap<(String, u8), Vec<u8>>,
    to_disk: bool,
}

/// Where each new line goes besides the log: (log name, stamped line).
pub type Publish<'a> = dyn FnMut(&str, &str) + 'a;

impl Logs {
    /// Files are written only when /var is STATE; a tmpfs /var would only eat memory.
    pub fn new(to_disk: bool) -> Logs {
        if to_disk {
            let _ = std::fs::create_dir_all(LOG_DIR);
        }
        Logs { to_disk, ..Default::default() }
    }

    fn log(&mut self, name: &str) -> &mut Log {
        let to_disk = self.to_disk;
        self.logs.entry(name.to_string()).or_insert_with(|| Log {
            ring: Ring::new(RING_BYTES),
            file: to_disk.then(|| LogFile::new(format!("{LOG_DIR}/{name}.log"), FILE_BYTES)),
            file_failed: false,
        })
    }

    /// Adds one line, stamped with the time since boot.
    pub fn line(&mut self, name: &str, text: &str, publish: &mut Publish<'_>) {
        let mut text = text.trim_end_matches('\r').to_string();
        if text.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        let ms = crate::sys::boottime_ms();
        let stamped = format!("[{:6}.{:03}] {text}", ms / 1000, ms % 1000);
        let log = self.log(name);
        if let Some(f) = log.file.as_mut() {
            if let Err(e) = f.write_line(&stamped) {
                if !log.file_failed {
                    log.file_failed = true;
                    tracing::warn!("log file of {name} not written: {e}");
                }
            }
        }
        publish(name, &stamped);
        log.ring.push(stamped);
    }

    /// Feeds bytes read from a service's stdout (stream 1) or stderr (2).
    pub fn feed(&mut self, name: &str, stream: u8, bytes: &[u8], publish: &mut Publish<'_>) {
        let key = (name.to_string(), stream);
        let mut buf = self.partial.remove(&key).unwrap_or_default();
        buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&buf[start..start + nl]).into_owned();
            self.line(name, &line, publish);
            start += nl + 1;
        }
        let mut rest = buf.split_off(start);
        if rest.len() > MAX_LINE {
            let line = String::from_utf8_lossy(&rest).into_owned();
            self.line(name, &line, publish);
            rest.clear();
        }
        if !rest.is_empty() {
            self.partial.insert(key, rest);
        }
    }

    pub fn text(&self, name: &str) -> Option<String> {
        self.logs.get(name).map(|l| l.ring.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_newest_lines_within_its_cap() {
        let mut r = Ring::new(20);
        for i in 0..10 {
            r.push(format!("line {i}"));
        }
        assert_eq!(r.text(), "line 8\nline 9\n");
    }

    #[test]
    fn file_rotates_once_past_its_cap() {
        let dir = std::env::temp_dir().join(format!("cairn-logs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.log").display().to_string();
        let mut f = LogFile::new(path.clone(), 100);
        for i in 0..30 {
            f.write_line(&format!("line number {i:02}")).unwrap();
        }
        let cur = std::fs::metadata(&path).unwrap().len();
        let old = std::fs::metadata(format!("{path}.1")).unwrap().len();
        assert!(cur <= 100 && old <= 100, "{cur} {old}");
        assert!(std::fs::read_to_string(&path).unwrap().ends_with("line number 29\n"));
        assert!(!std::path::Path::new(&format!("{path}.1.1")).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn partial_lines_wait_for_their_newline() {
        let mut logs = Logs::new(false);
        let mut published = Vec::new();
        let mut publish = |n: &str, l: &str| published.push(format!("{n}: {l}"));
        logs.feed("s", 1, b"hel", &mut publish);
        assert_eq!(logs.text("s"), None);
        logs.feed("s", 1, b"lo\nwor", &mut publish);
        logs.feed("s", 2, b"err\n", &mut publish);
        assert!(published.len() == 2 && published[0].starts_with("s: [") && published[0].ends_with("] hello"), "{published:?}");
        let text = logs.text("s").unwrap();
        assert!(text.contains("] hello\n") && text.contains("] err\n") && !text.contains("wor"), "{text}");
    }
}
