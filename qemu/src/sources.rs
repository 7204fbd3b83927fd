//! What hands a machine config to a guest, shared by the tests and the
//! benchmark: QEMU's fw_cfg, a NoCloud disk on FAT (Debian's mkfs.vfat and
//! mcopy), a second disk, and the user network's forwards to a metadata
//! server on the host.

use std::path::Path;
use std::process::Command;

/// QEMU arguments that hand `file` to the guest as fw_cfg `opt/org.cairn/config`.
pub fn fw_cfg(file: &Path) -> Vec<String> {
    vec!["-fw_cfg".into(), format!("name=opt/org.cairn/config,file={}", file.display())]
}

/// QEMU arguments for `file` as a read-only virtio disk.
pub fn config_disk(file: &Path, id: &str) -> Vec<String> {
    vec![
        "-drive".into(),
        format!("file={},format=raw,if=none,id={id},readonly=on", file.display()),
        "-device".into(),
        format!("virtio-blk-pci,drive={id}"),
    ]
}

fn run(cmd: &mut Command) -> std::io::Result<()> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr))));
    }
    Ok(())
}

/// Makes `img`, a NoCloud disk on FAT labelled CIDATA holding `user_data`
/// and a meta-data with `instance`; `work` holds the files on the way.
pub fn fat_cidata(img: &Path, work: &Path, user_data: &str, instance: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(work)?;
    let (ud, md) = (work.join("user-data"), work.join("meta-data"));
    std::fs::write(&ud, user_data)?;
    std::fs::write(&md, format!("instance-id: {instance}\n"))?;
    let _ = std::fs::remove_file(img);
    run(Command::new("mkfs.vfat").args(["-C", "-n", "CIDATA"]).arg(img).arg("2048"))?;
    run(Command::new("mcopy").arg("-i").arg(img).arg(&ud).arg("::user-data"))?;
    run(Command::new("mcopy").arg("-i").arg(img).arg(&md).arg("::meta-data"))
}

/// The `-netdev user` options that send the metadata addresses (EC2's, and
/// Azure's WireServer with `azure`) to a server on the host's `port`.
pub fn metadata_net(port: u16, azure: bool) -> String {
    let nc = format!("cmd:busybox nc 127.0.0.1 {port}");
    let mut s = format!(",net={},guestfwd=tcp:169.254.169.254:80-{nc}", if azure { "168.0.0.0/6" } else { "169.254.169.0/24" });
    if azure {
        s.push_str(&format!(",guestfwd=tcp:168.63.129.16:80-{nc}"));
    }
    s
}
