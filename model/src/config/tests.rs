use super::*;

fn problems(text: &str) -> Vec<String> {
    match parse(text, "m.toml") {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(p) => p.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_example_uses_every_section_and_is_valid() {
    let text = include_str!("../../../docs/machine-config.example.toml");
    let c = parse(text, "example.toml").unwrap_or_else(|p| panic!("{p}"));
    assert_eq!(c.hostname.as_deref(), Some("node-7"));
    assert_eq!(c.network.links.len(), 2);
    assert_eq!(c.network.links[0].matches, LinkMatch::Name("eth0".into()));
    assert_eq!(c.network.links[0].addressing.mtu, Some(9000));
    assert!(!c.network.links[0].addressing.dhcp, "static addresses turn DHCP off by default");
    assert_eq!(c.network.links[1].matches, LinkMatch::Mac([0x52, 0x54, 0, 0x12, 0x34, 0x57]));
    assert!(c.network.links[1].addressing.dhcp);
    assert_eq!(c.network.links[0].addressing.routes[0].to.prefix, 16);
    assert_eq!(c.network.vlans[0].id, 100);
    assert_eq!(c.services.add["hello"].name, "hello");
    assert_eq!(c.update.policy, UpdatePolicy::Auto);
    assert_eq!(c.update.check_every.as_secs(), 3600, "an hour unless told");
    let w = c.update.window.as_ref().unwrap();
    assert_eq!((w.days.clone(), w.start_minute, w.length.as_secs()), (vec![5, 6], 120, 7200));
    assert_eq!(c.cluster.as_ref().map(|c| c.role), Some(Role::Worker));
    assert!(c.docker.enabled);
    assert_eq!(c.docker.address_pools, [Cidr { addr: "10.20.0.0".parse().unwrap(), prefix: 16 }]);
    assert_eq!(c.docker.pool_size, 24);
    assert_eq!(c.sysctl["net.ipv4.ip_forward"], "1");
    assert_eq!(c.modules, ["br_netfilter"]);
    assert!(c.access.admin);
    assert_eq!(c.metrics.listen.map(|a| a.port()), Some(9100));
}

#[test]
fn the_smallest_config_is_a_version() {
    let c = parse("version = 1\n", "m.toml").unwrap();
    assert_eq!(c.hostname, None);
    assert!(c.network.links.is_empty());
    assert_eq!(c.update.channel, Channel::Stable);
    assert_eq!(c.logs.level, "info");
    assert!(c.cluster.is_none());
    assert_eq!(c.docker, Docker::default());
    assert!(!c.docker.enabled);
}

#[test]
fn docker_is_on_with_its_section_or_a_cluster_and_refuses_bad_pools() {
    let on = |text: &str| parse(text, "m.toml").unwrap().docker.enabled;
    assert!(on("version = 1\n[docker]\n"));
    assert!(!on("version = 1\n[docker]\nenabled = false\n"));
    assert!(on("version = 1\n[cluster]\nrole = \"manager\"\n"));
    let c = parse("version = 1\n[docker]\naddress_pools = [\"10.30.7.9/16\"]\npool_size = 26\n", "m.toml").unwrap();
    assert_eq!(c.docker.address_pools, [Cidr { addr: "10.30.0.0".parse().unwrap(), prefix: 16 }], "the pool's network address");
    assert_eq!(c.docker.pool_size, 26);
    assert_eq!(
        problems("version = 1\n[cluster]\nrole = \"manager\"\n[docker]\nenabled = false\n"),
        ["m.toml:5:11: docker.enabled: false, but [cluster] needs the Docker engine: remove the key or the [cluster] section"]
    );
    assert_eq!(
        problems("version = 1\n[docker]\naddress_pools = [\"10.0.0.0\", \"fd00::/8\"]\npool_size = 31\nenable = true\n"),
        [
            "m.toml:3:18: docker.address_pools[0]: \"10.0.0.0\" is not ADDRESS/PREFIX (e.g. 10.0.2.50/24)",
            "m.toml:3:30: docker.address_pools[1]: \"fd00::/8\": only IPv4 pools (dockerd's bridge networks are IPv4 here)",
            "m.toml:4:13: docker.pool_size: 31 is out of range (8 to 30)",
            "m.toml:5:1: docker.enable: unknown key (did you mean \"enabled\"?)",
        ]
    );
    assert_eq!(
        problems("version = 1\n[docker]\naddress_pools = [\"10.0.0.0/24\"]\npool_size = 16\n"),
        ["m.toml:4:13: docker.pool_size: networks of /16 do not fit in the pool /24"]
    );
}

#[test]
fn three_mistakes_are_named_in_one_pass_with_their_places() {
    let text = "version = 1\nhostnme = \"a\"\n[network]\n[[network.links]]\nname = \"eth0\"\nmtu = 20\n[update]\nchannel = \"stabel\"\n";
    let p = problems(text);
    assert_eq!(
        p,
        [
            "m.toml:2:1: hostnme: unknown key (did you mean \"hostname\"?)",
            "m.toml:6:7: network.links[0].mtu: 20 is out of range (68 to 9216)",
            "m.toml:8:11: update.channel: \"stabel\" is not allowed (did you mean \"stable\"? allowed: stable, beta, alpha)",
        ]
    );
}

#[test]
fn version_is_required_and_must_be_one() {
    assert_eq!(problems("hostname = \"a\"\n"), ["m.toml:1:1: version: missing (write `version = 1` first)"]);
    assert_eq!(problems("version = 2\n"), ["m.toml:1:11: version: this Cairn reads version 1, not 2"]);
}

#[test]
fn syntax_errors_say_where() {
    let p = problems("version = 1\nhostname = \n");
    assert_eq!(p.len(), 1);
    assert!(p[0].starts_with("m.toml:2:"), "{p:?}");
    assert!(p[0].contains("not valid TOML"), "{p:?}");
}

#[test]
fn bad_values_are_refused_with_what_is_allowed() {
    let cases = [
        ("hostname = \"-bad\"", "hostname: \"-bad\" is not a host name"),
        ("[[network.links]]\nmac = \"52:54:00\"", "network.links[0].mac: \"52:54:00\" is not a MAC address"),
        ("[[network.links]]\nname = \"eth0\"\nmac = \"52:54:00:12:34:56\"", "network.links[0]: give either `name` or `mac`, not both"),
        ("[[network.links]]\ndhcp = true", "network.links[0]: missing: `name` or `mac`"),
        ("[[network.links]]\nname = \"eth0\"\naddresses = [\"10.0.2.300/24\"]", "is not ADDRESS/PREFIX"),
        ("[[network.links]]\nname = \"eth0\"\naddresses = [\"10.0.2.3/33\"]", "the prefix is at most 32"),
        ("[[network.links]]\nname = \"eth0\"\nroutes = [{ to = \"10.0.0.0/8\" }]", "a route needs both `to` and `via`"),
        ("[[network.vlans]]\nname = \"v\"\nlink = \"eth0\"\nid = 4095", "network.vlans[0].id: 4095 is out of range (1 to 4094)"),
        ("[network]\ndns = [\"ns1\"]", "network.dns[0]: \"ns1\" is not an IP address"),
        ("[services]\nenable = [\"a\"]\ndisable = [\"a\"]", "services.disable[0]: \"a\" is both enabled and disabled"),
        ("[services.add.web]\ncommand = [\"x\"]", "services.add.web"),
        ("[update]\nrepository = \"ftp://x\"", "update.repository: \"ftp://x\" is not an http:// or https:// URL"),
        ("[update.window]\nstart = \"25:00\"\nlength_minutes = 10", "update.window.start: \"25:00\" is not a time of day"),
        ("[update.window]\nstart = \"02:00\"", "update.window.length_minutes: missing"),
        ("[update]\ncheck_minutes = 0", "update.check_minutes: 0 is out of range (1 to 1440)"),
        ("[cluster]\nrole = \"worker\"", "cluster.managers: missing: a worker needs the managers to join"),
        ("[cluster]\nrole = \"boss\"", "cluster.role: \"boss\" is not allowed"),
        ("[cluster]\nrole = \"manager\"\nmanagers = [\"m1\"]", "is not HOST:PORT"),
        ("[access]\nssh_authorized_keys = [\"ssh-dss AAAA\"]", "not an OpenSSH public key line"),
        ("[logs]\nlevel = \"loud\"", "logs.level: \"loud\" is not allowed"),
        ("[metrics]\nlisten = \"9100\"", "metrics.listen: \"9100\" is not ADDRESS:PORT"),
        ("[sysctl]\n\"net..x\" = 1", "not a kernel parameter name"),
        ("[sysctl]\n\"net.x\" = [1]", "expected a string, a whole number or a boolean"),
        ("modules = [\"../x\"]", "modules[0]: \"../x\" is not a module name"),
        ("network = 3", "network: expected a table, found a whole number"),
        ("[time]\nntp = [\"a b\"]", "time.ntp[0]: \"a b\" is neither a host name nor an IP address"),
    ];
    for (body, want) in cases {
        let text = format!("version = 1\n{body}\n");
        let p = problems(&text).join("\n");
        assert!(p.contains(want), "for {body:?}\nwant {want:?}\ngot {p}");
    }
}

#[test]
fn a_service_added_by_the_config_is_checked_as_a_spec() {
    let text = "version = 1\n[services.add.web]\nrootfs = \"/usr/lib/cairn/rootfs/admin\"\ncommand = [\"/bin/sh\"]\n[services.add.web.stop]\ntimeout_s = 99999999999\n";
    let p = problems(text).join("\n");
    assert!(p.contains("services.add.web.stop.timeout_s"), "{p}");
}

#[test]
fn problems_serialise_for_tools() {
    let Err(p) = parse("version = 1\nx = 1\n", "m.toml") else { panic!("accepted") };
    let json = serde_json::to_string(&p.0).unwrap();
    assert_eq!(json, r#"[{"source":"m.toml","line":2,"column":1,"key":"x","message":"unknown key (known keys: version, hostname, network, time, services, update, cluster, docker, access, api, logs, metrics, sysctl, modules)"}]"#);
}

#[test]
fn arbitrary_text_never_panics() {
    // A cheap deterministic shake of the parser: every prefix of the example,
    // and the example with each byte replaced by a few others.
    let text = include_str!("../../../docs/machine-config.example.toml");
    for end in (0..text.len()).step_by(7) {
        if let Some(t) = text.get(..end) {
            let _ = parse(t, "x");
        }
    }
    let bytes = text.as_bytes();
    for i in (0..bytes.len()).step_by(13) {
        for b in [b'"', b'[', b'=', b'\n', b'0', b'.'] {
            let mut m = bytes.to_vec();
            m[i] = b;
            if let Ok(t) = std::str::from_utf8(&m) {
                if let Err(p) = parse(t, "x") {
                    assert!(p.0.iter().all(|x| !x.message.is_empty() && x.line >= 1), "{p}");
                }
            }
        }
    }
}

#[test]
fn a_network_that_cannot_work_is_refused_with_its_places() {
    let text = "version = 1\n[[network.links]]\nname = \"eth0\"\naddresses = [\"10.0.0.2/24\"]\ngateway = \"fd00::1\"\n\
                routes = [{ to = \"10.9.0.0/16\", via = \"fd00::1\" }]\n[[network.links]]\nname = \"eth0\"\n\
                [[network.vlans]]\nname = \"eth0\"\nlink = \"eth0\"\nid = 5\n";
    let p = problems(text).join("\n");
    for want in [
        "m.toml:6:11: network.links[0].routes[0]: `via` fd00::1 and `to` 10.9.0.0/16 are not of one address family",
        ": network.links[0].gateway: gateway fd00::1 needs an IPv6 address (there is no DHCPv6) on the same link",
        ": network.links[1]: picks the same link as network.links[0]",
        ": network.vlans[0]: VLAN \"eth0\": network.links[0] is a link of that name",
    ] {
        assert!(p.contains(want), "{want:?} not in:\n{p}");
    }
}

#[test]
fn the_api_section_needs_all_three_pem_parts_and_names_each_one_missing() {
    let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let good = format!("version = 1\n[api]\nca = '''{cert}'''\ncertificate = '''{cert}'''\nkey = '''-----BEGIN PRIVATE KEY-----\nMC4\n-----END PRIVATE KEY-----'''\ndeny_serials = [\"4A:0B\"]\n");
    let c = parse(&good, "good.toml").unwrap();
    assert!(c.api.enabled);
    assert_eq!(c.api.deny_serials, ["4a0b"]);
    assert_eq!(c.api.listen, None);

    let bad = format!("version = 1\n[api]\ncertificate = '''{cert}'''\nkey = \"not pem\"\ndeny_serials = [\"xyz\"]\n");
    let problems = parse(&bad, "bad.toml").unwrap_err().0;
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert!(keys.contains(&"api.ca"), "{problems:?}");
    assert!(keys.contains(&"api.key"), "{problems:?}");
    assert!(keys.contains(&"api.deny_serials[0]") || keys.iter().any(|k| k.starts_with("api.deny_serials")), "{problems:?}");

    let off = parse("version = 1\n[api]\nenabled = false\n", "off.toml").unwrap();
    assert!(!off.api.enabled);
    assert_eq!(parse("version = 1\n", "none.toml").unwrap().api, Api::default());
}
