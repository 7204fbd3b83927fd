//! Thin, safe wrappers around the syscalls PID 1 needs that `std` lacks.
//! Every `unsafe` block in cairn-init that is not about netlink lives here.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in string"))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

pub fn mount(source: &str, target: &str, fstype: &str, flags: u64, data: &str) -> io::Result<()> {
    let (s, t, f, d) = (cstr(source)?, cstr(target)?, cstr(fstype)?, cstr(data)?);
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call.
    check(unsafe {
        libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), flags, d.as_ptr().cast())
    })?;
    Ok(())
}

pub fn umount(target: &str, flags: libc::c_int) -> io::Result<()> {
    let t = cstr(target)?;
    // SAFETY: `t` is a valid NUL-terminated string that outlives the call.
    check(unsafe { libc::umount2(t.as_ptr(), flags) })?;
    Ok(())
}

/// Loads a kernel module from an open file.
pub fn finit_module(file: &std::fs::File, params: &std::ffi::CStr) -> io::Result<()> {
    // SAFETY: the fd is open for the duration of the call and `params` is a
    // valid C string; the kernel reads the module from the fd.
    let ret = unsafe {
        libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0)
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn chroot(path: &str) -> io::Result<()> {
    let p = cstr(path)?;
    // SAFETY: `p` is a valid NUL-terminated string that outlives the call.
    check(unsafe { libc::chroot(p.as_ptr()) })?;
    Ok(())
}

pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, which outlive the call.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })?;
    Ok(())
}

/// reboot(2) with one of the `RB_*` commands. Only returns on error.
pub fn reboot(cmd: libc::c_int) -> io::Error {
    // SAFETY: reboot takes no pointers; a failure leaves the process as it was.
    unsafe { libc::reboot(cmd) };
    io::Error::last_os_error()
}

pub fn disable_ctrl_alt_del() -> io::Result<()> {
    // SAFETY: RB_DISABLE_CAD only changes what the kernel does on Ctrl-Alt-Del:
    // it sends SIGINT to PID 1 instead of rebooting at once.
    check(unsafe { libc::reboot(libc::RB_DISABLE_CAD) })?;
    Ok(())
}

pub fn sync() {
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

pub fn kill(pid: i32, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: kill takes no pointers; the worst a wrong pid does is signal the
    // wrong process, which callers guard against by tracking pids they own.
    check(unsafe { libc::kill(pid, sig) })?;
    Ok(())
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "status {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

/// Reaps one exited child without blocking. `Ok(None)`: children exist but none
/// has exited; `Err` with ECHILD: there are no children at all.
pub fn reap_one() -> io::Result<Option<(i32, ExitStatus)>> {
    let mut status: libc::c_int = 0;
    // SAFETY: `status` is a valid out-pointer for the duration of the call.
    let pid = check(unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) })?;
    if pid == 0 {
        return Ok(None);
    }
    let st = if libc::WIFSIGNALED(status) {
        ExitStatus::Signal(libc::WTERMSIG(status))
    } else {
        ExitStatus::Code(libc::WEXITSTATUS(status))
    };
    Ok(Some((pid, st)))
}

fn sigset(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it fully before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t owned by this frame.
    unsafe { libc::sigemptyset(&mut set) };
    for &s in signals {
        // SAFETY: as above; invalid signal numbers are rejected by the call.
        unsafe { libc::sigaddset(&mut set, s) };
    }
    set
}

/// Blocks the signals for this thread (and threads spawned later) and returns a
/// signalfd that receives them.
pub fn signalfd(signals: &[libc::c_int]) -> io::Result<OwnedFd> {
    let set = sigset(signals);
    // SAFETY: `set` is initialised; the old mask is not wanted.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // SAFETY: `set` is initialised; -1 asks for a new fd, which we then own.
    let fd = check(unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) })?;
    // SAFETY: signalfd returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads every pending signal number from a non-blocking signalfd.
pub fn read_signals(fd: &OwnedFd) -> Vec<u32> {
    let mut out = Vec::new();
    loop {
        // SAFETY: signalfd_siginfo is plain data.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: the buffer is exactly one signalfd_siginfo, owned by this frame.
        let n = unsafe { libc::read(fd.as_raw_fd(), (&mut info as *mut libc::signalfd_siginfo).cast(), size) };
        if n != size as isize {
            break;
        }
        out.push(info.ssi_signo);
    }
    out
}

/// poll(2), shared with the network code.
pub use cairn_netconf::{poll, poll_readable};

/// Returns the heap's free memory to the kernel.
pub fn trim_heap() {
    // SAFETY: malloc_trim only releases free pages of the allocator's own
    // heap; it takes no pointers and is safe to call at any time.
    unsafe { libc::malloc_trim(0) };
}

/// A pipe whose read end wakes the main loop; both ends close on exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for the kernel to fill.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) })?;
    // SAFETY: pipe2 returned two fresh fds that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Milliseconds since the kernel started, counting time suspended.
pub fn boottime_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_BOOTTIME always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// The running kernel's release, as `uname -r` prints it.
pub fn kernel_release() -> io::Result<String> {
    // SAFETY: utsname is plain data that uname fills.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid out-pointer.
    check(unsafe { libc::uname(&mut uts) })?;
    // SAFETY: the kernel NUL-terminates every utsname field.
    let rel = unsafe { CStr::from_ptr(uts.release.as_ptr()) };
    Ok(rel.to_string_lossy().into_owned())
}

