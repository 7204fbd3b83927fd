#![allow(clippy::unwrap_used)]
//! The agent's door on the host, with curl as the client: who gets in, and
//! what each role may do. The machine behind it (cairn-init's socket) is
//! absent here, so calls that need it answer 503; the QEMU tests cover them.

use cairn_pki::{Ca, Issued, Role, Validity};
use rcgen::ExtendedKeyUsagePurpose;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

struct Agent {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write(dir: &Path, name: &str, issued: &Issued) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, &issued.cert_pem).unwrap();
    std::fs::write(&key, &issued.key_pem).unwrap();
    (cert, key)
}

fn start(tag: &str, ca: &Ca, ca_files: &Issued, deny: &[&str]) -> Agent {
    let dir = std::env::temp_dir().join(format!("cairn-sysagent-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let node = dir.join("node");
    std::fs::create_dir_all(&node).unwrap();
    std::fs::write(node.join("ca.pem"), &ca_files.cert_pem).unwrap();
    let server = ca.issue_server("node", &["127.0.0.1".into(), "localhost".into()], Validity::days(1)).unwrap();
    std::fs::write(node.join("server.pem"), &server.cert_pem).unwrap();
    std::fs::write(node.join("server.key"), &server.key_pem).unwrap();
    std::fs::write(node.join("deny"), deny.join("\n")).unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_sysagent"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--dir")
        .arg(&node)
        .arg("--socket")
        .arg(dir.join("no-init.sock"))
        .arg("--audit")
        .arg(dir.join("audit"))
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "sysagent did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Agent { child, port, dir }
}

/// curl's exit code and the HTTP status (0 when there was no answer).
fn curl(agent: &Agent, client: Option<(&Path, &Path)>, method: &str, path: &str) -> (i32, u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}", "-X", method])
        .arg("--cacert")
        .arg(agent.dir.join("node/ca.pem"))
        .arg(format!("https://127.0.0.1:{}{path}", agent.port));
    if let Some((cert, key)) = client {
        cmd.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    let out = cmd.output().expect("curl runs (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (out.status.code().unwrap_or(-1), code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn only_valid_client_certificates_of_the_cluster_ca_get_in() {
    let (ca, ca_files) = Ca::generate("cluster", Validity::days(30)).unwrap();
    let (other, _) = Ca::generate("elsewhere", Validity::days(30)).unwrap();
    let denied = ca.issue_client("mallory", Role::Admin, Validity::days(1)).unwrap();
    let agent = start("door", &ca, &ca_files, &[&denied.serial.to_uppercase()]);
    let d = agent.dir.clone();

    let good = write(&d, "good", &ca.issue_client("alice", Role::Reader, Validity::days(1)).unwrap());
    let (rc, status, body) = curl(&agent, Some((&good.0, &good.1)), "GET", "/v1/openapi.json");
    assert_eq!((rc, status), (0, 200), "{body}");

    let refused: Vec<(&str, Option<(PathBuf, PathBuf)>)> = vec![
        ("no certificate", None),
        ("another CA", Some(write(&d, "other", &other.issue_client("eve", Role::Admin, Validity::days(1)).unwrap()))),
        ("expired", Some(write(&d, "expired", &ca.issue_client("old", Role::Admin, Validity { from_days: -10, days: 2 }).unwrap()))),
        (
            "serverAuth only",
            Some(write(&d, "server-eku", &ca.issue_custom("srv", Some("cairn:admin"), vec![ExtendedKeyUsagePurpose::ServerAuth], Validity::days(1)).unwrap())),
        ),
        ("no role", Some(write(&d, "norole", &ca.issue_custom("x", Some("acme"), vec![ExtendedKeyUsagePurpose::ClientAuth], Validity::days(1)).unwrap()))),
        ("denied serial", Some(write(&d, "denied", &denied))),
    ];
    for (what, client) in &refused {
        let (rc, status, body) = curl(&agent, client.as_ref().map(|(c, k)| (c.as_path(), k.as_path())), "GET", "/v1/openapi.json");
        assert_eq!(status, 0, "{what}: answered {status}: {body}");
        assert_ne!(rc, 0, "{what}: curl succeeded");
    }
    // The refusals cost the agent nothing: it still answers.
    let (rc, status, _) = curl(&agent, Some((&good.0, &good.1)), "GET", "/v1/openapi.json");
    assert_eq!((rc, status), (0, 200));
}

#[test]
fn each_role_gets_what_the_table_allows_and_mutations_are_audited() {
    let (ca, ca_files) = Ca::generate("cluster", Validity::days(30)).unwrap();
    let agent = start("roles", &ca, &ca_files, &[]);
    let d = agent.dir.clone();
    let cert = |role: Role| write(&d, role.as_str(), &ca.issue_client(&format!("{role}-user"), role, Validity::days(1)).unwrap());
    let (admin, operator, reader) = (cert(Role::Admin), cert(Role::Operator), cert(Role::Reader));
    let call = |c: &(PathBuf, PathBuf), m: &str, p: &str| curl(&agent, Some((&c.0, &c.1)), m, p);

    // Readers read, and may not act.
    assert_eq!(call(&reader, "GET", "/v1/openapi.json").1, 200);
    assert_eq!(call(&reader, "POST", "/v1/reboot").1, 403);
    assert_eq!(call(&reader, "POST", "/v1/services/chrony/restart").1, 403);
    assert_eq!(call(&reader, "GET", "/v1/audit").1, 403);
    // Operators act, but do not change the config.
    assert_eq!(call(&operator, "POST", "/v1/config/apply").1, 403);
    let (_, status, body) = call(&reader, "POST", "/v1/config/confirm");
    assert_eq!(status, 403);
    let err: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["kind"], "forbidden");
    assert!(err["message"].as_str().unwrap().contains("admin"), "{body}");
    // With cairn-init absent, an allowed call reaches its handler and says so.
    let (_, status, body) = call(&operator, "POST", "/v1/services/chrony/restart");
    assert_eq!(status, 503, "{body}");
    assert_eq!(call(&admin, "GET", "/v1/nothing").1, 404);
    assert_eq!(call(&admin, "DELETE", "/v1/status").1, 405);

    let (_, status, body) = call(&admin, "GET", "/v1/audit");
    assert_eq!(status, 200);
    let audit: serde_json::Value = serde_json::from_str(&body).unwrap();
    let records = audit["records"].as_array().unwrap();
    let forbidden_reboot = records.iter().find(|r| r["path"] == "/v1/reboot").expect("the refused reboot is audited");
    assert_eq!(forbidden_reboot["subject"], "reader-user");
    assert_eq!(forbidden_reboot["status"], 403);
    assert!(records.iter().any(|r| r["path"] == "/v1/services/chrony/restart" && r["role"] == "operator" && r["status"] == 503));
    assert!(!records.iter().any(|r| r["path"] == "/v1/openapi.json"), "reads are not audited");
}

#[test]
fn a_body_past_the_limit_is_refused_and_the_agent_keeps_answering() {
    let (ca, ca_files) = Ca::generate("cluster", Validity::days(30)).unwrap();
    let agent = start("body", &ca, &ca_files, &[]);
    let admin = write(&agent.dir, "admin", &ca.issue_client("root", Role::Admin, Validity::days(1)).unwrap());
    let big = agent.dir.join("big.toml");
    std::fs::write(&big, vec![b'#'; 2 * 1024 * 1024]).unwrap();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}", "-X", "POST", "--data-binary"])
        .arg(format!("@{}", big.display()))
        .arg("--cacert")
        .arg(agent.dir.join("node/ca.pem"))
        .arg("--cert")
        .arg(&admin.0)
        .arg("--key")
        .arg(&admin.1)
        .arg(format!("https://127.0.0.1:{}/v1/config/validate", agent.port))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.trim_end().ends_with("413"), "{text}");
    assert!(text.contains("too_large"), "{text}");
    assert_eq!(curl(&agent, Some((&admin.0, &admin.1)), "GET", "/v1/openapi.json").1, 200);
}
