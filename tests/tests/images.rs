//! The cloud images `make images` writes: each format QEMU can boot boots
//! through UEFI to the ready line; every format holds the signed source disk
//! byte for byte; SHA256SUMS and the signed manifest verify, and a tampered
//! manifest or file is refused; a second build gives the same bytes.

use cairn_qemu::{out_dir, Config, Machine, Scratch};
use cairn_tests::{build_epoch, repo, sha256_file, BOOT, EXIT};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const GIB: u64 = 1 << 30;

fn images() -> PathBuf {
    out_dir().join("images")
}

/// `out/images/cairn-<version>-<suffix>`.
fn image(suffix: &str) -> PathBuf {
    let dir = images();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e} (run make images)", dir.display()));
    let names: Vec<String> = entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    let name = names
        .iter()
        .find(|n| n.starts_with("cairn-") && n.ends_with(&format!("-{suffix}")))
        .unwrap_or_else(|| panic!("no cairn-*-{suffix} in {}: {names:?}", dir.display()));
    dir.join(name)
}

fn tool(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn ok(program: &str, args: &[&str]) -> String {
    let out = tool(program, args);
    assert!(out.status.success(), "{program} {args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// `qemu-img compare` of a file in `format` against the source disk: same
/// size, same bytes.
fn same_disk(format: &str, file: &Path) {
    let source = image("aws.raw");
    let info = ok("qemu-img", &["info", "--output=json", "-f", format, s(file)]);
    let size = std::fs::metadata(&source).unwrap().len();
    assert!(info.contains(&format!("\"virtual-size\": {size},")), "{} as {format} is not {size} bytes: {info}", file.display());
    let out = ok("qemu-img", &["compare", "-f", "raw", s(&source), "-F", format, s(file)]);
    assert!(out.contains("Images are identical"), "{}: {out}", file.display());
}

/// The OVA's members, in archive order, extracted into `dir`.
fn unpack_ova(dir: &Scratch) -> Vec<String> {
    let ova = image("vmware.ova");
    ok("tar", &["-xf", s(&ova), "-C", s(&dir.0)]);
    ok("tar", &["-tf", s(&ova)]).lines().map(str::to_string).collect()
}

fn cairn_image(args: &[&str]) -> Output {
    Command::new(repo().join("target/release/cairn-image"))
        .args(args)
        .env("SOURCE_DATE_EPOCH", build_epoch())
        .output()
        .expect("target/release/cairn-image runs")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The value of `key = ...` in the manifest's `[source]` table.
fn manifest_source(key: &str) -> String {
    manifest_value("source", key)
}

/// The value of `key = ...` in one table of the manifest.
fn manifest_value(table: &str, key: &str) -> String {
    let m = std::fs::read_to_string(images().join("manifest.toml")).expect("out/images/manifest.toml");
    let source = m.split(&format!("[{table}]\n")).nth(1).unwrap_or_else(|| panic!("no [{table}] table in:\n{m}"));
    let line = source.lines().find(|l| l.starts_with(&format!("{key} = "))).unwrap_or_else(|| panic!("no {table}.{key}"));
    line[key.len() + 3..].trim_matches('"').to_string()
}

/// The last sector of STATE, and `sgdisk -p`'s table.
fn state_end(disk: &Path) -> (u64, String) {
    let table = ok("sgdisk", &["-p", s(disk)]);
    let end = table.lines().find(|l| l.trim_end().ends_with("STATE")).and_then(|l| l.split_whitespace().nth(2)?.parse().ok());
    (end.unwrap_or_else(|| panic!("no STATE in:\n{table}")), table)
}

/// UEFI boot of an overlay on `out/images/cairn-*-<suffix>`.
fn uefi(suffix: &str) -> Config {
    let path = image(suffix);
    Config::uefi(&images(), path.file_name().and_then(|n| n.to_str()).expect("a file name")).expect("the image exists")
}

#[test]
fn the_source_disk_is_a_padded_valid_gpt_whose_digest_the_manifest_signs() {
    let source = image("aws.raw");
    let size = std::fs::metadata(&source).unwrap().len();
    assert_eq!(size % GIB, 0, "a whole GiB: {size}");
    assert_eq!(manifest_source("size"), size.to_string());
    // `sha256sum -c SHA256SUMS` checks the line (see below); hashing 3 GiB
    // once is enough.
    let sums = std::fs::read_to_string(images().join("SHA256SUMS")).expect("SHA256SUMS");
    let name = source.file_name().and_then(|n| n.to_str()).expect("a file name");
    assert!(sums.lines().any(|l| l == format!("{}  {name}", manifest_source("sha256"))), "the manifest's source is not {name}:\n{sums}");
    let v = ok("sgdisk", &["-v", s(&source)]);
    assert!(v.contains("No problems found"), "{v}");
    // STATE is left as built, so first boot still grows it into the padding.
    let (state_end, table) = state_end(&source);
    assert!(size / 512 - state_end > (512 << 20) / 512, "STATE ends at sector {state_end} of {}:\n{table}", size / 512);
}

#[test]
fn every_format_holds_the_source_disk_byte_for_byte() {
    same_disk("qcow2", &image("qemu.qcow2"));
    assert!(ok("qemu-img", &["info", "-f", "qcow2", s(&image("qemu.qcow2"))]).contains("compat: 0.10"), "qcow2 version 2");
    let vhd = image("azure.vhd");
    assert_eq!((std::fs::metadata(&vhd).unwrap().len() - 512) % (1 << 20), 0, "a fixed VHD of whole MiB");
    same_disk("vpc", &vhd);
    assert!(ok("qemu-img", &["info", "-f", "vpc", s(&vhd)]).contains("file format: vpc"));

    let dir = Scratch::new("images-unpack").unwrap();
    let members = unpack_ova(&dir);
    let ext: Vec<&str> = members.iter().map(|m| m.rsplit('.').next().unwrap_or("")).collect();
    assert_eq!(ext, ["ovf", "mf", "vmdk"], "OVF first, then the manifest and the disk: {members:?}");
    let vmdk = dir.path(&members[2]);
    same_disk("vmdk", &vmdk);
    assert!(ok("qemu-img", &["info", s(&vmdk)]).contains("create type: streamOptimized"));
    let mf = std::fs::read_to_string(dir.path(&members[1])).unwrap();
    for m in [&members[0], &members[2]] {
        assert!(mf.contains(&format!("SHA256({m})= {}", sha256_file(&dir.path(m)))), "{m} in the .mf:\n{mf}");
    }
    let ovf = std::fs::read_to_string(dir.path(&members[0])).unwrap();
    ok("python3", &["-c", "import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])", s(&dir.path(&members[0]))]);
    let vmdk_size = std::fs::metadata(&vmdk).unwrap().len();
    for want in [">vmx-13<", ">VirtualSCSI<", ">VmxNet3<", "vmw:key=\"firmware\" vmw:value=\"efi\"", &format!("ovf:size=\"{vmdk_size}\"")] {
        assert!(ovf.contains(want), "{want} in the OVF:\n{ovf}");
    }

    let gce = image("gce.tar.gz");
    assert_eq!(ok("tar", &["-tzf", s(&gce)]), "disk.raw\n", "one member, disk.raw");
    let header = tool("sh", &["-c", &format!("gzip -dc '{}' | head -c 512", s(&gce))]).stdout;
    assert_eq!(&header[257..265], b"ustar  \0", "old GNU tar format");
    assert_eq!(header[156], b'S', "a GNU sparse member");
    ok("tar", &["-xSzf", s(&gce), "-C", s(&dir.0)]);
    same_disk("raw", &dir.path("disk.raw"));

    // The metal files hold the metal disk (the generic kernel), padded the
    // same way, with the digest the manifest signs as `metal_source`.
    let metal = dir.path("metal.raw");
    ok("bmaptool", &["-q", "copy", "--bmap", s(&image("metal.raw.bmap")), s(&image("metal.raw.zst")), s(&metal)]);
    assert_eq!(std::fs::metadata(&metal).unwrap().len().to_string(), manifest_value("metal_source", "size"));
    let digest = sha256_file(&metal);
    assert_eq!(digest, manifest_value("metal_source", "sha256"), "the metal image is not the signed metal disk");
    assert_ne!(digest, manifest_source("sha256"), "the metal image holds the cloud disk");
    let v = ok("sgdisk", &["-v", s(&metal)]);
    assert!(v.contains("No problems found"), "{v}");
}

#[test]
fn the_sums_and_the_signed_manifest_verify_and_tampering_is_refused() {
    let sums = ok("sh", &["-c", &format!("cd '{}' && sha256sum -c SHA256SUMS", s(&images()))]);
    assert_eq!(sums.lines().filter(|l| l.ends_with(": OK")).count(), 7, "{sums}");
    let keyring = repo().join("build/keys/keyring");

    // A download of the small files only: the manifest, its signature, the
    // sums (which cover the rest, checked above), the bmap.
    let dir = Scratch::new("images-verify").unwrap();
    let bmap = image("metal.raw.bmap");
    let bmap_name = bmap.file_name().unwrap().to_str().unwrap().to_string();
    for f in ["manifest.toml", "manifest.toml.sig", "SHA256SUMS", &bmap_name] {
        std::fs::copy(images().join(f), dir.path(f)).unwrap();
    }
    let verify = |extra: &[&str]| {
        let mut args = vec!["verify", "--dir", s(&dir.0), "--keyring", s(&keyring), "--file", "SHA256SUMS", "--file", &bmap_name];
        args.extend_from_slice(extra);
        cairn_image(&args)
    };
    assert!(verify(&[]).status.success(), "{}", text(&verify(&[])));
    let missing = verify(&["--file", "cairn-0.0.0-nowhere.raw"]);
    assert!(!missing.status.success() && text(&missing).contains("does not list it"), "{}", text(&missing));

    let original = std::fs::read(dir.path(&bmap_name)).unwrap();
    let mut changed = original.clone();
    changed[100] ^= 1;
    std::fs::write(dir.path(&bmap_name), &changed).unwrap();
    let out = verify(&[]);
    assert!(!out.status.success(), "a changed file passes:\n{}", text(&out));
    assert!(text(&out).contains(&format!("{bmap_name}: sha256 ")), "{}", text(&out));
    std::fs::write(dir.path(&bmap_name), &original).unwrap();

    let manifest = std::fs::read_to_string(dir.path("manifest.toml")).unwrap();
    let size_line = format!("size = {}\n", original.len());
    assert!(manifest.contains(&size_line));
    std::fs::write(dir.path("manifest.toml"), manifest.replace(&size_line, &format!("size = {}\n", original.len() + 1))).unwrap();
    let out = verify(&[]);
    assert!(!out.status.success(), "a changed manifest passes:\n{}", text(&out));
    assert!(text(&out).contains("does not match the manifest"), "{}", text(&out));
    std::fs::write(dir.path("manifest.toml"), &manifest).unwrap();

    let other = dir.path("other.key");
    let made = cairn_image(&["keygen", "--out", s(&other), "--id", "stranger"]);
    assert!(made.status.success(), "{}", text(&made));
    let ring = dir.path("other.keyring");
    std::fs::write(&ring, format!("threshold 1\n{}", std::fs::read_to_string(dir.path("other.key.pub")).unwrap())).unwrap();
    let out = cairn_image(&["verify", "--dir", s(&dir.0), "--keyring", s(&ring), "--file", "SHA256SUMS"]);
    assert!(!out.status.success() && text(&out).contains("does not trust"), "another keyring:\n{}", text(&out));
}

/// The images a second time, from the same disk and time stamp, into a
/// scratch directory: every file, the signature included, is the same.
#[test]
fn two_builds_give_identical_images() {
    let dir = Scratch::new("images-repro").unwrap();
    let out = dir.path("images");
    let version = std::fs::read_to_string(images().join("manifest.toml")).unwrap().lines().next().unwrap().trim_start_matches("version = ").trim_matches('"').to_string();
    let key = repo().join("build/keys/release.key");
    let built = cairn_image(&[
        "images", "--raw", s(&out_dir().join("cairn.raw")), "--metal-raw", s(&out_dir().join("cairn-metal.raw")),
        "--out", s(&out), "--version", &version, "--key", s(&key),
    ]);
    assert!(built.status.success(), "{}", text(&built));
    let list = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    };
    assert_eq!(list(&out), list(&images()));
    for name in list(&out) {
        let (a, b) = (out.join(&name), images().join(&name));
        let same = tool("cmp", &["-s", s(&a), s(&b)]);
        assert!(same.status.success(), "{name} differs between two builds");
    }
}

/// Boots `cfg` through OVMF to the ready line and powers it off.
fn boots(cfg: &Config, what: &str) {
    let mut m = Machine::start(cfg).expect("QEMU starts");
    let ready = m.wait_for("cairn-init: ready", BOOT).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(ready.contains("boot_ms="), "{what}: {ready}");
    let st = m.power_off(EXIT).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(st.success(), "{what}: QEMU exit status {st}");
}

#[test]
fn the_qcow2_boots_through_uefi() {
    boots(&uefi("qemu.qcow2"), "qcow2");
}

#[test]
fn the_vhd_boots_through_uefi() {
    boots(&uefi("azure.vhd"), "VHD");
}

#[test]
fn the_vmdk_from_the_ova_boots_through_uefi() {
    let dir = Scratch::new("images-ova").unwrap();
    let members = unpack_ova(&dir);
    boots(&Config::uefi(&dir.0, &members[2]).unwrap(), "VMDK");
}

/// The raw disk as a machine's own: it boots, and first boot grows STATE to
/// the end of the padded disk.
#[test]
fn the_raw_disk_boots_through_uefi_and_state_grows_into_the_padding() {
    let dir = Scratch::new("images-raw").unwrap();
    let disk = dir.path("disk.raw");
    ok("cp", &["--sparse=always", s(&image("aws.raw")), s(&disk)]);
    boots(&uefi("aws.raw").with_disk_file(&disk), "raw");
    let size = std::fs::metadata(&disk).unwrap().len();
    let (state_end, table) = state_end(&disk);
    assert!(size / 512 - state_end <= 2048 + 34, "STATE ends at sector {state_end} of {}:\n{table}", size / 512);
    assert!(ok("sgdisk", &["-v", s(&disk)]).contains("No problems found"));
}
