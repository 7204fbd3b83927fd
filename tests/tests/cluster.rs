//! Three Cairn machines form a Docker Swarm from their machine configs
//! alone (a manager and two workers on the lab's bridge, booted through UEFI,
//! real dockerd on each, join tokens handed between the agents over mutual
//! TLS) and run a Compose stack of the kind users write across the nodes.
//! 50 slot requests at once get exactly one worker slot. Then updates roll
//! through the swarm: a bad version rolls back on the first node and halts
//! the rollout everywhere; after `cluster resume` a good one goes through
//! every node, one at a time, while a prober through the routing mesh sees
//! no failed request; the same three nodes are there at the end, each
//! rebooted, none joined twice. The images come from an archive on a second
//! disk (`docker load`) and the updates from a repository inside the lab:
//! there is no registry and no other network.

use cairn_qemu::repo::{fixture, good, Bundle, Server};
use cairn_tests::lab::{repository, Lab, Run, VmSpec};
use cairn_tests::oci::{write_busybox_archive, BUSYBOX_TAG};
use cairn_tests::put_file;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const NAMES: [&str; 3] = ["mgr", "w1", "w2"];
const STACK_UP: Duration = Duration::from_secs(300);
/// A rollback (two boots), or a rollout through three nodes, under TCG.
const ROLLOUT: Duration = Duration::from_secs(1800);

/// The manager's view of the swarm once every node is in it and Ready.
fn wait_swarm(lab: &Lab, what: &str) -> Vec<Value> {
    wait_swarm_where(lab, what, |n| n["labels"]["cairn.version"].is_string())
}

