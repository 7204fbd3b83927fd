//! resolv.conf: its text, and writing it whole or not at all.

use crate::dhcp::dns_name;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::Path;

/// The most name servers the resolver reads.
pub const MAX_SERVERS: usize = 3;

/// The text of resolv.conf. It is read line by line and word by word, so a
/// search domain is written only when it is a plain DNS name: whatever came
/// from the network cannot add a line or a word.
pub fn text(writer: &str, servers: &[IpAddr], search: &[String]) -> String {
    let mut s = format!("# written by {writer}\n");
    let search: Vec<String> = search.iter().filter_map(|d| dns_name(d.as_bytes())).collect();
    if !search.is_empty() {
        s.push_str(&format!("search {}\n", search.join(" ")));
    }
    for ns in servers.iter().take(MAX_SERVERS) {
        s.push_str(&format!("nameserver {ns}\n"));
    }
    s
}

/// Writes `dir/name` whole or not at all: a temporary name, then a rename.
pub fn write_atomic(dir: &Path, name: &str, content: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(content.as_bytes())?;
    drop(f);
    std::fs::rename(&tmp, dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn lists_search_and_at_most_three_servers() {
        let dns: Vec<IpAddr> = (1..=4).map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, 0, i))).collect();
        let text = text("cairn-init", &dns, &["lan".into(), "corp.example".into()]);
        assert_eq!(
            text,
            "# written by cairn-init\nsearch lan corp.example\nnameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n"
        );
    }

    #[test]
    fn never_takes_a_line_or_word_from_a_domain() {
        let dns = [IpAddr::V4(Ipv4Addr::new(10, 0, 2, 3))];
        for bad in ["lan\nnameserver 6.6.6.6", "lan evil.example", "lan\roptions debug", "lan#"] {
            assert_eq!(text("x", &dns, &[bad.into()]), "# written by x\nnameserver 10.0.2.3\n", "{bad:?}");
        }
    }

    #[test]
    fn writes_whole_files() {
        let dir = std::env::temp_dir().join(format!("cairn-resolv-{}", std::process::id()));
        write_atomic(&dir, "resolv.conf", "a\n").unwrap();
        write_atomic(&dir, "resolv.conf", "b\n").unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("resolv.conf")).unwrap(), "b\n");
        assert!(!dir.join(".resolv.conf.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
