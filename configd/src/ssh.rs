//! SSH into the admin container (`access.ssh_authorized_keys`). The admin
//! service binds two directories from here: the authorized keys (on /run,
//! rewritten at every boot and apply from the config in force) and the host
//! keys (on STATE, made by dropbear on first use and kept, so a client sees
//! the same host after a reboot or an update). Both always exist: a bind
//! without its source would keep the admin container from starting. With no
//! key the file is absent and the container starts no SSH server.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// What the admin service binds at root's `~/.ssh`.
pub const KEYS_DIR: &str = "/run/cairn/config/ssh";
/// What it binds at `/etc/dropbear`.
pub const HOST_KEYS_DIR: &str = "/var/lib/cairn/ssh";

/// A directory only root can read (dropbear refuses keys others can write).
fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Writes the authorized keys (or removes them) and makes sure the host
/// keys' directory exists.
pub fn write(keys: &[String], keys_dir: &Path, host_keys_dir: &Path) -> std::io::Result<()> {
    private_dir(keys_dir)?;
    private_dir(host_keys_dir)?;
    let path = keys_dir.join("authorized_keys");
    if keys.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let tmp = keys_dir.join(".authorized_keys.tmp");
    let text: String = keys.iter().map(|k| format!("{k}\n")).collect();
    std::fs::write(&tmp, text)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_written_private_and_removed_when_gone() {
        let root = std::env::temp_dir().join(format!("cairn-ssh-{}", std::process::id()));
        let (keys, host) = (root.join("run/ssh"), root.join("state/ssh"));
        write(&["ssh-ed25519 AAAA a@b".into()], &keys, &host).unwrap();
        let file = keys.join("authorized_keys");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "ssh-ed25519 AAAA a@b\n");
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777, 0o700);
        assert!(host.is_dir());
        write(&[], &keys, &host).unwrap();
        assert!(!file.exists() && keys.is_dir());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
