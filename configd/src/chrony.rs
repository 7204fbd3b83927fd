//! The NTP servers chrony uses. chrony's own config is in the read-only
//! root; it reads its servers from a `sourcedir` that its service spec binds
//! from here (`services/chrony`). The file is always written, with the
//! shipped pool when the config names no server, so the bind always has a
//! source and a config that drops `time.ntp` goes back to the pool.

use std::path::Path;

/// What chrony's service binds at `/etc/chrony/sources.d`.
pub const DIR: &str = "/run/cairn/config/chrony";
/// The pool chrony uses when the machine config names no server.
const SHIPPED: &str = "pool pool.ntp.org iburst\n";

/// The `.sources` text for these servers (names or addresses, checked by the model).
pub fn sources(servers: &[String]) -> String {
    if servers.is_empty() {
        return SHIPPED.to_string();
    }
    servers.iter().map(|s| format!("server {s} iburst\n")).collect()
}

/// Writes `dir/cairn.sources` whole (a rename), for chrony's next start.
pub fn write(servers: &[String], dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("cairn.sources");
    let tmp = dir.join(".cairn.sources.tmp");
    std::fs::write(&tmp, sources(servers))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_replace_the_pool_and_none_brings_it_back() {
        let dir = std::env::temp_dir().join(format!("cairn-chrony-{}", std::process::id()));
        write(&["10.0.2.2".into(), "time.example".into()], &dir).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("cairn.sources")).unwrap(), "server 10.0.2.2 iburst\nserver time.example iburst\n");
        write(&[], &dir).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("cairn.sources")).unwrap(), "pool pool.ntp.org iburst\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
