//! A DHCPv4 client (RFC 2131): the packet codec and the rules a lease must
//! meet here; the exchanges over a UDP socket are in [`client`].
//!
//! Everything in a reply comes from whoever answers on the link, so nothing
//! from it is trusted: option lengths are checked, names that end up in
//! line-based files (`resolv.conf`) must be plain DNS names, and lease times
//! are brought into an order the renewal loop can live with.
//!
//! cairn-init asks only for what its first link needs; cairn-netd also asks
//! for the MTU (26), the search list (119) and classless routes (121).

mod client;
mod options;
pub mod session;

pub use client::Client;
pub use options::{Route, MAX_SEARCH};

use std::net::Ipv4Addr;

const MAGIC: [u8; 4] = [99, 130, 83, 99];
const OPT_PAD: u8 = 0;
const OPT_SUBNET: u8 = 1;
const OPT_ROUTER: u8 = 3;
const OPT_DNS: u8 = 6;
const OPT_HOSTNAME: u8 = 12;
const OPT_DOMAIN: u8 = 15;
const OPT_MTU: u8 = 26;
const OPT_REQUESTED_IP: u8 = 50;
const OPT_LEASE: u8 = 51;
const OPT_MSG_TYPE: u8 = 53;
const OPT_SERVER_ID: u8 = 54;
const OPT_PARAMS: u8 = 55;
const OPT_T1: u8 = 58;
const OPT_T2: u8 = 59;
const OPT_CLIENT_ID: u8 = 61;
const OPT_SEARCH: u8 = 119;
const OPT_CLASSLESS: u8 = 121;
const OPT_END: u8 = 255;
/// What every client asks for.
const PARAMS: [u8; 8] = [OPT_SUBNET, OPT_ROUTER, OPT_DNS, OPT_HOSTNAME, OPT_DOMAIN, OPT_LEASE, OPT_T1, OPT_T2];
/// What an extended client asks for beside.
const EXTENDED_PARAMS: [u8; 3] = [OPT_MTU, OPT_SEARCH, OPT_CLASSLESS];

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
    /// Option 26: the link's MTU, 68 at least.
    pub mtu: Option<u16>,
    /// Option 119: the domain search list, each a plain DNS name.
    pub search: Vec<String>,
    /// Option 121: classless static routes. When the server sends them, RFC
    /// 3442 says they replace the router of option 3.
    pub routes: Vec<Route>,
}

impl Lease {
    /// The routes this lease sets: option 121's when there are any (a
    /// gateway of 0.0.0.0 is on the link), else a default route via the
    /// router. On-link routes come first, so the gateways behind them are
    /// reachable when their routes are added (a /32 lease).
    pub fn effective_routes(&self) -> Vec<Route> {
        if self.routes.is_empty() {
            let default = |gw| Route { dest: Ipv4Addr::UNSPECIFIED, prefix: 0, gateway: gw };
            return self.router.map(default).into_iter().collect();
        }
        let mut r = self.routes.clone();
        r.sort_by_key(|r| !r.gateway.is_unspecified());
        r
    }
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
    /// Ask for options 26, 119 and 121 too.
    pub extended: bool,
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
    let extra: &[u8] = if r.extended { &EXTENDED_PARAMS } else { &[] };
    p.extend_from_slice(&[OPT_PARAMS, (PARAMS.len() + extra.len()) as u8]);
    p.extend_from_slice(&PARAMS);
    p.extend_from_slice(extra);
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
    /// Options left out of the lease, and why (for the log).
    pub ignored: Vec<String>,
}

