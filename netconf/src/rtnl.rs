//! Link, address and route changes through rtnetlink: what cairn-init
//! needs for its first link (the top of the file), and what cairn-netd needs
//! besides (IPv6, any route, MTU, VLANs), which PID 1 never links in.

use crate::netlink::{
    self, attrs, read_cstr, Msg, MsgBuilder, NetlinkError, Socket, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use std::net::{IpAddr, Ipv4Addr};

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETADDR: u16 = 22;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_VLAN_ID: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;
const NLM_F_EXCL: u16 = 0x200;
const RTA_DST: u16 = 1;
const RTA_TABLE: u16 = 15;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const ARPHRD_ETHER: u16 = 1;
const RTPROT_STATIC: u8 = 4;
const RTPROT_DHCP: u8 = 16;

/// A network link as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub kind: u16,
    pub mac: Vec<u8>,
    pub mtu: Option<u32>,
    /// The parent's index (a VLAN's link).
    pub parent: Option<u32>,
}

impl Link {
    pub fn is_ethernet(&self) -> bool {
        self.kind == ARPHRD_ETHER && self.mac.len() == 6
    }
}

fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0] = libc::AF_UNSPEC as u8;
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..12].copy_from_slice(&flags.to_ne_bytes());
    h[12..16].copy_from_slice(&change.to_ne_bytes());
    h
}

/// A link from an RTM_NEWLINK message: ifinfomsg, then attributes.
pub fn parse_link(m: &Msg) -> Option<Link> {
    if m.kind != RTM_NEWLINK {
        return None;
    }
    let head = m.payload.get(..16)?;
    let kind = u16::from_ne_bytes([head[2], head[3]]);
    let index = u32::from_ne_bytes([head[4], head[5], head[6], head[7]]);
    let mut link = Link { index, name: String::new(), kind, mac: Vec::new(), mtu: None, parent: None };
    for (t, v) in attrs(&m.payload[16..]) {
        match t {
            IFLA_IFNAME => link.name = read_cstr(v),
            IFLA_ADDRESS => link.mac = v.to_vec(),
            IFLA_MTU => link.mtu = netlink::read_u32(v),
            IFLA_LINK => link.parent = netlink::read_u32(v),
            _ => {}
        }
    }
    Some(link)
}

pub struct Rtnl {
    sock: Socket,
}

impl Rtnl {
    pub fn open() -> std::io::Result<Rtnl> {
        Ok(Rtnl { sock: Socket::open(libc::NETLINK_ROUTE)? })
    }

