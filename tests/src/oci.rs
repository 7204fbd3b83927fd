//! Test images for the Docker engine, as `docker load` archives: there is no
//! registry in the tests, so images reach a VM as a file (a second virtio
//! disk holding the archive, read with `docker load -i /dev/vdX`).
//!
//! The archive has the `docker save` layout: `manifest.json` naming the
//! image config (`<sha256>.json`, file name = its digest) and one layer tar
//! (`<diff id>/layer.tar`). The image holds Debian's busybox-static as
//! `/bin/busybox` with applet links, and `/www/index.html` for its httpd.
//! Every byte is fixed (mtime 0, root-owned, sorted), so the same inputs
//! give the same archive and the same image id.

use sha2::{Digest, Sha256};
use std::path::Path;

/// The tag of the busybox test image.
pub const BUSYBOX_TAG: &str = "cairn-test/busybox:1";
/// What the image's `/www/index.html` says.
pub const INDEX_HTML: &str = "hello from cairn-test/busybox\n";
/// The applets linked in `/bin`.
const APPLETS: &[&str] = &["sh", "cat", "echo", "env", "hostname", "httpd", "id", "ls", "sleep", "true", "wget", "nslookup", "ip", "sed", "nc"];

/// One member of a tar archive.
pub enum Entry<'a> {
    Dir(&'a str),
    File { path: &'a str, mode: u32, data: &'a [u8] },
    Symlink { path: &'a str, target: &'a str },
}

/// A ustar archive of `entries`, in the order given, with fixed metadata.
pub fn tar(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let (name, mode, kind, link, data): (String, u32, u8, &str, &[u8]) = match e {
            Entry::Dir(p) => (format!("{p}/"), 0o755, b'5', "", &[]),
            Entry::File { path, mode, data } => (path.to_string(), *mode, b'0', "", data),
            Entry::Symlink { path, target } => (path.to_string(), 0o777, b'2', target, &[]),
        };
        out.extend_from_slice(&header(&name, mode, data.len() as u64, kind, link));
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    // The end: two zero blocks.
    out.resize(out.len() + 1024, 0);
    out
}