/// Why a packet is not a reply we can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("DHCP packet of {0} bytes is shorter than the 240 of a header with its magic cookie")]
    Short(usize),
    #[error("DHCP packet is not a server reply (op {0}, magic {1:02x?})")]
    NotReply(u8, [u8; 4]),
    #[error("DHCP option {code} is cut short: {len} bytes announced, {left} left")]
    Truncated { code: u8, len: usize, left: usize },
    #[error("DHCP option {code} has {len} bytes, {want}")]
    BadLength { code: u8, len: usize, want: &'static str },
    #[error("DHCP reply has no message type (option 53) or an unknown one")]
    NoType,
    #[error("DHCP subnet mask {0} is not a network mask (a run of leading ones, at least one)")]
    BadMask(Ipv4Addr),
    #[error("DHCP {kind:?} offers {addr}, which is not a unicast host address")]
    BadAddr { kind: MsgType, addr: Ipv4Addr },
}

/// The shortest lease we hold; a shorter one (0 included) is taken as this
/// long, so a server cannot make us add and drop the address in a busy loop.
pub const MIN_LEASE_SECS: u32 = 60;
/// The lease assumed when a server gives none (option 51 absent).
pub const DEFAULT_LEASE_SECS: u32 = 3600;
/// The earliest renewal after a lease is taken.
pub const MIN_RENEW_SECS: u32 = MIN_LEASE_SECS / 2;

/// Lease, T1 and T2 in the order RFC 2131 wants (`T1 <= T2 <= lease`), with
/// its defaults (T1 half the lease, T2 seven eighths) for a timer that is
/// absent (`0`) or out of order, and never below the minimums above.
pub fn lease_times(lease: u32, t1: u32, t2: u32) -> (u32, u32, u32) {
    let lease = lease.max(MIN_LEASE_SECS);
    let t2 = if t2 == 0 || t2 > lease { lease / 8 * 7 } else { t2 }.max(MIN_RENEW_SECS);
    let t1 = if t1 == 0 || t1 > t2 { (lease / 2).min(t2) } else { t1 }.max(MIN_RENEW_SECS);
    (lease, t1, t2)
}

/// The value of option 12 or 15 as a DNS name, or `None` when it is not one:
/// dot-separated labels of letters, digits and inner hyphens, 253 bytes at
/// most. Anything else (a space, a newline, a `#`) could add words or lines
/// to the file it is written into. Trailing NULs, which some servers send,
/// are dropped first.
pub fn dns_name(val: &[u8]) -> Option<String> {
    let end = val.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let name = val.get(..end)?;
    let name = name.strip_suffix(b".").unwrap_or(name);
    let label_ok = |l: &[u8]| {
        (1..=63).contains(&l.len())
            && l.first() != Some(&b'-')
            && l.last() != Some(&b'-')
            && l.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
    };
    if name.is_empty() || name.len() > 253 || !name.split(|&b| b == b'.').all(label_ok) {
        return None;
    }
    String::from_utf8(name.to_vec()).ok()
}

fn ip(b: &[u8]) -> Ipv4Addr {
    let mut o = [0u8; 4];
    for (d, s) in o.iter_mut().zip(b) {
        *d = *s;
    }
    Ipv4Addr::from(o)
}

fn exactly4(code: u8, val: &[u8]) -> Result<[u8; 4], DecodeError> {
    val.try_into().map_err(|_| DecodeError::BadLength { code, len: val.len(), want: "want exactly 4" })
}

/// A list of addresses: one or more, four bytes each.
fn addrs(code: u8, val: &[u8]) -> Result<Vec<Ipv4Addr>, DecodeError> {
    if val.is_empty() || val.len() % 4 != 0 {
        return Err(DecodeError::BadLength { code, len: val.len(), want: "want a non-zero multiple of 4" });
    }
    Ok(val.chunks_exact(4).map(ip).collect())
}

/// Whether a server may hand out `a` as a host's address or name it as a
/// router or name server.
fn unicast(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback())
}

