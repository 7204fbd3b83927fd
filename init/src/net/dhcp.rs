//! A DHCPv4 client (RFC 2131): the packet codec, and the exchanges over a UDP
//! socket bound to one link. The broadcast flag is set so servers answer to
//! 255.255.255.255, which reaches a socket on a link that has no address yet.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const MAGIC: [u8; 4] = [99, 130, 83, 99];
const OPT_PAD: u8 = 0;
const OPT_SUBNET: u8 = 1;
const OPT_ROUTER: u8 = 3;
const OPT_DNS: u8 = 6;
const OPT_HOSTNAME: u8 = 12;
const OPT_DOMAIN: u8 = 15;
const OPT_REQUESTED_IP: u8 = 50;
const OPT_LEASE: u8 = 51;
const OPT_MSG_TYPE: u8 = 53;
const OPT_SERVER_ID: u8 = 54;
const OPT_PARAMS: u8 = 55;
const OPT_T1: u8 = 58;
const OPT_T2: u8 = 59;
const OPT_CLIENT_ID: u8 = 61;
const OPT_END: u8 = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
}

impl MsgType {
    fn from_u8(v: u8) -> Option<MsgType> {
        Some(match v {
            1 => MsgType::Discover,
            2 => MsgType::Offer,
            3 => MsgType::Request,
            4 => MsgType::Decline,
            5 => MsgType::Ack,
            6 => MsgType::Nak,
            7 => MsgType::Release,
            _ => return None,
        })
    }
}

/// What a server offered or acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub server: Ipv4Addr,
    pub lease_secs: u32,
    pub t1_secs: u32,
    pub t2_secs: u32,
    pub hostname: Option<String>,
    pub domain: Option<String>,
}

/// A client message.
pub struct Request<'a> {
    pub kind: MsgType,
    pub xid: u32,
    pub mac: [u8; 6],
    pub ciaddr: Ipv4Addr,
    pub requested: Option<Ipv4Addr>,
    pub server: Option<Ipv4Addr>,
    pub hostname: Option<&'a str>,
}

pub fn encode(r: &Request<'_>) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[0] = 1; // BOOTREQUEST
    p[1] = 1; // Ethernet
    p[2] = 6;
    p[4..8].copy_from_slice(&r.xid.to_be_bytes());
    if r.ciaddr.is_unspecified() {
        p[10] = 0x80; // broadcast flag: we cannot receive unicast yet
    }
    p[12..16].copy_from_slice(&r.ciaddr.octets());
    p[28..34].copy_from_slice(&r.mac);
    p.extend_from_slice(&MAGIC);
    p.extend_from_slice(&[OPT_MSG_TYPE, 1, r.kind as u8]);
    let mut cid = vec![1u8];
    cid.extend_from_slice(&r.mac);
    p.extend_from_slice(&[OPT_CLIENT_ID, cid.len() as u8]);
    p.extend_from_slice(&cid);
    if let Some(ip) = r.requested {
        p.extend_from_slice(&[OPT_REQUESTED_IP, 4]);
        p.extend_from_slice(&ip.octets());
    }
    if let Some(ip) = r.server {
        p.extend_from_slice(&[OPT_SERVER_ID, 4]);
        p.extend_from_slice(&ip.octets());
    }
    if let Some(h) = r.hostname {
        let h = &h.as_bytes()[..h.len().min(255)];
        p.extend_from_slice(&[OPT_HOSTNAME, h.len() as u8]);
        p.extend_from_slice(h);
    }
    p.extend_from_slice(&[
        OPT_PARAMS, 8, OPT_SUBNET, OPT_ROUTER, OPT_DNS, OPT_HOSTNAME, OPT_DOMAIN, OPT_LEASE, OPT_T1, OPT_T2,
    ]);
    p.push(OPT_END);
    // Some servers drop requests shorter than a BOOTP packet.
    if p.len() < 300 {
        p.resize(300, OPT_PAD);
    }
    p
}

/// A server reply, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: MsgType,
    pub xid: u32,
    pub mac: [u8; 6],
    pub lease: Lease,
}

fn ip(b: &[u8]) -> Option<Ipv4Addr> {
    Some(Ipv4Addr::new(*b.first()?, *b.get(1)?, *b.get(2)?, *b.get(3)?))
}

fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

