//! `[docker]`: the Docker engine, and what a `[cluster]` section implies for it.

use super::check::parse_cidr;
use super::walk::{At, Walk};
use super::{Cidr, Docker};

/// The keys of `[docker]`.
const KEYS: &[&str] = &["enabled", "address_pools", "pool_size"];

/// Reads `[docker]` (None when the document has none). A cluster member
/// runs the engine whatever the section says; saying `enabled = false`
/// beside a `[cluster]` is a mistake, named.
pub(super) fn check(w: &mut Walk<'_>, at: Option<At<'_>>, cluster: bool) -> Docker {
    let Some(at) = at else {
        return Docker { enabled: cluster, ..Docker::default() };
    };
    w.known_keys(at, KEYS);
    let enabled = w.boolean(at, "enabled");
    if enabled == Some(false) && cluster {
        let span = at.table.get("enabled").and_then(|i| i.span());
        w.problem(span, "docker.enabled", "false, but [cluster] needs the Docker engine: remove the key or the [cluster] section");
    }
    let mut address_pools = Vec::new();
    for (text, span, path) in w.strings(at, "address_pools") {
        match parse_cidr(&text) {
            Ok(c) if c.addr.is_ipv4() => address_pools.push(Cidr { addr: network_of(c), prefix: c.prefix }),
            Ok(_) => w.problem(span, &path, format!("{text:?}: only IPv4 pools (dockerd's bridge networks are IPv4 here)")),
            Err(m) => w.problem(span, &path, m),
        }
    }
    let pool_size = w.integer(at, "pool_size", 8, 30).map_or(Docker::default().pool_size, |n| n as u8);
    for pool in &address_pools {
        if pool.prefix > pool_size {
            let span = at.table.get("pool_size").and_then(|i| i.span()).or(at.range());
            w.problem(span, "docker.pool_size", format!("networks of /{pool_size} do not fit in the pool /{}", pool.prefix));
        }
    }
    Docker { enabled: enabled.unwrap_or(true) || cluster, address_pools, pool_size }
}

/// The pool's network address (`10.20.1.0/16` is `10.20.0.0/16`).
fn network_of(c: Cidr) -> std::net::IpAddr {
    match c.addr {
        std::net::IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(c.prefix)).unwrap_or(0);
            std::net::IpAddr::V4((u32::from(a) & mask).into())
        }
        v6 => v6,
    }
}
