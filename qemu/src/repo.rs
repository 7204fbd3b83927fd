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

/// A static update repository served while this lives: over HTTP by
/// busybox httpd, or over HTTPS by Python's http.server with a certificate
/// for 10.0.2.2 from a CA made for the purpose.
pub struct Server {
    pub dir: Scratch,
    pub port: u16,
    scheme: &'static str,
    child: Child,
}

/// Python's static file server behind TLS; argv: port, root, cert, key.
const HTTPS_SERVER: &str = "import functools, http.server, ssl, sys
port, root, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass
httpd = http.server.ThreadingHTTPServer(('127.0.0.1', port), functools.partial(Quiet, directory=root))
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
httpd.serve_forever()
";

fn openssl(args: &[&str], dir: &Scratch) {
    let out = Command::new("openssl").args(args).current_dir(&dir.0).output().expect("openssl (package openssl) runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Server {
    pub fn start(name: &str) -> Server {
        let (dir, port) = Server::prepare(name);
        let child = Command::new("busybox")
            .args(["httpd", "-f", "-p", &format!("127.0.0.1:{port}"), "-h"])
            .arg(dir.path("repo"))
            .stdout(Stdio::null())
            .spawn()
            .expect("busybox httpd (package busybox-static) runs");
        Server { dir, port, scheme: "http", child }.listening()
    }

    /// HTTPS; the guest must be told to trust [`Server::ca`].
    pub fn start_https(name: &str) -> Server {
        let (dir, port) = Server::prepare(name);
        let ca_ext = ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"];
        openssl(&[&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=cairn test CA", "-keyout", "ca.key", "-out", "ca.pem"][..], &ca_ext].concat(), &dir);
        openssl(&["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=10.0.2.2", "-keyout", "server.key", "-out", "server.csr"], &dir);
        std::fs::write(dir.path("server.ext"), "subjectAltName=IP:10.0.2.2\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n").expect("server.ext");
        openssl(
            &["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile", "server.ext", "-out", "server.pem"],
            &dir,
        );
        let child = Command::new("python3")
            .args(["-c", HTTPS_SERVER, &port.to_string()])
            .arg(dir.path("repo"))
            .arg(dir.path("server.pem"))
            .arg(dir.path("server.key"))
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 runs");
        Server { dir, port, scheme: "https", child }.listening()
    }

    /// The CA that signed an HTTPS server's certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.dir.path("ca.pem")
    }

    fn prepare(name: &str) -> (Scratch, u16) {
        // Tests run side by side in one process: a port the kernel frees
        // for one of them may be handed to the next, so none is given twice.
        static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
        let dir = Scratch::new(name).expect("scratch directory");
        std::fs::create_dir_all(dir.path("repo")).expect("repo directory");
        let port = loop {
            let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port");
            let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !given.contains(&port) {
                given.push(port);
                break port;
            }
        };
        (dir, port)
    }

    fn listening(mut self) -> Server {
        for _ in 0..100 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the {} server on port {} exited ({status}): is the port taken?", self.scheme, self.port);
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                // Someone answers; make sure it is ours and not a server
                // that held the port before ours could bind it.
                std::thread::sleep(Duration::from_millis(200));
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!("the {} server on port {} exited ({status}): is the port taken?", self.scheme, self.port);
                }
                return self;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the {} server did not listen on {}", self.scheme, self.port);
    }

    /// The repository as the guest sees it.
    pub fn url(&self) -> String {
        format!("{}://10.0.2.2:{}", self.scheme, self.port)
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
