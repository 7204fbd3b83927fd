//! Writing a checked update to where it boots from: the root image to the
//! slot partition, kernel and initramfs to the ESP; each read back after
//! its flush and hashed again.

use crate::download::hash_into;
use crate::durable;
use crate::update::{io, UpdateError};
use cairn_model::manifest::{Manifest, Payload};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Instant;

const CHUNK: usize = 4 << 20;

/// The staged root's data blocks must hash to the signed verity root.
pub(crate) fn verity_check(root: &Path, m: &Manifest) -> Result<(), UpdateError> {
    let salt = hex::decode(&m.root.verity_salt).map_err(|_| UpdateError::Payload("verity salt is not hex".into()))?;
    let want: [u8; 32] = hex::decode(&m.root.verity_root)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| UpdateError::Payload("verity root is not 32 bytes of hex".into()))?;
    let data_len = m.root.verity_data_bytes().filter(|d| *d < m.root.size).ok_or_else(|| {
        UpdateError::Payload(format!("{} verity blocks do not leave room for a tree in {} bytes", m.root.verity_blocks, m.root.size))
    })?;
    let f = std::fs::File::open(root).map_err(io(format!("cannot open {}", root.display())))?;
    let params = cairn_verity::Params { salt, uuid: [0; 16] };
    cairn_verity::verify(std::io::BufReader::with_capacity(CHUNK, f), data_len, &params, &want)
        .map_err(|e| UpdateError::Payload(format!("{}: {e}", m.root.file)))
}

/// How long each part of [`install_root`] took, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct RootTimes {
    /// sha256 of the staged payload (during an update, done as it downloads).
    pub hash_s: f64,
    /// The verity tree checked against the signed root hash.
    pub verity_s: f64,
    /// Written to the slot, to the end of the flush.
    pub write_s: f64,
    /// Read back past the page cache and hashed.
    pub verify_s: f64,
}

/// What an update does with a root payload once it is on local storage:
/// hash it, check its verity tree against the signed root, write it to the
/// slot device, flush, read it back and hash it again. `install` runs the same
/// steps (the first while downloading); this is the part a benchmark can set
/// against other installers writing the same bytes to the same device.
pub fn install_root(dev: &Path, staged: &Path, m: &Manifest) -> Result<RootTimes, UpdateError> {
    let started = Instant::now();
    let mut f = std::fs::File::open(staged).map_err(io(format!("cannot open {}", staged.display())))?;
    let mut h = Sha256::new();
    hash_into(&mut f, m.root.size, &mut h).map_err(io(format!("cannot read {}", staged.display())))?;
    let got = hex::encode(h.finalize());
    if got != m.root.sha256 {
        return Err(UpdateError::Payload(format!("{}: sha256 is {got}, the signed manifest says {}", m.root.file, m.root.sha256)));
    }
    let hash_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    verity_check(staged, m)?;
    let verity_s = started.elapsed().as_secs_f64();
    let (write_s, verify_s) = write_slot(dev, staged, m.root.size, &m.root.sha256, &|_| {})?;
    Ok(RootTimes { hash_s, verity_s, write_s, verify_s })
}

