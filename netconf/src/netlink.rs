//! A minimal netlink socket and message codec: enough for rtnetlink (links,
//! addresses, routes) and generic netlink (the ACPI event family).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

pub const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_REPLACE: u16 = 0x100;
pub const NLM_F_CREATE: u16 = 0x400;

pub fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Builds one netlink message: header, a fixed family header, attributes.
pub struct MsgBuilder {
    buf: Vec<u8>,
}

impl MsgBuilder {
    pub fn new(msg_type: u16, flags: u16, seq: u32) -> MsgBuilder {
        let mut buf = vec![0u8; NLMSG_HDRLEN];
        buf[4..6].copy_from_slice(&msg_type.to_ne_bytes());
        buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        MsgBuilder { buf }
    }

    /// Appends the family header (ifinfomsg, rtmsg, genlmsghdr...), padded.
    pub fn header(mut self, bytes: &[u8]) -> Self {
        self.buf.extend_from_slice(bytes);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    pub fn attr(mut self, kind: u16, payload: &[u8]) -> Self {
        let len = 4 + payload.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    pub fn attr_u32(self, kind: u16, v: u32) -> Self {
        self.attr(kind, &v.to_ne_bytes())
    }

    pub fn attr_str(self, kind: u16, s: &str) -> Self {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.attr(kind, &b)
    }

    /// A builder for the attributes inside a nested attribute.
    pub fn nested() -> MsgBuilder {
        MsgBuilder { buf: Vec::new() }
    }

    /// The attributes of a nested builder, to pass to [`MsgBuilder::attr`].
    pub fn into_attrs(self) -> Vec<u8> {
        self.buf
    }

    pub fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// One received message: its type and the bytes after the netlink header.
#[derive(Debug, Clone)]
pub struct Msg {
    pub kind: u16,
    pub seq: u32,
    pub payload: Vec<u8>,
}

/// Splits a datagram into messages; stops at a malformed length.
pub fn parse_msgs(mut buf: &[u8]) -> Vec<Msg> {
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            break;
        }
        out.push(Msg {
            kind: u16::from_ne_bytes([buf[4], buf[5]]),
            seq: u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]),
            payload: buf[NLMSG_HDRLEN..len].to_vec(),
        });
        buf = &buf[align4(len).min(buf.len())..];
    }
    out
}

/// Iterates the attributes in `buf` as (type without flag bits, payload).
pub fn attrs(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < 4 || len > buf.len() {
            break;
        }
        out.push((kind, &buf[4..len]));
        buf = &buf[align4(len).min(buf.len())..];
    }
    out
}

pub fn read_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(..4)?.try_into().ok()?))
}

pub fn read_cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("Netlink socket failed")]
    Io(#[from] io::Error),
    /// The kernel answered a request with an error.
    #[error("Kernel refused the request")]
    Refused(#[source] io::Error),
    #[error("No answer from the kernel within {0:?}")]
    Timeout(Duration),
}

/// A netlink socket of one protocol.
pub struct Socket {
    fd: OwnedFd,
    seq: u32,
}

impl Socket {
    pub fn open(protocol: libc::c_int) -> io::Result<Socket> {
        // SAFETY: plain socket(2); the returned fd is checked and then owned.
        let fd = unsafe {
            libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol)
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh socket nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain data; zero means "kernel picks the port".
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: `addr` is a valid sockaddr_nl and its size is passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Socket { fd, seq: 1 })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Joins a multicast group (generic netlink event groups).
    pub fn join_group(&self, group: u32) -> io::Result<()> {
        // SAFETY: the option value is a u32 that outlives the call.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_NETLINK,
                libc::NETLINK_ADD_MEMBERSHIP,
                (&group as *const u32).cast(),
                4,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: the buffer is valid for `msg.len()` bytes; the socket is
        // bound, so send goes to the kernel.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives one datagram, waiting at most `timeout`.
    pub fn recv(&self, timeout: Duration) -> Result<Vec<Msg>, NetlinkError> {
        let ready = crate::poll_readable(&[self.raw_fd()], Some(timeout))?;
        if !ready[0] {
            return Err(NetlinkError::Timeout(timeout));
        }
        let mut buf = vec![0u8; 32 * 1024];
        // SAFETY: the buffer is valid for writes of its full length.
        let n = unsafe {
            libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT)
        };
        if n < 0 {
            return Err(io::Error::last_os_error().into());
        }
        buf.truncate(n as usize);
        Ok(parse_msgs(&buf))
    }

    /// Sends a request and collects the answers with its sequence number until
    /// the ack, the end of a dump, or an error.
    pub fn request(&mut self, msg: &[u8], seq: u32) -> Result<Vec<Msg>, NetlinkError> {
        self.send(msg)?;
        let timeout = Duration::from_secs(5);
        let mut out = Vec::new();
        loop {
            for m in self.recv(timeout)? {
                if m.seq != seq {
                    continue;
                }
                match m.kind {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let code = m.payload.get(..4).map_or(0, |b| {
                            i32::from_ne_bytes([b[0], b[1], b[2], b[3]])
                        });
                        if code == 0 {
                            return Ok(out);
                        }
                        return Err(NetlinkError::Refused(io::Error::from_raw_os_error(-code)));
                    }
                    _ => out.push(m),
                }
            }
        }
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_messages_parse_back() {
        let msg = MsgBuilder::new(20, NLM_F_REQUEST, 7)
            .header(&[1, 2, 3])
            .attr_str(3, "eth0")
            .attr_u32(4, 42)
            .finish();
        assert_eq!(msg.len() % 4, 0);
        let msgs = parse_msgs(&msg);
        assert_eq!(msgs.len(), 1);
        assert_eq!((msgs[0].kind, msgs[0].seq), (20, 7));
        let a = attrs(&msgs[0].payload[4..]);
        assert_eq!(a.len(), 2);
        assert_eq!((a[0].0, read_cstr(a[0].1).as_str()), (3, "eth0"));
        assert_eq!((a[1].0, read_u32(a[1].1)), (4, Some(42)));
    }

    #[test]
    fn truncated_input_stops_cleanly() {
        let msg = MsgBuilder::new(1, 0, 1).attr_u32(1, 1).finish();
        assert!(parse_msgs(&msg[..msg.len() - 3]).is_empty());
        assert!(attrs(&[8, 0, 1, 0, 1]).is_empty());
    }
}
