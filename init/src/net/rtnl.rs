//! Link, address and route changes through rtnetlink.

use super::netlink::{
    attrs, read_cstr, Msg, MsgBuilder, NetlinkError, Socket, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use std::net::Ipv4Addr;

const RTM_NEWLINK: u16 = 16;
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
    let mut link = Link { index, name: String::new(), kind, mac: Vec::new() };
    for (t, v) in attrs(&m.payload[16..]) {
        match t {
            IFLA_IFNAME => link.name = read_cstr(v),
            IFLA_ADDRESS => link.mac = v.to_vec(),
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