    pub fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        let seq = self.sock.next_seq();
        let msg = MsgBuilder::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq)
            .header(&ifinfomsg(0, 0, 0))
            .finish();
        let mut links: Vec<Link> = self.sock.request(&msg, seq)?.iter().filter_map(parse_link).collect();
        links.sort_by_key(|l| l.index);
        Ok(links)
    }

    pub fn set_up(&mut self, index: u32) -> Result<(), NetlinkError> {
        let seq = self.sock.next_seq();
        let up = libc::IFF_UP as u32;
        let msg = MsgBuilder::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq)
            .header(&ifinfomsg(index, up, up))
            .finish();
        self.sock.request(&msg, seq).map(drop)
    }

    fn addr_msg(&mut self, kind: u16, flags: u16, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), NetlinkError> {
        let seq = self.sock.next_seq();
        let mut h = [0u8; 8];
        h[0] = libc::AF_INET as u8;
        h[1] = prefix;
        h[4..8].copy_from_slice(&index.to_ne_bytes());
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
        let bcast = Ipv4Addr::from(u32::from(addr) | !mask);
        let msg = MsgBuilder::new(kind, NLM_F_REQUEST | NLM_F_ACK | flags, seq)
            .header(&h)
            .attr(IFA_LOCAL, &addr.octets())
            .attr(IFA_ADDRESS, &addr.octets())
            .attr(IFA_BROADCAST, &bcast.octets())
            .finish();
        self.sock.request(&msg, seq).map(drop)
    }

    pub fn add_addr(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), NetlinkError> {
        self.addr_msg(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, index, addr, prefix)
    }

    pub fn del_addr(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), NetlinkError> {
        self.addr_msg(RTM_DELADDR, 0, index, addr, prefix)
    }

    /// Sets the default route through `gateway` on link `index`.
    pub fn set_default_route(&mut self, index: u32, gateway: Ipv4Addr, dhcp: bool) -> Result<(), NetlinkError> {
        let proto = if dhcp { RTPROT_DHCP } else { RTPROT_STATIC };
        self.route_msg(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, index, gateway, proto)
    }

    /// Removes the default route through `gateway` on link `index` (a DHCP
    /// server that stopped naming a router).
    pub fn del_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> Result<(), NetlinkError> {
        self.route_msg(RTM_DELROUTE, 0, index, gateway, RTPROT_DHCP)
    }

    fn route_msg(&mut self, kind: u16, flags: u16, index: u32, gateway: Ipv4Addr, proto: u8) -> Result<(), NetlinkError> {
        let seq = self.sock.next_seq();
        let mut h = [0u8; 12];
        h[0] = libc::AF_INET as u8;
        h[4] = libc::RT_TABLE_MAIN;
        h[5] = proto;
        h[6] = libc::RT_SCOPE_UNIVERSE;
        h[7] = libc::RTN_UNICAST;
        let msg = MsgBuilder::new(kind, NLM_F_REQUEST | NLM_F_ACK | flags, seq)
            .header(&h)
            .attr(RTA_GATEWAY, &gateway.octets())
            .attr_u32(RTA_OIF, index)
            .finish();
        self.sock.request(&msg, seq).map(drop)
    }
}

/// A route as cairn-netd sets it: to `dest/prefix` through `gateway`, or on
/// the link itself when there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    pub index: u32,
    pub dest: IpAddr,
    pub prefix: u8,
    pub gateway: Option<IpAddr>,
    /// Set by DHCP (rather than the config).
    pub dhcp: bool,
}

/// An address on a link, as the kernel lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    pub index: u32,
    pub addr: IpAddr,
    pub prefix: u8,
}

fn family(a: &IpAddr) -> u8 {
    if a.is_ipv4() {
        libc::AF_INET as u8
    } else {
        libc::AF_INET6 as u8
    }
}