pub fn is_mountpoint(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(me), Some(parent)) = (std::fs::metadata(path), path.parent()) else {
        return false;
    };
    match std::fs::metadata(parent) {
        Ok(up) => me.dev() != up.dev() || me.ino() == up.ino(),
        Err(_) => false,
    }
}

/// A `Command` for anything PID 1 starts: the child begins with an empty
/// signal mask and every signal at its default action.
///
/// std does neither (it resets SIGPIPE only), so without this every child
/// inherited the signals PID 1 blocks for its signalfd (SIGTERM, SIGINT,
/// SIGHUP, ...): services could not be stopped with their stop signal and
/// Ctrl-C did nothing in the debug shell. Every spawn in cairn-init goes
/// through here; a unit test keeps it so.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(program);
    // SAFETY: the closure runs between fork and exec and makes only
    // async-signal-safe calls (sigemptyset, sigprocmask, sigaction) on its own
    // stack data.
    unsafe {
        cmd.pre_exec(reset_signals);
    }
    cmd
}

/// Empties the signal mask and sets every catchable signal to its default
/// action. Meant for `pre_exec`: only async-signal-safe calls, no allocation.
fn reset_signals() -> io::Result<()> {
    // SAFETY: sigset_t and sigaction are plain data; sigemptyset fills them.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t on this stack frame.
    unsafe { libc::sigemptyset(&mut set) };
    // SAFETY: `set` is initialised; the old mask is not wanted.
    check(unsafe { libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) })?;
    // SAFETY: as above, zeroed is a valid starting value for sigaction.
    let mut dfl: libc::sigaction = unsafe { std::mem::zeroed() };
    dfl.sa_sigaction = libc::SIG_DFL;
    // SAFETY: `dfl.sa_mask` is a valid sigset_t inside `dfl`.
    unsafe { libc::sigemptyset(&mut dfl.sa_mask) };
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: `dfl` is a valid sigaction; the C library refuses the
        // signals it reserves for itself (EINVAL), which is fine to ignore.
        unsafe { libc::sigaction(sig, &dfl, std::ptr::null_mut()) };
    }
    Ok(())
}

/// Makes the calling process a session leader with `tty` as its controlling
/// terminal on fds 0, 1 and 2. Meant for `pre_exec`: only async-signal-safe calls.
pub fn become_tty_session(tty: &CStr) -> io::Result<()> {
    // SAFETY: setsid takes no arguments; it fails only for a group leader.
    check(unsafe { libc::setsid() })?;
    // SAFETY: `tty` is a valid C string prepared before fork.
    let fd = check(unsafe { libc::open(tty.as_ptr(), libc::O_RDWR | libc::O_NOCTTY) })?;
    // SAFETY: `fd` is a terminal we just opened; TIOCSCTTY with 1 steals it if
    // another session had it, which is what a console getty wants.
    check(unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 1) })?;
    for target in 0..3 {
        // SAFETY: both fds are valid; dup2 atomically replaces the target.
        check(unsafe { libc::dup2(fd, target) })?;
    }
    if fd > 2 {
        // SAFETY: `fd` is ours and no longer needed after the dup2s.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_mask(status: &str, key: &str) -> u64 {
        let line = status.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_else(|| panic!("no {key} in {status}"));
        u64::from_str_radix(line.trim(), 16).unwrap()
    }

    #[test]
    fn children_start_with_no_blocked_or_ignored_signals() {
        // Blocked in this test's thread only, as PID 1 blocks them for its
        // signalfd; ignored process-wide (SIGUSR2 is used by no other test).
        let set = sigset(&[libc::SIGTERM, libc::SIGHUP, libc::SIGINT]);
        // SAFETY: `set` is initialised; this thread's old mask is not wanted.
        assert_eq!(unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) }, 0);
        // SAFETY: setting a disposition to SIG_IGN runs no code of ours.
        unsafe { libc::signal(libc::SIGUSR2, libc::SIG_IGN) };
        let out = command("cat").arg("/proc/self/status").output().unwrap();
        let status = String::from_utf8_lossy(&out.stdout);
        assert_eq!(status_mask(&status, "SigBlk:"), 0, "{status}");
        assert_eq!(status_mask(&status, "SigIgn:") & (1 << (libc::SIGUSR2 - 1)), 0, "{status}");
    }

    /// Every process cairn-init starts goes through `command`. Exempt: the
    /// exec of stage 2, which is PID 1 itself and keeps its mask on purpose
    /// so no signal sent meanwhile is lost.
    #[test]
    fn every_spawn_goes_through_command() {
        fn walk(dir: &Path, found: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, found);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let code = text.split("#[cfg(test)]").next().unwrap_or("");
                let exempt = path.ends_with("sys.rs") || path.ends_with("disk/mod.rs");
                if !exempt && code.contains("Command::new(") {
                    found.push(path.display().to_string());
                }
            }
        }
        let mut found = Vec::new();
        walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut found);
        assert!(found.is_empty(), "use sys::command, not Command::new, in {found:?}");
    }
}
