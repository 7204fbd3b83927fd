//! The DHCP exchanges over a UDP socket bound to one link. The broadcast flag
//! is set so servers answer to 255.255.255.255, which reaches a socket on a
//! link that has no address yet.

use super::{decode, encode, Lease, MsgType, Request};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
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
}

fn bind_to_device(sock: &UdpSocket, iface: &str) -> io::Result<()> {
    // SAFETY: the option value is the interface name's bytes, valid for the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            iface.as_ptr().cast(),
            iface.len() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Client {
    pub fn new(iface: &str, mac: [u8; 6], hostname: Option<String>) -> Result<Client, DhcpError> {
        let wrap = |source| DhcpError::Socket { iface: iface.to_string(), source };
        let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68)).map_err(wrap)?;
        sock.set_broadcast(true).map_err(wrap)?;
        bind_to_device(&sock, iface).map_err(wrap)?;
        let seed = crate::sys::boottime_ms() as u32 ^ u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]);
        Ok(Client { sock, iface: iface.to_string(), mac, hostname, xid: seed })
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
        };
        self.exchange(&req, to, MsgType::Ack, deadline)
    }
}

