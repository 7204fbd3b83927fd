//! Against a real HTTP server that speaks each protocol (cairn-qemu's test
//! metadata server), on loopback.

use super::*;
use cairn_qemu::metadata::{Server, Setup, Token};

const DOC: &str = "version = 1\nhostname = \"from-metadata\"\n";

fn server(token: Token, user_data: Option<&str>) -> (Server, Endpoints) {
    let s = Server::start(Setup { user_data: user_data.map(str::to_string), instance_id: "i-0abc".into(), token }).unwrap();
    let at = Endpoints { metadata: format!("http://127.0.0.1:{}", s.port), wireserver: format!("http://127.0.0.1:{}", s.port) };
    (s, at)
}

#[test]
fn ec2_imdsv2_takes_a_token_and_sends_it_every_time() {
    let (s, at) = server(Token::Required, Some(DOC));
    let f = fetch("ec2", &at).unwrap().unwrap();
    assert_eq!((f.source, f.text.as_str(), f.instance_id.as_deref()), ("ec2", DOC, Some("i-0abc")));
    let seen = s.requests();
    assert_eq!(seen[0].method, "PUT");
    assert!(seen[1..].iter().all(|r| r.header("X-aws-ec2-metadata-token").is_some()), "{seen:?}");
}

#[test]
fn ec2_falls_back_to_v1_on_404_and_stops_on_403() {
    let (_s, at) = server(Token::V1Only, Some(DOC));
    assert_eq!(fetch("ec2", &at).unwrap().unwrap().text, DOC);
    let (s, at) = server(Token::Forbidden, Some(DOC));
    let e = fetch("ec2", &at).unwrap_err().to_string();
    assert!(e.contains("403"), "{e}");
    assert_eq!(s.requests().len(), 1, "nothing is asked after a 403");
}

#[test]
fn no_user_data_is_no_config() {
    let (_s, at) = server(Token::Required, None);
    assert_eq!(fetch("ec2", &at).unwrap(), None);
    assert_eq!(fetch("gce", &at).unwrap(), None);
    assert_eq!(fetch("openstack", &at).unwrap(), None);
}

#[test]
fn gce_sends_its_flavor_header() {
    let (s, at) = server(Token::Required, Some(DOC));
    let f = fetch("gce", &at).unwrap().unwrap();
    assert_eq!((f.text.as_str(), f.instance_id.as_deref()), (DOC, Some("i-0abc")));
    assert!(s.requests().iter().all(|r| r.header("Metadata-Flavor") == Some("Google")));
}

#[test]
fn azure_user_data_is_base64_and_ready_is_reported_once() {
    let (s, at) = server(Token::Required, Some(DOC));
    let f = fetch("azure", &at).unwrap().unwrap();
    assert_eq!((f.text.as_str(), f.instance_id.as_deref()), (DOC, Some("i-0abc")));
    azure_ready(&at).unwrap();
    let health: Vec<_> = s.requests().into_iter().filter(|r| r.path == "/machine/?comp=health").collect();
    assert_eq!(health.len(), 1);
    assert!(health[0].body.contains("<State>Ready</State>") && health[0].body.contains("<ContainerId>c-i-0abc</ContainerId>"), "{}", health[0].body);
    assert!(health[0].body.contains("<GoalStateIncarnation>7</GoalStateIncarnation>"));
}

#[test]
fn openstack_instance_id_comes_from_meta_data_json() {
    let (_s, at) = server(Token::Required, Some(DOC));
    assert_eq!(fetch("openstack", &at).unwrap().unwrap().instance_id.as_deref(), Some("i-0abc"));
}

#[test]
fn an_unreachable_service_fails_within_its_bound() {
    let at = Endpoints { metadata: "http://127.0.0.1:9".into(), wireserver: "http://127.0.0.1:9".into() };
    let t = std::time::Instant::now();
    let e = fetch("gce", &at).unwrap_err().to_string();
    assert!(e.contains("try 4"), "{e}");
    assert!(t.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn cloud_init_user_data_is_refused_by_name() {
    let (_s, at) = server(Token::Required, Some("#cloud-config\nhostname: x\n"));
    assert!(fetch("ec2", &at).unwrap_err().to_string().contains("cloud-init's"));
}
