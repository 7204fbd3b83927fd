//! The DHCP exchanges over a UDP socket bound to one link. The broadcast flag
//! is set so servers answer to 255.255.255.255, which reaches a socket on a
//! link that has no address yet.

use super::{decode, encode, Lease, MsgType, Request};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};
use tracing::{debug, warn};

#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    #[error("DHCP socket on {iface} failed")]
    Socket {
        iface: String,
        #[source]
        source: io::Error,
    },
    #[error("No DHCP answer on {iface} within {waited:?}")]
    NoAnswer { iface: String, waited: Duration },
    #[error("DHCP server {server} refused the lease")]
    Nak { server: Ipv4Addr },
}

/// A DHCP client on one link.
pub struct Client {
    sock: UdpSocket,
    iface: String,
    mac: [u8; 6],
    hostname: Option<String>,
    xid: u32,
    extended: bool,
}

/// A UDP socket on port 68 of one link. The device is bound before the
/// port, so a client on each link can hold port 68 at once (the kernel only
/// lets sockets share a port when each is bound to its own device).
fn link_socket(iface: &str) -> io::Result<UdpSocket> {
    // SAFETY: plain socket(2); the fd is checked, then owned by `sock`.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket nothing else owns.
    let sock = unsafe { UdpSocket::from_raw_fd(fd) };
    // SAFETY: the option value is the interface name's bytes, valid for the call.
    let rc = unsafe {
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, iface.as_ptr().cast(), iface.len() as u32)
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 68u16.to_be(),
        sin_addr: libc::in_addr { s_addr: 0 },
        sin_zero: [0; 8],
    };
    // SAFETY: `addr` is a valid sockaddr_in and its size is passed.
    let rc = unsafe { libc::bind(fd, (&addr as *const libc::sockaddr_in).cast(), std::mem::size_of::<libc::sockaddr_in>() as u32) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

impl Client {
    pub fn new(iface: &str, mac: [u8; 6], hostname: Option<String>) -> Result<Client, DhcpError> {
        let wrap = |source| DhcpError::Socket { iface: iface.to_string(), source };
        let sock = link_socket(iface).map_err(wrap)?;
        sock.set_broadcast(true).map_err(wrap)?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let seed = now.subsec_nanos() ^ u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]);
        Ok(Client { sock, iface: iface.to_string(), mac, hostname, xid: seed, extended: false })
    }

    /// Asks for the MTU, the search list and classless routes too.
    pub fn extended(mut self) -> Client {
        self.extended = true;
        self
    }

    pub fn iface(&self) -> &str {
        &self.iface
    }

    fn exchange(
        &mut self,
        req: &Request<'_>,
        to: Ipv4Addr,
        want: MsgType,
        deadline: Instant,
    ) -> Result<Lease, DhcpError> {
        let start = Instant::now();
        let mut wait = Duration::from_millis(500);
        let packet = encode(req);
        let mut buf = [0u8; 1500];
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(DhcpError::NoAnswer { iface: self.iface.clone(), waited: now - start });
            }
            self.sock
                .send_to(&packet, SocketAddrV4::new(to, 67))
                .map_err(|source| DhcpError::Socket { iface: self.iface.clone(), source })?;
            let resend_at = (now + wait).min(deadline);
            wait = (wait * 2).min(Duration::from_secs(8));
            while let Some(left) = resend_at.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
                let _ = self.sock.set_read_timeout(Some(left));
                let Ok((n, _)) = self.sock.recv_from(&mut buf) else { break };
                let reply = match decode(buf.get(..n).unwrap_or_default()) {
                    Ok(r) => r,
                    Err(e) => {
                        debug!("DHCP on {}: packet dropped: {e}", self.iface);
                        continue;
                    }
                };
                if reply.xid != req.xid || reply.mac != self.mac {
                    continue;
                }
                if reply.kind == MsgType::Nak {
                    return Err(DhcpError::Nak { server: reply.lease.server });
                }
                if reply.kind == want {
                    for why in &reply.ignored {
                        warn!("DHCP on {} from {}: {why}; left out", self.iface, reply.lease.server);
                    }
                    return Ok(reply.lease);
                }
            }
        }
    }

    /// DISCOVER, OFFER, REQUEST, ACK.
    pub fn acquire(&mut self, deadline: Instant) -> Result<Lease, DhcpError> {
        self.xid = self.xid.wrapping_add(1);
        let hostname = self.hostname.clone();
        let mut req = Request {
            kind: MsgType::Discover,
            xid: self.xid,
            mac: self.mac,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            requested: None,
            server: None,
            hostname: hostname.as_deref(),
            extended: self.extended,
        };
        let offer = self.exchange(&req, Ipv4Addr::BROADCAST, MsgType::Offer, deadline)?;
        req.kind = MsgType::Request;
        req.requested = Some(offer.addr);
        req.server = Some(offer.server);
        self.exchange(&req, Ipv4Addr::BROADCAST, MsgType::Ack, deadline)
    }

    /// Renews a lease in place (RENEWING when `to` is the server, REBINDING
    /// when it is the broadcast address).
    pub fn renew(&mut self, lease: &Lease, to: Ipv4Addr, deadline: Instant) -> Result<Lease, DhcpError> {
        self.xid = self.xid.wrapping_add(1);
        let hostname = self.hostname.clone();
        let req = Request {
            kind: MsgType::Request,
            xid: self.xid,
            mac: self.mac,
            ciaddr: lease.addr,
            requested: None,
            server: None,
            hostname: hostname.as_deref(),
            extended: self.extended,
        };
        self.exchange(&req, to, MsgType::Ack, deadline)
    }
}

