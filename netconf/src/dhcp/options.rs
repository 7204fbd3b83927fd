//! The two DHCP options with an inner format: the domain search list (119,
//! RFC 3397: DNS wire names, compressed) and classless static routes (121,
//! RFC 3442). Both arrive from whoever answers on the link; a malformed one
//! is refused whole with the reason, never half read.

use super::dns_name;
use std::net::Ipv4Addr;

/// A route from option 121. A gateway of 0.0.0.0 means the destination is
/// on the link itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub dest: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
}

/// The most names a search list keeps (resolv.conf reads six).
pub const MAX_SEARCH: usize = 6;

/// Option 119: names in DNS wire form, where a name may end in a pointer to
/// an earlier offset of the (joined) option. Every name must be a plain DNS
/// name; pointers may only point backwards, so a loop cannot be built.
pub fn search_list(v: &[u8]) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut at = 0;
    while at < v.len() {
        let (name, next) = wire_name(v, at)?;
        let name = dns_name(name.as_bytes()).ok_or_else(|| format!("{name:?} at offset {at} is not a DNS name"))?;
        if names.len() < MAX_SEARCH && !names.contains(&name) {
            names.push(name);
        }
        at = next;
    }
    Ok(names)
}

/// One name starting at `start`, and the offset after it (after its first
/// pointer, when it has one).
fn wire_name(v: &[u8], start: usize) -> Result<(String, usize), String> {
    let mut labels: Vec<String> = Vec::new();
    let mut at = start;
    let mut end = None;
    loop {
        let &len = v.get(at).ok_or_else(|| format!("the name at offset {start} runs past the option"))?;
        match len {
            0 => {
                end.get_or_insert(at + 1);
                break;
            }
            l if l & 0xc0 == 0xc0 => {
                let lo = *v.get(at + 1).ok_or_else(|| format!("a pointer at offset {at} is cut short"))?;
                let target = (usize::from(l & 0x3f) << 8) | usize::from(lo);
                if target >= at {
                    return Err(format!("the pointer at offset {at} points forward, to {target}"));
                }
                end.get_or_insert(at + 2);
                at = target;
            }
            l if l & 0xc0 != 0 => return Err(format!("label length {l:#04x} at offset {at} is not a length or a pointer")),
            l => {
                let label = v.get(at + 1..at + 1 + usize::from(l)).ok_or_else(|| format!("the label at offset {at} runs past the option"))?;
                labels.push(String::from_utf8_lossy(label).into_owned());
                if labels.iter().map(|l| l.len() + 1).sum::<usize>() > 254 {
                    return Err(format!("the name at offset {start} is longer than 253 bytes"));
                }
                at += 1 + usize::from(l);
            }
        }
    }
    Ok((labels.join("."), end.unwrap_or(at + 1)))
}

/// Option 121: (prefix length, the significant bytes of the destination,
/// the gateway), repeated. Bits past the prefix must be zero.
pub fn classless_routes(v: &[u8]) -> Result<Vec<Route>, String> {
    let mut routes = Vec::new();
    let mut rest = v;
    while let Some((&prefix, tail)) = rest.split_first() {
        if prefix > 32 {
            return Err(format!("prefix length {prefix} is more than 32"));
        }
        let n = usize::from(prefix).div_ceil(8);
        let (Some(dest), Some(gw)) = (tail.get(..n), tail.get(n..n + 4)) else {
            return Err(format!("the route to a /{prefix} is cut short"));
        };
        let mut d = [0u8; 4];
        d[..n].copy_from_slice(dest);
        let dest = Ipv4Addr::from(d);
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
        if u32::from(dest) & !mask != 0 {
            return Err(format!("{dest}/{prefix} has bits set past its prefix"));
        }
        let gateway = Ipv4Addr::new(gw[0], gw[1], gw[2], gw[3]);
        if gateway.is_broadcast() || gateway.is_multicast() || gateway.is_loopback() {
            return Err(format!("gateway {gateway} of {dest}/{prefix} is not a unicast address"));
        }
        routes.push(Route { dest, prefix, gateway });
        rest = &tail[n + 4..];
    }
    Ok(routes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A name in wire form, uncompressed.
    pub(crate) fn wire(name: &str) -> Vec<u8> {
        let mut v = Vec::new();
        for l in name.split('.') {
            v.push(l.len() as u8);
            v.extend_from_slice(l.as_bytes());
        }
        v.push(0);
        v
    }

    #[test]
    fn reads_the_rfc_3397_example_with_its_pointer() {
        // "eng.apple.com", then "marketing" and a pointer to "apple.com".
        let mut v = wire("eng.apple.com");
        v.push(9);
        v.extend_from_slice(b"marketing");
        v.extend_from_slice(&[0xc0, 4]);
        assert_eq!(search_list(&v).unwrap(), ["eng.apple.com", "marketing.apple.com"]);
    }

    #[test]
    fn refuses_forward_pointers_loops_and_bad_names() {
        assert!(search_list(&[0xc0, 0]).unwrap_err().contains("points forward"));
        assert!(search_list(&[3, b'a', b'b']).unwrap_err().contains("runs past"));
        assert!(search_list(&[0x40, 0]).unwrap_err().contains("not a length"));
        assert!(search_list(&wire("a b.example")).unwrap_err().contains("not a DNS name"));
        assert!(search_list(&[0]).unwrap_err().contains("not a DNS name"), "an empty name");
    }

    #[test]
    fn reads_classless_routes_of_every_width() {
        let v = [0, 10, 0, 2, 1, 32, 10, 128, 0, 1, 0, 0, 0, 0, 24, 192, 168, 9, 10, 0, 2, 2, 9, 10, 128, 10, 0, 2, 3];
        let r = classless_routes(&v).unwrap();
        let route = |d: [u8; 4], p, g: [u8; 4]| Route { dest: d.into(), prefix: p, gateway: g.into() };
        assert_eq!(
            r,
            [
                route([0, 0, 0, 0], 0, [10, 0, 2, 1]),
                route([10, 128, 0, 1], 32, [0, 0, 0, 0]),
                route([192, 168, 9, 0], 24, [10, 0, 2, 2]),
                route([10, 128, 0, 0], 9, [10, 0, 2, 3]),
            ]
        );
    }

    #[test]
    fn refuses_classless_routes_that_are_cut_short_or_wrong() {
        assert!(classless_routes(&[33, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err().contains("more than 32"));
        assert!(classless_routes(&[24, 10, 0]).unwrap_err().contains("cut short"));
        assert!(classless_routes(&[8, 10, 1, 2, 3]).unwrap_err().contains("cut short"));
        assert!(classless_routes(&[7, 11, 10, 0, 2, 1]).unwrap_err().contains("past its prefix"));
        assert!(classless_routes(&[0, 255, 255, 255, 255]).unwrap_err().contains("not a unicast"));
        assert_eq!(classless_routes(&[]), Ok(vec![]));
    }
}