/// Streams the staged root to the partition, then reads it back past the
/// page cache and checks the sha256 again.
/// Returns the seconds spent writing (to the end of the fsync) and verifying.
pub(crate) fn write_slot(dev: &Path, src: &Path, size: u64, sha256: &str, pause: &dyn Fn(&str)) -> Result<(f64, f64), UpdateError> {
    let started = Instant::now();
    let mut out = std::fs::OpenOptions::new().write(true).open(dev).map_err(io(format!("cannot open {}", dev.display())))?;
    let capacity = out.seek(SeekFrom::End(0)).map_err(io(format!("cannot size {}", dev.display())))?;
    if size > capacity {
        return Err(UpdateError::Not(format!("the root image ({size} bytes) is larger than {} ({capacity} bytes)", dev.display())));
    }
    out.seek(SeekFrom::Start(0)).map_err(io(format!("cannot seek {}", dev.display())))?;
    let mut input = std::fs::File::open(src).map_err(io(format!("cannot open {}", src.display())))?;
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < size {
        let want = CHUNK.min((size - done) as usize);
        input.read_exact(&mut buf[..want]).map_err(io(format!("cannot read {}", src.display())))?;
        out.write_all(&buf[..want]).map_err(io(format!("cannot write {}", dev.display())))?;
        done += want as u64;
        if done >= size / 2 && done - (want as u64) < size / 2 {
            pause("slot-half-written");
        }
    }
    out.sync_all().map_err(io(format!("cannot flush {}", dev.display())))?;
    let write_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    // SAFETY: advice on a descriptor we own; it only drops clean cached pages.
    unsafe { libc::posix_fadvise(out.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    drop(out);
    pause("slot-written");
    let mut back = std::fs::File::open(dev).map_err(io(format!("cannot open {}", dev.display())))?;
    let mut h = Sha256::new();
    hash_into(&mut back, size, &mut h).map_err(io(format!("cannot read back {}", dev.display())))?;
    let got = hex::encode(h.finalize());
    if got != sha256 {
        return Err(UpdateError::Not(format!("{} reads back with sha256 {got}, not {sha256}: the disk is failing", dev.display())));
    }
    Ok((write_s, started.elapsed().as_secs_f64()))
}

/// Copies a staged kernel or initramfs to `dir/name` on the ESP. The bytes are
/// hashed against the manifest as they are written (the staged file sat on
/// STATE through the slot write and could have been swapped), and the ESP
/// copy is read back past the page cache after its flush.
pub(crate) fn write_boot_file(src: &Path, payload: &Payload, dir: &Path, name: &str) -> Result<(), UpdateError> {
    let mut bytes = Vec::new();
    let f = std::fs::File::open(src).map_err(io(format!("cannot open {}", src.display())))?;
    f.take(payload.size.saturating_add(1)).read_to_end(&mut bytes).map_err(io(format!("cannot read {}", src.display())))?;
    let got = hex::encode(Sha256::digest(&bytes));
    if bytes.len() as u64 != payload.size || got != payload.sha256 {
        return Err(UpdateError::Payload(format!(
            "{}: {} bytes with sha256 {got} when copied to the ESP, the signed manifest says {} bytes with {} (changed on STATE after the download)",
            src.display(),
            bytes.len(),
            payload.size,
            payload.sha256
        )));
    }
    // Written under its final name: no entry points at this slot now (see
    // the module of `install`), and a rename could cross-link the FAT.
    let path = dir.join(name);
    durable::remove(&dir.join(format!("{name}.new")))?;
    durable::remove(&path)?;
    durable::write_flushed(&path, &bytes)?;
    let back = durable::read_uncached(&path, payload.size.saturating_add(1))?;
    let back_sha = hex::encode(Sha256::digest(&back));
    if back.len() as u64 != payload.size || back_sha != payload.sha256 {
        return Err(UpdateError::Not(format!(
            "{} reads back as {} bytes with sha256 {back_sha}, not {} bytes with {}: the ESP is failing",
            path.display(),
            back.len(),
            payload.size,
            payload.sha256
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(bytes: &[u8]) -> Payload {
        Payload { file: "vmlinuz".into(), size: bytes.len() as u64, sha256: hex::encode(Sha256::digest(bytes)) }
    }

    #[test]
    fn a_boot_file_swapped_after_the_download_never_reaches_the_esp() {
        let dir = std::env::temp_dir().join(format!("cairn-bootfile-{}", std::process::id()));
        let (staging, esp) = (dir.join("staging"), dir.join("esp"));
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::create_dir_all(&esp).unwrap();
        let src = staging.join("vmlinuz");
        let signed = payload(b"the signed kernel");
        std::fs::write(&src, b"the signed kernel").unwrap();
        write_boot_file(&src, &signed, &esp, "vmlinuz").unwrap();
        assert_eq!(std::fs::read(esp.join("vmlinuz")).unwrap(), b"the signed kernel");
        // Same size, other bytes; then longer: neither is written.
        for evil in [&b"the signed kernal"[..], b"the signed kernel and more"] {
            std::fs::write(&src, evil).unwrap();
            let e = write_boot_file(&src, &signed, &esp, "vmlinuz").unwrap_err().to_string();
            assert!(e.contains("changed on STATE after the download"), "{e}");
            assert_eq!(std::fs::read(esp.join("vmlinuz")).unwrap(), b"the signed kernel");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
