//! The rules of the machine config, key by key. Every check records its
//! problem and carries on, so one pass finds them all.

use super::walk::{join, line_col, At, Walk};
use super::*;
use std::ops::Range;
use std::str::FromStr;

const TOP: &[&str] =
    &["version", "hostname", "network", "time", "services", "update", "cluster", "docker", "access", "api", "logs", "metrics", "sysctl", "modules"];
const ADDRESSING: &[&str] = &["dhcp", "addresses", "gateway", "routes", "mtu"];
const DAYS: &[&str] = &["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];
const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

pub(super) fn check(text: &str, source: &str) -> Result<MachineConfig, Problems> {
    let mut w = Walk::new(text, source);
    let doc = match toml_edit::ImDocument::parse(text) {
        Ok(d) => d,
        Err(e) => {
            let (line, column) = line_col(text, e.span().map_or(0, |s| s.start));
            let message = crate::locate::toml_message(text, e.message(), e.span().map(|s| s.start));
            return Err(Problems(vec![Problem {
                source: source.to_string(),
                line,
                column,
                key: String::new(),
                message: format!("not valid TOML: {message}"),
            }]));
        }
    };
    let root = At { table: doc.as_table(), span: None, path: "" };
    w.known_keys(root, TOP);
    match w.integer(root, "version", 0, i64::MAX) {
        Some(VERSION) => {}
        Some(v) => w.problem(doc.get("version").and_then(|i| i.span()), "version", format!("this Cairn reads version {VERSION}, not {v}")),
        None if doc.get("version").is_none() => w.problem(None, "version", format!("missing (write `version = {VERSION}` first)")),
        None => {}
    }
    let hostname = w.string(root, "hostname").and_then(|(h, span, path)| {
        check_hostname(&h).map_err(|m| w.problem(span, &path, m)).ok().map(|()| h)
    });
    let network = w.table(root, "network", "network").map(|t| network(&mut w, t)).unwrap_or_default();
    let time = w.table(root, "time", "time").map(|t| time(&mut w, t)).unwrap_or_default();
    let services = w.table(root, "services", "services").map(|t| services(&mut w, t)).unwrap_or_default();
    let update = match w.table(root, "update", "update") {
        Some(t) => update(&mut w, t),
        None => Update { repository: None, channel: Channel::Stable, policy: UpdatePolicy::Manual, window: None, check_every: DEFAULT_CHECK },
    };
    let cluster = w.table(root, "cluster", "cluster").and_then(|t| cluster(&mut w, t));
    let docker_at = w.table(root, "docker", "docker");
    let docker = super::docker::check(&mut w, docker_at, doc.get("cluster").is_some());
    let access = w.table(root, "access", "access").map(|t| access(&mut w, t)).unwrap_or_default();
    let api = w.table(root, "api", "api").map(|t| api(&mut w, t)).unwrap_or_default();
    let logs = match w.table(root, "logs", "logs") {
        Some(t) => logs(&mut w, t),
        None => Logs { level: "info".into(), max_file_kb: 1024 },
    };
    let metrics = w.table(root, "metrics", "metrics").map(|t| metrics(&mut w, t)).unwrap_or_default();
    let sysctl = w.table(root, "sysctl", "sysctl").map(|t| sysctl(&mut w, t)).unwrap_or_default();
    let mut modules = Vec::new();
    for (m, span, path) in w.strings(root, "modules") {
        if m.is_empty() || m.len() > 55 || !m.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            w.problem(span, &path, format!("{m:?} is not a module name (letters, digits, _ and -)"));
        } else {
            modules.push(m);
        }
    }
    if !w.problems.is_empty() {
        let mut problems = w.problems;
        problems.sort_by_key(|p| (p.line, p.column));
        return Err(Problems(problems));
    }
    Ok(MachineConfig { hostname, network, time, services, update, cluster, docker, access, api, logs, metrics, sysctl, modules })
}