fn octets(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

fn ip_from(family: u8, b: &[u8]) -> Option<IpAddr> {
    match family as i32 {
        libc::AF_INET => <[u8; 4]>::try_from(b).ok().map(|o| IpAddr::from(o)),
        libc::AF_INET6 => <[u8; 16]>::try_from(b).ok().map(|o| IpAddr::from(o)),
        _ => None,
    }
}

/// An address from an RTM_NEWADDR message: ifaddrmsg, then attributes.
pub fn parse_addr(m: &Msg) -> Option<Addr> {
    let head = m.payload.get(..8)?;
    let index = u32::from_ne_bytes([head[4], head[5], head[6], head[7]]);
    let addr = attrs(&m.payload[8..]).into_iter().find(|(t, _)| *t == IFA_ADDRESS).and_then(|(_, v)| ip_from(head[0], v))?;
    Some(Addr { index, addr, prefix: head[1] })
}

impl Rtnl {
    /// Any address, IPv4 or IPv6.
    pub fn add_ip(&mut self, index: u32, addr: IpAddr, prefix: u8) -> Result<(), NetlinkError> {
        match addr {
            IpAddr::V4(a) => self.add_addr(index, a, prefix),
            IpAddr::V6(_) => self.addr6_msg(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, index, addr, prefix),
        }
    }

    pub fn del_ip(&mut self, index: u32, addr: IpAddr, prefix: u8) -> Result<(), NetlinkError> {
        match addr {
            IpAddr::V4(a) => self.del_addr(index, a, prefix),
            IpAddr::V6(_) => self.addr6_msg(RTM_DELADDR, 0, index, addr, prefix),
        }
    }

    fn addr6_msg(&mut self, kind: u16, flags: u16, index: u32, addr: IpAddr, prefix: u8) -> Result<(), NetlinkError> {
        let seq = self.sock.next_seq();
        let mut h = [0u8; 8];
        h[0] = libc::AF_INET6 as u8;
        h[1] = prefix;
        h[4..8].copy_from_slice(&index.to_ne_bytes());
        let msg = MsgBuilder::new(kind, NLM_F_REQUEST | NLM_F_ACK | flags, seq).header(&h).attr(IFA_ADDRESS, &octets(&addr)).finish();
        self.sock.request(&msg, seq).map(drop)
    }

    /// Every address on every link.
    pub fn addrs(&mut self) -> Result<Vec<Addr>, NetlinkError> {
        let seq = self.sock.next_seq();
        let msg = MsgBuilder::new(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq).header(&[0u8; 8]).finish();
        Ok(self.sock.request(&msg, seq)?.iter().filter_map(parse_addr).collect())
    }

    /// Adds (or replaces) a route.
    pub fn add_route(&mut self, r: &RouteSpec) -> Result<(), NetlinkError> {
        self.any_route(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, r)
    }

    pub fn del_route(&mut self, r: &RouteSpec) -> Result<(), NetlinkError> {
        self.any_route(RTM_DELROUTE, 0, r)
    }

    fn any_route(&mut self, kind: u16, flags: u16, r: &RouteSpec) -> Result<(), NetlinkError> {
        let seq = self.sock.next_seq();
        let mut h = [0u8; 12];
        h[0] = family(&r.dest);
        h[1] = r.prefix;
        h[4] = libc::RT_TABLE_MAIN;
        h[5] = if r.dhcp { RTPROT_DHCP } else { RTPROT_STATIC };
        h[6] = if r.gateway.is_some() { libc::RT_SCOPE_UNIVERSE } else { libc::RT_SCOPE_LINK };
        h[7] = libc::RTN_UNICAST;
        let mut b = MsgBuilder::new(kind, NLM_F_REQUEST | NLM_F_ACK | flags, seq).header(&h);
        if r.prefix > 0 {
            b = b.attr(RTA_DST, &octets(&r.dest));
        }
        if let Some(gw) = &r.gateway {
            b = b.attr(RTA_GATEWAY, &octets(gw));
        }
        let msg = b.attr_u32(RTA_OIF, r.index).attr_u32(RTA_TABLE, u32::from(libc::RT_TABLE_MAIN)).finish();
        self.sock.request(&msg, seq).map(drop)
    }

    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        let seq = self.sock.next_seq();
        let msg = MsgBuilder::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq)
            .header(&ifinfomsg(index, 0, 0))
            .attr_u32(IFLA_MTU, mtu)
            .finish();
        self.sock.request(&msg, seq).map(drop)
    }

    /// Creates VLAN `id` named `name` on link `parent`.
    pub fn add_vlan(&mut self, name: &str, parent: u32, id: u16) -> Result<(), NetlinkError> {
        let seq = self.sock.next_seq();
        let data = MsgBuilder::nested().attr(IFLA_VLAN_ID, &id.to_ne_bytes()).into_attrs();
        let info = MsgBuilder::nested().attr_str(IFLA_INFO_KIND, "vlan").attr(IFLA_INFO_DATA | NLA_F_NESTED, &data).into_attrs();
        let msg = MsgBuilder::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, seq)
            .header(&ifinfomsg(0, 0, 0))
            .attr_str(IFLA_IFNAME, name)
            .attr_u32(IFLA_LINK, parent)
            .attr(IFLA_LINKINFO | NLA_F_NESTED, &info)
            .finish();
        self.sock.request(&msg, seq).map(drop)
    }

    pub fn del_link(&mut self, index: u32) -> Result<(), NetlinkError> {
        let seq = self.sock.next_seq();
        let msg = MsgBuilder::new(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, seq).header(&ifinfomsg(index, 0, 0)).finish();
        self.sock.request(&msg, seq).map(drop)
    }
}