fn header(name: &str, mode: u32, size: u64, kind: u8, link: &str) -> [u8; 512] {
    assert!(name.len() <= 100 && link.len() <= 100, "tar names here fit the 100-byte field: {name}");
    let mut h = [0u8; 512];
    let put = |h: &mut [u8; 512], at: usize, bytes: &[u8]| h[at..at + bytes.len()].copy_from_slice(bytes);
    put(&mut h, 0, name.as_bytes());
    put(&mut h, 100, format!("{mode:07o}\0").as_bytes());
    put(&mut h, 108, b"0000000\0");
    put(&mut h, 116, b"0000000\0");
    put(&mut h, 124, format!("{size:011o}\0").as_bytes());
    put(&mut h, 136, b"00000000000\0");
    h[156] = kind;
    put(&mut h, 157, link.as_bytes());
    put(&mut h, 257, b"ustar\0");
    put(&mut h, 263, b"00");
    put(&mut h, 265, b"root");
    put(&mut h, 297, b"root");
    // The checksum counts its own field as spaces.
    put(&mut h, 148, b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    put(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());
    h
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A `docker load` archive of a one-layer image tagged `tag`, whose layer is
/// `layer` (a tar) and whose default command is `cmd`.
pub fn docker_archive(tag: &str, layer: &[u8], cmd: &[&str]) -> Vec<u8> {
    let diff_id = sha256_hex(layer);
    let cmd_json: Vec<String> = cmd.iter().map(|c| format!("{c:?}")).collect();
    let config = format!(
        concat!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",",
            "\"config\":{{\"Env\":[\"PATH=/bin\"],\"Cmd\":[{}],\"WorkingDir\":\"/\"}},",
            "\"created\":\"1970-01-01T00:00:00Z\",",
            "\"history\":[{{\"created\":\"1970-01-01T00:00:00Z\",\"created_by\":\"cairn-tests oci::docker_archive\"}}],",
            "\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[\"sha256:{}\"]}}}}"
        ),
        cmd_json.join(","),
        diff_id
    );
    let config_name = format!("{}.json", sha256_hex(config.as_bytes()));
    let layer_path = format!("{diff_id}/layer.tar");
    let manifest = format!("[{{\"Config\":\"{config_name}\",\"RepoTags\":[\"{tag}\"],\"Layers\":[\"{layer_path}\"]}}]\n");
    tar(&[
        Entry::File { path: &config_name, mode: 0o644, data: config.as_bytes() },
        Entry::Dir(&diff_id),
        Entry::File { path: &layer_path, mode: 0o644, data: layer },
        Entry::File { path: "manifest.json", mode: 0o644, data: manifest.as_bytes() },
    ])
}

/// The busybox test image ([`BUSYBOX_TAG`]) from the host's static busybox
/// (`/bin/busybox`, package busybox-static), as a `docker load` archive.
pub fn busybox_archive() -> Vec<u8> {
    let busybox = std::fs::read("/bin/busybox").expect("/bin/busybox (busybox-static, scripts/install-deps installs it)");
    busybox_archive_of(&busybox)
}

fn busybox_archive_of(busybox: &[u8]) -> Vec<u8> {
    let links: Vec<String> = APPLETS.iter().map(|a| format!("bin/{a}")).collect();
    let mut entries = vec![Entry::Dir("bin"), Entry::File { path: "bin/busybox", mode: 0o755, data: busybox }];
    entries.extend(links.iter().map(|l| Entry::Symlink { path: l, target: "busybox" }));
    entries.extend([Entry::Dir("www"), Entry::File { path: "www/index.html", mode: 0o644, data: INDEX_HTML.as_bytes() }]);
    docker_archive(BUSYBOX_TAG, &tar(&entries), &["/bin/sh"])
}

/// Writes the busybox archive to `path` (a raw disk file: tar's 512-byte
/// blocks make it a whole number of sectors).
pub fn write_busybox_archive(path: &Path) {
    std::fs::write(path, busybox_archive()).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_is_deterministic_and_names_its_parts_by_digest() {
        let a = busybox_archive_of(b"not really busybox");
        assert_eq!(a, busybox_archive_of(b"not really busybox"));
        assert_eq!(a.len() % 512, 0);
        // Read it back with the host's tar: the layout docker load expects.
        let dir = std::env::temp_dir().join(format!("cairn-oci-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.tar"), &a).unwrap();
        let ok = std::process::Command::new("tar").args(["-xf", "a.tar"]).current_dir(&dir).status().unwrap();
        assert!(ok.success());
        let manifest = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&manifest).unwrap();
        let config_name = v[0]["Config"].as_str().unwrap();
        let config = std::fs::read(dir.join(config_name)).unwrap();
        assert_eq!(format!("{}.json", sha256_hex(&config)), config_name);
        let layer_name = v[0]["Layers"][0].as_str().unwrap();
        let layer = std::fs::read(dir.join(layer_name)).unwrap();
        let c: serde_json::Value = serde_json::from_slice(&config).unwrap();
        assert_eq!(c["rootfs"]["diff_ids"][0].as_str().unwrap(), format!("sha256:{}", sha256_hex(&layer)));
        assert_eq!(v[0]["RepoTags"][0], BUSYBOX_TAG);
        std::fs::write(dir.join("layer.tar"), &layer).unwrap();
        let list = std::process::Command::new("tar").args(["-tvf", "layer.tar"]).current_dir(&dir).output().unwrap();
        let list = String::from_utf8_lossy(&list.stdout);
        assert!(list.contains("bin/sh -> busybox"), "{list}");
        assert!(list.contains("www/index.html"), "{list}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
