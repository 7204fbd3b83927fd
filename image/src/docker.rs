//! The Docker engine's files in the root: Debian's dockerd, docker CLI,
//! docker-proxy and tini-static (as docker-init), and iptables with the
//! legacy (x_tables) backend, since dockerd runs whatever `iptables` is on
//! PATH. cairn-init starts dockerd only where the machine config asks for
//! it; the files are in every root so one image serves every machine.

use crate::tree::Tree;
use anyhow::{Context, Result};
use std::path::Path;

/// Programs of the engine, as paths inside the unpacked packages.
pub const BINARIES: &[&str] = &[
    "usr/sbin/dockerd",
    "usr/bin/docker",
    "usr/sbin/docker-proxy",
    "usr/bin/tini-static",
    "usr/sbin/xtables-legacy-multi",
];

/// Where iptables looks for its extensions (it dlopen()s them, so the ELF
/// closure cannot see them).
const XTABLES: &str = "usr/lib/x86_64-linux-gnu/xtables";

/// The names dockerd and an operator call, all the legacy multi-binary.
const IPTABLES_NAMES: &[&str] = &[
    "iptables",
    "iptables-save",
    "iptables-restore",
    "iptables-legacy",
    "iptables-legacy-save",
    "iptables-legacy-restore",
    "ip6tables",
    "ip6tables-save",
    "ip6tables-restore",
    "ip6tables-legacy",
    "ip6tables-legacy-save",
    "ip6tables-legacy-restore",
];

/// The iptables extensions of the legacy backend (`libxt_*`, `libipt_*`,
/// `libip6t_*`; the `libebt_`/`libarpt_` ones serve only the nft tools), as
/// paths inside the unpacked packages, sorted.
pub fn extensions(debroot: &Path) -> Result<Vec<String>> {
    let dir = debroot.join(XTABLES);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("Cannot list {} (is iptables in image/debs.lock?)", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let legacy = ["libxt_", "libipt_", "libip6t_"].iter().any(|p| name.starts_with(p));
        if legacy && name.ends_with(".so") {
            out.push(format!("{XTABLES}/{name}"));
        }
    }
    out.sort();
    Ok(out)
}

/// The names that are links in Debian's packages (or its alternatives).
pub fn links(t: &mut Tree) -> Result<()> {
    for name in IPTABLES_NAMES {
        t.symlink(&format!("/usr/sbin/{name}"), "xtables-legacy-multi")?;
    }
    // dockerd looks for docker-init on PATH; it is bind-mounted into
    // containers run with --init, so it must be the static build.
    t.symlink("/usr/bin/docker-init", "tini-static")?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_the_legacy_extensions_are_picked() {
        let root = std::env::temp_dir().join(format!("cairn-xt-{}", std::process::id()));
        let dir = root.join(XTABLES);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["libxt_conntrack.so", "libipt_icmp.so", "libebt_ip.so", "libarpt_mangle.so", "libip6t_hl.so", "README"] {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        let got = extensions(&root).unwrap();
        let names: Vec<&str> = got.iter().map(|p| p.rsplit('/').next().unwrap()).collect();
        assert_eq!(names, ["libip6t_hl.so", "libipt_icmp.so", "libxt_conntrack.so"]);
        std::fs::remove_dir_all(&root).unwrap();
        let err = extensions(&root).unwrap_err();
        assert!(err.to_string().contains("is iptables in image/debs.lock?"), "{err}");
    }
}
