//! Logging for PID 1: `tracing` events go to the console, never blocking on it,
//! and to the kernel log (`/dev/kmsg`) so `dmesg` keeps them.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// The files are shared, not guarded: a line is written with no lock held,
/// so a thread waiting on a full console never holds up another.
struct Sinks {
    console: Option<Arc<File>>,
    kmsg: Option<Arc<File>>,
}

/// The subscriber: formats one line an event, writes it to both sinks.
pub struct Logger {
    max: AtomicUsize,
    sinks: Mutex<Sinks>,
    dropped: AtomicU64,
    /// The console refused a line after waiting: until it takes one again,
    /// only must-see lines wait.
    stuck: AtomicBool,
}

/// How long one line may wait for a full console: must-see lines (ready,
/// shutdown, panic), then warnings and errors. Info and below never wait.
const MUST_PATIENCE: Duration = Duration::from_millis(200);
const WARN_PATIENCE: Duration = Duration::from_millis(50);

/// How long a line may wait for the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    Drop,
    Warn,
    Must,
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
        Logger::with_sinks(level, open_console(), open_kmsg())
    }

    fn with_sinks(level: Level, console: Option<File>, kmsg: Option<File>) -> Logger {
        Logger {
            max: AtomicUsize::new(level_rank(&level)),
            sinks: Mutex::new(Sinks { console: console.map(Arc::new), kmsg: kmsg.map(Arc::new) }),
            dropped: AtomicU64::new(0),
            stuck: AtomicBool::new(false),
        }
    }

    /// Reopens the sinks; called once /dev is mounted, since the initramfs may
    /// only carry /dev/console.
    pub fn reopen(&self) {
        if let Ok(mut s) = self.sinks.lock() {
            if s.console.is_none() {
                s.console = open_console().map(Arc::new);
            }
            if s.kmsg.is_none() {
                s.kmsg = open_kmsg().map(Arc::new);
            }
        }
    }

    pub fn set_level(&self, level: Level) {
        self.max.store(level_rank(&level), Ordering::Relaxed);
    }

    /// Writes one line. Must-see lines (the ready line, shutdown) and
    /// warnings wait a moment when the console is full; the rest are dropped
    /// (they are in the kernel log either way).
    pub fn write_line(&self, line: &str, urgency: Urgency) {
        let (console, kmsg) = match self.sinks.lock() {
            Ok(s) => (s.console.clone(), s.kmsg.clone()),
            Err(_) => return,
        };
        if let Some(kmsg) = kmsg {
            // Level 7 (debug) keeps the kernel from echoing our line to the
            // console a second time; our own writer below does that.
            let _ = (&*kmsg).write_all(format!("<7>{line}\n").as_bytes());
        }
        let Some(console) = console else { return };
        let patience = match urgency {
            Urgency::Must => MUST_PATIENCE,
            Urgency::Warn if !self.stuck.load(Ordering::Relaxed) => WARN_PATIENCE,
            _ => Duration::ZERO,
        };
        let bytes = format!("{line}\r\n");
        let mut rest = bytes.as_bytes();
        let mut tries = patience.as_millis();
        while !rest.is_empty() {
            match (&*console).write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && tries > 0 => {
                    tries -= 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    self.stuck.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }
        self.stuck.store(false, Ordering::Relaxed);
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
        let urgency = if *level <= Level::WARN { Urgency::Warn } else { Urgency::Drop };
        self.0.write_line(&text, urgency);
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

    /// A console pipe that is full and never read, as a stopped serial line.
    fn stuck_console() -> (Logger, std::os::fd::OwnedFd) {
        let (rd, wr) = crate::sys::pipe().unwrap();
        let console = File::from(wr);
        while (&console).write(&[b'x'; 4096]).is_ok() {}
        let kmsg = File::options().write(true).open("/dev/null").unwrap();
        (Logger::with_sinks(Level::INFO, Some(console), Some(kmsg)), rd)
    }

    #[test]
    fn a_warning_on_a_stuck_console_holds_no_lock_and_waits_once() {
        let (logger, _rd) = stuck_console();
        let logger = Arc::new(logger);
        let waiting = {
            let l = Arc::clone(&logger);
            std::thread::spawn(move || l.write_line("first", Urgency::Warn))
        };
        std::thread::sleep(Duration::from_millis(10));
        let start = std::time::Instant::now();
        logger.reopen();
        assert!(start.elapsed() < Duration::from_millis(40), "the sinks were locked for {:?}", start.elapsed());
        waiting.join().unwrap();
        let start = std::time::Instant::now();
        logger.write_line("second", Urgency::Warn);
        assert!(start.elapsed() < Duration::from_millis(20), "a second warning waited {:?}", start.elapsed());
        assert_eq!(logger.dropped.load(Ordering::Relaxed), 2);
    }
}
