//! Cairn's network code, small and hand-written so PID 1 can carry it: a
//! netlink socket and codec ([`netlink`]), link, address and route changes
//! ([`rtnl`]), a DHCPv4 client with its lease loop ([`dhcp`]) and the text of
//! resolv.conf ([`resolv`]). cairn-init uses it for its first-link fast path;
//! cairn-netd for everything a machine config describes.

pub mod dhcp;
pub mod netlink;
pub mod resolv;
pub mod rtnl;

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// poll(2) on a set of fds, each with the events it waits for; returns which
/// ones have something to say (an event asked for, a hang-up or an error).
/// An interrupted wait reads as nothing ready; `None` waits for ever.
pub fn poll(fds: &[(RawFd, libc::c_short)], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds.iter().map(|&(fd, events)| libc::pollfd { fd, events, revents: 0 }).collect();
    let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as libc::c_int);
    // SAFETY: `pfds` is a valid array of `pfds.len()` pollfd structs.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(err);
    }
    Ok(pfds.iter().map(|p| p.revents != 0).collect())
}

/// poll(2) for readability only.
pub fn poll_readable(fds: &[RawFd], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let fds: Vec<(RawFd, libc::c_short)> = fds.iter().map(|&fd| (fd, libc::POLLIN)).collect();
    poll(&fds, timeout)
}

/// An error and its sources, one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