/// RFC 1123: dot-separated labels of letters, digits and inner hyphens.
pub(crate) fn check_hostname(h: &str) -> Result<(), String> {
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("{h:?} is not a host name (labels of letters, digits and inner hyphens, each at most 63, at most 253 in all)"))
    }
}

pub(super) fn parse_cidr(text: &str) -> Result<Cidr, String> {
    let bad = || format!("{text:?} is not ADDRESS/PREFIX (e.g. 10.0.2.50/24)");
    let (a, p) = text.split_once('/').ok_or_else(bad)?;
    let addr = IpAddr::from_str(a).map_err(|_| bad())?;
    let prefix: u8 = p.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(format!("{text:?}: the prefix is at most {max}"));
    }
    Ok(Cidr { addr, prefix })
}

fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = text.split(':').collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!("{text:?} is not a MAC address (six hex pairs: 52:54:00:12:34:56)"));
    }
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return Err(format!("{text:?} is not a MAC address (six hex pairs: 52:54:00:12:34:56)"));
        }
        mac[i] = u8::from_str_radix(p, 16).map_err(|_| format!("{text:?} is not a MAC address (six hex pairs)"))?;
    }
    Ok(mac)
}

fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 || name == "." || name == ".." || name.bytes().any(|b| b == b'/' || b <= b' ' || b >= 0x7f) {
        return Err(format!("{name:?} is not a link name (1 to 15 printable bytes, no / or spaces)"));
    }
    Ok(())
}

fn ip(w: &mut Walk<'_>, at: At<'_>, key: &str) -> Option<IpAddr> {
    let (s, span, path) = w.string(at, key)?;
    IpAddr::from_str(&s).map_err(|_| w.problem(span, &path, format!("{s:?} is not an IP address"))).ok()
}

fn addressing(w: &mut Walk<'_>, at: At<'_>) -> Addressing {
    let mut addresses = Vec::new();
    for (s, span, path) in w.strings(at, "addresses") {
        match parse_cidr(&s) {
            Ok(c) => addresses.push(c),
            Err(m) => w.problem(span, &path, m),
        }
    }
    let dhcp = w.boolean(at, "dhcp").unwrap_or(addresses.is_empty());
    let gateway = ip(w, at, "gateway");
    let mut routes = Vec::new();
    for (path, t, span) in w.tables(at, "routes") {
        let r = At { table: t, span: span.as_ref().map(|s| s.start), path: &path };
        w.known_keys(r, &["to", "via"]);
        let to = w.string(r, "to").and_then(|(s, span, p)| parse_cidr(&s).map_err(|m| w.problem(span, &p, m)).ok());
        let via = ip(w, r, "via");
        if r.table.get("to").is_none() || r.table.get("via").is_none() {
            w.problem(span.clone(), &path, "a route needs both `to` and `via`");
        }
        match (to, via) {
            (Some(to), Some(via)) if to.addr.is_ipv4() != via.is_ipv4() => {
                w.problem(span, &path, format!("`via` {via} and `to` {}/{} are not of one address family", to.addr, to.prefix));
            }
            (Some(to), Some(via)) => routes.push(Route { to, via }),
            _ => {}
        }
    }
    let mtu = w.integer(at, "mtu", 68, 9216).map(|m| m as u16);
    if !dhcp && addresses.is_empty() && (gateway.is_some() || !routes.is_empty()) {
        w.problem(at.range(), at.path, "a gateway or routes with neither dhcp nor addresses cannot be reached");
    } else if let Some(g) = gateway {
        let same_family = addresses.iter().any(|c| c.addr.is_ipv4() == g.is_ipv4());
        if !same_family && !(g.is_ipv4() && dhcp) {
            let why = if g.is_ipv4() { "an IPv4 address or dhcp" } else { "an IPv6 address (there is no DHCPv6)" };
            let span = at.table.get("gateway").and_then(super::walk::span_of);
            w.problem(span, &join(at.path, "gateway"), format!("gateway {g} needs {why} on the same link"));
        }
    }
    Addressing { dhcp, addresses, gateway, routes, mtu }
}

