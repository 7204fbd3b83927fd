//! Logging for PID 1: `tracing` events go to the console, never blocking on it,
//! and to the kernel log (`/dev/kmsg`) so `dmesg` keeps them.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

struct Sinks {
    console: Option<File>,
    kmsg: Option<File>,
}

/// The subscriber: formats one line an event, writes it to both sinks.
pub struct Logger {
    max: AtomicUsize,
    sinks: Mutex<Sinks>,
    dropped: AtomicU64,
}

fn level_rank(l: &Level) -> usize {
    match *l {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

fn open_console() -> Option<File> {
    // Non-blocking so a stopped or slow serial line drops log lines instead of
    // stopping PID 1. This is a separate open file description, so the flag does
    // not leak into the blocking console fds children inherit.
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open("/dev/console")
        .ok()
}

fn open_kmsg() -> Option<File> {
    OpenOptions::new().write(true).custom_flags(libc::O_CLOEXEC).open("/dev/kmsg").ok()
}

impl Logger {
    fn new(level: Level) -> Logger {
        Logger {
            max: AtomicUsize::new(level_rank(&level)),
            sinks: Mutex::new(Sinks { console: open_console(), kmsg: open_kmsg() }),
            dropped: AtomicU64::new(0),
        }
    }

    /// Reopens the sinks; called once /dev is mounted, since the initramfs may
    /// only carry /dev/console.
    pub fn reopen(&self) {
        if let Ok(mut s) = self.sinks.lock() {
            if s.console.is_none() {
                s.console = open_console();
            }
            if s.kmsg.is_none() {
                s.kmsg = open_kmsg();
            }
        }
    }

    pub fn set_level(&self, level: Level) {
        self.max.store(level_rank(&level), Ordering::Relaxed);
    }

    /// Writes one line. `must` lines (the ready line, shutdown) are retried
    /// briefly when the console is full instead of dropped.
    pub fn write_line(&self, line: &str, must: bool) {
        let Ok(mut sinks) = self.sinks.lock() else { return };
        if let Some(kmsg) = sinks.kmsg.as_mut() {
            // Level 7 (debug) keeps the kernel from echoing our line to the
            // console a second time; our own writer below does that.
            let _ = kmsg.write_all(format!("<7>{line}\n").as_bytes());
        }
        if let Some(console) = sinks.console.as_mut() {
            let bytes = format!("{line}\r\n");
            let mut rest = bytes.as_bytes();
            let mut tries = if must { 200 } else { 0 };
            while !rest.is_empty() {
                match console.write(rest) {
                    Ok(n) => rest = &rest[n..],
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && tries > 0 => {
                        tries -= 1;
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    Err(_) => {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }
    }
}

static LOGGER: std::sync::OnceLock<&'static Logger> = std::sync::OnceLock::new();

/// Installs the logger as the global subscriber.
pub fn init(level: Level) -> &'static Logger {
    let logger: &'static Logger = LOGGER.get_or_init(|| Box::leak(Box::new(Logger::new(level))));
    let _ = tracing::subscriber::set_global_default(Handle(logger));
    logger
}

/// The installed logger, if any.
pub fn get() -> Option<&'static Logger> {
    LOGGER.get().copied()
}

struct Handle(&'static Logger);

#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else if value.contains(' ') || value.is_empty() {
            let _ = write!(self.fields, " {}={:?}", field.name(), value);
        } else {
            let _ = write!(self.fields, " {}={}", field.name(), value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={:?}", field.name(), value);
        }
    }
}

/// `cairn-init: [WARN ]message key=value`: info lines carry no level word.
pub fn format_event(level: &Level, message: &str, fields: &str) -> String {
    let tag = match *level {
        Level::ERROR => "ERROR ",
        Level::WARN => "WARN ",
        Level::DEBUG => "debug: ",
        Level::TRACE => "trace: ",
        Level::INFO => "",
    };
    format!("cairn-init: {tag}{message}{fields}")
}

impl Subscriber for Handle {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        level_rank(metadata.level()) <= self.0.max.load(Ordering::Relaxed)
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut line = Line::default();
        event.record(&mut line);
        let level = event.metadata().level();
        let text = format_event(level, &line.message, &line.fields);
        self.0.write_line(&text, *level <= Level::WARN);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_the_prefix_level_and_fields() {
        assert_eq!(format_event(&Level::INFO, "hello", " a=1"), "cairn-init: hello a=1");
        assert_eq!(format_event(&Level::WARN, "odd", ""), "cairn-init: WARN odd");
        assert_eq!(format_event(&Level::ERROR, "bad", ""), "cairn-init: ERROR bad");
    }
}