/// Decodes a server message, checking every option it uses.
pub fn decode(p: &[u8]) -> Result<Reply, DecodeError> {
    let (Some(head), Some(magic)) = (p.get(..236), p.get(236..240)) else {
        return Err(DecodeError::Short(p.len()));
    };
    let magic: [u8; 4] = exactly4(0, magic)?;
    if head[0] != 2 || magic != MAGIC {
        return Err(DecodeError::NotReply(head[0], magic));
    }
    let xid = u32::from_be_bytes(exactly4(0, &head[4..8])?);
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&head[28..34]);
    let mut lease = Lease {
        addr: ip(&head[16..20]),
        prefix: 24,
        router: None,
        dns: Vec::new(),
        server: ip(&head[20..24]),
        lease_secs: DEFAULT_LEASE_SECS,
        t1_secs: 0,
        t2_secs: 0,
        hostname: None,
        domain: None,
        mtu: None,
        search: Vec::new(),
        routes: Vec::new(),
    };
    let mut kind = None;
    let mut ignored = Vec::new();
    // RFC 3396: a long option comes split in pieces of one code, joined here.
    let (mut search, mut classless) = (None::<Vec<u8>>, None::<Vec<u8>>);
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
        let (&len, rest) = rest.split_first().ok_or(DecodeError::Truncated { code, len: 1, left: 0 })?;
        let len = usize::from(len);
        if rest.len() < len {
            return Err(DecodeError::Truncated { code, len, left: rest.len() });
        }
        let (val, rest) = rest.split_at(len);
        opts = rest;
        let be32 = |v: &[u8]| exactly4(code, v).map(u32::from_be_bytes);
        match code {
            OPT_MSG_TYPE => kind = val.first().and_then(|&v| MsgType::from_u8(v)),
            OPT_SUBNET => {
                let mask = be32(val)?;
                if mask == 0 || mask.leading_ones() != mask.count_ones() {
                    return Err(DecodeError::BadMask(Ipv4Addr::from(mask)));
                }
                lease.prefix = mask.count_ones() as u8;
            }
            OPT_ROUTER => lease.router = addrs(code, val)?.into_iter().find(|a| unicast(*a)),
            OPT_DNS => lease.dns = addrs(code, val)?.into_iter().filter(|a| unicast(*a)).collect(),
            OPT_SERVER_ID => lease.server = ip(&exactly4(code, val)?),
            OPT_LEASE => lease.lease_secs = be32(val)?,
            OPT_T1 => lease.t1_secs = be32(val)?,
            OPT_T2 => lease.t2_secs = be32(val)?,
            OPT_HOSTNAME | OPT_DOMAIN => {
                let name = dns_name(val);
                if name.is_none() {
                    ignored.push(format!("option {code} {:?} is not a DNS name", String::from_utf8_lossy(val)));
                }
                if code == OPT_HOSTNAME {
                    lease.hostname = name;
                } else {
                    lease.domain = name;
                }
            }
            OPT_MTU => match val.try_into().map(u16::from_be_bytes) {
                Ok(m) if m >= 68 => lease.mtu = Some(m),
                _ => ignored.push(format!("option 26 {val:02x?} is not an MTU of 68 or more")),
            },
            OPT_SEARCH => search.get_or_insert_with(Vec::new).extend_from_slice(val),
            OPT_CLASSLESS => classless.get_or_insert_with(Vec::new).extend_from_slice(val),
            _ => {}
        }
    }
    if let Some(v) = search {
        match options::search_list(&v) {
            Ok(names) => lease.search = names,
            Err(why) => ignored.push(format!("option 119: {why}")),
        }
    }
    if let Some(v) = classless {
        match options::classless_routes(&v) {
            Ok(routes) => lease.routes = routes,
            Err(why) => ignored.push(format!("option 121: {why}")),
        }
    }
    let kind = kind.ok_or(DecodeError::NoType)?;
    if matches!(kind, MsgType::Offer | MsgType::Ack) && !unicast(lease.addr) {
        return Err(DecodeError::BadAddr { kind, addr: lease.addr });
    }
    (lease.lease_secs, lease.t1_secs, lease.t2_secs) = lease_times(lease.lease_secs, lease.t1_secs, lease.t2_secs);
    Ok(Reply { kind, xid, mac, lease, ignored })
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