fn network(w: &mut Walk<'_>, at: At<'_>) -> Network {
    w.known_keys(at, &["links", "vlans", "dns", "search"]);
    let mut links = Vec::new();
    for (path, t, span) in w.tables(at, "links") {
        let l = At { table: t, span: span.as_ref().map(|s| s.start), path: &path };
        let mut known = vec!["name", "mac"];
        known.extend_from_slice(ADDRESSING);
        w.known_keys(l, &known);
        let name = w.string(l, "name");
        let mac = w.string(l, "mac");
        let matches = match (name, mac) {
            (Some((n, span, p)), None) => check_ifname(&n).map_err(|m| w.problem(span, &p, m)).ok().map(|()| LinkMatch::Name(n)),
            (None, Some((m, span, p))) => parse_mac(&m).map_err(|e| w.problem(span, &p, e)).ok().map(LinkMatch::Mac),
            (Some(_), Some(_)) => {
                w.problem(span.clone(), &path, "give either `name` or `mac`, not both");
                None
            }
            (None, None) if t.get("name").is_none() && t.get("mac").is_none() => {
                w.problem(span.clone(), &path, "missing: `name` or `mac` says which link this is");
                None
            }
            (None, None) => None,
        };
        let addressing = addressing(w, l);
        if let Some(matches) = matches {
            if let Some(first) = links.iter().position(|k: &Link| k.matches == matches) {
                w.problem(span.clone(), &path, format!("picks the same link as network.links[{first}]"));
            }
            links.push(Link { matches, addressing });
        }
    }
    let mut vlans = Vec::new();
    for (path, t, span) in w.tables(at, "vlans") {
        let v = At { table: t, span: span.as_ref().map(|s| s.start), path: &path };
        let mut known = vec!["name", "link", "id"];
        known.extend_from_slice(ADDRESSING);
        w.known_keys(v, &known);
        let name = named(w, v, "name");
        let link = named(w, v, "link");
        let id = w.integer(v, "id", 1, 4094);
        if t.get("id").is_none() {
            w.problem(span.clone(), &join(&path, "id"), "missing: the VLAN id, 1 to 4094");
        }
        let addressing = addressing(w, v);
        if let (Some(name), Some(link), Some(id)) = (name, link, id) {
            let id = id as u16;
            let taken = vlans.iter().position(|v: &Vlan| v.name == name).map(|i| format!("network.vlans[{i}] has that name"))
                .or_else(|| vlans.iter().position(|v| v.link == link && v.id == id).map(|i| format!("network.vlans[{i}] is VLAN {id} on {link} already")))
                .or_else(|| links.iter().position(|l| l.matches == LinkMatch::Name(name.clone())).map(|i| format!("network.links[{i}] is a link of that name")));
            if let Some(why) = taken {
                w.problem(span.clone(), &path, format!("VLAN {name:?}: {why}"));
            }
            vlans.push(Vlan { name, link, id, addressing });
        }
    }
    let mut dns = Vec::new();
    for (s, span, path) in w.strings(at, "dns") {
        match IpAddr::from_str(&s) {
            Ok(a) => dns.push(a),
            Err(_) => w.problem(span, &path, format!("{s:?} is not an IP address")),
        }
    }
    let mut search = Vec::new();
    for (s, span, path) in w.strings(at, "search") {
        match check_hostname(&s) {
            Ok(()) => search.push(s),
            Err(m) => w.problem(span, &path, m.replace("host name", "domain")),
        }
    }
    Network { links, vlans, dns, search }
}

/// A required link name.
fn named(w: &mut Walk<'_>, at: At<'_>, key: &str) -> Option<String> {
    let Some((n, span, path)) = w.string(at, key) else {
        if at.table.get(key).is_none() {
            w.problem(at.range(), &join(at.path, key), "missing: a link name");
        }
        return None;
    };
    check_ifname(&n).map_err(|m| w.problem(span, &path, m)).ok().map(|()| n)
}

