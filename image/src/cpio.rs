//! The newc ("070701") cpio format the kernel unpacks as an initramfs. Output
//! depends only on the tree and the timestamp: inode numbers count up in path
//! order, owners are root, every mtime is the one given.

use crate::tree::{Node, Tree};

fn pad4(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

struct Header<'a> {
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    size: u32,
    rdev: (u32, u32),
    name: &'a str,
}

fn header(out: &mut Vec<u8>, h: &Header<'_>) {
    let fields = [
        h.ino, h.mode, 0, 0, h.nlink, h.mtime, h.size, 0, 0, h.rdev.0, h.rdev.1,
        h.name.len() as u32 + 1,
        0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(h.name.as_bytes());
    out.push(0);
    pad4(out);
}

/// Writes the tree as a newc archive.
pub fn write(tree: &Tree, mtime: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ino = 1u32;
    for (path, node) in tree.iter() {
        let (mode, data, rdev, nlink): (u32, &[u8], (u32, u32), u32) = match node {
            Node::Dir { mode } => (0o040000 | mode, &[], (0, 0), 2),
            Node::File { mode, data } => (0o100000 | mode, data, (0, 0), 1),
            Node::Symlink { target } => (0o120777, target.as_bytes(), (0, 0), 1),
            Node::CharDev { mode, major, minor } => (0o020000 | mode, &[], (*major, *minor), 1),
        };
        header(&mut out, &Header { ino, mode, nlink, mtime, size: data.len() as u32, rdev, name: path });
        out.extend_from_slice(data);
        pad4(&mut out);
        ino += 1;
    }
    header(&mut out, &Header { ino: 0, mode: 0, nlink: 1, mtime: 0, size: 0, rdev: (0, 0), name: "TRAILER!!!" });
    // The kernel reads the archive in 512-byte blocks, as cpio writes it.
    while out.len() % 512 != 0 {
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Tree;

    fn sample() -> Tree {
        let mut t = Tree::default();
        t.file("/init", 0o755, b"#!x\n".to_vec()).unwrap();
        t.add("/dev/console", Node::CharDev { mode: 0o600, major: 5, minor: 1 }).unwrap();
        t.symlink("/etc/resolv.conf", "/run/cairn/resolv.conf").unwrap();
        t
    }

    #[test]
    fn same_tree_same_bytes() {
        assert_eq!(write(&sample(), 0), write(&sample(), 0));
        assert_ne!(write(&sample(), 0), write(&sample(), 1));
    }

    #[test]
    fn header_layout_is_newc() {
        let out = write(&sample(), 0x10);
        assert!(out.starts_with(b"070701"));
        assert_eq!(out.len() % 512, 0);
        // First entry is "dev" (sorted): a directory, inode 1, mtime 0x10.
        let h = std::str::from_utf8(&out[..110]).unwrap();
        assert_eq!(&h[6..14], "00000001");
        assert_eq!(&h[14..22], "000041ed");
        assert_eq!(&h[46..54], "00000010");
        assert_eq!(&out[110..114], b"dev\0");
    }

    /// GNU cpio, if the host has it, lists what we wrote.
    #[test]
    fn gnu_cpio_reads_it_back() {
        let mut child = std::process::Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run cpio (scripts/install-deps installs it): {e}"));
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&write(&sample(), 0)).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "dev\ndev/console\netc\netc/resolv.conf\ninit\n");
    }
}
