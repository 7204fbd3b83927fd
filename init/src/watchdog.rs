//! The softdog watchdog: armed in stage 1, handed to stage 2 across the exec,
//! petted from the event loop. If PID 1 hangs the kernel reboots, and on a
//! trial boot that uses up one of the entry's tries.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::time::{Duration, Instant};

/// WDIOC_SETTIMEOUT: _IOWR('W', 6, int).
const WDIOC_SETTIMEOUT: libc::c_ulong = 0xC004_5706;

pub struct Watchdog {
    file: File,
    last: Instant,
    pub timeout: Duration,
}

/// The argument stage 1 passes to stage 2.
pub const FD_ARG: &str = "--watchdog-fd=";

impl Watchdog {
    /// Opens /dev/watchdog and sets its timeout. The descriptor stays open
    /// across exec (no CLOEXEC) so stage 2 keeps the same watchdog running.
    pub fn arm(timeout: Duration) -> std::io::Result<Watchdog> {
        // SAFETY: open(2) with a static NUL-terminated path; we own the result.
        let fd = unsafe { libc::open(c"/dev/watchdog".as_ptr(), libc::O_WRONLY) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by open and is owned by nobody else.
        let file = unsafe { File::from_raw_fd(fd) };
        let mut w = Watchdog { file, last: Instant::now(), timeout };
        w.set_timeout(timeout)?;
        Ok(w)
    }

    /// Takes over the watchdog stage 1 opened.
    pub fn inherit(fd: RawFd, timeout: Duration) -> std::io::Result<Watchdog> {
        // SAFETY: F_GETFD only checks the descriptor exists.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: stage 1 left this descriptor open for us and nothing else uses it.
        let file = unsafe { File::from_raw_fd(fd) };
        let mut w = Watchdog { file, last: Instant::now(), timeout };
        w.set_cloexec()?;
        w.pet();
        Ok(w)
    }

    fn set_cloexec(&self) -> std::io::Result<()> {
        // SAFETY: F_SETFD on a descriptor we own.
        if unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn set_timeout(&mut self, timeout: Duration) -> std::io::Result<()> {
        let mut secs = libc::c_int::try_from(timeout.as_secs()).unwrap_or(libc::c_int::MAX);
        // SAFETY: the ioctl reads and writes one int we own.
        if unsafe { libc::ioctl(self.file.as_raw_fd(), WDIOC_SETTIMEOUT, &mut secs) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        self.timeout = timeout;
        self.pet();
        Ok(())
    }

    /// Keeps the machine alive; cheap, so the loop calls it every turn.
    pub fn pet(&mut self) {
        if self.last.elapsed() >= Duration::from_secs(1) || self.last.elapsed().is_zero() {
            let _ = self.file.write_all(b"k");
            self.last = Instant::now();
        }
    }

    /// How long the loop may sleep and still pet in time.
    pub fn interval(&self) -> Duration {
        self.timeout / 4
    }

    /// For the exec into stage 2: the descriptor, which stays open across it.
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}