fn time(w: &mut Walk<'_>, at: At<'_>) -> Time {
    w.known_keys(at, &["ntp"]);
    let mut ntp = Vec::new();
    for (s, span, path) in w.strings(at, "ntp") {
        if IpAddr::from_str(&s).is_ok() || check_hostname(&s).is_ok() {
            ntp.push(s);
        } else {
            w.problem(span, &path, format!("{s:?} is neither a host name nor an IP address"));
        }
    }
    Time { ntp }
}

fn services(w: &mut Walk<'_>, at: At<'_>) -> Services {
    w.known_keys(at, &["enable", "disable", "add"]);
    let names = |w: &mut Walk<'_>, key: &str| -> Vec<(String, Option<Range<usize>>, String)> {
        let mut out = Vec::new();
        for (s, span, path) in w.strings(at, key) {
            if crate::service::check_name(&s).is_err() {
                w.problem(span, &path, format!("{s:?} is not a service name"));
            } else {
                out.push((s, span, path));
            }
        }
        out
    };
    let enable = names(w, "enable");
    let disable = names(w, "disable");
    for (s, span, path) in &disable {
        if enable.iter().any(|(e, _, _)| e == s) {
            w.problem(span.clone(), path, format!("{s:?} is both enabled and disabled"));
        }
    }
    let mut add = BTreeMap::new();
    let mut add_toml = BTreeMap::new();
    if let Some(t) = w.table(at, "add", "services.add") {
        for (name, item) in t.table.iter() {
            let path = join("services.add", name);
            let span = t.table.key(name).and_then(|k| k.span());
            let Some(spec) = item.as_table_like() else {
                w.problem(span, &path, "expected a table: a full service spec");
                continue;
            };
            let mut doc = toml_edit::DocumentMut::new();
            for (k, v) in spec.iter() {
                doc.insert(k, v.clone());
            }
            let text = doc.to_string();
            match crate::service::parse(&text, &format!("{name}.toml")) {
                Ok(s) => {
                    add.insert(name.to_string(), s);
                    add_toml.insert(name.to_string(), text);
                }
                Err(e) => {
                    let key = if e.key.is_empty() { path.clone() } else { format!("{path}.{}", e.key) };
                    w.problem(span, &key, e.message);
                }
            }
        }
    }
    let strip = |v: Vec<(String, Option<Range<usize>>, String)>| v.into_iter().map(|(s, _, _)| s).collect();
    Services { enable: strip(enable), disable: strip(disable), add, add_toml }
}

/// How often an `auto` node checks for a new version unless told.
const DEFAULT_CHECK: Duration = Duration::from_secs(3600);

fn update(w: &mut Walk<'_>, at: At<'_>) -> Update {
    w.known_keys(at, &["repository", "channel", "policy", "window", "check_minutes"]);
    let repository = w.string(at, "repository").and_then(|(s, span, path)| {
        let ok = ["http://", "https://"].iter().any(|p| s.strip_prefix(p).is_some_and(|rest| !rest.is_empty()))
            && !s.bytes().any(|b| b <= b' ' || b >= 0x7f);
        if ok {
            Some(s)
        } else {
            w.problem(span, &path, format!("{s:?} is not an http:// or https:// URL"));
            None
        }
    });
    let channel = match w.choice(at, "channel", &["stable", "beta", "alpha"]).as_deref() {
        Some("beta") => Channel::Beta,
        Some("alpha") => Channel::Alpha,
        _ => Channel::Stable,
    };
    let policy = match w.choice(at, "policy", &["manual", "auto"]).as_deref() {
        Some("auto") => UpdatePolicy::Auto,
        _ => UpdatePolicy::Manual,
    };
    let window = w.table(at, "window", "update.window").and_then(|t| window(w, t));
    let check_every = w.integer(at, "check_minutes", 1, 1440).map_or(DEFAULT_CHECK, |m| Duration::from_secs(60 * m as u64));
    Update { repository, channel, policy, window, check_every }
}