/// ... and every node passes `also`.
fn wait_swarm_where(lab: &Lab, what: &str, also: impl Fn(&Value) -> bool) -> Vec<Value> {
    let start = Instant::now();
    let mut last = Value::Null;
    loop {
        if let Some(v) = lab.api_get(0, "/v1/cluster") {
            let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
            if nodes.len() == NAMES.len() && nodes.iter().all(|n| n["state"] == "ready" && also(n)) {
                return nodes;
            }
            last = v;
        }
        assert!(start.elapsed() < ROLLOUT, "{what}: not reached; the manager's agent said: {last:#}\n{}", lab.vms[0].console());
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// The rollout state in the manager's store once `cond` holds.
fn wait_rollout(lab: &Lab, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    let mut last = Value::Null;
    loop {
        if let Some(v) = lab.api_get(0, "/v1/cluster") {
            if cond(&v["rollout"]) {
                return v["rollout"].clone();
            }
            last = v;
        }
        assert!(start.elapsed() < ROLLOUT, "{what}: not reached; the manager's agent said: {last:#}");
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// `cairnctl update apply` against every node at once, as an operator
/// starting a rollout; each node's (success, output).
fn update_everywhere(lab: &Lab) -> Vec<(bool, String)> {
    let children: Vec<std::process::Child> =
        (0..NAMES.len()).map(|i| lab.ctl_command(&lab.admin, &[i], &["--yes", "update", "apply"]).spawn().expect("cairnctl")).collect();
    children
        .into_iter()
        .map(|c| {
            let r = Run::from(c.wait_with_output().expect("cairnctl"));
            (r.ok, format!("{}{}", r.stdout, r.stderr))
        })
        .collect()
}

/// What the sampler and the prober saw during a rollout.
#[derive(Debug, Default)]
struct Seen {
    samples: u32,
    /// The most nodes drained or not answering at one sample.
    most_down: usize,
    probes: u32,
    failed: u32,
    failures: Vec<String>,
}

/// Every second: how many nodes are drained (the manager's view) or do not
/// answer (rebooting); and one request through the routing mesh to a node
/// that is neither, as a load balancer in front of the swarm would send it.
struct Watch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Seen>,
}

impl Watch {
    fn start(lab: &Lab) -> Watch {
        let netns = lab.netns.clone();
        let creds = [lab.ca_file.clone(), lab.admin.cert.clone(), lab.admin.key.clone()];
        let addrs: Vec<String> = lab.vms.iter().map(|v| v.address.clone()).collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let curl = |args: &[&str]| {
                let mut c = std::process::Command::new("ip");
                c.args(["netns", "exec", &netns, "curl", "-sS", "--fail", "--max-time", "8"]).args(args);
                c.env_remove("http_proxy").env_remove("https_proxy").env_remove("HTTP_PROXY").env_remove("HTTPS_PROXY");
                c.output().ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            };
            let agent = |addr: &str| {
                let url = format!("https://{addr}:9440/v1/cluster");
                let (ca, cert, key) = (creds[0].to_string_lossy(), creds[1].to_string_lossy(), creds[2].to_string_lossy());
                curl(&["--cacert", &ca, "--cert", &cert, "--key", &key, &url]).and_then(|t| serde_json::from_str::<Value>(&t).ok())
            };
            let mut seen = Seen::default();
            let mut drained: Vec<String> = Vec::new();
            let mut turn = 0usize;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let up: Vec<bool> = addrs.iter().map(|a| agent(a).is_some()).collect();
                if let Some(v) = up[0].then(|| agent(&addrs[0])).flatten() {
                    if let Some(nodes) = v["nodes"].as_array() {
                        drained = nodes.iter().filter(|n| n["availability"] != "active").filter_map(|n| n["addr"].as_str().map(str::to_string)).collect();
                    }
                }
                let down: Vec<&String> = addrs.iter().zip(&up).filter(|(a, u)| !**u || drained.contains(a)).map(|(a, _)| a).collect();
                seen.samples += 1;
                seen.most_down = seen.most_down.max(down.len());
                let serving: Vec<&String> = addrs.iter().filter(|a| !down.contains(a)).collect();
                if !serving.is_empty() {
                    let target = serving[turn % serving.len()];
                    turn += 1;
                    seen.probes += 1;
                    if curl(&[&format!("http://{target}:8080/index.html")]).is_none() {
                        seen.failed += 1;
                        seen.failures.push(format!("{target} at sample {}", seen.samples));
                    }
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            seen
        });
        Watch { stop, thread }
    }

    fn stop(self) -> Seen {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("the watcher")
    }
}

/// node id by hostname.
fn ids(nodes: &[Value]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> =
        nodes.iter().map(|n| (n["hostname"].as_str().unwrap_or("").to_string(), n["id"].as_str().unwrap_or("").to_string())).collect();
    v.sort();
    v
}

const COMPOSE: &str = r#"version: "3.8"
services:
  front:
    image: cairn-test/busybox:1
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    ports:
      - "8080:8080"
    networks: [app]
    configs:
      - source: page
        target: /www/cgi-bin/page
        mode: 0555
    secrets: [token]
    deploy:
      replicas: 3
  back:
    image: cairn-test/busybox:1
    command: ["sh", "-c", "[ -f /data/index.html ] || echo kept-in-the-volume > /data/index.html; exec httpd -f -p 8081 -h /data"]
    networks: [app]
    volumes:
      - data:/data
networks:
  app:
    driver: overlay
volumes:
  data:
configs:
  page:
    file: ./page.cgi
secrets:
  token:
    file: ./token.txt
"#;

/// The front end's page: its own node, the secret, and the back end's
/// answer over the overlay network, by service name. The name goes through
/// `nslookup` (the swarm's DNS, the service's virtual IP) and the request
/// is written by hand to `nc`: Debian's static busybox `wget` segfaults in
/// these containers (seen with a name and with an address).
const PAGE: &str = r#"#!/bin/sh
printf "Content-Type: text/plain\r\n\r\n"
echo "front on $(hostname)"
echo "secret $(cat /run/secrets/token)"
back=$(nslookup back 2>/dev/null | sed -n "/^Name:/{n;s/^Address: *//p;q;}")
echo "back $(printf "GET /index.html HTTP/1.0\r\n\r\n" | nc -w 5 $back 8081 | sed -n "\$p")"
"#;

/// What each node's engine says about the stack and its overlay, for a
/// failure message: tasks, the service's name from inside a front-end
/// container, the back end by name as the page asks it.
fn stack_report(lab: &mut Lab) -> String {
    const CMD: &str = "docker service ps app_front app_back --no-trunc --format '{{.Name}} {{.Node}} {{.CurrentState}} {{.Error}}' 2>&1; \
        c=$(docker ps -q -f name=app_front | head -n1); echo front container $c; \
        docker exec $c cat /etc/resolv.conf 2>&1; docker exec $c nslookup back 2>&1; docker exec $c nslookup tasks.back 2>&1; \
        b=$(docker exec $c nslookup back | sed -n '/^Name:/{n;s/^Address: *//p;q;}'); echo back is $b; \
        docker exec $c sh -c \"printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 5 $b 8081\" 2>&1; \
        docker exec $c ip -o addr 2>&1; docker network inspect app_app --format '{{json .Peers}} {{json .Containers}}' 2>&1; \
        ip -o link 2>&1 | cut -c1-120; dmesg | tail -n 20";
    let mut out = String::new();
    for i in 0..lab.vms.len() {
        let name = lab.vms[i].name.clone();
        let said = match lab.vm(i).machine().sh_for(CMD, Duration::from_secs(120)) {
            Ok((text, _)) => text,
            Err(e) => format!("(no answer: {e})"),
        };
        out.push_str(&format!("--- {name} ---\n{said}\n"));
    }
    out
}

/// The page through the routing mesh, from every node's address.
fn page_from_every_node(lab: &mut Lab) -> Vec<String> {
    let addresses: Vec<String> = lab.vms.iter().map(|vm| vm.address.clone()).collect();
    addresses
        .iter()
        .map(|address| {
            let url = format!("http://{address}:8080/cgi-bin/page");
            let start = Instant::now();
            loop {
                let run = lab.exec(&["curl", "-sS", "--fail", "--max-time", "10", &url]);
                if run.ok && run.stdout.contains("back kept-in-the-volume") {
                    return run.stdout;
                }
                if start.elapsed() > STACK_UP {
                    panic!("{url} never answered with the back end's text: {}{}\n{}", run.stdout, run.stderr, stack_report(lab));
                }
                std::thread::sleep(Duration::from_secs(2));
            }
        })
        .collect()
}

/// `curl` POSTing JSON to a VM's agent as the lab's admin; prints the status code.
fn api_post(lab: &Lab, vm: usize, path: &str, body: &str) -> std::process::Command {
    let mut c = lab.command("curl");
    c.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "600", "-H", "content-type: application/json", "--data", body])
        .arg("--cacert")
        .arg(&lab.ca_file)
        .arg("--cert")
        .arg(&lab.admin.cert)
        .arg("--key")
        .arg(&lab.admin.key)
        .arg(format!("https://{}:9440{path}", lab.vms[vm].address))
        .stdout(std::process::Stdio::piped());
    c
}

