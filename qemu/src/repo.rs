//! An update repository on the host for guests to update from: bundles
//! signed by `cairn-image` with the key the image trusts, served by a real
//! HTTP server (busybox httpd) that guests reach at 10.0.2.2 through QEMU's
//! user network. Used by the update tests and `make bench`.

use crate::{out_dir, Scratch};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The checkout this crate sits in.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A file `make test-fixtures` left in build/test.
pub fn fixture(name: &str) -> String {
    let p = repo_root().join("build/test").join(name);
    assert!(p.exists(), "{} is missing: run make test-fixtures", p.display());
    p.display().to_string()
}

/// The debug image's kernel options, so the new slot keeps the test's shell.
pub fn debug_cmdline() -> String {
    std::fs::read_to_string(fixture("cmdline")).unwrap_or_default().trim().to_string()
}

/// A bundle to build: which root and initramfs, as which version, signed by which key.
pub struct Bundle {
    pub version: &'static str,
    pub root: String,
    pub initramfs: String,
    pub extra_cmdline: &'static str,
    pub key: String,
    pub expires: Option<u64>,
}

/// The key `make image` made and the image trusts.
pub fn release_key() -> String {
    repo_root().join("build/keys/release.key").display().to_string()
}

/// The same build as the running one, as version 0.2.0.
pub fn good() -> Bundle {
    Bundle {
        version: "0.2.0",
        root: fixture("good-root.img"),
        initramfs: out_dir().join("initramfs-debug.img").display().to_string(),
        extra_cmdline: "",
        key: release_key(),
        expires: None,
    }
}

/// A static update repository served over HTTP while this lives.
pub struct Server {
    pub dir: Scratch,
    pub port: u16,
    child: Child,
}

impl Server {
    pub fn start(name: &str) -> Server {
        let dir = Scratch::new(name).expect("scratch directory");
        std::fs::create_dir_all(dir.path("repo")).expect("repo directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port");
        let child = Command::new("busybox")
            .args(["httpd", "-f", "-p", &format!("127.0.0.1:{port}"), "-h"])
            .arg(dir.path("repo"))
            .stdout(Stdio::null())
            .spawn()
            .expect("busybox httpd (package busybox-static) runs");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Server { dir, port, child };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("busybox httpd did not listen on {port}");
    }

    /// The repository as the guest sees it.
    pub fn url(&self) -> String {
        format!("http://10.0.2.2:{}", self.port)
    }

    pub fn channel(&self) -> PathBuf {
        self.dir.path("repo/stable")
    }

    /// Builds a signed bundle and publishes it to the stable channel.
    pub fn publish(&self, b: &Bundle) {
        let out = self.dir.path(&format!("bundle-{}", b.version));
        b.build(&out);
        let image = repo_root().join("target/release/cairn-image");
        let st = Command::new(&image)
            .args(["publish", "--bundle"])
            .arg(&out)
            .arg("--repo")
            .arg(self.dir.path("repo"))
            .status()
            .expect("cairn-image runs");
        assert!(st.success(), "cairn-image publish");
    }
}

impl Bundle {
    /// `cairn-image bundle` into `out` (replaced).
    pub fn build(&self, out: &Path) {
        let b = self;
        let _ = std::fs::remove_dir_all(out);
        let image = repo_root().join("target/release/cairn-image");
        let mut args: Vec<String> = vec!["bundle".into(), "--out".into(), out.display().to_string()];
        for (k, v) in [
            ("--root", b.root.clone()),
            ("--vmlinuz", out_dir().join("vmlinuz").display().to_string()),
            ("--initramfs", b.initramfs.clone()),
            ("--version", b.version.to_string()),
            ("--cmdline", format!("{} {}", debug_cmdline(), b.extra_cmdline)),
            ("--key", b.key.clone()),
        ] {
            args.push(k.into());
            args.push(v);
        }
        if let Some(e) = b.expires {
            args.push("--expires".into());
            args.push(e.to_string());
        }
        let st = Command::new(&image).args(&args).current_dir(repo_root()).status().expect("cairn-image runs");
        assert!(st.success(), "cairn-image {args:?}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