fn window(w: &mut Walk<'_>, at: At<'_>) -> Option<Window> {
    w.known_keys(at, &["days", "start", "length_minutes"]);
    let mut days = Vec::new();
    for (d, span, path) in w.strings(at, "days") {
        match DAYS.iter().position(|x| *x == d) {
            Some(i) => days.push(i as u8),
            None => w.problem(span, &path, format!("{d:?} is not a day (allowed: {})", DAYS.join(", "))),
        }
    }
    if at.table.get("days").is_none() {
        days = (0..7).collect();
    }
    let start = match w.string(at, "start") {
        Some((s, span, path)) => {
            let parsed = s.split_once(':').and_then(|(h, m)| {
                let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
                (h < 24 && m < 60 && s.len() == 5).then_some(h * 60 + m)
            });
            if parsed.is_none() {
                w.problem(span, &path, format!("{s:?} is not a time of day (HH:MM, UTC)"));
            }
            parsed
        }
        None => {
            if at.table.get("start").is_none() {
                w.problem(at.range(), "update.window.start", "missing: when the window opens (HH:MM, UTC)");
            }
            None
        }
    };
    let length = w.integer(at, "length_minutes", 1, 1440);
    if at.table.get("length_minutes").is_none() {
        w.problem(at.range(), "update.window.length_minutes", "missing: how long the window stays open (1 to 1440)");
    }
    Some(Window { days, start_minute: start?, length: Duration::from_secs(60 * length? as u64) })
}

fn cluster(w: &mut Walk<'_>, at: At<'_>) -> Option<Cluster> {
    w.known_keys(at, &["orchestrator", "role", "managers", "token_file", "max_parallel", "advertise_address"]);
    let orchestrator = w.choice(at, "orchestrator", &["swarm"]).unwrap_or_else(|| "swarm".into());
    let role = match w.choice(at, "role", &["manager", "worker"]).as_deref() {
        Some("manager") => Some(Role::Manager),
        Some(_) => Some(Role::Worker),
        None => {
            if at.table.get("role").is_none() {
                w.problem(at.range(), "cluster.role", "missing: manager or worker");
            }
            None
        }
    };
    let mut managers = Vec::new();
    for (m, span, path) in w.strings(at, "managers") {
        let ok = m.rsplit_once(':').is_some_and(|(host, port)| {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            port.parse::<u16>().is_ok_and(|p| p > 0) && (IpAddr::from_str(host).is_ok() || check_hostname(host).is_ok())
        });
        if ok {
            managers.push(m);
        } else {
            w.problem(span, &path, format!("{m:?} is not HOST:PORT (e.g. 10.0.0.1:2377)"));
        }
    }
    if role == Some(Role::Worker) && managers.is_empty() && at.table.get("managers").is_none() {
        w.problem(at.range(), "cluster.managers", "missing: a worker needs the managers to join");
    }
    let token_file = w.string(at, "token_file").and_then(|(s, span, path)| {
        if s.starts_with('/') && !s.contains('\0') {
            Some(s)
        } else {
            w.problem(span, &path, format!("{s:?} is not an absolute path"));
            None
        }
    });
    let max_parallel = w.integer(at, "max_parallel", 1, 100).unwrap_or(1) as u32;
    let advertise_address = ip(w, at, "advertise_address");
    Some(Cluster { orchestrator, role: role?, managers, token_file, max_parallel, advertise_address })
}

fn access(w: &mut Walk<'_>, at: At<'_>) -> Access {
    w.known_keys(at, &["admin", "ssh_authorized_keys"]);
    let admin = w.boolean(at, "admin").unwrap_or(false);
    let mut keys = Vec::new();
    for (k, span, path) in w.strings(at, "ssh_authorized_keys") {
        let mut parts = k.split_whitespace();
        let (kind, body) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let b64 = !body.is_empty() && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=');
        if !SSH_KEY_TYPES.contains(&kind) || !b64 || k.contains('\n') {
            w.problem(span, &path, format!("not an OpenSSH public key line (TYPE BASE64 [COMMENT], TYPE one of {})", SSH_KEY_TYPES.join(", ")));
        } else {
            keys.push(k);
        }
    }
    Access { admin, ssh_authorized_keys: keys }
}