/// Decodes a server message; `None` for anything that is not a valid reply.
pub fn decode(p: &[u8]) -> Option<Reply> {
    if p.len() < 240 || p[0] != 2 || p[236..240] != MAGIC {
        return None;
    }
    let xid = be32(&p[4..8])?;
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&p[28..34]);
    let mut lease = Lease {
        addr: ip(&p[16..20])?,
        prefix: 24,
        router: None,
        dns: Vec::new(),
        server: ip(&p[20..24])?,
        lease_secs: 3600,
        t1_secs: 0,
        t2_secs: 0,
        hostname: None,
        domain: None,
    };
    let mut kind = None;
    let mut opts = &p[240..];
    while let Some((&code, rest)) = opts.split_first() {
        match code {
            OPT_PAD => {
                opts = rest;
                continue;
            }
            OPT_END => break,
            _ => {}
        }
        let (&len, rest) = rest.split_first()?;
        let val = rest.get(..len as usize)?;
        opts = &rest[len as usize..];
        match code {
            OPT_MSG_TYPE => kind = val.first().and_then(|&v| MsgType::from_u8(v)),
            OPT_SUBNET => lease.prefix = be32(val)?.count_ones() as u8,
            OPT_ROUTER => lease.router = ip(val),
            OPT_DNS => lease.dns = val.chunks_exact(4).filter_map(ip).collect(),
            OPT_SERVER_ID => lease.server = ip(val)?,
            OPT_LEASE => lease.lease_secs = be32(val)?,
            OPT_T1 => lease.t1_secs = be32(val)?,
            OPT_T2 => lease.t2_secs = be32(val)?,
            OPT_HOSTNAME => lease.hostname = Some(String::from_utf8_lossy(val).into_owned()),
            OPT_DOMAIN => lease.domain = Some(String::from_utf8_lossy(val).into_owned()),
            _ => {}
        }
    }
    if lease.t1_secs == 0 {
        lease.t1_secs = lease.lease_secs / 2;
    }
    if lease.t2_secs == 0 {
        lease.t2_secs = lease.lease_secs / 8 * 7;
    }
    Some(Reply { kind: kind?, xid, mac, lease })
}

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
                let Some(reply) = decode(&buf[..n]) else { continue };
                if reply.xid != req.xid || reply.mac != self.mac {
                    continue;
                }
                if reply.kind == MsgType::Nak {
                    return Err(DhcpError::Nak { server: reply.lease.server });
                }
                if reply.kind == want {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn server_reply(kind: u8, xid: u32, mac: [u8; 6]) -> Vec<u8> {
        let mut p = vec![0u8; 236];
        p[0] = 2;
        p[4..8].copy_from_slice(&xid.to_be_bytes());
        p[16..20].copy_from_slice(&[10, 0, 2, 15]);
        p[28..34].copy_from_slice(&mac);
        p.extend_from_slice(&MAGIC);
        p.extend_from_slice(&[OPT_MSG_TYPE, 1, kind]);
        p.extend_from_slice(&[OPT_SUBNET, 4, 255, 255, 255, 0]);
        p.extend_from_slice(&[OPT_ROUTER, 4, 10, 0, 2, 2]);
        p.extend_from_slice(&[OPT_DNS, 8, 10, 0, 2, 3, 1, 1, 1, 1]);
        p.extend_from_slice(&[OPT_SERVER_ID, 4, 10, 0, 2, 2]);
        p.extend_from_slice(&[OPT_LEASE, 4, 0, 1, 81, 128]);
        p.extend_from_slice(&[OPT_PAD, OPT_DOMAIN, 7]);
        p.extend_from_slice(b"example");
        p.push(OPT_END);
        p
    }

    #[test]
    fn decodes_a_full_ack() {
        let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        let r = decode(&server_reply(5, 77, mac)).unwrap();
        assert_eq!(r.kind, MsgType::Ack);
        assert_eq!((r.xid, r.mac), (77, mac));
        let l = r.lease;
        assert_eq!((l.addr, l.prefix), (Ipv4Addr::new(10, 0, 2, 15), 24));
        assert_eq!(l.router, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(l.dns, [Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(1, 1, 1, 1)]);
        assert_eq!((l.lease_secs, l.t1_secs, l.t2_secs), (86400, 43200, 75600));
        assert_eq!(l.domain.as_deref(), Some("example"));
    }

    #[test]
    fn rejects_requests_truncation_and_garbage() {
        let mac = [2, 0, 0, 0, 0, 1];
        let mut p = server_reply(2, 1, mac);
        p[0] = 1;
        assert!(decode(&p).is_none(), "a BOOTREQUEST is not a reply");
        let p = server_reply(2, 1, mac);
        assert!(decode(&p[..250]).is_none(), "an option cut short");
        assert!(decode(&[0u8; 100]).is_none());
    }

    #[test]
    fn encodes_discover_with_broadcast_flag_and_options() {
        let p = encode(&Request {
            kind: MsgType::Discover,
            xid: 0x01020304,
            mac: [2, 0, 0, 0, 0, 1],
            ciaddr: Ipv4Addr::UNSPECIFIED,
            requested: Some(Ipv4Addr::new(10, 0, 2, 15)),
            server: None,
            hostname: Some("node"),
        });
        assert!(p.len() >= 300);
        assert_eq!(&p[4..8], &[1, 2, 3, 4]);
        assert_eq!(p[10], 0x80);
        assert_eq!(&p[236..240], &MAGIC);
        assert_eq!(&p[240..243], &[OPT_MSG_TYPE, 1, 1]);
        let opts = &p[240..];
        assert!(opts.windows(6).any(|w| w == [OPT_REQUESTED_IP, 4, 10, 0, 2, 15]));
        assert!(opts.windows(6).any(|w| w == [OPT_HOSTNAME, 4, b'n', b'o', b'd', b'e']));
    }
}