fn sh(lab: &mut Lab, vm: usize, cmd: &str, timeout: Duration) -> String {
    let name = lab.vms[vm].name.clone();
    let (out, code) = lab.vm(vm).machine().sh_for(cmd, timeout).unwrap_or_else(|e| panic!("{name}: {cmd}: {e}"));
    assert_eq!(code, 0, "{name}: {cmd}:\n{out}");
    out
}

#[test]
#[ignore = "three VMs for about 25 minutes: run by `make test-cluster`, not yet part of `make test`"]
fn three_machines_form_a_swarm_run_a_stack_and_roll_updates_through_it_halting_on_a_rollback() {
    let mut lab = Lab::new("swarm");
    let archive = lab.dir.path("images.tar");
    write_busybox_archive(&archive);
    let images = vec![
        "-drive".to_string(),
        format!("file={},format=raw,if=none,id=images,readonly=on", archive.display()),
        "-device".to_string(),
        "virtio-blk-pci,drive=images,serial=cairn-images".to_string(),
    ];
    let repo = format!("[update]\nrepository = \"{}\"\n\n", repository());
    let manager = format!("{repo}[cluster]\nrole = \"manager\"\nmax_parallel = 1\n");
    let worker = format!("{repo}[cluster]\nrole = \"worker\"\nmanagers = [\"10.77.0.11:2377\"]\n");
    for (name, cluster) in NAMES.iter().zip([&manager, &worker, &worker]) {
        // The debug disk through UEFI: updates need the boot loader, and the
        // stack is deployed and checked with the docker CLI on the nodes.
        let spec = VmSpec { memory_mb: 1536, qemu_args: images.clone(), uefi: true, ..VmSpec::debug(name).with_config(cluster) };
        lab.add(spec);
    }
    lab.start_all();
    lab.wait_agents();

    // The swarm, from the configs alone: three nodes, Ready, each labelled
    // with its OS version and slot by the manager.
    let nodes = wait_swarm(&lab, "first boot");
    let first = ids(&nodes);
    assert_eq!(first.iter().map(|(h, _)| h.as_str()).collect::<Vec<_>>(), NAMES, "{nodes:?}");
    assert_eq!(first.iter().map(|(_, id)| id).collect::<BTreeSet<_>>().len(), 3, "three node ids: {first:?}");
    for n in &nodes {
        let role = if n["hostname"] == "mgr" { "manager" } else { "worker" };
        assert_eq!(n["role"], role, "{n}");
        assert_eq!(n["labels"]["cairn.version"], "0.1.0", "{n}");
        assert!(n["labels"]["cairn.slot"].is_string(), "{n}");
    }
    for (i, name) in NAMES.iter().enumerate() {
        let me = lab.api_get(i, "/v1/cluster").unwrap_or_else(|| panic!("{name}: no cluster status"));
        assert_eq!(me["state"], "active", "{name}: {me}");
        assert_eq!(me["joins"], 1, "{name} joined (or initialised) once: {me}");
        assert_eq!(me["manager"], i == 0, "{name}: {me}");
    }
    // A join token is for admins and nodes, not for an operator.
    let operator = lab.client("ops", cairn_pki::Role::Operator);
    let run = lab.ctl_as(&operator, &[0], &["--output", "json", "cluster", "token", "worker"]);
    assert!(!run.ok && format!("{}{}", run.stdout, run.stderr).contains("forbidden"), "an operator got a join token: {}{}", run.stdout, run.stderr);

    // 50 slot requests at once against the manager's agent, for the two
    // workers, with one worker slot: each request is a compare-and-swap in
    // the swarm's store, and exactly one worker ends up holding the slot.
    let (w1, w2) = (first[1].1.clone(), first[2].1.clone());
    let burst = Instant::now();
    let asks: Vec<(String, std::process::Child)> = (0..50)
        .map(|i| {
            let id = if i % 2 == 0 { &w1 } else { &w2 };
            let body = format!("{{\"node_id\":\"{id}\",\"to\":\"9.9.9\"}}");
            (id.clone(), api_post(&lab, 0, "/v1/cluster/lock", &body).spawn().expect("curl"))
        })
        .collect();
    let mut granted: BTreeSet<String> = BTreeSet::new();
    let mut statuses = Vec::new();
    for (id, child) in asks {
        let out = child.wait_with_output().expect("curl");
        let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if code == "200" {
            granted.insert(id);
        }
        statuses.push(code);
    }
    eprintln!("cluster: 50 slot requests at once answered in {:.1} s", burst.elapsed().as_secs_f64());
    assert_eq!(granted.len(), 1, "exactly one worker holds the slot: {statuses:?}");
    // 409: full. 503: the engine did not answer in time (TCG under load);
    // either way nothing was granted, and no second worker got the slot.
    assert!(statuses.iter().all(|c| c == "200" || c == "409" || c == "503"), "granted, full, or unavailable: {statuses:?}");
    assert!(statuses.iter().any(|c| c == "409"), "the other worker was refused as full: {statuses:?}");
    let rollout = lab.api_get(0, "/v1/cluster").expect("cluster status")["rollout"].clone();
    let holders: Vec<&String> = rollout["holders"].as_object().map(|h| h.keys().collect()).unwrap_or_default();
    assert_eq!(holders, granted.iter().collect::<Vec<_>>(), "the store agrees: {rollout}");
    let winner = granted.iter().next().cloned().unwrap_or_default();
    let out = api_post(&lab, 0, "/v1/cluster/unlock", &format!("{{\"node_id\":\"{winner}\"}}")).output().expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "200", "an admin gives the slot back");

    // The images, loaded on every node from the archive disk.
    for i in 0..NAMES.len() {
        let dev = sh(&mut lab, i, "for d in /sys/block/vd*; do [ \"$(cat $d/serial 2>/dev/null)\" = cairn-images ] && echo /dev/${d##*/}; done", Duration::from_secs(30));
        let out = sh(&mut lab, i, &format!("docker load -i {}", dev.trim()), Duration::from_secs(120));
        assert!(out.contains(BUSYBOX_TAG), "{}: {out}", NAMES[i]);
    }
    // The stack, deployed the way users do, from the manager.
    {
        let m = lab.vm(0).machine();
        m.sh_ok("mkdir -p /run/stack").unwrap();
        put_file(m, "/run/stack/stack.yml", COMPOSE);
        put_file(m, "/run/stack/page.cgi", PAGE);
        m.sh_ok("echo s3cret-token > /run/stack/token.txt").unwrap();
    }
    sh(&mut lab, 0, "cd /run/stack && docker stack deploy -c stack.yml app", Duration::from_secs(180));
    let pages = page_from_every_node(&mut lab);
    for (vm, page) in NAMES.iter().zip(&pages) {
        assert!(page.contains("secret s3cret-token"), "{vm}: the secret inside the container: {page}");
        assert!(page.starts_with("front on "), "{vm}: {page}");
    }
    // The front end runs once on each node.
    let placed = sh(&mut lab, 0, "docker service ps app_front --filter desired-state=running --format '{{.Node}}'", Duration::from_secs(60));
    let placed: BTreeSet<&str> = placed.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(placed, NAMES.iter().copied().collect::<BTreeSet<_>>(), "app_front on every node");

    // A bad version (its service loader fails) is offered; every node is
    // asked to update at once. One takes the slot, rolls back, and halts
    // the rollout for all: the others never install it.
    let server = Server::start("cluster-repo");
    let _repo = lab.serve_repository(&server.dir.path("repo"));
    server.publish(&Bundle { root: fixture("loader-fails-root.img"), ..good() });
    let outcomes = update_everywhere(&lab);
    let halt = wait_rollout(&lab, "the halt", |r| !r["halt"].is_null())["halt"].clone();
    assert_eq!(halt["version"], "0.2.0", "{halt}");
    let halter = halt["node"].as_str().unwrap_or_default().to_string();
    let halter_vm = first.iter().position(|(_, id)| *id == halter).unwrap_or_else(|| panic!("the halt names a node of the swarm: {halt}"));
    for (i, (ok, out)) in outcomes.iter().enumerate() {
        let status = sh(&mut lab, i, "cairnctl update status", Duration::from_secs(60));
        assert!(status.contains("version 0.1.0"), "{}: back on or still on 0.1.0:\n{status}", NAMES[i]);
        if i == halter_vm {
            assert!(status.contains("bad: 0.2.0"), "{}: the version it rolled back from is bad:\n{status}", NAMES[i]);
        } else {
            assert!(!ok && out.contains("halted"), "{}: refused because of the halt: {out}", NAMES[i]);
            assert!(!status.contains("0.2.0"), "{}: never staged the bad version:\n{status}", NAMES[i]);
        }
    }
    let r = wait_rollout(&lab, "the bad version recorded", |r| r["bad"]["0.2.0"].is_string());
    assert_eq!(r["holders"].as_object().map(|h| h.keys().cloned().collect::<Vec<_>>()), Some(vec![halter.clone()]), "the halting node keeps its slot: {r}");

    // An operator resumes; a good version then rolls through the whole
    // swarm, one node at a time, while a prober through the routing mesh
    // never sees a failed request.
    lab.ctl(&[0], &["cluster", "resume"]).expect_ok("cluster resume");
    wait_rollout(&lab, "the slot given back after the resume", |r| r["halt"].is_null() && r["holders"].as_object().is_some_and(|h| h.is_empty()));
    server.publish(&Bundle { version: "0.3.0", root: fixture("good-0.3.0-root.img"), ..good() });
    let watch = Watch::start(&lab);
    let outcomes = update_everywhere(&lab);
    for (i, (ok, out)) in outcomes.iter().enumerate() {
        assert!(ok, "{}: the update operation: {out}", NAMES[i]);
    }
    let done = wait_swarm_where(&lab, "every node on 0.3.0", |n| n["labels"]["cairn.version"] == "0.3.0" && n["availability"] == "active");
    wait_rollout(&lab, "every slot given back", |r| r["holders"].as_object().is_some_and(|h| h.is_empty()));
    let seen = watch.stop();
    assert!(seen.samples > 10, "the sampler ran: {seen:?}");
    assert!(seen.most_down <= 1, "never more than one node drained or rebooting: {seen:?}");
    assert_eq!(seen.failed, 0, "no request through the routing mesh failed: {seen:?}");
    assert_eq!(ids(&done), first, "the same three nodes, each after its reboot");
    for i in 0..NAMES.len() {
        let status = sh(&mut lab, i, "cairnctl update status", Duration::from_secs(60));
        assert!(status.contains("version 0.3.0") && !status.contains("waiting for its verdict"), "{}: on 0.3.0, blessed:\n{status}", NAMES[i]);
        let me = lab.api_get(i, "/v1/cluster").unwrap_or_else(|| panic!("{}: no cluster status", NAMES[i]));
        assert_eq!(me["joins"], 0, "{} rejoined by itself after its reboot, without a second join: {me}", NAMES[i]);
    }
    page_from_every_node(&mut lab);
    lab.power_off_all();
}