fn pem(w: &mut Walk<'_>, at: At<'_>, key: &str, what: &str, labels: &[&str]) -> Option<String> {
    let (text, span, path) = w.string(at, key)?;
    let found = labels.iter().any(|l| text.contains(&format!("-----BEGIN {l}-----")) && text.contains(&format!("-----END {l}-----")));
    if found {
        Some(text)
    } else {
        w.problem(span, &path, format!("not {what} in PEM form (a -----BEGIN {}----- block)", labels[0]));
        None
    }
}

fn api(w: &mut Walk<'_>, at: At<'_>) -> Api {
    w.known_keys(at, &["enabled", "listen", "ca", "certificate", "key", "deny_serials"]);
    let enabled = w.boolean(at, "enabled");
    let listen = w.string(at, "listen").and_then(|(s, span, path)| {
        SocketAddr::from_str(&s).map_err(|_| w.problem(span, &path, format!("{s:?} is not ADDRESS:PORT"))).ok()
    });
    let ca = pem(w, at, "ca", "a CA certificate", &["CERTIFICATE"]);
    let certificate = pem(w, at, "certificate", "a certificate", &["CERTIFICATE"]);
    let key = pem(w, at, "key", "a private key", &["PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"]);
    let mut deny_serials = Vec::new();
    for (s, span, path) in w.strings(at, "deny_serials") {
        let hex: String = s.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
        if hex.is_empty() || hex.len() > 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            w.problem(span, &path, format!("{s:?} is not a certificate serial (hex digits, `:` allowed)"));
        } else {
            deny_serials.push(hex);
        }
    }
    let given = certificate.is_some();
    let enabled = enabled.unwrap_or(given);
    if enabled {
        for (name, present) in [("ca", ca.is_some()), ("certificate", certificate.is_some()), ("key", key.is_some())] {
            if !present && at.table.get(name).is_none() {
                w.problem(at.range(), &join(at.path, name), "missing: the agent needs ca, certificate and key");
            }
        }
    }
    Api { enabled, listen, ca, certificate, key, deny_serials }
}

fn logs(w: &mut Walk<'_>, at: At<'_>) -> Logs {
    w.known_keys(at, &["level", "max_file_kb"]);
    let level = w.choice(at, "level", LEVELS).unwrap_or_else(|| "info".into());
    let max_file_kb = w.integer(at, "max_file_kb", 16, 1_048_576).unwrap_or(1024) as u32;
    Logs { level, max_file_kb }
}

fn metrics(w: &mut Walk<'_>, at: At<'_>) -> Metrics {
    w.known_keys(at, &["enabled", "listen"]);
    let enabled = w.boolean(at, "enabled").unwrap_or(false);
    let listen = w.string(at, "listen").and_then(|(s, span, path)| {
        SocketAddr::from_str(&s).map_err(|_| w.problem(span, &path, format!("{s:?} is not ADDRESS:PORT"))).ok()
    });
    Metrics { enabled, listen }
}

fn sysctl(w: &mut Walk<'_>, at: At<'_>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (key, item) in at.table.iter() {
        let path = join("sysctl", key);
        let span = at.table.key(key).and_then(|k| k.span());
        let name_ok = !key.is_empty()
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            && !key.split('.').any(|p| p.is_empty() || p == "..");
        if !name_ok {
            w.problem(span.clone(), &path, "not a kernel parameter name (dotted, like net.ipv4.ip_forward)");
            continue;
        }
        let value = match item.as_value() {
            Some(toml_edit::Value::String(s)) => Some(s.value().to_string()),
            Some(toml_edit::Value::Integer(i)) => Some(i.value().to_string()),
            Some(toml_edit::Value::Boolean(b)) => Some(if *b.value() { "1" } else { "0" }.to_string()),
            _ => None,
        };
        match value {
            Some(v) if !v.contains('\n') && !v.contains('\0') && v.len() <= 4096 => {
                out.insert(key.to_string(), v);
            }
            _ => w.problem(span, &path, "expected a string, a whole number or a boolean on one line"),
        }
    }
    out
}
